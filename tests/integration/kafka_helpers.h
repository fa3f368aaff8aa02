/*
 * What the Kafka adapter tests (test_kafka_source, test_kafka_sink, test_kafka_service)
 * share: librdkafka's in-process mock cluster, the builders of a source's parameters,
 * and a recorder that stands in for the runtime behind a source.
 *
 * Thread rules: the recorder's fields are written by the sources' poll threads and
 * read by the test thread, always under rec.mu.
 *
 * Message i of a batch has payload "v<i>", key "k<i>", headers h-idx="<i>" and
 * h-fixed="x", and goes to partition i % parts, so every field can be checked.
 */
#ifndef TL_TEST_KAFKA_HELPERS_H
#define TL_TEST_KAFKA_HELPERS_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <taskloop/kafka.h>
#include <taskloop/service.h>

#define PARTS 4
#define MAX_IDX 2048 /* messages per test, at most */
#define T_WAIT 20000 /* ms: the longest any single wait may take */

/* The adapter's ops, as the tests call them. */
#define SRC (&tl_kafka_source_ops)
#define SINK (&tl_kafka_sink_ops)

/* Monotonic milliseconds. */
int64_t now_ms(void);

/* Sleeps ms milliseconds. */
void sleep_ms(int ms);

/* Asserts that cond comes to hold within ms, checking every 20 ms. */
#define assert_eventually(cond, ms)                                                                \
    do {                                                                                           \
        int64_t end_ = now_ms() + (ms);                                                            \
        while (!(cond) && now_ms() < end_)                                                         \
            sleep_ms(20);                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

/* ---------------------------------------------------------------- the mock cluster */

typedef struct cluster {
    rd_kafka_t *rk; /* holds the mock cluster; also used to produce test data */
    rd_kafka_mock_cluster_t *mc;
    char boot[256];
} cluster;

/* A mock cluster of brokers with topic of parts partitions (no topic when NULL). */
cluster *cluster_new(int brokers, const char *topic, int parts);

/* Destroys the mock cluster and its handle. */
void cluster_free(cluster *c);

/* Produces messages first..first+n-1 (see the top of this file) and waits for them. */
void produce(const cluster *c, const char *topic, int first, int n);

/* ---------------------------------------------------------------- parameters */

typedef struct conf {
    tl_param_value v[8];
    tl_kv kv[16];
    const char *topics[1];
    tl_params p;
} conf;

/* Appends one parameter to c. */
void conf_add(conf *c, const char *name, tl_param_type type, const char *str, int64_t num);

/* A source section; kafka holds "key", "value" pairs ended by NULL. */
const tl_params *source_conf(conf *c, const char *brokers, const char *group, const char *topic,
                             const char *const *kafka);

/* ---------------------------------------------------------------- the recorder */

typedef struct rec {
    pthread_mutex_t mu;
    bool commit_each;            /* store next offsets as soon as delivered, like a fast runtime */
    bool any_partition;          /* keyed sends: skip the partition and offset checks */
    int first_delivery_ms;       /* the first delivery returns this much later */
    int deliveries, backwards;   /* backwards: below an offset delivered before */
    unsigned char seen[MAX_IDX]; /* deliveries per message index */
    int delivered, dups, bad;
    int64_t next[PARTS];  /* highest offset delivered + 1 */
    int64_t first[PARTS]; /* lowest offset delivered, -1 before any */
    bool owned[PARTS];
    int assigned_ev, revoked_ev, first_revoke_n, revoke_store_fail;
    int errors, fatal;
    char last_err[256];
} rec;

/* An empty recorder: nothing delivered, no partition owned. */
void rec_init(rec *r);

/* Opens and starts a source with parameters p whose events r records. */
tl_source *open_source(rec *r, const tl_params *p);

/* The same, with `contexts` transaction contexts enabled before the start (0: none). */
tl_source *open_source_txn(rec *r, const tl_params *p, size_t contexts);

/* Stops and closes a source of open_source(). */
void close_source(tl_source *s);

/* Reads an int field of r under its lock. */
int rec_get(rec *r, const int *field);

/* How many partitions r holds now. */
int owned_count(rec *r);

/* Counts messages 0..n-1 seen by any of the recorders (b may be NULL). */
int covered(rec *a, rec *b, int n);

/* Two members got messages 0..n-1 between them exactly once, all well formed. */
void assert_each_once(rec *a, rec *b, int n);

#endif
