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

/* ---------------------------------------------------------------- loader.c */

struct fy_node;

/* A place in the file: 1-based, or 0 when unknown. */
typedef struct tl_config_pos {
    int line, col;
} tl_config_pos;

/* The state of one load. */
typedef struct tl_config_loader {
    const char *file;     /* the name used in messages */
    const char *base_dir; /* where relative plugin paths start; NULL: the working dir */
    const char *text;     /* what is being parsed, to place collections exactly */
    size_t text_len;
    tl_registry *reg;
    tl_config_getenv_fn getenv;
    void *getenv_user;
    tl_config *cfg;
    tl_diag *diag; /* may be NULL: errors are then only counted */
    size_t nerrors;
    bool oom;
    bool sources_ok; /* false: route sources are not checked, to avoid a cascade */
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

/* Appends msg (malloc'd) to diag, which takes it over; on TL_ENOMEM msg is freed. */
int tl_config_diag_add(tl_diag *diag, char *msg);

/* Records "FILE:LINE:COL: error: PATH: what" (without "PATH: " when path is empty). */
void tl_config_report(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Where a node starts: a scalar's first character (its opening quote, if quoted), a
 * flow collection's bracket, a block sequence's first '-', a block mapping's first key;
 * {0, 0} for an empty block collection, which has no place of its own. */
tl_config_pos tl_config_node_pos(tl_config_loader *ld, struct fy_node *n);

/* ---------------------------------------------------------------- plugins.c */

/* Opens the plugin at pl->path (reported at p, under path) and lets it register. */
void tl_config_open_plugin(tl_config_loader *ld, tl_config_pos p, const char *path,
                           tl_config_plugin *pl);

/* dlcloses every plugin of cfg that was opened; called once, by tl_config_free. */
void tl_config_close_plugins(tl_config *cfg);

/* ---------------------------------------------------------------- schema_nodes.c */

/* The closest of the NULL-ended candidates within edit distance 2 of word, or NULL. */
const char *tl_config_suggest(const char *word, const char *const *candidates);

/* ---------------------------------------------------------------- schema.c */

/* Checks the document's root (NULL for an empty document) and fills ld->cfg. */
void tl_config_load_root(tl_config_loader *ld, struct fy_node *root);

#endif
