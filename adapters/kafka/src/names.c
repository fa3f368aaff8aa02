/*
 * The syntax of what a Kafka section names: bootstrap lists and topics. Leaf functions
 * of the adapter (used by conf.c for open() and by check.c), with no shared state.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kafka_conf.h"

/* Letters, digits, '.', '-', '_': a host name or an IPv4 address. */
static bool name_char(char c)
{
    return c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* One "[PROTO://]HOST[:PORT]" of s[0..n); HOST a name, an IPv4 address or [IPv6]. */
static bool broker_ok(const char *s, size_t n, size_t entry, char *why, size_t whylen)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            s += i + 3;
            n -= i + 3;
            break;
        }
    size_t h = 0;
    if (n > 0 && s[0] == '[') {
        while (h < n && s[h] != ']')
            h++;
        h += h < n; /* past ']' */
        for (size_t i = 1; i + 1 < h; i++)
            if (!(s[i] == ':' || name_char(s[i])))
                h = 0;
    } else {
        while (h < n && name_char(s[h]))
            h++;
    }
    bool port_ok = h == n;
    if (h > 0 && h < n && s[h] == ':' && n - h - 1 > 0 && n - h - 1 <= 5) {
        long port = 0;
        for (size_t i = h + 1; i < n; i++)
            port = s[i] >= '0' && s[i] <= '9' ? port * 10 + (s[i] - '0') : -1000000;
        port_ok = port >= 1 && port <= 65535;
    }
    if (h == 0 || (s[0] == '[' && s[h - 1] != ']') || !port_ok) {
        snprintf(why, whylen,
                 "entry %zu is not HOST:PORT (expected HOST:PORT[,HOST:PORT...], "
                 "HOST a name, an IPv4 address or [IPv6], PORT 1 to 65535)",
                 entry);
        return false;
    }
    return true;
}

int tl_kafka_brokers_check(const char *list, char *why, size_t whylen)
{
    const char *p = list;
    for (size_t entry = 1;; entry++) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ","), end = n;
        while (end > 0 && p[end - 1] == ' ')
            end--;
        if (end == 0) {
            snprintf(why, whylen, "entry %zu is empty (expected HOST:PORT[,HOST:PORT...])", entry);
            return TL_ECONFIG;
        }
        if (!broker_ok(p, end, entry, why, whylen))
            return TL_ECONFIG;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

int tl_kafka_topic_check(const char *topic, char *why, size_t whylen)
{
    size_t n = strlen(topic), bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !name_char(topic[i]);
    if (n == 0 || n > 249 || bad || strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0) {
        snprintf(why, whylen,
                 "not a Kafka topic name (1 to 249 letters, digits, '.', '_' or "
                 "'-', not \".\" or \"..\")");
        return TL_ECONFIG;
    }
    return 0;
}
