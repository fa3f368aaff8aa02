/*
 * What the config loader's files share: value parsers, the loader's state and its error
 * reporting, plugins, and the entry into the schema. Private to the runtime.
 *
 * Grouped by the file that defines them, lowest first; a file calls only the groups
 * of the files below it (the chain is drawn at the top of config.c). The schema
 * files' own vocabulary is in schema_int.h.
 */
#ifndef TL_CONFIG_INT_H
#define TL_CONFIG_INT_H

#include <sys/types.h>
#include <taskloop/config.h>

/* ---------------------------------------------------------------- interpolate.c */

/* Expands ${VAR}, ${VAR:-default} and $$ in text into *out (malloc'd); on a bad or
 * unset reference returns TL_ECONFIG with the reason in why. */
int tl_config_interpolate(const char *text, size_t len, tl_config_getenv_fn env, void *user,
                          char **out, char *why, size_t whylen);

/* Parses a decimal integer within [min, max]; on failure returns TL_ECONFIG and why. */
int tl_config_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, char *why,
                        size_t whylen);

/* Parses true/false into *out; on failure returns TL_ECONFIG and why. */
int tl_config_parse_bool(const char *s, bool *out, char *why, size_t whylen);

/*
 * The parsers above and tl_config_parse_duration, quoting shown instead of s in why:
 * for a value that came from ${VAR}, shown is the text as written, so that a message
 * names the variable and never prints what it held.
 */
int tl_config_parse_int_shown(const char *s, const char *shown, int64_t min, int64_t max,
                              int64_t *out, char *why, size_t whylen);
int tl_config_parse_bool_shown(const char *s, const char *shown, bool *out, char *why,
                               size_t whylen);
int tl_config_parse_duration_shown(const char *s, const char *shown, int64_t *ms, char *why,
                                   size_t whylen);

/* ---------------------------------------------------------------- secrets.c */

/* What a masked value reads as. */
#define TL_CONFIG_MASK "*****"

/* True when s holds a URL with a password ("scheme://user:pass@host"). */
bool tl_config_has_url_password(const char *s);

/* Copies s into out (cap bytes, NUL-terminated) with each URL's password replaced by
 * TL_CONFIG_MASK; returns the length it would have uncut. */
size_t tl_config_mask_urls(const char *s, char *out, size_t cap);

/* ---------------------------------------------------------------- loader.c */

struct fy_node;

/* A place in the file: 1-based, or 0 when unknown. */
typedef struct tl_config_pos {
    int line, col;
} tl_config_pos;

/* The state of one load. */
typedef struct tl_config_loader {
    const char *file;         /* the name used in messages */
    const char *base_dir;     /* where relative plugin paths start; NULL: the working dir */
    bool no_plugin_code;      /* plugins are checked, not opened (tl_config_opts) */
    const char *handler_hint; /* tl_config_opts.handler_hint, or NULL */
    const char *text;         /* what is being parsed, to place collections exactly */
    size_t text_len;
    tl_registry *reg;
    tl_config_getenv_fn getenv;
    void *getenv_user;
    tl_config *cfg;
    tl_diag *diag; /* may be NULL: errors are then only counted */
    size_t first;  /* where this load's messages start in diag */
    size_t nerrors;
    size_t dropped;  /* messages past TL_CONFIG_MAX_MESSAGES, counted only */
    size_t nskipped; /* plugins that were checked but, by no_plugin_code, not opened */
    bool oom;
    bool sources_ok;            /* false: route sources are not checked, to avoid a cascade */
    tl_config_pos *source_at;   /* where each source's name is, by index */
    const char **plugins_shown; /* each plugin's path as messages may quote it */
} tl_config_loader;

/* An empty arena for a config's cfg->mem (malloc'd), or NULL when out of memory. */
tl_config_mem *tl_config_mem_new(void);

/* Frees the arena and everything allocated from it; mem may be NULL. */
void tl_config_mem_free(tl_config_mem *mem);

/* Zeroed memory owned by ld->cfg; NULL, with ld->oom set, when out of memory. */
void *tl_config_alloc(tl_config_loader *ld, size_t n);

/* A NUL-terminated copy of s[0..n) owned by ld->cfg, or NULL as tl_config_alloc. */
char *tl_config_strndup(tl_config_loader *ld, const char *s, size_t n);

/* A copy of the string s owned by ld->cfg, or NULL as tl_config_alloc. */
char *tl_config_strdup(tl_config_loader *ld, const char *s);

/* Appends msg (malloc'd; an error, or a note) to diag, which takes it over; on
 * TL_ENOMEM msg is freed. */
int tl_config_diag_add(tl_diag *diag, char *msg, bool error);

/* Records "FILE:LINE:COL: error: PATH: what" (without "PATH: " when path is empty), with
 * control characters escaped and URL passwords masked. */
void tl_config_report(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records "FILE:LINE:COL: warning: PATH: what": likely a mistake, not an error. */
void tl_config_warn(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records "FILE:LINE:COL: note: PATH: what": something worth knowing, not an error. */
void tl_config_note(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What a file of this mode is, for messages: "a directory", "a FIFO", ... */
const char *tl_config_file_kind(mode_t mode);

/* Reads the file at path into *text (malloc'd, NUL-terminated, *len bytes) if it is a
 * regular file of at most max bytes, without waiting on a FIFO or reading a device;
 * what names such a file in messages ("a config"); *mode (unless NULL) gets its mode.
 * 0, TL_ENOMEM, or TL_ECONFIG with why. */
int tl_config_read_file(const char *path, size_t max, const char *what, char **text, size_t *len,
                        mode_t *mode, char *why, size_t whylen);

/* Where a node starts: a scalar's first character (its opening quote, if quoted), a
 * flow collection's bracket, a block sequence's first '-', a block mapping's first key;
 * {0, 0} for an empty block collection, which has no place of its own. */
tl_config_pos tl_config_node_pos(tl_config_loader *ld, struct fy_node *n);

/* ---------------------------------------------------------------- resolve.c */

struct fy_document;
struct fy_parser;
struct fy_diag;

/*
 * Makes the parsed document what the schema reads: reports duplicate keys, expands
 * aliases (at most TL_CONFIG_MAX_ALIAS_NODES nodes in all) and applies merge keys
 * ("<<"), in time linear in the document. False when something was reported; the
 * document is then not worth checking further.
 */
bool tl_config_resolve(tl_config_loader *ld, struct fy_document *doc);

/* ---------------------------------------------------------------- document.c */

/* A parsed document and what it needs kept alive. */
typedef struct tl_config_doc {
    struct fy_diag *diag;
    struct fy_parser *parser;
    struct fy_document *doc; /* NULL for an empty stream */
} tl_config_doc;

/*
 * Parses text[0..len) into *out, within the bounds of config.h: no NUL byte, one YAML
 * document, at most TL_CONFIG_MAX_ANCHORS anchors; then resolves it (tl_config_resolve).
 * False when something was reported. *out is to be freed with tl_config_doc_free
 * either way.
 */
bool tl_config_parse(tl_config_loader *ld, const char *text, size_t len, tl_config_doc *out);

void tl_config_doc_free(tl_config_doc *d);

/* ---------------------------------------------------------------- plugins.c */

/* A file the config names (a plugin, a token file) as a path owned by ld->cfg:
 * relative ones start at the config file's folder. NULL when out of memory. */
char *tl_config_file_path(tl_config_loader *ld, const char *path);

/*
 * Checks the plugin file pl->path names (reported at p, under path; shown is the path
 * as written): a regular file that neither it nor its folder lets group or others
 * write, owned by root or by the user running this. Unless ld->no_plugin_code, then
 * opens it and lets it register.
 */
void tl_config_open_plugin(tl_config_loader *ld, tl_config_pos p, const char *path,
                           const char *shown, tl_config_plugin *pl);

/* The plugins the config names, for messages ("plugin \"./x.so\"", "one of the plugins
 * \"a.so\", \"b.so\""), written into buf (cap bytes). */
const char *tl_config_plugin_names(tl_config_loader *ld, char *buf, size_t cap);

/* dlcloses every plugin of cfg that was opened; called once, by tl_config_free. */
void tl_config_close_plugins(tl_config *cfg);

/* ---------------------------------------------------------------- schema_nodes.c */

/* The closest of the NULL-ended candidates within edit distance 2 of word, or NULL. */
const char *tl_config_suggest(const char *word, const char *const *candidates);

/* ---------------------------------------------------------------- schema.c */

/* Checks the document's root (NULL for an empty document) and fills ld->cfg. */
void tl_config_load_root(tl_config_loader *ld, struct fy_node *root);

#endif
