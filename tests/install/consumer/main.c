/*
 * Built against an installed taskloop-service: creates a loop, runs one task on a worker,
 * makes a service registry with the built-in handlers and prints "ok" when all that
 * worked, so that the runtime and the loop it needs link from the install. With the
 * memory adapter, registers it too, so that an adapter library links as well.
 *
 * Thread rules: main drives the loop; the task runs on the loop's one worker.
 */
#include <stdio.h>
#include <string.h>
#include <taskloop/service.h>
#include <taskloop/taskloop.h>
#ifdef HAVE_TASKLOOP_MEMORY
#include <taskloop/memory.h>
#endif

static int answer(tl_task *task, void *arg)
{
    tl_task_set_result(task, arg);
    return 0;
}

int main(void)
{
    tl_loop_opts opts = {.workers = 1};
    tl_loop *loop = NULL;
    if (tl_loop_new(&opts, &loop) != 0)
        return 1;
    static char word[] = "ok";
    tl_task *task = tl_task_create(loop, answer, word);
    tl_result res = {0};
    int rc = task ? tl_gather(loop, &task, 1, true, &res) : TL_ENOMEM;
    tl_task_release(task);
    tl_loop_free(loop);
    if (rc != 0 || res.error != 0 || !res.value || strcmp(res.value, "ok") != 0) {
        fprintf(stderr, "consumer: the task did not complete: %s\n", tl_strerror(rc));
        return 1;
    }
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0 || tl_register_builtin_handlers(reg) != 0) {
        fprintf(stderr, "consumer: cannot make a registry with the built-in handlers\n");
        tl_registry_free(reg);
        return 1;
    }
#ifdef HAVE_TASKLOOP_MEMORY
    if (tl_memory_register(reg) != 0) {
        fprintf(stderr, "consumer: cannot register the memory adapter\n");
        tl_registry_free(reg);
        return 1;
    }
#endif
    tl_registry_free(reg);
    printf("%s (taskloop %s)\n", (char *)res.value, tl_version());
    return 0;
}
