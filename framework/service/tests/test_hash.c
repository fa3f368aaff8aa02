/*
 * The hash of message keys (hash.h), which picks an ordering
 * lane's bucket: keys a producer chose to collide spread over the buckets like any
 * others, the same bytes hash alike within a process, and each process draws its own
 * key, so what collides in one cannot be learnt from another.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"

#define KEY_LEN 16
#define NKEYS 4096 /* as many buckets */

/* Key i of the hostile set: the bytes 'A' and 'A' | 0x80 only, so all agree in the low
 * seven bits of every byte, and FNV-1a's low seven bits with them, whatever the seed. */
static void hostile_key(unsigned i, unsigned char key[KEY_LEN])
{
    for (int b = 0; b < KEY_LEN; b++)
        key[b] = (unsigned char)('A' | (((i >> b) & 1) << 7));
}

/* The fullest bucket of NKEYS buckets the hostile keys land in, and how many buckets
 * they use, under the keyed hash or (keyed false) FNV-1a from a seed. */
static unsigned fullest_bucket(bool keyed, uint64_t seed, unsigned *used)
{
    static unsigned load[NKEYS];
    memset(load, 0, sizeof(load));
    unsigned fullest = 0;
    *used = 0;
    for (unsigned i = 0; i < NKEYS; i++) {
        unsigned char key[KEY_LEN];
        hostile_key(i, key);
        uint64_t h = keyed ? tl__hash_keyed(key, KEY_LEN) : tl__hash_bytes(seed, key, KEY_LEN);
        unsigned *slot = &load[h & (NKEYS - 1)];
        *used += *slot == 0;
        if (++*slot > fullest)
            fullest = *slot;
    }
    return fullest;
}

static void keys_chosen_to_collide_spread_over_the_buckets(void **state)
{
    (void)state;
    assert_int_equal(tl__hash_init(), 0);
    unsigned used;
    /* What the keys do to a plain hash, whatever it starts from: at most 32 buckets of
     * 4096 (the low seven bits of the bucket are the same for all), so one holds 128 or
     * more. */
    for (uint64_t seed = 0; seed < 4; seed++) {
        uint64_t start = TL_HASH_SEED + seed * 0x9e3779b97f4a7c15ULL;
        assert_true(fullest_bucket(false, start, &used) >= NKEYS / 32);
        assert_true(used <= 32);
    }
    /* Keyed: as random keys would, 4096 into 4096 buckets fill the fullest with a
     * handful (more than 12: a chance below one in a million) and use about 63%. */
    unsigned fullest = fullest_bucket(true, 0, &used);
    assert_in_range(fullest, 1, 12);
    assert_in_range(used, NKEYS / 2, NKEYS * 3 / 4);
}

static void the_same_bytes_hash_alike_and_other_bytes_apart(void **state)
{
    (void)state;
    assert_int_equal(tl__hash_init(), 0);
    assert_int_equal(tl__hash_init(), 0); /* drawn once: the hashes below keep */
    uint64_t a = tl__hash_keyed("order-17", 8);
    assert_true(tl__hash_keyed("order-17", 8) == a);
    assert_true(tl__hash_keyed("order-18", 8) != a);
    assert_true(tl__hash_keyed("order-17", 7) != a);
    assert_true(tl__hash_keyed("", 0) != a);
}

/* This program's hash of "order-17" as another process of it computes it. */
static uint64_t hash_in_a_new_process(void)
{
    char self[4096], cmd[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(cmd, sizeof(cmd), "'%s' --hash-of order-17", self);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    uint64_t h = 0;
    assert_int_equal(fscanf(p, "%" SCNx64, &h), 1);
    assert_int_equal(pclose(p), 0);
    return h;
}

static void each_process_draws_its_own_key(void **state)
{
    (void)state;
    assert_int_equal(tl__hash_init(), 0);
    uint64_t here = tl__hash_keyed("order-17", 8);
    uint64_t one = hash_in_a_new_process(), two = hash_in_a_new_process();
    /* Equal by chance once in 2^64. */
    assert_true(one != two);
    assert_true(one != here && two != here);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--hash-of") == 0) {
        if (tl__hash_init() != 0)
            return 1;
        printf("%" PRIx64 "\n", tl__hash_keyed(argv[2], strlen(argv[2])));
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_chosen_to_collide_spread_over_the_buckets),
        cmocka_unit_test(the_same_bytes_hash_alike_and_other_bytes_apart),
        cmocka_unit_test(each_process_draws_its_own_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
