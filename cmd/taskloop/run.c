/* `taskloop run`: runs the service a config file describes, or the demo. */
#include <string.h>

#include "cli.h"

/* The demo ends by itself well before this; the cap only guards against a hang. */
#define DEMO_CAP_MS 50000

static const char usage[] =
    "usage: taskloop run FILE [options]\n"
    "       taskloop run --demo [options]\n"
    "\n"
    "Runs the service FILE describes until SIGTERM or SIGINT, which drain in-flight\n"
    "messages, reroute what stalled and commit; a second SIGINT exits at once (130).\n"
    "Shows progress on stderr and prints a summary on stdout at the end.\n"
    "\n"
    "options:\n"
    "  --demo           run the embedded demo: a mock Kafka cluster, 20000 messages of\n"
    "                   which some stall and some fail; ends by itself\n"
    "  --expect N       stop once N messages were consumed and all settled; the exit\n"
    "                   status is 1 if the run ended before that\n"
    "  --timeout DUR    stop after DUR (e.g. 30s) at the latest (demo: 50s)\n"
    "  --no-progress    no progress output\n"
    "  -h, --help       this text\n";

typedef struct run_args {
    const char *path;
    bool demo;
    bool progress;
    uint64_t expect;
    int64_t cap_ms;
} run_args;

/* Parses the options; returns -1 after help, 2 on a usage error, 0 to go on. */
static int parse(run_args *a, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (tl_cli_is_help(arg)) {
            fputs(usage, stdout);
            return -1;
        } else if (strcmp(arg, "--demo") == 0) {
            a->demo = true;
        } else if (strcmp(arg, "--no-progress") == 0) {
            a->progress = false;
        } else if (strcmp(arg, "--expect") == 0 && tl_cli_uint(next, &a->expect) && a->expect > 0) {
            i++;
        } else if (strcmp(arg, "--timeout") == 0 && tl_cli_duration(next, &a->cap_ms) &&
                   a->cap_ms > 0) {
            i++;
        } else if (arg[0] == '-' || a->path) {
            tl_cli_err("run: bad argument '%s' (see taskloop run --help)", arg);
            return 2;
        } else {
            a->path = arg;
        }
    }
    if (!a->path == !a->demo) {
        tl_cli_err("run: give a FILE or --demo (see taskloop run --help)");
        return 2;
    }
    return 0;
}

static bool expect_done(void *user, const tl_service_stats *st)
{
    const uint64_t *expect = user;
    return st->consumed >= *expect && st->in_flight == 0;
}

static int run_file(const run_args *a)
{
    tl_registry *reg = tl_cli_registry();
    if (!reg)
        return 1;
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = tl_config_load_file(a->path, reg, NULL, &cfg, &diag);
    if (rc != 0) {
        tl_diag_print(&diag, stderr);
        tl_cli_err("%s: cannot start: %s", a->path,
                   diag.errors ? "the config has errors (see above)" : tl_strerror(rc));
        tl_diag_free(&diag);
        tl_registry_free(reg);
        return 1;
    }
    tl_diag_free(&diag);
    tl_cli_log_setup(cfg->log_format, cfg->log_level);
    tl_cli_runner r = {.title = cfg->service,
                       .progress = a->progress,
                       .cap_ms = a->cap_ms,
                       .done = a->expect ? expect_done : NULL,
                       .done_user = (void *)&a->expect};
    tl_cli_outcome out;
    rc = tl_cli_run_service(cfg, reg, &r, &out);
    if (rc == 0 && a->expect && !out.by_done) {
        tl_cli_err("run: stopped before %llu messages were consumed and settled",
                   (unsigned long long)a->expect);
        rc = 1;
    }
    tl_config_free(cfg);
    tl_registry_free(reg);
    return rc;
}

int tl_cli_cmd_run(int argc, char **argv)
{
    run_args a = {.progress = true};
    int rc = parse(&a, argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (a.demo) {
        if (a.expect)
            tl_cli_err("run: --expect is ignored with --demo (it knows what it produced)");
        return tl_cli_demo(a.progress, a.cap_ms > 0 ? a.cap_ms : DEMO_CAP_MS);
    }
    return run_file(&a);
}
