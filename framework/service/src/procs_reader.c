/*
 * Taking the results of isolation: process (see procs.c): what the root loop's poller
 * calls to take them (tl__procs_collect) and to mark the rings before it sleeps, and
 * the route's reader, one thread that reads what the worker processes write on their
 * sockets (outputs, their end), starts, reaps and replaces the processes, passes
 * cancellations on, and takes the results every few milliseconds too while messages
 * are out (the loop may be busy elsewhere), until the route stops. Thread rules as
 * procs.c's.
 */
#include "procs_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    return tl_clock_ns() / 1000000;
}

/* The error text of a worker process that ended while it handled a message. */
static void ended_text(int status, char *text, size_t cap)
{
    if (status != -1 && WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        if (name)
            snprintf(text, cap, "handler crashed: SIG%s", name);
        else
            snprintf(text, cap, "handler crashed: signal %d", WTERMSIG(status));
    } else if (status != -1 && WIFEXITED(status)) {
        snprintf(text, cap, "handler process exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(text, cap, "handler process lost");
    }
}

/* Completes the tasks of the results the reader took from the slot (mu held on entry and
 * exit, let go meanwhile): completing is an atomic and perhaps a wake-up of the loop
 * each, which the loop thread need not wait for. */
static void flush_done(slot *s)
{
    if (!s->done.head)
        return;
    queue done = s->done;
    s->done = (queue){0};
    pthread_mutex_unlock(&s->all->mu);
    for (entry *e = done.head, *next; e; e = next) {
        next = e->next;
        tl_task_complete(e->task, NULL, e->err);
        tl_recycler_put(s->all->entries, e);
    }
    pthread_mutex_lock(&s->all->mu);
}

/* Gives the slot a process, on its reader with mu held on entry and exit: the fork
 * is made with mu let go, so that a slow one holds up no other slot. 0, or TL_ESYS
 * (the messages that were to go to it fail, as none could go anywhere else first). */
static int start_process(slot *s)
{
    tl_proc_id id;
    pthread_mutex_unlock(&s->all->mu);
    /* No process is in the slot: the last one was reaped, and wrote nothing since. */
    tl__ring_reset(s->ring);
    int rc = tl__zygote_spawn(s->all->svc, s->all->route, s->ring, &id);
    pthread_mutex_lock(&s->all->mu);
    if (rc != 0) {
        s->starting = false;
        entry *e;
        while ((e = tl__procq_pop(&s->sent)))
            tl__procs_finish(s->all, e, TL_ESYS, NO_START);
        while ((e = tl__procq_pop(&s->all->backlog)))
            tl__procs_finish(s->all, e, TL_ESYS, NO_START);
        return TL_ESYS;
    }
    s->starting = false;
    s->id = id;
    s->in.fd = id.fd;
    s->in.start = s->in.end = 0;
    s->nsent = 0;
    atomic_store_explicit(&s->taken, 0, memory_order_relaxed);
    s->killed = 0;
    s->cancel_at = -1;
    return 0;
}

/* Takes the slot's first entry (mu held); the next one starts running at now_ns. */
static entry *pop_running(slot *s, int64_t now_ns)
{
    entry *e = tl__procq_pop(&s->sent);
    atomic_store_explicit(&s->taken, e->seq, memory_order_relaxed);
    s->cancel_at = -1;
    if (s->sent.head)
        tl_task_set_started_ns(s->sent.head->task, now_ns);
    return e;
}

/* Completes the tasks of the results the slot's process put in its ring (mu held).
 * Those taken together ended within one wake-up: the clock is read once for them. A
 * result whose outputs have not all come on the socket yet waits for them
 * (want_emits): they were written before it. */
static void take_results(slot *s)
{
    int err;
    bool emits;
    char text[TL_RING_TEXT_MAX];
    int64_t now = 0;
    s->want_emits = false;
    while (s->sent.head &&
           tl__ring_get(s->ring, s->sent.head->seq, &err, text, sizeof(text), &emits)) {
        if (emits && s->sent.head->emits == EMITS_NONE) {
            s->want_emits = true;
            return;
        }
        if (emits && s->sent.head->emits == EMITS_BAD) {
            err = TL_ESYS;
            snprintf(text, sizeof(text), "a worker process's outputs could not be read");
        }
        if (!now)
            now = tl_clock_ns();
        entry *e = pop_running(s, now);
        if (text[0])
            tl_task_set_error_text(e->task, text);
        e->err = err;
        tl__procq_push(&s->done, e);
    }
}

static int attach_one(void *arg, uint32_t index, const tl_out_msg *m)
{
    entry *e = arg;
    return tl__emit_queue_at(e->rec, index, m);
}

/* Takes the frames the slot's process wrote (mu held): a message's outputs join its
 * record's queue, to go once its result is taken, as a handler thread's would; those
 * of a message that stalled meanwhile (its task cancelled) are dropped. A process
 * writing what cannot be a frame is killed (its running message fails as a crash). */
static void take_frames(slot *s)
{
    char type;
    const char *body;
    uint32_t len;
    int rc;
    while ((rc = tl__frame_next(&s->in, &type, &body, &len)) == 1) {
        uint64_t seq;
        if (type != TL_FRAME_EMITS || len < sizeof(seq))
            continue;
        memcpy(&seq, body, sizeof(seq));
        entry *e = s->sent.head;
        while (e && e->seq != seq)
            e = e->next;
        if (!e || e->emits != EMITS_NONE)
            continue;
        if (tl_cancelled(e->task)) {
            e->emits = EMITS_IN;
            continue;
        }
        e->emits =
            tl__frame_decode_emits(body, len, &seq, attach_one, e) == 0 ? EMITS_IN : EMITS_BAD;
    }
    if (rc < 0 && s->id.pid > 0) {
        s->in.start = s->in.end;
        kill(s->id.pid, SIGKILL);
    }
}

/* The slot's process ended (or was killed), mu held: reaps it, takes the results it
 * left in the ring, fails the message it ran, and puts the ones behind it back at the
 * head of the backlog. A process killed for a message whose result came all the same
 * (it returned just before the kill) was running the next one, through no fault of
 * its own: that one goes back too. */
static void replace(slot *s)
{
    struct tl_procs *all = s->all;
    tl_proc_id old = s->id;
    /* No slot sends to it from now on: its sent list stays as it is while mu is let go
     * for the reap. */
    s->id = (tl_proc_id){.pid = 0, .fd = -1};
    s->out.n = 0;
    pthread_mutex_unlock(&all->mu);
    close(old.fd);
    int status = tl__zygote_reap(all->svc, old.pid);
    pthread_mutex_lock(&all->mu);
    /* Dead, it wrote its last result: the message after it is the one it died in. */
    take_results(s);
    flush_done(s);
    atomic_fetch_add(&all->svc->st.processes_replaced, 1);
    entry *run = s->sent.head;
    entry *ran = run && (!s->killed || run->seq == s->killed) ? pop_running(s, 0) : NULL;
    if (ran && s->killed) {
        tl__procs_finish(all, ran, TL_ECANCELED,
                         all->closed ? STOPPED : "handler killed: it ignored its cancellation");
    } else if (ran) {
        char text[TL_RING_TEXT_MAX];
        atomic_fetch_add(&all->svc->st.handler_crashes, 1);
        ended_text(status, text, sizeof(text));
        tl__procs_finish(all, ran, TL_EFAIL, text);
    }
    entry *e;
    if (all->closed) {
        while ((e = tl__procq_pop(&s->sent)))
            tl__procs_finish(all, e, TL_ECANCELED, STOPPED);
        return;
    }
    for (e = s->sent.head; e; e = e->next)
        tl_task_set_started_ns(e->task, 0);
    if (s->sent.tail) {
        s->sent.tail->next = all->backlog.head;
        all->backlog.head = s->sent.head;
        if (!all->backlog.tail)
            all->backlog.tail = s->sent.tail;
        all->backlog.n += s->sent.n;
    }
    s->starting = s->sent.head != NULL;
    s->sent = (queue){0};
}

/* Passes a cancellation of the running message on, and kills the process past its
 * grace, or at once when the service ends (mu held). */
static void watch_cancel(slot *s)
{
    entry *run = s->sent.head;
    if (!run || s->killed)
        return;
    if (s->all->closed) {
        kill(s->id.pid, SIGKILL);
        s->killed = run->seq;
        return;
    }
    if (!tl_cancelled(run->task))
        return;
    int64_t now = mono_ms();
    if (s->cancel_at < 0) {
        s->cancel_at = now;
        tl__frame_send_cancel(s->id.fd, run->seq);
    } else if (now - s->cancel_at >= TL_KILL_GRACE_MS) {
        kill(s->id.pid, SIGKILL);
        s->killed = run->seq;
    }
}

size_t tl__procs_collect(struct tl_procs *all, int64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd < 0)
            continue;
        take_results(s);
        if (!s->done.n)
            continue;
        n += s->done.n;
        tl__procs_refill(s, now);
        tl__procs_write_out(s);
        flush_done(s);
    }
    slot *more = n ? tl__procs_to_start(all, now) : NULL;
    if (more) {
        more->starting = true;
        tl__procs_wake_reader(all);
    }
    return n;
}

bool tl__procs_mark_asleep(struct tl_procs *all)
{
    bool ready = false;
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd < 0 || s->want_emits)
            continue;
        uint64_t next = s->sent.head ? s->sent.head->seq : s->nsent + 1;
        ready |= !tl__ring_sleep(s->ring, next);
    }
    return ready;
}

/* Has the reader look again at once (from a thread other than the reader). */
void tl__procs_wake_reader(struct tl_procs *all)
{
    uint64_t one = 1;
    /* A full eventfd (EAGAIN) has a wake-up pending already; on any other failure the
     * reader looks again within IDLE_POLL_MS all the same. */
    ssize_t rc = write(all->wake_fd, &one, sizeof(one));
    (void)rc;
}

/* Looks after one slot (mu held; let go while tasks complete, a process starts):
 * starts its process when asked to, takes its results, sends it what waits, passes
 * cancellations on. */
static void tend(slot *s)
{
    if (s->id.fd < 0) {
        if (s->starting && !s->all->closed && start_process(s) == 0) {
            tl__procs_refill(s, tl_clock_ns());
            tl__procs_write_out(s);
        }
        return;
    }
    take_results(s);
    tl__procs_refill(s, tl_clock_ns());
    tl__procs_write_out(s);
    flush_done(s);
    watch_cancel(s);
}

/* Waits for what a process writes on its socket (outputs, or its end), for
 * wake_reader, or for the next look at the results and cancellations (mu held on
 * entry and exit, let go while it waits), and takes what the sockets bring: a slot
 * whose process is gone is replaced. */
static void wait_all(struct tl_procs *all)
{
    struct pollfd *pf = all->pfds;
    bool ready = false, running = false;
    pf[0] = (struct pollfd){.fd = all->wake_fd, .events = POLLIN};
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        pf[i + 1] = (struct pollfd){.fd = s->id.fd, .events = POLLIN};
        if (s->id.fd < 0)
            ready |= s->starting && !all->closed;
        else
            running |= s->sent.head != NULL;
    }
    int wait = ready ? 0 : running ? WAIT_POLL_MS : IDLE_POLL_MS;
    pthread_mutex_unlock(&all->mu);
    int n = poll(pf, all->nslots + 1, wait);
    if (n > 0 && (pf[0].revents & POLLIN)) {
        /* Resets the count; what woke the reader is looked at below in any case. */
        uint64_t count;
        ssize_t rc = read(all->wake_fd, &count, sizeof(count));
        (void)rc;
    }
    pthread_mutex_lock(&all->mu);
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd < 0) /* only the reader changes a slot's fd: pf[i + 1] is its own */
            continue;
        bool ended = false;
        if (n > 0 && pf[i + 1].revents) {
            int got = tl__frame_fill(&s->in);
            /* Out of memory for the read is no end: the next wake-up reads again. */
            ended = got == TL_ECLOSED || (got == TL_ESYS && errno != EINTR && errno != EAGAIN);
        }
        take_frames(s);
        if (ended)
            replace(s);
    }
}

/* Whether the reader's work is over: the route stops, and no slot has messages. */
static bool all_idle_closed(const struct tl_procs *all)
{
    if (!all->closed)
        return false;
    for (size_t i = 0; i < all->nslots; i++)
        if (all->slots[i].sent.head)
            return false;
    return true;
}

/* The route's reader: results, cancellations, starts and replacements of every slot's
 * process, until the route stops. */
void *tl__procs_reader(void *arg)
{
    struct tl_procs *all = arg;
    pthread_mutex_lock(&all->mu);
    for (;;) {
        for (size_t i = 0; i < all->nslots; i++)
            tend(&all->slots[i]);
        /* With the results just taken, a fast process on one message for long is seen:
         * what waits behind it gets another process, as it would for a slow one. */
        slot *more = tl__procs_to_start(all, tl_clock_ns());
        if (more) {
            more->starting = true;
            continue;
        }
        /* Stopping and idle: tl__procs_free closes the sockets, the processes exit. */
        if (all_idle_closed(all))
            break;
        wait_all(all);
    }
    pthread_mutex_unlock(&all->mu);
    return NULL;
}
