/*
 * The memory adapter: pushes become deliveries with per-partition offsets, commits are
 * recorded, pause and revoke/assign behave like a broker's, and the sink stores, fails
 * or holds as told. A small fake runtime records what the source reports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <taskloop/memory.h>

/* ------------------------------------------------------------ fake runtime */

#define MAXMSGS 256

typedef struct fake_rt {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    tl_msg *msgs[MAXMSGS];
    size_t n;
    int assigned[8], revoked[8];
    pthread_t event_thread;
    bool release_on_revoke;
    tl_source *src;
} fake_rt;

static void rt_deliver(void *rt, tl_source *src, tl_msg **msgs, size_t n)
{
    fake_rt *f = rt;
    (void)src;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n && f->n < MAXMSGS; i++)
        f->msgs[f->n++] = msgs[i];
    f->event_thread = pthread_self();
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void rt_assigned(void *rt, tl_source *src, const tl_partition *p, size_t n)
{
    fake_rt *f = rt;
    (void)src;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n; i++)
        f->assigned[p[i].partition]++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void rt_revoked(void *rt, tl_source *src, const tl_partition *p, size_t n)
{
    fake_rt *f = rt;
    (void)src;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n; i++)
        f->revoked[p[i].partition]++;
    f->event_thread = pthread_self();
    pthread_mutex_unlock(&f->lock);
}

static tl_source_events events(fake_rt *f)
{
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    return (tl_source_events){
        .rt = f, .deliver = rt_deliver, .assigned = rt_assigned, .revoked = rt_revoked};
}

/* Waits up to 2 s until at least n messages arrived; returns how many did. */
static size_t wait_msgs(fake_rt *f, size_t n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&f->lock);
    while (f->n < n && pthread_cond_timedwait(&f->cond, &f->lock, &dl) == 0)
        ;
    size_t got = f->n;
    pthread_mutex_unlock(&f->lock);
    return got;
}

static void settle(void)
{
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
}

static void release_all(fake_rt *f)
{
    for (size_t i = 0; i < f->n; i++)
        tl_memory_source_ops.release(f->src, f->msgs[i]);
    f->n = 0;
}

/* Opens and starts a memory source on topic name with the given partitions. */
static tl_source *open_source(fake_rt *f, const char *name, int64_t partitions)
{
    tl_param_value v[] = {
        {.name = "name", .type = TL_PARAM_STRING, .str = name},
        {.name = "partitions", .type = TL_PARAM_INT, .num = partitions},
    };
    tl_params p = {"test", v, 2};
    tl_source_events ev = events(f);
    char err[128] = "";
    assert_int_equal(tl_memory_source_ops.open(&p, &ev, &f->src, err, sizeof(err)), 0);
    assert_int_equal(tl_memory_source_ops.start(f->src), 0);
    return f->src;
}

static void close_source(fake_rt *f)
{
    tl_memory_source_ops.stop(f->src);
    release_all(f);
    tl_memory_source_ops.close(f->src);
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(tl_memory_reset(), 0);
    return 0;
}

/* ------------------------------------------------------------ source */

static void pushed_before_open_is_delivered_in_offset_order(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(tl_memory_push("t", 0, NULL, "abcde" + i, 1), i);
    fake_rt f = {0};
    open_source(&f, "t", 1);
    assert_int_equal(wait_msgs(&f, 5), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f.msgs[i]->offset, i);
        assert_int_equal(f.msgs[i]->partition, 0);
        assert_memory_equal(f.msgs[i]->payload, "abcde" + i, 1);
        assert_string_equal(f.msgs[i]->origin, "t");
        assert_null(f.msgs[i]->key);
    }
    close_source(&f);
}

static void offsets_count_per_partition(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 2);
    assert_int_equal(tl_memory_push("t", 0, "a", "x", 1), 0);
    assert_int_equal(tl_memory_push("t", 1, "b", "y", 1), 0);
    assert_int_equal(tl_memory_push("t", 0, "a", "z", 1), 1);
    assert_int_equal(wait_msgs(&f, 3), 3);
    int64_t next[2] = {0, 0};
    for (size_t i = 0; i < 3; i++) {
        tl_msg *m = f.msgs[i];
        assert_int_equal(m->offset, next[m->partition]++);
        assert_string_equal((const char *)m->key, m->partition == 0 ? "a" : "b");
    }
    assert_int_equal(f.assigned[0], 1);
    assert_int_equal(f.assigned[1], 1);
    close_source(&f);
}

static void key_and_headers_are_delivered(void **state)
{
    (void)state;
    tl_header h[] = {{"trace", "t-1", 3}, {"empty", "", 0}};
    tl_out_msg m = {"pay", 3, "k\0y", 3, h, 2};
    assert_int_equal(tl_memory_push_msg("t", 0, &m), 0);
    fake_rt f = {0};
    open_source(&f, "t", 1);
    assert_int_equal(wait_msgs(&f, 1), 1);
    tl_msg *got = f.msgs[0];
    assert_int_equal(got->key_len, 3);
    assert_memory_equal(got->key, "k\0y", 3);
    size_t len = 99;
    assert_memory_equal(tl_msg_header(got, "trace", &len), "t-1", 3);
    assert_int_equal(len, 3);
    assert_non_null(tl_msg_header(got, "empty", &len));
    assert_int_equal(len, 0);
    close_source(&f);
}

static void commit_records_next_offset(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 2);
    assert_int_equal(tl_memory_committed("t", 0), -1);
    for (int i = 0; i < 3; i++)
        tl_memory_push("t", 0, NULL, "m", 1);
    assert_int_equal(wait_msgs(&f, 3), 3);
    assert_int_equal(tl_memory_source_ops.commit(f.src, "t", 0, 2), 0);
    assert_int_equal(tl_memory_committed("t", 0), 2);
    assert_int_equal(tl_memory_committed("t", 1), -1);
    assert_int_equal(tl_memory_source_ops.commit(f.src, "t", 5, 1), TL_EINVAL);
    assert_int_equal(tl_memory_committed("nope", 0), -1);
    close_source(&f);
}

static void pause_stops_delivery_and_resume_restarts(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 1);
    tl_memory_source_ops.pause(f.src, true);
    for (int i = 0; i < 10; i++)
        tl_memory_push("t", 0, NULL, "m", 1);
    settle();
    assert_int_equal(f.n, 0);
    assert_int_equal(tl_memory_pending("t"), 10);
    tl_memory_source_ops.pause(f.src, false);
    assert_int_equal(wait_msgs(&f, 10), 10);
    assert_int_equal(tl_memory_pending("t"), 0);
    close_source(&f);
}

static void revoke_runs_on_source_thread_and_stops_the_partition(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 2);
    assert_int_equal(tl_memory_revoke("t", 1), 0);
    assert_int_equal(f.revoked[1], 1);
    assert_false(pthread_equal(f.event_thread, pthread_self()));
    tl_memory_push("t", 1, NULL, "gone", 4);
    tl_memory_push("t", 0, NULL, "kept", 4);
    assert_int_equal(wait_msgs(&f, 1), 1);
    settle();
    assert_int_equal(f.n, 1);
    assert_int_equal(f.msgs[0]->partition, 0);
    assert_int_equal(tl_memory_revoke("t", 1), TL_EINVAL);
    assert_int_equal(tl_memory_revoke("t", 7), TL_EINVAL);
    assert_int_equal(tl_memory_revoke("other", 0), TL_ENOTFOUND);
    close_source(&f);
}

static void assign_replays_from_committed_offset(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 1);
    for (int i = 0; i < 4; i++)
        tl_memory_push("t", 0, NULL, "m", 1);
    assert_int_equal(wait_msgs(&f, 4), 4);
    assert_int_equal(tl_memory_source_ops.commit(f.src, "t", 0, 2), 0);
    assert_int_equal(tl_memory_revoke("t", 0), 0);
    release_all(&f);
    assert_int_equal(tl_memory_assign("t", 0), 0);
    assert_int_equal(f.assigned[0], 2);
    /* Offsets 2 and 3 were not committed: they come again. */
    assert_int_equal(wait_msgs(&f, 2), 2);
    assert_int_equal(f.msgs[0]->offset, 2);
    assert_int_equal(f.msgs[1]->offset, 3);
    assert_int_equal(tl_memory_assign("t", 0), TL_EINVAL);
    close_source(&f);
}

static void partition_created_while_running_waits_for_assign(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 1);
    assert_int_equal(tl_memory_push("t", 1, NULL, "late", 4), 0);
    settle();
    assert_int_equal(f.n, 0);
    assert_int_equal(tl_memory_assign("t", 1), 0);
    assert_int_equal(wait_msgs(&f, 1), 1);
    assert_int_equal(f.msgs[0]->partition, 1);
    assert_int_equal(f.assigned[1], 1);
    close_source(&f);
}

static void one_source_per_topic(void **state)
{
    (void)state;
    fake_rt f = {0}, g = {0};
    open_source(&f, "t", 1);
    tl_param_value v[] = {{.name = "name", .type = TL_PARAM_STRING, .str = "t"}};
    tl_params p = {"second", v, 1};
    tl_source_events ev = events(&g);
    char err[128] = "";
    assert_int_equal(tl_memory_source_ops.open(&p, &ev, &g.src, err, sizeof(err)), TL_EBUSY);
    assert_non_null(strstr(err, "already"));
    close_source(&f);
}

static void open_requires_a_name(void **state)
{
    (void)state;
    fake_rt f = {0};
    tl_params p = {"empty", NULL, 0};
    tl_source_events ev = events(&f);
    char err[128] = "";
    assert_int_equal(tl_memory_source_ops.open(&p, &ev, &f.src, err, sizeof(err)), TL_ECONFIG);
    assert_non_null(strstr(err, "name"));
}

static void release_after_close_is_safe_and_counted(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 1);
    tl_memory_push("t", 0, NULL, "m", 1);
    assert_int_equal(wait_msgs(&f, 1), 1);
    assert_int_equal(tl_memory_outstanding("t"), 1);
    tl_memory_source_ops.stop(f.src);
    tl_memory_source_ops.close(f.src);
    /* The topic stays while a message is out, even through a reset. */
    assert_int_equal(tl_memory_reset(), 1);
    release_all(&f);
    assert_int_equal(tl_memory_outstanding("t"), 0);
}

static void revoke_after_stop_is_refused(void **state)
{
    (void)state;
    fake_rt f = {0};
    open_source(&f, "t", 1);
    tl_memory_source_ops.stop(f.src);
    assert_int_equal(tl_memory_revoke("t", 0), TL_ECLOSED);
    tl_memory_source_ops.close(f.src);
}

/* ------------------------------------------------------------ sink */

typedef struct acks {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n, last_err;
    bool on_caller_thread;
    pthread_t caller;
} acks;

static void on_ack(void *arg, int err, const char *what)
{
    acks *a = arg;
    (void)what;
    pthread_mutex_lock(&a->lock);
    a->n++;
    a->last_err = err;
    if (pthread_equal(pthread_self(), a->caller))
        a->on_caller_thread = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void acks_init(acks *a)
{
    *a = (acks){.caller = pthread_self()};
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
}

static int wait_acks(acks *a, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&a->lock);
    while (a->n < n && pthread_cond_timedwait(&a->cond, &a->lock, &dl) == 0)
        ;
    int got = a->n;
    pthread_mutex_unlock(&a->lock);
    return got;
}

static tl_sink *open_sink(const char *name)
{
    tl_sink *s = NULL;
    char err[128] = "";
    assert_int_equal(tl_memory_sink_ops.open(name, NULL, &s, err, sizeof(err)), 0);
    return s;
}

static void sink_stores_copies_and_acks_later(void **state)
{
    (void)state;
    tl_sink *s = open_sink("out");
    acks a;
    acks_init(&a);
    char payload[] = "hello";
    tl_header h[] = {{"tl-reason", "stall", 5}};
    tl_out_msg m = {payload, 5, "key", 3, h, 1};
    assert_int_equal(tl_memory_sink_ops.send(s, &m, on_ack, &a), 0);
    payload[0] = 'J'; /* the sink kept its own copy */
    assert_int_equal(wait_acks(&a, 1), 1);
    assert_int_equal(a.last_err, 0);
    assert_false(a.on_caller_thread);
    assert_int_equal(tl_memory_sink_count("out"), 1);
    tl_memory_record *r = NULL;
    assert_int_equal(tl_memory_sink_get("out", 0, &r), 0);
    assert_string_equal(r->payload, "hello");
    assert_string_equal(r->key, "key");
    size_t len = 0;
    assert_memory_equal(tl_memory_record_header(r, "tl-reason", &len), "stall", 5);
    assert_int_equal(len, 5);
    tl_memory_record_free(r);
    assert_int_equal(tl_memory_sink_get("out", 1, &r), TL_ENOTFOUND);
    assert_int_equal(tl_memory_sink_ops.flush(s, 1000), 0);
    tl_memory_sink_ops.close(s);
    /* The store outlives the sink, for the test to read. */
    assert_int_equal(tl_memory_sink_count("out"), 1);
}

static void sink_in_fail_mode_acks_error_and_stores_nothing(void **state)
{
    (void)state;
    assert_int_equal(tl_memory_sink_set_mode("out", TL_MEMSINK_FAIL), 0);
    tl_sink *s = open_sink("out");
    acks a;
    acks_init(&a);
    tl_out_msg m = {"x", 1, NULL, 0, NULL, 0};
    assert_int_equal(tl_memory_sink_ops.send(s, &m, on_ack, &a), 0);
    assert_int_equal(wait_acks(&a, 1), 1);
    assert_int_equal(a.last_err, TL_EIO);
    assert_int_equal(tl_memory_sink_count("out"), 0);
    tl_memory_sink_ops.close(s);
}

static void sink_in_hold_mode_keeps_message_unsettled_until_released(void **state)
{
    (void)state;
    tl_sink *s = open_sink("out");
    tl_memory_sink_set_mode("out", TL_MEMSINK_HOLD);
    acks a;
    acks_init(&a);
    tl_out_msg m = {"x", 1, NULL, 0, NULL, 0};
    assert_int_equal(tl_memory_sink_ops.send(s, &m, on_ack, &a), 0);
    assert_int_equal(tl_memory_sink_ops.send(s, &m, on_ack, &a), 0);
    settle();
    assert_int_equal(a.n, 0);
    assert_int_equal(tl_memory_sink_held("out"), 2);
    assert_int_equal(tl_memory_sink_count("out"), 0);
    assert_int_equal(tl_memory_sink_ops.flush(s, 50), TL_ETIMEDOUT);
    assert_int_equal(tl_memory_sink_release_held("out"), 2);
    assert_int_equal(wait_acks(&a, 2), 2);
    assert_int_equal(a.last_err, 0);
    assert_int_equal(tl_memory_sink_count("out"), 2);
    assert_int_equal(tl_memory_sink_ops.flush(s, 1000), 0);
    tl_memory_sink_ops.close(s);
}

static void sink_close_acks_held_messages_with_an_error(void **state)
{
    (void)state;
    tl_memory_sink_set_mode("out", TL_MEMSINK_HOLD);
    tl_sink *s = open_sink("out");
    acks a;
    acks_init(&a);
    tl_out_msg m = {"x", 1, NULL, 0, NULL, 0};
    assert_int_equal(tl_memory_sink_ops.send(s, &m, on_ack, &a), 0);
    tl_memory_sink_ops.close(s);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.last_err, TL_ECLOSED);
    assert_int_equal(tl_memory_sink_held("out"), 0);
}

static void clear_empties_a_store(void **state)
{
    (void)state;
    tl_sink *s = open_sink("out");
    acks a;
    acks_init(&a);
    tl_out_msg m = {"x", 1, NULL, 0, NULL, 0};
    tl_memory_sink_ops.send(s, &m, on_ack, &a);
    wait_acks(&a, 1);
    tl_memory_sink_clear("out");
    assert_int_equal(tl_memory_sink_count("out"), 0);
    tl_memory_sink_ops.close(s);
}

static void register_adds_source_and_sink(void **state)
{
    (void)state;
    tl_registry *reg = NULL;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_memory_register(reg), 0);
    assert_ptr_equal(tl_registry_source(reg, "memory"), &tl_memory_source_ops);
    assert_ptr_equal(tl_registry_sink(reg, "memory"), &tl_memory_sink_ops);
    assert_true(tl_memory_source_ops.at_least_once);
    tl_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(pushed_before_open_is_delivered_in_offset_order, teardown),
        cmocka_unit_test_teardown(offsets_count_per_partition, teardown),
        cmocka_unit_test_teardown(key_and_headers_are_delivered, teardown),
        cmocka_unit_test_teardown(commit_records_next_offset, teardown),
        cmocka_unit_test_teardown(pause_stops_delivery_and_resume_restarts, teardown),
        cmocka_unit_test_teardown(revoke_runs_on_source_thread_and_stops_the_partition, teardown),
        cmocka_unit_test_teardown(assign_replays_from_committed_offset, teardown),
        cmocka_unit_test_teardown(partition_created_while_running_waits_for_assign, teardown),
        cmocka_unit_test_teardown(one_source_per_topic, teardown),
        cmocka_unit_test_teardown(open_requires_a_name, teardown),
        cmocka_unit_test_teardown(release_after_close_is_safe_and_counted, teardown),
        cmocka_unit_test_teardown(revoke_after_stop_is_refused, teardown),
        cmocka_unit_test_teardown(sink_stores_copies_and_acks_later, teardown),
        cmocka_unit_test_teardown(sink_in_fail_mode_acks_error_and_stores_nothing, teardown),
        cmocka_unit_test_teardown(sink_in_hold_mode_keeps_message_unsettled_until_released,
                                  teardown),
        cmocka_unit_test_teardown(sink_close_acks_held_messages_with_an_error, teardown),
        cmocka_unit_test_teardown(clear_empties_a_store, teardown),
        cmocka_unit_test_teardown(register_adds_source_and_sink, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
