/*
 * Waiters: the one mechanism behind wait, gather and as_completed.
 *
 * Thread rules: loop thread only.
 */
#ifndef TL_WAITER_H
#define TL_WAITER_H

#include "internal.h"

typedef struct tl_waiter tl_waiter;

/*
 * A waiter: the one mechanism behind wait, gather and as_completed. It links a
 * done-callback into each unfinished task, records completions in order and calls
 * on_event after each completion and at the timeout; the owner decides when it has
 * seen enough and frees it (which unlinks whatever is still linked).
 */
struct tl_waiter {
    tl_loop *loop;
    tl_closer closer; /* in the loop's closers while active */
    tl_task **tasks;
    size_t n;
    bool retained; /* holds a reference on each task (callback forms) */
    tl_cbnode *nodes;
    unsigned char *done; /* per input index */
    size_t *order;       /* input indices in completion order */
    size_t ndone;
    size_t nfailed;
    bool timed_out;
    tl_timer timer; /* the timeout */
    tl_timer poke;  /* an event on the next iteration */
    void (*on_event)(tl_waiter *w);
    void (*on_drop)(tl_waiter *w); /* the loop is being freed; NULL: nothing to do */
    void *ctx;
};

/* Loop thread: a waiter over tasks; timeout_ms < 0 for none. NULL on allocation failure. */
tl_waiter *tl__waiter_new(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                          bool retain, void (*on_event)(tl_waiter *w), void *ctx);

/* Loop thread: calls on_event on the next iteration (a waiter satisfied at birth). */
void tl__waiter_poke(tl_waiter *w);

/* Loop thread: unlinks, disarms and frees a waiter. */
void tl__waiter_free(tl_waiter *w);

#endif
