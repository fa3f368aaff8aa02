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
 * A source whose thread must keep calling its library is paused instead past its hold
 * limit (deliver.c, the source thread's side).
 *
 * Batches also wait for their route: its rate limit (rate.c) or open breaker
 * (breaker.c). Such a batch holds back the later batches of its own source only (each
 * route reads a source of its own), so that other routes keep their pace; a batch that
 * waits for room holds back every batch delivered after it, so that room goes to them
 * in order.
 *
 * Thread rules: loop thread, but for tl__intake_batch_new and tl__intake_batch_taken
 * (any thread).
 */
#include "runtime.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tl_batch {
    tl_batch *next;
    tl_source_state *src;
    size_t first; /* messages before it are taken in already */
    size_t n;
    bool by_route; /* it stopped for its route's rate limit or breaker, not for room */
    tl_msg *msgs[];
};

static tl_route_state *route_of(tl_service *svc, tl_source_state *src)
{
    for (size_t r = 0; r < svc->nroutes; r++)
        if (svc->routes[r].src == src)
            return &svc->routes[r];
    return NULL;
}

void tl__intake_batch_taken(tl_source_state *src)
{
    tl_service *svc = src->svc;
    pthread_mutex_lock(&svc->mu);
    src->batches_out--;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
}

/* What counts against max_in_flight: the uncommitted messages, or, while commit
 * acknowledgements are overdue, every unacknowledged one (see acks.c). */
static size_t uncommitted(const tl_service *svc)
{
    size_t n = (size_t)atomic_load_explicit(&svc->st.uncommitted, memory_order_relaxed);
    return svc->acks_late && svc->unacked > n ? svc->unacked : n;
}

/* Room left below max_in_flight. Counted up to the commit position, not just
 * unsettled: finished messages above an unsettled one are delivered again after a
 * crash, so they count too. */
static size_t room(const tl_service *svc)
{
    size_t n = uncommitted(svc);
    return n >= svc->cfg->max_in_flight ? 0 : svc->cfg->max_in_flight - n;
}

/* ---------------------------------------------------------------- fair intake */

/*
 * Sources deliver a partition's backlog in long runs (Kafka fetches up to a megabyte
 * of one partition at a time), so taking batches in as they come would fill the
 * window with the first partition's messages while the others wait behind them:
 * with ordering partition, at one message at a time. Once the window is half full
 * (contended), a partition that holds its share (max_in_flight / assigned partitions)
 * takes no more; under ordering partition it takes no more than its share at any time,
 * since what it holds past that only waits its turn while a partition delivered later
 * finds the window full (with max_in_flight 10000 and eight partitions, the last ones
 * started seconds after the first): its next messages are kept back in its own queue, in order, and
 * the source is asked to stop fetching it (pause_partitions) while the others flow.
 * Kept-back messages go in as the partition's share frees, or once the window is no
 * longer contended. A source without pause_partitions (Kafka: its consumer queue holds
 * each partition's fetches in long runs, as producers batched them) may keep back
 * max_in_flight messages, or loop.kept_back_mb of them if that is more; past that its
 * batches wait whole. The budget lets intake read past one partition's run to the
 * others'. It costs memory only: kept-back messages are fetched already, and a
 * failure repeats no more for them, since the window counts every message until its
 * commit is acknowledged (acks.c), so that what is kept back is never handled without
 * room in it.
 */

/* What a kept-back message takes: its bytes and about what its wrapper and the
 * library's message take. */
static size_t kept_bytes(const tl_msg *m)
{
    return m->len + m->key_len + 256;
}

static size_t part_uncommitted(const tl_partition_state *p)
{
    return (size_t)(p->offsets.tail - p->offsets.head);
}

static size_t share(const tl_service *svc)
{
    size_t s = svc->cfg->max_in_flight / (svc->nassigned ? svc->nassigned : 1);
    return s ? s : 1;
}

static bool contended(const tl_service *svc)
{
    return uncommitted(svc) >= svc->cfg->max_in_flight / 2;
}

/* True when the partition holds its share of a contended window, or of any window
 * when its route takes its messages one at a time. */
static bool over_share(const tl_service *svc, const tl_partition_state *p)
{
    return part_uncommitted(p) >= share(svc) && (p->src->serial || contended(svc));
}

/* True when the partition's next message must be kept back: it has some kept back
 * already (order), or it holds its share (over_share). */
static bool must_wait(const tl_service *svc, const tl_partition_state *p)
{
    return p->held_n > 0 || over_share(svc, p);
}

/* Asks the partition's source to stop (true) or go on (false) fetching it. */
static void hold_at_source(tl_partition_state *p, bool hold)
{
    const tl_source_ops *ops = p->src->ops;
    if (!ops->pause_partitions || p->held_at_source == hold)
        return;
    tl_partition tp = {p->topic, p->partition};
    tl__source_pause_partitions(p->src, &tp, 1, hold);
    p->held_at_source = hold;
}

/* Keeps msg back at the end of its partition's queue; false when out of memory. */
static bool part_hold(tl_service *svc, tl_partition_state *p, tl_msg *msg)
{
    if (p->held_n == p->held_cap) {
        size_t cap = p->held_cap ? 2 * p->held_cap : 64;
        tl_msg **ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return false;
        for (size_t i = 0; i < p->held_n; i++)
            ring[i] = p->held[(p->held_first + i) % p->held_cap];
        free(p->held);
        p->held = ring;
        p->held_cap = cap;
        p->held_first = 0;
    }
    p->held[(p->held_first + p->held_n) % p->held_cap] = msg;
    if (p->held_n++ == 0)
        tl_list_push_back(&svc->held_parts, &p->held_link);
    svc->held_msgs++;
    svc->held_bytes += kept_bytes(msg);
    hold_at_source(p, true);
    return true;
}

static tl_msg *part_unhold(tl_service *svc, tl_partition_state *p)
{
    tl_msg *m = p->held[p->held_first];
    p->held_first = (p->held_first + 1) % p->held_cap;
    p->held_n--;
    svc->held_msgs--;
    svc->held_bytes -= kept_bytes(m);
    return m;
}

/* The partition's queue is empty now: out of the list, and fetched again. */
static void part_unlisted(tl_service *svc, tl_partition_state *p)
{
    tl_list_remove(&svc->held_parts, &p->held_link);
    hold_at_source(p, false);
}

/* Gives back every message the partition kept back; with forget, the source is not
 * told (a revoked partition's pause ends with its assignment). */
static void part_release_held(tl_service *svc, tl_partition_state *p, bool forget)
{
    if (p->held_n == 0)
        return;
    while (p->held_n > 0)
        p->src->ops->release(p->src->handle, part_unhold(svc, p));
    if (forget)
        p->held_at_source = false;
    part_unlisted(svc, p);
}

/* Whether a message that must wait can be kept back in its partition's queue. */
static bool can_hold(const tl_service *svc, const tl_source_state *src)
{
    return src->ops->pause_partitions || svc->held_msgs < svc->cfg->max_in_flight ||
           svc->held_bytes < (svc->cfg->kept_back_mb << 20);
}

static void out_of_memory(tl_service *svc, tl_source_state *src, tl_msg *msg)
{
    /* Not tracked means never committed past: the broker delivers it again. */
    src->ops->release(src->handle, msg);
    tl__log(svc, TL_LEVEL_ERROR, "out_of_memory", NULL, 0);
}

/* Messages of partitions revoked and not assigned again, given back from one batch:
 * their next owner reads them from the committed position, so handling them here would
 * handle them twice. One event per batch, naming the first, whatever their number. */
typedef struct stale_count {
    size_t n;
    char topic[128];
    int32_t partition;
    int64_t offset;
} stale_count;

static void stale(stale_count *sc, tl_source_state *src, tl_msg *msg)
{
    if (sc->n++ == 0) {
        snprintf(sc->topic, sizeof(sc->topic), "%s", msg->origin ? msg->origin : "");
        sc->partition = msg->partition;
        sc->offset = msg->offset;
    }
    src->ops->release(src->handle, msg);
}

static void stale_report(tl_service *svc, const tl_source_state *src, const stale_count *sc)
{
    if (sc->n == 0 || !tl__log_on(svc, TL_LEVEL_WARN))
        return;
    char n[24], part[16], off[24];
    snprintf(n, sizeof(n), "%zu", sc->n);
    snprintf(part, sizeof(part), "%d", (int)sc->partition);
    snprintf(off, sizeof(off), "%lld", (long long)sc->offset);
    tl_kv f[] = {{"source", src->cfg->name},
                 {"count", n},
                 {"topic", sc->topic},
                 {"partition", part},
                 {"offset", off}};
    tl__log(svc, TL_LEVEL_WARN, "stale_messages_given_back", f, 5);
}

static void room_fire(tl_timer *timer, void *arg);

/* Whether the route may take a message in now: its breaker is not open (breaker.c)
 * and its rate limit has a token (rate.c). The breaker is asked first, so that a
 * message it keeps out takes no token (the burst is whole when it closes) and the
 * rate's waits alone are counted; the probe is taken only once the rate let the message
 * through. Otherwise the message waits, and
 * rate_timer takes held messages in when the soonest token or cooldown's end is due
 * (a probe's outcome calls intake_retry instead). */
static bool route_admit(tl_service *svc, tl_route_state *route, const tl_msg *m)
{
    tl_route_state *shared = route->shared; /* with shards, the root's: one for the route */
    if (!shared->rate.on && !shared->breaker.on)
        return true; /* not even a clock read */
    int64_t now = tl_clock_ns();
    int64_t wait = tl__breaker_wait(svc, route, now);
    if (wait == 0 && shared->rate.on) {
        wait = tl__rate_take(&shared->rate, now);
        if (wait > 0)
            atomic_fetch_add_explicit(&route->rate_waits, 1, memory_order_relaxed);
        atomic_store_explicit(&route->rate_waiting, wait > 0, memory_order_relaxed);
    }
    if (wait == 0 && tl__breaker_taken(route, m))
        return true;
    if (wait == 0 || wait == INT64_MAX)
        return false; /* another shard's message is the probe: its outcome decides */
    /* One timer for every route: moved sooner when this wait ends first. */
    int64_t ms = (wait + 999999) / 1000000;
    if (svc->rate_timer.heap_index == SIZE_MAX || now + ms * 1000000 < svc->rate_timer.due_ns)
        tl_timer_start(&svc->rate_timer, ms, room_fire, svc);
    return false;
}

/* Takes in what partitions kept back, as far as their shares and the window allow. */
static void take_parts_held(tl_service *svc)
{
    int64_t seen_ms = tl__wall_ms();
    for (tl_link *l = svc->held_parts.head, *next; l; l = next) {
        next = l->next;
        tl_partition_state *p = tl_list_item(l, tl_partition_state, held_link);
        tl_route_state *route = route_of(svc, p->src);
        while (p->held_n > 0 && room(svc) > 0 && !over_share(svc, p) &&
               (!route || route_admit(svc, route, p->held[p->held_first]))) {
            tl_msg *m = part_unhold(svc, p);
            if (route)
                tl__record_take(svc, route, p, m, seen_ms);
            else
                p->src->ops->release(p->src->handle, m);
        }
        if (p->held_n == 0)
            part_unlisted(svc, p);
    }
}

/* ---------------------------------------------------------------- batches */

/* Takes in as much of the batch as the bound allows, message by message (a part
 * keeps a batch of 1000 from overshooting a bound of 10 by 990); messages of a
 * partition that must wait are kept back in its queue. True when the batch is all in
 * and freed; while stopping, its messages are given back instead. */
static bool batch_intake(tl_service *svc, tl_batch *b)
{
    tl_source_state *src = b->src;
    tl_route_state *route = route_of(svc, src);
    bool drop = !route || atomic_load(&svc->stopping);
    int64_t seen_ms = tl__wall_ms(); /* one clock read a batch: it arrived at once */
    size_t left = room(svc);
    stale_count sc = {0};
    b->by_route = false;
    for (; b->first < b->n; b->first++) {
        /* The source thread wrote each message on another core: start fetching a few
         * ahead so that the loads overlap instead of stalling one by one. */
        if (b->first + 4 < b->n)
            __builtin_prefetch(b->msgs[b->first + 4]);
        tl_msg *m = b->msgs[b->first];
        if (drop) {
            src->ops->release(src->handle, m);
            continue;
        }
        tl_partition_state *p = tl__partition_of(svc, src, m);
        if (!p) {
            out_of_memory(svc, src, m);
            continue;
        }
        if (!p->assigned || p->revoking) {
            stale(&sc, src, m);
            continue;
        }
        /* A full window holds the whole batch (backpressure reaches the source); with
         * room left, only a partition that must wait keeps its message back. Behind
         * messages kept back already, a message needs no room: it joins them. */
        if (left == 0 && (p->held_n == 0 || !can_hold(svc, src)))
            break;
        if (must_wait(svc, p)) {
            if (!can_hold(svc, src))
                break; /* the rest of the batch waits whole */
            if (!part_hold(svc, p, m))
                out_of_memory(svc, src, m);
            continue;
        }
        if (!route_admit(svc, route, m)) {
            b->by_route = true; /* the rest of the batch waits for the route's rate or breaker */
            break;
        }
        tl__record_take(svc, route, p, m, seen_ms);
        left--;
    }
    stale_report(svc, src, &sc);
    if (b->first < b->n)
        return false;
    tl__intake_batch_taken(src);
    free(b);
    return true;
}

/* Whether held batches may go in: once in-flight fell to half the bound, or an eighth
 * of it is free (hysteresis: a full pipeline does not flap between holding and taking
 * one message at a time). An eighth, not only half: partitions taking their shares
 * from their own queues may keep the window over half for good, and held batches may
 * carry the only messages of the others. While partitions keep messages back, at any
 * time: the head batch's messages of those partitions join their queues without
 * room, so that the source is never held behind them. */
static bool batches_may_go(const tl_service *svc)
{
    return svc->held_head && (uncommitted(svc) <= svc->cfg->max_in_flight / 2 ||
                              room(svc) >= svc->cfg->max_in_flight / 8 || svc->held_parts.head);
}

/* Whether a held batch waits for room: batches delivered after it wait behind it, so
 * that room goes to batches in the order they came. At most TL_BATCHES_OUT a source. */
bool tl__intake_room_awaited(const tl_service *svc)
{
    for (const tl_batch *b = svc->held_head; b; b = b->next)
        if (!b->by_route)
            return true;
    return false;
}

/* Takes kept-back and held messages in, in order, while room allows. A batch that
 * waits for its route's rate limit or breaker holds back later batches of its own
 * source only: those of other routes go past it. */
static void take_held(tl_service *svc)
{
    if (atomic_load(&svc->stopping))
        return;
    take_parts_held(svc);
    if (!batches_may_go(svc))
        return;
    uint64_t pass = ++svc->held_passes;
    for (tl_batch *prev = NULL, *b = svc->held_head, *next; b; b = next) {
        next = b->next;
        tl_source_state *src = b->src;
        if (src->held_pass != pass && batch_intake(svc, b)) {
            src->held_batches--;
            *(prev ? &prev->next : &svc->held_head) = next;
            if (svc->held_tail == b)
                svc->held_tail = prev;
            continue;
        }
        if (src->held_pass == pass || b->by_route) {
            src->held_pass = pass; /* the rest of its source's batches wait behind it */
            prev = b;
            continue;
        }
        break; /* it waits for room, and the rest behind it */
    }
}

static void room_fire(tl_timer *timer, void *arg)
{
    (void)timer;
    take_held(arg);
}

/* hooks.room_freed: a message of part settled. What was kept back or held goes in on
 * the loop's next turn, never from inside the settle that made the room. */
static void room_freed(tl_service *svc, tl_partition_state *part)
{
    if ((!svc->held_head && !svc->held_parts.head) || svc->room_timer.heap_index != SIZE_MAX ||
        atomic_load(&svc->stopping))
        return;
    bool part_may = part->held_n > 0 && part_uncommitted(part) <= share(svc) / 2;
    if (part_may || batches_may_go(svc) || (svc->held_parts.head && !contended(svc)))
        tl_timer_start(&svc->room_timer, 0, room_fire, svc);
}

/* hooks.intake_retry: a breaker closed or went half-open; held messages go in on the
 * loop's next turn. */
static void intake_retry(tl_service *svc)
{
    if ((svc->held_head || svc->held_parts.head) && svc->room_timer.heap_index == SIZE_MAX &&
        !atomic_load(&svc->stopping))
        tl_timer_start(&svc->room_timer, 0, room_fire, svc);
}

void tl__intake_init(tl_service *svc)
{
    svc->hooks.room_freed = room_freed;
    svc->hooks.intake_retry = intake_retry;
    tl_timer_init(svc->loop, &svc->room_timer);
    tl_timer_init(svc->loop, &svc->rate_timer);
}

void tl__intake_resume(tl_service *svc)
{
    take_held(svc);
}

/* Nothing of the route waits any more: given back by a revoke or a drain. */
static void rate_wait_over(tl_service *svc, tl_source_state *src)
{
    tl_route_state *route = route_of(svc, src);
    if (route && route->shared->rate.on)
        atomic_store_explicit(&route->rate_waiting, false, memory_order_relaxed);
}

void tl__intake_release_held(tl_service *svc)
{
    for (size_t i = 0; i < svc->nsrcs; i++)
        rate_wait_over(svc, &svc->srcs[i]);
    /* The source is stopping or closing: it is not told about each partition. */
    while (svc->held_parts.head)
        part_release_held(svc, tl_list_item(svc->held_parts.head, tl_partition_state, held_link),
                          true);
    while (svc->held_head) {
        tl_batch *b = svc->held_head;
        svc->held_head = b->next;
        for (size_t i = b->first; i < b->n; i++)
            b->src->ops->release(b->src->handle, b->msgs[i]);
        b->src->held_batches--;
        tl__intake_batch_taken(b->src);
        free(b);
    }
    svc->held_tail = NULL;
}

void tl__intake_release_held_of(tl_service *svc, tl_source_state *src, const tl_partition *parts,
                                size_t n)
{
    /* What waits for the rate is given back: the next message of the route may wait
     * again. The source forgets a revoked partition's pause with its assignment. */
    rate_wait_over(svc, src);
    for (size_t k = 0; k < n; k++) {
        tl_partition_state *p = tl__partition_find(svc, src, parts[k].topic, parts[k].partition);
        if (p)
            part_release_held(svc, p, true);
    }
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

void tl__intake_batch_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_batch *b = arg;
    tl_service *svc = b->src->svc;
    /* Batches of other routes waiting for their rate limit or breaker do not hold it. */
    if ((!svc->held_head || (b->src->held_batches == 0 && !tl__intake_room_awaited(svc))) &&
        batch_intake(svc, b))
        return;
    /* Past the bound (or behind batches already held): kept aside, in order. */
    if (!svc->held_head)
        TL_STAT_ADD(svc, paused, 1);
    b->src->held_batches++;
    b->next = NULL;
    if (svc->held_tail)
        svc->held_tail->next = b;
    else
        svc->held_head = b;
    svc->held_tail = b;
}

tl_batch *tl__intake_batch_new(tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_batch *b = malloc(sizeof(*b) + n * sizeof(tl_msg *));
    if (!b)
        return NULL;
    b->next = NULL;
    b->src = src;
    b->first = 0;
    b->n = n;
    b->by_route = false; /* held without a try, it waits for room */
    memcpy(b->msgs, msgs, n * sizeof(tl_msg *));
    return b;
}
