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

void tl__check_stuck(tl_service *svc)
{
    int64_t now = tl_loop_now(svc->loop);
    for (tl_link *l = svc->stalled.head; l; l = l->next) {
        tl_rec *r = tl_list_item(l, tl_rec, stalled_link);
        /* A cooperative handler returns soon after its cancellation: replacing its
         * worker at once would start a thread per stall for nothing. */
        if (r->replaced_worker || now - r->stalled_at_ms < TL_STUCK_GRACE_MS ||
            tl_task_state_of(r->stalled) != TL_TASK_RUNNING)
            continue;
        r->stuck = true;
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
    if (rec->stuck || !rec->route->on_stall)
        TL_STAT_ADD(svc, late, 1);
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
