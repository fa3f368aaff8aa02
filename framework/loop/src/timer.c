/*
 * Timers: a min-heap of the timers callers embed, on (due time, arming order), so
 * timers due at the same time fire in the order they were armed.
 *
 * Thread rules: loop thread only.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static bool timer_less(const tl_timer *a, const tl_timer *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_set(tl_loop *loop, size_t i, tl_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap && timer_less(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_less(loop->heap[c], t))
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

void tl_timer_init(tl_loop *loop, tl_timer *timer)
{
    memset(timer, 0, sizeof(*timer));
    timer->loop = loop;
    timer->heap_index = SIZE_MAX;
}

void tl_timer_stop(tl_timer *timer)
{
    tl_loop *loop = timer->loop;
    size_t i = timer->heap_index;
    if (i == SIZE_MAX)
        return;
    timer->heap_index = SIZE_MAX;
    tl_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    heap_down(loop, i);
    heap_up(loop, last->heap_index);
}

int tl_timer_start(tl_timer *timer, int64_t delay_ms, tl_timer_cb cb, void *arg)
{
    tl_loop *loop = timer->loop;
    if (!cb || loop->closed)
        return loop->closed ? TL_ECLOSED : TL_EINVAL;
    tl_timer_stop(timer);
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 16;
        tl_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return TL_ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    if (delay_ms < 0)
        delay_ms = 0;
    /* From the clock, not the cached time: a timer must never fire early. */
    timer->due_ns = tl_clock_ns() + delay_ms * 1000000;
    timer->seq = loop->timer_seq++;
    timer->cb = cb;
    timer->arg = arg;
    loop->heap[loop->nheap] = timer;
    timer->heap_index = loop->nheap++;
    heap_up(loop, timer->heap_index);
    return 0;
}

bool tl__timers_run(tl_loop *loop)
{
    bool any = false;
    int64_t now = loop->now_ns;
    uint64_t limit = loop->timer_seq;
    while (loop->nheap > 0) {
        tl_timer *t = loop->heap[0];
        if (t->due_ns > now || t->seq >= limit)
            break;
        tl_timer_stop(t);
        t->cb(t, t->arg);
        any = true;
    }
    return any;
}

int64_t tl__timers_next_ns(const tl_loop *loop)
{
    return loop->nheap > 0 ? loop->heap[0]->due_ns : -1;
}
