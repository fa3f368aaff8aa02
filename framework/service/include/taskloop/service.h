/*
 * taskloop services: run a consumer service described by a YAML config.
 *
 * Each message becomes a task running its route's handler, watched for its completion
 * and for the route's timeout with the semantics of tl_wait's split: completed, or
 * still pending when the time is up. Failed attempts are retried with backoff and then
 * rerouted to on_error's target; stalled ones are cancelled (cooperatively) and
 * rerouted to on_stall's. A source's offsets are committed only up to the lowest
 * unsettled message of each partition (at-least-once on Kafka).
 *
 * Words (one per idea; the code and the docs use them so):
 *   message   what a source delivers (tl_msg); in flight from intake until settled.
 *   record    the runtime's bookkeeping for one message in flight.
 *   attempt   one run of the handler on a message: a task. Retries are new attempts.
 *   lane      the ordering unit of a route (a partition, or a key): one attempt at a
 *             time runs per lane, in delivery order.
 *   completed an attempt returned 0. failed: it returned an error (retried, rerouted).
 *   stalled   an attempt still running when its route's timeout passed. The message
 *             is rerouted to on_stall (or, without one, waits for the attempt).
 *   stuck     a stalled attempt still running past a grace period (100 ms): it holds
 *             a worker, so a worker is added in its place, up to a cap.
 *   late      a stalled attempt that returned after all; counted, never acted on
 *             twice.
 *   rerouted  sent to a target (a sink: "kafka:orders.dlq") and acknowledged by it.
 *   dropped   failed with no target to go to (logged as an error).
 *   settled   completed, rerouted or dropped: its offset may be committed.
 *   held      a delivered batch kept aside, not yet taken in, while the in-flight
 *             bound (max_in_flight) is reached: backpressure.
 *   paused    a source told to stop fetching (a long hold, or the drain).
 *   revoked   partitions taken away by a rebalance: drained, committed, forgotten.
 *   drain     at stop or revoke: stop taking in, let in-flight settle, commit.
 *
 * A program that only registers its handlers and adapters can leave the rest (command
 * line, signals, logging, progress, summary, exit code) to tl_service_main, in
 * taskloop/program.h.
 *
 * Thread rules: tl_service_run blocks the calling thread, which becomes the loop
 * thread. tl_service_stop, tl_service_stats_get and the other getters may be called
 * from any thread; tl_service_stop is also async-signal-safe.
 */
#ifndef TASKLOOP_SERVICE_H
#define TASKLOOP_SERVICE_H

#include <taskloop/adapter.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_service tl_service;

typedef enum tl_level {
    TL_LEVEL_DEBUG = 0,
    TL_LEVEL_INFO,
    TL_LEVEL_WARN,
    TL_LEVEL_ERROR,
} tl_level;

/*
 * One log event: a short name ("message_stalled", "reroute_failed") and key/value
 * fields. Events about one message (message_stalled, message_failed, message_retry,
 * message_rerouted, message_dead_lettered, message_late, message_dropped_no_target,
 * worker_replaced, worker_not_replaced, reroute_failed) carry handler, source, topic,
 * partition, offset, message_key (text, or hex when not printable; cut at 32 bytes),
 * attempt and error, then their own fields (then, target, timeout, result, ...).
 */
typedef void (*tl_log_fn)(void *user, tl_level level, const char *event, const tl_kv *fields,
                          size_t nfields);

typedef struct tl_service_opts {
    /* NULL: the service logs on stderr through a tl_logger of its own (taskloop/program.h)
     * as the config's `log:` section says: format, level, a burst limit per event name.
     * Set: the function gets every event at or above the config's log.level, on the
     * thread running the service, neither rate-limited nor formatted (tl_logger_log, with a
     * tl_logger as log_user, adds both). */
    tl_log_fn log;
    void *log_user;
} tl_service_opts;

/* Counters of a running or finished service; every field but the gauges only grows. */
typedef struct tl_service_stats {
    uint64_t consumed;       /* messages delivered by sources */
    uint64_t completed;      /* handlers that finished without error */
    uint64_t failed;         /* handler failures, counting each attempt */
    uint64_t retries;        /* attempts after the first */
    uint64_t stalled;        /* handlers past their timeout */
    uint64_t rerouted;       /* reroutes acknowledged by their target */
    uint64_t dropped;        /* failed messages with no target to go to */
    uint64_t late;           /* stalled handlers that finished after all */
    uint64_t reroute_errors; /* reroute sends refused or not acknowledged (retried) */
    uint64_t replaced_workers;
    uint64_t handler_crashes;    /* worker processes that died handling a message */
    uint64_t processes_replaced; /* worker processes replaced: crashed or killed */
    uint64_t in_flight;          /* delivered, not yet settled (a gauge) */
    /* Delivered and not yet below the commit position (a gauge): what a crash would
     * deliver again. Backpressure keeps it under max_in_flight. */
    uint64_t uncommitted;
    uint64_t paused; /* times intake stopped at max_in_flight (backpressure) */
    /* Times a source was paused because backpressure kept its thread waiting past the
     * source's hold limit (Kafka: half of max.poll.interval.ms, at most 10 s). */
    uint64_t source_pauses;
    uint64_t retries_delayed; /* failed attempts sent to on_error.via, to run again later */
    uint64_t retries_waiting; /* retries come back before they were due, waiting (a gauge) */
    uint64_t emitted;         /* messages handlers emitted that their outputs acknowledged */
    uint64_t emit_errors;     /* emitted messages an output refused (each sent again) */
    uint64_t delayed_waiting; /* routes with `delay:`: messages waiting for it (a gauge) */
    uint64_t txn_commits;     /* exactly-once: transactions committed */
    uint64_t txn_aborts;      /* exactly-once: transactions that could not commit (each
                               * stopped the service) */
    /* When the first message was consumed and the last one settled, on tl_clock_ns's
     * clock (CLOCK_MONOTONIC, ns); 0 before either. Settled over the span between
     * them is the service's own measure of its pace, with no sampling. */
    int64_t first_consumed_ns;
    int64_t last_settled_ns;
    bool healthy; /* false past the stuck-worker cap */
} tl_service_stats;

/* Per-target reroute counts, for summaries: target is "scheme:address". */
typedef struct tl_target_stats {
    const char *target;
    uint64_t rerouted;
    uint64_t errors;
} tl_target_stats;

/* Committed position of one partition: every offset below `next` is settled. */
typedef struct tl_partition_stats {
    const char *source;
    const char *topic;
    int32_t partition;
    int64_t next; /* -1 when nothing was committed yet */
} tl_partition_stats;

struct tl_config;

/*
 * Builds a service from a loaded config (see `taskloop check`): calls its handlers' init
 * hooks, starts the workers, binds the admin endpoint's socket (a taken port fails
 * here), opens its sources and sinks. cfg and reg must outlive the service. On failure
 * err names what failed.
 */
int tl_service_new(const struct tl_config *cfg, tl_registry *reg, const tl_service_opts *opts,
                   tl_service **out, char *err, size_t errlen);

/* Receives one validation error, "FILE:LINE:COL: error: KEY.PATH: what". */
typedef void (*tl_report_fn)(void *user, const char *message);

/*
 * Loads and validates the YAML file at path (plugins it names are loaded into reg),
 * then builds the service as tl_service_new does; the service owns the config.
 * Returns TL_ECONFIG after calling report once per error (report may be NULL), or
 * another error with its reason in err.
 */
int tl_service_load(const char *path, tl_registry *reg, const tl_service_opts *opts,
                    tl_report_fn report, void *user, tl_service **out, char *err, size_t errlen);

/* The name the config gives the service (`service:`). */
const char *tl_service_name(const tl_service *svc);

/* Runs until tl_service_stop or a source's fatal error (an authentication refused,
 * ...): starts the sources, then drains, commits and closes. 0 after a stop; the
 * source's error code after a fatal error, which the log names (source_fatal). */
int tl_service_run(tl_service *svc);

/* Any thread, signal-safe: asks a running service to drain and stop. */
void tl_service_stop(tl_service *svc);

/* Any thread: a copy of the counters (with shards, their sums). */
void tl_service_stats_get(tl_service *svc, tl_service_stats *out);

/* Fills up to cap target counters and returns how many targets there are. */
size_t tl_service_targets(tl_service *svc, tl_target_stats *out, size_t cap);

/* Fills up to cap committed positions and returns how many partitions there are (with
 * shards, every shard's; when cap is too small, a bound: a partition that moved between
 * shards is counted once only when all of them fit). */
size_t tl_service_partitions(tl_service *svc, tl_partition_stats *out, size_t cap);

/* Any thread: the admin endpoint's port (the one picked for port 0), bound when the
 * service is built, so known as soon as tl_service_new returns (requests wait until
 * tl_service_run serves them); 0 when the config has no admin endpoint, and once the
 * run has ended and closed it. */
int tl_service_admin_port(tl_service *svc);

/* Fills up to cap consumer-lag entries of every source that reports lag (Kafka) and
 * returns how many there are. Any thread. */
size_t tl_service_lag(tl_service *svc, tl_partition_lag *out, size_t cap);

/* The service's loop (for tl_loop_tasks and friends); valid while the service is. With
 * loop.shards above one, the first shard's: the others' tasks show in /tasks. */
tl_loop *tl_service_loop(tl_service *svc);

/* Frees a service that is not running; releases its sources and sinks. */
void tl_service_free(tl_service *svc);

/* For a task running a handler: the route's `params:` value for name, or def. */
const char *tl_handler_param(const tl_task *task, const char *name, const char *def);

/* For a task running a handler: what its route's init hook stored (tl_handler_hooks),
 * or NULL. */
void *tl_handler_state(const tl_task *task);

/* For a task running a handler: 1 for the first attempt, 2 for the first retry, ... */
unsigned tl_handler_attempt(const tl_task *task);

/*
 * For a task running a handler: queues a copy of msg for the route's output called
 * output (`outputs:` in the config; NULL: the first one). Sent only if this attempt
 * succeeds, in the order queued; the message is settled (its offset committed) only
 * once every output acknowledged its part. A failed attempt's queue is dropped (its
 * retry queues afresh), and so is a stalled one's. 0, TL_ENOTFOUND (no such output),
 * TL_EINVAL (not a handler task, or a bad message), TL_ENOMEM.
 */
int tl_handler_emit(tl_task *task, const char *output, const tl_out_msg *msg);

/* Registers the built-in handlers: log, work, discard (see the README). */
int tl_register_builtin_handlers(tl_registry *reg);

#ifdef __cplusplus
}
#endif

#endif
