/*
 * asyncio.gather(): results in INPUT order. (The tutorial says gather does not keep
 * the order; asyncio does keep it, and so does this.) Without return_exceptions the
 * first failure is reported at once and the other tasks keep running.
 */
#include "waiter.h"

#include <stdlib.h>

typedef struct gather_ctx {
    bool return_exceptions;
    bool fired;
    int status;
    tl_gather_cb cb; /* NULL for the blocking form */
    void *arg;
} gather_ctx;

/* Writes each task's outcome at its input index. */
static void collect(const tl_waiter *w, tl_result *results)
{
    for (size_t i = 0; i < w->n; i++) {
        tl_task *t = w->tasks[i];
        results[i].error = tl_task_error(t);
        results[i].value = results[i].error == 0 ? tl_task_result(t) : NULL;
    }
}

/* The first failure in completion order: the one gather reports. */
static int first_error(const tl_waiter *w)
{
    for (size_t k = 0; k < w->ndone; k++) {
        int err = tl_task_error(w->tasks[w->order[k]]);
        if (err != 0)
            return err;
    }
    return 0;
}

static bool finished(gather_ctx *c, const tl_waiter *w)
{
    if (!c->return_exceptions && w->nfailed > 0) {
        c->status = first_error(w);
        return true;
    }
    return w->ndone == w->n;
}

static void on_event(tl_waiter *w)
{
    gather_ctx *c = w->ctx;
    if (c->fired || !finished(c, w))
        return;
    c->fired = true;
    if (!c->cb)
        return;
    tl_result *results = malloc((w->n ? w->n : 1) * sizeof(*results));
    if (results) {
        collect(w, results);
        c->cb(w->loop, c->status, results, w->n, c->arg);
    } else {
        c->cb(w->loop, TL_ENOMEM, NULL, 0, c->arg);
    }
    free(results);
    free(c);
    tl__waiter_free(w);
}

int tl_gather(tl_loop *loop, tl_task *const *tasks, size_t n, bool return_exceptions,
              tl_result *results)
{
    if (!loop || (n && (!tasks || !results)))
        return TL_EINVAL;
    if (loop->closed)
        return TL_ECLOSED;
    if (loop->running)
        return TL_EBUSY;
    gather_ctx c = {.return_exceptions = return_exceptions};
    tl_waiter *w = tl__waiter_new(loop, tasks, n, TL_FOREVER, false, on_event, &c);
    if (!w)
        return TL_ENOMEM;
    int rc = 0;
    c.fired = finished(&c, w);
    if (!c.fired)
        rc = tl__loop_run_until(loop, &c.fired);
    collect(w, results);
    tl__waiter_free(w);
    return rc ? rc : c.status;
}

static void on_drop(tl_waiter *w)
{
    free(w->ctx);
}

int tl_gather_async(tl_loop *loop, tl_task *const *tasks, size_t n, bool return_exceptions,
                    tl_gather_cb cb, void *arg)
{
    if (!loop || !cb || (n && !tasks))
        return TL_EINVAL;
    if (loop->closed)
        return TL_ECLOSED;
    gather_ctx *c = malloc(sizeof(*c));
    if (!c)
        return TL_ENOMEM;
    *c = (gather_ctx){.return_exceptions = return_exceptions, .cb = cb, .arg = arg};
    tl_waiter *w = tl__waiter_new(loop, tasks, n, TL_FOREVER, true, on_event, c);
    if (!w) {
        free(c);
        return TL_ENOMEM;
    }
    w->on_drop = on_drop;
    if (finished(c, w))
        tl__waiter_poke(w);
    return 0;
}
