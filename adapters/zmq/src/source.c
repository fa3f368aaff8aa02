/*
 * The zmq source: a PULL or SUB socket read by a thread of the source's own.
 *
 * Thread rules:
 *  - open/start/pause/stop/close/commit run on the loop thread (adapter.h).
 *  - The socket is created and bound in open() so that bind errors reach the config
 *    check; from start() until stop() joins the thread, only the source thread uses
 *    it. ZeroMQ allows a socket to change threads across a full memory barrier, which
 *    pthread_create and pthread_join provide.
 *  - lock guards paused and stopping; cond wakes the source thread when they change.
 *  - batchv, scratch and seq belong to the source thread.
 *  - release() may run on any thread, also after close(): every delivered message
 *    holds a reference on the source (refs), so origin strings stay valid and the
 *    struct is freed by whichever of close() and the last release() comes last.
 */
#include "zmq_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long the source thread waits on the socket before looking at stop and pause. */
#define POLL_MS 50

struct tl_source {
    atomic_uint refs;
    tl_source_events ev;
    void *sock;
    char *endpoint;
    size_t batch;
    size_t max_message;
    pthread_t thread;
    bool started; /* loop thread only */
    bool stopped; /* loop thread only */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool paused;
    bool stopping;

    tl_msg **batchv;
    int64_t seq;
    zmq_msg_t scratch[TL_ZMQ_MAX_FRAMES];

    atomic_uint_least64_t received, delivered, malformed, oversized, outstanding;
    tl_recycler *blocks; /* zmsg blocks of up to ZMSG_SMALL frames, no headers */
};

/* A delivered message: it owns its frames until release. Headers and names follow. */
typedef struct zmsg {
    tl_msg msg;
    tl_source *src;
    size_t nframes;
    bool recycled; /* from src->blocks, not malloc */
    zmq_msg_t frames[];
} zmsg;

/* Messages of a payload and maybe a key come from a recycler: allocated on the source
 * thread, released on the loop's, they would otherwise contend for malloc's locks. */
#define ZMSG_SMALL 2

static const tl_param source_params[] = {
    {"endpoint", TL_PARAM_STRING, true, false, "ZeroMQ endpoint: tcp://, ipc:// or inproc://"},
    {"socket", TL_PARAM_STRING, false, false, "pull (default) or sub"},
    {"bind", TL_PARAM_BOOL, false, false, "bind (default for pull) or connect (default for sub)"},
    {"subscribe", TL_PARAM_LIST, false, false, "sub: payload prefixes to receive (default all)"},
    {"hwm", TL_PARAM_INT, false, false, "receive high-water mark in messages (default 1000)"},
    {"batch", TL_PARAM_INT, false, false, "most messages per delivery (default 1000)"},
    {"max_message", TL_PARAM_INT, false, false, "most bytes per message (default 16 MiB)"},
    TL_ZMQ_CURVE_PARAMS,
    {NULL, 0, false, false, NULL},
};

/* hwm 0 is ZeroMQ's "no limit"; a batch over 1 Mi messages only costs memory. */
static const tl_param_range source_ranges[] = {
    {"hwm", 0, INT32_MAX},
    {"batch", 1, 1 << 20},
    {"max_message", 1, INT32_MAX},
    {NULL, 0, 0},
};

static void source_unref(tl_source *src)
{
    if (atomic_fetch_sub(&src->refs, 1) != 1)
        return;
    free(src->endpoint);
    free(src->batchv);
    tl_recycler_free(src->blocks);
    pthread_mutex_destroy(&src->lock);
    pthread_cond_destroy(&src->cond);
    free(src);
}

static void report(tl_source *src, int err, bool fatal, const char *what)
{
    if (src->ev.error)
        src->ev.error(src->ev.rt, src, err, fatal, what);
}

/* ------------------------------------------------------------ open */

typedef struct source_conf {
    const char *endpoint;
    bool sub;
    bool bind;
    const tl_param_value *subscribe;
    int64_t hwm, batch, max_message;
} source_conf;

/* tl_source_ops.check: every problem of a section but its ranges, at its key. */
static void source_check(const tl_params *conf, tl_param_report_fn report, void *rep)
{
    const char *endpoint = tl_params_str(conf, "endpoint", NULL);
    const char *type = tl_params_str(conf, "socket", "pull");
    bool sub = strcmp(type, "sub") == 0;
    bool bind = tl_params_num(conf, "bind", sub ? 0 : 1) != 0;
    char why[256];
    if (!endpoint || !*endpoint)
        report(rep, "endpoint", NULL, "is required");
    else if (tl_zmq_endpoint_check(endpoint, bind, why, sizeof(why)))
        report(rep, "endpoint", NULL, why);
    if (!sub && strcmp(type, "pull") != 0)
        report(rep, "socket", NULL, "must be pull or sub");
    if (tl_params_get(conf, "subscribe") && !sub)
        report(rep, "subscribe", NULL, "applies to socket: sub only");
}

static int read_conf(const tl_params *conf, source_conf *c, char *err, size_t errlen)
{
    tl_zmq_problem first = {"zmq source", err, errlen, false};
    source_check(conf, tl_zmq_keep_first, &first);
    if (first.found)
        return TL_ECONFIG;
    char why[256];
    if (tl_params_check_ranges(source_params, source_ranges, conf, why, sizeof(why)))
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq source", why);
    c->endpoint = tl_params_str(conf, "endpoint", NULL);
    c->sub = strcmp(tl_params_str(conf, "socket", "pull"), "sub") == 0;
    c->bind = tl_params_num(conf, "bind", c->sub ? 0 : 1) != 0;
    c->subscribe = tl_params_get(conf, "subscribe");
    c->hwm = tl_params_num(conf, "hwm", 1000);
    /* Each delivery costs the loop a wake-up and the source a hand-over wait: at 64
     * messages those switches, not the messages, set the pace (bench/README.md). */
    c->batch = tl_params_num(conf, "batch", 1000);
    c->max_message = tl_params_num(conf, "max_message", 16 << 20);
    return 0;
}

/* Applies options and subscriptions, then binds or connects. */
static int setup_socket(tl_source *src, const source_conf *c, char *err, size_t errlen)
{
    int hwm = (int)c->hwm, linger = 0;
    zmq_setsockopt(src->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    /* A source's unread messages are lost on close anyway (at-most-once). */
    zmq_setsockopt(src->sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (c->sub) {
        size_t n = c->subscribe ? c->subscribe->nlist : 0;
        if (n == 0)
            zmq_setsockopt(src->sock, ZMQ_SUBSCRIBE, "", 0);
        for (size_t i = 0; i < n; i++) {
            const char *p = c->subscribe->list[i];
            zmq_setsockopt(src->sock, ZMQ_SUBSCRIBE, p, strlen(p));
        }
    }
    int rc = c->bind ? zmq_bind(src->sock, c->endpoint) : zmq_connect(src->sock, c->endpoint);
    if (rc != 0) {
        int e = zmq_errno();
        return tl_zmq_fail(err, errlen, e == EINVAL ? TL_ECONFIG : tl_zmq_err(e), c->endpoint,
                           zmq_strerror(e));
    }
    char last[256] = "";
    size_t len = sizeof(last);
    if (c->bind && zmq_getsockopt(src->sock, ZMQ_LAST_ENDPOINT, last, &len) == 0 && *last)
        src->endpoint = strdup(last);
    else
        src->endpoint = strdup(c->endpoint);
    return src->endpoint ? 0 : TL_ENOMEM;
}

static int source_alloc(const source_conf *c, const tl_source_events *ev, tl_source **out)
{
    tl_source *src = calloc(1, sizeof(*src));
    if (!src)
        return TL_ENOMEM;
    src->batchv = calloc((size_t)c->batch, sizeof(*src->batchv));
    if (!src->batchv ||
        tl_recycler_new(sizeof(zmsg) + ZMSG_SMALL * sizeof(zmq_msg_t), &src->blocks) != 0) {
        free(src->batchv);
        free(src);
        return TL_ENOMEM;
    }
    atomic_init(&src->refs, 1);
    src->ev = *ev;
    src->batch = (size_t)c->batch;
    src->max_message = (size_t)c->max_message;
    pthread_mutex_init(&src->lock, NULL);
    pthread_cond_init(&src->cond, NULL);
    *out = src;
    return 0;
}

static int source_open(const tl_params *conf, const tl_source_events *ev, tl_source **out,
                       char *err, size_t errlen)
{
    source_conf c = {0};
    int rc = read_conf(conf, &c, err, errlen);
    if (rc != 0)
        return rc;
    void *ctx = tl_zmq_ctx_acquire();
    if (!ctx)
        return tl_zmq_fail(err, errlen, TL_ESYS, "zmq", "cannot create a context");
    tl_source *src = NULL;
    rc = source_alloc(&c, ev, &src);
    if (rc == 0) {
        src->sock = zmq_socket(ctx, c.sub ? ZMQ_SUB : ZMQ_PULL);
        rc = src->sock ? tl_zmq_curve_setup(src->sock, conf, err, errlen) : TL_EIO;
    }
    if (rc == 0)
        rc = setup_socket(src, &c, err, errlen);
    if (rc == 0) {
        *out = src;
        return 0;
    }
    if (src && src->sock)
        zmq_close(src->sock);
    if (src)
        source_unref(src);
    tl_zmq_ctx_release();
    if (err && errlen > 0 && !*err)
        tl_zmq_fail(err, errlen, rc, "zmq source", tl_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------ receiving */

static void close_frames(zmq_msg_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

/*
 * Receives one whole message into scratch. Frames past the most we accept are
 * received and closed at once, so a hostile sender cannot make us hold them.
 * Returns 0 with *kept, *total and *bytes set, TL_EAGAIN when none waits, or an error.
 */
static int recv_frames(tl_source *src, size_t *kept, size_t *total, size_t *bytes)
{
    zmq_msg_t extra;
    *kept = *total = *bytes = 0;
    for (int more = 1; more;) {
        zmq_msg_t *f = *kept < TL_ZMQ_MAX_FRAMES ? &src->scratch[*kept] : &extra;
        zmq_msg_init(f);
        /* The parts of a message arrive together, so later frames never wait either. */
        if (zmq_msg_recv(f, src->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(f);
            close_frames(src->scratch, *kept);
            return tl_zmq_err(e);
        }
        more = zmq_msg_more(f);
        (*total)++;
        *bytes += zmq_msg_size(f);
        if (f == &extra)
            zmq_msg_close(f);
        else
            (*kept)++;
    }
    return 0;
}

/* Moves the n frames of scratch into a new delivered message. */
static zmsg *build_msg(tl_source *src, size_t n)
{
    bool small = n <= ZMSG_SMALL;
    zmsg *m = small ? tl_recycler_get(src->blocks)
                    : malloc(sizeof(*m) + n * sizeof(zmq_msg_t) +
                             tl_zmq_wire_decoded_size(src->scratch, n));
    if (!m)
        return NULL;
    m->recycled = small;
    for (size_t i = 0; i < n; i++) {
        zmq_msg_init(&m->frames[i]);
        zmq_msg_move(&m->frames[i], &src->scratch[i]);
        zmq_msg_close(&src->scratch[i]);
    }
    m->msg = (tl_msg){
        .origin = src->endpoint,
        .partition = -1,
        .offset = src->seq++,
        .timestamp_ms = tl_zmq_wall_ms(),
        .handle = m,
    };
    tl_zmq_wire_decode(m->frames, n, &m->msg, m->frames + n);
    m->src = src;
    m->nframes = n;
    return m;
}

/* Drops the message in scratch and tells the runtime why. */
static void drop(tl_source *src, size_t kept, int why_code, const char *why)
{
    close_frames(src->scratch, kept);
    atomic_fetch_add(why_code == TL_ENOMEM ? &src->oversized : &src->malformed, 1);
    char what[512];
    snprintf(what, sizeof(what), "zmq source %s: dropped a message: %s", src->endpoint, why);
    report(src, TL_EINVAL, false, what);
}

/* Returns 0 and *out, 1 when a message was dropped, TL_EAGAIN when none waits, or an error. */
static int recv_one(tl_source *src, zmsg **out)
{
    size_t kept, total, bytes;
    int rc = recv_frames(src, &kept, &total, &bytes);
    if (rc != 0)
        return rc;
    atomic_fetch_add(&src->received, 1);
    const char *why = NULL;
    if (bytes > src->max_message)
        rc = TL_ENOMEM, why = "larger than max_message";
    else if (total > TL_ZMQ_MAX_FRAMES)
        rc = TL_EINVAL, why = "too many frames";
    else
        rc = tl_zmq_wire_check(src->scratch, kept, src->max_message, &why);
    if (rc != 0) {
        drop(src, kept, rc, why);
        return 1;
    }
    *out = build_msg(src, kept);
    if (!*out) {
        close_frames(src->scratch, kept);
        report(src, TL_ENOMEM, false, "zmq source: out of memory, message dropped");
        return 1;
    }
    return 0;
}

/* Receives up to batch messages that are already waiting and delivers them. */
static void receive_batch(tl_source *src)
{
    size_t n = 0;
    for (size_t tries = 0; tries < src->batch; tries++) {
        zmsg *m = NULL;
        int rc = recv_one(src, &m);
        if (rc == 1)
            continue;
        if (rc == TL_EAGAIN)
            break;
        if (rc < 0) {
            report(src, rc, false, "zmq source: receive failed");
            break;
        }
        src->batchv[n++] = &m->msg;
    }
    if (n == 0)
        return;
    /* Before deliver: the runtime may release some of them before deliver returns. */
    atomic_fetch_add(&src->refs, (unsigned)n);
    atomic_fetch_add(&src->outstanding, n);
    atomic_fetch_add(&src->delivered, n);
    src->ev.deliver(src->ev.rt, src, src->batchv, n);
}

/* Blocks while paused; returns false once the source is stopping. */
static bool wait_runnable(tl_source *src)
{
    pthread_mutex_lock(&src->lock);
    while (src->paused && !src->stopping)
        pthread_cond_wait(&src->cond, &src->lock);
    bool run = !src->stopping;
    pthread_mutex_unlock(&src->lock);
    return run;
}

static void *source_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-zmq-source"); /* for top -H, perf, gdb */
    tl_source *src = arg;
    zmq_pollitem_t item = {.socket = src->sock, .events = ZMQ_POLLIN};
    while (wait_runnable(src)) {
        int rc = zmq_poll(&item, 1, POLL_MS);
        if (rc < 0 && zmq_errno() == EINTR)
            continue;
        if (rc < 0) {
            report(src, tl_zmq_err(zmq_errno()), true, "zmq source: poll failed");
            break;
        }
        if (rc > 0)
            receive_batch(src);
    }
    return NULL;
}

/* ------------------------------------------------------------ ops */

static int source_start(tl_source *src)
{
    if (src->started || src->stopped)
        return TL_EINVAL;
    if (pthread_create(&src->thread, NULL, source_main, src) != 0)
        return TL_ESYS;
    src->started = true;
    return 0;
}

static void source_pause(tl_source *src, bool paused)
{
    pthread_mutex_lock(&src->lock);
    src->paused = paused;
    pthread_cond_broadcast(&src->cond);
    pthread_mutex_unlock(&src->lock);
}

/* ZeroMQ keeps no offsets: there is nothing to commit. */
static int source_commit(tl_source *src, const char *topic, int32_t partition, int64_t next)
{
    (void)src, (void)topic, (void)partition, (void)next;
    return 0;
}

static void source_release(tl_source *src, tl_msg *msg)
{
    zmsg *m = msg->handle;
    (void)src;
    tl_source *owner = m->src;
    close_frames(m->frames, m->nframes);
    if (m->recycled)
        tl_recycler_put(owner->blocks, m);
    else
        free(m);
    atomic_fetch_sub(&owner->outstanding, 1);
    source_unref(owner);
}

static void source_stop(tl_source *src)
{
    pthread_mutex_lock(&src->lock);
    src->stopping = true;
    pthread_cond_broadcast(&src->cond);
    pthread_mutex_unlock(&src->lock);
    if (src->started)
        pthread_join(src->thread, NULL);
    src->started = false;
    src->stopped = true;
}

static void source_close(tl_source *src)
{
    if (!src)
        return;
    source_stop(src);
    zmq_close(src->sock);
    src->sock = NULL;
    tl_zmq_ctx_release();
    source_unref(src);
}

void tl_zmq_source_stats_get(const tl_source *src, tl_zmq_source_stats *out)
{
    tl_source *s = (tl_source *)src;
    out->received = atomic_load(&s->received);
    out->delivered = atomic_load(&s->delivered);
    out->dropped_malformed = atomic_load(&s->malformed);
    out->dropped_oversized = atomic_load(&s->oversized);
    out->outstanding = atomic_load(&s->outstanding);
}

const char *tl_zmq_source_endpoint(const tl_source *src)
{
    return src->endpoint;
}

const tl_source_ops tl_zmq_source_ops = {
    .type = "zmq",
    .params = source_params,
    .at_least_once = false,
    .open = source_open,
    .start = source_start,
    .pause = source_pause,
    .commit = source_commit,
    .release = source_release,
    .stop = source_stop,
    .close = source_close,
    .input = "endpoint",
    .ranges = source_ranges,
    .check = source_check,
};
