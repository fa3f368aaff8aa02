/*
 * What `taskloop check` asks of a Kafka section before anything runs, as open() would
 * refuse it: every librdkafka property set on a throwaway configuration (nothing
 * connects), the bootstrap list and topic names checked (names.c). Plain functions
 * with no shared state, so any thread may call them.
 */
#include <stdio.h>
#include <string.h>

#include "kafka_conf.h"

/* Sets every property of the `kafka` map on conf, reporting each one refused; the
 * plugins librdkafka would load for plugin.library.paths run no code at check time. */
static void check_properties(const tl_params *p, rd_kafka_conf_t *conf, tl_param_report_fn report,
                             void *rep)
{
    const tl_param_value *m = tl_params_get(p, "kafka");
    for (size_t i = 0; m && m->type == TL_PARAM_MAP && i < m->nmap; i++) {
        const char *key = m->map[i].key, *value = m->map[i].value;
        char why[512];
        if (strcmp(key, "plugin.library.paths") == 0)
            continue;
        if (tl_kafka_prop_set(conf, key, value, why, sizeof(why)) ||
            (strcmp(key, "bootstrap.servers") == 0 &&
             tl_kafka_brokers_check(value, why, sizeof(why))))
            report(rep, "kafka", key, why);
    }
}

/* What sources and sinks share: properties, then brokers or mock. */
static rd_kafka_conf_t *check_common(const tl_params *p, tl_param_report_fn report, void *rep)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return NULL;
    check_properties(p, conf, report, rep);
    const char *brokers = tl_params_str(p, "brokers", NULL);
    char why[512];
    if (brokers && tl_kafka_brokers_check(brokers, why, sizeof(why)))
        report(rep, "brokers", NULL, why);
    else if (!brokers && tl_params_num(p, "mock", 0) == 0 &&
             !tl_kafka_conf_user(p, "bootstrap.servers"))
        report(rep, "brokers", NULL, "required (or set mock, or kafka: bootstrap.servers)");
    return conf;
}

void tl_kafka_source_check(const tl_params *p, tl_param_report_fn report, void *rep)
{
    rd_kafka_conf_t *conf = check_common(p, report, rep);
    const char *owned = conf ? tl_kafka_owned_why(p, conf) : NULL;
    if (owned) {
        char key[64];
        size_t n = strcspn(owned, ":");
        snprintf(key, sizeof(key), "%.*s", (int)n, owned);
        report(rep, "kafka", key, owned + n + 2);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    const tl_param_value *topics = tl_params_get(p, "topics");
    char why[512];
    /* A name starting with '^' is a regular expression to librdkafka. */
    for (size_t i = 0; topics && topics->type == TL_PARAM_LIST && i < topics->nlist; i++) {
        char item[600];
        if (topics->list[i][0] == '^' || !tl_kafka_topic_check(topics->list[i], why, sizeof(why)))
            continue;
        snprintf(item, sizeof(item), "item %zu: %s", i + 1, why);
        report(rep, "topics", NULL, item);
    }
}

void tl_kafka_sink_check(const char *address, const tl_params *p, tl_param_report_fn report,
                         void *rep)
{
    char why[512];
    if (address && tl_kafka_topic_check(address, why, sizeof(why)))
        report(rep, NULL, NULL, why);
    if (!p)
        return;
    rd_kafka_conf_t *conf = check_common(p, report, rep);
    if (conf)
        rd_kafka_conf_destroy(conf);
}
