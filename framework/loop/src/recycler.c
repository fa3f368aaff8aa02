/*
 * Recyclers: fixed-size blocks that one thread takes and any thread gives back.
 *
 * Blocks given back go onto a lock-free stack; the owner takes the whole stack at once
 * when its own list runs dry. Only the owner pops, and it pops by exchange, so the
 * stack never sees the ABA problem. The first word of a free block is its link.
 */
#include <taskloop/recycler.h>
#include <taskloop/taskloop.h>

#include <stdatomic.h>
#include <stdlib.h>

typedef struct block {
    struct block *next;
} block;

struct tl_recycler {
    _Atomic(block *) returned; /* given back by any thread */
    block *local;              /* the owner's */
    size_t size;
};

int tl_recycler_new(size_t size, tl_recycler **out)
{
    tl_recycler *r = calloc(1, sizeof(*r));
    if (!r)
        return TL_ENOMEM;
    atomic_init(&r->returned, NULL);
    r->size = size < sizeof(block) ? sizeof(block) : size;
    *out = r;
    return 0;
}

void *tl_recycler_get(tl_recycler *r)
{
    block *b = r->local;
    if (!b)
        b = atomic_exchange_explicit(&r->returned, NULL, memory_order_acquire);
    if (!b)
        return malloc(r->size);
    r->local = b->next;
    return b;
}

void tl_recycler_put(tl_recycler *r, void *p)
{
    block *b = p;
    block *head = atomic_load_explicit(&r->returned, memory_order_relaxed);
    do {
        b->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&r->returned, &head, b, memory_order_release,
                                                    memory_order_relaxed));
}

void tl_recycler_put_owned(tl_recycler *r, void *p)
{
    block *b = p;
    b->next = r->local;
    r->local = b;
}

static void free_list(block *b)
{
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
}

void tl_recycler_free(tl_recycler *r)
{
    if (!r)
        return;
    free_list(r->local);
    free_list(atomic_load(&r->returned));
    free(r);
}
