/*
 * The plugin test_cli.sh names in a config to tell whether a command ran code from it:
 * loading it creates the file $TL_PLUGIN_MARKER (its constructor runs at dlopen). It
 * registers nothing, so it needs nothing from the program that loads it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <taskloop/adapter.h>

__attribute__((constructor)) static void leave_a_mark(void)
{
    const char *path = getenv("TL_PLUGIN_MARKER");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f)
        fclose(f);
}

TL_PLUGIN_DECLARE_ABI;

int taskloop_plugin_register(tl_registry *reg)
{
    (void)reg;
    return 0;
}
