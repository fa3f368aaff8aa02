/*
 * tl_as_completed_*: completion order, the end of the iteration, timeouts that end
 * it without cancelling anything, and the callback form.
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

/* Finishes futures in a given order, one at a time: each waits until the test has
 * taken the previous one from the iterator, so the completion order is exact. */
typedef struct feeder {
    pthread_t thread;
    tl_task **tasks;
    const int *order;
    int n;
    atomic_int taken;
} feeder;

static void *feed(void *arg)
{
    feeder *f = arg;
    for (int i = 0; i < f->n; i++) {
        int64_t end = now_ms() + 5000;
        while (atomic_load(&f->taken) < i && now_ms() < end)
            sleep_ms(1);
        tl_task_complete(f->tasks[f->order[i]], (void *)(intptr_t)f->order[i], 0);
    }
    return NULL;
}

static void feeder_start(feeder *f, tl_task **tasks, const int *order, int n)
{
    f->tasks = tasks;
    f->order = order;
    f->n = n;
    atomic_init(&f->taken, 0);
    pthread_create(&f->thread, NULL, feed, f);
}

/* ------------------------------------------------------------ blocking iterator */

static void as_completed_yields_tasks_in_completion_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[4];
    make_futures(loop, f, 4);
    static const int order[] = {2, 0, 3, 1};
    feeder fd;
    feeder_start(&fd, f, order, 4);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, f, 4, 5000, &it), 0);
    for (int i = 0; i < 4; i++) {
        tl_task *t = NULL;
        assert_int_equal(tl_as_completed_next(it, &t), 0);
        assert_ptr_equal(t, f[order[i]]);
        assert_true(tl_task_done(t));
        atomic_fetch_add(&fd.taken, 1);
    }
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), TL_EOF);
    pthread_join(fd.thread, NULL);
    tl_as_completed_free(it);
    release_all(f, 4);
    tl_loop_free(loop);
}

static void as_completed_yields_a_fast_pool_task_before_a_slow_one(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    gate g;
    gate_init(&g);
    job slow = {.g = &g, .value = 1}, fast = {.value = 2};
    tl_task *t[2] = {tl_task_create(loop, job_fn, &slow), tl_task_create(loop, job_fn, &fast)};
    assert_true(gate_wait_entered(loop, &g, 1));
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, t, 2, 5000, &it), 0);
    tl_task *got = NULL;
    assert_int_equal(tl_as_completed_next(it, &got), 0);
    assert_ptr_equal(got, t[1]);
    gate_open(&g);
    assert_int_equal(tl_as_completed_next(it, &got), 0);
    assert_ptr_equal(got, t[0]);
    assert_int_equal((intptr_t)tl_task_result(got), 1);
    assert_int_equal(tl_as_completed_next(it, &got), TL_EOF);
    tl_as_completed_free(it);
    release_all(t, 2);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void as_completed_on_an_empty_set_ends_at_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, NULL, 0, 5000, &it), 0);
    int64_t t0 = now_ms();
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), TL_EOF);
    assert_true(now_ms() - t0 < 50);
    tl_as_completed_free(it);
    tl_loop_free(loop);
}

static void as_completed_after_the_end_keeps_returning_eof(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    tl_task_complete(f, NULL, 0);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, &f, 1, 5000, &it), 0);
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), 0);
    assert_int_equal(tl_as_completed_next(it, &t), TL_EOF);
    assert_int_equal(tl_as_completed_next(it, &t), TL_EOF);
    tl_as_completed_free(it);
    tl_task_release(f);
    tl_loop_free(loop);
}

static void as_completed_with_all_done_before_yields_each_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    for (int i = 0; i < 3; i++)
        tl_task_complete(f[i], NULL, 0);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, f, 3, 0, &it), 0);
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        tl_task *t = NULL;
        assert_int_equal(tl_as_completed_next(it, &t), 0);
        int k = t == f[0] ? 0 : t == f[1] ? 1 : t == f[2] ? 2 : -1;
        assert_true(k >= 0);
        assert_false(seen[k]);
        seen[k] = true;
    }
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), TL_EOF);
    tl_as_completed_free(it);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void as_completed_timeout_ends_the_iteration_and_cancels_nothing(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_complete(f[0], NULL, 0);
    int64_t t0 = now_ms();
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, f, 2, 50, &it), 0);
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), 0);
    assert_ptr_equal(t, f[0]);
    assert_int_equal(tl_as_completed_next(it, &t), TL_ETIMEDOUT);
    int64_t elapsed = now_ms() - t0;
    assert_true(elapsed >= 50);
    assert_true(elapsed < 50 + 50);
    assert_false(tl_cancelled(f[1]));
    assert_int_equal(tl_task_state_of(f[1]), TL_TASK_PENDING);

    /* Finishing the straggler now does not revive the iteration. */
    tl_task_complete(f[1], NULL, 0);
    assert_int_not_equal(tl_as_completed_next(it, &t), 0);
    tl_as_completed_free(it);
    release_all(f, 2);
    tl_loop_free(loop);
}

static void as_completed_zero_timeout_ends_at_once_when_nothing_finished(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f = tl_future_create(loop);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, &f, 1, 0, &it), 0);
    int64_t t0 = now_ms();
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), TL_ETIMEDOUT);
    assert_true(now_ms() - t0 < 50);
    assert_false(tl_cancelled(f));
    tl_as_completed_free(it);
    tl_task_complete(f, NULL, 0);
    tl_task_release(f);
    tl_loop_free(loop);
}

static void as_completed_yields_a_cancelled_task_like_a_finished_one(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_cancel(f[1]);
    tl_as_completed *it = NULL;
    assert_int_equal(tl_as_completed_new(loop, f, 2, 5000, &it), 0);
    tl_task *t = NULL;
    assert_int_equal(tl_as_completed_next(it, &t), 0);
    assert_ptr_equal(t, f[1]);
    assert_int_equal(tl_task_error(t), TL_ECANCELED);
    tl_as_completed_free(it);
    tl_task_complete(f[0], NULL, 0);
    release_all(f, 2);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ inside the loop */

static int next_blocking(tl_loop *loop, tl_task *pending)
{
    tl_as_completed *it = NULL;
    int rc = tl_as_completed_new(loop, &pending, 1, 1000, &it);
    if (rc == 0) {
        tl_task *t = NULL;
        rc = tl_as_completed_next(it, &t);
        tl_as_completed_free(it);
    }
    return rc;
}

static void as_completed_next_inside_the_running_loop_returns_ebusy(void **state)
{
    (void)state;
    assert_blocking_call_returns_ebusy(next_blocking);
}

/* ------------------------------------------------------------ callback form */

typedef struct ac_seen {
    tl_task *order[8];
    int n;
    int final_status;
    int finals;
    bool ended;
} ac_seen;

static void on_next(tl_loop *loop, tl_task *task, int status, void *arg)
{
    (void)loop;
    ac_seen *s = arg;
    if (task == NULL) {
        s->final_status = status;
        s->finals++;
        s->ended = true;
    } else if (s->n < 8) {
        s->order[s->n++] = task;
    }
}

static void as_completed_async_reports_completion_order_then_eof(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[3];
    make_futures(loop, f, 3);
    static const int order[] = {1, 2, 0};
    feeder fd;
    feeder_start(&fd, f, order, 3);
    ac_seen s = {0};
    assert_int_equal(tl_as_completed_async(loop, f, 3, 5000, on_next, &s), 0);
    int64_t end = now_ms() + 5000;
    while (!s.ended && now_ms() < end) {
        tl_loop_run_once(loop, 5);
        atomic_store(&fd.taken, s.n);
    }
    pthread_join(fd.thread, NULL);
    assert_true(s.ended);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(s.order[i], f[order[i]]);
    assert_int_equal(s.final_status, TL_EOF);
    assert_int_equal(s.finals, 1);
    release_all(f, 3);
    tl_loop_free(loop);
}

static void as_completed_async_timeout_reports_etimedout_and_cancels_nothing(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2];
    make_futures(loop, f, 2);
    tl_task_complete(f[1], NULL, 0);
    ac_seen s = {0};
    int64_t t0 = now_ms();
    assert_int_equal(tl_as_completed_async(loop, f, 2, 40, on_next, &s), 0);
    assert_true(run_until(loop, &s.ended, 5000));
    int64_t elapsed = now_ms() - t0;
    assert_true(elapsed >= 40 && elapsed < 40 + 50);
    assert_int_equal(s.n, 1);
    assert_ptr_equal(s.order[0], f[1]);
    assert_int_equal(s.final_status, TL_ETIMEDOUT);
    assert_false(tl_cancelled(f[0]));
    tl_task_complete(f[0], NULL, 0);
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(loop, 5);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.finals, 1);
    release_all(f, 2);
    tl_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(as_completed_yields_tasks_in_completion_order),
        cmocka_unit_test(as_completed_yields_a_fast_pool_task_before_a_slow_one),
        cmocka_unit_test(as_completed_on_an_empty_set_ends_at_once),
        cmocka_unit_test(as_completed_after_the_end_keeps_returning_eof),
        cmocka_unit_test(as_completed_with_all_done_before_yields_each_once),
        cmocka_unit_test(as_completed_timeout_ends_the_iteration_and_cancels_nothing),
        cmocka_unit_test(as_completed_zero_timeout_ends_at_once_when_nothing_finished),
        cmocka_unit_test(as_completed_yields_a_cancelled_task_like_a_finished_one),
        cmocka_unit_test(as_completed_next_inside_the_running_loop_returns_ebusy),
        cmocka_unit_test(as_completed_async_reports_completion_order_then_eof),
        cmocka_unit_test(as_completed_async_timeout_reports_etimedout_and_cancels_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
