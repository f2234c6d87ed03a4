/* Batch normalisation (per channel over samples and positions, statistics per micro-shard)
 * and layer normalisation (per sample over all its features). Sums run in double, in a fixed
 * order, so every thread count gives the same bits. */
#include "brisk/error.h"
#include "brisk/layer.h"
#include "core_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define EPS 1e-5
#define MOMENTUM 0.1f

/* ---- BatchNorm ------------------------------------------------------------------------ */

/* torch.nn.BatchNorm2d for images, BatchNorm1d for vectors: eps 1e-5, momentum 0.1; the
 * statistics of each micro-shard normalise it (as PyTorch's DistributedDataParallel does
 * without SyncBatchNorm), and the running mean and (unbiased) variance move towards the
 * shards' average, added in shard order, once per step. Tensors: weight, bias; buffers
 * running_mean, running_var. Scratch: each channel's mean and 1/std of the last train pass. */
static int bn_setup(brisk_layer *l, char *err, size_t errlen)
{
    if (l->in.rank == 2) {
        snprintf(err, errlen, "batchnorm takes vectors and images; normalise a sequence's "
                 "positions with layernorm");
        return -1;
    }
    l->out = l->in;
    const int C = l->in.c;
    l->stats_len = 2 * (size_t)C;
    if (brisk_layer_add_tensor(l, "weight", 1, &C, BRISK_TENSOR_ONE, 0, 0, 0) < 0 ||
        brisk_layer_add_tensor(l, "bias", 1, &C, BRISK_TENSOR_ZERO, 0, 0, 0) < 0 ||
        brisk_layer_add_tensor(l, "running_mean", 1, &C, BRISK_TENSOR_ZERO, 0, 0, 1) < 0 ||
        brisk_layer_add_tensor(l, "running_var", 1, &C, BRISK_TENSOR_ONE, 0, 0, 1) < 0)
        return -1;
    l->claims = 1; /* channels claimed by the team */
    return 0;
}

static size_t bn_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)max_rows, (void)ld;
    return 2 * (size_t)l->in.c * sizeof(float);
}

static void bn_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const int C = l->in.c, HW = l->in.h * l->in.w, ld = a->ld, n = a->n;
    const float *g = brisk_layer_data(l, 0, a->params), *b = brisk_layer_data(l, 1, a->params);
    const float *rm = brisk_layer_data(l, 2, a->buffers), *rv = brisk_layer_data(l, 3, a->buffers);
    float *mean_s = a->scratch, *inv_s = (float *)a->scratch + C;
    const double cnt = (double)HW * n;
    brisk_share sh; /* channels claimed by the team */
    brisk_share_begin(&sh, a->team, C, 1);
    for (long long c, c1; brisk_share_next(&sh, &c, &c1);) {
        const float *x = a->x + (size_t)c * HW * ld;
        float *y = a->y + (size_t)c * HW * ld;
        float mean, inv;
        if (a->pass == BRISK_PASS_TRAIN) {
            double s = 0, v = 0;
            for (int p = 0; p < HW; p++)
                for (int i = 0; i < n; i++)
                    s += x[(size_t)p * ld + i];
            const double mu = s / cnt;
            for (int p = 0; p < HW; p++)
                for (int i = 0; i < n; i++) {
                    const double d = x[(size_t)p * ld + i] - mu;
                    v += d * d;
                }
            const double var = v / cnt;
            mean = (float)mu;
            inv = (float)(1.0 / sqrt(var + EPS));
            mean_s[c] = mean;
            inv_s[c] = inv;
            if (a->stats) {
                a->stats[c] = mean;
                a->stats[C + c] = (float)(cnt > 1 ? var * cnt / (cnt - 1) : var);
            }
        } else {
            mean = rm[c];
            inv = (float)(1.0 / sqrt((double)rv[c] + EPS));
        }
        const float gc = g[c], bc = b[c];
        for (size_t o = 0; o < (size_t)HW * ld; o++)
            y[o] = (x[o] - mean) * inv * gc + bc;
    }
}

static void bn_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const int C = l->in.c, HW = l->in.h * l->in.w, ld = a->ld, n = a->n;
    const float *g = brisk_layer_data(l, 0, a->params);
    float *dg = brisk_layer_data(l, 0, a->grads), *db = brisk_layer_data(l, 1, a->grads);
    const float *mean_s = a->scratch, *inv_s = (const float *)a->scratch + C;
    const double cnt = (double)HW * n;
    brisk_share sh; /* channels claimed by the team */
    brisk_share_begin(&sh, a->team, C, 1);
    for (long long c, c1; brisk_share_next(&sh, &c, &c1);) {
        const float *x = a->x + (size_t)c * HW * ld, *dy = a->dy + (size_t)c * HW * ld;
        const float mean = mean_s[c], inv = inv_s[c];
        double sdy = 0, sdyx = 0;
        for (int p = 0; p < HW; p++)
            for (int i = 0; i < n; i++) {
                const size_t o = (size_t)p * ld + i;
                sdy += dy[o];
                sdyx += (double)dy[o] * ((x[o] - mean) * inv);
            }
        dg[c] = (float)sdyx;
        db[c] = (float)sdy;
        if (!a->dx)
            continue;
        /* dx = g / std / N (N dy - sum dy - xhat sum(dy xhat)) */
        float *dx = a->dx + (size_t)c * HW * ld;
        const float k = (float)((double)g[c] * inv / cnt), a1 = (float)sdy, a2 = (float)sdyx;
        const float N = (float)cnt;
        for (size_t o = 0; o < (size_t)HW * ld; o++)
            dx[o] = k * (N * dy[o] - a1 - (x[o] - mean) * inv * a2);
    }
}

static void bn_merge(const brisk_layer *l, float *buffers, const float *const *stats, int S)
{
    const int C = l->in.c;
    float *rm = brisk_layer_data(l, 2, buffers), *rv = brisk_layer_data(l, 3, buffers);
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int s = 0; s < S; s++) {
            m += stats[s][c];
            v += stats[s][C + c];
        }
        rm[c] = (1.0f - MOMENTUM) * rm[c] + MOMENTUM * (float)(m / S);
        rv[c] = (1.0f - MOMENTUM) * rv[c] + MOMENTUM * (float)(v / S);
    }
}

static int bn_describe(const brisk_layer *l, char *buf, size_t size)
{
    (void)l;
    return snprintf(buf, size, "%s", l->ops->kind);
}

const brisk_layer_ops brisk__batchnorm_ops = {
    .kind = "batchnorm", .parse = brisk__no_args, .setup = bn_setup, .scratch_bytes = bn_scratch,
    .forward = bn_forward, .backward = bn_backward, .describe = bn_describe,
    .merge_stats = bn_merge, .flags = BRISK_LAYER_NORMALIZES | BRISK_LAYER_COUNTS_BATCHES};

/* ---- LayerNorm ------------------------------------------------------------------------ */

/* torch.nn.LayerNorm(shape of the input): each sample normalised over all its features,
 * eps 1e-5, then weight and bias of the input's shape; for a sequence, each position over its
 * C features, with weight and bias (C) (torch.nn.LayerNorm(C) on (B, T, C) tensors). Sums over features run feature by
 * feature for a block of samples at once (rows are contiguous), in feature order. Scratch:
 * per sample, mean and 1/std (floats), and two double accumulators. */
static int ln_setup(brisk_layer *l, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    l->out = l->in;
    const int shape[3] = {l->in.c, l->in.h, l->in.w}, nd = l->in.rank == 3 ? 3 : 1;
    if (brisk_layer_add_tensor(l, "weight", nd, shape, BRISK_TENSOR_ONE, 0, 0, 0) < 0 ||
        brisk_layer_add_tensor(l, "bias", nd, shape, BRISK_TENSOR_ZERO, 0, 0, 0) < 0)
        return -1;
    l->claims = 1; /* columns and features claimed by the team */
    return 0;
}

static size_t ln_scratch(const brisk_layer *l, int max_rows, int ld)
{
    (void)l, (void)max_rows;
    return 2 * (size_t)ld * sizeof(float) + 2 * (size_t)ld * sizeof(double);
}

typedef struct ln_scratch_view {
    float *mean, *inv;
    double *s1, *s2;
} ln_scratch_view;

static ln_scratch_view ln_view(void *scratch, int ld)
{
    ln_scratch_view v;
    v.mean = scratch;
    v.inv = v.mean + ld;
    v.s1 = (double *)(void *)(v.inv + ld);
    v.s2 = v.s1 + ld;
    return v;
}

/* Columns [i0, i1) (samples, or positions of a sequence). */
static void ln_forward_cols(const brisk_layer *l, const brisk_forward_args *a, long long i0,
                            long long i1)
{
    const size_t F = brisk_shape_features(l->in), ld = (size_t)a->ld;
    const float *w = brisk_layer_data(l, 0, a->params), *b = brisk_layer_data(l, 1, a->params);
    const ln_scratch_view sv = ln_view(a->scratch, a->ld);
    for (long long i = i0; i < i1; i++)
        sv.s1[i] = sv.s2[i] = 0;
    for (size_t f = 0; f < F; f++)
        for (long long i = i0; i < i1; i++)
            sv.s1[i] += a->x[f * ld + (size_t)i];
    for (long long i = i0; i < i1; i++)
        sv.s1[i] /= (double)F;
    for (size_t f = 0; f < F; f++)
        for (long long i = i0; i < i1; i++) {
            const double d = a->x[f * ld + (size_t)i] - sv.s1[i];
            sv.s2[i] += d * d;
        }
    for (long long i = i0; i < i1; i++) {
        sv.mean[i] = (float)sv.s1[i];
        sv.inv[i] = (float)(1.0 / sqrt(sv.s2[i] / (double)F + EPS));
    }
    for (size_t f = 0; f < F; f++)
        for (long long i = i0; i < i1; i++) {
            const size_t o = f * ld + (size_t)i;
            a->y[o] = (a->x[o] - sv.mean[i]) * sv.inv[i] * w[f] + b[f];
        }
}

/* Columns claimed by the team, a block at a time. */
static void ln_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    brisk_share sh;
    brisk_share_begin(&sh, a->team, a->n, brisk_share_grain(a->team, a->n, 4, 16));
    for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
        ln_forward_cols(l, a, i0, i1);
}

/* dx = inv / F (F dxhat - sum dxhat - xhat sum(dxhat xhat)), dxhat = dy w, for columns
 * [i0, i1): sums over features. */
static void ln_dx_cols(const brisk_layer *l, const brisk_backward_args *a, long long i0,
                       long long i1)
{
    const size_t F = brisk_shape_features(l->in), ld = (size_t)a->ld;
    const float *w = brisk_layer_data(l, 0, a->params);
    const ln_scratch_view sv = ln_view(a->scratch, a->ld);
    for (long long i = i0; i < i1; i++)
        sv.s1[i] = sv.s2[i] = 0;
    for (size_t f = 0; f < F; f++)
        for (long long i = i0; i < i1; i++) {
            const size_t o = f * ld + (size_t)i;
            const double dxh = (double)a->dy[o] * w[f];
            sv.s1[i] += dxh;
            sv.s2[i] += dxh * ((a->x[o] - sv.mean[i]) * sv.inv[i]);
        }
    for (size_t f = 0; f < F; f++)
        for (long long i = i0; i < i1; i++) {
            const size_t o = f * ld + (size_t)i;
            const float xhat = (a->x[o] - sv.mean[i]) * sv.inv[i];
            a->dx[o] = sv.inv[i] / (float)F *
                       ((float)F * a->dy[o] * w[f] - (float)sv.s1[i] - xhat * (float)sv.s2[i]);
        }
}

static void ln_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const size_t F = brisk_shape_features(l->in), ld = (size_t)a->ld;
    float *dw = brisk_layer_data(l, 0, a->grads), *db = brisk_layer_data(l, 1, a->grads);
    const ln_scratch_view sv = ln_view(a->scratch, a->ld);
    /* dw, db: sums over samples, features claimed by the team. */
    brisk_share sh;
    brisk_share_begin(&sh, a->team, (long long)F,
                      brisk_share_grain(a->team, (long long)F, 4, 1));
    for (long long f0, f1; brisk_share_next(&sh, &f0, &f1);)
        for (long long f = f0; f < f1; f++) {
            double sw = 0, sb = 0;
            for (int i = 0; i < a->n; i++) {
                const size_t o = (size_t)f * ld + (size_t)i;
                sw += (double)a->dy[o] * ((a->x[o] - sv.mean[i]) * sv.inv[i]);
                sb += a->dy[o];
            }
            dw[f] = (float)sw;
            db[f] = (float)sb;
        }
    if (!a->dx)
        return;
    /* dx: columns claimed by the team. */
    brisk_share_begin(&sh, a->team, a->n, brisk_share_grain(a->team, a->n, 4, 16));
    for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
        ln_dx_cols(l, a, i0, i1);
}

static int ln_describe(const brisk_layer *l, char *buf, size_t size)
{
    (void)l;
    return snprintf(buf, size, "%s", l->ops->kind);
}

const brisk_layer_ops brisk__layernorm_ops = {
    .kind = "layernorm", .parse = brisk__no_args, .setup = ln_setup, .scratch_bytes = ln_scratch,
    .forward = ln_forward, .backward = ln_backward, .describe = ln_describe,
    .flags = BRISK_LAYER_NORMALIZES};
