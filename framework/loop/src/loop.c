/*
 * The loop: one iteration runs the inline tasks that are ready, hands pool tasks to
 * the workers, asks the poller (if any) to take what arrived by its own means, sleeps
 * until something arrives in the inbox (inbox.c) or a timer (timer.c) is due, then
 * runs the thread-safe calls, finalizes finished tasks and fires due timers. Nothing
 * about messages lives here.
 *
 * Thread rules: the loop thread (the one running it, or owning it between runs).
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

static void run_begin(tl_loop *loop)
{
    loop->running++;
    atomic_store_explicit(&loop->runner, tl__thread_token(), memory_order_relaxed);
}

static void run_end(tl_loop *loop)
{
    atomic_store_explicit(&loop->runner, NULL, memory_order_relaxed);
    loop->running--;
}

int tl_loop_new(const tl_loop_opts *opts, tl_loop **out)
{
    return tl_loop_new_ex(opts, NULL, out);
}

int tl_loop_new_ex(const tl_loop_opts *opts, const tl_worker_hooks *hooks, tl_loop **out)
{
    tl_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return TL_ENOMEM;
    atomic_init(&loop->refs, 1);
    loop->poller_fd = -1;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        free(loop);
        return TL_ESYS;
    }
    loop->now_ns = tl_clock_ns();
    int rc = tl_recycler_new(sizeof(tl_task), &loop->task_blocks);
    if (!rc)
        rc = tl__pool_start(&loop->pool, opts ? opts->workers : 0, hooks, tl__task_run,
                            tl_task_release);
    if (rc) {
        tl_recycler_free(loop->task_blocks);
        close(loop->wake_fd);
        free(loop);
        return rc;
    }
    *out = loop;
    return 0;
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

/* Loop thread: true when a completion, a call or a stop is waiting. */
static bool has_work(tl_loop *loop)
{
    return loop->done_head || atomic_load(&loop->completed) || atomic_load(&loop->calls) ||
           atomic_load(&loop->stop_flag);
}

void tl_loop_set_poller(tl_loop *loop, tl_poller_fn poller, void *user, int fd)
{
    loop->poller = poller;
    loop->poller_user = user;
    loop->poller_fd = poller ? fd : -1;
}

/* Asks the poller (if any); true when it says something arrived. */
static bool ask_poller(tl_loop *loop, tl_poll_phase phase)
{
    return loop->poller && loop->poller(loop, phase, loop->poller_user);
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
        if (ask_poller(loop, TL_POLL_LOOK))
            return true;
        sched_yield();
    } while (tl_clock_ns() < end);
    return false;
}

/* Sleeps in ppoll until woken or timeout_ns passes (negative: no limit). */
static void sleep_until_woken(tl_loop *loop, int64_t timeout_ns)
{
    if (ask_poller(loop, TL_POLL_LOOK))
        timeout_ns = 0;
    if (timeout_ns != 0 && spin_for_work(loop, timeout_ns))
        return;
    atomic_store(&loop->sleeping, true);
    /* Dekker pairing with the pushers: they push, then read sleeping; we set sleeping,
     * then look at what they pushed. One of the two sides sees the other. The poller's
     * sources pair the same way with what it marks in SLEEP. */
    if (has_work(loop))
        timeout_ns = 0;
    bool asked = timeout_ns != 0 && loop->poller;
    if (asked && ask_poller(loop, TL_POLL_SLEEP))
        timeout_ns = 0;
    struct pollfd pfd[2] = {{.fd = loop->wake_fd, .events = POLLIN},
                            {.fd = loop->poller_fd, .events = POLLIN}};
    nfds_t nfd = asked && loop->poller_fd >= 0 ? 2 : 1;
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    if (timeout_ns != 0 && ppoll(pfd, nfd, tsp, NULL) > 0) {
        uint64_t v;
        for (nfds_t i = 0; i < nfd; i++)
            if (pfd[i].revents & POLLIN) {
                ssize_t n = read(pfd[i].fd, &v, sizeof(v));
                (void)n;
            }
    }
    atomic_store(&loop->sleeping, false);
    atomic_store(&loop->wake_sent, false);
    if (asked)
        ask_poller(loop, TL_POLL_WOKEN);
}

/* One iteration: run what is ready, hand work to the pool, sleep, then deliver. */
static void tick(tl_loop *loop, int64_t max_wait_ns)
{
    bool busy = run_ready(loop);
    tl__pool_flush(&loop->pool);
    int64_t wait = max_wait_ns;
    if (busy || loop->ready_head)
        wait = 0;
    int64_t due = tl__timers_next_ns(loop);
    if (wait != 0 && due >= 0) {
        int64_t until = due - tl_clock_ns();
        if (until < 0)
            until = 0;
        if (wait < 0 || until < wait)
            wait = until;
    }
    /* Workers are owed to tasks: look again soon even with nothing else to do. */
    if (loop->pool.owed && (wait < 0 || wait > TL_POOL_CHECK_NS))
        wait = TL_POOL_CHECK_NS;
    sleep_until_woken(loop, wait);
    loop->now_ns = tl_clock_ns();
    run_calls(loop);
    drain_completed(loop);
    tl__timers_run(loop);
    tl__pool_check(&loop->pool, loop->now_ns);
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
        unsigned char expect = TL_TASK_PENDING;
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
