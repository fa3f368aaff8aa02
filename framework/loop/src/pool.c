/*
 * The worker pool. The loop hands tasks over in chunks (one lock per chunk, not per
 * task); workers claim single tasks from a chunk with one atomic increment, so a
 * task that hangs holds up nothing but its own worker.
 *
 * Thread rules: tl__pool_publish, tl__pool_add_worker, tl__pool_stop and the submit
 * helpers run on the loop thread. pool.mu guards the chunk list, idle/alive counts,
 * refs/popped of chunks and the thread array. chunk.claimed is atomic.
 */
#include "internal.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK_MIN 64
#define CHUNK_MAX 4096
#define TL_POOL_SPIN_NS 20000

/*
 * Waking for light tasks. A task that runs for a few microseconds (a no-op handler)
 * costs less than waking a sleeping worker for it; with many workers configured (sized
 * for handlers that block), waking one per task sent dozens of threads through the
 * scheduler and the pool's mutex for each chunk, for work two cores do anyway
 * (`workers: 64` read 1.5-1.7 M msgs/s where `workers: 2` read 2.0-2.2 M). While the
 * sampled run time of a claim stays under TL_POOL_LIGHT_NS, a publish wakes at most as
 * many workers as there are cores; those claim on from the chunk until it is empty. If
 * they block instead (a light handler that hangs on one message), the loop sees the
 * chunk make no progress and wakes the rest (tl__pool_check), at most TL_POOL_CHECK_NS
 * later. The average starts above the bound: light only once measured so.
 */
#define TL_POOL_LIGHT_NS 5000
#define TL_POOL_SAMPLE_EVERY 8 /* claims per clock sample, per worker */

static bool light(const tl_pool *pool)
{
    return atomic_load_explicit(&pool->run_ns, memory_order_relaxed) < TL_POOL_LIGHT_NS;
}

/* Called with mu held: lets go of a chunk, freeing it once exhausted and unheld. */
static void chunk_drop(tl_pool *pool, tl_chunk *c)
{
    if (!c->popped && pool->head == c && atomic_load(&c->claimed) >= c->n) {
        pool->head = c->next;
        if (!pool->head)
            pool->tail = NULL;
        c->popped = true;
    }
    if (--c->refs == 0 && c->popped)
        free(c);
}

/*
 * Called with mu held and nothing to claim: one idle worker at a time watches for a
 * new chunk for a few microseconds before it sleeps, since a wake-up through the
 * condition variable costs more than the task it brings. Returns with mu held.
 */
static void spin_for_chunk(tl_pool *pool)
{
    if (atomic_exchange(&pool->spinning, true))
        return;
    unsigned long seen = atomic_load(&pool->published);
    pthread_mutex_unlock(&pool->mu);
    int64_t end = tl_clock_ns() + TL_POOL_SPIN_NS;
    do {
        for (int i = 0; i < 64; i++)
            if (atomic_load_explicit(&pool->published, memory_order_relaxed) != seen)
                goto found;
        sched_yield(); /* as the loop's spin: never keep a core from the threads making work */
    } while (tl_clock_ns() < end);
found:
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->spinning, false);
}

/*
 * Waits for a task to claim; NULL when the pool stops and nothing is left, or when
 * this thread is surplus (a replacement for a stuck worker whose handler returned):
 * then the thread was already taken off `alive`.
 */
static tl_task *claim(tl_pool *pool, tl_chunk **held, bool *left)
{
    for (;;) {
        tl_chunk *c = *held;
        if (c) {
            size_t i = atomic_fetch_add(&c->claimed, 1);
            if (i < c->n)
                return c->t[i];
            pthread_mutex_lock(&pool->mu);
            chunk_drop(pool, c);
            *held = NULL;
        } else {
            pthread_mutex_lock(&pool->mu);
        }
        /* An exhausted head is popped by whoever holds it; skip past it here. */
        while (pool->head && atomic_load(&pool->head->claimed) >= pool->head->n) {
            tl_chunk *h = pool->head;
            h->refs++;
            chunk_drop(pool, h);
        }
        if (!pool->head && !pool->stopping)
            spin_for_chunk(pool);
        while (!pool->head && !pool->stopping) {
            if (atomic_load(&pool->alive) > atomic_load(&pool->nominal)) {
                atomic_fetch_sub(&pool->alive, 1);
                *left = true;
                pthread_mutex_unlock(&pool->mu);
                return NULL;
            }
            pool->idle++;
            pthread_cond_wait(&pool->cv, &pool->mu);
            pool->idle--;
        }
        if (!pool->head) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        *held = pool->head;
        pool->head->refs++;
        pthread_mutex_unlock(&pool->mu);
    }
}

/* True when this thread is one too many and should leave (called with mu held). */
static bool surplus(tl_pool *pool)
{
    if (pool->alive > pool->nominal) {
        pool->alive--;
        return true;
    }
    return false;
}

/* The claim loop of one worker; returns when the thread is to end. */
static void work(tl_pool *pool)
{
    tl_chunk *held = NULL;
    bool left = false;
    tl_task *t;
    unsigned claims = 0;
    while ((t = claim(pool, &held, &left)) != NULL) {
        bool sample = claims++ % TL_POOL_SAMPLE_EVERY == 0;
        int64_t t0 = sample ? tl_clock_ns() : 0;
        pool->run(t, true); /* with the reference the chunk held */
        if (sample) {
            /* Racy read-modify-write: a lost update only delays the average a sample. */
            int64_t avg = atomic_load_explicit(&pool->run_ns, memory_order_relaxed);
            atomic_store_explicit(&pool->run_ns, avg + (tl_clock_ns() - t0 - avg) / 8,
                                  memory_order_relaxed);
        }
        /* A replacement worker was started while this one was stuck; one leaves. */
        if (pool->alive > pool->nominal) {
            pthread_mutex_lock(&pool->mu);
            bool leave = surplus(pool);
            if (leave && held)
                chunk_drop(pool, held);
            pthread_mutex_unlock(&pool->mu);
            if (leave)
                return;
        }
    }
    if (!left) {
        pthread_mutex_lock(&pool->mu);
        pool->alive--;
        pthread_mutex_unlock(&pool->mu);
    }
}

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "tl-worker"); /* for top -H, perf, gdb */
    tl_pool *pool = arg;
    /* hooks is written before the first thread starts and never again. */
    if (pool->hooks.start)
        pool->hooks.start(pool->hooks.user);
    work(pool);
    if (pool->hooks.stop)
        pool->hooks.stop(pool->hooks.user);
    return NULL;
}

/* Called with mu held: starts one more thread. */
static int spawn(tl_pool *pool)
{
    pthread_t *th = realloc(pool->threads, (pool->nthreads + 1) * sizeof(*th));
    if (!th)
        return TL_ENOMEM;
    pool->threads = th;
    if (pthread_create(&th[pool->nthreads], NULL, worker_main, pool) != 0)
        return TL_ESYS;
    pool->nthreads++;
    pool->alive++;
    return 0;
}

int tl__pool_start(tl_pool *pool, unsigned workers, const tl_worker_hooks *hooks,
                   void (*run)(tl_task *task, bool owned), void (*drop)(tl_task *task))
{
    if (hooks)
        pool->hooks = *hooks;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->run = run;
    pool->drop = drop;
    pool->nominal = workers;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pool->ncpu = ncpu > 0 ? (unsigned)ncpu : 1;
    atomic_init(&pool->run_ns, 2 * TL_POOL_LIGHT_NS);
    pthread_mutex_lock(&pool->mu);
    int rc = 0;
    for (unsigned i = 0; i < workers && rc == 0; i++)
        rc = spawn(pool);
    pthread_mutex_unlock(&pool->mu);
    if (rc)
        tl__pool_stop(pool);
    return rc;
}

int tl__pool_add_worker(tl_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->nominal++;
    int rc = spawn(pool);
    if (rc)
        pool->nominal--;
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* Loop thread: lowers the nominal size again; a surplus thread leaves when free. */
void tl__pool_retire_worker(tl_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    if (pool->nominal > 0)
        pool->nominal--;
    pthread_mutex_unlock(&pool->mu);
    /* An idle surplus thread leaves only when it looks again: wake them. */
    pthread_cond_broadcast(&pool->cv);
}

void tl__pool_publish(tl_pool *pool, tl_chunk *chunk)
{
    size_t n = chunk->n; /* a worker may free the chunk once it is published */
    pthread_mutex_lock(&pool->mu);
    if (pool->tail)
        pool->tail->next = chunk;
    else
        pool->head = chunk;
    pool->tail = chunk;
    atomic_fetch_add(&pool->published, 1);
    size_t idle = pool->idle;
    pthread_mutex_unlock(&pool->mu);
    /* Each worker claims one task at a time, so every task needs a worker of its own:
     * as many sleepers as the chunk has tasks wake, no more. Waking every idle one for
     * a few tasks (64 workers, ordering partition: a handful of lanes ready a turn) sent
     * dozens of threads through the mutex and back to sleep for each chunk. A woken
     * worker claims on from the chunk until it is empty, so fewer wake-ups never strand
     * a task. Light tasks wake no more workers than there are cores (see above). */
    size_t wake = n < idle ? n : idle;
    if (wake > pool->ncpu && light(pool)) {
        wake = pool->ncpu;
        if (!pool->owed) {
            pool->owed = true;
            pool->check_ns = tl_clock_ns();
            pool->check_chunk = NULL;
        }
    }
    if (wake == idle) {
        if (idle)
            pthread_cond_broadcast(&pool->cv);
    } else {
        for (size_t i = 0; i < wake; i++)
            pthread_cond_signal(&pool->cv);
    }
}

void tl__pool_check(tl_pool *pool, int64_t now_ns)
{
    bool still_light = light(pool);
    if (!pool->owed || (still_light && now_ns - pool->check_ns < TL_POOL_CHECK_NS))
        return;
    pool->check_ns = now_ns;
    pthread_mutex_lock(&pool->mu);
    const tl_chunk *c = pool->head;
    while (c && atomic_load(&c->claimed) >= c->n)
        c = c->next;
    size_t claimed = c ? atomic_load(&c->claimed) : 0;
    bool stuck = c && c == pool->check_chunk && claimed == pool->check_claimed;
    pool->check_chunk = c;
    pool->check_claimed = claimed;
    bool wake = c && pool->idle > 0 && (stuck || !still_light);
    /* Done owing: all claimed, every sleeper woken now, or none asleep (a worker sleeps
     * only when nothing is left to claim, so the awake ones take the rest). */
    if (!c || wake || pool->idle == 0)
        pool->owed = false;
    pthread_mutex_unlock(&pool->mu);
    if (wake)
        pthread_cond_broadcast(&pool->cv);
}

void tl__pool_stop(tl_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->stopping = true;
    pthread_mutex_unlock(&pool->mu);
    pthread_cond_broadcast(&pool->cv);
    for (size_t i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pool->threads = NULL;
    pool->nthreads = 0;
    /* Chunks nobody claimed (no workers): release the references they hold. */
    while (pool->head) {
        tl_chunk *c = pool->head;
        pool->head = c->next;
        for (size_t i = atomic_load(&c->claimed); i < c->n; i++)
            pool->drop(c->t[i]);
        free(c);
    }
    pool->tail = NULL;
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
}

int tl__pool_submit(tl_pool *pool, tl_task *task)
{
    tl_chunk *c = pool->submit;
    if (!c) {
        c = malloc(sizeof(*c) + CHUNK_MIN * sizeof(tl_task *));
        if (!c)
            return TL_ENOMEM;
        c->next = NULL;
        atomic_init(&c->claimed, 0);
        c->n = 0;
        c->cap = CHUNK_MIN;
        c->refs = 0;
        c->popped = false;
        pool->submit = c;
    }
    c->t[c->n++] = task;
    if (c->n < c->cap)
        return 0;
    /* Grow while the loop keeps creating: fewer, larger hand-overs. */
    tl_chunk *g = NULL;
    if (c->cap < CHUNK_MAX)
        g = realloc(c, sizeof(*c) + c->cap * 4 * sizeof(tl_task *));
    if (g) {
        g->cap *= 4;
        pool->submit = g;
    } else {
        tl__pool_flush(pool);
    }
    return 0;
}

void tl__pool_flush(tl_pool *pool)
{
    tl_chunk *c = pool->submit;
    if (!c)
        return;
    pool->submit = NULL;
    tl__pool_publish(pool, c);
}
