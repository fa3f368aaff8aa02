/*
 * Loading a service's YAML config: the public entry points (tl_config_load_file,
 * tl_config_load_string, tl_config_free) and the messages a load collects (tl_diag). document.c
 * turns the text into a tree; the schema files check the tree and fill the tl_config.
 *
 * The top of the loader's chain. Each file calls only files on the lines below it:
 *   config.c                              entry points, tl_diag
 *   document.c                            text to a document, within bounds
 *   resolve.c          schema.c           aliases, merge and duplicate keys; the top level
 *   schema_adapters.c  schema_routes.c    sources and sinks; routes
 *   schema_nodes.c                        the schema's vocabulary
 *   plugins.c                             checking and opening plugin files
 *   loader.c           interpolate.c      arena, messages, positions, bounded file
 *                                         reading; scalar values
 *   secrets.c                             which keys and values are secrets
 * dump.c (tl_config_dump) stands apart and calls only secrets.c.
 */
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"

#define WHY_LEN 512

/* ---------------------------------------------------------------- diag */

void tl_diag_init(tl_diag *diag)
{
    *diag = (tl_diag){0};
}

void tl_diag_free(tl_diag *diag)
{
    for (size_t i = 0; i < diag->count; i++)
        free(diag->msgs[i]);
    free(diag->msgs);
    *diag = (tl_diag){0};
}

void tl_diag_print(const tl_diag *diag, FILE *out)
{
    for (size_t i = 0; i < diag->count; i++)
        fprintf(out, "%s\n", diag->msgs[i]);
}

/* ---------------------------------------------------------------- loading */

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 2 ? 2 : n > TL_CONFIG_MAX_WORKERS ? TL_CONFIG_MAX_WORKERS : (unsigned)n;
}

/* Parses and checks text; what was wrong is in the loader's messages. */
static void parse_and_load(tl_config_loader *ld, const char *text, size_t len)
{
    tl_config_doc doc;
    if (tl_config_parse(ld, text, len, &doc))
        tl_config_load_root(ld, doc.doc ? fy_document_root(doc.doc) : NULL);
    tl_config_doc_free(&doc);
}

/* The position of message m, made by tl_config_report, after its file name. */
static void msg_pos(const char *m, size_t skip, long *line, long *col)
{
    char *end;
    *line = strtol(m + skip + 1, &end, 10);
    *col = strtol(end + 1, NULL, 10);
}

static bool msg_after(const char *a, const char *b, size_t skip)
{
    long la, ca, lb, cb;
    msg_pos(a, skip, &la, &ca);
    msg_pos(b, skip, &lb, &cb);
    return la > lb || (la == lb && ca > cb);
}

/* Merge sort of m[0..n) by position, keeping the order of equals; tmp holds n. */
static void sort_range(char **m, char **tmp, size_t n, size_t skip)
{
    if (n < 2)
        return;
    size_t half = n / 2, i = 0, j = half, k = 0;
    sort_range(m, tmp, half, skip);
    sort_range(m + half, tmp, n - half, skip);
    while (i < half && j < n)
        tmp[k++] = msg_after(m[i], m[j], skip) ? m[j++] : m[i++];
    while (i < half)
        tmp[k++] = m[i++];
    while (j < n)
        tmp[k++] = m[j++];
    memcpy(m, tmp, n * sizeof(*m));
}

/* Sorts the messages of one load by position, keeping the order of equals, so that
 * they read top to bottom like a compiler's; then says how many were left out. */
static void finish_messages(tl_config_loader *ld)
{
    tl_diag *diag = ld->diag;
    size_t n = diag->count - ld->first;
    char **tmp = n > 1 ? malloc(n * sizeof(*tmp)) : NULL;
    if (tmp)
        sort_range(diag->msgs + ld->first, tmp, n, strlen(ld->file));
    else if (n > 1)
        ld->oom = true;
    free(tmp);
    if (ld->dropped == 0)
        return;
    size_t dropped = ld->dropped;
    ld->dropped = 0;
    ld->first = diag->count; /* past the cap: this one goes in */
    tl_config_note(ld, (tl_config_pos){1, 1}, "",
                   "%zu more messages were left out (a load keeps at most %d)", dropped,
                   TL_CONFIG_MAX_MESSAGES);
}

static const char *name_or_default(const char *name)
{
    return name ? name : "<string>";
}

/* Loads text[0..len) (its name in messages: file); base_dir anchors relative plugin
 * paths. A refusal found before parsing (size, kind of file) comes in as early. */
static int load(const char *file, const char *base_dir, const char *text, size_t len,
                const char *early, tl_registry *reg, const tl_config_opts *opts, tl_config **out,
                tl_diag *diag)
{
    *out = NULL;
    tl_config *cfg = calloc(1, sizeof(*cfg));
    tl_config_mem *mem = tl_config_mem_new();
    if (!cfg || !mem) {
        free(cfg);
        tl_config_mem_free(mem);
        return TL_ENOMEM;
    }
    *cfg = (tl_config){.workers = default_workers(),
                       .max_in_flight = 10000,
                       .drain_timeout_ms = 10000,
                       .max_replaced_workers = 4,
                       .kept_back_mb = 64,
                       .shards = 1,
                       .log_format = TL_LOG_LOGFMT,
                       .log_level = TL_LOG_INFO,
                       .mem = mem};
    tl_config_loader ld = {.reg = reg, .cfg = cfg, .diag = diag, .file = name_or_default(file)};
    if (opts)
        ld.getenv = opts->getenv, ld.getenv_user = opts->getenv_user,
        ld.no_plugin_code = opts->no_plugin_code, ld.handler_hint = opts->handler_hint;
    cfg->file = tl_config_strdup(&ld, ld.file);
    ld.file = cfg->file ? cfg->file : ld.file;
    ld.base_dir = base_dir ? tl_config_strdup(&ld, base_dir) : NULL;
    ld.first = diag ? diag->count : 0;
    if (early)
        tl_config_report(&ld, (tl_config_pos){1, 1}, "", "%s", early);
    else
        parse_and_load(&ld, text, len);
    if (diag)
        finish_messages(&ld);
    int rc = ld.oom ? TL_ENOMEM : ld.nerrors ? TL_ECONFIG : 0;
    if (rc) {
        tl_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int tl_config_load_string(const char *name, const char *text, tl_registry *reg,
                          const tl_config_opts *opts, tl_config **out, tl_diag *diag)
{
    size_t len = strnlen(text, (size_t)TL_CONFIG_MAX_BYTES + 1);
    char early[WHY_LEN] = "";
    if (len > TL_CONFIG_MAX_BYTES)
        snprintf(early, sizeof(early), "the text is over %d bytes, the most a config may have",
                 TL_CONFIG_MAX_BYTES);
    return load(name, NULL, text, len, early[0] ? early : NULL, reg, opts, out, diag);
}

int tl_config_load_file(const char *path, tl_registry *reg, const tl_config_opts *opts,
                        tl_config **out, tl_diag *diag)
{
    *out = NULL;
    char *text, why[WHY_LEN];
    size_t len = 0;
    int rc = tl_config_read_file(path, TL_CONFIG_MAX_BYTES, "a config", &text, &len, NULL, why,
                                 sizeof(why));
    if (rc == TL_ENOMEM)
        return rc;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
    if (slash && !dir)
        rc = TL_ENOMEM;
    else
        rc = load(path, dir, text ? text : "", len, text ? NULL : why, reg, opts, out, diag);
    free(dir);
    free(text);
    return rc;
}

void tl_config_free(tl_config *cfg)
{
    if (!cfg)
        return;
    tl_config_close_plugins(cfg);
    tl_config_mem_free(cfg->mem);
    free(cfg);
}
