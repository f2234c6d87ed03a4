#include "brisk/trainer.h"

#include "brisk/blas.h"
#include "brisk/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The gradient norm is summed per block of this many floats, then over blocks in order, so
 * its value does not depend on how the slab is sliced among workers. */
#define NORM_BLOCK 4096

struct brisk_trainer {
    brisk_trainer_config cfg;
    brisk_model *model;
    float *params;         /* (P) the one copy of the parameters */
    float *grads;          /* (P) reduced gradient of the batch mean */
    float *opt_m, *opt_v;  /* (P) Adam moments, or SGD momentum in opt_m */
    float **shard_grads;   /* S_max slabs; shard_grads[0] == grads when S_max == 1 */
    int max_shards;        /* S for a full batch */
    double *block_sq;      /* sum of squares per NORM_BLOCK block */
    size_t n_blocks;
    brisk_workspace *ws;   /* activations for one micro-shard */
    uint8_t *labels;       /* (micro_batch) labels of the shard in flight */
    int64_t steps_done;
};

int brisk_trainer_num_shards(const brisk_trainer *t, int n)
{
    return (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
}

int brisk_trainer_create(const brisk_trainer_config *cfg, brisk_trainer **out)
{
    *out = NULL;
    if (cfg->batch < 1)
        return brisk_error_set(BRISK_EINVAL, "trainer: batch %d < 1", cfg->batch);
    brisk_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return brisk_error_set(BRISK_ENOMEM, "trainer: out of memory");
    t->cfg = *cfg;
    if (t->cfg.micro_batch <= 0 || t->cfg.micro_batch > cfg->batch)
        t->cfg.micro_batch = cfg->batch;
    int err = brisk_model_create(&cfg->model, &t->model);
    if (err < 0)
        goto fail;
    const size_t len = brisk_model_slab_len(t->model);
    t->max_shards = brisk_trainer_num_shards(t, cfg->batch);
    t->n_blocks = (len + NORM_BLOCK - 1) / NORM_BLOCK;
    t->params = brisk_slab_alloc(t->model);
    t->grads = brisk_slab_alloc(t->model);
    t->opt_m = brisk_slab_alloc(t->model);
    t->opt_v = brisk_slab_alloc(t->model);
    t->shard_grads = calloc((size_t)t->max_shards, sizeof *t->shard_grads);
    t->block_sq = calloc(t->n_blocks ? t->n_blocks : 1, sizeof *t->block_sq);
    t->labels = malloc((size_t)t->cfg.micro_batch);
    err = BRISK_ENOMEM;
    if (!t->params || !t->grads || !t->opt_m || !t->opt_v || !t->shard_grads || !t->block_sq ||
        !t->labels)
        goto fail_nomem;
    if (t->max_shards == 1) {
        t->shard_grads[0] = t->grads;
    } else {
        for (int s = 0; s < t->max_shards; s++)
            if (!(t->shard_grads[s] = brisk_slab_alloc(t->model)))
                goto fail_nomem;
    }
    if ((err = brisk_workspace_create(t->model, t->cfg.micro_batch, &t->ws)) < 0)
        goto fail;
    brisk_model_init_params(t->model, cfg->seed, t->params);
    *out = t;
    return BRISK_OK;
fail_nomem:
    err = brisk_error_set(BRISK_ENOMEM, "trainer: out of memory for %d shard buffers of %zu "
                          "floats", t->max_shards, brisk_model_slab_len(t->model));
fail:
    brisk_trainer_destroy(t);
    return err;
}

void brisk_trainer_destroy(brisk_trainer *t)
{
    if (!t)
        return;
    if (t->shard_grads && t->max_shards > 1)
        for (int s = 0; s < t->max_shards; s++)
            brisk_slab_free(t->shard_grads[s]);
    free(t->shard_grads);
    brisk_slab_free(t->params);
    brisk_slab_free(t->grads);
    brisk_slab_free(t->opt_m);
    brisk_slab_free(t->opt_v);
    free(t->block_sq);
    free(t->labels);
    brisk_workspace_destroy(t->ws);
    brisk_model_destroy(t->model);
    free(t);
}

/* Forward, loss and backward of shard s (rows [s mb, min(n, (s + 1) mb)) of the batch). */
static void shard_gradient(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                           int s, float mean, float std, brisk_metrics *part)
{
    const int mb = t->cfg.micro_batch, lo = s * mb, rows = n - lo < mb ? n - lo : mb;
    brisk_dataset_gather(ds, idx + lo, rows, mean, std, brisk_workspace_input(t->ws), t->labels);
    brisk_model_forward(t->model, t->params, t->ws, rows);
    brisk_model_loss(t->model, t->ws, t->labels, rows, 1.0f / (float)n, part);
    brisk_model_backward(t->model, t->params, t->ws, rows, t->shard_grads[s]);
}

/* grads[begin, end) = sum over shards in shard order; with one shard grads is the buffer. */
static void reduce_slice(brisk_trainer *t, int S, size_t begin, size_t end)
{
    if (S == 1 && t->shard_grads[0] == t->grads)
        return;
    float *g = t->grads;
    memcpy(g + begin, t->shard_grads[0] + begin, (end - begin) * sizeof *g);
    for (int s = 1; s < S; s++) {
        const float *src = t->shard_grads[s];
        for (size_t i = begin; i < end; i++)
            g[i] += src[i];
    }
}

int brisk_trainer_step(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                       float mean, float std, brisk_step_stats *out)
{
    BRISK_ASSERT(n >= 1 && n <= t->cfg.batch);
    const int S = brisk_trainer_num_shards(t, n);
    const size_t len = brisk_model_slab_len(t->model);
    const int blas_threads = brisk_blas_set_threads(1);
    memset(out, 0, sizeof *out);
    /* Shard partials are merged in shard order, so metrics do not depend on who ran what. */
    for (int s = 0; s < S; s++) {
        brisk_metrics part = {0};
        shard_gradient(t, ds, idx, n, s, mean, std, &part);
        brisk_metrics_add(&out->metrics, &part);
    }
    double sq = 0.0;
    for (size_t b = 0; b < t->n_blocks; b++) {
        const size_t lo = b * NORM_BLOCK, hi = lo + NORM_BLOCK < len ? lo + NORM_BLOCK : len;
        reduce_slice(t, S, lo, hi);
        t->block_sq[b] = brisk_sum_squares(t->grads, lo, hi);
    }
    for (size_t b = 0; b < t->n_blocks; b++)
        sq += t->block_sq[b];
    out->grad_norm = sqrt(sq);
    out->lr = brisk_schedule_lr(&t->cfg.schedule, t->steps_done);
    if (!isfinite(out->metrics.loss_sum) || !isfinite(out->grad_norm)) {
        brisk_blas_set_threads(blas_threads);
        return brisk_error_set(BRISK_ENONFINITE, "step %lld: %s is not finite",
                               (long long)t->steps_done + 1,
                               isfinite(out->metrics.loss_sum) ? "the gradient" : "the loss");
    }
    const float scale = brisk_clip_scale(out->grad_norm, t->cfg.clip_norm);
    t->steps_done++;
    brisk_optim_update(&t->cfg.optim, t->steps_done, out->lr, scale, t->params, t->grads,
                       t->opt_m, t->opt_v, 0, len);
    brisk_blas_set_threads(blas_threads);
    return BRISK_OK;
}

void brisk_trainer_evaluate(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                            int64_t n, float mean, float std, brisk_metrics *out)
{
    const int mb = t->cfg.micro_batch;
    const int blas_threads = brisk_blas_set_threads(1);
    memset(out, 0, sizeof *out);
    for (int64_t lo = 0; lo < n; lo += mb) {
        const int rows = n - lo < mb ? (int)(n - lo) : mb;
        brisk_metrics part = {0};
        brisk_dataset_gather(ds, idx + lo, rows, mean, std, brisk_workspace_input(t->ws),
                             t->labels);
        brisk_model_forward(t->model, t->params, t->ws, rows);
        brisk_model_loss(t->model, t->ws, t->labels, rows, 0.0f, &part);
        brisk_metrics_add(out, &part);
    }
    brisk_blas_set_threads(blas_threads);
}

const brisk_model *brisk_trainer_model(const brisk_trainer *t) { return t->model; }
float *brisk_trainer_params(brisk_trainer *t) { return t->params; }
float *brisk_trainer_opt_m(brisk_trainer *t) { return t->opt_m; }
float *brisk_trainer_opt_v(brisk_trainer *t) { return t->opt_v; }
int64_t brisk_trainer_steps_done(const brisk_trainer *t) { return t->steps_done; }
