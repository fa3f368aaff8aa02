/*
 * Helpers shared by the service benchmarks: clocks, RSS, a service run on a thread of
 * its own, and the no-op handler whose first call marks the start of a measurement.
 *
 * Every benchmark prints a table for people and lines
 *     RESULT <bench> <variant> <metric> <value>
 * that bench/run.sh gathers into bench/results/results.csv.
 *
 * Thread rules: a bench_svc is driven by one thread (the benchmark's main thread);
 * the service runs on the thread bench_svc_start makes. The no-op handler runs on
 * workers or the loop thread and touches only its atomic counters.
 */
#ifndef TL_BENCH_UTIL_H
#define TL_BENCH_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <taskloop/config.h>
#include <taskloop/service.h>

/* Monotonic and wall clocks in nanoseconds. */
int64_t bench_now_ns(void);
int64_t bench_wall_ns(void);
void bench_sleep_us(int64_t us);

/* Resident set size in bytes (/proc/self/statm). */
long bench_rss_bytes(void);

/* CPU time used so far, in nanoseconds, by the live threads of this process whose name
 * starts with prefix (/proc/self/task/N/schedstat). Threads that ended are not counted,
 * so take both readings while the threads measured are alive. */
int64_t bench_thread_cpu_ns(const char *prefix);

/* CPU per message of the thread groups a consumer runs on: the loop (bench-loop), the
 * source, the workers, and librdkafka's threads. */
typedef struct bench_cpu {
    int64_t loop, source, workers, rdkafka;
} bench_cpu;

/* Reads the groups' CPU so far; the loop group is the calling thread when loop_self. */
void bench_cpu_read(bench_cpu *c, bool loop_self);

/* Prints "  (name: CPU per message: loop L ns, ...)" for the CPU used between a and b. */
void bench_cpu_print(const char *name, const bench_cpu *a, const bench_cpu *b, uint64_t n);

/* An unsigned number from the environment, or def when it is unset or not a number. */
uint64_t bench_env_u64(const char *name, uint64_t def);

/* Marks where a run's first handler call happened (0 until then). */
typedef struct bench_mark {
    _Atomic int64_t first_ns;
} bench_mark;

/* The no-op handler: records the time of the first call in its bench_mark user pointer. */
int bench_noop(tl_task *task, const tl_msg *msg, void *user);

/* A service built from YAML text, run by tl_service_run on its own thread. */
typedef struct bench_svc {
    tl_config *cfg;
    tl_service *svc;
    pthread_t thread;
    bool running;
    int run_rc;
} bench_svc;

/* Loads text with reg (handlers and adapters registered), builds and starts the
 * service. Prints the reason and returns nonzero on failure. */
int bench_svc_start(bench_svc *b, tl_registry *reg, const char *yaml);

/* Polls the counters until completed + rerouted reaches n or timeout_ms passes: every
 * millisecond, and every 50 us once the end is less than 2 ms away at the pace seen, so
 * the watcher takes little CPU from the service yet sees the end within 50 us. Returns
 * the monotonic time it saw the count reached, or -1 on timeout. */
int64_t bench_svc_wait_settled(bench_svc *b, uint64_t n, int64_t timeout_ms);

/* Stops the service, joins its thread and frees it with its config. */
void bench_svc_stop(bench_svc *b);

/* Runs a service from yaml until n messages are settled (at most timeout_ms) and stops
 * it: msgs/s from just before its start or, with mark, from its first handled message;
 * negative when it did not start or finish. */
double bench_svc_rate(tl_registry *reg, const char *yaml, uint64_t n, int64_t timeout_ms,
                      const bench_mark *mark);

/* One option of a benchmark program: a flag ("-n") and the number it sets. */
typedef struct bench_opt {
    const char *flag;
    long long *value;
} bench_opt;

/* Reads argv as flags of opts, each followed by a number. Returns -1 when every
 * argument was one; otherwise prints usage (to stdout for --help) and returns the exit
 * status: 0 for --help, 2 for anything else. */
int bench_parse_opts(int argc, char **argv, const bench_opt *opts, size_t nopts, const char *usage);

/* Prints the RESULT line of one figure. */
void bench_result(const char *bench, const char *variant, const char *metric, double value);

#define BENCH_MAX_ROUNDS 20

/* The msgs/s of one variant's rounds; a failed round is given as a negative rate. */
typedef struct bench_rounds {
    double rate[BENCH_MAX_ROUNDS];
    int n;
} bench_rounds;

/* Adds a round (past BENCH_MAX_ROUNDS they are ignored). */
void bench_rounds_add(bench_rounds *r, double rate);

/* The best round's rate, or -1 when every round failed. */
double bench_rounds_best(const bench_rounds *r);

/* The median of the rounds that did not fail, or -1 when every round failed. */
double bench_rounds_median(const bench_rounds *r);

/* Prints the table header for bench_rounds_row. */
void bench_rounds_header(const char *first_column, int rounds);

/* Prints a variant's best and median rounds with their ratios to the plain loop's,
 * and their RESULT lines (msgs_per_s, ratio, median_msgs_per_s, median_ratio). False
 * when every round failed. */
bool bench_rounds_row(const char *bench, const char *label, const char *variant,
                      const bench_rounds *r, const bench_rounds *plain);

#endif
