/*
 * Private to the Kafka source: its struct, the message wrapper, and what source.c,
 * rebalance.c, pause.c and deliver.c call of each other (each only the ones after it
 * in that list). Which thread touches which field: the thread rules atop source.c.
 */
#ifndef TL_KAFKA_SOURCE_H
#define TL_KAFKA_SOURCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <taskloop/kafka.h>

#include "kafka_conf.h"

/* Headers a wrapper holds in itself; messages with more get an array of their own. */
#define KMSG_HEADERS 4

/* A delivered message: the tl_msg points into rkm, which this wrapper keeps alive. */
typedef struct kmsg {
    tl_msg msg; /* first, so release() can map a tl_msg back */
    rd_kafka_message_t *rkm;
    struct kmsg *next_released;
    tl_header *hdrs; /* inline, or allocated when there are more */
    tl_header inline_hdrs[KMSG_HEADERS];
} kmsg;

struct tl_source {
    rd_kafka_t *rk;
    const tl_params *params; /* its section (the config's, which outlives it) */
    /* Exactly-once: its transaction contexts (txn.c), one per loop of the service, or
     * NULL. */
    struct tl_kafka_txn **txn;
    size_t ntxn;
    tl_source_events ev;
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_queue_t *queue;    /* the consumer queue, for batch reads */
    tl_msg **batch;             /* poll thread only */
    size_t nbatch;              /* poll thread only: messages in batch not yet delivered */
    rd_kafka_message_t **taken; /* poll thread only: one batch read */
    size_t batch_max;
    int poll_ms;
    int64_t hold_limit_ms; /* see src_hold_limit */
    pthread_t thread;
    pthread_t commit_thread; /* serves the main queue: commit results, errors */
    bool started, stopped;
    atomic_bool running;
    atomic_bool closing;      /* stop() is closing the consumer: no revoked events */
    tl_recycler *wrappers;    /* kmsg blocks: the poll thread's */
    _Atomic(kmsg *) released; /* released wrappers whose message is not destroyed yet */
    pthread_mutex_t lock;
    bool paused;               /* guarded by lock */
    atomic_bool stashing;      /* paused, as the poll thread reads it */
    rd_kafka_queue_t *parking; /* where paused partitions' fetches go */
    /* Poll thread only (the loop's once it ended): messages taken while paused,
     * delivered from stash_at on. */
    rd_kafka_message_t **stash;
    size_t stash_at, stash_n, stash_cap;
};

/* txn.c */

/* The transaction ops of the Kafka source. */
extern const tl_txn_ops tl_kafka_txn_ops;

/* Loop thread, at close: aborts what is open and frees the transactional producer. */
void tl_kafka_txn_close(tl_source *s);

/* rebalance.c */

/* librdkafka's rebalance callback (opaque is the source): assigns or revokes. */
void tl_kafka_src_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *parts, void *opaque);

/* pause.c */

/* Lock held: forwards the partitions' fetch queues to `to` (see pause.c). */
void tl_kafka_src_route_locked(tl_source *s, const rd_kafka_topic_partition_list_t *parts,
                               rd_kafka_queue_t *to);

/* Lock held: parks the assigned partitions, or sends what was parked, then the
 * partitions, to the consumer queue. */
void tl_kafka_src_set_paused_locked(tl_source *s, bool paused);

/* Poll thread: takes rkm into the batch, or into the stash while paused. */
void tl_kafka_src_take_or_stash(tl_source *s, rd_kafka_message_t *rkm, size_t *n, bool paused);

/* Poll thread: moves up to batch_max stashed messages, oldest first, into the batch. */
size_t tl_kafka_src_unstash(tl_source *s);

/* Stashed messages of revoked partitions go: never delivered, so never committed. */
void tl_kafka_src_unstash_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts);

/* deliver.c */

/* Raises the error event, if the runtime listens, with a printf-style description. */
void tl_kafka_src_emit_error(tl_source *s, int err, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* librdkafka's error callback (opaque is the source): raises the error event. */
void tl_kafka_src_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* librdkafka's offset commit callback (opaque is the source): raises the committed
 * event for each partition of the commit. */
void tl_kafka_src_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *offsets, void *opaque);

/* Takes rkm; returns true when it joined the batch. */
bool tl_kafka_src_take(tl_source *s, rd_kafka_message_t *rkm, size_t *n);

/* Poll thread: hands batch[0..n) to the runtime (or releases it when none listens). */
void tl_kafka_src_deliver(tl_source *s, size_t n);

/* Poll thread, in the revoke callback: takes the messages of revoked partitions out of
 * the batch being gathered (never delivered, so never committed). */
void tl_kafka_src_unbatch_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts);

/* Any thread: gives back a delivered message; the poll thread destroys it later. */
void tl_kafka_src_release(tl_source *s, tl_msg *msg);

/* Destroys the messages of released wrappers and recycles the wrappers. The poll
 * thread only, or the loop thread once the poll thread has ended: the recycler's. */
void tl_kafka_src_destroy_released(tl_source *s);

#endif
