/*
 * Running a service as a program (tl_program_run): signals, the progress monitor, the
 * summary at the end, and the process's program log.
 *
 * Thread rules: tl_service_run blocks the calling thread. A monitor thread samples
 * the counters every TICK_MS, shows progress and decides when a run with a goal (the
 * demo, `run --expect`) or a time cap is over; it stops the service with
 * tl_service_stop, which is safe from any thread. The signal handler touches only
 * atomics, write(2), _exit and tl_service_stop, all async-signal-safe.
 */
#include "program_int.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <taskloop/config.h>
#include <taskloop/loop_ext.h>
#include <taskloop/program.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 250
#define PLAIN_EVERY_MS 2000
#define RATE_TICKS 8 /* the rate is taken over the last two seconds */

/* ---------------------------------------------------------------- signals */

/* The handler's only view of the service: set while it runs. */
static _Atomic(tl_service *) g_svc;
static atomic_bool g_signalled;
static atomic_int g_sigints;
static char g_name[64] = "service"; /* written before the handlers are installed */

static void say(const char *s)
{
    (void)!write(STDERR_FILENO, s, strlen(s));
}

static void say_named(const char *s)
{
    say("\n");
    say(g_name);
    say(s);
}

static void on_signal(int sig)
{
    if (sig == SIGINT && atomic_fetch_add(&g_sigints, 1) >= 1) {
        say_named(": second interrupt: exiting at once\n");
        _exit(130);
    }
    if (atomic_exchange(&g_signalled, true))
        return;
    say_named(sig == SIGINT ? ": interrupt: draining (interrupt again to force)\n"
                            : ": terminated: draining\n");
    tl_service *svc = atomic_load(&g_svc);
    if (svc)
        tl_service_stop(svc);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---------------------------------------------------------------- the log */

static tl_logger *g_log;
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;

static void log_make(void)
{
    g_log = tl_logger_new(STDERR_FILENO, TL_LOG_LOGFMT, TL_LOG_INFO);
}

tl_logger *tl_program_log(void)
{
    pthread_once(&g_log_once, log_make);
    return g_log;
}

void tl_program_note(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    tl_logger *lg = tl_program_log();
    if (lg)
        tl_logger_note(lg, "%s", line);
    else
        fprintf(stderr, "%s\n", line);
}

static int64_t now_ms(void)
{
    return tl_clock_ns() / 1000000;
}

/* ---------------------------------------------------------------- the monitor */

typedef struct monitor {
    tl_service *svc;
    const tl_program_run_opts *r;
    tl_program_outcome *out;
    int64_t start_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool quit;
    bool stopping;
    /* Settled counts of the last RATE_TICKS ticks: consumption comes in bursts (a
     * fetch, then backpressure), settling is what shows the service's pace. */
    int64_t ring_ms[RATE_TICKS];
    uint64_t ring_settled[RATE_TICKS];
    unsigned ticks;
    int64_t last_plain_ms;
} monitor;

static void request_stop(monitor *m, bool *why)
{
    if (m->stopping)
        return;
    m->stopping = true;
    *why = true;
    tl_service_stop(m->svc);
}

/* Messages settled per second over the last RATE_TICKS ticks. */
static double settle_rate(monitor *m, const tl_service_stats *st, int64_t now)
{
    unsigned slot = m->ticks % RATE_TICKS;
    /* Before the ring is full its oldest sample is slot 0; after, the one replaced now. */
    int64_t then_ms = m->ticks >= RATE_TICKS ? m->ring_ms[slot] : m->ring_ms[0];
    uint64_t then = m->ticks >= RATE_TICKS ? m->ring_settled[slot] : m->ring_settled[0];
    uint64_t settled = st->completed + st->rerouted + st->dropped;
    m->ring_ms[slot] = now;
    m->ring_settled[slot] = settled;
    m->ticks++;
    int64_t span = now - then_ms;
    if (span <= 0)
        return 0.0;
    return (double)(settled - then) * 1000.0 / (double)span;
}

static void show_progress(monitor *m, const tl_service_stats *st, int64_t now)
{
    char line[256];
    tl__progress_line(st, settle_rate(m, st, now), now - m->start_ms, line, sizeof(line));
    tl_logger *lg = tl_program_log();
    if (!lg || tl_logger_status(lg, line))
        return;
    if (now - m->last_plain_ms >= PLAIN_EVERY_MS) {
        m->last_plain_ms = now;
        tl_logger_note(lg, "progress: %s", line);
    }
}

/* One sample: progress, and whether the run reached its goal or its cap. */
static void tick(monitor *m)
{
    tl_service_stats st;
    tl_service_stats_get(m->svc, &st);
    int64_t now = now_ms();
    if (m->r->done && m->r->done(m->r->done_user, &st))
        request_stop(m, &m->out->by_done);
    if (m->r->cap_ms > 0 && now - m->start_ms >= m->r->cap_ms) {
        if (!m->stopping)
            tl_program_note("%s: time cap of %lld ms reached: stopping", g_name,
                            (long long)m->r->cap_ms);
        request_stop(m, &m->out->by_cap);
    }
    if (m->r->progress)
        show_progress(m, &st, now);
}

static void *monitor_main(void *arg)
{
    monitor *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
        if (m->quit)
            break;
        pthread_mutex_unlock(&m->lock);
        tick(m);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

static int monitor_start(monitor *m, pthread_t *thread)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    m->last_plain_ms = m->start_ms;
    return pthread_create(thread, NULL, monitor_main, m);
}

static void monitor_end(monitor *m, pthread_t thread)
{
    pthread_mutex_lock(&m->lock);
    m->quit = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    if (tl_program_log())
        tl_logger_status(tl_program_log(), NULL);
}

/* ---------------------------------------------------------------- running */

/* Runs the built service with the monitor beside it; returns tl_service_run's code. */
static int run_monitored(tl_service *svc, const tl_program_run_opts *r, tl_program_outcome *out,
                         int64_t start)
{
    monitor m = {.svc = svc, .r = r, .out = out, .start_ms = start};
    pthread_t thread;
    bool monitored = monitor_start(&m, &thread) == 0;
    if (!monitored)
        tl_program_note("%s: cannot start the progress monitor: running without progress or goal",
                        g_name);
    int rc = tl_service_run(svc);
    if (monitored)
        monitor_end(&m, thread);
    return rc;
}

int tl_program_run(const tl_config *cfg, tl_registry *reg, const tl_program_run_opts *r,
                   tl_program_outcome *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(g_name, sizeof(g_name), "%s", r->name ? r->name : "service");
    const char *title = r->title ? r->title : cfg->service;
    tl_logger *lg = tl_program_log();
    if (lg)
        tl_logger_setup(lg, cfg->log_format, cfg->log_level);
    /* Without the program log (out of memory) the service makes a logger of its own. */
    tl_service_opts opts = {.log = lg ? tl_logger_log : NULL, .log_user = lg};
    tl_service *svc = NULL;
    char err[512] = "";
    install_signals();
    int rc = tl_service_new(cfg, reg, &opts, &svc, err, sizeof(err));
    if (rc != 0) {
        tl_program_note("%s: cannot start service '%s': %s", g_name, cfg->service,
                        err[0] ? err : tl_strerror(rc));
        return 1;
    }
    atomic_store(&g_svc, svc);
    /* A signal that came while the service was being built still counts. */
    if (atomic_load(&g_signalled))
        tl_service_stop(svc);
    int64_t start = now_ms();
    rc = run_monitored(svc, r, out, start);
    /* Cleared long before the free below, so a handler that loaded it just now is done. */
    atomic_store(&g_svc, NULL);
    out->by_signal = atomic_load(&g_signalled);
    if (lg)
        tl_logger_flush(lg);
    if (rc != 0)
        tl_program_note("%s: service '%s' stopped on an error: %s", g_name, cfg->service,
                        tl_strerror(rc));
    out->adds_up = tl_program_summary(stdout, svc, title, now_ms() - start);
    tl_service_free(svc);
    return rc == 0 ? 0 : 1;
}
