/*
 * Revocation: partitions taken away by a rebalance. The source's revoked event waits
 * while the loop drops what of them comes after every attempt made (queued records,
 * retries waiting, held messages: their next owner fetches them from the committed
 * position), lets the rest run and settle up to the drain timeout, commits, and
 * forgets the partitions. Dropping only past the last attempt made keeps a clean
 * handover free of duplicates: the commit covers everything that ran here. Lost
 * partitions (the lost event) can commit nothing: everything not started is dropped,
 * so that only what ran here is repeated by their next owner, not more.
 *
 * Thread rules: tl__revoke runs on the source's thread and waits on its request's
 * condition variable; everything else runs on the loop thread.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tl_revoke_req {
    tl_revoke_req *next;
    tl_source_state *src;
    tl_partition *parts;
    size_t n;
    int64_t deadline_ms;
    bool lost; /* no commit can land: nothing not started runs, nothing is committed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

/* True once every partition of the request has nothing in flight. */
static bool revoke_drained(tl_service *svc, tl_revoke_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p =
            tl__partition_find(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (p && p->in_flight > 0)
            return false;
    }
    return true;
}

/* Commits what is settled, forgets the partitions and lets the source go on. */
static void revoke_finish(tl_service *svc, tl_revoke_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p =
            tl__partition_find(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (!p)
            continue;
        if (!r->lost)
            tl__partition_commit(svc, p);
        char part[16], next[24];
        snprintf(part, sizeof(part), "%d", (int)p->partition);
        snprintf(next, sizeof(next), "%lld", (long long)p->offsets.next);
        tl_kv f[] = {{"source", r->src->cfg->name},
                     {"topic", p->topic},
                     {"partition", part},
                     {r->lost ? "settled" : "committed", next}};
        tl__log(svc, r->lost ? TL_LEVEL_WARN : TL_LEVEL_INFO,
                r->lost ? "partition_lost" : "partition_revoked", f, 4);
        /* What was committed may still be lost (a coordinator that went away): when
         * the partition comes back, its offsets are committed again as they settle. */
        pthread_mutex_lock(&svc->mu);
        p->committed = -1;
        pthread_mutex_unlock(&svc->mu);
        p->high_settled = -1;
        p->assigned = false;
        p->revoking = false;
        p->revoked = true;
        p->gen++;
        tl__txn_revoked(svc, p); /* after the bump: what it held back never goes */
        p->in_flight = 0;
        TL_STAT_ADD(svc, uncommitted, -(p->offsets.tail - p->offsets.head));
        svc->unacked -= tl__partition_unacked(p);
        tl_offsets_reset(&p->offsets);
        /* Acknowledgements still to come belong to the old assignment. */
        p->acked = p->offsets.head;
        p->npoints = 0;
    }
    tl__partitions_recount(svc);
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void tl__revokes_check(tl_service *svc)
{
    tl_revoke_req **pp = &svc->revokes;
    int64_t now = tl_loop_now(svc->loop);
    while (*pp) {
        tl_revoke_req *r = *pp;
        if (revoke_drained(svc, r) || now >= r->deadline_ms) {
            *pp = r->next;
            revoke_finish(svc, r);
            /* The revoked partitions' uncommitted messages no longer count: batches
             * held past the bound may go in now. */
            tl__intake_resume(svc);
        } else {
            pp = &r->next;
        }
    }
}

static void revoke_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_revoke_req *r = arg;
    tl_service *svc = r->src->svc;
    if (r->lost)
        tl__txn_fail(svc, r->src, "transaction_lost",
                     "partitions were lost: what the open transaction holds of them could be "
                     "made again by their next owner");
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p =
            tl__partition_find(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (p) {
            p->revoking = true;
            tl__records_revoking(svc, p, r->lost);
        }
    }
    tl__partitions_recount(svc); /* revoking partitions take no share */
    tl__intake_release_held_of(svc, r->src, r->parts, r->n);
    char n[16];
    snprintf(n, sizeof(n), "%zu", r->n);
    tl_kv f[] = {{"source", r->src->cfg->name}, {"partitions", n}};
    tl__log(svc, r->lost ? TL_LEVEL_WARN : TL_LEVEL_INFO, r->lost ? "losing" : "revoking", f, 2);
    r->deadline_ms = tl_loop_now(svc->loop) + svc->cfg->drain_timeout_ms;
    r->next = svc->revokes;
    svc->revokes = r;
    tl__revokes_check(svc);
}

tl_revoke_req *tl__revoke_post(tl_source_state *src, const tl_partition *parts, size_t n, bool lost)
{
    tl_service *svc = src->svc;
    /* During shutdown the loop already drained and committed, and may be waiting in
     * ops->stop for this very thread: answering at once avoids the deadlock. */
    if (atomic_load(&svc->stopping))
        return NULL;
    tl_revoke_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->parts = malloc((n ? n : 1) * sizeof(*r->parts)))) {
        free(r);
        return NULL;
    }
    r->src = src;
    r->n = n;
    r->lost = lost;
    memcpy(r->parts, parts, n * sizeof(*parts));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (tl_loop_call_threadsafe(svc->loop, revoke_on_loop, r) != 0)
        r->done = true;
    return r;
}

void tl__revoke_wait(tl_revoke_req *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->parts);
    free(r);
}

void tl__revoke(tl_source_state *src, const tl_partition *parts, size_t n, bool lost)
{
    tl__revoke_wait(tl__revoke_post(src, parts, n, lost));
}
