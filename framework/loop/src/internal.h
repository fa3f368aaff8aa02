/*
 * Private structures of the loop, the worker pool and tasks.
 *
 * Thread rules:
 *  - Fields marked [loop] are touched by the loop thread only.
 *  - Fields marked [atomic] are shared with workers and completer threads.
 *  - The pool's list of chunks and its counters are guarded by pool.mu.
 */
#ifndef TL_INTERNAL_H
#define TL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <taskloop/loop_ext.h>
#include <taskloop/recycler.h>
#include <taskloop/taskloop.h>

/* next_run once claimed: by the runner after a success, or by the loop. */
#define TL__CHAIN_TAKEN ((tl_task *)(uintptr_t)1)

/* What few tasks carry: allocated by the first setter, so a task without a name or an
 * error text pays one pointer for both. */
typedef struct tl_task_extra {
    char *name;
    char *error_text;
} tl_task_extra;

/*
 * Packed so that a task fits malloc's 144-byte chunk (checked in task.c): the small
 * fields share the first 16 bytes and the callback list keeps only its head.
 */
struct tl_task {
    _Atomic int refs; /* [atomic] */
    int err;
    unsigned flags;
    _Atomic unsigned char state; /* [atomic] tl_task_state */
    _Atomic bool cancel_req;     /* [atomic] cancellation asked while running */
    _Atomic bool finished;       /* [atomic] claimed by exactly one completion */
    /* Set by a runner that completed the task with the reference it ran it with: the
     * loop drops that one too when it finalizes, so the worker never touches the task
     * again and the loop, not the worker, gives it back (see tl__task_run). */
    bool pass_ref;
    tl_loop *loop;
    tl_task_fn fn;
    void *arg;
    void *result;    /* written by the one completer before the release-push */
    void *fn_result; /* tl_task_set_result's, taken by finish() if the function wins */
    uint64_t id;
    int64_t created_ms;
    _Atomic int64_t started_ns;  /* with TL_TASK_TIMED: when the function started */
    _Atomic(tl_task *) next_run; /* [atomic] a held successor (holding a reference), or
                                    TL__CHAIN_TAKEN once claimed, or NULL */
    /* [atomic] name and error text; installed once by whichever thread sets one first */
    _Atomic(tl_task_extra *) extra;
    tl_link all;        /* [loop] in the loop's list of unfinished tasks */
    tl_task *next;      /* [loop] ready queue of inline tasks */
    tl_task *done_next; /* completion stack link */
    tl_link *callbacks; /* [loop] first tl_cbnode link, in adding order; the first
                           link's prev is the last one (see task.c) */
};

typedef struct tl_call {
    struct tl_call *next;
    void (*cb)(tl_loop *loop, void *arg);
    void *arg;
} tl_call;

/* A batch of tasks handed to the workers at once; claimed one task at a time. */
typedef struct tl_chunk {
    struct tl_chunk *next;
    _Atomic size_t claimed;
    size_t n, cap;
    unsigned refs; /* workers holding it; guarded by pool.mu */
    bool popped;   /* removed from the pool list; guarded by pool.mu */
    tl_task *t[];
} tl_chunk;

typedef struct tl_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tl_chunk *head, *tail;
    unsigned idle;
    _Atomic unsigned long published; /* chunks published so far: spinners watch it */
    _Atomic bool spinning;           /* one idle worker looks before it sleeps */
    _Atomic unsigned alive;          /* threads running the worker loop; written under mu */
    _Atomic unsigned nominal;        /* the size asked for; extra threads leave when free */
    bool stopping;
    tl_chunk *submit;   /* [loop] tasks not yet handed over (tl__pool_flush) */
    pthread_t *threads; /* every thread ever started, joined at the end */
    size_t nthreads;
    void (*run)(tl_task *task, bool owned); /* runs a claimed task (tl__task_run) */
    void (*drop)(tl_task *task);            /* releases a task never claimed */
    tl_worker_hooks hooks;                  /* run by each worker as it starts and ends */
    /* Light tasks (pool.c, "waking for light tasks"): a claim's run time as the workers
     * sample it (a moving average), the cores there are, and what the loop keeps to
     * wake the rest when fewer workers than tasks were woken and they stop claiming. */
    _Atomic int64_t run_ns;
    unsigned ncpu;
    bool owed;                   /* [loop] a publish woke fewer workers than tasks */
    int64_t check_ns;            /* [loop] when progress was last looked at */
    const tl_chunk *check_chunk; /* [loop] the first unclaimed chunk then (compared only) */
    size_t check_claimed;        /* [loop] and its claimed count */
} tl_pool;

/* Something the loop lets go of, without calling it, when it is freed (a waiter whose
 * callbacks would run against a half-torn-down loop). */
typedef struct tl_closer {
    tl_link link;
    void (*drop)(struct tl_closer *c);
} tl_closer;

struct tl_loop {
    _Atomic int refs; /* the loop's own, plus one per task alive, plus ref_credit */
    /* References taken in advance by the running thread: tasks made and freed on it
     * take and give back one of these instead of an atomic on refs. Touched only on
     * the running thread (and by tl_loop_free, which gives what is left back). */
    int ref_credit;
    bool closed;
    int running; /* [loop] depth of run calls */
    /* The running thread's tl__thread_token(), NULL between runs: a task freed on the
     * loop's own thread goes back to task_blocks without an atomic. A thread clears it
     * when its run ends, so it never mistakes an old value for its own. */
    _Atomic(const void *) runner;
    bool stop_req;
    _Atomic bool stop_flag;
    int wake_fd;
    _Atomic bool sleeping;
    _Atomic bool wake_sent;
    _Atomic(tl_task *) completed;   /* stack of finished tasks, pushed from any thread */
    tl_task *done_head, *done_tail; /* [loop] finished on the running thread itself */
    _Atomic(tl_call *) calls;       /* stack of thread-safe calls */
    tl_list all;                    /* [loop] unfinished tasks (tl_task.all), oldest first */
    tl_recycler *task_blocks;       /* freed tasks, for the loop's next ones */
    size_t nelsewhere; /* [loop] unfinished tasks not inline: workers or others finish them */
    tl_task *ready_head, *ready_tail; /* [loop] inline tasks to run */
    uint64_t next_id;
    int64_t now_ns;
    int64_t drained_ns; /* [loop] clock when the completions now finalized were taken:
                         * every one of them finished by then */
    tl_timer **heap;    /* [loop] timers, min-heap on (due_ns, seq) */
    size_t nheap, capheap;
    uint64_t timer_seq;
    tl_list closers;     /* [loop] tl_closer links: let go unfired by tl_loop_free */
    tl_poller_fn poller; /* [loop] NULL: none (tl_loop_set_poller) */
    void *poller_user;
    int poller_fd; /* [loop] an eventfd the sleep also waits on, or -1 */
    tl_pool pool;
};

/* A value unique to the calling thread while it lives. */
const void *tl__thread_token(void);

/* True when the calling thread is running the loop now (see runner). */
static inline bool tl__on_runner(tl_loop *loop)
{
    return atomic_load_explicit(&loop->runner, memory_order_relaxed) == tl__thread_token();
}

/* Any thread: pushes a finished task onto its loop's completion stack and wakes it. */
void tl__loop_push_completed(tl_loop *loop, tl_task *task);

/* Any thread: wakes the loop if it sleeps. */
void tl__loop_wake(tl_loop *loop);

/* Loop thread: fires due timers; a timer armed by a callback waits for the next round.
 * True when one fired. */
bool tl__timers_run(tl_loop *loop);

/* Loop thread: when the next timer is due (clock ns), or -1 when none is armed. */
int64_t tl__timers_next_ns(const tl_loop *loop);

/* Loop thread: runs iterations until *flag turns true. TL_EBUSY when nested. */
int tl__loop_run_until(tl_loop *loop, const bool *flag);

/* Loop thread: marks a finished task done, runs its callbacks, drops the loop's ref. */
void tl__task_finalize(tl_task *task);

/* Worker side: runs a claimed task's function and completes it unless pending; after
 * a success it goes on with the held successors chained to it. owned: the caller holds
 * a reference for the task (the pool chunk's) and hands it over: the run drops it or
 * passes it to the loop with the completion. */
void tl__task_run(tl_task *task, bool owned);

/* Frees a task whose last reference is gone. */
void tl__task_free(tl_task *task);

/* Loop thread: starts the pool's workers, which run each claimed task with run; tasks
 * never claimed are given to drop at the stop. 0, TL_ENOMEM or TL_ESYS. */
int tl__pool_start(tl_pool *pool, unsigned workers, const tl_worker_hooks *hooks,
                   void (*run)(tl_task *task, bool owned), void (*drop)(tl_task *task));

/* Loop thread: queues a task for the workers; handed over at the next flush. */
int tl__pool_submit(tl_pool *pool, tl_task *task);

/* Loop thread: hands the queued tasks to the workers. */
void tl__pool_flush(tl_pool *pool);

/* Loop thread: hands a chunk of tasks to the workers. */
void tl__pool_publish(tl_pool *pool, tl_chunk *chunk);

/* The longest the loop sleeps while a publish owes workers (tl__pool_check). */
#define TL_POOL_CHECK_NS 1000000

/* Loop thread, each round: when a publish woke fewer workers than tasks and the first
 * unclaimed chunk made no progress for TL_POOL_CHECK_NS (the woken workers block), or
 * the tasks are no longer light, wakes the idle workers. */
void tl__pool_check(tl_pool *pool, int64_t now_ns);

/* Loop thread: starts one worker beyond the pool's size. */
int tl__pool_add_worker(tl_pool *pool);

/* Loop thread: lets one added worker leave once it is free. */
void tl__pool_retire_worker(tl_pool *pool);

/* Loop thread: stops and joins every worker; unclaimed tasks are released. */
void tl__pool_stop(tl_pool *pool);

/* Takes a reference to the loop for a new task (from the running thread's credit when
 * called on it). */
void tl__loop_ref(tl_loop *loop);

/* Drops a loop reference; the loop's memory goes with the last one. */
void tl__loop_unref(tl_loop *loop);

/* The running thread only: gives a task's reference back to the credit. */
void tl__loop_unref_on_runner(tl_loop *loop);

#endif
