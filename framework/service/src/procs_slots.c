/*
 * The slots of isolation: process (see procs.c): their queues, sending a message to a
 * slot's process, and where each message goes (how many a slot may hold, which slot
 * takes the next). Called by procs.c and procs_reader.c, calling neither. Thread rules
 * as procs.c's: all under the route's mu.
 */
#include "procs_int.h"

#include <stdlib.h>

void tl__procq_push(queue *q, entry *e)
{
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

entry *tl__procq_pop(queue *q)
{
    entry *e = q->head;
    if (!e)
        return NULL;
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    return e;
}

/* Completes the entry's task (text NULL or empty: none) and frees the entry. Safe
 * under mu: the task's callbacks run later, on the loop thread. */
void tl__procs_finish(struct tl_procs *all, entry *e, int err, const char *text)
{
    if (text && text[0])
        tl_task_set_error_text(e->task, text);
    tl_task_complete(e->task, NULL, err);
    tl_recycler_put(all->entries, e);
}

/* Sends the entry to the slot's process (mu held): into its ring, or, too large for
 * that, into the slot's out buffer, which write_out writes. */
static void send_to(slot *s, entry *e)
{
    size_t at = s->out.n;
    if (tl__frame_put_msg(&s->out, e->rec->msg, e->rec->attempt) == TL_ENOMEM) {
        tl__procs_finish(s->all, e, TL_ENOMEM, "message too large for a worker process");
        return;
    }
    if (tl__ring_push(s->ring, s->out.p + at, s->out.n - at))
        s->out.n = at;
    e->seq = ++s->nsent;
    e->emits = EMITS_NONE;
    tl__procq_push(&s->sent, e);
    tl_task_set_started_ns(e->task, s->sent.n == 1 ? tl_clock_ns() : 0);
}

/* Has the slot's process see what send_to sent (mu held): writes the frames of the
 * out buffer, and wakes the process if it sleeps. A write to a process that is gone
 * counts as done (its reader sees the end). */
void tl__procs_write_out(slot *s)
{
    tl__frame_flush(s->id.fd, &s->out);
    tl__ring_req_wake(s->ring);
}

/* Whether the slot's process is known to run its handlers fast: a result came back
 * since it started, and the last handler did not run long. */
static bool known_fast(slot *s)
{
    return s->nsent > s->sent.n && tl__ring_pace(s->ring) != TL_PACE_SLOW;
}

/* Whether the slot's process runs one message for RUN_LONG_NS or more at now_ns (as
 * the reader last saw it; never when now_ns is 0). */
static bool running_long(slot *s, int64_t now_ns)
{
    if (!now_ns || !s->sent.head)
        return false;
    int64_t since = tl_task_started_ns(s->sent.head->task);
    return since > 0 && now_ns - since >= RUN_LONG_NS;
}

/* Whether the slot's process is fast now: known fast, and not running long. */
static bool fast_now(slot *s, int64_t now_ns)
{
    return known_fast(s) && !running_long(s, now_ns);
}

/* Whether the slot could take a message at once: its process has none, or one is
 * starting for it (mu held). */
static bool is_free(const struct tl_procs *all, const slot *s)
{
    return s->id.fd >= 0 ? s->sent.n == 0 : s->starting && !all->closed;
}

/* How many slots are free (mu held). */
static size_t count_free(const struct tl_procs *all)
{
    size_t n = 0;
    for (size_t i = 0; i < all->nslots; i++)
        n += is_free(all, &all->slots[i]);
    return n;
}

/*
 * How many messages the slot may hold now (mu held, now_ns as running_long's). A
 * process running one message for long gets none behind it: they would wait for it,
 * maybe until its timeout. Handlers not known to be fast (none has returned yet, or
 * the last ran long) get one message to a process while another process is free or
 * starting, so that slow ones run side by side rather than queue behind one another;
 * with none free, TL_PROC_AHEAD_SLOW, so that a process never waits for the service
 * between two. Fast ones get TL_PROC_AHEAD and are packed into the first processes
 * (see pick).
 */
static size_t cap(slot *s, bool other_free, int64_t now_ns)
{
    if (running_long(s, now_ns))
        return 1;
    if (known_fast(s))
        return TL_PROC_AHEAD;
    return other_free ? 1 : TL_PROC_AHEAD_SLOW;
}

/* Whether a slot other than s is free, of nfree free ones (count_free). */
static bool other_free(const struct tl_procs *all, const slot *s, size_t nfree)
{
    return nfree > (is_free(all, s) ? 1u : 0u);
}

/* The most processes for fast handlers: light_cap while those counted are all light,
 * fast_cap otherwise. */
static size_t pack_cap(const struct tl_procs *all, bool light)
{
    return light ? all->light_cap : all->fast_cap;
}

/* Whether messages skip slot s (mu held, now_ns the clock): the processes before it
 * are all fast now, and as many as pack_cap, so that fast handlers are packed into as
 * many processes as there are cores for them; the others wait idle for one of those
 * to run long. */
static bool packed_out(const struct tl_procs *all, const slot *s, int64_t now_ns)
{
    size_t fast = 0;
    bool light = true;
    for (const slot *t = all->slots; t < s; t++) {
        if (t->id.fd < 0)
            continue;
        if (!fast_now((slot *)t, now_ns))
            return false;
        light = light && tl__ring_pace(t->ring) == TL_PACE_LIGHT;
        if (++fast >= pack_cap(all, light))
            return true;
    }
    return false;
}

/* Sends the slot what the backlog holds, up to its room, if it has a process (mu
 * held). A message whose attempt was cancelled before it went (its partition
 * revoked) never goes. */
void tl__procs_refill(slot *s, int64_t now)
{
    queue *backlog = &s->all->backlog;
    if (s->id.fd < 0 || s->all->closed || !backlog->head)
        return;
    if (packed_out(s->all, s, now))
        return;
    /* The other slots stay as they are meanwhile. */
    bool others = other_free(s->all, s, count_free(s->all));
    while (backlog->head && s->sent.n < cap(s, others, now)) {
        entry *e = tl__procq_pop(backlog);
        if (tl_cancelled(e->task))
            tl__procs_finish(s->all, e, TL_ECANCELED, NULL);
        else
            send_to(s, e);
    }
}

/*
 * The slot a message goes to (mu held): the first with a process and room under its
 * cap, or NULL (the message waits in the backlog for a result, or for a process grow
 * starts). Fast handlers are so packed into few processes: each process woken for a
 * few messages costs two wake-ups a round, more than a no-op handler costs (on 2 cores
 * one worker process ran no-op messages half again as fast as four sharing them); a
 * packed process that falls behind fills up, and the next takes the rest, up to
 * pack_cap processes (packed_out): past the cores, more only share them.
 */
slot *tl__procs_pick(struct tl_procs *all, int64_t now)
{
    size_t nfree = count_free(all);
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd < 0)
            continue;
        if (packed_out(all, s, now))
            return NULL;
        if (s->sent.n < cap(s, other_free(all, s, nfree), now))
            return s;
    }
    return NULL;
}

/* The room a slot that has or is starting a process counts for tl__procs_to_start:
 * up to its cap for a process fast now, one for any other. */
static size_t room(slot *s, int64_t now_ns)
{
    size_t c = fast_now(s, now_ns) ? TL_PROC_AHEAD : 1;
    return s->sent.n < c ? c - s->sent.n : 0;
}

slot *tl__procs_to_start(struct tl_procs *all, int64_t now_ns)
{
    size_t space = 0, live = 0;
    bool all_fast = true, all_light = true;
    slot *idle = NULL;
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd >= 0 || s->starting) {
            live++;
            space += room(s, now_ns);
            all_fast = all_fast && s->id.fd >= 0 && fast_now(s, now_ns);
            all_light = all_light && s->id.fd >= 0 && tl__ring_pace(s->ring) == TL_PACE_LIGHT;
        } else if (!idle) {
            idle = s;
        }
    }
    if (!idle || all->closed || all->backlog.n <= space)
        return NULL;
    /* Fast handlers' processes past the cores there are only share them: each wakes
     * and sleeps for a few messages, and the service's threads get less of the CPU. */
    if (live >= pack_cap(all, all_light) && all_fast)
        return NULL;
    return idle;
}
