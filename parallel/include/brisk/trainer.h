/* brisk/trainer.h: one training step and evaluation over a shard plan.
 *
 * The global batch of B samples is cut into S = ceil(B / micro_batch) micro-shards (S depends
 * only on B and the micro-batch, never on the thread count). The T worker threads take whole
 * shards, one each, while there are at least T left; the rest are each shared by a team of
 * threads that split every layer's work (brisk/team.h), so every core has work at any batch.
 * Each shard's gradient is computed into its own buffer. Then worker t owns a 64-byte-aligned
 * slice of the flat parameter vector: it sums the S shard gradients for its slice in shard
 * order, adds its blocks to the global gradient norm (summed block by block in a fixed order),
 * and applies the optimizer update to its slice of the parameters, m and v in place. There is
 * one copy of each, and because no order depends on T (or on the number of processes), the
 * result is bitwise identical for any number of threads and processes.
 */
#ifndef BRISK_TRAINER_H
#define BRISK_TRAINER_H

#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/model.h"
#include "brisk/optim.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default micro-shard size. Larger shards are faster: each product streams a weight
 * matrix once for more samples, and there are fewer shard gradients to write and add up,
 * while threads share a shard at no cost to the result when shards are fewer than threads.
 * Measured with bench_mlp on 2 cores (784-1024-1024-10, batch 256): 64 -> 13.7k, 128 ->
 * 14.9k, 256 -> 16.4k samples/s; batch 1024: 256 and 512 alike. Under MPI a batch needs at
 * least one shard per process to keep every process busy. */
#define BRISK_DEFAULT_MICRO_BATCH 256

typedef struct brisk_trainer_config {
    brisk_model_config model;
    brisk_optim_config optim;
    brisk_schedule schedule;
    float clip_norm;  /* clip by global norm; <= 0 turns clipping off */
    /* Nonzero: the optimizer's weight decay applies to weight matrices only (tensors of two
     * or more dimensions that a layer multiplies by: dense, conv, attention), not to biases,
     * normalisation scales or embedding tables (GPT-2's recipe; with a head tied to the
     * token embedding, the shared table is an embedding). */
    int decay_matrices_only;
    int batch;        /* B, the largest batch a step takes */
    int micro_batch;  /* micro-shard size; 0 means min(B / K, BRISK_DEFAULT_MICRO_BATCH) */
    /* K, gradient accumulation: a step's batch is computed in K passes of B / K samples, so
     * that activations and shard gradients need memory for B / K only; 0 means 1. B must be
     * a multiple of K and B / K of the micro-batch (a micro-batch larger than B / K is cut
     * to it). The step is then bitwise the step of one pass over B samples with the same
     * micro-batch: the micro-shards, their keys and the order they are added in are the
     * same. */
    int accumulate;
    /* Image augmentation of the training samples as they are gathered (brisk/data.h): every
     * draw keyed by (seed, the epoch set by brisk_trainer_set_epoch, the sample's index in
     * the data set). Zero: none. Needs an image input when on; evaluation never augments. */
    brisk_augment augment;
    /* D in (0, 1): an exponential moving average of the weights and the buffers (running
     * statistics), timm's ModelEmaV2: a copy of the initial model, then after every step
     * ema = D * ema + (1 - D) * w for each value, in float32 as PyTorch computes it. The same
     * on every rank and for any T. 0: none. */
    double ema_decay;
    /* Alpha > 0: mixup (Zhang et al., timm's Mixup) for classification with the ce loss: in
     * step s, sample i of the batch of n is mixed with sample n - 1 - i, lam x_i + (1 - lam)
     * x_(n-1-i) after its augmentation, lam = brisk_mixup_lambda(seed, s, alpha), and the loss
     * is brisk_model_loss_mixed's. Keyed by the step and the positions in the whole batch, so
     * the same for any T, P and accumulation. 0: none. */
    double mixup;
    /* Alpha > 0: cutmix instead (Yun et al., timm's cutmix; images): the same partners, a box
     * of the image taken from the partner (brisk_cutmix_box, one per step), and the loss's
     * weights from the box's area. Not together with mixup. 0: none. */
    double cutmix;
    int threads;      /* T worker threads; 0 means brisk_cpu_count() */
    uint64_t seed;    /* parameter init */
    brisk_comm *comm; /* the job's processes (not owned); NULL: this process alone */
    /* Nonzero: evaluation and prediction only. No gradients, optimizer state or shard
     * buffers are allocated; brisk_trainer_step is refused (BRISK_ESTATE), load_state takes
     * the parameters and buffers only, and the optimizer settings are not used. */
    int inference;
} brisk_trainer_config;

/* What one step did. */
typedef struct brisk_step_stats {
    brisk_metrics metrics;  /* loss and accuracy of the batch before the update */
    double grad_norm;       /* global L2 norm before clipping */
    float lr;               /* rate used */
} brisk_step_stats;

typedef struct brisk_trainer brisk_trainer;

/* About how many bytes brisk_trainer_create allocates for cfg: parameters, the reduced
 * gradient, the optimizer moments, the shard gradients and every thread's activations (the
 * formula in docs/architecture.md). 0 for a model configuration that is not valid. */
size_t brisk_trainer_memory_bytes(const brisk_trainer_config *cfg);

/* The memory the machine has available now (MemAvailable of /proc/meminfo), 0 if unknown. */
size_t brisk_available_memory(void);

/* The CPUs this process may use (its affinity mask; at least 1): the default thread count. */
int brisk_cpu_count(void);

/* Creates the model, its parameters (initialised from cfg->seed), gradients, optimizer state
 * and workspaces. *out is owned by the caller. BRISK_ENOMEM, before anything large is
 * allocated, when brisk_trainer_memory_bytes exceeds brisk_available_memory (the detail says
 * both). */
int brisk_trainer_create(const brisk_trainer_config *cfg, brisk_trainer **out);
void brisk_trainer_destroy(brisk_trainer *t); /* accepts NULL */

/* One optimizer step on samples idx[0, n) of ds (1 <= n <= B), normalised as the trainer says
 * (brisk_trainer_set_norm). With token data (a sequence model: windows idx of ds) the loss is
 * the mean over the n T positions, and the metrics count positions (per-token loss and
 * next-token accuracy). Returns BRISK_OK; BRISK_EINVAL for n out of range or samples whose width is not the model's
 * input; BRISK_ENONFINITE (parameters left unchanged) when the loss or the gradient is NaN or
 * infinite, with a detail naming the step and the first tensor whose gradient is not finite. */
int brisk_trainer_step(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                       brisk_step_stats *out);

/* Loss and accuracy over samples idx[0, n) without changing anything, on all workers.
 * Returns BRISK_OK or BRISK_ENOMEM. */
int brisk_trainer_evaluate(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                            int64_t n, brisk_metrics *out);

/* The model's outputs for samples idx[0, n) into outputs (n, C), row by row: class
 * probabilities for the ce loss (softmax), per-output probabilities for bce (sigmoid), the
 * values themselves for mse; evaluation mode. Not for sequence models (BRISK_EINVAL). Every process computes all of them. metrics
 * (may be NULL) gets the loss and accuracy against the data set's labels or targets; the
 * data set may have neither (brisk_dataset_load_features), and metrics is then zero. */
int brisk_trainer_predict(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                          int64_t n, float *outputs, brisk_metrics *metrics);

/* brisk_trainer_evaluate plus what the network does with the samples, for monitoring, in
 * the same forward pass; changes nothing. Any output may be NULL. metrics: bitwise what
 * brisk_trainer_evaluate gives. pred (n; NULL for sequence models): the predicted class of
 * each sample (argmax of the logits; for one output, logit > 0). act_mean and act_std (one per layer,
 * brisk_model_num_layers): mean and standard deviation over all samples and units of each
 * layer's output (the last layer's: the logits). Deterministic for any T. Returns BRISK_OK or
 * BRISK_ENOMEM. */
int brisk_trainer_inspect(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                          int64_t n, brisk_metrics *metrics, int32_t *pred, double *act_mean,
                          double *act_std);

/* The input normalisation, (x[j] - mean[j]) / std[j], from now on in steps, evaluation and
 * prediction (and recorded in brisk_fit's checkpoints). count is 1 (one mean and std shared
 * by every feature: brisk_dataset_stats) or D, the model's input size (per feature:
 * brisk_dataset_feature_stats); count 0 (NULL, NULL) means none, the default. Copies the
 * arrays. BRISK_EINVAL for another count, or a std that is not finite and > 0 (naming it). */
int brisk_trainer_set_norm(brisk_trainer *t, const float *mean, const float *std, int count);
/* The normalisation in use: returns its count (0, 1 or D), with *mean and *std pointing to
 * the trainer's copies (NULL for none); BRISK_EINVAL for a NULL argument. */
int brisk_trainer_norm(const brisk_trainer *t, const float **mean, const float **std);

/* Sets the optimizer step count (the schedule position and Adam's bias correction). */
void brisk_trainer_set_steps_done(brisk_trainer *t, int64_t steps);

/* The epoch the next steps belong to (0 at creation): it keys the augmentation's draws
 * (brisk_fit sets it before each epoch, and a resume to the epoch in progress). BRISK_EINVAL
 * for a NULL trainer or a negative epoch. */
int brisk_trainer_set_epoch(brisk_trainer *t, int64_t epoch);

/* A factor in (0, 1] on the schedule's rate from now on (1 at creation): what brisk_fit's
 * plateau policy sets. BRISK_EINVAL outside that range. */
int brisk_trainer_set_lr_factor(brisk_trainer *t, float factor);
float brisk_trainer_lr_factor(const brisk_trainer *t);

/* Resumes from full slabs (every rank passes the same, e.g. read from one checkpoint): copies
 * the parameters and the buffers (running statistics; NULL keeps the current ones), keeps
 * this rank's slice of m and v, sets the step count. With ema_decay, the average starts over
 * from these weights (brisk_trainer_load_ema then restores a saved one). */
void brisk_trainer_load_state(brisk_trainer *t, const float *params, const float *opt_m,
                              const float *opt_v, const float *buffers, int64_t steps);

/* The moving average of the weights (ema_decay), as a checkpoint saved it: slabs laid out as
 * the parameters and buffers. BRISK_ESTATE when the trainer keeps none. */
int brisk_trainer_load_ema(brisk_trainer *t, const float *ema_params, const float *ema_buffers);

/* The moving average's parameter and buffer slabs (owned by the trainer), or NULL without
 * ema_decay. */
float *brisk_trainer_ema_params(brisk_trainer *t);
float *brisk_trainer_ema_buffers(brisk_trainer *t);

/* brisk_trainer_evaluate with the moving average's weights and buffers instead of the
 * trained ones. BRISK_ESTATE without ema_decay. */
int brisk_trainer_evaluate_ema(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                               int64_t n, brisk_metrics *out);

/* What brisk_trainer_gather collects. */
enum { BRISK_GATHER_GRADS = 1, BRISK_GATHER_MOMENTS = 2 };

/* Collective (every rank calls it with the same `what`): gathers the last step's reduced
 * gradient (BRISK_GATHER_GRADS) and/or the optimizer moments (BRISK_GATHER_MOMENTS) into full
 * slabs on rank 0; the other ranks' pointers are not used and may be NULL. In a single
 * process it copies. */
void brisk_trainer_gather(brisk_trainer *t, int what, float *grads, float *opt_m, float *opt_v);

/* This process's slice [*lo, *hi) of the flat parameter vector: the part of the gradient it
 * reduces and of the optimizer state it keeps (the whole slab in a single process). */
void brisk_trainer_slice(const brisk_trainer *t, size_t *lo, size_t *hi);

const brisk_model *brisk_trainer_model(const brisk_trainer *t);
/* The configuration the trainer was made with, defaults resolved (threads, micro-batch). */
const brisk_trainer_config *brisk_trainer_get_config(const brisk_trainer *t);
float *brisk_trainer_params(brisk_trainer *t);       /* slab; owned by the trainer */
/* The buffer slab (running statistics), the same on every rank; owned by the trainer. */
float *brisk_trainer_buffers(brisk_trainer *t);
/* The optimizer moments of this process's slice (brisk_trainer_slice): the whole slab in a
 * single process; owned by the trainer (NULL for an inference trainer). */
float *brisk_trainer_opt_m(brisk_trainer *t);
float *brisk_trainer_opt_v(brisk_trainer *t);
/* The reduced gradient of the batch mean from the last step, owned by the trainer: the slab
 * in a single process; with several processes only this process's slice (brisk_trainer_slice),
 * element i of the slab at index i - lo (brisk_trainer_gather collects the whole). */
const float *brisk_trainer_grads(const brisk_trainer *t);
int64_t brisk_trainer_steps_done(const brisk_trainer *t);
int brisk_trainer_num_shards(const brisk_trainer *t, int n); /* S for a batch of n */
/* Writes into buf (snprintf-style, returns what snprintf returns) how a batch of n is spread
 * over this process's threads, e.g. "1 shard of 128 samples, shared by 2 threads each". */
int brisk_trainer_describe_plan(const brisk_trainer *t, int n, char *buf, size_t size);
/* Per worker thread (T entries each): seconds spent inside steps and evaluations, and of
 * those, waiting for other threads at barriers (the rest is work). */
void brisk_trainer_thread_times(const brisk_trainer *t, double *busy, double *waiting);
/* Wall time of all steps so far in computing the shards' gradients (forward and backward) and
 * in reducing them and updating the parameters (with the MPI exchanges, when P > 1). */
void brisk_trainer_phase_times(const brisk_trainer *t, double *shards, double *update);
/* Sets the thread and phase times back to zero. */
void brisk_trainer_reset_thread_times(brisk_trainer *t);
int brisk_trainer_micro_batch(const brisk_trainer *t);
int brisk_trainer_threads(const brisk_trainer *t);            /* T */

/* Threads in use. A trainer starts with all T; while another program competes for the CPUs
 * (a thread waits for its core), it measures after its steps whether one thread fewer trains
 * faster (a thread on a busy core holds its team back at every barrier), keeps the faster,
 * and every few seconds measures one more again. Results never depend on it. k = 1..T fixes
 * the number (no adapting) from the next step; k = 0 goes back to all T, adapting. Returns
 * BRISK_OK or BRISK_EINVAL. */
int brisk_trainer_set_threads_in_use(brisk_trainer *t, int k);
int brisk_trainer_threads_in_use(const brisk_trainer *t);

#ifdef __cplusplus
}
#endif

#endif
