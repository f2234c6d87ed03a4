/* Convolution and pooling on feature-major images: value (c, h, w) of sample i at
 * [((c H + h) W + w) ld + i], so that every spatial position holds a contiguous row of ld
 * samples and a convolution is a sum of matrix products over shifted rows. */
#include "brisk/error.h"
#include "brisk/gemm.h"
#include "brisk/layer.h"
#include "core_internal.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int needs_image(const brisk_layer *l, char *err, size_t errlen)
{
    if (l->in.rank == 3)
        return 0;
    if (l->in.rank == 2)
        snprintf(err, errlen, "%s needs an image input (C, H, W), and this is a sequence of %d "
                 "positions", l->ops->kind, l->in.w);
    else
        snprintf(err, errlen, "%s needs an image input (C, H, W), and this is a vector of %d",
                 l->ops->kind, l->in.c);
    return -1;
}

/* ---- Conv2d --------------------------------------------------------------------------- */

/* args: [0] out channels, [1] kernel K, [2] stride, [3] padding, [4] bias. */
enum { C_OUT, C_K, C_S, C_P, C_BIAS };

static int conv_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                      size_t errlen)
{
    long co, k, v;
    if (argc < 2 || brisk__arg_int(argv[0], NULL, 1, 65536, &co) ||
        brisk__arg_int(argv[1], NULL, 1, 64, &k)) {
        snprintf(err, errlen, "expected conv:OUT:K[:s<STRIDE>][:pad<P>][:nobias] with OUT in "
                 "1..65536 and K in 1..64");
        return -1;
    }
    l->args[C_OUT] = (double)co;
    l->args[C_K] = (double)k;
    l->args[C_S] = 1;
    l->args[C_P] = 0;
    l->args[C_BIAS] = 1;
    for (int i = 2; i < argc; i++) {
        if (!brisk__arg_int(argv[i], "pad", 0, 64, &v))
            l->args[C_P] = (double)v;
        else if (!brisk__arg_int(argv[i], "s", 1, 64, &v))
            l->args[C_S] = (double)v;
        else if (!strcmp(argv[i], "nobias"))
            l->args[C_BIAS] = 0;
        else {
            snprintf(err, errlen, "unknown option '%s' (s<STRIDE>, pad<P>, nobias)", argv[i]);
            return -1;
        }
    }
    return 0;
}

typedef struct conv_geom {
    int ci, co, k, s, p, H, W, OH, OW, Hp, Wp, kk;
    int K;                                 /* Cin K K: the reduction of the forward product */
    int KB;                                /* Cout K K: the reduction of the input gradient's */
    int rows;                              /* stride > 1: output rows per unrolled block */
    int L, RP, CP;                         /* stride 1: dy padded by L before, RP x CP */
    size_t rs, plane;                      /* one padded row (Wp ld), one padded channel
                                            * (Hp rs) */
    /* Offsets into the scratch, in floats. Both strides: xpad (the zero-padded input), dyt
     * (dy transposed), dwt (dW transposed). Stride 1: xrows (OH x K pointers to the input rows
     * each output row reads), drows (H x KB pointers to the padded dy rows each input row's
     * gradient reads), dyp (dy zero-padded), wr (the weights as (Cin, Cout K K)). Stride > 1:
     * col (an unrolled block, or a block of dx's unrolled product), dxpad. */
    size_t xpad, dyt, dwt, xrows, drows, dyp, wr, col, dxpad;
    /* Winograd (wino: 3x3, stride 1, padding 1, even H and W, Cin >= WINO_MIN_CI): the output
     * in 2x2 tiles, TH x TW of them, and units of one tile by up to WINO_NB samples (SB
     * sample blocks a tile). Offsets: wu, wut (the transformed weights as (16, Cout, Cin) and,
     * for dx, (16, Cin, Cout)), wdu (WINO_GROUPS partial weight gradients (16, Cin, Cout)),
     * wslot (WINO_SLOTS slots of 3 regions of `slot` floats, one slot a thread), wpk (16
     * matrices of U or of dx's U packed for bf16 products, pk_xs floats apart: untouched where
     * products pack nothing). None of the direct method's regions is allocated: the
     * transforms read the input and dy in place. */
    int wino, TH, TW, SB, units;
    size_t wu, wut, wdu, wslot, slot, wpk, pk_xs;
    size_t total;
} conv_geom;

/* Stride > 1: the unrolled input of a block of output rows stays within this many floats
 * (8 MiB). */
#define COL_FLOATS ((size_t)2 << 20)
/* Winograd: only where it saves (not for a first layer's few input channels); samples a unit
 * spans; team members that take part (each its own slot of the scratch); partial sums of
 * the weight gradient, a fixed number for any team. */
#define WINO_MIN_CI 8
#define WINO_NB 64
#define WINO_SLOTS 16
#define WINO_GROUPS 16
/* Floats that hold one pointer. */
#define PTR_FLOATS ((sizeof(float *) + sizeof(float) - 1) / sizeof(float))

/* From one xi's block of C rows to the next: WINO_NB floats a row and one cache line more,
 * so that the 16 blocks a transform reads or writes together do not fall into one set of
 * the L1 cache (C rows of 256 bytes are a multiple of 4 KiB apart for C = 16, 32, 64...). */
static size_t wino_xs(int c)
{
    return (size_t)c * WINO_NB + 16;
}

static conv_geom conv_geometry(const brisk_layer *l, int ld)
{
    conv_geom g;
    memset(&g, 0, sizeof g);
    g.ci = l->in.c, g.co = (int)l->args[C_OUT], g.k = (int)l->args[C_K];
    g.s = (int)l->args[C_S], g.p = (int)l->args[C_P];
    g.H = l->in.h, g.W = l->in.w;
    g.OH = (g.H + 2 * g.p - g.k) / g.s + 1;
    g.OW = (g.W + 2 * g.p - g.k) / g.s + 1;
    g.Hp = g.H + 2 * g.p, g.Wp = g.W + 2 * g.p, g.kk = g.k * g.k;
    g.K = g.ci * g.kk;
    g.KB = g.co * g.kk;
    g.wino = g.s == 1 && g.k == 3 && g.p == 1 && g.H % 2 == 0 && g.W % 2 == 0 &&
             g.ci >= WINO_MIN_CI;
    g.rs = (size_t)g.Wp * (size_t)ld;
    g.plane = (size_t)g.Hp * g.rs;
    const size_t row = (size_t)g.OW * (size_t)ld;
    size_t at = 0;
    if (!g.wino) { /* Winograd reads its input in place */
        g.xpad = at;
        at = brisk__align_up(at + (size_t)g.ci * g.plane);
        g.dyt = at;
        at = brisk__align_up(at + (size_t)g.OH * row * (size_t)g.co);
        g.dwt = at;
        at = brisk__align_up(at + (size_t)g.K * (size_t)g.co);
    }
    if (g.s == 1) {
        g.L = g.k - 1;
        g.RP = g.L + (g.H + g.p > g.OH ? g.H + g.p : g.OH);
        g.CP = g.L + (g.W + g.p > g.OW ? g.W + g.p : g.OW);
        if (!g.wino) { /* Winograd reads dy in place */
            g.dyp = at;
            at = brisk__align_up(at + (size_t)g.co * (size_t)g.RP * (size_t)g.CP * (size_t)ld);
        }
    }
    if (g.wino) {
        const size_t cc = (size_t)g.ci * (size_t)g.co;
        g.TH = g.OH / 2, g.TW = g.OW / 2;
        g.SB = (ld + WINO_NB - 1) / WINO_NB;
        g.units = g.TH * g.TW * g.SB;
        g.slot = brisk__align_up(16 * wino_xs(g.ci > g.co ? g.ci : g.co));
        g.wu = at;
        at = brisk__align_up(at + 16 * cc);
        g.wut = at;
        at = brisk__align_up(at + 16 * cc);
        g.wdu = at;
        at = brisk__align_up(at + WINO_GROUPS * 16 * cc);
        g.wslot = at;
        at = brisk__align_up(at + WINO_SLOTS * 3 * g.slot);
        const size_t pk_co = brisk__gemm_packed_a_at(g.co, g.ci); /* U (Cout, Cin) */
        const size_t pk_ci = brisk__gemm_packed_a_at(g.ci, g.co); /* dx's (Cin, Cout) */
        g.pk_xs = brisk__align_up(pk_co > pk_ci ? pk_co : pk_ci);
        g.wpk = at;
        at = brisk__align_up(at + 16 * g.pk_xs);
    } else if (g.s == 1) {
        g.xrows = at;
        at = brisk__align_up(at + (size_t)g.OH * (size_t)g.K * PTR_FLOATS);
        g.drows = at;
        at = brisk__align_up(at + (size_t)g.H * (size_t)g.KB * PTR_FLOATS);
        g.wr = at;
        at = brisk__align_up(at + (size_t)g.ci * (size_t)g.KB);
    } else {
        const size_t per_row = (size_t)g.K * row;
        g.rows = per_row >= COL_FLOATS ? 1 : (int)(COL_FLOATS / per_row);
        if (g.rows > g.OH)
            g.rows = g.OH;
        g.col = at;
        at = brisk__align_up(at + (size_t)g.rows * per_row);
        g.dxpad = at;
        at = brisk__align_up(at + (size_t)g.ci * g.plane);
    }
    g.total = at;
    return g;
}

/* Few input rows (K = Cin K K <= DOT_K, stride 1: a first layer on one or three channels):
 * the weight gradient is dot products (conv_dw_dot), not matrix products. */
#define DOT_K 16
static int conv_dot_dw(const conv_geom *g)
{
    return g->s == 1 && g->K <= DOT_K && !g->wino;
}

static int conv_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (needs_image(l, err, errlen))
        return -1;
    const int co = (int)l->args[C_OUT], k = (int)l->args[C_K], ci = l->in.c;
    if (l->in.h + 2 * (int)l->args[C_P] < k || l->in.w + 2 * (int)l->args[C_P] < k) {
        snprintf(err, errlen, "a %dx%d kernel does not fit a %dx%d image padded by %d", k, k,
                 l->in.h, l->in.w, (int)l->args[C_P]);
        return -1;
    }
    const conv_geom g = conv_geometry(l, 16);
    l->out = brisk_shape_img(co, g.OH, g.OW);
    const int w[4] = {co, ci, k, k};
    if (brisk_layer_add_tensor(l, "weight", 4, w, BRISK_TENSOR_FAN, ci * k * k, co * k * k,
                               0) < 0 ||
        (l->args[C_BIAS] && brisk_layer_add_tensor(l, "bias", 1, &co, BRISK_TENSOR_ZERO, 0, 0,
                                                   0) < 0))
        return -1;
    l->claims = 1; /* every part of its passes is claimed by the team */
    return 0;
}

static size_t conv_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows;
    return conv_geometry(l, ld).total * sizeof(float);
}

/* The unrolled input of output rows [oh0, oh0 + R) (im2col): row k = (ci, kh, kw) of col,
 * column (oh - oh0, ow, i), holds x_pad at (ci, oh s + kh, ow s + kw, i); rows [k0, k1). */
static void conv_unroll(const conv_geom *g, const float *xpad, float *col, int ld, int oh0, int R,
                        int k0, int k1)
{
    const size_t row = (size_t)g->OW * ld, N = (size_t)R * row;
    for (int k = k0; k < k1; k++) {
        const int c = k / g->kk, kh = k % g->kk / g->k, kw = k % g->k;
        for (int r = 0; r < R; r++) {
            const float *src = xpad + (size_t)c * g->plane +
                               (size_t)((oh0 + r) * g->s + kh) * g->rs + (size_t)kw * ld;
            float *dst = col + (size_t)k * N + (size_t)r * row;
            if (g->s == 1) {
                memcpy(dst, src, row * sizeof(float));
            } else {
                for (int ow = 0; ow < g->OW; ow++)
                    memcpy(dst + (size_t)ow * ld, src + (size_t)ow * g->s * ld,
                           (size_t)ld * sizeof(float));
            }
        }
    }
}

/* ---- Winograd F(2x2, 3x3) ------------------------------------------------------------
 * For 3x3, stride 1, padding 1 (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016): each 2x2 block of outputs is A^T [(G g G^T) . (B^T d B)] A for the 4x4
 * input tile d and the 3x3 kernel g, so a layer is 16 products (one per element xi of the
 * transformed 4x4 tile) of Cin-long sums instead of 9 Cin-long sums per output: 2.25 times
 * fewer multiply-adds. dx is the same operation on dy padded by 1, with the kernels turned by
 * 180 degrees and Cin and Cout swapped; dW is G^T [sum over tiles and samples of (A dY A^T) .
 * (B^T d B)] G.
 *
 * The work comes in units of one tile by up to WINO_NB samples; a thread takes a contiguous
 * run of units and carries each through transform, 16 products and inverse transform in its
 * own slot of the scratch, so the transformed data stays in its core's cache and never goes
 * through memory. Every output element is computed by one thread in a fixed order, and dW is
 * summed in WINO_GROUPS fixed runs of units, added in order: the result is the same for any
 * team. Its rounding differs from the direct method's (by a few units in the last place
 * relative to the operands). */

typedef float wv16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int wi16 __attribute__((vector_size(64)));
typedef unsigned char wb16 __attribute__((vector_size(16), aligned(1), may_alias));
#define WLOAD(p) (*(const wv16 *)(const void *)(p))
#define WSTORE(p, v) (*(wv16 *)(void *)(p) = (v))

/* 16 bytes widened to 16 ints, in two steps (to 16 bits, then to 32), which GCC 12 keeps in
 * registers as widening moves: one __builtin_convertvector from bytes to ints became 16 byte
 * loads and inserts, and a loop over an int array went through the stack. */
typedef unsigned char wu8x16 __attribute__((vector_size(16)));
typedef unsigned short wu16x16 __attribute__((vector_size(32)));
typedef unsigned int wu32x16 __attribute__((vector_size(64)));
static inline __attribute__((always_inline)) void widen16(const uint8_t *p, wi16 *w)
{
    wu8x16 b;
    memcpy(&b, p, sizeof b);
    *w = (wi16)__builtin_convertvector(__builtin_convertvector(b, wu16x16), wu32x16);
}

/* U = G g G^T for a 3x3 g (row-major), G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]; element xi
 * = 4 row + column goes to u[xi * stride]. flip: g turned by 180 degrees. */
static void wino_kernel(const float *g, int flip, float *u, size_t stride)
{
    float k[9], q[4][3], r[4][4];
    for (int j = 0; j < 9; j++)
        k[j] = g[flip ? 8 - j : j];
    for (int c = 0; c < 3; c++) {
        q[0][c] = k[c];
        q[1][c] = 0.5f * (k[c] + k[3 + c] + k[6 + c]);
        q[2][c] = 0.5f * (k[c] - k[3 + c] + k[6 + c]);
        q[3][c] = k[6 + c];
    }
    for (int i = 0; i < 4; i++) {
        r[i][0] = q[i][0];
        r[i][1] = 0.5f * (q[i][0] + q[i][1] + q[i][2]);
        r[i][2] = 0.5f * (q[i][0] - q[i][1] + q[i][2]);
        r[i][3] = q[i][2];
    }
    for (int xi = 0; xi < 16; xi++)
        u[(size_t)xi * stride] = r[xi / 4][xi % 4];
}

/* The transformed kernels of pairs [p0, p1) (p = co Cin + ci of W (Cout, Cin, 3, 3)): into
 * U[xi][co][ci] (forward) or, turned by 180 degrees, into U[xi][ci][co] (dx). */
static void wino_kernels(const float *W, int ci, int co, long long p0, long long p1, int for_dx,
                         float *U)
{
    const size_t stride = (size_t)ci * (size_t)co;
    for (long long p = p0; p < p1; p++) {
        const long long o = p / ci, i = p % ci;
        wino_kernel(W + (size_t)p * 9, for_dx, U + (for_dx ? (size_t)(i * co + o) : (size_t)p),
                    stride);
    }
}

/* One unit of a Winograd convolution. */
typedef struct wino_unit {
    int th, tw, i0, w;                     /* tile row and column, samples [i0, i0 + w) */
} wino_unit;

static wino_unit wino_unit_at(const conv_geom *g, int u, int ld)
{
    wino_unit t;
    const int tile = u / g->SB, sb = u % g->SB;
    t.th = tile / g->TW, t.tw = tile % g->TW;
    t.i0 = sb * WINO_NB;
    t.w = ld - t.i0 < WINO_NB ? ld - t.i0 : WINO_NB;
    return t;
}

/* The input a Winograd convolution transforms: value (c, r, q) of sample i at in + c plane +
 * r rs + q ld + i for rows r in [0, h) and columns q in [0, w), 0 outside them; tile (th, tw)
 * reads rows 2 th + o to 2 th + o + 3 and the same columns. Every pass reads its input in
 * place (o = -1: padded by one), with no padded copy of it. */
typedef struct wino_src {
    const float *in;
    size_t plane, rs;
    int h, w, o;
    int n; /* samples past the first n read as 0 (padding columns: may hold anything) */
} wino_src;

/* A Winograd layer's input x (Cin, H, W, ld), padded by one, its first n samples. */
static wino_src wino_input(const conv_geom *g, const float *x, int ld, int n)
{
    const size_t row = (size_t)g->W * (size_t)ld;
    return (wino_src){x, (size_t)g->H * row, row, g->H, g->W, -1, n};
}

/* V[xi wino_xs(cin) + (c - c0) WINO_NB + j] = (B^T d B)[xi] for the 4x4 patch of tile t of
 * channels [c0, c0 + cin) of s, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], sample i0 + j,
 * 16 samples a vector. Positions outside s read a row of zeros (the values of padded
 * planes, so their bits). */
static BRISK_MULTIVERSION void wino_in(const wino_src *s, int ld, const wino_unit *t, int c0,
                                       int cin, float *V)
{
    static const float zeros[WINO_NB] __attribute__((aligned(64)));
    const size_t xs = wino_xs(cin);
    const int r0 = 2 * t->th + s->o, q0 = 2 * t->tw + s->o;
    const int valid = s->n - t->i0; /* samples of the unit to read */
    for (int c = c0; c < c0 + cin; c++) {
        const float *p[16]; /* the patch's 16 positions; zeros outside s */
        for (int k = 0; k < 16; k++) {
            const int r = r0 + k / 4, q = q0 + k % 4;
            p[k] = r >= 0 && r < s->h && q >= 0 && q < s->w
                       ? s->in + (size_t)c * s->plane + (size_t)r * s->rs + (size_t)q * ld +
                             t->i0
                       : zeros;
        }
        float *v = V + (size_t)(c - c0) * WINO_NB;
        for (int j = 0; j < t->w; j += 16) {
            wv16 r[4][4];
            wi16 keep = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
            if (j + 16 > valid) { /* +0 past n, as in zeroed padding */
                const wi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
                keep = lane < valid - j;
            }
            _Pragma("GCC unroll 4") for (int a = 0; a < 4; a++) {
                const wv16 d0 = (wv16)((wi16)WLOAD(p[4 * a] + j) & keep),
                           d1 = (wv16)((wi16)WLOAD(p[4 * a + 1] + j) & keep),
                           d2 = (wv16)((wi16)WLOAD(p[4 * a + 2] + j) & keep),
                           d3 = (wv16)((wi16)WLOAD(p[4 * a + 3] + j) & keep);
                r[a][0] = d0 - d2, r[a][1] = d1 + d2, r[a][2] = d2 - d1, r[a][3] = d1 - d3;
            }
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
                WSTORE(v + (size_t)q * xs + j, r[0][q] - r[2][q]);
                WSTORE(v + (size_t)(4 + q) * xs + j, r[1][q] + r[2][q]);
                WSTORE(v + (size_t)(8 + q) * xs + j, r[2][q] - r[1][q]);
                WSTORE(v + (size_t)(12 + q) * xs + j, r[1][q] - r[3][q]);
            }
        }
    }
}

/* wino_in's V, already packed for bf16 products that pack their operands (vdpbf16ps), so
 * that no product packs it again from memory: two channels at a time through tmp (16
 * wino_xs(2) floats, in L1), then
 * - as B of the products of wino_conv (rows of channel pairs): channels 2 p and 2 p + 1 of
 *   matrix xi at Vp + xi pxs + p ldp (pxs and ldp in floats);
 * - as A of the weight gradient's (a row of pairs of samples per channel): channel c of
 *   matrix xi at Vp + xi pxs + c ldp. */
static void wino_in_packed(const wino_src *s, int ld, const wino_unit *t, int cin, float *tmp,
                           int as_b, float *Vp, size_t pxs, size_t ldp)
{
    for (int c = 0; c < cin; c += 2) {
        const int two = cin - c >= 2 ? 2 : 1;
        const size_t xs = wino_xs(two);
        wino_in(s, ld, t, c, two, tmp);
        for (int xi = 0; xi < 16; xi++) {
            const float *r0 = tmp + (size_t)xi * xs, *r1 = two == 2 ? r0 + WINO_NB : NULL;
            float *d = Vp + (size_t)xi * pxs;
            if (as_b) {
                brisk__gemm_pair_rows(r0, r1, t->w, d + (size_t)(c / 2) * ldp);
            } else {
                brisk__gemm_pair_along(r0, t->w, d + (size_t)c * ldp);
                if (r1)
                    brisk__gemm_pair_along(r1, t->w, d + (size_t)(c + 1) * ldp);
            }
        }
    }
}

/* Zt[(xi WINO_NB + j) cout + c] = (A y A^T)[xi] for the 2x2 tile (th, tw) of dy (c, OH, OW,
 * sample), sample i0 + j, A = [1 0; 1 1; 1 -1; 0 -1]: transposed, (samples, channels) per
 * xi, so that it is B of the weight gradient's products. 16 channels by 16 samples at a
 * time go through tmp (16 x 16 x 16 floats, in L1) and are turned there. pxs not 0: for
 * products that pack B, Zt as they would pack it instead (brisk__gemm_pair_turn): pairs of
 * samples, xi's matrix at Zt + xi pxs, ldp floats from one pair to the next. */
static BRISK_MULTIVERSION void wino_dy(const float *dy, int OH, int OW, int ld,
                                       const wino_unit *t, int cout, float *Zt, float *tmp,
                                       size_t pxs, size_t ldp)
{
    const size_t zs = (size_t)WINO_NB * (size_t)cout;
    for (int c0 = 0; c0 < cout; c0 += 16) {
        const int nc = cout - c0 < 16 ? cout - c0 : 16;
        for (int j = 0; j < t->w; j += 16) {
            for (int c = 0; c < nc; c++) {
                const float *g0 = dy + (((size_t)(c0 + c) * OH + (size_t)(2 * t->th)) * OW +
                                        (size_t)(2 * t->tw)) * ld + t->i0 + j;
                const float *g1 = g0 + (size_t)OW * ld;
                const wv16 a0 = WLOAD(g0), a1 = WLOAD(g0 + ld), b0 = WLOAD(g1),
                           b1 = WLOAD(g1 + ld);
                const wv16 p[4] = {a0, a0 + b0, a0 - b0, -b0},
                           q[4] = {a1, a1 + b1, a1 - b1, -b1};
                float *z = tmp + (size_t)c * 16; /* tmp[xi][c][sample] */
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
                    WSTORE(z + (size_t)(4 * r) * 256, p[r]);
                    WSTORE(z + (size_t)(4 * r + 1) * 256, p[r] + q[r]);
                    WSTORE(z + (size_t)(4 * r + 2) * 256, p[r] - q[r]);
                    WSTORE(z + (size_t)(4 * r + 3) * 256, -q[r]);
                }
            }
            for (int xi = 0; xi < 16; xi++)
                if (pxs) /* pairs of samples: the products' B, packed */
                    brisk__gemm_pair_turn(tmp + (size_t)xi * 256, 16, nc,
                                          t->w - j < 16 ? t->w - j : 16,
                                          Zt + (size_t)xi * pxs + (size_t)(j / 2) * ldp +
                                              (size_t)c0,
                                          ldp);
                else
                    brisk__transpose(tmp + (size_t)xi * 256, 16,
                                     Zt + (size_t)xi * zs + (size_t)j * cout + (size_t)c0,
                                     (size_t)cout, 0, nc, 0, 16);
        }
    }
}

/* out(c, 2 th + a, 2 tw + b, i0 + j) = bias[c] + (A^T m A)[a][b], m = M[xi][c][j] (at
 * M[xi wino_xs(cout) + c WINO_NB + j]), A^T = [1 1 1 0; 0 1 -1 -1], for channels [0, cout);
 * then, on those outputs, the fused activation (mode 1: act_y = act(out)) or activation
 * gradient (mode 2: out *= act'(act_x, act_a)). */
typedef struct wino_job {
    wino_src src;           /* the input */
    int cin, cout, OH, OW, ld;
    const float *U, *bias;  /* U (16, cout, cin) */
    float *out;             /* (cout, OH, OW, ld) */
    int mode;
    const brisk_layer *act;
    float *act_y;                 /* mode 1 */
    const float *act_x, *act_a;   /* mode 2: the activation's input and output */
    brisk_gemm_precision precision;
    const float *Upk;       /* U's 16 matrices packed (wino_pack_u), pk_xs apart, or NULL */
    size_t pk_xs;
} wino_job;

static BRISK_MULTIVERSION void wino_out(const wino_job *w, const wino_unit *t, const float *M)
{
    const size_t xs = wino_xs(w->cout), ld = (size_t)w->ld;
    const size_t ostride = (size_t)w->OH * (size_t)w->OW * ld;
    /* The built-in ReLU is applied as the values are stored (z > 0 ? z : +0, as
     * brisk__act_forward: the same values as calling it), and the pre-activation is not
     * stored when the activation is in place. Any other activation is called on each row. */
    const int relu = w->mode == 1 && w->act->ops == &brisk__relu_ops;
    const int keep_out = !relu || w->act_y != w->out;
    const wv16 zero = {0};
    for (int c = 0; c < w->cout; c++) {
        const float b0 = w->bias ? w->bias[c] : 0.0f;
        const size_t o00 = (size_t)c * ostride +
                           ((size_t)(2 * t->th) * (size_t)w->OW + (size_t)(2 * t->tw)) * ld +
                           (size_t)t->i0;
        const size_t off[4] = {o00, o00 + ld, o00 + (size_t)w->OW * ld,
                               o00 + (size_t)w->OW * ld + ld};
        const float *m = M + (size_t)c * WINO_NB;
        for (int j = 0; j < t->w; j += 16) {
            wv16 s[4][4], u[2][4];
            _Pragma("GCC unroll 16") for (int xi = 0; xi < 16; xi++)
                s[xi / 4][xi % 4] = WLOAD(m + (size_t)xi * xs + j);
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
                u[0][q] = s[0][q] + s[1][q] + s[2][q];
                u[1][q] = s[1][q] - s[2][q] - s[3][q];
            }
            _Pragma("GCC unroll 2") for (int a = 0; a < 2; a++) {
                const wv16 v0 = b0 + (u[a][0] + u[a][1] + u[a][2]);
                const wv16 v1 = b0 + (u[a][1] - u[a][2] - u[a][3]);
                if (keep_out) {
                    WSTORE(w->out + off[2 * a] + j, v0);
                    WSTORE(w->out + off[2 * a + 1] + j, v1);
                }
                if (relu) {
                    WSTORE(w->act_y + off[2 * a] + j, (wv16)((wi16)v0 & (v0 > zero)));
                    WSTORE(w->act_y + off[2 * a + 1] + j, (wv16)((wi16)v1 & (v1 > zero)));
                }
            }
        }
        for (int k = 0; w->mode && !relu && k < 4; k++) {
            const size_t o = off[k];
            if (w->mode == 1)
                w->act->ops->act(w->act, w->out + o, w->act_y + o, (size_t)t->w);
            else
                w->act->ops->act_grad(w->act, w->act_x + o, w->act_a + o, w->out + o,
                                      (size_t)t->w);
        }
    }
}

/* Into the cache ahead of use: channels [c0, c1) of unit t's 4x4 input patch (as wino_in
 * reads it), a slice at a time between the products of the unit before it. */
static void wino_prefetch(const wino_src *s, int ld, const wino_unit *t, int c0, int c1)
{
    const int r0 = 2 * t->th + s->o, q0 = 2 * t->tw + s->o;
    for (int c = c0; c < c1; c++)
        for (int r = r0; r < r0 + 4; r++)
            for (int q = q0; q < q0 + 4; q++) {
                if (r < 0 || r >= s->h || q < 0 || q >= s->w)
                    continue;
                const float *p = s->in + (size_t)c * s->plane + (size_t)r * s->rs +
                                 (size_t)q * ld + t->i0;
                for (int j = 0; j < t->w; j += 16)
                    __builtin_prefetch(p + j);
            }
}

/* A claimed loop over n items in which the first WINO_SLOTS members of the team take part
 * (each has a slot of scratch); 0 for the others, which have only marked the loop. */
static int wino_share(brisk_share *s, const brisk_team *team, long long n, long long grain)
{
    if (team && team->ith >= WINO_SLOTS) {
        brisk_share_pass(team, n, grain);
        return 0;
    }
    brisk_share_begin(s, team, n, grain);
    if (team && !team->claim && team->nth > WINO_SLOTS) { /* fixed shares of WINO_SLOTS */
        s->next = s->chunks * team->ith / WINO_SLOTS;
        s->end = s->chunks * (team->ith + 1) / WINO_SLOTS;
    }
    return 1;
}

/* Where a unit's products would pack their B (b) or A (else) and a region of the slot holds
 * the 16 packed matrices: how far apart they are (floats), and in *ld a packed row's length
 * (for A, one row of A's; for B, one pair of B's rows). 0 (*ld 0) where they do not. */
static size_t wino_packed_xs(const conv_geom *g, const brisk_gemm_args *p, int b, size_t *ld)
{
    const size_t f = b ? brisk_gemm_pack_b_floats(p) : brisk_gemm_pack_a_floats(p);
    const size_t xs = brisk__align_up(f);
    *ld = 0;
    if (!f || 16 * xs > g->slot)
        return 0;
    *ld = f / (size_t)(b ? brisk_gemm_pack_b_units(p) : p->M);
    return xs;
}

/* This thread's units of a Winograd convolution (after U and the input are ready), claimed
 * a few at a time. */
static void wino_conv(const conv_geom *g, const wino_job *w, float *slot, const brisk_team *team)
{
    brisk_share sh;
    if (!wino_share(&sh, team, g->units, brisk_share_grain(team, g->units, 4, 1)))
        return;
    float *V = slot, *M = slot + g->slot, *tmp = slot + 2 * g->slot;
    for (long long u0, u1; brisk_share_next(&sh, &u0, &u1);)
    for (long long u = u0; u < u1; u++) {
        const wino_unit t = wino_unit_at(g, (int)u, w->ld);
        const wino_unit next = wino_unit_at(g, (int)(u + 1 < u1 ? u + 1 : u), w->ld);
        /* V packed as the products' B where they would pack it (16 pxs floats fit in the
         * slot's V: half-size words), else as it is. */
        const brisk_gemm_args b = {.M = w->cout, .N = t.w, .K = w->cin, .B = V,
                                   .precision = w->precision};
        size_t ldp;
        const size_t pxs = wino_packed_xs(g, &b, 1, &ldp);
        const int packed = pxs != 0;
        if (packed)
            wino_in_packed(&w->src, w->ld, &t, w->cin, tmp, 1, V, pxs, ldp);
        else
            wino_in(&w->src, w->ld, &t, 0, w->cin, V);
        for (int xi = 0; xi < 16; xi++) {
            if (u + 1 < u1)
                wino_prefetch(&w->src, w->ld, &next, w->cin * xi / 16,
                              w->cin * (xi + 1) / 16);
            const brisk_gemm_args gm = {
                .M = w->cout, .N = t.w, .K = w->cin,
                .A = w->U + (size_t)xi * w->cout * w->cin, .a_rs = w->cin, .a_ks = 1,
                .B = packed ? NULL : V + (size_t)xi * wino_xs(w->cin), .ldb = WINO_NB,
                .C = M + (size_t)xi * wino_xs(w->cout), .ldc = WINO_NB,
                .init = BRISK_GEMM_ZERO, .precision = w->precision,
                .b_packed = packed ? V + (size_t)xi * pxs : NULL,
                .a_packed = w->Upk ? w->Upk + (size_t)xi * w->pk_xs : NULL};
            brisk_gemm_block(&gm, 0, w->cout, 0, t.w);
        }
        wino_out(w, &t, M);
    }
}

/* Where bf16 products pack A (vdpbf16ps): U's 16 matrices (cout, cin) packed once into dst
 * by the team, for every unit's products (each would otherwise pack its own), then a barrier.
 * NULL, and no barrier, where products pack nothing: every member decides alike. */
static const float *wino_pack_u(const conv_geom *g, const float *U, int cout, int cin,
                                brisk_gemm_precision precision, float *dst,
                                const brisk_team *team)
{
    const brisk_gemm_args g0 = {.M = cout, .N = WINO_NB, .K = cin, .A = U, .a_rs = cin,
                                .a_ks = 1, .precision = precision};
    const size_t floats = brisk_gemm_pack_a_floats(&g0);
    if (!floats || floats > g->pk_xs)
        return NULL;
    brisk_share sh;
    brisk_share_begin(&sh, team, 16, 1);
    for (long long x0, x1; brisk_share_next(&sh, &x0, &x1);)
        for (long long xi = x0; xi < x1; xi++) {
            brisk_gemm_args gx = g0;
            gx.A = U + (size_t)xi * (size_t)cout * (size_t)cin;
            brisk_gemm_pack_a(&gx, dst + (size_t)xi * g->pk_xs, 0, cout);
        }
    brisk_team_barrier(team);
    return dst;
}

/* Thread ith's slot (members past WINO_SLOTS get no work, and slot 0's address). */
static float *wino_slot(const conv_geom *g, float *sc, const brisk_team *team)
{
    const int ith = team ? team->ith : 0;
    return sc + g->wslot + (size_t)(ith < WINO_SLOTS ? ith : 0) * 3 * g->slot;
}

/* The forward pass by Winograd: the input read in place. */
static void conv_forward_wino(const brisk_layer *l, const brisk_forward_args *a,
                              const conv_geom *g)
{
    float *sc = a->scratch;
    const long long pairs = (long long)g->co * g->ci;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, pairs, brisk_share_grain(a->team, pairs, 4, 64));
    for (long long p0, p1; brisk_share_next(&sh, &p0, &p1);)
        wino_kernels(brisk_layer_data(l, 0, a->params), g->ci, g->co, p0, p1, 0, sc + g->wu);
    brisk_team_barrier(a->team);
    const float *Upk = wino_pack_u(g, sc + g->wu, g->co, g->ci, a->precision, sc + g->wpk,
                                   a->team);
    const wino_job w = {
        .src = wino_input(g, a->x, a->ld, a->n), .cin = g->ci, .cout = g->co,
        .OH = g->OH, .OW = g->OW, .ld = a->ld, .U = sc + g->wu,
        .bias = l->args[C_BIAS] ? brisk_layer_data(l, 1, a->params) : NULL, .out = a->y,
        .mode = a->act ? 1 : 0, .act = a->act, .act_y = a->act_y, .precision = a->precision,
        .Upk = Upk, .pk_xs = g->pk_xs};
    wino_conv(g, &w, wino_slot(g, sc, a->team), a->team);
}

/* This thread's groups of the weight gradient: dU_g[xi] (Cin, Cout) = the sum over group
 * g's units, in order, of V[xi] Zt[xi] (V: the input transformed, (Cin, samples); Zt: dy
 * transformed, (samples, Cout); the sum over the unit's samples). */
static void wino_dw_groups(const conv_geom *g, const float *x, int n, const float *dy, int ld,
                           float *slot, float *dU, const brisk_team *team,
                           brisk_gemm_precision precision)
{
    const size_t cc = (size_t)g->ci * (size_t)g->co;
    float *V = slot, *Zt = slot + g->slot, *tmp = slot + 2 * g->slot;
    const wino_src src = wino_input(g, x, ld, n);
    brisk_share sh;
    if (!wino_share(&sh, team, WINO_GROUPS, 1))
        return;
    for (long long grp, g1; brisk_share_next(&sh, &grp, &g1);) {
        float *dUg = dU + (size_t)grp * 16 * cc;
        const int u0 = (int)((long long)g->units * grp / WINO_GROUPS),
                  u1 = (int)((long long)g->units * (grp + 1) / WINO_GROUPS);
        if (u0 == u1)
            memset(dUg, 0, 16 * cc * sizeof(float));
        for (int u = u0; u < u1; u++) {
            const wino_unit t = wino_unit_at(g, u, ld);
            const wino_unit next = wino_unit_at(g, u + 1 < u1 ? u + 1 : u, ld);
            /* V packed as the products' A where they would pack it, else as it is. */
            const brisk_gemm_args a = {.M = g->ci, .N = g->co, .K = t.w, .A = V,
                                       .a_rs = WINO_NB, .a_ks = 1, .B = Zt,
                                       .precision = precision};
            size_t lda, ldb;
            const size_t pxs = wino_packed_xs(g, &a, 0, &lda);
            const size_t bxs = wino_packed_xs(g, &a, 1, &ldb);
            const int packed = pxs != 0, b_packed = bxs != 0;
            if (packed)
                wino_in_packed(&src, ld, &t, g->ci, tmp, 0, V, pxs, lda);
            else
                wino_in(&src, ld, &t, 0, g->ci, V);
            wino_dy(dy, g->OH, g->OW, ld, &t, g->co, Zt, tmp, bxs, ldb);
            for (int xi = 0; xi < 16; xi++) {
                if (u + 1 < u1)
                    wino_prefetch(&src, ld, &next, g->ci * xi / 16,
                                  g->ci * (xi + 1) / 16);
                const brisk_gemm_args gm = {
                    .M = g->ci, .N = g->co, .K = t.w,
                    .A = packed ? NULL : V + (size_t)xi * wino_xs(g->ci), .a_rs = WINO_NB,
                    .a_ks = 1, .a_packed = packed ? V + (size_t)xi * pxs : NULL,
                    .B = b_packed ? NULL : Zt + (size_t)xi * WINO_NB * g->co, .ldb = g->co,
                    .b_packed = b_packed ? Zt + (size_t)xi * bxs : NULL,
                    .C = dUg + (size_t)xi * cc, .ldc = g->co,
                    .init = u == u0 ? BRISK_GEMM_ZERO : BRISK_GEMM_ACCUM, .precision = precision};
                brisk_gemm_block(&gm, 0, g->ci, 0, g->co);
            }
        }
    }
}

/* dW(co, ci) = G^T [sum of the groups' dU, in order] G for the elements q = ci Cout + co in
 * [q0, q1) of dU (16, Cin, Cout), G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]. The groups are
 * added into the first group's block, each element in group order. */
static void wino_dw_finish(const conv_geom *g, float *dU, long long q0, long long q1, float *dW)
{
    const size_t cc = (size_t)g->ci * (size_t)g->co;
    for (int xi = 0; xi < 16; xi++)
        for (int grp = 1; grp < WINO_GROUPS; grp++) {
            float *d = dU + (size_t)xi * cc;
            const float *s = dU + ((size_t)grp * 16 + (size_t)xi) * cc;
            for (long long q = q0; q < q1; q++)
                d[q] += s[q];
        }
    for (long long q = q0; q < q1; q++) {
        float u[4][4], r[3][4];
        for (int xi = 0; xi < 16; xi++)
            u[xi / 4][xi % 4] = dU[(size_t)xi * cc + (size_t)q];
        for (int c = 0; c < 4; c++) {
            r[0][c] = u[0][c] + 0.5f * u[1][c] + 0.5f * u[2][c];
            r[1][c] = 0.5f * u[1][c] - 0.5f * u[2][c];
            r[2][c] = 0.5f * u[1][c] + 0.5f * u[2][c] + u[3][c];
        }
        const long long ci = q / g->co, co = q % g->co;
        float *d = dW + ((size_t)co * g->ci + (size_t)ci) * 9;
        for (int i = 0; i < 3; i++) {
            d[i * 3 + 0] = r[i][0] + 0.5f * r[i][1] + 0.5f * r[i][2];
            d[i * 3 + 1] = 0.5f * r[i][1] - 0.5f * r[i][2];
            d[i * 3 + 2] = 0.5f * r[i][1] + 0.5f * r[i][2] + r[i][3];
        }
    }
}

/* y = b + W x_unrolled, every output element one sum over (Cin, kh, kw) in that order, the
 * same for any team. Stride 1: one product per output row, reading the input rows in place
 * through row pointers. Stride > 1: im2col per block of output rows. The team claims tiles of
 * every product (and applies a fused activation to the tile). */
static void conv_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const int ld = a->ld, n = a->n;
    const conv_geom g = conv_geometry(l, ld);
    if (g.wino) {
        conv_forward_wino(l, a, &g);
        return;
    }
    float *sc = a->scratch;
    float *xpad = sc + g.xpad;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, g.ci, 1);
    /* The input into the zero-padded planes, padding columns zeroed (so that they add
     * nothing to the weight gradient). The border stays zero from allocation. bf16 products
     * whose weight gradient is dot products (conv_dot_dw): rounded to bfloat16 here. */
    const int round_x = conv_dot_dw(&g) && a->precision == BRISK_GEMM_BF16;
    for (long long c, c1; brisk_share_next(&sh, &c, &c1);)
        for (int h = 0; h < g.H; h++)
            for (int w = 0; w < g.W; w++) {
                float *d = xpad + (size_t)c * g.plane + (size_t)(h + g.p) * g.rs +
                           (size_t)(w + g.p) * ld;
                const float *x = a->x + (((size_t)c * g.H + h) * g.W + w) * ld;
                if (round_x) /* what the products would read: the same bits */
                    brisk__bf16_round_row(d, x, n);
                else
                    memcpy(d, x, (size_t)n * sizeof(float));
                memset(d + n, 0, (size_t)(ld - n) * sizeof(float));
            }
    const float **xrows = (const float **)(void *)(sc + g.xrows);
    if (g.s == 1) {
        brisk_share_begin(&sh, a->team, g.OH, 1);
        for (long long oh, r1; brisk_share_next(&sh, &oh, &r1);)
            for (int k = 0; k < g.K; k++) {
                const int c = k / g.kk, kh = k % g.kk / g.k, kw = k % g.k;
                xrows[(size_t)oh * g.K + k] =
                    xpad + (size_t)c * g.plane + (size_t)(oh + kh) * g.rs + (size_t)kw * ld;
            }
    }
    brisk_team_barrier(a->team);
    const float *W = brisk_layer_data(l, 0, a->params);
    const float *bias = l->args[C_BIAS] ? brisk_layer_data(l, 1, a->params) : NULL;
    const int N = g.OW * ld;
    const size_t ystride = (size_t)g.OH * (size_t)N;
    const int rows = g.s == 1 ? 1 : g.rows;
    float *col = sc + g.col;
    const long long kgrain = brisk_share_grain(a->team, g.K, 4, 1);
    const int tiles = brisk__tiles(a->team);
    for (int oh0 = 0; oh0 < g.OH; oh0 += rows) {
        const int R = g.OH - oh0 < rows ? g.OH - oh0 : rows;
        brisk_gemm_args gm = {
            .M = g.co, .N = R * N, .K = g.K, .A = W, .a_rs = g.K, .a_ks = 1,
            .C = a->y + (size_t)oh0 * N, .ldc = (ptrdiff_t)ystride, .bias = bias,
            .init = bias ? BRISK_GEMM_ROWBIAS : BRISK_GEMM_ZERO, .precision = a->precision};
        if (g.s == 1) {
            gm.b_rows = xrows + (size_t)oh0 * g.K;
        } else {
            /* Rows of col claimed by the team; it meets before the product and before the
             * next block overwrites col. */
            brisk_share_begin(&sh, a->team, g.K, kgrain);
            for (long long k0, k1; brisk_share_next(&sh, &k0, &k1);)
                conv_unroll(&g, xpad, col, ld, oh0, R, (int)k0, (int)k1);
            brisk_team_barrier(a->team);
            gm.B = col;
            gm.ldb = R * N;
        }
        brisk_share_begin(&sh, a->team, tiles, 1);
        for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
            int m0, m1, n0, n1;
            brisk_gemm_split(g.co, R * N, (int)t, tiles, &m0, &m1, &n0, &n1);
            brisk_gemm_block(&gm, m0, m1, n0, n1);
            for (int co = m0; a->act && co < m1 && n0 < n1; co++) {
                const size_t o = (size_t)co * ystride + (size_t)oh0 * N + (size_t)n0;
                a->act->ops->act(a->act, a->y + o, a->act_y + o, (size_t)(n1 - n0));
            }
        }
        if (g.s != 1)
            brisk_team_barrier(a->team);
    }
}

/* out[c] = the sum of x[c stride + r ld + i] over rows r < rows and samples i < n, for nc
 * blocks c, in double: eight partial sums per block (sample i goes to lane i mod 8, rows in
 * order), then added in a fixed tree; the order depends only on the arguments, eight lanes so
 * that it vectorizes. The blocks' chains are independent and run side by side (one block
 * alone would wait on each add's latency); each lane meets its values in the same order
 * whatever nc is. */
#define SUM_BLOCKS 4
/* sum_blocks's lanes, carried on over `rows` more rows (lane[c] for block c). */
static inline __attribute__((always_inline)) void sum_blocks_add(const float *x, size_t stride,
                                                                 size_t rows, size_t ld, int n,
                                                                 double (*lane)[8],
                                                                 const int nc)
{
    for (size_t r = 0; r < rows; r++) {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++)
                for (int j = 0; j < 8; j++)
                    lane[c][j] += (double)x[(size_t)c * stride + r * ld + (size_t)(i + j)];
        for (int c = 0; c < nc; c++)
            for (int k = i; k < n; k++)
                lane[c][k & 7] += (double)x[(size_t)c * stride + r * ld + (size_t)k];
    }
}

static inline double sum_lanes(const double *lane)
{
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

static inline __attribute__((always_inline)) void sum_blocks(const float *x, size_t stride,
                                                             size_t rows, size_t ld, int n,
                                                             double *out, const int nc)
{
    double lane[SUM_BLOCKS][8];
    memset(lane, 0, sizeof lane);
    sum_blocks_add(x, stride, rows, ld, n, lane, nc);
    for (int c = 0; c < nc; c++)
        out[c] = sum_lanes(lane[c]);
}

static BRISK_MULTIVERSION void sum_columns(const float *x, size_t stride, int nc, size_t rows,
                                           size_t ld, int n, double *out)
{
    switch (nc) {
    case 4: sum_blocks(x, stride, rows, ld, n, out, 4); break;
    case 3: sum_blocks(x, stride, rows, ld, n, out, 3); break;
    case 2: sum_blocks(x, stride, rows, ld, n, out, 2); break;
    default: sum_blocks(x, stride, rows, ld, n, out, 1); break;
    }
}

/* The weight gradient of few input rows (conv_dot_dw): dW[co][k] as dot products of dy's
 * rows with the input rows in place, with no transpose of dy. Each output is 16 fmaf chains
 * (sample column j goes to lane j mod 16, output rows in order) added in a fixed tree; each
 * thread takes whole output channels. bf16 products:
 * the same chains on operands rounded to bfloat16 (the forward leaves the input rounded in
 * its planes, dy is rounded as it is read), so every product is exact, with subnormals
 * flushed as brisk/gemm.h says (brisk__ftz_begin by the caller; by hand elsewhere). */
#define DOT_FLUSH_BY_HAND (!BRISK_MXCSR)

/* Where a first convolution's dy comes from when it is never stored (brisk__conv_backward_
 * routed): a ReLU and a 2x2 max pool by index above it. For one channel: the pool's dy and
 * output and the recorded positions, (PH, PW, ld) each, and room for two rows of dy. */
typedef struct conv_route {
    const float *dy, *y;
    const uint8_t *at;
    float *row;
} conv_route;

static BRISK_MULTIVERSION void max4_back(float *restrict d0, float *restrict d1,
                                         float *restrict d2, float *restrict d3,
                                         const uint8_t *restrict at, const float *restrict dy,
                                         const float *restrict y, int relu, int n);

/* Rows 2 ph and 2 ph + 1 of the convolution's dy (OW ld floats each, N apart) into rt->row:
 * the pool's backward (max4_back, the ReLU folded) on pool row ph, into scratch. */
static void routed_rows(const conv_route *rt, int ph, int OW, int ld)
{
    const size_t N = (size_t)OW * (size_t)ld;
    for (int pw = 0; pw < OW / 2; pw++) {
        const size_t po = ((size_t)ph * (size_t)(OW / 2) + (size_t)pw) * (size_t)ld;
        float *d = rt->row + (size_t)(2 * pw) * ld;
        max4_back(d, d + ld, d + N, d + N + ld, rt->at + po, rt->dy + po, rt->y + po, 1, ld);
    }
}

/* One channel: dW[k] for its K taps; dy read from dy (rows N = OW ld apart) or made two rows
 * at a time from rt (then db, not NULL, gets the sum of dy over the positions and the first n
 * samples with sum_columns's bits). */
static inline __attribute__((always_inline)) void dw_dot_channel(
    const conv_geom *g, int ld, int n, const float *dy, const conv_route *rt,
    const float *const *xrows, float *dW, float *db, const int K, const int bf16)
{
    float acc[DOT_K][16];
    double lane[1][8];
    _Alignas(64) float rounded[16];
    memset(acc, 0, sizeof acc);
    memset(lane, 0, sizeof lane);
    const int N = g->OW * ld;
    for (int oh = 0; oh < g->OH; oh++) {
        const float *d;
        if (rt) {
            if (oh % 2 == 0)
                routed_rows(rt, oh / 2, g->OW, ld);
            d = rt->row + (size_t)(oh % 2) * N;
            if (db)
                sum_blocks_add(d, 0, (size_t)g->OW, (size_t)ld, n, lane, 1);
        } else {
            d = dy + (size_t)oh * N;
        }
        const float *const *xr = xrows + (size_t)oh * g->K;
        for (int j = 0; j < N; j += 16) {
            const float *v = d + j;
            if (bf16) {
                uint32_t u[16];
                memcpy(u, v, sizeof u);
                for (int l = 0; l < 16; l++)
                    u[l] = brisk__bf16_bits(u[l]);
                memcpy(rounded, u, sizeof u);
                v = rounded;
            }
            _Pragma("GCC unroll 16") for (int k = 0; k < K; k++)
                for (int l = 0; l < 16; l++) {
                    acc[k][l] = fmaf(xr[k][j + l], v[l], acc[k][l]);
                    if (bf16 && DOT_FLUSH_BY_HAND)
                        acc[k][l] = brisk__flush_subnormal(acc[k][l]);
                }
        }
    }
    for (int k = 0; k < K; k++) {
        float t[8];
        for (int l = 0; l < 8; l++)
            t[l] = acc[k][l] + acc[k][l + 8];
        dW[k] = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    }
    if (db)
        *db = (float)sum_lanes(lane[0]);
}

#define DOT_CHANNEL(K, bf16)                                                               \
    dw_dot_channel(g, ld, n, d, route ? &rt : NULL, xrows, w, db ? db + co : NULL, K, bf16)

/* Channels [co0, co1): dy (OH OW ld floats a channel) or, where route is not NULL, the pool
 * above (route's pointers at channel 0, its row room OH OW ld floats a channel; then db gets
 * the bias gradient too). (K = 9, a 3x3 kernel on one channel, has its own instances, with
 * the accumulators in registers.) */
static BRISK_MULTIVERSION void conv_dw_dot(const conv_geom *g, int ld, int n, const float *dy,
                                           const conv_route *route, const float *const *xrows,
                                           float *dW, float *db, long long co0, long long co1,
                                           int bf16)
{
    const size_t ystride = (size_t)g->OH * (size_t)g->OW * (size_t)ld;
    const size_t pstride = ystride / 4; /* the pool's (PH, PW, ld) */
    for (long long co = co0; co < co1; co++) {
        const float *d = dy ? dy + (size_t)co * ystride : NULL;
        conv_route rt = {NULL, NULL, NULL, NULL};
        if (route) /* the row in the channel's own room: one thread's alone */
            rt = (conv_route){route->dy + (size_t)co * pstride,
                              route->y + (size_t)co * pstride,
                              route->at + (size_t)co * pstride,
                              route->row + (size_t)co * ystride};
        float *w = dW + (size_t)co * g->K;
        if (g->K == 9 && bf16)
            DOT_CHANNEL(9, 1);
        else if (g->K == 9)
            DOT_CHANNEL(9, 0);
        else if (bf16)
            DOT_CHANNEL(g->K, 1);
        else
            DOT_CHANNEL(g->K, 0);
    }
}

/* Stride > 1, by blocks of output rows: dcol (Cin K K, R OW ld) = W^T dy, one product whose
 * tiles the team claims (into col); then dx_pad[c, oh s + kh, ow s + kw] += dcol[(c, kh, kw),
 * (oh, ow)] in (oh, kh, kw) order, the team claiming input channels, so that the overlapping
 * additions never race and keep one order for any team; then the interior is dx. */
static void conv_dx_strided(const conv_geom *g, const brisk_backward_args *a, const float *W)
{
    const int ld = a->ld, N = g->OW * ld;
    const size_t ystride = (size_t)g->OH * (size_t)N;
    float *dxpad = (float *)a->scratch + g->dxpad, *col = (float *)a->scratch + g->col;
    const int tiles = brisk__tiles(a->team);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, g->ci, 1);
    for (long long c, c1; brisk_share_next(&sh, &c, &c1);)
        memset(dxpad + (size_t)c * g->plane, 0, g->plane * sizeof(float));
    for (int oh0 = 0; oh0 < g->OH; oh0 += g->rows) {
        const int R = g->OH - oh0 < g->rows ? g->OH - oh0 : g->rows;
        const brisk_gemm_args gm = {
            .M = g->K, .N = R * N, .K = g->co, .A = W, .a_rs = 1, .a_ks = g->K,
            .B = a->dy + (size_t)oh0 * N, .ldb = (ptrdiff_t)ystride, .C = col, .ldc = R * N,
            .init = BRISK_GEMM_ZERO, .precision = a->precision};
        brisk_team_barrier(a->team); /* dxpad zeroed, or the last block's col added */
        brisk_share_begin(&sh, a->team, tiles, 1);
        for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
            int m0, m1, n0, n1;
            brisk_gemm_split(g->K, R * N, (int)t, tiles, &m0, &m1, &n0, &n1);
            brisk_gemm_block(&gm, m0, m1, n0, n1);
        }
        brisk_team_barrier(a->team);
        brisk_share_begin(&sh, a->team, g->ci, 1);
        for (long long c, c1; brisk_share_next(&sh, &c, &c1);)
            for (int r = 0; r < R; r++)
                for (int kh = 0; kh < g->k; kh++)
                    for (int kw = 0; kw < g->k; kw++) {
                        const float *t = col + ((size_t)c * g->kk + (size_t)(kh * g->k + kw)) *
                                                   (size_t)R * N + (size_t)r * N;
                        float *d = dxpad + (size_t)c * g->plane +
                                   (size_t)((oh0 + r) * g->s + kh) * g->rs + (size_t)kw * ld;
                        for (int ow = 0; ow < g->OW; ow++)
                            for (int i = 0; i < ld; i++)
                                d[(size_t)ow * g->s * ld + i] += t[(size_t)ow * ld + i];
                    }
    }
    brisk_team_barrier(a->team);
    brisk_share_begin(&sh, a->team, g->ci, 1);
    for (long long c, c1; brisk_share_next(&sh, &c, &c1);) {
        for (int h = 0; h < g->H; h++)
            for (int w = 0; w < g->W; w++)
                memcpy(a->dx + (((size_t)c * g->H + h) * g->W + w) * ld,
                       dxpad + (size_t)c * g->plane + (size_t)(h + g->p) * g->rs +
                           (size_t)(w + g->p) * ld,
                       (size_t)ld * sizeof(float));
        if (a->act) {
            const size_t o = (size_t)c * g->H * g->W * ld, cnt = (size_t)g->H * g->W * ld;
            a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o, cnt);
        }
    }
}

/* Stride 1: dy into its zero-padded planes (RP x CP, L rows and columns before it), each
 * thread its own output channels. */
static void conv_pad_dy(const conv_geom *g, const brisk_backward_args *a, float *dyp)
{
    const size_t ld = (size_t)a->ld, pplane = (size_t)g->RP * (size_t)g->CP * ld;
    const size_t row = (size_t)g->OW * ld, ystride = (size_t)g->OH * row;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, g->co, 1);
    for (long long co, o1; brisk_share_next(&sh, &co, &o1);)
        for (int oh = 0; oh < g->OH; oh++)
            memcpy(dyp + (size_t)co * pplane + ((size_t)(oh + g->L) * g->CP + (size_t)g->L) * ld,
                   a->dy + (size_t)co * ystride + (size_t)oh * row, row * sizeof(float));
}

/* db: sums of dy over positions and samples, each thread its own output channels. */
static void conv_db(const brisk_layer *l, const brisk_backward_args *a, const conv_geom *g)
{
    if (!l->args[C_BIAS])
        return;
    float *db = brisk_layer_data(l, 1, a->grads);
    const size_t ystride = (size_t)g->OH * (size_t)g->OW * (size_t)a->ld;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, g->co, brisk_share_grain(a->team, g->co, 2, 1));
    for (long long o0, o1; brisk_share_next(&sh, &o0, &o1);)
        for (long long co = o0; co < o1; co += SUM_BLOCKS) {
            const int nc = o1 - co < SUM_BLOCKS ? (int)(o1 - co) : SUM_BLOCKS;
            double s[SUM_BLOCKS];
            sum_columns(a->dy + (size_t)co * ystride, ystride, nc, (size_t)g->OH * g->OW,
                        (size_t)a->ld, a->n, s);
            for (int c = 0; c < nc; c++)
                db[co + c] = (float)s[c];
        }
}

/* The backward pass by Winograd: the turned kernels; then each thread its groups of dW and
 * its units of dx (dy read in place); then dW from the groups, and db. */
static void conv_backward_wino(const brisk_layer *l, const brisk_backward_args *a,
                               const conv_geom *g)
{
    const int ld = a->ld;
    float *sc = a->scratch;
    const float *W = brisk_layer_data(l, 0, a->params);
    const long long pairs = (long long)g->co * g->ci;
    const long long pgrain = brisk_share_grain(a->team, pairs, 4, 64);
    brisk_share sh;
    if (a->dx) {
        brisk_share_begin(&sh, a->team, pairs, pgrain);
        for (long long p0, p1; brisk_share_next(&sh, &p0, &p1);)
            wino_kernels(W, g->ci, g->co, p0, p1, 1, sc + g->wut);
    }
    brisk_team_barrier(a->team);
    const float *Upk = a->dx ? wino_pack_u(g, sc + g->wut, g->ci, g->co, a->precision,
                                           sc + g->wpk, a->team)
                             : NULL;
    float *slot = wino_slot(g, sc, a->team);
    wino_dw_groups(g, a->x, a->n, a->dy, ld, slot, sc + g->wdu, a->team, a->precision);
    if (a->dx) {
        /* dy padded by 1, read in place. */
        const size_t row = (size_t)g->OW * (size_t)ld;
        const wino_job w = {
            .src = {a->dy, (size_t)g->OH * row, row, g->OH, g->OW, -1, ld},
            .cin = g->co, .cout = g->ci, .OH = g->H,
            .OW = g->W, .ld = ld, .U = sc + g->wut, .bias = NULL, .out = a->dx,
            .mode = a->act ? 2 : 0, .act = a->act, .act_x = a->act_x, .act_a = a->act_y,
            .precision = a->precision, .Upk = Upk, .pk_xs = g->pk_xs};
        wino_conv(g, &w, slot, a->team);
    }
    brisk_team_barrier(a->team);
    brisk_share_begin(&sh, a->team, pairs, pgrain);
    for (long long p0, p1; brisk_share_next(&sh, &p0, &p1);)
        wino_dw_finish(g, sc + g->wdu, p0, p1, brisk_layer_data(l, 0, a->grads));
    conv_db(l, a, g);
}

/* dW^T (Cin K K, Cout) = the unrolled input times dy^T, a sum over output rows (in order) of
 * products; db = sums of dy; dx (stride 1) = W_r dy_pad unrolled: one product per input row
 * with the padded dy's rows read in place (reduction over (Cout, kh, kw) in that order). */
static void conv_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const int ld = a->ld;
    const conv_geom g = conv_geometry(l, ld);
    if (g.wino) {
        conv_backward_wino(l, a, &g);
        return;
    }
    float *sc = a->scratch;
    float *xpad = sc + g.xpad, *dyt = sc + g.dyt, *dwt = sc + g.dwt;
    const int N = g.OW * ld;
    const size_t ystride = (size_t)g.OH * (size_t)N;
    const float *W = brisk_layer_data(l, 0, a->params);
    const int tiles = brisk__tiles(a->team);
    brisk_share sh;
    /* Before the products, claimed by the team: dy^T per output row ((OW ld, Cout): B of the
     * weight gradient); stride 1 with dx: dy into its zero-padded planes, the rearranged
     * weights, and the rows of the padded dy that each input row's gradient reads. */
    const int dot_dw = conv_dot_dw(&g), bf16 = a->precision == BRISK_GEMM_BF16;
    /* bf16 where the products pack B (avx512bf16), stride 1: dW (Cout, Cin K K) itself, one
     * product per output row with dy's rows as A, read in place, and the input rows that the
     * output row reads as B's columns, packed by the team (two rooms in dyt's place, taken in
     * turn). Each element's chain is the one of dW^T's products (a b = b a), with no
     * transpose of dy. */
    float *dW = brisk_layer_data(l, 0, a->grads);
    brisk_gemm_args gd = {.M = g.co, .N = g.K, .K = N, .a_rs = (ptrdiff_t)ystride, .a_ks = 1,
                          .C = dW, .ldc = g.K, .precision = a->precision};
    const size_t pf =
        g.s == 1 && bf16 && !dot_dw ? brisk__align_up(brisk_gemm_pack_b_floats(&gd)) : 0;
    const int packed_dw = pf && 2 * pf <= ystride * (size_t)g.co;
    brisk_share_begin(&sh, a->team, dot_dw || packed_dw ? 0 : g.OH, 1);
    for (long long oh, r1; brisk_share_next(&sh, &oh, &r1);)
        brisk__transpose(a->dy + (size_t)oh * N, ystride, dyt + (size_t)oh * N * g.co,
                         (size_t)g.co, 0, g.co, 0, N);
    const int direct_dx = a->dx && g.s == 1;
    float *dyp = sc + g.dyp, *wr = sc + g.wr;
    const float **drows = (const float **)(void *)(sc + g.drows);
    const size_t pplane = (size_t)g.RP * (size_t)g.CP * (size_t)ld;
    if (direct_dx) {
        conv_pad_dy(&g, a, dyp);
        brisk_share_begin(&sh, a->team, g.ci, 1);
        for (long long c, c1; brisk_share_next(&sh, &c, &c1);)
            for (int kb = 0; kb < g.KB; kb++) /* kb = (co, kh, kw): W[co][c][kh][kw] */
                wr[(size_t)c * g.KB + kb] =
                    W[((size_t)(kb / g.kk) * g.ci + (size_t)c) * g.kk + (size_t)(kb % g.kk)];
        brisk_share_begin(&sh, a->team, g.H, 1);
        for (long long h, h1; brisk_share_next(&sh, &h, &h1);)
            for (int kb = 0; kb < g.KB; kb++) {
                const int co = kb / g.kk, kh = kb % g.kk / g.k, kw = kb % g.k;
                drows[(size_t)h * g.KB + kb] =
                    dyp + (size_t)co * pplane +
                    ((size_t)(h + g.p - kh + g.L) * g.CP + (size_t)(g.p - kw + g.L)) * ld;
            }
    }
    brisk_team_barrier(a->team);
    /* dW^T (K, Cout): tiles claimed by the team; each tile is one chain over the output rows'
     * products in order, then copied into the gradient slab as (Cout, Cin K K). Stride 1: a
     * tile runs all its products at once (they read dy and the input in place); stride > 1:
     * product by product, the team meeting around each unrolled block. Or, for small
     * kernels at stride 1, dot products per output channel. */
    const float *const *xrows = (const float *const *)(void *)(sc + g.xrows);
    const int rows = g.s == 1 ? 1 : g.rows;
    float *col = sc + g.col;
    if (dot_dw) {
        const unsigned csr = brisk__ftz_begin(bf16);
        brisk_share_begin(&sh, a->team, g.co, 1);
        for (long long o0, o1; brisk_share_next(&sh, &o0, &o1);)
            conv_dw_dot(&g, ld, a->n, a->dy, NULL, xrows, dW, NULL, o0, o1, bf16);
        brisk__ftz_end(bf16, csr);
    } else if (packed_dw) {
        for (int oh = 0; oh < g.OH; oh++) {
            /* Room oh % 2 was last read by row oh - 2's products, which the barrier after
             * row oh - 1's packing waited for. */
            brisk__team_pack_bt(&gd, a->team, NULL, 0, xrows + (size_t)oh * g.K,
                                dyt + (size_t)(oh % 2) * pf);
            gd.A = a->dy + (size_t)oh * N;
            gd.init = oh ? BRISK_GEMM_ACCUM : BRISK_GEMM_ZERO;
            brisk_share_begin(&sh, a->team, tiles, 1);
            for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
                int m0, m1, n0, n1;
                brisk_gemm_split(g.co, g.K, (int)t, tiles, &m0, &m1, &n0, &n1);
                brisk_gemm_block(&gd, m0, m1, n0, n1);
            }
        }
    } else {
        for (int oh0 = 0; oh0 < g.OH; oh0 += rows) {
            const int R = g.OH - oh0 < rows ? g.OH - oh0 : rows;
            if (g.s != 1) {
                brisk_share_begin(&sh, a->team, g.K, brisk_share_grain(a->team, g.K, 4, 1));
                for (long long k0, k1; brisk_share_next(&sh, &k0, &k1);)
                    conv_unroll(&g, xpad, col, ld, oh0, R, (int)k0, (int)k1);
                brisk_team_barrier(a->team);
            }
            brisk_share_begin(&sh, a->team, tiles, 1);
            for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
                int p0, p1, q0, q1;
                brisk_gemm_split(g.K, g.co, (int)t, tiles, &p0, &p1, &q0, &q1);
                for (int r0 = oh0; r0 < (g.s == 1 ? g.OH : oh0 + 1); r0 += rows) {
                    const int Rr = g.OH - r0 < rows ? g.OH - r0 : rows;
                    brisk_gemm_args gm = {
                        .M = g.K, .N = g.co, .K = Rr * N, .a_ks = 1,
                        .B = dyt + (size_t)r0 * N * g.co, .ldb = g.co, .C = dwt, .ldc = g.co,
                        .init = r0 ? BRISK_GEMM_ACCUM : BRISK_GEMM_ZERO, .precision = a->precision};
                    if (g.s == 1) {
                        gm.a_rows = xrows + (size_t)r0 * g.K;
                    } else {
                        gm.A = col;
                        gm.a_rs = Rr * N;
                    }
                    brisk_gemm_block(&gm, p0, p1, q0, q1);
                }
                for (int k = p0; g.s == 1 && k < p1; k++) /* the tile is complete */
                    for (int co = q0; co < q1; co++)
                        dW[(size_t)co * g.K + k] = dwt[(size_t)k * g.co + co];
            }
            if (g.s == 1)
                break; /* every product done, tile by tile */
            brisk_team_barrier(a->team);
        }
        if (g.s != 1) { /* into the gradient slab, after the last product */
            brisk_share_begin(&sh, a->team, tiles, 1);
            for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
                int p0, p1, q0, q1;
                brisk_gemm_split(g.K, g.co, (int)t, tiles, &p0, &p1, &q0, &q1);
                for (int k = p0; k < p1; k++)
                    for (int co = q0; co < q1; co++)
                        dW[(size_t)co * g.K + k] = dwt[(size_t)k * g.co + co];
            }
        }
    }
    conv_db(l, a, &g);
    if (!a->dx)
        return;
    if (!direct_dx) {
        conv_dx_strided(&g, a, W);
        return;
    }
    /* dx: one product per input row, every row's product of a tile by the claiming thread. */
    const int NX = g.W * ld;
    const size_t xstride = (size_t)g.H * (size_t)NX;
    brisk_share_begin(&sh, a->team, tiles, 1);
    for (long long t, t1; brisk_share_next(&sh, &t, &t1);) {
        int m0, m1, n0, n1;
        brisk_gemm_split(g.ci, NX, (int)t, tiles, &m0, &m1, &n0, &n1);
        for (int h = 0; h < g.H; h++) {
            const brisk_gemm_args gm = {
                .M = g.ci, .N = NX, .K = g.KB, .A = wr, .a_rs = g.KB, .a_ks = 1,
                .b_rows = drows + (size_t)h * g.KB, .C = a->dx + (size_t)h * NX,
                .ldc = (ptrdiff_t)xstride, .init = BRISK_GEMM_ZERO, .precision = a->precision};
            brisk_gemm_block(&gm, m0, m1, n0, n1);
            for (int c = m0; a->act && c < m1 && n0 < n1; c++) {
                const size_t o = (size_t)c * xstride + (size_t)h * NX + (size_t)n0;
                a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o,
                                      (size_t)(n1 - n0));
            }
        }
    }
}

static int conv_describe(const brisk_layer *l, char *buf, size_t size)
{
    char s[16] = "", p[16] = "";
    if (l->args[C_S] != 1)
        snprintf(s, sizeof s, ":s%d", (int)l->args[C_S]);
    if (l->args[C_P] != 0)
        snprintf(p, sizeof p, ":pad%d", (int)l->args[C_P]);
    return snprintf(buf, size, "%s:%d:%d%s%s%s", l->ops->kind, (int)l->args[C_OUT],
                    (int)l->args[C_K], s, p, l->args[C_BIAS] ? "" : ":nobias");
}

static double conv_flops(const brisk_layer *l)
{
    const double k = l->args[C_K];
    return 2.0 * l->args[C_OUT] * l->in.c * k * k * l->out.h * l->out.w;
}

const brisk_layer_ops brisk__conv_ops = {
    .kind = "conv", .parse = conv_parse, .setup = conv_setup, .scratch_bytes = conv_scratch,
    .forward = conv_forward, .backward = conv_backward, .describe = conv_describe,
    .flags = BRISK_LAYER_FUSES_ACT | BRISK_LAYER_ACT_IN_PLACE | BRISK_LAYER_FILTER_IMAGES,
    .flops = conv_flops};

/* ---- Max and average pooling ---------------------------------------------------------- */

/* args: [0] window K, [1] stride (K by default), [2] 1 for max, 0 for average. No padding. */
static int pool_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                      size_t errlen, int is_max)
{
    long k, s;
    if (argc < 1 || argc > 2 || brisk__arg_int(argv[0], NULL, 1, 64, &k) ||
        (argc == 2 && brisk__arg_int(argv[1], "s", 1, 64, &s))) {
        snprintf(err, errlen, "expected %s:K[:s<STRIDE>] with K and STRIDE in 1..64",
                 l->ops->kind);
        return -1;
    }
    l->args[0] = (double)k;
    l->args[1] = argc == 2 ? (double)s : (double)k;
    l->args[2] = is_max;
    return 0;
}

static int maxpool_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                         size_t errlen)
{
    return pool_parse(l, argc, argv, err, errlen, 1);
}

static int avgpool_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                         size_t errlen)
{
    return pool_parse(l, argc, argv, err, errlen, 0);
}

static int pool_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (needs_image(l, err, errlen))
        return -1;
    const int k = (int)l->args[0], s = (int)l->args[1];
    if (l->in.h < k || l->in.w < k) {
        snprintf(err, errlen, "a %dx%d window does not fit a %dx%d image", k, k, l->in.h,
                 l->in.w);
        return -1;
    }
    l->out = brisk_shape_img(l->in.c, (l->in.h - k) / s + 1, (l->in.w - k) / s + 1);
    l->claims = 1; /* channels claimed by the team */
    return 0;
}

/* y = the maximum of a 2x2 window, taken in the general path's order (x0, then x1, x2, x3
 * where greater), in one pass; at[i] = which of the four it is (the first of equal ones). */
static BRISK_MULTIVERSION void max4(float *restrict y, uint8_t *restrict at,
                                    const float *restrict x0, const float *restrict x1,
                                    const float *restrict x2, const float *restrict x3, int n)
{
    for (int i = 0; i < n; i += 16) { /* n: a multiple of 16 */
        const wv16 v[4] = {WLOAD(x0 + i), WLOAD(x1 + i), WLOAD(x2 + i), WLOAD(x3 + i)};
        wv16 m = v[0];
        wi16 w = {0};
        for (int p = 1; p < 4; p++) {
            const wi16 gt = v[p] > m; /* all ones where greater */
            w = (gt & p) | (w & ~gt);
            m = (wv16)(((wi16)v[p] & gt) | ((wi16)m & ~gt));
        }
        WSTORE(y + i, m);
        *(wb16 *)(void *)(at + i) = __builtin_convertvector(w, wb16);
    }
}

/* The 2x2 max pool's gradient from the recorded positions: dx at window position p gets
 * 0 + dy where p is the maximum's position, 0 + 0 elsewhere (the bits of zeroing dx and
 * routing dy). relu: a ReLU (a BRISK_LAYER_STEP_GRADIENT activation) before the pool, whose
 * gradient is folded in (its output at the maximum is y, so the gradient passes where
 * y > 0). */
static BRISK_MULTIVERSION void max4_back(float *restrict d0, float *restrict d1,
                                         float *restrict d2, float *restrict d3,
                                         const uint8_t *restrict at, const float *restrict dy,
                                         const float *restrict y, int relu, int n)
{
    const wv16 zero = {0};
    for (int i = 0; i < n; i += 16) {
        wi16 w;
        widen16(at + i, &w);
        wi16 g = (wi16)WLOAD(dy + i);
        if (relu)
            g &= WLOAD(y + i) > zero;
        WSTORE(d0 + i, zero + (wv16)(g & (w == 0)));
        WSTORE(d1 + i, zero + (wv16)(g & (w == 1)));
        WSTORE(d2 + i, zero + (wv16)(g & (w == 2)));
        WSTORE(d3 + i, zero + (wv16)(g & (w == 3)));
    }
}

/* A 2x2 max pool of stride 2 over even sizes records where each maximum was (one byte per
 * output value, in the scratch) and routes its gradient from there. */
static int pool_by_index(const brisk_layer *l)
{
    return l->args[2] && (int)l->args[0] == 2 && (int)l->args[1] == 2 && l->in.h % 2 == 0 &&
           l->in.w % 2 == 0;
}

static size_t pool_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows;
    return pool_by_index(l) ? brisk_shape_size(l->out) * (size_t)ld : 0;
}

/* Parallelize over channels; every sample row is a contiguous vector. */
static void pool_forward_channels(const brisk_layer *l, const brisk_forward_args *a,
                                  long long c0, long long c1)
{
    const int k = (int)l->args[0], s = (int)l->args[1], ld = a->ld;
    const int H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    const float inv = 1.0f / (float)(k * k);
    if (pool_by_index(l)) {
        for (long long c = c0; c < c1; c++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const float *x = a->x + (((size_t)c * H + (size_t)(oh * s)) * W +
                                             (size_t)(ow * s)) * ld;
                    const size_t o = (((size_t)c * OH + oh) * OW + ow) * ld;
                    max4(a->y + o, (uint8_t *)a->scratch + o, x, x + ld, x + (size_t)W * ld,
                         x + (size_t)W * ld + ld, ld);
                }
        return;
    }
    for (long long c = c0; c < c1; c++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float *y = a->y + (((size_t)c * OH + oh) * OW + ow) * ld;
                for (int kh = 0; kh < k; kh++)
                    for (int kw = 0; kw < k; kw++) {
                        const float *x = a->x + (((size_t)c * H + (size_t)(oh * s + kh)) * W +
                                                 (size_t)(ow * s + kw)) * ld;
                        if (kh == 0 && kw == 0)
                            memcpy(y, x, (size_t)ld * sizeof(float));
                        else if (l->args[2])
                            for (int i = 0; i < ld; i++)
                                y[i] = x[i] > y[i] ? x[i] : y[i];
                        else
                            for (int i = 0; i < ld; i++)
                                y[i] += x[i];
                    }
                if (!l->args[2])
                    for (int i = 0; i < ld; i++)
                        y[i] *= inv;
            }
}

/* Channels claimed by the team, one at a time. */
static void pool_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    brisk_share sh;
    brisk_share_begin(&sh, a->team, l->in.c, 1);
    for (long long c0, c1; brisk_share_next(&sh, &c0, &c1);)
        pool_forward_channels(l, a, c0, c1);
}

/* One window position of a max pool: where x equals the maximum y, the part of the gradient
 * not routed yet (rem) goes to dx and rem becomes 0. Bit masks, so that it vectorizes. */
static BRISK_MULTIVERSION void maxpool_route(float *restrict dx, const float *restrict x,
                                             const float *restrict y, float *restrict rem, int m)
{
    for (int i = 0; i < m; i++) {
        const uint32_t hit = 0u - (uint32_t)(x[i] == y[i]);
        uint32_t r, d;
        float f;
        memcpy(&r, &rem[i], 4);
        d = r & hit;
        r &= ~hit;
        memcpy(&f, &d, 4);
        dx[i] += f;
        memcpy(&rem[i], &r, 4);
    }
}

/* Max: the gradient goes to the first position of the window that holds the maximum; average:
 * to every position, divided by K^2. Positions in (oh, ow, kh, kw) order, so overlapping
 * windows add up in a fixed order. */
static void pool_backward_channels(const brisk_layer *l, const brisk_backward_args *a,
                                   long long c0, long long c1)
{
    if (!a->dx)
        return;
    const int k = (int)l->args[0], s = (int)l->args[1], ld = a->ld;
    const int H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    const float inv = 1.0f / (float)(k * k);
    /* Each thread its own channels. Max: per output position, in slices of 256 samples, the
     * part of dy not yet routed back (all of it, until the first window position equal to
     * the maximum takes it; branch-free, so that it vectorizes). */
    if (pool_by_index(l)) {
        const int relu = a->act && (a->act->ops->flags & BRISK_LAYER_STEP_GRADIENT);
        for (long long c = c0; c < c1; c++) {
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const size_t o = (((size_t)c * OH + oh) * OW + ow) * ld;
                    float *d = a->dx + (((size_t)c * H + (size_t)(2 * oh)) * W +
                                        (size_t)(2 * ow)) * ld;
                    max4_back(d, d + ld, d + (size_t)W * ld, d + (size_t)W * ld + ld,
                              (const uint8_t *)a->scratch + o, a->dy + o, a->y + o, relu, ld);
                }
            if (a->act && !relu) {
                const size_t o = (size_t)c * H * W * ld, cnt = (size_t)H * W * ld;
                a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o, cnt);
            }
        }
        return;
    }
    float rem[256];
    for (long long c = c0; c < c1; c++) {
        memset(a->dx + (size_t)c * H * W * ld, 0, (size_t)H * W * ld * sizeof(float));
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *dy = a->dy + (((size_t)c * OH + oh) * OW + ow) * ld;
                const float *y = a->y + (((size_t)c * OH + oh) * OW + ow) * ld;
                for (int i0 = 0; i0 < ld; i0 += 256) {
                    const int m = ld - i0 < 256 ? ld - i0 : 256;
                    if (l->args[2])
                        memcpy(rem, dy + i0, (size_t)m * sizeof(float));
                    for (int kh = 0; kh < k; kh++)
                        for (int kw = 0; kw < k; kw++) {
                            const size_t o = (((size_t)c * H + (size_t)(oh * s + kh)) * W +
                                              (size_t)(ow * s + kw)) * ld + (size_t)i0;
                            float *restrict dx = a->dx + o;
                            const float *restrict x = a->x + o, *restrict yy = y + i0;
                            if (l->args[2]) {
                                maxpool_route(dx, x, yy, rem, m);
                            } else {
                                const float *restrict g = dy + i0;
                                for (int i = 0; i < m; i++)
                                    dx[i] += g[i] * inv;
                            }
                        }
                }
            }
        if (a->act) {
            const size_t o = (size_t)c * H * W * ld, cnt = (size_t)H * W * ld;
            a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o, cnt);
        }
    }
}

/* Channels claimed by the team, one at a time. */
static void pool_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    if (!a->dx)
        return;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, l->in.c, 1);
    for (long long c0, c1; brisk_share_next(&sh, &c0, &c1);)
        pool_backward_channels(l, a, c0, c1);
}

int brisk__conv_routable(const brisk_layer *conv, const brisk_layer *act,
                         const brisk_layer *pool)
{
    if (conv->ops != &brisk__conv_ops || pool->ops != &brisk__maxpool_ops ||
        !act->ops->act_grad || !(act->ops->flags & BRISK_LAYER_STEP_GRADIENT) ||
        !pool_by_index(pool))
        return 0;
    const conv_geom g = conv_geometry(conv, 16);
    return conv_dot_dw(&g) && g.OH == pool->in.h && g.OW == pool->in.w && g.co == pool->in.c;
}

void brisk__conv_backward_routed(const brisk_layer *conv, const brisk_backward_args *a,
                                 const float *pool_dy, const float *pool_y,
                                 const void *pool_scratch)
{
    const conv_geom g = conv_geometry(conv, a->ld);
    const int bf16 = a->precision == BRISK_GEMM_BF16;
    const float *const *xrows = (const float *const *)(void *)((float *)a->scratch + g.xrows);
    float *dW = brisk_layer_data(conv, 0, a->grads);
    float *db = conv->args[C_BIAS] ? brisk_layer_data(conv, 1, a->grads) : NULL;
    /* Room for a row of dy: dyt's, which this path does not use otherwise. */
    const conv_route route = {pool_dy, pool_y, (const uint8_t *)pool_scratch,
                              (float *)a->scratch + g.dyt};
    const unsigned csr = brisk__ftz_begin(bf16);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, g.co, 1);
    for (long long o0, o1; brisk_share_next(&sh, &o0, &o1);)
        conv_dw_dot(&g, a->ld, a->n, NULL, &route, xrows, dW, db, o0, o1, bf16);
    brisk__ftz_end(bf16, csr);
}

static int pool_describe(const brisk_layer *l, char *buf, size_t size)
{
    const int k = (int)l->args[0], s = (int)l->args[1];
    if (s != k)
        return snprintf(buf, size, "%s:%d:s%d", l->ops->kind, k, s);
    return snprintf(buf, size, "%s:%d", l->ops->kind, k);
}

const brisk_layer_ops brisk__maxpool_ops = {
    .kind = "maxpool", .parse = maxpool_parse, .setup = pool_setup,
    .scratch_bytes = pool_scratch, .forward = pool_forward, .backward = pool_backward,
    .describe = pool_describe,
    .flags = BRISK_LAYER_FUSES_ACT_BACKWARD};
const brisk_layer_ops brisk__avgpool_ops = {
    .kind = "avgpool", .parse = avgpool_parse, .setup = pool_setup, .forward = pool_forward,
    .backward = pool_backward, .describe = pool_describe,
    .flags = BRISK_LAYER_FUSES_ACT_BACKWARD};

/* ---- Global average pooling: (C, H, W) -> (C, 1, 1) ----------------------------------- */

static int gap_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (needs_image(l, err, errlen))
        return -1;
    l->out = brisk_shape_img(l->in.c, 1, 1);
    l->claims = 1; /* channels claimed by the team */
    return 0;
}

static void gap_forward_channels(const brisk_layer *l, const brisk_forward_args *a,
                                 long long c0, long long c1)
{
    const int ld = a->ld, HW = l->in.h * l->in.w;
    const float inv = 1.0f / (float)HW;
    for (long long c = c0; c < c1; c++) {
        float *y = a->y + (size_t)c * ld;
        memcpy(y, a->x + (size_t)c * HW * ld, (size_t)ld * sizeof(float));
        for (int p = 1; p < HW; p++) {
            const float *x = a->x + ((size_t)c * HW + p) * ld;
            for (int i = 0; i < ld; i++)
                y[i] += x[i];
        }
        for (int i = 0; i < ld; i++)
            y[i] *= inv;
    }
}

/* Channels claimed by the team, one at a time. */
static void gap_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    brisk_share sh;
    brisk_share_begin(&sh, a->team, l->in.c, 1);
    for (long long c0, c1; brisk_share_next(&sh, &c0, &c1);)
        gap_forward_channels(l, a, c0, c1);
}

static void gap_backward_channels(const brisk_layer *l, const brisk_backward_args *a,
                                  long long c0, long long c1)
{
    if (!a->dx)
        return;
    const int ld = a->ld, HW = l->in.h * l->in.w;
    const float inv = 1.0f / (float)HW;
    for (long long c = c0; c < c1; c++) {
        const float *dy = a->dy + (size_t)c * ld;
        for (int p = 0; p < HW; p++) {
            float *dx = a->dx + ((size_t)c * HW + p) * ld;
            for (int i = 0; i < ld; i++)
                dx[i] = dy[i] * inv;
        }
        if (a->act) {
            const size_t o = (size_t)c * HW * ld, cnt = (size_t)HW * ld;
            a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o, cnt);
        }
    }
}

/* Channels claimed by the team, one at a time. */
static void gap_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    if (!a->dx)
        return;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, l->in.c, 1);
    for (long long c0, c1; brisk_share_next(&sh, &c0, &c1);)
        gap_backward_channels(l, a, c0, c1);
}

static int gap_describe(const brisk_layer *l, char *buf, size_t size)
{
    (void)l;
    return snprintf(buf, size, "gap");
}

const brisk_layer_ops brisk__gap_ops = {
    .kind = "gap", .parse = brisk__no_args, .setup = gap_setup, .forward = gap_forward,
    .backward = gap_backward, .describe = gap_describe,
    .flags = BRISK_LAYER_FUSES_ACT_BACKWARD};
