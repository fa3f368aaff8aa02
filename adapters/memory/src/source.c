/*
 * The memory source: reads the partitions of a named topic on a thread of its own.
 *
 * Thread rules:
 *  - open/start/pause/commit/stop/close run on the loop thread (adapter.h); release on
 *    any thread, also after close (a delivered message points at its topic, which
 *    outlives it; the source struct is not touched).
 *  - tl_mem_lock guards everything here: the topic, paused, stopping, requests. The
 *    source thread waits on wake; it drops the lock around every event it calls, so
 *    the runtime may call back into the source from inside an event.
 *  - revoke/assign requests from tests run on the source thread, between batches,
 *    as a Kafka consumer runs rebalance callbacks between polls.
 */
#include "memory_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct request {
    struct request *next;
    bool revoke;
    bool lost; /* a revoke told as a loss (ev->lost) */
    int32_t partition;
    bool done;
    int result;
} request;

struct tl_source {
    mem_topic *topic;
    tl_source_events ev;
    size_t batch;
    size_t run;       /* most consecutive messages of one partition (see take_batch) */
    size_t cursor;    /* source thread only: the partition whose run goes on */
    size_t run_taken; /* source thread only: messages of the cursor's run so far */
    int64_t hold_limit_ms;
    pthread_t thread;
    bool started;
    pthread_cond_t wake;
    bool paused;
    bool stopping;
    request *requests;
    tl_msg **batchv; /* source thread only */
};

/* A delivered message: a copy of the log record, owned by the runtime until release. */
typedef struct mem_msg {
    tl_msg msg;
    mem_topic *topic;
    tl_memory_record *rec;
} mem_msg;

static const tl_param source_params[] = {
    {"name", TL_PARAM_STRING, true, false, "the memory topic to read"},
    {"partitions", TL_PARAM_INT, false, false, "partitions of the topic (default 1)"},
    {"batch", TL_PARAM_INT, false, false, "most messages per delivery (default 64)"},
    {"run", TL_PARAM_INT, false, false,
     "most consecutive messages of one partition before the next one's turn (default 1); "
     "a large run delivers a backlog partition by partition, as Kafka's fetches do"},
    {"hold_limit", TL_PARAM_DURATION, false, false,
     "how long backpressure may keep the source waiting before it is paused (default: no "
     "limit), as a Kafka source's comes from max.poll.interval.ms"},
    {NULL, 0, false, false, NULL},
};

static const tl_param_range source_ranges[] = {
    {"partitions", 1, TL_MEMORY_MAX_PARTITIONS},
    {"batch", 1, 1 << 20},
    {"run", 1, INT32_MAX},
    {NULL, 0, 0},
};

static int fail(char *err, size_t errlen, int code, const char *why)
{
    if (err && errlen > 0) {
        strncpy(err, why, errlen - 1);
        err[errlen - 1] = '\0';
    }
    return code;
}

/* ------------------------------------------------------------ delivering */

static bool deliverable_locked(const mem_part *p)
{
    return p->assigned && !p->held && p->position < p->base + (int64_t)p->n;
}

static bool any_deliverable_locked(const tl_source *src)
{
    for (size_t i = 0; i < src->topic->nparts; i++)
        if (deliverable_locked(&src->topic->parts[i]))
            return true;
    return false;
}

static mem_msg *wrap_locked(tl_source *src, size_t part)
{
    mem_part *p = &src->topic->parts[part];
    tl_memory_record *rec = tl_mem_record_copy(p->log[p->position - p->base]);
    mem_msg *m = rec ? malloc(sizeof(*m)) : NULL;
    if (!m) {
        free(rec);
        return NULL;
    }
    m->topic = src->topic;
    m->rec = rec;
    m->msg = (tl_msg){
        .payload = rec->payload,
        .len = rec->len,
        .key = rec->key,
        .key_len = rec->key_len,
        .headers = rec->headers,
        .nheaders = rec->nheaders,
        .origin = src->topic->name,
        .partition = (int32_t)part,
        .offset = p->position,
        .timestamp_ms = rec->timestamp_ms,
        .handle = m,
    };
    p->position++;
    return m;
}

/* Takes up to batch messages: runs of up to `run` messages of one partition, the
 * partitions taking turns (with run 1, one message each in turn). */
static size_t take_batch_locked(tl_source *src)
{
    size_t n = 0, skipped = 0, nparts = src->topic->nparts;
    while (n < src->batch && skipped < nparts) {
        size_t i = src->cursor % nparts;
        if (!deliverable_locked(&src->topic->parts[i]) || src->run_taken >= src->run) {
            src->cursor = (i + 1) % nparts;
            src->run_taken = 0;
            skipped++;
            continue;
        }
        mem_msg *m = wrap_locked(src, i);
        if (!m)
            break; /* out of memory: deliver what we have; the rest stays for later */
        src->batchv[n++] = &m->msg;
        src->run_taken++;
        skipped = 0;
    }
    src->topic->outstanding += n;
    return n;
}

/* Calls assigned, revoked or lost for one partition, without the lock. */
static void announce(tl_source *src, bool revoke, bool lost, int32_t partition)
{
    tl_partition tp = {src->topic->name, partition};
    void (*cb)(void *, tl_source *, const tl_partition *, size_t) = !revoke ? src->ev.assigned
                                                                    : lost && src->ev.lost
                                                                        ? src->ev.lost
                                                                        : src->ev.revoked;
    pthread_mutex_unlock(&tl_mem_lock);
    if (cb)
        cb(src->ev.rt, src, &tp, 1);
    pthread_mutex_lock(&tl_mem_lock);
}

static void finish_request_locked(request *r, int result)
{
    r->result = result;
    r->done = true;
    pthread_cond_broadcast(&tl_mem_request_done);
}

static void handle_request_locked(tl_source *src)
{
    request *r = src->requests;
    src->requests = r->next;
    if (r->partition < 0 || (size_t)r->partition >= src->topic->nparts) {
        finish_request_locked(r, TL_EINVAL);
        return;
    }
    mem_part *p = &src->topic->parts[r->partition];
    if (p->assigned != r->revoke) {
        finish_request_locked(r, TL_EINVAL);
        return;
    }
    if (r->revoke) {
        /* Stop first, so nothing of the partition is delivered while revoked runs. */
        p->assigned = false;
        p->held = false; /* a revoke ends the runtime's pause of it */
        announce(src, true, r->lost, r->partition);
    } else {
        p->position = p->committed > p->base ? p->committed : p->base;
        announce(src, false, false, r->partition);
        /* Assigned only after the runtime heard of it, so deliveries follow the news. */
        p = &src->topic->parts[r->partition];
        p->assigned = true;
    }
    finish_request_locked(r, 0);
}

static void announce_all_assigned(tl_source *src)
{
    size_t n = src->topic->nparts;
    tl_partition *parts = calloc(n, sizeof(*parts));
    if (!parts || !src->ev.assigned) {
        free(parts);
        return;
    }
    /* Only what start() assigned: a push may have added partitions since. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (src->topic->parts[i].assigned)
            parts[k++] = (tl_partition){src->topic->name, (int32_t)i};
    pthread_mutex_unlock(&tl_mem_lock);
    src->ev.assigned(src->ev.rt, src, parts, k);
    pthread_mutex_lock(&tl_mem_lock);
    free(parts);
}

static void *source_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-mem-source"); /* for top -H, perf, gdb */
    tl_source *src = arg;
    pthread_mutex_lock(&tl_mem_lock);
    announce_all_assigned(src);
    for (;;) {
        while (!src->stopping && !src->requests && (src->paused || !any_deliverable_locked(src)))
            pthread_cond_wait(&src->wake, &tl_mem_lock);
        if (src->stopping)
            break;
        if (src->requests) {
            handle_request_locked(src);
            continue;
        }
        size_t n = take_batch_locked(src);
        pthread_mutex_unlock(&tl_mem_lock);
        if (n > 0)
            src->ev.deliver(src->ev.rt, src, src->batchv, n);
        pthread_mutex_lock(&tl_mem_lock);
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return NULL;
}

/* ------------------------------------------------------------ ops */

static int source_open(const tl_params *conf, const tl_source_events *ev, tl_source **out,
                       char *err, size_t errlen)
{
    const char *name = tl_params_str(conf, "name", NULL);
    int64_t parts = tl_params_num(conf, "partitions", 1);
    int64_t batch = tl_params_num(conf, "batch", 64);
    int64_t run = tl_params_num(conf, "run", 1);
    int64_t hold_limit = tl_params_num(conf, "hold_limit", 0);
    char why[200], msg[256];
    if (!name || !*name)
        return fail(err, errlen, TL_ECONFIG, "memory source: name is required");
    if (tl_params_check_ranges(source_params, source_ranges, conf, why, sizeof(why))) {
        snprintf(msg, sizeof(msg), "memory source: %s", why);
        return fail(err, errlen, TL_ECONFIG, msg);
    }
    tl_source *src = calloc(1, sizeof(*src));
    if (src)
        src->batchv = calloc((size_t)batch, sizeof(*src->batchv));
    if (!src || !src->batchv) {
        free(src);
        return fail(err, errlen, TL_ENOMEM, "memory source: out of memory");
    }
    src->ev = *ev;
    src->batch = (size_t)batch;
    src->run = (size_t)run;
    src->hold_limit_ms = hold_limit;
    pthread_cond_init(&src->wake, NULL);

    int rc = 0;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, true);
    if (!t)
        rc = fail(err, errlen, TL_ENOMEM, "memory source: out of memory");
    else if (t->src)
        rc = fail(err, errlen, TL_EBUSY, "memory source: topic already has a source open");
    else if ((rc = tl_mem_topic_grow_locked(t, (size_t)parts)) != 0)
        fail(err, errlen, rc, "memory source: cannot add partitions");
    if (rc == 0) {
        t->src = src;
        src->topic = t;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    if (rc != 0) {
        pthread_cond_destroy(&src->wake);
        free(src->batchv);
        free(src);
        return rc;
    }
    *out = src;
    return 0;
}

static int source_start(tl_source *src)
{
    pthread_mutex_lock(&tl_mem_lock);
    bool ok = !src->started && !src->stopping;
    for (size_t i = 0; ok && i < src->topic->nparts; i++) {
        mem_part *p = &src->topic->parts[i];
        p->assigned = true;
        p->held = false; /* a pause belongs to the consumer that asked for it, as in Kafka */
        p->position = p->committed > p->base ? p->committed : p->base;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    if (!ok)
        return TL_EINVAL;
    if (pthread_create(&src->thread, NULL, source_main, src) != 0)
        return TL_ESYS;
    src->started = true;
    return 0;
}

static void source_pause_partitions(tl_source *src, const tl_partition *parts, size_t n,
                                    bool paused)
{
    pthread_mutex_lock(&tl_mem_lock);
    for (size_t i = 0; i < n; i++)
        if (parts[i].partition >= 0 && (size_t)parts[i].partition < src->topic->nparts)
            src->topic->parts[parts[i].partition].held = paused;
    pthread_cond_signal(&src->wake);
    pthread_mutex_unlock(&tl_mem_lock);
}

static void source_pause(tl_source *src, bool paused)
{
    pthread_mutex_lock(&tl_mem_lock);
    src->paused = paused;
    pthread_cond_signal(&src->wake);
    pthread_mutex_unlock(&tl_mem_lock);
}

/* Forgets records below the committed offset: a replay never goes back past it. */
static void trim_locked(mem_part *p)
{
    int64_t upto = p->committed < p->base + (int64_t)p->n ? p->committed : p->base + (int64_t)p->n;
    size_t drop = upto > p->base ? (size_t)(upto - p->base) : 0;
    for (size_t i = 0; i < drop; i++)
        free(p->log[i]);
    memmove(p->log, p->log + drop, (p->n - drop) * sizeof(*p->log));
    p->n -= drop;
    p->base += (int64_t)drop;
    if (p->position < p->base)
        p->position = p->base;
}

static int source_commit(tl_source *src, const char *topic, int32_t partition, int64_t next)
{
    int rc = 0;
    bool lost = false;
    pthread_mutex_lock(&tl_mem_lock);
    if (partition < 0 || (size_t)partition >= src->topic->nparts || next < 0) {
        rc = TL_EINVAL;
    } else {
        mem_part *p = &src->topic->parts[partition];
        lost = src->topic->lose_commits;
        if (!lost) {
            p->committed = next;
            trim_locked(p);
        }
    }
    pthread_mutex_unlock(&tl_mem_lock);
    /* Reported for runtimes that count on acknowledgements (a type registered with
     * commit_acks): a lost commit is refused. */
    if (rc == 0 && src->ev.committed)
        src->ev.committed(src->ev.rt, src, topic, partition, next, lost ? TL_EIO : 0);
    return rc;
}

static void source_release(tl_source *src, tl_msg *msg)
{
    (void)src;
    mem_msg *m = msg->handle;
    pthread_mutex_lock(&tl_mem_lock);
    m->topic->outstanding--;
    pthread_mutex_unlock(&tl_mem_lock);
    free(m->rec);
    free(m);
}

static void source_stop(tl_source *src)
{
    pthread_mutex_lock(&tl_mem_lock);
    src->stopping = true;
    pthread_cond_signal(&src->wake);
    pthread_mutex_unlock(&tl_mem_lock);
    if (src->started)
        pthread_join(src->thread, NULL);
    src->started = false;
    pthread_mutex_lock(&tl_mem_lock);
    while (src->requests) {
        request *r = src->requests;
        src->requests = r->next;
        finish_request_locked(r, TL_ECLOSED);
    }
    pthread_mutex_unlock(&tl_mem_lock);
}

static void source_close(tl_source *src)
{
    if (!src)
        return;
    source_stop(src);
    pthread_mutex_lock(&tl_mem_lock);
    tl_mem_txn_discard_locked(src->topic); /* never committed: aborted */
    src->topic->src = NULL;
    pthread_mutex_unlock(&tl_mem_lock);
    pthread_cond_destroy(&src->wake);
    free(src->batchv);
    free(src);
}

static int64_t source_hold_limit(tl_source *src)
{
    return src->hold_limit_ms;
}

const tl_source_ops tl_memory_source_ops = {
    .type = "memory",
    .params = source_params,
    .at_least_once = true,
    .open = source_open,
    .start = source_start,
    .pause = source_pause,
    .commit = source_commit,
    .release = source_release,
    .stop = source_stop,
    .close = source_close,
    .hold_limit_ms = source_hold_limit,
    .pause_partitions = source_pause_partitions,
    .ranges = source_ranges,
    .txn = &tl_mem_txn_ops,
};

/* ------------------------------------------------------------ test hooks */

/* Appends rec (owned) to a partition of topic name: its offset, or TL_ENOMEM. */
static int64_t push_record(const char *name, int32_t partition, tl_memory_record *rec)
{
    int64_t rc = TL_ENOMEM;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, true);
    if (t && tl_mem_topic_grow_locked(t, (size_t)partition + 1) == 0) {
        mem_part *p = &t->parts[partition];
        if (p->n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 16;
            tl_memory_record **log = realloc(p->log, cap * sizeof(*log));
            if (log) {
                p->log = log;
                p->cap = cap;
            }
        }
        if (p->n < p->cap) {
            p->log[p->n++] = rec;
            rc = p->base + (int64_t)p->n - 1;
            rec = NULL;
            if (t->src)
                pthread_cond_signal(&t->src->wake);
        }
    }
    pthread_mutex_unlock(&tl_mem_lock);
    free(rec);
    return rc;
}

int64_t tl_memory_push_dated(const char *name, int32_t partition, const tl_out_msg *msg,
                             int64_t timestamp_ms)
{
    if (!name || !msg || partition < 0 || partition >= TL_MEMORY_MAX_PARTITIONS)
        return TL_EINVAL;
    tl_memory_record *rec = tl_mem_record_new(msg);
    if (!rec)
        return TL_ENOMEM;
    if (timestamp_ms > 0)
        rec->timestamp_ms = timestamp_ms;
    return push_record(name, partition, rec);
}

int64_t tl_memory_push_msg(const char *name, int32_t partition, const tl_out_msg *msg)
{
    return tl_memory_push_dated(name, partition, msg, 0);
}

int64_t tl_memory_push(const char *name, int32_t partition, const char *key, const void *payload,
                       size_t len)
{
    tl_out_msg m = {payload, len, key, key ? strlen(key) : 0, NULL, 0};
    return tl_memory_push_msg(name, partition, &m);
}

int64_t tl_memory_committed(const char *name, int32_t partition)
{
    int64_t off = -1;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    if (t && partition >= 0 && (size_t)partition < t->nparts)
        off = t->parts[partition].committed;
    pthread_mutex_unlock(&tl_mem_lock);
    return off;
}

int tl_memory_lose_commits(const char *name, bool lose)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, true);
    if (t)
        t->lose_commits = lose;
    pthread_mutex_unlock(&tl_mem_lock);
    return t ? 0 : TL_ENOMEM;
}

size_t tl_memory_outstanding(const char *name)
{
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    size_t n = t ? t->outstanding : 0;
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}

size_t tl_memory_pending(const char *name)
{
    size_t n = 0;
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    for (size_t i = 0; t && i < t->nparts; i++) {
        const mem_part *p = &t->parts[i];
        int64_t end = p->base + (int64_t)p->n;
        n += p->position < end ? (size_t)(end - p->position) : 0;
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return n;
}

/* Queues a request on the topic's source thread and waits for it to be handled. */
static int request_and_wait(const char *name, int32_t partition, bool revoke, bool lost)
{
    request r = {.revoke = revoke, .lost = lost, .partition = partition};
    pthread_mutex_lock(&tl_mem_lock);
    mem_topic *t = tl_mem_topic_locked(name, false);
    tl_source *src = t ? t->src : NULL;
    if (!src || src->stopping) {
        pthread_mutex_unlock(&tl_mem_lock);
        return src ? TL_ECLOSED : TL_ENOTFOUND;
    }
    request **tail = &src->requests;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &r;
    pthread_cond_signal(&src->wake);
    /* src may be freed while we wait; only r (ours) and the global cond are touched. */
    while (!r.done)
        pthread_cond_wait(&tl_mem_request_done, &tl_mem_lock);
    pthread_mutex_unlock(&tl_mem_lock);
    return r.result;
}

int tl_memory_revoke(const char *name, int32_t partition)
{
    return request_and_wait(name, partition, true, false);
}

int tl_memory_lose(const char *name, int32_t partition)
{
    return request_and_wait(name, partition, true, true);
}

int tl_memory_assign(const char *name, int32_t partition)
{
    return request_and_wait(name, partition, false, false);
}
