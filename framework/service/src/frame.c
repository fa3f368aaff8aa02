/*
 * The framing between the service and its worker processes (isolation: process), over
 * one stream socket each. To the worker: a type byte, then for a message a 32-bit
 * length and the body
 *
 *   u32 attempt, i32 partition, i64 offset, i64 timestamp_ms,
 *   origin, payload, key (length 0xffffffff: none), u32 nheaders, then name and value
 *   of each
 *
 * where each byte string is a u32 length and its bytes; numbers in the host's order
 * (both ends are the same program). A cancel is the type byte alone, which a worker
 * between messages ignores (it may cross the result it was meant for). From the
 * worker: a 32-bit length, an i32 result code and the error text.
 *
 * The route's params are not sent: a worker is forked from the service after the
 * config was loaded, so it has them already.
 *
 * Thread rules: none; each socket is used by one thread at a time.
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

/* A growing buffer for one frame. */
typedef struct out {
    char *p;
    size_t n, cap;
    bool oom;
} out;

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

int tl__frame_send_msg(int fd, const tl_msg *m, unsigned attempt)
{
    out o = {0};
    uint32_t len = 0, a = attempt, nh = (uint32_t)m->nheaders;
    put(&o, "M", 1);
    put(&o, &len, sizeof(len)); /* filled in below */
    put(&o, &a, sizeof(a));
    put(&o, &m->partition, sizeof(m->partition));
    put(&o, &m->offset, sizeof(m->offset));
    put(&o, &m->timestamp_ms, sizeof(m->timestamp_ms));
    put_bytes(&o, m->origin, m->origin ? strlen(m->origin) : 0, false);
    put_bytes(&o, m->payload, m->len, false);
    put_bytes(&o, m->key, m->key_len, m->key == NULL);
    put(&o, &nh, sizeof(nh));
    for (size_t i = 0; i < m->nheaders; i++) {
        put_bytes(&o, m->headers[i].name, strlen(m->headers[i].name), false);
        put_bytes(&o, m->headers[i].value, m->headers[i].len, false);
    }
    int rc = o.oom || o.n - 5 > TL_FRAME_MAX ? TL_ENOMEM : 0;
    if (rc == 0) {
        len = (uint32_t)(o.n - 5);
        memcpy(o.p + 1, &len, sizeof(len));
        rc = tl__frame_write(fd, o.p, o.n);
    }
    free(o.p);
    return rc;
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

int tl__frame_recv_msg(int fd, tl_frame_msg *fm)
{
    *fm = (tl_frame_msg){0};
    uint32_t len;
    int rc = tl__frame_read(fd, &len, sizeof(len));
    if (rc != 0)
        return rc == TL_ECLOSED ? TL_ESYS : rc;
    if (len > TL_FRAME_MAX)
        return TL_ESYS;
    /* The body, then room for the strings that need a NUL (origin, header names):
     * never more than the body itself plus one byte each. */
    fm->buf = malloc((size_t)len * 2 + 64);
    if (!fm->buf || tl__frame_read(fd, fm->buf, len) != 0)
        return TL_ESYS;
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
    fm->headers = calloc(nh ? nh : 1, sizeof(*fm->headers));
    for (uint32_t i = 0; fm->headers && c.ok && i < nh; i++) {
        fm->headers[i].name = get_str(&c, &text);
        fm->headers[i].value = get_bytes(&c, &l);
        fm->headers[i].len = l;
    }
    m->headers = fm->headers;
    m->nheaders = nh;
    fm->attempt = attempt;
    return fm->headers && c.ok ? 0 : TL_ESYS;
}

void tl__frame_msg_free(tl_frame_msg *fm)
{
    free(fm->headers);
    free(fm->buf);
    *fm = (tl_frame_msg){0};
}

int tl__frame_send_result(int fd, int err, const char *text)
{
    size_t tl = text ? strnlen(text, 4096) : 0;
    char buf[4 + 4 + 4096];
    uint32_t len = (uint32_t)(sizeof(int32_t) + tl);
    int32_t e = err;
    memcpy(buf, &len, 4);
    memcpy(buf + 4, &e, 4);
    if (tl)
        memcpy(buf + 8, text, tl);
    return tl__frame_write(fd, buf, 8 + tl);
}

int tl__frame_recv_result(int fd, int *err, char *text, size_t cap)
{
    uint32_t len;
    int32_t e;
    int rc = tl__frame_read(fd, &len, sizeof(len));
    if (rc != 0)
        return rc;
    if (len < 4 || len > 4 + 4096 || tl__frame_read(fd, &e, sizeof(e)) != 0)
        return TL_ESYS;
    char buf[4096];
    size_t tl = len - 4;
    if (tl__frame_read(fd, buf, tl) != 0)
        return TL_ESYS;
    size_t n = tl < cap - 1 ? tl : cap - 1;
    memcpy(text, buf, n);
    text[n] = '\0';
    *err = e;
    return 0;
}
