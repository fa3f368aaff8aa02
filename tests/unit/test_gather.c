/*
 * tl_gather and tl_gather_async: results in input order whatever the completion
 * order, the first error with and without return_exceptions, and the edges.
 *
 * Assertions run on the test's main thread only: cmocka's failure path is not
 * thread safe, so helper threads only act and the main thread checks.
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
#include <taskloop/taskloop.h>

#include "task_helpers.h"

/* A thread that finishes futures in a scripted order, sleeping before each step,
 * while the test's thread is inside a blocking call that runs the loop. */

/* Records the order in which the loop saw tasks finish. */
typedef struct finish_order {
    tl_task *order[8];
    int n;
} finish_order;

static void note_finish(tl_task *task, void *arg)
{
    finish_order *o = arg;
    if (o->n < 8)
        o->order[o->n++] = task;
}

/* ------------------------------------------------------------ gather */

static void gather_results_follow_input_order_not_completion_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[4];
    make_futures(loop, f, 4);
    finish_order seen = {0};
    for (int i = 0; i < 4; i++)
        tl_task_add_done_callback(f[i], note_finish, &seen);
    static const step steps[] = {{3, 2, 0}, {2, 2, 0}, {1, 2, 0}, {0, 2, 0}};
    script s;
    script_start(&s, f, steps, 4);
    tl_result r[4];
    assert_int_equal(tl_gather(loop, f, 4, false, r), 0);
    pthread_join(s.thread, NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].error, 0);
        assert_int_equal((intptr_t)r[i].value, i + 100);
    }
    /* The premise: they really finished in reverse order. */
    for (int i = 0; i < 50 && seen.n < 4; i++)
        tl_loop_run_once(loop, 10);
    assert_int_equal(seen.n, 4);
    assert_ptr_equal(seen.order[0], f[3]);
    assert_ptr_equal(seen.order[3], f[0]);
    release_all(f, 4);
    tl_loop_free(loop);
}

static void gather_of_pool_tasks_returns_each_result_in_place(void **state)
{
    (void)state;
    enum { N = 1000 };
    tl_loop *loop = new_loop(2);
    job *jobs = calloc(N, sizeof(*jobs));
    tl_task **t = calloc(N, sizeof(*t));
    tl_result *r = calloc(N, sizeof(*r));
    for (int i = 0; i < N; i++) {
        jobs[i].value = i * 3;
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    }
    assert_int_equal(tl_gather(loop, t, N, false, r), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].error, 0);
        assert_int_equal((intptr_t)r[i].value, i * 3);
    }
    release_all(t, N);
    tl_loop_free(loop);
    free(r);
    free(t);
    free(jobs);
}

static void gather_on_an_empty_set_returns_zero_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_result r[1] = {{(void *)1, 99}};
    int64_t t0 = now_ms();
    assert_int_equal(tl_gather(loop, NULL, 0, false, r), 0);
    assert_true(now_ms() - t0 < 50);
    assert_int_equal(r[0].error, 99); /* nothing written past n */
    tl_loop_free(loop);
}

static void gather_with_all_done_before_the_call_returns_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    for (int i = 0; i < 3; i++)
        tl_task_complete(f[i], (void *)(intptr_t)i, 0);
    int64_t t0 = now_ms();
    tl_result r[3];
    assert_int_equal(tl_gather(loop, f, 3, false, r), 0);
    assert_true(now_ms() - t0 < 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal((intptr_t)r[i].value, i);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void
gather_without_return_exceptions_returns_first_error_leaving_others_running(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(3);
    gate g;
    gate_init(&g);
    job jobs[3] = {{.g = &g, .value = 1}, {.err = TL_EFAIL}, {.g = &g, .value = 3}};
    tl_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    assert_true(gate_wait_entered(loop, &g, 2));
    tl_result r[3];
    assert_int_equal(tl_gather(loop, t, 3, false, r), TL_EFAIL);
    assert_int_equal(r[1].error, TL_EFAIL);
    assert_null(r[1].value);
    assert_null(r[0].value);
    assert_int_equal(r[0].error, TL_EAGAIN);
    assert_int_equal(r[2].error, TL_EAGAIN);
    assert_false(tl_task_done(t[0]));
    assert_false(tl_cancelled(t[0]));
    assert_false(tl_cancelled(t[2]));

    gate_open(&g);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, 3, 5000, TL_ALL_COMPLETED, &res), 0);
    tl_wait_result_free(&res);
    assert_int_equal(tl_task_state_of(t[0]), TL_TASK_DONE);
    assert_int_equal((intptr_t)tl_task_result(t[2]), 3);
    release_all(t, 3);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void gather_with_return_exceptions_reports_each_outcome_in_place(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[4];
    make_futures(loop, f, 4);
    tl_task_cancel(f[2]);
    static const step steps[] = {{1, 2, TL_EIO}, {3, 2, 0}, {0, 2, 0}};
    script s;
    script_start(&s, f, steps, 3);
    tl_result r[4];
    assert_int_equal(tl_gather(loop, f, 4, true, r), 0);
    pthread_join(s.thread, NULL);
    assert_int_equal(r[0].error, 0);
    assert_int_equal((intptr_t)r[0].value, 100);
    assert_int_equal(r[1].error, TL_EIO);
    assert_null(r[1].value);
    assert_int_equal(r[2].error, TL_ECANCELED);
    assert_int_equal(r[3].error, 0);
    assert_int_equal((intptr_t)r[3].value, 103);
    release_all(f, 4);
    tl_loop_free(loop);
}

static void gather_without_return_exceptions_reports_cancellation_as_error(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_complete(f[0], NULL, 0);
    tl_task_cancel(f[1]);
    tl_result r[2];
    assert_int_equal(tl_gather(loop, f, 2, false, r), TL_ECANCELED);
    assert_int_equal(r[1].error, TL_ECANCELED);
    release_all(f, 2);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ inside the loop */

static int gather_blocking(tl_loop *loop, tl_task *pending)
{
    tl_result r;
    return tl_gather(loop, &pending, 1, true, &r);
}

static void gather_inside_the_running_loop_returns_ebusy(void **state)
{
    (void)state;
    assert_blocking_call_returns_ebusy(gather_blocking);
}

/* ------------------------------------------------------------ callback form */

typedef struct gather_seen {
    bool called;
    int calls;
    int status;
    size_t n;
    tl_result r[8];
} gather_seen;

static void on_gather(tl_loop *loop, int status, const tl_result *results, size_t n, void *arg)
{
    (void)loop;
    gather_seen *g = arg;
    g->called = true;
    g->calls++;
    g->status = status;
    g->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        g->r[i] = results[i];
}

static void gather_async_delivers_the_same_results_as_gather(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{2, 2, 0}, {0, 2, TL_EFAIL}, {1, 2, 0}};
    script s;
    script_start(&s, f, steps, 3);
    gather_seen g = {0};
    assert_int_equal(tl_gather_async(loop, f, 3, true, on_gather, &g), 0);
    assert_true(run_until(loop, &g.called, 5000));
    pthread_join(s.thread, NULL);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.r[0].error, TL_EFAIL);
    assert_int_equal((intptr_t)g.r[1].value, 101);
    assert_int_equal((intptr_t)g.r[2].value, 102);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void gather_async_reports_the_first_error_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{1, 2, TL_EIO}};
    script s;
    script_start(&s, f, steps, 1);
    gather_seen g = {0};
    assert_int_equal(tl_gather_async(loop, f, 3, false, on_gather, &g), 0);
    assert_true(run_until(loop, &g.called, 5000));
    pthread_join(s.thread, NULL);
    assert_int_equal(g.status, TL_EIO);
    assert_int_equal(g.r[1].error, TL_EIO);
    assert_int_equal(g.r[0].error, TL_EAGAIN);
    assert_false(tl_cancelled(f[0]));

    /* The rest finishing later must not call back a second time. */
    tl_task_complete(f[0], NULL, TL_EFAIL);
    tl_task_complete(f[2], NULL, 0);
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(loop, 5);
    assert_int_equal(g.calls, 1);
    release_all(f, 3);
    tl_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gather_results_follow_input_order_not_completion_order),
        cmocka_unit_test(gather_of_pool_tasks_returns_each_result_in_place),
        cmocka_unit_test(gather_on_an_empty_set_returns_zero_at_once),
        cmocka_unit_test(gather_with_all_done_before_the_call_returns_at_once),
        cmocka_unit_test(
            gather_without_return_exceptions_returns_first_error_leaving_others_running),
        cmocka_unit_test(gather_with_return_exceptions_reports_each_outcome_in_place),
        cmocka_unit_test(gather_without_return_exceptions_reports_cancellation_as_error),
        cmocka_unit_test(gather_inside_the_running_loop_returns_ebusy),
        cmocka_unit_test(gather_async_delivers_the_same_results_as_gather),
        cmocka_unit_test(gather_async_reports_the_first_error_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
