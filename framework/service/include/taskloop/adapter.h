/*
 * taskloop adapters: the small interface through which the framework knows brokers.
 *
 * A broker adapter fills in a tl_source_ops and/or a tl_sink_ops and adds it to a
 * tl_registry; the framework never includes an adapter's headers. Adding a broker
 * means adding a folder under adapters/, not editing the framework.
 *
 * Thread rules:
 *  - ops->open and close are called from the thread that builds and frees the service
 *    (tl_service_new, tl_service_free), start and stop from the one running it.
 *  - commit, pause and pause_partitions, and a sink's send(), are called from a loop
 *    thread: with `loop.shards` above one from any shard's, but never two at once on
 *    one source or sink (the runtime holds a lock around each call).
 *  - release() is called from the loop thread of the shard that took the message:
 *    with shards, from several threads at once (each message once).
 *  - A source delivers from a thread of its own through tl_source_events; the events
 *    are safe to call from any thread. revoked() blocks until the runtime settled and
 *    committed what it can of those partitions (bounded by the drain timeout).
 *  - A sink's ack callback may run on any thread, exactly once per accepted send.
 */
#ifndef TASKLOOP_ADAPTER_H
#define TASKLOOP_ADAPTER_H

#include <taskloop/recycler.h>
#include <taskloop/taskloop.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- messages */

typedef struct tl_header {
    const char *name;
    const void *value;
    size_t len;
} tl_header;

typedef struct tl_source tl_source;
typedef struct tl_sink tl_sink;

/*
 * A message as a source delivers it. The source owns the memory (zero copy where its
 * library allows) until the runtime hands it back with ops->release.
 */
typedef struct tl_msg {
    const void *payload;
    size_t len;
    const void *key; /* NULL when the message has none */
    size_t key_len;
    const tl_header *headers;
    size_t nheaders;
    const char *origin; /* Kafka topic, or ZeroMQ endpoint */
    int32_t partition;  /* -1 when the transport has none */
    int64_t offset;     /* -1 when the transport has none */
    int64_t timestamp_ms;
    void *handle; /* the adapter's own (e.g. its rd_kafka_message_t) */
} tl_msg;

/* Returns the value of the first header called name, or NULL; *len gets its length. */
const void *tl_msg_header(const tl_msg *msg, const char *name, size_t *len);

/* Hex digits in a W3C trace id. */
#define TL_TRACE_ID_LEN 32

/* True when the message carries a valid W3C `traceparent` header; out gets its trace
 * id (32 lowercase hex digits and a NUL). The header itself travels unchanged with the
 * message through retries, reroutes and process isolation. */
bool tl_msg_trace_id(const tl_msg *msg, char out[TL_TRACE_ID_LEN + 1]);

/* ---------------------------------------------------------------- parameters */

/*
 * Each adapter declares the keys its config section accepts; the config validator
 * checks them (unknown key, wrong type, missing required, out of range) and hands the
 * values over. Whatever the adapter, a STRING value is not empty and a required LIST
 * has at least one item. An INT or DURATION lies within the range the adapter's ops
 * give it (ranges), or else 0 to TL_PARAM_INT_MAX for an INT and 0 to the config's
 * longest (TL_CONFIG_MAX_DURATION_MS, config.h) for a DURATION.
 * Rules the declaration cannot say (an address's syntax, a library's own properties)
 * are the adapter's check op's (tl_source_ops.check), which `taskloop check` runs.
 */
#define TL_PARAM_INT_MAX INT32_MAX

typedef enum tl_param_type {
    TL_PARAM_STRING,
    TL_PARAM_INT,
    TL_PARAM_BOOL,
    TL_PARAM_DURATION, /* "250ms", "2s", "1m"; num holds milliseconds */
    TL_PARAM_LIST,     /* a sequence of strings */
    TL_PARAM_MAP,      /* a mapping of string to scalar, e.g. librdkafka properties */
} tl_param_type;

typedef struct tl_param {
    const char *name;
    tl_param_type type;
    bool required;
    bool secret_values; /* MAP: mask values whose key names a secret when printed */
    const char *help;   /* one line saying what the key is for (documentation) */
} tl_param;

/* The range of an INT or DURATION (in ms) parameter, where the default one is too wide;
 * an adapter lists them in its ops (ranges), ended by an entry with name NULL. */
typedef struct tl_param_range {
    const char *name;
    int64_t min, max;
} tl_param_range;

/* Sets [*min, *max] to the range of def: its entry in ranges (may be NULL), or else
 * the default one. */
void tl_param_bounds(const tl_param *def, const tl_param_range *ranges, int64_t *min, int64_t *max);

/*
 * What an adapter's check op calls for each problem it finds: name is the parameter
 * (NULL: a sink's address), key the entry of a MAP parameter the problem is in (NULL:
 * the value as a whole), why what is wrong. The config reports it at that value's
 * line and column; a message must not quote a secret (tl_config_is_secret, config.h).
 */
typedef void (*tl_param_report_fn)(void *rep, const char *name, const char *key, const char *why);

typedef struct tl_kv {
    const char *key;
    const char *value;
} tl_kv;

typedef struct tl_param_value {
    const char *name;
    tl_param_type type;
    const char *str;         /* STRING; for INT, BOOL and DURATION, their text */
    int64_t num;             /* INT; BOOL as 0 or 1; DURATION in milliseconds */
    const char *const *list; /* LIST */
    size_t nlist;
    const tl_kv *map; /* MAP, in file order */
    size_t nmap;
} tl_param_value;

/* The values given for one source (or sink) section; owned by the config. */
typedef struct tl_params {
    const char *section; /* the section's name, e.g. the source's name */
    const tl_param_value *v;
    size_t n;
} tl_params;

/* Returns the value given for name, or NULL when the config did not set it. */
const tl_param_value *tl_params_get(const tl_params *p, const char *name);

/* Returns the string given for name, or def when it was not set. */
const char *tl_params_str(const tl_params *p, const char *name, const char *def);

/* Returns the number (INT, BOOL or DURATION in ms) given for name, or def. */
int64_t tl_params_num(const tl_params *p, const char *name, int64_t def);

/*
 * Checks every INT and DURATION value of p declared in schema against its range
 * (tl_param_bounds; what the config loader checks), for open() to refuse params made
 * elsewhere: 0, or TL_ECONFIG with "NAME: N is out of range (MIN to MAX)" in err.
 */
int tl_params_check_ranges(const tl_param *schema, const tl_param_range *ranges, const tl_params *p,
                           char *err, size_t errlen);

/* ---------------------------------------------------------------- sources */

typedef struct tl_txn_ops tl_txn_ops;

typedef struct tl_partition {
    const char *topic;
    int32_t partition;
} tl_partition;

/* How far a consumer is behind the end of one partition. */
typedef struct tl_partition_lag {
    const char *source; /* the source's name in the config (set by the runtime) */
    char topic[256];
    int32_t partition;
    int64_t lag; /* messages between the consumer's position and the partition's end */
} tl_partition_lag;

/* What a source tells the runtime; set by the runtime, safe from any thread. */
typedef struct tl_source_events {
    void *rt;
    /* A batch of messages; the runtime owns them until it calls ops->release. */
    void (*deliver)(void *rt, tl_source *src, tl_msg **msgs, size_t n);
    /* Partitions newly assigned to this consumer. */
    void (*assigned)(void *rt, tl_source *src, const tl_partition *parts, size_t n);
    /* Partitions about to be revoked: returns once they are drained and committed. */
    void (*revoked)(void *rt, tl_source *src, const tl_partition *parts, size_t n);
    /* Partitions lost: taken away with no chance to commit (Kafka: the group went on
     * without this consumer), so their next owner starts from the last commit that
     * landed. Nothing of them that has not started runs; returns once what runs has
     * ended. A source that cannot tell a loss from a revoke calls revoked. */
    void (*lost)(void *rt, tl_source *src, const tl_partition *parts, size_t n);
    /* An error worth reporting; the source keeps trying unless fatal. */
    void (*error)(void *rt, tl_source *src, int err, bool fatal, const char *what);
    /* Sources with commit_acks: the broker acknowledged (err 0) or refused a commit of
     * the partition's position next_offset. Any thread. */
    void (*committed)(void *rt, tl_source *src, const char *topic, int32_t partition,
                      int64_t next_offset, int err);
} tl_source_events;

typedef struct tl_source_ops {
    const char *type;       /* the `type:` of a source section: "kafka", "zmq", ... */
    const tl_param *params; /* accepted keys, ended by an entry with name NULL */
    bool at_least_once;     /* true when commit() makes delivery at-least-once */
    /* True when commit() only records a position that reaches the broker later, and
     * the source reports each outcome through ev->committed: while acknowledgements
     * are overdue the runtime counts every unacknowledged message against
     * max_in_flight, so that intake stops rather than handle on with commits that may
     * be lost. False: commit() is durable when it returns. */
    bool commit_acks;
    /* Opens the source from its section; on failure writes a message into err. */
    int (*open)(const tl_params *conf, const tl_source_events *ev, tl_source **out, char *err,
                size_t errlen);
    /* Starts delivering on a thread of the source's own. */
    int (*start)(tl_source *src);
    /* Backpressure: stops (true) or resumes (false) fetching, without leaving a group. */
    void (*pause)(tl_source *src, bool paused);
    /* Records that every message of the partition below next_offset is settled. */
    int (*commit)(tl_source *src, const char *topic, int32_t partition, int64_t next_offset);
    /* Takes back a delivered message (from several loop threads at once with shards). */
    void (*release)(tl_source *src, tl_msg *msg);
    /* Stops delivering; commits what was recorded and leaves any group. */
    void (*stop)(tl_source *src);
    /* Frees the source; every delivered message must have been released. */
    void (*close)(tl_source *src);
    /* Optional (NULL when the transport has no notion of it); any thread: fills up to
     * cap entries of consumer lag and returns how many partitions there are. */
    size_t (*lag)(tl_source *src, tl_partition_lag *out, size_t cap);
    /* Optional (NULL or 0: no limit): how long, in ms, backpressure may keep the
     * source's thread waiting in deliver. Past it the runtime pauses the source and
     * lets the thread go on, for sources that must keep calling their library (a
     * Kafka consumer that does not poll is dropped from its group). While paused so,
     * deliver does not wait: the source must then deliver at most what it had
     * fetched before the pause. Called once, after open, on the loop thread. */
    int64_t (*hold_limit_ms)(tl_source *src);
    /* Optional (NULL: not supported): stops (true) or resumes (false) fetching just
     * these partitions while the others flow; what was fetched already may still be
     * delivered. Fair intake uses it so that one partition's backlog does not take the
     * whole in-flight window. A revoke ends a partition's pause. A loop thread. */
    void (*pause_partitions)(tl_source *src, const tl_partition *parts, size_t n, bool paused);
    /* Optional: the key of params (a STRING or a LIST) naming what the source reads, as
     * a target of the sink scheme called like this type would name it (a Kafka topic, a
     * ZeroMQ endpoint). A route rerouting there would feed its own input for ever, so
     * the config refuses such a target. */
    const char *input;
    /* Optional: ranges of params narrower than the default ones (tl_param_range). */
    const tl_param_range *ranges;
    /* Optional: checks conf as open() would (what open() refuses, this reports), with
     * no side effect: no socket, no broker contact. Calls report for every problem.
     * `taskloop check` runs it; any thread. */
    void (*check)(const tl_params *conf, tl_param_report_fn report, void *rep);
    /* Optional (NULL: the source cannot take part in transactions): what a route with
     * `delivery: exactly_once` needs of it (tl_txn_ops, below). */
    const tl_txn_ops *txn;
} tl_source_ops;

/* ---------------------------------------------------------------- sinks */

/* Called once per accepted send: err 0 when the target acknowledged it. */
typedef void (*tl_sink_ack_cb)(void *arg, int err, const char *what);

/* An outgoing message: what a reroute sends. */
typedef struct tl_out_msg {
    const void *payload;
    size_t len;
    const void *key;
    size_t key_len;
    const tl_header *headers;
    size_t nheaders;
} tl_out_msg;

typedef struct tl_sink_ops {
    const char *scheme;     /* the prefix of a target: "kafka" in "kafka:orders.dlq" */
    const tl_param *params; /* accepted keys of a sink section, ended by name NULL */
    /*
     * Opens a sink for address (the target after "scheme:"), configured by conf (the
     * sink section, or the route's source section when it has the same type; may be
     * NULL). On failure writes a message into err.
     */
    int (*open)(const char *address, const tl_params *conf, tl_sink **out, char *err,
                size_t errlen);
    /* Sends a copy of msg; ack(arg, ...) follows exactly once when 0 is returned. */
    int (*send)(tl_sink *sink, const tl_out_msg *msg, tl_sink_ack_cb ack, void *arg);
    /* Waits up to timeout_ms for outstanding acks. */
    int (*flush)(tl_sink *sink, int64_t timeout_ms);
    /* Frees the sink; outstanding sends are acked with an error first. */
    void (*close)(tl_sink *sink);
    /* Optional: ranges of params narrower than the default ones (tl_param_range). */
    const tl_param_range *ranges;
    /* Optional: checks, as open() would and with no side effect, a target's address
     * (NULL: none) and a sink section (NULL: none), calling report for every problem
     * (name NULL for the address). Any thread. */
    void (*check)(const char *address, const tl_params *conf, tl_param_report_fn report, void *rep);
} tl_sink_ops;

/* ---------------------------------------------------------------- transactions */

/* A partition's position: every message of it below next_offset is done. */
typedef struct tl_partition_offset {
    const char *topic;
    int32_t partition;
    int64_t next_offset;
} tl_partition_offset;

/*
 * Exactly-once delivery, for the route a source feeds when it says `delivery:
 * exactly_once`: what the route sends (its outputs and reroutes) and the source's
 * positions are committed together, in one transaction of the broker, or not at all.
 *
 * A source runs one transaction context per loop of the service (loop.shards; one
 * when unsharded), numbered from 0: each has transactions of its own, its own sinks
 * and the positions of partitions no other context commits, so the contexts commit
 * side by side. For each context, sink and seal are called on its loop thread; commit
 * on that thread or on a thread of the runtime's own, never while another commit of
 * the context runs, nor while a send of its sinks runs unless the transaction was
 * sealed (then sends go on, into the next). Calls for different contexts may run at
 * the same time. A send refused or failed in a transaction is never tried again: the
 * runtime stops the service instead.
 */
struct tl_txn_ops {
    /* Makes the source transactional with `contexts` transaction contexts (at least
     * one); called once, after open and before start. From then on the source reads
     * only committed messages, its commit() is not called and its stop() commits
     * nothing: its positions go only through commit below. 0, or an error with a
     * message in err. */
    int (*enable)(tl_source *src, size_t contexts, char *err, size_t errlen);
    /* Opens a sink for address (a target of the sink scheme named like the source's
     * type) whose sends join context ctx's transaction, begun at the first send after
     * a commit; *ops gets the sink's ops (send, flush and close as for any sink). An
     * ack says the message is written in the open transaction, not that it is
     * committed. 0, or an error with a message in err. */
    int (*sink)(tl_source *src, size_t ctx, const char *address, tl_sink **out,
                const tl_sink_ops **ops, char *err, size_t errlen);
    /* Commits context ctx's open transaction (one is begun when none is) with the
     * positions offs[0..n): every send its sinks accepted since its last commit and
     * these positions become visible together. Blocks until the broker answered. 0; or
     * the transaction was aborted (what was sent since the last commit is discarded,
     * the positions stay where the last commit put them): an error with a message in
     * err, after which the runtime stops the service so that a restart replays from
     * the last commit. */
    int (*commit)(tl_source *src, size_t ctx, const tl_partition_offset *offs, size_t n, char *err,
                  size_t errlen);
    /* Optional (NULL: sends wait while a commit runs). Context ctx's loop thread, just
     * before a commit is handed to another thread, with none of its commits running:
     * its open transaction takes no more sends; later ones begin the next, and may go
     * while this one commits (the next commit ends the sealed transaction; one after
     * it, the next). 0, or an error with a message in err. */
    int (*seal)(tl_source *src, size_t ctx, char *err, size_t errlen);
};

/* ---------------------------------------------------------------- registry */

typedef struct tl_registry tl_registry;

/* Creates an empty registry of adapters and handlers; caller frees it. */
int tl_registry_new(tl_registry **out);

/* Frees the registry (not the ops structs it points to). */
void tl_registry_free(tl_registry *reg);

/* Adds a source type; TL_EINVAL if one with that type is there. ops must outlive reg. */
int tl_registry_add_source(tl_registry *reg, const tl_source_ops *ops);

/* Adds a sink scheme; TL_EINVAL if one with that scheme is there. ops must outlive reg. */
int tl_registry_add_sink(tl_registry *reg, const tl_sink_ops *ops);

/* The source ops for type, or NULL. */
const tl_source_ops *tl_registry_source(const tl_registry *reg, const char *type);

/* The sink ops for scheme, or NULL. */
const tl_sink_ops *tl_registry_sink(const tl_registry *reg, const char *scheme);

/*
 * A message handler, run as a task per message: return 0 when done, a negative code
 * on failure (retried, then rerouted), or TL_PENDING to finish later with
 * tl_task_complete(). Long handlers should check tl_cancelled(task).
 */
typedef int (*tl_handler_fn)(tl_task *task, const tl_msg *msg, void *user);

/* Registers a handler under name; TL_EINVAL if the name is taken. */
int tl_register_handler(tl_registry *reg, const char *name, tl_handler_fn fn, void *user);

/*
 * A handler's life around its messages, for what it must set up once (a database
 * opened from a path in the route's params, failing the start when it cannot be) or
 * per thread (one connection per worker). Every member may be NULL. Each route naming
 * the handler has its own state: what init stored, handed to the other hooks and read
 * by the handler with tl_handler_state. user is the registration's.
 */
typedef struct tl_handler_hooks {
    /* Once per route, when the service is built (tl_service_new), before any worker
     * starts, with the route's `params:` (borrowed for the service's life). Returns 0,
     * or a negative code with a reason in err: then the service is not built and its
     * error names the route and the handler. */
    int (*init)(void *user, const tl_kv *params, size_t nparams, void **state, char *err,
                size_t errlen);
    /* On each thread that may run the route's handler, before it runs one: every worker
     * of the pool (workers added in place of stuck ones too), or for an `inline` route
     * the thread calling tl_service_run. */
    void (*thread_init)(void *user, void *state);
    /* On each of those threads, after its last handler, before it ends (workers) or
     * before tl_service_run returns (inline routes). */
    void (*thread_fini)(void *user, void *state);
    /* Once per route whose init succeeded (or that has no init), when the service is
     * freed, after every thread_fini. */
    void (*fini)(void *user, void *state);
} tl_handler_hooks;

/* As tl_register_handler, with lifecycle hooks (copied; NULL: none). */
int tl_register_handler_hooks(tl_registry *reg, const char *name, tl_handler_fn fn, void *user,
                              const tl_handler_hooks *hooks);

/*
 * The route params a handler takes (tl_register_handler_params). With a declaration,
 * `taskloop check` and the config load behind `taskloop run` check each route's
 * `params:` against it, as they check an adapter's section: an unknown key is an error
 * naming the keys the handler takes, a value of the wrong type or out of range is an
 * error at its line and column, a required key missing is one at the route. Params are
 * scalars, so only STRING, INT, BOOL and DURATION can be declared; the handler still
 * reads them as text (tl_handler_param). A handler without a declaration takes any
 * params, unchecked.
 */
typedef struct tl_handler_params {
    const tl_param *params;       /* ended by name NULL; { NULL }: it takes none */
    const tl_param_range *ranges; /* INT and DURATION ranges other than the default; may be NULL */
    /* Rules the list cannot say (may be NULL), run when the route's params passed it:
     * report(rep, name, NULL, why) for each problem, name the param it is about.
     * outputs are the names of the route's `outputs:`. */
    void (*check)(const tl_kv *params, size_t nparams, const char *const *outputs, size_t noutputs,
                  tl_param_report_fn report, void *rep);
} tl_handler_params;

/* Declares the params of the handler registered under name (the struct is copied, the
 * arrays it points to must outlive reg): 0, TL_ENOTFOUND when no handler has that name,
 * or TL_EINVAL (no params list, or a LIST or MAP in it). */
int tl_register_handler_params(tl_registry *reg, const char *name, const tl_handler_params *params);

/* The params declared for a handler, or NULL when none were (or no such handler). */
const tl_handler_params *tl_registry_handler_params(const tl_registry *reg, const char *name);

/* The hooks registered with a handler (zeroed when it has none); TL_ENOTFOUND if no
 * handler has that name. */
int tl_registry_handler_hooks(const tl_registry *reg, const char *name, tl_handler_hooks *out);

/* Looks up a handler; returns 0 and fills fn and user, or TL_ENOTFOUND. */
int tl_registry_handler(const tl_registry *reg, const char *name, tl_handler_fn *fn, void **user);

/* ---------------------------------------------------------------- plugins */

/*
 * The plugin ABI: the shape of what a plugin and the program loading it share (the
 * structs, callbacks and functions of these headers). It goes up whenever one of them
 * changes, so that a plugin built against other headers is refused with a message
 * rather than run with the wrong layout. A plugin states it with TL_PLUGIN_DECLARE_ABI.
 */
#define TL_PLUGIN_ABI 1

/* A plugin's entry point, called once when the config naming it is loaded: registers
 * its handlers, sources and sinks; 0, or a negative code (the config is refused). */
int taskloop_plugin_register(tl_registry *reg);

/* What a plugin exports: the TL_PLUGIN_ABI its taskloop headers had. */
extern const unsigned taskloop_plugin_abi;

/* Written once in a plugin, at file scope: defines taskloop_plugin_abi. */
#define TL_PLUGIN_DECLARE_ABI const unsigned taskloop_plugin_abi = TL_PLUGIN_ABI

#ifdef __cplusplus
}
#endif

#endif
