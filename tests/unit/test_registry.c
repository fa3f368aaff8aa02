/*
 * The registry of adapters and handlers: source types, sink schemes and handlers are
 * found by the name they were added under; a name taken is refused with TL_EINVAL and
 * the first entry kept; unknown names give NULL (adapters) or TL_ENOTFOUND (handlers).
 * A handler's params are declared after it is registered, scalars only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <taskloop/adapter.h>

static const tl_source_ops source_a = {.type = "a"};
static const tl_source_ops source_a_again = {.type = "a"};
static const tl_source_ops source_b = {.type = "b"};
static const tl_sink_ops sink_x = {.scheme = "x"};
static const tl_sink_ops sink_x_again = {.scheme = "x"};
static const tl_sink_ops sink_a = {.scheme = "a"};

static int handler_one(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

static int handler_two(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return TL_EFAIL;
}

static int setup(void **state)
{
    tl_registry *reg = NULL;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_non_null(reg);
    *state = reg;
    return 0;
}

static int teardown(void **state)
{
    tl_registry_free(*state);
    return 0;
}

/* ------------------------------------------------------------ adapters */

static void a_new_registry_knows_no_source_sink_or_handler(void **state)
{
    tl_registry *reg = *state;
    assert_null(tl_registry_source(reg, "a"));
    assert_null(tl_registry_sink(reg, "x"));
    assert_int_equal(tl_registry_handler(reg, "h", NULL, NULL), TL_ENOTFOUND);
}

static void an_added_source_type_is_found_by_its_type(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_source(reg, &source_a), 0);
    assert_int_equal(tl_registry_add_source(reg, &source_b), 0);
    assert_ptr_equal(tl_registry_source(reg, "a"), &source_a);
    assert_ptr_equal(tl_registry_source(reg, "b"), &source_b);
}

static void an_added_sink_scheme_is_found_by_its_scheme(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_sink(reg, &sink_x), 0);
    assert_ptr_equal(tl_registry_sink(reg, "x"), &sink_x);
}

static void a_source_type_taken_is_refused_with_einval_and_the_first_kept(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_source(reg, &source_a), 0);
    assert_int_equal(tl_registry_add_source(reg, &source_a_again), TL_EINVAL);
    assert_ptr_equal(tl_registry_source(reg, "a"), &source_a);
}

static void a_sink_scheme_taken_is_refused_with_einval_and_the_first_kept(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_sink(reg, &sink_x), 0);
    assert_int_equal(tl_registry_add_sink(reg, &sink_x_again), TL_EINVAL);
    assert_ptr_equal(tl_registry_sink(reg, "x"), &sink_x);
}

/* As the memory adapter does: source type "memory" and sink scheme "memory". */
static void a_source_type_and_a_sink_scheme_may_share_a_name(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_source(reg, &source_a), 0);
    assert_int_equal(tl_registry_add_sink(reg, &sink_a), 0);
    assert_ptr_equal(tl_registry_source(reg, "a"), &source_a);
    assert_ptr_equal(tl_registry_sink(reg, "a"), &sink_a);
}

static void unknown_types_and_schemes_give_null(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_registry_add_source(reg, &source_a), 0);
    assert_int_equal(tl_registry_add_sink(reg, &sink_x), 0);
    assert_null(tl_registry_source(reg, "x"));
    assert_null(tl_registry_source(reg, "A"));
    assert_null(tl_registry_sink(reg, "a"));
    assert_null(tl_registry_sink(reg, "xx"));
}

/* ------------------------------------------------------------ handlers */

static void a_registered_handler_is_found_with_its_function_and_user_pointer(void **state)
{
    tl_registry *reg = *state;
    int one = 1, two = 2;
    assert_int_equal(tl_register_handler(reg, "one", handler_one, &one), 0);
    assert_int_equal(tl_register_handler(reg, "two", handler_two, &two), 0);
    tl_handler_fn fn = NULL;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(reg, "two", &fn, &user), 0);
    assert_ptr_equal(fn, handler_two);
    assert_ptr_equal(user, &two);
    assert_int_equal(tl_registry_handler(reg, "one", &fn, &user), 0);
    assert_ptr_equal(fn, handler_one);
    assert_ptr_equal(user, &one);
}

static void a_handler_name_taken_is_refused_with_einval_and_the_first_kept(void **state)
{
    tl_registry *reg = *state;
    int one = 1;
    assert_int_equal(tl_register_handler(reg, "h", handler_one, &one), 0);
    assert_int_equal(tl_register_handler(reg, "h", handler_two, NULL), TL_EINVAL);
    tl_handler_fn fn = NULL;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(reg, "h", &fn, &user), 0);
    assert_ptr_equal(fn, handler_one);
    assert_ptr_equal(user, &one);
}

static void an_unknown_handler_gives_enotfound(void **state)
{
    tl_registry *reg = *state;
    assert_int_equal(tl_register_handler(reg, "one", handler_one, NULL), 0);
    tl_handler_fn fn = NULL;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(reg, "One", &fn, &user), TL_ENOTFOUND);
    assert_int_equal(tl_registry_handler(reg, "on", &fn, &user), TL_ENOTFOUND);
    assert_int_equal(tl_registry_handler(reg, "one2", &fn, &user), TL_ENOTFOUND);
}

/* A plugin may register names it built in a buffer of its own. */
static void a_handler_name_is_copied_at_registration(void **state)
{
    tl_registry *reg = *state;
    char name[16];
    snprintf(name, sizeof(name), "%s", "built");
    assert_int_equal(tl_register_handler(reg, name, handler_one, NULL), 0);
    memset(name, 0, sizeof(name));
    tl_handler_fn fn = NULL;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(reg, "built", &fn, &user), 0);
    assert_ptr_equal(fn, handler_one);
}

static const tl_param takes_n[] = {{"n", TL_PARAM_INT, false, false, "a count"},
                                   {NULL, 0, false, false, NULL}};

static void a_handlers_params_are_declared_once_it_is_registered(void **state)
{
    tl_registry *reg = *state;
    const tl_handler_params decl = {takes_n, NULL, NULL};
    assert_int_equal(tl_register_handler_params(reg, "one", &decl), TL_ENOTFOUND);
    assert_int_equal(tl_register_handler(reg, "one", handler_one, NULL), 0);
    assert_int_equal(tl_register_handler(reg, "two", handler_two, NULL), 0);
    assert_null(tl_registry_handler_params(reg, "one"));
    assert_int_equal(tl_register_handler_params(reg, "one", &decl), 0);
    const tl_handler_params *got = tl_registry_handler_params(reg, "one");
    assert_non_null(got);
    assert_ptr_equal(got->params, takes_n);
    assert_null(tl_registry_handler_params(reg, "two")); /* undeclared: takes anything */
    assert_null(tl_registry_handler_params(reg, "three"));
}

static void params_that_cannot_be_scalars_are_refused(void **state)
{
    tl_registry *reg = *state;
    static const tl_param list[] = {{"items", TL_PARAM_LIST, false, false, NULL},
                                    {NULL, 0, false, false, NULL}};
    static const tl_param map[] = {{"n", TL_PARAM_INT, false, false, NULL},
                                   {"props", TL_PARAM_MAP, false, false, NULL},
                                   {NULL, 0, false, false, NULL}};
    assert_int_equal(tl_register_handler(reg, "one", handler_one, NULL), 0);
    const tl_handler_params with_list = {list, NULL, NULL}, with_map = {map, NULL, NULL},
                            none = {NULL, NULL, NULL};
    assert_int_equal(tl_register_handler_params(reg, "one", &with_list), TL_EINVAL);
    assert_int_equal(tl_register_handler_params(reg, "one", &with_map), TL_EINVAL);
    assert_int_equal(tl_register_handler_params(reg, "one", &none), TL_EINVAL);
    assert_int_equal(tl_register_handler_params(reg, "one", NULL), TL_EINVAL);
    assert_null(tl_registry_handler_params(reg, "one"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_new_registry_knows_no_source_sink_or_handler),
        T(an_added_source_type_is_found_by_its_type),
        T(an_added_sink_scheme_is_found_by_its_scheme),
        T(a_source_type_taken_is_refused_with_einval_and_the_first_kept),
        T(a_sink_scheme_taken_is_refused_with_einval_and_the_first_kept),
        T(a_source_type_and_a_sink_scheme_may_share_a_name),
        T(unknown_types_and_schemes_give_null),
        T(a_registered_handler_is_found_with_its_function_and_user_pointer),
        T(a_handler_name_taken_is_refused_with_einval_and_the_first_kept),
        T(an_unknown_handler_gives_enotfound),
        T(a_handler_name_is_copied_at_registration),
        T(a_handlers_params_are_declared_once_it_is_registered),
        T(params_that_cannot_be_scalars_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
