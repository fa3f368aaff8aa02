/*
 * Tutorial 5.5, gather(): one call collects every result.
 *
 * The tutorial says gather's results do not come back in submission order. In
 * asyncio they do: gather returns results in the order its arguments were given,
 * whatever order the tasks finished in. taskloop keeps input order too, and this
 * program shows both orders side by side.
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { NTASKS = 5 };
static const int duration_ms[NTASKS] = {50, 10, 40, 20, 30};

static int sleeper(tl_task *task, void *arg)
{
    int ms = *(const int *)arg;
    struct timespec pause = {0, ms * 1000000L};
    nanosleep(&pause, NULL);
    tl_task_set_result(task, (void *)(intptr_t)(ms * 10));
    return 0;
}

typedef struct finish_log {
    uint64_t ids[NTASKS];
    int n;
} finish_log;

static void note_finish(tl_task *task, void *arg)
{
    finish_log *log = arg;
    if (log->n < NTASKS)
        log->ids[log->n++] = tl_task_id(task);
}

int main(void)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = NTASKS};
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    tl_task *tasks[NTASKS];
    finish_log log = {{0}, 0};
    for (int i = 0; i < NTASKS; i++) {
        tasks[i] = tl_task_create(loop, sleeper, (void *)&duration_ms[i]);
        tl_task_add_done_callback(tasks[i], note_finish, &log);
    }
    tl_result results[NTASKS];
    int rc = tl_gather(loop, tasks, NTASKS, false, results);
    /* The done-callbacks that log the order may still be queued behind gather's own. */
    for (int i = 0; i < 20 && log.n < NTASKS; i++)
        tl_loop_run_once(loop, 5);

    printf("gather: %d tasks taking", NTASKS);
    for (int i = 0; i < NTASKS; i++)
        printf(" %d", duration_ms[i]);
    printf(" ms\n  completion order:");
    for (int i = 0; i < log.n; i++)
        printf(" task-%llu", (unsigned long long)log.ids[i]);
    printf("\n  results (input order):");
    for (int i = 0; i < NTASKS; i++)
        printf(" task-%llu=%ld", (unsigned long long)tl_task_id(tasks[i]),
               (long)(intptr_t)results[i].value);
    printf("\nnote: the tutorial says gather loses submission order; asyncio's gather keeps "
           "it, and so does tl_gather\n");
    for (int i = 0; i < NTASKS; i++)
        tl_task_release(tasks[i]);
    tl_loop_free(loop);
    return rc == 0 ? 0 : 1;
}
