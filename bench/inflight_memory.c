/*
 * Memory per in-flight message: N messages from the memory source, every handler
 * holding its message (it returns TL_PENDING and is completed only at the end), with
 * max_in_flight above N so nothing pauses. RSS is read before the service starts
 * (the topic already holds its copies) and once all N handlers were called; the
 * delta per message is printed as is and without the payload copy the memory source
 * hands over (payload bytes plus its NUL; malloc's own overhead stays counted).
 *
 *   inflight_memory [-n N] [--size BYTES]        (default 100,000 and 100)
 *
 * Thread rules: handlers append to `held` under its mutex.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include <taskloop/memory.h>

typedef struct holder {
    pthread_mutex_t mu;
    tl_task **held;
    size_t n, cap;
} holder;

static int hold(tl_task *task, const tl_msg *msg, void *user)
{
    (void)msg;
    holder *h = user;
    pthread_mutex_lock(&h->mu);
    if (h->n < h->cap)
        h->held[h->n++] = tl_task_retain(task);
    pthread_mutex_unlock(&h->mu);
    return TL_PENDING;
}

static size_t held_count(holder *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int main(int argc, char **argv)
{
    uint64_t n = 100000, size = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0)
            size = strtoull(argv[i + 1], NULL, 10);
    }
    holder h = {.held = calloc(n, sizeof(tl_task *)), .cap = n};
    pthread_mutex_init(&h.mu, NULL);
    tl_registry *reg = NULL;
    char *payload = malloc(size + 1);
    if (!h.held || !payload || tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_handler(reg, "hold", hold, &h) != 0)
        return 1;
    memset(payload, 'x', size);
    for (uint64_t i = 0; i < n; i++)
        tl_memory_push("bench-mem", 0, NULL, payload, size);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: 2, max_in_flight: %" PRIu64 " }\n"
             "sources:\n"
             "  in: { type: memory, name: bench-mem, batch: 1000 }\n"
             "routes:\n"
             "  - { source: in, handler: hold, ordering: none, timeout: 1h }\n",
             n * 2);
    long rss0 = bench_rss_bytes();
    bench_svc b;
    if (bench_svc_start(&b, reg, yaml) != 0)
        return 1;
    int64_t deadline = bench_now_ns() + 120LL * 1000000000;
    while (held_count(&h) < n && bench_now_ns() < deadline)
        bench_sleep_us(1000);
    bench_sleep_us(200000); /* let the loop finish its bookkeeping of the last batch */
    long rss1 = bench_rss_bytes();
    tl_service_stats st;
    tl_service_stats_get(b.svc, &st);
    size_t got = held_count(&h);
    for (size_t i = 0; i < got; i++) {
        tl_task_complete(h.held[i], NULL, 0);
        tl_task_release(h.held[i]);
    }
    bench_svc_wait_settled(&b, got, 60000);
    bench_svc_stop(&b);
    double per = (double)(rss1 - rss0) / (double)n;
    double copy = (double)size + 1;
    printf("in-flight memory: %" PRIu64 " messages of %" PRIu64 " bytes held by their handlers"
           " (in flight: %" PRIu64 ")\n",
           n, size, st.in_flight);
    printf("RSS +%.1f MiB: %.0f bytes per in-flight message, %.0f without the %.0f-byte payload"
           " copy\n",
           (double)(rss1 - rss0) / 1048576.0, per, per - copy, copy);
    bench_result("memory", "inflight", "bytes_per_msg", per);
    bench_result("memory", "inflight", "bytes_per_msg_excl_payload", per - copy);
    free(payload);
    free(h.held);
    tl_registry_free(reg);
    return got == n ? 0 : 1;
}
