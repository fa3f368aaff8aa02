/*
 * The memory sink: appends copies of sent messages to a named store.
 *
 * Acks never run inside send(): the runtime may hold its own locks around send(), and a
 * real broker acks later from another thread. Each sink has an ack thread for that.
 *
 * Thread rules:
 *  - open/send/flush/close run on the loop thread (adapter.h); the test hooks below on
 *    any thread.
 *  - tl_mem_lock guards the stores, every sink's ack queue, busy, nheld and closing.
 *    The ack thread waits on work, flush() on idle; acks run without the lock.
 */
#include "memory_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ack_item {
    struct ack_item *next;
    tl_sink_ack_cb ack;
    void *arg;
    int err;
    const char *what; /* static text */
} ack_item;

struct mem_held {
    mem_held *next;
    tl_memory_record *rec;
    tl_sink *sink;
    ack_item *ack; /* queued on sink when released or closed */
};

struct tl_sink {
    mem_store *store;
    mem_topic *txn; /* a transaction sink: sends wait in its source's transaction */
    size_t txn_ctx; /* of that context */
    pthread_t thread;
    pthread_cond_t work;
    pthread_cond_t idle;
    ack_item *head, *tail;
    bool busy;
    bool closing;
    size_t nheld; /* this sink's entries in store->held */
};

static const tl_param sink_params[] = {
    {NULL, 0, false, false, NULL},
};

static void queue_ack_locked(tl_sink *sink, ack_item *a, int err, const char *what)
{
    a->err = err;
    a->what = what;
    a->next = NULL;
    if (sink->tail)
        sink->tail->next = a;
    else
        sink->head = a;
    sink->tail = a;
    pthread_cond_signal(&sink->work);
}

static void *ack_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-mem-sink"); /* for top -H, perf, gdb */
    tl_sink *sink = arg;
    pthread_mutex_lock(&tl_mem_lock);
    for (;;) {
        while (!sink->head && !sink->closing)
            pthread_cond_wait(&sink->work, &tl_mem_lock);
        ack_item *a = sink->head;
        if (!a)
            break;
        sink->head = a->next;
        if (!sink->head)
            sink->tail = NULL;
        sink->busy = true;
        pthread_mutex_unlock(&tl_mem_lock);
        a->ack(a->arg, a->err, a->what);
        free(a);
        pthread_mutex_lock(&tl_mem_lock);
        sink->busy = false;
        pthread_cond_broadcast(&sink->idle);
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return NULL;
}

/* ------------------------------------------------------------ ops */

static int sink_open(const char *address, const tl_params *conf, tl_sink **out, char *err,
                     size_t errlen)
{
    (void)conf;
    const char *why = NULL;
    tl_sink *sink = calloc(1, sizeof(*sink));
    if (!address || !*address)
        why = "memory sink: a store name is required";
    else if (!sink)
        why = "memory sink: out of memory";
    if (!why) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&sink->work, NULL);
        pthread_cond_init(&sink->idle, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_lock(&tl_mem_lock);
        sink->store = tl_mem_store_locked(address, true);
        if (sink->store)
            sink->store->users++;
        pthread_mutex_unlock(&tl_mem_lock);
        if (!sink->store)
            why = "memory sink: out of memory";
        else if (pthread_create(&sink->thread, NULL, ack_main, sink) != 0)
            why = "memory sink: cannot start its thread";
        if (why) {
            pthread_mutex_lock(&tl_mem_lock);
            if (sink->store)
                sink->store->users--;
            pthread_mutex_unlock(&tl_mem_lock);
            pthread_cond_destroy(&sink->work);
            pthread_cond_destroy(&sink->idle);
        }
    }
    if (why) {
        free(sink);
        if (err && errlen > 0) {
            strncpy(err, why, errlen - 1);
            err[errlen - 1] = '\0';
        }
        return address && *address ? TL_ENOMEM : TL_ECONFIG;
    }
    *out = sink;
    return 0;
}

/* Holds rec and its ack back until released or closed. */
static void hold_locked(tl_sink *sink, tl_memory_record *rec, ack_item *a)
{
    mem_held *h = malloc(sizeof(*h));
    if (!h) {
        free(rec);
        queue_ack_locked(sink, a, TL_ENOMEM, "memory sink: out of memory");
        return;
    }
    *h = (mem_held){NULL, rec, sink, a};
    mem_held **tail = &sink->store->held;
    while (*tail)
        tail = &(*tail)->next;
    *tail = h;
    sink->store->nheld++;
    sink->nheld++;
}

static int sink_send(tl_sink *sink, const tl_out_msg *msg, tl_sink_ack_cb ack, void *arg)
{
    if (!msg || !ack)
        return TL_EINVAL;
    tl_memory_record *rec = tl_mem_record_new(msg);
    ack_item *a = malloc(sizeof(*a));
    if (!rec || !a) {
        free(rec);
        free(a);
        return TL_ENOMEM;
    }
    a->ack = ack;
    a->arg = arg;
    pthread_mutex_lock(&tl_mem_lock);
    if (sink->closing) {
        pthread_mutex_unlock(&tl_mem_lock);
        free(rec);
        free(a);
        return TL_ECLOSED;
    }
    switch (sink->store->mode) {
    case TL_MEMSINK_FAIL:
        free(rec);
        queue_ack_locked(sink, a, TL_EIO, "memory sink set to fail");
        break;
    case TL_MEMSINK_HOLD:
        hold_locked(sink, rec, a);
        break;
    default: {
        int rc = sink->txn ? tl_mem_txn_add_locked(sink->txn, sink->txn_ctx, sink->store, rec)
                           : tl_mem_store_append_locked(sink->store, rec);
        if (rc != 0) {
            free(rec);
            queue_ack_locked(sink, a, rc,
                             rc == TL_ECLOSED ? "memory sink: the source's transactions ended"
                                              : "memory sink: out of memory");
        } else {
            queue_ack_locked(sink, a, 0, NULL);
        }
    }
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return 0;
}

static int sink_flush(tl_sink *sink, int64_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&tl_mem_lock);
    /* Held messages are outstanding sends too: flush waits for their release. */
    while ((sink->head || sink->busy || sink->nheld) && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&sink->idle, &tl_mem_lock);
        else if (pthread_cond_timedwait(&sink->idle, &tl_mem_lock, &dl) == ETIMEDOUT)
            rc = sink->head || sink->busy || sink->nheld ? TL_ETIMEDOUT : 0;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return rc;
}

static void sink_close(tl_sink *sink)
{
    if (!sink)
        return;
    pthread_mutex_lock(&tl_mem_lock);
    for (mem_held **hp = &sink->store->held; *hp;) {
        mem_held *h = *hp;
        if (h->sink != sink) {
            hp = &h->next;
            continue;
        }
        *hp = h->next;
        sink->store->nheld--;
        free(h->rec);
        queue_ack_locked(sink, h->ack, TL_ECLOSED, "memory sink closed while holding the message");
        free(h);
    }
    sink->nheld = 0;
    sink->closing = true;
    sink->store->users--;
    pthread_cond_signal(&sink->work);
    pthread_mutex_unlock(&tl_mem_lock);
    /* The ack thread runs every queued ack before it sees closing with an empty queue. */
    pthread_join(sink->thread, NULL);
    pthread_cond_destroy(&sink->work);
    pthread_cond_destroy(&sink->idle);
    free(sink);
}

int tl_mem_sink_open_txn(const char *address, mem_topic *txn, size_t ctx, tl_sink **out, char *err,
                         size_t errlen)
{
    int rc = sink_open(address, NULL, out, err, errlen);
    if (rc == 0) {
        (*out)->txn = txn;
        (*out)->txn_ctx = ctx;
    }
    return rc;
}

const tl_sink_ops tl_memory_sink_ops = {
    .scheme = "memory",
    .params = sink_params,
    .open = sink_open,
    .send = sink_send,
    .flush = sink_flush,
    .close = sink_close,
};

/* ------------------------------------------------------------ test hooks */

int tl_memory_sink_set_mode(const char *name, tl_memsink_mode mode)
{
    if (mode != TL_MEMSINK_OK && mode != TL_MEMSINK_FAIL && mode != TL_MEMSINK_HOLD)
        return TL_EINVAL;
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, true);
    if (s)
        s->mode = mode;
    pthread_mutex_unlock(&tl_mem_lock);
    return s ? 0 : TL_ENOMEM;
}

size_t tl_memory_sink_release_held(const char *name)
{
    size_t n = 0;
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, false);
    while (s && s->held) {
        mem_held *h = s->held;
        s->held = h->next;
        s->nheld--;
        h->sink->nheld--;
        if (tl_mem_store_append_locked(s, h->rec) != 0) {
            free(h->rec);
            queue_ack_locked(h->sink, h->ack, TL_ENOMEM, "memory sink: out of memory");
        } else {
            queue_ack_locked(h->sink, h->ack, 0, NULL);
        }
        free(h);
        n++;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}

size_t tl_memory_sink_count(const char *name)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, false);
    size_t n = s ? s->n : 0;
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}

size_t tl_memory_sink_held(const char *name)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, false);
    size_t n = s ? s->nheld : 0;
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}

int tl_memory_sink_get(const char *name, size_t i, tl_memory_record **out)
{
    int rc = TL_ENOTFOUND;
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, false);
    if (s && i < s->n) {
        *out = tl_mem_record_copy(s->recs[i]);
        rc = *out ? 0 : TL_ENOMEM;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return rc;
}

void tl_memory_sink_clear(const char *name)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_store *s = tl_mem_store_locked(name, false);
    for (size_t i = 0; s && i < s->n; i++)
        free(s->recs[i]);
    if (s)
        s->n = 0;
    pthread_mutex_unlock(&tl_mem_lock);
}
