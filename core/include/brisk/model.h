/* brisk/model.h: a model is a sequence of layers (brisk/layer.h) over flat slabs.
 *
 * Glossary used across Brisk: B batch, D input width, H hidden width, C classes (output
 * width), L layers, P parameters, T threads, S micro-shards.
 *
 * A model is described by a short layer list, one item per layer, separated by commas:
 *
 *   conv:32:3:pad1,relu,maxpool:2,conv:64:3:pad1,relu,maxpool:2,flatten,dense:128,relu,
 *   dropout:0.3,dense:10
 *
 * Items: dense:N[:nobias]; conv:OUT:K[:s<stride>][:pad<P>][:nobias] (a K x K convolution,
 * weights (out, in, K, K) as torch.nn.Conv2d); maxpool:K[:s<stride>], avgpool:K[:s<stride>]
 * (stride K by default); gap (global average pooling to (C, 1, 1)); flatten; relu;
 * leaky_relu[:SLOPE] (0.01); gelu (exact); tanh; sigmoid; dropout:P; batchnorm (per channel,
 * or per feature of a vector); layernorm (over all features of a sample); and any kind
 * registered with brisk_layer_register. The input shape comes from the data. The last
 * layer's outputs are the logits the loss reads. Presets: "cnn" (the list above), "resnet" (a
 * small residual network: three stages of a stride-2 convolution and a residual block, batch
 * normalisation, global average pooling; 1.09 M parameters for 1 x 28 x 28 images) and the
 * MLP shorthand "784-256-128-10" (dense layers with one activation between them).
 *
 * All trained parameters live in one 64-byte-aligned slab; gradients, Adam m and v use the
 * same layout, so the optimizer, the reduction and checkpoints are loops over flat arrays and
 * a tensor is a named view (offset, shape) into any of them. Running statistics live in a
 * second slab, the buffers.
 */
#ifndef BRISK_MODEL_H
#define BRISK_MODEL_H

#include "brisk/error.h"
#include "brisk/layer.h"
#include "brisk/optim.h"
#include "brisk/team.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BRISK_MODEL_SPEC_MAX 4096

/* Activations, for the MLP shorthand and by name. */
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
    BRISK_INIT_AUTO,   /* He for a weight that feeds relu, leaky_relu or gelu (or the logits),
                        * Glorot for one that feeds tanh or sigmoid */
    BRISK_INIT_HE,     /* N(0, 2/fan_in) */
    BRISK_INIT_GLOROT, /* U(-a, a), a = sqrt(6/(fan_in + fan_out)) */
    BRISK_INIT_GPT2    /* GPT-2's: every weight and embedding N(0, 0.02), except the weight
                        * that produces a residual branch (the last weight of a layer whose
                        * output goes, past dropout, into res) N(0, 0.02 / sqrt(R)), R the
                        * model's res layers (nanoGPT's c_proj, with R = 2 per block) */
} brisk_init;

/* A model: its layers, their tensors' layout, and its passes (opaque). */
typedef struct brisk_model brisk_model;

/* Plain configuration, copied by brisk_model_create. */
typedef struct brisk_model_config {
    char spec[BRISK_MODEL_SPEC_MAX]; /* the layer list */
    brisk_shape input;               /* per sample */
    brisk_loss loss;
    brisk_init init;
    /* ce only: PyTorch's label_smoothing, in [0, 1): the target is (1 - e) on the label and e
     * spread evenly over all C classes, so loss = (1 - e) (-log p_y) + e mean_c(-log p_c),
     * in training and evaluation alike; 0 (the default) is the plain cross-entropy. */
    float label_smoothing;
    /* The arithmetic of the layers' matrix products (dense, convolutions, attention):
     * BRISK_GEMM_FP32 (0, the default), or BRISK_GEMM_BF16, bfloat16 operands with float
     * accumulation (brisk/gemm.h), in training and evaluation alike. Parameters, gradients,
     * optimizer state, losses, normalisation statistics and every reduction stay float. */
    brisk_gemm_precision precision;
} brisk_model_config;

/* Sets cfg's layer list (a list as above or a preset name) and input shape; the loss and init
 * are left as they are. Checks the grammar and every item's arguments (the shapes are checked
 * by brisk_model_create). Returns BRISK_OK or BRISK_EINVAL with a detail that quotes the
 * offending item and its position. */
int brisk_model_config_set(brisk_model_config *cfg, const char *spec, brisk_shape input);

/* How a preset is meant to be trained; brisk-train (brisk_run) applies each part unless its
 * own setting is given. "cnn": AdamW, weight decay 0.05, 15 epochs (92% on Fashion-MNIST).
 * "resnet": AdamW, weight decay 0.05, rate 3e-3 warmed up over 200 steps then cosine to 0,
 * batch 256 in micro-batches of 128, augmentation crop:2,flip,erase:0.25, a moving average
 * of the weights (0.995), label smoothing 0.1, 20 epochs (94% on Fashion-MNIST). "gpt" (any
 * size), GPT-2's recipe as nanoGPT trains small models: AdamW with betas (0.9, 0.99) and
 * weight decay 0.1 on the weight matrices only, rate 1e-3 warmed up over 100 steps then
 * cosine to 1e-4, gradients clipped to norm 1, 5 epochs. A recipe's warmup takes at most a
 * tenth of a run's steps. Zero (or a negative rate, an empty text) in a field means the
 * run's default stays. */
typedef struct brisk_preset_recipe {
    brisk_optim_kind optimizer;
    double weight_decay;
    int epochs;
    double lr, min_lr, beta2, clip_norm;
    long long warmup;
    int decay_matrices_only;
    int batch, micro_batch;
    char augment[64]; /* brisk_augment_parse's text */
    double ema, label_smoothing;
} brisk_preset_recipe;

/* Fills *out with spec's recipe and returns BRISK_OK; BRISK_EINVAL (with a detail) for NULL
 * arguments or a spec that is not a preset with a recipe (layer lists, the MLP shorthand). */
int brisk_model_preset_recipe(const char *spec, brisk_preset_recipe *out);

/* The MLP shorthand: "784-256-128-10" (widths, the first the input's) with `act` between
 * the dense layers. Sets spec and input (a vector). BRISK_EINVAL as above. */
int brisk_model_config_mlp(brisk_model_config *cfg, const char *widths, brisk_act act);

/* The gpt preset: a GPT-2-style language model (nanoGPT's) of `layers` pre-LN blocks of
 * `channels` wide with `heads` heads, over token data of `vocab` ids in windows of seq_len:
 *
 *   embed:V:C, posembed:MAXT, [dropout:P,]
 *   L x (layernorm, attention:H[:dropP], [dropout:P,] res, layernorm, dense:4C, gelu:tanh,
 *        dense:C, [dropout:P,] res),
 *   layernorm, dense:V:nobias:tied
 *
 * with GPT-2's initialisation (BRISK_INIT_GPT2) and the ce loss averaged over every position.
 * max_seq (0: seq_len) is the position table's rows (GPT-2's 1024), dropout (0: none) every
 * dropout's probability. */
typedef struct brisk_gpt_config {
    int layers, channels, heads;
    double dropout;
    int vocab, seq_len, max_seq;
} brisk_gpt_config;

/* Reads the preset's name with its size: "gpt" (4 layers, 256 channels, 4 heads) or
 * "gpt:L:C:H[:drop<P>]" into g's layers, channels, heads and dropout (the rest untouched).
 * Returns BRISK_OK, or BRISK_EINVAL with a detail ("model: ...") for a spec that is not the
 * preset or has a bad size (C must split into H heads). */
int brisk_gpt_parse(const char *spec, brisk_gpt_config *g);

/* Sets cfg to the GPT g describes: the layer list above, the input (T token ids), the ce loss
 * and GPT-2's initialisation. BRISK_EINVAL (naming the field) for a size out of range or a
 * list over BRISK_MODEL_SPEC_MAX. */
int brisk_model_config_gpt(brisk_model_config *cfg, const brisk_gpt_config *g);

/* The C builder: appends one item ("dense:128", "relu", ...) to cfg->spec. BRISK_EINVAL for
 * a bad item or a full list. */
int brisk_model_config_add(brisk_model_config *cfg, const char *item);

/* Creates a model: every layer parsed, its shapes set from the input, its tensors laid out
 * (no memory for values). *out is owned by the caller (brisk_model_destroy). Returns
 * BRISK_OK, BRISK_EINVAL (the detail names the layer and what does not fit) or BRISK_ENOMEM. */
int brisk_model_create(const brisk_model_config *cfg, brisk_model **out);
void brisk_model_destroy(brisk_model *m); /* accepts NULL */

const brisk_model_config *brisk_model_get_config(const brisk_model *m);
int brisk_model_num_layers(const brisk_model *m);
const brisk_layer *brisk_model_layer(const brisk_model *m, int i);
int brisk_model_outputs(const brisk_model *m);        /* C: the last layer's output features
                                                       * (per position for a sequence) */
int brisk_model_positions(const brisk_model *m);      /* T of a sequence input; 1 otherwise */
/* The rows of the token embedding's table (the vocabulary its inputs index), or 0 for a model
 * without one. */
int brisk_model_vocab(const brisk_model *m);
size_t brisk_model_num_params(const brisk_model *m);  /* P, trained, without padding */
/* FNV-1a over a parameter slab's bytes (padding included, which stays zero): equal checksums
 * mean, for all practical purposes, bitwise equal weights. How brisk-train, the benchmarks and
 * the examples compare runs on different thread counts. */
uint64_t brisk_model_checksum(const brisk_model *m, const float *params);
size_t brisk_model_slab_len(const brisk_model *m);    /* floats in a slab, padding included */
size_t brisk_model_buffers_len(const brisk_model *m); /* floats in the buffer slab */
size_t brisk_model_stats_len(const brisk_model *m);   /* floats of statistics per shard */
int brisk_model_num_tensors(const brisk_model *m);    /* trained tensors and buffers */
/* 1 when every layer claims its team's work (brisk_layer.claims): then the passes below may
 * run in a team whose barriers settle (wait for the claimed work, not for every member). */
int brisk_model_claims(const brisk_model *m);
const brisk_tensor_view *brisk_model_tensor(const brisk_model *m, int i);
/* The tensor called name, or NULL. */
const brisk_tensor_view *brisk_model_find_tensor(const brisk_model *m, const char *name);

/* The canonical layer list (what a checkpoint stores) into buf; returns snprintf's value. */
int brisk_model_describe(const brisk_model *m, char *buf, size_t size);
/* A table of the layers, their output shapes and parameter counts, like Keras' summary(). */
int brisk_model_summary(const brisk_model *m, char *buf, size_t size);
/* The same with two more columns: each layer's forward FLOPs per sample (per token for a
 * sequence model: per position), and the activation memory a workspace of max_rows samples
 * gives it (its output and its scratch: what training keeps for the backward pass); and the
 * totals (forward and training FLOPs per sample or token, activation memory). */
int brisk_model_summary_batch(const brisk_model *m, int max_rows, char *buf, size_t size);

/* A zeroed, 64-byte-aligned slab of brisk_model_slab_len floats (brisk_slab_free). NULL
 * when out of memory. brisk_buffers_alloc: the same for the buffer slab. */
float *brisk_slab_alloc(const brisk_model *m);
float *brisk_buffers_alloc(const brisk_model *m);
void brisk_slab_free(float *slab); /* accepts NULL */

/* Fills params (weights by cfg->init from (seed, tensor index, element index), biases zero,
 * normalisation scales one, padding zero) and buffers (running means 0, variances 1). The
 * result depends on the seed only. */
void brisk_model_init_params(const brisk_model *m, uint64_t seed, float *params,
                             float *buffers);
/* Part `part` of `parts` of that initialisation (every tensor's elements in
 * [count part / parts, count (part + 1) / parts)), on slabs whose padding is already zero:
 * threads that each do one part, in any order, give brisk_model_init_params's values (every
 * value depends on its tensor and element only). */
void brisk_model_init_params_part(const brisk_model *m, uint64_t seed, float *params,
                                  float *buffers, int part, int parts);

/* Activation memory for one micro-shard of up to max_rows samples, shared by the threads of
 * the team that computes it. Owned by the caller. The input the caller fills is row-major,
 * (max_rows, D); everything the layers compute is feature-major (brisk/layer.h), with
 * ld = brisk_workspace_ld(). */
typedef struct brisk_workspace brisk_workspace;
int brisk_workspace_create(const brisk_model *m, int max_rows, brisk_workspace **out);
void brisk_workspace_destroy(brisk_workspace *ws); /* accepts NULL */
float *brisk_workspace_input(brisk_workspace *ws);
/* Layer l's output after the last forward, (out size, ld) feature-major. After a training
 * pass, a dense or conv layer followed by relu, tanh or sigmoid gives the activation's
 * output: the activation was applied in place (BRISK_LAYER_ACT_IN_PLACE in brisk/layer.h);
 * an evaluation pass keeps both. */
const float *brisk_workspace_output(const brisk_workspace *ws, int layer);
int brisk_workspace_ld(const brisk_workspace *ws);
/* Bytes of activation memory a workspace of max_rows samples takes. */
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

/* Where a pass sits in training, for counter-based randomness (dropout). */
typedef struct brisk_pass_keys {
    uint64_t seed;
    int64_t step;    /* the optimizer step */
    int64_t sample0; /* the shard's first sample's position in the batch */
} brisk_pass_keys;

/* The passes below are run by every thread of a team (NULL: one thread) on the same
 * workspace, each computing its part; they return when the whole team is done. Each output
 * element is computed by one thread in an order that does not depend on the team's size, so
 * the results are bitwise the same for any team. Parameters are only read. */

/* Forward pass of rows [0, n) of the workspace input (1 <= n <= max_rows). keys may be NULL
 * for evaluation. A BRISK_PASS_TRAIN pass writes the shard's statistics (batchnorm) into
 * stats (brisk_model_stats_len floats; NULL when that is 0) and keeps what backward needs;
 * evaluation uses the running statistics in buffers. */
void brisk_model_forward(const brisk_model *m, const float *params, const float *buffers,
                         brisk_workspace *ws, int n, brisk_pass pass,
                         const brisk_pass_keys *keys, float *stats, const brisk_team *team);

/* Loss and accuracy of the last forward against labels[0..n): adds to *acc (per-sample loss
 * summed, in sample order) on the team's thread 0 only. If grad_scale != 0, also stores
 * grad_scale * dLoss_i/dlogits for backward, where Loss_i is sample i's loss (pass 1/B to get
 * the gradient of the batch mean). Returns BRISK_OK, or BRISK_EINVAL (nothing computed) for
 * a label beyond the output width (labels 0..C-1, or 0..1 for one output) or n outside
 * [0, the workspace's rows]. */
int brisk_model_loss(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels, int n,
                     float grad_scale, brisk_metrics *acc, const brisk_team *team);

/* The same against float targets (n, C) row-major when targets is not NULL (regression with
 * mse, or multi-label bce; not ce), else against labels. Targets earn no accuracy. */
int brisk_model_loss_targets(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                             const float *targets, int n, float grad_scale, brisk_metrics *acc,
                             const brisk_team *team);

/* Mixup's loss (the ce loss only): lam * CE(z, labels[i]) + (1 - lam) * CE(z, labels_b[i])
 * per sample, each with the model's label smoothing (PyTorch's mixed loss; the cross-entropy
 * against the mixed target), lam in [0, 1]; a sample counts as right when its prediction is
 * the label of the larger weight. Otherwise as brisk_model_loss. */
int brisk_model_loss_mixed(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                           const uint8_t *labels_b, double lam, int n, float grad_scale,
                           brisk_metrics *acc, const brisk_team *team);

/* Sequence models (and classifiers with more than 256 classes): softmax cross-entropy of the
 * last forward against one target class per column, targets[i * T + t] for position t of
 * sample i (T = brisk_model_positions), over n samples. Adds to *acc (on the team's thread 0)
 * the loss summed over the n T positions in order, the positions whose largest logit is the
 * target, and n T to count: per-token figures. With grad_scale != 0 also stores grad_scale *
 * dLoss_j/dlogits for every position j (pass 1 / (B T) for the gradient of the mean over a
 * batch's tokens). The columns are shared out among the team. Returns BRISK_OK, or
 * BRISK_EINVAL (nothing computed) for a target outside 0..C-1, a model without the ce loss
 * or n outside [0, the workspace's rows]. */
int brisk_model_loss_tokens(const brisk_model *m, brisk_workspace *ws, const int32_t *targets,
                            int n, float grad_scale, brisk_metrics *acc, const brisk_team *team);

/* Backward pass after a BRISK_PASS_TRAIN forward and the loss: overwrites the tensors of
 * grads (a slab; alignment padding is not touched) with the gradient of
 * sum_i grad_scale * Loss_i over the n rows. */
void brisk_model_backward(const brisk_model *m, const float *params, const float *buffers,
                          brisk_workspace *ws, int n, float *grads, const brisk_team *team);

/* Updates the running statistics in buffers from S shards' statistics, in shard order (what
 * the trainer does once per step). */
void brisk_model_merge_stats(const brisk_model *m, float *buffers, const float *const *stats,
                             int S);

/* Text generation with a language model (a model on token data: brisk_model_positions T > 1,
 * the ce loss). */
typedef struct brisk_generate_config {
    int tokens;          /* how many to generate (>= 0) */
    double temperature;  /* the logits are divided by it; 0: always the likeliest token */
    int top_k;           /* sample among the k likeliest only; 0: among all */
    uint64_t seed;       /* the draws: token j draws from counter j of (seed, SAMPLE stream) */
} brisk_generate_config;

/* Continues prompt[0, n_prompt) (1 <= n_prompt, ids below the model's vocabulary) by
 * cfg->tokens tokens, writing prompt and continuation to out (n_prompt + tokens ids). Each
 * step runs the model on the last T tokens so far (fewer at the start: the causal model's
 * later positions do not change the earlier ones) and draws the next token from position
 * len - 1's softmax(logits / temperature), restricted to the top_k likeliest. Deterministic:
 * the same arguments give the same tokens on any machine thread count. Single-threaded; needs
 * its own workspace of one sample (allocated here). Returns BRISK_OK, BRISK_EINVAL (naming
 * the argument) or BRISK_ENOMEM. */
int brisk_generate(const brisk_model *m, const float *params, const float *buffers,
                   const int32_t *prompt, int n_prompt, const brisk_generate_config *cfg,
                   int32_t *out);

/* Names for flags and messages, and their inverses (-1 when unknown). */
const char *brisk_act_name(brisk_act a);
const char *brisk_loss_name(brisk_loss l);
int brisk_act_parse(const char *s);
int brisk_loss_parse(const char *s);

#ifdef __cplusplus
}
#endif

#endif
