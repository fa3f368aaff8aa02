/*
 * The sections whose keys the adapters declare: sources (by type) and sinks (by
 * scheme), each checked against the parameter list its adapter registered.
 *
 * In the loader's chain: called by schema.c; calls schema_nodes.c, loader.c and
 * interpolate.c, nothing above.
 */
#include <libfyaml.h>
#include <string.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* ---------------------------------------------------------------- adapter params */

static bool load_list(loader *ld, struct fy_node *seq, const char *path, tl_param_value *out)
{
    if (fy_node_get_type(seq) != FYNT_SEQUENCE) {
        tl_config_report(ld, tl_config_node_pos(ld, seq), path,
                         "expected a list, got %s (write [item, ...])", tl_schema_kind(seq));
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
        char *s = tl_schema_scalar(ld, item, at, "a string");
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
        return tl_schema_is_null(v) ||
               (tl_schema_expect_kind(ld, v, FYNT_MAPPING, path, "a mapping") &&
                tl_schema_load_kvs(ld, v, path, &out->map, &out->nmap));
    static const char *const what[] = {"a string", "an integer", "true or false", "a duration"};
    out->str = tl_schema_scalar(ld, v, path, what[def->type]);
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
        tl_config_report(ld, tl_config_node_pos(ld, v), path, "%s", why);
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
        if (load_param(ld, def, fy_node_pair_value(pair), sub, &v[out->n]))
            out->n++;
    }
    for (size_t i = 0; schema && schema[i].name; i++)
        if (schema[i].required && !(map && tl_schema_lookup_key(map, schema[i].name)))
            tl_config_report(ld, at, path, "missing required key '%s'", schema[i].name);
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
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "type")), sub,
                         "unknown source type '%s'", src->type);
        return;
    }
    load_params(ld, map, at, path, src->ops->params, "type", &src->params);
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
    cfg->sources = tl_config_alloc(ld, (tl_schema_count_of(map) + 1) * sizeof(*cfg->sources));
    if (!cfg->sources)
        return;
    ld->sources_ok = true;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *name = tl_schema_key_text(ld, pair, "sources");
        if (!name)
            continue;
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
        if (!ops) {
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
        load_params(ld, tl_schema_is_null(v) ? NULL : v,
                    tl_schema_pos_or(ld, v, tl_config_node_pos(ld, key)), path, ops->params, NULL,
                    &sink->params);
    }
}
