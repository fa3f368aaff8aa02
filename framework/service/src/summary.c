/*
 * What a run shows: the progress line and the end-of-run summary. The summary's lines
 * are "name<spaces>number" so that scripts can read them with awk; its last line says
 * whether every consumed message is accounted for.
 */
#include "program_int.h"

#include <inttypes.h>
#include <stdlib.h>

void tl__progress_line(const tl_service_stats *st, double rate, int64_t elapsed_ms, char *buf,
                       size_t cap)
{
    snprintf(buf, cap,
             "consumed %" PRIu64 "  completed %" PRIu64 "  stalled %" PRIu64 "  rerouted %" PRIu64
             "  in-flight %" PRIu64 "  %.0f msgs/s  %.1f s",
             st->consumed, st->completed, st->stalled, st->rerouted, st->in_flight, rate,
             (double)elapsed_ms / 1000.0);
}

static void row(FILE *out, const char *name, uint64_t v, const char *note)
{
    fprintf(out, "  %-16s %10" PRIu64 "%s%s\n", name, v, note ? "   " : "", note ? note : "");
}

static void print_targets(FILE *out, tl_service *svc)
{
    size_t n = tl_service_targets(svc, NULL, 0);
    tl_target_stats *t = n ? calloc(n, sizeof(*t)) : NULL;
    if (!t)
        return;
    n = tl_service_targets(svc, t, n);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "    %-28s %10" PRIu64, t[i].target, t[i].rerouted);
        if (t[i].errors)
            fprintf(out, "   (%" PRIu64 " send errors)", t[i].errors);
        fputc('\n', out);
    }
    free(t);
}

static void print_partitions(FILE *out, tl_service *svc)
{
    size_t n = tl_service_partitions(svc, NULL, 0);
    fprintf(out, "  committed offsets%s\n", n ? ":" : ": none");
    tl_partition_stats *p = n ? calloc(n, sizeof(*p)) : NULL;
    if (!p)
        return;
    size_t got = tl_service_partitions(svc, p, n);
    n = got < n ? got : n; /* partitions seen since the count wait for the next summary */
    for (size_t i = 0; i < n; i++) {
        char place[256];
        snprintf(place, sizeof(place), "%s %s[%" PRId32 "]", p[i].source, p[i].topic,
                 p[i].partition);
        if (p[i].next < 0)
            fprintf(out, "    %-28s       none\n", place);
        else
            fprintf(out, "    %-28s %10" PRId64 "\n", place, p[i].next);
    }
    free(p);
}

/* The pace, measured by the service itself from its first message consumed to its last
 * settled: what a backlog took to drain, without the start-up, the group join or the
 * idle time after it. Nothing when nothing settled. */
static void print_pace(FILE *out, const tl_service_stats *st)
{
    uint64_t settled = st->completed + st->rerouted + st->dropped;
    if (!settled || !st->first_consumed_ns || st->last_settled_ns <= st->first_consumed_ns)
        return;
    int64_t span_us = (st->last_settled_ns - st->first_consumed_ns) / 1000;
    if (span_us <= 0)
        return;
    row(out, "span_us", (uint64_t)span_us, "(first message consumed to last settled)");
    row(out, "settled_per_s", (uint64_t)((double)settled * 1e6 / (double)span_us + 0.5),
        "(settled over that span)");
}

/* The closing line: every consumed message must be completed, rerouted or dropped. */
static bool print_check(FILE *out, const tl_service_stats *st)
{
    uint64_t settled = st->completed + st->rerouted + st->dropped;
    bool ok = st->consumed == settled;
    fprintf(out,
            "check: consumed == completed + rerouted + dropped: %" PRIu64 " == %" PRIu64
            " + %" PRIu64 " + %" PRIu64 ": %s",
            st->consumed, st->completed, st->rerouted, st->dropped, ok ? "ok" : "NO");
    if (!ok && st->consumed > settled)
        fprintf(out, " (%" PRIu64 " unsettled when the service stopped)", st->consumed - settled);
    fputc('\n', out);
    return ok;
}

bool tl_program_summary(FILE *out, tl_service *svc, const char *title, int64_t elapsed_ms)
{
    tl_service_stats st;
    tl_service_stats_get(svc, &st);
    fprintf(out, "summary of %s after %.1f s:\n", title, (double)elapsed_ms / 1000.0);
    row(out, "consumed", st.consumed, NULL);
    row(out, "completed", st.completed, NULL);
    row(out, "failed", st.failed, "(attempts, retries included)");
    row(out, "retries", st.retries, NULL);
    if (st.retries_delayed)
        row(out, "retries_delayed", st.retries_delayed, "(through on_error.via)");
    row(out, "stalled", st.stalled, NULL);
    row(out, "rerouted", st.rerouted, NULL);
    print_targets(out, svc);
    row(out, "dropped", st.dropped, "(failed, no target)");
    row(out, "late", st.late, "(stalled handlers that finished after all)");
    row(out, "reroute_errors", st.reroute_errors, NULL);
    if (st.emitted || st.emit_errors) {
        row(out, "emitted", st.emitted, "(handler outputs)");
        row(out, "emit_errors", st.emit_errors, NULL);
    }
    if (st.txn_commits || st.txn_aborts) {
        row(out, "transactions", st.txn_commits, "(exactly-once commits)");
        row(out, "transaction_aborts", st.txn_aborts, NULL);
    }
    row(out, "replaced_workers", st.replaced_workers, st.healthy ? NULL : "(unhealthy)");
    if (st.processes_replaced) {
        row(out, "handler_crashes", st.handler_crashes, "(worker processes)");
        row(out, "processes_replaced", st.processes_replaced, "(crashed or killed)");
    }
    row(out, "paused", st.paused, "(backpressure)");
    row(out, "source_pauses", st.source_pauses, "(held past the source's limit)");
    row(out, "in_flight", st.in_flight, NULL);
    print_pace(out, &st);
    print_partitions(out, svc);
    bool ok = print_check(out, &st);
    fflush(out);
    return ok;
}
