/* What the Kafka adapter tests share; see kafka_helpers.h. */
#include "kafka_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* ---------------------------------------------------------------- the mock cluster */

cluster *cluster_new(int brokers, const char *topic, int parts)
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

void cluster_free(cluster *c)
{
    rd_kafka_mock_cluster_destroy(c->mc);
    rd_kafka_destroy(c->rk);
    free(c);
}

void produce(const cluster *c, const char *topic, int first, int n)
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

void conf_add(conf *c, const char *name, tl_param_type type, const char *str, int64_t num)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = type, .str = str, .num = num};
}

const tl_params *source_conf(conf *c, const char *brokers, const char *group, const char *topic,
                             const char *const *kafka)
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

/* ---------------------------------------------------------------- the recorder */

void rec_init(rec *r)
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

/* Checks every field against the scheme of kafka_helpers.h; true when all match. */
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

tl_source *open_source(rec *r, const tl_params *p)
{
    return open_source_txn(r, p, 0);
}

tl_source *open_source_txn(rec *r, const tl_params *p, size_t contexts)
{
    tl_source_events ev = {.rt = r,
                           .deliver = ev_deliver,
                           .assigned = ev_assigned,
                           .revoked = ev_revoked,
                           .error = ev_error};
    char err[256] = "";
    tl_source *s = NULL;
    int rc = SRC->open(p, &ev, &s, err, sizeof(err));
    if (rc)
        fail_msg("open: %s (%s)", err, tl_strerror(rc));
    if (contexts && (rc = SRC->txn->enable(s, contexts, err, sizeof(err))) != 0)
        fail_msg("enable transactions: %s (%s)", err, tl_strerror(rc));
    assert_int_equal(SRC->start(s), 0);
    return s;
}

void close_source(tl_source *s)
{
    SRC->stop(s);
    SRC->close(s);
}

int rec_get(rec *r, const int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

int owned_count(rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = 0;
    for (int p = 0; p < PARTS; p++)
        n += r->owned[p];
    pthread_mutex_unlock(&r->mu);
    return n;
}

int covered(rec *a, rec *b, int n)
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

void assert_each_once(rec *a, rec *b, int n)
{
    assert_int_equal(covered(a, b, n), n);
    assert_int_equal(rec_get(a, &a->delivered) + rec_get(b, &b->delivered), n);
    assert_int_equal(rec_get(a, &a->dups) + rec_get(b, &b->dups), 0);
    assert_int_equal(rec_get(a, &a->bad) + rec_get(b, &b->bad), 0);
    assert_int_equal(rec_get(a, &a->fatal) + rec_get(b, &b->fatal), 0);
}
