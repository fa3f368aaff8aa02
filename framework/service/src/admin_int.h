/*
 * The renderers admin.c serves: the Prometheus text of /metrics (admin_metrics.c), the
 * JSON of /stats (admin_stats.c), both drawn from one snapshot of the figures
 * (admin_snapshot.c), the JSON of /tasks (admin_tasks.c) and the dashboard page
 * (admin_page.c, generated from framework/service/web/ at build time). They build
 * response bodies and know nothing of HTTP; admin.c calls them and they call nothing
 * in admin.c. Private to admin*.c.
 *
 * Thread rules: all run on libmicrohttpd's polling thread, one request at a time.
 */
#ifndef TL_ADMIN_INT_H
#define TL_ADMIN_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "runtime.h"

/* How long /tasks waits for the loop thread before answering 503. */
#define TL_ADMIN_TASKS_WAIT_MS 2000

/* The Prometheus text (format 0.0.4) of svc's metrics, *len bytes (malloc'd, the
 * caller frees it), or NULL when out of memory. */
char *tl__admin_metrics(tl_service *svc, size_t *len);

/*
 * The pending tasks of svc's loop as JSON text with a final newline, in *json (malloc'd,
 * the caller frees it). Asks the loop thread and waits up to TL_ADMIN_TASKS_WAIT_MS,
 * less once *closing is set. 0; TL_ECLOSED when the loop takes no more calls;
 * TL_ETIMEDOUT when it did not answer in time; TL_ENOMEM.
 */
int tl__admin_tasks(tl_service *svc, _Atomic bool *closing, char **json);

struct json_t;
/* root as JSON text (jansson's dump flags) with a final newline, malloc'd; drops the
 * reference to root, also on failure. NULL when out of memory or root is NULL. */
char *tl__admin_json_text(struct json_t *root, size_t flags);

/* What a route holds right now, counted on the loop thread from its live records. */
typedef struct tl_route_live {
    uint64_t in_flight; /* taken in, not settled */
    uint64_t running;   /* an attempt is out */
    uint64_t stalled;   /* a stalled attempt still runs */
    uint64_t stuck;     /* of those, ignoring cancellation: each holds a worker */
    uint64_t rerouting; /* sent to a target, not yet acknowledged */
    uint64_t emitting;  /* completed; what it emitted not yet acknowledged by every output */
    uint64_t due_wait;  /* a delayed retry come back early, waiting for its due time */
    uint64_t gated;     /* exactly-once: done, its sends waiting for earlier messages' */
} tl_route_live;

/*
 * Asks the loop thread for every route's live counts: out has svc->nroutes entries.
 * Waits like tl__admin_tasks; 0, TL_ECLOSED, TL_ETIMEDOUT or TL_ENOMEM.
 */
int tl__admin_route_live(tl_service *svc, _Atomic bool *closing, tl_route_live *out);

/* One route as the snapshot shows it: its names, counters and (when known) live counts. */
typedef struct tl_admin_route {
    const char *source, *handler;
    const char *on_stall, *on_error;  /* target names, NULL without one */
    uint64_t stalled, rerouted, late; /* totals since the start */
    uint64_t rate_waits;              /* times its intake waited for its rate limit */
    int rate_waiting;                 /* 1 while a message waits for it, -1 without a rate */
    int breaker;                      /* TL_BREAKER_*, or -1 without a breaker */
    uint64_t breaker_transitions;
    bool live_known; /* the loop answered in time */
    tl_route_live live;
} tl_admin_route;

/* A partition: its committed position and, when its source reports it, its lag. */
typedef struct tl_admin_part {
    const char *source;
    const char *topic;
    int32_t partition;
    int64_t committed; /* next offset committed, -1 before the first commit */
    int64_t lag;       /* -1 when unknown */
} tl_admin_part;

/* The figures /metrics and /stats render: one code path takes them, two print them. */
/* A histogram as a snapshot copied it. */
typedef struct tl_admin_hist {
    uint64_t buckets[TL_HIST_NBOUNDS + 1]; /* per bucket, not cumulative */
    uint64_t count, sum_ns;
} tl_admin_hist;

typedef struct tl_admin_snap {
    tl_service_stats st;
    unsigned workers;
    int64_t heartbeat_age_ms; /* since the loop's last housekeeping round, -1 before */
    bool stopping;
    int64_t clock_ms; /* the monotonic clock at the snapshot: rates divide by its steps */
    tl_target_stats *targets;
    size_t ntargets;
    tl_admin_part *parts; /* every committed position, then lag-only partitions */
    size_t nparts;
    tl_partition_lag *lag_topics; /* the lag copy, which parts' topics may point into */
    tl_admin_hist handler;        /* handler attempt durations */
    tl_admin_hist lateness;       /* delayed retries: how long after their due time they ran */
    tl_admin_route *routes;
    size_t nroutes;
} tl_admin_snap;

/*
 * Fills s from the counters, the histogram and the partition and target lists. With
 * closing non-NULL it also asks the loop for the routes' live counts (left unknown
 * when it does not answer in time). 0, or TL_ENOMEM with s empty.
 */
int tl__admin_snap_take(tl_service *svc, _Atomic bool *closing, tl_admin_snap *s);

/* Frees what tl__admin_snap_take allocated in s. */
void tl__admin_snap_free(tl_admin_snap *s);

/* The quantile q (0..1) of h in seconds, interpolated within its bucket as
 * Prometheus's histogram_quantile does; 0 without observations. */
double tl__admin_quantile(const tl_admin_hist *h, double q);

/* What /stats shows of the partitions: the top `top` by lag (then by partition) from
 * the `from`-th on. */
typedef struct tl_admin_range {
    size_t top, from;
} tl_admin_range;

/* The JSON of /stats with a final newline (malloc'd, the caller frees it), or NULL. */
char *tl__admin_stats(tl_service *svc, _Atomic bool *closing, const tl_admin_range *range);

/* The dashboard page (HTML, its CSS and script inline), and its length. */
extern const char tl__admin_page_html[];
extern const size_t tl__admin_page_html_len;

#endif
