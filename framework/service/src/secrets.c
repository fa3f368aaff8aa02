/*
 * What a config must never print: the values of keys whose names say secret
 * (tl_config_is_secret) and the password inside a URL ("scheme://user:pass@host").
 * dump.c masks both in what it writes; loader.c masks URL passwords in messages.
 *
 * In the loader's chain: a leaf at the bottom, called by loader.c and dump.c; calls
 * nothing of the loader.
 */
#include <string.h>
#include <strings.h>

#include "config_int.h"

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* "key" catches api_key, ssl.key, private_key_pem and their kind; a name that merely
 * contains it (monkey) is masked too, which costs a dump nothing it needs. */
bool tl_config_is_secret(const char *key)
{
    static const char *const words[] = {"password", "passwd",     "secret",          "token",
                                        "key",      "credential", "sasl.oauthbearer"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (contains_nocase(key, words[i]))
            return true;
    return false;
}

/*
 * Where the password of the first URL at or after s ends (its last '@' before a blank
 * or a quote, since passwords are seldom percent-encoded as they should be), with
 * *pass at its start (after the first ':' following "://"); NULL when there is none.
 */
static const char *url_password(const char *s, const char **pass)
{
    const char *sep = strstr(s, "://");
    if (!sep || sep == s)
        return NULL;
    const char *user = sep + 3;
    const char *end = user + strcspn(user, " \t\n\"'`<>"), *at = NULL;
    for (const char *p = user; p < end; p++)
        at = *p == '@' ? p : at;
    const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (!colon)
        return NULL;
    *pass = colon + 1;
    return at;
}

bool tl_config_has_url_password(const char *s)
{
    const char *pass, *sep;
    for (const char *p = s; (sep = strstr(p, "://")); p = sep + 3)
        if (url_password(p, &pass))
            return true;
    return false;
}

/* Appends c to out (cap bytes) at *n when it fits, counting it either way. */
static void put(char *out, size_t cap, size_t *n, char c)
{
    if (*n + 1 < cap)
        out[*n] = c;
    (*n)++;
}

size_t tl_config_mask_urls(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = s; *p;) {
        const char *pass = NULL, *sep = strstr(p, "://");
        const char *at = sep ? url_password(p, &pass) : NULL;
        /* Copies up to the password (or past "://", or to the end), then the mask. */
        const char *upto = at ? pass : sep ? sep + 3 : p + strlen(p);
        for (; p < upto; p++)
            put(out, cap, &n, *p);
        for (const char *m = TL_CONFIG_MASK; at && *m; m++)
            put(out, cap, &n, *m);
        p = at ? at : p;
    }
    if (cap)
        out[n < cap ? n : cap - 1] = '\0';
    return n;
}
