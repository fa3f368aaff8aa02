/*
 * asyncio.wait(): split tasks into done and pending when return_when holds or the
 * timeout passes. A timeout cancels nothing; the caller decides about `pending`.
 */
#include "waiter.h"

#include <stdlib.h>

typedef struct wait_ctx {
    tl_return_when when;
    bool fired;
    tl_wait_cb cb; /* NULL for the blocking form */
    void *arg;
} wait_ctx;

static bool condition_met(const tl_waiter *w, tl_return_when when)
{
    if (w->ndone == w->n)
        return true;
    switch (when) {
    case TL_FIRST_COMPLETED:
        return w->ndone > 0;
    case TL_FIRST_EXCEPTION:
        return w->nfailed > 0;
    default:
        return false;
    }
}

/* Fills res with the input-ordered split, allocating its two arrays. */
static int split(const tl_waiter *w, tl_wait_result *res)
{
    size_t n = w->n;
    res->done = malloc((n ? n : 1) * sizeof(tl_task *));
    res->pending = malloc((n ? n : 1) * sizeof(tl_task *));
    if (!res->done || !res->pending) {
        tl_wait_result_free(res);
        return TL_ENOMEM;
    }
    res->ndone = res->npending = 0;
    res->timed_out = w->timed_out;
    for (size_t i = 0; i < n; i++) {
        tl_task *t = w->tasks[i];
        if (tl_task_done(t))
            res->done[res->ndone++] = t;
        else
            res->pending[res->npending++] = t;
    }
    return 0;
}

static void on_event(tl_waiter *w)
{
    wait_ctx *c = w->ctx;
    if (c->fired || !(w->timed_out || condition_met(w, c->when)))
        return;
    c->fired = true;
    tl_timer_stop(&w->timer);
    if (!c->cb)
        return; /* the blocking form collects after the loop returns */
    tl_wait_result res = {0};
    int rc = split(w, &res);
    if (rc == 0)
        c->cb(w->loop, &res, c->arg);
    tl_wait_result_free(&res);
    free(c);
    tl__waiter_free(w);
}

int tl_wait(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms, tl_return_when when,
            tl_wait_result *res)
{
    if (!loop || !res || (n && !tasks))
        return TL_EINVAL;
    res->done = res->pending = NULL;
    res->ndone = res->npending = 0;
    res->timed_out = false;
    if (loop->closed)
        return TL_ECLOSED;
    if (loop->running)
        return TL_EBUSY;
    wait_ctx c = {.when = when};
    tl_waiter *w = tl__waiter_new(loop, tasks, n, timeout_ms, false, on_event, &c);
    if (!w)
        return TL_ENOMEM;
    int rc = 0;
    if (!condition_met(w, when))
        rc = tl__loop_run_until(loop, &c.fired);
    if (rc == 0)
        rc = split(w, res);
    tl__waiter_free(w);
    return rc;
}

void tl_wait_result_free(tl_wait_result *res)
{
    if (!res)
        return;
    free(res->done);
    free(res->pending);
    res->done = res->pending = NULL;
    res->ndone = res->npending = 0;
}

static void on_drop(tl_waiter *w)
{
    free(w->ctx);
}

int tl_wait_async(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                  tl_return_when when, tl_wait_cb cb, void *arg)
{
    if (!loop || !cb || (n && !tasks))
        return TL_EINVAL;
    if (loop->closed)
        return TL_ECLOSED;
    wait_ctx *c = malloc(sizeof(*c));
    if (!c)
        return TL_ENOMEM;
    *c = (wait_ctx){.when = when, .cb = cb, .arg = arg};
    tl_waiter *w = tl__waiter_new(loop, tasks, n, timeout_ms, true, on_event, c);
    if (!w) {
        free(c);
        return TL_ENOMEM;
    }
    w->on_drop = on_drop;
    /* Already satisfied: report on the next iteration, never from inside this call. */
    if (condition_met(w, when) || n == 0)
        tl__waiter_poke(w);
    return 0;
}
