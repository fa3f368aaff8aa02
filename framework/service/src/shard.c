/*
 * Shards: a service with `loop.shards` N above one spreads its partitions over N loops.
 * The service tl_service_new returns is the root and shard 0: it runs the sources, the
 * targets and the admin endpoint, as an unsharded service does. Shards 1 to N-1 are
 * services of their own for everything a loop thread owns (loop and workers, lanes,
 * records, partition states, held batches, the stalled list, counters) and share the
 * root's config, handlers' state, sources and targets (shared.c makes the calls they
 * make at once safe).
 *
 * A partition belongs to one shard at a time: the one with the fewest live partitions of
 * its source when it is first seen (assigned, or a message of it) or assigned again
 * after a revoke, so that rebalance churn leaves the shards even. A revoke returns only
 * once the owner drained it, so a shard never meets a partition another one still
 * drains; until the partition is assigned again its stale messages and late commit
 * acknowledgements go to the shard that had it (which gives them back or drops them, as
 * an unsharded service does). The root's source events are split by owner: a delivered batch goes
 * to each owner's intake (each deliver waits as an unsharded one does, so backpressure from any
 * shard holds the source), an assignment and a commit's acknowledgement to the owner,
 * and a revoke to every owner at once, returning when all of them drained and committed.
 *
 * Thread rules: the owners' table under its mutex (source threads and loop threads);
 * tl__shards_new and tl__shards_free on the thread that builds and frees the service;
 * the event splits on the source's thread.
 */
#include "hash.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct owner {
    size_t src; /* the source's index */
    char *topic;
    int32_t partition;
    size_t shard;
    bool live; /* not revoked since it was placed: counted in its shard's partitions */
} owner;

struct tl_owners {
    pthread_mutex_t mu;
    owner *v; /* in the order first seen */
    size_t n, cap;
    /* An open-addressing index of v: each slot 0 (empty) or an owner's index + 1; at
     * most half full, so that a batch's or a revoke's lookups stay O(1) with thousands
     * of partitions. */
    size_t *index;
    size_t index_cap; /* a power of two */
    size_t *count;    /* live partitions of each shard, per source: count[src * nshards + shard] */
};

static uint64_t owner_hash(size_t src, const char *topic, int32_t partition)
{
    uint64_t h = tl__hash_bytes(TL_HASH_SEED ^ (uint64_t)src, topic, strlen(topic));
    return tl__hash_mix(h ^ (uint64_t)(uint32_t)partition);
}

/* The index slot where the partition is, or the empty one where it would go. */
static size_t *index_slot(struct tl_owners *o, size_t src, const char *topic, int32_t partition)
{
    size_t mask = o->index_cap - 1;
    for (size_t i = owner_hash(src, topic, partition) & mask;; i = (i + 1) & mask) {
        size_t *at = &o->index[i];
        if (!*at)
            return at;
        const owner *w = &o->v[*at - 1];
        if (w->src == src && w->partition == partition && strcmp(w->topic, topic) == 0)
            return at;
    }
}

/* The partition's owner entry, or NULL. */
static owner *find(struct tl_owners *o, size_t src, const char *topic, int32_t partition)
{
    if (!o->index_cap)
        return NULL;
    size_t at = *index_slot(o, src, topic, partition);
    return at ? &o->v[at - 1] : NULL;
}

/* Room for one more owner in v and the index (kept at most half full). */
static bool make_room(struct tl_owners *o)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        owner *v = realloc(o->v, cap * sizeof(*v));
        if (!v)
            return false;
        o->v = v;
        o->cap = cap;
    }
    if (2 * (o->n + 1) <= o->index_cap)
        return true;
    size_t icap = o->index_cap ? 2 * o->index_cap : 32;
    size_t *index = calloc(icap, sizeof(*index));
    if (!index)
        return false;
    free(o->index);
    o->index = index;
    o->index_cap = icap;
    for (size_t i = 0; i < o->n; i++)
        *index_slot(o, o->v[i].src, o->v[i].topic, o->v[i].partition) = i + 1;
    return true;
}

/* The shard with the fewest live partitions of source src. */
static size_t least_loaded(tl_service *root, size_t src)
{
    size_t *count = &root->owners->count[src * root->nshards], best = 0;
    for (size_t k = 1; k < root->nshards; k++)
        if (count[k] < count[best])
            best = k;
    return best;
}

/* The shard that owns the partition: on first sight, or when a revoked one is assigned
 * again (assign), the one with the fewest live partitions of its source; 0 (the root)
 * when the table cannot grow. */
static size_t owner_of(tl_service *root, size_t src, const char *topic, int32_t partition,
                       bool assign)
{
    struct tl_owners *o = root->owners;
    size_t *count = &o->count[src * root->nshards];
    topic = topic ? topic : "";
    pthread_mutex_lock(&o->mu);
    owner *w = find(o, src, topic, partition);
    if (w) {
        if (!w->live && assign) {
            w->shard = least_loaded(root, src);
            w->live = true;
            count[w->shard]++;
        }
        size_t k = w->shard;
        pthread_mutex_unlock(&o->mu);
        return k;
    }
    size_t best = least_loaded(root, src);
    char *copy = make_room(o) ? strdup(topic) : NULL;
    if (copy) {
        o->v[o->n] = (owner){src, copy, partition, best, true};
        size_t *at = index_slot(o, src, copy, partition); /* empty: not indexed yet */
        *at = ++o->n;
        count[best]++;
    } else {
        best = 0; /* not remembered: the root, again next time */
    }
    pthread_mutex_unlock(&o->mu);
    return best;
}

/* The revoked partitions leave their shards' counts; each stays with its shard until
 * it is assigned again. */
static void owners_revoked(tl_service *root, size_t src, const tl_partition *parts, size_t n)
{
    struct tl_owners *o = root->owners;
    pthread_mutex_lock(&o->mu);
    for (size_t j = 0; j < n; j++) {
        owner *w = find(o, src, parts[j].topic ? parts[j].topic : "", parts[j].partition);
        if (w && w->live) {
            w->live = false;
            o->count[src * root->nshards + w->shard]--;
        }
    }
    pthread_mutex_unlock(&o->mu);
}

/* The root's source src's state in shard k. */
static tl_source_state *in_shard(tl_source_state *src, size_t k)
{
    return &src->svc->shards[k]->srcs[src->index];
}

void tl__shards_deliver(tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_service *root = src->svc;
    size_t ns = root->nshards;
    if (src->split_cap < ns * n) {
        tl_msg **v = realloc(src->split, ns * n * sizeof(*v));
        if (!v) {
            /* Given back unprocessed and uncommitted, as deliver does out of memory. */
            for (size_t i = 0; i < n; i++)
                src->ops->release(src->handle, msgs[i]);
            return;
        }
        src->split = v;
        src->split_cap = ns * n;
    }
    size_t counts[TL_CONFIG_MAX_SHARDS] = {0};
    const tl_msg *last = NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const tl_msg *m = msgs[i];
        if (!last || m->partition != last->partition || m->origin != last->origin)
            k = owner_of(root, src->index, m->origin, m->partition, false);
        last = m;
        src->split[k * n + counts[k]++] = msgs[i];
    }
    for (k = 0; k < ns; k++)
        if (counts[k])
            tl__intake_deliver(in_shard(src, k), src->split + k * n, counts[k]);
}

/* Splits parts by owner into by (n per shard, each shard's from by + k * n); counts[k]
 * says how many each shard got. False out of memory. */
static bool split_parts(tl_source_state *src, const tl_partition *parts, size_t n, bool assign,
                        tl_partition **by, size_t *counts)
{
    tl_service *root = src->svc;
    *by = malloc((n ? root->nshards * n : 1) * sizeof(**by));
    if (!*by)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t k = owner_of(root, src->index, parts[i].topic, parts[i].partition, assign);
        (*by)[k * n + counts[k]++] = parts[i];
    }
    return true;
}

void tl__shards_assigned(tl_source_state *src, const tl_partition *parts, size_t n)
{
    tl_partition *by;
    size_t counts[TL_CONFIG_MAX_SHARDS] = {0};
    if (!split_parts(src, parts, n, true, &by, counts))
        return; /* counted for the fair share from their first messages instead */
    for (size_t k = 0; k < src->svc->nshards; k++)
        if (counts[k])
            tl__partitions_assigned_on_source(in_shard(src, k), by + k * n, counts[k]);
    free(by);
}

void tl__shards_revoke(tl_source_state *src, const tl_partition *parts, size_t n, bool lost)
{
    tl_partition *by;
    size_t counts[TL_CONFIG_MAX_SHARDS] = {0};
    tl_revoke_req *reqs[TL_CONFIG_MAX_SHARDS] = {0};
    size_t ns = src->svc->nshards;
    if (!split_parts(src, parts, n, false, &by, counts)) {
        /* Each owner in turn, then: slower, but every one drains and commits. */
        for (size_t k = 0; k < ns; k++)
            tl__revoke(in_shard(src, k), parts, n, lost);
    } else {
        for (size_t k = 0; k < ns; k++)
            if (counts[k])
                reqs[k] = tl__revoke_post(in_shard(src, k), by + k * n, counts[k], lost);
        for (size_t k = 0; k < ns; k++)
            tl__revoke_wait(reqs[k]);
        free(by);
    }
    owners_revoked(src->svc, src->index, parts, n);
}

void tl__shards_committed(tl_source_state *src, const char *topic, int32_t partition,
                          int64_t next_offset, int err)
{
    size_t k = owner_of(src->svc, src->index, topic, partition, false);
    tl__acks_event(in_shard(src, k), topic, partition, next_offset, err);
}

/* ---------------------------------------------------------------- building */

int tl__loop_state_new(tl_service *svc)
{
    tl_loop_opts lo = {.workers = svc->cfg->workers};
    tl_worker_hooks wh = tl__handlers_worker_hooks(svc);
    int rc = tl_recycler_new(sizeof(tl_rec), &svc->rec_blocks);
    if (rc == 0 && (rc = tl_loop_new_ex(&lo, &wh, &svc->loop)) != 0) {
        tl_recycler_free(svc->rec_blocks);
        svc->rec_blocks = NULL;
    }
    if (rc)
        return rc;
    tl_timer_init(svc->loop, &svc->housekeeping);
    tl__records_init(svc);
    tl__intake_init(svc);
    for (size_t i = 0; i < svc->nroutes; i++)
        tl_timer_init(svc->loop, &svc->routes[i].watch_timer);
    return 0;
}

/* Frees a shard built by shard_new, whole or in part. */
static void shard_free(tl_service *sh)
{
    if (!sh)
        return;
    atomic_store(&sh->stopping, true);
    sh->closing = true;
    for (size_t i = 0; sh->srcs && sh->loop && i < sh->nsrcs; i++)
        tl__txn_close(&sh->srcs[i]); /* its committers post to its loop */
    /* Joins its workers and finalizes every task; its records then give their messages
     * back to the root's sources, which are still open. */
    tl_loop_free(sh->loop);
    tl__records_free_all(sh);
    tl_recycler_free(sh->rec_blocks);
    tl__intake_release_held(sh);
    tl__partitions_free(sh);
    tl__lanes_free(sh);
    free(sh->routes); /* their rate and breaker were never set up: the root's count */
    free(sh->srcs);
    pthread_cond_destroy(&sh->intake_cv);
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

/* Shard k of root: its own loop and workers, and copies of the root's source and route
 * states pointing at what the root owns (on exactly-once routes, with a committer of
 * their own for the source's transaction context k). On failure a reason may be in err. */
static int shard_new(tl_service *root, size_t k, tl_service **out, char *err, size_t errlen)
{
    const tl_config *cfg = root->cfg;
    tl_service *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return TL_ENOMEM;
    sh->cfg = cfg;
    sh->reg = root->reg;
    sh->opts = root->opts; /* the root's log function, or its own logger's */
    sh->root = root;
    sh->index = k;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->intake_cv, NULL);
    atomic_init(&sh->st.healthy, true);
    sh->nsrcs = root->nsrcs;
    sh->srcs = calloc(root->nsrcs ? root->nsrcs : 1, sizeof(*sh->srcs));
    sh->nroutes = root->nroutes;
    sh->routes = calloc(root->nroutes ? root->nroutes : 1, sizeof(*sh->routes));
    if (!sh->srcs || !sh->routes) {
        shard_free(sh);
        return TL_ENOMEM;
    }
    for (size_t i = 0; i < sh->nsrcs; i++) {
        const tl_source_state *r = &root->srcs[i];
        sh->srcs[i] = (tl_source_state){.svc = sh,
                                        .hold_limit_ms = r->hold_limit_ms,
                                        .cfg = r->cfg,
                                        .ops = r->ops,
                                        .handle = r->handle,
                                        .index = i,
                                        .serial = r->serial,
                                        .real = &root->srcs[i]};
    }
    for (size_t i = 0; i < sh->nroutes; i++) {
        const tl_route_state *r = &root->routes[i];
        tl_route_state *s = &sh->routes[i];
        s->cfg = r->cfg;
        s->src = &sh->srcs[r->cfg->source];
        s->on_stall = r->on_stall;
        s->on_error = r->on_error;
        s->retry_via = r->retry_via;
        s->outputs = r->outputs; /* the root's, freed with it */
        s->hooks = r->hooks;
        s->handler_state = r->handler_state;
        s->handler_live = r->handler_live; /* the root calls fini, once */
        s->procs = r->procs;               /* one pool of worker processes (procs.c) */
        s->shared = r->shared;             /* the root's rate and breaker */
    }
    /* loop.workers each: one partition's keys run as widely as on one loop. */
    int rc = tl__loop_state_new(sh);
    if (rc) {
        shard_free(sh);
        return rc;
    }
    char why[512] = "";
    if ((rc = tl__txn_loop_open(sh, why, sizeof(why))) != 0) {
        snprintf(err, errlen, "%s", why);
        shard_free(sh);
        return rc;
    }
    *out = sh;
    return 0;
}

int tl__shards_new(tl_service *root, char *err, size_t errlen)
{
    size_t n = root->cfg->shards > 1 ? root->cfg->shards : 1;
    if (n == 1)
        return 0;
    root->shards = calloc(n, sizeof(*root->shards));
    root->owners = calloc(1, sizeof(*root->owners));
    if (root->owners) {
        pthread_mutex_init(&root->owners->mu, NULL);
        root->owners->count = calloc(n * (root->nsrcs ? root->nsrcs : 1), sizeof(size_t));
    }
    if (!root->shards || !root->owners || !root->owners->count) {
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    for (size_t i = 0; i < root->nsrcs; i++)
        root->srcs[i].real = &root->srcs[i];
    root->shards[0] = root;
    root->nshards = 1; /* counted up as they are made: tl__shards_free frees those */
    for (size_t k = 1; k < n; k++) {
        char why[512] = "";
        int rc = shard_new(root, k, &root->shards[k], why, sizeof(why));
        if (rc) {
            snprintf(err, errlen, "cannot create shard %zu: %s", k, why[0] ? why : tl_strerror(rc));
            return rc;
        }
        root->nshards++;
    }
    return 0;
}

void tl__shards_free(tl_service *root)
{
    for (size_t k = 1; k < root->nshards; k++)
        shard_free(root->shards[k]);
    free(root->shards);
    root->shards = NULL;
    root->nshards = 1;
    if (root->owners) {
        for (size_t i = 0; i < root->owners->n; i++)
            free(root->owners->v[i].topic);
        free(root->owners->v);
        free(root->owners->index);
        free(root->owners->count);
        pthread_mutex_destroy(&root->owners->mu);
        free(root->owners);
        root->owners = NULL;
    }
    for (size_t i = 0; i < root->nsrcs; i++)
        free(root->srcs[i].split);
}
