/*
 * A route's rate limit (`rate:` and `burst:`), as a virtual-scheduling token bucket: the
 * bucket keeps the time at which the next message would be on schedule (tat); a message
 * may go when that time is at most burst - 1 intervals ahead of now. O(1), no lock: a
 * token is one compare-and-swap of that time, so that the loop threads of every shard
 * take from the route's one bucket (intake.c).
 */
#include "runtime.h"

void tl__rate_init(tl_rate *r, const tl_config_route *cfg)
{
    *r = (tl_rate){0};
    atomic_init(&r->tat_ns, 0);
    if (cfg->rate_count <= 0)
        return;
    r->interval_ns = cfg->rate_period_ms * 1000000 / cfg->rate_count;
    if (r->interval_ns < 1)
        r->interval_ns = 1;
    r->tau_ns = (cfg->burst > 1 ? cfg->burst - 1 : 0) * r->interval_ns;
    r->on = true;
}

int64_t tl__rate_take(tl_rate *r, int64_t now_ns)
{
    if (!r->on)
        return 0;
    int64_t seen = atomic_load_explicit(&r->tat_ns, memory_order_relaxed);
    for (;;) {
        int64_t tat = seen > now_ns ? seen : now_ns;
        if (tat - now_ns > r->tau_ns)
            return tat - now_ns - r->tau_ns;
        /* Another shard took one since: look again at its schedule. */
        if (atomic_compare_exchange_weak_explicit(&r->tat_ns, &seen, tat + r->interval_ns,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 0;
    }
}
