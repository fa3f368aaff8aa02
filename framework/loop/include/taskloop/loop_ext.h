/*
 * taskloop loop extensions: what a runtime built on the loop needs beyond asyncio's
 * task functions. libtaskloop-service uses the loop through this header only; a plain
 * user of the loop never needs it.
 *
 *  - start time: a task created with TL_TASK_TIMED records when its function started,
 *    the clock a runtime measures a handler's timeout against;
 *  - completion link: a done-callback node the caller embeds (no allocation per task),
 *    linked into and unlinked from a task on the loop thread;
 *  - chaining: a held task (TL_TASK_HELD) runs right after its predecessor succeeds, on
 *    the predecessor's worker, with no round trip through the loop;
 *  - workers: one more worker while a task holds one for too long, and back again, and
 *    a callback on each worker thread as it starts and as it ends;
 *  - a poller: a callback the loop thread runs at every round and around its sleep, for
 *    completions that arrive by other means than the loop's own (memory shared with
 *    another process), taken on the loop thread with no wake-up while the loop is awake.
 *
 * Thread rules: as taskloop.h; "loop thread" functions are for the thread driving the loop.
 */
#ifndef TASKLOOP_LOOP_EXT_H
#define TASKLOOP_LOOP_EXT_H

#include <taskloop/list.h>
#include <taskloop/taskloop.h>

#ifdef __cplusplus
extern "C" {
#endif

/* tl_task_create_ex flag: record when the function starts (tl_task_started_ns). */
#define TL_TASK_TIMED (1u << 8)
/* tl_task_create_ex flag: created but neither queued nor submitted: it runs once chained
 * (tl_task_chain) and claimed after its predecessor, or once launched (tl_task_launch). */
#define TL_TASK_HELD (1u << 9)
/* tl_task_create_ex flag: may have a successor: its runner looks for one after a success. */
#define TL_TASK_CHAINED (1u << 10)

/* Any thread: the monotonic clock in nanoseconds (the loop's own). */
int64_t tl_clock_ns(void);

/* Loop thread: the loop's clock in nanoseconds, as cached at its last iteration. */
int64_t tl_loop_now_ns(const tl_loop *loop);

/* Loop thread: when the completions being finalized now were taken: each finished by then. */
int64_t tl_loop_drained_ns(const tl_loop *loop);

/* Any thread: when a TL_TASK_TIMED task's function started, or 0 before it starts. */
int64_t tl_task_started_ns(const tl_task *task);

/* Any thread: moves the start tl_task_started_ns reports to ns (0: not started yet),
 * for a task whose work waits in a queue of its own after its function returned
 * TL_PENDING, so that a timeout counts from when the work really starts. */
void tl_task_set_started_ns(tl_task *task, int64_t ns);

/* The function a task was created with (NULL for a future). */
tl_task_fn tl_task_fn_of(const tl_task *task);

/* The argument a task was created with. */
void *tl_task_arg(const tl_task *task);

/* ---------------------------------------------------------------- completion link */

typedef struct tl_cbnode tl_cbnode;
typedef void (*tl_cbnode_fn)(tl_task *task, tl_cbnode *node);

/* A done-callback the caller embeds; fields are the loop's while it is linked. */
struct tl_cbnode {
    tl_link link;
    tl_cbnode_fn fn;
    void *arg;
};

/* Loop thread: links node into an unfinished task: node->fn(task, node) runs once when
 * the task finishes, unless unlinked first. */
void tl_task_link_cb(tl_task *task, tl_cbnode *node);

/* Loop thread: unlinks a node that is still linked (its callback has not run). */
void tl_task_unlink_cb(tl_task *task, tl_cbnode *node);

/* ---------------------------------------------------------------- chaining */

/* Loop thread: makes held task next run right after prev succeeds, on prev's thread,
 * and takes over next's launch reference (dropped when it fails). False when prev
 * already finished and its runner looked for a successor. */
bool tl_task_chain(tl_task *prev, tl_task *next);

/* Loop thread: puts held task next in held task prev's successor slot, with next's
 * launch reference, before either is chained: a chain hung on at once. */
void tl_task_link_held(tl_task *prev, tl_task *next);

/* Any thread: true when prev's successor slot is claimed, so chaining to it fails. */
bool tl_task_chain_closed(tl_task *prev);

/* Loop thread: claims prev's successor; the held task (with the slot's reference,
 * which the caller now owns) or NULL when prev's runner took it or there is none. */
tl_task *tl_task_unchain(tl_task *prev);

/* Loop thread: queues or submits a held task; takes over one reference. */
void tl_task_launch(tl_task *task);

/* ---------------------------------------------------------------- workers */

/*
 * Called on each worker thread of a loop: start before the thread runs its first task,
 * stop after its last, just before the thread ends (at tl_loop_free, or when an added
 * worker leaves). Workers added by tl_loop_add_worker get both too, so over a loop's
 * life start and stop run the same number of times, once per thread started.
 */
typedef struct tl_worker_hooks {
    void (*start)(void *user); /* NULL: nothing */
    void (*stop)(void *user);  /* NULL: nothing */
    void *user;
} tl_worker_hooks;

/* As tl_loop_new, with hooks (copied; NULL: none) run on every worker thread. */
int tl_loop_new_ex(const tl_loop_opts *opts, const tl_worker_hooks *hooks, tl_loop **out);

/* Loop thread: starts one worker beyond the pool's size (a task holds one too long).
 * 0, or TL_ENOMEM / TL_ESYS. */
int tl_loop_add_worker(tl_loop *loop);

/* Loop thread: lets one added worker leave once it is free. */
void tl_loop_retire_worker(tl_loop *loop);

/* What a poller is asked (tl_loop_set_poller). */
typedef enum tl_poll_phase {
    TL_POLL_LOOK,  /* take what arrived; true: something did */
    TL_POLL_SLEEP, /* the loop is about to sleep: from now on, whoever brings the next
                    * arrival must wake it (by completing a task or a thread-safe call);
                    * true: something arrived already, the loop does not sleep */
    TL_POLL_WOKEN  /* the loop is awake again (after SLEEP, whatever it returned) */
} tl_poll_phase;

typedef bool (*tl_poller_fn)(tl_loop *loop, tl_poll_phase phase, void *user);

/* Loop thread, between runs: has the loop call poller on its own thread with LOOK at
 * every round and while it looks for work before sleeping, then SLEEP and WOKEN around
 * each sleep (one poller a loop; NULL removes it). fd, unless -1: an eventfd the sleep
 * waits on too, which the poller's sources may write to wake the loop (it reads the
 * count as it wakes); the caller keeps it open while the poller is set. */
void tl_loop_set_poller(tl_loop *loop, tl_poller_fn poller, void *user, int fd);

#ifdef __cplusplus
}
#endif

#endif
