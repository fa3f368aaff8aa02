/*
 * Offset tracking. Kafka may only be told "everything below N is done", while
 * handlers finish in any order; so each partition keeps its in-flight offsets in
 * delivery order and the committable position is the first one not yet settled
 * (or one past the last when all are). Settling is O(1); advancing is amortized O(1).
 */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>
#include <taskloop/taskloop.h>

void tl_offsets_init(tl_offsets *o)
{
    memset(o, 0, sizeof(*o));
    o->last = -1;
    o->next = -1;
}

void tl_offsets_free(tl_offsets *o)
{
    free(o->off);
    free(o->settled);
    tl_offsets_init(o);
}

void tl_offsets_reset(tl_offsets *o)
{
    /* Slot numbers keep growing: a slot handed out before the reset must never name
     * an offset tracked after it. */
    o->head = o->tail;
    o->last = -1;
    o->next = -1;
}

/* Doubles the ring, keeping slot numbers valid (slot & mask picks the cell). */
static int grow(tl_offsets *o)
{
    size_t cap = o->cap ? o->cap * 2 : 64;
    int64_t *off = malloc(cap * sizeof(*off));
    unsigned char *st = malloc(cap);
    if (!off || !st) {
        free(off);
        free(st);
        return TL_ENOMEM;
    }
    for (uint64_t s = o->head; s < o->tail; s++) {
        off[s & (cap - 1)] = o->off[s & (o->cap - 1)];
        st[s & (cap - 1)] = o->settled[s & (o->cap - 1)];
    }
    free(o->off);
    free(o->settled);
    o->off = off;
    o->settled = st;
    o->cap = cap;
    return 0;
}

int tl_offsets_track(tl_offsets *o, int64_t offset, uint64_t *slot)
{
    if (o->tail - o->head == o->cap && grow(o) != 0)
        return TL_ENOMEM;
    uint64_t s = o->tail++;
    o->off[s & (o->cap - 1)] = offset;
    o->settled[s & (o->cap - 1)] = 0;
    if (offset > o->last)
        o->last = offset;
    *slot = s;
    return 0;
}

bool tl_offsets_is_pending(const tl_offsets *o, uint64_t slot)
{
    return slot >= o->head && slot < o->tail && !o->settled[slot & (o->cap - 1)];
}

size_t tl_offsets_unsettled(const tl_offsets *o)
{
    size_t n = 0;
    for (uint64_t s = o->head; s < o->tail; s++)
        n += !o->settled[s & (o->cap - 1)];
    return n;
}

bool tl_offsets_settle(tl_offsets *o, uint64_t slot)
{
    if (!tl_offsets_is_pending(o, slot))
        return false;
    o->settled[slot & (o->cap - 1)] = 1;
    if (slot != o->head)
        return false;
    while (o->head < o->tail && o->settled[o->head & (o->cap - 1)])
        o->head++;
    int64_t next = o->head < o->tail ? o->off[o->head & (o->cap - 1)] : o->last + 1;
    /* Never move backwards: a redelivered older offset must not undo a commit. */
    if (next <= o->next)
        return false;
    o->next = next;
    return true;
}
