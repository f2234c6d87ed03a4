/* Sequence layers: the token embedding, the learned position embedding and causal multi-head
 * self-attention. Their data are sequences, (C, T) per sample, with positions as columns
 * (brisk/layer.h): position t of sample i is column i T + t, its C features one column. */
#include "brisk/error.h"
#include "brisk/gemm.h"
#include "brisk/layer.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int needs_sequence(const brisk_layer *l, char *err, size_t errlen)
{
    if (l->in.rank == 2)
        return 0;
    snprintf(err, errlen, "%s needs a sequence input (positions, features): put embed:V:C "
             "first, on token data", l->ops->kind);
    return -1;
}

/* ---- Token embedding ------------------------------------------------------------------ */

/* embed:V:C: token ids (1, T) -> (C, T), y[:, j] = W[token j], W (V, C) as torch.nn.Embedding.
 * args: [0] V, [1] C. The ids arrive as floats (exact up to 2^24); one outside 0..V-1 (which
 * the trainer refuses before a pass) reads row 0 rather than memory beyond the table. The
 * gradient of row v sums the columns holding v in column order; each thread owns a range of
 * rows, so the order is the same for any team. */
static int embed_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                       size_t errlen)
{
    long v, c;
    if (argc != 2 || brisk__arg_int(argv[0], NULL, 1, 1 << 24, &v) ||
        brisk__arg_int(argv[1], NULL, 1, 65536, &c)) {
        snprintf(err, errlen, "expected embed:VOCAB:CHANNELS with VOCAB in 1..%d and CHANNELS "
                 "in 1..65536", 1 << 24);
        return -1;
    }
    l->args[0] = (double)v;
    l->args[1] = (double)c;
    return 0;
}

static int embed_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (l->in.rank != 2 || l->in.c != 1) {
        snprintf(err, errlen, "embed needs token ids, one per position (a sequence of T "
                 "positions with 1 feature: token data)");
        return -1;
    }
    const int V = (int)l->args[0], C = (int)l->args[1];
    l->out = brisk_shape_seq(C, l->in.w);
    const int shape[2] = {V, C};
    return brisk_layer_add_tensor(l, "weight", 2, shape, BRISK_TENSOR_EMBEDDING, 0, 0, 0) < 0
               ? -1 : 0;
}

static int token_of(float x, int V)
{
    return x >= 0.0f && x < (float)V ? (int)x : 0;
}

#define EMBED_BLOCK 16

static void embed_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const int V = (int)l->args[0], C = (int)l->args[1];
    const size_t ld = (size_t)a->ld;
    const float *W = brisk_layer_data(l, 0, a->params);
    long long j0, j1;
    brisk_team_range(a->team, a->n, &j0, &j1);
    for (long long jb = j0; jb < j1; jb += EMBED_BLOCK) {
        const int w = (int)(j1 - jb < EMBED_BLOCK ? j1 - jb : EMBED_BLOCK);
        const float *row[EMBED_BLOCK];
        for (int j = 0; j < w; j++)
            row[j] = W + (size_t)token_of(a->x[jb + j], V) * (size_t)C;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < w; j++)
                a->y[(size_t)c * ld + (size_t)jb + (size_t)j] = row[j][c];
    }
}

static void embed_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const int V = (int)l->args[0], C = (int)l->args[1];
    const size_t ld = (size_t)a->ld;
    float *dW = brisk_layer_data(l, 0, a->grads);
    long long v0, v1;
    brisk_team_range(a->team, V, &v0, &v1);
    if (!l->shared) /* otherwise the head that shares the table wrote its gradient first */
        memset(dW + (size_t)v0 * C, 0, (size_t)(v1 - v0) * (size_t)C * sizeof(float));
    for (int j = 0; j < a->n; j++) {
        const int v = token_of(a->x[j], V);
        if (v < v0 || v >= v1)
            continue;
        float *row = dW + (size_t)v * (size_t)C;
        for (int c = 0; c < C; c++)
            row[c] += a->dy[(size_t)c * ld + (size_t)j];
    }
    if (a->dx) { /* token ids have no gradient */
        long long i0, i1;
        brisk_team_range(a->team, (long long)ld, &i0, &i1);
        memset(a->dx + i0, 0, (size_t)(i1 - i0) * sizeof(float));
    }
}

static int embed_describe(const brisk_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "embed:%d:%d", (int)l->args[0], (int)l->args[1]);
}

const brisk_layer_ops brisk__embed_ops = {
    .kind = "embed", .parse = embed_parse, .setup = embed_setup, .forward = embed_forward,
    .backward = embed_backward, .describe = embed_describe, .flags = BRISK_LAYER_EMBEDDING};

/* ---- Learned position embedding -------------------------------------------------------- */

/* posembed[:MAXT]: y[:, i T + t] = x[:, i T + t] + P[t], P (MAXT, C) (GPT-2's wpe; MAXT
 * defaults to the input's T, and only rows 0..T-1 are used). args: [0] MAXT (0: T). */
static int posembed_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                          size_t errlen)
{
    long t = 0;
    if (argc > 1 || (argc == 1 && brisk__arg_int(argv[0], NULL, 1, 1 << 20, &t))) {
        snprintf(err, errlen, "expected posembed[:MAXT] with MAXT in 1..%d (the table's rows; "
                 "default the input's positions)", 1 << 20);
        return -1;
    }
    l->args[0] = (double)t;
    return 0;
}

static int posembed_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (needs_sequence(l, err, errlen))
        return -1;
    const int T = l->in.w, maxT = l->args[0] > 0 ? (int)l->args[0] : T;
    if (maxT < T) {
        snprintf(err, errlen, "a table of %d positions for sequences of %d", maxT, T);
        return -1;
    }
    l->out = l->in;
    const int shape[2] = {maxT, l->in.c};
    return brisk_layer_add_tensor(l, "weight", 2, shape, BRISK_TENSOR_EMBEDDING, 0, 0, 0) < 0
               ? -1 : 0;
}

static void posembed_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const int C = l->in.c, T = a->positions, S = a->n / T;
    const size_t ld = (size_t)a->ld;
    const float *P = brisk_layer_data(l, 0, a->params);
    long long c0, c1;
    brisk_team_range(a->team, C, &c0, &c1);
    for (long long c = c0; c < c1; c++) {
        const float *x = a->x + (size_t)c * ld;
        float *y = a->y + (size_t)c * ld;
        for (int i = 0; i < S; i++)
            for (int t = 0; t < T; t++)
                y[i * T + t] = x[i * T + t] + P[(size_t)t * C + (size_t)c];
    }
}

static void posembed_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const int C = l->in.c, T = a->positions, S = a->n / T;
    const int maxT = brisk_layer_tensor(l, 0)->shape[0];
    const size_t ld = (size_t)a->ld;
    float *dP = brisk_layer_data(l, 0, a->grads);
    long long c0, c1;
    brisk_team_range(a->team, C, &c0, &c1);
    for (long long c = c0; c < c1; c++) {
        const float *dy = a->dy + (size_t)c * ld;
        for (int t = 0; t < maxT; t++) { /* sums over samples, in sample order */
            float s = 0.0f;
            for (int i = 0; t < T && i < S; i++)
                s += dy[i * T + t];
            dP[(size_t)t * C + (size_t)c] = s;
        }
        if (a->dx)
            memcpy(a->dx + (size_t)c * ld, dy, ld * sizeof(float));
    }
}

static int posembed_describe(const brisk_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "posembed:%d", brisk_layer_tensor(l, 0)->shape[0]);
}

const brisk_layer_ops brisk__posembed_ops = {
    .kind = "posembed", .parse = posembed_parse, .setup = posembed_setup,
    .forward = posembed_forward, .backward = posembed_backward, .describe = posembed_describe};

/* ---- Causal multi-head self-attention -------------------------------------------------- */

/* attention:H[:drop<P>]: GPT-2's causal self-attention (nanoGPT's CausalSelfAttention):
 *   qkv = W_attn x + b_attn (3C rows: q, k, v), per head h of hd = C / H features:
 *   att = softmax(q_h^T k_h / sqrt(hd)) over the positions s <= t (causal), dropout(att),
 *   y_h = v_h att^T, out = W_proj y + b_proj.
 * Tensors "c_attn.weight" (3C, C), "c_attn.bias", "c_proj.weight" (C, C), "c_proj.bias".
 *
 * The work of the heads is in units of one (sample, head), shared out among the team; a unit
 * runs its products single-threaded through brisk_gemm_block (so its results do not depend on
 * the team), over the causal part only: blocks of ATT_BLOCK positions skip what the mask
 * removes. Attention weights are kept transposed, att^T (s, t) per unit, so that the masked
 * softmax over s vectorises across t, and both of the forward's products read the arrays as
 * they lie. The backward pass writes dq, dk, dv over q, k, v (each unit its own part), and
 * needs transposed copies of two (T, hd) blocks per unit.
 *
 * Dropout on the attention weights is counter-based: element (s, t) of head h of the sample
 * at position i of step k's batch draws from a key of (seed, k) and the counter
 * ((i H + h) T + t) T + s. */
#define ATT_SLOTS 16  /* team members with a temporary slot; more than that get no units */
#define ATT_BLOCK 32  /* positions per block of the causal products */

enum { A_HEADS, A_DROP };

static int attention_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                           size_t errlen)
{
    long h;
    l->args[A_DROP] = 0;
    if (argc < 1 || argc > 2 || brisk__arg_int(argv[0], NULL, 1, 4096, &h)) {
        snprintf(err, errlen, "expected attention:HEADS[:drop<P>] with HEADS in 1..4096");
        return -1;
    }
    if (argc == 2) {
        char *end = NULL;
        const double p = strncmp(argv[1], "drop", 4) ? -1 : strtod(argv[1] + 4, &end);
        if (!end || end == argv[1] + 4 || *end || !(p >= 0 && p < 1)) {
            snprintf(err, errlen, "'%s': expected drop<P> with P in [0, 1) (dropout on the "
                     "attention weights)", argv[1]);
            return -1;
        }
        l->args[A_DROP] = p;
    }
    l->args[A_HEADS] = (double)h;
    return 0;
}

static int attention_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (needs_sequence(l, err, errlen))
        return -1;
    const int C = l->in.c, H = (int)l->args[A_HEADS];
    if (C % H) {
        snprintf(err, errlen, "%d features do not split into %d heads", C, H);
        return -1;
    }
    l->out = l->in;
    const int w_attn[2] = {3 * C, C}, b_attn = 3 * C, w_proj[2] = {C, C};
    if (brisk_layer_add_tensor(l, "c_attn.weight", 2, w_attn, BRISK_TENSOR_FAN, C, 3 * C, 0) < 0 ||
        brisk_layer_add_tensor(l, "c_attn.bias", 1, &b_attn, BRISK_TENSOR_ZERO, 0, 0, 0) < 0 ||
        brisk_layer_add_tensor(l, "c_proj.weight", 2, w_proj, BRISK_TENSOR_FAN, C, C, 0) < 0 ||
        brisk_layer_add_tensor(l, "c_proj.bias", 1, &C, BRISK_TENSOR_ZERO, 0, 0, 0) < 0)
        return -1;
    return 0;
}

/* The scratch: xr (cols, rs) the input row-major; qkv (3C, ld), overwritten by dq, dk, dv in
 * backward; att (units, T, T) each unit's att^T; y (C, ld) the heads' outputs, then their
 * gradient; yr (cols, rs) y row-major; then ATT_SLOTS slots of 2 T^2 + 4 T hd floats. Offsets
 * in floats, each 64-byte aligned. */
typedef struct att_geom {
    int C, H, hd, T, rs;
    size_t xr, qkv, att, y, yr, wt, slots, slot, total;
    brisk_gemm_precision precision; /* the pass's (not part of the layout) */
} att_geom;

static att_geom att_layout(const brisk_layer *l, int ld)
{
    const int max_cols = ld; /* the same layout in scratch_bytes and in the passes */
    att_geom g;
    g.C = l->in.c;
    g.H = (int)l->args[A_HEADS];
    g.hd = g.C / g.H;
    g.T = l->in.w;
    g.rs = brisk__row_stride(g.C);
    const size_t units = (size_t)(max_cols / g.T) * (size_t)g.H, T = (size_t)g.T;
    size_t at = 0;
    g.xr = at;
    at = brisk__align_up(at + (size_t)max_cols * (size_t)g.rs);
    g.qkv = at;
    at = brisk__align_up(at + 3 * (size_t)g.C * (size_t)ld);
    g.att = at;
    at = brisk__align_up(at + units * T * T);
    g.y = at;
    at = brisk__align_up(at + (size_t)g.C * (size_t)ld);
    g.yr = at;
    at = brisk__align_up(at + (size_t)max_cols * (size_t)g.rs);
    g.wt = at; /* the projections' weights transposed, for the input gradients' products */
    at = brisk__align_up(at + 4 * (size_t)g.C * (size_t)g.C); /* (C, C) and (C, 3C) */
    g.slots = at;
    g.slot = brisk__align_up(2 * T * T + 4 * T * (size_t)g.hd);
    g.total = at + ATT_SLOTS * g.slot;
    return g;
}

static size_t attention_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows;
    return att_layout(l, ld).total * sizeof(float);
}

/* Units [*u0, *u1) of this team member (none past ATT_SLOTS), and its slot. */
static float *att_units(const att_geom *g, float *sc, const brisk_team *team, int units,
                        int *u0, int *u1)
{
    const int ith = team ? team->ith : 0, nth = team ? team->nth : 1;
    const int np = nth < ATT_SLOTS ? nth : ATT_SLOTS;
    *u0 = ith < np ? (int)((long long)units * ith / np) : 0;
    *u1 = ith < np ? (int)((long long)units * (ith + 1) / np) : 0;
    return sc + g->slots + (size_t)(ith < np ? ith : 0) * g->slot;
}

/* dst (T, hd) = the transpose of rows [0, hd) x columns [0, T) of src (ld apart), or back. */
static void to_rows(const float *src, size_t ld, float *dst, int T, int hd)
{
    for (int d = 0; d < hd; d++)
        for (int t = 0; t < T; t++)
            dst[(size_t)t * hd + d] = src[(size_t)d * ld + t];
}

static void from_rows(const float *src, float *dst, size_t ld, int T, int hd)
{
    for (int d = 0; d < hd; d++)
        for (int t = 0; t < T; t++)
            dst[(size_t)d * ld + t] = src[(size_t)t * hd + d];
}

/* The causal softmax of one unit, in place on at (s, t) = q_t . k_s (T, T): column t over
 * s <= t, of scale * at; the masked part (s > t) becomes 0. */
static BRISK_MULTIVERSION void causal_softmax(float *at, int T, float scale, float *mx,
                                              float *sum)
{
    for (int t = 0; t < T; t++) {
        mx[t] = at[t]; /* row s = 0 is in every column */
        sum[t] = 0.0f;
    }
    for (int s = 1; s < T; s++) {
        const float *row = at + (size_t)s * T;
        for (int t = s; t < T; t++)
            mx[t] = row[t] > mx[t] ? row[t] : mx[t];
    }
    for (int s = 0; s < T; s++) {
        float *row = at + (size_t)s * T;
        for (int t = s; t < T; t++) {
            const float e = brisk__expf((row[t] - mx[t]) * scale);
            row[t] = e;
            sum[t] += e;
        }
    }
    for (int t = 0; t < T; t++)
        sum[t] = 1.0f / sum[t];
    for (int s = 0; s < T; s++) {
        float *row = at + (size_t)s * T;
        for (int t = 0; t < s; t++)
            row[t] = 0.0f;
        for (int t = s; t < T; t++)
            row[t] *= sum[t];
    }
}

/* The dropout of one unit's weights: out = at * mask / (1 - p) (or, backward, the same on a
 * gradient). */
static void att_dropout(const brisk_layer *l, uint64_t key, uint64_t unit, const float *in,
                        float *out, int T)
{
    const float p = (float)l->args[A_DROP], keep_scale = 1.0f / (1.0f - p);
    for (int s = 0; s < T; s++)
        for (int t = 0; t < T; t++) {
            const uint64_t ctr = (unit * (uint64_t)T + (uint64_t)t) * (uint64_t)T + (uint64_t)s;
            const int keep = brisk_rng_uniform(key, BRISK_RNG_STREAM_DROPOUT,
                                               (uint32_t)l->index, ctr) >= p;
            out[(size_t)s * T + t] = keep ? in[(size_t)s * T + t] * keep_scale : 0.0f;
        }
}

static uint64_t att_key(const brisk_layer *l, uint64_t seed, int64_t step)
{
    return brisk_rng_u64(seed, BRISK_RNG_STREAM_DROPOUT, (uint32_t)l->index, (uint64_t)step);
}

/* One unit's forward: att^T into at, the head's output into y. */
static void unit_forward(const brisk_layer *l, const att_geom *g, const float *qkv, size_t ld,
                         float *at, float *y, float *slot, int col0, int h, int dropout,
                         uint64_t key, uint64_t unit)
{
    const int T = g->T, hd = g->hd;
    const float *q = qkv + (size_t)h * hd * ld + col0;
    const float *k = q + (size_t)g->C * ld, *v = k + (size_t)g->C * ld;
    /* at (s, t) = sum_d k[d, s] q[d, t]: only t >= s, by blocks of rows. */
    for (int s0 = 0; s0 < T; s0 += ATT_BLOCK) {
        const int s1 = s0 + ATT_BLOCK < T ? s0 + ATT_BLOCK : T;
        const brisk_gemm_args ga = {.M = T, .N = T, .K = hd, .A = k, .a_rs = 1,
                                    .a_ks = (ptrdiff_t)ld, .B = q, .ldb = (ptrdiff_t)ld,
                                    .C = at, .ldc = T, .init = BRISK_GEMM_ZERO,
                                    .precision = g->precision};
        brisk_gemm_block(&ga, s0, s1, s0, T);
    }
    float *tmp = slot;
    causal_softmax(at, T, 1.0f / sqrtf((float)hd), tmp, tmp + T);
    const float *w = at;
    if (dropout) {
        att_dropout(l, key, unit, at, slot, T);
        w = slot;
    }
    /* y (d, t) = sum_{s <= t} v[d, s] w(s, t): by blocks of columns, K up to the block's end. */
    float *yh = y + (size_t)h * hd * ld + col0;
    for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
        const int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T;
        const brisk_gemm_args gy = {.M = hd, .N = T, .K = t1, .A = v, .a_rs = (ptrdiff_t)ld,
                                    .a_ks = 1, .B = w, .ldb = T, .C = yh, .ldc = (ptrdiff_t)ld,
                                    .init = BRISK_GEMM_ZERO, .precision = g->precision};
        brisk_gemm_block(&gy, 0, hd, t0, t1);
    }
}

static void attention_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    att_geom g = att_layout(l, a->ld);
    g.precision = a->precision;
    const int C = g.C, T = g.T, n = a->n, ld = a->ld, S = n / T, units = S * g.H;
    const int ith = a->team ? a->team->ith : 0, nth = a->team ? a->team->nth : 1;
    float *sc = a->scratch;
    float *xr = sc + g.xr, *qkv = sc + g.qkv, *att = sc + g.att, *y = sc + g.y, *yr = sc + g.yr;
    const int train = a->pass == BRISK_PASS_TRAIN;
    if (train) { /* the input row-major, for c_attn's weight gradient */
        long long f0, f1;
        brisk_team_range(a->team, C, &f0, &f1);
        brisk__transpose(a->x, (size_t)ld, xr, (size_t)g.rs, (int)f0, (int)f1, 0, n);
    }
    const brisk_gemm_args gq = {.M = 3 * C, .N = n, .K = C,
                                .A = brisk_layer_data(l, 0, a->params), .a_rs = C, .a_ks = 1,
                                .B = a->x, .ldb = ld, .C = qkv, .ldc = ld,
                                .bias = brisk_layer_data(l, 1, a->params),
                                .init = BRISK_GEMM_ROWBIAS, .precision = a->precision};
    brisk_gemm(&gq, ith, nth);
    brisk_team_barrier(a->team);
    const int dropout = train && l->args[A_DROP] > 0;
    const uint64_t key = dropout ? att_key(l, a->seed, a->step) : 0;
    int u0, u1;
    float *slot = att_units(&g, sc, a->team, units, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        const int i = u / g.H, h = u % g.H;
        const uint64_t unit = (uint64_t)(a->sample0 / T + i) * (uint64_t)g.H + (uint64_t)h;
        unit_forward(l, &g, qkv, (size_t)ld, att + (size_t)u * T * T, y, slot, i * T, h,
                     dropout, key, unit);
    }
    brisk_team_barrier(a->team);
    if (train) { /* y row-major, for c_proj's weight gradient */
        long long f0, f1;
        brisk_team_range(a->team, C, &f0, &f1);
        brisk__transpose(y, (size_t)ld, yr, (size_t)g.rs, (int)f0, (int)f1, 0, n);
    }
    const brisk_gemm_args gp = {.M = C, .N = n, .K = C, .A = brisk_layer_data(l, 2, a->params),
                                .a_rs = C, .a_ks = 1, .B = y, .ldb = ld, .C = a->y, .ldc = ld,
                                .bias = brisk_layer_data(l, 3, a->params),
                                .init = BRISK_GEMM_ROWBIAS, .precision = a->precision};
    brisk_gemm(&gp, ith, nth);
}

/* Row sums of dy (M, n), for a bias gradient: each thread its rows, in column order. */
static void bias_grad(const float *dy, int M, int n, size_t ld, float *db, const brisk_team *team)
{
    long long j0, j1;
    brisk_team_range(team, M, &j0, &j1);
    brisk__row_sums(dy, ld, n, j0, j1, db);
}

/* One unit's backward: from dy (the head's output gradient, in the y buffer), dq, dk, dv over
 * q, k, v in qkv. */
static void unit_backward(const brisk_layer *l, const att_geom *g, float *qkv, size_t ld,
                          const float *at, const float *dyall, float *slot, int col0, int h,
                          int dropout, uint64_t key, uint64_t unit)
{
    const int T = g->T, hd = g->hd;
    const size_t TT = (size_t)T * T, Th = (size_t)T * hd;
    float *q = qkv + (size_t)h * hd * ld + col0;
    float *k = q + (size_t)g->C * ld, *v = k + (size_t)g->C * ld;
    const float *dy = dyall + (size_t)h * hd * ld + col0;
    float *dp = slot, *wd = slot + TT, *dyt = slot + 2 * TT, *qt = dyt + Th, *dvt = qt + Th,
          *dkt = dvt + Th;
    to_rows(dy, ld, dyt, T, hd);
    to_rows(q, ld, qt, T, hd);
    const float *w = at;
    if (dropout) {
        att_dropout(l, key, unit, at, wd, T);
        w = wd;
    }
    /* dp (s, t) = sum_d v[d, s] dy[d, t], t >= s. */
    for (int s0 = 0; s0 < T; s0 += ATT_BLOCK) {
        const int s1 = s0 + ATT_BLOCK < T ? s0 + ATT_BLOCK : T;
        const brisk_gemm_args gd = {.M = T, .N = T, .K = hd, .A = v, .a_rs = 1,
                                    .a_ks = (ptrdiff_t)ld, .B = dy, .ldb = (ptrdiff_t)ld,
                                    .C = dp, .ldc = T, .init = BRISK_GEMM_ZERO,
                                    .precision = g->precision};
        brisk_gemm_block(&gd, s0, s1, s0, T);
    }
    /* dv^T (s, d) = sum_{t >= s} w(s, t) dy[d, t]: rows by blocks, K from the block's start. */
    for (int s0 = 0; s0 < T; s0 += ATT_BLOCK) {
        const int s1 = s0 + ATT_BLOCK < T ? s0 + ATT_BLOCK : T;
        const brisk_gemm_args gv = {.M = T, .N = hd, .K = T - s0, .A = w + s0, .a_rs = T,
                                    .a_ks = 1, .B = dyt + (size_t)s0 * hd, .ldb = hd,
                                    .C = dvt, .ldc = hd, .init = BRISK_GEMM_ZERO,
                                    .precision = g->precision};
        brisk_gemm_block(&gv, s0, s1, 0, hd);
    }
    from_rows(dvt, v, ld, T, hd); /* v is read no more */
    if (dropout) /* through the dropout: the same mask on the gradient */
        att_dropout(l, key, unit, dp, dp, T);
    /* Softmax backward, with the scale of its input: ds = scale * a * (dp - sum_s a dp). */
    const float scale = 1.0f / sqrtf((float)hd);
    float *dsum = wd; /* T floats; the dropped weights are used no more */
    for (int t = 0; t < T; t++)
        dsum[t] = 0.0f;
    for (int s = 0; s < T; s++)
        for (int t = s; t < T; t++)
            dsum[t] += at[(size_t)s * T + t] * dp[(size_t)s * T + t];
    for (int s = 0; s < T; s++)
        for (int t = 0; t < T; t++) {
            const size_t o = (size_t)s * T + t;
            dp[o] = t >= s ? scale * at[o] * (dp[o] - dsum[t]) : 0.0f;
        }
    /* dq (d, t) = sum_{s <= t} k[d, s] ds(s, t), written over q (copied to qt). */
    for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
        const int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T;
        const brisk_gemm_args gq = {.M = hd, .N = T, .K = t1, .A = k, .a_rs = (ptrdiff_t)ld,
                                    .a_ks = 1, .B = dp, .ldb = T, .C = q, .ldc = (ptrdiff_t)ld,
                                    .init = BRISK_GEMM_ZERO, .precision = g->precision};
        brisk_gemm_block(&gq, 0, hd, t0, t1);
    }
    /* dk^T (s, d) = sum_{t >= s} ds(s, t) q[d, t]. */
    for (int s0 = 0; s0 < T; s0 += ATT_BLOCK) {
        const int s1 = s0 + ATT_BLOCK < T ? s0 + ATT_BLOCK : T;
        const brisk_gemm_args gk = {.M = T, .N = hd, .K = T - s0, .A = dp + s0, .a_rs = T,
                                    .a_ks = 1, .B = qt + (size_t)s0 * hd, .ldb = hd,
                                    .C = dkt, .ldc = hd, .init = BRISK_GEMM_ZERO,
                                    .precision = g->precision};
        brisk_gemm_block(&gk, s0, s1, 0, hd);
    }
    from_rows(dkt, k, ld, T, hd);
}

static void attention_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    att_geom g = att_layout(l, a->ld);
    g.precision = a->precision;
    const int C = g.C, T = g.T, n = a->n, ld = a->ld, S = n / T, units = S * g.H;
    const int ith = a->team ? a->team->ith : 0, nth = a->team ? a->team->nth : 1;
    float *sc = a->scratch;
    float *xr = sc + g.xr, *qkv = sc + g.qkv, *att = sc + g.att, *y = sc + g.y, *yr = sc + g.yr;
    /* c_proj: dW = dout yr, db, and dy (the heads' output gradient) into y, its product from
     * W_proj transposed (rows as the kernel reads them best: dense does the same). */
    float *wt = sc + g.wt;
    const brisk_gemm_args gw = {.M = C, .N = C, .K = n, .A = a->dy, .a_rs = ld, .a_ks = 1,
                                .B = yr, .ldb = g.rs, .C = brisk_layer_data(l, 2, a->grads),
                                .ldc = C, .init = BRISK_GEMM_ZERO, .precision = a->precision};
    brisk_gemm(&gw, ith, nth);
    bias_grad(a->dy, C, n, (size_t)ld, brisk_layer_data(l, 3, a->grads), a->team);
    long long r0, r1;
    brisk_team_range(a->team, C, &r0, &r1);
    brisk__transpose(brisk_layer_data(l, 2, a->params), (size_t)C, wt, (size_t)C, (int)r0,
                     (int)r1, 0, C);
    brisk_team_range(a->team, 3 * C, &r0, &r1); /* W_attn, for c_attn's below */
    brisk__transpose(brisk_layer_data(l, 0, a->params), (size_t)C, wt + (size_t)C * C,
                     (size_t)(3 * C), (int)r0, (int)r1, 0, C);
    brisk_team_barrier(a->team);
    const brisk_gemm_args gx = {.M = C, .N = n, .K = C, .A = wt, .a_rs = C, .a_ks = 1,
                                .B = a->dy, .ldb = ld, .C = y, .ldc = ld,
                                .init = BRISK_GEMM_ZERO, .precision = a->precision};
    brisk_gemm(&gx, ith, nth);
    brisk_team_barrier(a->team);
    const int dropout = l->args[A_DROP] > 0;
    const uint64_t key = dropout ? att_key(l, a->seed, a->step) : 0;
    int u0, u1;
    float *slot = att_units(&g, sc, a->team, units, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        const int i = u / g.H, h = u % g.H;
        const uint64_t unit = (uint64_t)(a->sample0 / T + i) * (uint64_t)g.H + (uint64_t)h;
        unit_backward(l, &g, qkv, (size_t)ld, att + (size_t)u * T * T, y, slot, i * T, h,
                      dropout, key, unit);
    }
    brisk_team_barrier(a->team);
    /* c_attn: dW = dqkv xr, db, dx = W^T dqkv. */
    const brisk_gemm_args gw2 = {.M = 3 * C, .N = C, .K = n, .A = qkv, .a_rs = ld, .a_ks = 1,
                                 .B = xr, .ldb = g.rs, .C = brisk_layer_data(l, 0, a->grads),
                                 .ldc = C, .init = BRISK_GEMM_ZERO, .precision = a->precision};
    brisk_gemm(&gw2, ith, nth);
    bias_grad(qkv, 3 * C, n, (size_t)ld, brisk_layer_data(l, 1, a->grads), a->team);
    if (!a->dx)
        return;
    const brisk_gemm_args gx2 = {.M = C, .N = n, .K = 3 * C, .A = wt + (size_t)C * C,
                                 .a_rs = 3 * C, .a_ks = 1, .B = qkv, .ldb = ld, .C = a->dx,
                                 .ldc = ld, .init = BRISK_GEMM_ZERO, .precision = a->precision};
    brisk_gemm(&gx2, ith, nth);
}

static int attention_describe(const brisk_layer *l, char *buf, size_t size)
{
    if (l->args[A_DROP] > 0)
        return snprintf(buf, size, "attention:%d:drop%.9g", (int)l->args[A_HEADS],
                        l->args[A_DROP]);
    return snprintf(buf, size, "attention:%d", (int)l->args[A_HEADS]);
}

/* The projections, 2 (3C C + C C) per position, and the causal products: position t's query
 * meets t + 1 keys and as many values, 4 hd (t + 1) per head. */
static double attention_flops(const brisk_layer *l)
{
    const double C = l->in.c, T = l->in.w;
    return 8.0 * C * C * T + 2.0 * C * T * (T + 1);
}

const brisk_layer_ops brisk__attention_ops = {
    .kind = "attention", .parse = attention_parse, .setup = attention_setup,
    .scratch_bytes = attention_scratch, .forward = attention_forward,
    .backward = attention_backward, .describe = attention_describe, .flops = attention_flops};
