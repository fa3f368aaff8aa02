/*
 * A route's circuit breaker (`breaker: { failures, window, cooldown }`). Closed, it
 * counts failed and stalled attempts; `failures` of them within `window` open it.
 * Open, the route's intake takes nothing new (intake.c asks tl__breaker_wait): what
 * arrives waits as backpressure keeps it, nothing is failed or rerouted for it. After
 * `cooldown` it is half-open: one message goes in as a probe, and the outcome of its
 * first attempt closes the breaker or opens it for another cooldown (outcomes of
 * attempts that went in before are not the probe's). A probe dropped unattempted (its
 * partition revoked) lets the next message probe instead of leaving the route shut.
 * Each transition is logged and counted; the admin endpoint reads the state.
 *
 * With shards, every shard's state of the route uses the root's breaker (route->shared):
 * failures anywhere count toward one window, one probe goes in for the whole route, and
 * each transition wakes every shard's held messages.
 *
 * Thread rules: any loop thread, under the breaker's mutex (taken around its own state
 * only: logging happens under it, intake is woken after it); state and transitions are
 * atomics, read from any thread.
 */
#include "runtime.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const state_names[] = {"closed", "open", "half_open"};

int tl__breaker_init(tl_breaker *b, const tl_config_route *cfg)
{
    *b = (tl_breaker){0};
    if (cfg->breaker_failures <= 0)
        return 0;
    b->times = calloc((size_t)cfg->breaker_failures, sizeof(*b->times));
    if (!b->times)
        return TL_ENOMEM;
    pthread_mutex_init(&b->mu, NULL);
    b->on = true;
    b->failures = (unsigned)cfg->breaker_failures;
    b->window_ns = cfg->breaker_window_ms * 1000000;
    b->cooldown_ns = cfg->breaker_cooldown_ms * 1000000;
    return 0;
}

void tl__breaker_free(tl_breaker *b)
{
    if (b->on)
        pthread_mutex_destroy(&b->mu);
    free(b->times);
    b->times = NULL;
    b->on = false;
}

const char *tl__breaker_state_name(int state)
{
    return state >= 0 && state <= 2 ? state_names[state] : "closed";
}

/* The route's breaker: the root's, which every shard's state of the route shares. */
static tl_breaker *of(tl_route_state *route)
{
    return &route->shared->breaker;
}

/* Under b->mu: the new state, logged and counted. */
static void move_to(tl_service *svc, tl_route_state *route, int state, const char *why)
{
    tl_breaker *b = of(route);
    atomic_store_explicit(&b->state, state, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->transitions, 1, memory_order_relaxed);
    b->probe = NULL;
    b->n = 0;
    b->next = 0;
    char index[16], fails[16], window[24], cooldown[24];
    snprintf(index, sizeof(index), "%zu", (size_t)(route - svc->routes));
    snprintf(fails, sizeof(fails), "%u", b->failures);
    snprintf(window, sizeof(window), "%lldms", (long long)(b->window_ns / 1000000));
    snprintf(cooldown, sizeof(cooldown), "%lldms", (long long)(b->cooldown_ns / 1000000));
    tl_kv f[] = {{"route", index},   {"handler", route->cfg->handler},
                 {"why", why},       {"failures", fails},
                 {"window", window}, {"cooldown", cooldown}};
    tl__log(svc, state == TL_BREAKER_OPEN ? TL_LEVEL_WARN : TL_LEVEL_INFO,
            state == TL_BREAKER_OPEN   ? "breaker_open"
            : state == TL_BREAKER_HALF ? "breaker_half_open"
                                       : "breaker_closed",
            f, 6);
}

static void retry_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_service *sh = arg;
    if (sh->hooks.intake_retry)
        sh->hooks.intake_retry(sh);
}

/* After a transition to state, with b->mu let go (intake asks the breaker again): the
 * messages that waited for it go in (intake.c), the caller's unless it opened (the
 * caller's intake waits for the cooldown itself), and every other shard's, on its own
 * loop, so that it waits for the new state's end instead of the old one's. */
static void wake_intakes(tl_service *svc, int state)
{
    if (state != TL_BREAKER_OPEN && svc->hooks.intake_retry)
        svc->hooks.intake_retry(svc);
    tl_service *root = svc->root;
    for (size_t k = 0; k < root->nshards; k++) {
        tl_service *sh = tl__shard_at(root, k);
        if (sh != svc)
            tl_loop_call_threadsafe(sh->loop, retry_on_loop, sh);
    }
}

int64_t tl__breaker_wait(tl_service *svc, tl_route_state *route, int64_t now_ns)
{
    tl_breaker *b = of(route);
    if (!b->on)
        return 0;
    int64_t wait = 0;
    bool moved = false;
    pthread_mutex_lock(&b->mu);
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state == TL_BREAKER_OPEN) {
        if (now_ns < b->open_until_ns) {
            wait = b->open_until_ns - now_ns;
        } else {
            move_to(svc, route, TL_BREAKER_HALF, "cooldown over: one probe");
            state = TL_BREAKER_HALF;
            moved = true;
        }
    }
    if (state == TL_BREAKER_HALF && b->probe)
        wait = INT64_MAX; /* its outcome decides */
    pthread_mutex_unlock(&b->mu);
    if (moved)
        wake_intakes(svc, TL_BREAKER_HALF);
    return wait;
}

bool tl__breaker_taken(tl_route_state *route, const tl_msg *msg)
{
    tl_breaker *b = of(route);
    if (!b->on)
        return true;
    bool in = true;
    pthread_mutex_lock(&b->mu);
    if (atomic_load_explicit(&b->state, memory_order_relaxed) == TL_BREAKER_HALF) {
        in = !b->probe; /* another shard's went in since tl__breaker_wait */
        if (in)
            b->probe = msg;
    }
    pthread_mutex_unlock(&b->mu);
    return in;
}

void tl__breaker_forget(tl_route_state *route, const tl_msg *msg)
{
    tl_breaker *b = of(route);
    if (!b->on)
        return;
    /* Held messages are tried again on the next housekeeping round (intake.c). */
    pthread_mutex_lock(&b->mu);
    if (b->probe == msg)
        b->probe = NULL;
    pthread_mutex_unlock(&b->mu);
}

void tl__breaker_note(tl_service *svc, tl_route_state *route, const tl_msg *msg, bool ok,
                      int64_t now_ns)
{
    tl_breaker *b = of(route);
    if (!b->on)
        return;
    int moved = -1;
    pthread_mutex_lock(&b->mu);
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state == TL_BREAKER_HALF) {
        if (msg == b->probe) {
            if (ok) {
                move_to(svc, route, TL_BREAKER_CLOSED, "probe succeeded");
                moved = TL_BREAKER_CLOSED;
            } else {
                move_to(svc, route, TL_BREAKER_OPEN, "probe failed");
                b->open_until_ns = now_ns + b->cooldown_ns;
                moved = TL_BREAKER_OPEN;
            }
        }
    } else if (state == TL_BREAKER_CLOSED && !ok) {
        /* The last `failures` failure times, a ring: the oldest is replaced next. */
        b->times[b->next] = now_ns;
        b->next = (b->next + 1) % b->failures;
        if (b->n < b->failures)
            b->n++;
        int64_t oldest = b->times[b->n < b->failures ? 0 : b->next];
        if (b->n == b->failures && now_ns - oldest <= b->window_ns) {
            move_to(svc, route, TL_BREAKER_OPEN, "failures within the window");
            b->open_until_ns = now_ns + b->cooldown_ns;
            moved = TL_BREAKER_OPEN;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (moved >= 0)
        wake_intakes(svc, moved);
}
