/*
 * Trace context: the W3C `traceparent` header a message may carry
 * (version-traceid-parentid-flags, lowercase hex). The runtime never changes it: it
 * travels with the message's other headers through retries, reroutes and process
 * isolation; this file only reads the trace id out of it for log lines and handlers.
 */
#include <taskloop/adapter.h>

#include <stdbool.h>
#include <string.h>

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

bool tl_msg_trace_id(const tl_msg *msg, char out[TL_TRACE_ID_LEN + 1])
{
    size_t len = 0;
    const char *v = tl_msg_header(msg, "traceparent", &len);
    /* 2 version + 32 trace id + 16 parent id + 2 flags + 3 dashes. A later version
     * may append fields after another dash; version 00 may not; ff is invalid. */
    if (!v || len < 55 || (len > 55 && v[55] != '-'))
        return false;
    if (!lower_hex(v, 2) || memcmp(v, "ff", 2) == 0 || (memcmp(v, "00", 2) == 0 && len != 55))
        return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!lower_hex(v + 3, 32) || all_zero(v + 3, 32) || !lower_hex(v + 36, 16) ||
        all_zero(v + 36, 16) || !lower_hex(v + 53, 2))
        return false;
    memcpy(out, v + 3, TL_TRACE_ID_LEN);
    out[TL_TRACE_ID_LEN] = '\0';
    return true;
}
