/*
 * Fuzz target: the tl-* headers of a message that comes in again after a reroute (or
 * from a sender that made them up), as the runtime reads them when it reroutes it
 * once more. The input is the message's headers: name and value alternately, each as a
 * 2-byte little-endian length and that many bytes (a name ends at its first NUL, as
 * a C string from a broker client does).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define MAX_HEADERS 200

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next length-prefixed field of the input; the last takes what is left. */
static const uint8_t *field(const uint8_t *data, size_t size, size_t *at, size_t *len)
{
    size_t n = size - *at;
    if (n >= 2) {
        size_t want = (size_t)data[*at] | (size_t)data[*at + 1] << 8;
        *at += 2;
        n = want < size - *at ? want : size - *at;
    }
    const uint8_t *p = data + *at;
    *at += n;
    *len = n;
    return p;
}

/* One of the headers a reroute writes (other tl-* ones, tl-redrive-count, travel on). */
static bool is_reroute_own(const char *name)
{
    for (size_t i = 0; i < TL_REROUTE_NHEADERS; i++)
        if (strcmp(name, tl__reroute_header_names[i]) == 0)
            return true;
    return false;
}

/* Checks what a reroute of m sends; returns the headers it built (caller frees). */
static tl_header *reroute_checked(const tl_msg *m, size_t *count)
{
    /* The last one left out, as a reroute does with headers it has no value for. */
    static const char *const vals[TL_REROUTE_NHEADERS] = {
        "retry", "orders", "3", "17", "2", "", "1700000000000", "1700000001000", NULL};
    tl_header *out = malloc((m->nheaders + TL_REROUTE_NHEADERS) * sizeof(*out));
    if (!out)
        abort();
    size_t n = tl__reroute_headers(m, vals, out), kept = 0;
    /* The message's own headers but the reroute's own, in order and untouched... */
    for (size_t i = 0; i < m->nheaders; i++) {
        if (is_reroute_own(m->headers[i].name))
            continue;
        if (kept >= n || out[kept].name != m->headers[i].name ||
            out[kept].value != m->headers[i].value || out[kept].len != m->headers[i].len)
            abort();
        kept++;
    }
    /* ...then exactly one of each of the reroute's headers with a value, and none of
     * the others. */
    if (n != kept + TL_REROUTE_NHEADERS - 1)
        abort();
    tl_msg sent = {.headers = out, .nheaders = n};
    for (size_t i = 0; i < TL_REROUTE_NHEADERS; i++) {
        size_t len = 0;
        const char *v = tl_msg_header(&sent, tl__reroute_header_names[i], &len);
        if (v != vals[i] || (v && len != strlen(vals[i])))
            abort();
    }
    *count = n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tl_header hdrs[MAX_HEADERS];
    char *names[MAX_HEADERS];
    size_t nh = 0, at = 0;
    while (at < size && nh < MAX_HEADERS) {
        size_t nl, vl;
        const uint8_t *name = field(data, size, &at, &nl);
        const uint8_t *value = field(data, size, &at, &vl);
        if (!(names[nh] = strndup((const char *)name, nl)))
            abort();
        hdrs[nh] = (tl_header){names[nh], vl ? value : NULL, vl};
        nh++;
    }
    tl_msg in = {.payload = "", .headers = nh ? hdrs : NULL, .nheaders = nh, .partition = 3};
    size_t n1, n2;
    tl_header *once = reroute_checked(&in, &n1);
    /* Rerouted again, the copy carries the same headers: nothing piles up. */
    tl_msg again = {.payload = "", .headers = once, .nheaders = n1, .partition = 3};
    tl_header *twice = reroute_checked(&again, &n2);
    if (n2 != n1)
        abort();
    free(twice);
    free(once);
    for (size_t i = 0; i < nh; i++)
        free(names[i]);
    return 0;
}
