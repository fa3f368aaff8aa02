/*
 * The service: sources and sinks around the loop, housekeeping (commits, revokes,
 * stuck workers, the stop request), the drain, and the counters. A message's path
 * through the other files is in runtime.h and docs/ARCHITECTURE.md.
 *
 * Thread rules: see runtime.h. Sources call the tl_source_events below from their
 * own threads: deliver (intake.c) waits until the loop took its batch in, revoked
 * (revoke.c) until the loop drained those partitions; error posts to the loop.
 */
#include "admin.h"
#include "hash.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUSEKEEPING_MS 50

/* ---------------------------------------------------------------- source events */

/* With shards, each event goes to the shards owning its partitions (shard.c). */

static void ev_deliver(void *rt, tl_source *s, tl_msg **msgs, size_t n)
{
    (void)s;
    tl_source_state *src = rt;
    if (tl__sharded(src->svc))
        tl__shards_deliver(src, msgs, n);
    else
        tl__intake_deliver(src, msgs, n);
}

static void revoke(tl_source_state *src, const tl_partition *parts, size_t n, bool lost)
{
    if (tl__sharded(src->svc))
        tl__shards_revoke(src, parts, n, lost);
    else
        tl__revoke(src, parts, n, lost);
}

static void ev_revoked(void *rt, tl_source *s, const tl_partition *parts, size_t n)
{
    (void)s;
    revoke(rt, parts, n, false);
}

static void ev_lost(void *rt, tl_source *s, const tl_partition *parts, size_t n)
{
    (void)s;
    revoke(rt, parts, n, true);
}

static void ev_committed(void *rt, tl_source *s, const char *topic, int32_t partition,
                         int64_t next_offset, int err)
{
    (void)s;
    tl_source_state *src = rt;
    if (tl__sharded(src->svc))
        tl__shards_committed(src, topic, partition, next_offset, err);
    else
        tl__acks_event(src, topic, partition, next_offset, err);
}

static void ev_assigned(void *rt, tl_source *s, const tl_partition *parts, size_t n)
{
    (void)s;
    tl_source_state *src = rt;
    if (tl__sharded(src->svc))
        tl__shards_assigned(src, parts, n);
    else
        tl__partitions_assigned_on_source(src, parts, n);
}

typedef struct error_msg {
    tl_source_state *src;
    int err;
    bool fatal;
    char what[256];
} error_msg;

static void error_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    error_msg *e = arg;
    tl_service *svc = e->src->svc;
    tl_kv f[] = {{"source", e->src->cfg->name}, {"error", e->what}};
    tl__log(svc, e->fatal ? TL_LEVEL_ERROR : TL_LEVEL_WARN,
            e->fatal ? "source_fatal" : "source_error", f, 2);
    if (e->fatal)
        tl__service_fail(svc, e->err < 0 ? e->err : TL_EIO);
    free(e);
}

static void ev_error(void *rt, tl_source *s, int err, bool fatal, const char *what)
{
    (void)s;
    tl_source_state *src = rt;
    error_msg *e = malloc(sizeof(*e));
    if (!e)
        return;
    e->src = src;
    e->err = err;
    e->fatal = fatal;
    snprintf(e->what, sizeof(e->what), "%s", what ? what : tl_strerror(err));
    if (tl_loop_call_threadsafe(src->svc->loop, error_on_loop, e) != 0)
        free(e);
}

/* ---------------------------------------------------------------- lifecycle */

void tl_service_stop(tl_service *svc)
{
    /* Only an atomic store: this runs in signal handlers. The housekeeping timer
     * notices it within HOUSEKEEPING_MS. */
    atomic_store(&svc->stop_req, true);
}

/* Whether every shard other than the root finished its drain. */
static bool shards_drained(const tl_service *root)
{
    for (size_t k = 1; k < root->nshards; k++)
        if (!atomic_load(&root->shards[k]->shard_drained))
            return false;
    return true;
}

/* The drain is over (all settled, or the deadline): commit, stop sources, end. A shard
 * other than the root only commits: the root stops the sources once every shard is
 * done, then every shard's loop and its own. */
static void drain_finish(tl_service *svc)
{
    svc->drained = true;
    tl__commit_dirty(svc);
    if (svc->root != svc) {
        atomic_store(&svc->shard_drained, true);
        return;
    }
    for (size_t i = 0; i < svc->nsrcs; i++)
        if (svc->srcs[i].handle)
            svc->srcs[i].ops->stop(svc->srcs[i].handle);
    uint64_t left = atomic_load(&svc->st.in_flight);
    if (left > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)left);
        tl_kv f[] = {{"unsettled", n}};
        tl__log(svc, TL_LEVEL_WARN, "drain_timeout", f, 1);
    }
    for (size_t k = 1; k < svc->nshards; k++)
        tl_loop_stop(svc->shards[k]->loop);
    tl_loop_stop(svc->loop);
}

static void housekeeping(tl_timer *timer, void *arg)
{
    tl_service *svc = arg;
    atomic_store_explicit(&svc->heartbeat_ms, tl_loop_now(svc->loop), memory_order_relaxed);
    tl__commit_dirty(svc);
    tl__acks_check(svc);
    tl__revokes_check(svc);
    tl__check_stuck(svc);
    tl__procs_check(svc);
    tl__intake_resume(svc); /* whatever freed room, held batches never wait forever */
    tl__intake_hold_resume(svc);
    if (atomic_load(&svc->root->stop_req) && !atomic_load(&svc->stopping)) {
        atomic_store(&svc->stopping, true);
        /* The root pauses the sources for good (a pause no shard's resume lifts). */
        for (size_t i = 0; svc->root == svc && i < svc->nsrcs; i++)
            if (svc->srcs[i].handle)
                tl__source_pause(&svc->srcs[i], true);
        tl__intake_release_held(svc);
        svc->drain_deadline_ms = tl_loop_now(svc->loop) + svc->cfg->drain_timeout_ms;
        tl__log(svc, TL_LEVEL_INFO, "draining", NULL, 0);
    }
    if (atomic_load(&svc->stopping) && !svc->drained &&
        (atomic_load(&svc->st.in_flight) == 0 ||
         tl_loop_now(svc->loop) >= svc->drain_deadline_ms) &&
        shards_drained(svc)) {
        drain_finish(svc);
        if (svc->root == svc)
            return;
    }
    tl_timer_start(timer, HOUSEKEEPING_MS, housekeeping, svc);
}

static int open_sources(tl_service *svc, char *err, size_t errlen)
{
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        src->svc = svc;
        src->index = i;
        src->cfg = &svc->cfg->sources[i];
        src->ops = src->cfg->ops;
        src->ev = (tl_source_events){.rt = src,
                                     .deliver = ev_deliver,
                                     .assigned = ev_assigned,
                                     .revoked = ev_revoked,
                                     .lost = ev_lost,
                                     .error = ev_error,
                                     .committed = ev_committed};
        char why[512] = "";
        int rc = src->ops->open(&src->cfg->params, &src->ev, &src->handle, why, sizeof(why));
        if (rc != 0) {
            snprintf(err, errlen, "source %s: %s", src->cfg->name, why[0] ? why : tl_strerror(rc));
            src->handle = NULL;
            return rc;
        }
        if (src->ops->hold_limit_ms)
            src->hold_limit_ms = src->ops->hold_limit_ms(src->handle);
    }
    return 0;
}

int tl_service_new(const tl_config *cfg, tl_registry *reg, const tl_service_opts *opts,
                   tl_service **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->plugins_unopened) {
        snprintf(err, errlen, "the config was loaded without opening its plugins");
        return TL_EINVAL;
    }
    if (tl__hash_init() != 0) {
        snprintf(err, errlen, "libsodium could not start: it keys the hash of message keys");
        return TL_ESYS;
    }
    tl_service *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    svc->cfg = cfg;
    svc->reg = reg;
    svc->root = svc;
    svc->nshards = 1;
    svc->results_fd = -1;
    if (opts)
        svc->opts = *opts;
    if (tl__log_open(svc) != 0) {
        snprintf(err, errlen, "out of memory");
        free(svc);
        return TL_ENOMEM;
    }
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->intake_cv, NULL);
    atomic_init(&svc->st.healthy, true);
    svc->nsrcs = cfg->nsources;
    svc->srcs = calloc(cfg->nsources ? cfg->nsources : 1, sizeof(*svc->srcs));
    svc->nroutes = cfg->nroutes;
    svc->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*svc->routes));
    int rc = svc->srcs && svc->routes ? 0 : TL_ENOMEM;
    if (rc)
        snprintf(err, errlen, "out of memory");
    for (size_t i = 0; svc->srcs && i < cfg->nsources; i++) {
        svc->srcs[i].real = &svc->srcs[i];
        pthread_mutex_init(&svc->srcs[i].share_mu, NULL);
    }
    for (size_t i = 0; !rc && i < cfg->nroutes; i++) {
        svc->routes[i].cfg = &cfg->routes[i];
        svc->routes[i].src = &svc->srcs[cfg->routes[i].source];
        svc->routes[i].src->serial = cfg->routes[i].ordering == TL_ORDER_PARTITION;
        svc->routes[i].shared = &svc->routes[i];
        tl__rate_init(&svc->routes[i].rate, &cfg->routes[i]);
        rc = tl__breaker_init(&svc->routes[i].breaker, &cfg->routes[i]);
        if (rc)
            snprintf(err, errlen, "out of memory");
    }
    /* Handlers are set up before the loop exists, so that its workers find them ready. */
    if (!rc)
        rc = tl__handlers_init(svc, err, errlen);
    bool handlers_live = rc == 0;
    /* Worker processes come from a copy of the service made now, before any thread of
     * the runtime exists (isolate.c), and after every route's shared result rings
     * were mapped (ring.c), so that they have them all. */
    bool isolated = false;
    for (size_t i = 0; !rc && i < cfg->nroutes; i++) {
        if (cfg->routes[i].isolation != TL_ISOLATE_PROCESS)
            continue;
        isolated = true;
        if ((rc = tl__procs_init(svc, &svc->routes[i])) != 0)
            snprintf(err, errlen, "%s",
                     rc == TL_ENOMEM ? "out of memory"
                                     : "no descriptor left for the worker processes' wake-ups");
    }
    if (!rc && isolated)
        rc = tl__zygote_start(svc, tl__child_main, err, errlen);
    bool procs_ok = rc == 0;
    if (!rc)
        rc = tl__loop_state_new(svc);
    if (!rc && isolated)
        tl_loop_set_poller(svc->loop, tl__procs_poll, svc, svc->results_fd);
    if (rc) {
        if (procs_ok)
            snprintf(err, errlen, "cannot create the loop: %s", tl_strerror(rc));
        tl__zygote_stop(svc);
        tl__procs_free(svc);
        if (handlers_live)
            tl__handlers_fini(svc);
        tl__log_close(svc);
        free(svc->routes);
        for (size_t i = 0; svc->srcs && i < svc->nsrcs; i++)
            pthread_mutex_destroy(&svc->srcs[i].share_mu);
        free(svc->srcs);
        pthread_cond_destroy(&svc->intake_cv);
        pthread_mutex_destroy(&svc->mu);
        free(svc);
        return rc;
    }
    /* The admin socket first: a taken port fails the build before any broker is
     * contacted, and the port is known from here on. */
    rc = tl__admin_bind(svc, err, errlen);
    if (rc == 0)
        rc = open_sources(svc, err, errlen);
    if (rc == 0)
        rc = tl__txn_open(svc, err, errlen); /* before the targets: some write in them */
    if (rc == 0)
        rc = tl__targets_open(svc, err, errlen);
    if (rc == 0)
        rc = tl__shards_new(svc, err, errlen);
    if (rc) {
        tl_service_free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

int tl_service_load(const char *path, tl_registry *reg, const tl_service_opts *opts,
                    tl_report_fn report, void *user, tl_service **out, char *err, size_t errlen)
{
    *out = NULL;
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    int rc = tl_config_load_file(path, reg, NULL, &cfg, &diag);
    for (size_t i = 0; report && i < diag.count; i++)
        report(user, diag.msgs[i]);
    tl_diag_free(&diag);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, tl_strerror(rc));
        return rc;
    }
    rc = tl_service_new(cfg, reg, opts, out, err, errlen);
    if (rc != 0) {
        tl_config_free(cfg);
        return rc;
    }
    (*out)->owned_cfg = cfg;
    return 0;
}

const char *tl_service_name(const tl_service *svc)
{
    return svc->cfg->service;
}

/* A shard's loop thread (not the root's): housekeeping, and its routes' inline
 * handlers' thread hooks, as tl_service_run does for the root. */
static void *shard_main(void *arg)
{
    tl_service *sh = arg;
    pthread_setname_np(pthread_self(), "tl-shard"); /* for top -H, perf, gdb */
    tl_timer_start(&sh->housekeeping, HOUSEKEEPING_MS, housekeeping, sh);
    tl__handlers_loop_thread(sh, true);
    tl_loop_run(sh->loop);
    tl__handlers_loop_thread(sh, false);
    return NULL;
}

/* Starts the other shards' loop threads, before the sources: the loops take what
 * comes from the first message. One that cannot start stops the service. */
static void shards_start(tl_service *svc)
{
    for (size_t k = 1; k < svc->nshards; k++) {
        tl_service *sh = svc->shards[k];
        sh->thread_started = pthread_create(&sh->thread, NULL, shard_main, sh) == 0;
        if (!sh->thread_started) {
            atomic_store(&sh->shard_drained, true); /* nothing to drain: no loop ran */
            tl_kv e[] = {{"error", "cannot start a shard's loop thread"}};
            tl__log(svc, TL_LEVEL_ERROR, "shard_failed", e, 1);
            tl__service_fail(svc, TL_ESYS);
        }
    }
}

/* Stops the other shards' loops (the drain did, unless the run ended early) and joins
 * their threads. */
static void shards_join(tl_service *svc)
{
    for (size_t k = 1; k < svc->nshards; k++) {
        tl_service *sh = svc->shards[k];
        tl_loop_stop(sh->loop);
        if (sh->thread_started)
            pthread_join(sh->thread, NULL);
        sh->thread_started = false;
    }
}

int tl_service_run(tl_service *svc)
{
    /* The admin endpoint first: one that cannot serve fails the run before any message
     * is read. */
    int rc = tl__admin_open(svc);
    if (rc != 0)
        return rc;
    shards_start(svc);
    for (size_t i = 0; i < svc->nsrcs; i++) {
        rc = svc->srcs[i].ops->start(svc->srcs[i].handle);
        if (rc != 0) {
            tl_kv f[] = {{"source", svc->srcs[i].cfg->name}, {"error", tl_strerror(rc)}};
            tl__log(svc, TL_LEVEL_ERROR, "source_start_failed", f, 2);
            for (size_t j = 0; j < i; j++)
                svc->srcs[j].ops->stop(svc->srcs[j].handle);
            shards_join(svc);
            tl__admin_close(svc);
            return rc;
        }
    }
    char shards[16];
    snprintf(shards, sizeof(shards), "%zu", svc->nshards);
    tl_kv f[] = {{"service", svc->cfg->service}, {"shards", shards}};
    tl__log(svc, TL_LEVEL_INFO, "started", f, svc->nshards > 1 ? 2 : 1);
    tl_timer_start(&svc->housekeeping, HOUSEKEEPING_MS, housekeeping, svc);
    tl__handlers_loop_thread(svc, true);
    rc = tl_loop_run(svc->loop);
    tl__handlers_loop_thread(svc, false);
    shards_join(svc);
    tl__admin_close(svc);
    tl__log(svc, TL_LEVEL_INFO, "stopped", f, 1);
    return rc ? rc : svc->fatal_err;
}

tl_loop *tl_service_loop(tl_service *svc)
{
    return svc->loop;
}

void tl_service_free(tl_service *svc)
{
    if (!svc)
        return;
    atomic_store(&svc->stopping, true);
    svc->closing = true;
    tl__admin_close(svc);
    tl__targets_close(svc, 1000);
    for (size_t k = 0; k < svc->nshards; k++)
        for (size_t i = 0; i < svc->nsrcs; i++)
            tl__txn_close(&tl__shard_at(svc, k)->srcs[i]);
    /* A handler in a worker process that still runs is killed rather than waited for
     * (the drain is over; its message was not settled and comes again). */
    tl__procs_stop(svc);
    /* The other shards first (their loops stopped): their records give their messages
     * back to the sources, which close below. */
    tl__shards_free(svc);
    /* Joins the workers (no handler reads a message after this), finalizes every task,
     * then the records still alive give their messages back. */
    tl_loop_free(svc->loop);
    tl__procs_free(svc); /* idle worker processes read the end of their socket and exit */
    tl__zygote_stop(svc);
    tl__handlers_fini(svc);
    tl__records_free_all(svc);
    tl_recycler_free(svc->rec_blocks);
    tl__intake_release_held(svc);
    for (size_t i = 0; i < svc->nsrcs; i++)
        if (svc->srcs[i].handle)
            svc->srcs[i].ops->close(svc->srcs[i].handle);
    tl__partitions_free(svc);
    tl__targets_free(svc);
    tl__lanes_free(svc);
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++)
        tl__breaker_free(&svc->routes[i].breaker);
    free(svc->routes);
    for (size_t i = 0; svc->srcs && i < svc->nsrcs; i++)
        pthread_mutex_destroy(&svc->srcs[i].share_mu);
    free(svc->srcs);
    pthread_cond_destroy(&svc->intake_cv);
    pthread_mutex_destroy(&svc->mu);
    tl__log_close(svc);
    tl_config_free(svc->owned_cfg);
    free(svc);
}
