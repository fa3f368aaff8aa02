/*
 * The hashing behind the runtime's and the config loader's hash tables. Two kinds:
 *
 * - tl__hash_keyed for bytes an outsider chooses (message keys, in lanes.c): SipHash-2-4
 *   (libsodium's crypto_shorthash) under a key drawn at random once per process. A
 *   producer cannot pick keys that land in one bucket, as it can against a plain hash:
 *   FNV-1a's low bits depend only on the low bits of each byte, so keys differing in
 *   their bytes' top bits share a bucket whatever the starting value (bench/hostile_keys
 *   measured such keys at 31-59% of the speed of plain ones before).
 * - tl__hash_bytes (FNV-1a) and tl__hash_mix for what the operator's config or the
 *   broker's metadata names (resolve.c, shard.c): fast, and the same in every process.
 */
#ifndef TL_HASH_H
#define TL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's starting value. */
#define TL_HASH_SEED 1469598103934665603ULL

/* Draws the process's key for tl__hash_keyed, once (later calls return at once): 0, or
 * TL_ESYS when libsodium could not start. Called when a service is built. */
int tl__hash_init(void);

/* The 64-bit keyed hash of the n bytes at p (tl__hash_init must have returned 0). */
uint64_t tl__hash_keyed(const void *p, size_t n);

/* h with the n bytes at p folded in (FNV-1a; start from TL_HASH_SEED). */
static inline uint64_t tl__hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* A 64-bit finalizer (murmur3's): every input bit moves every output bit. */
static inline uint64_t tl__hash_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif
