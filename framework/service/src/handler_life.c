/*
 * Handlers' lifecycle hooks (tl_handler_hooks): init per route when the service is
 * built, thread_init/thread_fini on each thread that runs the route's handler, fini
 * when the service is freed. Workers are the loop's: the pool calls the worker hooks
 * made here on each of its threads, replacements for stuck workers included, so the
 * loop knows nothing of handlers.
 *
 * Thread rules: tl__handlers_init and tl__handlers_fini run on the thread building and
 * freeing the service, when no worker runs; the worker hooks on each worker; the
 * loop-thread ones on the thread calling tl_service_run. The routes' hooks and states
 * are written before the loop (and its workers) exist, and only read afterwards.
 */
#include "runtime.h"

#include <stdio.h>

/* Calls fini of the first n routes that were set up, last first. */
static void fini_routes(tl_service *svc, size_t n)
{
    while (n-- > 0) {
        tl_route_state *r = &svc->routes[n];
        if (r->handler_live && r->hooks.fini)
            r->hooks.fini(r->cfg->user, r->handler_state);
        r->handler_live = false;
    }
}

int tl__handlers_init(tl_service *svc, char *err, size_t errlen)
{
    for (size_t i = 0; i < svc->nroutes; i++) {
        tl_route_state *r = &svc->routes[i];
        const tl_config_route *c = r->cfg;
        tl_registry_handler_hooks(svc->reg, c->handler, &r->hooks);
        char why[512] = "";
        int rc = r->hooks.init ? r->hooks.init(c->user, c->params, c->nparams, &r->handler_state,
                                               why, sizeof(why))
                               : 0;
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: routes[%zu]: handler '%s': init failed: %s",
                     svc->cfg->file ? svc->cfg->file : "<config>", c->line, i, c->handler,
                     why[0] ? why : tl_strerror(rc));
            fini_routes(svc, i);
            return rc < 0 ? rc : TL_EFAIL;
        }
        r->handler_live = true;
    }
    return 0;
}

void tl__handlers_fini(tl_service *svc)
{
    fini_routes(svc, svc->nroutes);
}

/* Calls thread_init (start) or thread_fini of the routes run on workers (inline false)
 * or on the loop thread (inline true). */
static void each_route(tl_service *svc, bool run_inline, bool start)
{
    for (size_t i = 0; i < svc->nroutes; i++) {
        tl_route_state *r = &svc->routes[i];
        /* A route isolated in processes runs its handler there (child.c). */
        if (!r->handler_live || r->cfg->run_inline != run_inline ||
            r->cfg->isolation == TL_ISOLATE_PROCESS)
            continue;
        if (start && r->hooks.thread_init)
            r->hooks.thread_init(r->cfg->user, r->handler_state);
        else if (!start && r->hooks.thread_fini)
            r->hooks.thread_fini(r->cfg->user, r->handler_state);
    }
}

static void worker_start(void *svc)
{
    each_route(svc, false, true);
}

static void worker_stop(void *svc)
{
    each_route(svc, false, false);
}

tl_worker_hooks tl__handlers_worker_hooks(tl_service *svc)
{
    return (tl_worker_hooks){.start = worker_start, .stop = worker_stop, .user = svc};
}

void tl__handlers_loop_thread(tl_service *svc, bool start)
{
    each_route(svc, true, start);
}
