/*
 * The text of config scalars: environment interpolation (${VAR}, ${VAR:-default}, $$),
 * then the value types read from it (integers, booleans, durations).
 *
 * The expansion is single-pass: a variable's value and a default are copied as they
 * are, never expanded again, so a value holding "${...}" cannot pull in other
 * variables behind the author's back.
 *
 * In the loader's chain: a leaf, called by the schema files; calls nothing of the
 * loader.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

#define DURATION_HINT "expected a duration like 250ms, 2s, 1m or 1h"

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_put(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return TL_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Appends the value of the reference ref[0..n), the text between "${" and "}". */
static int expand_ref(buf *b, const char *ref, size_t n, tl_config_getenv_fn env, void *user,
                      char *why, size_t whylen)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (ref[i] == ':' && ref[i + 1] == '-') {
            sep = ref + i;
            break;
        }
    }
    size_t name_len = sep ? (size_t)(sep - ref) : n;
    if (!valid_name(ref, name_len)) {
        snprintf(why, whylen, "invalid variable name in \"${%.*s}\"", (int)n, ref);
        return TL_ECONFIG;
    }
    char name[256];
    if (name_len >= sizeof(name)) {
        snprintf(why, whylen, "variable name too long in \"${%.*s...}\"", 32, ref);
        return TL_ECONFIG;
    }
    memcpy(name, ref, name_len);
    name[name_len] = '\0';
    const char *val = env(name, user);
    if (sep && (!val || !*val))
        return buf_put(b, sep + 2, n - name_len - 2);
    if (!val) {
        snprintf(why, whylen,
                 "environment variable '%s' is not set (use ${%s:-default} to give a default)",
                 name, name);
        return TL_ECONFIG;
    }
    return buf_put(b, val, strlen(val));
}

static const char *default_env(const char *name, void *user)
{
    (void)user;
    return getenv(name);
}

/* Appends the expansion of text[0..len) to b. */
static int expand(buf *b, const char *text, size_t len, tl_config_getenv_fn env, void *user,
                  char *why, size_t whylen)
{
    size_t i = 0, lit = 0;
    while (i < len) {
        if (text[i] != '$' || i + 1 >= len || (text[i + 1] != '$' && text[i + 1] != '{')) {
            i++;
            continue;
        }
        int rc = buf_put(b, text + lit, i - lit);
        if (rc)
            return rc;
        if (text[i + 1] == '$') {
            rc = buf_put(b, "$", 1);
            i += 2;
        } else {
            const char *close = memchr(text + i + 2, '}', len - i - 2);
            if (!close) {
                snprintf(why, whylen, "unterminated \"${\" (missing '}')");
                return TL_ECONFIG;
            }
            rc =
                expand_ref(b, text + i + 2, (size_t)(close - text - i - 2), env, user, why, whylen);
            i = (size_t)(close - text) + 1;
        }
        if (rc)
            return rc;
        lit = i;
    }
    return buf_put(b, text + lit, len - lit);
}

int tl_config_interpolate(const char *text, size_t len, tl_config_getenv_fn env, void *user,
                          char **out, char *why, size_t whylen)
{
    buf b = {0};
    int rc = expand(&b, text, len, env ? env : default_env, user, why, whylen);
    if (rc == 0 && !b.p)
        rc = buf_put(&b, "", 0);
    if (rc) {
        free(b.p);
        *out = NULL;
        return rc;
    }
    *out = b.p;
    return 0;
}

/* ---------------------------------------------------------------- scalars */

/* Reads the decimal digits at *s into *v; false when they do not fit (all are read). */
static bool digits(const char **s, uint64_t *v)
{
    bool fits = true;
    *v = 0;
    for (; isdigit((unsigned char)**s); (*s)++) {
        unsigned d = (unsigned)(**s - '0');
        fits = fits && *v <= (UINT64_MAX - d) / 10;
        if (fits)
            *v = *v * 10 + d;
    }
    return fits;
}

int tl_config_parse_int_shown(const char *s, const char *shown, int64_t min, int64_t max,
                              int64_t *out, char *why, size_t whylen)
{
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p)) {
        snprintf(why, whylen,
                 *s ? "expected an integer, got \"%s\""
                    : "expected an integer, got an empty value%.0s",
                 shown);
        return TL_ECONFIG;
    }
    uint64_t mag;
    bool fits = digits(&p, &mag);
    if (*p) {
        snprintf(why, whylen, "expected an integer, got \"%s\"", shown);
        return TL_ECONFIG;
    }
    /* Compare magnitudes in unsigned space so INT64_MIN itself stays representable. */
    fits = fits && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX);
    int64_t v = !fits ? 0 : neg ? (int64_t)(0 - mag) : (int64_t)mag;
    if (!fits || v < min || v > max) {
        snprintf(why, whylen, "%s is out of range (%" PRId64 " to %" PRId64 ")", shown, min, max);
        return TL_ECONFIG;
    }
    *out = v;
    return 0;
}

int tl_config_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, char *why,
                        size_t whylen)
{
    return tl_config_parse_int_shown(s, s, min, max, out, why, whylen);
}

int tl_config_parse_bool_shown(const char *s, const char *shown, bool *out, char *why,
                               size_t whylen)
{
    if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) {
        *out = tolower((unsigned char)s[0]) == 't';
        return 0;
    }
    snprintf(why, whylen, "expected true or false, got \"%s\"", shown);
    return TL_ECONFIG;
}

int tl_config_parse_bool(const char *s, bool *out, char *why, size_t whylen)
{
    return tl_config_parse_bool_shown(s, s, out, why, whylen);
}

static int64_t unit_ms(const char *u)
{
    if (strcmp(u, "ms") == 0)
        return 1;
    if (strcmp(u, "s") == 0)
        return 1000;
    if (strcmp(u, "m") == 0)
        return 60 * 1000;
    if (strcmp(u, "h") == 0)
        return 60 * 60 * 1000;
    return 0;
}

int tl_config_parse_duration_shown(const char *s, const char *shown, int64_t *ms, char *why,
                                   size_t whylen)
{
    if (*s == '-') {
        snprintf(why, whylen, "negative duration \"%s\"", shown);
        return TL_ECONFIG;
    }
    const char *p = s;
    uint64_t n;
    bool fits = digits(&p, &n);
    if (p == s) {
        snprintf(why, whylen,
                 *s ? DURATION_HINT ", got \"%s\"" : DURATION_HINT ", got an empty value%.0s",
                 shown);
        return TL_ECONFIG;
    }
    if (!*p) {
        snprintf(why, whylen, "duration \"%s\" has no unit (write %sms, %ss, %sm or %sh)", shown,
                 shown, shown, shown, shown);
        return TL_ECONFIG;
    }
    int64_t unit = unit_ms(p);
    if (!unit) {
        if (s == shown)
            snprintf(why, whylen, "unknown unit \"%s\" in duration \"%s\" (use ms, s, m or h)", p,
                     s);
        else
            snprintf(why, whylen, "unknown unit in duration \"%s\" (use ms, s, m or h)", shown);
        return TL_ECONFIG;
    }
    /* The bound keeps every later sum and product of durations far from overflowing. */
    if (!fits || n > (uint64_t)(TL_CONFIG_MAX_DURATION_MS / unit)) {
        snprintf(why, whylen, "duration \"%s\" is out of range (at most %lldh)", shown,
                 TL_CONFIG_MAX_DURATION_MS / 3600000);
        return TL_ECONFIG;
    }
    *ms = (int64_t)n * unit;
    return 0;
}

int tl_config_parse_duration(const char *s, int64_t *ms, char *why, size_t whylen)
{
    return tl_config_parse_duration_shown(s, s, ms, why, whylen);
}
