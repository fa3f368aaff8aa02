/* Registration of the Kafka adapter: its source type and sink scheme, both "kafka". */
#include <taskloop/kafka.h>

int tl_kafka_register(tl_registry *reg)
{
    int rc = tl_registry_add_source(reg, &tl_kafka_source_ops);
    return rc ? rc : tl_registry_add_sink(reg, &tl_kafka_sink_ops);
}
