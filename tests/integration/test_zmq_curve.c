/*
 * CURVE on the ZeroMQ adapter over real tcp sockets: a source holding the server's
 * secret key takes messages from senders that know its public key and nothing from
 * those that do not (a wrong key, or no CURVE at all); keys from files; bad keys are
 * refused naming the setting, never the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <taskloop/config.h>

#include "zmq_helpers.h"

typedef struct keypair {
    char pub[41], sec[41];
} keypair;

static keypair new_keypair(void)
{
    keypair k;
    assert_int_equal(zmq_curve_keypair(k.pub, k.sec), 0);
    return k;
}

/* A PULL source bound on a free tcp port as the CURVE server with secret key sec. */
static fake_rt *curve_source(conf *c, size_t expect)
{
    fake_rt *f = rt_new();
    f->seen = calloc(expect, sizeof(int));
    f->nseen = expect;
    source_open_start(f, set_str(c, "endpoint", "tcp://127.0.0.1:*"));
    return f;
}

/* A raw PUSH socket of the test's own connected to endpoint, queueing n messages at
 * once; server_key NULL for no CURVE. */
static void *rogue_sender(void *ctx, const char *endpoint, const char *server_key, int n)
{
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (server_key) {
        keypair own = new_keypair();
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 40), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, own.pub, 40), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, own.sec, 40), 0);
    }
    assert_int_equal(zmq_connect(s, endpoint), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(zmq_send(s, "intruder", 8, ZMQ_DONTWAIT), 8);
    return s;
}

static void send_all(tl_sink *s, size_t n)
{
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (size_t i = 0; i < n; i++)
        send_numbered(s, (long)i, &a);
    assert_int_equal(tl_zmq_push_sink_ops.flush(s, 10000), 0);
    assert_int_equal(a.ok, n);
}

static void a_sender_with_the_servers_key_gets_through(void **state)
{
    (void)state;
    keypair server = new_keypair();
    fake_rt *f = curve_source(set_str(conf_new(), "curve_secret_key", server.sec), 200);
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, tl_zmq_source_endpoint(f->src),
                           set_str(conf_new(), "curve_server_key", server.pub));
    send_all(s, 200);
    assert_int_equal(wait_for(f, 200, 0, 10000), 200);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(f->seen[i], 1);
    assert_false(f->bad_roundtrip);
    tl_zmq_push_sink_ops.close(s);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

static void senders_without_the_servers_key_never_get_a_message_in(void **state)
{
    (void)state;
    keypair server = new_keypair(), other = new_keypair();
    fake_rt *f = curve_source(set_str(conf_new(), "curve_secret_key", server.sec), 10);
    const char *ep = tl_zmq_source_endpoint(f->src);
    void *ctx = zmq_ctx_new();
    void *wrong_key = rogue_sender(ctx, ep, other.pub, 50);
    void *no_curve = rogue_sender(ctx, ep, NULL, 50);
    /* Our own sink with the wrong key: its sends find no peer and time out. */
    conf *c = set_str(conf_new(), "curve_server_key", other.pub);
    tl_sink *bad =
        sink_open(&tl_zmq_push_sink_ops, ep, set_num(c, "send_timeout", TL_PARAM_DURATION, 200));
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(send_text(&tl_zmq_push_sink_ops, bad, "intruder", &a), 0);
    assert_int_equal(wait_acks(&a, 1, 5000), 1);
    assert_int_equal(a.failed, 1);
    sleep_ms(500);
    assert_int_equal(seen_count(f), 0);
    /* The source still serves a sender that has the key, and only its messages. */
    tl_sink *good =
        sink_open(&tl_zmq_push_sink_ops, ep, set_str(conf_new(), "curve_server_key", server.pub));
    send_all(good, 10);
    assert_int_equal(wait_for(f, 10, 0, 10000), 10);
    sleep_ms(200);
    assert_int_equal(seen_count(f), 10);
    assert_false(f->bad_roundtrip);
    zmq_close(wrong_key);
    zmq_close(no_curve);
    zmq_ctx_term(ctx);
    tl_zmq_push_sink_ops.close(good);
    tl_zmq_push_sink_ops.close(bad);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);
}

static void write_key(const char *path, const char *key, mode_t mode)
{
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fprintf(out, "%s\n", key);
    fclose(out);
    assert_int_equal(chmod(path, mode), 0);
}

static int try_source(conf *c, char *err, size_t errlen)
{
    return source_try_open(set_str(c, "endpoint", "tcp://127.0.0.1:*"), err, errlen);
}

static void keys_come_from_files_and_a_secret_one_must_be_private(void **state)
{
    (void)state;
    char dir[] = "/tmp/tlcurve-XXXXXX", sec[128], pub[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(sec, sizeof(sec), "%s/server.key", dir);
    snprintf(pub, sizeof(pub), "%s/server.pub", dir);
    keypair server = new_keypair();
    write_key(sec, server.sec, 0600);
    write_key(pub, server.pub, 0644);
    fake_rt *f = curve_source(set_str(conf_new(), "curve_secret_key_file", sec), 5);
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, tl_zmq_source_endpoint(f->src),
                           set_str(conf_new(), "curve_server_key_file", pub));
    send_all(s, 5);
    assert_int_equal(wait_for(f, 5, 0, 10000), 5);
    tl_zmq_push_sink_ops.close(s);
    tl_zmq_source_ops.close(f->src);
    rt_free(f);

    assert_int_equal(chmod(sec, 0640), 0);
    assert_int_equal(
        try_source(set_str(conf_new(), "curve_secret_key_file", sec), err, sizeof(err)),
        TL_ECONFIG);
    assert_non_null(strstr(err, sec));
    assert_non_null(strstr(err, "group or others"));
    assert_null(strstr(err, server.sec));
    unlink(sec);
    unlink(pub);
    rmdir(dir);
}

static void bad_keys_are_refused_naming_the_setting_never_the_key(void **state)
{
    (void)state;
    char err[512];
    keypair server = new_keypair();
    char cut[41];
    memcpy(cut, server.sec, 39);
    cut[39] = '\0';
    assert_int_equal(try_source(set_str(conf_new(), "curve_secret_key", cut), err, sizeof(err)),
                     TL_ECONFIG);
    assert_non_null(strstr(err, "curve_secret_key is not a Z85 key"));
    assert_null(strstr(err, cut));
    char bad[41];
    memcpy(bad, server.sec, 41);
    bad[7] = '"'; /* not a Z85 character */
    assert_int_equal(try_source(set_str(conf_new(), "curve_secret_key", bad), err, sizeof(err)),
                     TL_ECONFIG);
    assert_non_null(strstr(err, "curve_secret_key is not a Z85 key"));
    conf *c = set_str(conf_new(), "curve_secret_key", server.sec);
    assert_int_equal(try_source(set_str(c, "curve_server_key", server.pub), err, sizeof(err)),
                     TL_ECONFIG);
    assert_non_null(strstr(err, "set one"));
    assert_null(strstr(err, server.sec));
    /* A dump or a config message never shows them either. */
    assert_true(tl_config_is_secret("curve_secret_key"));
    assert_true(tl_config_is_secret("curve_secret_key_file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_sender_with_the_servers_key_gets_through),
        cmocka_unit_test(senders_without_the_servers_key_never_get_a_message_in),
        cmocka_unit_test(keys_come_from_files_and_a_secret_one_must_be_private),
        cmocka_unit_test(bad_keys_are_refused_naming_the_setting_never_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
