/* Private helpers of brisk_core. Not for other modules or programs. */
#ifndef BRISK_CORE_INTERNAL_H
#define BRISK_CORE_INTERNAL_H

#include "brisk/layer.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <xmmintrin.h> /* _mm_getcsr, _mm_setcsr */
#define BRISK_MXCSR 1
#else
#define BRISK_MXCSR 0
#endif

/* Hot elementwise loops are compiled for AVX-512, AVX2 and baseline x86-64, and the loader
 * picks the best the CPU has (GCC function multi-versioning), so one binary is both portable
 * and fast. The loops' arithmetic is the same in each version: vectorising an elementwise loop
 * does not change its results. The AVX2 version is x86-64-v3 (AVX2 with FMA): "avx2" alone
 * leaves out FMA, and every fmaf was then a call into libm (a CNN trained 4.8x slower on an
 * AVX2-only machine); fmaf is exact either way, so the results do not change. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define BRISK_MULTIVERSION __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define BRISK_MULTIVERSION
#endif

#define BRISK_ALIGN_FLOATS 16 /* 64 bytes */

/* The bits of a float's bfloat16 rounding (brisk_bf16), without branches so that a loop of
 * them vectorises. */
static inline uint32_t brisk__bf16_bits(uint32_t u)
{
    const uint32_t nearest = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    const uint32_t quiet = (u | 0x00400000u) & 0xFFFF0000u;
    const uint32_t r = (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : nearest;
    return (u & 0x7F800000u) == 0 ? (u & 0x80000000u) : r;
}

/* A subnormal to zero of its sign: BRISK_GEMM_BF16's fma rule, by hand where MXCSR does not
 * do it (brisk__ftz_begin). */
static inline float brisk__flush_subnormal(float x)
{
    return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}

/* On x86 (BRISK_MXCSR), with on: MXCSR's flush-to-zero (bit 15) and denormals-are-zero
 * (bit 6) for this thread, BRISK_GEMM_BF16's fma rule; returns what brisk__ftz_end(on, csr)
 * restores. Elsewhere nothing (the code flushes by hand). */
static inline unsigned brisk__ftz_begin(int on)
{
#if BRISK_MXCSR
    const unsigned csr = _mm_getcsr();
    if (on)
        _mm_setcsr(csr | 0x8040u);
    return csr;
#else
    (void)on;
    return 0;
#endif
}

static inline void brisk__ftz_end(int on, unsigned csr)
{
#if BRISK_MXCSR
    if (on)
        _mm_setcsr(csr);
#else
    (void)on, (void)csr;
#endif
}

static inline size_t brisk__align_up(size_t n)
{
    return (n + BRISK_ALIGN_FLOATS - 1) / BRISK_ALIGN_FLOATS * BRISK_ALIGN_FLOATS;
}

/* Index of s in names[0, n), or -1. */
static inline int brisk__name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

/* How many tiles a product's output is cut into for a team to claim (brisk_share_next):
 * several per member, so that a member whose core is shared with another program takes
 * fewer; one for a thread alone. Any cut gives the same bits (brisk/gemm.h). */
static inline int brisk__tiles(const brisk_team *t)
{
    return t && t->nth > 1 ? 4 * t->nth : 1;
}

/* A team computing the tiles of one product whose code path packs B (bf16 on avx512bf16):
 * B packed once, together, into buf (room for `room` floats; too little, or a thread alone:
 * nothing is done and each call packs its own), then shared through g->b_packed. Every
 * member calls it with the same arguments; it ends with a barrier when it packs. */
static inline void brisk__team_pack_b(brisk_gemm_args *g, const brisk_team *team, float *buf,
                                      size_t room)
{
    if (!team || team->nth < 2 || !buf)
        return;
    const size_t floats = brisk_gemm_pack_b_floats(g);
    if (!floats || floats > room)
        return;
    const int units = brisk_gemm_pack_b_units(g);
    brisk_share s;
    brisk_share_begin(&s, team, units, brisk_share_grain(team, units, 4, 8));
    for (long long u0, u1; brisk_share_next(&s, &u0, &u1);)
        brisk_gemm_pack_b(g, buf, (int)u0, (int)u1);
    brisk_team_barrier(team);
    g->b_packed = buf;
}

/* brisk__row_sums, brisk__gemm_pack_bt. */
#include "brisk/gemm_test.h"

/* brisk__team_pack_b's packing for a B given transposed (brisk__gemm_pack_bt: bt and ldbt, or
 * column pointers cols), by a team or a thread alone, into buf; then g->b_packed is buf and
 * g->B is NULL. For a product whose code path packs B (brisk_gemm_pack_b_floats > 0) and a
 * buf that holds it. Every member calls it with the same arguments; it ends with a barrier. */
static inline void brisk__team_pack_bt(brisk_gemm_args *g, const brisk_team *team,
                                       const float *bt, size_t ldbt, const float *const *cols,
                                       float *buf)
{
    const int units = brisk_gemm_pack_b_units(g);
    brisk_share s;
    brisk_share_begin(&s, team, units, brisk_share_grain(team, units, 4, 16));
    for (long long u0, u1; brisk_share_next(&s, &u0, &u1);)
        brisk__gemm_pack_bt(g, bt, ldbt, cols, buf, (int)u0, (int)u1);
    brisk_team_barrier(team);
    g->B = NULL;
    g->b_packed = buf;
}

/* dst[c * ldd + r] = src[r * lds + c] for r in [r0, r1), c in [c0, c1): a transposed copy of
 * a block (data movement only: every code path gives the same result). */
void brisk__transpose(const float *src, size_t lds, float *dst, size_t ldd, int r0, int r1,
                      int c0, int c1);

/* Row stride of a row-major activation copy: a multiple of 16 floats that is not a multiple
 * of 4 KiB, so that the rows a product walks down do not all land in the same cache sets. */
static inline int brisk__row_stride(int width)
{
    int ld = (width + 15) / 16 * 16;
    return ld % 1024 == 0 ? ld + 16 : ld;
}

/* A shape as messages and summaries show it: "(784)", "(1, 28, 28)", or for a sequence
 * "(T, C)" (positions, features, as PyTorch's (B, T, C) per sample). */
void brisk__shape_text(brisk_shape s, char *buf, size_t size);

/* e^x within 2 ulp for x in [-87.3, 88] (x below gives e^-87.3, about 1e-38; above, e^88;
 * NaN stays NaN): a polynomial plain enough to vectorise (Brisk builds with
 * -fno-trapping-math, which lets the clamps below become selects), so that softmaxes over
 * whole rows run at the speed of the loads. The same bits in every code path (Brisk builds
 * without floating-point contraction). */
static inline float brisk__expf(float x)
{
    const float lo = -87.3365f, hi = 88.0f, magic = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    const float t = xc * 1.44269504f + magic, nf = t - magic;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    const int32_t n = ti - 0x4B400000; /* round(xc / ln 2) */
    float r = xc - nf * 0.693145752f;
    r = r - nf * 1.42860677e-6f; /* ln 2 in two parts: r = xc - n ln 2 in [-0.35, 0.35] */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (n + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* A 1-D .npy array of token ids (whole numbers in 0..limit-1, any dtype) as int32: *ids the
 * caller's to free(), *n elements. Errors name the file and the element. */
int brisk__npy_read_ids(const char *path, int64_t limit, int32_t **ids, int64_t *n);

/* The built-in layer kinds (layers_*.c). */
extern const brisk_layer_ops brisk__dense_ops, brisk__conv_ops, brisk__maxpool_ops,
    brisk__avgpool_ops, brisk__gap_ops, brisk__flatten_ops, brisk__relu_ops,
    brisk__leaky_relu_ops, brisk__gelu_ops, brisk__tanh_ops, brisk__sigmoid_ops,
    brisk__dropout_ops, brisk__batchnorm_ops, brisk__layernorm_ops, brisk__res_ops,
    brisk__embed_ops, brisk__posembed_ops, brisk__attention_ops;

/* dst[i] = brisk_bf16(src[i]) for i < n. */
void brisk__bf16_round_row(float *dst, const float *src, int n);

/* A first convolution under a ReLU and a 2x2 max pool (layers l, l + 1, l + 2 of a model)
 * whose weight and bias gradients brisk__conv_backward_routed can take straight from the
 * pool's gradient: stride 1, few taps (conv_dot_dw), the ReLU's gradient a step, the pool
 * by index. The model decides that no gradient below the convolution is wanted. */
int brisk__conv_routable(const brisk_layer *conv, const brisk_layer *act,
                         const brisk_layer *pool);
/* The backward of such a convolution (a: its arguments, a->dy not read, a->dx NULL) from the
 * pool's (its dy, output y and scratch): the same bits as the pool's backward (with the
 * ReLU folded) and then the convolution's, without the convolution's dy ever written. */
void brisk__conv_backward_routed(const brisk_layer *conv, const brisk_backward_args *a,
                                 const float *pool_dy, const float *pool_y,
                                 const void *pool_scratch);

/* Parses a positive integer argument "12" (or, with a prefix, "pad1" for prefix "pad").
 * Returns 0 and *v, or -1. */
int brisk__arg_int(const char *s, const char *prefix, long lo, long hi, long *v);
/* A parse function for a kind without arguments ("flatten"). */
int brisk__no_args(brisk_layer *l, int argc, const char *const *argv, char *err, size_t errlen);

/* Elementwise kernels shared by the activation layers and the layers that fuse them. */
void brisk__act_forward(int kind, double slope, const float *z, float *a, size_t n);
void brisk__act_backward(int kind, double slope, const float *z, const float *a, float *d,
                         size_t n);
enum { BRISK__ACT_RELU, BRISK__ACT_GELU, BRISK__ACT_TANH, BRISK__ACT_SIGMOID,
       BRISK__ACT_LEAKY, BRISK__ACT_GELU_TANH };

#endif
