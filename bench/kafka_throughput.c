/*
 * Kafka consumer throughput: a plain librdkafka loop (rd_kafka_consumer_poll, nothing
 * done per message) against taskloop (the kafka source, a no-op handler registered in
 * C) with ordering none and partition, inline and on the worker pool. Every consumer
 * reads the same topic with a group of its own; the clock runs from its first message
 * to its last, so group joins and broker start-up are not counted.
 *
 *   kafka_throughput --brokers HOST:PORT --topic T -n N
 *       a real broker; the topic already holds N messages.
 *   kafka_throughput --mock -n N [--partitions P]
 *       librdkafka's mock cluster in this process. It keeps only about 100,000
 *       messages per topic, so a producer thread fills a fresh topic per consumer
 *       while it consumes, staying at most 50,000 messages ahead of it.
 *
 * Both consumers of a mock run fetch with fetch.wait.max.ms 10 (FETCH_WAIT_MOCK): the
 * consumer keeps catching up with the producer there, and the mock cluster answers a
 * fetch at the end of the log only after the whole wait (500 ms by default) even when
 * messages arrive meanwhile, so rounds spent most of their time waiting (about
 * 180,000 msgs/s whatever the consumer).
 *
 * --set KEY=VALUE (repeatable) gives a librdkafka property to every consumer alike.
 *
 * Every consumer runs --rounds times (3 by default, at most 20), the variants taking
 * turns; its best round and its median round are each compared with the plain loop's.
 * On a small shared machine one round's figures move by tens of percent, and taking
 * turns exposes every variant to the same drift.
 *
 * Thread rules: main runs the consumers one after another; the mock producer thread
 * reads the consumer's progress through an atomic or tl_service_stats_get.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include <taskloop/kafka.h>

#define RUN_TIMEOUT_MS 180000
#define MAX_AHEAD 50000
#define MSG_SIZE 100
#define FETCH_WAIT_MOCK "10"
#define MAX_SET 8
#define MAX_SET_LEN 200 /* of one --set KEY=VALUE */

typedef struct variant {
    const char *name;
    const char *ordering; /* NULL: the plain librdkafka loop */
    bool run_inline;
} variant;

static const variant variants[] = {
    {"plain", NULL, false},
    {"tl_none_inline", "none", true},
    {"tl_none_pool", "none", false},
    {"tl_partition_inline", "partition", true},
    {"tl_partition_pool", "partition", false},
};

typedef struct bench_args {
    const char *brokers;
    const char *topic;
    uint64_t n;
    int partitions;
    const char *only; /* run just this variant (and plain, the reference) */
    bool mock;
    int rounds;
    const char *set[MAX_SET][2]; /* --set key=value: librdkafka properties for both */
    int nset;
} bench_args;

/* What the mock producer watches to stay within MAX_AHEAD of the consumer. */
typedef struct progress {
    _Atomic uint64_t plain_consumed;
    tl_service *svc; /* set while a taskloop consumer runs */
    _Atomic bool stop;
} progress;

static uint64_t consumed_so_far(progress *p)
{
    if (!p->svc)
        return atomic_load(&p->plain_consumed);
    tl_service_stats st;
    tl_service_stats_get(p->svc, &st);
    return st.consumed;
}

/* ---------------------------------------------------------------- the plain loop */

static rd_kafka_t *plain_consumer(const bench_args *a, const char *group, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", a->brokers},
                           {"group.id", group},
                           {"auto.offset.reset", "earliest"},
                           {"enable.auto.offset.store", "false"},
                           /* as the taskloop source sets it (adapters/kafka/src/source.c) */
                           {"queued.min.messages", "1000000"},
                           {"fetch.wait.max.ms", a->mock ? FETCH_WAIT_MOCK : "500"}};
    size_t nkv = sizeof kv / sizeof kv[0];
    for (size_t i = 0; i < nkv + (size_t)a->nset; i++) {
        const char *const *p = i < nkv ? kv[i] : a->set[i - nkv];
        if (rd_kafka_conf_set(conf, p[0], p[1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "kafka_throughput: %s\n", err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka_throughput: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Returns the seconds from the first message to the n-th, or -1 on timeout. */
static double run_plain(const bench_args *a, const char *group, const char *topic, progress *p)
{
    rd_kafka_t *rk = plain_consumer(a, group, topic);
    if (!rk)
        return -1;
    uint64_t got = 0;
    bench_cpu c0, c1;
    bench_cpu_read(&c0, true);
    int64_t first = 0, last = 0, deadline = bench_now_ns() + (int64_t)RUN_TIMEOUT_MS * 1000000;
    /* The deadline is looked at when a poll comes back empty and every 4096 messages:
     * a clock read per message would be a cost taskloop's consumers do not pay. */
    for (uint64_t polls = 0; got < a->n; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if ((!m || (polls & 4095) == 0) && bench_now_ns() >= deadline) {
            if (m)
                rd_kafka_message_destroy(m);
            break;
        }
        if (!m)
            continue;
        if (!m->err) {
            if (got++ == 0)
                first = bench_now_ns();
            if ((got & 1023) == 0)
                atomic_store_explicit(&p->plain_consumed, got, memory_order_relaxed);
        }
        rd_kafka_message_destroy(m);
    }
    last = bench_now_ns();
    bench_cpu_read(&c1, true);
    bench_cpu_print("plain", &c0, &c1, got);
    atomic_store(&p->plain_consumed, got);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got == a->n ? (double)(last - first) / 1e9 : -1;
}

/* ---------------------------------------------------------------- taskloop */

static double run_taskloop(const bench_args *a, const variant *v, const char *group,
                           const char *topic, progress *p)
{
    bench_mark mark = {0};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_kafka_register(reg) != 0 ||
        tl_register_handler(reg, "noop", bench_noop, &mark) != 0)
        return -1;
    /* parse() keeps each --set under MAX_SET_LEN, so every one fits. */
    char extra[MAX_SET * (MAX_SET_LEN + 8)] = "";
    size_t off = 0;
    for (int i = 0; i < a->nset; i++)
        off += (size_t)snprintf(extra + off, sizeof(extra) - off, ", \"%s\": \"%s\"", a->set[i][0],
                                a->set[i][1]);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: 2 }\n"
             "sources:\n"
             "  in: { type: kafka, brokers: \"%s\", group: \"%s\", topics: [\"%s\"],\n"
             "        kafka: { auto.offset.reset: earliest, fetch.wait.max.ms: %s%s } }\n"
             "routes:\n"
             "  - { source: in, handler: noop, ordering: %s, inline: %s, timeout: 30s }\n",
             a->brokers, group, topic, a->mock ? FETCH_WAIT_MOCK : "500", extra, v->ordering,
             v->run_inline ? "true" : "false");
    bench_svc b;
    double secs = -1;
    if (bench_svc_start(&b, reg, yaml) == 0) {
        p->svc = b.svc;
        bench_cpu c0, c1;
        bench_cpu_read(&c0, false);
        int64_t done = bench_svc_wait_settled(&b, a->n, RUN_TIMEOUT_MS);
        bench_cpu_read(&c1, false);
        bench_cpu_print(v->name, &c0, &c1, a->n);
        int64_t first = atomic_load(&mark.first_ns);
        if (done > 0 && first > 0)
            secs = (double)(done - first) / 1e9;
        tl_service_stats st;
        tl_service_stats_get(b.svc, &st);
        fprintf(stderr, "  (%s: %llu backpressure pauses)\n", v->name,
                (unsigned long long)st.paused);
        p->svc = NULL;
        bench_svc_stop(&b);
    }
    tl_registry_free(reg);
    return secs;
}

/* ---------------------------------------------------------------- the mock producer */

typedef struct producer {
    const bench_args *a;
    const char *topic;
    progress *p;
    pthread_t thread;
    uint64_t sent;
} producer;

static void *produce_main(void *arg)
{
    producer *pr = arg;
    char err[512], payload[MSG_SIZE];
    memset(payload, 'x', sizeof(payload));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", pr->a->brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        return NULL;
    int64_t deadline = bench_now_ns() + (int64_t)RUN_TIMEOUT_MS * 1000000;
    /* The consumer's progress is looked at every 1024 messages and while waiting, not
     * per message: taskloop's counters are written by its loop thread, and reading
     * them per message would take their cache lines from it a million times. */
    uint64_t consumed = 0;
    for (uint64_t i = 0; i < pr->a->n && !atomic_load(&pr->p->stop);) {
        if (i > consumed + MAX_AHEAD) {
            consumed = consumed_so_far(pr->p);
            if (i > consumed + MAX_AHEAD) {
                if (bench_now_ns() > deadline)
                    break;
                rd_kafka_poll(rk, 1);
                continue;
            }
        }
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(pr->topic),
                              RD_KAFKA_V_PARTITION((int32_t)(i % (uint64_t)pr->a->partitions)),
                              RD_KAFKA_V_VALUE(payload, sizeof(payload)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 1);
            continue;
        }
        i++;
        pr->sent = i;
        if ((i & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            consumed = consumed_so_far(pr->p);
            if (bench_now_ns() > deadline)
                break;
        }
    }
    rd_kafka_flush(rk, 10000);
    rd_kafka_destroy(rk);
    return NULL;
}

/* ---------------------------------------------------------------- main */

static double run_variant(const bench_args *a, const variant *v, int round,
                          rd_kafka_mock_cluster_t *mc)
{
    char group[128], topic[128];
    snprintf(group, sizeof(group), "bench-%s-%d-%d", v->name, (int)getpid(), round);
    snprintf(topic, sizeof(topic), "%s", a->topic);
    progress p = {0};
    producer pr = {.a = a, .p = &p};
    if (mc) {
        snprintf(topic, sizeof(topic), "bench-%s-%d", v->name, round);
        rd_kafka_mock_topic_create(mc, topic, a->partitions, 1);
        pr.topic = topic;
        if (pthread_create(&pr.thread, NULL, produce_main, &pr) != 0)
            return -1;
    }
    double secs =
        v->ordering ? run_taskloop(a, v, group, topic, &p) : run_plain(a, group, topic, &p);
    if (mc) {
        atomic_store(&p.stop, true);
        pthread_join(pr.thread, NULL);
    }
    return secs;
}

static int parse(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){.topic = "bench", .n = 1000000, .partitions = 8, .rounds = 3};
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--mock") == 0)
            a->mock = true;
        else if (strcmp(argv[i], "--brokers") == 0 && more)
            a->brokers = argv[++i];
        else if (strcmp(argv[i], "--topic") == 0 && more)
            a->topic = argv[++i];
        else if (strcmp(argv[i], "-n") == 0 && more)
            a->n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--only") == 0 && more)
            a->only = argv[++i];
        else if (strcmp(argv[i], "--partitions") == 0 && more)
            a->partitions = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && more)
            a->rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--set") == 0 && more && a->nset < MAX_SET &&
                 strchr(argv[i + 1], '=') && strlen(argv[i + 1]) < MAX_SET_LEN) {
            char *kv = argv[++i], *eq = strchr(kv, '=');
            *eq = '\0';
            a->set[a->nset][0] = kv;
            a->set[a->nset++][1] = eq + 1;
        } else
            return -1;
    }
    return (a->mock || a->brokers) && a->n > 0 && a->partitions > 0 && a->rounds > 0 &&
                   a->rounds <= BENCH_MAX_ROUNDS
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    bench_args a;
    if (parse(argc, argv, &a) != 0) {
        fprintf(stderr,
                "usage: kafka_throughput --brokers B --topic T -n N [--only VARIANT] "
                "[--rounds R] [--set KEY=VALUE]...\n"
                "       kafka_throughput --mock -n N [--partitions P] [--only VARIANT] "
                "[--rounds R] [--set KEY=VALUE]...\n"
                "  --set: a librdkafka property for every consumer, plain and "
                "taskloop (up to %d)\n",
                MAX_SET);
        return 2;
    }
    rd_kafka_t *mock_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    if (a.mock) {
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        mc = mock_rk ? rd_kafka_mock_cluster_new(mock_rk, 1) : NULL;
        if (!mc) {
            fprintf(stderr, "kafka_throughput: no mock cluster: %s\n", err);
            return 1;
        }
        a.brokers = rd_kafka_mock_cluster_bootstraps(mc);
    }
    const char *bench = a.mock ? "kafka_mock" : "kafka_broker";
    printf("%s: %" PRIu64 " messages of %d bytes, %s\n", bench, a.n, MSG_SIZE,
           a.mock ? "produced while consumed" : "pre-filled topic");
    enum { NV = sizeof variants / sizeof variants[0] };
    bench_rounds rounds[NV] = {0};
    for (int r = 0; r < a.rounds; r++) {
        for (size_t i = 0; i < NV; i++) {
            if (i > 0 && a.only && strcmp(a.only, variants[i].name) != 0)
                continue;
            double secs = run_variant(&a, &variants[i], r, mc);
            double rate = secs > 0 ? (double)a.n / secs : -1;
            printf("  (round %d: %s %.0f msgs/s)\n", r + 1, variants[i].name, rate);
            bench_rounds_add(&rounds[i], rate);
        }
    }
    bench_rounds_header("consumer", a.rounds);
    int rc = 0;
    for (size_t i = 0; i < NV; i++) {
        if (i > 0 && a.only && strcmp(a.only, variants[i].name) != 0)
            continue;
        if (!bench_rounds_row(bench, NULL, variants[i].name, &rounds[i], &rounds[0]))
            rc = 1;
    }
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk)
        rd_kafka_destroy(mock_rk);
    return rc;
}
