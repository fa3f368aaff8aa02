/*
 * The log of taskloop/program.h: event lines in logfmt or JSON, a burst limit per event
 * name, masked secrets, and a status line kept below the events on a terminal.
 *
 * Thread rules: any thread (the loop, workers, adapter threads, a program's monitor);
 * lg->lock guards the burst table, the status line and the writes.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/program.h>
#include <time.h>
#include <unistd.h>

#define EVENTS 32
#define LINE_MAX_LEN 4096

typedef struct burst {
    char event[48];
    int64_t second;
    unsigned shown;
    uint64_t suppressed;
} burst;

struct tl_logger {
    pthread_mutex_t lock;
    int fd;
    tl_log_format format;
    tl_log_level level;
    burst bursts[EVENTS];
    char status[512];
    bool status_shown;
    int tty; /* -1: not probed yet */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

tl_logger *tl_logger_new(int fd, tl_log_format format, tl_log_level level)
{
    tl_logger *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return NULL;
    pthread_mutex_init(&lg->lock, NULL);
    lg->fd = fd;
    lg->format = format;
    lg->level = level;
    lg->tty = -1;
    return lg;
}

void tl_logger_setup(tl_logger *lg, tl_log_format format, tl_log_level level)
{
    pthread_mutex_lock(&lg->lock);
    lg->format = format;
    lg->level = level;
    pthread_mutex_unlock(&lg->lock);
}

/* ---------------------------------------------------------------- output */

static void write_all(tl_logger *lg, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(lg->fd, s, len);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

/* Writes a whole line, lifting the status line out of the way and putting it back. */
static void emit_locked(tl_logger *lg, const char *line, size_t len)
{
    if (lg->status_shown)
        write_all(lg, "\r\033[K", 4);
    write_all(lg, line, len);
    if (lg->status_shown)
        write_all(lg, lg->status, strlen(lg->status));
}

bool tl_logger_status(tl_logger *lg, const char *line)
{
    pthread_mutex_lock(&lg->lock);
    if (lg->tty < 0)
        lg->tty = isatty(lg->fd);
    bool tty = lg->tty;
    if (tty) {
        write_all(lg, "\r\033[K", 4);
        snprintf(lg->status, sizeof(lg->status), "%s", line ? line : "");
        lg->status_shown = line != NULL;
        write_all(lg, lg->status, strlen(lg->status));
    }
    pthread_mutex_unlock(&lg->lock);
    return tty;
}

void tl_logger_note(tl_logger *lg, const char *fmt, ...)
{
    char line[LINE_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
    line[len++] = '\n';
    pthread_mutex_lock(&lg->lock);
    emit_locked(lg, line, len);
    pthread_mutex_unlock(&lg->lock);
}

/* ---------------------------------------------------------------- formatting */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->len + n >= b->cap)
        n = b->cap - 1 - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static bool logfmt_needs_quotes(const char *v)
{
    if (!*v)
        return true;
    for (; *v; v++)
        if (*v == ' ' || *v == '=' || *v == '"' || (unsigned char)*v < 0x20)
            return true;
    return false;
}

/* Appends v escaped for a JSON string or a quoted logfmt value (both take \" \\ \n). */
static void put_escaped(buf *b, const char *v, bool json)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c == '\n') {
            puts_(b, "\\n");
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), json ? "\\u%04x" : "\\x%02x", c);
            puts_(b, esc);
        } else {
            put(b, v, 1);
        }
    }
}

static void put_field(buf *b, bool json, bool first, const char *key, const char *val)
{
    if (json) {
        puts_(b, first ? "{\"" : ",\"");
        put_escaped(b, key, true);
        puts_(b, "\":\"");
        put_escaped(b, val, true);
        puts_(b, "\"");
        return;
    }
    if (!first)
        puts_(b, " ");
    puts_(b, key);
    puts_(b, "=");
    if (!logfmt_needs_quotes(val)) {
        puts_(b, val);
        return;
    }
    puts_(b, "\"");
    put_escaped(b, val, false);
    puts_(b, "\"");
}

static void timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03ldZ", day, ts.tv_nsec / 1000000L);
}

/* Whether a field's value is hidden: its name says secret. message_key, the runtime's
 * name for a message's key, says "key" without being one of a config's secrets. */
static bool masked(const char *key)
{
    return strcmp(key, "message_key") != 0 && tl_config_is_secret(key);
}

/* Formats one event as a line, newline included. */
static void format_event(buf *b, bool json, tl_level level, const char *event, const tl_kv *fields,
                         size_t nfields)
{
    char ts[48];
    timestamp(ts, sizeof(ts));
    put_field(b, json, true, "time", ts);
    put_field(b, json, false, "level", level_names[level <= TL_LEVEL_ERROR ? level : 3]);
    put_field(b, json, false, "event", event ? event : "-");
    for (size_t i = 0; i < nfields; i++) {
        if (!fields[i].key)
            continue;
        const char *v = fields[i].value ? fields[i].value : "";
        put_field(b, json, false, fields[i].key, masked(fields[i].key) ? "*****" : v);
    }
    if (json)
        puts_(b, "}");
    b->p[b->len++] = '\n';
}

/* ---------------------------------------------------------------- bursts */

/* The burst entry of event, reusing the stalest slot when the table is full. */
static burst *burst_of(tl_logger *lg, const char *event, int64_t second)
{
    burst *oldest = &lg->bursts[0];
    for (size_t i = 0; i < EVENTS; i++) {
        burst *e = &lg->bursts[i];
        if (strncmp(e->event, event, sizeof(e->event) - 1) == 0 && e->event[0])
            return e;
        if (e->second < oldest->second)
            oldest = e;
    }
    snprintf(oldest->event, sizeof(oldest->event), "%s", event);
    oldest->second = second;
    oldest->shown = 0;
    oldest->suppressed = 0;
    return oldest;
}

/* Writes a line saying how many events of e went unshown in its last second. */
static void flush_suppressed_locked(tl_logger *lg, burst *e)
{
    if (e->suppressed == 0)
        return;
    char count[32], line[LINE_MAX_LEN];
    snprintf(count, sizeof(count), "%llu", (unsigned long long)e->suppressed);
    tl_kv kv[] = {{"of", e->event}, {"count", count}};
    buf b = {line, 0, sizeof(line) - 1};
    format_event(&b, lg->format == TL_LOG_JSON, TL_LEVEL_WARN, "log_suppressed", kv, 2);
    emit_locked(lg, line, b.len);
    e->suppressed = 0;
}

/* True when the event may be shown now; counts it as suppressed otherwise. */
static bool burst_admits_locked(tl_logger *lg, const char *event)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t second = (int64_t)ts.tv_sec;
    burst *e = burst_of(lg, event, second);
    if (e->second != second) {
        flush_suppressed_locked(lg, e);
        e->second = second;
        e->shown = 0;
    }
    if (e->shown < TL_LOGGER_BURST) {
        e->shown++;
        return true;
    }
    e->suppressed++;
    return false;
}

void tl_logger_log(void *user, tl_level level, const char *event, const tl_kv *fields,
                   size_t nfields)
{
    tl_logger *lg = user;
    char line[LINE_MAX_LEN];
    pthread_mutex_lock(&lg->lock);
    if ((int)level >= (int)lg->level && burst_admits_locked(lg, event ? event : "-")) {
        buf b = {line, 0, sizeof(line) - 1};
        format_event(&b, lg->format == TL_LOG_JSON, level, event, fields, nfields);
        emit_locked(lg, line, b.len);
    }
    pthread_mutex_unlock(&lg->lock);
}

void tl_logger_flush(tl_logger *lg)
{
    pthread_mutex_lock(&lg->lock);
    for (size_t i = 0; i < EVENTS; i++)
        flush_suppressed_locked(lg, &lg->bursts[i]);
    pthread_mutex_unlock(&lg->lock);
}

void tl_logger_free(tl_logger *lg)
{
    if (!lg)
        return;
    tl_logger_flush(lg);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}
