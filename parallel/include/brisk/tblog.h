/* brisk/tblog.h: a training run's TensorBoard logs, on top of brisk_log (brisk/logger.h):
 * what brisk-train and brisk_fit log, for any program's own loop too. All calls push from the
 * calling (coordinator) thread; the logging thread does the rest.
 *
 * Runs: <logdir> (hparams, the custom_scalars layout), <logdir>/train, <logdir>/validation.
 * Every series is at the global step (the epoch-level ones at the step that ends the epoch),
 * so that a resumed process's START at its first step purges everything the abandoned
 * timeline logged after its checkpoint, and no curve folds back.
 * Tags: epoch_loss and epoch_accuracy in train and validation (they overlay), and the epoch
 * number as the scalar `epoch` in train; in train only,
 * every --log-every steps: batch_loss, batch_accuracy, learning_rate, grad_global_norm,
 * samples_per_second; every --histogram-every epochs: weights/<tensor> and
 * gradients/<tensor> histograms, activations/<index>.<kind>/mean and /std of every layer,
 * and an image of the first layer's weights (weights/0.weight/tiles: a dense layer's units on
 * image data, a convolution's filters); in validation, the
 * confusion matrix image and, at the end, test_loss and test_accuracy. Language models on
 * text (bytes_per_token > 0) add epoch_bits_per_byte and test_bits_per_byte: the loss in bits
 * per byte of text (loss / ln 2 / bytes per token), the unit character-level models are
 * compared in; their losses and accuracies are per token (per position).
 */
#ifndef BRISK_TBLOG_H
#define BRISK_TBLOG_H

#include "brisk/data.h"
#include "brisk/logger.h"
#include "brisk/trainer.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_tb {
    brisk_logger *lg;
    brisk_log_producer *p;  /* push your own records with it (brisk_log_scalar, ...) */
    int root, train, val;   /* the runs: <logdir>, <logdir>/train, <logdir>/validation */
    int val_ema;            /* <logdir>/validation_ema once brisk_tb_ema_run opened it */
    int has_val_ema;
    int64_t first_step;     /* the START of this process's runs */
    int no_accuracy;        /* regression: leave out the accuracy scalars (brisk_fit sets it
                             * from the data) */
    double bytes_per_token; /* > 0 (token data of known bytes per token: 1 for text): log
                             * bits per byte beside every loss (brisk_fit sets it) */
    int failed;             /* a push failed for another reason than a full ring */
    char error[256];        /* the first such failure */
} brisk_tb;

/* Opens the logger and the three runs with START at first_step (the first step this process
 * will log: the checkpoint's step + 1 when resuming). ring_bytes is sized by the caller from
 * the model. A run from scratch (first_step <= 1) is refused with BRISK_EMISMATCH in a
 * directory that already holds event files (TensorBoard would merge them with its own).
 * Returns BRISK_OK or an error (detail set). */
int brisk_tb_open(brisk_tb *tb, const char *logdir, int64_t first_step, size_t ring_bytes);

/* The ring size for a trainer's model: every histogram of an interval is pushed at once
 * (weights and gradients), plus images and scalars; within an eighth of the machine's
 * available memory. */
size_t brisk_tb_ring_bytes(const brisk_trainer *t);

/* Scalars of one step (every --log-every steps). */
void brisk_tb_step(brisk_tb *tb, int64_t step, const brisk_step_stats *st, double samples_per_s);

/* epoch_loss and epoch_accuracy of one run for the epoch that ended at the global step. */
void brisk_tb_epoch(brisk_tb *tb, int run, int64_t step, int64_t epoch, const brisk_metrics *m);

/* A run's session, in the root run, as it starts from scratch: the hparams (the trainer's
 * settings: model, optimizer, schedule, lr, batch, micro-batch, weight decay, clip norm,
 * seed; the epochs; then `extra`, whose entries replace those of the same name), the metrics
 * the hparams table shows (validation and test loss, and accuracy but for regression), and a
 * custom_scalars layout that draws train and validation on one chart. brisk_fit writes it. */
void brisk_tb_session_start(brisk_tb *tb, const brisk_trainer *t, int epochs,
                            const brisk_hparam *extra, size_t n_extra);

/* Text (markdown) for TensorBoard's text plugin, under tag in a run (brisk_fit's samples/<k>
 * of a language model); a full ring drops it, as any record. */
void brisk_tb_text(brisk_tb *tb, int run, const char *tag, int64_t step, const char *text);

/* test_loss and test_accuracy (not for regression) in the validation run at the step that
 * ended training. */
void brisk_tb_test(brisk_tb *tb, int64_t step, const brisk_metrics *m);
/* The same in another run (brisk_tb_ema_run's). */
void brisk_tb_test_run(brisk_tb *tb, int run, int64_t step, const brisk_metrics *m);
/* The run of the moving average's validation metrics, <logdir>/validation_ema (opened at
 * the first call, with the same START as the others): its epoch_loss and epoch_accuracy
 * overlay the validation run's. Returns the run, or an error (detail set) that is also
 * recorded as the logs' failure (failed, error), as a failed push is. */
int brisk_tb_ema_run(brisk_tb *tb);

/* Histograms of every tensor's weights and of the gradient slab `grads`, activation
 * statistics, the first layer's weights as tiles (when ds holds images) and, when pred is not
 * NULL, the confusion matrix of pred[i] against ds's label of sample idx[i] (n samples). */
void brisk_tb_inspect(brisk_tb *tb, int64_t step, brisk_trainer *t, const float *grads,
                     const double *act_mean, const double *act_std, const brisk_dataset *ds,
                     const int32_t *pred, const int32_t *idx, int64_t n);

/* Flushes, then closes; returns the first write error (detail set) or BRISK_OK. Adds the
 * logging thread's CPU time to *cpu_seconds. */
int brisk_tb_close(brisk_tb *tb, double *cpu_seconds);

#ifdef __cplusplus
}
#endif

#endif
