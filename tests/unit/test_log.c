/*
 * The service's log as a user's program sees it on stderr: a service built from a
 * config logs as its `log:` section says (format, level), one event per message-level
 * happening with the message's origin, key, attempt and error; a flood is cut to a
 * burst per second with the rest counted in `log_suppressed`. The fixture is
 * service_helpers.h's; stderr is captured into a file while the service lives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/program.h>
#include <unistd.h>

#include "service_helpers.h"

#define FLOOD 10000

/* ------------------------------------------------------------ capturing stderr */

typedef struct capture {
    FILE *file;
    int saved;
    char *text; /* what was written, after capture_end */
} capture;

static void capture_begin(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Frees the service (its logger reports what it still counts as suppressed), then
 * gives stderr back and reads what was written. */
static void capture_end(capture *c, fx *f)
{
    tl_service_free(f->svc);
    f->svc = NULL;
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    long len = fseek(c->file, 0, SEEK_END) == 0 ? ftell(c->file) : -1;
    if (len < 0)
        fail_msg("cannot read the captured stderr");
    rewind(c->file);
    c->text = calloc(1, (size_t)len + 1);
    assert_non_null(c->text);
    assert_int_equal(fread(c->text, 1, (size_t)len, c->file), (size_t)len);
    fclose(c->file);
}

/* ------------------------------------------------------------ reading lines */

/* The lines of text that contain every one of the NULL-terminated needles. */
static size_t count_lines(const char *text, const char *const *needles, const char **first)
{
    size_t n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        bool all = true;
        for (const char *const *s = needles; *s && all; s++) {
            const char *hit = strstr(line, *s);
            all = hit && hit < line + len;
        }
        if (all && n++ == 0 && first)
            *first = line;
        line += len + (end ? 1 : 0);
    }
    return n;
}

#define LINES(text, ...) count_lines((text), (const char *const[]){__VA_ARGS__, NULL}, NULL)

/* Fails unless exactly one line has all the needles; shows the log when not. */
#define ONCE(text, ...)                                                                            \
    do {                                                                                           \
        size_t n_ = LINES(text, __VA_ARGS__);                                                      \
        if (n_ != 1)                                                                               \
            fail_msg("%zu lines with %s, not 1, in:\n%s", n_, #__VA_ARGS__, text);                 \
    } while (0)

/* ------------------------------------------------------------ the three messages */

static void yaml_of(char *out, size_t cap, const char *topic, const char *log, const char *route)
{
    snprintf(out, cap,
             "service: t\n"
             "loop: { workers: 4, max_in_flight: 1000, drain_timeout: 2s, "
             "max_replaced_workers: 2 }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: 1, batch: 64 }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: h\n"
             "    ordering: none\n"
             "%s"
             "log: %s\n",
             topic, route, log);
}

/* The stuck message's stalled attempt holds a worker until it is replaced; then it
 * is let go, and returns late. */
static void script_three(fx *f)
{
    STEP(wait_stat(f, STAT(replaced_workers), 1, 5000));
    atomic_store(&f->released, true);
    STEP(wait_stat(f, STAT(late), 1, 5000));
    STEP(wait_for(f, all_settled, 10000));
}

/* Runs a stall (offset 0), a failure retried once then dead-lettered (offset 1) and a
 * stuck handler that completes late (offset 2) with the given log: section; returns
 * the captured stderr (to free). */
static char *run_three(fx *f, const char *topic, const char *log)
{
    char route[512], yaml[2048];
    snprintf(route, sizeof(route),
             "    timeout: 200ms\n"
             "    on_stall: { reroute: \"memory:%s.stalled\" }\n"
             "    on_error: { retries: 1, backoff: 10ms, then: \"memory:%s.dlq\" }\n",
             topic, topic);
    yaml_of(yaml, sizeof(yaml), topic, log, route);
    start_yaml(f, topic, yaml);
    push(f, 0, "k-stall", "stall");
    push(f, 0, "k-fail", "fail");
    push(f, 0, "\x01\x02", "stuck");
    capture c;
    capture_begin(&c);
    run(f, script_three);
    tl_service_stats s = stats(f);
    capture_end(&c, f);
    assert_int_equal(s.stalled, 2);
    assert_int_equal(s.retries, 1);
    assert_int_equal(s.rerouted, 3);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.replaced_workers, 1);
    return c.text;
}

static void each_message_event_is_logged_once_with_its_fields_in_logfmt(void **state)
{
    fx *f = *state;
    char *log = run_three(f, "lf", "{ format: logfmt, level: info }");
    ONCE(log, "level=warn event=message_stalled handler=h source=in topic=lf partition=0 "
              "offset=0 message_key=k-stall attempt=1 error=\"handler exceeded its timeout\" "
              "timeout=200ms then=memory:lf.stalled");
    ONCE(log, "level=info event=message_rerouted ", " offset=0 ", "target=memory:lf.stalled",
         "reason=stalled");
    ONCE(log, "level=warn event=message_failed ", " offset=1 message_key=k-fail attempt=1 ",
         "error=\"boom 1\" then=retry retry_in=10ms");
    ONCE(log, "level=info event=message_retry ", " offset=1 message_key=k-fail attempt=2 ");
    ONCE(log, "level=warn event=message_failed ", " offset=1 message_key=k-fail attempt=2 ",
         "error=\"boom 1\" then=memory:lf.dlq");
    ONCE(log, "level=warn event=message_dead_lettered ", " offset=1 ", " attempt=2 ",
         "error=\"boom 1\"", "target=memory:lf.dlq reason=failed");
    /* A key that is not text is shown in hex. */
    ONCE(log, "level=warn event=message_stalled ", " offset=2 message_key=0x0102 attempt=1 ");
    ONCE(log, "level=warn event=worker_replaced ", " offset=2 message_key=0x0102 ");
    /* It was asked to stop when it stalled: its late result is the cancellation. */
    ONCE(log, "level=info event=message_late ", " offset=2 ", "attempt=1 error=cancelled",
         "result=cancelled");
    /* The stall returned on its cancellation: no late completion of its own. */
    assert_int_equal(LINES(log, "event=message_late"), 1);
    assert_int_equal(LINES(log, "event=message_failed"), 2);
    assert_int_equal(LINES(log, "event=message_stalled"), 2);
    assert_int_equal(LINES(log, "event=log_suppressed"), 0);
    free(log);
}

static void the_same_events_are_json_objects_with_the_json_format(void **state)
{
    fx *f = *state;
    char *log = run_three(f, "js", "{ format: json, level: info }");
    ONCE(log, "{\"time\":\"",
         "\"level\":\"warn\",\"event\":\"message_stalled\",\"handler\":\"h\","
         "\"source\":\"in\",\"topic\":\"js\",\"partition\":\"0\","
         "\"offset\":\"0\",\"message_key\":\"k-stall\",\"attempt\":\"1\"");
    ONCE(log, "\"event\":\"message_retry\"", "\"offset\":\"1\"", "\"attempt\":\"2\"",
         "\"error\":\"boom 1\"");
    ONCE(log, "\"event\":\"message_dead_lettered\"", "\"target\":\"memory:js.dlq\"");
    ONCE(log, "\"event\":\"message_late\"", "\"message_key\":\"0x0102\"");
    ONCE(log, "\"event\":\"worker_replaced\"", "\"offset\":\"2\"");
    assert_int_equal(LINES(log, "\"event\":\"message_failed\""), 2);
    assert_int_equal(LINES(log, "event="), 0);
    /* Every line is one object. */
    assert_int_equal(LINES(log, "{\"time\":"), LINES(log, "}"));
    free(log);
}

static void a_level_above_an_event_drops_it(void **state)
{
    fx *f = *state;
    char *log = run_three(f, "lw", "{ format: logfmt, level: warn }");
    assert_int_equal(LINES(log, "event=message_retry"), 0);
    assert_int_equal(LINES(log, "event=message_rerouted"), 0);
    assert_int_equal(LINES(log, "event=message_late"), 0);
    assert_int_equal(LINES(log, "level=info"), 0);
    assert_int_equal(LINES(log, "event=message_failed"), 2);
    ONCE(log, "event=message_dead_lettered");
    free(log);

    teardown(state);
    setup(state);
    f = *state;
    log = run_three(f, "le", "{ format: logfmt, level: error }");
    assert_int_equal(LINES(log, "event="), 0);
    free(log);
}

/* ------------------------------------------------------------ a flood */

static void script_flood(fx *f)
{
    STEP(wait_stat(f, STAT(rerouted), FLOOD, 30000));
    STEP(wait_for(f, all_settled, 10000));
}

/* Sums the count= of the log_suppressed lines of event. */
static uint64_t suppressed_of(const char *text, const char *event)
{
    char of[64];
    snprintf(of, sizeof(of), "event=log_suppressed of=%s count=", event);
    uint64_t sum = 0;
    for (const char *p = strstr(text, of); p; p = strstr(p + 1, of))
        sum += strtoull(p + strlen(of), NULL, 10);
    return sum;
}

static void a_flood_of_failures_is_cut_to_a_burst_a_second_and_counted(void **state)
{
    fx *f = *state;
    char route[256], yaml[2048];
    snprintf(route, sizeof(route), "    on_error: { then: \"memory:flood.dlq\" }\n");
    yaml_of(yaml, sizeof(yaml), "flood", "{ format: logfmt, level: info }", route);
    start_yaml(f, "flood", yaml);
    for (int i = 0; i < FLOOD; i++)
        push(f, 0, NULL, "fail");
    capture c;
    capture_begin(&c);
    int64_t t0 = now_ms();
    run(f, script_flood);
    int64_t seconds = (now_ms() - t0) / 1000 + 2;
    capture_end(&c, f);
    const char *log = c.text;
    size_t shown = LINES(log, "event=message_failed");
    size_t dlq = LINES(log, "event=message_dead_lettered");
    assert_true(shown >= 1);
    assert_true(shown <= (size_t)(TL_LOGGER_BURST * seconds));
    assert_true(dlq <= (size_t)(TL_LOGGER_BURST * seconds));
    /* Nothing vanishes: what was not shown is counted. */
    assert_int_equal(shown + suppressed_of(log, "message_failed"), FLOOD);
    assert_int_equal(dlq + suppressed_of(log, "message_dead_lettered"), FLOOD);
    assert_true(LINES(log, "level=warn event=log_suppressed of=message_failed count=") >= 1);
    free(c.text);
}

/* ------------------------------------------------------------ the logger alone */

static void the_logger_masks_secrets_and_escapes_values(void **state)
{
    (void)state;
    FILE *file = tmpfile();
    assert_non_null(file);
    tl_logger *lg = tl_logger_new(fileno(file), TL_LOG_JSON, TL_LOG_DEBUG);
    assert_non_null(lg);
    tl_kv kv[] = {{"sasl.password", "hunter2"}, {"what", "a \"quoted\"\nline"}};
    tl_logger_log(lg, TL_LEVEL_DEBUG, "x", kv, 2);
    tl_logger_setup(lg, TL_LOG_LOGFMT, TL_LOG_INFO);
    tl_logger_log(lg, TL_LEVEL_DEBUG, "dropped", kv, 2);
    tl_logger_log(lg, TL_LEVEL_INFO, "y", kv, 2);
    tl_logger_free(lg);
    char text[1024] = "";
    rewind(file);
    size_t len = fread(text, 1, sizeof(text) - 1, file);
    text[len] = '\0';
    fclose(file);
    assert_null(strstr(text, "hunter2"));
    ONCE(text, "\"event\":\"x\",\"sasl.password\":\"*****\",\"what\":\"a \\\"quoted\\\"\\nline\"}");
    ONCE(text, "level=info event=y sasl.password=***** what=\"a \\\"quoted\\\"\\nline\"");
    assert_int_equal(LINES(text, "dropped"), 0);
}

/* ------------------------------------------------------------ trace context */

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACEPARENT "00-" TRACE_ID "-00f067aa0ba902b7-01"

static void a_traceparent_travels_with_its_message_and_names_it_on_each_log_line(void **state)
{
    fx *f = *state;
    char yaml[2048];
    yaml_of(yaml, sizeof(yaml), "tp", "{ format: logfmt, level: info }",
            "    on_error: { retries: 1, backoff: 10ms, then: \"memory:tp.dlq\" }\n");
    start_yaml(f, "tp", yaml);
    tl_header h[] = {{"traceparent", TRACEPARENT, strlen(TRACEPARENT)}};
    tl_out_msg m = {.payload = "fail", .len = 4, .headers = h, .nheaders = 1};
    assert_int_equal(tl_memory_push_msg("tp", 0, &m), 0);
    push(f, 0, NULL, "fail"); /* no trace context: no trace_id */
    capture c;
    capture_begin(&c);
    run(f, script_until_all_settled);
    capture_end(&c, f);
    const char *id = "trace_id=" TRACE_ID;
    ONCE(c.text, "event=message_failed ", " offset=0 ", id, " attempt=1 ");
    ONCE(c.text, "event=message_retry ", " offset=0 ", id, " attempt=2 ");
    ONCE(c.text, "event=message_failed ", " offset=0 ", id, " attempt=2 ");
    ONCE(c.text, "event=message_dead_lettered ", " offset=0 ", id);
    assert_int_equal(LINES(c.text, " offset=1 ", "trace_id="), 0);
    assert_int_equal(LINES(c.text, " offset=1 ", "event=message_dead_lettered"), 1);
    free(c.text);
    /* The dead letter carries the header as it came, for the next hop to continue (the
     * two dead letters may come in either order: ordering none). */
    assert_int_equal(tl_memory_sink_count("tp.dlq"), 2);
    size_t with = 0;
    for (size_t i = 0; i < 2; i++) {
        tl_memory_record *r = NULL;
        assert_int_equal(tl_memory_sink_get("tp.dlq", i, &r), 0);
        for (size_t h = 0; h < r->nheaders; h++)
            with += strcmp(r->headers[h].name, "traceparent") == 0 &&
                    r->headers[h].len == strlen(TRACEPARENT) &&
                    memcmp(r->headers[h].value, TRACEPARENT, strlen(TRACEPARENT)) == 0;
        tl_memory_record_free(r);
    }
    assert_int_equal(with, 1);
}

/* A handler reads the trace id with tl_msg_trace_id; a malformed header is no trace. */
static void only_a_well_formed_traceparent_gives_a_trace_id(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",      /* short */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     /* zero parent id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", /* 00 with more */
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",     /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",     /* not hex */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",    /* no dash after */
    };
    char id[TL_TRACE_ID_LEN + 1];
    tl_header h = {"traceparent", NULL, 0};
    tl_msg m = {.headers = &h, .nheaders = 1};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h.value = bad[i];
        h.len = strlen(bad[i]);
        if (tl_msg_trace_id(&m, id))
            fail_msg("accepted %s", bad[i]);
    }
    static const char *const good[] = {TRACEPARENT,
                                       "01-" TRACE_ID "-00f067aa0ba902b7-01-future-fields"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        h.value = good[i];
        h.len = strlen(good[i]);
        memset(id, 0, sizeof(id));
        assert_true(tl_msg_trace_id(&m, id));
        assert_string_equal(id, TRACE_ID);
    }
    m.nheaders = 0;
    assert_false(tl_msg_trace_id(&m, id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_message_event_is_logged_once_with_its_fields_in_logfmt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_same_events_are_json_objects_with_the_json_format,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_level_above_an_event_drops_it, setup, teardown),
        cmocka_unit_test_setup_teardown(a_flood_of_failures_is_cut_to_a_burst_a_second_and_counted,
                                        setup, teardown),
        cmocka_unit_test(the_logger_masks_secrets_and_escapes_values),
        cmocka_unit_test_setup_teardown(
            a_traceparent_travels_with_its_message_and_names_it_on_each_log_line, setup, teardown),
        cmocka_unit_test(only_a_well_formed_traceparent_gives_a_trace_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
