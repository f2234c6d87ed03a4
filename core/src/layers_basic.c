/* Dense, flatten, the activations and dropout. */
#include "brisk/error.h"
#include "brisk/gemm.h"
#include "brisk/layer.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

static int same_shape(brisk_layer *l, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    l->out = l->in;
    return 0;
}

/* ---- Elementwise activations ---------------------------------------------------------- */

static int act_setup(brisk_layer *l, char *err, size_t errlen)
{
    l->claims = 1; /* rows claimed by the team (below) */
    return same_shape(l, err, errlen);
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

/* a = f(z) over n values. */
BRISK_MULTIVERSION void brisk__act_forward(int kind, double slope, const float *z, float *a,
                                           size_t n)
{
    const float s = (float)slope;
    switch (kind) {
    case BRISK__ACT_RELU:
        for (size_t i = 0; i < n; i++)
            a[i] = z[i] > 0.0f ? z[i] : 0.0f;
        break;
    case BRISK__ACT_LEAKY:
        for (size_t i = 0; i < n; i++)
            a[i] = z[i] > 0.0f ? z[i] : s * z[i];
        break;
    case BRISK__ACT_GELU: /* x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 */
        for (size_t i = 0; i < n; i++)
            a[i] = 0.5f * z[i] * (1.0f + erff(z[i] * 0.70710678118654752f));
        break;
    case BRISK__ACT_TANH:
        for (size_t i = 0; i < n; i++)
            a[i] = tanhf(z[i]);
        break;
    case BRISK__ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            a[i] = 1.0f / (1.0f + expf(-z[i]));
        break;
    case BRISK__ACT_GELU_TANH: /* GPT-2's: x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3) */
        for (size_t i = 0; i < n; i++) {
            const float x = z[i], u = GELU_K * (x + 0.044715f * x * x * x);
            a[i] = 0.5f * x * (2.0f - 2.0f / (1.0f + brisk__expf(2.0f * u)));
        }
        break;
    }
}

/* d <- d * f'(z), using a = f(z) where that is cheaper. */
BRISK_MULTIVERSION void brisk__act_backward(int kind, double slope, const float *z,
                                            const float *a, float *d, size_t n)
{
    const float s = (float)slope;
    switch (kind) {
    case BRISK__ACT_RELU: /* a > 0 exactly where z > 0; a is usually the one in cache (the
                           * layer after reads it) */
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] > 0.0f ? d[i] : 0.0f;
        break;
    case BRISK__ACT_LEAKY:
        for (size_t i = 0; i < n; i++)
            d[i] = z[i] > 0.0f ? d[i] : s * d[i];
        break;
    case BRISK__ACT_GELU: /* d/dx x Phi(x) = Phi(x) + x phi(x) */
        for (size_t i = 0; i < n; i++) {
            const float x = z[i];
            const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
            const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
            d[i] *= cdf + x * pdf;
        }
        break;
    case BRISK__ACT_TANH:
        for (size_t i = 0; i < n; i++)
            d[i] *= 1.0f - a[i] * a[i];
        break;
    case BRISK__ACT_GELU_TANH: /* (1 + th) / 2 + x (1 - th^2) / 2 du/dx */
        for (size_t i = 0; i < n; i++) {
            const float x = z[i], u = GELU_K * (x + 0.044715f * x * x * x);
            const float th = 1.0f - 2.0f / (1.0f + brisk__expf(2.0f * u));
            const float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
            d[i] *= 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
        }
        break;
    case BRISK__ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            d[i] *= a[i] * (1.0f - a[i]);
        break;
    }
}

BRISK_MULTIVERSION void brisk__row_sums_scalar(const float *x, size_t ld, int n, long long j0,
                                               long long j1, float *out)
{
    long long j = j0;
    for (; j + 8 <= j1; j += 8) {
        const float *r = x + (size_t)j * ld;
        float s[8];
        for (int q = 0; q < 8; q++)
            s[q] = r[(size_t)q * ld];
        for (int i = 1; i < n; i++)
            for (int q = 0; q < 8; q++)
                s[q] += r[(size_t)q * ld + (size_t)i];
        for (int q = 0; q < 8; q++)
            out[j + q] = s[q];
    }
    for (; j < j1; j++) {
        const float *r = x + (size_t)j * ld;
        float s = r[0];
        for (int i = 1; i < n; i++)
            s += r[i];
        out[j] = s;
    }
}

/* args[0]: which activation; args[1]: the leaky slope. */
static void act_apply(const brisk_layer *l, const float *z, float *a, size_t count)
{
    brisk__act_forward((int)l->args[0], l->args[1], z, a, count);
}

static void act_grad_apply(const brisk_layer *l, const float *z, const float *a, float *d,
                           size_t count)
{
    brisk__act_backward((int)l->args[0], l->args[1], z, a, d, count);
}

/* Unfused: rows of features (each row: ld contiguous values) claimed by the team. */
static void act_layer_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const long long F = (long long)brisk_shape_features(l->in);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, F, brisk_share_grain(a->team, F, 4, 1));
    for (long long f0, f1; brisk_share_next(&sh, &f0, &f1);) {
        const size_t o = (size_t)f0 * (size_t)a->ld, count = (size_t)(f1 - f0) * (size_t)a->ld;
        act_apply(l, a->x + o, a->y + o, count);
    }
}

static void act_layer_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    if (!a->dx)
        return;
    const long long F = (long long)brisk_shape_features(l->in);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, F, brisk_share_grain(a->team, F, 4, 1));
    for (long long f0, f1; brisk_share_next(&sh, &f0, &f1);) {
        const size_t o = (size_t)f0 * (size_t)a->ld, count = (size_t)(f1 - f0) * (size_t)a->ld;
        memcpy(a->dx + o, a->dy + o, count * sizeof(float));
        act_grad_apply(l, a->x + o, a->y + o, a->dx + o, count);
    }
}

static int act_describe(const brisk_layer *l, char *buf, size_t size)
{
    if ((int)l->args[0] == BRISK__ACT_LEAKY)
        return snprintf(buf, size, "leaky_relu:%.9g", l->args[1]);
    if ((int)l->args[0] == BRISK__ACT_GELU_TANH)
        return snprintf(buf, size, "gelu:tanh");
    return snprintf(buf, size, "%s", l->ops->kind);
}

#define ACT_PARSE(name, KIND)                                                              \
    static int name##_parse(brisk_layer *l, int argc, const char *const *argv, char *err,  \
                            size_t errlen)                                                 \
    {                                                                                      \
        l->args[0] = KIND;                                                                 \
        return brisk__no_args(l, argc, argv, err, errlen);                                 \
    }
ACT_PARSE(relu, BRISK__ACT_RELU)
ACT_PARSE(tanh, BRISK__ACT_TANH)
ACT_PARSE(sigmoid, BRISK__ACT_SIGMOID)

/* gelu (exact, torch.nn.GELU()) or gelu:tanh (the tanh approximation GPT-2 uses,
 * torch.nn.GELU(approximate='tanh')). */
static int gelu_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                      size_t errlen)
{
    l->args[0] = BRISK__ACT_GELU;
    if (argc == 1 && !strcmp(argv[0], "tanh")) {
        l->args[0] = BRISK__ACT_GELU_TANH;
        return 0;
    }
    if (argc > 0) {
        snprintf(err, errlen, "expected gelu (exact) or gelu:tanh (GPT-2's approximation)");
        return -1;
    }
    return 0;
}

static int leaky_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                       size_t errlen)
{
    l->args[0] = BRISK__ACT_LEAKY;
    l->args[1] = 0.01;
    if (argc > 1) {
        snprintf(err, errlen, "leaky_relu takes one argument, the slope");
        return -1;
    }
    if (argc == 1) {
        char *end;
        l->args[1] = strtod(argv[0], &end);
        if (end == argv[0] || *end || !(l->args[1] >= 0 && l->args[1] < 1)) {
            snprintf(err, errlen, "slope '%s' is not a number in [0, 1)", argv[0]);
            return -1;
        }
    }
    return 0;
}

#define ACT_OPS(name, kind_name, parse_fn, act_flags)                                      \
    const brisk_layer_ops brisk__##name##_ops = {                                          \
        .kind = kind_name, .parse = parse_fn, .setup = act_setup,                          \
        .forward = act_layer_forward, .backward = act_layer_backward,                      \
        .describe = act_describe, .act = act_apply, .act_grad = act_grad_apply,            \
        .flags = act_flags};
ACT_OPS(relu, "relu", relu_parse, BRISK_LAYER_STEP_GRADIENT | BRISK_LAYER_GRAD_FROM_OUTPUT)
ACT_OPS(leaky_relu, "leaky_relu", leaky_parse, 0)
ACT_OPS(gelu, "gelu", gelu_parse, 0)
ACT_OPS(tanh, "tanh", tanh_parse, BRISK_LAYER_GLOROT_INIT | BRISK_LAYER_GRAD_FROM_OUTPUT)
ACT_OPS(sigmoid, "sigmoid", sigmoid_parse,
        BRISK_LAYER_GLOROT_INIT | BRISK_LAYER_GRAD_FROM_OUTPUT)

/* ---- Dense ---------------------------------------------------------------------------- */

/* y (N, n) = b + W x, W (N, D) as torch.nn.Linear stores it. args: [0] N, [1] bias, [2] tied:
 * W is the token embedding's table (N, D) (BRISK_LAYER_TIES), as a language model's head
 * shares it with its input embedding (GPT-2's lm_head and wte). */
static int dense_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                       size_t errlen)
{
    long n;
    if (argc < 1 || argc > 3 || brisk__arg_int(argv[0], NULL, 1, 65536, &n)) {
        snprintf(err, errlen, "expected dense:UNITS[:nobias][:tied] with UNITS in 1..65536");
        return -1;
    }
    l->args[0] = (double)n;
    l->args[1] = 1;
    l->args[2] = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "nobias") && l->args[1]) {
            l->args[1] = 0;
        } else if (!strcmp(argv[i], "tied") && !l->args[2]) {
            l->args[2] = 1;
        } else {
            snprintf(err, errlen, "unknown or repeated option '%s' (nobias, tied)", argv[i]);
            return -1;
        }
    }
    return 0;
}

/* The weight in a slab: its own first tensor, or the embedding's table when tied. */
static float *dense_weight(const brisk_layer *l, const float *slab)
{
    return l->tied ? (float *)(uintptr_t)(slab + l->tied->offset) : brisk_layer_data(l, 0, slab);
}

static float *dense_bias(const brisk_layer *l, const float *slab)
{
    return l->args[1] ? brisk_layer_data(l, l->tied ? 0 : 1, slab) : NULL;
}

static int dense_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (l->in.rank == 3) {
        snprintf(err, errlen, "dense needs a vector input, and this is an image: put flatten "
                 "(or gap, flatten) before it");
        return -1;
    }
    /* On a sequence: the same weights at every position, (C, T) -> (N, T). */
    const int D = l->in.c, N = (int)l->args[0];
    l->out = l->in.rank == 2 ? brisk_shape_seq(N, l->in.w) : brisk_shape_vec(N);
    const int w[2] = {N, D};
    if (!l->args[2]) {
        l->tied = NULL;
    } else if (!l->tied) {
        snprintf(err, errlen, "tied: no token embedding (embed:V:C) before it to share weights "
                 "with");
        return -1;
    } else if (l->tied->ndim != 2 || l->tied->shape[0] != N || l->tied->shape[1] != D) {
        snprintf(err, errlen, "tied: the token embedding's table is (%d, %d), this layer's "
                 "weight would be (%d, %d)", l->tied->shape[0], l->tied->shape[1], N, D);
        return -1;
    }
    if ((!l->tied && brisk_layer_add_tensor(l, "weight", 2, w, BRISK_TENSOR_FAN, D, N, 0) < 0) ||
        (l->args[1] && brisk_layer_add_tensor(l, "bias", 1, &N, BRISK_TENSOR_ZERO, 0, 0, 0) < 0))
        return -1;
    l->claims = 1; /* every part of its passes is claimed by the team */
    return 0;
}

/* The row-major copy of the input that the weight gradient reads. */
/* Wide shards (a sequence model's B T columns) take the input gradient's product from a
 * transposed copy of W (D rows of N, made per backward pass): the kernel then broadcasts
 * from rows as it does for the forward, instead of from W's columns, one cache line for six
 * values (measured on 1024 x 1024 x 256: 59 -> 80 GFLOPS). The same fma chains, so the same
 * bits. Not for narrow shards (the MLP's 64 samples: the copy costs what it saves) nor for
 * weights over 16 MB (a GPT-2 head's table: a copy per thread). */
#define DX_COPY_MIN_COLS 128
#define DX_COPY_MAX_FLOATS ((size_t)1 << 22)

/* Both decided by ld, which the passes see as well as scratch_bytes (ld >= the columns). */
static int dense_dx_copy(const brisk_layer *l, int ld)
{
    return ld >= DX_COPY_MIN_COLS && (size_t)l->in.c * (size_t)l->args[0] <= DX_COPY_MAX_FLOATS;
}

static size_t dense_rows_floats(const brisk_layer *l, int ld)
{
    return brisk__align_up((size_t)ld * (size_t)brisk__row_stride(l->in.c));
}

static size_t dense_wt_floats(const brisk_layer *l, int ld)
{
    return dense_dx_copy(l, ld) ? brisk__align_up((size_t)l->in.c * (size_t)l->args[0]) : 0;
}

/* Where bf16 products pack B (avx512bf16), a team packs each product's B once for all its
 * tiles instead of once per tile: room for the forward's or the weight gradient's packed B
 * (never needed at once), then for the input gradient's (packed while the weight gradient's
 * tiles may still read theirs). A product over DX_COPY_MAX_FLOATS packs per tile. The room is
 * kept whatever the precision (scratch_bytes does not see it). */
static size_t dense_pack_floats(const brisk_layer *l, int ld, int which)
{
    const int D = l->in.c, N = (int)l->args[0];
    const brisk_gemm_args fw = {.M = N, .N = ld, .K = D, .precision = BRISK_GEMM_BF16};
    const brisk_gemm_args dw = {.M = N, .N = D, .K = ld, .precision = BRISK_GEMM_BF16};
    const brisk_gemm_args dx = {.M = D, .N = ld, .K = N, .precision = BRISK_GEMM_BF16};
    size_t f = which ? brisk_gemm_pack_b_floats(&dx) : brisk_gemm_pack_b_floats(&fw);
    if (!which && brisk_gemm_pack_b_floats(&dw) > f)
        f = brisk_gemm_pack_b_floats(&dw);
    return f <= DX_COPY_MAX_FLOATS ? brisk__align_up(f) : 0;
}

static size_t dense_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows;
    return (dense_rows_floats(l, ld) + dense_wt_floats(l, ld) + dense_pack_floats(l, ld, 0) +
            dense_pack_floats(l, ld, 1)) * sizeof(float);
}

/* Room `which` (0: forward and weight gradient, 1: input gradient) of the packed B. */
static float *dense_pack_room(const brisk_layer *l, void *scratch, int ld, int which)
{
    return (float *)scratch + dense_rows_floats(l, ld) + dense_wt_floats(l, ld) +
           (which ? dense_pack_floats(l, ld, 0) : 0);
}

/* The weight gradient's product dW (N, D) = dy x^T, B read from `b` (x_rows, or the row-major
 * copy of x that the forward made). */
static brisk_gemm_args dense_dw_args(const brisk_layer *l, const float *dy, int n, int ld,
                                     const float *b, int ldb, float *grads,
                                     brisk_gemm_precision precision)
{
    return (brisk_gemm_args){.M = (int)l->args[0], .N = l->in.c, .K = n, .A = dy, .a_rs = ld,
                             .a_ks = 1, .B = b, .ldb = ldb, .C = grads ? dense_weight(l, grads)
                                                                       : NULL,
                             .ldc = l->in.c, .init = BRISK_GEMM_ZERO, .precision = precision};
}

/* Whether the weight gradient's B is packed straight from x (feature-major, where it is
 * transposed as it is packed): where bf16 products pack B and the layer's room holds it, and
 * x is not the caller's rows. Then the forward makes no row-major copy. */
static int dense_dw_from_x(const brisk_layer *l, int n, int ld, const float *x_rows,
                           brisk_gemm_precision precision)
{
    if (x_rows)
        return 0;
    const brisk_gemm_args gw = dense_dw_args(l, NULL, n, ld, NULL, 0, NULL, precision);
    const size_t f = brisk_gemm_pack_b_floats(&gw);
    return f && f <= dense_pack_floats(l, ld, 0);
}

static void dense_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const int D = l->in.c, N = l->out.c, n = a->n, ld = a->ld;
    brisk_share s;
    if (a->pass == BRISK_PASS_TRAIN && !a->x_rows &&
        !dense_dw_from_x(l, n, ld, a->x_rows, a->precision)) {
        /* The input row-major, for backward: feature rows claimed by the team (no barrier:
         * the product below reads x, not the copy). */
        brisk_share_begin(&s, a->team, D, brisk_share_grain(a->team, D, 4, 16));
        for (long long f0, f1; brisk_share_next(&s, &f0, &f1);)
            brisk__transpose(a->x, (size_t)ld, a->scratch, (size_t)brisk__row_stride(D),
                             (int)f0, (int)f1, 0, n);
    }
    brisk_gemm_args g = {.M = N, .N = n, .K = D, .A = dense_weight(l, a->params),
                         .a_rs = D, .a_ks = 1, .B = a->x, .ldb = ld, .C = a->y, .ldc = ld,
                         .bias = dense_bias(l, a->params),
                         .init = l->args[1] ? BRISK_GEMM_ROWBIAS : BRISK_GEMM_ZERO,
                         .precision = a->precision};
    brisk__team_pack_b(&g, a->team, dense_pack_room(l, a->scratch, ld, 0),
                       dense_pack_floats(l, ld, 0));
    const int tiles = brisk__tiles(a->team);
    brisk_share_begin(&s, a->team, tiles, 1);
    for (long long t, t1; brisk_share_next(&s, &t, &t1);) {
        int m0, m1, n0, n1;
        brisk_gemm_split(N, n, (int)t, tiles, &m0, &m1, &n0, &n1);
        brisk_gemm_block(&g, m0, m1, n0, n1);
        for (int j = m0; a->act && j < m1 && n0 < n1; j++) /* the fused activation, same tile */
            a->act->ops->act(a->act, a->y + (size_t)j * ld + n0,
                             a->act_y + (size_t)j * ld + n0, (size_t)(n1 - n0));
    }
}

static void dense_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const int D = l->in.c, N = l->out.c, n = a->n, ld = a->ld;
    const int tiles = brisk__tiles(a->team);
    brisk_share s;
    /* dW (N, D) = dy x^T: A = dy (k = samples), B = x row-major (samples, D). */
    brisk_gemm_args gw = dense_dw_args(l, a->dy, n, ld, a->x_rows ? a->x_rows : a->scratch,
                                       a->x_rows ? a->x_rows_ld : brisk__row_stride(D),
                                       a->grads, a->precision);
    if (dense_dw_from_x(l, n, ld, a->x_rows, a->precision)) /* no row-major copy */
        brisk__team_pack_bt(&gw, a->team, a->x, (size_t)ld, NULL,
                            dense_pack_room(l, a->scratch, ld, 0));
    else
        brisk__team_pack_b(&gw, a->team, dense_pack_room(l, a->scratch, ld, 0),
                           dense_pack_floats(l, ld, 0));
    brisk_share_begin(&s, a->team, tiles, 1);
    for (long long t, t1; brisk_share_next(&s, &t, &t1);)
        brisk_gemm(&gw, (int)t, tiles);
    if (l->args[1]) { /* db = row sums of dy, in sample order */
        float *db = dense_bias(l, a->grads);
        brisk_share_begin(&s, a->team, N, brisk_share_grain(a->team, N, 2, 16));
        for (long long j0, j1; brisk_share_next(&s, &j0, &j1);)
            brisk__row_sums(a->dy, (size_t)ld, n, j0, j1, db);
    }
    if (!a->dx)
        return;
    /* dx (D, n) = W^T dy: A(m, k) = W[k][m], broadcast along k = N down the columns of W as
     * stored (on narrow shards: the lines of a column strip are reused by the next register
     * blocks while they are in L2), or from the transposed copy on wide ones; then, fused,
     * through the activation below, on the block this thread computed. */
    const float *W = dense_weight(l, a->params);
    brisk_gemm_args gx = {.M = D, .N = n, .K = N, .A = W, .a_rs = 1, .a_ks = D, .B = a->dy,
                          .ldb = ld, .C = a->dx, .ldc = ld, .init = BRISK_GEMM_ZERO,
                          .precision = a->precision};
    /* A path that packs B (bf16 on avx512bf16) packs A too, from W's columns as well as from
     * rows: the copy would only be read once more. */
    if (dense_dx_copy(l, a->ld) && !brisk_gemm_pack_b_floats(&gx)) {
        float *wt = (float *)a->scratch + dense_rows_floats(l, a->ld);
        brisk_share_begin(&s, a->team, N, brisk_share_grain(a->team, N, 4, 16));
        for (long long o0, o1; brisk_share_next(&s, &o0, &o1);) /* W's rows into wt's columns */
            brisk__transpose(W, (size_t)D, wt, (size_t)N, (int)o0, (int)o1, 0, D);
        brisk_team_barrier(a->team);
        gx.A = wt;
        gx.a_rs = N;
        gx.a_ks = 1;
    }
    brisk__team_pack_b(&gx, a->team, dense_pack_room(l, a->scratch, ld, 1),
                       dense_pack_floats(l, ld, 1));
    brisk_share_begin(&s, a->team, tiles, 1);
    for (long long t, t1; brisk_share_next(&s, &t, &t1);) {
        int m0, m1, n0, n1;
        brisk_gemm_split(D, n, (int)t, tiles, &m0, &m1, &n0, &n1);
        brisk_gemm_block(&gx, m0, m1, n0, n1);
        for (int f = m0; a->act && f < m1 && n0 < n1; f++) { /* fused, on the same tile */
            const size_t o = (size_t)f * ld + (size_t)n0;
            a->act->ops->act_grad(a->act, a->act_x + o, a->act_y + o, a->dx + o,
                                  (size_t)(n1 - n0));
        }
    }
}

static int dense_describe(const brisk_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "%s:%d%s%s", l->ops->kind, (int)l->args[0],
                    l->args[1] ? "" : ":nobias", l->args[2] ? ":tied" : "");
}

static double dense_flops(const brisk_layer *l)
{
    return 2.0 * l->in.c * l->args[0] * brisk_shape_positions(l->in);
}

const brisk_layer_ops brisk__dense_ops = {
    .kind = "dense", .parse = dense_parse, .setup = dense_setup,
    .scratch_bytes = dense_scratch, .forward = dense_forward, .backward = dense_backward,
    .describe = dense_describe,
    .flags = BRISK_LAYER_FUSES_ACT | BRISK_LAYER_ACT_IN_PLACE | BRISK_LAYER_UNIT_IMAGES |
             BRISK_LAYER_TIES,
    .flops = dense_flops};

/* ---- Flatten -------------------------------------------------------------------------- */

/* (C, H, W) -> (C H W) in (c, h, w) order, which is how the data already lie: nothing to do. */
static int flatten_setup(brisk_layer *l, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    l->out = brisk_shape_vec((int)brisk_shape_size(l->in));
    return 0;
}

static void flatten_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    (void)l, (void)a; /* an alias: never called */
}

static void flatten_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    (void)l, (void)a;
}

static int flatten_describe(const brisk_layer *l, char *buf, size_t size)
{
    (void)l;
    return snprintf(buf, size, "flatten");
}

const brisk_layer_ops brisk__flatten_ops = {
    .kind = "flatten", .parse = brisk__no_args, .setup = flatten_setup,
    .forward = flatten_forward, .backward = flatten_backward, .describe = flatten_describe,
    .flags = BRISK_LAYER_ALIAS};

/* ---- Residual (skip) connection -------------------------------------------------------- */

/* res:K: y = x + z, where z is the input of the K items before this one (the output of the
 * item K + 1 back, or the model's input); the shapes must be equal. args[0] = K. The model
 * passes z as `skip` and adds dy to z's gradient (BRISK_LAYER_SKIP); dx = dy here. */
static int res_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                     size_t errlen)
{
    long k;
    if (argc != 1 || brisk__arg_int(argv[0], NULL, 1, BRISK_MAX_LAYERS, &k)) {
        snprintf(err, errlen, "expected res:K, K the number of items it spans (1..%d)",
                 BRISK_MAX_LAYERS);
        return -1;
    }
    l->args[0] = (double)k;
    return 0;
}

static int res_setup(brisk_layer *l, char *err, size_t errlen)
{
    const int k = (int)l->args[0];
    if (k > l->index) {
        snprintf(err, errlen, "spans %d item%s, but only %d come before it", k,
                 k == 1 ? "" : "s", l->index);
        return -1;
    }
    const brisk_shape z = l->skip_in; /* the input of the k items before it */
    if (z.rank != l->in.rank || z.c != l->in.c || z.h != l->in.h || z.w != l->in.w) {
        char zs[64], xs[64];
        brisk__shape_text(z, zs, sizeof zs);
        brisk__shape_text(l->in, xs, sizeof xs);
        snprintf(err, errlen, "adds the input of item %d, of shape %s, to an output of shape "
                 "%s: they must be equal", l->index - k + 1, zs, xs);
        return -1;
    }
    l->out = l->in;
    l->claims = 1; /* rows claimed by the team (below) */
    return 0;
}

static BRISK_MULTIVERSION void add_rows(const float *x, const float *z, float *y, size_t count)
{
    for (size_t i = 0; i < count; i++)
        y[i] = x[i] + z[i];
}

/* Rows of features claimed by the team. */
static void res_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const long long F = (long long)brisk_shape_features(l->in);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, F, brisk_share_grain(a->team, F, 4, 1));
    for (long long r0, r1; brisk_share_next(&sh, &r0, &r1);) {
        const size_t o = (size_t)r0 * (size_t)a->ld;
        add_rows(a->x + o, a->skip + o, a->y + o, (size_t)(r1 - r0) * (size_t)a->ld);
    }
}

static void res_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    if (!a->dx)
        return;
    const long long F = (long long)brisk_shape_features(l->in);
    brisk_share sh;
    brisk_share_begin(&sh, a->team, F, brisk_share_grain(a->team, F, 4, 1));
    for (long long r0, r1; brisk_share_next(&sh, &r0, &r1);) {
        const size_t o = (size_t)r0 * (size_t)a->ld;
        memcpy(a->dx + o, a->dy + o, (size_t)(r1 - r0) * (size_t)a->ld * sizeof(float));
    }
}

static int res_describe(const brisk_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "res:%d", (int)l->args[0]);
}

const brisk_layer_ops brisk__res_ops = {
    .kind = "res", .parse = res_parse, .setup = res_setup, .forward = res_forward,
    .backward = res_backward, .describe = res_describe, .flags = BRISK_LAYER_SKIP};

/* ---- Dropout -------------------------------------------------------------------------- */

/* In training each unit of each sample is kept with probability 1 - p and scaled by
 * 1 / (1 - p) (torch.nn.Dropout). The mask is counter-based: unit f of the sample at position
 * s of step t's batch draws from a key of (seed, t) and the counter s F + f, so it is the same
 * whoever computes it. args[0] = p. Scratch: the mask, one byte per value. */
static int dropout_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                         size_t errlen)
{
    char *end = NULL;
    l->args[0] = argc == 1 ? strtod(argv[0], &end) : -1;
    if (argc != 1 || end == argv[0] || *end || !(l->args[0] >= 0 && l->args[0] < 1)) {
        snprintf(err, errlen, "expected dropout:P with P in [0, 1)");
        return -1;
    }
    return 0;
}

static size_t dropout_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows;
    return brisk_shape_features(l->in) * (size_t)ld;
}

static void dropout_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const size_t F = brisk_shape_features(l->in), ld = (size_t)a->ld;
    const float p = (float)l->args[0], scale = 1.0f / (1.0f - p);
    const uint64_t key = brisk_rng_u64(a->seed, BRISK_RNG_STREAM_DROPOUT, (uint32_t)l->index,
                                       (uint64_t)a->step);
    uint8_t *mask = a->scratch;
    brisk_share sh; /* rows of features claimed by the team */
    brisk_share_begin(&sh, a->team, (long long)F, brisk_share_grain(a->team, (long long)F, 4, 1));
    for (long long f0, f1; brisk_share_next(&sh, &f0, &f1);)
    for (long long f = f0; f < f1; f++)
        for (size_t i = 0; i < ld; i++) {
            const size_t o = (size_t)f * ld + i;
            const int keep = (int)i < a->n &&
                             brisk_rng_uniform(key, BRISK_RNG_STREAM_DROPOUT, (uint32_t)l->index,
                                               ((uint64_t)a->sample0 + i) * F + (uint64_t)f) >= p;
            mask[o] = (uint8_t)keep;
            a->y[o] = keep ? a->x[o] * scale : 0.0f;
        }
}

static void dropout_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    if (!a->dx)
        return;
    const size_t F = brisk_shape_features(l->in), ld = (size_t)a->ld;
    const float scale = 1.0f / (1.0f - (float)l->args[0]);
    const uint8_t *mask = a->scratch;
    brisk_share sh;
    brisk_share_begin(&sh, a->team, (long long)F, brisk_share_grain(a->team, (long long)F, 4, 1));
    for (long long f0, f1; brisk_share_next(&sh, &f0, &f1);)
        for (size_t o = (size_t)f0 * ld; o < (size_t)f1 * ld; o++)
            a->dx[o] = mask[o] ? a->dy[o] * scale : 0.0f;
}

static int dropout_describe(const brisk_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "dropout:%.9g", l->args[0]);
}

const brisk_layer_ops brisk__dropout_ops = {
    .kind = "dropout", .parse = dropout_parse, .setup = act_setup, /* claims its rows */
    .scratch_bytes = dropout_scratch, .forward = dropout_forward,
    .backward = dropout_backward, .describe = dropout_describe,
    .flags = BRISK_LAYER_EVAL_IDENTITY};
