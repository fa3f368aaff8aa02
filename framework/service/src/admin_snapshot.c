/*
 * One snapshot of a service's figures for the admin endpoint: the counters, the
 * handler-time histogram, the targets, the partitions (committed position and lag)
 * and the routes. /metrics and /stats both render it, so that they cannot disagree on
 * where a figure comes from.
 *
 * Nothing here touches the message path: it reads the counters the runtime keeps
 * anyway (relaxed atomics), copies the lists their getters hand out, and asks the loop
 * thread for the routes' live counts only when the caller allows a wait.
 *
 * Thread rules: runs on libmicrohttpd's polling thread; reads the service only
 * through what is safe from any thread (see admin.c).
 */
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"

typedef size_t (*fill_fn)(tl_service *svc, void *out, size_t cap);

/*
 * A copy of a list that may grow while it is copied (partitions appear as messages
 * arrive, assignments change): sized again until it fits. NULL on allocation failure.
 */
static void *copy_list(tl_service *svc, fill_fn fill, size_t size, size_t *n)
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

static size_t fill_targets(tl_service *svc, void *out, size_t cap)
{
    return tl_service_targets(svc, out, cap);
}

static size_t fill_partitions(tl_service *svc, void *out, size_t cap)
{
    return tl_service_partitions(svc, out, cap);
}

static size_t fill_lag(tl_service *svc, void *out, size_t cap)
{
    return tl_service_lag(svc, out, cap);
}

static bool same_part(const tl_admin_part *p, const tl_partition_lag *l)
{
    return p->partition == l->partition && strcmp(p->source, l->source) == 0 &&
           strcmp(p->topic, l->topic) == 0;
}

/* The committed positions, each with its lag, then partitions that have lag only. The
 * lag entries' topics are copied into the snapshot's own storage (tail of parts). */
static int take_parts(tl_service *svc, tl_admin_snap *s)
{
    size_t np, nl;
    tl_partition_stats *p = copy_list(svc, fill_partitions, sizeof(*p), &np);
    tl_partition_lag *l = copy_list(svc, fill_lag, sizeof(*l), &nl);
    s->parts = p && l ? calloc(np + nl + 1, sizeof(*s->parts)) : NULL;
    if (!s->parts) {
        free(p);
        free(l);
        return TL_ENOMEM;
    }
    for (size_t i = 0; i < np; i++)
        s->parts[i] = (tl_admin_part){p[i].source, p[i].topic, p[i].partition, p[i].next, -1};
    s->nparts = np;
    s->lag_topics = l;
    for (size_t k = 0; k < nl; k++) {
        size_t i = 0;
        while (i < np && !same_part(&s->parts[i], &l[k]))
            i++;
        if (i == np)
            s->parts[s->nparts++] =
                (tl_admin_part){l[k].source, l[k].topic, l[k].partition, -1, l[k].lag};
        else
            s->parts[i].lag = l[k].lag;
    }
    free(p);
    return 0;
}

static void take_routes(tl_service *svc, _Atomic bool *closing, tl_admin_snap *s)
{
    tl_route_live *live = closing ? calloc(svc->nroutes + 1, sizeof(*live)) : NULL;
    bool known = live && tl__admin_route_live(svc, closing, live) == 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        const tl_route_state *r = &svc->routes[i];
        tl_admin_route *o = &s->routes[i];
        o->source = svc->cfg->sources[r->cfg->source].name;
        o->handler = r->cfg->handler;
        o->on_stall = r->on_stall ? r->on_stall->name : NULL;
        o->on_error = r->on_error ? r->on_error->name : NULL;
        for (size_t k = 0; k < svc->nshards; k++) {
            const tl_route_state *sr = &tl__shard_at(svc, k)->routes[i];
            o->stalled += atomic_load_explicit(&sr->stalled, memory_order_relaxed);
            o->rerouted += atomic_load_explicit(&sr->rerouted, memory_order_relaxed);
            o->late += atomic_load_explicit(&sr->late, memory_order_relaxed);
            o->rate_waits += atomic_load_explicit(&sr->rate_waits, memory_order_relaxed);
            if (atomic_load_explicit(&sr->rate_waiting, memory_order_relaxed))
                o->rate_waiting = 1;
        }
        if (!r->rate.on)
            o->rate_waiting = -1;
        o->breaker =
            r->breaker.on ? atomic_load_explicit(&r->breaker.state, memory_order_relaxed) : -1;
        o->breaker_transitions =
            atomic_load_explicit(&r->breaker.transitions, memory_order_relaxed);
        o->live_known = known;
        if (known)
            o->live = live[i];
    }
    free(live);
}

/* Adds a histogram into o (zeroed first): each shard has its own. */
static void hist_take(const tl_histogram *h, tl_admin_hist *o)
{
    /* Buckets first, then the count from them, so that the two always agree. */
    for (size_t i = 0; i <= TL_HIST_NBOUNDS; i++) {
        uint64_t b = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        o->buckets[i] += b;
        o->count += b;
    }
    o->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

int tl__admin_snap_take(tl_service *svc, _Atomic bool *closing, tl_admin_snap *s)
{
    memset(s, 0, sizeof(*s));
    tl_service_stats_get(svc, &s->st);
    int64_t now_ms = tl_clock_ns() / 1000000;
    int64_t hb = tl__heartbeat_ms(svc);
    s->heartbeat_age_ms = hb ? now_ms - hb : -1;
    s->stopping = atomic_load(&svc->stopping);
    s->clock_ms = now_ms;
    for (size_t k = 0; k < svc->nshards; k++) {
        tl_service *sh = tl__shard_at(svc, k);
        s->workers += tl_loop_workers(sh->loop);
        hist_take(&sh->handler_seconds, &s->handler);
        hist_take(&sh->retry_lateness, &s->lateness);
    }
    s->targets = copy_list(svc, fill_targets, sizeof(*s->targets), &s->ntargets);
    s->nroutes = svc->nroutes;
    s->routes = calloc(s->nroutes + 1, sizeof(*s->routes));
    if (!s->targets || !s->routes || take_parts(svc, s) != 0) {
        tl__admin_snap_free(s);
        return TL_ENOMEM;
    }
    take_routes(svc, closing, s);
    return 0;
}

void tl__admin_snap_free(tl_admin_snap *s)
{
    free(s->targets);
    free(s->parts);
    free(s->lag_topics);
    free(s->routes);
    memset(s, 0, sizeof(*s));
}

double tl__admin_quantile(const tl_admin_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    double rank = q * (double)h->count;
    uint64_t below = 0;
    for (size_t i = 0; i <= TL_HIST_NBOUNDS; i++) {
        uint64_t in = h->buckets[i];
        if (in == 0 || (double)(below + in) < rank) {
            below += in;
            continue;
        }
        /* The +Inf bucket has no upper bound: its quantiles are the last finite one. */
        if (i == TL_HIST_NBOUNDS)
            return (double)tl_histogram_bound_ns(TL_HIST_NBOUNDS - 1) / 1e9;
        double lo = i ? (double)tl_histogram_bound_ns(i - 1) : 0;
        double hi = (double)tl_histogram_bound_ns(i);
        return (lo + (hi - lo) * (rank - (double)below) / (double)in) / 1e9;
    }
    return (double)tl_histogram_bound_ns(TL_HIST_NBOUNDS - 1) / 1e9;
}
