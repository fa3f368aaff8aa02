/*
 * Plugins built for another plugin ABI, for test_config_errors: with TL_TEST_NO_ABI it
 * exports no taskloop_plugin_abi (as one built before the ABI was stated), otherwise
 * one above this taskloop's. Each would register a handler; neither may get that far.
 */
#include <taskloop/adapter.h>

#ifndef TL_TEST_NO_ABI
const unsigned taskloop_plugin_abi = TL_PLUGIN_ABI + 1;
#endif

static int from_other_abi(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

int taskloop_plugin_register(tl_registry *reg)
{
    return tl_register_handler(reg, "from_other_abi", from_other_abi, NULL);
}
