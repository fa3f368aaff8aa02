/*
 * Private structures of the service runtime (service.c, dispatch.c, reroute.c).
 *
 * Thread rules: everything here belongs to the loop thread, except
 *  - the counters in tl_service.st and handler_seconds (atomics, read from any thread),
 *  - parts/nparts and targets' counters, also read by tl_service_partitions and
 *    tl_service_targets from any thread: guarded by svc->mu for structure changes,
 *    and a part's committed is written under svc->mu (read by tl_service_partitions),
 *  - stop_req, stopping, heartbeat_ms and admin_port (atomics),
 *  - the taken/abandoned flags of a delivered batch: guarded by svc->mu, signalled
 *    on intake_cv (a source's deliver waits until the loop took its batch in).
 * Sources and sinks reach the loop only through tl_loop_call_threadsafe.
 */
#ifndef TL_SERVICE_INT_H
#define TL_SERVICE_INT_H

#include <taskloop/config.h>
#include <pthread.h>
#include <stdatomic.h>
#include <taskloop/loop_ext.h>
#include <taskloop/recycler.h>
#include "metrics.h"
#include "offsets.h"

#include <taskloop/service.h>

typedef struct tl_rec tl_rec;
typedef struct tl_lane tl_lane;

/* A partition (or, for transports without partitions, an endpoint) of a source. */
typedef struct tl_partition_state {
    struct tl_source_state *src;
    char *topic;
    int32_t partition;
    unsigned gen; /* bumped at each assignment: records of old ones are ignored */
    bool assigned;
    bool revoking;
    bool dirty;        /* committable position moved since the last commit */
    int64_t committed; /* the last position handed to ops->commit, -1 */
    tl_offsets offsets;
    size_t in_flight;
} tl_partition_state;

/* Batches a source may have delivered and not yet taken in (see tl__backpressure). */
#define TL_BATCHES_OUT 2

typedef struct tl_batch tl_batch;

typedef struct tl_source_state {
    tl_service *svc;
    unsigned batches_out;  /* guarded by svc->mu */
    int64_t hold_limit_ms; /* ops->hold_limit_ms; 0: deliver may wait without limit */
    bool hold_asked;       /* guarded by svc->mu: a deliver waited past hold_limit_ms */
    bool hold_paused;      /* guarded by svc->mu, written by the loop: paused for it */
    const tl_config_source *cfg;
    const tl_source_ops *ops;
    tl_source *handle;
    tl_source_events ev;
    size_t index;
} tl_source_state;

/* A reroute destination shared by routes naming the same target. */
typedef struct tl_target {
    char *name; /* "scheme:address" */
    const tl_sink_ops *ops;
    tl_sink *sink;
    _Atomic uint64_t rerouted;
    _Atomic uint64_t errors;
} tl_target;

typedef struct tl_route_state {
    const tl_config_route *cfg;
    tl_source_state *src;
    tl_target *on_stall; /* NULL when the route has none */
    tl_target *on_error;
    tl_rec *watch_head, *watch_tail; /* running attempts by deadline (dispatch.c) */
    tl_timer watch_timer;            /* armed for the head's deadline */
} tl_route_state;

typedef enum tl_rec_state {
    REC_QUEUED,    /* waiting for its ordering lane */
    REC_RUNNING,   /* its handler task is out */
    REC_BACKOFF,   /* failed, waiting to retry in place */
    REC_REROUTING, /* sent to a target, waiting for the acknowledgement */
    REC_SETTLED,
} tl_rec_state;

/* One message in flight. */
struct tl_rec {
    tl_service *svc;
    tl_route_state *route;
    tl_partition_state *part;
    tl_msg *msg;
    uint64_t slot;
    unsigned gen;
    tl_rec_state state;
    unsigned attempt;
    int64_t first_seen_ms;
    tl_task *task;          /* the current attempt */
    tl_task *stuck;         /* a stalled attempt still running (holds a worker) */
    unsigned stuck_attempt; /* which attempt that is */
    bool replaced_worker;   /* a worker was added for the stuck attempt */
    bool stalled;
    int last_err;
    char *err_text;
    const char *reason; /* "stalled" or "failed" while rerouting */
    tl_target *target;
    unsigned send_tries;
    tl_lane *lane; /* the lane it holds or waits in; NULL for ordering none */
    tl_rec *lane_next;
    tl_timer timer;                  /* backoff of retries and of reroute sends */
    tl_cbnode done_node;             /* linked into the current attempt while watched */
    bool linked;                     /* done_node is linked */
    bool watched;                    /* in its route's watch list */
    int64_t watch_due_ns;            /* when the current attempt's time is up at the earliest */
    tl_rec *watch_prev, *watch_next; /* its route's watch list */
    tl_rec *all_prev, *all_next;     /* every live record, for teardown */
    tl_rec *stuck_prev, *stuck_next; /* records whose stalled attempt still runs */
    int64_t stalled_at_ms;
    bool stuck_overdue; /* still running past the grace period: it holds a worker */
};

/* An ordering lane: at most one record of a key (or partition) runs at a time. */
struct tl_lane {
    uint64_t key;
    tl_route_state *route;
    tl_rec *busy; /* the record holding it */
    tl_rec *head, *tail;
    size_t nqueued; /* records from head to tail */
    /* The first nchained queued records have held attempts chained one after the
     * other to busy's (see chain_more in dispatch.c); chain_from is the task whose
     * next_run holds the first of them. */
    size_t nchained;
    tl_task *chain_from;
    tl_rec *chain_last;
    /* The attempt at the chain's end (chain_last's, or busy's) had its slot closed by
     * its runner: nothing more can be chained until the end changes. Remembered so
     * that intake does not read that task's slot, written on another core, each time. */
    bool end_closed;
    tl_lane *next; /* hash bucket chain */
};

typedef struct tl_stats_atomic {
    _Atomic uint64_t consumed, completed, failed, retries, stalled, rerouted, dropped, late,
        reroute_errors, replaced_workers, in_flight, uncommitted, paused, source_pauses;
    _Atomic bool healthy;
} tl_stats_atomic;

typedef struct tl_revoke_req tl_revoke_req;

struct tl_service {
    const tl_config *cfg;
    tl_config *owned_cfg; /* set by tl_service_load: freed with the service */
    tl_registry *reg;
    tl_service_opts opts;
    tl_loop *loop;
    pthread_mutex_t mu;
    pthread_cond_t intake_cv; /* with mu: a delivered batch was taken in (ev_deliver) */
    tl_source_state *srcs;
    size_t nsrcs;
    tl_route_state *routes;
    size_t nroutes;
    tl_target **targets;
    size_t ntargets;
    tl_partition_state **parts;
    size_t nparts;
    tl_partition_state *last_part; /* the partition of the last message taken in */
    tl_lane **lanes;
    size_t nlanes_buckets, nlanes;
    tl_timer housekeeping;
    tl_batch *held_head, *held_tail; /* batches kept aside past max_in_flight */
    bool in_backpressure;            /* taking held batches in: no re-entry */
    unsigned replaced_now;           /* workers added for stuck handlers, not yet retired */
    _Atomic bool stop_req;
    _Atomic bool stopping; /* the drain started: sources must not call back into it */
    bool drained;
    bool closing;            /* tl_service_free runs: late events touch nothing */
    tl_rec *recs;            /* every live record */
    tl_recycler *rec_blocks; /* freed records, for the next ones */
    tl_rec *stuck;           /* records whose stalled attempt still runs */
    int64_t drain_deadline_ms;
    tl_revoke_req *revokes;
    tl_stats_atomic st;
    tl_histogram handler_seconds; /* attempt durations, for /metrics */
    _Atomic int64_t heartbeat_ms; /* loop clock at the last housekeeping round; 0 before */
    struct tl_admin *admin;       /* the admin endpoint while tl_service_run runs */
    _Atomic int admin_port;       /* its bound port, 0 when it is not listening */
};

/* Counter bump by the counters' only writer, the loop thread; anyone reads. A load and
 * a store, not a locked read-modify-write: those were a fifth of intake's time. */
#define TL_STAT_ADD(svc, field, n) tl__counter_add(&(svc)->st.field, (uint64_t)(n))

/* dispatch.c: takes a batch of delivered messages into the runtime. */
void tl__dispatch_batch(tl_service *svc, tl_source_state *src, tl_msg **msgs, size_t n);

/* What a handler task works on, for /tasks. */
typedef struct tl_task_message {
    const char *handler, *origin; /* borrowed from the route and the message */
    int32_t partition;
    int64_t offset;
    unsigned attempt; /* of the task itself: 1 for the first */
    bool stalled;     /* past its timeout and still running */
} tl_task_message;

/* Loop thread: fills out and returns true when task runs a route's handler. */
bool tl__task_message(const tl_task *task, tl_task_message *out);

/* dispatch.c: the record is settled: bookkeeping, lane release, commit position. */
void tl__rec_settle(tl_rec *rec);

/* dispatch.c: frees a record once it is settled and no attempt of it still runs. */
void tl__rec_maybe_free(tl_rec *rec);

/* dispatch.c: drops records queued (not started) on revoked partitions. */
void tl__dispatch_drop_queued(tl_service *svc, tl_partition_state *part);

/* How long a stalled attempt may keep running before its worker is replaced. */
#define TL_STUCK_GRACE_MS 100

/* dispatch.c: replaces the workers of attempts stuck past the grace period (up to the
 * cap) and updates the health flag. Called by housekeeping. */
void tl__check_stuck(tl_service *svc);

/* dispatch.c: frees every record left at teardown, giving its message back. */
void tl__records_free_all(tl_service *svc);

/* dispatch.c: frees every lane (service teardown). */
void tl__lanes_free(tl_service *svc);

/* reroute.c: sends the record to target with the tl-* headers; settles on ack. */
void tl__reroute(tl_rec *rec, tl_target *target, const char *reason);

/* reroute.c: opens the sinks of every target the routes name. */
int tl__targets_open(tl_service *svc, char *err, size_t errlen);

/* reroute.c: flushes and closes every sink. */
void tl__targets_close(tl_service *svc, int64_t flush_ms);

/* service.c: reports an event through the user's log function, if any. */
void tl__log(tl_service *svc, tl_level level, const char *event, const tl_kv *fields, size_t n);

/* service.c: commits every partition whose position moved. */
void tl__commit_dirty(tl_service *svc);

/* service.c: applies backpressure after in-flight changed. */
void tl__backpressure(tl_service *svc);

#endif
