/* `taskloop produce`: sends test load to a Kafka topic or a ZeroMQ endpoint. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"

static const char usage[] =
    "usage: taskloop produce --to kafka:TOPIC|zmq:ENDPOINT -n N [options]\n"
    "\n"
    "Sends N test messages. Each payload starts with a unique id (id=000123); per the\n"
    "ratios, some carry the word `stall` or `fail`, which the built-in `work` handler\n"
    "turns into a hung or a failing handler. Kafka: an idempotent producer; the\n"
    "command waits for every delivery report. ZeroMQ: a PUSH socket that connects.\n"
    "\n"
    "options:\n"
    "  --to TARGET          kafka:TOPIC or zmq:ENDPOINT (e.g. zmq:tcp://127.0.0.1:5557)\n"
    "  --brokers B          Kafka bootstrap servers (default $KAFKA or localhost:9092)\n"
    "  -n, --count N        messages to send (required)\n"
    "  --first-id I         id of the first message (default 0)\n"
    "  --size BYTES         pad payloads to this size (default: no padding)\n"
    "  --rate R             messages per second (default: as fast as possible)\n"
    "  --stall-ratio X      share of messages marked `stall`, 0..1 (default 0)\n"
    "  --fail-ratio Y       share of messages marked `fail`, 0..1 (default 0)\n"
    "  --keys K             give messages K distinct keys key-0..key-K-1 (default none)\n"
    "  --partitions P       Kafka: send to partitions 0..P-1 in turn (default: by key)\n"
    "  -h, --help           this text\n"
    "\n"
    "Prints what was delivered and failed; the exit status is 1 if anything failed.\n";

typedef struct produce_args {
    const char *to;
    const char *brokers;
    tl_cli_load load;
    bool have_count;
} produce_args;

/* Takes the value of option name from "--name V" or "--name=V"; NULL if it is not it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        tl_cli_err("produce: %s needs a value", name);
        exit(2);
    }
    return argv[++*i];
}

static bool bad(const char *name, const char *v)
{
    tl_cli_err("produce: %s: '%s' is not a valid value", name, v);
    return false;
}

/* Parses one option at argv[*i]; false after reporting a problem. */
static bool parse_opt(produce_args *a, int argc, char **argv, int *i)
{
    const char *v;
    uint64_t u;
    if ((v = opt_value(argc, argv, i, "--to")))
        a->to = v;
    else if ((v = opt_value(argc, argv, i, "--brokers")))
        a->brokers = v;
    else if ((v = opt_value(argc, argv, i, "-n")) || (v = opt_value(argc, argv, i, "--count"))) {
        if (!tl_cli_uint(v, &a->load.count))
            return bad("--count", v);
        a->have_count = true;
    } else if ((v = opt_value(argc, argv, i, "--first-id"))) {
        if (!tl_cli_uint(v, &a->load.first_id))
            return bad("--first-id", v);
    } else if ((v = opt_value(argc, argv, i, "--size"))) {
        if (!tl_cli_uint(v, &u) || u > 65000)
            return bad("--size (at most 65000)", v);
        a->load.size = (size_t)u;
    } else if ((v = opt_value(argc, argv, i, "--rate"))) {
        char *end;
        a->load.rate = strtod(v, &end);
        if (*end || a->load.rate < 0)
            return bad("--rate", v);
    } else if ((v = opt_value(argc, argv, i, "--stall-ratio"))) {
        if (!tl_cli_ratio(v, &a->load.stall_ratio))
            return bad("--stall-ratio", v);
    } else if ((v = opt_value(argc, argv, i, "--fail-ratio"))) {
        if (!tl_cli_ratio(v, &a->load.fail_ratio))
            return bad("--fail-ratio", v);
    } else if ((v = opt_value(argc, argv, i, "--keys"))) {
        if (!tl_cli_uint(v, &a->load.keys))
            return bad("--keys", v);
    } else if ((v = opt_value(argc, argv, i, "--partitions"))) {
        if (!tl_cli_uint(v, &u) || u > 100000)
            return bad("--partitions", v);
        a->load.partitions = (int32_t)u;
    } else {
        tl_cli_err("produce: unexpected argument '%s' (see taskloop produce --help)", argv[*i]);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- ZeroMQ */

/* Sends message i as the adapter's wire format: payload, then the key if any. */
static bool zmq_send_one(void *sock, const tl_cli_load *l, uint64_t i)
{
    char payload[65536], key[64];
    size_t plen = tl_cli_load_payload(l, i, payload, sizeof(payload));
    size_t klen = tl_cli_load_key(l, i, key, sizeof(key));
    if (zmq_send(sock, payload, plen, klen ? ZMQ_SNDMORE : 0) < 0)
        return false;
    return klen == 0 || zmq_send(sock, key, klen, 0) >= 0;
}

static int produce_zmq(const char *endpoint, const tl_cli_load *l, tl_cli_load_stats *st)
{
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_PUSH) : NULL;
    /* A peer that never shows up ends the run instead of blocking it forever. */
    int timeout = 10000, linger = 10000;
    if (!sock || zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout)) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_connect(sock, endpoint) != 0) {
        tl_cli_err("produce: cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        if (sock)
            zmq_close(sock);
        if (ctx)
            zmq_ctx_term(ctx);
        return -1;
    }
    int64_t start = tl_cli_now_ms();
    for (uint64_t i = 0; i < l->count; i++) {
        tl_cli_load_pace(l, i, start);
        if (!zmq_send_one(sock, l, i)) {
            tl_cli_err("produce: send to %s failed: %s", endpoint, zmq_strerror(zmq_errno()));
            atomic_fetch_add(&st->failed, l->count - i);
            break;
        }
        tl_cli_load_count(l, i, st);
        atomic_fetch_add(&st->delivered, 1);
    }
    zmq_close(sock); /* lingers until the queued messages went out */
    zmq_ctx_term(ctx);
    return 0;
}

/* ---------------------------------------------------------------- the command */

static void report(const char *to, const tl_cli_load_stats *st, int64_t ms)
{
    uint64_t delivered = atomic_load(&st->delivered);
    double secs = ms > 0 ? (double)ms / 1000.0 : 0.001;
    printf("produced to %s: sent %" PRIu64 ", delivered %" PRIu64 ", failed %" PRIu64
           " (marked stall %" PRIu64 ", fail %" PRIu64 ") in %.1f s, %.0f msgs/s\n",
           to, atomic_load(&st->sent), delivered, atomic_load(&st->failed), atomic_load(&st->stall),
           atomic_load(&st->fail), secs, (double)delivered / secs);
}

static int produce(const produce_args *a)
{
    tl_cli_load_stats st = {0};
    int64_t start = tl_cli_now_ms();
    int rc;
    if (strncmp(a->to, "kafka:", 6) == 0) {
        char err[512];
        rc = tl_cli_produce_kafka(a->brokers, a->to + 6, &a->load, &st, NULL, err, sizeof(err));
        if (rc != 0)
            tl_cli_err("produce: cannot start a Kafka producer for %s: %s", a->brokers, err);
    } else {
        rc = produce_zmq(a->to + 4, &a->load, &st);
    }
    if (rc != 0)
        return 1;
    report(a->to, &st, tl_cli_now_ms() - start);
    return atomic_load(&st.failed) == 0 && atomic_load(&st.delivered) == a->load.count ? 0 : 1;
}

int tl_cli_cmd_produce(int argc, char **argv)
{
    const char *env = getenv("KAFKA");
    produce_args a = {.brokers = env && *env ? env : "localhost:9092"};
    for (int i = 1; i < argc; i++) {
        if (tl_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        if (!parse_opt(&a, argc, argv, &i))
            return 2;
    }
    if (!a.to || !a.have_count) {
        tl_cli_err("produce: --to and -n are required (see taskloop produce --help)");
        return 2;
    }
    bool kafka = strncmp(a.to, "kafka:", 6) == 0 && a.to[6];
    bool zmq = strncmp(a.to, "zmq:", 4) == 0 && a.to[4];
    if (!kafka && !zmq) {
        tl_cli_err("produce: --to must be kafka:TOPIC or zmq:ENDPOINT, not '%s'", a.to);
        return 2;
    }
    return produce(&a);
}
