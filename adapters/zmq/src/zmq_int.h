/*
 * Private to the ZeroMQ adapter: the shared context, the wire format and small helpers.
 * Thread rules: the context functions lock a mutex of their own and are safe from any
 * thread; the wire functions touch only what they are given.
 */
#ifndef TL_ZMQ_INT_H
#define TL_ZMQ_INT_H

#include <taskloop/zmq.h>
#include <zmq.h>

/* Frames one message may have: payload, key and the header pairs. */
#define TL_ZMQ_MAX_FRAMES (2 + 2 * TL_ZMQ_MAX_HEADERS)

/* Returns the process's ZeroMQ context, creating it on first use; NULL if that fails. */
void *tl_zmq_ctx_acquire(void);

/* Drops one use of the context; the last one terminates it (all sockets must be closed). */
void tl_zmq_ctx_release(void);

/* Maps the current zmq_errno() to a TL_E* code. */
int tl_zmq_err(int zerr);

/* Wall-clock milliseconds since the epoch, for timestamps. */
int64_t tl_zmq_wall_ms(void);

/* Writes "what: reason" into err (when errlen > 0) and returns code. */
int tl_zmq_fail(char *err, size_t errlen, int code, const char *what, const char *reason);

/* What tl_zmq_keep_first fills in: the first problem a check op reported, for open(). */
typedef struct tl_zmq_problem {
    const char *what; /* "zmq source", "zmq sink" */
    char *err;        /* gets "WHAT: NAME: why" */
    size_t errlen;
    bool found;
} tl_zmq_problem;

/* A tl_param_report_fn (rep: a tl_zmq_problem) keeping the first problem reported. */
void tl_zmq_keep_first(void *rep, const char *name, const char *key, const char *why);

/*
 * Checks endpoint's syntax for a bind (bind true) or a connect: "tcp://HOST:PORT",
 * "ipc://PATH" or "inproc://NAME". 0, or TL_ECONFIG with the reason in why (which
 * never quotes the endpoint).
 */
int tl_zmq_endpoint_check(const char *endpoint, bool bind, char *why, size_t whylen);

/* The keys of a section that set CURVE up (curve.c), for the sources' and sinks' tables. */
/* clang-format off */
#define TL_ZMQ_CURVE_PARAMS \
    {"curve_secret_key", TL_PARAM_STRING, false, false, \
     "CURVE server: its secret key (Z85, 40 characters)"}, \
    {"curve_secret_key_file", TL_PARAM_STRING, false, false, \
     "CURVE server: a file holding its secret key (mode 600)"}, \
    {"curve_server_key", TL_PARAM_STRING, false, false, \
     "CURVE client: the server's public key (Z85, 40 characters)"}, \
    {"curve_server_key_file", TL_PARAM_STRING, false, false, \
     "CURVE client: a file holding the server's public key"}
/* clang-format on */

/*
 * Makes sock a CURVE server (curve_secret_key) or client (curve_server_key) as conf
 * says, before it binds or connects; nothing when neither is set. 0, or TL_ECONFIG /
 * TL_EIO with the reason in err (which never holds a key).
 */
int tl_zmq_curve_setup(void *sock, const tl_params *conf, char *err, size_t errlen);

/*
 * Checks that frames[0..n) follow the wire format and total at most max_bytes.
 * Returns 0, TL_EINVAL when malformed or TL_ENOMEM when oversized (so the caller can
 * count the two apart); *why then names the fault.
 */
int tl_zmq_wire_check(zmq_msg_t *frames, size_t n, size_t max_bytes, const char **why);

/* Bytes tl_zmq_wire_decode needs beside the n checked frames: the header entries and
 * their NUL-terminated names. */
size_t tl_zmq_wire_decoded_size(zmq_msg_t *frames, size_t n);

/*
 * Reads the n frames that passed tl_zmq_wire_check into msg's payload, key and
 * headers (the other fields are left alone). Payload, key and header values point into
 * the frames, so msg is valid while they are; the header entries and names are written
 * to room (tl_zmq_wire_decoded_size bytes, aligned for a pointer).
 */
void tl_zmq_wire_decode(zmq_msg_t *frames, size_t n, tl_msg *msg, void *room);

/*
 * Builds the frames of msg into out (at least 2 + 2 * nheaders entries) and returns
 * how many, or a negative code; on failure nothing stays allocated. Payload and key
 * are copied, so msg may go away afterwards.
 */
int tl_zmq_wire_encode(const tl_out_msg *msg, zmq_msg_t *out, size_t cap);

#endif
