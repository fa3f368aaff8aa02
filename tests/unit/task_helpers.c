/* Helpers shared by the task-function tests; see task_helpers.h. */
#include "task_helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
    g->entered = 0;
}

void gate_destroy(gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Returns true when the task was cancelled while it waited. */
bool gate_pass(gate *g, const tl_task *task)
{
    bool cancelled = false;
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open && !(cancelled = tl_cancelled(task))) {
        /* Cancellation is a flag, not a signal: poll it every millisecond. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return cancelled;
}

/* Runs the loop up to 5 s until n functions are held at the gate: the loop hands
 * tasks to the workers, so nothing starts while it is not run. */
bool gate_wait_entered(tl_loop *loop, gate *g, int n)
{
    int64_t end = now_ms() + 5000;
    pthread_mutex_lock(&g->mu);
    while (g->entered < n && now_ms() < end) {
        pthread_mutex_unlock(&g->mu);
        tl_loop_run_once(loop, 1);
        pthread_mutex_lock(&g->mu);
    }
    bool ok = g->entered >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

int job_fn(tl_task *task, void *arg)
{
    job *j = arg;
    atomic_fetch_add(&j->runs, 1);
    if (j->g && gate_pass(j->g, task))
        atomic_store(&j->saw_cancel, true);
    if (j->err) {
        tl_task_set_error_text(task, "job failed on purpose");
        return j->err;
    }
    tl_task_set_result(task, (void *)j->value);
    return 0;
}

tl_loop *new_loop(unsigned workers)
{
    tl_loop_opts opts = {.workers = workers};
    tl_loop *loop = NULL;
    assert_int_equal(tl_loop_new(&opts, &loop), 0);
    assert_non_null(loop);
    return loop;
}

static void *run_script(void *arg)
{
    script *s = arg;
    for (size_t i = 0; i < s->nsteps; i++) {
        sleep_ms(s->steps[i].delay_ms);
        int idx = s->steps[i].index;
        tl_task_complete(s->tasks[idx], (void *)(intptr_t)(idx + 100), s->steps[i].err);
    }
    return NULL;
}

void script_start(script *s, tl_task **tasks, const step *steps, size_t nsteps)
{
    *s = (script){.tasks = tasks, .steps = steps, .nsteps = nsteps};
    pthread_create(&s->thread, NULL, run_script, s);
}

void make_futures(tl_loop *loop, tl_task **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = tl_future_create(loop);
        assert_non_null(out[i]);
    }
}

void release_all(tl_task **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tl_task_release(tasks[i]);
}

typedef struct nested_call {
    int (*call)(tl_loop *loop, tl_task *pending);
    tl_task *task;
    int rc;
    bool ran;
} nested_call;

static void nested_from_timer(tl_timer *timer, void *arg)
{
    nested_call *n = arg;
    n->rc = n->call(timer->loop, n->task);
    n->ran = true;
    tl_loop_stop(timer->loop);
}

void assert_blocking_call_returns_ebusy(int (*call)(tl_loop *loop, tl_task *pending))
{
    tl_loop *loop = new_loop(1);
    /* Pending, so that the call would have to run the loop to finish. */
    nested_call n = {.call = call, .task = tl_future_create(loop), .rc = 1};
    tl_timer timer;
    tl_timer_init(loop, &timer);
    tl_timer_start(&timer, 0, nested_from_timer, &n);
    assert_int_equal(tl_loop_run(loop), 0);
    assert_true(n.ran);
    assert_int_equal(n.rc, TL_EBUSY);
    tl_task_complete(n.task, NULL, 0);
    tl_task_release(n.task);
    tl_loop_free(loop);
}

bool run_until(tl_loop *loop, const bool *flag, int64_t limit_ms)
{
    int64_t end = now_ms() + limit_ms;
    while (!*flag && now_ms() < end)
        tl_loop_run_once(loop, 10);
    return *flag;
}
