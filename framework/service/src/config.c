/*
 * Loading a service's YAML config: the public entry points (tl_config_load_file,
 * tl_config_load_string, tl_config_free) and the messages a load collects (tl_diag).
 * libfyaml parses the text; the schema files check the tree and fill the tl_config.
 *
 * The top of the loader's chain. Each file calls only files on the lines below it:
 *   config.c                              entry points, tl_diag
 *   schema.c                              the top level and its small sections
 *   schema_adapters.c  schema_routes.c    sources and sinks; routes
 *   schema_nodes.c     plugins.c          the schema's vocabulary; dlopen
 *   loader.c           interpolate.c      arena, messages, positions; scalar values
 * dump.c (tl_config_dump, tl_config_is_secret) stands apart and calls none of them.
 */
#include <errno.h>
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

static void swallow_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag, (void)user, (void)buf, (void)len;
}

/* Reports libfyaml's own errors (syntax, duplicate keys), which carry 1-based marks. */
static void report_parse_errors(tl_config_loader *ld, struct fy_diag *diag)
{
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(diag, &it)))
        if (e->type >= FYET_ERROR)
            tl_config_report(ld, (tl_config_pos){e->line, e->column}, "", "%s", e->msg);
}

static void parse_and_load(tl_config_loader *ld, const char *text)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = swallow_output;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        ld->oom = true;
        return;
    }
    /* Collected rather than printed: the library reports, the program decides. */
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_DEFAULT_VERSION_1_2,
        .diag = diag,
    };
    ld->text = text;
    ld->text_len = strlen(text);
    struct fy_document *doc = fy_document_build_from_string(&pcfg, text, ld->text_len);
    size_t before = ld->nerrors;
    report_parse_errors(ld, diag);
    if (doc)
        tl_config_load_root(ld, fy_document_root(doc));
    else if (ld->nerrors == before)
        tl_config_load_root(ld, NULL); /* libfyaml builds no document from an empty stream */
    fy_document_destroy(doc);
    fy_diag_destroy(diag);
}

/* True when message a, made by tl_config_report, points after message b. */
static bool msg_after(const char *a, const char *b, size_t skip)
{
    char *end;
    long la = strtol(a + skip + 1, &end, 10), ca = strtol(end + 1, NULL, 10);
    long lb = strtol(b + skip + 1, &end, 10), cb = strtol(end + 1, NULL, 10);
    return la > lb || (la == lb && ca > cb);
}

/* Sorts the messages of one load by position, keeping the order of equals, so that
 * they read top to bottom like a compiler's. */
static void sort_messages(tl_diag *diag, size_t first, size_t file_len)
{
    for (size_t i = first + 1; i < diag->count; i++) {
        char *m = diag->msgs[i];
        size_t j = i;
        for (; j > first && msg_after(diag->msgs[j - 1], m, file_len); j--)
            diag->msgs[j] = diag->msgs[j - 1];
        diag->msgs[j] = m;
    }
}

static const char *name_or_default(const char *name)
{
    return name ? name : "<string>";
}

/* Loads text (its name in messages: file); base_dir anchors relative plugin paths. */
static int load(const char *file, const char *base_dir, const char *text, tl_registry *reg,
                const tl_config_opts *opts, tl_config **out, tl_diag *diag)
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
                       .log_format = TL_LOG_LOGFMT,
                       .log_level = TL_LOG_INFO,
                       .mem = mem};
    tl_config_loader ld = {.reg = reg, .cfg = cfg, .diag = diag, .file = name_or_default(file)};
    if (opts)
        ld.getenv = opts->getenv, ld.getenv_user = opts->getenv_user;
    cfg->file = tl_config_strdup(&ld, ld.file);
    ld.file = cfg->file ? cfg->file : ld.file;
    ld.base_dir = base_dir ? tl_config_strdup(&ld, base_dir) : NULL;
    size_t first = diag ? diag->count : 0;
    parse_and_load(&ld, text);
    if (diag)
        sort_messages(diag, first, strlen(ld.file));
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
    return load(name, NULL, text, reg, opts, out, diag);
}

/* The whole file, NUL-terminated (malloc'd), or NULL with errno set. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    while (text && !feof(f) && !ferror(f)) {
        len += fread(text + len, 1, cap - len - 1, f);
        if (len + 1 == cap) {
            char *p = realloc(text, cap *= 2);
            if (!p)
                free(text);
            text = p;
        }
    }
    int err = text ? EIO : ENOMEM;
    if (text && ferror(f)) {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (text)
        text[len] = '\0';
    else
        errno = err;
    return text;
}

int tl_config_load_file(const char *path, tl_registry *reg, const tl_config_opts *opts,
                        tl_config **out, tl_diag *diag)
{
    *out = NULL;
    char *text = read_file(path);
    if (!text) {
        if (errno == ENOMEM)
            return TL_ENOMEM;
        char msg[WHY_LEN];
        snprintf(msg, sizeof(msg), "%s:1:1: error: cannot read the file: %s", path,
                 strerror(errno));
        char *copy = strdup(msg);
        if (diag && (!copy || tl_config_diag_add(diag, copy)))
            return TL_ENOMEM;
        if (!diag)
            free(copy);
        return TL_ECONFIG;
    }
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
    int rc = slash && !dir ? TL_ENOMEM : load(path, dir, text, reg, opts, out, diag);
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
