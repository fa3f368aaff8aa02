/*
 * A worker process (isolation: process): reads messages from its socket, runs the
 * route's handler on each as a task of a loop of its own with one worker thread, and
 * writes back each result. While a handler runs, the loop thread watches the socket
 * for a cancel and passes it on to the task, so the handler sees tl_cancelled() as it
 * would in the service. The handler's thread_init/thread_fini hooks run on that
 * worker thread.
 *
 * Thread rules: the process's main thread runs the loop and owns the socket; the
 * handler runs on the loop's worker.
 */
#include "runtime.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* How often the loop thread looks for a cancel while a handler runs. */
#define CANCEL_POLL_MS 2

typedef struct child_ctx {
    tl_route_state *route;
} child_ctx;

static void thread_start(void *arg)
{
    child_ctx *c = arg;
    if (c->route->hooks.thread_init)
        c->route->hooks.thread_init(c->route->cfg->user, c->route->handler_state);
}

static void thread_stop(void *arg)
{
    child_ctx *c = arg;
    if (c->route->hooks.thread_fini)
        c->route->hooks.thread_fini(c->route->cfg->user, c->route->handler_state);
}

/* Runs the task to its end, cancelling it when the service asks to. */
static void run_to_end(tl_loop *loop, tl_task *t, int fd)
{
    bool cancelled = false;
    while (!tl_task_done(t)) {
        tl_loop_run_once(loop, CANCEL_POLL_MS);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (cancelled || poll(&p, 1, 0) != 1)
            continue;
        char c;
        /* The end of the socket: the service is gone; nothing waits for a result. */
        if (read(fd, &c, 1) != 1)
            _exit(0);
        if (c == TL_FRAME_CANCEL) {
            tl_task_cancel(t);
            cancelled = true;
        }
    }
}

/* Handles one message; false once the socket ends. */
static bool handle_one(tl_service *svc, tl_route_state *route, tl_loop *loop, int fd)
{
    char type;
    if (tl__frame_read(fd, &type, 1) != 0)
        return false;
    if (type != TL_FRAME_MSG)
        return true; /* a cancel that crossed its result */
    tl_frame_msg fm;
    if (tl__frame_recv_msg(fd, &fm) != 0) {
        tl__frame_msg_free(&fm);
        return false;
    }
    if (route->cfg->cpu_time_ms > 0) {
        /* RLIMIT_CPU counts the process's life: the limit moves on by what this
         * message may take, on top of what earlier ones used. */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        rlim_t used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1);
        rlim_t add = (rlim_t)((route->cfg->cpu_time_ms + 999) / 1000);
        struct rlimit rl = {used + add, RLIM_INFINITY};
        setrlimit(RLIMIT_CPU, &rl);
    }
    tl_rec rec = {.svc = svc, .route = route, .msg = &fm.msg, .attempt = fm.attempt};
    tl_task *t = tl__attempt_child(loop, &rec);
    int err = TL_ENOMEM;
    const char *text = NULL;
    if (t) {
        run_to_end(loop, t, fd);
        err = tl_task_error(t);
        text = tl_task_error_text(t);
    }
    bool ok = tl__frame_send_result(fd, err, text) == 0;
    if (t)
        tl_task_release(t);
    tl__frame_msg_free(&fm);
    return ok;
}

/* A figure of /proc/self/status in bytes (e.g. "VmSize:"), 0 when unread. */
static rlim_t status_bytes(const char *field)
{
    FILE *in = fopen("/proc/self/status", "r");
    char line[128];
    unsigned long kib = 0;
    size_t len = strlen(field);
    while (in && fgets(line, sizeof(line), in))
        if (strncmp(line, field, len) == 0 && sscanf(line + len, "%lu", &kib) == 1)
            break;
    if (in)
        fclose(in);
    return (rlim_t)kib * 1024;
}

/* glibc's malloc arenas other than the main one live in heaps of this size, aligned
 * to it: the used part readable and writable, the rest reserved with no access. */
#define ARENA_HEAP_BYTES (64ul << 20)

/* The unused tails of the malloc arenas the worker inherited: reserved already, so a
 * handler fills them without the address space growing. */
static rlim_t arena_tail_bytes(void)
{
    FILE *in = fopen("/proc/self/maps", "r");
    char line[512], prev_perms[5] = "";
    unsigned long prev_hi = 0;
    rlim_t sum = 0;
    while (in && fgets(line, sizeof(line), in)) {
        unsigned long lo, hi;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3)
            continue;
        if (strcmp(perms, "---p") == 0 && hi % ARENA_HEAP_BYTES == 0 &&
            hi - lo < ARENA_HEAP_BYTES && prev_hi == lo && strcmp(prev_perms, "rw-p") == 0)
            sum += hi - lo;
        prev_hi = hi;
        memcpy(prev_perms, perms, sizeof(perms));
    }
    if (in)
        fclose(in);
    return sum;
}

/* RLIMIT_AS at the address space the worker has now, its loop thread included, plus
 * what the route allows, less what it could fill without growing (arena_tail_bytes; a
 * 64 MiB limit let a handler take 126 MiB when they were not counted): the copy of the
 * service it starts as is not the handler's to pay for. */
static void limit_memory(int64_t bytes)
{
    rlim_t now = status_bytes("VmSize:"), reserved = arena_tail_bytes();
    rlim_t allow = (rlim_t)bytes > reserved ? (rlim_t)bytes - reserved : 0;
    struct rlimit rl = {now + allow, now + allow};
    setrlimit(RLIMIT_AS, &rl);
}

/* A tl_child_main: the worker process's life. */
void tl__child_main(tl_service *svc, tl_route_state *route, int fd)
{
    child_ctx c = {route};
    tl_worker_hooks wh = {.start = thread_start, .stop = thread_stop, .user = &c};
    tl_loop_opts lo = {.workers = 1};
    tl_loop *loop = NULL;
    if (tl_loop_new_ex(&lo, &wh, &loop) != 0)
        _exit(1);
    if (route->cfg->memory_bytes > 0)
        limit_memory(route->cfg->memory_bytes);
    while (handle_one(svc, route, loop, fd)) {
    }
    tl_loop_free(loop);
    _exit(0);
}
