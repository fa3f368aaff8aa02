/*
 * Where the messages of isolation: process go (procs_slots.c), on its own: light
 * handlers (a few microseconds, as a no-op) are packed into the cores less one, fast
 * ones (under 50 us) spread over as many processes as there are cores, and slow ones
 * get a process each while the backlog asks for it. The slots here have no real
 * process: only what the choice reads (a descriptor, the results' pace in the ring,
 * how many were sent and are out) is set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

#include "procs_int.h"

#define NSLOTS 4

/* A route's slots, none with a process, a backlog of 1,000, caps of 1 and 2 (a
 * 2-core machine). */
static struct tl_procs *new_procs(void)
{
    struct tl_procs *all = calloc(1, sizeof(*all) + NSLOTS * sizeof(slot));
    assert_non_null(all);
    all->rings = tl__rings_new(NSLOTS);
    assert_non_null(all->rings);
    all->nslots = NSLOTS;
    all->light_cap = 1;
    all->fast_cap = 2;
    all->backlog.n = 1000;
    for (size_t i = 0; i < NSLOTS; i++)
        all->slots[i] =
            (slot){.all = all, .id = {.pid = 0, .fd = -1}, .ring = tl__ring_at(all->rings, i)};
    return all;
}

static void free_procs(struct tl_procs *all)
{
    tl__rings_free(all->rings, NSLOTS);
    free(all);
}

/* Slot i has a process whose handlers ran at pace, with out messages sent to it and
 * not come back (none running long: the clock is not given below). */
static void live(struct tl_procs *all, size_t i, int pace, size_t out)
{
    slot *s = &all->slots[i];
    s->id = (tl_proc_id){.pid = 1, .fd = 100 + (int)i};
    s->nsent = out + 1;
    s->sent.n = out;
    tl__ring_put(s->ring, 1, 0, NULL, pace, false);
}

static void light_handlers_are_packed_into_the_cores_less_one(void **state)
{
    (void)state;
    struct tl_procs *all = new_procs();
    live(all, 0, TL_PACE_LIGHT, TL_PROC_AHEAD);
    assert_null(tl__procs_to_start(all, 0));
    /* A second process (started while the first was not yet known light) gets nothing
     * while the first is light: it stays idle. */
    live(all, 1, TL_PACE_LIGHT, 0);
    assert_null(tl__procs_pick(all, 0));
    free_procs(all);
}

static void fast_handlers_get_a_process_per_core(void **state)
{
    (void)state;
    struct tl_procs *all = new_procs();
    live(all, 0, TL_PACE_FAST, TL_PROC_AHEAD);
    assert_ptr_equal(tl__procs_to_start(all, 0), &all->slots[1]);
    live(all, 1, TL_PACE_FAST, 0);
    assert_ptr_equal(tl__procs_pick(all, 0), &all->slots[1]);
    live(all, 1, TL_PACE_FAST, TL_PROC_AHEAD);
    assert_null(tl__procs_to_start(all, 0));
    assert_null(tl__procs_pick(all, 0));
    free_procs(all);
}

static void a_fast_process_among_light_ones_lifts_the_cap_to_the_cores(void **state)
{
    (void)state;
    struct tl_procs *all = new_procs();
    all->fast_cap = 3; /* a 3-core machine: light ones get 1 process, fast ones 3 */
    live(all, 0, TL_PACE_LIGHT, TL_PROC_AHEAD);
    live(all, 1, TL_PACE_LIGHT, TL_PROC_AHEAD);
    assert_null(tl__procs_to_start(all, 0));
    live(all, 1, TL_PACE_FAST, TL_PROC_AHEAD);
    assert_ptr_equal(tl__procs_to_start(all, 0), &all->slots[2]);
    free_procs(all);
}

static void slow_handlers_get_a_process_each_while_the_backlog_waits(void **state)
{
    (void)state;
    struct tl_procs *all = new_procs();
    live(all, 0, TL_PACE_SLOW, 1);
    live(all, 1, TL_PACE_SLOW, 1);
    assert_ptr_equal(tl__procs_to_start(all, 0), &all->slots[2]);
    live(all, 2, TL_PACE_SLOW, 1);
    live(all, 3, TL_PACE_SLOW, 1);
    assert_null(tl__procs_to_start(all, 0)); /* every slot has one */
    free_procs(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(light_handlers_are_packed_into_the_cores_less_one),
        cmocka_unit_test(fast_handlers_get_a_process_per_core),
        cmocka_unit_test(a_fast_process_among_light_ones_lifts_the_cap_to_the_cores),
        cmocka_unit_test(slow_handlers_get_a_process_each_while_the_backlog_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
