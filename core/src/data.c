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
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

int brisk_dataset_check_labels(const brisk_dataset *ds, int outputs, const char *name)
{
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
    double mu = cnt > 0 ? s / cnt : 0.0;
    double var = cnt > 0 ? s2 / cnt - mu * mu : 0.0;
    *mean = (float)mu;
    *std = var > 1e-12 ? (float)sqrt(var) : 1.0f;
}

BRISK_MULTIVERSION
void brisk_dataset_gather(const brisk_dataset *ds, const int32_t *idx, int n, float mean,
                          float std, float *x_out, uint8_t *y_out)
{
    /* A 256-entry table turns normalisation into one lookup per byte. */
    float lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = ((float)v - mean) / std;
    const int d = ds->d;
    for (int i = 0; i < n; i++) {
        const uint8_t *x = ds->x + (size_t)idx[i] * (size_t)d;
        float *o = x_out + (size_t)i * d;
        for (int j = 0; j < d; j++)
            o[j] = lut[x[j]];
        y_out[i] = ds->y[idx[i]];
    }
}
