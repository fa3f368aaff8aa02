/*
 * The results of a worker process (isolation: process), in memory it shares with the
 * service. One mapping per route, MAP_SHARED and anonymous, is made before the zygote
 * forks, so every worker process inherits it at the same address; in it, one ring per
 * slot of TL_PROC_AHEAD results, indexed by the message's number in its process, and
 * `done`, the number of the last message whose result is in the ring.
 *
 * A result costs the worker no system call: it writes the entry, then moves `done`
 * on. The service never has more than TL_PROC_AHEAD messages at a process whose
 * results it has not taken, so an entry is never overwritten before it was read. A
 * worker that crashes leaves every result up to `done` behind in the mapping: the
 * message `done + 1` is the one it crashed in.
 *
 * Wake-ups: the slot's reader sets `sleeping` before it waits on the socket and then
 * looks at `done` once more; the worker moves `done` on and then looks at `sleeping`.
 * Both in sequentially consistent order, so one of the two always sees the other:
 * either the reader finds the result before it sleeps, or the worker finds it asleep
 * and writes a byte to the socket (tl__ring_sleeper tells it to).
 *
 * Thread rules: a ring is written by its slot's worker process alone (its main
 * thread) and read by the slot's reader; tl__ring_reset only while no process is
 * in the slot; tl__rings_new and tl__rings_free on the thread building and freeing the
 * service.
 */
#include "runtime.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

typedef struct result {
    int32_t err;
    char text[TL_RING_TEXT_MAX];
} result;

struct tl_ring {
    _Atomic uint64_t done;
    _Atomic int sleeping;
    _Atomic bool slow;
    result at[TL_PROC_AHEAD];
};

tl_ring *tl__rings_new(size_t n)
{
    void *p =
        mmap(NULL, n * sizeof(tl_ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void tl__rings_free(tl_ring *rings, size_t n)
{
    if (rings)
        munmap(rings, n * sizeof(tl_ring));
}

tl_ring *tl__ring_at(tl_ring *rings, size_t i)
{
    return &rings[i];
}

void tl__ring_reset(tl_ring *r)
{
    atomic_store(&r->done, 0);
    atomic_store(&r->sleeping, 0);
    atomic_store(&r->slow, false);
}

void tl__ring_put(tl_ring *r, uint64_t seq, int err, const char *text, bool slow)
{
    atomic_store_explicit(&r->slow, slow, memory_order_relaxed);
    result *e = &r->at[seq % TL_PROC_AHEAD];
    e->err = err;
    size_t n = text ? strnlen(text, TL_RING_TEXT_MAX - 1) : 0;
    memcpy(e->text, text ? text : "", n);
    e->text[n] = '\0';
    atomic_store(&r->done, seq);
}

bool tl__ring_slow(tl_ring *r)
{
    return atomic_load_explicit(&r->slow, memory_order_relaxed);
}

bool tl__ring_sleeper(tl_ring *r)
{
    return atomic_load(&r->sleeping) && atomic_exchange(&r->sleeping, 0);
}

bool tl__ring_get(tl_ring *r, uint64_t seq, int *err, char *text, size_t cap)
{
    if (atomic_load(&r->done) < seq)
        return false;
    const result *e = &r->at[seq % TL_PROC_AHEAD];
    size_t n = strnlen(e->text, TL_RING_TEXT_MAX - 1);
    n = n < cap - 1 ? n : cap - 1;
    memcpy(text, e->text, n);
    text[n] = '\0';
    *err = e->err;
    return true;
}

bool tl__ring_sleep(tl_ring *r, uint64_t next)
{
    atomic_store(&r->sleeping, 1);
    if (atomic_load(&r->done) < next)
        return true;
    atomic_store(&r->sleeping, 0);
    return false;
}

void tl__ring_awake(tl_ring *r)
{
    atomic_store(&r->sleeping, 0);
}
