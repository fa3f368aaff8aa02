/*
 * taskloop: runs, checks and feeds message-consumer services described by a YAML file.
 * This file only dispatches to the subcommands; each lives in a file of its own.
 */
#include <signal.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: taskloop COMMAND [OPTIONS]\n"
    "\n"
    "Runs message-consumer services described by a YAML file.\n"
    "\n"
    "commands:\n"
    "  run FILE | --demo    run a service until SIGTERM/SIGINT (twice: force)\n"
    "  check FILE | --demo  validate a config; print it resolved, secrets masked\n"
    "  produce --to T ...   send test load, or a file's lines, to kafka:TOPIC or\n"
    "                       zmq:ENDPOINT\n"
    "  mock [--topic T:P]   serve an in-process mock Kafka cluster until stopped\n"
    "  top URL              watch a running service through its admin endpoint\n"
    "  redrive --from T     send a stall or dead-letter topic's messages back to the\n"
    "                       topics they came from, exactly once\n"
    "\n"
    "options:\n"
    "  -h, --help           this text; `taskloop COMMAND --help` for a command's\n"
    "  -V, --version        the library's version\n"
    "\n"
    "`taskloop run --demo` runs the embedded demo on a mock Kafka cluster.\n";

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    {"run", tl_cli_cmd_run},   {"check", tl_cli_cmd_check}, {"produce", tl_cli_cmd_produce},
    {"mock", tl_cli_cmd_mock}, {"top", tl_cli_cmd_top},     {"redrive", tl_cli_cmd_redrive},
};

int main(int argc, char **argv)
{
    /* A closed pipe (taskloop check | head) must not kill the program mid-report. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (tl_cli_is_help(cmd)) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("taskloop %s\n", tl_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    tl_cli_err("unknown command '%s' (see taskloop --help)", cmd);
    return 2;
}
