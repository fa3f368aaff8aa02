/*
 * The service's side of isolation: process. An attempt of such a route is still a
 * task, so the timeout split, stalls, retries and reroutes are the same as for
 * threads; its function hands the message to the route's worker processes and
 * returns TL_PENDING, and the task completes when the result comes back. A worker
 * thread of the loop is thus never held by a message in a process.
 *
 * A route has one slot per loop worker. A slot has at most one worker process at a
 * time (forked by the zygote when a message first needs it) and up to TL_PROC_AHEAD
 * messages sent to it, in order: the process handles them one after the other and
 * reads the next ones while a handler runs, so it never waits for the service between
 * two messages. Messages past that wait in the route's backlog, and go to the first
 * slot with room, so one slow handler holds few messages behind it. Each slot has a
 * thread reading results. Only the first message of a slot runs, and only that one
 * counts as started for the route's timeout (tl_task_set_started_ns): the others wait
 * as a busy pool's tasks do.
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
 * Thread rules: tl__procs_run on the loop's workers, each slot's reader on its own
 * thread; everything of a route's processes is guarded by its mu (a reader lets go of
 * it only to wait for its socket), and a reader alone reads its slot's socket; the
 * counters are atomics; tl__procs_check on the loop thread; tl__procs_init,
 * tl__procs_stop and tl__procs_free on the thread that builds and frees the service.
 */
#include "runtime.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Messages sent ahead to one worker process: enough that results and messages come
 * many to a read (bench/isolation, no-op handler: 4 gave 55,000 messages/s, 16 and 64
 * about 95,000), few enough that a slow handler holds up little behind it. */
#define TL_PROC_AHEAD 16
/* How often a busy slot's reader looks at the running message's cancellation, and
 * how soon an idle one sees that the service ends. */
#define WAIT_POLL_MS 5
#define IDLE_POLL_MS 50
#define TEXT_CAP 512
/* What an attempt cut short by the service's end fails with (its message comes again). */
#define STOPPED "handler killed: the service stopped"
#define NO_START "cannot start a worker process"

/* A message on its way to a worker process, and back. */
typedef struct entry {
    tl_task *task;
    tl_rec *rec;
    uint64_t seq; /* its number in the process it was sent to (from 1) */
    struct entry *next;
} entry;

typedef struct queue {
    entry *head, *tail;
    size_t n;
} queue;

typedef struct slot {
    struct tl_procs *all;
    pthread_cond_t cv; /* a process was started, or the route stops */
    tl_proc_id id;     /* pid 0 and fd -1: none */
    queue sent;        /* in order; the head is the one running */
    tl_frame_out out;  /* the frames of the last `unwritten` of sent */
    size_t unwritten;
    uint64_t nsent;      /* messages sent to this process */
    int64_t cancel_at;   /* when the running one was told to cancel (ms), or -1 */
    bool killed;         /* killed by the service: its end is not a crash */
    bool reader_started; /* joined by tl__procs_stop */
    pthread_t reader;
} slot;

struct tl_procs {
    tl_service *svc;
    tl_route_state *route;
    pthread_mutex_t mu;
    queue backlog; /* waiting for room in a process */
    bool closed;   /* the service ends: nothing more is sent */
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
static void finish(entry *e, int err, const char *text)
{
    if (text && text[0])
        tl_task_set_error_text(e->task, text);
    tl_task_complete(e->task, NULL, err);
    free(e);
}

/* Starts a process for the slot (mu held); 0, or TL_ESYS. */
static int start_process(slot *s)
{
    if (tl__zygote_spawn(s->all->svc, s->all->route, &s->id) != 0) {
        s->id = (tl_proc_id){.pid = 0, .fd = -1};
        return TL_ESYS;
    }
    s->nsent = 0;
    s->killed = false;
    s->cancel_at = -1;
    pthread_cond_broadcast(&s->cv);
    return 0;
}

/* Sends the entry to the slot's process, started if need be (mu held): into the
 * slot's out buffer, which write_out writes. False when it could not go, the entry
 * then failed. */
static bool send_to(slot *s, entry *e)
{
    if (s->id.fd < 0 && start_process(s) != 0) {
        finish(e, TL_ESYS, NO_START);
        return false;
    }
    if (tl__frame_put_msg(&s->out, e->rec->msg, e->rec->attempt) == TL_ENOMEM) {
        finish(e, TL_ENOMEM, "message too large for a worker process");
        return true;
    }
    e->seq = ++s->nsent;
    s->unwritten++;
    push_back(&s->sent, e);
    tl_task_set_started_ns(e->task, s->sent.n == 1 ? tl_clock_ns() : 0);
    return true;
}

/* Writes the frames waiting in the slot's out buffer, at once or, while the process
 * has two or more messages to go on with, only when the reader is awake anyway
 * (results came): several go in one write (mu held). A write to a process that is
 * gone counts as done (its reader sees the end). */
static void write_out(slot *s, bool now)
{
    if (!s->unwritten || (!now && s->sent.n - s->unwritten >= 2))
        return;
    tl__frame_flush(s->id.fd, &s->out);
    s->unwritten = 0;
}

/* Sends the slot what the backlog holds, up to its room (mu held). A message whose
 * attempt was cancelled before it went (its partition revoked) never goes. */
static void refill(slot *s)
{
    queue *backlog = &s->all->backlog;
    while (!s->all->closed && s->sent.n < TL_PROC_AHEAD && backlog->head) {
        entry *e = pop_front(backlog);
        if (tl_cancelled(e->task))
            finish(e, TL_ECANCELED, NULL);
        else
            send_to(s, e);
    }
}

/* Takes the slot's first entry (mu held); the next one starts running now. */
static entry *pop_running(slot *s)
{
    entry *e = pop_front(&s->sent);
    s->cancel_at = -1;
    if (s->sent.head)
        tl_task_set_started_ns(s->sent.head->task, tl_clock_ns());
    return e;
}

/* The slot's process ended (or was killed), mu held: reaps it, fails the message it
 * ran, and puts the ones behind it back at the head of the backlog. */
static void replace(slot *s, tl_frame_in *in)
{
    struct tl_procs *all = s->all;
    close(s->id.fd);
    in->start = in->end = 0;
    s->out.n = 0;
    s->unwritten = 0;
    int status = tl__zygote_reap(all->svc, s->id.pid);
    s->id = (tl_proc_id){.pid = 0, .fd = -1};
    atomic_fetch_add(&all->svc->st.processes_replaced, 1);
    entry *ran = pop_running(s);
    if (ran && s->killed) {
        finish(ran, TL_ECANCELED,
               all->closed ? STOPPED : "handler killed: it ignored its cancellation");
    } else if (ran) {
        char text[TEXT_CAP];
        atomic_fetch_add(&all->svc->st.handler_crashes, 1);
        ended_text(status, text, sizeof(text));
        finish(ran, TL_EFAIL, text);
    }
    entry *e;
    if (all->closed) {
        while ((e = pop_front(&s->sent)))
            finish(e, TL_ECANCELED, STOPPED);
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
    s->sent = (queue){0};
    refill(s);
}

/* Completes the tasks of the results in the buffer (mu held); false on a frame that
 * is not one (the process is then treated as ended). */
static bool take_results(slot *s, tl_frame_in *in)
{
    char type;
    const char *body;
    uint32_t len;
    int rc;
    while ((rc = tl__frame_next(in, &type, &body, &len)) == 1) {
        int err = 0;
        char text[TEXT_CAP];
        if (type != TL_FRAME_RESULT || !s->sent.head ||
            tl__frame_decode_result(body, len, &err, text, sizeof(text)) != 0)
            return false;
        finish(pop_running(s), err, text);
    }
    return rc == 0;
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
        s->killed = true;
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
        s->killed = true;
    }
}

/* A slot's reader: results, cancellations and replacements, until the route stops. */
static void *reader_main(void *arg)
{
    slot *s = arg;
    pthread_mutex_t *mu = &s->all->mu;
    tl_frame_in in = {.fd = -1};
    pthread_mutex_lock(mu);
    for (;;) {
        while (s->id.fd < 0 && !s->all->closed)
            pthread_cond_wait(&s->cv, mu);
        watch_cancel(s);
        /* Stopping and idle: tl__procs_free closes the socket, the process exits. */
        if (s->id.fd < 0 || (s->all->closed && !s->sent.head))
            break;
        struct pollfd pf = {.fd = s->id.fd, .events = POLLIN};
        int wait = s->sent.head ? WAIT_POLL_MS : IDLE_POLL_MS;
        in.fd = s->id.fd;
        pthread_mutex_unlock(mu);
        bool ended = poll(&pf, 1, wait) == 1 && tl__frame_fill(&in) < 0;
        pthread_mutex_lock(mu);
        if (ended || !take_results(s, &in))
            replace(s, &in);
        else
            refill(s);
        if (s->id.fd >= 0)
            write_out(s, true);
    }
    pthread_mutex_unlock(mu);
    tl__frame_in_free(&in);
    return NULL;
}

/* The slot with the fewest messages (mu held). */
static slot *pick(struct tl_procs *all)
{
    slot *best = &all->slots[0];
    for (size_t i = 1; i < all->nslots && best->sent.n > 0; i++)
        if (all->slots[i].sent.n < best->sent.n)
            best = &all->slots[i];
    return best;
}

int tl__procs_init(tl_service *svc, tl_route_state *route)
{
    size_t n = svc->cfg->workers ? svc->cfg->workers : 1;
    struct tl_procs *all = calloc(1, sizeof(*all) + n * sizeof(slot));
    if (!all)
        return TL_ENOMEM;
    *all = (struct tl_procs){.svc = svc, .route = route, .nslots = n};
    pthread_mutex_init(&all->mu, NULL);
    for (size_t i = 0; i < n; i++) {
        slot *s = &all->slots[i];
        *s = (slot){.all = all, .id = {.pid = 0, .fd = -1}, .cancel_at = -1};
        pthread_cond_init(&s->cv, NULL);
    }
    route->procs = all;
    return 0;
}

int tl__procs_run(tl_task *task, tl_rec *rec)
{
    struct tl_procs *all = rec->route->procs;
    entry *e = malloc(sizeof(*e));
    if (!e) {
        tl_task_set_error_text(task, "out of memory");
        return TL_ENOMEM;
    }
    *e = (entry){.task = task, .rec = rec};
    pthread_mutex_lock(&all->mu);
    if (all->closed) {
        pthread_mutex_unlock(&all->mu);
        free(e);
        tl_task_set_error_text(task, STOPPED);
        return TL_ECANCELED;
    }
    /* Behind what waits already; it counts as started once it runs. */
    tl_task_set_started_ns(task, 0);
    push_back(&all->backlog, e);
    slot *s = pick(all);
    if (!s->reader_started && pthread_create(&s->reader, NULL, reader_main, s) == 0)
        s->reader_started = true;
    if (s->reader_started) {
        refill(s);
        write_out(s, false);
    } else
        finish(pop_front(&all->backlog), TL_ESYS, NO_START);
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
            finish(e, TL_ECANCELED, STOPPED);
        for (size_t j = 0; j < all->nslots; j++)
            pthread_cond_broadcast(&all->slots[j].cv);
        pthread_mutex_unlock(&all->mu);
        for (size_t j = 0; j < all->nslots; j++) {
            if (all->slots[j].reader_started)
                pthread_join(all->slots[j].reader, NULL);
            all->slots[j].reader_started = false;
        }
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
            if (all->slots[j].id.fd >= 0)
                close(all->slots[j].id.fd);
            pthread_cond_destroy(&all->slots[j].cv);
        }
        pthread_mutex_destroy(&all->mu);
        free(all);
        svc->routes[i].procs = NULL;
    }
}
