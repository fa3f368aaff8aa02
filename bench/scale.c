/*
 * Scale: throughput of a no-op handler with ordering partition on the worker pool, for
 * 1, 8 and 64 partitions and 1, 4 and 16 workers, on the memory source (the topic is
 * filled before the service starts). The clock runs from the first handler call until
 * every message is settled.
 *
 *   scale [-n N]       (default 200,000 messages per cell)
 *
 * Thread rules: as bench_util.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include <taskloop/memory.h>

static double run_cell(uint64_t n, int parts, int workers)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-scale-%d-%d", parts, workers);
    for (uint64_t i = 0; i < n; i++)
        tl_memory_push(topic, (int32_t)(i % (uint64_t)parts), NULL, "0123456789", 10);
    bench_mark mark = {0};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_handler(reg, "noop", bench_noop, &mark) != 0)
        return -1;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: 1000 }\n"
             "routes:\n"
             "  - { source: in, handler: noop, ordering: partition, timeout: 30s }\n",
             workers, topic, parts);
    double rate = bench_svc_rate(reg, yaml, n, 120000, &mark);
    tl_registry_free(reg);
    tl_memory_reset();
    return rate;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 2 && strcmp(argv[1], "-n") == 0 ? strtoull(argv[2], NULL, 10) : 200000;
    static const int parts[] = {1, 8, 64}, workers[] = {1, 4, 16};
    printf("scale: %" PRIu64 " messages per cell, no-op handler, ordering partition, pool;"
           " msgs/s\n",
           n);
    printf("%-12s %12s %12s %12s\n", "partitions", "1 worker", "4 workers", "16 workers");
    int rc = 0;
    for (size_t p = 0; p < 3; p++) {
        double rate[3];
        printf("%-12d", parts[p]);
        for (size_t w = 0; w < 3; w++) {
            rate[w] = run_cell(n, parts[p], workers[w]);
            printf(" %12.0f", rate[w]);
            fflush(stdout);
            rc |= rate[w] < 0;
        }
        printf("\n");
        for (size_t w = 0; w < 3; w++) {
            char variant[48];
            snprintf(variant, sizeof(variant), "p%d_w%d", parts[p], workers[w]);
            bench_result("scale", variant, "msgs_per_s", rate[w]);
        }
    }
    return rc;
}
