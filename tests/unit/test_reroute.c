/*
 * Reroutes: what a rerouted message carries (its payload, key and headers, and the
 * tl-* headers saying where it came from and why), the targets it goes to, and
 * targets that are down: a held or refused send keeps the message unsettled and its
 * offset uncommitted, and a refused one is tried again. The fixture is
 * service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

/* ------------------------------------------------------------ what a reroute carries */

#define DLQ_ROUTE(store) "    on_error: { retries: 0, then: \"memory:" store "\" }\n"

/* The only record of store, which the caller frees; fails unless there is exactly one. */
static tl_memory_record *only_record(const char *store)
{
    assert_int_equal(tl_memory_sink_count(store), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get(store, 0, &r), 0);
    return r;
}

/* How many headers of the record are called name. */
static size_t header_count(const tl_memory_record *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        n += strcmp(r->headers[i].name, name) == 0;
    return n;
}

static void a_rerouted_message_keeps_its_own_headers_and_replaces_old_tl_ones(void **state)
{
    fx *f = *state;
    start(f, "own_headers", (opts){.route_extra = DLQ_ROUTE("own_headers.dlq")});
    /* As if it had been rerouted once already, by an earlier service. */
    tl_header h[] = {{"trace", "t-1", 3},
                     {"tl-reason", "stalled", 7},
                     {"tl-attempt", "9", 1},
                     {"tl-redrive-count", "2", 1}};
    tl_out_msg m = {
        .payload = "fail", .len = 4, .key = "k", .key_len = 1, .headers = h, .nheaders = 4};
    assert_int_equal(tl_memory_push_msg(f->topic, 0, &m), 0);
    run(f, script_until_all_settled);
    tl_memory_record *r = only_record("own_headers.dlq");
    assert_header(r, "trace", "t-1");
    /* Not one of the reroute's own: `taskloop redrive` counts on it coming back. */
    assert_header(r, "tl-redrive-count", "2");
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-attempt", "1");
    assert_int_equal(header_count(r, "tl-reason"), 1);
    assert_int_equal(header_count(r, "tl-attempt"), 1);
    assert_int_equal(r->key_len, 1);
    assert_memory_equal(r->key, "k", 1);
    tl_memory_record_free(r);
    assert_balanced(f);
}

static void tl_origin_headers_name_the_topic_partition_and_offset_it_came_from(void **state)
{
    fx *f = *state;
    start(f, "origin", (opts){.partitions = 3, .route_extra = DLQ_ROUTE("origin.dlq")});
    push(f, 0, NULL, "ok");
    push(f, 2, NULL, "ok");
    push(f, 2, NULL, "ok");
    push(f, 2, NULL, "fail");
    run(f, script_until_all_settled);
    tl_memory_record *r = only_record("origin.dlq");
    assert_header(r, "tl-origin-topic", "origin");
    assert_header(r, "tl-origin-partition", "2");
    assert_header(r, "tl-origin-offset", "2");
    tl_memory_record_free(r);
    assert_balanced(f);
}

/* Retries at 100 ms then 200 ms: the reroute comes 300 ms or more after the delivery. */
static void tl_first_seen_ms_is_the_first_delivery_not_the_last_attempt(void **state)
{
    fx *f = *state;
    start(f, "first_seen",
          (opts){.route_extra = "    on_error: { retries: 2, backoff: 100ms, "
                                "then: \"memory:first_seen.dlq\" }\n"});
    int64_t before = wall_ms();
    push(f, 0, NULL, "fail");
    run(f, script_until_all_settled);
    tl_memory_record *r = only_record("first_seen.dlq");
    assert_header(r, "tl-attempt", "3");
    long long first_seen = header_num(r, "tl-first-seen-ms");
    assert_true(first_seen >= before);
    assert_true(r->timestamp_ms - first_seen >= 300);
    tl_memory_record_free(r);
    assert_balanced(f);
}

/* The target named name among the service's targets; fails when it is not there. */
static tl_target_stats target_named(fx *f, const char *name)
{
    tl_target_stats ts[4];
    size_t n = tl_service_targets(f->svc, ts, 4);
    for (size_t i = 0; i < n && i < 4; i++)
        if (strcmp(ts[i].target, name) == 0)
            return ts[i];
    fail_msg("no target %s", name);
    return ts[0];
}

static void stalled_and_failed_messages_go_to_their_own_targets_counted_per_target(void **state)
{
    fx *f = *state;
    start(f, "split",
          (opts){.ordering = "none",
                 .timeout = "200ms",
                 .route_extra = "    on_stall: { reroute: \"memory:split.stalled\" }\n"
                                "    on_error: { retries: 0, then: \"memory:split.dlq\" }\n"});
    push(f, 0, NULL, "stall");
    push(f, 0, NULL, "fail");
    push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    tl_memory_record *r = only_record("split.stalled");
    assert_header(r, "tl-reason", "stalled");
    assert_header(r, "tl-origin-offset", "0");
    tl_memory_record_free(r);
    r = only_record("split.dlq");
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-origin-offset", "1");
    tl_memory_record_free(r);
    assert_int_equal(tl_service_targets(f->svc, NULL, 0), 2);
    tl_target_stats stalled = target_named(f, "memory:split.stalled");
    tl_target_stats dlq = target_named(f, "memory:split.dlq");
    assert_int_equal(stalled.rerouted, 1);
    assert_int_equal(dlq.rerouted, 1);
    assert_int_equal(stalled.errors + dlq.errors, 0);
    assert_int_equal(stats(f).completed, 1);
    assert_balanced(f);
}

/* ------------------------------------------------------------ targets down */

#define DOWN_ROUTE "    on_error: { retries: 0, then: \"memory:down.dlq\" }\n"

/* Offsets 0-2 complete, 3 fails (to the target), 4-9 complete. */
static void push_with_failure_at_3(fx *f)
{
    for (int i = 0; i < 10; i++)
        push(f, 0, NULL, i == 3 ? "fail" : "ok");
}

static bool nine_completed_one_held(fx *f)
{
    return stats(f).completed == 9 && tl_memory_sink_held("down.dlq") == 1;
}

static void script_hold(fx *f)
{
    STEP(wait_for(f, nine_completed_one_held, 3000));
    sleep_ms(250); /* several commit rounds */
    f->committed_mid = tl_memory_committed(f->topic, 0);
    STEP(tl_memory_sink_release_held("down.dlq") == 1);
    STEP(wait_for(f, all_settled, 3000));
}

static void a_held_reroute_keeps_the_commit_at_its_offset_until_acknowledged(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_HOLD), 0);
    start(f, "down_hold", (opts){.route_extra = DOWN_ROUTE});
    push_with_failure_at_3(f);
    run(f, script_hold);
    assert_int_equal(f->committed_mid, 3);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    tl_service_stats s = stats(f);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("down.dlq"), 1);
    assert_balanced(f);
}

static void script_refuse(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 9, 3000));
    STEP(wait_stat(f, STAT(reroute_errors), 2, 3000));
    sleep_ms(100);
    f->committed_mid = tl_memory_committed(f->topic, 0);
    STEP(stat_at(f, STAT(rerouted)) == 0);
    tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_OK);
    STEP(wait_for(f, all_settled, 5000));
}

static void a_refused_reroute_is_retried_and_commits_nothing_past_it(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_memory_sink_set_mode("down.dlq", TL_MEMSINK_FAIL), 0);
    start(f, "down_fail", (opts){.route_extra = DOWN_ROUTE});
    push_with_failure_at_3(f);
    run(f, script_refuse);
    assert_int_equal(f->committed_mid, 3);
    tl_service_stats s = stats(f);
    assert_true(s.reroute_errors >= 2);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("down.dlq"), 1);
    tl_target_stats ts[2];
    assert_int_equal(tl_service_targets(f->svc, ts, 2), 1);
    assert_int_equal(ts[0].rerouted, 1);
    assert_int_equal(ts[0].errors, s.reroute_errors);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_rerouted_message_keeps_its_own_headers_and_replaces_old_tl_ones),
        T(tl_origin_headers_name_the_topic_partition_and_offset_it_came_from),
        T(tl_first_seen_ms_is_the_first_delivery_not_the_last_attempt),
        T(stalled_and_failed_messages_go_to_their_own_targets_counted_per_target),
        T(a_held_reroute_keeps_the_commit_at_its_offset_until_acknowledged),
        T(a_refused_reroute_is_retried_and_commits_nothing_past_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
