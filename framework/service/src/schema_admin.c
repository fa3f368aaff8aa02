/*
 * The admin endpoint's bearer token: `token` (a value, usually "${TL_ADMIN_TOKEN}") or
 * `token_file` (a file holding it, read when the config loads). A token is a secret:
 * no message quotes it and the dump masks it.
 *
 * In the loader's chain: called by schema.c; calls schema_nodes.c, plugins.c and
 * loader.c, nothing above.
 */
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "schema_int.h"

typedef tl_config_loader loader;
typedef tl_config_pos pos;

/* The most bytes a token file may hold: a token is a line, not a document. */
#define TOKEN_FILE_MAX 4096

/* Why text cannot be sent in an Authorization header, or NULL when it can. */
static const char *token_unfit(const char *text)
{
    if (!*text)
        return "must not be empty";
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return "must not hold blanks or control characters (it is sent as "
                   "\"Authorization: Bearer TOKEN\")";
    return NULL;
}

/* Reads the token from the file at path (without its final line break) into ld->cfg;
 * NULL with why set otherwise. Refuses what is not a small regular file. */
static char *read_token(loader *ld, const char *path, bool *shared, char *why, size_t whylen)
{
    char *buf = NULL;
    size_t n = 0;
    mode_t mode = 0;
    int rc =
        tl_config_read_file(path, TOKEN_FILE_MAX, "a token file", &buf, &n, &mode, why, whylen);
    if (rc == TL_ENOMEM) {
        ld->oom = true;
        snprintf(why, whylen, "out of memory");
    }
    if (rc != 0)
        return NULL;
    *shared = (mode & (S_IRGRP | S_IROTH)) != 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    char *token = NULL;
    const char *unfit = NULL;
    if (memchr(buf, '\0', n))
        snprintf(why, whylen, "the token must not hold a NUL byte");
    else if ((unfit = token_unfit(buf)) != NULL)
        snprintf(why, whylen, "the token in the file %s", unfit);
    else if (!(token = tl_config_strndup(ld, buf, n)))
        snprintf(why, whylen, "out of memory");
    free(buf);
    return token;
}

void tl_schema_load_admin_token(loader *ld, struct fy_node *map)
{
    struct fy_node *tk = tl_schema_lookup_key(map, "token");
    struct fy_node *fk = tl_schema_lookup_key(map, "token_file");
    if (tk && fk) {
        tl_config_report(ld, tl_config_node_pos(ld, fk), "admin.token_file",
                         "give token or token_file, not both");
        return;
    }
    if (tk) {
        char *token = tl_schema_get_str(ld, map, "admin", "token");
        const char *unfit = token ? token_unfit(token) : NULL;
        if (unfit)
            tl_config_report(ld, tl_config_node_pos(ld, tl_schema_lookup(map, "token")),
                             "admin.token", "%s", unfit);
        else
            ld->cfg->admin_token = token;
        return;
    }
    char *named = fk ? tl_schema_get_str(ld, map, "admin", "token_file") : NULL;
    char *path = named ? tl_config_file_path(ld, named) : NULL;
    if (!path)
        return;
    pos p = tl_config_node_pos(ld, tl_schema_lookup(map, "token_file"));
    char why[WHY_LEN];
    bool shared = false;
    ld->cfg->admin_token = read_token(ld, path, &shared, why, sizeof(why));
    ld->cfg->admin_token_file = named;
    if (!ld->cfg->admin_token)
        tl_config_report(ld, p, "admin.token_file", "%s", why);
    else if (shared)
        tl_config_note(ld, p, "admin.token_file",
                       "the file is readable by group or others; chmod 600 keeps the token yours");
}
