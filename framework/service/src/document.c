/*
 * From a config's text to the document the schema reads, within bounds.
 *
 * A pass over the bytes refuses what is not UTF-8 text, or has a NUL byte, or has more
 * than TL_CONFIG_MAX_OPEN_BRACKETS brackets open at once (libfyaml's scanner would keep
 * every token until the outermost closed: 300 MB for a 1 MiB "[[[[..."). A pass over
 * libfyaml's events, which builds nothing, then checks what the text may hold: valid
 * YAML, exactly one document, at most TL_CONFIG_MAX_ANCHORS anchors (libfyaml spends
 * the square of their number taking them off a document, as freeing it does), at most
 * TL_CONFIG_MAX_NODES nodes (what the tree costs). Only then is the tree built, without
 * libfyaml's own resolution and duplicate-key check, which resolve.c does in linear
 * time and within bounds.
 *
 * In the loader's chain: called by config.c; calls resolve.c and loader.c.
 */
#include <libfyaml.h>
#include <string.h>

#include "config_int.h"

static void swallow_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag, (void)user, (void)buf, (void)len;
}

/* A diag that collects libfyaml's errors rather than printing them: the library
 * reports, the program decides. NULL when out of memory. */
static struct fy_diag *collecting_diag(void)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = swallow_output;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (diag)
        fy_diag_set_collect_errors(diag, true);
    return diag;
}

/* A parser of text reporting into diag; NULL when out of memory. */
static struct fy_parser *parser_of(struct fy_diag *diag, const char *text, size_t len)
{
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_ALLOW_DUPLICATE_KEYS,
        .diag = diag,
    };
    struct fy_parser *fyp = diag ? fy_parser_create(&pcfg) : NULL;
    if (fyp && fy_parser_set_string(fyp, text, len) != 0) {
        fy_parser_destroy(fyp);
        fyp = NULL;
    }
    return fyp;
}

/* Whether 1-based line `line` of text has an unquoted ${ after a [ or { of its own: a
 * plain scalar inside a flow collection ends at its first {, so `[${TOPIC}]` is a
 * syntax error that says nothing about the variable. */
static bool var_in_flow(const char *text, size_t len, int line)
{
    size_t i = 0;
    for (int l = 1; l < line && i < len; i++)
        l += text[i] == '\n';
    bool flow = false;
    char quote = 0;
    for (; i < len && text[i] != '\n'; i++) {
        char c = text[i];
        if (quote) {
            quote = c == quote ? 0 : quote;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '$' && i + 1 < len && text[i + 1] == '{') {
            if (flow)
                return true;
            i++; /* its { is the variable's, not a flow collection's */
        } else if (c == '[' || c == '{') {
            flow = true;
        }
    }
    return false;
}

/* Reports libfyaml's own errors (syntax), which carry 1-based marks, with a hint when
 * the line holds a ${VAR} inside [ ] or { } unquoted (the likely cause). */
static void report_parse_errors(tl_config_loader *ld, struct fy_diag *diag, const char *text,
                                size_t len)
{
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(diag, &it)))
        if (e->type >= FYET_ERROR)
            tl_config_report(ld, (tl_config_pos){e->line, e->column}, "", "%s%s", e->msg,
                             var_in_flow(text, len, e->line)
                                 ? " (inside [ ] or { }, quote a variable: \"${VAR}\")"
                                 : "");
}

/* The length of the UTF-8 character at s[0..n) (1 to 4), or 0 when s starts with a NUL
 * or with no valid character: a stray, truncated or overlong sequence, a surrogate, or
 * a code point past U+10FFFF. */
static size_t char_len(const unsigned char *s, size_t n)
{
    if (s[0] == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* The second byte's range rules out overlongs, surrogates and past U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* Where the first byte of text[0..len) that is not UTF-8 text (a NUL, or no valid
 * character) is, counting columns in characters as libfyaml does; {0, 0} when there is
 * none. *nul says whether it is a NUL. */
static tl_config_pos bad_byte_pos(const char *text, size_t len, bool *nul)
{
    const unsigned char *s = (const unsigned char *)text;
    tl_config_pos p = {1, 1};
    for (size_t i = 0; i < len;) {
        size_t n = char_len(s + i, len - i);
        if (n == 0) {
            *nul = s[i] == 0;
            return p;
        }
        p = s[i] == '\n' ? (tl_config_pos){p.line + 1, 1} : (tl_config_pos){p.line, p.col + 1};
        i += n;
    }
    return (tl_config_pos){0, 0};
}

static tl_config_pos token_pos(struct fy_token *t)
{
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    return m ? (tl_config_pos){m->line + 1, m->column + 1} : (tl_config_pos){1, 1};
}

/* Where the (TL_CONFIG_MAX_OPEN_BRACKETS + 1)th '[' or '{' open at once in the UTF-8
 * text[0..len) is, counting columns in characters; {0, 0} when there is none. Counted
 * without regard to quotes or comments, so that no text can hide its nesting. */
static tl_config_pos deep_bracket_pos(const char *text, size_t len)
{
    tl_config_pos p = {1, 0};
    size_t open = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xc0) != 0x80) /* a character's first byte */
            p.col++;
        if (c == '\n')
            p = (tl_config_pos){p.line + 1, 0};
        else if ((c == '[' || c == '{') && ++open > TL_CONFIG_MAX_OPEN_BRACKETS)
            return p;
        else if ((c == ']' || c == '}') && open > 0)
            open--;
    }
    return (tl_config_pos){0, 0};
}

/* The token that starts the node an event starts or is, or NULL for other events. */
static struct fy_token *node_token(struct fy_event *ev)
{
    switch (ev->type) {
    case FYET_SCALAR:
        return ev->scalar.value;
    case FYET_ALIAS:
        return ev->alias.anchor;
    case FYET_SEQUENCE_START:
        return ev->sequence_start.sequence_start;
    case FYET_MAPPING_START:
        return ev->mapping_start.mapping_start;
    default:
        return NULL;
    }
}

/* The anchor an event defines, or NULL. */
static struct fy_token *anchor_of(struct fy_event *ev)
{
    switch (ev->type) {
    case FYET_SCALAR:
        return ev->scalar.anchor;
    case FYET_SEQUENCE_START:
        return ev->sequence_start.anchor;
    case FYET_MAPPING_START:
        return ev->mapping_start.anchor;
    default:
        return NULL;
    }
}

/* The first pass: true when the text is worth building a document from. */
static bool scan(tl_config_loader *ld, const char *text, size_t len)
{
    struct fy_diag *diag = collecting_diag();
    struct fy_parser *fyp = parser_of(diag, text, len);
    if (!fyp) {
        if (diag)
            fy_diag_destroy(diag);
        ld->oom = true;
        return false;
    }
    size_t before = ld->nerrors, docs = 0, anchors = 0, nodes = 0;
    struct fy_event *ev;
    while (ld->nerrors == before && (ev = fy_parser_parse(fyp))) {
        /* A second document's content would otherwise be silently ignored. */
        if (ev->type == FYET_DOCUMENT_START && ++docs == 2)
            tl_config_report(ld, token_pos(ev->document_start.document_start), "",
                             "a second YAML document; a config file holds exactly one");
        if (anchor_of(ev) && ++anchors == TL_CONFIG_MAX_ANCHORS + 1)
            tl_config_report(ld, token_pos(anchor_of(ev)), "", "more than %d anchors in one file",
                             TL_CONFIG_MAX_ANCHORS);
        if (node_token(ev) && ++nodes == TL_CONFIG_MAX_NODES + 1)
            tl_config_report(ld, token_pos(node_token(ev)), "",
                             "more than %d nodes in one file; a config holds far fewer",
                             TL_CONFIG_MAX_NODES);
        fy_parser_event_free(fyp, ev);
    }
    report_parse_errors(ld, diag, text, len);
    fy_parser_destroy(fyp);
    fy_diag_destroy(diag);
    return ld->nerrors == before;
}

bool tl_config_parse(tl_config_loader *ld, const char *text, size_t len, tl_config_doc *out)
{
    *out = (tl_config_doc){0};
    /* libfyaml 0.7 loops for ever on some invalid UTF-8 ("%\xff"), so it gets text only. */
    bool nul = false;
    tl_config_pos bad = bad_byte_pos(text, len, &nul);
    if (bad.line) {
        tl_config_report(ld, bad, "",
                         nul ? "a NUL byte; a config is text"
                             : "not valid UTF-8; a config is UTF-8 text");
        return false;
    }
    bad = deep_bracket_pos(text, len);
    if (bad.line) {
        tl_config_report(ld, bad, "",
                         "more than %d '[' or '{' open at once; a config nests at most 64 levels",
                         TL_CONFIG_MAX_OPEN_BRACKETS);
        return false;
    }
    if (!scan(ld, text, len))
        return false;
    ld->text = text;
    ld->text_len = len;
    out->diag = collecting_diag();
    out->parser = parser_of(out->diag, text, len);
    if (!out->parser) {
        ld->oom = true;
        return false;
    }
    size_t before = ld->nerrors;
    out->doc = fy_parse_load_document(out->parser);
    report_parse_errors(ld, out->diag, text, len);
    if (ld->nerrors != before)
        return false;
    /* An empty stream builds no document: the schema says so. */
    return !out->doc || tl_config_resolve(ld, out->doc);
}

void tl_config_doc_free(tl_config_doc *d)
{
    if (d->doc)
        fy_parse_document_destroy(d->parser, d->doc);
    if (d->parser)
        fy_parser_destroy(d->parser);
    if (d->diag)
        fy_diag_destroy(d->diag);
    *d = (tl_config_doc){0};
}
