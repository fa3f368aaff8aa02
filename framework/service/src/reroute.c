/*
 * Rerouting: sending stalled and failed messages to their route's target with the
 * tl-* headers, and settling them only once the target acknowledged them. A target
 * that refuses or is down leaves the message unsettled (so its offset is not
 * committed) and the send is tried again with backoff until it is acknowledged.
 *
 * An acknowledged send is reported up through hooks.rerouted; this file knows nothing
 * of what settling means.
 *
 * Thread rules: tl__reroute and the ack handling run on the loop thread; a sink's ack
 * callback may run on any thread and only posts the outcome to the loop.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_BACKOFF_MIN_MS 100
#define SEND_BACKOFF_MAX_MS 5000

typedef struct ack_msg {
    tl_rec *rec;
    int err;
    char what[200];
} ack_msg;

static void send_now(tl_rec *rec);

int64_t tl__send_backoff_ms(unsigned tries)
{
    int64_t delay = SEND_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < tries && delay < SEND_BACKOFF_MAX_MS; i++)
        delay *= 2;
    return delay < SEND_BACKOFF_MAX_MS ? delay : SEND_BACKOFF_MAX_MS;
}

static void send_retry_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    send_now(arg);
}

/* The send failed: report, then try again later; the message stays unsettled. */
static void send_failed(tl_rec *rec, int err, const char *what)
{
    tl_service *svc = rec->svc;
    TL_STAT_ADD(svc, reroute_errors, 1);
    atomic_fetch_add_explicit(&rec->target->errors, 1, memory_order_relaxed);
    int64_t delay = tl__send_backoff_ms(rec->send_tries);
    char tries[16], d[24];
    snprintf(tries, sizeof(tries), "%u", rec->send_tries);
    snprintf(d, sizeof(d), "%lldms", (long long)delay);
    tl_kv f[] = {{"target", rec->target->name}, {"try", tries}, {"retry_in", d}};
    tl__log_msg(rec, TL_LEVEL_WARN, "reroute_failed", rec->attempt,
                what && *what ? what : tl_strerror(err), f, 3);
    if (tl__txn_send_failed(rec, what && *what ? what : tl_strerror(err)))
        return;
    tl_timer_start(&rec->timer, delay, send_retry_fire, rec);
}

/* The target acknowledged the message: a failed one was dead-lettered, a stalled one
 * rerouted. */
static void log_sent(const tl_rec *rec)
{
    bool failed = strcmp(rec->reason, "failed") == 0;
    tl_kv f[] = {{"target", rec->target->name}, {"reason", rec->reason}};
    tl__log_msg(rec, failed ? TL_LEVEL_WARN : TL_LEVEL_INFO,
                failed ? "message_dead_lettered" : "message_rerouted", rec->attempt, rec->err_text,
                f, 2);
}

static void ack_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    ack_msg *a = arg;
    tl_rec *rec = a->rec;
    if (rec->svc->closing) {
        free(a);
        return;
    }
    if (a->err == 0) {
        TL_ROUTE_STAT_INC(rec, rerouted);
        atomic_fetch_add_explicit(&rec->target->rerouted, 1, memory_order_relaxed);
        log_sent(rec);
        rec->svc->hooks.rerouted(rec);
    } else {
        send_failed(rec, a->err, a->what);
    }
    free(a);
}

/* Any thread: the sink's verdict on one send. */
static void on_ack(void *arg, int err, const char *what)
{
    tl_rec *rec = arg;
    ack_msg *a = malloc(sizeof(*a));
    if (!a)
        abort(); /* losing an ack would leave the message unsettled forever */
    a->rec = rec;
    a->err = err;
    snprintf(a->what, sizeof(a->what), "%s", what ? what : "");
    if (tl_loop_call_threadsafe(rec->svc->loop, ack_on_loop, a) != 0)
        free(a); /* the loop is gone: the record went with it */
}

const char *const tl__reroute_header_names[TL_REROUTE_NHEADERS] = {
    "tl-reason", "tl-origin-topic",  "tl-origin-partition", "tl-origin-offset", "tl-attempt",
    "tl-error",  "tl-first-seen-ms", "tl-due-ms",           "tl-first-error"};

/* One of the headers a reroute writes: an old one is replaced, while other tl-* headers
 * (tl-redrive-count, kept by `taskloop redrive`) travel on. */
static bool reroute_header(const char *name)
{
    for (size_t i = 0; i < TL_REROUTE_NHEADERS; i++)
        if (strcmp(name, tl__reroute_header_names[i]) == 0)
            return true;
    return false;
}

size_t tl__reroute_headers(const tl_msg *m, const char *const vals[TL_REROUTE_NHEADERS],
                           tl_header *out)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nheaders; i++)
        if (!reroute_header(m->headers[i].name))
            out[n++] = m->headers[i];
    for (size_t i = 0; i < TL_REROUTE_NHEADERS; i++)
        if (vals[i])
            out[n++] = (tl_header){tl__reroute_header_names[i], vals[i], strlen(vals[i])};
    return n;
}

/* Sends the message with the original headers (minus old reroute ones) and fresh ones. */
static void send_now(tl_rec *rec)
{
    const tl_msg *m = rec->msg;
    tl_header *h = malloc((m->nheaders + TL_REROUTE_NHEADERS) * sizeof(*h));
    if (!h) {
        send_failed(rec, TL_ENOMEM, "out of memory");
        return;
    }
    char part_buf[16], off_buf[24], attempt[16], first[24], due[24];
    snprintf(part_buf, sizeof(part_buf), "%d", (int)m->partition);
    snprintf(off_buf, sizeof(off_buf), "%lld", (long long)m->offset);
    snprintf(attempt, sizeof(attempt), "%u", rec->attempt);
    snprintf(first, sizeof(first), "%lld", (long long)rec->first_seen_ms);
    snprintf(due, sizeof(due), "%lld", (long long)rec->due_ms);
    const char *origin = m->origin ? m->origin : "", *part = part_buf, *off = off_buf;
    tl__due_origin(rec, &origin, &part, &off); /* a delayed retry's first delivery */
    const char *err = rec->err_text ? rec->err_text : "";
    bool retry = strcmp(rec->reason, "retry") == 0;
    const char *vals[TL_REROUTE_NHEADERS] = {rec->reason,
                                             origin,
                                             part,
                                             off,
                                             attempt,
                                             err,
                                             first,
                                             retry ? due : NULL,
                                             tl__due_first_error(rec)};
    size_t n = tl__reroute_headers(m, vals, h);
    tl_out_msg out = {m->payload, m->len, m->key, m->key_len, h, n};
    rec->send_tries++;
    int rc = tl__target_send(rec->svc, rec->target, &out, on_ack, rec);
    free(h);
    if (rc != 0)
        send_failed(rec, rc, tl_strerror(rc));
}

void tl__reroute(tl_rec *rec, tl_target *target, const char *reason)
{
    rec->state = REC_REROUTING;
    rec->target = target;
    rec->reason = reason;
    rec->send_tries = 0;
    send_now(rec);
}

/* ---------------------------------------------------------------- targets */

/* The target of that name writing in txn_src's transactions (NULL: in none). */
static tl_target *target_find(tl_service *svc, const char *name, const tl_source_state *txn_src)
{
    for (size_t i = 0; i < svc->ntargets; i++)
        if (strcmp(svc->targets[i]->name, name) == 0 && svc->targets[i]->txn_src == txn_src)
            return svc->targets[i];
    return NULL;
}

/* The section configuring a sink: its own, else the route's source of the same type. */
static const tl_params *sink_conf(const tl_service *svc, const tl_config_route *r,
                                  const char *scheme)
{
    for (size_t i = 0; i < svc->cfg->nsinks; i++)
        if (strcmp(svc->cfg->sinks[i].scheme, scheme) == 0)
            return &svc->cfg->sinks[i].params;
    const tl_config_source *s = &svc->cfg->sources[r->source];
    return strcmp(s->type, scheme) == 0 ? &s->params : NULL;
}

static int target_open(tl_service *svc, const tl_config_route *r, const tl_config_target *t,
                       tl_target **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!t->scheme)
        return 0;
    char name[512];
    snprintf(name, sizeof(name), "%s:%s", t->scheme, t->address);
    /* An exactly-once route's targets write in its source's transactions: its own. */
    tl_source_state *txn_src = svc->srcs[r->source].txn ? &svc->srcs[r->source] : NULL;
    if ((*out = target_find(svc, name, txn_src)) != NULL)
        return 0;
    tl_target *tg = calloc(1, sizeof(*tg));
    tl_target **arr = realloc(svc->targets, (svc->ntargets + 1) * sizeof(*arr));
    if (arr)
        svc->targets = arr;
    if (!tg || !arr || !(tg->name = strdup(name))) {
        free(tg);
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    tg->ops = t->ops;
    tg->txn_src = txn_src;
    /* Writing in transactions: a sink per shard, each in its shard's context. */
    size_t nsinks = txn_src && svc->cfg->shards > 1 ? svc->cfg->shards : 1;
    tg->sinks = calloc(nsinks, sizeof(*tg->sinks));
    char why[256] = "";
    int rc = tg->sinks ? 0 : TL_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nsinks; k++) {
        rc = txn_src ? txn_src->ops->txn->sink(txn_src->handle, k, t->address, &tg->sinks[k],
                                               &tg->ops, why, sizeof(why))
                     : t->ops->open(t->address, sink_conf(svc, r, t->scheme), &tg->sinks[k], why,
                                    sizeof(why));
        if (rc == 0)
            tg->nsinks++;
    }
    if (rc != 0) {
        snprintf(err, errlen, "target %s: %s", name, why[0] ? why : tl_strerror(rc));
        for (size_t k = 0; k < tg->nsinks; k++)
            tg->ops->close(tg->sinks[k]);
        free(tg->sinks);
        free(tg->name);
        free(tg);
        return rc;
    }
    pthread_mutex_init(&tg->send_mu, NULL);
    svc->targets[svc->ntargets++] = tg;
    *out = tg;
    return 0;
}

int tl__targets_open(tl_service *svc, char *err, size_t errlen)
{
    for (size_t i = 0; i < svc->nroutes; i++) {
        tl_route_state *rt = &svc->routes[i];
        int rc = target_open(svc, rt->cfg, &rt->cfg->on_stall, &rt->on_stall, err, errlen);
        if (rc == 0)
            rc = target_open(svc, rt->cfg, &rt->cfg->on_error, &rt->on_error, err, errlen);
        if (rc == 0)
            rc = target_open(svc, rt->cfg, &rt->cfg->retry_via, &rt->retry_via, err, errlen);
        if (rc == 0 && rt->cfg->noutputs &&
            !(rt->outputs = calloc(rt->cfg->noutputs, sizeof(*rt->outputs)))) {
            snprintf(err, errlen, "out of memory");
            rc = TL_ENOMEM;
        }
        for (size_t k = 0; rc == 0 && k < rt->cfg->noutputs; k++)
            rc = target_open(svc, rt->cfg, &rt->cfg->outputs[k].target, &rt->outputs[k], err,
                             errlen);
        if (rc)
            return rc;
    }
    return 0;
}

void tl__targets_close(tl_service *svc, int64_t flush_ms)
{
    for (size_t i = 0; i < svc->ntargets; i++) {
        tl_target *t = svc->targets[i];
        for (size_t k = 0; k < t->nsinks; k++) {
            t->ops->flush(t->sinks[k], flush_ms);
            t->ops->close(t->sinks[k]);
        }
        t->nsinks = 0;
    }
}

void tl__targets_free(tl_service *svc)
{
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++) {
        free(svc->routes[i].outputs);
        svc->routes[i].outputs = NULL;
    }
    for (size_t i = 0; i < svc->ntargets; i++) {
        pthread_mutex_destroy(&svc->targets[i]->send_mu);
        free(svc->targets[i]->sinks);
        free(svc->targets[i]->name);
        free(svc->targets[i]);
    }
    free(svc->targets);
    svc->targets = NULL;
    svc->ntargets = 0;
}

size_t tl_service_targets(tl_service *svc, tl_target_stats *out, size_t cap)
{
    for (size_t i = 0; i < svc->ntargets && i < cap; i++) {
        out[i].target = svc->targets[i]->name;
        out[i].rerouted = atomic_load(&svc->targets[i]->rerouted);
        out[i].errors = atomic_load(&svc->targets[i]->errors);
    }
    return svc->ntargets;
}
