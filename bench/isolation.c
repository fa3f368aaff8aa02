/*
 * Isolation: throughput of the built-in `work` handler on the memory source with
 * `isolation: thread` and `isolation: process`, for a no-op handler (`ms: 0`) and a
 * 1 ms one, 4 workers (-w), 4 partitions, ordering none. The clock runs from the service's
 * start (the worker processes are forked within it) until every message is settled.
 *
 *   isolation [-n N] [-m MS] [-w W]   (default 50,000 no-op messages and a twentieth of
 *                              them at 1 ms; -m runs that handler cost alone, for
 *                              a profiler)
 *
 * Thread rules: as bench_util.h.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include <taskloop/memory.h>

static double run_cell(uint64_t n, const char *isolation, int ms, int workers)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-iso-%s-%d", isolation, ms);
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
             "      isolation: %s, params: { ms: \"%d\" } }\n",
             workers, topic, isolation, ms);
    bench_svc b;
    double rate = -1;
    int64_t start = bench_now_ns();
    if (bench_svc_start(&b, reg, yaml) == 0) {
        int64_t done = bench_svc_wait_settled(&b, n, 120000);
        if (done > 0)
            rate = (double)n / ((double)(done - start) / 1e9);
        bench_svc_stop(&b);
    }
    tl_registry_free(reg);
    tl_memory_reset();
    return rate;
}

int main(int argc, char **argv)
{
    uint64_t n = 50000;
    int only = -1;
    int workers = 4;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 < argc && strcmp(argv[i], "-n") == 0) {
            n = strtoull(argv[i + 1], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "-m") == 0) {
            only = atoi(argv[i + 1]);
        } else if (i + 1 < argc && strcmp(argv[i], "-w") == 0) {
            workers = atoi(argv[i + 1]);
        } else {
            bool help = strcmp(argv[i], "--help") == 0;
            fprintf(help ? stdout : stderr,
                    "usage: isolation [-n MESSAGES] [-m HANDLER_MS (0 or 1)] [-w WORKERS]\n"
                    "  thread against process isolation on the memory source; -n is the\n"
                    "  no-op count (default 50000), the 1 ms cell runs n/20\n");
            return help ? 0 : 2;
        }
    }
    static const int mss[] = {0, 1};
    if (workers < 1 || workers > 64) {
        fprintf(stderr, "isolation: -w takes 1 to 64 workers\n");
        return 2;
    }
    printf("isolation: `work` handler, %d workers, 4 partitions, ordering none; msgs/s\n", workers);
    printf("%-10s %10s %14s %14s %8s\n", "handler", "messages", "thread", "process", "ratio");
    for (size_t i = 0; i < sizeof(mss) / sizeof(mss[0]); i++) {
        if (only >= 0 && mss[i] != only)
            continue;
        uint64_t cell_n = mss[i] ? n / 20 : n;
        double t = run_cell(cell_n, "thread", mss[i], workers);
        double p = run_cell(cell_n, "process", mss[i], workers);
        const char *label = mss[i] ? "1 ms" : "no-op";
        printf("%-10s %10" PRIu64 " %14.0f %14.0f %7.0f%%\n", label, cell_n, t, p,
               t > 0 ? 100.0 * p / t : 0.0);
        char variant[32];
        snprintf(variant, sizeof(variant), "thread_%dms", mss[i]);
        bench_result("isolation", variant, "msgs_per_s", t);
        snprintf(variant, sizeof(variant), "process_%dms", mss[i]);
        bench_result("isolation", variant, "msgs_per_s", p);
    }
    return 0;
}
