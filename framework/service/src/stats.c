/*
 * Reading a service from outside: its counters and its sources' consumer lag. What
 * the admin endpoint and the program's summary show.
 *
 * Thread rules: any thread. Counters are atomics written by each loop thread only;
 * lag is asked of each source, which answers from any thread.
 */
#include "runtime.h"

#include <string.h>

/* Adds one loop's counters into o. */
static void add_stats(const tl_stats_atomic *s, tl_service_stats *o)
{
    o->consumed += atomic_load(&s->consumed);
    o->completed += atomic_load(&s->completed);
    o->failed += atomic_load(&s->failed);
    o->retries += atomic_load(&s->retries);
    o->stalled += atomic_load(&s->stalled);
    o->rerouted += atomic_load(&s->rerouted);
    o->dropped += atomic_load(&s->dropped);
    o->late += atomic_load(&s->late);
    o->reroute_errors += atomic_load(&s->reroute_errors);
    o->replaced_workers += atomic_load(&s->replaced_workers);
    o->handler_crashes += atomic_load(&s->handler_crashes);
    o->processes_replaced += atomic_load(&s->processes_replaced);
    o->in_flight += atomic_load(&s->in_flight);
    o->uncommitted += atomic_load(&s->uncommitted);
    o->paused += atomic_load(&s->paused);
    o->source_pauses += atomic_load(&s->source_pauses);
    o->retries_delayed += atomic_load(&s->retries_delayed);
    o->retries_waiting += atomic_load(&s->retries_waiting);
    o->emitted += atomic_load(&s->emitted);
    o->emit_errors += atomic_load(&s->emit_errors);
    o->txn_commits += atomic_load(&s->txn_commits);
    o->delayed_waiting += atomic_load(&s->delayed_waiting);
    o->txn_aborts += atomic_load(&s->txn_aborts);
    int64_t first = atomic_load(&s->first_consumed_ns), last = atomic_load(&s->last_settled_ns);
    if (first && (!o->first_consumed_ns || first < o->first_consumed_ns))
        o->first_consumed_ns = first;
    if (last > o->last_settled_ns)
        o->last_settled_ns = last;
    o->healthy = o->healthy && atomic_load(&s->healthy);
}

void tl_service_stats_get(tl_service *svc, tl_service_stats *o)
{
    /* Every shard's (shard.c): the service's figures are their sums. */
    memset(o, 0, sizeof(*o));
    o->healthy = true;
    add_stats(&svc->st, o);
    for (size_t k = 1; k < svc->nshards; k++)
        add_stats(&svc->shards[k]->st, o);
}

int64_t tl__heartbeat_ms(tl_service *svc)
{
    int64_t oldest = 0;
    for (size_t k = 0; k < svc->nshards; k++) {
        tl_service *sh = tl__shard_at(svc, k);
        int64_t hb = atomic_load_explicit(&sh->heartbeat_ms, memory_order_relaxed);
        if (!hb)
            return 0;
        if (!oldest || hb < oldest)
            oldest = hb;
    }
    return oldest;
}

size_t tl_service_lag(tl_service *svc, tl_partition_lag *out, size_t cap)
{
    size_t total = 0;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        if (!src->handle || !src->ops->lag)
            continue;
        size_t room = total < cap ? cap - total : 0;
        size_t n = src->ops->lag(src->handle, room ? out + total : NULL, room);
        for (size_t k = 0; k < n && k < room; k++)
            out[total + k].source = src->cfg->name;
        total += n;
    }
    return total;
}
