/*
 * asyncio.as_completed(): tasks in the order they finish. Tasks already finished
 * when the iteration starts come first, in input order. A timeout ends the
 * iteration and cancels nothing.
 */
#include "waiter.h"

#include <stdlib.h>

struct tl_as_completed {
    tl_waiter *w;
    size_t cursor; /* next entry of w->order to yield */
    bool woken;
    tl_as_completed_cb cb; /* NULL for the iterator form */
    void *arg;
};

static void on_event_iter(tl_waiter *w)
{
    tl_as_completed *it = w->ctx;
    it->woken = true;
}

/* The loop is being freed under a live iterator: it ends with TL_ECLOSED. */
static void on_drop_iter(tl_waiter *w)
{
    tl_as_completed *it = w->ctx;
    it->w = NULL;
}

int tl_as_completed_new(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                        tl_as_completed **out)
{
    if (!loop || !out || (n && !tasks))
        return TL_EINVAL;
    if (loop->closed)
        return TL_ECLOSED;
    tl_as_completed *it = calloc(1, sizeof(*it));
    if (!it)
        return TL_ENOMEM;
    /* The iterator may outlive the caller's hold on the tasks between next() calls. */
    it->w = tl__waiter_new(loop, tasks, n, timeout_ms, true, on_event_iter, it);
    if (!it->w) {
        free(it);
        return TL_ENOMEM;
    }
    it->w->on_drop = on_drop_iter;
    *out = it;
    return 0;
}

int tl_as_completed_next(tl_as_completed *it, tl_task **task)
{
    tl_waiter *w = it->w;
    if (!w) {
        *task = NULL;
        return TL_ECLOSED;
    }
    for (;;) {
        if (it->cursor < w->ndone) {
            *task = w->tasks[w->order[it->cursor++]];
            return 0;
        }
        *task = NULL;
        if (it->cursor == w->n)
            return TL_EOF;
        if (w->timed_out)
            return TL_ETIMEDOUT;
        it->woken = false;
        int rc = tl__loop_run_until(w->loop, &it->woken);
        if (rc)
            return rc;
    }
}

void tl_as_completed_free(tl_as_completed *it)
{
    if (!it)
        return;
    if (it->w)
        tl__waiter_free(it->w);
    free(it);
}

/* Callback form: report every new completion, then the end. */
static void on_event_cb(tl_waiter *w)
{
    tl_as_completed *it = w->ctx;
    while (it->cursor < w->ndone)
        it->cb(w->loop, w->tasks[w->order[it->cursor++]], 0, it->arg);
    if (it->cursor < w->n && !w->timed_out)
        return;
    it->cb(w->loop, NULL, it->cursor == w->n ? TL_EOF : TL_ETIMEDOUT, it->arg);
    tl_as_completed_free(it);
}

/* The loop is being freed: the owner hears TL_ECLOSED and may free its state. */
static void on_drop_cb(tl_waiter *w)
{
    tl_as_completed *it = w->ctx;
    it->cb(w->loop, NULL, TL_ECLOSED, it->arg);
    free(it);
}

int tl_as_completed_async(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                          tl_as_completed_cb cb, void *arg)
{
    if (!cb)
        return TL_EINVAL;
    tl_as_completed *it;
    int rc = tl_as_completed_new(loop, tasks, n, timeout_ms, &it);
    if (rc)
        return rc;
    it->cb = cb;
    it->arg = arg;
    it->w->on_event = on_event_cb;
    it->w->on_drop = on_drop_cb;
    if (it->w->ndone > 0 || n == 0)
        tl__waiter_poke(it->w);
    return 0;
}
