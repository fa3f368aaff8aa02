/* What the ZeroMQ adapter tests share; see zmq_helpers.h. */
#include "zmq_helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ config sections */

conf *conf_new(void)
{
    conf *c = calloc(1, sizeof(*c));
    c->p = (tl_params){"test", c->v, 0};
    return c;
}

conf *set_str(conf *c, const char *name, const char *s)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = TL_PARAM_STRING, .str = s};
    return c;
}

conf *set_num(conf *c, const char *name, tl_param_type t, int64_t n)
{
    c->v[c->p.n++] = (tl_param_value){.name = name, .type = t, .num = n};
    return c;
}

conf *set_list(conf *c, const char *name, const char *const *list, size_t n)
{
    c->v[c->p.n++] =
        (tl_param_value){.name = name, .type = TL_PARAM_LIST, .list = list, .nlist = n};
    return c;
}

/* ------------------------------------------------------------ fake runtime */

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

void rt_deliver(void *rt, tl_source *src, tl_msg **msgs, size_t n)
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

void rt_error(void *rt, tl_source *src, int err, bool fatal, const char *what)
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

fake_rt *rt_new(void)
{
    fake_rt *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->last_offset = -1;
    f->offsets_in_order = true;
    return f;
}

void rt_free(fake_rt *f)
{
    for (size_t i = 0; i < f->n && i < MAXKEEP; i++)
        free(f->payloads[i]);
    free(f->seen);
    free(f);
}

size_t wait_for(fake_rt *f, size_t n, int errs, int ms)
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

size_t seen_count(fake_rt *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n;
}

int source_try_open(conf *c, char *err, size_t errlen)
{
    fake_rt *f = rt_new();
    tl_source_events ev = {.rt = f, .deliver = rt_deliver, .error = rt_error};
    err[0] = '\0';
    int rc = tl_zmq_source_ops.open(&c->p, &ev, &f->src, err, errlen);
    if (rc == 0)
        tl_zmq_source_ops.close(f->src);
    free(c);
    rt_free(f);
    return rc;
}

tl_source *source_open_start(fake_rt *f, conf *c)
{
    tl_source_events ev = {.rt = f, .deliver = rt_deliver, .error = rt_error};
    char err[256] = "";
    int rc = tl_zmq_source_ops.open(&c->p, &ev, &f->src, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %s (%s)", tl_strerror(rc), err);
    assert_int_equal(tl_zmq_source_ops.start(f->src), 0);
    free(c);
    return f->src;
}

/* ------------------------------------------------------------ sinks */

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

size_t acked(acks *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->ok + a->failed;
    pthread_mutex_unlock(&a->lock);
    return n;
}

size_t wait_acks(acks *a, size_t n, int ms)
{
    int64_t end = now_ms() + ms;
    while (acked(a) < n && now_ms() < end)
        sleep_ms(2);
    return acked(a);
}

tl_sink *sink_open(const tl_sink_ops *ops, const char *address, conf *c)
{
    tl_sink *s = NULL;
    char err[256] = "";
    int rc = ops->open(address, c ? &c->p : NULL, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("sink open %s: %s (%s)", address, tl_strerror(rc), err);
    free(c);
    return s;
}

void send_numbered(tl_sink *s, long i, acks *a)
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

int send_text(const tl_sink_ops *ops, tl_sink *s, const char *text, acks *a)
{
    tl_out_msg m = {text, strlen(text), NULL, 0, NULL, 0};
    return ops->send(s, &m, on_ack, a);
}
