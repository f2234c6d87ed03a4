/* brisk/fit.h: the training loop as a library call.
 *
 * brisk_fit trains a trainer (brisk/trainer.h) for a number of epochs: each epoch visits the
 * training samples in an order that depends only on (seed, epoch) (brisk_shuffle), in
 * batches of the trainer's batch size (the last one smaller), then evaluates the validation
 * samples. Along the way it logs to TensorBoard (brisk/tblog.h, when given: step scalars
 * every log_every steps, epoch metrics of both runs, and every histogram_every epochs the
 * histograms, activation statistics, first-layer image and confusion matrix), writes a
 * checkpoint after every epoch (and keeps the newest `keep` of the run), stops cleanly when a
 * flag is raised (Ctrl-C: the step in progress finishes and a checkpoint of that exact
 * position is written), and calls the program back after every step and every epoch.
 *
 * Resuming: load the checkpoint's state into the trainer (brisk_trainer_load_state) and pass
 * its position as `start`; the rest of the run is then bitwise what an uninterrupted run
 * would have done.
 *
 * Policies, each off by default: early stopping (stop when a monitored metric has not
 * improved by min_delta for `patience` epochs), a best checkpoint (keep_best: the epoch with
 * the best monitored metric, kept as ckpt-<run>-best.safetensors beside the newest ones), and
 * reducing the learning rate on a plateau (multiply it by `factor` after `patience` epochs
 * without improvement, down to min_lr). Their state (best value, epochs waited, the rate factor)
 * travels in the checkpoint's position, so a resumed run continues them exactly.
 *
 * A moving average of the weights (the trainer's ema_decay): every epoch it is evaluated on
 * the validation samples beside the trained weights and logged in its own run,
 * <logdir>/validation_ema; the best checkpoint and early stopping then watch its validation
 * metrics (the plateau policy the trained weights', which the optimizer moves); the test set
 * is evaluated with both; every checkpoint holds it (brisk_checkpoint_save_ema).
 *
 * Logs: a run from scratch opens its hparams session (the trainer's settings, the metrics, a
 * chart with train and validation together: brisk_tb_session_start) and ends it with the
 * last checkpoint (success) or an error (failure); a stopped run's session goes on after its
 * resume.
 *
 * Several processes: every rank calls brisk_fit with the same arguments; rank 0 logs and
 * writes the checkpoints, and all ranks stop after the same step.
 *
 * Logs and checkpoints agree: everything an epoch logs (and, after the last epoch, the test
 * metrics) is written to the event files and made durable before that epoch's checkpoint is
 * renamed into place. A process killed at any instant therefore resumes from a checkpoint
 * whose records are all in the files, and the resumed process's logs purge (TensorBoard's
 * START rule) whatever the killed one logged after it. When the logs cannot be written (a
 * full disk), no checkpoint is written either: brisk_fit returns BRISK_EIO naming the event
 * file, and a resume from the last checkpoint repeats the work the logs lack.
 */
#ifndef BRISK_FIT_H
#define BRISK_FIT_H

#include "brisk/checkpoint.h"
#include "brisk/data.h"
#include "brisk/tblog.h"
#include "brisk/trainer.h"

#include <signal.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The metric a policy watches (validation metrics need validation samples). */
typedef enum brisk_fit_metric {
    BRISK_FIT_VAL_LOSS,      /* lower is better */
    BRISK_FIT_VAL_ACCURACY,  /* higher is better */
    BRISK_FIT_TRAIN_LOSS,
    BRISK_FIT_TRAIN_ACCURACY
} brisk_fit_metric;

typedef struct brisk_fit_policy {
    int patience;        /* epochs without improvement; 0 turns the policy off */
    double min_delta;    /* the smallest change that counts as an improvement (>= 0) */
    brisk_fit_metric metric;
} brisk_fit_policy;

/* What the callbacks see. */
typedef struct brisk_fit_progress {
    int64_t epoch;                /* the epoch in progress (on_step) or just ended (on_epoch) */
    int64_t batch, batches;       /* batches done in it; batches per epoch */
    int64_t step;                 /* optimizer steps done */
    const brisk_step_stats *last; /* on_step: the step just taken; on_epoch: NULL */
    brisk_metrics train;          /* the epoch's training metrics so far (before each update) */
    brisk_metrics val;            /* on_epoch: validation metrics (count 0 without) */
    brisk_metrics val_ema;        /* on_epoch: those of the weights' moving average (count 0
                                   * without one, or without validation samples) */
    double epoch_seconds;         /* training time of this epoch so far */
    double samples_per_second;    /* over this epoch's batches so far */
    float lr_factor;              /* the plateau policy's factor on the schedule's rate */
    const char *checkpoint;       /* on_epoch: the file written after it ("" for none) */
    int improved;                 /* on_epoch: the monitored metric improved (policies on) */
    /* This process's threads that took part in the epoch's steps so far, on average: fewer
     * than brisk_trainer_threads while another program competed for the CPUs and fewer were
     * measured faster (brisk_trainer_set_threads_in_use). */
    double threads_in_use;
    /* on_epoch: the share of the machine's CPU time, during the epoch, that the hypervisor
     * gave to other guests while this one had work ("steal" in /proc/stat); 0 on bare
     * metal or where it cannot be read. Sustained steal slows every step, and brisk_run
     * warns about it. */
    double steal;
} brisk_fit_progress;

typedef struct brisk_fit_config {
    int epochs;           /* train until this many epochs are done (>= 1) */
    uint64_t seed;        /* the shuffle of every epoch */
    int in_order;         /* nonzero: every epoch visits train_idx in the order given (as
                           * llm.c's loader reads its windows), not shuffled */
    /* Where training stands: zero for a fresh start, a checkpoint's position to resume. */
    brisk_ckpt_position start;
    /* TensorBoard logs, opened by the caller (brisk_tb_open), or NULL for none; only rank 0's
     * are used (the other ranks pass NULL or anything). */
    brisk_tb *tb;
    int log_every;        /* steps between step scalars (>= 1) */
    int histogram_every;  /* epochs between histograms and images (0: never) */
    /* Checkpoints: a directory (NULL: none), the run's id (brisk/ckptdir.h), how many of the
     * newest to keep (>= 1), and the program's settings to store (JSON text, may be NULL). */
    const char *checkpoint_dir;
    const char *run_id;
    int keep;
    const char *config_json;
    /* Raised (by a signal handler, say): stop after the step in progress, with a checkpoint. */
    const volatile sig_atomic_t *stop;
    /* Callbacks (either may be NULL): called on every rank; a nonzero return stops training
     * (after a step: with a checkpoint of that position). */
    void *user;
    int (*on_step)(void *user, const brisk_fit_progress *p);
    int (*on_epoch)(void *user, const brisk_fit_progress *p);
    /* The test set, evaluated once training is over (after the last epoch, or an early
     * stop), before the last checkpoint: test_loss and test_accuracy are logged in the
     * validation run at the final step, and res->test holds them. NULL: none. test_idx
     * lists n_test samples of it. */
    const brisk_dataset *test;
    const int32_t *test_idx;
    int64_t n_test;
    /* Called on every rank just before the test set is evaluated (may be NULL). */
    void (*on_test)(void *user, const brisk_fit_progress *p);
    /* Hyperparameters for the hparams session a run from scratch starts in its logs, besides
     * the trainer's settings (brisk_tb_session_start; an entry replaces one of the same
     * name). May be NULL. */
    const brisk_hparam *hparams;
    size_t n_hparams;
    /* Language models (token data): every epoch, n_samples continuations of the prompt
     * (sample_prompt, n_sample_prompt ids; NULL: the first 16 tokens of the first validation
     * window, or of the first training one) by sample_gen (its seed is mixed with the epoch
     * and the sample's number) are logged to TensorBoard's text plugin in the validation run
     * as samples/<k>, text for byte-level data (ids otherwise). 0: none. */
    int n_samples;
    brisk_generate_config sample_gen;
    const int32_t *sample_prompt;
    int n_sample_prompt;
    /* Policies. */
    brisk_fit_policy early_stop;
    /* The best checkpoint: with keep_best, the epoch whose best_metric is best (by more than
     * best_min_delta) is also kept, as ckpt-<run>-best.safetensors. */
    int keep_best;
    brisk_fit_metric best_metric;
    double best_min_delta;
    brisk_fit_policy plateau;
    float plateau_factor;                  /* in (0, 1) */
    float plateau_min_lr;                  /* the rate never goes below this */
    /* Nonzero (with tb): after every epoch's checkpoint, the logging thread refreshes
     * <logdir>/report.html, the HTML report of the logs (brisk_log_report); training does not
     * wait for it. */
    int report;
} brisk_fit_config;

typedef enum brisk_fit_end {
    BRISK_FIT_DONE,        /* all the epochs */
    BRISK_FIT_STOPPED,     /* the stop flag or a callback */
    BRISK_FIT_EARLY_STOP   /* the early-stopping policy */
} brisk_fit_end;

typedef struct brisk_fit_result {
    brisk_fit_end end;
    int64_t epochs_done;          /* complete epochs */
    int64_t batch;                /* batches done in the next one (after a stop) */
    brisk_metrics train;          /* training metrics of those batches */
    brisk_metrics last_val;       /* the last epoch's validation metrics */
    brisk_metrics last_val_ema;   /* the moving average's (count 0 without one) */
    int tested;                   /* the test set was evaluated (training ended in this call) */
    brisk_metrics test;           /* its metrics */
    brisk_metrics test_ema;       /* the moving average's on it (count 0 without one) */
    char checkpoint[4096];        /* the newest checkpoint written ("" for none) */
    char best_checkpoint[4096];   /* the best one ("" for none) */
    char warning[512];            /* something to tell the user that did not stop training */
} brisk_fit_result;

/* Defaults: 10 epochs, log every 10 steps, histograms every epoch, keep 3, policies off,
 * plateau factor 0.1. */
brisk_fit_config brisk_fit_defaults(void);

/* Trains t on ds's samples train_idx[0, n_train), validating on val_idx[0, n_val) (n_val 0:
 * none) of the same data set, normalised as the trainer says (brisk_trainer_set_norm, which
 * every checkpoint records). Returns BRISK_OK with *res saying
 * how it ended, or an error: BRISK_EINVAL (a bad configuration, named), BRISK_ENONFINITE
 * (training diverged: the detail names the step and the tensor; res->checkpoint is the last
 * good checkpoint), BRISK_EIO (a checkpoint or the logs could not be written), BRISK_ENOMEM. */
int brisk_fit(brisk_trainer *t, const brisk_dataset *ds, const int32_t *train_idx,
              int64_t n_train, const int32_t *val_idx, int64_t n_val,
              const brisk_fit_config *c, brisk_fit_result *res);

const char *brisk_fit_metric_name(brisk_fit_metric m);
int brisk_fit_metric_parse(const char *s); /* "val_loss", ...; -1 when unknown */

/* A learning-rate range test (Leslie Smith's; fastai's lr_find): steps at rates growing
 * exponentially from start_lr to end_lr, one batch each from a seeded shuffle of the
 * samples, until the smoothed loss diverges; the curve and a suggested rate. */
typedef struct brisk_lr_find_config {
    double start_lr; /* the first rate (> 0); 0: 1e-7 */
    double end_lr;   /* the last (> start_lr); 0: 10 */
    int steps;       /* at most this many steps, 5..100000; 0: 200 */
    double diverge;  /* stop once the smoothed loss passes this times its lowest (> 1); 0: 4 */
    uint64_t seed;   /* the batches' shuffle, drawn again at every pass over the samples */
    /* NULL, or logs: lr_find/loss, lr_find/smoothed_loss and lr_find/learning_rate at step
     * k + 1 of the k-th rate in tb->train, and the curve and the suggestion as text. */
    brisk_tb *tb;
    const volatile sig_atomic_t *stop; /* raised: stop after the step in progress */
} brisk_lr_find_config;

typedef struct brisk_lr_find_result {
    int n;                   /* the steps taken */
    double *lr, *loss, *smoothed; /* per step: the rate, the batch's loss, the loss smoothed
                                   * (TensorBoard's debiased moving average, weight 0.98) */
    double suggested;        /* the rate where the smoothed loss falls fastest against log(lr)
                              * (a slope over n/40 steps either side, after the first tenth),
                              * before its lowest point; 0 when the curve is too short (< 10)
                              * or never falls */
    double lowest_lr;        /* the rate of the lowest smoothed loss */
    int diverged;            /* stopped early: the loss diverged or was not finite */
} brisk_lr_find_result;

/* Runs the test on t (its weights and optimizer state are changed: train with a fresh
 * trainer afterwards). t's schedule must be constant at end_lr: each step sets the rate
 * through brisk_trainer_set_lr_factor. The batch is t's. Returns BRISK_OK with *res
 * (brisk_lr_find_result_free) or BRISK_EINVAL (a setting, named), BRISK_ENOMEM, or what a
 * step returns (a non-finite loss is not an error: it ends the test). */
int brisk_lr_find(brisk_trainer *t, const brisk_dataset *ds, const int32_t *idx, int64_t n,
                  const brisk_lr_find_config *c, brisk_lr_find_result *res);
void brisk_lr_find_result_free(brisk_lr_find_result *res);

#ifdef __cplusplus
}
#endif

#endif
