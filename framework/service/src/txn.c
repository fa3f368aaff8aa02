/*
 * Exactly-once delivery (`delivery: exactly_once`): a route's sends (its outputs and
 * reroutes) and its source's positions are committed together, in one transaction of
 * the source's broker (tl_txn_ops), or not at all.
 *
 * A commit must cut each partition at one offset: every message below it has had its
 * sends written in this transaction or an earlier one, none at or above it has. Records
 * may finish out of offset order (ordering key or none), so a record's sends wait until
 * every earlier record of its partition has had its own go, or settled without any: each
 * partition keeps its records not yet past that point in offset order (txn_fifo), and
 * only the first may send. The others wait gated (REC_GATED) and go when they come first,
 * on the source's timer (never from inside a settle or a free, which may be deep in
 * another record's path). A partition's position is then its first such record's offset,
 * or the offset after the last one taken in when none is left. A stalled record at the
 * front holds its partition's sends back until its timeout reroutes it.
 *
 * A transaction ends once `transaction.messages` records had their sends go (the sends
 * of later ones wait for its commit), once it is `transaction.interval` old (checked at
 * housekeeping), at a revoke and at the end of the drain. A commit due by size or age runs
 * on the source's committer thread while the loop goes on (see "the committer"); one at a
 * revoke or the drain runs on the loop thread. A failed commit aborts what was sent since
 * the last one; the records that sent it are settled already, so no later commit may move
 * a position past them: the source commits nothing again and the service stops, and its
 * restart replays from the last commit. Lost partitions do the same (their sends in the
 * open transaction could otherwise be committed after their next owner made them again).
 *
 * With shards (loop.shards) each shard does all this for its own partitions, in a
 * transaction context of the source of its own (tl_txn_ops: context k is shard k's):
 * its own transactions, committer and timer, so a commit cuts only partitions whose
 * sends went through that context.
 *
 * Thread rules: each shard's loop thread, for its own source states.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions in one commit, most: more are committed in the next one. */
#define TXN_MAX_PARTS 4096

static tl_rec *first(tl_partition_state *p)
{
    return p->txn_fifo.head ? tl_list_item(p->txn_fifo.head, tl_rec, txn_link) : NULL;
}

static void txn_turn(tl_timer *timer, void *arg);
static int committer_start(tl_source_state *src);

/* Lets the source's gated sends go, and commits if due, on the loop's next turn. */
static void stir(tl_source_state *src)
{
    if (src->svc->closing)
        return; /* records are freed after the loop: no timer may start */
    if (src->txn_timer.heap_index == SIZE_MAX)
        tl_timer_start(&src->txn_timer, 0, txn_turn, src);
}

/* The open transaction holds as many records as it may: sends wait for its commit. */
static bool full(const tl_source_state *src)
{
    return src->txn_done >= (uint64_t)src->txn_route->txn_messages;
}

/* Sends wait: the transaction holds all it may, or it is being committed and the
 * source cannot seal it (tl_txn_ops.seal) so that later sends fill the next. */
static bool closed_for_sends(const tl_source_state *src)
{
    return full(src) || (src->txn_committing && !src->ops->txn->seal);
}

/* One more record had its sends go (or needed none). */
static void count_done(tl_rec *rec)
{
    tl_source_state *src = rec->route->src;
    rec->txn_done = true;
    if (src->txn_done++ == 0)
        src->txn_since_ms = tl_loop_now(rec->svc->loop);
    if (src->txn_done >= (uint64_t)src->txn_route->txn_messages)
        stir(src);
}

/* Takes the records at the front that are done, and lets gated ones there send. */
static void advance(tl_service *svc, tl_partition_state *p)
{
    tl_rec *rec;
    while ((rec = first(p)) != NULL) {
        if (!rec->txn_done && (rec->state != REC_GATED || closed_for_sends(rec->route->src)))
            return;
        tl_list_remove(&p->txn_fifo, &rec->txn_link);
        rec->txn_in = false;
        if (!rec->txn_done) {
            count_done(rec);
            svc->hooks.txn_go(rec); /* after it left the queue: it may be freed inside */
        }
    }
}

static void txn_turn(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_source_state *src = arg;
    tl_service *svc = src->svc;
    for (size_t i = 0; i < svc->nparts; i++)
        if (svc->parts[i]->src == src)
            advance(svc, svc->parts[i]);
    tl__txn_commit(svc, src, false);
}

/* The source's transaction context: one per loop, numbered like the shards. */
static size_t ctx_of(const tl_source_state *src)
{
    return src->svc->index;
}

int tl__txn_open(tl_service *svc, char *err, size_t errlen)
{
    size_t contexts = svc->cfg->shards > 1 ? svc->cfg->shards : 1;
    /* Every timer first: a failure below frees the service, which stops them. */
    for (size_t i = 0; i < svc->nroutes; i++)
        tl_timer_init(svc->loop, &svc->routes[i].src->txn_timer);
    for (size_t i = 0; i < svc->nroutes; i++) {
        tl_route_state *rt = &svc->routes[i];
        tl_source_state *src = rt->src;
        if (!rt->cfg->exactly_once)
            continue;
        char why[512] = "";
        int rc = src->ops->txn ? src->ops->txn->enable(src->handle, contexts, why, sizeof(why))
                               : TL_EINVAL;
        if (rc != 0) {
            snprintf(err, errlen, "source %s: exactly_once: %s", src->cfg->name,
                     why[0] ? why : "the source does not take part in transactions");
            return rc;
        }
        src->txn = true;
    }
    return tl__txn_loop_open(svc, err, errlen);
}

int tl__txn_loop_open(tl_service *svc, char *err, size_t errlen)
{
    for (size_t i = 0; i < svc->nroutes; i++) {
        tl_route_state *rt = &svc->routes[i];
        tl_source_state *src = rt->src;
        tl_timer_init(svc->loop, &src->txn_timer);
        if (!rt->cfg->exactly_once || !svc->root->srcs[src->index].txn)
            continue;
        src->txn = true;
        src->txn_route = rt->cfg;
        src->txn_since_ms = -1;
        int rc = committer_start(src);
        if (rc != 0) {
            snprintf(err, errlen, "source %s: exactly_once: cannot start its committer",
                     src->cfg->name);
            return rc;
        }
    }
    return 0;
}

void tl__txn_take(tl_rec *rec)
{
    if (!rec->route->src->txn)
        return;
    tl_partition_state *p = rec->part;
    tl_list_push_back(&p->txn_fifo, &rec->txn_link);
    rec->txn_in = true;
    p->txn_next = rec->msg->offset + 1;
}

int tl__txn_wait(tl_rec *rec)
{
    if (!rec->route->src->txn)
        return TL_TXN_GO;
    if (rec->gen != rec->part->gen)
        return TL_TXN_DROP;
    if (!rec->txn_in)
        return TL_TXN_GO;
    tl_partition_state *p = rec->part;
    if (first(p) != rec || closed_for_sends(rec->route->src))
        return TL_TXN_WAIT;
    tl_list_remove(&p->txn_fifo, &rec->txn_link);
    rec->txn_in = false;
    count_done(rec);
    tl_rec *next = first(p);
    if (next && (next->txn_done || next->state == REC_GATED))
        stir(rec->route->src);
    return TL_TXN_GO;
}

void tl__txn_revoked(tl_service *svc, tl_partition_state *p)
{
    tl_list gated = {0};
    tl_rec *rec;
    while ((rec = first(p)) != NULL) {
        tl_list_remove(&p->txn_fifo, &rec->txn_link);
        rec->txn_in = false;
        if (rec->state == REC_GATED)
            tl_list_push_back(&gated, &rec->txn_link);
    }
    tl_link *l;
    while ((l = tl_list_pop_front(&gated)) != NULL)
        svc->hooks.txn_go(tl_list_item(l, tl_rec, txn_link));
    p->txn_next = -1; /* its next owner may move it: what comes next is read afresh */
}

void tl__txn_settled(tl_rec *rec)
{
    if (!rec->txn_in || rec->txn_done)
        return;
    count_done(rec);
    if (first(rec->part) == rec)
        stir(rec->route->src);
}

void tl__txn_forget(tl_rec *rec)
{
    if (!rec->txn_in)
        return;
    tl_partition_state *p = rec->part;
    bool was_first = first(p) == rec;
    tl_list_remove(&p->txn_fifo, &rec->txn_link);
    rec->txn_in = false;
    /* Freed before it was done: a revoke dropped it unstarted, above everything that
     * ran (tl__records_revoking), so the position stops below it for its next owner. */
    if (!rec->txn_done && rec->msg->offset < p->txn_next)
        p->txn_next = rec->msg->offset;
    if (was_first && first(p))
        stir(rec->route->src);
}

void tl__txn_fail(tl_service *svc, tl_source_state *src, const char *event, const char *why)
{
    if (!src->txn || src->txn_broken)
        return;
    src->txn_broken = true;
    tl_timer_stop(&src->txn_timer);
    TL_STAT_ADD(svc, txn_aborts, 1);
    tl_kv f[] = {{"source", src->cfg->name},
                 {"error", why},
                 {"then", "stopping: a restart replays from the last commit"}};
    tl__log(svc, TL_LEVEL_ERROR, event, f, 3);
    tl__service_fail(svc, TL_EIO); /* housekeeping drains */
}

/* The source's partitions' positions: each its first record whose sends have not gone,
 * or the offset after the last one taken in; only those past their last commit. */
static size_t positions(tl_service *svc, tl_source_state *src, tl_partition_offset **out)
{
    size_t n = 0, cap = 0;
    tl_partition_offset *o = NULL;
    for (size_t i = 0; i < svc->nparts; i++) {
        tl_partition_state *p = svc->parts[i];
        if (p->src != src || !p->assigned || p->txn_next < 0)
            continue;
        tl_rec *head = first(p);
        int64_t pos = head && head->msg->offset < p->txn_next ? head->msg->offset : p->txn_next;
        if (pos <= p->committed)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            tl_partition_offset *bigger =
                ncap <= TXN_MAX_PARTS ? realloc(o, ncap * sizeof(*o)) : NULL;
            if (!bigger)
                break; /* the rest go in the next commit */
            o = bigger;
            cap = ncap;
        }
        o[n++] = (tl_partition_offset){p->topic, p->partition, pos};
    }
    *out = o;
    return n;
}

/* A commit went through: the positions are the partitions' committed ones. */
static void committed(tl_service *svc, tl_source_state *src, const tl_partition_offset *o, size_t n)
{
    /* tl_service_partitions reads committed from other threads (the admin endpoint). */
    pthread_mutex_lock(&svc->mu);
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < svc->nparts; i++) {
            tl_partition_state *p = svc->parts[i];
            if (p->src == src && p->partition == o[k].partition && p->topic == o[k].topic)
                p->committed = o[k].next_offset;
        }
    pthread_mutex_unlock(&svc->mu);
    TL_STAT_ADD(svc, txn_commits, 1);
}

/* ---------------------------------------------------------------- the committer */

/*
 * A commit that is due (size or age) runs on the source's committer thread, so the loop
 * goes on taking messages in and running handlers while the broker answers; the sends
 * wait meanwhile (the transaction is being ended), and go once it is committed. Commits
 * a revoke or the drain make wait for the one out, then run on the loop itself: the
 * revoke must not return before its partitions' positions are committed.
 */
struct tl_txn_committer {
    tl_source_state *src;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a job came, a job is done, or quit */
    bool quit;
    /* The job: guarded by mu. */
    bool out, done;
    tl_partition_offset *offs;
    size_t n;
    int rc;
    char why[512];
};

static void *committer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-txn-commit"); /* for top -H, perf, gdb */
    struct tl_txn_committer *c = arg;
    tl_source_state *src = c->src;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && (!c->out || c->done))
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit)
            break;
        pthread_mutex_unlock(&c->mu);
        char why[512] = "";
        int rc = src->ops->txn->commit(src->handle, ctx_of(src), c->offs, c->n, why, sizeof(why));
        pthread_mutex_lock(&c->mu);
        c->rc = rc;
        memcpy(c->why, why, sizeof(why));
        c->done = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        tl_loop_call_threadsafe(src->svc->loop, tl__txn_finish_posted, src);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int committer_start(tl_source_state *src)
{
    struct tl_txn_committer *c = calloc(1, sizeof(*c));
    if (!c)
        return TL_ENOMEM;
    c->src = src;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, committer_main, c) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return TL_ESYS;
    }
    src->txn_committer = c;
    return 0;
}

bool tl__txn_send_failed(tl_rec *rec, const char *what)
{
    tl_source_state *src = rec->route->src;
    if (!src->txn)
        return false;
    char why[300];
    snprintf(why, sizeof(why), "a send in the transaction was refused or failed: %s", what);
    tl__txn_fail(rec->svc, src, "transaction_failed", why);
    return true;
}

/* Loop thread: takes a finished job's outcome (nothing when none finished). */
static void finish(tl_service *svc, tl_source_state *src)
{
    struct tl_txn_committer *c = src->txn_committer;
    pthread_mutex_lock(&c->mu);
    bool ready = c->out && c->done;
    if (ready)
        c->out = false; /* the committer reads it under mu */
    pthread_mutex_unlock(&c->mu);
    if (!ready)
        return;
    src->txn_committing = false;
    if (c->rc != 0)
        tl__txn_fail(svc, src, "transaction_aborted", c->why[0] ? c->why : tl_strerror(c->rc));
    else
        committed(svc, src, c->offs, c->n);
    free(c->offs);
    c->offs = NULL;
    stir(src); /* the sends that waited go into the next transaction */
}

void tl__txn_finish_posted(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_source_state *src = arg;
    if (!src->svc->closing)
        finish(src->svc, src);
}

/* Loop thread: waits for the job out, if any, and takes its outcome. */
static void wait_idle(tl_service *svc, tl_source_state *src)
{
    struct tl_txn_committer *c = src->txn_committer;
    if (!c || !src->txn_committing)
        return;
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    finish(svc, src);
}

void tl__txn_commit(tl_service *svc, tl_source_state *src, bool force)
{
    if (!src->txn || src->txn_broken || !src->handle)
        return;
    if (force)
        wait_idle(svc, src);
    else if (src->txn_committing)
        return;
    int64_t now = tl_loop_now(svc->loop);
    bool due = force || full(src) ||
               (src->txn_done > 0 && now - src->txn_since_ms >= src->txn_route->txn_interval_ms);
    if (!due || src->txn_broken)
        return;
    tl_partition_offset *o = NULL;
    size_t n = positions(svc, src, &o);
    if (n == 0 && src->txn_done == 0) {
        free(o);
        return;
    }
    src->txn_done = 0;
    src->txn_since_ms = -1;
    struct tl_txn_committer *c = src->txn_committer;
    if (!force && c) {
        char why[512] = "";
        if (src->ops->txn->seal &&
            src->ops->txn->seal(src->handle, ctx_of(src), why, sizeof(why)) != 0) {
            free(o);
            tl__txn_fail(svc, src, "transaction_failed", why);
            return;
        }
        pthread_mutex_lock(&c->mu);
        c->offs = o;
        c->n = n;
        c->out = true;
        c->done = false;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        src->txn_committing = true;
        return;
    }
    char why[512] = "";
    int rc = src->ops->txn->commit(src->handle, ctx_of(src), o, n, why, sizeof(why));
    if (rc != 0)
        tl__txn_fail(svc, src, "transaction_aborted", why[0] ? why : tl_strerror(rc));
    else
        committed(svc, src, o, n);
    free(o);
    stir(src); /* sends held back for the bound go into the next one */
}

void tl__txn_close(tl_source_state *src)
{
    if (!src->txn)
        return;
    tl_timer_stop(&src->txn_timer);
    struct tl_txn_committer *c = src->txn_committer;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL); /* a commit out finishes first: it holds no loop */
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->offs);
    free(c);
    src->txn_committer = NULL;
}
