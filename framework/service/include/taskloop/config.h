/*
 * taskloop configs: load a service's YAML file (or text), validate it, dump it.
 *
 * A config file is parsed into libfyaml's document tree, every scalar value is
 * interpolated (see below), and the result is checked against the schema and the
 * adapters' own parameter lists before anything starts. Validation goes on after
 * the first error so that one run reports every problem, each as
 *
 *     FILE:LINE:COL: error: KEY.PATH: what
 *
 * with 1-based LINE and COL (the KEY.PATH part is left out for the document itself),
 * sorted by position; at most TL_CONFIG_MAX_MESSAGES of them, then a note of how many
 * more there were. A missing required key points at the mapping that should hold it;
 * an unknown key suggests the closest known one within two edits. Syntax errors and
 * duplicate keys come in the same form, without a KEY.PATH. Things worth knowing that
 * are not errors come as "FILE:LINE:COL: note: KEY.PATH: what" (see no_plugin_code), and
 * likely mistakes that are not errors as "FILE:LINE:COL: warning: KEY.PATH: what".
 *
 * Schema and defaults:
 *
 *   key                              type       default
 *   -------------------------------  ---------  ------------------------------------
 *   service                          string     (required)
 *   loop.workers                     int 1-1024 online CPUs, at least 2
 *   loop.max_in_flight               int 1-1e8  10000
 *   loop.drain_timeout               duration   10s
 *   loop.max_replaced_workers        int 0-1024 4
 *   loop.kept_back_mb                int 0-65536 64 (MiB that messages kept back for
 *                                               fair intake may take past max_in_flight
 *                                               of them; see intake.c)
 *   loop.shards                      int 1-64   1 (loops the partitions are spread
 *                                    or auto        over, each as loop.* says: its own
 *                                               thread, workers, lanes and window of
 *                                               max_in_flight; auto: one per online
 *                                               CPU)
 *   sources.NAME.type                string     (required) a registered source type
 *   sources.NAME.*                   per the source type's tl_param list
 *   sinks.SCHEME.*                   per the sink scheme's tl_param list (section optional)
 *   routes[i].source                 string     (required) a name under sources, read by
 *                                               no other route
 *   routes[i].handler                string     (required) a registered handler
 *   routes[i].ordering               enum       partition (or key, none)
 *   routes[i].inline                 bool       false
 *   routes[i].timeout                duration   30s (must be > 0)
 *   routes[i].isolation              enum       thread (or process: handlers run in
 *                                               worker processes; not with inline)
 *   routes[i].memory                 size       none; with isolation process only:
 *                                               each worker's address space (RLIMIT_AS),
 *                                               at least 16MiB ("512MiB"; B/KiB/MiB/GiB)
 *   routes[i].cpu_time               duration   none; with isolation process only: CPU
 *                                               time a message may take (whole seconds,
 *                                               rounded up)
 *   routes[i].rate                   string     none: "N/s" or "N/min" (N 1-1000000000),
 *                                               the most messages a second (or minute)
 *                                               the route's intake takes in
 *   routes[i].burst                  int        with rate only, 1-1000000000: messages
 *                                               taken at once after a quiet spell;
 *                                               default a hundredth of a second's worth
 *   routes[i].breaker.failures       int        20 (1-100000): failed or stalled attempts
 *                                               within window that open the breaker
 *   routes[i].breaker.window         duration   10s
 *   routes[i].breaker.cooldown       duration   30s: open this long, then one probe
 *   routes[i].on_stall.reroute       target     (required within on_stall)
 *   routes[i].on_error.retries       int 0-1000 0
 *   routes[i].on_error.backoff       duration   100ms
 *   routes[i].on_error.then          target     none
 *   routes[i].on_error.via           target     none: retries in place
 *   routes[i].outputs.NAME           target     the handler's outputs (tl_handler_emit)
 *   routes[i].delay                  duration   none: each message runs no earlier than its
 *                                               timestamp plus this (waiting in no lane,
 *                                               holding no worker, counted in flight)
 *   routes[i].delivery               enum       at_least_once (or exactly_once: the
 *                                               route's sends and its source's positions
 *                                               commit in one transaction; the source's
 *                                               type must support it, every target be of
 *                                               the sink named like that type)
 *   routes[i].transaction.messages   int        1000 (1-1000000), with exactly_once only:
 *                                               messages done that end a transaction
 *   routes[i].transaction.interval   duration   100ms: the longest a transaction stays open
 *   routes[i].params                 map        empty (string to string, for the handler)
 *   plugins                          list       none
 *   admin.listen                     HOST:PORT  127.0.0.1:9464; no admin section: admin off
 *   admin.token / admin.token_file   string     none: a bearer token every path but
 *                                               /healthz and /readyz requires
 *   log.format                       enum       logfmt (or json)
 *   log.level                        enum       info (or debug, warn, error)
 *
 * What a file may be (a config is read before anyone trusts it):
 *  - A regular file (a directory, FIFO, device or socket is refused at once, a FIFO
 *    without waiting for a writer) of at most TL_CONFIG_MAX_BYTES; a text given to
 *    tl_config_load_string has the same cap.
 *  - UTF-8 text: a NUL byte, or a byte that is not part of a valid UTF-8 character, is
 *    refused at its line and column, and so is "\0" in a scalar.
 *  - Exactly one YAML document: a second one ("---") is refused where it starts.
 *  - At most TL_CONFIG_MAX_NODES nodes, and at most TL_CONFIG_MAX_OPEN_BRACKETS '[' or
 *    '{' open at once: the node, or the bracket, past the bound is refused at its place
 *    before any document is built.
 *  - At most TL_CONFIG_MAX_ANCHORS anchors; aliases and merge keys ("<<: *base") may
 *    add at most TL_CONFIG_MAX_ALIAS_NODES nodes in all and nest at most 64 levels
 *    deep: the alias that would go past either is refused, before its copy is made. An
 *    alias names the last anchor of its name before it; one inside the node it names is
 *    refused. A mapping's own keys win over merged ones, earlier sources over later.
 *  - Keys are checked in time linear in their number (duplicates included).
 *
 * Values:
 *  - Durations need a unit: "250ms", "2s", "1m", "1h" (a bare number is refused, since
 *    guessing between ms and s is how timeouts end up 1000 times off), and are at most
 *    TL_CONFIG_MAX_DURATION_MS ("168h").
 *  - Integers are decimal; trailing text ("8x") is an error. Booleans are true/false.
 *    An adapter's integer or duration lies within the range its ops give it (else 0
 *    to TL_PARAM_INT_MAX, adapter.h), its string is not empty, its required list has
 *    an item; then the adapter's check op (tl_source_ops.check) looks at the section
 *    as its open() would (addresses, library properties), with no side effect, and
 *    each problem it finds is reported at its value.
 *  - A target is "SCHEME:ADDRESS" where SCHEME is a registered sink. A target on the
 *    sink named like the route's source type that names what that source reads (its
 *    tl_source_ops.input: a Kafka topic, a ZeroMQ endpoint) is refused: the reroute
 *    would feed the route its own messages for ever.
 *  - A source feeds exactly one route: a second route on it is refused.
 *  - admin.listen is HOST:PORT with HOST empty (loopback) or "*" (every address), an
 *    IPv4 address, "[IPv6]" or a host name, and PORT a number from 0 to 65535.
 *  - admin.token is the token itself, admin.token_file a regular file of at most 4 KiB
 *    holding it (read at load; a final line break is dropped): not both, not empty,
 *    no blanks or control characters. It is a secret: never quoted, masked in dumps.
 *  - Every source needs a route; every route at least its source and handler.
 *
 * Interpolation, applied to every scalar value (not to keys) before its type is checked:
 * "${VAR}" is the variable's value and an error when it is unset; "${VAR:-text}" is
 * text when VAR is unset or empty (taken literally up to the first '}'); "$$" is a
 * single '$'. Any other '$' is kept as is.
 *
 * Secrets: a message about a value that came from ${VAR} quotes it as written, naming
 * the variable, never what it held; one about the value of a key that names a secret
 * (tl_config_is_secret) does not quote it at all; and a URL's password is masked in
 * every message ("scheme://user:*****@host"). tl_config_dump masks the same.
 *
 * Plugins are loaded (dlopen) before anything else is checked, so they may register
 * handlers, sources and sinks used by the same file. A relative path (a bare name
 * too) is taken from the config file's folder (the working directory for a text), never
 * from the library search path. The file must be a regular one, owned by root or by
 * the user running this, that neither it nor its folder lets group or others write;
 * otherwise it is refused before anything of it runs. Each must export
 * `int taskloop_plugin_register(tl_registry *reg)` and this program's plugin ABI
 * (TL_PLUGIN_DECLARE_ABI, adapter.h), or it is refused before it registers anything.
 * With no_plugin_code (tl_config_opts) they are checked and not loaded.
 *
 * Thread rules: none; a config is built by one thread and read-only afterwards.
 */
#ifndef TASKLOOP_CONFIG_H
#define TASKLOOP_CONFIG_H

#include <stdio.h>
#include <taskloop/adapter.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- diagnostics */

/* Messages collected by a load; a zeroed tl_diag is ready to use. */
typedef struct tl_diag {
    char **msgs;  /* "FILE:LINE:COL: error: ..." or "...: note: ...", no trailing newline */
    size_t count; /* messages in msgs */
    size_t cap;
    size_t errors; /* how many of them are errors; the others are notes */
} tl_diag;

/* Prepares an empty diag (same as zeroing it). */
void tl_diag_init(tl_diag *diag);

/* Frees the messages; the diag is empty and reusable afterwards. */
void tl_diag_free(tl_diag *diag);

/* Writes each message on a line of its own to out. */
void tl_diag_print(const tl_diag *diag, FILE *out);

/* ---------------------------------------------------------------- the config */

#define TL_CONFIG_MAX_WORKERS 1024
#define TL_CONFIG_MAX_SHARDS 64
/* The largest config file or text a load reads, in bytes. */
#define TL_CONFIG_MAX_BYTES (1024 * 1024)
/* The most anchors (&name) a config may define. */
#define TL_CONFIG_MAX_ANCHORS 1000
/* The most nodes alias expansion and merge keys may add to a document, in all. */
#define TL_CONFIG_MAX_ALIAS_NODES 100000
/* The most nodes (scalars, aliases, sequences, mappings) a config's text may hold:
 * what bounds the memory of the document built from it. */
#define TL_CONFIG_MAX_NODES 200000
/* The most '[' and '{' a config's text may have open at once, counted as bytes whether
 * in a flow collection, a quoted string or a comment (a document nests at most 64
 * levels anyway): libfyaml holds every token of nested flow collections until the
 * outermost one closes, so deeper text is refused before libfyaml reads it. */
#define TL_CONFIG_MAX_OPEN_BRACKETS 1000
/* The longest duration a config takes (7 days, "168h"), in ms: far from overflowing
 * when the runtime counts it in nanoseconds. */
#define TL_CONFIG_MAX_DURATION_MS (7LL * 24 * 3600 * 1000)
/* The most messages one load keeps in a tl_diag; past it they are counted, and one last
 * message says how many more there were. */
#define TL_CONFIG_MAX_MESSAGES 1000

typedef enum tl_ordering {
    TL_ORDER_PARTITION = 0, /* one message at a time per partition */
    TL_ORDER_KEY,           /* one at a time per key, keys in parallel */
    TL_ORDER_NONE,          /* no ordering */
} tl_ordering;

/* Where a route's handlers run (see docs/ARCHITECTURE.md, "Isolation"). */
typedef enum tl_isolation {
    TL_ISOLATE_THREAD = 0, /* on the loop's worker threads: a crash ends the service */
    TL_ISOLATE_PROCESS,    /* in worker processes: a crash is a failed attempt */
} tl_isolation;

typedef enum tl_log_format {
    TL_LOG_LOGFMT = 0,
    TL_LOG_JSON,
} tl_log_format;

typedef enum tl_log_level {
    TL_LOG_DEBUG = 0,
    TL_LOG_INFO,
    TL_LOG_WARN,
    TL_LOG_ERROR,
} tl_log_level;

typedef struct tl_config_source {
    const char *name;
    const char *type;
    const tl_source_ops *ops;
    tl_params params; /* every key of the section except `type` */
    int line;
} tl_config_source;

typedef struct tl_config_sink {
    const char *scheme;
    const tl_sink_ops *ops;
    tl_params params;
    int line;
} tl_config_sink;

/* Where rerouted messages go; scheme is NULL when the route sets no target. */
typedef struct tl_config_target {
    const char *scheme;
    const char *address;
    const tl_sink_ops *ops;
} tl_config_target;

/* A route's named output: what its handler's tl_handler_emit(task, name, ...) sends to. */
typedef struct tl_config_output {
    const char *name;
    tl_config_target target;
} tl_config_output;

typedef struct tl_config_route {
    size_t source; /* index into tl_config.sources */
    const char *handler;
    tl_handler_fn fn;
    void *user;
    tl_ordering ordering;
    bool run_inline; /* `inline: true`: the handler never blocks, run it on the loop */
    int64_t timeout_ms;
    tl_isolation isolation;
    int64_t memory_bytes;        /* process isolation: RLIMIT_AS of each worker; 0 = none */
    int64_t cpu_time_ms;         /* process isolation: CPU time per message; 0 = none */
    bool plugin_handler;         /* the handler is taken to come from a plugin check did not load */
    int64_t rate_count;          /* `rate:` messages per rate_period_ms; 0 = no limit */
    int64_t rate_period_ms;      /* 1000 (/s) or 60000 (/min) */
    int64_t burst;               /* with a rate: messages taken at once after a quiet spell */
    int64_t breaker_failures;    /* `breaker:` failures within the window; 0 = no breaker */
    int64_t breaker_window_ms;   /* 10000 */
    int64_t breaker_cooldown_ms; /* 30000 */
    tl_config_target on_stall;
    unsigned retries;
    int64_t backoff_ms;
    tl_config_target on_error;       /* the `then:` of on_error */
    tl_config_target retry_via;      /* the `via:` of on_error: retries go through it, delayed */
    const tl_config_output *outputs; /* `outputs:`, in file order */
    size_t noutputs;
    int64_t delay_ms;        /* `delay:` a message runs no earlier than its timestamp + this */
    bool exactly_once;       /* `delivery: exactly_once` (transactions: see service.h) */
    int64_t txn_messages;    /* transaction.messages: messages done that end one, 1000 */
    int64_t txn_interval_ms; /* transaction.interval: the longest one lasts, 100 */
    const tl_kv *params;
    size_t nparams;
    int line;
} tl_config_route;

typedef struct tl_config_plugin {
    const char *path; /* as written in the file (interpolated) */
    const char *file; /* the file it names, symbolic links resolved; NULL if not found */
    void *handle;     /* from dlopen; closed by tl_config_free; NULL when not opened */
} tl_config_plugin;

typedef struct tl_config_mem tl_config_mem;

/* A loaded config; every string and array in it is owned by it. */
typedef struct tl_config {
    const char *file; /* the name used in messages */
    const char *service;
    unsigned workers;
    size_t max_in_flight;
    int64_t drain_timeout_ms;
    unsigned max_replaced_workers;
    size_t kept_back_mb;
    unsigned shards; /* loops the partitions are spread over (1: one loop) */
    tl_config_source *sources;
    size_t nsources;
    tl_config_sink *sinks;
    size_t nsinks;
    tl_config_route *routes;
    size_t nroutes;
    tl_config_plugin *plugins;
    size_t nplugins;
    bool plugins_unopened;        /* loaded with no_plugin_code: not fit to run (see opts) */
    const char *admin_listen;     /* NULL: no admin endpoint */
    const char *admin_token;      /* NULL: none; else every path but the probes needs it */
    const char *admin_token_file; /* where admin_token came from, as written; or NULL */
    tl_log_format log_format;
    tl_log_level log_level;
    tl_config_mem *mem; /* private */
} tl_config;

/* Looks up a variable for interpolation: its value (borrowed), or NULL when unset. */
typedef const char *(*tl_config_getenv_fn)(const char *name, void *user);

typedef struct tl_config_opts {
    tl_config_getenv_fn getenv; /* NULL: the process environment */
    void *getenv_user;
    /*
     * true: run no code the config names. Plugins are checked as for loading but not
     * opened; a handler, source type or sink scheme nothing registered is then taken to
     * come from them, with a note instead of an error, and its section's keys are kept
     * unchecked. The config is for looking at (`taskloop check`): it has
     * plugins_unopened set, and tl_service_new refuses it.
     */
    bool no_plugin_code;
    /* Appended to the error of a route naming a handler nothing registered (a program's
     * way to say how to declare one, e.g. `taskloop check --handlers`); NULL: none. */
    const char *handler_hint;
} tl_config_opts;

/*
 * Loads and validates the file at path (a regular file of at most TL_CONFIG_MAX_BYTES),
 * loading its plugins into reg. Returns 0 and a config in *out (caller frees),
 * TL_ECONFIG with the messages appended to diag (may be NULL), or TL_ENOMEM; notes may
 * come with a success. opts may be NULL. On failure the plugins are closed again, so
 * what they registered in reg must not be called.
 */
int tl_config_load_file(const char *path, tl_registry *reg, const tl_config_opts *opts,
                        tl_config **out, tl_diag *diag);

/* As tl_config_load_file, from text; name is used in messages (NULL: "<string>"). */
int tl_config_load_string(const char *name, const char *text, tl_registry *reg,
                          const tl_config_opts *opts, tl_config **out, tl_diag *diag);

/*
 * Frees the config and closes its plugins: handlers and adapters those plugins put in
 * the registry must not be called afterwards. NULL is ignored.
 */
void tl_config_free(tl_config *cfg);

/*
 * Writes the resolved config to out as YAML that loads back to the same config (but
 * for what is masked); 0 or TL_ESYS. In adapter sections, route params and MAP values,
 * a key that names a secret (tl_config_is_secret) has its value shown as "*****", and
 * in every string a URL's password is ("scheme://user:*****@host").
 */
int tl_config_dump(const tl_config *cfg, FILE *out);

/* Parses a duration as the config does ("250ms", "2s", "1m", "1h"; a unit is required;
 * at most TL_CONFIG_MAX_DURATION_MS) into milliseconds; TL_ECONFIG with the reason in
 * why otherwise. */
int tl_config_parse_duration(const char *s, int64_t *ms, char *why, size_t whylen);

/* True when a key's name says its value is a secret: it contains, in any case,
 * password, passwd, secret, token, key (api_key, ssl.key, apiKey), credential or
 * sasl.oauthbearer. Its value is never printed. */
bool tl_config_is_secret(const char *key);

/* The index of the source called name, or -1. */
long tl_config_source_index(const tl_config *cfg, const char *name);

#ifdef __cplusplus
}
#endif

#endif
