/*
 * taskloop: a task loop whose API follows Python asyncio's task functions.
 *
 * Thread rules (the whole library follows them):
 *  - A loop is driven by one thread at a time: the thread inside tl_loop_run() or a
 *    blocking task function, or, while the loop is not running, the thread that owns it.
 *    Every function here is for that thread unless its comment says "any thread".
 *  - Task functions run on the loop's worker pool (or on the loop thread when created
 *    with TL_TASK_INLINE). From there they may call the "any thread" functions only.
 *
 * Errors are negative TL_E* codes; 0 is success. tl_strerror() names them.
 * Times are milliseconds; a negative timeout means "no timeout" (TL_FOREVER).
 */
#ifndef TASKLOOP_TASKLOOP_H
#define TASKLOOP_TASKLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_VERSION_MAJOR 0
#define TL_VERSION_MINOR 1
#define TL_VERSION_PATCH 0
#define TL_VERSION_STRING "0.1.0"

#define TL_FOREVER (-1)

enum {
    TL_OK = 0,
    TL_EINVAL = -1,     /* an argument is out of its domain */
    TL_ENOMEM = -2,     /* allocation failed */
    TL_ETIMEDOUT = -3,  /* the deadline passed first */
    TL_ECANCELED = -4,  /* the task was cancelled */
    TL_EDONE = -5,      /* the task is already done; refused */
    TL_EBUSY = -6,      /* the loop is already running on this thread */
    TL_ECLOSED = -7,    /* the loop was destroyed */
    TL_EOF = -8,        /* nothing more to iterate */
    TL_EFAIL = -9,      /* a task or handler reported failure */
    TL_EIO = -10,       /* a broker or socket reported an error */
    TL_ECONFIG = -11,   /* configuration is invalid */
    TL_ENOTFOUND = -12, /* a named thing (handler, source, target) does not exist */
    TL_EAGAIN = -13,    /* try again: a bound is reached */
    TL_ESYS = -14,      /* a system call failed */
};

/* Returns a static, human-readable name for an error code; never NULL. */
const char *tl_strerror(int err);

/* Returns TL_VERSION_STRING of the library actually linked. */
const char *tl_version(void);

typedef struct tl_loop tl_loop;
typedef struct tl_task tl_task;

typedef enum tl_task_state {
    TL_TASK_PENDING = 0, /* created, not started */
    TL_TASK_RUNNING,     /* its function started, or it returned TL_PENDING */
    TL_TASK_DONE,        /* finished with a result or an error */
    TL_TASK_CANCELLED,   /* cancelled before it finished; its result is discarded */
} tl_task_state;

/* The state's name in lower case ("pending", "running", "done", "cancelled"). */
const char *tl_task_state_name(tl_task_state state);

/* Returned by a task function that will finish later through tl_task_complete(). */
#define TL_PENDING 1

/*
 * A task function. Return 0 when done (result set with tl_task_set_result, or NULL),
 * a negative code for failure, or TL_PENDING to complete the task later from any thread.
 */
typedef int (*tl_task_fn)(tl_task *task, void *arg);

/* ---------------------------------------------------------------- loop */

typedef struct tl_loop_opts {
    unsigned workers; /* worker threads for task functions; 0 = inline only */
} tl_loop_opts;

/* Creates a loop with its worker pool; *out is owned by the caller (tl_loop_free). */
int tl_loop_new(const tl_loop_opts *opts, tl_loop **out);

/*
 * Destroys a loop: cancels tasks not started, waits for running task functions to
 * return, joins the workers. Tasks the caller still holds stay readable (state,
 * result) and must still be released; calls that need the loop return TL_ECLOSED.
 */
void tl_loop_free(tl_loop *loop);

/* Runs the loop until tl_loop_stop(); TL_EBUSY if it is already running. */
int tl_loop_run(tl_loop *loop);

/* Runs one iteration, waiting at most timeout_ms for something to happen. */
int tl_loop_run_once(tl_loop *loop, int64_t timeout_ms);

/* Any thread: makes tl_loop_run() return after its current iteration. */
void tl_loop_stop(tl_loop *loop);

/* Any thread: runs cb(loop, arg) on the loop thread soon; TL_ENOMEM or TL_ECLOSED. */
int tl_loop_call_threadsafe(tl_loop *loop, void (*cb)(tl_loop *loop, void *arg), void *arg);

/* Monotonic time in milliseconds, as cached by the loop at its last iteration. */
int64_t tl_loop_now(const tl_loop *loop);

/* Number of worker threads currently alive (grows when stuck workers are replaced). */
unsigned tl_loop_workers(const tl_loop *loop);

/* ---------------------------------------------------------------- timers */

typedef struct tl_timer tl_timer;
typedef void (*tl_timer_cb)(tl_timer *timer, void *arg);

/* A timer the caller embeds; fields are private. */
struct tl_timer {
    tl_loop *loop;
    int64_t due_ns;
    uint64_t seq;
    size_t heap_index; /* SIZE_MAX when not armed */
    tl_timer_cb cb;
    void *arg;
};

/* Prepares an embedded timer; it does nothing until started. */
void tl_timer_init(tl_loop *loop, tl_timer *timer);

/* Arms the timer to call cb(timer, arg) on the loop thread after delay_ms; re-arms if armed. */
int tl_timer_start(tl_timer *timer, int64_t delay_ms, tl_timer_cb cb, void *arg);

/* Disarms the timer; harmless when it is not armed. */
void tl_timer_stop(tl_timer *timer);

/* ---------------------------------------------------------------- tasks */

enum {
    TL_TASK_INLINE = 1u << 0, /* run on the loop thread: the function must never block */
};

/*
 * asyncio create_task / ensure_future: schedules fn(task, arg) on the worker pool.
 * Returns a task holding one reference for the caller (tl_task_release), or NULL on
 * allocation failure or a closed loop. A loop without workers runs it inline.
 */
tl_task *tl_task_create(tl_loop *loop, tl_task_fn fn, void *arg);

/* As tl_task_create, with TL_TASK_* flags. */
tl_task *tl_task_create_ex(tl_loop *loop, tl_task_fn fn, void *arg, unsigned flags);

/* A task with no function: a plain future, finished only by tl_task_complete(). */
tl_task *tl_future_create(tl_loop *loop);

/* Any thread: adds a reference; returns task. */
tl_task *tl_task_retain(tl_task *task);

/* Any thread: drops a reference; the task is freed with the last one. NULL is ignored. */
void tl_task_release(tl_task *task);

/*
 * Task.cancel(): a task not started is cancelled at once (its done-callbacks run soon);
 * a running one is asked to stop (tl_cancelled() turns true) and its result is
 * discarded when it returns. Returns 0, or TL_EDONE when it had already finished.
 */
int tl_task_cancel(tl_task *task);

/* Any thread: true once cancellation of this task was requested. */
bool tl_cancelled(const tl_task *task);

/* Any thread, from inside the task function: sets the result reported when it returns 0. */
void tl_task_set_result(tl_task *task, void *result);

/*
 * Any thread: finishes a task that returned TL_PENDING (or a future), with result and
 * err (0 or a negative code). Returns TL_EDONE, changing nothing, if it already finished.
 */
int tl_task_complete(tl_task *task, void *result, int err);

/* Any thread, from inside the task function: a short reason reported with its failure. */
void tl_task_set_error_text(tl_task *task, const char *text);

/* The failure reason set by the task function, or NULL. */
const char *tl_task_error_text(const tl_task *task);

/* Any thread: the task's state. */
tl_task_state tl_task_state_of(const tl_task *task);

/* True when the task is done or cancelled. */
bool tl_task_done(const tl_task *task);

/* The result of a task that is done without error; NULL otherwise. */
void *tl_task_result(const tl_task *task);

/* 0 for success, TL_ECANCELED if cancelled, the function's error, or TL_EAGAIN if not done. */
int tl_task_error(const tl_task *task);

/* Sequence number unique within the loop, from 1. */
uint64_t tl_task_id(const tl_task *task);

/* Gives the task a name shown by tl_loop_tasks(); the string is copied. */
int tl_task_set_name(tl_task *task, const char *name);

/* The task's name, or NULL. Valid while the caller holds the task. */
const char *tl_task_name(const tl_task *task);

/* Calls cb(task, arg) on the loop thread when the task finishes (at once-soon if it has). */
int tl_task_add_done_callback(tl_task *task, void (*cb)(tl_task *task, void *arg), void *arg);

/* ---------------------------------------------------------------- all_tasks */

typedef struct tl_task_info {
    tl_task *task; /* borrowed: valid until the loop runs again */
    uint64_t id;
    tl_task_state state;
    int64_t age_ms; /* since creation */
    const char *name;
} tl_task_info;

/*
 * asyncio all_tasks(): fills up to cap entries for the tasks not yet finished, oldest
 * first, and returns how many there are in all (which may exceed cap).
 */
size_t tl_loop_tasks(tl_loop *loop, tl_task_info *out, size_t cap);

/* ---------------------------------------------------------------- wait */

typedef enum tl_return_when {
    TL_ALL_COMPLETED = 0,
    TL_FIRST_COMPLETED,
    TL_FIRST_EXCEPTION, /* the first task that fails or is cancelled; else all */
} tl_return_when;

/* The outcome of a wait: both sets keep the input order. Borrowed task pointers. */
typedef struct tl_wait_result {
    tl_task **done;
    size_t ndone;
    tl_task **pending;
    size_t npending;
    bool timed_out;
} tl_wait_result;

/*
 * asyncio wait(): runs the loop until return_when holds or timeout_ms passes, then
 * splits tasks into done and pending. A timeout cancels nothing. The arrays in *res
 * are allocated by the call: free them with tl_wait_result_free(). TL_EBUSY if the
 * loop is already running (use tl_wait_async there).
 */
int tl_wait(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms, tl_return_when when,
            tl_wait_result *res);

/* Frees the arrays of a wait result (not the tasks). */
void tl_wait_result_free(tl_wait_result *res);

/* Callback form of tl_wait: cb gets a result valid during the call only. */
typedef void (*tl_wait_cb)(tl_loop *loop, const tl_wait_result *res, void *arg);
int tl_wait_async(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                  tl_return_when when, tl_wait_cb cb, void *arg);

/* ---------------------------------------------------------------- gather */

typedef struct tl_result {
    void *value;
    int error; /* 0, TL_ECANCELED or the task's error */
} tl_result;

/*
 * asyncio gather(): results[i] is tasks[i]'s outcome (input order is kept). With
 * return_exceptions, waits for all and returns 0. Without, returns the first error as
 * soon as a task fails, leaving the others running (results of unfinished tasks are
 * {NULL, TL_EAGAIN}). results must hold n entries.
 */
int tl_gather(tl_loop *loop, tl_task *const *tasks, size_t n, bool return_exceptions,
              tl_result *results);

/* Callback form of tl_gather: cb gets status and results valid during the call only. */
typedef void (*tl_gather_cb)(tl_loop *loop, int status, const tl_result *results, size_t n,
                             void *arg);
int tl_gather_async(tl_loop *loop, tl_task *const *tasks, size_t n, bool return_exceptions,
                    tl_gather_cb cb, void *arg);

/* ---------------------------------------------------------------- as_completed */

typedef struct tl_as_completed tl_as_completed;

/* asyncio as_completed(): an iterator over tasks in completion order; caller frees it. */
int tl_as_completed_new(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                        tl_as_completed **out);

/*
 * Runs the loop until the next task finishes and stores it in *task (borrowed).
 * Returns 0, TL_EOF when every task was yielded, or TL_ETIMEDOUT when the deadline
 * passed (the iteration is over; nothing is cancelled), or TL_ECLOSED after tl_loop_free.
 */
int tl_as_completed_next(tl_as_completed *it, tl_task **task);

/* Frees the iterator (not the tasks). */
void tl_as_completed_free(tl_as_completed *it);

/*
 * Callback form: cb(loop, task, 0, arg) per task as it finishes, then once
 * cb(loop, NULL, TL_EOF or TL_ETIMEDOUT, arg) — or TL_ECLOSED when the loop is freed
 * first. (The callback forms of wait and gather are dropped silently by tl_loop_free.)
 */
typedef void (*tl_as_completed_cb)(tl_loop *loop, tl_task *task, int status, void *arg);
int tl_as_completed_async(tl_loop *loop, tl_task *const *tasks, size_t n, int64_t timeout_ms,
                          tl_as_completed_cb cb, void *arg);

#ifdef __cplusplus
}
#endif

#endif
