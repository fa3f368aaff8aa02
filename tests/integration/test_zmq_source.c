/*
 * The ZeroMQ source over real sockets: tcp on 127.0.0.1 (ports chosen by the kernel
 * and read back), ipc in a temporary directory, and inproc. Round trips from our PUSH
 * sink, SUB prefixes, pause, malformed and oversized input, and configuration; the
 * fake runtime behind the source is in zmq_helpers.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "zmq_helpers.h"

/* ------------------------------------------------------------ round trips */

/* N numbered messages from a PUSH sink to a PULL source bound at endpoint. */
static void round_trip(const char *endpoint, size_t n)
{
    fake_rt *f = rt_new();
    f->seen = calloc(n, sizeof(int));
    f->nseen = n;
    source_open_start(f, set_str(conf_new(), "endpoint", endpoint));
    const char *bound = tl_zmq_source_endpoint(f->src);
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, bound, NULL);
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (size_t i = 0; i < n; i++)
        send_numbered(s, (long)i, &a);
    assert_int_equal(tl_zmq_push_sink_ops.flush(s, 10000), 0);
    assert_int_equal(a.ok, n);
    assert_int_equal(wait_for(f, n, 0, 20000), n);
    sleep_ms(50); /* anything extra would show up now */
    assert_int_equal(seen_count(f), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f->seen[i], 1);
    assert_false(f->bad_roundtrip);
    assert_true(f->offsets_in_order);
    assert_int_equal(f->errors, 0);
    tl_zmq_push_sink_ops.close(s);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

static void pull_over_tcp_gets_10000_messages_exactly_once(void **state)
{
    (void)state;
    round_trip("tcp://127.0.0.1:*", 10000);
}

static void pull_over_ipc_gets_every_message_exactly_once(void **state)
{
    (void)state;
    char dir[] = "/tmp/tlzmq-XXXXXX", ep[128];
    assert_non_null(mkdtemp(dir));
    snprintf(ep, sizeof(ep), "ipc://%s/source.sock", dir);
    round_trip(ep, 2000);
    snprintf(ep, sizeof(ep), "%s/source.sock", dir);
    unlink(ep);
    rmdir(dir);
}

static void pull_over_inproc_gets_every_message_exactly_once(void **state)
{
    (void)state;
    round_trip("inproc://tl-test-round-trip", 2000);
}

/* ------------------------------------------------------------ sub */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static void sub_source_gets_only_subscribed_prefixes(void **state)
{
    (void)state;
    tl_sink *pub = sink_open(&tl_zmq_pub_sink_ops, "tcp://127.0.0.1:*", NULL);
    static const char *const prefixes[] = {"a.", "b."};
    fake_rt *f = rt_new();
    conf *c = set_str(conf_new(), "endpoint", tl_zmq_sink_endpoint(pub));
    set_str(c, "socket", "sub");
    set_list(c, "subscribe", prefixes, 2);
    source_open_start(f, c);
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    /* PUB drops what no subscriber is ready for: warm up until the subscription holds. */
    for (int i = 0; i < 300 && seen_count(f) == 0; i++) {
        send_text(&tl_zmq_pub_sink_ops, pub, "a.warmup", &a);
        sleep_ms(10);
    }
    assert_true(seen_count(f) > 0);
    const char *texts[] = {"a.1", "c.1", "b.1", "cc", "xa.", "a.2", "b.end"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(send_text(&tl_zmq_pub_sink_ops, pub, texts[i], &a), 0);
    int64_t end = now_ms() + 3000;
    bool got_end = false;
    while (!got_end && now_ms() < end) {
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n; i++)
            got_end |= strcmp(f->payloads[i], "b.end") == 0;
        pthread_mutex_unlock(&f->lock);
        sleep_ms(5);
    }
    assert_true(got_end);
    size_t real = 0;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        assert_true(has_prefix(f->payloads[i], "a.") || has_prefix(f->payloads[i], "b."));
        real += strcmp(f->payloads[i], "a.warmup") != 0;
    }
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(real, 4); /* a.1 b.1 a.2 b.end */
    tl_zmq_source_ops.close(f->src);
    tl_zmq_pub_sink_ops.close(pub);
    rt_free(f);
}

/* ------------------------------------------------------------ pause */

static void pause_stops_delivery_and_resume_loses_nothing(void **state)
{
    (void)state;
    size_t n = 500;
    fake_rt *f = rt_new();
    f->seen = calloc(n + 1, sizeof(int));
    f->nseen = n + 1;
    source_open_start(f, set_num(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "hwm",
                                 TL_PARAM_INT, 1000));
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, tl_zmq_source_endpoint(f->src), NULL);
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    send_numbered(s, 0, &a);
    assert_int_equal(wait_for(f, 1, 0, 5000), 1);

    tl_zmq_source_ops.pause(f->src, true);
    sleep_ms(100);
    for (size_t i = 1; i <= n; i++)
        send_numbered(s, (long)i, &a);
    assert_int_equal(tl_zmq_push_sink_ops.flush(s, 5000), 0);
    sleep_ms(300);
    assert_int_equal(seen_count(f), 1);

    tl_zmq_source_ops.pause(f->src, false);
    assert_int_equal(wait_for(f, n + 1, 0, 5000), n + 1);
    for (size_t i = 0; i <= n; i++)
        assert_int_equal(f->seen[i], 1);
    assert_int_equal(a.ok, n + 1);
    tl_zmq_push_sink_ops.close(s);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

/* ------------------------------------------------------------ malformed input */

/* A raw PUSH socket of the test's own, to send what our sinks never would. */
typedef struct raw {
    void *ctx, *sock;
} raw;

static raw raw_connect(const char *endpoint)
{
    raw r = {zmq_ctx_new(), NULL};
    r.sock = zmq_socket(r.ctx, ZMQ_PUSH);
    int linger = 2000;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &linger, sizeof(linger));
    assert_int_equal(zmq_connect(r.sock, endpoint), 0);
    return r;
}

static void raw_send(raw *r, const char *const *frames, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_true(zmq_send(r->sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

static void raw_text(raw *r, const char *text)
{
    size_t len = strlen(text);
    raw_send(r, &text, &len, 1);
}

static void raw_close(raw *r)
{
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

static void malformed_messages_are_reported_and_the_stream_goes_on(void **state)
{
    (void)state;
    fake_rt *f = rt_new();
    source_open_start(f, set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"));
    raw r = raw_connect(tl_zmq_source_endpoint(f->src));
    raw_text(&r, "good-1");
    const char *odd[] = {"p", "k", "name-without-value"};
    size_t odd_len[] = {1, 1, 18};
    raw_send(&r, odd, odd_len, 3);
    const char *empty_name[] = {"p", "k", "", "v"};
    size_t empty_len[] = {1, 1, 0, 1};
    raw_send(&r, empty_name, empty_len, 4);
    const char *nul_name[] = {"p", "k", "a\0b", "v"};
    size_t nul_len[] = {1, 1, 3, 1};
    raw_send(&r, nul_name, nul_len, 4);
    /* One header pair too many. */
    size_t nmany = 2 + 2 * (TL_ZMQ_MAX_HEADERS + 1);
    const char **many = calloc(nmany, sizeof(*many));
    size_t *many_len = calloc(nmany, sizeof(*many_len));
    for (size_t i = 0; i < nmany; i++)
        many[i] = "h", many_len[i] = 1;
    raw_send(&r, many, many_len, nmany);
    free(many);
    free(many_len);
    raw_text(&r, "good-2");

    assert_int_equal(wait_for(f, 2, 4, 5000), 2);
    sleep_ms(50);
    assert_int_equal(seen_count(f), 2);
    assert_string_equal(f->payloads[0], "good-1");
    assert_string_equal(f->payloads[1], "good-2");
    assert_int_equal(f->errors, 4);
    assert_int_equal(f->fatal, 0);
    assert_non_null(strstr(f->last_error, "too many frames"));
    tl_zmq_source_stats st;
    tl_zmq_source_stats_get(f->src, &st);
    assert_int_equal(st.received, 6);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.dropped_malformed, 4);
    assert_int_equal(st.dropped_oversized, 0);
    raw_close(&r);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

static void oversized_messages_are_rejected(void **state)
{
    (void)state;
    fake_rt *f = rt_new();
    source_open_start(f, set_num(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"),
                                 "max_message", TL_PARAM_INT, 1024));
    raw r = raw_connect(tl_zmq_source_endpoint(f->src));
    char *big = calloc(1, 2000);
    memset(big, 'x', 1999);
    raw_text(&r, big);
    /* Small frames that add up past the limit count too. */
    const char *parts[] = {big + 1400, "", "h", big + 1400};
    size_t lens[] = {599, 0, 1, 599};
    raw_send(&r, parts, lens, 4);
    raw_text(&r, "fits");
    free(big);

    assert_int_equal(wait_for(f, 1, 2, 5000), 1);
    sleep_ms(50);
    assert_int_equal(seen_count(f), 1);
    assert_string_equal(f->payloads[0], "fits");
    assert_int_equal(f->errors, 2);
    assert_non_null(strstr(f->last_error, "max_message"));
    tl_zmq_source_stats st;
    tl_zmq_source_stats_get(f->src, &st);
    assert_int_equal(st.dropped_oversized, 2);
    raw_close(&r);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

/* ------------------------------------------------------------ configuration */

static void open_rejects_bad_configuration(void **state)
{
    (void)state;
    char err[256];
    static const char *const all[] = {""};
    assert_int_equal(source_try_open(conf_new(), err, sizeof(err)), TL_ECONFIG);
    assert_non_null(strstr(err, "endpoint"));
    conf *c = set_str(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "socket", "req");
    assert_int_equal(source_try_open(c, err, sizeof(err)), TL_ECONFIG);
    c = set_list(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "subscribe", all, 1);
    assert_int_equal(source_try_open(c, err, sizeof(err)), TL_ECONFIG);
    c = set_num(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "batch", TL_PARAM_INT, 0);
    assert_int_equal(source_try_open(c, err, sizeof(err)), TL_ECONFIG);
    assert_int_equal(
        source_try_open(set_str(conf_new(), "endpoint", "bogus://x"), err, sizeof(err)),
        TL_ECONFIG);
    assert_string_equal(err, "zmq source: endpoint: unsupported transport (use tcp://, ipc:// or "
                             "inproc://)");
    c = set_str(conf_new(), "endpoint", "tcp://127.0.0.1");
    assert_int_equal(source_try_open(c, err, sizeof(err)), TL_ECONFIG);
    assert_string_equal(err, "zmq source: endpoint: expected HOST:PORT after tcp://");
}

static void bind_to_a_taken_address_fails_at_open(void **state)
{
    (void)state;
    fake_rt *f = rt_new();
    source_open_start(f, set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"));
    char err[256] = "";
    int rc = source_try_open(set_str(conf_new(), "endpoint", tl_zmq_source_endpoint(f->src)), err,
                             sizeof(err));
    assert_int_equal(rc, TL_EIO);
    assert_non_null(strstr(err, tl_zmq_source_endpoint(f->src)));
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

static void register_adds_the_source_and_both_sinks(void **state)
{
    (void)state;
    tl_registry *reg = NULL;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_zmq_register(reg), 0);
    assert_ptr_equal(tl_registry_source(reg, "zmq"), &tl_zmq_source_ops);
    assert_ptr_equal(tl_registry_sink(reg, "zmq"), &tl_zmq_push_sink_ops);
    assert_ptr_equal(tl_registry_sink(reg, "zmqpub"), &tl_zmq_pub_sink_ops);
    assert_false(tl_zmq_source_ops.at_least_once);
    assert_int_equal(tl_zmq_source_ops.commit(NULL, "x", -1, 5), 0);
    tl_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pull_over_tcp_gets_10000_messages_exactly_once),
        cmocka_unit_test(pull_over_ipc_gets_every_message_exactly_once),
        cmocka_unit_test(pull_over_inproc_gets_every_message_exactly_once),
        cmocka_unit_test(sub_source_gets_only_subscribed_prefixes),
        cmocka_unit_test(pause_stops_delivery_and_resume_loses_nothing),
        cmocka_unit_test(malformed_messages_are_reported_and_the_stream_goes_on),
        cmocka_unit_test(oversized_messages_are_rejected),
        cmocka_unit_test(open_rejects_bad_configuration),
        cmocka_unit_test(bind_to_a_taken_address_fails_at_open),
        cmocka_unit_test(register_adds_the_source_and_both_sinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
