/*
 * Tutorial 5.1, create_task / ensure_future: a generator hands the loop five
 * distinct tasks, the worker pool runs them, and gather collects their results.
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { NTASKS = 5 };

static int square(tl_task *task, void *arg)
{
    intptr_t n = (intptr_t)arg;
    /* A little work of a different length each, so the tasks overlap on the pool. */
    struct timespec pause = {0, (long)(NTASKS - n) * 5 * 1000000L};
    nanosleep(&pause, NULL);
    tl_task_set_result(task, (void *)(n * n));
    return 0;
}

/* The generator: each call yields the next distinct task, NULL when exhausted. */
typedef struct task_gen {
    tl_loop *loop;
    intptr_t next;
} task_gen;

static tl_task *task_gen_next(task_gen *gen)
{
    if (gen->next > NTASKS)
        return NULL;
    intptr_t n = gen->next++;
    tl_task *task = tl_task_create(gen->loop, square, (void *)n);
    if (task) {
        char name[32];
        snprintf(name, sizeof name, "square(%ld)", (long)n);
        tl_task_set_name(task, name);
    }
    return task;
}

int main(void)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = 3};
    int rc = tl_loop_new(&opts, &loop);
    if (rc != 0) {
        fprintf(stderr, "create_tasks: %s\n", tl_strerror(rc));
        return 1;
    }
    printf("create_tasks: a generator hands the loop %d distinct tasks\n", NTASKS);
    task_gen gen = {loop, 1};
    tl_task *tasks[NTASKS];
    size_t n = 0;
    for (tl_task *t; n < NTASKS && (t = task_gen_next(&gen)) != NULL;) {
        tasks[n++] = t;
        printf("  created task %llu %s\n", (unsigned long long)tl_task_id(t), tl_task_name(t));
    }

    tl_result results[NTASKS];
    rc = tl_gather(loop, tasks, n, true, results);
    for (size_t i = 0; i < n; i++) {
        printf("  task %llu %s -> %ld\n", (unsigned long long)tl_task_id(tasks[i]),
               tl_task_name(tasks[i]), (long)(intptr_t)results[i].value);
        tl_task_release(tasks[i]);
    }
    printf("all %zu tasks done (%s)\n", n, tl_strerror(rc));
    tl_loop_free(loop);
    return rc == 0 ? 0 : 1;
}
