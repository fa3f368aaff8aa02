/*
 * The service runtime on the memory adapter: every message settles once, ordering
 * lanes, stalls and late results, retries, reroutes to targets that are up or down,
 * commits never past an unsettled message, backpressure, drains and revocation.
 *
 * Each test runs tl_service_run on the test thread; a helper thread follows a script
 * (waits bounded in time, actions such as revoke) and then calls tl_service_stop.
 * Scripts never assert: they note the line of the first wait that timed out, which the
 * test checks once the run returned. The handler's behaviour follows the payload:
 *   ok...     sleeps the fixture's sleep_ms and succeeds
 *   stall...  blocks until cancelled
 *   stuck...  ignores cancellation, returns once the fixture releases it
 *   fail...   fails with the error text "boom OFFSET"
 *   flaky...  fails on attempts 1 and 2, succeeds on the third
 *   quick, qflaky  as ok (no sleep) and flaky, but only checked against the offset
 *             order of their partition, without a record each (many run per test)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <taskloop/config.h>
#include <taskloop/memory.h>
#include <taskloop/service.h>

#define MAXCALLS 1024
#define MAXPARTS 8
#define MAXKEYS 8

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

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

/* ------------------------------------------------------------ the handler */

static size_t call_begin(fx *f, tl_task *task, const tl_msg *msg)
{
    pthread_mutex_lock(&f->mu);
    size_t i = f->ncalls < MAXCALLS ? f->ncalls++ : MAXCALLS - 1;
    call *c = &f->calls[i];
    c->partition = msg->partition;
    c->offset = msg->offset;
    c->key = msg->key && msg->key_len ? ((const char *)msg->key)[0] - 'a' : -1;
    if (c->key >= MAXKEYS)
        c->key = -1;
    c->attempt = tl_handler_attempt(task);
    c->start_ms = now_ms();
    c->end_ms = 0;
    if (++f->active > f->max_active)
        f->max_active = f->active;
    if (msg->partition >= 0 && msg->partition < MAXPARTS &&
        ++f->active_part[msg->partition] > f->max_part[msg->partition])
        f->max_part[msg->partition] = f->active_part[msg->partition];
    if (c->key >= 0 && ++f->active_key[c->key] > f->max_key[c->key])
        f->max_key[c->key] = f->active_key[c->key];
    pthread_mutex_unlock(&f->mu);
    return i;
}

static void call_end(fx *f, size_t i, bool saw_cancel)
{
    pthread_mutex_lock(&f->mu);
    call *c = &f->calls[i];
    c->end_ms = now_ms();
    c->saw_cancel = saw_cancel;
    f->active--;
    if (c->partition >= 0 && c->partition < MAXPARTS)
        f->active_part[c->partition]--;
    if (c->key >= 0)
        f->active_key[c->key]--;
    pthread_mutex_unlock(&f->mu);
}

static bool starts_with(const tl_msg *msg, const char *prefix)
{
    return strncmp(msg->payload, prefix, strlen(prefix)) == 0;
}

/* quick and qflaky: the partition's attempts come one at a time, in offset order. */
static int quick(fx *f, tl_task *task, const tl_msg *msg)
{
    int32_t p = msg->partition;
    if (p < 0 || p >= MAXPARTS)
        return TL_EFAIL;
    if (atomic_fetch_add(&f->quick[p].active, 1) != 0)
        atomic_fetch_add(&f->quick_overlaps, 1);
    if (msg->offset != atomic_load(&f->quick[p].next))
        atomic_fetch_add(&f->quick_out_of_order, 1);
    int rc = starts_with(msg, "qflaky") && tl_handler_attempt(task) < 3 ? TL_EFAIL : 0;
    if (rc == 0)
        atomic_store(&f->quick[p].next, msg->offset + 1);
    atomic_fetch_sub(&f->quick[p].active, 1);
    return rc;
}

static int handler(tl_task *task, const tl_msg *msg, void *user)
{
    fx *f = user;
    if (starts_with(msg, "quick") || starts_with(msg, "qflaky"))
        return quick(f, task, msg);
    size_t i = call_begin(f, task, msg);
    int rc = 0;
    bool saw_cancel = false;
    int64_t t0 = now_ms();
    if (starts_with(msg, "stall")) {
        while (!(saw_cancel = tl_cancelled(task)) && now_ms() - t0 < 5000)
            sleep_ms(1);
        rc = TL_ECANCELED;
    } else if (starts_with(msg, "stuck")) {
        while (!atomic_load(&f->released) && now_ms() - t0 < 10000)
            sleep_ms(1);
        saw_cancel = tl_cancelled(task);
    } else if (starts_with(msg, "fail")) {
        char text[32];
        snprintf(text, sizeof(text), "boom %lld", (long long)msg->offset);
        tl_task_set_error_text(task, text);
        rc = TL_EFAIL;
    } else if (starts_with(msg, "flaky")) {
        rc = tl_handler_attempt(task) < 3 ? TL_EFAIL : 0;
    } else if (f->sleep_ms > 0) {
        sleep_ms(f->sleep_ms);
    }
    call_end(f, i, saw_cancel);
    return rc;
}

/* ------------------------------------------------------------ fixture */

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->released, false);
    tl_memory_reset();
    assert_int_equal(tl_registry_new(&f->reg), 0);
    assert_int_equal(tl_memory_register(f->reg), 0);
    assert_int_equal(tl_register_handler(f->reg, "h", handler, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    atomic_store(&f->released, true); /* a stuck handler must let the pool go */
    tl_service_free(f->svc);
    tl_config_free(f->cfg);
    tl_registry_free(f->reg);
    tl_diag_free(&f->diag);
    tl_memory_reset();
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* What a test changes from the defaults below; zero fields keep them. */
typedef struct opts {
    int workers, max_in_flight, max_replaced, partitions, batch;
    const char *drain, *ordering, *timeout;
    const char *route_extra;  /* more lines of the route, indented by four */
    const char *source_extra; /* more keys of the source, each after ", " */
} opts;

/* Loads a one-route config reading f->topic and builds the service. */
static void start(fx *f, const char *topic, opts o)
{
    snprintf(f->topic, sizeof(f->topic), "%s", topic);
    char text[2048];
    snprintf(text, sizeof(text),
             "service: t\n"
             "loop: { workers: %d, max_in_flight: %d, drain_timeout: %s, "
             "max_replaced_workers: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: %d%s }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: h\n"
             "    ordering: %s\n"
             "    timeout: %s\n"
             "%s",
             o.workers ? o.workers : 4, o.max_in_flight ? o.max_in_flight : 1000,
             o.drain ? o.drain : "2s", o.max_replaced ? o.max_replaced : 4, topic,
             o.partitions ? o.partitions : 1, o.batch ? o.batch : 16,
             o.source_extra ? o.source_extra : "", o.ordering ? o.ordering : "partition",
             o.timeout ? o.timeout : "5s", o.route_extra ? o.route_extra : "");
    int rc = tl_config_load_string("test.yaml", text, f->reg, NULL, &f->cfg, &f->diag);
    if (rc)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
    char err[256] = "";
    rc = tl_service_new(f->cfg, f->reg, NULL, &f->svc, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

static void push(fx *f, int32_t partition, const char *key, const char *payload)
{
    assert_true(tl_memory_push(f->topic, partition, key, payload, strlen(payload)) >= 0);
}

static void *helper_main(void *arg)
{
    fx *f = arg;
    f->script(f);
    f->stop_at_ms = now_ms();
    tl_service_stop(f->svc);
    return NULL;
}

/* Runs the service on this thread while script runs on a helper; then checks it. */
static void run(fx *f, void (*script)(fx *f))
{
    pthread_t helper;
    f->script = script;
    assert_int_equal(pthread_create(&helper, NULL, helper_main, f), 0);
    f->run_rc = tl_service_run(f->svc);
    f->run_end_ms = now_ms();
    pthread_join(helper, NULL);
    if (f->bad_line)
        fprintf(stderr, "the script's wait at line %d timed out\n", f->bad_line);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(f->run_rc, 0);
}

static tl_service_stats stats(fx *f)
{
    tl_service_stats s;
    tl_service_stats_get(f->svc, &s);
    return s;
}

/* Every message that came in went out one way, and nothing is left in flight. */
static void assert_balanced(fx *f)
{
    tl_service_stats s = stats(f);
    assert_int_equal(s.consumed, s.completed + s.rerouted + s.dropped);
    assert_int_equal(s.in_flight, 0);
}

/* ------------------------------------------------------------ script helpers */

#define STAT(field) offsetof(tl_service_stats, field)

static uint64_t stat_at(fx *f, size_t field)
{
    tl_service_stats s = stats(f);
    return *(const uint64_t *)((const char *)&s + field);
}

/* Waits up to ms for a counter to reach at_least. */
static bool wait_stat(fx *f, size_t field, uint64_t at_least, int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (stat_at(f, field) < at_least) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

/* Waits up to ms for pred(f). */
static bool wait_for(fx *f, bool (*pred)(fx *f), int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (!pred(f)) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

/* In a script: notes the first failed wait and gives up on the rest. */
#define STEP(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!f->bad_line)                                                                      \
                f->bad_line = __LINE__;                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static uint64_t settled(fx *f)
{
    tl_service_stats s = stats(f);
    return s.completed + s.rerouted + s.dropped;
}

static bool no_handler_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool idle = f->active == 0;
    pthread_mutex_unlock(&f->mu);
    return idle;
}

/* Everything pushed was taken in and settled, and every handler has returned (a
 * stalled one may still run after its message was rerouted). */
static bool all_settled(fx *f)
{
    tl_service_stats s = stats(f);
    /* outstanding: delivered by the source and not given back yet, which covers a
     * batch on its way to the loop that `consumed` does not count yet. */
    return s.in_flight == 0 && tl_memory_pending(f->topic) == 0 &&
           tl_memory_outstanding(f->topic) == 0 && settled(f) >= s.consumed &&
           no_handler_running(f);
}

static void script_until_all_settled(fx *f)
{
    STEP(wait_for(f, all_settled, 10000));
}

static size_t ncalls(fx *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->ncalls;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* The first call of the message at (partition, offset), or NULL. */
static const call *find_call(fx *f, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < f->ncalls; i++)
        if (f->calls[i].partition == partition && f->calls[i].offset == offset)
            return &f->calls[i];
    return NULL;
}

static void assert_header(const tl_memory_record *r, const char *name, const char *value)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(r, name, &len);
    if (!v)
        fail_msg("header %s is missing", name);
    if (len != strlen(value) || memcmp(v, value, len) != 0)
        fail_msg("header %s is '%.*s', not '%s'", name, (int)len, v, value);
}

/* A header's value as a number; fails when it is missing. */
static long long header_num(const tl_memory_record *r, const char *name)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(r, name, &len);
    assert_non_null(v);
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, v);
    return strtoll(buf, NULL, 10);
}

/* ------------------------------------------------------------ completion */

static void every_message_completes_and_commits_reach_the_end(void **state)
{
    fx *f = *state;
    start(f, "complete", (opts){.partitions = 4});
    for (int i = 0; i < 100; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.consumed, 100);
    assert_int_equal(s.completed, 100);
    for (int p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 25);
    tl_partition_stats ps[8];
    assert_int_equal(tl_service_partitions(f->svc, ps, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ps[i].next, 25);
    assert_balanced(f);
}

static void script_watch_partitions(fx *f)
{
    int64_t last[4] = {-1, -1, -1, -1};
    int64_t end = now_ms() + 10000;
    while (!all_settled(f)) {
        tl_partition_stats ps[4];
        size_t n = tl_service_partitions(f->svc, ps, 4);
        for (size_t i = 0; i < n && i < 4; i++) {
            int32_t p = ps[i].partition;
            STEP(p >= 0 && p < 4 && ps[i].next >= last[p]); /* never backwards */
            last[p] = ps[i].next;
        }
        STEP(now_ms() < end);
        sleep_ms(1);
    }
}

static void committed_positions_can_be_read_from_another_thread_while_they_move(void **state)
{
    fx *f = *state;
    f->sleep_ms = 1;
    start(f, "watched", (opts){.partitions = 4});
    for (int i = 0; i < 200; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_watch_partitions);
    tl_partition_stats ps[4];
    assert_int_equal(tl_service_partitions(f->svc, ps, 4), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ps[i].next, 50);
    assert_balanced(f);
}

/* ------------------------------------------------------------ ordering */

/* Per partition (key < 0) or key, the calls in start order have offsets ascending. */
static void assert_in_offset_order(fx *f, bool by_key, int lanes)
{
    for (int l = 0; l < lanes; l++) {
        int64_t last = -1, last_end = 0;
        size_t seen = 0;
        for (size_t i = 0; i < f->ncalls; i++) {
            const call *c = &f->calls[i];
            if ((by_key ? c->key : c->partition) != l)
                continue;
            assert_true(c->offset > last);
            assert_true(c->start_ms >= last_end);
            last = c->offset;
            last_end = c->end_ms;
            seen++;
        }
        assert_true(seen > 0);
    }
}

static void partition_ordering_runs_each_partition_one_at_a_time_in_offset_order(void **state)
{
    fx *f = *state;
    f->sleep_ms = 5;
    start(f, "by_partition", (opts){.partitions = 4, .ordering = "partition"});
    for (int i = 0; i < 40; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 40);
    for (int p = 0; p < 4; p++)
        assert_int_equal(f->max_part[p], 1);
    assert_in_offset_order(f, false, 4);
    assert_true(f->max_active >= 2); /* partitions run side by side */
    assert_balanced(f);
}

/*
 * Many messages per partition whose handlers return at once, so that a worker runs
 * through attempts chained ahead of it faster than the loop chains more, with retried
 * messages among them: every message runs once per attempt, one at a time per
 * partition, in offset order, and a retry runs before anything after it.
 */
static void partition_ordering_holds_over_long_chains_with_retries_in_them(void **state)
{
    fx *f = *state;
    enum { PARTS = 8, PER_PART = 5000, FLAKY_EVERY = 997 };
    start(f, "long_chains",
          (opts){.partitions = PARTS,
                 .workers = 16,
                 .batch = 1000,
                 .max_in_flight = 10000,
                 .route_extra = "    on_error: { retries: 3, backoff: 1ms }\n"});
    for (int i = 0; i < PER_PART; i++)
        for (int p = 0; p < PARTS; p++)
            push(f, p, NULL, i % FLAKY_EVERY == FLAKY_EVERY - 1 ? "qflaky" : "quick");
    run(f, script_until_all_settled);
    int flaky = PER_PART / FLAKY_EVERY;
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(atomic_load(&f->quick[p].next), PER_PART);
        assert_int_equal(tl_memory_committed(f->topic, p), PER_PART);
    }
    assert_int_equal(atomic_load(&f->quick_out_of_order), 0);
    assert_int_equal(atomic_load(&f->quick_overlaps), 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, PARTS * PER_PART);
    assert_int_equal(s.retries, PARTS * 2 * flaky);
    assert_balanced(f);
}

static void key_ordering_runs_each_key_one_at_a_time_and_keys_in_parallel(void **state)
{
    fx *f = *state;
    f->sleep_ms = 5;
    start(f, "by_key", (opts){.ordering = "key"});
    static const char *keys[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 40; i++)
        push(f, 0, keys[i % 4], "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 40);
    for (int k = 0; k < 4; k++)
        assert_int_equal(f->max_key[k], 1);
    assert_in_offset_order(f, true, 4);
    assert_true(f->max_active >= 2);
    assert_balanced(f);
}

static void no_ordering_runs_messages_of_one_partition_in_parallel(void **state)
{
    fx *f = *state;
    f->sleep_ms = 20;
    start(f, "unordered", (opts){.ordering = "none"});
    for (int i = 0; i < 20; i++)
        push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 20);
    assert_true(f->max_part[0] >= 2);
    assert_balanced(f);
}

/* ------------------------------------------------------------ stalls */

static void a_stalled_handler_is_cancelled_after_its_timeout_and_rerouted(void **state)
{
    fx *f = *state;
    start(f, "stall",
          (opts){.timeout = "300ms",
                 .route_extra = "    on_stall: { reroute: \"memory:stall.out\" }\n"});
    int64_t before = wall_ms();
    push(f, 0, "k1", "stall-payload");
    push(f, 0, "k2", "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(s.completed, 1);

    const call *stalled = find_call(f, 0, 0);
    const call *next = find_call(f, 0, 1);
    assert_non_null(stalled);
    assert_non_null(next);
    assert_true(stalled->saw_cancel);
    int64_t cancelled_after = stalled->end_ms - stalled->start_ms;
    assert_true(cancelled_after >= 298); /* ms rounding of two clocks */
    assert_true(cancelled_after < 300 + 250);
    /* The next message of the partition ran once the first one stalled, not later. */
    assert_true(next->start_ms >= stalled->start_ms + 298);
    assert_true(next->end_ms < stalled->start_ms + 300 + 250);

    assert_int_equal(tl_memory_sink_count("stall.out"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("stall.out", 0, &r), 0);
    assert_int_equal(r->len, strlen("stall-payload"));
    assert_memory_equal(r->payload, "stall-payload", r->len);
    assert_int_equal(r->key_len, 2);
    assert_memory_equal(r->key, "k1", 2);
    assert_header(r, "tl-reason", "stalled");
    assert_header(r, "tl-origin-topic", "stall");
    assert_header(r, "tl-origin-partition", "0");
    assert_header(r, "tl-origin-offset", "0");
    assert_header(r, "tl-attempt", "1");
    size_t len = 0;
    assert_non_null(tl_memory_record_header(r, "tl-error", &len));
    assert_true(len > 0);
    long long first_seen = header_num(r, "tl-first-seen-ms");
    assert_true(first_seen >= before);
    assert_true(first_seen <= r->timestamp_ms);
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 2);
    assert_balanced(f);
}

static bool two_workers(fx *f)
{
    unsigned n = tl_loop_workers(tl_service_loop(f->svc));
    if (n > f->seen_max_workers)
        f->seen_max_workers = n;
    return n >= 2;
}

static bool one_worker(fx *f)
{
    return tl_loop_workers(tl_service_loop(f->svc)) == 1;
}

static void script_late(fx *f)
{
    STEP(wait_stat(f, STAT(stalled), 1, 3000));
    STEP(wait_for(f, two_workers, 2000));
    /* With one worker, the rest can only run on the replacement. */
    STEP(wait_stat(f, STAT(completed), 3, 3000));
    atomic_store(&f->released, true);
    STEP(wait_stat(f, STAT(late), 1, 3000));
    /* The surplus thread leaves when it is next free: after the task it runs now. */
    STEP(tl_memory_push(f->topic, 0, NULL, "ok", 2) == 4);
    STEP(wait_for(f, one_worker, 2000));
    f->seen_workers_after = tl_loop_workers(tl_service_loop(f->svc));
    STEP(wait_for(f, all_settled, 3000));
}

static void a_late_result_is_counted_once_and_its_worker_was_replaced(void **state)
{
    fx *f = *state;
    start(f, "late",
          (opts){.workers = 1,
                 .max_replaced = 2,
                 .timeout = "200ms",
                 .route_extra = "    on_stall: { reroute: \"memory:late.out\" }\n"});
    push(f, 0, NULL, "stuck");
    for (int i = 0; i < 3; i++)
        push(f, 0, NULL, "ok");
    run(f, script_late);
    tl_service_stats s = stats(f);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 4);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("late.out"), 1);
    assert_true(s.replaced_workers >= 1);
    assert_int_equal(f->seen_max_workers, 2);
    assert_int_equal(f->seen_workers_after, 1);
    assert_true(s.healthy);
    assert_int_equal(tl_memory_committed(f->topic, 0), 5);
    assert_balanced(f);
}

static bool unhealthy(fx *f)
{
    return !stats(f).healthy;
}

static bool healthy(fx *f)
{
    return stats(f).healthy;
}

static void script_cap(fx *f)
{
    STEP(wait_stat(f, STAT(stalled), 2, 3000));
    STEP(wait_for(f, unhealthy, 1000));
    f->seen_unhealthy = true;
    atomic_store(&f->released, true);
    STEP(wait_stat(f, STAT(late), 2, 3000));
    STEP(wait_for(f, healthy, 1000));
    f->seen_healthy_again = true;
    STEP(wait_for(f, all_settled, 3000));
}

static void stuck_workers_past_the_cap_make_the_service_unhealthy_until_they_return(void **state)
{
    fx *f = *state;
    start(f, "cap",
          (opts){.workers = 2,
                 .max_replaced = 1,
                 .ordering = "none",
                 .timeout = "150ms",
                 .route_extra = "    on_stall: { reroute: \"memory:cap.out\" }\n"});
    push(f, 0, NULL, "stuck-1");
    push(f, 0, NULL, "stuck-2");
    assert_true(stats(f).healthy);
    run(f, script_cap);
    assert_true(f->seen_unhealthy);
    assert_true(f->seen_healthy_again);
    tl_service_stats s = stats(f);
    assert_int_equal(s.replaced_workers, 1);
    assert_int_equal(s.late, 2);
    assert_balanced(f);
}

/* ------------------------------------------------------------ failures */

static void a_failing_handler_is_retried_with_doubling_backoff_until_it_succeeds(void **state)
{
    fx *f = *state;
    start(f, "retry", (opts){.route_extra = "    on_error: { retries: 3, backoff: 50ms }\n"});
    push(f, 0, NULL, "flaky");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.failed, 2);
    assert_int_equal(f->ncalls, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(f->calls[i].attempt, i + 1);
    assert_true(f->calls[1].start_ms - f->calls[0].end_ms >= 50);
    assert_true(f->calls[2].start_ms - f->calls[1].end_ms >= 100);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_balanced(f);
}

/* The messages behind a failing one in its partition wait for its retries, even those
 * already lined up to run on the failing handler's worker. */
static void a_retry_runs_before_the_rest_of_its_partition(void **state)
{
    fx *f = *state;
    start(f, "lane-retry",
          (opts){.workers = 2,
                 .partitions = 2,
                 .batch = 64,
                 .route_extra = "    on_error: { retries: 3, backoff: 20ms }\n"});
    for (int i = 0; i < 60; i++) {
        push(f, 0, NULL, i == 10 || i == 40 ? "flaky" : "ok");
        push(f, 1, NULL, "ok");
    }
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 120);
    assert_int_equal(s.retries, 4);
    assert_int_equal(f->max_part[0], 1);
    assert_int_equal(f->max_part[1], 1);
    /* Partition 0's calls, in the order they began: every offset in turn, the flaky
     * ones three times, and nothing of offset k+1 before offset k's last attempt. */
    int64_t expect = 0;
    unsigned attempt = 1;
    for (size_t i = 0; i < f->ncalls; i++) {
        const call *c = &f->calls[i];
        if (c->partition != 0)
            continue;
        assert_int_equal(c->offset, expect);
        assert_int_equal(c->attempt, attempt);
        if ((expect == 10 || expect == 40) && attempt < 3) {
            attempt++;
        } else {
            expect++;
            attempt = 1;
        }
    }
    assert_int_equal(expect, 60);
    assert_int_equal(tl_memory_committed(f->topic, 0), 60);
    assert_balanced(f);
}

static void a_failure_past_its_retries_goes_to_the_error_target(void **state)
{
    fx *f = *state;
    start(
        f, "failing",
        (opts){.route_extra =
                   "    on_error: { retries: 2, backoff: 10ms, then: \"memory:failing.dlq\" }\n"});
    push(f, 0, "kf", "fail-payload");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(s.completed, 0);
    assert_int_equal(tl_memory_sink_count("failing.dlq"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("failing.dlq", 0, &r), 0);
    assert_memory_equal(r->payload, "fail-payload", r->len);
    assert_memory_equal(r->key, "kf", r->key_len);
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-error", "boom 0");
    assert_header(r, "tl-attempt", "3");
    assert_header(r, "tl-origin-topic", "failing");
    assert_header(r, "tl-origin-offset", "0");
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_balanced(f);
}

static void a_failure_with_no_target_is_dropped_and_settled(void **state)
{
    fx *f = *state;
    start(f, "dropping", (opts){.route_extra = "    on_error: { retries: 0 }\n"});
    push(f, 0, NULL, "ok");
    push(f, 0, NULL, "fail");
    push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.rerouted, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
    assert_balanced(f);
}

/* ------------------------------------------------------------ targets down */

#define DOWN_ROUTE "    on_error: { retries: 0, then: \"memory:down.dlq\" }\n"

/* Offsets 0-2 complete, 3 fails (to the target), 4-9 complete. */
static void push_with_failure_at_3(fx *f)
{
    for (int i = 0; i < 10; i++)
        push(f, 0, NULL, i == 3 ? "fail" : "ok");
}

static bool nine_completed_one_held(fx *f)
{
    return stats(f).completed == 9 && tl_memory_sink_held("down.dlq") == 1;
}

static void script_hold(fx *f)
{
    STEP(wait_for(f, nine_completed_one_held, 3000));
    sleep_ms(250); /* several commit rounds */
    f->committed_mid = tl_memory_committed(f->topic, 0);
    STEP(tl_memory_sink_release_held("down.dlq") == 1);
    STEP(wait_for(f, all_settled, 3000));
}

static void a_held_reroute_keeps_the_commit_at_its_offset_until_acknowledged(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_HOLD), 0);
    start(f, "down_hold", (opts){.route_extra = DOWN_ROUTE});
    push_with_failure_at_3(f);
    run(f, script_hold);
    assert_int_equal(f->committed_mid, 3);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    tl_service_stats s = stats(f);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("down.dlq"), 1);
    assert_balanced(f);
}

static void script_refuse(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 9, 3000));
    STEP(wait_stat(f, STAT(reroute_errors), 2, 3000));
    sleep_ms(100);
    f->committed_mid = tl_memory_committed(f->topic, 0);
    STEP(stat_at(f, STAT(rerouted)) == 0);
    tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_OK);
    STEP(wait_for(f, all_settled, 5000));
}

static void a_refused_reroute_is_retried_and_commits_nothing_past_it(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_FAIL), 0);
    start(f, "down_fail", (opts){.route_extra = DOWN_ROUTE});
    push_with_failure_at_3(f);
    run(f, script_refuse);
    assert_int_equal(f->committed_mid, 3);
    tl_service_stats s = stats(f);
    assert_true(s.reroute_errors >= 2);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("down.dlq"), 1);
    tl_target_stats ts[2];
    assert_int_equal(tl_service_targets(f->svc, ts, 2), 1);
    assert_int_equal(ts[0].rerouted, 1);
    assert_int_equal(ts[0].errors, s.reroute_errors);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_balanced(f);
}

/* ------------------------------------------------------------ backpressure */

static void script_sample_in_flight(fx *f)
{
    int64_t end = now_ms() + 15000;
    while (!all_settled(f)) {
        uint64_t n = stats(f).in_flight;
        if (n > f->seen_max_in_flight)
            f->seen_max_in_flight = n;
        STEP(now_ms() < end);
        sleep_ms(1);
    }
}

static void in_flight_stays_within_the_bound_plus_one_batch(void **state)
{
    fx *f = *state;
    f->sleep_ms = 2;
    start(f, "pressure", (opts){.max_in_flight = 10, .batch = 5, .ordering = "none"});
    for (int i = 0; i < 500; i++)
        push(f, 0, NULL, "ok");
    run(f, script_sample_in_flight);
    tl_service_stats s = stats(f);
    assert_true(f->seen_max_in_flight > 0);
    if (f->seen_max_in_flight > 10 + 5)
        fail_msg("%llu in flight", (unsigned long long)f->seen_max_in_flight);
    assert_true(s.paused >= 1);
    assert_int_equal(s.completed, 500);
    assert_int_equal(tl_memory_committed(f->topic, 0), 500);
    assert_balanced(f);
}

/* Every offset below n (at most 64) of partition p was handled to the end at least once. */
static bool part_done(fx *f, int32_t p, int64_t n)
{
    bool seen[64] = {false};
    if (n > 64)
        return false;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        if (f->calls[i].partition == p && f->calls[i].end_ms && f->calls[i].offset >= 0 &&
            f->calls[i].offset < n)
            seen[f->calls[i].offset] = true;
    pthread_mutex_unlock(&f->mu);
    for (int64_t i = 0; i < n; i++)
        if (!seen[i])
            return false;
    return true;
}

static void script_hold_past_the_limit(fx *f)
{
    STEP(wait_stat(f, STAT(source_pauses), 1, 5000));
    /* Paused: the deliver that waited went back, and nothing more comes in. */
    size_t pending = tl_memory_pending(f->topic);
    sleep_ms(300);
    STEP(pending > 0 && tl_memory_pending(f->topic) == pending);
    STEP(stat_at(f, STAT(in_flight)) == 8);
    STEP(stat_at(f, STAT(completed)) == 0);
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 5000));
}

/* 40 messages whose handlers hang until released, 8 in flight at most, on a source
 * that may wait 200 ms: the source is held as soon as it starts. */
static void start_held(fx *f, const char *topic, const char *drain)
{
    start(f, topic,
          (opts){.workers = 8,
                 .max_in_flight = 8,
                 .batch = 4,
                 .ordering = "none",
                 .drain = drain,
                 .source_extra = ", hold_limit: 200ms"});
    for (int i = 0; i < 40; i++)
        push(f, 0, NULL, "stuck");
}

/* A source whose thread may wait only so long (Kafka's poll interval) is paused when
 * backpressure holds it longer, and resumed once intake takes every held batch. */
static void a_source_held_past_its_hold_limit_is_paused_then_resumed(void **state)
{
    fx *f = *state;
    start_held(f, "hold_limit", NULL);
    run(f, script_hold_past_the_limit);
    tl_service_stats s = stats(f);
    assert_true(s.source_pauses >= 1);
    assert_int_equal(s.completed, 40);
    assert_int_equal(f->ncalls, 40); /* each message handled once */
    assert_int_equal(tl_memory_committed(f->topic, 0), 40);
    assert_balanced(f);
}

static bool hold_offsets_all_done(fx *f)
{
    return part_done(f, 0, 40) && all_settled(f) && tl_memory_committed(f->topic, 0) == 40;
}

static void script_revoke_while_held(fx *f)
{
    STEP(wait_stat(f, STAT(source_pauses), 1, 5000));
    /* Waits out the drain timeout (the handlers hang), gives the held batches back. */
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    atomic_store(&f->released, true);
    /* Read again from the committed offset: only a resumed source delivers it. */
    f->assign_rc = tl_memory_assign(f->topic, 0);
    STEP(wait_for(f, hold_offsets_all_done, 10000));
}

/* A revoke that takes back every held batch ends the hold: the source is resumed. */
static void a_revoke_that_ends_a_hold_resumes_the_source(void **state)
{
    fx *f = *state;
    start_held(f, "hold_revoke", "300ms");
    run(f, script_revoke_while_held);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_true(stats(f).source_pauses >= 1);
    assert_int_equal(tl_memory_committed(f->topic, 0), 40);
    assert_int_equal(tl_memory_outstanding(f->topic), 0);
}

/* Holds shorter than the limit pause nothing. */
static void holds_shorter_than_the_hold_limit_pause_nothing(void **state)
{
    fx *f = *state;
    f->sleep_ms = 2;
    start(f, "hold_short",
          (opts){.max_in_flight = 10,
                 .batch = 5,
                 .ordering = "none",
                 .source_extra = ", hold_limit: 10s"});
    for (int i = 0; i < 200; i++)
        push(f, 0, NULL, "ok");
    run(f, script_sample_in_flight);
    tl_service_stats s = stats(f);
    assert_true(s.paused >= 1);
    assert_int_equal(s.source_pauses, 0);
    assert_int_equal(s.completed, 200);
    assert_balanced(f);
}

/* ------------------------------------------------------------ drain */

static bool four_started(fx *f)
{
    return ncalls(f) >= 4;
}

static void script_stop_while_running(fx *f)
{
    STEP(wait_for(f, four_started, 3000));
}

static void stop_lets_running_handlers_finish_and_commits_them(void **state)
{
    fx *f = *state;
    f->sleep_ms = 150;
    start(f, "drain", (opts){.partitions = 4});
    for (int i = 0; i < 8; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_stop_while_running);
    assert_true(f->ncalls >= 4);
    int done[4] = {0};
    for (size_t i = 0; i < f->ncalls; i++) {
        assert_true(f->calls[i].end_ms > 0);
        done[f->calls[i].partition]++;
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), done[p]);
    assert_balanced(f);
}

static bool stuck_running_two_done(fx *f)
{
    return ncalls(f) >= 3 && stats(f).completed >= 2;
}

static void script_stop_with_stuck(fx *f)
{
    STEP(wait_for(f, stuck_running_two_done, 3000));
}

static void
stop_with_a_stuck_handler_returns_after_the_drain_timeout_without_its_commit(void **state)
{
    fx *f = *state;
    start(f, "drain_stuck",
          (opts){.workers = 2, .ordering = "none", .drain = "200ms", .timeout = "10s"});
    push(f, 0, NULL, "ok");
    push(f, 0, NULL, "stuck");
    push(f, 0, NULL, "ok");
    run(f, script_stop_with_stuck);
    int64_t took = f->run_end_ms - f->stop_at_ms;
    assert_true(took >= 200);
    assert_true(took < 200 + 400);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_int_equal(stats(f).in_flight, 1);
    const call *stuck = find_call(f, 0, 1);
    assert_non_null(stuck);
    assert_int_equal(stuck->end_ms, 0);
}

/* ------------------------------------------------------------ revoke */

static size_t count_p0(fx *f, bool done_only)
{
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        if (f->calls[i].partition == 0 && (!done_only || f->calls[i].end_ms))
            n++;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool p0_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool r = f->active_part[0] > 0;
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* Every offset of partition 0 was handled to the end at least once. */
static bool p0_all_done(fx *f)
{
    return part_done(f, 0, 5);
}

static bool p0_done_and_settled(fx *f)
{
    return p0_all_done(f) && all_settled(f);
}

static void script_revoke(fx *f)
{
    STEP(wait_for(f, p0_running, 3000));
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    pthread_mutex_lock(&f->mu);
    f->active_at_revoke = f->active_part[0];
    pthread_mutex_unlock(&f->mu);
    f->p0_done_at_revoke = count_p0(f, true);
    f->p0_calls_at_revoke = count_p0(f, false);
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    sleep_ms(300);
    f->p0_calls_while_revoked = count_p0(f, false);
    f->assign_rc = tl_memory_assign(f->topic, 0);
    STEP(wait_for(f, p0_done_and_settled, 5000));
}

static void revoke_waits_for_running_handlers_commits_them_and_drops_the_queue(void **state)
{
    fx *f = *state;
    f->sleep_ms = 100;
    start(f, "revoke", (opts){.workers = 2, .partitions = 2});
    for (int i = 0; i < 5; i++) {
        push(f, 0, NULL, "ok");
        push(f, 1, NULL, "ok");
    }
    run(f, script_revoke);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->active_at_revoke, 0);
    assert_true(f->p0_done_at_revoke >= 1);
    assert_true(f->p0_done_at_revoke < 5);
    assert_int_equal(f->p0_calls_at_revoke, f->p0_done_at_revoke);
    /* In partition order, what completed is exactly the committed prefix. */
    assert_int_equal(f->committed_at_revoke, (int64_t)f->p0_done_at_revoke);
    assert_int_equal(f->p0_calls_while_revoked, f->p0_calls_at_revoke);
    assert_int_equal(tl_memory_committed(f->topic, 0), 5);
    assert_int_equal(tl_memory_committed(f->topic, 1), 5);
    assert_balanced(f);
}

static bool p0_committed_to_the_end(fx *f)
{
    return tl_memory_committed(f->topic, 0) == 10;
}

static void script_commits_lost_then_revoke(fx *f)
{
    STEP(wait_for(f, all_settled, 5000));
    f->revoke_rc = tl_memory_revoke(f->topic, 0); /* its commit is lost too */
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    tl_memory_lose_commits(f->topic, false);
    f->assign_rc = tl_memory_assign(f->topic, 0); /* read again from the start */
    STEP(wait_stat(f, STAT(completed), 20, 5000));
    STEP(wait_for(f, p0_committed_to_the_end, 5000));
}

/* Kafka stores offsets and a coordinator that goes away can lose them: a partition
 * assigned again is delivered from the older position, and once those messages
 * settle again their offsets are committed again, not taken as done already. */
static void offsets_committed_before_a_revoke_are_committed_again_after_reassignment(void **state)
{
    fx *f = *state;
    start(f, "lost_commits", (opts){0});
    assert_int_equal(tl_memory_lose_commits(f->topic, true), 0);
    for (int i = 0; i < 10; i++)
        push(f, 0, NULL, "ok");
    run(f, script_commits_lost_then_revoke);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->committed_at_revoke, -1);
    assert_int_equal(stats(f).completed, 20);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(every_message_completes_and_commits_reach_the_end),
        T(committed_positions_can_be_read_from_another_thread_while_they_move),
        T(partition_ordering_runs_each_partition_one_at_a_time_in_offset_order),
        T(partition_ordering_holds_over_long_chains_with_retries_in_them),
        T(key_ordering_runs_each_key_one_at_a_time_and_keys_in_parallel),
        T(no_ordering_runs_messages_of_one_partition_in_parallel),
        T(a_stalled_handler_is_cancelled_after_its_timeout_and_rerouted),
        T(a_late_result_is_counted_once_and_its_worker_was_replaced),
        T(stuck_workers_past_the_cap_make_the_service_unhealthy_until_they_return),
        T(a_failing_handler_is_retried_with_doubling_backoff_until_it_succeeds),
        T(a_retry_runs_before_the_rest_of_its_partition),
        T(a_failure_past_its_retries_goes_to_the_error_target),
        T(a_failure_with_no_target_is_dropped_and_settled),
        T(a_held_reroute_keeps_the_commit_at_its_offset_until_acknowledged),
        T(a_refused_reroute_is_retried_and_commits_nothing_past_it),
        T(in_flight_stays_within_the_bound_plus_one_batch),
        T(a_source_held_past_its_hold_limit_is_paused_then_resumed),
        T(holds_shorter_than_the_hold_limit_pause_nothing),
        T(a_revoke_that_ends_a_hold_resumes_the_source),
        T(stop_lets_running_handlers_finish_and_commits_them),
        T(stop_with_a_stuck_handler_returns_after_the_drain_timeout_without_its_commit),
        T(revoke_waits_for_running_handlers_commits_them_and_drops_the_queue),
        T(offsets_committed_before_a_revoke_are_committed_again_after_reassignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
