/*
 * The plugin that test_config_errors loads (built as a module; its path is
 * TL_TEST_PLUGIN): it registers handler "from_plugin", and finds tl_register_handler
 * in the test program, which exports its symbols.
 */
#include <taskloop/adapter.h>

static int from_plugin(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

TL_PLUGIN_DECLARE_ABI;

int taskloop_plugin_register(tl_registry *reg)
{
    return tl_register_handler(reg, "from_plugin", from_plugin, NULL);
}
