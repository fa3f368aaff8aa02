/*
 * The fixture shared by the YAML config tests (test_config, test_config_errors): a
 * registry with a fake source type and sink scheme and two handlers, a fixed
 * environment for ${VAR} interpolation, and loaders that keep the messages.
 *
 * The tests run with tests/unit/configs as their working directory, so that file
 * names in messages read "good/NAME.yaml" and "bad/NAME.yaml".
 */
#ifndef TL_TEST_CONFIG_HELPERS_H
#define TL_TEST_CONFIG_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <taskloop/config.h>

/* Source type "fake" (url required, one parameter of each type; it reads its `topics`,
 * so a reroute to "fake:TOPIC" of one of them would loop) and sink scheme "fake". */
extern const tl_source_ops fake_source;
extern const tl_sink_ops fake_sink;

/* Source type "listing": a required list, `topics`. */
extern const tl_source_ops listing_source;

/* The user pointer of handler "handle": its address tells that it came through. */
extern int handler_user;

/* Handlers "handle" and "other": they do nothing; tests compare their addresses.
 * "strict" (other's function) declares params (tl_register_handler_params), and the
 * built-in handlers are there with theirs. */
int handle(tl_task *task, const tl_msg *msg, void *user);
int other(tl_task *task, const tl_msg *msg, void *user);

/* Load options with a fixed environment: HOST, PORT and PRICE are set, EMPTY is empty. */
extern const tl_config_opts opts;

typedef struct fixture {
    tl_registry *reg;
    tl_config *cfg;
    tl_diag diag;
} fixture;

/* cmocka setup and teardown: a fresh fixture, and what its loads left freed. */
int setup(void **state);
int teardown(void **state);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* Loads the file at path into f->cfg, messages into f->diag. */
int load_file(fixture *f, const char *path);

/* Loads text as the file "t.yaml" into f->cfg, messages into f->diag. */
int load_text(fixture *f, const char *text);

/* Fails showing every message when the load did not succeed. */
void assert_loaded(fixture *f, int rc);

/* Fails unless the only message is want. */
void assert_one_error(fixture *f, int rc, const char *want);

/* A minimal valid config with extra appended to its only route (a static buffer). */
char *with_route(const char *extra);

#endif
