/*
 * Private to the Kafka adapter: building a librdkafka configuration from a section,
 * and mapping librdkafka errors to taskloop codes. No thread rules: plain functions.
 */
#ifndef TL_KAFKA_CONF_H
#define TL_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <taskloop/adapter.h>

/* The most brokers `mock` may start. */
#define TL_KAFKA_MAX_MOCK 64

/* Sets one property, writing librdkafka's reason into why on failure (for a key that
 * names a secret, only that the value was refused: the reason may quote it). */
int tl_kafka_prop_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *why,
                      size_t whylen);

/* Sets one property, writing "kafka property KEY: reason" into err on failure. */
int tl_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                      size_t errlen);

/*
 * A new configuration holding the section's `kafka` map, then `brokers` (or `mock`),
 * and a silent logger unless the map asks for librdkafka's logs. Caller owns *out.
 */
int tl_kafka_conf_new(const tl_params *p, rd_kafka_conf_t **out, char *err, size_t errlen);

/* The value the section's `kafka` map gives key, or NULL. */
const char *tl_kafka_conf_user(const tl_params *p, const char *key);

/* Why the section's `kafka` map may not set a property it set in conf ("KEY: must stay
 * ..."; enable.auto.offset.store and enable.auto.commit are the runtime's), or NULL. */
const char *tl_kafka_owned_why(const tl_params *p, rd_kafka_conf_t *conf);

/* Checks a bootstrap list "HOST:PORT[,HOST:PORT...]" (a "PROTO://" before an entry
 * and a missing port are allowed, as librdkafka takes them); TL_ECONFIG with why,
 * which never quotes the list. */
int tl_kafka_brokers_check(const char *list, char *why, size_t whylen);

/* Checks a Kafka topic name; TL_ECONFIG with why (not quoting it) otherwise. */
int tl_kafka_topic_check(const char *topic, char *why, size_t whylen);

/* tl_source_ops.check of the Kafka source: properties, brokers, topic names. */
void tl_kafka_source_check(const tl_params *p, tl_param_report_fn report, void *rep);

/* tl_sink_ops.check of the Kafka sink: the target's topic name, and a section as above. */
void tl_kafka_sink_check(const char *address, const tl_params *p, tl_param_report_fn report,
                         void *rep);

/* A taskloop error code for a librdkafka one (0 stays 0). */
int tl_kafka_err(rd_kafka_resp_err_t err);

/* Writes a printf-style message into err, truncating; NULL or empty err is ignored. */
void tl_kafka_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
