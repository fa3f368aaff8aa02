/*
 * The service's side of isolation: process. An attempt of such a route is still a
 * task, so the timeout split, stalls, retries and reroutes are the same as for
 * threads; its function hands the message to a worker process of the route and
 * returns TL_PENDING, and the task completes when the result comes back. A worker
 * thread of the loop is thus never held by a message in a process.
 *
 * Each route has one slot per loop worker. A slot has at most one worker process at a
 * time (forked by the zygote when a message first needs it) and the messages sent to
 * it, in order: the process handles them one after the other, and reads the next ones
 * while a handler runs, so it never waits for the service between two messages. A
 * message goes to the slot with the fewest. Each slot has a thread reading results;
 * the first message of a slot is the one its process runs, and only that one counts
 * as started for the route's timeout (tl_task_set_started_ns): the ones behind it
 * wait as a busy pool's tasks do.
 *
 * A worker process that ends while it holds messages crashed in the first one: the
 * zygote reaps it, that attempt fails with "handler crashed: SIGNAME" (record.c
 * retries it, then reroutes it to on_error.then, logging each step with the
 * message's origin), and the messages behind it go to a new process, in their order,
 * as if nothing happened. Once the running message's task is cancelled (it stalled),
 * the process is told to cancel it; one still running TL_KILL_GRACE_MS later is
 * killed, and again the messages behind it go to a new process. When the service is
 * freed, a worker process still busy is killed at once.
 *
 * Thread rules: tl__procs_run on the loop's workers; each slot's fields are guarded
 * by its mu, and its reader thread is the only one reading its socket, completing its
 * tasks and replacing its process; the counters are atomics; tl__procs_check on the
 * loop thread; tl__procs_init, tl__procs_stop and tl__procs_free on the thread that
 * builds and frees the service.
 */
#include "runtime.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* How often a slot's reader looks at the running message's cancellation, and how
 * soon an idle one sees that the service ends. */
#define WAIT_POLL_MS 5
#define IDLE_POLL_MS 50
#define TEXT_CAP 512
/* What an attempt cut short by the service's end fails with (its message comes again). */
#define STOPPED "handler killed: the service stopped"

/* A message sent to a slot's process, waiting for its result. */
typedef struct entry {
    tl_task *task;
    tl_rec *rec;
    uint64_t seq; /* its number in the process (from 1) */
    struct entry *next;
} entry;

struct tl_proc {
    tl_service *svc;
    tl_route_state *route;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* a process was started, or the slot stops */
    tl_proc_id id;      /* pid 0 and fd -1: none */
    entry *head, *tail; /* sent, in order; head is the one running */
    size_t n;
    uint64_t sent;       /* messages sent to this process */
    int64_t cancel_at;   /* when the running one was told to cancel (ms), or -1 */
    bool killed;         /* past its grace: killed, its end is not a crash */
    bool closed;         /* the slot takes no more messages */
    bool reader_started; /* reader runs, and is joined by tl__procs_stop */
    pthread_t reader;
};

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

/* Completes the entry's task (text NULL: none) and frees the entry. */
static void finish(entry *e, int err, const char *text)
{
    if (text && text[0])
        tl_task_set_error_text(e->task, text);
    tl_task_complete(e->task, NULL, err);
    free(e);
}

/* Takes the slot's first entry (mu held); the next one starts running now. */
static entry *pop(struct tl_proc *s)
{
    entry *e = s->head;
    s->head = e->next;
    if (!s->head)
        s->tail = NULL;
    s->n--;
    s->cancel_at = -1;
    if (s->head)
        tl_task_set_started_ns(s->head->task, tl_clock_ns());
    return e;
}

/* Starts a process for the slot (mu held); 0, or TL_ESYS. */
static int start_process(struct tl_proc *s)
{
    if (tl__zygote_spawn(s->svc, s->route, &s->id) != 0) {
        s->id = (tl_proc_id){.pid = 0, .fd = -1};
        return TL_ESYS;
    }
    s->sent = 0;
    s->killed = false;
    s->cancel_at = -1;
    pthread_cond_broadcast(&s->cv);
    return 0;
}

/* Sends the entry's message to the slot's process (mu held): numbers it; 0, TL_ENOMEM
 * (too large for a frame), or TL_ESYS (the process is gone: its reader sees it). */
static int send_entry(struct tl_proc *s, entry *e)
{
    int rc = tl__frame_send_msg(s->id.fd, e->rec->msg, e->rec->attempt);
    if (rc != TL_ENOMEM)
        e->seq = ++s->sent;
    return rc;
}

/* The slot's process ended (or was killed): reaps it, fails the message it ran, and
 * sends the ones behind it to a new process, or fails them when none can start. */
static void replace(struct tl_proc *s, tl_frame_in *in)
{
    pthread_mutex_lock(&s->mu);
    tl_proc_id old = s->id;
    bool killed = s->killed, stopping = s->closed;
    entry *ran = s->head ? pop(s) : NULL;
    s->id = (tl_proc_id){.pid = 0, .fd = -1};
    pthread_mutex_unlock(&s->mu);
    close(old.fd);
    in->start = in->end = 0;
    int status = tl__zygote_reap(s->svc, old.pid);
    atomic_fetch_add(&s->svc->st.processes_replaced, 1);
    if (ran && killed) {
        finish(ran, TL_ECANCELED,
               stopping ? STOPPED : "handler killed: it ignored its cancellation");
    } else if (ran) {
        char text[TEXT_CAP];
        atomic_fetch_add(&s->svc->st.handler_crashes, 1);
        ended_text(status, text, sizeof(text));
        finish(ran, TL_EFAIL, text);
    }
    pthread_mutex_lock(&s->mu);
    entry *fail = NULL;
    if (s->head && (s->closed || start_process(s) != 0)) {
        fail = s->head;
        s->head = s->tail = NULL;
        s->n = 0;
    }
    for (entry *e = s->head; e; e = e->next)
        send_entry(s, e); /* each fitted a frame before */
    if (s->head)
        tl_task_set_started_ns(s->head->task, tl_clock_ns());
    bool closed = s->closed;
    pthread_mutex_unlock(&s->mu);
    while (fail) {
        entry *next = fail->next;
        finish(fail, closed ? TL_ECANCELED : TL_ESYS,
               closed ? STOPPED : "cannot start a worker process");
        fail = next;
    }
}

/* Completes the tasks of the results in the buffer; TL_ESYS on a frame that is not
 * one (the process is then treated as ended). */
static int take_results(struct tl_proc *s, tl_frame_in *in)
{
    char type;
    const char *body;
    uint32_t len;
    int rc;
    while ((rc = tl__frame_next(in, &type, &body, &len)) == 1) {
        int err = 0;
        char text[TEXT_CAP];
        if (type != TL_FRAME_RESULT ||
            tl__frame_decode_result(body, len, &err, text, sizeof(text)) != 0)
            return TL_ESYS;
        pthread_mutex_lock(&s->mu);
        entry *e = s->head ? pop(s) : NULL;
        pthread_mutex_unlock(&s->mu);
        if (!e)
            return TL_ESYS;
        finish(e, err, text);
    }
    return rc;
}

/* Passes a cancellation of the running message on, and kills the process past its
 * grace (mu held). */
static void watch_cancel(struct tl_proc *s)
{
    if (!s->head || s->killed || !tl_cancelled(s->head->task))
        return;
    int64_t now = mono_ms();
    if (s->cancel_at < 0) {
        s->cancel_at = now;
        tl__frame_send_cancel(s->id.fd, s->head->seq);
    } else if (now - s->cancel_at >= TL_KILL_GRACE_MS) {
        kill(s->id.pid, SIGKILL);
        s->killed = true;
    }
}

/* The slot's reader: results, cancellations and replacements, until the slot stops. */
static void *reader_main(void *arg)
{
    struct tl_proc *s = arg;
    tl_frame_in in = {.fd = -1};
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->id.fd < 0 && !s->closed)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->id.fd < 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        in.fd = s->id.fd;
        if (s->closed && s->head && !s->killed) {
            kill(s->id.pid, SIGKILL);
            s->killed = true;
        }
        bool idle_close = s->closed && !s->head, busy = s->head != NULL;
        pthread_mutex_unlock(&s->mu);
        if (idle_close)
            break; /* tl__procs_free closes its socket: the process exits */
        struct pollfd pf = {.fd = in.fd, .events = POLLIN};
        bool ended = false;
        if (poll(&pf, 1, busy ? WAIT_POLL_MS : IDLE_POLL_MS) == 1)
            ended = tl__frame_fill(&in) < 0 || take_results(s, &in) < 0;
        pthread_mutex_lock(&s->mu);
        watch_cancel(s);
        pthread_mutex_unlock(&s->mu);
        if (ended)
            replace(s, &in);
    }
    tl__frame_in_free(&in);
    return NULL;
}

/* The route's slot with the fewest messages. */
static struct tl_proc *pick(tl_route_state *route)
{
    struct tl_proc *best = &route->procs[0];
    size_t least = SIZE_MAX;
    for (size_t i = 0; i < route->nprocs && least > 0; i++) {
        struct tl_proc *s = &route->procs[i];
        pthread_mutex_lock(&s->mu);
        size_t n = s->n;
        pthread_mutex_unlock(&s->mu);
        if (n < least) {
            least = n;
            best = s;
        }
    }
    return best;
}

int tl__procs_init(tl_service *svc, tl_route_state *route)
{
    size_t n = svc->cfg->workers ? svc->cfg->workers : 1;
    route->procs = calloc(n, sizeof(*route->procs));
    if (!route->procs)
        return TL_ENOMEM;
    route->nprocs = n;
    for (size_t i = 0; i < n; i++) {
        struct tl_proc *s = &route->procs[i];
        s->svc = svc;
        s->route = route;
        s->id = (tl_proc_id){.pid = 0, .fd = -1};
        s->cancel_at = -1;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
    }
    return 0;
}

int tl__procs_run(tl_task *task, tl_rec *rec)
{
    struct tl_proc *s = pick(rec->route);
    entry *e = malloc(sizeof(*e));
    if (!e) {
        tl_task_set_error_text(task, "out of memory");
        return TL_ENOMEM;
    }
    *e = (entry){.task = task, .rec = rec};
    pthread_mutex_lock(&s->mu);
    int rc = s->closed ? TL_ECANCELED : 0;
    const char *text = STOPPED;
    if (!rc && !s->reader_started) {
        rc = pthread_create(&s->reader, NULL, reader_main, s) == 0 ? 0 : TL_ESYS;
        s->reader_started = rc == 0;
        text = "cannot start a worker process";
    }
    if (!rc && s->id.fd < 0) {
        rc = start_process(s);
        text = "cannot start a worker process";
    }
    if (!rc && (rc = send_entry(s, e)) == TL_ENOMEM)
        text = "message too large for a worker process";
    if (rc == 0 || rc == TL_ESYS) {
        /* A failed send: the process is gone, and its reader deals with the entry. */
        if (s->tail)
            s->tail->next = e;
        else
            s->head = e;
        s->tail = e;
        s->n++;
        if (s->head != e)
            tl_task_set_started_ns(task, 0);
        e = NULL;
        rc = TL_PENDING;
    }
    pthread_mutex_unlock(&s->mu);
    if (e) {
        free(e);
        tl_task_set_error_text(task, text);
    }
    return rc;
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
        tl_route_state *r = &svc->routes[i];
        for (size_t j = 0; j < r->nprocs; j++) {
            struct tl_proc *s = &r->procs[j];
            pthread_mutex_lock(&s->mu);
            s->closed = true;
            pthread_cond_broadcast(&s->cv);
            bool join = s->reader_started;
            s->reader_started = false;
            pthread_mutex_unlock(&s->mu);
            if (join)
                pthread_join(s->reader, NULL);
        }
    }
}

void tl__procs_free(tl_service *svc)
{
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++) {
        tl_route_state *r = &svc->routes[i];
        for (size_t j = 0; j < r->nprocs; j++) {
            struct tl_proc *s = &r->procs[j];
            if (s->id.fd >= 0)
                close(s->id.fd);
            pthread_cond_destroy(&s->cv);
            pthread_mutex_destroy(&s->mu);
        }
        free(r->procs);
        r->procs = NULL;
        r->nprocs = 0;
    }
}
