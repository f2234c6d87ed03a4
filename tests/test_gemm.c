/* brisk_gemm: every code path (AVX-512, AVX2 + FMA, portable) and every split of the output
 * between 1..16 threads gives exactly the bits of a plain loop that computes each element as
 * one chain of fmaf in increasing k; and the result agrees with OpenBLAS's sgemm (an
 * independent implementation) to float rounding. In bfloat16 (BRISK_GEMM_BF16), every path
 * and split gives the bits of AVX512-BF16's vdpbf16ps as Intel's manual writes it, emulated
 * here lane by lane on pairs of bfloat16, subnormal products and starting values included;
 * where the CPU has the instruction, the instruction itself is checked against that model. */
#include "test_util.h"

#include "brisk/gemm.h"
#include "brisk/gemm_test.h"
#include "brisk/rng.h"

#include <cblas.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* avx512bf16 differs from avx512 in its bf16 products only: vdpbf16ps itself, against the
 * emulation on the fp32 kernels. */
static const char *const isas[] = {"avx512bf16", "avx512", "avx2", "portable"};
#define NISA ((int)(sizeof isas / sizeof *isas))

static void fill(float *p, size_t n, uint32_t sub)
{
    for (size_t i = 0; i < n; i++)
        p[i] = brisk_rng_normal(7, 11, sub, i);
}

/* The definition, written out: one fmaf chain per element from its initial value. */
static float chain_fp32(const brisk_gemm_args *g, float c, int m, int n)
{
    for (int k = 0; k < g->K; k++) {
        const float a = g->a_rows ? g->a_rows[m][k * g->a_ks] : g->A[m * g->a_rs + k * g->a_ks];
        const float b = g->b_rows ? g->b_rows[k][n] : g->B[k * g->ldb + n];
        c = fmaf(a, b, c);
    }
    return c;
}

/* bfloat16 as 16 bits: round to nearest even, NaN kept quiet, subnormal inputs to zero (what
 * vcvtne2ps2bf16 does), written independently of brisk_bf16. */
static uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7F800000u) == 0)
        return (uint16_t)((u & 0x80000000u) >> 16);
    if (isnan(x))
        return (uint16_t)((u >> 16) | 0x40u);
    const uint32_t low = u & 0xFFFFu, half = 0x8000u;
    uint32_t hi = u >> 16;
    if (low > half || (low == half && (hi & 1u)))
        hi++;
    return (uint16_t)hi;
}

static float from_bf16(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float daz_ftz(float x)
{
    return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}

/* One lane of vdpbf16ps, as the manual's pseudocode: dst += a[1] b[1]; dst += a[0] b[0],
 * each an fp32 fma reading subnormals (dst and the bfloat16 operands) as zero and flushing
 * subnormal results. */
static float dpbf16_lane(float dst, const uint16_t a[2], const uint16_t b[2])
{
    dst = daz_ftz(fmaf(daz_ftz(from_bf16(a[1])), daz_ftz(from_bf16(b[1])), daz_ftz(dst)));
    return daz_ftz(fmaf(daz_ftz(from_bf16(a[0])), daz_ftz(from_bf16(b[0])), dst));
}

/* The product a kernel on that instruction computes: pairs (k, k + 1) stored swapped (k in
 * the odd slot, which the instruction takes first), an odd K's last pair padded with -0 x +0
 * (adding -0 changes nothing, not even a -0). */
static float chain_bf16(const brisk_gemm_args *g, float c, int m, int n)
{
    if (g->K == 0)
        return c;
    for (int k = 0; k < g->K; k += 2) {
        uint16_t a[2] = {0x8000u, 0x8000u}, b[2] = {0, 0};
        for (int j = 0; j < 2 && k + j < g->K; j++) {
            const int kk = k + j;
            a[1 - j] = to_bf16(g->a_rows ? g->a_rows[m][kk * g->a_ks]
                                         : g->A[m * g->a_rs + kk * g->a_ks]);
            b[1 - j] = to_bf16(g->b_rows ? g->b_rows[kk][n] : g->B[kk * g->ldb + n]);
        }
        c = dpbf16_lane(c, a, b);
    }
    return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* One lane of the real instruction (all 16 lanes given the same operands). */
__attribute__((target("avx512f,avx512bf16"))) static float dpbf16_cpu(float dst, uint32_t a,
                                                                    uint32_t b)
{
    const __m512 r = _mm512_dpbf16_ps(_mm512_set1_ps(dst), (__m512bh)_mm512_set1_epi32((int)a),
                                      (__m512bh)_mm512_set1_epi32((int)b));
    return _mm512_cvtss_f32(r);
}
#endif

/* The CPU's vdpbf16ps is the model above: every bit pattern class (normal, subnormal, zero,
 * infinite; NaN left out, whose payloads the manual does not pin down), products that cancel
 * and products that underflow. Skipped where the CPU does not have the instruction. */
static void test_vdpbf16ps_is_the_model(void **state)
{
    (void)state;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16")) {
        print_message("this CPU has no AVX512-BF16: the instruction is not checked here\n");
        skip();
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    long checked = 0;
    for (long i = 0; i < 2000000; i++) {
        uint16_t h[4];
        float dst;
        for (int j = 0; j < 5; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* Half the draws near 1 (sums that cancel), half anywhere (underflow, inf). */
            const uint16_t r = (uint16_t)(x >> 20);
            const uint16_t near1 =
                (uint16_t)((r & 0x807Fu) | (0x3F00u + ((r >> 7) & 0x3u) * 0x80u));
            if (j < 4)
                h[j] = i % 2 ? near1 : r;
            else {
                uint32_t u = (uint32_t)(x >> 32);
                if (i % 2)
                    u = (u & 0x807FFFFFu) | ((120u + (u >> 23) % 12u) << 23);
                memcpy(&dst, &u, sizeof dst);
            }
        }
        if (isnan(dst) || isnan(from_bf16(h[0])) || isnan(from_bf16(h[1])) ||
            isnan(from_bf16(h[2])) || isnan(from_bf16(h[3])))
            continue;
        const uint16_t a[2] = {h[0], h[1]}, b[2] = {h[2], h[3]};
        const float want = dpbf16_lane(dst, a, b);
        const float got = dpbf16_cpu(dst, (uint32_t)h[0] | (uint32_t)h[1] << 16,
                                     (uint32_t)h[2] | (uint32_t)h[3] << 16);
        if (isnan(want) && isnan(got))
            continue; /* inf - inf: a NaN either way */
        if (memcmp(&got, &want, sizeof got)) {
            print_error("vdpbf16ps(%a; %a %a; %a %a) = %a, the model says %a\n", (double)dst,
                        (double)from_bf16(a[0]), (double)from_bf16(a[1]),
                        (double)from_bf16(b[0]), (double)from_bf16(b[1]), (double)got,
                        (double)want);
            fail();
        }
        checked++;
    }
    print_message("vdpbf16ps agreed with the model on %ld operand sets\n", checked);
    assert_true(checked > 1000000);
#else
    print_message("not an x86-64 build: the instruction is not checked here\n");
    skip();
#endif
}

static void reference(const brisk_gemm_args *g, float *C)
{
    for (int m = 0; m < g->M; m++)
        for (int n = 0; n < g->N; n++) {
            float c = g->init == BRISK_GEMM_ACCUM     ? C[m * g->ldc + n]
                      : g->init == BRISK_GEMM_ROWBIAS ? g->bias[m]
                                                      : 0.0f;
            C[m * g->ldc + n] = g->precision == BRISK_GEMM_BF16 ? chain_bf16(g, c, m, n)
                                                                : chain_fp32(g, c, m, n);
        }
}

/* One product of the given shape with A stored row-wise (a_ks = 1) or column-wise (a_rs = 1),
 * and padded leading dimensions, checked for every ISA the CPU runs and every split. ind 1:
 * A's rows through a_rows, ind 2: B's rows through b_rows, in reverse order (A or B NULL, so
 * that a path that ignored the pointers would crash). */
/* g's C from 1, 3 and 5 calls of brisk_gemm, each starting from C0, equals want row by row
 * (`what`: how the operands were given). */
static void check_split_calls(const brisk_gemm_args *g, const float *C0, const float *want,
                              const char *isa, const char *what)
{
    const size_t ldc = (size_t)g->ldc;
    for (int nth = 1; nth <= 5; nth += 2) {
        memcpy(g->C, C0, sizeof(float) * (size_t)(g->M ? g->M : 1) * ldc);
        for (int ith = 0; ith < nth; ith++)
            brisk_gemm(g, ith, nth);
        for (int m = 0; m < g->M; m++)
            if (memcmp(&g->C[m * ldc], &want[m * ldc], sizeof(float) * (size_t)g->N)) {
                print_error("%s, %s, %d threads, M %d N %d K %d: row %d differs\n", isa, what,
                            nth, g->M, g->N, g->K, m);
                fail();
            }
    }
}

/* Products checked with B packed once (b_packed) and with A packed once (a_packed), on the
 * code paths that pack. */
static int packed_paths, packed_a_paths;

static int check_shape(int M, int N, int K, int a_cols, brisk_gemm_init init, uint32_t seed,
                       int ind, brisk_gemm_precision precision)
{
    const int lda = (a_cols ? M : K) + 3, ldb = N + 5, ldc = N + 2;
    float *A = malloc(sizeof(float) * (size_t)(a_cols ? K : M) * (size_t)lda + 4);
    float *B = malloc(sizeof(float) * (size_t)(K ? K : 1) * (size_t)ldb);
    float *C0 = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *want = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *got = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *bias = malloc(sizeof(float) * (size_t)(M ? M : 1));
    assert_true(A && B && C0 && want && got && bias);
    fill(A, (size_t)(a_cols ? K : M) * (size_t)lda, seed);
    fill(B, (size_t)(K ? K : 1) * (size_t)ldb, seed + 1);
    fill(C0, (size_t)(M ? M : 1) * (size_t)ldc, seed + 2);
    fill(bias, (size_t)(M ? M : 1), seed + 3);
    if (precision == BRISK_GEMM_BF16) {
        /* Some operands so small that their products are subnormal (flushed), some starting
         * values subnormal (read as zero), some sums that cancel to near FLT_MIN. */
        for (size_t i = 0; i < (size_t)(a_cols ? K : M) * (size_t)lda; i += 7)
            A[i] *= 0x1p-66f;
        for (size_t i = 0; i < (size_t)(K ? K : 1) * (size_t)ldb; i += 5)
            B[i] *= 0x1p-62f;
        for (size_t i = 0; i < (size_t)(M ? M : 1) * (size_t)ldc; i += 3)
            C0[i] *= i % 2 ? 0x1p-128f : 0x1p-124f;
        for (size_t i = 0; i < (size_t)(M ? M : 1); i += 4)
            bias[i] *= 0x1p-130f;
    }
    brisk_gemm_args g = {.M = M, .N = N, .K = K, .A = A, .a_rs = a_cols ? 1 : lda,
                         .a_ks = a_cols ? lda : 1, .B = B, .ldb = ldb, .C = want, .ldc = ldc,
                         .bias = bias, .init = init, .precision = precision};
    const float **rows = malloc(sizeof *rows * (size_t)(M > K ? M + 1 : K + 1));
    assert_non_null(rows);
    if (ind == 1) {
        for (int m = 0; m < M; m++)
            rows[m] = A + (ptrdiff_t)(M - 1 - m) * g.a_rs;
        g.a_rows = rows;
        g.A = NULL;
    } else if (ind == 2) {
        for (int k = 0; k < K; k++)
            rows[k] = B + (ptrdiff_t)(K - 1 - k) * ldb;
        g.b_rows = rows;
        g.B = NULL;
    }
    memcpy(want, C0, sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    reference(&g, want);
    g.C = got;
    int paths = 0;
    for (int i = 0; i < NISA; i++) {
        if (brisk_gemm_set_isa(isas[i]) < 0)
            continue;
        paths++;
        for (int nth = 1; nth <= 16; nth++) {
            /* Outside the product the padding must stay as it was; inside, every element is
             * computed once: with ACCUM a second visit would add the product twice. */
            memcpy(got, C0, sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
            for (int ith = nth - 1; ith >= 0; ith--)
                brisk_gemm(&g, ith, nth);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < ldc; n++) {
                    const float w = n < N ? want[m * ldc + n] : C0[m * ldc + n];
                    if (memcmp(&got[m * ldc + n], &w, sizeof w)) {
                        print_error("%s%s, %d threads, M %d N %d K %d %s init %d rows %d: "
                                    "C[%d][%d] = %.9g, expected %.9g\n", isas[i],
                                    precision == BRISK_GEMM_BF16 ? " bf16" : "", nth, M, N,
                                    K, a_cols ? "A by columns" : "A by rows", init, ind, m, n,
                                    (double)got[m * ldc + n], (double)w);
                        fail();
                    }
                }
        }
        /* B packed once, in three parts packed in reverse order, then shared by every call
         * (b_packed): the same bits, and B itself not read (it is overwritten meanwhile). */
        const size_t floats = brisk_gemm_pack_b_floats(&g);
        if (floats) {
            const int units = brisk_gemm_pack_b_units(&g);
            float *packed = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
            float *saved = malloc(sizeof(float) * (size_t)(K ? K : 1) * (size_t)ldb);
            assert_true(packed && saved && units == (K + 1) / 2);
            for (int part = 2; part >= 0; part--)
                brisk_gemm_pack_b(&g, packed, units * part / 3, units * (part + 1) / 3);
            memcpy(saved, B, sizeof(float) * (size_t)(K ? K : 1) * (size_t)ldb);
            for (size_t j = 0; j < (size_t)(K ? K : 1) * (size_t)ldb; j++)
                B[j] = 1e30f;
            g.b_packed = packed;
            check_split_calls(&g, C0, want, isas[i], "B packed once");
            /* A thread short of memory for its panels (the emulation on small panels), and B
             * only packed (as a dense layer's weight gradient packs it from x's transpose):
             * the values come out of the packed words. */
            const float *b_was = g.B, *const *rows_were = g.b_rows;
            g.B = NULL;
            g.b_rows = NULL;
            brisk__gemm_set_packing(0);
            memcpy(got, C0, sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
            brisk_gemm(&g, 0, 1);
            brisk__gemm_set_packing(1);
            for (int m = 0; m < M; m++)
                if (memcmp(&got[m * ldc], &want[m * ldc], sizeof(float) * (size_t)N)) {
                    print_error("%s, B only packed, no panels, M %d N %d K %d: row %d "
                                "differs\n", isas[i], M, N, K, m);
                    fail();
                }
            g.B = b_was;
            g.b_rows = rows_were;
            g.b_packed = NULL;
            memcpy(B, saved, sizeof(float) * (size_t)(K ? K : 1) * (size_t)ldb);
            free(saved);
            free(packed);
            packed_paths++;
        }
        /* A packed once (a_packed), in three parts of rows packed in reverse order: the same
         * bits, and A itself not read (overwritten meanwhile). */
        const size_t a_floats = brisk_gemm_pack_a_floats(&g);
        if (a_floats) {
            const size_t a_len = (size_t)(a_cols ? K : M) * (size_t)lda;
            float *packed = aligned_alloc(64, (a_floats * sizeof(float) + 63) / 64 * 64);
            float *saved = malloc(sizeof(float) * a_len);
            assert_true(packed && saved);
            for (int part = 2; part >= 0; part--)
                brisk_gemm_pack_a(&g, packed, M * part / 3, M * (part + 1) / 3);
            memcpy(saved, A, sizeof(float) * a_len);
            for (size_t j = 0; j < a_len; j++)
                A[j] = 1e30f;
            g.a_packed = packed;
            check_split_calls(&g, C0, want, isas[i],
                              a_cols ? "A packed once, A by columns" : "A packed once, A by rows");
            /* A thread short of memory for its panels, and A only packed (as a Winograd
             * weight gradient packs its transformed input): its values from the words. */
            const float *a_was = g.A, *const *a_rows_were = g.a_rows;
            g.A = NULL;
            g.a_rows = NULL;
            brisk__gemm_set_packing(0);
            check_split_calls(&g, C0, want, isas[i], "A only packed, no panels");
            brisk__gemm_set_packing(1);
            g.A = a_was;
            g.a_rows = a_rows_were;
            g.a_packed = NULL;
            memcpy(A, saved, sizeof(float) * a_len);
            free(saved);
            free(packed);
            packed_a_paths++;
        }
    }
    brisk_gemm_set_isa(NULL);
    free(rows);
    free(A);
    free(B);
    free(C0);
    free(want);
    free(got);
    free(bias);
    return paths;
}

static void test_every_path_and_split_is_the_fma_chain(void **state)
{
    (void)state;
    /* Edges of the 6-row blocks and of 16/8-wide vectors, one block of K, several. */
    const int Ms[] = {1, 5, 6, 7, 13, 40};
    const int Ns[] = {1, 8, 15, 16, 17, 64, 70, 129};
    const int Ks[] = {0, 1, 3, 256, 300};
    int paths = 0;
    /* With B packed into panels (the default) and read where it is (a thread short of
     * memory for its panel). */
    for (int packing = 1; packing >= 0; packing--) {
        brisk__gemm_set_packing(packing);
        uint32_t seed = 1;
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++, seed += 4)
                    for (int ind = 0; ind < 3; ind++)
                        paths = check_shape(Ms[a], Ns[b], Ks[c], (int)(seed & 4) != 0,
                                            (brisk_gemm_init)(seed % 3), seed, ind,
                                            BRISK_GEMM_FP32);
    }
    brisk__gemm_set_packing(1);
    print_message("checked %d code paths (this CPU: %s is the default)\n", paths,
                  brisk_gemm_isa());
    assert_true(paths >= 1);
}

static void test_bf16_every_path_and_split_is_vdpbf16ps(void **state)
{
    (void)state;
    /* As above, plus odd K (a padded last pair), K past the 256 of a panel, and N past the
     * 256 columns of a packed panel of B. */
    const int Ms[] = {1, 6, 7, 40, 100};
    const int Ns[] = {1, 16, 17, 70, 300};
    const int Ks[] = {0, 1, 2, 3, 255, 300, 513};
    uint32_t seed = 1000;
    int paths = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++, seed += 4)
                paths = check_shape(Ms[a], Ns[b], Ks[c], (int)(seed & 4) != 0,
                                    (brisk_gemm_init)(seed % 3), seed, (int)(seed / 4 % 3),
                                    BRISK_GEMM_BF16);
    assert_true(paths >= 1);
    print_message("%d bf16 products checked with B packed once, %d with A\n", packed_paths,
                  packed_a_paths);
    if (!strcmp(brisk_gemm_isa(), "avx512bf16"))
        assert_true(packed_paths > 0 && packed_a_paths > 0);
}

/* A subnormal starting value counts as zero: 2^-127 + FLT_MIN would be 1.5 FLT_MIN, but is
 * FLT_MIN; and a sum that lands below FLT_MIN is flushed, even from a normal start. */
static void test_bf16_subnormal_start(void **state)
{
    (void)state;
    const float a[1] = {1.0f}, b[1] = {FLT_MIN};
    for (int i = 0; i < NISA; i++) {
        if (brisk_gemm_set_isa(isas[i]) < 0)
            continue;
        for (int init = BRISK_GEMM_ACCUM; init <= BRISK_GEMM_ROWBIAS; init++) {
            float c = 0x1p-127f;
            const float bias = 0x1p-127f;
            brisk_gemm_args g = {.M = 1, .N = 1, .K = 1, .A = a, .a_rs = 1, .a_ks = 1,
                                 .B = b, .ldb = 1, .C = &c, .ldc = 1, .bias = &bias,
                                 .init = (brisk_gemm_init)init, .precision = BRISK_GEMM_BF16};
            brisk_gemm(&g, 0, 1);
            assert_true(c == FLT_MIN);
            /* FLT_MIN + 2^-64 x -2^-64 = 0.75 FLT_MIN, flushed to +0. */
            c = FLT_MIN;
            g.init = BRISK_GEMM_ACCUM;
            g.A = (const float[]){0x1p-64f};
            g.B = (const float[]){-0x1p-64f};
            brisk_gemm(&g, 0, 1);
            assert_true(c == 0.0f && !signbit(c));
        }
    }
    brisk_gemm_set_isa(NULL);
}

static uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    const uint32_t cases[][2] = {
        {0x3F800000u, 0x3F800000u}, /* 1 */
        {0x3F808000u, 0x3F800000u}, /* a tie, to the even 1 */
        {0x3F818000u, 0x3F820000u}, /* a tie, to the even above */
        {0x3F808001u, 0x3F810000u}, /* past the tie */
        {0xBF807FFFu, 0xBF800000u}, /* below the tie, negative */
        {0x00000001u, 0x00000000u}, /* subnormals to zero of their sign */
        {0x807FFFFFu, 0x80000000u},
        {0x00800000u, 0x00800000u}, /* FLT_MIN stays */
        {0x7F7FFFFFu, 0x7F800000u}, /* FLT_MAX rounds to infinity */
        {0x7F7F7FFFu, 0x7F7F0000u},
        {0xFF800000u, 0xFF800000u}, /* -infinity */
        {0x7F800001u, 0x7FC00000u}, /* a signalling NaN comes back quiet, not infinity */
        {0x00000000u, 0x00000000u}, {0x80000000u, 0x80000000u}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const uint32_t got = bits_of(brisk_bf16(float_of(cases[i][0])));
        if (got != cases[i][1]) {
            print_error("brisk_bf16(0x%08X) = 0x%08X, expected 0x%08X\n", cases[i][0], got,
                        cases[i][1]);
            fail();
        }
        assert_int_equal(got, (uint32_t)to_bf16(float_of(cases[i][0])) << 16);
    }
    /* Every value one ulp either side of each bfloat16 boundary in [1, 2). */
    for (uint32_t u = 0x3F800000u; u < 0x40000000u; u += 0x8000u)
        for (int d = -1; d <= 1; d++)
            assert_int_equal(bits_of(brisk_bf16(float_of(u + (uint32_t)d))),
                             (uint32_t)to_bf16(float_of(u + (uint32_t)d)) << 16);
}

static void test_split_covers_once(void **state)
{
    (void)state;
    const int shapes[][2] = {{1, 1}, {10, 64}, {10, 1024}, {1024, 64}, {7, 3}, {100, 100},
                             {6, 2000}, {0, 5}, {5, 0}, {32, 3584}, {62, 640}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], N = shapes[s][1];
        for (int nth = 1; nth <= 33; nth++) {
            int *seen = calloc((size_t)(M * N + 1), sizeof *seen);
            assert_non_null(seen);
            for (int ith = 0; ith < nth; ith++) {
                int m0, m1, n0, n1;
                brisk_gemm_split(M, N, ith, nth, &m0, &m1, &n0, &n1);
                assert_true(m0 >= 0 && n0 >= 0 && (m0 >= m1 || m1 <= M) &&
                            (n0 >= n1 || n1 <= N));
                for (int m = m0; m < m1; m++)
                    for (int n = n0; n < n1; n++)
                        seen[m * N + n]++;
            }
            for (int i = 0; i < M * N; i++)
                if (seen[i] != 1) {
                    print_error("(%d, %d) split %d ways: element %d computed %d times\n", M, N,
                                nth, i, seen[i]);
                    fail();
                }
            free(seen);
        }
    }
    /* Whole 6-row blocks would give 2 threads 18 and 14 of 32 rows; columns even it out. */
    for (int ith = 0; ith < 2; ith++) {
        int m0, m1, n0, n1;
        brisk_gemm_split(32, 3584, ith, 2, &m0, &m1, &n0, &n1);
        assert_int_equal((m1 - m0) * (n1 - n0), 32 * 1792);
    }
}

static void test_agrees_with_openblas(void **state)
{
    (void)state;
    /* The shapes of 784-1024-1024-10's layers on 64 samples: forward, weight gradient,
     * input gradient. */
    const int out = 1024, in = 784, n = 64;
    float *W = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * in * n);
    float *z = malloc(sizeof(float) * out * n), *zr = malloc(sizeof(float) * out * n);
    assert_true(W && x && z && zr);
    fill(W, (size_t)out * in, 21);
    fill(x, (size_t)in * n, 22);
    /* z (out, n) = W (out, in) x (in, n) */
    const brisk_gemm_args g = {.M = out, .N = n, .K = in, .A = W, .a_rs = in, .a_ks = 1,
                               .B = x, .ldb = n, .C = z, .ldc = n, .init = BRISK_GEMM_ZERO};
    brisk_gemm(&g, 0, 1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, n, in, 1.0f, W, in, x, n, 0.0f,
                zr, n);
    double diff = 0, ref = 0;
    for (int i = 0; i < out * n; i++) {
        diff += ((double)z[i] - zr[i]) * ((double)z[i] - zr[i]);
        ref += (double)zr[i] * zr[i];
    }
    print_message("relative difference to OpenBLAS: %.3g\n", sqrt(diff / ref));
    assert_true(ref > 0 && sqrt(diff / ref) < 1e-5);
    free(W);
    free(x);
    free(z);
    free(zr);
}

/* The packing calls take absurd arguments without harm: NULL products and buffers, units out
 * of range (clamped), fp32 and K = 0 products (nothing to pack). */
static void test_pack_b_bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(brisk_gemm_pack_b_floats(NULL), 0);
    assert_int_equal(brisk_gemm_pack_b_units(NULL), 0);
    brisk_gemm_pack_b(NULL, NULL, 0, 1);
    float B[4 * 5] = {0}, buf[64];
    brisk_gemm_args g = {.M = 2, .N = 5, .K = 4, .B = B, .ldb = 5};
    assert_int_equal(brisk_gemm_pack_b_floats(&g), 0); /* fp32 packs nothing */
    brisk_gemm_pack_b(&g, buf, 0, 2);
    g.precision = BRISK_GEMM_BF16;
    g.K = 0;
    assert_int_equal(brisk_gemm_pack_b_floats(&g), 0);
    g.K = 4;
    brisk_gemm_pack_b(&g, NULL, 0, 2);
    const size_t floats = brisk_gemm_pack_b_floats(&g);
    if (floats) { /* a path that packs: units beyond [0, units) are clamped */
        float *packed = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        assert_non_null(packed);
        assert_int_equal(brisk_gemm_pack_b_units(&g), 2);
        brisk_gemm_pack_b(&g, packed, -5, 100);
        brisk_gemm_pack_b(&g, packed, 2, 1);
        free(packed);
    }
    /* The same for A: NULL, fp32, no rows or no k pack nothing; rows outside [0, M) are
     * clamped (the words equal those of rows [0, M)); an empty range writes nothing. */
    assert_int_equal(brisk_gemm_pack_a_floats(NULL), 0);
    brisk_gemm_pack_a(NULL, NULL, 0, 1);
    float A[3 * 5];
    for (int i = 0; i < 15; i++)
        A[i] = 0.25f * (float)i - 1.0f;
    brisk_gemm_args ga = {.M = 3, .N = 2, .K = 5, .A = A, .a_rs = 5, .a_ks = 1};
    assert_int_equal(brisk_gemm_pack_a_floats(&ga), 0); /* fp32 packs nothing */
    brisk_gemm_pack_a(&ga, buf, 0, 3);
    ga.precision = BRISK_GEMM_BF16;
    ga.M = -1;
    assert_int_equal(brisk_gemm_pack_a_floats(&ga), 0);
    ga.M = 3;
    ga.K = 0;
    assert_int_equal(brisk_gemm_pack_a_floats(&ga), 0);
    ga.K = 5;
    brisk_gemm_pack_a(&ga, NULL, 0, 3);
    const size_t a_floats = brisk_gemm_pack_a_floats(&ga);
    if (a_floats) {
        const size_t bytes = (a_floats * sizeof(float) + 63) / 64 * 64;
        float *whole = aligned_alloc(64, bytes), *clamped = aligned_alloc(64, bytes);
        assert_true(whole && clamped);
        memset(whole, 0, bytes);
        memset(clamped, 0, bytes);
        brisk_gemm_pack_a(&ga, whole, 0, 3);
        brisk_gemm_pack_a(&ga, clamped, -5, 100);
        assert_memory_equal(whole, clamped, bytes);
        brisk_gemm_pack_a(&ga, clamped, 2, 1); /* nothing */
        brisk_gemm_pack_a(&ga, clamped, 3, 3);
        assert_memory_equal(whole, clamped, bytes);
        free(whole);
        free(clamped);
    }
}

/* Odd bit patterns among normal values: zeros of both signs, subnormals, infinities, a NaN,
 * and values halfway between two bf16 values (ties to even either way). */
static void sprinkle(float *p, size_t n)
{
    const uint32_t odd[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F800000u,
                            0xFF800000u, 0x7FC12345u, 0x3F808000u, 0x3F818000u, 0xBF7F8000u};
    for (size_t i = 0; i < n; i += 7)
        memcpy(&p[i], &odd[i / 7 % (sizeof odd / sizeof *odd)], sizeof *p);
}

/* brisk__gemm_pack_bt gives brisk_gemm_pack_b's words from B's transpose, for any split of
 * the units: odd K (the +0 pad), N not a multiple of 16, ranges not multiples of 16. */
static void test_pack_bt_is_pack_b(void **state)
{
    (void)state;
    const int shapes[][2] = {{1, 1}, {2, 16}, {31, 17}, {32, 33}, {33, 64}, {64, 1}, {257, 50},
                             {100, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int K = shapes[s][0], N = shapes[s][1], ldbt = K + 3;
        float *B = malloc(sizeof(float) * (size_t)K * N);
        float *bt = malloc(sizeof(float) * (size_t)N * ldbt);
        assert_true(B && bt);
        fill(B, (size_t)K * N, 40 + (uint32_t)s);
        sprinkle(B, (size_t)K * N);
        for (int k = 0; k < K; k++)
            for (int c = 0; c < N; c++)
                bt[(size_t)c * ldbt + k] = B[(size_t)k * N + c];
        for (int c = 0; c < N; c++) /* padding past K in each row of bt: never read */
            for (int k = K; k < ldbt; k++)
                bt[(size_t)c * ldbt + k] = NAN;
        const float *colp[130];
        for (int c = 0; c < N; c++)
            colp[c] = bt + (size_t)c * ldbt;
        const brisk_gemm_args g = {.M = 1, .N = N, .K = K, .B = B, .ldb = N,
                                   .precision = BRISK_GEMM_BF16};
        const size_t floats = brisk_gemm_pack_b_floats(&g);
        if (!floats) {
            print_message("skipped: this CPU's products do not pack B (no AVX512-BF16)\n");
            free(B);
            free(bt);
            return;
        }
        const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        float *want = aligned_alloc(64, bytes), *got = aligned_alloc(64, bytes);
        assert_true(want && got);
        memset(want, 0xAB, bytes);
        brisk_gemm_pack_b(&g, want, 0, brisk_gemm_pack_b_units(&g));
        const int units = brisk_gemm_pack_b_units(&g), steps[] = {1, 3, 16, 17, 1000};
        for (size_t st = 0; st < sizeof steps / sizeof *steps; st++) {
            memset(got, 0xAB, bytes);
            brisk_gemm_args gt = g;
            gt.B = NULL;
            for (int u = 0; u < units; u += steps[st]) /* odd steps: through pointers */
                brisk__gemm_pack_bt(&gt, steps[st] % 2 ? NULL : bt, (size_t)ldbt,
                                    steps[st] % 2 ? colp : NULL, got, u, u + steps[st]);
            /* Every word of every packed row up to N rounded to 16 (zeros past N). */
            const int ld = (int)(floats / (size_t)units), cols = (N + 15) / 16 * 16;
            for (int u = 0; u < units; u++)
                if (memcmp(want + (size_t)u * ld, got + (size_t)u * ld,
                           (size_t)cols * sizeof(float))) {
                    print_error("K %d, N %d, units %d at a time: packed row %d differs\n", K, N,
                                steps[st], u);
                    fail();
                }
        }
        free(want);
        free(got);
        free(B);
        free(bt);
    }
}

/* One pair word as the packs make it: k's value rounded (brisk_bf16) in the high half, k + 1's
 * in the low. */
static uint32_t want_word(float k0, float k1)
{
    return bits_of(brisk_bf16(k0)) | bits_of(brisk_bf16(k1)) >> 16;
}

/* The packs round every operand as brisk_bf16 does (test_bf16_rounding checks brisk_bf16
 * itself): B packed by rows (brisk_gemm_pack_b) and A by rows (brisk_gemm_pack_a), over the
 * odd values of sprinkle and some 16 million bit patterns spread over all 2^32; odd K, so
 * that the pads (+0 in B, -0 in A) show too. The callers' own packing, a row at a time
 * (brisk__gemm_pair_rows, brisk__gemm_pair_along), gives the same words. */
static void test_packs_round_as_bf16(void **state)
{
    (void)state;
    enum { K = 63, N = 4096, ROUNDS = 64 };
    float *x = malloc(sizeof(float) * K * N);
    assert_non_null(x);
    const brisk_gemm_args gb = {.M = 1, .N = N, .K = K, .B = x, .ldb = N,
                                .precision = BRISK_GEMM_BF16};
    const brisk_gemm_args ga = {.M = N, .N = 1, .K = K, .A = x, .a_rs = K, .a_ks = 1,
                                .precision = BRISK_GEMM_BF16};
    const size_t fb = brisk_gemm_pack_b_floats(&gb), fa = brisk_gemm_pack_a_floats(&ga);
    if (!fb || !fa) {
        print_message("skipped: this CPU's products do not pack (no AVX512-BF16)\n");
        free(x);
        return;
    }
    const int units = brisk_gemm_pack_b_units(&gb);
    const size_t ldb = fb / (size_t)units, lda = fa / N;
    uint32_t *pb = aligned_alloc(64, (fb * sizeof(float) + 63) / 64 * 64);
    uint32_t *pa = aligned_alloc(64, (fa * sizeof(float) + 63) / 64 * 64);
    uint32_t *row = malloc(sizeof(float) * N);
    assert_true(pb && pa && row);
    for (uint32_t round = 0; round < ROUNDS; round++) {
        for (uint32_t i = 0; i < K * N; i++) {
            const uint32_t u = (round * K * N + i) * 2654435761u; /* a stride coprime to 2^32 */
            memcpy(&x[i], &u, sizeof u);
        }
        if (round == 0)
            sprinkle(x, (size_t)K * N);
        brisk_gemm_pack_b(&gb, (float *)(void *)pb, 0, units);
        brisk_gemm_pack_a(&ga, (float *)(void *)pa, 0, N);
        if (round < 2) { /* the callers' packing, row by row, gives the same words */
            for (int p = 0; p < units; p++) {
                memset(row, 0xAB, sizeof(float) * N);
                brisk__gemm_pair_rows(x + 2 * p * N, 2 * p + 1 < K ? x + (2 * p + 1) * N : NULL,
                                      N, (float *)(void *)row);
                assert_memory_equal(row, pb + (size_t)p * ldb, sizeof(float) * N);
            }
            for (int r = 0; r < N; r++) {
                brisk__gemm_pair_along(x + r * K, K, (float *)(void *)row);
                assert_memory_equal(row, pa + (size_t)r * lda, sizeof(float) * (size_t)units);
            }
        }
        for (int p = 0; p < units; p++)
            for (int j = 0; j < N; j++) {
                const float lo = 2 * p + 1 < K ? x[(2 * p + 1) * N + j] : 0.0f;
                const uint32_t w = want_word(x[2 * p * N + j], lo);
                if (pb[(size_t)p * ldb + j] != w) {
                    print_error("B: pair %d, column %d: 0x%08X from 0x%08X, 0x%08X; expected "
                                "0x%08X\n", p, j, pb[(size_t)p * ldb + j],
                                bits_of(x[2 * p * N + j]), bits_of(lo), w);
                    fail();
                }
            }
        for (int r = 0; r < N; r++)
            for (int p = 0; p < units; p++) {
                const float hi = x[r * K + 2 * p];
                const float lo = 2 * p + 1 < K ? x[r * K + 2 * p + 1] : -0.0f;
                if (pa[(size_t)r * lda + p] != want_word(hi, lo)) {
                    print_error("A: row %d, pair %d: 0x%08X from 0x%08X, 0x%08X\n", r, p,
                                pa[(size_t)r * lda + p], bits_of(hi), bits_of(lo));
                    fail();
                }
            }
    }
    /* Short rows: zeros past n in B's row, up to 16 words; (-0, -0) past n in A's, up to 8
     * words; nothing written beyond. */
    const float five[5] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    memset(row, 0xAB, sizeof(float) * 32);
    brisk__gemm_pair_rows(five, NULL, 5, (float *)(void *)row);
    for (int j = 0; j < 32; j++)
        assert_int_equal(row[j], j < 5 ? want_word(five[j], 0.0f) : j < 16 ? 0u : 0xABABABABu);
    memset(row, 0xAB, sizeof(float) * 32);
    brisk__gemm_pair_along(five, 5, (float *)(void *)row);
    for (int p = 0; p < 32; p++)
        assert_int_equal(row[p], p < 2   ? want_word(five[2 * p], five[2 * p + 1])
                                 : p < 3 ? want_word(five[4], -0.0f)
                                 : p < 8 ? 0x80008000u
                                         : 0xABABABABu);
    free(row);
    free(pa);
    free(pb);
    free(x);
}

/* brisk__gemm_pair_turn gives brisk_gemm_pack_b's words of the B that its rows are the
 * columns of: any number of rows and columns up to 16 (odd: the +0 pad), odd values among
 * them; words past `rows` in each packed row left as they were. */
static void test_pair_turn_is_pack_b(void **state)
{
    (void)state;
    const int sizes[] = {1, 2, 5, 15, 16};
    enum { LDS = 19, LDD = 40 };
    float src[16 * LDS], B[16 * 16];
    _Alignas(64) uint32_t want[8 * 48], got[8 * LDD];
    for (size_t r = 0; r < sizeof sizes / sizeof *sizes; r++)
        for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
            const int rows = sizes[r], cols = sizes[c];
            fill(src, 16 * LDS, 90 + (uint32_t)(5 * r + c));
            sprinkle(src, 16 * LDS);
            for (int k = 0; k < cols; k++) /* B (cols, rows): B[k][i] = row i's value k */
                for (int i = 0; i < rows; i++)
                    B[k * rows + i] = src[i * LDS + k];
            const brisk_gemm_args g = {.M = 1, .N = rows, .K = cols, .B = B, .ldb = rows,
                                       .precision = BRISK_GEMM_BF16};
            const size_t floats = brisk_gemm_pack_b_floats(&g);
            if (!floats) {
                print_message("skipped: this CPU's products do not pack (no AVX512-BF16)\n");
                return;
            }
            const int units = brisk_gemm_pack_b_units(&g);
            const size_t ld = floats / (size_t)units;
            assert_true(floats <= sizeof want / sizeof *want);
            brisk_gemm_pack_b(&g, (float *)(void *)want, 0, units);
            memset(got, 0xAB, sizeof got);
            brisk__gemm_pair_turn(src, LDS, rows, cols, (float *)(void *)got, LDD);
            for (int p = 0; p < 8; p++)
                for (int i = 0; i < LDD; i++) {
                    const uint32_t w = p < units && i < rows ? want[(size_t)p * ld + i]
                                                             : 0xABABABABu;
                    if (got[p * LDD + i] != w) {
                        print_error("rows %d, cols %d: packed row %d, word %d: 0x%08X, expected "
                                    "0x%08X\n", rows, cols, p, i, got[p * LDD + i], w);
                        fail();
                    }
                }
        }
}

/* brisk__row_sums adds each row in column order, as the scalar loop does: the same bits for
 * any n and row range, -0 rows and NaNs included. */
static void test_row_sums_order(void **state)
{
    (void)state;
    const int ns[] = {1, 2, 15, 16, 17, 100, 256};
    const int R = 53, ld = 260;
    float *x = malloc(sizeof(float) * R * ld), *a = malloc(sizeof(float) * R);
    float *b = malloc(sizeof(float) * R);
    assert_true(x && a && b);
    fill(x, (size_t)R * ld, 60);
    for (int i = 0; i < R * ld; i++) /* large and small terms: the order shows in the bits */
        x[i] *= i % 3 ? 1.0f : 1e6f;
    sprinkle(x + 10 * ld, (size_t)ld);
    for (int k = 0; k < ld; k++) {
        x[3 * ld + k] = -0.0f;                 /* -0 + -0 + ... = -0 */
        x[4 * ld + k] = k % 2 ? -0.0f : 0.0f;  /* +0 first: +0 */
    }
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++)
        for (int j0 = 0; j0 < 3; j0++) {
            memset(a, 0x5A, sizeof(float) * R);
            memset(b, 0x5A, sizeof(float) * R);
            brisk__row_sums(x, (size_t)ld, ns[t], j0, R, a);
            brisk__row_sums_scalar(x, (size_t)ld, ns[t], j0, R, b);
            for (int j = 0; j < R; j++) /* the same bits, or both NaN: which NaN an x86 add
                                         * returns depends on its operands' order */
                if (memcmp(&a[j], &b[j], sizeof *a) && !(isnan(a[j]) && isnan(b[j]))) {
                    print_error("n %d, rows from %d: row %d sums to %a, not %a\n", ns[t], j0,
                                j, (double)a[j], (double)b[j]);
                    fail();
                }
        }
    brisk__row_sums(x, (size_t)ld, 256, 0, R, a);
    assert_true(signbit(a[3]) && a[3] == 0.0f);
    assert_true(!signbit(a[4]) && a[4] == 0.0f);
    float s = x[0];
    for (int k = 1; k < 256; k++)
        s += x[k];
    assert_memory_equal(&s, &a[0], sizeof s);
    free(x);
    free(a);
    free(b);
}

static void test_isa_names(void **state)
{
    (void)state;
    assert_int_equal(brisk_gemm_set_isa("sse9"), -1);
    assert_int_equal(brisk_gemm_set_isa("portable"), 0);
    assert_string_equal(brisk_gemm_isa(), "portable");
    assert_int_equal(brisk_gemm_set_isa(NULL), 0);
    const char *best = brisk_gemm_isa();
    assert_true(!strcmp(best, "avx512bf16") || !strcmp(best, "avx512") ||
                !strcmp(best, "avx2") || !strcmp(best, "portable"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_path_and_split_is_the_fma_chain),
        cmocka_unit_test(test_bf16_every_path_and_split_is_vdpbf16ps),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_vdpbf16ps_is_the_model),
        cmocka_unit_test(test_pack_b_bad_arguments),
        cmocka_unit_test(test_pack_bt_is_pack_b),
        cmocka_unit_test(test_packs_round_as_bf16),
        cmocka_unit_test(test_pair_turn_is_pack_b),
        cmocka_unit_test(test_row_sums_order),
        cmocka_unit_test(test_bf16_subnormal_start),
        cmocka_unit_test(test_split_covers_once),
        cmocka_unit_test(test_agrees_with_openblas),
        cmocka_unit_test(test_isa_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
