/*
 * Handlers as a service runs them, on the memory adapter: the built-in handlers of
 * tl_register_builtin_handlers (`discard` completes everything; `work` takes `ms`,
 * fails messages marked `fail`, stalls those marked `stall` (until cancelled, or
 * ignoring it for `stall_ms` when `stall: stuck`), fails by `fail_ratio` the same
 * messages on every attempt, burns `spin_us` of CPU time per message, and records the ids it
 * completed; `log` writes a line per message), and what any handler reads about its task:
 * tl_handler_param gives its route's params, tl_handler_attempt the attempt it runs. The fixture is
 * service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "service_helpers.h"

static int setup_builtin(void **state)
{
    int rc = setup(state);
    if (rc == 0)
        assert_int_equal(tl_register_builtin_handlers(((fx *)*state)->reg), 0);
    return rc;
}

/* A fresh, empty file's path in out (at least 64 bytes); the test removes it. */
static void temp_file(char *out)
{
    snprintf(out, 64, "/tmp/tl_test_handlers_XXXXXX");
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
}

/* The file's text (up to 4 KiB), NUL-terminated, in out. */
static void read_file(const char *path, char *out, size_t cap)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(out, 1, cap - 1, fp);
    out[n] = '\0';
    fclose(fp);
}

/* ------------------------------------------------------------ built-in handlers */

static void builtin_handlers_are_log_work_and_discard_and_register_once(void **state)
{
    fx *f = *state;
    static const char *names[] = {"log", "work", "discard"};
    for (size_t i = 0; i < 3; i++) {
        tl_handler_fn fn = NULL;
        void *user = NULL;
        assert_int_equal(tl_registry_handler(f->reg, names[i], &fn, &user), 0);
        assert_non_null(fn);
    }
    assert_int_equal(tl_register_builtin_handlers(f->reg), TL_EINVAL);
}

static void discard_completes_every_message_whatever_its_payload(void **state)
{
    fx *f = *state;
    start(f, "discarded", (opts){.handler = "discard", .partitions = 2});
    for (int i = 0; i < 30; i++)
        push(f, i % 2, NULL, i % 3 == 0 ? "stall" : i % 3 == 1 ? "fail" : "id=1");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 30);
    assert_int_equal(s.failed + s.stalled + s.dropped, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 15);
    assert_int_equal(tl_memory_committed(f->topic, 1), 15);
    assert_balanced(f);
}

/* The route lines for `work` recording into path, plus more params. */
static const char *work_route(char *buf, size_t cap, const char *path, const char *more,
                              const char *targets)
{
    snprintf(buf, cap, "    params: { record: \"%s\"%s }\n%s", path, more, targets);
    return buf;
}

static void work_completes_messages_and_records_their_ids_in_order(void **state)
{
    fx *f = *state;
    char path[64], route[512], text[4096];
    temp_file(path);
    start(f, "worked",
          (opts){.handler = "work", .route_extra = work_route(route, sizeof(route), path, "", "")});
    push(f, 0, NULL, "id=000001");
    push(f, 0, NULL, "x id=000002 y");
    push(f, 0, NULL, "no id here");
    push(f, 0, NULL, "id=000004\nmore");
    run(f, script_until_all_settled);
    read_file(path, text, sizeof(text));
    unlink(path);
    assert_string_equal(text, "id=000001\nid=000002\nid=000004\n");
    assert_int_equal(stats(f).completed, 4);
    assert_balanced(f);
}

static void work_fails_messages_marked_fail_and_records_only_the_others(void **state)
{
    fx *f = *state;
    char path[64], route[512], text[4096];
    temp_file(path);
    start(
        f, "work_fail",
        (opts){
            .handler = "work",
            .route_extra = work_route(
                route, sizeof(route), path, "",
                "    on_error: { retries: 1, backoff: 10ms, then: \"memory:work_fail.dlq\" }\n")});
    push(f, 0, NULL, "id=1");
    push(f, 0, NULL, "id=2 fail");
    push(f, 0, NULL, "id=3");
    run(f, script_until_all_settled);
    read_file(path, text, sizeof(text));
    unlink(path);
    assert_string_equal(text, "id=1\nid=3\n");
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("work_fail.dlq"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("work_fail.dlq", 0, &r), 0);
    assert_memory_equal(r->payload, "id=2 fail", r->len);
    assert_header(r, "tl-reason", "failed");
    assert_header(r, "tl-attempt", "2");
    assert_header(r, "tl-error", "simulated failure");
    tl_memory_record_free(r);
    assert_balanced(f);
}

static void work_stalls_messages_marked_stall_and_records_only_the_others(void **state)
{
    fx *f = *state;
    char path[64], route[512], text[4096];
    temp_file(path);
    start(f, "work_stall",
          (opts){.handler = "work",
                 .timeout = "200ms",
                 .route_extra =
                     work_route(route, sizeof(route), path, "",
                                "    on_stall: { reroute: \"memory:work_stall.out\" }\n")});
    push(f, 0, NULL, "id=1");
    push(f, 0, NULL, "id=2 stall");
    push(f, 0, NULL, "id=3");
    run(f, script_until_all_settled);
    read_file(path, text, sizeof(text));
    unlink(path);
    assert_string_equal(text, "id=1\nid=3\n");
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 2);
    assert_int_equal(tl_memory_sink_count("work_stall.out"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("work_stall.out", 0, &r), 0);
    assert_memory_equal(r->payload, "id=2 stall", r->len);
    assert_header(r, "tl-reason", "stalled");
    tl_memory_record_free(r);
    assert_balanced(f);
}

static void script_until_late(fx *f)
{
    STEP(wait_stat(f, STAT(late), 1, 5000));
    STEP(wait_for(f, all_settled, 3000));
}

/* A stuck handler goes on long past its cancellation: it finishes late. */
static void work_in_stuck_mode_ignores_cancellation_for_stall_ms(void **state)
{
    fx *f = *state;
    start(f, "work_stuck",
          (opts){.handler = "work",
                 .timeout = "100ms",
                 .route_extra = "    params: { stall: stuck, stall_ms: \"600\" }\n"
                                "    on_stall: { reroute: \"memory:work_stuck.out\" }\n"});
    push(f, 0, NULL, "stall");
    run(f, script_until_late);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.rerouted, 1);
    assert_int_equal(tl_memory_sink_count("work_stuck.out"), 1);
    assert_balanced(f);
}

static void work_taking_longer_than_the_timeout_stalls(void **state)
{
    fx *f = *state;
    start(f, "work_slow",
          (opts){.handler = "work",
                 .timeout = "150ms",
                 .route_extra = "    params: { ms: \"10000\" }\n"
                                "    on_stall: { reroute: \"memory:work_slow.out\" }\n"});
    push(f, 0, NULL, "id=1");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 0);
    assert_int_equal(tl_memory_sink_count("work_slow.out"), 1);
    assert_balanced(f);
}

/* The CPU time this process has used, in microseconds. */
static int64_t process_cpu_us(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts), 0);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* spin_us is CPU time, not a sleep: 5 messages of 40 ms each burn at least 200 ms. */
static void work_spin_us_burns_that_much_cpu_per_message(void **state)
{
    fx *f = *state;
    start(f, "work_spin",
          (opts){.handler = "work",
                 .ordering = "none",
                 .route_extra = "    params: { ms: \"0\", spin_us: \"40000\" }\n"});
    for (int i = 0; i < 5; i++)
        push(f, 0, NULL, "id=1");
    int64_t before = process_cpu_us();
    run(f, script_until_all_settled);
    assert_true(process_cpu_us() - before >= 5 * 40000);
    assert_int_equal(stats(f).completed, 5);
    assert_balanced(f);
}

/* Half the messages, by their place: a message that failed once fails every attempt. */
static void work_fail_ratio_fails_the_same_messages_on_every_attempt(void **state)
{
    fx *f = *state;
    start(f, "work_ratio",
          (opts){.handler = "work",
                 .ordering = "none",
                 .route_extra = "    params: { fail_ratio: \"0.5\" }\n"
                                "    on_error: { retries: 2, backoff: 1ms, "
                                "then: \"memory:work_ratio.dlq\" }\n"});
    for (int i = 0; i < 40; i++)
        push(f, 0, NULL, "id=1");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_true(s.completed > 0);
    assert_true(s.rerouted > 0);
    assert_int_equal(s.completed + s.rerouted, 40);
    assert_int_equal(s.failed, 3 * s.rerouted);
    assert_int_equal(s.retries, 2 * s.rerouted);
    assert_int_equal(tl_memory_sink_count("work_ratio.dlq"), s.rerouted);
    assert_balanced(f);
}

static void log_writes_one_line_per_message_naming_its_origin_and_offset(void **state)
{
    fx *f = *state;
    char path[64], route[256], text[4096];
    temp_file(path);
    snprintf(route, sizeof(route), "    params: { file: \"%s\" }\n", path);
    start(f, "logged", (opts){.handler = "log", .route_extra = route});
    push(f, 0, NULL, "a");
    push(f, 0, NULL, "bb");
    push(f, 0, NULL, "ccc");
    run(f, script_until_all_settled);
    read_file(path, text, sizeof(text));
    unlink(path);
    char *save = NULL;
    int lines = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char offset[32], size[32];
        snprintf(offset, sizeof(offset), "offset=%d", lines);
        snprintf(size, sizeof(size), "size=%d", lines + 1);
        assert_non_null(strstr(line, "origin=logged"));
        assert_non_null(strstr(line, offset));
        assert_non_null(strstr(line, size));
        lines++;
    }
    assert_int_equal(lines, 3);
    assert_int_equal(stats(f).completed, 3);
    assert_balanced(f);
}

/* ------------------------------------------------------------ what a handler reads */

#define MAXPROBES 8

/* What the probe handler saw, call by call. */
typedef struct probe {
    pthread_mutex_t mu;
    size_t n;
    unsigned attempt[MAXPROBES];
    char color[MAXPROBES][16], absent[MAXPROBES][16];
} probe;

/* Records its params and attempt; fails its first attempt when param fail_first is yes. */
static int probe_handler(tl_task *task, const tl_msg *msg, void *user)
{
    (void)msg;
    probe *p = user;
    unsigned attempt = tl_handler_attempt(task);
    pthread_mutex_lock(&p->mu);
    if (p->n < MAXPROBES) {
        p->attempt[p->n] = attempt;
        snprintf(p->color[p->n], 16, "%s", tl_handler_param(task, "color", "none"));
        snprintf(p->absent[p->n], 16, "%s", tl_handler_param(task, "absent", "dflt"));
        p->n++;
    }
    pthread_mutex_unlock(&p->mu);
    bool fail_first = strcmp(tl_handler_param(task, "fail_first", "no"), "yes") == 0;
    return fail_first && attempt == 1 ? TL_EFAIL : 0;
}

static int setup_probe(void **state)
{
    int rc = setup(state);
    if (rc != 0)
        return rc;
    fx *f = *state;
    probe *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pthread_mutex_init(&p->mu, NULL);
    assert_int_equal(tl_register_handler(f->reg, "probe", probe_handler, p), 0);
    return 0;
}

static probe *probe_of(fx *f)
{
    tl_handler_fn fn;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(f->reg, "probe", &fn, &user), 0);
    return user;
}

static int teardown_probe(void **state)
{
    probe *p = probe_of(*state);
    int rc = teardown(state);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return rc;
}

static void handler_param_gives_the_routes_value_or_the_default(void **state)
{
    fx *f = *state;
    start(f, "params", (opts){.handler = "probe", .route_extra = "    params: { color: blue }\n"});
    push(f, 0, NULL, "x");
    run(f, script_until_all_settled);
    probe *p = probe_of(f);
    assert_int_equal(p->n, 1);
    assert_string_equal(p->color[0], "blue");
    assert_string_equal(p->absent[0], "dflt");
    assert_balanced(f);
}

static bool two_completed(fx *f)
{
    tl_service_stats s = stats(f);
    return s.completed == 2 && s.in_flight == 0;
}

static void script_until_two_completed(fx *f)
{
    STEP(wait_for(f, two_completed, 5000));
}

static void handler_params_are_those_of_the_route_running_it(void **state)
{
    fx *f = *state;
    start_yaml(f, "red_in",
               "service: t\n"
               "loop: { workers: 2 }\n"
               "sources:\n"
               "  red: { type: memory, name: red_in }\n"
               "  green: { type: memory, name: green_in }\n"
               "routes:\n"
               "  - source: red\n"
               "    handler: probe\n"
               "    params: { color: red }\n"
               "  - source: green\n"
               "    handler: probe\n"
               "    params: { color: green }\n");
    assert_true(tl_memory_push("red_in", 0, NULL, "r", 1) >= 0);
    assert_true(tl_memory_push("green_in", 0, NULL, "g", 1) >= 0);
    run(f, script_until_two_completed);
    probe *p = probe_of(f);
    assert_int_equal(p->n, 2);
    bool red = strcmp(p->color[0], "red") == 0 || strcmp(p->color[1], "red") == 0;
    bool green = strcmp(p->color[0], "green") == 0 || strcmp(p->color[1], "green") == 0;
    assert_true(red && green);
    assert_balanced(f);
}

static void handler_attempt_is_1_then_2_on_the_retry(void **state)
{
    fx *f = *state;
    start(f, "attempts",
          (opts){.handler = "probe",
                 .route_extra = "    params: { fail_first: \"yes\" }\n"
                                "    on_error: { retries: 1, backoff: 10ms }\n"});
    push(f, 0, NULL, "x");
    run(f, script_until_all_settled);
    probe *p = probe_of(f);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->attempt[0], 1);
    assert_int_equal(p->attempt[1], 2);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.retries, 1);
    assert_balanced(f);
}

/* A plain task (not a handler's) asks what only a handler's task can answer. */
static int ask_as_plain_task(tl_task *task, void *arg)
{
    const char **param = arg;
    *param = tl_handler_param(task, "file", "default");
    return tl_handler_attempt(task) == 0 ? 0 : TL_EFAIL;
}

static void handler_param_of_a_task_that_runs_no_handler_is_null(void **state)
{
    (void)state;
    tl_loop *loop = NULL;
    assert_int_equal(tl_loop_new(&(tl_loop_opts){.workers = 1}, &loop), 0);
    const char *param = "unset";
    tl_task *t = tl_task_create(loop, ask_as_plain_task, &param);
    tl_result r;
    assert_int_equal(tl_gather(loop, &t, 1, true, &r), 0);
    assert_int_equal(r.error, 0); /* tl_handler_attempt answered 0 */
    assert_null(param);
    tl_task_release(t);
    tl_loop_free(loop);
}

int main(void)
{
#define B(name) cmocka_unit_test_setup_teardown(name, setup_builtin, teardown)
#define P(name) cmocka_unit_test_setup_teardown(name, setup_probe, teardown_probe)
    const struct CMUnitTest tests[] = {
        B(builtin_handlers_are_log_work_and_discard_and_register_once),
        B(discard_completes_every_message_whatever_its_payload),
        B(work_completes_messages_and_records_their_ids_in_order),
        B(work_fails_messages_marked_fail_and_records_only_the_others),
        B(work_stalls_messages_marked_stall_and_records_only_the_others),
        B(work_in_stuck_mode_ignores_cancellation_for_stall_ms),
        B(work_taking_longer_than_the_timeout_stalls),
        B(work_fail_ratio_fails_the_same_messages_on_every_attempt),
        B(work_spin_us_burns_that_much_cpu_per_message),
        B(log_writes_one_line_per_message_naming_its_origin_and_offset),
        P(handler_param_gives_the_routes_value_or_the_default),
        P(handler_params_are_those_of_the_route_running_it),
        P(handler_attempt_is_1_then_2_on_the_retry),
        cmocka_unit_test(handler_param_of_a_task_that_runs_no_handler_is_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
