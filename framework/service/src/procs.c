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
 * another is idle or starting (see cap), so slow handlers run side by side.
 *
 * The results come back in each slot's ring, in memory shared with the process
 * (ring.c). While the service's root loop is awake, it takes them itself at each of its
 * rounds (tl__procs_poll, its poller): a fast stream of results costs no wake-up of any
 * thread, and most tasks complete on the thread that finalizes them. Before it sleeps,
 * it marks the rings so, and a process with results wakes it through an eventfd of the
 * service (results_fd, which its sleep waits on too). The route's reader, one thread
 * for all the slots, reads what the processes write on their sockets (outputs, their
 * end), starts and reaps the processes, passes cancellations on, and takes the
 * results too every few milliseconds while messages are out (for a loop busy
 * elsewhere), and those whose outputs it just read. Only the first message of a slot
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
 * With shards (shard.c), a route's worker processes and reader are one pool for every
 * shard: each shard's state of the route points at the root's, and each shard's loop
 * thread hands its messages over; the root's loop takes the results, and a result
 * completes its task on that task's own loop.
 *
 * Thread rules: tl__procs_run and tl__procs_where on a loop thread (any shard's),
 * tl__procs_poll on the root's, the route's reader on its own thread; everything of a
 * route's processes (the entries' recycler included) is guarded by its mu, which the
 * reader and the poller let go of only to complete tasks, and the reader also to wait
 * for the sockets, to fork a process and to reap one (the poller only tries to take
 * it, and never waits but before the loop sleeps); the reader alone reads the sockets,
 * starts and reaps the processes; the counters and each slot's `taken` are atomics;
 * tl__procs_check on the loop thread; tl__procs_init, tl__procs_stop and
 * tl__procs_free on the thread that builds and frees the service.
 */
#include "procs_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Has a slot start a process when tl__procs_to_start says so (mu held; the results'
 * ages are the reader's to judge: fresh ones are not known here). False when no
 * process is there or coming, and none can be. */
static bool grow(struct tl_procs *all)
{
    slot *idle = tl__procs_to_start(all, 0);
    if (!idle)
        return true;
    if (!all->reader_started && pthread_create(&all->reader, NULL, tl__procs_reader, all) == 0)
        all->reader_started = true;
    if (!all->reader_started) {
        for (size_t i = 0; i < all->nslots; i++)
            if (all->slots[i].id.fd >= 0 || all->slots[i].starting)
                return true;
        return false;
    }
    idle->starting = true;
    tl__procs_wake_reader(all);
    return true;
}

/* The cores there are (less one when less_one: for the service's own threads), at
 * least one. */
static size_t cores(bool less_one)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN) - (less_one ? 1 : 0);
    return n > 1 ? (size_t)n : 1;
}

int tl__procs_init(tl_service *svc, tl_route_state *route)
{
    /* One for every route: the root loop waits on one (tl_loop_set_poller). */
    if (svc->results_fd < 0 && (svc->results_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return TL_ESYS;
    size_t n = svc->cfg->workers ? svc->cfg->workers : 1;
    struct tl_procs *all = calloc(1, sizeof(*all) + n * sizeof(slot));
    if (!all)
        return TL_ENOMEM;
    *all = (struct tl_procs){.svc = svc,
                             .route = route,
                             .nslots = n,
                             .rings = tl__rings_new(n),
                             .pfds = calloc(n + 1, sizeof(struct pollfd)),
                             .wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                             .light_cap = cores(true),
                             .fast_cap = cores(false)};
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
    /* Under mu: with shards, every shard's loop thread takes entries (one owner at a
     * time for the recycler). */
    pthread_mutex_lock(&all->mu);
    if (all->closed) {
        pthread_mutex_unlock(&all->mu);
        tl_task_set_error_text(task, STOPPED);
        return TL_ECANCELED;
    }
    entry *e = tl_recycler_get(all->entries);
    if (!e) {
        pthread_mutex_unlock(&all->mu);
        tl_task_set_error_text(task, "out of memory");
        return TL_ENOMEM;
    }
    *e = (entry){.task = task, .rec = rec};
    /* Behind what waits already; it counts as started once it runs. */
    tl_task_set_started_ns(task, 0);
    tl__procq_push(&all->backlog, e);
    /* The loop's clock of this round: no clock read per message. */
    int64_t now = tl_loop_now_ns(rec->svc->loop);
    slot *s = tl__procs_pick(all, now);
    if (s) {
        tl__procs_refill(s, now);
        tl__procs_write_out(s);
    }
    entry *stuck;
    /* No process, and no thread to start one: nothing waiting can run. */
    while (!grow(all) && (stuck = tl__procq_pop(&all->backlog)))
        tl__procs_finish(all, stuck, TL_ESYS, NO_START);
    pthread_mutex_unlock(&all->mu);
    return TL_PENDING;
}

int tl__procs_where(struct tl_procs *all, const tl_task *task, bool *running)
{
    int pid = 0;
    *running = false;
    pthread_mutex_lock(&all->mu);
    for (size_t i = 0; !pid && i < all->nslots; i++) {
        const slot *s = &all->slots[i];
        for (const entry *e = s->sent.head; s->id.pid > 0 && e; e = e->next)
            if (e->task == task) {
                pid = s->id.pid;
                *running = e == s->sent.head;
                break;
            }
    }
    pthread_mutex_unlock(&all->mu);
    return pid;
}

/* The root loop's look at a route's rings (on its thread): takes the results there,
 * unless the reader holds the route (it takes them then). How many it took. */
static size_t look(struct tl_procs *all, int64_t now)
{
    bool any = false;
    for (size_t i = 0; !any && i < all->nslots; i++)
        any = tl__ring_done(all->slots[i].ring) >
              atomic_load_explicit(&all->slots[i].taken, memory_order_relaxed);
    if (!any || pthread_mutex_trylock(&all->mu) != 0)
        return 0;
    size_t n = tl__procs_collect(all, now);
    pthread_mutex_unlock(&all->mu);
    return n;
}

bool tl__procs_poll(tl_loop *loop, tl_poll_phase phase, void *arg)
{
    tl_service *svc = arg;
    bool found = false;
    for (size_t i = 0; i < svc->nroutes; i++) {
        struct tl_procs *all = svc->routes[i].procs;
        if (!all)
            continue;
        if (phase == TL_POLL_LOOK) {
            found |= look(all, tl_loop_now_ns(loop)) > 0;
        } else if (phase == TL_POLL_SLEEP) {
            pthread_mutex_lock(&all->mu);
            found |= tl__procs_mark_asleep(all);
            pthread_mutex_unlock(&all->mu);
        } else {
            for (size_t j = 0; j < all->nslots; j++)
                tl__ring_awake(all->slots[j].ring);
        }
    }
    return found;
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
        while ((e = tl__procq_pop(&all->backlog)))
            tl__procs_finish(all, e, TL_ECANCELED, STOPPED);
        tl__procs_wake_reader(all);
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
    if (svc->results_fd >= 0)
        close(svc->results_fd);
    svc->results_fd = -1;
}
