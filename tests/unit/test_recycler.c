/*
 * Recyclers: blocks given back are reused by the owner, from its own thread and from
 * others, and none is handed out twice while threads give back at once; the leak
 * checkers (ASan, valgrind) see that none is lost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <taskloop/recycler.h>
#include <taskloop/taskloop.h>

static void a_block_given_back_is_handed_out_again(void **state)
{
    (void)state;
    tl_recycler *r = NULL;
    assert_int_equal(tl_recycler_new(48, &r), 0);
    char *a = tl_recycler_get(r);
    assert_non_null(a);
    memset(a, 0xab, 48); /* the whole size is usable */
    tl_recycler_put(r, a);
    assert_ptr_equal(tl_recycler_get(r), a);
    tl_recycler_put(r, a);
    tl_recycler_free(r); /* frees a: ASan and valgrind report it otherwise */
}

static void blocks_smaller_than_a_pointer_still_work(void **state)
{
    (void)state;
    tl_recycler *r = NULL;
    assert_int_equal(tl_recycler_new(1, &r), 0);
    void *a = tl_recycler_get(r), *b = tl_recycler_get(r);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    tl_recycler_put(r, a);
    tl_recycler_put(r, b);
    tl_recycler_free(r);
}

#define NTHREADS 4
#define PER_THREAD 5000

typedef struct giver {
    tl_recycler *r;
    uint64_t **blocks;
} giver;

static void *give_back(void *arg)
{
    giver *g = arg;
    for (size_t i = 0; i < PER_THREAD; i++)
        tl_recycler_put(g->r, g->blocks[i]);
    return NULL;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void
blocks_given_back_by_many_threads_at_once_are_reused_and_never_handed_out_twice(void **state)
{
    (void)state;
    tl_recycler *r = NULL;
    assert_int_equal(tl_recycler_new(sizeof(uint64_t), &r), 0);
    static uint64_t *out[NTHREADS * PER_THREAD];
    for (size_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        out[i] = tl_recycler_get(r);
        assert_non_null(out[i]);
    }
    pthread_t th[NTHREADS];
    giver g[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        g[t] = (giver){r, out + t * PER_THREAD};
        assert_int_equal(pthread_create(&th[t], NULL, give_back, &g[t]), 0);
    }
    /* The owner takes blocks while the others give back (a fresh one when none is
     * back yet); once all are back, what it takes comes from them. */
    static uint64_t *again[NTHREADS * PER_THREAD];
    size_t n = 0, half = NTHREADS * PER_THREAD / 2;
    while (n < half)
        again[n++] = tl_recycler_get(r);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    while (n < NTHREADS * PER_THREAD)
        again[n++] = tl_recycler_get(r);
    qsort(out, n, sizeof(out[0]), cmp_ptr);
    for (size_t i = half; i < n; i++)
        assert_non_null(bsearch(&again[i], out, n, sizeof(out[0]), cmp_ptr));
    qsort(again, n, sizeof(again[0]), cmp_ptr);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(again[i]);
        if (i > 0)
            assert_ptr_not_equal(again[i], again[i - 1]); /* never handed out twice */
    }
    for (size_t i = 0; i < n; i++)
        tl_recycler_put(r, again[i]);
    tl_recycler_free(r);
}

/* The owner's own give-backs (no atomic) mix with other threads' (lock-free). */
static void blocks_the_owner_gives_back_mix_with_those_of_other_threads(void **state)
{
    (void)state;
    tl_recycler *r = NULL;
    assert_int_equal(tl_recycler_new(sizeof(uint64_t), &r), 0);
    enum { N = NTHREADS * PER_THREAD };
    static uint64_t *out[2 * N], *again[2 * N];
    for (size_t i = 0; i < 2 * N; i++)
        assert_non_null(out[i] = tl_recycler_get(r));
    pthread_t th[NTHREADS];
    giver g[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        g[t] = (giver){r, out + t * PER_THREAD};
        assert_int_equal(pthread_create(&th[t], NULL, give_back, &g[t]), 0);
    }
    size_t n = 0;
    for (size_t i = N; i < 2 * N; i++) {
        tl_recycler_put_owned(r, out[i]);
        if (i % 2) {
            again[n++] = tl_recycler_get(r);
            assert_ptr_equal(again[n - 1], out[i]); /* the owner's last give-back first */
        }
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    while (n < 2 * N)
        again[n++] = tl_recycler_get(r);
    qsort(out, n, sizeof(out[0]), cmp_ptr);
    qsort(again, n, sizeof(again[0]), cmp_ptr);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(again[i], out[i]); /* every block once, none made anew */
    for (size_t i = 0; i < n; i++)
        tl_recycler_put_owned(r, again[i]);
    tl_recycler_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_block_given_back_is_handed_out_again),
        cmocka_unit_test(blocks_smaller_than_a_pointer_still_work),
        cmocka_unit_test(
            blocks_given_back_by_many_threads_at_once_are_reused_and_never_handed_out_twice),
        cmocka_unit_test(blocks_the_owner_gives_back_mix_with_those_of_other_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
