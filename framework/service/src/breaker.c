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
 * Thread rules: loop thread; state and transitions are atomics, read from any thread.
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
    b->on = true;
    b->failures = (unsigned)cfg->breaker_failures;
    b->window_ns = cfg->breaker_window_ms * 1000000;
    b->cooldown_ns = cfg->breaker_cooldown_ms * 1000000;
    return 0;
}

void tl__breaker_free(tl_breaker *b)
{
    free(b->times);
    b->times = NULL;
}

const char *tl__breaker_state_name(int state)
{
    return state >= 0 && state <= 2 ? state_names[state] : "closed";
}

static void move_to(tl_service *svc, tl_route_state *route, int state, const char *why)
{
    tl_breaker *b = &route->breaker;
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
    /* Messages that waited for it go in now (intake.c). */
    if (state != TL_BREAKER_OPEN && svc->hooks.intake_retry)
        svc->hooks.intake_retry(svc);
}

int64_t tl__breaker_wait(tl_service *svc, tl_route_state *route, int64_t now_ns)
{
    tl_breaker *b = &route->breaker;
    if (!b->on)
        return 0;
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state == TL_BREAKER_OPEN) {
        if (now_ns < b->open_until_ns)
            return b->open_until_ns - now_ns;
        move_to(svc, route, TL_BREAKER_HALF, "cooldown over: one probe");
        state = TL_BREAKER_HALF;
    }
    if (state == TL_BREAKER_HALF && b->probe)
        return INT64_MAX; /* its outcome decides */
    return 0;
}

void tl__breaker_taken(tl_breaker *b, const tl_msg *msg)
{
    if (b->on && atomic_load_explicit(&b->state, memory_order_relaxed) == TL_BREAKER_HALF)
        b->probe = msg;
}

void tl__breaker_forget(tl_breaker *b, const tl_msg *msg)
{
    /* Held messages are tried again on the next housekeeping round (intake.c). */
    if (b->probe == msg)
        b->probe = NULL;
}

void tl__breaker_note(tl_service *svc, tl_route_state *route, const tl_msg *msg, bool ok,
                      int64_t now_ns)
{
    tl_breaker *b = &route->breaker;
    if (!b->on)
        return;
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state == TL_BREAKER_HALF) {
        if (msg != b->probe)
            return;
        if (ok) {
            move_to(svc, route, TL_BREAKER_CLOSED, "probe succeeded");
        } else {
            move_to(svc, route, TL_BREAKER_OPEN, "probe failed");
            b->open_until_ns = now_ns + b->cooldown_ns;
        }
        return;
    }
    if (state != TL_BREAKER_CLOSED || ok)
        return;
    /* The last `failures` failure times, a ring: the oldest is replaced next. */
    b->times[b->next] = now_ns;
    b->next = (b->next + 1) % b->failures;
    if (b->n < b->failures)
        b->n++;
    int64_t oldest = b->times[b->n < b->failures ? 0 : b->next];
    if (b->n == b->failures && now_ns - oldest <= b->window_ns) {
        move_to(svc, route, TL_BREAKER_OPEN, "failures within the window");
        b->open_until_ns = now_ns + b->cooldown_ns;
    }
}
