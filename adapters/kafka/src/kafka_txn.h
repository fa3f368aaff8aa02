/*
 * Private to the Kafka adapter: a source's transactional producer (txn.c), which the
 * sinks of an exactly-once route write through (sink.c, tl_kafka_sink_open_txn).
 *
 * Thread rules: begin, send and commit come from the loop thread (adapter.h), so `open`
 * needs no lock; delivery reports run on the producer's own poll thread.
 */
#ifndef TL_KAFKA_TXN_H
#define TL_KAFKA_TXN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "kafka_conf.h"

typedef struct tl_kafka_txn {
    rd_kafka_t *rk; /* the transactional producer */
    char *id;       /* its transactional.id */
    bool open;      /* loop thread: a transaction was begun and not yet ended */
    pthread_t thread;
    atomic_bool running;
    bool started;
} tl_kafka_txn;

/* Loop thread: begins a transaction unless one is open; 0, or an error with why. */
int tl_kafka_txn_begin(tl_kafka_txn *t, char *why, size_t whylen);

/* The delivery report callback of every producer here: acks the message's send. */
void tl_kafka_sink_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);

/* A sink writing topic address through t's producer, in its transactions; closing it
 * leaves the producer to t. */
int tl_kafka_sink_open_txn(const char *address, tl_kafka_txn *t, tl_sink **out, char *err,
                           size_t errlen);

#endif
