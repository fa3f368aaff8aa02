/*
 * Failures (on_error): a failing handler is retried in place with doubling backoff;
 * past its retries its message goes to the error target with the tl-* headers, or,
 * with no target, is dropped and settled. With on_error.via, retries go through that
 * target instead and come back no earlier than due, holding nothing back meanwhile
 * (the scripts below play the broker: they move what the route sent to via into the
 * route's own topic, as a source reading that topic would get it). A route with
 * `delay:` runs each message no earlier than its timestamp plus the delay, the same
 * way. The fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

static void a_failing_handler_is_retried_with_doubling_backoff_until_it_succeeds(void **state)
{
    fx *f = *state;
    start(f, "retry", (opts){.route_extra = "    on_error: { retries: 3, backoff: 50ms }\n"});
    push(f, 0, NULL, "flaky");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.failed, 2);
    assert_int_equal(f->ncalls, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(f->calls[i].attempt, i + 1);
    assert_true(f->calls[1].start_ms - f->calls[0].end_ms >= 50);
    assert_true(f->calls[2].start_ms - f->calls[1].end_ms >= 100);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_balanced(f);
}

static void a_failure_past_its_retries_goes_to_the_error_target(void **state)
{
    fx *f = *state;
    start(
        f, "failing",
        (opts){.route_extra =
                   "    on_error: { retries: 2, backoff: 10ms, then: \"memory:failing.dlq\" }\n"});
    push(f, 0, "kf", "fail-payload");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(s.completed, 0);
    assert_int_equal(tl_memory_sink_count("failing.dlq"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("failing.dlq", 0, &r), 0);
    assert_memory_equal(r->payload, "fail-payload", r->len);
    assert_memory_equal(r->key, "kf", r->key_len);
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-error", "boom 0");
    assert_header(r, "tl-attempt", "3");
    assert_header(r, "tl-origin-topic", "failing");
    assert_header(r, "tl-origin-offset", "0");
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_balanced(f);
}

static void a_failure_with_no_target_is_dropped_and_settled(void **state)
{
    fx *f = *state;
    start(f, "dropping", (opts){.route_extra = "    on_error: { retries: 0 }\n"});
    push(f, 0, NULL, "ok");
    push(f, 0, NULL, "fail");
    push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.rerouted, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
    assert_balanced(f);
}

#define VIA_ROUTE(name)                                                                            \
    "    on_error: { retries: 2, backoff: 200ms, via: \"memory:" name ".retry\", then: "           \
    "\"memory:" name ".dlq\" }\n"

/* Wall-clock ms minus monotonic ms, to read the handler's start times as wall clock. */
static int64_t wall_offset;

/* Moves the retry at index i of store into partition 1 of the fixture's topic. */
static void bring_back(fx *f, const char *store, size_t i)
{
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get(store, i, &r), 0);
    tl_out_msg m = {r->payload, r->len, r->key, r->key_len, r->headers, r->nheaders};
    assert_true(tl_memory_push_msg(f->topic, 1, &m) >= 0);
    tl_memory_record_free(r);
}

static bool two_retries_sent(fx *f)
{
    (void)f;
    return tl_memory_sink_count("via.retry") >= 2;
}

/* Brings each retry back as soon as it is sent, then waits for the end. */
static void script_via_broker(fx *f)
{
    STEP(wait_for(f, two_retries_sent, 10000) || tl_memory_sink_count("via.retry") == 1);
    size_t moved = 0;
    for (int64_t end = now_ms() + 10000; moved < 2 && now_ms() < end; sleep_ms(1))
        while (moved < tl_memory_sink_count("via.retry"))
            bring_back(f, "via.retry", moved++);
    STEP(moved == 2);
    STEP(wait_for(f, all_settled, 10000));
}

static void a_retry_through_via_runs_no_earlier_than_due_while_its_partition_goes_on(void **state)
{
    fx *f = *state;
    wall_offset = wall_ms() - now_ms();
    start(f, "via", (opts){.partitions = 2, .route_extra = VIA_ROUTE("via")});
    push(f, 0, "k", "fail");
    for (int i = 0; i < 3; i++)
        push(f, 0, NULL, "ok");
    run(f, script_via_broker);
    /* The failed message's partition went on at once: the next three ran before its
     * second attempt. */
    const call *second = find_call(f, 1, 0), *third = find_call(f, 1, 1);
    assert_non_null(second);
    assert_non_null(third);
    for (int64_t o = 1; o <= 3; o++)
        assert_true(find_call(f, 0, o)->end_ms <= second->start_ms);
    /* Attempts count on, and each ran no earlier than its due time (ms rounding). */
    assert_int_equal(second->attempt, 2);
    assert_int_equal(third->attempt, 3);
    tl_memory_record *r = NULL;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(tl_memory_sink_get("via.retry", i, &r), 0);
        assert_header(r, "tl-reason", "retry");
        assert_header(r, "tl-attempt", i == 0 ? "1" : "2");
        assert_header(r, "tl-origin-topic", "via");
        assert_header(r, "tl-origin-partition", "0");
        assert_header(r, "tl-origin-offset", "0");
        assert_header(r, "tl-first-error", "boom 0");
        long long due = header_num(r, "tl-due-ms");
        /* The backoff doubles: 200 ms after the first attempt, 400 after the second. */
        assert_true(due - r->timestamp_ms >= (i == 0 ? 190 : 390));
        assert_true(due - r->timestamp_ms <= (i == 0 ? 400 : 600));
        const call *c = i == 0 ? second : third;
        assert_true(c->start_ms + wall_offset + 2 >= due);
        tl_memory_record_free(r);
    }
    /* The last attempt goes to then, with the whole story: first and last error,
     * attempts, the first delivery's origin and time. */
    assert_int_equal(tl_memory_sink_count("via.dlq"), 1);
    assert_int_equal(tl_memory_sink_get("via.dlq", 0, &r), 0);
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-attempt", "3");
    assert_header(r, "tl-error", "boom 1");
    assert_header(r, "tl-first-error", "boom 0");
    assert_header(r, "tl-origin-topic", "via");
    assert_header(r, "tl-origin-offset", "0");
    assert_true(tl_memory_record_header(r, "tl-due-ms", NULL) == NULL);
    assert_true(r->timestamp_ms - header_num(r, "tl-first-seen-ms") >= 600);
    tl_memory_record_free(r);
    tl_service_stats s = stats(f);
    assert_int_equal(s.retries_delayed, 2);
    assert_int_equal(s.retries_waiting, 0);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.completed, 3);
    assert_int_equal(tl_memory_committed(f->topic, 0), 4);
    assert_int_equal(tl_memory_committed(f->topic, 1), 2);
    assert_balanced(f);
}

/* A retry as via would have it, due in ms from now (or at the given wall time). */
static void push_retry(fx *f, int32_t partition, const char *payload, long long due_ms,
                       const char *attempt)
{
    char due[24];
    snprintf(due, sizeof(due), "%lld", due_ms);
    tl_header h[] = {{"tl-reason", "retry", 5},       {"tl-attempt", attempt, strlen(attempt)},
                     {"tl-due-ms", due, strlen(due)}, {"tl-origin-topic", "elsewhere", 9},
                     {"tl-origin-partition", "4", 1}, {"tl-origin-offset", "77", 2}};
    tl_out_msg m = {.payload = payload, .len = strlen(payload), .headers = h, .nheaders = 6};
    assert_true(tl_memory_push_msg(f->topic, partition, &m) >= 0);
}

static bool one_waiting(fx *f)
{
    return stats(f).retries_waiting == 1 && ncalls(f) >= 1;
}

static long long due_at;

/* Pushes once the service runs (a slow start, as under valgrind, must not make the
 * retry due before it is taken in). */
static void script_waiting_then_settled(fx *f)
{
    due_at = wall_ms() + 150; /* within the first retry's 200 ms */
    push_retry(f, 1, "ok", due_at, "1");
    push(f, 1, NULL, "ok"); /* behind it in its own partition */
    push(f, 0, NULL, "ok");
    STEP(wait_for(f, one_waiting, 5000));
    STEP(wait_for(f, all_settled, 10000));
}

static void a_retry_not_yet_due_holds_no_worker_and_no_message_behind_it(void **state)
{
    fx *f = *state;
    wall_offset = wall_ms() - now_ms();
    start(f, "due", (opts){.workers = 1, .partitions = 2, .route_extra = VIA_ROUTE("due")});
    run(f, script_waiting_then_settled);
    long long due = due_at;
    const call *retry = find_call(f, 1, 0), *behind = find_call(f, 1, 1);
    assert_non_null(retry);
    assert_non_null(behind);
    assert_true(behind->end_ms <= retry->start_ms);
    assert_true(find_call(f, 0, 0)->end_ms <= retry->start_ms);
    assert_true(retry->start_ms + wall_offset + 2 >= due);
    assert_int_equal(retry->attempt, 2);
    assert_int_equal(stats(f).retries_waiting, 0);
    assert_balanced(f);
}

static bool three_done(fx *f)
{
    return ncalls(f) >= 3 && all_settled(f);
}

static void script_three_done(fx *f)
{
    STEP(wait_for(f, three_done, 5000));
}

/* A due time further than the route's longest retry delay (another clock, or made up)
 * waits that delay at most; retry headers that do not parse make a new message. */
static void retry_headers_from_elsewhere_cannot_hold_a_message_for_long(void **state)
{
    fx *f = *state;
    start(f, "odd", (opts){.partitions = 2, .route_extra = VIA_ROUTE("odd")});
    int64_t t0 = now_ms();
    push_retry(f, 1, "ok", wall_ms() + 7LL * 24 * 3600 * 1000, "1"); /* a week away */
    push_retry(f, 1, "ok", 12345, "x");                              /* not a number */
    push_retry(f, 1, "ok", wall_ms() + 3600 * 1000, "99");           /* past its retries */
    run(f, script_three_done);
    const call *week = find_call(f, 1, 0), *bad = find_call(f, 1, 1), *late = find_call(f, 1, 2);
    assert_true(week->start_ms - t0 < 1000); /* 400 ms: the second retry's delay */
    assert_true(late->start_ms - t0 < 1000);
    assert_int_equal(week->attempt, 2);
    assert_int_equal(bad->attempt, 1);
    assert_int_equal(late->attempt, 100);
    assert_balanced(f);
}

static bool waiting(fx *f)
{
    return stats(f).retries_waiting == 1;
}

static bool none_waiting(fx *f)
{
    return stats(f).retries_waiting == 0 && stats(f).in_flight == 0;
}

static bool one_done(fx *f)
{
    return ncalls(f) >= 1 && all_settled(f);
}

/* Revoked while it waits: dropped unrun and uncommitted; assigned again, it comes back,
 * waits for the same due time and runs then. */
static void script_revoke_a_waiting_retry(fx *f)
{
    STEP(wait_for(f, waiting, 5000));
    f->revoke_rc = tl_memory_revoke(f->topic, 1);
    STEP(wait_for(f, none_waiting, 5000));
    f->p0_calls_at_revoke = ncalls(f);
    f->committed_at_revoke = tl_memory_committed(f->topic, 1);
    f->assign_rc = tl_memory_assign(f->topic, 1);
    STEP(wait_for(f, one_done, 5000));
}

static void a_waiting_retry_of_a_revoked_partition_is_given_back_unrun(void **state)
{
    fx *f = *state;
    wall_offset = wall_ms() - now_ms();
    start(f, "revoked", (opts){.partitions = 2, .route_extra = VIA_ROUTE("revoked")});
    long long due = wall_ms() + 350; /* within the second retry's 400 ms */
    push_retry(f, 1, "ok", due, "2");
    run(f, script_revoke_a_waiting_retry);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->p0_calls_at_revoke, 0);
    assert_true(f->committed_at_revoke <= 0); /* nothing committed past it */
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].attempt, 3);
    assert_true(f->calls[0].start_ms + wall_offset + 2 >= due);
    assert_int_equal(tl_memory_committed(f->topic, 1), 1);
}

/* ---------------------------------------------------------------- delay */

static uint64_t waiting_mid;
static size_t calls_mid;

static void script_delayed(fx *f)
{
    sleep_ms(150);
    waiting_mid = stats(f).delayed_waiting;
    calls_mid = ncalls(f);
    STEP(wait_for(f, all_settled, 5000));
}

static void a_route_delay_runs_each_message_no_earlier_than_its_timestamp_plus_it(void **state)
{
    fx *f = *state;
    f->sleep_ms = 0;
    start(f, "delayed", (opts){.ordering = "key", .route_extra = "    delay: 400ms\n"});
    int64_t t0 = now_ms();
    push(f, 0, "a", "ok0");
    push(f, 0, "b", "ok1");
    push(f, 0, "a", "ok2");
    run(f, script_delayed);
    /* Meanwhile they waited in no lane, none ran. */
    assert_int_equal(waiting_mid, 3);
    assert_int_equal(calls_mid, 0);
    assert_int_equal(ncalls(f), 3);
    for (int64_t off = 0; off < 3; off++) {
        const call *c = find_call(f, 0, off);
        assert_non_null(c);
        assert_true(c->start_ms - t0 >= 399);
    }
    /* Key a's two kept their order. */
    assert_true(find_call(f, 0, 0)->start_ms <= find_call(f, 0, 2)->start_ms);
    assert_int_equal(stats(f).delayed_waiting, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
    assert_balanced(f);
}

/* Many delayed messages of one key, taken in over several milliseconds of the wall
 * clock: they run in their offsets' order, one after the other. */
static void delayed_messages_of_one_key_run_in_their_order(void **state)
{
    fx *f = *state;
    f->sleep_ms = 0;
    start(f, "delayedmany",
          (opts){.ordering = "key", .batch = 8, .route_extra = "    delay: 50ms\n"});
    const int n = 400;
    for (int i = 0; i < n; i++)
        push(f, 0, "a", "ok");
    run(f, script_until_all_settled);
    assert_int_equal(ncalls(f), n);
    for (int i = 0; i < n; i++)
        if (f->calls[i].offset != i)
            fail_msg("call %d ran offset %lld", i, (long long)f->calls[i].offset);
    assert_int_equal(f->max_key[0], 1);
    assert_balanced(f);
}

/* A message whose time came already (an old timestamp, as a replayed backlog has)
 * still runs after the earlier messages of its key that wait for theirs. */
static void a_message_past_its_delay_waits_behind_its_keys_delayed_ones(void **state)
{
    fx *f = *state;
    f->sleep_ms = 0;
    start(f, "delayedold", (opts){.ordering = "key", .route_extra = "    delay: 300ms\n"});
    int64_t t0 = now_ms();
    push(f, 0, "a", "ok-new");
    tl_out_msg old = {"ok-old", 6, "a", 1, NULL, 0};
    assert_true(tl_memory_push_dated(f->topic, 0, &old, wall_ms() - 60000) == 1);
    push(f, 0, "b", "ok-other-key");
    tl_memory_push_dated(f->topic, 0, &(tl_out_msg){"ok-old-b", 8, "b", 1, NULL, 0},
                         wall_ms() - 60000);
    run(f, script_until_all_settled);
    assert_int_equal(ncalls(f), 4);
    const call *c0 = find_call(f, 0, 0), *c1 = find_call(f, 0, 1);
    assert_true(c0->start_ms - t0 >= 299);
    assert_true(c1->start_ms >= c0->end_ms);
    /* Key b's old message waited behind b's new one too (the partition's delayed
     * messages come due in their order). */
    assert_true(find_call(f, 0, 3)->start_ms >= find_call(f, 0, 2)->start_ms);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_failing_handler_is_retried_with_doubling_backoff_until_it_succeeds),
        T(a_failure_past_its_retries_goes_to_the_error_target),
        T(a_failure_with_no_target_is_dropped_and_settled),
        T(a_retry_through_via_runs_no_earlier_than_due_while_its_partition_goes_on),
        T(a_retry_not_yet_due_holds_no_worker_and_no_message_behind_it),
        T(retry_headers_from_elsewhere_cannot_hold_a_message_for_long),
        T(a_waiting_retry_of_a_revoked_partition_is_given_back_unrun),
        T(a_route_delay_runs_each_message_no_earlier_than_its_timestamp_plus_it),
        T(delayed_messages_of_one_key_run_in_their_order),
        T(a_message_past_its_delay_waits_behind_its_keys_delayed_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
