/*
 * A fixed-bucket latency histogram the runtime fills and the admin endpoint reads
 * (Prometheus histogram semantics once made cumulative).
 *
 * Thread rules: any thread may observe or read; every field is a relaxed atomic. A
 * reader may see a count one observation ahead of a bucket: a scrape is a sample, not
 * a transaction, and Prometheus tolerates that skew.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TL_HIST_NBOUNDS 12

/* Per-bucket counts (not cumulative); the last bucket is +Inf. */
typedef struct tl_histogram {
    _Atomic uint64_t buckets[TL_HIST_NBOUNDS + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} tl_histogram;

/* The upper bound of bucket i in nanoseconds (i < TL_HIST_NBOUNDS). */
static inline int64_t tl_histogram_bound_ns(size_t i)
{
    /* Prometheus's default buckets, plus 1ms since most handlers are fast. */
    static const int64_t bounds[TL_HIST_NBOUNDS] = {
        1000000,   5000000,   10000000,   25000000,   50000000,   100000000,
        250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};
    return bounds[i];
}

/* Records one duration; lock-free, so the loop thread never waits on a scrape. */
static inline void tl_histogram_observe(tl_histogram *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    size_t i = 0;
    while (i < TL_HIST_NBOUNDS && ns > tl_histogram_bound_ns(i))
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

#endif
