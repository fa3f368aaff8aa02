/*
 * The Kafka sink: an idempotent librdkafka producer behind tl_sink_ops.
 *
 * Thread rules:
 *  - open, send, flush and close come from the loop thread (adapter.h).
 *  - Delivery reports are served by a thread of the sink's own calling rd_kafka_poll;
 *    librdkafka runs the delivery callback there (or inside rd_kafka_flush on the
 *    loop thread), and it calls ack. Either way each message gets exactly one report.
 *  - `outstanding` counts accepted sends not yet acked; any thread touches it atomically.
 *
 * Why a poll thread rather than rd_kafka_conf_set_background_event_cb: the delivery
 * callback stays the plain dr_msg_cb, the thread can be stopped and joined before
 * close serves the last reports itself, and nothing runs on librdkafka's own threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <taskloop/kafka.h>

#include "kafka_conf.h"
#include "kafka_txn.h"

#define POLL_MS 100
#define CLOSE_FLUSH_MS 2000 /* close waits this long for acks before purging */
#define CLOSE_DRAIN_MS 5000 /* then this long for the purge's own reports */
#define WARM_MS 5000        /* a transactional sink's topic metadata, at open */

/* What a delivery report needs to reach the caller; the message's opaque. */
typedef struct pending {
    tl_sink_ack_cb ack;
    void *arg;
    tl_sink *sink; /* several sinks may share a transactional producer */
} pending;

struct tl_sink {
    rd_kafka_t *rk;        /* its own; NULL with txn (whose rk[cur] each send takes) */
    rd_kafka_topic_t *rkt; /* its topic on rk, held from the open (see sink_open) */
    tl_kafka_txn *txn;     /* writes in a source's transactions (exactly-once), or NULL */
    char *topic;
    pthread_t thread;
    bool started;
    atomic_bool running;
    atomic_size_t outstanding;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* librdkafka calls this exactly once per produced message, purged ones included. */
void tl_kafka_sink_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    (void)opaque;
    pending *p = rkm->_private;
    if (!p)
        return;
    tl_sink *k = p->sink;
    if (rkm->err) {
        char what[256];
        snprintf(what, sizeof(what), "kafka %s: %s", k->topic, rd_kafka_err2str(rkm->err));
        int err = tl_kafka_err(rkm->err);
        p->ack(p->arg, err ? err : TL_EIO, what);
    } else {
        p->ack(p->arg, 0, NULL);
    }
    free(p);
    atomic_fetch_sub(&k->outstanding, 1);
}

static void *poll_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-kafka-sink"); /* for top -H, perf, gdb */
    tl_sink *k = arg;
    while (atomic_load(&k->running))
        rd_kafka_poll(k->rk, POLL_MS);
    return NULL;
}

/* Idempotence unless the section says otherwise: a retried send is then never doubled. */
static int producer_conf(const tl_params *p, tl_sink *k, rd_kafka_conf_t **out, char *err,
                         size_t errlen)
{
    rd_kafka_conf_t *conf;
    int rc = tl_kafka_conf_new(p, &conf, err, errlen);
    if (rc)
        return rc;
    if (!tl_kafka_conf_user(p, "enable.idempotence"))
        rc = tl_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, tl_kafka_sink_on_delivery);
    rd_kafka_conf_set_opaque(conf, k);
    *out = conf;
    return 0;
}

static void sink_free(tl_sink *k)
{
    if (k->rkt)
        rd_kafka_topic_destroy(k->rkt);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    free(k->topic);
    free(k);
}

static const tl_param sink_params[] = {
    {"brokers", TL_PARAM_STRING, false, false,
     "bootstrap servers host:port,...; required unless mock is set"},
    {"kafka", TL_PARAM_MAP, false, true, "librdkafka properties, passed through unchanged"},
    {"mock", TL_PARAM_INT, false, false,
     "brokers of a private in-process mock cluster (test.mock.num.brokers); 0 = off"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

static const tl_param_range sink_ranges[] = {
    {"mock", 0, TL_KAFKA_MAX_MOCK},
    {NULL, 0, 0},
};

static int sink_open(const char *address, const tl_params *p, tl_sink **out, char *err,
                     size_t errlen)
{
    if (!address || !*address) {
        tl_kafka_errf(err, errlen, "kafka sink: a topic is required, as in kafka:TOPIC");
        return TL_EINVAL;
    }
    char why[512];
    if (tl_kafka_topic_check(address, why, sizeof(why)) ||
        tl_params_check_ranges(sink_params, sink_ranges, p, why, sizeof(why))) {
        tl_kafka_errf(err, errlen, "kafka sink: %s", why);
        return TL_ECONFIG;
    }
    tl_sink *k = calloc(1, sizeof(*k));
    if (!k || !(k->topic = strdup(address))) {
        free(k);
        return TL_ENOMEM;
    }
    rd_kafka_conf_t *conf = NULL;
    int rc = producer_conf(p, k, &conf, err, errlen);
    if (rc)
        goto fail;
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!k->rk) { /* conf is still ours when rd_kafka_new fails */
        rd_kafka_conf_destroy(conf);
        tl_kafka_errf(err, errlen, "kafka producer: %s", why);
        rc = TL_ECONFIG;
        goto fail;
    }
    /* The topic known from the open on, so its metadata is asked for now, while the
     * source joins its group, not at the first send (most of a second later here). */
    k->rkt = rd_kafka_topic_new(k->rk, address, NULL);
    atomic_store(&k->running, true);
    if (pthread_create(&k->thread, NULL, poll_main, k) != 0) {
        rc = TL_ESYS;
        goto fail;
    }
    k->started = true;
    *out = k;
    return 0;
fail:
    sink_free(k);
    return rc;
}

/* Headers are copied: librdkafka owns hs once producev accepts the message. */
static rd_kafka_headers_t *copy_headers(const tl_out_msg *msg)
{
    if (msg->nheaders == 0)
        return NULL;
    rd_kafka_headers_t *hs = rd_kafka_headers_new(msg->nheaders);
    for (size_t i = 0; hs && i < msg->nheaders; i++)
        rd_kafka_header_add(hs, msg->headers[i].name, -1, msg->headers[i].value,
                            (ssize_t)msg->headers[i].len);
    return hs;
}

static int sink_send(tl_sink *k, const tl_out_msg *msg, tl_sink_ack_cb ack, void *arg)
{
    if (!msg || !ack)
        return TL_EINVAL;
    pending *p = malloc(sizeof(*p));
    rd_kafka_headers_t *hs = copy_headers(msg);
    if (!p || (msg->nheaders && !hs)) {
        free(p);
        if (hs)
            rd_kafka_headers_destroy(hs);
        return TL_ENOMEM;
    }
    *p = (pending){ack, arg, k};
    char why[512];
    rd_kafka_t *rk = k->txn ? k->txn->rk[k->txn->cur] : k->rk;
    if (k->txn && tl_kafka_txn_begin(k->txn, k->txn->cur, why, sizeof(why)) != 0) {
        free(p);
        if (hs)
            rd_kafka_headers_destroy(hs);
        return TL_EIO;
    }
    /* Counted first: the report may arrive before producev returns. */
    atomic_fetch_add(&k->outstanding, 1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE((void *)msg->payload, msg->len), RD_KAFKA_V_KEY(msg->key, msg->key_len),
        RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
    if (err) { /* refused: no report will come, so nothing is acked */
        atomic_fetch_sub(&k->outstanding, 1);
        if (hs)
            rd_kafka_headers_destroy(hs);
        free(p);
        return tl_kafka_err(err); /* _QUEUE_FULL becomes TL_EAGAIN */
    }
    return 0;
}

static int sink_flush(tl_sink *k, int64_t timeout_ms)
{
    int ms = timeout_ms < 0 || timeout_ms > INT32_MAX ? -1 : (int)timeout_ms;
    rd_kafka_resp_err_t err = 0;
    if (k->txn) {
        for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS && !err; i++)
            err = rd_kafka_flush(k->txn->rk[i], ms);
    } else {
        err = rd_kafka_flush(k->rk, ms);
    }
    return err == RD_KAFKA_RESP_ERR__TIMED_OUT ? TL_ETIMEDOUT : tl_kafka_err(err);
}

/*
 * Every accepted send is acked before the producer goes: what is still queued or in
 * flight after a short flush is purged, and the purge's reports (_PURGE_QUEUE,
 * _PURGE_INFLIGHT) are the error acks, served here once the poll thread is gone.
 */
static void sink_close(tl_sink *k)
{
    if (!k)
        return;
    if (k->txn) {
        /* The producers are the source's, and its poll thread serves the reports. */
        int64_t deadline = now_ms() + CLOSE_FLUSH_MS + CLOSE_DRAIN_MS;
        sink_flush(k, CLOSE_FLUSH_MS);
        while (atomic_load(&k->outstanding) > 0 && now_ms() < deadline) {
            struct timespec ts = {0, POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        sink_free(k);
        return;
    }
    if (k->started) {
        atomic_store(&k->running, false);
        pthread_join(k->thread, NULL);
    }
    rd_kafka_flush(k->rk, CLOSE_FLUSH_MS);
    if (atomic_load(&k->outstanding) > 0)
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = now_ms() + CLOSE_DRAIN_MS;
    while (atomic_load(&k->outstanding) > 0 && now_ms() < deadline)
        rd_kafka_poll(k->rk, POLL_MS);
    sink_free(k);
}

int tl_kafka_txn_begin(tl_kafka_txn *t, int i, char *why, size_t whylen)
{
    if (t->open[i])
        return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(t->rk[i]);
    if (e) {
        tl_kafka_errf(why, whylen, "kafka begin transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return TL_EIO;
    }
    t->open[i] = true;
    return 0;
}

/* Has each transactional producer learn the topic's partitions now. A producer that
 * meets a topic at its first send learns them only at its next metadata round, most
 * of a second later here (bench/README.md, item 25): the first transaction's sends
 * then wait, its commit with them, and the loop fills the whole window behind it. A
 * broker that does not answer in time costs only that wait. */
static void warm_up(tl_kafka_txn *t, const char *topic)
{
    for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(t->rk[i], topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rkt && rd_kafka_metadata(t->rk[i], 0, rkt, &md, WARM_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
    }
}

int tl_kafka_sink_open_txn(const char *address, tl_kafka_txn *t, tl_sink **out, char *err,
                           size_t errlen)
{
    char why[512];
    if (!address || !*address || tl_kafka_topic_check(address, why, sizeof(why))) {
        tl_kafka_errf(err, errlen, "kafka sink: %s",
                      address && *address ? why : "a topic is required, as in kafka:TOPIC");
        return TL_ECONFIG;
    }
    tl_sink *k = calloc(1, sizeof(*k));
    if (!k || !(k->topic = strdup(address))) {
        free(k);
        return TL_ENOMEM;
    }
    k->txn = t;
    warm_up(t, address);
    *out = k;
    return 0;
}

const tl_sink_ops tl_kafka_sink_ops = {
    .scheme = "kafka",
    .params = sink_params,
    .open = sink_open,
    .send = sink_send,
    .flush = sink_flush,
    .close = sink_close,
    .ranges = sink_ranges,
    .check = tl_kafka_sink_check,
};
