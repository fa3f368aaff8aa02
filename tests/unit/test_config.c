/*
 * The YAML config as it loads: every field, defaults, ${VAR} interpolation, the names
 * a config refers to (each missing one named in a single message), anchors, and dump.
 * What bad configs report is in test_config_errors.c; the fixture in config_helpers.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_helpers.h"

/* ---------------------------------------------------------------- valid configs */

static void full_config_loads_every_field(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_file(f, "good/full.yaml"));
    tl_config *c = f->cfg;
    assert_string_equal(c->file, "good/full.yaml");
    assert_string_equal(c->service, "orders");
    assert_int_equal(c->workers, 8);
    assert_int_equal(c->max_in_flight, 500);
    assert_int_equal(c->drain_timeout_ms, 3000);
    assert_int_equal(c->max_replaced_workers, 2);

    assert_int_equal(c->nsources, 2);
    const tl_config_source *s = &c->sources[0];
    assert_string_equal(s->name, "orders");
    assert_string_equal(s->type, "fake");
    assert_ptr_equal(s->ops, &fake_source);
    assert_int_equal(s->line, 5);
    assert_string_equal(s->params.section, "orders");
    assert_int_equal(s->params.n, 7);
    assert_string_equal(tl_params_str(&s->params, "url", NULL), "fake://localhost");
    assert_int_equal(tl_params_num(&s->params, "count", 0), 42);
    assert_int_equal(tl_params_num(&s->params, "enabled", 0), 1);
    assert_int_equal(tl_params_num(&s->params, "interval", 0), 250);
    const tl_param_value *topics = tl_params_get(&s->params, "topics");
    assert_int_equal(topics->nlist, 2);
    assert_string_equal(topics->list[1], "payments");
    const tl_param_value *props = tl_params_get(&s->params, "props");
    assert_int_equal(props->nmap, 2);
    assert_string_equal(props->map[0].key, "auto.offset.reset");
    assert_string_equal(props->map[0].value, "earliest");
    assert_string_equal(tl_params_str(&s->params, "password", NULL), "s3cret");
    assert_string_equal(tl_params_str(&c->sources[1].params, "url", NULL),
                        "fake://example.org:9000");

    assert_int_equal(c->nsinks, 1);
    assert_string_equal(c->sinks[0].scheme, "fake");
    assert_ptr_equal(c->sinks[0].ops, &fake_sink);
    assert_string_equal(tl_params_str(&c->sinks[0].params, "brokers", NULL), "localhost:9092");

    assert_int_equal(c->nroutes, 2);
    const tl_config_route *r = &c->routes[0];
    assert_int_equal(r->source, 0);
    assert_string_equal(r->handler, "handle");
    assert_ptr_equal(r->fn, handle);
    assert_ptr_equal(r->user, &handler_user);
    assert_int_equal(r->ordering, TL_ORDER_KEY);
    assert_false(r->run_inline);
    assert_int_equal(r->timeout_ms, 2000);
    assert_string_equal(r->on_stall.scheme, "fake");
    assert_string_equal(r->on_stall.address, "orders.stalled");
    assert_ptr_equal(r->on_stall.ops, &fake_sink);
    assert_int_equal(r->retries, 3);
    assert_int_equal(r->backoff_ms, 150);
    assert_string_equal(r->on_error.address, "orders.dlq");
    assert_int_equal(r->nparams, 2);
    assert_string_equal(r->params[0].key, "stall_ratio");
    assert_string_equal(r->params[0].value, "0.02");

    r = &c->routes[1];
    assert_int_equal(r->source, 1);
    assert_ptr_equal(r->fn, other);
    assert_int_equal(r->ordering, TL_ORDER_NONE);
    assert_true(r->run_inline);
    assert_int_equal(r->timeout_ms, 60000);
    assert_null(r->on_stall.scheme);
    assert_null(r->on_error.scheme);

    assert_int_equal(c->nplugins, 0);
    assert_string_equal(c->admin_listen, "127.0.0.1:9464");
    assert_int_equal(c->log_format, TL_LOG_JSON);
    assert_int_equal(c->log_level, TL_LOG_DEBUG);
}

static void omitted_fields_take_their_defaults(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_file(f, "good/minimal.yaml"));
    tl_config *c = f->cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cpus < 2 ? 2 : cpus);
    assert_int_equal(c->max_in_flight, 10000);
    assert_int_equal(c->drain_timeout_ms, 10000);
    assert_int_equal(c->max_replaced_workers, 4);
    assert_int_equal(c->nsinks, 0);
    const tl_config_route *r = &c->routes[0];
    assert_int_equal(r->ordering, TL_ORDER_PARTITION);
    assert_false(r->run_inline);
    assert_int_equal(r->timeout_ms, 30000);
    assert_int_equal(r->retries, 0);
    assert_int_equal(r->backoff_ms, 100);
    assert_null(r->on_stall.scheme);
    assert_null(r->on_error.scheme);
    assert_int_equal(r->nparams, 0);
    assert_null(c->admin_listen);
    assert_int_equal(c->log_format, TL_LOG_LOGFMT);
    assert_int_equal(c->log_level, TL_LOG_INFO);
}

static void a_null_diag_still_reports_failure(void **state)
{
    fixture *f = *state;
    int rc = tl_config_load_string(NULL, "service: s\n", f->reg, NULL, &f->cfg, NULL);
    assert_int_equal(rc, TL_ECONFIG);
    assert_null(f->cfg);
}

/* ---------------------------------------------------------------- interpolation */

static const char *interpolated(fixture *f, const char *value)
{
    char text[512];
    snprintf(text, sizeof(text),
             "service: '%s'\nsources:\n  in: { type: fake, url: x }\n"
             "routes:\n  - { source: in, handler: handle }\n",
             value);
    assert_loaded(f, load_text(f, text));
    return f->cfg->service;
}

static void interpolation_substitutes_set_variables(void **state)
{
    assert_string_equal(interpolated(*state, "${HOST}:${PORT}/x"), "example.org:9000/x");
}

static void interpolation_uses_default_when_unset(void **state)
{
    assert_string_equal(interpolated(*state, "${NOPE:-fallback}"), "fallback");
}

static void interpolation_uses_default_when_empty(void **state)
{
    assert_string_equal(interpolated(*state, "${EMPTY:-fallback}"), "fallback");
}

static void interpolation_keeps_an_empty_value_without_default(void **state)
{
    assert_string_equal(interpolated(*state, "a${EMPTY}b"), "ab");
}

static void double_dollar_escapes_a_dollar(void **state)
{
    assert_string_equal(interpolated(*state, "$${HOST} costs $$5, $x"), "${HOST} costs $5, $x");
}

static void values_are_not_expanded_twice(void **state)
{
    assert_string_equal(interpolated(*state, "${PRICE}{HOST}"), "$5{HOST}");
}

static void unset_variable_is_an_error_with_its_position(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", timeout: \"${ROUTE_TIMEOUT}\""));
    assert_one_error(f, rc,
                     "t.yaml:5:45: error: routes[0].timeout: environment variable "
                     "'ROUTE_TIMEOUT' is not set (use ${ROUTE_TIMEOUT:-default} to give a "
                     "default)");
}

/* The message names the variable: what it holds may be nobody's business. */
static void interpolated_text_is_type_checked(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", timeout: \"${PORT}\""));
    assert_one_error(f, rc,
                     "t.yaml:5:45: error: routes[0].timeout: duration \"${PORT}\" has no unit "
                     "(write ${PORT}ms, ${PORT}s, ${PORT}m or ${PORT}h)");
}

/* ---------------------------------------------------------------- values */

/* loop.shards: auto is a loop per online CPU, also when it comes from the environment;
 * another word is refused naming both forms. */
static void shards_auto_is_one_per_cpu(void **state)
{
    fixture *f = *state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char text[1024];
    snprintf(text, sizeof(text), "loop: { shards: auto }\n%s", with_route(""));
    assert_loaded(f, load_text(f, text));
    assert_int_equal(f->cfg->shards, cpus > 64 ? 64 : cpus);
    tl_config_free(f->cfg);
    f->cfg = NULL;
    snprintf(text, sizeof(text), "loop: { shards: \"${NOT_SET:-auto}\" }\n%s", with_route(""));
    assert_loaded(f, load_text(f, text));
    assert_int_equal(f->cfg->shards, cpus > 64 ? 64 : cpus);
    tl_config_free(f->cfg);
    f->cfg = NULL;
    snprintf(text, sizeof(text), "loop: { shards: many }\n%s", with_route(""));
    assert_one_error(f, load_text(f, text),
                     "t.yaml:1:17: error: loop.shards: expected an integer or auto, got \"many\"");
}

static void unknown_key_suggests_the_closest_one(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", ordring: key"));
    assert_one_error(f, rc,
                     "t.yaml:5:36: error: routes[0].ordring: unknown key 'ordring' "
                     "(did you mean 'ordering'?)");
}

static void missing_handler_is_named(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x }\n"
                          "routes:\n  - { source: in, handler: process_order }\n");
    assert_one_error(f, rc,
                     "t.yaml:5:28: error: routes[0].handler: no handler named 'process_order' "
                     "is registered");
}

static void missing_sink_scheme_is_named(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, with_route(", on_error: { then: \"kafka:dlq\" }"));
    assert_one_error(f, rc,
                     "t.yaml:5:54: error: routes[0].on_error.then: unknown sink scheme 'kafka' "
                     "in target \"kafka:dlq\"");
}

static void missing_source_is_named(void **state)
{
    fixture *f = *state;
    int rc = load_text(f, "service: s\nsources:\n  in: { type: fake, url: x }\n"
                          "routes:\n  - { source: in, handler: handle }\n"
                          "  - { source: inn, handler: handle }\n");
    assert_one_error(f, rc,
                     "t.yaml:6:15: error: routes[1].source: unknown source 'inn' "
                     "(did you mean 'in'?)");
}

static void anchors_and_merge_keys_are_resolved(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_text(f, "service: s\n"
                                  "sources:\n"
                                  "  a: &base { type: fake, url: \"fake://a\", count: 1 }\n"
                                  "  b: { <<: *base, count: 2 }\n"
                                  "routes:\n"
                                  "  - { source: a, handler: handle }\n"
                                  "  - { source: b, handler: handle }\n"));
    assert_string_equal(tl_params_str(&f->cfg->sources[1].params, "url", NULL), "fake://a");
    assert_int_equal(tl_params_num(&f->cfg->sources[1].params, "count", 0), 2);
}

/* ---------------------------------------------------------------- dump */

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

static void dump_masks_secrets(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_file(f, "good/full.yaml"));
    char *text = dump(f->cfg);
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "s3cret"));
    assert_non_null(strstr(text, "    password: \"*****\"\n"));
    assert_non_null(strstr(text, "      sasl.password: \"*****\"\n"));
    assert_non_null(strstr(text, "      auto.offset.reset: \"earliest\"\n"));
    free(text);
}

static void dump_loads_back_to_the_same_config(void **state)
{
    fixture *f = *state;
    assert_loaded(f, load_text(f, "service: 'pay $$5'\nloop: { drain_timeout: 1500ms }\n"
                                  "sources:\n  in: { type: fake, url: \"a\\\"b\", "
                                  "topics: [x, y] }\n"
                                  "routes:\n  - { source: in, handler: handle, timeout: 90s,"
                                  " on_stall: { reroute: 'fake:s' }, params: { k: v } }\n"
                                  "admin: { listen: ':9464' }\n"));
    char *text = dump(f->cfg);
    tl_config *again = NULL;
    int rc = tl_config_load_string("dump", text, f->reg, &opts, &again, &f->diag);
    if (rc)
        fprintf(stderr, "%s", text), tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
    assert_string_equal(again->service, "pay $5");
    assert_int_equal(again->drain_timeout_ms, 1500);
    assert_string_equal(tl_params_str(&again->sources[0].params, "url", NULL), "a\"b");
    assert_int_equal(tl_params_get(&again->sources[0].params, "topics")->nlist, 2);
    assert_int_equal(again->routes[0].timeout_ms, 90000);
    assert_string_equal(again->routes[0].on_stall.address, "s");
    assert_string_equal(again->routes[0].params[0].value, "v");
    assert_string_equal(again->admin_listen, ":9464");
    char *twice = dump(again);
    assert_string_equal(text, twice);
    free(twice);
    free(text);
    tl_config_free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(full_config_loads_every_field),
        T(omitted_fields_take_their_defaults),
        T(a_null_diag_still_reports_failure),
        T(interpolation_substitutes_set_variables),
        T(interpolation_uses_default_when_unset),
        T(interpolation_uses_default_when_empty),
        T(interpolation_keeps_an_empty_value_without_default),
        T(double_dollar_escapes_a_dollar),
        T(values_are_not_expanded_twice),
        T(unset_variable_is_an_error_with_its_position),
        T(interpolated_text_is_type_checked),
        T(shards_auto_is_one_per_cpu),
        T(unknown_key_suggests_the_closest_one),
        T(missing_handler_is_named),
        T(missing_sink_scheme_is_named),
        T(missing_source_is_named),
        T(anchors_and_merge_keys_are_resolved),
        T(dump_masks_secrets),
        T(dump_loads_back_to_the_same_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
