/* `taskloop produce`: sends generated test load, or the lines of a file, to a Kafka
 * topic or a ZeroMQ endpoint, with a progress line on a terminal and a summary. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"

/* How often the progress line refreshes. */
#define PROGRESS_MS 250

static const char usage[] =
    "usage: taskloop produce --to kafka:TOPIC|zmq:ENDPOINT -n N [options]\n"
    "       taskloop produce --to kafka:TOPIC|zmq:ENDPOINT --from FILE|- [options]\n"
    "\n"
    "Sends N test messages. Each payload starts with a unique id (id=000123); per the\n"
    "ratios, some carry the word `stall` or `fail`, which the built-in `work` handler\n"
    "turns into a hung or a failing handler. Kafka: an idempotent producer; the\n"
    "command waits for every delivery report. ZeroMQ: a PUSH socket that connects.\n"
    "\n"
    "With --from, sends a message per line of FILE (`-`: standard input) instead: the\n"
    "line is the payload (without its LF or CR LF). --format key-value reads\n"
    "KEY<TAB>PAYLOAD (an empty KEY: no key); --headers reads NAME=VALUE;NAME=VALUE<TAB>\n"
    "before that (an empty field: no headers). The payload is the rest of the line, TABs\n"
    "and all. A line that does not parse stops the run, naming FILE:LINE.\n"
    "\n"
    "options:\n"
    "  --to TARGET          kafka:TOPIC or zmq:ENDPOINT (e.g. zmq:tcp://127.0.0.1:5557)\n"
    "  --brokers B          Kafka bootstrap servers (default $KAFKA or localhost:9092)\n"
    "  -n, --count N        messages to send (required without --from)\n"
    "  --first-id I         id of the first message (default 0)\n"
    "  --size BYTES         pad payloads to this size (default: no padding)\n"
    "  --rate R             messages per second (default: as fast as possible)\n"
    "  --stall-ratio X      share of messages marked `stall`, 0..1 (default 0)\n"
    "  --fail-ratio Y       share of messages marked `fail`, 0..1 (default 0)\n"
    "  --keys K             give messages K distinct keys key-0..key-K-1 (default none)\n"
    "  --partitions P       Kafka: send to partitions 0..P-1 in turn (default: by key)\n"
    "  --from FILE|-        send the lines of FILE, or of standard input\n"
    "  --format F           with --from: payload (default) or key-value\n"
    "  --headers            with --from: each line starts with NAME=VALUE;...<TAB>\n"
    "  --no-progress        no progress line (there is none unless stderr is a terminal)\n"
    "  -h, --help           this text\n"
    "\n"
    "On a terminal a progress line shows the count, the rate and, when the total is\n"
    "known (-n, or a regular file), the time left. At the end it prints what was sent,\n"
    "delivered and failed; the exit status is 1 if anything failed. ZeroMQ has no\n"
    "acknowledgements: delivered there means handed to the socket, which then waits up\n"
    "to 120 s for a slow peer to take what is queued.\n";

typedef struct produce_args {
    const char *to;
    const char *brokers;
    tl_cli_load load;
    bool have_count;
    const char *from;      /* --from: a file, or "-" */
    const char *load_only; /* an option of generated load given, for the --from check */
    tl_cli_lines_opts lines;
    bool progress;
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

/* True for an option that shapes generated load only (not --from's). */
static bool load_option(const char *arg)
{
    static const char *const names[] = {"--first-id", "--size", "--stall-ratio", "--fail-ratio",
                                        "--keys"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        size_t n = strlen(names[k]);
        if (strncmp(arg, names[k], n) == 0 && (arg[n] == '\0' || arg[n] == '='))
            return true;
    }
    return false;
}

/* Parses one option of generated load at argv[*i]; false after reporting a problem. */
static bool parse_load_opt(produce_args *a, int argc, char **argv, int *i)
{
    const char *v;
    uint64_t u;
    if ((v = opt_value(argc, argv, i, "--first-id"))) {
        if (!tl_program_parse_uint(v, &a->load.first_id))
            return bad("--first-id", v);
    } else if ((v = opt_value(argc, argv, i, "--size"))) {
        if (!tl_program_parse_uint(v, &u) || u > 65000)
            return bad("--size (at most 65000)", v);
        a->load.size = (size_t)u;
    } else if ((v = opt_value(argc, argv, i, "--stall-ratio"))) {
        if (!tl_cli_ratio(v, &a->load.stall_ratio))
            return bad("--stall-ratio", v);
    } else if ((v = opt_value(argc, argv, i, "--fail-ratio"))) {
        if (!tl_cli_ratio(v, &a->load.fail_ratio))
            return bad("--fail-ratio", v);
    } else if ((v = opt_value(argc, argv, i, "--keys"))) {
        if (!tl_program_parse_uint(v, &a->load.keys))
            return bad("--keys", v);
    }
    return true;
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
        if (!tl_program_parse_uint(v, &a->load.count))
            return bad("--count", v);
        a->have_count = true;
    } else if ((v = opt_value(argc, argv, i, "--from"))) {
        a->from = v;
    } else if ((v = opt_value(argc, argv, i, "--format"))) {
        if (strcmp(v, "payload") != 0 && strcmp(v, "key-value") != 0)
            return bad("--format (payload or key-value)", v);
        a->lines.key = strcmp(v, "key-value") == 0;
    } else if (strcmp(argv[*i], "--headers") == 0) {
        a->lines.headers = true;
    } else if (strcmp(argv[*i], "--no-progress") == 0) {
        a->progress = false;
    } else if (load_option(argv[*i])) {
        a->load_only = argv[*i];
        return parse_load_opt(a, argc, argv, i);
    } else if ((v = opt_value(argc, argv, i, "--rate"))) {
        char *end;
        a->load.rate = strtod(v, &end);
        if (*end || a->load.rate < 0)
            return bad("--rate", v);
    } else if ((v = opt_value(argc, argv, i, "--partitions"))) {
        if (!tl_program_parse_uint(v, &u) || u > 100000)
            return bad("--partitions", v);
        a->load.partitions = (int32_t)u;
    } else {
        tl_cli_err("produce: unexpected argument '%s' (see taskloop produce --help)", argv[*i]);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- ZeroMQ */

/* Sends m as the adapter's wire format: payload, then the key (an empty frame when
 * there are headers but no key), then a frame per header name and value. */
static bool zmq_send_one(void *sock, const tl_cli_out *m)
{
    bool key_frame = m->key || m->nheaders;
    if (zmq_send(sock, m->payload, m->len, key_frame ? ZMQ_SNDMORE : 0) < 0)
        return false;
    if (key_frame &&
        zmq_send(sock, m->key ? m->key : "", m->key_len, m->nheaders ? ZMQ_SNDMORE : 0) < 0)
        return false;
    for (size_t k = 0; k < m->nheaders; k++) {
        const char *name = m->headers[k].key, *value = m->headers[k].value;
        if (zmq_send(sock, name, strlen(name), ZMQ_SNDMORE) < 0 ||
            zmq_send(sock, value, strlen(value), k + 1 < m->nheaders ? ZMQ_SNDMORE : 0) < 0)
            return false;
    }
    return true;
}

static int produce_zmq(const char *endpoint, const tl_cli_feed *f, tl_cli_load_stats *st)
{
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_PUSH) : NULL;
    /* A peer that never shows up ends the run instead of blocking it forever. The
     * linger is long: a slow consumer (a paused source, handlers of a millisecond)
     * may hold thousands of messages queued behind its high-water mark when the last
     * one is sent, and ZeroMQ drops what is still queued once the linger ends. */
    int timeout = 10000, linger = 120000;
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
    tl_cli_out m;
    int more;
    for (uint64_t i = 0; (more = f->next(f->user, i, &m)) > 0; i++) {
        tl_cli_load_pace(f->rate, i, start);
        if (!zmq_send_one(sock, &m)) {
            tl_cli_err("produce: send to %s failed: %s", endpoint, zmq_strerror(zmq_errno()));
            atomic_fetch_add(&st->failed, 1);
            break;
        }
        tl_cli_load_count(m.marker, st);
        atomic_fetch_add(&st->delivered, 1);
    }
    if (more < 0)
        atomic_fetch_add(&st->failed, 1);
    zmq_close(sock); /* lingers until the queued messages went out */
    zmq_ctx_term(ctx);
    return 0;
}

/* ---------------------------------------------------------------- progress */

/* Wraps the feed that is sent, to refresh the progress line as messages go out. */
typedef struct progress {
    tl_cli_feed inner;
    const tl_cli_load_stats *st;
    uint64_t total;           /* messages to send, when known; 0: not known */
    const tl_cli_lines *file; /* gives the share done when total is 0; may be NULL */
    int64_t start_ms, next_ms;
    bool shown;
} progress;

/* The share of the work done (0..1), or -1 when the total is not known. */
static double progress_done(const progress *p, uint64_t sent)
{
    if (p->total)
        return (double)sent / (double)p->total;
    return p->file ? tl_cli_lines_done(p->file) : -1.0;
}

static void progress_show(progress *p, uint64_t sent)
{
    int64_t elapsed = tl_cli_now_ms() - p->start_ms;
    double secs = elapsed > 0 ? (double)elapsed / 1000.0 : 0.001;
    double rate = (double)sent / secs, done = progress_done(p, sent);
    char line[160], eta[48] = "";
    if (done > 0.0 && done <= 1.0)
        snprintf(eta, sizeof(eta), ", %.0f%%, about %.0f s left", done * 100.0,
                 secs * (1.0 - done) / done);
    snprintf(line, sizeof(line), "produce: %" PRIu64 " sent, %.0f msgs/s%s", sent, rate, eta);
    p->shown = tl_logger_status(tl_program_log(), line);
}

static int progress_next(void *user, uint64_t i, tl_cli_out *m)
{
    progress *p = user;
    int64_t now = tl_cli_now_ms();
    if (now >= p->next_ms) {
        p->next_ms = now + PROGRESS_MS;
        progress_show(p, i);
    }
    return p->inner.next(p->inner.user, i, m);
}

/* ---------------------------------------------------------------- the command */

static void report(const char *to, bool generated, const tl_cli_load_stats *st, int64_t ms)
{
    uint64_t delivered = atomic_load(&st->delivered);
    double secs = ms > 0 ? (double)ms / 1000.0 : 0.001;
    char marked[96] = "";
    if (generated)
        snprintf(marked, sizeof(marked), " (marked stall %" PRIu64 ", fail %" PRIu64 ")",
                 atomic_load(&st->stall), atomic_load(&st->fail));
    printf("produced to %s: sent %" PRIu64 ", delivered %" PRIu64 ", failed %" PRIu64
           "%s in %.1f s, %.0f msgs/s\n",
           to, atomic_load(&st->sent), delivered, atomic_load(&st->failed), marked, secs,
           (double)delivered / secs);
    fflush(stdout);
}

static int send_feed(const produce_args *a, const tl_cli_feed *f, tl_cli_load_stats *st)
{
    if (strncmp(a->to, "kafka:", 6) != 0)
        return produce_zmq(a->to + 4, f, st);
    char err[512];
    int rc = tl_cli_produce_kafka_feed(a->brokers, a->to + 6, f, st, NULL, err, sizeof(err));
    if (rc != 0)
        tl_cli_err("produce: cannot start a Kafka producer for %s: %s", a->brokers, err);
    return rc;
}

static int produce(const produce_args *a)
{
    tl_cli_load_stats st = {0};
    tl_cli_lines *file = NULL;
    tl_cli_gen *gen = NULL;
    progress p = {.st = &st, .start_ms = tl_cli_now_ms()};
    if (a->from) {
        if (!(file = tl_cli_lines_open(a->from, &a->lines)))
            return 1;
        p.inner = tl_cli_lines_feed(file);
        p.file = file;
    } else {
        if (!(gen = malloc(sizeof(*gen)))) {
            tl_cli_err("produce: out of memory");
            return 1;
        }
        p.inner = tl_cli_load_feed(gen, &a->load);
        p.total = a->load.count;
    }
    p.inner.rate = a->load.rate;
    p.inner.partitions = a->load.partitions;
    tl_cli_feed f = p.inner;
    if (a->progress)
        f.next = progress_next, f.user = &p;
    int rc = send_feed(a, &f, &st);
    if (p.shown)
        tl_logger_status(tl_program_log(), NULL);
    tl_cli_lines_close(file);
    free(gen);
    if (rc != 0)
        return 1;
    report(a->to, !a->from, &st, tl_cli_now_ms() - p.start_ms);
    uint64_t sent = atomic_load(&st.sent);
    bool all =
        a->from ? atomic_load(&st.delivered) == sent : atomic_load(&st.delivered) == a->load.count;
    return atomic_load(&st.failed) == 0 && all ? 0 : 1;
}

int tl_cli_cmd_produce(int argc, char **argv)
{
    const char *env = getenv("KAFKA");
    produce_args a = {.brokers = env && *env ? env : "localhost:9092", .progress = true};
    for (int i = 1; i < argc; i++) {
        if (tl_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        if (!parse_opt(&a, argc, argv, &i))
            return 2;
    }
    if (!a.to || (!a.have_count && !a.from)) {
        tl_cli_err("produce: --to and -n (or --from) are required (see taskloop produce --help)");
        return 2;
    }
    if (a.from && (a.have_count || a.load_only)) {
        tl_cli_err("produce: %s does not go with --from (it shapes generated load)",
                   a.have_count ? "-n" : a.load_only);
        return 2;
    }
    if (!a.from && (a.lines.key || a.lines.headers)) {
        tl_cli_err("produce: --format and --headers go with --from");
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
