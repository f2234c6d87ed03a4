/* The split-invariant matrix product of brisk/gemm.h.
 *
 * A register-blocked kernel in the usual shape (a block of MR rows by up to NR columns of C
 * held in vector registers while k runs; one element of A broadcast, one row of B loaded, MR
 * x NR/width fused multiply-adds per k), in three versions chosen once at run time: AVX-512
 * (6 x 64: 24 accumulators of 16 floats), AVX2 + FMA (6 x 16: 12 accumulators of 8 floats)
 * and portable C with fmaf. Every version computes each element as the same chain of fmas in
 * increasing k, so they agree bit for bit with each other and with any split of C.
 *
 * K is cut into blocks of KC so that the rows of B a block reads stay in L1 while MR-row
 * blocks of A go past; between blocks the partial sums go through C, which is exact. The AVX2
 * version first copies each KC x NC2 panel of B into a per-thread buffer, 16 columns at a
 * time, so that its kernel reads B contiguously whatever B's row stride (rows 2 or 4 KiB
 * apart share L1 sets; read in place they left L1 between register blocks). Copying moves
 * data only: the chains, and so the bits, are the same.
 *
 * bfloat16 operands (BRISK_GEMM_BF16) are rounded into per-thread packed panels and then
 * multiplied by the same kernels, with subnormals flushed (MXCSR's FTZ and DAZ on x86; by
 * hand in the portable path): the arithmetic of AVX512-BF16's vdpbf16ps, on every CPU. Where
 * the CPU has that instruction ("avx512bf16", the default there), bf16 products run on it,
 * on panels of pairs of bfloat16, twice the multiply-adds per instruction of fp32.
 */
#include "brisk/gemm.h"

#include "core_internal.h"

#include "brisk/error.h"
#include "brisk/gemm_test.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BRISK_GEMM_X86 1
#else
#define BRISK_GEMM_X86 0
#endif

#define MR 6    /* rows of C per register block (every version) */
#ifndef KC
#define KC 256  /* k per cache block */
#endif

typedef void (*block_fn)(const brisk_gemm_args *g, int m0, int m1, int n0, int n1);

/* The initial value of C(m, n) for a chain that starts at k = k0. */
static inline float init_value(const brisk_gemm_args *g, int k0, int m, int n)
{
    if (k0 > 0 || g->init == BRISK_GEMM_ACCUM)
        return g->C[(ptrdiff_t)m * g->ldc + n];
    return g->init == BRISK_GEMM_ROWBIAS ? g->bias[m] : 0.0f;
}

/* ---- portable ------------------------------------------------------------------------- */

static inline void portable_chains(const brisk_gemm_args *g, int m0, int m1, int n0, int n1,
                                   const int ftz)
{
    for (int k0 = 0; k0 < g->K || k0 == 0; k0 += KC) {
        const int k1 = g->K - k0 < KC ? g->K : k0 + KC;
        for (int m = m0; m < m1; m++) {
            float *c = g->C + (ptrdiff_t)m * g->ldc;
            for (int n = n0; n < n1; n++)
                c[n] = init_value(g, k0, m, n);
            for (int k = k0; k < k1; k++) {
                const float a = g->a_rows ? g->a_rows[m][(ptrdiff_t)k * g->a_ks]
                                          : g->A[(ptrdiff_t)m * g->a_rs + (ptrdiff_t)k * g->a_ks];
                const float *b = g->b_rows ? g->b_rows[k] : g->B + (ptrdiff_t)k * g->ldb;
                for (int n = n0; n < n1; n++)
                    c[n] = ftz ? brisk__flush_subnormal(
                                     fmaf(a, b[n], brisk__flush_subnormal(c[n])))
                               : fmaf(a, b[n], c[n]);
            }
        }
    }
}

static void block_portable(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    portable_chains(g, m0, m1, n0, n1, 0);
}

static void block_portable_ftz(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    portable_chains(g, m0, m1, n0, n1, 1);
}

#if BRISK_GEMM_X86

/* ---- AVX-512: MR x (NV x 16) ----------------------------------------------------------- */

#define T512 __attribute__((target("avx512f")))
#define INLINE512 static inline __attribute__((target("avx512f"), always_inline))

/* ind: 0 strided A and B, IND_A rows of A through a_rows, IND_B rows of B through b_rows
 * (a compile-time constant in every instance). */
#define IND_A 1
#define IND_B 2

/* The accumulators of an mr x (nv x 16) block of C: its starting values (init), and back
 * into C (the last vector of each row masked by tail). */
INLINE512 void acc512_init(const brisk_gemm_args *g, __m512 acc[MR][4], const int mr,
                           const int nv, __mmask16 tail, int m, int n, int init)
{
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) {
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
            const __mmask16 mask = v == nv - 1 ? tail : (__mmask16)0xFFFF;
            if (init == BRISK_GEMM_ACCUM)
                acc[r][v] = _mm512_maskz_loadu_ps(mask, g->C + (ptrdiff_t)(m + r) * g->ldc +
                                                            n + 16 * v);
            else if (init == BRISK_GEMM_ROWBIAS)
                acc[r][v] = _mm512_set1_ps(g->bias[m + r]);
            else
                acc[r][v] = _mm512_setzero_ps();
        }
    }
}

INLINE512 void acc512_store(const brisk_gemm_args *g, __m512 acc[MR][4], const int mr,
                            const int nv, __mmask16 tail, int m, int n)
{
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(g->C + (ptrdiff_t)(m + r) * g->ldc + n + 16 * v,
                                  v == nv - 1 ? tail : (__mmask16)0xFFFF, acc[r][v]);
}

INLINE512 void micro512(const brisk_gemm_args *g, const int mr, const int nv, __mmask16 tail,
                        int m, int n, int k0, int k1, int init, const int ind)
{
    __m512 acc[MR][4];
    acc512_init(g, acc, mr, nv, tail, m, n, init);
    const ptrdiff_t a_rs = g->a_rs, a_ks = g->a_ks, ldb = g->ldb;
    const float *a = ind == IND_A ? NULL : g->A + (ptrdiff_t)m * a_rs + (ptrdiff_t)k0 * a_ks;
    const float *ar[MR];
    if (ind == IND_A)
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
            ar[r] = g->a_rows[m + r] + (ptrdiff_t)k0 * a_ks;
    const float *b = ind == IND_B ? NULL : g->B + (ptrdiff_t)k0 * ldb + n;
    for (int k = k0; k < k1; k++) {
        const float *bk = ind == IND_B ? g->b_rows[k] + n : b;
        __m512 bv[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(tail, bk + 16 * v)
                                : _mm512_loadu_ps(bk + 16 * v);
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) {
            const __m512 av = _mm512_set1_ps(ind == IND_A ? *ar[r] : a[r * a_rs]);
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
        if (ind == IND_A)
            _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) ar[r] += a_ks;
        else
            a += a_ks;
        if (ind != IND_B)
            b += ldb;
    }
    acc512_store(g, acc, mr, nv, tail, m, n);
}

/* One instance per (rows, vectors), so that the accumulators live in registers. */
#define M512(R, V, I)                                                                      \
    T512 static void micro512_##R##_##V##_##I(const brisk_gemm_args *g, __mmask16 tail,   \
                                              int m, int n, int k0, int k1, int init)      \
    {                                                                                      \
        micro512(g, R, V, tail, m, n, k0, k1, init, I);                                    \
    }
#define M512_ROW(R, I) M512(R, 1, I) M512(R, 2, I) M512(R, 3, I) M512(R, 4, I)
#define M512_ALL(I)                                                                        \
    M512_ROW(1, I) M512_ROW(2, I) M512_ROW(3, I) M512_ROW(4, I) M512_ROW(5, I) M512_ROW(6, I)
M512_ALL(0) M512_ALL(1) M512_ALL(2)

typedef void (*micro512_fn)(const brisk_gemm_args *, __mmask16, int, int, int, int, int);
#define M512_REF(R, I)                                                                     \
    {micro512_##R##_1_##I, micro512_##R##_2_##I, micro512_##R##_3_##I, micro512_##R##_4_##I}
#define M512_TABLE(I)                                                                      \
    {M512_REF(1, I), M512_REF(2, I), M512_REF(3, I), M512_REF(4, I), M512_REF(5, I),        \
     M512_REF(6, I)}
static const micro512_fn micro512_table[3][MR][4] = {M512_TABLE(0), M512_TABLE(1),
                                                     M512_TABLE(2)};

/* Which instances a product takes: indirect A, indirect B, or neither. */
static inline int indirection(const brisk_gemm_args *g)
{
    return g->a_rows ? IND_A : g->b_rows ? IND_B : 0;
}

T512 static void block_avx512(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    for (int n = n0; n < n1; n += 64) {
        const int nw = n1 - n < 64 ? n1 - n : 64, nv = (nw + 15) / 16;
        const __mmask16 tail = (__mmask16)(0xFFFFu >> (16 * nv - nw));
        for (int k0 = 0; k0 < g->K || k0 == 0; k0 += KC) {
            const int k1 = g->K - k0 < KC ? g->K : k0 + KC;
            const int init = k0 > 0 ? BRISK_GEMM_ACCUM : (int)g->init;
            for (int m = m0; m < m1; m += MR) {
                const int mr = m1 - m < MR ? m1 - m : MR;
                micro512_table[indirection(g)][mr - 1][nv - 1](g, tail, m, n, k0, k1, init);
            }
        }
    }
}

/* ---- AVX2 + FMA: MR x (NV x 8) --------------------------------------------------------- */

#define T256 __attribute__((target("avx2,fma")))
#define INLINE256 static inline __attribute__((target("avx2,fma"), always_inline))

INLINE256 __m256i mask256(int lanes)
{
    static const int bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(const void *)(bits + 8 - lanes));
}

/* packed (a compile-time constant in every instance): B comes from bp, a strip of a packed
 * panel (pack_b: 16 floats a row, zeros past N), instead of from g. */
INLINE256 void micro256(const brisk_gemm_args *g, const int mr, const int nv, int tail_lanes,
                        int m, int n, int k0, int k1, int init, const int ind, const int packed,
                        const float *restrict bp)
{
    const __m256i tail = mask256(tail_lanes);
    const int whole = tail_lanes == 8; /* plain loads and stores of C: masked ones are slow */
    __m256 acc[MR][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) {
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
            float *c = g->C + (ptrdiff_t)(m + r) * g->ldc + n + 8 * v;
            if (init == BRISK_GEMM_ACCUM)
                acc[r][v] = v < nv - 1 || whole ? _mm256_loadu_ps(c)
                                                : _mm256_maskload_ps(c, tail);
            else if (init == BRISK_GEMM_ROWBIAS)
                acc[r][v] = _mm256_set1_ps(g->bias[m + r]);
            else
                acc[r][v] = _mm256_setzero_ps();
        }
    }
    const ptrdiff_t a_rs = g->a_rs, a_ks = g->a_ks, ldb = packed ? 16 : g->ldb;
    const float *a = ind == IND_A ? NULL : g->A + (ptrdiff_t)m * a_rs + (ptrdiff_t)k0 * a_ks;
    const float *ar[MR];
    if (ind == IND_A)
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
            ar[r] = g->a_rows[m + r] + (ptrdiff_t)k0 * a_ks;
    const float *b = packed ? bp : ind == IND_B ? NULL : g->B + (ptrdiff_t)k0 * ldb + n;
    for (int k = k0; k < k1; k++) {
        const float *bk = !packed && ind == IND_B ? g->b_rows[k] + n : b;
        __m256 bv[2];
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
            bv[v] = packed || v < nv - 1 || whole ? _mm256_loadu_ps(bk + 8 * v)
                                                  : _mm256_maskload_ps(bk + 8 * v, tail);
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(ind == IND_A ? ar[r] : a + r * a_rs);
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
                acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
        if (ind == IND_A)
            _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) ar[r] += a_ks;
        else
            a += a_ks;
        if (packed || ind != IND_B)
            b += ldb;
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
            float *c = g->C + (ptrdiff_t)(m + r) * g->ldc + n + 8 * v;
            if (v < nv - 1 || whole)
                _mm256_storeu_ps(c, acc[r][v]);
            else
                _mm256_maskstore_ps(c, tail, acc[r][v]);
        }
}

#define M256(R, V, I)                                                                      \
    T256 static void micro256_##R##_##V##_##I(const brisk_gemm_args *g, int tail, int m,   \
                                              int n, int k0, int k1, int init)             \
    {                                                                                      \
        micro256(g, R, V, tail, m, n, k0, k1, init, I, 0, NULL);                           \
    }
#define M256_ROW(R, I) M256(R, 1, I) M256(R, 2, I)
#define M256_ALL(I)                                                                        \
    M256_ROW(1, I) M256_ROW(2, I) M256_ROW(3, I) M256_ROW(4, I) M256_ROW(5, I) M256_ROW(6, I)
M256_ALL(0) M256_ALL(1) M256_ALL(2)

typedef void (*micro256_fn)(const brisk_gemm_args *, int, int, int, int, int, int);
#define M256_REF(R, I) {micro256_##R##_1_##I, micro256_##R##_2_##I}
#define M256_TABLE(I)                                                                      \
    {M256_REF(1, I), M256_REF(2, I), M256_REF(3, I), M256_REF(4, I), M256_REF(5, I),        \
     M256_REF(6, I)}
static const micro256_fn micro256_table[3][MR][2] = {M256_TABLE(0), M256_TABLE(1),
                                                     M256_TABLE(2)};

#define M256P(R, V, I)                                                                     \
    T256 static void micro256p_##R##_##V##_##I(const brisk_gemm_args *g, int tail, int m,  \
                                               int n, int k0, int k1, int init,            \
                                               const float *bp)                            \
    {                                                                                      \
        micro256(g, R, V, tail, m, n, k0, k1, init, I, 1, bp);                             \
    }
#define M256P_ROW(R, I) M256P(R, 1, I) M256P(R, 2, I)
#define M256P_ALL(I)                                                                       \
    M256P_ROW(1, I) M256P_ROW(2, I) M256P_ROW(3, I) M256P_ROW(4, I) M256P_ROW(5, I)         \
    M256P_ROW(6, I)
M256P_ALL(0) M256P_ALL(1)

typedef void (*micro256p_fn)(const brisk_gemm_args *, int, int, int, int, int, int,
                             const float *);
#define M256P_REF(R, I) {micro256p_##R##_1_##I, micro256p_##R##_2_##I}
#define M256P_TABLE(I)                                                                     \
    {M256P_REF(1, I), M256P_REF(2, I), M256P_REF(3, I), M256P_REF(4, I), M256P_REF(5, I),   \
     M256P_REF(6, I)}
static const micro256p_fn micro256p_table[2][MR][2] = {M256P_TABLE(0), M256P_TABLE(1)};

/* Columns per panel: the panel's rows of B (KC x NC2, 128 KiB packed) stay in L2 while each
 * MR-row block of A (MR x KC) is reused from L1 across the panel's 16-column strips. Measured
 * on this project's 2-core Zen 4 (1024 x 1024 x 256 products, one core, B read in place):
 * 64 -> 84, 128 -> 86, 256 -> 86, 512 -> 58 GFLOPS, and strip by strip over all of M (the
 * order before) 61. With B packed, 128 and 256 were within this VM's noise of each other on
 * the GPT shapes (bench_gpt, alternating runs). */
#ifndef NC2
#define NC2 128
#endif

static float *b_panel(void);

/* Copies rows [k0, k1) of B's columns [n, n1) into strips of 16 (see micro256). */
T256 static void pack_b(const brisk_gemm_args *g, int k0, int k1, int n, int n1, float *bp)
{
    const int kc = k1 - k0, whole = (n1 - n) / 16 * 16; /* row by row: B is read in order */
    for (int k = k0; k < k1; k++) {
        const float *src = g->b_rows ? g->b_rows[k] + n : g->B + (ptrdiff_t)k * g->ldb + n;
        float *d = bp + (size_t)(k - k0) * 16;
        int j = 0;
        for (; j < whole; j += 16, d += (size_t)16 * kc) {
            _mm256_storeu_ps(d, _mm256_loadu_ps(src + j));
            _mm256_storeu_ps(d + 8, _mm256_loadu_ps(src + j + 8));
        }
        if (j < n1 - n) {
            int q = 0;
            for (; j + q < n1 - n; q++)
                d[q] = src[j + q];
            for (; q < 16; q++)
                d[q] = 0.0f;
        }
    }
}

/* bp: the thread's panel to pack B into, or NULL to read B in place. */
T256 static void avx2_blocks(const brisk_gemm_args *g, int m0, int m1, int n0, int n1,
                             float *bp)
{
    for (int np = n0; np < n1; np += NC2) {
        const int np1 = n1 - np < NC2 ? n1 : np + NC2;
        for (int k0 = 0; k0 < g->K || k0 == 0; k0 += KC) {
            const int k1 = g->K - k0 < KC ? g->K : k0 + KC;
            const int init = k0 > 0 ? BRISK_GEMM_ACCUM : (int)g->init;
            if (bp)
                pack_b(g, k0, k1, np, np1, bp);
            for (int m = m0; m < m1; m += MR) {
                const int mr = m1 - m < MR ? m1 - m : MR;
                for (int n = np; n < np1; n += 16) {
                    const int nw = np1 - n < 16 ? np1 - n : 16, nv = (nw + 7) / 8;
                    const int tail = nw - 8 * (nv - 1);
                    if (bp)
                        micro256p_table[g->a_rows ? 1 : 0][mr - 1][nv - 1](
                            g, tail, m, n, k0, k1, init, bp + (size_t)(n - np) * (k1 - k0));
                    else
                        micro256_table[indirection(g)][mr - 1][nv - 1](g, tail, m, n, k0, k1,
                                                                       init);
                }
            }
        }
    }
}

T256 static void block_avx2(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    avx2_blocks(g, m0, m1, n0, n1, b_panel());
}

/* For operands already packed (the bf16 panels): B is read where it is, not copied again. */
T256 static void block_avx2_in_place(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    avx2_blocks(g, m0, m1, n0, n1, NULL);
}

#endif /* BRISK_GEMM_X86 */

/* ---- dispatch ------------------------------------------------------------------------- */

static block_fn active_block;
static const char *active_name;
static int active_dpbf16; /* bf16 products on vdpbf16ps ("avx512bf16") */

static int select_isa(const char *name)
{
#if BRISK_GEMM_X86
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f");
    const int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const int hasbf16 = has512 && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bf16");
    active_dpbf16 = 0;
    if ((!name && hasbf16) || (name && !strcmp(name, "avx512bf16"))) {
        if (!hasbf16)
            return -1;
        active_block = block_avx512;
        active_name = "avx512bf16";
        active_dpbf16 = 1;
        return 0;
    }
    if ((!name && has512) || (name && !strcmp(name, "avx512"))) {
        if (!has512)
            return -1;
        active_block = block_avx512;
        active_name = "avx512";
        return 0;
    }
    if ((!name && has2) || (name && !strcmp(name, "avx2"))) {
        if (!has2)
            return -1;
        active_block = block_avx2;
        active_name = "avx2";
        return 0;
    }
#endif
    if (name && strcmp(name, "portable"))
        return -1;
    active_block = block_portable;
    active_name = "portable";
    return 0;
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void select_default(void)
{
    select_isa(NULL);
}

static block_fn current_block(void)
{
    pthread_once(&default_once, select_default);
    return active_block;
}

int brisk_gemm_set_isa(const char *name)
{
    pthread_once(&default_once, select_default);
    block_fn before = active_block;
    const char *before_name = active_name;
    const int before_dpbf16 = active_dpbf16;
    if (select_isa(name) < 0) {
        active_block = before;
        active_name = before_name;
        active_dpbf16 = before_dpbf16;
        return -1;
    }
    return 0;
}

const char *brisk_gemm_isa(void)
{
    current_block();
    return active_name;
}

/* ---- bfloat16 operands ------------------------------------------------------------------ */

float brisk_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = brisk__bf16_bits(u);
    memcpy(&x, &u, sizeof x);
    return x;
}

static BRISK_MULTIVERSION void round_row(float *restrict dst, const float *restrict src,
                                         ptrdiff_t stride, int n)
{
    const uint32_t *s = (const uint32_t *)(const void *)src;
    uint32_t *d = (uint32_t *)(void *)dst;
    if (stride == 1)
        for (int i = 0; i < n; i++)
            d[i] = brisk__bf16_bits(s[i]);
    else
        for (int i = 0; i < n; i++)
            d[i] = brisk__bf16_bits(s[(ptrdiff_t)i * stride]);
}

void brisk__bf16_round_row(float *dst, const float *src, int n)
{
    round_row(dst, src, 1, n);
}

/* Packing panels for the bf16 products: rows of A (up to mb of them) and of B (nb wide),
 * kb of k at a time, rounded once and then multiplied by the fp32 kernels. */
typedef struct bf16_panels {
    float *buf;
    int mb, nb, kb;
} bf16_panels;

#define PACK_MB 96
#define PACK_NB 256
#define PACK_LD(nb) ((nb) + 16) /* rows of the B panel not a power of two apart */

/* A buffer of each thread's own, made on first use and freed when the thread exits: one
 * pthread key per kind of buffer. */
typedef struct thread_buffer {
    pthread_key_t key;
    int key_ok;
    pthread_once_t once;
    size_t bytes; /* a multiple of 64 */
} thread_buffer;

/* The calling thread's buffer of kind b (make creates b's key), or NULL when memory is
 * short. */
static float *thread_buffer_get(thread_buffer *b, void (*make)(void))
{
    pthread_once(&b->once, make);
    if (!b->key_ok)
        return NULL;
    float *p = pthread_getspecific(b->key);
    if (!p) {
        p = aligned_alloc(64, b->bytes);
        if (p && pthread_setspecific(b->key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

#define THREAD_BYTES(floats) (((floats) * sizeof(float) + 63) / 64 * 64)

static int packing_off; /* brisk__gemm_set_packing */

static thread_buffer bf16_buf = {.once = PTHREAD_ONCE_INIT,
                                 .bytes = THREAD_BYTES(KC * (PACK_MB + PACK_LD(PACK_NB)))};

static void bf16_buf_key(void)
{
    bf16_buf.key_ok = pthread_key_create(&bf16_buf.key, free) == 0;
}

/* The calling thread's panels for the bf16 products. */
static float *pack_buffer(void)
{
    return packing_off ? NULL : thread_buffer_get(&bf16_buf, bf16_buf_key);
}

void brisk__gemm_set_packing(int on)
{
    packing_off = !on;
}

#if BRISK_GEMM_X86
static thread_buffer panel_buf = {.once = PTHREAD_ONCE_INIT, .bytes = THREAD_BYTES(KC * NC2)};

static void panel_buf_key(void)
{
    panel_buf.key_ok = pthread_key_create(&panel_buf.key, free) == 0;
}

/* The calling thread's packed panel of B for block_avx2 (KC x NC2 floats), or NULL when memory
 * is short or a test turned packing off: the kernels then read B where it is. */
static float *b_panel(void)
{
    return packing_off ? NULL : thread_buffer_get(&panel_buf, panel_buf_key);
}
#endif

/* Pair words in a packed row of A holding kc values of k: a whole number of 32-byte pieces. */
static inline int a_lda(int kc)
{
    return ((kc + 1) / 2 + 7) / 8 * 8;
}

size_t brisk__gemm_packed_a_at(int M, int k0)
{
    const size_t full = (size_t)(k0 / KC) * (size_t)a_lda(KC), rest = (size_t)(k0 % KC);
    return (size_t)(M > 0 ? M : 0) * (full + (rest ? (size_t)a_lda((int)rest) : 0));
}

/* Row stride of B packed whole (brisk_gemm_pack_b): N rounded up to an odd number of 16-word
 * lines, so that rows are not a power of two apart. */
static inline int packed_ld(int N)
{
    const int ld = (N + 15) / 16 * 16;
    return ld / 16 % 2 ? ld : ld + 16;
}

/* Row k, columns [n, n + cols) of a B that exists only packed (brisk__gemm_pack_bt): its
 * values, rounded already, out of the pair words (k even in the high half). */
static void unpack_row(float *dst, const float *packed, int N, int k, int n, int cols)
{
    const uint32_t *w = (const uint32_t *)(const void *)packed + (size_t)(k / 2) * packed_ld(N);
    uint32_t *d = (uint32_t *)(void *)dst;
    for (int j = 0; j < cols; j++)
        d[j] = k % 2 ? w[n + j] << 16 : w[n + j] & 0xFFFF0000u;
}

/* Row m of an A of M x K that exists only packed (brisk_gemm_pack_a's layout), its values at
 * k in [k0, k0 + kc), rounded already, out of the pair words. */
static void unpack_a_row(float *dst, const float *packed, int M, int K, int m, int k0, int kc)
{
    const uint32_t *w = (const uint32_t *)(const void *)packed;
    uint32_t *d = (uint32_t *)(void *)dst;
    for (int j = 0; j < kc; j++) {
        const int k = k0 + j, kb = k / KC * KC, in = k - kb;
        const int lda = a_lda(K - kb < KC ? K - kb : KC);
        const uint32_t word = w[brisk__gemm_packed_a_at(M, kb) + (size_t)m * lda + in / 2];
        d[j] = in % 2 ? word << 16 : word & 0xFFFF0000u;
    }
}

static void bf16_block(const brisk_gemm_args *g, int m0, int m1, int n0, int n1,
                       block_fn inner, const bf16_panels *pp)
{
    float *pa = pp->buf, *pb = pp->buf + (size_t)pp->kb * pp->mb;
    const int ldp = PACK_LD(pp->nb);
    for (int k0 = 0; k0 < g->K || k0 == 0; k0 += pp->kb) {
        const int kc = g->K - k0 < pp->kb ? g->K - k0 : pp->kb;
        for (int m = m0; m < m1; m += pp->mb) {
            const int rows = m1 - m < pp->mb ? m1 - m : pp->mb;
            for (int r = 0; r < rows; r++) {
                if (!g->A && !g->a_rows) { /* a thread short of memory: A only packed */
                    unpack_a_row(pa + (size_t)r * kc, g->a_packed, g->M, g->K, m + r, k0, kc);
                    continue;
                }
                const float *src =
                    g->a_rows ? g->a_rows[m + r] : g->A + (ptrdiff_t)(m + r) * g->a_rs;
                round_row(pa + (size_t)r * kc, src + (ptrdiff_t)k0 * g->a_ks, g->a_ks, kc);
            }
            for (int n = n0; n < n1; n += pp->nb) {
                const int cols = n1 - n < pp->nb ? n1 - n : pp->nb;
                for (int k = 0; k < kc; k++) {
                    if (!g->B && !g->b_rows) { /* a thread short of memory: B only packed */
                        unpack_row(pb + (size_t)k * ldp, g->b_packed, g->N, k0 + k, n, cols);
                        continue;
                    }
                    const float *src =
                        g->b_rows ? g->b_rows[k0 + k] : g->B + (ptrdiff_t)(k0 + k) * g->ldb;
                    round_row(pb + (size_t)k * ldp, src + n, 1, cols);
                }
                const brisk_gemm_args t = {
                    .M = rows, .N = cols, .K = kc, .A = pa, .a_rs = kc, .a_ks = 1, .B = pb,
                    .ldb = ldp, .C = g->C + (ptrdiff_t)m * g->ldc + n, .ldc = g->ldc,
                    .bias = g->bias ? g->bias + m : NULL,
                    .init = k0 > 0 ? BRISK_GEMM_ACCUM : g->init};
                inner(&t, 0, rows, 0, cols);
            }
        }
    }
}

#if BRISK_GEMM_X86
/* ---- AVX512-BF16: vdpbf16ps on pairs of k -------------------------------------------- */

/* The instruction multiplies pairs of bfloat16 values: each 32-bit word of its operands holds
 * two, and each fp32 lane of the result gets c += a[1] b[1]; c += a[0] b[0] (two fmas, with
 * subnormals read as zero and flushed, nearest-even), the odd slot first. The words here hold
 * (k, k + 1) with k in the high, odd slot, so each lane's chain runs in increasing k: the
 * chain of BRISK_GEMM_BF16, bit for bit. An odd K's last pair gets -0 in A and +0 in B: adding
 * -0 x +0 = -0 changes nothing, not even a -0.
 *
 * Panels, from the thread's bf16 buffer: up to PACK_MB rows of A by KC / 2 words (row by row,
 * or column by column where A's columns are contiguous), and KC / 2 rows of PACK_NB columns
 * of B, zeros past N (or B packed once for the whole product, b_packed). The kernel keeps a
 * 64-column strip of the B panel in L1 (32 KiB) while it goes down the rows of the A panel. */
#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define INLINEBF16 static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), \
                                                always_inline))
#define PREFETCH_ROWS 4  /* rows of A ahead */
#define PREFETCH_PAIRS 2 /* pairs of rows of B ahead */
#define PREFETCH_COLS 8  /* pairs of columns of A ahead */

/* Rounding to bfloat16 by the CPU's own conversions (vcvtneps2bf16, vcvtne2ps2bf16): nearest
 * even, subnormal inputs to zero of their sign, NaNs kept and made quiet, whatever MXCSR
 * says. That is brisk__bf16_bits, bit for bit: it is how Intel defines the instructions, and
 * test_gemm's test_packs_round_as_bf16 checks the packs against brisk_bf16 wherever it runs
 * (16 million bit patterns spread over all 2^32, and the odd values). */

/* 16 pair words from two rows of k: row k's values in the words' high halves, row k + 1's in
 * the low. The conversion gives row k + 1's 16 values, then row k's; the permutation
 * interleaves them. */
INLINEBF16 __m512i pair_words16(__m512 k0, __m512 k1)
{
    static const uint16_t at[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(at),
                                    (__m512i)_mm512_cvtne2ps_pbh(k0, k1));
}

/* 16 floats along k as 8 pair words: the conversion puts k's value below k + 1's in each
 * word; a rotation swaps them. */
INLINEBF16 __m256i pairs8(__m512 x)
{
    return _mm256_rol_epi32((__m256i)_mm512_cvtneps_pbh(x), 16);
}

/* 32 floats along k, x0's 16 then x1's, as 16 pair words. */
INLINEBF16 __m512i pairs16(__m512 x0, __m512 x1)
{
    return _mm512_rol_epi32((__m512i)_mm512_cvtne2ps_pbh(x1, x0), 16);
}

/* Rows k0 and k1 of n values as pair words, zeros past n; where k1 is NULL, `pad` in every
 * low half (B's pad is +0, A's -0). A row of B packed (brisk__gemm_pair_rows), or of A packed
 * column by column. */
TBF16 static void pair_rows(const float *k0, const float *k1, int n, float pad, uint32_t *dst)
{
    for (int j = 0; j < n; j += 16) {
        const __mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        const __m512 lo = k1 ? _mm512_maskz_loadu_ps(mask, k1 + j) : _mm512_set1_ps(pad);
        _mm512_storeu_si512(dst + j, pair_words16(_mm512_maskz_loadu_ps(mask, k0 + j), lo));
    }
}

/* n values along k as pair words, -0 past n (a row of A packed; brisk__gemm_pair_along). */
TBF16 static void pair_along(const float *x, int n, uint32_t *dst)
{
    for (int j = 0; j < n; j += 16) {
        const __mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        _mm256_storeu_si256((__m256i *)(void *)(dst + j / 2),
                            pairs8(_mm512_mask_loadu_ps(_mm512_set1_ps(-0.0f), mask, x + j)));
    }
}

/* B's rows [k0, k0 + kc) and columns [n, n + cols) as kc2 rows of pair words, ldp apart. */
TBF16 static void pack_b_pairs(const brisk_gemm_args *g, int k0, int kc, int n, int cols,
                               uint32_t *bp, int ldp)
{
    for (int p = 0; 2 * p < kc; p++) {
        const int k = k0 + 2 * p;
        const float *r0 = g->b_rows ? g->b_rows[k] + n : g->B + (ptrdiff_t)k * g->ldb + n;
        const float *r1 = 2 * p + 1 >= kc      ? NULL
                          : g->b_rows          ? g->b_rows[k + 1] + n
                                               : r0 + g->ldb;
        uint32_t *d = bp + (size_t)p * ldp;
        for (int q = 2 * p + 2 * PREFETCH_PAIRS; q < 2 * p + 2 * PREFETCH_PAIRS + 2 && q < kc;
             q++) { /* rows of activations, from L2 or memory: the rows ahead are fetched */
            const char *next = (const char *)(g->b_rows ? g->b_rows[k0 + q] + n
                                                        : g->B + (ptrdiff_t)(k0 + q) * g->ldb + n);
            for (int j = 0; j < cols; j += 16)
                _mm_prefetch(next + 4 * j, _MM_HINT_T0);
        }
        pair_rows(r0, r1, cols, 0.0f, d);
    }
}

/* One pair word from two floats (x1 = -0 pads an odd K). */
static inline uint32_t pair_word(float x0, float x1)
{
    uint32_t u0, u1;
    memcpy(&u0, &x0, sizeof u0);
    memcpy(&u1, &x1, sizeof u1);
    return brisk__bf16_bits(u0) | brisk__bf16_bits(u1) >> 16;
}

TBF16 static void pack_a_rows(const brisk_gemm_args *g, int m, int rows, int k0, int kc,
                              uint32_t *ap, int lda);

/* A's rows [m, m + rows), k in [k0, k0 + kc), as pair words: word (r, p) at ap[r * *ars +
 * p * *aps]. Stored column by column (rows 16 at a time) where A's columns are contiguous,
 * row by row otherwise. */
TBF16 static void pack_a_pairs(const brisk_gemm_args *g, int m, int rows, int k0, int kc,
                               uint32_t *ap, int *ars, int *aps)
{
    if (g->a_rs == 1 && !g->a_rows) {
        const int ld = (rows + 15) / 16 * 16;
        *ars = 1, *aps = ld;
        for (int p = 0; 2 * p < kc; p++) {
            const float *c0 = g->A + m + (ptrdiff_t)(k0 + 2 * p) * g->a_ks;
            const float *c1 = 2 * p + 1 < kc ? c0 + g->a_ks : NULL;
            /* Columns apart by a row of A: the pairs ahead are fetched (a panel that
             * block_dpbf16 fetched ahead is in the cache already). */
            for (int q = 2 * p + 2 * PREFETCH_COLS; q < 2 * p + 2 * PREFETCH_COLS + 2 && q < kc;
                 q++)
                for (int r = 0; r < rows; r += 16)
                    _mm_prefetch((const char *)(g->A + m + (ptrdiff_t)(k0 + q) * g->a_ks + r),
                                 _MM_HINT_T0);
            pair_rows(c0, c1, rows, -0.0f, ap + (size_t)p * ld);
        }
        return;
    }
    const int lda = a_lda(kc);
    *ars = lda, *aps = 1;
    pack_a_rows(g, m, rows, k0, kc, ap, lda);
}

/* A's rows [m, m + rows), k in [k0, k0 + kc), as pair words, row by row: word (r, p) at
 * ap[r * lda + p]. */
TBF16 static void pack_a_rows(const brisk_gemm_args *g, int m, int rows, int k0, int kc,
                              uint32_t *ap, int lda)
{
    for (int r = 0; r < rows; r++) {
        const float *src = g->a_rows ? g->a_rows[m + r] + (ptrdiff_t)k0 * g->a_ks
                                     : g->A + (ptrdiff_t)(m + r) * g->a_rs +
                                           (ptrdiff_t)k0 * g->a_ks;
        uint32_t *d = ap + (size_t)r * lda;
        if (g->a_ks == 1) {
            /* Rows of weights come from memory, a KC-long piece of each: the rows ahead are
             * fetched while this one is packed. */
            if (r + PREFETCH_ROWS < rows) {
                const char *next = (const char *)(g->a_rows ? g->a_rows[m + r + PREFETCH_ROWS] +
                                                                  k0
                                                            : src + PREFETCH_ROWS * g->a_rs);
                for (int j = 0; j < kc; j += 16)
                    _mm_prefetch(next + 4 * j, _MM_HINT_T0);
            }
            pair_along(src, kc, d);
        } else {
            const ptrdiff_t ks = g->a_ks;
            for (int p = 0; 2 * p < kc; p++)
                d[p] = pair_word(src[2 * p * ks], 2 * p + 1 < kc ? src[(2 * p + 1) * ks] : -0.0f);
        }
    }
}

INLINEBF16 void micro_bf16(const brisk_gemm_args *g, const int mr, const int nv,
                           __mmask16 tail, int m, int n, int kc2, int init,
                           const uint32_t *ap, int ars, int aps, const uint32_t *bp, int ldp)
{
    __m512 acc[MR][4];
    acc512_init(g, acc, mr, nv, tail, m, n, init);
    const uint32_t *a = ap;
    for (int p = 0; p < kc2; p++, a += aps, bp += ldp) {
        __m512bh bv[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
            bv[v] = (__m512bh)_mm512_loadu_si512(bp + 16 * v);
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * ars]);
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }
    acc512_store(g, acc, mr, nv, tail, m, n);
}

#define MBF(R, V)                                                                          \
    TBF16 static void micro_bf16_##R##_##V(const brisk_gemm_args *g, __mmask16 tail, int m,  \
                                           int n, int kc2, int init, const uint32_t *ap,   \
                                           int ars, int aps, const uint32_t *bp, int ldp)  \
    {                                                                                      \
        micro_bf16(g, R, V, tail, m, n, kc2, init, ap, ars, aps, bp, ldp);                 \
    }
#define MBF_ROW(R) MBF(R, 1) MBF(R, 2) MBF(R, 3) MBF(R, 4)
MBF_ROW(1) MBF_ROW(2) MBF_ROW(3) MBF_ROW(4) MBF_ROW(5) MBF_ROW(6)

typedef void (*micro_bf16_fn)(const brisk_gemm_args *, __mmask16, int, int, int, int,
                              const uint32_t *, int, int, const uint32_t *, int);
#define MBF_REF(R) {micro_bf16_##R##_1, micro_bf16_##R##_2, micro_bf16_##R##_3, micro_bf16_##R##_4}
static const micro_bf16_fn micro_bf16_table[MR][4] = {MBF_REF(1), MBF_REF(2), MBF_REF(3),
                                                      MBF_REF(4), MBF_REF(5), MBF_REF(6)};

/* The A panel that block_dpbf16 packs next: rows [m, m + rows), k in [k0, k0 + kc). */
typedef struct a_panel {
    int m, rows, k0, kc, lpr; /* lpr: cache lines of a source row (or column) */
} a_panel;

/* Sets *nx to the panel after (k0, mc) in block_dpbf16's order (np_next: where the next panel
 * of B starts); 0 when there is none or A is read element by element (strided k), where
 * nothing is fetched ahead. */
static int next_a_panel(const brisk_gemm_args *g, int m0, int m1, int n1, int np_next, int k0,
                        int mc, a_panel *nx)
{
    if (g->a_ks != 1 && !(g->a_rs == 1 && !g->a_rows))
        return 0;
    if (mc + PACK_MB < m1)
        nx->m = mc + PACK_MB, nx->k0 = k0;
    else if (k0 + KC < g->K)
        nx->m = m0, nx->k0 = k0 + KC;
    else if (np_next < n1)
        nx->m = m0, nx->k0 = 0;
    else
        return 0;
    nx->rows = m1 - nx->m < PACK_MB ? m1 - nx->m : PACK_MB;
    nx->kc = g->K - nx->k0 < KC ? g->K - nx->k0 : KC;
    nx->lpr = g->a_ks == 1 ? (nx->kc + 15) / 16 : (nx->rows + 15) / 16;
    return nx->kc > 0;
}

/* Fetches slice i of `slices` of the next panel's source lines into the cache while the
 * kernel works on this one: read straight from memory by the packing, they would stall it
 * (A's columns are 4 KiB apart or more, where the hardware fetches nothing ahead). */
static inline void prefetch_a_slice(const brisk_gemm_args *g, const a_panel *nx, int i,
                                    int slices)
{
    const int outer = g->a_ks == 1 ? nx->rows : nx->kc;
    const long long lines = (long long)outer * nx->lpr;
    for (long long l = lines * i / slices, e = lines * (i + 1) / slices; l < e; l++) {
        const int o = (int)(l / nx->lpr), j = (int)(l % nx->lpr);
        const float *p =
            g->a_ks == 1 ? (g->a_rows ? g->a_rows[nx->m + o] : g->A + (ptrdiff_t)(nx->m + o) *
                                                                   g->a_rs) + nx->k0 + 16 * j
                         : g->A + nx->m + (ptrdiff_t)(nx->k0 + o) * g->a_ks + 16 * j;
        _mm_prefetch((const char *)p, _MM_HINT_T1);
    }
}

/* The block [m0, m1) x [n0, n1) of a BRISK_GEMM_BF16 product on vdpbf16ps, with panels from
 * buf (the thread's bf16 buffer). */
TBF16 static void block_dpbf16(const brisk_gemm_args *g, int m0, int m1, int n0, int n1,
                               uint32_t *buf)
{
    uint32_t *ap = buf, *own = buf + (size_t)PACK_MB * (KC / 2);
    const int ldp = g->b_packed ? packed_ld(g->N) : PACK_LD(PACK_NB);
    /* B packed whole: every column at once, so that each A panel is packed once. */
    const int nb = g->b_packed ? n1 - n0 : PACK_NB;
    for (int np = n0; np < n1; np += nb) {
        const int cols = n1 - np < nb ? n1 - np : nb;
        for (int k0 = 0; k0 < g->K || k0 == 0; k0 += KC) {
            const int kc = g->K - k0 < KC ? g->K - k0 : KC, kc2 = (kc + 1) / 2;
            const int init = k0 > 0 ? BRISK_GEMM_ACCUM : (int)g->init;
            const uint32_t *bp = own;
            if (g->b_packed) /* packed by the team: the panel's place in it */
                bp = (const uint32_t *)(const void *)g->b_packed + (size_t)(k0 / 2) * ldp + np;
            else
                pack_b_pairs(g, k0, kc, np, cols, own, ldp);
            for (int mc = m0; mc < m1; mc += PACK_MB) {
                const int rows = m1 - mc < PACK_MB ? m1 - mc : PACK_MB;
                int ars, aps;
                const uint32_t *pa = ap;
                a_panel nx;
                int ahead = 0;
                if (g->a_packed) { /* packed before: the panel's place in it */
                    ars = a_lda(kc), aps = 1;
                    pa = (const uint32_t *)(const void *)g->a_packed +
                         brisk__gemm_packed_a_at(g->M, k0) + (size_t)mc * (size_t)ars;
                } else {
                    pack_a_pairs(g, mc, rows, k0, kc, ap, &ars, &aps);
                    ahead = next_a_panel(g, m0, m1, n1, np + nb, k0, mc, &nx);
                }
                const int slices = (cols + 63) / 64 * ((rows + MR - 1) / MR);
                int slice = 0;
                for (int n = np; n < np + cols; n += 64) {
                    const int nw = np + cols - n < 64 ? np + cols - n : 64, nv = (nw + 15) / 16;
                    const __mmask16 tail = (__mmask16)(0xFFFFu >> (16 * nv - nw));
                    for (int m = mc; m < mc + rows; m += MR) {
                        const int mr = mc + rows - m < MR ? mc + rows - m : MR;
                        if (ahead)
                            prefetch_a_slice(g, &nx, slice++, slices);
                        micro_bf16_table[mr - 1][nv - 1](g, tail, m, n, kc2, init,
                                                         pa + (size_t)(m - mc) * ars, ars,
                                                         aps, bp + (n - np), ldp);
                    }
                }
            }
        }
    }
}

#endif /* BRISK_GEMM_X86 */

void brisk__gemm_pair_rows(const float *k0, const float *k1, int n, float *dst)
{
#if BRISK_GEMM_X86
    if (active_dpbf16 && k0 && dst)
        pair_rows(k0, k1, n, 0.0f, (uint32_t *)(void *)dst);
#else
    (void)k0, (void)k1, (void)n, (void)dst;
#endif
}

void brisk__gemm_pair_along(const float *x, int n, float *dst)
{
#if BRISK_GEMM_X86
    if (active_dpbf16 && x && dst)
        pair_along(x, n, (uint32_t *)(void *)dst);
#else
    (void)x, (void)n, (void)dst;
#endif
}

/* BRISK_GEMM_BF16: the operands rounded into panels, then the fp32 chain with subnormals
 * flushed. Splitting k into blocks and C into panels changes nothing (partial sums go
 * through C exactly), so the panel sizes are free: large ones from the thread's own buffer,
 * small ones on the stack when that cannot be had. */
static void block_bf16(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    block_fn inner = current_block();
    if (inner == block_portable)
        inner = block_portable_ftz;
#if BRISK_GEMM_X86
    if (active_dpbf16) {
        uint32_t *words = (uint32_t *)(void *)pack_buffer();
        if (words) {
            block_dpbf16(g, m0, m1, n0, n1, words);
            return;
        }
    }
    if (inner == block_avx2)
        inner = block_avx2_in_place;
    const unsigned csr = brisk__ftz_begin(1);
#endif
    float *buf = pack_buffer();
    if (buf) {
        const bf16_panels pp = {buf, PACK_MB, PACK_NB, KC};
        bf16_block(g, m0, m1, n0, n1, inner, &pp);
    } else {
        float small[64 * (MR + PACK_LD(16))];
        const bf16_panels pp = {small, MR, 16, 64};
        bf16_block(g, m0, m1, n0, n1, inner, &pp);
    }
#if BRISK_GEMM_X86
    brisk__ftz_end(1, csr);
#endif
}

size_t brisk_gemm_pack_b_floats(const brisk_gemm_args *g)
{
    current_block();
#if BRISK_GEMM_X86
    if (g && active_dpbf16 && g->precision == BRISK_GEMM_BF16 && g->K > 0 && g->N > 0)
        return (size_t)((g->K + 1) / 2) * (size_t)packed_ld(g->N);
#endif
    return 0;
}

size_t brisk_gemm_pack_a_floats(const brisk_gemm_args *g)
{
    current_block();
#if BRISK_GEMM_X86
    if (g && active_dpbf16 && g->precision == BRISK_GEMM_BF16 && g->M > 0 && g->K > 0)
        return brisk__gemm_packed_a_at(g->M, g->K);
#endif
    return 0;
}

void brisk_gemm_pack_a(const brisk_gemm_args *g, float *buf, int m0, int m1)
{
    if (!buf || !brisk_gemm_pack_a_floats(g))
        return;
    m0 = m0 < 0 ? 0 : m0;
    m1 = m1 > g->M ? g->M : m1;
#if BRISK_GEMM_X86
    for (int k0 = 0; k0 < g->K && m0 < m1; k0 += KC) {
        const int kc = g->K - k0 < KC ? g->K - k0 : KC, lda = a_lda(kc);
        pack_a_rows(g, m0, m1 - m0, k0, kc,
                    (uint32_t *)(void *)buf + brisk__gemm_packed_a_at(g->M, k0) +
                        (size_t)m0 * lda,
                    lda);
    }
#endif
}

int brisk_gemm_pack_b_units(const brisk_gemm_args *g)
{
    return brisk_gemm_pack_b_floats(g) ? (g->K + 1) / 2 : 0;
}

void brisk_gemm_pack_b(const brisk_gemm_args *g, float *buf, int u0, int u1)
{
    const int units = brisk_gemm_pack_b_units(g);
    if (!buf || units == 0)
        return;
    u0 = u0 < 0 ? 0 : u0;
    u1 = u1 > units ? units : u1;
#if BRISK_GEMM_X86
    if (u0 < u1) {
        const int ld = packed_ld(g->N), k0 = 2 * u0;
        const int kc = 2 * u1 > g->K ? g->K - k0 : 2 * (u1 - u0);
        pack_b_pairs(g, k0, kc, 0, g->N, (uint32_t *)(void *)buf + (size_t)u0 * ld, ld);
    }
#endif
}

void brisk_gemm_block(const brisk_gemm_args *g, int m0, int m1, int n0, int n1)
{
    if (m0 >= m1 || n0 >= n1)
        return;
    if (g->precision == BRISK_GEMM_BF16)
        block_bf16(g, m0, m1, n0, n1);
    else
        current_block()(g, m0, m1, n0, n1);
}

void brisk_gemm_split(int M, int N, int ith, int nth, int *m0, int *m1, int *n0, int *n1)
{
    *m0 = 0, *m1 = M, *n0 = 0, *n1 = N;
    if (nth <= 1)
        return;
    const int mu = (M + MR - 1) / MR; /* row units: whole register blocks */
    /* Rows, unless whole register blocks share them out unevenly (the busiest thread more
     * than 1/10 over an even share, as 18 and 14 of 32 rows) and there are columns enough to
     * give every thread its 64-wide blocks of all rows instead. */
    const int busiest = (mu + nth - 1) / nth * MR < M ? (mu + nth - 1) / nth * MR : M;
    const int uneven = 10LL * busiest * nth > 11LL * M && (N + 63) / 64 >= 4 * nth;
    if (mu >= nth && !uneven) {
        *m0 = (int)((long long)mu * ith / nth) * MR;
        *m1 = (int)((long long)mu * (ith + 1) / nth) * MR;
        if (*m1 > M)
            *m1 = M;
        return;
    }
    if (uneven) {
        const int nu = (N + 63) / 64;
        *n0 = (int)((long long)nu * ith / nth) * 64;
        *n1 = (int)((long long)nu * (ith + 1) / nth) * 64;
        if (*n1 > N)
            *n1 = N;
        return;
    }
    /* Too few rows: split columns in units of 64 (16 when that is not enough), and rows
     * between groups of threads when there are rows to spare. */
    const int cw = (N + 63) / 64 >= nth ? 64 : 16, nu = (N + cw - 1) / cw;
    int pm = mu < 1 ? 1 : mu, pn = nth / pm;
    if (pn > nu)
        pn = nu;
    if (pn < 1) {
        pm = nth;
        pn = 1;
    }
    if (ith >= pm * pn) {
        *m0 = *m1 = *n0 = *n1 = 0;
        return;
    }
    const int im = ith / pn, in = ith % pn;
    *m0 = (int)((long long)mu * im / pm) * MR;
    *m1 = (int)((long long)mu * (im + 1) / pm) * MR;
    if (*m1 > M)
        *m1 = M;
    *n0 = (int)((long long)nu * in / pn) * cw;
    *n1 = (int)((long long)nu * (in + 1) / pn) * cw;
    if (*n1 > N)
        *n1 = N;
}

void brisk_gemm(const brisk_gemm_args *g, int ith, int nth)
{
    BRISK_ASSERT(g && ith >= 0 && ith < nth && g->M >= 0 && g->N >= 0 && g->K >= 0);
    int m0, m1, n0, n1;
    brisk_gemm_split(g->M, g->N, ith, nth, &m0, &m1, &n0, &n1);
    brisk_gemm_block(g, m0, m1, n0, n1);
}

/* ---- Transposes ----------------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void transpose8x8(const float *src, size_t lds,
                                                         float *dst, size_t ldd)
{
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

__attribute__((target("avx2"))) static void transpose_avx2(const float *src, size_t lds,
                                                           float *dst, size_t ldd, int r0,
                                                           int r1, int c0, int c1)
{
    /* 32 x 32 tiles of 8 x 8 blocks keep both sides in L1; the ragged edges are scalar. */
    for (int i0 = r0; i0 < r1; i0 += 32)
        for (int j0 = c0; j0 < c1; j0 += 32) {
            const int i1 = i0 + 32 < r1 ? i0 + 32 : r1, j1 = j0 + 32 < c1 ? j0 + 32 : c1;
            int i = i0;
            for (; i + 8 <= i1; i += 8) {
                int j = j0;
                for (; j + 8 <= j1; j += 8)
                    transpose8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
                for (; j < j1; j++)
                    for (int k = i; k < i + 8; k++)
                        dst[j * ldd + k] = src[k * lds + j];
            }
            for (; i < i1; i++)
                for (int j = j0; j < j1; j++)
                    dst[j * ldd + i] = src[i * lds + j];
        }
}

/* 16 x 16 in registers: pairs, then quads within 128-bit lanes, then lanes. Every load and
 * store is a whole cache line when the rows are aligned, so even rows 4 KiB apart (which
 * share cache sets) need no reuse. */
#define INLINE512F static inline __attribute__((target("avx512f"), always_inline))

/* r[i] lane j becomes r[j] lane i. */
INLINE512F void transpose16_regs(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* u[i + c], lane q: column 4q + c of rows i..i+3 */
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        const __m512 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
}

__attribute__((target("avx512f"))) static void transpose16x16(const float *src, size_t lds,
                                                              float *dst, size_t ldd)
{
    __m512 r[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
    transpose16_regs(r);
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ldd, r[i]);
}

/* brisk__row_sums, 16 rows at a time: 16 x 16 blocks turned in registers, so that each lane
 * adds its row's columns in order (from -0, which leaves the first term as it is). */
__attribute__((target("avx512f"))) static long long row_sums_avx512(const float *x, size_t ld,
                                                                    int n, long long j0,
                                                                    long long j1, float *out)
{
    long long j = j0;
    for (; j + 16 <= j1; j += 16) {
        const float *r0 = x + (size_t)j * ld;
        __m512 acc = _mm512_set1_ps(-0.0f);
        for (int i = 0; i < n; i += 16) {
            const int w = n - i < 16 ? n - i : 16;
            const __mmask16 mask = (__mmask16)(0xFFFFu >> (16 - w));
            __m512 r[16];
            for (int q = 0; q < 16; q++)
                r[q] = _mm512_maskz_loadu_ps(mask, r0 + (size_t)q * ld + i);
            transpose16_regs(r);
            for (int c = 0; c < w; c++)
                acc = _mm512_add_ps(acc, r[c]);
        }
        _mm512_storeu_ps(out + j, acc);
    }
    return j;
}

__attribute__((target("avx512f"))) static void transpose_avx512(const float *src, size_t lds,
                                                               float *dst, size_t ldd, int r0,
                                                               int r1, int c0, int c1)
{
    int i = r0;
    for (; i + 16 <= r1; i += 16) {
        int j = c0;
        for (; j + 16 <= c1; j += 16)
            transpose16x16(src + i * lds + j, lds, dst + j * ldd + i, ldd);
        for (; j < c1; j++)
            for (int k = i; k < i + 16; k++)
                dst[j * ldd + k] = src[k * lds + j];
    }
    for (; i < r1; i++)
        for (int j = c0; j < c1; j++)
            dst[j * ldd + i] = src[i * lds + j];
}
#endif

#if BRISK_GEMM_X86
/* Pair words of B(k, c) = bt[c * ldbt + k] for pairs [u0, u1) and every column, 16 columns by
 * 16 pairs at a time: each column's 32 floats rounded and paired along its row of bt, then
 * the 16 x 16 words turned in registers. */
TBF16 static void pack_bt_pairs(const brisk_gemm_args *g, const float *bt, size_t ldbt,
                                const float *const *cols, uint32_t *bp, int ld, int u0, int u1)
{
    for (int p0 = u0; p0 < u1; p0 += 16) {
        const int k0 = 2 * p0, pn = u1 - p0 < 16 ? u1 - p0 : 16;
        const int kw = g->K - k0 < 2 * pn ? g->K - k0 : 2 * pn; /* k in [k0, k0 + kw) */
        const __mmask16 m0 = (__mmask16)(kw >= 16 ? 0xFFFFu : (1u << kw) - 1);
        const __mmask16 m1 = (__mmask16)(kw >= 32 ? 0xFFFFu : kw > 16 ? (1u << (kw - 16)) - 1
                                                                       : 0u);
        for (int c0 = 0; c0 < g->N; c0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                if (c0 + i >= g->N) {
                    r[i] = _mm512_setzero_ps();
                    continue;
                }
                const float *src = (cols ? cols[c0 + i] : bt + (size_t)(c0 + i) * ldbt) + k0;
                /* +0 past K: the pad of an odd K */
                r[i] = _mm512_castsi512_ps(pairs16(_mm512_maskz_loadu_ps(m0, src),
                                                   _mm512_maskz_loadu_ps(m1, src + 16)));
            }
            transpose16_regs(r);
            for (int q = 0; q < pn; q++)
                _mm512_store_si512(bp + (size_t)(p0 + q) * ld + c0, _mm512_castps_si512(r[q]));
        }
    }
}
#endif

#if BRISK_GEMM_X86
/* brisk__gemm_pair_turn (brisk/gemm_test.h). Each pair of rows (channels) is rounded and
 * paired along its 16 values first (pairs16: 8 words a row), then the 16 x 8 words are
 * turned by permutations: into vectors of 4 pairs by 4 rows, then 2 pairs by 8 rows, then
 * 1 pair by 16 rows. */
TBF16 static void pair_turn(const float *src, size_t lds, int rows, int cols, float *dst,
                            size_t ldd)
{
    /* s: pairs 4h .. 4h + 3 of rows 4j .. 4j + 3, word 4 p + row (from rows 2i, 2i + 1:
     * words 0-7 and 8-15 of r[i]); u: pairs 2q, 2q + 1 of rows 8k .. 8k + 7, word
     * 8 (pair % 2) + row. */
    static const int32_t s_at[2][16] = {
        {0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27},
        {4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31}};
    static const int32_t u_at[2][16] = {
        {0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23},
        {8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31}};
    const __mmask16 cm = (__mmask16)(cols >= 16 ? 0xFFFFu : (1u << cols) - 1);
    __m512i r[8], s[8], u[2][2][2];
    for (int i = 0; i < 8; i++) {
        const __m512 a = 2 * i < rows ? _mm512_maskz_loadu_ps(cm, src + (size_t)(2 * i) * lds)
                                      : _mm512_setzero_ps();
        const __m512 b = 2 * i + 1 < rows
                             ? _mm512_maskz_loadu_ps(cm, src + (size_t)(2 * i + 1) * lds)
                             : _mm512_setzero_ps();
        r[i] = pairs16(a, b); /* +0 past cols: an odd count's pad */
    }
    for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++)
            s[2 * j + h] = _mm512_permutex2var_epi32(r[2 * j], _mm512_loadu_si512(s_at[h]),
                                                     r[2 * j + 1]);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 2; k++)
            for (int q = 0; q < 2; q++)
                u[h][k][q] = _mm512_permutex2var_epi32(s[4 * k + h], _mm512_loadu_si512(u_at[q]),
                                                       s[4 * k + 2 + h]);
    const __mmask16 mask = (__mmask16)(rows >= 16 ? 0xFFFFu : (1u << rows) - 1);
    for (int p = 0; 2 * p < cols; p++) {
        const int h = p / 4, q = p % 4 / 2;
        const __m512i w = p % 2 ? _mm512_shuffle_i64x2(u[h][0][q], u[h][1][q], 0xEE)
                                : _mm512_shuffle_i64x2(u[h][0][q], u[h][1][q], 0x44);
        _mm512_mask_storeu_epi32(dst + (size_t)p * ldd, mask, w);
    }
}
#endif

void brisk__gemm_pair_turn(const float *src, size_t lds, int rows, int cols, float *dst,
                           size_t ldd)
{
#if BRISK_GEMM_X86
    if (active_dpbf16 && src && dst && rows > 0 && rows <= 16 && cols > 0 && cols <= 16)
        pair_turn(src, lds, rows, cols, dst, ldd);
#else
    (void)src, (void)lds, (void)rows, (void)cols, (void)dst, (void)ldd;
#endif
}

void brisk__gemm_pack_bt(const brisk_gemm_args *g, const float *bt, size_t ldbt,
                         const float *const *cols, float *buf, int u0, int u1)
{
    const int units = brisk_gemm_pack_b_units(g);
    if (!buf || (!bt && !cols) || units == 0)
        return;
    u0 = u0 < 0 ? 0 : u0;
    u1 = u1 > units ? units : u1;
#if BRISK_GEMM_X86
    if (u0 < u1)
        pack_bt_pairs(g, bt, ldbt, cols, (uint32_t *)(void *)buf, packed_ld(g->N), u0, u1);
#endif
}

void brisk__row_sums(const float *x, size_t ld, int n, long long j0, long long j1, float *out)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f"))
        j0 = row_sums_avx512(x, ld, n, j0, j1, out);
#endif
    brisk__row_sums_scalar(x, ld, n, j0, j1, out);
}

void brisk__transpose(const float *src, size_t lds, float *dst, size_t ldd, int r0, int r1,
                      int c0, int c1)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) {
        transpose_avx512(src, lds, dst, ldd, r0, r1, c0, c1);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        transpose_avx2(src, lds, dst, ldd, r0, r1, c0, c1);
        return;
    }
#endif
    for (int i = r0; i < r1; i++)
        for (int j = c0; j < c1; j++)
            dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}
