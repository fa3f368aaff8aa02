/*
 * The `taskloop` program's own interfaces, shared by its files: one file per
 * subcommand (check, run, produce, mock, demo), plus the logger, the progress and
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
#include <taskloop/service.h>

#include <taskloop/config.h>

#define TL_CLI_NAME "taskloop"

/* ---------------------------------------------------------------- subcommands */

int tl_cli_cmd_check(int argc, char **argv);
int tl_cli_cmd_run(int argc, char **argv);
int tl_cli_cmd_produce(int argc, char **argv);
int tl_cli_cmd_mock(int argc, char **argv);

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

/* Parses a non-negative integer, the whole string; false when it is not one. */
bool tl_cli_uint(const char *s, uint64_t *out);

/* Parses a number in [0, 1]; false when it is not one. */
bool tl_cli_ratio(const char *s, double *out);

/* True when arg is "-h" or "--help". */
bool tl_cli_is_help(const char *arg);

/* Monotonic milliseconds. */
int64_t tl_cli_now_ms(void);

/* Sleeps ms milliseconds (interrupted sleeps are resumed). */
void tl_cli_sleep_ms(int64_t ms);

/* ---------------------------------------------------------------- logging (log.c) */

/* Sets the format and the lowest level shown; before this, logfmt at info. */
void tl_cli_log_setup(tl_log_format format, tl_log_level level);

/* A tl_log_fn writing one line per event on stderr (the user pointer is unused). */
void tl_cli_log(void *user, tl_level level, const char *event, const tl_kv *fields, size_t nfields);

/*
 * Shows line as the refreshing status line when stderr is a terminal (NULL clears it).
 * Returns false, showing nothing, when it is not one.
 */
bool tl_cli_status(const char *line);

/* Reports the events still counted as suppressed (at the end of a run). */
void tl_cli_log_flush(void);

/* Writes a plain line on stderr without disturbing the status line. */
void tl_cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- running (runner.c) */

/* Decides, on every progress tick, whether the service has done its job. */
typedef bool (*tl_cli_done_fn)(void *user, const tl_service_stats *st);

typedef struct tl_cli_runner {
    const char *title;   /* shown in the summary: the service or "demo" */
    bool progress;       /* show progress while running */
    int64_t cap_ms;      /* stop after this long; 0: no cap */
    tl_cli_done_fn done; /* NULL: run until a signal */
    void *done_user;
} tl_cli_runner;

/* How a run ended, for the exit status. */
typedef struct tl_cli_outcome {
    bool by_signal; /* SIGTERM or SIGINT */
    bool by_cap;    /* the time cap passed first */
    bool by_done;   /* the done callback said so */
    bool adds_up;   /* consumed == completed + rerouted + dropped */
} tl_cli_outcome;

/*
 * Builds the service of cfg, runs it with signal handling and progress until it is
 * stopped, prints the summary on stdout. Returns 0, or 1 with a message on stderr
 * when the service could not be built or failed to run.
 */
int tl_cli_run_service(const tl_config *cfg, tl_registry *reg, const tl_cli_runner *r,
                       tl_cli_outcome *out);

/* ---------------------------------------------------------------- summary (summary.c) */

/* One progress line: counters and the rate at which messages settle. */
void tl_cli_progress_line(const tl_service_stats *st, double rate, int64_t elapsed_ms, char *buf,
                          size_t cap);

/* Prints the end-of-run summary on out; returns whether the numbers add up. */
bool tl_cli_summary(FILE *out, tl_service *svc, const char *title, int64_t elapsed_ms);

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

/* Counts message i as sent, and its marker. */
void tl_cli_load_count(const tl_cli_load *l, uint64_t i, tl_cli_load_stats *st);

/* Sleeps as needed so that message i does not go out before its time. */
void tl_cli_load_pace(const tl_cli_load *l, uint64_t i, int64_t start_ms);

/*
 * Sends a load to a Kafka topic with an idempotent producer and waits for every
 * delivery report (up to 30 s after the last send). stop, when set, ends it early.
 * Returns 0, or -1 with a reason in err when the producer could not start.
 */
int tl_cli_produce_kafka(const char *brokers, const char *topic, const tl_cli_load *l,
                         tl_cli_load_stats *st, const atomic_bool *stop, char *err, size_t errlen);

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
