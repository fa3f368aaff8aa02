/*
 * A fixed-bucket latency histogram the runtime fills and the admin endpoint reads
 * (Prometheus histogram semantics once made cumulative).
 *
 * Thread rules: one thread observes (the loop thread), any thread reads; every field
 * is a relaxed atomic. A reader may see a count one observation ahead of a bucket: a
 * scrape is a sample, not a transaction, and Prometheus tolerates that skew.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TL_HIST_NBOUNDS 12

/* Adds n to a counter that only the calling thread writes and any thread reads: a
 * relaxed load and store, which cost what a plain add does, where a locked add
 * (atomic_fetch_add) costs several times that. */
static inline void tl__counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

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

/* Records one duration (the observing thread only); a scrape never makes it wait. */
static inline void tl_histogram_observe(tl_histogram *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    size_t i = 0;
    while (i < TL_HIST_NBOUNDS && ns > tl_histogram_bound_ns(i))
        i++;
    tl__counter_add(&h->buckets[i], 1);
    tl__counter_add(&h->sum_ns, (uint64_t)ns);
    tl__counter_add(&h->count, 1);
}

#endif
