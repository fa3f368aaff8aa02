/*
 * Loading a service's YAML config: libfyaml's document tree in, a checked tl_config out,
 * and the dump of a loaded config back to YAML. The schema itself is walked in
 * config_schema.c; scalar text is interpolated and typed in interpolate.c.
 *
 * Everything a config keeps lives in one arena that tl_config_free releases at once,
 * so the validator's many early returns never leak. The dump is meant to load again:
 * strings are double-quoted with '$' doubled, so they are not interpolated twice.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_int.h"

#define WHY_LEN 512
#define MASK "*****"

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

/* Takes msg over, or frees it on failure. */
static int diag_add(tl_diag *diag, char *msg)
{
    if (diag->count == diag->cap) {
        size_t cap = diag->cap ? diag->cap * 2 : 8;
        char **p = realloc(diag->msgs, cap * sizeof(*p));
        if (!p) {
            free(msg);
            return TL_ENOMEM;
        }
        diag->msgs = p;
        diag->cap = cap;
    }
    diag->msgs[diag->count++] = msg;
    return 0;
}

/* ---------------------------------------------------------------- arena */

typedef struct block {
    struct block *next;
    size_t used, cap;
    max_align_t data[];
} block;

struct tl_config_mem {
    block *head;
};

void *tl_config_alloc(tl_config_loader *ld, size_t n)
{
    tl_config_mem *m = ld->cfg->mem;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!m->head || m->head->cap - m->head->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        block *b = calloc(1, sizeof(block) + cap);
        if (!b) {
            ld->oom = true;
            return NULL;
        }
        b->cap = cap;
        b->next = m->head;
        m->head = b;
    }
    void *p = (char *)m->head->data + m->head->used;
    m->head->used += n;
    return p;
}

char *tl_config_strndup(tl_config_loader *ld, const char *s, size_t n)
{
    char *p = tl_config_alloc(ld, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

static char *mem_strdup(tl_config_loader *ld, const char *s)
{
    return tl_config_strndup(ld, s, strlen(s));
}

/* ---------------------------------------------------------------- reporting */

/* Copies s into dst with control characters escaped: one message, one line. */
static void escape_controls(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            n += (size_t)snprintf(dst + n, cap - n, "\\n");
        else if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(dst + n, cap - n, "\\x%02x", c);
        else
            dst[n++] = (char)c;
    }
    dst[n] = '\0';
}

void tl_config_report(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
{
    char raw[WHY_LEN], what[WHY_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    escape_controls(what, sizeof(what), raw);
    ld->nerrors++;
    if (!ld->diag)
        return;
    if (p.line <= 0)
        p = (tl_config_pos){1, 1};
    const char *sep = path && *path ? ": " : "";
    int n = snprintf(NULL, 0, "%s:%d:%d: error: %s%s%s", ld->file, p.line, p.col,
                     sep[0] ? path : "", sep, what);
    char *msg = malloc((size_t)n + 1);
    if (!msg) {
        ld->oom = true;
        return;
    }
    snprintf(msg, (size_t)n + 1, "%s:%d:%d: error: %s%s%s", ld->file, p.line, p.col,
             sep[0] ? path : "", sep, what);
    if (diag_add(ld->diag, msg))
        ld->oom = true;
}

/* ---------------------------------------------------------------- positions */

/* A place with its byte offset in the text, which line and column alone do not give. */
typedef struct mark {
    tl_config_pos p;
    size_t off;
} mark;

/*
 * Where a collection opens, given where its first element starts: the '[' or '{' of a
 * flow collection, the '-' of a block sequence. A block mapping opens at its first key.
 */
static mark opening(tl_config_loader *ld, struct fy_node *n, mark first)
{
    size_t k = first.off;
    while (k > 0 && k <= ld->text_len && isspace((unsigned char)ld->text[k - 1]))
        k--;
    char c = k > 0 && k <= ld->text_len ? ld->text[k - 1] : '\0';
    bool seq = fy_node_get_type(n) == FYNT_SEQUENCE;
    if (!(c == '{' && !seq) && !((c == '[' || c == '-') && seq))
        return first;
    mark m = {first.p, k - 1};
    size_t line_start = m.off;
    while (line_start > 0 && ld->text[line_start - 1] != '\n')
        line_start--;
    for (size_t i = m.off; i < first.off; i++)
        m.p.line -= ld->text[i] == '\n';
    m.p.col = m.p.line == first.p.line ? first.p.col - (int)(first.off - m.off)
                                       : (int)(m.off - line_start) + 1;
    return m;
}

/* Where a node starts; {0, 0} for an empty collection, which has no mark of its own. */
static mark node_mark(tl_config_loader *ld, struct fy_node *n)
{
    mark none = {{0, 0}, 0};
    if (!n)
        return none;
    if (fy_node_get_type(n) == FYNT_SCALAR) {
        const struct fy_mark *m = fy_token_start_mark(fy_node_get_scalar_token(n));
        if (!m)
            return none;
        /* libfyaml marks a quoted scalar after its opening quote; people count the quote. */
        enum fy_node_style st = fy_node_get_style(n);
        int q = (st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED) && m->column > 0;
        return (mark){{m->line + 1, m->column + 1 - q}, m->input_pos - (size_t)q};
    }
    void *it = NULL;
    struct fy_node *first;
    if (fy_node_get_type(n) == FYNT_SEQUENCE) {
        first = fy_node_sequence_iterate(n, &it);
    } else {
        struct fy_node_pair *pair = fy_node_mapping_iterate(n, &it);
        first = pair ? fy_node_pair_key(pair) : NULL;
    }
    mark m = node_mark(ld, first);
    return m.p.line ? opening(ld, n, m) : none;
}

tl_config_pos tl_config_node_pos(tl_config_loader *ld, struct fy_node *n)
{
    return node_mark(ld, n).p;
}

/* ---------------------------------------------------------------- plugins */

typedef int (*plugin_register_fn)(tl_registry *reg);

/* The path to dlopen: relative paths with a '/' start at the config file's directory. */
static char *plugin_path(tl_config_loader *ld, const char *path)
{
    if (!ld->base_dir || path[0] == '/' || !strchr(path, '/'))
        return mem_strdup(ld, path);
    size_t n = strlen(ld->base_dir) + strlen(path) + 2;
    char *full = tl_config_alloc(ld, n);
    if (full)
        snprintf(full, n, "%s/%s", ld->base_dir, path);
    return full;
}

void tl_config_open_plugin(tl_config_loader *ld, tl_config_pos p, const char *path,
                           tl_config_plugin *pl)
{
    char *file = plugin_path(ld, pl->path);
    if (!file)
        return;
    pl->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!pl->handle) {
        const char *err = dlerror();
        tl_config_report(ld, p, path, "cannot load plugin \"%s\": %s", pl->path,
                         err ? err : "unknown");
        return;
    }
    plugin_register_fn fn;
    /* POSIX guarantees a function address survives the round trip through void *. */
    *(void **)&fn = dlsym(pl->handle, "taskloop_plugin_register");
    if (!fn) {
        tl_config_report(ld, p, path, "plugin \"%s\" does not export taskloop_plugin_register",
                         pl->path);
        return;
    }
    int rc = fn(ld->reg);
    if (rc < 0)
        tl_config_report(ld, p, path, "plugin \"%s\": taskloop_plugin_register failed: %s",
                         pl->path, tl_strerror(rc));
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
    tl_config_mem *mem = calloc(1, sizeof(*mem));
    if (!cfg || !mem) {
        free(cfg);
        free(mem);
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
    cfg->file = mem_strdup(&ld, ld.file);
    ld.file = cfg->file ? cfg->file : ld.file;
    ld.base_dir = base_dir ? mem_strdup(&ld, base_dir) : NULL;
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
        if (diag && (!copy || diag_add(diag, copy)))
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
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (cfg->plugins[i].handle)
            dlclose(cfg->plugins[i].handle);
    for (block *b = cfg->mem->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(cfg->mem);
    free(cfg);
}

long tl_config_source_index(const tl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* ---------------------------------------------------------------- keys */

/* Levenshtein distance, or SIZE_MAX for words too long to be worth comparing. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *tl_config_suggest(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; candidates && candidates[i]; i++) {
        size_t d = distance(word, candidates[i]);
        if (d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

bool tl_config_is_secret(const char *key)
{
    static const char *const words[] = {"password", "secret", "sasl.oauthbearer", "ssl.key",
                                        "token"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (contains_nocase(key, words[i]))
            return true;
    return false;
}

/* ---------------------------------------------------------------- dump */

/* The inside of a double-quoted YAML string; '$' doubled so it loads back unchanged. */
static void put_escaped(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
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
}

static void put_str(FILE *out, const char *s)
{
    fputc('"', out);
    put_escaped(out, s);
    fputc('"', out);
}

static void put_target(FILE *out, const tl_config_target *t)
{
    fputc('"', out);
    put_escaped(out, t->scheme);
    fputc(':', out);
    put_escaped(out, t->address);
    fputc('"', out);
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
    fputs(" }\n", out);
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
    fprintf(out, "\n  max_replaced_workers: %u\n", cfg->max_replaced_workers);
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
    fprintf(out, "log:\n  format: %s\n  level: %s\n", formats[cfg->log_format],
            levels[cfg->log_level]);
    return ferror(out) ? TL_ESYS : 0;
}
