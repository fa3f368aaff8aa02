/*
 * The state of one config load: the arena a config keeps everything in, the error
 * messages, where nodes of the YAML tree sit in the text, and the one bounded reader
 * of the files a config is or names (the config itself, admin.token_file).
 *
 * The bottom of the loader's chain: every other config file calls these, and they call
 * nothing of the loader but secrets.c (only libc and libfyaml besides).
 *
 * Everything a config keeps lives in one arena that tl_config_free releases at once,
 * so the validator's many early returns never leak.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"

#define WHY_LEN 512

/* ---------------------------------------------------------------- arena */

typedef struct block {
    struct block *next;
    size_t used, cap;
    max_align_t data[];
} block;

struct tl_config_mem {
    block *head;
};

tl_config_mem *tl_config_mem_new(void)
{
    return calloc(1, sizeof(tl_config_mem));
}

void tl_config_mem_free(tl_config_mem *mem)
{
    if (!mem)
        return;
    for (block *b = mem->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(mem);
}

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

char *tl_config_strdup(tl_config_loader *ld, const char *s)
{
    return tl_config_strndup(ld, s, strlen(s));
}

/* ---------------------------------------------------------------- reporting */

int tl_config_diag_add(tl_diag *diag, char *msg, bool error)
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
    diag->errors += error;
    return 0;
}

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

/* Appends "FILE:LINE:COL: KIND: PATH: what" to the diag; past the cap, only counts it. */
static void add_message(tl_config_loader *ld, const char *kind, tl_config_pos p, const char *path,
                        const char *fmt, va_list ap)
{
    char raw[WHY_LEN], masked[WHY_LEN], what[WHY_LEN];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    tl_config_mask_urls(raw, masked, sizeof(masked));
    escape_controls(what, sizeof(what), masked);
    if (!ld->diag)
        return;
    if (ld->diag->count - ld->first >= TL_CONFIG_MAX_MESSAGES) {
        ld->dropped++;
        return;
    }
    if (p.line <= 0)
        p = (tl_config_pos){1, 1};
    const char *sep = path && *path ? ": " : "";
    int n = snprintf(NULL, 0, "%s:%d:%d: %s: %s%s%s", ld->file, p.line, p.col, kind,
                     sep[0] ? path : "", sep, what);
    char *msg = malloc((size_t)n + 1);
    if (!msg) {
        ld->oom = true;
        return;
    }
    snprintf(msg, (size_t)n + 1, "%s:%d:%d: %s: %s%s%s", ld->file, p.line, p.col, kind,
             sep[0] ? path : "", sep, what);
    if (tl_config_diag_add(ld->diag, msg, kind[0] == 'e'))
        ld->oom = true;
}

void tl_config_report(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
{
    ld->nerrors++;
    va_list ap;
    va_start(ap, fmt);
    add_message(ld, "error", p, path, fmt, ap);
    va_end(ap);
}

void tl_config_note(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_message(ld, "note", p, path, fmt, ap);
    va_end(ap);
}

void tl_config_warn(tl_config_loader *ld, tl_config_pos p, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_message(ld, "warning", p, path, fmt, ap);
    va_end(ap);
}

const char *tl_config_file_kind(mode_t mode)
{
    return S_ISREG(mode)    ? "a regular file"
           : S_ISDIR(mode)  ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "a special file";
}

/* ---------------------------------------------------------------- reading files */

/*
 * Opened without blocking, so that a FIFO with no writer is refused rather than waited
 * on, and never read past max, so that /dev/zero or a growing file costs no more than
 * max bytes.
 */
int tl_config_read_file(const char *path, size_t max, const char *what, char **text, size_t *len,
                        mode_t *mode, char *why, size_t whylen)
{
    *text = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "cannot read the file: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return TL_ECONFIG;
    }
    if (mode)
        *mode = st.st_mode;
    int rc = TL_ECONFIG;
    if (!S_ISREG(st.st_mode))
        snprintf(why, whylen, "cannot read the file: it is %s, not a regular file",
                 tl_config_file_kind(st.st_mode));
    else if ((unsigned long long)st.st_size > max)
        snprintf(why, whylen, "the file is %lld bytes; %s may have at most %zu",
                 (long long)st.st_size, what, max);
    else if (!(*text = malloc(max + 2)))
        rc = TL_ENOMEM;
    size_t n = 0;
    ssize_t got = 1;
    while (*text && got > 0 && n <= max) {
        got = read(fd, *text + n, max + 1 - n);
        if (got > 0)
            n += (size_t)got;
        else if (got < 0 && errno == EINTR)
            got = 1;
    }
    close(fd);
    if (*text && got < 0)
        snprintf(why, whylen, "cannot read the file: %s", strerror(errno));
    else if (*text && n > max)
        snprintf(why, whylen, "the file grew past %zu bytes, the most %s may have", max, what);
    else if (*text)
        rc = 0;
    if (rc) {
        free(*text);
        *text = NULL;
        return rc;
    }
    (*text)[n] = '\0';
    *len = n;
    return 0;
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
        /* libfyaml marks a quoted scalar after its opening quote, an alias after its '*';
         * people count the quote and the star. */
        enum fy_node_style st = fy_node_get_style(n);
        int q = (st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED || st == FYNS_ALIAS) &&
                m->column > 0;
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
