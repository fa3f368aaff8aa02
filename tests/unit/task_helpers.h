/*
 * Helpers shared by the task-function tests: clocks, a gate that holds task
 * functions until the test opens it, a configurable job, and a script thread that
 * completes futures at set times. Assertions stay on the test's main thread.
 */
#ifndef TL_TEST_TASK_HELPERS_H
#define TL_TEST_TASK_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskloop/taskloop.h>

/* Monotonic milliseconds. */
int64_t now_ms(void);

/* Sleeps ms milliseconds. */
void sleep_ms(int ms);

/* A gate holds task functions until the test opens it, so "slow" is a decision,
 * not a sleep. Held functions also leave when their task is cancelled. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int entered;
} gate;

/* A closed gate. */
void gate_init(gate *g);

/* Frees a gate nobody waits at. */
void gate_destroy(gate *g);

/* Lets every held function go, and all later ones pass. */
void gate_open(gate *g);

/* Returns true when the task was cancelled while it waited. */
bool gate_pass(gate *g, const tl_task *task);

/* Runs the loop up to 5 s until n functions are held at the gate: the loop hands
 * tasks to the workers, so nothing starts while it is not run. */
bool gate_wait_entered(tl_loop *loop, gate *g, int n);

/* What one task function does: optionally wait at a gate, then return value or err. */
typedef struct job {
    gate *g;
    intptr_t value;
    int err;
    atomic_int runs;
    atomic_bool saw_cancel;
} job;

/* The task function of a job (arg is the job). */
int job_fn(tl_task *task, void *arg);

/* A loop with that many workers; fails the test if it cannot be made. */
tl_loop *new_loop(unsigned workers);

/* One step of a script: after delay_ms, complete tasks[index] with err. */
typedef struct step {
    int index;
    int delay_ms;
    int err;
} step;

/* A thread completing futures by steps (results: index + 100). */
typedef struct script {
    pthread_t thread;
    tl_task **tasks;
    const step *steps;
    size_t nsteps;
} script;

/* Starts the script's thread; join s->thread when done. */
void script_start(script *s, tl_task **tasks, const step *steps, size_t nsteps);

/* Runs the loop in short turns until *flag or limit_ms passed; returns *flag. */
bool run_until(tl_loop *loop, const bool *flag, int64_t limit_ms);

/* n futures (tasks without a function). */
void make_futures(tl_loop *loop, tl_task **out, size_t n);

/* Releases n tasks. */
void release_all(tl_task **tasks, size_t n);

/* A blocking task function called by call(loop, pending_future) from a timer callback
 * while tl_loop_run runs; fails the test unless it returned TL_EBUSY. */
void assert_blocking_call_returns_ebusy(int (*call)(tl_loop *loop, tl_task *pending));

#endif
