/*
 * The YAML config when it does not load: every message on one line with its position,
 * all of them in one run, bad YAML, unreadable files, and plugins that cannot be used
 * (and one that can). What a good config gives is in test_config.c; the fixture in
 * config_helpers.h.
 *
 * Each bad/NAME.yaml (relative to tests/unit/configs, the working directory) is checked
 * against the messages listed in bad/NAME.expect, one per line, exactly and in order.
 * The plugin tests load test_config_plugin.c, built as a module: TL_TEST_PLUGIN, and
 * test_config_plugin_newer.c: TL_TEST_PLUGIN_NEWER.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_helpers.h"

/* ---------------------------------------------------------------- errors */

static void a_message_stays_on_one_line(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", timeout: \"2\\nx\""));
    assert_one_error(f, rc,
                     "t.yaml:5:45: error: routes[0].timeout: unknown unit \"\\nx\" in "
                     "duration \"2\\nx\" (use ms, s, m or h)");
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char text[8192];
    size_t n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    return text;
}

/* Compares the messages of one load with the lines of its .expect file. */
static void check_expectations(fixture *f, const char *yaml)
{
    char expect_path[512];
    snprintf(expect_path, sizeof(expect_path), "%.*s.expect", (int)(strlen(yaml) - 5), yaml);
    char *want = read_text(expect_path);
    size_t i = 0;
    bool same = true;
    for (char *line = strtok(want, "\n"); line; line = strtok(NULL, "\n"), i++)
        same = same && i < f->diag.count && strcmp(f->diag.msgs[i], line) == 0;
    same = same && i == f->diag.count;
    if (!same) {
        fprintf(stderr, "%s: messages differ from %s; got:\n", yaml, expect_path);
        tl_diag_print(&f->diag, stderr);
    }
    assert_true(same);
}

static void bad_configs_report_the_expected_messages(void **state)
{
    fixture *f = *state;
    DIR *dir = opendir("bad");
    assert_non_null(dir);
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "bad/%s", e->d_name);
        assert_int_equal(load_file(f, path), TL_ECONFIG);
        assert_null(f->cfg);
        check_expectations(f, path);
        tl_diag_free(&f->diag);
        files++;
    }
    closedir(dir);
    assert_true(files >= 10);
}

static void one_run_reports_every_error(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_file(f, "bad/wrong_types.yaml"), TL_ECONFIG);
    assert_true(f->diag.count >= 3);
    assert_int_equal(load_file(f, "bad/unknown_names.yaml"), TL_ECONFIG);
    assert_true(f->diag.count >= 6); /* both runs' messages, appended */
}

static void duplicate_key_is_reported_with_its_position(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: a\nlog: {}\nservice: b\n");
    assert_one_error(f, rc, "t.yaml:3:1: error: duplicate key");
}

static void yaml_syntax_error_is_reported_with_its_position(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: \"unterminated\nsources: {}\n");
    assert_int_equal(rc, TL_ECONFIG);
    assert_int_equal(f->diag.count, 1);
    assert_string_equal(f->diag.msgs[0],
                        "t.yaml:1:10: error: wrongly indented double-quoted scalar");
}

/* `topics: [${TOPIC}]` is bad YAML (a plain scalar in [ ] or { } ends at its {): the
 * error says to quote the variable. */
static void unquoted_variable_in_braces_gets_a_hint(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", timeout: ${T:-2s}"));
    assert_int_equal(rc, TL_ECONFIG);
    assert_int_equal(f->diag.count, 1);
    assert_non_null(strstr(f->diag.msgs[0], "t.yaml:5:"));
    assert_non_null(strstr(f->diag.msgs[0], " (inside [ ] or { }, quote a variable: \"${VAR}\")"));
}

/* The same variable quoted loads. */
static void quoted_variable_in_braces_loads(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_text(f, with_route(", timeout: \"${T:-2s}\"")));
}

/* A syntax error on a line whose ${VAR} is quoted or outside brackets gets no hint. */
static void other_syntax_errors_get_no_variable_hint(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: ${NAME:-a}\nlog: [\"${X}\", \"unterminated\n");
    assert_int_equal(rc, TL_ECONFIG);
    assert_true(f->diag.count >= 1);
    for (size_t i = 0; i < f->diag.count; i++)
        assert_null(strstr(f->diag.msgs[i], "quote a variable"));
}

static void unreadable_file_is_reported(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_file(f, "bad/no_such_file.yaml"), TL_ECONFIG);
    assert_int_equal(f->diag.count, 1);
    assert_string_equal(f->diag.msgs[0], "bad/no_such_file.yaml:1:1: error: cannot read the "
                                         "file: No such file or directory");
}

static void missing_plugin_is_reported_clearly(void **state)
{
    fixture *f = *state;
    char text[2048];
    snprintf(text, sizeof(text), "plugins: [ ./no_such_plugin.so ]\n%s", with_route(""));
    assert_int_equal(load_text(f, text), TL_ECONFIG);
    assert_int_equal(f->diag.count, 1);
    const char *want = "t.yaml:1:12: error: plugins[0]: cannot load plugin "
                       "\"./no_such_plugin.so\": ";
    assert_memory_equal(f->diag.msgs[0], want, strlen(want));
    assert_non_null(strstr(f->diag.msgs[0], "No such file or directory"));
}

static void plugin_without_register_function_is_reported(void **state)
{
    fixture *f = *state;
    Dl_info libc;
    assert_true(dladdr((void *)printf, &libc) && libc.dli_fname[0] == '/');
    char text[2048], want[1024];
    snprintf(text, sizeof(text), "plugins: [ \"%s\" ]\n%s", libc.dli_fname, with_route(""));
    snprintf(want, sizeof(want),
             "t.yaml:1:12: error: plugins[0]: plugin \"%s\" does not export "
             "taskloop_plugin_register",
             libc.dli_fname);
    assert_one_error(f, load_text(f, text), want);
}

/* The loader names the symbol and the two ways it can be missing. */
static void plugin_needing_a_symbol_the_program_lacks_says_what_to_check(void **state)
{
    fixture *f = *state;
    char text[2048], want[1024];
    snprintf(text, sizeof(text), "plugins: [ \"%s\" ]\n%s", TL_TEST_PLUGIN_NEWER, with_route(""));
    snprintf(want, sizeof(want),
             "t.yaml:1:12: error: plugins[0]: cannot load plugin \"%s\": it needs the symbol "
             "tl_from_a_newer_taskloop, which this program does not provide: was the plugin "
             "built against a newer taskloop than this one (%s), or is the program that loads "
             "it linked without exporting taskloop's functions (-rdynamic, ENABLE_EXPORTS; the "
             "installed taskloop program exports them)?",
             TL_TEST_PLUGIN_NEWER, tl_version());
    assert_one_error(f, load_text(f, text), want);
}

/* A plugin stating no plugin ABI, or another than this program's, registers nothing. */
static void plugin_built_for_another_abi_is_refused_before_it_registers(void **state)
{
    fixture *f = *state;
    char text[2048], want[1024];
    snprintf(text, sizeof(text), "plugins: [ \"%s\" ]\n%s", TL_TEST_PLUGIN_NOABI,
             "service: s\nsources:\n  in: { type: fake, url: x }\n"
             "routes:\n  - { source: in, handler: handle }\n");
    snprintf(want, sizeof(want),
             "t.yaml:1:12: error: plugins[0]: plugin \"%s\" does not say which plugin ABI it "
             "was built for: add TL_PLUGIN_DECLARE_ABI; (taskloop/adapter.h) to it and rebuild "
             "it against this taskloop's headers (%s, plugin ABI %d)",
             TL_TEST_PLUGIN_NOABI, tl_version(), TL_PLUGIN_ABI);
    assert_one_error(f, load_text(f, text), want);
    tl_handler_fn fn;
    void *user;
    assert_int_equal(tl_registry_handler(f->reg, "from_other_abi", &fn, &user), TL_ENOTFOUND);

    tl_diag_free(&f->diag);
    tl_diag_init(&f->diag);
    tl_config_free(f->cfg);
    f->cfg = NULL;
    snprintf(text, sizeof(text), "plugins: [ \"%s\" ]\n%s", TL_TEST_PLUGIN_OTHERABI,
             "service: s\nsources:\n  in: { type: fake, url: x }\n"
             "routes:\n  - { source: in, handler: handle }\n");
    snprintf(want, sizeof(want),
             "t.yaml:1:12: error: plugins[0]: plugin \"%s\" was built for plugin ABI %d, and "
             "this taskloop (%s) has plugin ABI %d: rebuild it against this taskloop's headers",
             TL_TEST_PLUGIN_OTHERABI, TL_PLUGIN_ABI + 1, tl_version(), TL_PLUGIN_ABI);
    assert_one_error(f, load_text(f, text), want);
    assert_int_equal(tl_registry_handler(f->reg, "from_other_abi", &fn, &user), TL_ENOTFOUND);
}

static void plugin_registers_handlers_the_routes_use(void **state)
{
    fixture *f = *state;
    char text[2048];
    snprintf(text, sizeof(text), "plugins: [ \"%s\" ]\n%s", TL_TEST_PLUGIN,
             "service: s\nsources:\n  in: { type: fake, url: x }\n"
             "routes:\n  - { source: in, handler: from_plugin }\n");
    assert_loaded(f, load_text(f, text));
    assert_int_equal(f->cfg->nplugins, 1);
    assert_non_null(f->cfg->plugins[0].handle);
    assert_non_null(f->cfg->routes[0].fn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_message_stays_on_one_line),
        T(bad_configs_report_the_expected_messages),
        T(one_run_reports_every_error),
        T(duplicate_key_is_reported_with_its_position),
        T(yaml_syntax_error_is_reported_with_its_position),
        T(unquoted_variable_in_braces_gets_a_hint),
        T(quoted_variable_in_braces_loads),
        T(other_syntax_errors_get_no_variable_hint),
        T(unreadable_file_is_reported),
        T(missing_plugin_is_reported_clearly),
        T(plugin_without_register_function_is_reported),
        T(plugin_needing_a_symbol_the_program_lacks_says_what_to_check),
        T(plugin_built_for_another_abi_is_refused_before_it_registers),
        T(plugin_registers_handlers_the_routes_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
