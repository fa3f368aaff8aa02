/*
 * A route's rate limit on its own (rate.c), on a clock the test moves: messages go at
 * the rate, a burst after a quiet spell and no more, and a wait says when the next one
 * may go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime.h"

#define MS 1000000LL

static tl_rate bucket(int64_t count, int64_t period_ms, int64_t burst)
{
    tl_config_route cfg = {.rate_count = count, .rate_period_ms = period_ms, .burst = burst};
    tl_rate r;
    tl__rate_init(&r, &cfg);
    return r;
}

static void no_rate_never_waits(void **state)
{
    (void)state;
    tl_rate r = bucket(0, 1000, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tl__rate_take(&r, 5 * MS), 0);
}

static void messages_go_one_interval_apart_without_a_burst(void **state)
{
    (void)state;
    tl_rate r = bucket(100, 1000, 1); /* one each 10 ms */
    int64_t now = 1000 * MS;
    assert_int_equal(tl__rate_take(&r, now), 0);
    assert_int_equal(tl__rate_take(&r, now), 10 * MS); /* the next in 10 ms */
    assert_int_equal(tl__rate_take(&r, now + 4 * MS), 6 * MS);
    assert_int_equal(tl__rate_take(&r, now + 10 * MS), 0);
    /* Over a second of asking every millisecond, 100 go. */
    tl_rate s = bucket(100, 1000, 1);
    int taken = 0;
    for (int64_t t = 0; t < 1000; t++)
        taken += tl__rate_take(&s, now + t * MS) == 0;
    assert_int_equal(taken, 100);
}

static void a_quiet_spell_allows_a_burst_and_no_more(void **state)
{
    (void)state;
    tl_rate r = bucket(1000, 1000, 50); /* one a ms, 50 at once */
    int64_t now = 5000 * MS;
    int taken = 0;
    while (tl__rate_take(&r, now) == 0)
        taken++;
    assert_int_equal(taken, 50);
    /* A long pause does not save up more than the burst. */
    now += 10000 * MS;
    taken = 0;
    while (tl__rate_take(&r, now) == 0)
        taken++;
    assert_int_equal(taken, 50);
}

static void per_minute_rates_space_messages_by_the_minute(void **state)
{
    (void)state;
    tl_rate r = bucket(60, 60000, 1); /* one a second */
    assert_int_equal(tl__rate_take(&r, 0), 0);
    assert_int_equal(tl__rate_take(&r, 0), 1000 * MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_rate_never_waits),
        cmocka_unit_test(messages_go_one_interval_apart_without_a_burst),
        cmocka_unit_test(a_quiet_spell_allows_a_burst_and_no_more),
        cmocka_unit_test(per_minute_rates_space_messages_by_the_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
