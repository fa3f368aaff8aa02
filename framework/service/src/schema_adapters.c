/*
 * The sections whose keys the adapters declare: sources (by type) and sinks (by
 * scheme), each checked against the parameter list its adapter registered; and a
 * route's params, against its handler's (tl_register_handler_params).
 *
 * In the loader's chain: called by schema.c; calls schema_nodes.c, loader.c and
 * interpolate.c, nothing above.
 */
#include <libfyaml.h>
#include <stdio.h>
#include <string.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* ---------------------------------------------------------------- adapter params */

/* A list of strings; def (NULL for a section nothing declares) may require an item. */
static bool load_list(loader *ld, const tl_param *def, struct fy_node *seq, pos where,
                      const char *path, const char *key, tl_param_value *out)
{
    if (fy_node_get_type(seq) != FYNT_SEQUENCE) {
        tl_config_report(ld, tl_config_node_pos(ld, seq), path,
                         "expected a list, got %s (write [item, ...])", tl_schema_kind(seq));
        return false;
    }
    if (def && def->required && tl_schema_count_of(seq) == 0) {
        tl_config_report(ld, where, path, "must not be empty: give at least one item");
        return false;
    }
    const char **items = tl_config_alloc(ld, (tl_schema_count_of(seq) + 1) * sizeof(*items));
    if (!items)
        return false;
    void *it = NULL;
    struct fy_node *item;
    size_t i = 0, n = 0;
    bool ok = true;
    while ((item = fy_node_sequence_iterate(seq, &it))) {
        char at[PATH_LEN];
        tl_schema_join_index(at, path, i++);
        char *s = tl_schema_scalar(ld, item, at, key, "a string");
        ok = ok && s;
        if (s)
            items[n++] = s;
    }
    out->list = items;
    out->nlist = n;
    return ok;
}

/* Checks a scalar value (text, quoted as shown) against def; why says what is wrong. */
static int check_scalar(const tl_param *def, const tl_param_range *ranges, const char *text,
                        const char *shown, tl_param_value *out, char *why, size_t whylen)
{
    bool b = false;
    int rc = 0;
    int64_t min, max;
    tl_param_bounds(def, ranges, &min, &max);
    switch (def->type) {
    case TL_PARAM_STRING:
        tl_schema_empty_why(text, shown, why, whylen);
        return *text ? 0 : TL_ECONFIG;
    case TL_PARAM_INT:
        return tl_config_parse_int_shown(text, shown, min, max, &out->num, why, whylen);
    case TL_PARAM_BOOL:
        rc = tl_config_parse_bool_shown(text, shown, &b, why, whylen);
        out->num = b;
        return rc;
    default:
        rc = tl_config_parse_duration_shown(text, shown, &out->num, why, whylen);
        if (rc == 0 && (out->num < min || out->num > max)) {
            snprintf(why, whylen, "duration \"%s\" is out of range (%lldms to %lldms)", shown,
                     (long long)min, (long long)max);
            rc = TL_ECONFIG;
        }
        return rc;
    }
}

/* Checks one value against its declared type and fills out; where is its place (its
 * key's, for an empty collection). */
static bool load_param(loader *ld, const tl_param *def, const tl_param_range *ranges,
                       struct fy_node *v, pos where, const char *path, tl_param_value *out)
{
    *out = (tl_param_value){.name = def->name, .type = def->type};
    if (def->type == TL_PARAM_LIST)
        return load_list(ld, def, v, where, path, def->name, out);
    if (def->type == TL_PARAM_MAP)
        return tl_schema_is_null(v) ||
               (tl_schema_expect_kind(ld, v, FYNT_MAPPING, path, "a mapping") &&
                tl_schema_load_kvs(ld, v, path, &out->map, &out->nmap));
    static const char *const what[] = {"a string", "an integer", "true or false", "a duration"};
    out->str = tl_schema_scalar(ld, v, path, def->name, what[def->type]);
    if (!out->str)
        return false;
    char why[WHY_LEN];
    int rc = check_scalar(def, ranges, out->str, tl_schema_shown(ld, v, def->name, out->str), out,
                          why, sizeof(why));
    if (rc)
        tl_config_report(ld, where, path, "%s", why);
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
                        const tl_param *schema, const tl_param_range *ranges, const char *skip,
                        tl_params *out)
{
    tl_param_value *v = tl_config_alloc(ld, (tl_schema_count_of(map) + 1) * sizeof(*v));
    const char **names = schema_names(ld, schema, skip);
    if (!v || !names)
        return;
    out->v = v;
    void *it = NULL;
    struct fy_node_pair *pair;
    while (map && (pair = fy_node_mapping_iterate(map, &it))) {
        char *key = tl_schema_key_text(ld, pair, path), sub[PATH_LEN];
        if (!key || (skip && strcmp(key, skip) == 0))
            continue;
        const tl_param *def = find_param(schema, key);
        if (!def) {
            tl_schema_unknown_key(ld, fy_node_pair_key(pair), path, key, names);
            continue;
        }
        tl_schema_join(sub, path, key);
        struct fy_node *value = fy_node_pair_value(pair);
        pos where = tl_schema_pos_or(ld, value, tl_config_node_pos(ld, fy_node_pair_key(pair)));
        if (load_param(ld, def, ranges, value, where, sub, &v[out->n]))
            out->n++;
    }
    for (size_t i = 0; schema && schema[i].name; i++)
        if (schema[i].required && !(map && tl_schema_lookup_key(map, schema[i].name)))
            tl_config_report(ld, at, path, "missing required key '%s'", schema[i].name);
}

/*
 * A section of an adapter a skipped plugin is taken to provide (no_plugin_code): its
 * keys cannot be checked, only kept for the dump, each by its shape.
 */
static void load_unchecked(loader *ld, struct fy_node *map, const char *path, const char *skip,
                           tl_params *out)
{
    tl_param_value *v = tl_config_alloc(ld, (tl_schema_count_of(map) + 1) * sizeof(*v));
    out->v = v;
    void *it = NULL;
    struct fy_node_pair *pair;
    while (v && map && (pair = fy_node_mapping_iterate(map, &it))) {
        char *key = tl_schema_key_text(ld, pair, path), sub[PATH_LEN];
        if (!key || (skip && strcmp(key, skip) == 0))
            continue;
        tl_schema_join(sub, path, key);
        struct fy_node *value = fy_node_pair_value(pair);
        tl_param_value *pv = &v[out->n];
        *pv = (tl_param_value){.name = key, .type = TL_PARAM_STRING};
        bool ok;
        if (!tl_schema_is_null(value) && fy_node_get_type(value) == FYNT_SEQUENCE) {
            pv->type = TL_PARAM_LIST;
            ok = load_list(ld, NULL, value, tl_config_node_pos(ld, value), sub, key, pv);
        } else if (!tl_schema_is_null(value) && fy_node_get_type(value) == FYNT_MAPPING) {
            pv->type = TL_PARAM_MAP;
            ok = tl_schema_load_kvs(ld, value, sub, &pv->map, &pv->nmap);
        } else {
            ok = (pv->str = tl_schema_scalar(ld, value, sub, key, "a scalar")) != NULL;
        }
        out->n += ok;
    }
}

/* ---------------------------------------------------------------- adapter checks */

/* A section an adapter's check op looks at, and where its values are. */
typedef struct checked {
    loader *ld;
    struct fy_node *map; /* the section (NULL: none) */
    const char *path;
    pos at;                  /* for what has no value of its own */
    const tl_params *params; /* the section's values */
    struct fy_node *addr;    /* a target's node, when the op looks at an address */
    const char *address;
} checked;

/* tl_param_report_fn: reports at the value the adapter names, never quoting a secret or
 * what a variable held. */
static void report_checked(void *rep, const char *name, const char *key, const char *why)
{
    checked *c = rep;
    if (!name) {
        tl_schema_report_value(c->ld, tl_schema_pos_or(c->ld, c->addr, c->at), c->path, c->addr,
                               NULL, c->address, why);
        return;
    }
    char sub[PATH_LEN], sub_key[PATH_LEN];
    tl_schema_join(sub, c->path, name);
    struct fy_node *n = c->map ? tl_schema_lookup(c->map, name) : NULL;
    const tl_param_value *v = tl_params_get(c->params, name);
    pos p = tl_schema_pos_or(c->ld, n, c->at);
    const char *value = v ? v->str : NULL;
    if (key) {
        tl_schema_join(sub_key, sub, key);
        struct fy_node *kn =
            n && fy_node_get_type(n) == FYNT_MAPPING ? tl_schema_lookup(n, key) : NULL;
        for (size_t i = 0; v && i < v->nmap; i++)
            if (strcmp(v->map[i].key, key) == 0)
                value = v->map[i].value;
        tl_schema_report_value(c->ld, tl_schema_pos_or(c->ld, kn, p), sub_key, kn, key, value, why);
        return;
    }
    tl_schema_report_value(c->ld, p, sub, n, name, value, why);
}

/* Runs a source's check op on a section that loaded without an error of its own. */
static void check_source(loader *ld, const tl_config_source *src, struct fy_node *map, pos at,
                         const char *path)
{
    checked c = {.ld = ld, .map = map, .path = path, .at = at, .params = &src->params};
    src->ops->check(&src->params, report_checked, &c);
}

void tl_schema_check_address(loader *ld, const tl_sink_ops *ops, struct fy_node *n, pos p,
                             const char *path, const char *address)
{
    if (!ops || !ops->check)
        return;
    checked c = {.ld = ld, .path = path, .at = p, .addr = n, .address = address};
    ops->check(address, NULL, report_checked, &c);
}

/* ---------------------------------------------------------------- handler params */

/* A route's params as a handler's check op sees them. */
typedef struct route_params {
    loader *ld;
    struct fy_node *map; /* NULL: the route has no params */
    const char *path;
    pos at;
    const tl_config_route *r;
} route_params;

/* tl_param_report_fn for a handler's check: at the value of the param it names. */
static void report_param(void *rep, const char *name, const char *key, const char *why)
{
    (void)key;
    route_params *c = rep;
    const char *value = NULL;
    for (size_t i = 0; name && i < c->r->nparams; i++)
        if (strcmp(c->r->params[i].key, name) == 0)
            value = c->r->params[i].value;
    char sub[PATH_LEN];
    if (name)
        tl_schema_join(sub, c->path, name);
    struct fy_node *n = c->map && name ? tl_schema_lookup(c->map, name) : NULL;
    tl_schema_report_value(c->ld, tl_schema_pos_or(c->ld, n, c->at), name ? sub : c->path, n, name,
                           value, why);
}

/* "a, b and c" of the names of a declaration, or "none". */
static const char *param_list(loader *ld, const tl_param *params)
{
    char text[WHY_LEN] = "";
    size_t n = 0, len = 0;
    while (params[n].name)
        n++;
    for (size_t i = 0; i < n && len < sizeof(text); i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s",
                                i == 0       ? ""
                                : i + 1 == n ? " and "
                                             : ", ",
                                params[i].name);
    return n ? tl_config_strndup(ld, text, strlen(text)) : "none";
}

void tl_schema_check_handler_params(loader *ld, struct fy_node *map, pos at, const char *path,
                                    const char *handler, const tl_handler_params *decl,
                                    const tl_config_route *r, bool route_clean)
{
    size_t errors = ld->nerrors;
    const char **names = schema_names(ld, decl->params, NULL);
    void *it = NULL;
    struct fy_node_pair *pair;
    size_t i = 0;
    while (names && map && (pair = fy_node_mapping_iterate(map, &it))) {
        char *key = tl_schema_key_text(ld, pair, path), sub[PATH_LEN];
        if (!key)
            continue;
        const tl_param *def = find_param(decl->params, key);
        tl_schema_join(sub, path, key);
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        if (!def) {
            const char *near = tl_config_suggest(key, names);
            if (near)
                tl_config_report(ld, tl_config_node_pos(ld, k), sub,
                                 "unknown key '%s' (did you mean '%s'?)", key, near);
            else
                tl_config_report(ld, tl_config_node_pos(ld, k), sub,
                                 "unknown key '%s': handler '%s' takes %s", key, handler,
                                 param_list(ld, decl->params));
            continue;
        }
        /* The value loaded as r->params[j] when it was a scalar (they are in file order). */
        size_t j = i;
        while (j < r->nparams && strcmp(r->params[j].key, key) != 0)
            j++;
        if (j == r->nparams)
            continue; /* not a scalar: reported already */
        i = j;
        char why[WHY_LEN];
        tl_param_value out;
        if (check_scalar(def, decl->ranges, r->params[i].value,
                         tl_schema_shown(ld, v, key, r->params[i].value), &out, why,
                         sizeof(why)) != 0)
            tl_config_report(ld, tl_schema_pos_or(ld, v, tl_config_node_pos(ld, k)), sub, "%s",
                             why);
    }
    for (const tl_param *p = decl->params; p->name; p++)
        if (p->required && !(map && tl_schema_lookup_key(map, p->name)))
            tl_config_report(ld, at, path, "missing required key '%s' (handler '%s')", p->name,
                             handler);
    if (!decl->check || !route_clean || ld->nerrors != errors)
        return;
    const char **outputs = tl_config_alloc(ld, (r->noutputs + 1) * sizeof(*outputs));
    for (size_t o = 0; outputs && o < r->noutputs; o++)
        outputs[o] = r->outputs[o].name;
    route_params c = {.ld = ld, .map = map, .path = path, .at = at, .r = r};
    if (outputs)
        decl->check(r->params, r->nparams, outputs, r->noutputs, report_param, &c);
}

/* ---------------------------------------------------------------- sections */

static void load_source(loader *ld, struct fy_node_pair *pair, tl_config_source *src)
{
    char path[PATH_LEN];
    tl_schema_join(path, "sources", src->name);
    struct fy_node *key = fy_node_pair_key(pair), *map = fy_node_pair_value(pair);
    pos at = tl_schema_pos_or(ld, map, tl_config_node_pos(ld, key));
    src->line = tl_config_node_pos(ld, key).line;
    src->params.section = src->name;
    if (!tl_schema_expect_kind(ld, map, FYNT_MAPPING, path, "a mapping"))
        return;
    if (!tl_schema_lookup_key(map, "type")) {
        tl_config_report(ld, at, path, "missing required key 'type'");
        return;
    }
    src->type = tl_schema_get_str(ld, map, path, "type");
    if (!src->type)
        return;
    src->ops = tl_registry_source(ld->reg, src->type);
    if (!src->ops) {
        char sub[PATH_LEN];
        tl_schema_join(sub, path, "type");
        struct fy_node *type = tl_schema_lookup(map, "type");
        if (tl_schema_from_plugins(ld, tl_config_node_pos(ld, type), sub, "source type", src->type))
            load_unchecked(ld, map, path, "type", &src->params);
        else
            tl_config_report(ld, tl_config_node_pos(ld, type), sub, "unknown source type '%s'",
                             tl_schema_shown(ld, type, NULL, src->type));
        return;
    }
    size_t errors = ld->nerrors;
    load_params(ld, map, at, path, src->ops->params, src->ops->ranges, "type", &src->params);
    if (src->ops->check && ld->nerrors == errors)
        check_source(ld, src, map, at, path);
}

void tl_schema_load_sources(loader *ld, struct fy_node *root)
{
    struct fy_node *map = tl_schema_lookup(root, "sources");
    if (!tl_schema_lookup_key(root, "sources"))
        return; /* reported as a missing required key */
    if (tl_schema_count_of(map) == 0 &&
        (tl_schema_is_null(map) || fy_node_get_type(map) == FYNT_MAPPING)) {
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup_key(root, "sources")),
                         "sources", "no sources defined");
        return;
    }
    if (!tl_schema_expect_kind(ld, map, FYNT_MAPPING, "sources", "a mapping"))
        return;
    tl_config *cfg = ld->cfg;
    size_t n = tl_schema_count_of(map);
    cfg->sources = tl_config_alloc(ld, (n + 1) * sizeof(*cfg->sources));
    ld->source_at = tl_config_alloc(ld, (n + 1) * sizeof(*ld->source_at));
    if (!cfg->sources || !ld->source_at)
        return;
    ld->sources_ok = true;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *name = tl_schema_key_text(ld, pair, "sources");
        if (!name)
            continue;
        ld->source_at[cfg->nsources] = tl_config_node_pos(ld, fy_node_pair_key(pair));
        tl_config_source *src = &cfg->sources[cfg->nsources++];
        src->name = name;
        load_source(ld, pair, src);
    }
}

void tl_schema_load_sinks(loader *ld, struct fy_node *root)
{
    struct fy_node *map = tl_schema_get_map(ld, root, "", "sinks");
    tl_config *cfg = ld->cfg;
    cfg->sinks =
        map ? tl_config_alloc(ld, (tl_schema_count_of(map) + 1) * sizeof(*cfg->sinks)) : NULL;
    void *it = NULL;
    struct fy_node_pair *pair;
    while (cfg->sinks && (pair = fy_node_mapping_iterate(map, &it))) {
        char *scheme = tl_schema_key_text(ld, pair, "sinks"), path[PATH_LEN];
        if (!scheme)
            continue;
        tl_schema_join(path, "sinks", scheme);
        struct fy_node *key = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const tl_sink_ops *ops = tl_registry_sink(ld->reg, scheme);
        bool unchecked = !ops && tl_schema_from_plugins(ld, tl_config_node_pos(ld, key), path,
                                                        "sink scheme", scheme);
        if (!ops && !unchecked) {
            tl_config_report(ld, tl_config_node_pos(ld, key), path, "unknown sink scheme '%s'",
                             scheme);
            continue;
        }
        if (!tl_schema_is_null(v) && !tl_schema_expect_kind(ld, v, FYNT_MAPPING, path, "a mapping"))
            continue;
        tl_config_sink *sink = &cfg->sinks[cfg->nsinks++];
        *sink = (tl_config_sink){
            .scheme = scheme, .ops = ops, .line = tl_config_node_pos(ld, key).line};
        sink->params.section = scheme;
        struct fy_node *section = tl_schema_is_null(v) ? NULL : v;
        pos at = tl_schema_pos_or(ld, v, tl_config_node_pos(ld, key));
        size_t errors = ld->nerrors;
        if (unchecked)
            load_unchecked(ld, section, path, NULL, &sink->params);
        else
            load_params(ld, section, at, path, ops->params, ops->ranges, NULL, &sink->params);
        if (!unchecked && ops->check && ld->nerrors == errors) {
            checked c = {.ld = ld, .map = section, .path = path, .at = at, .params = &sink->params};
            ops->check(NULL, &sink->params, report_checked, &c);
        }
    }
}
