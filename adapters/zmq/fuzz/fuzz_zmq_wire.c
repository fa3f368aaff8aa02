/*
 * Fuzz target: what the ZeroMQ source does with a received multipart message, minus
 * the socket: tl_zmq_wire_check, then tl_zmq_wire_decode into a tl_msg, then header
 * lookups as a handler makes them. The input is the frames, each as a 2-byte
 * little-endian length and that many bytes (the last takes what is left).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zmq_int.h"

/* Room for the frames past the limit, so the check sees a message with too many. */
#define MAX_IN (TL_ZMQ_MAX_FRAMES + 4)
#define MAX_BYTES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input into frames; returns how many. */
static size_t split(const uint8_t *data, size_t size, zmq_msg_t *frames)
{
    size_t n = 0, at = 0;
    while (n < MAX_IN && (at < size || n == 0)) {
        size_t len = size - at;
        if (len >= 2) {
            size_t want = (size_t)data[at] | (size_t)data[at + 1] << 8;
            at += 2;
            len = want < size - at ? want : size - at;
        }
        if (zmq_msg_init_size(&frames[n], len) != 0)
            abort();
        if (len > 0)
            memcpy(zmq_msg_data(&frames[n]), data + at, len);
        at += len;
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zmq_msg_t frames[MAX_IN];
    size_t n = split(data, size, frames);
    const char *why = NULL;
    if (tl_zmq_wire_check(frames, n, MAX_BYTES, &why) == 0) {
        void *room = malloc(tl_zmq_wire_decoded_size(frames, n) + 1);
        if (!room)
            abort();
        tl_msg msg = {.partition = -1};
        tl_zmq_wire_decode(frames, n, &msg, room);
        if (msg.len != zmq_msg_size(&frames[0]) || msg.nheaders != (n > 2 ? (n - 2) / 2 : 0))
            abort();
        for (size_t i = 0; i < msg.nheaders; i++) {
            const tl_header *h = &msg.headers[i];
            size_t len = 0;
            /* A name reads back as sent, and the lookup finds a header of that name. */
            if (strlen(h->name) != zmq_msg_size(&frames[2 + 2 * i]) ||
                (!tl_msg_header(&msg, h->name, &len) && h->value))
                abort();
        }
        tl_msg_header(&msg, "tl-attempt", NULL);
        free(room);
    } else if (!why) {
        abort();
    }
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
    return 0;
}
