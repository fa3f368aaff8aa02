/*
 * Test load: payloads that carry a unique id and, per the ratios, a `stall` or `fail`
 * marker that the built-in `work` handler acts on; and the Kafka producer that sends
 * them (used by `taskloop produce` and by the demo's load thread).
 *
 * Markers are spread evenly rather than drawn at random, so that a load of N messages
 * holds exactly floor(N * ratio) of each (minus the rare message that both ratios
 * pick, which stalls): tests can count on the numbers.
 *
 * Thread rules: the producer runs on the calling thread; librdkafka's delivery
 * reports arrive on it too (from rd_kafka_poll), and other threads may read the
 * atomic counters at any time.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* How long the last delivery reports may take once everything was sent. */
#define FLUSH_MS 30000

/* True when an even spread of ratio over the messages puts one at index i. */
static bool spread_hits(double ratio, double phase, uint64_t i)
{
    if (ratio <= 0.0)
        return false;
    return floor((double)(i + 1) * ratio + phase) > floor((double)i * ratio + phase);
}

tl_cli_marker tl_cli_load_marker(const tl_cli_load *l, uint64_t i)
{
    if (spread_hits(l->stall_ratio, 0.0, i))
        return TL_CLI_STALL;
    /* A phase of 1/golden ratio keeps the two spreads apart for the usual ratios. */
    if (spread_hits(l->fail_ratio, 0.618034, i))
        return TL_CLI_FAIL;
    return TL_CLI_PLAIN;
}

size_t tl_cli_load_payload(const tl_cli_load *l, uint64_t i, char *buf, size_t cap)
{
    static const char *const words[] = {"", " stall", " fail"};
    int n =
        snprintf(buf, cap, "id=%06" PRIu64 "%s", l->first_id + i, words[tl_cli_load_marker(l, i)]);
    size_t len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    size_t want = l->size < cap ? l->size : cap - 1;
    if (len < want) {
        buf[len++] = ' ';
        while (len < want)
            buf[len++] = '.';
        buf[len] = '\0';
    }
    return len;
}

size_t tl_cli_load_key(const tl_cli_load *l, uint64_t i, char *buf, size_t cap)
{
    if (l->keys == 0)
        return 0;
    int n = snprintf(buf, cap, "key-%" PRIu64, (l->first_id + i) % l->keys);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void tl_cli_load_pace(double rate, uint64_t i, int64_t start_ms)
{
    if (rate <= 0.0)
        return;
    int64_t due = start_ms + (int64_t)((double)i * 1000.0 / rate);
    tl_cli_sleep_ms(due - tl_cli_now_ms());
}

static int gen_next(void *user, uint64_t i, tl_cli_out *m)
{
    tl_cli_gen *g = user;
    if (i >= g->load->count)
        return 0;
    m->payload = g->payload;
    m->len = tl_cli_load_payload(g->load, i, g->payload, sizeof(g->payload));
    m->key_len = tl_cli_load_key(g->load, i, g->key, sizeof(g->key));
    m->key = m->key_len ? g->key : NULL;
    m->nheaders = 0;
    m->marker = tl_cli_load_marker(g->load, i);
    return 1;
}

tl_cli_feed tl_cli_load_feed(tl_cli_gen *g, const tl_cli_load *l)
{
    g->load = l;
    return (tl_cli_feed){.next = gen_next, .user = g, .rate = l->rate, .partitions = l->partitions};
}

/* ---------------------------------------------------------------- Kafka */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    tl_cli_load_stats *st = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&st->delivered, 1);
        return;
    }
    /* Only the first few: a broker that went away would otherwise flood stderr. */
    if (atomic_fetch_add(&st->failed, 1) < 3)
        tl_cli_err("produce: delivery failed: %s", rd_kafka_err2str(m->err));
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) /* syslog warning and worse */
        tl_cli_err("produce: librdkafka %s: %s", fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    if (rd_kafka_conf_set(conf, k, v, err, errlen) == RD_KAFKA_CONF_OK)
        return 0;
    return -1;
}

static rd_kafka_t *new_producer(const char *brokers, tl_cli_load_stats *st, char *err,
                                size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Idempotence: a retried produce request never duplicates or reorders a message. */
    if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) ||
        conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        conf_set(conf, "linger.ms", "5", err, errlen) ||
        conf_set(conf, "message.timeout.ms", "30000", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Headers for a producev call (NULL when there are none); librdkafka owns them once
 * the call succeeds. */
static rd_kafka_headers_t *kafka_headers(const tl_cli_out *m)
{
    if (m->nheaders == 0)
        return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(m->nheaders);
    for (size_t k = 0; k < m->nheaders; k++)
        rd_kafka_header_add(h, m->headers[k].key, -1, m->headers[k].value,
                            (ssize_t)strlen(m->headers[k].value));
    return h;
}

/* Sends m, waiting for room in librdkafka's queue; false on a hard error. */
static bool send_one(rd_kafka_t *rk, const char *topic, const tl_cli_out *m, int32_t part,
                     const atomic_bool *stop)
{
    for (;;) {
        rd_kafka_headers_t *h = kafka_headers(m);
        rd_kafka_resp_err_t e =
            h ? rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_VALUE((void *)m->payload, m->len),
                                  RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_HEADERS(h),
                                  RD_KAFKA_V_END)
              : rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_VALUE((void *)m->payload, m->len),
                                  RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return true;
        if (h)
            rd_kafka_headers_destroy(h);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || (stop && atomic_load(stop))) {
            tl_cli_err("produce: cannot send to %s: %s", topic, rd_kafka_err2str(e));
            return false;
        }
        rd_kafka_poll(rk, 10);
    }
}

void tl_cli_load_count(tl_cli_marker marker, tl_cli_load_stats *st)
{
    atomic_fetch_add(&st->sent, 1);
    if (marker == TL_CLI_STALL)
        atomic_fetch_add(&st->stall, 1);
    else if (marker == TL_CLI_FAIL)
        atomic_fetch_add(&st->fail, 1);
}

int tl_cli_produce_kafka_feed(const char *brokers, const char *topic, const tl_cli_feed *f,
                              tl_cli_load_stats *st, const atomic_bool *stop, char *err,
                              size_t errlen)
{
    rd_kafka_t *rk = new_producer(brokers, st, err, errlen);
    if (!rk) {
        atomic_store(&st->finished, true);
        return -1;
    }
    int64_t start = tl_cli_now_ms();
    tl_cli_out m;
    int more = 1;
    for (uint64_t i = 0; !(stop && atomic_load(stop)) && (more = f->next(f->user, i, &m)) > 0;
         i++) {
        tl_cli_load_pace(f->rate, i, start);
        int32_t part =
            f->partitions > 0 ? (int32_t)(i % (uint64_t)f->partitions) : RD_KAFKA_PARTITION_UA;
        if (!send_one(rk, topic, &m, part, stop)) {
            atomic_fetch_add(&st->failed, 1);
            break;
        }
        tl_cli_load_count(m.marker, st);
        rd_kafka_poll(rk, 0);
    }
    if (more < 0)
        atomic_fetch_add(&st->failed, 1);
    rd_kafka_flush(rk, FLUSH_MS);
    /* Whatever is still queued after the flush will never be reported: count it lost. */
    int left = rd_kafka_outq_len(rk);
    if (left > 0)
        atomic_fetch_add(&st->failed, (uint64_t)left);
    char fatal[256];
    if (rd_kafka_fatal_error(rk, fatal, sizeof(fatal)))
        tl_cli_err("produce: fatal producer error: %s", fatal);
    rd_kafka_destroy(rk);
    atomic_store(&st->finished, true);
    return 0;
}

int tl_cli_produce_kafka(const char *brokers, const char *topic, const tl_cli_load *l,
                         tl_cli_load_stats *st, const atomic_bool *stop, char *err, size_t errlen)
{
    /* Too big for the stack of the demo's load thread alongside librdkafka's calls. */
    tl_cli_gen *g = malloc(sizeof(*g));
    if (!g) {
        snprintf(err, errlen, "out of memory");
        atomic_store(&st->finished, true);
        return -1;
    }
    tl_cli_feed f = tl_cli_load_feed(g, l);
    int rc = tl_cli_produce_kafka_feed(brokers, topic, &f, st, stop, err, errlen);
    free(g);
    return rc;
}
