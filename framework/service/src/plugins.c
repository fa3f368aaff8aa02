/*
 * Plugins named by a config: each file checked before anything of it runs, then
 * opened with dlopen when the plugins section is checked, so that what they register
 * is known to the rest of the file, and closed with the config.
 *
 * A plugin is code the config makes this process run, so the file must be one nobody
 * else can have put there: a regular file, owned by root or by the user running this,
 * that neither it nor its folder lets group or others write. A relative path starts at
 * the config file's folder (the working directory for a config given as text), never
 * in the library search path, whose folders the config's author does not choose. With
 * no_plugin_code (`taskloop check`) the checks are made and nothing is opened.
 *
 * A plugin is built without taskloop's libraries: it takes their functions from the
 * program that opens it, which must export them (the installed `taskloop` does). A
 * symbol missing at dlopen is therefore explained in those terms. It must also have
 * been built for this program's plugin ABI (TL_PLUGIN_ABI, which it exports), or its
 * ops and callbacks would be read with another layout.
 *
 * In the loader's chain: called by schema.c (opening), schema_nodes.c (names) and
 * config.c (closing); calls only loader.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"

#define WHY_LEN 512
/* How the dynamic loader says a plugin needs what the process does not define. */
#define UNDEFINED "undefined symbol: "

char *tl_config_file_path(tl_config_loader *ld, const char *path)
{
    if (!ld->base_dir || path[0] == '/')
        return tl_config_strdup(ld, path);
    size_t n = strlen(ld->base_dir) + strlen(path) + 2;
    char *full = tl_config_alloc(ld, n);
    if (full)
        snprintf(full, n, "%s/%s", ld->base_dir, path);
    return full;
}

/* Why the file or folder at path (what: "it", "its folder") cannot be trusted, or NULL. */
static const char *untrusted(const char *path, const char *what, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "%s: %s", what, strerror(errno));
        return why;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(why, whylen, "%s belongs to uid %u, neither root nor the user running this", what,
                 (unsigned)st.st_uid);
        return why;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, whylen, "%s is writable by %s (chmod go-w)", what,
                 st.st_mode & S_IWOTH ? "others" : "its group");
        return why;
    }
    return NULL;
}

/* Finds and checks the plugin's file; its canonical path, or NULL with why set. */
static char *checked_file(tl_config_loader *ld, const char *path, char *why, size_t whylen)
{
    char *named = tl_config_file_path(ld, path), real[PATH_MAX];
    if (!named)
        return NULL;
    if (!realpath(named, real)) {
        snprintf(why, whylen, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (stat(real, &st) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "it is %s, not a regular file", tl_config_file_kind(st.st_mode));
        return NULL;
    }
    if (untrusted(real, "it", why, whylen))
        return NULL;
    char *file = tl_config_strdup(ld, real);
    char *slash = file ? strrchr(real, '/') : NULL;
    if (slash)
        *(slash == real ? slash + 1 : slash) = '\0';
    if (slash && untrusted(real, "its folder", why, whylen))
        return NULL;
    return file;
}

/* dlerror() names the file as opened; the config's message names it as written. */
static const char *without_file(const char *err, const char *file)
{
    size_t n = strlen(file);
    return strncmp(err, file, n) == 0 && strncmp(err + n, ": ", 2) == 0 ? err + n + 2 : err;
}

void tl_config_open_plugin(tl_config_loader *ld, tl_config_pos p, const char *path,
                           const char *shown, tl_config_plugin *pl)
{
    char why[WHY_LEN] = "";
    pl->file = checked_file(ld, pl->path, why, sizeof(why));
    if (!pl->file) {
        if (why[0])
            tl_config_report(ld, p, path, "cannot load plugin \"%s\": %s", shown, why);
        return;
    }
    if (ld->no_plugin_code) {
        ld->nskipped++;
        return;
    }
    pl->handle = dlopen(pl->file, RTLD_NOW | RTLD_LOCAL);
    if (!pl->handle) {
        const char *err = dlerror();
        err = err ? without_file(err, pl->file) : "unknown";
        const char *sym = strstr(err, UNDEFINED);
        if (sym)
            tl_config_report(ld, p, path,
                             "cannot load plugin \"%s\": it needs the symbol %s, which this "
                             "program does not provide: was the plugin built against a newer "
                             "taskloop than this one (%s), or is the program that loads it "
                             "linked without exporting taskloop's functions (-rdynamic, "
                             "ENABLE_EXPORTS; the installed taskloop program exports them)?",
                             shown, sym + strlen(UNDEFINED), tl_version());
        else
            tl_config_report(ld, p, path, "cannot load plugin \"%s\": %s", shown, err);
        return;
    }
    int (*fn)(tl_registry * reg);
    /* POSIX guarantees a function address survives the round trip through void *. */
    *(void **)&fn = dlsym(pl->handle, "taskloop_plugin_register");
    if (!fn) {
        tl_config_report(ld, p, path, "plugin \"%s\" does not export taskloop_plugin_register",
                         shown);
        return;
    }
    /* Checked before the plugin registers anything: with another layout of the ops and
     * messages it would register what this program then misreads. */
    const unsigned *abi = dlsym(pl->handle, "taskloop_plugin_abi");
    if (!abi) {
        tl_config_report(ld, p, path,
                         "plugin \"%s\" does not say which plugin ABI it was built for: add "
                         "TL_PLUGIN_DECLARE_ABI; (taskloop/adapter.h) to it and rebuild it "
                         "against this taskloop's headers (%s, plugin ABI %d)",
                         shown, tl_version(), TL_PLUGIN_ABI);
        return;
    }
    if (*abi != TL_PLUGIN_ABI) {
        tl_config_report(ld, p, path,
                         "plugin \"%s\" was built for plugin ABI %u, and this taskloop (%s) "
                         "has plugin ABI %d: rebuild it against this taskloop's headers",
                         shown, *abi, tl_version(), TL_PLUGIN_ABI);
        return;
    }
    int rc = fn(ld->reg);
    if (rc < 0)
        tl_config_report(ld, p, path, "plugin \"%s\": taskloop_plugin_register failed: %s", shown,
                         tl_strerror(rc));
}

const char *tl_config_plugin_names(tl_config_loader *ld, char *buf, size_t cap)
{
    size_t n =
        (size_t)snprintf(buf, cap, "%s", ld->cfg->nplugins > 1 ? "one of the plugins" : "plugin");
    for (size_t i = 0; i < ld->cfg->nplugins && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", i ? ", " : " ", ld->plugins_shown[i]);
    return buf;
}

void tl_config_close_plugins(tl_config *cfg)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (cfg->plugins[i].handle)
            dlclose(cfg->plugins[i].handle);
}
