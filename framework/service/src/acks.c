/*
 * Acknowledged commits. For a source whose commit() only records a position that
 * reaches the broker later (Kafka: stored offsets, committed by librdkafka), a settled
 * message still counts against max_in_flight until the source reports its commit
 * acknowledged. Whatever fails, a crash or a broker outage that loses the group's
 * assignment, what was handled and not acknowledged is what the next owner repeats:
 * counting it keeps that at most the window. During an outage the window fills and
 * intake stops, instead of handling on with commits that are lost. The window must
 * then hold what settles in the source's commit interval (Kafka: 50 ms by default).
 *
 * Thread rules: tl__acks_event runs on the source's thread (any thread) and posts to
 * the loop; the rest runs on the loop thread.
 */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct ack_msg {
    tl_source_state *src;
    int32_t partition;
    int64_t next;
    int err;
    char topic[];
} ack_msg;

/* Slots up to the newest point the acknowledged position covers are committed. */
static void acked(tl_service *svc, tl_partition_state *p, int64_t next)
{
    uint64_t upto = p->acked;
    while (p->npoints > 0) {
        const struct tl_commit_point *pt = &p->points[p->point_first];
        if (pt->next > next)
            break;
        if (pt->slot > upto)
            upto = pt->slot;
        p->point_first = (p->point_first + 1) % TL_COMMIT_POINTS;
        p->npoints--;
    }
    if (upto > p->acked) {
        TL_STAT_ADD(svc, uncommitted, -(upto - p->acked));
        p->acked = upto;
        svc->hooks.room_freed(svc, p);
    }
}

static void ack_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    ack_msg *a = arg;
    tl_service *svc = a->src->svc;
    tl_partition_state *p =
        a->src->ops->commit_acks ? tl__partition_find(svc, a->src, a->topic, a->partition) : NULL;
    if (p && a->err == 0) {
        acked(svc, p, a->next);
    } else if (p && p->assigned) {
        /* Refused: it stays counted, and the position goes to the source again at the
         * next round, since the broker may have lost what was recorded. */
        pthread_mutex_lock(&svc->mu);
        p->committed = -1;
        pthread_mutex_unlock(&svc->mu);
        p->dirty = true;
    }
    free(a);
}

void tl__acks_event(tl_source_state *src, const char *topic, int32_t partition, int64_t next_offset,
                    int err)
{
    size_t len = strlen(topic ? topic : "");
    ack_msg *a = malloc(sizeof(*a) + len + 1);
    if (!a)
        return; /* a later acknowledgement covers this one */
    a->src = src;
    a->partition = partition;
    a->next = next_offset;
    a->err = err;
    memcpy(a->topic, topic ? topic : "", len + 1);
    if (tl_loop_call_threadsafe(src->svc->loop, ack_on_loop, a) != 0)
        free(a);
}
