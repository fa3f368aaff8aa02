/*
 * ZeroMQ throughput: a plain PULL loop (zmq_msg_recv, nothing done per message)
 * against taskloop (the zmq source, a no-op handler), over tcp and ipc. A PUSH thread
 * in the same process sends N single-frame messages of 100 bytes; the clock runs from
 * the first message received to the last.
 *
 *   zmq_throughput [-n N] [--port PORT] [--rounds R]
 *       (default 5,000,000 messages, port 29557, 3 rounds, at most 20)
 *
 * Every receiver runs R times, the receivers taking turns; its best round and its
 * median round are each compared with the plain loop's (one round's figures move by
 * tens of percent on a small shared machine).
 *
 * Thread rules: main receives (plain) or watches the service; one sender thread.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_util.h"
#include <taskloop/zmq.h>

#define RUN_TIMEOUT_MS 180000
#define MSG_SIZE 100

typedef struct variant {
    const char *name;
    const char *ordering; /* NULL: the plain PULL loop */
    bool run_inline;
} variant;

static const variant variants[] = {
    {"plain", NULL, false},
    {"tl_inline", "none", true},
    {"tl_pool", "none", false},
};

typedef struct sender {
    void *ctx;
    const char *endpoint;
    uint64_t n;
    pthread_t thread;
    uint64_t sent;
    atomic_bool received; /* the receiver has them all (or gave up) */
} sender;

static void *send_main(void *arg)
{
    sender *s = arg;
    char payload[MSG_SIZE];
    memset(payload, 'x', sizeof(payload));
    void *sock = zmq_socket(s->ctx, ZMQ_PUSH);
    int timeout = 10000, linger = 10000;
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(sock, s->endpoint) == 0)
        for (s->sent = 0; s->sent < s->n; s->sent++)
            if (zmq_send(sock, payload, sizeof(payload), 0) < 0)
                break;
    /* libzmq 4.3 can drop what a PUSH socket still buffers when it is closed, linger or
     * not, when the receiver is behind: close only once the receiver is done. */
    int64_t give_up = bench_now_ns() + (int64_t)RUN_TIMEOUT_MS * 1000000;
    while (!atomic_load(&s->received) && bench_now_ns() < give_up)
        bench_sleep_us(1000);
    zmq_close(sock);
    return NULL;
}

static int sender_start(sender *s, void *ctx, const char *endpoint, uint64_t n)
{
    *s = (sender){.ctx = ctx, .endpoint = endpoint, .n = n};
    atomic_init(&s->received, false);
    return pthread_create(&s->thread, NULL, send_main, s);
}

/* Seconds from the first message to the n-th, or -1. */
static double run_plain(void *ctx, const char *endpoint, uint64_t n)
{
    void *sock = zmq_socket(ctx, ZMQ_PULL);
    int timeout = 1000;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    if (zmq_bind(sock, endpoint) != 0) {
        fprintf(stderr, "zmq_throughput: bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return -1;
    }
    sender s;
    if (sender_start(&s, ctx, endpoint, n) != 0) {
        zmq_close(sock);
        return -1;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    uint64_t got = 0;
    int64_t first = 0, deadline = bench_now_ns() + (int64_t)RUN_TIMEOUT_MS * 1000000;
    while (got < n && bench_now_ns() < deadline) {
        if (zmq_msg_recv(&m, sock, 0) < 0)
            continue;
        if (got++ == 0)
            first = bench_now_ns();
    }
    int64_t last = bench_now_ns();
    zmq_msg_close(&m);
    atomic_store(&s.received, true);
    pthread_join(s.thread, NULL);
    zmq_close(sock);
    return got == n ? (double)(last - first) / 1e9 : -1;
}

static double run_taskloop(void *ctx, const variant *v, const char *endpoint, uint64_t n)
{
    bench_mark mark = {0};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_zmq_register(reg) != 0 ||
        tl_register_handler(reg, "noop", bench_noop, &mark) != 0)
        return -1;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: bench\n"
             "loop: { workers: 2 }\n"
             "sources:\n"
             "  in: { type: zmq, endpoint: \"%s\", socket: pull, bind: true%s }\n"
             "routes:\n"
             "  - { source: in, handler: noop, ordering: %s, inline: %s, timeout: 30s }\n",
             endpoint, getenv("BENCH_ZMQ_SOURCE_EXTRA") ? getenv("BENCH_ZMQ_SOURCE_EXTRA") : "",
             v->ordering, v->run_inline ? "true" : "false");
    bench_svc b;
    double secs = -1;
    if (bench_svc_start(&b, reg, yaml) == 0) {
        sender s;
        if (sender_start(&s, ctx, endpoint, n) == 0) {
            int64_t done = bench_svc_wait_settled(&b, n, RUN_TIMEOUT_MS);
            int64_t first = atomic_load(&mark.first_ns);
            if (done > 0 && first > 0)
                secs = (double)(done - first) / 1e9;
            atomic_store(&s.received, true);
            pthread_join(s.thread, NULL);
            if (secs < 0) {
                tl_service_stats st;
                tl_service_stats_get(b.svc, &st);
                fprintf(stderr,
                        "zmq_throughput: %s: sent %" PRIu64 ", consumed %" PRIu64
                        ", completed %" PRIu64 ", in flight %" PRIu64 "\n",
                        endpoint, s.sent, st.consumed, st.completed, st.in_flight);
            }
        }
        bench_svc_stop(&b);
    }
    tl_registry_free(reg);
    return secs;
}

int main(int argc, char **argv)
{
    uint64_t n = 5000000;
    int port = 29557, rounds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    }
    if (rounds < 1)
        rounds = 1;
    if (rounds > BENCH_MAX_ROUNDS)
        rounds = BENCH_MAX_ROUNDS;
    void *ctx = zmq_ctx_new();
    int rc = 0;
    printf("zmq: %" PRIu64 " messages of %d bytes, PUSH thread -> PULL\n", n, MSG_SIZE);
    const char *transports[] = {"tcp", "ipc"};
    enum { NV = sizeof variants / sizeof variants[0] };
    bench_rounds runs[2][NV] = {0};
    for (int r = 0; r < rounds; r++) {
        for (size_t t = 0; t < 2; t++) {
            for (size_t i = 0; i < NV; i++) {
                const variant *v = &variants[i];
                /* An endpoint per run: ZeroMQ closes sockets in the background, and a
                 * closing ipc socket removes its file even when a new socket bound the
                 * same path. */
                char ep[128];
                if (t == 0)
                    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port + (int)(r * NV + i));
                else
                    snprintf(ep, sizeof(ep), "ipc:///tmp/tl-bench-%d-%d-%zu.ipc", (int)getpid(), r,
                             i);
                double secs = v->ordering ? run_taskloop(ctx, v, ep, n) : run_plain(ctx, ep, n);
                if (t == 1)
                    unlink(ep + 6);
                double rate = secs > 0 ? (double)n / secs : -1;
                printf("  (round %d: %s %s %.0f msgs/s)\n", r + 1, transports[t], v->name, rate);
                bench_rounds_add(&runs[t][i], rate);
            }
        }
    }
    bench_rounds_header("via receiver", rounds);
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < NV; i++) {
            char bench[32];
            snprintf(bench, sizeof(bench), "zmq_%s", transports[t]);
            if (!bench_rounds_row(bench, transports[t], variants[i].name, &runs[t][i], &runs[t][0]))
                rc = 1;
        }
    }
    zmq_ctx_term(ctx);
    return rc;
}
