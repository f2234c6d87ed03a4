/* brisk/rng.h: counter-based random numbers (Philox4x32-10).
 *
 * A value depends only on (seed, stream, counter), never on call order, so parameters
 * initialised from it are the same on any machine and for any thread count: element i of a
 * tensor uses counter i, whoever computes it. Reference: Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3" (SC11), the Philox4x32 round function with 10 rounds.
 */
#ifndef BRISK_RNG_H
#define BRISK_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The raw block function: four 32-bit outputs from a 128-bit counter and a 64-bit key. */
void brisk_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Streams used by Brisk, so that no two purposes share random numbers. */
enum brisk_rng_stream {
    BRISK_RNG_STREAM_INIT = 1,      /* parameter init; counter = (tensor, element) */
    BRISK_RNG_STREAM_SPLIT = 2,     /* train/validation split */
    BRISK_RNG_STREAM_SHUFFLE = 3,   /* per-epoch order; the epoch selects the sub-stream */
    BRISK_RNG_STREAM_SYNTHETIC = 4, /* synthetic data set */
    BRISK_RNG_STREAM_DROPOUT = 5,   /* dropout masks; the layer selects the sub-stream */
    BRISK_RNG_STREAM_SAMPLE = 6,    /* text generation: counter = the token's position */
    BRISK_RNG_STREAM_AUGMENT = 7,   /* image augmentation: the epoch selects the sub-stream,
                                     * counter = sample * 64 + the draw */
    BRISK_RNG_STREAM_MIXUP = 8      /* mixup's weight: counter = step * 128 + the draw */
};

/* 64 random bits for (seed, stream, sub, counter). */
uint64_t brisk_rng_u64(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter);

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float brisk_rng_uniform(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter);

/* Standard normal by Box-Muller from one Philox block (double precision inside). */
float brisk_rng_normal(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter);

/* Uniform integer in [0, n) without modulo bias (n > 0), from the 64-bit value of the given
 * counter and, on the rare rejection, following counters of a sub-stream derived from it. */
uint64_t brisk_rng_below(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t counter,
                         uint64_t n);

#ifdef __cplusplus
}
#endif

#endif
