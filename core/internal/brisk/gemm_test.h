/* brisk/gemm_test.h (internal): switches of brisk_gemm's code paths that only tests use, and
 * internal kernels that the layers use and the tests check. */
#ifndef BRISK_GEMM_TEST_H
#define BRISK_GEMM_TEST_H

/* on = 0: the products run as they do when a thread cannot have memory for its panels: the
 * AVX2 kernels read B where it is, and bf16 products take the emulation on small panels of
 * the stack; on = 1 (the default): they pack into the thread's panels. The bits are the same
 * either way. Not thread-safe: call it while no product runs. */
void brisk__gemm_set_packing(int on);

#include "brisk/gemm.h"

#include <stddef.h>

/* brisk_gemm_pack_b's packing, for units [u0, u1), of a B given transposed: B(k, c) =
 * bt[c * ldbt + k], or cols[c][k] where cols is not NULL (g->B is not read). The same words
 * as brisk_gemm_pack_b of B itself. */
void brisk__gemm_pack_bt(const brisk_gemm_args *g, const float *bt, size_t ldbt,
                         const float *const *cols, float *buf, int u0, int u1);

/* A bf16 operand packed by its caller, piece by piece, where products pack
 * (brisk_gemm_pack_b_floats or brisk_gemm_pack_a_floats not 0; elsewhere these write nothing),
 * rounded as brisk_bf16:
 * - brisk__gemm_pair_rows: dst[j] for j < n rounded up to 16 = the pair word of k0[j] (high
 *   half) and k1[j] (low; +0 where k1 is NULL), zeros past n: one packed row of B, rows k and
 *   k + 1 (brisk_gemm_pack_b's words; its rows are brisk_gemm_pack_b_floats / units apart);
 * - brisk__gemm_pair_along: dst[p] for p < 8 ceil(n / 16) = the pair word of x[2 p] and
 *   x[2 p + 1] (-0 past n): n values of k of one row of A, packed (brisk_gemm_pack_a's words;
 *   a row of a k-block of kc values spans brisk__gemm_packed_a_at(M, kc) / M words). */
/* Inside the library a bf16 product may have an operand only packed (b_packed with B and
 * b_rows NULL, or a_packed with A and a_rows NULL; gemm.h asks users for both): a thread that
 * cannot have its packing buffer then takes the rounded values out of the words. */
void brisk__gemm_pair_rows(const float *k0, const float *k1, int n, float *dst);
void brisk__gemm_pair_along(const float *x, int n, float *dst);
/* Packed rows of B from a block given transposed: src holds `rows` (<= 16) rows of 16 floats,
 * lds apart, row i = column i of B, its 16 values = B's rows k0 .. k0 + 15. Writes the
 * (cols + 1) / 2 packed rows of B's rows k0 .. k0 + cols - 1 (cols <= 16; +0 past cols, so
 * that an odd K's pad is +0), ldd floats apart, `rows` words each: words (k, k + 1) of
 * column i at dst + (k - k0) / 2 ldd + i. */
void brisk__gemm_pair_turn(const float *src, size_t lds, int rows, int cols, float *dst,
                           size_t ldd);

/* Where the k-block starting at k0 (a multiple of 256, or K for the whole size) begins in an A
 * of M rows packed by brisk_gemm_pack_a, in floats, on any code path: a scratch can be sized
 * by it before the path is known (brisk_gemm_pack_a_floats is 0 where products pack
 * nothing). */
size_t brisk__gemm_packed_a_at(int M, int k0);

/* out[j] = x[j][0] + x[j][1] + ... + x[j][n - 1], added in that order (rows ld apart), for j in
 * [j0, j1); n >= 1. Sixteen rows at a time in vector lanes (AVX-512), else eight, so that the
 * chains overlap. brisk__row_sums_scalar: always eight (the same sums). */
void brisk__row_sums(const float *x, size_t ld, int n, long long j0, long long j1, float *out);
void brisk__row_sums_scalar(const float *x, size_t ld, int n, long long j0, long long j1,
                            float *out);

#endif
