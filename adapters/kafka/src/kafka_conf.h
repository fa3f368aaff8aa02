/*
 * Private to the Kafka adapter: building a librdkafka configuration from a section,
 * and mapping librdkafka errors to taskloop codes. No thread rules: plain functions.
 */
#ifndef TL_KAFKA_CONF_H
#define TL_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <taskloop/adapter.h>

/* Sets one property, writing "KEY: librdkafka's reason" into err on failure. */
int tl_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                      size_t errlen);

/*
 * A new configuration holding the section's `kafka` map, then `brokers` (or `mock`),
 * and a silent logger unless the map asks for librdkafka's logs. Caller owns *out.
 */
int tl_kafka_conf_new(const tl_params *p, rd_kafka_conf_t **out, char *err, size_t errlen);

/* The value the section's `kafka` map gives key, or NULL. */
const char *tl_kafka_conf_user(const tl_params *p, const char *key);

/* A taskloop error code for a librdkafka one (0 stays 0). */
int tl_kafka_err(rd_kafka_resp_err_t err);

/* Writes a printf-style message into err, truncating; NULL or empty err is ignored. */
void tl_kafka_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
