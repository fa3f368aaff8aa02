/*
 * A plugin built against a taskloop newer than the program loading it, for
 * test_config_errors (its path is TL_TEST_PLUGIN_NEWER): it calls a function no
 * taskloop defines, so opening it fails on that symbol.
 */
#include <taskloop/adapter.h>

int tl_from_a_newer_taskloop(tl_registry *reg);

TL_PLUGIN_DECLARE_ABI;

int taskloop_plugin_register(tl_registry *reg)
{
    return tl_from_a_newer_taskloop(reg);
}
