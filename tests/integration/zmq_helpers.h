/*
 * What the ZeroMQ adapter tests (test_zmq_source, test_zmq_sink) share: config
 * sections built in the test, a small fake runtime that stands in for the framework
 * behind a source, and ack counting for sinks.
 *
 * The fake runtime records deliveries and errors, and releases messages at once or
 * holds them, as each test needs. Thread rules: its fields are written by the source's
 * thread and read by the test thread, always under fake_rt.lock; acks likewise under
 * acks.lock.
 */
#ifndef TL_TEST_ZMQ_HELPERS_H
#define TL_TEST_ZMQ_HELPERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskloop/zmq.h>

/* Monotonic milliseconds. */
int64_t now_ms(void);

/* Sleeps ms milliseconds. */
void sleep_ms(int ms);

/* ------------------------------------------------------------ config sections */

/* A config section built in the test. */
typedef struct conf {
    tl_param_value v[8];
    tl_params p;
} conf;

/* An empty section, freed by whoever opens with it (source_open_start, sink_open). */
conf *conf_new(void);

/* Appends a string parameter; returns c, so that calls nest. */
conf *set_str(conf *c, const char *name, const char *s);

/* Appends a number of type t (int, duration); returns c. */
conf *set_num(conf *c, const char *name, tl_param_type t, int64_t n);

/* Appends a list of n strings; returns c. */
conf *set_list(conf *c, const char *name, const char *const *list, size_t n);

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

/* The deliver event: records each message, then releases or keeps it. */
void rt_deliver(void *rt, tl_source *src, tl_msg **msgs, size_t n);

/* The error event: counts it and keeps its text. */
void rt_error(void *rt, tl_source *src, int err, bool fatal, const char *what);

/* A fake runtime that has seen nothing. */
fake_rt *rt_new(void);

/* Frees f, its payload copies and its seen counts (not its source). */
void rt_free(fake_rt *f);

/* Waits up to ms until the runtime saw n messages and errs errors; returns messages seen. */
size_t wait_for(fake_rt *f, size_t n, int errs, int ms);

/* Messages delivered so far. */
size_t seen_count(fake_rt *f);

/* Opens a source with c for f, starts it, frees c and returns the source (also f->src). */
tl_source *source_open_start(fake_rt *f, conf *c);

/* Opens a source with c and closes it at once, frees c: open's result, its error in err. */
int source_try_open(conf *c, char *err, size_t errlen);

/* ------------------------------------------------------------ sinks */

/* Ack counting for sinks. */
typedef struct acks {
    pthread_mutex_t lock;
    size_t ok, failed, eagain, closed;
} acks;

/* Acks seen so far, successful or not. */
size_t acked(acks *a);

/* Waits up to ms until a saw n acks; returns acks seen. */
size_t wait_acks(acks *a, size_t n, int ms);

/* Opens a sink of ops at address with c (may be NULL), freeing c; fails the test on error. */
tl_sink *sink_open(const tl_sink_ops *ops, const char *address, conf *c);

/* Sends message i in the form rt_deliver checks when counting, retrying a full queue. */
void send_numbered(tl_sink *s, long i, acks *a);

/* Sends text as the payload alone; returns what send returned. */
int send_text(const tl_sink_ops *ops, tl_sink *s, const char *text, acks *a);

#endif
