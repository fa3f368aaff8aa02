/*
 * loop.shards: a service's partitions spread over several loops. Each partition
 * belongs to one shard, the shards share the work evenly, and what the service shows
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

/* A service of SHARDS shards reading PARTS partitions, with an admin endpoint. */
static void start_sharded(fx *f, const char *topic, const char *ordering)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "service: t\n"
             "loop: { workers: 2, max_in_flight: 1000, drain_timeout: 2s, shards: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: 16 }\n"
             "routes:\n"
             "  - { source: in, handler: h, ordering: %s, timeout: 10s }\n"
             "admin: { listen: \"127.0.0.1:0\" }\n",
             SHARDS, topic, PARTS, ordering);
    start_yaml(f, topic, yaml);
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
    json_error_t jerr;
    json_t *root = json_loads(tasks_json, 0, &jerr);
    assert_non_null(root);
    json_t *tasks = json_object_get(root, "tasks");
    int shard_of[PARTS], per_shard[SHARDS] = {0};
    for (int p = 0; p < PARTS; p++)
        shard_of[p] = -1;
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        json_t *m = json_object_get(t, "message");
        if (!m)
            continue;
        int shard = (int)json_integer_value(json_object_get(t, "shard"));
        int p = (int)json_integer_value(json_object_get(m, "partition"));
        assert_in_range(shard, 0, SHARDS - 1);
        assert_in_range(p, 0, PARTS - 1);
        assert_int_equal(shard_of[p], -1); /* one task per partition */
        shard_of[p] = shard;
        per_shard[shard]++;
    }
    json_decref(root);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(partitions_spread_evenly_and_tasks_show_their_shard, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(every_partition_in_order_and_committed_to_its_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_revoke_drains_the_owning_shard, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
