/*
 * The Kafka sink against librdkafka's in-process mock cluster: every send is acked
 * exactly once, with an error when the mock refuses it, fills up or goes away; what
 * it sent is read back through the source (the scheme of the test messages is in
 * kafka_helpers.h).
 *
 * Thread rules: acks are written by the sink's poll thread (or by flush and close on
 * the test thread) and read by the test thread, always under acks.mu.
 */
#include "kafka_helpers.h"

#include <stdio.h>
#include <string.h>

typedef struct acks acks;

/* One per send: the ack's argument. */
typedef struct slot {
    acks *a;
    int i;
} slot;

struct acks {
    pthread_mutex_t mu;
    slot slots[256];
    int count[256]; /* acks seen per send */
    int failed, total;
    char last[256];
};

static void on_ack(void *arg, int err, const char *what)
{
    slot *sl = arg;
    acks *a = sl->a;
    pthread_mutex_lock(&a->mu);
    a->count[sl->i]++;
    a->total++;
    if (err) {
        a->failed++;
        snprintf(a->last, sizeof(a->last), "%s (%s)", what ? what : "(none)", tl_strerror(err));
    }
    pthread_mutex_unlock(&a->mu);
}

static int send_n(tl_sink *k, acks *a, int first, int n)
{
    int sent = 0;
    for (int i = first; i < first + n; i++) {
        char v[16], key[16], idx[16];
        snprintf(v, sizeof(v), "v%d", i);
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(idx, sizeof(idx), "%d", i);
        tl_header h[2] = {{"h-idx", idx, strlen(idx)}, {"h-fixed", "x", 1}};
        tl_out_msg m = {v, strlen(v), key, strlen(key), h, 2};
        a->slots[i] = (slot){a, i};
        if (SINK->send(k, &m, on_ack, &a->slots[i]) != 0)
            break;
        sent++;
    }
    return sent;
}

static void acks_init(acks *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
}

static int acks_total(acks *a)
{
    pthread_mutex_lock(&a->mu);
    int n = a->total;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* Every one of sends 0..n-1 was acked exactly once, failed of them with an error. */
static void assert_acked_once(acks *a, int n, int failed)
{
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->total, n);
    assert_int_equal(a->failed, failed);
    for (int i = 0; i < n; i++)
        assert_int_equal(a->count[i], 1);
    pthread_mutex_unlock(&a->mu);
}

static tl_sink *open_sink(cluster *cl, const char *topic, const char *const *kafka)
{
    conf c;
    source_conf(&c, cl->boot, "unused", topic, kafka); /* the sink reads brokers and kafka */
    tl_sink *k = NULL;
    char err[256] = "";
    int rc = SINK->open(topic, &c.p, &k, err, sizeof(err));
    if (rc)
        fail_msg("sink open: %s", err);
    return k;
}

static void sink_acks_every_send_and_keeps_headers(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-sink", PARTS);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-sink", NULL);
    /* Keys decide partitions here, so read back by coverage of payloads, not offsets. */
    assert_int_equal(send_n(k, &a, 0, 200), 200);
    assert_int_equal(SINK->flush(k, 10000), 0);
    sleep_ms(200);
    assert_acked_once(&a, 200, 0);
    SINK->close(k);

    rec r;
    rec_init(&r);
    r.any_partition = true; /* the producer's partitioner placed them by key */
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-sink", "t-sink", NULL));
    assert_eventually(rec_get(&r, &r.delivered) >= 200, T_WAIT);
    sleep_ms(300);
    assert_int_equal(covered(&r, NULL, 200), 200);
    assert_int_equal(r.delivered, 200);
    assert_int_equal(r.dups, 0);
    assert_int_equal(r.bad, 0);
    close_source(s);
    cluster_free(cl);
}

static void wait_acks(acks *a, int n)
{
    assert_eventually(acks_total(a) >= n, T_WAIT);
    sleep_ms(300); /* a second ack for any send would show by now */
}

/* The 2.0.2 mock creates any topic it is asked about, so its metadata is told to deny it. */
static void sink_to_missing_topic_acks_an_error_once(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, NULL, 0);
    rd_kafka_mock_topic_set_error(cl->mc, "t-missing", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    const char *const kafka[] = {"topic.metadata.propagation.max.ms", "1000", NULL};
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-missing", kafka);
    assert_int_equal(send_n(k, &a, 0, 20), 20);
    wait_acks(&a, 20);
    print_message("    error ack: %s\n", a.last);
    assert_acked_once(&a, 20, 20);
    SINK->close(k);
    assert_acked_once(&a, 20, 20);
    cluster_free(cl);
}

/* A permanent produce error fails those sends, once each; the rest still succeed. */
static void sink_produce_errors_ack_an_error_once(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-prodfail", 1);
    rd_kafka_mock_push_request_errors(cl->mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-prodfail", NULL);
    assert_int_equal(send_n(k, &a, 0, 1), 1);
    wait_acks(&a, 1);
    assert_int_equal(send_n(k, &a, 1, 20), 20);
    wait_acks(&a, 21);
    print_message("    error ack: %s\n", a.last);
    assert_acked_once(&a, 21, 1);
    SINK->close(k);
    assert_acked_once(&a, 21, 1);
    cluster_free(cl);
}

static void sink_close_acks_what_is_outstanding(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-close", PARTS);
    rd_kafka_mock_broker_set_down(cl->mc, 1);
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-close", NULL);
    assert_int_equal(send_n(k, &a, 0, 50), 50);
    assert_int_equal(SINK->flush(k, 200), TL_ETIMEDOUT);
    assert_int_equal(acks_total(&a), 0);
    SINK->close(k);
    assert_acked_once(&a, 50, 50);
    print_message("    purge ack: %s\n", a.last);
    cluster_free(cl);
}

static void sink_full_queue_says_try_again(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-full", PARTS);
    rd_kafka_mock_broker_set_down(cl->mc, 1);
    const char *const kafka[] = {"queue.buffering.max.messages", "10", NULL};
    acks a;
    acks_init(&a);
    tl_sink *k = open_sink(cl, "t-full", kafka);
    assert_int_equal(send_n(k, &a, 0, 10), 10);
    tl_out_msg m = {"v", 1, NULL, 0, NULL, 0};
    assert_int_equal(SINK->send(k, &m, on_ack, &a.slots[10]), TL_EAGAIN);
    SINK->close(k);
    assert_acked_once(&a, 10, 10); /* the refused send is never acked */
    cluster_free(cl);
}

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sink_acks_every_send_and_keeps_headers),
        cmocka_unit_test(sink_to_missing_topic_acks_an_error_once),
        cmocka_unit_test(sink_produce_errors_ack_an_error_once),
        cmocka_unit_test(sink_close_acks_what_is_outstanding),
        cmocka_unit_test(sink_full_queue_says_try_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
