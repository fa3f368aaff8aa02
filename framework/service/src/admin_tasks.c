/*
 * The JSON of /tasks: asyncio's all_tasks() for the service's loop,
 * {"total", "truncated", "tasks": [...]}, at most TASKS_CAP entries, oldest first, each
 * {id, state, age_ms, name} and, for a handler's task, "message": {handler, origin,
 * partition, offset, key (text, or 0x and hex, cut at 32 bytes; null without one),
 * trace_id (of a W3C traceparent header; null without one), attempt, stalled} and,
 * on a route with isolation: process, "process": {pid, running} of the worker process
 * holding it (null while it waits for one).
 *
 * The same request, asked for routes, counts each route's live records instead
 * (tl__admin_route_live, for /stats).
 *
 * A renderer for admin.c, which serves what it returns; it calls nothing in admin.c.
 *
 * Thread rules: the task list belongs to the loop thread, so the request thread posts
 * a snapshot request with tl_loop_call_threadsafe and waits for it with a timeout. The
 * request is shared by the two threads: req->mu guards its fields and whichever side
 * drops the last of its two references frees it (the loop may answer after the waiter
 * gave up, or only inside tl_loop_free). The waiter's closing flag (set when the
 * endpoint stops) ends the wait early, so that stopping never waits for a loop that
 * has ended.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_int.h"

/* Entries listed by /tasks; "total" still counts every pending task. */
#define TASKS_CAP 1000
/* Waits re-check the closing flag this often. */
#define TASKS_POLL_MS 100

typedef struct snap_entry {
    uint64_t id;
    tl_task_state state;
    int64_t age_ms;
    char *name; /* a copy; NULL when unnamed */
    bool has_msg;
    tl_task_message msg;
    char *handler, *origin; /* copies of msg's */
} snap_entry;

typedef struct snap_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;       /* [mu] the waiter's and the loop call's */
    bool done;      /* [mu] the loop filled the snapshot */
    bool abandoned; /* [mu] the waiter gave up: the loop skips the work */
    tl_service *svc;
    tl_route_live *routes; /* set: count the routes' records rather than list tasks */
    size_t total, n;
    tl_task_info info[TASKS_CAP]; /* loop-thread scratch */
    snap_entry items[TASKS_CAP];
} snap_req;

static void snap_unref(snap_req *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].name);
        free(r->items[i].handler);
        free(r->items[i].origin);
    }
    free(r->routes);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Loop thread: counts each route's live records by what they wait for. */
static void count_routes(snap_req *r)
{
    tl_service *svc = r->svc;
    for (tl_link *l = svc->recs.head; l; l = l->next) {
        const tl_rec *rec = tl_list_item(l, tl_rec, all_link);
        tl_route_live *c = &r->routes[rec->route - svc->routes];
        if (rec->state == REC_SETTLED && !rec->stalled)
            continue;
        c->in_flight += rec->state != REC_SETTLED;
        c->running += rec->state == REC_RUNNING;
        c->rerouting += rec->state == REC_REROUTING;
        c->emitting += rec->state == REC_EMITTING;
        c->due_wait += rec->state == REC_DUE;
        c->gated += rec->state == REC_GATED;
        c->stalled += rec->stalled != NULL;
        c->stuck += rec->stalled != NULL && rec->stuck;
    }
}

/* Loop thread: copies the pending tasks, names included (they are only borrowed). */
static void snap_on_loop(tl_loop *loop, void *arg)
{
    snap_req *r = arg;
    pthread_mutex_lock(&r->mu);
    bool skip = r->abandoned;
    pthread_mutex_unlock(&r->mu);
    if (!skip && r->routes) {
        count_routes(r);
        pthread_mutex_lock(&r->mu);
        r->done = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
    } else if (!skip) {
        size_t total = tl_loop_tasks(loop, r->info, TASKS_CAP);
        size_t n = total < TASKS_CAP ? total : TASKS_CAP;
        for (size_t i = 0; i < n; i++) {
            r->items[i].id = r->info[i].id;
            r->items[i].state = r->info[i].state;
            r->items[i].age_ms = r->info[i].age_ms;
            r->items[i].name = r->info[i].name ? strdup(r->info[i].name) : NULL;
            snap_entry *e = &r->items[i];
            e->has_msg = tl__task_message(r->info[i].task, &e->msg);
            if (e->has_msg) {
                e->handler = strdup(e->msg.handler);
                e->origin = e->msg.origin ? strdup(e->msg.origin) : NULL;
                /* Borrowed from the loop's records: not to be read off this thread. */
                e->msg.handler = e->msg.origin = NULL;
            }
        }
        pthread_mutex_lock(&r->mu);
        r->total = total;
        r->n = n;
        r->done = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    snap_unref(r);
}

static snap_req *snap_new(void)
{
    snap_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->refs = 2;
    return r;
}

/* Waits for the loop's answer; false when it did not come in time or *closing is set. */
static bool snap_wait(_Atomic bool *closing, snap_req *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t deadline = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + TL_ADMIN_TASKS_WAIT_MS;
    pthread_mutex_lock(&r->mu);
    while (!r->done && !atomic_load(closing)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (ms >= deadline)
            break;
        int64_t until = ms + (deadline - ms < TASKS_POLL_MS ? deadline - ms : TASKS_POLL_MS);
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    bool done = r->done;
    if (!done)
        r->abandoned = true;
    pthread_mutex_unlock(&r->mu);
    return done;
}

/* A task of one shard's snapshot. */
typedef struct shard_entry {
    const snap_entry *e;
    size_t shard;
} shard_entry;

/* The oldest first. */
static int by_age(const void *x, const void *y)
{
    const shard_entry *a = x, *b = y;
    return a->e->age_ms < b->e->age_ms ? 1 : a->e->age_ms > b->e->age_ms ? -1 : 0;
}

/* The snapshots of the n shards as JSON text with a final newline (malloc'd), or NULL;
 * with more than one, each task says its shard. */
static char *snap_json(snap_req *const *r, size_t n)
{
    size_t total = 0, listed = 0;
    for (size_t k = 0; k < n; k++) {
        total += r[k]->total;
        listed += r[k]->n;
    }
    json_t *root = json_object();
    json_t *list = json_array();
    shard_entry *all = calloc(listed + 1, sizeof(*all));
    if (!root || !list || !all) {
        json_decref(root);
        json_decref(list);
        free(all);
        return NULL;
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < r[k]->n; i++)
            all[m++] = (shard_entry){&r[k]->items[i], k};
    qsort(all, m, sizeof(*all), by_age);
    if (m > TASKS_CAP)
        m = TASKS_CAP;
    json_object_set_new(root, "total", json_integer((json_int_t)total));
    json_object_set_new(root, "truncated", json_boolean(total > m));
    for (size_t i = 0; i < m; i++) {
        const snap_entry *e = all[i].e;
        json_t *t = json_pack("{s:I, s:s, s:I, s:s?}", "id", (json_int_t)e->id, "state",
                              tl_task_state_name(e->state), "age_ms", (json_int_t)e->age_ms, "name",
                              e->name);
        if (t && n > 1)
            json_object_set_new(t, "shard", json_integer((json_int_t)all[i].shard));
        /* A handler's task says which message it works on. */
        if (t && e->has_msg)
            json_object_set_new(
                t, "message",
                json_pack("{s:s?, s:s?, s:i, s:I, s:s?, s:s?, s:i, s:b}", "handler", e->handler,
                          "origin", e->origin, "partition", (int)e->msg.partition, "offset",
                          (json_int_t)e->msg.offset, "key", e->msg.has_key ? e->msg.key : NULL,
                          "trace_id", e->msg.has_trace ? e->msg.trace : NULL, "attempt",
                          (int)e->msg.attempt, "stalled", e->msg.stalled));
        json_t *m = t ? json_object_get(t, "message") : NULL;
        if (m && e->msg.isolated)
            json_object_set_new(m, "process",
                                e->msg.pid ? json_pack("{s:i, s:b}", "pid", e->msg.pid, "running",
                                                       e->msg.pid_running)
                                           : json_null());
        json_array_append_new(list, t);
    }
    free(all);
    json_object_set_new(root, "tasks", list);
    return tl__admin_json_text(root, JSON_INDENT(1));
}

char *tl__admin_json_text(json_t *root, size_t flags)
{
    char *text = root ? json_dumps(root, flags) : NULL;
    json_decref(root);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    char *out = realloc(text, len + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[len] = '\n';
    out[len + 1] = '\0';
    return out;
}

/* Posts r to the loop and waits for its answer; on 0 the caller reads r, then unrefs. */
static int snap_ask(tl_service *svc, _Atomic bool *closing, snap_req *r)
{
    if (tl_loop_call_threadsafe(svc->loop, snap_on_loop, r) != 0) {
        r->refs = 1; /* the call was never queued */
        snap_unref(r);
        return TL_ECLOSED;
    }
    if (!snap_wait(closing, r)) {
        snap_unref(r);
        return TL_ETIMEDOUT;
    }
    return 0;
}

int tl__admin_tasks(tl_service *svc, _Atomic bool *closing, char **json)
{
    *json = NULL;
    snap_req *reqs[TL_CONFIG_MAX_SHARDS] = {0};
    size_t n = 0;
    int rc = 0;
    /* One loop after the other: each answers for its own tasks. */
    for (; rc == 0 && n < svc->nshards; n++) {
        reqs[n] = snap_new();
        rc = reqs[n] ? snap_ask(tl__shard_at(svc, n), closing, reqs[n]) : TL_ENOMEM;
        if (rc)
            reqs[n] = NULL; /* freed by snap_ask, or never made */
    }
    if (rc == 0)
        *json = snap_json(reqs, n);
    for (size_t k = 0; k < n; k++)
        if (reqs[k])
            snap_unref(reqs[k]);
    if (rc)
        return rc;
    return *json ? 0 : TL_ENOMEM;
}

int tl__admin_route_live(tl_service *svc, _Atomic bool *closing, tl_route_live *out)
{
    memset(out, 0, svc->nroutes * sizeof(*out));
    for (size_t k = 0; k < svc->nshards; k++) {
        tl_service *sh = tl__shard_at(svc, k);
        snap_req *r = snap_new();
        if (!r)
            return TL_ENOMEM;
        r->svc = sh;
        r->routes = calloc(sh->nroutes ? sh->nroutes : 1, sizeof(*r->routes));
        if (!r->routes) {
            r->refs = 1;
            snap_unref(r);
            return TL_ENOMEM;
        }
        int rc = snap_ask(sh, closing, r);
        if (rc)
            return rc;
        for (size_t i = 0; i < sh->nroutes; i++) {
            out[i].in_flight += r->routes[i].in_flight;
            out[i].running += r->routes[i].running;
            out[i].rerouting += r->routes[i].rerouting;
            out[i].emitting += r->routes[i].emitting;
            out[i].due_wait += r->routes[i].due_wait;
            out[i].gated += r->routes[i].gated;
            out[i].stalled += r->routes[i].stalled;
            out[i].stuck += r->routes[i].stuck;
        }
        snap_unref(r);
    }
    return 0;
}
