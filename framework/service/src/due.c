/*
 * Delayed retries through a topic (on_error.via). A failed attempt with retries left
 * is not retried in place: record.c reroutes the message to the route's via target
 * with tl-reason "retry", its attempt count, its first error and tl-due-ms, the
 * wall-clock time before which it must not run again, and it is settled once the
 * target took it, so its partition moves on at once. The route's source reads that
 * target too, so the message comes back to the same route: a retry that comes back
 * before it is due waits on a timer, in no lane and holding no worker, while the
 * messages behind it (due sooner, or not retries at all) go on; when due it joins its
 * lane as a new message would. Its attempts, first error, first-seen time and origin
 * carry on, so its last attempt goes to on_error.then with the whole story.
 *
 * A tl-due-ms further away than the route's longest retry delay (a clock that differs
 * between instances, or a header made up) is not believed: it waits that delay at most. A
 * retry whose headers do not parse is taken as a new message.
 *
 * Thread rules: loop thread only.
 */
#include "runtime.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a retry that came back carries on from the attempts before. */
struct tl_carried {
    char *origin;  /* the topic it was first delivered on */
    char part[16]; /* ... its partition and offset there, as numbers in text */
    char off[24];
    char *first_error; /* the first attempt's error; NULL until one failed */
};

int64_t tl__due_delay_ms(const tl_config_route *r, unsigned attempt)
{
    int64_t delay = r->backoff_ms;
    for (unsigned i = 1; i < attempt && delay < TL_DUE_MAX_MS; i++)
        delay *= 2;
    return delay < TL_DUE_MAX_MS ? delay : TL_DUE_MAX_MS;
}

/* The header's value as a whole number in [lo, hi]; false when absent or not one. */
static bool header_int(const tl_msg *m, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    size_t len = 0;
    const char *v = tl_msg_header(m, name, &len);
    if (!v || len == 0 || len > 19)
        return false;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (v[i] - '0');
    }
    if (n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

static char *header_dup(const tl_msg *m, const char *name)
{
    size_t len = 0;
    const char *v = tl_msg_header(m, name, &len);
    if (!v)
        return NULL;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, v, len);
        s[len] = '\0';
    }
    return s;
}

int64_t tl__due_take(tl_rec *rec, int64_t now_ms)
{
    const tl_msg *m = rec->msg;
    size_t len = 0;
    const char *reason = tl_msg_header(m, "tl-reason", &len);
    if (!reason || len != 5 || memcmp(reason, "retry", 5) != 0)
        return 0;
    int64_t attempt, due, part, off, first_seen;
    size_t olen = 0;
    const char *origin = tl_msg_header(m, "tl-origin-topic", &olen);
    if (!header_int(m, "tl-attempt", 1, 1000000, &attempt) ||
        !header_int(m, "tl-due-ms", 0, INT64_MAX / 4, &due) ||
        !header_int(m, "tl-origin-partition", 0, INT32_MAX, &part) ||
        !header_int(m, "tl-origin-offset", 0, INT64_MAX / 4, &off) || !origin || olen == 0) {
        tl_kv f[] = {{"reason", "tl-attempt, tl-due-ms or tl-origin-* missing or malformed"}};
        tl__log_msg(rec, TL_LEVEL_WARN, "retry_headers_ignored", 0, NULL, f, 1);
        return 0;
    }
    struct tl_carried *c = calloc(1, sizeof(*c));
    if (!c || !(c->origin = header_dup(m, "tl-origin-topic"))) {
        free(c);
        return 0; /* out of memory: taken as new, which loses nothing */
    }
    snprintf(c->part, sizeof(c->part), "%" PRId64, part);
    snprintf(c->off, sizeof(c->off), "%" PRId64, off);
    c->first_error = header_dup(m, "tl-first-error");
    rec->carried = c;
    rec->attempt = (unsigned)attempt;
    if (header_int(m, "tl-first-seen-ms", 0, INT64_MAX / 4, &first_seen))
        rec->first_seen_ms = first_seen;
    /* No attempt the route makes waits longer than its last retry's delay. */
    const tl_config_route *r = rec->route->cfg;
    int64_t most = tl__due_delay_ms(r, rec->attempt < r->retries ? rec->attempt : r->retries);
    if (due - now_ms > most)
        due = now_ms + most;
    rec->due_ms = due;
    return due > now_ms ? due - now_ms : 0;
}

void tl__due_keep_first_error(tl_rec *rec)
{
    if (!rec->carried) {
        rec->carried = calloc(1, sizeof(*rec->carried));
        if (!rec->carried)
            return; /* the header is left out: nothing else depends on it */
    }
    if (!rec->carried->first_error && rec->err_text)
        rec->carried->first_error = strdup(rec->err_text);
}

void tl__due_origin(const tl_rec *rec, const char **topic, const char **part, const char **off)
{
    if (rec->carried && rec->carried->origin) {
        *topic = rec->carried->origin;
        *part = rec->carried->part;
        *off = rec->carried->off;
    }
}

const char *tl__due_first_error(const tl_rec *rec)
{
    return rec->carried ? rec->carried->first_error : NULL;
}

void tl__due_free(tl_rec *rec)
{
    if (!rec->carried)
        return;
    free(rec->carried->origin);
    free(rec->carried->first_error);
    free(rec->carried);
    rec->carried = NULL;
}
