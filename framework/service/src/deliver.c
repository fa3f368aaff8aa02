/*
 * Intake's source-thread side: the deliver event, which hands batches to the loop
 * (intake.c takes them in there), and the pause of a source held too long.
 *
 * Deliver waits while TL_BATCHES_OUT batches of its source are not taken in: fetching
 * overlaps with intake, and batches held by the loop stop the source. A source whose
 * thread must keep calling its library (a Kafka consumer that does not poll within
 * max.poll.interval.ms is dropped from its group) says how long it may wait
 * (ops->hold_limit_ms). A deliver that waits longer asks the loop to pause the source,
 * then returns; the source goes on polling, delivers at most what it had fetched before
 * the pause (held with the rest; the Kafka source keeps it back itself), and is resumed
 * once no batch of it is held any more and none waits for room.
 *
 * Thread rules: tl__intake_deliver runs on a source's thread; it waits on intake_cv
 * under svc->mu and reaches the loop only through tl_loop_call_threadsafe. The rest
 * runs on the loop thread.
 */
#include "runtime.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Loop thread: a deliver waited past its source's hold limit. Pauses the source while
 * batches are still held; either way the waiting deliver is let go or may ask again. */
static void hold_on_loop(tl_loop *loop, void *arg)
{
    (void)loop;
    tl_source_state *src = arg;
    tl_service *svc = src->svc;
    bool pause = src->held_batches > 0 && !atomic_load(&svc->stopping);
    if (pause)
        tl__source_pause(src, true);
    pthread_mutex_lock(&svc->mu);
    src->hold_paused = pause;
    src->hold_asked = pause;
    pthread_cond_broadcast(&svc->intake_cv);
    pthread_mutex_unlock(&svc->mu);
    if (!pause)
        return;
    TL_STAT_ADD(svc, source_pauses, 1);
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)src->hold_limit_ms);
    tl_kv f[] = {{"source", src->cfg->name}, {"hold_limit_ms", ms}};
    /* Info, not warn: with a backlog and slow handlers this is backpressure doing its
     * work, routinely; the metric source_pauses counts it. */
    tl__log(svc, TL_LEVEL_INFO, "source_paused", f, 2);
}

void tl__intake_hold_resume(tl_service *svc)
{
    if (atomic_load(&svc->stopping) || tl__intake_room_awaited(svc))
        return;
    for (size_t i = 0; i < svc->nsrcs; i++) {
        tl_source_state *src = &svc->srcs[i];
        if (!src->hold_paused || src->held_batches > 0)
            continue;
        tl__source_pause(src, false);
        pthread_mutex_lock(&svc->mu);
        src->hold_paused = false;
        src->hold_asked = false;
        pthread_mutex_unlock(&svc->mu);
        tl_kv f[] = {{"source", src->cfg->name}};
        tl__log(svc, TL_LEVEL_INFO, "source_resumed", f, 1);
    }
}

/* Source thread, with svc->mu held, while its deliver waits: past the source's hold
 * limit asks the loop, once, to pause the source (see hold_on_loop). */
static void hold_check(tl_source_state *src, int64_t *since_ms)
{
    int64_t now = tl_clock_ns() / 1000000;
    if (*since_ms < 0)
        *since_ms = now;
    if (src->hold_asked || now - *since_ms < src->hold_limit_ms)
        return;
    src->hold_asked = true;
    if (tl_loop_call_threadsafe(src->svc->loop, hold_on_loop, src) != 0)
        src->hold_asked = false;
}

/*
 * Waits while TL_BATCHES_OUT batches of this source are not taken in
 * yet: fetching overlaps with intake, and backpressure (batches held by the loop)
 * stops the source. During shutdown it does not wait, since the loop may be joining
 * this very thread in ops->stop.
 */
void tl__intake_deliver(tl_source_state *src, tl_msg **msgs, size_t n)
{
    tl_service *svc = src->svc;
    tl_batch *b = tl__intake_batch_new(src, msgs, n);
    pthread_mutex_lock(&svc->mu);
    int64_t since_ms = -1;
    /* Paused for a long hold, batches no longer wait: the thread must keep calling its
     * library, and a paused source delivers only what it had fetched already. */
    while (src->batches_out >= TL_BATCHES_OUT && !src->hold_paused &&
           !atomic_load(&svc->stopping)) {
        if (src->hold_limit_ms > 0)
            hold_check(src, &since_ms);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 50 * 1000000L; /* stopping is set without a signal */
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&svc->intake_cv, &svc->mu, &dl);
    }
    src->batches_out++;
    pthread_mutex_unlock(&svc->mu);
    if (!b || tl_loop_call_threadsafe(svc->loop, tl__intake_batch_on_loop, b) != 0) {
        /* Given back unprocessed and uncommitted: a broker delivers them again. */
        for (size_t i = 0; i < n; i++)
            src->ops->release(src->handle, msgs[i]);
        free(b);
        tl__intake_batch_taken(src);
    }
}
