/*
 * The offset tracker of one partition: which delivered offsets are settled, and up to
 * where the partition may be committed (the lowest unsettled offset). Loop thread only.
 */
#ifndef TL_OFFSETS_H
#define TL_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tl_offsets {
    int64_t *off;           /* ring of tracked offsets, in delivery order */
    unsigned char *settled; /* ring of flags, same slots */
    size_t cap;             /* a power of two, or 0 */
    uint64_t head, tail;    /* slots [head, tail) are tracked */
    int64_t last;           /* the highest offset tracked, -1 before any */
    int64_t next;           /* what may be committed: every offset below is settled; -1 */
} tl_offsets;

/* Prepares an empty tracker. */
void tl_offsets_init(tl_offsets *o);

/* Frees the tracker's memory; it is empty and reusable afterwards. */
void tl_offsets_free(tl_offsets *o);

/* Records a delivered offset; *slot names it for tl_offsets_settle. 0 or TL_ENOMEM. */
int tl_offsets_track(tl_offsets *o, int64_t offset, uint64_t *slot);

/* Marks a slot settled; true when the committable position moved forward. */
bool tl_offsets_settle(tl_offsets *o, uint64_t slot);

/* True when slot is tracked and not yet settled. */
bool tl_offsets_is_pending(const tl_offsets *o, uint64_t slot);

/* Tracked offsets not yet settled. */
size_t tl_offsets_unsettled(const tl_offsets *o);

/* Forgets everything (the partition was revoked); the tracker stays usable and slots
 * from before the reset stay unknown to it. */
void tl_offsets_reset(tl_offsets *o);

#endif
