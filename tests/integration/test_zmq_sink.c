/*
 * The ZeroMQ PUSH sink over real tcp sockets: a peer that is missing or goes away, a
 * full queue, and closing with messages in flight; every accepted send is acked
 * exactly once. The fake runtime of the sources they talk to is in zmq_helpers.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "zmq_helpers.h"

/* ------------------------------------------------------------ dead peers */

/* An endpoint nobody listens on: bound once by a source that is then closed. */
static char *dead_endpoint(void)
{
    fake_rt *f = rt_new();
    tl_source_events ev = {.rt = f, .deliver = rt_deliver, .error = rt_error};
    conf *c = set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*");
    char err[128];
    assert_int_equal(tl_zmq_source_ops.open(&c->p, &ev, &f->src, err, sizeof(err)), 0);
    char *ep = strdup(tl_zmq_source_endpoint(f->src));
    tl_zmq_source_ops.close(f->src);
    free(c);
    rt_free(f);
    return ep;
}

static void sink_without_a_peer_acks_an_error_within_its_send_timeout(void **state)
{
    (void)state;
    char *ep = dead_endpoint();
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, ep,
                           set_num(conf_new(), "send_timeout", TL_PARAM_DURATION, 200));
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    int64_t start = now_ms();
    assert_int_equal(send_text(&tl_zmq_push_sink_ops, s, "to nobody", &a), 0);
    assert_int_equal(wait_acks(&a, 1, 3000), 1);
    int64_t took = now_ms() - start;
    assert_int_equal(a.eagain, 1);
    assert_true(took >= 150 && took < 1500);
    tl_zmq_push_sink_ops.close(s);
    free(ep);
}

static void sink_whose_peer_went_away_acks_an_error(void **state)
{
    (void)state;
    fake_rt *f = rt_new();
    source_open_start(f, set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"));
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, tl_zmq_source_endpoint(f->src),
                           set_num(conf_new(), "send_timeout", TL_PARAM_DURATION, 200));
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(send_text(&tl_zmq_push_sink_ops, s, "first", &a), 0);
    assert_int_equal(wait_for(f, 1, 0, 5000), 1);
    assert_int_equal(a.ok, 1);
    tl_zmq_source_ops.close(f->src);
    sleep_ms(300); /* the sink notices the closed connection */
    int64_t start = now_ms();
    assert_int_equal(send_text(&tl_zmq_push_sink_ops, s, "second", &a), 0);
    assert_int_equal(wait_acks(&a, 2, 3000), 2);
    assert_int_equal(a.eagain, 1);
    assert_true(now_ms() - start < 1500);
    tl_zmq_push_sink_ops.close(s);
    rt_free(f);
}

static void full_sink_queue_refuses_sends(void **state)
{
    (void)state;
    char *ep = dead_endpoint();
    conf *c = set_num(conf_new(), "send_timeout", TL_PARAM_DURATION, 300);
    set_num(c, "queue", TL_PARAM_INT, 2);
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, ep, c);
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    size_t accepted = 0, refused = 0;
    for (int i = 0; i < 5; i++) {
        int rc = send_text(&tl_zmq_push_sink_ops, s, "x", &a);
        accepted += rc == 0;
        refused += rc == TL_EAGAIN;
    }
    assert_true(refused >= 2);
    assert_int_equal(accepted + refused, 5);
    assert_int_equal(tl_zmq_push_sink_ops.flush(s, 10), TL_ETIMEDOUT);
    tl_zmq_push_sink_ops.close(s);
    /* Every accepted send was acked once: timed out or closed. */
    assert_int_equal(acked(&a), accepted);
    assert_int_equal(a.ok, 0);
    free(ep);
}

/* ------------------------------------------------------------ shutdown */

static void close_with_messages_in_flight_releases_everything(void **state)
{
    (void)state;
    size_t n = 3000;
    fake_rt *f = rt_new();
    f->hold = true;
    conf *c = set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*");
    set_num(c, "batch", TL_PARAM_INT, 16);
    set_num(c, "hwm", TL_PARAM_INT, 100);
    source_open_start(f, c);
    tl_sink *s = sink_open(&tl_zmq_push_sink_ops, tl_zmq_source_endpoint(f->src),
                           set_num(conf_new(), "send_timeout", TL_PARAM_DURATION, 50));
    acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(send_text(&tl_zmq_push_sink_ops, s, "in flight", &a), 0);
    assert_true(wait_for(f, 100, 0, 5000) >= 100);
    /* The source goes while messages sit in its socket and in the runtime. */
    tl_zmq_source_stats st;
    tl_zmq_source_stats_get(f->src, &st);
    tl_zmq_source_ops.stop(f->src);
    tl_zmq_source_ops.close(f->src);
    assert_true(st.outstanding > 0);
    /* The sink goes with sends still queued: each is acked exactly once. */
    tl_zmq_push_sink_ops.close(s);
    assert_int_equal(acked(&a), n);
    /* The runtime hands back what it held after the source closed. */
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++)
        tl_zmq_source_ops.release(f->src, f->kept[i]);
    pthread_mutex_unlock(&f->lock);
    rt_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sink_without_a_peer_acks_an_error_within_its_send_timeout),
        cmocka_unit_test(sink_whose_peer_went_away_acks_an_error),
        cmocka_unit_test(full_sink_queue_refuses_sends),
        cmocka_unit_test(close_with_messages_in_flight_releases_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
