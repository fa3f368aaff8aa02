/*
 * Waiters: the one mechanism behind wait, gather and as_completed.
 *
 * Thread rules: loop thread only. A waiter's nodes are linked into unfinished tasks;
 * node i fires when tasks[i] is finalized, which marks done[i] before anything else,
 * so tl__waiter_free knows which nodes are still linked.
 */
#include "waiter.h"

#include <stdlib.h>

static void node_fire(tl_task *task, tl_cbnode *node)
{
    tl_waiter *w = node->arg;
    size_t i = (size_t)(node - w->nodes);
    w->done[i] = 1;
    w->order[w->ndone++] = i;
    if (tl_task_error(task) != 0)
        w->nfailed++;
    w->on_event(w);
}

static void timer_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_waiter *w = arg;
    w->timed_out = true;
    w->on_event(w);
}

static void poke_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_waiter *w = arg;
    w->on_event(w);
}

void tl__waiter_poke(tl_waiter *w)
{
    tl_timer_start(&w->poke, 0, poke_fire, w);
}

static void waiter_release(tl_waiter *w);

/* The loop is being freed: the owner hears of it (on_drop), then the waiter goes. */
static void waiter_drop(tl_closer *c)
{
    tl_waiter *w = tl_list_item(c, tl_waiter, closer);
    if (w->on_drop)
        w->on_drop(w);
    waiter_release(w);
}

tl_waiter *tl__waiter_new(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                          bool retain, void (*on_event)(tl_waiter *w), void *ctx)
{
    /* One allocation for the waiter and its arrays: a wait over 100,000 tasks costs
     * one malloc, not 100,000. */
    size_t sz =
        sizeof(tl_waiter) + n * (sizeof(tl_task *) + sizeof(tl_cbnode) + sizeof(size_t) + 1);
    tl_waiter *w = malloc(sz);
    if (!w)
        return NULL;
    char *p = (char *)(w + 1);
    w->nodes = (tl_cbnode *)p;
    p += n * sizeof(tl_cbnode);
    w->tasks = (tl_task **)p;
    p += n * sizeof(tl_task *);
    w->order = (size_t *)p;
    p += n * sizeof(size_t);
    w->done = (unsigned char *)p;
    w->loop = loop;
    w->n = n;
    w->retained = retain;
    w->ndone = w->nfailed = 0;
    w->timed_out = false;
    w->on_event = on_event;
    w->on_drop = NULL;
    w->ctx = ctx;
    tl_timer_init(loop, &w->timer);
    tl_timer_init(loop, &w->poke);
    for (size_t i = 0; i < n; i++) {
        tl_task *t = tasks[i];
        w->tasks[i] = retain ? tl_task_retain(t) : t;
        if (tl_task_done(t)) {
            w->done[i] = 1;
            w->order[w->ndone++] = i;
            if (tl_task_error(t) != 0)
                w->nfailed++;
            continue;
        }
        w->done[i] = 0;
        w->nodes[i].fn = node_fire;
        w->nodes[i].arg = w;
        tl_task_link_cb(t, &w->nodes[i]);
    }
    if (timeout_ms >= 0 && tl_timer_start(&w->timer, timeout_ms, timer_fire, w) != 0) {
        tl__waiter_free(w); /* links are undone there */
        return NULL;
    }
    w->closer.drop = waiter_drop;
    tl_list_push_front(&loop->closers, &w->closer.link);
    return w;
}

/* Unlinks and frees without touching the loop's list (used by both free paths). */
static void waiter_release(tl_waiter *w)
{
    tl_timer_stop(&w->timer);
    tl_timer_stop(&w->poke);
    for (size_t i = 0; i < w->n; i++) {
        if (!w->done[i])
            tl_task_unlink_cb(w->tasks[i], &w->nodes[i]);
        if (w->retained)
            tl_task_release(w->tasks[i]);
    }
    free(w);
}

void tl__waiter_free(tl_waiter *w)
{
    tl_list_remove(&w->loop->closers, &w->closer.link);
    waiter_release(w);
}
