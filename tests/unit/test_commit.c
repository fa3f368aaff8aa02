/*
 * Commits: a partition's committed position is the lowest unsettled offset, it only
 * moves forward, it can be read from another thread, and messages that settle out of
 * offset order never carry it past one that has not. The fixture is service_helpers.h's.
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

/* Partition 0: offsets 0-1 complete, 2 hangs until released, 3-9 complete around it.
 * Partition 1 gets a message once those nine completed: its commit is a commit round
 * that came after them, so partition 0's position is read after it had its chance. */
static void script_slow_message(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 9, 3000));
    STEP(tl_memory_push(f->topic, 1, NULL, "ok", 2) == 0);
    STEP(wait_for(f, p1_committed, 3000));
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

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(every_message_completes_and_commits_reach_the_end),
        T(committed_positions_can_be_read_from_another_thread_while_they_move),
        T(a_slow_message_holds_the_commit_at_its_offset_while_later_ones_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
