/*
 * taskloop recyclers: fixed-size blocks reused across threads without a lock.
 * Part of libtaskloop (the loop keeps its tasks in one); adapters use them for their
 * per-message wrappers.
 */
#ifndef TASKLOOP_RECYCLER_H
#define TASKLOOP_RECYCLER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A recycler keeps fixed-size blocks for reuse: one thread (its owner) takes them,
 * any thread gives them back, with no lock and no malloc once warm. For a source's
 * per-message wrappers, allocated on its thread and released on the loop's. It keeps
 * as many blocks as were ever out at once, until freed.
 */
typedef struct tl_recycler tl_recycler;

/* Makes a recycler of blocks of size bytes. TL_ENOMEM. */
int tl_recycler_new(size_t size, tl_recycler **out);

/* Owner thread: a block (uninitialized), or NULL when out of memory. */
void *tl_recycler_get(tl_recycler *r);

/* Any thread: gives a block from tl_recycler_get back. */
void tl_recycler_put(tl_recycler *r, void *block);

/* Owner thread only: gives a block back with no atomic operation (the owner's next
 * tl_recycler_get takes it first). */
void tl_recycler_put_owned(tl_recycler *r, void *block);

/* Frees the recycler and every block given back; blocks still out are the caller's. */
void tl_recycler_free(tl_recycler *r);

#ifdef __cplusplus
}
#endif

#endif
