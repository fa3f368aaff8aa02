/*
 * Built against an installed libtaskloop alone: includes only <taskloop/taskloop.h>,
 * creates tasks on a worker pool, gathers some and waits for others, and prints "ok"
 * when every result came back. Linking it with -ltaskloop -lpthread and nothing else
 * is what shows the task loop needs none of the service's libraries.
 *
 * Thread rules: main drives the loop; the task functions run on its workers and touch
 * only their own argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <taskloop/taskloop.h>

#define NTASKS 8

/* Squares its argument; the result travels as a pointer-sized integer. */
static int square(tl_task *task, void *arg)
{
    uintptr_t x = (uintptr_t)arg;
    tl_task_set_result(task, (void *)(x * x));
    return 0;
}

/* Fails, so that gather has an error to report in its place. */
static int fail(tl_task *task, void *arg)
{
    (void)task;
    (void)arg;
    return TL_EFAIL;
}

/* gather: every result in input order, the failing task's error among them. */
static int check_gather(tl_loop *loop)
{
    tl_task *tasks[NTASKS + 1] = {0};
    int rc = 0;
    for (uintptr_t i = 0; i <= NTASKS; i++)
        if (!(tasks[i] = tl_task_create(loop, i < NTASKS ? square : fail, (void *)i)))
            rc = TL_ENOMEM;
    tl_result res[NTASKS + 1] = {{0}};
    if (rc == 0)
        rc = tl_gather(loop, tasks, NTASKS + 1, true, res);
    for (uintptr_t i = 0; rc == 0 && i < NTASKS; i++)
        if (res[i].error != 0 || (uintptr_t)res[i].value != i * i)
            rc = TL_EFAIL;
    if (rc == 0 && res[NTASKS].error != TL_EFAIL)
        rc = TL_EFAIL;
    for (size_t i = 0; i <= NTASKS; i++)
        tl_task_release(tasks[i]);
    if (rc != 0)
        fprintf(stderr, "main_loop: gather: %s\n", tl_strerror(rc));
    return rc;
}

/* wait: with no timeout, every task ends up done and none pending. */
static int check_wait(tl_loop *loop)
{
    tl_task *tasks[NTASKS] = {0};
    int rc = 0;
    for (uintptr_t i = 0; i < NTASKS; i++)
        if (!(tasks[i] = tl_task_create(loop, square, (void *)i)))
            rc = TL_ENOMEM;
    tl_wait_result wr = {0};
    if (rc == 0)
        rc = tl_wait(loop, tasks, NTASKS, TL_FOREVER, TL_ALL_COMPLETED, &wr);
    if (rc == 0 && (wr.ndone != NTASKS || wr.npending != 0 || wr.timed_out))
        rc = TL_EFAIL;
    for (size_t i = 0; rc == 0 && i < NTASKS; i++)
        if (!tl_task_done(tasks[i]) || (uintptr_t)tl_task_result(tasks[i]) != i * i)
            rc = TL_EFAIL;
    tl_wait_result_free(&wr);
    for (size_t i = 0; i < NTASKS; i++)
        tl_task_release(tasks[i]);
    if (rc != 0)
        fprintf(stderr, "main_loop: wait: %s\n", tl_strerror(rc));
    return rc;
}

int main(void)
{
    tl_loop_opts opts = {.workers = 2};
    tl_loop *loop = NULL;
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    int rc = check_gather(loop);
    if (rc == 0)
        rc = check_wait(loop);
    tl_loop_free(loop);
    if (rc != 0)
        return 1;
    printf("ok (taskloop %s, loop only)\n", tl_version());
    return 0;
}
