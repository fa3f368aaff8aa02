/*
 * The loop: timers, wake-ups, the ready queue and the completion stack. Nothing
 * about messages lives here.
 *
 * Thread rules: everything runs on the loop thread except tl_loop_stop,
 * tl_loop_call_threadsafe, tl__loop_push_completed and tl__loop_wake, which any
 * thread may call. Cross-thread hand-over uses two lock-free stacks (completed tasks,
 * calls) and one eventfd; the eventfd is written only while the loop sleeps, and at
 * most once per sleep (wake_sent), so a busy loop costs workers no system calls.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* How long the loop looks for completions before it sleeps (see spin_for_work). */
#define TL_SPIN_NS 20000

static _Thread_local char thread_token;

const void *tl__thread_token(void)
{
    return &thread_token;
}

static void run_begin(tl_loop *loop)
{
    loop->running++;
    atomic_store_explicit(&loop->runner, &thread_token, memory_order_relaxed);
}

static void run_end(tl_loop *loop)
{
    atomic_store_explicit(&loop->runner, NULL, memory_order_relaxed);
    loop->running--;
}

int64_t tl_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int tl_loop_new(const tl_loop_opts *opts, tl_loop **out)
{
    tl_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return TL_ENOMEM;
    atomic_init(&loop->refs, 1);
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        free(loop);
        return TL_ESYS;
    }
    loop->now_ns = tl_clock_ns();
    int rc = tl_recycler_new(sizeof(tl_task), &loop->task_blocks);
    if (!rc)
        rc = tl__pool_start(&loop->pool, loop, opts ? opts->workers : 0);
    if (rc) {
        tl_recycler_free(loop->task_blocks);
        close(loop->wake_fd);
        free(loop);
        return rc;
    }
    *out = loop;
    return 0;
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

/* Runs the thread-safe calls queued so far, in the order they were made. */
static void run_calls(tl_loop *loop)
{
    tl_call *c = atomic_exchange(&loop->calls, NULL);
    tl_call *rev = NULL;
    while (c) {
        tl_call *next = c->next;
        c->next = rev;
        rev = c;
        c = next;
    }
    while (rev) {
        tl_call *next = rev->next;
        rev->cb(loop, rev->arg);
        free(rev);
        rev = next;
    }
}

/* Finalizes a list linked through done_next, in its order. */
static void finalize_list(tl_task *t)
{
    while (t) {
        tl_task *next = t->done_next;
        tl__task_finalize(t);
        t = next;
    }
}

/* Finalizes what finished so far, on this thread and others, each in finishing order;
 * what the callbacks finish waits for the next call. */
static bool drain_completed(tl_loop *loop)
{
    tl_task *t = atomic_exchange(&loop->completed, NULL);
    tl_task *local = loop->done_head;
    if (!t && !local)
        return false;
    loop->done_head = loop->done_tail = NULL;
    loop->drained_ns = tl_clock_ns(); /* one clock read for the lot */
    tl_task *rev = NULL;
    while (t) {
        tl_task *next = t->done_next;
        t->done_next = rev;
        rev = t;
        t = next;
    }
    finalize_list(local);
    finalize_list(rev);
    return true;
}

/* Runs inline tasks queued so far; ones they create wait for the next round. */
static bool run_ready(tl_loop *loop)
{
    tl_task *t = loop->ready_head;
    if (!t)
        return false;
    loop->ready_head = loop->ready_tail = NULL;
    while (t) {
        tl_task *next = t->next;
        t->next = NULL;
        tl__task_run(t, false); /* the ready queue holds no reference */
        t = next;
    }
    return true;
}

/* ---------------------------------------------------------------- timers */

static bool timer_less(const tl_timer *a, const tl_timer *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_set(tl_loop *loop, size_t i, tl_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap && timer_less(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_less(loop->heap[c], t))
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

void tl_timer_init(tl_loop *loop, tl_timer *timer)
{
    memset(timer, 0, sizeof(*timer));
    timer->loop = loop;
    timer->heap_index = SIZE_MAX;
}

void tl_timer_stop(tl_timer *timer)
{
    tl_loop *loop = timer->loop;
    size_t i = timer->heap_index;
    if (i == SIZE_MAX)
        return;
    timer->heap_index = SIZE_MAX;
    tl_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    heap_down(loop, i);
    heap_up(loop, last->heap_index);
}

int tl_timer_start(tl_timer *timer, int64_t delay_ms, tl_timer_cb cb, void *arg)
{
    tl_loop *loop = timer->loop;
    if (!cb || loop->closed)
        return loop->closed ? TL_ECLOSED : TL_EINVAL;
    tl_timer_stop(timer);
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 16;
        tl_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return TL_ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    if (delay_ms < 0)
        delay_ms = 0;
    /* From the clock, not the cached time: a timer must never fire early. */
    timer->due_ns = tl_clock_ns() + delay_ms * 1000000;
    timer->seq = loop->timer_seq++;
    timer->cb = cb;
    timer->arg = arg;
    loop->heap[loop->nheap] = timer;
    timer->heap_index = loop->nheap++;
    heap_up(loop, timer->heap_index);
    return 0;
}

/* Fires due timers; a timer armed by a callback waits for the next round. */
static bool run_timers(tl_loop *loop)
{
    bool any = false;
    int64_t now = loop->now_ns;
    uint64_t limit = loop->timer_seq;
    while (loop->nheap > 0) {
        tl_timer *t = loop->heap[0];
        if (t->due_ns > now || t->seq >= limit)
            break;
        tl_timer_stop(t);
        t->cb(t, t->arg);
        any = true;
    }
    return any;
}

/* ---------------------------------------------------------------- wake-ups */

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

/* Loop thread: true when a completion, a call or a stop is waiting. */
static bool has_work(tl_loop *loop)
{
    return loop->done_head || atomic_load(&loop->completed) || atomic_load(&loop->calls) ||
           atomic_load(&loop->stop_flag);
}

/*
 * Before sleeping, look for work for a few microseconds while tasks are out on the
 * pool: a completion that arrives meanwhile costs no wake-up (an eventfd write on one
 * side, a scheduler round trip on the other), which is what bounds a partition's
 * one-message-at-a-time pace. It yields the core between looks: when the threads that
 * make the work (workers, a source, librdkafka's) wait for a core, as on a 2-core
 * machine, a plain spin takes the core from them (the Kafka partition-ordered pool
 * benchmark ran at 33% of the plain loop with it, 48-61% with the yields).
 */
static bool spin_for_work(tl_loop *loop, int64_t timeout_ns)
{
    /* Inline tasks complete on this very thread: spinning would only wait for them. */
    if (loop->nelsewhere == 0 || loop->pool.nominal == 0)
        return false;
    int64_t limit = TL_SPIN_NS;
    if (timeout_ns >= 0 && timeout_ns < limit)
        limit = timeout_ns;
    int64_t end = tl_clock_ns() + limit;
    do {
        for (int i = 0; i < 64; i++)
            if (has_work(loop))
                return true;
        sched_yield();
    } while (tl_clock_ns() < end);
    return false;
}

/* Sleeps in ppoll until woken or timeout_ns passes (negative: no limit). */
static void sleep_until_woken(tl_loop *loop, int64_t timeout_ns)
{
    if (timeout_ns != 0 && spin_for_work(loop, timeout_ns))
        return;
    atomic_store(&loop->sleeping, true);
    /* Dekker pairing with the pushers: they push, then read sleeping; we set sleeping,
     * then look at what they pushed. One of the two sides sees the other. */
    if (has_work(loop))
        timeout_ns = 0;
    struct pollfd pfd = {.fd = loop->wake_fd, .events = POLLIN};
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    if (timeout_ns != 0 && ppoll(&pfd, 1, tsp, NULL) > 0) {
        uint64_t v;
        ssize_t n = read(loop->wake_fd, &v, sizeof(v));
        (void)n;
    }
    atomic_store(&loop->sleeping, false);
    atomic_store(&loop->wake_sent, false);
}

/* One iteration: run what is ready, hand work to the pool, sleep, then deliver. */
static void tick(tl_loop *loop, int64_t max_wait_ns)
{
    bool busy = run_ready(loop);
    tl__pool_flush(&loop->pool);
    int64_t wait = max_wait_ns;
    if (busy || loop->ready_head)
        wait = 0;
    if (wait != 0 && loop->nheap > 0) {
        int64_t until = loop->heap[0]->due_ns - tl_clock_ns();
        if (until < 0)
            until = 0;
        if (wait < 0 || until < wait)
            wait = until;
    }
    sleep_until_woken(loop, wait);
    loop->now_ns = tl_clock_ns();
    run_calls(loop);
    drain_completed(loop);
    run_timers(loop);
}

int tl__loop_run_until(tl_loop *loop, const bool *flag)
{
    if (loop->running)
        return TL_EBUSY;
    if (loop->closed)
        return TL_ECLOSED;
    run_begin(loop);
    /* Catch up on completions first, so a zero timeout sees what already finished. */
    loop->now_ns = tl_clock_ns();
    run_calls(loop);
    drain_completed(loop);
    while (!*flag)
        tick(loop, -1);
    run_end(loop);
    return 0;
}

int tl_loop_run(tl_loop *loop)
{
    if (loop->running)
        return TL_EBUSY;
    if (loop->closed)
        return TL_ECLOSED;
    run_begin(loop);
    while (!atomic_exchange(&loop->stop_flag, false))
        tick(loop, -1);
    run_end(loop);
    return 0;
}

int tl_loop_run_once(tl_loop *loop, int64_t timeout_ms)
{
    if (loop->running)
        return TL_EBUSY;
    if (loop->closed)
        return TL_ECLOSED;
    run_begin(loop);
    tick(loop, timeout_ms < 0 ? -1 : timeout_ms * 1000000);
    run_end(loop);
    return 0;
}

int64_t tl_loop_now(const tl_loop *loop)
{
    return loop->now_ns / 1000000;
}

int64_t tl_loop_now_ns(const tl_loop *loop)
{
    return loop->now_ns;
}

int64_t tl_loop_drained_ns(const tl_loop *loop)
{
    return loop->drained_ns;
}

int tl_loop_add_worker(tl_loop *loop)
{
    return tl__pool_add_worker(&loop->pool);
}

void tl_loop_retire_worker(tl_loop *loop)
{
    tl__pool_retire_worker(&loop->pool);
}

unsigned tl_loop_workers(const tl_loop *loop)
{
    tl_pool *pool = (tl_pool *)&loop->pool;
    pthread_mutex_lock(&pool->mu);
    unsigned n = pool->alive;
    pthread_mutex_unlock(&pool->mu);
    return n;
}

/* Cancels every task not started, so the workers skip them while draining. */
static void cancel_unstarted(tl_loop *loop)
{
    for (tl_link *l = loop->all.head; l; l = l->next) {
        tl_task *t = tl_list_item(l, tl_task, all);
        int expect = TL_TASK_PENDING;
        atomic_compare_exchange_strong(&t->state, &expect, TL_TASK_CANCELLED);
    }
}

void tl_loop_free(tl_loop *loop)
{
    if (!loop)
        return;
    cancel_unstarted(loop);
    tl__pool_flush(&loop->pool);
    tl__pool_stop(&loop->pool);
    /* Waiters' callbacks would run against a half-torn-down loop: drop them unfired. */
    for (tl_link *l; (l = tl_list_pop_front(&loop->closers));) {
        tl_closer *c = tl_list_item(l, tl_closer, link);
        c->drop(c);
    }
    run_calls(loop);
    /* Tasks that never got to run: the ready queue holds no references of its own. */
    loop->ready_head = loop->ready_tail = NULL;
    loop->closed = true;
    drain_completed(loop);
    /* What is left waits for a completion that can no longer be delivered. */
    while (loop->all.head) {
        tl_task *t = tl_list_item(loop->all.head, tl_task, all);
        if (!atomic_exchange(&t->finished, true)) {
            t->err = TL_ECANCELED;
            atomic_store(&t->state, TL_TASK_CANCELLED);
        }
        tl__task_finalize(t);
    }
    drain_completed(loop);
    close(loop->wake_fd);
    free(loop->heap);
    loop->heap = NULL;
    loop->nheap = 0;
    atomic_fetch_sub_explicit(&loop->refs, loop->ref_credit, memory_order_relaxed);
    loop->ref_credit = 0;
    tl__loop_unref(loop);
}
