/*
 * Watching attempts: the timeout split of wait(), per attempt and without an
 * allocation. Every running attempt is watched twice: its record's node is linked into
 * the task (the completion), and the record sits in its route's watch list (the
 * timeout). All attempts of a route share one timeout and join the list in start
 * order, so the list is sorted by deadline and one timer per route, armed for the
 * head, serves them all.
 *
 * At its deadline an attempt is split like wait()'s pending set: not started yet (the
 * pool was busy) or started late, it is watched again on the record's own timer for
 * the rest of its own time; otherwise its time is up (hooks.attempt_expired). A
 * completion goes to hooks.attempt_done.
 *
 * Thread rules: loop thread only.
 */
#include "runtime.h"

static void watch_fire(tl_timer *timer, void *arg);
static void rewatch_fire(tl_timer *timer, void *arg);

static tl_rec *watch_head(const tl_route_state *route)
{
    return route->watch.head ? tl_list_item(route->watch.head, tl_rec, watch_link) : NULL;
}

static void watch_arm(tl_route_state *route)
{
    tl_rec *head = watch_head(route);
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
    if (!rec->watched)
        return;
    rec->watched = false;
    tl_list_remove(&rec->route->watch, &rec->watch_link);
}

void tl__unwatch(tl_rec *rec)
{
    watch_unlink(rec);
    tl_timer_stop(&rec->timer);
    if (rec->linked) {
        rec->linked = false;
        tl_task_unlink_cb(rec->task, &rec->done_node);
    }
}

/* The attempt's deadline came: its time is up, or watch it again for the rest. */
static void deadline(tl_rec *rec, int64_t now)
{
    tl_task *t = rec->task;
    int64_t timeout_ns = rec->route->cfg->timeout_ms * 1000000;
    int64_t started = tl_task_started_ns(t);
    int64_t left_ms =
        started ? (started + timeout_ns - now) / 1000000 : rec->route->cfg->timeout_ms;
    if (left_ms >= 1 && tl_timer_start(&rec->timer, left_ms, rewatch_fire, rec) == 0)
        return;
    tl__unwatch(rec);
    rec->svc->hooks.attempt_expired(rec);
}

static void rewatch_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    deadline(arg, tl_clock_ns());
}

static void watch_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_route_state *route = arg;
    int64_t now = tl_clock_ns();
    tl_rec *rec;
    while ((rec = watch_head(route)) && rec->watch_due_ns <= now) {
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
    tl__unwatch(rec);
    rec->svc->hooks.attempt_done(rec, task);
}

void tl__watch(tl_rec *rec)
{
    tl_route_state *route = rec->route;
    rec->done_node.fn = done_fire;
    rec->done_node.arg = rec;
    tl_task_link_cb(rec->task, &rec->done_node);
    rec->linked = true;
    rec->watch_due_ns = tl_loop_now_ns(rec->svc->loop) + route->cfg->timeout_ms * 1000000;
    rec->watched = true;
    tl_list_push_back(&route->watch, &rec->watch_link);
    if (route->watch_timer.heap_index == SIZE_MAX)
        watch_arm(route);
}
