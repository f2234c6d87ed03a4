/* Philox4x32-10 against Random123's known-answer vectors, and the derived distributions. */
#include "test_util.h"

#include "brisk/rng.h"

#include <stdlib.h>

static void test_philox_known_answers(void **state)
{
    (void)state;
    /* Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr[4] key[2] -> out[4]. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        brisk_philox4x32(kat[i], kat[i] + 4, out);
        for (int j = 0; j < 4; j++)
            assert_int_equal(out[j], kat[i][6 + j]);
    }
}

static void test_uniform_and_normal_moments(void **state)
{
    (void)state;
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    float umin = 1, umax = 0;
    for (int i = 0; i < n; i++) {
        float u = brisk_rng_uniform(7, 1, 0, (uint64_t)i);
        float z = brisk_rng_normal(7, 1, 1, (uint64_t)i);
        su += u;
        sn += z;
        sn2 += (double)z * z;
        umin = u < umin ? u : umin;
        umax = u > umax ? u : umax;
    }
    assert_true(umin >= 0.0f && umax < 1.0f);
    assert_close(su / n, 0.5, 0, 0.005);
    assert_close(sn / n, 0.0, 0, 0.01);
    assert_close(sn2 / n, 1.0, 0, 0.01);
}

static void test_counter_based(void **state)
{
    (void)state;
    /* A value depends on (seed, stream, sub, counter) only: any order gives the same. */
    assert_int_equal(brisk_rng_u64(1, 2, 3, 4), brisk_rng_u64(1, 2, 3, 4));
    assert_true(brisk_rng_u64(1, 2, 3, 4) != brisk_rng_u64(2, 2, 3, 4));
    assert_true(brisk_rng_u64(1, 2, 3, 4) != brisk_rng_u64(1, 3, 3, 4));
    assert_true(brisk_rng_u64(1, 2, 3, 4) != brisk_rng_u64(1, 2, 4, 4));
    assert_true(brisk_rng_u64(1, 2, 3, 4) != brisk_rng_u64(1, 2, 3, 5));
}

static void test_below_is_uniform(void **state)
{
    (void)state;
    int hist[6] = {0};
    const int n = 60000;
    for (int i = 0; i < n; i++) {
        uint64_t v = brisk_rng_below(3, 1, 0, (uint64_t)i, 6);
        assert_true(v < 6);
        hist[v]++;
    }
    for (int k = 0; k < 6; k++)
        assert_close(hist[k], n / 6, 0, 400); /* about 4 standard deviations */
    assert_int_equal(brisk_rng_below(3, 1, 0, 0, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_counter_based),
        cmocka_unit_test(test_below_is_uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
