/*
 * Failures (on_error): a failing handler is retried in place with doubling backoff;
 * past its retries its message goes to the error target with the tl-* headers, or,
 * with no target, is dropped and settled. The fixture is service_helpers.h's.
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

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_failing_handler_is_retried_with_doubling_backoff_until_it_succeeds),
        T(a_failure_past_its_retries_goes_to_the_error_target),
        T(a_failure_with_no_target_is_dropped_and_settled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
