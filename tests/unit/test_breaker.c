/*
 * A route's circuit breaker as a service shows it: failures within the window open it,
 * and then the route takes no new messages (they wait: none fails or is rerouted for
 * it); after the cooldown one probe goes in, whose success closes it and lets the rest
 * through, or whose failure opens it for another cooldown. The fixture is
 * service_helpers.h's: one worker, a window of one message, so that what the breaker
 * holds is still at the source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "service_helpers.h"

#define COOLDOWN_MS 300

static void start_breaker(fx *f, const char *topic)
{
    static char extra[256];
    snprintf(extra, sizeof(extra),
             "    breaker: { failures: 3, window: 10s, cooldown: %dms }\n"
             "    on_error: { retries: 0, then: \"memory:%s.dlq\" }\n",
             COOLDOWN_MS, topic);
    start(f, topic,
          (opts){.workers = 1,
                 .max_in_flight = 1,
                 .batch = 1,
                 .ordering = "partition",
                 .route_extra = extra});
}

/* When the first call of an "ok" message began, and when the last "fail" one ended. */
static void first_ok_after_last_fail(fx *f, int64_t *last_fail_end, int64_t *first_ok_start)
{
    *last_fail_end = 0;
    *first_ok_start = INT64_MAX;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++) {
        const call *c = &f->calls[i];
        if (c->key == 5) /* 'f': a failing one, keyed so */
            *last_fail_end = c->end_ms > *last_fail_end ? c->end_ms : *last_fail_end;
        else if (c->start_ms < *first_ok_start)
            *first_ok_start = c->start_ms;
    }
    pthread_mutex_unlock(&f->mu);
}

/* Runs nfail failing then nok good messages through the breaker (3 failures open it)
 * and checks what every run must show: the good ones all completed, only the failures
 * dead-lettered, nothing committed short, and the first good message started a
 * cooldown or more after the last failure ended. */
static void run_breaker(fx *f, const char *topic, int nfail, int nok)
{
    start_breaker(f, topic);
    for (int i = 0; i < nfail; i++)
        push(f, 0, "f", "fail");
    for (int i = 0; i < nok; i++)
        push(f, 0, "o", "ok");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, (uint64_t)nok);
    assert_int_equal(s.failed, (uint64_t)nfail);
    char dlq[64];
    snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
    assert_int_equal(tl_memory_sink_count(dlq), (size_t)nfail);
    int64_t last_fail, first_ok;
    first_ok_after_last_fail(f, &last_fail, &first_ok);
    /* Timer slack aside. */
    if (first_ok - last_fail < COOLDOWN_MS - 20)
        fail_msg("the first good message started %lld ms after the last failure",
                 (long long)(first_ok - last_fail));
    assert_int_equal(tl_memory_committed(f->topic, 0), nfail + nok);
    assert_balanced(f);
}

/* Three failures open it: the ten messages behind them wait out the cooldown, then
 * the first of them, the probe, succeeds, and all complete; only the three failures
 * reach the dead-letter target. */
static void failures_open_the_breaker_and_a_good_probe_closes_it(void **state)
{
    run_breaker(*state, "brk", 3, 10);
}

/* A probe that fails opens it again: the fourth failure was the first probe, a
 * cooldown after the third, and the first good message waited a second cooldown. */
static void a_failed_probe_opens_the_breaker_again(void **state)
{
    run_breaker(*state, "brk2", 4, 5);
}

/* Failures further apart than the window never open it. */
static void failures_spread_wider_than_the_window_leave_it_closed(void **state)
{
    fx *f = *state;
    f->sleep_ms = 60; /* each good message takes 60 ms */
    start(f, "brk3",
          (opts){.workers = 1,
                 .max_in_flight = 1,
                 .batch = 1,
                 .ordering = "partition",
                 .route_extra = "    breaker: { failures: 2, window: 100ms, cooldown: 10s }\n"
                                "    on_error: { retries: 0, then: \"memory:brk3.dlq\" }\n"});
    for (int i = 0; i < 3; i++) {
        push(f, 0, "f", "fail");
        push(f, 0, "o", "ok");
        push(f, 0, "o", "ok");
    }
    int64_t t0 = now_ms();
    run(f, script_until_all_settled);
    /* Open, it would have held the rest for its 10 s cooldown. */
    assert_true(f->run_end_ms - t0 < 5000);
    assert_int_equal(stats(f).completed, 6);
    assert_int_equal(tl_memory_sink_count("brk3.dlq"), 3);
    assert_balanced(f);
}

/* What the admin endpoint shows of the breaker: the readiness answer, the state gauge and
 * the transitions counter, /stats' breaker; read over HTTP by the script. */
typedef struct shown {
    int ready;
    char ready_body[256];
    char metrics[16384];
    char stats[16384];
} shown;

static shown open_seen, closed_seen;
static uint64_t completed_while_open;
static size_t dlq_while_open;

/* False when /metrics or /stats did not answer 200. */
static bool show(fx *f, shown *s)
{
    int port = tl_service_admin_port(f->svc);
    /* Before its first housekeeping round the service answers "starting". */
    for (int64_t end = now_ms() + 5000;; sleep_ms(10)) {
        s->ready = http_get(port, "/readyz", s->ready_body, sizeof(s->ready_body));
        if (!strstr(s->ready_body, "starting") || now_ms() > end)
            break;
    }
    return http_get(port, "/metrics", s->metrics, sizeof(s->metrics)) == 200 &&
           http_get(port, "/stats", s->stats, sizeof(s->stats)) == 200;
}

static bool breaker_open(fx *f)
{
    return stat_at(f, STAT(failed)) == 3 && tl_memory_sink_count("brk4.dlq") == 3;
}

/* The three failures open the breaker for 1.5 s: read while open (none of the good
 * messages went in), then once every message settled after the probe closed it. */
static void script_breaker_seen_over_http(fx *f)
{
    STEP(wait_for(f, breaker_open, 5000));
    STEP(show(f, &open_seen));
    completed_while_open = stat_at(f, STAT(completed));
    dlq_while_open = tl_memory_sink_count("brk4.dlq");
    STEP(wait_for(f, all_settled, 10000));
    STEP(show(f, &closed_seen));
}

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" not in:\n%s", part, text);
}

/* While the breaker is open /readyz answers 503 naming the route, the gauge says 1 and
 * /stats "open" and not ready; the good messages wait (none completed, none
 * dead-lettered). Once the probe closed it: ready again, the gauge 0, three transitions
 * (open, half-open, closed), every good message completed. */
static void the_admin_endpoint_shows_the_breaker(void **state)
{
    fx *f = *state;
    start(f, "brk4",
          (opts){.workers = 1,
                 .max_in_flight = 1,
                 .batch = 1,
                 .ordering = "partition",
                 .route_extra = "    breaker: { failures: 3, window: 10s, cooldown: 1500ms }\n"
                                "    on_error: { retries: 0, then: \"memory:brk4.dlq\" }\n",
                 .top_extra = "admin: { listen: \"127.0.0.1:0\" }\n"});
    for (int i = 0; i < 3; i++)
        push(f, 0, "f", "fail");
    for (int i = 0; i < 6; i++)
        push(f, 0, "o", "ok");
    run(f, script_breaker_seen_over_http);
    const char *gauge = "taskloop_route_breaker_state{route=\"0\",source=\"in\",handler=\"h\"}";
    char want[256];

    assert_int_equal(open_seen.ready, 503);
    assert_has(open_seen.ready_body, "breaker open on routes[0]");
    snprintf(want, sizeof(want), "%s 1\n", gauge);
    assert_has(open_seen.metrics, want);
    assert_has(open_seen.stats, "\"breaker\":\"open\"");
    assert_has(open_seen.stats, "\"ready\":false");
    assert_int_equal(completed_while_open, 0);
    assert_int_equal(dlq_while_open, 3);

    assert_int_equal(closed_seen.ready, 200);
    snprintf(want, sizeof(want), "%s 0\n", gauge);
    assert_has(closed_seen.metrics, want);
    assert_has(
        closed_seen.metrics,
        "taskloop_route_breaker_transitions_total{route=\"0\",source=\"in\",handler=\"h\"} 3\n");
    assert_has(closed_seen.stats, "\"breaker\":\"closed\"");
    assert_has(closed_seen.stats, "\"ready\":true");
    assert_int_equal(stats(f).completed, 6);
    assert_int_equal(tl_memory_sink_count("brk4.dlq"), 3);
    assert_int_equal(tl_memory_committed(f->topic, 0), 9);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(failures_open_the_breaker_and_a_good_probe_closes_it),
        T(a_failed_probe_opens_the_breaker_again),
        T(failures_spread_wider_than_the_window_leave_it_closed),
        T(the_admin_endpoint_shows_the_breaker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
