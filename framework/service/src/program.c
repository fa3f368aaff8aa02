/*
 * tl_service_main: the command line of a service program. `run` and `check` are the
 * ones `taskloop` has (it goes through here); the running itself is runner.c's.
 *
 * Thread rules: the calling thread only (it becomes the loop thread during `run`).
 */
#include "program_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/config.h>

typedef struct cmdline {
    const char *name;
    const tl_main_opts *opts;
    const char *path;
    bool progress, quiet;
    const char *handlers[32]; /* check --handlers lists, as given */
    size_t nhandlers;
    uint64_t expect;
    int64_t cap_ms;
    tl_config_opts cfg_opts;
} cmdline;

static void err(const cmdline *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err(const cmdline *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tl_program_note("%s: %s", c->name, msg);
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static bool handlers_option(const cmdline *c)
{
    return c->opts && c->opts->handlers_option;
}

static void usage(const cmdline *c, FILE *out)
{
    fprintf(out,
            "usage: %s run FILE [--expect N] [--timeout DUR] [--no-progress]\n"
            "       %s check [--load-plugins]%s [-q] FILE\n"
            "\n",
            c->name, c->name, handlers_option(c) ? " [--handlers NAME,...]" : "");
    if (c->opts && c->opts->about)
        fprintf(out, "%s\n", c->opts->about);
    fprintf(out, "`%s run --help` and `%s check --help` tell more.\n", c->name, c->name);
}

static void run_usage(const cmdline *c)
{
    printf("usage: %s run FILE [options]\n"
           "\n"
           "Runs the service FILE describes until SIGTERM or SIGINT, which drain in-flight\n"
           "messages, reroute what stalled and commit; a second SIGINT exits at once (130).\n"
           "A source's fatal error (such as a broker refusing the login) stops it the same\n"
           "way, and the exit status is then 1. Logs as the config's log: section says and\n"
           "shows progress on stderr; prints a summary on stdout at the end.\n"
           "\n"
           "options:\n"
           "  --expect N       stop once N messages were consumed and all settled; the exit\n"
           "                   status is 1 if the run ended before that\n"
           "  --timeout DUR    stop after DUR (e.g. 30s) at the latest\n"
           "  --no-progress    no progress output\n"
           "%s"
           "  -h, --help       this text\n",
           c->name, c->opts && c->opts->run_extra ? c->opts->run_extra : "");
}

static const char handlers_about[] =
    "\n"
    "A handler that a program of your own registers in C is unknown to this program:\n"
    "name it with --handlers and routes using it pass (nothing runs it here), while a\n"
    "handler nothing registers or names is still an error.\n";

static const char handlers_line[] =
    "  --handlers NAME,...\n"
    "                  handlers registered elsewhere, comma-separated (may be repeated)\n";

static void check_usage(const cmdline *c)
{
    printf("usage: %s check [--load-plugins]%s [-q] FILE\n"
           "\n"
           "Validates a service config without starting anything. Every problem is printed\n"
           "on stderr as FILE:LINE:COL: error: KEY: what, and the exit status is 1. A valid\n"
           "config is printed on stdout as resolved (environment interpolated, defaults\n"
           "filled in, secrets masked) and the exit status is 0.\n"
           "\n"
           "check runs no code the config names: its plugins are checked (each must be a\n"
           "regular file that neither it nor its folder lets group or others write, owned by\n"
           "root or by you) but not loaded, so handlers, source types and sink schemes only a\n"
           "plugin registers are noted on stderr as \"provided by plugin X (not loaded by\n"
           "check)\" rather than refused. `%s run` loads them.\n"
           "%s"
           "\n"
           "Likely mistakes that are not errors come as FILE:LINE:COL: warning: KEY: what,\n"
           "and leave the exit status 0: a handler taken to come from a plugin that runs in\n"
           "the service's threads (isolation: thread) with no on_error.then, for one, whose\n"
           "crash would take the service down and come back with its message.\n"
           "\n"
           "options:\n"
           "  --load-plugins  load the plugins (running their code) and check what they register\n"
           "%s"
           "  -q, --quiet     print nothing on success\n"
           "%s"
           "  -h, --help      this text\n",
           c->name, handlers_option(c) ? " [--handlers NAME,...]" : "", c->name,
           handlers_option(c) ? handlers_about : "", handlers_option(c) ? handlers_line : "",
           c->opts && c->opts->check_extra ? c->opts->check_extra : "");
}

bool tl_program_parse_uint(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_duration(const char *s, int64_t *ms)
{
    char why[128];
    return s && tl_config_parse_duration(s, ms, why, sizeof(why)) == 0 && *ms > 0;
}

/* Parses run's or check's options; returns -1 after help, 2 on a usage error, 0 to go
 * on. */
static int parse(cmdline *c, bool run, int argc, char **argv)
{
    const char *cmd = run ? "run" : "check";
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (is_help(arg)) {
            run ? run_usage(c) : check_usage(c);
            return -1;
        } else if (run && strcmp(arg, "--no-progress") == 0) {
            c->progress = false;
        } else if (run && strcmp(arg, "--expect") == 0 && tl_program_parse_uint(next, &c->expect) &&
                   c->expect > 0) {
            i++;
        } else if (run && strcmp(arg, "--timeout") == 0 && parse_duration(next, &c->cap_ms)) {
            i++;
        } else if (!run && (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0)) {
            c->quiet = true;
        } else if (!run && strcmp(arg, "--load-plugins") == 0) {
            c->cfg_opts.no_plugin_code = false;
        } else if (!run && handlers_option(c) && strncmp(arg, "--handlers", 10) == 0 &&
                   (arg[10] == '\0' || arg[10] == '=')) {
            const char *list = arg[10] == '=' ? arg + 11 : next;
            if (!list || c->nhandlers == sizeof(c->handlers) / sizeof(c->handlers[0])) {
                err(c, "check: %s (see %s check --help)",
                    list ? "--handlers given too many times" : "--handlers needs NAME,...",
                    c->name);
                return 2;
            }
            c->handlers[c->nhandlers++] = list;
            i += arg[10] == '\0';
        } else if (arg[0] == '-' || c->path) {
            err(c, "%s: bad argument '%s' (see %s %s --help)", cmd, arg, c->name, cmd);
            return 2;
        } else {
            c->path = arg;
        }
    }
    if (!c->path) {
        err(c, "%s: give a FILE (see %s %s --help)", cmd, c->name, cmd);
        return 2;
    }
    return 0;
}

/* Prints the load's messages; a failure without any message still says what failed. */
static void report(const cmdline *c, int rc, const tl_diag *diag, const char *what)
{
    tl_diag_print(diag, stderr);
    if (rc == 0)
        return;
    if (diag->errors == 0)
        err(c, "%s: %s: %s", c->path, what, tl_strerror(rc));
    else if (strcmp(what, "cannot start") == 0)
        err(c, "%s: cannot start: the config has errors (see above)", c->path);
    else
        err(c, "%s: %zu error%s", c->path, diag->errors, diag->errors == 1 ? "" : "s");
}

/* Stands in for a handler named by --handlers: check builds no service, so it never
 * runs; were it run, it would fail rather than pretend. */
static int declared_handler(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return TL_EFAIL;
}

/* Registers in reg each name of each --handlers list that reg lacks; 2 after saying
 * why for an empty or overlong name, 1 when out of memory, else 0. */
static int declare_handlers(const cmdline *c, tl_registry *reg)
{
    for (size_t i = 0; i < c->nhandlers; i++) {
        for (const char *p = c->handlers[i];; p++) {
            size_t n = strcspn(p, ",");
            char name[128];
            if (n == 0 || n >= sizeof(name)) {
                err(c, "check: --handlers '%s': %s", c->handlers[i],
                    n ? "a name is longer than 127 bytes" : "a name is empty");
                return 2;
            }
            memcpy(name, p, n);
            name[n] = '\0';
            if (tl_registry_handler(reg, name, NULL, NULL) != 0 &&
                tl_register_handler(reg, name, declared_handler, NULL) != 0) {
                err(c, "check: --handlers: cannot declare '%s': out of memory", name);
                return 1;
            }
            p += n;
            if (*p == '\0')
                break;
        }
    }
    return 0;
}

static int check(cmdline *c, tl_registry *reg)
{
    int drc = declare_handlers(c, reg);
    if (drc != 0)
        return drc;
    if (handlers_option(c))
        c->cfg_opts.handler_hint = "a handler your own program registers can be named with "
                                   "--handlers NAME,...";
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = tl_config_load_file(c->path, reg, &c->cfg_opts, &cfg, &diag);
    report(c, rc, &diag, "cannot load");
    if (rc == 0 && !c->quiet && tl_config_dump(cfg, stdout) != 0)
        rc = TL_ESYS;
    tl_diag_free(&diag);
    tl_config_free(cfg);
    return rc == 0 ? 0 : 1;
}

static bool expect_done(void *user, const tl_service_stats *st)
{
    const uint64_t *expect = user;
    return st->consumed >= *expect && st->in_flight == 0;
}

static int run(cmdline *c, tl_registry *reg)
{
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = tl_config_load_file(c->path, reg, NULL, &cfg, &diag);
    report(c, rc, &diag, "cannot start");
    tl_diag_free(&diag);
    if (rc != 0)
        return 1;
    tl_program_run_opts r = {.name = c->name,
                             .progress = c->progress,
                             .cap_ms = c->cap_ms,
                             .done = c->expect ? expect_done : NULL,
                             .done_user = &c->expect};
    tl_program_outcome out;
    rc = tl_program_run(cfg, reg, &r, &out);
    if (rc == 0 && c->expect && !out.by_done) {
        err(c, "run: stopped before %llu messages were consumed and settled",
            (unsigned long long)c->expect);
        rc = 1;
    }
    tl_config_free(cfg);
    return rc;
}

int tl_service_main(int argc, char **argv, tl_registry *reg, const tl_main_opts *opts)
{
    const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    cmdline c = {.name = opts && opts->name    ? opts->name
                         : base                ? base + 1
                         : argc > 0 && argv[0] ? argv[0]
                                               : "service",
                 .opts = opts,
                 .progress = true,
                 .cfg_opts = {.no_plugin_code = true}};
    if (argc < 2) {
        usage(&c, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd)) {
        usage(&c, stdout);
        return 0;
    }
    bool is_run = strcmp(cmd, "run") == 0;
    if (!is_run && strcmp(cmd, "check") != 0) {
        err(&c, "unknown command '%s' (see %s --help)", cmd, c.name);
        return 2;
    }
    int rc = parse(&c, is_run, argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    return is_run ? run(&c, reg) : check(&c, reg);
}
