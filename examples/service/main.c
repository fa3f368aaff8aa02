/*
 * A service written against the library: it registers a handler of its own, `enrich`,
 * and runs the config file given on the command line (default
 * config/example-service.yaml) until SIGTERM or SIGINT.
 *
 * `enrich` reads the customer id from a payload such as "id=000123 ...", looks up the
 * customer's tier (here: computed from the id), appends "id=000123 tier=gold" to the
 * file named by the route param `out`, and counts tiers. A payload without an id is a
 * failure the runtime retries and then hands to the route's on_error target.
 *
 *   ./service config/example-service.yaml &
 *   taskloop produce --to zmq:tcp://127.0.0.1:5560 -n 1000
 *
 * Thread rules: enrich runs on the worker pool, many at once, so the tier counts are
 * atomics; the signal handler only calls tl_service_stop, which is signal-safe.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/service.h>
#include <taskloop/zmq.h>
#include <unistd.h>

static const char *const tier_names[] = {"bronze", "silver", "gold"};

typedef struct enrich_state {
    atomic_ulong tiers[3];
} enrich_state;

/* Parses the digits after "id=" at the start of the payload; false if there are none. */
static bool payload_id(const tl_msg *msg, unsigned long *id)
{
    const char *p = msg->payload;
    if (msg->len < 4 || memcmp(p, "id=", 3) != 0 || p[3] < '0' || p[3] > '9')
        return false;
    *id = 0;
    for (size_t i = 3; i < msg->len && p[i] >= '0' && p[i] <= '9'; i++)
        *id = *id * 10 + (unsigned long)(p[i] - '0');
    return true;
}

static int enrich(tl_task *task, const tl_msg *msg, void *user)
{
    enrich_state *st = user;
    unsigned long id;
    if (!payload_id(msg, &id)) {
        tl_task_set_error_text(task, "payload does not start with id=");
        return TL_EINVAL;
    }
    /* The lookup a real service would make (a database, a cache) stands here. */
    unsigned tier = id % 10 == 0 ? 2 : id % 3 == 0 ? 1 : 0;
    if (tl_cancelled(task))
        return TL_ECANCELED;
    char line[96];
    int n = snprintf(line, sizeof(line), "id=%06lu tier=%s\n", id, tier_names[tier]);
    const char *out = tl_handler_param(task, "out", "enriched.txt");
    int fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tl_task_set_error_text(task, "cannot open the output file");
        return TL_ESYS;
    }
    /* One write per line on O_APPEND: concurrent workers never interleave. */
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    if (w != n)
        return TL_ESYS;
    atomic_fetch_add(&st->tiers[tier], 1);
    return 0;
}

static _Atomic(tl_service *) g_svc;

static void on_signal(int sig)
{
    (void)sig;
    tl_service *svc = atomic_load(&g_svc);
    if (svc)
        tl_service_stop(svc);
}

/* Prints one config error as the library words it. */
static void report(void *user, const char *message)
{
    (void)user;
    fprintf(stderr, "%s\n", message);
}

/* Loads the config and runs the service until a signal; the exit status. */
static int serve(const char *path, tl_registry *reg)
{
    tl_service *svc = NULL;
    char err[256] = "";
    int rc = tl_service_load(path, reg, NULL, report, NULL, &svc, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "service: cannot start: %s\n", err[0] ? err : tl_strerror(rc));
        return 1;
    }
    atomic_store(&g_svc, svc);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "service: %s running; SIGTERM or Ctrl-C to stop\n", tl_service_name(svc));
    rc = tl_service_run(svc);
    atomic_store(&g_svc, NULL);
    tl_service_stats st;
    tl_service_stats_get(svc, &st);
    printf("consumed %llu, completed %llu, failed %llu\n", (unsigned long long)st.consumed,
           (unsigned long long)st.completed, (unsigned long long)st.failed);
    tl_service_free(svc);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "config/example-service.yaml";
    enrich_state st = {0};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0)
        return 1;
    int rc = 1;
    if (tl_zmq_register(reg) != 0 || tl_register_handler(reg, "enrich", enrich, &st) != 0)
        fprintf(stderr, "service: cannot register the adapter and the handler\n");
    else
        rc = serve(path, reg);
    for (int i = 0; i < 3; i++)
        printf("%s %lu\n", tier_names[i], atomic_load(&st.tiers[i]));
    tl_registry_free(reg);
    return rc;
}
