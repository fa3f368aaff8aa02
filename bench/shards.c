/*
 * Shards: throughput of one service with `loop.shards` 1, 2 and 4 on the memory source
 * (8 partitions, filled before the service starts, ordering partition), for a no-op
 * handler and one burning 5 us of CPU, with the CPU each message cost the process and
 * the shards' loop threads. The clock runs from the service's start until every
 * message is settled. On a machine with C cores, shards past C - 1 (a core for the
 * source and the workers) only share them; the loop CPU per message says what a shard
 * can take on a core of its own.
 *
 *   shards [-n N] [-w WORKERS]    (default 400,000 messages per cell, 4 workers a shard)
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

#define PARTS 8

/* CPU time of the whole process so far, in ns. */
static int64_t process_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

typedef struct cell {
    double rate;            /* msgs/s; negative: failed */
    double cpu_ns, loop_ns; /* per message: the process, the shards' loop threads */
} cell;

static cell run_cell(uint64_t n, int shards, int spin_us, int workers)
{
    cell c = {-1, 0, 0};
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-shards-%d-%d", shards, spin_us);
    for (uint64_t i = 0; i < n; i++)
        tl_memory_push(topic, (int32_t)(i % PARTS), NULL, "0123456789", 10);
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_builtin_handlers(reg) != 0)
        return c;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: %d, shards: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: 1000 }\n"
             "routes:\n"
             "  - { source: in, handler: work, ordering: partition, timeout: 30s,\n"
             "      params: { ms: \"0\", spin_us: \"%d\" } }\n",
             workers, shards, topic, PARTS, spin_us);
    bench_svc b;
    int64_t cpu0 = process_cpu_ns();
    int64_t start = bench_now_ns();
    if (bench_svc_start(&b, reg, yaml) == 0) {
        int64_t done = bench_svc_wait_settled(&b, n, 120000);
        /* Read while the loop threads live. */
        int64_t loops = bench_thread_cpu_ns("bench-loop") + bench_thread_cpu_ns("tl-shard");
        int64_t cpu = process_cpu_ns() - cpu0;
        if (done > 0) {
            c.rate = (double)n / ((double)(done - start) / 1e9);
            c.cpu_ns = (double)cpu / (double)n;
            c.loop_ns = (double)loops / (double)n;
        }
        bench_svc_stop(&b);
    }
    tl_registry_free(reg);
    tl_memory_reset();
    return c;
}

int main(int argc, char **argv)
{
    long long n = 400000, workers = 4;
    const bench_opt opts[] = {{"-n", &n}, {"-w", &workers}};
    int rc = bench_parse_opts(argc, argv, opts, 2,
                              "usage: shards [-n MESSAGES] [-w WORKERS]\n"
                              "  one service on 1, 2 and 4 shards, memory source, 8 partitions;\n"
                              "  -n messages per cell (default 400000; the 5 us cells a tenth),\n"
                              "  -w workers of each shard (default 4)\n");
    if (rc >= 0)
        return rc;
    if (workers < 1 || workers > 64 || n < 1) {
        fprintf(stderr, "shards: -w takes 1 to 64 workers, -n at least 1\n");
        return 2;
    }
    static const int shard_counts[] = {1, 2, 4}, spins[] = {0, 5};
    printf("shards: `work` handler, %lld workers a shard, %d partitions, ordering partition\n",
           workers, PARTS);
    printf("%-10s %8s %10s %14s %10s %14s %14s\n", "handler", "shards", "messages", "msgs/s",
           "vs 1", "CPU ns/msg", "loop ns/msg");
    rc = 0;
    for (size_t s = 0; s < sizeof(spins) / sizeof(spins[0]); s++) {
        double one = 0;
        uint64_t cell_n = (uint64_t)(spins[s] ? n / 10 : n);
        for (size_t k = 0; k < sizeof(shard_counts) / sizeof(shard_counts[0]); k++) {
            cell c = run_cell(cell_n, shard_counts[k], spins[s], (int)workers);
            rc |= c.rate < 0;
            if (k == 0)
                one = c.rate;
            printf("%-10s %8d %10" PRIu64 " %14.0f %9.0f%% %14.0f %14.0f\n",
                   spins[s] ? "5 us CPU" : "no-op", shard_counts[k], cell_n, c.rate,
                   one > 0 ? 100.0 * c.rate / one : 0.0, c.cpu_ns, c.loop_ns);
            char variant[48];
            snprintf(variant, sizeof(variant), "s%d_%dus", shard_counts[k], spins[s]);
            bench_result("shards", variant, "msgs_per_s", c.rate);
            snprintf(variant, sizeof(variant), "s%d_%dus_cpu", shard_counts[k], spins[s]);
            bench_result("shards", variant, "ns_per_msg", c.cpu_ns);
            snprintf(variant, sizeof(variant), "s%d_%dus_loop", shard_counts[k], spins[s]);
            bench_result("shards", variant, "ns_per_msg", c.loop_ns);
        }
    }
    return rc;
}
