#include "brisk/optim.h"

#include "core_internal.h"

#include <math.h>
#include <string.h>

brisk_optim_config brisk_optim_defaults(brisk_optim_kind kind)
{
    brisk_optim_config c = {kind, 0.9, 0.999, 1e-8, 0.9f, 0.0f};
    if (kind == BRISK_OPTIM_ADAMW)
        c.weight_decay = 0.01f;
    return c;
}

BRISK_MULTIVERSION
void brisk_optim_update(const brisk_optim_config *c, int64_t step, float lr, float grad_scale,
                        float *restrict params, const float *restrict grads, float *restrict m,
                        float *restrict v, size_t begin, size_t end)
{
    const float wd = c->weight_decay;
    if (c->kind == BRISK_OPTIM_SGD) {
        /* g += wd p; buf = momentum buf + g; p -= lr buf (buf starts at 0, so step 1 gives
         * buf = g exactly as torch's clone). */
        const float mom = c->momentum;
        for (size_t i = begin; i < end; i++) {
            float g = grads[i] * grad_scale + wd * params[i];
            m[i] = mom * m[i] + g;
            params[i] -= lr * m[i];
        }
        return;
    }
    /* Adam (Kingma & Ba, 2015) in torch's order: step_size = lr / (1 - b1^t),
     * denom = sqrt(v) / sqrt(1 - b2^t) + eps, p -= step_size m / denom.
     * AdamW (Loshchilov & Hutter, 2019) first decays p by (1 - lr wd). */
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    const float omb1 = (float)(1.0 - c->beta1), omb2 = (float)(1.0 - c->beta2);
    const double bc1 = 1.0 - pow(c->beta1, (double)step);
    const double bc2 = 1.0 - pow(c->beta2, (double)step);
    const float step_size = (float)(lr / bc1);
    const float inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
    const float decay = c->kind == BRISK_OPTIM_ADAMW ? 1.0f - lr * wd : 1.0f;
    const float l2 = c->kind == BRISK_OPTIM_ADAM ? wd : 0.0f;
    for (size_t i = begin; i < end; i++) {
        float p = params[i] * decay;
        float g = grads[i] * grad_scale + l2 * p;
        float mi = m[i] * b1 + omb1 * g;
        float vi = v[i] * b2 + omb2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * mi / (sqrtf(vi) * inv_bc2_sqrt + eps);
    }
}

BRISK_MULTIVERSION
double brisk_sum_squares(const float *g, size_t begin, size_t end)
{
    /* Eight interleaved accumulators in a fixed pattern, combined in a fixed order: the
     * result depends only on [begin, end), and the loop vectorises. */
    double acc[8] = {0};
    size_t i = begin;
    for (; i + 8 <= end; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)g[i + k] * (double)g[i + k];
    for (int k = 0; i < end; i++, k++)
        acc[k] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float brisk_clip_scale(double global_norm, float max_norm)
{
    if (max_norm <= 0.0f)
        return 1.0f;
    double s = (double)max_norm / (global_norm + 1e-6);
    return s < 1.0 ? (float)s : 1.0f;
}

float brisk_schedule_lr(const brisk_schedule *sch, int64_t s)
{
    switch (sch->kind) {
    case BRISK_SCHEDULE_CONSTANT:
        break;
    case BRISK_SCHEDULE_STEP:
        return (float)(sch->lr * pow((double)sch->gamma, (double)(s / sch->step_size)));
    case BRISK_SCHEDULE_COSINE:
        if (s < sch->warmup)
            return (float)((double)sch->lr * (double)(s + 1) / (double)sch->warmup);
        if (s >= sch->total || sch->total <= sch->warmup)
            return sch->min_lr;
        {
            const double pi = 3.14159265358979323846;
            double t = (double)(s - sch->warmup) / (double)(sch->total - sch->warmup);
            return (float)(sch->min_lr + (sch->lr - sch->min_lr) * 0.5 * (1.0 + cos(pi * t)));
        }
    }
    return sch->lr;
}

static const char *const optim_names[] = {"adam", "adamw", "sgd"};
static const char *const schedule_names[] = {"constant", "step", "cosine"};

const char *brisk_optim_name(brisk_optim_kind k) { return optim_names[k]; }
const char *brisk_schedule_name(brisk_schedule_kind k) { return schedule_names[k]; }

int brisk_optim_parse(const char *s)
{
    return brisk__name_index(optim_names, 3, s);
}

int brisk_schedule_parse(const char *s)
{
    return brisk__name_index(schedule_names, 3, s);
}

void brisk_ema_update(float *ema, const float *w, size_t lo, size_t hi, double decay)
{
    /* decay and 1 - decay computed in double, then rounded to float: Python's decay and
     * (1. - decay) handed to float32 ops. No fused multiply-add: ISO C (-std=c11) keeps the
     * products and the sum apart. */
    if (!ema || !w)
        return;
    const float d = (float)decay, od = (float)(1.0 - decay);
    for (size_t i = lo; i < hi; i++)
        ema[i] = d * ema[i] + od * w[i];
}
