/*
 * What shards share: the root's sources and targets. A service with one loop calls
 * them straight through; with several shards (shard.c), each shard's loop thread may
 * call them while another does, so a commit, a partition pause and a sink's send go one
 * at a time under a lock, and a source is paused while any shard asks for it: a shard
 * lifting its own ask must not resume what another still holds back. A target writing
 * in transactions has a sink per shard (its transaction context's), used by that
 * shard's loop alone. A failure in any shard stops the service and is what its run
 * returns.
 *
 * Thread rules: any loop thread; share_mu (the root source state's) and a target's
 * send_mu are taken around the adapter's call only, the root's mu around its
 * fatal_err. Calls nothing else of the runtime.
 */
#include "runtime.h"

int tl__source_commit(tl_source_state *src, const char *topic, int32_t partition, int64_t next)
{
    if (!tl__sharded(src->svc))
        return src->ops->commit(src->handle, topic, partition, next);
    tl_source_state *real = src->real;
    pthread_mutex_lock(&real->share_mu);
    int rc = real->ops->commit(real->handle, topic, partition, next);
    pthread_mutex_unlock(&real->share_mu);
    return rc;
}

void tl__source_pause(tl_source_state *src, bool pause)
{
    if (!tl__sharded(src->svc)) {
        src->ops->pause(src->handle, pause);
        return;
    }
    tl_source_state *real = src->real;
    pthread_mutex_lock(&real->share_mu);
    bool first = pause && real->pauses++ == 0;
    bool last = !pause && real->pauses > 0 && --real->pauses == 0;
    if (first || last)
        real->ops->pause(real->handle, pause);
    pthread_mutex_unlock(&real->share_mu);
}

void tl__source_pause_partitions(tl_source_state *src, const tl_partition *parts, size_t n,
                                 bool pause)
{
    if (!tl__sharded(src->svc)) {
        src->ops->pause_partitions(src->handle, parts, n, pause);
        return;
    }
    tl_source_state *real = src->real;
    pthread_mutex_lock(&real->share_mu);
    real->ops->pause_partitions(real->handle, parts, n, pause);
    pthread_mutex_unlock(&real->share_mu);
}

int tl__target_send(tl_service *svc, tl_target *t, const tl_out_msg *msg, tl_sink_ack_cb ack,
                    void *arg)
{
    if (t->nsinks > 1) /* one per shard, each sent through by its loop alone */
        return t->ops->send(t->sinks[svc->index], msg, ack, arg);
    if (!tl__sharded(svc))
        return t->ops->send(t->sinks[0], msg, ack, arg);
    pthread_mutex_lock(&t->send_mu);
    int rc = t->ops->send(t->sinks[0], msg, ack, arg);
    pthread_mutex_unlock(&t->send_mu);
    return rc;
}

void tl__service_fail(tl_service *svc, int err)
{
    tl_service *root = svc->root; /* whose run returns it */
    pthread_mutex_lock(&root->mu);
    if (!root->fatal_err)
        root->fatal_err = err;
    pthread_mutex_unlock(&root->mu);
    atomic_store(&root->stop_req, true); /* tl_service_stop's: housekeeping drains */
}
