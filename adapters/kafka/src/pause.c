/*
 * Pausing the Kafka source: its partitions' fetches parked, and what was queued
 * already stashed, until the resume.
 *
 * Thread rules: source.c's, for the whole source. Here: routing runs with `lock` held,
 * from pause() and stop() on the loop thread or from the rebalance callback; the stash
 * is the poll thread's (the loop thread's once the poll thread has ended).
 *
 * Pausing does not use rd_kafka_pause_partitions: its version barrier makes librdkafka
 * drop, as outdated, a fetch-start op of an assignment that the pause or resume
 * overtakes (librdkafka #2190), and that partition then never fetches; the consumer
 * sits idle for good. A broker restart that ends a long hold (the runtime pauses then)
 * with a lost assignment and a new one hit exactly that. Instead pause() forwards the
 * assigned partitions' fetch queues to a private parking queue: the fetcher keeps what
 * it has and stops once the parking queue holds as much as the consumer queue may
 * (queued.min.messages, queued.max.messages.kbytes), and nothing fetched is thrown
 * away. Resuming forwards the parking queue, then the partitions, back to the consumer
 * queue, in that order, so each partition stays in order. librdkafka clears a forward
 * when its partition stops and leaves one the application set alone when it starts:
 * so every assignment routes its partitions itself, to the parking queue or the
 * consumer queue. While paused the poll thread goes on polling (a member that does
 * not poll leaves its group) and stashes what the consumer queue still held, a
 * pointer each, to deliver it first on resume; stashed messages of revoked partitions
 * are dropped, uncommitted, for the next owner.
 */
#include <stdlib.h>

#include "kafka_source.h"

/* Lock held: forwards the partitions' fetch queues to `to` (see the top). */
void tl_kafka_src_route_locked(tl_source *s, const rd_kafka_topic_partition_list_t *parts,
                               rd_kafka_queue_t *to)
{
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        rd_kafka_queue_t *q = rd_kafka_queue_get_partition(s->rk, p->topic, p->partition);
        if (!q)
            continue;
        rd_kafka_queue_forward(q, to);
        rd_kafka_queue_destroy(q);
    }
}

/* Lock held: parks the assigned partitions, or sends what was parked, then the
 * partitions, to the consumer queue. */
void tl_kafka_src_set_paused_locked(tl_source *s, bool paused)
{
    if (paused == s->paused)
        return;
    s->paused = paused;
    atomic_store(&s->stashing, paused);
    /* The parking queue is empty here: a resume forwarded all it had, and since. */
    rd_kafka_queue_forward(s->parking, paused ? NULL : s->queue);
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(s->rk, &a) == 0)
        tl_kafka_src_route_locked(s, a, paused ? s->parking : s->queue);
    if (a)
        rd_kafka_topic_partition_list_destroy(a);
}

/* Poll thread, while paused: keeps rkm for after the resume. */
static void stash(tl_source *s, rd_kafka_message_t *rkm)
{
    if (s->stash_n == s->stash_cap) {
        size_t cap = s->stash_cap ? 2 * s->stash_cap : 1024;
        rd_kafka_message_t **p = realloc(s->stash, cap * sizeof(*p));
        if (!p) {
            tl_kafka_src_emit_error(
                s, TL_ENOMEM, true, "kafka %s [%d] offset %lld: no memory to keep it",
                rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, (long long)rkm->offset);
            rd_kafka_message_destroy(rkm);
            return;
        }
        s->stash = p;
        s->stash_cap = cap;
    }
    s->stash[s->stash_n++] = rkm;
}

/* Poll thread: takes rkm into the batch, or into the stash while paused. */
void tl_kafka_src_take_or_stash(tl_source *s, rd_kafka_message_t *rkm, size_t *n, bool paused)
{
    if (paused && !rkm->err)
        stash(s, rkm);
    else
        tl_kafka_src_take(s, rkm, n);
}

/* Poll thread: moves up to batch_max stashed messages, oldest first, into the batch. */
size_t tl_kafka_src_unstash(tl_source *s)
{
    size_t n = 0;
    while (s->stash_at < s->stash_n && n < s->batch_max)
        tl_kafka_src_take(s, s->stash[s->stash_at++], &n);
    if (s->stash_at == s->stash_n)
        s->stash_at = s->stash_n = 0;
    return n;
}

/* Stashed messages of revoked partitions go: never delivered, so never committed. */
void tl_kafka_src_unstash_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = s->stash_at;
    for (size_t i = s->stash_at; i < s->stash_n; i++) {
        rd_kafka_message_t *m = s->stash[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition))
            rd_kafka_message_destroy(m);
        else
            s->stash[keep++] = m;
    }
    s->stash_n = keep;
}
