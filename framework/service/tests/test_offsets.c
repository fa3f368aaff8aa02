/*
 * The offset tracker of one partition: the committable position is the lowest offset
 * not yet settled, whatever order handlers finish in, and it never goes backwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "offsets.h"

/* Tracks offsets[0..n) in that order, storing their slots. */
static void track_all(tl_offsets *o, const int64_t *offsets, size_t n, uint64_t *slots)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tl_offsets_track(o, offsets[i], &slots[i]), 0);
}

static void nothing_is_committable_before_anything_settles(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t s[3];
    track_all(&o, (int64_t[]){0, 1, 2}, 3, s);
    assert_int_equal(o.next, -1);
    assert_int_equal(tl_offsets_unsettled(&o), 3);
    tl_offsets_free(&o);
}

static void out_of_order_settling_commits_only_up_to_the_lowest_unsettled(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t s[4];
    track_all(&o, (int64_t[]){10, 11, 12, 13}, 4, s);
    assert_false(tl_offsets_settle(&o, s[2]));
    assert_false(tl_offsets_settle(&o, s[1]));
    assert_int_equal(o.next, -1);
    assert_true(tl_offsets_settle(&o, s[0]));
    assert_int_equal(o.next, 13); /* 10, 11 and 12 are settled; 13 is not */
    assert_true(tl_offsets_settle(&o, s[3]));
    assert_int_equal(o.next, 14);
    assert_int_equal(tl_offsets_unsettled(&o), 0);
    tl_offsets_free(&o);
}

static void gaps_in_offsets_commit_to_the_next_tracked_offset(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t s[3];
    /* Compacted topics and transaction markers leave holes between offsets. */
    track_all(&o, (int64_t[]){5, 9, 20}, 3, s);
    assert_true(tl_offsets_settle(&o, s[0]));
    assert_int_equal(o.next, 9);
    assert_true(tl_offsets_settle(&o, s[1]));
    assert_int_equal(o.next, 20);
    assert_true(tl_offsets_settle(&o, s[2]));
    assert_int_equal(o.next, 21);
    tl_offsets_free(&o);
}

static void settling_a_slot_twice_or_an_unknown_slot_changes_nothing(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t s[2];
    track_all(&o, (int64_t[]){0, 1}, 2, s);
    assert_false(tl_offsets_settle(&o, s[1] + 1)); /* never tracked */
    assert_true(tl_offsets_settle(&o, s[0]));
    assert_false(tl_offsets_settle(&o, s[0])); /* already settled and passed */
    assert_false(tl_offsets_is_pending(&o, s[0]));
    assert_int_equal(o.next, 1);
    assert_int_equal(tl_offsets_unsettled(&o), 1);
    assert_true(tl_offsets_is_pending(&o, s[1]));
    tl_offsets_free(&o);
}

static void a_redelivered_older_offset_never_moves_the_position_backwards(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t s[4];
    track_all(&o, (int64_t[]){7, 8}, 2, s);
    assert_true(tl_offsets_settle(&o, s[0]));
    assert_true(tl_offsets_settle(&o, s[1]));
    assert_int_equal(o.next, 9);
    track_all(&o, (int64_t[]){3, 4}, 2, s + 2);
    assert_false(tl_offsets_settle(&o, s[2]));
    assert_int_equal(o.next, 9);
    assert_false(tl_offsets_settle(&o, s[3]));
    assert_int_equal(o.next, 9);
    tl_offsets_free(&o);
}

static void reset_forgets_offsets_and_slots_from_before_it(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    uint64_t old[3];
    track_all(&o, (int64_t[]){0, 1, 2}, 3, old);
    assert_true(tl_offsets_settle(&o, old[0]));
    tl_offsets_reset(&o);
    assert_int_equal(o.next, -1);
    assert_int_equal(o.last, -1);
    assert_int_equal(tl_offsets_unsettled(&o), 0);
    /* The partition comes back, read again from the committed offset 1. */
    uint64_t s[2];
    track_all(&o, (int64_t[]){1, 2}, 2, s);
    for (size_t i = 0; i < 3; i++)
        assert_false(tl_offsets_settle(&o, old[i]));
    assert_int_equal(o.next, -1);
    assert_int_equal(tl_offsets_unsettled(&o), 2);
    assert_true(tl_offsets_settle(&o, s[0]));
    assert_int_equal(o.next, 2);
    tl_offsets_free(&o);
}

static void more_than_64_in_flight_grow_the_tracker_keeping_slots(void **state)
{
    (void)state;
    tl_offsets o;
    tl_offsets_init(&o);
    enum { N = 300 };
    uint64_t s[N];
    /* Settle some first so the ring has wrapped when it grows. */
    for (int64_t i = 0; i < 40; i++)
        assert_int_equal(tl_offsets_track(&o, i, &s[i]), 0);
    for (int64_t i = 0; i < 30; i++)
        tl_offsets_settle(&o, s[i]);
    assert_int_equal(o.next, 30);
    for (int64_t i = 40; i < N; i++)
        assert_int_equal(tl_offsets_track(&o, i, &s[i]), 0);
    assert_int_equal(tl_offsets_unsettled(&o), N - 30);
    for (int64_t i = N - 1; i > 30; i--) {
        assert_false(tl_offsets_settle(&o, s[i]));
        assert_int_equal(o.next, 30);
    }
    assert_true(tl_offsets_settle(&o, s[30]));
    assert_int_equal(o.next, N);
    assert_int_equal(tl_offsets_unsettled(&o), 0);
    tl_offsets_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_is_committable_before_anything_settles),
        cmocka_unit_test(out_of_order_settling_commits_only_up_to_the_lowest_unsettled),
        cmocka_unit_test(gaps_in_offsets_commit_to_the_next_tracked_offset),
        cmocka_unit_test(settling_a_slot_twice_or_an_unknown_slot_changes_nothing),
        cmocka_unit_test(a_redelivered_older_offset_never_moves_the_position_backwards),
        cmocka_unit_test(reset_forgets_offsets_and_slots_from_before_it),
        cmocka_unit_test(more_than_64_in_flight_grow_the_tracker_keeping_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
