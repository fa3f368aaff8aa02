/*
 * The schema of a service config, checked node by node over libfyaml's document tree.
 *
 * Every check reports and carries on, so one run lists all the problems of a file. A
 * section broken beyond checking (a list where a mapping belongs, say) is reported
 * once and skipped. Paths in messages read like the file: sources.orders.brokers,
 * routes[0].timeout.
 */
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"

#define PATH_LEN 256
#define WHY_LEN 512

typedef tl_config_loader loader;
typedef tl_config_pos pos;

static pos node_pos(loader *ld, struct fy_node *n)
{
    return tl_config_node_pos(ld, n);
}

static pos pos_or(loader *ld, struct fy_node *n, pos fallback)
{
    pos p = node_pos(ld, n);
    return p.line ? p : fallback;
}

/* A path cut short still says where it goes; the position beside it is exact. */
static void ellipsis_if_cut(char *dst, int n)
{
    if (n >= PATH_LEN)
        memcpy(dst + PATH_LEN - 4, "...", 4);
}

static void join(char *dst, const char *parent, const char *key)
{
    ellipsis_if_cut(dst, snprintf(dst, PATH_LEN, "%s%s%s", parent, *parent ? "." : "", key));
}

static void join_index(char *dst, const char *parent, size_t i)
{
    ellipsis_if_cut(dst, snprintf(dst, PATH_LEN, "%s[%zu]", parent, i));
}

/* ---------------------------------------------------------------- nodes */

static bool is_null(struct fy_node *n);

static const char *kind(struct fy_node *n)
{
    if (is_null(n))
        return "nothing";
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING:
        return "a mapping";
    case FYNT_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* A plain empty, "~" or "null" scalar: what `key:` with nothing after it gives. */
static bool is_null(struct fy_node *n)
{
    if (!n)
        return true;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static bool expect_kind(loader *ld, struct fy_node *n, enum fy_node_type t, const char *path,
                        const char *what)
{
    if (fy_node_get_type(n) == t)
        return true;
    tl_config_report(ld, node_pos(ld, n), path, "expected %s, got %s", what, kind(n));
    return false;
}

/* The interpolated text of a scalar value, owned by the config; NULL after an error. */
static char *scalar(loader *ld, struct fy_node *n, const char *path, const char *what)
{
    if (n && !expect_kind(ld, n, FYNT_SCALAR, path, what))
        return NULL;
    size_t len = 0;
    const char *raw = is_null(n) ? "" : fy_node_get_scalar(n, &len);
    char why[WHY_LEN], *text;
    int rc = tl_config_interpolate(raw, len, ld->getenv, ld->getenv_user, &text, why, sizeof(why));
    if (rc == TL_ENOMEM)
        ld->oom = true;
    if (rc) {
        if (rc == TL_ECONFIG)
            tl_config_report(ld, node_pos(ld, n), path, "%s", why);
        return NULL;
    }
    char *copy = tl_config_strndup(ld, text, strlen(text));
    free(text);
    return copy;
}

/* A mapping key as written (keys are names, so they are not interpolated). */
static char *key_text(loader *ld, struct fy_node_pair *pair, const char *path)
{
    struct fy_node *k = fy_node_pair_key(pair);
    if (!k || fy_node_get_type(k) != FYNT_SCALAR) {
        tl_config_report(ld, pos_or(ld, k, node_pos(ld, fy_node_pair_value(pair))), path,
                         "keys must be plain strings");
        return NULL;
    }
    size_t len;
    const char *s = fy_node_get_scalar(k, &len);
    return tl_config_strndup(ld, s ? s : "", s ? len : 0);
}

static size_t count_of(struct fy_node *n)
{
    if (!n || is_null(n))
        return 0;
    if (fy_node_get_type(n) == FYNT_MAPPING)
        return (size_t)fy_node_mapping_item_count(n);
    if (fy_node_get_type(n) == FYNT_SEQUENCE)
        return (size_t)fy_node_sequence_item_count(n);
    return 0;
}

static struct fy_node *lookup(struct fy_node *map, const char *key)
{
    struct fy_node_pair *p = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    return p ? fy_node_pair_value(p) : NULL;
}

static struct fy_node *lookup_key(struct fy_node *map, const char *key)
{
    struct fy_node_pair *p = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    return p ? fy_node_pair_key(p) : NULL;
}

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static void unknown_key(loader *ld, struct fy_node *k, const char *path, const char *key,
                        const char *const *known)
{
    char at[PATH_LEN];
    join(at, path, key);
    const char *near = tl_config_suggest(key, known);
    if (near)
        tl_config_report(ld, node_pos(ld, k), at, "unknown key '%s' (did you mean '%s'?)", key,
                         near);
    else
        tl_config_report(ld, node_pos(ld, k), at, "unknown key '%s'", key);
}

/* Reports every key of map that is not in known. */
static void check_keys(loader *ld, struct fy_node *map, const char *path, const char *const *known)
{
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *key = key_text(ld, pair, path);
        if (key && !in_list(key, known))
            unknown_key(ld, fy_node_pair_key(pair), path, key, known);
    }
}

static void require(loader *ld, struct fy_node *map, pos at, const char *path,
                    const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++)
        if (!lookup_key(map, keys[i]))
            tl_config_report(ld, at, path, "missing required key '%s'", keys[i]);
}

/* ---------------------------------------------------------------- typed fields */

/* One key of a fixed section: its path, where it is, and its interpolated text. */
typedef struct field {
    char at[PATH_LEN];
    pos p;
    char *text;
} field;

/* Fills f for map[key]; false when the key is absent or its value was reported. */
static bool get_field(loader *ld, struct fy_node *map, const char *path, const char *key,
                      const char *what, field *f)
{
    struct fy_node_pair *pair = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    if (!pair)
        return false;
    join(f->at, path, key);
    f->p = pos_or(ld, fy_node_pair_value(pair), node_pos(ld, fy_node_pair_key(pair)));
    f->text = scalar(ld, fy_node_pair_value(pair), f->at, what);
    return f->text != NULL;
}

/* Reports why unless rc is 0; returns whether it was. */
static bool check(loader *ld, int rc, const field *f, const char *why)
{
    if (rc)
        tl_config_report(ld, f->p, f->at, "%s", why);
    return rc == 0;
}

static char *get_str(loader *ld, struct fy_node *map, const char *path, const char *key)
{
    field f;
    if (!get_field(ld, map, path, key, "a string", &f))
        return NULL;
    return check(ld, *f.text ? 0 : TL_ECONFIG, &f, "must not be empty") ? f.text : NULL;
}

static bool get_int(loader *ld, struct fy_node *map, const char *path, const char *key, int64_t min,
                    int64_t max, int64_t *out)
{
    field f;
    char why[WHY_LEN];
    return get_field(ld, map, path, key, "an integer", &f) &&
           check(ld, tl_config_parse_int(f.text, min, max, out, why, sizeof(why)), &f, why);
}

static bool get_bool(loader *ld, struct fy_node *map, const char *path, const char *key, bool *out)
{
    field f;
    char why[WHY_LEN];
    return get_field(ld, map, path, key, "true or false", &f) &&
           check(ld, tl_config_parse_bool(f.text, out, why, sizeof(why)), &f, why);
}

/* A duration in ms; positive demands more than zero. */
static bool get_duration(loader *ld, struct fy_node *map, const char *path, const char *key,
                         bool positive, int64_t *out)
{
    field f;
    char why[WHY_LEN];
    int64_t ms;
    if (!get_field(ld, map, path, key, "a duration", &f) ||
        !check(ld, tl_config_parse_duration(f.text, &ms, why, sizeof(why)), &f, why))
        return false;
    snprintf(why, sizeof(why), "duration must be greater than 0, got \"%s\"", f.text);
    if (!check(ld, positive && ms == 0 ? TL_ECONFIG : 0, &f, why))
        return false;
    *out = ms;
    return true;
}

/* The index of the value among names (NULL-ended), or def when the key is absent. */
static int get_enum(loader *ld, struct fy_node *map, const char *path, const char *key,
                    const char *const *names, int def)
{
    field f;
    if (!get_field(ld, map, path, key, "a name", &f))
        return def;
    for (int i = 0; names[i]; i++)
        if (strcmp(f.text, names[i]) == 0)
            return i;
    char choices[WHY_LEN] = "";
    for (int i = 0; names[i]; i++)
        snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s",
                 i == 0         ? ""
                 : names[i + 1] ? ", "
                                : " or ",
                 names[i]);
    tl_config_report(ld, f.p, f.at, "expected %s, got \"%s\"", choices, f.text);
    return def;
}

/* A mapping value of map[key], or NULL when absent, null, or not a mapping (reported). */
static struct fy_node *get_map(loader *ld, struct fy_node *map, const char *path, const char *key)
{
    struct fy_node *v = lookup(map, key);
    if (!v || is_null(v))
        return NULL;
    char at[PATH_LEN];
    join(at, path, key);
    return expect_kind(ld, v, FYNT_MAPPING, at, "a mapping") ? v : NULL;
}

/* A mapping of names to scalars (route params, librdkafka properties), in file order. */
static bool load_kvs(loader *ld, struct fy_node *map, const char *path, const tl_kv **out,
                     size_t *n)
{
    *n = 0;
    tl_kv *kv = tl_config_alloc(ld, (count_of(map) + 1) * sizeof(*kv));
    if (!kv)
        return false;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *key = key_text(ld, pair, path), at[PATH_LEN];
        if (!key)
            continue;
        join(at, path, key);
        char *val = scalar(ld, fy_node_pair_value(pair), at, "a scalar");
        if (val)
            kv[(*n)++] = (tl_kv){key, val};
    }
    *out = kv;
    return true;
}

/* ---------------------------------------------------------------- adapter params */

static bool load_list(loader *ld, struct fy_node *seq, const char *path, tl_param_value *out)
{
    if (fy_node_get_type(seq) != FYNT_SEQUENCE) {
        tl_config_report(ld, node_pos(ld, seq), path, "expected a list, got %s (write [item, ...])",
                         kind(seq));
        return false;
    }
    const char **items = tl_config_alloc(ld, (count_of(seq) + 1) * sizeof(*items));
    if (!items)
        return false;
    void *it = NULL;
    struct fy_node *item;
    size_t i = 0, n = 0;
    bool ok = true;
    while ((item = fy_node_sequence_iterate(seq, &it))) {
        char at[PATH_LEN];
        join_index(at, path, i++);
        char *s = scalar(ld, item, at, "a string");
        ok = ok && s;
        if (s)
            items[n++] = s;
    }
    out->list = items;
    out->nlist = n;
    return ok;
}

/* Checks one value against its declared type and fills out. */
static bool load_param(loader *ld, const tl_param *def, struct fy_node *v, const char *path,
                       tl_param_value *out)
{
    char why[WHY_LEN];
    int rc = 0;
    *out = (tl_param_value){.name = def->name, .type = def->type};
    if (def->type == TL_PARAM_LIST)
        return load_list(ld, v, path, out);
    if (def->type == TL_PARAM_MAP)
        return is_null(v) || (expect_kind(ld, v, FYNT_MAPPING, path, "a mapping") &&
                              load_kvs(ld, v, path, &out->map, &out->nmap));
    static const char *const what[] = {"a string", "an integer", "true or false", "a duration"};
    out->str = scalar(ld, v, path, what[def->type]);
    if (!out->str)
        return false;
    bool b = false;
    if (def->type == TL_PARAM_INT)
        rc = tl_config_parse_int(out->str, INT64_MIN, INT64_MAX, &out->num, why, sizeof(why));
    else if (def->type == TL_PARAM_BOOL)
        rc = tl_config_parse_bool(out->str, &b, why, sizeof(why));
    else if (def->type == TL_PARAM_DURATION)
        rc = tl_config_parse_duration(out->str, &out->num, why, sizeof(why));
    if (def->type == TL_PARAM_BOOL)
        out->num = b;
    if (rc)
        tl_config_report(ld, node_pos(ld, v), path, "%s", why);
    return rc == 0;
}

static const tl_param *find_param(const tl_param *schema, const char *name)
{
    for (size_t i = 0; schema && schema[i].name; i++)
        if (strcmp(schema[i].name, name) == 0)
            return &schema[i];
    return NULL;
}

/* The names of a schema (and extra, when not NULL), for suggestions. */
static const char **schema_names(loader *ld, const tl_param *schema, const char *extra)
{
    size_t n = 0;
    while (schema && schema[n].name)
        n++;
    const char **names = tl_config_alloc(ld, (n + 2) * sizeof(*names));
    for (size_t i = 0; names && i < n; i++)
        names[i] = schema[i].name;
    if (names)
        names[n] = extra;
    return names;
}

/*
 * Checks an adapter's section against the adapter's parameter list: unknown keys,
 * wrong types, missing required keys. skip is a key the framework itself reads.
 */
static void load_params(loader *ld, struct fy_node *map, pos at, const char *path,
                        const tl_param *schema, const char *skip, tl_params *out)
{
    tl_param_value *v = tl_config_alloc(ld, (count_of(map) + 1) * sizeof(*v));
    const char **names = schema_names(ld, schema, skip);
    if (!v || !names)
        return;
    out->v = v;
    void *it = NULL;
    struct fy_node_pair *pair;
    while (map && (pair = fy_node_mapping_iterate(map, &it))) {
        char *key = key_text(ld, pair, path), sub[PATH_LEN];
        if (!key || (skip && strcmp(key, skip) == 0))
            continue;
        const tl_param *def = find_param(schema, key);
        if (!def) {
            unknown_key(ld, fy_node_pair_key(pair), path, key, names);
            continue;
        }
        join(sub, path, key);
        if (load_param(ld, def, fy_node_pair_value(pair), sub, &v[out->n]))
            out->n++;
    }
    for (size_t i = 0; schema && schema[i].name; i++)
        if (schema[i].required && !(map && lookup_key(map, schema[i].name)))
            tl_config_report(ld, at, path, "missing required key '%s'", schema[i].name);
}

/* ---------------------------------------------------------------- sections */

static void load_source(loader *ld, struct fy_node_pair *pair, tl_config_source *src)
{
    char path[PATH_LEN];
    join(path, "sources", src->name);
    struct fy_node *key = fy_node_pair_key(pair), *map = fy_node_pair_value(pair);
    pos at = pos_or(ld, map, node_pos(ld, key));
    src->line = node_pos(ld, key).line;
    src->params.section = src->name;
    if (!expect_kind(ld, map, FYNT_MAPPING, path, "a mapping"))
        return;
    if (!lookup_key(map, "type")) {
        tl_config_report(ld, at, path, "missing required key 'type'");
        return;
    }
    src->type = get_str(ld, map, path, "type");
    if (!src->type)
        return;
    src->ops = tl_registry_source(ld->reg, src->type);
    if (!src->ops) {
        char sub[PATH_LEN];
        join(sub, path, "type");
        tl_config_report(ld, node_pos(ld, lookup(map, "type")), sub, "unknown source type '%s'",
                         src->type);
        return;
    }
    load_params(ld, map, at, path, src->ops->params, "type", &src->params);
}

static void load_sources(loader *ld, struct fy_node *root)
{
    struct fy_node *map = lookup(root, "sources");
    if (!lookup_key(root, "sources"))
        return; /* reported as a missing required key */
    if (count_of(map) == 0 && (is_null(map) || fy_node_get_type(map) == FYNT_MAPPING)) {
        tl_config_report(ld, node_pos(ld, lookup_key(root, "sources")), "sources",
                         "no sources defined");
        return;
    }
    if (!expect_kind(ld, map, FYNT_MAPPING, "sources", "a mapping"))
        return;
    tl_config *cfg = ld->cfg;
    cfg->sources = tl_config_alloc(ld, (count_of(map) + 1) * sizeof(*cfg->sources));
    if (!cfg->sources)
        return;
    ld->sources_ok = true;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *name = key_text(ld, pair, "sources");
        if (!name)
            continue;
        tl_config_source *src = &cfg->sources[cfg->nsources++];
        src->name = name;
        load_source(ld, pair, src);
    }
}

static void load_sinks(loader *ld, struct fy_node *root)
{
    struct fy_node *map = get_map(ld, root, "", "sinks");
    tl_config *cfg = ld->cfg;
    cfg->sinks = map ? tl_config_alloc(ld, (count_of(map) + 1) * sizeof(*cfg->sinks)) : NULL;
    void *it = NULL;
    struct fy_node_pair *pair;
    while (cfg->sinks && (pair = fy_node_mapping_iterate(map, &it))) {
        char *scheme = key_text(ld, pair, "sinks"), path[PATH_LEN];
        if (!scheme)
            continue;
        join(path, "sinks", scheme);
        struct fy_node *key = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const tl_sink_ops *ops = tl_registry_sink(ld->reg, scheme);
        if (!ops) {
            tl_config_report(ld, node_pos(ld, key), path, "unknown sink scheme '%s'", scheme);
            continue;
        }
        if (!is_null(v) && !expect_kind(ld, v, FYNT_MAPPING, path, "a mapping"))
            continue;
        tl_config_sink *sink = &cfg->sinks[cfg->nsinks++];
        *sink = (tl_config_sink){.scheme = scheme, .ops = ops, .line = node_pos(ld, key).line};
        sink->params.section = scheme;
        load_params(ld, is_null(v) ? NULL : v, pos_or(ld, v, node_pos(ld, key)), path, ops->params,
                    NULL, &sink->params);
    }
}

/* A "SCHEME:ADDRESS" target whose scheme is a registered sink. */
static void load_target(loader *ld, struct fy_node *map, const char *path, const char *key,
                        tl_config_target *t)
{
    char *s = get_str(ld, map, path, key), at[PATH_LEN];
    if (!s)
        return;
    join(at, path, key);
    pos p = pos_or(ld, lookup(map, key), node_pos(ld, lookup_key(map, key)));
    char *colon = strchr(s, ':');
    if (!colon || colon == s || !colon[1]) {
        tl_config_report(ld, p, at, "expected a target \"SCHEME:ADDRESS\", got \"%s\"", s);
        return;
    }
    *colon = '\0';
    const tl_sink_ops *ops = tl_registry_sink(ld->reg, s);
    if (!ops) {
        tl_config_report(ld, p, at, "unknown sink scheme '%s' in target \"%s:%s\"", s, s,
                         colon + 1);
        return;
    }
    *t = (tl_config_target){s, colon + 1, ops};
}

static void load_route_source(loader *ld, struct fy_node *map, const char *path, tl_config_route *r)
{
    char *name = get_str(ld, map, path, "source"), at[PATH_LEN];
    if (!name || !ld->sources_ok)
        return;
    long i = tl_config_source_index(ld->cfg, name);
    if (i >= 0) {
        r->source = (size_t)i;
        return;
    }
    const char **names = tl_config_alloc(ld, (ld->cfg->nsources + 1) * sizeof(*names));
    for (size_t k = 0; names && k < ld->cfg->nsources; k++)
        names[k] = ld->cfg->sources[k].name;
    const char *near = names ? tl_config_suggest(name, names) : NULL;
    join(at, path, "source");
    tl_config_report(ld, node_pos(ld, lookup(map, "source")), at, "unknown source '%s'%s%s%s", name,
                     near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
}

static void load_route_handler(loader *ld, struct fy_node *map, const char *path,
                               tl_config_route *r)
{
    char at[PATH_LEN];
    r->handler = get_str(ld, map, path, "handler");
    if (!r->handler || tl_registry_handler(ld->reg, r->handler, &r->fn, &r->user) == 0)
        return;
    join(at, path, "handler");
    tl_config_report(ld, node_pos(ld, lookup(map, "handler")), at,
                     "no handler named '%s' is registered", r->handler);
}

static void load_on_stall(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const keys[] = {"reroute", NULL};
    char at[PATH_LEN];
    join(at, path, "on_stall");
    struct fy_node *map = get_map(ld, route, path, "on_stall");
    if (!map)
        return;
    check_keys(ld, map, at, keys);
    require(ld, map, pos_or(ld, map, node_pos(ld, lookup_key(route, "on_stall"))), at, keys);
    load_target(ld, map, at, "reroute", &r->on_stall);
}

static void load_on_error(loader *ld, struct fy_node *route, const char *path, tl_config_route *r)
{
    static const char *const keys[] = {"retries", "backoff", "then", NULL};
    char at[PATH_LEN];
    join(at, path, "on_error");
    struct fy_node *map = get_map(ld, route, path, "on_error");
    if (!map)
        return;
    check_keys(ld, map, at, keys);
    int64_t retries;
    if (get_int(ld, map, at, "retries", 0, 1000, &retries))
        r->retries = (unsigned)retries;
    get_duration(ld, map, at, "backoff", false, &r->backoff_ms);
    load_target(ld, map, at, "then", &r->on_error);
}

static void load_route(loader *ld, struct fy_node *map, size_t index, pos at, tl_config_route *r)
{
    static const char *const keys[] = {"source",   "handler",  "ordering", "inline", "timeout",
                                       "on_stall", "on_error", "params",   NULL};
    static const char *const required[] = {"source", "handler", NULL};
    static const char *const orders[] = {"partition", "key", "none", NULL};
    char path[PATH_LEN];
    join_index(path, "routes", index);
    *r = (tl_config_route){
        .source = SIZE_MAX, .timeout_ms = 30000, .backoff_ms = 100, .line = at.line};
    if (fy_node_get_type(map) != FYNT_MAPPING) {
        tl_config_report(ld, at, path, "expected a mapping, got %s", kind(map));
        return;
    }
    check_keys(ld, map, path, keys);
    require(ld, map, at, path, required);
    load_route_source(ld, map, path, r);
    load_route_handler(ld, map, path, r);
    r->ordering = (tl_ordering)get_enum(ld, map, path, "ordering", orders, TL_ORDER_PARTITION);
    get_bool(ld, map, path, "inline", &r->run_inline);
    get_duration(ld, map, path, "timeout", true, &r->timeout_ms);
    load_on_stall(ld, map, path, r);
    load_on_error(ld, map, path, r);
    struct fy_node *params = get_map(ld, map, path, "params");
    char sub[PATH_LEN];
    join(sub, path, "params");
    if (params)
        load_kvs(ld, params, sub, &r->params, &r->nparams);
}

static void load_routes(loader *ld, struct fy_node *root)
{
    struct fy_node *seq = lookup(root, "routes");
    if (!lookup_key(root, "routes"))
        return;
    pos key_at = node_pos(ld, lookup_key(root, "routes"));
    if (!is_null(seq) && !expect_kind(ld, seq, FYNT_SEQUENCE, "routes", "a list"))
        return;
    if (count_of(seq) == 0) {
        tl_config_report(ld, key_at, "routes", "no routes defined");
        return;
    }
    tl_config *cfg = ld->cfg;
    cfg->routes = tl_config_alloc(ld, (count_of(seq) + 1) * sizeof(*cfg->routes));
    void *it = NULL;
    struct fy_node *item;
    while (cfg->routes && (item = fy_node_sequence_iterate(seq, &it))) {
        load_route(ld, item, cfg->nroutes, pos_or(ld, item, key_at), &cfg->routes[cfg->nroutes]);
        cfg->nroutes++;
    }
}

/* A source nobody routes from could never settle its messages. */
static void check_sources_routed(loader *ld, struct fy_node *root)
{
    tl_config *cfg = ld->cfg;
    bool routes_ok = cfg->nroutes > 0;
    for (size_t r = 0; r < cfg->nroutes; r++)
        routes_ok = routes_ok && cfg->routes[r].source != SIZE_MAX;
    if (!ld->sources_ok || !routes_ok)
        return; /* a broken route may well be the one meant for the source */
    struct fy_node *map = lookup(root, "sources");
    for (size_t i = 0; i < cfg->nsources; i++) {
        bool used = false;
        for (size_t r = 0; r < cfg->nroutes; r++)
            used = used || cfg->routes[r].source == i;
        if (!used) {
            char path[PATH_LEN];
            join(path, "sources", cfg->sources[i].name);
            tl_config_report(ld, node_pos(ld, lookup_key(map, cfg->sources[i].name)), path,
                             "no route reads from this source");
        }
    }
}

static void load_loop(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"workers", "max_in_flight", "drain_timeout",
                                       "max_replaced_workers", NULL};
    struct fy_node *map = get_map(ld, root, "", "loop");
    if (!map)
        return;
    check_keys(ld, map, "loop", keys);
    tl_config *cfg = ld->cfg;
    int64_t v;
    if (get_int(ld, map, "loop", "workers", 1, TL_CONFIG_MAX_WORKERS, &v))
        cfg->workers = (unsigned)v;
    if (get_int(ld, map, "loop", "max_in_flight", 1, 100000000, &v))
        cfg->max_in_flight = (size_t)v;
    get_duration(ld, map, "loop", "drain_timeout", false, &cfg->drain_timeout_ms);
    if (get_int(ld, map, "loop", "max_replaced_workers", 0, TL_CONFIG_MAX_WORKERS, &v))
        cfg->max_replaced_workers = (unsigned)v;
}

static void load_admin(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"listen", NULL};
    struct fy_node *map = get_map(ld, root, "", "admin");
    if (!map)
        return;
    check_keys(ld, map, "admin", keys);
    require(ld, map, pos_or(ld, map, node_pos(ld, lookup_key(root, "admin"))), "admin", keys);
    char *listen = get_str(ld, map, "admin", "listen");
    if (!listen)
        return;
    char *colon = strrchr(listen, ':');
    int64_t port;
    char why[WHY_LEN];
    if (!colon || tl_config_parse_int(colon + 1, 0, 65535, &port, why, sizeof(why))) {
        tl_config_report(ld, node_pos(ld, lookup(map, "listen")), "admin.listen",
                         "expected HOST:PORT, got \"%s\"", listen);
        return;
    }
    ld->cfg->admin_listen = listen;
}

static void load_log(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"format", "level", NULL};
    static const char *const formats[] = {"logfmt", "json", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    struct fy_node *map = get_map(ld, root, "", "log");
    if (!map)
        return;
    check_keys(ld, map, "log", keys);
    ld->cfg->log_format = (tl_log_format)get_enum(ld, map, "log", "format", formats, TL_LOG_LOGFMT);
    ld->cfg->log_level = (tl_log_level)get_enum(ld, map, "log", "level", levels, TL_LOG_INFO);
}

/* ---------------------------------------------------------------- plugins and the root */

static void load_plugins(loader *ld, struct fy_node *root)
{
    struct fy_node *seq = lookup(root, "plugins");
    if (is_null(seq) || !expect_kind(ld, seq, FYNT_SEQUENCE, "plugins", "a list"))
        return;
    tl_config *cfg = ld->cfg;
    cfg->plugins = tl_config_alloc(ld, (count_of(seq) + 1) * sizeof(*cfg->plugins));
    void *it = NULL;
    struct fy_node *item;
    while (cfg->plugins && (item = fy_node_sequence_iterate(seq, &it))) {
        char path[PATH_LEN];
        join_index(path, "plugins", cfg->nplugins);
        tl_config_plugin *pl = &cfg->plugins[cfg->nplugins++];
        pl->path = scalar(ld, item, path, "a path");
        if (pl->path)
            tl_config_open_plugin(ld, node_pos(ld, item), path, pl);
    }
}

void tl_config_load_root(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"service", "loop",  "sources", "sinks", "routes",
                                       "plugins", "admin", "log",     NULL};
    static const char *const required[] = {"service", "sources", "routes", NULL};
    if (!root || is_null(root)) {
        tl_config_report(ld, (pos){1, 1}, "", "the document is empty");
        return;
    }
    if (!expect_kind(ld, root, FYNT_MAPPING, "", "a mapping at the top"))
        return;
    check_keys(ld, root, "", keys);
    require(ld, root, (pos){1, 1}, "", required);
    /* Plugins first: they may register what the rest of the file refers to. */
    load_plugins(ld, root);
    ld->cfg->service = get_str(ld, root, "", "service");
    load_loop(ld, root);
    load_sources(ld, root);
    load_sinks(ld, root);
    load_routes(ld, root);
    check_sources_routed(ld, root);
    load_admin(ld, root);
    load_log(ld, root);
}
