/*
 * Partition states and commits: each partition a source delivers from gets a state on
 * first sight, with the offset tracker that says up to where it may be committed.
 * Commits happen at housekeeping rounds, at a revoke and at the end of a drain.
 *
 * Thread rules: loop thread; the array of states and each state's committed are also
 * read by tl_service_partitions from any thread, so they change under svc->mu.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool part_is(const tl_partition_state *p, const tl_source_state *src, int32_t partition,
                    const char *topic)
{
    return p->src == src && p->partition == partition && strcmp(p->topic, topic) == 0;
}

tl_partition_state *tl__partition_find(tl_service *svc, tl_source_state *src, const char *topic,
                                       int32_t partition)
{
    for (size_t i = 0; i < svc->nparts; i++)
        if (part_is(svc->parts[i], src, partition, topic))
            return svc->parts[i];
    return NULL;
}

static tl_partition_state *part_new(tl_service *svc, tl_source_state *src, const char *topic,
                                    int32_t partition)
{
    tl_partition_state *p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->src = src;
    p->partition = partition;
    p->assigned = true;
    p->committed = -1;
    p->high_settled = -1;
    p->txn_next = -1;
    tl_offsets_init(&p->offsets);
    /* Under the lock: tl_service_partitions reads the array from other threads. */
    pthread_mutex_lock(&svc->mu);
    tl_partition_state **arr = realloc(svc->parts, (svc->nparts + 1) * sizeof(*arr));
    if (arr) {
        svc->parts = arr;
        svc->parts[svc->nparts++] = p;
    }
    pthread_mutex_unlock(&svc->mu);
    if (!arr) {
        free(p->topic);
        free(p);
        return NULL;
    }
    return p;
}

void tl__partitions_recount(tl_service *svc)
{
    size_t n = 0;
    for (size_t i = 0; i < svc->nparts; i++)
        n += svc->parts[i]->assigned && !svc->parts[i]->revoking;
    svc->nassigned = n;
}

/* The partition's state, made on first sight. A revoked one is assigned again by an
 * assigned event (assign true), not by a message: a message that comes after the
 * revoke and before the assigned event is stale (the intake gives it back). */
static tl_partition_state *part_get(tl_service *svc, tl_source_state *src, const char *topic,
                                    int32_t partition, bool assign)
{
    tl_partition_state *p = tl__partition_find(svc, src, topic, partition);
    if (!p) {
        if ((p = part_new(svc, src, topic, partition)))
            tl__partitions_recount(svc);
        return p;
    }
    if (!p->assigned && !p->revoking && (assign || !p->revoked)) {
        p->assigned = true;
        p->revoked = false;
        tl__partitions_recount(svc);
    }
    return p;
}

tl_partition_state *tl__partition_of(tl_service *svc, tl_source_state *src, const tl_msg *msg)
{
    const char *topic = msg->origin ? msg->origin : "";
    /* Sources deliver batches of one partition mostly: try the last one first. */
    tl_partition_state *p = svc->last_part;
    if (!p || !part_is(p, src, msg->partition, topic) || !p->assigned)
        p = part_get(svc, src, topic, msg->partition, false);
    if (p)
        svc->last_part = p;
    return p;
}

void tl__partitions_assigned(tl_service *svc, tl_source_state *src, const tl_partition *parts,
                             size_t n)
{
    for (size_t i = 0; i < n; i++)
        part_get(svc, src, parts[i].topic, parts[i].partition, true);
}

typedef struct assigned_msg {
    tl_source_state *src;
    size_t n;
    tl_partition parts[];
} assigned_msg;

static void assigned_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    assigned_msg *a = arg;
    tl__partitions_assigned(a->src->svc, a->src, a->parts, a->n);
    for (size_t i = 0; i < a->n; i++)
        free((char *)a->parts[i].topic);
    free(a);
}

void tl__partitions_assigned_on_source(tl_source_state *src, const tl_partition *parts, size_t n)
{
    /* Counted for the fair share only; a partition missed here (no memory) is counted
     * from its first message. */
    assigned_msg *a = calloc(1, sizeof(*a) + n * sizeof(tl_partition));
    if (!a)
        return;
    a->src = src;
    for (size_t i = 0; i < n; i++) {
        a->parts[i].partition = parts[i].partition;
        if ((a->parts[i].topic = strdup(parts[i].topic ? parts[i].topic : "")))
            a->n++;
        else
            break;
    }
    if (tl_loop_call_threadsafe(src->svc->loop, assigned_on_loop, a) != 0) {
        for (size_t i = 0; i < a->n; i++)
            free((char *)a->parts[i].topic);
        free(a);
    }
}

/* Remembers a position handed to ops->commit until the source acknowledges it. When
 * many wait, the newest replaces the last: its acknowledgement covers the others. */
static void point_add(tl_partition_state *p, int64_t next, int64_t now_ms)
{
    unsigned i = p->npoints < TL_COMMIT_POINTS ? p->npoints++ : p->npoints - 1;
    struct tl_commit_point *pt = &p->points[(p->point_first + i) % TL_COMMIT_POINTS];
    pt->next = next;
    pt->slot = p->offsets.head;
    pt->at_ms = now_ms;
}

void tl__partition_commit(tl_service *svc, tl_partition_state *p)
{
    p->dirty = false;
    if (p->src->txn) {
        tl__txn_commit(svc, p->src, true); /* one transaction holds every partition */
        return;
    }
    int64_t next = p->offsets.next;
    if (next < 0 || next <= p->committed || !p->assigned)
        return;
    int rc = tl__source_commit(p->src, p->topic, p->partition, next);
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
    if (tl__commit_acks(p->src))
        point_add(p, next, tl_loop_now(svc->loop));
}

uint64_t tl__partition_unacked(const tl_partition_state *p)
{
    return tl__commit_acks(p->src) ? p->offsets.tail - p->acked : 0;
}

void tl__commit_dirty(tl_service *svc)
{
    for (size_t i = 0; i < svc->nparts; i++)
        if (svc->parts[i]->dirty && !svc->parts[i]->src->txn)
            tl__partition_commit(svc, svc->parts[i]);
    /* At the end of the drain a transaction commits whatever its bounds say. */
    for (size_t i = 0; i < svc->nsrcs; i++)
        tl__txn_commit(svc, &svc->srcs[i], svc->drained);
}

void tl__partitions_free(tl_service *svc)
{
    for (size_t i = 0; i < svc->nparts; i++) {
        tl_offsets_free(&svc->parts[i]->offsets);
        free(svc->parts[i]->held);
        free(svc->parts[i]->topic);
        free(svc->parts[i]);
    }
    free(svc->parts);
    svc->parts = NULL;
    svc->nparts = 0;
}

/* The entry among out[0..n) for p, or NULL. */
static tl_partition_stats *listed(tl_partition_stats *out, size_t n, const tl_partition_state *p)
{
    for (size_t i = 0; i < n; i++)
        if (out[i].partition == p->partition && out[i].source == p->src->cfg->name &&
            strcmp(out[i].topic, p->topic) == 0)
            return &out[i];
    return NULL;
}

size_t tl_service_partitions(tl_service *svc, tl_partition_stats *out, size_t cap)
{
    size_t total = 0;
    for (size_t k = 0; k < svc->nshards; k++) {
        tl_service *sh = tl__shard_at(svc, k);
        pthread_mutex_lock(&sh->mu);
        for (size_t i = 0; i < sh->nparts; i++) {
            tl_partition_state *p = sh->parts[i];
            /* A partition that moved between shards (shard.c) has a state in each: one
             * entry, with the position committed last (a revoked state has none). */
            tl_partition_stats *seen = k > 0 && total <= cap ? listed(out, total, p) : NULL;
            if (seen) {
                if (p->committed > seen->next)
                    seen->next = p->committed;
                continue;
            }
            if (total < cap)
                out[total] =
                    (tl_partition_stats){p->src->cfg->name, p->topic, p->partition, p->committed};
            total++;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    return total;
}
