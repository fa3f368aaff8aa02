/* Registration of the memory adapter: its source type and sink scheme, both "memory". */
#include "memory_int.h"

int tl_memory_register(tl_registry *reg)
{
    int rc = tl_registry_add_source(reg, &tl_memory_source_ops);
    return rc ? rc : tl_registry_add_sink(reg, &tl_memory_sink_ops);
}
