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
#include <arpa/inet.h>
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* ---------------------------------------------------------------- addresses */

/* A host name: dot-separated labels of letters, digits, '_' and inner hyphens, 1 to 63
 * long, 253 in all; one made of digits and dots only would be an IPv4 address. */
static bool host_name(const char *h, size_t n)
{
    size_t label = 0;
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_'; /* not in DNS, but in container and /etc/hosts names */
        if (!(alnum || (c == '-' && label > 0)) || ++label > 63)
            return false;
        numeric = numeric && c >= '0' && c <= '9';
    }
    return n > 0 && n <= 253 && label > 0 && h[n - 1] != '-' && !numeric;
}

/* Checks "HOST:PORT" as the admin endpoint binds it: HOST empty (loopback), "*" (every
 * address), an IPv4 address, "[IPv6]" or a host name; PORT 0 to 65535, digits only. */
static bool host_port(const char *s, char *why, size_t whylen)
{
    const char *colon = strrchr(s, ':');
    if (!colon) {
        snprintf(why, whylen, "no ':' before the port");
        return false;
    }
    const char *port = colon + 1;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || port[digits] || digits > 5 || atol(port) > 65535) {
        snprintf(why, whylen, "the port must be a number from 0 to 65535");
        return false;
    }
    char host[256];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof(host)) {
        snprintf(why, whylen, "the host is too long");
        return false;
    }
    memcpy(host, s, n);
    host[n] = '\0';
    unsigned char addr[16];
    bool ok = n == 0 || strcmp(host, "*") == 0 || inet_pton(AF_INET, host, addr) == 1;
    if (!ok && n > 2 && host[0] == '[' && host[n - 1] == ']') {
        host[n - 1] = '\0';
        ok = inet_pton(AF_INET6, host + 1, addr) == 1;
    } else if (!ok) {
        ok = host_name(host, n);
    }
    if (!ok)
        snprintf(why, whylen, "the host must be an IPv4 address, [IPv6], a host name, * or empty");
    return ok;
}

/* ---------------------------------------------------------------- sections */

/* shards: auto, one loop per online CPU (at most TL_CONFIG_MAX_SHARDS). */
static int64_t auto_shards(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > TL_CONFIG_MAX_SHARDS ? TL_CONFIG_MAX_SHARDS : n;
}

static void load_loop(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"workers",
                                       "max_in_flight",
                                       "drain_timeout",
                                       "max_replaced_workers",
                                       "kept_back_mb",
                                       "shards",
                                       NULL};
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
    if (tl_schema_get_int(ld, map, "loop", "kept_back_mb", 0, 65536, &v))
        cfg->kept_back_mb = (size_t)v;
    if (tl_schema_get_int_or(ld, map, "loop", "shards", 1, TL_CONFIG_MAX_SHARDS, "auto",
                             auto_shards(), &v))
        cfg->shards = (unsigned)v;
}

/* An admin section without `listen` listens here: loopback, never every address. */
#define ADMIN_DEFAULT_LISTEN "127.0.0.1:9464"

static void load_admin(loader *ld, struct fy_node *root)
{
    static const char *const keys[] = {"listen", "token", "token_file", NULL};
    struct fy_node *map = tl_schema_get_map(ld, root, "", "admin");
    if (!map)
        return;
    tl_schema_check_keys(ld, map, "admin", keys);
    tl_schema_load_admin_token(ld, map);
    char *listen = tl_schema_lookup_key(map, "listen")
                       ? tl_schema_get_str(ld, map, "admin", "listen")
                       : tl_config_strdup(ld, ADMIN_DEFAULT_LISTEN);
    if (!listen)
        return;
    char why[WHY_LEN];
    if (!host_port(listen, why, sizeof(why))) {
        struct fy_node *v = tl_schema_lookup(map, "listen");
        tl_config_report(ld, tl_config_node_pos(ld, v), "admin.listen",
                         "expected HOST:PORT, got \"%s\": %s", tl_schema_shown(ld, v, NULL, listen),
                         why);
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
    size_t n = tl_schema_count_of(seq);
    cfg->plugins = tl_config_alloc(ld, (n + 1) * sizeof(*cfg->plugins));
    ld->plugins_shown = tl_config_alloc(ld, (n + 1) * sizeof(*ld->plugins_shown));
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0;
         cfg->plugins && ld->plugins_shown && (item = fy_node_sequence_iterate(seq, &it)); i++) {
        char path[PATH_LEN];
        tl_schema_join_index(path, "plugins", i);
        tl_config_plugin *pl = &cfg->plugins[cfg->nplugins];
        pl->path = tl_schema_scalar(ld, item, path, NULL, "a path");
        if (!pl->path)
            continue;
        const char *shown = tl_schema_shown(ld, item, NULL, pl->path);
        ld->plugins_shown[cfg->nplugins++] = shown;
        tl_config_open_plugin(ld, tl_config_node_pos(ld, item), path, shown, pl);
    }
    cfg->plugins_unopened = ld->no_plugin_code && cfg->nplugins > 0;
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
    tl_schema_check_sources_routed(ld);
    load_admin(ld, root);
    load_log(ld, root);
}
