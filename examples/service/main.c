/*
 * A service written against the library: it registers a handler of its own, `enrich`,
 * and hands the command line to tl_service_main, which gives it what `taskloop run` and
 * `taskloop check` do: `service run FILE` logs as the config says, shows progress,
 * drains on SIGTERM or SIGINT and prints the summary; `service check FILE` validates.
 *
 * `enrich` reads the customer id from a payload such as "id=000123 ...", looks up the
 * customer's tier (here: computed from the id), appends "id=000123 tier=gold" to the
 * file named by the route param `out`, and counts tiers. A payload without an id is a
 * failure the runtime retries and then hands to the route's on_error target.
 *
 *   ./service run config/example-service.yaml &
 *   taskloop produce --to zmq:tcp://127.0.0.1:5560 -n 1000
 *
 * Thread rules: enrich runs on the worker pool, many at once, so the tier counts are
 * atomics.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <taskloop/program.h>
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

int main(int argc, char **argv)
{
    enrich_state st = {0};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0)
        return 1;
    int rc = 1;
    if (tl_zmq_register(reg) != 0 || tl_register_handler(reg, "enrich", enrich, &st) != 0)
        fprintf(stderr, "service: cannot register the adapter and the handler\n");
    else
        rc = tl_service_main(argc, argv, reg, NULL);
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        for (int i = 0; i < 3; i++)
            printf("%s %lu\n", tier_names[i], atomic_load(&st.tiers[i]));
    tl_registry_free(reg);
    return rc;
}
