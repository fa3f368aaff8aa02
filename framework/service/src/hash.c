/*
 * The process's key for tl__hash_keyed (hash.h), drawn once by libsodium.
 *
 * Thread rules: any thread; the key is written once, under pthread_once, before any
 * service that hashes with it exists.
 */
#include "hash.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include <taskloop/taskloop.h>

static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static int hash_rc;

static void hash_key_draw(void)
{
    if (sodium_init() < 0) {
        hash_rc = TL_ESYS;
        return;
    }
    crypto_shorthash_keygen(hash_key);
}

int tl__hash_init(void)
{
    pthread_once(&hash_once, hash_key_draw);
    return hash_rc;
}

uint64_t tl__hash_keyed(const void *p, size_t n)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, p, n, hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}
