/*
 * The service's side of isolation: process. An attempt of such a route is still a
 * task on one of the loop's workers, so the timeout split, stalls, retries and
 * reroutes are the same as for threads; that task hands its message to a worker
 * process of the route and waits for the result. Each route keeps its idle worker
 * processes; a task takes one (or has the zygote fork one), and gives it back when the
 * handler returned. There are never more of them than tasks that run at once.
 *
 * A worker process that dies while it handles a message crashed: the zygote reaps it,
 * the attempt fails with "handler crashed: SIGNAME" (record.c retries it, then
 * reroutes it to on_error.then, logging each step with the message's origin), and the
 * next attempt gets a new process. Once its task is cancelled (it stalled), the
 * process is told to cancel; one still running TL_KILL_GRACE_MS later is killed, so
 * the worker thread is back at once and no handler runs on unseen. When the service is
 * freed, a worker process still busy is killed at once.
 *
 * Thread rules: tl__procs_run on the loop's workers; a route's idle list is guarded by
 * its idle_mu; the counters are atomics; tl__procs_check on the loop thread;
 * tl__procs_free once no worker runs.
 */
#include "runtime.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* How often a waiting task looks at its cancellation. */
#define WAIT_POLL_MS 5
#define TEXT_CAP 512

static int64_t mono_ms(void)
{
    return tl_clock_ns() / 1000000;
}

/* An idle worker process of the route, or a new one; NULL when none can be made. */
static tl_proc *take(tl_service *svc, tl_route_state *route)
{
    pthread_mutex_lock(&route->idle_mu);
    tl_proc *p = route->idle;
    if (p)
        route->idle = p->next;
    pthread_mutex_unlock(&route->idle_mu);
    if (p)
        return p;
    p = malloc(sizeof(*p));
    if (p && tl__zygote_spawn(svc, route, p) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}

static void give_back(tl_route_state *route, tl_proc *p)
{
    pthread_mutex_lock(&route->idle_mu);
    p->next = route->idle;
    route->idle = p;
    pthread_mutex_unlock(&route->idle_mu);
}

/* The process is gone (or killed): reaps it; the next attempt gets a new one. */
static int retire(tl_service *svc, tl_proc *p)
{
    close(p->fd);
    int status = tl__zygote_reap(svc, p->pid);
    free(p);
    atomic_fetch_add(&svc->st.processes_replaced, 1);
    return status;
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

/* Waits for the result; kills the process past its grace once the task is cancelled.
 * 0 with *err set, or TL_ECLOSED (the process ended), or TL_ECANCELED (killed). */
static int await(tl_service *svc, tl_task *task, tl_proc *p, int *err, char *text)
{
    int64_t cancel_at = -1;
    for (;;) {
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        int n = poll(&pf, 1, WAIT_POLL_MS);
        if (n == 1) {
            int rc = tl__frame_recv_result(p->fd, err, text, TEXT_CAP);
            return rc == 0 ? 0 : TL_ECLOSED;
        }
        if (atomic_load(&svc->procs_kill)) {
            kill(p->pid, SIGKILL);
            return TL_ECANCELED;
        }
        if (!tl_cancelled(task))
            continue;
        int64_t now = mono_ms();
        if (cancel_at < 0) {
            char c = TL_FRAME_CANCEL;
            cancel_at = now;
            if (tl__frame_write(p->fd, &c, 1) != 0)
                return TL_ECLOSED;
        } else if (now - cancel_at >= TL_KILL_GRACE_MS) {
            kill(p->pid, SIGKILL);
            return TL_ECANCELED;
        }
    }
}

int tl__procs_run(tl_task *task, tl_rec *rec)
{
    tl_service *svc = rec->svc;
    tl_proc *p = take(svc, rec->route);
    if (!p) {
        tl_task_set_error_text(task, "cannot start a worker process");
        return TL_ESYS;
    }
    int err = 0;
    char text[TEXT_CAP] = "";
    int rc = tl__frame_send_msg(p->fd, rec->msg, rec->attempt);
    if (rc == TL_ENOMEM) {
        give_back(rec->route, p);
        tl_task_set_error_text(task, "message too large for a worker process");
        return TL_ENOMEM;
    }
    rc = rc == 0 ? await(svc, task, p, &err, text) : TL_ECLOSED;
    if (rc == 0) {
        give_back(rec->route, p);
        if (text[0])
            tl_task_set_error_text(task, text);
        return err;
    }
    int status = retire(svc, p);
    if (rc == TL_ECANCELED) {
        tl_task_set_error_text(task, "handler killed: it ignored its cancellation");
        return TL_ECANCELED;
    }
    atomic_fetch_add(&svc->st.handler_crashes, 1);
    ended_text(status, text, sizeof(text));
    tl_task_set_error_text(task, text);
    return TL_EFAIL;
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

void tl__procs_free(tl_service *svc)
{
    for (size_t i = 0; svc->routes && i < svc->nroutes; i++) {
        tl_route_state *r = &svc->routes[i];
        if (r->cfg->isolation != TL_ISOLATE_PROCESS)
            continue;
        while (r->idle) {
            tl_proc *p = r->idle;
            r->idle = p->next;
            close(p->fd);
            free(p);
        }
        pthread_mutex_destroy(&r->idle_mu);
    }
}
