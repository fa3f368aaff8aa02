/*
 * Events: the runtime reports what happens through the log function of
 * tl_service_opts, or, without one, through a tl_logger of its own on stderr set up as
 * the config's `log:` section says. Either way only events at or above `log.level`
 * are reported; the burst limit and the formatting are the tl_logger's.
 *
 * Events about one message carry where it came from (source, topic, partition,
 * offset), its key (message_key: as text when printable, else in hex; cut at KEY_MAX bytes), the
 * trace id of its W3C traceparent header when it has one (trace_id), the attempt and the
 * error, built here so that every such event names them alike.
 *
 * Thread rules: loop thread, or the thread calling tl_service_new, tl_service_run or
 * tl_service_free before and after the loop runs.
 */
#include "runtime.h"

#include <stdio.h>
#include <taskloop/program.h>
#include <unistd.h>

#define KEY_MAX TL_KEY_TEXT_BYTES
#define MSG_FIELDS 9
#define EXTRA_MAX 4

int tl__log_open(tl_service *svc)
{
    if (svc->opts.log)
        return 0;
    svc->own_log = tl_logger_new(STDERR_FILENO, svc->cfg->log_format, svc->cfg->log_level);
    if (!svc->own_log)
        return TL_ENOMEM;
    svc->opts.log = tl_logger_log;
    svc->opts.log_user = svc->own_log;
    return 0;
}

void tl__log_close(tl_service *svc)
{
    tl_logger_free(svc->own_log);
    svc->own_log = NULL;
}

bool tl__log_on(const tl_service *svc, tl_level level)
{
    return svc->opts.log && (int)level >= (int)svc->cfg->log_level;
}

void tl__log(tl_service *svc, tl_level level, const char *event, const tl_kv *fields, size_t n)
{
    if (tl__log_on(svc, level))
        svc->opts.log(svc->opts.log_user, level, event, fields, n);
}

static bool printable(const unsigned char *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x20 || k[i] >= 0x7f)
            return false;
    return true;
}

void tl__key_text(const tl_msg *m, char *out, size_t cap)
{
    const unsigned char *k = m->key;
    size_t n = m->key_len < KEY_MAX ? m->key_len : KEY_MAX;
    const char *cut = m->key_len > KEY_MAX ? "..." : "";
    if (printable(k, n)) {
        snprintf(out, cap, "%.*s%s", (int)n, (const char *)k, cut);
        return;
    }
    size_t len = (size_t)snprintf(out, cap, "0x");
    for (size_t i = 0; i < n && len + 3 < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%02x", k[i]);
    snprintf(out + len, cap - len, "%s", cut);
}

void tl__log_msg(const tl_rec *rec, tl_level level, const char *event, unsigned attempt,
                 const char *error, const tl_kv *extra, size_t nextra)
{
    tl_service *svc = rec->svc;
    if (!tl__log_on(svc, level))
        return;
    const tl_msg *m = rec->msg;
    char part[16], off[24], att[16], key[2 * KEY_MAX + 8], trace[TL_TRACE_ID_LEN + 1];
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    snprintf(att, sizeof(att), "%u", attempt);
    tl_kv f[MSG_FIELDS + EXTRA_MAX];
    size_t n = 0;
    f[n++] = (tl_kv){"handler", rec->route->cfg->handler};
    f[n++] = (tl_kv){"source", rec->route->src->cfg->name};
    f[n++] = (tl_kv){"topic", m->origin ? m->origin : ""};
    f[n++] = (tl_kv){"partition", part};
    f[n++] = (tl_kv){"offset", off};
    if (m->key && m->key_len) {
        tl__key_text(m, key, sizeof(key));
        f[n++] = (tl_kv){"message_key", key};
    }
    if (tl_msg_trace_id(m, trace))
        f[n++] = (tl_kv){"trace_id", trace};
    f[n++] = (tl_kv){"attempt", att};
    if (error)
        f[n++] = (tl_kv){"error", error};
    for (size_t i = 0; i < nextra && i < EXTRA_MAX; i++)
        f[n++] = extra[i];
    svc->opts.log(svc->opts.log_user, level, event, f, n);
}
