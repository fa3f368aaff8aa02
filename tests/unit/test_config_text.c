/*
 * What a config's text may be: UTF-8 without a NUL byte. A byte that is not part of a
 * valid UTF-8 character is refused at its line and column before the YAML parser sees
 * it (libfyaml 0.7 loops for ever on "%\xff": found by tests/fuzz's config target).
 * Its size in nodes and its open '[' and '{' are bounded, refused before a document is
 * built (tests/integration/test_check_rss.c measures what the worst texts cost).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_helpers.h"

/* Loads text (with a diag of its own) and expects one message, at line:column. */
static void assert_bad_at(fixture *f, const char *text, const char *at)
{
    tl_diag_free(&f->diag);
    char want[128];
    snprintf(want, sizeof(want), "t.yaml:%s: error: not valid UTF-8; a config is UTF-8 text", at);
    assert_one_error(f, load_text(f, text), want);
}

static void a_directive_with_an_invalid_byte_is_refused_at_once(void **state)
{
    assert_bad_at(*state, "%\xff\n", "1:2");
    assert_bad_at(*state, "service: s\n%YAML\x80\n", "2:6");
}

static void a_stray_or_truncated_sequence_is_refused_where_it_starts(void **state)
{
    assert_bad_at(*state, "service: caf\xe9\n", "1:13");  /* Latin-1, not UTF-8 */
    assert_bad_at(*state, "service: \xe2\x82\n", "1:10"); /* cut short by the newline */
    assert_bad_at(*state, "service: ab\xe2\x82", "1:12"); /* cut short by the end */
    assert_bad_at(*state, "service: s\x80x\n", "1:11");   /* a continuation byte alone */
    assert_bad_at(*state, "# note\nservice: \xfe\n", "2:10");
}

static void overlongs_surrogates_and_code_points_past_the_last_are_refused(void **state)
{
    assert_bad_at(*state, "service: \xc0\xaf\n", "1:10");         /* "/" in two bytes */
    assert_bad_at(*state, "service: \xe0\x80\xaf\n", "1:10");     /* "/" in three bytes */
    assert_bad_at(*state, "service: \xed\xa0\x80\n", "1:10");     /* U+D800 */
    assert_bad_at(*state, "service: \xf4\x90\x80\x80\n", "1:10"); /* U+110000 */
}

static void columns_count_characters_not_bytes(void **state)
{
    assert_bad_at(*state, "service: \xc3\xa9\xe2\x98\x95\xf0\x9d\x84\x9e\xff\n", "1:13");
}

static void valid_utf8_of_every_length_is_taken_as_written(void **state)
{
    fixture *f = *state;
    static const char name[] = "caf\xc3\xa9-\xe2\x98\x95-\xf0\x9d\x84\x9e-\xf4\x8f\xbf\xbf";
    char text[256];
    snprintf(text, sizeof(text),
             "service: \"%s\"\nsources: { in: { type: fake, url: \"fake://in\" } }\n"
             "routes: [{ source: in, handler: handle }]\n",
             name);
    assert_loaded(f, load_text(f, text));
    assert_string_equal(f->cfg->service, name);
}

static void more_nodes_than_the_bound_are_refused_at_the_first_past_it(void **state)
{
    fixture *f = *state;
    size_t n = TL_CONFIG_MAX_NODES + 10, cap = 2 * n + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t k = (size_t)snprintf(text, cap, "service: s\nx: [");
    for (size_t i = 0; i < n; i++, k += 2)
        memcpy(text + k, "a,", 2);
    snprintf(text + k, cap - k, "a]\n");
    int rc = load_text(f, text);
    free(text);
    /* The root mapping, service, s, x and the sequence are the first five nodes. */
    char want[128];
    snprintf(want, sizeof(want),
             "t.yaml:2:%d: error: more than %d nodes in one file; a config holds far fewer",
             5 + 2 * (TL_CONFIG_MAX_NODES - 5), TL_CONFIG_MAX_NODES);
    assert_one_error(f, rc, want);
}

static void brackets_open_past_the_bound_are_refused_even_in_a_string(void **state)
{
    fixture *f = *state;
    /* Quotes hide nothing: what libfyaml would hold is counted as bytes. */
    char text[4096];
    size_t k = (size_t)snprintf(text, sizeof(text), "service: s\nx: \"");
    memset(text + k, '{', TL_CONFIG_MAX_OPEN_BRACKETS + 1);
    snprintf(text + k + TL_CONFIG_MAX_OPEN_BRACKETS + 1, sizeof(text) - k - 1001, "\"\n");
    char want[128];
    snprintf(want, sizeof(want),
             "t.yaml:2:%d: error: more than %d '[' or '{' open at once; a config nests at "
             "most 64 levels",
             5 + TL_CONFIG_MAX_OPEN_BRACKETS, TL_CONFIG_MAX_OPEN_BRACKETS);
    assert_one_error(f, load_text(f, text), want);
}

static void as_many_brackets_as_the_bound_closed_in_turn_are_taken(void **state)
{
    fixture *f = *state;
    /* The count goes down as brackets close: many shallow collections are fine. */
    char text[8192];
    size_t k = (size_t)snprintf(text, sizeof(text),
                                "service: s\nsources:\n  in: { type: fake, url: \"fake://in\" }\n"
                                "routes:\n  - source: in\n    handler: handle\n    params: { ");
    for (int i = 0; i < 2 * TL_CONFIG_MAX_OPEN_BRACKETS / 4; i++)
        k += (size_t)snprintf(text + k, sizeof(text) - k, "%sk%d: \"[{}]\"", i ? ", " : "", i);
    snprintf(text + k, sizeof(text) - k, " }\n");
    assert_loaded(f, load_text(f, text));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_directive_with_an_invalid_byte_is_refused_at_once),
        T(a_stray_or_truncated_sequence_is_refused_where_it_starts),
        T(overlongs_surrogates_and_code_points_past_the_last_are_refused),
        T(columns_count_characters_not_bytes),
        T(valid_utf8_of_every_length_is_taken_as_written),
        T(more_nodes_than_the_bound_are_refused_at_the_first_past_it),
        T(brackets_open_past_the_bound_are_refused_even_in_a_string),
        T(as_many_brackets_as_the_bound_closed_in_turn_are_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
