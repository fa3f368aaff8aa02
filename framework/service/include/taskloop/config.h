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
 * sorted by position. A missing required key points at the mapping that should hold
 * it; an unknown key suggests the closest known one within two edits. libfyaml's own
 * errors (syntax, duplicate keys) come in the same form, without a KEY.PATH.
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
 *   sources.NAME.type                string     (required) a registered source type
 *   sources.NAME.*                   per the source type's tl_param list
 *   sinks.SCHEME.*                   per the sink scheme's tl_param list (section optional)
 *   routes[i].source                 string     (required) a name under sources
 *   routes[i].handler                string     (required) a registered handler
 *   routes[i].ordering               enum       partition (or key, none)
 *   routes[i].inline                 bool       false
 *   routes[i].timeout                duration   30s (must be > 0)
 *   routes[i].on_stall.reroute       target     (required within on_stall)
 *   routes[i].on_error.retries       int 0-1000 0
 *   routes[i].on_error.backoff       duration   100ms
 *   routes[i].on_error.then          target     none
 *   routes[i].params                 map        empty (string to string, for the handler)
 *   plugins                          list       none
 *   admin.listen                     HOST:PORT  (required within admin); admin off if absent
 *   log.format                       enum       logfmt (or json)
 *   log.level                        enum       info (or debug, warn, error)
 *
 * Values:
 *  - Durations need a unit: "250ms", "2s", "1m", "1h" (a bare number is refused, since
 *    guessing between ms and s is how timeouts end up 1000 times off).
 *  - Integers are decimal; trailing text ("8x") is an error. Booleans are true/false.
 *  - A target is "SCHEME:ADDRESS" where SCHEME is a registered sink.
 *  - Every source needs at least one route; every route at least its source and handler.
 *
 * Interpolation, applied to every scalar value (not to keys) before its type is checked:
 * "${VAR}" is the variable's value and an error when it is unset; "${VAR:-text}" is
 * text when VAR is unset or empty (taken literally up to the first '}'); "$$" is a
 * single '$'. Any other '$' is kept as is.
 *
 * Plugins are loaded (dlopen) before anything else is checked, so they may register
 * handlers, sources and sinks used by the same file. A relative path with a '/' is
 * taken from the config file's directory; a bare name goes through the usual library
 * search. Each must export `int taskloop_plugin_register(tl_registry *reg)`.
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

/* Error messages collected by a load; a zeroed tl_diag is ready to use. */
typedef struct tl_diag {
    char **msgs; /* "FILE:LINE:COL: error: ...", no trailing newline */
    size_t count;
    size_t cap;
} tl_diag;

/* Prepares an empty diag (same as zeroing it). */
void tl_diag_init(tl_diag *diag);

/* Frees the messages; the diag is empty and reusable afterwards. */
void tl_diag_free(tl_diag *diag);

/* Writes each message on a line of its own to out. */
void tl_diag_print(const tl_diag *diag, FILE *out);

/* ---------------------------------------------------------------- the config */

#define TL_CONFIG_MAX_WORKERS 1024

typedef enum tl_ordering {
    TL_ORDER_PARTITION = 0, /* one message at a time per partition */
    TL_ORDER_KEY,           /* one at a time per key, keys in parallel */
    TL_ORDER_NONE,          /* no ordering */
} tl_ordering;

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

typedef struct tl_config_route {
    size_t source; /* index into tl_config.sources */
    const char *handler;
    tl_handler_fn fn;
    void *user;
    tl_ordering ordering;
    bool run_inline; /* `inline: true`: the handler never blocks, run it on the loop */
    int64_t timeout_ms;
    tl_config_target on_stall;
    unsigned retries;
    int64_t backoff_ms;
    tl_config_target on_error; /* the `then:` of on_error */
    const tl_kv *params;
    size_t nparams;
    int line;
} tl_config_route;

typedef struct tl_config_plugin {
    const char *path; /* as written in the file */
    void *handle;     /* from dlopen; closed by tl_config_free */
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
    tl_config_source *sources;
    size_t nsources;
    tl_config_sink *sinks;
    size_t nsinks;
    tl_config_route *routes;
    size_t nroutes;
    tl_config_plugin *plugins;
    size_t nplugins;
    const char *admin_listen; /* NULL: no admin endpoint */
    tl_log_format log_format;
    tl_log_level log_level;
    tl_config_mem *mem; /* private */
} tl_config;

/* Looks up a variable for interpolation: its value (borrowed), or NULL when unset. */
typedef const char *(*tl_config_getenv_fn)(const char *name, void *user);

typedef struct tl_config_opts {
    tl_config_getenv_fn getenv; /* NULL: the process environment */
    void *getenv_user;
} tl_config_opts;

/*
 * Loads and validates the file at path, loading its plugins into reg. Returns 0 and
 * a config in *out (caller frees), TL_ECONFIG with the messages appended to diag (may
 * be NULL), or TL_ENOMEM. opts may be NULL. On failure the plugins are closed again,
 * so what they registered in reg must not be called.
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
 * Writes the resolved config to out as YAML that loads back to the same config; 0 or
 * TL_ESYS. In adapter sections, route params and MAP values, a key whose name contains
 * password, secret, sasl.oauthbearer, ssl.key or token has its value shown as "*****".
 */
int tl_config_dump(const tl_config *cfg, FILE *out);

/* Parses a duration as the config does ("250ms", "2s", "1m", "1h"; a unit is required)
 * into milliseconds; TL_ECONFIG with the reason in why otherwise. */
int tl_config_parse_duration(const char *s, int64_t *ms, char *why, size_t whylen);

/* True when a key's name says its value is a secret (password, secret, token, ...):
 * its value is never printed. */
bool tl_config_is_secret(const char *key);

/* The index of the source called name, or -1. */
long tl_config_source_index(const tl_config *cfg, const char *name);

#ifdef __cplusplus
}
#endif

#endif
