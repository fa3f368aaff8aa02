/*
 * The wire format of zmq.h: payload, optional key, then header name/value pairs, one
 * frame each. Thread rules: none; these functions touch only their arguments.
 */
#include "zmq_int.h"

#include <string.h>

/* A header name must be a usable C string: 1..255 bytes with no NUL inside. */
static bool valid_name(zmq_msg_t *f)
{
    size_t len = zmq_msg_size(f);
    return len > 0 && len <= TL_ZMQ_MAX_HEADER_NAME && !memchr(zmq_msg_data(f), 0, len);
}

int tl_zmq_wire_check(zmq_msg_t *frames, size_t n, size_t max_bytes, const char **why)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += zmq_msg_size(&frames[i]);
    if (total > max_bytes) {
        *why = "message larger than max_message";
        return TL_ENOMEM;
    }
    if (n > TL_ZMQ_MAX_FRAMES) {
        *why = "too many frames";
        return TL_EINVAL;
    }
    if (n > 2 && (n - 2) % 2 != 0) {
        *why = "header name without a value frame";
        return TL_EINVAL;
    }
    for (size_t i = 2; i < n; i += 2) {
        if (!valid_name(&frames[i])) {
            *why = "empty, oversized or NUL-bearing header name";
            return TL_EINVAL;
        }
    }
    return 0;
}

size_t tl_zmq_wire_decoded_size(zmq_msg_t *frames, size_t n)
{
    size_t nh = n > 2 ? (n - 2) / 2 : 0, bytes = nh * sizeof(tl_header);
    for (size_t i = 0; i < nh; i++)
        bytes += zmq_msg_size(&frames[2 + 2 * i]) + 1;
    return bytes;
}

void tl_zmq_wire_decode(zmq_msg_t *frames, size_t n, tl_msg *msg, void *room)
{
    size_t nh = n > 2 ? (n - 2) / 2 : 0;
    tl_header *hdrs = room;
    char *name = (char *)(hdrs + nh);
    for (size_t i = 0; i < nh; i++) {
        zmq_msg_t *nf = &frames[2 + 2 * i], *vf = nf + 1;
        size_t nl = zmq_msg_size(nf);
        memcpy(name, zmq_msg_data(nf), nl);
        name[nl] = '\0';
        hdrs[i] = (tl_header){name, zmq_msg_data(vf), zmq_msg_size(vf)};
        name += nl + 1;
    }
    /* An empty key frame is how a sender with headers but no key fills the slot. */
    bool has_key = n > 1 && zmq_msg_size(&frames[1]) > 0;
    msg->payload = zmq_msg_data(&frames[0]);
    msg->len = zmq_msg_size(&frames[0]);
    msg->key = has_key ? zmq_msg_data(&frames[1]) : NULL;
    msg->key_len = has_key ? zmq_msg_size(&frames[1]) : 0;
    msg->headers = nh ? hdrs : NULL;
    msg->nheaders = nh;
}

/* Initialises f with a copy of len bytes at data. */
static int frame_copy(zmq_msg_t *f, const void *data, size_t len)
{
    if (zmq_msg_init_size(f, len) != 0)
        return TL_ENOMEM;
    if (len > 0)
        memcpy(zmq_msg_data(f), data, len);
    return 0;
}

int tl_zmq_wire_encode(const tl_out_msg *msg, zmq_msg_t *out, size_t cap)
{
    if (msg->nheaders > TL_ZMQ_MAX_HEADERS || (msg->len > 0 && !msg->payload))
        return TL_EINVAL;
    size_t n = msg->nheaders > 0 ? 2 + 2 * msg->nheaders : (msg->key_len > 0 ? 2 : 1);
    if (n > cap)
        return TL_EINVAL;
    for (size_t i = 0; i < msg->nheaders; i++) {
        size_t nl = msg->headers[i].name ? strlen(msg->headers[i].name) : 0;
        if (nl == 0 || nl > TL_ZMQ_MAX_HEADER_NAME)
            return TL_EINVAL;
    }
    size_t done = 0;
    int rc = frame_copy(&out[done++], msg->payload, msg->len);
    if (rc == 0 && n > 1)
        rc = frame_copy(&out[done++], msg->key, msg->key ? msg->key_len : 0);
    for (size_t i = 0; rc == 0 && i < msg->nheaders; i++) {
        const tl_header *h = &msg->headers[i];
        rc = frame_copy(&out[done++], h->name, strlen(h->name));
        if (rc == 0)
            rc = frame_copy(&out[done++], h->value, h->value ? h->len : 0);
    }
    if (rc == 0)
        return (int)n;
    /* The frame that failed was not initialised; close the ones before it. */
    for (size_t i = 0; i + 1 < done; i++)
        zmq_msg_close(&out[i]);
    return rc;
}
