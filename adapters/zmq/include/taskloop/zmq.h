/*
 * taskloop ZeroMQ adapter: PULL and SUB sources, PUSH and PUB sinks over tcp://, ipc://
 * and inproc:// (libzmq 4.3).
 *
 * Delivery: ZeroMQ has no acknowledgements and no offsets, so ZeroMQ sources are
 * AT-MOST-ONCE. A message is gone from the transport once the source received it; a
 * crash loses what was in flight. commit() is a no-op that returns 0, and
 * tl_zmq_source_ops.at_least_once is false. Stall handling and rerouting work as for
 * any source.
 *
 * Wire format (sources read it, sinks write it), one multipart ZeroMQ message:
 *   frame 1                 payload (required, may be empty)
 *   frame 2                 key (optional; an empty frame means "no key")
 *   frames 3,4  5,6 ...     headers as pairs: one frame holding the name, the next
 *                           frame holding the value. Names are 1..255 bytes with no NUL;
 *                           values are any bytes.
 * A message with a header name but no value (an odd number of frames after the key),
 * an empty or invalid name, more than TL_ZMQ_MAX_HEADERS headers, or more than
 * `max_message` bytes in all frames is malformed: it is dropped, counted and reported
 * through ev->error (not fatal); the stream continues. Delivering it flagged was
 * rejected because every handler would have to check the flag, and ZeroMQ gives the
 * sender no way to learn of the rejection anyway.
 * SUB subscriptions match the start of frame 1, i.e. the payload.
 *
 * Source section (type: zmq):
 *   endpoint     STRING  required: "tcp://127.0.0.1:5557", "ipc:///run/x", "inproc://x"
 *   socket       STRING  pull (default) or sub
 *   bind         BOOL    default true for pull (producers connect), false for sub (it
 *                        connects to a binding publisher, such as the zmqpub sink)
 *   subscribe    LIST    sub only: payload prefixes to receive; default all
 *   hwm          INT     receive high-water mark in messages (default 1000)
 *   batch        INT     most messages per delivery (default 1000)
 *   max_message  INT     most bytes in one message, all frames (default 16 MiB)
 *   curve_*              CURVE security, as for sinks below
 * A delivered tl_msg: origin is the endpoint (the resolved one when bound, so
 * "tcp://127.0.0.1:*" shows its port), partition -1, offset a per-source sequence
 * number from 0 (not a position in any log), timestamp_ms the local receive time.
 * Payload, key and header values point into the received ZeroMQ frames (zero copy)
 * until ops->release. pause(true) takes effect after the batch being received, if any;
 * meanwhile messages wait in ZeroMQ's queues up to `hwm`, then PUSH senders block (or
 * time out) and PUB publishers drop, as ZeroMQ defines. stop() returns within ~50 ms once a
 * delivery in progress returned.
 *
 * Sinks: target "zmq:ENDPOINT" is a PUSH socket that connects; "zmqpub:ENDPOINT" is a
 * PUB socket that binds. Sink section (or the source section of the route):
 *   hwm           INT       send high-water mark (default 1000)
 *   send_timeout  DURATION  longest wait for a peer before acking TL_EAGAIN (default 1s)
 *   linger        DURATION  how long close() lets queued frames go out (default 1s)
 *   queue         INT       sends waiting for the sink thread; beyond it send() returns
 *                           TL_EAGAIN (default 10000)
 * CURVE (sources and sinks alike; libzmq built with CURVE; none by default):
 *   curve_secret_key       STRING  this socket is a CURVE server with this secret key
 *                                  (Z85, 40 characters)
 *   curve_secret_key_file  STRING  the same, read from a file (only white space may
 *                                  follow the key) that group and others cannot access
 *   curve_server_key       STRING  this socket is a CURVE client of the server with
 *                                  this public key; its own key pair is made at open
 *   curve_server_key_file  STRING  the same, read from a file
 * Setting both a secret and a server key, a key and its file, or a key that is not Z85
 * fails open with TL_ECONFIG naming the setting, never the key. Clients are not told
 * apart (no ZAP handler): any sender that knows the server's public key gets in; one
 * that does not (a wrong key, or no CURVE) fails the handshake, and nothing it sent
 * reaches the source. A PUSH sink's sends to such a server time out (TL_EAGAIN).
 * send() copies the message and returns at once; the sink's own thread writes it and
 * acks: 0 when ZeroMQ accepted every frame (PUSH only queues to connected peers, so a
 * missing peer is an error, not a silent queue), TL_EAGAIN when the send timeout
 * passed, TL_EIO for other socket errors, TL_ECLOSED for sends still queued at close.
 * An ack of 0 means "handed to ZeroMQ", not "received": ZeroMQ has no receipts, and a
 * PUB socket drops messages no subscriber is ready for. close() waits for the send in
 * progress (at most send_timeout) and, for the last socket of the process, up to
 * `linger` for frames ZeroMQ still holds.
 *
 * Thread rules: as adapter.h. Sources deliver from a thread of their own and their
 * socket is used only there between start and stop; sinks send from a thread of their
 * own. ops->release may be called from any thread, even after close(). The accessors
 * below are for the thread that calls ops (the loop thread) unless marked "any thread".
 * All sockets share one ZeroMQ context per process, created with the first open and
 * terminated when the last socket closes.
 */
#ifndef TASKLOOP_ZMQ_H
#define TASKLOOP_ZMQ_H

#include <taskloop/adapter.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_ZMQ_MAX_HEADERS 64
#define TL_ZMQ_MAX_HEADER_NAME 255

/* The source type "zmq". */
extern const tl_source_ops tl_zmq_source_ops;
/* The sink scheme "zmq": a PUSH socket connecting to the address. */
extern const tl_sink_ops tl_zmq_push_sink_ops;
/* The sink scheme "zmqpub": a PUB socket bound to the address. */
extern const tl_sink_ops tl_zmq_pub_sink_ops;

/* Adds the "zmq" source type and the "zmq" and "zmqpub" sink schemes to reg. */
int tl_zmq_register(tl_registry *reg);

/* Counters of a source; any thread, values may lag by one batch. */
typedef struct tl_zmq_source_stats {
    uint64_t received;          /* messages taken off the socket */
    uint64_t delivered;         /* messages handed to the runtime */
    uint64_t dropped_malformed; /* frames not in the wire format */
    uint64_t dropped_oversized; /* more than max_message bytes */
    uint64_t outstanding;       /* delivered and not yet released */
} tl_zmq_source_stats;

/* Any thread: fills *out with the source's counters. */
void tl_zmq_source_stats_get(const tl_source *src, tl_zmq_source_stats *out);

/* The source's endpoint, resolved after bind; valid until close. */
const char *tl_zmq_source_endpoint(const tl_source *src);

/* The sink's endpoint, resolved after bind for zmqpub; valid until close. */
const char *tl_zmq_sink_endpoint(const tl_sink *sink);

#ifdef __cplusplus
}
#endif

#endif
