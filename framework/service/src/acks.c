/*
 * Acknowledged commits. A source whose commit() only records a position that reaches
 * the broker later (Kafka: stored offsets, committed by librdkafka every
 * auto.commit.interval.ms) reports each commit's outcome; the runtime keeps count of
 * the messages whose commit is not yet acknowledged (svc->unacked).
 *
 * Normally acknowledgements come every interval, and the window counts what is not
 * settled (intake.c): what a crash repeats is that plus one interval's work. When
 * they stop coming (a broker outage, a coordinator gone) for ACK_GRACE_MS while
 * settled messages wait for them, the window counts every unacknowledged message
 * instead, so intake stops: a failure that loses the commits (an outage that loses
 * the group's assignment) then repeats no more than the window and the grace, however
 * much intake keeps back, instead of all that was handled while no commit landed.
 *
 * Thread rules: tl__acks_event runs on the source's thread (any thread) and posts to
 * the loop; the rest runs on the loop thread.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Acknowledgements this late (a few commit intervals) make the window count them. */
#define ACK_GRACE_MS 250

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
        svc->unacked -= upto - p->acked;
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
        tl__commit_acks(a->src) ? tl__partition_find(svc, a->src, a->topic, a->partition) : NULL;
    if (p && a->err == 0) {
        svc->last_ack_ms = tl_loop_now(svc->loop);
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

/* When the oldest position still waiting for its acknowledgement went to a source,
 * or now when none waits. */
static int64_t oldest_waiting_ms(const tl_service *svc, int64_t now)
{
    int64_t oldest = now;
    for (size_t i = 0; i < svc->nparts; i++) {
        const tl_partition_state *p = svc->parts[i];
        if (p->npoints > 0 && p->points[p->point_first].at_ms < oldest)
            oldest = p->points[p->point_first].at_ms;
    }
    return oldest;
}

/*
 * Late means settled messages wait while either no acknowledgement came for the grace,
 * or the oldest position waiting went out longer ago than that: acknowledgements that
 * keep coming but seconds behind (a broker of the group's offsets losing a replica)
 * leave as much unprotected as none at all. Cleared here, not on each acknowledgement,
 * so that the state changes once each way and is logged once.
 */
void tl__acks_check(tl_service *svc)
{
    uint64_t unsettled = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    bool waiting = svc->unacked > unsettled; /* settled messages await acknowledgement */
    int64_t now = tl_loop_now(svc->loop);
    if (!waiting)
        svc->last_ack_ms = now;
    bool late = waiting && (now - svc->last_ack_ms >= ACK_GRACE_MS ||
                            now - oldest_waiting_ms(svc, now) >= ACK_GRACE_MS);
    if (late == svc->acks_late)
        return;
    svc->acks_late = late;
    if (!late) {
        tl__log(svc, TL_LEVEL_INFO, "commits_acknowledged_again", NULL, 0);
        tl__intake_resume(svc); /* the window counts what is unsettled again */
        return;
    }
    char n[24];
    snprintf(n, sizeof(n), "%zu", svc->unacked);
    tl_kv f[] = {{"unacknowledged", n}};
    tl__log(svc, TL_LEVEL_WARN, "commits_unacknowledged", f, 1);
}
