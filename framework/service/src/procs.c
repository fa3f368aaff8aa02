/*
 * The service's side of isolation: process. An attempt of such a route is still a
 * task, so the timeout split, stalls, retries and reroutes are the same as for
 * threads; its function hands the message to the route's worker processes and
 * returns TL_PENDING, and the task completes when the result comes back. A worker
 * thread of the loop is thus never held by a message in a process.
 *
 * A route has one slot per loop worker. A slot has at most one worker process at a
 * time (forked by the zygote when messages wait for it) and up to TL_PROC_AHEAD
 * messages sent to it (TL_PROC_AHEAD_SLOW once its handler ran long), in order: the
 * process handles them one after the other and reads the next ones while a handler
 * runs, so it never waits for the service between two messages. Messages past that
 * wait in the route's backlog, and go to the first slot with room, so one slow
 * handler holds few messages behind it; a process not yet shown fast gets one while
 * another is idle or starting (see cap), so slow handlers run side by side. One thread of the
 * route, its reader, takes the results from each slot's ring in memory shared with the process
 * (ring.c), woken through the process's socket when it sleeps and results wait: one thread for all
 * the slots, not one each, so that on a machine with few cores the processes' results
 * wake one thread, which finds several slots' results at a time. Only the first message of a slot
 * runs, and only that one counts as started for the route's timeout (tl_task_set_started_ns): the
 * others wait as a busy pool's tasks do.
 *
 * A worker process that ends while it holds messages crashed in the first one: the
 * zygote reaps it, that attempt fails with "handler crashed: SIGNAME" (record.c
 * retries it, then reroutes it to on_error.then, logging each step with the
 * message's origin), and the messages behind it go back to the head of the backlog,
 * for a new process, as if nothing happened. Once the running message's task is
 * cancelled (it stalled), the process is told to cancel it; one still running
 * TL_KILL_GRACE_MS later is killed, and again the messages behind it go back. When
 * the service is freed, a worker process still busy is killed at once.
 *
 * Thread rules: tl__procs_run on the loop thread, the route's reader on its own
 * thread; everything of a route's processes is guarded by its mu, which the reader
 * lets go of only to wait for the sockets, to complete tasks, to fork a process and to
 * reap one; the reader alone reads the sockets, starts and reaps the processes; the
 * counters are atomics; tl__procs_check on the loop
 * thread; tl__procs_init, tl__procs_stop and tl__procs_free on the thread that builds
 * and frees the service.
 */
#include "runtime.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* How often the reader looks at running messages' cancellation while any runs, and
 * how soon it sees that the service ends otherwise. */
#define WAIT_POLL_MS 5
#define IDLE_POLL_MS 50
/* What an attempt cut short by the service's end fails with (its message comes again). */
#define STOPPED "handler killed: the service stopped"
#define NO_START "cannot start a worker process"

/* A message on its way to a worker process, and back. */
/* Where the outputs of a message whose result says it emitted (ring.c) stand. */
enum { EMITS_NONE, EMITS_IN, EMITS_BAD };

typedef struct entry {
    tl_task *task;
    tl_rec *rec;
    uint64_t seq; /* its number in the process it was sent to (from 1) */
    int emits;    /* EMITS_*: its 'E' frame taken (or dropped), or unreadable */
    int err;      /* its result, while it waits in its slot's done queue */
    struct entry *next;
} entry;

typedef struct queue {
    entry *head, *tail;
    size_t n;
} queue;

typedef struct slot {
    struct tl_procs *all;
    tl_proc_id id;     /* pid 0 and fd -1: none */
    tl_ring *ring;     /* its process's messages and results */
    queue sent;        /* in order; the head is the one running */
    queue done;        /* results taken, their tasks to complete with mu let go */
    tl_frame_out out;  /* frames to write on the socket (too large for the ring) */
    tl_frame_in in;    /* what the process writes: wake-ups and outputs (reader) */
    bool want_emits;   /* the running one's result is in, its outputs not yet */
    bool asleep;       /* its ring is marked asleep for the reader's wait */
    uint64_t nsent;    /* messages sent to this process */
    int64_t cancel_at; /* when the running one was told to cancel (ms), or -1 */
    uint64_t killed;   /* killed by the service while this message ran, or 0 */
    bool starting;     /* the reader is to start a process */
} slot;

struct tl_procs {
    tl_service *svc;
    tl_route_state *route;
    pthread_mutex_t mu;
    tl_ring *rings;       /* the slots' rings, in one shared mapping */
    tl_recycler *entries; /* taken on the loop thread, given back by any */
    queue backlog;        /* waiting for room in a process */
    bool closed;          /* the service ends: nothing more is sent */
    int wake_fd;          /* an eventfd: a slot is to start, or the route stops */
    struct pollfd *pfds;  /* the reader's: wake_fd, then each slot's socket */
    bool reader_started;  /* joined by tl__procs_stop */
    pthread_t reader;
    size_t nslots;
    slot slots[];
};

static int64_t mono_ms(void)
{
    return tl_clock_ns() / 1000000;
}

static void push_back(queue *q, entry *e)
{
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

static entry *pop_front(queue *q)
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

/* Completes the entry's task (text NULL or empty: none) and frees the entry. Safe
 * under mu: the task's callbacks run later, on the loop thread. */
static void finish(struct tl_procs *all, entry *e, int err, const char *text)
{
    if (text && text[0])
        tl_task_set_error_text(e->task, text);
    tl_task_complete(e->task, NULL, err);
    tl_recycler_put(all->entries, e);
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
        while ((e = pop_front(&s->sent)))
            finish(s->all, e, TL_ESYS, NO_START);
        while ((e = pop_front(&s->all->backlog)))
            finish(s->all, e, TL_ESYS, NO_START);
        return TL_ESYS;
    }
    s->starting = false;
    s->id = id;
    s->in.fd = id.fd;
    s->in.start = s->in.end = 0;
    s->nsent = 0;
    s->killed = 0;
    s->cancel_at = -1;
    return 0;
}

/* Sends the entry to the slot's process (mu held): into its ring, or, too large for
 * that, into the slot's out buffer, which write_out writes. */
static void send_to(slot *s, entry *e)
{
    size_t at = s->out.n;
    if (tl__frame_put_msg(&s->out, e->rec->msg, e->rec->attempt) == TL_ENOMEM) {
        finish(s->all, e, TL_ENOMEM, "message too large for a worker process");
        return;
    }
    if (tl__ring_push(s->ring, s->out.p + at, s->out.n - at))
        s->out.n = at;
    e->seq = ++s->nsent;
    e->emits = EMITS_NONE;
    push_back(&s->sent, e);
    tl_task_set_started_ns(e->task, s->sent.n == 1 ? tl_clock_ns() : 0);
}

/* Has the slot's process see what send_to sent (mu held): writes the frames of the
 * out buffer, and wakes the process if it sleeps. A write to a process that is gone
 * counts as done (its reader sees the end). */
static void write_out(slot *s)
{
    tl__frame_flush(s->id.fd, &s->out);
    tl__ring_req_wake(s->ring);
}

/* How many messages the slot's process may have: fewer once a handler ran long. */
static size_t ahead(slot *s)
{
    return tl__ring_slow(s->ring) ? TL_PROC_AHEAD_SLOW : TL_PROC_AHEAD;
}

/* Whether the slot's process is known to run its handlers fast: a result came back
 * since it started, and the last handler did not run long. */
static bool known_fast(slot *s)
{
    return s->nsent > s->sent.n && !tl__ring_slow(s->ring);
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
 * How many messages the slot may hold now (mu held). Handlers not known to be fast
 * (none has returned yet, or the last ran long) get one message to a process while
 * another process is free or starting, so that slow ones run side by side rather
 * than queue behind one another; with none free, TL_PROC_AHEAD_SLOW, so that a
 * process never waits for the service between two. Fast ones get TL_PROC_AHEAD and
 * are packed into the first processes (see pick).
 */
static size_t cap(slot *s, bool other_free)
{
    return known_fast(s) || !other_free ? ahead(s) : 1;
}

/* Whether a slot other than s is free, of nfree free ones (count_free). */
static bool other_free(const struct tl_procs *all, const slot *s, size_t nfree)
{
    return nfree > (is_free(all, s) ? 1u : 0u);
}

/* Sends the slot what the backlog holds, up to its room, if it has a process (mu
 * held). A message whose attempt was cancelled before it went (its partition
 * revoked) never goes. */
static void refill(slot *s)
{
    queue *backlog = &s->all->backlog;
    if (s->id.fd < 0 || s->all->closed || !backlog->head)
        return;
    /* The other slots stay as they are meanwhile. */
    bool others = other_free(s->all, s, count_free(s->all));
    while (backlog->head && s->sent.n < cap(s, others)) {
        entry *e = pop_front(backlog);
        if (tl_cancelled(e->task))
            finish(s->all, e, TL_ECANCELED, NULL);
        else
            send_to(s, e);
    }
}

/* Takes the slot's first entry (mu held); the next one starts running at now_ns. */
static entry *pop_running(slot *s, int64_t now_ns)
{
    entry *e = pop_front(&s->sent);
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
        push_back(&s->done, e);
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
        finish(all, ran, TL_ECANCELED,
               all->closed ? STOPPED : "handler killed: it ignored its cancellation");
    } else if (ran) {
        char text[TL_RING_TEXT_MAX];
        atomic_fetch_add(&all->svc->st.handler_crashes, 1);
        ended_text(status, text, sizeof(text));
        finish(all, ran, TL_EFAIL, text);
    }
    entry *e;
    if (all->closed) {
        while ((e = pop_front(&s->sent)))
            finish(all, e, TL_ECANCELED, STOPPED);
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

/* Has the reader look again at once (from a thread other than the reader). */
static void wake_reader(struct tl_procs *all)
{
    uint64_t one = 1;
    if (write(all->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        /* The reader looks again within IDLE_POLL_MS all the same. */
    }
}

/* Looks after one slot (mu held; let go while tasks complete, a process starts):
 * starts its process when asked to, takes its results, sends it what waits, passes
 * cancellations on. */
static void tend(slot *s)
{
    if (s->id.fd < 0) {
        if (s->starting && !s->all->closed && start_process(s) == 0) {
            refill(s);
            write_out(s);
        }
        return;
    }
    take_results(s);
    refill(s);
    write_out(s);
    flush_done(s);
    watch_cancel(s);
}

/* Waits for a process to wake the reader, for wake_reader, or for a look at the
 * cancellations (mu held on entry and exit, let go while it waits), and takes what
 * the sockets bring: a slot whose process is gone is replaced. A ring is marked asleep
 * only for the wait, so that its process writes a byte to its socket only then; one
 * whose next result came meanwhile, or a result waiting for its outputs (they come on
 * the socket), makes the wait a mere look. */
static void wait_all(struct tl_procs *all)
{
    struct pollfd *pf = all->pfds;
    bool ready = false, running = false;
    pf[0] = (struct pollfd){.fd = all->wake_fd, .events = POLLIN};
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        pf[i + 1] = (struct pollfd){.fd = s->id.fd, .events = POLLIN};
        if (s->id.fd < 0) {
            ready |= s->starting && !all->closed;
            continue;
        }
        running |= s->sent.head != NULL;
        uint64_t next = s->sent.head ? s->sent.head->seq : UINT64_MAX;
        s->asleep = !s->want_emits && tl__ring_sleep(s->ring, next);
        ready |= !s->want_emits && !s->asleep;
    }
    int wait = ready ? 0 : running ? WAIT_POLL_MS : IDLE_POLL_MS;
    pthread_mutex_unlock(&all->mu);
    int n = poll(pf, all->nslots + 1, wait);
    if (n > 0 && (pf[0].revents & POLLIN)) {
        uint64_t count;
        if (read(all->wake_fd, &count, sizeof(count)) < 0) {
            /* Nonblocking: another read took it. */
        }
    }
    pthread_mutex_lock(&all->mu);
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd < 0 || s->id.fd != pf[i + 1].fd)
            continue;
        if (s->asleep)
            tl__ring_awake(s->ring);
        s->asleep = false;
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
static void *reader_main(void *arg)
{
    struct tl_procs *all = arg;
    pthread_mutex_lock(&all->mu);
    for (;;) {
        for (size_t i = 0; i < all->nslots; i++)
            tend(&all->slots[i]);
        /* Stopping and idle: tl__procs_free closes the sockets, the processes exit. */
        if (all_idle_closed(all))
            break;
        wait_all(all);
    }
    pthread_mutex_unlock(&all->mu);
    return NULL;
}

/*
 * The slot a message goes to (mu held): the first with a process and room under its
 * cap, or NULL (the message waits in the backlog for a result, or for a process grow
 * starts). Fast handlers are so packed into few processes: each process woken for a
 * few messages costs two wake-ups a round, more than a no-op handler costs (on 2 cores
 * one worker process ran no-op messages half again as fast as four sharing them); a
 * packed process that falls behind fills up, and the next takes the rest.
 */
static slot *pick(struct tl_procs *all)
{
    size_t nfree = count_free(all);
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd >= 0 && s->sent.n < cap(s, other_free(all, s, nfree)))
            return s;
    }
    return NULL;
}

/* Has one more slot start a process when the backlog holds more than the processes
 * there are (and those starting) have room for, a process not known to be fast
 * counting room for one (mu held). False when no process is
 * there or coming, and none can be. */
static bool grow(struct tl_procs *all)
{
    size_t room = 0, live = 0;
    slot *idle = NULL;
    for (size_t i = 0; i < all->nslots; i++) {
        slot *s = &all->slots[i];
        if (s->id.fd >= 0 || s->starting) {
            live++;
            size_t c = known_fast(s) ? ahead(s) : 1;
            room += s->sent.n < c ? c - s->sent.n : 0;
        } else if (!idle) {
            idle = s;
        }
    }
    if (!idle || all->backlog.n <= room)
        return true;
    if (!all->reader_started && pthread_create(&all->reader, NULL, reader_main, all) == 0)
        all->reader_started = true;
    if (!all->reader_started)
        return live > 0;
    idle->starting = true;
    wake_reader(all);
    return true;
}

int tl__procs_init(tl_service *svc, tl_route_state *route)
{
    size_t n = svc->cfg->workers ? svc->cfg->workers : 1;
    struct tl_procs *all = calloc(1, sizeof(*all) + n * sizeof(slot));
    if (!all)
        return TL_ENOMEM;
    *all = (struct tl_procs){.svc = svc,
                             .route = route,
                             .nslots = n,
                             .rings = tl__rings_new(n),
                             .pfds = calloc(n + 1, sizeof(struct pollfd)),
                             .wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    if (!all->rings || !all->pfds || all->wake_fd < 0 ||
        tl_recycler_new(sizeof(entry), &all->entries) != 0) {
        tl__rings_free(all->rings, n);
        free(all->pfds);
        if (all->wake_fd >= 0)
            close(all->wake_fd);
        free(all);
        return TL_ENOMEM;
    }
    pthread_mutex_init(&all->mu, NULL);
    for (size_t i = 0; i < n; i++) {
        slot *s = &all->slots[i];
        *s = (slot){.all = all,
                    .id = {.pid = 0, .fd = -1},
                    .ring = tl__ring_at(all->rings, i),
                    .cancel_at = -1};
    }
    route->procs = all;
    return 0;
}

int tl__procs_run(tl_task *task, tl_rec *rec)
{
    struct tl_procs *all = rec->route->procs;
    entry *e = tl_recycler_get(all->entries);
    if (!e) {
        tl_task_set_error_text(task, "out of memory");
        return TL_ENOMEM;
    }
    *e = (entry){.task = task, .rec = rec};
    pthread_mutex_lock(&all->mu);
    if (all->closed) {
        pthread_mutex_unlock(&all->mu);
        tl_recycler_put_owned(all->entries, e);
        tl_task_set_error_text(task, STOPPED);
        return TL_ECANCELED;
    }
    /* Behind what waits already; it counts as started once it runs. */
    tl_task_set_started_ns(task, 0);
    push_back(&all->backlog, e);
    slot *s = pick(all);
    if (s) {
        refill(s);
        write_out(s);
    }
    entry *stuck;
    /* No process, and no thread to start one: nothing waiting can run. */
    while (!grow(all) && (stuck = pop_front(&all->backlog)))
        finish(all, stuck, TL_ESYS, NO_START);
    pthread_mutex_unlock(&all->mu);
    return TL_PENDING;
}

void tl__procs_check(tl_service *svc)
{
    uint64_t now = atomic_load(&svc->st.processes_replaced);
    if (now == svc->replaced_logged)
        return;
    char n[24], total[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)(now - svc->replaced_logged));
    snprintf(total, sizeof(total), "%llu", (unsigned long long)now);
    tl_kv f[] = {{"replaced", n}, {"replaced_total", total}};
    tl__log(svc, TL_LEVEL_WARN, "worker_processes_replaced", f, 2);
    svc->replaced_logged = now;
}

void tl__procs_stop(tl_service *svc)
{
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++) {
        struct tl_procs *all = svc->routes[i].procs;
        if (!all)
            continue;
        pthread_mutex_lock(&all->mu);
        all->closed = true;
        entry *e;
        while ((e = pop_front(&all->backlog)))
            finish(all, e, TL_ECANCELED, STOPPED);
        wake_reader(all);
        pthread_mutex_unlock(&all->mu);
        if (all->reader_started)
            pthread_join(all->reader, NULL);
        all->reader_started = false;
    }
}

void tl__procs_free(tl_service *svc)
{
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++) {
        struct tl_procs *all = svc->routes[i].procs;
        if (!all)
            continue;
        for (size_t j = 0; j < all->nslots; j++) {
            tl__frame_out_free(&all->slots[j].out);
            tl__frame_in_free(&all->slots[j].in);
            if (all->slots[j].id.fd >= 0)
                close(all->slots[j].id.fd);
        }
        pthread_mutex_destroy(&all->mu);
        close(all->wake_fd);
        free(all->pfds);
        tl__rings_free(all->rings, all->nslots);
        tl_recycler_free(all->entries);
        free(all);
        svc->routes[i].procs = NULL;
    }
}
