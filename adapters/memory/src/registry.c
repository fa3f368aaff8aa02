/*
 * The process-wide set of named memory topics and stores.
 *
 * Why global: a test must reach the source or sink the runtime opened from a config
 * (it only knows the name), and may push or set a mode before the runtime opens
 * anything. A mutex-guarded list by name is the least machinery that allows that; the
 * memory adapter is for tests and examples, so one lock for everything is enough.
 * Thread rules: tl_mem_lock guards both lists and everything reachable from them.
 */
#include "memory_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

pthread_mutex_t tl_mem_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t tl_mem_request_done = PTHREAD_COND_INITIALIZER;

static mem_topic *topics;
static mem_store *stores;

int64_t tl_mem_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mem_topic *tl_mem_topic_locked(const char *name, bool create)
{
    if (!name)
        return NULL;
    for (mem_topic *t = topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    if (!create)
        return NULL;
    mem_topic *t = calloc(1, sizeof(*t));
    if (!t || !(t->name = strdup(name)) || tl_mem_topic_grow_locked(t, 1) != 0) {
        if (t)
            free(t->name);
        free(t);
        return NULL;
    }
    t->next = topics;
    topics = t;
    return t;
}

int tl_mem_topic_grow_locked(mem_topic *t, size_t nparts)
{
    if (nparts > TL_MEMORY_MAX_PARTITIONS)
        return TL_EINVAL;
    if (nparts <= t->nparts)
        return 0;
    mem_part *p = realloc(t->parts, nparts * sizeof(*p));
    if (!p)
        return TL_ENOMEM;
    for (size_t i = t->nparts; i < nparts; i++)
        p[i] = (mem_part){.committed = -1};
    t->parts = p;
    t->nparts = nparts;
    return 0;
}

mem_store *tl_mem_store_locked(const char *name, bool create)
{
    if (!name)
        return NULL;
    for (mem_store *s = stores; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    if (!create)
        return NULL;
    mem_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    s->next = stores;
    stores = s;
    return s;
}

int tl_mem_store_append_locked(mem_store *s, tl_memory_record *rec)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        tl_memory_record **r = realloc(s->recs, cap * sizeof(*r));
        if (!r)
            return TL_ENOMEM;
        s->recs = r;
        s->cap = cap;
    }
    s->recs[s->n++] = rec;
    return 0;
}

/* Bytes a record needs after its struct, with a NUL after payload, key and names. */
static size_t record_size(const tl_out_msg *m)
{
    size_t size = sizeof(tl_memory_record) + m->nheaders * sizeof(tl_header) + m->len + 1;
    if (m->key)
        size += m->key_len + 1;
    for (size_t i = 0; i < m->nheaders; i++)
        size += strlen(m->headers[i].name) + 1 + m->headers[i].len + 1;
    return size;
}

/* Copies len bytes to *cursor, adds a NUL and advances; returns where they went. */
static void *put(char **cursor, const void *data, size_t len)
{
    char *at = *cursor;
    if (len > 0)
        memcpy(at, data, len);
    at[len] = '\0';
    *cursor = at + len + 1;
    return at;
}

tl_memory_record *tl_mem_record_new(const tl_out_msg *m)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (!m->headers[i].name)
            return NULL;
    tl_memory_record *r = malloc(record_size(m));
    if (!r)
        return NULL;
    tl_header *h = (tl_header *)(r + 1);
    char *cursor = (char *)(h + m->nheaders);
    for (size_t i = 0; i < m->nheaders; i++) {
        const tl_header *in = &m->headers[i];
        h[i].name = put(&cursor, in->name, strlen(in->name));
        h[i].value = put(&cursor, in->value, in->len);
        h[i].len = in->len;
    }
    r->headers = m->nheaders ? h : NULL;
    r->nheaders = m->nheaders;
    r->payload = put(&cursor, m->payload, m->len);
    r->len = m->len;
    r->key = m->key ? put(&cursor, m->key, m->key_len) : NULL;
    r->key_len = m->key ? m->key_len : 0;
    r->timestamp_ms = tl_mem_now_ms();
    return r;
}

tl_memory_record *tl_mem_record_copy(const tl_memory_record *rec)
{
    tl_out_msg m = {rec->payload, rec->len, rec->key, rec->key_len, rec->headers, rec->nheaders};
    tl_memory_record *r = tl_mem_record_new(&m);
    if (r)
        r->timestamp_ms = rec->timestamp_ms;
    return r;
}

void tl_memory_record_free(tl_memory_record *rec)
{
    free(rec);
}

const void *tl_memory_record_header(const tl_memory_record *rec, const char *hname, size_t *len)
{
    for (size_t i = 0; rec && hname && i < rec->nheaders; i++) {
        if (strcmp(rec->headers[i].name, hname) == 0) {
            if (len)
                *len = rec->headers[i].len;
            return rec->headers[i].value;
        }
    }
    return NULL;
}

int tl_mem_txn_add_locked(mem_topic *t, size_t ctx, mem_store *s, tl_memory_record *rec)
{
    if (ctx >= t->ntxns)
        return TL_ECLOSED;
    mem_pending *p = malloc(sizeof(*p));
    if (!p)
        return TL_ENOMEM;
    *p = (mem_pending){NULL, s, rec};
    mem_txn *x = &t->txns[ctx]; /* pending_tail set since enable (txn.c) */
    *x->pending_tail = p;
    x->pending_tail = &p->next;
    return 0;
}

void tl_mem_txn_discard_one_locked(mem_txn *x)
{
    mem_pending *lists[] = {x->pending, x->sealed};
    for (int i = 0; i < 2; i++)
        while (lists[i]) {
            mem_pending *p = lists[i];
            lists[i] = p->next;
            free(p->rec);
            free(p);
        }
    *x = (mem_txn){.pending_tail = &x->pending};
}

void tl_mem_txn_discard_locked(mem_topic *t)
{
    for (size_t i = 0; i < t->ntxns; i++)
        tl_mem_txn_discard_one_locked(&t->txns[i]);
    free(t->txns);
    t->txns = NULL;
    t->ntxns = 0;
}

mem_topic *tl_mem_topic_of_locked(const tl_source *src)
{
    for (mem_topic *t = topics; t; t = t->next)
        if (t->src == src)
            return t;
    return NULL;
}

static void topic_free(mem_topic *t)
{
    tl_mem_txn_discard_locked(t);
    for (size_t p = 0; p < t->nparts; p++) {
        for (size_t i = 0; i < t->parts[p].n; i++)
            free(t->parts[p].log[i]);
        free(t->parts[p].log);
    }
    free(t->parts);
    free(t->name);
    free(t);
}

static void store_free(mem_store *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->recs[i]);
    free(s->recs);
    free(s->name);
    free(s);
}

size_t tl_memory_reset(void)
{
    size_t kept = 0;
    pthread_mutex_lock(&tl_mem_lock);
    for (mem_topic **tp = &topics; *tp;) {
        mem_topic *t = *tp;
        if (t->src || t->outstanding) {
            kept++;
            tp = &t->next;
            continue;
        }
        *tp = t->next;
        topic_free(t);
    }
    for (mem_store **sp = &stores; *sp;) {
        mem_store *s = *sp;
        if (s->users) {
            kept++;
            sp = &s->next;
            continue;
        }
        *sp = s->next;
        store_free(s);
    }
    pthread_mutex_unlock(&tl_mem_lock);
    return kept;
}
