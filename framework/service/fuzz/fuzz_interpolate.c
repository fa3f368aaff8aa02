/*
 * Fuzz target: ${VAR} interpolation of a config scalar, then the value parsers that
 * read its result. The input is the scalar's text as written (any bytes); a few
 * variables are set, one empty, one holding "${...}" that must never be expanded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

static const char *fuzz_env(const char *name, void *user)
{
    (void)user;
    static const char *const vars[][2] = {
        {"HOST", "example.org"}, {"EMPTY", ""}, {"N", "42"}, {"NESTED", "${HOST}$$"}};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strcmp(name, vars[i][0]) == 0)
            return vars[i][1];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL, why[256] = "";
    int rc =
        tl_config_interpolate((const char *)data, size, fuzz_env, NULL, &out, why, sizeof(why));
    if (rc != 0) {
        /* A refusal always says why and leaves nothing behind. */
        if (out || !why[0])
            abort();
        return 0;
    }
    /* Text without a '$' comes back unchanged (a NUL would end it: the loader refuses
     * one before any interpolation). */
    if (!memchr(data, '$', size) && !memchr(data, '\0', size) &&
        (strlen(out) != size || memcmp(out, data, size) != 0))
        abort();
    int64_t v;
    bool b;
    tl_config_parse_int(out, INT64_MIN, INT64_MAX, &v, why, sizeof(why));
    tl_config_parse_int(out, 0, 1000, &v, why, sizeof(why));
    tl_config_parse_bool(out, &b, why, sizeof(why));
    tl_config_parse_duration(out, &v, why, sizeof(why));
    free(out);
    return 0;
}
