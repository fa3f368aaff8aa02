/*
 * Records: a message in flight, from intake until it is settled and freed. A record
 * runs attempts (attempt.c) in its lane's turn (lanes.c); each attempt's outcome comes
 * back here through the hooks: a success settles the message, a failure is retried in
 * place with backoff (or, with on_error.via, sent there to come back once due: due.c)
 * and then rerouted to on_error's target, an attempt whose time is
 * up is stalled: cancelled and rerouted to on_stall's target (or, without one, waited
 * for). A message is settled once completed or once its reroute was acknowledged;
 * only then may its offset be committed.
 *
 * Thread rules: loop thread only. A record is freed only when it is settled and no
 * attempt of it still runs.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MAX_MS 30000

int64_t tl__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start(tl_rec *rec);

/* Lets the lane's next record run, starting it when its attempt was not chained. */
static void lane_release(tl_rec *rec)
{
    tl_rec *next = tl__lane_release(rec);
    if (next)
        start(next);
}

static void rec_free(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    tl_list_remove(&svc->recs, &rec->all_link);
    tl_timer_stop(&rec->timer);
    if (rec->linked)
        tl_task_unlink_cb(rec->task, &rec->done_node);
    tl_task_release(rec->task);
    tl_source_state *src = rec->route->src;
    tl__breaker_forget(rec->route, rec->msg);
    tl__txn_forget(rec); /* reads the message's offset */
    src->ops->release(src->handle, rec->msg);
    free(rec->err_text);
    tl__due_free(rec);
    tl__emit_free(rec);
    tl_recycler_put_owned(svc->rec_blocks, rec); /* records are made and freed on the loop */
}

/* Frees a record once it is settled and no attempt of it still runs. */
static void maybe_free(tl_rec *rec)
{
    if (rec->state != REC_SETTLED || rec->stalled)
        return;
    if (rec->task && !tl_task_done(rec->task))
        return;
    rec_free(rec);
}

void tl__records_free_all(tl_service *svc)
{
    /* Stalled attempts were released by on_late while the loop was freed, and the
     * loop's timer heap is gone: nothing may touch either. */
    while (!tl_list_empty(&svc->recs)) {
        tl_rec *rec = tl_list_item(svc->recs.head, tl_rec, all_link);
        rec->stalled = NULL;
        rec->timer.heap_index = SIZE_MAX;
        rec_free(rec);
    }
}

/* The message is settled: its lane moves on, its offset may be committed. */
static void settle(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    if (rec->state == REC_SETTLED)
        return;
    rec->state = REC_SETTLED;
    lane_release(rec);
    tl__txn_settled(rec);
    tl_partition_state *part = rec->part;
    if (rec->gen == part->gen) {
        uint64_t head = part->offsets.head;
        if (tl_offsets_settle(&part->offsets, rec->slot))
            part->dirty = true;
        if (rec->msg->offset > part->high_settled)
            part->high_settled = rec->msg->offset;
        TL_STAT_ADD(svc, uncommitted, -(part->offsets.head - head));
        part->in_flight--;
    }
    TL_STAT_ADD(svc, in_flight, -1);
    /* A worker's completion was taken at drained_ns, maybe after the turn began. */
    int64_t now = tl_loop_now_ns(svc->loop), drained = tl_loop_drained_ns(svc->loop);
    atomic_store_explicit(&svc->st.last_settled_ns, drained > now ? drained : now,
                          memory_order_relaxed);
    svc->hooks.room_freed(svc, part);
    maybe_free(rec);
}

/* Keeps the handler's failure reason for the tl-error header. */
static void keep_error(tl_rec *rec, tl_task *task)
{
    rec->last_err = tl_task_error(task);
    const char *text = tl_task_error_text(task);
    free(rec->err_text);
    rec->err_text = strdup(text ? text : tl_strerror(rec->last_err));
}

/* Exactly-once (txn.c): whether the record's sends (to target, or its emits when
 * NULL) go now. Else they wait for those of its partition's earlier records (gated:
 * hooks.txn_go lets them go), or, the partition revoked since it came in, never go:
 * its next owner makes them, and the record settles without them. */
static bool txn_may_send(tl_rec *rec, tl_target *target, const char *reason)
{
    switch (tl__txn_wait(rec)) {
    case TL_TXN_GO:
        return true;
    case TL_TXN_WAIT:
        rec->state = REC_GATED;
        rec->target = target;
        rec->reason = reason;
        return false;
    default:
        tl__emit_discard(rec);
        settle(rec);
        return false;
    }
}

/* hooks.txn_go: a gated record's sends may go (or, revoked since, never). */
static void txn_go(tl_rec *rec)
{
    if (rec->gen != rec->part->gen) {
        tl__emit_discard(rec);
        settle(rec);
    } else if (rec->target) {
        tl__reroute(rec, rec->target, rec->reason);
    } else if (!tl__emit_flush(rec)) {
        settle(rec);
    }
}

/* Reroutes the message to target, or drops it with an error event when there is none. */
static void to_target(tl_rec *rec, tl_target *target, const char *reason)
{
    tl_service *svc = rec->svc;
    lane_release(rec);
    if (target && !txn_may_send(rec, target, reason))
        return;
    if (target) {
        tl__reroute(rec, target, reason);
        return;
    }
    TL_STAT_ADD(svc, dropped, 1);
    tl_kv f[] = {{"reason", reason}};
    tl__log_msg(rec, TL_LEVEL_ERROR, "message_dropped_no_target", rec->attempt,
                rec->err_text ? rec->err_text : reason, f, 1);
    settle(rec);
}

static void retry_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_rec *rec = arg;
    TL_STAT_ADD(rec->svc, retries, 1);
    tl_task_release(rec->task);
    rec->task = NULL;
    tl__log_msg(rec, TL_LEVEL_INFO, "message_retry", rec->attempt + 1, rec->err_text, NULL, 0);
    start(rec);
}

/* The attempt failed; then is "retry" (after delay_ms), a target's name, or "drop". */
static void log_failed(const tl_rec *rec, const char *then, int64_t delay_ms)
{
    char d[24];
    snprintf(d, sizeof(d), "%lldms", (long long)delay_ms);
    tl_kv f[] = {{"then", then}, {"retry_in", d}};
    tl__log_msg(rec, TL_LEVEL_WARN, "message_failed", rec->attempt, rec->err_text, f,
                delay_ms >= 0 ? 2 : 1);
}

/* hooks.attempt_done: acts on a finished attempt: settle, retry in place, or reroute. */
static void attempt_done(tl_rec *rec, tl_task *task)
{
    tl_service *svc = rec->svc;
    int64_t started = tl_task_started_ns(task);
    /* The attempt finished by the time the loop took it from the completion stack. */
    if (started)
        tl_histogram_observe(&svc->handler_seconds, tl_loop_drained_ns(svc->loop) - started);
    int err = tl_task_error(task);
    if (rec->route->shared->breaker.on)
        tl__breaker_note(svc, rec->route, rec->msg, err == 0, tl_clock_ns());
    if (err == 0) {
        TL_STAT_ADD(svc, completed, 1);
        if (atomic_load_explicit(&rec->emits, memory_order_acquire) && rec->route->src->txn) {
            lane_release(rec);
            if (!txn_may_send(rec, NULL, NULL))
                return;
        }
        if (!tl__emit_flush(rec))
            settle(rec);
        else
            lane_release(rec); /* as for a reroute: the sends keep the order they go in */
        return;
    }
    tl__emit_discard(rec);
    TL_STAT_ADD(svc, failed, 1);
    keep_error(rec, task);
    const tl_config_route *r = rec->route->cfg;
    /* Retries go on during a drain: a message whose retries the drain cuts short stays
     * unsettled and is delivered again, rather than sent to on_error too early. */
    if (rec->attempt <= r->retries && rec->route->retry_via) {
        /* Settled once the via target has it: the partition goes on meanwhile. */
        int64_t delay = tl__due_delay_ms(r, rec->attempt);
        rec->due_ms = tl__wall_ms() + delay;
        tl__due_keep_first_error(rec);
        log_failed(rec, rec->route->retry_via->name, delay);
        TL_STAT_ADD(svc, retries_delayed, 1);
        to_target(rec, rec->route->retry_via, "retry");
        return;
    }
    if (rec->attempt <= r->retries) {
        /* A revoke waits for the partition's retries: they go at once. */
        int64_t delay = rec->part->revoking ? 0 : r->backoff_ms;
        for (unsigned i = 1; i < rec->attempt && delay < BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        log_failed(rec, "retry", delay);
        rec->state = REC_BACKOFF;
        tl_timer_start(&rec->timer, delay, retry_fire, rec);
        return;
    }
    log_failed(rec, rec->route->on_error ? rec->route->on_error->name : "drop", -1);
    to_target(rec, rec->route->on_error, "failed");
}

/* hooks.attempt_expired: the attempt stalled. */
static void attempt_expired(tl_rec *rec)
{
    TL_ROUTE_STAT_INC(rec, stalled);
    if (rec->route->shared->breaker.on)
        tl__breaker_note(rec->svc, rec->route, rec->msg, false, tl_clock_ns());
    /* Without a target the message waits for this attempt's own result: asking it
     * to stop would turn a late success into a cancellation. */
    if (rec->route->on_stall)
        tl_task_cancel(rec->task);
    tl__stalled_add(rec);
    if (rec->route->on_stall)
        tl__emit_discard(rec); /* rerouted: its late outputs must never go */
    free(rec->err_text);
    rec->err_text = strdup("handler exceeded its timeout");
    rec->last_err = TL_ETIMEDOUT;
    char t[24];
    snprintf(t, sizeof(t), "%lldms", (long long)rec->route->cfg->timeout_ms);
    tl_kv f[] = {{"timeout", t},
                 {"then", rec->route->on_stall ? rec->route->on_stall->name : "wait"}};
    tl__log_msg(rec, TL_LEVEL_WARN, "message_stalled", rec->stalled_attempt, rec->err_text, f, 2);
    if (rec->route->on_stall)
        to_target(rec, rec->route->on_stall, "stalled");
    else
        lane_release(rec); /* the message now waits for its late result */
}

/* hooks.attempt_late: a stalled attempt returned; never acted on twice. */
static void attempt_late(tl_rec *rec, tl_task *task)
{
    /* Without an on_stall target the message waited for this very result. */
    if (rec->state == REC_RUNNING && rec->task == NULL) {
        rec->task = task;
        attempt_done(rec, task);
        return;
    }
    tl_task_release(task);
    maybe_free(rec);
}

/* hooks.rerouted: the target acknowledged the message. */
static void rerouted(tl_rec *rec)
{
    settle(rec);
}

/* A delayed retry goes in: logged with how long after its due time. */
static void retry_goes_in(tl_rec *rec)
{
    int64_t late_ms = tl__wall_ms() - rec->due_ms;
    tl_histogram_observe(&rec->svc->retry_lateness, late_ms * 1000000);
    char late[24];
    snprintf(late, sizeof(late), "%lldms", (long long)late_ms);
    tl_kv f[] = {{"late", late}};
    tl__log_msg(rec, TL_LEVEL_INFO, "message_retry", rec->attempt + 1, NULL, f, 1);
}

/* A delayed retry's (or a delayed message's) time came: it joins its lane as a new
 * message would. */
static void due_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_rec *rec = arg;
    rec->state = REC_QUEUED;
    if (rec->delayed) {
        TL_STAT_ADD(rec->svc, delayed_waiting, -1);
        rec->part->delayed_pending--;
    } else {
        TL_STAT_ADD(rec->svc, retries_waiting, -1);
        retry_goes_in(rec);
    }
    if (tl__lane_join(rec))
        start(rec);
}

static void start(tl_rec *rec)
{
    if (!tl__attempt_new(rec, 0)) {
        rec->attempt++;
        rec->state = REC_RUNNING;
        rec->last_err = TL_ENOMEM;
        free(rec->err_text);
        rec->err_text = strdup("could not create the handler task");
        to_target(rec, rec->route->on_error, "failed");
        return;
    }
    tl__lane_started(rec);
}

void tl__records_init(tl_service *svc)
{
    svc->hooks.attempt_done = attempt_done;
    svc->hooks.attempt_expired = attempt_expired;
    svc->hooks.attempt_late = attempt_late;
    svc->hooks.rerouted = rerouted;
    svc->hooks.emitted = rerouted; /* settled alike: every output took its part */
    svc->hooks.txn_go = txn_go;
}

void tl__record_take(tl_service *svc, tl_route_state *route, tl_partition_state *part, tl_msg *msg,
                     int64_t seen_ms)
{
    tl_rec *rec = tl_recycler_get(svc->rec_blocks);
    if (rec)
        memset(rec, 0, sizeof(*rec));
    if (!rec || tl_offsets_track(&part->offsets, msg->offset, &rec->slot) != 0) {
        /* Not tracked means never committed past: the broker delivers it again. */
        if (rec)
            tl_recycler_put_owned(svc->rec_blocks, rec);
        part->src->ops->release(part->src->handle, msg);
        tl__log(svc, TL_LEVEL_ERROR, "out_of_memory", NULL, 0);
        /* A transaction's position passes over what was not taken in: stop instead. */
        tl__txn_fail(svc, part->src, "transaction_failed", "out of memory taking a message in");
        return;
    }
    rec->svc = svc;
    rec->route = route;
    rec->part = part;
    rec->gen = part->gen;
    rec->msg = msg;
    rec->first_seen_ms = seen_ms;
    tl_list_push_front(&svc->recs, &rec->all_link);
    tl_timer_init(svc->loop, &rec->timer);
    part->in_flight++;
    TL_STAT_ADD(svc, uncommitted, 1);
    if (tl__commit_acks(part->src))
        svc->unacked++; /* until its commit is acknowledged (acks.c) */
    TL_STAT_ADD(svc, consumed, 1);
    TL_STAT_ADD(svc, in_flight, 1);
    if (!atomic_load_explicit(&svc->st.first_consumed_ns, memory_order_relaxed))
        atomic_store_explicit(&svc->st.first_consumed_ns, tl_loop_now_ns(svc->loop),
                              memory_order_relaxed);
    tl__txn_take(rec);
    int64_t wait = route->retry_via ? tl__due_take(rec, seen_ms) : 0;
    /* `delay:` the message runs no earlier than its timestamp plus the delay. */
    int64_t delayed = route->cfg->delay_ms ? (msg->timestamp_ms > 0 ? msg->timestamp_ms : seen_ms) +
                                                 route->cfg->delay_ms - tl__wall_ms()
                                           : 0;
    /* One whose time came already (delayed < 0: an old timestamp, or a slow intake)
     * still waits for those of its partition before it. */
    bool behind = part->delayed_pending > 0;
    if (delayed < 0)
        delayed = 0;
    if (route->cfg->delay_ms && delayed >= wait && (delayed > 0 || behind)) {
        rec->delayed = true;
        rec->state = REC_DUE;
        TL_STAT_ADD(svc, delayed_waiting, 1);
        part->delayed_pending++;
        tl_timer_start(&rec->timer, delayed, due_fire, rec);
        /* A partition's delayed records come due in offset order, so each key's lane
         * gets them in order: the delay counts in whole ms of the wall clock from the
         * timestamp, so a record taken later could otherwise come due a fraction of a
         * ms sooner, or much sooner with an older timestamp. Equal times fire in the
         * order their timers were started. */
        if (rec->timer.due_ns < part->delay_due_ns)
            tl_timer_start(&rec->timer,
                           delayed + (part->delay_due_ns - rec->timer.due_ns) / 1000000 + 1,
                           due_fire, rec);
        part->delay_due_ns = rec->timer.due_ns;
        return;
    }
    if (wait > 0) {
        rec->state = REC_DUE;
        TL_STAT_ADD(svc, retries_waiting, 1);
        tl_timer_start(&rec->timer, wait, due_fire, rec);
        return;
    }
    if (rec->due_ms)
        retry_goes_in(rec); /* came back late already */
    if (tl__lane_join(rec))
        start(rec);
}

/* Drops one not-started record of a revoked partition: the next owner gets it. */
static void drop_unstarted(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    rec->state = REC_SETTLED;
    rec->part->in_flight--;
    TL_STAT_ADD(svc, in_flight, -1);
    TL_STAT_ADD(svc, consumed, (uint64_t)-1);
    maybe_free(rec);
}

void tl__records_revoking(tl_service *svc, tl_partition_state *part, bool lost)
{
    /* Dropping a message below one that ran would hold the commit under what ran:
     * its next owner would handle that again. What still runs after the unwind (a
     * handler out, a chained attempt a runner claimed, a reroute) counts as ran. When
     * lost, no commit can land: whatever would run here runs again there anyway. */
    tl__lanes_unwind_all(svc);
    int64_t high = lost ? -1 : part->high_settled;
    for (tl_link *l = svc->recs.head; !lost && l; l = l->next) {
        tl_rec *r = tl_list_item(l, tl_rec, all_link);
        if (r->part == part && r->gen == part->gen && r->msg->offset > high &&
            (r->state == REC_RUNNING || r->state == REC_REROUTING || r->state == REC_EMITTING ||
             r->state == REC_GATED))
            high = r->msg->offset;
    }
    for (tl_rec *r = tl__lanes_take_queued(svc, part, high), *next; r; r = next) {
        next = r->lane_next;
        drop_unstarted(r);
    }
    /* Retries last, so that a lane freed here starts nothing taken above. The one at
     * the high mark itself has nothing done above it: its next owner starts it afresh. */
    for (tl_link *l = svc->recs.head, *next; l; l = next) {
        next = l->next;
        tl_rec *r = tl_list_item(l, tl_rec, all_link);
        if (r->part != part || (r->state != REC_BACKOFF && r->state != REC_DUE) ||
            r->gen != part->gen)
            continue;
        tl_timer_stop(&r->timer);
        bool due = r->state == REC_DUE; /* in no lane yet */
        if (due && r->delayed) {
            TL_STAT_ADD(svc, delayed_waiting, -1);
            part->delayed_pending--;
        } else if (due)
            TL_STAT_ADD(svc, retries_waiting, -1);
        if (r->msg->offset >= high) {
            if (!due)
                lane_release(r);
            drop_unstarted(r);
        } else if (due) {
            r->state = REC_QUEUED;
            if (tl__lane_join(r))
                start(r);
        } else {
            retry_fire(&r->timer, r);
        }
    }
}
