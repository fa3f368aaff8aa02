/*
 * The Prometheus text of /metrics (format 0.0.4): the service counters, per-target
 * reroutes, committed offsets, consumer lag and the handler duration histogram.
 *
 * A renderer for admin.c, which serves what it returns; it calls nothing in admin.c.
 *
 * Thread rules: runs on libmicrohttpd's polling thread and reads the service only
 * through what is safe from any thread: the atomic counters, the histogram,
 * tl_service_targets/partitions/lag and tl_loop_workers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "admin_int.h"

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP taskloop_%s %s\n# TYPE taskloop_%s %s\n", name, help, name, type);
}

static void metric_one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    metric_head(f, name, type, help);
    fprintf(f, "taskloop_%s %" PRIu64 "\n", name, v);
}

/* Writes a label value with the escapes the text format requires. */
static void label_value(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void metrics_targets(FILE *f, tl_service *svc)
{
    /* The targets are fixed once the service is built, so one count is enough. */
    size_t n = tl_service_targets(svc, NULL, 0);
    tl_target_stats *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        return;
    n = tl_service_targets(svc, t, n);
    metric_head(f, "rerouted_total", "counter",
                "Messages rerouted and acknowledged by their target, per target.");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_rerouted_total{target=", f);
        label_value(f, t[i].target);
        fprintf(f, "} %" PRIu64 "\n", t[i].rerouted);
    }
    metric_head(f, "reroute_errors_total", "counter",
                "Reroute sends refused or not acknowledged by their target (retried).");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_reroute_errors_total{target=", f);
        label_value(f, t[i].target);
        fprintf(f, "} %" PRIu64 "\n", t[i].errors);
    }
    free(t);
}

typedef size_t (*fill_fn)(tl_service *svc, void *out, size_t cap);

/*
 * A copy of a list that may grow while it is copied (partitions appear as messages
 * arrive, assignments change): sized again until it fits. NULL on allocation failure.
 */
static void *snapshot(tl_service *svc, fill_fn fill, size_t size, size_t *n)
{
    void *p = NULL;
    size_t cap = 0;
    *n = fill(svc, NULL, 0);
    while (*n > cap) {
        cap = *n + 16;
        void *q = realloc(p, cap * size);
        if (!q) {
            free(p);
            return NULL;
        }
        p = q;
        *n = fill(svc, p, cap);
    }
    return p ? p : calloc(1, size);
}

static size_t fill_partitions(tl_service *svc, void *out, size_t cap)
{
    return tl_service_partitions(svc, out, cap);
}

static size_t fill_lag(tl_service *svc, void *out, size_t cap)
{
    return tl_service_lag(svc, out, cap);
}

static void metrics_offsets(FILE *f, tl_service *svc)
{
    size_t n;
    tl_partition_stats *p = snapshot(svc, fill_partitions, sizeof(*p), &n);
    if (!p)
        return;
    metric_head(f, "committed_offset", "gauge",
                "Next offset committed per partition: every message below it is settled.");
    for (size_t i = 0; i < n; i++) {
        if (p[i].next < 0)
            continue; /* nothing committed yet: no sample rather than a fake -1 */
        fputs("taskloop_committed_offset{source=", f);
        label_value(f, p[i].source);
        fputs(",topic=", f);
        label_value(f, p[i].topic);
        fprintf(f, ",partition=\"%" PRId32 "\"} %" PRId64 "\n", p[i].partition, p[i].next);
    }
    free(p);
}

static void metrics_lag(FILE *f, tl_service *svc)
{
    size_t n;
    tl_partition_lag *lag = snapshot(svc, fill_lag, sizeof(*lag), &n);
    if (!lag)
        return;
    metric_head(f, "consumer_lag", "gauge",
                "Messages between the consumer's position and the end of each partition "
                "(sources that know it: Kafka).");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_consumer_lag{source=", f);
        label_value(f, lag[i].source);
        fputs(",topic=", f);
        label_value(f, lag[i].topic);
        fprintf(f, ",partition=\"%" PRId32 "\"} %" PRId64 "\n", lag[i].partition, lag[i].lag);
    }
    free(lag);
}

static void metrics_histogram(FILE *f, tl_histogram *h)
{
    metric_head(f, "handler_duration_seconds", "histogram",
                "Handler attempt durations, from the start of the handler until the loop "
                "saw it finish.");
    /* Cumulative counts from the buckets themselves, so that +Inf and _count agree
     * even while observations land during the scrape. */
    uint64_t cum = 0;
    for (size_t i = 0; i <= TL_HIST_NBOUNDS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < TL_HIST_NBOUNDS)
            fprintf(f, "taskloop_handler_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                    (double)tl_histogram_bound_ns(i) / 1e9, cum);
        else
            fprintf(f, "taskloop_handler_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    uint64_t sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    fprintf(f, "taskloop_handler_duration_seconds_sum %.9f\n", (double)sum_ns / 1e9);
    fprintf(f, "taskloop_handler_duration_seconds_count %" PRIu64 "\n", cum);
}

char *tl__admin_metrics(tl_service *svc, size_t *len)
{
    tl_service_stats st;
    tl_service_stats_get(svc, &st);
    char *buf = NULL;
    *len = 0;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    metric_head(f, "info", "gauge", "Always 1; the labels name the service and library.");
    fputs("taskloop_info{service=", f);
    label_value(f, svc->cfg->service);
    fprintf(f, ",version=\"%s\"} 1\n", tl_version());
    metric_one(f, "consumed_total", "counter", "Messages delivered by the sources.", st.consumed);
    metric_one(f, "completed_total", "counter", "Handlers that finished without error.",
               st.completed);
    metric_one(f, "failed_total", "counter", "Handler failures, counting each attempt.", st.failed);
    metric_one(f, "retries_total", "counter", "Handler attempts after the first.", st.retries);
    metric_one(f, "stalled_total", "counter", "Handlers still running at their timeout.",
               st.stalled);
    metrics_targets(f, svc);
    metric_one(f, "dropped_total", "counter", "Failed messages with no target to go to.",
               st.dropped);
    metric_one(f, "late_completions_total", "counter", "Stalled handlers that finished after all.",
               st.late);
    metric_one(f, "in_flight", "gauge", "Messages delivered and not yet settled.", st.in_flight);
    metric_one(f, "uncommitted", "gauge",
               "Messages delivered and not yet below their partition's commit position "
               "(backpressure keeps it under max_in_flight).",
               st.uncommitted);
    metric_one(f, "paused_total", "counter",
               "Times intake stopped at max_in_flight (backpressure held delivered batches).",
               st.paused);
    metric_one(f, "source_pauses_total", "counter",
               "Times a source was paused because backpressure kept its thread waiting past "
               "the source's hold limit.",
               st.source_pauses);
    metric_one(f, "replaced_workers_total", "counter",
               "Workers added to stand in for ones stuck in stalled handlers.",
               st.replaced_workers);
    metric_one(f, "handler_crashes_total", "counter",
               "Worker processes (isolation: process) that died by a signal or an exit while "
               "handling a message; each is a failed attempt.",
               st.handler_crashes);
    metric_one(f, "workers_replaced_total", "counter",
               "Worker processes replaced: crashed, or killed past the grace after their "
               "cancellation.",
               st.processes_replaced);
    metric_one(f, "workers", "gauge", "Worker threads alive.", tl_loop_workers(svc->loop));
    metric_one(f, "healthy", "gauge", "1 unless the stuck-worker cap is exceeded.",
               st.healthy ? 1 : 0);
    metrics_offsets(f, svc);
    metrics_lag(f, svc);
    metrics_histogram(f, &svc->handler_seconds);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
