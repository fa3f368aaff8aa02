/*
 * Ordering lanes: at most one record of a lane (a partition, or a key, of a route)
 * runs at a time; the others wait in the lane's queue in delivery order. A lane
 * exists while it has a running or queued record (a hash table keyed by route and
 * partition or key), so many distinct keys do not pile up.
 *
 * Behind the running record, the next queued ones get held attempts chained to its
 * attempt (see chain_more), so a worker goes from one message of a lane to the next
 * without a round trip through the loop.
 *
 * Thread rules: loop thread only.
 */
#include "hash.h"
#include "runtime.h"

#include <stdlib.h>

/* How many queued records of a lane may have attempts chained ahead (see chain_more):
 * about a source batch, so a runner rarely reaches the end of a chain before the loop
 * extends it (64 left Kafka partition/pool at 42% of the plain loop, 1024 at 79%). The
 * cost is a task per chained record, made a little early, and an O(depth) revoke. */
#define TL_CHAIN_DEPTH 1024
/* A chain of at least this many grows by at least this many at once (see chain_more). */
#define TL_CHAIN_SEGMENT 32

/* The lane key of a message, or false when it runs unordered. A lane is known by this
 * hash alone: two message keys with the same keyed hash (a chance of 2^-64 a pair, and
 * not one a producer can aim for, hash.h) would share a lane, running one after the
 * other, never out of order. */
static bool lane_key(const tl_route_state *route, const tl_rec *rec, uint64_t *key)
{
    uint64_t h = tl__hash_mix((uint64_t)(uintptr_t)route);
    switch (route->cfg->ordering) {
    case TL_ORDER_PARTITION:
        h = tl__hash_mix(h ^ (uint64_t)(uintptr_t)rec->part);
        break;
    case TL_ORDER_KEY:
        if (!rec->msg->key)
            return false;
        h ^= tl__hash_keyed(rec->msg->key, rec->msg->key_len);
        break;
    default:
        return false;
    }
    *key = h;
    return true;
}

static int lanes_grow(tl_service *svc)
{
    size_t nb = svc->nlanes_buckets ? svc->nlanes_buckets * 2 : 256;
    tl_lane **b = calloc(nb, sizeof(*b));
    if (!b)
        return TL_ENOMEM;
    for (size_t i = 0; i < svc->nlanes_buckets; i++) {
        tl_lane *l = svc->lanes[i];
        while (l) {
            tl_lane *next = l->next;
            l->next = b[l->key & (nb - 1)];
            b[l->key & (nb - 1)] = l;
            l = next;
        }
    }
    free(svc->lanes);
    svc->lanes = b;
    svc->nlanes_buckets = nb;
    return 0;
}

static tl_lane *lane_get(tl_service *svc, tl_route_state *route, uint64_t key)
{
    if (svc->nlanes >= svc->nlanes_buckets && lanes_grow(svc) != 0 && !svc->lanes)
        return NULL;
    tl_lane **slot = &svc->lanes[key & (svc->nlanes_buckets - 1)];
    for (tl_lane *l = *slot; l; l = l->next)
        if (l->key == key && l->route == route)
            return l;
    tl_lane *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->key = key;
    l->route = route;
    l->next = *slot;
    *slot = l;
    svc->nlanes++;
    return l;
}

/* Frees an idle lane so that many distinct keys do not pile up. */
static void lane_forget(tl_service *svc, tl_lane *lane)
{
    tl_lane **p = &svc->lanes[lane->key & (svc->nlanes_buckets - 1)];
    while (*p && *p != lane)
        p = &(*p)->next;
    if (*p)
        *p = lane->next;
    svc->nlanes--;
    free(lane);
}

/*
 * Chains attempts for the lane's next queued records behind the running one: the
 * thread that runs an attempt to success starts the next one at once, with no round
 * trip through the loop, which is what bounds a partition's one-at-a-time pace. Each
 * chained attempt is a task of its own, watched like any other. A runner claims the
 * next attempt only after a success, so behind a failed attempt the chain waits for
 * the retries; the loop claims it when the lane moves on otherwise (a stall, a
 * reroute: it is launched) and on a revoke (it is undone, see unwind).
 *
 * The new attempts are linked to each other first, where no runner sees them, and
 * then hung at the chain's end with one atomic: the end is a task a worker may be
 * running, so each look at it costs a cache line from that worker's core. A chain of
 * TL_CHAIN_SEGMENT or more therefore waits until that many can be added at once.
 */
static void chain_more(tl_lane *lane)
{
    tl_rec *busy = lane->busy;
    if (!busy || busy->state != REC_RUNNING || !busy->task || lane->end_closed)
        return;
    size_t room = TL_CHAIN_DEPTH - lane->nchained;
    size_t pending = lane->nqueued - lane->nchained;
    if (room > pending)
        room = pending;
    if (room == 0 || (lane->nchained >= TL_CHAIN_SEGMENT && room < TL_CHAIN_SEGMENT))
        return;
    tl_task *from = lane->nchained ? lane->chain_last->task : busy->task;
    /* A runner that went through the whole chain closed its end: the loop starts the
     * next when it settles the last. Without this look each intake into the lane
     * would make and undo a task until then (a million for a million messages when
     * the worker keeps up with a no-op handler). */
    if (tl_task_chain_closed(from)) {
        lane->end_closed = true;
        return;
    }
    tl_rec *first = lane->nchained ? lane->chain_last->lane_next : lane->head;
    tl_rec *last = NULL, *r = first;
    size_t k = 0;
    for (; k < room && tl__attempt_new(r, TL_TASK_HELD); k++, r = r->lane_next) {
        if (last)
            tl_task_link_held(last->task, r->task);
        last = r;
    }
    if (k == 0)
        return;
    if (!tl_task_chain(from, first->task)) {
        /* from finished meanwhile: the loop starts first when it sees that. */
        for (r = first; k-- > 0; r = r->lane_next) {
            tl_task *after = tl_task_unchain(r->task); /* the next one's slot reference */
            tl__attempt_undo(r);
            tl_task_release(after);
        }
        lane->end_closed = true;
        return;
    }
    if (lane->nchained == 0)
        lane->chain_from = tl_task_retain(from);
    lane->nchained += k;
    lane->chain_last = last;
}

/*
 * Takes back the lane's chained attempts that have not started, on a revoke: the
 * queue goes to the partition's next owner. Those a runner already claimed stay: they
 * run and settle as usual.
 */
static void unwind(tl_lane *lane)
{
    tl_task *from = lane->chain_from;
    tl_rec *prev = NULL, *r = lane->head;
    size_t kept = 0;
    tl_task *s = NULL;
    while (kept < lane->nchained && !(s = tl_task_unchain(from))) {
        prev = r; /* claimed by a runner: started */
        from = r->task;
        r = r->lane_next;
        kept++;
    }
    for (size_t i = kept; i < lane->nchained; i++, r = r->lane_next) {
        tl_task *after = s ? tl_task_unchain(s) : NULL;
        tl_task_release(s); /* the slot's reference */
        tl__attempt_undo(r);
        s = after;
    }
    lane->nchained = kept;
    lane->chain_last = prev;
    lane->end_closed = false;
    if (!kept) {
        tl_task_release(lane->chain_from);
        lane->chain_from = NULL;
    }
}

tl_rec *tl__lane_release(tl_rec *rec)
{
    tl_lane *lane = rec->lane;
    if (!lane || lane->busy != rec)
        return NULL;
    rec->lane = NULL;
    tl_rec *next = lane->head;
    if (!next) {
        lane_forget(rec->svc, lane);
        return NULL;
    }
    lane->head = next->lane_next;
    lane->nqueued--;
    if (!lane->head)
        lane->tail = NULL;
    next->lane_next = NULL;
    lane->busy = next;
    if (!lane->nchained)
        return next; /* the caller starts it, which looks at the new end */
    /* next's attempt is chained: run by rec's runner already, or launched here. */
    tl_task *s = tl_task_unchain(lane->chain_from);
    tl_task_release(lane->chain_from);
    lane->chain_from = NULL;
    if (--lane->nchained) {
        lane->chain_from = tl_task_retain(next->task);
    } else {
        lane->chain_last = NULL;
        lane->end_closed = false; /* the end is next's attempt now */
    }
    if (s)
        tl_task_launch(s);
    chain_more(lane);
    return NULL;
}

bool tl__lane_join(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    uint64_t key;
    if (!lane_key(rec->route, rec, &key))
        return true;
    tl_lane *lane = lane_get(svc, rec->route, key);
    if (!lane)
        return true; /* out of memory for a lane: order is lost, the message is not */
    rec->lane = lane;
    if (!lane->busy) {
        lane->busy = rec;
        return true;
    }
    if (lane->tail)
        lane->tail->lane_next = rec;
    else
        lane->head = rec;
    lane->tail = rec;
    lane->nqueued++;
    chain_more(lane);
    return false;
}

void tl__lane_started(tl_rec *rec)
{
    if (rec->lane && rec->lane->busy == rec) {
        rec->lane->end_closed = false; /* a new attempt of busy: the end changed */
        chain_more(rec->lane);
    }
}

void tl__lanes_unwind_all(tl_service *svc)
{
    for (size_t b = 0; b < svc->nlanes_buckets; b++)
        for (tl_lane *l = svc->lanes[b]; l; l = l->next)
            unwind(l);
}

tl_rec *tl__lanes_take_queued(tl_service *svc, tl_partition_state *part, int64_t above)
{
    tl_rec *taken = NULL, **last = &taken;
    for (size_t b = 0; b < svc->nlanes_buckets; b++) {
        for (tl_lane *l = svc->lanes[b]; l; l = l->next) {
            unwind(l);
            tl_rec **p = &l->head;
            l->tail = NULL;
            size_t chained = l->nchained; /* claimed by a runner: they settle as they run */
            while (*p) {
                tl_rec *rec = *p;
                if (chained) {
                    chained--;
                    l->tail = rec;
                    p = &rec->lane_next;
                } else if (rec->part == part && rec->msg->offset > above) {
                    *p = rec->lane_next;
                    l->nqueued--;
                    rec->lane_next = NULL;
                    *last = rec;
                    last = &rec->lane_next;
                } else {
                    l->tail = rec;
                    p = &rec->lane_next;
                }
            }
            chain_more(l); /* what other partitions queued here */
        }
    }
    return taken;
}

void tl__lanes_free(tl_service *svc)
{
    for (size_t i = 0; i < svc->nlanes_buckets; i++) {
        while (svc->lanes[i]) {
            tl_lane *l = svc->lanes[i];
            svc->lanes[i] = l->next;
            tl_task_release(l->chain_from);
            free(l);
        }
    }
    free(svc->lanes);
    svc->lanes = NULL;
    svc->nlanes_buckets = svc->nlanes = 0;
}
