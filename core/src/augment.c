/* Image augmentation as samples are gathered (brisk/data.h): random crop with padding,
 * horizontal flip and random erasing, every draw keyed by (seed, epoch, sample). */
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The draws of one sample, in this order: crop top, crop left, flip, erase (then four per
 * try of the rectangle). */
enum { DRAW_CROP_Y, DRAW_CROP_X, DRAW_FLIP, DRAW_ERASE, DRAW_TRIES, DRAWS_PER_SAMPLE = 64 };

int brisk_augment_enabled(const brisk_augment *a)
{
    return a && (a->crop > 0 || a->flip || a->erase > 0);
}

int brisk_augment_parse(const char *text, brisk_augment *out)
{
    if (!text || !out)
        return brisk_error_set(BRISK_EINVAL, "augment: %s is NULL", out ? "the text" : "out");
    brisk_augment a = {0, 0, 0.0f};
    if (!*text || !strcmp(text, "none")) {
        *out = a;
        return BRISK_OK;
    }
    int seen_crop = 0, seen_erase = 0;
    const char *p = text;
    while (*p) {
        const size_t n = strcspn(p, ",");
        char part[64];
        if (n == 0 || n >= sizeof part)
            return brisk_error_set(BRISK_EINVAL, "augment: in '%s', %s", text,
                                   n ? "a part is too long" : "an empty part");
        memcpy(part, p, n);
        part[n] = '\0';
        char *colon = strchr(part, ':'), *end;
        if (colon)
            *colon = '\0';
        const char *arg = colon ? colon + 1 : NULL;
        if (!strcmp(part, "crop")) {
            errno = 0;
            const long v = arg ? strtol(arg, &end, 10) : 0;
            if (!arg || !*arg || *end || errno || v < 1 || v > 1024 || seen_crop++)
                return brisk_error_set(BRISK_EINVAL, "augment: in '%s', %s", text,
                                       seen_crop > 1 ? "crop is given twice"
                                                     : "crop needs its padding in pixels, "
                                                       "1..1024 (crop:4)");
            a.crop = (int)v;
        } else if (!strcmp(part, "flip")) {
            if (arg || a.flip)
                return brisk_error_set(BRISK_EINVAL, "augment: in '%s', %s", text,
                                       arg ? "flip takes no value" : "flip is given twice");
            a.flip = 1;
        } else if (!strcmp(part, "erase")) {
            errno = 0;
            const double v = arg ? strtod(arg, &end) : 0;
            if (!arg || !*arg || *end || errno || !(v > 0 && v <= 1) || seen_erase++)
                return brisk_error_set(BRISK_EINVAL, "augment: in '%s', %s", text,
                                       seen_erase > 1 ? "erase is given twice"
                                                      : "erase needs its probability, in "
                                                        "(0, 1] (erase:0.25)");
            a.erase = (float)v;
        } else {
            return brisk_error_set(BRISK_EINVAL, "augment: in '%s', unknown '%s' (crop:P, flip, "
                                   "erase:E)", text, part);
        }
        p += n;
        if (*p == ',' && !*++p)
            return brisk_error_set(BRISK_EINVAL, "augment: in '%s', an empty part", text);
    }
    *out = a;
    return BRISK_OK;
}

int brisk_augment_format(const brisk_augment *a, char *buf, size_t size)
{
    if (!brisk_augment_enabled(a))
        return snprintf(buf, size, "none");
    char crop[32] = "", erase[40] = "";
    if (a->crop > 0)
        snprintf(crop, sizeof crop, "crop:%d", a->crop);
    if (a->erase > 0)
        snprintf(erase, sizeof erase, "erase:%.9g", (double)a->erase);
    return snprintf(buf, size, "%s%s%s%s%s", crop, *crop && a->flip ? "," : "",
                    a->flip ? "flip" : "", *erase && (*crop || a->flip) ? "," : "", erase);
}

int brisk_augment_check(const brisk_augment *a, int channels, int rows, int cols)
{
    if (!a)
        return brisk_error_set(BRISK_EINVAL, "augment: NULL");
    if (!(a->crop >= 0 && a->crop <= 1024) || !(a->erase >= 0 && a->erase <= 1))
        return brisk_error_set(BRISK_EINVAL, "augment: crop %d (0..1024) or erase %g ([0, 1]) "
                               "out of range", a->crop, (double)a->erase);
    if (!brisk_augment_enabled(a))
        return BRISK_OK;
    if (rows <= 0 || cols <= 0 || channels <= 0)
        return brisk_error_set(BRISK_EINVAL, "augment: crop, flip and erase need images "
                               "(a model whose input is channels x rows x cols), not "
                               "vectors");
    if (a->crop > rows || a->crop > cols)
        return brisk_error_set(BRISK_EINVAL, "augment: crop:%d pads by more than the %dx%d "
                               "image", a->crop, rows, cols);
    return BRISK_OK;
}

static uint64_t draw(uint64_t seed, int64_t epoch, int64_t sample, int k)
{
    return brisk_rng_u64(seed, BRISK_RNG_STREAM_AUGMENT, (uint32_t)epoch,
                         (uint64_t)sample * DRAWS_PER_SAMPLE + (uint64_t)k);
}

/* Uniform in [0, 1) with 53 bits, from draw k. */
static double uniform(uint64_t seed, int64_t epoch, int64_t sample, int k)
{
    return (double)(draw(seed, epoch, sample, k) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), n >= 1 (the bias of 64 bits modulo n < 2^21 is negligible). */
static int below(uint64_t seed, int64_t epoch, int64_t sample, int k, int n)
{
    return (int)(draw(seed, epoch, sample, k) % (uint64_t)n);
}

void brisk_augment_apply(const brisk_augment *a, int channels, int rows, int cols,
                         uint64_t seed, int64_t epoch, int64_t sample, const float *mean,
                         const float *std, int count, float *x)
{
    if (!x || brisk_augment_check(a, channels, rows, cols) != BRISK_OK ||
        (count > 0 && (!mean || !std)))
        return; /* nothing to augment, or not an image it fits */
    const size_t plane = (size_t)rows * (size_t)cols;
    if (a->crop > 0) { /* out[y][x] = in[y + dy][x + dx], black outside */
        const int p = a->crop;
        const int dy = below(seed, epoch, sample, DRAW_CROP_Y, 2 * p + 1) - p;
        const int dx = below(seed, epoch, sample, DRAW_CROP_X, 2 * p + 1) - p;
        for (int c = 0; c < channels; c++) {
            float *img = x + (size_t)c * plane;
            /* Rows in the order that reads each source row before it is overwritten. */
            for (int i = 0; i < rows; i++) {
                const int y = dy >= 0 ? i : rows - 1 - i, sy = y + dy;
                float *out = img + (size_t)y * cols;
                if (sy < 0 || sy >= rows) {
                    for (int k = 0; k < cols; k++) {
                        const size_t j = (size_t)c * plane + (size_t)y * cols + (size_t)k;
                        out[k] = count == 0   ? 0.0f
                                 : count == 1 ? (0.0f - mean[0]) / std[0]
                                              : (0.0f - mean[j]) / std[j];
                    }
                    continue;
                }
                const int lo = dx < 0 ? -dx : 0, hi = dx > 0 ? cols - dx : cols;
                if (hi > lo)
                    memmove(out + lo, img + (size_t)sy * cols + lo + dx,
                            (size_t)(hi - lo) * sizeof *out);
                for (int k = 0; k < cols; k++) {
                    if (k >= lo && k < hi)
                        continue;
                    const size_t j = (size_t)c * plane + (size_t)y * cols + (size_t)k;
                    out[k] = count == 0   ? 0.0f
                             : count == 1 ? (0.0f - mean[0]) / std[0]
                                          : (0.0f - mean[j]) / std[j];
                }
            }
        }
    }
    if (a->flip && (draw(seed, epoch, sample, DRAW_FLIP) >> 63))
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < rows; y++) {
                float *row = x + (size_t)c * plane + (size_t)y * cols;
                for (int i = 0, k = cols - 1; i < k; i++, k--) {
                    const float t = row[i];
                    row[i] = row[k];
                    row[k] = t;
                }
            }
    if (a->erase > 0 && uniform(seed, epoch, sample, DRAW_ERASE) < (double)a->erase) {
        const double area = (double)plane, lr0 = log(0.3), lr1 = log(3.3);
        for (int t = 0; t < 10; t++) {
            const int k = DRAW_TRIES + 4 * t;
            const double target = area * (0.02 + (0.33 - 0.02) * uniform(seed, epoch, sample, k));
            const double ratio = exp(lr0 + (lr1 - lr0) * uniform(seed, epoch, sample, k + 1));
            const int eh = (int)lround(sqrt(target * ratio)), ew = (int)lround(sqrt(target / ratio));
            if (!(eh < rows && ew < cols) || eh < 1 || ew < 1)
                continue;
            const int i0 = below(seed, epoch, sample, k + 2, rows - eh + 1);
            const int j0 = below(seed, epoch, sample, k + 3, cols - ew + 1);
            for (int c = 0; c < channels; c++)
                for (int y = i0; y < i0 + eh; y++)
                    memset(x + (size_t)c * plane + (size_t)y * cols + j0, 0,
                           (size_t)ew * sizeof *x);
            break;
        }
    }
}

/* Gamma(shape, 1) by Marsaglia and Tsang's method (shape >= 1), from draws k, k + 1, ... of
 * the step's counters; *k advances past those used. */
static double gamma_draw(uint64_t seed, int64_t step, double shape, int *k)
{
    const double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (int tries = 0; tries < 24; tries++) {
        const uint64_t at = (uint64_t)step * 128 + (uint64_t)*k; /* k < 96 */
        *k += 2;
        const double z = brisk_rng_normal(seed, BRISK_RNG_STREAM_MIXUP, 0, at);
        const double u = ((double)(brisk_rng_u64(seed, BRISK_RNG_STREAM_MIXUP, 1, at) >> 11) + 0.5) *
                         (1.0 / 9007199254740992.0);
        const double v1 = 1.0 + c * z;
        if (v1 <= 0)
            continue;
        const double v = v1 * v1 * v1;
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
    return d; /* after 24 rejections (probability far below 1e-20): the mode */
}

double brisk_mixup_lambda(uint64_t seed, int64_t step, double alpha)
{
    if (!(alpha > 0) || !isfinite(alpha))
        return 1.0;
    /* Gamma(alpha) = Gamma(alpha + 1) U^(1/alpha) for alpha < 1 (Marsaglia and Tsang). */
    const int boost = alpha < 1;
    int k = 0;
    double g[2];
    for (int i = 0; i < 2; i++) {
        g[i] = gamma_draw(seed, step, boost ? alpha + 1 : alpha, &k);
        if (boost) {
            const uint64_t at = (uint64_t)step * 128 + 120 + (uint64_t)i;
            const double u = ((double)(brisk_rng_u64(seed, BRISK_RNG_STREAM_MIXUP, 2, at) >> 11) +
                              0.5) * (1.0 / 9007199254740992.0);
            g[i] *= pow(u, 1.0 / alpha);
        }
    }
    const double lam = g[0] + g[1] > 0 ? g[0] / (g[0] + g[1]) : 0.5;
    return lam < 0 ? 0 : lam > 1 ? 1 : lam;
}

double brisk_cutmix_box(uint64_t seed, int64_t step, double alpha, int rows, int cols, int *y0,
                        int *y1, int *x0, int *x1)
{
    if (!y0 || !y1 || !x0 || !x1)
        return 1.0;
    *y0 = *y1 = *x0 = *x1 = 0;
    if (rows < 1 || cols < 1)
        return 1.0; /* no image: no box */
    const double lam = brisk_mixup_lambda(seed, step, alpha), cut = sqrt(1.0 - lam);
    const int ch = (int)(rows * cut), cw = (int)(cols * cut);
    /* The centre: counters 124 and 125 of the step (the weight's draws stay below them). */
    const uint64_t at = (uint64_t)step * 128 + 124;
    const int cy = (int)(brisk_rng_u64(seed, BRISK_RNG_STREAM_MIXUP, 3, at) % (uint64_t)rows);
    const int cx = (int)(brisk_rng_u64(seed, BRISK_RNG_STREAM_MIXUP, 3, at + 1) % (uint64_t)cols);
    *y0 = cy - ch / 2 < 0 ? 0 : cy - ch / 2;
    *y1 = cy + ch / 2 > rows ? rows : cy + ch / 2;
    *x0 = cx - cw / 2 < 0 ? 0 : cx - cw / 2;
    *x1 = cx + cw / 2 > cols ? cols : cx + cw / 2;
    return 1.0 - (double)(*y1 - *y0) * (double)(*x1 - *x0) / ((double)rows * (double)cols);
}
