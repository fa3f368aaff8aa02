/*
 * The YAML config against a file nobody should trust: what it reads is bounded (regular
 * files only, a size cap, one document, no NUL, aliases within bounds, many keys in
 * linear time; the node and bracket bounds are in test_config_text.c), values that
 * would fail later are refused now, plugins run no code when asked not to and must be
 * files nobody else could have put there, and no message shows a secret or what an
 * environment variable held. The fixture is in config_helpers.h; the plugin is
 * test_config_plugin.c (TL_TEST_PLUGIN).
 *
 * Tests that guard against a hang or a blow-up assert the refusal; an alarm only turns
 * a regression into a failure instead of a stuck test.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <taskloop/service.h>

#include "config_helpers.h"

/* ---------------------------------------------------------------- helpers */

static char temp[64];

/* A fresh private folder (mode 0700) for the files of one test; teardown removes it. */
static const char *temp_dir(void)
{
    snprintf(temp, sizeof(temp), "/tmp/tl_hostile_XXXXXX");
    assert_non_null(mkdtemp(temp));
    return temp;
}

static int remove_temp(void **state)
{
    DIR *d = temp[0] ? opendir(temp) : NULL;
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d))) {
        snprintf(path, sizeof(path), "%s/%s", temp, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d) {
        closedir(d);
        rmdir(temp);
    }
    temp[0] = '\0';
    return teardown(state);
}

#undef T
#define T(name) cmocka_unit_test_setup_teardown(name, setup, remove_temp)

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    write_file(to, buf, n, mode);
}

/* Fails unless one of the messages is want. */
static void assert_has_message(fixture *f, const char *want)
{
    for (size_t i = 0; i < f->diag.count; i++)
        if (strcmp(f->diag.msgs[i], want) == 0)
            return;
    fprintf(stderr, "want: %s\n got:\n", want);
    tl_diag_print(&f->diag, stderr);
    fail();
}

/* Fails when any message contains s. */
static void assert_no_message_contains(fixture *f, const char *s)
{
    for (size_t i = 0; i < f->diag.count; i++) {
        if (strstr(f->diag.msgs[i], s)) {
            fprintf(stderr, "leaked \"%s\" in: %s\n", s, f->diag.msgs[i]);
            fail();
        }
    }
}

static const char *const HEAD = "service: s\n"
                                "sources:\n"
                                "  in: { type: fake, url: \"fake://in\" }\n";

/* ---------------------------------------------------------------- what is read */

static void a_directory_is_refused_and_named(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_file(f, "bad"),
                     "bad:1:1: error: cannot read the file: it is a directory, not a regular file");
}

static void a_fifo_is_refused_without_waiting_for_a_writer(void **state)
{
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/fifo.yaml", temp_dir());
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(20); /* before the fix, the open waited for a writer for ever */
    int rc = load_file(f, path);
    alarm(0);
    char want[256];
    snprintf(want, sizeof(want),
             "%s:1:1: error: cannot read the file: it is a FIFO, not a regular file", path);
    assert_one_error(f, rc, want);
}

static void a_device_is_refused_without_reading_it(void **state)
{
    fixture *f = *state;
    alarm(20); /* before the fix, /dev/zero was read until memory ran out */
    int rc = load_file(f, "/dev/zero");
    alarm(0);
    assert_one_error(f, rc,
                     "/dev/zero:1:1: error: cannot read the file: it is a character device, not "
                     "a regular file");
}

static void a_file_over_the_size_cap_is_refused(void **state)
{
    fixture *f = *state;
    char path[128], want[256];
    snprintf(path, sizeof(path), "%s/big.yaml", temp_dir());
    size_t len = TL_CONFIG_MAX_BYTES + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '#', len);
    write_file(path, text, len, 0644);
    free(text);
    snprintf(want, sizeof(want),
             "%s:1:1: error: the file is %zu bytes; a config may have at most %d", path, len,
             TL_CONFIG_MAX_BYTES);
    assert_one_error(f, load_file(f, path), want);
}

static void a_text_over_the_size_cap_is_refused(void **state)
{
    fixture *f = *state;
    size_t len = TL_CONFIG_MAX_BYTES + 10;
    char *text = malloc(len + 1);
    assert_non_null(text);
    memset(text, '#', len);
    text[len] = '\0';
    int rc = load_text(f, text);
    free(text);
    assert_one_error(f, rc,
                     "t.yaml:1:1: error: the text is over 1048576 bytes, the most a config "
                     "may have");
}

static void a_nul_byte_is_refused_at_its_line_and_column(void **state)
{
    fixture *f = *state;
    char path[128], want[256];
    snprintf(path, sizeof(path), "%s/nul.yaml", temp_dir());
    static const char text[] = "service: s\nsources: \0{}\nroutes: []\n";
    write_file(path, text, sizeof(text) - 1, 0644);
    snprintf(want, sizeof(want), "%s:2:10: error: a NUL byte; a config is text", path);
    assert_one_error(f, load_file(f, path), want);
}

static void an_escaped_nul_in_a_scalar_is_refused(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", params: { mode: \"fast\\0slow\" }"));
    assert_one_error(f, rc,
                     "t.yaml:5:52: error: routes[0].params.mode: a value must not contain a NUL "
                     "character (\\0)");
}

static void a_second_document_is_refused_at_its_start(void **state)
{
    fixture *f = *state;
    char text[1024];
    snprintf(text, sizeof(text), "%s---\nservice: other\n", with_route(""));
    assert_one_error(f, load_text(f, text),
                     "t.yaml:6:1: error: a second YAML document; a config file holds exactly one");
}

/* ---------------------------------------------------------------- aliases and keys */

static void nested_aliases_are_refused_at_the_alias_not_expanded(void **state)
{
    fixture *f = *state;
    /* Ten levels of ten: 10^10 nodes if expanded. The 8th alias of line 5 crosses the
     * budget: 110 + 1110 + 11110 + 8 * 11111 nodes added. */
    char text[4096] = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 10; i++) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++) {
            n = strlen(text);
            snprintf(text + n, sizeof(text) - n, "%s*a%d", k ? ", " : "", i - 1);
        }
        n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "]\n");
    }
    alarm(20);
    int rc = load_text(f, text);
    alarm(0);
    assert_one_error(f, rc,
                     "t.yaml:5:45: error: alias '*a3' expands the document past 100000 added "
                     "nodes; refused");
}

static void an_alias_inside_what_it_names_is_refused(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nloop: &l { workers: [*l] }\n");
    assert_one_error(f, rc, "t.yaml:2:22: error: alias '*l': it names a node that contains it");
}

static void an_alias_naming_no_anchor_before_it_is_refused(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nloop: *later\nlog: &later { level: info }\n");
    assert_one_error(f, rc, "t.yaml:2:7: error: alias '*later': no anchor comes before it");
}

static void more_anchors_than_the_cap_are_refused(void **state)
{
    fixture *f = *state;
    size_t cap = 16 * (TL_CONFIG_MAX_ANCHORS + 2);
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "x: [");
    for (int i = 0; i <= TL_CONFIG_MAX_ANCHORS; i++)
        n += (size_t)snprintf(text + n, cap - n, "%s&a%d v", i ? ", " : "", i);
    snprintf(text + n, cap - n, "]\n");
    int rc = load_text(f, text);
    free(text);
    assert_int_equal(rc, TL_ECONFIG);
    assert_int_equal(f->diag.count, 1);
    assert_non_null(strstr(f->diag.msgs[0], ": error: more than 1000 anchors in one file"));
}

static void merge_keys_keep_a_mappings_own_keys_and_the_first_sources(void **state)
{
    fixture *f = *state;
    assert_loaded(f,
                  load_text(f, "service: s\n"
                               "sources:\n"
                               "  a: &a { type: fake, url: \"fake://a\", count: 1 }\n"
                               "  b: &b { type: fake, url: \"fake://b\", count: 2, interval: 5s }\n"
                               "  in: { <<: [*a, *b], count: 3 }\n"
                               "routes:\n"
                               "  - { source: a, handler: handle }\n"
                               "  - { source: b, handler: handle }\n"
                               "  - { source: in, handler: handle }\n"));
    const tl_params *p = &f->cfg->sources[2].params;
    assert_string_equal(f->cfg->sources[2].type, "fake");
    assert_string_equal(tl_params_str(p, "url", NULL), "fake://a");
    assert_int_equal(tl_params_num(p, "count", 0), 3);
    assert_int_equal(tl_params_num(p, "interval", 0), 5000);
}

/* A mapping of n route params, one a line, as a config. */
static char *many_params(size_t n, const char *last)
{
    size_t cap = 64 + n * 24;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t k = (size_t)snprintf(text, cap,
                                "%sroutes:\n  - source: in\n    handler: handle\n"
                                "    params:\n",
                                HEAD);
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(text + k, cap - k, "      k%zu: v\n", i);
    snprintf(text + k, cap - k, "%s", last);
    return text;
}

static void many_keys_are_checked_in_linear_time(void **state)
{
    fixture *f = *state;
    char *text = many_params(60000, "");
    alarm(30); /* before the fix this took minutes: a key compared with every other */
    int rc = load_text(f, text);
    alarm(0);
    free(text);
    assert_loaded(f, rc);
    assert_int_equal(f->cfg->routes[0].nparams, 60000);
}

static void a_duplicate_among_many_keys_is_found_at_its_place(void **state)
{
    fixture *f = *state;
    char *text = many_params(60000, "      k123: again\n");
    alarm(30);
    int rc = load_text(f, text);
    alarm(0);
    free(text);
    assert_one_error(f, rc, "t.yaml:60008:7: error: duplicate key");
}

/* ---------------------------------------------------------------- values */

static void durations_past_168h_are_refused_and_168h_is_taken(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_text(f, with_route(", timeout: 99999999999h")),
                     "t.yaml:5:45: error: routes[0].timeout: duration \"99999999999h\" is out of "
                     "range (at most 168h)");
    tl_diag_free(&f->diag);
    assert_int_equal(load_text(f, with_route(", timeout: 169h")), TL_ECONFIG);
    tl_diag_free(&f->diag);
    assert_loaded(f, load_text(f, with_route(", timeout: 168h")));
    assert_int_equal(f->cfg->routes[0].timeout_ms, TL_CONFIG_MAX_DURATION_MS);
}

static void an_adapter_integer_out_of_its_range_is_refused(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x, count: -1 }\n"
                          "routes:\n  - { source: in, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:3:36: error: sources.in.count: -1 is out of range (0 to 2147483647)");
    tl_diag_free(&f->diag);
    rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x, count: 2147483648 }\n"
                      "routes:\n  - { source: in, handler: handle }\n");
    assert_int_equal(rc, TL_ECONFIG);
}

static void a_required_list_must_not_be_empty(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: listing, topics: [] }\n"
                          "routes:\n  - { source: in, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:3:24: error: sources.in.topics: must not be empty: give at least one "
                     "item");
}

static void an_empty_value_from_the_environment_is_refused_naming_it(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: \"${NOPE:-}\" }\n"
                          "routes:\n  - { source: in, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:3:26: error: sources.in.url: must not be empty, and \"${NOPE:-}\" "
                     "gives an empty value");
}

static void admin_addresses_are_parsed_strictly(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "999.1.1.1:9464", "1.2.3:80", "::1:9464", "[zz]:1", "host:65536", "host:+80",
        "a..b:1",         "host:",    "-host:1",  "9464",   "h st:9464",  NULL};
    static const char *const good[] = {"127.0.0.1:9464",
                                       ":9464",
                                       "*:0",
                                       "[::1]:9464",
                                       "localhost:80",
                                       "my_svc.example-1.org:8080",
                                       NULL};
    char extra[1024];
    for (size_t i = 0; bad[i]; i++) {
        snprintf(extra, sizeof(extra), "%sadmin: { listen: \"%s\" }\n", with_route(""), bad[i]);
        if (load_text(f, extra) != TL_ECONFIG)
            fail_msg("admin.listen \"%s\" was taken", bad[i]);
        tl_diag_free(&f->diag);
    }
    for (size_t i = 0; good[i]; i++) {
        snprintf(extra, sizeof(extra), "%sadmin: { listen: \"%s\" }\n", with_route(""), good[i]);
        assert_loaded(f, load_text(f, extra));
        tl_config_free(f->cfg);
        f->cfg = NULL;
    }
    snprintf(extra, sizeof(extra), "%sadmin: { listen: \"999.1.1.1:9464\" }\n", with_route(""));
    assert_one_error(f, load_text(f, extra),
                     "t.yaml:6:18: error: admin.listen: expected HOST:PORT, got "
                     "\"999.1.1.1:9464\": the host must be an IPv4 address, [IPv6], a host name, "
                     "* or empty");
}

static void a_reroute_to_the_routes_own_input_is_refused(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\n"
                          "sources:\n  in: { type: fake, url: x, topics: [orders, more] }\n"
                          "routes:\n  - { source: in, handler: handle,"
                          " on_stall: { reroute: \"fake:more\" },"
                          " on_error: { then: \"fake:orders.dlq\" } }\n");
    assert_one_error(f, rc,
                     "t.yaml:5:57: error: routes[0].on_stall.reroute: \"fake:more\" is what this "
                     "route's source 'in' reads: rerouting there would loop for ever");
}

static void two_routes_on_one_source_are_refused(void **state)
{
    fixture *f = *state;
    char text[1024];
    snprintf(text, sizeof(text), "%s  - { source: in, handler: other }\n", with_route(""));
    assert_one_error(f, load_text(f, text),
                     "t.yaml:6:15: error: routes[1].source: source 'in' already feeds routes[0]; "
                     "a source feeds exactly one route");
}

/* ---------------------------------------------------------------- plugins */

static void no_plugin_code_checks_plugins_without_opening_them(void **state)
{
    fixture *f = *state;
    char text[2048], want[1024];
    snprintf(text, sizeof(text),
             "plugins: [ \"%s\" ]\n%sroutes:\n  - { source: in, handler: from_plugin }\n",
             TL_TEST_PLUGIN, HEAD);
    tl_config_opts o = opts;
    o.no_plugin_code = true;
    int rc = tl_config_load_string("t.yaml", text, f->reg, &o, &f->cfg, &f->diag);
    assert_loaded(f, rc);
    assert_null(f->cfg->plugins[0].handle);
    assert_non_null(f->cfg->plugins[0].file);
    assert_null(f->cfg->routes[0].fn);
    assert_true(f->cfg->plugins_unopened);
    assert_int_equal(f->diag.errors, 0);
    snprintf(want, sizeof(want),
             "t.yaml:6:28: note: routes[0].handler: handler 'from_plugin' is not registered; "
             "taken to be provided by plugin \"%s\" (not loaded by check)",
             TL_TEST_PLUGIN);
    assert_has_message(f, want);
    tl_service *svc = NULL;
    char err[256];
    assert_int_equal(tl_service_new(f->cfg, f->reg, NULL, &svc, err, sizeof(err)), TL_EINVAL);
    assert_null(svc);
}

static void check_warns_of_a_plugin_handler_in_thread_mode_without_an_error_target(void **state)
{
    fixture *f = *state;
    char text[2048];
    tl_config_opts o = opts;
    o.no_plugin_code = true;
    snprintf(text, sizeof(text),
             "plugins: [ \"%s\" ]\n%sroutes:\n  - { source: in, handler: from_plugin }\n",
             TL_TEST_PLUGIN, HEAD);
    assert_loaded(f, tl_config_load_string("t.yaml", text, f->reg, &o, &f->cfg, &f->diag));
    assert_int_equal(f->diag.errors, 0);
    assert_has_message(f, "t.yaml:6:28: warning: routes[0].handler: a plugin's handler runs in the "
                          "service's threads and no on_error.then is set: if it crashes, the "
                          "service goes down and its message comes back again and again; "
                          "consider isolation: process and an on_error target");
    tl_config_free(f->cfg);
    f->cfg = NULL;
    tl_diag_free(&f->diag);
    /* In worker processes, a crash is a failed attempt: nothing to warn of. */
    snprintf(text, sizeof(text),
             "plugins: [ \"%s\" ]\n%sroutes:\n  - { source: in, handler: from_plugin, "
             "isolation: process }\n",
             TL_TEST_PLUGIN, HEAD);
    assert_loaded(f, tl_config_load_string("t.yaml", text, f->reg, &o, &f->cfg, &f->diag));
    for (size_t i = 0; i < f->diag.count; i++)
        assert_null(strstr(f->diag.msgs[i], "warning"));
}

static void a_relative_plugin_path_starts_at_the_config_folder(void **state)
{
    fixture *f = *state;
    const char *dir = temp_dir();
    char plugin[128], path[128], text[1024];
    snprintf(plugin, sizeof(plugin), "%s/plugin.so", dir);
    copy_file(TL_TEST_PLUGIN, plugin, 0755);
    snprintf(path, sizeof(path), "%s/service.yaml", dir);
    snprintf(text, sizeof(text),
             "plugins: [ plugin.so ]\n%sroutes:\n  - { source: in, "
             "handler: from_plugin }\n",
             HEAD);
    write_file(path, text, strlen(text), 0644);
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0); /* the working folder has no part in it */
    int rc = load_file(f, path);
    assert_int_equal(chdir(cwd), 0);
    assert_loaded(f, rc);
    assert_string_equal(f->cfg->plugins[0].file, plugin);
    assert_non_null(f->cfg->routes[0].fn);
}

/* Loads a config naming plugin.so in a folder of mode dir_mode, the file of file_mode. */
static int load_plugin_with_modes(fixture *f, mode_t dir_mode, mode_t file_mode, char *path,
                                  size_t pathlen)
{
    const char *dir = temp_dir();
    char plugin[128], text[1024];
    snprintf(plugin, sizeof(plugin), "%s/plugin.so", dir);
    copy_file(TL_TEST_PLUGIN, plugin, file_mode);
    assert_int_equal(chmod(dir, dir_mode), 0);
    snprintf(path, pathlen, "%s/service.yaml", dir);
    snprintf(text, sizeof(text),
             "plugins: [ plugin.so ]\n%sroutes:\n  - { source: in, "
             "handler: handle }\n",
             HEAD);
    write_file(path, text, strlen(text), 0644);
    return load_file(f, path);
}

static void a_plugin_writable_by_others_is_refused(void **state)
{
    fixture *f = *state;
    char path[128], want[512];
    int rc = load_plugin_with_modes(f, 0700, 0757, path, sizeof(path));
    snprintf(want, sizeof(want),
             "%s:1:12: error: plugins[0]: cannot load plugin \"plugin.so\": it is writable by "
             "others (chmod go-w)",
             path);
    assert_one_error(f, rc, want);
}

static void a_plugin_in_a_folder_writable_by_its_group_is_refused(void **state)
{
    fixture *f = *state;
    char path[128], want[512];
    int rc = load_plugin_with_modes(f, 0770, 0755, path, sizeof(path));
    snprintf(want, sizeof(want),
             "%s:1:12: error: plugins[0]: cannot load plugin \"plugin.so\": its folder is "
             "writable by its group (chmod go-w)",
             path);
    assert_one_error(f, rc, want);
}

/* ---------------------------------------------------------------- secrets */

static void an_error_about_a_value_from_the_environment_names_the_variable(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x, count: \"${HOST}\" "
                          "}\nroutes:\n  - { source: in, handler: handle, ordering: \"${PORT}\" "
                          "}\n");
    assert_int_equal(rc, TL_ECONFIG);
    assert_no_message_contains(f, "example.org");
    assert_no_message_contains(f, "9000");
    assert_has_message(
        f, "t.yaml:3:36: error: sources.in.count: expected an integer, got \"${HOST}\"");
    assert_has_message(f, "t.yaml:5:46: error: routes[0].ordering: expected partition, key or "
                          "none, got \"${PORT}\"");
}

static void an_error_never_quotes_a_secrets_value(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x,"
                          " props: { sasl.password: \"hun${ter 2}x\" } }\n"
                          "routes:\n  - { source: in, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:3:53: error: sources.in.props.sasl.password: bad ${...} in the "
                     "value of a secret (not shown; $$ is a literal $)");
    tl_diag_free(&f->diag);
    rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x, password: \"${PASS}\" "
                      "}\nroutes:\n  - { source: in, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:3:39: error: sources.in.password: environment variable 'PASS' is not "
                     "set (use ${PASS:-default} to give a default)");
}

static void an_error_masks_a_url_password(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", timeout: \"https://me:hunter2@example.org/x\""));
    assert_int_equal(rc, TL_ECONFIG);
    assert_no_message_contains(f, "hunter2");
    assert_has_message(f, "t.yaml:5:45: error: routes[0].timeout: expected a duration like 250ms, "
                          "2s, 1m or 1h, got \"https://me:*****@example.org/x\"");
}

static char *dump(const tl_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(tl_config_dump(cfg, out), 0);
    fclose(out);
    return text;
}

static void dump_masks_keys_naming_secrets_and_url_passwords(void **state)
{
    fixture *f = *state;
    assert_loaded(
        f, load_text(f, "service: s\nsources:\n"
                        "  in: { type: fake, url: \"redis://u:pw1@h:6379/0\","
                        " topics: [\"amqp://a:pw2@q\"],"
                        " props: { ssl.key.pem: pw3, api.token: pw4, x: \"s://b:pw5@c\" } }\n"
                        "routes:\n  - { source: in, handler: handle, params: {"
                        " api_key: pw6, db_credential: pw7, apiKey: pw8, secret_sauce: pw9,"
                        " dsn: \"postgres://me:pwA@db/x\", mode: fast } }\n"));
    char *text = dump(f->cfg);
    static const char *const hidden[] = {"pw1", "pw2", "pw3", "pw4", "pw5", "pw6",
                                         "pw7", "pw8", "pw9", "pwA", NULL};
    for (size_t i = 0; hidden[i]; i++)
        if (strstr(text, hidden[i]))
            fail_msg("%s is in the dump:\n%s", hidden[i], text);
    assert_non_null(strstr(text, "url: \"redis://u:*****@h:6379/0\""));
    assert_non_null(strstr(text, "dsn: \"postgres://me:*****@db/x\""));
    assert_non_null(strstr(text, "api_key: \"*****\""));
    assert_non_null(strstr(text, "mode: \"fast\""));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_directory_is_refused_and_named),
        T(a_fifo_is_refused_without_waiting_for_a_writer),
        T(a_device_is_refused_without_reading_it),
        T(a_file_over_the_size_cap_is_refused),
        T(a_text_over_the_size_cap_is_refused),
        T(a_nul_byte_is_refused_at_its_line_and_column),
        T(an_escaped_nul_in_a_scalar_is_refused),
        T(a_second_document_is_refused_at_its_start),
        T(nested_aliases_are_refused_at_the_alias_not_expanded),
        T(an_alias_inside_what_it_names_is_refused),
        T(an_alias_naming_no_anchor_before_it_is_refused),
        T(more_anchors_than_the_cap_are_refused),
        T(merge_keys_keep_a_mappings_own_keys_and_the_first_sources),
        T(many_keys_are_checked_in_linear_time),
        T(a_duplicate_among_many_keys_is_found_at_its_place),
        T(durations_past_168h_are_refused_and_168h_is_taken),
        T(an_adapter_integer_out_of_its_range_is_refused),
        T(a_required_list_must_not_be_empty),
        T(an_empty_value_from_the_environment_is_refused_naming_it),
        T(admin_addresses_are_parsed_strictly),
        T(a_reroute_to_the_routes_own_input_is_refused),
        T(two_routes_on_one_source_are_refused),
        T(no_plugin_code_checks_plugins_without_opening_them),
        T(check_warns_of_a_plugin_handler_in_thread_mode_without_an_error_target),
        T(a_relative_plugin_path_starts_at_the_config_folder),
        T(a_plugin_writable_by_others_is_refused),
        T(a_plugin_in_a_folder_writable_by_its_group_is_refused),
        T(an_error_about_a_value_from_the_environment_names_the_variable),
        T(an_error_never_quotes_a_secrets_value),
        T(an_error_masks_a_url_password),
        T(dump_masks_keys_naming_secrets_and_url_passwords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
