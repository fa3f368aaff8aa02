/*
 * Tasks: create, results and errors, cancel in each state, completion from other
 * threads, done-callbacks, references, and tasks that outlive their loop.
 *
 * Assertions run on the test's main thread only: cmocka's failure path is not
 * thread safe, so helper threads record what they saw and the main thread checks.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <taskloop/loop_ext.h>
#include <taskloop/taskloop.h>

#include "task_helpers.h"

/* Runs the loop until every task is done; fails the test after 5 s. */
static void wait_all(tl_loop *loop, tl_task **tasks, size_t n)
{
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, tasks, n, 5000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, n);
    tl_wait_result_free(&res);
}

/* ------------------------------------------------------------ create and results */

static void task_create_runs_function_and_keeps_its_result(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {.value = 42};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    assert_non_null(t);
    wait_all(loop, &t, 1);
    assert_int_equal(tl_task_state_of(t), TL_TASK_DONE);
    assert_true(tl_task_done(t));
    assert_int_equal(tl_task_error(t), 0);
    assert_int_equal((intptr_t)tl_task_result(t), 42);
    assert_int_equal(atomic_load(&j.runs), 1);
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_ids_are_unique_and_count_from_one(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {0};
    tl_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = tl_task_create(loop, job_fn, &j);
    assert_int_equal(tl_task_id(t[0]), 1);
    assert_int_equal(tl_task_id(t[1]), 2);
    assert_int_equal(tl_task_id(t[2]), 3);
    wait_all(loop, t, 3);
    for (int i = 0; i < 3; i++)
        tl_task_release(t[i]);
    tl_loop_free(loop);
}

static void task_failure_reports_error_and_text_without_result(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {.value = 7, .err = TL_EFAIL};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    wait_all(loop, &t, 1);
    assert_int_equal(tl_task_state_of(t), TL_TASK_DONE);
    assert_int_equal(tl_task_error(t), TL_EFAIL);
    assert_null(tl_task_result(t));
    assert_non_null(tl_task_error_text(t));
    assert_string_equal(tl_task_error_text(t), "job failed on purpose");
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_not_done_reports_eagain_and_no_result(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_non_null(f);
    assert_false(tl_task_done(f));
    assert_int_equal(tl_task_state_of(f), TL_TASK_PENDING);
    assert_int_equal(tl_task_error(f), TL_EAGAIN);
    assert_null(tl_task_result(f));
    assert_int_equal(tl_task_complete(f, NULL, 0), 0);
    tl_task_release(f);
    tl_loop_free(loop);
}

typedef struct thread_probe {
    pthread_t self;
    atomic_bool ran;
} thread_probe;

static int record_thread_fn(tl_task *task, void *arg)
{
    (void)task;
    thread_probe *p = arg;
    p->self = pthread_self();
    atomic_store(&p->ran, true);
    return 0;
}

static void task_inline_runs_on_the_loop_thread(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    thread_probe p = {0};
    tl_task *t = tl_task_create_ex(loop, record_thread_fn, &p, TL_TASK_INLINE);
    assert_non_null(t);
    wait_all(loop, &t, 1);
    assert_true(atomic_load(&p.ran));
    assert_true(pthread_equal(p.self, pthread_self()));
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_on_loop_without_workers_runs_inline(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    thread_probe p = {0};
    tl_task *t = tl_task_create(loop, record_thread_fn, &p);
    assert_non_null(t);
    wait_all(loop, &t, 1);
    assert_true(pthread_equal(p.self, pthread_self()));
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_on_pool_runs_off_the_loop_thread(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    thread_probe p = {0};
    tl_task *t = tl_task_create(loop, record_thread_fn, &p);
    wait_all(loop, &t, 1);
    assert_false(pthread_equal(p.self, pthread_self()));
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_name_is_copied(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_null(tl_task_name(f));
    char name[16];
    strcpy(name, "order-17");
    assert_int_equal(tl_task_set_name(f, name), 0);
    strcpy(name, "changed");
    assert_string_equal(tl_task_name(f), "order-17");
    tl_task_complete(f, NULL, 0);
    tl_task_release(f);
    tl_loop_free(loop);
}

/* A function that sets its error text as soon as the test says go. */
typedef struct texter {
    atomic_bool go;
} texter;

static int texter_fn(tl_task *task, void *arg)
{
    texter *x = arg;
    while (!atomic_load(&x->go))
        ;
    tl_task_set_error_text(task, "from the worker");
    return TL_EFAIL;
}

static void task_name_and_error_text_set_at_once_from_two_threads_are_both_kept(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    for (int round = 0; round < 200; round++) {
        texter x = {.go = false};
        tl_task *t = tl_task_create(loop, texter_fn, &x);
        tl_loop_run_once(loop, 0); /* hands the task to the worker, which spins */
        atomic_store(&x.go, true);
        assert_int_equal(tl_task_set_name(t, "from the loop"), 0);
        wait_all(loop, &t, 1);
        assert_string_equal(tl_task_name(t), "from the loop");
        assert_string_equal(tl_task_error_text(t), "from the worker");
        tl_task_release(t);
    }
    tl_loop_free(loop);
}

static void task_name_and_error_text_can_be_cleared(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_int_equal(tl_task_set_name(f, NULL), 0);
    tl_task_set_error_text(f, NULL);
    assert_null(tl_task_name(f));
    assert_null(tl_task_error_text(f));
    assert_int_equal(tl_task_set_name(f, "a"), 0);
    tl_task_set_error_text(f, "b");
    assert_int_equal(tl_task_set_name(f, NULL), 0);
    assert_null(tl_task_name(f));
    assert_string_equal(tl_task_error_text(f), "b");
    tl_task_set_error_text(f, NULL);
    assert_null(tl_task_error_text(f));
    tl_task_complete(f, NULL, 0);
    tl_task_release(f);
    tl_loop_free(loop);
}

/* A linked node that records its place in the order of firing. */
typedef struct order_node {
    tl_cbnode node; /* first: the node is the record */
    int id;
    int *fired;
    int *nfired;
} order_node;

static void order_fire(tl_task *task, tl_cbnode *node)
{
    (void)task;
    order_node *o = (order_node *)node;
    o->fired[(*o->nfired)++] = o->id;
}

static void task_done_nodes_left_after_unlinks_fire_in_adding_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    int fired[8], nfired = 0;
    order_node n[7];
    for (int i = 0; i < 7; i++)
        n[i] = (order_node){.node.fn = order_fire, .id = i, .fired = fired, .nfired = &nfired};
    tl_task_link_cb(f, &n[0].node);
    tl_task_unlink_cb(f, &n[0].node); /* the only one: the list is empty again */
    for (int i = 1; i <= 5; i++)
        tl_task_link_cb(f, &n[i].node);
    tl_task_unlink_cb(f, &n[1].node); /* first */
    tl_task_unlink_cb(f, &n[3].node); /* middle */
    tl_task_unlink_cb(f, &n[5].node); /* last */
    tl_task_link_cb(f, &n[6].node);
    tl_task_complete(f, NULL, 0);
    wait_all(loop, &f, 1);
    assert_int_equal(nfired, 3);
    assert_int_equal(fired[0], 2);
    assert_int_equal(fired[1], 4);
    assert_int_equal(fired[2], 6);
    tl_task_release(f);
    tl_loop_free(loop);
}

static void task_retained_reference_outlives_the_first_release(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_ptr_equal(tl_task_retain(f), f);
    tl_task_release(f);
    /* Still ours through the second reference; ASan would flag a use after free. */
    assert_int_equal(tl_task_complete(f, (void *)5, 0), 0);
    wait_all(loop, &f, 1);
    assert_int_equal((intptr_t)tl_task_result(f), 5);
    tl_task_release(f);
    tl_task_release(NULL);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ cancel */

static void task_cancel_before_start_cancels_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    gate g;
    gate_init(&g);
    job busy = {.g = &g};
    job queued = {.value = 1};
    tl_task *a = tl_task_create(loop, job_fn, &busy);
    assert_true(gate_wait_entered(loop, &g, 1)); /* the only worker is now held */
    tl_task *b = tl_task_create(loop, job_fn, &queued);
    assert_int_equal(tl_task_state_of(b), TL_TASK_PENDING);

    assert_int_equal(tl_task_cancel(b), 0);
    assert_int_equal(tl_task_state_of(b), TL_TASK_CANCELLED);
    assert_true(tl_task_done(b));
    assert_true(tl_cancelled(b));
    assert_int_equal(tl_task_error(b), TL_ECANCELED);

    gate_open(&g);
    tl_task *both[] = {a, b};
    wait_all(loop, both, 2);
    assert_int_equal(atomic_load(&queued.runs), 0);
    tl_task_release(a);
    tl_task_release(b);
    gate_destroy(&g);
    tl_loop_free(loop);
}

static void task_cancel_while_running_is_seen_by_the_function(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    gate g;
    gate_init(&g);
    job j = {.g = &g, .value = 9};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    assert_true(gate_wait_entered(loop, &g, 1));
    assert_int_equal(tl_task_state_of(t), TL_TASK_RUNNING);
    assert_false(tl_cancelled(t));

    assert_int_equal(tl_task_cancel(t), 0);
    assert_true(tl_cancelled(t));
    wait_all(loop, &t, 1);
    assert_true(atomic_load(&j.saw_cancel));
    assert_int_equal(tl_task_state_of(t), TL_TASK_CANCELLED);
    assert_int_equal(tl_task_error(t), TL_ECANCELED);
    /* The function set a result on its way out; a cancelled task discards it. */
    assert_null(tl_task_result(t));
    tl_task_release(t);
    gate_destroy(&g);
    tl_loop_free(loop);
}

static void task_cancel_after_done_returns_edone_and_changes_nothing(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    job j = {.value = 3};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    wait_all(loop, &t, 1);
    assert_int_equal(tl_task_cancel(t), TL_EDONE);
    assert_int_equal(tl_task_state_of(t), TL_TASK_DONE);
    assert_false(tl_cancelled(t));
    assert_int_equal((intptr_t)tl_task_result(t), 3);
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_cancel_twice_returns_edone_the_second_time(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_int_equal(tl_task_cancel(f), 0);
    assert_int_equal(tl_task_cancel(f), TL_EDONE);
    assert_int_equal(tl_task_state_of(f), TL_TASK_CANCELLED);
    tl_task_release(f);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ complete */

static int pending_fn(tl_task *task, void *arg)
{
    (void)task;
    atomic_fetch_add((atomic_int *)arg, 1);
    return TL_PENDING;
}

static void task_returning_pending_stays_running_until_completed(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    atomic_int started = 0;
    tl_task *t = tl_task_create(loop, pending_fn, &started);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, &t, 1, 20, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.npending, 1);
    tl_wait_result_free(&res);
    assert_int_equal(atomic_load(&started), 1);
    assert_int_equal(tl_task_state_of(t), TL_TASK_RUNNING);

    assert_int_equal(tl_task_complete(t, (void *)11, 0), 0);
    wait_all(loop, &t, 1);
    assert_int_equal(tl_task_state_of(t), TL_TASK_DONE);
    assert_int_equal((intptr_t)tl_task_result(t), 11);
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_completed_twice_keeps_the_first_outcome(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    assert_int_equal(tl_task_complete(f, (void *)1, 0), 0);
    assert_int_equal(tl_task_complete(f, (void *)2, TL_EFAIL), TL_EDONE);
    wait_all(loop, &f, 1);
    assert_int_equal(tl_task_state_of(f), TL_TASK_DONE);
    assert_int_equal(tl_task_error(f), 0);
    assert_int_equal((intptr_t)tl_task_result(f), 1);
    tl_task_release(f);
    tl_loop_free(loop);
}

static void future_completed_with_error_reports_it(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    tl_task *f = tl_future_create(loop);
    assert_int_equal(tl_task_complete(f, (void *)1, TL_EIO), 0);
    wait_all(loop, &f, 1);
    assert_int_equal(tl_task_error(f), TL_EIO);
    assert_null(tl_task_result(f));
    tl_task_release(f);
    tl_loop_free(loop);
}

enum { COMPLETERS = 8, PER_COMPLETER = 1000, RACED = 2000 };

typedef struct completer {
    pthread_t thread;
    tl_task **tasks;
    size_t first, count;
    atomic_int *started;
    int need_started;
    atomic_int *go;
    int ok, refused;
} completer;

static void *complete_slice(void *arg)
{
    completer *c = arg;
    /* Start together so the completions really overlap. */
    while (atomic_load(c->started) < c->need_started || !atomic_load(c->go))
        sched_yield();
    for (size_t i = c->first; i < c->first + c->count; i++) {
        int rc = tl_task_complete(c->tasks[i], (void *)(i + 1), 0);
        if (rc == 0)
            c->ok++;
        else if (rc == TL_EDONE)
            c->refused++;
    }
    return NULL;
}

static void start_completers(completer *c, tl_task **tasks, atomic_int *started, int need,
                             atomic_int *go, bool disjoint)
{
    for (int i = 0; i < COMPLETERS; i++) {
        c[i] = (completer){.tasks = tasks, .started = started, .need_started = need, .go = go};
        c[i].first = disjoint ? (size_t)i * PER_COMPLETER : 0;
        c[i].count = disjoint ? PER_COMPLETER : RACED;
        pthread_create(&c[i].thread, NULL, complete_slice, &c[i]);
    }
}

static void task_pending_ones_completed_by_eight_threads_all_finish(void **state)
{
    (void)state;
    enum { N = COMPLETERS * PER_COMPLETER };
    tl_loop *loop = new_loop(2);
    tl_task **tasks = calloc(N, sizeof(*tasks));
    atomic_int started = 0, go = 0;
    for (size_t i = 0; i < N; i++)
        tasks[i] = tl_task_create(loop, pending_fn, &started);
    completer c[COMPLETERS];
    start_completers(c, tasks, &started, N, &go, true);
    atomic_store(&go, 1);

    tl_wait_result res;
    assert_int_equal(tl_wait(loop, tasks, N, 10000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, N);
    tl_wait_result_free(&res);
    for (int i = 0; i < COMPLETERS; i++) {
        pthread_join(c[i].thread, NULL);
        assert_int_equal(c[i].ok, PER_COMPLETER);
    }
    for (size_t i = 0; i < N; i++) {
        assert_int_equal((uintptr_t)tl_task_result(tasks[i]), i + 1);
        tl_task_release(tasks[i]);
    }
    free(tasks);
    tl_loop_free(loop);
}

static void task_completed_by_racing_threads_is_completed_exactly_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    tl_task *tasks[RACED];
    atomic_int started = RACED, go = 0;
    for (size_t i = 0; i < RACED; i++)
        tasks[i] = tl_future_create(loop);
    completer c[COMPLETERS];
    start_completers(c, tasks, &started, RACED, &go, false);
    atomic_store(&go, 1);
    int ok = 0, refused = 0;
    for (int i = 0; i < COMPLETERS; i++) {
        pthread_join(c[i].thread, NULL);
        ok += c[i].ok;
        refused += c[i].refused;
    }
    assert_int_equal(ok, RACED);
    assert_int_equal(refused, RACED * (COMPLETERS - 1));
    wait_all(loop, tasks, RACED);
    for (size_t i = 0; i < RACED; i++)
        tl_task_release(tasks[i]);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ done-callbacks */

typedef struct done_probe {
    int calls;
    tl_task *seen;
    pthread_t thread;
    bool was_done;
} done_probe;

static void on_done(tl_task *task, void *arg)
{
    done_probe *p = arg;
    p->calls++;
    p->seen = task;
    p->thread = pthread_self();
    p->was_done = tl_task_done(task);
}

static void task_done_callback_runs_once_on_the_loop_thread(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {.value = 1};
    done_probe p = {0};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    assert_int_equal(tl_task_add_done_callback(t, on_done, &p), 0);
    wait_all(loop, &t, 1);
    tl_loop_run_once(loop, 0);
    assert_int_equal(p.calls, 1);
    assert_ptr_equal(p.seen, t);
    assert_true(p.was_done);
    assert_true(pthread_equal(p.thread, pthread_self()));
    tl_task_release(t);
    tl_loop_free(loop);
}

static void task_done_callback_added_after_finish_still_runs(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    tl_task_complete(f, NULL, 0);
    wait_all(loop, &f, 1);
    done_probe p = {0};
    assert_int_equal(tl_task_add_done_callback(f, on_done, &p), 0);
    for (int i = 0; i < 50 && p.calls == 0; i++)
        tl_loop_run_once(loop, 10);
    assert_int_equal(p.calls, 1);
    tl_task_release(f);
    tl_loop_free(loop);
}

static void task_done_callback_runs_for_a_cancelled_task(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    done_probe p = {0};
    tl_task_add_done_callback(f, on_done, &p);
    tl_task_cancel(f);
    for (int i = 0; i < 50 && p.calls == 0; i++)
        tl_loop_run_once(loop, 10);
    assert_int_equal(p.calls, 1);
    tl_task_release(f);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ after the loop is gone */

static void task_held_after_loop_free_stays_readable(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {.value = 77};
    tl_task *t = tl_task_create(loop, job_fn, &j);
    tl_task_set_name(t, "kept");
    wait_all(loop, &t, 1);
    tl_loop_free(loop);

    assert_int_equal(tl_task_state_of(t), TL_TASK_DONE);
    assert_int_equal((intptr_t)tl_task_result(t), 77);
    assert_string_equal(tl_task_name(t), "kept");
    assert_int_equal(tl_task_cancel(t), TL_EDONE);
    tl_task_release(t);
}

static void task_unfinished_at_loop_free_refuses_cancel(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    tl_loop_free(loop);

    /* Freeing cancels what had not started; either way the task no longer needs
     * (nor reaches) its loop. */
    int rc = tl_task_cancel(f);
    assert_true(rc == TL_EDONE || rc == TL_ECLOSED);
    tl_task_state state_after = tl_task_state_of(f);
    assert_true(state_after == TL_TASK_CANCELLED || state_after == TL_TASK_PENDING);
    tl_task_release(f);
}

static void *open_gate_later(void *arg)
{
    sleep_ms(40);
    gate_open(arg);
    return NULL;
}

static void loop_free_cancels_queued_tasks_and_waits_for_running_ones(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    gate g;
    gate_init(&g);
    job running = {.g = &g, .value = 1};
    job queued = {.value = 2};
    tl_task *a = tl_task_create(loop, job_fn, &running);
    assert_true(gate_wait_entered(loop, &g, 1));
    tl_task *b = tl_task_create(loop, job_fn, &queued);
    pthread_t opener;
    pthread_create(&opener, NULL, open_gate_later, &g);
    int64_t t0 = now_ms();
    tl_loop_free(loop); /* the only worker is held: b cannot start before this */
    int64_t took = now_ms() - t0;
    pthread_join(opener, NULL);

    assert_true(took >= 30);
    assert_true(tl_task_done(a));
    assert_int_equal(tl_task_state_of(b), TL_TASK_CANCELLED);
    assert_int_equal(atomic_load(&queued.runs), 0);
    tl_task_release(a);
    tl_task_release(b);
    gate_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(task_create_runs_function_and_keeps_its_result),
        cmocka_unit_test(task_ids_are_unique_and_count_from_one),
        cmocka_unit_test(task_failure_reports_error_and_text_without_result),
        cmocka_unit_test(task_not_done_reports_eagain_and_no_result),
        cmocka_unit_test(task_inline_runs_on_the_loop_thread),
        cmocka_unit_test(task_on_loop_without_workers_runs_inline),
        cmocka_unit_test(task_on_pool_runs_off_the_loop_thread),
        cmocka_unit_test(task_name_is_copied),
        cmocka_unit_test(task_name_and_error_text_set_at_once_from_two_threads_are_both_kept),
        cmocka_unit_test(task_name_and_error_text_can_be_cleared),
        cmocka_unit_test(task_done_nodes_left_after_unlinks_fire_in_adding_order),
        cmocka_unit_test(task_retained_reference_outlives_the_first_release),
        cmocka_unit_test(task_cancel_before_start_cancels_at_once),
        cmocka_unit_test(task_cancel_while_running_is_seen_by_the_function),
        cmocka_unit_test(task_cancel_after_done_returns_edone_and_changes_nothing),
        cmocka_unit_test(task_cancel_twice_returns_edone_the_second_time),
        cmocka_unit_test(task_returning_pending_stays_running_until_completed),
        cmocka_unit_test(task_completed_twice_keeps_the_first_outcome),
        cmocka_unit_test(future_completed_with_error_reports_it),
        cmocka_unit_test(task_pending_ones_completed_by_eight_threads_all_finish),
        cmocka_unit_test(task_completed_by_racing_threads_is_completed_exactly_once),
        cmocka_unit_test(task_done_callback_runs_once_on_the_loop_thread),
        cmocka_unit_test(task_done_callback_added_after_finish_still_runs),
        cmocka_unit_test(task_done_callback_runs_for_a_cancelled_task),
        cmocka_unit_test(task_held_after_loop_free_stays_readable),
        cmocka_unit_test(task_unfinished_at_loop_free_refuses_cancel),
        cmocka_unit_test(loop_free_cancels_queued_tasks_and_waits_for_running_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
