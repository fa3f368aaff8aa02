/*
 * The worker pool, through the loop's public API alone: tasks run on as many threads
 * at once as tl_loop_workers reports; a loop without workers runs them inline; a task
 * that hangs holds its own worker and nothing else, also once the pool wakes few workers
 * for light tasks; tl_loop_add_worker and
 * tl_loop_retire_worker (taskloop/loop_ext.h) grow the pool and shrink it again once
 * the extra worker is free; worker hooks (tl_loop_new_ex) run once on each worker
 * thread as it starts and as it ends, added workers included.
 *
 * Assertions run on the test's main thread only; task functions record what they saw.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <taskloop/loop_ext.h>
#include <taskloop/taskloop.h>

#include "task_helpers.h"

#define MAXTASKS 32

/* What the task functions of one test saw. */
typedef struct probe {
    gate *g; /* NULL: functions return at once */
    pthread_t loop_thread;
    atomic_int active, max_active, runs, on_loop_thread;
} probe;

static int probe_fn(tl_task *task, void *arg)
{
    probe *p = arg;
    int now = atomic_fetch_add(&p->active, 1) + 1;
    int seen = atomic_load(&p->max_active);
    while (now > seen && !atomic_compare_exchange_weak(&p->max_active, &seen, now)) {
    }
    if (pthread_equal(pthread_self(), p->loop_thread))
        atomic_fetch_add(&p->on_loop_thread, 1);
    if (p->g)
        gate_pass(p->g, task);
    atomic_fetch_sub(&p->active, 1);
    atomic_fetch_add(&p->runs, 1);
    return 0;
}

static void probe_init(probe *p, gate *g)
{
    *p = (probe){.g = g, .loop_thread = pthread_self()};
}

static void create_n(tl_loop *loop, probe *p, tl_task **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = tl_task_create(loop, probe_fn, p);
        assert_non_null(out[i]);
    }
}

/* Runs the loop until every task finished (5 s at most) and checks that they did. */
static void wait_all(tl_loop *loop, tl_task **tasks, size_t n)
{
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, tasks, n, 5000, TL_ALL_COMPLETED, &res), 0);
    assert_false(res.timed_out);
    assert_int_equal(res.ndone, n);
    tl_wait_result_free(&res);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tl_task_error(tasks[i]), 0);
}

/* Runs the loop in short turns until the pool has n workers (5 s at most). */
static bool workers_become(tl_loop *loop, unsigned n)
{
    int64_t end = now_ms() + 5000;
    while (tl_loop_workers(loop) != n && now_ms() < end)
        tl_loop_run_once(loop, 1);
    return tl_loop_workers(loop) == n;
}

/* ------------------------------------------------------------ size */

static void the_pool_runs_as_many_tasks_at_once_as_tl_loop_workers_reports(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(3);
    unsigned workers = tl_loop_workers(loop);
    assert_int_equal(workers, 3);
    gate g;
    gate_init(&g);
    probe p;
    probe_init(&p, &g);
    tl_task *t[7];
    create_n(loop, &p, t, 7);
    /* Each worker holds one task at the gate: three at once, never a fourth. */
    assert_true(gate_wait_entered(loop, &g, 3));
    gate_open(&g);
    wait_all(loop, t, 7);
    assert_int_equal(atomic_load(&p.max_active), workers);
    assert_int_equal(atomic_load(&p.runs), 7);
    assert_int_equal(atomic_load(&p.on_loop_thread), 0);
    release_all(t, 7);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void a_loop_with_no_workers_runs_every_task_on_the_loop_thread_one_at_a_time(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    assert_int_equal(tl_loop_workers(loop), 0);
    probe p;
    probe_init(&p, NULL);
    tl_task *t[8];
    create_n(loop, &p, t, 8);
    wait_all(loop, t, 8);
    assert_int_equal(atomic_load(&p.runs), 8);
    assert_int_equal(atomic_load(&p.on_loop_thread), 8);
    assert_int_equal(atomic_load(&p.max_active), 1);
    release_all(t, 8);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ a hung task */

/* The hung task and the others are handed over together, in one go. */
static void a_hung_task_holds_only_its_own_worker(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    gate g;
    gate_init(&g);
    probe hung, quick;
    probe_init(&hung, &g);
    probe_init(&quick, NULL);
    tl_task *h = tl_task_create(loop, probe_fn, &hung);
    assert_non_null(h);
    tl_task *t[20];
    create_n(loop, &quick, t, 20);
    wait_all(loop, t, 20);
    assert_int_equal(atomic_load(&quick.runs), 20);
    assert_true(gate_wait_entered(loop, &g, 1));
    assert_int_equal(tl_task_state_of(h), TL_TASK_RUNNING);
    gate_open(&g);
    wait_all(loop, &h, 1);
    release_all(t, 20);
    tl_task_release(h);
    tl_loop_free(loop);
    gate_destroy(&g);
}

/* Light tasks wake no more workers than there are cores; when those block on hung
 * tasks, the loop wakes the rest for the tasks behind them (within a few ms, not when
 * the hung ones end). */
static void quick_tasks_behind_hung_ones_run_once_the_pool_measured_tasks_light(void **state)
{
    (void)state;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(ncpu > 0);
    unsigned workers = 2 * (unsigned)ncpu + 4; /* more than a light publish wakes */
    tl_loop *loop = new_loop(workers);
    probe quick, hung;
    probe_init(&quick, NULL);
    /* Many no-op tasks: the pool's sampled run time falls under its light bound. */
    enum { WARM = 4000, BATCH = 200 };
    tl_task *w[BATCH];
    for (int done = 0; done < WARM; done += BATCH) {
        create_n(loop, &quick, w, BATCH);
        wait_all(loop, w, BATCH);
        release_all(w, BATCH);
    }
    /* One hand-over: first more hung tasks than a light publish wakes workers (and a
     * spinning one), then quick ones. */
    gate g;
    gate_init(&g);
    probe_init(&hung, &g);
    size_t nhung = (size_t)ncpu + 2;
    tl_task *h[MAXTASKS * 4];
    assert_true(nhung <= MAXTASKS * 4);
    for (size_t i = 0; i < nhung; i++) {
        h[i] = tl_task_create(loop, probe_fn, &hung);
        assert_non_null(h[i]);
    }
    tl_task *t[MAXTASKS];
    create_n(loop, &quick, t, MAXTASKS);
    wait_all(loop, t, MAXTASKS); /* 5 s at most: the hung ones are held until after */
    assert_true(gate_wait_entered(loop, &g, (int)nhung));
    for (size_t i = 0; i < nhung; i++)
        assert_int_equal(tl_task_state_of(h[i]), TL_TASK_RUNNING);
    gate_open(&g);
    wait_all(loop, h, nhung);
    release_all(t, MAXTASKS);
    release_all(h, nhung);
    tl_loop_free(loop);
    gate_destroy(&g);
}

/* ------------------------------------------------------------ growing and shrinking */

static void an_added_worker_runs_tasks_while_every_other_worker_is_held(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    gate g;
    gate_init(&g);
    probe held, quick;
    probe_init(&held, &g);
    probe_init(&quick, NULL);
    tl_task *h = tl_task_create(loop, probe_fn, &held);
    assert_non_null(h);
    assert_true(gate_wait_entered(loop, &g, 1));
    assert_int_equal(tl_loop_add_worker(loop), 0);
    assert_int_equal(tl_loop_workers(loop), 2);
    tl_task *t[5];
    create_n(loop, &quick, t, 5);
    wait_all(loop, t, 5);
    assert_int_equal(atomic_load(&quick.on_loop_thread), 0);
    assert_int_equal(tl_task_state_of(h), TL_TASK_RUNNING);
    gate_open(&g);
    wait_all(loop, &h, 1);
    release_all(t, 5);
    tl_task_release(h);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void an_idle_pool_shrinks_back_to_its_size_after_a_retire(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    assert_int_equal(tl_loop_add_worker(loop), 0);
    assert_int_equal(tl_loop_workers(loop), 3);
    tl_loop_retire_worker(loop);
    assert_true(workers_become(loop, 2));
    /* The pool still works at its size. */
    probe p;
    probe_init(&p, NULL);
    tl_task *t[4];
    create_n(loop, &p, t, 4);
    wait_all(loop, t, 4);
    assert_int_equal(tl_loop_workers(loop), 2);
    release_all(t, 4);
    tl_loop_free(loop);
}

/* Both workers are held when the retire comes: neither leaves with its task unfinished;
 * one leaves once free, and the one left keeps taking tasks. */
static void a_retired_worker_leaves_only_once_it_is_free(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    assert_int_equal(tl_loop_add_worker(loop), 0);
    gate g;
    gate_init(&g);
    probe held;
    probe_init(&held, &g);
    tl_task *h[2];
    create_n(loop, &held, h, 2);
    assert_true(gate_wait_entered(loop, &g, 2));
    tl_loop_retire_worker(loop);
    tl_loop_run_once(loop, 10);
    assert_int_equal(tl_loop_workers(loop), 2); /* both still busy */
    gate_open(&g);
    wait_all(loop, h, 2);
    assert_int_equal(atomic_load(&held.runs), 2);
    assert_true(workers_become(loop, 1));
    probe later;
    probe_init(&later, NULL);
    tl_task *t[3];
    create_n(loop, &later, t, 3);
    wait_all(loop, t, 3);
    assert_int_equal(atomic_load(&later.on_loop_thread), 0);
    assert_int_equal(tl_loop_workers(loop), 1);
    release_all(h, 2);
    release_all(t, 3);
    tl_loop_free(loop);
    gate_destroy(&g);
}

/* ------------------------------------------------------------ worker hooks */

#define MAXTHREADS 16

/* The threads the hooks ran on; the hooks' user pointer. */
typedef struct hook_log {
    pthread_mutex_t mu;
    pthread_t started[MAXTHREADS], stopped[MAXTHREADS];
    int nstarted, nstopped;
    atomic_int tasks_outside; /* tasks that ran on a thread whose start hook had not run */
} hook_log;

/* Set by the start hook on its own thread, cleared by the stop hook. */
static _Thread_local bool hook_started;

static void hook_start(void *user)
{
    hook_log *h = user;
    hook_started = true;
    pthread_mutex_lock(&h->mu);
    if (h->nstarted < MAXTHREADS)
        h->started[h->nstarted] = pthread_self();
    h->nstarted++;
    pthread_mutex_unlock(&h->mu);
}

static void hook_stop(void *user)
{
    hook_log *h = user;
    pthread_mutex_lock(&h->mu);
    if (h->nstopped < MAXTHREADS && hook_started)
        h->stopped[h->nstopped] = pthread_self();
    h->nstopped++;
    pthread_mutex_unlock(&h->mu);
    hook_started = false;
}

static int hooked_fn(tl_task *task, void *arg)
{
    (void)task;
    hook_log *h = arg;
    if (!hook_started)
        atomic_fetch_add(&h->tasks_outside, 1);
    return 0;
}

static tl_loop *new_hooked_loop(unsigned workers, hook_log *h)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    tl_worker_hooks hooks = {.start = hook_start, .stop = hook_stop, .user = h};
    tl_loop_opts opts = {.workers = workers};
    tl_loop *loop = NULL;
    assert_int_equal(tl_loop_new_ex(&opts, &hooks, &loop), 0);
    return loop;
}

/* Every thread that started stopped, on itself, and none of them is the caller's. */
static void assert_hooks_paired(hook_log *h, int threads)
{
    assert_int_equal(h->nstarted, threads);
    assert_int_equal(h->nstopped, threads);
    for (int i = 0; i < threads; i++) {
        assert_false(pthread_equal(h->started[i], pthread_self()));
        int found = 0;
        for (int j = 0; j < threads; j++)
            found += pthread_equal(h->started[i], h->stopped[j]) != 0;
        assert_int_equal(found, 1);
    }
    pthread_mutex_destroy(&h->mu);
}

static void worker_hooks_run_once_on_each_worker_thread_around_its_tasks(void **state)
{
    (void)state;
    hook_log h;
    tl_loop *loop = new_hooked_loop(3, &h);
    tl_task *t[12];
    for (size_t i = 0; i < 12; i++) {
        t[i] = tl_task_create(loop, hooked_fn, &h);
        assert_non_null(t[i]);
    }
    wait_all(loop, t, 12);
    assert_int_equal(atomic_load(&h.tasks_outside), 0);
    release_all(t, 12);
    tl_loop_free(loop);
    assert_hooks_paired(&h, 3);
}

/* A worker added while the others are held, then retired: it starts and stops too. */
static void an_added_worker_runs_the_hooks_and_a_retired_one_stops_on_leaving(void **state)
{
    (void)state;
    hook_log h;
    tl_loop *loop = new_hooked_loop(1, &h);
    gate g;
    gate_init(&g);
    probe held;
    probe_init(&held, &g);
    tl_task *hold = tl_task_create(loop, probe_fn, &held);
    assert_non_null(hold);
    assert_true(gate_wait_entered(loop, &g, 1));
    assert_int_equal(tl_loop_add_worker(loop), 0);
    tl_task *t = tl_task_create(loop, hooked_fn, &h);
    assert_non_null(t);
    wait_all(loop, &t, 1);
    assert_int_equal(atomic_load(&h.tasks_outside), 0);
    tl_loop_retire_worker(loop);
    gate_open(&g);
    wait_all(loop, &hold, 1);
    assert_true(workers_become(loop, 1));
    /* The one that left stops on its way out (5 s at most); the other at the free. */
    int stopped = 0;
    for (int64_t end = now_ms() + 5000; stopped == 0 && now_ms() < end; sleep_ms(1)) {
        pthread_mutex_lock(&h.mu);
        stopped = h.nstopped;
        pthread_mutex_unlock(&h.mu);
    }
    assert_int_equal(stopped, 1);
    tl_task_release(t);
    tl_task_release(hold);
    tl_loop_free(loop);
    gate_destroy(&g);
    assert_hooks_paired(&h, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_pool_runs_as_many_tasks_at_once_as_tl_loop_workers_reports),
        cmocka_unit_test(a_loop_with_no_workers_runs_every_task_on_the_loop_thread_one_at_a_time),
        cmocka_unit_test(a_hung_task_holds_only_its_own_worker),
        cmocka_unit_test(quick_tasks_behind_hung_ones_run_once_the_pool_measured_tasks_light),
        cmocka_unit_test(an_added_worker_runs_tasks_while_every_other_worker_is_held),
        cmocka_unit_test(an_idle_pool_shrinks_back_to_its_size_after_a_retire),
        cmocka_unit_test(a_retired_worker_leaves_only_once_it_is_free),
        cmocka_unit_test(worker_hooks_run_once_on_each_worker_thread_around_its_tasks),
        cmocka_unit_test(an_added_worker_runs_the_hooks_and_a_retired_one_stops_on_leaving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
