/*
 * Isolation: throughput of the built-in `work` handler on the memory source with
 * `isolation: thread` and `isolation: process`, for a no-op handler (`ms: 0`), a
 * 1 ms one and one burning 20 us of CPU, 4 workers (-w), 4 partitions, ordering none.
 * The clock runs from the service's start (the worker processes are forked within it)
 * until every message is settled.
 *
 *   isolation [-n N] [-m MS | -s US] [-w W]   (default 50,000 no-op messages, a
 *                              twentieth of them at 1 ms and a tenth at 20 us of CPU;
 *                              -m or -s runs that handler cost alone, for a profiler)
 *
 * Thread rules: as bench_util.h.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include <taskloop/memory.h>

/* CPU seconds this process and its reaped descendants (the zygote, and through it
 * the worker processes) used so far. */
static double cpu_s(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    struct timeval t[] = {self.ru_utime, self.ru_stime, kids.ru_utime, kids.ru_stime};
    double s = 0;
    for (size_t i = 0; i < 4; i++)
        s += (double)t[i].tv_sec + (double)t[i].tv_usec / 1e6;
    return s;
}

/* msgs/s of one cell; *cpu_us: CPU microseconds per message, every thread and worker
 * process of the service counted, from its start until it was freed. */
static double run_cell(uint64_t n, const char *isolation, int ms, int spin_us, int workers,
                       double *cpu_us)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-iso-%s-%d-%d", isolation, ms, spin_us);
    for (uint64_t i = 0; i < n; i++)
        tl_memory_push(topic, (int32_t)(i % 4), NULL, "0123456789", 10);
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_builtin_handlers(reg) != 0)
        return -1;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: 4, batch: 1000 }\n"
             "routes:\n"
             "  - { source: in, handler: work, ordering: none, timeout: 30s,\n"
             "      isolation: %s, params: { ms: \"%d\", spin_us: \"%d\" } }\n",
             workers, topic, isolation, ms, spin_us);
    double before = cpu_s();
    double rate = bench_svc_rate(reg, yaml, n, 120000, NULL);
    *cpu_us = (cpu_s() - before) * 1e6 / (double)n;
    tl_registry_free(reg);
    tl_memory_reset();
    return rate;
}

/* A handler cost: sleep ms, then burn spin_us of CPU; n_div: the cell runs n / n_div. */
typedef struct cell {
    const char *label;
    int ms, spin_us;
    uint64_t n_div;
} cell;

int main(int argc, char **argv)
{
    long long n = 50000, only_ms = -1, only_spin = -1, workers = 4;
    const bench_opt opts[] = {{"-n", &n}, {"-m", &only_ms}, {"-s", &only_spin}, {"-w", &workers}};
    int rc =
        bench_parse_opts(argc, argv, opts, 4,
                         "usage: isolation [-n MESSAGES] [-m HANDLER_MS (0 or 1) | -s SPIN_US] "
                         "[-w WORKERS]\n"
                         "  thread against process isolation on the memory source; -n is the\n"
                         "  no-op count (default 50000), the 1 ms cell runs n/20, the 20 us CPU\n"
                         "  cell n/10; -m runs one sleeping cell alone, -s one CPU cell of that\n"
                         "  many microseconds (n/10 messages)\n");
    if (rc >= 0)
        return rc;
    if (workers < 1 || workers > 64 || only_spin > 100000 || only_ms > 1000 || n < 1) {
        fprintf(stderr, "isolation: -w takes 1 to 64 workers, -s at most 100000 us, -m at most "
                        "1000 ms, -n at least 1\n");
        return 2;
    }
    cell cells[] = {{"no-op", 0, 0, 1}, {"1 ms", 1, 0, 20}, {"20 us CPU", 0, 20, 10}};
    char spin_label[32];
    if (only_spin >= 0) {
        snprintf(spin_label, sizeof(spin_label), "%lld us CPU", only_spin);
        cells[2] = (cell){spin_label, 0, (int)only_spin, 10};
    }
    printf("isolation: `work` handler, %lld workers, 4 partitions, ordering none; msgs/s\n",
           workers);
    printf("%-10s %10s %14s %14s %8s %18s\n", "handler", "messages", "thread", "process", "ratio",
           "CPU us/msg t / p");
    for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
        const cell *c = &cells[i];
        bool spin_cell = c->spin_us > 0 || i == 2; /* the last cell burns CPU */
        if ((only_ms >= 0 && (spin_cell || c->ms != only_ms)) || (only_spin >= 0 && !spin_cell))
            continue;
        uint64_t cell_n = (uint64_t)n / c->n_div;
        double t_cpu, p_cpu;
        double t = run_cell(cell_n, "thread", c->ms, c->spin_us, (int)workers, &t_cpu);
        double p = run_cell(cell_n, "process", c->ms, c->spin_us, (int)workers, &p_cpu);
        printf("%-10s %10" PRIu64 " %14.0f %14.0f %7.0f%% %9.2f / %.2f\n", c->label, cell_n, t, p,
               t > 0 ? 100.0 * p / t : 0.0, t_cpu, p_cpu);
        char variant[48];
        if (spin_cell)
            snprintf(variant, sizeof(variant), "thread_%dus_cpu", c->spin_us);
        else
            snprintf(variant, sizeof(variant), "thread_%dms", c->ms);
        bench_result("isolation", variant, "msgs_per_s", t);
        bench_result("isolation", variant, "cpu_us_per_msg", t_cpu);
        if (spin_cell)
            snprintf(variant, sizeof(variant), "process_%dus_cpu", c->spin_us);
        else
            snprintf(variant, sizeof(variant), "process_%dms", c->ms);
        bench_result("isolation", variant, "msgs_per_s", p);
        bench_result("isolation", variant, "cpu_us_per_msg", p_cpu);
    }
    return 0;
}
