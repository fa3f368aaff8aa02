/*
 * The hashing behind the runtime's and the config loader's hash tables: FNV-1a over
 * bytes, and a finalizer for keys that are numbers or pointers. It is not seeded, so
 * inputs chosen to collide (message keys in lanes.c, a config's keys in resolve.c) make
 * those tables' lookups slower, never wrong.
 */
#ifndef TL_HASH_H
#define TL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's starting value. */
#define TL_HASH_SEED 1469598103934665603ULL

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
