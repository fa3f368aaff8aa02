/*
 * Intake and backpressure: in-flight messages stay within max_in_flight plus one
 * batch; a source that backpressure holds past its hold limit (Kafka's poll interval)
 * is paused, and resumed once intake takes its held batches (or a revoke gives them
 * back); shorter holds pause nothing; one partition's backlog does not take the whole
 * window from the others (fair intake). The fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

static void script_sample_in_flight(fx *f)
{
    int64_t end = now_ms() + 15000;
    while (!all_settled(f)) {
        uint64_t n = stats(f).in_flight;
        if (n > f->seen_max_in_flight)
            f->seen_max_in_flight = n;
        STEP(now_ms() < end);
        sleep_ms(1);
    }
}

static void in_flight_stays_within_the_bound_plus_one_batch(void **state)
{
    fx *f = *state;
    f->sleep_ms = 2;
    start(f, "pressure", (opts){.max_in_flight = 10, .batch = 5, .ordering = "none"});
    for (int i = 0; i < 500; i++)
        push(f, 0, NULL, "ok");
    run(f, script_sample_in_flight);
    tl_service_stats s = stats(f);
    assert_true(f->seen_max_in_flight > 0);
    if (f->seen_max_in_flight > 10 + 5)
        fail_msg("%llu in flight", (unsigned long long)f->seen_max_in_flight);
    assert_true(s.paused >= 1);
    assert_int_equal(s.completed, 500);
    assert_int_equal(tl_memory_committed(f->topic, 0), 500);
    assert_balanced(f);
}

static void script_hold_past_the_limit(fx *f)
{
    STEP(wait_stat(f, STAT(source_pauses), 1, 5000));
    /* Paused: the deliver that waited went back, and nothing more comes in. */
    size_t pending = tl_memory_pending(f->topic);
    sleep_ms(300);
    STEP(pending > 0 && tl_memory_pending(f->topic) == pending);
    STEP(stat_at(f, STAT(in_flight)) == 8);
    STEP(stat_at(f, STAT(completed)) == 0);
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 5000));
}

/* 40 messages whose handlers hang until released, 8 in flight at most, on a source
 * that may wait 200 ms: the source is held as soon as it starts. */
static void start_held(fx *f, const char *topic, const char *drain)
{
    start(f, topic,
          (opts){.workers = 8,
                 .max_in_flight = 8,
                 .batch = 4,
                 .ordering = "none",
                 .drain = drain,
                 .source_extra = ", hold_limit: 200ms"});
    for (int i = 0; i < 40; i++)
        push(f, 0, NULL, "stuck");
}

/* A source whose thread may wait only so long (Kafka's poll interval) is paused when
 * backpressure holds it longer, and resumed once intake takes every held batch. */
static void a_source_held_past_its_hold_limit_is_paused_then_resumed(void **state)
{
    fx *f = *state;
    start_held(f, "hold_limit", NULL);
    run(f, script_hold_past_the_limit);
    tl_service_stats s = stats(f);
    assert_true(s.source_pauses >= 1);
    assert_int_equal(s.completed, 40);
    assert_int_equal(f->ncalls, 40); /* each message handled once */
    assert_int_equal(tl_memory_committed(f->topic, 0), 40);
    assert_balanced(f);
}

static bool hold_offsets_all_done(fx *f)
{
    return part_done(f, 0, 40) && all_settled(f) && tl_memory_committed(f->topic, 0) == 40;
}

static void script_revoke_while_held(fx *f)
{
    STEP(wait_stat(f, STAT(source_pauses), 1, 5000));
    /* Waits out the drain timeout (the handlers hang), gives the held batches back. */
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    atomic_store(&f->released, true);
    /* Read again from the committed offset: only a resumed source delivers it. */
    f->assign_rc = tl_memory_assign(f->topic, 0);
    STEP(wait_for(f, hold_offsets_all_done, 10000));
}

/* A revoke that takes back every held batch ends the hold: the source is resumed. */
static void a_revoke_that_ends_a_hold_resumes_the_source(void **state)
{
    fx *f = *state;
    start_held(f, "hold_revoke", "300ms");
    run(f, script_revoke_while_held);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_true(stats(f).source_pauses >= 1);
    assert_int_equal(tl_memory_committed(f->topic, 0), 40);
    assert_int_equal(tl_memory_outstanding(f->topic), 0);
}

/* Holds shorter than the limit pause nothing. */
static void holds_shorter_than_the_hold_limit_pause_nothing(void **state)
{
    fx *f = *state;
    f->sleep_ms = 2;
    start(f, "hold_short",
          (opts){.max_in_flight = 10,
                 .batch = 5,
                 .ordering = "none",
                 .source_extra = ", hold_limit: 10s"});
    for (int i = 0; i < 200; i++)
        push(f, 0, NULL, "ok");
    run(f, script_sample_in_flight);
    tl_service_stats s = stats(f);
    assert_true(s.paused >= 1);
    assert_int_equal(s.source_pauses, 0);
    assert_int_equal(s.completed, 200);
    assert_balanced(f);
}

static bool small_partitions_done(fx *f)
{
    for (int32_t p = 1; p < 8; p++)
        if (tl_memory_committed(f->topic, p) < 100)
            return false;
    return true;
}

static void script_small_partitions_first(fx *f)
{
    STEP(wait_for(f, small_partitions_done, 30000));
    f->committed_mid = tl_memory_committed(f->topic, 0);
}

/* A partition's backlog, delivered first and in one long run (as Kafka fetches it),
 * does not take the whole window: seven small partitions run beside it, one message
 * at a time each, and finish long before it. */
static void a_backlog_partition_leaves_room_for_the_others(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    start(f, "fair",
          (opts){.workers = 8,
                 .max_in_flight = 200,
                 .partitions = 8,
                 .batch = 64,
                 .handler = "work",
                 .route_extra = "    params: { ms: \"1\" }\n",
                 .source_extra = ", run: 1000000"});
    for (int i = 0; i < 10000; i++)
        push(f, 0, NULL, "x");
    for (int32_t p = 1; p < 8; p++)
        for (int i = 0; i < 100; i++)
            push(f, p, NULL, "x");
    run(f, script_small_partitions_first);
    /* Without fair intake the small ones start only after the backlog's 10,000. */
    if (f->committed_mid >= 2000)
        fail_msg("partition 0 had %lld committed when the others finished",
                 (long long)f->committed_mid);
    assert_int_equal(tl_memory_outstanding(f->topic), 0);
}

/* The memory source as the Kafka source is: it cannot stop single partitions. */
static tl_source_ops fifo_ops;

/* Registers fifo_ops as the source type memory_fifo. */
static void add_fifo_source(fx *f)
{
    fifo_ops = tl_memory_source_ops;
    fifo_ops.type = "memory_fifo";
    fifo_ops.pause_partitions = NULL;
    assert_int_equal(tl_registry_add_source(f->reg, &fifo_ops), 0);
}

/* The same backlog from a source that cannot stop single partitions: with a budget
 * (loop.kept_back_mb) intake keeps back what it delivers, so that it reads past the
 * backlog's long run to the others' messages instead of waiting behind it. */
static void a_backlog_partition_leaves_room_when_the_source_cannot_pause_it(void **state)
{
    fx *f = *state;
    add_fifo_source(f);
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    start_yaml(f, "fifo",
               "service: t\n"
               "loop: { workers: 8, max_in_flight: 200, kept_back_mb: 16 }\n"
               "sources:\n"
               "  in: { type: memory_fifo, name: fifo, partitions: 8, batch: 64, run: 1000000 }\n"
               "routes:\n"
               "  - source: in\n"
               "    handler: work\n"
               "    params: { ms: \"1\" }\n");
    for (int i = 0; i < 10000; i++)
        push(f, 0, NULL, "x");
    for (int32_t p = 1; p < 8; p++)
        for (int i = 0; i < 100; i++)
            push(f, p, NULL, "x");
    run(f, script_small_partitions_first);
    /* Kept back only up to max_in_flight, the small ones waited behind the 10,000. */
    if (f->committed_mid >= 2000)
        fail_msg("partition 0 had %lld committed when the others finished",
                 (long long)f->committed_mid);
    assert_int_equal(tl_memory_outstanding(f->topic), 0);
}

static bool last_partition_done(fx *f)
{
    return tl_memory_committed(f->topic, 7) == 150;
}

static void script_last_partition_beside_stuck_ones(fx *f)
{
    STEP(wait_for(f, last_partition_done, 5000));
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 10000));
}

/* Under ordering partition a partition takes at most its share of the window from the
 * start, not only once the window is half full: what it holds past that would only
 * wait its turn, while a partition the source delivers last would find the window
 * full. Seven partitions whose first handler hangs, delivered first and in long runs;
 * the eighth still runs all its messages beside them. */
static void under_ordering_partition_a_partition_delivered_last_still_gets_its_share(void **state)
{
    fx *f = *state;
    add_fifo_source(f);
    start_yaml(f, "serial",
               "service: t\n"
               "loop: { workers: 8, max_in_flight: 400, kept_back_mb: 16 }\n"
               "sources:\n"
               "  in: { type: memory_fifo, name: serial, partitions: 8, batch: 64, run: 1000000 }\n"
               "routes:\n"
               "  - source: in\n"
               "    handler: h\n"
               "    ordering: partition\n"
               "    timeout: 30s\n");
    for (int32_t p = 0; p < 8; p++)
        for (int i = 0; i < 150; i++)
            push(f, p, NULL, p < 7 && i == 0 ? "stuck" : "quick");
    for (int32_t p = 0; p < 7; p++)
        atomic_store(&f->quick[p].next, 1); /* the quick ones start after the stuck one */
    run(f, script_last_partition_beside_stuck_ones);
    /* Capped only once the window was half full, partition 0 took 150 and five others
     * 50 each: the window was full of stuck partitions and the eighth never came in. */
    for (int32_t p = 0; p < 8; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 150);
    assert_int_equal(atomic_load(&f->quick_out_of_order), 0);
    assert_int_equal(tl_memory_outstanding(f->topic), 0);
}

/* rate: 1000/s on 2,000 messages: intake takes them in at that pace (about 2 s, the
 * first hundredth of a second's worth at once), every one completes, none is failed
 * or dropped, and everything is committed. */
static void a_rate_limit_paces_intake_and_loses_nothing(void **state)
{
    fx *f = *state;
    start(f, "rate",
          (opts){.workers = 8,
                 .max_in_flight = 1000,
                 .partitions = 4,
                 .batch = 64,
                 .ordering = "none",
                 .route_extra = "    rate: 1000/s\n"});
    for (int i = 0; i < 2000; i++)
        push(f, i % 4, NULL, "ok");
    int64_t t0 = now_ms();
    run(f, script_until_all_settled);
    int64_t took = f->run_end_ms - t0;
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 2000);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.dropped, 0);
    if (took < 1800 || took > 15000)
        fail_msg("2,000 messages at 1000/s took %lld ms", (long long)took);
    for (int32_t p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 500);
    assert_balanced(f);
}

/* When the paced and the unlimited route of the pace test had everything committed. */
static int64_t free_done_ms, paced_done_ms;

static bool route_done(const char *topic, int64_t n, int64_t *at)
{
    if (*at == 0 && tl_memory_committed(topic, 0) == n)
        *at = now_ms();
    return *at != 0;
}

static bool free_and_paced_done(fx *f)
{
    bool free_done = route_done("paced_free", 2000, &free_done_ms);
    return route_done("paced_1000", 2000, &paced_done_ms) && free_done && stats(f).in_flight == 0;
}

/* /metrics and /stats once the other two routes are done, the slow one still waiting. */
static char metrics_seen[16384], stats_seen[16384];

static void script_three_paces(fx *f)
{
    free_done_ms = paced_done_ms = 0;
    int port = tl_service_admin_port(f->svc);
    /* Generous: under valgrind too. */
    STEP(wait_for(f, free_and_paced_done, 30000));
    STEP(http_get(port, "/metrics", metrics_seen, sizeof(metrics_seen)) == 200);
    STEP(http_get(port, "/stats", stats_seen, sizeof(stats_seen)) == 200);
}

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" not in:\n%s", part, text);
}

/* Three routes of one service on their own sources: one at rate: 1/min (its first
 * message goes, the next two wait a minute), one with 2,000 messages at 1000/s (burst
 * 1) and one with 2,000 without a rate. The other two keep their own pace while the
 * slow one waits: the unlimited one is not held behind its batches, and the one at
 * 1000/s not slowed by its minute-long wait (one timer serves every route). What the
 * slow route still holds at the stop is given back uncommitted, for the next run. */
static void routes_with_and_without_rate_limits_keep_their_own_paces(void **state)
{
    fx *f = *state;
    start_yaml(f, "paced_slow",
               "service: t\n"
               "loop: { workers: 4, max_in_flight: 1000 }\n"
               "sources:\n"
               "  slow: { type: memory, name: paced_slow, partitions: 1, batch: 16 }\n"
               "  paced: { type: memory, name: paced_1000, partitions: 1, batch: 16 }\n"
               "  free: { type: memory, name: paced_free, partitions: 1, batch: 16 }\n"
               "routes:\n"
               "  - { source: slow, handler: h, ordering: none, rate: 1/min }\n"
               "  - { source: paced, handler: h, ordering: none, rate: 1000/s, burst: 1 }\n"
               "  - { source: free, handler: h, ordering: none }\n"
               "admin: { listen: \"127.0.0.1:0\" }\n");
    for (int i = 0; i < 3; i++)
        assert_true(tl_memory_push("paced_slow", 0, NULL, "ok", 2) >= 0);
    for (int i = 0; i < 2000; i++) {
        assert_true(tl_memory_push("paced_1000", 0, NULL, "ok", 2) >= 0);
        assert_true(tl_memory_push("paced_free", 0, NULL, "ok", 2) >= 0);
    }
    int64_t t0 = now_ms();
    /* Here the unlimited route takes about 0.3 s and the paced one 2-3 s. Held behind
     * the slow route's batch, the unlimited one waited its minute; with the one timer
     * armed for the slow route's wait alone, the paced one went a message per
     * housekeeping round (20/s): the script's wait fails either way. */
    run(f, script_three_paces);
    if (paced_done_ms - t0 < 1800)
        fail_msg("2,000 messages at 1000/s took %lld ms", (long long)(paced_done_ms - t0));
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 4001);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(tl_memory_committed("paced_slow", 0), 1);
    for (const char *const *t =
             (const char *const[]){"paced_slow", "paced_1000", "paced_free", NULL};
         *t; t++)
        assert_int_equal(tl_memory_outstanding(*t), 0);
    /* The slow route waits for its rate, the paced one no longer does, and the unlimited
     * one has no such sample. */
    const char *gauge =
        "taskloop_route_rate_throttled{route=\"%d\",source=\"%s\",handler=\"h\"} %d\n";
    char want[160];
    snprintf(want, sizeof(want), gauge, 0, "slow", 1);
    assert_has(metrics_seen, want);
    snprintf(want, sizeof(want), gauge, 1, "paced", 0);
    assert_has(metrics_seen, want);
    assert_null(strstr(metrics_seen, "taskloop_route_rate_throttled{route=\"2\""));
    assert_has(stats_seen, "\"rate_throttled\":true");
    assert_has(stats_seen, "\"rate_throttled\":false");
    assert_has(stats_seen, "\"rate_throttled\":null");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(in_flight_stays_within_the_bound_plus_one_batch),
        T(a_source_held_past_its_hold_limit_is_paused_then_resumed),
        T(holds_shorter_than_the_hold_limit_pause_nothing),
        T(a_revoke_that_ends_a_hold_resumes_the_source),
        T(a_backlog_partition_leaves_room_for_the_others),
        T(a_backlog_partition_leaves_room_when_the_source_cannot_pause_it),
        T(under_ordering_partition_a_partition_delivered_last_still_gets_its_share),
        T(a_rate_limit_paces_intake_and_loses_nothing),
        T(routes_with_and_without_rate_limits_keep_their_own_paces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
