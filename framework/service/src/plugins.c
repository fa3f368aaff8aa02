/*
 * Plugins named by a config: opened with dlopen when the plugins section is checked,
 * so that what they register is known to the rest of the file, and closed with the
 * config.
 *
 * In the loader's chain: called by schema.c (opening) and config.c (closing); calls
 * only loader.c.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "config_int.h"

typedef int (*plugin_register_fn)(tl_registry *reg);

/* The path to dlopen: relative paths with a '/' start at the config file's directory. */
static char *plugin_path(tl_config_loader *ld, const char *path)
{
    if (!ld->base_dir || path[0] == '/' || !strchr(path, '/'))
        return tl_config_strdup(ld, path);
    size_t n = strlen(ld->base_dir) + strlen(path) + 2;
    char *full = tl_config_alloc(ld, n);
    if (full)
        snprintf(full, n, "%s/%s", ld->base_dir, path);
    return full;
}

void tl_config_open_plugin(tl_config_loader *ld, tl_config_pos p, const char *path,
                           tl_config_plugin *pl)
{
    char *file = plugin_path(ld, pl->path);
    if (!file)
        return;
    pl->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!pl->handle) {
        const char *err = dlerror();
        tl_config_report(ld, p, path, "cannot load plugin \"%s\": %s", pl->path,
                         err ? err : "unknown");
        return;
    }
    plugin_register_fn fn;
    /* POSIX guarantees a function address survives the round trip through void *. */
    *(void **)&fn = dlsym(pl->handle, "taskloop_plugin_register");
    if (!fn) {
        tl_config_report(ld, p, path, "plugin \"%s\" does not export taskloop_plugin_register",
                         pl->path);
        return;
    }
    int rc = fn(ld->reg);
    if (rc < 0)
        tl_config_report(ld, p, path, "plugin \"%s\": taskloop_plugin_register failed: %s",
                         pl->path, tl_strerror(rc));
}

void tl_config_close_plugins(tl_config *cfg)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (cfg->plugins[i].handle)
            dlclose(cfg->plugins[i].handle);
}
