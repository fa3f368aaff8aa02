/*
 * isolation: process. A route's handlers run in worker processes: a handler that
 * crashes fails its attempt (retried, then dead-lettered with the signal in tl-error)
 * and its process is replaced while the service goes on; one that ignores its
 * cancellation is killed past the grace; memory and cpu_time limits turn a runaway
 * into a failed attempt. Several messages go to a process at once: those behind a
 * crash are not failed, each is timed from its own start, and partition order holds.
 * The handler is the built-in `work` with its poison markers;
 * the fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service_helpers.h"

/* Under AddressSanitizer, an allocation past the worker's memory limit returns NULL
 * as it does without, rather than ending the process (the sanitizer's default). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

#define DLQ "memory:iso.dlq"
#define STALLED "memory:iso.stalled"

static int setup_builtins(void **state)
{
    setup(state);
    fx *f = *state;
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    return 0;
}

/* A one-route service on topic running `work` in worker processes (one per loop
 * worker), with extra lines. */
static void start_workers(fx *f, const char *topic, int workers, int partitions,
                          const char *ordering, const char *timeout, const char *extra)
{
    char route[1024];
    snprintf(route, sizeof(route),
             "    isolation: process\n"
             "    on_error: { retries: 1, backoff: 1ms, then: \"" DLQ "\" }\n"
             "    on_stall: { reroute: \"" STALLED "\" }\n"
             "%s",
             extra ? extra : "");
    start(f, topic,
          (opts){.handler = "work",
                 .workers = workers,
                 .partitions = partitions,
                 .ordering = ordering,
                 .timeout = timeout,
                 .max_in_flight = 2000,
                 .batch = 256,
                 .route_extra = route});
}

static void start_isolated(fx *f, const char *topic, int partitions, const char *timeout,
                           const char *extra)
{
    start_workers(f, topic, 4, partitions, "none", timeout, extra);
}

/* As start_workers, no-op `work` handlers appending each completed id to a new file
 * made from the mkstemp template path. */
static void start_recording(fx *f, char *path, const char *topic, int workers, int partitions,
                            const char *ordering)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char extra[256];
    snprintf(extra, sizeof(extra), "    params: { record: \"%s\", ms: \"0\" }\n", path);
    start_workers(f, topic, workers, partitions, ordering, "5s", extra);
}

/* The header's text, NUL-terminated, into buf. */
static const char *header_text(const tl_memory_record *r, const char *name, char *buf, size_t cap)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(r, name, &len);
    assert_non_null(v);
    snprintf(buf, cap, "%.*s", (int)len, v);
    return buf;
}

/* The payload of record i of the sink store, NUL-terminated, into buf. */
static tl_memory_record *sink_record(const char *store, size_t i)
{
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get(store, i, &r), 0);
    return r;
}

static void a_crash_is_a_failed_attempt_retried_then_dead_lettered_with_its_signal(void **state)
{
    fx *f = *state;
    start_isolated(f, "iso.crash", 1, "5s", NULL);
    push(f, 0, "k", "id=1");
    push(f, 0, "k", "id=2 poison:segv");
    push(f, 0, "k", "id=3");
    run(f, script_until_all_settled);
    tl_service_stats s = stats(f);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.failed, 2); /* the attempt and its retry */
    assert_int_equal(s.handler_crashes, 2);
    assert_int_equal(s.processes_replaced, 2);
    assert_int_equal(tl_memory_sink_count("iso.dlq"), 1);
    tl_memory_record *r = sink_record("iso.dlq", 0);
    char buf[128];
    assert_string_equal(header_text(r, "tl-error", buf, sizeof(buf)), "handler crashed: SIGSEGV");
    assert_string_equal(header_text(r, "tl-reason", buf, sizeof(buf)), "failed");
    assert_string_equal(header_text(r, "tl-attempt", buf, sizeof(buf)), "2");
    assert_string_equal(header_text(r, "tl-origin-offset", buf, sizeof(buf)), "1");
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
    assert_balanced(f);
}

static void params_and_attempts_reach_the_handler_in_its_process(void **state)
{
    fx *f = *state;
    char path[] = "/tmp/tl-iso-record-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char extra[256];
    snprintf(extra, sizeof(extra), "    params: { record: \"%s\", ms: \"0\" }\n", path);
    start_isolated(f, "iso.params", 2, "5s", extra);
    for (int i = 0; i < 100; i++) {
        char p[32];
        snprintf(p, sizeof(p), "id=%d", i);
        push(f, i % 2, NULL, p);
    }
    run(f, script_until_all_settled);
    assert_int_equal(stats(f).completed, 100);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    int lines = 0;
    char line[64];
    while (fgets(line, sizeof(line), in))
        lines++;
    fclose(in);
    unlink(path);
    assert_int_equal(lines, 100); /* the record param reached every worker process */
    assert_int_equal(stats(f).processes_replaced, 0);
    assert_balanced(f);
}

/* Under ordering: partition each partition's messages reach the worker processes one
 * after the other, in their order. */
static void partition_order_holds_across_worker_processes(void **state)
{
    fx *f = *state;
    char path[] = "/tmp/tl-iso-order-XXXXXX";
    start_recording(f, path, "iso.order", 4, 2, "partition");
    for (int i = 0; i < 400; i++) {
        char p[32];
        snprintf(p, sizeof(p), "id=%d", i);
        push(f, i % 2, NULL, p);
    }
    run(f, script_until_all_settled);
    assert_int_equal(stats(f).completed, 400);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    int last[2] = {-1, -1}, lines = 0, id;
    while (fscanf(in, " id=%d", &id) == 1) {
        if (id <= last[id % 2])
            fail_msg("id=%d came after id=%d of its partition", id, last[id % 2]);
        last[id % 2] = id;
        lines++;
    }
    fclose(in);
    unlink(path);
    assert_int_equal(lines, 400);
    assert_balanced(f);
}

/* The poison kinds the big run mixes in, each with what tl-error must say. */
static const struct {
    const char *marker, *error;
} kinds[] = {
    {"poison:segv", "handler crashed: SIGSEGV"},
    {"poison:abort", "handler crashed: SIGABRT"},
    {"poison:stack", "handler crashed: SIGSEGV"},
    {"poison:alloc", "out of memory"},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))
static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static bool under_thread_sanitizer(void)
{
#if defined(__SANITIZE_THREAD__)
    return true;
#else
    return false;
#endif
}

/* Under valgrind, which runs everything some 30 times slower, and ThreadSanitizer,
 * whose every fork is slow, a tenth of them (still 1% of each kind) keeps the run
 * within its time. */
static int big_count(void)
{
    return under_valgrind() || under_thread_sanitizer() ? 2000 : 20000;
}

/* What valgrind itself does in a worker process that reaches its memory limit (16 MiB
 * here, which valgrind's own bookkeeping may pass under any handler): it cannot get
 * the memory it needs ("Valgrind's memory management: out of memory") and exits with
 * status 1, before the handler's allocation fails or its crash comes. The service
 * takes that as any crash. */
#define VALGRIND_OUT_OF_MEMORY "handler process exited with status 1"

/* What ThreadSanitizer does there: its own allocator runs out and it exits with its
 * status 66. The text a tool's out-of-memory exit gives, or NULL when none runs. */
static const char *tool_out_of_memory(void)
{
    if (under_thread_sanitizer())
        return "handler process exited with status 66";
    return under_valgrind() ? VALGRIND_OUT_OF_MEMORY : NULL;
}

static bool big_done(fx *f)
{
    return all_settled(f);
}

static void big_script(fx *f)
{
    STEP(wait_for(f, big_done, 55000));
}

static void one_percent_poison_of_each_kind_among_20000_messages(void **state)
{
    fx *f = *state;
    const int big = big_count();
    start_isolated(f, "iso.big", 4, "3s", "    memory: 16MiB\n    params: { ms: \"0\" }\n");
    size_t poisoned[NKINDS] = {0}, spins = 0;
    for (int i = 0; i < big; i++) {
        char p[64];
        int k = i % 100; /* 1% of each kind */
        if (i % (big / 8) == big / 8 - 1) {
            /* Each holds a worker (and a core) for its timeout and the grace: eight of
             * them, not 1%, keep the run within a minute on two cores. */
            snprintf(p, sizeof(p), "id=%d poison:spin", i);
            spins++;
        } else if (k < (int)NKINDS) {
            snprintf(p, sizeof(p), "id=%d %s", i, kinds[k].marker);
            poisoned[k]++;
        } else {
            snprintf(p, sizeof(p), "id=%d", i);
        }
        push(f, i % 4, NULL, p);
    }
    run(f, big_script);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    size_t npoison = 0;
    for (size_t k = 0; k < NKINDS; k++)
        npoison += poisoned[k];
    assert_int_equal(s.completed, big - npoison - spins);
    assert_int_equal(tl_memory_sink_count("iso.dlq"), npoison);
    /* A spinning handler stalls, is rerouted at once and its process killed. */
    assert_int_equal(s.stalled, spins);
    assert_int_equal(tl_memory_sink_count("iso.stalled"), spins);
    /* Each poison message crashed (or failed) twice: the attempt and its retry. Under
     * valgrind an alloc attempt may end as valgrind's exit (a crash) instead of a
     * failure. */
    size_t crashing = poisoned[0] + poisoned[1] + poisoned[2];
    if (tool_out_of_memory()) {
        assert_in_range(s.handler_crashes, 2 * crashing, 2 * crashing + 2 * poisoned[3]);
    } else {
        assert_int_equal(s.handler_crashes, 2 * crashing);
    }
    assert_int_equal(s.processes_replaced, s.handler_crashes + spins);
    assert_int_equal(s.failed, 2 * npoison);
    size_t seen[NKINDS] = {0};
    for (size_t i = 0; i < npoison; i++) {
        tl_memory_record *r = sink_record("iso.dlq", i);
        char err[128];
        header_text(r, "tl-error", err, sizeof(err));
        for (size_t k = 0; k < NKINDS; k++) {
            if (r->len >= strlen(kinds[k].marker) &&
                strstr((const char *)r->payload, kinds[k].marker)) {
                const char *tool_oom = tool_out_of_memory();
                if (!tool_oom || strcmp(err, tool_oom) != 0)
                    assert_memory_equal(err, kinds[k].error, strlen(kinds[k].error));
                seen[k]++;
            }
        }
        tl_memory_record_free(r);
    }
    for (size_t k = 0; k < NKINDS; k++)
        assert_int_equal(seen[k], poisoned[k]);
    for (int p = 0; p < 4; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), big / 4);
    assert_balanced(f);
}

/* Peak resident memory of this process (the service), in KiB. */
static long peak_rss_kib(void)
{
    FILE *in = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (in && fgets(line, sizeof(line), in))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (in)
        fclose(in);
    return kib;
}

static void a_memory_limited_handler_fails_and_the_service_stays_small(void **state)
{
    fx *f = *state;
    long before = peak_rss_kib();
    start_isolated(f, "iso.mem", 1, "20s", "    memory: 64MiB\n");
    push(f, 0, NULL, "id=1 poison:alloc");
    push(f, 0, NULL, "id=2");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.failed, 2);
    assert_int_equal(tl_memory_sink_count("iso.dlq"), 1);
    tl_memory_record *r = sink_record("iso.dlq", 0);
    char err[128];
    /* It got no more than its limit: the arenas its process inherited do not count
     * as room (they let it take 126 MiB of a 64 MiB limit before). */
    unsigned mib = 0;
    header_text(r, "tl-error", err, sizeof(err));
    /* Under ThreadSanitizer its own allocator gives out first, within the limit. */
    if (!under_thread_sanitizer() || strcmp(err, tool_out_of_memory()) != 0) {
        assert_int_equal(sscanf(err, "out of memory after %u MiB", &mib), 1);
        if (mib > 64)
            fail_msg("the handler took %u MiB under a 64 MiB limit", mib);
    }
    tl_memory_record_free(r);
    /* The handler went up to 64 MiB in its process; the service grew by far less. */
    assert_true(peak_rss_kib() - before < 32 * 1024);
    assert_balanced(f);
}

static void spin_script(fx *f)
{
    STEP(wait_stat(f, STAT(stalled), 1, 5000));
    int64_t stalled_at = now_ms();
    STEP(wait_stat(f, STAT(processes_replaced), 1, 5000));
    /* Killed past the grace (100 ms), give or take the polls and the housekeeping. */
    f->committed_mid = now_ms() - stalled_at;
    STEP(wait_for(f, all_settled, 5000));
}

static void a_handler_spinning_past_its_cancellation_is_killed_after_the_grace(void **state)
{
    fx *f = *state;
    start_isolated(f, "iso.spin", 1, "200ms", NULL);
    push(f, 0, NULL, "id=1 poison:spin");
    push(f, 0, NULL, "id=2");
    int64_t t0 = now_ms();
    run(f, spin_script);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.processes_replaced, 1);
    assert_int_equal(s.handler_crashes, 0);
    assert_true(f->committed_mid < 400);
    assert_true(f->run_end_ms - t0 < 3000);
    assert_int_equal(tl_memory_sink_count("iso.stalled"), 1);
    tl_memory_record *r = sink_record("iso.stalled", 0);
    char buf[64];
    assert_string_equal(header_text(r, "tl-reason", buf, sizeof(buf)), "stalled");
    tl_memory_record_free(r);
    assert_int_equal(stats(f).healthy, true);
    assert_balanced(f);
}

/* For runs whose work is heavy under a slow tool (two attempts of a second of CPU
 * each; 12 MB of payloads copied and scanned in two processes under valgrind or
 * ThreadSanitizer): on a machine whose cores other tests keep busy that can take
 * well over the usual 10 s wait. */
static void script_until_all_settled_slowly(fx *f)
{
    STEP(wait_for(f, all_settled, 60000));
}

static void cpu_time_turns_a_spin_into_a_failed_attempt(void **state)
{
    fx *f = *state;
    start_isolated(f, "iso.cpu", 1, "60s", "    cpu_time: 1s\n");
    push(f, 0, NULL, "id=1 poison:spin");
    run(f, script_until_all_settled_slowly);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(tl_memory_sink_count("iso.dlq"), 1);
    tl_memory_record *r = sink_record("iso.dlq", 0);
    char err[128];
    assert_string_equal(header_text(r, "tl-error", err, sizeof(err)), "handler crashed: SIGXCPU");
    tl_memory_record_free(r);
    assert_int_equal(stats(f).handler_crashes, 2);
    assert_balanced(f);
}

/* One loop worker: one worker process, which gets every message while the first
 * still runs, so those behind the crash were sent to the process that crashed. */
static void messages_behind_a_crash_go_to_a_new_process_unfailed(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.behind", 1, 1, "none", "5s", "    params: { ms: \"20\" }\n");
    for (int i = 0; i < 10; i++) {
        char payload[32];
        snprintf(payload, sizeof(payload), "id=%d%s", i, i == 2 ? " poison:segv" : "");
        push(f, 0, NULL, payload);
    }
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 9);
    assert_int_equal(s.failed, 2); /* the poison's attempt and its retry, no other */
    assert_int_equal(s.handler_crashes, 2);
    assert_int_equal(s.processes_replaced, 2);
    assert_int_equal(tl_memory_sink_count("iso.dlq"), 1);
    tl_memory_record *r = sink_record("iso.dlq", 0);
    char buf[64];
    assert_string_equal(header_text(r, "tl-origin-offset", buf, sizeof(buf)), "2");
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_balanced(f);
}

/* A payload of "id=N ", padding up to size bytes, then tail. */
static char *sized_payload(int n, size_t size, const char *tail)
{
    char *p = malloc(size + strlen(tail) + 32);
    assert_non_null(p);
    size_t head = (size_t)sprintf(p, "id=%d ", n);
    size_t end = size > head ? size : head;
    memset(p + head, 'x', end - head);
    strcpy(p + end, tail);
    return p;
}

/* Messages from a few bytes to 400 KB, some too large to share the memory small ones
 * go through, reach one worker process whole (a poison marker at the very end of the
 * last one is found) and in their order. */
static void messages_of_every_size_reach_the_process_whole_and_in_order(void **state)
{
    fx *f = *state;
    char path[] = "/tmp/tl-iso-sizes-XXXXXX";
    start_recording(f, path, "iso.sizes", 1, 1, "none");
    for (int i = 0; i <= 300; i++) {
        size_t size = i % 10 == 9 || i == 300 ? 400000 : (size_t)(i * 7919) % 20000;
        char *p = sized_payload(i, size, i == 300 ? " poison:abort" : "");
        push(f, 0, NULL, p);
        free(p);
    }
    run(f, script_until_all_settled_slowly);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 300);
    assert_int_equal(s.handler_crashes, 2); /* the last one's attempt and its retry */
    tl_memory_record *r = sink_record("iso.dlq", 0);
    char buf[64];
    assert_string_equal(header_text(r, "tl-error", buf, sizeof(buf)), "handler crashed: SIGABRT");
    tl_memory_record_free(r);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    int want = 0, id;
    while (fscanf(in, " id=%d", &id) == 1) {
        if (id != want)
            fail_msg("id=%d came where id=%d was due", id, want);
        want++;
    }
    fclose(in);
    unlink(path);
    assert_int_equal(want, 300);
    assert_balanced(f);
}

/* Five messages of 100 ms in one process take 500 ms; each is timed from when its
 * handler starts, as a task waiting for a busy pool is, so none stalls at 400 ms
 * (timed from when it was handed over, the last one would). */
static void a_message_waiting_behind_another_is_timed_from_its_own_start(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.queue", 1, 1, "none", "400ms", "    params: { ms: \"100\" }\n");
    for (int i = 0; i < 5; i++)
        push(f, 0, NULL, "id=1");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 5);
    assert_int_equal(s.stalled, 0);
    assert_balanced(f);
}

/* Slow handlers run side by side in the route's worker processes, one to a process
 * while there are idle ones, even when few messages wait: four messages of 1 s, four
 * workers, take about 1 s, not 4. */
static void slow_handlers_run_side_by_side_in_their_processes(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.side", 4, 1, "none", "10s", "    params: { ms: \"1000\" }\n");
    for (int i = 0; i < 4; i++)
        push(f, 0, NULL, "id=1");
    int64_t t0 = now_ms();
    run(f, script_until_all_settled);
    int64_t took = f->stop_at_ms - t0;
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 4);
    if (took >= 2500)
        fail_msg("four 1 s handlers in four processes took %lld ms", (long long)took);
    assert_balanced(f);
}

/* No worker process outlives tl_service_free: with the test their subreaper, one
 * still there (or dead, unreaped) after the free would be a child of the test. */
static void no_worker_process_outlives_the_service(void **state)
{
    fx *f = *state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    start_workers(f, "iso.outlive", 4, 1, "none", "10s", "    params: { ms: \"100\" }\n");
    for (int i = 0; i < 4; i++)
        push(f, 0, NULL, "id=1");
    run(f, script_until_all_settled);
    assert_int_equal(stats(f).completed, 4);
    tl_service_free(f->svc);
    f->svc = NULL;
    errno = 0;
    pid_t left = waitpid(-1, NULL, WNOHANG);
    int err = errno;
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (left != -1 || err != ECHILD)
        fail_msg("a process of the service outlived it (waitpid: %d, %s)", (int)left,
                 strerror(err));
}

static char tasks_json[1 << 16];

/* Of the handler tasks in tasks_json: how many a worker process runs (their pids
 * into pids, each checked alive), and whether every one says where it is. */
static int running_in_processes(int pids[], int cap, bool *all_say)
{
    json_error_t jerr;
    json_t *root = json_loads(tasks_json, 0, &jerr);
    assert_non_null(root);
    int n = 0;
    *all_say = true;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(root, "tasks"), i, t)
    {
        json_t *m = json_object_get(t, "message");
        if (!m)
            continue;
        json_t *where = json_object_get(m, "process");
        *all_say = *all_say && where;
        if (!json_is_true(json_object_get(where, "running")) || n >= cap)
            continue;
        pids[n] = (int)json_integer_value(json_object_get(where, "pid"));
        assert_true(pids[n] > 0 && pids[n] != (int)getpid());
        assert_int_equal(kill(pids[n], 0), 0);
        n++;
    }
    json_decref(root);
    return n;
}

/* Keeps /tasks once two messages run in worker processes, then lets all settle. */
static void script_tasks_while_two_run(fx *f)
{
    int pids[4];
    bool all_say = false;
    int64_t until = now_ms() + 10000;
    do {
        sleep_ms(20);
        STEP(http_get(tl_service_admin_port(f->svc), "/tasks", tasks_json, sizeof(tasks_json)) ==
             200);
    } while (running_in_processes(pids, 4, &all_say) < 2 && now_ms() < until);
    STEP(wait_for(f, all_settled, 20000));
}

/* An operator looking at a stuck message sees the worker process holding it: /tasks
 * gives each handler task of an isolated route its process's pid, and whether it runs
 * there; two slow messages on two workers run in two live processes. */
static void tasks_show_the_worker_process_of_each_message(void **state)
{
    fx *f = *state;
    start(f, "iso.where",
          (opts){.handler = "work",
                 .workers = 2,
                 .ordering = "none",
                 .timeout = "10s",
                 .route_extra = "    isolation: process\n"
                                "    params: { ms: \"500\" }\n",
                 .top_extra = "admin: { listen: \"127.0.0.1:0\" }\n"});
    for (int i = 0; i < 3; i++)
        push(f, 0, NULL, "id=1");
    run(f, script_tasks_while_two_run);
    assert_int_equal(stats(f).completed, 3);
    int pids[4];
    bool all_say = false;
    assert_int_equal(running_in_processes(pids, 4, &all_say), 2);
    assert_true(all_say);
    assert_int_not_equal(pids[0], pids[1]);
    assert_balanced(f);
}

/* Stalled messages when the quick ones pushed behind the slow one had completed. */
static _Atomic uint64_t stalled_when_quick_done;

/* Quick messages, then one that waits for its cancellation, then quick ones again. */
static void script_quick_slow_quick(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 200, 30000));
    push(f, 0, NULL, "id=2 stall");
    sleep_ms(300);
    for (int i = 0; i < 20; i++)
        push(f, 0, NULL, "id=3");
    STEP(wait_stat(f, STAT(completed), 220, 30000));
    atomic_store(&stalled_when_quick_done, stat_at(f, STAT(stalled)));
    STEP(wait_for(f, all_settled, 30000));
}

/* Fast handlers are packed into few processes; one that then runs a message for long
 * no longer counts as fast: the messages after it go to another process and complete
 * while it runs (sent behind it, they would wait for its stall, 3 s later). */
static void messages_after_a_long_one_in_a_fast_process_go_to_another(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.pack", 4, 1, "none", "3s", "    params: { ms: \"0\" }\n");
    for (int i = 0; i < 200; i++)
        push(f, 0, NULL, "id=1");
    atomic_store(&stalled_when_quick_done, 99);
    run(f, script_quick_slow_quick);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 220);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(atomic_load(&stalled_when_quick_done), 0);
    assert_balanced(f);
}

/* Waits for the first message's result, then for the stall of the second. */
static void script_first_then_all(fx *f)
{
    STEP(wait_stat(f, STAT(completed), 1, 20000));
    STEP(stat_at(f, STAT(stalled)) == 0);
    STEP(wait_for(f, all_settled, 20000));
}

/* One worker process gets both messages at once; the first one's result comes back
 * while the handler of the second, which waits for its cancellation, runs behind it.
 * Held until that one returns, it would hold it for ever: the second counts as
 * started, and its timeout runs, only once the first one's result is taken. */
static void a_result_comes_back_while_the_next_handler_runs(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.held", 1, 1, "none", "1s", "    params: { ms: \"0\" }\n");
    push(f, 0, NULL, "id=1");
    push(f, 0, NULL, "id=2 stall");
    run(f, script_first_then_all);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.processes_replaced, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 2);
    assert_balanced(f);
}

/* A wedged handler is killed past its grace; the messages sent behind it to the same
 * process are handled by the next one. */
static void messages_behind_a_killed_handler_go_to_a_new_process(void **state)
{
    fx *f = *state;
    start_workers(f, "iso.hang", 1, 1, "none", "200ms", NULL);
    push(f, 0, NULL, "id=1 poison:hang");
    push(f, 0, NULL, "id=2");
    push(f, 0, NULL, "id=3");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.stalled, 1);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.processes_replaced, 1);
    assert_int_equal(s.handler_crashes, 0);
    assert_int_equal(tl_memory_committed(f->topic, 0), 3);
    assert_balanced(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_crash_is_a_failed_attempt_retried_then_dead_lettered_with_its_signal, setup_builtins,
            teardown),
        cmocka_unit_test_setup_teardown(params_and_attempts_reach_the_handler_in_its_process,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(a_memory_limited_handler_fails_and_the_service_stays_small,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(
            a_handler_spinning_past_its_cancellation_is_killed_after_the_grace, setup_builtins,
            teardown),
        cmocka_unit_test_setup_teardown(partition_order_holds_across_worker_processes,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(messages_behind_a_crash_go_to_a_new_process_unfailed,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(
            a_message_waiting_behind_another_is_timed_from_its_own_start, setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(messages_after_a_long_one_in_a_fast_process_go_to_another,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(no_worker_process_outlives_the_service, setup_builtins,
                                        teardown),
        cmocka_unit_test_setup_teardown(tasks_show_the_worker_process_of_each_message,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(slow_handlers_run_side_by_side_in_their_processes,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(messages_of_every_size_reach_the_process_whole_and_in_order,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(a_result_comes_back_while_the_next_handler_runs,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(messages_behind_a_killed_handler_go_to_a_new_process,
                                        setup_builtins, teardown),
        cmocka_unit_test_setup_teardown(cpu_time_turns_a_spin_into_a_failed_attempt, setup_builtins,
                                        teardown),
        cmocka_unit_test_setup_teardown(one_percent_poison_of_each_kind_among_20000_messages,
                                        setup_builtins, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
