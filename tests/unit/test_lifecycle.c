/*
 * Drain and revoke: stop lets running handlers finish and commits them, and returns
 * after the drain timeout when one is stuck; a revoke waits for the partition's
 * running handlers, commits them and drops its queue; offsets committed before a
 * revoke are committed again after the partition comes back. The fixture is
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

static bool four_started(fx *f)
{
    return ncalls(f) >= 4;
}

static void script_stop_while_running(fx *f)
{
    STEP(wait_for(f, four_started, 3000));
}

static void stop_lets_running_handlers_finish_and_commits_them(void **state)
{
    fx *f = *state;
    f->sleep_ms = 150;
    start(f, "drain", (opts){.partitions = 4});
    for (int i = 0; i < 8; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_stop_while_running);
    assert_true(f->ncalls >= 4);
    int done[4] = {0};
    for (size_t i = 0; i < f->ncalls; i++) {
        assert_true(f->calls[i].end_ms > 0);
        done[f->calls[i].partition]++;
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), done[p]);
    assert_balanced(f);
}

static bool stuck_running_two_done(fx *f)
{
    return ncalls(f) >= 3 && stats(f).completed >= 2;
}

static void script_stop_with_stuck(fx *f)
{
    STEP(wait_for(f, stuck_running_two_done, 3000));
}

static void
stop_with_a_stuck_handler_returns_after_the_drain_timeout_without_its_commit(void **state)
{
    fx *f = *state;
    start(f, "drain_stuck",
          (opts){.workers = 2, .ordering = "none", .drain = "200ms", .timeout = "10s"});
    push(f, 0, NULL, "ok");
    push(f, 0, NULL, "stuck");
    push(f, 0, NULL, "ok");
    run(f, script_stop_with_stuck);
    int64_t took = f->run_end_ms - f->stop_at_ms;
    assert_true(took >= 200);
    assert_true(took < 200 + 400);
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_int_equal(stats(f).in_flight, 1);
    const call *stuck = find_call(f, 0, 1);
    assert_non_null(stuck);
    assert_int_equal(stuck->end_ms, 0);
}

/* ------------------------------------------------------------ revoke */

static size_t count_p0(fx *f, bool done_only)
{
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        if (f->calls[i].partition == 0 && (!done_only || f->calls[i].end_ms))
            n++;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool p0_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool r = f->active_part[0] > 0;
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* Every offset of partition 0 was handled to the end at least once. */
static bool p0_all_done(fx *f)
{
    return part_done(f, 0, 5);
}

static bool p0_done_and_settled(fx *f)
{
    return p0_all_done(f) && all_settled(f);
}

static void script_revoke(fx *f)
{
    STEP(wait_for(f, p0_running, 3000));
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    pthread_mutex_lock(&f->mu);
    f->active_at_revoke = f->active_part[0];
    pthread_mutex_unlock(&f->mu);
    f->p0_done_at_revoke = count_p0(f, true);
    f->p0_calls_at_revoke = count_p0(f, false);
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    sleep_ms(300);
    f->p0_calls_while_revoked = count_p0(f, false);
    f->assign_rc = tl_memory_assign(f->topic, 0);
    STEP(wait_for(f, p0_done_and_settled, 5000));
}

static void revoke_waits_for_running_handlers_commits_them_and_drops_the_queue(void **state)
{
    fx *f = *state;
    f->sleep_ms = 100;
    start(f, "revoke", (opts){.workers = 2, .partitions = 2});
    for (int i = 0; i < 5; i++) {
        push(f, 0, NULL, "ok");
        push(f, 1, NULL, "ok");
    }
    run(f, script_revoke);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->active_at_revoke, 0);
    assert_true(f->p0_done_at_revoke >= 1);
    assert_true(f->p0_done_at_revoke < 5);
    assert_int_equal(f->p0_calls_at_revoke, f->p0_done_at_revoke);
    /* In partition order, what completed is exactly the committed prefix. */
    assert_int_equal(f->committed_at_revoke, (int64_t)f->p0_done_at_revoke);
    assert_int_equal(f->p0_calls_while_revoked, f->p0_calls_at_revoke);
    assert_int_equal(tl_memory_committed(f->topic, 0), 5);
    assert_int_equal(tl_memory_committed(f->topic, 1), 5);
    assert_balanced(f);
}

static bool p0_committed_to_the_end(fx *f)
{
    return tl_memory_committed(f->topic, 0) == 10;
}

static void script_commits_lost_then_revoke(fx *f)
{
    STEP(wait_for(f, all_settled, 5000));
    f->revoke_rc = tl_memory_revoke(f->topic, 0); /* its commit is lost too */
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    tl_memory_lose_commits(f->topic, false);
    f->assign_rc = tl_memory_assign(f->topic, 0); /* read again from the start */
    STEP(wait_stat(f, STAT(completed), 20, 5000));
    STEP(wait_for(f, p0_committed_to_the_end, 5000));
}

/* Kafka stores offsets and a coordinator that goes away can lose them: a partition
 * assigned again is delivered from the older position, and once those messages
 * settle again their offsets are committed again, not taken as done already. */
static void offsets_committed_before_a_revoke_are_committed_again_after_reassignment(void **state)
{
    fx *f = *state;
    start(f, "lost_commits", (opts){0});
    assert_int_equal(tl_memory_lose_commits(f->topic, true), 0);
    for (int i = 0; i < 10; i++)
        push(f, 0, NULL, "ok");
    run(f, script_commits_lost_then_revoke);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->committed_at_revoke, -1);
    assert_int_equal(stats(f).completed, 20);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(stop_lets_running_handlers_finish_and_commits_them),
        T(stop_with_a_stuck_handler_returns_after_the_drain_timeout_without_its_commit),
        T(revoke_waits_for_running_handlers_commits_them_and_drops_the_queue),
        T(offsets_committed_before_a_revoke_are_committed_again_after_reassignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
