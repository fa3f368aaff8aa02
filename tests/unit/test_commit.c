/*
 * Commits: a partition's committed position is the lowest unsettled offset, it only
 * moves forward, it can be read from another thread, and messages that settle out of
 * offset order never carry it past one that has not; with a source whose commits count
 * once acknowledged, refused commits stop intake at the window. The fixture is
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

static void every_message_completes_and_commits_reach_the_end(void **state)
{
    fx *f = *state;
    start(f, "complete", (opts){.partitions = 4});
    for (int i = 0; i < 100; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.consumed, 100);
    assert_int_equal(s.completed, 100);
    for (int p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 25);
    tl_partition_stats ps[8];
    assert_int_equal(tl_service_partitions(f->svc, ps, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ps[i].next, 25);
    assert_balanced(f);
}

static void script_watch_partitions(fx *f)
{
    int64_t last[4] = {-1, -1, -1, -1};
    int64_t end = now_ms() + 10000;
    while (!all_settled(f)) {
        tl_partition_stats ps[4];
        size_t n = tl_service_partitions(f->svc, ps, 4);
        for (size_t i = 0; i < n && i < 4; i++) {
            int32_t p = ps[i].partition;
            STEP(p >= 0 && p < 4 && ps[i].next >= last[p]); /* never backwards */
            last[p] = ps[i].next;
        }
        STEP(now_ms() < end);
        sleep_ms(1);
    }
}

static void committed_positions_can_be_read_from_another_thread_while_they_move(void **state)
{
    fx *f = *state;
    f->sleep_ms = 1;
    start(f, "watched", (opts){.partitions = 4});
    for (int i = 0; i < 200; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_watch_partitions);
    tl_partition_stats ps[4];
    assert_int_equal(tl_service_partitions(f->svc, ps, 4), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ps[i].next, 50);
    assert_balanced(f);
}

static bool p1_committed(fx *f)
{
    return tl_memory_committed(f->topic, 1) == 1;
}

static bool p0_committed_to_2(fx *f)
{
    return tl_memory_committed(f->topic, 0) >= 2;
}

/* Partition 0: offsets 0-1 complete, 2 hangs until released, 3-9 complete around it.
 * Partition 1 gets a message once those nine completed: its commit is a commit round
 * that came after them, so partition 0's position is read after it had its chance. */

static void script_slow_message(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 9, 3000));
    STEP(tl_memory_push(f->topic, 1, NULL, "ok", 2) == 0);
    STEP(wait_for(f, p1_committed, 3000));
    /* With shards (TL_TEST_SHARDS) partition 0 commits in rounds of its own shard: its
     * first commit, then a few more rounds, which must not move it. */
    STEP(wait_for(f, p0_committed_to_2, 3000));
    sleep_ms(200);
    f->committed_mid = tl_memory_committed(f->topic, 0);
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 3000));
}

static void a_slow_message_holds_the_commit_at_its_offset_while_later_ones_complete(void **state)
{
    fx *f = *state;
    start(f, "slow_one", (opts){.partitions = 2, .ordering = "none"});
    for (int i = 0; i < 10; i++)
        push(f, 0, NULL, i == 2 ? "stuck" : "ok");
    run(f, script_slow_message);
    assert_int_equal(f->committed_mid, 2);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_int_equal(tl_memory_committed(f->topic, 1), 1);
    assert_int_equal(stats(f).completed, 11);
    assert_balanced(f);
}

/* The memory source as the Kafka source is: its commits count once acknowledged. */
static tl_source_ops acked_ops;

static void start_acked(fx *f, const char *topic)
{
    acked_ops = tl_memory_source_ops;
    acked_ops.type = "memory_acked";
    acked_ops.commit_acks = true;
    assert_int_equal(tl_registry_add_source(f->reg, &acked_ops), 0);
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "service: t\n"
             "loop: { workers: 4, max_in_flight: 40 }\n"
             "sources:\n"
             "  in: { type: memory_acked, name: %s, partitions: 2, batch: 8 }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: h\n"
             "    ordering: none\n",
             topic);
    start_yaml(f, topic, yaml);
}

static bool forty_completed(fx *f)
{
    return stats(f).completed >= 40;
}

static void script_outage(fx *f)
{
    STEP(wait_for(f, forty_completed, 5000));
    sleep_ms(600); /* past the grace: intake stopped, the window drained */
    f->committed_at_revoke = (int64_t)stats(f).completed;
    sleep_ms(400); /* more commit rounds, each refused */
    f->committed_mid = (int64_t)stats(f).completed;
    tl_memory_lose_commits(f->topic, false);
    STEP(wait_for(f, all_settled, 5000));
}

/* While the broker refuses every commit (an outage), a source whose commits count
 * once acknowledged stops taking messages in once the acknowledgements are overdue,
 * well before its backlog ends: what a failure makes the next owner repeat stays
 * bounded. Once commits go through again, the rest flows and the committed positions
 * reach the end. */
static void refused_commits_stop_intake_at_the_window_until_they_go_through(void **state)
{
    fx *f = *state;
    f->sleep_ms = 10; /* 400 messages on 4 workers: a second */
    start_acked(f, "acked");
    assert_int_equal(tl_memory_lose_commits(f->topic, true), 0);
    for (int i = 0; i < 400; i++)
        push(f, i % 2, NULL, "ok");
    run(f, script_outage);
    assert_true(f->committed_mid < 300);
    assert_int_equal(f->committed_mid, f->committed_at_revoke); /* stopped */
    assert_int_equal(stats(f).completed, 400);
    assert_int_equal(tl_memory_committed(f->topic, 0), 200);
    assert_int_equal(tl_memory_committed(f->topic, 1), 200);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(every_message_completes_and_commits_reach_the_end),
        T(committed_positions_can_be_read_from_another_thread_while_they_move),
        T(a_slow_message_holds_the_commit_at_its_offset_while_later_ones_complete),
        T(refused_commits_stop_intake_at_the_window_until_they_go_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
