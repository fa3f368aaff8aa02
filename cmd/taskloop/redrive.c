/* `taskloop redrive`: sends the messages of a stall or dead-letter topic back to the
 * topic they came from, exactly once, in transactions that also commit how far it got. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_MATCH 16
#define MAX_PROPS 64
/* A transaction ends after this many messages or this long, whichever comes first. */
#define TXN_MESSAGES 1000
#define TXN_MS 1000
#define WAIT_MS 10000
#define PROGRESS_MS 250

static const char usage[] =
    "usage: taskloop redrive --from TOPIC [options]\n"
    "\n"
    "Reads a stall or dead-letter topic (what a route's on_stall or on_error.then wrote,\n"
    "with its tl-* headers) and sends each message back to the topic named by its\n"
    "tl-origin-topic header, or to --to. Key, payload and headers go unchanged but for\n"
    "tl-redrive-count, which goes up by one; a message whose count would pass\n"
    "--max-redrives goes to the parking topic instead. The consuming service takes a\n"
    "redriven message as a new one (its attempts count afresh).\n"
    "\n"
    "Exactly once: what is sent and how far the reading got are committed together, in\n"
    "Kafka transactions of up to 1000 messages or a second, by the redrive's own consumer\n"
    "group. A redrive stopped or killed midway sends nothing visible twice when run again\n"
    "with the same group: it goes on from where its last transaction ended (consumers of\n"
    "the target read committed messages only: librdkafka's and taskloop's default). It\n"
    "reads up to the end each partition had when it started.\n"
    "\n"
    "options:\n"
    "  --from TOPIC           the topic to read (required)\n"
    "  --brokers B            Kafka bootstrap servers (default $KAFKA or localhost:9092)\n"
    "  -X NAME=VALUE          a librdkafka property for both clients (repeatable), e.g.\n"
    "                         -X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512\n"
    "                         -X sasl.username=u -X sasl.password=\"$PW\"\n"
    "                         -X ssl.ca.location=ca.pem; those redrive sets itself for\n"
    "                         its exactly-once reading are refused\n"
    "  --to TOPIC             send everything there instead of each tl-origin-topic\n"
    "  --group G              the redrive's consumer group (default taskloop-redrive-TOPIC,\n"
    "                         plus a suffix naming the filters when any is given: each\n"
    "                         filter remembers its own progress)\n"
    "  --reason R             only messages whose tl-reason is R (stalled, failed)\n"
    "  --since T, --until T   only messages with a timestamp at or after / before T:\n"
    "                         RFC 3339 (2026-12-04T10:00:00Z) or an age (30m, 2h, 1d)\n"
    "  --origin-partition N   only messages whose tl-origin-partition is N\n"
    "  --header NAME=VALUE    only messages with that header (repeatable, all must match)\n"
    "  --max N                move at most N messages, then stop (the rest waits)\n"
    "  --max-redrives N       park a message redriven more than N times (default 3)\n"
    "  --park TOPIC           the parking topic (default FROM.parked)\n"
    "  --dry-run              list what would move (origin, reason, error, age, target);\n"
    "                         send and commit nothing\n"
    "  --no-progress          no progress line (there is none unless stderr is a terminal)\n"
    "  -h, --help             this text\n"
    "\n"
    "Messages a filter leaves out stay on the topic; the group still goes past them, so\n"
    "run other filters with groups of their own (the default), not the same group.\n"
    "A message without tl-origin-topic, and no --to, is skipped and counted.\n"
    "At the end it prints what it read, moved, parked and skipped. Exit status: 0 done,\n"
    "1 when Kafka failed (unreachable brokers, a missing topic, a transaction that could\n"
    "not commit: run it again, it goes on from the last commit), 2 for bad options.\n";

typedef struct match {
    char name[256];
    const char *value;
} match;

typedef struct redrive_args {
    const char *brokers, *from, *to, *group, *reason, *park;
    int64_t since_ms, until_ms; /* 0 / INT64_MAX: no bound */
    int32_t origin_partition;   /* -1: any */
    match headers[MAX_MATCH];
    size_t nheaders;
    const char *props[MAX_PROPS][2]; /* -X NAME=VALUE, in the order given */
    char prop_names[MAX_PROPS][128];
    size_t nprops;
    uint64_t max, max_redrives;
    bool dry_run, progress;
    char group_buf[512], park_buf[512];
} redrive_args;

typedef struct counts {
    uint64_t read, moved, parked, filtered, no_origin, failed;
} counts;

static volatile sig_atomic_t stop_asked;

static void on_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

/* ---------------------------------------------------------------- options */

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0 || (argv[*i][n] != '\0' && argv[*i][n] != '='))
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        tl_cli_err("redrive: %s needs a value", name);
        exit(2);
    }
    return argv[++*i];
}

static void bad(const char *name, const char *v, const char *want)
{
    tl_cli_err("redrive: %s: \"%s\" is not %s (see taskloop redrive --help)", name, v, want);
    exit(2);
}

static uint64_t parse_count(const char *name, const char *v)
{
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || v[0] == '-')
        bad(name, v, "a whole number");
    return n;
}

/* Wall-clock ms of "2026-12-04T10:00:00Z" (UTC, optional fraction ignored) or of an
 * age before now ("30m", "2h", "1d", "45s"). */
static int64_t parse_time(const char *name, const char *v)
{
    struct tm tm = {0};
    const char *rest = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest) {
        if (*rest == '.')
            while (*++rest >= '0' && *rest <= '9') {
            }
        if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
            bad(name, v, "a UTC time such as 2026-12-04T10:00:00Z, or an age such as 30m");
        return (int64_t)timegm(&tm) * 1000;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    int64_t unit = !strcmp(end, "s")   ? 1000
                   : !strcmp(end, "m") ? 60000
                   : !strcmp(end, "h") ? 3600000
                   : !strcmp(end, "d") ? 86400000
                                       : 0;
    if (end == v || n < 0 || unit == 0)
        bad(name, v, "a UTC time such as 2026-12-04T10:00:00Z, or an age such as 30m");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - n * unit;
}

/* The default group, into a->group_buf: one per source topic and set of filters. */
static void default_group(redrive_args *a, int argc, char **argv)
{
    uint64_t h = 1469598103934665603ULL;
    bool filtered = false;
    for (int i = 1; i < argc; i++) {
        static const char *const filters[] = {"--reason", "--since", "--until",
                                              "--origin-partition", "--header"};
        bool is = false;
        for (size_t k = 0; k < sizeof(filters) / sizeof(filters[0]); k++)
            is |= strncmp(argv[i], filters[k], strlen(filters[k])) == 0;
        if (!is)
            continue;
        filtered = true;
        for (int j = i; j <= i + (strchr(argv[i], '=') ? 0 : 1) && j < argc; j++)
            for (const char *p = argv[j]; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    if (filtered)
        snprintf(a->group_buf, sizeof(a->group_buf), "taskloop-redrive-%s-%08" PRIx64, a->from,
                 (uint64_t)(h & 0xffffffffu));
    else
        snprintf(a->group_buf, sizeof(a->group_buf), "taskloop-redrive-%s", a->from);
    a->group = a->group_buf;
}

/* One -X NAME=VALUE: tried on a throwaway configuration, so that a bad name or value
 * is a usage error naming it, not a failure after the brokers were asked. */
static void add_prop(redrive_args *a, const char *v)
{
    /* What redrive's exactly-once reading and writing rest on. */
    static const char *const own[] = {"group.id",
                                      "enable.auto.commit",
                                      "enable.auto.offset.store",
                                      "isolation.level",
                                      "transactional.id",
                                      "enable.idempotence",
                                      "acks",
                                      "bootstrap.servers",
                                      "metadata.broker.list"};
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || eq - v >= (ptrdiff_t)sizeof(a->prop_names[0]))
        bad("-X", v, "NAME=VALUE (a librdkafka property)");
    if (a->nprops == MAX_PROPS) {
        tl_cli_err("redrive: at most %d -X options", MAX_PROPS);
        exit(2);
    }
    char *name = a->prop_names[a->nprops];
    snprintf(name, sizeof(a->prop_names[0]), "%.*s", (int)(eq - v), v);
    for (size_t k = 0; k < sizeof(own) / sizeof(own[0]); k++)
        if (strcmp(name, own[k]) == 0) {
            tl_cli_err("redrive: -X %s: set by redrive itself (%s)", name,
                       k == 0   ? "use --group"
                       : k >= 7 ? "use --brokers"
                                : "its exactly-once reading and writing need it");
            exit(2);
        }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bool ok = rd_kafka_conf_set(conf, name, eq + 1, err, sizeof(err)) == RD_KAFKA_CONF_OK;
    rd_kafka_conf_destroy(conf);
    if (!ok) {
        tl_cli_err("redrive: -X %s: %s", name, err);
        exit(2);
    }
    a->props[a->nprops][0] = name;
    a->props[a->nprops][1] = eq + 1;
    a->nprops++;
}

static void parse_args(int argc, char **argv, redrive_args *a)
{
    *a = (redrive_args){.brokers = getenv("KAFKA") ? getenv("KAFKA") : "localhost:9092",
                        .until_ms = INT64_MAX,
                        .origin_partition = -1,
                        .max = UINT64_MAX,
                        .max_redrives = 3,
                        .progress = true};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (tl_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            exit(0);
        } else if ((v = opt_value(argc, argv, &i, "--from"))) {
            a->from = v;
        } else if ((v = opt_value(argc, argv, &i, "--brokers"))) {
            a->brokers = v;
        } else if ((v = opt_value(argc, argv, &i, "--to"))) {
            a->to = v;
        } else if ((v = opt_value(argc, argv, &i, "--group"))) {
            a->group = v;
        } else if ((v = opt_value(argc, argv, &i, "--reason"))) {
            a->reason = v;
        } else if ((v = opt_value(argc, argv, &i, "--since"))) {
            a->since_ms = parse_time("--since", v);
        } else if ((v = opt_value(argc, argv, &i, "--until"))) {
            a->until_ms = parse_time("--until", v);
        } else if ((v = opt_value(argc, argv, &i, "--origin-partition"))) {
            uint64_t p = parse_count("--origin-partition", v);
            if (p > INT32_MAX)
                bad("--origin-partition", v, "a partition number");
            a->origin_partition = (int32_t)p;
        } else if ((v = opt_value(argc, argv, &i, "--header"))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || eq - v >= (ptrdiff_t)sizeof(a->headers[0].name))
                bad("--header", v, "NAME=VALUE (a name under 256 bytes)");
            if (a->nheaders == MAX_MATCH) {
                tl_cli_err("redrive: at most %d --header options", MAX_MATCH);
                exit(2);
            }
            match *h = &a->headers[a->nheaders++];
            snprintf(h->name, sizeof(h->name), "%.*s", (int)(eq - v), v);
            h->value = eq + 1;
        } else if ((v = opt_value(argc, argv, &i, "-X"))) {
            add_prop(a, v);
        } else if ((v = opt_value(argc, argv, &i, "--max"))) {
            a->max = parse_count("--max", v);
        } else if ((v = opt_value(argc, argv, &i, "--max-redrives"))) {
            a->max_redrives = parse_count("--max-redrives", v);
        } else if ((v = opt_value(argc, argv, &i, "--park"))) {
            a->park = v;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            a->dry_run = true;
        } else if (strcmp(argv[i], "--no-progress") == 0) {
            a->progress = false;
        } else {
            tl_cli_err("redrive: unknown option %s (see taskloop redrive --help)", argv[i]);
            exit(2);
        }
    }
    if (!a->from || !*a->from) {
        tl_cli_err("redrive: --from TOPIC is required (see taskloop redrive --help)");
        exit(2);
    }
    if (!a->group)
        default_group(a, argc, argv);
    if (!a->park) {
        snprintf(a->park_buf, sizeof(a->park_buf), "%s.parked", a->from);
        a->park = a->park_buf;
    }
}

/* ---------------------------------------------------------------- Kafka */

static rd_kafka_t *new_client(rd_kafka_type_t type, const redrive_args *a)
{
    char err[512], txn[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(txn, sizeof(txn), "taskloop-redrive-%s", a->group);
    const char *common[][2] = {{"bootstrap.servers", a->brokers}, {"log_level", "0"}};
    const char *consumer[][2] = {{"group.id", a->group},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"auto.offset.reset", "earliest"},
                                 {"isolation.level", "read_committed"}};
    const char *producer[][2] = {
        {"transactional.id", txn}, {"enable.idempotence", "true"}, {"acks", "all"}};
    bool ok = true;
    for (size_t i = 0; ok && i < 2; i++)
        ok = rd_kafka_conf_set(conf, common[i][0], common[i][1], err, sizeof(err)) ==
             RD_KAFKA_CONF_OK;
    for (size_t i = 0; ok && i < a->nprops; i++)
        ok = rd_kafka_conf_set(conf, a->props[i][0], a->props[i][1], err, sizeof(err)) ==
             RD_KAFKA_CONF_OK;
    for (size_t i = 0; ok && type == RD_KAFKA_CONSUMER && i < 5; i++)
        ok = rd_kafka_conf_set(conf, consumer[i][0], consumer[i][1], err, sizeof(err)) ==
             RD_KAFKA_CONF_OK;
    for (size_t i = 0; ok && type == RD_KAFKA_PRODUCER && i < 3; i++)
        ok = rd_kafka_conf_set(conf, producer[i][0], producer[i][1], err, sizeof(err)) ==
             RD_KAFKA_CONF_OK;
    rd_kafka_t *rk = ok ? rd_kafka_new(type, conf, err, sizeof(err)) : NULL;
    if (!rk) {
        if (!ok)
            rd_kafka_conf_destroy(conf);
        tl_cli_err("redrive: cannot make a Kafka client: %s", err);
    }
    return rk;
}

/* How many partitions the topic has; 0 after saying why (unreachable, missing). */
static int topic_partitions(rd_kafka_t *c, const redrive_args *a)
{
    /* Every topic's metadata: asking for the one topic would make a broker that creates
     * topics on demand create it. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(c, 1, NULL, &md, WAIT_MS);
    if (e) {
        tl_cli_err("redrive: cannot reach the brokers %s within %d s: %s", a->brokers,
                   WAIT_MS / 1000, rd_kafka_err2str(e));
        return 0;
    }
    int n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, a->from) == 0 && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (n == 0)
        tl_cli_err("redrive: topic %s does not exist on %s", a->from, a->brokers);
    return n;
}

/* The n partitions of the topic with where to start (the group's committed offset,
 * else the beginning) and where to stop (the end at start). NULL after saying why. */
static rd_kafka_topic_partition_list_t *plan(rd_kafka_t *c, const redrive_args *a, int n,
                                             int64_t **ends, uint64_t *total)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    *ends = calloc((size_t)n, sizeof(**ends));
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, a->from, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(c, parts, WAIT_MS);
    *total = 0;
    for (int p = 0; !e && *ends && p < n; p++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(c, a->from, p, &lo, &hi, WAIT_MS);
        rd_kafka_topic_partition_t *tp = &parts->elems[p];
        if (tp->offset < lo)
            tp->offset = lo;
        (*ends)[p] = hi;
        *total += hi > tp->offset ? (uint64_t)(hi - tp->offset) : 0;
    }
    if (e || !*ends) {
        tl_cli_err("redrive: cannot read the offsets of %s: %s", a->from,
                   e ? rd_kafka_err2str(e) : "out of memory");
        rd_kafka_topic_partition_list_destroy(parts);
        free(*ends);
        *ends = NULL;
        return NULL;
    }
    return parts;
}

/* ---------------------------------------------------------------- one message */

/* The value of header name as text in buf ("" when absent). */
static const char *header(rd_kafka_headers_t *hs, const char *name, char *buf, size_t cap)
{
    const void *v = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (hs && rd_kafka_header_get_last(hs, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
        snprintf(buf, cap, "%.*s", (int)len, (const char *)v);
    return buf;
}

static bool wanted(const redrive_args *a, rd_kafka_message_t *m, rd_kafka_headers_t *hs)
{
    char buf[256];
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    if (ts < a->since_ms || ts >= a->until_ms)
        return false;
    if (a->reason && strcmp(header(hs, "tl-reason", buf, sizeof(buf)), a->reason) != 0)
        return false;
    if (a->origin_partition >= 0 && strtol(header(hs, "tl-origin-partition", buf, sizeof(buf)),
                                           NULL, 10) != a->origin_partition)
        return false;
    if (a->origin_partition >= 0 && !buf[0])
        return false;
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcmp(header(hs, a->headers[i].name, buf, sizeof(buf)), a->headers[i].value) != 0)
            return false;
    return true;
}

/* Sends a copy of m to target with tl-redrive-count set to count; 0 or an error. */
static rd_kafka_resp_err_t send_copy(rd_kafka_t *p, const char *target, rd_kafka_message_t *m,
                                     rd_kafka_headers_t *hs, uint64_t count)
{
    rd_kafka_headers_t *out = hs ? rd_kafka_headers_copy(hs) : rd_kafka_headers_new(1);
    rd_kafka_header_remove(out, "tl-redrive-count");
    char c[24];
    snprintf(c, sizeof(c), "%" PRIu64, count);
    rd_kafka_header_add(out, "tl-redrive-count", -1, c, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(out);
    return e;
}

static void list_one(rd_kafka_message_t *m, rd_kafka_headers_t *hs, const char *target, bool park)
{
    char origin[256], part[16], reason[32], error[256];
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t age = ts > 0 ? ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - ts) / 1000 : -1;
    printf("%s[%" PRId32 "]@%" PRId64 " origin=%s[%s] reason=%s error=\"%s\" age=%" PRId64
           "s -> %s%s\n",
           rd_kafka_topic_name(m->rkt), m->partition, m->offset,
           header(hs, "tl-origin-topic", origin, sizeof(origin)),
           header(hs, "tl-origin-partition", part, sizeof(part)),
           header(hs, "tl-reason", reason, sizeof(reason)),
           header(hs, "tl-error", error, sizeof(error)), age, target, park ? " (parked)" : "");
}

/* ---------------------------------------------------------------- the run */

typedef struct run {
    const redrive_args *a;
    rd_kafka_t *c, *p;
    rd_kafka_topic_partition_list_t *parts; /* offset: the next to read, per partition */
    int64_t *ends;
    counts n;
    uint64_t total, in_txn;
    int64_t txn_start_ms;
    bool in_txn_open;
} run;

/* Commits the open transaction with the read positions; false after saying why. */
static bool txn_commit(run *r)
{
    if (!r->in_txn_open)
        return true;
    rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata(r->c);
    rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(r->p, r->parts, g, WAIT_MS);
    rd_kafka_consumer_group_metadata_destroy(g);
    if (!e)
        e = rd_kafka_commit_transaction(r->p, 30000);
    r->in_txn_open = false;
    if (e) {
        tl_cli_err("redrive: the transaction did not commit (%s); nothing of it is visible, "
                   "run again to go on from the last commit",
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_error_t *ab = rd_kafka_abort_transaction(r->p, 30000);
        if (ab)
            rd_kafka_error_destroy(ab);
        return false;
    }
    return true;
}

static bool txn_begin(run *r)
{
    if (r->in_txn_open)
        return true;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(r->p);
    if (e) {
        tl_cli_err("redrive: cannot begin a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return false;
    }
    r->in_txn_open = true;
    r->in_txn = 0;
    r->txn_start_ms = tl_cli_now_ms();
    return true;
}

/* Handles one message read; false when the run must stop (an error said). */
static bool handle(run *r, rd_kafka_message_t *m)
{
    const redrive_args *a = r->a;
    rd_kafka_topic_partition_t *tp = &r->parts->elems[m->partition];
    if (m->offset < tp->offset || m->offset >= r->ends[m->partition])
        return true; /* before the start, or past the end seen at start */
    r->n.read++;
    rd_kafka_headers_t *hs = NULL;
    rd_kafka_message_headers(m, &hs);
    char origin[256], cnt[24];
    header(hs, "tl-origin-topic", origin, sizeof(origin));
    const char *target = a->to ? a->to : origin;
    bool go = true;
    if (!wanted(a, m, hs)) {
        r->n.filtered++;
        go = false;
    } else if (!*target) {
        r->n.no_origin++;
        go = false;
    }
    uint64_t count = strtoull(header(hs, "tl-redrive-count", cnt, sizeof(cnt)), NULL, 10) + 1;
    bool park = count > a->max_redrives;
    if (go && park)
        target = a->park;
    if (go && a->dry_run) {
        list_one(m, hs, target, park);
    } else if (go) {
        if (!txn_begin(r))
            return false;
        rd_kafka_resp_err_t e = send_copy(r->p, target, m, hs, count);
        if (e) {
            tl_cli_err("redrive: cannot send to %s: %s", target, rd_kafka_err2str(e));
            r->n.failed++;
            return false;
        }
        r->in_txn++;
    }
    if (go)
        park ? r->n.parked++ : r->n.moved++;
    tp->offset = m->offset + 1;
    return true;
}

static bool all_read(const run *r)
{
    for (int i = 0; i < r->parts->cnt; i++)
        if (r->parts->elems[i].offset < r->ends[i])
            return false;
    return true;
}

static void show_progress(const run *r, int64_t start_ms, bool done)
{
    double secs = (double)(tl_cli_now_ms() - start_ms) / 1000.0;
    double rate = secs > 0 ? (double)r->n.read / secs : 0;
    double left = rate > 0 && r->total > r->n.read ? (double)(r->total - r->n.read) / rate : 0;
    fprintf(stderr,
            "\r\033[Kredrive %s: read %" PRIu64 " of %" PRIu64 ", moved %" PRIu64
            ", %.0f msgs/s, %.0f s left%s",
            r->a->from, r->n.read, r->total, r->n.moved + r->n.parked, rate, left,
            done ? "\n" : "");
}

/* Reads to the ends; false when Kafka failed. */
static bool redrive(run *r, bool progress)
{
    const redrive_args *a = r->a;
    int64_t start = tl_cli_now_ms(), shown = 0;
    bool ok = true;
    while (ok && !stop_asked && !all_read(r) && r->n.moved + r->n.parked < a->max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->c, 200);
        if (m && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            tl_cli_err("redrive: reading %s: %s", a->from, rd_kafka_message_errstr(m));
            ok = m->err != RD_KAFKA_RESP_ERR__FATAL;
        } else if (m && !m->err) {
            ok = handle(r, m);
        }
        if (m)
            rd_kafka_message_destroy(m);
        if (ok && !a->dry_run && r->in_txn_open &&
            (r->in_txn >= TXN_MESSAGES || tl_cli_now_ms() - r->txn_start_ms >= TXN_MS))
            ok = txn_commit(r);
        if (progress && tl_cli_now_ms() - shown >= PROGRESS_MS) {
            show_progress(r, start, false);
            shown = tl_cli_now_ms();
        }
    }
    /* Positions past filtered messages are committed too, in a transaction of their own
     * when nothing was sent. */
    if (ok && !a->dry_run && r->n.read > 0)
        ok = txn_begin(r) && txn_commit(r);
    if (progress)
        show_progress(r, start, true);
    return ok;
}

int tl_cli_cmd_redrive(int argc, char **argv)
{
    redrive_args a;
    parse_args(argc, argv, &a);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    run r = {.a = &a};
    int64_t t0 = tl_cli_now_ms();
    r.c = new_client(RD_KAFKA_CONSUMER, &a);
    if (!r.c)
        return 1;
    /* Transactions first: starting them aborts what a killed redrive of this group left
     * open, whose offsets would otherwise stay unstable (unreadable) until it times out. */
    int nparts = topic_partitions(r.c, &a);
    bool ok = nparts > 0;
    if (ok && !a.dry_run) {
        r.p = new_client(RD_KAFKA_PRODUCER, &a);
        rd_kafka_error_t *e = r.p ? rd_kafka_init_transactions(r.p, WAIT_MS) : NULL;
        if (e) {
            tl_cli_err("redrive: cannot start transactions on %s: %s", a.brokers,
                       rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        ok = r.p && !e;
    }
    r.parts = ok ? plan(r.c, &a, nparts, &r.ends, &r.total) : NULL;
    ok = r.parts != NULL;
    if (ok) {
        rd_kafka_resp_err_t e = rd_kafka_assign(r.c, r.parts);
        if (e)
            tl_cli_err("redrive: cannot read %s: %s", a.from, rd_kafka_err2str(e));
        ok = !e;
    }
    if (ok)
        ok = redrive(&r, a.progress && isatty(2));
    if (r.c) {
        rd_kafka_consumer_close(r.c);
        rd_kafka_destroy(r.c);
    }
    if (r.p) {
        rd_kafka_flush(r.p, 5000);
        rd_kafka_destroy(r.p);
    }
    printf("redrive %s%s: read %" PRIu64 ", %s %" PRIu64 ", parked %" PRIu64 ", skipped %" PRIu64
           " (filtered %" PRIu64 ", no tl-origin-topic %" PRIu64 "), failed %" PRIu64
           " in %.1f s%s\n",
           a.from, a.dry_run ? " (dry run)" : "", r.n.read, a.dry_run ? "would move" : "moved",
           r.n.moved, r.n.parked, r.n.filtered + r.n.no_origin, r.n.filtered, r.n.no_origin,
           r.n.failed, (double)(tl_cli_now_ms() - t0) / 1000.0,
           stop_asked ? " (stopped: run again to go on)" : "");
    if (r.parts)
        rd_kafka_topic_partition_list_destroy(r.parts);
    free(r.ends);
    return ok ? 0 : 1;
}
