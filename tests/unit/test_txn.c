/*
 * Exactly-once delivery (`delivery: exactly_once`) on the memory adapter's
 * transactions: a message's sends go only after those of every earlier message of its
 * partition, so each commit cuts its partitions at one offset (everything below sent,
 * nothing at or above); a failed commit stops the service, and a restart from the last
 * commit makes every output exactly once; lost partitions stop it too. The fixture is
 * service_helpers.h's, with a handler of its own that emits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

static atomic_int quick_done;

/* Emits "PARTITION:OFFSET". Payload "slow": after 300 ms, "hang": after 1.2 s;
 * "stall": waits for
 * cancellation (rerouted by the route's on_stall); "fail": fails every attempt;
 * anything else at once. */
static int txh(tl_task *task, const tl_msg *msg, void *user)
{
    (void)user;
    const char *p = msg->payload;
    if (strcmp(p, "slow") == 0)
        sleep_ms(300);
    if (strcmp(p, "hang") == 0)
        sleep_ms(1200);
    if (strcmp(p, "stall") == 0) {
        while (!tl_cancelled(task))
            sleep_ms(1);
        return TL_ECANCELED;
    }
    if (strcmp(p, "fail") == 0)
        return TL_EFAIL;
    char text[48];
    int n = snprintf(text, sizeof(text), "%d:%lld", (int)msg->partition, (long long)msg->offset);
    tl_out_msg m = {.payload = text, .len = (size_t)n};
    int rc = tl_handler_emit(task, NULL, &m);
    if (strcmp(p, "quick") == 0)
        atomic_fetch_add(&quick_done, 1);
    return rc;
}

static char out_store[96], dlq_store[96];

static void route_lines(char *buf, size_t cap, const char *topic, const char *bounds,
                        const char *scheme)
{
    snprintf(out_store, sizeof(out_store), "%s.out", topic);
    snprintf(dlq_store, sizeof(dlq_store), "%s.dlq", topic);
    snprintf(buf, cap,
             "    delivery: exactly_once\n"
             "    transaction: %s\n"
             "    outputs: { out: \"%s:%s\" }\n"
             "    on_stall: { reroute: \"%s:%s\" }\n"
             "    on_error: { then: \"%s:%s\" }\n",
             bounds, scheme, out_store, scheme, dlq_store, scheme, dlq_store);
}

/* (partition, offset) of a record of the output store ("P:O") or the dead letters. */
static void origin_of(const char *store, size_t i, int *part, long long *off)
{
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get(store, i, &r), 0);
    if (strcmp(store, out_store) == 0) {
        char text[48];
        snprintf(text, sizeof(text), "%.*s", (int)r->len, (const char *)r->payload);
        assert_int_equal(sscanf(text, "%d:%lld", part, off), 2);
    } else {
        *part = (int)header_num(r, "tl-origin-partition");
        *off = header_num(r, "tl-origin-offset");
    }
    tl_memory_record_free(r);
}

/* ---------------------------------------------------------------- ordering */

static char mid_stats[16384];
static size_t mid_out, mid_pending;
static int64_t mid_committed;

static bool nine_quick_done(fx *f)
{
    (void)f;
    return atomic_load(&quick_done) >= 9;
}

static void script_look_while_the_first_is_slow(fx *f)
{
    STEP(wait_for(f, nine_quick_done, 5000));
    sleep_ms(120); /* past the transaction's interval: a commit would have come */
    mid_out = tl_memory_sink_count(out_store);
    mid_pending = tl_memory_txn_pending(f->topic);
    mid_committed = tl_memory_committed(f->topic, 0);
    STEP(http_get(tl_service_admin_port(f->svc), "/stats", mid_stats, sizeof(mid_stats)) == 200);
    STEP(wait_for(f, all_settled, 5000));
}

static void later_messages_send_only_after_every_earlier_one_of_their_partition(void **state)
{
    fx *f = *state;
    atomic_store(&quick_done, 0);
    assert_int_equal(tl_register_handler(f->reg, "txh", txh, NULL), 0);
    char route[1024];
    route_lines(route, sizeof(route), "order", "{ messages: 1000, interval: 20ms }", "memory");
    start(f, "order",
          (opts){.handler = "txh",
                 .ordering = "key",
                 .route_extra = route,
                 .top_extra = "admin: { listen: \"127.0.0.1:0\" }\n"});
    push(f, 0, "a", "slow");
    const char *keys[] = {"b", "c", "d", "e", "f", "g", "h", "b", "c"};
    for (int i = 0; i < 9; i++)
        push(f, 0, keys[i], "quick");
    run(f, script_look_while_the_first_is_slow);
    /* While offset 0 ran, nine later messages were done and sent nothing. */
    assert_int_equal(mid_out, 0);
    assert_int_equal(mid_pending, 0);
    assert_true(mid_committed <= 0);
    assert_non_null(strstr(mid_stats, "\"gated\":9"));
    /* Then all in offset order, and the position after the last. */
    assert_int_equal(tl_memory_sink_count(out_store), 10);
    for (size_t i = 0; i < 10; i++) {
        int part;
        long long off;
        origin_of(out_store, i, &part, &off);
        assert_int_equal(off, (long long)i);
    }
    assert_int_equal(tl_memory_committed(f->topic, 0), 10);
    assert_true(stats(f).txn_commits >= 1);
    assert_balanced(f);
}

/* ---------------------------------------------------------------- revokes */

static bool four_quick_done(fx *f)
{
    (void)f;
    return atomic_load(&quick_done) >= 4;
}

static int64_t committed_after_revoke;
static size_t out_after_revoke;

static bool five_out(fx *f)
{
    (void)f;
    return tl_memory_sink_count(out_store) >= 5 && tl_memory_committed(f->topic, 0) == 5;
}

static void script_revoke_while_the_first_hangs(fx *f)
{
    STEP(wait_for(f, four_quick_done, 5000));
    STEP(tl_memory_revoke(f->topic, 0) == 0); /* returns after the 300 ms drain */
    committed_after_revoke = tl_memory_committed(f->topic, 0);
    sleep_ms(1500); /* the hanging handler returns meanwhile, its partition gone */
    out_after_revoke = tl_memory_sink_count(out_store);
    STEP(tl_memory_assign(f->topic, 0) == 0);
    STEP(wait_for(f, five_out, 10000));
}

static void a_revoked_partition_sends_nothing_it_did_not_commit(void **state)
{
    fx *f = *state;
    atomic_store(&quick_done, 0);
    assert_int_equal(tl_register_handler(f->reg, "txh", txh, NULL), 0);
    char route[1024];
    route_lines(route, sizeof(route), "revoke", "{ messages: 1000, interval: 20ms }", "memory");
    start(f, "revoke",
          (opts){.handler = "txh", .ordering = "key", .drain = "300ms", .route_extra = route});
    push(f, 0, "a", "hang");
    const char *keys[] = {"b", "c", "d", "e"};
    for (int i = 0; i < 4; i++)
        push(f, 0, keys[i], "quick");
    run(f, script_revoke_while_the_first_hangs);
    /* The revoke could commit nothing past the hanging message, and what waited behind
     * it, or came back after the revoke, never went. */
    assert_true(committed_after_revoke <= 0);
    assert_int_equal(out_after_revoke, 0);
    /* Assigned again, everything was handled again and sent once. */
    assert_int_equal(tl_memory_sink_count(out_store), 5);
    for (size_t i = 0; i < 5; i++) {
        int part;
        long long off;
        origin_of(out_store, i, &part, &off);
        assert_int_equal(off, (long long)i);
    }
}

/* ---------------------------------------------------------------- aborts */

#define NPARTS 4
#define PER_PART 150

/* What the stores hold matches the committed positions exactly: every message below a
 * partition's position once (output or dead letter), none at or above it. */
static void assert_cut(fx *f, bool whole)
{
    int64_t pos[NPARTS];
    size_t below = 0;
    for (int p = 0; p < NPARTS; p++) {
        pos[p] = tl_memory_committed(f->topic, p);
        if (pos[p] < 0)
            pos[p] = 0;
        if (whole)
            assert_int_equal(pos[p], PER_PART);
        below += (size_t)pos[p];
    }
    static unsigned char seen[NPARTS][PER_PART];
    memset(seen, 0, sizeof(seen));
    const char *stores[] = {out_store, dlq_store};
    size_t total = 0;
    for (int s = 0; s < 2; s++) {
        size_t n = tl_memory_sink_count(stores[s]);
        for (size_t i = 0; i < n; i++) {
            int part;
            long long off;
            origin_of(stores[s], i, &part, &off);
            assert_true(part >= 0 && part < NPARTS && off >= 0 && off < pos[part]);
            assert_int_equal(seen[part][off]++, 0);
        }
        total += n;
    }
    assert_int_equal(total, below);
}

static const char *payload_of(int i)
{
    return i % 29 == 7 ? "stall" : i % 23 == 5 ? "fail" : i % 11 == 3 ? "slow" : "quick";
}

static void fill(fx *f)
{
    const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int p = 0; p < NPARTS; p++)
        for (int i = 0; i < PER_PART; i++)
            push(f, p, keys[(i * 7 + p) % 8], payload_of(i + p));
}

static void script_fail_the_third_commit(fx *f)
{
    STEP(wait_stat(f, STAT(txn_commits), 2, 10000));
    tl_memory_fail_txn(f->topic);
    /* The service stops itself; the test's run waits for it. */
}

static void *run_main(void *arg)
{
    fx *f = arg;
    f->run_rc = tl_service_run(f->svc);
    return NULL;
}

static const char *txn_yaml(char *buf, size_t cap, const char *topic, const char *type)
{
    char route[1024];
    route_lines(route, sizeof(route), topic, "{ messages: 20, interval: 20ms }", type);
    snprintf(buf, cap,
             "service: t\n"
             "loop: { workers: 8, max_in_flight: 200, drain_timeout: 3s }\n"
             "sources:\n"
             "  in: { type: %s, name: %s, partitions: %d, batch: 16 }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: txh\n"
             "    ordering: key\n"
             "    timeout: 400ms\n"
             "%s",
             type, topic, NPARTS, route);
    return buf;
}

static bool every_partition_committed(fx *f)
{
    for (int p = 0; p < NPARTS; p++)
        if (tl_memory_committed(f->topic, p) != PER_PART)
            return false;
    return true;
}

static void script_until_committed(fx *f)
{
    STEP(wait_for(f, every_partition_committed, 30000));
}

/* A source type like memory but whose transactions cannot be sealed: sends wait while
 * a commit runs. */
static tl_txn_ops noseal_txn;
static tl_source_ops noseal_ops;
static tl_sink_ops noseal_sink; /* the memory sink, named like the type */

static const char *use_type(fx *f, bool seal)
{
    if (seal)
        return "memory";
    noseal_txn = *tl_memory_source_ops.txn;
    noseal_txn.seal = NULL;
    noseal_ops = tl_memory_source_ops;
    noseal_ops.type = "memnoseal";
    noseal_ops.txn = &noseal_txn;
    assert_int_equal(tl_registry_add_source(f->reg, &noseal_ops), 0);
    noseal_sink = tl_memory_sink_ops;
    noseal_sink.scheme = "memnoseal";
    assert_int_equal(tl_registry_add_sink(f->reg, &noseal_sink), 0);
    return "memnoseal";
}

static void fail_commit_then_restart(fx *f, bool seal)
{
    const char *type = use_type(f, seal);
    assert_int_equal(tl_register_handler(f->reg, "txh", txh, NULL), 0);
    static char yaml[4096];
    start_yaml(f, "abort", txn_yaml(yaml, sizeof(yaml), "abort", type));
    fill(f);
    pthread_t runner;
    f->script = script_fail_the_third_commit;
    assert_int_equal(pthread_create(&runner, NULL, run_main, f), 0);
    f->script(f);
    pthread_join(runner, NULL);
    assert_int_equal(f->bad_line, 0);
    assert_int_not_equal(f->run_rc, 0); /* stopped by the abort, with an error */
    assert_int_equal(stats(f).txn_aborts, 1);
    assert_true(stats(f).txn_commits >= 2);
    assert_cut(f, false); /* the aborted sends, and any after them, are nowhere */

    /* The restart reads from the last commit. */
    tl_service_free(f->svc);
    f->svc = NULL;
    assert_int_equal(tl_memory_txn_pending(f->topic), 0); /* what was sent since: aborted */
    tl_config_free(f->cfg);
    f->cfg = NULL;
    start_yaml(f, "abort", yaml);
    run(f, script_until_committed);
    assert_cut(f, true);
    assert_int_equal(stats(f).txn_aborts, 0);
}

static void a_failed_commit_stops_and_a_restart_sends_each_message_once(void **state)
{
    fail_commit_then_restart(*state, true);
}

static void the_same_when_sends_wait_for_each_commit(void **state)
{
    fail_commit_then_restart(*state, false);
}

/* Enables nothing, saying why: a source whose broker refuses transactions. */
static int refuse_enable(tl_source *src, size_t contexts, char *err, size_t errlen)
{
    (void)src, (void)contexts;
    snprintf(err, errlen, "refused for the test");
    return TL_ECONFIG;
}

/* The second of two exactly-once sources cannot enable its transactions: the build
 * fails naming it, and what the first set up is taken down (no timer of it was ever
 * started; ASan and valgrind see the rest). */
static void a_source_refusing_transactions_fails_the_build_cleanly(void **state)
{
    fx *f = *state;
    static tl_txn_ops refusing_txn;
    static tl_source_ops refusing_ops;
    static tl_sink_ops refusing_sink;
    refusing_txn = *tl_memory_source_ops.txn;
    refusing_txn.enable = refuse_enable;
    refusing_ops = tl_memory_source_ops;
    refusing_ops.type = "memrefuse";
    refusing_ops.txn = &refusing_txn;
    refusing_sink = tl_memory_sink_ops;
    refusing_sink.scheme = "memrefuse";
    assert_int_equal(tl_registry_add_source(f->reg, &refusing_ops), 0);
    assert_int_equal(tl_registry_add_sink(f->reg, &refusing_sink), 0);
    assert_int_equal(tl_register_handler(f->reg, "txh", txh, NULL), 0);
    const char *yaml = "service: t\n"
                       "sources:\n"
                       "  a: { type: memory, name: refuse-a }\n"
                       "  b: { type: memrefuse, name: refuse-b }\n"
                       "routes:\n"
                       "  - { source: a, handler: txh, delivery: exactly_once,\n"
                       "      outputs: { out: \"memory:refuse-a.out\" } }\n"
                       "  - { source: b, handler: txh, delivery: exactly_once,\n"
                       "      outputs: { out: \"memrefuse:refuse-b.out\" } }\n";
    int rc = tl_config_load_string("test.yaml", yaml, f->reg, NULL, &f->cfg, &f->diag);
    if (rc)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
    char err[512] = "";
    assert_int_equal(tl_service_new(f->cfg, f->reg, NULL, &f->svc, err, sizeof(err)), TL_ECONFIG);
    assert_null(f->svc);
    assert_string_equal(err, "source b: exactly_once: refused for the test");
}

static void script_lose_a_partition(fx *f)
{
    STEP(wait_stat(f, STAT(txn_commits), 1, 10000));
    tl_memory_lose(f->topic, 1);
}

static void lost_partitions_stop_the_service_with_nothing_past_the_last_commit(void **state)
{
    fx *f = *state;
    assert_int_equal(tl_register_handler(f->reg, "txh", txh, NULL), 0);
    static char yaml[4096];
    start_yaml(f, "lose", txn_yaml(yaml, sizeof(yaml), "lose", "memory"));
    fill(f);
    pthread_t runner;
    assert_int_equal(pthread_create(&runner, NULL, run_main, f), 0);
    script_lose_a_partition(f);
    pthread_join(runner, NULL);
    assert_int_equal(f->bad_line, 0);
    assert_int_not_equal(f->run_rc, 0);
    assert_int_equal(stats(f).txn_aborts, 1);
    assert_cut(f, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            later_messages_send_only_after_every_earlier_one_of_their_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(a_revoked_partition_sends_nothing_it_did_not_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_failed_commit_stops_and_a_restart_sends_each_message_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_same_when_sends_wait_for_each_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(a_source_refusing_transactions_fails_the_build_cleanly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            lost_partitions_stop_the_service_with_nothing_past_the_last_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
