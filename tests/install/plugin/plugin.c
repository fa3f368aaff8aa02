/*
 * A plugin built outside the taskloop tree against the installed package (with
 * pkg-config taskloop-plugin, or find_package(taskloop COMPONENTS plugin)) and loaded by
 * the installed `taskloop run`: it links no taskloop library and takes every tl_*
 * function from the program.
 *
 * It registers handler "counted" with lifecycle hooks. init opens the file named by the
 * route's `out` param (a missing one fails the start) and feeds `count` messages to the
 * memory topic named by `topic`, which the config's source reads, so that the run has
 * something to do; the handler appends "handled PAYLOAD" for each; thread_init and
 * thread_fini count the worker threads; fini appends
 * "fini thread_init=N thread_fini=M" and closes the file.
 *
 * Built with -DTL_PLUGIN_NEWER it also calls a function no taskloop has, as a plugin
 * built against a newer taskloop would: the program refuses to load it, naming it.
 */
#define _POSIX_C_SOURCE 200809L /* open flags and write under -std=c11 */

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/memory.h>
#include <taskloop/service.h>
#include <unistd.h>

typedef struct counted {
    int fd;
    atomic_int thread_inits, thread_finis;
} counted;

static const char *param(const tl_kv *params, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(params[i].key, key) == 0)
            return params[i].value;
    return NULL;
}

static void put(int fd, const char *text, size_t len)
{
    if (write(fd, text, len) != (ssize_t)len)
        perror("counted plugin: write");
}

static int counted_init(void *user, const tl_kv *params, size_t nparams, void **state, char *err,
                        size_t errlen)
{
    (void)user;
    const char *out = param(params, nparams, "out");
    const char *topic = param(params, nparams, "topic");
    const char *count = param(params, nparams, "count");
    if (!out || !topic || !count) {
        snprintf(err, errlen, "params out, topic and count are required");
        return TL_EINVAL;
    }
    counted *c = calloc(1, sizeof(*c));
    if (!c)
        return TL_ENOMEM;
    c->fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot open %s", out);
        free(c);
        return TL_ESYS;
    }
    for (int i = 0; i < atoi(count); i++) {
        char payload[16];
        int n = snprintf(payload, sizeof(payload), "m%d", i);
        if (tl_memory_push(topic, 0, NULL, payload, (size_t)n) < 0) {
            snprintf(err, errlen, "cannot feed the memory topic %s", topic);
            close(c->fd);
            free(c);
            return TL_EFAIL;
        }
    }
    *state = c;
    return 0;
}

static void counted_thread_init(void *user, void *state)
{
    (void)user;
    atomic_fetch_add(&((counted *)state)->thread_inits, 1);
}

static void counted_thread_fini(void *user, void *state)
{
    (void)user;
    atomic_fetch_add(&((counted *)state)->thread_finis, 1);
}

static void counted_fini(void *user, void *state)
{
    (void)user;
    counted *c = state;
    char line[64];
    int n = snprintf(line, sizeof(line), "fini thread_init=%d thread_fini=%d\n",
                     atomic_load(&c->thread_inits), atomic_load(&c->thread_finis));
    put(c->fd, line, (size_t)n);
    close(c->fd);
    free(c);
}

static int counted_handler(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    counted *c = tl_handler_state(task);
    char line[64];
    int n =
        snprintf(line, sizeof(line), "handled %.*s\n", (int)msg->len, (const char *)msg->payload);
    put(c->fd, line, (size_t)n);
    return 0;
}

#ifdef TL_PLUGIN_NEWER
int tl_from_a_newer_taskloop(void);
#endif

TL_PLUGIN_DECLARE_ABI;

int taskloop_plugin_register(tl_registry *reg)
{
#ifdef TL_PLUGIN_NEWER
    if (tl_from_a_newer_taskloop() != 0)
        return TL_EFAIL;
#endif
    static const tl_handler_hooks hooks = {.init = counted_init,
                                           .thread_init = counted_thread_init,
                                           .thread_fini = counted_thread_fini,
                                           .fini = counted_fini};
    return tl_register_handler_hooks(reg, "counted", counted_handler, NULL, &hooks);
}
