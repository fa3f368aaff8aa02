/*
 * Tasks: a future plus the function that completes it.
 *
 * Life of a task: PENDING -> RUNNING (a worker or the loop started its function) ->
 * finished (DONE or CANCELLED). "Finished" is claimed once, by an atomic exchange on
 * task->finished, by whoever completes it first (its function returning, a
 * tl_task_complete from any thread, or a cancel before it started); the claimer
 * pushes the task onto the loop's completion stack and the loop thread finalizes it:
 * sets the visible state, runs the done-callbacks, drops the loop's reference.
 *
 * References: the caller's (from create), the loop's (until finalized), the pool
 * chunk's (until a worker ran the task) and, for a held task chained behind another,
 * its predecessor's next_run slot's (until claimed). A runner that completes the task
 * it ran hands the chunk's or the slot's reference to the loop with the completion
 * (pass_ref), and the loop drops both at once. The loop's memory stays until the
 * last task referring to it is gone, so a task outliving tl_loop_free stays safe to
 * read; freed tasks go to the loop's recycler, which the loop's last unref frees.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Every pending task is one of these: a 136-byte struct takes a 144-byte malloc chunk
 * (glibc rounds a request n up to (n + 8 + 15) & ~15), 8 bytes more would take 160. */
_Static_assert(sizeof(tl_task) <= 136 || sizeof(void *) != 8,
               "tl_task outgrew the 144-byte malloc chunk");

/* refs: the caller's and the loop's, plus one for a task about to be launched or
 * chained (the pool chunk's, the ready queue's or the slot's). */
static tl_task *task_new(tl_loop *loop, tl_task_fn fn, void *arg, unsigned flags, int refs)
{
    if (!loop || loop->closed)
        return NULL;
    tl_task *t = tl_recycler_get(loop->task_blocks);
    if (!t)
        return NULL;
    atomic_init(&t->refs, refs);
    atomic_init(&t->state, TL_TASK_PENDING);
    atomic_init(&t->cancel_req, false);
    atomic_init(&t->finished, false);
    t->pass_ref = false;
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->flags = flags;
    t->result = NULL;
    t->fn_result = NULL;
    t->err = 0;
    t->id = ++loop->next_id;
    t->created_ms = loop->now_ns / 1000000;
    atomic_init(&t->started_ns, 0);
    atomic_init(&t->next_run, NULL);
    atomic_init(&t->extra, NULL);
    t->next = t->done_next = NULL;
    t->callbacks = NULL;
    tl_list_push_back(&loop->all, &t->all);
    if (!(flags & TL_TASK_INLINE))
        loop->nelsewhere++;
    tl__loop_ref(loop);
    return t;
}

/* Inline tasks, and every task of a loop without workers, run on the loop thread. */
static bool runs_on_loop(const tl_loop *loop, unsigned flags)
{
    return (flags & TL_TASK_INLINE) || loop->pool.nominal == 0;
}

/* Queues a task for the loop thread; the ready queue holds no reference of its own. */
static void ready_push(tl_loop *loop, tl_task *t)
{
    if (loop->ready_tail)
        loop->ready_tail->next = t;
    else
        loop->ready_head = t;
    loop->ready_tail = t;
}

tl_task *tl_task_create_ex(tl_loop *loop, tl_task_fn fn, void *arg, unsigned flags)
{
    if (!fn)
        return NULL;
    bool on_loop = !(flags & TL_TASK_HELD) && runs_on_loop(loop, flags);
    tl_task *t = task_new(loop, fn, arg, flags, on_loop ? 2 : 3);
    if (!t)
        return NULL;
    if (on_loop)
        ready_push(loop, t);
    else if (!(flags & TL_TASK_HELD))
        tl_task_launch(t);
    /* A held task's third reference goes with it when it is chained or launched. */
    return t;
}

void tl_task_launch(tl_task *t)
{
    tl_loop *loop = t->loop;
    if (runs_on_loop(loop, t->flags)) {
        tl_task_release(t); /* the loop's own reference keeps it alive */
        ready_push(loop, t);
        return;
    }
    if (tl__pool_submit(&loop->pool, t) != 0) { /* the reference was to be the chunk's */
        tl_task_release(t);
        tl_task_cancel(t);
    }
}

bool tl_task_chain(tl_task *prev, tl_task *next)
{
    tl_task *expect = NULL;
    if (atomic_compare_exchange_strong(&prev->next_run, &expect, next))
        return true;
    tl_task_release(next); /* the reference the slot would have kept */
    return false;
}

void tl_task_link_held(tl_task *prev, tl_task *next)
{
    /* Neither is launched or chained yet, so no other thread reads prev's slot. */
    atomic_store_explicit(&prev->next_run, next, memory_order_relaxed);
}

bool tl_task_chain_closed(tl_task *prev)
{
    return atomic_load_explicit(&prev->next_run, memory_order_relaxed) == TL__CHAIN_TAKEN;
}

tl_task *tl_task_unchain(tl_task *prev)
{
    /* Taken is final: seen once, the slot needs no exchange (a runner that went on
     * past prev leaves it so before the loop settles prev). */
    if (atomic_load_explicit(&prev->next_run, memory_order_relaxed) == TL__CHAIN_TAKEN)
        return NULL;
    tl_task *s = atomic_exchange(&prev->next_run, TL__CHAIN_TAKEN);
    return s == TL__CHAIN_TAKEN ? NULL : s;
}

tl_task *tl_task_create(tl_loop *loop, tl_task_fn fn, void *arg)
{
    return tl_task_create_ex(loop, fn, arg, 0);
}

tl_task *tl_future_create(tl_loop *loop)
{
    return task_new(loop, NULL, NULL, 0, 2);
}

tl_task *tl_task_retain(tl_task *task)
{
    atomic_fetch_add_explicit(&task->refs, 1, memory_order_relaxed);
    return task;
}

void tl__task_free(tl_task *task)
{
    tl_loop *loop = task->loop;
    tl_task *succ = atomic_load(&task->next_run);
    if (succ && succ != TL__CHAIN_TAKEN)
        tl_task_release(succ); /* a successor nobody claimed (the loop was freed) */
    tl_task_extra *x = atomic_load_explicit(&task->extra, memory_order_acquire);
    if (x) {
        free(x->error_text);
        free(x->name);
        free(x);
    }
    /* Given back before the unref: the loop's last unref frees what was given back. */
    if (tl__on_runner(loop)) {
        tl_recycler_put_owned(loop->task_blocks, task);
        tl__loop_unref_on_runner(loop);
    } else {
        tl_recycler_put(loop->task_blocks, task);
        tl__loop_unref(loop);
    }
}

void tl_task_release(tl_task *task)
{
    if (task && atomic_fetch_sub_explicit(&task->refs, 1, memory_order_acq_rel) == 1)
        tl__task_free(task);
}

/* Claims the finish and hands the task to its loop; TL_EDONE if already claimed. */
static int finish(tl_task *task, void *result, int err)
{
    if (atomic_exchange(&task->finished, true))
        return TL_EDONE;
    task->result = result;
    task->err = err;
    tl__loop_push_completed(task->loop, task);
    return 0;
}

/*
 * Runs one task. True when this call completed it: then the task belongs to the loop
 * (with the caller's reference when owned) and is not touched again; *next is its
 * successor when it succeeded, claimed before the completion is published, while the
 * task is still certainly alive.
 */
static bool run_one(tl_task *task, bool owned, tl_task **next)
{
    unsigned char expect = TL_TASK_PENDING;
    if (!atomic_compare_exchange_strong(&task->state, &expect, TL_TASK_RUNNING))
        return false; /* cancelled before it started */
    /* Completed from outside before it started (tl_task_complete): nothing to run. */
    if (atomic_load(&task->finished))
        return false;
    if (task->flags & TL_TASK_TIMED)
        atomic_store_explicit(&task->started_ns, tl_clock_ns(), memory_order_relaxed);
    int rc = task->fn(task, task->arg);
    if (rc == TL_PENDING || atomic_exchange(&task->finished, true))
        return false; /* pending, or completed meanwhile from outside */
    task->result = rc == 0 ? task->fn_result : NULL;
    task->err = rc > 0 ? TL_EFAIL : rc;
    if (rc == 0 && !atomic_load(&task->cancel_req) && (task->flags & TL_TASK_CHAINED))
        *next = tl_task_unchain(task);
    task->pass_ref = owned;
    tl__loop_push_completed(task->loop, task);
    return true;
}

void tl__task_run(tl_task *task, bool owned)
{
    /* Successors come with their slot's reference. */
    while (task) {
        tl_task *next = NULL;
        if (!run_one(task, owned, &next) && owned)
            tl_task_release(task);
        task = next;
        owned = true;
    }
}

int tl_task_complete(tl_task *task, void *result, int err)
{
    if (!task)
        return TL_EINVAL;
    if (atomic_load(&task->finished))
        return TL_EDONE;
    if (err > 0)
        err = TL_EFAIL;
    return finish(task, result, err);
}

int tl_task_cancel(tl_task *task)
{
    if (!task)
        return TL_EINVAL;
    if (atomic_load(&task->finished))
        return TL_EDONE;
    unsigned char expect = TL_TASK_PENDING;
    if (atomic_compare_exchange_strong(&task->state, &expect, TL_TASK_CANCELLED)) {
        finish(task, NULL, TL_ECANCELED);
        return 0;
    }
    if (expect == TL_TASK_RUNNING) {
        atomic_store(&task->cancel_req, true);
        return 0;
    }
    return TL_EDONE;
}

bool tl_cancelled(const tl_task *task)
{
    return atomic_load(&task->cancel_req) || atomic_load(&task->state) == TL_TASK_CANCELLED;
}

void tl_task_set_result(tl_task *task, void *result)
{
    task->fn_result = result;
}

/* The task's extra fields, allocated and installed by the first caller; NULL when out
 * of memory. The loop thread may set a name while a worker sets the error text, so
 * the install is a compare-and-swap: the loser frees its own and takes the winner's. */
static tl_task_extra *extra_of(tl_task *task)
{
    tl_task_extra *x = atomic_load_explicit(&task->extra, memory_order_acquire);
    if (x)
        return x;
    tl_task_extra *mine = calloc(1, sizeof(*mine));
    if (!mine)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(&task->extra, &x, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    free(mine);
    return x;
}

/* The task's extra fields, or NULL when none was ever set. */
static const tl_task_extra *extra_peek(const tl_task *task)
{
    return atomic_load_explicit(&task->extra, memory_order_acquire);
}

void tl_task_set_error_text(tl_task *task, const char *text)
{
    if (!text && !extra_peek(task))
        return;
    tl_task_extra *x = extra_of(task);
    if (!x)
        return;
    char *copy = text ? strdup(text) : NULL;
    free(x->error_text);
    x->error_text = copy;
}

const char *tl_task_error_text(const tl_task *task)
{
    const tl_task_extra *x = extra_peek(task);
    return x ? x->error_text : NULL;
}

tl_task_state tl_task_state_of(const tl_task *task)
{
    return (tl_task_state)atomic_load(&task->state);
}

const char *tl_task_state_name(tl_task_state state)
{
    switch (state) {
    case TL_TASK_PENDING:
        return "pending";
    case TL_TASK_RUNNING:
        return "running";
    case TL_TASK_DONE:
        return "done";
    case TL_TASK_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

bool tl_task_done(const tl_task *task)
{
    int s = atomic_load(&task->state);
    return s == TL_TASK_DONE || s == TL_TASK_CANCELLED;
}

void *tl_task_result(const tl_task *task)
{
    return atomic_load(&task->state) == TL_TASK_DONE && task->err == 0 ? task->result : NULL;
}

int tl_task_error(const tl_task *task)
{
    int s = atomic_load(&task->state);
    if (s == TL_TASK_CANCELLED)
        return TL_ECANCELED;
    if (s != TL_TASK_DONE)
        return TL_EAGAIN;
    return task->err;
}

uint64_t tl_task_id(const tl_task *task)
{
    return task->id;
}

int tl_task_set_name(tl_task *task, const char *name)
{
    if (!name && !extra_peek(task))
        return 0;
    tl_task_extra *x = extra_of(task);
    char *copy = name ? strdup(name) : NULL;
    if (!x || (name && !copy)) {
        free(copy);
        return TL_ENOMEM;
    }
    free(x->name);
    x->name = copy;
    return 0;
}

const char *tl_task_name(const tl_task *task)
{
    const tl_task_extra *x = extra_peek(task);
    return x ? x->name : NULL;
}

int64_t tl_task_started_ns(const tl_task *task)
{
    return atomic_load_explicit(&task->started_ns, memory_order_relaxed);
}

void tl_task_set_started_ns(tl_task *task, int64_t ns)
{
    atomic_store_explicit(&task->started_ns, ns, memory_order_relaxed);
}

tl_task_fn tl_task_fn_of(const tl_task *task)
{
    return task->fn;
}

void *tl_task_arg(const tl_task *task)
{
    return task->arg;
}

/* ---------------------------------------------------------------- loop side */

/*
 * A task's callback list keeps only its first link, to keep the task small: the first
 * link's prev points to the last one (so adding at the end stays O(1)), the last
 * link's next is NULL, and every other prev points to the link before it.
 */
void tl_task_link_cb(tl_task *task, tl_cbnode *node)
{
    tl_link *n = &node->link, *first = task->callbacks;
    n->next = NULL;
    if (!first) {
        n->prev = n;
        task->callbacks = n;
        return;
    }
    n->prev = first->prev;
    first->prev->next = n;
    first->prev = n;
}

void tl_task_unlink_cb(tl_task *task, tl_cbnode *node)
{
    tl_link *n = &node->link, *first = task->callbacks;
    if (n == first) {
        task->callbacks = n->next;
        if (n->next)
            n->next->prev = n->prev;
    } else {
        n->prev->next = n->next;
        (n->next ? n->next : first)->prev = n->prev;
    }
    n->prev = n->next = NULL;
}

void tl__task_finalize(tl_task *task)
{
    tl_loop *loop = task->loop;
    /* Cancellation asked while it ran wins over its result: the result is discarded. */
    if (atomic_load(&task->state) == TL_TASK_CANCELLED || atomic_load(&task->cancel_req)) {
        task->result = NULL;
        task->err = TL_ECANCELED;
        atomic_store_explicit(&task->state, TL_TASK_CANCELLED, memory_order_release);
    } else {
        /* Release publishes result and err to readers of the state on other threads. */
        atomic_store_explicit(&task->state, TL_TASK_DONE, memory_order_release);
    }
    tl_list_remove(&loop->all, &task->all);
    if (!(task->flags & TL_TASK_INLINE))
        loop->nelsewhere--;
    /* One node at a time from the live list: a callback may free another waiter,
     * which unlinks that waiter's node from this very list. */
    for (tl_link *l; (l = task->callbacks);) {
        tl_cbnode *n = tl_list_item(l, tl_cbnode, link);
        tl_task_unlink_cb(task, n);
        n->fn(task, n);
    }
    /* The loop's reference, and the runner's when it passed it with the completion. */
    int n = task->pass_ref ? 2 : 1;
    if (atomic_fetch_sub_explicit(&task->refs, n, memory_order_acq_rel) == n)
        tl__task_free(task);
}

/* ---------------------------------------------------------------- user callbacks */

typedef struct user_cb {
    tl_cbnode node; /* first: the node is the allocation */
    void (*cb)(tl_task *task, void *arg);
    void *arg;
    tl_task *task;
} user_cb;

static void user_cb_fire(tl_task *task, tl_cbnode *node)
{
    user_cb *u = (user_cb *)node;
    u->cb(task, u->arg);
    free(u);
}

static void user_cb_soon(tl_loop *loop, void *arg)
{
    (void)loop;
    user_cb *u = arg;
    u->cb(u->task, u->arg);
    tl_task_release(u->task);
    free(u);
}

int tl_task_add_done_callback(tl_task *task, void (*cb)(tl_task *task, void *arg), void *arg)
{
    if (!task || !cb)
        return TL_EINVAL;
    if (task->loop->closed)
        return TL_ECLOSED;
    user_cb *u = malloc(sizeof(*u));
    if (!u)
        return TL_ENOMEM;
    u->cb = cb;
    u->arg = arg;
    u->node.fn = user_cb_fire;
    u->task = task;
    if (!tl_task_done(task)) {
        tl_task_link_cb(task, &u->node);
        return 0;
    }
    tl_task_retain(task);
    int rc = tl_loop_call_threadsafe(task->loop, user_cb_soon, u);
    if (rc) {
        tl_task_release(task);
        free(u);
    }
    return rc;
}

/* ---------------------------------------------------------------- all_tasks */

size_t tl_loop_tasks(tl_loop *loop, tl_task_info *out, size_t cap)
{
    int64_t now = tl_clock_ns() / 1000000;
    size_t n = 0;
    for (tl_link *l = loop->all.head; l; l = l->next) {
        tl_task *t = tl_list_item(l, tl_task, all);
        int state = atomic_load(&t->state);
        /* Cancelled before it started: done at once, though not yet finalized. */
        if (state == TL_TASK_CANCELLED || state == TL_TASK_DONE)
            continue;
        if (n < cap) {
            out[n].task = t;
            out[n].id = t->id;
            out[n].state = (tl_task_state)state;
            out[n].age_ms = now - t->created_ms;
            out[n].name = tl_task_name(t);
        }
        n++;
    }
    return n;
}
