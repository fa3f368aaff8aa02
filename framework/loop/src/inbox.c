/*
 * The loop's inbox: what any thread hands the running loop (finished tasks, calls, a
 * stop) and the wake-up that goes with it, plus the references that keep the loop's
 * memory alive while tasks are out. The loop takes from the inbox in loop.c.
 *
 * Thread rules: any thread, except tl__loop_unref_on_runner (the running thread).
 * Cross-thread hand-over uses two lock-free stacks (completed tasks, calls) and one
 * eventfd; the eventfd is written only while the loop sleeps, and at most once per
 * sleep (wake_sent), so a busy loop costs workers no system calls.
 */
#include "internal.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char thread_token;

const void *tl__thread_token(void)
{
    return &thread_token;
}

int64_t tl_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How many references the running thread takes at once (see ref_credit). */
#define TL_REF_BATCH 1024

void tl__loop_ref(tl_loop *loop)
{
    if (!tl__on_runner(loop)) {
        atomic_fetch_add_explicit(&loop->refs, 1, memory_order_relaxed);
        return;
    }
    if (loop->ref_credit == 0) {
        atomic_fetch_add_explicit(&loop->refs, TL_REF_BATCH, memory_order_relaxed);
        loop->ref_credit = TL_REF_BATCH;
    }
    loop->ref_credit--;
}

void tl__loop_unref_on_runner(tl_loop *loop)
{
    /* The loop's own reference outlives its runs, so refs stays above the credit. */
    if (++loop->ref_credit < 2 * TL_REF_BATCH)
        return;
    atomic_fetch_sub_explicit(&loop->refs, TL_REF_BATCH, memory_order_relaxed);
    loop->ref_credit -= TL_REF_BATCH;
}

void tl__loop_unref(tl_loop *loop)
{
    if (atomic_fetch_sub(&loop->refs, 1) == 1) {
        tl_recycler_free(loop->task_blocks);
        free(loop);
    }
}

void tl__loop_wake(tl_loop *loop)
{
    if (!atomic_load(&loop->sleeping))
        return;
    if (atomic_exchange(&loop->wake_sent, true))
        return;
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof(one));
    (void)n; /* EAGAIN means the counter is already non-zero: the loop will wake */
}

void tl__loop_push_completed(tl_loop *loop, tl_task *task)
{
    /* Inline tasks finish on the running thread: no atomic and no wake-up for them. */
    if (tl__on_runner(loop)) {
        task->done_next = NULL;
        if (loop->done_tail)
            loop->done_tail->done_next = task;
        else
            loop->done_head = task;
        loop->done_tail = task;
        return;
    }
    tl_task *head = atomic_load_explicit(&loop->completed, memory_order_relaxed);
    do {
        task->done_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&loop->completed, &head, task,
                                                    memory_order_seq_cst, memory_order_relaxed));
    tl__loop_wake(loop);
}

int tl_loop_call_threadsafe(tl_loop *loop, void (*cb)(tl_loop *loop, void *arg), void *arg)
{
    if (!cb)
        return TL_EINVAL;
    if (loop->closed)
        return TL_ECLOSED;
    tl_call *c = malloc(sizeof(*c));
    if (!c)
        return TL_ENOMEM;
    c->cb = cb;
    c->arg = arg;
    tl_call *head = atomic_load_explicit(&loop->calls, memory_order_relaxed);
    do {
        c->next = head;
    } while (!atomic_compare_exchange_weak(&loop->calls, &head, c));
    tl__loop_wake(loop);
    return 0;
}

void tl_loop_stop(tl_loop *loop)
{
    atomic_store(&loop->stop_flag, true);
    atomic_store(&loop->sleeping, true);
    tl__loop_wake(loop);
}
