/*
 * The built-in handlers: log, discard, forward and work. They let a service be deployed from a
 * config file alone, and `work` is the test load's counterpart: it understands the
 * `stall` and `fail` markers that `taskloop produce` puts into payloads.
 *
 * Route params (declared below, so the config refuses unknown keys and values of the
 * wrong kind before a service starts; `work` reads its own once per route, at init,
 * the others per message through tl_handler_param):
 *   log:     file         where the line goes (default: standard output)
 *   forward: to           the output the message is copied to (default: the route's
 *                         first); key, payload and headers unchanged
 *   work:    ms           how long the work takes, in milliseconds (default 1)
 *            spin_us      CPU time the work burns after its sleep, in microseconds
 *                         (default 0), read on the thread's CPU clock
 *            stall        cooperative (default): a stalled message waits until it is
 *                         cancelled; stuck: it ignores cancellation for stall_ms
 *            stall_ms     how long a stuck handler ignores cancellation (default 2000)
 *            stall_ratio  share of messages (0..1) that stall without a marker
 *            fail_ratio   share of messages (0..1) that fail without a marker
 *            record       file to which each completed message's `id=...` token is
 *                         appended, one line each
 *            emit         an output of the route: a completed message is copied there
 *                         (as forward does), after its work
 *
 * Poison markers make `work` misbehave as a broken handler would, to show what
 * `isolation: process` does with it (in thread mode they take the service down, as a
 * real crash would): a payload holding
 *   poison:segv   writes to an address never mapped (SIGSEGV)
 *   poison:abort  calls abort() (SIGABRT)
 *   poison:stack  recurses until the stack overflows (SIGSEGV)
 *   poison:spin   spins on the CPU, ignoring cancellation
 *   poison:hang   sleeps for ever, ignoring cancellation (wedged, without the CPU)
 *   poison:alloc  allocates (and touches) memory until an allocation fails, then fails
 *                 ("out of memory after N MiB")
 *                 with "out of memory"; up to 1 GiB, a cap for runs without a limit
 *
 * A payload holding `flaky:N` (N from 1 to 9) fails its first N attempts with "flaky
 * attempt K", then succeeds: what retries are for.
 *
 * The ratios pick messages by a hash of partition and offset, not by a random
 * generator, so a retried message fails again and a rerun picks the same messages.
 *
 * Thread rules: handlers run on worker threads, many at once. They share no state;
 * lines go out with one write(2) on an O_APPEND descriptor each, which POSIX makes
 * atomic with respect to other appenders, so concurrent workers never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/service.h>
#include <time.h>
#include <unistd.h>

/* Cancellation is checked this often while a handler sleeps. */
#define STEP_MS 5

/* ---------------------------------------------------------------- helpers */

/* The value of the param name, or NULL. */
static const char *kv_get(const tl_kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, name) == 0)
            return kv[i].value;
    return NULL;
}

/* An integer param the config checked (handler_params below), or def when absent. */
static long kv_long(const tl_kv *kv, size_t n, const char *name, long def)
{
    const char *s = kv_get(kv, n, name);
    return s && *s ? strtol(s, NULL, 10) : def;
}

/* A share param the config checked (0 to 1), or 0 when absent. */
static double kv_ratio(const tl_kv *kv, size_t n, const char *name)
{
    const char *s = kv_get(kv, n, name);
    return s && *s ? strtod(s, NULL) : 0.0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Sleeps ms in steps; returns TL_ECANCELED as soon as the task is cancelled. */
static int sleep_cancellable(const tl_task *task, long ms)
{
    while (ms > 0) {
        if (tl_cancelled(task))
            return TL_ECANCELED;
        long step = ms < STEP_MS ? ms : STEP_MS;
        sleep_ms(step);
        ms -= step;
    }
    return tl_cancelled(task) ? TL_ECANCELED : 0;
}

/* Burns us microseconds of this thread's CPU time. The thread's CPU clock, not the wall
 * clock: a worker preempted by its neighbours (more workers than cores) must not count
 * the time it waited as work done, or a CPU-bound load would look cheaper than it is. */
static void spin_cpu(long us)
{
    struct timespec now;
    if (us <= 0 || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0)
        return;
    int64_t end = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + (int64_t)us * 1000;
    do {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    } while ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec < end);
}

/* True when the payload holds word (payloads are bytes, not C strings). */
static bool payload_has(const tl_msg *msg, const char *word)
{
    size_t wl = strlen(word);
    const char *p = msg->payload;
    for (size_t i = 0; p && i + wl <= msg->len; i++)
        if (memcmp(p + i, word, wl) == 0)
            return true;
    return false;
}

/* Appends len bytes to the file at path in a single write, creating it if needed. */
static int append_line(const char *path, const char *line, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return TL_ESYS;
    ssize_t n = write(fd, line, len);
    close(fd);
    return n == (ssize_t)len ? 0 : TL_ESYS;
}

/* A uniform number in [0, 1) from the message's place (splitmix64's finaliser). */
static double place_hash(const tl_msg *msg, uint64_t salt)
{
    uint64_t x = (uint64_t)msg->offset ^ ((uint64_t)(uint32_t)msg->partition << 40) ^ salt;
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (double)(x >> 11) / (double)(1ULL << 53);
}

/* ---------------------------------------------------------------- log */

static int handle_log(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "origin=%s partition=%" PRId32 " offset=%" PRId64 " size=%zu attempt=%u\n",
                     msg->origin ? msg->origin : "-", msg->partition, msg->offset, msg->len,
                     tl_handler_attempt(task));
    if (n < 0)
        return TL_EFAIL;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    const char *file = tl_handler_param(task, "file", NULL);
    if (!file || !*file || strcmp(file, "-") == 0)
        return write(STDOUT_FILENO, line, len) == (ssize_t)len ? 0 : TL_ESYS;
    return append_line(file, line, len);
}

/* ---------------------------------------------------------------- discard */

static int handle_discard(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

/* Copies msg to the route's output named to (NULL: its first); what says which
 * param named it, for the error. */
static int copy_to(tl_task *task, const tl_msg *msg, const char *to, const char *what)
{
    tl_out_msg out = {msg->payload, msg->len, msg->key, msg->key_len, msg->headers, msg->nheaders};
    int rc = tl_handler_emit(task, to, &out);
    if (rc == TL_ENOTFOUND) {
        char text[128];
        snprintf(text, sizeof(text), "%s: the route has no such output (outputs)", what);
        tl_task_set_error_text(task, text);
    }
    return rc;
}

/* Copies the message to an output of the route (tl_handler_emit): a route of this
 * handler turns a topic into another, settling each message once the output has it. */
static int handle_forward(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    return copy_to(task, msg, tl_handler_param(task, "to", NULL), "forward: params.to");
}

/* ---------------------------------------------------------------- work */

/* A route's `work` params, read once when the service is built (work_init). */
typedef struct work_cfg {
    long ms, spin_us, stall_ms;
    bool stuck;
    double stall_ratio, fail_ratio;
    const char *record, *emit; /* the config's, which outlives the service */
} work_cfg;

static int work_init(void *user, const tl_kv *params, size_t n, void **state, char *err,
                     size_t errlen)
{
    (void)user;
    work_cfg *c = malloc(sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    const char *stall = kv_get(params, n, "stall"), *record = kv_get(params, n, "record");
    *c = (work_cfg){.ms = kv_long(params, n, "ms", 1),
                    .spin_us = kv_long(params, n, "spin_us", 0),
                    .stall_ms = kv_long(params, n, "stall_ms", 2000),
                    .stuck = stall && strcmp(stall, "stuck") == 0,
                    .stall_ratio = kv_ratio(params, n, "stall_ratio"),
                    .fail_ratio = kv_ratio(params, n, "fail_ratio"),
                    .record = record && *record ? record : NULL,
                    .emit = kv_get(params, n, "emit")};
    *state = c;
    return 0;
}

static void work_fini(void *user, void *state)
{
    (void)user;
    free(state);
}

/* A stalled message: waits for cancellation, or ignores it for a while when stuck. */
static int work_stall(tl_task *task, const work_cfg *c)
{
    if (c->stuck) {
        sleep_ms(c->stall_ms);
        return tl_cancelled(task) ? TL_ECANCELED : 0;
    }
    while (!tl_cancelled(task))
        sleep_ms(STEP_MS);
    return TL_ECANCELED;
}

/* Appends the payload's `id=...` token and a newline to the record file, if any. */
static int work_record(const char *path, const tl_msg *msg)
{
    if (!path || !msg->payload)
        return 0;
    const char *p = msg->payload, *end = p + msg->len;
    for (; p + 3 <= end; p++)
        if (memcmp(p, "id=", 3) == 0 && (p == (const char *)msg->payload || p[-1] == ' '))
            break;
    if (p + 3 > end)
        return 0;
    char line[128];
    size_t n = 0;
    while (p < end && *p != ' ' && *p != '\n' && n < sizeof(line) - 1)
        line[n++] = *p++;
    line[n++] = '\n';
    return append_line(path, line, n);
}

/* ---------------------------------------------------------------- poison */

/* An address in the first page, never mapped: writing there faults. Volatile so that
 * the compiler keeps the store; not NULL, which a sanitizer would catch as undefined
 * behaviour before the fault. */
static int *volatile wild_ptr = (int *)64;

/* Deeper than any stack: read at run time, so the recursion has an end the compiler
 * cannot see past. */
static volatile long overflow_limit = 1L << 40;

/* Recurses past the stack's end; the frame's array and its use keep each call real. */
static int overflow(long depth)
{
    volatile char frame[1024];
    if (depth >= overflow_limit)
        return 0;
    frame[depth % sizeof(frame)] = (char)depth;
    return overflow(depth + 1) + frame[0];
}

#define ALLOC_STEP (1u << 20)
#define ALLOC_CAP (1024u << 20)

/* Allocates and touches memory step by step until malloc fails or the cap. */
static int poison_alloc(tl_task *task)
{
    void **blocks = calloc(ALLOC_CAP / ALLOC_STEP, sizeof(*blocks));
    size_t n = 0;
    int rc = 0;
    for (; blocks && n < ALLOC_CAP / ALLOC_STEP; n++) {
        blocks[n] = malloc(ALLOC_STEP);
        if (!blocks[n])
            break;
        memset(blocks[n], 1, ALLOC_STEP);
    }
    if (!blocks || n < ALLOC_CAP / ALLOC_STEP) {
        char text[64];
        snprintf(text, sizeof(text), "out of memory after %zu MiB", n * (ALLOC_STEP >> 20));
        tl_task_set_error_text(task, text);
        rc = TL_ENOMEM;
    }
    for (size_t i = 0; blocks && i < n; i++)
        free(blocks[i]);
    free(blocks);
    return rc;
}

/* The misbehaviour a poison marker asks for; 1 when the payload has none. */
static int poison(tl_task *task, const tl_msg *msg)
{
    if (!payload_has(msg, "poison:"))
        return 1;
    if (payload_has(msg, "poison:segv"))
        return *wild_ptr = 1;
    if (payload_has(msg, "poison:abort"))
        abort();
    if (payload_has(msg, "poison:stack"))
        return overflow(0);
    if (payload_has(msg, "poison:spin")) {
        for (volatile uint64_t i = 0;; i++) {
        }
    }
    if (payload_has(msg, "poison:hang")) {
        for (;;)
            sleep_ms(STEP_MS);
    }
    if (payload_has(msg, "poison:alloc"))
        return poison_alloc(task);
    return 1;
}

/* Whether this attempt of a `flaky:N` message fails (its first N attempts do). */
static bool flaky_fails(tl_task *task, const tl_msg *msg)
{
    const char *p = msg->payload;
    for (size_t i = 0; p && i + 7 <= msg->len; i++)
        if (memcmp(p + i, "flaky:", 6) == 0 && p[i + 6] >= '1' && p[i + 6] <= '9') {
            unsigned n = (unsigned)(p[i + 6] - '0'), attempt = tl_handler_attempt(task);
            if (attempt > n)
                return false;
            char text[32];
            snprintf(text, sizeof(text), "flaky attempt %u", attempt);
            tl_task_set_error_text(task, text);
            return true;
        }
    return false;
}

static int handle_work(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    const work_cfg *c = tl_handler_state(task);
    int prc = poison(task, msg);
    if (prc != 1)
        return prc;
    if (payload_has(msg, "stall") || place_hash(msg, 1) < c->stall_ratio)
        return work_stall(task, c);
    int rc = sleep_cancellable(task, c->ms);
    if (rc != 0)
        return rc;
    spin_cpu(c->spin_us);
    if (payload_has(msg, "fail") || place_hash(msg, 2) < c->fail_ratio) {
        tl_task_set_error_text(task, "simulated failure");
        return TL_EFAIL;
    }
    if (flaky_fails(task, msg))
        return TL_EFAIL;
    /* A stalled message is rerouted: recording it too would count it twice. */
    if (tl_cancelled(task))
        return TL_ECANCELED;
    if (c->emit && (rc = copy_to(task, msg, c->emit, "work: params.emit")) != 0)
        return rc;
    if (work_record(c->record, msg) != 0) {
        tl_task_set_error_text(task, "cannot append to the record file");
        return TL_ESYS;
    }
    return 0;
}

/* ---------------------------------------------------------------- params */

/* What the config checks each route's params against (tl_register_handler_params). */
static const tl_param log_params[] = {{"file", TL_PARAM_STRING, false, false,
                                       "where the lines go (default, or \"-\": standard output)"},
                                      {NULL, 0, false, false, NULL}};
static const tl_param discard_params[] = {{NULL, 0, false, false, NULL}};
static const tl_param forward_params[] = {
    {"to", TL_PARAM_STRING, false, false, "the output copied to (default: the route's first)"},
    {NULL, 0, false, false, NULL}};
static const tl_param work_params[] = {
    {"ms", TL_PARAM_INT, false, false, "milliseconds the work sleeps (default 1)"},
    {"spin_us", TL_PARAM_INT, false, false, "microseconds of CPU it burns after (default 0)"},
    {"stall", TL_PARAM_STRING, false, false, "cooperative (default) or stuck"},
    {"stall_ms", TL_PARAM_INT, false, false, "how long a stuck stall ignores cancellation"},
    {"stall_ratio", TL_PARAM_STRING, false, false, "share of messages that stall, 0 to 1"},
    {"fail_ratio", TL_PARAM_STRING, false, false, "share of messages that fail, 0 to 1"},
    {"record", TL_PARAM_STRING, false, false, "file each completed message's id= is appended to"},
    {"emit", TL_PARAM_STRING, false, false, "an output each completed message is copied to"},
    {NULL, 0, false, false, NULL}};
/* An hour of sleep or of stuck stall, ten seconds of CPU a message: past any test load. */
static const tl_param_range work_ranges[] = {
    {"ms", 0, 3600000}, {"stall_ms", 0, 3600000}, {"spin_us", 0, 10000000}, {NULL, 0, 0}};

/* Reports the param name when it names none of the route's outputs. */
static void check_output(const tl_kv *kv, size_t n, const char *name, const char *const *outputs,
                         size_t noutputs, tl_param_report_fn report, void *rep)
{
    const char *v = kv_get(kv, n, name);
    if (!v)
        return;
    for (size_t i = 0; i < noutputs; i++)
        if (strcmp(outputs[i], v) == 0)
            return;
    char why[512];
    size_t len = (size_t)snprintf(why, sizeof(why), "\"%s\" names no output of the route (%s", v,
                                  noutputs ? "its outputs:" : "it has no outputs");
    for (size_t i = 0; i < noutputs && len < sizeof(why); i++)
        len += (size_t)snprintf(why + len, sizeof(why) - len, " %s", outputs[i]);
    if (len < sizeof(why))
        snprintf(why + len, sizeof(why) - len, ")");
    report(rep, name, NULL, why);
}

static void check_forward(const tl_kv *kv, size_t n, const char *const *outputs, size_t noutputs,
                          tl_param_report_fn report, void *rep)
{
    check_output(kv, n, "to", outputs, noutputs, report, rep);
}

static void check_work(const tl_kv *kv, size_t n, const char *const *outputs, size_t noutputs,
                       tl_param_report_fn report, void *rep)
{
    char why[256];
    const char *stall = kv_get(kv, n, "stall");
    if (stall && strcmp(stall, "cooperative") != 0 && strcmp(stall, "stuck") != 0) {
        snprintf(why, sizeof(why), "expected cooperative or stuck, got \"%s\"", stall);
        report(rep, "stall", NULL, why);
    }
    static const char *const ratios[] = {"stall_ratio", "fail_ratio"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = kv_get(kv, n, ratios[i]);
        char *end = NULL;
        double d = v ? strtod(v, &end) : 0.0;
        if (v && (end == v || *end || !(d >= 0.0 && d <= 1.0))) {
            snprintf(why, sizeof(why), "expected a share from 0 to 1 (e.g. 0.02), got \"%s\"", v);
            report(rep, ratios[i], NULL, why);
        }
    }
    check_output(kv, n, "emit", outputs, noutputs, report, rep);
}

/* ---------------------------------------------------------------- registration */

/* Registers fn under name with its hooks (may be NULL) and params. */
static int add(tl_registry *reg, const char *name, tl_handler_fn fn, const tl_handler_hooks *hooks,
               const tl_handler_params *p)
{
    int rc = tl_register_handler_hooks(reg, name, fn, NULL, hooks);
    return rc ? rc : tl_register_handler_params(reg, name, p);
}

int tl_register_builtin_handlers(tl_registry *reg)
{
    static const tl_handler_params log = {log_params, NULL, NULL},
                                   discard = {discard_params, NULL, NULL},
                                   forward = {forward_params, NULL, check_forward},
                                   work = {work_params, work_ranges, check_work};
    static const tl_handler_hooks work_hooks = {.init = work_init, .fini = work_fini};
    int rc = add(reg, "log", handle_log, NULL, &log);
    if (rc == 0)
        rc = add(reg, "discard", handle_discard, NULL, &discard);
    if (rc == 0)
        rc = add(reg, "forward", handle_forward, NULL, &forward);
    if (rc == 0)
        rc = add(reg, "work", handle_work, &work_hooks, &work);
    return rc;
}
