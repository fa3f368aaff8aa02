/*
 * Transactions of the memory source: what its transaction sinks send waits in a list
 * on the topic the source reads, and a commit appends it all to the stores and records
 * the positions in one step under the adapter's lock, so a test sees both or neither.
 * A seal sets the open transaction's sends aside for the next commit, as the Kafka
 * source's two producers do, so later sends may go while it commits.
 * A commit a test made fail (tl_memory_fail_txn), or a source closed with sends still
 * waiting, drops them: an abort.
 *
 * Thread rules: the ops run on the loop thread; the list is guarded by tl_mem_lock.
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

static int txn_enable(tl_source *src, char *err, size_t errlen)
{
    (void)src;
    (void)err;
    (void)errlen;
    return 0; /* the memory source's positions only ever move by commits */
}

static int txn_sink(tl_source *src, const char *address, tl_sink **out, const tl_sink_ops **ops,
                    char *err, size_t errlen)
{
    *ops = &tl_memory_sink_ops;
    return tl_mem_sink_open_txn(address, topic_of(src), out, err, errlen);
}

static int txn_commit(tl_source *src, const tl_partition_offset *offs, size_t n, char *err,
                      size_t errlen)
{
    mem_topic *t = topic_of(src);
    pthread_mutex_lock(&tl_mem_lock);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(offs[i].topic, t->name) != 0 || offs[i].partition < 0 ||
            (size_t)offs[i].partition >= t->nparts || offs[i].next_offset < 0) {
            tl_mem_txn_discard_locked(t);
            pthread_mutex_unlock(&tl_mem_lock);
            snprintf(err, errlen, "memory: transaction aborted: no partition %s/%d", offs[i].topic,
                     (int)offs[i].partition);
            return TL_EINVAL;
        }
    }
    if (t->fail_txn) {
        t->fail_txn = false;
        tl_mem_txn_discard_locked(t);
        pthread_mutex_unlock(&tl_mem_lock);
        snprintf(err, errlen, "memory: transaction aborted (tl_memory_fail_txn)");
        return TL_EIO;
    }
    /* After a seal the sealed sends commit; the ones since wait for the next. */
    mem_pending **list = t->seal_taken ? &t->sealed : &t->pending;
    t->seal_taken = false;
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
        tl_mem_txn_discard_locked(t);
        pthread_mutex_unlock(&tl_mem_lock);
        snprintf(err, errlen, "memory: transaction aborted: out of memory");
        return rc;
    }
    if (!t->pending)
        t->pending_tail = &t->pending;
    for (size_t i = 0; i < n; i++)
        t->parts[offs[i].partition].committed = offs[i].next_offset;
    pthread_mutex_unlock(&tl_mem_lock);
    return 0;
}

/* The open transaction's sends become the sealed one's; later ones start the next. */
static int txn_seal(tl_source *src, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    mem_topic *t = topic_of(src);
    pthread_mutex_lock(&tl_mem_lock);
    mem_pending **tail = &t->sealed; /* empty: the last commit took it */
    while (*tail)
        tail = &(*tail)->next;
    *tail = t->pending;
    t->pending = NULL;
    t->pending_tail = &t->pending;
    t->seal_taken = true;
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
    for (mem_pending *p = t ? t->pending : NULL; p; p = p->next)
        n++;
    for (mem_pending *p = t ? t->sealed : NULL; p; p = p->next)
        n++;
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}
