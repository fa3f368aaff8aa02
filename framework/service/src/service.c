/*
 * The service: sources and sinks around the loop, commits, backpressure, rebalance
 * and shutdown drains. Dispatching lives in dispatch.c, rerouting in reroute.c.
 *
 * Thread rules: see service_int.h. Sources call the tl_source_events below from their
 * own threads; each posts to the loop with tl_loop_call_threadsafe, deliver() waits
 * until the loop took its batch in, and revoked() waits on a condition variable until
 * the loop finished draining those partitions.
 */
#include "admin.h"
#include "service_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOUSEKEEPING_MS 50

void tl__log(tl_service *svc, tl_level level, const char *event, const tl_kv *fields, size_t n)
{
    if (svc->opts.log)
        svc->opts.log(svc->opts.log_user, level, event, fields, n);
}

/* ---------------------------------------------------------------- commits */

static void commit_part(tl_service *svc, tl_partition_state *p)
{
    p->dirty = false;
    int64_t next = p->offsets.next;
    if (next < 0 || next <= p->committed || !p->assigned)
        return;
    int rc = p->src->ops->commit(p->src->handle, p->topic, p->partition, next);
    if (rc != 0) {
        char part[16];
        snprintf(part, sizeof(part), "%d", (int)p->partition);
        tl_kv f[] = {{"topic", p->topic}, {"partition", part}, {"error", tl_strerror(rc)}};
        tl__log(svc, TL_LEVEL_WARN, "commit_failed", f, 3);
        p->dirty = true; /* try again at the next round */
        return;
    }
    /* tl_service_partitions reads it from other threads (the admin endpoint). */
    pthread_mutex_lock(&svc->mu);
    p->committed = next;
    pthread_mutex_unlock(&svc->mu);
}

void tl__commit_dirty(tl_service *svc)
{
    for (size_t i = 0; i < svc->nparts; i++)
        if (svc->parts[i]->dirty)
            commit_part(svc, svc->parts[i]);
}

/* ---------------------------------------------------------------- backpressure */

/*
 * Backpressure holds batches instead of pausing partitions. Past max_in_flight
 * uncommitted messages the loop keeps delivered batches aside, unprocessed; a
 * source may have at most TL_BATCHES_OUT batches not yet taken in, so its thread
 * then waits in deliver and fetches nothing more. Kafka's own prefetch stays bounded
 * by queued.max.messages.kbytes, ZeroMQ's by the socket's high-water mark; and
 * nothing fetched is thrown away and fetched again, as pausing a librdkafka
 * partition does with its prefetched messages.
 *
 * A source whose thread must keep calling its library (a Kafka consumer that does
 * not poll within max.poll.interval.ms is dropped from its group) says how long it
 * may wait (ops->hold_limit_ms). A deliver that waits longer asks the loop to pause
 * the source, then returns; the source goes on polling, delivers at most what it had
 * fetched before the pause (held with the rest; the Kafka source keeps it back itself),
 * and is resumed once no batch is held any more.
 */
struct tl_batch {
    tl_batch *next;
    tl_source_state *src;
    size_t first; /* messages before it are taken in already */
    size_t n;
    tl_msg *msgs[];
};

/* A batch is in: its source may send another. */
static void batch_taken(tl_source_state *src)
{
    tl_service *svc = src->svc;
    pthread_mutex_lock(&svc->mu);
    src->batches_out--;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Room left below max_in_flight. Counted up to the commit position, not just
 * unsettled: finished messages above an unsettled one are delivered again after a
 * crash, so they count too. */
static size_t room(const tl_service *svc)
{
    uint64_t n = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    return n >= svc->cfg->max_in_flight ? 0 : svc->cfg->max_in_flight - (size_t)n;
}

static bool over_bound(const tl_service *svc)
{
    return room(svc) == 0;
}

/* Takes in as much of the batch as fits below the bound (a part keeps a batch of 1000
 * from overshooting a bound of 10 by 990); true when it is all in and freed. */
static bool batch_intake(tl_service *svc, tl_batch *b)
{
    size_t k = b->n - b->first;
    if (!atomic_load(&svc->stopping) && k > room(svc))
        k = room(svc);
    tl__dispatch_batch(svc, b->src, b->msgs + b->first, k);
    b->first += k;
    if (b->first < b->n)
        return false;
    batch_taken(b->src);
    free(b);
    return true;
}

void tl__backpressure(tl_service *svc)
{
    if (!svc->held_head || svc->in_backpressure || atomic_load(&svc->stopping))
        return;
    /* Hysteresis: take batches again at half the bound, so a full pipeline does not
     * flap between holding and taking. */
    uint64_t n = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    if (n > svc->cfg->max_in_flight / 2)
        return;
    svc->in_backpressure = true;
    while (svc->held_head && !over_bound(svc)) {
        tl_batch *b = svc->held_head;
        tl_batch *next = b->next;
        if (!batch_intake(svc, b))
            break; /* the rest of it waits at the head */
        svc->held_head = next;
        if (!svc->held_head)
            svc->held_tail = NULL;
    }
    svc->in_backpressure = false;
}

/* Loop thread: a deliver waited past its source's hold limit. Pauses the source while
 * batches are still held; either way the waiting deliver is let go or may ask again. */
static void hold_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_source_state *src = arg;
    tl_service *svc = src->svc;
    bool pause = svc->held_head && !atomic_load(&svc->stopping);
    if (pause)
        src->ops->pause(src->handle, true);
    pthread_mutex_lock(&svc->mu);
    src->hold_paused = pause;
    src->hold_asked = pause;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
    if (!pause)
        return;
    TL_STAT_ADD(svc, source_pauses, 1);
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)src->hold_limit_ms);
    tl_kv f[] = {{"source", src->cfg->name}, {"hold_limit_ms", ms}};
    tl__log(svc, TL_LEVEL_WARN, "source_paused", f, 2);
}

/* Loop thread: resumes sources paused by hold_on_loop once nothing is held. */
static void hold_resume(tl_service *svc)
{
    if (svc->held_head || atomic_load(&svc->stopping))
        return;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        if (!src->hold_paused)
            continue;
        src->ops->pause(src->handle, false);
        pthread_mutex_lock(&svc->mu);
        src->hold_paused = false;
        src->hold_asked = false;
        pthread_mutex_unlock(&svc->mu);
        tl_kv f[] = {{"source", src->cfg->name}};
        tl__log(svc, TL_LEVEL_INFO, "source_resumed", f, 1);
    }
}

/* Source thread, with svc->mu held, while its deliver waits: past the source's hold
 * limit asks the loop, once, to pause the source (see hold_on_loop). */
static void hold_check(tl_source_state *src, int64_t *since_ms)
{
    int64_t now = tl_clock_ns() / 1000000;
    if (*since_ms < 0)
        *since_ms = now;
    if (src->hold_asked || now - *since_ms < src->hold_limit_ms)
        return;
    src->hold_asked = true;
    if (tl_loop_call_threadsafe(src->svc->loop, hold_on_loop, src) != 0)
        src->hold_asked = false;
}

/* Gives held batches back unprocessed (a drain or teardown): they are not committed,
 * so a broker delivers them again. */
static void release_held(tl_service *svc)
{
    while (svc->held_head) {
        tl_batch *b = svc->held_head;
        svc->held_head = b->next;
        for (size_t i = b->first; i < b->n; i++)
            b->src->ops->release(b->src->handle, b->msgs[i]);
        batch_taken(b->src);
        free(b);
    }
    svc->held_tail = NULL;
}

/* ---------------------------------------------------------------- revocation */

struct tl_revoke_req {
    tl_revoke_req *next;
    tl_source_state *src;
    tl_partition *parts;
    size_t n;
    int64_t deadline_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static tl_partition_state *find_part(tl_service *svc, tl_source_state *src, const char *topic,
                                     int32_t partition)
{
    for (size_t i = 0; i < svc->nparts; i++) {
        tl_partition_state *p = svc->parts[i];
        if (p->src == src && p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    }
    return NULL;
}

/* True once every partition of the request has nothing in flight. */
static bool revoke_drained(tl_service *svc, tl_revoke_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p = find_part(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (p && p->in_flight > 0)
            return false;
    }
    return true;
}

/* Commits what is settled, forgets the partitions and lets the source go on. */
static void revoke_finish(tl_service *svc, tl_revoke_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p = find_part(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (!p)
            continue;
        commit_part(svc, p);
        /* What was committed may still be lost (a coordinator that went away): when
         * the partition comes back, its offsets are committed again as they settle. */
        pthread_mutex_lock(&svc->mu);
        p->committed = -1;
        pthread_mutex_unlock(&svc->mu);
        p->assigned = false;
        p->revoking = false;
        p->gen++;
        p->in_flight = 0;
        TL_STAT_ADD(svc, uncommitted, -(p->offsets.tail - p->offsets.head));
        tl_offsets_reset(&p->offsets);
    }
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void check_revokes(tl_service *svc)
{
    tl_revoke_req **pp = &svc->revokes;
    int64_t now = tl_loop_now(svc->loop);
    while (*pp) {
        tl_revoke_req *r = *pp;
        if (revoke_drained(svc, r) || now >= r->deadline_ms) {
            *pp = r->next;
            revoke_finish(svc, r);
            /* The revoked partitions' uncommitted messages no longer count: batches
             * held past the bound may go in now. */
            tl__backpressure(svc);
        } else {
            pp = &r->next;
        }
    }
}

/* Gives back held messages of the request's partitions: their next owner fetches them
 * from the committed position, so taking them in here would only duplicate them. */
static void release_held_of(tl_service *svc, const tl_revoke_req *r)
{
    for (tl_batch *b = svc->held_head; b; b = b->next) {
        if (b->src != r->src)
            continue;
        size_t keep = b->first;
        for (size_t i = b->first; i < b->n; i++) {
            const tl_msg *m = b->msgs[i];
            bool revoked = false;
            for (size_t k = 0; k < r->n && !revoked; k++)
                revoked = m->partition == r->parts[k].partition && m->origin &&
                          strcmp(m->origin, r->parts[k].topic) == 0;
            if (revoked)
                b->src->ops->release(b->src->handle, b->msgs[i]);
            else
                b->msgs[keep++] = b->msgs[i];
        }
        b->n = keep;
    }
}

static void revoke_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_revoke_req *r = arg;
    tl_service *svc = r->src->svc;
    for (size_t i = 0; i < r->n; i++) {
        tl_partition_state *p = find_part(svc, r->src, r->parts[i].topic, r->parts[i].partition);
        if (p) {
            p->revoking = true;
            tl__dispatch_drop_queued(svc, p);
        }
    }
    release_held_of(svc, r);
    char n[16];
    snprintf(n, sizeof(n), "%zu", r->n);
    tl_kv f[] = {{"source", r->src->cfg->name}, {"partitions", n}};
    tl__log(svc, TL_LEVEL_INFO, "revoking", f, 2);
    r->deadline_ms = tl_loop_now(svc->loop) + svc->cfg->drain_timeout_ms;
    r->next = svc->revokes;
    svc->revokes = r;
    check_revokes(svc);
}

/* Source thread: blocks until the loop drained and committed the partitions. */
static void ev_revoked(void *rt, tl_source *s, const tl_partition *parts, size_t n)
{
    (void)s;
    tl_source_state *src = rt;
    tl_service *svc = src->svc;
    /* During shutdown the loop already drained and committed, and may be waiting in
     * ops->stop for this very thread: answering at once avoids the deadlock. */
    if (atomic_load(&svc->stopping))
        return;
    tl_revoke_req r = {.src = src, .n = n};
    r.parts = malloc((n ? n : 1) * sizeof(*r.parts));
    if (!r.parts)
        return;
    memcpy(r.parts, parts, n * sizeof(*parts));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    if (tl_loop_call_threadsafe(svc->loop, revoke_on_loop, &r) == 0) {
        pthread_mutex_lock(&r.mu);
        while (!r.done)
            pthread_cond_wait(&r.cv, &r.mu);
        pthread_mutex_unlock(&r.mu);
    }
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    free(r.parts);
}

/* ---------------------------------------------------------------- source events */

static void batch_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_batch *b = arg;
    tl_service *svc = b->src->svc;
    if (!svc->held_head && batch_intake(svc, b))
        return;
    /* Past the bound (or behind batches already held): kept aside, in order. */
    if (!svc->held_head)
        TL_STAT_ADD(svc, paused, 1);
    b->next = NULL;
    if (svc->held_tail)
        svc->held_tail->next = b;
    else
        svc->held_head = b;
    svc->held_tail = b;
}

/*
 * Source thread. Waits while TL_BATCHES_OUT batches of this source are not taken in
 * yet: fetching overlaps with intake, and backpressure (batches held by the loop)
 * stops the source. During shutdown it does not wait, since the loop may be joining
 * this very thread in ops->stop.
 */
static void ev_deliver(void *rt, tl_source *s, tl_msg **msgs, size_t n)
{
    tl_source_state *src = rt;
    tl_service *svc = src->svc;
    tl_batch *b = malloc(sizeof(*b) + n * sizeof(tl_msg *));
    if (b) {
        b->src = src;
        b->first = 0;
        b->n = n;
        memcpy(b->msgs, msgs, n * sizeof(tl_msg *));
    }
    pthread_mutex_lock(&svc->mu);
    int64_t since_ms = -1;
    /* Paused for a long hold, batches no longer wait: the thread must keep calling its
     * library, and a paused source delivers only what it had fetched already. */
    while (src->batches_out >= TL_BATCHES_OUT && !src->hold_paused &&
           !atomic_load(&svc->stopping)) {
        if (src->hold_limit_ms > 0)
            hold_check(src, &since_ms);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 50 * 1000000L; /* stopping is set without a signal */
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&svc->intake_cv, &svc->mu, &dl);
    }
    src->batches_out++;
    pthread_mutex_unlock(&svc->mu);
    if (!b || tl_loop_call_threadsafe(svc->loop, batch_on_loop, b) != 0) {
        /* Given back unprocessed and uncommitted: a broker delivers them again. */
        for (size_t i = 0; i < n; i++)
            src->ops->release(s, msgs[i]);
        free(b);
        batch_taken(src);
    }
}

static void ev_assigned(void *rt, tl_source *s, const tl_partition *parts, size_t n)
{
    (void)rt;
    (void)s;
    (void)parts;
    (void)n;
    /* Trackers are made on the first message of each partition. */
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
        tl_service_stop(svc);
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

/* The drain is over (all settled, or the deadline): commit, stop sources, end. */
static void drain_finish(tl_service *svc)
{
    svc->drained = true;
    tl__commit_dirty(svc);
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
    tl_loop_stop(svc->loop);
}

static void housekeeping(tl_timer *timer, void *arg)
{
    tl_service *svc = arg;
    atomic_store_explicit(&svc->heartbeat_ms, tl_loop_now(svc->loop), memory_order_relaxed);
    tl__commit_dirty(svc);
    check_revokes(svc);
    tl__check_stuck(svc);
    tl__backpressure(svc); /* whatever freed room, held batches never wait forever */
    hold_resume(svc);
    if (atomic_load(&svc->stop_req) && !atomic_load(&svc->stopping)) {
        atomic_store(&svc->stopping, true);
        for (size_t i = 0; i < svc->nsrcs; i++)
            if (svc->srcs[i].handle)
                svc->srcs[i].ops->pause(svc->srcs[i].handle, true);
        release_held(svc);
        svc->drain_deadline_ms = tl_loop_now(svc->loop) + svc->cfg->drain_timeout_ms;
        tl__log(svc, TL_LEVEL_INFO, "draining", NULL, 0);
    }
    if (atomic_load(&svc->stopping) && !svc->drained &&
        (atomic_load(&svc->st.in_flight) == 0 ||
         tl_loop_now(svc->loop) >= svc->drain_deadline_ms)) {
        drain_finish(svc);
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
                                     .error = ev_error};
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
    tl_service *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    svc->cfg = cfg;
    svc->reg = reg;
    if (opts)
        svc->opts = *opts;
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->intake_cv, NULL);
    atomic_init(&svc->st.healthy, true);
    tl_loop_opts lo = {.workers = cfg->workers};
    int rc = tl_recycler_new(sizeof(tl_rec), &svc->rec_blocks);
    if (!rc)
        rc = tl_loop_new(&lo, &svc->loop);
    if (rc) {
        snprintf(err, errlen, "cannot create the loop: %s", tl_strerror(rc));
        tl_recycler_free(svc->rec_blocks);
        pthread_cond_destroy(&svc->intake_cv);
        pthread_mutex_destroy(&svc->mu);
        free(svc);
        return rc;
    }
    tl_timer_init(svc->loop, &svc->housekeeping);
    svc->nsrcs = cfg->nsources;
    svc->srcs = calloc(cfg->nsources ? cfg->nsources : 1, sizeof(*svc->srcs));
    svc->nroutes = cfg->nroutes;
    svc->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*svc->routes));
    if (!svc->srcs || !svc->routes) {
        snprintf(err, errlen, "out of memory");
        tl_service_free(svc);
        return TL_ENOMEM;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        svc->routes[i].cfg = &cfg->routes[i];
        svc->routes[i].src = &svc->srcs[cfg->routes[i].source];
        tl_timer_init(svc->loop, &svc->routes[i].watch_timer);
    }
    rc = open_sources(svc, err, errlen);
    if (rc == 0)
        rc = tl__targets_open(svc, err, errlen);
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

int tl_service_run(tl_service *svc)
{
    /* The admin port first: a taken port fails the run before any message is read. */
    int rc = tl__admin_open(svc);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        rc = svc->srcs[i].ops->start(svc->srcs[i].handle);
        if (rc != 0) {
            tl_kv f[] = {{"source", svc->srcs[i].cfg->name}, {"error", tl_strerror(rc)}};
            tl__log(svc, TL_LEVEL_ERROR, "source_start_failed", f, 2);
            for (size_t j = 0; j < i; j++)
                svc->srcs[j].ops->stop(svc->srcs[j].handle);
            tl__admin_close(svc);
            return rc;
        }
    }
    tl_kv f[] = {{"service", svc->cfg->service}};
    tl__log(svc, TL_LEVEL_INFO, "started", f, 1);
    tl_timer_start(&svc->housekeeping, HOUSEKEEPING_MS, housekeeping, svc);
    rc = tl_loop_run(svc->loop);
    tl__admin_close(svc);
    tl__log(svc, TL_LEVEL_INFO, "stopped", f, 1);
    return rc;
}

void tl_service_stats_get(tl_service *svc, tl_service_stats *o)
{
    tl_stats_atomic *s = &svc->st;
    o->consumed = atomic_load(&s->consumed);
    o->completed = atomic_load(&s->completed);
    o->failed = atomic_load(&s->failed);
    o->retries = atomic_load(&s->retries);
    o->stalled = atomic_load(&s->stalled);
    o->rerouted = atomic_load(&s->rerouted);
    o->dropped = atomic_load(&s->dropped);
    o->late = atomic_load(&s->late);
    o->reroute_errors = atomic_load(&s->reroute_errors);
    o->replaced_workers = atomic_load(&s->replaced_workers);
    o->in_flight = atomic_load(&s->in_flight);
    o->uncommitted = atomic_load(&s->uncommitted);
    o->paused = atomic_load(&s->paused);
    o->source_pauses = atomic_load(&s->source_pauses);
    o->healthy = atomic_load(&s->healthy);
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

size_t tl_service_partitions(tl_service *svc, tl_partition_stats *out, size_t cap)
{
    pthread_mutex_lock(&svc->mu);
    size_t n = svc->nparts;
    for (size_t i = 0; i < n && i < cap; i++) {
        tl_partition_state *p = svc->parts[i];
        out[i].source = p->src->cfg->name;
        out[i].topic = p->topic;
        out[i].partition = p->partition;
        out[i].next = p->committed;
    }
    pthread_mutex_unlock(&svc->mu);
    return n;
}

size_t tl_service_lag(tl_service *svc, tl_partition_lag *out, size_t cap)
{
    size_t total = 0;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        if (!src->handle || !src->ops->lag)
            continue;
        size_t room = total < cap ? cap - total : 0;
        size_t n = src->ops->lag(src->handle, room ? out + total : NULL, room);
        for (size_t k = 0; k < n && k < room; k++)
            out[total + k].source = src->cfg->name;
        total += n;
    }
    return total;
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
    tl__targets_close(svc, 1000);
    /* Joins the workers (no handler reads a message after this), finalizes every task,
     * then the records still alive give their messages back. */
    tl_loop_free(svc->loop);
    tl__records_free_all(svc);
    tl_recycler_free(svc->rec_blocks);
    release_held(svc);
    for (size_t i = 0; i < svc->nsrcs; i++)
        if (svc->srcs[i].handle)
            svc->srcs[i].ops->close(svc->srcs[i].handle);
    for (size_t i = 0; i < svc->nparts; i++) {
        tl_offsets_free(&svc->parts[i]->offsets);
        free(svc->parts[i]->topic);
        free(svc->parts[i]);
    }
    for (size_t i = 0; i < svc->ntargets; i++) {
        free(svc->targets[i]->name);
        free(svc->targets[i]);
    }
    tl__lanes_free(svc);
    free(svc->parts);
    free(svc->targets);
    free(svc->routes);
    free(svc->srcs);
    pthread_cond_destroy(&svc->intake_cv);
    pthread_mutex_destroy(&svc->mu);
    tl_config_free(svc->owned_cfg);
    free(svc);
}
