/*
 * The dump of a loaded config back to YAML (tl_config_dump), with secrets masked: the
 * values of keys whose names say secret (tl_config_is_secret), and the password of any
 * URL in any string ("scheme://user:*****@host").
 *
 * The dump is meant to load again: strings are double-quoted with '$' doubled, so they
 * are not interpolated twice.
 *
 * In the loader's chain: a leaf beside it. It reads a finished tl_config and calls
 * nothing else of the loader but secrets.c.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

#define MASK TL_CONFIG_MASK

/* ---------------------------------------------------------------- dump */

/* The inside of a double-quoted YAML string; '$' doubled so it loads back unchanged,
 * URL passwords masked. */
static void put_escaped(FILE *out, const char *s)
{
    char small[256], *masked = small;
    size_t n = tl_config_mask_urls(s, small, sizeof(small));
    if (n >= sizeof(small) && (masked = malloc(n + 1)) != NULL)
        tl_config_mask_urls(s, masked, n + 1);
    /* Out of memory for a long one: it is left out rather than printed unmasked. */
    for (const unsigned char *p = (const unsigned char *)(masked ? masked : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else if (*p == '$')
            fputs("$$", out);
        else
            fputc(*p, out);
    }
    if (masked != small)
        free(masked);
}

static void put_str(FILE *out, const char *s)
{
    fputc('"', out);
    put_escaped(out, s);
    fputc('"', out);
}

/* A target as one string, so that a URL spanning scheme and address is masked whole. */
static void put_target(FILE *out, const tl_config_target *t)
{
    size_t n = strlen(t->scheme) + strlen(t->address) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s:%s", t->scheme, t->address);
    put_str(out, s ? s : "");
    free(s);
}

/* A mapping key: plain when it is safe to be, quoted otherwise. */
static void put_key(FILE *out, const char *k)
{
    bool plain = isalpha((unsigned char)k[0]) || k[0] == '_';
    for (const char *p = k; plain && *p; p++)
        plain = isalnum((unsigned char)*p) || strchr("_.-/", *p);
    if (plain && strcasecmp(k, "true") && strcasecmp(k, "false") && strcasecmp(k, "null"))
        fputs(k, out);
    else
        put_str(out, k);
}

static void put_duration(FILE *out, int64_t ms)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < 3; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            fprintf(out, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    fprintf(out, "%" PRId64 "ms", ms);
}

static void put_kvs(FILE *out, const tl_kv *kv, size_t n, int indent)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%*s", indent, "");
        put_key(out, kv[i].key);
        fputs(": ", out);
        put_str(out, tl_config_is_secret(kv[i].key) ? MASK : kv[i].value);
        fputc('\n', out);
    }
}

static void put_value(FILE *out, const tl_param_value *v, int indent)
{
    switch (v->type) {
    case TL_PARAM_STRING:
        put_str(out, v->str);
        break;
    case TL_PARAM_INT:
        fprintf(out, "%" PRId64, v->num);
        break;
    case TL_PARAM_BOOL:
        fputs(v->num ? "true" : "false", out);
        break;
    case TL_PARAM_DURATION:
        put_duration(out, v->num);
        break;
    case TL_PARAM_LIST:
        fputc('[', out);
        for (size_t i = 0; i < v->nlist; i++) {
            fputs(i ? ", " : "", out);
            put_str(out, v->list[i]);
        }
        fputc(']', out);
        break;
    case TL_PARAM_MAP:
        fputs(v->nmap ? "\n" : "{}\n", out);
        put_kvs(out, v->map, v->nmap, indent + 2);
        return;
    }
    fputc('\n', out);
}

/* An adapter section; a key that names a secret hides its whole value. */
static void put_params(FILE *out, const tl_params *p, int indent)
{
    for (size_t i = 0; i < p->n; i++) {
        const tl_param_value *v = &p->v[i];
        fprintf(out, "%*s", indent, "");
        put_key(out, v->name);
        fputs(": ", out);
        if (tl_config_is_secret(v->name))
            fputs("\"" MASK "\"\n", out);
        else
            put_value(out, v, indent);
    }
}

static void dump_route(FILE *out, const tl_config *cfg, const tl_config_route *r)
{
    static const char *const orders[] = {"partition", "key", "none"};
    fputs("  - source: ", out);
    put_str(out, cfg->sources[r->source].name);
    fputs("\n    handler: ", out);
    put_str(out, r->handler);
    fprintf(out, "\n    ordering: %s\n    inline: %s\n    timeout: ", orders[r->ordering],
            r->run_inline ? "true" : "false");
    put_duration(out, r->timeout_ms);
    if (r->isolation == TL_ISOLATE_PROCESS) {
        fputs("\n    isolation: process", out);
        if (r->memory_bytes)
            fprintf(out, "\n    memory: %lldB", (long long)r->memory_bytes);
        if (r->cpu_time_ms) {
            fputs("\n    cpu_time: ", out);
            put_duration(out, r->cpu_time_ms);
        }
    }
    if (r->delay_ms) {
        fputs("\n    delay: ", out);
        put_duration(out, r->delay_ms);
    }
    if (r->rate_count)
        fprintf(out, "\n    rate: \"%lld/%s\"\n    burst: %lld", (long long)r->rate_count,
                r->rate_period_ms == 1000 ? "s" : "min", (long long)r->burst);
    if (r->breaker_failures) {
        fprintf(out, "\n    breaker: { failures: %lld, window: ", (long long)r->breaker_failures);
        put_duration(out, r->breaker_window_ms);
        fputs(", cooldown: ", out);
        put_duration(out, r->breaker_cooldown_ms);
        fputs(" }", out);
    }
    if (r->on_stall.scheme) {
        fputs("\n    on_stall: { reroute: ", out);
        put_target(out, &r->on_stall);
        fputs(" }", out);
    }
    fprintf(out, "\n    on_error: { retries: %u, backoff: ", r->retries);
    put_duration(out, r->backoff_ms);
    if (r->on_error.scheme) {
        fputs(", then: ", out);
        put_target(out, &r->on_error);
    }
    if (r->retry_via.scheme) {
        fputs(", via: ", out);
        put_target(out, &r->retry_via);
    }
    fputs(" }\n", out);
    if (r->noutputs) {
        fputs("    outputs:", out);
        for (size_t i = 0; i < r->noutputs; i++) {
            fprintf(out, "%s%s: ", i ? ", " : " { ", r->outputs[i].name);
            put_target(out, &r->outputs[i].target);
        }
        fputs(" }\n", out);
    }
    if (r->exactly_once) {
        fprintf(out, "    delivery: exactly_once\n    transaction: { messages: %lld, interval: ",
                (long long)r->txn_messages);
        put_duration(out, r->txn_interval_ms);
        fputs(" }\n", out);
    }
    if (r->nparams) {
        fputs("    params:\n", out);
        put_kvs(out, r->params, r->nparams, 6);
    }
}

static void dump_sections(FILE *out, const tl_config *cfg)
{
    fputs("sources:\n", out);
    for (size_t i = 0; i < cfg->nsources; i++) {
        fputs("  ", out);
        put_key(out, cfg->sources[i].name);
        fputs(":\n    type: ", out);
        put_str(out, cfg->sources[i].type);
        fputc('\n', out);
        put_params(out, &cfg->sources[i].params, 4);
    }
    if (cfg->nsinks)
        fputs("sinks:\n", out);
    for (size_t i = 0; i < cfg->nsinks; i++) {
        fputs("  ", out);
        put_key(out, cfg->sinks[i].scheme);
        fputs(cfg->sinks[i].params.n ? ":\n" : ": {}\n", out);
        put_params(out, &cfg->sinks[i].params, 4);
    }
    fputs("routes:\n", out);
    for (size_t i = 0; i < cfg->nroutes; i++)
        dump_route(out, cfg, &cfg->routes[i]);
}

int tl_config_dump(const tl_config *cfg, FILE *out)
{
    static const char *const formats[] = {"logfmt", "json"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    fputs("service: ", out);
    put_str(out, cfg->service);
    fprintf(out, "\nloop:\n  workers: %u\n  max_in_flight: %zu\n  drain_timeout: ", cfg->workers,
            cfg->max_in_flight);
    put_duration(out, cfg->drain_timeout_ms);
    fprintf(out, "\n  max_replaced_workers: %u\n  kept_back_mb: %zu\n  shards: %u\n",
            cfg->max_replaced_workers, cfg->kept_back_mb, cfg->shards);
    dump_sections(out, cfg);
    if (cfg->nplugins) {
        fputs("plugins:\n", out);
        for (size_t i = 0; i < cfg->nplugins; i++) {
            fputs("  - ", out);
            put_str(out, cfg->plugins[i].path);
            fputc('\n', out);
        }
    }
    if (cfg->admin_listen) {
        fputs("admin:\n  listen: ", out);
        put_str(out, cfg->admin_listen);
        fputc('\n', out);
    }
    if (cfg->admin_token_file) {
        fputs("  token_file: ", out);
        put_str(out, cfg->admin_token_file);
        fputc('\n', out);
    } else if (cfg->admin_token) {
        fputs("  token: ", out);
        put_str(out, MASK);
        fputc('\n', out);
    }
    fprintf(out, "log:\n  format: %s\n  level: %s\n", formats[cfg->log_format],
            levels[cfg->log_level]);
    return ferror(out) ? TL_ESYS : 0;
}
