/*
 * The framing between the service and its worker processes (isolation: process), in
 * the request ring they share (ring.c) or, for a message too large for it, over the
 * stream socket each has. Every frame is a type byte, a 32-bit length and a body. To
 * the worker, 'M': a message,
 *
 *   u32 attempt, i32 partition, i64 offset, i64 timestamp_ms,
 *   origin, payload, key (length 0xffffffff: none), u32 nheaders, then name and value
 *   of each
 *
 * where each byte string is a u32 length and its bytes; numbers in the host's order
 * (both ends are the same program); and 'C': cancel, whose body is the u64 number of
 * the message meant (the worker numbers the messages it reads from 1), so that a
 * cancel crossing its message's result never cancels the next one. Results do not
 * come back this way but through memory the two share (ring.c); from the worker,
 * the socket carries 'W', a wake-up (no body), and 'E', the outputs a message's
 * handler emitted (tl_handler_emit), written before its result:
 *
 *   u64 message number, u32 count, then for each: u32 output index (in the route's
 *   outputs), payload, key (as in 'M'), u32 nheaders, then name (with its NUL) and
 *   value of each
 *
 * and its end tells that the worker died.
 *
 * Several frames travel back to back: readers take what a read() gives into a buffer
 * (tl_frame_in) and split it into frames, so one wake-up handles all that arrived.
 *
 * The route's params are not sent: a worker is forked from the service after the
 * config was loaded, so it has them already.
 *
 * Thread rules: none; each socket is written by one thread at a time, and read by one.
 */
#include "runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NO_KEY UINT32_MAX

int tl__frame_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return TL_ESYS;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int tl__frame_read(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && got == 0)
            return TL_ECLOSED;
        if (n <= 0)
            return TL_ESYS;
        got += (size_t)n;
    }
    return 0;
}

typedef tl_frame_out out;

static void put(out *o, const void *v, size_t len)
{
    if (o->oom)
        return;
    if (o->n + len > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + len)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, v, len);
    o->n += len;
}

static void put_bytes(out *o, const void *v, size_t len, bool absent)
{
    uint32_t l = absent ? NO_KEY : (uint32_t)len;
    put(o, &l, sizeof(l));
    if (!absent)
        put(o, v, len);
}

/* Ends the frame begun at start: writes its length, or takes it back (TL_ENOMEM) when
 * it did not fit in memory or in a frame. */
static int end_frame(out *o, size_t start)
{
    if (o->oom || o->n - start - 5 > TL_FRAME_MAX) {
        o->n = start;
        o->oom = false;
        return TL_ENOMEM;
    }
    uint32_t len = (uint32_t)(o->n - start - 5);
    memcpy(o->p + start + 1, &len, sizeof(len));
    return 0;
}

int tl__frame_put_msg(tl_frame_out *o, const tl_msg *m, unsigned attempt)
{
    size_t start = o->n;
    uint32_t len = 0, a = attempt, nh = (uint32_t)m->nheaders;
    put(o, "M", 1);
    put(o, &len, sizeof(len)); /* filled in by end_frame */
    put(o, &a, sizeof(a));
    put(o, &m->partition, sizeof(m->partition));
    put(o, &m->offset, sizeof(m->offset));
    put(o, &m->timestamp_ms, sizeof(m->timestamp_ms));
    put_bytes(o, m->origin, m->origin ? strlen(m->origin) : 0, false);
    put_bytes(o, m->payload, m->len, false);
    put_bytes(o, m->key, m->key_len, m->key == NULL);
    put(o, &nh, sizeof(nh));
    for (size_t i = 0; i < m->nheaders; i++) {
        put_bytes(o, m->headers[i].name, strlen(m->headers[i].name), false);
        put_bytes(o, m->headers[i].value, m->headers[i].len, false);
    }
    return end_frame(o, start);
}

int tl__frame_put_emits(tl_frame_out *o, uint64_t seq, size_t n, const uint32_t *index,
                        const tl_out_msg *const *msgs)
{
    size_t start = o->n;
    uint32_t len = 0, count = (uint32_t)n;
    put(o, "E", 1);
    put(o, &len, sizeof(len)); /* filled in by end_frame */
    put(o, &seq, sizeof(seq));
    put(o, &count, sizeof(count));
    for (size_t i = 0; i < n; i++) {
        const tl_out_msg *m = msgs[i];
        uint32_t nh = (uint32_t)m->nheaders;
        put(o, &index[i], sizeof(index[i]));
        put_bytes(o, m->payload, m->len, false);
        put_bytes(o, m->key, m->key_len, m->key == NULL);
        put(o, &nh, sizeof(nh));
        for (size_t h = 0; h < m->nheaders; h++) {
            put_bytes(o, m->headers[h].name, strlen(m->headers[h].name) + 1, false);
            put_bytes(o, m->headers[h].value, m->headers[h].len, false);
        }
    }
    return end_frame(o, start);
}

int tl__frame_flush(int fd, tl_frame_out *o)
{
    int rc = o->n ? tl__frame_write(fd, o->p, o->n) : 0;
    o->n = 0;
    return rc;
}

void tl__frame_out_free(tl_frame_out *o)
{
    free(o->p);
    *o = (tl_frame_out){0};
}

/* A cursor over a received body; ok turns false past its end. */
typedef struct in {
    char *p, *end;
    bool ok;
} in;

static void get(in *c, void *v, size_t len)
{
    if (!c->ok || (size_t)(c->end - c->p) < len) {
        c->ok = false;
        return;
    }
    memcpy(v, c->p, len);
    c->p += len;
}

/* A byte string, left in place (NULL for an absent key); strings that must end in a
 * NUL are copied out by get_str. */
static char *get_bytes(in *c, uint32_t *len)
{
    get(c, len, sizeof(*len));
    if (!c->ok || *len == NO_KEY)
        return NULL;
    if ((size_t)(c->end - c->p) < *len) {
        c->ok = false;
        return NULL;
    }
    char *at = c->p;
    c->p += *len;
    return at;
}

/* Copies a string out of the body into the text area after it. */
static const char *get_str(in *c, char **text)
{
    uint32_t len = 0;
    char *at = get_bytes(c, &len);
    if (!c->ok)
        return NULL;
    char *s = *text;
    memcpy(s, at ? at : "", at ? len : 0);
    s[at ? len : 0] = '\0';
    *text += (at ? len : 0) + 1;
    return s;
}

/* Makes *p hold at least need bytes, keeping it when it does already; false when out
 * of memory (*p is then as it was). */
static bool reserve(void **p, size_t *cap, size_t need)
{
    if (*cap >= need)
        return true;
    void *n = realloc(*p, need);
    if (!n)
        return false;
    *p = n;
    *cap = need;
    return true;
}

int tl__frame_decode_msg(const char *body, uint32_t len, tl_frame_msg *fm)
{
    tl_frame_msg keep = *fm;
    *fm = (tl_frame_msg){.buf = keep.buf,
                         .buf_cap = keep.buf_cap,
                         .headers = keep.headers,
                         .headers_cap = keep.headers_cap};
    /* The body, then room for the strings that need a NUL (origin, header names):
     * never more than the body itself plus one byte each. */
    if (!reserve((void **)&fm->buf, &fm->buf_cap, (size_t)len * 2 + 64))
        return TL_ENOMEM;
    memcpy(fm->buf, body, len);
    in c = {fm->buf, fm->buf + len, true};
    char *text = fm->buf + len;
    tl_msg *m = &fm->msg;
    uint32_t attempt = 0, nh = 0, l = 0;
    get(&c, &attempt, sizeof(attempt));
    get(&c, &m->partition, sizeof(m->partition));
    get(&c, &m->offset, sizeof(m->offset));
    get(&c, &m->timestamp_ms, sizeof(m->timestamp_ms));
    m->origin = get_str(&c, &text);
    m->payload = get_bytes(&c, &l);
    m->len = l;
    m->key = get_bytes(&c, &l);
    m->key_len = m->key ? l : 0;
    get(&c, &nh, sizeof(nh));
    if (!c.ok || nh > len / 8)
        return TL_ESYS;
    size_t hcap = fm->headers_cap * sizeof(*fm->headers);
    if (!reserve((void **)&fm->headers, &hcap, (nh ? nh : 1) * sizeof(*fm->headers)))
        return TL_ENOMEM;
    fm->headers_cap = hcap / sizeof(*fm->headers);
    for (uint32_t i = 0; c.ok && i < nh; i++) {
        fm->headers[i].name = get_str(&c, &text);
        fm->headers[i].value = get_bytes(&c, &l);
        fm->headers[i].len = l;
    }
    m->headers = fm->headers;
    m->nheaders = nh;
    fm->attempt = attempt;
    return c.ok ? 0 : TL_ESYS;
}

void tl__frame_msg_free(tl_frame_msg *fm)
{
    free(fm->headers);
    free(fm->buf);
    *fm = (tl_frame_msg){0};
}

int tl__frame_send_cancel(int fd, uint64_t seq)
{
    char buf[5 + sizeof(seq)];
    uint32_t len = sizeof(seq);
    buf[0] = TL_FRAME_CANCEL;
    memcpy(buf + 1, &len, sizeof(len));
    memcpy(buf + 5, &seq, sizeof(seq));
    return tl__frame_write(fd, buf, sizeof(buf));
}

/* Room a read() is given at least, so that small frames come many at a time. */
#define FILL_MIN 65536

int tl__frame_fill(tl_frame_in *in)
{
    if (in->start == in->end)
        in->start = in->end = 0;
    if (in->cap - in->end < FILL_MIN && in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->start = 0;
    }
    if (in->cap - in->end < FILL_MIN) {
        size_t cap = in->cap ? in->cap * 2 : FILL_MIN * 2;
        char *p = realloc(in->buf, cap);
        if (!p)
            return TL_ENOMEM;
        in->buf = p;
        in->cap = cap;
    }
    ssize_t n;
    while ((n = read(in->fd, in->buf + in->end, in->cap - in->end)) < 0 && errno == EINTR) {
    }
    if (n == 0)
        return TL_ECLOSED;
    if (n < 0)
        return TL_ESYS;
    in->end += (size_t)n;
    return (int)n;
}

int tl__frame_next(tl_frame_in *in, char *type, const char **body, uint32_t *len)
{
    size_t have = in->end - in->start;
    if (have < 5)
        return 0;
    const char *p = in->buf + in->start;
    memcpy(len, p + 1, sizeof(*len));
    if (*len > TL_FRAME_MAX)
        return TL_ESYS;
    if (have < 5 + (size_t)*len)
        return 0;
    *type = p[0];
    *body = p + 5;
    in->start += 5 + (size_t)*len;
    return 1;
}

void tl__frame_in_free(tl_frame_in *in)
{
    free(in->buf);
    in->buf = NULL;
    in->start = in->end = in->cap = 0;
}

int tl__frame_decode_emits(const char *body, uint32_t len, uint64_t *seq,
                           int (*each)(void *arg, uint32_t index, const tl_out_msg *m), void *arg)
{
    in c = {(char *)body, (char *)body + len, true};
    uint32_t n = 0;
    get(&c, seq, sizeof(*seq));
    get(&c, &n, sizeof(n));
    /* Each output takes 16 bytes at least: a count past that is garbage. */
    if (!c.ok || n > len / 16)
        return TL_ESYS;
    int rc = 0;
    for (uint32_t i = 0; c.ok && rc == 0 && i < n; i++) {
        uint32_t index = 0, l = 0, nh = 0;
        tl_out_msg m = {0};
        get(&c, &index, sizeof(index));
        m.payload = get_bytes(&c, &l);
        m.len = l;
        if (!m.payload)
            c.ok = false;
        char *key = get_bytes(&c, &l);
        m.key = key;
        m.key_len = key ? l : 0;
        get(&c, &nh, sizeof(nh));
        if (!c.ok || nh > len / 8)
            return TL_ESYS;
        tl_header *h = nh ? calloc(nh, sizeof(*h)) : NULL;
        if (nh && !h)
            return TL_ENOMEM;
        for (uint32_t k = 0; c.ok && k < nh; k++) {
            char *name = get_bytes(&c, &l);
            /* A name comes with its NUL, and has no other. */
            if (!name || l == 0 || memchr(name, '\0', l) != name + l - 1)
                c.ok = false;
            h[k].name = name;
            h[k].value = get_bytes(&c, &l);
            h[k].len = h[k].value ? l : 0;
            if (!h[k].value)
                c.ok = false;
        }
        m.headers = h;
        m.nheaders = nh;
        if (c.ok)
            rc = each(arg, index, &m);
        free(h);
    }
    return c.ok ? rc : TL_ESYS;
}
