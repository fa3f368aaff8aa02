/*
 * The Kafka source against librdkafka's in-process mock cluster: one test per
 * behaviour of its configuration, delivery, offsets, pause, faults and rebalance.
 * The mock cluster, the recorder standing in for the runtime and the scheme of the
 * test messages are in kafka_helpers.h.
 */
#include "kafka_helpers.h"

#include <stdio.h>
#include <string.h>

/*
 * Short group timeouts: the 2.0.2 mock completes a rebalance only after about the
 * session timeout (with the defaults a joining member got nothing within 10 s).
 */
#define FAST_GROUP_KV                                                                              \
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", "max.poll.interval.ms", "3500"
static const char *const FAST_GROUP[] = {FAST_GROUP_KV, NULL};

/* ---------------------------------------------------------------- configuration */

/* Opening with the kafka pair key=value fails with TL_ECONFIG and an err naming key. */
static void assert_open_refuses(const char *key, const char *value)
{
    conf c;
    const char *const kafka[] = {key, value, NULL};
    tl_source *s = NULL;
    char err[256] = "";
    int rc = SRC->open(source_conf(&c, "localhost:1", "g", "t", kafka), NULL, &s, err, sizeof(err));
    assert_int_equal(rc, TL_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err, key));
}

static void open_rejects_auto_offset_store(void **state)
{
    (void)state;
    assert_open_refuses("enable.auto.offset.store", "true");
}

static void open_names_the_bad_property(void **state)
{
    (void)state;
    assert_open_refuses("no.such.property", "1");
    assert_open_refuses("session.timeout.ms", "soon");
}

static void register_adds_source_and_sink(void **state)
{
    (void)state;
    tl_registry *reg;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_kafka_register(reg), 0);
    assert_ptr_equal(tl_registry_source(reg, "kafka"), &tl_kafka_source_ops);
    assert_ptr_equal(tl_registry_sink(reg, "kafka"), &tl_kafka_sink_ops);
    assert_int_equal(tl_kafka_register(reg), TL_EINVAL);
    tl_registry_free(reg);
}

/* ---------------------------------------------------------------- source */

static void consume_delivers_every_message_with_its_fields(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-consume", PARTS);
    produce(cl, "t-consume", 0, 1000);
    rec r;
    rec_init(&r);
    conf c;
    int64_t t0 = now_ms();
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-consume", "t-consume", NULL));
    assert_eventually(rec_get(&r, &r.delivered) >= 1000, T_WAIT);
    sleep_ms(300); /* anything extra would show up as a duplicate */
    print_message("    1000 messages in %lld ms\n", (long long)(now_ms() - t0));
    assert_int_equal(covered(&r, NULL, 1000), 1000);
    assert_int_equal(r.delivered, 1000);
    assert_int_equal(r.dups, 0);
    assert_int_equal(r.bad, 0);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(r.next[p], 250);
    assert_int_equal(r.fatal, 0);
    close_source(s);
    cluster_free(cl);
}

static void commit_resumes_a_new_member_at_the_next_offset(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-commit", PARTS);
    produce(cl, "t-commit", 0, 400); /* 100 per partition */
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    conf c;
    tl_source *s = open_source(&a, source_conf(&c, cl->boot, "g-commit", "t-commit", FAST_GROUP));
    assert_eventually(rec_get(&a, &a.delivered) >= 400, T_WAIT);
    assert_int_equal(SRC->commit(s, "t-commit", 0, 40), 0);
    for (int p = 1; p < PARTS; p++)
        assert_int_equal(SRC->commit(s, "t-commit", p, 100), 0);
    assert_int_not_equal(SRC->commit(s, "t-commit", 7, 1), 0); /* not assigned here */
    close_source(s);

    s = open_source(&b, source_conf(&c, cl->boot, "g-commit", "t-commit", FAST_GROUP));
    assert_eventually(rec_get(&b, &b.delivered) >= 60, T_WAIT);
    sleep_ms(1000); /* time for anything wrongly redelivered to arrive */
    assert_int_equal(b.delivered, 60);
    assert_int_equal(b.first[0], 40);
    assert_int_equal(b.next[0], 100);
    for (int p = 1; p < PARTS; p++)
        assert_int_equal(b.first[p], -1);
    assert_int_equal(b.bad, 0);
    close_source(s);
    cluster_free(cl);
}

static void pause_holds_deliveries_until_resume(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-pause", PARTS);
    rec r;
    rec_init(&r);
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-pause", "t-pause", NULL));
    assert_eventually(owned_count(&r) == PARTS, T_WAIT);
    SRC->pause(s, true);
    produce(cl, "t-pause", 0, 200);
    sleep_ms(1200);
    assert_int_equal(rec_get(&r, &r.delivered), 0);
    SRC->pause(s, false);
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    assert_int_equal(r.dups, 0);
    close_source(s);
    cluster_free(cl);
}

static void pause_before_assignment_holds_new_partitions(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-pause2", PARTS);
    produce(cl, "t-pause2", 0, 200);
    rec r;
    rec_init(&r);
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-pause2", "t-pause2", NULL));
    SRC->pause(s, true); /* before the group assigned anything */
    assert_eventually(owned_count(&r) == PARTS, T_WAIT);
    sleep_ms(1200);
    assert_int_equal(rec_get(&r, &r.delivered), 0);
    SRC->pause(s, false);
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    close_source(s);
    cluster_free(cl);
}

/*
 * A pause holds across a rebalance, and the resume reaches every partition parked on
 * the way: the half another member took while this one was paused fetches here again
 * when it comes back (a parked partition stays parked past its revoke otherwise).
 */
static void pause_holds_across_a_rebalance_and_resume_reaches_every_partition(void **state)
{
    (void)state;
    const char *topic = "t-pause3";
    cluster *cl = cluster_new(1, topic, PARTS);
    const char *const kafka[] = {FAST_GROUP_KV, "partition.assignment.strategy", "range", NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    conf ca, cb;
    tl_source *sa = open_source(&a, source_conf(&ca, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&a) == PARTS, T_WAIT);
    SRC->pause(sa, true);
    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    produce(cl, topic, 0, 400);
    assert_eventually(rec_get(&b, &b.delivered) == 200, T_WAIT);
    sleep_ms(500);
    assert_int_equal(rec_get(&a, &a.delivered), 0); /* assigned again while paused */
    SRC->pause(sa, false);
    assert_eventually(covered(&a, &b, 400) == 400, T_WAIT);
    sleep_ms(1200); /* auto commit lands before b leaves (see rebalance below) */
    SRC->stop(sb);
    assert_eventually(owned_count(&a) == PARTS, 30000);
    produce(cl, topic, 400, 400);
    assert_eventually(covered(&a, &b, 800) == 800, T_WAIT);
    assert_each_once(&a, &b, 800);
    SRC->close(sb);
    close_source(sa);
    cluster_free(cl);
}

/*
 * What the consumer queue held when the pause came is kept back, not delivered, and
 * comes first after the resume, in order. A revoke while paused drops what was kept of
 * its partitions: never delivered, so never committed, and the next owner (this member
 * again, for half of them) fetches it from the commit, with no duplicates.
 */
static void pause_keeps_back_what_was_queued_and_a_revoke_drops_it(void **state)
{
    (void)state;
    const char *topic = "t-stash";
    cluster *cl = cluster_new(1, topic, PARTS);
    produce(cl, topic, 0, 400);
    const char *const kafka[] = {FAST_GROUP_KV, "partition.assignment.strategy", "range", NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    a.first_delivery_ms = 1500; /* librdkafka queues the rest meanwhile */
    conf ca, cb;
    source_conf(&ca, cl->boot, topic, topic, kafka);
    conf_add(&ca, "batch", TL_PARAM_INT, NULL, 10);
    tl_source *sa = open_source(&a, &ca.p);
    assert_eventually(rec_get(&a, &a.deliveries) == 1, T_WAIT);
    SRC->pause(sa, true); /* while the first delivery still waits */
    int first = rec_get(&a, &a.delivered);
    assert_in_range(first, 1, 10);
    sleep_ms(2500);
    assert_int_equal(rec_get(&a, &a.delivered), first);

    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    assert_eventually(covered(&b, NULL, 400) + first >= 200, T_WAIT);
    assert_int_equal(rec_get(&a, &a.delivered), first);
    SRC->pause(sa, false);
    assert_eventually(covered(&a, &b, 400) == 400, T_WAIT);
    sleep_ms(500); /* anything delivered twice would show up */
    assert_each_once(&a, &b, 400);
    assert_int_equal(a.backwards + b.backwards, 0);
    close_source(sb);
    close_source(sa);
    cluster_free(cl);
}

static void broker_down_is_reported_and_consumption_resumes(void **state)
{
    (void)state;
    cluster *cl = cluster_new(3, "t-down", PARTS);
    produce(cl, "t-down", 0, 200);
    rec r;
    rec_init(&r);
    r.commit_each = true;
    conf c;
    tl_source *s = open_source(&r, source_conf(&c, cl->boot, "g-down", "t-down", FAST_GROUP));
    assert_eventually(covered(&r, NULL, 200) == 200, T_WAIT);
    /* Let auto commit land first, so a rejoin has committed offsets to resume from. */
    sleep_ms(1200);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_down(cl->mc, b);
    assert_eventually(rec_get(&r, &r.errors) >= 1, T_WAIT);
    sleep_ms(1000);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_up(cl->mc, b);
    produce(cl, "t-down", 200, 200);
    assert_eventually(covered(&r, NULL, 400) == 400, T_WAIT);
    print_message("    %d errors reported, last: %s\n", r.errors, r.last_err);
    assert_int_equal(r.fatal, 0);
    /*
     * At-least-once: a long outage may cost the member its place in the group (the
     * mock's coordinator goes down too, and it may refuse commits while the group
     * rejoins), and the member then reads again from what was committed: some of the
     * first 200 may come twice under load, never more than those.
     */
    assert_true(r.dups <= 200);
    assert_int_equal(r.bad, 0);
    close_source(s);
    cluster_free(cl);
}

/* Fetch and OffsetCommit fail a few times; every message still arrives and commits land. */
static void request_errors_are_retried_without_loss(void **state)
{
    (void)state;
    cluster *cl = cluster_new(1, "t-reqerr", PARTS);
    produce(cl, "t-reqerr", 0, 400);
    rd_kafka_mock_push_request_errors(
        cl->mc, 1 /* Fetch */, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    conf c;
    tl_source *s = open_source(&a, source_conf(&c, cl->boot, "g-reqerr", "t-reqerr", FAST_GROUP));
    assert_eventually(covered(&a, NULL, 400) == 400, T_WAIT);
    rd_kafka_mock_push_request_errors(cl->mc, 8 /* OffsetCommit */, 2,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(SRC->commit(s, "t-reqerr", p, 50), 0);
    close_source(s);
    assert_int_equal(a.fatal, 0);

    s = open_source(&b, source_conf(&c, cl->boot, "g-reqerr", "t-reqerr", FAST_GROUP));
    assert_eventually(rec_get(&b, &b.delivered) >= 200, T_WAIT);
    sleep_ms(500);
    print_message("    errors reported: %d then %d; last: %s\n", a.errors, b.errors, a.last_err);
    assert_int_equal(b.delivered, 200);
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(b.first[p], 50);
        assert_int_equal(b.next[p], 100);
    }
    close_source(s);
    cluster_free(cl);
}

/* A second member joins, then leaves; nothing is missed across the two rebalances. */
static void rebalance(const char *strategy, const char *topic, bool cooperative)
{
    cluster *cl = cluster_new(1, topic, PARTS);
    const char *const kafka[] = {FAST_GROUP_KV, "partition.assignment.strategy", strategy, NULL};
    rec a, b;
    rec_init(&a);
    rec_init(&b);
    a.commit_each = b.commit_each = true;
    conf ca, cb;
    int64_t t0 = now_ms();
    tl_source *sa = open_source(&a, source_conf(&ca, cl->boot, topic, topic, kafka));
    produce(cl, topic, 0, 400);
    assert_eventually(covered(&a, NULL, 400) == 400, T_WAIT);
    assert_int_equal(owned_count(&a), PARTS);
    /*
     * The 2.0.2 mock refuses OffsetCommit while the group is joining, which is when a
     * member revokes (a real broker accepts the current generation then; the real-broker
     * scenarios in tests/e2e cover that commit): let auto commit land first so the run
     * measures the hand-over, not the quirk. Seen with cooperative-sticky too.
     */
    sleep_ms(1200);

    tl_source *sb = open_source(&b, source_conf(&cb, cl->boot, topic, topic, kafka));
    assert_eventually(owned_count(&b) == PARTS / 2, 30000);
    assert_eventually(owned_count(&a) == PARTS / 2, T_WAIT);
    int64_t t_join = now_ms() - t0;
    produce(cl, topic, 400, 400);
    assert_eventually(covered(&a, &b, 800) == 800, T_WAIT);
    assert_true(rec_get(&b, &b.delivered) > 0);

    sleep_ms(1200);
    SRC->stop(sb);
    assert_eventually(owned_count(&a) == PARTS, 30000);
    produce(cl, topic, 800, 400);
    assert_eventually(covered(&a, &b, 1200) == 1200, T_WAIT);
    print_message("    %s: joined after %lld ms, all done after %lld ms; a: %d delivered, "
                  "%d dups; b: %d delivered\n",
                  strategy, (long long)t_join, (long long)(now_ms() - t0), a.delivered, a.dups,
                  b.delivered);
    if (a.errors + b.errors)
        print_message("    errors: %d, %d; last: %s | %s\n", a.errors, b.errors, a.last_err,
                      b.last_err);
    assert_true(a.revoked_ev >= 1);
    assert_true(a.assigned_ev >= 2);
    assert_int_equal(a.revoke_store_fail, 0);
    /* Eager gives everything back; cooperative only what moves. */
    assert_int_equal(a.first_revoke_n, cooperative ? PARTS / 2 : PARTS);
    /* Settled offsets were committed at every hand-over: nothing came twice. */
    assert_each_once(&a, &b, 1200);
    SRC->close(sb);
    close_source(sa);
    cluster_free(cl);
}

static void rebalance_eager_range_revokes_before_handover(void **state)
{
    (void)state;
    rebalance("range", "t-eager", false);
}

static void rebalance_cooperative_sticky_moves_only_what_it_must(void **state)
{
    (void)state;
    rebalance("cooperative-sticky", "t-coop", true);
}

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_auto_offset_store),
        cmocka_unit_test(open_names_the_bad_property),
        cmocka_unit_test(register_adds_source_and_sink),
        cmocka_unit_test(consume_delivers_every_message_with_its_fields),
        cmocka_unit_test(commit_resumes_a_new_member_at_the_next_offset),
        cmocka_unit_test(pause_holds_deliveries_until_resume),
        cmocka_unit_test(pause_before_assignment_holds_new_partitions),
        cmocka_unit_test(pause_holds_across_a_rebalance_and_resume_reaches_every_partition),
        cmocka_unit_test(pause_keeps_back_what_was_queued_and_a_revoke_drops_it),
        cmocka_unit_test(broker_down_is_reported_and_consumption_resumes),
        cmocka_unit_test(request_errors_are_retried_without_loss),
        cmocka_unit_test(rebalance_eager_range_revokes_before_handover),
        cmocka_unit_test(rebalance_cooperative_sticky_moves_only_what_it_must),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
