/*
 * Task overhead: what one task costs from tl_task_create to its result collected,
 * on the worker pool and inline on the loop, collected with tl_wait and tl_gather;
 * and the memory one pending task holds.
 *
 * Prints a table for people and "RESULT <mode> <n> <ns_per_task>" lines that
 * bench/run.sh reads. Usage: task_overhead [max_n]   (default 1000000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <taskloop/taskloop.h>

enum { WORKERS = 2 };

typedef enum collect { BY_WAIT, BY_GATHER } collect;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int trivial(tl_task *task, void *arg)
{
    tl_task_set_result(task, arg);
    return 0;
}

/* Runs one round: create n tasks, collect them, release them. Returns ns per task,
 * or -1 when a call failed. */
static double one_round(tl_loop *loop, tl_task **tasks, tl_result *results, size_t n,
                        unsigned flags, collect how)
{
    int64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        tasks[i] = tl_task_create_ex(loop, trivial, (void *)(uintptr_t)i, flags);
        if (!tasks[i])
            return -1;
    }
    int rc;
    if (how == BY_GATHER) {
        rc = tl_gather(loop, tasks, n, false, results);
    } else {
        tl_wait_result res;
        rc = tl_wait(loop, tasks, n, TL_FOREVER, TL_ALL_COMPLETED, &res);
        if (rc == 0 && res.ndone != n)
            rc = TL_EFAIL;
        if (rc == 0)
            tl_wait_result_free(&res);
    }
    for (size_t i = 0; i < n; i++)
        tl_task_release(tasks[i]);
    int64_t t1 = now_ns();
    return rc == 0 ? (double)(t1 - t0) / (double)n : -1;
}

/* The best of a few rounds: the figure least disturbed by the rest of the machine. */
static double measure(tl_loop *loop, size_t n, unsigned flags, collect how)
{
    tl_task **tasks = malloc(n * sizeof(*tasks));
    tl_result *results = malloc(n * sizeof(*results));
    int rounds = n >= 1000000 ? 2 : n >= 100000 ? 3 : 10;
    double best = -1;
    for (int r = 0; tasks && results && r < rounds; r++) {
        double ns = one_round(loop, tasks, results, n, flags, how);
        if (ns < 0)
            break;
        if (best < 0 || ns < best)
            best = ns;
    }
    free(results);
    free(tasks);
    return best;
}

/* Resident set size now, in bytes, from /proc (Linux). */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * 4096L;
}

static long peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

/* Memory per pending task: n futures that stay pending, with the array holding them.
 * Runs first, before any round raises the peak. */
static void measure_pending_memory(size_t n)
{
    tl_loop *loop = NULL;
    tl_loop_opts opts = {.workers = WORKERS};
    if (tl_loop_new(&opts, &loop) != 0)
        return;
    long peak0 = peak_rss_bytes(), rss0 = rss_bytes();
    tl_task **f = malloc(n * sizeof(*f));
    for (size_t i = 0; f && i < n; i++)
        f[i] = tl_future_create(loop);
    long peak1 = peak_rss_bytes(), rss1 = rss_bytes();
    printf("pending tasks: %zu futures, peak RSS +%.1f MiB = %.0f bytes per pending task "
           "(current RSS: %.0f bytes)\n",
           n, (double)(peak1 - peak0) / 1048576.0, (double)(peak1 - peak0) / (double)n,
           (double)(rss1 - rss0) / (double)n);
    printf("RESULT pending_bytes %zu %.0f\n", n, (double)(peak1 - peak0) / (double)n);
    for (size_t i = 0; f && i < n; i++) {
        tl_task_cancel(f[i]);
        tl_task_release(f[i]);
    }
    free(f);
    tl_loop_free(loop);
}

static const struct mode {
    const char *name;
    unsigned workers;
    unsigned flags;
    collect how;
} modes[] = {
    {"pool_wait", WORKERS, 0, BY_WAIT},
    {"pool_gather", WORKERS, 0, BY_GATHER},
    {"inline_wait", WORKERS, TL_TASK_INLINE, BY_WAIT},
    {"inline_gather", WORKERS, TL_TASK_INLINE, BY_GATHER},
};

int main(int argc, char **argv)
{
    size_t max_n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    measure_pending_memory(max_n);
    printf("\n%-10s", "n");
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        printf(" %14s", modes[m].name);
    printf("   (ns per task, create -> collected -> released; pool = %u workers)\n", WORKERS);
    for (size_t n = 1000; n <= max_n; n *= 10) {
        printf("%-10zu", n);
        char lines[4][96];
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            tl_loop *loop = NULL;
            tl_loop_opts opts = {.workers = modes[m].workers};
            if (tl_loop_new(&opts, &loop) != 0)
                return 1;
            double ns = measure(loop, n, modes[m].flags, modes[m].how);
            tl_loop_free(loop);
            printf(" %14.0f", ns);
            fflush(stdout);
            snprintf(lines[m], sizeof lines[m], "RESULT %s %zu %.1f", modes[m].name, n, ns);
        }
        printf("\n");
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
            printf("%s\n", lines[m]);
    }
    return 0;
}
