/*
 * The service's own pace: the span from its first message consumed to its last settled.
 * Drain and revoke: stop lets running handlers finish and commits them, and returns
 * after the drain timeout when one is stuck; a revoke waits for the partition's
 * running handlers, commits them and drops its queue past them, runs what waits below
 * them (queued behind a key, retries) so that nothing handled is repeated; offsets
 * committed before a
 * revoke are committed again after the partition comes back; a source's fatal error
 * stops the service and tl_service_run returns it. The fixture is
 * service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <taskloop/adapter.h>

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

/* How many times partition 0's offset was handled to a success or a failure. */
static int handled_p0(fx *f, int64_t offset)
{
    int n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        n += f->calls[i].partition == 0 && f->calls[i].offset == offset && f->calls[i].end_ms;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool p0_third_running(fx *f)
{
    return find_call(f, 0, 2) != NULL;
}

static void script_revoke_behind_a_key(fx *f)
{
    STEP(wait_for(f, p0_third_running, 3000));
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    f->assign_rc = tl_memory_assign(f->topic, 0);
    sleep_ms(300); /* what the partition delivers again, if anything, runs meanwhile */
    STEP(wait_for(f, all_settled, 3000));
}

/* Ordering key: offset 1 waits behind offset 0 (same key) while offset 2 (another key)
 * runs. Dropping offset 1 at the revoke would commit 1, and offset 2, handled already,
 * would be handled again after the reassignment: a clean handover repeats nothing. */
static void revoke_runs_what_waits_below_a_handled_offset_and_repeats_nothing(void **state)
{
    fx *f = *state;
    f->sleep_ms = 150;
    start(f, "revoke_key", (opts){.workers = 2, .ordering = "key"});
    push(f, 0, "a", "ok");
    push(f, 0, "a", "ok");
    push(f, 0, "b", "ok");
    run(f, script_revoke_behind_a_key);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->committed_at_revoke, 3);
    for (int64_t o = 0; o < 3; o++)
        assert_int_equal(handled_p0(f, o), 1);
    assert_int_equal(stats(f).completed, 3);
    assert_balanced(f);
}

/* Calls of partition 0's offset, finished or not. */
static size_t calls_p0(fx *f, int64_t offset)
{
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        n += f->calls[i].partition == 0 && f->calls[i].offset == offset;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void script_lose_behind_a_key(fx *f)
{
    STEP(wait_for(f, p0_third_running, 3000));
    f->revoke_rc = tl_memory_lose(f->topic, 0);
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    f->p0_calls_at_revoke = calls_p0(f, 1);
    f->assign_rc = tl_memory_assign(f->topic, 0);
    STEP(wait_for(f, all_settled, 3000));
}

/* The same as a loss (Kafka: the group went on without this consumer): no commit can
 * land, so offset 1, not started, does not run in the drain (its next owner would run
 * it again); what runs finishes. Read again from the last commit, offset 2 runs twice
 * (the price of a loss) and offset 1 once. */
static void a_lost_partition_runs_nothing_it_had_not_started(void **state)
{
    fx *f = *state;
    f->sleep_ms = 150;
    start(f, "lose_key", (opts){.workers = 2, .ordering = "key"});
    push(f, 0, "a", "ok");
    push(f, 0, "a", "ok");
    push(f, 0, "b", "ok");
    run(f, script_lose_behind_a_key);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_int_equal(f->p0_calls_at_revoke, 0);
    /* Offset 0 may have been committed in the drain (Kafka would refuse it): read
     * again from there, offset 1 runs once, after the loss. */
    assert_true(f->committed_at_revoke <= 1);
    assert_int_equal(handled_p0(f, 0), f->committed_at_revoke == 1 ? 1 : 2);
    assert_int_equal(handled_p0(f, 1), 1);
    assert_int_equal(handled_p0(f, 2), 2);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
}

static bool p0_retry_waits_and_other_done(fx *f)
{
    return call_ended(f, 0, 0) && handled_p0(f, 1) == 1;
}

static void script_revoke_during_backoff(fx *f)
{
    STEP(wait_for(f, p0_retry_waits_and_other_done, 3000));
    int64_t t0 = now_ms();
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    f->committed_mid = now_ms() - t0; /* how long the revoke took */
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    f->assign_rc = tl_memory_assign(f->topic, 0);
    sleep_ms(300);
    STEP(wait_for(f, all_settled, 3000));
}

/* A retry waiting out its backoff below a handled offset runs at once when the
 * partition is revoked, its further retries too, so that the revoke commits past both
 * without waiting for the backoff or repeating the handled one. */
static void revoke_runs_waiting_retries_at_once(void **state)
{
    fx *f = *state;
    f->sleep_ms = 20;
    start(f, "revoke_retry",
          (opts){.workers = 2,
                 .ordering = "key",
                 .route_extra = "    on_error: { retries: 3, backoff: 10s }\n"});
    push(f, 0, "a", "flaky");
    push(f, 0, "b", "ok");
    run(f, script_revoke_during_backoff);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->assign_rc, 0);
    assert_true(f->committed_mid < 2000);
    assert_int_equal(f->committed_at_revoke, 2);
    assert_int_equal(handled_p0(f, 0), 3); /* attempts 1, 2 and 3, the last a success */
    assert_int_equal(handled_p0(f, 1), 1);
    assert_int_equal(stats(f).completed, 2);
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

/* ------------------------------------------------ a source's fatal error */

/* A source that refuses at start, as a broker refusing the credentials does. */
struct tl_source {
    tl_source_events ev;
};

static const tl_param refusing_params[] = {{NULL}};

static int refusing_open(const tl_params *conf, const tl_source_events *ev, tl_source **out,
                         char *err, size_t errlen)
{
    (void)conf, (void)err, (void)errlen;
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return TL_ENOMEM;
    (*out)->ev = *ev;
    return 0;
}

static int refusing_start(tl_source *s)
{
    s->ev.error(s->ev.rt, s, TL_EIO, true, "authentication refused");
    return 0;
}

static void refusing_pause(tl_source *s, bool paused)
{
    (void)s, (void)paused;
}

static int refusing_commit(tl_source *s, const char *topic, int32_t partition, int64_t next)
{
    (void)s, (void)topic, (void)partition, (void)next;
    return 0;
}

static void refusing_release(tl_source *s, tl_msg *m)
{
    (void)s, (void)m;
}

static void refusing_stop(tl_source *s)
{
    (void)s;
}

static void refusing_close(tl_source *s)
{
    free(s);
}

static const tl_source_ops refusing_ops = {
    .type = "refusing",
    .params = refusing_params,
    .open = refusing_open,
    .start = refusing_start,
    .pause = refusing_pause,
    .commit = refusing_commit,
    .release = refusing_release,
    .stop = refusing_stop,
    .close = refusing_close,
};

/* Stops the service after 5 s, so that a fatal error left unheeded fails the test. */
static void *stop_later(void *arg)
{
    fx *f = arg;
    for (int i = 0; i < 500 && !atomic_load(&f->released); i++)
        sleep_ms(10);
    tl_service_stop(f->svc);
    return NULL;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t g_all_settled_ns;

static void script_settle_then_idle(fx *f)
{
    STEP(wait_for(f, all_settled, 5000));
    g_all_settled_ns = mono_ns();
    sleep_ms(300);
}

static void the_span_runs_from_the_first_message_consumed_to_the_last_settled(void **state)
{
    fx *f = *state;
    f->sleep_ms = 30;
    start(f, "span", (opts){.partitions = 1, .ordering = "partition"});
    tl_service_stats before = stats(f);
    assert_int_equal(before.first_consumed_ns, 0);
    assert_int_equal(before.last_settled_ns, 0);
    for (int i = 0; i < 5; i++)
        push(f, 0, NULL, "ok");
    int64_t t0 = mono_ns();
    run(f, script_settle_then_idle);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 5);
    /* Five 30 ms handlers one after the other; the idle 300 ms after is not counted. */
    assert_true(s.first_consumed_ns >= t0);
    assert_true(s.last_settled_ns <= g_all_settled_ns);
    assert_true(s.last_settled_ns - s.first_consumed_ns >= 5 * 30 * 1000000LL);
    assert_balanced(f);
}

static void source_fatal_error_stops_the_service_and_run_returns_it(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_registry_add_source(f->reg, &refusing_ops), 0);
    start_yaml(f, "fatal",
               "service: s\n"
               "sources: { in: { type: refusing } }\n"
               "routes:\n"
               "  - { source: in, handler: h }\n");
    pthread_t guard;
    assert_int_equal(pthread_create(&guard, NULL, stop_later, f), 0);
    int64_t t0 = now_ms();
    int rc = tl_service_run(f->svc);
    int64_t took = now_ms() - t0;
    atomic_store(&f->released, true);
    pthread_join(guard, NULL);
    assert_int_equal(rc, TL_EIO);
    assert_true(took < 4000);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(the_span_runs_from_the_first_message_consumed_to_the_last_settled),
        T(stop_lets_running_handlers_finish_and_commits_them),
        T(stop_with_a_stuck_handler_returns_after_the_drain_timeout_without_its_commit),
        T(revoke_waits_for_running_handlers_commits_them_and_drops_the_queue),
        T(revoke_runs_what_waits_below_a_handled_offset_and_repeats_nothing),
        T(a_lost_partition_runs_nothing_it_had_not_started),
        T(revoke_runs_waiting_retries_at_once),
        T(offsets_committed_before_a_revoke_are_committed_again_after_reassignment),
        T(source_fatal_error_stops_the_service_and_run_returns_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
