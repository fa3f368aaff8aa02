/*
 * A whole service on the Kafka source, against librdkafka's in-process mock cluster:
 * what backpressure does to a source whose handlers hold it past its poll interval.
 *
 * Thread rules: hung's fields are written by the service's threads (handlers, log)
 * and read by the test thread, always under hung.mu.
 */
#include "kafka_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Handlers that never finish by themselves: the test completes them. */
typedef struct hung {
    pthread_mutex_t mu;
    tl_task *tasks[MAX_IDX];
    int n;
    int paused_events, resumed_events, poll_errors;
} hung;

static int hang(tl_task *task, const tl_msg *msg, void *user)
{
    (void)msg;
    hung *h = user;
    pthread_mutex_lock(&h->mu);
    if (h->n < MAX_IDX)
        h->tasks[h->n++] = task;
    pthread_mutex_unlock(&h->mu);
    return TL_PENDING;
}

static void hung_log(void *user, tl_level level, const char *event, const tl_kv *f, size_t nf)
{
    (void)level;
    hung *h = user;
    pthread_mutex_lock(&h->mu);
    if (strcmp(event, "source_paused") == 0)
        h->paused_events++;
    if (strcmp(event, "source_resumed") == 0)
        h->resumed_events++;
    for (size_t i = 0; i < nf; i++)
        if (strstr(f[i].value, "maximum poll interval"))
            h->poll_errors++;
    pthread_mutex_unlock(&h->mu);
}

static int hung_get(hung *h, const int *field)
{
    pthread_mutex_lock(&h->mu);
    int v = *field;
    pthread_mutex_unlock(&h->mu);
    return v;
}

static void *service_main(void *arg)
{
    tl_service_run(arg);
    return NULL;
}

/*
 * Backpressure keeps the source's thread waiting in deliver, where it cannot poll;
 * librdkafka drops a member from its group after max.poll.interval.ms without a
 * poll. Held longer than half of it, the source is paused and goes back to polling:
 * it keeps its partitions, and once the handlers finish, every message is handled
 * exactly once.
 */
static void a_source_held_past_half_its_poll_interval_is_paused_and_keeps_its_group(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-held", PARTS);
    produce(cl, "t-held", 0, 200);
    char path[] = "/tmp/tl-held-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f,
            "service: held\n"
            "loop: { workers: 1, max_in_flight: 10 }\n"
            "sources:\n"
            "  in: { type: kafka, brokers: \"%s\", group: g-held, topics: [t-held], batch: 10,\n"
            "        kafka: { auto.offset.reset: earliest, max.poll.interval.ms: 3500,\n"
            "                 session.timeout.ms: 3000, heartbeat.interval.ms: 300 } }\n"
            "routes:\n"
            "  - { source: in, handler: hang, ordering: none, inline: true, timeout: 60s }\n",
            cl->boot);
    fclose(f);
    hung h = {.n = 0};
    pthread_mutex_init(&h.mu, NULL);
    tl_registry *reg;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_kafka_register(reg), 0);
    assert_int_equal(tl_register_handler(reg, "hang", hang, &h), 0);
    tl_service_opts opts = {.log = hung_log, .log_user = &h};
    tl_service *svc = NULL;
    char err[512] = "";
    int rc = tl_service_load(path, reg, &opts, NULL, NULL, &svc, err, sizeof(err));
    unlink(path);
    if (rc)
        fail_msg("tl_service_load: %s", err);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, service_main, svc), 0);
    /* Handlers hang, half the window at least (past half, fair intake keeps back the
     * messages of a partition over its share), never more than the window; the
     * source's next batches are held until it is paused. */
    assert_eventually(hung_get(&h, &h.paused_events) == 1, T_WAIT);
    int hung_n = hung_get(&h, &h.n);
    assert_true(hung_n >= 5 && hung_n <= 10);
    sleep_ms(4000); /* past max.poll.interval.ms once more while paused */
    assert_int_equal(hung_get(&h, &h.n), hung_n);
    /* The handlers finish; the source resumes and the rest flows. */
    int done = 0;
    int64_t end = now_ms() + T_WAIT;
    tl_service_stats st;
    do {
        pthread_mutex_lock(&h.mu);
        int n = h.n;
        pthread_mutex_unlock(&h.mu);
        for (; done < n; done++)
            assert_int_equal(tl_task_complete(h.tasks[done], NULL, 0), 0);
        sleep_ms(20);
        tl_service_stats_get(svc, &st);
    } while (st.completed < 200 && now_ms() < end);
    sleep_ms(500); /* a redelivery would show up as a handler call too many */
    tl_service_stats_get(svc, &st);
    assert_int_equal(st.completed, 200);
    assert_int_equal(hung_get(&h, &h.n), 200);
    assert_int_equal(hung_get(&h, &h.poll_errors), 0);
    assert_true(hung_get(&h, &h.resumed_events) >= 1);
    tl_service_stop(svc);
    pthread_join(th, NULL);
    tl_service_free(svc);
    tl_registry_free(reg);
    pthread_mutex_destroy(&h.mu);
    cluster_free(cl);
}

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_source_held_past_half_its_poll_interval_is_paused_and_keeps_its_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
