#include "brisk/model.h"

#include "brisk/error.h"
#include "brisk/gemm.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <errno.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BRISK_ALIGN_FLOATS 16 /* 64 bytes */

struct brisk_model {
    brisk_model_config cfg;
    int n_tensors;                                /* 2 L */
    brisk_tensor_view tensors[2 * BRISK_MAX_LAYERS]; /* weight l at 2l, bias l at 2l + 1 */
    size_t n_params;                              /* P */
    size_t slab_len;                              /* P plus alignment padding */
};

/* Feature-major buffers are (width, ld); a_rm[l] is the row-major copy of a hidden layer's
 * output that the next layer's weight gradient reads as B (sample rows, unit columns). */
struct brisk_workspace {
    const brisk_model *model;
    int max_rows;
    int ld;                           /* feature-major row stride: max_rows rounded up to 16 */
    float *input;                     /* (max_rows, D) row-major, filled by the caller */
    float *input_t;                   /* (D, ld) */
    float *z[BRISK_MAX_LAYERS];       /* pre-activation of layer l: (widths[l+1], ld) */
    float *a[BRISK_MAX_LAYERS];       /* activation of layer l (a[L-1] == z[L-1], the logits) */
    float *a_rm[BRISK_MAX_LAYERS];    /* l < L-1: (max_rows, ldr[l]) row-major copy of a[l] */
    int ldr[BRISK_MAX_LAYERS];
    float *dz[2];                     /* ping-pong gradients of pre-activations: (max width, ld) */
    double *sample_loss;              /* (max_rows) each sample's loss in the last pass */
    uint8_t *sample_right;            /* (max_rows) whether its prediction was right */
};

static size_t align_up(size_t n)
{
    return (n + BRISK_ALIGN_FLOATS - 1) / BRISK_ALIGN_FLOATS * BRISK_ALIGN_FLOATS;
}

int brisk_model_parse_widths(const char *spec, brisk_model_config *cfg)
{
    int n = 0;
    const char *p = spec;
    if (!spec || !*spec)
        return brisk_error_set(BRISK_EINVAL, "model: empty layer list (expected e.g. 784-256-10)");
    for (;;) {
        char *end;
        errno = 0;
        long w = strtol(p, &end, 10);
        if (end == p || errno || w < 1 || w > 65536)
            return brisk_error_set(BRISK_EINVAL,
                                   "model '%s': layer width %d is not an integer in 1..65536",
                                   spec, n + 1);
        if (n == BRISK_MAX_LAYERS + 1)
            return brisk_error_set(BRISK_EINVAL, "model '%s': more than %d dense layers", spec,
                                   BRISK_MAX_LAYERS);
        cfg->widths[n++] = (int)w;
        if (*end == '\0')
            break;
        if (*end != '-')
            return brisk_error_set(BRISK_EINVAL,
                                   "model '%s': unexpected '%c' (widths are joined by '-')",
                                   spec, *end);
        p = end + 1;
    }
    if (n < 2)
        return brisk_error_set(BRISK_EINVAL,
                               "model '%s': needs at least an input and an output width", spec);
    cfg->n_layers = n - 1;
    return BRISK_OK;
}

int brisk_model_create(const brisk_model_config *cfg, brisk_model **out)
{
    *out = NULL;
    if (cfg->n_layers < 1 || cfg->n_layers > BRISK_MAX_LAYERS)
        return brisk_error_set(BRISK_EINVAL, "model: %d layers (1..%d allowed)", cfg->n_layers,
                               BRISK_MAX_LAYERS);
    for (int i = 0; i <= cfg->n_layers; i++)
        if (cfg->widths[i] < 1 || cfg->widths[i] > 65536)
            return brisk_error_set(BRISK_EINVAL, "model: width %d of layer %d out of 1..65536",
                                   cfg->widths[i], i);
    if (cfg->loss == BRISK_LOSS_SOFTMAX_CE && cfg->widths[cfg->n_layers] < 2)
        return brisk_error_set(BRISK_EINVAL, "model: softmax cross-entropy needs >= 2 outputs");
    brisk_model *m = calloc(1, sizeof *m);
    if (!m)
        return brisk_error_set(BRISK_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->n_tensors = 2 * cfg->n_layers;
    size_t off = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        brisk_tensor_view *w = &m->tensors[2 * l], *b = &m->tensors[2 * l + 1];
        snprintf(w->name, sizeof w->name, "dense%d.weight", l);
        w->rows = cfg->widths[l + 1];
        w->cols = cfg->widths[l];
        w->offset = off;
        off = align_up(off + (size_t)w->rows * (size_t)w->cols);
        snprintf(b->name, sizeof b->name, "dense%d.bias", l);
        b->rows = 1;
        b->cols = cfg->widths[l + 1];
        b->offset = off;
        off = align_up(off + (size_t)b->cols);
        m->n_params += (size_t)w->rows * (size_t)w->cols + (size_t)b->cols;
    }
    m->slab_len = off;
    *out = m;
    return BRISK_OK;
}

void brisk_model_destroy(brisk_model *m)
{
    free(m);
}

const brisk_model_config *brisk_model_get_config(const brisk_model *m) { return &m->cfg; }
size_t brisk_model_num_params(const brisk_model *m) { return m->n_params; }
size_t brisk_model_slab_len(const brisk_model *m) { return m->slab_len; }
int brisk_model_num_tensors(const brisk_model *m) { return m->n_tensors; }

const brisk_tensor_view *brisk_model_tensor(const brisk_model *m, int i)
{
    BRISK_ASSERT(i >= 0 && i < m->n_tensors);
    return &m->tensors[i];
}

const brisk_tensor_view *brisk_model_weight(const brisk_model *m, int layer)
{
    return brisk_model_tensor(m, 2 * layer);
}

const brisk_tensor_view *brisk_model_bias(const brisk_model *m, int layer)
{
    return brisk_model_tensor(m, 2 * layer + 1);
}

float *brisk_slab_alloc(const brisk_model *m)
{
    size_t bytes = m->slab_len * sizeof(float);
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void brisk_slab_free(float *slab)
{
    free(slab);
}

void brisk_model_init_params(const brisk_model *m, uint64_t seed, float *params)
{
    memset(params, 0, m->slab_len * sizeof(float));
    brisk_init init = m->cfg.init;
    if (init == BRISK_INIT_AUTO)
        init = (m->cfg.act == BRISK_ACT_RELU || m->cfg.act == BRISK_ACT_GELU) ? BRISK_INIT_HE
                                                                            : BRISK_INIT_GLOROT;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const brisk_tensor_view *w = brisk_model_weight(m, l);
        size_t n = (size_t)w->rows * (size_t)w->cols;
        float *p = params + w->offset;
        uint32_t sub = (uint32_t)(2 * l); /* the tensor index selects the sub-stream */
        if (init == BRISK_INIT_HE) {
            /* Kaiming normal, fan_in mode: std = sqrt(2 / fan_in) (He et al., 2015). */
            float std = sqrtf(2.0f / (float)w->cols);
            for (size_t i = 0; i < n; i++)
                p[i] = std * brisk_rng_normal(seed, BRISK_RNG_STREAM_INIT, sub, i);
        } else {
            /* Glorot uniform: a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010). */
            float a = sqrtf(6.0f / (float)(w->cols + w->rows));
            for (size_t i = 0; i < n; i++)
                p[i] = a * (2.0f * brisk_rng_uniform(seed, BRISK_RNG_STREAM_INIT, sub, i) - 1.0f);
        }
    }
}

/* Row stride of a row-major activation copy: a multiple of 16 floats that is not a multiple
 * of 4 KiB, so that the rows a product walks down do not all land in the same cache sets. */
static int row_stride(int width)
{
    int ld = (width + 15) / 16 * 16;
    return ld % 1024 == 0 ? ld + 16 : ld;
}

/* Sizes (in floats) of the workspace's buffers, in allocation order; returns the count. */
static int workspace_layout(const brisk_model *m, int max_rows, size_t *sizes)
{
    const int L = m->cfg.n_layers, ld = (max_rows + 15) / 16 * 16;
    int k = 0, maxw = 0;
    sizes[k++] = align_up((size_t)max_rows * (size_t)m->cfg.widths[0]); /* input */
    sizes[k++] = align_up((size_t)m->cfg.widths[0] * (size_t)ld);       /* input_t */
    for (int l = 0; l < L; l++) {
        const int w = m->cfg.widths[l + 1];
        maxw = w > maxw ? w : maxw;
        sizes[k++] = align_up((size_t)w * (size_t)ld); /* z */
        if (l + 1 < L) {
            sizes[k++] = align_up((size_t)w * (size_t)ld);                    /* a */
            sizes[k++] = align_up((size_t)max_rows * (size_t)row_stride(w)); /* a_rm */
        }
    }
    sizes[k++] = align_up((size_t)maxw * (size_t)ld);
    sizes[k++] = align_up((size_t)maxw * (size_t)ld);
    return k;
}

size_t brisk_workspace_bytes(const brisk_model *m, int max_rows)
{
    size_t sizes[3 * BRISK_MAX_LAYERS + 4], total = 0;
    const int k = workspace_layout(m, max_rows, sizes);
    for (int i = 0; i < k; i++)
        total += sizes[i];
    return total * sizeof(float);
}

int brisk_workspace_create(const brisk_model *m, int max_rows, brisk_workspace **out)
{
    *out = NULL;
    if (max_rows < 1 || max_rows > (1 << 24))
        return brisk_error_set(BRISK_EINVAL, "workspace: max_rows %d out of 1..%d", max_rows,
                               1 << 24);
    brisk_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory");
    ws->model = m;
    ws->max_rows = max_rows;
    ws->ld = (max_rows + 15) / 16 * 16;
    const int L = m->cfg.n_layers;
    size_t sizes[3 * BRISK_MAX_LAYERS + 4], total = 0;
    const int nbuf = workspace_layout(m, max_rows, sizes);
    for (int i = 0; i < nbuf; i++)
        total += sizes[i];
    /* One allocation for all buffers; input owns it. Zeroed, so that the padding columns
     * that masked loads skip are defined memory all the same. */
    float *p = aligned_alloc(64, total * sizeof(float));
    ws->sample_loss = malloc((size_t)max_rows * sizeof *ws->sample_loss);
    ws->sample_right = malloc((size_t)max_rows);
    if (!p || !ws->sample_loss || !ws->sample_right) {
        free(p);
        free(ws->sample_loss);
        free(ws->sample_right);
        free(ws);
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory (%zu floats)", total);
    }
    memset(p, 0, total * sizeof(float));
    int k = 0;
    ws->input = p;
    p += sizes[k++];
    ws->input_t = p;
    p += sizes[k++];
    for (int l = 0; l < L; l++) {
        ws->z[l] = p;
        p += sizes[k++];
        if (l + 1 < L) {
            ws->a[l] = p;
            p += sizes[k++];
            ws->a_rm[l] = p;
            ws->ldr[l] = row_stride(m->cfg.widths[l + 1]);
            p += sizes[k++];
        } else {
            ws->a[l] = ws->z[l];
        }
    }
    ws->dz[0] = p;
    p += sizes[k++];
    ws->dz[1] = p;
    *out = ws;
    return BRISK_OK;
}

void brisk_workspace_destroy(brisk_workspace *ws)
{
    if (!ws)
        return;
    free(ws->input);
    free(ws->sample_loss);
    free(ws->sample_right);
    free(ws);
}

float *brisk_workspace_input(brisk_workspace *ws) { return ws->input; }
int brisk_workspace_ld(const brisk_workspace *ws) { return ws->ld; }

const float *brisk_workspace_output(const brisk_workspace *ws, int layer)
{
    BRISK_ASSERT(layer >= 0 && layer < ws->model->cfg.n_layers);
    return ws->a[layer];
}

/* Activation forward, a = f(z), over n values. */
BRISK_MULTIVERSION static void act_forward(brisk_act act, const float *z, float *a, size_t n)
{
    switch (act) {
    case BRISK_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            a[i] = z[i] > 0.0f ? z[i] : 0.0f;
        break;
    case BRISK_ACT_GELU: /* x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 */
        for (size_t i = 0; i < n; i++)
            a[i] = 0.5f * z[i] * (1.0f + erff(z[i] * 0.70710678118654752f));
        break;
    case BRISK_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            a[i] = tanhf(z[i]);
        break;
    case BRISK_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            a[i] = 1.0f / (1.0f + expf(-z[i]));
        break;
    }
}

/* Activation backward in place: d <- d * f'(z), using a = f(z) where that is cheaper. */
BRISK_MULTIVERSION static void act_backward(brisk_act act, const float *z, const float *a, float *d, size_t n)
{
    switch (act) {
    case BRISK_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            d[i] = z[i] > 0.0f ? d[i] : 0.0f;
        break;
    case BRISK_ACT_GELU: /* d/dx x Phi(x) = Phi(x) + x phi(x) */
        for (size_t i = 0; i < n; i++) {
            float x = z[i];
            float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
            d[i] *= cdf + x * pdf;
        }
        break;
    case BRISK_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            d[i] *= 1.0f - a[i] * a[i];
        break;
    case BRISK_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            d[i] *= a[i] * (1.0f - a[i]);
        break;
    }
}

/* dst[c * ldd + r] = src[r * lds + c] for r in [r0, r1), c in [c0, c1): a transposed copy of
 * a block. 8 x 8 tiles in registers (AVX2 shuffles) where the CPU has them; data movement
 * only, so every version gives the same result. */
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
__attribute__((target("avx512f"))) static void transpose16x16(const float *src, size_t lds,
                                                              float *dst, size_t ldd)
{
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
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
        _mm512_storeu_ps(dst + (size_t)c * ldd, _mm512_shuffle_f32x4(x0, y0, 0x88));
        _mm512_storeu_ps(dst + (size_t)(4 + c) * ldd, _mm512_shuffle_f32x4(x0, y0, 0xDD));
        _mm512_storeu_ps(dst + (size_t)(8 + c) * ldd, _mm512_shuffle_f32x4(x1, y1, 0x88));
        _mm512_storeu_ps(dst + (size_t)(12 + c) * ldd, _mm512_shuffle_f32x4(x1, y1, 0xDD));
    }
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

static void transpose_block(const float *src, size_t lds, float *dst, size_t ldd, int r0,
                            int r1, int c0, int c1)
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

void brisk_model_forward(const brisk_model *m, const float *params, brisk_workspace *ws, int n,
                         brisk_pass pass, const brisk_team *team)
{
    BRISK_ASSERT(n >= 1 && n <= ws->max_rows);
    const int L = m->cfg.n_layers, D = m->cfg.widths[0], ld = ws->ld;
    const int ith = team ? team->ith : 0, nth = team ? team->nth : 1;
    /* The input, feature-major; parallelize over samples. */
    long long i0, i1;
    brisk_team_range(team, n, &i0, &i1);
    transpose_block(ws->input, (size_t)D, ws->input_t, (size_t)ld, (int)i0, (int)i1, 0, D);
    brisk_team_barrier(team);
    const float *x = ws->input_t; /* (in, ld) */
    for (int l = 0; l < L; l++) {
        const int in = m->cfg.widths[l], out = m->cfg.widths[l + 1];
        /* z (out, n) = b + W x: W (out, in) as stored, broadcast along k = in. */
        const brisk_gemm_args g = {.M = out, .N = n, .K = in,
                                   .A = params + m->tensors[2 * l].offset, .a_rs = in, .a_ks = 1,
                                   .B = x, .ldb = ld, .C = ws->z[l], .ldc = ld,
                                   .bias = params + m->tensors[2 * l + 1].offset,
                                   .init = BRISK_GEMM_ROWBIAS};
        int m0, m1, n0, n1;
        brisk_gemm_split(out, n, ith, nth, &m0, &m1, &n0, &n1);
        brisk_gemm_block(&g, m0, m1, n0, n1);
        if (l + 1 < L && m0 < m1 && n0 < n1) {
            /* Activation, and the row-major copy for the next weight gradient, of the block
             * this thread computed. */
            for (int j = m0; j < m1; j++)
                act_forward(m->cfg.act, ws->z[l] + (size_t)j * ld + n0,
                            ws->a[l] + (size_t)j * ld + n0, (size_t)(n1 - n0));
            if (pass == BRISK_PASS_TRAIN)
                transpose_block(ws->a[l], (size_t)ld, ws->a_rm[l], (size_t)ws->ldr[l], m0, m1,
                                n0, n1);
        }
        brisk_team_barrier(team);
        x = ws->a[l];
    }
}

/* Sample i's loss (and whether the prediction was right); with want_grad, also its gradient
 * with respect to the logits, scaled. Logits and gradients are strided by ld (feature-major). */
static double sample_loss(const brisk_model *m, const float *zi, float *di, size_t ld, int y,
                          float grad_scale, int want_grad, int *right)
{
    const int C = m->cfg.widths[m->cfg.n_layers];
    BRISK_ASSERT(C == 1 ? y <= 1 : y < C);
    if (m->cfg.loss == BRISK_LOSS_SOFTMAX_CE) {
        /* loss = logsumexp(z) - z_y; dloss/dz = softmax(z) - onehot(y). */
        int arg = 0;
        for (int c = 1; c < C; c++)
            if (zi[c * ld] > zi[arg * ld])
                arg = c;
        const float zmax = zi[arg * ld];
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += exp((double)(zi[c * ld] - zmax));
        *right = arg == y;
        if (want_grad) {
            const double inv = 1.0 / s;
            for (int c = 0; c < C; c++)
                di[c * ld] = grad_scale * (float)(exp((double)(zi[c * ld] - zmax)) * inv - (c == y));
        }
        return log(s) + (double)zmax - (double)zi[(size_t)y * ld];
    }
    /* Per-sample loss is the mean over the C outputs (torch's 'mean' over B x C). */
    const float invC = 1.0f / (float)C;
    double ls = 0.0;
    int pred;
    if (C == 1) {
        pred = m->cfg.loss == BRISK_LOSS_BCE_LOGITS ? zi[0] > 0.0f : zi[0] > 0.5f;
    } else {
        pred = 0;
        for (int c = 1; c < C; c++)
            if (zi[c * ld] > zi[pred * ld])
                pred = c;
    }
    *right = pred == y;
    for (int c = 0; c < C; c++) {
        const float t = C == 1 ? (float)y : (float)(c == y), zc = zi[c * ld];
        if (m->cfg.loss == BRISK_LOSS_BCE_LOGITS) {
            /* Stable form: max(z, 0) - z t + log(1 + exp(-|z|)); d/dz = sigmoid(z) - t. */
            ls += (zc > 0 ? (double)zc : 0) - (double)zc * t + log1p(exp(-fabs((double)zc)));
            if (want_grad)
                di[c * ld] = grad_scale * invC * (1.0f / (1.0f + expf(-zc)) - t);
        } else {
            const double e = (double)zc - t;
            ls += e * e;
            if (want_grad)
                di[c * ld] = grad_scale * invC * 2.0f * (zc - t);
        }
    }
    return ls / C;
}

void brisk_model_loss(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels, int n,
                      float grad_scale, brisk_metrics *acc, const brisk_team *team)
{
    const int L = m->cfg.n_layers;
    const size_t ld = (size_t)ws->ld;
    const float *zl = ws->z[L - 1];   /* (C, ld) */
    float *dz = ws->dz[(L - 1) & 1];  /* (C, ld) */
    /* Parallelize over samples; each sample's loss is kept, then summed in sample order. */
    long long i0, i1;
    brisk_team_range(team, n, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        int right;
        ws->sample_loss[i] = sample_loss(m, zl + i, dz + i, ld, labels[i], grad_scale,
                                         grad_scale != 0.0f, &right);
        ws->sample_right[i] = (uint8_t)right;
    }
    brisk_team_barrier(team);
    if (team && team->ith != 0)
        return;
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) {
        loss_sum += ws->sample_loss[i];
        correct += ws->sample_right[i];
    }
    acc->loss_sum += loss_sum;
    acc->correct += correct;
    acc->count += n;
}

void brisk_model_backward(const brisk_model *m, const float *params, brisk_workspace *ws, int n,
                          float *grads, const brisk_team *team)
{
    const int L = m->cfg.n_layers, ld = ws->ld;
    const int ith = team ? team->ith : 0, nth = team ? team->nth : 1;
    for (int l = L - 1; l >= 0; l--) {
        const int in = m->cfg.widths[l], out = m->cfg.widths[l + 1];
        const float *dz = ws->dz[l & 1]; /* (out, ld) */
        /* dW (out, in) = dz x^T: A = dz (k = samples), B = x row-major (samples, in). */
        const brisk_gemm_args gw = {.M = out, .N = in, .K = n, .A = dz, .a_rs = ld, .a_ks = 1,
                                    .B = l ? ws->a_rm[l - 1] : ws->input,
                                    .ldb = l ? ws->ldr[l - 1] : in,
                                    .C = grads + m->tensors[2 * l].offset, .ldc = in,
                                    .init = BRISK_GEMM_ZERO};
        brisk_gemm(&gw, ith, nth);
        /* db = row sums of dz, in sample order. */
        float *db = grads + m->tensors[2 * l + 1].offset;
        long long j0, j1;
        brisk_team_range(team, out, &j0, &j1);
        for (long long j = j0; j < j1; j++) {
            const float *row = dz + (size_t)j * ld;
            float s = row[0];
            for (int i = 1; i < n; i++)
                s += row[i];
            db[j] = s;
        }
        if (l == 0)
            break; /* the input needs no gradient */
        /* dx (in, n) = W^T dz: A(m, k) = W[k][m], broadcast along k = out down the columns
         * of W as stored (a transposed copy of W per step measured slower: the lines of a
         * column strip are reused by the next register blocks while they are in L2); then
         * through the previous layer's activation, on the block this thread computed. */
        float *dx = ws->dz[(l - 1) & 1];
        const brisk_gemm_args gx = {.M = in, .N = n, .K = out,
                                    .A = params + m->tensors[2 * l].offset, .a_rs = 1,
                                    .a_ks = in, .B = dz, .ldb = ld, .C = dx, .ldc = ld,
                                    .init = BRISK_GEMM_ZERO};
        int m0, m1, n0, n1;
        brisk_gemm_split(in, n, ith, nth, &m0, &m1, &n0, &n1);
        brisk_gemm_block(&gx, m0, m1, n0, n1);
        for (int j = m0; j < m1 && n0 < n1; j++) {
            const size_t o = (size_t)j * ld + (size_t)n0;
            act_backward(m->cfg.act, ws->z[l - 1] + o, ws->a[l - 1] + o, dx + o,
                         (size_t)(n1 - n0));
        }
        brisk_team_barrier(team);
    }
}

static const char *const act_names[] = {"relu", "gelu", "tanh", "sigmoid"};
static const char *const loss_names[] = {"ce", "bce", "mse"};

const char *brisk_act_name(brisk_act a) { return act_names[a]; }
const char *brisk_loss_name(brisk_loss l) { return loss_names[l]; }

int brisk_act_parse(const char *s)
{
    return brisk__name_index(act_names, 4, s);
}

int brisk_loss_parse(const char *s)
{
    return brisk__name_index(loss_names, 3, s);
}
