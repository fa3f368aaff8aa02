/* Registration of the ZeroMQ adapter: the "zmq" source type and the push and pub sinks. */
#include "zmq_int.h"

int tl_zmq_register(tl_registry *reg)
{
    int rc = tl_registry_add_source(reg, &tl_zmq_source_ops);
    if (rc == 0)
        rc = tl_registry_add_sink(reg, &tl_zmq_push_sink_ops);
    if (rc == 0)
        rc = tl_registry_add_sink(reg, &tl_zmq_pub_sink_ops);
    return rc;
}
