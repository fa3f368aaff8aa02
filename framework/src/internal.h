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
#include <taskloop/adapter.h>
#include <taskloop/taskloop.h>

/* Internal task flag: record when the function starts (the runtime's stall clock). */
#define TL__TASK_TIMED (1u << 8)
/* Created but neither queued nor submitted: it runs once chained (tl__task_chain) and
 * claimed after its predecessor, or once launched (tl__task_launch). */
#define TL__TASK_HELD (1u << 9)
/* May have a successor: its runner looks at next_run when it returns success. */
#define TL__TASK_CHAINED (1u << 10)
/* next_run once claimed: by the runner after a success, or by the loop. */
#define TL__CHAIN_TAKEN ((tl_task *)(uintptr_t)1)

typedef struct tl_cbnode tl_cbnode;
typedef void (*tl_cbnode_fn)(tl_task *task, tl_cbnode *node);

/* A done-callback linked into a task; embedded by waiters, allocated for users. */
struct tl_cbnode {
    tl_cbnode *prev, *next;
    tl_cbnode_fn fn;
    void *arg;
};

struct tl_task {
    _Atomic int state;       /* [atomic] tl_task_state */
    _Atomic int refs;        /* [atomic] */
    _Atomic bool cancel_req; /* [atomic] cancellation asked while running */
    _Atomic bool finished;   /* [atomic] claimed by exactly one completion */
    /* Set by a runner that completed the task with the reference it ran it with: the
     * loop drops that one too when it finalizes, so the worker never touches the task
     * again and the loop, not the worker, gives it back (see tl__task_run). */
    bool pass_ref;
    tl_loop *loop;
    tl_task_fn fn;
    void *arg;
    unsigned flags;
    void *result;    /* written by the one completer before the release-push */
    void *fn_result; /* tl_task_set_result's, taken by finish() if the function wins */
    int err;
    char *error_text;
    char *name;
    uint64_t id;
    int64_t created_ms;
    _Atomic int64_t started_ns;     /* with TL__TASK_TIMED: when the function started */
    _Atomic(tl_task *) next_run;    /* [atomic] a held successor (holding a reference), or
                                       TL__CHAIN_TAKEN once claimed, or NULL */
    tl_task *all_prev, *all_next;   /* [loop] the list of unfinished tasks */
    tl_task *next;                  /* [loop] ready queue of inline tasks */
    tl_task *done_next;             /* completion stack link */
    tl_cbnode *callbacks, *cb_tail; /* [loop] done-callbacks, in adding order */
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
    pthread_t *threads; /* every thread ever started, joined at the end */
    size_t nthreads;
    tl_loop *loop;
} tl_pool;

typedef struct tl_waiter tl_waiter;

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
    tl_task *all_head, *all_tail;   /* [loop] unfinished tasks, oldest first */
    tl_recycler *task_blocks;       /* freed tasks, for the loop's next ones */
    size_t nelsewhere; /* [loop] unfinished tasks not inline: workers or others finish them */
    tl_task *ready_head, *ready_tail; /* [loop] inline tasks to run */
    tl_chunk *submit;                 /* [loop] pool tasks not yet handed over */
    uint64_t next_id;
    int64_t now_ns;
    int64_t drained_ns; /* [loop] clock when the completions now finalized were taken:
                         * every one of them finished by then */
    tl_timer **heap;    /* [loop] timers, min-heap on (due_ns, seq) */
    size_t nheap, capheap;
    uint64_t timer_seq;
    tl_waiter *waiters; /* [loop] active waiters, dropped at free */
    tl_pool pool;
};

/* A value unique to the calling thread while it lives. */
const void *tl__thread_token(void);

/* True when the calling thread is running the loop now (see runner). */
static inline bool tl__on_runner(tl_loop *loop)
{
    return atomic_load_explicit(&loop->runner, memory_order_relaxed) == tl__thread_token();
}

/* Monotonic clock in nanoseconds. */
int64_t tl__clock_ns(void);

/* Any thread: pushes a finished task onto its loop's completion stack and wakes it. */
void tl__loop_push_completed(tl_loop *loop, tl_task *task);

/* Any thread: wakes the loop if it sleeps. */
void tl__loop_wake(tl_loop *loop);

/* Loop thread: hands tasks waiting for the pool to the workers. */
void tl__loop_flush_submit(tl_loop *loop);

/* Loop thread: queues a pool task for the next flush. */
int tl__loop_submit(tl_loop *loop, tl_task *task);

/* Loop thread: runs iterations until *flag turns true. TL_EBUSY when nested. */
int tl__loop_run_until(tl_loop *loop, const bool *flag);

/* Loop thread: marks a finished task done, runs its callbacks, drops the loop's ref. */
void tl__task_finalize(tl_task *task);

/* Worker side: runs a claimed task's function and completes it unless pending; after
 * a success it goes on with the held successors chained to it. owned: the caller holds
 * a reference for the task (the pool chunk's) and hands it over: the run drops it or
 * passes it to the loop with the completion. */
void tl__task_run(tl_task *task, bool owned);

/* Loop thread: makes held task next run right after prev succeeds, on prev's thread,
 * and takes over next's launch reference (dropped when it fails). False when prev
 * already finished and its runner looked for a successor. */
bool tl__task_chain(tl_task *prev, tl_task *next);

/* Loop thread: puts held task next in held task prev's successor slot, with next's
 * launch reference, before either is chained: a chain hung on at once. */
void tl__task_link_held(tl_task *prev, tl_task *next);

/* Any thread: true when prev's successor slot is claimed, so chaining to it fails. */
bool tl__task_chain_closed(tl_task *prev);

/* Loop thread: claims prev's successor; the held task (with the slot's reference,
 * which the caller now owns) or NULL when prev's runner took it or there is none. */
tl_task *tl__task_unchain(tl_task *prev);

/* Loop thread: queues or submits a held task; takes over one reference. */
void tl__task_launch(tl_task *task);

/* Frees a task whose last reference is gone. */
void tl__task_free(tl_task *task);

/* Loop thread: links a done-callback node into an unfinished task. */
void tl__task_link(tl_task *task, tl_cbnode *node);

/* Loop thread: unlinks a node still linked (not yet called). */
void tl__task_unlink(tl_task *task, tl_cbnode *node);

/* Loop-thread pool interface. */
int tl__pool_start(tl_pool *pool, tl_loop *loop, unsigned workers);
void tl__pool_publish(tl_pool *pool, tl_chunk *chunk);
int tl__pool_add_worker(tl_pool *pool);
void tl__pool_retire_worker(tl_pool *pool);
void tl__pool_stop(tl_pool *pool);

/* Loop thread: frees every active waiter without calling it (loop teardown). */
void tl__waiters_drop(tl_loop *loop);

/*
 * A waiter: the one mechanism behind wait, gather and as_completed. It links a
 * done-callback into each unfinished task, records completions in order and calls
 * on_event after each completion and at the timeout; the owner decides when it has
 * seen enough and frees it (which unlinks whatever is still linked).
 */
struct tl_waiter {
    tl_loop *loop;
    tl_waiter *prev, *next; /* the loop's active waiters */
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

/* Takes a reference to the loop for a new task (from the running thread's credit when
 * called on it). */
void tl__loop_ref(tl_loop *loop);

/* Drops a loop reference; the loop's memory goes with the last one. */
void tl__loop_unref(tl_loop *loop);

/* The running thread only: gives a task's reference back to the credit. */
void tl__loop_unref_on_runner(tl_loop *loop);

#endif
