/*
 * The zmq sinks: "zmq" (PUSH, connects) and "zmqpub" (PUB, binds).
 *
 * send() runs on the loop thread, which must never block, while a ZeroMQ send may wait
 * up to send_timeout for a peer. So each sink owns a thread: send() copies the message
 * into ready-made frames and queues them; the sink thread writes them and acks.
 *
 * Thread rules:
 *  - open/send/flush/close run on the loop thread (adapter.h).
 *  - The socket is created in open(); afterwards only the sink thread uses it, until
 *    close() joins that thread and closes it (pthread_create/join are the barriers
 *    ZeroMQ requires when a socket changes threads).
 *  - lock guards head, tail, queued, busy and closing; work wakes the sink thread,
 *    idle wakes flush().
 *  - Acks run on the sink thread, exactly once per accepted send.
 */
#include "zmq_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct send_item {
    struct send_item *next;
    tl_sink_ack_cb ack;
    void *arg;
    size_t n;
    zmq_msg_t frames[];
} send_item;

struct tl_sink {
    void *sock;
    char *endpoint;
    size_t queue_cap;
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_cond_t idle;
    send_item *head, *tail;
    size_t queued;
    bool busy;
    bool closing;
};

static const tl_param sink_params[] = {
    {"hwm", TL_PARAM_INT, false, false, "send high-water mark in messages (default 1000)"},
    {"send_timeout", TL_PARAM_DURATION, false, false,
     "longest wait for a peer before the send fails (default 1s)"},
    {"linger", TL_PARAM_DURATION, false, false,
     "how long close lets queued frames out (default 1s)"},
    {"queue", TL_PARAM_INT, false, false, "sends waiting for the sink thread (default 10000)"},
    TL_ZMQ_CURVE_PARAMS,
    {NULL, 0, false, false, NULL},
};

/* A send that waits, or a close that lingers, more than an hour holds the loop's
 * reroutes or its exit that long; a queue of 16 Mi sends is already memory enough. */
static const tl_param_range sink_ranges[] = {
    {"hwm", 0, INT32_MAX},
    {"send_timeout", 0, 3600 * 1000},
    {"linger", 0, 3600 * 1000},
    {"queue", 1, 1 << 24},
    {NULL, 0, 0},
};

static int clamp_int(int64_t v)
{
    return v < 0 ? -1 : v > INT_MAX ? INT_MAX : (int)v;
}

/* ------------------------------------------------------------ the sink thread */

/* Writes every frame of item; returns 0 or a TL_E* code with *what set. */
static int write_item(tl_sink *sink, send_item *item, const char **what)
{
    for (size_t i = 0; i < item->n; i++) {
        int flags = i + 1 < item->n ? ZMQ_SNDMORE : 0;
        int rc;
        do
            rc = zmq_msg_send(&item->frames[i], sink->sock, flags);
        while (rc < 0 && zmq_errno() == EINTR);
        if (rc < 0) {
            int e = zmq_errno();
            *what = e == EAGAIN ? "zmq sink: no peer took the message within send_timeout"
                                : zmq_strerror(e);
            /* After the first frame ZeroMQ has half a message; it cannot be taken back. */
            return i == 0 ? tl_zmq_err(e) : TL_EIO;
        }
    }
    return 0;
}

static void free_item(send_item *item)
{
    /* Sent frames are empty after zmq_msg_send; closing them is harmless. */
    for (size_t i = 0; i < item->n; i++)
        zmq_msg_close(&item->frames[i]);
    free(item);
}

static void *sink_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-zmq-sink"); /* for top -H, perf, gdb */
    tl_sink *sink = arg;
    pthread_mutex_lock(&sink->lock);
    for (;;) {
        while (!sink->head && !sink->closing)
            pthread_cond_wait(&sink->work, &sink->lock);
        send_item *item = sink->head;
        if (!item)
            break;
        sink->head = item->next;
        if (!sink->head)
            sink->tail = NULL;
        sink->queued--;
        sink->busy = true;
        bool closing = sink->closing;
        pthread_mutex_unlock(&sink->lock);

        const char *what = NULL;
        int err = closing ? TL_ECLOSED : write_item(sink, item, &what);
        if (closing)
            what = "zmq sink closed before the message was sent";
        item->ack(item->arg, err, err ? what : NULL);
        free_item(item);

        pthread_mutex_lock(&sink->lock);
        sink->busy = false;
        pthread_cond_broadcast(&sink->idle);
    }
    pthread_mutex_unlock(&sink->lock);
    return NULL;
}

/* ------------------------------------------------------------ open */

static void sink_free(tl_sink *sink)
{
    free(sink->endpoint);
    pthread_mutex_destroy(&sink->lock);
    pthread_cond_destroy(&sink->work);
    pthread_cond_destroy(&sink->idle);
    free(sink);
}

static tl_sink *sink_alloc(void)
{
    tl_sink *sink = calloc(1, sizeof(*sink));
    if (!sink)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&sink->lock, NULL);
    pthread_cond_init(&sink->work, NULL);
    pthread_cond_init(&sink->idle, &ca);
    pthread_condattr_destroy(&ca);
    return sink;
}

static void set_options(void *sock, const tl_params *conf, bool pub)
{
    int hwm = clamp_int(tl_params_num(conf, "hwm", 1000));
    int timeout = clamp_int(tl_params_num(conf, "send_timeout", 1000));
    int linger = clamp_int(tl_params_num(conf, "linger", 1000));
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (!pub) {
        /* Queue only to connected peers, so a missing peer times out instead of
         * filling a pipe to nowhere and being acked as sent. */
        int one = 1;
        zmq_setsockopt(sock, ZMQ_IMMEDIATE, &one, sizeof(one));
    }
}

static int attach(tl_sink *sink, const char *address, bool pub, char *err, size_t errlen)
{
    int rc = pub ? zmq_bind(sink->sock, address) : zmq_connect(sink->sock, address);
    if (rc != 0) {
        int e = zmq_errno();
        return tl_zmq_fail(err, errlen, e == EINVAL ? TL_ECONFIG : tl_zmq_err(e), address,
                           zmq_strerror(e));
    }
    char last[256] = "";
    size_t len = sizeof(last);
    if (pub && zmq_getsockopt(sink->sock, ZMQ_LAST_ENDPOINT, last, &len) == 0 && *last)
        sink->endpoint = strdup(last);
    else
        sink->endpoint = strdup(address);
    return sink->endpoint ? 0 : TL_ENOMEM;
}

static int sink_open(const char *address, const tl_params *conf, bool pub, tl_sink **out, char *err,
                     size_t errlen)
{
    if (!address || !*address)
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq sink", "an endpoint is required");
    char why[256];
    if (tl_zmq_endpoint_check(address, pub, why, sizeof(why)) ||
        tl_params_check_ranges(sink_params, sink_ranges, conf, why, sizeof(why)))
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq sink", why);
    int64_t cap = tl_params_num(conf, "queue", 10000);
    void *ctx = tl_zmq_ctx_acquire();
    if (!ctx)
        return tl_zmq_fail(err, errlen, TL_ESYS, "zmq", "cannot create a context");
    tl_sink *sink = sink_alloc();
    int rc = sink ? 0 : TL_ENOMEM;
    if (rc == 0) {
        sink->queue_cap = (size_t)cap;
        sink->sock = zmq_socket(ctx, pub ? ZMQ_PUB : ZMQ_PUSH);
        rc = sink->sock ? 0 : TL_EIO;
    }
    if (rc == 0) {
        set_options(sink->sock, conf, pub);
        rc = tl_zmq_curve_setup(sink->sock, conf, err, errlen);
    }
    if (rc == 0)
        rc = attach(sink, address, pub, err, errlen);
    if (rc == 0 && pthread_create(&sink->thread, NULL, sink_main, sink) != 0)
        rc = tl_zmq_fail(err, errlen, TL_ESYS, "zmq sink", "cannot start its thread");
    if (rc == 0) {
        *out = sink;
        return 0;
    }
    if (sink && sink->sock)
        zmq_close(sink->sock);
    if (sink)
        sink_free(sink);
    tl_zmq_ctx_release();
    if (err && errlen > 0 && !*err)
        tl_zmq_fail(err, errlen, rc, "zmq sink", tl_strerror(rc));
    return rc;
}

/* tl_sink_ops.check of both sinks: the endpoint's syntax (bind for pub, else connect);
 * a sink section's keys are all ranges, which the config checks itself. */
static void sink_check(const char *address, bool pub, tl_param_report_fn report, void *rep)
{
    char why[256];
    if (address && tl_zmq_endpoint_check(address, pub, why, sizeof(why)))
        report(rep, NULL, NULL, why);
}

static void push_check(const char *address, const tl_params *conf, tl_param_report_fn report,
                       void *rep)
{
    (void)conf;
    sink_check(address, false, report, rep);
}

static void pub_check(const char *address, const tl_params *conf, tl_param_report_fn report,
                      void *rep)
{
    (void)conf;
    sink_check(address, true, report, rep);
}

static int push_open(const char *address, const tl_params *conf, tl_sink **out, char *err,
                     size_t errlen)
{
    return sink_open(address, conf, false, out, err, errlen);
}

static int pub_open(const char *address, const tl_params *conf, tl_sink **out, char *err,
                    size_t errlen)
{
    return sink_open(address, conf, true, out, err, errlen);
}

/* ------------------------------------------------------------ ops */

static int sink_send(tl_sink *sink, const tl_out_msg *msg, tl_sink_ack_cb ack, void *arg)
{
    if (!msg || !ack || msg->nheaders > TL_ZMQ_MAX_HEADERS)
        return TL_EINVAL;
    size_t cap = 2 + 2 * msg->nheaders;
    send_item *item = malloc(sizeof(*item) + cap * sizeof(zmq_msg_t));
    if (!item)
        return TL_ENOMEM;
    int n = tl_zmq_wire_encode(msg, item->frames, cap);
    if (n < 0) {
        free(item);
        return n;
    }
    item->next = NULL;
    item->ack = ack;
    item->arg = arg;
    item->n = (size_t)n;
    int rc = 0;
    pthread_mutex_lock(&sink->lock);
    if (sink->closing)
        rc = TL_ECLOSED;
    else if (sink->queued >= sink->queue_cap)
        rc = TL_EAGAIN;
    if (rc == 0) {
        if (sink->tail)
            sink->tail->next = item;
        else
            sink->head = item;
        sink->tail = item;
        sink->queued++;
        pthread_cond_signal(&sink->work);
    }
    pthread_mutex_unlock(&sink->lock);
    if (rc != 0)
        free_item(item);
    return rc;
}

static int sink_flush(tl_sink *sink, int64_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&sink->lock);
    while ((sink->head || sink->busy) && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&sink->idle, &sink->lock);
        else if (pthread_cond_timedwait(&sink->idle, &sink->lock, &deadline) == ETIMEDOUT)
            rc = (sink->head || sink->busy) ? TL_ETIMEDOUT : 0;
    }
    pthread_mutex_unlock(&sink->lock);
    return rc;
}

static void sink_close(tl_sink *sink)
{
    if (!sink)
        return;
    pthread_mutex_lock(&sink->lock);
    sink->closing = true;
    pthread_cond_signal(&sink->work);
    pthread_mutex_unlock(&sink->lock);
    /* The thread acks what is still queued with TL_ECLOSED, then exits. */
    pthread_join(sink->thread, NULL);
    zmq_close(sink->sock);
    tl_zmq_ctx_release();
    sink_free(sink);
}

const char *tl_zmq_sink_endpoint(const tl_sink *sink)
{
    return sink->endpoint;
}

const tl_sink_ops tl_zmq_push_sink_ops = {
    .scheme = "zmq",
    .params = sink_params,
    .open = push_open,
    .send = sink_send,
    .flush = sink_flush,
    .close = sink_close,
    .ranges = sink_ranges,
    .check = push_check,
};

const tl_sink_ops tl_zmq_pub_sink_ops = {
    .scheme = "zmqpub",
    .params = sink_params,
    .open = pub_open,
    .send = sink_send,
    .flush = sink_flush,
    .close = sink_close,
    .ranges = sink_ranges,
    .check = pub_check,
};
