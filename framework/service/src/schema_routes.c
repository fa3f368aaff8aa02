/*
 * The routes section: each route's source, handler, ordering and timeouts, and the
 * targets it reroutes to; then the check that every source has a route.
 *
 * In the loader's chain: called by schema.c; calls schema_nodes.c and loader.c,
 * nothing above.
 */
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* Public (config.h), and here because a route finding its source is its main use. */
long tl_config_source_index(const tl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* ---------------------------------------------------------------- sources of routes */

/* What a load keeps to find routes' sources in n·log n: the sources sorted by name,
 * and the route each one feeds. */
typedef struct named {
    const char *name;
    size_t index;
} named;

typedef struct route_index {
    size_t n;
    named *by_name;   /* the sources, sorted by name */
    size_t *route_of; /* for each source, the route reading it, or SIZE_MAX */
} route_index;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Sorts the sources once; false when out of memory (noted by the arena). */
static bool index_sources(loader *ld, route_index *ix)
{
    tl_config *cfg = ld->cfg;
    ix->n = cfg->nsources;
    ix->by_name = tl_config_alloc(ld, (ix->n + 1) * sizeof(*ix->by_name));
    ix->route_of = tl_config_alloc(ld, (ix->n + 1) * sizeof(*ix->route_of));
    if (!ix->by_name || !ix->route_of)
        return false;
    for (size_t i = 0; i < ix->n; i++) {
        ix->by_name[i] = (named){cfg->sources[i].name, i};
        ix->route_of[i] = SIZE_MAX;
    }
    qsort(ix->by_name, ix->n, sizeof(*ix->by_name), by_name);
    return true;
}

static long find_source(const route_index *ix, const char *name)
{
    named key = {name, 0};
    const named *hit = bsearch(&key, ix->by_name, ix->n, sizeof(key), by_name);
    return hit ? (long)hit->index : -1;
}

/* ---------------------------------------------------------------- targets */

/* True when the target names what the route's own source reads (by its adapter's
 * `input` key, on the sink of the same name as the source type). Unknown returns
 * `unknown`: no source, or a source type without an input key (memory). */
static bool feeds_own_input(const tl_config *cfg, const tl_config_route *r,
                            const tl_config_target *t, bool unknown)
{
    if (r->source == SIZE_MAX)
        return unknown;
    const tl_config_source *src = &cfg->sources[r->source];
    if (!src->ops || !src->ops->input)
        return unknown;
    if (strcmp(src->type, t->scheme) != 0)
        return false;
    const tl_param_value *v = tl_params_get(&src->params, src->ops->input);
    if (v && v->type == TL_PARAM_STRING && strcmp(v->str, t->address) == 0)
        return true;
    for (size_t i = 0; v && v->type == TL_PARAM_LIST && i < v->nlist; i++)
        if (strcmp(v->list[i], t->address) == 0)
            return true;
    return false;
}

/* A "SCHEME:ADDRESS" target whose scheme is a registered sink, not the route's input. */
static void load_target(loader *ld, struct fy_node *map, const char *path, const char *key,
                        tl_config_route *r, tl_config_target *t)
{
    /* A delayed retry must come back to this route; anything else must not. */
    bool own_input = strcmp(key, "via") == 0;
    char *s = tl_schema_get_str(ld, map, path, key), at[PATH_LEN];
    if (!s)
        return;
    tl_schema_join(at, path, key);
    struct fy_node *v = tl_schema_lookup(map, key);
    pos p = tl_schema_pos_or(ld, v, tl_config_node_pos(ld, tl_schema_lookup_key(map, key)));
    const char *shown = tl_schema_shown(ld, v, key, s);
    bool from_env = shown != s;
    shown = tl_config_strdup(ld, shown); /* s is cut in two below */
    char *colon = strchr(s, ':');
    if (!shown)
        return;
    if (!colon || colon == s || !colon[1]) {
        tl_config_report(ld, p, at, "expected a target \"SCHEME:ADDRESS\", got \"%s\"", shown);
        return;
    }
    *colon = '\0';
    const tl_sink_ops *ops = tl_registry_sink(ld->reg, s);
    if (!ops && !tl_schema_from_plugins(ld, p, at, "sink scheme", s)) {
        if (from_env)
            tl_config_report(ld, p, at, "unknown sink scheme in target \"%s\"", shown);
        else
            tl_config_report(ld, p, at, "unknown sink scheme '%s' in target \"%s\"", s, shown);
        return;
    }
    *t = (tl_config_target){s, colon + 1, ops};
    size_t errors = ld->nerrors;
    tl_schema_check_address(ld, ops, v, p, at, t->address);
    if (ld->nerrors != errors) {
        *t = (tl_config_target){0};
    } else if (!own_input && feeds_own_input(ld->cfg, r, t, false)) {
        tl_config_report(ld, p, at,
                         "\"%s\" is what this route's source '%s' reads: rerouting there would "
                         "loop for ever",
                         shown, ld->cfg->sources[r->source].name);
        *t = (tl_config_target){0};
    } else if (own_input && !feeds_own_input(ld->cfg, r, t, true)) {
        tl_config_report(ld, p, at,
                         "retries sent to \"%s\" would never come back: the route's source '%s' "
                         "must read it too (a %s source lists it in its %s)",
                         shown, ld->cfg->sources[r->source].name, ld->cfg->sources[r->source].type,
                         ld->cfg->sources[r->source].ops->input);
        *t = (tl_config_target){0};
    }
}

/* The route's source, which no other route may read from: two routes on one source would
 * each take every message (or split them, depending on the broker), and settle them
 * twice; a source feeds exactly one route. */
static void load_route_source(loader *ld, route_index *ix, struct fy_node *map, const char *path,
                              tl_config_route *r)
{
    char *name = tl_schema_get_str(ld, map, path, "source"), at[PATH_LEN];
    if (!name || !ld->sources_ok || !ix->route_of)
        return;
    tl_schema_join(at, path, "source");
    struct fy_node *v = tl_schema_lookup(map, "source");
    long i = find_source(ix, name);
    if (i >= 0 && ix->route_of[i] != SIZE_MAX) {
        tl_config_report(ld, tl_config_node_pos(ld, v), at,
                         "source '%s' already feeds routes[%zu]; a source feeds exactly one route",
                         name, ix->route_of[i]);
        return;
    }
    if (i >= 0) {
        r->source = (size_t)i;
        ix->route_of[i] = (size_t)(r - ld->cfg->routes);
        return;
    }
    const char **names = tl_config_alloc(ld, (ld->cfg->nsources + 1) * sizeof(*names));
    for (size_t k = 0; names && k < ld->cfg->nsources; k++)
        names[k] = ld->cfg->sources[k].name;
    const char *near = names ? tl_config_suggest(name, names) : NULL;
    tl_config_report(ld, tl_config_node_pos(ld, v), at, "unknown source '%s'%s%s%s",
                     tl_schema_shown(ld, v, NULL, name), near ? " (did you mean '" : "",
                     near ? near : "", near ? "'?)" : "");
}

static void load_route_handler(loader *ld, struct fy_node *map, const char *path,
                               tl_config_route *r)
{
    char at[PATH_LEN];
    r->handler = tl_schema_get_str(ld, map, path, "handler");
    if (!r->handler || tl_registry_handler(ld->reg, r->handler, &r->fn, &r->user) == 0)
        return;
    tl_schema_join(at, path, "handler");
    struct fy_node *v = tl_schema_lookup(map, "handler");
    if (tl_schema_from_plugins(ld, tl_config_node_pos(ld, v), at, "handler", r->handler))
        r->plugin_handler = true;
    else
        tl_config_report(ld, tl_config_node_pos(ld, v), at,
                         "no handler named '%s' is registered%s%s",
                         tl_schema_shown(ld, v, NULL, r->handler), ld->handler_hint ? "; " : "",
                         ld->handler_hint ? ld->handler_hint : "");
}

static void load_on_stall(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const keys[] = {"reroute", NULL};
    char at[PATH_LEN];
    tl_schema_join(at, path, "on_stall");
    struct fy_node *map = tl_schema_get_map(ld, route, path, "on_stall");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, at, keys);
    tl_schema_require(
        ld, map,
        tl_schema_pos_or(ld, map, tl_config_node_pos(ld, tl_schema_lookup_key(route, "on_stall"))),
        at, keys);
    load_target(ld, map, at, "reroute", r, &r->on_stall);
}

static void load_on_error(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const keys[] = {"retries", "backoff", "then", "via", NULL};
    char at[PATH_LEN];
    tl_schema_join(at, path, "on_error");
    struct fy_node *map = tl_schema_get_map(ld, route, path, "on_error");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, at, keys);
    int64_t retries;
    if (tl_schema_get_int(ld, map, at, "retries", 0, 1000, &retries))
        r->retries = (unsigned)retries;
    tl_schema_get_duration(ld, map, at, "backoff", false, &r->backoff_ms);
    load_target(ld, map, at, "then", r, &r->on_error);
    load_target(ld, map, at, "via", r, &r->retry_via);
    if (r->retry_via.scheme && r->retries == 0) {
        char via_at[PATH_LEN];
        tl_schema_join(via_at, at, "via");
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup_key(map, "via")), via_at,
                         "via carries retries, and this route has none: set retries (1 or more)");
    }
}

/* outputs: NAME: TARGET, each a target as on_error.then is (its own input refused). */
static void load_outputs(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    struct fy_node *map = tl_schema_get_map(ld, route, path, "outputs");
    if (!map)
        return;
    char at[PATH_LEN];
    tl_schema_join(at, path, "outputs");
    tl_config_output *outs =
        tl_config_alloc(ld, (fy_node_mapping_item_count(map) + 1) * sizeof(*outs));
    struct fy_node_pair *pair;
    void *it = NULL;
    while (outs && (pair = fy_node_mapping_iterate(map, &it))) {
        char *name = tl_schema_key_text(ld, pair, at);
        if (!name)
            continue;
        tl_config_output *o = &outs[r->noutputs];
        *o = (tl_config_output){.name = tl_config_strdup(ld, name)};
        load_target(ld, map, at, name, r, &o->target);
        r->noutputs += o->name && o->target.scheme;
    }
    r->outputs = outs;
}

/* isolation, and the limits that only worker processes can have. */
static void load_isolation(loader *ld, struct fy_node *map, const char *path, tl_config_route *r)
{
    static const char *const modes[] = {"thread", "process", NULL};
    static const char *const limits[] = {"memory", "cpu_time"};
    r->isolation =
        (tl_isolation)tl_schema_get_enum(ld, map, path, "isolation", modes, TL_ISOLATE_THREAD);
    char at[PATH_LEN];
    if (r->isolation == TL_ISOLATE_PROCESS && r->run_inline) {
        tl_schema_join(at, path, "inline");
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "inline")), at,
                         "an inline handler runs on the loop thread; it cannot also run with "
                         "isolation: process");
    }
    tl_schema_get_size(ld, map, path, "memory", 16LL << 20, &r->memory_bytes);
    tl_schema_get_duration(ld, map, path, "cpu_time", true, &r->cpu_time_ms);
    for (size_t i = 0; r->isolation != TL_ISOLATE_PROCESS && i < 2; i++) {
        if (!tl_schema_lookup_key(map, limits[i]))
            continue;
        tl_schema_join(at, path, limits[i]);
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup_key(map, limits[i])), at,
                         "a limit of worker processes: needs isolation: process");
    }
}

/* rate: "N/s" or "N/min", and its burst (default: a hundredth of a second's worth). */
static void load_rate(loader *ld, struct fy_node *map, const char *path, tl_config_route *r)
{
    char at[PATH_LEN];
    const char *text = tl_schema_get_str(ld, map, path, "rate");
    if (text) {
        long long n = 0;
        int used = 0;
        char unit[8] = "";
        tl_schema_join(at, path, "rate");
        if (sscanf(text, "%lld/%7s%n", &n, unit, &used) == 2 && (size_t)used == strlen(text) &&
            n >= 1 && n <= 1000000000 && (strcmp(unit, "s") == 0 || strcmp(unit, "min") == 0)) {
            r->rate_count = n;
            r->rate_period_ms = strcmp(unit, "s") == 0 ? 1000 : 60000;
            int64_t per_10ms = (r->rate_count * 10 + r->rate_period_ms - 1) / r->rate_period_ms;
            r->burst = per_10ms > 1 ? per_10ms : 1;
        } else {
            tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "rate")), at,
                             "expected messages per second or minute, 1 to 1000000000, such "
                             "as \"500/s\" or \"3000/min\", got \"%s\"",
                             text);
        }
    }
    if (!tl_schema_lookup_key(map, "burst"))
        return;
    if (!r->rate_count && !text) {
        tl_schema_join(at, path, "burst");
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup_key(map, "burst")), at,
                         "burst needs a rate");
        return;
    }
    tl_schema_get_int(ld, map, path, "burst", 1, 1000000000, &r->burst);
}

/* breaker: { failures, window, cooldown }, each with its default. */
static void load_breaker(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const keys[] = {"failures", "window", "cooldown", NULL};
    char at[PATH_LEN];
    tl_schema_join(at, path, "breaker");
    struct fy_node *map = tl_schema_get_map(ld, route, path, "breaker");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, at, keys);
    r->breaker_failures = 20;
    r->breaker_window_ms = 10000;
    r->breaker_cooldown_ms = 30000;
    tl_schema_get_int(ld, map, at, "failures", 1, 100000, &r->breaker_failures);
    tl_schema_get_duration(ld, map, at, "window", true, &r->breaker_window_ms);
    tl_schema_get_duration(ld, map, at, "cooldown", true, &r->breaker_cooldown_ms);
}

/* One target of an exactly-once route: written in the source's transaction, so on the
 * sink named like the source's type. */
static void check_txn_target(loader *ld, struct fy_node *map, const char *path, const char *key,
                             const tl_config_target *t, const char *type)
{
    if (!t->scheme || strcmp(t->scheme, type) == 0)
        return;
    char at[PATH_LEN];
    tl_schema_join(at, path, key);
    tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, key)), at,
                     "with delivery: exactly_once every target is written in the source's %s "
                     "transaction: a %s target cannot be",
                     type, t->scheme);
}

/* delivery: at_least_once (the default) or exactly_once, and the bounds of a
 * transaction: { messages, interval }. */
static void load_delivery(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const modes[] = {"at_least_once", "exactly_once", NULL};
    static const char *const keys[] = {"messages", "interval", NULL};
    r->exactly_once = tl_schema_get_enum(ld, route, path, "delivery", modes, 0) == 1;
    r->txn_messages = 1000;
    r->txn_interval_ms = 100;
    char at[PATH_LEN];
    tl_schema_join(at, path, "transaction");
    struct fy_node *map = tl_schema_get_map(ld, route, path, "transaction");
    if (map && !r->exactly_once) {
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup_key(route, "transaction")), at,
                         "transaction bounds need delivery: exactly_once");
        return;
    }
    if (map) {
        tl_schema_check_keys(ld, map, at, keys);
        tl_schema_get_int(ld, map, at, "messages", 1, 1000000, &r->txn_messages);
        tl_schema_get_duration(ld, map, at, "interval", true, &r->txn_interval_ms);
    }
    if (!r->exactly_once || r->source == SIZE_MAX)
        return;
    const tl_config_source *src = &ld->cfg->sources[r->source];
    /* A source with a missing or unknown type was reported already; its
     * targets cannot be judged against it. */
    if (!src->ops || !src->type)
        return;
    if (!src->ops->txn) {
        char d[PATH_LEN];
        tl_schema_join(d, path, "delivery");
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(route, "delivery")), d,
                         "exactly_once needs a source that takes part in transactions; source "
                         "'%s' is of type %s, which does not (kafka does)",
                         src->name, src->type);
        return;
    }
    struct fy_node *on_stall = tl_schema_lookup(route, "on_stall");
    struct fy_node *on_error = tl_schema_lookup(route, "on_error");
    char sub[PATH_LEN];
    tl_schema_join(sub, path, "on_stall");
    check_txn_target(ld, on_stall, sub, "reroute", &r->on_stall, src->type);
    tl_schema_join(sub, path, "on_error");
    check_txn_target(ld, on_error, sub, "then", &r->on_error, src->type);
    check_txn_target(ld, on_error, sub, "via", &r->retry_via, src->type);
    tl_schema_join(sub, path, "outputs");
    for (size_t i = 0; i < r->noutputs; i++)
        check_txn_target(ld, tl_schema_lookup(route, "outputs"), sub, r->outputs[i].name,
                         &r->outputs[i].target, src->type);
}

/* A plugin's handler in thread mode takes the service down if it crashes. */
static void warn_thread_plugin(loader *ld, struct fy_node *map, const char *path,
                               const tl_config_route *r)
{
    if (!r->plugin_handler || r->isolation != TL_ISOLATE_THREAD || r->on_error.scheme)
        return;
    char at[PATH_LEN];
    tl_schema_join(at, path, "handler");
    tl_config_warn(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "handler")), at,
                   "a plugin's handler runs in the service's threads and no on_error.then is "
                   "set: if it crashes, the service goes down and its message comes back "
                   "again and again; consider isolation: process and an on_error target");
}

static void load_route(loader *ld, route_index *ix, struct fy_node *map, size_t index, pos at,
                       tl_config_route *r)
{
    static const char *const keys[] = {"source",    "handler",     "ordering", "inline", "timeout",
                                       "isolation", "memory",      "cpu_time", "rate",   "burst",
                                       "breaker",   "on_stall",    "on_error", "params", "outputs",
                                       "delivery",  "transaction", "delay",    NULL};
    static const char *const required[] = {"source", "handler", NULL};
    static const char *const orders[] = {"partition", "key", "none", NULL};
    char path[PATH_LEN];
    tl_schema_join_index(path, "routes", index);
    size_t errors = ld->nerrors;
    *r = (tl_config_route){
        .source = SIZE_MAX, .timeout_ms = 30000, .backoff_ms = 100, .line = at.line};
    if (fy_node_get_type(map) != FYNT_MAPPING) {
        tl_config_report(ld, at, path, "expected a mapping, got %s", tl_schema_kind(map));
        return;
    }
    tl_schema_check_keys(ld, map, path, keys);
    tl_schema_require(ld, map, at, path, required);
    load_route_source(ld, ix, map, path, r);
    load_route_handler(ld, map, path, r);
    r->ordering =
        (tl_ordering)tl_schema_get_enum(ld, map, path, "ordering", orders, TL_ORDER_PARTITION);
    tl_schema_get_bool(ld, map, path, "inline", &r->run_inline);
    tl_schema_get_duration(ld, map, path, "timeout", true, &r->timeout_ms);
    tl_schema_get_duration(ld, map, path, "delay", true, &r->delay_ms);
    load_isolation(ld, map, path, r);
    load_rate(ld, map, path, r);
    load_breaker(ld, map, path, r);
    load_on_stall(ld, map, path, r);
    load_on_error(ld, map, path, r);
    load_outputs(ld, map, path, r);
    load_delivery(ld, map, path, r);
    if (r->fn && r->handler && strcmp(r->handler, "forward") == 0 && r->noutputs == 0 &&
        !tl_schema_lookup_key(map, "outputs")) {
        char at[PATH_LEN];
        tl_schema_join(at, path, "handler");
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "handler")), at,
                         "forward copies each message to an output: give the route outputs "
                         "(e.g. outputs: { out: \"kafka:orders.copy\" })");
    }
    warn_thread_plugin(ld, map, path, r);
    struct fy_node *params = tl_schema_get_map(ld, map, path, "params");
    char sub[PATH_LEN];
    tl_schema_join(sub, path, "params");
    if (params)
        tl_schema_load_kvs(ld, params, sub, &r->params, &r->nparams);
    const tl_handler_params *decl = r->fn ? tl_registry_handler_params(ld->reg, r->handler) : NULL;
    if (decl)
        tl_schema_check_handler_params(ld, params, at, sub, r->handler, decl, r,
                                       ld->nerrors == errors);
}

void tl_schema_load_routes(loader *ld, struct fy_node *root)
{
    struct fy_node *seq = tl_schema_lookup(root, "routes");
    if (!tl_schema_lookup_key(root, "routes"))
        return;
    pos key_at = tl_config_node_pos(ld, tl_schema_lookup_key(root, "routes"));
    if (!tl_schema_is_null(seq) &&
        !tl_schema_expect_kind(ld, seq, FYNT_SEQUENCE, "routes", "a list"))
        return;
    if (tl_schema_count_of(seq) == 0) {
        tl_config_report(ld, key_at, "routes", "no routes defined");
        return;
    }
    tl_config *cfg = ld->cfg;
    cfg->routes = tl_config_alloc(ld, (tl_schema_count_of(seq) + 1) * sizeof(*cfg->routes));
    route_index ix = {0};
    if (ld->sources_ok && !index_sources(ld, &ix))
        return;
    void *it = NULL;
    struct fy_node *item;
    while (cfg->routes && (item = fy_node_sequence_iterate(seq, &it))) {
        load_route(ld, &ix, item, cfg->nroutes, tl_schema_pos_or(ld, item, key_at),
                   &cfg->routes[cfg->nroutes]);
        cfg->nroutes++;
    }
}

/* A source nobody routes from could never settle its messages. */
void tl_schema_check_sources_routed(loader *ld)
{
    tl_config *cfg = ld->cfg;
    bool routes_ok = cfg->nroutes > 0;
    for (size_t r = 0; r < cfg->nroutes; r++)
        routes_ok = routes_ok && cfg->routes[r].source != SIZE_MAX;
    if (!ld->sources_ok || !routes_ok)
        return; /* a broken route may well be the one meant for the source */
    bool *used = tl_config_alloc(ld, cfg->nsources + 1);
    for (size_t r = 0; used && r < cfg->nroutes; r++)
        used[cfg->routes[r].source] = true;
    for (size_t i = 0; used && i < cfg->nsources; i++) {
        if (!used[i]) {
            char path[PATH_LEN];
            tl_schema_join(path, "sources", cfg->sources[i].name);
            tl_config_report(ld, ld->source_at[i], path, "no route reads from this source");
        }
    }
}
