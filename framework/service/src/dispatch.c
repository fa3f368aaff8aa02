/*
 * The dispatcher: one task per message, ordering lanes, the timeout split between
 * completed and stalled handlers, retries in place, and settling.
 *
 * Every attempt is watched for its completion and for its route's timeout (see
 * "watching"): a task that finishes is acted on at once; one still pending at the
 * timeout is split like wait()'s pending set — not yet started (the pool was busy) or
 * started recently: watched again for the rest of its own time; otherwise stalled:
 * cancelled and rerouted.
 *
 * Thread rules: loop thread only. Handler tasks read their record's msg and route
 * (immutable while the task runs); a record is freed only when it is settled and no
 * attempt of it still runs.
 */
#include "service_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MAX_MS 30000
/* How many queued records of a lane may have attempts chained ahead (see chain_more):
 * about a source batch, so a runner rarely reaches the end of a chain before the loop
 * extends it (64 left Kafka partition/pool at 42% of the plain loop, 1024 at 79%). The
 * cost is a task per chained record, made a little early, and an O(depth) revoke. */
#define TL_CHAIN_DEPTH 1024
/* A chain of at least this many grows by at least this many at once (see chain_more). */
#define TL_CHAIN_SEGMENT 32

static void start(tl_rec *rec);
static bool attempt_new(tl_rec *rec, unsigned flags);
static void unheld(tl_rec *rec);
static void to_target(tl_rec *rec, tl_target *target, const char *reason);

/* ---------------------------------------------------------------- lanes */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A 64-bit finalizer (murmur3's): every input bit moves every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The lane key of a message, or false when it runs unordered. */
static bool lane_key(const tl_route_state *route, const tl_rec *rec, uint64_t *key)
{
    uint64_t h = mix64((uint64_t)(uintptr_t)route);
    switch (route->cfg->ordering) {
    case TL_ORDER_PARTITION:
        h = mix64(h ^ (uint64_t)(uintptr_t)rec->part);
        break;
    case TL_ORDER_KEY:
        if (!rec->msg->key)
            return false;
        h = hash_bytes(h, rec->msg->key, rec->msg->key_len);
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
    for (; k < room && attempt_new(r, TL_TASK_HELD); k++, r = r->lane_next) {
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
            unheld(r);
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
        unheld(r);
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

/* Lets the next record of the lane run; the record keeps no claim on it. */
static void lane_release(tl_rec *rec)
{
    tl_lane *lane = rec->lane;
    if (!lane || lane->busy != rec)
        return;
    rec->lane = NULL;
    tl_rec *next = lane->head;
    if (!next) {
        lane_forget(rec->svc, lane);
        return;
    }
    lane->head = next->lane_next;
    lane->nqueued--;
    if (!lane->head)
        lane->tail = NULL;
    next->lane_next = NULL;
    lane->busy = next;
    if (!lane->nchained) {
        start(next); /* which looks at the new end */
        return;
    }
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

/* ---------------------------------------------------------------- records */

static int run_handler(tl_task *task, void *arg)
{
    tl_rec *rec = arg;
    return rec->route->cfg->fn(task, rec->msg, rec->route->cfg->user);
}

bool tl__task_message(const tl_task *task, tl_task_message *out)
{
    if (tl_task_fn_of(task) != run_handler)
        return false;
    const tl_rec *rec = tl_task_arg(task);
    /* A stalled attempt still running belongs to an earlier attempt of its record. */
    bool stalled = rec->stuck == task;
    *out = (tl_task_message){.handler = rec->route->cfg->handler,
                             .origin = rec->msg->origin,
                             .partition = rec->msg->partition,
                             .offset = rec->msg->offset,
                             .attempt = stalled ? rec->stuck_attempt : rec->attempt,
                             .stalled = stalled};
    return true;
}

const char *tl_handler_param(const tl_task *task, const char *name, const char *def)
{
    const tl_rec *rec = tl_task_arg(task);
    const tl_config_route *r = rec->route->cfg;
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].key, name) == 0)
            return r->params[i].value;
    return def;
}

unsigned tl_handler_attempt(const tl_task *task)
{
    const tl_rec *rec = tl_task_arg(task);
    return rec->attempt;
}

static void rec_free(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    if (rec->all_prev)
        rec->all_prev->all_next = rec->all_next;
    else
        svc->recs = rec->all_next;
    if (rec->all_next)
        rec->all_next->all_prev = rec->all_prev;
    tl_timer_stop(&rec->timer);
    if (rec->linked)
        tl_task_unlink_cb(rec->task, &rec->done_node);
    tl_task_release(rec->task);
    tl_source_state *src = rec->route->src;
    src->ops->release(src->handle, rec->msg);
    free(rec->err_text);
    tl_recycler_put_owned(svc->rec_blocks, rec); /* records are made and freed on the loop */
}

void tl__rec_maybe_free(tl_rec *rec)
{
    if (rec->state != REC_SETTLED || rec->stuck)
        return;
    if (rec->task && !tl_task_done(rec->task))
        return;
    rec_free(rec);
}

void tl__records_free_all(tl_service *svc)
{
    /* Stuck attempts were released by on_late while the loop was freed, and the
     * loop's timer heap is gone: nothing may touch either. */
    while (svc->recs) {
        svc->recs->stuck = NULL;
        svc->recs->timer.heap_index = SIZE_MAX;
        rec_free(svc->recs);
    }
}

void tl__rec_settle(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    if (rec->state == REC_SETTLED)
        return;
    rec->state = REC_SETTLED;
    lane_release(rec);
    tl_partition_state *part = rec->part;
    if (rec->gen == part->gen) {
        uint64_t head = part->offsets.head;
        if (tl_offsets_settle(&part->offsets, rec->slot))
            part->dirty = true;
        TL_STAT_ADD(svc, uncommitted, -(part->offsets.head - head));
        part->in_flight--;
    }
    TL_STAT_ADD(svc, in_flight, -1);
    tl__backpressure(svc);
    tl__rec_maybe_free(rec);
}

/* Keeps the handler's failure reason for the tl-error header. */
static void keep_error(tl_rec *rec, tl_task *task)
{
    rec->last_err = tl_task_error(task);
    const char *text = tl_task_error_text(task);
    free(rec->err_text);
    rec->err_text = strdup(text ? text : tl_strerror(rec->last_err));
}

static void retry_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_rec *rec = arg;
    TL_STAT_ADD(rec->svc, retries, 1);
    tl_task_release(rec->task);
    rec->task = NULL;
    start(rec);
}

/* Acts on a finished attempt: settle, retry in place, or reroute. */
static void attempt_done(tl_rec *rec, tl_task *task)
{
    tl_service *svc = rec->svc;
    int64_t started = tl_task_started_ns(task);
    /* The attempt finished by the time the loop took it from the completion stack. */
    if (started)
        tl_histogram_observe(&svc->handler_seconds, tl_loop_drained_ns(svc->loop) - started);
    int err = tl_task_error(task);
    if (err == 0) {
        TL_STAT_ADD(svc, completed, 1);
        tl__rec_settle(rec);
        return;
    }
    TL_STAT_ADD(svc, failed, 1);
    keep_error(rec, task);
    const tl_config_route *r = rec->route->cfg;
    /* Retries go on during a drain: a message whose retries the drain cuts short stays
     * unsettled and is delivered again, rather than sent to on_error too early. */
    if (rec->attempt <= r->retries) {
        int64_t delay = r->backoff_ms;
        for (unsigned i = 1; i < rec->attempt && delay < BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        rec->state = REC_BACKOFF;
        tl_timer_start(&rec->timer, delay, retry_fire, rec);
        return;
    }
    to_target(rec, rec->route->on_error, "failed");
}

/* A stalled attempt finished after all: counted, and never acted on twice. */
/* ---------------------------------------------------------------- stuck workers */

static void stuck_link(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    rec->stuck_prev = NULL;
    rec->stuck_next = svc->stuck;
    if (svc->stuck)
        svc->stuck->stuck_prev = rec;
    svc->stuck = rec;
}

static void stuck_unlink(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    if (rec->stuck_prev)
        rec->stuck_prev->stuck_next = rec->stuck_next;
    else if (svc->stuck == rec)
        svc->stuck = rec->stuck_next;
    if (rec->stuck_next)
        rec->stuck_next->stuck_prev = rec->stuck_prev;
    rec->stuck_prev = rec->stuck_next = NULL;
}

/* Unhealthy while a stuck handler holds a worker that could not be replaced. */
static void update_health(tl_service *svc)
{
    bool healthy = true;
    for (tl_rec *r = svc->stuck; r; r = r->stuck_next)
        if (!r->replaced_worker && r->stuck_overdue)
            healthy = false;
    atomic_store(&svc->st.healthy, healthy);
}

void tl__check_stuck(tl_service *svc)
{
    int64_t now = tl_loop_now(svc->loop);
    for (tl_rec *r = svc->stuck; r; r = r->stuck_next) {
        /* A cooperative handler returns soon after its cancellation: replacing its
         * worker at once would start a thread per stall for nothing. */
        if (r->replaced_worker || now - r->stalled_at_ms < TL_STUCK_GRACE_MS ||
            tl_task_state_of(r->stuck) != TL_TASK_RUNNING)
            continue;
        r->stuck_overdue = true;
        if (svc->replaced_now >= svc->cfg->max_replaced_workers)
            continue;
        if (tl_loop_add_worker(svc->loop) == 0) {
            svc->replaced_now++;
            r->replaced_worker = true;
            TL_STAT_ADD(svc, replaced_workers, 1);
        }
    }
    update_health(svc);
}

static void on_late(tl_task *task, void *arg)
{
    tl_rec *rec = arg;
    tl_service *svc = rec->svc;
    if (svc->closing) {
        tl_task_release(task);
        return;
    }
    /* A handler that stopped soon after its cancellation is not a late completion. */
    if (rec->stuck_overdue || !rec->route->on_stall)
        TL_STAT_ADD(svc, late, 1);
    stuck_unlink(rec);
    if (rec->replaced_worker) {
        rec->replaced_worker = false;
        tl_loop_retire_worker(svc->loop);
        svc->replaced_now--;
    }
    rec->stuck = NULL;
    update_health(svc);
    /* Without an on_stall target the message waited for this very result. */
    if (rec->state == REC_RUNNING && rec->task == NULL) {
        rec->task = task;
        attempt_done(rec, task);
        return;
    }
    tl_task_release(task);
    tl__rec_maybe_free(rec);
}

static void stall(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    tl_task *task = rec->task;
    TL_STAT_ADD(svc, stalled, 1);
    rec->stalled = true;
    /* Without a target the message waits for this attempt's own result: asking it
     * to stop would turn a late success into a cancellation. */
    if (rec->route->on_stall)
        tl_task_cancel(task);
    rec->task = NULL;
    rec->stuck = task;
    rec->stuck_attempt = rec->attempt;
    rec->stalled_at_ms = tl_loop_now(svc->loop);
    if (tl_task_add_done_callback(task, on_late, rec) != 0)
        rec->stuck = NULL; /* cannot happen on a live loop; never leak the record */
    else
        stuck_link(rec);
    free(rec->err_text);
    rec->err_text = strdup("handler exceeded its timeout");
    rec->last_err = TL_ETIMEDOUT;
    if (rec->route->on_stall) {
        to_target(rec, rec->route->on_stall, "stalled");
    } else {
        lane_release(rec); /* the message now waits for its late result */
    }
}

static void to_target(tl_rec *rec, tl_target *target, const char *reason)
{
    tl_service *svc = rec->svc;
    lane_release(rec);
    if (target) {
        tl__reroute(rec, target, reason);
        return;
    }
    TL_STAT_ADD(svc, dropped, 1);
    char off[24];
    snprintf(off, sizeof(off), "%lld", (long long)rec->msg->offset);
    tl_kv f[] = {{"route_handler", rec->route->cfg->handler},
                 {"origin", rec->msg->origin ? rec->msg->origin : ""},
                 {"offset", off},
                 {"error", rec->err_text ? rec->err_text : reason}};
    tl__log(svc, TL_LEVEL_ERROR, "message_dropped_no_target", f, 4);
    tl__rec_settle(rec);
}

/* ---------------------------------------------------------------- watching */

/*
 * Every running attempt is watched twice, without an allocation: its record's node is
 * linked into the task (the completion), and the record sits in its route's watch
 * list (the timeout). All attempts of a route share one timeout and join the list in
 * start order, so the list is sorted by deadline and one timer per route, armed for
 * the head, serves them all. An attempt found at its deadline not started yet (the
 * pool was busy) or started late is watched again on the record's own timer for the
 * rest of its time.
 */

static void watch_fire(tl_timer *timer, void *arg);
static void rewatch_fire(tl_timer *timer, void *arg);

static void watch_arm(tl_route_state *route)
{
    tl_rec *head = route->watch_head;
    if (!head) {
        tl_timer_stop(&route->watch_timer);
        return;
    }
    int64_t left_ns = head->watch_due_ns - tl_clock_ns();
    int64_t ms = left_ns <= 0 ? 0 : (left_ns + 999999) / 1000000;
    tl_timer_start(&route->watch_timer, ms, watch_fire, route);
}

static void watch_unlink(tl_rec *rec)
{
    tl_route_state *route = rec->route;
    if (!rec->watched)
        return;
    rec->watched = false;
    if (rec->watch_prev)
        rec->watch_prev->watch_next = rec->watch_next;
    else
        route->watch_head = rec->watch_next;
    if (rec->watch_next)
        rec->watch_next->watch_prev = rec->watch_prev;
    else
        route->watch_tail = rec->watch_prev;
    rec->watch_prev = rec->watch_next = NULL;
}

/* Ends both watches of the current attempt: its result or its stall is acted on now. */
static void unwatch(tl_rec *rec)
{
    watch_unlink(rec);
    tl_timer_stop(&rec->timer);
    if (rec->linked) {
        rec->linked = false;
        tl_task_unlink_cb(rec->task, &rec->done_node);
    }
}

/* The attempt's deadline came: stall it, or watch it again for the rest of its time. */
static void deadline(tl_rec *rec, int64_t now)
{
    tl_task *t = rec->task;
    int64_t timeout_ns = rec->route->cfg->timeout_ms * 1000000;
    int64_t started = tl_task_started_ns(t);
    int64_t left_ms =
        started ? (started + timeout_ns - now) / 1000000 : rec->route->cfg->timeout_ms;
    if (left_ms >= 1 && tl_timer_start(&rec->timer, left_ms, rewatch_fire, rec) == 0)
        return;
    unwatch(rec);
    stall(rec);
}

static void rewatch_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_rec *rec = arg;
    deadline(rec, tl_clock_ns());
}

static void watch_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_route_state *route = arg;
    int64_t now = tl_clock_ns();
    while (route->watch_head && route->watch_head->watch_due_ns <= now) {
        tl_rec *rec = route->watch_head;
        watch_unlink(rec);
        deadline(rec, now);
    }
    watch_arm(route);
}

static void done_fire(tl_task *task, tl_cbnode *node)
{
    tl_rec *rec = node->arg;
    rec->linked = false;
    if (rec->svc->closing)
        return;
    unwatch(rec);
    attempt_done(rec, task);
}

/* Watches a just-created attempt: its completion and its route's timeout. */
static void watch(tl_rec *rec)
{
    tl_route_state *route = rec->route;
    rec->done_node.fn = done_fire;
    rec->done_node.arg = rec;
    tl_task_link_cb(rec->task, &rec->done_node);
    rec->linked = true;
    rec->watch_due_ns = tl_loop_now_ns(rec->svc->loop) + route->cfg->timeout_ms * 1000000;
    rec->watched = true;
    rec->watch_next = NULL;
    rec->watch_prev = route->watch_tail;
    if (route->watch_tail)
        route->watch_tail->watch_next = rec;
    else
        route->watch_head = rec;
    route->watch_tail = rec;
    if (route->watch_timer.heap_index == SIZE_MAX)
        watch_arm(route);
}

/* Creates the record's next attempt and watches it; false when out of memory. */
static bool attempt_new(tl_rec *rec, unsigned flags)
{
    tl_route_state *route = rec->route;
    flags |= TL_TASK_TIMED | (route->cfg->run_inline ? TL_TASK_INLINE : 0) |
             (rec->lane ? TL_TASK_CHAINED : 0);
    tl_task *t = tl_task_create_ex(rec->svc->loop, run_handler, rec, flags);
    if (!t)
        return false;
    rec->attempt++;
    rec->state = REC_RUNNING;
    rec->task = t;
    watch(rec);
    return true;
}

/* Undoes a held attempt that never ran: the record waits in its lane again. */
static void unheld(tl_rec *rec)
{
    unwatch(rec);
    tl_task_cancel(rec->task);
    tl_task_release(rec->task);
    rec->task = NULL;
    rec->attempt--;
    rec->state = REC_QUEUED;
}

static void start(tl_rec *rec)
{
    if (!attempt_new(rec, 0)) {
        rec->attempt++;
        rec->state = REC_RUNNING;
        rec->last_err = TL_ENOMEM;
        free(rec->err_text);
        rec->err_text = strdup("could not create the handler task");
        to_target(rec, rec->route->on_error, "failed");
        return;
    }
    if (rec->lane && rec->lane->busy == rec) {
        rec->lane->end_closed = false; /* a new attempt of busy: the end changed */
        chain_more(rec->lane);
    }
}

/* ---------------------------------------------------------------- intake */

static bool part_is(const tl_partition_state *p, const tl_source_state *src, const tl_msg *msg,
                    const char *topic)
{
    return p->src == src && p->partition == msg->partition && strcmp(p->topic, topic) == 0;
}

/* The tracker of the message's partition, created on first sight. */
static tl_partition_state *part_of(tl_service *svc, tl_source_state *src, const tl_msg *msg)
{
    const char *topic = msg->origin ? msg->origin : "";
    /* Sources deliver batches of one partition mostly: try the last one first. */
    tl_partition_state *p = svc->last_part;
    for (size_t i = 0; !(p && part_is(p, src, msg, topic)) && i <= svc->nparts; i++)
        p = i < svc->nparts ? svc->parts[i] : NULL;
    if (p) {
        /* Sources deliver a revoked partition again only once it is assigned again
         * (revoked() returns after the drain), so this is its new assignment. */
        if (!p->assigned && !p->revoking)
            p->assigned = true;
        svc->last_part = p;
        return p;
    }
    p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->src = src;
    p->partition = msg->partition;
    p->assigned = true;
    p->committed = -1;
    tl_offsets_init(&p->offsets);
    /* Under the lock: tl_service_partitions reads the array from other threads. */
    pthread_mutex_lock(&svc->mu);
    tl_partition_state **arr = realloc(svc->parts, (svc->nparts + 1) * sizeof(*arr));
    if (arr) {
        svc->parts = arr;
        svc->parts[svc->nparts++] = p;
    }
    pthread_mutex_unlock(&svc->mu);
    if (!arr) {
        free(p->topic);
        free(p);
        return NULL;
    }
    svc->last_part = p;
    return p;
}

static tl_route_state *route_of(tl_service *svc, tl_source_state *src)
{
    for (size_t r = 0; r < svc->nroutes; r++)
        if (svc->routes[r].src == src)
            return &svc->routes[r];
    return NULL;
}

/* Wall-clock milliseconds: tl-first-seen-ms is read by other processes, so it cannot be
 * the loop's monotonic clock. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes one message in: a record, its offset tracked, then a lane or a start. */
static void intake(tl_service *svc, tl_source_state *src, tl_route_state *route, tl_msg *msg,
                   int64_t seen_ms)
{
    tl_partition_state *part = part_of(svc, src, msg);
    tl_rec *rec = part ? tl_recycler_get(svc->rec_blocks) : NULL;
    if (rec)
        memset(rec, 0, sizeof(*rec));
    if (!rec || tl_offsets_track(&part->offsets, msg->offset, &rec->slot) != 0) {
        /* Not tracked means never committed past: the broker delivers it again. */
        if (rec)
            tl_recycler_put_owned(svc->rec_blocks, rec);
        src->ops->release(src->handle, msg);
        tl__log(svc, TL_LEVEL_ERROR, "out_of_memory", NULL, 0);
        return;
    }
    rec->svc = svc;
    rec->route = route;
    rec->part = part;
    rec->gen = part->gen;
    rec->msg = msg;
    rec->first_seen_ms = seen_ms;
    rec->all_next = svc->recs;
    if (svc->recs)
        svc->recs->all_prev = rec;
    svc->recs = rec;
    tl_timer_init(svc->loop, &rec->timer);
    part->in_flight++;
    TL_STAT_ADD(svc, uncommitted, 1);
    TL_STAT_ADD(svc, consumed, 1);
    TL_STAT_ADD(svc, in_flight, 1);
    uint64_t key;
    if (!lane_key(route, rec, &key)) {
        start(rec);
        return;
    }
    tl_lane *lane = lane_get(svc, route, key);
    if (!lane) {
        start(rec); /* out of memory for a lane: order is lost, the message is not */
        return;
    }
    rec->lane = lane;
    if (!lane->busy) {
        lane->busy = rec;
        start(rec);
        return;
    }
    if (lane->tail)
        lane->tail->lane_next = rec;
    else
        lane->head = rec;
    lane->tail = rec;
    lane->nqueued++;
    chain_more(lane);
}

void tl__dispatch_batch(tl_service *svc, tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_route_state *route = route_of(svc, src);
    int64_t seen_ms = wall_ms(); /* one clock read a batch: it arrived at once */
    for (size_t i = 0; i < n; i++) {
        /* The source thread wrote each message on another core: start fetching a few
         * ahead so that the loads overlap instead of stalling one by one. */
        if (i + 4 < n)
            __builtin_prefetch(msgs[i + 4]);
        if (!route || atomic_load(&svc->stopping)) {
            src->ops->release(src->handle, msgs[i]);
            continue;
        }
        intake(svc, src, route, msgs[i], seen_ms);
    }
}

/* Drops one not-started record of a revoked partition: the next owner gets it. */
static void drop_unstarted(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    rec->state = REC_SETTLED;
    rec->part->in_flight--;
    TL_STAT_ADD(svc, in_flight, -1);
    TL_STAT_ADD(svc, consumed, (uint64_t)-1);
    tl__rec_maybe_free(rec);
}

void tl__dispatch_drop_queued(tl_service *svc, tl_partition_state *part)
{
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
                } else if (rec->part == part) {
                    *p = rec->lane_next;
                    l->nqueued--;
                    drop_unstarted(rec);
                } else {
                    l->tail = rec;
                    p = &rec->lane_next;
                }
            }
            chain_more(l); /* what other partitions queued here */
        }
    }
    /* Waiting for a retry (after the queues, so a freed lane starts nothing of this
     * partition): the next owner of the partition starts it afresh. */
    for (tl_rec *r = svc->recs, *next; r; r = next) {
        next = r->all_next;
        if (r->part == part && r->state == REC_BACKOFF) {
            tl_timer_stop(&r->timer);
            lane_release(r);
            drop_unstarted(r);
        }
    }
}
