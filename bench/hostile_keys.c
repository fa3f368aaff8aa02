/*
 * Hostile keys: ordering key with every message on a key of its own, once with keys
 * as an application would write them and once with keys chosen to collide in the
 * ordering lanes' hash table (bytes that differ only in their top bit, which never
 * reaches a plain FNV-1a hash's low bits, the bits a table's bucket is picked by). A
 * producer that can choose keys should not be able to slow the service down by
 * choosing them this way: the two rows should match.
 *
 *   hostile_keys [-n N] [-w WORKERS] [-m IN_FLIGHT]
 *     (default 200,000 messages a row, 4 workers, a window of 10,000)
 *
 * The memory source, 8 partitions filled before the start, the built-in `work`
 * handler as a no-op; the clock runs from the service's start until every message is
 * settled.
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

#define PARTS 8
#define KEY_LEN 24

/* Message i's key: distinct for every i < 2^KEY_LEN. Hostile keys are made of the
 * bytes 'A' and 'A' | 0x80 only, so they agree in the low seven bits of every byte. */
static void make_key(uint64_t i, bool hostile, unsigned char key[KEY_LEN])
{
    if (hostile) {
        for (int b = 0; b < KEY_LEN; b++)
            key[b] = (unsigned char)('A' | (((i >> b) & 1) << 7));
    } else {
        char text[32];
        snprintf(text, sizeof(text), "order-%018" PRIu64, i);
        memcpy(key, text, KEY_LEN);
    }
}

/* msgs/s of one row; negative when the run failed. */
static double run_row(uint64_t n, bool hostile, int workers, int in_flight)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "bench-keys-%s", hostile ? "hostile" : "plain");
    for (uint64_t i = 0; i < n; i++) {
        unsigned char key[KEY_LEN];
        make_key(i, hostile, key);
        tl_out_msg m = {"0123456789", 10, key, KEY_LEN, NULL, 0};
        if (tl_memory_push_msg(topic, (int32_t)(i % PARTS), &m) < 0)
            return -1;
    }
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_builtin_handlers(reg) != 0)
        return -1;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: %d, max_in_flight: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: 1000 }\n"
             "routes:\n"
             "  - { source: in, handler: work, ordering: key, timeout: 30s,\n"
             "      params: { ms: \"0\" } }\n",
             workers, in_flight, topic, PARTS);
    double rate = bench_svc_rate(reg, yaml, n, 300000, NULL);
    tl_registry_free(reg);
    tl_memory_reset();
    return rate;
}

int main(int argc, char **argv)
{
    long long n = 200000, workers = 4, in_flight = 10000;
    const bench_opt opts[] = {{"-n", &n}, {"-w", &workers}, {"-m", &in_flight}};
    int rc =
        bench_parse_opts(argc, argv, opts, 3,
                         "usage: hostile_keys [-n MESSAGES] [-w WORKERS] [-m IN_FLIGHT]\n"
                         "  ordering key, a key per message: plain keys, then keys chosen to\n"
                         "  collide in a plain FNV-1a hash table; memory source, 8 partitions;\n"
                         "  -n messages a row (default 200000), -w workers (default 4),\n"
                         "  -m the window, loop.max_in_flight (default 10000)\n");
    if (rc >= 0)
        return rc;
    if (workers < 1 || workers > 256 || in_flight < 1 || in_flight > 10000000 || n < 1 ||
        n > (1ll << KEY_LEN)) {
        fprintf(stderr, "hostile_keys: -w takes 1 to 256, -m 1 to 10000000, -n 1 to %lld\n",
                1ll << KEY_LEN);
        return 2;
    }
    printf("hostile_keys: %lld messages a row, a key each, ordering key, %lld workers, "
           "window %lld\n",
           n, workers, in_flight);
    printf("%-10s %14s %10s\n", "keys", "msgs/s", "vs plain");
    double plain = run_row((uint64_t)n, false, (int)workers, (int)in_flight);
    double hostile = run_row((uint64_t)n, true, (int)workers, (int)in_flight);
    printf("%-10s %14.0f %10s\n", "plain", plain, "");
    printf("%-10s %14.0f %9.0f%%\n", "hostile", hostile, plain > 0 ? 100.0 * hostile / plain : 0.0);
    bench_result("hostile_keys", "plain", "msgs_per_s", plain);
    bench_result("hostile_keys", "hostile", "msgs_per_s", hostile);
    return plain < 0 || hostile < 0;
}
