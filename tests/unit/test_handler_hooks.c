/*
 * Handlers' lifecycle hooks (tl_handler_hooks): init once per route when the service
 * is built, with the route's params, and a failing init stops the build with an error
 * naming the route and the handler; thread_init and thread_fini once on each worker
 * thread, replacements for stuck workers included, and on the loop thread for an
 * inline route; fini once when the service is freed, after every thread_fini. The
 * fixture is service_helpers.h's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_helpers.h"

#define MAXTHREADS 32

/* What the hooks of handler "life" saw; its registration's user pointer. */
typedef struct life {
    fx *f;
    pthread_mutex_t mu;
    int inits, thread_inits, thread_finis, finis;
    int seq, last_thread_fini_seq, fini_seq; /* order of the calls */
    char db[64];                             /* the route's `db` param, as init saw it */
    int state;                               /* its address is the route's state */
    pthread_t started[MAXTHREADS], stopped[MAXTHREADS];
    int calls, calls_unready; /* handler runs; those on a thread not set up, or without state */
    const char *fail_init;    /* init fails with this reason when set */
} life;

/* The state whose thread_init ran on this thread (and no thread_fini since). */
static _Thread_local void *thread_state;

static int life_init(void *user, const tl_kv *params, size_t nparams, void **state, char *err,
                     size_t errlen)
{
    life *l = user;
    pthread_mutex_lock(&l->mu);
    l->inits++;
    l->seq++;
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].key, "db") == 0)
            snprintf(l->db, sizeof(l->db), "%s", params[i].value);
    pthread_mutex_unlock(&l->mu);
    if (l->fail_init) {
        snprintf(err, errlen, "%s", l->fail_init);
        return TL_EINVAL;
    }
    *state = &l->state;
    return 0;
}

static void life_thread_init(void *user, void *state)
{
    life *l = user;
    thread_state = state;
    pthread_mutex_lock(&l->mu);
    if (l->thread_inits < MAXTHREADS)
        l->started[l->thread_inits] = pthread_self();
    l->thread_inits++;
    l->seq++;
    pthread_mutex_unlock(&l->mu);
}

static void life_thread_fini(void *user, void *state)
{
    life *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->thread_finis < MAXTHREADS && thread_state == state)
        l->stopped[l->thread_finis] = pthread_self();
    l->thread_finis++;
    l->last_thread_fini_seq = ++l->seq;
    pthread_mutex_unlock(&l->mu);
    thread_state = NULL;
}

static void life_fini(void *user, void *state)
{
    life *l = user;
    pthread_mutex_lock(&l->mu);
    l->finis++;
    l->fini_seq = ++l->seq;
    if (state != &l->state)
        l->calls_unready++;
    pthread_mutex_unlock(&l->mu);
}

static int life_handler(tl_task *task, const tl_msg *msg, void *user)
{
    life *l = user;
    void *state = tl_handler_state(task);
    pthread_mutex_lock(&l->mu);
    l->calls++;
    if (state != &l->state || thread_state != state)
        l->calls_unready++;
    pthread_mutex_unlock(&l->mu);
    if (msg->len == 5 && memcmp(msg->payload, "stuck", 5) == 0)
        while (!atomic_load(&l->f->released))
            sleep_ms(2);
    return 0;
}

static const tl_handler_hooks life_hooks = {
    .init = life_init,
    .thread_init = life_thread_init,
    .thread_fini = life_thread_fini,
    .fini = life_fini,
};

static int setup_life(void **state)
{
    int rc = setup(state);
    if (rc != 0)
        return rc;
    fx *f = *state;
    life *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    l->f = f;
    pthread_mutex_init(&l->mu, NULL);
    assert_int_equal(tl_register_handler_hooks(f->reg, "life", life_handler, l, &life_hooks), 0);
    return 0;
}

static life *life_of(fx *f)
{
    void *user = NULL;
    assert_int_equal(tl_registry_handler(f->reg, "life", NULL, &user), 0);
    return user;
}

static int teardown_life(void **state)
{
    life *l = life_of(*state);
    int rc = teardown(state);
    pthread_mutex_destroy(&l->mu);
    free(l);
    return rc;
}

/* Frees the service now, so that its threads' and routes' last hooks have run. */
static void free_service(fx *f)
{
    atomic_store(&f->released, true);
    tl_service_free(f->svc);
    f->svc = NULL;
}

/* Every thread set up was torn down, on itself, and none is the test's own. */
static void assert_threads_paired(life *l, int threads)
{
    assert_int_equal(l->thread_inits, threads);
    assert_int_equal(l->thread_finis, threads);
    for (int i = 0; i < threads; i++) {
        int found = 0;
        for (int j = 0; j < threads; j++)
            found += pthread_equal(l->started[i], l->stopped[j]) != 0;
        assert_int_equal(found, 1);
    }
}

static void init_sees_the_params_and_each_worker_is_set_up_and_torn_down_once(void **state)
{
    fx *f = *state;
    start(
        f, "life",
        (opts){.workers = 3, .handler = "life", .route_extra = "    params: { db: orders.db }\n"});
    life *l = life_of(f);
    /* init ran while the service was built, before any message. */
    assert_int_equal(l->inits, 1);
    assert_string_equal(l->db, "orders.db");
    for (int i = 0; i < 30; i++)
        push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    assert_int_equal(l->calls, 30);
    assert_int_equal(l->calls_unready, 0);
    assert_int_equal(l->finis, 0);
    int loops = (int)f->cfg->shards; /* each shard has the workers (TL_TEST_SHARDS) */
    free_service(f);
    assert_threads_paired(l, 3 * loops);
    for (int i = 0; i < 3 * loops; i++)
        assert_false(pthread_equal(l->started[i], pthread_self()));
    assert_int_equal(l->inits, 1);
    assert_int_equal(l->finis, 1);
    assert_true(l->fini_seq > l->last_thread_fini_seq);
    assert_int_equal(l->calls_unready, 0);
}

static bool one_replaced(fx *f)
{
    return stats(f).replaced_workers >= 1;
}

static void script_replace(fx *f)
{
    STEP(wait_for(f, one_replaced, 3000));
    /* With the only worker stuck, these can only run on its replacement. */
    STEP(wait_stat(f, STAT(completed), 3, 3000));
    atomic_store(&f->released, true);
    STEP(wait_for(f, all_settled, 3000));
}

static void a_worker_added_in_place_of_a_stuck_one_is_set_up_and_torn_down_too(void **state)
{
    fx *f = *state;
    start(f, "life_stuck",
          (opts){.workers = 1,
                 .max_replaced = 2,
                 .timeout = "200ms",
                 .handler = "life",
                 .route_extra = "    on_stall: { reroute: \"memory:life_stuck.out\" }\n"});
    push(f, 0, NULL, "stuck");
    for (int i = 0; i < 3; i++)
        push(f, 0, NULL, "ok");
    run(f, script_replace);
    assert_int_equal(f->bad_line, 0);
    uint64_t replaced = stats(f).replaced_workers;
    assert_true(replaced >= 1);
    int loops = (int)f->cfg->shards;
    free_service(f);
    life *l = life_of(f);
    assert_threads_paired(l, loops + (int)replaced);
    assert_int_equal(l->calls_unready, 0);
    assert_int_equal(l->finis, 1);
}

static void an_inline_route_is_set_up_on_the_thread_running_the_service(void **state)
{
    fx *f = *state;
    start(f, "life_inline",
          (opts){.workers = 2, .handler = "life", .route_extra = "    inline: true\n"});
    for (int i = 0; i < 5; i++)
        push(f, 0, NULL, "ok");
    run(f, script_until_all_settled);
    life *l = life_of(f);
    /* Set up and torn down around the run, on this thread (and each other shard's loop
     * thread, with TL_TEST_SHARDS); no worker runs the route. */
    int loops = (int)f->cfg->shards, here = 0;
    assert_threads_paired(l, loops);
    for (int i = 0; i < loops; i++)
        here += pthread_equal(l->started[i], pthread_self()) != 0;
    assert_int_equal(here, 1);
    assert_int_equal(l->calls, 5);
    assert_int_equal(l->calls_unready, 0);
    free_service(f);
    assert_int_equal(l->thread_inits, loops);
    assert_int_equal(l->finis, 1);
}

/* Loads yaml into the fixture, printing what is wrong with it. */
static void load(fx *f, const char *yaml)
{
    int rc = tl_config_load_string("life.yaml", yaml, f->reg, NULL, &f->cfg, &f->diag);
    if (rc)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
}

/* Two routes; the second one's init fails. */
static const char two_routes[] = "service: t\n"
                                 "loop: { workers: 2 }\n"
                                 "sources:\n"
                                 "  in: { type: memory, name: life_fail, partitions: 1 }\n"
                                 "  in2: { type: memory, name: life_fail_2, partitions: 1 }\n"
                                 "routes:\n"
                                 "  - source: in\n"
                                 "    handler: h\n"
                                 "  - source: in2\n"
                                 "    handler: life\n"
                                 "    params: { db: /nonexistent/orders.db }\n";

static void a_failing_init_stops_the_build_with_an_error_naming_route_and_handler(void **state)
{
    fx *f = *state;
    life *l = life_of(f);
    l->fail_init = "cannot open /nonexistent/orders.db";
    load(f, two_routes);
    char err[512] = "";
    assert_int_equal(tl_service_new(f->cfg, f->reg, NULL, &f->svc, err, sizeof(err)), TL_EINVAL);
    assert_null(f->svc);
    assert_string_equal(err, "life.yaml:9: routes[1]: handler 'life': init failed: cannot open "
                             "/nonexistent/orders.db");
    assert_int_equal(l->inits, 1);
    /* Nothing of it was set up: no thread, and no fini for an init that failed. */
    assert_int_equal(l->thread_inits, 0);
    assert_int_equal(l->finis, 0);
}

/* Routes set up before the one that failed are torn down again. */
static void routes_set_up_before_a_failing_init_get_their_fini(void **state)
{
    fx *f = *state;
    life *l = life_of(f);
    static const char yaml[] = "service: t\n"
                               "sources:\n"
                               "  in: { type: memory, name: life_fail2, partitions: 1 }\n"
                               "  in2: { type: memory, name: life_fail2_2, partitions: 1 }\n"
                               "routes:\n"
                               "  - source: in\n"
                               "    handler: life\n"
                               "  - source: in2\n"
                               "    handler: bad\n";
    static life failing;
    memset(&failing, 0, sizeof(failing));
    pthread_mutex_init(&failing.mu, NULL);
    failing.fail_init = "no";
    assert_int_equal(tl_register_handler_hooks(f->reg, "bad", life_handler, &failing, &life_hooks),
                     0);
    load(f, yaml);
    char err[512] = "";
    assert_int_not_equal(tl_service_new(f->cfg, f->reg, NULL, &f->svc, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "routes[1]: handler 'bad': init failed: no"));
    assert_int_equal(l->inits, 1);
    assert_int_equal(l->finis, 1);
    assert_int_equal(failing.finis, 0);
    pthread_mutex_destroy(&failing.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            init_sees_the_params_and_each_worker_is_set_up_and_torn_down_once, setup_life,
            teardown_life),
        cmocka_unit_test_setup_teardown(
            a_worker_added_in_place_of_a_stuck_one_is_set_up_and_torn_down_too, setup_life,
            teardown_life),
        cmocka_unit_test_setup_teardown(an_inline_route_is_set_up_on_the_thread_running_the_service,
                                        setup_life, teardown_life),
        cmocka_unit_test_setup_teardown(
            a_failing_init_stops_the_build_with_an_error_naming_route_and_handler, setup_life,
            teardown_life),
        cmocka_unit_test_setup_teardown(routes_set_up_before_a_failing_init_get_their_fini,
                                        setup_life, teardown_life),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
