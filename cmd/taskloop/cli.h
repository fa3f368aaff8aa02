/*
 * The `taskloop` program's own interfaces, shared by its files: one file per
 * subcommand (check, run, produce, mock, top, redrive, demo), plus the logger, the progress and
 * summary output, the test-load generator and the option helpers.
 *
 * Output conventions: results (the summary, `check`'s dump, produce's report) go to
 * stdout; log events, progress and errors go to stderr, errors as "taskloop: ...".
 */
#ifndef TL_CLI_H
#define TL_CLI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <taskloop/config.h>
#include <taskloop/program.h>
#include <taskloop/service.h>

#define TL_CLI_NAME "taskloop"

/* ---------------------------------------------------------------- subcommands */

/* Each command gets argv from its own name on (argv[0] is "run"); main's argv, with
 * the program's name, is just before. */
int tl_cli_cmd_check(int argc, char **argv);
int tl_cli_cmd_run(int argc, char **argv);

/* `run FILE` and `check FILE`: the command line goes to tl_service_main with every
 * adapter and the built-in handlers registered (argv as a command's). */
int tl_cli_service_main(int argc, char **argv);

/* What tl_service_main says of taskloop: its name and the --demo option lines. */
extern const tl_main_opts tl_cli_main_opts;

/* True when the command's arguments include --demo. */
bool tl_cli_has_demo(int argc, char **argv);
int tl_cli_cmd_produce(int argc, char **argv);
int tl_cli_cmd_mock(int argc, char **argv);
int tl_cli_cmd_top(int argc, char **argv);
int tl_cli_cmd_redrive(int argc, char **argv);

/* `taskloop run --demo` with the rest of run's options already parsed. */
int tl_cli_demo(bool progress, int64_t cap_ms);

/* The embedded config/demo.yaml (generated from the file at build time). */
extern const char tl_cli_demo_yaml[];

/* ---------------------------------------------------------------- helpers (cli.c) */

/* Prints "taskloop: " and the formatted message on stderr, then a newline. */
void tl_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A registry with every adapter built in and the built-in handlers; NULL on failure. */
tl_registry *tl_cli_registry(void);

/* Parses a duration such as "500ms", "2s", "1m"; false when it is not one. */
bool tl_cli_duration(const char *s, int64_t *ms);

/* Parses a number in [0, 1]; false when it is not one. */
bool tl_cli_ratio(const char *s, double *out);

/* True when arg is "-h" or "--help". */
bool tl_cli_is_help(const char *arg);

/* Monotonic milliseconds. */
int64_t tl_cli_now_ms(void);

/* Sleeps ms milliseconds (interrupted sleeps are resumed). */
void tl_cli_sleep_ms(int64_t ms);

/* Writes a plain line on stderr through the program log (taskloop/program.h), without
 * disturbing the status line. */
void tl_cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- HTTP GET (http_get.c) */

/* An http:// URL taken apart: host (no brackets), port, and a path prefix (no final
 * slash, "" for none). */
typedef struct tl_cli_url {
    char host[256];
    char port[8];
    char prefix[512];
} tl_cli_url;

/* Parses "http://HOST[:PORT][/PREFIX]"; -1 with the reason in err when it is not one. */
int tl_cli_url_parse(const char *url, tl_cli_url *out, char *err, size_t errlen);

/*
 * GETs prefix+path, with "Authorization: Bearer token" when token is not NULL. 0 with
 * the HTTP status in *status and the body in *body (malloc'd, NUL-terminated; the
 * caller frees it); -1 with the reason in err when no HTTP answer came within a few
 * seconds.
 */
int tl_cli_http_get(const tl_cli_url *u, const char *path, const char *token, int *status,
                    char **body, char *err, size_t errlen);

/* ---------------------------------------------------------------- test load (load.c) */

typedef struct tl_cli_load {
    uint64_t count;     /* messages to send */
    uint64_t first_id;  /* id of the first message */
    size_t size;        /* payload size; the id and marker are never cut */
    double rate;        /* messages per second; 0: as fast as possible */
    double stall_ratio; /* share of messages marked `stall` */
    double fail_ratio;  /* share of messages marked `fail` */
    uint64_t keys;      /* distinct keys "key-N"; 0: no keys */
    int32_t partitions; /* spread over partitions 0..P-1 in turn; 0: the partitioner */
} tl_cli_load;

/* Progress of a load: written by the producing thread, read by any. */
typedef struct tl_cli_load_stats {
    _Atomic uint64_t sent;      /* handed to the client library */
    _Atomic uint64_t delivered; /* acknowledged by the broker (ZeroMQ: sent) */
    _Atomic uint64_t failed;    /* refused or not acknowledged */
    _Atomic uint64_t stall;     /* messages marked stall */
    _Atomic uint64_t fail;      /* messages marked fail */
    _Atomic bool finished;      /* every report is in */
} tl_cli_load_stats;

typedef enum tl_cli_marker { TL_CLI_PLAIN = 0, TL_CLI_STALL, TL_CLI_FAIL } tl_cli_marker;

/* The marker of message i of a load (the ratios spread them evenly). */
tl_cli_marker tl_cli_load_marker(const tl_cli_load *l, uint64_t i);

/* Writes message i's payload ("id=000123 stall ....") into buf; returns its length. */
size_t tl_cli_load_payload(const tl_cli_load *l, uint64_t i, char *buf, size_t cap);

/* Writes message i's key into buf; returns its length, 0 when the load has no keys. */
size_t tl_cli_load_key(const tl_cli_load *l, uint64_t i, char *buf, size_t cap);

/* Counts a message as sent, and its marker. */
void tl_cli_load_count(tl_cli_marker marker, tl_cli_load_stats *st);

/* Sleeps as needed so that message i does not go out before its time at rate messages
 * a second (0: never). */
void tl_cli_load_pace(double rate, uint64_t i, int64_t start_ms);

/* ---------------------------------------------------------------- feeds (load.c, lines.c) */

/* Headers a message read from a file may carry, at most. */
#define TL_CLI_MAX_HEADERS 32

/* One message to send. Its pointers stay valid until the feed's next call. */
typedef struct tl_cli_out {
    const char *payload;
    size_t len;
    const char *key; /* NULL: none */
    size_t key_len;
    tl_kv headers[TL_CLI_MAX_HEADERS];
    size_t nheaders;
    tl_cli_marker marker;
} tl_cli_out;

/* What messages a producer sends, one at a time, in order. */
typedef struct tl_cli_feed {
    /* Fills *m with message i (0, 1, ... in turn): 1; 0 at the end; -1 after printing
     * why it cannot go on (the producer stops and counts it failed). */
    int (*next)(void *user, uint64_t i, tl_cli_out *m);
    void *user;
    double rate;        /* messages per second; 0: as fast as possible */
    int32_t partitions; /* Kafka: partitions 0..P-1 in turn; 0: the partitioner */
} tl_cli_feed;

/* Where a feed of generated load keeps what it makes. */
typedef struct tl_cli_gen {
    const tl_cli_load *load;
    char payload[65536], key[64];
} tl_cli_gen;

/* A feed of the generated load l, made in g; both are borrowed and must outlive it. */
tl_cli_feed tl_cli_load_feed(tl_cli_gen *g, const tl_cli_load *l);

/*
 * Sends a feed to a Kafka topic with an idempotent producer and waits for every
 * delivery report (up to 30 s after the last send). stop, when set, ends it early.
 * Returns 0, or -1 with a reason in err when the producer could not start.
 */
int tl_cli_produce_kafka_feed(const char *brokers, const char *topic, const tl_cli_feed *f,
                              tl_cli_load_stats *st, const atomic_bool *stop, char *err,
                              size_t errlen);

/* tl_cli_produce_kafka_feed of the generated load l. */
int tl_cli_produce_kafka(const char *brokers, const char *topic, const tl_cli_load *l,
                         tl_cli_load_stats *st, const atomic_bool *stop, char *err, size_t errlen);

/* How each line of a file becomes a message (see `taskloop produce --help`). */
typedef struct tl_cli_lines_opts {
    bool key;     /* KEY<TAB> before the payload */
    bool headers; /* NAME=VALUE;...<TAB> before that */
} tl_cli_lines_opts;

typedef struct tl_cli_lines tl_cli_lines;

/* Opens path ("-": standard input) for reading messages a line each; NULL after
 * printing why. */
tl_cli_lines *tl_cli_lines_open(const char *path, const tl_cli_lines_opts *o);

/* A feed of its lines; a line that does not parse ends it, naming FILE:LINE. */
tl_cli_feed tl_cli_lines_feed(tl_cli_lines *ls);

/* How far reading went, as a share of the file (0..1); -1 when its size is unknown
 * (standard input, a pipe). */
double tl_cli_lines_done(const tl_cli_lines *ls);

/* Closes it. NULL is ignored. */
void tl_cli_lines_close(tl_cli_lines *ls);

/* ---------------------------------------------------------------- mock cluster (mock.c) */

typedef struct tl_cli_mock tl_cli_mock;

/* Starts an in-process mock Kafka cluster of nbrokers; NULL with a reason in err. */
tl_cli_mock *tl_cli_mock_new(int nbrokers, char *err, size_t errlen);

/* Creates a topic with partitions partitions; -1 with a reason in err. */
int tl_cli_mock_topic(tl_cli_mock *m, const char *topic, int partitions, char *err, size_t errlen);

/* The cluster's bootstrap servers; valid until tl_cli_mock_free. */
const char *tl_cli_mock_brokers(const tl_cli_mock *m);

/* Stops the cluster. NULL is ignored. */
void tl_cli_mock_free(tl_cli_mock *m);

#endif
