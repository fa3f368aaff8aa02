/*
 * The program part of the service library as a program of one's own uses it:
 * tl_program_parse_uint (command-line counts) and tl_service_main's `check`, with and
 * without --handlers. Configs are real files in a temporary folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <taskloop/memory.h>
#include <taskloop/program.h>

static void parse_uint_takes_whole_decimal_strings(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_true(tl_program_parse_uint("0", &v));
    assert_int_equal(v, 0);
    assert_true(tl_program_parse_uint("20000", &v));
    assert_int_equal(v, 20000);
    assert_true(tl_program_parse_uint("18446744073709551615", &v));
    assert_true(v == UINT64_MAX);
}

static void parse_uint_refuses_anything_else_and_leaves_out_alone(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "-1", "+1", " 1", "1 ", "1x", "0x10", "1e3", "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        assert_false(tl_program_parse_uint(bad[i], &v));
        assert_int_equal(v, 42);
    }
    uint64_t v = 42;
    assert_false(tl_program_parse_uint(NULL, &v));
    assert_int_equal(v, 42);
}

/* A config whose route names handler, in a temporary file; returns its path. */
static char *config_naming(const char *handler)
{
    char *path = strdup("/tmp/tl-test-program-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f,
            "service: own\n"
            "sources:\n"
            "  in: { type: memory, name: own_in }\n"
            "routes:\n"
            "  - { source: in, handler: %s }\n",
            handler);
    fclose(f);
    return path;
}

static int mine(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

static int check(tl_registry *reg, const tl_main_opts *opts, const char *a, const char *b,
                 const char *c)
{
    char *argv[] = {"prog", "check", "-q", (char *)a, (char *)b, (char *)c, NULL};
    int argc = 3 + (a != NULL) + (b != NULL) + (c != NULL);
    return tl_service_main(argc, argv, reg, opts);
}

static void own_check_knows_the_handlers_it_registered(void **state)
{
    (void)state;
    tl_registry *reg = NULL;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_memory_register(reg), 0);
    assert_int_equal(tl_register_handler(reg, "orders.insert", mine, NULL), 0);
    char *known = config_naming("orders.insert"), *unknown = config_naming("audit");
    assert_int_equal(check(reg, NULL, known, NULL, NULL), 0);
    assert_int_equal(check(reg, NULL, unknown, NULL, NULL), 1);
    /* --handlers is taskloop's (handlers_option); a program of its own does not take it. */
    assert_int_equal(check(reg, NULL, "--handlers", "audit", unknown), 2);
    unlink(known);
    unlink(unknown);
    free(known);
    free(unknown);
    tl_registry_free(reg);
}

static void check_handlers_names_stand_ins_that_fail_if_run(void **state)
{
    (void)state;
    tl_registry *reg = NULL;
    assert_int_equal(tl_registry_new(&reg), 0);
    assert_int_equal(tl_memory_register(reg), 0);
    const tl_main_opts opts = {.name = "prog", .handlers_option = true};
    char *path = config_naming("audit");
    assert_int_equal(check(reg, &opts, path, NULL, NULL), 1);
    assert_int_equal(check(reg, &opts, "--handlers=x,audit", path, NULL), 0);
    tl_handler_fn fn = NULL;
    void *user = NULL;
    assert_int_equal(tl_registry_handler(reg, "audit", &fn, &user), 0);
    assert_int_equal(fn(NULL, NULL, user), TL_EFAIL);
    assert_int_equal(check(reg, &opts, "--handlers", "a,,b", path), 2);
    unlink(path);
    free(path);
    tl_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_uint_takes_whole_decimal_strings),
        cmocka_unit_test(parse_uint_refuses_anything_else_and_leaves_out_alone),
        cmocka_unit_test(own_check_knows_the_handlers_it_registered),
        cmocka_unit_test(check_handlers_names_stand_ins_that_fail_if_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
