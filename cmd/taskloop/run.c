/* `taskloop run`: a config file goes through tl_service_main; --demo runs the demo. */
#include <string.h>

#include "cli.h"

/* The demo ends by itself well before this; the cap only guards against a hang. */
#define DEMO_CAP_MS 50000

const tl_main_opts tl_cli_main_opts = {
    .name = TL_CLI_NAME,
    .run_extra = "  --demo           run the embedded demo instead of FILE: a mock Kafka\n"
                 "                   cluster, 20000 messages of which some stall and some\n"
                 "                   fail; ends by itself (--timeout: 50s unless given)\n",
    .check_extra = "  --demo          check the embedded demo config instead of a file\n",
    .handlers_option = true,
};

bool tl_cli_has_demo(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--demo") == 0)
            return true;
    return false;
}

int tl_cli_service_main(int argc, char **argv)
{
    tl_registry *reg = tl_cli_registry();
    if (!reg)
        return 1;
    /* argv starts at the command's name; tl_service_main wants the program's first, and
     * main's argv has it just before (see tl_cli_cmd_run in cli.h). */
    int rc = tl_service_main(argc + 1, argv - 1, reg, &tl_cli_main_opts);
    tl_registry_free(reg);
    return rc;
}

/* Parses run --demo's options; returns -1 after help, 2 on a usage error, 0 to go on. */
static int parse_demo(int argc, char **argv, bool *progress, int64_t *cap_ms)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t expect;
        if (strcmp(arg, "--demo") == 0) {
            continue;
        } else if (strcmp(arg, "--no-progress") == 0) {
            *progress = false;
        } else if (strcmp(arg, "--expect") == 0 && tl_program_parse_uint(next, &expect) &&
                   expect > 0) {
            tl_cli_err("run: --expect is ignored with --demo (it knows what it produced)");
            i++;
        } else if (strcmp(arg, "--timeout") == 0 && tl_cli_duration(next, cap_ms) && *cap_ms > 0) {
            i++;
        } else {
            tl_cli_err("run: bad argument '%s' with --demo (see taskloop run --help)", arg);
            return 2;
        }
    }
    return 0;
}

int tl_cli_cmd_run(int argc, char **argv)
{
    bool help = false;
    for (int i = 1; i < argc; i++)
        help = help || tl_cli_is_help(argv[i]);
    if (help || !tl_cli_has_demo(argc, argv))
        return tl_cli_service_main(argc, argv);
    bool progress = true;
    int64_t cap_ms = DEMO_CAP_MS;
    int rc = parse_demo(argc, argv, &progress, &cap_ms);
    return rc != 0 ? rc : tl_cli_demo(progress, cap_ms);
}
