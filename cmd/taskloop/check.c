/* `taskloop check`: validates a config and prints it resolved, with secrets masked,
 * running no code from it (plugins are checked, not loaded, unless --load-plugins). */
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: taskloop check [--load-plugins] FILE | --demo\n"
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
    "check)\" rather than refused. `taskloop run` loads them.\n"
    "\n"
    "options:\n"
    "  --demo          check the embedded demo config instead of a file\n"
    "  --load-plugins  load the plugins (running their code) and check what they register\n"
    "  -q, --quiet     print nothing on success\n"
    "  -h, --help      this text\n";

/* Loads the file, or the embedded demo config when path is NULL. */
static int load(const char *path, const tl_config_opts *opts, tl_registry *reg, tl_config **cfg,
                tl_diag *diag)
{
    if (path)
        return tl_config_load_file(path, reg, opts, cfg, diag);
    return tl_config_load_string("demo.yaml", tl_cli_demo_yaml, reg, opts, cfg, diag);
}

/* Prints the load's messages; a failure without any message still says what failed. */
static void report(const char *name, int rc, const tl_diag *diag)
{
    tl_diag_print(diag, stderr);
    if (rc == 0)
        return;
    if (diag->errors == 0)
        tl_cli_err("%s: cannot load: %s", name, tl_strerror(rc));
    else
        tl_cli_err("%s: %zu error%s", name, diag->errors, diag->errors == 1 ? "" : "s");
}

int tl_cli_cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    bool demo = false, quiet = false;
    tl_config_opts opts = {.no_plugin_code = true};
    for (int i = 1; i < argc; i++) {
        if (tl_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--demo") == 0) {
            demo = true;
        } else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--load-plugins") == 0) {
            opts.no_plugin_code = false;
        } else if (argv[i][0] == '-' || path) {
            tl_cli_err("check: unexpected argument '%s' (see taskloop check --help)", argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path == !demo) {
        tl_cli_err("check: give a FILE or --demo (see taskloop check --help)");
        return 2;
    }
    tl_registry *reg = tl_cli_registry();
    if (!reg)
        return 1;
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = load(path, &opts, reg, &cfg, &diag);
    report(path ? path : "demo.yaml", rc, &diag);
    if (rc == 0 && !quiet && tl_config_dump(cfg, stdout) != 0)
        rc = TL_ESYS;
    tl_diag_free(&diag);
    tl_config_free(cfg);
    tl_registry_free(reg);
    return rc == 0 ? 0 : 1;
}
