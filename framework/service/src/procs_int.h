/*
 * What procs.c (the service's side of isolation: process), procs_reader.c (the
 * route's reader thread) and procs_slots.c (the slots' queues, and where each message
 * goes) share. procs.c calls the other two, procs_reader.c calls procs_slots.c,
 * which calls neither. Thread rules as procs.c's.
 */
#ifndef TL_PROCS_INT_H
#define TL_PROCS_INT_H

#include "runtime.h"

#include <poll.h>

/* How often the reader looks at the results and the running messages' cancellation
 * while any runs, and how soon it sees that the service ends otherwise. */
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
    tl_proc_id id;          /* pid 0 and fd -1: none */
    tl_ring *ring;          /* its process's messages and results */
    queue sent;             /* in order; the head is the one running */
    queue done;             /* results taken, their tasks to complete with mu let go */
    tl_frame_out out;       /* frames to write on the socket (too large for the ring) */
    tl_frame_in in;         /* what the process writes: outputs (reader) */
    bool want_emits;        /* the running one's result is in, its outputs not yet */
    _Atomic uint64_t taken; /* the number of the last result taken (a hint for
                             * tl__procs_poll, read without mu) */
    uint64_t nsent;         /* messages sent to this process */
    int64_t cancel_at;      /* when the running one was told to cancel (ms), or -1 */
    uint64_t killed;        /* killed by the service while this message ran, or 0 */
    bool starting;          /* the reader is to start a process */
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
    /* The most processes for handlers known fast: the cores less one while they are
     * light (a wake-up costs more than such a handler, and the service's threads need
     * a core), the cores otherwise (the handlers' work uses them). */
    size_t light_cap, fast_cap;
    size_t nslots;
    slot slots[];
};

/* Appends e to q. */
void tl__procq_push(queue *q, entry *e);

/* Takes q's first entry, or NULL. */
entry *tl__procq_pop(queue *q);

/* Completes the entry's task (text NULL or empty: none) and frees the entry (mu may
 * be held: the task's callbacks run later, on the loop thread). */
void tl__procs_finish(struct tl_procs *all, entry *e, int err, const char *text);

/* Sends the slot what the backlog holds, up to its cap, if it has a process (mu held;
 * now: the clock, or a loop's clock of this round: a cap changes at RUN_LONG_NS). */
void tl__procs_refill(slot *s, int64_t now);

/* Has the slot's process see what was sent (mu held): writes the socket's frames and
 * wakes the process if it sleeps. */
void tl__procs_write_out(slot *s);

/* The slot the next message goes to (mu held): the first with a process and room
 * under its cap, or NULL (the message waits in the backlog). */
slot *tl__procs_pick(struct tl_procs *all, int64_t now);

/* A process running one message this long gets no more messages behind it, and one
 * known fast no longer counts as fast: the backlog goes to other processes (another
 * starts if none is free), the message may be a stuck one. Long enough that a result
 * the reader has not taken yet never makes it so. */
#define RUN_LONG_NS (100 * 1000 * 1000)

/* The slot that is to start a process (mu held), or NULL: one, when the backlog holds
 * more than the processes there are (and those starting) have room for, a process not
 * known to be fast counting room for one; none while light_cap processes or more run
 * and all are light, or fast_cap and all are fast now (known fast; with now_ns, also
 * running no message started RUN_LONG_NS before it: the caller must have taken the
 * results first). */
slot *tl__procs_to_start(struct tl_procs *all, int64_t now_ns);

/* Takes the results in every slot's ring, sends what waits to the slots that made
 * room, completes their tasks, and has the reader start a process if more are wanted
 * (mu held on entry and exit, let go while tasks complete; now as tl__procs_refill's):
 * how many it took. */
size_t tl__procs_collect(struct tl_procs *all, int64_t now);

/* Marks the rings of the slots with a process asleep, so that their processes wake
 * the root loop with the next result (mu held): true when a result is there already
 * (its ring is not marked; the others may be). */
bool tl__procs_mark_asleep(struct tl_procs *all);

/* Has the reader look again at once (from a thread other than the reader). */
void tl__procs_wake_reader(struct tl_procs *all);

/* The route's reader thread (arg: the route's struct tl_procs), until the route stops. */
void *tl__procs_reader(void *arg);

#endif
