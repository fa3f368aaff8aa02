/*
 * The Kafka source: librdkafka's high-level consumer behind tl_source_ops.
 *
 * Thread rules:
 *  - open, start, pause, commit, stop and close come from the loop thread (adapter.h);
 *    release may come from any thread: it pushes the wrapper onto `released`, and the
 *    poll thread destroys the librdkafka message before its next poll (stop and close
 *    do it once the poll thread has ended). The loop thread, which releases nearly
 *    every message, so never pays for rd_kafka_message_destroy and its free().
 *  - One poll thread of the source's own calls rd_kafka_consumer_poll. librdkafka runs
 *    the rebalance and error callbacks inside that call, so deliver, assigned, revoked
 *    and error are all raised from the poll thread, one at a time.
 *  - `lock` guards `paused` and makes pause() and the rebalance callback's
 *    assign-then-route one step each, so a partition assigned while paused never delivers.
 *  - `running` and `closing` are written by the loop thread and read by the poll thread.
 *
 * Pausing does not use rd_kafka_pause_partitions: its version barrier makes librdkafka
 * drop, as outdated, a fetch-start op of an assignment that the pause or resume
 * overtakes (librdkafka #2190), and that partition then never fetches; the consumer
 * sits idle for good. A broker restart that ends a long hold (the runtime pauses then)
 * with a lost assignment and a new one hit exactly that. Instead pause() forwards the
 * assigned partitions' fetch queues to a private parking queue: the fetcher keeps what
 * it has and stops once the parking queue holds as much as the consumer queue may
 * (queued.min.messages, queued.max.messages.kbytes), and nothing fetched is thrown
 * away. Resuming forwards the parking queue, then the partitions, back to the consumer
 * queue, in that order, so each partition stays in order. librdkafka clears a forward
 * when its partition stops and leaves one the application set alone when it starts:
 * so every assignment routes its partitions itself, to the parking queue or the
 * consumer queue. While paused the poll thread goes on polling (a member that does
 * not poll leaves its group) and stashes what the consumer queue still held, a
 * pointer each, to deliver it first on resume; stashed messages of revoked partitions
 * are dropped, uncommitted, for the next owner.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/kafka.h>

#include "kafka_conf.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 1000000
#define DEFAULT_POLL_MS 100
#define MAX_POLL_MS 60000
#define DEFAULT_QUEUED_MIN "1000000"
#define HOLD_LIMIT_MAX_MS 10000

/* A delivered message: the tl_msg points into rkm, which this wrapper keeps alive. */
/* Headers a wrapper holds in itself; messages with more get an array of their own. */
#define KMSG_HEADERS 4

typedef struct kmsg {
    tl_msg msg; /* first, so release() can map a tl_msg back */
    rd_kafka_message_t *rkm;
    struct kmsg *next_released;
    tl_header *hdrs; /* inline, or allocated when there are more */
    tl_header inline_hdrs[KMSG_HEADERS];
} kmsg;

struct tl_source {
    rd_kafka_t *rk;
    tl_source_events ev;
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_queue_t *queue;    /* the consumer queue, for batch reads */
    tl_msg **batch;             /* poll thread only */
    rd_kafka_message_t **taken; /* poll thread only: one batch read */
    size_t batch_max;
    int poll_ms;
    int64_t hold_limit_ms; /* see src_hold_limit */
    pthread_t thread;
    bool started, stopped;
    atomic_bool running;
    atomic_bool closing;      /* stop() is closing the consumer: no revoked events */
    tl_recycler *wrappers;    /* kmsg blocks: the poll thread's */
    _Atomic(kmsg *) released; /* released wrappers whose message is not destroyed yet */
    pthread_mutex_t lock;
    bool paused;               /* guarded by lock */
    atomic_bool stashing;      /* paused, as the poll thread reads it */
    rd_kafka_queue_t *parking; /* where paused partitions' fetches go */
    /* Poll thread only (the loop's once it ended): messages taken while paused,
     * delivered from stash_at on. */
    rd_kafka_message_t **stash;
    size_t stash_at, stash_n, stash_cap;
};

/* ---------------------------------------------------------------- events */

static void emit_error(tl_source *s, int err, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void emit_error(tl_source *s, int err, bool fatal, const char *fmt, ...)
{
    if (!s->ev.error)
        return;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    s->ev.error(s->ev.rt, s, err, fatal, what);
}

/* Events take topic/partition pairs; the topic names stay owned by list. */
static tl_partition *to_parts(const rd_kafka_topic_partition_list_t *list)
{
    tl_partition *parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    for (int i = 0; parts && i < list->cnt; i++) {
        parts[i].topic = list->elems[i].topic;
        parts[i].partition = list->elems[i].partition;
    }
    return parts;
}

static void emit_parts(tl_source *s, const rd_kafka_topic_partition_list_t *list, bool revoke)
{
    void (*cb)(void *, tl_source *, const tl_partition *, size_t) =
        revoke ? s->ev.revoked : s->ev.assigned;
    if (!cb || list->cnt == 0)
        return;
    tl_partition *parts = to_parts(list);
    if (!parts) {
        emit_error(s, TL_ENOMEM, true, "kafka: no memory to report a rebalance");
        return;
    }
    cb(s->ev.rt, s, parts, (size_t)list->cnt);
    free(parts);
}

/* ---------------------------------------------------------------- callbacks */

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    tl_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        emit_error(s, TL_EIO, true, "kafka fatal %s: %s", rd_kafka_err2name(orig), why);
        return;
    }
    emit_error(s, tl_kafka_err(err), false, "kafka %s: %s", rd_kafka_err2name(err), reason);
}

/* Lock held: forwards the partitions' fetch queues to `to` (see the top). */
static void route_locked(tl_source *s, const rd_kafka_topic_partition_list_t *parts,
                         rd_kafka_queue_t *to)
{
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        rd_kafka_queue_t *q = rd_kafka_queue_get_partition(s->rk, p->topic, p->partition);
        if (!q)
            continue;
        rd_kafka_queue_forward(q, to);
        rd_kafka_queue_destroy(q);
    }
}

/* Lock held: parks the assigned partitions, or sends what was parked, then the
 * partitions, to the consumer queue. */
static void set_paused_locked(tl_source *s, bool paused)
{
    if (paused == s->paused)
        return;
    s->paused = paused;
    atomic_store(&s->stashing, paused);
    /* The parking queue is empty here: a resume forwarded all it had, and since. */
    rd_kafka_queue_forward(s->parking, paused ? NULL : s->queue);
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(s->rk, &a) == 0)
        route_locked(s, a, paused ? s->parking : s->queue);
    if (a)
        rd_kafka_topic_partition_list_destroy(a);
}

static void on_assign(tl_source *s, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = 0;
    pthread_mutex_lock(&s->lock);
    if (coop)
        error = rd_kafka_incremental_assign(s->rk, parts);
    else
        err = rd_kafka_assign(s->rk, parts);
    if (!error && !err)
        route_locked(s, parts, s->paused ? s->parking : s->queue);
    pthread_mutex_unlock(&s->lock);
    if (error || err) {
        emit_error(s, TL_EIO, true, "kafka assign: %s",
                   error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
        rd_kafka_error_destroy(error);
        return;
    }
    emit_parts(s, parts, false);
}

/*
 * The runtime drains and stores offsets inside revoked(); committing before the
 * unassign makes them durable while the partitions are still ours, so the next owner
 * starts exactly after what was settled. Lost partitions belong to someone else
 * already: committing would be refused, so only the runtime is told.
 */
static void unstash_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts);

static void on_revoke(tl_source *s, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    bool lost = rd_kafka_assignment_lost(s->rk);
    unstash_revoked(s, parts);
    /* During stop() the runtime has drained already and waits in stop() itself. */
    if (!atomic_load(&s->closing))
        emit_parts(s, parts, true);
    if (!lost) {
        /* NULL commits every stored offset of the assignment, these included. */
        rd_kafka_resp_err_t err = rd_kafka_commit(s->rk, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            emit_error(s, tl_kafka_err(err), false, "kafka commit on revoke: %s",
                       rd_kafka_err2str(err));
    }
    rd_kafka_error_t *error = NULL;
    if (coop)
        error = rd_kafka_incremental_unassign(s->rk, parts);
    else
        rd_kafka_assign(s->rk, NULL);
    if (error) {
        emit_error(s, TL_EIO, false, "kafka unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    tl_source *s = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(s, parts, coop);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(s, parts, coop);
    } else {
        emit_error(s, TL_EIO, false, "kafka rebalance: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

/* ---------------------------------------------------------------- delivery */

static kmsg *wrap(tl_source *s, rd_kafka_message_t *rkm)
{
    rd_kafka_headers_t *hs = NULL;
    size_t nh = rd_kafka_message_headers(rkm, &hs) ? 0 : rd_kafka_header_cnt(hs);
    kmsg *k = tl_recycler_get(s->wrappers);
    if (!k)
        return NULL;
    k->hdrs = nh <= KMSG_HEADERS ? k->inline_hdrs : malloc(nh * sizeof(tl_header));
    if (!k->hdrs) {
        tl_recycler_put(s->wrappers, k);
        return NULL;
    }
    for (size_t i = 0; i < nh; i++) {
        const void *v = NULL;
        size_t len = 0;
        rd_kafka_header_get_all(hs, i, &k->hdrs[i].name, &v, &len);
        k->hdrs[i].value = v;
        k->hdrs[i].len = len;
    }
    k->rkm = rkm;
    k->msg = (tl_msg){
        .payload = rkm->payload,
        .len = rkm->len,
        .key = rkm->key,
        .key_len = rkm->key_len,
        .headers = nh ? k->hdrs : NULL,
        .nheaders = nh,
        .origin = rd_kafka_topic_name(rkm->rkt),
        .partition = rkm->partition,
        .offset = rkm->offset,
        .timestamp_ms = rd_kafka_message_timestamp(rkm, NULL),
        .handle = rkm,
    };
    return k;
}

static void consumer_error(tl_source *s, rd_kafka_message_t *rkm)
{
    rd_kafka_resp_err_t err = rkm->err;
    /* EOF is informational: nothing is wrong and consumption goes on. */
    if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        on_error(s->rk, err, "", s);
        return;
    }
    if (rkm->rkt)
        emit_error(s, tl_kafka_err(err), false, "kafka %s [%d]: %s", rd_kafka_topic_name(rkm->rkt),
                   (int)rkm->partition, rd_kafka_message_errstr(rkm));
    else
        emit_error(s, tl_kafka_err(err), false, "kafka consumer: %s", rd_kafka_message_errstr(rkm));
}

/* Takes rkm; returns true when it joined the batch. */
static bool take(tl_source *s, rd_kafka_message_t *rkm, size_t *n)
{
    if (rkm->err) {
        consumer_error(s, rkm);
        rd_kafka_message_destroy(rkm);
        return false;
    }
    kmsg *k = wrap(s, rkm);
    if (!k) {
        /* Skipping it would let a later commit pass over it: stop the service instead. */
        emit_error(s, TL_ENOMEM, true, "kafka %s [%d] offset %lld: no memory to deliver",
                   rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, (long long)rkm->offset);
        rd_kafka_message_destroy(rkm);
        return false;
    }
    s->batch[(*n)++] = &k->msg;
    return true;
}

/* Poll thread, while paused: keeps rkm for after the resume. */
static void stash(tl_source *s, rd_kafka_message_t *rkm)
{
    if (s->stash_n == s->stash_cap) {
        size_t cap = s->stash_cap ? 2 * s->stash_cap : 1024;
        rd_kafka_message_t **p = realloc(s->stash, cap * sizeof(*p));
        if (!p) {
            emit_error(s, TL_ENOMEM, true, "kafka %s [%d] offset %lld: no memory to keep it",
                       rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, (long long)rkm->offset);
            rd_kafka_message_destroy(rkm);
            return;
        }
        s->stash = p;
        s->stash_cap = cap;
    }
    s->stash[s->stash_n++] = rkm;
}

/* Poll thread: takes rkm into the batch, or into the stash while paused. */
static void take_or_stash(tl_source *s, rd_kafka_message_t *rkm, size_t *n, bool paused)
{
    if (paused && !rkm->err)
        stash(s, rkm);
    else
        take(s, rkm, n);
}

/* Poll thread: moves up to batch_max stashed messages, oldest first, into the batch. */
static size_t unstash(tl_source *s)
{
    size_t n = 0;
    while (s->stash_at < s->stash_n && n < s->batch_max)
        take(s, s->stash[s->stash_at++], &n);
    if (s->stash_at == s->stash_n)
        s->stash_at = s->stash_n = 0;
    return n;
}

/* Stashed messages of revoked partitions go: never delivered, so never committed. */
static void unstash_revoked(tl_source *s, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = s->stash_at;
    for (size_t i = s->stash_at; i < s->stash_n; i++) {
        rd_kafka_message_t *m = s->stash[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition))
            rd_kafka_message_destroy(m);
        else
            s->stash[keep++] = m;
    }
    s->stash_n = keep;
}

static void src_release(tl_source *s, tl_msg *msg);

/* Destroys the messages of released wrappers and recycles the wrappers. The poll
 * thread only, or the loop thread once the poll thread has ended: the recycler's. */
static void destroy_released(tl_source *s)
{
    kmsg *k = atomic_exchange_explicit(&s->released, NULL, memory_order_acquire);
    while (k) {
        kmsg *next = k->next_released;
        if (next)
            __builtin_prefetch(next->rkm);
        rd_kafka_message_destroy(k->rkm);
        if (k->hdrs != k->inline_hdrs)
            free(k->hdrs);
        tl_recycler_put_owned(s->wrappers, k);
        k = next;
    }
}

static void deliver(tl_source *s, size_t n)
{
    if (s->ev.deliver) {
        s->ev.deliver(s->ev.rt, s, s->batch, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        src_release(s, s->batch[i]);
}

/*
 * Waits for one message, then takes whatever else is ready, up to batch_max. The rest
 * comes in batch reads that do not wait: one queue lock and one poll timestamp for many
 * messages (rd_kafka_consumer_poll takes both per message). Rebalance and error
 * callbacks are served inside either call.
 */
static void *poll_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-kafka-source"); /* for top -H, perf, gdb */
    tl_source *s = arg;
    while (atomic_load(&s->running)) {
        size_t n = 0;
        destroy_released(s);
        bool paused = atomic_load(&s->stashing);
        if (!paused && s->stash_at < s->stash_n) {
            /* Stashed while paused, so older than anything queued: first out. */
            n = unstash(s);
            if (n > 0)
                deliver(s, n);
            continue;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(s->rk, s->poll_ms);
        if (rkm)
            take_or_stash(s, rkm, &n, paused);
        while (rkm && n < s->batch_max && atomic_load(&s->running)) {
            ssize_t got = rd_kafka_consume_batch_queue(s->queue, 0, s->taken, s->batch_max - n);
            for (ssize_t i = 0; i < got; i++) {
                /* librdkafka's thread wrote each message on another core: overlap the
                 * loads of the next few with this one's wrapping. */
                if (i + 4 < got)
                    __builtin_prefetch(s->taken[i + 4]);
                take_or_stash(s, s->taken[i], &n, paused);
            }
            if (got <= 0)
                break;
        }
        if (n > 0)
            deliver(s, n);
    }
    return NULL;
}

/* ---------------------------------------------------------------- ops */

static int check_params(const tl_params *p, char *err, size_t errlen)
{
    const tl_param_value *topics = tl_params_get(p, "topics");
    if (!tl_params_str(p, "group", NULL)) {
        tl_kafka_errf(err, errlen, "group: required");
        return TL_ECONFIG;
    }
    if (!topics || topics->type != TL_PARAM_LIST || topics->nlist == 0) {
        tl_kafka_errf(err, errlen, "topics: a non-empty list is required");
        return TL_ECONFIG;
    }
    int64_t batch = tl_params_num(p, "batch", DEFAULT_BATCH);
    int64_t poll = tl_params_num(p, "poll_timeout", DEFAULT_POLL_MS);
    if (batch < 1 || batch > MAX_BATCH) {
        tl_kafka_errf(err, errlen, "batch: %lld is out of 1..%d", (long long)batch, MAX_BATCH);
        return TL_ECONFIG;
    }
    if (poll < 0 || poll > MAX_POLL_MS) {
        tl_kafka_errf(err, errlen, "poll_timeout: %lldms is out of 0..%dms", (long long)poll,
                      MAX_POLL_MS);
        return TL_ECONFIG;
    }
    return 0;
}

/* The runtime stores offsets itself: librdkafka storing them would commit unsettled work. */
static int consumer_conf(const tl_params *p, tl_source *s, rd_kafka_conf_t **out, char *err,
                         size_t errlen)
{
    rd_kafka_conf_t *conf;
    int rc = tl_kafka_conf_new(p, &conf, err, errlen);
    if (rc)
        return rc;
    const char *store = tl_kafka_conf_user(p, "enable.auto.offset.store");
    char val[16] = "";
    size_t vlen = sizeof(val);
    if (store && rd_kafka_conf_get(conf, "enable.auto.offset.store", val, &vlen) == 0 &&
        strcmp(val, "true") == 0) {
        tl_kafka_errf(err, errlen,
                      "kafka property enable.auto.offset.store: must stay false; "
                      "taskloop stores offsets of settled messages itself");
        rd_kafka_conf_destroy(conf);
        return TL_ECONFIG;
    }
    rc = tl_kafka_conf_set(conf, "group.id", tl_params_str(p, "group", ""), err, errlen);
    if (!rc)
        rc = tl_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen);
    /*
     * librdkafka 2.0 stops fetching once the consumer queue holds queued.min.messages
     * (100000, counted over all partitions) and looks again only a second later. A
     * consumer that takes messages slower than the broker sends them then drains the
     * queue in a fraction of that second and waits out the rest (bench/README.md). A
     * deeper queue bridges the second; queued.max.messages.kbytes still bounds it.
     */
    if (!rc && !tl_kafka_conf_user(p, "queued.min.messages"))
        rc = tl_kafka_conf_set(conf, "queued.min.messages", DEFAULT_QUEUED_MIN, err, errlen);
    /* Stored offsets reach the broker at this interval: what settled in the last one
     * is delivered again after a crash, so keep it short (librdkafka's is 5 s). */
    if (!rc && !tl_kafka_conf_user(p, "auto.commit.interval.ms"))
        rc = tl_kafka_conf_set(conf, "auto.commit.interval.ms", "100", err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    char poll_iv[32] = "";
    size_t plen = sizeof(poll_iv);
    s->hold_limit_ms = HOLD_LIMIT_MAX_MS;
    if (rd_kafka_conf_get(conf, "max.poll.interval.ms", poll_iv, &plen) == RD_KAFKA_CONF_OK) {
        int64_t half = strtoll(poll_iv, NULL, 10) / 2;
        if (half < s->hold_limit_ms)
            s->hold_limit_ms = half > 0 ? half : 1;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, s);
    *out = conf;
    return 0;
}

static void src_free(tl_source *s)
{
    if (s->topics)
        rd_kafka_topic_partition_list_destroy(s->topics);
    pthread_mutex_destroy(&s->lock);
    tl_recycler_free(s->wrappers);
    free(s->batch);
    free(s->taken);
    free(s->stash);
    free(s);
}

static int src_init(const tl_params *p, const tl_source_events *ev, tl_source *s)
{
    const tl_param_value *topics = tl_params_get(p, "topics");
    if (ev)
        s->ev = *ev;
    s->batch_max = (size_t)tl_params_num(p, "batch", DEFAULT_BATCH);
    s->poll_ms = (int)tl_params_num(p, "poll_timeout", DEFAULT_POLL_MS);
    pthread_mutex_init(&s->lock, NULL);
    s->batch = calloc(s->batch_max, sizeof(*s->batch));
    s->taken = calloc(s->batch_max, sizeof(*s->taken));
    s->topics = rd_kafka_topic_partition_list_new((int)topics->nlist);
    if (!s->batch || !s->taken || !s->topics || tl_recycler_new(sizeof(kmsg), &s->wrappers) != 0)
        return TL_ENOMEM;
    for (size_t i = 0; i < topics->nlist; i++)
        rd_kafka_topic_partition_list_add(s->topics, topics->list[i], RD_KAFKA_PARTITION_UA);
    return 0;
}

static int src_open(const tl_params *p, const tl_source_events *ev, tl_source **out, char *err,
                    size_t errlen)
{
    int rc = check_params(p, err, errlen);
    if (rc)
        return rc;
    tl_source *s = calloc(1, sizeof(*s));
    if (!s)
        return TL_ENOMEM;
    rd_kafka_conf_t *conf = NULL;
    rc = src_init(p, ev, s);
    if (!rc)
        rc = consumer_conf(p, s, &conf, err, errlen);
    if (rc)
        goto fail;
    char why[512];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!s->rk) { /* conf is still ours when rd_kafka_new fails */
        rd_kafka_conf_destroy(conf);
        tl_kafka_errf(err, errlen, "kafka consumer: %s", why);
        rc = TL_ECONFIG;
        goto fail;
    }
    /* Rebalance and error callbacks then run inside rd_kafka_consumer_poll. */
    rd_kafka_poll_set_consumer(s->rk);
    s->queue = rd_kafka_queue_get_consumer(s->rk);
    s->parking = rd_kafka_queue_new(s->rk);
    if (!s->queue) { /* only a consumer without group.id has none, and group is required */
        rd_kafka_queue_destroy(s->parking);
        rd_kafka_destroy(s->rk);
        tl_kafka_errf(err, errlen, "kafka consumer: no consumer queue");
        rc = TL_ECONFIG;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    src_free(s);
    return rc;
}

static int src_start(tl_source *s)
{
    if (s->started || s->stopped)
        return TL_EINVAL;
    rd_kafka_resp_err_t err = rd_kafka_subscribe(s->rk, s->topics);
    if (err)
        return tl_kafka_err(err);
    atomic_store(&s->running, true);
    if (pthread_create(&s->thread, NULL, poll_main, s) != 0) {
        atomic_store(&s->running, false);
        rd_kafka_unsubscribe(s->rk);
        return TL_ESYS;
    }
    s->started = true;
    return 0;
}

/* Polling goes on while paused: the group only sees a live member if we keep polling.
 * Nothing is delivered until the resume (see the top: parking queue and stash). */
static void src_pause(tl_source *s, bool paused)
{
    pthread_mutex_lock(&s->lock);
    set_paused_locked(s, paused);
    pthread_mutex_unlock(&s->lock);
}

/* From librdkafka's cached watermarks (no broker round trip): the high watermark
 * minus the consumer's position, for every assigned partition with both known. */
static size_t src_lag(tl_source *s, tl_partition_lag *out, size_t cap)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(s->rk, &a) != 0 || !a)
        return 0;
    rd_kafka_position(s->rk, a);
    size_t n = 0;
    for (int i = 0; i < a->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &a->elems[i];
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(s->rk, tp->topic, tp->partition, &lo, &hi) != 0 ||
            hi < 0 || tp->offset < 0)
            continue;
        if (n < cap) {
            snprintf(out[n].topic, sizeof(out[n].topic), "%s", tp->topic);
            out[n].partition = tp->partition;
            out[n].lag = hi > tp->offset ? hi - tp->offset : 0;
        }
        n++;
    }
    rd_kafka_topic_partition_list_destroy(a);
    return n;
}

static int src_commit(tl_source *s, const char *topic, int32_t partition, int64_t next_offset)
{
    if (!topic || partition < 0 || next_offset < 0)
        return TL_EINVAL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return TL_ENOMEM;
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    /* Refused (_STATE) for a partition not assigned here: librdkafka would not commit it. */
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(s->rk, l);
    if (!err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    return tl_kafka_err(err);
}

static void src_release(tl_source *s, tl_msg *msg)
{
    if (!msg)
        return;
    kmsg *k = (kmsg *)msg;
    kmsg *head = atomic_load_explicit(&s->released, memory_order_relaxed);
    do {
        k->next_released = head;
    } while (!atomic_compare_exchange_weak_explicit(&s->released, &head, k, memory_order_release,
                                                    memory_order_relaxed));
}

/*
 * The poll thread waits in deliver while backpressure holds its batches, and a member
 * that does not poll within max.poll.interval.ms leaves its group: half of that, so
 * the runtime pauses the source in time. At most 10 s, since a rebalance another
 * member starts waits for this one to poll too.
 */
static int64_t src_hold_limit(tl_source *s)
{
    return s->hold_limit_ms;
}

static void src_stop(tl_source *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    if (s->started) {
        atomic_store(&s->running, false);
        pthread_join(s->thread, NULL);
    }
    destroy_released(s);
    /* Never delivered, so never committed: the group delivers them again. */
    for (size_t i = s->stash_at; i < s->stash_n; i++)
        rd_kafka_message_destroy(s->stash[i]);
    s->stash_at = s->stash_n = 0;
    /* Closing with every fetch queue forwarded as librdkafka set it up. */
    pthread_mutex_lock(&s->lock);
    set_paused_locked(s, false);
    pthread_mutex_unlock(&s->lock);
    atomic_store(&s->closing, true);
    rd_kafka_resp_err_t err = rd_kafka_commit(s->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        emit_error(s, tl_kafka_err(err), false, "kafka final commit: %s", rd_kafka_err2str(err));
    /* Leaves the group now rather than after session.timeout.ms. */
    err = rd_kafka_consumer_close(s->rk);
    if (err)
        emit_error(s, tl_kafka_err(err), false, "kafka close: %s", rd_kafka_err2str(err));
}

static void src_close(tl_source *s)
{
    if (!s)
        return;
    src_stop(s);
    destroy_released(s); /* released after stop: rd_kafka_destroy waits for every message */
    if (s->queue)
        rd_kafka_queue_destroy(s->queue);
    if (s->parking)
        rd_kafka_queue_destroy(s->parking);
    rd_kafka_destroy(s->rk);
    src_free(s);
}

static const tl_param source_params[] = {
    {"brokers", TL_PARAM_STRING, false, false,
     "bootstrap servers host:port,...; required unless mock is set"},
    {"group", TL_PARAM_STRING, true, false, "consumer group id"},
    {"topics", TL_PARAM_LIST, true, false, "topics to subscribe to"},
    {"kafka", TL_PARAM_MAP, false, true, "librdkafka properties, passed through unchanged"},
    {"batch", TL_PARAM_INT, false, false, "most messages per delivery (default 1000)"},
    {"poll_timeout", TL_PARAM_DURATION, false, false, "longest wait in one poll (default 100ms)"},
    {"mock", TL_PARAM_INT, false, false,
     "brokers of a private in-process mock cluster (test.mock.num.brokers); 0 = off"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

const tl_source_ops tl_kafka_source_ops = {
    .type = "kafka",
    .params = source_params,
    .at_least_once = true,
    .open = src_open,
    .start = src_start,
    .pause = src_pause,
    .commit = src_commit,
    .release = src_release,
    .stop = src_stop,
    .close = src_close,
    .lag = src_lag,
    .hold_limit_ms = src_hold_limit,
};
