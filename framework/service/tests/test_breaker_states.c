/*
 * A route's circuit breaker on its own (breaker.c), on a clock the test moves: failures
 * within the window open it, an open breaker says how long its cooldown has left, one
 * probe goes in once it is over, the probe's outcome (no other attempt's) closes it or
 * opens it again, and a probe dropped unattempted lets another go. Each transition is
 * logged with the route and its settings, and held messages are asked back in when it
 * closes or goes half-open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"

#define MS 1000000LL

typedef struct world {
    tl_config cfg;
    tl_config_route route_cfg[2];
    tl_route_state routes[2];
    tl_service svc;
    char events[8][64]; /* the transitions logged, "event route failures window" */
    int nevents;
    int retries; /* intake_retry calls */
} world;

static world w;
static tl_msg probe, other; /* messages, by their address only */

static const char *field(const tl_kv *f, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return f[i].value;
    return "?";
}

static void capture(void *user, tl_level level, const char *event, const tl_kv *f, size_t n)
{
    (void)user;
    (void)level;
    if (w.nevents < 8)
        snprintf(w.events[w.nevents++], sizeof(w.events[0]), "%s %s %s %s", event,
                 field(f, n, "route"), field(f, n, "failures"), field(f, n, "window"));
}

static void intake_retry(tl_service *svc)
{
    (void)svc;
    w.retries++;
}

/* Route 1 gets a breaker of failures within window_ms and cooldown_ms. */
static tl_route_state *breaker(int failures, int64_t window_ms, int64_t cooldown_ms)
{
    memset(&w, 0, sizeof(w));
    w.cfg.log_level = TL_LOG_DEBUG;
    w.svc.cfg = &w.cfg;
    w.svc.opts.log = capture;
    w.svc.hooks.intake_retry = intake_retry;
    w.svc.routes = w.routes;
    w.svc.nroutes = 2;
    w.svc.root = &w.svc;
    w.svc.nshards = 1;
    w.route_cfg[1] = (tl_config_route){.handler = "h",
                                       .breaker_failures = failures,
                                       .breaker_window_ms = window_ms,
                                       .breaker_cooldown_ms = cooldown_ms};
    for (int i = 0; i < 2; i++) {
        w.routes[i].cfg = &w.route_cfg[i];
        w.routes[i].shared = &w.routes[i];
        assert_int_equal(tl__breaker_init(&w.routes[i].breaker, &w.route_cfg[i]), 0);
    }
    return &w.routes[1];
}

static int state(const tl_route_state *r)
{
    return atomic_load(&r->breaker.state);
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < 2; i++)
        tl__breaker_free(&w.routes[i].breaker);
    return 0;
}

static void a_route_without_a_breaker_never_waits(void **st)
{
    (void)st;
    breaker(3, 1000, 5000);
    tl_route_state *r = &w.routes[0];
    for (int i = 0; i < 100; i++)
        tl__breaker_note(&w.svc, r, &other, false, i * MS);
    assert_int_equal(tl__breaker_wait(&w.svc, r, 100 * MS), 0);
    assert_int_equal(w.nevents, 0);
}

static void failures_within_the_window_open_it_for_the_cooldown(void **st)
{
    (void)st;
    tl_route_state *r = breaker(3, 1000, 5000);
    int64_t t = 10000 * MS;
    tl__breaker_note(&w.svc, r, &other, false, t);
    tl__breaker_note(&w.svc, r, &other, true, t + 100 * MS); /* successes do not forgive */
    tl__breaker_note(&w.svc, r, &other, false, t + 500 * MS);
    assert_int_equal(state(r), TL_BREAKER_CLOSED);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 500 * MS), 0);
    tl__breaker_note(&w.svc, r, &other, false, t + 1000 * MS); /* the third, 1 s after the first */
    assert_int_equal(state(r), TL_BREAKER_OPEN);
    assert_string_equal(w.events[0], "breaker_open 1 3 1000ms");
    /* Open: nothing goes in, and the wait is what is left of the cooldown. */
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1000 * MS), 5000 * MS);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 4000 * MS), 2000 * MS);
    /* Failures of attempts already in flight do not lengthen it. */
    tl__breaker_note(&w.svc, r, &other, false, t + 4000 * MS);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 5999 * MS), 1 * MS);
    assert_int_equal(w.retries, 0);
}

static void failures_spread_wider_than_the_window_leave_it_closed(void **st)
{
    (void)st;
    tl_route_state *r = breaker(3, 1000, 5000);
    /* One every 501 ms: any three span 1002 ms. */
    for (int i = 0; i < 50; i++)
        tl__breaker_note(&w.svc, r, &other, false, (int64_t)i * 501 * MS);
    assert_int_equal(state(r), TL_BREAKER_CLOSED);
    assert_int_equal(w.nevents, 0);
    /* Then two more close behind the last: three within the window. */
    tl__breaker_note(&w.svc, r, &other, false, 49 * 501 * MS + 10 * MS);
    tl__breaker_note(&w.svc, r, &other, false, 49 * 501 * MS + 20 * MS);
    assert_int_equal(state(r), TL_BREAKER_OPEN);
}

/* Opens the breaker at t (two failures) and waits out its cooldown of 1 s. */
static tl_route_state *half_open_at(int64_t t)
{
    tl_route_state *r = breaker(2, 1000, 1000);
    tl__breaker_note(&w.svc, r, &other, false, t);
    tl__breaker_note(&w.svc, r, &other, false, t);
    assert_int_equal(state(r), TL_BREAKER_OPEN);
    /* The cooldown is over: one probe may go in. Asking takes nothing: a message kept
     * out by something else (its rate limit) leaves the probe to the next. */
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1000 * MS), 0);
    assert_int_equal(state(r), TL_BREAKER_HALF);
    assert_int_equal(w.retries, 1);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1000 * MS), 0);
    /* Once it went in, the next waits for its outcome; one that was told 0 before (on
     * another shard) may not go in after all. */
    assert_true(tl__breaker_taken(r, &probe));
    assert_false(tl__breaker_taken(r, &other));
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1001 * MS), INT64_MAX);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 9000 * MS), INT64_MAX);
    return r;
}

static void after_the_cooldown_a_good_probe_closes_it(void **st)
{
    (void)st;
    int64_t t = 50 * MS;
    tl_route_state *r = half_open_at(t);
    /* An attempt that went in before it opened decides nothing. */
    tl__breaker_note(&w.svc, r, &other, false, t + 1050 * MS);
    assert_int_equal(state(r), TL_BREAKER_HALF);
    tl__breaker_note(&w.svc, r, &probe, true, t + 1100 * MS);
    assert_int_equal(state(r), TL_BREAKER_CLOSED);
    assert_int_equal(w.retries, 2); /* the held messages go in */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1100 * MS), 0);
        assert_true(tl__breaker_taken(r, &other));
    }
    assert_int_equal(atomic_load(&r->breaker.transitions), 3);
    assert_int_equal(w.nevents, 3);
    assert_string_equal(w.events[1], "breaker_half_open 1 2 1000ms");
    assert_string_equal(w.events[2], "breaker_closed 1 2 1000ms");
    /* Closed again, it counts afresh: the failures before it opened are forgotten. */
    tl__breaker_note(&w.svc, r, &other, false, t + 1200 * MS);
    assert_int_equal(state(r), TL_BREAKER_CLOSED);
    tl__breaker_note(&w.svc, r, &other, false, t + 1300 * MS);
    assert_int_equal(state(r), TL_BREAKER_OPEN);
}

static void a_failed_probe_opens_it_for_a_fresh_cooldown(void **st)
{
    (void)st;
    int64_t t = 50 * MS;
    tl_route_state *r = half_open_at(t);
    tl__breaker_note(&w.svc, r, &other, true, t + 1050 * MS);
    assert_int_equal(state(r), TL_BREAKER_HALF);
    tl__breaker_note(&w.svc, r, &probe, false, t + 1500 * MS);
    assert_int_equal(state(r), TL_BREAKER_OPEN);
    assert_int_equal(w.retries, 1); /* nothing goes in */
    assert_string_equal(w.events[2], "breaker_open 1 2 1000ms");
    /* A whole cooldown from the probe's failure, then another probe. */
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1500 * MS), 1000 * MS);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 2499 * MS), 1 * MS);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 2500 * MS), 0);
    assert_int_equal(state(r), TL_BREAKER_HALF);
    assert_int_equal(atomic_load(&r->breaker.transitions), 4);
}

/* A probe dropped before its attempt (its partition revoked) leaves the breaker
 * half-open with room for another probe, not shut for good. */
static void a_probe_dropped_unattempted_lets_another_message_probe(void **st)
{
    (void)st;
    int64_t t = 50 * MS;
    tl_route_state *r = half_open_at(t);
    tl__breaker_forget(r, &other); /* not the probe: nothing changes */
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1100 * MS), INT64_MAX);
    tl__breaker_forget(r, &probe);
    assert_int_equal(state(r), TL_BREAKER_HALF);
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1100 * MS), 0);
    assert_true(tl__breaker_taken(r, &other));
    assert_int_equal(tl__breaker_wait(&w.svc, r, t + 1100 * MS), INT64_MAX);
    tl__breaker_note(&w.svc, r, &other, true, t + 1200 * MS);
    assert_int_equal(state(r), TL_BREAKER_CLOSED);
}

int main(void)
{
#define T(name) cmocka_unit_test_teardown(name, teardown)
    const struct CMUnitTest tests[] = {
        T(a_route_without_a_breaker_never_waits),
        T(failures_within_the_window_open_it_for_the_cooldown),
        T(failures_spread_wider_than_the_window_leave_it_closed),
        T(after_the_cooldown_a_good_probe_closes_it),
        T(a_failed_probe_opens_it_for_a_fresh_cooldown),
        T(a_probe_dropped_unattempted_lets_another_message_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
