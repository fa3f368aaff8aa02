/*
 * tl_wait and tl_wait_async: each return_when, timeouts (which cancel nothing), the
 * order of the done and pending sets, large sets, and calls from inside the loop.
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

/* ------------------------------------------------------------ return_when */

static void wait_all_completed_puts_every_task_in_done(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job jobs[5] = {{.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}, {.value = 5}};
    tl_task *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, 5, TL_FOREVER, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, 5);
    assert_int_equal(res.npending, 0);
    assert_false(res.timed_out);
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(res.done[i], t[i]);
        assert_int_equal((intptr_t)tl_task_result(t[i]), i + 1);
    }
    tl_wait_result_free(&res);
    release_all(t, 5);
    tl_loop_free(loop);
}

static void wait_first_completed_returns_when_one_task_finishes(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{1, 20, 0}};
    script s;
    script_start(&s, f, steps, 1);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 3, 5000, TL_FIRST_COMPLETED, &res), 0);
    pthread_join(s.thread, NULL);
    assert_false(res.timed_out);
    assert_int_equal(res.ndone, 1);
    assert_ptr_equal(res.done[0], f[1]);
    assert_int_equal(res.npending, 2);
    assert_ptr_equal(res.pending[0], f[0]);
    assert_ptr_equal(res.pending[1], f[2]);
    tl_wait_result_free(&res);
    tl_task_complete(f[0], NULL, 0);
    tl_task_complete(f[2], NULL, 0);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void wait_first_completed_with_one_already_done_returns_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_complete(f[1], NULL, 0);
    int64_t t0 = now_ms();
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 2, 5000, TL_FIRST_COMPLETED, &res), 0);
    assert_true(now_ms() - t0 < 50);
    assert_int_equal(res.ndone, 1);
    assert_ptr_equal(res.done[0], f[1]);
    tl_wait_result_free(&res);
    tl_task_complete(f[0], NULL, 0);
    release_all(f, 2);
    tl_loop_free(loop);
}

static void wait_first_exception_returns_at_the_first_failure(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    /* A success first must not end the wait; the failure after it must. */
    static const step steps[] = {{0, 10, 0}, {1, 20, TL_EFAIL}};
    script s;
    script_start(&s, f, steps, 2);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 3, 5000, TL_FIRST_EXCEPTION, &res), 0);
    pthread_join(s.thread, NULL);
    assert_false(res.timed_out);
    assert_int_equal(res.ndone, 2);
    assert_ptr_equal(res.done[0], f[0]);
    assert_ptr_equal(res.done[1], f[1]);
    assert_int_equal(res.npending, 1);
    assert_ptr_equal(res.pending[0], f[2]);
    assert_int_equal(tl_task_error(f[1]), TL_EFAIL);
    tl_wait_result_free(&res);
    tl_task_complete(f[2], NULL, 0);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void cancel_from_timer(tl_timer *timer, void *arg)
{
    (void)timer;
    tl_task_cancel(arg);
}

static void wait_first_exception_counts_a_cancelled_task(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_timer timer;
    tl_timer_init(loop, &timer);
    assert_int_equal(tl_timer_start(&timer, 20, cancel_from_timer, f[0]), 0);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 2, 5000, TL_FIRST_EXCEPTION, &res), 0);
    assert_false(res.timed_out);
    assert_int_equal(res.ndone, 1);
    assert_ptr_equal(res.done[0], f[0]);
    assert_int_equal(tl_task_state_of(f[0]), TL_TASK_CANCELLED);
    assert_int_equal(res.npending, 1);
    tl_wait_result_free(&res);
    tl_task_complete(f[1], NULL, 0);
    release_all(f, 2);
    tl_loop_free(loop);
}

static void wait_first_exception_without_failure_waits_for_all(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{2, 5, 0}, {0, 5, 0}, {1, 5, 0}};
    script s;
    script_start(&s, f, steps, 3);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 3, 5000, TL_FIRST_EXCEPTION, &res), 0);
    pthread_join(s.thread, NULL);
    assert_int_equal(res.ndone, 3);
    assert_int_equal(res.npending, 0);
    tl_wait_result_free(&res);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void wait_sets_keep_input_order_not_completion_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[4];
    make_futures(loop, f, 4);
    static const step steps[] = {{3, 2, 0}, {1, 2, 0}, {2, 2, 0}, {0, 2, 0}};
    script s;
    script_start(&s, f, steps, 4);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 4, 5000, TL_ALL_COMPLETED, &res), 0);
    pthread_join(s.thread, NULL);
    assert_int_equal(res.ndone, 4);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(res.done[i], f[i]);
    tl_wait_result_free(&res);
    release_all(f, 4);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ edges */

static void wait_on_an_empty_set_returns_at_once_with_empty_sets(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_wait_result res;
    int64_t t0 = now_ms();
    assert_int_equal(tl_wait(loop, NULL, 0, 5000, TL_ALL_COMPLETED, &res), 0);
    assert_true(now_ms() - t0 < 50);
    assert_int_equal(res.ndone, 0);
    assert_int_equal(res.npending, 0);
    assert_false(res.timed_out);
    tl_wait_result_free(&res);
    tl_loop_free(loop);
}

static void wait_with_all_done_before_the_call_returns_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    for (int i = 0; i < 3; i++)
        tl_task_complete(f[i], NULL, 0);
    int64_t t0 = now_ms();
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 3, TL_FOREVER, TL_ALL_COMPLETED, &res), 0);
    assert_true(now_ms() - t0 < 50);
    assert_int_equal(res.ndone, 3);
    tl_wait_result_free(&res);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void wait_zero_timeout_returns_at_once_leaving_unfinished_pending(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_complete(f[0], NULL, 0);
    int64_t t0 = now_ms();
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 2, 0, TL_ALL_COMPLETED, &res), 0);
    assert_true(now_ms() - t0 < 50);
    assert_true(res.timed_out);
    assert_int_equal(res.ndone, 1);
    assert_int_equal(res.npending, 1);
    assert_ptr_equal(res.pending[0], f[1]);
    tl_wait_result_free(&res);
    tl_task_complete(f[1], NULL, 0);
    release_all(f, 2);
    tl_loop_free(loop);
}

static void wait_ends_before_the_timeout_once_all_finish(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    static const step steps[] = {{0, 5, 0}, {1, 5, 0}};
    script s;
    script_start(&s, f, steps, 2);
    int64_t t0 = now_ms();
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, f, 2, 2000, TL_ALL_COMPLETED, &res), 0);
    assert_true(now_ms() - t0 < 1000);
    pthread_join(s.thread, NULL);
    assert_false(res.timed_out);
    assert_int_equal(res.ndone, 2);
    tl_wait_result_free(&res);
    release_all(f, 2);
    tl_loop_free(loop);
}

static void wait_timeout_shorter_than_every_task_leaves_all_pending(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(3);
    gate g;
    gate_init(&g);
    job jobs[3] = {{.g = &g}, {.g = &g}, {.g = &g}};
    tl_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    int64_t t0 = now_ms();
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, 3, 60, TL_ALL_COMPLETED, &res), 0);
    int64_t elapsed = now_ms() - t0;
    assert_true(elapsed >= 60);
    assert_true(elapsed < 60 + 50);
    assert_true(res.timed_out);
    assert_int_equal(res.ndone, 0);
    assert_int_equal(res.npending, 3);
    tl_wait_result_free(&res);
    gate_open(&g);
    tl_loop_free(loop);
    release_all(t, 3);
    gate_destroy(&g);
}

static void wait_timeout_leaves_slow_tasks_pending_and_not_cancelled(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(4);
    gate g;
    gate_init(&g);
    job jobs[4] = {{.value = 1}, {.g = &g, .value = 2}, {.value = 3}, {.g = &g, .value = 4}};
    tl_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    assert_true(gate_wait_entered(loop, &g, 2));
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, 4, 50, TL_ALL_COMPLETED, &res), 0);
    assert_true(res.timed_out);
    assert_int_equal(res.ndone, 2);
    assert_ptr_equal(res.done[0], t[0]);
    assert_ptr_equal(res.done[1], t[2]);
    assert_int_equal(res.npending, 2);
    assert_ptr_equal(res.pending[0], t[1]);
    assert_ptr_equal(res.pending[1], t[3]);
    for (size_t i = 0; i < res.npending; i++) {
        assert_false(tl_cancelled(res.pending[i]));
        assert_int_equal(tl_task_state_of(res.pending[i]), TL_TASK_RUNNING);
    }
    tl_wait_result_free(&res);

    /* The caller decides their fate: here they are let finish normally. */
    gate_open(&g);
    assert_int_equal(tl_wait(loop, t, 4, 5000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, 4);
    tl_wait_result_free(&res);
    assert_int_equal(tl_task_state_of(t[1]), TL_TASK_DONE);
    assert_int_equal((intptr_t)tl_task_result(t[3]), 4);
    assert_false(atomic_load(&jobs[1].saw_cancel));
    release_all(t, 4);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void wait_on_100000_tasks_collects_them_all(void **state)
{
    (void)state;
    enum { N = 100000 };
    tl_loop *loop = new_loop(2);
    tl_task **t = malloc(N * sizeof(*t));
    job j = {.value = 1};
    for (size_t i = 0; i < N; i++) {
        t[i] = tl_task_create(loop, job_fn, &j);
        assert_non_null(t[i]);
    }
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, N, 30000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, N);
    assert_int_equal(res.npending, 0);
    assert_int_equal(atomic_load(&j.runs), N);
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(res.done[i], t[i]);
    tl_wait_result_free(&res);
    release_all(t, N);
    free(t);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ inside the loop */

static int wait_blocking(tl_loop *loop, tl_task *pending)
{
    tl_wait_result res;
    int rc = tl_wait(loop, &pending, 1, 0, TL_ALL_COMPLETED, &res);
    if (rc == 0)
        tl_wait_result_free(&res);
    return rc;
}

static void wait_inside_the_running_loop_returns_ebusy(void **state)
{
    (void)state;
    assert_blocking_call_returns_ebusy(wait_blocking);
}

/* ------------------------------------------------------------ callback form */

typedef struct wait_seen {
    bool called;
    int calls;
    size_t ndone, npending;
    bool timed_out;
    tl_task *done[8], *pending[8];
} wait_seen;

static void on_wait(tl_loop *loop, const tl_wait_result *res, void *arg)
{
    (void)loop;
    wait_seen *w = arg;
    w->called = true;
    w->calls++;
    w->ndone = res->ndone;
    w->npending = res->npending;
    w->timed_out = res->timed_out;
    for (size_t i = 0; i < res->ndone && i < 8; i++)
        w->done[i] = res->done[i];
    for (size_t i = 0; i < res->npending && i < 8; i++)
        w->pending[i] = res->pending[i];
}

static void wait_async_timeout_delivers_the_same_sets_as_wait(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(3);
    gate g;
    gate_init(&g);
    job jobs[3] = {{.value = 1}, {.g = &g}, {.value = 3}};
    tl_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = tl_task_create(loop, job_fn, &jobs[i]);
    wait_seen w = {0};
    int64_t t0 = now_ms();
    assert_int_equal(tl_wait_async(loop, t, 3, 50, TL_ALL_COMPLETED, on_wait, &w), 0);
    assert_true(run_until(loop, &w.called, 5000));
    int64_t elapsed = now_ms() - t0;
    assert_true(elapsed >= 50 && elapsed < 100);
    assert_true(w.timed_out);
    assert_int_equal(w.ndone, 2);
    assert_ptr_equal(w.done[0], t[0]);
    assert_ptr_equal(w.done[1], t[2]);
    assert_int_equal(w.npending, 1);
    assert_ptr_equal(w.pending[0], t[1]);
    assert_false(tl_cancelled(t[1]));
    gate_open(&g);
    tl_loop_free(loop);
    assert_int_equal(w.calls, 1);
    release_all(t, 3);
    gate_destroy(&g);
}

static void wait_async_first_completed_reports_the_first_task(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{2, 10, 0}};
    script s;
    script_start(&s, f, steps, 1);
    wait_seen w = {0};
    assert_int_equal(tl_wait_async(loop, f, 3, 5000, TL_FIRST_COMPLETED, on_wait, &w), 0);
    assert_true(run_until(loop, &w.called, 5000));
    pthread_join(s.thread, NULL);
    assert_false(w.timed_out);
    assert_int_equal(w.ndone, 1);
    assert_ptr_equal(w.done[0], f[2]);
    assert_int_equal(w.npending, 2);
    tl_task_complete(f[0], NULL, 0);
    tl_task_complete(f[1], NULL, 0);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void wait_async_all_completed_reports_every_task_in_input_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const step steps[] = {{2, 2, 0}, {0, 2, TL_EFAIL}, {1, 2, 0}};
    script s;
    script_start(&s, f, steps, 3);
    wait_seen w = {0};
    assert_int_equal(tl_wait_async(loop, f, 3, TL_FOREVER, TL_ALL_COMPLETED, on_wait, &w), 0);
    assert_true(run_until(loop, &w.called, 5000));
    pthread_join(s.thread, NULL);
    assert_int_equal(w.ndone, 3);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(w.done[i], f[i]);
    release_all(f, 3);
    tl_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wait_all_completed_puts_every_task_in_done),
        cmocka_unit_test(wait_first_completed_returns_when_one_task_finishes),
        cmocka_unit_test(wait_first_completed_with_one_already_done_returns_at_once),
        cmocka_unit_test(wait_first_exception_returns_at_the_first_failure),
        cmocka_unit_test(wait_first_exception_counts_a_cancelled_task),
        cmocka_unit_test(wait_first_exception_without_failure_waits_for_all),
        cmocka_unit_test(wait_sets_keep_input_order_not_completion_order),
        cmocka_unit_test(wait_on_an_empty_set_returns_at_once_with_empty_sets),
        cmocka_unit_test(wait_with_all_done_before_the_call_returns_at_once),
        cmocka_unit_test(wait_zero_timeout_returns_at_once_leaving_unfinished_pending),
        cmocka_unit_test(wait_ends_before_the_timeout_once_all_finish),
        cmocka_unit_test(wait_timeout_shorter_than_every_task_leaves_all_pending),
        cmocka_unit_test(wait_timeout_leaves_slow_tasks_pending_and_not_cancelled),
        cmocka_unit_test(wait_on_100000_tasks_collects_them_all),
        cmocka_unit_test(wait_inside_the_running_loop_returns_ebusy),
        cmocka_unit_test(wait_async_timeout_delivers_the_same_sets_as_wait),
        cmocka_unit_test(wait_async_first_completed_reports_the_first_task),
        cmocka_unit_test(wait_async_all_completed_reports_every_task_in_input_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
