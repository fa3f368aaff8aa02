/*
 * The Kafka source's transactions (tl_txn_ops) against a real broker, which
 * kafka_txn.sh starts (librdkafka 2.0.2's mock cluster neither writes transaction
 * markers for read_committed consumers nor fences producers): what its sinks sent
 * becomes visible to read_committed consumers with the positions only when committed;
 * a source closed before its commit leaves nothing visible; a second producer with the
 * same transactional.id fences the first, whose commit then fails saying so;
 * two transaction contexts (two shards') commit their own partitions apart;
 * read_uncommitted is refused. The broker's address comes in TL_TEST_BROKERS, and the
 * topics (t-in1, t-out1a, t-out1b, t-in2, t-out2, t-in3, t-out3, t-in4, t-out4a,
 * t-out4b) exist already.
 *
 * Thread rules: acks are written by the producer's poll thread and read by the test
 * thread, always under acks.mu.
 */
#include "kafka_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The broker kafka_txn.sh started. */
static cluster *broker(void)
{
    static cluster c;
    const char *b = getenv("TL_TEST_BROKERS");
    if (!b || !*b)
        fail_msg("TL_TEST_BROKERS is not set: run this test through kafka_txn.sh");
    snprintf(c.boot, sizeof(c.boot), "%s", b);
    return &c;
}

typedef struct acks {
    pthread_mutex_t mu;
    int total, failed;
} acks;

static void on_ack(void *arg, int err, const char *what)
{
    (void)what;
    acks *a = arg;
    pthread_mutex_lock(&a->mu);
    a->total++;
    a->failed += err != 0;
    pthread_mutex_unlock(&a->mu);
}

static int acks_total(acks *a, int *failed)
{
    pthread_mutex_lock(&a->mu);
    int n = a->total;
    if (failed)
        *failed = a->failed;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* Messages first..first+n-1 in the scheme of kafka_helpers.h; returns how many went. */
static int send_n(const tl_sink_ops *ops, tl_sink *k, acks *a, int first, int n)
{
    int sent = 0;
    for (int i = first; i < first + n; i++) {
        char v[16], key[16], idx[16];
        snprintf(v, sizeof(v), "v%d", i);
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(idx, sizeof(idx), "%d", i);
        tl_header h[2] = {{"h-idx", idx, strlen(idx)}, {"h-fixed", "x", 1}};
        tl_out_msg m = {v, strlen(v), key, strlen(key), h, 2};
        if (ops->send(k, &m, on_ack, a) != 0)
            break;
        sent++;
    }
    return sent;
}

static const tl_params *txn_conf(conf *c, cluster *cl, const char *group, const char *topic,
                                 const char *id, const char *const *kafka)
{
    source_conf(c, cl->boot, group, topic, kafka);
    conf_add(c, "transactional_id", TL_PARAM_STRING, id, 0);
    return &c->p;
}

/* A sink writing topic in transaction context ctx of s. */
static tl_sink *open_ctx_sink(tl_source *s, size_t ctx, const char *topic, const tl_sink_ops **ops)
{
    tl_sink *k = NULL;
    char err[256] = "";
    int rc = SRC->txn->sink(s, ctx, topic, &k, ops, err, sizeof(err));
    if (rc)
        fail_msg("txn sink: %s", err);
    return k;
}

static tl_sink *open_txn_sink(tl_source *s, const char *topic, const tl_sink_ops **ops)
{
    return open_ctx_sink(s, 0, topic, ops);
}

/* Messages of topic a read_committed consumer of a fresh group sees within 3 s. */
static int visible(cluster *cl, const char *topic, const char *group)
{
    rec r;
    rec_init(&r);
    r.any_partition = true;
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, group, topic, NULL));
    sleep_ms(3000);
    int n = rec_get(&r, &r.delivered);
    close_source(s);
    return n;
}

/* The next offset group committed for topic's partition p, -1 when none. */
static int64_t committed_of(cluster *cl, const char *group, const char *topic, int p)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(conf, "bootstrap.servers", cl->boot, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    assert_int_equal(rd_kafka_committed(rk, l, 10000), 0);
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

/* Commits partitions first..first+n-1 of topic at r's positions in context ctx. */
static void commit_parts(tl_source *s, size_t ctx, const rec *r, const char *topic, int first,
                         int n)
{
    tl_partition_offset offs[PARTS];
    for (int i = 0; i < n; i++)
        offs[i] = (tl_partition_offset){topic, first + i, r->next[first + i]};
    char err[512] = "";
    int rc = SRC->txn->commit(s, ctx, offs, (size_t)n, err, sizeof(err));
    if (rc)
        fail_msg("commit of context %zu: %s", ctx, err);
}

/* A source of topic (40 messages produced into it first) with `contexts` transaction
 * contexts, once it has delivered them all. */
static tl_source *started(rec *r, conf *c, const char *topic, const char *id, size_t contexts)
{
    cluster *cl = broker();
    produce(cl, topic, 0, 40);
    rec_init(r);
    tl_source *s = open_source_txn(r, txn_conf(c, cl, "g-txn", topic, id, NULL), contexts);
    assert_eventually(rec_get(r, &r->delivered) >= 40, T_WAIT);
    return s;
}

/* Two transaction sinks of s, each with the context and topic given. */
typedef struct two_sinks {
    const tl_sink_ops *ops[2];
    tl_sink *k[2];
} two_sinks;

/* Opens sinks on topics a (context ca) and b (context cb), sends n messages through
 * each (ids 0..n-1, then n..2n-1) and waits until every one is acknowledged. */
static void send_through_two(two_sinks *t, tl_source *s, size_t ca, const char *a, size_t cb,
                             const char *b, int n)
{
    acks ak = {.mu = PTHREAD_MUTEX_INITIALIZER};
    t->k[0] = open_ctx_sink(s, ca, a, &t->ops[0]);
    t->k[1] = open_ctx_sink(s, cb, b, &t->ops[1]);
    assert_int_equal(send_n(t->ops[0], t->k[0], &ak, 0, n), n);
    assert_int_equal(send_n(t->ops[1], t->k[1], &ak, n, n), n);
    int failed = -1;
    assert_eventually(acks_total(&ak, &failed) == 2 * n, T_WAIT);
    assert_int_equal(failed, 0);
}

static void close_two(two_sinks *t)
{
    t->ops[0]->close(t->k[0]);
    t->ops[1]->close(t->k[1]);
}

static void a_commit_makes_the_sends_and_the_positions_visible_together(void **state)
{
    (void)state;
    cluster *cl = broker();
    rec r;
    conf c;
    tl_source *s = started(&r, &c, "t-in1", "tx-commit", 1);
    two_sinks t;
    send_through_two(&t, s, 0, "t-out1a", 0, "t-out1b", 20);
    /* Written in the open transaction: not visible yet. */
    assert_int_equal(visible(cl, "t-out1a", "g-before"), 0);
    commit_parts(s, 0, &r, "t-in1", 0, PARTS);
    assert_int_equal(visible(cl, "t-out1a", "g-read1"), 20);
    assert_int_equal(visible(cl, "t-out1b", "g-read2"), 20);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(committed_of(cl, "g-txn", "t-in1", p), r.next[p]);
    close_two(&t);
    close_source(s);
}

static void sends_of_a_source_closed_before_its_commit_never_show(void **state)
{
    (void)state;
    cluster *cl = broker();
    rec r;
    rec_init(&r);
    conf c;
    tl_source *s = open_source_txn(&r, txn_conf(&c, cl, "g-txn", "t-in2", "tx-crash", NULL), 1);
    acks a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    const tl_sink_ops *o;
    tl_sink *k = open_txn_sink(s, "t-out2", &o);
    assert_int_equal(send_n(o, k, &a, 0, 20), 20);
    assert_eventually(acks_total(&a, NULL) == 20, T_WAIT);
    o->close(k);
    close_source(s);
    assert_int_equal(visible(cl, "t-out2", "g-read"), 0);
    for (int p = 0; p < PARTS; p++)
        assert_true(committed_of(cl, "g-txn", "t-in2", p) < 0);
}

static void a_second_producer_with_the_same_id_fences_the_first(void **state)
{
    (void)state;
    cluster *cl = broker();
    rec r1, r2;
    rec_init(&r1);
    rec_init(&r2);
    conf c1, c2;
    tl_source *s1 = open_source_txn(&r1, txn_conf(&c1, cl, "g-txn", "t-in3", "tx-same", NULL), 1);
    acks a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    const tl_sink_ops *o;
    tl_sink *k = open_txn_sink(s1, "t-out3", &o);
    assert_int_equal(send_n(o, k, &a, 0, 5), 5);
    assert_eventually(acks_total(&a, NULL) == 5, T_WAIT);
    tl_source *s2 = open_source_txn(&r2, txn_conf(&c2, cl, "g-txn2", "t-in3", "tx-same", NULL), 1);
    char err[512] = "";
    int rc = SRC->txn->commit(s1, 0, NULL, 0, err, sizeof(err));
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "fenced"));
    assert_int_equal(visible(cl, "t-out3", "g-read"), 0);
    o->close(k);
    close_source(s1);
    close_source(s2);
}

/* What a service on two shards does: each context sends and commits its own
 * partitions, and one context's commit makes only its own sends and positions
 * visible. */
static void two_contexts_commit_their_own_partitions_apart(void **state)
{
    (void)state;
    cluster *cl = broker();
    rec r;
    conf c;
    tl_source *s = started(&r, &c, "t-in4", "tx-two", 2);
    two_sinks t;
    send_through_two(&t, s, 0, "t-out4a", 1, "t-out4b", 10);
    /* Context 1 commits partitions 2 and 3: its sends show, context 0's do not. */
    commit_parts(s, 1, &r, "t-in4", 2, 2);
    assert_int_equal(visible(cl, "t-out4b", "g-two1"), 10);
    assert_int_equal(visible(cl, "t-out4a", "g-two2"), 0);
    for (int p = 0; p < PARTS; p++)
        if (p < 2)
            assert_true(committed_of(cl, "g-txn", "t-in4", p) < 0);
        else
            assert_int_equal(committed_of(cl, "g-txn", "t-in4", p), r.next[p]);
    /* Then context 0 commits partitions 0 and 1. */
    commit_parts(s, 0, &r, "t-in4", 0, 2);
    assert_int_equal(visible(cl, "t-out4a", "g-two3"), 10);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(committed_of(cl, "g-txn", "t-in4", p), r.next[p]);
    /* A context the source was not given is refused, saying so. */
    char err[256] = "";
    assert_int_equal(SRC->txn->commit(s, 2, NULL, 0, err, sizeof(err)), TL_EINVAL);
    assert_non_null(strstr(err, "no transaction context 2"));
    close_two(&t);
    close_source(s);
}

static void read_uncommitted_is_refused(void **state)
{
    (void)state;
    cluster *cl = broker();
    conf c;
    const char *const kafka[] = {"isolation.level", "read_uncommitted", NULL};
    tl_source_events ev = {0};
    tl_source *s = NULL;
    char err[256] = "";
    assert_int_equal(
        SRC->open(txn_conf(&c, cl, "g", "t-in1", "tx", kafka), &ev, &s, err, sizeof(err)), 0);
    assert_int_equal(SRC->txn->enable(s, 1, err, sizeof(err)), TL_ECONFIG);
    assert_non_null(strstr(err, "isolation.level: must stay read_committed"));
    SRC->close(s);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_commit_makes_the_sends_and_the_positions_visible_together),
        cmocka_unit_test(sends_of_a_source_closed_before_its_commit_never_show),
        cmocka_unit_test(a_second_producer_with_the_same_id_fences_the_first),
        cmocka_unit_test(two_contexts_commit_their_own_partitions_apart),
        cmocka_unit_test(read_uncommitted_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
