#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int brisk_dataset_synthetic(int64_t n, int d, int classes, float noise, uint64_t seed,
                            int64_t first, brisk_dataset *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || n > INT32_MAX || d < 1 || d > (1 << 24) || classes < 2 || classes > 256 ||
        first < 0 || !(noise >= 0.0f))
        return brisk_error_set(BRISK_EINVAL,
                               "synthetic data: n=%lld d=%d classes=%d noise=%g first=%lld out of "
                               "range",
                               (long long)n, d, classes, (double)noise, (long long)first);
    uint8_t *x = malloc((size_t)n * (size_t)d), *y = malloc((size_t)n);
    uint8_t *proto = malloc((size_t)classes * (size_t)d);
    if (!x || !y || !proto) {
        free(x);
        free(y);
        free(proto);
        return brisk_error_set(BRISK_ENOMEM, "synthetic data: out of memory for %lld x %d",
                               (long long)n, d);
    }
    /* Counters: prototypes use sub-stream 0, labels 1, noise 2 (counter = sample * d + j). */
    for (size_t i = 0; i < (size_t)classes * (size_t)d; i++)
        proto[i] = (uint8_t)(brisk_rng_u64(seed, BRISK_RNG_STREAM_SYNTHETIC, 0, i) >> 56);
    for (int64_t i = 0; i < n; i++) {
        const uint64_t s = (uint64_t)(first + i);
        const int c = (int)brisk_rng_below(seed, BRISK_RNG_STREAM_SYNTHETIC, 1, s,
                                           (uint64_t)classes);
        y[i] = (uint8_t)c;
        for (int j = 0; j < d; j++) {
            float v = proto[(size_t)c * d + j] +
                      noise * brisk_rng_normal(seed, BRISK_RNG_STREAM_SYNTHETIC, 2,
                                               s * (uint64_t)d + (uint64_t)j);
            v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
            x[(size_t)i * d + j] = (uint8_t)lrintf(v);
        }
    }
    free(proto);
    out->n = n;
    out->d = d;
    out->classes = classes;
    out->x = x;
    out->y = y;
    return BRISK_OK;
}

void brisk_dataset_free(brisk_dataset *ds)
{
    if (!ds)
        return;
    if (!ds->borrowed) {
        free(ds->x);
        free(ds->y);
    }
    free(ds->owned[0]);
    free(ds->owned[1]);
    memset(ds, 0, sizeof *ds);
}

int brisk_dataset_wrap(int64_t n, int d, const int *shape, const float *x,
                       const uint8_t *labels, const float *targets, int n_targets,
                       brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: out is NULL");
    memset(out, 0, sizeof *out);
    if (n < 1 || n > INT32_MAX)
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: n = %lld samples: must be 1..%d",
                               (long long)n, INT32_MAX);
    if (d < 1 || d > (1 << 24))
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: d = %d features: must be 1..%d", d,
                               1 << 24);
    if (!x)
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: x is NULL");
    if (!labels == !targets)
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: pass either labels or targets "
                               "(labels %s, targets %s)", labels ? "given" : "NULL",
                               targets ? "given" : "NULL");
    if (targets && (n_targets < 1 || n_targets > 65536))
        return brisk_error_set(BRISK_EINVAL, "dataset_wrap: n_targets = %d: must be 1..65536",
                               n_targets);
    if (shape) {
        if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 ||
            (int64_t)shape[0] * shape[1] * shape[2] != d)
            return brisk_error_set(BRISK_EINVAL, "dataset_wrap: shape (%d, %d, %d) does not "
                                   "hold d = %d features", shape[0], shape[1], shape[2], d);
        out->channels = shape[0];
        out->rows = shape[1];
        out->cols = shape[2];
    }
    for (int64_t i = 0; i < n * (int64_t)d; i++)
        if (!isfinite(x[i]))
            return brisk_error_set(BRISK_ENONFINITE, "dataset_wrap: x[%lld] (sample %lld, "
                                   "feature %lld) is %g", (long long)i, (long long)(i / d),
                                   (long long)(i % d), (double)x[i]);
    if (targets)
        for (int64_t i = 0; i < n * (int64_t)n_targets; i++)
            if (!isfinite(targets[i]))
                return brisk_error_set(BRISK_ENONFINITE, "dataset_wrap: targets[%lld] (sample "
                                       "%lld) is %g", (long long)i, (long long)(i / n_targets),
                                       (double)targets[i]);
    out->n = n;
    out->d = d;
    out->xf = x;
    if (labels) {
        int top = 0;
        for (int64_t i = 0; i < n; i++)
            top = labels[i] > top ? labels[i] : top;
        out->classes = top + 1;
        /* y is uint8_t * because loaders fill it; a lent array is only ever read. */
        out->y = (uint8_t *)(uintptr_t)labels;
        out->borrowed = 1;
    } else {
        out->yf = targets;
        out->targets = n_targets;
    }
    return BRISK_OK;
}

int brisk_dataset_check_labels(const brisk_dataset *ds, int outputs, const char *name)
{
    if (ds->tokens) {
        if (ds->classes > outputs)
            return brisk_error_set(BRISK_EINVAL, "%s: token ids go up to %d, but the model has "
                                   "%d outputs (a vocabulary of %d)", name, ds->classes - 1,
                                   outputs, outputs);
        return BRISK_OK;
    }
    if (ds->targets > 0 || !ds->y) {
        if (ds->targets != outputs)
            return brisk_error_set(BRISK_EINVAL, "%s: %d regression target%s per sample, but "
                                   "the model has %d output%s", name, ds->targets,
                                   ds->targets == 1 ? "" : "s", outputs, outputs == 1 ? "" : "s");
        return BRISK_OK;
    }
    const int limit = outputs == 1 ? 2 : outputs;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= limit)
            return brisk_error_set(BRISK_EINVAL, "%s: label %d of sample %lld is out of range "
                                   "for a model with %d output%s (labels must be 0..%d)",
                                   name, ds->y[i], (long long)i, outputs,
                                   outputs == 1 ? "" : "s", limit - 1);
    return BRISK_OK;
}

/* out = base[0, n) permuted by Fisher-Yates from the end; position i draws from counter i of
 * (stream, sub), so the permutation depends only on (seed, stream, sub). */
static void permute(const int32_t *base, int32_t *out, int64_t n, uint64_t seed, uint32_t stream,
                    uint32_t sub)
{
    if (out != base)
        memcpy(out, base, (size_t)n * sizeof *out);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)brisk_rng_below(seed, stream, sub, (uint64_t)i, (uint64_t)(i + 1));
        int32_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int brisk_split(int64_t n, double val_fraction, uint64_t seed, int32_t **order,
                int64_t *n_train)
{
    *order = NULL;
    if (n < 1 || n > INT32_MAX || !(val_fraction >= 0.0 && val_fraction < 1.0))
        return brisk_error_set(BRISK_EINVAL, "split: n=%lld, validation fraction %g not in [0, 1)",
                               (long long)n, val_fraction);
    int64_t n_val = llround((double)n * val_fraction);
    if (n_val >= n)
        n_val = n - 1;
    int32_t *o = malloc((size_t)n * sizeof *o);
    if (!o)
        return brisk_error_set(BRISK_ENOMEM, "split: out of memory");
    for (int64_t i = 0; i < n; i++)
        o[i] = (int32_t)i;
    permute(o, o, n, seed, BRISK_RNG_STREAM_SPLIT, 0);
    qsort(o, (size_t)(n - n_val), sizeof *o, cmp_i32);
    qsort(o + (n - n_val), (size_t)n_val, sizeof *o, cmp_i32);
    *order = o;
    *n_train = n - n_val;
    return BRISK_OK;
}

void brisk_shuffle(const int32_t *base, int32_t *out, int64_t n, uint64_t seed, uint32_t epoch)
{
    permute(base, out, n, seed, BRISK_RNG_STREAM_SHUFFLE, epoch);
}

void brisk_dataset_stats(const brisk_dataset *ds, const int32_t *idx, int64_t n, float *mean,
                         float *std)
{
    double mu, var;
    if (ds->x) {
        /* Integer histogram of byte values: exact, and independent of summation order. */
        uint64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *x = ds->x + (size_t)idx[i] * (size_t)ds->d;
            for (int j = 0; j < ds->d; j++)
                hist[x[j]]++;
        }
        double cnt = (double)n * ds->d, s = 0.0, s2 = 0.0;
        for (int v = 0; v < 256; v++) {
            s += (double)hist[v] * v;
            s2 += (double)hist[v] * v * v;
        }
        mu = cnt > 0 ? s / cnt : 0.0;
        var = cnt > 0 ? s2 / cnt - mu * mu : 0.0;
    } else {
        /* Two passes in sample order: the mean, then the squared deviations. */
        double s = 0.0, cnt = (double)n * ds->d;
        for (int64_t i = 0; i < n; i++) {
            const float *x = ds->xf + (size_t)idx[i] * (size_t)ds->d;
            for (int j = 0; j < ds->d; j++)
                s += x[j];
        }
        mu = cnt > 0 ? s / cnt : 0.0;
        double s2 = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *x = ds->xf + (size_t)idx[i] * (size_t)ds->d;
            for (int j = 0; j < ds->d; j++)
                s2 += ((double)x[j] - mu) * ((double)x[j] - mu);
        }
        var = cnt > 0 ? s2 / cnt : 0.0;
    }
    *mean = (float)mu;
    *std = var > 1e-12 ? (float)sqrt(var) : 1.0f;
}

int brisk_dataset_feature_stats(const brisk_dataset *ds, const int32_t *idx, int64_t n,
                                float *mean, float *std)
{
    if (!ds || (!ds->x && !ds->xf) || (n > 0 && !idx) || !mean || !std || n < 0)
        return brisk_error_set(BRISK_EINVAL, "feature_stats: %s", !ds ? "ds is NULL"
                               : (!ds->x && !ds->xf) ? "the data set has no features"
                               : n < 0 ? "n < 0" : "idx, mean or std is NULL");
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return brisk_error_set(BRISK_EINVAL, "feature_stats: idx[%lld] = %d is not a sample "
                                   "of the data set (0..%lld)", (long long)i, idx[i],
                                   (long long)ds->n - 1);
    const int d = ds->d;
    double *s = calloc(2 * (size_t)d, sizeof *s), *s2 = s + d;
    if (!s)
        return brisk_error_set(BRISK_ENOMEM, "feature statistics: out of memory for %d "
                               "features", d);
    for (int64_t i = 0; i < n; i++) {
        const size_t row = (size_t)idx[i] * (size_t)d;
        for (int j = 0; j < d; j++)
            s[j] += ds->x ? (double)ds->x[row + j] : (double)ds->xf[row + j];
    }
    for (int j = 0; j < d; j++)
        s[j] = n > 0 ? s[j] / (double)n : 0.0;
    for (int64_t i = 0; i < n; i++) {
        const size_t row = (size_t)idx[i] * (size_t)d;
        for (int j = 0; j < d; j++) {
            const double e = (ds->x ? (double)ds->x[row + j] : (double)ds->xf[row + j]) - s[j];
            s2[j] += e * e;
        }
    }
    for (int j = 0; j < d; j++) {
        const double var = n > 0 ? s2[j] / (double)n : 0.0;
        mean[j] = (float)s[j];
        std[j] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    free(s);
    return BRISK_OK;
}

BRISK_MULTIVERSION
void brisk_dataset_gather(const brisk_dataset *ds, const int32_t *idx, int n, const float *mean,
                          const float *std, int count, float *x_out, uint8_t *y_out)
{
    const int d = ds->d;
    if (count <= 1) {
        const float m = count ? mean[0] : 0.0f, s = count ? std[0] : 1.0f;
        if (ds->x) {
            /* A 256-entry table turns normalisation into one lookup per byte. */
            float lut[256];
            for (int v = 0; v < 256; v++)
                lut[v] = ((float)v - m) / s;
            for (int i = 0; i < n; i++) {
                const uint8_t *x = ds->x + (size_t)idx[i] * (size_t)d;
                float *o = x_out + (size_t)i * d;
                for (int j = 0; j < d; j++)
                    o[j] = lut[x[j]];
            }
        } else {
            for (int i = 0; i < n; i++) {
                const float *x = ds->xf + (size_t)idx[i] * (size_t)d;
                float *o = x_out + (size_t)i * d;
                for (int j = 0; j < d; j++)
                    o[j] = (x[j] - m) / s;
            }
        }
    } else {
        for (int i = 0; i < n; i++) {
            const size_t row = (size_t)idx[i] * (size_t)d;
            float *o = x_out + (size_t)i * d;
            if (ds->x)
                for (int j = 0; j < d; j++)
                    o[j] = ((float)ds->x[row + j] - mean[j]) / std[j];
            else
                for (int j = 0; j < d; j++)
                    o[j] = (ds->xf[row + j] - mean[j]) / std[j];
        }
    }
    if (y_out && ds->y)
        for (int i = 0; i < n; i++)
            y_out[i] = ds->y[idx[i]];
}
