/*
 * The JSON of /stats: the figures of /metrics (one snapshot, admin_snapshot.c) with
 * the Prometheus names where they carry over, plus what a dashboard wants without
 * doing sums: handler-time percentiles, each route's live counts, health in one
 * object, and the partitions sorted by lag and paged (top N from an index), so that
 * the answer stays small at a thousand partitions.
 *
 *   {"service", "version", "clock_ms",
 *    "counters": {consumed_total, ...}, "gauges": {in_flight, uncommitted, workers},
 *    "handler_duration_seconds": {count, sum, p50, p90, p99, buckets: [{le, count}]},
 *    "retry_lateness_seconds": the same shape, for delayed retries (on_error.via),
 *    "health": {live, ready (as /readyz: false while a breaker is open), healthy,
 *               stopping, heartbeat_age_ms, stuck_workers, replaced_workers,
 *               max_replaced_workers},
 *    "targets": [{target, rerouted_total, reroute_errors_total}],
 *    "routes": [{route, source, handler, on_stall, on_error, stalled_total,
 *                rerouted_total, late_completions_total, rate_limited_total,
 *                rate_throttled (true while a message waits for the rate; null without),
 *                breaker ("closed", "open", "half_open"; null without one),
 *                live: {in_flight, running, stalled, stuck, rerouting, emitting,
 *                       waiting_due} or null}],
 *    "partitions": {total, from, top, items: [{source, topic, partition,
 *                   committed_offset, consumer_lag}]}}
 *
 * committed_offset and consumer_lag are null where /metrics has no sample. A route's
 * live counts are null when the loop did not answer in time.
 *
 * A renderer for admin.c, which serves what it returns; it calls nothing in admin.c.
 *
 * Thread rules: runs on libmicrohttpd's polling thread.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"

/* A loop that has not run housekeeping for this long is not live (as /healthz says). */
#define LIVE_STALE_MS 5000

static json_t *counters(const tl_service_stats *st)
{
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I}",
        "consumed_total", (json_int_t)st->consumed, "completed_total", (json_int_t)st->completed,
        "failed_total", (json_int_t)st->failed, "retries_total", (json_int_t)st->retries,
        "stalled_total", (json_int_t)st->stalled, "rerouted_total", (json_int_t)st->rerouted,
        "reroute_errors_total", (json_int_t)st->reroute_errors, "dropped_total",
        (json_int_t)st->dropped, "late_completions_total", (json_int_t)st->late, "paused_total",
        (json_int_t)st->paused, "source_pauses_total", (json_int_t)st->source_pauses,
        "replaced_workers_total", (json_int_t)st->replaced_workers, "retries_delayed_total",
        (json_int_t)st->retries_delayed, "retries_waiting", (json_int_t)st->retries_waiting,
        "emitted_total", (json_int_t)st->emitted, "emit_errors_total", (json_int_t)st->emit_errors,
        "transactions_total", (json_int_t)st->txn_commits, "transaction_aborts_total",
        (json_int_t)st->txn_aborts);
}

static json_t *histogram(const tl_admin_hist *h)
{
    json_t *buckets = json_array();
    uint64_t cum = 0;
    for (size_t i = 0; buckets && i <= TL_HIST_NBOUNDS; i++) {
        cum += h->buckets[i];
        json_t *le = i < TL_HIST_NBOUNDS ? json_real((double)tl_histogram_bound_ns(i) / 1e9)
                                         : json_string("+Inf");
        json_array_append_new(buckets, json_pack("{s:o, s:I}", "le", le, "count", (json_int_t)cum));
    }
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:o?}", "count", (json_int_t)h->count, "sum",
                     (double)h->sum_ns / 1e9, "p50", tl__admin_quantile(h, 0.50), "p90",
                     tl__admin_quantile(h, 0.90), "p99", tl__admin_quantile(h, 0.99), "buckets",
                     buckets);
}

static json_t *health(tl_service *svc, const tl_admin_snap *s)
{
    bool live = s->heartbeat_age_ms >= 0 && s->heartbeat_age_ms <= LIVE_STALE_MS;
    bool known = true, breaker_open = false;
    uint64_t stuck = 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        known = known && s->routes[i].live_known;
        stuck += s->routes[i].live.stuck;
        breaker_open = breaker_open || s->routes[i].breaker == TL_BREAKER_OPEN;
    }
    /* ready as /readyz answers it (admin.c). */
    return json_pack("{s:b, s:b, s:b, s:b, s:I, s:o, s:I, s:i}", "live", live, "ready",
                     live && !s->stopping && s->st.healthy && !breaker_open, "healthy",
                     s->st.healthy, "stopping", s->stopping, "heartbeat_age_ms",
                     (json_int_t)s->heartbeat_age_ms, "stuck_workers",
                     known ? json_integer((json_int_t)stuck) : json_null(), "replaced_workers",
                     (json_int_t)s->st.replaced_workers, "max_replaced_workers",
                     (int)svc->cfg->max_replaced_workers);
}

static json_t *targets(const tl_admin_snap *s)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->ntargets; i++)
        json_array_append_new(a,
                              json_pack("{s:s, s:I, s:I}", "target", s->targets[i].target,
                                        "rerouted_total", (json_int_t)s->targets[i].rerouted,
                                        "reroute_errors_total", (json_int_t)s->targets[i].errors));
    return a;
}

static json_t *routes(const tl_admin_snap *s)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->nroutes; i++) {
        const tl_admin_route *r = &s->routes[i];
        json_t *live =
            r->live_known
                ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "in_flight",
                            (json_int_t)r->live.in_flight, "running", (json_int_t)r->live.running,
                            "stalled", (json_int_t)r->live.stalled, "stuck",
                            (json_int_t)r->live.stuck, "rerouting", (json_int_t)r->live.rerouting,
                            "emitting", (json_int_t)r->live.emitting, "waiting_due",
                            (json_int_t)r->live.due_wait, "gated", (json_int_t)r->live.gated)
                : json_null();
        json_array_append_new(
            a,
            json_pack("{s:I, s:s, s:s, s:s?, s:s?, s:I, s:I, s:I, s:I, s:o, s:s?, s:o}", "route",
                      (json_int_t)i, "source", r->source, "handler", r->handler, "on_stall",
                      r->on_stall, "on_error", r->on_error, "stalled_total", (json_int_t)r->stalled,
                      "rerouted_total", (json_int_t)r->rerouted, "late_completions_total",
                      (json_int_t)r->late, "rate_limited_total", (json_int_t)r->rate_waits,
                      "rate_throttled",
                      r->rate_waiting < 0 ? json_null() : json_boolean(r->rate_waiting), "breaker",
                      r->breaker < 0 ? NULL : tl__breaker_state_name(r->breaker), "live", live));
    }
    return a;
}

/* Most lag first (unknown lag last), then by source, topic and partition. */
static int by_lag(const void *x, const void *y)
{
    const tl_admin_part *a = x, *b = y;
    if (a->lag != b->lag)
        return a->lag > b->lag ? -1 : 1;
    int c = strcmp(a->source, b->source);
    if (c == 0)
        c = strcmp(a->topic, b->topic);
    if (c == 0)
        c = a->partition < b->partition ? -1 : a->partition > b->partition;
    return c;
}

static json_t *int_or_null(int64_t v)
{
    return v >= 0 ? json_integer((json_int_t)v) : json_null();
}

static json_t *partitions(tl_admin_snap *s, const tl_admin_range *range)
{
    qsort(s->parts, s->nparts, sizeof(*s->parts), by_lag);
    json_t *items = json_array();
    for (size_t i = range->from; items && i < s->nparts && i - range->from < range->top; i++) {
        const tl_admin_part *p = &s->parts[i];
        json_array_append_new(items, json_pack("{s:s, s:s, s:i, s:o, s:o}", "source", p->source,
                                               "topic", p->topic, "partition", (int)p->partition,
                                               "committed_offset", int_or_null(p->committed),
                                               "consumer_lag", int_or_null(p->lag)));
    }
    return json_pack("{s:I, s:I, s:I, s:o?}", "total", (json_int_t)s->nparts, "from",
                     (json_int_t)range->from, "top", (json_int_t)range->top, "items", items);
}

char *tl__admin_stats(tl_service *svc, _Atomic bool *closing, const tl_admin_range *range)
{
    tl_admin_snap s;
    if (tl__admin_snap_take(svc, closing, &s) != 0)
        return NULL;
    json_t *root = json_pack(
        "{s:s, s:s, s:I, s:o?, s:{s:I, s:I, s:i}, s:o?, s:o?, s:o?, s:o?, s:o?, s:o?}", "service",
        svc->cfg->service, "version", tl_version(), "clock_ms", (json_int_t)s.clock_ms, "counters",
        counters(&s.st), "gauges", "in_flight", (json_int_t)s.st.in_flight, "uncommitted",
        (json_int_t)s.st.uncommitted, "workers", (int)s.workers, "handler_duration_seconds",
        histogram(&s.handler), "retry_lateness_seconds", histogram(&s.lateness), "health",
        health(svc, &s), "targets", targets(&s), "routes", routes(&s), "partitions",
        partitions(&s, range));
    tl__admin_snap_free(&s);
    return tl__admin_json_text(root, JSON_COMPACT);
}
