/*
 * `taskloop run --demo`: the embedded config/demo.yaml on librdkafka's mock cluster,
 * so that nothing needs installing. The program makes the cluster and its topics,
 * hands the bootstrap address to the config through TASKLOOP_DEMO_BROKERS, produces
 * the load from a thread of its own and stops the service once everything it
 * produced is consumed and settled.
 *
 * Thread rules: the load thread writes the load stats; the runner's monitor reads
 * them (atomics) to decide when the demo is over.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>

#include "cli.h"

#define DEMO_INPUT "demo.input"
#define DEMO_PARTITIONS 4
#define DEMO_MESSAGES 20000

static const tl_cli_load demo_load = {
    .count = DEMO_MESSAGES,
    .size = 64,
    .stall_ratio = 0.02,
    .fail_ratio = 0.01,
    .keys = 64,
};

typedef struct demo {
    const char *brokers;
    tl_cli_load_stats st;
    atomic_bool stop;
    pthread_t thread;
    char err[512];
    int rc;
} demo;

static void *load_main(void *arg)
{
    demo *d = arg;
    d->rc = tl_cli_produce_kafka(d->brokers, DEMO_INPUT, &demo_load, &d->st, &d->stop, d->err,
                                 sizeof(d->err));
    if (d->rc != 0)
        tl_cli_err("demo: cannot produce the load: %s", d->err);
    return NULL;
}

/* Over once the producer has every report in and all it delivered is settled. */
static bool demo_done(void *user, const tl_service_stats *st)
{
    demo *d = user;
    return atomic_load(&d->st.finished) && st->consumed >= atomic_load(&d->st.delivered) &&
           st->in_flight == 0;
}

/* The cluster and the topics demo.yaml names; NULL after reporting a problem. */
static tl_cli_mock *demo_cluster(void)
{
    static const struct {
        const char *name;
        int partitions;
    } topics[] = {{DEMO_INPUT, DEMO_PARTITIONS}, {"demo.stalled", 1}, {"demo.dlq", 1}};
    char err[512];
    tl_cli_mock *m = tl_cli_mock_new(1, err, sizeof(err));
    if (!m) {
        tl_cli_err("demo: cannot start the mock Kafka cluster: %s", err);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        if (tl_cli_mock_topic(m, topics[i].name, topics[i].partitions, err, sizeof(err))) {
            tl_cli_err("demo: %s", err);
            tl_cli_mock_free(m);
            return NULL;
        }
    return m;
}

static tl_config *demo_config(tl_registry *reg)
{
    tl_config *cfg = NULL;
    tl_diag diag;
    tl_diag_init(&diag);
    if (tl_config_load_string("demo.yaml", tl_cli_demo_yaml, reg, NULL, &cfg, &diag) != 0) {
        tl_diag_print(&diag, stderr);
        tl_cli_err("demo: the embedded demo.yaml does not load");
    }
    tl_diag_free(&diag);
    return cfg;
}

/* Runs the service beside the load thread; returns the exit status. */
static int demo_run(demo *d, const tl_config *cfg, tl_registry *reg, bool progress, int64_t cap_ms)
{
    if (pthread_create(&d->thread, NULL, load_main, d) != 0) {
        tl_cli_err("demo: cannot start the load thread");
        return 1;
    }
    tl_program_run_opts r = {.name = TL_CLI_NAME,
                             .title = "the demo",
                             .progress = progress,
                             .cap_ms = cap_ms,
                             .done = demo_done,
                             .done_user = d};
    tl_program_outcome out;
    int rc = tl_program_run(cfg, reg, &r, &out);
    atomic_store(&d->stop, true);
    pthread_join(d->thread, NULL);
    printf("load: sent %" PRIu64 " (marked stall %" PRIu64 ", fail %" PRIu64 "), delivered %" PRIu64
           ", failed %" PRIu64 "\n",
           atomic_load(&d->st.sent), atomic_load(&d->st.stall), atomic_load(&d->st.fail),
           atomic_load(&d->st.delivered), atomic_load(&d->st.failed));
    if (rc != 0 || d->rc != 0)
        return 1;
    if (!out.by_done) {
        tl_cli_err("demo: stopped before everything produced was settled");
        return 1;
    }
    return out.adds_up ? 0 : 1;
}

int tl_cli_demo(bool progress, int64_t cap_ms)
{
    tl_cli_mock *m = demo_cluster();
    if (!m)
        return 1;
    demo d = {.brokers = tl_cli_mock_brokers(m)};
    setenv("TASKLOOP_DEMO_BROKERS", d.brokers, 1);
    int rc = 1;
    tl_registry *reg = tl_cli_registry();
    tl_config *cfg = reg ? demo_config(reg) : NULL;
    if (cfg) {
        if (tl_program_log())
            tl_logger_setup(tl_program_log(), cfg->log_format, cfg->log_level);
        tl_cli_note("demo: mock Kafka cluster at %s; producing %" PRIu64 " messages to %s "
                    "(%.0f%% marked stall, %.0f%% fail)",
                    d.brokers, demo_load.count, DEMO_INPUT, demo_load.stall_ratio * 100,
                    demo_load.fail_ratio * 100);
        rc = demo_run(&d, cfg, reg, progress, cap_ms);
    }
    tl_config_free(cfg);
    tl_registry_free(reg);
    tl_cli_mock_free(m);
    return rc;
}
