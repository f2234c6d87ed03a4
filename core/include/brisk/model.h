/* brisk/model.h: a multilayer perceptron over flat parameter slabs.
 *
 * Glossary used across Brisk: B batch, D input width, H hidden width, C classes (output
 * width), L dense layers, P parameters, T threads, S micro-shards.
 *
 * A model is a stack of dense layers Y = X W^T + b (W is (out, in), row-major, as PyTorch
 * stores nn.Linear), each followed by the activation except the last, whose output (the
 * logits) goes to the loss. All parameters live in one 64-byte-aligned slab; gradients, Adam m
 * and v use the same layout, so the optimizer, the reduction and checkpoints are loops over
 * flat arrays and a tensor is a named view (offset, shape) into any of them.
 */
#ifndef BRISK_MODEL_H
#define BRISK_MODEL_H

#include "brisk/error.h"
#include "brisk/team.h"

#include <stddef.h>
#include <stdint.h>

#define BRISK_MAX_LAYERS 16

typedef enum brisk_act {
    BRISK_ACT_RELU,
    BRISK_ACT_GELU, /* exact: x * Phi(x), as torch.nn.GELU() */
    BRISK_ACT_TANH,
    BRISK_ACT_SIGMOID
} brisk_act;

typedef enum brisk_loss {
    BRISK_LOSS_SOFTMAX_CE,  /* softmax cross-entropy with integer labels */
    BRISK_LOSS_BCE_LOGITS,  /* binary cross-entropy on logits; one-hot targets when C > 1 */
    BRISK_LOSS_MSE          /* mean squared error; one-hot targets when C > 1 */
} brisk_loss;

typedef enum brisk_init {
    BRISK_INIT_AUTO,   /* He for relu/gelu, Glorot for tanh/sigmoid */
    BRISK_INIT_HE,     /* N(0, 2/fan_in) */
    BRISK_INIT_GLOROT  /* U(-a, a), a = sqrt(6/(fan_in + fan_out)) */
} brisk_init;

/* Plain configuration, copied by brisk_model_create. */
typedef struct brisk_model_config {
    int n_layers;                        /* L dense layers: widths has L + 1 entries */
    int widths[BRISK_MAX_LAYERS + 1];    /* D, H1, ..., C */
    brisk_act act;
    brisk_loss loss;
    brisk_init init;
} brisk_model_config;

/* A named view into a slab: floats [offset, offset + rows * cols). Bias: rows == 1. */
typedef struct brisk_tensor_view {
    char name[32];   /* "dense0.weight", "dense0.bias", ... */
    size_t offset;   /* in floats, a multiple of 16 (64 bytes) */
    int rows, cols;  /* weight: (out, in); bias: (1, out) */
} brisk_tensor_view;

typedef struct brisk_model brisk_model;

/* Parses "784-256-128-10" into cfg->widths/n_layers. Returns BRISK_OK or BRISK_EINVAL with a
 * detail naming what is wrong (widths must be 1..65536, 2..BRISK_MAX_LAYERS+1 of them). */
int brisk_model_parse_widths(const char *spec, brisk_model_config *cfg);

/* Creates a model (layout only, no memory for values). *out is owned by the caller and freed
 * with brisk_model_destroy. Returns BRISK_OK, BRISK_EINVAL or BRISK_ENOMEM. */
int brisk_model_create(const brisk_model_config *cfg, brisk_model **out);
void brisk_model_destroy(brisk_model *m); /* accepts NULL */

const brisk_model_config *brisk_model_get_config(const brisk_model *m);
size_t brisk_model_num_params(const brisk_model *m); /* P, without alignment padding */
size_t brisk_model_slab_len(const brisk_model *m);   /* floats in a slab, padding included */
int brisk_model_num_tensors(const brisk_model *m);   /* 2 L: weight and bias per layer */
const brisk_tensor_view *brisk_model_tensor(const brisk_model *m, int i);
const brisk_tensor_view *brisk_model_weight(const brisk_model *m, int layer);
const brisk_tensor_view *brisk_model_bias(const brisk_model *m, int layer);

/* A zeroed, 64-byte-aligned slab of brisk_model_slab_len floats; free with brisk_slab_free.
 * NULL when out of memory. */
float *brisk_slab_alloc(const brisk_model *m);
void brisk_slab_free(float *slab); /* accepts NULL */

/* Fills params: weights by cfg->init from (seed, tensor index, element index), biases zero,
 * padding zero. The result depends on the seed only. */
void brisk_model_init_params(const brisk_model *m, uint64_t seed, float *params);

/* Activation memory for one micro-shard of up to max_rows samples, shared by the threads of
 * the team that computes it. Owned by the caller.
 *
 * Layout: the input the caller fills is row-major, (max_rows, D). Everything the layers
 * compute is feature-major, (width, ld) with ld = brisk_workspace_ld(): unit j of sample i at
 * [j * ld + i], so that each matrix product reads the weights as they are stored (no packing)
 * and streams the samples as contiguous rows. */
typedef struct brisk_workspace brisk_workspace;
int brisk_workspace_create(const brisk_model *m, int max_rows, brisk_workspace **out);
void brisk_workspace_destroy(brisk_workspace *ws); /* accepts NULL */
/* The (max_rows, D) row-major input buffer that forward reads: fill rows [0, n) first. */
float *brisk_workspace_input(brisk_workspace *ws);
/* Layer l's output after the last forward, feature-major (widths[l + 1], ld): unit j of
 * sample i at [j * ld + i], activation applied (the logits for the last layer). Owned by the
 * workspace. */
const float *brisk_workspace_output(const brisk_workspace *ws, int layer);
int brisk_workspace_ld(const brisk_workspace *ws);
/* Bytes of activation memory a workspace of max_rows samples takes (for memory estimates). */
size_t brisk_workspace_bytes(const brisk_model *m, int max_rows);

/* Running sums of a pass; brisk_metrics_add merges partials (in a fixed order if you need
 * bitwise reproducibility). */
typedef struct brisk_metrics {
    double loss_sum;  /* sum over samples of the per-sample loss */
    int64_t correct;
    int64_t count;
} brisk_metrics;

static inline void brisk_metrics_add(brisk_metrics *acc, const brisk_metrics *part)
{
    acc->loss_sum += part->loss_sum;
    acc->correct += part->correct;
    acc->count += part->count;
}
static inline double brisk_metrics_loss(const brisk_metrics *m)
{
    return m->count ? m->loss_sum / (double)m->count : 0.0;
}
static inline double brisk_metrics_accuracy(const brisk_metrics *m)
{
    return m->count ? (double)m->correct / (double)m->count : 0.0;
}

/* What a forward pass is for: BRISK_PASS_TRAIN keeps what backward needs. */
typedef enum brisk_pass { BRISK_PASS_EVAL, BRISK_PASS_TRAIN } brisk_pass;

/* The passes below are run by every thread of a team (NULL: one thread) on the same
 * workspace, each computing its part; they return when the whole team is done. Each output
 * element is computed by one thread in an order that does not depend on the team's size
 * (brisk/gemm.h), so the results are bitwise the same for any team. Parameters are only
 * read; safe to run concurrently on different workspaces with shared parameters. */

/* Forward pass of rows [0, n) of the workspace input (1 <= n <= max_rows). */
void brisk_model_forward(const brisk_model *m, const float *params, brisk_workspace *ws, int n,
                         brisk_pass pass, const brisk_team *team);

/* Loss and accuracy of the last forward against labels[0..n): adds to *acc (per-sample loss
 * summed, in sample order) on the team's thread 0 only. If grad_scale != 0, also stores
 * grad_scale * dLoss_i/dlogits for backward, where Loss_i is sample i's loss (pass 1/B to get
 * the gradient of the batch mean). Labels must be < the output width (< 2 for one output). */
void brisk_model_loss(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels, int n,
                      float grad_scale, brisk_metrics *acc, const brisk_team *team);

/* Backward pass after a BRISK_PASS_TRAIN forward and the loss: overwrites the tensors of
 * grads (a slab; alignment padding is not touched) with the gradient of
 * sum_i grad_scale * Loss_i over the n rows. */
void brisk_model_backward(const brisk_model *m, const float *params, brisk_workspace *ws, int n,
                          float *grads, const brisk_team *team);

/* Names for flags and messages, and their inverses (-1 when unknown). */
const char *brisk_act_name(brisk_act a);
const char *brisk_loss_name(brisk_loss l);
int brisk_act_parse(const char *s);
int brisk_loss_parse(const char *s);

#endif
