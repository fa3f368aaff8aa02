/*
 * The one ZeroMQ context of the process, shared by every zmq source and sink so that
 * inproc:// endpoints reach each other. Created by the first open, terminated by the
 * last close.
 * Thread rules: any thread; ctx_lock guards ctx and users. zmq_ctx_term() runs under
 * the lock, which is safe because by then no socket of ours remains to block it
 * beyond its linger.
 */
#include "zmq_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ctx;
static unsigned users;

void *tl_zmq_ctx_acquire(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (!ctx)
        ctx = zmq_ctx_new();
    void *c = ctx;
    if (c)
        users++;
    pthread_mutex_unlock(&ctx_lock);
    return c;
}

void tl_zmq_ctx_release(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (users > 0 && --users == 0) {
        while (zmq_ctx_term(ctx) != 0 && zmq_errno() == EINTR)
            ;
        ctx = NULL;
    }
    pthread_mutex_unlock(&ctx_lock);
}

int tl_zmq_err(int zerr)
{
    switch (zerr) {
    case EAGAIN:
        return TL_EAGAIN;
    case ETERM:
        return TL_ECLOSED;
    case ENOMEM:
        return TL_ENOMEM;
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
        return TL_ECONFIG;
    default:
        return TL_EIO;
    }
}

int64_t tl_zmq_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tl_zmq_fail(char *err, size_t errlen, int code, const char *what, const char *reason)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, reason);
    return code;
}

void tl_zmq_keep_first(void *rep, const char *name, const char *key, const char *why)
{
    tl_zmq_problem *p = rep;
    (void)key; /* ZeroMQ sections have no MAP parameter */
    if (!p->found && p->err && p->errlen > 0)
        snprintf(p->err, p->errlen, "%s: %s: %s", p->what, name ? name : "endpoint", why);
    p->found = true;
}
