#include "brisk/clock.h"
#include "brisk/trainer.h"

#include "brisk/error.h"
#include "brisk/pool.h"
#include "comm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parameters are owned by workers in blocks of this many floats (4 KiB, so slices are 64-byte
 * aligned and never share a cache line). The gradient norm is summed per block, then over
 * blocks in order, so its value does not depend on how blocks are dealt out. */
#define BLOCK 1024

/* One step, in three pool jobs with the MPI exchanges (P > 1) between them on the calling
 * thread. Who touches what:
 *   phase A (shards): the S micro-shards are dealt out: shard s to rank s % P; inside a rank,
 *     its shards go one per thread, round-robin, as long as every thread gets one; the last
 *     R = (shards of this rank) mod T are each shared by a team of about T / R threads (team r:
 *     threads r, r + R, ...), which split every layer's work between them (brisk/team.h).
 *     A shard's gradient goes to its own slab (P = 1) or to its thread's or team's slab, from
 *     which the slices of every rank are packed into sendbuf (P > 1). A solo thread t uses
 *     ws[t] and labels[t]; team r uses ws[r] and labels[r], after a team barrier that makes
 *     sure thread r has finished its own shards with them. Everyone reads params.
 *   exchange (P > 1): every shard's slice goes to the slice's owner (alltoallv); shard_src[s]
 *     points at shard s's part of my slice, wherever it landed.
 *   phase B (reduce): worker t writes grads and block_sq for its own blocks of my slice,
 *     summing the S shard sources in shard order; reads all of shard_src.
 *   allgather (P > 1): every block's sum of squares and every shard's metrics.
 *   phase C (update): worker t writes params, opt_m and opt_v in its own blocks only.
 *   allgather (P > 1): every rank's slice of the parameters.
 * The caller touches nothing while a job runs. No sum's order depends on T or P: shard
 * gradients are sums in an order fixed per element (brisk/gemm.h), shards are added in shard
 * order, block sums of squares in block order and metrics in shard order. */
typedef struct team_ctx {
    brisk_pool *pool;
    int team;
} team_ctx;

struct brisk_trainer {
    brisk_trainer_config cfg;
    brisk_model *model;
    brisk_pool *pool;
    int T;
    float *params;            /* (P) the one copy of the parameters */
    float *buffers;           /* running statistics (batchnorm), the same on every rank */
    float *ema_params, *ema_buffers; /* their moving average (ema_decay), on every rank */
    float *shard_stats;       /* (max_shards, stats_len) every shard's statistics, shard order */
    float *local_stats;       /* this rank's shards' (== shard_stats when P = 1) */
    const float **stats_view; /* (max_shards) */
    float *grads;             /* reduced gradient of the batch mean, my slice [my_lo, my_hi):
                               * element i at i - my_lo (the whole slab when P = 1) */
    float *opt_m, *opt_v;     /* my slice of Adam's moments (or SGD's momentum) */
    float **shard_grads;      /* P = 1: (max_shards) slabs, shard_grads[0] == grads when
                               * max_shards == 1; P > 1: (T) one slab per thread or team */
    int n_shard_grads;
    const float **shard_src;  /* (max_shards) shard s's gradient of my slice, at i - my_lo */
    brisk_metrics *shard_metrics; /* (max_shards) every shard's metrics, shard order */
    brisk_metrics *local_metrics; /* this rank's shards of a pass, local order (P > 1) */
    int max_shards;           /* S for a full batch */
    int pass;                 /* samples in a full pass: batch / cfg.accumulate */
    int pass_shards;          /* S of a full pass: the shard gradients' buffers */
    size_t *no_decay;         /* decay_matrices_only: [start, end) pairs of the slab without
                               * weight decay, in order (n_no_decay pairs) */
    int n_no_decay;
    double *block_sq;         /* (n_blocks) sum of squares per block */
    size_t n_blocks;
    brisk_workspace **ws;     /* (T) activations of the shard in flight */
    uint8_t **labels;         /* (T, micro_batch) its labels */
    float **targets;          /* (T, micro_batch * C) its regression targets */
    int32_t **tok_targets;    /* (T, micro_batch * positions) its next tokens (token data) */
    float **mix_x;            /* mixup: (T, micro_batch * D) the partners' samples */
    uint8_t **labels_b;       /* mixup: (T, micro_batch) the partners' labels */
    float *norm_mean, *norm_std; /* (norm_count) the input normalisation, or NULL */
    int norm_count;               /* 0 (none), 1 (shared by every feature) or D */
    team_ctx *teams;          /* (T) */
    int settles;              /* the model claims all its work: teams' barriers settle */
    int64_t steps_done;
    int64_t epoch;            /* keys the augmentation */
    float lr_factor;      /* on the schedule's rate (brisk_fit's plateau policy); 1 by default */
    double shard_seconds;     /* wall time in phase A, summed over steps */
    /* How many threads take part (brisk_pool_set_active), chosen by measuring when another
     * program competes for the CPUs (adapt_threads). */
    brisk_governor gov;
    double update_seconds;    /* wall time in the reduction and update (and their MPI) */
    /* Processes. */
    brisk_comm *comm;
    int P, rank;
    size_t *rank_b;           /* (P + 1) block boundaries of the ranks' slices */
    size_t *rank_lo, *rank_len; /* (P) each rank's slice in floats */
    size_t my_lo, my_hi;
    float *sendbuf;           /* P > 1: (ceil(S_max / P), len) shard slices by destination */
    float *recvbuf;           /* P > 1: (S_max, my slice) every shard's slice of my blocks */
};

/* One job over chunks (micro-shards of a step, or chunks of micro_batch samples of an
 * evaluation). This rank's chunks are first + k * stride for k < n_mine; the first `full` of
 * them go one per thread, the remaining n_teams are shared by teams. */
typedef struct job {
    brisk_trainer *tr;
    const brisk_dataset *ds;
    const int32_t *idx;
    int64_t n;                /* samples */
    int64_t sample_base;      /* where sample 0 of the job is in the step (a pass's offset) */
    int chunks;               /* in the whole job */
    int first, stride, n_mine, full, n_teams;
    brisk_metrics *metrics;   /* (n_mine) per chunk of mine */
    /* A step's pass. */
    float *stats;             /* (n_mine, stats_len) the normalisation statistics of mine */
    int first_pass, last_pass; /* the fold starts (copies shard 0); the fold ends (sums of
                                * squares) */
    int step_chunks;          /* the shards of the whole step (all passes) */
    const int32_t *step_idx;  /* mixup: the whole step's samples, step_n of them */
    int64_t step_n;
    double lam;               /* mixup's (or cutmix's) weight in this step */
    int box[4];               /* cutmix: rows [box[0], box[1]), columns [box[2], box[3]) */
    float grad_scale;         /* 1 / n for the step's n */
    int64_t step;             /* the optimizer step (dropout's key) */
    float lr, clip_scale;
    /* An inspection (not distributed, so chunk k is chunk k): may be NULL. */
    double *sums;             /* (chunks, 2 L) sums and sums of squares of each layer's output */
    int32_t *pred;            /* (n) */
    float *outputs;           /* (n, C): predictions (brisk_trainer_predict) */
} job;

typedef void (*chunk_fn)(job *j, int k, const brisk_team *team, int slot);

/* Chunks (or shards) of a job of `chunks` that rank r takes: r, r + P, r + 2 P, ... */
static int n_local(int chunks, int P, int r)
{
    return chunks > r ? (chunks - r + P - 1) / P : 0;
}

static void team_barrier(void *ctx)
{
    team_ctx *c = ctx;
    brisk_pool_team_barrier(c->pool, c->team);
}

/* The barrier of a team whose model claims all its work: it waits for the claimed work. */
static void team_settle(void *ctx)
{
    team_ctx *c = ctx;
    brisk_pool_team_settle(c->pool, c->team);
}

static long long team_claim(void *ctx, int op, long long n)
{
    team_ctx *c = ctx;
    return brisk_pool_team_claim(c->pool, c->team, op, n);
}

/* Deals n_mine chunks: whole chunks one per thread while every thread gets one, then teams. */
static void plan(job *j, int n_mine)
{
    const int T = brisk_pool_active(j->tr->pool);
    j->n_mine = n_mine;
    j->n_teams = n_mine % T;
    j->full = n_mine - j->n_teams;
    if (j->n_teams)
        brisk_pool_set_teams(j->tr->pool, j->n_teams);
}

/* Runs fn on every chunk of the job that thread w works on. */
static void for_my_chunks(job *j, int w, chunk_fn fn)
{
    /* Whole chunks to whichever thread asks first, each in the thread's own workspace. */
    for (long long k; j->full && (k = brisk_pool_next_item(j->tr->pool, j->full)) >= 0;)
        fn(j, (int)k, NULL, w);
    if (!j->n_teams)
        return;
    /* Then threads w, w + R, ... share chunk full + w % R. */
    const int R = j->n_teams, r = w % R;
    const brisk_team team = {.ith = w / R, .nth = brisk_pool_team_size(j->tr->pool, r),
                             .barrier = j->tr->settles ? team_settle : team_barrier,
                             .ctx = &j->tr->teams[r], .claim = team_claim};
    if (j->full && team.nth > 1) /* thread r is done with ws[r] */
        brisk_pool_team_barrier(j->tr->pool, r);
    fn(j, j->full + r, &team, r);
}

int brisk_trainer_num_shards(const brisk_trainer *t, int n)
{
    return (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
}

/* The optimizer and schedule settings: every field in its range (a step schedule with step
 * size 0 would divide by zero; a cosine over no steps would leave the rate at min_lr). */
static int check_optim(const brisk_optim_config *o, const brisk_schedule *sc)
{
    if ((int)o->kind < BRISK_OPTIM_ADAM || o->kind > BRISK_OPTIM_SGD)
        return brisk_error_set(BRISK_EINVAL, "trainer: optim.kind %d is not an optimizer",
                               (int)o->kind);
    if (o->kind != BRISK_OPTIM_SGD &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1)))
        return brisk_error_set(BRISK_EINVAL, "trainer: optim.beta1 %g and optim.beta2 %g must "
                               "be in [0, 1)", o->beta1, o->beta2);
    if (o->kind != BRISK_OPTIM_SGD && !(o->eps > 0 && isfinite(o->eps)))
        return brisk_error_set(BRISK_EINVAL, "trainer: optim.eps %g must be positive",
                               o->eps);
    if (!(o->momentum >= 0 && o->momentum <= 1))
        return brisk_error_set(BRISK_EINVAL, "trainer: optim.momentum %g out of [0, 1]",
                               (double)o->momentum);
    if (!(o->weight_decay >= 0 && isfinite(o->weight_decay)))
        return brisk_error_set(BRISK_EINVAL, "trainer: optim.weight_decay %g must be finite "
                               "and >= 0", (double)o->weight_decay);
    if ((int)sc->kind < BRISK_SCHEDULE_CONSTANT || sc->kind > BRISK_SCHEDULE_COSINE)
        return brisk_error_set(BRISK_EINVAL, "trainer: schedule.kind %d is not a schedule",
                               (int)sc->kind);
    if (!(sc->lr > 0 && isfinite(sc->lr)))
        return brisk_error_set(BRISK_EINVAL, "trainer: schedule.lr %g must be finite and > 0",
                               (double)sc->lr);
    if (sc->kind == BRISK_SCHEDULE_STEP && sc->step_size < 1)
        return brisk_error_set(BRISK_EINVAL, "trainer: schedule.step_size %lld must be >= 1 "
                               "for the step schedule", (long long)sc->step_size);
    if (sc->kind == BRISK_SCHEDULE_STEP && !(sc->gamma > 0 && isfinite(sc->gamma)))
        return brisk_error_set(BRISK_EINVAL, "trainer: schedule.gamma %g must be finite and > 0",
                               (double)sc->gamma);
    if (sc->kind == BRISK_SCHEDULE_COSINE) {
        if (sc->warmup < 0 || sc->total < 1 || sc->warmup > sc->total)
            return brisk_error_set(BRISK_EINVAL, "trainer: a cosine schedule needs total >= 1 "
                                   "and 0 <= warmup <= total (schedule.total %lld, "
                                   "schedule.warmup %lld)",
                                   (long long)sc->total, (long long)sc->warmup);
        if (!(sc->min_lr >= 0 && sc->min_lr <= sc->lr))
            return brisk_error_set(BRISK_EINVAL, "trainer: schedule.min_lr %g must be in [0, lr "
                                   "%g]", (double)sc->min_lr, (double)sc->lr);
    }
    return BRISK_OK;
}

static int check_config(const brisk_trainer_config *cfg)
{
    int err = cfg->inference ? BRISK_OK : check_optim(&cfg->optim, &cfg->schedule);
    if (err < 0)
        return err;
    if (cfg->batch < 1 || cfg->batch > (1 << 24))
        return brisk_error_set(BRISK_EINVAL, "trainer: batch %d out of 1..%d", cfg->batch,
                               1 << 24);
    if (cfg->micro_batch < 0)
        return brisk_error_set(BRISK_EINVAL, "trainer: micro_batch %d < 0", cfg->micro_batch);
    if (!cfg->inference && cfg->accumulate > 1) {
        if (cfg->accumulate > cfg->batch || cfg->batch % cfg->accumulate)
            return brisk_error_set(BRISK_EINVAL, "trainer: accumulate %d passes must divide "
                                   "batch %d (each pass takes batch / accumulate samples)",
                                   cfg->accumulate, cfg->batch);
        const int pass = cfg->batch / cfg->accumulate;
        if (cfg->micro_batch > 0 && cfg->micro_batch < pass && pass % cfg->micro_batch)
            return brisk_error_set(BRISK_EINVAL, "trainer: a pass of %d samples (batch %d / "
                                   "accumulate %d) is not a whole number of micro-batches of "
                                   "%d: give a micro-batch that divides %d", pass, cfg->batch,
                                   cfg->accumulate, cfg->micro_batch, pass);
    } else if (cfg->accumulate < 0) {
        return brisk_error_set(BRISK_EINVAL, "trainer: accumulate %d < 0 (0 or 1: none)",
                               cfg->accumulate);
    }
    if (cfg->threads < 0 || cfg->threads > 4096)
        return brisk_error_set(BRISK_EINVAL, "trainer: threads %d out of 0..4096 (0: all CPUs)",
                               cfg->threads);
    if (!isfinite(cfg->clip_norm))
        return brisk_error_set(BRISK_EINVAL, "trainer: clip_norm %g is not finite",
                               (double)cfg->clip_norm);
    if (!(cfg->mixup >= 0 && cfg->mixup <= 1000))
        return brisk_error_set(BRISK_EINVAL, "trainer: mixup %g must be in (0, 1000], or 0 for "
                               "none", cfg->mixup);
    if (!(cfg->cutmix >= 0 && cfg->cutmix <= 1000))
        return brisk_error_set(BRISK_EINVAL, "trainer: cutmix %g must be in (0, 1000], or 0 "
                               "for none", cfg->cutmix);
    if (cfg->mixup > 0 && cfg->cutmix > 0)
        return brisk_error_set(BRISK_EINVAL, "trainer: mixup and cutmix together: choose one");
    if ((cfg->mixup > 0 || cfg->cutmix > 0) && !cfg->inference &&
        (cfg->model.loss != BRISK_LOSS_SOFTMAX_CE || cfg->model.input.rank == 2))
        return brisk_error_set(BRISK_EINVAL, "trainer: %s mixes class labels: it needs the "
                               "ce loss and a classifier of whole samples (not token data)",
                               cfg->mixup > 0 ? "mixup" : "cutmix");
    if (cfg->cutmix > 0 && !cfg->inference && cfg->model.input.rank != 3)
        return brisk_error_set(BRISK_EINVAL, "trainer: cutmix cuts boxes out of images: the "
                               "model's input is not an image");
    if (!(cfg->ema_decay >= 0 && cfg->ema_decay < 1))
        return brisk_error_set(BRISK_EINVAL, "trainer: ema_decay %g must be in (0, 1), or 0 "
                               "for none", (double)cfg->ema_decay);
    /* Its detail names the setting ("augment: ..."), as brisk-train's flag. */
    const brisk_shape in = cfg->model.input;
    if (!cfg->inference && (err = in.rank == 3 ? brisk_augment_check(&cfg->augment, in.c, in.h,
                                                                      in.w)
                                               : brisk_augment_check(&cfg->augment, 0, 0, 0)) < 0)
        return err;
    return BRISK_OK;
}

/* What a step or an evaluation is given: the data's shape against the model, every index in
 * the data set, every label within the model's outputs. */
static int check_data(const brisk_trainer *t, const char *what, const brisk_dataset *ds,
                      const int32_t *idx, int64_t n, int need_labels)
{
    if (!ds || (n > 0 && !idx))
        return brisk_error_set(BRISK_EINVAL, "%s: %s is NULL", what, ds ? "idx" : "ds");
    const brisk_shape in = t->cfg.model.input;
    const int T = brisk_model_positions(t->model);
    if (ds->tokens || T > 1) { /* token data for a sequence model, and only that */
        if (!ds->tokens || T == 1 || in.c != 1)
            return brisk_error_set(BRISK_EINVAL, "%s: %s", what, !ds->tokens
                                   ? "a sequence model takes token data (brisk_dataset_tokens)"
                                   : T == 1 ? "token data needs a sequence model (embed:V:C "
                                              "on an input of T positions)"
                                            : "the model's input is not token ids");
        if (T != ds->seq_len)
            return brisk_error_set(BRISK_EINVAL, "%s: windows of %d tokens, the model's input "
                                   "has %d positions", what, ds->seq_len, T);
        const int C = brisk_model_outputs(t->model), V = brisk_model_vocab(t->model);
        if (ds->classes > C || ds->classes > V)
            return brisk_error_set(BRISK_EINVAL, "%s: token ids go up to %d, beyond the model's "
                                   "%s of %d", what, ds->classes - 1,
                                   ds->classes > V ? "embedding table" : "outputs",
                                   ds->classes > V ? V : C);
        for (int64_t i = 0; i < n; i++)
            if (idx[i] < 0 || idx[i] >= ds->n)
                return brisk_error_set(BRISK_EINVAL, "%s: idx[%lld] = %d is not a window of the "
                                       "data set (0..%lld)", what, (long long)i, idx[i],
                                       (long long)ds->n - 1);
        return BRISK_OK;
    }
    if ((size_t)ds->d != brisk_shape_size(in))
        return brisk_error_set(BRISK_EINVAL, "%s: samples have %d features, the model's "
                               "input has %zu", what, ds->d, brisk_shape_size(in));
    /* Images go into an image model as they are: the whole shape must match, not just its
     * size. (Vectors may stand for images of their size, and images for vectors: data.h.) */
    const int channels = ds->channels > 0 ? ds->channels : 1;
    if (ds->rows > 0 && ds->cols > 0 && in.rank == 3 &&
        (channels != in.c || ds->rows != in.h || ds->cols != in.w))
        return brisk_error_set(BRISK_EINVAL, "%s: samples are images of (channels %d, height "
                               "%d, width %d), the model's input is (%d, %d, %d)", what,
                               channels, ds->rows, ds->cols, in.c, in.h, in.w);
    if (!ds->x && !ds->xf)
        return brisk_error_set(BRISK_EINVAL, "%s: the data set has no features (x and xf "
                               "are NULL)", what);
    const int C = brisk_model_outputs(t->model), top = C == 1 ? 1 : C - 1;
    if (ds->targets > 0) {
        if (!ds->yf || ds->targets != C || t->cfg.model.loss == BRISK_LOSS_SOFTMAX_CE)
            return brisk_error_set(BRISK_EINVAL, "%s: the data set has %d regression target%s "
                                   "per sample: the model needs as many outputs (it has %d) "
                                   "and the mse or bce loss (not %s)", what, ds->targets,
                                   ds->targets == 1 ? "" : "s", C,
                                   brisk_loss_name(t->cfg.model.loss));
    } else if (!ds->y && need_labels) {
        return brisk_error_set(BRISK_EINVAL, "%s: the data set has neither labels nor "
                               "targets", what);
    }
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= ds->n)
            return brisk_error_set(BRISK_EINVAL, "%s: idx[%lld] = %d is not a sample of the "
                                   "data set (0..%lld)", what, (long long)i, idx[i],
                                   (long long)ds->n - 1);
        if (!ds->targets && ds->y && ds->y[idx[i]] > top)
            return brisk_error_set(BRISK_EINVAL, "%s: sample %d has label %d, but the model has "
                                   "%d output%s (labels 0..%d)", what, idx[i], ds->y[idx[i]], C,
                                   C == 1 ? "" : "s", top);
    }
    return BRISK_OK;
}

int brisk_trainer_set_norm(brisk_trainer *t, const float *mean, const float *std, int count)
{
    if (!t)
        return brisk_error_set(BRISK_EINVAL, "set_norm: t is NULL");
    const int D = (int)brisk_shape_size(t->cfg.model.input);
    if ((count != 0 && count != 1 && count != D) || (count && (!mean || !std)) ||
        (!count && (mean || std)))
        return brisk_error_set(BRISK_EINVAL, "set_norm: count %d with mean %s and std %s: "
                               "expected 1 (one mean and std for every feature) or %d (one "
                               "per feature) with both arrays, or 0 with neither", count,
                               mean ? "given" : "NULL", std ? "given" : "NULL", D);
    for (int j = 0; j < count; j++)
        if (!isfinite(mean[j]) || !(std[j] > 0 && isfinite(std[j])))
            return brisk_error_set(BRISK_EINVAL, "set_norm: %s%d: mean %g, std %g: the mean "
                                   "must be finite and the std finite and > 0",
                                   count > 1 ? "feature " : "value ", j, (double)mean[j],
                                   (double)std[j]);
    float *copy = NULL;
    if (count && !(copy = malloc(2 * (size_t)count * sizeof *copy)))
        return brisk_error_set(BRISK_ENOMEM, "set_norm: out of memory");
    if (count) {
        memcpy(copy, mean, (size_t)count * sizeof *copy);
        memcpy(copy + count, std, (size_t)count * sizeof *copy);
    }
    free(t->norm_mean);
    t->norm_mean = copy;
    t->norm_std = copy ? copy + count : NULL;
    t->norm_count = count;
    return BRISK_OK;
}

int brisk_trainer_norm(const brisk_trainer *t, const float **mean, const float **std)
{
    if (!t || !mean || !std)
        return brisk_error_set(BRISK_EINVAL, "norm: a NULL argument");
    *mean = t->norm_mean;
    *std = t->norm_std;
    return t->norm_count;
}

size_t brisk_available_memory(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (size_t)kb * 1024;
}

/* The bytes brisk_trainer_create allocates for a model whose slabs have `len` floats. */
static double memory_bytes(const brisk_trainer_config *cfg, const brisk_model *m, size_t len)
{
    const int K = cfg->accumulate > 1 && !cfg->inference ? cfg->accumulate : 1;
    const int pass = cfg->batch / K; /* check_config: a multiple of K */
    const int micro = cfg->micro_batch > 0 && cfg->micro_batch < pass ? cfg->micro_batch
                      : cfg->micro_batch > 0 ? pass
                      : pass < BRISK_DEFAULT_MICRO_BATCH ? pass
                                                         : BRISK_DEFAULT_MICRO_BATCH;
    const double T = cfg->threads > 0 ? cfg->threads : brisk_cpu_count();
    /* Shard gradients are kept for one pass. */
    const double S = (double)((pass + micro - 1) / micro), P = brisk_comm_size(cfg->comm);
    const double slab = 4.0 * (double)len;
    double bytes = slab;                           /* parameters */
    if (cfg->inference)
        return bytes + T * (double)brisk_workspace_bytes(m, micro);
    if (cfg->ema_decay > 0)
        bytes += slab; /* the moving average */
    if (P == 1)
        bytes += 3 * slab + (S > 1 ? S * slab : 0); /* gradient, m, v, shard gradients */
    else
        bytes += 3 * slab / P + T * slab + ceil(S / P) * slab + S * slab / P;
    return bytes + T * (double)brisk_workspace_bytes(m, micro);
}

size_t brisk_trainer_memory_bytes(const brisk_trainer_config *cfg)
{
    brisk_model *m;
    if (brisk_model_create(&cfg->model, &m) < 0)
        return 0;
    const double b = memory_bytes(cfg, m, brisk_model_slab_len(m));
    brisk_model_destroy(m);
    return b < (double)SIZE_MAX ? (size_t)b : SIZE_MAX;
}

static void init_part(void *arg, int w, int T)
{
    brisk_trainer *t = arg;
    brisk_model_init_params_part(t->model, t->cfg.seed, t->params, t->buffers, w, T);
}

int brisk_trainer_create(const brisk_trainer_config *cfg, brisk_trainer **out)
{
    if (!cfg || !out)
        return brisk_error_set(BRISK_EINVAL, "trainer: %s is NULL", cfg ? "out" : "cfg");
    *out = NULL;
    int err = check_config(cfg);
    if (err < 0)
        return err;
    brisk_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return brisk_error_set(BRISK_ENOMEM, "trainer: out of memory");
    t->cfg = *cfg;
    t->cfg.accumulate = cfg->accumulate > 1 && !cfg->inference ? cfg->accumulate : 1;
    t->pass = cfg->batch / t->cfg.accumulate;
    if (t->cfg.micro_batch == 0)
        t->cfg.micro_batch = BRISK_DEFAULT_MICRO_BATCH;
    if (t->cfg.micro_batch > t->pass)
        t->cfg.micro_batch = t->pass;
    t->T = cfg->threads > 0 ? cfg->threads : brisk_cpu_count();
    t->cfg.threads = t->T;
    if ((err = brisk_model_create(&cfg->model, &t->model)) < 0 ||
        (err = brisk_pool_create(t->T, &t->pool)) < 0)
        goto fail;
    const size_t len = brisk_model_slab_len(t->model);
    /* Refuse what cannot fit rather than touch it: filling slabs larger than memory would
     * swap for minutes and then meet the OOM killer. */
    const double need = memory_bytes(&t->cfg, t->model, len);
    const size_t avail = brisk_available_memory();
    if (avail && need > (double)avail) {
        err = brisk_error_set(BRISK_ENOMEM, "trainer: this model and batch need about %.1f GB "
                              "(%zu parameters: weights, gradients and optimizer state, plus "
                              "activations for %d threads), but the machine has %.1f GB "
                              "available", need / 1e9, brisk_model_num_params(t->model), t->T,
                              (double)avail / 1e9);
        goto fail;
    }
    if (cfg->inference) /* evaluation runs in chunks of a micro-batch, one shard each */
        t->cfg.batch = t->pass = t->cfg.micro_batch;
    t->max_shards = brisk_trainer_num_shards(t, t->cfg.batch);
    t->pass_shards = brisk_trainer_num_shards(t, t->pass);
    t->n_blocks = (len + BLOCK - 1) / BLOCK;
    if (cfg->decay_matrices_only) { /* the slab's parts without decay, in order */
        const int nt = brisk_model_num_tensors(t->model);
        if (!(t->no_decay = malloc(2 * (size_t)(nt ? nt : 1) * sizeof *t->no_decay)))
            goto fail_nomem;
        for (int k = 0; k < nt; k++) {
            const brisk_tensor_view *v = brisk_model_tensor(t->model, k);
            if (v->buffer || (v->ndim >= 2 && v->init == BRISK_TENSOR_FAN))
                continue;
            t->no_decay[2 * t->n_no_decay] = v->offset;
            t->no_decay[2 * t->n_no_decay + 1] = v->offset + v->count;
            t->n_no_decay++;
        }
    }
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
    const size_t my_len = t->my_hi - t->my_lo;
    const size_t max_local = (size_t)n_local(t->pass_shards, t->P, 0);
    t->params = brisk_slab_alloc(t->model);
    t->buffers = brisk_buffers_alloc(t->model);
    const size_t stats_len = brisk_model_stats_len(t->model);
    t->shard_stats = calloc((size_t)t->max_shards * stats_len + 1, sizeof(float));
    t->stats_view = calloc((size_t)t->max_shards, sizeof *t->stats_view);
    t->shard_metrics = calloc((size_t)t->max_shards, sizeof *t->shard_metrics);
    t->shard_src = calloc((size_t)t->pass_shards, sizeof *t->shard_src);
    t->block_sq = calloc(t->n_blocks ? t->n_blocks : 1, sizeof *t->block_sq);
    t->ws = calloc((size_t)t->T, sizeof *t->ws);
    t->labels = calloc((size_t)t->T, sizeof *t->labels);
    t->tok_targets = calloc((size_t)t->T, sizeof *t->tok_targets);
    t->mix_x = calloc((size_t)t->T, sizeof *t->mix_x);
    t->labels_b = calloc((size_t)t->T, sizeof *t->labels_b);
    t->targets = calloc((size_t)t->T, sizeof *t->targets);
    t->teams = calloc((size_t)t->T, sizeof *t->teams);
    if (!t->params || !t->buffers || !t->shard_stats || !t->stats_view || !t->shard_metrics ||
        !t->shard_src || !t->block_sq || !t->ws || !t->labels || !t->targets ||
        !t->tok_targets || !t->mix_x || !t->labels_b ||
        !t->teams)
        goto fail_nomem;
    for (int s = 0; s < t->max_shards; s++)
        t->stats_view[s] = t->shard_stats + (size_t)s * stats_len;
    for (int r = 0; r < t->T; r++)
        t->teams[r] = (team_ctx){t->pool, r};
    t->settles = brisk_model_claims(t->model) && !getenv("BRISK_STRICT_BARRIERS");
    brisk_governor_init(&t->gov);
    if (cfg->inference)
        goto workspaces;
    /* The reduced gradient, m and v: my slice, 64-byte aligned (the slab when P = 1). */
    const size_t slice_bytes = (my_len * sizeof(float) + 63) / 64 * 64 + 64;
    t->grads = aligned_alloc(64, slice_bytes);
    t->opt_m = aligned_alloc(64, slice_bytes);
    t->opt_v = aligned_alloc(64, slice_bytes);
    if (!t->grads || !t->opt_m || !t->opt_v)
        goto fail_nomem;
    memset(t->grads, 0, slice_bytes);
    memset(t->opt_m, 0, slice_bytes);
    memset(t->opt_v, 0, slice_bytes);
    if (t->P == 1) {
        t->local_metrics = t->shard_metrics;
        t->local_stats = t->shard_stats;
        t->n_shard_grads = t->pass_shards;
    } else {
        t->n_shard_grads = t->T;
        t->local_metrics = calloc(max_local ? max_local : 1, sizeof *t->local_metrics);
        t->local_stats = calloc((max_local ? max_local : 1) * stats_len + 1, sizeof(float));
        if (!t->local_stats)
            goto fail_nomem;
        t->sendbuf = malloc((max_local ? max_local : 1) * len * sizeof(float));
        t->recvbuf = malloc(((size_t)t->pass_shards * my_len + 1) * sizeof(float));
        if (!t->local_metrics || !t->sendbuf || !t->recvbuf)
            goto fail_nomem;
    }
    t->shard_grads = calloc((size_t)t->n_shard_grads, sizeof *t->shard_grads);
    if (!t->shard_grads)
        goto fail_nomem;
    for (int s = 0; s < t->n_shard_grads; s++) {
        if (t->P == 1 && t->max_shards == 1)
            t->shard_grads[s] = t->grads; /* one shard: its gradient is the batch's (not
                                           * with passes: each adds to the sum) */
        else if (!(t->shard_grads[s] = brisk_slab_alloc(t->model)))
            goto fail_nomem;
    }
    if (t->P == 1)
        for (int s = 0; s < t->pass_shards; s++)
            t->shard_src[s] = t->shard_grads[s];
workspaces:
    for (int w = 0; w < t->T; w++) {
        if ((err = brisk_workspace_create(t->model, t->cfg.micro_batch, &t->ws[w])) < 0)
            goto fail;
        if (!(t->labels[w] = malloc((size_t)t->cfg.micro_batch)) ||
            !(t->targets[w] = malloc((size_t)t->cfg.micro_batch *
                                     (size_t)brisk_model_outputs(t->model) * sizeof(float))) ||
            !(t->tok_targets[w] = malloc((size_t)t->cfg.micro_batch *
                                         (size_t)brisk_model_positions(t->model) *
                                         sizeof(int32_t))))
            goto fail_nomem;
        if ((cfg->mixup > 0 || cfg->cutmix > 0) && !cfg->inference &&
            (!(t->labels_b[w] = malloc((size_t)t->cfg.micro_batch)) ||
             !(t->mix_x[w] = malloc((size_t)t->cfg.micro_batch *
                                    brisk_shape_size(cfg->model.input) * sizeof(float)))))
            goto fail_nomem;
    }
    /* The initialisation on every thread (GPT-2's 124M normals take seconds on one); the
     * slabs were allocated zeroed. */
    brisk_pool_run(t->pool, init_part, t);
    if (cfg->ema_decay > 0 && !cfg->inference) { /* the average starts as the initial model */
        if (!(t->ema_params = brisk_slab_alloc(t->model)) ||
            !(t->ema_buffers = brisk_buffers_alloc(t->model)))
            goto fail_nomem;
        memcpy(t->ema_params, t->params, len * sizeof *t->params);
        memcpy(t->ema_buffers, t->buffers,
               brisk_model_buffers_len(t->model) * sizeof *t->buffers);
    }
    t->lr_factor = 1.0f;
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
    for (int s = 0; t->shard_grads && s < t->n_shard_grads; s++)
        if (t->shard_grads[s] != t->grads)
            brisk_slab_free(t->shard_grads[s]);
    free(t->shard_grads);
    free(t->shard_src);
    if (t->local_metrics != t->shard_metrics)
        free(t->local_metrics);
    free(t->shard_metrics);
    brisk_slab_free(t->params);
    brisk_slab_free(t->buffers);
    brisk_slab_free(t->ema_params);
    brisk_slab_free(t->ema_buffers);
    if (t->local_stats != t->shard_stats)
        free(t->local_stats);
    free(t->shard_stats);
    free(t->stats_view);
    free(t->grads);
    free(t->opt_m);
    free(t->opt_v);
    free(t->sendbuf);
    free(t->recvbuf);
    free(t->rank_b);
    free(t->rank_lo);
    free(t->rank_len);
    free(t->block_sq);
    free(t->no_decay);
    for (int w = 0; t->ws && w < t->T; w++)
        brisk_workspace_destroy(t->ws[w]);
    for (int w = 0; t->labels && w < t->T; w++)
        free(t->labels[w]);
    for (int w = 0; t->targets && w < t->T; w++)
        free(t->targets[w]);
    for (int w = 0; t->tok_targets && w < t->T; w++)
        free(t->tok_targets[w]);
    free(t->tok_targets);
    for (int w = 0; t->mix_x && w < t->T; w++) {
        free(t->mix_x[w]);
        free(t->labels_b[w]);
    }
    free(t->mix_x);
    free(t->labels_b);
    free(t->ws);
    free(t->labels);
    free(t->targets);
    free(t->norm_mean);
    free(t->teams);
    brisk_model_destroy(t->model);
    free(t);
}

/* Gathers chunk c's samples into workspace `slot` (the team splitting the rows), then
 * forward and loss. Returns the rows in the chunk. */
static int chunk_forward(job *j, int c, const brisk_team *team, int slot, brisk_pass pass,
                         brisk_metrics *m, float *stats)
{
    brisk_trainer *tr = j->tr;
    const int mb = tr->cfg.micro_batch, D = j->ds->d;
    const int64_t lo = (int64_t)c * mb;
    const int rows = j->n - lo < mb ? (int)(j->n - lo) : mb;
    /* Rows claimed by the team, a few at a time. */
    brisk_share sh;
    const brisk_dataset *ds = j->ds;
    const int32_t *idx = j->idx + lo;
    const int K = ds->targets;
    brisk_share_begin(&sh, team, rows, brisk_share_grain(team, rows, 4, 1));
    for (long long r0, r1; brisk_share_next(&sh, &r0, &r1);) {
        float *xin = brisk_workspace_input(tr->ws[slot]) + r0 * D;
        if (ds->tokens) { /* windows: inputs and a target per position */
            brisk_dataset_gather_tokens(ds, idx + r0, (int)(r1 - r0), xin,
                                        tr->tok_targets[slot] + r0 * D);
        } else {
            brisk_dataset_gather(ds, idx + r0, (int)(r1 - r0), tr->norm_mean, tr->norm_std,
                                 tr->norm_count, xin, NULL);
            const brisk_shape in = tr->cfg.model.input;
            const int aug = pass == BRISK_PASS_TRAIN && brisk_augment_enabled(&tr->cfg.augment);
            if (aug)
                for (long long r = r0; r < r1; r++) /* as it is gathered, in place */
                    brisk_augment_apply(&tr->cfg.augment, in.c, in.h, in.w, tr->cfg.seed,
                                        tr->epoch, idx[r], tr->norm_mean, tr->norm_std,
                                        tr->norm_count, xin + (r - r0) * D);
            if (pass == BRISK_PASS_TRAIN && (tr->cfg.mixup > 0 || tr->cfg.cutmix > 0)) {
                /* Each row with its partner in the whole step's batch, augmented as in its own
                 * row: mixup's lam x + (1 - lam) x', rounded as PyTorch's lam * x + (1 - lam) * x';
                 * cutmix's box of x' pasted into x. */
                const float l = (float)j->lam, ol = (float)(1.0 - j->lam);
                for (long long r = r0; r < r1; r++) {
                    const int64_t at = j->sample_base + lo + r;
                    const int32_t p = j->step_idx[j->step_n - 1 - at];
                    float *xp = tr->mix_x[slot] + (size_t)r * D, *x = xin + (r - r0) * D;
                    brisk_dataset_gather(ds, &p, 1, tr->norm_mean, tr->norm_std, tr->norm_count,
                                         xp, NULL);
                    if (aug)
                        brisk_augment_apply(&tr->cfg.augment, in.c, in.h, in.w, tr->cfg.seed,
                                            tr->epoch, p, tr->norm_mean, tr->norm_std,
                                            tr->norm_count, xp);
                    if (tr->cfg.cutmix > 0) {
                        const size_t plane = (size_t)in.h * (size_t)in.w;
                        for (int ch = 0; ch < in.c; ch++)
                            for (int y = j->box[0]; y < j->box[1]; y++) {
                                const size_t o = (size_t)ch * plane + (size_t)y * in.w + j->box[2];
                                memcpy(x + o, xp + o, (size_t)(j->box[3] - j->box[2]) * sizeof *x);
                            }
                    } else {
                        for (int k = 0; k < D; k++)
                            x[k] = l * x[k] + ol * xp[k];
                    }
                    tr->labels_b[slot][r] = ds->y[p];
                }
            }
            /* The labels or targets of the same rows (zeros when predicting without either). */
            for (long long r = r0; r < r1; r++) {
                if (K > 0)
                    memcpy(tr->targets[slot] + r * K, ds->yf + (size_t)idx[r] * K,
                           (size_t)K * sizeof(float));
                else
                    tr->labels[slot][r] = ds->y ? ds->y[idx[r]] : 0;
            }
        }
    }
    if (!team || team->ith == 0)
        memset(m, 0, sizeof *m);
    brisk_team_barrier(team);
    const brisk_pass_keys keys = {.seed = tr->cfg.seed, .step = j->step,
                                  .sample0 = j->sample_base + lo};
    brisk_model_forward(tr->model, tr->params, tr->buffers, tr->ws[slot], rows, pass, &keys,
                        stats, team);
    const float scale = pass == BRISK_PASS_TRAIN ? j->grad_scale : 0.0f;
    if (ds->tokens) /* the mean over the D positions of each window */
        brisk_model_loss_tokens(tr->model, tr->ws[slot], tr->tok_targets[slot], rows,
                                scale / (float)D, m, team);
    else if (pass == BRISK_PASS_TRAIN && (tr->cfg.mixup > 0 || tr->cfg.cutmix > 0))
        brisk_model_loss_mixed(tr->model, tr->ws[slot], tr->labels[slot], tr->labels_b[slot],
                               j->lam, rows, scale, m, team);
    else
        brisk_model_loss_targets(tr->model, tr->ws[slot], tr->labels[slot],
                                 K > 0 ? tr->targets[slot] : NULL, rows, scale, m, team);
    return rows;
}

/* Phase A, one shard: its gradient into its slab, or (P > 1) into the slot's slab and from
 * there, slice by slice, into the send buffer: for rank q, [my shard k][q's slice]. */
static void step_chunk(job *j, int k, const brisk_team *team, int slot)
{
    brisk_trainer *tr = j->tr;
    const int s = j->first + k * j->stride;
    const size_t sl = brisk_model_stats_len(tr->model);
    const int rows = chunk_forward(j, s, team, slot, BRISK_PASS_TRAIN, &j->metrics[k],
                                   sl ? j->stats + (size_t)k * sl : NULL);
    float *g = tr->shard_grads[tr->P == 1 ? s : slot];
    brisk_model_backward(tr->model, tr->params, tr->buffers, tr->ws[slot], rows, g, team);
    if (tr->P == 1)
        return;
    brisk_team_barrier(team);
    /* Parallelize the copy over the slab: my part [a, b) meets each rank's slice once. */
    long long a, b;
    brisk_team_range(team, (long long)brisk_model_slab_len(tr->model), &a, &b);
    for (int q = 0; q < tr->P; q++) {
        const size_t lo = tr->rank_lo[q], hi = lo + tr->rank_len[q];
        const size_t x = (size_t)a > lo ? (size_t)a : lo, y = (size_t)b < hi ? (size_t)b : hi;
        if (x < y)
            memcpy(tr->sendbuf + (size_t)j->n_mine * lo + (size_t)k * tr->rank_len[q] + (x - lo),
                   g + x, (y - x) * sizeof *g);
    }
}

static void phase_a(void *arg, int w, int T)
{
    (void)T; /* chunks are claimed, not dealt by T */
    for_my_chunks(arg, w, step_chunk);
}

/* All T threads as one team, for the jobs that follow brisk_pool_set_teams(pool, 1). */
static brisk_team whole_team(brisk_trainer *tr, int w, int T)
{
    return (brisk_team){.ith = w, .nth = T, .barrier = team_barrier, .ctx = &tr->teams[0],
                        .claim = team_claim};
}

/* A claimed loop over this rank's blocks: chunk [lo, hi) is blocks rank_b + lo .. + hi. */
static void begin_blocks(const brisk_trainer *tr, const brisk_team *team, brisk_share *s)
{
    const long long nb = (long long)(tr->rank_b[tr->rank + 1] - tr->rank_b[tr->rank]);
    brisk_share_begin(s, team, nb, brisk_share_grain(team, nb, 8, 1));
}

static int next_blocks(const brisk_trainer *tr, brisk_share *s, size_t *b0, size_t *b1)
{
    long long lo, hi;
    if (!brisk_share_next(s, &lo, &hi))
        return 0;
    *b0 = tr->rank_b[tr->rank] + (size_t)lo;
    *b1 = tr->rank_b[tr->rank] + (size_t)hi;
    return 1;
}

/* Phase B: sum the S shard gradients of my blocks in shard order, one block at a time so that
 * its sum of squares reads it from L1. A pass after the first goes on adding to the sum, in
 * the same order as one pass over all the step's shards would. */
static void reduce_blocks(job *j, const brisk_team *team)
{
    brisk_trainer *tr = j->tr;
    const int S = j->chunks;
    const size_t len = brisk_model_slab_len(tr->model);
    float *g = tr->grads;
    const int reduce = S > 1 || tr->shard_src[0] != g;
    brisk_share sh;
    begin_blocks(tr, team, &sh);
    for (size_t b0, b1; next_blocks(tr, &sh, &b0, &b1);)
    for (size_t b = b0; b < b1; b++) {
        const size_t blo = b * BLOCK, bhi = blo + BLOCK < len ? blo + BLOCK : len;
        const size_t off = blo - tr->my_lo, cnt = bhi - blo;
        if (reduce) {
            if (j->first_pass)
                memcpy(g + off, tr->shard_src[0] + off, cnt * sizeof *g);
            for (int s = j->first_pass ? 1 : 0; s < S; s++) {
                const float *src = tr->shard_src[s] + off;
                for (size_t i = 0; i < cnt; i++)
                    g[off + i] += src[i];
            }
        }
        if (j->last_pass)
            tr->block_sq[b] = brisk_sum_squares(g, off, off + cnt);
    }
}

static void phase_b(void *arg, int w, int T)
{
    job *j = arg;
    const brisk_team team = whole_team(j->tr, w, T);
    reduce_blocks(j, &team);
}

/* Phase C: the update of blocks [b0, b1) of parameters, m and v. */
static void update_range(job *j, size_t b0, size_t b1, float clip_scale)
{
    brisk_trainer *tr = j->tr;
    const size_t len = brisk_model_slab_len(tr->model);
    const size_t lo = b0 * BLOCK, hi = b1 * BLOCK < len ? b1 * BLOCK : len;
    if (lo >= hi)
        return;
    const size_t off = lo - tr->my_lo;
    if (!tr->n_no_decay) {
        brisk_optim_update(&tr->cfg.optim, tr->steps_done + 1, j->lr, clip_scale,
                           tr->params + lo, tr->grads + off, tr->opt_m + off, tr->opt_v + off, 0,
                           hi - lo);
        return;
    }
    /* Segments with and without weight decay: the same arithmetic elementwise, so the split
     * does not change a bit. */
    brisk_optim_config plain = tr->cfg.optim;
    plain.weight_decay = 0;
    size_t at = lo;
    for (int s = 0; s <= tr->n_no_decay && at < hi; s++) {
        const size_t a = s < tr->n_no_decay ? tr->no_decay[2 * s] : hi;
        const size_t b = s < tr->n_no_decay ? tr->no_decay[2 * s + 1] : hi;
        for (int pass = 0; pass < 2; pass++) { /* [at, a) decayed, then [a, b) not */
            const size_t x = pass ? (a > at ? a : at) : at;
            const size_t y = pass ? (b < hi ? b : hi) : (a < hi ? a : hi);
            if (x < y)
                brisk_optim_update(pass ? &plain : &tr->cfg.optim, tr->steps_done + 1, j->lr,
                                   clip_scale, tr->params + lo, tr->grads + off,
                                   tr->opt_m + off, tr->opt_v + off, x - lo, y - lo);
            at = y > at ? y : at;
        }
    }
}

/* The update of this rank's blocks, claimed by the team. */
static void update_blocks(job *j, const brisk_team *team, float clip_scale)
{
    brisk_share sh;
    begin_blocks(j->tr, team, &sh);
    for (size_t b0, b1; next_blocks(j->tr, &sh, &b0, &b1);)
        update_range(j, b0, b1, clip_scale);
}

static void phase_c(void *arg, int w, int T)
{
    job *j = arg;
    const brisk_team team = whole_team(j->tr, w, T);
    update_blocks(j, &team, j->clip_scale);
}

/* The global gradient norm (blocks in order) and whether it and the loss (shards in order)
 * are finite: every thread that calls it gets the same answer. */
static int norm_and_check(const job *j, double *norm)
{
    double sq = 0.0, loss = 0.0;
    for (size_t b = 0; b < j->tr->n_blocks; b++)
        sq += j->tr->block_sq[b];
    for (int s = 0; s < j->step_chunks; s++)
        loss += j->tr->shard_metrics[s].loss_sum;
    *norm = sqrt(sq);
    return isfinite(*norm) && isfinite(loss);
}

/* One process: phases B and C in one job. After B's barrier every worker derives the same
 * norm and the same verdict in the same order, and updates its own blocks. */
static void phase_bc(void *arg, int w, int T)
{
    job *j = arg;
    const brisk_team team = whole_team(j->tr, w, T);
    reduce_blocks(j, &team);
    brisk_pool_team_settle(j->tr->pool, 0); /* every block's sum of squares is in */
    double norm;
    if (norm_and_check(j, &norm))
        update_blocks(j, &team, brisk_clip_scale(norm, j->tr->cfg.clip_norm));
}

/* Gathers every rank's per-chunk items (rank r's n_local(chunks, P, r) items of `bytes`
 * each, in its local order: chunks r, r + P, ...) into out in the global chunk order: the
 * shards' metrics, or their normalisation statistics. */
static int mp_gather_chunks(brisk_trainer *t, int chunks, size_t bytes, const void *mine,
                            void *out)
{
    size_t *counts = malloc(2 * (size_t)t->P * sizeof *counts);
    char *seg = malloc(((size_t)chunks + 1) * bytes);
    if (!counts || !seg) {
        free(counts);
        free(seg);
        return brisk_error_set(BRISK_ENOMEM, "trainer: out of memory to gather %d chunks' "
                               "results", chunks);
    }
    size_t *displs = counts + t->P, at = 0;
    for (int r = 0; r < t->P; r++) {
        counts[r] = (size_t)n_local(chunks, t->P, r) * bytes;
        displs[r] = at;
        at += counts[r];
    }
    memcpy(seg + displs[t->rank], mine, counts[t->rank]);
    brisk__comm_allgatherv(t->comm, seg, counts, displs, BRISK__COMM_BYTE);
    for (int c = 0; c < chunks; c++)
        memcpy((char *)out + (size_t)c * bytes,
               seg + displs[c % t->P] + (size_t)(c / t->P) * bytes, bytes);
    free(seg);
    free(counts);
    return BRISK_OK;
}

/* Every shard's slice to the slice's owner; then shard_src[s] is where shard s's part of my
 * slice landed (it came from rank s % P as that rank's local shard s / P). */
static void mp_exchange(brisk_trainer *t, int S, int n_mine, size_t *v)
{
    const int P = t->P;
    size_t *sc = v, *sd = v + P, *rc = v + 2 * P, *rd = v + 3 * P, before = 0;
    const size_t my_len = t->my_hi - t->my_lo;
    for (int q = 0; q < P; q++) {
        sc[q] = (size_t)n_mine * t->rank_len[q];
        sd[q] = (size_t)n_mine * t->rank_lo[q];
        rc[q] = (size_t)n_local(S, P, q) * my_len;
        rd[q] = before * my_len;
        before += (size_t)n_local(S, P, q);
    }
    brisk__comm_alltoallv(t->comm, t->sendbuf, sc, sd, t->recvbuf, rc, rd);
    for (int s = 0; s < S; s++)
        t->shard_src[s] = t->recvbuf + rd[s % P] + (size_t)(s / P) * my_len;
}

/* The first tensor (input side first) whose gradient has a non-finite entry in my slice. */
static const char *first_nonfinite(const brisk_trainer *t)
{
    for (int k = 0; k < brisk_model_num_tensors(t->model); k++) {
        const brisk_tensor_view *v = brisk_model_tensor(t->model, k);
        const size_t lo = v->offset, hi = lo + (size_t)v->rows * (size_t)v->cols;
        for (size_t i = lo > t->my_lo ? lo : t->my_lo; i < hi && i < t->my_hi; i++)
            if (!isfinite(t->grads[i - t->my_lo]))
                return v->name;
    }
    return NULL;
}

/* The moving average after a step (brisk_ema_update), worker w's part of the slab and of the
 * buffers: elementwise, so the split over T changes no bit. */
static void ema_update(void *arg, int w, int T)
{
    brisk_trainer *t = arg;
    const brisk_team team = whole_team(t, w, T);
    const long long len = (long long)brisk_model_slab_len(t->model);
    const long long nb = (long long)brisk_model_buffers_len(t->model);
    brisk_share sh;
    brisk_share_begin(&sh, &team, len, brisk_share_grain(&team, len, 8, 4096));
    for (long long lo, hi; brisk_share_next(&sh, &lo, &hi);)
        brisk_ema_update(t->ema_params, t->params, (size_t)lo, (size_t)hi, t->cfg.ema_decay);
    brisk_share_begin(&sh, &team, nb, brisk_share_grain(&team, nb, 8, 4096));
    for (long long lo, hi; brisk_share_next(&sh, &lo, &hi);)
        brisk_ema_update(t->ema_buffers, t->buffers, (size_t)lo, (size_t)hi,
                         t->cfg.ema_decay);
}

/* After each step: how many threads take part from the next (brisk_governor_step). */
static void adapt_threads(brisk_trainer *t, int n, double seconds)
{
    const int K = brisk_pool_active(t->pool);
    const int k = brisk_governor_step(&t->gov, K, t->T, n, seconds,
                                      brisk_pool_contended(t->pool), brisk_now_seconds());
    if (k != K)
        brisk_pool_set_active(t->pool, k);
}

int brisk_trainer_set_threads_in_use(brisk_trainer *t, int k)
{
    if (!t)
        return brisk_error_set(BRISK_EINVAL, "trainer: NULL trainer");
    if (k < 0 || k > t->T)
        return brisk_error_set(BRISK_EINVAL, "trainer: %d threads in use (0 to adapt, or 1..%d "
                               "allowed)", k, t->T);
    brisk_governor_restart(&t->gov, k > 0);
    brisk_pool_set_active(t->pool, k > 0 ? k : t->T);
    return BRISK_OK;
}

int brisk_trainer_threads_in_use(const brisk_trainer *t)
{
    return brisk_pool_active(t->pool);
}

int brisk_trainer_step(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                       brisk_step_stats *out)
{
    if (!t || !out)
        return brisk_error_set(BRISK_EINVAL, "step: %s is NULL", t ? "out" : "the trainer");
    memset(out, 0, sizeof *out);
    if (t->cfg.inference)
        return brisk_error_set(BRISK_ESTATE, "step: the trainer was made for inference only");
    if (n < 1 || n > t->cfg.batch)
        return brisk_error_set(BRISK_EINVAL, "step: %d samples (1..batch %d allowed)", n,
                               t->cfg.batch);
    const int bad = check_data(t, "step", ds, idx, n, 1);
    if (bad < 0)
        return bad;
    if ((t->cfg.mixup > 0 || t->cfg.cutmix > 0) && (!ds->y || ds->targets > 0))
        return brisk_error_set(BRISK_EINVAL, "step: %s mixes class labels, and these data "
                               "have %s", t->cfg.mixup > 0 ? "mixup" : "cutmix",
                               ds->targets > 0 ? "regression targets" : "none");
    int box[4] = {0, 0, 0, 0};
    const brisk_shape in = t->cfg.model.input;
    const double lam = t->cfg.mixup > 0
                           ? brisk_mixup_lambda(t->cfg.seed, t->steps_done, t->cfg.mixup)
                       : t->cfg.cutmix > 0
                           ? brisk_cutmix_box(t->cfg.seed, t->steps_done, t->cfg.cutmix, in.h,
                                              in.w, &box[0], &box[1], &box[2], &box[3])
                           : 1.0;
    const int S = brisk_trainer_num_shards(t, n), P = t->P;
    const size_t sl = brisk_model_stats_len(t->model);
    const double t0 = brisk_now_seconds();
    double shard_s = 0; /* in phase A */
    size_t v[4 * 64], *vp = P <= 64 ? v : malloc(4 * (size_t)P * sizeof *vp);
    if (!vp)
        return brisk_error_set(BRISK_ENOMEM, "step: out of memory for %d ranks", P);
    job j = {0};
    /* Passes of t->pass samples (one unless accumulating): pass p's shards are the step's
     * shards s0.., with their samples' keys; each adds its shards to the sum in order. */
    for (int64_t at = 0; at < n; at += t->pass) {
        const int np = n - at < t->pass ? (int)(n - at) : t->pass;
        const int Sp = brisk_trainer_num_shards(t, np), s0 = (int)(at / t->cfg.micro_batch);
        const int last = at + np >= n;
        j = (job){.tr = t, .ds = ds, .idx = idx + at, .n = np, .sample_base = at, .chunks = Sp,
                  .first = t->rank, .stride = P,
                  .metrics = P == 1 ? t->shard_metrics + s0 : t->local_metrics,
                  .stats = P == 1 ? t->shard_stats + (size_t)s0 * sl : t->local_stats,
                  .first_pass = at == 0, .last_pass = last, .step_chunks = S,
                  .step_idx = idx, .step_n = n,
                  .lam = lam, .box = {box[0], box[1], box[2], box[3]},
                  .grad_scale = 1.0f / (float)n, .step = t->steps_done,
                  .lr = brisk_schedule_lr(&t->cfg.schedule, t->steps_done) * t->lr_factor};
        plan(&j, n_local(Sp, P, t->rank));
        const double a0 = brisk_now_seconds();
        brisk_pool_run(t->pool, phase_a, &j);
        shard_s += brisk_now_seconds() - a0;
        int err = BRISK_OK;
        if (P > 1) {
            mp_exchange(t, Sp, j.n_mine, vp);
            /* Every shard's statistics and metrics, in shard order, on every rank. */
            if (sl)
                err = mp_gather_chunks(t, Sp, sl * sizeof(float), t->local_stats,
                                       t->shard_stats + (size_t)s0 * sl);
            if (err == BRISK_OK)
                err = mp_gather_chunks(t, Sp, sizeof(brisk_metrics), t->local_metrics,
                                       t->shard_metrics + s0);
        }
        if (err < 0) {
            if (vp != v)
                free(vp);
            return err;
        }
        if (last && sl) /* the running statistics, once per step, shards in order */
            brisk_model_merge_stats(t->model, t->buffers, t->stats_view, S);
        brisk_pool_set_teams(t->pool, 1);
        brisk_pool_run(t->pool, P == 1 && last ? phase_bc : phase_b, &j);
    }
    if (P > 1) {
        /* Everyone gets every block's sum of squares. */
        for (int q = 0; q < P; q++) {
            vp[q] = t->rank_b[q + 1] - t->rank_b[q];
            vp[P + q] = t->rank_b[q];
        }
        brisk__comm_allgatherv(t->comm, t->block_sq, vp, vp + P, BRISK__COMM_DOUBLE);
    }
    if (vp != v)
        free(vp);
    t->shard_seconds += shard_s;
    for (int s = 0; s < S; s++)
        brisk_metrics_add(&out->metrics, &t->shard_metrics[s]);
    double norm;
    const int finite = norm_and_check(&j, &norm);
    out->grad_norm = norm;
    out->lr = j.lr;
    if (!finite) {
        const char *where = first_nonfinite(t);
        return brisk_error_set(BRISK_ENONFINITE,
                               "step %lld: the %s is not finite (loss %s; first non-finite "
                               "gradient%s: %s)",
                               (long long)t->steps_done + 1,
                               isfinite(out->metrics.loss_sum) ? "gradient" : "loss",
                               isnan(out->metrics.loss_sum)   ? "NaN"
                               : isinf(out->metrics.loss_sum) ? "infinite"
                                                              : "finite",
                               P > 1 ? " in this process's slice" : "", where ? where : "none");
    }
    if (P > 1) {
        j.clip_scale = brisk_clip_scale(norm, t->cfg.clip_norm);
        brisk_pool_set_teams(t->pool, 1);
        brisk_pool_run(t->pool, phase_c, &j);
        brisk__comm_allgatherv(t->comm, t->params, t->rank_len, t->rank_lo, BRISK__COMM_FLOAT);
    }
    if (t->ema_params) {
        brisk_pool_set_teams(t->pool, 1);
        brisk_pool_run(t->pool, ema_update, t);
    }
    t->update_seconds += brisk_now_seconds() - t0 - shard_s;
    brisk_comm_note_step(t->comm, brisk_now_seconds() - t0);
    adapt_threads(t, n, brisk_now_seconds() - t0);
    t->steps_done++;
    return BRISK_OK;
}

/* ---- Evaluation ----------------------------------------------------------------------- */

static void eval_chunk(job *j, int k, const brisk_team *team, int slot)
{
    brisk_trainer *tr = j->tr;
    const int c = j->first + k * j->stride;
    const int rows = chunk_forward(j, c, team, slot, BRISK_PASS_EVAL, &j->metrics[k], NULL);
    if ((!j->sums && !j->pred && !j->outputs) || (team && team->ith != 0))
        return;
    /* What the network does with the chunk, for monitoring: thread 0 of the team, after the
     * loss's barrier. */
    const int L = brisk_model_num_layers(tr->model), C = brisk_model_outputs(tr->model);
    const int ld = brisk_workspace_ld(tr->ws[slot]);
    if (j->sums) {
        double *sums = j->sums + (size_t)c * 2 * (size_t)L;
        for (int l = 0; l < L; l++) {
            const float *a = brisk_workspace_output(tr->ws[slot], l);
            double s = 0, sq = 0;
            const brisk_shape out = brisk_model_layer(tr->model, l)->out;
            const int units = (int)brisk_shape_features(out);
            const int cols = rows * brisk_shape_positions(out);
            for (int u = 0; u < units; u++)
                for (int i = 0; i < cols; i++) {
                    const double x = a[(size_t)u * ld + i];
                    s += x;
                    sq += x * x;
                }
            sums[2 * l] = s;
            sums[2 * l + 1] = sq;
        }
    }
    if (j->outputs) { /* probabilities for ce (softmax) and bce (sigmoid), values for mse */
        const float *z = brisk_workspace_output(tr->ws[slot], L - 1);
        const brisk_loss loss = tr->cfg.model.loss;
        float *out = j->outputs + (size_t)c * (size_t)tr->cfg.micro_batch * (size_t)C;
        for (int i = 0; i < rows; i++) {
            float *o = out + (size_t)i * (size_t)C;
            double mx = -INFINITY, sum = 0;
            for (int u = 0; u < C; u++) {
                o[u] = z[(size_t)u * ld + i];
                mx = o[u] > mx ? o[u] : mx;
            }
            for (int u = 0; loss == BRISK_LOSS_SOFTMAX_CE && u < C; u++)
                sum += exp((double)o[u] - mx);
            for (int u = 0; u < C; u++)
                o[u] = loss == BRISK_LOSS_SOFTMAX_CE ? (float)(exp((double)o[u] - mx) / sum)
                       : loss == BRISK_LOSS_BCE_LOGITS ? (float)(1.0 / (1.0 + exp(-(double)o[u])))
                                                       : o[u];
        }
    }
    if (j->pred) {
        const float *z = brisk_workspace_output(tr->ws[slot], L - 1);
        const int64_t lo = (int64_t)c * tr->cfg.micro_batch;
        for (int i = 0; i < rows; i++) {
            int best = 0;
            if (C == 1) {
                best = z[i] > 0.0f;
            } else {
                for (int u = 1; u < C; u++)
                    if (z[(size_t)u * ld + i] > z[(size_t)best * ld + i])
                        best = u;
            }
            j->pred[lo + i] = best;
        }
    }
}

static void eval_job(void *arg, int w, int T)
{
    (void)T; /* chunks are claimed, not dealt by T */
    for_my_chunks(arg, w, eval_chunk);
}

/* Forward passes over idx[0, n) in chunks of micro_batch; with `distribute`, each rank takes
 * its share of chunks and the metrics are gathered. Per-chunk metrics are summed in chunk
 * order. */
static int run_eval(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int64_t n,
                    int distribute, double *sums, int32_t *pred,
                    float *outputs, brisk_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (n < 0)
        return brisk_error_set(BRISK_EINVAL, "evaluate: n %lld < 0", (long long)n);
    if (n == 0)
        return BRISK_OK;
    const int bad = check_data(t, outputs ? "predict" : "evaluate", ds, idx, n,
                               !outputs);
    if (bad < 0)
        return bad;
    const int64_t chunks = (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch;
    if (chunks > INT32_MAX)
        return brisk_error_set(BRISK_EINVAL, "evaluate: %lld samples is too many",
                               (long long)n);
    const int P = distribute ? t->P : 1, rank = distribute ? t->rank : 0;
    job j = {.tr = t, .ds = ds, .idx = idx, .n = n,
             .chunks = (int)chunks, .first = rank, .stride = P, .sums = sums, .pred = pred,
             .outputs = outputs};
    const int mine = n_local((int)chunks, P, rank);
    brisk_metrics *all = malloc((size_t)chunks * sizeof *all);
    j.metrics = P > 1 ? malloc(((size_t)mine + 1) * sizeof *j.metrics) : all;
    if (!all || !j.metrics) {
        free(all);
        if (j.metrics != all)
            free(j.metrics);
        return brisk_error_set(BRISK_ENOMEM, "evaluate: out of memory for %lld chunks",
                               (long long)chunks);
    }
    plan(&j, mine);
    brisk_pool_run(t->pool, eval_job, &j);
    int err = BRISK_OK;
    if (P > 1) {
        err = mp_gather_chunks(t, (int)chunks, sizeof(brisk_metrics), j.metrics, all);
        free(j.metrics);
    }
    for (int64_t c = 0; err == BRISK_OK && c < chunks; c++)
        brisk_metrics_add(out, &all[c]);
    free(all);
    return err;
}

int brisk_trainer_evaluate(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                           int64_t n, brisk_metrics *out)
{
    if (!t || !out)
        return brisk_error_set(BRISK_EINVAL, "evaluate: %s is NULL", t ? "out" : "the trainer");
    return run_eval(t, ds, idx, n, 1, NULL, NULL, NULL, out);
}

int brisk_trainer_predict(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                          int64_t n, float *outputs, brisk_metrics *metrics)
{
    if (!t || (n > 0 && !outputs))
        return brisk_error_set(BRISK_EINVAL, "predict: %s is NULL", t ? "outputs" : "the trainer");
    if (brisk_model_positions(t->model) > 1)
        return brisk_error_set(BRISK_EINVAL, "predict: a sequence model predicts a distribution "
                               "per position: generate text with brisk_generate");
    brisk_metrics m;
    const int err = run_eval(t, ds, idx, n, 0, NULL, NULL, outputs, &m);
    if (err == BRISK_OK && metrics)
        *metrics = ds->y || ds->targets ? m : (brisk_metrics){0};
    return err;
}

int brisk_trainer_inspect(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                          int64_t n, brisk_metrics *metrics,
                          int32_t *pred, double *act_mean, double *act_std)
{
    const int L = brisk_model_num_layers(t->model);
    const int64_t chunks = n > 0 ? (n + t->cfg.micro_batch - 1) / t->cfg.micro_batch : 0;
    if (pred && brisk_model_positions(t->model) > 1)
        return brisk_error_set(BRISK_EINVAL, "inspect: a sequence model predicts per position, "
                               "not per sample: pass pred = NULL");
    double *sums = NULL;
    if (chunks > 0 && (act_mean || act_std) &&
        !(sums = malloc((size_t)chunks * 2 * (size_t)L * sizeof *sums)))
        return brisk_error_set(BRISK_ENOMEM, "inspect: out of memory for %lld chunks",
                               (long long)chunks);
    brisk_metrics m;
    const int err = run_eval(t, ds, idx, n, 0, sums, pred, NULL, &m);
    if (err < 0) {
        free(sums);
        return err;
    }
    if (metrics)
        *metrics = m;
    for (int l = 0; l < L; l++) {
        double s = 0, sq = 0; /* merged in chunk order: independent of T */
        for (int64_t c = 0; sums && c < chunks; c++) {
            s += sums[(size_t)c * 2 * (size_t)L + 2 * (size_t)l];
            sq += sums[(size_t)c * 2 * (size_t)L + 2 * (size_t)l + 1];
        }
        const double units = (double)brisk_shape_size(brisk_model_layer(t->model, l)->out);
        const double cnt = n > 0 ? (double)n * units : 1.0, mu = s / cnt;
        const double var = sq / cnt - mu * mu;
        if (act_mean)
            act_mean[l] = mu;
        if (act_std)
            act_std[l] = var > 0 ? sqrt(var) : 0.0;
    }
    free(sums);
    return BRISK_OK;
}

/* ---- State ---------------------------------------------------------------------------- */

void brisk_trainer_slice(const brisk_trainer *t, size_t *lo, size_t *hi)
{
    *lo = t->my_lo;
    *hi = t->my_hi;
}

void brisk_trainer_load_state(brisk_trainer *t, const float *params, const float *opt_m,
                              const float *opt_v, const float *buffers, int64_t steps)
{
    BRISK_ASSERT(steps >= 0);
    const size_t len = brisk_model_slab_len(t->model), my_len = t->my_hi - t->my_lo;
    memcpy(t->params, params, len * sizeof *params);
    if (buffers)
        memcpy(t->buffers, buffers, brisk_model_buffers_len(t->model) * sizeof *buffers);
    if (!t->cfg.inference) {
        memcpy(t->opt_m, opt_m + t->my_lo, my_len * sizeof *opt_m);
        memcpy(t->opt_v, opt_v + t->my_lo, my_len * sizeof *opt_v);
    }
    if (t->ema_params) {
        memcpy(t->ema_params, t->params, len * sizeof *params);
        memcpy(t->ema_buffers, t->buffers,
               brisk_model_buffers_len(t->model) * sizeof *t->buffers);
    }
    t->steps_done = steps;
}

int brisk_trainer_load_ema(brisk_trainer *t, const float *ema_params, const float *ema_buffers)
{
    if (!t || !ema_params || !ema_buffers)
        return brisk_error_set(BRISK_EINVAL, "load_ema: %s is NULL",
                               !t ? "the trainer" : !ema_params ? "ema_params" : "ema_buffers");
    if (!t->ema_params)
        return brisk_error_set(BRISK_ESTATE, "load_ema: the trainer keeps no moving average "
                               "(ema_decay 0)");
    memcpy(t->ema_params, ema_params, brisk_model_slab_len(t->model) * sizeof *ema_params);
    memcpy(t->ema_buffers, ema_buffers,
           brisk_model_buffers_len(t->model) * sizeof *ema_buffers);
    return BRISK_OK;
}

float *brisk_trainer_ema_params(brisk_trainer *t) { return t->ema_params; }
float *brisk_trainer_ema_buffers(brisk_trainer *t) { return t->ema_buffers; }

int brisk_trainer_evaluate_ema(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                               int64_t n, brisk_metrics *out)
{
    if (!t || !out)
        return brisk_error_set(BRISK_EINVAL, "evaluate_ema: %s is NULL",
                               t ? "out" : "the trainer");
    if (!t->ema_params)
        return brisk_error_set(BRISK_ESTATE, "evaluate_ema: the trainer keeps no moving "
                               "average (ema_decay 0)");
    /* Evaluation reads params and buffers only: the average stands in for them. */
    float *p = t->params, *b = t->buffers;
    t->params = t->ema_params;
    t->buffers = t->ema_buffers;
    const int err = brisk_trainer_evaluate(t, ds, idx, n, out);
    t->params = p;
    t->buffers = b;
    return err;
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

const brisk_trainer_config *brisk_trainer_get_config(const brisk_trainer *t) { return &t->cfg; }

int brisk_trainer_set_lr_factor(brisk_trainer *t, float factor)
{
    if (!(factor > 0 && factor <= 1))
        return brisk_error_set(BRISK_EINVAL, "trainer: lr factor %g out of (0, 1]",
                               (double)factor);
    t->lr_factor = factor;
    return BRISK_OK;
}

float brisk_trainer_lr_factor(const brisk_trainer *t) { return t->lr_factor; }

int brisk_trainer_set_epoch(brisk_trainer *t, int64_t epoch)
{
    if (!t || epoch < 0)
        return brisk_error_set(BRISK_EINVAL, "set_epoch: %s", t ? "a negative epoch"
                                                                   : "NULL trainer");
    t->epoch = epoch;
    return BRISK_OK;
}

void brisk_trainer_set_steps_done(brisk_trainer *t, int64_t steps)
{
    BRISK_ASSERT(steps >= 0);
    t->steps_done = steps;
}

int brisk_trainer_describe_plan(const brisk_trainer *t, int n, char *buf, size_t size)
{
    int at = 0;
    if (n > t->pass) { /* accumulating: the plan of a full pass */
        const int passes = (n + t->pass - 1) / t->pass;
        at = snprintf(buf, size, "%d passes of %d samples (accumulated), each ", passes,
                      t->pass);
        n = t->pass;
    }
    const int S = brisk_trainer_num_shards(t, n), mine = n_local(S, t->P, t->rank);
    const int T = t->T, R = mine % T, full = mine - R, mb = t->cfg.micro_batch;
    if (at >= 0 && (size_t)at < size)
        at += snprintf(buf + at, size - (size_t)at, "%d shard%s of %d sample%s", S,
                       S == 1 ? "" : "s", mb, mb == 1 ? "" : "s");
#define ADD(...)                                                                           \
    do {                                                                                   \
        if (at >= 0 && (size_t)at < size)                                                  \
            at += snprintf(buf + at, size - (size_t)at, __VA_ARGS__);                      \
    } while (0)
    if (t->P > 1)
        ADD(" over %d processes; in this one, %d", t->P, mine);
    if (T == 1 && mine > 0)
        ADD(", %s on 1 thread", mine == 1 ? "all" : "one after another");
    else if (full > 0)
        ADD(", %d per thread on %d threads", full / T, T);
    if (T > 1 && R > 0) {
        const int lo = T / R, hi = (T + R - 1) / R;
        if (full > 0)
            ADD(", then the last %d", R);
        ADD(",%s shared by ", R > 1 ? " each" : "");
        if (hi > lo)
            ADD("%d-%d threads", lo, hi);
        else
            ADD("%d threads", lo);
    }
    if (mine == 0)
        ADD(", none for this process");
#undef ADD
    return at;
}

void brisk_trainer_thread_times(const brisk_trainer *t, double *busy, double *waiting)
{
    for (int w = 0; w < t->T; w++)
        brisk_pool_times(t->pool, w, &busy[w], &waiting[w]);
}

void brisk_trainer_reset_thread_times(brisk_trainer *t)
{
    brisk_pool_reset_times(t->pool);
    t->shard_seconds = t->update_seconds = 0;
}

void brisk_trainer_phase_times(const brisk_trainer *t, double *shards, double *update)
{
    *shards = t->shard_seconds;
    *update = t->update_seconds;
}

const float *brisk_trainer_grads(const brisk_trainer *t) { return t->grads; }
const brisk_model *brisk_trainer_model(const brisk_trainer *t) { return t->model; }
float *brisk_trainer_params(brisk_trainer *t) { return t->params; }
float *brisk_trainer_buffers(brisk_trainer *t) { return t->buffers; }
float *brisk_trainer_opt_m(brisk_trainer *t) { return t->opt_m; }
float *brisk_trainer_opt_v(brisk_trainer *t) { return t->opt_v; }
int64_t brisk_trainer_steps_done(const brisk_trainer *t) { return t->steps_done; }
int brisk_trainer_micro_batch(const brisk_trainer *t) { return t->cfg.micro_batch; }
int brisk_trainer_threads(const brisk_trainer *t) { return t->T; }
