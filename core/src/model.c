#include "brisk/model.h"

#include "brisk/error.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <cblas.h>
#include <errno.h>
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

struct brisk_workspace {
    const brisk_model *model;
    int max_rows;
    float *input;                     /* (max_rows, D) */
    float *z[BRISK_MAX_LAYERS];       /* pre-activation of layer l: (max_rows, widths[l+1]) */
    float *a[BRISK_MAX_LAYERS];       /* activation of layer l (a[L-1] == z[L-1], the logits) */
    float *dz[2];                     /* ping-pong gradient buffers: (max_rows, max width) */
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

int brisk_workspace_create(const brisk_model *m, int max_rows, brisk_workspace **out)
{
    *out = NULL;
    if (max_rows < 1)
        return brisk_error_set(BRISK_EINVAL, "workspace: max_rows %d < 1", max_rows);
    brisk_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory");
    ws->model = m;
    ws->max_rows = max_rows;
    const int L = m->cfg.n_layers;
    int maxw = 0;
    size_t total = align_up((size_t)max_rows * (size_t)m->cfg.widths[0]);
    for (int l = 0; l < L; l++) {
        size_t w = (size_t)m->cfg.widths[l + 1];
        if ((int)w > maxw)
            maxw = (int)w;
        total += align_up((size_t)max_rows * w) * (l + 1 < L ? 2 : 1);
    }
    total += 2 * align_up((size_t)max_rows * (size_t)maxw);
    /* One allocation for all buffers; the first pointer owns it. */
    float *base = aligned_alloc(64, total * sizeof(float));
    if (!base) {
        free(ws);
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory (%zu floats)", total);
    }
    memset(base, 0, total * sizeof(float));
    float *p = base;
    ws->input = p;
    p += align_up((size_t)max_rows * (size_t)m->cfg.widths[0]);
    for (int l = 0; l < L; l++) {
        size_t sz = align_up((size_t)max_rows * (size_t)m->cfg.widths[l + 1]);
        ws->z[l] = p;
        p += sz;
        if (l + 1 < L) {
            ws->a[l] = p;
            p += sz;
        } else {
            ws->a[l] = ws->z[l];
        }
    }
    ws->dz[0] = p;
    ws->dz[1] = p + align_up((size_t)max_rows * (size_t)maxw);
    *out = ws;
    return BRISK_OK;
}

void brisk_workspace_destroy(brisk_workspace *ws)
{
    if (!ws)
        return;
    free(ws->input);
    free(ws);
}

float *brisk_workspace_input(brisk_workspace *ws) { return ws->input; }

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

void brisk_model_forward(const brisk_model *m, const float *params, brisk_workspace *ws, int n)
{
    BRISK_ASSERT(n >= 1 && n <= ws->max_rows);
    const int L = m->cfg.n_layers;
    const float *x = ws->input;
    for (int l = 0; l < L; l++) {
        const int in = m->cfg.widths[l], out = m->cfg.widths[l + 1];
        const float *W = params + m->tensors[2 * l].offset;     /* (out, in) */
        const float *b = params + m->tensors[2 * l + 1].offset; /* (out) */
        float *z = ws->z[l];                                    /* (n, out) */
        /* z = b (broadcast), then z += x W^T in one sgemm with beta = 1. */
        for (int i = 0; i < n; i++)
            memcpy(z + (size_t)i * out, b, (size_t)out * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in,
                    1.0f, z, out);
        if (l + 1 < L)
            act_forward(m->cfg.act, z, ws->a[l], (size_t)n * (size_t)out);
        x = ws->a[l];
    }
}

void brisk_model_loss(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels, int n,
                      float grad_scale, brisk_metrics *acc)
{
    const int L = m->cfg.n_layers, C = m->cfg.widths[L];
    const float *zl = ws->z[L - 1];
    float *dz = ws->dz[(L - 1) & 1];
    const int want_grad = grad_scale != 0.0f;
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) {
        const float *z = zl + (size_t)i * C;
        float *d = dz + (size_t)i * C;
        const int y = labels[i];
        BRISK_ASSERT(C == 1 ? y <= 1 : y < C);
        if (m->cfg.loss == BRISK_LOSS_SOFTMAX_CE) {
            /* loss = logsumexp(z) - z_y; dloss/dz = softmax(z) - onehot(y). */
            int arg = 0;
            for (int c = 1; c < C; c++)
                if (z[c] > z[arg])
                    arg = c;
            const float zmax = z[arg];
            double s = 0.0;
            for (int c = 0; c < C; c++)
                s += exp((double)(z[c] - zmax));
            loss_sum += log(s) + (double)zmax - (double)z[y];
            correct += arg == y;
            if (want_grad) {
                const double inv = 1.0 / s;
                for (int c = 0; c < C; c++)
                    d[c] = grad_scale * (float)(exp((double)(z[c] - zmax)) * inv - (c == y));
            }
            continue;
        }
        /* Per-sample loss is the mean over the C outputs (torch's 'mean' over B x C). */
        const float invC = 1.0f / (float)C;
        double ls = 0.0;
        int pred;
        if (C == 1) {
            pred = m->cfg.loss == BRISK_LOSS_BCE_LOGITS ? z[0] > 0.0f : z[0] > 0.5f;
        } else {
            pred = 0;
            for (int c = 1; c < C; c++)
                if (z[c] > z[pred])
                    pred = c;
        }
        correct += pred == y;
        for (int c = 0; c < C; c++) {
            const float t = C == 1 ? (float)y : (float)(c == y);
            if (m->cfg.loss == BRISK_LOSS_BCE_LOGITS) {
                /* Stable form: max(z, 0) - z t + log(1 + exp(-|z|)); d/dz = sigmoid(z) - t. */
                const double zc = z[c];
                ls += (zc > 0 ? zc : 0) - zc * t + log1p(exp(-fabs(zc)));
                if (want_grad)
                    d[c] = grad_scale * invC * (1.0f / (1.0f + expf(-z[c])) - t);
            } else {
                const double e = (double)z[c] - t;
                ls += e * e;
                if (want_grad)
                    d[c] = grad_scale * invC * 2.0f * (z[c] - t);
            }
        }
        loss_sum += ls / C;
    }
    acc->loss_sum += loss_sum;
    acc->correct += correct;
    acc->count += n;
}

void brisk_model_backward(const brisk_model *m, const float *params, brisk_workspace *ws, int n,
                          float *grads)
{
    const int L = m->cfg.n_layers;
    for (int l = L - 1; l >= 0; l--) {
        const int in = m->cfg.widths[l], out = m->cfg.widths[l + 1];
        const float *x = l ? ws->a[l - 1] : ws->input;  /* (n, in) */
        const float *dz = ws->dz[l & 1];                 /* (n, out) */
        float *dW = grads + m->tensors[2 * l].offset;    /* (out, in) */
        float *db = grads + m->tensors[2 * l + 1].offset; /* (out) */
        /* dW = dz^T x; db = column sums of dz. */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dz, out, x, in,
                    0.0f, dW, in);
        memcpy(db, dz, (size_t)out * sizeof(float));
        for (int i = 1; i < n; i++) {
            const float *row = dz + (size_t)i * out;
            for (int j = 0; j < out; j++)
                db[j] += row[j];
        }
        if (l == 0)
            break; /* the input needs no gradient */
        /* dx = dz W, then through the previous layer's activation. */
        float *dx = ws->dz[(l - 1) & 1];
        const float *W = params + m->tensors[2 * l].offset;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dz, out, W, in,
                    0.0f, dx, in);
        act_backward(m->cfg.act, ws->z[l - 1], ws->a[l - 1], dx, (size_t)n * (size_t)in);
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
