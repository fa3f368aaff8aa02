/*
 * A worker process (isolation: process): runs the route's handler on each message
 * the service puts into the ring they share (ring.c), one after the other in their
 * order, as a task of a loop of its own, decoding each into one buffer reused from
 * message to message, and puts each result into the ring before it starts the next
 * message, so that the service knows which message a crash belongs to. That costs no
 * system call; the service's root loop is woken (its eventfd, svc->results_fd) only
 * when it sleeps and results wait (awake, it takes them at its next round): before the
 * worker waits for more messages, after a handler that ran long, or after half the
 * messages sent ahead, so that fast results go many to a wake-up and a slow one is not
 * held behind them. The service's reader looks at the ring every few milliseconds
 * while messages are out anyway. Out of messages, the
 * main thread looks for more for a while, then sleeps until the service wakes it. A
 * reader thread takes in what the socket brings meanwhile: cancels, which it passes on
 * to the task of the message they name, so the handler sees tl_cancelled() as it would
 * in the service, and messages too large for the ring, which wait in a queue for the
 * main thread to reach their marker in the ring. The handler's thread_init/thread_fini hooks run on
 * the main thread, where the handler does.
 *
 * Thread rules: the main thread runs the loop and the handler, reads the ring's
 * messages and writes results; the reader thread alone reads the socket; the queue,
 * the running task and the cancels waiting for their message are guarded by mu.
 */
#include "runtime.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Cancels kept for messages not started yet (the service sends one per message, for
 * the one it sees running: more than a few never wait). */
#define MAX_EARLY_CANCELS 16
/* Results wait for the reader's wake-up no longer than this from their message's
 * start, and no more of them than WAKE_EVERY: a wake-up costs both processes a system
 * call and a switch, a no-op handler far less. */
#define WAKE_AFTER_NS 50000
/* Handlers under this on average are light (TL_PACE_LIGHT). */
#define LIGHT_NS 5000
#define WAKE_EVERY (TL_PROC_AHEAD / 2)
/* How long the main thread looks for more messages, yielding the CPU between looks,
 * before it sleeps: a batch that comes meanwhile costs no wake-up of this thread (as
 * the loop's spin; bench/isolation, no-op: some 20% more messages/s, a quarter fewer
 * context switches). */
#define SPIN_NS 30000
/* A message buffer larger than this is freed after its message. */
#define KEEP_BYTES (1u << 20)

typedef struct queued {
    tl_frame_msg fm;
    struct queued *next;
} queued;

typedef struct child {
    tl_route_state *route;
    tl_ring *ring;
    int fd;
    int results_fd;  /* the service's: wakes its root loop */
    size_t held;     /* results in the ring the reader was not woken for (main thread) */
    int64_t held_ns; /* when the first of them started */
    int64_t last_ns; /* when the last message ended, or 0 after a wait for more */
    int64_t avg_ns;  /* the handlers' time, a moving average (main thread) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    queued *head, *tail; /* messages that came on the socket */
    tl_frame_msg fm;     /* the message being handled (main thread) */
    uint64_t taken;      /* messages taken, ring and socket (main thread) */
    uint64_t started;    /* the number of the last one started */
    tl_task *running;    /* its task while it runs */
    bool ended;          /* the socket ended: no more messages */
    uint64_t early[MAX_EARLY_CANCELS];
    size_t nearly;
} child;

/* A cancel for message seq (mu held): now if it runs, later if its task is not made
 * yet (kept until set_running; one for a message that is over is dropped there). */
static void cancel_seq(child *c, uint64_t seq)
{
    if (seq == c->started && c->running)
        tl_task_cancel(c->running);
    else if (seq >= c->started && c->nearly < MAX_EARLY_CANCELS)
        c->early[c->nearly++] = seq;
}

/* Takes a frame, on the reader thread without mu: a cancel is passed on at once, a
 * message is decoded and added to the batch at *tail. False when it is not a frame
 * the service sends. */
static bool take_frame(child *c, char type, const char *body, uint32_t len, queued ***tail)
{
    if (type == TL_FRAME_CANCEL && len == sizeof(uint64_t)) {
        uint64_t seq;
        memcpy(&seq, body, sizeof(seq));
        pthread_mutex_lock(&c->mu);
        cancel_seq(c, seq);
        pthread_mutex_unlock(&c->mu);
        return true;
    }
    queued *q = type == TL_FRAME_MSG ? calloc(1, sizeof(*q)) : NULL;
    if (!q || tl__frame_decode_msg(body, len, &q->fm) != 0) {
        if (q)
            tl__frame_msg_free(&q->fm);
        free(q);
        return false;
    }
    **tail = q;
    *tail = &q->next;
    return true;
}

/* The reader thread: frames into the queue until the socket ends. Each read's
 * messages are decoded before mu is taken, and join the queue together: the main
 * thread is held up by no decoding. */
static void *reader_main(void *arg)
{
    child *c = arg;
    tl_frame_in in = {.fd = c->fd};
    bool ok = true;
    /* poll first: a read() blocked on the socket would also be woken each time the
     * service reads what this process wrote (the socket's space to write is freed),
     * poll only for what comes in. */
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    while (ok && (poll(&pf, 1, -1) >= 0 || errno == EINTR) && tl__frame_fill(&in) > 0) {
        char type;
        const char *body;
        uint32_t len;
        int rc;
        queued *batch = NULL, **tail = &batch, *last = NULL;
        while (ok && (rc = tl__frame_next(&in, &type, &body, &len)) != 0)
            ok = rc == 1 && take_frame(c, type, body, len, &tail);
        for (queued *q = batch; q; q = q->next)
            last = q;
        if (!batch)
            continue;
        pthread_mutex_lock(&c->mu);
        if (c->tail)
            c->tail->next = batch;
        else
            c->head = batch;
        c->tail = last;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_lock(&c->mu);
    /* The service is gone: nothing waits for the result of a handler still running. */
    if (c->running)
        _exit(0);
    c->ended = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    tl__ring_req_wake(c->ring);
    tl__frame_in_free(&in);
    return NULL;
}

/* Main thread: wakes the service's root loop if it sleeps while results wait for it.
 * One that does not sleep looks at the ring before it does (ring.c). */
static void wake(child *c)
{
    uint64_t one = 1;
    if (c->held && tl__ring_sleeper(c->ring)) {
        /* A full count (EAGAIN) has the loop's wake-up pending already. */
        ssize_t n = write(c->results_fd, &one, sizeof(one));
        (void)n;
    }
    c->held = 0;
}

/* Main thread, the ring empty: wakes the service's reader (it sends more only once
 * it has the results), looks for a message for SPIN_NS, then sleeps until the service
 * sends one or the socket ends. */
static void wait_for_message(child *c)
{
    char type;
    const char *body;
    uint32_t len;
    wake(c);
    c->last_ns = 0;
    int64_t end = tl_clock_ns() + SPIN_NS;
    do {
        sched_yield();
        if (tl__ring_next(c->ring, &type, &body, &len))
            return;
    } while (tl_clock_ns() < end);
    if (!tl__ring_req_sleep(c->ring))
        return;
    /* The reader marks the end under mu before it wakes this thread (ring.c). */
    pthread_mutex_lock(&c->mu);
    bool ended = c->ended;
    pthread_mutex_unlock(&c->mu);
    if (ended)
        tl__ring_req_wake(c->ring);
    else
        tl__ring_req_wait(c->ring);
}

/* Main thread: the message the ring's marker stands for, from the socket's queue,
 * into c->fm; false once the socket ended. */
static bool socket_message(child *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->head && !c->ended)
        pthread_cond_wait(&c->cv, &c->mu);
    queued *q = c->head;
    if (q) {
        c->head = q->next;
        if (!c->head)
            c->tail = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (!q)
        return false;
    tl__frame_msg_free(&c->fm);
    c->fm = q->fm;
    free(q);
    return true;
}

/* Main thread: the next message into c->fm, numbered *seq; 0, 1 once the socket
 * ended, or an error when it could not be decoded (TL_ENOMEM, TL_ESYS). */
static int next_message(child *c, uint64_t *seq)
{
    char type;
    const char *body;
    uint32_t len;
    for (;;) {
        if (tl__ring_next(c->ring, &type, &body, &len))
            break;
        pthread_mutex_lock(&c->mu);
        bool ended = c->ended;
        pthread_mutex_unlock(&c->mu);
        if (ended)
            return 1;
        wait_for_message(c);
    }
    *seq = ++c->taken;
    int rc = 0;
    if (type == TL_FRAME_MSG)
        rc = tl__frame_decode_msg(body, len, &c->fm);
    else if (type != TL_FRAME_SOCKET)
        rc = TL_ESYS;
    tl__ring_take(c->ring);
    if (type == TL_FRAME_SOCKET && !socket_message(c))
        return 1;
    return rc;
}

/* Marks t, message seq's task, as the running one (NULL: none), cancelling it at
 * once if its cancel came first. */
static void set_running(child *c, tl_task *t, uint64_t seq)
{
    pthread_mutex_lock(&c->mu);
    c->running = t;
    if (t)
        c->started = seq;
    for (size_t i = 0; t && i < c->nearly;) {
        if (c->early[i] > c->started) {
            i++;
            continue;
        }
        if (c->early[i] == c->started)
            tl_task_cancel(t);
        c->early[i] = c->early[--c->nearly];
    }
    pthread_mutex_unlock(&c->mu);
}

/* RLIMIT_CPU counts the process's life: the limit moves on by what this message may
 * take, on top of what earlier ones used. */
static void limit_cpu(int64_t ms)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    rlim_t used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1);
    rlim_t add = (rlim_t)((ms + 999) / 1000);
    struct rlimit rl = {used + add, RLIM_INFINITY};
    setrlimit(RLIMIT_CPU, &rl);
}

/* Main thread, after message seq's handler succeeded: writes what it emitted to the
 * socket, before its result goes into the ring (the service takes the outputs with the
 * result). True when it did; false when it emitted nothing, or when they could not go,
 * which fails the attempt (*err, *text). */
static bool send_emits(child *c, tl_rec *rec, uint64_t seq, int *err, const char **text)
{
    if (!atomic_load(&rec->emits))
        return false;
    tl_frame_out o = {0};
    int rc = tl__emit_frame(rec, seq, &o);
    if (rc == 0)
        rc = tl__frame_flush(c->fd, &o);
    tl__frame_out_free(&o);
    if (rc == 0)
        return true;
    *err = rc;
    *text = rc == TL_ENOMEM ? "outputs too large for a worker process to send"
                            : "the service was gone before the outputs were sent";
    return false;
}

/* Handles message seq (c->fm, or none when it could not be decoded: decoded is that
 * error), puts its result into the ring and wakes the service's loop when it is time to. */
static void handle(tl_service *svc, child *c, tl_loop *loop, uint64_t seq, int decoded)
{
    tl_route_state *route = c->route;
    /* The next message starts when the last one ended, unless the worker waited. */
    int64_t start = c->last_ns ? c->last_ns : tl_clock_ns();
    if (route->cfg->cpu_time_ms > 0)
        limit_cpu(route->cfg->cpu_time_ms);
    tl_rec rec = {
        .svc = svc, .route = route, .msg = &c->fm.msg, .attempt = c->fm.attempt, .in_worker = true};
    tl_task *t = decoded == 0 ? tl__attempt_child(loop, &rec) : NULL;
    int err = decoded ? decoded : TL_ENOMEM;
    const char *text = decoded ? "a worker process could not read the message" : NULL;
    if (t) {
        set_running(c, t, seq);
        while (!tl_task_done(t))
            tl_loop_run_once(loop, 100);
        set_running(c, NULL, 0);
        err = tl_task_error(t);
        text = tl_task_error_text(t);
    }
    bool emits = err == 0 && send_emits(c, &rec, seq, &err, &text);
    tl__emit_discard(&rec);
    int64_t end = c->last_ns = tl_clock_ns();
    /* The average over some eight messages: one preempted message does not make a
     * light handler look heavier. */
    c->avg_ns += (end - start - c->avg_ns) / 8;
    int pace = end - start >= WAKE_AFTER_NS ? TL_PACE_SLOW
               : c->avg_ns < LIGHT_NS       ? TL_PACE_LIGHT
                                            : TL_PACE_FAST;
    tl__ring_put(c->ring, seq, err, text, pace, emits);
    tl_task_release(t);
    if (!c->held++)
        c->held_ns = start;
    if (c->held >= WAKE_EVERY || end - c->held_ns >= WAKE_AFTER_NS)
        wake(c);
}

/* A figure of /proc/self/status in bytes (e.g. "VmSize:"), 0 when unread. */
static rlim_t status_bytes(const char *field)
{
    FILE *in = fopen("/proc/self/status", "r");
    char line[128];
    unsigned long kib = 0;
    size_t len = strlen(field);
    while (in && fgets(line, sizeof(line), in))
        if (strncmp(line, field, len) == 0 && sscanf(line + len, "%lu", &kib) == 1)
            break;
    if (in)
        fclose(in);
    return (rlim_t)kib * 1024;
}

/* glibc's malloc arenas other than the main one live in heaps of this size, aligned
 * to it: the used part readable and writable, the rest reserved with no access. */
#define ARENA_HEAP_BYTES (64ul << 20)

/* The unused tails of the malloc arenas the worker inherited: reserved already, so a
 * handler fills them without the address space growing. */
static rlim_t arena_tail_bytes(void)
{
    FILE *in = fopen("/proc/self/maps", "r");
    char line[512], prev_perms[5] = "";
    unsigned long prev_hi = 0;
    rlim_t sum = 0;
    while (in && fgets(line, sizeof(line), in)) {
        unsigned long lo, hi;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3)
            continue;
        if (strcmp(perms, "---p") == 0 && hi % ARENA_HEAP_BYTES == 0 &&
            hi - lo < ARENA_HEAP_BYTES && prev_hi == lo && strcmp(prev_perms, "rw-p") == 0)
            sum += hi - lo;
        prev_hi = hi;
        memcpy(prev_perms, perms, sizeof(perms));
    }
    if (in)
        fclose(in);
    return sum;
}

/* RLIMIT_AS at the address space the worker has now, its loop thread included, plus
 * what the route allows, less what it could fill without growing (arena_tail_bytes; a
 * 64 MiB limit let a handler take 126 MiB when they were not counted): the copy of the
 * service it starts as is not the handler's to pay for. */
static void limit_memory(int64_t bytes)
{
    rlim_t now = status_bytes("VmSize:"), reserved = arena_tail_bytes();
    rlim_t allow = (rlim_t)bytes > reserved ? (rlim_t)bytes - reserved : 0;
    struct rlimit rl = {now + allow, now + allow};
    setrlimit(RLIMIT_AS, &rl);
}

/* A tl_child_main: the worker process's life. */
void tl__child_main(tl_service *svc, tl_route_state *route, tl_ring *ring, int fd)
{
    /* New threads share the arenas there are: a thread's own would reserve 64 MiB of
     * the address space the memory limit counts. */
    mallopt(M_ARENA_MAX, 1);
    child c = {.route = route, .ring = ring, .fd = fd, .results_fd = svc->root->results_fd};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    tl_loop_opts lo = {.workers = 0}; /* the handler runs on this thread */
    tl_loop *loop = NULL;
    pthread_t reader;
    if (tl_loop_new(&lo, &loop) != 0 || pthread_create(&reader, NULL, reader_main, &c) != 0)
        _exit(1);
    if (route->cfg->memory_bytes > 0)
        limit_memory(route->cfg->memory_bytes);
    if (route->hooks.thread_init)
        route->hooks.thread_init(route->cfg->user, route->handler_state);
    uint64_t seq = 0;
    int rc;
    while ((rc = next_message(&c, &seq)) != 1) {
        handle(svc, &c, loop, seq, rc);
        /* A large message's buffer (it came on the socket) is not kept. */
        if (c.fm.buf_cap > KEEP_BYTES)
            tl__frame_msg_free(&c.fm);
    }
    tl__frame_msg_free(&c.fm);
    if (route->hooks.thread_fini)
        route->hooks.thread_fini(route->cfg->user, route->handler_state);
    tl_loop_free(loop);
    _exit(0);
}
