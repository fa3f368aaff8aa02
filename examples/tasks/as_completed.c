/*
 * Tutorial 5.4, as_completed(): handle each task as soon as it finishes, in the
 * order they finish rather than the order they were started.
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
    tl_task_set_result(task, (void *)arg);
    return 0;
}

int main(void)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = NTASKS};
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    printf("as_completed: started in order");
    tl_task *tasks[NTASKS];
    for (int i = 0; i < NTASKS; i++) {
        tasks[i] = tl_task_create(loop, sleeper, (void *)&duration_ms[i]);
        printf(" task-%d (%d ms)", i + 1, duration_ms[i]);
    }
    printf("\n");

    tl_as_completed *it = NULL;
    int rc = tl_as_completed_new(loop, tasks, NTASKS, 5000, &it);
    int n = 0, last_ms = 0;
    bool ordered = true;
    tl_task *t = NULL;
    while (rc == 0 && (rc = tl_as_completed_next(it, &t)) == 0) {
        int ms = *(const int *)tl_task_result(t);
        ordered = ordered && ms >= last_ms;
        last_ms = ms;
        printf("  finished #%d: task-%llu after %d ms\n", ++n, (unsigned long long)tl_task_id(t),
               ms);
    }
    printf("%d of %d yielded (%s), %s\n", n, NTASKS, tl_strerror(rc),
           ordered ? "shortest first: completion order" : "order disturbed by a busy machine");
    tl_as_completed_free(it);
    for (int i = 0; i < NTASKS; i++)
        tl_task_release(tasks[i]);
    tl_loop_free(loop);
    return rc == TL_EOF && n == NTASKS ? 0 : 1;
}
