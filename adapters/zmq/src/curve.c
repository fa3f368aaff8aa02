/*
 * CURVE security of a socket, from its section (source or sink alike): with
 * curve_secret_key the socket is a CURVE server, with curve_server_key a client of the
 * server whose public key that is (with a key pair of its own made for the socket).
 * Each key may instead come from a file (*_file). Key values are never put in a
 * message; a secret key's file must not be readable by group or others.
 *
 * Thread rules: none; called while a socket is set up, before it binds or connects.
 */
#include "zmq_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A Z85 key: 32 bytes as 40 characters, and its C string. */
#define Z85_LEN 40
typedef struct z85_key {
    char s[Z85_LEN + 1];
} z85_key;

/* Reads the key in the file at path (40 characters, then only white space). */
static int key_from_file(const char *param, const char *path, bool secret, z85_key *key, char *err,
                         size_t errlen)
{
    char why[320];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, sizeof(why), "%s %s: %s", param, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve", why);
    }
    char buf[128];
    ssize_t n = -1;
    if (!S_ISREG(st.st_mode))
        snprintf(why, sizeof(why), "%s %s: not a regular file", param, path);
    else if (secret && (st.st_mode & 077))
        snprintf(why, sizeof(why), "%s %s: readable or writable by group or others (chmod 600)",
                 param, path);
    else if ((n = read(fd, buf, sizeof(buf) - 1)) < 0)
        snprintf(why, sizeof(why), "%s %s: %s", param, path, strerror(errno));
    close(fd);
    if (n < 0) {
        explicit_bzero(buf, sizeof(buf));
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve", why);
    }
    while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
        n--;
    bool ok = n == Z85_LEN;
    if (ok) {
        memcpy(key->s, buf, Z85_LEN);
        key->s[Z85_LEN] = '\0';
    }
    explicit_bzero(buf, sizeof(buf));
    if (!ok) {
        snprintf(why, sizeof(why), "%s %s: does not hold a Z85 key of 40 characters", param, path);
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve", why);
    }
    return 0;
}

/* Reads the key given by param or param_file; returns 1 when neither is set, 0 with
 * the key in *key, or an error. */
static int key_of(const tl_params *conf, const char *param, bool secret, z85_key *key, char *err,
                  size_t errlen)
{
    char file_param[64], why[160];
    snprintf(file_param, sizeof(file_param), "%s_file", param);
    const char *text = tl_params_str(conf, param, NULL);
    const char *path = tl_params_str(conf, file_param, NULL);
    if (text && path) {
        snprintf(why, sizeof(why), "set %s or %s, not both", param, file_param);
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve", why);
    }
    if (!text && !path)
        return 1;
    if (path) {
        int rc = key_from_file(file_param, path, secret, key, err, errlen);
        if (rc != 0)
            return rc;
    } else if (strlen(text) == Z85_LEN) {
        memcpy(key->s, text, Z85_LEN + 1);
    } else {
        key->s[0] = '\0';
    }
    uint8_t bin[32];
    bool ok = key->s[0] && zmq_z85_decode(bin, key->s);
    explicit_bzero(bin, sizeof(bin));
    if (!ok) {
        snprintf(why, sizeof(why), "%s is not a Z85 key of 40 characters",
                 path ? file_param : param);
        return tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve", why);
    }
    return 0;
}

int tl_zmq_curve_setup(void *sock, const tl_params *conf, char *err, size_t errlen)
{
    z85_key secret, server, pub, own;
    int has_secret = key_of(conf, "curve_secret_key", true, &secret, err, errlen);
    if (has_secret < 0)
        return has_secret;
    int has_server = key_of(conf, "curve_server_key", false, &server, err, errlen);
    int rc = has_server < 0 ? has_server : 0;
    if (rc == 0 && has_secret == 0 && has_server == 0)
        rc = tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve",
                         "curve_secret_key makes a server, curve_server_key a client: set one");
    else if (rc == 0 && (has_secret == 0 || has_server == 0) && !zmq_has("curve"))
        rc = tl_zmq_fail(err, errlen, TL_ECONFIG, "zmq curve",
                         "this libzmq was built without CURVE");
    int on = 1;
    if (rc == 0 && has_secret == 0) {
        /* The public key is derived, which also checks the secret one is usable. */
        if (zmq_curve_public(pub.s, secret.s) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof(on)) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret.s, Z85_LEN) != 0)
            rc = tl_zmq_fail(err, errlen, TL_EIO, "zmq curve", "cannot set the server key");
    } else if (rc == 0 && has_server == 0) {
        if (zmq_curve_keypair(pub.s, own.s) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server.s, Z85_LEN) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub.s, Z85_LEN) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, own.s, Z85_LEN) != 0)
            rc = tl_zmq_fail(err, errlen, TL_EIO, "zmq curve", "cannot set the client keys");
    }
    explicit_bzero(&secret, sizeof(secret));
    explicit_bzero(&own, sizeof(own));
    return rc;
}
