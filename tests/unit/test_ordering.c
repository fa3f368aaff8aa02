/*
 * Ordering lanes: `partition` runs one message at a time per partition in offset
 * order (also over long chains of handlers run back to back, and with retries in
 * them), `key` one at a time per key with keys in parallel, `none` in parallel. The
 * fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

/* Per partition (key < 0) or key, the calls in start order have offsets ascending. */
static void assert_in_offset_order(fx *f, bool by_key, int lanes)
{
    for (int l = 0; l < lanes; l++) {
        int64_t last = -1, last_end = 0;
        size_t seen = 0;
        for (size_t i = 0; i < f->ncalls; i++) {
            const call *c = &f->calls[i];
            if ((by_key ? c->key : c->partition) != l)
                continue;
            assert_true(c->offset > last);
            assert_true(c->start_ms >= last_end);
            last = c->offset;
            last_end = c->end_ms;
            seen++;
        }
        assert_true(seen > 0);
    }
}

static void partition_ordering_runs_each_partition_one_at_a_time_in_offset_order(void **state)
{
    fx *f = *state;
    f->sleep_ms = 5;
    start(f, "by_partition", (opts){.partitions = 4, .ordering = "partition"});
    for (int i = 0; i < 40; i++)
        push(f, i % 4, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 40);
    for (int p = 0; p < 4; p++)
        assert_int_equal(f->max_part[p], 1);
    assert_in_offset_order(f, false, 4);
    assert_true(f->max_active >= 2); /* partitions run side by side */
    assert_balanced(f);
}

/*
 * Many messages per partition whose handlers return at once, so that a worker runs
 * through attempts chained ahead of it faster than the loop chains more, with retried
 * messages among them: every message runs once per attempt, one at a time per
 * partition, in offset order, and a retry runs before anything after it.
 */
static void partition_ordering_holds_over_long_chains_with_retries_in_them(void **state)
{
    fx *f = *state;
    enum { PARTS = 8, PER_PART = 5000, FLAKY_EVERY = 997 };
    start(f, "long_chains",
          (opts){.partitions = PARTS,
                 .workers = 16,
                 .batch = 1000,
                 .max_in_flight = 10000,
                 .route_extra = "    on_error: { retries: 3, backoff: 1ms }\n"});
    for (int i = 0; i < PER_PART; i++)
        for (int p = 0; p < PARTS; p++)
            push(f, p, NULL, i % FLAKY_EVERY == FLAKY_EVERY - 1 ? "qflaky" : "quick");
    run(f, script_until_all_settled);
    int flaky = PER_PART / FLAKY_EVERY;
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(atomic_load(&f->quick[p].next), PER_PART);
        assert_int_equal(tl_memory_committed(f->topic, p), PER_PART);
    }
    assert_int_equal(atomic_load(&f->quick_out_of_order), 0);
    assert_int_equal(atomic_load(&f->quick_overlaps), 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, PARTS * PER_PART);
    assert_int_equal(s.retries, PARTS * 2 * flaky);
    assert_balanced(f);
}

static void key_ordering_runs_each_key_one_at_a_time_and_keys_in_parallel(void **state)
{
    fx *f = *state;
    f->sleep_ms = 5;
    start(f, "by_key", (opts){.ordering = "key"});
    static const char *keys[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 40; i++)
        push(f, 0, keys[i % 4], "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 40);
    for (int k = 0; k < 4; k++)
        assert_int_equal(f->max_key[k], 1);
    assert_in_offset_order(f, true, 4);
    assert_true(f->max_active >= 2);
    assert_balanced(f);
}

static void no_ordering_runs_messages_of_one_partition_in_parallel(void **state)
{
    fx *f = *state;
    f->sleep_ms = 20;
    start(f, "unordered", (opts){.ordering = "none"});
    for (int i = 0; i < 20; i++)
        push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->ncalls, 20);
    assert_true(f->max_part[0] >= 2);
    assert_balanced(f);
}

/* The messages behind a failing one in its partition wait for its retries, even those
 * already lined up to run on the failing handler's worker. */
static void a_retry_runs_before_the_rest_of_its_partition(void **state)
{
    fx *f = *state;
    start(f, "lane-retry",
          (opts){.workers = 2,
                 .partitions = 2,
                 .batch = 64,
                 .route_extra = "    on_error: { retries: 3, backoff: 20ms }\n"});
    for (int i = 0; i < 60; i++) {
        push(f, 0, NULL, i == 10 || i == 40 ? "flaky" : "ok");
        push(f, 1, NULL, "ok");
    }
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 120);
    assert_int_equal(s.retries, 4);
    assert_int_equal(f->max_part[0], 1);
    assert_int_equal(f->max_part[1], 1);
    /* Partition 0's calls, in the order they began: every offset in turn, the flaky
     * ones three times, and nothing of offset k+1 before offset k's last attempt. */
    int64_t expect = 0;
    unsigned attempt = 1;
    for (size_t i = 0; i < f->ncalls; i++) {
        const call *c = &f->calls[i];
        if (c->partition != 0)
            continue;
        assert_int_equal(c->offset, expect);
        assert_int_equal(c->attempt, attempt);
        if ((expect == 10 || expect == 40) && attempt < 3) {
            attempt++;
        } else {
            expect++;
            attempt = 1;
        }
    }
    assert_int_equal(expect, 60);
    assert_int_equal(tl_memory_committed(f->topic, 0), 60);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(partition_ordering_runs_each_partition_one_at_a_time_in_offset_order),
        T(partition_ordering_holds_over_long_chains_with_retries_in_them),
        T(key_ordering_runs_each_key_one_at_a_time_and_keys_in_parallel),
        T(no_ordering_runs_messages_of_one_partition_in_parallel),
        T(a_retry_runs_before_the_rest_of_its_partition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
