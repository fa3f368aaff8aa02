/*
 * The admin endpoint: Prometheus metrics, the same figures as JSON, liveness and
 * readiness probes, the pending tasks as JSON and a dashboard page, over HTTP
 * (libmicrohttpd) while a service runs. This file is the server: the socket, the
 * dispatch of requests, replies and the probes. The bodies of /metrics, /stats,
 * /tasks and / come from admin_metrics.c, admin_stats.c, admin_tasks.c and the
 * generated admin_page.c (admin_int.h), which it calls and which call nothing here.
 *
 *   GET /         the dashboard: a static page whose script polls /stats and /tasks

 *   GET /metrics  Prometheus text format 0.0.4: the service counters, per-target
 *                 reroutes, committed offsets and the handler duration histogram
 *   GET /stats    the figures of /metrics as JSON (admin_stats.c); ?top=N&from=K
 *                 pages the partitions (N from 1 to STATS_TOP_MAX, 20 by default)
 *   GET /healthz  200 "ok" while the loop turns (housekeeping ran within
 *                 HEALTH_STALE_MS), else 503: a liveness probe
 *   GET /readyz   200 "ok" once started, while not draining, no route's breaker is
 *                 open, and healthy (the
 *                 stuck-worker cap is not exceeded), else 503 with the reason
 *   GET /tasks    asyncio's all_tasks() as JSON (see admin_tasks.c); 503 when the loop
 *                 does not answer within TL_ADMIN_TASKS_WAIT_MS
 * Any other path is 404; any other method on these paths is 405.
 *
 * With a token (admin.token), every request but the probes /healthz and /readyz and
 * the page at / must carry "Authorization: Bearer TOKEN", else it gets 401 (before any
 * 404 or 405, so that nothing about the endpoint shows without it). The page holds no
 * figure: its script asks for the token and sends it with each poll. The token is compared in time
 * that depends on its length only.
 *
 * The endpoint listens on loopback by default (an empty HOST too); another address is
 * allowed, and logged at warn (admin_exposed), naming whether a token guards it.
 *
 * The socket is bound here rather than by libmicrohttpd, so that a taken port or a bad
 * host fails with the system's reason, and so that port 0 can be reported. It is bound
 * when the service is built, so that the port is known (and a taken one fails the
 * build) before the run; connections made before the run wait in the listen backlog
 * until tl_service_run starts serving it.
 *
 * Thread rules: requests run on libmicrohttpd's polling thread, one at a time. They
 * read the service only through what is safe from any thread: the atomic counters,
 * the histogram, heartbeat_ms, tl_service_targets/partitions and tl_loop_workers;
 * /tasks asks the loop thread (admin_tasks.c). admin->closing is atomic: set by
 * tl__admin_close, it ends /tasks waits early so that stopping never waits for a loop
 * that has ended.
 */
#include "admin.h"
#include "admin_int.h"
#include "runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loop that has not run housekeeping (every 50ms) for this long is stuck. */
#define HEALTH_STALE_MS 5000
/* Partitions /stats lists when not told, and at most. */
#define STATS_TOP_DEFAULT 20
#define STATS_TOP_MAX 1000

struct tl_admin {
    tl_service *svc;
    int fd;                    /* the listening socket, bound when the service is built */
    struct MHD_Daemon *daemon; /* serving it while tl_service_run runs; NULL before */
    _Atomic bool closing;
};

/* ---------------------------------------------------------------- listening socket */

/* Splits "HOST:PORT" (HOST may be "[v6]", empty or "*" for every address). */
static int split_listen(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon[1] == '\0' || strlen(colon + 1) >= portlen)
        return TL_EINVAL;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return TL_EINVAL;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hostlen)
        return TL_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    if (n == 0)
        snprintf(host, hostlen, "127.0.0.1");
    else if (strcmp(host, "*") == 0)
        host[0] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

/* Binds and listens on the first address of addr that accepts; -1 with why. */
static int bind_listen(const char *addr, char *why, size_t whylen)
{
    char host[256], port[8];
    if (split_listen(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(why, whylen, "not HOST:PORT");
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        snprintf(why, whylen, "%s", gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Lets a restarted service rebind while old connections sit in TIME_WAIT;
         * a port another process listens on stays refused. */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(why, whylen, "%s", strerror(err ? err : EADDRNOTAVAIL));
    return fd;
}

/* The port a bound socket got (the chosen one when asked for port 0). */
static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* True when the bound socket takes connections from this machine only. */
static bool bound_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* ---------------------------------------------------------------- responses */

/* Queues a response; body is taken over (freed by libmicrohttpd) when owned. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             char *body, size_t len, bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short plain-text answer (probes and errors). */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    return reply(c, status, "text/plain; charset=utf-8", buf, len, false);
}

/* ---------------------------------------------------------------- probes */

/* Milliseconds since the loop's last housekeeping round; -1 before the first. */
static int64_t since_heartbeat(tl_service *svc)
{
    int64_t hb = tl__heartbeat_ms(svc);
    return hb ? tl_clock_ns() / 1000000 - hb : -1;
}

static enum MHD_Result serve_healthz(tl_admin *a, struct MHD_Connection *c)
{
    int64_t age = since_heartbeat(a->svc);
    if (age < 0)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting: the loop has not turned\n");
    if (age > HEALTH_STALE_MS)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "loop stuck: no turn for %" PRId64 " ms\n", age);
    return reply_text(c, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result serve_readyz(tl_admin *a, struct MHD_Connection *c)
{
    tl_service *svc = a->svc;
    if (since_heartbeat(svc) < 0)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: starting\n");
    if (atomic_load(&svc->stopping))
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: draining\n");
    tl_service_stats st;
    tl_service_stats_get(svc, &st);
    if (!st.healthy)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "not ready: unhealthy, stuck-worker cap (%u) exceeded\n",
                          svc->cfg->max_replaced_workers);
    for (size_t i = 0; i < svc->nroutes; i++)
        if (svc->routes[i].breaker.on &&
            atomic_load(&svc->routes[i].breaker.state) == TL_BREAKER_OPEN)
            return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                              "not ready: breaker open on routes[%zu] (handler %s)\n", i,
                              svc->routes[i].cfg->handler);
    return reply_text(c, MHD_HTTP_OK, "ok\n");
}

/* ---------------------------------------------------------------- /metrics, /tasks */

static enum MHD_Result serve_metrics(tl_admin *a, struct MHD_Connection *c)
{
    size_t len;
    char *text = tl__admin_metrics(a->svc, &len);
    if (!text)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

static enum MHD_Result serve_tasks(tl_admin *a, struct MHD_Connection *c)
{
    if (atomic_load(&a->closing))
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    char *text;
    int rc = tl__admin_tasks(a->svc, &a->closing, &text);
    if (rc == TL_ECLOSED)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop is closed\n");
    if (rc == TL_ETIMEDOUT)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop did not answer within %d ms\n",
                          TL_ADMIN_TASKS_WAIT_MS);
    if (rc)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, "application/json", text, strlen(text), true);
}

/* Reads the query argument name as an integer in [min, max] into *out (left alone when
 * absent); false when it is there and is not one. */
static bool query_size(struct MHD_Connection *c, const char *name, size_t min, size_t max,
                       size_t *out)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return true;
    size_t n = 0;
    if (!*v)
        return false;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > max)
            return false;
        n = n * 10 + (size_t)(*p - '0');
    }
    if (n < min || n > max)
        return false;
    *out = n;
    return true;
}

static enum MHD_Result serve_stats(tl_admin *a, struct MHD_Connection *c)
{
    tl_admin_range range = {.top = STATS_TOP_DEFAULT, .from = 0};
    if (!query_size(c, "top", 1, STATS_TOP_MAX, &range.top))
        return reply_text(c, MHD_HTTP_BAD_REQUEST,
                          "bad query: top must be a whole number from 1 to %d\n", STATS_TOP_MAX);
    if (!query_size(c, "from", 0, (size_t)1 << 30, &range.from))
        return reply_text(c, MHD_HTTP_BAD_REQUEST,
                          "bad query: from must be a whole number from 0 (a partition index)\n");
    char *text = tl__admin_stats(a->svc, &a->closing, &range);
    if (!text)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, "application/json", text, strlen(text), true);
}

static enum MHD_Result serve_page(tl_admin *a, struct MHD_Connection *c)
{
    (void)a;
    return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)tl__admin_page_html,
                 tl__admin_page_html_len, false);
}

/* ---------------------------------------------------------------- the token */

/* True when given equals want; the time taken depends on want's length only, so that
 * it tells nothing of how much of a guess was right. */
static bool same_token(const char *given, const char *want)
{
    size_t gn = strlen(given), wn = strlen(want);
    volatile unsigned char diff = gn != wn;
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gn ? given[i] : 0);
    return diff == 0;
}

/* True when the request carries "Authorization: Bearer TOKEN" with the service's token. */
static bool authorized(tl_admin *a, struct MHD_Connection *c)
{
    const char *token = a->svc->cfg->admin_token;
    if (!token)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    h += strspn(h, " ");
    return same_token(h, token);
}

static enum MHD_Result reply_unauthorized(struct MHD_Connection *c)
{
    static const char body[] = "unauthorized: send \"Authorization: Bearer TOKEN\"\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"taskloop\"");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------------- routing */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    tl_admin *a = cls;
    static const struct {
        const char *path;
        enum MHD_Result (*serve)(tl_admin *a, struct MHD_Connection *c);
    } routes[] = {{"/metrics", serve_metrics}, {"/stats", serve_stats}, {"/healthz", serve_healthz},
                  {"/readyz", serve_readyz},   {"/tasks", serve_tasks}, {"/", serve_page}};
    /* The probes, and the page, which shows nothing until its polls are let in. */
    bool open =
        strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 || strcmp(url, "/") == 0;
    if (!open && !authorized(a, c))
        return reply_unauthorized(c);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(url, routes[i].path) != 0)
            continue;
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
            return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
        return routes[i].serve(a, c);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND,
                      "not found: try /, /metrics, /stats, /healthz, /readyz, /tasks\n");
}

/* ---------------------------------------------------------------- lifecycle */

int tl__admin_bind(tl_service *svc, char *err, size_t errlen)
{
    const char *addr = svc->cfg->admin_listen;
    if (!addr)
        return 0;
    char why[256] = "";
    int rc = TL_ESYS;
    tl_admin *a = calloc(1, sizeof(*a));
    int fd = a ? bind_listen(addr, why, sizeof(why)) : -1;
    if (fd >= 0) {
        a->svc = svc;
        a->fd = fd;
        atomic_init(&a->closing, false);
        svc->admin = a;
        atomic_store(&svc->admin_port, bound_port(fd));
        return 0;
    }
    if (!a) {
        snprintf(why, sizeof(why), "out of memory");
        rc = TL_ENOMEM;
    }
    free(a);
    snprintf(err, errlen, "admin endpoint %s: %s", addr, why);
    tl_kv f[] = {{"listen", addr}, {"error", why}};
    tl__log(svc, TL_LEVEL_ERROR, "admin_failed", f, 2);
    return rc;
}

int tl__admin_open(tl_service *svc)
{
    tl_admin *a = svc->admin;
    if (!a || a->daemon)
        return 0;
    const char *addr = svc->cfg->admin_listen;
    /* MHD_USE_ITC: a wake-up channel, so that stopping does not wait for a poll. */
    a->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC, 0,
                                 NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, a->fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!a->daemon) {
        tl_kv f[] = {{"listen", addr}, {"error", "cannot start the HTTP server"}};
        tl__log(svc, TL_LEVEL_ERROR, "admin_failed", f, 2);
        tl__admin_close(svc);
        return TL_ESYS;
    }
    char p[16];
    snprintf(p, sizeof(p), "%d", atomic_load(&svc->admin_port));
    tl_kv f[] = {{"listen", addr}, {"port", p}};
    tl__log(svc, TL_LEVEL_INFO, "admin_listening", f, 2);
    if (!bound_loopback(a->fd)) {
        tl_kv w[] = {{"listen", addr}, {"token", svc->cfg->admin_token ? "required" : "none"}};
        tl__log(svc, TL_LEVEL_WARN, "admin_exposed", w, 2);
    }
    return 0;
}

void tl__admin_close(tl_service *svc)
{
    tl_admin *a = svc->admin;
    if (!a)
        return;
    atomic_store(&a->closing, true);
    atomic_store(&svc->admin_port, 0);
    /* Joins the server thread (requests in progress end first) and closes the socket;
     * a socket that no server took (the run never started) is closed here. */
    if (a->daemon)
        MHD_stop_daemon(a->daemon);
    else
        close(a->fd);
    svc->admin = NULL;
    free(a);
}

int tl_service_admin_port(tl_service *svc)
{
    return atomic_load(&svc->admin_port);
}
