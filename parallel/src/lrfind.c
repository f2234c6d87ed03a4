/* The learning-rate range test (brisk/fit.h: brisk_lr_find). */
#include "brisk/comm.h"
#include "brisk/error.h"
#include "brisk/fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMOOTH_BETA 0.98

void brisk_lr_find_result_free(brisk_lr_find_result *res)
{
    if (!res)
        return;
    free(res->lr);
    free(res->loss);
    free(res->smoothed);
    memset(res, 0, sizeof *res);
}

/* The steepest descent of the smoothed loss against log(lr), before its lowest point: slopes
 * over a window of 2w + 1 steps (w = n / 40, at least 1), leaving out the first tenth of the
 * steps, where the moving average rests on few batches and its noise would win. */
static void suggest(brisk_lr_find_result *res)
{
    int low = 0;
    for (int i = 1; i < res->n; i++)
        if (res->smoothed[i] < res->smoothed[low])
            low = i;
    res->lowest_lr = res->n ? res->lr[low] : 0;
    if (res->n < 10)
        return;
    const int w = res->n / 40 > 1 ? res->n / 40 : 1, first = res->n / 10 > w ? res->n / 10 : w;
    double steepest = 0;
    for (int i = first; i + w <= low && i + w < res->n; i++) {
        const double g = (res->smoothed[i + w] - res->smoothed[i - w]) /
                         (log(res->lr[i + w]) - log(res->lr[i - w]));
        if (g < steepest) {
            steepest = g;
            res->suggested = res->lr[i];
        }
    }
}

/* The curve as a markdown table (every few steps) and the suggestion, for TensorBoard. */
static void log_text(brisk_tb *tb, const brisk_lr_find_result *res)
{
    const size_t cap = 64 * 80 + 512;
    char *text = malloc(cap);
    if (!text)
        return;
    size_t at = 0;
    at += (size_t)snprintf(text + at, cap - at,
                           "suggested rate: %.3g (steepest descent of the smoothed loss); "
                           "lowest loss at %.3g; %d steps%s\n\n| step | rate | loss | smoothed |\n"
                           "|---|---|---|---|\n",
                           res->suggested, res->lowest_lr, res->n,
                           res->diverged ? ", stopped when the loss diverged" : "");
    const int every = res->n > 60 ? (res->n + 59) / 60 : 1;
    for (int i = 0; i < res->n && at < cap; i += every)
        at += (size_t)snprintf(text + at, cap - at, "| %d | %.3g | %.4g | %.4g |\n", i + 1,
                               res->lr[i], res->loss[i], res->smoothed[i]);
    brisk_tb_text(tb, tb->train, "lr_find", res->n > 0 ? res->n : 1, text);
    free(text);
}

int brisk_lr_find(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int64_t n,
                  const brisk_lr_find_config *c, brisk_lr_find_result *res)
{
    if (!res)
        return brisk_error_set(BRISK_EINVAL, "lr-find: the result is NULL");
    memset(res, 0, sizeof *res);
    if (!t || !ds || !idx || !c || n < 1)
        return brisk_error_set(BRISK_EINVAL, "lr-find: %s", n < 1 ? "no samples"
                                                                   : "a NULL argument");
    const double start = c->start_lr ? c->start_lr : 1e-7, end = c->end_lr ? c->end_lr : 10;
    const int steps = c->steps ? c->steps : 200;
    const double diverge = c->diverge ? c->diverge : 4;
    if (!(start > 0 && end > start && end <= 1e6))
        return brisk_error_set(BRISK_EINVAL, "lr-find: rates %g to %g (0 < start < end <= 1e6)",
                               start, end);
    if (steps < 5 || steps > 100000 || !(diverge > 1 && diverge < 1e6))
        return brisk_error_set(BRISK_EINVAL, "lr-find: %d steps (5..100000), divergence at %g "
                               "times the lowest loss (> 1)", steps, diverge);
    const brisk_trainer_config *tc = brisk_trainer_get_config(t);
    if (tc->schedule.kind != BRISK_SCHEDULE_CONSTANT ||
        fabs(tc->schedule.lr - end) > 1e-6 * end)
        return brisk_error_set(BRISK_EINVAL, "lr-find: the trainer's schedule must be constant "
                               "at the last rate, %g (it is %s at %g)", end,
                               tc->schedule.kind == BRISK_SCHEDULE_CONSTANT ? "constant"
                                                                            : "not constant",
                               (double)tc->schedule.lr);
    const int B = n < tc->batch ? (int)n : tc->batch;
    int32_t *order = malloc((size_t)n * sizeof *order);
    res->lr = malloc((size_t)steps * sizeof *res->lr);
    res->loss = malloc((size_t)steps * sizeof *res->loss);
    res->smoothed = malloc((size_t)steps * sizeof *res->smoothed);
    if (!order || !res->lr || !res->loss || !res->smoothed) {
        free(order);
        brisk_lr_find_result_free(res);
        return brisk_error_set(BRISK_ENOMEM, "lr-find: out of memory");
    }
    int64_t pos = n;
    uint32_t pass = 0;
    double avg = 0, best = INFINITY;
    int err = BRISK_OK;
    for (int i = 0; i < steps; i++) {
        /* Every process stops at the same step, whichever was interrupted. */
        if (brisk_comm_any(tc->comm, c->stop && *c->stop))
            break;
        if (pos + B > n) {
            brisk_shuffle(idx, order, n, c->seed, pass++);
            pos = 0;
        }
        const double lr = start * pow(end / start, (double)i / (steps - 1));
        if ((err = brisk_trainer_set_lr_factor(t, (float)(lr / tc->schedule.lr))) < 0)
            break;
        brisk_step_stats st;
        err = brisk_trainer_step(t, ds, order + pos, B, &st);
        pos += B;
        if (err == BRISK_ENONFINITE) {
            err = BRISK_OK;
            res->diverged = 1;
            break;
        }
        if (err < 0)
            break;
        const double loss = brisk_metrics_loss(&st.metrics);
        avg = SMOOTH_BETA * avg + (1 - SMOOTH_BETA) * loss;
        const double smoothed = avg / (1 - pow(SMOOTH_BETA, i + 1));
        res->lr[res->n] = lr;
        res->loss[res->n] = loss;
        res->smoothed[res->n] = smoothed;
        res->n++;
        if (c->tb) {
            brisk_log_scalar(c->tb->p, c->tb->train, "lr_find/loss", i + 1, loss);
            brisk_log_scalar(c->tb->p, c->tb->train, "lr_find/smoothed_loss", i + 1, smoothed);
            brisk_log_scalar(c->tb->p, c->tb->train, "lr_find/learning_rate", i + 1, lr);
        }
        if (!isfinite(loss) || (i >= 5 && smoothed > diverge * best)) {
            res->diverged = 1;
            break;
        }
        if (smoothed < best)
            best = smoothed;
    }
    free(order);
    if (err < 0) {
        brisk_lr_find_result_free(res);
        return err;
    }
    suggest(res);
    if (c->tb)
        log_text(c->tb, res);
    return BRISK_OK;
}
