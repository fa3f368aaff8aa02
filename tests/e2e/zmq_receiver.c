/*
 * The far end of a ZeroMQ reroute target for the end-to-end tests: binds a PULL
 * socket (the "zmq:" sink connects a PUSH to it) and writes one line per message,
 *
 *     name=value,name=value<TAB>payload
 *
 * the same shape as `kcat -f '%h\t%s\n'`, so tests/e2e/verify.py reads both. The wire
 * format is adapters/zmq's: payload, optional key, then header name/value frame pairs.
 * Runs until SIGTERM or SIGINT; each line is flushed as it is written.
 *
 * usage: tl_e2e_zmq_receiver ENDPOINT OUTFILE
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define MAX_FRAMES 64

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Receives every frame of one message into frames; returns how many, 0 on timeout. */
static int recv_message(void *sock, zmq_msg_t *frames)
{
    int n = 0;
    for (;;) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, 0) < 0) {
            zmq_msg_close(&f);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
            return 0;
        }
        int more = zmq_msg_more(&f);
        if (n < MAX_FRAMES)
            frames[n++] = f;
        else
            zmq_msg_close(&f);
        if (!more)
            return n;
    }
}

static void write_message(FILE *out, zmq_msg_t *frames, int n)
{
    for (int i = 2; i + 1 < n; i += 2) {
        fprintf(out, "%s%.*s=%.*s", i > 2 ? "," : "", (int)zmq_msg_size(&frames[i]),
                (const char *)zmq_msg_data(&frames[i]), (int)zmq_msg_size(&frames[i + 1]),
                (const char *)zmq_msg_data(&frames[i + 1]));
    }
    fprintf(out, "\t%.*s\n", (int)zmq_msg_size(&frames[0]), (const char *)zmq_msg_data(&frames[0]));
    fflush(out);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ENDPOINT OUTFILE\n", argv[0]);
        return 2;
    }
    FILE *out = fopen(argv[2], "a");
    if (!out) {
        fprintf(stderr, "zmq_receiver: cannot open %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_PULL);
    /* A short receive timeout lets the loop notice a signal promptly. */
    int timeout = 200, linger = 0;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_bind(sock, argv[1]) != 0) {
        fprintf(stderr, "zmq_receiver: cannot bind %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    fprintf(stderr, "zmq_receiver: listening on %s\n", argv[1]);
    unsigned long count = 0;
    zmq_msg_t frames[MAX_FRAMES];
    while (!stop) {
        int n = recv_message(sock, frames);
        if (n == 0)
            continue;
        write_message(out, frames, n);
        count++;
        for (int i = 0; i < n; i++)
            zmq_msg_close(&frames[i]);
    }
    fprintf(stderr, "zmq_receiver: received %lu messages\n", count);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    fclose(out);
    return 0;
}
