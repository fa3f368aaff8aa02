/*
 * A minimal HTTP/1.0 GET over a TCP socket, for `taskloop top` reading an admin
 * endpoint: plain http only, the whole answer read until the server closes (the admin
 * endpoint closes after each HTTP/1.0 answer). No library for this: a GET to a
 * service's admin port needs no redirects, TLS or chunked transfer.
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

/* The most an answer may hold: /stats and /tasks are capped far below this. */
#define MAX_ANSWER (16u << 20)
/* Connecting, and each read or write, gives up after this long. */
#define IO_TIMEOUT_S 3

int tl_cli_url_parse(const char *url, tl_cli_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        snprintf(err, errlen, "'%s': only http://HOST:PORT URLs are supported", url);
        return -1;
    }
    p += 7;
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = NULL, *hstart = p, *hend = p + hostport;
    if (*p == '[') { /* [IPv6] */
        const char *close = memchr(p, ']', hostport);
        hstart = p + 1;
        hend = close ? close : p;
        colon = close && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(p, ':', hostport);
        hend = colon ? colon : hend;
    }
    size_t hlen = hend > hstart ? (size_t)(hend - hstart) : 0;
    size_t plen = colon ? (size_t)(p + hostport - colon - 1) : 0;
    if (hlen == 0 || hlen >= sizeof(out->host) || (colon && (plen == 0 || plen >= 6))) {
        snprintf(err, errlen, "'%s': not http://HOST:PORT", url);
        return -1;
    }
    memcpy(out->host, hstart, hlen);
    if (colon) {
        memcpy(out->port, colon + 1, plen);
        for (size_t i = 0; i < plen; i++)
            if (out->port[i] < '0' || out->port[i] > '9') {
                snprintf(err, errlen, "'%s': the port is not a number", url);
                return -1;
            }
    } else {
        strcpy(out->port, "80");
    }
    /* A path prefix (an endpoint behind a proxy), without its final slash. */
    snprintf(out->prefix, sizeof(out->prefix), "%s", slash ? slash : "");
    size_t n = strlen(out->prefix);
    if (n && out->prefix[n - 1] == '/')
        out->prefix[n - 1] = '\0';
    return 0;
}

/* A connected socket with timeouts set, or -1 with why. */
static int dial(const tl_cli_url *u, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", u->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, why = 0;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            why = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            why = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "%s:%s: %s", u->host, u->port, strerror(why));
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the server closes; the answer NUL-terminated in *out (malloc'd). */
static int read_all(int fd, char **out, size_t *len, char *err, size_t errlen)
{
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (n + 1 >= cap) {
            char *more = cap < MAX_ANSWER ? realloc(buf, cap * 2) : NULL;
            if (!more) {
                free(buf);
                snprintf(err, errlen, "the answer is too large");
                return -1;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s", errno == EAGAIN ? "no answer in time" : strerror(errno));
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int tl_cli_http_get(const tl_cli_url *u, const char *path, const char *token, int *status,
                    char **body, char *err, size_t errlen)
{
    *body = NULL;
    *status = 0;
    int fd = dial(u, err, errlen);
    if (fd < 0)
        return -1;
    char req[2048];
    int len = snprintf(req, sizeof(req),
                       "GET %s%s HTTP/1.0\r\nHost: %s\r\nAccept: */*\r\n%s%s%sConnection: "
                       "close\r\n\r\n",
                       u->prefix, path, u->host, token ? "Authorization: Bearer " : "",
                       token ? token : "", token ? "\r\n" : "");
    char *answer = NULL;
    size_t n = 0;
    int rc = len > 0 && (size_t)len < sizeof(req) ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "the request is too long");
    else if (send_all(fd, req, (size_t)len) != 0) {
        snprintf(err, errlen, "cannot send: %s", strerror(errno));
        rc = -1;
    } else
        rc = read_all(fd, &answer, &n, err, errlen);
    close(fd);
    if (rc != 0)
        return -1;
    const char *end = strstr(answer, "\r\n\r\n");
    if (strncmp(answer, "HTTP/1.", 7) != 0 || strlen(answer) < 12 || !end) {
        snprintf(err, errlen, "not an HTTP answer");
        free(answer);
        return -1;
    }
    *status = atoi(answer + 9);
    size_t off = (size_t)(end + 4 - answer);
    memmove(answer, answer + off, n - off + 1);
    *body = answer;
    return 0;
}
