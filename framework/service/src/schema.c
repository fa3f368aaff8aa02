/*
 * The schema of a service config, checked node by node over libfyaml's document tree:
 * the top level and its small sections (loop, admin, log, plugins) here, sources and
 * sinks in schema_adapters.c, routes in schema_routes.c.
 *
 * Every check reports and carries on, so one run lists all the problems of a file. A
 * section broken beyond checking (a list where a mapping belongs, say) is reported
 * once and skipped. Paths in messages read like the file: sources.orders.brokers,
 * routes[0].timeout.
 *
 * In the loader's chain: called by config.c (tl_config_load_root); calls the schema
 * files, plugins.c, loader.c and interpolate.c, all below it.
 */
#include <libfyaml.h>
#include <string.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* ---------------------------------------------------------------- sections */

static void load_loop(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"workers", "max_in_flight", "drain_timeout",
                                       "max_replaced_workers", NULL};
    struct fy_node *map = tl_schema_get_map(ld, root, "", "loop");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, "loop", keys);
    tl_config *cfg = ld->cfg;
    int64_t v;
    if (tl_schema_get_int(ld, map, "loop", "workers", 1, TL_CONFIG_MAX_WORKERS, &v))
        cfg->workers = (unsigned)v;
    if (tl_schema_get_int(ld, map, "loop", "max_in_flight", 1, 100000000, &v))
        cfg->max_in_flight = (size_t)v;
    tl_schema_get_duration(ld, map, "loop", "drain_timeout", false, &cfg->drain_timeout_ms);
    if (tl_schema_get_int(ld, map, "loop", "max_replaced_workers", 0, TL_CONFIG_MAX_WORKERS, &v))
        cfg->max_replaced_workers = (unsigned)v;
}

static void load_admin(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"listen", NULL};
    struct fy_node *map = tl_schema_get_map(ld, root, "", "admin");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, "admin", keys);
    tl_schema_require(
        ld, map,
        tl_schema_pos_or(ld, map, tl_config_node_pos(ld, tl_schema_lookup_key(root, "admin"))),
        "admin", keys);
    char *listen = tl_schema_get_str(ld, map, "admin", "listen");
    if (!listen)
        return;
    char *colon = strrchr(listen, ':');
    int64_t port;
    char why[WHY_LEN];
    if (!colon || tl_config_parse_int(colon + 1, 0, 65535, &port, why, sizeof(why))) {
        tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "listen")),
                         "admin.listen", "expected HOST:PORT, got \"%s\"", listen);
        return;
    }
    ld->cfg->admin_listen = listen;
}

static void load_log(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"format", "level", NULL};
    static const char *const formats[] = {"logfmt", "json", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    struct fy_node *map = tl_schema_get_map(ld, root, "", "log");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, "log", keys);
    ld->cfg->log_format =
        (tl_log_format)tl_schema_get_enum(ld, map, "log", "format", formats, TL_LOG_LOGFMT);
    ld->cfg->log_level =
        (tl_log_level)tl_schema_get_enum(ld, map, "log", "level", levels, TL_LOG_INFO);
}

/* ---------------------------------------------------------------- plugins and the root */

static void load_plugins(loader *ld, struct fy_node *root)
{
    struct fy_node *seq = tl_schema_lookup(root, "plugins");
    if (tl_schema_is_null(seq) ||
        !tl_schema_expect_kind(ld, seq, FYNT_SEQUENCE, "plugins", "a list"))
        return;
    tl_config *cfg = ld->cfg;
    cfg->plugins = tl_config_alloc(ld, (tl_schema_count_of(seq) + 1) * sizeof(*cfg->plugins));
    void *it = NULL;
    struct fy_node *item;
    while (cfg->plugins && (item = fy_node_sequence_iterate(seq, &it))) {
        char path[PATH_LEN];
        tl_schema_join_index(path, "plugins", cfg->nplugins);
        tl_config_plugin *pl = &cfg->plugins[cfg->nplugins++];
        pl->path = tl_schema_scalar(ld, item, path, "a path");
        if (pl->path)
            tl_config_open_plugin(ld, tl_config_node_pos(ld, item), path, pl);
    }
}

void tl_config_load_root(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"service", "loop",  "sources", "sinks", "routes",
                                       "plugins", "admin", "log",     NULL};
    static const char *const required[] = {"service", "sources", "routes", NULL};
    if (!root || tl_schema_is_null(root)) {
        tl_config_report(ld, (pos){1, 1}, "", "the document is empty");
        return;
    }
    if (!tl_schema_expect_kind(ld, root, FYNT_MAPPING, "", "a mapping at the top"))
        return;
    tl_schema_check_keys(ld, root, "", keys);
    tl_schema_require(ld, root, (pos){1, 1}, "", required);
    /* Plugins first: they may register what the rest of the file refers to. */
    load_plugins(ld, root);
    ld->cfg->service = tl_schema_get_str(ld, root, "", "service");
    load_loop(ld, root);
    tl_schema_load_sources(ld, root);
    tl_schema_load_sinks(ld, root);
    tl_schema_load_routes(ld, root);
    tl_schema_check_sources_routed(ld, root);
    load_admin(ld, root);
    load_log(ld, root);
}
