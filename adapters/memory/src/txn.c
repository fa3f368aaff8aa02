/*
 * Transactions of the memory source: what a transaction sink sends waits in its
 * context's list on the topic the source reads (one context per loop of the service),
 * and the context's commit appends it all to the stores and records the positions in
 * one step under the adapter's lock, so a test sees both or neither.
 * A seal sets the open transaction's sends aside for the next commit, as the Kafka
 * source's two producers do, so later sends may go while it commits.
 * A commit a test made fail (tl_memory_fail_txn), or a source closed with sends still
 * waiting, drops them: an abort.
 *
 * Thread rules: each context's ops run on its loop thread (or the runtime's committer);
 * the lists are guarded by tl_mem_lock.
 */
#include "memory_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The topic the source reads. */
static mem_topic *topic_of(tl_source *src)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_of_locked(src);
    pthread_mutex_unlock(&tl_mem_lock);
    return t;
}

static int txn_enable(tl_source *src, size_t contexts, char *err, size_t errlen)
{
    if (contexts == 0) {
        snprintf(err, errlen, "memory: a source needs at least one transaction context");
        return TL_EINVAL;
    }
    mem_txn *v = calloc(contexts, sizeof(*v));
    if (!v)
        return TL_ENOMEM;
    for (size_t i = 0; i < contexts; i++)
        v[i].pending_tail = &v[i].pending;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_of_locked(src);
    tl_mem_txn_discard_locked(t); /* an earlier source's, never committed: aborted */
    t->txns = v;
    t->ntxns = contexts;
    pthread_mutex_unlock(&tl_mem_lock);
    return 0; /* the memory source's positions only ever move by commits */
}

/* Context ctx of the topic t, or NULL with why in err. */
static mem_txn *context_locked(mem_topic *t, size_t ctx, char *err, size_t errlen)
{
    if (ctx < t->ntxns)
        return &t->txns[ctx];
    snprintf(err, errlen, "memory: no transaction context %zu (the source has %zu)", ctx, t->ntxns);
    return NULL;
}

static int txn_sink(tl_source *src, size_t ctx, const char *address, tl_sink **out,
                    const tl_sink_ops **ops, char *err, size_t errlen)
{
    mem_topic *t = topic_of(src);
    pthread_mutex_lock(&tl_mem_lock);
    bool ok = context_locked(t, ctx, err, errlen) != NULL;
    pthread_mutex_unlock(&tl_mem_lock);
    if (!ok)
        return TL_EINVAL;
    *ops = &tl_memory_sink_ops;
    return tl_mem_sink_open_txn(address, t, ctx, out, err, errlen);
}

static int txn_commit(tl_source *src, size_t ctx, const tl_partition_offset *offs, size_t n,
                      char *err, size_t errlen)
{
    mem_topic *t = topic_of(src);
    pthread_mutex_lock(&tl_mem_lock);
    mem_txn *x = context_locked(t, ctx, err, errlen);
    if (!x) {
        pthread_mutex_unlock(&tl_mem_lock);
        return TL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(offs[i].topic, t->name) != 0 || offs[i].partition < 0 ||
            (size_t)offs[i].partition >= t->nparts || offs[i].next_offset < 0) {
            tl_mem_txn_discard_one_locked(x);
            pthread_mutex_unlock(&tl_mem_lock);
            snprintf(err, errlen, "memory: transaction aborted: no partition %s/%d", offs[i].topic,
                     (int)offs[i].partition);
            return TL_EINVAL;
        }
    }
    if (t->fail_txn) {
        t->fail_txn = false;
        tl_mem_txn_discard_one_locked(x);
        pthread_mutex_unlock(&tl_mem_lock);
        snprintf(err, errlen, "memory: transaction aborted (tl_memory_fail_txn)");
        return TL_EIO;
    }
    /* After a seal the sealed sends commit; the ones since wait for the next. */
    mem_pending **list = x->seal_taken ? &x->sealed : &x->pending;
    x->seal_taken = false;
    int rc = 0;
    while (*list && rc == 0) {
        mem_pending *p = *list;
        rc = tl_mem_store_append_locked(p->store, p->rec);
        if (rc == 0) {
            *list = p->next;
            free(p);
        }
    }
    if (rc != 0) {
        tl_mem_txn_discard_one_locked(x);
        pthread_mutex_unlock(&tl_mem_lock);
        snprintf(err, errlen, "memory: transaction aborted: out of memory");
        return rc;
    }
    if (!x->pending)
        x->pending_tail = &x->pending;
    for (size_t i = 0; i < n; i++)
        t->parts[offs[i].partition].committed = offs[i].next_offset;
    pthread_mutex_unlock(&tl_mem_lock);
    return 0;
}

/* The open transaction's sends become the sealed one's; later ones start the next. */
static int txn_seal(tl_source *src, size_t ctx, char *err, size_t errlen)
{
    mem_topic *t = topic_of(src);
    pthread_mutex_lock(&tl_mem_lock);
    mem_txn *x = context_locked(t, ctx, err, errlen);
    if (!x) {
        pthread_mutex_unlock(&tl_mem_lock);
        return TL_EINVAL;
    }
    mem_pending **tail = &x->sealed; /* empty: the last commit took it */
    while (*tail)
        tail = &(*tail)->next;
    *tail = x->pending;
    x->pending = NULL;
    x->pending_tail = &x->pending;
    x->seal_taken = true;
    pthread_mutex_unlock(&tl_mem_lock);
    return 0;
}

const tl_txn_ops tl_mem_txn_ops = {
    .enable = txn_enable,
    .sink = txn_sink,
    .commit = txn_commit,
    .seal = txn_seal,
};

int tl_memory_fail_txn(const char *name)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    if (t)
        t->fail_txn = true;
    pthread_mutex_unlock(&tl_mem_lock);
    return t ? 0 : TL_ENOTFOUND;
}

size_t tl_memory_txn_pending(const char *name)
{
    size_t n = 0;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    for (size_t i = 0; t && i < t->ntxns; i++) {
        for (mem_pending *p = t->txns[i].pending; p; p = p->next)
            n++;
        for (mem_pending *p = t->txns[i].sealed; p; p = p->next)
            n++;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}
