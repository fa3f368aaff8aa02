/*
 * The fixture shared by the service runtime tests (test_ordering, test_stall,
 * test_retry, test_reroute, test_commit, test_intake, test_lifecycle, test_handlers):
 * a one-route service on the memory adapter, a handler that records what it saw, and
 * a script thread.
 *
 * Each test runs tl_service_run on the test thread; a helper thread follows a script
 * (waits bounded in time, actions such as revoke) and then calls tl_service_stop.
 * Scripts never assert: they note the line of the first wait that timed out, which the
 * test checks once the run returned. The handler "h" behaves as its payload says:
 *   ok...     sleeps the fixture's sleep_ms and succeeds
 *   stall...  blocks until cancelled
 *   stuck...  ignores cancellation, returns once the fixture releases it
 *   fail...   fails with the error text "boom OFFSET"
 *   flaky...  fails on attempts 1 and 2, succeeds on the third
 *   quick, qflaky  as ok (no sleep) and flaky, but only checked against the offset
 *             order of their partition, without a record each (many run per test)
 */
#ifndef TL_TEST_SERVICE_HELPERS_H
#define TL_TEST_SERVICE_HELPERS_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskloop/config.h>
#include <taskloop/memory.h>
#include <taskloop/service.h>

#define MAXCALLS 1024
#define MAXPARTS 8
#define MAXKEYS 8

/* Monotonic milliseconds. */
int64_t now_ms(void);

/* Wall-clock milliseconds (what tl-first-seen-ms and record timestamps use). */
int64_t wall_ms(void);

/* Sleeps ms milliseconds. */
void sleep_ms(int64_t ms);

/* One handler invocation as the handler saw it. */
typedef struct call {
    int32_t partition;
    int64_t offset;
    int key; /* index of the key's first letter from 'a', or -1 */
    unsigned attempt;
    int64_t start_ms, end_ms; /* end_ms is 0 while it runs */
    bool saw_cancel;
} call;

typedef struct fx {
    char topic[64];
    tl_registry *reg;
    tl_config *cfg;
    tl_service *svc;
    tl_diag diag;

    pthread_mutex_t mu; /* guards what handlers record */
    call calls[MAXCALLS];
    size_t ncalls;
    int active, max_active;
    int active_part[MAXPARTS], max_part[MAXPARTS];
    int active_key[MAXKEYS], max_key[MAXKEYS];

    int sleep_ms;         /* what "ok" handlers take */
    atomic_bool released; /* "stuck" handlers return once it is set */

    void (*script)(struct fx *f);
    int bad_line; /* the script's first wait that timed out */
    int64_t stop_at_ms, run_end_ms;
    int run_rc;
    uint64_t seen_max_in_flight;
    unsigned seen_max_workers, seen_workers_after;
    bool seen_unhealthy, seen_healthy_again;
    int revoke_rc, assign_rc, active_at_revoke;
    size_t p0_done_at_revoke, p0_calls_at_revoke, p0_calls_while_revoked;
    int64_t committed_at_revoke, committed_mid;
    /* Per partition, a cache line each so that quick handlers run at full speed. */
    struct {
        alignas(64) _Atomic int64_t next; /* the offset the next quick handler should see */
        _Atomic int active;
    } quick[MAXPARTS];
    atomic_uint quick_out_of_order, quick_overlaps;
} fx;

/* cmocka setup and teardown: a fresh fixture with the memory adapter and handler "h". */
int setup(void **state);
int teardown(void **state);

/* What a test changes from the defaults of start(); zero fields keep them. */
typedef struct opts {
    int workers, max_in_flight, max_replaced, partitions, batch;
    const char *drain, *ordering, *timeout;
    const char *handler;      /* the route's handler (default "h") */
    const char *route_extra;  /* more lines of the route, indented by four */
    const char *source_extra; /* more keys of the source, each after ", " */
    const char *top_extra;    /* more top-level sections, after the routes */
} opts;

/* Loads a one-route config reading topic and builds the service. */
void start(fx *f, const char *topic, opts o);

/* Builds the service from a whole config; topic is the one all_settled watches. */
void start_yaml(fx *f, const char *topic, const char *yaml);

/* Appends a message to a partition of the fixture's topic. */
void push(fx *f, int32_t partition, const char *key, const char *payload);

/* Runs the service on this thread while script runs on a helper; then checks it. */
void run(fx *f, void (*script)(fx *f));

tl_service_stats stats(fx *f);

/* Every message that came in went out one way, and nothing is left in flight. */
void assert_balanced(fx *f);

/* ------------------------------------------------------------ for scripts */

#define STAT(field) offsetof(tl_service_stats, field)

/* The counter at offset field of the service's stats. */
uint64_t stat_at(fx *f, size_t field);

/* Waits up to ms for a counter to reach at_least. */
bool wait_stat(fx *f, size_t field, uint64_t at_least, int64_t ms);

/* Waits up to ms for pred(f). */
bool wait_for(fx *f, bool (*pred)(fx *f), int64_t ms);

/* In a script: notes the first failed wait and gives up on the rest. */
#define STEP(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!f->bad_line)                                                                      \
                f->bad_line = __LINE__;                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Messages completed, rerouted or dropped. */
uint64_t settled(fx *f);

bool no_handler_running(fx *f);

/* Everything pushed was taken in and settled, and every handler has returned (a
 * stalled one may still run after its message was rerouted). */
bool all_settled(fx *f);

/* A script that waits until all_settled. */
void script_until_all_settled(fx *f);

/* Calls recorded so far. */
size_t ncalls(fx *f);

/* The first call of the message at (partition, offset), or NULL. Its fields change
 * while the handler runs: scripts read them through call_ended. */
const call *find_call(fx *f, int32_t partition, int64_t offset);

/* Whether the first call of the message at (partition, offset) has returned. */
bool call_ended(fx *f, int32_t partition, int64_t offset);

/* Every offset below n (at most 64) of partition p was handled to the end at least once. */
bool part_done(fx *f, int32_t p, int64_t n);

/* GET path from the admin endpoint on 127.0.0.1:port over a real HTTP connection: the
 * status code (-1 when none came), the body in body (cut to cap). */
int http_get(int port, const char *path, char *body, size_t cap);

/* ------------------------------------------------------------ rerouted records */

/* Fails the test unless the record's header name has exactly value. */
void assert_header(const tl_memory_record *r, const char *name, const char *value);

/* A header's value as a number; fails when it is missing. */
long long header_num(const tl_memory_record *r, const char *name);

#endif
