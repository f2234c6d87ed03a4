/* brisk/run.h: a training run, owned by the library: its settings, its directories, resuming
 * it, its logs, its test metrics, evaluation and prediction; and a predictor that needs
 * nothing but a checkpoint.
 *
 * A run is what brisk-train does, as calls a program can make:
 *
 *     brisk_run *r;                                    // new, or resumed from a run directory
 *     brisk_run_open(&(brisk_run_options){.resume = "logs/my-run"}, &r);
 *     brisk_run_train(r, NULL, &res);                  // loads its data, trains, logs, tests
 *     brisk_run_close(r);
 *
 *     brisk_predictor *p;                              // a checkpoint alone
 *     brisk_predictor_open("ckpt.safetensors", 0, &p);
 *     brisk_predictor_predict_file(p, "new.npy", "predictions.npy", NULL);
 *     brisk_predictor_close(p);
 *
 * Settings. Everything that decides a run's results, and where it writes, is one
 * brisk_run_config: plain fields, each also reachable by its name ("lr", "model",
 * "micro-batch", ...: brisk-train's flags without "--"), set from text with range checks
 * (brisk_run_config_set), and stored as JSON in every checkpoint. A resumed run takes its
 * settings from the checkpoint; only those that cannot change its results (epochs, threads,
 * data, logdir, checkpoint-dir, keep, log-every, histogram-every, mpi-timeout) may be given
 * again, and another value for the others is refused naming the old and the new value.
 *
 * Directories. A run has an id (brisk/ckptdir.h), a log directory (default
 * logs/<model>-<id>; "none" for no logs) that it claims with a marker file (brisk-run) and
 * locks while it writes (one live writer: another process is refused naming it), and a
 * checkpoint directory (default <logdir>/checkpoints; "none" for none). Opening a run does
 * every check that can refuse it before a byte of data is loaded.
 *
 * Errors follow brisk/error.h. A setting that is not valid, or does not fit the data or the
 * other settings, is BRISK_EINVAL with a detail that starts with the setting's name and a
 * colon ("lr: ...", "model: ..."): brisk-train turns those into usage errors naming the flag.
 *
 * Several processes: every rank makes the same calls with the same options; rank 0 claims,
 * locks, logs and writes; the run id is rank 0's.
 */
#ifndef BRISK_RUN_H
#define BRISK_RUN_H

#include "brisk/checkpoint.h"
#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/fit.h"
#include "brisk/trainer.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BRISK_RUN_PATH_MAX 4096
#define BRISK_RUN_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* A run's settings. Strings are NUL-terminated within their arrays. */
typedef struct brisk_run_config {
    /* The model. */
    char model[BRISK_MODEL_SPEC_MAX]; /* a layer list, a preset ("cnn", or "gpt[:L:C:H[:drop<P>]]"
                                       * on token data) or the MLP shorthand of widths
                                       * ("784-256-128-10") */
    char act[16];      /* the shorthand's hidden activation: relu, gelu, tanh, sigmoid */
    char loss[8];      /* ce, bce, mse */
    double label_smoothing; /* ce: PyTorch's label_smoothing, [0, 1) */
    char precision[8]; /* the matrix products' operands: fp32, or bf16 (brisk_model_config) */
    char init[8];      /* auto, he, glorot, gpt2 */
    /* An llm.c model file (gpt2_*.bin) whose weights a gpt model starts from ("" for none). */
    char init_from[BRISK_RUN_PATH_MAX];
    /* Optimisation. */
    char optimizer[8]; /* adam, adamw, sgd */
    double lr, weight_decay, momentum, clip_norm;
    double beta2;      /* Adam's second-moment decay */
    char decay[16];    /* what the weight decay reaches: all, or matrices (weight matrices only:
                        * not biases, normalisation or embeddings) */
    char schedule[16]; /* constant, step, cosine */
    int step_size;     /* step: epochs between decays */
    double gamma, min_lr;
    long long warmup;  /* cosine: warmup steps */
    /* Training. */
    int epochs, batch, micro_batch;
    char augment[64];  /* image augmentation, brisk_augment_parse's text ("" or "none": off) */
    double ema;        /* the decay of a moving average of the weights (brisk/trainer.h's
                        * ema_decay); 0: none */
    double mixup;      /* mixup's alpha (brisk/trainer.h's mixup); 0: none */
    double cutmix;     /* cutmix's alpha (brisk/trainer.h's cutmix); 0: none */
    int accumulate;    /* K: an optimizer step takes K batches (K x batch samples), computed
                        * one batch at a time: bitwise the step of one batch of K x batch with
                        * the same micro-batch; 0 or 1: none */
    int threads;       /* 0: the CPUs this process may use (divided among local ranks) */
    unsigned long long seed;
    /* Data: an MNIST-format directory (its train- files; the t10k- files are the test set),
     * a .npy file of features (labels: the .npy of their labels), a CSV file (label: its
     * label column), or "synthetic" (a seeded task shaped by the model). test: a test set of
     * the same kind as data (test_labels for a .npy); a .npy or CSV run without one has no
     * test set. With seq_len > 0, data (and test) is a token stream instead
     * (brisk_dataset_load_tokens: text, a .npy of ids or llm.c's token file) cut into windows
     * of seq_len + 1, and the validation part is its end (val_split of the windows, in one
     * piece: no window of it overlaps the training part's). */
    char data[BRISK_RUN_PATH_MAX];
    char labels[BRISK_RUN_PATH_MAX];      /* .npy: the labels file */
    char label[256];                      /* CSV: the label column's name or index */
    char test[BRISK_RUN_PATH_MAX];
    char test_labels[BRISK_RUN_PATH_MAX];
    double val_split;  /* fraction of the training data held out for validation */
    int seq_len;       /* token data: the window (positions); 0: not token data */
    int in_order;      /* visit the training samples in their order every epoch (llm.c's
                        * loader), not shuffled */
    int samples, sample_tokens; /* token data: texts generated every epoch for TensorBoard
                                 * (brisk_fit's n_samples, at temperature 0.8) and their
                                 * length in tokens */
    long long synthetic_n, synthetic_test_n;
    double noise;
    /* Logs and checkpoints. */
    char logdir[BRISK_RUN_PATH_MAX];         /* "" (the default) or "none" */
    int log_every, histogram_every;
    int report;        /* refresh <logdir>/report.html after every epoch (brisk/report.h) */
    char checkpoint_dir[BRISK_RUN_PATH_MAX]; /* "" (<logdir>/checkpoints) or "none" */
    int keep;
    char run[64];      /* the run's id; "" for a new run (brisk_run_open makes one) */
    /* Policies (brisk/fit.h). */
    char monitor[16];  /* val_loss, val_accuracy, train_loss, train_accuracy */
    double min_delta;
    int early_stop, keep_best, plateau;
    double plateau_factor, plateau_min_lr;
    /* Several processes. */
    double mpi_timeout;
} brisk_run_config;

/* The defaults brisk-train documents (a 784-256-128-10 MLP on Fashion-MNIST, Adam 1e-3 with
 * cosine decay, 10 epochs of batch 128, seed 42, ...). */
brisk_run_config brisk_run_config_defaults(void);

/* One setting, by name: the list is what brisk-train's flags and the checkpoints' JSON are
 * made of. */
typedef enum brisk_run_setting_type {
    BRISK_SETTING_TEXT,
    BRISK_SETTING_REAL,
    BRISK_SETTING_INT,
    BRISK_SETTING_SWITCH /* 0 or 1; on the command line a flag without a value */
} brisk_run_setting_type;

typedef struct brisk_run_setting {
    const char *name;          /* "lr", "micro-batch", ... */
    brisk_run_setting_type type;
    double lo, hi;             /* numbers: the range accepted */
    int may_change_on_resume;
} brisk_run_setting;

/* The settings, n of them (a static table). */
const brisk_run_setting *brisk_run_settings(int *n);

/* The setting of this name, or NULL. */
const brisk_run_setting *brisk_run_setting_find(const char *name);

/* Sets a setting from text, checked as brisk-train checks its flags: numbers and their
 * range, names against their choices (an optimizer, a schedule, ...), a model line against
 * the grammar. Returns BRISK_OK or BRISK_EINVAL ("<name>: ..."). */
int brisk_run_config_set(brisk_run_config *c, const char *name, const char *value);

/* A setting's value as text (numbers with every digit), into buf. Returns BRISK_OK or
 * BRISK_EINVAL for an unknown name. */
int brisk_run_config_get(const brisk_run_config *c, const char *name, char *buf, size_t size);

/* The settings as a JSON object (the caller's to free()), as stored in checkpoints
 * (brisk.config), or NULL when out of memory. */
char *brisk_run_config_to_json(const brisk_run_config *c);

/* Reads settings stored in a checkpoint (path names it in messages): every value is checked
 * as its setting is; one no setting could hold means the file is damaged or was edited
 * (BRISK_EFORMAT naming the setting and the value). Settings the JSON lacks (a checkpoint of
 * an earlier version) keep their defaults. */
int brisk_run_config_from_json(brisk_run_config *c, const char *json, const char *path);

/* The checkpoint file a user's name for one stands for: a checkpoint file itself, a
 * checkpoint directory (its newest checkpoint; BRISK_EMISMATCH, listing each run's newest,
 * when several runs have checkpoints there) or a run directory (the newest checkpoint of its
 * run, in its checkpoints/). Writes the file's path into path (size bytes). Resumes,
 * brisk_run_open_checkpoint and brisk_predictor_open take any of the three through this. */
int brisk_run_checkpoint_path(const char *target, char *path, size_t size);

/* Opening a run. */
typedef struct brisk_run_options {
    /* NULL: a new run. Otherwise what to resume: a checkpoint file, a checkpoint directory
     * (its newest checkpoint; refused when several runs have checkpoints there), or a run
     * directory (its log directory: the newest checkpoint of its run). */
    const char *resume;
    /* Settings given by the user, "name=value" each: on the defaults for a new run (after
     * `config`, when given), on the checkpoint's settings for a resume, where only those that
     * may change are accepted with another value. */
    const char *const *settings;
    int n_settings;
    /* A new run's settings before `settings` (NULL: the defaults). */
    const brisk_run_config *config;
    brisk_comm *comm;  /* the job's processes (not owned); NULL: this process alone */
    /* Warnings (a resume past the cosine schedule's end, torn records cut, ...), one line
     * each without a newline. NULL: "brisk: <line>" on stderr. */
    void (*message)(void *user, const char *line);
    void *user;
} brisk_run_options;

typedef struct brisk_run brisk_run;

/* Resolves the settings (a preset's recipe applies to a new run: brisk_model_preset_recipe,
 * for the settings not given), the run id, the log and checkpoint directories; then rank 0
 * takes the run's locks, claims its log directory (refused when it holds another run's
 * logs), cuts torn records left by a killed process and removes dead processes' temporary
 * checkpoint files. Loads no data. Returns BRISK_OK with *out (brisk_run_close), or
 * BRISK_EINVAL (a setting: "<name>: ..."), BRISK_EBUSY (another process writes the run),
 * BRISK_EMISMATCH (the log directory is another run's), BRISK_ENOENT, BRISK_EFORMAT, BRISK_EIO
 * (the checkpoint to resume, named). */
int brisk_run_open(const brisk_run_options *o, brisk_run **out);

/* The run's settings, resolved (run id and directories included). */
const brisk_run_config *brisk_run_get_config(const brisk_run *r);

/* The checkpoint being resumed (NULL for a new run). */
const brisk_checkpoint *brisk_run_resumed(const brisk_run *r);
const char *brisk_run_resumed_path(const brisk_run *r);

/* Loads the data (the settings' source, or the program's data sets: train and test may be
 * given, test may be NULL), splits off the validation samples, sets the normalisation,
 * creates the trainer and, when resuming, restores the checkpoint's state (refused when its
 * position does not fit these settings and data). brisk_run_train calls it when the program
 * has not. */
int brisk_run_load(brisk_run *r, const brisk_dataset *train, const brisk_dataset *test);

/* The model's summary (brisk_model_summary) for the run's data, into buf, and the memory a
 * trainer for it would take (brisk_trainer_memory_bytes), without creating one: loads the
 * data when brisk_run_load has not. */
int brisk_run_describe_model(brisk_run *r, char *buf, size_t size, size_t *memory_bytes);

/* After brisk_run_load: the trainer (owned by the run), and the samples. */
brisk_trainer *brisk_run_trainer(brisk_run *r);
typedef struct brisk_run_data {
    const brisk_dataset *train, *test;
    int64_t n_train, n_val, n_test;
    const char *source;     /* what the data are, for messages */
} brisk_run_data;
void brisk_run_get_data(const brisk_run *r, brisk_run_data *out);

/* How training went. */
typedef struct brisk_run_result {
    brisk_fit_result fit;        /* how brisk_fit ended (checkpoints, epochs, warnings) */
    brisk_metrics test;          /* the test set's metrics */
    brisk_metrics test_ema;      /* the moving average's on it (count 0 without one) */
    int tested;                  /* test holds them (training finished) */
    int already_finished;        /* the resumed checkpoint had finished every epoch */
    uint64_t checksum;           /* of the final weights (brisk_model_checksum) */
    uint64_t ema_checksum;       /* of their moving average's (0 without one) */
    double logging_cpu_seconds;  /* the logging thread's CPU time */
    char logs_error[512];        /* the logs could not all be written ("" when fine) */
} brisk_run_result;

/* Trains the run to its epochs (callbacks: brisk/fit.h's, any of them may be NULL; c's other
 * fields are ignored): opens the TensorBoard logs (START at the next step, so a resume purges
 * what a killed process logged past its checkpoint), writes the settings as text, the
 * hparams session and the chart layout (train and validation on one chart), runs brisk_fit
 * with the validation and test sets, ends the hparams session and closes the logs. A run
 * resumed from a checkpoint that had finished trains nothing and evaluates the test set
 * (already in its logs). Returns brisk_fit's errors; BRISK_EIO when the logs could not all be
 * written (after training: res->logs_error says which file). */
int brisk_run_train(brisk_run *r, const brisk_fit_config *callbacks, brisk_run_result *res);

/* A learning-rate range test on the run's training samples (brisk_lr_find), instead of
 * training: the run must be new, its schedule constant at cfg->end_lr (brisk-train --lr-find
 * sets schedule=constant and lr=END), the batches its settings'; the curve goes to its
 * TensorBoard logs (cfg->tb is ignored). The weights are not kept: open a new run to train.
 * Returns brisk_lr_find's results and errors. */
int brisk_run_lr_find(brisk_run *r, const brisk_lr_find_config *cfg, brisk_lr_find_result *res);

/* Opens a run's checkpoint (a file, or a run or checkpoint directory: its newest, as
 * brisk_run_checkpoint_path says) to evaluate it or predict with it, on the data of its
 * settings or on other data ("data=DIR", with "threads=..."; settings are given as to a
 * resume: only those that may change). No locks, logs or checkpoints; the checkpoint's position is not
 * checked against the data. */
int brisk_run_open_checkpoint(const char *checkpoint, const char *const *settings,
                              int n_settings, brisk_comm *comm, brisk_run **out);

/* The model of the run on its test set: metrics, and, with path, the predictions written as
 * brisk_predictor_write does. */
int brisk_run_evaluate(brisk_run *r, const char *path, brisk_metrics *out);

/* Releases the locks, closes the logs, frees everything (NULL is fine). */
void brisk_run_close(brisk_run *r);

/* ---- Predicting from a checkpoint ------------------------------------------------------ */

typedef struct brisk_predictor brisk_predictor;

/* Opens a checkpoint (a file, or a run or checkpoint directory: its newest) for prediction:
 * its model, weights and normalisation, on `threads` threads (0: every CPU), without
 * optimizer state. Any Brisk checkpoint: brisk-train's, a
 * library program's. */
int brisk_predictor_open(const char *checkpoint, int threads, brisk_predictor **out);

/* The model's outputs for samples idx[0, n) of ds (idx NULL: the first n), into out (n, C)
 * row by row: class probabilities (ce), per-output probabilities (bce) or values (mse),
 * normalised as in training. The samples must fit the model's input (images: the whole
 * shape). metrics (may be NULL) against ds's labels or targets, when it has them. */
int brisk_predictor_predict(brisk_predictor *p, const brisk_dataset *ds, const int32_t *idx,
                            int64_t n, float *out, brisk_metrics *metrics);

/* Predicts for every sample of a features file (.npy or CSV, brisk_dataset_load_features)
 * and writes the predictions to out_path (brisk_predictor_write). *n (may be NULL) gets the
 * number of samples. */
int brisk_predictor_predict_file(brisk_predictor *p, const char *in_path, const char *out_path,
                                 int64_t *n);

/* Writes n rows of C outputs: NumPy .npy (float32) when path ends in .npy, else CSV with a
 * header row (p0, p1, ... for probabilities, output0, ... for values); atomically, into a
 * regular file only (brisk/fsutil.h). */
int brisk_predictor_write(const char *path, const float *v, int64_t n, int C, brisk_loss loss);

/* A language model's checkpoint (a gpt, or any model on token data) continues a prompt:
 * brisk_generate with the checkpoint's weights (prompt and continuation into out). */
int brisk_predictor_generate(brisk_predictor *p, const int32_t *prompt, int n_prompt,
                             const brisk_generate_config *cfg, int32_t *out);

const brisk_model *brisk_predictor_model(const brisk_predictor *p);
int brisk_predictor_outputs(const brisk_predictor *p);
/* The normalisation recorded in the checkpoint (0: none: samples go in as they are). */
int brisk_predictor_norm_count(const brisk_predictor *p);

void brisk_predictor_close(brisk_predictor *p); /* NULL is fine */

#ifdef __cplusplus
}
#endif

#endif
