/*
 * Private structures of the service runtime, and what its files offer each other.
 * The words (message, record, attempt, lane, stalled, stuck, late, settled, held) are
 * defined once, in the glossary at the top of taskloop/service.h.
 *
 * Calls go one way, down this list; a lower file reports back up only through the
 * hooks in tl_service (see tl_runtime_hooks):
 *
 *   service.c   lifecycle, housekeeping, drain, source events, stats getters
 *   shard.c     loop.shards: the other shards, and source events split among them
 *   revoke.c    a revoked partition: drop what is queued, drain, commit, forget
 *   intake.c    batches from sources: backpressure (held batches), hold limit, pause
 *   record.c    a message in flight: start, outcome of each attempt, retry, settle
 *   lanes.c     ordering lanes and the chains of attempts behind a running one
 *   attempt.c   one handler task: create it, watch it (watch.c), undo it
 *   procs.c     isolation: process: the task hands its message to a worker process
 *               (forked by isolate.c's zygote; child.c runs there; frame.c frames
 *               the messages, ring.c brings the results back in shared memory)
 *   watch.c     an attempt's completion and its route's timeout
 *   stalled.c   stalled attempts still running: stuck workers replaced, health
 *   reroute.c   targets: send with tl-* headers, retry until acknowledged
 *   partitions.c  partition states and their commits
 *   offsets.c, log.c (→ logger.c), stats.c (counters for any thread), handlers.c
 *   (built-ins), handler_life.c (handlers' lifecycle hooks), shared.c (the sources'
 *   and sinks' calls shards make at once, and a failure of the service from any shard)
 *
 * Beside the path: admin.c (the HTTP endpoint) calls admin_metrics.c and
 * admin_tasks.c, which read stats.c, partitions.c, reroute.c and attempt.c; the config
 * (config.c → document.c → resolve.c, schema*.c → plugins.c → loader.c, interpolate.c,
 * secrets.c; dump.c) has headers of its own (config_int.h, schema_int.h), and so has
 * the program part above the public API (program.c → runner.c → summary.c;
 * program_int.h).
 *
 * Thread rules: everything here belongs to the loop thread, except
 *  - the counters in tl_service.st and handler_seconds (atomics, read from any thread),
 *  - parts/nparts and targets' counters, also read by tl_service_partitions and
 *    tl_service_targets from any thread: guarded by svc->mu for structure changes,
 *    and a part's committed is written under svc->mu (read by tl_service_partitions),
 *  - stop_req, stopping, heartbeat_ms and admin_port (atomics),
 *  - a source state's batches_out / hold_asked / hold_paused: guarded by svc->mu,
 *    signalled on intake_cv (a source's deliver waits until the loop took its batch in).
 * Sources and sinks reach the loop only through tl_loop_call_threadsafe.
 */
#ifndef TL_RUNTIME_H
#define TL_RUNTIME_H

#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>
#include <taskloop/config.h>
#include <taskloop/list.h>
#include <taskloop/loop_ext.h>
#include <taskloop/recycler.h>
#include <taskloop/service.h>

#include "metrics.h"
#include "offsets.h"

typedef struct tl_rec tl_rec;
typedef struct tl_route_state tl_route_state;
typedef struct tl_lane tl_lane;
typedef struct tl_batch tl_batch;
typedef struct tl_revoke_req tl_revoke_req;

/* The live state of a partition (or, for transports without partitions, an endpoint). */
/* Commits of one partition awaiting their acknowledgement, at most (acks.c). */
#define TL_COMMIT_POINTS 16

typedef struct tl_partition_state {
    struct tl_source_state *src;
    char *topic;
    int32_t partition;
    unsigned gen; /* bumped at each assignment: records of old ones are ignored */
    bool assigned;
    bool revoking;
    bool revoked;           /* revoked and not assigned again: what it still delivers is stale */
    bool dirty;             /* committable position moved since the last commit */
    int64_t committed;      /* the last position handed to ops->commit, -1 */
    int64_t delay_due_ns;   /* `delay:` when its last delayed record comes due (record.c) */
    size_t delayed_pending; /* its delayed records waiting for their time */
    /* The highest offset settled since the assignment, -1: a revoke keeps every
     * message below it or below one running (see tl__records_revoking). */
    int64_t high_settled;
    tl_offsets offsets;
    /* Sources with commit_acks (acks.c): slots below `acked` are committed and
     * acknowledged; each position handed to ops->commit and not yet acknowledged is a
     * point (the position, and the slot it starts at), oldest first from point_first. */
    uint64_t acked;
    struct tl_commit_point {
        int64_t next;
        uint64_t slot;
        int64_t at_ms; /* when the position went to the source (loop clock) */
    } points[TL_COMMIT_POINTS];
    unsigned point_first, npoints;
    size_t in_flight;
    /* Fair intake (intake.c): messages kept back while the partition holds its share
     * of a contended window, oldest first (a ring from held_first). */
    tl_msg **held;
    size_t held_first, held_n, held_cap;
    bool held_at_source; /* the source was asked to stop fetching it (pause_partitions) */
    tl_link held_link;   /* in svc->held_parts while held_n > 0 */
    /* Exactly-once (txn.c): its records whose sends have not gone yet, in offset
     * order (txn_link), and the offset after the last one taken in, -1. */
    tl_list txn_fifo;
    int64_t txn_next;
} tl_partition_state;

/* Batches a source may have delivered and not yet taken in (see intake.c). */
#define TL_BATCHES_OUT 2

/* The live state of a configured source: its adapter handle and its intake. */
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
    bool serial;           /* its route handles one message of a partition at a time (ordering
                            * partition): more than a partition's share in the window only waits */
    unsigned held_batches; /* loop thread: its batches kept aside (intake.c) */
    uint64_t held_pass;    /* loop thread: take_held's last pass that left one of them */
    /* Exactly-once (txn.c): its route says `delivery: exactly_once`. Loop thread. */
    bool txn;
    bool txn_broken; /* a commit failed or partitions were lost: none again */
    const tl_config_route *txn_route;
    uint64_t txn_done;    /* records whose sends went since the last commit */
    int64_t txn_since_ms; /* loop clock: when the first of them went; -1: none */
    tl_timer txn_timer;   /* lets gated sends go, commits once txn_done is reached */
    bool txn_committing;  /* a commit is out on the committer (txn.c): sends wait */
    struct tl_txn_committer *txn_committer;
    /* Shards (shard.c): the root service's state of this source, itself there. Every
     * shard's copy has the root's ops and handle; the calls shards make at once go
     * through shared.c, under the root's share_mu, which also guards pauses (how many
     * shards asked for a pause now) and, on the source's thread, split (deliver's
     * lists of messages per shard). */
    struct tl_source_state *real;
    pthread_mutex_t share_mu;
    unsigned pauses;
    tl_msg **split;
    size_t split_cap;
} tl_source_state;

/* Whether the source's commits are acknowledged later (ops->commit_acks): a
 * transaction's commit is durable when it returns. */
static inline bool tl__commit_acks(const tl_source_state *src)
{
    return src->ops->commit_acks && !src->txn;
}

/* A reroute destination shared by routes naming the same target. */
typedef struct tl_target {
    char *name;               /* "scheme:address" */
    tl_source_state *txn_src; /* writes in this source's transactions (exactly-once) */
    const tl_sink_ops *ops;
    /* Its sink; writing in transactions, one per shard (shard k's at k: each writes in
     * its shard's transaction context), else one that every shard sends through. */
    tl_sink **sinks;
    size_t nsinks;
    _Atomic uint64_t rerouted;
    _Atomic uint64_t errors;
    pthread_mutex_t send_mu; /* with shards: sends from their loops go one at a time */
} tl_target;

/* A route's rate limit (rate.c). */
typedef struct tl_rate {
    bool on;
    int64_t interval_ns;    /* between two messages on schedule */
    int64_t tau_ns;         /* how far ahead of schedule a burst may run */
    _Atomic int64_t tat_ns; /* when the next message is on schedule */
} tl_rate;

/* Sets the bucket up from the route's rate and burst (off without a rate). */
void tl__rate_init(tl_rate *r, const tl_config_route *cfg);

/* Any loop thread: takes a token at now_ns and returns 0, or returns how many ns until
 * one is there (nothing taken). Always 0 when the route has no rate. */
int64_t tl__rate_take(tl_rate *r, int64_t now_ns);

/* A route's circuit breaker (breaker.c). */
enum { TL_BREAKER_CLOSED, TL_BREAKER_OPEN, TL_BREAKER_HALF };
typedef struct tl_breaker {
    bool on;
    pthread_mutex_t mu; /* guards the rest but state and transitions (shards share it) */
    unsigned failures;  /* that many within window_ns open it */
    int64_t window_ns, cooldown_ns;
    int64_t *times;        /* the last `failures` failure times, a ring */
    unsigned n, next;      /* how many it holds; the slot written next */
    int64_t open_until_ns; /* open: when the cooldown ends */
    const tl_msg *probe;   /* half-open: the probe's message, once it went in */
    _Atomic int state;     /* TL_BREAKER_*; read by the admin endpoint */
    _Atomic uint64_t transitions;
} tl_breaker;

/* Sets the breaker up from the route's config (off without one). TL_ENOMEM. */
int tl__breaker_init(tl_breaker *b, const tl_config_route *cfg);

/* Frees what tl__breaker_init allocated. */
void tl__breaker_free(tl_breaker *b);

/* "closed", "open" or "half_open". */
const char *tl__breaker_state_name(int state);

/* svc's loop thread (any shard's): 0 when the route may take a message in now (the
 * probe, when half-open); else ns until the cooldown ends, or INT64_MAX while a probe's
 * outcome is awaited. Nothing is taken: tl__breaker_taken says the message went in. */
int64_t tl__breaker_wait(tl_service *svc, tl_route_state *route, int64_t now_ns);

/* A loop thread: msg goes in after tl__breaker_wait said 0 (half-open: as the probe).
 * False when it may not after all: half-open, another shard's message became the probe
 * since. */
bool tl__breaker_taken(tl_route_state *route, const tl_msg *msg);

/* A loop thread: msg's record is freed; if it was the probe, the next message may be. */
void tl__breaker_forget(tl_route_state *route, const tl_msg *msg);

/* svc's loop thread: an attempt of msg, of the route, succeeded (ok) or failed or
 * stalled. */
void tl__breaker_note(tl_service *svc, tl_route_state *route, const tl_msg *msg, bool ok,
                      int64_t now_ns);

/* The live state of a configured route. */
struct tl_route_state {
    const tl_config_route *cfg;
    tl_source_state *src;
    tl_target *on_stall; /* NULL when the route has none */
    tl_target *on_error;
    tl_target *retry_via;   /* on_error.via: delayed retries go there; NULL: in place */
    tl_target **outputs;    /* cfg->outputs' targets, in that order; NULL without any */
    tl_list watch;          /* running attempts' records by deadline (watch.c) */
    tl_timer watch_timer;   /* armed for the head's deadline */
    tl_handler_hooks hooks; /* its handler's (handler_life.c) */
    void *handler_state;    /* what hooks.init stored */
    bool handler_live;      /* set up: its fini is due */
    /* Its share of the service's stalled, rerouted and late counters (the admin
     * endpoint reads them from any thread). Bumped on those paths only, never on a
     * completion's. */
    _Atomic uint64_t stalled, rerouted, late;
    /* The root's state of this route (itself in the root): its rate and breaker, which
     * every shard's takes from (rate.c, breaker.c). A shard's own two stay unused. */
    struct tl_route_state *shared;
    tl_rate rate;                /* its rate limit */
    tl_breaker breaker;          /* its circuit breaker */
    _Atomic uint64_t rate_waits; /* times its intake (this shard's) waited for the rate */
    _Atomic bool rate_waiting;   /* a message of it waits for the rate limit now */
    struct tl_procs *procs;      /* isolation process: its worker processes (procs.c) */
};

typedef enum tl_rec_state {
    REC_QUEUED,    /* waiting for its ordering lane */
    REC_RUNNING,   /* its handler task is out */
    REC_BACKOFF,   /* failed, waiting to retry in place */
    REC_DUE,       /* a delayed retry come back early (due.c), or a message of a route
                    * with `delay:` before its time: waits, in no lane */
    REC_REROUTING, /* sent to a target, waiting for the acknowledgement */
    REC_EMITTING,  /* succeeded; what it emitted waits for the outputs' acks (emit.c) */
    REC_GATED,     /* exactly-once: its sends (target, or NULL: its emits) wait for
                    * those of the partition's earlier messages (txn.c) */
    REC_SETTLED,
} tl_rec_state;

/* A record: one message in flight, from intake until it is settled and freed. */
struct tl_rec {
    tl_service *svc;
    tl_route_state *route;
    tl_partition_state *part;
    tl_msg *msg;
    uint64_t slot; /* its offset's slot in part->offsets */
    unsigned gen;  /* part->gen when taken in */
    tl_rec_state state;
    unsigned attempt; /* attempts made so far; the current one's number */
    int64_t first_seen_ms;
    int64_t due_ms;                  /* wall clock: when its delayed retry is due (due.c) */
    struct tl_carried *carried;      /* what a delayed retry carries on, or NULL */
    _Atomic(struct tl_emit *) emits; /* queued by the running attempt, newest first */
    struct tl_emit *emit_out;        /* sent, not yet acknowledged (emit.c) */
    size_t emits_pending;
    tl_task *task;            /* the current attempt */
    tl_task *stalled;         /* a stalled attempt still running, or NULL */
    unsigned stalled_attempt; /* which attempt that is */
    bool stuck;               /* it ignored cancellation past the grace: holds a worker */
    bool replaced_worker;     /* a worker was added while it is stuck */
    int64_t stalled_at_ms;
    int last_err;
    char *err_text;
    const char *reason; /* "stalled" or "failed" while rerouting */
    tl_target *target;
    unsigned send_tries;
    tl_lane *lane; /* the lane it holds or waits in; NULL for ordering none */
    tl_rec *lane_next;
    tl_timer timer;       /* backoff of retries and of reroute sends; rewatching */
    tl_cbnode done_node;  /* linked into the current attempt while watched */
    bool linked;          /* done_node is linked */
    bool watched;         /* in its route's watch list */
    int64_t watch_due_ns; /* when the current attempt's time is up at the earliest */
    tl_link watch_link;   /* its route's watch list */
    tl_link all_link;     /* every live record, for teardown */
    tl_link stalled_link; /* records whose stalled attempt still runs */
    tl_link txn_link;     /* exactly-once: in its partition's txn_fifo */
    bool txn_in;          /* txn_link is linked */
    bool txn_done;        /* its sends went, or it settled with none */
    bool delayed;         /* REC_DUE for the route's `delay:`, not as a retry */
    bool in_worker;       /* a worker process's record of the message (child.c) */
};

/* An ordering lane: at most one record of a key (or partition) runs at a time. */
struct tl_lane {
    uint64_t key;
    tl_route_state *route;
    tl_rec *busy; /* the record holding it */
    tl_rec *head, *tail;
    size_t nqueued; /* records from head to tail */
    /* The first nchained queued records have held attempts chained one after the
     * other to busy's (see chain_more in lanes.c); chain_from is the task whose
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
        reroute_errors, replaced_workers, in_flight, uncommitted, paused, source_pauses,
        handler_crashes, processes_replaced, retries_delayed, retries_waiting, emitted, emit_errors,
        txn_commits, txn_aborts, delayed_waiting;
    /* The loop's clock when its first message was taken in and its last one settled
     * (0 before): what a run's rate is measured over. One writer, the loop thread. */
    _Atomic int64_t first_consumed_ns, last_settled_ns;
    _Atomic bool healthy;
} tl_stats_atomic;

/*
 * How lower files report back to the ones above them, set once by tl_service_new:
 * the call graph between files stays a tree, and none of these runs the caller's
 * work from inside the callee's (room_freed only schedules intake).
 */
typedef struct tl_runtime_hooks {
    void (*attempt_done)(tl_rec *rec, tl_task *task); /* watch.c: the attempt finished */
    void (*attempt_expired)(tl_rec *rec);             /* watch.c: its time is up */
    void (*attempt_late)(tl_rec *rec, tl_task *task); /* stalled.c: a stalled one returned */
    void (*rerouted)(tl_rec *rec);                    /* reroute.c: the target acked it */
    void (*emitted)(tl_rec *rec); /* emit.c: every output took what the attempt emitted */
    void (*txn_go)(tl_rec *rec);  /* txn.c: a gated record's sends may go now */
    void (*room_freed)(tl_service *svc, tl_partition_state *part); /* record.c: settled */
    void (*intake_retry)(tl_service *svc); /* breaker.c: messages that waited may go in */
} tl_runtime_hooks;

struct tl_service {
    const tl_config *cfg;
    tl_config *owned_cfg; /* set by tl_service_load: freed with the service */
    tl_registry *reg;
    tl_service_opts opts;      /* opts.log is own_log's when the caller gave none */
    struct tl_logger *own_log; /* the service's own logger, or NULL */
    tl_runtime_hooks hooks;
    tl_loop *loop;
    pthread_mutex_t mu;
    pthread_cond_t intake_cv; /* with mu: a delivered batch was taken in (intake.c) */
    tl_source_state *srcs;
    size_t nsrcs;
    tl_route_state *routes;
    size_t nroutes;
    tl_target **targets;
    size_t ntargets;
    tl_partition_state **parts;
    size_t nparts;
    tl_partition_state *last_part; /* the partition of the last message taken in */
    size_t nassigned;              /* partitions assigned now (the fair share's divisor) */
    tl_list held_parts;            /* partitions with messages kept back (held_link) */
    size_t held_msgs;              /* messages kept back in all of them */
    size_t held_bytes;             /* and what they take, as kept_bytes() counts it */
    size_t unacked;                /* tracked, commit not acknowledged (acks.c) */
    bool acks_late;                /* acknowledgements are overdue: unacked is the window */
    int64_t last_ack_ms;           /* loop clock */
    tl_lane **lanes;
    size_t nlanes_buckets, nlanes;
    tl_timer housekeeping;
    tl_batch *held_head, *held_tail; /* batches kept aside: past max_in_flight, or
                                      * for their route's rate limit or breaker */
    uint64_t held_passes;            /* take_held's passes over them */
    tl_timer room_timer;             /* takes held batches in on the next turn */
    tl_timer rate_timer;             /* takes held batches in when a rate allows */
    unsigned replaced_now;           /* workers added for stuck attempts, not yet retired */
    _Atomic bool stop_req;
    _Atomic bool stopping; /* the drain started: sources must not call back into it */
    bool drained;
    int fatal_err;           /* a source's fatal error stopped the service: what run returns */
    bool closing;            /* tl_service_free runs: late events touch nothing */
    tl_list recs;            /* every live record (all_link) */
    tl_recycler *rec_blocks; /* freed records, for the next ones */
    tl_list stalled;         /* records whose stalled attempt still runs (stalled_link) */
    int64_t drain_deadline_ms;
    tl_revoke_req *revokes;
    tl_stats_atomic st;
    tl_histogram handler_seconds; /* attempt durations, for /metrics */
    tl_histogram retry_lateness;  /* delayed retries: ns past their due time (record.c) */
    _Atomic int64_t heartbeat_ms; /* loop clock at the last housekeeping round; 0 before */
    struct tl_admin *admin;       /* the admin endpoint, from the build to the run's end */
    _Atomic int admin_port;       /* its bound port, 0 when it has none (or no longer) */
    struct tl_zygote *zygote;     /* forks worker processes (isolate.c); NULL without */
    uint64_t replaced_logged;     /* processes_replaced when housekeeping last logged */
    /* An eventfd the worker processes write when the root loop sleeps and results wait
     * for it (procs.c), or -1: no route is isolated. */
    int results_fd;
    /* Shards (shard.c): a service with `loop.shards` above one is a root, which runs
     * the sources, the targets and the admin endpoint and is shard 0, and more shards,
     * each with its own loop thread, workers, lanes, records and partitions. */
    tl_service *root;         /* the root: itself when it is one */
    tl_service **shards;      /* root: every shard, itself first (nshards of them) */
    size_t nshards;           /* root: 1 unsharded */
    size_t index;             /* its number among the root's shards */
    struct tl_owners *owners; /* root: the shard each partition belongs to */
    pthread_t thread;         /* a shard's loop thread (not the root's) */
    bool thread_started;
    _Atomic bool shard_drained; /* a shard's drain is over: the root may stop the sources */
};

/* Shard k of a root (the root itself when it has no others). */
static inline tl_service *tl__shard_at(tl_service *root, size_t k)
{
    return root->shards ? root->shards[k] : root;
}

/* Whether the service is one of several shards (loop thread, or any after the build). */
static inline bool tl__sharded(const tl_service *svc)
{
    return svc->root->nshards > 1;
}

/* Counter bump by the counters' only writer, the loop thread; anyone reads. A load and
 * a store, not a locked read-modify-write: those were a fifth of intake's time. */
#define TL_STAT_ADD(svc, field, n) tl__counter_add(&(svc)->st.field, (uint64_t)(n))
/* Adds one to a service counter and to its route's share (loop thread). */
#define TL_ROUTE_STAT_INC(rec, field)                                                              \
    do {                                                                                           \
        TL_STAT_ADD((rec)->svc, field, 1);                                                         \
        tl__counter_add(&(rec)->route->field, 1);                                                  \
    } while (0)

/* ---------------------------------------------------------------- shard.c */

/* After the root's sources and targets are open: makes shards 1 to loop.shards - 1
 * (none unless more than one is asked for); 0, or an error with a message in err (the
 * shards made so far are freed by tl__shards_free). */
int tl__shards_new(tl_service *root, char *err, size_t errlen);

/* What every loop of a service has, the root's and each shard's: the records' recycler,
 * the loop and its loop.workers workers, and the timers, records and intake set up on
 * it. 0, or an error with nothing of it left. */
int tl__loop_state_new(tl_service *svc);

/* Frees the shards other than the root (their loops stopped), before the root's
 * sources are closed: their records give their messages back to them. */
void tl__shards_free(tl_service *root);

/* Source thread of a sharded service's source (the root's state): the deliver event,
 * each message to its partition's shard. */
void tl__shards_deliver(tl_source_state *src, tl_msg **msgs, size_t n);

/* Source thread: the assigned event, each partition to its shard. */
void tl__shards_assigned(tl_source_state *src, const tl_partition *parts, size_t n);

/* Source thread: the revoked (or lost) event, each partition to its shard; returns once
 * every shard drained and committed its part. */
void tl__shards_revoke(tl_source_state *src, const tl_partition *parts, size_t n, bool lost);

/* Any thread: the committed event, to the partition's shard. */
void tl__shards_committed(tl_source_state *src, const char *topic, int32_t partition,
                          int64_t next_offset, int err);

/* ---------------------------------------------------------------- shared.c */

/* The source's commit; with shards, one shard's at a time. */
int tl__source_commit(tl_source_state *src, const char *topic, int32_t partition, int64_t next);

/* Asks for the source to pause (or lifts the ask); with shards, it is paused while any
 * shard asks, resumed once none does. */
void tl__source_pause(tl_source_state *src, bool pause);

/* The source's pause_partitions (its partitions belong to this shard alone); with
 * shards, one shard's call at a time. */
void tl__source_pause_partitions(tl_source_state *src, const tl_partition *parts, size_t n,
                                 bool pause);

/* Sends through the target's sink (as ops->send); with shards, one at a time, or each
 * shard through its own (a target writing in transactions). */
int tl__target_send(tl_service *svc, tl_target *t, const tl_out_msg *msg, tl_sink_ack_cb ack,
                    void *arg);

/* Any loop thread: the service stops as tl_service_stop does, and its run returns err
 * (unless a failure came first): a shard's failure is the whole service's. */
void tl__service_fail(tl_service *svc, int err);

/* ---------------------------------------------------------------- stats.c */

/* Any thread: the loop clock at the oldest of the shards' last housekeeping rounds (a
 * stuck shard shows); 0 while one has had none. */
int64_t tl__heartbeat_ms(tl_service *svc);

/* ---------------------------------------------------------------- log.c */

/* Without a log function in the options: a tl_logger of the service's own on stderr,
 * as the config's `log:` section says. TL_ENOMEM when it cannot be made. */
int tl__log_open(tl_service *svc);

/* Frees the service's own logger, reporting what it still counts as suppressed. */
void tl__log_close(tl_service *svc);

/* Whether an event of level is reported (the config's log.level); callers with fields
 * to format check it first. */
bool tl__log_on(const tl_service *svc, tl_level level);

/* Reports an event at or above the config's log.level through the log function. */
void tl__log(tl_service *svc, tl_level level, const char *event, const tl_kv *fields, size_t n);

/* Key bytes shown of a message's key (logs, /tasks); its text takes at most
 * TL_KEY_TEXT_CAP bytes with the terminating NUL. */
#define TL_KEY_TEXT_BYTES 32
#define TL_KEY_TEXT_CAP (2 * TL_KEY_TEXT_BYTES + 8)

/* Writes the message's key into out: as text when printable, else as 0x and hex, cut at
 * TL_KEY_TEXT_BYTES bytes ("..." marks a cut); "" when it has none. */
void tl__key_text(const tl_msg *m, char *out, size_t cap);

/* Reports an event about the record's message: handler, source, topic, partition,
 * offset, message_key, attempt, error (when not NULL), then up to four extra fields. */
void tl__log_msg(const tl_rec *rec, tl_level level, const char *event, unsigned attempt,
                 const char *error, const tl_kv *extra, size_t nextra);

/* ---------------------------------------------------------------- partitions.c */

/* The state of the message's partition, created on first sight; NULL out of memory. */
tl_partition_state *tl__partition_of(tl_service *svc, tl_source_state *src, const tl_msg *msg);

/* Source thread: the assigned event (see tl_source_events); posts the partitions to
 * tl__partitions_assigned on the loop thread. */
void tl__partitions_assigned_on_source(tl_source_state *src, const tl_partition *parts, size_t n);

/* Loop thread: the source was assigned these partitions: their states exist from now
 * on, counted in nassigned. */
void tl__partitions_assigned(tl_service *svc, tl_source_state *src, const tl_partition *parts,
                             size_t n);

/* Recounts the assigned partitions (after an assignment changed). */
void tl__partitions_recount(tl_service *svc);

/* The state of a known partition, or NULL. */
tl_partition_state *tl__partition_find(tl_service *svc, tl_source_state *src, const char *topic,
                                       int32_t partition);

/* Commits the partition's position if it moved (and it is assigned). */
void tl__partition_commit(tl_service *svc, tl_partition_state *p);

/* Commits every partition whose position moved. */
void tl__commit_dirty(tl_service *svc);

/* Tracked messages of a partition of a source with commit_acks whose commit is not yet
 * acknowledged (acks.c). */
uint64_t tl__partition_unacked(const tl_partition_state *p);

/* acks.c, housekeeping: whether acknowledgements are overdue (svc->acks_late). */
void tl__acks_check(tl_service *svc);

/* acks.c: the source's ev->committed; posts the outcome to the loop. Any thread. */
void tl__acks_event(tl_source_state *src, const char *topic, int32_t partition, int64_t next_offset,
                    int err);

/* Frees every partition state (service teardown). */
void tl__partitions_free(tl_service *svc);

/* ---------------------------------------------------------------- handler_life.c */

/* Before the loop exists: looks up each route's handler hooks and calls init. On a
 * failure, fini of the routes set up so far, err naming the route and handler. */
int tl__handlers_init(tl_service *svc, char *err, size_t errlen);

/* After the loop is freed: fini of every route set up. */
void tl__handlers_fini(tl_service *svc);

/* The loop's worker hooks: thread_init/thread_fini of the routes not run inline. */
tl_worker_hooks tl__handlers_worker_hooks(tl_service *svc);

/* On the thread running the loop: thread_init (start) or thread_fini of inline routes. */
void tl__handlers_loop_thread(tl_service *svc, bool start);

/* ---------------------------------------------------------------- isolation */

/* A worker process: its pid and the service's end of its socket. */
typedef struct tl_proc_id {
    pid_t pid;
    int fd;
} tl_proc_id;

/* How long a worker process may go on past its cancellation before it is killed. */
#define TL_KILL_GRACE_MS TL_STUCK_GRACE_MS

/* Messages sent ahead to one worker process while its handlers are fast: enough that
 * messages go many to a write and results many to a wake-up (bench/README.md's
 * isolation section has the figures). Once a handler ran long, TL_PROC_AHEAD_SLOW at
 * most, so that a slow or stuck one holds up little behind it. */
#define TL_PROC_AHEAD 64
#define TL_PROC_AHEAD_SLOW 16

/* A slot's results, shared with its worker process (ring.c). */
typedef struct tl_ring tl_ring;

/* What a worker process runs (child.c): handles messages read from fd, putting their
 * results into ring, until it reads the end of fd; never returns. */
typedef void (*tl_child_main)(tl_service *svc, tl_route_state *route, tl_ring *ring, int fd);

/* isolate.c. On the thread building the service, before any thread of the runtime
 * exists: forks the zygote, the process that forks worker processes on request, so
 * that they come from a process with one thread. */
int tl__zygote_start(tl_service *svc, tl_child_main child, char *err, size_t errlen);

/* isolate.c. Any thread: a new worker process for the route, writing its results into
 * ring (which must come from tl__rings_new before the zygote started); 0, or TL_ESYS. */
int tl__zygote_spawn(tl_service *svc, const tl_route_state *route, tl_ring *ring, tl_proc_id *out);

/* isolate.c. Any thread: waits for the worker process pid (dead, or killed) and
 * returns its wait status, or -1. */
int tl__zygote_reap(tl_service *svc, pid_t pid);

/* isolate.c. After the loop is freed: ends the zygote and waits for it. */
void tl__zygote_stop(tl_service *svc);

/* child.c: the tl_child_main of the service's worker processes. */
void tl__child_main(tl_service *svc, tl_route_state *route, tl_ring *ring, int fd);

/* procs.c. On the thread building the service: room for the route's worker
 * processes, one per loop worker (none started yet); 0, TL_ENOMEM, or TL_ESYS (no
 * eventfd could be made). */
int tl__procs_init(tl_service *svc, tl_route_state *route);

/* procs.c. On a worker thread: hands the record's attempt to a worker process of its
 * route and returns TL_PENDING; the task completes with the handler's result. A crash
 * fails the attempt with "handler crashed: SIGNAME", a process past its cancellation
 * by TL_KILL_GRACE_MS is killed. */
int tl__procs_run(tl_task *task, tl_rec *rec);

/* procs.c. On a loop thread: the pid of the worker process that holds task (sent to
 * it: *running says whether it runs or waits behind the one that does), or 0 when it
 * waits for one. */
int tl__procs_where(struct tl_procs *all, const tl_task *task, bool *running);

/* procs.c. The root loop's poller (tl_loop_set_poller; user: the service): while the
 * loop is awake it takes the results of the worker processes at each of its rounds,
 * with no wake-up of the route's reader nor of itself; asleep, it has the processes
 * wake the reader with their next result. */
bool tl__procs_poll(tl_loop *loop, tl_poll_phase phase, void *svc);

/* procs.c. Housekeeping: logs worker processes replaced since the last round. */
void tl__procs_check(tl_service *svc);

/* procs.c. When the service is freed, before the loop is: kills busy worker
 * processes, fails their attempts and ends the threads reading results. */
void tl__procs_stop(tl_service *svc);

/* procs.c. After tl__procs_stop: closes the idle workers' sockets (they exit). */
void tl__procs_free(tl_service *svc);

/* attempt.c. In a worker process: a task on loop running the route's handler on msg as
 * attempt number attempt, reading rec (which the caller keeps alive until it is done). */
tl_task *tl__attempt_child(tl_loop *loop, tl_rec *rec);

/* ---------------------------------------------------------------- ring.c */

/* A result's error text is cut to this many bytes, its NUL included. */
#define TL_RING_TEXT_MAX 512

/* On the thread building the service, before the zygote starts: n rings in one shared
 * mapping that every worker process inherits (free with tl__rings_free); NULL when
 * none could be made. */
tl_ring *tl__rings_new(size_t n);

/* Unmaps what tl__rings_new made (NULL: nothing). */
void tl__rings_free(tl_ring *rings, size_t n);

/* The i-th ring of rings. */
tl_ring *tl__ring_at(tl_ring *rings, size_t i);

/* Service, while no process is in the ring's slot: empties it for a new process. */
void tl__ring_reset(tl_ring *r);

/* How a worker process's handlers run (tl__ring_put): light, a few microseconds on
 * average, as a no-op (a wake-up costs more than such a handler: they are packed into
 * few processes); fast, under 50 us on average and the last one too; slow, the last
 * one ran 50 us or more (fewer messages go ahead of it). */
enum { TL_PACE_LIGHT, TL_PACE_FAST, TL_PACE_SLOW };

/* Worker: stores the result of its message number seq (from 1, in order), error text
 * NULL for none, its handlers' pace (TL_PACE_*) and whether its outputs went on the
 * socket before it; the service sees it at its next look. */
void tl__ring_put(tl_ring *r, uint64_t seq, int err, const char *text, int pace, bool emits);

/* Service: the pace the ring's last result gave (TL_PACE_*). */
int tl__ring_pace(tl_ring *r);

/* Service: the number of the last result its process put (tl__ring_put). */
uint64_t tl__ring_done(tl_ring *r);

/* Worker, after tl__ring_put: true when the service's side sleeps (it is marked
 * awake): the worker must then write a byte to its socket to wake the reader. */
bool tl__ring_sleeper(tl_ring *r);

/* Service, under the route's lock: true with the result of message seq (text cut to cap, and
 * whether an 'E' frame came before it) once it is in the ring; false while it is not. */
bool tl__ring_get(tl_ring *r, uint64_t seq, int *err, char *text, size_t cap, bool *emits);

/* Service (reader or root loop, before either sleeps): marks it asleep and returns
 * true, or false (still awake) when the result of message next came meanwhile. */
bool tl__ring_sleep(tl_ring *r, uint64_t next);

/* Service, woken (any thread of it): marks it awake. */
void tl__ring_awake(tl_ring *r);

/* Service, under the route's lock: copies a frame of len bytes into the requests and
 * returns true, or, when it does not fit, puts a TL_FRAME_SOCKET marker there and
 * returns false (the caller then sends the frame on the socket). The worker sees it
 * at its next look; tl__ring_req_wake wakes it if it sleeps. */
bool tl__ring_push(tl_ring *r, const char *frame, size_t len);

/* Worker's main thread: true with the next request frame (its body valid until
 * tl__ring_take), false when none waits. */
bool tl__ring_next(tl_ring *r, char *type, const char **body, uint32_t *len);

/* Worker's main thread: frees the frame tl__ring_next gave, for the service to reuse. */
void tl__ring_take(tl_ring *r);

/* Worker's main thread, out of requests: marks it asleep and returns true, or false
 * (still awake) when a request came meanwhile. */
bool tl__ring_req_sleep(tl_ring *r);

/* Worker's main thread, after tl__ring_req_sleep returned true: sleeps until
 * tl__ring_req_wake; marked awake on return. */
void tl__ring_req_wait(tl_ring *r);

/* Any thread of the service or the worker: wakes the worker's main thread if it
 * sleeps (after a push, or when the socket ended). */
void tl__ring_req_wake(tl_ring *r);

/* ---------------------------------------------------------------- frame.c */

/* Frame types: a message and a cancel to a worker process; in its request ring also
 * a pad (skipped) and a marker for a message sent on the socket instead. */
#define TL_FRAME_MSG 'M'
#define TL_FRAME_CANCEL 'C'
#define TL_FRAME_PAD 'P'
#define TL_FRAME_SOCKET 'S'
/* From a worker process: a message's outputs. */
#define TL_FRAME_EMITS 'E'
/* Frames are refused past this size (a worker's garbage never makes the parent
 * allocate without bound). */
#define TL_FRAME_MAX (256u << 20)

/* Frames waiting to be written together: a growing buffer; zero it before use. */
typedef struct tl_frame_out {
    char *p;
    size_t n, cap;
    bool oom;
} tl_frame_out;

/* Appends 'M' and the message with its attempt number; 0, or TL_ENOMEM (too large for
 * a frame, or out of memory: the buffer is left as it was). */
int tl__frame_put_msg(tl_frame_out *o, const tl_msg *m, unsigned attempt);

/* Writes what o holds and empties it; 0, or TL_ESYS (the peer is gone). */
int tl__frame_flush(int fd, tl_frame_out *o);

/* Frees o's buffer. */
void tl__frame_out_free(tl_frame_out *o);

/* A message read by a worker process; its fields point into buf. */
typedef struct tl_frame_msg {
    tl_msg msg;
    unsigned attempt;
    tl_header *headers;
    char *buf;
    size_t buf_cap, headers_cap;
} tl_frame_msg;

/* Decodes the body of an 'M' frame into out (a copy), reusing out's buffers when
 * they are large enough (zero out before its first use); 0, TL_ENOMEM, or TL_ESYS. */
int tl__frame_decode_msg(const char *body, uint32_t len, tl_frame_msg *out);

/* Frees what tl__frame_decode_msg allocated. */
void tl__frame_msg_free(tl_frame_msg *fm);

/* Sends 'C' for the worker's message number seq; 0, or TL_ESYS. */
int tl__frame_send_cancel(int fd, uint64_t seq);

/* Puts an 'E' frame into o: the n outputs msgs[i], each to the route's output index[i],
 * that message seq's handler emitted; 0, or TL_ENOMEM (too large for a frame, or out
 * of memory: the buffer is left as it was). */
int tl__frame_put_emits(tl_frame_out *o, uint64_t seq, size_t n, const uint32_t *index,
                        const tl_out_msg *const *msgs);

/* Decodes the body of an 'E' frame: its message number into *seq, then each output,
 * in order, to each (its pointers valid during the call only); stops at the first
 * nonzero return, which it returns. TL_ESYS when the body is malformed, TL_ENOMEM. */
int tl__frame_decode_emits(const char *body, uint32_t len, uint64_t *seq,
                           int (*each)(void *arg, uint32_t index, const tl_out_msg *m), void *arg);

/* Frames read from a socket through a buffer; zero it but for fd before use. */
typedef struct tl_frame_in {
    int fd;
    char *buf;
    size_t start, end, cap;
} tl_frame_in;

/* One read() into the buffer: the bytes read, TL_ECLOSED at the end, TL_ESYS or
 * TL_ENOMEM. */
int tl__frame_fill(tl_frame_in *in);

/* The next whole frame in the buffer: 1 with its type and body (valid until the next
 * fill), 0 when it has not all come yet, TL_ESYS when its length is impossible. */
int tl__frame_next(tl_frame_in *in, char *type, const char **body, uint32_t *len);

/* Frees the buffer. */
void tl__frame_in_free(tl_frame_in *in);

/* Writes len bytes; 0, or TL_ESYS. Never raises SIGPIPE. */
int tl__frame_write(int fd, const void *buf, size_t len);

/* Reads exactly len bytes; 0, TL_ECLOSED at the end before any, or TL_ESYS. */
int tl__frame_read(int fd, void *buf, size_t len);

/* ---------------------------------------------------------------- reroute.c */

/* The tl-* headers a rerouted message carries, in the order they are sent. */
#define TL_REROUTE_NHEADERS 9
extern const char *const tl__reroute_header_names[TL_REROUTE_NHEADERS];

/*
 * The headers a rerouted copy of m carries, into out (room for m->nheaders +
 * TL_REROUTE_NHEADERS): m's own in their order, but any of tl__reroute_header_names
 * (what an earlier reroute wrote, or a sender made up), then one of each
 * tl__reroute_header_names with vals[i] as its value, unless vals[i] is NULL. Other
 * tl-* headers (such as tl-redrive-count) go on. Returns how many.
 */
size_t tl__reroute_headers(const tl_msg *m, const char *const vals[TL_REROUTE_NHEADERS],
                           tl_header *out);

/* How long a refused send waits before its try number tries + 1: 100 ms, doubled per
 * try, at most 5 s (reroutes and handler outputs alike). */
int64_t tl__send_backoff_ms(unsigned tries);

/* Sends the record to target with the tl-* headers; hooks.rerouted follows the ack. */
void tl__reroute(tl_rec *rec, tl_target *target, const char *reason);

/* Opens the sinks of every target the routes name. */
int tl__targets_open(tl_service *svc, char *err, size_t errlen);

/* Flushes and closes every sink. */
void tl__targets_close(tl_service *svc, int64_t flush_ms);

/* Frees the targets (after tl__targets_close). */
void tl__targets_free(tl_service *svc);

/* ---------------------------------------------------------------- stalled.c */

/* How long a stalled attempt may keep running before it counts as stuck. */
#define TL_STUCK_GRACE_MS 100

/* The record's current attempt stalled and still runs: kept in the stalled list until
 * it returns (hooks.attempt_late). False when it could not be watched (never on a
 * live loop); the record then forgets it. */
bool tl__stalled_add(tl_rec *rec);

/* Replaces the workers of attempts stuck past the grace period (up to the cap) and
 * updates the health flag. Called by housekeeping. */
void tl__check_stuck(tl_service *svc);

/* ---------------------------------------------------------------- watch.c */

/* Watches a just-created attempt: its completion and its route's timeout. */
void tl__watch(tl_rec *rec);

/* Ends both watches of the current attempt: its result or its stall is acted on now. */
void tl__unwatch(tl_rec *rec);

/* ---------------------------------------------------------------- attempt.c */

/* Creates and watches the record's next attempt (TL_TASK_HELD in flags: not started
 * until chained or launched); false when out of memory. */
bool tl__attempt_new(tl_rec *rec, unsigned flags);

/* Undoes a held attempt that never ran: the record waits in its lane again. */
void tl__attempt_undo(tl_rec *rec);

/* What a handler task works on, for /tasks. */
typedef struct tl_task_message {
    const char *handler, *origin; /* borrowed from the route and the message */
    int32_t partition;
    int64_t offset;
    unsigned attempt; /* of the task itself: 1 for the first */
    bool stalled;     /* past its timeout and still running */
    bool has_key, has_trace;
    bool isolated;                   /* its route runs handlers in worker processes */
    int pid;                         /* isolated: the worker process holding it, or 0 (waiting) */
    bool pid_running;                /* that process runs it (false: it waits there behind one) */
    char key[TL_KEY_TEXT_CAP];       /* tl__key_text's, a copy */
    char trace[TL_TRACE_ID_LEN + 1]; /* tl_msg_trace_id's */
} tl_task_message;

/* Loop thread: fills out and returns true when task runs a route's handler. */
bool tl__task_message(const tl_task *task, tl_task_message *out);

/* ---------------------------------------------------------------- lanes.c */

/* Puts a new record in its lane; true when it holds the lane (or has none) and may
 * start now, false when it waits in the queue (maybe with a chained attempt). */
bool tl__lane_join(tl_rec *rec);

/* The lane's running record has a new attempt: chain what waits behind it. */
void tl__lane_started(tl_rec *rec);

/* Lets the next record of the lane run; the record keeps no claim on it. Returns that
 * record when the caller must start it, NULL when there is none or it runs already
 * (its attempt was chained). */
tl_rec *tl__lane_release(tl_rec *rec);

/* Undoes the chained attempts no runner claimed, in every lane: what remains running
 * will run. tl__lanes_take_queued chains again what it leaves queued. */
void tl__lanes_unwind_all(tl_service *svc);

/* Takes the not-started records of part past offset `above` out of every lane (a
 * revoke) and returns them linked through lane_next. Chained attempts a runner claimed
 * stay and settle. */
tl_rec *tl__lanes_take_queued(tl_service *svc, tl_partition_state *part, int64_t above);

/* Frees every lane (service teardown). */
void tl__lanes_free(tl_service *svc);

/* ---------------------------------------------------------------- due.c */

/* The longest a delayed retry waits: the longest duration a config may give. */
#define TL_DUE_MAX_MS (168LL * 3600 * 1000)

/* How long attempt's retry waits: backoff doubled per attempt after the first, at most
 * TL_DUE_MAX_MS. */
int64_t tl__due_delay_ms(const tl_config_route *r, unsigned attempt);

/* A message of a route with on_error.via: when it is a retry that came back (tl-reason
 * "retry" and well-formed tl-* headers), takes its attempts, first-seen time, origin and
 * first error into the record and returns how many ms it must still wait (0: now). */
int64_t tl__due_take(tl_rec *rec, int64_t now_ms);

/* Keeps the record's current error as its first one, unless it has one already. */
void tl__due_keep_first_error(tl_rec *rec);

/* Sets topic, part and off to the origin a retry carried; leaves them otherwise. */
void tl__due_origin(const tl_rec *rec, const char **topic, const char **part, const char **off);

/* The first attempt's error a retry carries, or NULL. */
const char *tl__due_first_error(const tl_rec *rec);

/* Frees what a retry carried. */
void tl__due_free(tl_rec *rec);

/* ---------------------------------------------------------------- emit.c */

/* Handler thread: queues a copy of msg for the route's output (NULL: its first) on the
 * record. 0, TL_ENOTFOUND (no such output), TL_EINVAL (a bad message), TL_ENOMEM. */
int tl__emit_queue(tl_rec *rec, const char *output, const tl_out_msg *msg);

/* A slot's reader: queues a copy of msg for the route's output number index on the
 * record, as the handler in the worker process emitted it. 0, TL_ENOTFOUND, TL_EINVAL,
 * TL_ENOMEM. */
int tl__emit_queue_at(tl_rec *rec, size_t index, const tl_out_msg *msg);

/* Worker process: puts what the record's attempt queued into an 'E' frame for message
 * seq, in the order queued (frame.c); 0 (nothing queued: no frame) or TL_ENOMEM. The
 * queue stays (tl__emit_discard frees it). */
int tl__emit_frame(tl_rec *rec, uint64_t seq, tl_frame_out *o);

/* The attempt succeeded: sends what it queued, in order, and returns true (the record
 * is REC_EMITTING until hooks.emitted), or false when it queued nothing. */
bool tl__emit_flush(tl_rec *rec);

/* Drops what the attempt queued (it failed or stalled). */
void tl__emit_discard(tl_rec *rec);

/* Frees every queued or unacknowledged message of the record (it is freed). */
void tl__emit_free(tl_rec *rec);

/* ---------------------------------------------------------------- txn.c */

/* The root, before the targets and shards: sets up exactly-once delivery for every
 * source whose route asks for it (enables the source's transactions with a context per
 * shard, before it starts), then the root's part as tl__txn_loop_open. 0, or an error
 * with a message in err. */
int tl__txn_open(tl_service *svc, char *err, size_t errlen);

/* Each shard once its loop exists: readies its source states' transaction timers and,
 * for the sources the root made transactional, starts its committer. 0, or an error
 * with a message in err. */
int tl__txn_loop_open(tl_service *svc, char *err, size_t errlen);

/* A record was taken in: on an exactly-once route it joins its partition's queue of
 * records whose sends are still to go. */
void tl__txn_take(tl_rec *rec);

/* What the record's sends (outputs or a reroute), about to go, must do. */
enum {
    TL_TXN_GO,   /* go now */
    TL_TXN_WAIT, /* wait for the partition's earlier records' (the caller gates the record,
                  * hooks.txn_go lets them go later) */
    TL_TXN_DROP, /* never go: the partition was revoked since (its next owner sends them) */
};
int tl__txn_wait(tl_rec *rec);

/* The partition was revoked (its generation moved on): its records still queued leave
 * the queue, and the gated ones among them go to hooks.txn_go, to be dropped. */
void tl__txn_revoked(tl_service *svc, tl_partition_state *p);

/* The record settled with no sends of its own (or they went): it holds nothing back. */
void tl__txn_settled(tl_rec *rec);

/* The record is freed: it leaves its partition's queue. */
void tl__txn_forget(tl_rec *rec);

/* Commits the source's transaction with its partitions' positions when it is due (its
 * size or age bound, or force). A failure stops the service (no commit again). */
void tl__txn_commit(tl_service *svc, tl_source_state *src, bool force);

/* The source's open transaction cannot commit (event says why, e.g. partitions were
 * lost): logs it, commits nothing again and stops the service. No-op without one. */
void tl__txn_fail(tl_service *svc, tl_source_state *src, const char *event, const char *why);

/* A send of the record was refused or failed: on an exactly-once route the open
 * transaction cannot hold it, so it fails (tl__txn_fail) and true is returned: the
 * send is not tried again. False on other routes. */
bool tl__txn_send_failed(tl_rec *rec, const char *what);

/* Loop thread: the committer finished a commit (posted by it). */
void tl__txn_finish_posted(tl_loop *loop, void *arg);

/* Stops the source's timer and committer (the service is freed). */
void tl__txn_close(tl_source_state *src);

/* ---------------------------------------------------------------- record.c */

/* Wall-clock milliseconds: tl-first-seen-ms and tl-due-ms are read by other processes
 * (and other instances), so they cannot be the loop's monotonic clock. */
int64_t tl__wall_ms(void);

/* Sets the hooks record.c answers (attempt_done, attempt_expired, attempt_late,
 * rerouted). */
void tl__records_init(tl_service *svc);

/* Takes one message of part in: a record, its offset tracked, then its lane or a start. */
void tl__record_take(tl_service *svc, tl_route_state *route, tl_partition_state *part, tl_msg *msg,
                     int64_t seen_ms);

/* Readies a revoked partition's records for the drain. Those past every attempt made
 * (queued, or waiting for a retry) are dropped: the next owner gets them from the
 * committed position, and nothing done here is lost by it. Those below an attempt
 * made stay to run, retries at once, so that the commit covers all that ran. A lost
 * partition can commit nothing, so every record not started is dropped. */
void tl__records_revoking(tl_service *svc, tl_partition_state *part, bool lost);

/* Frees every record left at teardown, giving its message back. */
void tl__records_free_all(tl_service *svc);

/* ---------------------------------------------------------------- intake.c */

/* Sets hooks.room_freed and prepares intake's timer. */
void tl__intake_init(tl_service *svc);

/* Loop thread: takes held batches in if room allows (housekeeping's safety net). */
void tl__intake_resume(tl_service *svc);

/* Loop thread: gives back the held messages of the partitions (a revoke). */
void tl__intake_release_held_of(tl_service *svc, tl_source_state *src, const tl_partition *parts,
                                size_t n);

/* Loop thread: gives every held batch back unprocessed (a drain or teardown). */
void tl__intake_release_held(tl_service *svc);

/* A batch of n messages from src, for the loop (NULL when out of memory). */
tl_batch *tl__intake_batch_new(tl_source_state *src, tl_msg **msgs, size_t n);

/* Loop thread, posted by deliver: takes the batch in, or holds it in order. */
void tl__intake_batch_on_loop(tl_loop *loop, void *arg);

/* A batch of src is in (or given back): its source may send another. Any thread. */
void tl__intake_batch_taken(tl_source_state *src);

/* Loop thread: whether a held batch waits for room (not for its route). */
bool tl__intake_room_awaited(const tl_service *svc);

/* ---------------------------------------------------------------- deliver.c */

/* Loop thread: resumes each source paused for a long hold once none of its batches is
 * held and none waits for room. */
void tl__intake_hold_resume(tl_service *svc);

/* Source thread: the deliver event (see tl_source_events). */
void tl__intake_deliver(tl_source_state *src, tl_msg **msgs, size_t n);

/* ---------------------------------------------------------------- revoke.c */

/* Source thread: the revoked event (lost: the lost event); returns once the partitions
 * are drained and committed, lost ones not committed (or the drain timeout passed). */
void tl__revoke(tl_source_state *src, const tl_partition *parts, size_t n, bool lost);

/* tl__revoke in two: hands the revoke to the loop and returns it (NULL when there is
 * nothing to wait for), so that several shards drain at once... */
tl_revoke_req *tl__revoke_post(tl_source_state *src, const tl_partition *parts, size_t n,
                               bool lost);

/* ...then waits until it is finished, and frees it (NULL: nothing). */
void tl__revoke_wait(tl_revoke_req *r);

/* Loop thread: finishes the revokes whose partitions drained or whose time is up. */
void tl__revokes_check(tl_service *svc);

#endif
