/*
 * loop.shards: a service's partitions spread over several loops. Each partition
 * belongs to one shard, the shards share the work evenly (after rebalances too), a
 * route's rate and breaker count for all of them, and what the service shows
 * (counters, partitions, /tasks) covers every shard. The rest of the runtime's
 * behaviour with shards is the other suites' (their *_shards4 runs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

#define SHARDS 4
#define PARTS 8

/* A service of SHARDS shards with an admin endpoint reading topic on the memory source:
 * loop, source and route are the rest of their flow maps (after shards, partitions and
 * handler h). */
static void start_with(fx *f, const char *topic, const char *loop, const char *source,
                       const char *route)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: t\n"
             "loop: { shards: %d, %s }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, %s }\n"
             "routes:\n"
             "  - { source: in, handler: h, %s }\n"
             "admin: { listen: \"127.0.0.1:0\" }\n",
             SHARDS, loop, topic, source, route);
    start_yaml(f, topic, yaml);
}

/* PARTS partitions, two workers a shard, the given ordering. */
static void start_sharded(fx *f, const char *topic, const char *ordering)
{
    char source[64], route[64];
    snprintf(source, sizeof(source), "partitions: %d, batch: 16", PARTS);
    snprintf(route, sizeof(route), "ordering: %s, timeout: 10s", ordering);
    start_with(f, topic, "workers: 2, max_in_flight: 1000, drain_timeout: 2s", source, route);
}

static bool all_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool all = f->active == PARTS;
    pthread_mutex_unlock(&f->mu);
    return all;
}

static char tasks_json[1 << 16];

/* Waits until every partition's message runs, keeps /tasks, lets them go. */
static void script_tasks_while_running(fx *f)
{
    STEP(wait_for(f, all_running, 10000));
    STEP(http_get(tl_service_admin_port(f->svc), "/tasks", tasks_json, sizeof(tasks_json)) == 200);
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 10000));
}

/* The tasks with a message in tasks_json (read from /tasks): how many, how many each
 * shard ran (per_shard) and the shard of each partition's (shard_of, -1: none; at most
 * one a partition). */
static int running_tasks(int shard_of[PARTS], int per_shard[SHARDS])
{
    for (int p = 0; p < PARTS; p++)
        shard_of[p] = -1;
    for (int k = 0; k < SHARDS; k++)
        per_shard[k] = 0;
    json_error_t jerr;
    json_t *root = json_loads(tasks_json, 0, &jerr);
    assert_non_null(root);
    int running = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(root, "tasks"), i, t)
    {
        json_t *m = json_object_get(t, "message");
        if (!m)
            continue;
        int shard = (int)json_integer_value(json_object_get(t, "shard"));
        int p = (int)json_integer_value(json_object_get(m, "partition"));
        assert_in_range(shard, 0, SHARDS - 1);
        assert_in_range(p, 0, PARTS - 1);
        assert_int_equal(shard_of[p], -1);
        shard_of[p] = shard;
        per_shard[shard]++;
        running++;
    }
    json_decref(root);
    return running;
}

/* One handler per partition at once, each holding its worker: the tasks of all of them
 * show in /tasks with their shard, two partitions to each of the four shards (each has
 * two workers, so that only an even spread runs all eight at once). */
static void partitions_spread_evenly_and_tasks_show_their_shard(void **state)
{
    fx *f = *state;
    start_sharded(f, "shards.spread", "partition");
    for (int p = 0; p < PARTS; p++)
        push(f, p, NULL, "stuck");
    run(f, script_tasks_while_running);
    assert_int_equal(f->bad_line, 0);
    int shard_of[PARTS], per_shard[SHARDS];
    assert_int_equal(running_tasks(shard_of, per_shard), PARTS);
    for (int p = 0; p < PARTS; p++)
        assert_int_not_equal(shard_of[p], -1); /* one task a partition */
    for (int k = 0; k < SHARDS; k++)
        assert_int_equal(per_shard[k], PARTS / SHARDS);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, PARTS);
    assert_balanced(f);
}

/* Many messages on every partition: each partition's run in offset order (one shard
 * owns it), every one committed to its end, and the service's counters the sum of the
 * shards'. */
static void every_partition_in_order_and_committed_to_its_end(void **state)
{
    fx *f = *state;
    start_sharded(f, "shards.order", "partition");
    for (int i = 0; i < 200; i++)
        for (int p = 0; p < PARTS; p++)
            push(f, p, NULL, "quick");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(atomic_load(&f->quick_out_of_order), 0);
    assert_int_equal(atomic_load(&f->quick_overlaps), 0);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 200);
    tl_service_stats s = stats(f);
    assert_int_equal(s.consumed, 200 * PARTS);
    assert_int_equal(s.completed, 200 * PARTS);
    tl_partition_stats parts[PARTS + 1];
    assert_int_equal(tl_service_partitions(f->svc, parts, PARTS + 1), PARTS);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(parts[p].next, 200);
    assert_balanced(f);
}

static void *revoke_p0(void *arg)
{
    fx *f = arg;
    f->revoke_rc = tl_memory_revoke(f->topic, 0);
    return NULL;
}

/* Revokes partition 0 while its handler runs: the revoke returns once it is released
 * and its shard committed it. */
static void script_revoke_while_running(fx *f)
{
    STEP(wait_for(f, all_running, 10000));
    pthread_t t;
    STEP(pthread_create(&t, NULL, revoke_p0, f) == 0);
    sleep_ms(200);
    f->committed_at_revoke = tl_memory_committed(f->topic, 0);
    atomic_store(&f->released, true);
    pthread_join(t, NULL);
    f->committed_mid = tl_memory_committed(f->topic, 0);
    STEP(wait_for(f, all_settled, 10000));
}

/* A revoked partition's shard drains it and commits it before the revoke returns. */
static void a_revoke_drains_the_owning_shard(void **state)
{
    fx *f = *state;
    start_sharded(f, "shards.revoke", "partition");
    for (int p = 0; p < PARTS; p++)
        push(f, p, NULL, "stuck");
    run(f, script_revoke_while_running);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(f->revoke_rc, 0);
    assert_int_equal(f->committed_at_revoke, -1); /* none yet: its handler still ran */
    assert_int_equal(f->committed_mid, 1);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 1);
    assert_balanced(f);
}

static bool four_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool four = f->active == 4;
    pthread_mutex_unlock(&f->mu);
    return four;
}

static bool push_ok(fx *f, int32_t partition, const char *payload)
{
    return tl_memory_push(f->topic, partition, NULL, payload, strlen(payload)) >= 0;
}

/* Partitions 0-3 placed one a shard; 2 and 3 revoked; new partitions 4 and 5 assigned; a
 * stuck message on each live one (0, 1, 4, 5); then 2 assigned again with a message. */
static void script_churn(fx *f)
{
    STEP(wait_for(f, all_settled, 10000));
    STEP(tl_memory_revoke(f->topic, 2) == 0);
    STEP(tl_memory_revoke(f->topic, 3) == 0);
    STEP(push_ok(f, 4, "stuck") && push_ok(f, 5, "stuck"));
    STEP(tl_memory_assign(f->topic, 4) == 0 && tl_memory_assign(f->topic, 5) == 0);
    STEP(push_ok(f, 0, "stuck") && push_ok(f, 1, "stuck"));
    STEP(wait_for(f, four_running, 10000));
    STEP(http_get(tl_service_admin_port(f->svc), "/tasks", tasks_json, sizeof(tasks_json)) == 200);
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 10000));
    /* 2 comes back: to shard 0 now (every shard has one), away from its old state. */
    STEP(tl_memory_assign(f->topic, 2) == 0 && push_ok(f, 2, "ok"));
    STEP(wait_for(f, all_settled, 10000));
}

/* After a rebalance takes partitions away for good, the new ones go to the shards left
 * without any: the four live partitions run at once on four shards of one worker each
 * (placed where the old ones were, two shards would hold two each and run one). */
static void partitions_assigned_after_a_revoke_go_to_the_least_loaded_shards(void **state)
{
    fx *f = *state;
    start_with(f, "shards.churn", "workers: 1, max_in_flight: 1000, drain_timeout: 2s",
               "partitions: 4, batch: 16", "ordering: partition, timeout: 10s");
    for (int p = 0; p < 4; p++)
        push(f, p, NULL, "ok");
    run(f, script_churn);
    assert_int_equal(f->bad_line, 0);
    int shard_of[PARTS], per_shard[SHARDS];
    assert_int_equal(running_tasks(shard_of, per_shard), 4);
    for (int k = 0; k < SHARDS; k++)
        assert_int_equal(per_shard[k], 1);
    /* One committed position a partition, though 2 has a state in two shards: the
     * position its new shard committed. */
    tl_partition_stats parts[8];
    assert_int_equal(tl_service_partitions(f->svc, parts, 8), 6);
    for (int p = 0; p < 6; p++)
        if (parts[p].partition == 2)
            assert_int_equal(parts[p].next, 2);
    assert_int_equal(tl_memory_committed(f->topic, 2), 2);
    assert_balanced(f);
}

#define MANY 600

/* Six hundred partitions, one message each: every one placed, handled and committed,
 * and listed once (the owners' table grows its index several times on the way). */
static void hundreds_of_partitions_each_get_one_owner(void **state)
{
    fx *f = *state;
    char source[64];
    snprintf(source, sizeof(source), "partitions: %d, batch: 64", MANY);
    start_with(f, "shards.many", "workers: 2", source, "ordering: partition");
    for (int p = 0; p < MANY; p++)
        push(f, p, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(stats(f).completed, MANY);
    for (int p = 0; p < MANY; p++)
        assert_int_equal(tl_memory_committed(f->topic, p), 1);
    static tl_partition_stats parts[MANY + 1];
    assert_int_equal(tl_service_partitions(f->svc, parts, MANY + 1), MANY);
    assert_balanced(f);
}

#define COOLDOWN_MS 300

static bool three_failed(fx *f)
{
    return stats(f).failed >= 3;
}

/* Three failures on partition 0 open the route's breaker; then good messages come on
 * partitions 1-3, which other shards own. */
static void script_breaker_across_shards(fx *f)
{
    STEP(wait_for(f, three_failed, 10000));
    for (int32_t p = 1; p < 4; p++)
        for (int i = 0; i < 2; i++)
            STEP(tl_memory_push(f->topic, p, "a", "ok", 2) >= 0);
    STEP(wait_for(f, all_settled, 10000));
}

/* A route's breaker counts for every shard: failures on one shard's partition keep the
 * other shards' messages out for the cooldown, one of them goes in as the only probe,
 * and the rest follow once it succeeded. */
static void the_breaker_opens_and_probes_for_every_shard(void **state)
{
    fx *f = *state;
    f->sleep_ms = 50;
    char route[256];
    snprintf(route, sizeof(route),
             "ordering: partition, breaker: { failures: 3, window: 10s, cooldown: %dms }, "
             "on_error: { retries: 0, then: \"memory:shards.breaker.dlq\" }",
             COOLDOWN_MS);
    start_with(f, "shards.breaker", "workers: 1", "partitions: 4, batch: 1", route);
    for (int i = 0; i < 3; i++)
        push(f, 0, "f", "fail");
    run(f, script_breaker_across_shards);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.completed, 6);
    assert_int_equal(tl_memory_sink_count("shards.breaker.dlq"), 3);
    int64_t last_fail = 0, probe_start = INT64_MAX, probe_end = 0, next_start = INT64_MAX;
    for (size_t i = 0; i < f->ncalls; i++) {
        const call *c = &f->calls[i];
        if (c->key == 'f' - 'a') {
            last_fail = c->end_ms > last_fail ? c->end_ms : last_fail;
        } else if (c->start_ms < probe_start) {
            next_start = probe_start;
            probe_start = c->start_ms;
            probe_end = c->end_ms;
        } else if (c->start_ms < next_start) {
            next_start = c->start_ms;
        }
    }
    /* Timer slack aside: the probe waited out the cooldown, the others the probe. */
    if (probe_start - last_fail < COOLDOWN_MS - 20)
        fail_msg("the probe started %lld ms after the last failure",
                 (long long)(probe_start - last_fail));
    assert_true(next_start >= probe_end);
    assert_balanced(f);
}

/* A route's rate counts for every shard: 200 messages on 8 partitions over four shards
 * at rate 200/s take about a second to go in, not a quarter of one. */
static void a_rate_limit_paces_the_whole_route_over_every_shard(void **state)
{
    fx *f = *state;
    start_with(f, "shards.rate", "workers: 2", "partitions: 8, batch: 16",
               "ordering: none, rate: 200/s, burst: 1");
    for (int i = 0; i < 25; i++)
        for (int p = 0; p < PARTS; p++)
            push(f, p, NULL, "quick");
    run(f, script_until_all_settled);
    assert_int_equal(f->bad_line, 0);
    tl_service_stats s = stats(f);
    assert_int_equal(s.completed, 200);
    /* 199 intervals of 5 ms between the first token and the last. */
    int64_t span_ms = (s.last_settled_ns - s.first_consumed_ns) / 1000000;
    if (span_ms < 950)
        fail_msg("200 messages at 200/s went in within %lld ms", (long long)span_ms);
    assert_balanced(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(partitions_spread_evenly_and_tasks_show_their_shard, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(every_partition_in_order_and_committed_to_its_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_revoke_drains_the_owning_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(
            partitions_assigned_after_a_revoke_go_to_the_least_loaded_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(hundreds_of_partitions_each_get_one_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(the_breaker_opens_and_probes_for_every_shard, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_rate_limit_paces_the_whole_route_over_every_shard, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
