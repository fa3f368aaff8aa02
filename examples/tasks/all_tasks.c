/*
 * Tutorial 5.2, all_tasks(): see which tasks are still pending, in what state and
 * for how long, the way a production service gauges its workload.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { NJOBS = 5, WORKERS = 2 };

/* The jobs wait for a go signal so the listing shows a stable picture. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool go;
static int started;

static int job(tl_task *task, void *arg)
{
    (void)task;
    pthread_mutex_lock(&mu);
    started++;
    pthread_cond_broadcast(&cv);
    while (!go)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    tl_task_set_result(task, arg);
    return 0;
}

static void show_tasks(tl_loop *loop, const char *when)
{
    tl_task_info info[16];
    size_t total = tl_loop_tasks(loop, info, 16);
    printf("all_tasks %s: %zu unfinished\n", when, total);
    if (total > 0)
        printf("  %-4s %-14s %-9s %s\n", "id", "name", "state", "age");
    for (size_t i = 0; i < total && i < 16; i++)
        printf("  %-4llu %-14s %-9s %lld ms\n", (unsigned long long)info[i].id,
               info[i].name ? info[i].name : "-", tl_task_state_name(info[i].state),
               (long long)info[i].age_ms);
}

int main(void)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = WORKERS};
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    printf("all_tasks: %d jobs on %d workers, plus one reply we are still waiting for\n", NJOBS,
           WORKERS);
    tl_task *tasks[NJOBS + 1];
    for (intptr_t i = 0; i < NJOBS; i++) {
        tasks[i] = tl_task_create(loop, job, (void *)i);
        char name[16];
        snprintf(name, sizeof name, "job-%ld", (long)i + 1);
        tl_task_set_name(tasks[i], name);
    }
    tasks[NJOBS] = tl_future_create(loop);
    tl_task_set_name(tasks[NJOBS], "reply");

    /* Tasks reach the workers through the loop, so run it until both are busy. */
    for (bool busy = false; !busy;) {
        tl_loop_run_once(loop, 1);
        pthread_mutex_lock(&mu);
        busy = started >= WORKERS;
        pthread_mutex_unlock(&mu);
    }
    struct timespec pause = {0, 25 * 1000000L};
    nanosleep(&pause, NULL);
    tl_loop_run_once(loop, 0); /* refresh the loop's clock, which ages are read from */
    show_tasks(loop, "while busy");

    pthread_mutex_lock(&mu);
    go = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    tl_task_complete(tasks[NJOBS], NULL, 0);
    tl_wait_result res;
    int rc = tl_wait(loop, tasks, NJOBS + 1, 5000, TL_ALL_COMPLETED, &res);
    if (rc == 0)
        tl_wait_result_free(&res);
    show_tasks(loop, "after wait");
    for (int i = 0; i <= NJOBS; i++)
        tl_task_release(tasks[i]);
    tl_loop_free(loop);
    return rc == 0 ? 0 : 1;
}
