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
        T(a_held_reroute_keeps_the_commit_at_its_offset_until_acknowledged),
        T(a_refused_reroute_is_retried_and_commits_nothing_past_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
