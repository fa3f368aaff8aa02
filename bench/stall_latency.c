/*
 * Stall detection: N handlers that hang until cancelled (cooperatively), on the
 * memory source, with on_stall rerouting to a memory sink. For each stalled message:
 *   cancel lag = when the handler saw tl_cancelled() - (its start + timeout)
 *   ack lag    = when the sink stored and acked the reroute - (its start + timeout)
 * The sink stamps in whole milliseconds (wall clock), so the ack lag has 1 ms
 * resolution; the handler polls tl_cancelled() every 200 us.
 *
 *   stall_latency [-n N] [--timeout-ms T] [--workers W]   (default 1000, 50, 16)
 *
 * Thread rules: handlers write only their own slot of `starts`/`cancels`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include <taskloop/memory.h>

#define HANG_LIMIT_NS (30LL * 1000000000) /* a handler never hangs longer than this */

typedef struct stall_run {
    uint64_t n;
    _Atomic int64_t *starts;  /* wall ns at handler start, by offset */
    _Atomic int64_t *cancels; /* wall ns when the handler saw the cancellation */
} stall_run;

static int hang(tl_task *task, const tl_msg *msg, void *user)
{
    stall_run *r = user;
    uint64_t i = (uint64_t)msg->offset;
    int64_t t0 = bench_wall_ns();
    if (i < r->n)
        atomic_store(&r->starts[i], t0);
    while (!tl_cancelled(task) && bench_wall_ns() - t0 < HANG_LIMIT_NS)
        bench_sleep_us(200);
    if (i < r->n)
        atomic_store(&r->cancels[i], bench_wall_ns());
    return TL_ECANCELED;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return n ? v[i] : -1;
}

static void report(const char *metric, double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    printf("%-28s %8zu %8.2f %8.2f %8.2f %8.2f\n", metric, n, pct(v, n, 0.5), pct(v, n, 0.99),
           n ? v[n - 1] : -1, n ? v[0] : -1);
    char name[64];
    snprintf(name, sizeof(name), "%s_p50_ms", metric);
    bench_result("stall", "memory_sink", name, pct(v, n, 0.5));
    snprintf(name, sizeof(name), "%s_p99_ms", metric);
    bench_result("stall", "memory_sink", name, pct(v, n, 0.99));
}

/* The origin offset of a rerouted record, from its tl-origin-offset header. */
static int64_t origin_offset(const tl_memory_record *rec)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(rec, "tl-origin-offset", &len);
    char buf[32];
    if (!v || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

int main(int argc, char **argv)
{
    uint64_t n = 1000, timeout_ms = 50, workers = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t v = strtoull(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "-n") == 0)
            n = v;
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = v;
        else if (strcmp(argv[i], "--workers") == 0)
            workers = v;
    }
    stall_run r = {
        .n = n, .starts = calloc(n, sizeof(int64_t)), .cancels = calloc(n, sizeof(int64_t))};
    tl_registry *reg = NULL;
    if (!r.starts || !r.cancels || tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_handler(reg, "hang", hang, &r) != 0)
        return 1;
    for (uint64_t i = 0; i < n; i++)
        tl_memory_push("bench-stall", 0, NULL, "stall", 5);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: %" PRIu64 ", max_replaced_workers: 0 }\n"
             "sources:\n"
             "  in: { type: memory, name: bench-stall }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: hang\n"
             "    ordering: none\n"
             "    timeout: %" PRIu64 "ms\n"
             "    on_stall: { reroute: \"memory:bench-stalled\" }\n",
             workers, timeout_ms);
    bench_svc b;
    if (bench_svc_start(&b, reg, yaml) != 0)
        return 1;
    int64_t budget_ms = (int64_t)(n / workers + 1) * (int64_t)(timeout_ms + 50) * 4 + 10000;
    int64_t done = bench_svc_wait_settled(&b, n, budget_ms);
    bench_svc_stop(&b);
    size_t stored = tl_memory_sink_count("bench-stalled");
    double *ack = calloc(stored + 1, sizeof(double)), *cancel = calloc(n + 1, sizeof(double));
    size_t nack = 0, ncancel = 0;
    for (size_t i = 0; i < stored; i++) {
        tl_memory_record *rec = NULL;
        if (tl_memory_sink_get("bench-stalled", i, &rec) != 0)
            continue;
        int64_t off = origin_offset(rec);
        if (off >= 0 && (uint64_t)off < n && atomic_load(&r.starts[off]) > 0) {
            double deadline_ms = (double)atomic_load(&r.starts[off]) / 1e6 + (double)timeout_ms;
            ack[nack++] = (double)rec->timestamp_ms - deadline_ms;
        }
        tl_memory_record_free(rec);
    }
    for (uint64_t i = 0; i < n; i++)
        if (atomic_load(&r.starts[i]) > 0 && atomic_load(&r.cancels[i]) > 0)
            cancel[ncancel++] =
                (double)(atomic_load(&r.cancels[i]) - atomic_load(&r.starts[i])) / 1e6 -
                (double)timeout_ms;
    printf("stall: %" PRIu64 " hung handlers, timeout %" PRIu64 " ms, %" PRIu64
           " workers, memory source and sink%s\n",
           n, timeout_ms, workers, done < 0 ? " (NOT all settled in time)" : "");
    printf("%-28s %8s %8s %8s %8s %8s\n", "ms past start + timeout", "count", "p50", "p99", "max",
           "min");
    report("reroute_acked", ack, nack);
    report("cancel_seen", cancel, ncancel);
    free(ack);
    free(cancel);
    tl_registry_free(reg);
    return done < 0 || nack != n ? 1 : 0;
}
