/*
 * The config's value parsers and interpolation, on their own: durations, integers,
 * booleans, ${VAR} expansion, secret names, URL passwords and suggestions. White-box: they are
 * private to the runtime (config_int.h); tests/unit/test_config.c covers them through
 * whole configs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config_int.h"

/* ---------------------------------------------------------------- numbers */

static void durations_take_ms_s_m_and_h(void **state)
{
    (void)state;
    char why[256];
    int64_t ms;
    const struct {
        const char *text;
        int64_t ms;
    } ok[] = {{"250ms", 250}, {"2s", 2000}, {"1m", 60000}, {"1h", 3600000}, {"0s", 0}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(tl_config_parse_duration(ok[i].text, &ms, why, sizeof(why)), 0);
        assert_int_equal(ms, ok[i].ms);
    }
}

static void durations_without_unit_negative_or_huge_are_refused(void **state)
{
    (void)state;
    char why[256];
    int64_t ms;
    assert_int_equal(tl_config_parse_duration("100", &ms, why, sizeof(why)), TL_ECONFIG);
    assert_string_equal(why, "duration \"100\" has no unit (write 100ms, 100s, 100m or 100h)");
    assert_int_equal(tl_config_parse_duration("-2s", &ms, why, sizeof(why)), TL_ECONFIG);
    assert_string_equal(why, "negative duration \"-2s\"");
    assert_int_equal(tl_config_parse_duration("9999999999999999h", &ms, why, sizeof(why)),
                     TL_ECONFIG);
    assert_string_equal(why, "duration \"9999999999999999h\" is out of range (at most 168h)");
    assert_int_equal(tl_config_parse_duration("2 s", &ms, why, sizeof(why)), TL_ECONFIG);
}

static void integers_with_trailing_text_are_refused(void **state)
{
    (void)state;
    char why[256];
    int64_t v = 0;
    assert_int_equal(tl_config_parse_int("8x", 0, 100, &v, why, sizeof(why)), TL_ECONFIG);
    assert_string_equal(why, "expected an integer, got \"8x\"");
    assert_int_equal(v, 0);
    assert_int_equal(
        tl_config_parse_int("-9223372036854775808", INT64_MIN, INT64_MAX, &v, why, sizeof(why)), 0);
    assert_int_equal(v, INT64_MIN);
    assert_int_equal(
        tl_config_parse_int("9223372036854775808", INT64_MIN, INT64_MAX, &v, why, sizeof(why)),
        TL_ECONFIG);
}

static void booleans_are_true_or_false_only(void **state)
{
    (void)state;
    char why[256];
    bool b = false;
    assert_int_equal(tl_config_parse_bool("true", &b, why, sizeof(why)), 0);
    assert_true(b);
    assert_int_equal(tl_config_parse_bool("false", &b, why, sizeof(why)), 0);
    assert_false(b);
    assert_int_equal(tl_config_parse_bool("yes", &b, why, sizeof(why)), TL_ECONFIG);
    assert_non_null(strstr(why, "yes"));
}

/* ---------------------------------------------------------------- interpolation */

static const char *fake_env(const char *name, void *user)
{
    (void)user;
    if (strcmp(name, "HOST") == 0)
        return "kafka:9092";
    if (strcmp(name, "EMPTY") == 0)
        return "";
    return NULL;
}

/* Expands text with fake_env; returns the result (caller frees) or NULL with why set. */
static char *expand(const char *text, char *why, size_t whylen)
{
    char *out = NULL;
    if (tl_config_interpolate(text, strlen(text), fake_env, NULL, &out, why, whylen) != 0)
        return NULL;
    return out;
}

static void interpolation_replaces_set_variables_in_place(void **state)
{
    (void)state;
    char why[256];
    char *out = expand("bootstrap=${HOST}/x", why, sizeof(why));
    assert_non_null(out);
    assert_string_equal(out, "bootstrap=kafka:9092/x");
    free(out);
}

static void interpolation_default_covers_unset_and_empty(void **state)
{
    (void)state;
    char why[256];
    char *a = expand("${NOPE:-local:1}", why, sizeof(why));
    char *b = expand("${EMPTY:-fallback}", why, sizeof(why));
    char *c = expand("${HOST:-unused}", why, sizeof(why));
    assert_string_equal(a, "local:1");
    assert_string_equal(b, "fallback");
    assert_string_equal(c, "kafka:9092");
    free(a);
    free(b);
    free(c);
}

static void interpolation_double_dollar_is_one_dollar_and_lone_dollars_stay(void **state)
{
    (void)state;
    char why[256];
    char *out = expand("pay $$5, cost $3", why, sizeof(why));
    assert_string_equal(out, "pay $5, cost $3");
    free(out);
}

static void interpolation_of_an_unset_variable_names_it(void **state)
{
    (void)state;
    char why[256] = "";
    assert_null(expand("x${MISSING}y", why, sizeof(why)));
    assert_non_null(strstr(why, "MISSING"));
}

static void interpolation_of_an_unclosed_reference_is_an_error(void **state)
{
    (void)state;
    char why[256] = "";
    assert_null(expand("${HOST", why, sizeof(why)));
    assert_true(why[0] != '\0');
}

/* ---------------------------------------------------------------- names */

static void secret_names_are_recognised(void **state)
{
    (void)state;
    assert_true(tl_config_is_secret("sasl.password"));
    assert_true(tl_config_is_secret("ssl.key.pem"));
    assert_true(tl_config_is_secret("sasl.oauthbearer.client.secret"));
    assert_true(tl_config_is_secret("API_TOKEN"));
    assert_false(tl_config_is_secret("bootstrap.servers"));
}

static void names_with_key_or_credential_are_secrets(void **state)
{
    (void)state;
    assert_true(tl_config_is_secret("api_key"));
    assert_true(tl_config_is_secret("ssl.key"));
    assert_true(tl_config_is_secret("apiKey"));
    assert_true(tl_config_is_secret("db_credentials"));
    assert_true(tl_config_is_secret("passwd"));
    assert_false(tl_config_is_secret("group"));
}

static char *masked(const char *s)
{
    static char out[256];
    size_t n = tl_config_mask_urls(s, out, sizeof(out));
    assert_int_equal(n, strlen(out));
    return out;
}

static void url_passwords_are_masked_and_nothing_else(void **state)
{
    (void)state;
    assert_string_equal(masked("postgres://me:pw@db:5432/x"), "postgres://me:*****@db:5432/x");
    assert_string_equal(masked("see \"amqp://a:p@ss@q/v\" and s://u:v@w"),
                        "see \"amqp://a:*****@q/v\" and s://u:*****@w");
    assert_string_equal(masked("http://user@host:80/x"), "http://user@host:80/x");
    assert_string_equal(masked("tcp://127.0.0.1:5557"), "tcp://127.0.0.1:5557");
    assert_string_equal(masked("no url: a:b@c"), "no url: a:b@c");
    assert_true(tl_config_has_url_password("x redis://:pw@h"));
    assert_false(tl_config_has_url_password("redis://h:6379"));
    char small[8];
    assert_int_equal(tl_config_mask_urls("s://u:pw@h", small, sizeof(small)), 13);
    assert_string_equal(small, "s://u:*");
}

static void durations_stop_at_168h(void **state)
{
    (void)state;
    char why[256];
    int64_t ms;
    assert_int_equal(tl_config_parse_duration("168h", &ms, why, sizeof(why)), 0);
    assert_int_equal(ms, TL_CONFIG_MAX_DURATION_MS);
    assert_int_equal(tl_config_parse_duration("10081m", &ms, why, sizeof(why)), TL_ECONFIG);
    assert_int_equal(tl_config_parse_duration("99999999999h", &ms, why, sizeof(why)), TL_ECONFIG);
    assert_string_equal(why, "duration \"99999999999h\" is out of range (at most 168h)");
}

static void a_value_from_the_environment_is_quoted_as_written(void **state)
{
    (void)state;
    char why[256];
    int64_t v;
    assert_int_equal(tl_config_parse_int_shown("abc", "${N}", 0, 9, &v, why, sizeof(why)),
                     TL_ECONFIG);
    assert_string_equal(why, "expected an integer, got \"${N}\"");
    assert_int_equal(tl_config_parse_duration_shown("5x", "${D}", &v, why, sizeof(why)),
                     TL_ECONFIG);
    assert_string_equal(why, "unknown unit in duration \"${D}\" (use ms, s, m or h)");
}

static void suggestion_is_within_two_edits_or_none(void **state)
{
    (void)state;
    const char *const keys[] = {"ordering", "timeout", "handler", NULL};
    assert_string_equal(tl_config_suggest("ordring", keys), "ordering");
    assert_string_equal(tl_config_suggest("timeuot", keys), "timeout");
    assert_null(tl_config_suggest("completely_else", keys));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_take_ms_s_m_and_h),
        cmocka_unit_test(durations_without_unit_negative_or_huge_are_refused),
        cmocka_unit_test(integers_with_trailing_text_are_refused),
        cmocka_unit_test(booleans_are_true_or_false_only),
        cmocka_unit_test(interpolation_replaces_set_variables_in_place),
        cmocka_unit_test(interpolation_default_covers_unset_and_empty),
        cmocka_unit_test(interpolation_double_dollar_is_one_dollar_and_lone_dollars_stay),
        cmocka_unit_test(interpolation_of_an_unset_variable_names_it),
        cmocka_unit_test(interpolation_of_an_unclosed_reference_is_an_error),
        cmocka_unit_test(secret_names_are_recognised),
        cmocka_unit_test(names_with_key_or_credential_are_secrets),
        cmocka_unit_test(url_passwords_are_masked_and_nothing_else),
        cmocka_unit_test(durations_stop_at_168h),
        cmocka_unit_test(a_value_from_the_environment_is_quoted_as_written),
        cmocka_unit_test(suggestion_is_within_two_edits_or_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
