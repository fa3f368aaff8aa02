/*
 * Delivery from the Kafka source: messages wrapped as tl_msg for the runtime, their
 * release and destruction, and errors and commit outcomes reported as events.
 *
 * Thread rules: source.c's, for the whole source. Here: wrapping, taking and delivering
 * run on the poll thread; release on any thread (a lock-free push onto `released`);
 * destroying released messages on the poll thread, or on the loop thread once the poll
 * thread has ended.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kafka_source.h"

void tl_kafka_src_emit_error(tl_source *s, int err, bool fatal, const char *fmt, ...)
{
    if (!s->ev.error)
        return;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    s->ev.error(s->ev.rt, s, err, fatal, what);
}

void tl_kafka_src_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    tl_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        tl_kafka_src_emit_error(s, TL_EIO, true, "kafka fatal %s: %s", rd_kafka_err2name(orig),
                                why);
        return;
    }
    /* librdkafka retries a refused login for ever; wrong credentials or mechanism do not
     * mend themselves, so the service stops with the reason instead of waiting. */
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        tl_kafka_src_emit_error(s, TL_EIO, true, "kafka authentication failed: %s", reason);
        return;
    }
    tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka %s: %s", rd_kafka_err2name(err),
                            reason);
}

void tl_kafka_src_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    tl_source *s = opaque;
    /* _NO_OFFSET: nothing new was stored, nothing to report. */
    if (!s->ev.committed || !offsets || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        rd_kafka_resp_err_t e = err ? err : tp->err;
        if (tp->offset < 0 && !e)
            continue; /* no position of this partition was committed */
        s->ev.committed(s->ev.rt, s, tp->topic, tp->partition, tp->offset, e ? tl_kafka_err(e) : 0);
    }
}

static kmsg *wrap(tl_source *s, rd_kafka_message_t *rkm)
{
    rd_kafka_headers_t *hs = NULL;
    size_t nh = rd_kafka_message_headers(rkm, &hs) ? 0 : rd_kafka_header_cnt(hs);
    kmsg *k = tl_recycler_get(s->wrappers);
    if (!k)
        return NULL;
    k->hdrs = nh <= KMSG_HEADERS ? k->inline_hdrs : malloc(nh * sizeof(tl_header));
    if (!k->hdrs) {
        tl_recycler_put(s->wrappers, k);
        return NULL;
    }
    for (size_t i = 0; i < nh; i++) {
        const void *v = NULL;
        size_t len = 0;
        rd_kafka_header_get_all(hs, i, &k->hdrs[i].name, &v, &len);
        k->hdrs[i].value = v;
        k->hdrs[i].len = len;
    }
    k->rkm = rkm;
    k->msg = (tl_msg){
        .payload = rkm->payload,
        .len = rkm->len,
        .key = rkm->key,
        .key_len = rkm->key_len,
        .headers = nh ? k->hdrs : NULL,
        .nheaders = nh,
        .origin = rd_kafka_topic_name(rkm->rkt),
        .partition = rkm->partition,
        .offset = rkm->offset,
        .timestamp_ms = rd_kafka_message_timestamp(rkm, NULL),
        .handle = rkm,
    };
    return k;
}

static void consumer_error(tl_source *s, rd_kafka_message_t *rkm)
{
    rd_kafka_resp_err_t err = rkm->err;
    /* EOF is informational: nothing is wrong and consumption goes on. */
    if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        tl_kafka_src_on_error(s->rk, err, "", s);
        return;
    }
    if (rkm->rkt)
        tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka %s [%d]: %s",
                                rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                                rd_kafka_message_errstr(rkm));
    else
        tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka consumer: %s",
                                rd_kafka_message_errstr(rkm));
}

/* Takes rkm; returns true when it joined the batch. */
bool tl_kafka_src_take(tl_source *s, rd_kafka_message_t *rkm, size_t *n)
{
    if (rkm->err) {
        consumer_error(s, rkm);
        rd_kafka_message_destroy(rkm);
        return false;
    }
    kmsg *k = wrap(s, rkm);
    if (!k) {
        /* Skipping it would let a later commit pass over it: stop the service instead. */
        tl_kafka_src_emit_error(
            s, TL_ENOMEM, true, "kafka %s [%d] offset %lld: no memory to deliver",
            rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, (long long)rkm->offset);
        rd_kafka_message_destroy(rkm);
        return false;
    }
    s->batch[(*n)++] = &k->msg;
    return true;
}

void tl_kafka_src_unbatch_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->nbatch; i++) {
        const tl_msg *m = s->batch[i];
        if (rd_kafka_topic_partition_list_find(parts, m->origin, m->partition))
            tl_kafka_src_release(s, s->batch[i]);
        else
            s->batch[keep++] = s->batch[i];
    }
    s->nbatch = keep;
}

void tl_kafka_src_release(tl_source *s, tl_msg *msg)
{
    if (!msg)
        return;
    kmsg *k = (kmsg *)msg;
    kmsg *head = atomic_load_explicit(&s->released, memory_order_relaxed);
    do {
        k->next_released = head;
    } while (!atomic_compare_exchange_weak_explicit(&s->released, &head, k, memory_order_release,
                                                    memory_order_relaxed));
}

/* Destroys the messages of released wrappers and recycles the wrappers. The poll
 * thread only, or the loop thread once the poll thread has ended: the recycler's. */
void tl_kafka_src_destroy_released(tl_source *s)
{
    kmsg *k = atomic_exchange_explicit(&s->released, NULL, memory_order_acquire);
    while (k) {
        kmsg *next = k->next_released;
        if (next)
            __builtin_prefetch(next->rkm);
        rd_kafka_message_destroy(k->rkm);
        if (k->hdrs != k->inline_hdrs)
            free(k->hdrs);
        tl_recycler_put_owned(s->wrappers, k);
        k = next;
    }
}

void tl_kafka_src_deliver(tl_source *s, size_t n)
{
    if (s->ev.deliver) {
        s->ev.deliver(s->ev.rt, s, s->batch, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        tl_kafka_src_release(s, s->batch[i]);
}
