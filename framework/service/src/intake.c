/*
 * Intake: batches delivered by sources, taken into the runtime a record per message
 * (record.c) within the in-flight bound (loop.max_in_flight).
 *
 * Backpressure holds batches instead of pausing partitions. Past max_in_flight
 * uncommitted messages the loop keeps delivered batches aside, unprocessed; a
 * source may have at most TL_BATCHES_OUT batches not yet taken in, so its thread
 * then waits in deliver and fetches nothing more. Kafka's own prefetch stays bounded
 * by queued.max.messages.kbytes, ZeroMQ's by the socket's high-water mark; and
 * nothing fetched is thrown away and fetched again, as pausing a librdkafka
 * partition does with its prefetched messages.
 *
 * A source whose thread must keep calling its library (a Kafka consumer that does
 * not poll within max.poll.interval.ms is dropped from its group) says how long it
 * may wait (ops->hold_limit_ms). A deliver that waits longer asks the loop to pause
 * the source, then returns; the source goes on polling, delivers at most what it had
 * fetched before the pause (held with the rest; the Kafka source keeps it back itself),
 * and is resumed once no batch is held any more.
 *
 * Thread rules: tl__intake_deliver runs on a source's thread; it waits on intake_cv
 * under svc->mu and reaches the loop only through tl_loop_call_threadsafe. The rest
 * runs on the loop thread.
 */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tl_batch {
    tl_batch *next;
    tl_source_state *src;
    size_t first; /* messages before it are taken in already */
    size_t n;
    tl_msg *msgs[];
};

static tl_route_state *route_of(tl_service *svc, tl_source_state *src)
{
    for (size_t r = 0; r < svc->nroutes; r++)
        if (svc->routes[r].src == src)
            return &svc->routes[r];
    return NULL;
}

/* Wall-clock milliseconds: tl-first-seen-ms is read by other processes, so it cannot be
 * the loop's monotonic clock. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes a run of delivered messages in, a record each; while stopping, gives them back. */
static void take_msgs(tl_service *svc, tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_route_state *route = route_of(svc, src);
    int64_t seen_ms = wall_ms(); /* one clock read a batch: it arrived at once */
    for (size_t i = 0; i < n; i++) {
        /* The source thread wrote each message on another core: start fetching a few
         * ahead so that the loads overlap instead of stalling one by one. */
        if (i + 4 < n)
            __builtin_prefetch(msgs[i + 4]);
        if (!route || atomic_load(&svc->stopping)) {
            src->ops->release(src->handle, msgs[i]);
            continue;
        }
        tl__record_take(svc, src, route, msgs[i], seen_ms);
    }
}

/* A batch is in: its source may send another. */
static void batch_taken(tl_source_state *src)
{
    tl_service *svc = src->svc;
    pthread_mutex_lock(&svc->mu);
    src->batches_out--;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Room left below max_in_flight. Counted up to the commit position, not just
 * unsettled: finished messages above an unsettled one are delivered again after a
 * crash, so they count too. */
static size_t room(const tl_service *svc)
{
    uint64_t n = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    return n >= svc->cfg->max_in_flight ? 0 : svc->cfg->max_in_flight - (size_t)n;
}

static bool over_bound(const tl_service *svc)
{
    return room(svc) == 0;
}

/* Takes in as much of the batch as fits below the bound (a part keeps a batch of 1000
 * from overshooting a bound of 10 by 990); true when it is all in and freed. */
static bool batch_intake(tl_service *svc, tl_batch *b)
{
    size_t k = b->n - b->first;
    if (!atomic_load(&svc->stopping) && k > room(svc))
        k = room(svc);
    take_msgs(svc, b->src, b->msgs + b->first, k);
    b->first += k;
    if (b->first < b->n)
        return false;
    batch_taken(b->src);
    free(b);
    return true;
}

/* Takes held batches in, in order, while room allows. Hysteresis: only once in-flight
 * fell to half the bound, so a full pipeline does not flap between holding and taking. */
static void take_held(tl_service *svc)
{
    if (!svc->held_head || atomic_load(&svc->stopping))
        return;
    uint64_t n = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    if (n > svc->cfg->max_in_flight / 2)
        return;
    while (svc->held_head && !over_bound(svc)) {
        tl_batch *b = svc->held_head;
        tl_batch *next = b->next;
        if (!batch_intake(svc, b))
            break; /* the rest of it waits at the head */
        svc->held_head = next;
        if (!svc->held_head)
            svc->held_tail = NULL;
    }
}

static void room_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    take_held(arg);
}

/* hooks.room_freed: a message settled. Held batches go in on the loop's next turn,
 * never from inside the settle that made the room. */
static void room_freed(tl_service *svc)
{
    if (!svc->held_head || svc->room_timer.heap_index != SIZE_MAX || atomic_load(&svc->stopping))
        return;
    uint64_t n = atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    if (n <= svc->cfg->max_in_flight / 2)
        tl_timer_start(&svc->room_timer, 0, room_fire, svc);
}

void tl__intake_init(tl_service *svc)
{
    svc->hooks.room_freed = room_freed;
    tl_timer_init(svc->loop, &svc->room_timer);
}

void tl__intake_resume(tl_service *svc)
{
    take_held(svc);
}

/* Loop thread: a deliver waited past its source's hold limit. Pauses the source while
 * batches are still held; either way the waiting deliver is let go or may ask again. */
static void hold_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_source_state *src = arg;
    tl_service *svc = src->svc;
    bool pause = svc->held_head && !atomic_load(&svc->stopping);
    if (pause)
        src->ops->pause(src->handle, true);
    pthread_mutex_lock(&svc->mu);
    src->hold_paused = pause;
    src->hold_asked = pause;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
    if (!pause)
        return;
    TL_STAT_ADD(svc, source_pauses, 1);
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)src->hold_limit_ms);
    tl_kv f[] = {{"source", src->cfg->name}, {"hold_limit_ms", ms}};
    tl__log(svc, TL_LEVEL_WARN, "source_paused", f, 2);
}

void tl__intake_hold_resume(tl_service *svc)
{
    if (svc->held_head || atomic_load(&svc->stopping))
        return;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        if (!src->hold_paused)
            continue;
        src->ops->pause(src->handle, false);
        pthread_mutex_lock(&svc->mu);
        src->hold_paused = false;
        src->hold_asked = false;
        pthread_mutex_unlock(&svc->mu);
        tl_kv f[] = {{"source", src->cfg->name}};
        tl__log(svc, TL_LEVEL_INFO, "source_resumed", f, 1);
    }
}

/* Source thread, with svc->mu held, while its deliver waits: past the source's hold
 * limit asks the loop, once, to pause the source (see hold_on_loop). */
static void hold_check(tl_source_state *src, int64_t *since_ms)
{
    int64_t now = tl_clock_ns() / 1000000;
    if (*since_ms < 0)
        *since_ms = now;
    if (src->hold_asked || now - *since_ms < src->hold_limit_ms)
        return;
    src->hold_asked = true;
    if (tl_loop_call_threadsafe(src->svc->loop, hold_on_loop, src) != 0)
        src->hold_asked = false;
}

void tl__intake_release_held(tl_service *svc)
{
    while (svc->held_head) {
        tl_batch *b = svc->held_head;
        svc->held_head = b->next;
        for (size_t i = b->first; i < b->n; i++)
            b->src->ops->release(b->src->handle, b->msgs[i]);
        batch_taken(b->src);
        free(b);
    }
    svc->held_tail = NULL;
}

void tl__intake_release_held_of(tl_service *svc, tl_source_state *src, const tl_partition *parts,
                                size_t n)
{
    for (tl_batch *b = svc->held_head; b; b = b->next) {
        if (b->src != src)
            continue;
        size_t keep = b->first;
        for (size_t i = b->first; i < b->n; i++) {
            const tl_msg *m = b->msgs[i];
            bool revoked = false;
            for (size_t k = 0; k < n && !revoked; k++)
                revoked = m->partition == parts[k].partition && m->origin &&
                          strcmp(m->origin, parts[k].topic) == 0;
            if (revoked)
                b->src->ops->release(b->src->handle, b->msgs[i]);
            else
                b->msgs[keep++] = b->msgs[i];
        }
        b->n = keep;
    }
}

static void batch_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_batch *b = arg;
    tl_service *svc = b->src->svc;
    if (!svc->held_head && batch_intake(svc, b))
        return;
    /* Past the bound (or behind batches already held): kept aside, in order. */
    if (!svc->held_head)
        TL_STAT_ADD(svc, paused, 1);
    b->next = NULL;
    if (svc->held_tail)
        svc->held_tail->next = b;
    else
        svc->held_head = b;
    svc->held_tail = b;
}

/*
 * Waits while TL_BATCHES_OUT batches of this source are not taken in
 * yet: fetching overlaps with intake, and backpressure (batches held by the loop)
 * stops the source. During shutdown it does not wait, since the loop may be joining
 * this very thread in ops->stop.
 */
void tl__intake_deliver(tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_service *svc = src->svc;
    tl_batch *b = malloc(sizeof(*b) + n * sizeof(tl_msg *));
    if (b) {
        b->src = src;
        b->first = 0;
        b->n = n;
        memcpy(b->msgs, msgs, n * sizeof(tl_msg *));
    }
    pthread_mutex_lock(&svc->mu);
    int64_t since_ms = -1;
    /* Paused for a long hold, batches no longer wait: the thread must keep calling its
     * library, and a paused source delivers only what it had fetched already. */
    while (src->batches_out >= TL_BATCHES_OUT && !src->hold_paused &&
           !atomic_load(&svc->stopping)) {
        if (src->hold_limit_ms > 0)
            hold_check(src, &since_ms);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 50 * 1000000L; /* stopping is set without a signal */
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&svc->intake_cv, &svc->mu, &dl);
    }
    src->batches_out++;
    pthread_mutex_unlock(&svc->mu);
    if (!b || tl_loop_call_threadsafe(svc->loop, batch_on_loop, b) != 0) {
        /* Given back unprocessed and uncommitted: a broker delivers them again. */
        for (size_t i = 0; i < n; i++)
            src->ops->release(src->handle, msgs[i]);
        free(b);
        batch_taken(src);
    }
}
