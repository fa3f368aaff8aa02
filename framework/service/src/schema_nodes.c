/*
 * The vocabulary the schema checks are written in: paths for messages, what a node is,
 * lookups in mappings, unknown and missing keys, and typed fields (strings, integers,
 * booleans, durations, names, mappings) read from interpolated scalars.
 *
 * In the loader's chain: called by every schema*.c file; calls loader.c (messages,
 * arena, positions) and interpolate.c (scalar text and values), nothing above.
 */
#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* ---------------------------------------------------------------- paths */

pos tl_schema_pos_or(loader *ld, struct fy_node *n, pos fallback)
{
    pos p = tl_config_node_pos(ld, n);
    return p.line ? p : fallback;
}

/* A path cut short still says where it goes; the position beside it is exact. */
static void ellipsis_if_cut(char *dst, int n)
{
    if (n >= PATH_LEN)
        memcpy(dst + PATH_LEN - 4, "...", 4);
}

void tl_schema_join(char *dst, const char *parent, const char *key)
{
    ellipsis_if_cut(dst, snprintf(dst, PATH_LEN, "%s%s%s", parent, *parent ? "." : "", key));
}

void tl_schema_join_index(char *dst, const char *parent, size_t i)
{
    ellipsis_if_cut(dst, snprintf(dst, PATH_LEN, "%s[%zu]", parent, i));
}

/* ---------------------------------------------------------------- nodes */

bool tl_schema_is_null(struct fy_node *n)
{
    if (!n)
        return true;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

const char *tl_schema_kind(struct fy_node *n)
{
    if (tl_schema_is_null(n))
        return "nothing";
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING:
        return "a mapping";
    case FYNT_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

bool tl_schema_expect_kind(loader *ld, struct fy_node *n, enum fy_node_type t, const char *path,
                           const char *what)
{
    if (fy_node_get_type(n) == t)
        return true;
    tl_config_report(ld, tl_config_node_pos(ld, n), path, "expected %s, got %s", what,
                     tl_schema_kind(n));
    return false;
}

/* True when s[0..len) holds "${": the value takes something from the environment. */
static bool interpolates(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '$' && s[i + 1] == '{')
            return true;
    return false;
}

/* True when s[0..len) is one whole reference "${NAME}": naming NAME tells nothing of a
 * secret that holds it. */
static bool one_reference(const char *s, size_t len)
{
    if (len < 4 || s[0] != '$' || s[1] != '{' || s[len - 1] != '}')
        return false;
    for (size_t i = 2; i + 1 < len; i++)
        if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (i > 2 && s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

const char *tl_schema_shown(loader *ld, struct fy_node *n, const char *key, const char *text)
{
    if (key && tl_config_is_secret(key))
        return TL_CONFIG_MASK;
    size_t len = 0;
    const char *raw = n && fy_node_get_type(n) == FYNT_SCALAR ? fy_node_get_scalar(n, &len) : NULL;
    if (!raw || !interpolates(raw, len))
        return text;
    const char *copy = tl_config_strndup(ld, raw, len);
    return copy ? copy : text;
}

void tl_schema_report_value(loader *ld, pos p, const char *path, struct fy_node *n, const char *key,
                            const char *value, const char *why)
{
    const char *shown = value ? tl_schema_shown(ld, n, key, value) : NULL;
    if (!shown || shown == value || !*value) {
        tl_config_report(ld, p, path, "%s", why);
        return;
    }
    /* The adapter's library may have quoted the value: put the shown text in its place. */
    char out[2 * WHY_LEN];
    size_t n_out = 0, vlen = strlen(value), slen = strlen(shown);
    for (const char *w = why; *w && n_out + 1 < sizeof(out);) {
        bool at = strncmp(w, value, vlen) == 0;
        const char *from = at ? shown : w;
        size_t len = at ? slen : 1;
        if (n_out + len + 1 > sizeof(out))
            break;
        memcpy(out + n_out, from, len);
        n_out += len;
        w += at ? vlen : 1;
    }
    out[n_out] = '\0';
    tl_config_report(ld, p, path, "%s", out);
}

char *tl_schema_scalar(loader *ld, struct fy_node *n, const char *path, const char *key,
                       const char *what)
{
    if (n && !tl_schema_expect_kind(ld, n, FYNT_SCALAR, path, what))
        return NULL;
    size_t len = 0;
    const char *raw = tl_schema_is_null(n) ? "" : fy_node_get_scalar(n, &len);
    /* "\0" in a double-quoted scalar: C strings would silently end at it. */
    if (memchr(raw, '\0', len)) {
        tl_config_report(ld, tl_config_node_pos(ld, n), path,
                         "a value must not contain a NUL character (\\0)");
        return NULL;
    }
    char why[WHY_LEN], *text;
    int rc = tl_config_interpolate(raw, len, ld->getenv, ld->getenv_user, &text, why, sizeof(why));
    if (rc == TL_ENOMEM)
        ld->oom = true;
    if (rc) {
        if (rc == TL_ECONFIG && key && tl_config_is_secret(key) && !one_reference(raw, len))
            snprintf(why, sizeof(why),
                     "bad ${...} in the value of a secret (not shown; $$ is a literal $)");
        if (rc == TL_ECONFIG)
            tl_config_report(ld, tl_config_node_pos(ld, n), path, "%s", why);
        return NULL;
    }
    char *copy = tl_config_strndup(ld, text, strlen(text));
    free(text);
    return copy;
}

/* A mapping key as written (keys are names, so they are not interpolated). */
char *tl_schema_key_text(loader *ld, struct fy_node_pair *pair, const char *path)
{
    struct fy_node *k = fy_node_pair_key(pair);
    if (!k || fy_node_get_type(k) != FYNT_SCALAR || fy_node_get_style(k) == FYNS_ALIAS) {
        tl_config_report(ld,
                         tl_schema_pos_or(ld, k, tl_config_node_pos(ld, fy_node_pair_value(pair))),
                         path, "keys must be plain strings");
        return NULL;
    }
    size_t len;
    const char *s = fy_node_get_scalar(k, &len);
    if (s && memchr(s, '\0', len)) {
        tl_config_report(ld, tl_config_node_pos(ld, k), path,
                         "a key must not contain a NUL character (\\0)");
        return NULL;
    }
    return tl_config_strndup(ld, s ? s : "", s ? len : 0);
}

size_t tl_schema_count_of(struct fy_node *n)
{
    if (!n || tl_schema_is_null(n))
        return 0;
    if (fy_node_get_type(n) == FYNT_MAPPING)
        return (size_t)fy_node_mapping_item_count(n);
    if (fy_node_get_type(n) == FYNT_SEQUENCE)
        return (size_t)fy_node_sequence_item_count(n);
    return 0;
}

struct fy_node *tl_schema_lookup(struct fy_node *map, const char *key)
{
    struct fy_node_pair *p = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    return p ? fy_node_pair_value(p) : NULL;
}

struct fy_node *tl_schema_lookup_key(struct fy_node *map, const char *key)
{
    struct fy_node_pair *p = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    return p ? fy_node_pair_key(p) : NULL;
}

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

void tl_schema_unknown_key(loader *ld, struct fy_node *k, const char *path, const char *key,
                           const char *const *known)
{
    char at[PATH_LEN];
    tl_schema_join(at, path, key);
    const char *near = tl_config_suggest(key, known);
    if (near)
        tl_config_report(ld, tl_config_node_pos(ld, k), at, "unknown key '%s' (did you mean '%s'?)",
                         key, near);
    else
        tl_config_report(ld, tl_config_node_pos(ld, k), at, "unknown key '%s'", key);
}

/* Reports every key of map that is not in known. */
void tl_schema_check_keys(loader *ld, struct fy_node *map, const char *path,
                          const char *const *known)
{
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *key = tl_schema_key_text(ld, pair, path);
        if (key && !in_list(key, known))
            tl_schema_unknown_key(ld, fy_node_pair_key(pair), path, key, known);
    }
}

void tl_schema_require(loader *ld, struct fy_node *map, pos at, const char *path,
                       const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++)
        if (!tl_schema_lookup_key(map, keys[i]))
            tl_config_report(ld, at, path, "missing required key '%s'", keys[i]);
}

/* ---------------------------------------------------------------- typed fields */

/* One key of a fixed section: its path, where it is, its interpolated text, and that
 * text as messages may quote it (tl_schema_shown). */
typedef struct field {
    char at[PATH_LEN];
    pos p;
    char *text;
    const char *shown;
} field;

/* Fills f for map[key]; false when the key is absent or its value was reported. */
static bool get_field(loader *ld, struct fy_node *map, const char *path, const char *key,
                      const char *what, field *f)
{
    struct fy_node_pair *pair = fy_node_mapping_lookup_pair_by_string(map, key, strlen(key));
    if (!pair)
        return false;
    tl_schema_join(f->at, path, key);
    f->p = tl_schema_pos_or(ld, fy_node_pair_value(pair),
                            tl_config_node_pos(ld, fy_node_pair_key(pair)));
    f->text = tl_schema_scalar(ld, fy_node_pair_value(pair), f->at, key, what);
    f->shown = f->text ? tl_schema_shown(ld, fy_node_pair_value(pair), key, f->text) : NULL;
    return f->text != NULL;
}

/* Reports why unless rc is 0; returns whether it was. */
static bool check(loader *ld, int rc, const field *f, const char *why)
{
    if (rc)
        tl_config_report(ld, f->p, f->at, "%s", why);
    return rc == 0;
}

char *tl_schema_get_str(loader *ld, struct fy_node *map, const char *path, const char *key)
{
    field f;
    if (!get_field(ld, map, path, key, "a string", &f))
        return NULL;
    char why[WHY_LEN];
    tl_schema_empty_why(f.text, f.shown, why, sizeof(why));
    return check(ld, *f.text ? 0 : TL_ECONFIG, &f, why) ? f.text : NULL;
}

void tl_schema_empty_why(const char *text, const char *shown, char *why, size_t whylen)
{
    if (shown != text && strcmp(shown, TL_CONFIG_MASK) != 0)
        snprintf(why, whylen, "must not be empty, and \"%s\" gives an empty value", shown);
    else
        snprintf(why, whylen, "must not be empty");
}

bool tl_schema_get_int(loader *ld, struct fy_node *map, const char *path, const char *key,
                       int64_t min, int64_t max, int64_t *out)
{
    field f;
    char why[WHY_LEN];
    return get_field(ld, map, path, key, "an integer", &f) &&
           check(ld, tl_config_parse_int_shown(f.text, f.shown, min, max, out, why, sizeof(why)),
                 &f, why);
}

bool tl_schema_get_int_or(loader *ld, struct fy_node *map, const char *path, const char *key,
                          int64_t min, int64_t max, const char *word, int64_t word_value,
                          int64_t *out)
{
    field f;
    char what[64], why[WHY_LEN];
    snprintf(what, sizeof(what), "an integer or %s", word);
    if (!get_field(ld, map, path, key, what, &f))
        return false;
    if (strcmp(f.text, word) == 0) {
        *out = word_value;
        return true;
    }
    int rc = tl_config_parse_int_shown(f.text, f.shown, min, max, out, why, sizeof(why));
    if (rc && strncmp(why, "expected an integer", 19) == 0)
        snprintf(why, sizeof(why), "expected an integer or %s, got \"%s\"", word, f.shown);
    return check(ld, rc, &f, why);
}

bool tl_schema_get_bool(loader *ld, struct fy_node *map, const char *path, const char *key,
                        bool *out)
{
    field f;
    char why[WHY_LEN];
    return get_field(ld, map, path, key, "true or false", &f) &&
           check(ld, tl_config_parse_bool_shown(f.text, f.shown, out, why, sizeof(why)), &f, why);
}

/* A duration in ms; positive demands more than zero. */
bool tl_schema_get_duration(loader *ld, struct fy_node *map, const char *path, const char *key,
                            bool positive, int64_t *out)
{
    field f;
    char why[WHY_LEN];
    int64_t ms;
    if (!get_field(ld, map, path, key, "a duration", &f) ||
        !check(ld, tl_config_parse_duration_shown(f.text, f.shown, &ms, why, sizeof(why)), &f, why))
        return false;
    snprintf(why, sizeof(why), "duration must be greater than 0, got \"%s\"", f.shown);
    if (!check(ld, positive && ms == 0 ? TL_ECONFIG : 0, &f, why))
        return false;
    *out = ms;
    return true;
}

/* Parses "512MiB" (units B, KiB, MiB, GiB; a unit is required, as for durations). */
static int parse_size(const char *text, int64_t *out, char *why, size_t whylen)
{
    static const struct {
        const char *unit;
        int64_t mul;
    } units[] = {{"GiB", 1LL << 30}, {"MiB", 1LL << 20}, {"KiB", 1LL << 10}, {"B", 1}};
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || v < 0 || errno != 0) {
        snprintf(why, whylen, "expected a size such as \"512MiB\", got \"%s\"", text);
        return TL_ECONFIG;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (v > INT64_MAX / units[i].mul) {
            snprintf(why, whylen, "size \"%s\" is too large", text);
            return TL_ECONFIG;
        }
        *out = v * units[i].mul;
        return 0;
    }
    snprintf(why, whylen, "size \"%s\" needs a unit: B, KiB, MiB or GiB", text);
    return TL_ECONFIG;
}

bool tl_schema_get_size(loader *ld, struct fy_node *map, const char *path, const char *key,
                        int64_t min, int64_t *out)
{
    field f;
    char why[WHY_LEN];
    int64_t v = 0;
    if (!get_field(ld, map, path, key, "a size", &f) ||
        !check(ld, parse_size(f.text, &v, why, sizeof(why)), &f, why))
        return false;
    snprintf(why, sizeof(why), "size must be at least %lldMiB, got \"%s\"", (long long)(min >> 20),
             f.shown);
    if (!check(ld, v < min ? TL_ECONFIG : 0, &f, why))
        return false;
    *out = v;
    return true;
}

/* The index of the value among names (NULL-ended), or def when the key is absent. */
int tl_schema_get_enum(loader *ld, struct fy_node *map, const char *path, const char *key,
                       const char *const *names, int def)
{
    field f;
    if (!get_field(ld, map, path, key, "a name", &f))
        return def;
    for (int i = 0; names[i]; i++)
        if (strcmp(f.text, names[i]) == 0)
            return i;
    char choices[WHY_LEN] = "";
    for (int i = 0; names[i]; i++)
        snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s",
                 i == 0         ? ""
                 : names[i + 1] ? ", "
                                : " or ",
                 names[i]);
    tl_config_report(ld, f.p, f.at, "expected %s, got \"%s\"", choices, f.shown);
    return def;
}

/* A mapping value of map[key], or NULL when absent, null, or not a mapping (reported). */
struct fy_node *tl_schema_get_map(loader *ld, struct fy_node *map, const char *path,
                                  const char *key)
{
    struct fy_node *v = tl_schema_lookup(map, key);
    if (!v || tl_schema_is_null(v))
        return NULL;
    char at[PATH_LEN];
    tl_schema_join(at, path, key);
    return tl_schema_expect_kind(ld, v, FYNT_MAPPING, at, "a mapping") ? v : NULL;
}

/* A mapping of names to scalars (route params, librdkafka properties), in file order. */
bool tl_schema_load_kvs(loader *ld, struct fy_node *map, const char *path, const tl_kv **out,
                        size_t *n)
{
    *n = 0;
    tl_kv *kv = tl_config_alloc(ld, (tl_schema_count_of(map) + 1) * sizeof(*kv));
    if (!kv)
        return false;
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        char *key = tl_schema_key_text(ld, pair, path), at[PATH_LEN];
        if (!key)
            continue;
        tl_schema_join(at, path, key);
        char *val = tl_schema_scalar(ld, fy_node_pair_value(pair), at, key, "a scalar");
        if (val)
            kv[(*n)++] = (tl_kv){key, val};
    }
    *out = kv;
    return true;
}

bool tl_schema_from_plugins(loader *ld, pos p, const char *path, const char *what, const char *name)
{
    if (ld->nskipped == 0)
        return false;
    char names[WHY_LEN];
    tl_config_note(ld, p, path,
                   "%s '%s' is not registered; taken to be provided by %s (not loaded by check)",
                   what, name, tl_config_plugin_names(ld, names, sizeof(names)));
    return true;
}

/* ---------------------------------------------------------------- suggestions */

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

/* Past SUGGEST_MAX candidates it gives up: a file of thousands of wrong names would
 * otherwise cost their product in distances. */
#define SUGGEST_MAX 256

const char *tl_config_suggest(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; candidates && candidates[i]; i++) {
        if (i == SUGGEST_MAX)
            return NULL;
        size_t d = distance(word, candidates[i]);
        if (d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}
