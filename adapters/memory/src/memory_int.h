/*
 * Private to the memory adapter: the named topics and stores and the one lock that
 * guards them all.
 * Thread rules: every field of mem_topic, mem_part and mem_store, and the lists of
 * them, are guarded by tl_mem_lock; functions ending in _locked expect it held.
 */
#ifndef TL_MEMORY_INT_H
#define TL_MEMORY_INT_H

#include <pthread.h>
#include <taskloop/memory.h>

extern pthread_mutex_t tl_mem_lock;
/* Broadcast when a revoke/assign request finishes; waiters check their own request. */
extern pthread_cond_t tl_mem_request_done;

/* One partition: a log of records; log[i] has offset base + i. */
typedef struct mem_part {
    tl_memory_record **log;
    size_t n, cap;
    int64_t base;
    int64_t committed; /* -1 when nothing was committed */
    int64_t position;  /* next offset the source delivers */
    bool assigned;
    bool held; /* the runtime asked its source to stop fetching it (pause_partitions) */
} mem_part;

/* A send of a transaction sink, waiting for its source's commit (txn.c). */
typedef struct mem_pending {
    struct mem_pending *next;
    struct mem_store *store;
    tl_memory_record *rec;
} mem_pending;

/* One transaction context of a source (tl_txn_ops): its sinks' sends not yet
 * committed, in send order. */
typedef struct mem_txn {
    mem_pending *pending, **pending_tail;
    mem_pending *sealed; /* the sealed transaction's sends, which the next commit ends */
    bool seal_taken;     /* a seal came since the last commit */
} mem_txn;

typedef struct mem_topic {
    struct mem_topic *next;
    char *name;
    mem_part *parts;
    size_t nparts;
    tl_source *src;     /* the open source, or NULL */
    size_t outstanding; /* delivered and not yet released */
    bool lose_commits;  /* commit() succeeds and records nothing */
    /* Transactions (txn.c): its source's contexts (as many as enable asked for), and
     * whether the next commit of any of them is to fail. */
    mem_txn *txns;
    size_t ntxns;
    bool fail_txn;
} mem_topic;

typedef struct mem_held mem_held;

typedef struct mem_store {
    struct mem_store *next;
    char *name;
    tl_memory_record **recs;
    size_t n, cap;
    mem_held *held; /* in send order */
    size_t nheld;
    tl_memsink_mode mode;
    unsigned users; /* open sinks */
} mem_store;

/* The topic called name, created (with one partition) when create is true. */
mem_topic *tl_mem_topic_locked(const char *name, bool create);

/* Gives the topic at least nparts partitions; TL_EINVAL past the maximum. */
int tl_mem_topic_grow_locked(mem_topic *t, size_t nparts);

/* The store called name, created when create is true. */
mem_store *tl_mem_store_locked(const char *name, bool create);

/* Appends rec to the store's messages, which then own it. */
int tl_mem_store_append_locked(mem_store *s, tl_memory_record *rec);

/* A one-block copy of msg, stamped with the current time; NULL when out of memory. */
tl_memory_record *tl_mem_record_new(const tl_out_msg *msg);

/* A one-block copy of rec; NULL when out of memory. */
tl_memory_record *tl_mem_record_copy(const tl_memory_record *rec);

/* Wall-clock milliseconds, for timestamps. */
int64_t tl_mem_now_ms(void);

/* The topic the open source src reads, or NULL. */
mem_topic *tl_mem_topic_of_locked(const tl_source *src);

/* The transaction ops of the memory source (txn.c). */
extern const tl_txn_ops tl_mem_txn_ops;

/* Opens a sink on store address whose sends wait in the pending list of txn's context
 * ctx until it commits (acked at once, as a transaction's writes are). */
int tl_mem_sink_open_txn(const char *address, mem_topic *txn, size_t ctx, tl_sink **out, char *err,
                         size_t errlen);

/* Keeps rec, bound for store s, until context ctx of t commits; 0, or TL_ENOMEM, or
 * TL_ECLOSED when t has no such context (its source closed). */
int tl_mem_txn_add_locked(mem_topic *t, size_t ctx, mem_store *s, tl_memory_record *rec);

/* Drops what one context's transactions hold (an abort). */
void tl_mem_txn_discard_one_locked(mem_txn *x);

/* Drops what every context of t holds, and the contexts (the source closed). */
void tl_mem_txn_discard_locked(mem_topic *t);

#endif
