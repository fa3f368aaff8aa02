/*
 * The Kafka source's rebalance callback: assigned partitions are routed to the consumer
 * queue (or parked while paused) and reported; revoked ones are reported, committed
 * and unassigned.
 *
 * Thread rules: source.c's, for the whole source. librdkafka runs the callback inside
 * rd_kafka_consumer_poll on the poll thread, and inside rd_kafka_consumer_close, which
 * stop() calls on the loop thread once the poll thread has ended. Assign-then-route
 * holds `lock`, so that pause() sees either both or neither.
 */
#include <stdlib.h>
#include <string.h>

#include "kafka_source.h"

/* Events take topic/partition pairs; the topic names stay owned by list. */
static tl_partition *to_parts(const rd_kafka_topic_partition_list_t *list)
{
    tl_partition *parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    for (int i = 0; parts && i < list->cnt; i++) {
        parts[i].topic = list->elems[i].topic;
        parts[i].partition = list->elems[i].partition;
    }
    return parts;
}

static void emit_parts(tl_source *s, const rd_kafka_topic_partition_list_t *list,
                       void (*cb)(void *, tl_source *, const tl_partition *, size_t))
{
    if (!cb || list->cnt == 0)
        return;
    tl_partition *parts = to_parts(list);
    if (!parts) {
        tl_kafka_src_emit_error(s, TL_ENOMEM, true, "kafka: no memory to report a rebalance");
        return;
    }
    cb(s->ev.rt, s, parts, (size_t)list->cnt);
    free(parts);
}

static void on_assign(tl_source *s, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = 0;
    pthread_mutex_lock(&s->lock);
    if (coop)
        error = rd_kafka_incremental_assign(s->rk, parts);
    else
        err = rd_kafka_assign(s->rk, parts);
    if (!error && !err)
        tl_kafka_src_route_locked(s, parts, s->paused ? s->parking : s->queue);
    pthread_mutex_unlock(&s->lock);
    if (error || err) {
        tl_kafka_src_emit_error(s, TL_EIO, true, "kafka assign: %s",
                                error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
        rd_kafka_error_destroy(error);
        return;
    }
    emit_parts(s, parts, s->ev.assigned);
}

/*
 * The runtime drains and stores offsets inside revoked(); committing before the
 * unassign makes them durable while the partitions are still ours, so the next owner
 * starts exactly after what was settled. Lost partitions belong to someone else
 * already: committing would be refused, so only the runtime is told.
 */
static void on_revoke(tl_source *s, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    bool lost = rd_kafka_assignment_lost(s->rk);
    tl_kafka_src_unstash_revoked(s, parts);
    /* Taken from the consumer queue before this callback ran inside the same poll:
     * delivered after the revoke they would be handled here and by the next owner. */
    tl_kafka_src_unbatch_revoked(s, parts);
    /* During stop() the runtime has drained already and waits in stop() itself. A
     * lost assignment (the session timed out, a coordinator went away) is told apart:
     * nothing of it that has not started should run, since no commit of it can land. */
    if (!atomic_load(&s->closing))
        emit_parts(s, parts, lost && s->ev.lost ? s->ev.lost : s->ev.revoked);
    /* With transactions the runtime committed them in one, inside revoked() (txn.c). */
    if (!lost && !s->txn) {
        /* NULL commits every stored offset of the assignment, these included. */
        rd_kafka_resp_err_t err = rd_kafka_commit(s->rk, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka commit on revoke: %s",
                                    rd_kafka_err2str(err));
    }
    rd_kafka_error_t *error = NULL;
    if (coop)
        error = rd_kafka_incremental_unassign(s->rk, parts);
    else
        rd_kafka_assign(s->rk, NULL);
    if (error) {
        tl_kafka_src_emit_error(s, TL_EIO, false, "kafka unassign: %s",
                                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

void tl_kafka_src_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    tl_source *s = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(s, parts, coop);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(s, parts, coop);
    } else {
        tl_kafka_src_emit_error(s, TL_EIO, false, "kafka rebalance: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}
