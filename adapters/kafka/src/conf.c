/*
 * The Kafka adapter's shared pieces: configuration from a section's parameters and
 * error mapping, used by the source and the sink. Plain functions with no shared
 * state, so any thread may call them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <taskloop/config.h>
#include <taskloop/kafka.h>

#include "kafka_conf.h"

void tl_kafka_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int tl_kafka_prop_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *why,
                      size_t whylen)
{
    char reason[512];
    if (rd_kafka_conf_set(conf, key, value, reason, sizeof(reason)) == RD_KAFKA_CONF_OK)
        return 0;
    /* librdkafka's reason may quote the value: for a secret (the config's own rule,
     * tl_config_is_secret) say only that it was refused. */
    if (tl_config_is_secret(key))
        tl_kafka_errf(why, whylen, "invalid value (not shown: a secret)");
    else
        tl_kafka_errf(why, whylen, "%s", reason);
    return TL_ECONFIG;
}

int tl_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                      size_t errlen)
{
    char why[512];
    if (tl_kafka_prop_set(conf, key, value, why, sizeof(why)) == 0)
        return 0;
    tl_kafka_errf(err, errlen, "kafka property %s: %s", key, why);
    return TL_ECONFIG;
}

const char *tl_kafka_owned_why(const tl_params *p, rd_kafka_conf_t *conf)
{
    static const struct {
        const char *key, *must, *why;
    } own[] = {
        {"enable.auto.offset.store", "false",
         "enable.auto.offset.store: must stay false; taskloop stores the offsets of settled "
         "messages itself"},
        {"enable.auto.commit", "true",
         "enable.auto.commit: must stay true; taskloop counts a message until librdkafka's "
         "commit of it is acknowledged"},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(*own); i++) {
        char val[16] = "";
        size_t vlen = sizeof(val);
        if (tl_kafka_conf_user(p, own[i].key) &&
            rd_kafka_conf_get(conf, own[i].key, val, &vlen) == RD_KAFKA_CONF_OK &&
            strcmp(val, own[i].must) != 0)
            return own[i].why;
    }
    return NULL;
}

const char *tl_kafka_conf_user(const tl_params *p, const char *key)
{
    const tl_param_value *m = tl_params_get(p, "kafka");
    if (!m || m->type != TL_PARAM_MAP)
        return NULL;
    const char *found = NULL;
    for (size_t i = 0; i < m->nmap; i++) /* the last one wins, as librdkafka would */
        if (strcmp(m->map[i].key, key) == 0)
            found = m->map[i].value;
    return found;
}

/* librdkafka logs to stderr by default; library code must not print (STYLE). */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

static int apply_map(const tl_params *p, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    const tl_param_value *m = tl_params_get(p, "kafka");
    if (!m)
        return 0;
    if (m->type != TL_PARAM_MAP) {
        tl_kafka_errf(err, errlen, "kafka: expected a map of librdkafka properties");
        return TL_ECONFIG;
    }
    for (size_t i = 0; i < m->nmap; i++) {
        char why[512];
        if (strcmp(m->map[i].key, "bootstrap.servers") == 0 &&
            tl_kafka_brokers_check(m->map[i].value, why, sizeof(why))) {
            tl_kafka_errf(err, errlen, "kafka property bootstrap.servers: %s", why);
            return TL_ECONFIG;
        }
        int rc = tl_kafka_conf_set(conf, m->map[i].key, m->map[i].value, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* `brokers` after the map so the section's own key wins; `mock` replaces both. */
static int apply_brokers(const tl_params *p, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    const char *brokers = tl_params_str(p, "brokers", NULL);
    int64_t mock = tl_params_num(p, "mock", 0);
    if (mock > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", (long long)mock);
        return tl_kafka_conf_set(conf, "test.mock.num.brokers", n, err, errlen);
    }
    if (!brokers && !tl_kafka_conf_user(p, "bootstrap.servers")) {
        tl_kafka_errf(err, errlen, "brokers: required (or set mock)");
        return TL_ECONFIG;
    }
    char why[512];
    if (brokers && tl_kafka_brokers_check(brokers, why, sizeof(why))) {
        tl_kafka_errf(err, errlen, "brokers: %s", why);
        return TL_ECONFIG;
    }
    return brokers ? tl_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) : 0;
}

int tl_kafka_conf_new(const tl_params *p, rd_kafka_conf_t **out, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return TL_ENOMEM;
    int rc = apply_map(p, conf, err, errlen);
    if (!rc)
        rc = apply_brokers(p, conf, err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    /* Who asks for librdkafka's debug output in the config gets it on stderr. */
    if (!tl_kafka_conf_user(p, "debug") && !tl_kafka_conf_user(p, "log_level"))
        rd_kafka_conf_set_log_cb(conf, quiet_log);
    *out = conf;
    return 0;
}

int tl_kafka_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return TL_EAGAIN;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return TL_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__STATE:
        return TL_EINVAL;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return TL_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
        return TL_EOF;
    default:
        return TL_EIO;
    }
}
