/*
 * The syntax of a ZeroMQ endpoint, checked before any socket exists so that
 * `taskloop check` refuses what a bind or connect would: "tcp://HOST:PORT",
 * "ipc://PATH" and "inproc://NAME". No thread rules: a plain function.
 */
#include "zmq_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* A host name, an interface name or an IPv4 address: letters, digits, '.', '-', '_'. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '.' || s[i] == '-' || s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

/* "[IPv6]": hex digits, ':' and '.', then an optional "%zone". */
static bool ipv6_ok(const char *s, size_t n)
{
    if (n < 4 || s[0] != '[' || s[n - 1] != ']')
        return false;
    const char *pct = memchr(s, '%', n);
    size_t addr_end = pct ? (size_t)(pct - s) : n - 1;
    if (pct && !name_ok(pct + 1, n - 2 - addr_end))
        return false;
    for (size_t i = 1; i < addr_end; i++)
        if (!(s[i] == ':' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
              (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return memchr(s, ':', n) != NULL;
}

/* "HOST:PORT"; bind takes "*" for every address and "*", "!" or 0 for a free port. */
static bool host_port(const char *s, size_t n, bool bind, char *why, size_t whylen)
{
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        colon = s[i] == ':' ? s + i : colon;
    if (!colon || colon == s || (s[0] == '[' && colon[-1] != ']')) {
        snprintf(why, whylen, "expected HOST:PORT after tcp://");
        return false;
    }
    size_t hn = (size_t)(colon - s), pn = n - hn - 1;
    bool any = hn == 1 && s[0] == '*';
    if ((any && !bind) || (!any && !name_ok(s, hn) && !ipv6_ok(s, hn))) {
        snprintf(why, whylen, "%s",
                 any ? "host * (every address) is for binding; a connect needs a host"
                     : "the host is not a name, an IPv4 address or [IPv6]");
        return false;
    }
    if (bind && pn == 1 && (colon[1] == '*' || colon[1] == '!'))
        return true;
    long port = 0;
    for (size_t i = 1; i <= pn; i++) {
        if (colon[i] < '0' || colon[i] > '9' || port > 65535) {
            port = -1;
            break;
        }
        port = port * 10 + (colon[i] - '0');
    }
    if (pn == 0 || port < (bind ? 0 : 1) || port > 65535) {
        snprintf(why, whylen, "the port must be a number from %d to 65535%s", bind ? 0 : 1,
                 bind ? " (or * for a free one)" : "");
        return false;
    }
    return true;
}

int tl_zmq_endpoint_check(const char *ep, bool bind, char *why, size_t whylen)
{
    const char *sep = strstr(ep, "://");
    if (!sep || sep == ep) {
        snprintf(why, whylen, "expected an endpoint tcp://HOST:PORT, ipc://PATH or inproc://NAME");
        return TL_ECONFIG;
    }
    size_t tn = (size_t)(sep - ep);
    const char *rest = sep + 3;
    size_t rn = strlen(rest);
    if (tn == 3 && strncmp(ep, "tcp", 3) == 0) {
        /* A connect may name the local address first: "tcp://SRC:PORT;HOST:PORT". */
        const char *semi = bind ? NULL : strchr(rest, ';');
        if (semi && !host_port(rest, (size_t)(semi - rest), true, why, whylen))
            return TL_ECONFIG;
        const char *dst = semi ? semi + 1 : rest;
        return host_port(dst, strlen(dst), bind, why, whylen) ? 0 : TL_ECONFIG;
    }
    if (tn == 3 && strncmp(ep, "ipc", 3) == 0) {
        if (rn == 0 || rn >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(why, whylen, "ipc:// needs a path of 1 to %zu characters",
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return TL_ECONFIG;
        }
        return 0;
    }
    if (tn == 6 && strncmp(ep, "inproc", 6) == 0) {
        if (rn == 0) {
            snprintf(why, whylen, "inproc:// needs a name");
            return TL_ECONFIG;
        }
        return 0;
    }
    snprintf(why, whylen, "unsupported transport (use tcp://, ipc:// or inproc://)");
    return TL_ECONFIG;
}
