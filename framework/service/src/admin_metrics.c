/*
 * The Prometheus text of /metrics (format 0.0.4): the service counters, per-target
 * reroutes, per-route stalls, reroutes and late completions, committed offsets,
 * consumer lag and the handler duration histogram.
 *
 * A renderer for admin.c, which serves what it returns; it calls nothing in admin.c.
 *
 * The figures come from one snapshot (admin_snapshot.c), the one /stats renders too.
 *
 * Thread rules: runs on libmicrohttpd's polling thread.
 */
#include <inttypes.h>
#include <stddef.h>
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

static void metrics_targets(FILE *f, const tl_admin_snap *s)
{
    metric_head(f, "rerouted_total", "counter",
                "Messages rerouted and acknowledged by their target, per target.");
    for (size_t i = 0; i < s->ntargets; i++) {
        fputs("taskloop_rerouted_total{target=", f);
        label_value(f, s->targets[i].target);
        fprintf(f, "} %" PRIu64 "\n", s->targets[i].rerouted);
    }
    metric_head(f, "reroute_errors_total", "counter",
                "Reroute sends refused or not acknowledged by their target (retried).");
    for (size_t i = 0; i < s->ntargets; i++) {
        fputs("taskloop_reroute_errors_total{target=", f);
        label_value(f, s->targets[i].target);
        fprintf(f, "} %" PRIu64 "\n", s->targets[i].errors);
    }
}

/* Labels source, topic and partition of one partition's sample. */
static void part_sample(FILE *f, const char *name, const tl_admin_part *p, int64_t v)
{
    fprintf(f, "taskloop_%s{source=", name);
    label_value(f, p->source);
    fputs(",topic=", f);
    label_value(f, p->topic);
    fprintf(f, ",partition=\"%" PRId32 "\"} %" PRId64 "\n", p->partition, v);
}

static void metrics_partitions(FILE *f, const tl_admin_snap *s)
{
    metric_head(f, "committed_offset", "gauge",
                "Next offset committed per partition: every message below it is settled.");
    /* Nothing committed yet: no sample rather than a fake -1; likewise unknown lag. */
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].committed >= 0)
            part_sample(f, "committed_offset", &s->parts[i], s->parts[i].committed);
    metric_head(f, "consumer_lag", "gauge",
                "Messages between the consumer's position and the end of each partition "
                "(sources that know it: Kafka).");
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].lag >= 0)
            part_sample(f, "consumer_lag", &s->parts[i], s->parts[i].lag);
}

/* A per-route sample's name and labels: the route's index, source and handler. */
static void route_sample(FILE *f, const char *name, size_t i, const tl_admin_route *r)
{
    fprintf(f, "taskloop_%s{route=\"%zu\",source=", name, i);
    label_value(f, r->source);
    fputs(",handler=", f);
    label_value(f, r->handler);
    fputs("} ", f);
}

/* One per-route counter family (a uint64_t field of tl_admin_route). */
static void metrics_route_counter(FILE *f, const tl_admin_snap *s, const char *name,
                                  const char *help, size_t field)
{
    metric_head(f, name, "counter", help);
    for (size_t i = 0; i < s->nroutes; i++) {
        const tl_admin_route *r = &s->routes[i];
        route_sample(f, name, i, r);
        fprintf(f, "%" PRIu64 "\n", *(const uint64_t *)((const char *)r + field));
    }
}

/* One per-route gauge family (an int field of tl_admin_route; no sample where -1). */
static void metrics_route_gauge(FILE *f, const tl_admin_snap *s, const char *name, const char *help,
                                size_t field)
{
    metric_head(f, name, "gauge", help);
    for (size_t i = 0; i < s->nroutes; i++) {
        const tl_admin_route *r = &s->routes[i];
        int v = *(const int *)((const char *)r + field);
        if (v < 0)
            continue;
        route_sample(f, name, i, r);
        fprintf(f, "%d\n", v);
    }
}

static void metrics_routes(FILE *f, const tl_admin_snap *s)
{
    metrics_route_counter(f, s, "route_stalled_total", "Handlers past their timeout, per route.",
                          offsetof(tl_admin_route, stalled));
    metrics_route_counter(f, s, "route_rerouted_total",
                          "Reroutes acknowledged by their target, per route.",
                          offsetof(tl_admin_route, rerouted));
    metrics_route_counter(f, s, "route_late_completions_total",
                          "Stalled handlers that finished after all, per route.",
                          offsetof(tl_admin_route, late));
    metrics_route_counter(f, s, "route_rate_limited_total",
                          "Times a route's intake waited for its rate limit (rate:), per route.",
                          offsetof(tl_admin_route, rate_waits));
    metrics_route_counter(f, s, "route_breaker_transitions_total",
                          "Circuit breaker state changes, per route.",
                          offsetof(tl_admin_route, breaker_transitions));
    metrics_route_gauge(f, s, "route_rate_throttled",
                        "1 while a message of the route waits for its rate limit, per route "
                        "with one.",
                        offsetof(tl_admin_route, rate_waiting));
    metrics_route_gauge(f, s, "route_breaker_state",
                        "Circuit breaker per route with one: 0 closed, 1 open, 2 half-open.",
                        offsetof(tl_admin_route, breaker));
}

static void metrics_histogram(FILE *f, const char *name, const char *help, const tl_admin_hist *h)
{
    metric_head(f, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i <= TL_HIST_NBOUNDS; i++) {
        cum += h->buckets[i];
        if (i < TL_HIST_NBOUNDS)
            fprintf(f, "taskloop_%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                    (double)tl_histogram_bound_ns(i) / 1e9, cum);
        else
            fprintf(f, "taskloop_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    fprintf(f, "taskloop_%s_sum %.9f\n", name, (double)h->sum_ns / 1e9);
    fprintf(f, "taskloop_%s_count %" PRIu64 "\n", name, h->count);
}

char *tl__admin_metrics(tl_service *svc, size_t *len)
{
    /* No loop call: /metrics answers even while the loop is stuck. */
    tl_admin_snap s;
    if (tl__admin_snap_take(svc, NULL, &s) != 0)
        return NULL;
    const tl_service_stats st = s.st;
    char *buf = NULL;
    *len = 0;
    FILE *f = open_memstream(&buf, len);
    if (!f) {
        tl__admin_snap_free(&s);
        return NULL;
    }
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
    metrics_targets(f, &s);
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
    metric_one(f, "emitted_total", "counter",
               "Messages handlers emitted (tl_handler_emit) that their outputs acknowledged.",
               st.emitted);
    metric_one(f, "emit_errors_total", "counter",
               "Emitted messages an output refused or did not acknowledge (each sent again).",
               st.emit_errors);
    metric_one(f, "delayed_waiting", "gauge",
               "Messages of routes with a delay waiting for their time, in no lane.",
               st.delayed_waiting);
    metric_one(f, "transactions_total", "counter",
               "Exactly-once routes: transactions committed (sends and positions together).",
               st.txn_commits);
    metric_one(f, "transaction_aborts_total", "counter",
               "Exactly-once routes: transactions that could not commit (the service stopped).",
               st.txn_aborts);
    metric_one(f, "retries_delayed_total", "counter",
               "Failed attempts sent to on_error.via, to run again once due.", st.retries_delayed);
    metric_one(f, "retries_waiting", "gauge",
               "Delayed retries come back before they were due, waiting (no worker held).",
               st.retries_waiting);
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
    metric_one(f, "workers", "gauge", "Worker threads alive.", s.workers);
    metric_one(f, "healthy", "gauge", "1 unless the stuck-worker cap is exceeded.",
               st.healthy ? 1 : 0);
    metrics_routes(f, &s);
    metrics_partitions(f, &s);
    metrics_histogram(f, "handler_duration_seconds",
                      "Handler attempt durations, from the start of the handler until the loop "
                      "saw it finish.",
                      &s.handler);
    metrics_histogram(f, "retry_lateness_seconds",
                      "Delayed retries (on_error.via): how long after their due time they went "
                      "in.",
                      &s.lateness);
    tl__admin_snap_free(&s);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
