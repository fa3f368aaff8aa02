/*
 * What the service and a worker process (isolation: process) exchange in memory they
 * share. One mapping per route, MAP_SHARED and anonymous, is made before the zygote
 * forks, so every worker process inherits it at the same address; in it, one ring per
 * slot, which holds both ways:
 *
 * Results: TL_PROC_AHEAD entries, indexed by the message's number in its process, and
 * `done`, the number of the last message whose result is in the ring. A result costs
 * the worker no system call: it writes the entry, then moves `done` on. The service
 * never has more than TL_PROC_AHEAD messages at a process whose results it has not
 * taken, so an entry is never overwritten before it was read. A worker that crashes
 * leaves every result up to `done` behind in the mapping: the message `done + 1` is
 * the one it crashed in.
 *
 * Requests: the messages' frames (frame.c), each at a multiple of 8 bytes in a byte
 * ring, which the service writes and moves `head` on, and the worker decodes and
 * moves `tail` on: no system call, no copy through the kernel. A frame that does not
 * fit where the ring ends leaves a pad frame there and starts at the beginning; one
 * that does not fit at all (a large message) goes on the socket, and an 'S' frame in
 * the ring says where it is, so the order stays. Room for TL_PROC_AHEAD such markers
 * is always kept: at most that many messages are out, so one always fits.
 *
 * Wake-ups, both ways the same: the side that waits sets its flag, then looks once
 * more; the other side publishes (`done`, `head`) and then looks at the flag. Both in
 * sequentially consistent order, so one of the two always sees the other: either the
 * waiter finds the news before it sleeps, or the writer finds it asleep and wakes it.
 * The service's side that takes the results is its root loop (procs.c), which sleeps
 * on an eventfd too, so the worker writes that (tl__ring_sleeper tells it to); the
 * worker's main thread sleeps on a futex on its flag, which the service wakes.
 *
 * Thread rules: a ring's results are written by its slot's worker process alone (its
 * main thread) and read under the route's lock (by its reader or its root loop);
 * tl__ring_done and tl__ring_awake from any thread of the service; its requests are
 * written by the service under the route's lock and read by the worker's main thread;
 * tl__ring_req_wake from any thread of either; tl__ring_reset only while no process is in the slot;
 * tl__rings_new and tl__rings_free on the thread building and freeing the service.
 */
#include "runtime.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A slot's request bytes: room for many small messages ahead; anonymous shared memory
 * is committed only where written. */
#define REQ_BYTES (256u << 10)
/* Frames start at multiples of this, so that a frame's header always fits before the
 * ring's end. */
#define REQ_ALIGN 8
#define FRAME_HEAD 5
/* Kept free for the markers of messages sent on the socket. */
#define MARKER_ROOM (TL_PROC_AHEAD * REQ_ALIGN)

typedef struct result {
    int32_t err;
    bool emits; /* an 'E' frame for it was written to the socket first (frame.c) */
    char text[TL_RING_TEXT_MAX];
} result;

struct tl_ring {
    _Atomic uint64_t done;
    _Atomic int sleeping;
    _Atomic int pace;
    result at[TL_PROC_AHEAD];
    /* Apart, so that the two sides do not write one cache line; each side keeps what it
     * last saw of the other's on its own line and looks at the other's again only when
     * that says the ring is full (service) or empty (worker), so that a message costs
     * neither side a cache miss on the other's counter. */
    _Alignas(64) _Atomic uint64_t head; /* request bytes written, ever */
    uint64_t tail_seen;                 /* the service's last look at tail */
    _Alignas(64) _Atomic uint64_t tail; /* request bytes taken, ever */
    uint64_t head_seen;                 /* the worker's last look at head */
    /* Read by the service at each hand-over, written by the worker only as it sleeps. */
    _Alignas(64) _Atomic uint32_t req_sleeping; /* the worker's futex: 1 while it sleeps */
    _Alignas(64) char req[REQ_BYTES];
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
    atomic_store(&r->pace, TL_PACE_LIGHT);
    atomic_store(&r->head, 0);
    atomic_store(&r->tail, 0);
    r->tail_seen = r->head_seen = 0;
    atomic_store(&r->req_sleeping, 0);
}

void tl__ring_put(tl_ring *r, uint64_t seq, int err, const char *text, int pace, bool emits)
{
    if (atomic_load_explicit(&r->pace, memory_order_relaxed) != pace)
        atomic_store_explicit(&r->pace, pace, memory_order_relaxed);
    result *e = &r->at[seq % TL_PROC_AHEAD];
    e->err = err;
    e->emits = emits;
    size_t n = text ? strnlen(text, TL_RING_TEXT_MAX - 1) : 0;
    memcpy(e->text, text ? text : "", n);
    e->text[n] = '\0';
    atomic_store(&r->done, seq);
}

uint64_t tl__ring_done(tl_ring *r)
{
    return atomic_load(&r->done);
}

int tl__ring_pace(tl_ring *r)
{
    return atomic_load_explicit(&r->pace, memory_order_relaxed);
}

bool tl__ring_sleeper(tl_ring *r)
{
    return atomic_load(&r->sleeping) && atomic_exchange(&r->sleeping, 0);
}

bool tl__ring_get(tl_ring *r, uint64_t seq, int *err, char *text, size_t cap, bool *emits)
{
    if (atomic_load(&r->done) < seq)
        return false;
    const result *e = &r->at[seq % TL_PROC_AHEAD];
    size_t n = strnlen(e->text, TL_RING_TEXT_MAX - 1);
    n = n < cap - 1 ? n : cap - 1;
    memcpy(text, e->text, n);
    text[n] = '\0';
    *err = e->err;
    *emits = e->emits;
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

static size_t aligned(size_t n)
{
    return (n + REQ_ALIGN - 1) / REQ_ALIGN * REQ_ALIGN;
}

static void put_head(tl_ring *r, size_t at, char type, uint32_t len)
{
    r->req[at] = type;
    memcpy(r->req + at + 1, &len, sizeof(len));
}

bool tl__ring_push(tl_ring *r, const char *frame, size_t len)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t at = head % REQ_BYTES, to_end = REQ_BYTES - at;
    size_t need = aligned(len) + (aligned(len) > to_end ? to_end : 0);
    if (need + MARKER_ROOM > REQ_BYTES - (head - r->tail_seen))
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (need + MARKER_ROOM > REQ_BYTES - (head - r->tail_seen)) {
        put_head(r, at, TL_FRAME_SOCKET, 0);
        atomic_store(&r->head, head + REQ_ALIGN);
        return false;
    }
    if (aligned(len) > to_end) {
        put_head(r, at, TL_FRAME_PAD, (uint32_t)(to_end - FRAME_HEAD));
        head += to_end;
        at = 0;
    }
    memcpy(r->req + at, frame, len);
    atomic_store(&r->head, head + aligned(len));
    return true;
}

bool tl__ring_next(tl_ring *r, char *type, const char **body, uint32_t *len)
{
    for (;;) {
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        if (r->head_seen == tail)
            r->head_seen = atomic_load(&r->head);
        if (r->head_seen == tail)
            return false;
        const char *p = r->req + tail % REQ_BYTES;
        memcpy(len, p + 1, sizeof(*len));
        if (p[0] != TL_FRAME_PAD) {
            *type = p[0];
            *body = p + FRAME_HEAD;
            return true;
        }
        atomic_store_explicit(&r->tail, tail + FRAME_HEAD + *len, memory_order_release);
    }
}

void tl__ring_take(tl_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t len;
    memcpy(&len, r->req + tail % REQ_BYTES + 1, sizeof(len));
    atomic_store_explicit(&r->tail, tail + aligned(FRAME_HEAD + (size_t)len), memory_order_release);
}

bool tl__ring_req_sleep(tl_ring *r)
{
    atomic_store(&r->req_sleeping, 1);
    if (atomic_load(&r->head) == atomic_load_explicit(&r->tail, memory_order_relaxed))
        return true;
    atomic_store(&r->req_sleeping, 0);
    return false;
}

void tl__ring_req_wait(tl_ring *r)
{
    /* Returns at once when the flag was cleared already (woken before it slept). */
    while (atomic_load(&r->req_sleeping) &&
           syscall(SYS_futex, &r->req_sleeping, FUTEX_WAIT, 1, NULL, NULL, 0) < 0 &&
           errno == EINTR) {
    }
    atomic_store(&r->req_sleeping, 0);
}

void tl__ring_req_wake(tl_ring *r)
{
    if (atomic_load(&r->req_sleeping) && atomic_exchange(&r->req_sleeping, 0))
        syscall(SYS_futex, &r->req_sleeping, FUTEX_WAKE, 1, NULL, NULL, 0);
}
