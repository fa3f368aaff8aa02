/*
 * The admin section: where the endpoint listens by default (loopback), and its bearer
 * token, given as a value (usually "${TL_ADMIN_TOKEN}") or as a file, which no message
 * quotes and the dump masks; a token file must be a small regular file. The requests themselves are
 * tested over HTTP in tests/integration/test_admin.sh. The fixture is in config_helpers.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_helpers.h"

#define TOKEN "Zk4-admin.token_value"

/* The environment of these tests: TL_ADMIN_TOKEN holds the token, SPACED one with a
 * blank in it; nothing else is set. */
static const char *test_env(const char *name, void *user)
{
    (void)user;
    if (strcmp(name, "TL_ADMIN_TOKEN") == 0)
        return TOKEN;
    if (strcmp(name, "SPACED") == 0)
        return "two words";
    return NULL;
}

static const tl_config_opts env_opts = {.getenv = test_env};

/* A minimal config with admin (a flow mapping's inside) as its admin section. */
static int load_admin(fixture *f, const char *admin)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "service: s\n"
             "sources:\n"
             "  in: { type: fake, url: \"fake://in\" }\n"
             "routes:\n"
             "  - { source: in, handler: handle }\n"
             "admin: { %s }\n",
             admin);
    return tl_config_load_string("t.yaml", text, f->reg, &env_opts, &f->cfg, &f->diag);
}

/* The dump of f->cfg (malloc'd). */
static char *dump(fixture *f)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(tl_config_dump(f->cfg, out), 0);
    fclose(out);
    return buf;
}

static void admin_without_listen_listens_on_loopback(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_admin(f, "token: \"${TL_ADMIN_TOKEN}\""));
    assert_string_equal(f->cfg->admin_listen, "127.0.0.1:9464");
}

static void no_admin_section_means_no_token(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_text(f, with_route("")));
    assert_null(f->cfg->admin_listen);
    assert_null(f->cfg->admin_token);
}

static void token_from_a_variable_is_kept_and_masked_in_the_dump(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_admin(f, "listen: \"127.0.0.1:0\", token: \"${TL_ADMIN_TOKEN}\""));
    assert_string_equal(f->cfg->admin_token, TOKEN);
    char *text = dump(f);
    assert_null(strstr(text, TOKEN));
    assert_non_null(strstr(text, "admin:\n  listen: \"127.0.0.1:0\"\n  token: \"*****\"\n"));
    free(text);
}

static void unset_token_variable_is_named(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_admin(f, "token: \"${NO_SUCH_TOKEN}\""),
                     "t.yaml:6:17: error: admin.token: environment variable 'NO_SUCH_TOKEN' is "
                     "not set (use ${NO_SUCH_TOKEN:-default} to give a default)");
}

static void token_with_a_blank_is_refused_without_quoting_it(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_admin(f, "token: \"${SPACED}\""),
                     "t.yaml:6:17: error: admin.token: must not hold blanks or control characters "
                     "(it is sent as \"Authorization: Bearer TOKEN\")");
    assert_null(strstr(f->diag.msgs[0], "two words"));
}

static void token_and_token_file_together_are_refused(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_admin(f, "token: abc, token_file: /nonexistent"),
                     "t.yaml:6:22: error: admin.token_file: give token or token_file, not both");
}

static void missing_token_file_is_refused_at_its_line(void **state)
{
    fixture *f = *state;
    assert_one_error(f, load_admin(f, "token_file: /nonexistent/token"),
                     "t.yaml:6:22: error: admin.token_file: cannot read the file: No such file "
                     "or directory");
}

static void token_file_gives_its_line_and_the_dump_names_the_file(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/tl_admin_XXXXXX", path[64], admin[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(TOKEN "\n", fp);
    fclose(fp);
    chmod(path, 0600);
    snprintf(admin, sizeof(admin), "token_file: \"%s\"", path);
    int rc = load_admin(f, admin);
    char *text = rc == 0 ? dump(f) : NULL;
    unlink(path);
    rmdir(dir);
    assert_loaded(f, rc);
    assert_string_equal(f->cfg->admin_token, TOKEN);
    assert_int_equal(f->diag.count, 0);
    assert_null(strstr(text, TOKEN));
    assert_non_null(strstr(text, "  token_file: \"/tmp/tl_admin_"));
    free(text);
}

static void token_file_readable_by_others_is_noted(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/tl_admin_XXXXXX", path[64], admin[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(TOKEN, fp);
    fclose(fp);
    chmod(path, 0644);
    snprintf(admin, sizeof(admin), "token_file: \"%s\"", path);
    int rc = load_admin(f, admin);
    unlink(path);
    rmdir(dir);
    assert_loaded(f, rc);
    assert_int_equal(f->diag.count, 1);
    assert_non_null(strstr(f->diag.msgs[0], "note: admin.token_file: the file is readable by "
                                            "group or others"));
}

/* Loads a config whose token_file is path and checks its one error: at the key's
 * value, saying why (want), and not stalling on what a FIFO or a device would hold. */
static void assert_token_file_refused(fixture *f, const char *path, const char *want)
{
    char admin[160], expect[320];
    snprintf(admin, sizeof(admin), "token_file: \"%s\"", path);
    snprintf(expect, sizeof(expect), "t.yaml:6:22: error: admin.token_file: %s", want);
    assert_one_error(f, load_admin(f, admin), expect);
}

static void token_file_that_is_a_fifo_is_refused_without_waiting(void **state)
{
    char dir[] = "/tmp/tl_admin_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_token_file_refused(*state, path,
                              "cannot read the file: it is a FIFO, not a regular file");
    unlink(path);
    rmdir(dir);
}

static void token_file_that_is_a_directory_is_refused(void **state)
{
    assert_token_file_refused(*state, "/tmp",
                              "cannot read the file: it is a directory, not a regular file");
}

static void token_file_that_is_a_device_is_refused(void **state)
{
    assert_token_file_refused(*state, "/dev/zero",
                              "cannot read the file: it is a character device, not a regular file");
}

static void token_file_over_4096_bytes_is_refused(void **state)
{
    char dir[] = "/tmp/tl_admin_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 4097; i++)
        fputc('t', fp);
    fclose(fp);
    chmod(path, 0600);
    assert_token_file_refused(*state, path,
                              "the file is 4097 bytes; a token file may have at most 4096");
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(admin_without_listen_listens_on_loopback),
        T(no_admin_section_means_no_token),
        T(token_from_a_variable_is_kept_and_masked_in_the_dump),
        T(unset_token_variable_is_named),
        T(token_with_a_blank_is_refused_without_quoting_it),
        T(token_and_token_file_together_are_refused),
        T(missing_token_file_is_refused_at_its_line),
        T(token_file_that_is_a_fifo_is_refused_without_waiting),
        T(token_file_that_is_a_directory_is_refused),
        T(token_file_that_is_a_device_is_refused),
        T(token_file_over_4096_bytes_is_refused),
        T(token_file_gives_its_line_and_the_dump_names_the_file),
        T(token_file_readable_by_others_is_noted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
