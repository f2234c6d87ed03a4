/* brisk/optim.h: optimizer updates, gradient clipping and learning-rate schedules.
 *
 * Updates work on a slice [begin, end) of flat slabs so that each worker can update the slice
 * it owns in place; running them on consecutive slices equals one call on the whole range.
 * The arithmetic follows torch.optim's single-tensor implementations step for step, so the
 * reference numbers in tests/ (generated with PyTorch) agree to float rounding.
 */
#ifndef BRISK_OPTIM_H
#define BRISK_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum brisk_optim_kind {
    BRISK_OPTIM_ADAM,  /* Adam; weight_decay is L2 added to the gradient (torch.optim.Adam) */
    BRISK_OPTIM_ADAMW, /* Adam with decoupled weight decay (torch.optim.AdamW) */
    BRISK_OPTIM_SGD    /* SGD with momentum (torch.optim.SGD, dampening 0, no Nesterov) */
} brisk_optim_kind;

typedef struct brisk_optim_config {
    brisk_optim_kind kind;
    double beta1, beta2, eps; /* Adam/AdamW; double like PyTorch's Python floats, so that
                               * 1 - beta rounds as it does there */
    float momentum;          /* SGD */
    float weight_decay;
} brisk_optim_config;

/* Defaults as in PyTorch: betas (0.9, 0.999), eps 1e-8, momentum 0.9, weight decay 0 (0.01
 * for AdamW). */
brisk_optim_config brisk_optim_defaults(brisk_optim_kind kind);

/* One update of params[begin, end) from grads * grad_scale (grad_scale carries clipping).
 * step is the 1-based optimizer step (for bias correction); lr the rate for this step.
 * m holds Adam's first moment or SGD's momentum buffer; v Adam's second moment (unused and
 * may be NULL for SGD). */
void brisk_optim_update(const brisk_optim_config *c, int64_t step, float lr, float grad_scale,
                        float *params, const float *grads, float *m, float *v, size_t begin,
                        size_t end);

/* Sum of squares of g[begin, end), accumulated in double in index order. */
double brisk_sum_squares(const float *g, size_t begin, size_t end);

/* The factor clip-by-global-norm multiplies gradients by: min(1, max_norm / (norm + 1e-6)),
 * as torch.nn.utils.clip_grad_norm_; 1 when max_norm <= 0 (clipping off). */
float brisk_clip_scale(double global_norm, float max_norm);

typedef enum brisk_schedule_kind {
    BRISK_SCHEDULE_CONSTANT,
    BRISK_SCHEDULE_STEP,  /* lr * gamma^floor(step / step_size) */
    BRISK_SCHEDULE_COSINE /* linear warmup to lr over `warmup` steps, cosine to min_lr at total */
} brisk_schedule_kind;

typedef struct brisk_schedule {
    brisk_schedule_kind kind;
    float lr;          /* base rate */
    int64_t step_size; /* STEP: steps between decays (>= 1) */
    float gamma;       /* STEP: factor per decay */
    int64_t warmup;    /* COSINE: warmup steps (0 for none) */
    int64_t total;     /* COSINE: total steps; min_lr from there on */
    float min_lr;      /* COSINE: final rate */
} brisk_schedule;

/* Rate for 0-based step s. COSINE: (s + 1) / warmup * lr while s < warmup, then
 * min_lr + (lr - min_lr) (1 + cos(pi (s - warmup) / (total - warmup))) / 2. */
float brisk_schedule_lr(const brisk_schedule *sch, int64_t s);

/* One step of an exponential moving average of weights (timm's ModelEmaV2, PyTorch's EMA
 * recipe for AveragedModel): ema[i] = decay * ema[i] + (1 - decay) * w[i] for i in [lo, hi),
 * with decay and 1 - decay computed in double and rounded to float, two float products and
 * their sum, as PyTorch's ema_v * decay + (1. - decay) * model_v computes it (bitwise).
 * Nothing for a NULL ema or w. */
void brisk_ema_update(float *ema, const float *w, size_t lo, size_t hi, double decay);

const char *brisk_optim_name(brisk_optim_kind k);
int brisk_optim_parse(const char *s);          /* -1 when unknown */
const char *brisk_schedule_name(brisk_schedule_kind k);
int brisk_schedule_parse(const char *s);       /* -1 when unknown */

#ifdef __cplusplus
}
#endif

#endif
