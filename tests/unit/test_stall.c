/*
 * Stalls: a handler past its route's timeout is cancelled and its message rerouted
 * to on_stall; one that returns later is counted late, once; a worker stuck in it is
 * replaced, up to a cap, past which the service reports unhealthy until the stuck
 * handlers return. The fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

static void a_stalled_handler_is_cancelled_after_its_timeout_and_rerouted(void **state)
{
    fx *f = *state;
    start(f, "stall",
          (opts){.timeout = "300ms",
                 .route_extra = "    on_stall: { reroute: \"memory:stall.out\" }\n"});
    int64_t before = wall_ms();
    push(f, 0, "k1", "stall-payload");
    push(f, 0, "k2", "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(s.completed, 1);

    const call *stalled = find_call(f, 0, 0);
    const call *next = find_call(f, 0, 1);
    assert_non_null(stalled);
    assert_non_null(next);
    assert_true(stalled->saw_cancel);
    int64_t cancelled_after = stalled->end_ms - stalled->start_ms;
    assert_true(cancelled_after >= 298); /* ms rounding of two clocks */
    assert_true(cancelled_after < 300 + 250);
    /* The next message of the partition ran once the first one stalled, not later. */
    assert_true(next->start_ms >= stalled->start_ms + 298);
    assert_true(next->end_ms < stalled->start_ms + 300 + 250);

    assert_int_equal(tl_memory_sink_count("stall.out"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("stall.out", 0, &r), 0);
    assert_int_equal(r->len, strlen("stall-payload"));
    assert_memory_equal(r->payload, "stall-payload", r->len);
    assert_int_equal(r->key_len, 2);
    assert_memory_equal(r->key, "k1", 2);
    assert_header(r, "tl-reason", "stalled");
    assert_header(r, "tl-origin-topic", "stall");
    assert_header(r, "tl-origin-partition", "0");
    assert_header(r, "tl-origin-offset", "0");
    assert_header(r, "tl-attempt", "1");
    size_t len = 0;
    assert_non_null(tl_memory_record_header(r, "tl-error", &len));
    assert_true(len > 0);
    long long first_seen = header_num(r, "tl-first-seen-ms");
    assert_true(first_seen >= before);
    assert_true(first_seen <= r->timestamp_ms);
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 2);
    assert_balanced(f);
}

static bool two_workers(fx *f)
{
    unsigned n = tl_loop_workers(tl_service_loop(f->svc));
    if (n > f->seen_max_workers)
        f->seen_max_workers = n;
    return n >= 2;
}

static bool one_worker(fx *f)
{
    return tl_loop_workers(tl_service_loop(f->svc)) == 1;
}

static void script_late(fx *f)
{
    STEP(wait_stat(f, STAT(stalled), 1, 3000));
    STEP(wait_for(f, two_workers, 2000));
    /* With one worker, the rest can only run on the replacement. */
    STEP(wait_stat(f, STAT(completed), 3, 3000));
    atomic_store(&f->released, true);
    STEP(wait_stat(f, STAT(late), 1, 3000));
    /* The surplus thread leaves when it is next free: after the task it runs now. */
    STEP(tl_memory_push(f->topic, 0, NULL, "ok", 2) == 4);
    STEP(wait_for(f, one_worker, 2000));
    f->seen_workers_after = tl_loop_workers(tl_service_loop(f->svc));
    STEP(wait_for(f, all_settled, 3000));
}

static void a_late_result_is_counted_once_and_its_worker_was_replaced(void **state)
{
    fx *f = *state;
    start(f, "late",
          (opts){.workers = 1,
                 .max_replaced = 2,
                 .timeout = "200ms",
                 .route_extra = "    on_stall: { reroute: \"memory:late.out\" }\n"});
    push(f, 0, NULL, "stuck");
    for (int i = 0; i < 3; i++)
        push(f, 0, NULL, "ok");
    run(f, script_late);
    tl_service_stats s = stats(f);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 4);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("late.out"), 1);
    assert_true(s.replaced_workers >= 1);
    assert_int_equal(f->seen_max_workers, 2);
    assert_int_equal(f->seen_workers_after, 1);
    assert_true(s.healthy);
    assert_int_equal(tl_memory_committed(f->topic, 0), 5);
    assert_balanced(f);
}

static bool unhealthy(fx *f)
{
    return !stats(f).healthy;
}

static bool healthy(fx *f)
{
    return stats(f).healthy;
}

static void script_cap(fx *f)
{
    STEP(wait_stat(f, STAT(stalled), 2, 3000));
    STEP(wait_for(f, unhealthy, 1000));
    f->seen_unhealthy = true;
    atomic_store(&f->released, true);
    STEP(wait_stat(f, STAT(late), 2, 3000));
    STEP(wait_for(f, healthy, 1000));
    f->seen_healthy_again = true;
    STEP(wait_for(f, all_settled, 3000));
}

static void stuck_workers_past_the_cap_make_the_service_unhealthy_until_they_return(void **state)
{
    fx *f = *state;
    start(f, "cap",
          (opts){.workers = 2,
                 .max_replaced = 1,
                 .ordering = "none",
                 .timeout = "150ms",
                 .route_extra = "    on_stall: { reroute: \"memory:cap.out\" }\n"});
    push(f, 0, NULL, "stuck-1");
    push(f, 0, NULL, "stuck-2");
    assert_true(stats(f).healthy);
    run(f, script_cap);
    assert_true(f->seen_unhealthy);
    assert_true(f->seen_healthy_again);
    tl_service_stats s = stats(f);
    assert_int_equal(s.replaced_workers, 1);
    assert_int_equal(s.late, 2);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_stalled_handler_is_cancelled_after_its_timeout_and_rerouted),
        T(a_late_result_is_counted_once_and_its_worker_was_replaced),
        T(stuck_workers_past_the_cap_make_the_service_unhealthy_until_they_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
