/*
 * What a program built on the service library uses: tl_service_main, which is the
 * whole program (`taskloop run` and `check` are it), the pieces it is made of for
 * programs that need more (tl_program_run), and the log.
 *
 * The log: one line per event, in logfmt or JSON, below a status line that
 * refreshes in place on a terminal. A service built with no log function of its own
 * writes its events through one of these on stderr, as its config's `log:` section
 * says; a program may make its own and pass tl_logger_log as tl_service_opts.log.
 *
 * An event that repeats fast (a storm of stalls or failures) is written at most
 * TL_LOGGER_BURST times a second; the rest are counted and reported in one
 * `log_suppressed` line (fields `of`, the event, and `count`) once a later second
 * brings the same event again, or at tl_logger_flush, so that a bad minute cannot bury
 * everything else. Errors too: a flood of dropped messages is still a flood, and the
 * limit is per event name, so one flood never hides another event. Values of keys
 * that name a secret (tl_config_is_secret) are masked.
 *
 * Thread rules: the tl_logger functions may be called from any thread; one mutex per
 * logger guards its burst table, its status line and its writes. tl_service_main and
 * tl_program_run install handlers for SIGINT and SIGTERM and run one service at a time
 * per process; they block the calling thread, which becomes the loop thread.
 */
#ifndef TASKLOOP_PROGRAM_H
#define TASKLOOP_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <taskloop/config.h>
#include <taskloop/service.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Events of one name written per second, at most; the rest are counted. */
#define TL_LOGGER_BURST 10

typedef struct tl_logger tl_logger;

/* A logger writing to fd (not closed by it) from level up; NULL when out of memory. */
tl_logger *tl_logger_new(int fd, tl_log_format format, tl_log_level level);

/* Reports what is still counted as suppressed, then frees the logger. NULL is ignored. */
void tl_logger_free(tl_logger *lg);

/* Sets the format and the lowest level written (a config's `log:` section). */
void tl_logger_setup(tl_logger *lg, tl_log_format format, tl_log_level level);

/* A tl_log_fn: user is the tl_logger. Writes the event as one line, if its level and
 * its burst allow. */
void tl_logger_log(void *user, tl_level level, const char *event, const tl_kv *fields,
                   size_t nfields);

/* Writes a line per event name still counted as suppressed (at the end of a run). */
void tl_logger_flush(tl_logger *lg);

/* Shows line as the refreshing status line when the logger writes to a terminal
 * (NULL clears it). Returns false, showing nothing, when it does not. */
bool tl_logger_status(tl_logger *lg, const char *line);

/* Writes a plain line (a newline is added) without disturbing the status line. */
void tl_logger_note(tl_logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- the program */

typedef struct tl_main_opts {
    const char *name;        /* in usage lines and messages; NULL: argv[0]'s base name */
    const char *about;       /* a paragraph for --help, ending in a newline; NULL: none */
    const char *run_extra;   /* more option lines for `run --help`; NULL: none */
    const char *check_extra; /* more option lines for `check --help`; NULL: none */
    /* true: `check` takes --handlers NAME,... (registered in reg as stand-ins that fail
     * if run), for a program that checks configs for handlers other programs register;
     * an unknown handler's error then mentions the option. */
    bool handlers_option;
} tl_main_opts;

/*
 * The whole program of a service: `NAME run FILE [--expect N] [--timeout DUR]
 * [--no-progress]` loads the config (its plugins into reg), logs as its `log:` section
 * says, shows progress on a terminal, drains on SIGTERM or SIGINT (a second SIGINT
 * exits at once with 130), prints the summary on stdout and returns 0 (1 when it could
 * not start, failed, or --expect was not met); `NAME check [--load-plugins] [-q] FILE`
 * validates as `taskloop check` does (with opts->handlers_option, [--handlers NAME,...]
 * too); `NAME --help`. Usage errors return 2. reg holds
 * the adapters and handlers the program registered; it is borrowed. opts may be NULL.
 */
int tl_service_main(int argc, char **argv, tl_registry *reg, const tl_main_opts *opts);

/* Decides, on every progress tick (4 a second), whether the service has done its job. */
typedef bool (*tl_program_done_fn)(void *user, const tl_service_stats *st);

typedef struct tl_program_run_opts {
    const char *name;        /* the program, in messages on stderr; NULL: "service" */
    const char *title;       /* shown in the summary; NULL: the service's name */
    bool progress;           /* show progress while running */
    int64_t cap_ms;          /* stop after this long; 0: no cap */
    tl_program_done_fn done; /* NULL: run until a signal */
    void *done_user;
} tl_program_run_opts;

/* How a run ended. */
typedef struct tl_program_outcome {
    bool by_signal; /* SIGTERM or SIGINT */
    bool by_cap;    /* the time cap passed first */
    bool by_done;   /* the done callback said so */
    bool adds_up;   /* consumed == completed + rerouted + dropped */
} tl_program_outcome;

/*
 * Builds the service of cfg logging through tl_program_log (set up as cfg's `log:`
 * says), runs it with the signal handling and the progress of tl_service_main until it
 * is stopped, and prints the summary on stdout. Returns 0, or 1 with a message on
 * stderr when the service could not be built or failed to run.
 */
int tl_program_run(const struct tl_config *cfg, tl_registry *reg, const tl_program_run_opts *o,
                   tl_program_outcome *out);

/* The process's program log on stderr, made on first use (logfmt at info until set
 * up); it lives as long as the process. NULL only when out of memory. */
tl_logger *tl_program_log(void);

/* Prints a plain line on stderr through the program log (keeping its status line), or
 * straight to stderr when there is none. */
void tl_program_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a command-line count: the whole string, decimal digits only (no sign, no
 * spaces), into *out; false, leaving *out alone, when it is not one or overflows. */
bool tl_program_parse_uint(const char *s, uint64_t *out);

/* Prints the end-of-run summary of svc on out; returns whether its numbers add up. */
bool tl_program_summary(FILE *out, tl_service *svc, const char *title, int64_t elapsed_ms);

#ifdef __cplusplus
}
#endif

#endif
