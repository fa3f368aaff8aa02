/*
 * The admin endpoint: Prometheus metrics, liveness and readiness probes, and the
 * pending tasks as JSON, over HTTP (libmicrohttpd) while a service runs.
 *
 *   GET /metrics  Prometheus text format 0.0.4: the service counters, per-target
 *                 reroutes, committed offsets and the handler duration histogram
 *   GET /healthz  200 "ok" while the loop turns (housekeeping ran within
 *                 HEALTH_STALE_MS), else 503: a liveness probe
 *   GET /readyz   200 "ok" once started, while not draining and healthy (the
 *                 stuck-worker cap is not exceeded), else 503 with the reason
 *   GET /tasks    asyncio's all_tasks() as JSON: {"total", "truncated", "tasks": [...]},
 *                 at most TASKS_CAP entries, oldest first, each {id, state, age_ms,
 *                 name} and, for a handler's task, "message": {handler, origin,
 *                 partition, offset, attempt, stalled}
 * Any other path is 404; any other method on these paths is 405.
 *
 * The socket is bound here rather than by libmicrohttpd, so that a taken port or a bad
 * host fails with the system's reason, and so that port 0 can be reported.
 *
 * Thread rules: requests run on libmicrohttpd's polling thread, one at a time. They
 * read the service only through what is safe from any thread: the atomic counters,
 * the histogram, heartbeat_ms, tl_service_targets/partitions and tl_loop_workers.
 * The task list belongs to the loop thread, so /tasks posts a snapshot request with
 * tl_loop_call_threadsafe and waits for it with a timeout. The request is shared by
 * the two threads: req->mu guards its fields and whichever side drops the last of its
 * two references frees it (the loop may answer after the waiter gave up, or only
 * inside tl_loop_free). admin->closing is atomic: set by tl__admin_close, it ends
 * waits early so that stopping never waits for a loop that has ended.
 */
#include "admin.h"
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A loop that has not run housekeeping (every 50ms) for this long is stuck. */
#define HEALTH_STALE_MS 5000
/* Entries listed by /tasks; "total" still counts every pending task. */
#define TASKS_CAP 1000
/* How long /tasks waits for the loop thread before answering 503. */
#define TASKS_WAIT_MS 2000
/* Waits re-check admin->closing this often. */
#define TASKS_POLL_MS 100

struct tl_admin {
    tl_service *svc;
    struct MHD_Daemon *daemon;
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
    if (strcmp(host, "*") == 0)
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

/* ---------------------------------------------------------------- /metrics */

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP taskloop_%s %s\n# TYPE taskloop_%s %s\n", name, help, name, type);
}

static void metric_one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    metric_head(f, name, type, help);
    fprintf(f, "taskloop_%s %" PRIu64 "\n", name, v);
}

/* Writes a label value with the escapes the text format requires. */
static void label_value(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void metrics_targets(FILE *f, tl_service *svc)
{
    /* The targets are fixed once the service is built, so one count is enough. */
    size_t n = tl_service_targets(svc, NULL, 0);
    tl_target_stats *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        return;
    n = tl_service_targets(svc, t, n);
    metric_head(f, "rerouted_total", "counter",
                "Messages rerouted and acknowledged by their target, per target.");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_rerouted_total{target=", f);
        label_value(f, t[i].target);
        fprintf(f, "} %" PRIu64 "\n", t[i].rerouted);
    }
    metric_head(f, "reroute_errors_total", "counter",
                "Reroute sends refused or not acknowledged by their target (retried).");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_reroute_errors_total{target=", f);
        label_value(f, t[i].target);
        fprintf(f, "} %" PRIu64 "\n", t[i].errors);
    }
    free(t);
}

typedef size_t (*fill_fn)(tl_service *svc, void *out, size_t cap);

/*
 * A copy of a list that may grow while it is copied (partitions appear as messages
 * arrive, assignments change): sized again until it fits. NULL on allocation failure.
 */
static void *snapshot(tl_service *svc, fill_fn fill, size_t size, size_t *n)
{
    void *p = NULL;
    size_t cap = 0;
    *n = fill(svc, NULL, 0);
    while (*n > cap) {
        cap = *n + 16;
        void *q = realloc(p, cap * size);
        if (!q) {
            free(p);
            return NULL;
        }
        p = q;
        *n = fill(svc, p, cap);
    }
    return p ? p : calloc(1, size);
}

static size_t fill_partitions(tl_service *svc, void *out, size_t cap)
{
    return tl_service_partitions(svc, out, cap);
}

static size_t fill_lag(tl_service *svc, void *out, size_t cap)
{
    return tl_service_lag(svc, out, cap);
}

static void metrics_offsets(FILE *f, tl_service *svc)
{
    size_t n;
    tl_partition_stats *p = snapshot(svc, fill_partitions, sizeof(*p), &n);
    if (!p)
        return;
    metric_head(f, "committed_offset", "gauge",
                "Next offset committed per partition: every message below it is settled.");
    for (size_t i = 0; i < n; i++) {
        if (p[i].next < 0)
            continue; /* nothing committed yet: no sample rather than a fake -1 */
        fputs("taskloop_committed_offset{source=", f);
        label_value(f, p[i].source);
        fputs(",topic=", f);
        label_value(f, p[i].topic);
        fprintf(f, ",partition=\"%" PRId32 "\"} %" PRId64 "\n", p[i].partition, p[i].next);
    }
    free(p);
}

static void metrics_lag(FILE *f, tl_service *svc)
{
    size_t n;
    tl_partition_lag *lag = snapshot(svc, fill_lag, sizeof(*lag), &n);
    if (!lag)
        return;
    metric_head(f, "consumer_lag", "gauge",
                "Messages between the consumer's position and the end of each partition "
                "(sources that know it: Kafka).");
    for (size_t i = 0; i < n; i++) {
        fputs("taskloop_consumer_lag{source=", f);
        label_value(f, lag[i].source);
        fputs(",topic=", f);
        label_value(f, lag[i].topic);
        fprintf(f, ",partition=\"%" PRId32 "\"} %" PRId64 "\n", lag[i].partition, lag[i].lag);
    }
    free(lag);
}

static void metrics_histogram(FILE *f, tl_histogram *h)
{
    metric_head(f, "handler_duration_seconds", "histogram",
                "Handler attempt durations, from the start of the handler until the loop "
                "saw it finish.");
    /* Cumulative counts from the buckets themselves, so that +Inf and _count agree
     * even while observations land during the scrape. */
    uint64_t cum = 0;
    for (size_t i = 0; i <= TL_HIST_NBOUNDS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < TL_HIST_NBOUNDS)
            fprintf(f, "taskloop_handler_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                    (double)tl_histogram_bound_ns(i) / 1e9, cum);
        else
            fprintf(f, "taskloop_handler_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    uint64_t sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    fprintf(f, "taskloop_handler_duration_seconds_sum %.9f\n", (double)sum_ns / 1e9);
    fprintf(f, "taskloop_handler_duration_seconds_count %" PRIu64 "\n", cum);
}

static enum MHD_Result serve_metrics(tl_admin *a, struct MHD_Connection *c)
{
    tl_service *svc = a->svc;
    tl_service_stats st;
    tl_service_stats_get(svc, &st);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    metric_head(f, "info", "gauge", "Always 1; the labels name the service and library.");
    fputs("taskloop_info{service=", f);
    label_value(f, svc->cfg->service);
    fprintf(f, ",version=\"%s\"} 1\n", tl_version());
    metric_one(f, "consumed_total", "counter", "Messages delivered by the sources.", st.consumed);
    metric_one(f, "completed_total", "counter", "Handlers that finished without error.",
               st.completed);
    metric_one(f, "failed_total", "counter", "Handler failures, counting each attempt.", st.failed);
    metric_one(f, "retries_total", "counter", "Handler attempts after the first.", st.retries);
    metric_one(f, "stalled_total", "counter", "Handlers still running at their timeout.",
               st.stalled);
    metrics_targets(f, svc);
    metric_one(f, "dropped_total", "counter", "Failed messages with no target to go to.",
               st.dropped);
    metric_one(f, "late_completions_total", "counter", "Stalled handlers that finished after all.",
               st.late);
    metric_one(f, "in_flight", "gauge", "Messages delivered and not yet settled.", st.in_flight);
    metric_one(f, "uncommitted", "gauge",
               "Messages delivered and not yet below their partition's commit position "
               "(backpressure keeps it under max_in_flight).",
               st.uncommitted);
    metric_one(f, "paused_total", "counter",
               "Times intake stopped at max_in_flight (backpressure held delivered batches).",
               st.paused);
    metric_one(f, "source_pauses_total", "counter",
               "Times a source was paused because backpressure kept its thread waiting past "
               "the source's hold limit.",
               st.source_pauses);
    metric_one(f, "replaced_workers_total", "counter",
               "Workers added to stand in for ones stuck in stalled handlers.",
               st.replaced_workers);
    metric_one(f, "workers", "gauge", "Worker threads alive.", tl_loop_workers(svc->loop));
    metric_one(f, "healthy", "gauge", "1 unless the stuck-worker cap is exceeded.",
               st.healthy ? 1 : 0);
    metrics_offsets(f, svc);
    metrics_lag(f, svc);
    metrics_histogram(f, &svc->handler_seconds);
    if (fclose(f) != 0) {
        free(buf);
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, len, true);
}

/* ---------------------------------------------------------------- probes */

/* Milliseconds since the loop's last housekeeping round; -1 before the first. */
static int64_t since_heartbeat(tl_service *svc)
{
    int64_t hb = atomic_load_explicit(&svc->heartbeat_ms, memory_order_relaxed);
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
    if (!atomic_load(&svc->st.healthy))
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "not ready: unhealthy, stuck-worker cap (%u) exceeded\n",
                          svc->cfg->max_replaced_workers);
    return reply_text(c, MHD_HTTP_OK, "ok\n");
}

/* ---------------------------------------------------------------- /tasks */

typedef struct snap_entry {
    uint64_t id;
    tl_task_state state;
    int64_t age_ms;
    char *name; /* a copy; NULL when unnamed */
    bool has_msg;
    tl_task_message msg;
    char *handler, *origin; /* copies of msg's */
} snap_entry;

typedef struct snap_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;       /* [mu] the waiter's and the loop call's */
    bool done;      /* [mu] the loop filled the snapshot */
    bool abandoned; /* [mu] the waiter gave up: the loop skips the work */
    size_t total, n;
    tl_task_info info[TASKS_CAP]; /* loop-thread scratch */
    snap_entry items[TASKS_CAP];
} snap_req;

static void snap_unref(snap_req *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].name);
        free(r->items[i].handler);
        free(r->items[i].origin);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Loop thread: copies the pending tasks, names included (they are only borrowed). */
static void snap_on_loop(tl_loop *loop, void *arg)
{
    snap_req *r = arg;
    pthread_mutex_lock(&r->mu);
    bool skip = r->abandoned;
    pthread_mutex_unlock(&r->mu);
    if (!skip) {
        size_t total = tl_loop_tasks(loop, r->info, TASKS_CAP);
        size_t n = total < TASKS_CAP ? total : TASKS_CAP;
        for (size_t i = 0; i < n; i++) {
            r->items[i].id = r->info[i].id;
            r->items[i].state = r->info[i].state;
            r->items[i].age_ms = r->info[i].age_ms;
            r->items[i].name = r->info[i].name ? strdup(r->info[i].name) : NULL;
            snap_entry *e = &r->items[i];
            e->has_msg = tl__task_message(r->info[i].task, &e->msg);
            if (e->has_msg) {
                e->handler = strdup(e->msg.handler);
                e->origin = e->msg.origin ? strdup(e->msg.origin) : NULL;
                /* Borrowed from the loop's records: not to be read off this thread. */
                e->msg.handler = e->msg.origin = NULL;
            }
        }
        pthread_mutex_lock(&r->mu);
        r->total = total;
        r->n = n;
        r->done = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    snap_unref(r);
}

static snap_req *snap_new(void)
{
    snap_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->refs = 2;
    return r;
}

/* Waits for the loop's answer; false when it did not come in time or we are closing. */
static bool snap_wait(tl_admin *a, snap_req *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t deadline = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + TASKS_WAIT_MS;
    pthread_mutex_lock(&r->mu);
    while (!r->done && !atomic_load(&a->closing)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (ms >= deadline)
            break;
        int64_t until = ms + (deadline - ms < TASKS_POLL_MS ? deadline - ms : TASKS_POLL_MS);
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    bool done = r->done;
    if (!done)
        r->abandoned = true;
    pthread_mutex_unlock(&r->mu);
    return done;
}

/* The snapshot as JSON text with a final newline (malloc'd), or NULL. */
static char *snap_json(const snap_req *r)
{
    json_t *root = json_object();
    json_t *list = json_array();
    if (!root || !list) {
        json_decref(root);
        json_decref(list);
        return NULL;
    }
    json_object_set_new(root, "total", json_integer((json_int_t)r->total));
    json_object_set_new(root, "truncated", json_boolean(r->total > r->n));
    for (size_t i = 0; i < r->n; i++) {
        const snap_entry *e = &r->items[i];
        json_t *t = json_pack("{s:I, s:s, s:I, s:s?}", "id", (json_int_t)e->id, "state",
                              tl_task_state_name(e->state), "age_ms", (json_int_t)e->age_ms, "name",
                              e->name);
        /* A handler's task says which message it works on. */
        if (t && e->has_msg)
            json_object_set_new(t, "message",
                                json_pack("{s:s?, s:s?, s:i, s:I, s:i, s:b}", "handler", e->handler,
                                          "origin", e->origin, "partition", (int)e->msg.partition,
                                          "offset", (json_int_t)e->msg.offset, "attempt",
                                          (int)e->msg.attempt, "stalled", e->msg.stalled));
        json_array_append_new(list, t);
    }
    json_object_set_new(root, "tasks", list);
    char *text = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    char *out = realloc(text, len + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[len] = '\n';
    out[len + 1] = '\0';
    return out;
}

static enum MHD_Result serve_tasks(tl_admin *a, struct MHD_Connection *c)
{
    if (atomic_load(&a->closing))
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    snap_req *r = snap_new();
    if (!r)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    if (tl_loop_call_threadsafe(a->svc->loop, snap_on_loop, r) != 0) {
        r->refs = 1; /* the call was never queued */
        snap_unref(r);
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop is closed\n");
    }
    bool done = snap_wait(a, r);
    char *text = done ? snap_json(r) : NULL;
    snap_unref(r);
    if (!done)
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop did not answer within %d ms\n",
                          TASKS_WAIT_MS);
    if (!text)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, "application/json", text, strlen(text), true);
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
    } routes[] = {{"/metrics", serve_metrics},
                  {"/healthz", serve_healthz},
                  {"/readyz", serve_readyz},
                  {"/tasks", serve_tasks}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(url, routes[i].path) != 0)
            continue;
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
            return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
        return routes[i].serve(a, c);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND,
                      "not found: try /metrics, /healthz, /readyz, /tasks\n");
}

/* ---------------------------------------------------------------- lifecycle */

int tl__admin_open(tl_service *svc)
{
    const char *addr = svc->cfg->admin_listen;
    if (!addr)
        return 0;
    char why[256] = "";
    int rc = TL_ESYS;
    tl_admin *a = calloc(1, sizeof(*a));
    int fd = a ? bind_listen(addr, why, sizeof(why)) : -1;
    if (!a) {
        snprintf(why, sizeof(why), "out of memory");
        rc = TL_ENOMEM;
    } else if (fd >= 0) {
        a->svc = svc;
        atomic_init(&a->closing, false);
        /* MHD_USE_ITC: a wake-up channel, so that stopping does not wait for a poll. */
        a->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC,
                                     0, NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, fd,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
        if (a->daemon) {
            svc->admin = a;
            int port = bound_port(fd);
            atomic_store(&svc->admin_port, port);
            char p[16];
            snprintf(p, sizeof(p), "%d", port);
            tl_kv f[] = {{"listen", addr}, {"port", p}};
            tl__log(svc, TL_LEVEL_INFO, "admin_listening", f, 2);
            return 0;
        }
        snprintf(why, sizeof(why), "cannot start the HTTP server");
        close(fd);
    }
    free(a);
    tl_kv f[] = {{"listen", addr}, {"error", why}};
    tl__log(svc, TL_LEVEL_ERROR, "admin_failed", f, 2);
    return rc;
}

void tl__admin_close(tl_service *svc)
{
    tl_admin *a = svc->admin;
    if (!a)
        return;
    atomic_store(&a->closing, true);
    atomic_store(&svc->admin_port, 0);
    /* Joins the server thread (requests in progress end first) and closes the socket. */
    MHD_stop_daemon(a->daemon);
    svc->admin = NULL;
    free(a);
}

int tl_service_admin_port(tl_service *svc)
{
    return atomic_load(&svc->admin_port);
}
