/*
 * Handler outputs (tl_handler_emit, routes[].outputs): what an attempt emits is sent
 * only once it succeeded, in order, and its message is settled (committed) only when
 * every output acknowledged; a failed attempt's and a stalled one's emits never go; a
 * refused send is tried again; the built-in forward handler copies messages to an
 * output. Handlers in worker processes (isolation: process) emit the same way. The
 * fixture is service_helpers.h's, with a handler of its own that emits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

static _Atomic int last_rc = 1; /* what the last emit to an unknown output returned */

static int emit_bytes(tl_task *task, const char *output, const void *payload, size_t len)
{
    tl_header h[] = {{"origin", "test", 4}};
    tl_out_msg m = {
        .payload = payload, .len = len, .key = "k", .key_len = 1, .headers = h, .nheaders = 1};
    return tl_handler_emit(task, output, &m);
}

static int emit_text(tl_task *task, const char *output, const char *text)
{
    return emit_bytes(task, output, text, strlen(text));
}

/* emit2: emits "a" then "b"; emitfail: emits "attempt N", fails the first attempt;
 * emitstall: waits for cancellation, then emits; emitbad: emits to an unknown output;
 * emitcrash: emits, then crashes (in a worker process only); anything else: emits
 * itself. */
static int emitter(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    /* A payload has no NUL after it in a worker process: compared as a copy. */
    char p[16];
    snprintf(p, sizeof(p), "%.*s", (int)(msg->len < sizeof(p) ? msg->len : sizeof(p) - 1),
             (const char *)msg->payload);
    if (strcmp(p, "emit2") == 0)
        return emit_text(task, "out", "a") || emit_text(task, "out", "b");
    if (strcmp(p, "emitfail") == 0) {
        char text[32];
        snprintf(text, sizeof(text), "attempt %u", tl_handler_attempt(task));
        int rc = emit_text(task, NULL, text);
        return rc ? rc : tl_handler_attempt(task) < 2 ? TL_EFAIL : 0;
    }
    if (strcmp(p, "emitstall") == 0) {
        while (!tl_cancelled(task))
            sleep_ms(1);
        return emit_text(task, "out", "late");
    }
    if (strcmp(p, "emitbad") == 0) {
        last_rc = emit_text(task, "nope", "x");
        return 0;
    }
    if (strcmp(p, "emitcrash") == 0) {
        emit_text(task, "out", "before the crash");
        raise(SIGSEGV);
    }
    return emit_bytes(task, "out", msg->payload, msg->len);
}

static void start_emitting_with(fx *f, const char *topic, const char *extra, opts o)
{
    assert_int_equal(tl_register_handler(f->reg, "emitter", emitter, NULL), 0);
    char route[512];
    snprintf(route, sizeof(route), "    outputs: { out: \"memory:%s.out\" }\n%s", topic,
             extra ? extra : "");
    o.handler = "emitter";
    o.route_extra = route;
    start(f, topic, o);
}

static void start_emitting(fx *f, const char *topic, const char *extra)
{
    start_emitting_with(f, topic, extra, (opts){0});
}

static void assert_payload(const char *store, size_t i, const char *want)
{
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get(store, i, &r), 0);
    assert_int_equal(r->len, strlen(want));
    assert_memory_equal(r->payload, want, r->len);
    assert_int_equal(r->key_len, 1);
    assert_header(r, "origin", "test");
    tl_memory_record_free(r);
}

static bool two_held(fx *f)
{
    (void)f;
    return tl_memory_sink_held("held.out") == 2;
}

static char held_stats[8192];

static void script_hold_then_release(fx *f)
{
    STEP(wait_for(f, two_held, 5000));
    sleep_ms(50); /* a commit would have come by now */
    f->committed_mid = tl_memory_committed(f->topic, 0);
    f->seen_max_in_flight = stats(f).in_flight;
    STEP(http_get(tl_service_admin_port(f->svc), "/stats", held_stats, sizeof(held_stats)) == 200);
    tl_memory_sink_release_held("held.out");
    STEP(wait_for(f, all_settled, 5000));
}

static void emits_go_in_order_after_success_and_the_commit_waits_for_them(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_handler(f->reg, "emitter", emitter, NULL), 0);
    assert_int_equal(tl_memory_sink_set_mode("held.out", TL_MEMSINK_HOLD), 0);
    start(f, "held",
          (opts){.handler = "emitter",
                 .route_extra = "    outputs: { out: \"memory:held.out\" }\n",
                 .top_extra = "admin: { listen: \"127.0.0.1:0\" }\n"});
    push(f, 0, NULL, "emit2");
    run(f, script_hold_then_release);
    assert_true(f->committed_mid <= 0);
    assert_int_equal(f->seen_max_in_flight, 1);
    /* An operator sees what it waits for. */
    assert_non_null(strstr(held_stats, "\"emitting\":1"));
    assert_int_equal(tl_memory_sink_count("held.out"), 2);
    assert_payload("held.out", 0, "a");
    assert_payload("held.out", 1, "b");
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_int_equal(stats(f).emitted, 2);
    assert_balanced(f);
}

static void a_failed_attempts_emits_are_dropped_and_its_retry_emits_afresh(void **state)
{
    fx *f = *state;
    start_emitting(f, "retried", "    on_error: { retries: 1, backoff: 10ms }\n");
    push(f, 0, NULL, "emitfail");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("retried.out"), 1);
    assert_payload("retried.out", 0, "attempt 2");
    assert_balanced(f);
}

static void a_stalled_attempts_late_emits_never_go(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_handler(f->reg, "emitter", emitter, NULL), 0);
    start(f, "stalling",
          (opts){.handler = "emitter",
                 .timeout = "100ms",
                 .route_extra = "    outputs: { out: \"memory:stalling.out\" }\n"
                                "    on_stall: { reroute: \"memory:stalling.stalled\" }\n"});
    push(f, 0, NULL, "emitstall");
    run(f, script_until_all_settled); /* the stalled handler returned, having emitted */
    assert_int_equal(tl_memory_sink_count("stalling.stalled"), 1);
    assert_int_equal(tl_memory_sink_count("stalling.out"), 0);
    assert_int_equal(stats(f).emitted, 0);
    assert_balanced(f);
}

static bool refused_once(fx *f)
{
    return stats(f).emit_errors >= 1;
}

static void script_refuse_then_accept(fx *f)
{
    STEP(wait_for(f, refused_once, 5000));
    f->committed_mid = tl_memory_committed(f->topic, 0);
    tl_memory_sink_set_mode("refused.out", TL_MEMSINK_OK);
    STEP(wait_for(f, all_settled, 5000));
}

static void a_refused_emit_is_sent_again_and_the_message_waits(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_memory_sink_set_mode("refused.out", TL_MEMSINK_FAIL), 0);
    start_emitting(f, "refused", NULL);
    push(f, 0, NULL, "one");
    run(f, script_refuse_then_accept);
    assert_true(f->committed_mid <= 0);
    assert_int_equal(tl_memory_sink_count("refused.out"), 1);
    assert_payload("refused.out", 0, "one");
    assert_int_equal(tl_memory_committed(f->topic, 0), 1);
    assert_balanced(f);
}

static void an_unknown_output_is_an_error_for_the_handler(void **state)
{
    fx *f = *state;
    start_emitting(f, "unknown", NULL);
    push(f, 0, NULL, "emitbad");
    run(f, script_until_all_settled);
    assert_int_equal(last_rc, TL_ENOTFOUND);
    assert_int_equal(tl_memory_sink_count("unknown.out"), 0);
    assert_int_equal(stats(f).completed, 1);
    assert_balanced(f);
}

static void forward_copies_each_message_to_its_output_in_order(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    start(f, "fwd",
          (opts){.handler = "forward",
                 .route_extra = "    outputs: { copy: \"memory:fwd.copy\" }\n"});
    tl_header h[] = {{"origin", "test", 4}};
    for (int i = 0; i < 5; i++) {
        char p[8];
        snprintf(p, sizeof(p), "m%d", i);
        tl_out_msg m = {
            .payload = p, .len = strlen(p), .key = "k", .key_len = 1, .headers = h, .nheaders = 1};
        assert_true(tl_memory_push_msg(f->topic, 0, &m) >= 0);
    }
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("fwd.copy"), 5);
    for (size_t i = 0; i < 5; i++) {
        char p[8];
        snprintf(p, sizeof(p), "m%zu", i);
        assert_payload("fwd.copy", i, p);
    }
    assert_int_equal(tl_memory_committed(f->topic, 0), 5);
    assert_balanced(f);
}

static void work_with_emit_copies_what_completed_and_nothing_else(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    start(f, "wemit",
          (opts){.handler = "work",
                 .route_extra = "    outputs: { copy: \"memory:wemit.copy\" }\n"
                                "    on_error: { then: \"memory:wemit.dlq\" }\n"
                                "    params: { ms: \"0\", emit: copy }\n"});
    push(f, 0, "k", "id=1");
    push(f, 0, "k", "id=2 fail");
    push(f, 0, "k", "id=3");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("wemit.copy"), 2);
    assert_int_equal(tl_memory_sink_count("wemit.dlq"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("wemit.copy", 1, &r), 0);
    assert_int_equal(r->len, 4);
    assert_memory_equal(r->payload, "id=3", 4);
    tl_memory_record_free(r);
    assert_balanced(f);
}

static void forward_without_outputs_is_refused_by_the_config(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    tl_config *cfg = NULL;
    tl_diag diag = {0};
    int rc = tl_config_load_string("t.yaml",
                                   "service: s\n"
                                   "sources: { in: { type: memory, name: t } }\n"
                                   "routes:\n"
                                   "  - { source: in, handler: forward }\n",
                                   f->reg, NULL, &cfg, &diag);
    assert_int_equal(rc, TL_ECONFIG);
    assert_int_equal(diag.count, 1);
    assert_string_equal(diag.msgs[0],
                        "t.yaml:4:28: error: routes[0].handler: forward copies each message to "
                        "an output: give the route outputs (e.g. outputs: { out: "
                        "\"kafka:orders.copy\" })");
    tl_diag_free(&diag);
}

/* ------------------------------------------------ from worker processes */

static void emits_from_a_worker_process_go_in_order_once_it_succeeded(void **state)
{
    fx *f = *state;
    start_emitting(f, "pemit", "    isolation: process\n");
    push(f, 0, NULL, "emit2");
    push(f, 0, NULL, "one");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("pemit.out"), 3);
    assert_payload("pemit.out", 0, "a");
    assert_payload("pemit.out", 1, "b");
    assert_payload("pemit.out", 2, "one");
    assert_int_equal(tl_memory_committed(f->topic, 0), 2);
    assert_int_equal(stats(f).emitted, 3);
    assert_balanced(f);
}

static void a_failed_attempts_emits_in_a_worker_process_are_dropped(void **state)
{
    fx *f = *state;
    start_emitting(f, "pretried",
                   "    isolation: process\n"
                   "    on_error: { retries: 1, backoff: 10ms }\n");
    push(f, 0, NULL, "emitfail");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("pretried.out"), 1);
    assert_payload("pretried.out", 0, "attempt 2");
    assert_balanced(f);
}

static void a_stalled_attempts_late_emits_in_a_worker_process_never_go(void **state)
{
    fx *f = *state;
    start_emitting_with(f, "pstalling",
                        "    isolation: process\n"
                        "    on_stall: { reroute: \"memory:pstalling.stalled\" }\n",
                        (opts){.timeout = "100ms"});
    push(f, 0, NULL, "emitstall");
    push(f, 0, NULL, "after");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("pstalling.stalled"), 1);
    /* Only the next message's own output: the stalled one's late "late" never went. */
    assert_int_equal(tl_memory_sink_count("pstalling.out"), 1);
    assert_payload("pstalling.out", 0, "after");
    assert_balanced(f);
}

static void a_handler_crashing_after_it_emitted_sends_nothing(void **state)
{
    fx *f = *state;
    start_emitting(f, "pcrash",
                   "    isolation: process\n"
                   "    on_error: { retries: 1, backoff: 1ms, then: \"memory:pcrash.dlq\" }\n");
    push(f, 0, NULL, "emitcrash");
    push(f, 0, NULL, "fine");
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("pcrash.dlq"), 1);
    assert_int_equal(tl_memory_sink_count("pcrash.out"), 1);
    assert_payload("pcrash.out", 0, "fine");
    assert_int_equal(stats(f).handler_crashes, 2);
    assert_balanced(f);
}

/* Messages and outputs larger than the ring the two processes share go over the socket
 * (frame.c, ring.c), several reads each, among small ones: every output whole, once. */
static void large_and_small_emits_from_worker_processes_arrive_whole(void **state)
{
    fx *f = *state;
    start_emitting_with(f, "pbig", "    isolation: process\n",
                        (opts){.workers = 4, .partitions = 4, .ordering = "key"});
    static char big[3][300001];
    for (int b = 0; b < 3; b++) {
        memset(big[b], 'a' + b, sizeof(big[b]) - 1);
        big[b][sizeof(big[b]) - 1] = '\0';
    }
    for (int i = 0; i < 400; i++) {
        char p[32];
        snprintf(p, sizeof(p), "m%d", i);
        push(f, i % 4, NULL, i % 100 == 50 ? big[i / 150] : p);
    }
    run(f, script_until_all_settled);
    assert_int_equal(tl_memory_sink_count("pbig.out"), 400);
    size_t bigs = 0, smalls = 0;
    for (size_t i = 0; i < 400; i++) {
        tl_memory_record *r = NULL;
        assert_int_equal(tl_memory_sink_get("pbig.out", i, &r), 0);
        if (r->len == sizeof(big[0]) - 1) {
            const char *c = r->payload;
            for (size_t k = 1; k < r->len; k++)
                assert_int_equal(c[k], c[0]);
            bigs++;
        } else {
            assert_true(r->len >= 2 && ((const char *)r->payload)[0] == 'm');
            smalls++;
        }
        assert_header(r, "origin", "test");
        tl_memory_record_free(r);
    }
    assert_int_equal(bigs, 4);
    assert_int_equal(smalls, 396);
    assert_int_equal(stats(f).emitted, 400);
    assert_balanced(f);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(emits_go_in_order_after_success_and_the_commit_waits_for_them),
        T(a_failed_attempts_emits_are_dropped_and_its_retry_emits_afresh),
        T(a_stalled_attempts_late_emits_never_go),
        T(a_refused_emit_is_sent_again_and_the_message_waits),
        T(an_unknown_output_is_an_error_for_the_handler),
        T(forward_copies_each_message_to_its_output_in_order),
        T(work_with_emit_copies_what_completed_and_nothing_else),
        T(forward_without_outputs_is_refused_by_the_config),
        T(emits_from_a_worker_process_go_in_order_once_it_succeeded),
        T(a_failed_attempts_emits_in_a_worker_process_are_dropped),
        T(a_stalled_attempts_late_emits_in_a_worker_process_never_go),
        T(a_handler_crashing_after_it_emitted_sends_nothing),
        T(large_and_small_emits_from_worker_processes_arrive_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
