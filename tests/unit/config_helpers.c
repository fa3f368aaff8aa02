/* The fixture shared by the YAML config tests; see config_helpers.h. */
#include "config_helpers.h"

#include <taskloop/service.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tl_param fake_source_params[] = {
    {"url", TL_PARAM_STRING, true, false, "where to read"},
    {"count", TL_PARAM_INT, false, false, "how many"},
    {"enabled", TL_PARAM_BOOL, false, false, "on or off"},
    {"interval", TL_PARAM_DURATION, false, false, "poll interval"},
    {"topics", TL_PARAM_LIST, false, false, "what to read"},
    {"props", TL_PARAM_MAP, false, true, "passed through"},
    {"password", TL_PARAM_STRING, false, false, "a secret"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

static const tl_param fake_sink_params[] = {
    {"brokers", TL_PARAM_STRING, true, false, "where to send"},
    {"props", TL_PARAM_MAP, false, true, "passed through"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

static const tl_param listing_source_params[] = {
    {"topics", TL_PARAM_LIST, true, false, "what to read"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};

const tl_source_ops fake_source = {.type = "fake", .params = fake_source_params, .input = "topics"};
const tl_sink_ops fake_sink = {.scheme = "fake", .params = fake_sink_params};
/* Takes part in transactions, as far as the config can tell (delivery: exactly_once). */
static const tl_txn_ops listing_txn = {0};
const tl_source_ops listing_source = {
    .type = "listing", .params = listing_source_params, .txn = &listing_txn};

int handler_user;

int handle(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

int other(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

/* A fixed environment: HOST and PORT are set, EMPTY is set but empty. */
/* Handler "strict" declares its params: n (required, 1 to 10), mode (a or b, by its
 * check) and out (an output of the route, by its check). */
static const tl_param strict_params[] = {{"n", TL_PARAM_INT, true, false, "a count"},
                                         {"mode", TL_PARAM_STRING, false, false, "a or b"},
                                         {"out", TL_PARAM_STRING, false, false, "an output"},
                                         {"wait", TL_PARAM_DURATION, false, false, "a pause"},
                                         {NULL, 0, false, false, NULL}};
static const tl_param_range strict_ranges[] = {{"n", 1, 10}, {NULL, 0, 0}};

static void strict_check(const tl_kv *kv, size_t n, const char *const *outputs, size_t noutputs,
                         tl_param_report_fn report, void *rep)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].key, "mode") == 0 && strcmp(kv[i].value, "a") != 0 &&
            strcmp(kv[i].value, "b") != 0)
            report(rep, "mode", NULL, "expected a or b");
        bool found = false;
        for (size_t o = 0; o < noutputs; o++)
            found = found || strcmp(outputs[o], kv[i].value) == 0;
        if (strcmp(kv[i].key, "out") == 0 && !found)
            report(rep, "out", NULL, "names no output");
    }
}

static const char *test_env(const char *name, void *user)
{
    (void)user;
    static const char *const vars[][2] = {
        {"HOST", "example.org"}, {"PORT", "9000"}, {"EMPTY", ""}, {"PRICE", "$5"}};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strcmp(name, vars[i][0]) == 0)
            return vars[i][1];
    return NULL;
}

const tl_config_opts opts = {.getenv = test_env};

int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(tl_registry_new(&f->reg), 0);
    assert_int_equal(tl_registry_add_source(f->reg, &fake_source), 0);
    assert_int_equal(tl_registry_add_source(f->reg, &listing_source), 0);
    assert_int_equal(tl_registry_add_sink(f->reg, &fake_sink), 0);
    assert_int_equal(tl_register_handler(f->reg, "handle", handle, &handler_user), 0);
    assert_int_equal(tl_register_handler(f->reg, "other", other, NULL), 0);
    static const tl_handler_params strict = {strict_params, strict_ranges, strict_check};
    assert_int_equal(tl_register_handler(f->reg, "strict", other, NULL), 0);
    assert_int_equal(tl_register_handler_params(f->reg, "strict", &strict), 0);
    assert_int_equal(tl_register_builtin_handlers(f->reg), 0);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    fixture *f = *state;
    tl_config_free(f->cfg);
    tl_diag_free(&f->diag);
    tl_registry_free(f->reg);
    free(f);
    return 0;
}

int load_file(fixture *f, const char *path)
{
    return tl_config_load_file(path, f->reg, &opts, &f->cfg, &f->diag);
}

int load_text(fixture *f, const char *text)
{
    return tl_config_load_string("t.yaml", text, f->reg, &opts, &f->cfg, &f->diag);
}

void assert_loaded(fixture *f, int rc)
{
    if (rc != 0)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
    assert_non_null(f->cfg);
}

void assert_one_error(fixture *f, int rc, const char *want)
{
    assert_int_equal(rc, TL_ECONFIG);
    assert_null(f->cfg);
    if (f->diag.count != 1 || strcmp(f->diag.msgs[0], want) != 0) {
        fprintf(stderr, "want: %s\n got:\n", want);
        tl_diag_print(&f->diag, stderr);
    }
    assert_int_equal(f->diag.count, 1);
    assert_string_equal(f->diag.msgs[0], want);
}

static const char *const MINIMAL_HEAD = "service: s\n"
                                        "sources:\n"
                                        "  in: { type: fake, url: \"fake://in\" }\n";

char *with_route(const char *extra)
{
    static char text[1024];
    snprintf(text, sizeof(text), "%sroutes:\n  - { source: in, handler: handle%s }\n", MINIMAL_HEAD,
             extra);
    return text;
}
