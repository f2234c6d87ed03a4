#include "brisk/trainer.h"

#include "brisk/blas.h"
#include "brisk/error.h"
#include "brisk/pool.h"
#include "comm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters are owned by workers in blocks of this many floats (4 KiB, so slices are 64-byte
 * aligned and never share a cache line). The gradient norm is summed per block, then over
 * blocks in order, so its value does not depend on how blocks are dealt out. */
#define BLOCK 1024

/* Who touches what, between the barriers of one step (see step_job):
 *   phase A: worker t writes shard_grads[s] and shard_metrics[s] for the shards s it takes,
 *            and its own ws[t], labels[t]; everyone reads params.
 *   phase B: worker t writes grads and block_sq for its own blocks; reads all shard_grads.
 *   phase C: worker t reads all block_sq and shard_metrics, and writes params, opt_m and opt_v
 *            in its own blocks only.
 * The caller touches nothing while a job runs.
 *
 * Several processes (P > 1, step_mp): rank r owns the blocks [rank_b[r], rank_b[r + 1]) and
 * keeps m and v for them only (ZeRO-1). Global shard s belongs to rank s % P. The calling
 * thread does all MPI between pool jobs: after phase A it exchanges every shard's slice with
 * the slice's owner (alltoallv), after phase B the block sums of squares and the shard
 * metrics (allgatherv), after phase C the updated parameter slices (allgatherv). Sums run in
 * shard order and block order exactly as in one process, so the result does not depend on
 * P or T. */
struct brisk_trainer {
    brisk_trainer_config cfg;
    brisk_model *model;
    brisk_pool *pool;
    int T;
    float *params;            /* (P) the one copy of the parameters */
    float *grads;             /* reduced gradient of the batch mean: the slab, or with P > 1
                               * only my slice [my_lo, my_hi) */
    float *opt_m, *opt_v;     /* my slice [my_lo, my_hi) of Adam's moments (or SGD momentum) */
    float **shard_grads;      /* S_max slabs; shard_grads[0] == grads when S_max == 1 */
    brisk_metrics *shard_metrics; /* (S_max) */
    int max_shards;           /* S for a full batch */
    double *block_sq;         /* (n_blocks) sum of squares per block */
    size_t n_blocks;
    brisk_workspace **ws;     /* (T) activations, one micro-shard per worker */
    uint8_t **labels;         /* (T, micro_batch) labels of the shard in flight */
    int64_t steps_done;
    /* Processes. */
    brisk_comm *comm;
    int P, rank;
    size_t *rank_b;           /* (P + 1) block boundaries of the ranks' slices */
    size_t *rank_lo, *rank_len; /* (P) each rank's slice in floats */
    size_t my_lo, my_hi;
    float **worker_grads;     /* P > 1: (T) one gradient slab per worker */
    float *sendbuf;           /* P > 1: (ceil(S_max / P), len) shard slices by destination */
    float *recvbuf;           /* P > 1: (S_max, my slice) every shard's slice of my blocks */
    const float **shard_src;  /* P > 1: (S_max) where shard s's slice landed in recvbuf */
    brisk_metrics *local_metrics;  /* P > 1: (ceil(S_max / P)) my shards' metrics */
};

/* Arguments of one step or evaluation job. */
typedef struct job {
    brisk_trainer *tr;
    const brisk_dataset *ds;
    const int32_t *idx;
    int64_t n;                /* samples */
    int chunks;               /* S for a step; chunks of micro_batch for an evaluation */
    float mean, std;
    float lr;
    brisk_metrics *chunk_metrics; /* (chunks) for an evaluation */
    int finite;               /* step: set by thread 0 in phase C */
    double grad_norm;         /* step: set by thread 0 in phase C */
    /* Several processes: this rank's chunks are rank + k P for k < n_local. */
    int n_local;
    float scale;              /* phase C: the clipping factor */
} job;

/* Chunks (or shards) of a job of `chunks` that rank r takes: r, r + P, r + 2 P, ... */
static int n_local(int chunks, int P, int r)
{
    return chunks > r ? (chunks - r + P - 1) / P : 0;
}

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
    if (t->cfg.micro_batch <= 0)
        t->cfg.micro_batch = BRISK_DEFAULT_MICRO_BATCH;
    if (t->cfg.micro_batch > cfg->batch)
        t->cfg.micro_batch = cfg->batch;
    t->T = cfg->threads > 0 ? cfg->threads : brisk_cpu_count();
    t->cfg.threads = t->T;
    int err = brisk_model_create(&cfg->model, &t->model);
    if (err < 0 || (err = brisk_pool_create(t->T, &t->pool)) < 0)
        goto fail;
    const size_t len = brisk_model_slab_len(t->model);
    t->max_shards = brisk_trainer_num_shards(t, cfg->batch);
    t->n_blocks = (len + BLOCK - 1) / BLOCK;
    t->comm = cfg->comm;
    t->P = brisk_comm_size(cfg->comm);
    t->rank = brisk_comm_rank(cfg->comm);
    t->rank_b = calloc((size_t)t->P + 1, sizeof *t->rank_b);
    t->rank_lo = calloc((size_t)t->P, sizeof *t->rank_lo);
    t->rank_len = calloc((size_t)t->P, sizeof *t->rank_len);
    if (!t->rank_b || !t->rank_lo || !t->rank_len)
        goto fail_nomem;
    for (int r = 0; r <= t->P; r++)
        t->rank_b[r] = t->n_blocks * (size_t)r / (size_t)t->P;
    for (int r = 0; r < t->P; r++) {
        const size_t lo = t->rank_b[r] * BLOCK, hi = t->rank_b[r + 1] * BLOCK;
        t->rank_lo[r] = lo < len ? lo : len;
        t->rank_len[r] = (hi < len ? hi : len) - t->rank_lo[r];
    }
    t->my_lo = t->rank_lo[t->rank];
    t->my_hi = t->my_lo + t->rank_len[t->rank];
    t->params = brisk_slab_alloc(t->model);
    t->shard_metrics = calloc((size_t)t->max_shards, sizeof *t->shard_metrics);
    t->block_sq = calloc(t->n_blocks ? t->n_blocks : 1, sizeof *t->block_sq);
    t->ws = calloc((size_t)t->T, sizeof *t->ws);
    t->labels = calloc((size_t)t->T, sizeof *t->labels);
    if (!t->params || !t->shard_metrics || !t->block_sq || !t->ws || !t->labels)
        goto fail_nomem;
    if (t->P == 1) {
        t->grads = brisk_slab_alloc(t->model);
        if (!t->grads)
            goto fail_nomem;
        t->opt_m = brisk_slab_alloc(t->model);
        t->opt_v = brisk_slab_alloc(t->model);
        t->shard_grads = calloc((size_t)t->max_shards, sizeof *t->shard_grads);
        if (!t->opt_m || !t->opt_v || !t->shard_grads)
            goto fail_nomem;
        if (t->max_shards == 1) {
            t->shard_grads[0] = t->grads;
        } else {
            for (int s = 0; s < t->max_shards; s++)
                if (!(t->shard_grads[s] = brisk_slab_alloc(t->model)))
                    goto fail_nomem;
        }
    } else {
        /* m and v for my slice only; one gradient slab per worker; exchange buffers. */
        const size_t my_len = t->my_hi - t->my_lo, max_local = (size_t)n_local(t->max_shards, t->P, 0);
        const size_t bytes = (my_len * sizeof(float) + 63) / 64 * 64 + 64;
        t->grads = aligned_alloc(64, bytes);
        t->opt_m = aligned_alloc(64, bytes);
        t->opt_v = aligned_alloc(64, bytes);
        t->worker_grads = calloc((size_t)t->T, sizeof *t->worker_grads);
        t->sendbuf = malloc((max_local ? max_local : 1) * len * sizeof(float));
        t->recvbuf = malloc(((size_t)t->max_shards * my_len + 1) * sizeof(float));
        t->local_metrics = calloc(max_local ? max_local : 1, sizeof *t->local_metrics);
        t->shard_src = calloc((size_t)t->max_shards, sizeof *t->shard_src);
        if (!t->grads || !t->opt_m || !t->opt_v || !t->worker_grads || !t->sendbuf ||
            !t->recvbuf || !t->local_metrics || !t->shard_src)
            goto fail_nomem;
        memset(t->opt_m, 0, my_len * sizeof(float));
        memset(t->opt_v, 0, my_len * sizeof(float));
        for (int w = 0; w < t->T; w++)
            if (!(t->worker_grads[w] = brisk_slab_alloc(t->model)))
                goto fail_nomem;
    }
    for (int w = 0; w < t->T; w++) {
        if ((err = brisk_workspace_create(t->model, t->cfg.micro_batch, &t->ws[w])) < 0)
            goto fail;
        if (!(t->labels[w] = malloc((size_t)t->cfg.micro_batch)))
            goto fail_nomem;
    }
    brisk_model_init_params(t->model, cfg->seed, t->params);
    *out = t;
    return BRISK_OK;
fail_nomem:
    err = brisk_error_set(BRISK_ENOMEM, "trainer: out of memory (%d threads, %d shard buffers "
                          "of %zu floats)", t->T, t->max_shards, brisk_model_slab_len(t->model));
fail:
    brisk_trainer_destroy(t);
    return err;
}

void brisk_trainer_destroy(brisk_trainer *t)
{
    if (!t)
        return;
    brisk_pool_destroy(t->pool);
    if (t->shard_grads && t->max_shards > 1)
        for (int s = 0; s < t->max_shards; s++)
            brisk_slab_free(t->shard_grads[s]);
    free(t->shard_grads);
    free(t->shard_metrics);
    brisk_slab_free(t->params);
    if (t->P > 1) {
        free(t->grads);
        free(t->opt_m);
        free(t->opt_v);
    } else {
        brisk_slab_free(t->grads);
        brisk_slab_free(t->opt_m);
        brisk_slab_free(t->opt_v);
    }
    for (int w = 0; t->worker_grads && w < t->T; w++)
        brisk_slab_free(t->worker_grads[w]);
    free(t->worker_grads);
    free(t->sendbuf);
    free(t->recvbuf);
    free(t->local_metrics);
    free(t->shard_src);
    free(t->rank_b);
    free(t->rank_lo);
    free(t->rank_len);
    free(t->block_sq);
    for (int w = 0; t->ws && w < t->T; w++)
        brisk_workspace_destroy(t->ws[w]);
    for (int w = 0; t->labels && w < t->T; w++)
        free(t->labels[w]);
    free(t->ws);
    free(t->labels);
    brisk_model_destroy(t->model);
    free(t);
}

/* Gathers and runs forward (and loss) for chunk c of the job on worker w's workspace.
 * grad_scale 0: evaluation only. Returns the rows in the chunk. */
static int chunk_forward(const job *j, int w, int c, float grad_scale, brisk_metrics *m)
{
    brisk_trainer *tr = j->tr;
    const int mb = tr->cfg.micro_batch;
    const int64_t lo = (int64_t)c * mb;
    const int rows = j->n - lo < mb ? (int)(j->n - lo) : mb;
    brisk_dataset_gather(j->ds, j->idx + lo, rows, j->mean, j->std,
                         brisk_workspace_input(tr->ws[w]), tr->labels[w]);
    brisk_model_forward(tr->model, tr->params, tr->ws[w], rows);
    memset(m, 0, sizeof *m);
    brisk_model_loss(tr->model, tr->ws[w], tr->labels[w], rows, grad_scale, m);
    return rows;
}

/* This worker's blocks [*b0, *b1): an even split of this rank's blocks over T. */
static void my_blocks(const brisk_trainer *tr, int w, int T, size_t *b0, size_t *b1)
{
    const size_t rb0 = tr->rank_b[tr->rank], nb = tr->rank_b[tr->rank + 1] - rb0;
    *b0 = rb0 + nb * (size_t)w / (size_t)T;
    *b1 = rb0 + nb * (size_t)(w + 1) / (size_t)T;
}

static void step_job(void *arg, int w, int T)
{
    job *j = arg;
    brisk_trainer *tr = j->tr;
    const int S = j->chunks;
    const size_t len = brisk_model_slab_len(tr->model);

    /* Phase A: parallelize over micro-shards, dealt round-robin. */
    for (int s = w; s < S; s += T) {
        const int rows = chunk_forward(j, w, s, 1.0f / (float)j->n, &tr->shard_metrics[s]);
        brisk_model_backward(tr->model, tr->params, tr->ws[w], rows, tr->shard_grads[s]);
    }
    brisk_pool_barrier(tr->pool);

    /* Phase B: parallelize over parameter blocks; sum shard gradients in shard order, one
     * block at a time so that its sum of squares reads it from L1. */
    size_t b0, b1;
    my_blocks(tr, w, T, &b0, &b1);
    const size_t lo = b0 * BLOCK, hi = b1 * BLOCK < len ? b1 * BLOCK : len;
    float *g = tr->grads;
    const int reduce = S > 1 || tr->shard_grads[0] != g;
    for (size_t b = b0; b < b1; b++) {
        const size_t blo = b * BLOCK, bhi = blo + BLOCK < len ? blo + BLOCK : len;
        if (reduce) {
            memcpy(g + blo, tr->shard_grads[0] + blo, (bhi - blo) * sizeof *g);
            for (int s = 1; s < S; s++) {
                const float *src = tr->shard_grads[s];
                for (size_t i = blo; i < bhi; i++)
                    g[i] += src[i];
            }
        }
        tr->block_sq[b] = brisk_sum_squares(g, blo, bhi);
    }
    brisk_pool_barrier(tr->pool);

    /* Phase C: every worker derives the same norm and loss in the same order, then updates
     * its own blocks of parameters, m and v. */
    double sq = 0.0, loss = 0.0;
    for (size_t b = 0; b < tr->n_blocks; b++)
        sq += tr->block_sq[b];
    for (int s = 0; s < S; s++)
        loss += tr->shard_metrics[s].loss_sum;
    const double norm = sqrt(sq);
    const int finite = isfinite(norm) && isfinite(loss);
    if (w == 0) {
        j->grad_norm = norm;
        j->finite = finite;
    }
    if (!finite)
        return;
    const float scale = brisk_clip_scale(norm, tr->cfg.clip_norm);
    brisk_optim_update(&tr->cfg.optim, tr->steps_done + 1, j->lr, scale, tr->params, g,
                       tr->opt_m, tr->opt_v, lo, hi);
}

static int step_mp(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                   float mean, float std, brisk_step_stats *out);

int brisk_trainer_step(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                       float mean, float std, brisk_step_stats *out)
{
    BRISK_ASSERT(n >= 1 && n <= t->cfg.batch);
    if (t->P > 1)
        return step_mp(t, ds, idx, n, mean, std, out);
    job j = {.tr = t, .ds = ds, .idx = idx, .n = n, .chunks = brisk_trainer_num_shards(t, n),
             .mean = mean, .std = std, .lr = brisk_schedule_lr(&t->cfg.schedule, t->steps_done)};
    const int blas_threads = brisk_blas_set_threads(1);
    brisk_pool_run(t->pool, step_job, &j);
    brisk_blas_set_threads(blas_threads);
    memset(out, 0, sizeof *out);
    for (int s = 0; s < j.chunks; s++)
        brisk_metrics_add(&out->metrics, &t->shard_metrics[s]);
    out->grad_norm = j.grad_norm;
    out->lr = j.lr;
    if (!j.finite) {
        /* Name the first layer whose gradient is not finite (input side first). */
        const char *where = NULL;
        for (int k = 0; k < brisk_model_num_tensors(t->model) && !where; k++) {
            const brisk_tensor_view *v = brisk_model_tensor(t->model, k);
            const float *g = t->grads + v->offset;
            for (size_t i = 0; i < (size_t)v->rows * (size_t)v->cols && !where; i++)
                if (!isfinite(g[i]))
                    where = v->name;
        }
        return brisk_error_set(BRISK_ENONFINITE,
                               "step %lld: the %s is not finite (loss %s; first non-finite "
                               "gradient: %s)",
                               (long long)t->steps_done + 1,
                               isfinite(out->metrics.loss_sum) ? "gradient" : "loss",
                               isnan(out->metrics.loss_sum)   ? "NaN"
                               : isinf(out->metrics.loss_sum) ? "infinite"
                                                              : "finite",
                               where ? where : "none");
    }
    t->steps_done++;
    return BRISK_OK;
}

static void eval_job(void *arg, int w, int T)
{
    job *j = arg;
    /* Parallelize over chunks of micro_batch samples, dealt round-robin. */
    for (int c = w; c < j->chunks; c += T)
        chunk_forward(j, w, c, 0.0f, &j->chunk_metrics[c]);
}

static int evaluate_mp(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                       int64_t n, float mean, float std, brisk_metrics *out);

int brisk_trainer_evaluate(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                           int64_t n, float mean, float std, brisk_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (n <= 0)
        return BRISK_OK;
    if (t->P > 1)
        return evaluate_mp(t, ds, idx, n, mean, std, out);
    const int64_t chunks = (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
    job j = {.tr = t, .ds = ds, .idx = idx, .n = n, .chunks = (int)chunks, .mean = mean,
             .std = std};
    j.chunk_metrics = malloc((size_t)chunks * sizeof *j.chunk_metrics);
    if (!j.chunk_metrics)
        return brisk_error_set(BRISK_ENOMEM, "evaluate: out of memory for %lld chunks",
                               (long long)chunks);
    const int blas_threads = brisk_blas_set_threads(1);
    brisk_pool_run(t->pool, eval_job, &j);
    brisk_blas_set_threads(blas_threads);
    /* Merged in chunk order, so metrics do not depend on T. */
    for (int64_t c = 0; c < chunks; c++)
        brisk_metrics_add(out, &j.chunk_metrics[c]);
    free(j.chunk_metrics);
    return BRISK_OK;
}

/* An evaluation (per-chunk metrics in base.chunk_metrics) that also keeps, per chunk, the sum
 * of each layer's outputs and of their squares, and the predictions. */
typedef struct inspect_job {
    job base;
    int32_t *pred; /* (n) or NULL */
    double *sums;  /* (chunks, 2 L) */
} inspect_job;

static void inspect_chunk(void *arg, int w, int T)
{
    inspect_job *ij = arg;
    job *j = &ij->base;
    brisk_trainer *tr = j->tr;
    const brisk_model_config *mc = brisk_model_get_config(tr->model);
    const int L = mc->n_layers, C = mc->widths[L];
    /* Parallelize over chunks of micro_batch samples, dealt round-robin. */
    for (int c = w; c < j->chunks; c += T) {
        const int rows = chunk_forward(j, w, c, 0.0f, &j->chunk_metrics[c]);
        const int64_t lo = (int64_t)c * tr->cfg.micro_batch;
        double *sums = ij->sums + (size_t)c * 2 * (size_t)L;
        for (int l = 0; l < L; l++) {
            const float *a = brisk_workspace_output(tr->ws[w], l);
            const size_t k = (size_t)rows * (size_t)mc->widths[l + 1];
            double s = 0, sq = 0;
            for (size_t i = 0; i < k; i++) {
                s += a[i];
                sq += (double)a[i] * a[i];
            }
            sums[2 * l] = s;
            sums[2 * l + 1] = sq;
        }
        if (ij->pred) {
            const float *z = brisk_workspace_output(tr->ws[w], L - 1);
            for (int i = 0; i < rows; i++) {
                const float *zi = z + (size_t)i * C;
                int best = 0;
                if (C == 1) {
                    best = zi[0] > 0.0f;
                } else {
                    for (int k = 1; k < C; k++)
                        if (zi[k] > zi[best])
                            best = k;
                }
                ij->pred[lo + i] = best;
            }
        }
    }
}

int brisk_trainer_inspect(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                          int64_t n, float mean, float std, brisk_metrics *metrics,
                          int32_t *pred, double *act_mean, double *act_std)
{
    const brisk_model_config *mc = brisk_model_get_config(t->model);
    const int L = mc->n_layers;
    if (metrics)
        memset(metrics, 0, sizeof *metrics);
    if (n <= 0) {
        for (int l = 0; l < L; l++) {
            if (act_mean)
                act_mean[l] = 0;
            if (act_std)
                act_std[l] = 0;
        }
        return BRISK_OK;
    }
    const int64_t chunks = (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
    inspect_job ij = {.base = {.tr = t, .ds = ds, .idx = idx, .n = n, .chunks = (int)chunks,
                               .mean = mean, .std = std},
                      .pred = pred};
    ij.sums = malloc((size_t)chunks * 2 * (size_t)L * sizeof *ij.sums);
    ij.base.chunk_metrics = malloc((size_t)chunks * sizeof *ij.base.chunk_metrics);
    if (!ij.sums || !ij.base.chunk_metrics) {
        free(ij.sums);
        free(ij.base.chunk_metrics);
        return brisk_error_set(BRISK_ENOMEM, "inspect: out of memory for %lld chunks",
                               (long long)chunks);
    }
    const int blas_threads = brisk_blas_set_threads(1);
    brisk_pool_run(t->pool, inspect_chunk, &ij);
    brisk_blas_set_threads(blas_threads);
    for (int l = 0; l < L; l++) {
        double s = 0, sq = 0; /* merged in chunk order: independent of T */
        for (int64_t c = 0; c < chunks; c++) {
            s += ij.sums[(size_t)c * 2 * (size_t)L + 2 * (size_t)l];
            sq += ij.sums[(size_t)c * 2 * (size_t)L + 2 * (size_t)l + 1];
        }
        const double cnt = (double)n * mc->widths[l + 1], mu = s / cnt;
        const double var = sq / cnt - mu * mu;
        if (act_mean)
            act_mean[l] = mu;
        if (act_std)
            act_std[l] = var > 0 ? sqrt(var) : 0.0;
    }
    /* Merged in chunk order, exactly as brisk_trainer_evaluate does. */
    for (int64_t c = 0; metrics && c < chunks; c++)
        brisk_metrics_add(metrics, &ij.base.chunk_metrics[c]);
    free(ij.base.chunk_metrics);
    free(ij.sums);
    return BRISK_OK;
}

/* ---- Several processes ---------------------------------------------------------------- */

/* Phase A: my shards' gradients, each packed at once into the send buffer by destination:
 * for rank q, [my shard k][q's slice]. */
static void mp_phase_a(void *arg, int w, int T)
{
    job *j = arg;
    brisk_trainer *tr = j->tr;
    float *g = tr->worker_grads[w];
    for (int k = w; k < j->n_local; k += T) {
        const int s = tr->rank + k * tr->P;
        const int rows = chunk_forward(j, w, s, 1.0f / (float)j->n, &tr->local_metrics[k]);
        brisk_model_backward(tr->model, tr->params, tr->ws[w], rows, g);
        for (int q = 0; q < tr->P; q++)
            memcpy(tr->sendbuf + (size_t)j->n_local * tr->rank_lo[q] + (size_t)k * tr->rank_len[q],
                   g + tr->rank_lo[q], tr->rank_len[q] * sizeof *g);
    }
}

/* Phase B: sum the S slices of my blocks in shard order, and each block's sum of squares. */
static void mp_phase_b(void *arg, int w, int T)
{
    job *j = arg;
    brisk_trainer *tr = j->tr;
    const size_t len = brisk_model_slab_len(tr->model);
    size_t b0, b1;
    my_blocks(tr, w, T, &b0, &b1);
    float *g = tr->grads; /* my slice: index i - my_lo */
    for (size_t b = b0; b < b1; b++) {
        const size_t blo = b * BLOCK, bhi = blo + BLOCK < len ? blo + BLOCK : len;
        const size_t off = blo - tr->my_lo;
        memcpy(g + off, tr->shard_src[0] + off, (bhi - blo) * sizeof *g);
        for (int s = 1; s < j->chunks; s++) {
            const float *src = tr->shard_src[s] + off;
            for (size_t i = 0; i < bhi - blo; i++)
                g[off + i] += src[i];
        }
        tr->block_sq[b] = brisk_sum_squares(g, off, off + (bhi - blo));
    }
}

/* Phase C: the update of my blocks of parameters, m and v. */
static void mp_phase_c(void *arg, int w, int T)
{
    job *j = arg;
    brisk_trainer *tr = j->tr;
    const size_t len = brisk_model_slab_len(tr->model);
    size_t b0, b1;
    my_blocks(tr, w, T, &b0, &b1);
    const size_t lo = b0 * BLOCK, hi = b1 * BLOCK < len ? b1 * BLOCK : len;
    if (lo >= hi)
        return;
    const size_t off = lo - tr->my_lo;
    brisk_optim_update(&tr->cfg.optim, tr->steps_done + 1, j->lr, j->scale, tr->params + lo,
                       tr->grads + off, tr->opt_m + off, tr->opt_v + off, 0, hi - lo);
}

/* Gathers per-rank metrics (rank r's n_local(chunks) entries, in its local order) into the
 * global chunk order. */
static void mp_gather_metrics(brisk_trainer *t, int chunks, const brisk_metrics *mine,
                              brisk_metrics *out)
{
    size_t *counts = malloc(2 * (size_t)t->P * sizeof *counts);
    brisk_metrics *seg = malloc(((size_t)chunks + 1) * sizeof *seg);
    BRISK_ASSERT(counts && seg);
    size_t *displs = counts + t->P, at = 0;
    for (int r = 0; r < t->P; r++) {
        counts[r] = (size_t)n_local(chunks, t->P, r) * sizeof *seg;
        displs[r] = at;
        at += counts[r];
    }
    memcpy((char *)seg + displs[t->rank], mine, counts[t->rank]);
    brisk__comm_allgatherv(t->comm, seg, counts, displs, BRISK__COMM_BYTE);
    for (int c = 0; c < chunks; c++)
        out[c] = seg[displs[c % t->P] / sizeof *seg + (size_t)(c / t->P)];
    free(seg);
    free(counts);
}

static int step_mp(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                   float mean, float std, brisk_step_stats *out)
{
    const int S = brisk_trainer_num_shards(t, n), P = t->P;
    job j = {.tr = t, .ds = ds, .idx = idx, .n = n, .chunks = S, .mean = mean, .std = std,
             .lr = brisk_schedule_lr(&t->cfg.schedule, t->steps_done),
             .n_local = n_local(S, P, t->rank)};
    const int blas_threads = brisk_blas_set_threads(1);
    brisk_pool_run(t->pool, mp_phase_a, &j);

    /* Every shard's slice to the slice's owner. */
    size_t *v = malloc(4 * (size_t)P * sizeof *v);
    BRISK_ASSERT(v);
    size_t *sc = v, *sd = v + P, *rc = v + 2 * P, *rd = v + 3 * P, before = 0;
    const size_t my_len = t->my_hi - t->my_lo;
    for (int q = 0; q < P; q++) {
        sc[q] = (size_t)j.n_local * t->rank_len[q];
        sd[q] = (size_t)j.n_local * t->rank_lo[q];
        rc[q] = (size_t)n_local(S, P, q) * my_len;
        rd[q] = before * my_len;
        before += (size_t)n_local(S, P, q);
    }
    brisk__comm_alltoallv(t->comm, t->sendbuf, sc, sd, t->recvbuf, rc, rd);
    /* Shard s came from rank s % P as its local shard s / P. */
    for (int s = 0; s < S; s++)
        t->shard_src[s] = t->recvbuf + rd[s % P] + (size_t)(s / P) * my_len;
    brisk_pool_run(t->pool, mp_phase_b, &j);

    /* Everyone gets every block's sum of squares and every shard's metrics. */
    for (int q = 0; q < P; q++) {
        sc[q] = t->rank_b[q + 1] - t->rank_b[q];
        sd[q] = t->rank_b[q];
    }
    brisk__comm_allgatherv(t->comm, t->block_sq, sc, sd, BRISK__COMM_DOUBLE);
    free(v);
    mp_gather_metrics(t, S, t->local_metrics, t->shard_metrics);
    double sq = 0.0;
    for (size_t b = 0; b < t->n_blocks; b++)
        sq += t->block_sq[b];
    memset(out, 0, sizeof *out);
    for (int s = 0; s < S; s++)
        brisk_metrics_add(&out->metrics, &t->shard_metrics[s]);
    const double norm = sqrt(sq);
    out->grad_norm = norm;
    out->lr = j.lr;
    if (!isfinite(norm) || !isfinite(out->metrics.loss_sum)) {
        brisk_blas_set_threads(blas_threads);
        return brisk_error_set(BRISK_ENONFINITE,
                               "step %lld: the %s is not finite (loss %s)",
                               (long long)t->steps_done + 1,
                               isfinite(out->metrics.loss_sum) ? "gradient" : "loss",
                               isnan(out->metrics.loss_sum)   ? "NaN"
                               : isinf(out->metrics.loss_sum) ? "infinite"
                                                              : "finite");
    }
    j.scale = brisk_clip_scale(norm, t->cfg.clip_norm);
    brisk_pool_run(t->pool, mp_phase_c, &j);
    brisk_blas_set_threads(blas_threads);
    brisk__comm_allgatherv(t->comm, t->params, t->rank_len, t->rank_lo, BRISK__COMM_FLOAT);
    t->steps_done++;
    return BRISK_OK;
}

static void mp_eval_job(void *arg, int w, int T)
{
    job *j = arg;
    /* Parallelize over this rank's chunks (rank + k P), dealt round-robin. */
    for (int k = w; k < j->n_local; k += T)
        chunk_forward(j, w, j->tr->rank + k * j->tr->P, 0.0f, &j->chunk_metrics[k]);
}

static int evaluate_mp(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                       int64_t n, float mean, float std, brisk_metrics *out)
{
    const int64_t chunks = (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
    BRISK_ASSERT(chunks <= INT32_MAX);
    job j = {.tr = t, .ds = ds, .idx = idx, .n = n, .chunks = (int)chunks, .mean = mean,
             .std = std, .n_local = n_local((int)chunks, t->P, t->rank)};
    brisk_metrics *all = malloc((size_t)chunks * sizeof *all);
    j.chunk_metrics = malloc(((size_t)j.n_local + 1) * sizeof *j.chunk_metrics);
    if (!all || !j.chunk_metrics) {
        free(all);
        free(j.chunk_metrics);
        return brisk_error_set(BRISK_ENOMEM, "evaluate: out of memory for %lld chunks",
                               (long long)chunks);
    }
    const int blas_threads = brisk_blas_set_threads(1);
    brisk_pool_run(t->pool, mp_eval_job, &j);
    brisk_blas_set_threads(blas_threads);
    mp_gather_metrics(t, (int)chunks, j.chunk_metrics, all);
    for (int64_t c = 0; c < chunks; c++) /* chunk order, as in one process */
        brisk_metrics_add(out, &all[c]);
    free(all);
    free(j.chunk_metrics);
    return BRISK_OK;
}

void brisk_trainer_slice(const brisk_trainer *t, size_t *lo, size_t *hi)
{
    *lo = t->my_lo;
    *hi = t->my_hi;
}

void brisk_trainer_load_state(brisk_trainer *t, const float *params, const float *opt_m,
                              const float *opt_v, int64_t steps)
{
    BRISK_ASSERT(steps >= 0);
    const size_t len = brisk_model_slab_len(t->model), my_len = t->my_hi - t->my_lo;
    memcpy(t->params, params, len * sizeof *params);
    memcpy(t->opt_m, opt_m + t->my_lo, my_len * sizeof *opt_m);
    memcpy(t->opt_v, opt_v + t->my_lo, my_len * sizeof *opt_v);
    t->steps_done = steps;
}

void brisk_trainer_gather(brisk_trainer *t, int what, float *grads, float *opt_m, float *opt_v)
{
    if (what & BRISK_GATHER_GRADS) /* my_lo is 0 in a single process */
        brisk__comm_gatherv_float(t->comm, t->grads, grads, t->rank_len, t->rank_lo);
    if (what & BRISK_GATHER_MOMENTS) {
        brisk__comm_gatherv_float(t->comm, t->opt_m, opt_m, t->rank_len, t->rank_lo);
        brisk__comm_gatherv_float(t->comm, t->opt_v, opt_v, t->rank_len, t->rank_lo);
    }
}

void brisk_trainer_set_steps_done(brisk_trainer *t, int64_t steps)
{
    BRISK_ASSERT(steps >= 0);
    t->steps_done = steps;
}

const float *brisk_trainer_grads(const brisk_trainer *t) { return t->grads; }
const brisk_model *brisk_trainer_model(const brisk_trainer *t) { return t->model; }
float *brisk_trainer_params(brisk_trainer *t) { return t->params; }
float *brisk_trainer_opt_m(brisk_trainer *t) { return t->opt_m; }
float *brisk_trainer_opt_v(brisk_trainer *t) { return t->opt_v; }
int64_t brisk_trainer_steps_done(const brisk_trainer *t) { return t->steps_done; }
int brisk_trainer_micro_batch(const brisk_trainer *t) { return t->cfg.micro_batch; }
int brisk_trainer_threads(const brisk_trainer *t) { return t->T; }
