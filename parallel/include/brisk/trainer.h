/* brisk/trainer.h: one training step and evaluation over a shard plan.
 *
 * The global batch of B samples is cut into S = ceil(B / micro_batch) micro-shards (S depends
 * only on B and the micro-batch, never on the thread count). Each micro-shard's gradient is
 * computed into its own buffer; the buffers are summed in shard order, the global gradient
 * norm is taken in a fixed order, and the optimizer updates parameters, m and v in place:
 * there is one copy of each. This version runs the plan on the calling thread; the worker
 * pool that spreads shards and parameter slices over T threads builds on the same plan.
 */
#ifndef BRISK_TRAINER_H
#define BRISK_TRAINER_H

#include "brisk/data.h"
#include "brisk/model.h"
#include "brisk/optim.h"

#include <stdint.h>

typedef struct brisk_trainer_config {
    brisk_model_config model;
    brisk_optim_config optim;
    brisk_schedule schedule;
    float clip_norm;  /* clip by global norm; <= 0 turns clipping off */
    int batch;        /* B, the largest batch a step takes */
    int micro_batch;  /* micro-shard size; <= 0 means B (one shard) */
    uint64_t seed;    /* parameter init */
} brisk_trainer_config;

/* What one step did. */
typedef struct brisk_step_stats {
    brisk_metrics metrics;  /* loss and accuracy of the batch before the update */
    double grad_norm;       /* global L2 norm before clipping */
    float lr;               /* rate used */
} brisk_step_stats;

typedef struct brisk_trainer brisk_trainer;

/* Creates the model, its parameters (initialised from cfg->seed), gradients, optimizer state
 * and workspaces. *out is owned by the caller. */
int brisk_trainer_create(const brisk_trainer_config *cfg, brisk_trainer **out);
void brisk_trainer_destroy(brisk_trainer *t); /* accepts NULL */

/* One optimizer step on samples idx[0, n) of ds (1 <= n <= B), normalised with mean/std.
 * Returns BRISK_OK, or BRISK_ENONFINITE (parameters left unchanged) when the loss or the
 * gradient is NaN or infinite. */
int brisk_trainer_step(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int n,
                       float mean, float std, brisk_step_stats *out);

/* Loss and accuracy over samples idx[0, n) without changing anything. */
void brisk_trainer_evaluate(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx,
                            int64_t n, float mean, float std, brisk_metrics *out);

const brisk_model *brisk_trainer_model(const brisk_trainer *t);
float *brisk_trainer_params(brisk_trainer *t);       /* slab; owned by the trainer */
float *brisk_trainer_opt_m(brisk_trainer *t);        /* slab; owned by the trainer */
float *brisk_trainer_opt_v(brisk_trainer *t);        /* slab; owned by the trainer */
int64_t brisk_trainer_steps_done(const brisk_trainer *t);
int brisk_trainer_num_shards(const brisk_trainer *t, int n); /* S for a batch of n */

#endif
