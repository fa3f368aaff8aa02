/*
 * Handler outputs: tl_handler_emit queues a copy of a message for one of the route's
 * `outputs:` targets, on the record of the attempt emitting. Nothing is sent while the
 * attempt runs: once it succeeds the loop sends what it queued, in the order queued,
 * and the message is settled only when every output acknowledged its part, so its
 * offset is committed after its outputs have them (at least once: a crash before the
 * commit sends them again). A failed attempt's queue is dropped (its retry queues
 * afresh), and so is a stalled one's: a handler that finishes after its time sends
 * nothing. A refused send is tried again with backoff, as a reroute is.
 *
 * Thread rules: tl_handler_emit runs on the handler's thread and only pushes onto the
 * record's queue (an atomic stack, taken whole by the loop); everything else runs on
 * the loop thread; a sink's ack callback may run on any thread and only posts the
 * outcome to the loop.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One message queued for an output, copied in one block: header, headers, bytes. */
struct tl_emit {
    struct tl_emit *next;
    tl_rec *rec;
    tl_target *target; /* NULL in a worker process, which sends nothing itself */
    uint32_t index;    /* in the route's outputs */
    bool failed;       /* refused: sent again when the record's timer fires */
    tl_out_msg out;
};

typedef struct emit_ack {
    struct tl_emit *e;
    int err;
    char what[160];
} emit_ack;

/* The number of the route's output called name (NULL: its first), or false. */
static bool output_named(const tl_route_state *route, const char *name, size_t *index)
{
    const tl_config_route *r = route->cfg;
    for (size_t i = 0; i < r->noutputs; i++)
        if (!name || strcmp(r->outputs[i].name, name) == 0) {
            *index = i;
            return true;
        }
    return false;
}

static struct tl_emit *emit_copy(tl_rec *rec, tl_target *target, const tl_out_msg *m)
{
    size_t size = sizeof(struct tl_emit) + m->nheaders * sizeof(tl_header) + m->len + m->key_len;
    for (size_t i = 0; i < m->nheaders; i++)
        size += strlen(m->headers[i].name) + 1 + m->headers[i].len;
    struct tl_emit *e = malloc(size);
    if (!e)
        return NULL;
    *e = (struct tl_emit){.rec = rec, .target = target};
    tl_header *h = (tl_header *)(e + 1);
    char *p = (char *)(h + m->nheaders);
    for (size_t i = 0; i < m->nheaders; i++) {
        size_t nl = strlen(m->headers[i].name) + 1;
        memcpy(p, m->headers[i].name, nl);
        h[i].name = p;
        p += nl;
        if (m->headers[i].len)
            memcpy(p, m->headers[i].value, m->headers[i].len);
        h[i].value = p;
        h[i].len = m->headers[i].len;
        p += m->headers[i].len;
    }
    e->out = (tl_out_msg){.headers = h, .nheaders = m->nheaders};
    if (m->len)
        memcpy(p, m->payload, m->len);
    e->out.payload = p;
    e->out.len = m->len;
    p += m->len;
    if (m->key) {
        if (m->key_len)
            memcpy(p, m->key, m->key_len);
        e->out.key = p;
        e->out.key_len = m->key_len;
    }
    return e;
}

int tl__emit_queue_at(tl_rec *rec, size_t index, const tl_out_msg *msg)
{
    const tl_route_state *route = rec->route;
    /* A worker process has no sinks: what it queues crosses to the service (child.c). */
    tl_target *target =
        index < route->cfg->noutputs && route->outputs ? route->outputs[index] : NULL;
    if (index >= route->cfg->noutputs || (!target && !rec->in_worker))
        return TL_ENOTFOUND;
    if (!msg || (msg->len && !msg->payload) || (msg->nheaders && !msg->headers))
        return TL_EINVAL;
    struct tl_emit *e = emit_copy(rec, target, msg);
    if (!e)
        return TL_ENOMEM;
    e->index = (uint32_t)index;
    struct tl_emit *head = atomic_load_explicit(&rec->emits, memory_order_relaxed);
    do
        e->next = head;
    while (!atomic_compare_exchange_weak_explicit(&rec->emits, &head, e, memory_order_release,
                                                  memory_order_relaxed));
    return 0;
}

int tl__emit_queue(tl_rec *rec, const char *output, const tl_out_msg *msg)
{
    size_t index;
    if (!output_named(rec->route, output, &index))
        return TL_ENOTFOUND;
    return tl__emit_queue_at(rec, index, msg);
}

int tl__emit_frame(tl_rec *rec, uint64_t seq, tl_frame_out *o)
{
    size_t n = 0;
    for (struct tl_emit *e = atomic_load(&rec->emits); e; e = e->next)
        n++;
    if (n == 0)
        return 0;
    uint32_t *index = malloc(n * sizeof(*index));
    const tl_out_msg **msgs = malloc(n * sizeof(*msgs));
    int rc = TL_ENOMEM;
    if (index && msgs) {
        /* The stack holds them newest first. */
        size_t i = n;
        for (struct tl_emit *e = atomic_load(&rec->emits); e; e = e->next) {
            i--;
            index[i] = e->index;
            msgs[i] = &e->out;
        }
        rc = tl__frame_put_emits(o, seq, n, index, msgs);
    }
    free(index);
    free(msgs);
    return rc;
}

static void free_list(struct tl_emit *e)
{
    while (e) {
        struct tl_emit *next = e->next;
        free(e);
        e = next;
    }
}

void tl__emit_discard(tl_rec *rec)
{
    free_list(atomic_exchange_explicit(&rec->emits, NULL, memory_order_acquire));
}

void tl__emit_free(tl_rec *rec)
{
    tl__emit_discard(rec);
    free_list(rec->emit_out);
    rec->emit_out = NULL;
}

static void send_one(struct tl_emit *e);

static void resend_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_rec *rec = arg;
    for (struct tl_emit *e = rec->emit_out; e; e = e->next)
        if (e->failed) {
            e->failed = false;
            send_one(e);
        }
}

/* A send was refused: said, and tried again (with the record's other refused ones). */
static void send_failed(struct tl_emit *e, int err, const char *what)
{
    tl_rec *rec = e->rec;
    TL_STAT_ADD(rec->svc, emit_errors, 1);
    atomic_fetch_add_explicit(&e->target->errors, 1, memory_order_relaxed);
    e->failed = true;
    rec->send_tries++;
    int64_t delay = tl__send_backoff_ms(rec->send_tries);
    char d[24];
    snprintf(d, sizeof(d), "%lldms", (long long)delay);
    tl_kv f[] = {{"output", e->target->name}, {"retry_in", d}};
    tl__log_msg(rec, TL_LEVEL_WARN, "emit_failed", rec->attempt,
                what && *what ? what : tl_strerror(err), f, 2);
    if (tl__txn_send_failed(rec, what && *what ? what : tl_strerror(err)))
        return;
    if (rec->timer.heap_index == SIZE_MAX)
        tl_timer_start(&rec->timer, delay, resend_fire, rec);
}

static void ack_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    emit_ack *a = arg;
    struct tl_emit *e = a->e;
    tl_rec *rec = e->rec;
    if (rec->svc->closing) {
        free(a);
        return;
    }
    if (a->err != 0) {
        send_failed(e, a->err, a->what);
        free(a);
        return;
    }
    free(a);
    TL_STAT_ADD(rec->svc, emitted, 1);
    for (struct tl_emit **p = &rec->emit_out; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    free(e);
    if (--rec->emits_pending == 0)
        rec->svc->hooks.emitted(rec);
}

/* Any thread: the sink's verdict on one send. */
static void on_ack(void *arg, int err, const char *what)
{
    struct tl_emit *e = arg;
    emit_ack *a = malloc(sizeof(*a));
    if (!a)
        abort(); /* losing an ack would leave the message unsettled forever */
    a->e = e;
    a->err = err;
    snprintf(a->what, sizeof(a->what), "%s", what ? what : "");
    if (tl_loop_call_threadsafe(e->rec->svc->loop, ack_on_loop, a) != 0)
        free(a); /* the loop is gone: the record went with it */
}

static void send_one(struct tl_emit *e)
{
    int rc = tl__target_send(e->rec->svc, e->target, &e->out, on_ack, e);
    if (rc != 0)
        send_failed(e, rc, tl_strerror(rc));
}

bool tl__emit_flush(tl_rec *rec)
{
    struct tl_emit *e = atomic_exchange_explicit(&rec->emits, NULL, memory_order_acquire);
    if (!e)
        return false;
    /* The stack holds them newest first: sent in the order the handler queued them. */
    struct tl_emit *fifo = NULL;
    size_t n = 0;
    while (e) {
        struct tl_emit *next = e->next;
        e->next = fifo;
        fifo = e;
        e = next;
        n++;
    }
    rec->state = REC_EMITTING;
    rec->emit_out = fifo;
    rec->emits_pending = n;
    rec->send_tries = 0;
    /* A send's ack may free its entry: the next one is read first. */
    for (struct tl_emit *next; fifo; fifo = next) {
        next = fifo->next;
        send_one(fifo);
    }
    return true;
}
