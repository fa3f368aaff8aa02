/*
 * The Kafka adapter against librdkafka's in-process mock cluster: one test per
 * behaviour of the source (delivery, offsets, pause, faults, rebalance) and the sink.
 *
 * Thread rules: the recorder's fields are written by the sources' poll threads and
 * read by the test thread, always under rec.mu.
 *
 * Message i of a batch has payload "v<i>", key "k<i>", headers h-idx="<i>" and
 * h-fixed="x", and goes to partition i % parts, so every field can be checked.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <taskloop/kafka.h>
#include <taskloop/service.h>

#define PARTS 4
#define MAX_IDX 2048 /* messages per test, at most */
#define T_WAIT 20000 /* ms: the longest any single wait may take */

static const tl_source_ops *SRC = &tl_kafka_source_ops;
static const tl_sink_ops *SINK = &tl_kafka_sink_ops;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Asserts that cond comes to hold within ms, checking every 20 ms. */
#define assert_eventually(cond, ms)                                                                \
    do {                                                                                           \
        int64_t end_ = now_ms() + (ms);                                                            \
        while (!(cond) && now_ms() < end_)                                                         \
            sleep_ms(20);                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* ---------------------------------------------------------------- the mock cluster */

typedef struct cluster {
    rd_kafka_t *rk; /* holds the mock cluster; also used to produce test data */
    rd_kafka_mock_cluster_t *mc;
    char boot[256];
} cluster;

static cluster *cluster_new(int brokers, const char *topic, int parts)
{
    cluster *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    /* A producer of its own with no brokers: the mock cluster needs a handle. */
    c->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(c->rk);
    c->mc = rd_kafka_mock_cluster_new(c->rk, brokers);
    assert_non_null(c->mc);
    snprintf(c->boot, sizeof(c->boot), "%s", rd_kafka_mock_cluster_bootstraps(c->mc));
    if (topic)
        assert_int_equal(rd_kafka_mock_topic_create(c->mc, topic, parts, 1), 0);
    return c;
}

static void cluster_free(cluster *c)
{
    rd_kafka_mock_cluster_destroy(c->mc);
    rd_kafka_destroy(c->rk);
    free(c);
}

/* Produces messages first..first+n-1 (see the top of the file) and waits for them. */
static void produce(const cluster *c, const char *topic, int first, int n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", c->boot, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(p);
    for (int i = first; i < first + n; i++) {
        char v[16], k[16], idx[16];
        snprintf(v, sizeof(v), "v%d", i);
        snprintf(k, sizeof(k), "k%d", i);
        snprintf(idx, sizeof(idx), "%d", i);
        assert_int_equal(
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % PARTS),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE(v, strlen(v)), RD_KAFKA_V_KEY(k, strlen(k)),
                              RD_KAFKA_V_HEADER("h-idx", idx, -1),
                              RD_KAFKA_V_HEADER("h-fixed", "x", 1), RD_KAFKA_V_END),
            0);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    rd_kafka_destroy(p);
}

/* ---------------------------------------------------------------- parameters */

typedef struct conf {
    tl_param_value v[8];
    tl_kv kv[16];
    const char *topics[1];
    tl_params p;
} conf;

static void conf_add(conf *c, const char *name, tl_param_type type, const char *str, int64_t num)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = type, .str = str, .num = num};
}

/* A source section; kafka holds "key", "value" pairs ended by NULL. */
static const tl_params *source_conf(conf *c, const char *brokers, const char *group,
                                    const char *topic, const char *const *kafka)
{
    memset(c, 0, sizeof(*c));
    c->p.section = "test";
    c->p.v = c->v;
    conf_add(c, "brokers", TL_PARAM_STRING, brokers, 0);
    conf_add(c, "group", TL_PARAM_STRING, group, 0);
    c->topics[0] = topic;
    c->v[c->p.n++] =
        (tl_param_value){.name = "topics", .type = TL_PARAM_LIST, .list = c->topics, .nlist = 1};
    conf_add(c, "poll_timeout", TL_PARAM_DURATION, "50ms", 50);
    size_t n = 0;
    c->kv[n++] = (tl_kv){"auto.offset.reset", "earliest"};
    for (; kafka && kafka[0]; kafka += 2)
        c->kv[n++] = (tl_kv){kafka[0], kafka[1]};
    c->v[c->p.n++] =
        (tl_param_value){.name = "kafka", .type = TL_PARAM_MAP, .map = c->kv, .nmap = n};
    return &c->p;
}

/*
 * Short group timeouts: the 2.0.2 mock completes a rebalance only after about the
 * session timeout (with the defaults a joining member got nothing within 10 s).
 */
#define FAST_GROUP_KV                                                                              \
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", "max.poll.interval.ms", "3500"
static const char *const FAST_GROUP[] = {FAST_GROUP_KV, NULL};

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

static void rec_init(rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    for (int p = 0; p < PARTS; p++)
        r->first[p] = -1;
}

/* The i of payload "v<i>" (not NUL-terminated), or -1. */
static int msg_index(const tl_msg *m)
{
    const char *p = m->payload;
    if (m->len < 2 || m->len > 8 || p[0] != 'v')
        return -1;
    int i = 0;
    for (size_t k = 1; k < m->len; k++) {
        if (p[k] < '0' || p[k] > '9')
            return -1;
        i = i * 10 + (p[k] - '0');
    }
    return i;
}

/* Checks every field against the scheme at the top of the file; true when all match. */
static bool msg_ok(const tl_msg *m, bool any_partition)
{
    char want[32];
    int i = msg_index(m);
    size_t hlen = 0;
    const void *h = tl_msg_header(m, "h-idx", &hlen);
    snprintf(want, sizeof(want), "k%d", i);
    bool ok = i >= 0 && i < MAX_IDX && m->partition >= 0 && m->partition < PARTS;
    /* Every test produces 0..n-1 in order to a fresh topic: offsets follow from i. */
    ok = ok && (any_partition || (m->partition == i % PARTS && m->offset == i / PARTS));
    ok = ok && m->key_len == strlen(want) && memcmp(m->key, want, m->key_len) == 0;
    snprintf(want, sizeof(want), "%d", i);
    ok = ok && m->nheaders == 2 && h && hlen == strlen(want) && memcmp(h, want, hlen) == 0;
    h = tl_msg_header(m, "h-fixed", &hlen);
    ok = ok && h && hlen == 1 && memcmp(h, "x", 1) == 0;
    ok = ok && strncmp(m->origin, "t-", 2) == 0 && m->timestamp_ms > 0 && m->handle;
    return ok;
}

static void record(rec *r, const tl_msg *m)
{
    int p = m->partition;
    if (!msg_ok(m, r->any_partition)) {
        r->bad++;
        return;
    }
    if (r->seen[msg_index(m)]++)
        r->dups++;
    if (m->offset < r->next[p])
        r->backwards++;
    r->delivered++;
    if (m->offset + 1 > r->next[p])
        r->next[p] = m->offset + 1;
    if (r->first[p] < 0 || m->offset < r->first[p])
        r->first[p] = m->offset;
}

static void ev_deliver(void *rt, tl_source *src, tl_msg **msgs, size_t n)
{
    rec *r = rt;
    pthread_mutex_lock(&r->mu);
    int wait_ms = r->deliveries++ == 0 ? r->first_delivery_ms : 0;
    for (size_t i = 0; i < n; i++) {
        record(r, msgs[i]);
        if (r->commit_each &&
            SRC->commit(src, msgs[i]->origin, msgs[i]->partition, msgs[i]->offset + 1) != 0)
            r->bad++;
        SRC->release(src, msgs[i]);
    }
    pthread_mutex_unlock(&r->mu);
    if (wait_ms > 0)
        sleep_ms(wait_ms);
}

static void ev_assigned(void *rt, tl_source *src, const tl_partition *parts, size_t n)
{
    (void)src;
    rec *r = rt;
    pthread_mutex_lock(&r->mu);
    r->assigned_ev++;
    for (size_t i = 0; i < n; i++)
        r->owned[parts[i].partition % PARTS] = true;
    pthread_mutex_unlock(&r->mu);
}

/* Storing an offset succeeds only for an assigned partition: proof they are still ours. */
static void ev_revoked(void *rt, tl_source *src, const tl_partition *parts, size_t n)
{
    rec *r = rt;
    pthread_mutex_lock(&r->mu);
    if (r->revoked_ev++ == 0)
        r->first_revoke_n = (int)n;
    for (size_t i = 0; i < n; i++) {
        int p = parts[i].partition % PARTS;
        int64_t next = r->next[p];
        if (SRC->commit(src, parts[i].topic, parts[i].partition, next) != 0)
            r->revoke_store_fail++;
        r->owned[p] = false;
    }
    pthread_mutex_unlock(&r->mu);
}

static void ev_error(void *rt, tl_source *src, int err, bool fatal, const char *what)
{
    (void)src, (void)err;
    rec *r = rt;
    pthread_mutex_lock(&r->mu);
    r->errors++;
    r->fatal += fatal;
    snprintf(r->last_err, sizeof(r->last_err), "%s", what);
    pthread_mutex_unlock(&r->mu);
}

static tl_source *open_source(rec *r, const tl_params *p)
{
    tl_source_events ev = {r, ev_deliver, ev_assigned, ev_revoked, ev_error};
    char err[256] = "";
    tl_source *s = NULL;
    int rc = SRC->open(p, &ev, &s, err, sizeof(err));
    if (rc)
        fail_msg("open: %s (%s)", err, tl_strerror(rc));
    assert_int_equal(SRC->start(s), 0);
    return s;
}

static void close_source(tl_source *s)
{
    SRC->stop(s);
    SRC->close(s);
}

/* Reads an int field of r under its lock. */
static int rec_get(rec *r, const int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static int owned_count(rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = 0;
    for (int p = 0; p < PARTS; p++)
        n += r->owned[p];
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Counts messages 0..n-1 seen by any of the recorders (at most 2). */
static int covered(rec *a, rec *b, int n)
{
    int got = 0;
    pthread_mutex_lock(&a->mu);
    if (b)
        pthread_mutex_lock(&b->mu);
    for (int i = 0; i < n; i++)
        got += a->seen[i] || (b && b->seen[i]);
    if (b)
        pthread_mutex_unlock(&b->mu);
    pthread_mutex_unlock(&a->mu);
    return got;
}

/* Two members got messages 0..n-1 between them exactly once, all well formed. */
static void assert_each_once(rec *a, rec *b, int n)
{
    assert_int_equal(covered(a, b, n), n);
    assert_int_equal(rec_get(a, &a->delivered) + rec_get(b, &b->delivered), n);
    assert_int_equal(rec_get(a, &a->dups) + rec_get(b, &b->dups), 0);
    assert_int_equal(rec_get(a, &a->bad) + rec_get(b, &b->bad), 0);
    assert_int_equal(rec_get(a, &a->fatal) + rec_get(b, &b->fatal), 0);
}

/* ---------------------------------------------------------------- configuration */

/* Opening with the kafka pair key=value fails with TL_ECONFIG and an err naming key. */
static void assert_open_refuses(const char *key, const char *value)
{
    conf c;
    const char *const kafka[] = {key, value, NULL};
    tl_source *s = NULL;
    char err[256] = "";
    int rc = SRC->open(source_conf(&c, "localhost:1", "g", "t", kafka), NULL, &s, err, sizeof(err));
    assert_int_equal(rc, TL_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err, key));
}

static void open_rejects_auto_offset_store(void **state)
{
    (void)state;
    assert_open_refuses("enable.auto.offset.store", "true");
}

static void open_names_the_bad_property(void **state)
{
    (void)state;
    assert_open_refuses("no.such.property", "1");
    assert_open_refuses("session.timeout.ms", "soon");
}

static void register_adds_source_and_sink(void **state)
{
    (void)state;
    tl_registry *reg;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_kafka_register(reg), 0);
    assert_ptr_equal(tl_registry_source(reg, "kafka"), &tl_kafka_source_ops);
    assert_ptr_equal(tl_registry_sink(reg, "kafka"), &tl_kafka_sink_ops);
    assert_int_equal(tl_kafka_register(reg), TL_EINVAL);
    tl_registry_free(reg);
}

/* ---------------------------------------------------------------- source */

static void consume_delivers_every_message_with_its_fields(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-consume", PARTS);
    produce(cl, "t-consume", 0, 1000);
    rec r;
    rec_init(&r);
    conf c;
    int64_t t0 = now_ms();
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-consume", "t-consume", NULL));
    assert_eventually(rec_get(&r, &r.delivered) >= 1000, T_WAIT);
    sleep_ms(300); /* anything extra would show up as a duplicate */
    print_message("    1000 messages in %lld ms\n", (long long)(now_ms() - t0));
    assert_int_equal(covered(&r, NULL, 1000), 1000);
    assert_int_equal(r.delivered, 1000);
    assert_int_equal(r.dups, 0);
    assert_int_equal(r.bad, 0);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(r.next[p], 250);
    assert_int_equal(r.fatal, 0);
    close_source(s);
    cluster_free(cl);
}

static void commit_resumes_a_new_member_at_the_next_offset(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-commit", PARTS);
    produce(cl, "t-commit", 0, 400); /* 100 per partition */
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    conf c;
    tl_source *s = open_source(&a, source_conf(&c, cl->boot, "g-commit", "t-commit", FAST_GROUP));
    assert_eventually(rec_get(&a, &a.delivered) >= 400, T_WAIT);
    assert_int_equal(SRC->commit(s, "t-commit", 0, 40), 0);
    for (int p = 1; p < PARTS; p++)
        assert_int_equal(SRC->commit(s, "t-commit", p, 100), 0);
    assert_int_not_equal(SRC->commit(s, "t-commit", 7, 1), 0); /* not assigned here */
    close_source(s);

    s = open_source(&b, source_conf(&c, cl->boot, "g-commit", "t-commit", FAST_GROUP));
    assert_eventually(rec_get(&b, &b.delivered) >= 60, T_WAIT);
    sleep_ms(1000); /* time for anything wrongly redelivered to arrive */
    assert_int_equal(b.delivered, 60);
    assert_int_equal(b.first[0], 40);
    assert_int_equal(b.next[0], 100);
    for (int p = 1; p < PARTS; p++)
        assert_int_equal(b.first[p], -1);
    assert_int_equal(b.bad, 0);
    close_source(s);
    cluster_free(cl);
}

static void pause_holds_deliveries_until_resume(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-pause", PARTS);
    rec r;
    rec_init(&r);
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-pause", "t-pause", NULL));
    assert_eventually(owned_count(&r) == PARTS, T_WAIT);
    SRC->pause(s, true);
    produce(cl, "t-pause", 0, 200);
    sleep_ms(1200);
    assert_int_equal(rec_get(&r, &r.delivered), 0);
    SRC->pause(s, false);
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    assert_int_equal(r.dups, 0);
    close_source(s);
    cluster_free(cl);
}

static void pause_before_assignment_holds_new_partitions(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-pause2", PARTS);
    produce(cl, "t-pause2", 0, 200);
    rec r;
    rec_init(&r);
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-pause2", "t-pause2", NULL));
    SRC->pause(s, true); /* before the group assigned anything */
    assert_eventually(owned_count(&r) == PARTS, T_WAIT);
    sleep_ms(1200);
    assert_int_equal(rec_get(&r, &r.delivered), 0);
    SRC->pause(s, false);
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    close_source(s);
    cluster_free(cl);
}

/*
 * A pause holds across a rebalance, and the resume reaches every partition parked on
 * the way: the half another member took while this one was paused fetches here again
 * when it comes back (a parked partition stays parked past its revoke otherwise).
 */
static void pause_holds_across_a_rebalance_and_resume_reaches_every_partition(void **state)
{
    (void)state;
    const char *topic = "t-pause3";
    cluster *cl = cluster_new(1, topic, PARTS);
    const char *const kafka[] = {FAST_GROUP_KV, "partition.assignment.strategy", "range", NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    conf ca, cb;
    tl_source *sa = open_source(&a, source_conf(&ca, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&a) == PARTS, T_WAIT);
    SRC->pause(sa, true);
    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    produce(cl, topic, 0, 400);
    assert_eventually(rec_get(&b, &b.delivered) == 200, T_WAIT);
    sleep_ms(500);
    assert_int_equal(rec_get(&a, &a.delivered), 0); /* assigned again while paused */
    SRC->pause(sa, false);
    assert_eventually(covered(&a, &b, 400) == 400, T_WAIT);
    sleep_ms(1200); /* auto commit lands before b leaves (see rebalance below) */
    SRC->stop(sb);
    assert_eventually(owned_count(&a) == PARTS, 30000);
    produce(cl, topic, 400, 400);
    assert_eventually(covered(&a, &b, 800) == 800, T_WAIT);
    assert_each_once(&a, &b, 800);
    SRC->close(sb);
    close_source(sa);
    cluster_free(cl);
}

/*
 * What the consumer queue held when the pause came is kept back, not delivered, and
 * comes first after the resume, in order. A revoke while paused drops what was kept of
 * its partitions: never delivered, so never committed, and the next owner (this member
 * again, for half of them) fetches it from the commit, with no duplicates.
 */
static void pause_keeps_back_what_was_queued_and_a_revoke_drops_it(void **state)
{
    (void)state;
    const char *topic = "t-stash";
    cluster *cl = cluster_new(1, topic, PARTS);
    produce(cl, topic, 0, 400);
    const char *const kafka[] = {FAST_GROUP_KV, "partition.assignment.strategy", "range", NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    a.first_delivery_ms = 1500; /* librdkafka queues the rest meanwhile */
    conf ca, cb;
    source_conf(&ca, cl->boot, topic, topic, kafka);
    conf_add(&ca, "batch", TL_PARAM_INT, NULL, 10);
    tl_source *sa = open_source(&a, &ca.p);
    assert_eventually(rec_get(&a, &a.deliveries) == 1, T_WAIT);
    SRC->pause(sa, true); /* while the first delivery still waits */
    int first = rec_get(&a, &a.delivered);
    assert_in_range(first, 1, 10);
    sleep_ms(2500);
    assert_int_equal(rec_get(&a, &a.delivered), first);

    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    assert_eventually(covered(&b, NULL, 400) + first >= 200, T_WAIT);
    assert_int_equal(rec_get(&a, &a.delivered), first);
    SRC->pause(sa, false);
    assert_eventually(covered(&a, &b, 400) == 400, T_WAIT);
    sleep_ms(500); /* anything delivered twice would show up */
    assert_each_once(&a, &b, 400);
    assert_int_equal(a.backwards + b.backwards, 0);
    close_source(sb);
    close_source(sa);
    cluster_free(cl);
}

static void broker_down_is_reported_and_consumption_resumes(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-down", PARTS);
    produce(cl, "t-down", 0, 200);
    rec r;
    rec_init(&r);
    r.commit_each = true;
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-down", "t-down", FAST_GROUP));
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    /* Let auto commit land first, so a rejoin has committed offsets to resume from. */
    sleep_ms(1200);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_down(cl->mc, b);
    assert_eventually(rec_get(&r, &r.errors) >= 1, T_WAIT);
    sleep_ms(1000);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_up(cl->mc, b);
    produce(cl, "t-down", 200, 200);
    assert_eventually(covered(&r, NULL, 400) == 400, T_WAIT);
    print_message("    %d errors reported, last: %s\n", r.errors, r.last_err);
    assert_int_equal(r.fatal, 0);
    /*
     * At-least-once: a long outage may cost the member its place in the group (the
     * mock's coordinator goes down too, and it may refuse commits while the group
     * rejoins), and the member then reads again from what was committed: some of the
     * first 200 may come twice under load, never more than those.
     */
    assert_true(r.dups <= 200);
    assert_int_equal(r.bad, 0);
    close_source(s);
    cluster_free(cl);
}

/* Fetch and OffsetCommit fail a few times; every message still arrives and commits land. */
static void request_errors_are_retried_without_loss(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-reqerr", PARTS);
    produce(cl, "t-reqerr", 0, 400);
    rd_kafka_mock_push_request_errors(
        cl->mc, 1 /* Fetch */, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    conf c;
    tl_source *s = open_source(&a, source_conf(&c, cl->boot, "g-reqerr", "t-reqerr", FAST_GROUP));
    assert_eventually(covered(&a, NULL, 400) == 400, T_WAIT);
    rd_kafka_mock_push_request_errors(cl->mc, 8 /* OffsetCommit */, 2,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(SRC->commit(s, "t-reqerr", p, 50), 0);
    close_source(s);
    assert_int_equal(a.fatal, 0);

    s = open_source(&b, source_conf(&c, cl->boot, "g-reqerr", "t-reqerr", FAST_GROUP));
    assert_eventually(rec_get(&b, &b.delivered) >= 200, T_WAIT);
    sleep_ms(500);
    print_message("    errors reported: %d then %d; last: %s\n", a.errors, b.errors, a.last_err);
    assert_int_equal(b.delivered, 200);
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(b.first[p], 50);
        assert_int_equal(b.next[p], 100);
    }
    close_source(s);
    cluster_free(cl);
}

/* A second member joins, then leaves; nothing is missed across the two rebalances. */
static void rebalance(const char *strategy, const char *topic, bool cooperative)
{
    cluster *cl = cluster_new(1, topic, PARTS);
    const char *const kafka[] = {FAST_GROUP_KV, "auto.commit.interval.ms",
                                 "500",         "partition.assignment.strategy",
                                 strategy,      NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    conf ca, cb;
    int64_t t0 = now_ms();
    tl_source *sa = open_source(&a, source_conf(&ca, cl->boot, topic, topic, kafka));
    produce(cl, topic, 0, 400);
    assert_eventually(covered(&a, NULL, 400) == 400, T_WAIT);
    assert_int_equal(owned_count(&a), PARTS);
    /*
     * The 2.0.2 mock refuses OffsetCommit while the group is joining, which is when a
     * member revokes (a real broker accepts the current generation then; the real-broker
     * scenarios in tests/e2e cover that commit): let auto commit land first so the run
     * measures the hand-over, not the quirk. Seen with cooperative-sticky too.
     */
    sleep_ms(1200);

    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    int64_t t_join = now_ms() - t0;
    produce(cl, topic, 400, 400);
    assert_eventually(covered(&a, &b, 800) == 800, T_WAIT);
    assert_true(rec_get(&b, &b.delivered) > 0);

    sleep_ms(1200);
    SRC->stop(sb);
    assert_eventually(owned_count(&a) == PARTS, 30000);
    produce(cl, topic, 800, 400);
    assert_eventually(covered(&a, &b, 1200) == 1200, T_WAIT);
    print_message("    %s: joined after %lld ms, all done after %lld ms; a: %d delivered, "
                  "%d dups; b: %d delivered\n",
                  strategy, (long long)t_join, (long long)(now_ms() - t0), a.delivered, a.dups,
                  b.delivered);
    if (a.errors + b.errors)
        print_message("    errors: %d, %d; last: %s | %s\n", a.errors, b.errors, a.last_err,
                      b.last_err);
    assert_true(a.revoked_ev >= 1);
    assert_true(a.assigned_ev >= 2);
    assert_int_equal(a.revoke_store_fail, 0);
    /* Eager gives everything back; cooperative only what moves. */
    assert_int_equal(a.first_revoke_n, cooperative ? PARTS / 2 : PARTS);
    /* Settled offsets were committed at every hand-over: nothing came twice. */
    assert_each_once(&a, &b, 1200);
    SRC->close(sb);
    close_source(sa);
    cluster_free(cl);
}

static void rebalance_eager_range_revokes_before_handover(void **state)
{
    (void)state;
    rebalance("range", "t-eager", false);
}

static void rebalance_cooperative_sticky_moves_only_what_it_must(void **state)
{
    (void)state;
    rebalance("cooperative-sticky", "t-coop", true);
}

/* ---------------------------------------------------------------- sink */

typedef struct acks acks;

/* One per send: the ack's argument. */
typedef struct slot {
    acks *a;
    int i;
} slot;

struct acks {
    pthread_mutex_t mu;
    slot slots[256];
    int count[256]; /* acks seen per send */
    int failed, total;
    char last[256];
};

static void on_ack(void *arg, int err, const char *what)
{
    slot *sl = arg;
    acks *a = sl->a;
    pthread_mutex_lock(&a->mu);
    a->count[sl->i]++;
    a->total++;
    if (err) {
        a->failed++;
        snprintf(a->last, sizeof(a->last), "%s (%s)", what ? what : "(none)", tl_strerror(err));
    }
    pthread_mutex_unlock(&a->mu);
}

static int send_n(tl_sink *k, acks *a, int first, int n)
{
    int sent = 0;
    for (int i = first; i < first + n; i++) {
        char v[16], key[16], idx[16];
        snprintf(v, sizeof(v), "v%d", i);
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(idx, sizeof(idx), "%d", i);
        tl_header h[2] = {{"h-idx", idx, strlen(idx)}, {"h-fixed", "x", 1}};
        tl_out_msg m = {v, strlen(v), key, strlen(key), h, 2};
        a->slots[i] = (slot){a, i};
        if (SINK->send(k, &m, on_ack, &a->slots[i]) != 0)
            break;
        sent++;
    }
    return sent;
}

static void acks_init(acks *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
}

static int acks_total(acks *a)
{
    pthread_mutex_lock(&a->mu);
    int n = a->total;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* Every one of sends 0..n-1 was acked exactly once, failed of them with an error. */
static void assert_acked_once(acks *a, int n, int failed)
{
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->total, n);
    assert_int_equal(a->failed, failed);
    for (int i = 0; i < n; i++)
        assert_int_equal(a->count[i], 1);
    pthread_mutex_unlock(&a->mu);
}

static tl_sink *open_sink(cluster *cl, const char *topic, const char *const *kafka)
{
    conf c;
    source_conf(&c, cl->boot, "unused", topic, kafka); /* the sink reads brokers and kafka */
    tl_sink *k = NULL;
    char err[256] = "";
    int rc = SINK->open(topic, &c.p, &k, err, sizeof(err));
    if (rc)
        fail_msg("sink open: %s", err);
    return k;
}

static void sink_acks_every_send_and_keeps_headers(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-sink", PARTS);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-sink", NULL);
    /* Keys decide partitions here, so read back by coverage of payloads, not offsets. */
    assert_int_equal(send_n(k, &a, 0, 200), 200);
    assert_int_equal(SINK->flush(k, 10000), 0);
    sleep_ms(200);
    assert_acked_once(&a, 200, 0);
    SINK->close(k);

    rec r;
    rec_init(&r);
    r.any_partition = true; /* the producer's partitioner placed them by key */
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-sink", "t-sink", NULL));
    assert_eventually(rec_get(&r, &r.delivered) >= 200, T_WAIT);
    sleep_ms(300);
    assert_int_equal(covered(&r, NULL, 200), 200);
    assert_int_equal(r.delivered, 200);
    assert_int_equal(r.dups, 0);
    assert_int_equal(r.bad, 0);
    close_source(s);
    cluster_free(cl);
}

static void wait_acks(acks *a, int n)
{
    assert_eventually(acks_total(a) >= n, T_WAIT);
    sleep_ms(300); /* a second ack for any send would show by now */
}

/* The 2.0.2 mock creates any topic it is asked about, so its metadata is told to deny it. */
static void sink_to_missing_topic_acks_an_error_once(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, NULL, 0);
    rd_kafka_mock_topic_set_error(cl->mc, "t-missing", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    const char *const kafka[] = {"topic.metadata.propagation.max.ms", "1000", NULL};
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-missing", kafka);
    assert_int_equal(send_n(k, &a, 0, 20), 20);
    wait_acks(&a, 20);
    print_message("    error ack: %s\n", a.last);
    assert_acked_once(&a, 20, 20);
    SINK->close(k);
    assert_acked_once(&a, 20, 20);
    cluster_free(cl);
}

/* A permanent produce error fails those sends, once each; the rest still succeed. */
static void sink_produce_errors_ack_an_error_once(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-prodfail", 1);
    rd_kafka_mock_push_request_errors(cl->mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-prodfail", NULL);
    assert_int_equal(send_n(k, &a, 0, 1), 1);
    wait_acks(&a, 1);
    assert_int_equal(send_n(k, &a, 1, 20), 20);
    wait_acks(&a, 21);
    print_message("    error ack: %s\n", a.last);
    assert_acked_once(&a, 21, 1);
    SINK->close(k);
    assert_acked_once(&a, 21, 1);
    cluster_free(cl);
}

static void sink_close_acks_what_is_outstanding(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-close", PARTS);
    rd_kafka_mock_broker_set_down(cl->mc, 1);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-close", NULL);
    assert_int_equal(send_n(k, &a, 0, 50), 50);
    assert_int_equal(SINK->flush(k, 200), TL_ETIMEDOUT);
    assert_int_equal(acks_total(&a), 0);
    SINK->close(k);
    assert_acked_once(&a, 50, 50);
    print_message("    purge ack: %s\n", a.last);
    cluster_free(cl);
}

static void sink_full_queue_says_try_again(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-full", PARTS);
    rd_kafka_mock_broker_set_down(cl->mc, 1);
    const char *const kafka[] = {"queue.buffering.max.messages", "10", NULL};
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-full", kafka);
    assert_int_equal(send_n(k, &a, 0, 10), 10);
    tl_out_msg m = {"v", 1, NULL, 0, NULL, 0};
    assert_int_equal(SINK->send(k, &m, on_ack, &a.slots[10]), TL_EAGAIN);
    SINK->close(k);
    assert_acked_once(&a, 10, 10); /* the refused send is never acked */
    cluster_free(cl);
}

/* ---------------------------------------------------------------- a held service */

/* Handlers that never finish by themselves: the test completes them. */
typedef struct hung {
    pthread_mutex_t mu;
    tl_task *tasks[MAX_IDX];
    int n;
    int paused_events, resumed_events, poll_errors;
} hung;

static int hang(tl_task *task, const tl_msg *msg, void *user)
{
    (void)msg;
    hung *h = user;
    pthread_mutex_lock(&h->mu);
    if (h->n < MAX_IDX)
        h->tasks[h->n++] = task;
    pthread_mutex_unlock(&h->mu);
    return TL_PENDING;
}

static void hung_log(void *user, tl_level level, const char *event, const tl_kv *f, size_t nf)
{
    (void)level;
    hung *h = user;
    pthread_mutex_lock(&h->mu);
    if (strcmp(event, "source_paused") == 0)
        h->paused_events++;
    if (strcmp(event, "source_resumed") == 0)
        h->resumed_events++;
    for (size_t i = 0; i < nf; i++)
        if (strstr(f[i].value, "maximum poll interval"))
            h->poll_errors++;
    pthread_mutex_unlock(&h->mu);
}

static int hung_get(hung *h, const int *field)
{
    pthread_mutex_lock(&h->mu);
    int v = *field;
    pthread_mutex_unlock(&h->mu);
    return v;
}

static void *service_main(void *arg)
{
    tl_service_run(arg);
    return NULL;
}

/*
 * Backpressure keeps the source's thread waiting in deliver, where it cannot poll;
 * librdkafka drops a member from its group after max.poll.interval.ms without a
 * poll. Held longer than half of it, the source is paused and goes back to polling:
 * it keeps its partitions, and once the handlers finish, every message is handled
 * exactly once.
 */
static void a_source_held_past_half_its_poll_interval_is_paused_and_keeps_its_group(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-held", PARTS);
    produce(cl, "t-held", 0, 200);
    char path[] = "/tmp/tl-held-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f,
            "service: held\n"
            "loop: { workers: 1, max_in_flight: 10 }\n"
            "sources:\n"
            "  in: { type: kafka, brokers: \"%s\", group: g-held, topics: [t-held], batch: 10,\n"
            "        kafka: { auto.offset.reset: earliest, max.poll.interval.ms: 3500,\n"
            "                 session.timeout.ms: 3000, heartbeat.interval.ms: 300 } }\n"
            "routes:\n"
            "  - { source: in, handler: hang, ordering: none, inline: true, timeout: 60s }\n",
            cl->boot);
    fclose(f);
    hung h = {.n = 0};
    pthread_mutex_init(&h.mu, NULL);
    tl_registry *reg;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_kafka_register(reg), 0);
    assert_int_equal(tl_register_handler(reg, "hang", hang, &h), 0);
    tl_service_opts opts = {.log = hung_log, .log_user = &h};
    tl_service *svc = NULL;
    char err[512] = "";
    int rc = tl_service_load(path, reg, &opts, NULL, NULL, &svc, err, sizeof(err));
    unlink(path);
    if (rc)
        fail_msg("tl_service_load: %s", err);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, service_main, svc), 0);
    /* Ten handlers hang; the source's next batches are held. */
    assert_eventually(hung_get(&h, &h.n) == 10, T_WAIT);
    assert_eventually(hung_get(&h, &h.paused_events) == 1, 3000);
    sleep_ms(4000); /* past max.poll.interval.ms once more while paused */
    assert_int_equal(hung_get(&h, &h.n), 10);
    /* The handlers finish; the source resumes and the rest flows. */
    int done = 0;
    int64_t end = now_ms() + T_WAIT;
    tl_service_stats st;
    do {
        pthread_mutex_lock(&h.mu);
        int n = h.n;
        pthread_mutex_unlock(&h.mu);
        for (; done < n; done++)
            assert_int_equal(tl_task_complete(h.tasks[done], NULL, 0), 0);
        sleep_ms(20);
        tl_service_stats_get(svc, &st);
    } while (st.completed < 200 && now_ms() < end);
    sleep_ms(500); /* a redelivery would show up as a handler call too many */
    tl_service_stats_get(svc, &st);
    assert_int_equal(st.completed, 200);
    assert_int_equal(hung_get(&h, &h.n), 200);
    assert_int_equal(hung_get(&h, &h.poll_errors), 0);
    assert_true(hung_get(&h, &h.resumed_events) >= 1);
    tl_service_stop(svc);
    pthread_join(th, NULL);
    tl_service_free(svc);
    tl_registry_free(reg);
    pthread_mutex_destroy(&h.mu);
    cluster_free(cl);
}

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_auto_offset_store),
        cmocka_unit_test(open_names_the_bad_property),
        cmocka_unit_test(register_adds_source_and_sink),
        cmocka_unit_test(consume_delivers_every_message_with_its_fields),
        cmocka_unit_test(commit_resumes_a_new_member_at_the_next_offset),
        cmocka_unit_test(pause_holds_deliveries_until_resume),
        cmocka_unit_test(pause_before_assignment_holds_new_partitions),
        cmocka_unit_test(pause_holds_across_a_rebalance_and_resume_reaches_every_partition),
        cmocka_unit_test(pause_keeps_back_what_was_queued_and_a_revoke_drops_it),
        cmocka_unit_test(broker_down_is_reported_and_consumption_resumes),
        cmocka_unit_test(request_errors_are_retried_without_loss),
        cmocka_unit_test(sink_acks_every_send_and_keeps_headers),
        cmocka_unit_test(sink_to_missing_topic_acks_an_error_once),
        cmocka_unit_test(sink_produce_errors_ack_an_error_once),
        cmocka_unit_test(sink_close_acks_what_is_outstanding),
        cmocka_unit_test(sink_full_queue_says_try_again),
        cmocka_unit_test(rebalance_eager_range_revokes_before_handover),
        cmocka_unit_test(rebalance_cooperative_sticky_moves_only_what_it_must),
        cmocka_unit_test(a_source_held_past_half_its_poll_interval_is_paused_and_keeps_its_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
