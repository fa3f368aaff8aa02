/*
 * taskloop Kafka adapter: a source on librdkafka's high-level consumer and a sink on
 * its idempotent producer. Sections name librdkafka properties verbatim under `kafka`.
 *
 * Source section (`type: kafka`):
 *   brokers      STRING   bootstrap servers; required unless `mock` is set
 *   group        STRING   consumer group id (required)
 *   topics       LIST     topics to subscribe to (required)
 *   kafka        MAP      librdkafka properties, passed through unchanged
 *   batch        INT      most messages handed over per delivery (default 1000)
 *   poll_timeout DURATION longest wait in one consumer poll (default 100ms)
 *   mock         INT      run on librdkafka's in-process mock cluster with this many
 *                         brokers (sets test.mock.num.brokers; for demos and tests)
 *
 * Sink section (scheme `kafka`, target "kafka:TOPIC"): brokers, kafka, mock as above.
 *
 * Offsets: the source forces enable.auto.offset.store=false; commit() stores the next
 * offset and librdkafka's auto commit (or the synchronous commit on revoke and stop)
 * sends it, so only what the runtime settled is ever committed.
 *
 * Each handle started with `mock` gets a private mock cluster; to share one between a
 * source and a sink, create a cluster with rd_kafka_mock_cluster_new() and give its
 * rd_kafka_mock_cluster_bootstraps() as `brokers`.
 *
 * Thread rules: as in taskloop/adapter.h. The source delivers, and calls assigned,
 * revoked and error, on its poll thread; the sink acks on its delivery-report thread.
 */
#ifndef TASKLOOP_KAFKA_H
#define TASKLOOP_KAFKA_H

#include <taskloop/adapter.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The source type "kafka"; its tl_msg.handle is the rd_kafka_message_t. */
extern const tl_source_ops tl_kafka_source_ops;

/* The sink scheme "kafka"; the address is the topic. */
extern const tl_sink_ops tl_kafka_sink_ops;

/* Adds the Kafka source and sink to reg; TL_EINVAL if either name is taken. */
int tl_kafka_register(tl_registry *reg);

#ifdef __cplusplus
}
#endif

#endif
