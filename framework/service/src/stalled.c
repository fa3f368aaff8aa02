/*
 * Stalled attempts that still run. A stalled attempt was asked to stop (when its route
 * reroutes stalls); a cooperative handler returns soon after. One that goes on past
 * TL_STUCK_GRACE_MS is stuck: it holds a worker, so a worker is added in its place (up
 * to loop.max_replaced_workers) and retired once it returns. Past the cap the service
 * reports unhealthy until one returns.
 *
 * When a stalled attempt returns it is late; stalled.c does the bookkeeping and hands
 * the attempt to hooks.attempt_late (record.c decides what its result means).
 *
 * Thread rules: loop thread only.
 */
#include "runtime.h"

#include <stdio.h>

/* Unhealthy while a stuck attempt holds a worker that could not be replaced. */
static void update_health(tl_service *svc)
{
    bool healthy = true;
    for (tl_link *l = svc->stalled.head; l; l = l->next) {
        const tl_rec *r = tl_list_item(l, tl_rec, stalled_link);
        if (!r->replaced_worker && r->stuck)
            healthy = false;
    }
    atomic_store(&svc->st.healthy, healthy);
}

/* A stuck attempt holds a worker: one was added in its place, or the cap forbade it. */
static void log_stuck(const tl_rec *r, const char *event, int64_t now)
{
    char ms[24], cap[16];
    snprintf(ms, sizeof(ms), "%lldms", (long long)(now - r->stalled_at_ms));
    snprintf(cap, sizeof(cap), "%u", r->svc->cfg->max_replaced_workers);
    tl_kv f[] = {{"stalled_for", ms}, {"max_replaced_workers", cap}};
    tl__log_msg(r, TL_LEVEL_WARN, event, r->stalled_attempt, "handler ignores its cancellation", f,
                2);
}

void tl__check_stuck(tl_service *svc)
{
    int64_t now = tl_loop_now(svc->loop);
    for (tl_link *l = svc->stalled.head; l; l = l->next) {
        tl_rec *r = tl_list_item(l, tl_rec, stalled_link);
        /* A cooperative handler returns soon after its cancellation: replacing its
         * worker at once would start a thread per stall for nothing. */
        /* A worker process past its grace is killed (procs.c): no thread stays held. */
        if (r->route->cfg->isolation == TL_ISOLATE_PROCESS)
            continue;
        if (r->replaced_worker || now - r->stalled_at_ms < TL_STUCK_GRACE_MS ||
            tl_task_state_of(r->stalled) != TL_TASK_RUNNING)
            continue;
        bool newly = !r->stuck;
        r->stuck = true;
        if (svc->replaced_now >= svc->cfg->max_replaced_workers) {
            if (newly)
                log_stuck(r, "worker_not_replaced", now);
            continue;
        }
        if (tl_loop_add_worker(svc->loop) == 0) {
            svc->replaced_now++;
            r->replaced_worker = true;
            TL_STAT_ADD(svc, replaced_workers, 1);
            log_stuck(r, "worker_replaced", now);
        }
    }
    update_health(svc);
}

/* A late result: counted and reported, never acted on twice. */
static void log_late(const tl_rec *rec, tl_task *task)
{
    int err = tl_task_error(task);
    const char *text = tl_task_error_text(task);
    tl_kv f[] = {{"result", err == 0 ? "completed" : err == TL_ECANCELED ? "cancelled" : "failed"}};
    tl__log_msg(rec, TL_LEVEL_INFO, "message_late", rec->stalled_attempt,
                err == 0 ? NULL
                : text   ? text
                         : tl_strerror(err),
                f, 1);
}

/* The stalled attempt returned: it is late. */
static void on_late(tl_task *task, void *arg)
{
    tl_rec *rec = arg;
    tl_service *svc = rec->svc;
    if (svc->closing) {
        tl_task_release(task);
        return;
    }
    /* A handler that stopped soon after its cancellation is not a late completion. */
    if (rec->stuck || !rec->route->on_stall) {
        TL_ROUTE_STAT_INC(rec, late);
        log_late(rec, task);
    }
    tl_list_remove(&svc->stalled, &rec->stalled_link);
    if (rec->replaced_worker) {
        rec->replaced_worker = false;
        tl_loop_retire_worker(svc->loop);
        svc->replaced_now--;
    }
    rec->stalled = NULL;
    update_health(svc);
    svc->hooks.attempt_late(rec, task);
}

bool tl__stalled_add(tl_rec *rec)
{
    tl_service *svc = rec->svc;
    rec->stalled = rec->task;
    rec->stalled_attempt = rec->attempt;
    rec->stalled_at_ms = tl_loop_now(svc->loop);
    rec->task = NULL;
    if (tl_task_add_done_callback(rec->stalled, on_late, rec) != 0) {
        rec->stalled = NULL; /* cannot happen on a live loop; never leak the record */
        return false;
    }
    tl_list_push_front(&svc->stalled, &rec->stalled_link);
    return true;
}
