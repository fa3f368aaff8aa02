/*
 * Private to the Kafka adapter: a source's transaction context (txn.c), whose producers
 * the sinks of an exactly-once route write through (sink.c, tl_kafka_sink_open_txn).
 *
 * Thread rules: a context's begin, send and commit come from its loop thread (adapter.h),
 * so `open` needs no lock; delivery reports run on each producer's own poll thread.
 */
#ifndef TL_KAFKA_TXN_H
#define TL_KAFKA_TXN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "kafka_conf.h"

/* Producers of one context: sends go to one while the other's transaction commits. */
#define TL_KAFKA_TXN_PRODUCERS 2

typedef struct tl_kafka_txn {
    /* Context k's: transactional.id ID-(2k) and ID-(2k+1). open[i]: a transaction was begun on
     * rk[i] and not yet ended; written by the loop thread for cur, by the committer
     * for the sealed one (never the same one at once: adapter.h, tl_txn_ops.seal). */
    rd_kafka_t *rk[TL_KAFKA_TXN_PRODUCERS];
    bool open[TL_KAFKA_TXN_PRODUCERS];
    int cur;    /* loop thread: the producer sends go to */
    int sealed; /* the producer whose transaction the next commit ends, -1: cur's;
                 * set by seal, taken by that commit */
    char *id;   /* the transactional.id the two are named after */
    struct tl_kafka_txn_poller {
        struct tl_kafka_txn *t;
        int i;
        pthread_t thread;
        bool started;
    } pollers[TL_KAFKA_TXN_PRODUCERS]; /* each serves one producer's delivery reports */
    atomic_bool running;
} tl_kafka_txn;

/* Begins a transaction on producer i unless one is open there; 0, or an error with
 * why. The loop thread for cur, the committer for the sealed one. */
int tl_kafka_txn_begin(tl_kafka_txn *t, int i, char *why, size_t whylen);

/* The delivery report callback of every producer here: acks the message's send. */
void tl_kafka_sink_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);

/* A sink writing topic address through t's producers (the one sends go to), in their
 * transactions; closing it leaves the producers to t. */
int tl_kafka_sink_open_txn(const char *address, tl_kafka_txn *t, tl_sink **out, char *err,
                           size_t errlen);

#endif
