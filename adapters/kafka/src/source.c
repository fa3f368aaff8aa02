/*
 * The Kafka source: librdkafka's high-level consumer behind tl_source_ops. The ops and
 * the poll thread are here; the rest is split by concern, each file calling only those
 * after it: rebalance.c (the rebalance callback), pause.c (parking and stashing while
 * paused; why the source does not use librdkafka's pause is told there), deliver.c
 * (wrapping messages, releasing them, reporting errors). kafka_source.h has what they
 * share.
 *
 * Thread rules, for all four files:
 *  - open, start, pause, commit, stop and close come from the loop thread (adapter.h);
 *    release may come from any thread: it pushes the wrapper onto `released`, and the
 *    poll thread destroys the librdkafka message before its next poll (stop and close
 *    do it once the poll thread has ended). The loop thread, which releases nearly
 *    every message, so never pays for rd_kafka_message_destroy and its free().
 *  - One poll thread of the source's own calls rd_kafka_consumer_poll. librdkafka runs
 *    the rebalance callback inside that call, so deliver, assigned and revoked are all
 *    raised from the poll thread, one at a time. (stop() closes the consumer, which
 *    runs the callback too, on the loop thread once the poll thread has ended.)
 *  - A commit thread calls rd_kafka_poll for the main queue: the error and the offset
 *    commit callbacks run there, raising error and committed.
 *  - `lock` guards `paused` and makes pause() and the rebalance callback's
 *    assign-then-route one step each, so a partition assigned while paused never delivers.
 *  - `running` and `closing` are written by the loop thread and read by the poll thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_source.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 1000000
#define DEFAULT_POLL_MS 100
#define MAX_POLL_MS 60000
#define DEFAULT_QUEUED_MIN "1000000"
#define HOLD_LIMIT_MAX_MS 1000
#define DEFAULT_COMMIT_MS "50"

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
        s->nbatch = 0;
        tl_kafka_src_destroy_released(s);
        bool paused = atomic_load(&s->stashing);
        if (!paused && s->stash_at < s->stash_n) {
            /* Stashed while paused, so older than anything queued: first out. */
            s->nbatch = tl_kafka_src_unstash(s);
            if (s->nbatch > 0)
                tl_kafka_src_deliver(s, s->nbatch);
            continue;
        }
        /* A rebalance callback may run inside either call, between messages taken
         * into the batch: on_revoke takes those of revoked partitions out again. */
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(s->rk, s->poll_ms);
        if (rkm)
            tl_kafka_src_take_or_stash(s, rkm, &s->nbatch, paused);
        while (rkm && s->nbatch < s->batch_max && atomic_load(&s->running)) {
            ssize_t got =
                rd_kafka_consume_batch_queue(s->queue, 0, s->taken, s->batch_max - s->nbatch);
            for (ssize_t i = 0; i < got; i++) {
                /* librdkafka's thread wrote each message on another core: overlap the
                 * loads of the next few with this one's wrapping. */
                if (i + 4 < got)
                    __builtin_prefetch(s->taken[i + 4]);
                tl_kafka_src_take_or_stash(s, s->taken[i], &s->nbatch, paused);
            }
            if (got <= 0)
                break;
        }
        if (s->nbatch > 0)
            tl_kafka_src_deliver(s, s->nbatch);
    }
    s->nbatch = 0;
    return NULL;
}

/* ---------------------------------------------------------------- ops */

static const tl_param source_params[] = {
    {"brokers", TL_PARAM_STRING, false, false,
     "bootstrap servers host:port,...; required unless mock is set"},
    {"group", TL_PARAM_STRING, true, false, "consumer group id"},
    {"topics", TL_PARAM_LIST, true, false, "topics to subscribe to"},
    {"kafka", TL_PARAM_MAP, false, true, "librdkafka properties, passed through unchanged"},
    {"batch", TL_PARAM_INT, false, false, "most messages per delivery (default 1000)"},
    {"poll_timeout", TL_PARAM_DURATION, false, false, "longest wait in one poll (default 100ms)"},
    {"transactional_id", TL_PARAM_STRING, false, false,
     "delivery: exactly_once only: names the route's two transactional producers (ID-0 and "
     "ID-1; default GROUP-HOSTNAME); the same across restarts of one instance, unique "
     "among instances"},
    {"mock", TL_PARAM_INT, false, false,
     "brokers of a private in-process mock cluster (test.mock.num.brokers); 0 = off"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

static const tl_param_range source_ranges[] = {
    {"batch", 1, MAX_BATCH},
    {"poll_timeout", 0, MAX_POLL_MS},
    {"mock", 0, TL_KAFKA_MAX_MOCK},
    {NULL, 0, 0},
};

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
    char why[512];
    if (tl_params_check_ranges(source_params, source_ranges, p, why, sizeof(why))) {
        tl_kafka_errf(err, errlen, "%s", why);
        return TL_ECONFIG;
    }
    for (size_t i = 0; i < topics->nlist; i++)
        if (topics->list[i][0] != '^' && tl_kafka_topic_check(topics->list[i], why, sizeof(why))) {
            tl_kafka_errf(err, errlen, "topics: item %zu: %s", i + 1, why);
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
    const char *owned = tl_kafka_owned_why(p, conf);
    if (owned) {
        tl_kafka_errf(err, errlen, "kafka property %s", owned);
        rd_kafka_conf_destroy(conf);
        return TL_ECONFIG;
    }
    rc = tl_kafka_conf_set(conf, "group.id", tl_params_str(p, "group", ""), err, errlen);
    if (!rc)
        rc = tl_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen);
    /* librdkafka commits the stored offsets on its timer, which pauses while the group
     * rebalances (a commit with a generation in flux would be refused and lose the
     * assignment). Its results free the runtime's window (acks.c), so the interval is
     * short: the window must hold what settles in one. */
    if (!rc && !tl_kafka_conf_user(p, "auto.commit.interval.ms"))
        rc = tl_kafka_conf_set(conf, "auto.commit.interval.ms", DEFAULT_COMMIT_MS, err, errlen);
    /*
     * librdkafka 2.0 stops fetching once the consumer queue holds queued.min.messages
     * (100000, counted over all partitions) and looks again only a second later. A
     * consumer that takes messages slower than the broker sends them then drains the
     * queue in a fraction of that second and waits out the rest (bench/README.md). A
     * deeper queue bridges the second; queued.max.messages.kbytes still bounds it.
     */
    if (!rc && !tl_kafka_conf_user(p, "queued.min.messages"))
        rc = tl_kafka_conf_set(conf, "queued.min.messages", DEFAULT_QUEUED_MIN, err, errlen);
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
    rd_kafka_conf_set_rebalance_cb(conf, tl_kafka_src_on_rebalance);
    rd_kafka_conf_set_error_cb(conf, tl_kafka_src_on_error);
    rd_kafka_conf_set_offset_commit_cb(conf, tl_kafka_src_on_commit);
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
    s->params = p;
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
    /* Rebalance callbacks run inside rd_kafka_consumer_poll; the main queue (commit
     * results, errors) is not forwarded to the consumer queue: commit_main serves it. */
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

/*
 * Serves librdkafka's main queue: the commit results (offset_commit_cb) and errors. A
 * thread of its own, not the poll thread: that one waits in deliver while backpressure
 * holds, which is exactly when the runtime waits for commit acknowledgements to free
 * its window.
 */
static void *commit_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-kafka-commit");
    tl_source *s = arg;
    while (atomic_load(&s->running))
        rd_kafka_poll(s->rk, 100);
    return NULL;
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
    if (pthread_create(&s->commit_thread, NULL, commit_main, s) != 0) {
        atomic_store(&s->running, false);
        pthread_join(s->thread, NULL);
        rd_kafka_unsubscribe(s->rk);
        return TL_ESYS;
    }
    s->started = true;
    return 0;
}

/* Polling goes on while paused: the group only sees a live member if we keep polling.
 * Nothing is delivered until the resume (see pause.c: parking queue and stash). */
static void src_pause(tl_source *s, bool paused)
{
    pthread_mutex_lock(&s->lock);
    tl_kafka_src_set_paused_locked(s, paused);
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

/*
 * The poll thread waits in deliver while backpressure holds its batches, and a member
 * that does not poll within max.poll.interval.ms leaves its group: half of that, so
 * the runtime pauses the source in time. At most 1 s, since a rebalance another
 * member starts waits for this one to poll too, and so do the commits that free the
 * window: while the group rebalances the broker refuses them, so a window full of
 * settled messages awaiting their acknowledgement waits for this member's poll.
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
        pthread_join(s->commit_thread, NULL);
    }
    tl_kafka_src_destroy_released(s);
    /* Never delivered, so never committed: the group delivers them again. */
    for (size_t i = s->stash_at; i < s->stash_n; i++)
        rd_kafka_message_destroy(s->stash[i]);
    s->stash_at = s->stash_n = 0;
    /* Closing with every fetch queue forwarded as librdkafka set it up. */
    pthread_mutex_lock(&s->lock);
    tl_kafka_src_set_paused_locked(s, false);
    pthread_mutex_unlock(&s->lock);
    atomic_store(&s->closing, true);
    /* With transactions the positions went in the last one (txn.c). */
    rd_kafka_resp_err_t err = s->txn ? 0 : rd_kafka_commit(s->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka final commit: %s",
                                rd_kafka_err2str(err));
    /* Leaves the group now rather than after session.timeout.ms. */
    err = rd_kafka_consumer_close(s->rk);
    if (err)
        tl_kafka_src_emit_error(s, tl_kafka_err(err), false, "kafka close: %s",
                                rd_kafka_err2str(err));
}

static void src_close(tl_source *s)
{
    if (!s)
        return;
    src_stop(s);
    /* Released after stop: rd_kafka_destroy waits for every message. */
    tl_kafka_src_destroy_released(s);
    if (s->queue)
        rd_kafka_queue_destroy(s->queue);
    if (s->parking)
        rd_kafka_queue_destroy(s->parking);
    tl_kafka_txn_close(s);
    rd_kafka_destroy(s->rk);
    src_free(s);
}

const tl_source_ops tl_kafka_source_ops = {
    .type = "kafka",
    .params = source_params,
    .at_least_once = true,
    .commit_acks = true,
    .open = src_open,
    .start = src_start,
    .pause = src_pause,
    .commit = src_commit,
    .release = tl_kafka_src_release,
    .stop = src_stop,
    .close = src_close,
    .lag = src_lag,
    .hold_limit_ms = src_hold_limit,
    .input = "topics",
    .ranges = source_ranges,
    .check = tl_kafka_source_check,
    .txn = &tl_kafka_txn_ops,
};
