/*
 * taskloop memory adapter: an in-process source and sink for tests and examples.
 *
 * Model: a process-wide set of named TOPICS (what sources read) and named STORES (what
 * sinks write), like a broker that lives in memory. Both are created on first use by
 * name, by the adapter or by a test, so a test can push messages or set a sink's mode
 * before the runtime opens anything, and read a store after the runtime closed its
 * sink. tl_memory_reset() forgets the ones nothing has open.
 *
 * Source section (type: memory):
 *   name        STRING  required: the topic to read; also the origin of its messages
 *   partitions  INT     the topic has at least this many partitions (default 1)
 *   batch       INT     most messages per delivery (default 64)
 *   run         INT     most consecutive messages of one partition before the next
 *                       partition's turn (default 1: one each in turn); a large run
 *                       delivers a backlog partition by partition, as Kafka fetches
 *   hold_limit  DURATION  how long backpressure may keep the source waiting (default:
 *                       no limit)
 * The source supports pause_partitions: a partition the runtime holds back is not read
 * until it is resumed or revoked.
 * Each partition is a log: tl_memory_push() appends at offsets 0, 1, 2, ... At start
 * every partition is assigned and read from its committed offset (0 when none);
 * partitions a push creates later wait for tl_memory_assign().
 * commit() records the next offset per partition (tl_memory_committed). A partition
 * revoked and assigned again is read anew from its committed offset, so uncommitted
 * messages come back, as Kafka does (at_least_once is true). One source may have a
 * topic open at a time. Delivered messages are copies owned by the runtime until
 * ops->release; their payload and key are followed by a NUL byte not counted in len.
 *
 * Transactions (a route with `delivery: exactly_once`): what the route sends through
 * its source's transaction sinks waits on the source's topic until the runtime commits,
 * then joins the stores in one step with the positions; a commit made to fail
 * (tl_memory_fail_txn), or a source closed before committing, drops it (an abort).
 *
 * Sink: target "memory:NAME" appends a copy of each sent message to store NAME. Its
 * mode decides the ack: TL_MEMSINK_OK stores and acks 0; TL_MEMSINK_FAIL stores
 * nothing and acks TL_EIO; TL_MEMSINK_HOLD keeps message and ack aside (the target is
 * "down": the message stays unsettled) until tl_memory_sink_release_held() stores
 * and acks them, or the sink closes and acks them TL_ECLOSED. Acks never run inside
 * send(): each sink has a thread that runs them, as a broker's delivery reports do.
 *
 * Thread rules: every function here is safe from any thread. One mutex guards all
 * topics and stores (tests are the users; contention does not matter). Source events
 * (deliver, assigned, revoked) run on the source's own thread.
 */
#ifndef TASKLOOP_MEMORY_H
#define TASKLOOP_MEMORY_H

#include <taskloop/adapter.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_MEMORY_MAX_PARTITIONS 1024

/* The source type "memory". */
extern const tl_source_ops tl_memory_source_ops;
/* The sink scheme "memory". */
extern const tl_sink_ops tl_memory_sink_ops;

/* Adds the "memory" source type and sink scheme to reg. */
int tl_memory_register(tl_registry *reg);

/*
 * Forgets every topic and store no source or sink has open, with their messages.
 * Returns how many stayed because they are in use.
 */
size_t tl_memory_reset(void);

/* ---------------------------------------------------------------- topics (sources) */

/*
 * Appends a message (payload and key are copied; key is a C string or NULL) to a
 * partition of topic name, creating the topic or partitions as needed. Returns the
 * message's offset (>= 0) or a negative TL_E* code.
 */
int64_t tl_memory_push(const char *name, int32_t partition, const char *key, const void *payload,
                       size_t len);

/* As tl_memory_push with any key bytes and headers (all copied). */
int64_t tl_memory_push_msg(const char *name, int32_t partition, const tl_out_msg *msg);

/* As tl_memory_push_msg, stamped timestamp_ms (ms since the epoch) instead of now, as
 * a Kafka producer may set a message's time; timestamp_ms <= 0 means now. */
int64_t tl_memory_push_dated(const char *name, int32_t partition, const tl_out_msg *msg,
                             int64_t timestamp_ms);

/* The next commit of the transaction of the source reading topic name aborts (what it
 * holds is dropped, positions stay). 0, or TL_ENOTFOUND. */
int tl_memory_fail_txn(const char *name);

/* Sends of the open transaction of the source reading topic name, not yet committed. */
size_t tl_memory_txn_pending(const char *name);

/* The next offset committed for a partition, or -1 when none was (or no such topic). */
int64_t tl_memory_committed(const char *name, int32_t partition);

/*
 * While lose is true, commit() on topic name returns 0 and records nothing, as Kafka
 * offsets stored locally that never reach a group coordinator which went away, and
 * reports the commit refused (ev->committed with TL_EIO). Creates the topic if needed;
 * TL_ENOMEM.
 */
int tl_memory_lose_commits(const char *name, bool lose);

/* Messages delivered from topic name and not yet released. */
size_t tl_memory_outstanding(const char *name);

/* Messages pushed to topic name that its source has not yet delivered (all partitions). */
size_t tl_memory_pending(const char *name);

/*
 * Revokes a partition from the topic's open source: on the source's thread, stops
 * delivering from it and calls ev->revoked, and returns after that returned.
 * TL_ENOTFOUND when no source has the topic open, TL_EINVAL when the partition is not
 * assigned, TL_ECLOSED when the source stopped first.
 */
int tl_memory_revoke(const char *name, int32_t partition);

/* As tl_memory_revoke, but told as a loss (ev->lost, as Kafka tells an assignment
 * the group took away): the runtime commits nothing of it. */
int tl_memory_lose(const char *name, int32_t partition);

/*
 * Assigns a partition to the topic's open source again: on the source's thread, calls
 * ev->assigned and resumes reading at the committed offset. Errors as tl_memory_revoke.
 */
int tl_memory_assign(const char *name, int32_t partition);

/* ---------------------------------------------------------------- stores (sinks) */

typedef enum tl_memsink_mode {
    TL_MEMSINK_OK = 0, /* store and ack 0 */
    TL_MEMSINK_FAIL,   /* ack TL_EIO, store nothing */
    TL_MEMSINK_HOLD,   /* keep message and ack back until released */
} tl_memsink_mode;

/* A stored message; payload and key are followed by a NUL byte not counted in len. */
typedef struct tl_memory_record {
    void *payload;
    size_t len;
    void *key; /* NULL when the message had none */
    size_t key_len;
    tl_header *headers;
    size_t nheaders;
    int64_t timestamp_ms; /* when it was stored */
} tl_memory_record;

/* Sets how the sinks writing store name ack, creating the store if needed. */
int tl_memory_sink_set_mode(const char *name, tl_memsink_mode mode);

/* Stores and acks (0) every held message of store name; returns how many. */
size_t tl_memory_sink_release_held(const char *name);

/* Messages stored in store name (held ones are not counted). */
size_t tl_memory_sink_count(const char *name);

/* Messages held back in store name. */
size_t tl_memory_sink_held(const char *name);

/*
 * Copies the i-th stored message of store name into *out, which the caller frees with
 * tl_memory_record_free(). TL_ENOTFOUND when there is no such store or message.
 */
int tl_memory_sink_get(const char *name, size_t i, tl_memory_record **out);

/* Frees a record from tl_memory_sink_get(); NULL is ignored. */
void tl_memory_record_free(tl_memory_record *rec);

/* Returns the value of the record's first header called hname, or NULL; *len its length. */
const void *tl_memory_record_header(const tl_memory_record *rec, const char *hname, size_t *len);

/* Empties store name (held messages stay held). */
void tl_memory_sink_clear(const char *name);

#ifdef __cplusplus
}
#endif

#endif
