/*
 * A service with an admin endpoint, for test_admin.sh: the memory adapter feeds it
 * messages whose payload picks what the handler does ("ok", "fail", "hold", "stuck"),
 * so that every counter has something to show and /tasks has tasks still running. The
 * one "stuck" message comes from a second source whose route times out after 200 ms:
 * it stalls, is rerouted, and its handler keeps its worker (a replacement is started).
 *
 * Usage: admin_driver [HOST:PORT [ADMIN_KEYS]]   (default 127.0.0.1:0)
 * ADMIN_KEYS is added to the admin section as written (e.g. `token: "${T}"`); the
 * config takes ${VAR} from the environment.
 * Prints "port N" as soon as the service is built (the endpoint's socket is bound then,
 * port 0 picking a free one; requests are answered once it runs), runs until its
 * standard input closes (or SIGTERM), then drains and exits 0. Exits 3 when the build
 * or the run fails (the port is taken), 4 when the built service knows no port; the
 * service's log events go to standard error either way.
 *
 * Thread rules: main runs the service (it becomes the loop thread) and joins the
 * watcher thread, which turns end-of-input into tl_service_stop;
 * handlers run on workers and share only the atomics `released` and `finished`.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/memory.h>
#include <taskloop/service.h>
#include <time.h>
#include <unistd.h>

#include <taskloop/config.h>

#define TOPIC "admin_in"
#define N_OK 20
#define N_FAIL 2
#define N_HOLD 3
#define SLOW_TOPIC "admin_slow"

static atomic_bool released;
static atomic_bool finished; /* the run returned: the watcher must let go */
static tl_service *the_svc;

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "hold" keeps its worker until the driver stops (or its cancellation), so /tasks
 * lists it as running. */
static int handler(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    if (msg->len == 4 && memcmp(msg->payload, "fail", 4) == 0) {
        tl_task_set_error_text(task, "asked to fail");
        return TL_EFAIL;
    }
    if (msg->len == 4 && memcmp(msg->payload, "hold", 4) == 0) {
        while (!atomic_load(&released) && !tl_cancelled(task))
            sleep_ms(5);
        return 0;
    }
    /* "stuck" ignores its cancellation: it holds its worker until the driver stops. */
    if (msg->len == 5 && memcmp(msg->payload, "stuck", 5) == 0) {
        while (!atomic_load(&released))
            sleep_ms(5);
        return 0;
    }
    sleep_ms(2);
    return 0;
}

static void log_event(void *user, tl_level level, const char *event, const tl_kv *f, size_t n)
{
    (void)user;
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "level=%s event=%s", levels[level], event);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %s=\"%s\"", f[i].key, f[i].value);
    fputc('\n', stderr);
}

static void on_term(int sig)
{
    (void)sig;
    atomic_store(&released, true);
    if (the_svc)
        tl_service_stop(the_svc);
}

/* Polls rather than blocking in read, so that main can always join it. */
static void *watcher(void *arg)
{
    tl_service *svc = arg;
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char buf[256];
    while (!atomic_load(&finished)) {
        if (poll(&pfd, 1, 50) > 0 && read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
            break;
    }
    atomic_store(&released, true);
    tl_service_stop(svc);
    return NULL;
}

#define STUCK_TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"

static int push_all(void)
{
    int64_t off = 0;
    for (int i = 0; i < N_OK && off >= 0; i++)
        off = tl_memory_push(TOPIC, i % 2, NULL, "ok", 2);
    for (int i = 0; i < N_FAIL && off >= 0; i++)
        off = tl_memory_push(TOPIC, 0, NULL, "fail", 4);
    /* Holds go to partition 1 after its other messages, one per key, all in parallel. */
    for (int i = 0; i < N_HOLD && off >= 0; i++) {
        char key[8];
        snprintf(key, sizeof(key), "h%d", i);
        off = tl_memory_push(TOPIC, 1, key, "hold", 4);
    }
    /* The stuck one carries trace context: /tasks names its trace. */
    static const char tp[] = "00-" STUCK_TRACE_ID "-00f067aa0ba902b7-01";
    tl_header h = {"traceparent", tp, sizeof(tp) - 1};
    tl_out_msg stuck = {.payload = "stuck", .len = 5, .headers = &h, .nheaders = 1};
    if (off >= 0)
        off = tl_memory_push_msg(SLOW_TOPIC, 0, &stuck);
    return off < 0 ? (int)off : 0;
}

int main(int argc, char **argv)
{
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    const char *admin_keys = argc > 2 ? argv[2] : NULL;
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "service: admin-test\n"
             "loop: { workers: 8, drain_timeout: 5s }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: 2 }\n"
             "  slow: { type: memory, name: %s, partitions: 1 }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: driver\n"
             "    ordering: key\n"
             "    timeout: 60s\n"
             "    on_stall: { reroute: \"memory:admin_stalled\" }\n"
             "    on_error: { retries: 1, backoff: 10ms, then: \"memory:admin_dlq\" }\n"
             "  - source: slow\n"
             "    handler: driver\n"
             "    timeout: 200ms\n"
             "    on_stall: { reroute: \"memory:admin_stalled\" }\n"
             "admin: { listen: \"%s\"%s%s }\n",
             TOPIC, SLOW_TOPIC, listen, admin_keys ? ", " : "", admin_keys ? admin_keys : "");
    tl_registry *reg = NULL;
    tl_config *cfg = NULL;
    tl_service *svc = NULL;
    tl_diag diag = {0};
    char err[512] = "";
    int status = 1;
    if (tl_registry_new(&reg) != 0 || tl_memory_register(reg) != 0 ||
        tl_register_handler(reg, "driver", handler, NULL) != 0)
        goto cleanup;
    if (tl_config_load_string("admin_driver", yaml, reg, NULL, &cfg, &diag) != 0) {
        tl_diag_print(&diag, stderr);
        goto cleanup;
    }
    if (push_all() != 0)
        goto cleanup;
    tl_service_opts opts = {.log = log_event};
    if (tl_service_new(cfg, reg, &opts, &svc, err, sizeof(err)) != 0) {
        fprintf(stderr, "admin_driver: cannot build the service: %s\n", err);
        status = 3;
        goto cleanup;
    }
    /* Known before the run: a caller can tell where the endpoint will be. */
    int port = tl_service_admin_port(svc);
    if (port <= 0) {
        fprintf(stderr, "admin_driver: the built service reports admin port %d\n", port);
        status = 4;
        goto cleanup;
    }
    printf("port %d\n", port);
    fflush(stdout);
    the_svc = svc;
    signal(SIGTERM, on_term);
    pthread_t th;
    if (pthread_create(&th, NULL, watcher, svc) != 0)
        goto cleanup;
    int rc = tl_service_run(svc);
    atomic_store(&finished, true);
    atomic_store(&released, true);
    pthread_join(th, NULL);
    if (rc != 0)
        fprintf(stderr, "admin_driver: run failed: %s\n", tl_strerror(rc));
    status = rc != 0 ? 3 : 0;
cleanup:
    tl_service_free(svc);
    tl_config_free(cfg);
    tl_registry_free(reg);
    tl_diag_free(&diag);
    tl_memory_reset();
    return status;
}
