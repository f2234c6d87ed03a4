/* brisk/checkpoint.h: checkpoints as safetensors files.
 *
 * Layout (the published safetensors format): an 8-byte little-endian header size N, N bytes
 * of JSON header (padded with spaces to a multiple of 8), then the raw little-endian tensors.
 * The header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets":
 * [begin, end]} (offsets into the data section) and carries string metadata under
 * "__metadata__". Python's safetensors and PyTorch load the weights directly.
 *
 * Brisk writes the parameters under the names torch.nn.Sequential gives them ("0.weight"
 * (out, in, K, K) for a convolution first, "7.bias", ...), the optimizer moments as
 * "optim.m.<name>" and "optim.v.<name>", the running statistics ("1.running_mean", ...) and
 * each batch normalisation's num_batches_tracked (int64), so that PyTorch's load_state_dict
 * takes the file; and in the metadata: the model ("brisk.model": the layer list,
 * "brisk.input": "1x28x28" or "784", "brisk.loss"), the training position (epoch, batch,
 * steps, seed, the partial train metrics of the epoch in progress, "brisk.policies": the
 * training policies' state, "brisk.normalize": the input normalisation), the program's
 * configuration as JSON ("brisk.config"), a CRC-32C of the data section
 * ("brisk.data_crc32c") and one of the header itself ("brisk.header_crc32c": over the 8-byte
 * size and the header text with this value's 8 hex digits read as "00000000"), so that a
 * corrupted or edited file is refused instead of loaded. A model with a registered layer
 * kind loads where that kind is registered.
 */
#ifndef BRISK_CHECKPOINT_H
#define BRISK_CHECKPOINT_H

#include "brisk/model.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest JSON header accepted when loading. */
#define BRISK_CKPT_MAX_HEADER ((uint64_t)16 << 20)
/* Largest epoch count a checkpoint may record (brisk-train's --epochs allows as many). */
#define BRISK_CKPT_MAX_EPOCHS 1000000

/* The state of brisk_fit's policies (brisk/fit.h), so that a resumed run continues them:
 * for early stopping [0], the best checkpoint [1] and the plateau policy [2], the best value
 * of the watched metric and the epoch it was reached (0: none yet), and the epochs since;
 * and the factor the plateau policy has put on the learning rate (0 means 1: untouched). */
typedef struct brisk_ckpt_policies {
    double best[3];
    int64_t best_epoch[3];
    int64_t wait[3];
    float lr_factor;
} brisk_ckpt_policies;

/* Where training stands. */
typedef struct brisk_ckpt_position {
    int64_t epoch;       /* epochs completed; the one in progress is epoch + 1 */
    int64_t batch;       /* batches done in the epoch in progress (0 at an epoch boundary) */
    int64_t steps_done;  /* optimizer steps so far (schedule position, Adam's t) */
    uint64_t seed;       /* init, validation split and the shuffle of every epoch */
    brisk_metrics train; /* train metrics of the epoch in progress, so far */
    brisk_ckpt_policies policies;
    /* The input normalisation training uses, (x[j] - norm_mean[j]) / norm_std[j] for
     * norm_count values (0: none recorded; 1: one mean and std for every feature; D: one per
     * input feature), so that evaluation and prediction on raw data reproduce the training
     * inputs (brisk_trainer_set_norm takes the same). In a loaded checkpoint they point into
     * its own storage. */
    int norm_count;
    const float *norm_mean, *norm_std;
} brisk_ckpt_position;

typedef struct brisk_checkpoint {
    brisk_model_config model;
    brisk_ckpt_position pos;
    char *config;                  /* the program's configuration, JSON text (owned) */
    brisk_model *layout;           /* owned */
    float *params, *opt_m, *opt_v; /* slabs laid out by `layout` (owned) */
    float *buffers;                /* the buffer slab (owned) */
    /* The exponential moving average of the weights and buffers (brisk/trainer.h's
     * ema_decay), laid out as params and buffers, and its decay; NULL and 0 when the file
     * holds none (owned). */
    float *ema_params, *ema_buffers;
    double ema_decay;
    float *norm;                   /* the normalisation's means then stds, or NULL (owned) */
} brisk_checkpoint;

/* Writes a checkpoint atomically: a temporary file next to path, fsync, rename over path,
 * fsync of the directory. A crash leaves the old file or the new one, never a mix.
 * config_json may be NULL. Returns BRISK_OK or BRISK_EIO / BRISK_ENOMEM (detail: path and
 * errno). */
int brisk_checkpoint_save(const char *path, const brisk_model *m, const float *params,
                          const float *opt_m, const float *opt_v, const float *buffers,
                          const brisk_ckpt_position *pos, const char *config_json);

/* The same with a moving average of the weights (ema_params, ema_buffers: slabs laid out as
 * params and buffers), stored after everything else as "ema.<name>" (timm's ModelEmaV2
 * keeps its copy under a prefix the same way), and its decay (in (0, 1)) as
 * "brisk.ema_decay". ema_params NULL: brisk_checkpoint_save. */
int brisk_checkpoint_save_ema(const char *path, const brisk_model *m, const float *params,
                              const float *opt_m, const float *opt_v, const float *buffers,
                              const float *ema_params, const float *ema_buffers,
                              double ema_decay, const brisk_ckpt_position *pos,
                              const char *config_json);

/* Reads and checks a checkpoint: sizes against the file before allocating, the header CRC,
 * the JSON header, every position value's range, every tensor's dtype, shape and offsets
 * against the model named in the metadata, and the data CRC. Returns BRISK_OK with *out (brisk_checkpoint_free), or BRISK_ENOENT, BRISK_EIO,
 * BRISK_ETRUNCATED, BRISK_EFORMAT, BRISK_EMISMATCH or BRISK_ENOMEM with a detail naming the
 * file and what is wrong. Never returns partly loaded data. */
int brisk_checkpoint_load(const char *path, brisk_checkpoint **out);

void brisk_checkpoint_free(brisk_checkpoint *c); /* accepts NULL */

#ifdef __cplusplus
}
#endif

#endif
