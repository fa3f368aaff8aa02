/*
 * Tutorial 5.6, wait(): a batch of "REST calls" pulled from a queue must be handled
 * within a deadline. tl_wait with a timeout splits the batch: the calls that answered
 * are processed at once, the stragglers are handed to a slower path that waits for
 * them on its own time. Nothing is cancelled by the timeout; the program decides.
 *
 * Usage: wait [seed]   (the same seed gives the same durations)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { NCALLS = 10, DEADLINE_MS = 100, MIN_MS = 20, MAX_MS = 250 };

typedef struct rest_call {
    int id;
    int duration_ms;
    int status; /* the HTTP status the simulated server answers */
} rest_call;

static const char *const paths[] = {"/orders", "/stock", "/prices", "/users", "/invoices"};

static int do_call(tl_task *task, void *arg)
{
    const rest_call *call = arg;
    struct timespec pause = {call->duration_ms / 1000, (call->duration_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
    tl_task_set_result(task, (void *)call);
    return 0;
}

static void plan_calls(rest_call *calls, unsigned seed)
{
    srand(seed);
    for (int i = 0; i < NCALLS; i++) {
        calls[i].id = i + 1;
        calls[i].duration_ms = MIN_MS + rand() % (MAX_MS - MIN_MS + 1);
        calls[i].status = rand() % 8 == 0 ? 503 : 200;
    }
}

static void describe(const rest_call *call, char *buf, size_t len)
{
    snprintf(buf, len, "GET %s/%d", paths[call->id % 5], call->id);
}

static void process_done(tl_task **done, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const rest_call *call = tl_task_result(done[i]);
        char what[32];
        describe(call, what, sizeof what);
        printf("  processed  %-18s %d in %3d ms\n", what, call->status, call->duration_ms);
    }
}

/* The slow path: no deadline here, it waits for every straggler and reports it. */
static int slow_path(tl_loop *loop, tl_task **pending, size_t n, int64_t started_ms)
{
    tl_as_completed *it = NULL;
    int rc = tl_as_completed_new(loop, pending, n, TL_FOREVER, &it);
    tl_task *t = NULL;
    while (rc == 0 && (rc = tl_as_completed_next(it, &t)) == 0) {
        const rest_call *call = tl_task_result(t);
        char what[32];
        describe(call, what, sizeof what);
        printf("  slow path  %-18s %d in %3d ms (answered %lld ms after the batch began)\n", what,
               call->status, call->duration_ms, (long long)(tl_loop_now(loop) - started_ms));
    }
    tl_as_completed_free(it);
    return rc == TL_EOF ? 0 : rc;
}

int main(int argc, char **argv)
{
    unsigned seed = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : (unsigned)time(NULL);
    rest_call calls[NCALLS];
    plan_calls(calls, seed);

    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = NCALLS};
    int rc = tl_loop_new(&opts, &loop);
    if (rc != 0) {
        fprintf(stderr, "wait: %s\n", tl_strerror(rc));
        return 1;
    }
    printf("wait: %d REST calls pulled from a queue, deadline %d ms (seed %u)\n", NCALLS,
           DEADLINE_MS, seed);
    tl_task *tasks[NCALLS];
    for (int i = 0; i < NCALLS; i++)
        tasks[i] = tl_task_create(loop, do_call, &calls[i]);
    tl_loop_run_once(loop, 0);
    int64_t started_ms = tl_loop_now(loop);

    tl_wait_result res;
    rc = tl_wait(loop, tasks, NCALLS, DEADLINE_MS, TL_ALL_COMPLETED, &res);
    if (rc != 0) {
        fprintf(stderr, "wait: %s\n", tl_strerror(rc));
        return 1;
    }
    printf("after %d ms: %zu answered, %zu still running%s\n", DEADLINE_MS, res.ndone, res.npending,
           res.timed_out ? " (deadline reached, nothing cancelled)" : "");
    process_done(res.done, res.ndone);
    size_t ndone = res.ndone, nslow = res.npending;
    if (nslow > 0)
        rc = slow_path(loop, res.pending, res.npending, started_ms);
    tl_wait_result_free(&res);

    printf("done: %zu, handed to slow path: %zu\n", ndone, nslow);
    for (int i = 0; i < NCALLS; i++)
        tl_task_release(tasks[i]);
    tl_loop_free(loop);
    return rc == 0 ? 0 : 1;
}
