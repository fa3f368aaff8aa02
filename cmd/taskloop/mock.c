/*
 * librdkafka's in-process mock cluster: for the demo, and served on its own by
 * `taskloop mock` so that tests can run producers, services and kcat against one
 * cluster without installing a broker. The cluster lives as long as the process.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct tl_cli_mock {
    rd_kafka_t *rk; /* a throwaway producer the cluster hangs off */
    rd_kafka_mock_cluster_t *cluster;
};

tl_cli_mock *tl_cli_mock_new(int nbrokers, char *err, size_t errlen)
{
    tl_cli_mock *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle never connects anywhere: its "no bootstrap.servers" notice is noise. */
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!m->rk) {
        rd_kafka_conf_destroy(conf);
        free(m);
        return NULL;
    }
    m->cluster = rd_kafka_mock_cluster_new(m->rk, nbrokers);
    if (!m->cluster) {
        snprintf(err, errlen, "rd_kafka_mock_cluster_new failed");
        tl_cli_mock_free(m);
        return NULL;
    }
    return m;
}

int tl_cli_mock_topic(tl_cli_mock *m, const char *topic, int partitions, char *err, size_t errlen)
{
    /* The mock serves no CreateTopics request: topics are made through its own API. */
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->cluster, topic, partitions, 1);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    snprintf(err, errlen, "cannot create topic %s: %s", topic, rd_kafka_err2str(e));
    return -1;
}

const char *tl_cli_mock_brokers(const tl_cli_mock *m)
{
    return rd_kafka_mock_cluster_bootstraps(m->cluster);
}

void tl_cli_mock_free(tl_cli_mock *m)
{
    if (!m)
        return;
    if (m->cluster)
        rd_kafka_mock_cluster_destroy(m->cluster);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    free(m);
}

/* ---------------------------------------------------------------- `taskloop mock` */

static const char usage[] =
    "usage: taskloop mock [--brokers N] [--topic NAME[:PARTITIONS]]...\n"
    "\n"
    "Starts librdkafka's in-process mock Kafka cluster, creates the topics, prints its\n"
    "bootstrap servers as one line on stdout and serves until SIGTERM or SIGINT. For\n"
    "tests and trials only: the cluster keeps everything in memory.\n"
    "\n"
    "options:\n"
    "  --brokers N              brokers in the cluster (default 1)\n"
    "  --topic NAME[:PARTITIONS] create a topic (default 1 partition); repeatable\n"
    "  -h, --help               this text\n";

/* Creates the topic "NAME[:PARTITIONS]"; -1 after reporting a problem. */
static int add_topic(tl_cli_mock *m, const char *spec)
{
    char name[256];
    uint64_t parts = 1;
    const char *colon = strrchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0 || len >= sizeof(name) ||
        (colon && (!tl_program_parse_uint(colon + 1, &parts) || parts == 0 || parts > 1000))) {
        tl_cli_err("mock: --topic '%s' is not NAME[:PARTITIONS]", spec);
        return -1;
    }
    memcpy(name, spec, len);
    name[len] = '\0';
    char err[512];
    if (tl_cli_mock_topic(m, name, (int)parts, err, sizeof(err)) != 0) {
        tl_cli_err("mock: %s", err);
        return -1;
    }
    return 0;
}

/* Checks the arguments before anything starts; returns the broker count, or -1. */
static int mock_args(int argc, char **argv)
{
    uint64_t n = 1;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--brokers") == 0 && has_value) {
            if (!tl_program_parse_uint(argv[++i], &n) || n == 0 || n > 16) {
                tl_cli_err("mock: --brokers must be 1..16");
                return -1;
            }
        } else if (strcmp(argv[i], "--topic") == 0 && has_value) {
            i++;
        } else {
            tl_cli_err("mock: unexpected argument '%s' (see taskloop mock --help)", argv[i]);
            return -1;
        }
    }
    return (int)n;
}

int tl_cli_cmd_mock(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (tl_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
    int nbrokers = mock_args(argc, argv);
    if (nbrokers < 0)
        return 2;
    /* Blocked before the cluster's threads start, so that they inherit the mask and
     * sigwait below is the only taker. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    char err[512];
    tl_cli_mock *m = tl_cli_mock_new(nbrokers, err, sizeof(err));
    if (!m) {
        tl_cli_err("mock: cannot start the mock cluster: %s", err);
        return 1;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--topic") == 0 && add_topic(m, argv[++i]) != 0) {
            tl_cli_mock_free(m);
            return 1;
        }
    printf("%s\n", tl_cli_mock_brokers(m));
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    tl_cli_mock_free(m);
    return 0;
}
