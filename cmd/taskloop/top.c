/*
 * `taskloop top URL`: the dashboard's view in a terminal, read from a running
 * service's admin endpoint (/stats and /tasks). On a terminal it redraws every
 * interval with rates from one poll to the next; when stdout is not a terminal (or
 * with --once) it prints one plain-text report and exits, so that it can be piped
 * and tested.
 */
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: taskloop top URL [options]\n"
    "\n"
    "Shows a running service as its admin dashboard does, reading URL/stats and\n"
    "URL/tasks (URL: its admin address, e.g. http://127.0.0.1:9464): health and stuck\n"
    "workers, the counters and their rates, handler-time percentiles, each route's\n"
    "in-flight, stalled, rerouted and late counts and each reroute target's, the\n"
    "partitions with most lag, and the oldest tasks in flight (PID: the worker\n"
    "process holding one, with isolation: process). On a terminal it redraws every\n"
    "interval until Ctrl-C; otherwise it prints one report and exits.\n"
    "\n"
    "options:\n"
    "  --token T        the admin token (default $TL_ADMIN_TOKEN), sent as a bearer\n"
    "  --interval DUR   time between redraws on a terminal (default 1s)\n"
    "  --top N          partitions and tasks to list (default 10)\n"
    "  --once           one report, even on a terminal\n"
    "  -h, --help       this text\n"
    "\n"
    "The exit status is 1 when the endpoint cannot be read (once), 2 on bad usage.\n";

typedef struct top_opts {
    tl_cli_url url;
    const char *url_text;
    const char *token;
    int64_t interval_ms;
    uint64_t top;
    bool once;
} top_opts;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---------------------------------------------------------------- reading */

/* GETs path as JSON; NULL with the reason in err (status, or not JSON). */
static json_t *get_json(const top_opts *o, const char *path, char *err, size_t errlen)
{
    int status;
    char *body;
    if (tl_cli_http_get(&o->url, path, o->token, &status, &body, err, errlen) != 0)
        return NULL;
    json_t *doc = NULL;
    if (status == 401)
        snprintf(err, errlen,
                 "%s%s: 401: the endpoint wants its admin token (--token or "
                 "TL_ADMIN_TOKEN)%s",
                 o->url_text, path, o->token ? "; the one given was refused" : "");
    else if (status != 200)
        snprintf(err, errlen, "%s%s: HTTP %d: %.200s", o->url_text, path, status, body);
    else {
        json_error_t je;
        doc = json_loads(body, 0, &je);
        if (!doc)
            snprintf(err, errlen, "%s%s: not JSON: %s", o->url_text, path, je.text);
    }
    free(body);
    return doc;
}

static int64_t num(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static double real(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

/* A value that may be null: "-" then, else the number. */
static const char *num_or_dash(const json_t *obj, const char *key, char *buf, size_t len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, len, "%" PRId64, (int64_t)json_integer_value(v));
    return buf;
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

static const char *yes(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key)) ? "yes" : "no";
}

/* ---------------------------------------------------------------- printing */

static const char *const counter_names[] = {
    "consumed_total", "completed_total", "failed_total",           "retries_total",
    "stalled_total",  "rerouted_total",  "late_completions_total", "dropped_total"};
#define NCOUNTERS (sizeof(counter_names) / sizeof(counter_names[0]))

static void print_head(FILE *f, const top_opts *o, const json_t *s)
{
    const json_t *h = json_object_get(s, "health");
    bool live = json_is_true(json_object_get(h, "live"));
    bool healthy = json_is_true(json_object_get(h, "healthy"));
    bool ready = json_is_true(json_object_get(h, "ready"));
    fprintf(f, "%s %s at %s: %s\n", str(s, "service"), str(s, "version"), o->url_text,
            !live      ? "NOT LIVE"
            : !healthy ? "UNHEALTHY"
            : ready    ? "ready"
                       : "not ready");
    char b[32];
    fprintf(f,
            "health: live %s  ready %s  healthy %s  stopping %s  stuck workers %s  "
            "replaced %" PRId64 " of at most %" PRId64 "\n",
            yes(h, "live"), yes(h, "ready"), yes(h, "healthy"), yes(h, "stopping"),
            num_or_dash(h, "stuck_workers", b, sizeof(b)), num(h, "replaced_workers"),
            num(h, "max_replaced_workers"));
}

/* The counters, and with a previous /stats their rates per second. */
static void print_counters(FILE *f, const json_t *s, const json_t *prev)
{
    const json_t *c = json_object_get(s, "counters"), *g = json_object_get(s, "gauges");
    fputs("counters:", f);
    for (size_t i = 0; i < NCOUNTERS; i++) {
        size_t n = strlen(counter_names[i]) - strlen("_total");
        fprintf(f, " %.*s %" PRId64, (int)n, counter_names[i], num(c, counter_names[i]));
    }
    fprintf(f, "\ngauges: in_flight %" PRId64 "  uncommitted %" PRId64 "  workers %" PRId64 "\n",
            num(g, "in_flight"), num(g, "uncommitted"), num(g, "workers"));
    double dt = prev ? (double)(num(s, "clock_ms") - num(prev, "clock_ms")) / 1000 : 0;
    if (dt > 0) {
        static const char *const rated[] = {"consumed", "completed", "failed", "stalled",
                                            "rerouted"};
        const json_t *pc = json_object_get(prev, "counters");
        fputs("per second:", f);
        for (size_t i = 0; i < sizeof(rated) / sizeof(rated[0]); i++) {
            char key[32];
            snprintf(key, sizeof(key), "%s_total", rated[i]);
            fprintf(f, " %s %.1f", rated[i], (double)(num(c, key) - num(pc, key)) / dt);
        }
        fputc('\n', f);
    }
    const json_t *hd = json_object_get(s, "handler_duration_seconds");
    fprintf(f, "handler time: count %" PRId64 "  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms\n",
            num(hd, "count"), real(hd, "p50") * 1000, real(hd, "p90") * 1000,
            real(hd, "p99") * 1000);
}

static void print_routes(FILE *f, const json_t *s)
{
    fprintf(f, "\n%-5s %-12s %-14s %9s %7s %7s %5s %9s %8s %8s %6s\n", "ROUTE", "SOURCE", "HANDLER",
            "IN_FLIGHT", "RUNNING", "STALLED", "STUCK", "REROUTING", "STALLS", "REROUTED", "LATE");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(s, "routes"), i, r)
    {
        const json_t *l = json_object_get(r, "live");
        char b[5][32];
        fprintf(f,
                "%-5" PRId64 " %-12s %-14s %9s %7s %7s %5s %9s %8" PRId64 " %8" PRId64 " %6" PRId64
                "\n",
                num(r, "route"), str(r, "source"), str(r, "handler"),
                num_or_dash(l, "in_flight", b[0], 32), num_or_dash(l, "running", b[1], 32),
                num_or_dash(l, "stalled", b[2], 32), num_or_dash(l, "stuck", b[3], 32),
                num_or_dash(l, "rerouting", b[4], 32), num(r, "stalled_total"),
                num(r, "rerouted_total"), num(r, "late_completions_total"));
    }
    fprintf(f, "\n%-40s %10s %8s\n", "TARGET", "REROUTED", "ERRORS");
    json_array_foreach(json_object_get(s, "targets"), i, r)
        fprintf(f, "%-40s %10" PRId64 " %8" PRId64 "\n", str(r, "target"), num(r, "rerouted_total"),
                num(r, "reroute_errors_total"));
}

static void print_partitions(FILE *f, const json_t *s)
{
    const json_t *p = json_object_get(s, "partitions");
    const json_t *items = json_object_get(p, "items");
    fprintf(f, "\npartitions, most lag first: %zu of %" PRId64 "\n", json_array_size(items),
            num(p, "total"));
    fprintf(f, "%-12s %-32s %9s %12s %10s\n", "SOURCE", "TOPIC", "PARTITION", "COMMITTED", "LAG");
    size_t i;
    json_t *x;
    json_array_foreach(items, i, x)
    {
        char b[2][32];
        fprintf(f, "%-12s %-32s %9" PRId64 " %12s %10s\n", str(x, "source"), str(x, "topic"),
                num(x, "partition"), num_or_dash(x, "committed_offset", b[0], 32),
                num_or_dash(x, "consumer_lag", b[1], 32));
    }
}

/* Oldest first: /tasks lists them so already, handler tasks among others. */
static void print_tasks(FILE *f, const json_t *t, uint64_t top)
{
    const json_t *tasks = json_object_get(t, "tasks");
    fprintf(f, "\noldest tasks in flight (%" PRId64 " pending)\n", num(t, "total"));
    fprintf(f, "%8s %-10s %-14s %9s %10s %-16s %7s %7s %8s\n", "AGE_S", "STATE", "HANDLER",
            "PARTITION", "OFFSET", "KEY", "ATTEMPT", "STALLED", "PID");
    size_t i, shown = 0;
    json_t *x;
    json_array_foreach(tasks, i, x)
    {
        const json_t *m = json_object_get(x, "message");
        if (!m || shown >= top)
            continue;
        shown++;
        /* The worker process holding it, on a route with isolation: process. */
        char pid[32];
        fprintf(f, "%8.1f %-10s %-14s %9" PRId64 " %10" PRId64 " %-16s %7" PRId64 " %7s %8s\n",
                (double)num(x, "age_ms") / 1000, str(x, "state"), str(m, "handler"),
                num(m, "partition"), num(m, "offset"), str(m, "key"), num(m, "attempt"),
                yes(m, "stalled"), num_or_dash(json_object_get(m, "process"), "pid", pid, 32));
    }
}

/* ---------------------------------------------------------------- the command */

static int parse(int argc, char **argv, top_opts *o)
{
    *o = (top_opts){.interval_ms = 1000, .top = 10, .token = getenv("TL_ADMIN_TOKEN")};
    if (o->token && !*o->token)
        o->token = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (tl_cli_is_help(a)) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--once") == 0) {
            o->once = true;
        } else if (strcmp(a, "--token") == 0 && has_value) {
            o->token = argv[++i];
        } else if (strcmp(a, "--interval") == 0 && has_value) {
            if (!tl_cli_duration(argv[++i], &o->interval_ms) || o->interval_ms < 100) {
                tl_cli_err("top: --interval '%s': want a duration of 100ms or more", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--top") == 0 && has_value) {
            if (!tl_program_parse_uint(argv[++i], &o->top) || o->top < 1 || o->top > 1000) {
                tl_cli_err("top: --top '%s': want a whole number from 1 to 1000", argv[i]);
                return 2;
            }
        } else if (a[0] != '-' && !o->url_text) {
            o->url_text = a;
        } else {
            tl_cli_err("top: unexpected argument '%s' (see taskloop top --help)", a);
            return 2;
        }
    }
    char err[600];
    if (!o->url_text) {
        tl_cli_err("top: which service? give its admin URL, e.g. http://127.0.0.1:9464");
        return 2;
    }
    if (tl_cli_url_parse(o->url_text, &o->url, err, sizeof(err)) != 0) {
        tl_cli_err("top: %s", err);
        return 2;
    }
    return -1;
}

/* One report into f from fresh /stats and /tasks; the /stats kept in *prev. -1 with
 * the reason in err when the endpoint could not be read. */
static int report(FILE *f, const top_opts *o, json_t **prev, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/stats?top=%" PRIu64, o->top);
    json_t *s = get_json(o, path, err, errlen);
    json_t *t = s ? get_json(o, "/tasks", err, errlen) : NULL;
    if (!t) {
        json_decref(s);
        return -1;
    }
    print_head(f, o, s);
    print_counters(f, s, *prev);
    print_routes(f, s);
    print_partitions(f, s);
    print_tasks(f, t, o->top);
    json_decref(t);
    json_decref(*prev);
    *prev = s;
    return 0;
}

int tl_cli_cmd_top(int argc, char **argv)
{
    top_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char err[600];
    json_t *prev = NULL;
    if (o.once || !isatty(STDOUT_FILENO)) {
        rc = report(stdout, &o, &prev, err, sizeof(err));
        json_decref(prev);
        if (rc != 0)
            tl_cli_err("top: %s", err);
        return rc ? 1 : 0;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    while (!interrupted) {
        /* The report is made first and drawn at once, so the screen does not flicker. */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
            return 1;
        if (report(f, &o, &prev, err, sizeof(err)) != 0)
            fprintf(f,
                    "*** %s is not answering: %s\n(retrying every %" PRId64 " ms; Ctrl-C "
                    "to quit)\n",
                    o.url_text, err, o.interval_ms);
        fclose(f);
        fputs("\033[H\033[2J", stdout);
        fwrite(buf, 1, len, stdout);
        fflush(stdout);
        free(buf);
        tl_cli_sleep_ms(o.interval_ms);
    }
    json_decref(prev);
    return 0;
}
