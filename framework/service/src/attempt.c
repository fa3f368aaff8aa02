/*
 * Attempts: each try at handling a message is a task of its own running the route's
 * handler, created here and watched (watch.c) from the moment it exists. Handler
 * tasks read their record's msg, route and attempt, which do not change while the
 * task runs; this is also where a task is recognised as a handler's (for /tasks and
 * tl_handler_param).
 *
 * Thread rules: loop thread, except run_handler and the tl_handler_* functions, which
 * run on the worker running the handler. In a worker process (isolation: process,
 * child.c) the handler runs as a task of that process's own loop, on a record made
 * there, so the tl_handler_* functions answer the same.
 */
#include "runtime.h"

#include <string.h>

/* The handler itself, on this thread (in the service, or in a worker process). */
static int run_here(tl_task *task, void *arg)
{
    tl_rec *rec = arg;
    return rec->route->cfg->fn(task, rec->msg, rec->route->cfg->user);
}

static int run_handler(tl_task *task, void *arg)
{
    tl_rec *rec = arg;
    if (rec->route->cfg->isolation == TL_ISOLATE_PROCESS)
        return tl__procs_run(task, rec);
    return run_here(task, arg);
}

/* The record a handler task works on, or NULL for any other task. */
static const tl_rec *handler_rec(const tl_task *task)
{
    tl_task_fn fn = tl_task_fn_of(task);
    return fn == run_handler || fn == run_here ? tl_task_arg(task) : NULL;
}

tl_task *tl__attempt_child(tl_loop *loop, tl_rec *rec)
{
    return tl_task_create(loop, run_here, rec);
}

bool tl__attempt_new(tl_rec *rec, unsigned flags)
{
    tl_route_state *route = rec->route;
    /* Handing a message to a worker process takes no time (procs.c): on the loop
     * thread, it spares the hop to a worker. */
    bool on_loop = route->cfg->run_inline || route->cfg->isolation == TL_ISOLATE_PROCESS;
    flags |= TL_TASK_TIMED | (on_loop ? TL_TASK_INLINE : 0) | (rec->lane ? TL_TASK_CHAINED : 0);
    tl_task *t = tl_task_create_ex(rec->svc->loop, run_handler, rec, flags);
    if (!t)
        return false;
    rec->attempt++;
    rec->state = REC_RUNNING;
    rec->task = t;
    tl__watch(rec);
    return true;
}

void tl__attempt_undo(tl_rec *rec)
{
    tl__unwatch(rec);
    tl_task_cancel(rec->task);
    tl_task_release(rec->task);
    rec->task = NULL;
    rec->attempt--;
    rec->state = REC_QUEUED;
}

bool tl__task_message(const tl_task *task, tl_task_message *out)
{
    const tl_rec *rec = handler_rec(task);
    if (!rec)
        return false;
    /* A stalled attempt still running belongs to an earlier attempt of its record. */
    bool stalled = rec->stalled == task;
    *out = (tl_task_message){.handler = rec->route->cfg->handler,
                             .origin = rec->msg->origin,
                             .partition = rec->msg->partition,
                             .offset = rec->msg->offset,
                             .attempt = stalled ? rec->stalled_attempt : rec->attempt,
                             .stalled = stalled,
                             .has_key = rec->msg->key != NULL};
    if (out->has_key)
        tl__key_text(rec->msg, out->key, sizeof(out->key));
    out->has_trace = tl_msg_trace_id(rec->msg, out->trace);
    /* Which process to look at (or kill) when a message is stuck in one. */
    out->isolated = rec->route->cfg->isolation == TL_ISOLATE_PROCESS && rec->route->procs;
    if (out->isolated)
        out->pid = tl__procs_where(rec->route->procs, task, &out->pid_running);
    return true;
}

const char *tl_handler_param(const tl_task *task, const char *name, const char *def)
{
    const tl_rec *rec = handler_rec(task);
    if (!rec)
        return NULL;
    const tl_config_route *r = rec->route->cfg;
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].key, name) == 0)
            return r->params[i].value;
    return def;
}

void *tl_handler_state(const tl_task *task)
{
    const tl_rec *rec = handler_rec(task);
    return rec ? rec->route->handler_state : NULL;
}

int tl_handler_emit(tl_task *task, const char *output, const tl_out_msg *msg)
{
    /* The record's queue is the one thing a handler writes: emit.c makes it safe. */
    tl_rec *rec = (tl_rec *)handler_rec(task);
    return rec ? tl__emit_queue(rec, output, msg) : TL_EINVAL;
}

unsigned tl_handler_attempt(const tl_task *task)
{
    const tl_rec *rec = handler_rec(task);
    return rec ? rec->attempt : 0;
}
