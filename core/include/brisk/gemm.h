/* brisk/gemm.h: the matrix product every layer runs on, with results that do not depend on
 * how the work is split between threads.
 *
 *     C(m, n) = init(m, n) + sum over k = 0 .. K-1 of A(m, k) B(k, n)
 *
 * Each element of C is one chain of fused multiply-adds in increasing k, starting from its
 * initial value: c = init; c = fma(A(m,0), B(0,n), c); c = fma(A(m,1), B(1,n), c); ...
 * Every code path (AVX-512, AVX2 + FMA, portable fmaf) computes exactly that chain, whatever
 * block of C it is computing and however the K loop is blocked for the caches (storing a
 * partial sum and loading it again is exact). So any split of C between threads, and any
 * instruction set, gives the same bits: this is what lets several threads share one
 * micro-shard without changing the result. An OpenBLAS sgemm gives no such promise: its
 * K-blocking and its small-matrix kernels depend on the shape of the call, so splitting one
 * call into several could change the rounding.
 *
 * No packing of A or B: A is read through two strides (so W and W^T are the same array), B
 * row by row. Rows of B should be contiguous and, for speed, not a multiple of 4 KiB apart.
 * Either A's rows or B's rows may instead be given as an array of pointers (one per row), so
 * that a convolution reads its input in place instead of unrolling it (im2col).
 */
#ifndef BRISK_GEMM_H
#define BRISK_GEMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the operands are multiplied.
 *
 * BRISK_GEMM_BF16 multiplies bfloat16 values: each element of A and B is first rounded to
 * bfloat16 (brisk_bf16), so that every product is exact in float, and the chain above then
 * runs as in fp32, except that a subnormal initial value counts as zero and a subnormal
 * result of any fma is flushed to zero (of its sign). That is the arithmetic of AVX512-BF16's
 * vdpbf16ps as Intel's manual defines it: two fp32 fmas per lane, subnormal inputs read as
 * zero, subnormal results flushed, nearest-even rounding, whatever MXCSR says. (The
 * instruction adds a pair's odd element first; a kernel on it stores each pair swapped to
 * keep k increasing.) Every code path computes exactly this, for any split of C, so bf16
 * results are the same bits on every CPU. */
typedef enum brisk_gemm_precision {
    BRISK_GEMM_FP32,   /* float operands (the default) */
    BRISK_GEMM_BF16    /* operands rounded to bfloat16, float accumulation, as above */
} brisk_gemm_precision;

typedef enum brisk_gemm_init {
    BRISK_GEMM_ZERO,    /* C = A B */
    BRISK_GEMM_ACCUM,   /* C += A B (the chain starts from C's value) */
    BRISK_GEMM_ROWBIAS  /* C(m, n) = bias[m] + (A B)(m, n) */
} brisk_gemm_init;

/* One product. Strides are in floats. The caller owns every pointer. */
typedef struct brisk_gemm_args {
    int M, N, K;                  /* C is (M, N); K >= 0 (K = 0 leaves C = init) */
    const float *A;               /* A(m, k) = A[m * a_rs + k * a_ks] */
    ptrdiff_t a_rs, a_ks;
    const float *B;               /* B(k, n) = B[k * ldb + n] */
    ptrdiff_t ldb;
    float *C;                     /* C(m, n) = C[m * ldc + n] */
    ptrdiff_t ldc;
    const float *bias;            /* (M), for BRISK_GEMM_ROWBIAS */
    brisk_gemm_init init;
    /* Optional, one of the two: A(m, k) = a_rows[m][k * a_ks] (A and a_rs unused), or
     * B(k, n) = b_rows[k][n] (B and ldb unused). */
    const float *const *a_rows;
    const float *const *b_rows;
    brisk_gemm_precision precision; /* BRISK_GEMM_FP32 (0) unless set; any value but
                                     * BRISK_GEMM_BF16 multiplies in fp32 */
    /* Optional: B as brisk_gemm_pack_b packed it (all of it), for this same product on the
     * code path in use. B or b_rows must still be valid: a thread that cannot have its
     * packing buffer reads them instead. NULL: each call packs what it needs, where its code
     * path packs B. */
    const float *b_packed;
    /* Optional: A as brisk_gemm_pack_a packed it (all of it), for this same product on the
     * code path in use; A or a_rows must still be valid. NULL: each call packs the panels of
     * A it reads, where its code path packs A. */
    const float *a_packed;
} brisk_gemm_args;

/* Computes the block of C that thread ith of nth owns (0 <= ith < nth); the nth calls
 * together compute all of C, each element exactly once, and the result is the same for any
 * nth. Never creates threads. A thread with nothing to do returns at once. */
void brisk_gemm(const brisk_gemm_args *g, int ith, int nth);

/* Computes the block [m0, m1) x [n0, n1) of C. */
void brisk_gemm_block(const brisk_gemm_args *g, int m0, int m1, int n0, int n1);

/* The rows [*m0, *m1) and columns [*n0, *n1) of an (M, N) output that thread ith of nth
 * computes in brisk_gemm (an empty block when it has none). Exposed so that a layer can apply
 * its elementwise epilogue to exactly the block its thread computed. */
void brisk_gemm_split(int M, int N, int ith, int nth, int *m0, int *m1, int *n0, int *n1);

/* Packing B once for many calls. Where a code path packs B before multiplying (bf16 products
 * on "avx512bf16": pairs of bfloat16), each call of brisk_gemm_block packs the part of B it
 * reads, so calls that split a product's rows between them each pack all of B. A team of
 * threads can instead pack B once, together, and then share it through b_packed:
 *
 *     size_t floats = brisk_gemm_pack_b_floats(&g);   (0: this product packs nothing)
 *     each thread: brisk_gemm_pack_b(&g, buf, u0, u1) for its part of [0, units)
 *     barrier; g.b_packed = buf; then the calls, as before.
 *
 * The packing is data movement and rounding only: results are the same bits either way.
 * buf: floats floats, 64-byte aligned. units = brisk_gemm_pack_b_units(&g). */
size_t brisk_gemm_pack_b_floats(const brisk_gemm_args *g);
int brisk_gemm_pack_b_units(const brisk_gemm_args *g);
void brisk_gemm_pack_b(const brisk_gemm_args *g, float *buf, int u0, int u1);

/* The same for A, for an A that many products share (a convolution's transformed weights,
 * multiplied with every block of its input): brisk_gemm_pack_a_floats(&g) floats (0: this
 * product packs nothing), then brisk_gemm_pack_a(&g, buf, m0, m1) for rows [m0, m1) of A,
 * by one thread or by several for disjoint rows, then g.a_packed = buf in every product
 * with the same A, M, K, a_rs, a_ks and precision (N, B and C may differ). The same bits
 * either way. */
size_t brisk_gemm_pack_a_floats(const brisk_gemm_args *g);
void brisk_gemm_pack_a(const brisk_gemm_args *g, float *buf, int m0, int m1);

/* x rounded to bfloat16, returned as a float (its low 16 bits zero): to nearest, ties to even;
 * a subnormal to zero of its sign; a NaN stays a (quiet) NaN; a value past the largest
 * bfloat16 to infinity. The rounding BRISK_GEMM_BF16 applies to its operands. */
float brisk_bf16(float x);

/* The code path in use: "avx512bf16" (AVX-512, and BRISK_GEMM_BF16 products on AVX512-BF16's
 * vdpbf16ps), "avx512" (bf16 emulated on the fp32 kernels, as on the two others), "avx2" or
 * "portable". */
const char *brisk_gemm_isa(void);

/* Chooses the code path (for tests and benchmarks): "avx512bf16", "avx512", "avx2",
 * "portable", or NULL for the best the CPU supports. Returns 0, or -1 when the CPU cannot run
 * it (nothing changes). Not thread-safe: call it while no product runs. */
int brisk_gemm_set_isa(const char *name);

#ifdef __cplusplus
}
#endif

#endif
