/*
 * Messages from a file or standard input, one a line, for `taskloop produce --from`.
 * A line is its payload; with a key, KEY<TAB>PAYLOAD; with headers, NAME=VALUE;...<TAB>
 * before that. The payload is the rest of the line, tabs and all, without the line's
 * end (LF, or CR LF). An empty key field means no key, an empty headers field none.
 *
 * Thread rules: one thread reads a tl_cli_lines at a time (the producer's).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

struct tl_cli_lines {
    FILE *in;
    const char *name; /* in messages: the path, or "stdin" */
    tl_cli_lines_opts opts;
    char *line; /* getline's buffer */
    size_t cap;
    uint64_t lineno;
    long long size; /* bytes in the file; -1 when unknown */
    long long read; /* bytes read so far */
};

tl_cli_lines *tl_cli_lines_open(const char *path, const tl_cli_lines_opts *o)
{
    tl_cli_lines *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        tl_cli_err("produce: out of memory");
        return NULL;
    }
    bool std = strcmp(path, "-") == 0;
    ls->in = std ? stdin : fopen(path, "r");
    ls->name = std ? "stdin" : path;
    ls->opts = *o;
    ls->size = -1;
    struct stat sb;
    if (!ls->in || fstat(fileno(ls->in), &sb) != 0) {
        tl_cli_err("produce: --from %s: %s", path, strerror(errno));
        tl_cli_lines_close(ls);
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        tl_cli_err("produce: --from %s: is a directory", path);
        tl_cli_lines_close(ls);
        return NULL;
    }
    if (S_ISREG(sb.st_mode))
        ls->size = (long long)sb.st_size;
    return ls;
}

void tl_cli_lines_close(tl_cli_lines *ls)
{
    if (!ls)
        return;
    if (ls->in && ls->in != stdin)
        fclose(ls->in);
    free(ls->line);
    free(ls);
}

double tl_cli_lines_done(const tl_cli_lines *ls)
{
    if (ls->size < 0)
        return -1.0;
    return ls->size == 0 ? 1.0 : (double)ls->read / (double)ls->size;
}

static int bad_line(const tl_cli_lines *ls, const char *why)
{
    tl_cli_err("produce: %s:%llu: %s", ls->name, (unsigned long long)ls->lineno, why);
    return -1;
}

/* Splits the headers field "A=1;B=2" (cut out of the line, so writable) into m. */
static int parse_headers(const tl_cli_lines *ls, char *field, tl_cli_out *m)
{
    m->nheaders = 0;
    for (char *p = field; *p;) {
        char *end = p + strcspn(p, ";");
        bool last = *end == '\0';
        *end = '\0';
        char *eq = strchr(p, '=');
        if (!eq || eq == p)
            return bad_line(ls, "a header is not NAME=VALUE (headers: NAME=VALUE;...)");
        if (m->nheaders == TL_CLI_MAX_HEADERS)
            return bad_line(ls, "more than 32 headers");
        *eq = '\0';
        m->headers[m->nheaders++] = (tl_kv){p, eq + 1};
        p = last ? end : end + 1;
    }
    return 1;
}

/* Cuts the field before the first TAB off *rest; NULL when there is no TAB. */
static char *cut_field(char **rest)
{
    char *tab = strchr(*rest, '\t');
    if (!tab)
        return NULL;
    *tab = '\0';
    char *field = *rest;
    *rest = tab + 1;
    return field;
}

static int lines_next(void *user, uint64_t i, tl_cli_out *m)
{
    (void)i;
    tl_cli_lines *ls = user;
    ssize_t n = getline(&ls->line, &ls->cap, ls->in);
    if (n < 0) {
        if (ferror(ls->in))
            return bad_line(ls, strerror(errno));
        return 0;
    }
    ls->lineno++;
    ls->read += n;
    size_t len = (size_t)n;
    if (len > 0 && ls->line[len - 1] == '\n')
        ls->line[--len] = '\0';
    if (len > 0 && ls->line[len - 1] == '\r')
        ls->line[--len] = '\0';
    if (memchr(ls->line, '\0', len))
        return bad_line(ls, "a NUL byte in the line");
    char *rest = ls->line;
    *m = (tl_cli_out){.marker = TL_CLI_PLAIN};
    if (ls->opts.headers) {
        char *field = cut_field(&rest);
        if (!field)
            return bad_line(ls, "no TAB after the headers (--headers: NAME=VALUE;...<TAB>)");
        if (parse_headers(ls, field, m) < 0)
            return -1;
    }
    if (ls->opts.key) {
        char *key = cut_field(&rest);
        if (!key)
            return bad_line(ls, "no TAB after the key (--format key-value: KEY<TAB>PAYLOAD)");
        m->key = *key ? key : NULL;
        m->key_len = strlen(key);
    }
    m->payload = rest;
    m->len = len - (size_t)(rest - ls->line);
    return 1;
}

tl_cli_feed tl_cli_lines_feed(tl_cli_lines *ls)
{
    return (tl_cli_feed){.next = lines_next, .user = ls};
}
