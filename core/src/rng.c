#include "brisk/rng.h"

#include <math.h>

/* Philox4x32 constants from Salmon et al. (SC11), as in Random123. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void brisk_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static void rng_block(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter,
                      uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), sub, stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    brisk_philox4x32(ctr, key, out);
}

uint64_t brisk_rng_u64(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter)
{
    uint32_t o[4];
    rng_block(seed, stream, sub, counter, o);
    return ((uint64_t)o[0] << 32) | o[1];
}

float brisk_rng_uniform(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter)
{
    uint32_t o[4];
    rng_block(seed, stream, sub, counter, o);
    return (float)(o[0] >> 8) * (1.0f / 16777216.0f);
}

float brisk_rng_normal(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter)
{
    uint32_t o[4];
    rng_block(seed, stream, sub, counter, o);
    /* u1 in (0, 1] so that log(u1) is finite; 53-bit doubles from two words each. */
    const double s = 1.0 / 9007199254740992.0; /* 2^-53 */
    double u1 = ((double)((((uint64_t)o[0] << 32) | o[1]) >> 11) + 1.0) * s;
    double u2 = (double)((((uint64_t)o[2] << 32) | o[3]) >> 11) * s;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t brisk_rng_below(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter,
                         uint64_t n)
{
    /* Rejection: accept x < limit, the largest multiple of n that fits in 2^64. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;
    uint64_t x = brisk_rng_u64(seed, stream, sub, counter);
    for (uint64_t retry = 1; x > limit; retry++)
        x = brisk_rng_u64(seed ^ (counter * 0x9E3779B97F4A7C15ull), stream, sub ^ 0x80000000u,
                          retry);
    return x % n;
}
