/*
 * The ZeroMQ adapter over real sockets: tcp on 127.0.0.1 (ports chosen by the kernel
 * and read back), ipc in a temporary directory, and inproc. A small fake runtime
 * stands in for the framework: it records deliveries and errors, and releases
 * messages at once or holds them, as each test needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <taskloop/zmq.h>
#include <zmq.h>

/* ------------------------------------------------------------ helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A config section built in the test. */
typedef struct conf {
    tl_param_value v[8];
    tl_params p;
} conf;

static conf *conf_new(void)
{
    conf *c = calloc(1, sizeof(*c));
    c->p = (tl_params){"test", c->v, 0};
    return c;
}

static conf *set_str(conf *c, const char *name, const char *s)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = TL_PARAM_STRING, .str = s};
    return c;
}

static conf *set_num(conf *c, const char *name, tl_param_type t, int64_t n)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = t, .num = n};
    return c;
}

static conf *set_list(conf *c, const char *name, const char *const *list, size_t n)
{
    c->v[c->p.n++] =
        (tl_param_value){.name = name, .type = TL_PARAM_LIST, .list = list, .nlist = n};
    return c;
}

/* ------------------------------------------------------------ fake runtime */

#define MAXKEEP 20000

typedef struct fake_rt {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    tl_source *src;
    bool hold; /* keep messages instead of releasing them */
    size_t n;  /* messages delivered */
    tl_msg *kept[MAXKEEP];
    char *payloads[MAXKEEP];
    int64_t last_offset;
    bool offsets_in_order;
    int errors, fatal;
    char last_error[256];
    int *seen; /* per "seq" header, when counting */
    size_t nseen;
    bool bad_roundtrip;
} fake_rt;

/* Checks that a message sent by send_numbered() came back whole. */
static void check_numbered(fake_rt *f, const tl_msg *m)
{
    size_t len = 0;
    const char *seq = tl_msg_header(m, "seq", &len);
    char buf[32] = "", want[32];
    if (!seq || len >= sizeof(buf)) {
        f->bad_roundtrip = true;
        return;
    }
    memcpy(buf, seq, len);
    long i = strtol(buf, NULL, 10);
    snprintf(want, sizeof(want), "payload-%ld", i);
    if (m->len != strlen(want) || memcmp(m->payload, want, m->len) != 0)
        f->bad_roundtrip = true;
    snprintf(want, sizeof(want), "k%ld", i % 7);
    if (!m->key || m->key_len != strlen(want) || memcmp(m->key, want, m->key_len) != 0)
        f->bad_roundtrip = true;
    const void *tr = tl_msg_header(m, "trace", &len);
    if (!tr || len != 3 || memcmp(tr, "abc", 3) != 0 || m->nheaders != 2)
        f->bad_roundtrip = true;
    if (i >= 0 && (size_t)i < f->nseen)
        f->seen[i]++;
}

static void rt_deliver(void *rt, tl_source *src, tl_msg **msgs, size_t n)
{
    fake_rt *f = rt;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n; i++) {
        tl_msg *m = msgs[i];
        if (m->partition != -1 || m->offset != f->last_offset + 1)
            f->offsets_in_order = false;
        f->last_offset = m->offset;
        if (f->seen)
            check_numbered(f, m);
        if (f->n < MAXKEEP)
            f->payloads[f->n] = strndup(m->payload, m->len);
        if (f->hold && f->n < MAXKEEP)
            f->kept[f->n] = m;
        else
            tl_zmq_source_ops.release(src, m);
        f->n++;
    }
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void rt_error(void *rt, tl_source *src, int err, bool fatal, const char *what)
{
    fake_rt *f = rt;
    (void)src, (void)err;
    pthread_mutex_lock(&f->lock);
    f->errors++;
    f->fatal += fatal;
    snprintf(f->last_error, sizeof(f->last_error), "%s", what);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static fake_rt *rt_new(void)
{
    fake_rt *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->last_offset = -1;
    f->offsets_in_order = true;
    return f;
}

static void rt_free(fake_rt *f)
{
    for (size_t i = 0; i < f->n && i < MAXKEEP; i++)
        free(f->payloads[i]);
    free(f->seen);
    free(f);
}

/* Waits up to ms until the runtime saw n messages and errs errors; returns messages seen. */
static size_t wait_for(fake_rt *f, size_t n, int errs, int ms)
{
    int64_t end = now_ms() + ms;
    pthread_mutex_lock(&f->lock);
    while ((f->n < n || f->errors < errs) && now_ms() < end) {
        pthread_mutex_unlock(&f->lock);
        sleep_ms(2);
        pthread_mutex_lock(&f->lock);
    }
    size_t got = f->n;
    pthread_mutex_unlock(&f->lock);
    return got;
}

static size_t seen_count(fake_rt *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static tl_source *source_open_start(fake_rt *f, conf *c)
{
    tl_source_events ev = {f, rt_deliver, NULL, NULL, rt_error};
    char err[256] = "";
    int rc = tl_zmq_source_ops.open(&c->p, &ev, &f->src, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %s (%s)", tl_strerror(rc), err);
    assert_int_equal(tl_zmq_source_ops.start(f->src), 0);
    free(c);
    return f->src;
}

/* Ack counting for sinks. */
typedef struct acks {
    pthread_mutex_t lock;
    size_t ok, failed, eagain, closed;
} acks;

static void on_ack(void *arg, int err, const char *what)
{
    acks *a = arg;
    (void)what;
    pthread_mutex_lock(&a->lock);
    if (err == 0)
        a->ok++;
    else
        a->failed++;
    a->eagain += err == TL_EAGAIN;
    a->closed += err == TL_ECLOSED;
    pthread_mutex_unlock(&a->lock);
}

static size_t acked(acks *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->ok + a->failed;
    pthread_mutex_unlock(&a->lock);
    return n;
}

static size_t wait_acks(acks *a, size_t n, int ms)
{
    int64_t end = now_ms() + ms;
    while (acked(a) < n && now_ms() < end)
        sleep_ms(2);
    return acked(a);
}

static tl_sink *sink_open(const tl_sink_ops *ops, const char *address, conf *c)
{
    tl_sink *s = NULL;
    char err[256] = "";
    int rc = ops->open(address, c ? &c->p : NULL, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("sink open %s: %s (%s)", address, tl_strerror(rc), err);
    free(c);
    return s;
}

/* Sends message i in the numbered form check_numbered() expects, retrying a full queue. */
static void send_numbered(tl_sink *s, long i, acks *a)
{
    char payload[32], key[16], seq[16];
    snprintf(payload, sizeof(payload), "payload-%ld", i);
    snprintf(key, sizeof(key), "k%ld", i % 7);
    snprintf(seq, sizeof(seq), "%ld", i);
    tl_header h[] = {{"seq", seq, strlen(seq)}, {"trace", "abc", 3}};
    tl_out_msg m = {payload, strlen(payload), key, strlen(key), h, 2};
    int rc;
    while ((rc = tl_zmq_push_sink_ops.send(s, &m, on_ack, a)) == TL_EAGAIN)
        sleep_ms(1);
    assert_int_equal(rc, 0);
}

static int send_text(const tl_sink_ops *ops, tl_sink *s, const char *text, acks *a)
{
    tl_out_msg m = {text, strlen(text), NULL, 0, NULL, 0};
    return ops->send(s, &m, on_ack, a);
}

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

/* ------------------------------------------------------------ dead peers */

/* An endpoint nobody listens on: bound once by a source that is then closed. */
static char *dead_endpoint(void)
{
    fake_rt *f = rt_new();
    tl_source_events ev = {f, rt_deliver, NULL, NULL, rt_error};
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

/* ------------------------------------------------------------ configuration */

static int try_open(conf *c, char *err, size_t errlen)
{
    fake_rt *f = rt_new();
    tl_source_events ev = {f, rt_deliver, NULL, NULL, rt_error};
    int rc = tl_zmq_source_ops.open(&c->p, &ev, &f->src, err, errlen);
    if (rc == 0)
        tl_zmq_source_ops.close(f->src);
    free(c);
    rt_free(f);
    return rc;
}

static void open_rejects_bad_configuration(void **state)
{
    (void)state;
    char err[256];
    static const char *const all[] = {""};
    assert_int_equal(try_open(conf_new(), err, sizeof(err)), TL_ECONFIG);
    assert_non_null(strstr(err, "endpoint"));
    conf *c = set_str(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "socket", "req");
    assert_int_equal(try_open(c, err, sizeof(err)), TL_ECONFIG);
    c = set_list(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "subscribe", all, 1);
    assert_int_equal(try_open(c, err, sizeof(err)), TL_ECONFIG);
    c = set_num(set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"), "batch", TL_PARAM_INT, 0);
    assert_int_equal(try_open(c, err, sizeof(err)), TL_ECONFIG);
    assert_int_equal(try_open(set_str(conf_new(), "endpoint", "bogus://x"), err, sizeof(err)),
                     TL_ECONFIG);
    assert_non_null(strstr(err, "bogus://x"));
}

static void bind_to_a_taken_address_fails_at_open(void **state)
{
    (void)state;
    fake_rt *f = rt_new();
    source_open_start(f, set_str(conf_new(), "endpoint", "tcp://127.0.0.1:*"));
    char err[256] = "";
    int rc =
        try_open(set_str(conf_new(), "endpoint", tl_zmq_source_endpoint(f->src)), err, sizeof(err));
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
        cmocka_unit_test(sink_without_a_peer_acks_an_error_within_its_send_timeout),
        cmocka_unit_test(sink_whose_peer_went_away_acks_an_error),
        cmocka_unit_test(full_sink_queue_refuses_sends),
        cmocka_unit_test(close_with_messages_in_flight_releases_everything),
        cmocka_unit_test(open_rejects_bad_configuration),
        cmocka_unit_test(bind_to_a_taken_address_fails_at_open),
        cmocka_unit_test(register_adds_the_source_and_both_sinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
