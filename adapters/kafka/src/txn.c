/*
 * The Kafka source's transactions (tl_txn_ops, for `delivery: exactly_once`): two
 * transactional producers beside the consumer, which the route's sinks write through
 * (sink.c, tl_kafka_sink_open_txn), and a commit that sends the consumer's positions
 * into a transaction (with the group's metadata, so that a member of an older
 * generation is fenced) and commits it.
 *
 * Why two: Kafka runs one transaction at a time per producer, and a commit takes some
 * five round trips to the broker (bench/README.md, item 25). seal() turns the sends to
 * the other producer, whose transaction fills while the sealed one commits on the
 * runtime's committer thread; the next commit then finds the sends of its transaction
 * already written. Commits stay one after the other, in order.
 *
 * A service on several loops (loop.shards) asks for a context per loop: each has its
 * own pair of producers and commits the positions of its own partitions, with the
 * consumer's one group metadata (Kafka takes transactional offset commits of one group
 * from several producers, for disjoint partitions).
 *
 * The producers' transactional.ids are the source's `transactional_id` (by default
 * GROUP-HOSTNAME) with "-N": context k's two are N = 2k and 2k + 1 (so "-0" and "-1"
 * without shards). A restarted instance aborts at once what its previous life left open
 * (init_transactions fences the old producers), where fresh ids each start would leave
 * it to the broker's transaction timeout, holding back every read_committed consumer of
 * the topics it wrote meanwhile. A restart with fewer shards leaves the ids it no longer
 * uses to that timeout. Two instances running at once must differ.
 *
 * The consumer keeps librdkafka's isolation.level, read_committed (refused otherwise):
 * messages a crashed transaction wrote are never read. It commits nothing itself in
 * this mode: the runtime stores no offset (so its timer and stop() find none), and
 * the revoke path skips its commit (rebalance.c).
 *
 * Thread rules: enable runs before the loops; a context's seal, commit and its sinks'
 * sends run on its loop thread (commit also on the runtime's committer), contexts side
 * by side; each producer's poll thread serves its delivery reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_source.h"
#include "kafka_txn.h"

#define INIT_MS 30000   /* init_transactions: the coordinator found and fenced */
#define COMMIT_MS 30000 /* send_offsets_to_transaction and commit_transaction, each */
#define ABORT_MS 10000
#define RETRIES 3 /* of a call whose error says it may be retried */
#define POLL_MS 100
#define TXN_RETRY_BACKOFF_MS "2"
#define TXN_LINGER_MS "0"

static void *poll_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-kafka-txn"); /* for top -H, perf, gdb */
    struct tl_kafka_txn_poller *p = arg;
    while (atomic_load(&p->t->running))
        rd_kafka_poll(p->t->rk[p->i], POLL_MS);
    return NULL;
}

static void txn_free(tl_kafka_txn *t)
{
    atomic_store(&t->running, false);
    for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS; i++)
        if (t->pollers[i].started)
            pthread_join(t->pollers[i].thread, NULL);
    for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS; i++) {
        if (!t->rk[i])
            continue;
        /* What a failed commit or a stop before the end left open goes now, rather than
         * after the broker's transaction timeout. */
        if (t->open[i]) {
            rd_kafka_error_t *e = rd_kafka_abort_transaction(t->rk[i], ABORT_MS);
            if (e)
                rd_kafka_error_destroy(e);
        }
        rd_kafka_destroy(t->rk[i]);
    }
    free(t->id);
    free(t);
}

void tl_kafka_txn_close(tl_source *s)
{
    for (size_t k = 0; s->txn && k < s->ntxn; k++)
        if (s->txn[k])
            txn_free(s->txn[k]);
    free(s->txn);
    s->txn = NULL;
    s->ntxn = 0;
}

/* The transactional.id: the section's, or GROUP-HOSTNAME. */
static char *txn_id(const tl_params *p)
{
    const char *given = tl_params_str(p, "transactional_id", NULL);
    if (given)
        return strdup(given);
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    size_t len = strlen(tl_params_str(p, "group", "")) + strlen(host) + 2;
    char *id = malloc(len);
    if (id)
        snprintf(id, len, "%s-%s", tl_params_str(p, "group", ""), host);
    return id;
}

/* Writes what failed into err and says so; takes e. */
static int fail_with(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
    tl_kafka_errf(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return TL_EIO;
}

/* Producer i of context ctx: transactional.id ID-(2 ctx + i), initialised (the old one
 * of that id fenced). */
static int producer_new(tl_source *s, tl_kafka_txn *t, size_t ctx, int i, char *err, size_t errlen)
{
    char id[512];
    snprintf(id, sizeof(id), "%s-%zu", t->id, ctx * TL_KAFKA_TXN_PRODUCERS + (size_t)i);
    rd_kafka_conf_t *conf = NULL;
    int rc = tl_kafka_conf_new(s->params, &conf, err, errlen);
    if (!rc)
        rc = tl_kafka_conf_set(conf, "transactional.id", id, err, errlen);
    /* A transaction begun right after a commit finds the broker still writing the last
     * one's markers (CONCURRENT_TRANSACTIONS) and is retried after this backoff: at
     * librdkafka's 100 ms it was most of each commit's time. */
    if (!rc && !tl_kafka_conf_user(s->params, "retry.backoff.ms"))
        rc = tl_kafka_conf_set(conf, "retry.backoff.ms", TXN_RETRY_BACKOFF_MS, err, errlen);
    /* A transaction's sends go out at once: its commit waits for their acks, and
     * lingering for fuller batches made each commit that much later (bench/README.md,
     * item 25: 112-114k -> 136-146k msgs/s at 1,000-message transactions). */
    if (!rc && !tl_kafka_conf_user(s->params, "linger.ms"))
        rc = tl_kafka_conf_set(conf, "linger.ms", TXN_LINGER_MS, err, errlen);
    if (rc) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, tl_kafka_sink_on_delivery);
    char why[512];
    t->rk[i] = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!t->rk[i]) { /* conf is still ours when rd_kafka_new fails */
        rd_kafka_conf_destroy(conf);
        tl_kafka_errf(err, errlen, "kafka transactional producer: %s", why);
        return TL_ECONFIG;
    }
    rd_kafka_error_t *e = rd_kafka_init_transactions(t->rk[i], INIT_MS);
    if (e) {
        char what[600];
        snprintf(what, sizeof(what), "kafka init transactions (transactional.id %s)", id);
        return fail_with(e, what, err, errlen);
    }
    return 0;
}

/* Context ctx: its two producers initialised and polled. */
static int context_new(tl_source *s, size_t ctx, tl_kafka_txn **out, char *err, size_t errlen)
{
    tl_kafka_txn *t = calloc(1, sizeof(*t));
    if (!t || !(t->id = txn_id(s->params))) {
        free(t);
        return TL_ENOMEM;
    }
    t->sealed = -1;
    for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS; i++) {
        int rc = producer_new(s, t, ctx, i, err, errlen);
        if (rc) {
            txn_free(t);
            return rc;
        }
    }
    atomic_store(&t->running, true);
    for (int i = 0; i < TL_KAFKA_TXN_PRODUCERS; i++) {
        t->pollers[i] = (struct tl_kafka_txn_poller){t, i, 0, false};
        if (pthread_create(&t->pollers[i].thread, NULL, poll_main, &t->pollers[i]) != 0) {
            txn_free(t);
            return TL_ESYS;
        }
        t->pollers[i].started = true;
    }
    *out = t;
    return 0;
}

static int txn_enable(tl_source *s, size_t contexts, char *err, size_t errlen)
{
    const char *iso = tl_kafka_conf_user(s->params, "isolation.level");
    if (iso && strcmp(iso, "read_committed") != 0) {
        tl_kafka_errf(err, errlen,
                      "kafka property isolation.level: must stay read_committed with "
                      "exactly_once (a crashed transaction's writes must not be read)");
        return TL_ECONFIG;
    }
    if (contexts == 0) {
        tl_kafka_errf(err, errlen, "kafka: a source needs at least one transaction context");
        return TL_EINVAL;
    }
    s->txn = calloc(contexts, sizeof(*s->txn));
    if (!s->txn)
        return TL_ENOMEM;
    s->ntxn = contexts;
    for (size_t k = 0; k < contexts; k++) {
        int rc = context_new(s, k, &s->txn[k], err, errlen);
        if (rc) {
            tl_kafka_txn_close(s);
            return rc;
        }
    }
    return 0;
}

/* Context ctx of s, or NULL with why in err. */
static tl_kafka_txn *context(tl_source *s, size_t ctx, char *err, size_t errlen)
{
    if (s->txn && ctx < s->ntxn)
        return s->txn[ctx];
    tl_kafka_errf(err, errlen, "kafka: no transaction context %zu (the source has %zu)", ctx,
                  s->ntxn);
    return NULL;
}

static int txn_sink(tl_source *s, size_t ctx, const char *address, tl_sink **out,
                    const tl_sink_ops **ops, char *err, size_t errlen)
{
    tl_kafka_txn *t = context(s, ctx, err, errlen);
    if (!t)
        return TL_EINVAL;
    *ops = &tl_kafka_sink_ops;
    return tl_kafka_sink_open_txn(address, t, out, err, errlen);
}

/* The transaction cannot commit: aborts it (when librdkafka says it can be) and says
 * why in err. */
static int txn_failed(tl_kafka_txn *t, int i, rd_kafka_error_t *e, const char *what, char *err,
                      size_t errlen)
{
    bool abortable = rd_kafka_error_txn_requires_abort(e);
    bool fatal = rd_kafka_error_is_fatal(e);
    tl_kafka_errf(err, errlen, "%s: %s%s", what, rd_kafka_error_string(e),
                  fatal       ? " (fatal: fenced by another producer with transactional.id "
                                "or a newer group generation)"
                  : abortable ? " (transaction aborted)"
                              : "");
    rd_kafka_error_destroy(e);
    if (abortable) {
        rd_kafka_error_t *a = rd_kafka_abort_transaction(t->rk[i], ABORT_MS);
        if (a)
            rd_kafka_error_destroy(a);
        else
            t->open[i] = false;
    }
    return TL_EIO;
}

static rd_kafka_error_t *send_offsets(tl_source *s, tl_kafka_txn *t, int i,
                                      const tl_partition_offset *offs, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata(s->rk);
    rd_kafka_error_t *e = NULL;
    if (l && g) {
        for (size_t i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, offs[i].topic, offs[i].partition)->offset =
                offs[i].next_offset;
        e = rd_kafka_send_offsets_to_transaction(t->rk[i], l, g, COMMIT_MS);
    } else {
        e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__NO_OFFSET, "out of memory");
    }
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    if (g)
        rd_kafka_consumer_group_metadata_destroy(g);
    return e;
}

/* The context's loop thread, with no commit out: later sends go to the other
 * producer. */
static int txn_seal(tl_source *s, size_t ctx, char *err, size_t errlen)
{
    tl_kafka_txn *t = context(s, ctx, err, errlen);
    if (!t)
        return TL_EINVAL;
    t->sealed = t->cur;
    t->cur = (t->cur + 1) % TL_KAFKA_TXN_PRODUCERS;
    return 0;
}

/* Commits the transaction sealed last, when this commit follows a seal, else the one
 * sends go to (a commit on the loop thread, at a revoke or the drain's end). */
static int txn_commit(tl_source *s, size_t ctx, const tl_partition_offset *offs, size_t n,
                      char *err, size_t errlen)
{
    tl_kafka_txn *t = context(s, ctx, err, errlen);
    if (!t)
        return TL_EINVAL;
    int i = t->sealed >= 0 ? t->sealed : t->cur;
    t->sealed = -1;
    int rc = tl_kafka_txn_begin(t, i, err, errlen);
    if (rc)
        return rc;
    rd_kafka_error_t *e = NULL;
    for (int k = 0; n > 0 && k <= RETRIES; k++) {
        e = send_offsets(s, t, i, offs, n);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        if (k < RETRIES)
            rd_kafka_error_destroy(e);
    }
    if (e)
        return txn_failed(t, i, e, "kafka send offsets to transaction", err, errlen);
    for (int k = 0; k <= RETRIES; k++) {
        e = rd_kafka_commit_transaction(t->rk[i], COMMIT_MS);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        if (k < RETRIES)
            rd_kafka_error_destroy(e);
    }
    if (e)
        return txn_failed(t, i, e, "kafka commit transaction", err, errlen);
    t->open[i] = false;
    return 0;
}

const tl_txn_ops tl_kafka_txn_ops = {
    .enable = txn_enable,
    .sink = txn_sink,
    .commit = txn_commit,
    .seal = txn_seal,
};
