/* `taskloop check`: a config file goes through tl_service_main; --demo checks the
 * embedded demo config, printed resolved as a file's would be. */
#include <string.h>

#include "cli.h"

/* Checks the embedded demo config; argv's options are check's (-q, --load-plugins). */
static int check_demo(int argc, char **argv)
{
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--demo") != 0 && strcmp(argv[i], "--load-plugins") != 0) {
            tl_cli_err("check: unexpected argument '%s' with --demo (see taskloop check --help)",
                       argv[i]);
            return 2;
        }
    }
    tl_registry *reg = tl_cli_registry();
    if (!reg)
        return 1;
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = tl_config_load_string("demo.yaml", tl_cli_demo_yaml, reg, NULL, &cfg, &diag);
    tl_diag_print(&diag, stderr);
    if (rc != 0)
        tl_cli_err("demo.yaml: cannot load: %s", tl_strerror(rc));
    else if (!quiet && tl_config_dump(cfg, stdout) != 0)
        rc = TL_ESYS;
    tl_diag_free(&diag);
    tl_config_free(cfg);
    tl_registry_free(reg);
    return rc == 0 ? 0 : 1;
}

int tl_cli_cmd_check(int argc, char **argv)
{
    bool help = false;
    for (int i = 1; i < argc; i++)
        help = help || tl_cli_is_help(argv[i]);
    if (help || !tl_cli_has_demo(argc, argv))
        return tl_cli_service_main(argc, argv);
    return check_demo(argc, argv);
}
