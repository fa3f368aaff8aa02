/*
 * The loop: run and stop, call_threadsafe, timers, all_tasks, a poller, and several
 * loops on several threads at once.
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
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <taskloop/loop_ext.h>
#include <taskloop/taskloop.h>

#include "task_helpers.h"

/* ------------------------------------------------------------ the loop itself */

static void loop_workers_reports_the_pool_size(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(3);
    assert_int_equal(tl_loop_workers(loop), 3);
    tl_loop_free(loop);
    loop = new_loop(0);
    assert_int_equal(tl_loop_workers(loop), 0);
    tl_loop_free(loop);
}

static void *stop_later(void *arg)
{
    sleep_ms(20);
    tl_loop_stop(arg);
    return NULL;
}

static void loop_run_returns_after_stop_from_another_thread(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    pthread_t th;
    pthread_create(&th, NULL, stop_later, loop);
    int64_t t0 = now_ms();
    assert_int_equal(tl_loop_run(loop), 0);
    assert_true(now_ms() - t0 >= 15);
    pthread_join(th, NULL);
    tl_loop_free(loop);
}

typedef struct nested {
    int rc;
    bool ran;
    pthread_t thread;
} nested;

static void run_from_callback(tl_loop *loop, void *arg)
{
    nested *n = arg;
    n->rc = tl_loop_run(loop);
    n->ran = true;
    n->thread = pthread_self();
    tl_loop_stop(loop);
}

static void loop_run_inside_the_running_loop_returns_ebusy(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    nested n = {.rc = 1};
    assert_int_equal(tl_loop_call_threadsafe(loop, run_from_callback, &n), 0);
    assert_int_equal(tl_loop_run(loop), 0);
    assert_true(n.ran);
    assert_int_equal(n.rc, TL_EBUSY);
    tl_loop_free(loop);
}

static void loop_call_threadsafe_runs_the_callback_on_the_loop_thread(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    nested n = {.rc = 1};
    assert_int_equal(tl_loop_call_threadsafe(loop, run_from_callback, &n), 0);
    assert_false(n.ran); /* soon, not now */
    assert_true(run_until(loop, &n.ran, 5000));
    assert_true(pthread_equal(n.thread, pthread_self()));
    tl_loop_free(loop);
}

enum { CALLERS = 8, CALLS_EACH = 1000 };

typedef struct call_count {
    int calls; /* touched on the loop thread only */
    bool all;
} call_count;

static void count_call(tl_loop *loop, void *arg)
{
    (void)loop;
    call_count *c = arg;
    if (++c->calls == CALLERS * CALLS_EACH)
        c->all = true;
}

typedef struct caller {
    pthread_t thread;
    tl_loop *loop;
    call_count *count;
    int failures;
} caller;

static void *call_many(void *arg)
{
    caller *c = arg;
    for (int i = 0; i < CALLS_EACH; i++)
        if (tl_loop_call_threadsafe(c->loop, count_call, c->count) != 0)
            c->failures++;
    return NULL;
}

static void loop_call_threadsafe_from_eight_threads_runs_each_call_once(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    call_count count = {0};
    caller c[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        c[i] = (caller){.loop = loop, .count = &count};
        pthread_create(&c[i].thread, NULL, call_many, &c[i]);
    }
    assert_true(run_until(loop, &count.all, 10000));
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(c[i].thread, NULL);
        assert_int_equal(c[i].failures, 0);
    }
    tl_loop_run_once(loop, 0);
    assert_int_equal(count.calls, CALLERS * CALLS_EACH);
    tl_loop_free(loop);
}

static void loop_now_advances_as_the_loop_iterates(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    tl_loop_run_once(loop, 0);
    int64_t before = tl_loop_now(loop);
    sleep_ms(20);
    tl_loop_run_once(loop, 0);
    int64_t after = tl_loop_now(loop);
    assert_true(after - before >= 20);
    assert_true(after - before < 20 + 50);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ timers */

typedef struct fired {
    int order[8];
    int n;
    int64_t at[8];
    int stop_after;
} fired;

typedef struct tick {
    fired *log;
    int id;
} tick;

static void on_tick(tl_timer *timer, void *arg)
{
    tick *t = arg;
    fired *f = t->log;
    f->at[f->n] = now_ms();
    f->order[f->n++] = t->id;
    if (f->n == f->stop_after)
        tl_loop_stop(timer->loop);
}

static void timers_fire_in_order_of_their_due_time(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 3};
    static const int delays[] = {30, 10, 20};
    tl_timer timers[3];
    tick ticks[3];
    for (int i = 0; i < 3; i++) {
        ticks[i] = (tick){&log, i};
        tl_timer_init(loop, &timers[i]);
        assert_int_equal(tl_timer_start(&timers[i], delays[i], on_tick, &ticks[i]), 0);
    }
    assert_int_equal(tl_loop_run(loop), 0);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[0], 1);
    assert_int_equal(log.order[1], 2);
    assert_int_equal(log.order[2], 0);
    tl_loop_free(loop);
}

static void timers_due_together_fire_in_start_order(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 4};
    tl_timer timers[4];
    tick ticks[4];
    for (int i = 0; i < 4; i++) {
        ticks[i] = (tick){&log, i};
        tl_timer_init(loop, &timers[i]);
        tl_timer_start(&timers[i], 5, on_tick, &ticks[i]);
    }
    assert_int_equal(tl_loop_run(loop), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(log.order[i], i);
    tl_loop_free(loop);
}

static void timer_fires_no_earlier_than_its_delay(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 1};
    tick t = {&log, 0};
    tl_timer timer;
    tl_timer_init(loop, &timer);
    int64_t t0 = now_ms();
    tl_timer_start(&timer, 40, on_tick, &t);
    assert_int_equal(tl_loop_run(loop), 0);
    assert_true(log.at[0] - t0 >= 40);
    assert_true(log.at[0] - t0 < 40 + 50);
    tl_loop_free(loop);
}

static void timer_stopped_before_due_never_fires(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 1};
    tick a = {&log, 1}, b = {&log, 2};
    tl_timer ta, tb;
    tl_timer_init(loop, &ta);
    tl_timer_init(loop, &tb);
    tl_timer_start(&ta, 5, on_tick, &a);
    tl_timer_start(&tb, 30, on_tick, &b);
    tl_timer_stop(&ta);
    assert_int_equal(tl_loop_run(loop), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.order[0], 2);
    tl_loop_free(loop);
}

static void timer_stop_when_not_armed_is_harmless(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    tl_timer t;
    tl_timer_init(loop, &t);
    tl_timer_stop(&t);
    tl_timer_stop(&t);
    assert_int_equal(t.heap_index, SIZE_MAX);
    tl_loop_free(loop);
}

static void timer_restarted_fires_once_at_the_new_time(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 2};
    tick a = {&log, 1}, b = {&log, 2};
    tl_timer ta, tb;
    tl_timer_init(loop, &ta);
    tl_timer_init(loop, &tb);
    tl_timer_start(&ta, 5, on_tick, &a);
    tl_timer_start(&tb, 20, on_tick, &b);
    tl_timer_start(&ta, 40, on_tick, &a); /* re-armed: later than b now */
    assert_int_equal(tl_loop_run(loop), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 2);
    assert_int_equal(log.order[1], 1);
    tl_loop_free(loop);
}

static void on_tick_rearm(tl_timer *timer, void *arg)
{
    on_tick(timer, arg);
    if (((tick *)arg)->log->n < 3)
        tl_timer_start(timer, 1, on_tick_rearm, arg);
}

static void timer_callback_may_rearm_its_own_timer(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(0);
    fired log = {.stop_after = 3};
    tick t = {&log, 7};
    tl_timer timer;
    tl_timer_init(loop, &timer);
    tl_timer_start(&timer, 1, on_tick_rearm, &t);
    assert_int_equal(tl_loop_run(loop), 0);
    assert_int_equal(log.n, 3);
    assert_int_equal(timer.heap_index, SIZE_MAX);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ all_tasks */

static int held_fn(tl_task *task, void *arg)
{
    gate_pass(arg, task);
    return 0;
}

static void loop_tasks_lists_unfinished_tasks_oldest_first_with_state_and_age(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    gate g;
    gate_init(&g);
    tl_task *running = tl_task_create(loop, held_fn, &g);
    assert_true(gate_wait_entered(loop, &g, 1));
    tl_task *queued = tl_task_create(loop, held_fn, &g);
    tl_task *future = tl_future_create(loop);
    tl_task_set_name(future, "reply-7");
    sleep_ms(30);
    tl_loop_run_once(loop, 0);

    tl_task_info info[8];
    assert_int_equal(tl_loop_tasks(loop, info, 8), 3);
    assert_ptr_equal(info[0].task, running);
    assert_int_equal(info[0].id, tl_task_id(running));
    assert_int_equal(info[0].state, TL_TASK_RUNNING);
    assert_ptr_equal(info[1].task, queued);
    assert_int_equal(info[1].state, TL_TASK_PENDING);
    assert_ptr_equal(info[2].task, future);
    assert_int_equal(info[2].state, TL_TASK_PENDING);
    assert_string_equal(info[2].name, "reply-7");
    for (int i = 0; i < 3; i++) {
        assert_true(info[i].age_ms >= 30);
        assert_true(info[i].age_ms < 30 + 500);
    }

    gate_open(&g);
    tl_task_complete(future, NULL, 0);
    tl_task *all[] = {running, queued, future};
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, all, 3, 5000, TL_ALL_COMPLETED, &res), 0);
    tl_wait_result_free(&res);
    for (int i = 0; i < 3; i++)
        tl_task_release(all[i]);
    tl_loop_free(loop);
    gate_destroy(&g);
}

static void loop_tasks_is_empty_after_tasks_finish(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(2);
    job j = {.value = 1};
    tl_task *t[4] = {tl_future_create(loop), tl_future_create(loop)};
    t[2] = tl_task_create(loop, job_fn, &j);
    t[3] = tl_task_create(loop, job_fn, &j);
    tl_task_info info[4];
    assert_true(tl_loop_tasks(loop, info, 4) >= 2);
    tl_task_complete(t[0], NULL, 0);
    tl_task_complete(t[1], NULL, TL_EFAIL);
    tl_wait_result res;
    assert_int_equal(tl_wait(loop, t, 4, 5000, TL_ALL_COMPLETED, &res), 0);
    tl_wait_result_free(&res);
    /* Still held by us, but finished: all_tasks lists unfinished ones only. */
    assert_int_equal(tl_loop_tasks(loop, info, 4), 0);
    for (int i = 0; i < 4; i++)
        tl_task_release(t[i]);
    tl_loop_free(loop);
}

static void loop_tasks_counts_all_even_beyond_cap(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[5];
    for (int i = 0; i < 5; i++)
        f[i] = tl_future_create(loop);
    tl_task_info info[2];
    assert_int_equal(tl_loop_tasks(loop, info, 2), 5);
    assert_ptr_equal(info[0].task, f[0]);
    assert_ptr_equal(info[1].task, f[1]);
    assert_int_equal(tl_loop_tasks(loop, NULL, 0), 5);
    for (int i = 0; i < 5; i++) {
        tl_task_cancel(f[i]);
        tl_task_release(f[i]);
    }
    tl_loop_free(loop);
}

static void loop_tasks_drops_a_cancelled_task(void **state)
{
    (void)state;
    tl_loop *loop = new_loop(1);
    tl_task *f[2] = {tl_future_create(loop), tl_future_create(loop)};
    tl_task_cancel(f[0]);
    tl_task_info info[2];
    assert_int_equal(tl_loop_tasks(loop, info, 2), 1);
    assert_ptr_equal(info[0].task, f[1]);
    tl_task_cancel(f[1]);
    tl_task_release(f[0]);
    tl_task_release(f[1]);
    tl_loop_free(loop);
}

/* ------------------------------------------------------------ several loops */

enum { LOOPS = 4, TASKS_PER_LOOP = 2000 };

typedef struct shard {
    pthread_t thread;
    int index;
    int rc;
    long sum;
    int timer_fired;
} shard;

static int shard_fn(tl_task *task, void *arg)
{
    tl_task_set_result(task, arg);
    return 0;
}

static void shard_tick(tl_timer *timer, void *arg)
{
    (void)timer;
    ((shard *)arg)->timer_fired++;
}

/* One service shard: its own loop, tasks, timer and gather, on its own thread. */
static void *run_shard(void *arg)
{
    shard *s = arg;
    tl_loop_opts opts = {.workers = 2};
    tl_loop *loop = NULL;
    s->rc = tl_loop_new(&opts, &loop);
    if (s->rc != 0)
        return NULL;
    tl_timer timer;
    tl_timer_init(loop, &timer);
    tl_timer_start(&timer, 1, shard_tick, s);
    tl_task **t = malloc(TASKS_PER_LOOP * sizeof(*t));
    tl_result *r = malloc(TASKS_PER_LOOP * sizeof(*r));
    for (intptr_t i = 0; i < TASKS_PER_LOOP; i++)
        t[i] = tl_task_create(loop, shard_fn, (void *)(i * LOOPS + s->index));
    s->rc = tl_gather(loop, t, TASKS_PER_LOOP, false, r);
    for (int i = 0; i < TASKS_PER_LOOP; i++) {
        s->sum += (long)(intptr_t)r[i].value;
        tl_task_release(t[i]);
    }
    for (int i = 0; i < 100 && s->timer_fired == 0; i++)
        tl_loop_run_once(loop, 5);
    free(r);
    free(t);
    tl_loop_free(loop);
    return NULL;
}

static void several_loops_on_several_threads_run_independently(void **state)
{
    (void)state;
    shard s[LOOPS];
    for (int i = 0; i < LOOPS; i++) {
        s[i] = (shard){.index = i};
        pthread_create(&s[i].thread, NULL, run_shard, &s[i]);
    }
    for (int i = 0; i < LOOPS; i++) {
        pthread_join(s[i].thread, NULL);
        long n = TASKS_PER_LOOP;
        long expect = LOOPS * n * (n - 1) / 2 + n * i;
        assert_int_equal(s[i].rc, 0);
        assert_int_equal(s[i].sum, expect);
        assert_int_equal(s[i].timer_fired, 1);
    }
}

/* ------------------------------------------------------------ a poller */

/* What a poller watches: a result another thread posts into memory they share (as a
 * worker process does), for a task that returned TL_PENDING. */
typedef struct post {
    tl_loop *loop;
    tl_task *task;
    atomic_int posted; /* the result is there */
    atomic_int asleep; /* set in SLEEP, cleared in WOKEN: the poster must wake the loop */
    atomic_int looks, sleeps, wakes, woken_by_poster;
    bool arrive_in_sleep; /* the result arrives as the loop is about to sleep */
    int fd;               /* the poller's eventfd, which the poster writes, or -1 */
} post;

static int pending_task(tl_task *task, void *arg)
{
    (void)task;
    (void)arg;
    return TL_PENDING;
}

static bool take_post(post *p)
{
    if (!atomic_load(&p->posted) || tl_task_done(p->task))
        return false;
    tl_task_complete(p->task, (void *)42, 0);
    return true;
}

static bool post_poller(tl_loop *loop, tl_poll_phase phase, void *user)
{
    post *p = user;
    (void)loop;
    if (phase == TL_POLL_LOOK) {
        atomic_fetch_add(&p->looks, 1);
        return take_post(p);
    }
    if (phase == TL_POLL_WOKEN) {
        atomic_fetch_add(&p->wakes, 1);
        atomic_store(&p->asleep, 0);
        return false;
    }
    atomic_fetch_add(&p->sleeps, 1);
    if (p->arrive_in_sleep)
        atomic_store(&p->posted, 1);
    atomic_store(&p->asleep, 1);
    return atomic_load(&p->posted) && !tl_task_done(p->task);
}

static void wake_noop(tl_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
}

/* Posts once the loop sleeps, and wakes it as a poller's contract asks. */
static void *post_when_asleep(void *arg)
{
    post *p = arg;
    for (int i = 0; i < 5000 && !atomic_load(&p->asleep); i++)
        sleep_ms(1);
    atomic_store(&p->posted, 1);
    if (atomic_load(&p->asleep)) {
        atomic_fetch_add(&p->woken_by_poster, 1);
        uint64_t one = 1;
        if (p->fd < 0)
            tl_loop_call_threadsafe(p->loop, wake_noop, NULL);
        else if (write(p->fd, &one, sizeof(one)) != sizeof(one))
            atomic_fetch_add(&p->woken_by_poster, 100);
    }
    return NULL;
}

static tl_task *start_pending(post *p)
{
    p->loop = new_loop(0);
    tl_loop_set_poller(p->loop, post_poller, p, p->fd);
    p->task = tl_task_create(p->loop, pending_task, NULL);
    return p->task;
}

static void a_poller_takes_what_arrived_at_the_next_round_with_no_wake_up(void **state)
{
    (void)state;
    post p = {.fd = -1};
    tl_task *t = start_pending(&p);
    atomic_store(&p.posted, 1);
    tl_wait_result res;
    assert_int_equal(tl_wait(p.loop, &t, 1, 10000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, 1);
    tl_wait_result_free(&res);
    assert_int_equal((intptr_t)tl_task_result(t), 42);
    assert_true(atomic_load(&p.looks) >= 1);
    assert_int_equal(atomic_load(&p.sleeps), 0);
    assert_int_equal(atomic_load(&p.wakes), 0);
    tl_task_release(t);
    tl_loop_free(p.loop);
}

/* The poster wakes the loop as a thread-safe call would, or (fd) through the eventfd
 * the loop's sleep waits on: either way the result is taken as the loop wakes. */
static void wake_by_poster(int fd)
{
    post p = {.fd = fd};
    tl_task *t = start_pending(&p);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_when_asleep, &p), 0);
    tl_wait_result res;
    assert_int_equal(tl_wait(p.loop, &t, 1, 10000, TL_ALL_COMPLETED, &res), 0);
    pthread_join(th, NULL);
    assert_int_equal(res.ndone, 1);
    tl_wait_result_free(&res);
    assert_int_equal((intptr_t)tl_task_result(t), 42);
    assert_true(atomic_load(&p.sleeps) >= 1);
    assert_int_equal(atomic_load(&p.woken_by_poster), 1);
    assert_int_equal(atomic_load(&p.wakes), atomic_load(&p.sleeps));
    tl_task_release(t);
    tl_loop_free(p.loop);
}

static void a_sleeping_loop_woken_by_the_poster_takes_the_result(void **state)
{
    (void)state;
    wake_by_poster(-1);
}

static void a_sleeping_loop_wakes_when_its_pollers_eventfd_is_written(void **state)
{
    (void)state;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    wake_by_poster(fd);
    uint64_t left;
    /* The loop read the count as it woke. */
    assert_int_equal(read(fd, &left, sizeof(left)), -1);
    close(fd);
}

static void a_poller_that_finds_an_arrival_in_sleep_keeps_the_loop_awake(void **state)
{
    (void)state;
    /* Nobody wakes the loop here: had it slept, the wait would end at its timeout
     * with the task pending. */
    post p = {.arrive_in_sleep = true, .fd = -1};
    tl_task *t = start_pending(&p);
    tl_wait_result res;
    assert_int_equal(tl_wait(p.loop, &t, 1, 10000, TL_ALL_COMPLETED, &res), 0);
    assert_int_equal(res.ndone, 1);
    tl_wait_result_free(&res);
    assert_int_equal((intptr_t)tl_task_result(t), 42);
    assert_int_equal(atomic_load(&p.sleeps), 1);
    assert_int_equal(atomic_load(&p.wakes), 1);
    tl_task_release(t);
    tl_loop_free(p.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loop_workers_reports_the_pool_size),
        cmocka_unit_test(loop_run_returns_after_stop_from_another_thread),
        cmocka_unit_test(loop_run_inside_the_running_loop_returns_ebusy),
        cmocka_unit_test(loop_call_threadsafe_runs_the_callback_on_the_loop_thread),
        cmocka_unit_test(loop_call_threadsafe_from_eight_threads_runs_each_call_once),
        cmocka_unit_test(loop_now_advances_as_the_loop_iterates),
        cmocka_unit_test(timers_fire_in_order_of_their_due_time),
        cmocka_unit_test(timers_due_together_fire_in_start_order),
        cmocka_unit_test(timer_fires_no_earlier_than_its_delay),
        cmocka_unit_test(timer_stopped_before_due_never_fires),
        cmocka_unit_test(timer_stop_when_not_armed_is_harmless),
        cmocka_unit_test(timer_restarted_fires_once_at_the_new_time),
        cmocka_unit_test(timer_callback_may_rearm_its_own_timer),
        cmocka_unit_test(loop_tasks_lists_unfinished_tasks_oldest_first_with_state_and_age),
        cmocka_unit_test(loop_tasks_is_empty_after_tasks_finish),
        cmocka_unit_test(loop_tasks_counts_all_even_beyond_cap),
        cmocka_unit_test(loop_tasks_drops_a_cancelled_task),
        cmocka_unit_test(several_loops_on_several_threads_run_independently),
        cmocka_unit_test(a_poller_takes_what_arrived_at_the_next_round_with_no_wake_up),
        cmocka_unit_test(a_sleeping_loop_woken_by_the_poster_takes_the_result),
        cmocka_unit_test(a_sleeping_loop_wakes_when_its_pollers_eventfd_is_written),
        cmocka_unit_test(a_poller_that_finds_an_arrival_in_sleep_keeps_the_loop_awake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
