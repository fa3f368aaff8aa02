/*
 * Tutorial 5.3, Task.cancel(): rate limiting. A burst of requests arrives; only the
 * first LIMIT may run, so every pending task beyond the limit is cancelled.
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { NREQ = 10, LIMIT = 4 };

/* A request that takes 20 ms but gives up early when cancelled. */
static int request(tl_task *task, void *arg)
{
    for (int ms = 0; ms < 20; ms++) {
        if (tl_cancelled(task))
            return TL_ECANCELED;
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
    }
    tl_task_set_result(task, arg);
    return 0;
}

int main(void)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = 2};
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    printf("cancel: %d requests arrive at once; the rate limit lets %d run\n", NREQ, LIMIT);
    tl_task *tasks[NREQ];
    for (intptr_t i = 0; i < NREQ; i++)
        tasks[i] = tl_task_create(loop, request, (void *)(i + 1));

    printf("pending before the limit: %zu\n", tl_loop_tasks(loop, NULL, 0));
    for (int i = LIMIT; i < NREQ; i++) {
        int rc = tl_task_cancel(tasks[i]);
        printf("  cancel request %d: %s\n", i + 1, rc == 0 ? "ok" : tl_strerror(rc));
    }
    printf("pending after the limit: %zu\n", tl_loop_tasks(loop, NULL, 0));

    tl_result results[NREQ];
    tl_gather(loop, tasks, NREQ, true, results);
    int ran = 0, cancelled = 0;
    for (int i = 0; i < NREQ; i++) {
        bool was_cancelled = results[i].error == TL_ECANCELED;
        ran += !was_cancelled;
        cancelled += was_cancelled;
        printf("  request %2d: %s\n", i + 1, was_cancelled ? "cancelled" : "served");
        tl_task_release(tasks[i]);
    }
    printf("served: %d, cancelled: %d\n", ran, cancelled);
    tl_loop_free(loop);
    return ran == LIMIT ? 0 : 1;
}
