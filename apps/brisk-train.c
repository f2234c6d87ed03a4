/* brisk-train: train a model (an MLP, a CNN, any layer list) on Fashion-MNIST (or any IDX
 * data set, or a synthetic task) on every core, log train and validation curves to TensorBoard, save
 * checkpoints, survive Ctrl-C and resume exactly.
 */
#define _GNU_SOURCE
#include "brisk/clock.h"
#include "brisk/checkpoint.h"
#include "brisk/ckptdir.h"
#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fit.h"
#include "brisk/gemm.h"
#include "brisk/fsutil.h"
#include "brisk/model.h"
#include "brisk/optim.h"
#include "brisk/pool.h"
#include "brisk/tblog.h"
#include "brisk/trainer.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define EXIT_USAGE 2
#define EXIT_DIVERGED 3
#define EXIT_INTERRUPTED 130

typedef struct options {
    const char *model, *act, *loss, *optimizer, *schedule, *init, *data;
    const char *logdir, *checkpoint_dir, *resume, *eval, *predict, *out, *input;
    const char *run;          /* the run's id (brisk/ckptdir.h), kept across resumes */
    const char *monitor;      /* the metric the policies watch */
    double lr, weight_decay, clip_norm, val_split, gamma, min_lr, momentum, noise, mpi_timeout;
    double min_delta, plateau_factor, plateau_min_lr;
    int early_stop, keep_best, plateau;
    int weight_decay_set;
    int epochs, batch, micro_batch, threads, step_size, keep, log_every, histogram_every;
    int json, quiet, resume_set, summary;
    long long warmup, synthetic_n, synthetic_test_n;
    unsigned long long seed;
} options;

static const options defaults = {
    .model = "784-256-128-10", .act = "relu", .loss = "ce", .optimizer = "adam",
    .monitor = "val_loss", .plateau_factor = 0.1,
    .schedule = "cosine", .init = "auto", .data = DEFAULT_DATA,
    .lr = 1e-3, .weight_decay = 0.0, .clip_norm = 0.0, .val_split = 0.1, .gamma = 0.5,
    .min_lr = 0.0, .momentum = 0.9, .noise = 80.0,
    .epochs = 10, .batch = 128, .micro_batch = BRISK_DEFAULT_MICRO_BATCH, .threads = 0,
    .step_size = 5, .keep = 3, .log_every = 10, .histogram_every = 1,
    .warmup = 0, .synthetic_n = 20000, .synthetic_test_n = 5000, .seed = 42,
};

static void usage(FILE *f)
{
    const options *d = &defaults;
    fprintf(f,
"Usage: brisk-train [OPTION]...\n"
"       mpirun -np P brisk-train [OPTION]...   (P processes; rank 0 prints, logs, saves)\n"
"Train a neural network with Brisk on every core, print train, validation and test\n"
"metrics, log them to TensorBoard and save checkpoints.\n"
"\n"
"Model:\n"
"  --model MODEL         a layer list, the preset 'cnn', or the MLP shorthand of widths,\n"
"                        input first, joined by '-' (default %s)\n"
"                        A layer list is items separated by commas, options by ':':\n"
"                          dense:N[:nobias]         fully connected, N outputs\n"
"                          conv:OUT:K[:s<S>][:pad<P>][:nobias]\n"
"                                                   K x K convolution, stride S (1),\n"
"                                                   zero padding P (0)\n"
"                          maxpool:K[:s<S>]  avgpool:K[:s<S>]   (stride K by default)\n"
"                          gap                      global average pooling\n"
"                          flatten                  image to vector\n"
"                          relu  leaky_relu[:SLOPE]  gelu  tanh  sigmoid\n"
"                          dropout:P                drop with probability P in training\n"
"                          batchnorm  layernorm\n"
"                          res:K                    skip connection: adds the input of the\n"
"                                                   K items before it to their output\n"
"                        e.g. conv:32:3:pad1,relu,maxpool:2,flatten,dense:10. 'cnn' is\n"
"                          conv:32:3:pad1,relu,maxpool:2,conv:64:3:pad1,relu,maxpool:2,\n"
"                          flatten,dense:128,relu,dropout:0.3,dense:10\n"
"                        The input shape comes from the data (1x28x28 for MNIST images).\n"
"  --summary             print the model's layers, output shapes and parameter counts,\n"
"                        and exit (the table is also printed before training)\n"
"  --act NAME            hidden activation of the shorthand: relu, gelu, tanh, sigmoid\n"
"                        (default %s)\n"
"  --loss NAME           ce (softmax cross-entropy), bce (binary cross-entropy on logits,\n"
"                        one-hot targets), mse (mean squared error, one-hot targets)\n"
"                        (default %s)\n"
"  --init NAME           auto (He for relu/gelu, Glorot for tanh/sigmoid), he, glorot\n"
"                        (default %s)\n"
"Optimisation:\n"
"  --optimizer NAME      adam, adamw, sgd (SGD with momentum) (default %s; adamw with\n"
"                        --weight-decay 0.05 for --model cnn)\n"
"  --lr RATE             base learning rate (default %g)\n"
"  --weight-decay W      L2 for adam and sgd, decoupled for adamw (default %g; 0.01 for\n"
"                        adamw, 0.05 for adamw with --model cnn)\n"
"  --momentum M          SGD momentum (default %g)\n"
"  --clip-norm N         clip gradients to global L2 norm N; 0 = off (default %g)\n"
"  --schedule NAME       constant; step (multiply by --gamma every --step-size epochs);\n"
"                        cosine (linear warmup over --warmup steps, then cosine decay to\n"
"                        --min-lr at the end of training) (default %s)\n"
"  --step-size EPOCHS    step schedule period (default %d)\n"
"  --gamma G             step schedule factor (default %g)\n"
"  --warmup STEPS        cosine warmup steps (default %lld)\n"
"  --min-lr RATE         cosine final rate (default %g)\n"
"Training:\n"
"  --epochs N            passes over the training set (default %d; 15 for --model cnn)\n"
"  --batch B             samples per optimizer step (default %d)\n"
"  --micro-batch M       samples per micro-shard; a batch of B is cut into ceil(B / M)\n"
"                        shards (default %d, or B if smaller); results depend on B and M,\n"
"                        never on --threads\n"
"  --threads T           worker threads (default: the CPUs this process may use, here %d,\n"
"                        divided by the processes mpirun started on this machine)\n"
"  --seed S              seed for init, split and shuffling (default %llu)\n"
"Data:\n"
"  --data DIR|synthetic  a directory with train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz]\n"
"                        (MNIST format), or 'synthetic' for a seeded in-memory task shaped\n"
"                        by --model (default %s, from Debian's\n"
"                        dataset-fashion-mnist package)\n"
"  --val-split F         fraction of the training set held out for validation, in [0, 1)\n"
"                        (default %g)\n"
"  --synthetic-n N       synthetic training samples (default %lld)\n"
"  --synthetic-test-n N  synthetic test samples (default %lld)\n"
"  --noise SIGMA         synthetic noise in pixel units (default %g)\n"
"TensorBoard logs (open with: tensorboard --logdir logs):\n"
"  --logdir DIR|none     experiment directory, with runs DIR/train and DIR/validation\n"
"                        (default logs/<model>-<date>-<time>; 'none' logs nothing)\n"
"  --log-every N         batch_loss, batch_accuracy, learning_rate, grad_global_norm and\n"
"                        samples_per_second every N steps (default %d)\n"
"  --histogram-every N   weight and gradient histograms, activation statistics and images\n"
"                        every N epochs; 0 = never (default %d)\n"
"Checkpoints (safetensors files; PyTorch and Python's safetensors read them):\n"
"  --checkpoint-dir DIR|none\n"
"                        where a checkpoint is written after every epoch and on Ctrl-C\n"
"                        (default LOGDIR/checkpoints; 'none' when --logdir is none)\n"
"  --keep N              checkpoints kept, the newest ones (default %d)\n"
"  --resume[=FILE|DIR]   continue exactly where a checkpoint left off: FILE, the newest in\n"
"                        DIR, or the newest in --checkpoint-dir. The run keeps the settings\n"
"                        it was started with; only --epochs, --threads, --data, --logdir,\n"
"                        --checkpoint-dir, --keep, --log-every, --histogram-every, --json\n"
"                        and --quiet may be given again\n"
"  --eval FILE           evaluate a checkpoint on the test set and exit\n"
"  --predict FILE --out OUT\n"
"                        the model of checkpoint FILE on the test set of --data (by default\n"
"                        the data it was trained on): one row per sample, class\n"
"                        probabilities (ce, bce) or outputs (mse), normalised as in\n"
"                        training, into OUT: NumPy .npy (float32, samples x outputs) or\n"
"                        CSV with a header row\n"
"  --input FILE          with --predict: predict for the samples of FILE instead, features\n"
"                        only: a .npy array (N, D) or (N, C, H, W), or a CSV file with a\n"
"                        header row whose every column is a feature; works with any Brisk\n"
"                        checkpoint, also those of programs that use the library\n"
"Policies (each watches --monitor after every epoch):\n"
"  --monitor METRIC      val_loss, val_accuracy, train_loss, train_accuracy (default %s)\n"
"  --min-delta D         the least change that counts as an improvement (default %g)\n"
"  --early-stop N        stop when the metric has not improved for N epochs (0 = off;\n"
"                        the test set is still evaluated) (default %d)\n"
"  --keep-best           also keep the best epoch's checkpoint, ckpt-<run>-best.safetensors\n"
"  --plateau N           multiply the learning rate by --plateau-factor when the metric has\n"
"                        not improved for N epochs (0 = off) (default %d)\n"
"  --plateau-factor F    (default %g)\n"
"  --plateau-min-lr R    the rate never goes below R (default %g)\n"
"Output:\n"
"  --json                one JSON object per epoch and one with the test metrics and a\n"
"                        checksum of the final weights, nothing else on stdout\n"
"  --quiet               only the final test line (and errors) on stdout\n"
"  -h, --help            show this help and exit\n"
"On a terminal a live progress line shows each epoch's percent, samples/s, loss and ETA\n"
"(not under mpirun, which gives every process a terminal even when output goes to a file).\n"
"Several processes (mpirun -np P brisk-train ...):\n"
"  --mpi-timeout SECONDS how long a process waits for the others in one exchange before the\n"
"                        job ends, naming the exchange and the process that did not come\n"
"                        (default 0: the larger of 60 s and 20 times the median step time)\n"
"\n"
"Ctrl-C (SIGINT) or SIGTERM: the current step finishes, a checkpoint is written, the logs\n"
"are flushed, and the command to resume is printed; a second Ctrl-C quits at once (the\n"
"logs are still drained).\n"
"Exit status: 0 success, 1 error (data, memory, files), 2 usage error, 3 training diverged\n"
"(a loss or gradient became NaN or infinite; the message names the step and the layer),\n"
"130 interrupted.\n",
        d->model, d->act, d->loss, d->init, d->optimizer, d->lr, d->weight_decay, d->momentum,
        d->clip_norm, d->schedule, d->step_size, d->gamma, d->warmup, d->min_lr, d->epochs,
        d->batch, d->micro_batch, brisk_cpu_count(), d->seed, d->data, d->val_split,
        d->synthetic_n, d->synthetic_test_n, d->noise, d->log_every, d->histogram_every,
        d->keep, d->monitor, d->min_delta, d->early_stop, d->plateau, d->plateau_factor,
        d->plateau_min_lr);
}

static void usage_error(const char *flag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void usage_error(const char *flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "brisk-train: %s: ", flag);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'brisk-train --help' for more information.\n");
    exit(EXIT_USAGE);
}

static double parse_double(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v))
        usage_error(flag, "'%s' is not a number", s);
    if (v < lo || v > hi)
        usage_error(flag, "%s is out of range [%g, %g]", s, lo, hi);
    return v;
}

static long long parse_int(const char *flag, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        usage_error(flag, "'%s' is not an integer", s);
    if (v < lo || v > hi)
        usage_error(flag, "%s is out of range [%lld, %lld]", s, lo, hi);
    return v;
}

static int parse_name(const char *flag, const char *s, int (*parse)(const char *),
                      const char *choices)
{
    int v = parse(s);
    if (v < 0)
        usage_error(flag, "unknown value '%s' (choose %s)", s, choices);
    return v;
}

static int init_parse(const char *s)
{
    return !strcmp(s, "auto") ? BRISK_INIT_AUTO : !strcmp(s, "he") ? BRISK_INIT_HE
                                              : !strcmp(s, "glorot") ? BRISK_INIT_GLOROT : -1;
}


/* 1 if the model is the MLP shorthand "784-256-10". */
static int is_shorthand(const char *model)
{
    return strspn(model, "0123456789-") == strlen(model);
}

/* The library's message about a model, without its leading "model: " (the flag says it). */
static const char *model_error(void)
{
    const char *e = brisk_error_detail();
    return strncmp(e, "model: ", 7) ? e : e + 7;
}

/* A directory name for the model: the shorthand or preset as it is, a layer list with every
 * run of other characters than letters, digits, '.' and '-' turned into one '-', at most 48
 * characters ("conv-32-3-pad1-relu-maxpool-2-..."). */
static void model_slug(const char *model, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = model; *p && n + 1 < size && n < 48; p++) {
        const int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                       (*p >= '0' && *p <= '9') || *p == '.' || *p == '-';
        if (ok)
            out[n++] = *p;
        else if (n > 0 && out[n - 1] != '-')
            out[n++] = '-';
    }
    while (n > 0 && out[n - 1] == '-')
        n--;
    out[n] = 0;
    if (!n)
        snprintf(out, size, "model");
}

/* A sample's shape in the data: an image when it has rows and columns. */
static brisk_shape data_shape(const brisk_dataset *ds)
{
    return ds->rows > 0 && ds->cols > 0 && ds->rows * ds->cols == ds->d
               ? brisk_shape_img(1, ds->rows, ds->cols)
               : brisk_shape_vec(ds->d);
}

/* The model configuration from --model, --act, --loss and --init for inputs of the given
 * shape; usage errors name the flag (and the offending item of a layer list). */
static brisk_model_config model_config(const options *o, brisk_shape input)
{
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    const int act = parse_name("--act", o->act, brisk_act_parse, "relu, gelu, tanh or sigmoid");
    if (is_shorthand(o->model)) {
        if (brisk_model_config_mlp(&mc, o->model, (brisk_act)act) < 0)
            usage_error("--model", "%s", model_error());
    } else {
        if (strcmp(o->act, defaults.act))
            usage_error("--act", "applies to the shorthand of widths (784-256-10) only; put the "
                        "activations in the layer list");
        if (brisk_model_config_set(&mc, o->model, input) < 0)
            usage_error("--model", "%s", model_error());
    }
    mc.loss = parse_name("--loss", o->loss, brisk_loss_parse, "ce, bce or mse");
    mc.init = parse_name("--init", o->init, init_parse, "auto, he or glorot");
    return mc;
}

/* The model's output width; builds it to know (a usage error naming the layer that does not
 * fit the input). */
static int model_outputs(const brisk_model_config *mc)
{
    brisk_model *m;
    if (brisk_model_create(mc, &m) < 0)
        usage_error("--model", "%s", model_error());
    const int C = brisk_model_outputs(m);
    brisk_model_destroy(m);
    return C;
}

/* Builds the trainer configuration from the options and the data's shape; usage errors for
 * combinations that cannot work. */
static brisk_trainer_config make_config(const options *o, const brisk_dataset *train,
                                        int64_t steps_per_epoch)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    c.model = model_config(o, data_shape(train));
    const int D = (int)brisk_shape_size(c.model.input), C = model_outputs(&c.model);
    if (D != train->d)
        usage_error("--model", "input width %d does not match the data's %d features per "
                    "sample", D, train->d);
    if (c.model.loss == BRISK_LOSS_SOFTMAX_CE ? C < train->classes
                                              : !(C == train->classes ||
                                                  (C == 1 && train->classes == 2)))
        usage_error("--model", "output width %d does not fit the data's %d classes", C,
                    train->classes);
    c.optim = brisk_optim_defaults(parse_name("--optimizer", o->optimizer, brisk_optim_parse,
                                              "adam, adamw or sgd"));
    if (o->weight_decay_set)
        c.optim.weight_decay = (float)o->weight_decay;
    c.optim.momentum = (float)o->momentum;
    c.schedule.kind = parse_name("--schedule", o->schedule, brisk_schedule_parse,
                                 "constant, step or cosine");
    c.schedule.lr = (float)o->lr;
    c.schedule.step_size = (int64_t)o->step_size * steps_per_epoch;
    c.schedule.gamma = (float)o->gamma;
    c.schedule.warmup = o->warmup;
    c.schedule.total = (int64_t)o->epochs * steps_per_epoch;
    c.schedule.min_lr = (float)o->min_lr;
    c.clip_norm = (float)o->clip_norm;
    c.batch = o->batch;
    c.micro_batch = o->micro_batch;
    c.threads = o->threads;
    c.seed = o->seed;
    return c;
}


/* Loads the data set: synthetic samples of the given shape and C classes, or IDX files. */
static int load_data(const options *o, brisk_shape shape, int C, brisk_dataset *train,
                     brisk_dataset *test)
{
    int err;
    if (!strcmp(o->data, "synthetic")) {
        const int classes = C < 2 ? 2 : C > 256 ? 256 : C, D = (int)brisk_shape_size(shape);
        if ((err = brisk_dataset_synthetic(o->synthetic_n, D, classes, (float)o->noise, o->seed,
                                           0, train)) < 0 ||
            (err = brisk_dataset_synthetic(o->synthetic_test_n, D, classes, (float)o->noise,
                                           o->seed, o->synthetic_n, test)) < 0)
            fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
        if (!err && shape.rank == 3 && shape.c == 1) { /* images of one channel */
            train->rows = test->rows = shape.h;
            train->cols = test->cols = shape.w;
        }
        return err;
    }
    if ((err = brisk_dataset_load_dir(o->data, "train", train)) < 0 ||
        (err = brisk_dataset_load_dir(o->data, "t10k", test)) < 0) {
        fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
        if (err == BRISK_ENOENT && !strcmp(o->data, DEFAULT_DATA))
            fprintf(stderr, "brisk-train: Fashion-MNIST is not installed: run 'apt-get install "
                            "dataset-fashion-mnist', or pass --data DIR or --data synthetic\n");
        return err;
    }
    if (test->d != train->d) {
        fprintf(stderr, "brisk-train: %s: test images have %d features, training images %d\n",
                o->data, test->d, train->d);
        return BRISK_EMISMATCH;
    }
    return BRISK_OK;
}


static void print_json_metric(const char *name, const brisk_metrics *m, int valid)
{
    if (valid)
        printf(", \"%s_loss\": %.6f, \"%s_accuracy\": %.6f", name, brisk_metrics_loss(m), name,
               brisk_metrics_accuracy(m));
    else
        printf(", \"%s_loss\": null, \"%s_accuracy\": null", name, name);
}

enum {
    OPT_MODEL = 256, OPT_ACT, OPT_LOSS, OPT_INIT, OPT_OPTIMIZER, OPT_LR, OPT_WD, OPT_MOMENTUM,
    OPT_CLIP, OPT_SCHEDULE, OPT_STEP_SIZE, OPT_GAMMA, OPT_WARMUP, OPT_MIN_LR, OPT_EPOCHS,
    OPT_BATCH, OPT_MICRO, OPT_THREADS, OPT_SEED, OPT_DATA, OPT_VAL, OPT_SYN_N, OPT_SYN_TEST_N,
    OPT_NOISE, OPT_LOGDIR, OPT_LOG_EVERY, OPT_HIST_EVERY, OPT_CKPT_DIR, OPT_KEEP, OPT_RESUME,
    OPT_EVAL, OPT_JSON, OPT_QUIET, OPT_MPI_TIMEOUT, OPT_SUMMARY, OPT_EARLY_STOP, OPT_MONITOR,
    OPT_MIN_DELTA, OPT_KEEP_BEST, OPT_PLATEAU, OPT_PLATEAU_FACTOR, OPT_PLATEAU_MIN_LR,
    OPT_PREDICT, OPT_OUT, OPT_INPUT, OPT_END
};

static const struct option long_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},
    {"act", required_argument, 0, OPT_ACT},
    {"loss", required_argument, 0, OPT_LOSS},
    {"init", required_argument, 0, OPT_INIT},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"lr", required_argument, 0, OPT_LR},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"clip-norm", required_argument, 0, OPT_CLIP},
    {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"step-size", required_argument, 0, OPT_STEP_SIZE},
    {"gamma", required_argument, 0, OPT_GAMMA},
    {"warmup", required_argument, 0, OPT_WARMUP},
    {"min-lr", required_argument, 0, OPT_MIN_LR},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"micro-batch", required_argument, 0, OPT_MICRO},
    {"threads", required_argument, 0, OPT_THREADS},
    {"seed", required_argument, 0, OPT_SEED},
    {"data", required_argument, 0, OPT_DATA},
    {"val-split", required_argument, 0, OPT_VAL},
    {"synthetic-n", required_argument, 0, OPT_SYN_N},
    {"synthetic-test-n", required_argument, 0, OPT_SYN_TEST_N},
    {"noise", required_argument, 0, OPT_NOISE},
    {"logdir", required_argument, 0, OPT_LOGDIR},
    {"log-every", required_argument, 0, OPT_LOG_EVERY},
    {"histogram-every", required_argument, 0, OPT_HIST_EVERY},
    {"checkpoint-dir", required_argument, 0, OPT_CKPT_DIR},
    {"keep", required_argument, 0, OPT_KEEP},
    {"resume", optional_argument, 0, OPT_RESUME},
    {"eval", required_argument, 0, OPT_EVAL},
    {"json", no_argument, 0, OPT_JSON},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"mpi-timeout", required_argument, 0, OPT_MPI_TIMEOUT},
    {"summary", no_argument, 0, OPT_SUMMARY},
    {"early-stop", required_argument, 0, OPT_EARLY_STOP},
    {"monitor", required_argument, 0, OPT_MONITOR},
    {"min-delta", required_argument, 0, OPT_MIN_DELTA},
    {"keep-best", no_argument, 0, OPT_KEEP_BEST},
    {"plateau", required_argument, 0, OPT_PLATEAU},
    {"plateau-factor", required_argument, 0, OPT_PLATEAU_FACTOR},
    {"plateau-min-lr", required_argument, 0, OPT_PLATEAU_MIN_LR},
    {"predict", required_argument, 0, OPT_PREDICT},
    {"out", required_argument, 0, OPT_OUT},
    {"input", required_argument, 0, OPT_INPUT},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* The settings a checkpoint records (as JSON in its metadata), and whether a resumed run may
 * change them. Everything else would make the continuation differ from an uninterrupted run. */
typedef enum field_type { F_STR, F_DBL, F_INT, F_LL, F_ULL } field_type;

typedef struct field {
    const char *name; /* the flag without "--" */
    int opt;          /* OPT_* (0: no flag of its own) */
    field_type type;
    size_t offset;
    int may_change_on_resume;
    double lo, hi;    /* numbers: the range the flag accepts, and a checkpoint may hold */
} field;

#define FIELD(n, o, t, m, c, lo, hi) {n, o, t, offsetof(options, m), c, lo, hi}
#define NAME(n, o, m, c) FIELD(n, o, F_STR, m, c, 0, 0)
static const field fields[] = {
    NAME("model", OPT_MODEL, model, 0),
    NAME("act", OPT_ACT, act, 0),
    NAME("loss", OPT_LOSS, loss, 0),
    NAME("init", OPT_INIT, init, 0),
    NAME("optimizer", OPT_OPTIMIZER, optimizer, 0),
    FIELD("lr", OPT_LR, F_DBL, lr, 0, 1e-12, 1e6),
    FIELD("weight-decay", OPT_WD, F_DBL, weight_decay, 0, 0, 1e3),
    FIELD("weight-decay-set", 0, F_INT, weight_decay_set, 0, 0, 1),
    FIELD("momentum", OPT_MOMENTUM, F_DBL, momentum, 0, 0, 1),
    FIELD("clip-norm", OPT_CLIP, F_DBL, clip_norm, 0, 0, 1e30),
    NAME("schedule", OPT_SCHEDULE, schedule, 0),
    FIELD("step-size", OPT_STEP_SIZE, F_INT, step_size, 0, 1, 1e6),
    FIELD("gamma", OPT_GAMMA, F_DBL, gamma, 0, 0, 1e3),
    FIELD("warmup", OPT_WARMUP, F_LL, warmup, 0, 0, 1e9),
    FIELD("min-lr", OPT_MIN_LR, F_DBL, min_lr, 0, 0, 1e6),
    FIELD("epochs", OPT_EPOCHS, F_INT, epochs, 1, 1, 1e6),
    FIELD("batch", OPT_BATCH, F_INT, batch, 0, 1, 1 << 20),
    FIELD("micro-batch", OPT_MICRO, F_INT, micro_batch, 0, 1, 1 << 20),
    FIELD("threads", OPT_THREADS, F_INT, threads, 1, 0, 4096),
    FIELD("seed", OPT_SEED, F_ULL, seed, 0, 0, 9223372036854775807.0),
    NAME("data", OPT_DATA, data, 1),
    FIELD("val-split", OPT_VAL, F_DBL, val_split, 0, 0, 0.99),
    FIELD("synthetic-n", OPT_SYN_N, F_LL, synthetic_n, 0, 1, 1e8),
    FIELD("synthetic-test-n", OPT_SYN_TEST_N, F_LL, synthetic_test_n, 0, 1, 1e8),
    FIELD("noise", OPT_NOISE, F_DBL, noise, 0, 0, 1e4),
    NAME("logdir", OPT_LOGDIR, logdir, 1),
    FIELD("log-every", OPT_LOG_EVERY, F_INT, log_every, 1, 1, 1e9),
    FIELD("histogram-every", OPT_HIST_EVERY, F_INT, histogram_every, 1, 0, 1e6),
    NAME("checkpoint-dir", OPT_CKPT_DIR, checkpoint_dir, 1),
    FIELD("keep", OPT_KEEP, F_INT, keep, 1, 1, 1e6),
    NAME("run", 0, run, 0),
    FIELD("mpi-timeout", OPT_MPI_TIMEOUT, F_DBL, mpi_timeout, 1, 0, 1e6),
    FIELD("early-stop", OPT_EARLY_STOP, F_INT, early_stop, 0, 0, 1e6),
    NAME("monitor", OPT_MONITOR, monitor, 0),
    FIELD("min-delta", OPT_MIN_DELTA, F_DBL, min_delta, 0, 0, 1e6),
    FIELD("keep-best", OPT_KEEP_BEST, F_INT, keep_best, 0, 0, 1),
    FIELD("plateau", OPT_PLATEAU, F_INT, plateau, 0, 0, 1e6),
    FIELD("plateau-factor", OPT_PLATEAU_FACTOR, F_DBL, plateau_factor, 0, 1e-6, 0.999999),
    FIELD("plateau-min-lr", OPT_PLATEAU_MIN_LR, F_DBL, plateau_min_lr, 0, 0, 1e6),
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

static void *field_ptr(options *o, const field *f)
{
    return (char *)o + f->offset;
}

/* Which flags the command line set, by OPT_* id. */
static unsigned char flag_set[OPT_END];

static const field *field_of(int opt)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (fields[i].opt == opt)
            return &fields[i];
    return NULL;
}

/* A number flag, parsed and range-checked by its entry in the table. */
static void parse_number(options *o, const field *f, const char *flag, const char *arg)
{
    void *p = field_ptr(o, f);
    switch (f->type) {
    case F_DBL: *(double *)p = parse_double(flag, arg, f->lo, f->hi); break;
    case F_INT: *(int *)p = (int)parse_int(flag, arg, (long long)f->lo, (long long)f->hi); break;
    case F_LL: *(long long *)p = parse_int(flag, arg, (long long)f->lo, (long long)f->hi); break;
    case F_ULL:
        *(unsigned long long *)p =
            (unsigned long long)parse_int(flag, arg, (long long)f->lo, INT64_MAX);
        break;
    case F_STR: break;
    }
}

static void parse_args(int argc, char **argv, options *o)
{
    *o = defaults;
    opterr = 0;
    for (;;) {
        int longindex = -1;
        int c = getopt_long(argc, argv, ":h", long_opts, &longindex);
        if (c == -1)
            break;
        const char *flag = longindex >= 0 ? long_opts[longindex].name : argv[optind - 1];
        char flagbuf[64];
        if (longindex >= 0) {
            snprintf(flagbuf, sizeof flagbuf, "--%s", flag);
            flag = flagbuf;
        }
        if (c >= OPT_MODEL && c < OPT_END)
            flag_set[c] = 1;
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case OPT_MODEL: o->model = optarg; break;
        case OPT_ACT: o->act = optarg; break;
        case OPT_LOSS: o->loss = optarg; break;
        case OPT_INIT: o->init = optarg; break;
        case OPT_OPTIMIZER: o->optimizer = optarg; break;
        case OPT_WD:
            parse_number(o, field_of(c), flag, optarg);
            o->weight_decay_set = 1;
            break;
        case OPT_SCHEDULE: o->schedule = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_LOGDIR:
            if (!*optarg)
                usage_error(flag, "needs a directory (or 'none')");
            o->logdir = optarg;
            break;
        case OPT_CKPT_DIR:
            if (!*optarg)
                usage_error(flag, "needs a directory (or 'none')");
            o->checkpoint_dir = optarg;
            break;
        case OPT_RESUME:
            o->resume_set = 1;
            o->resume = optarg; /* NULL: the newest in --checkpoint-dir */
            break;
        case OPT_EVAL: o->eval = optarg; break;
        case OPT_PREDICT: o->predict = optarg; break;
        case OPT_OUT: o->out = optarg; break;
        case OPT_INPUT: o->input = optarg; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_SUMMARY: o->summary = 1; break;
        case OPT_KEEP_BEST: o->keep_best = 1; break;
        case OPT_MONITOR:
            if (brisk_fit_metric_parse(optarg) < 0)
                usage_error(flag, "'%s' is not a metric: val_loss, val_accuracy, train_loss or "
                            "train_accuracy", optarg);
            o->monitor = optarg;
            break;
        case ':':
            usage_error(argv[optind - 1], "needs a value");
        default:
            if (c >= OPT_MODEL && c < OPT_END && field_of(c) && field_of(c)->type != F_STR) {
                parse_number(o, field_of(c), flag, optarg);
                break;
            }
            usage_error(argv[optind - 1], "unknown option");
        }
    }
    if (optind < argc)
        usage_error(argv[optind], "unexpected argument (all settings are --flags)");
    /* A preset's recipe (brisk_model_preset_recipe): its epochs and optimizer unless --epochs
     * and --optimizer say otherwise, and with that optimizer its weight decay unless
     * --weight-decay does. */
    brisk_preset_recipe recipe;
    if (brisk_model_preset_recipe(o->model, &recipe) == BRISK_OK) {
        if (!flag_set[OPT_EPOCHS])
            o->epochs = recipe.epochs;
        if (!flag_set[OPT_OPTIMIZER])
            o->optimizer = brisk_optim_name(recipe.optimizer);
        if (!strcmp(o->optimizer, brisk_optim_name(recipe.optimizer)) && !o->weight_decay_set) {
            o->weight_decay = recipe.weight_decay;
            o->weight_decay_set = 1;
        }
    }
    if (o->resume_set && o->eval)
        usage_error("--eval", "cannot be combined with --resume");
    if (o->predict && (o->resume_set || o->eval))
        usage_error("--predict", "cannot be combined with --resume or --eval");
    if (o->predict && (!o->out || !*o->out))
        usage_error("--predict", "needs --out FILE (.npy or .csv)");
    if (o->out && !o->predict)
        usage_error("--out", "goes with --predict");
    if (o->input && !o->predict)
        usage_error("--input", "goes with --predict");
    if ((o->early_stop || o->keep_best || o->plateau) && !strncmp(o->monitor, "val_", 4) &&
        o->val_split == 0)
        usage_error("--monitor", "%s needs validation samples, and --val-split is 0 (watch "
                    "train_loss or train_accuracy instead)", o->monitor);
    if (o->keep_best && o->checkpoint_dir && !strcmp(o->checkpoint_dir, "none"))
        usage_error("--keep-best", "needs checkpoints, and --checkpoint-dir is none");
}

/* The settings as a JSON object (owned by the caller), stored in every checkpoint. */
static char *options_to_json(options *o)
{
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; root && i < N_FIELDS; i++) {
        const field *f = &fields[i];
        const void *p = field_ptr(o, f);
        char num[64];
        switch (f->type) {
        case F_STR:
            cJSON_AddStringToObject(root, f->name, *(const char *const *)p ? *(const char *const *)p : "");
            break;
        case F_DBL:
            snprintf(num, sizeof num, "%.17g", *(const double *)p);
            cJSON_AddRawToObject(root, f->name, num); /* every digit kept */
            break;
        case F_INT: cJSON_AddNumberToObject(root, f->name, *(const int *)p); break;
        case F_LL: cJSON_AddNumberToObject(root, f->name, (double)*(const long long *)p); break;
        case F_ULL:
            snprintf(num, sizeof num, "%llu", *(const unsigned long long *)p);
            cJSON_AddStringToObject(root, f->name, num); /* 64 bits do not fit a double */
            break;
        }
    }
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static int values_equal(const field *f, const void *a, const void *b)
{
    switch (f->type) {
    case F_STR: return strcmp(*(const char *const *)a, *(const char *const *)b) == 0;
    case F_DBL: return *(const double *)a == *(const double *)b;
    case F_INT: return *(const int *)a == *(const int *)b;
    case F_LL: return *(const long long *)a == *(const long long *)b;
    case F_ULL: return *(const unsigned long long *)a == *(const unsigned long long *)b;
    }
    return 0;
}

/* Replaces the settings with the checkpoint's, then applies the flags given again on the
 * command line where that is allowed; refuses the others when they differ. `json` is kept
 * alive by the caller while o points into it. */
/* A setting read from a checkpoint that no flag could have given: the file is damaged or
 * was edited. Exits 1 (a data error), naming the file and the setting. */
static void bad_setting(const char *path, const char *name, const char *value, const char *why)
    __attribute__((noreturn));

static void bad_setting(const char *path, const char *name, const char *value, const char *why)
{
    fprintf(stderr, "brisk-train: %s: setting '%s' in the checkpoint is %s, %s: the file is "
                    "damaged or was edited\n", path, name, value, why);
    exit(1);
}

/* Checks one setting read from a checkpoint against what its flag accepts. */
static void check_setting(const char *path, const field *f, const options *o)
{
    const void *p = (const char *)o + f->offset;
    char v[512], why[160];
    if (f->type == F_STR) {
        const char *str = *(const char *const *)p;
        snprintf(v, sizeof v, "'%s'", str);
        brisk_model_config mc;
        memset(&mc, 0, sizeof mc);
        const int ok = !strcmp(f->name, "model")
                           ? (is_shorthand(str)
                                  ? brisk_model_config_mlp(&mc, str, BRISK_ACT_RELU) == 0
                                  : brisk_model_config_set(&mc, str, brisk_shape_img(1, 28, 28)) ==
                                        0)
                       : !strcmp(f->name, "act")       ? brisk_act_parse(str) >= 0
                       : !strcmp(f->name, "loss")      ? brisk_loss_parse(str) >= 0
                       : !strcmp(f->name, "init")      ? init_parse(str) >= 0
                       : !strcmp(f->name, "optimizer") ? brisk_optim_parse(str) >= 0
                       : !strcmp(f->name, "schedule")  ? brisk_schedule_parse(str) >= 0
                       : !strcmp(f->name, "run")       ? brisk_run_id_valid(str)
                                                       : *str != '\0';
        if (!ok)
            bad_setting(path, f->name, v, "which --help does not list");
        return;
    }
    double x;
    switch (f->type) {
    case F_DBL: x = *(const double *)p; break;
    case F_INT: x = *(const int *)p; break;
    case F_LL: x = (double)*(const long long *)p; break;
    default: x = (double)*(const unsigned long long *)p; break;
    }
    snprintf(v, sizeof v, "%.17g", x);
    snprintf(why, sizeof why, "outside the range %g..%g that --%s accepts", f->lo, f->hi,
             f->name);
    if (!(x >= f->lo && x <= f->hi))
        bad_setting(path, f->name, v, why);
}

/* Replaces the settings with the checkpoint's, then applies the flags given again on the
 * command line where that is allowed; refuses the others when they differ. Every value read
 * is checked as its flag would be. `json` is kept alive by the caller while o points into
 * it. */
static void apply_checkpoint_config(options *o, const cJSON *json, const char *path)
{
    options cli = *o, saved = *o;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, f->name);
        void *p = field_ptr(&saved, f);
        int ok = 1;
        switch (f->type) {
        case F_STR:
            ok = cJSON_IsString(v);
            if (ok)
                *(const char **)p = v->valuestring;
            break;
        case F_ULL: {
            char *end = NULL;
            errno = 0;
            ok = cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9';
            const unsigned long long x = ok ? strtoull(v->valuestring, &end, 10) : 0;
            if (ok && (*end || errno || x > (unsigned long long)f->hi))
                bad_setting(path, f->name, v->valuestring, "not an integer the flag accepts");
            if (ok)
                *(unsigned long long *)p = x;
            break;
        }
        default: {
            ok = cJSON_IsNumber(v);
            const double x = ok ? v->valuedouble : 0;
            char val[64];
            snprintf(val, sizeof val, "%.17g", x);
            if (ok && f->type != F_DBL && (!(x >= f->lo && x <= f->hi) || x != floor(x))) {
                char why[160];
                snprintf(why, sizeof why, "not an integer in %g..%g as --%s accepts", f->lo,
                         f->hi, f->name);
                bad_setting(path, f->name, val, why);
            }
            if (ok && f->type == F_DBL)
                *(double *)p = x;
            else if (ok && f->type == F_INT)
                *(int *)p = (int)x;
            else if (ok)
                *(long long *)p = (long long)x;
        }
        }
        if (!ok) {
            fprintf(stderr, "brisk-train: %s: the configuration in the checkpoint has no valid "
                            "'%s'\n",
                    path, f->name);
            exit(1);
        }
        check_setting(path, f, &saved);
    }
    *o = saved;
    o->resume_set = cli.resume_set;
    o->resume = cli.resume;
    o->json = cli.json;
    o->quiet = cli.quiet;
    o->summary = cli.summary;
    o->eval = cli.eval;
    o->predict = cli.predict;
    o->out = cli.out;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        if (!f->opt || !flag_set[f->opt])
            continue;
        const void *given = field_ptr(&cli, f);
        void *p = field_ptr(o, f);
        if (f->may_change_on_resume) {
            if (f->opt == OPT_EPOCHS && !values_equal(f, given, p) && !strcmp(o->schedule, "cosine"))
                fprintf(stderr, "brisk-train: warning: the cosine schedule spans all epochs, so "
                                "with --epochs %d instead of %d the rest of this run differs "
                                "from an uninterrupted run of either length\n",
                        *(const int *)given, *(const int *)p);
            memcpy(p, given, f->type == F_STR ? sizeof(char *) : f->type == F_DBL ? sizeof(double)
                             : f->type == F_INT ? sizeof(int) : sizeof(long long));
        } else if (!values_equal(f, given, p)) {
            char flag[64];
            snprintf(flag, sizeof flag, "--%s", f->name);
            usage_error(flag, "cannot change when resuming: %s was trained with other settings "
                              "(start a new run to change them)",
                        path);
        }
    }
    /* --threads and --logdir are not part of what was trained. */
    if (!flag_set[OPT_THREADS])
        o->threads = 0;
}

/* Resolves --resume[=FILE|DIR] to a checkpoint file (malloc'd), or NULL with a message. */
static char *resume_path(const options *o)
{
    const char *target = o->resume ? o->resume : o->checkpoint_dir;
    if (!target || !strcmp(target, "none")) {
        fprintf(stderr, "brisk-train: --resume: name a checkpoint (--resume=FILE), a directory "
                        "(--resume=DIR) or pass --checkpoint-dir DIR\n");
        return NULL;
    }
    struct stat st;
    if (stat(target, &st) != 0) {
        fprintf(stderr, "brisk-train: --resume: %s: %s\n", target, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode))
        return strdup(target);
    /* The newest checkpoint of the one run that has checkpoints there (refused when there are
     * several: which one to continue is the user's call). */
    char *path = malloc(PATH_MAX);
    if (!path) {
        fprintf(stderr, "brisk-train: out of memory\n");
        return NULL;
    }
    if (brisk_ckpt_newest(target, NULL, path, PATH_MAX) < 0) {
        fprintf(stderr, "brisk-train: --resume: %s\n", brisk_error_detail());
        free(path);
        return NULL;
    }
    return path;
}

/* A log directory belongs to one run: brisk-train writes the run's id into DIR/brisk-run and
 * refuses to start in a directory whose marker names another run, or that holds event files
 * without a marker (another program's, or another run's from before markers). Returns 0, or
 * 1 with a message. */
static int claim_logdir(const char *dir, const char *run)
{
    char marker[PATH_MAX], other[BRISK_RUN_ID_MAX + 2] = "";
    snprintf(marker, sizeof marker, "%s/brisk-run", dir);
    char *text;
    uint64_t size;
    const int err = brisk_file_read_all(marker, 4096, &text, &size);
    if (err == BRISK_OK) {
        snprintf(other, sizeof other, "%.*s", (int)strcspn(text, "\r\n"), text);
        free(text);
        if (!strcmp(other, run))
            return 0;
        if (!other[0])
            snprintf(other, sizeof other, "unnamed");
    } else if (err != BRISK_ENOENT) {
        fprintf(stderr, "brisk-train: --logdir %s: %s\n", dir, brisk_error_detail());
        return 1;
    } else {
        static const char *const subdirs[] = {"", "/train", "/validation"};
        for (int i = 0; i < 3 && !other[0]; i++) {
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s%s", dir, subdirs[i]);
            DIR *d = opendir(sub);
            struct dirent *e;
            while (d && (e = readdir(d)))
                if (strstr(e->d_name, "tfevents")) {
                    snprintf(other, sizeof other, "unnamed");
                    break;
                }
            if (d)
                closedir(d);
        }
        if (!other[0]) {
            brisk_outfile f;
            if (brisk_make_dirs(dir) < 0 || brisk_outfile_open(&f, marker) < 0) {
                fprintf(stderr, "brisk-train: --logdir %s: %s\n", dir, brisk_error_detail());
                return 1;
            }
            if (fprintf(f.fp, "%s\n", run) < 0 || brisk_outfile_commit(&f) < 0) {
                fprintf(stderr, "brisk-train: --logdir %s: %s\n", dir, brisk_error_detail());
                brisk_outfile_abort(&f);
                return 1;
            }
            return 0;
        }
    }
    fprintf(stderr, "brisk-train: --logdir %s holds the logs of another run (%s); TensorBoard "
                    "would merge the two. Choose a new directory, or continue that run with "
                    "--resume\n", dir, other);
    return 1;
}

static void log_warning(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "brisk-train: warning: %s\n", line);
}

/* Makes dir and takes the lock at path (brisk_lock_take). Returns 0, or 1 with a message
 * naming the flag, and the process that holds the lock. */
static int take_lock(const char *flag, const char *dir, const char *path, brisk_lock **lock)
{
    int err = brisk_make_dirs(dir);
    if (err == BRISK_OK && (err = brisk_lock_take(path, lock)) == BRISK_OK)
        return 0;
    if (err == BRISK_EBUSY)
        fprintf(stderr, "brisk-train: %s %s: another process is writing this run: %s; wait "
                        "for it to end (or stop it) first\n", flag, dir, brisk_error_detail());
    else
        fprintf(stderr, "brisk-train: %s %s: %s\n", flag, dir, brisk_error_detail());
    return 1;
}

/* Ctrl-C: the first SIGINT or SIGTERM asks the loop to stop after the current step; a second
 * one drains the logs from the handler and exits at once. */
static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t final_evaluation; /* training is over: the test evaluation runs */
static brisk_logger *volatile signal_logger;

static void on_signal(int sig)
{
    if (stop_signal) {
        static const char msg[] = "\nbrisk-train: interrupted again: quitting now (logs drained, "
                                  "no new checkpoint)\n";
        if (signal_logger)
            brisk_logger_close_from_signal(signal_logger, 5000);
        if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
            /* nothing more can be done in a handler */
        }
        _exit(EXIT_INTERRUPTED);
    }
    stop_signal = sig;
    static const char msg[] = "\nbrisk-train: interrupted: finishing the step, then writing a "
                              "checkpoint and the logs (Ctrl-C again quits at once)\n";
    static const char msg_eval[] = "\nbrisk-train: interrupted during the final test "
                                   "evaluation: training is complete; finishing the "
                                   "evaluation, then the last checkpoint (Ctrl-C again quits "
                                   "at once)\n";
    const int eval = final_evaluation;
    if (write(STDERR_FILENO, eval ? msg_eval : msg, (eval ? sizeof msg_eval : sizeof msg) - 1) <
        0) {
        /* nothing more can be done in a handler */
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Everything one training process holds. */
typedef struct run {
    options o;
    brisk_dataset train, test;
    int32_t *order;          /* split: n_train training indices, then the validation ones */
    int32_t *epoch_idx;      /* this epoch's shuffle of the training indices */
    int32_t *test_idx;
    int64_t n_train, n_val, steps_per_epoch;
    brisk_trainer *t;
    brisk_trainer_config cfg; /* what the trainer was made with (defaults resolved) */
    brisk_tb tb;
    int logging;             /* this process writes the TensorBoard logs (rank 0) */
    int log_enabled;         /* the job logs (--logdir is not none): the same on every rank */
    brisk_comm *comm;        /* the job's processes; rank 0 prints, logs and saves */
    int rank, nproc;
    char *config_json;       /* options_to_json, stored in checkpoints */
    char last_ckpt[PATH_MAX];
    int progress;            /* live progress line on a terminal */
    double t_start, t_progress; /* when training started; the last progress line */
    double log_cpu_seconds;  /* the logging thread's CPU time, once closed */
    int summary_only;        /* --summary: setup printed the table; nothing else to do */
} run;

static int fail(const char *what)
{
    fprintf(stderr, "brisk-train: %s%s%s\n", what ? what : "", what ? ": " : "",
            brisk_error_detail());
    return 1;
}

static void progress_line(const run *r, int epoch, int64_t batch, double sps, double loss,
                          double eta)
{
    printf("\r\033[Kepoch %d/%d %3.0f%%  %.0f samples/s  loss %.4f  ETA %.0fs", epoch, r->o.epochs,
           100.0 * (double)batch / (double)r->steps_per_epoch, sps, loss, eta);
    fflush(stdout);
}

/* Data, split, normalisation and the trainer, the same way for training, resuming and --eval. */
/* The model's table of layers (brisk_model_summary) and the memory the run will take. */
static void print_summary(const brisk_trainer_config *cfg)
{
    brisk_model *m;
    if (brisk_model_create(&cfg->model, &m) < 0)
        usage_error("--model", "%s", model_error());
    const int len = brisk_model_summary(m, NULL, 0);
    char *buf = malloc((size_t)len + 1);
    if (buf) {
        brisk_model_summary(m, buf, (size_t)len + 1);
        fputs(buf, stdout);
        free(buf);
    }
    brisk_model_destroy(m);
    const size_t mem = brisk_trainer_memory_bytes(cfg);
    int micro = cfg->micro_batch > 0 ? cfg->micro_batch : BRISK_DEFAULT_MICRO_BATCH;
    micro = micro < cfg->batch ? micro : cfg->batch;
    if (mem)
        printf("memory: about %.0f MiB with %d threads, batch %d, micro-batch %d\n",
               (double)mem / (1 << 20), cfg->threads > 0 ? cfg->threads : brisk_cpu_count(),
               cfg->batch, micro);
}

static int setup(run *r)
{
    options *o = &r->o;
    /* The shape synthetic data takes: the shorthand's input width, else 28 x 28 images. */
    brisk_shape syn = brisk_shape_img(1, 28, 28);
    if (is_shorthand(o->model))
        syn = model_config(o, brisk_shape_vec(1)).input;
    int syn_outputs = 0;
    if (!strcmp(o->data, "synthetic")) {
        const brisk_model_config mc = model_config(o, syn);
        syn_outputs = model_outputs(&mc);
    }
    if (load_data(o, syn, syn_outputs, &r->train, &r->test) < 0)
        return 1;
    if (brisk_split(r->train.n, o->val_split, o->seed, &r->order, &r->n_train) < 0)
        return fail(NULL);
    r->n_val = r->train.n - r->n_train;
    r->steps_per_epoch = (r->n_train + o->batch - 1) / o->batch;
    brisk_trainer_config cfg = make_config(o, &r->train, r->steps_per_epoch);
    /* The test labels must fit the model's outputs too, checked now rather than when the test
     * set is first evaluated, after all the training (make_config checked the training
     * labels against --model: a usage error). */
    char labels[PATH_MAX];
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte", o->data);
    if (access(labels, F_OK) != 0)
        strncat(labels, ".gz", sizeof labels - strlen(labels) - 1);
    if (brisk_dataset_check_labels(&r->test, model_outputs(&cfg.model), labels) < 0)
        return fail(NULL);
    cfg.comm = r->comm;
    r->cfg = cfg;
    /* Processes on one machine share its cores: by default each takes its part. */
    if (cfg.threads <= 0 && brisk_comm_local_size(r->comm) > 1) {
        cfg.threads = brisk_cpu_count() / brisk_comm_local_size(r->comm);
        cfg.threads = cfg.threads > 0 ? cfg.threads : 1;
    }
    if (o->summary) {
        print_summary(&cfg);
        r->summary_only = 1;
        return 0;
    }
    if (brisk_trainer_create(&cfg, &r->t) < 0)
        return fail(NULL);
    const int shards = brisk_trainer_num_shards(r->t, o->batch);
    if (shards < r->nproc && r->rank == 0)
        fprintf(stderr, "brisk-train: warning: a batch of %d is %d micro-shard%s of %d, fewer "
                "than the %d processes: %d of them will have no work; give --micro-batch %d or "
                "less (the micro-batch, not the number of processes, decides the results)\n",
                o->batch, shards, shards == 1 ? "" : "s", brisk_trainer_micro_batch(r->t),
                r->nproc, r->nproc - shards, o->batch / r->nproc > 0 ? o->batch / r->nproc : 1);
    r->test_idx = malloc((size_t)r->test.n * sizeof *r->test_idx);
    r->epoch_idx = malloc((size_t)(r->n_train ? r->n_train : 1) * sizeof *r->epoch_idx);
    if (!r->test_idx || !r->epoch_idx) {
        fprintf(stderr, "brisk-train: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < r->test.n; i++)
        r->test_idx[i] = (int32_t)i;
    /* Inputs normalised with the training samples' mean and standard deviation. */
    float mean, std;
    brisk_dataset_stats(&r->train, r->order, r->n_train, &mean, &std);
    if (brisk_trainer_set_norm(r->t, &mean, &std, 1) < 0)
        return fail(NULL);
    return 0;
}

static void teardown(run *r)
{
    free(r->test_idx);
    free(r->epoch_idx);
    free(r->order);
    free(r->config_json);
    brisk_trainer_destroy(r->t);
    brisk_dataset_free(&r->train);
    brisk_dataset_free(&r->test);
}

/* The position a checkpoint records must be one this run's settings can reach: its step is
 * the epochs and batches done, its partial metrics count those batches, its seed is the
 * run's. Returns 0, or 1 with a message (the file is damaged or was edited). */
static int check_position(const run *r, const brisk_checkpoint *ck, const char *path)
{
    const brisk_ckpt_position *p = &ck->pos;
    const int64_t want = p->epoch * r->steps_per_epoch + p->batch;
    const char *what = NULL;
    if (p->seed != r->o.seed)
        what = "its seed differs from the seed in its settings";
    else if (p->batch >= r->steps_per_epoch)
        what = "its batch is past the end of an epoch";
    else if (p->steps_done != want)
        what = "its step is not the epochs and batches done";
    else if (p->train.count != p->batch * r->o.batch)
        what = "its partial metrics do not count the batches done";
    if (!what)
        return 0;
    fprintf(stderr, "brisk-train: %s: the position in the checkpoint (epoch %lld, batch %lld, "
                    "step %lld, seed %llu) does not fit its settings (%lld batches of %d per "
                    "epoch, seed %llu): %s; the file is damaged or was edited\n",
            path, (long long)p->epoch, (long long)p->batch, (long long)p->steps_done,
            (unsigned long long)p->seed, (long long)r->steps_per_epoch, r->o.batch,
            (unsigned long long)r->o.seed, what);
    return 1;
}

/* Copies a checkpoint's state into the trainer; refuses one of another model. */
static int restore(run *r, const brisk_checkpoint *ck, const char *path)
{
    const brisk_model *m = brisk_trainer_model(r->t);
    const brisk_model_config *mc = brisk_model_get_config(m);
    char want[BRISK_MODEL_SPEC_MAX], have[BRISK_MODEL_SPEC_MAX];
    brisk_model_describe(m, want, sizeof want);
    brisk_model_describe(ck->layout, have, sizeof have);
    if (strcmp(want, have) || ck->model.loss != mc->loss ||
        brisk_shape_size(ck->model.input) != brisk_shape_size(mc->input)) {
        fprintf(stderr, "brisk-train: %s holds another model (%s, loss %s) than --model %s "
                        "--act %s --loss %s (%s)\n",
                path, have, brisk_loss_name(ck->model.loss), r->o.model, r->o.act, r->o.loss,
                want);
        return 1;
    }
    brisk_trainer_load_state(r->t, ck->params, ck->opt_m, ck->opt_v, ck->buffers,
                             ck->pos.steps_done);
    return 0;
}

/* The text summary: every setting and the build, as a Markdown table. */
static void log_config_text(run *r, int64_t step)
{
    char text[8192], plan[256];
    size_t at = 0;
    brisk_trainer_describe_plan(r->t, r->o.batch, plan, sizeof plan);
    at += (size_t)snprintf(text + at, sizeof text - at,
                           "| setting | value |\n|---|---|\n| brisk | %s |\n| threads | %d |\n"
                           "| micro-batch | %d |\n| a batch | %s |\n| matrix kernel | %s |\n"
                           "| parameters | %zu |\n",
                           BRISK_VERSION, brisk_trainer_threads(r->t),
                           brisk_trainer_micro_batch(r->t), plan, brisk_gemm_isa(),
                           brisk_model_num_params(brisk_trainer_model(r->t)));
    for (size_t i = 0; i < N_FIELDS && at < sizeof text; i++) {
        const field *f = &fields[i];
        const void *p = field_ptr(&r->o, f);
        char v[PATH_MAX];
        switch (f->type) {
        case F_STR: snprintf(v, sizeof v, "%s", *(const char *const *)p); break;
        case F_DBL: snprintf(v, sizeof v, "%g", *(const double *)p); break;
        case F_INT: snprintf(v, sizeof v, "%d", *(const int *)p); break;
        case F_LL: snprintf(v, sizeof v, "%lld", *(const long long *)p); break;
        case F_ULL: snprintf(v, sizeof v, "%llu", *(const unsigned long long *)p); break;
        }
        at += (size_t)snprintf(text + at, sizeof text - at, "| --%s | %s |\n", f->name, v);
    }
    brisk_log_text(r->tb.p, r->tb.train, "config", step, text);
}

static void log_hparams_start(run *r)
{
    const options *o = &r->o;
    const brisk_hparam hp[] = {
        {.name = "model", .type = BRISK_HPARAM_STRING, .string = o->model},
        {.name = "act", .type = BRISK_HPARAM_STRING, .string = o->act},
        {.name = "optimizer", .type = BRISK_HPARAM_STRING, .string = o->optimizer},
        {.name = "schedule", .type = BRISK_HPARAM_STRING, .string = o->schedule},
        {.name = "lr", .type = BRISK_HPARAM_NUMBER, .number = o->lr},
        {.name = "batch", .type = BRISK_HPARAM_NUMBER, .number = o->batch},
        {.name = "micro_batch", .type = BRISK_HPARAM_NUMBER,
         .number = brisk_trainer_micro_batch(r->t)},
        {.name = "epochs", .type = BRISK_HPARAM_NUMBER, .number = o->epochs},
        {.name = "weight_decay", .type = BRISK_HPARAM_NUMBER,
         .number = r->cfg.optim.weight_decay},
        {.name = "clip_norm", .type = BRISK_HPARAM_NUMBER, .number = o->clip_norm},
        {.name = "seed", .type = BRISK_HPARAM_NUMBER, .number = (double)o->seed},
    };
    const brisk_metric metrics[] = {{"validation", "epoch_accuracy"},
                                    {"validation", "epoch_loss"},
                                    {"validation", "test_accuracy"},
                                    {"validation", "test_loss"}};
    brisk_log_hparams(r->tb.p, r->tb.root, hp, sizeof hp / sizeof hp[0], metrics,
                      sizeof metrics / sizeof metrics[0]);
    const char *loss[] = {"^epoch_loss$"}, *acc[] = {"^epoch_accuracy$"};
    const brisk_chart charts[] = {{"loss: train and validation", loss, 1},
                                  {"accuracy: train and validation", acc, 1}};
    brisk_log_custom_scalars(r->tb.p, r->tb.root, "Brisk", charts, 2);
}

/* Writes outputs (n, C) to path: NumPy .npy (float32, C order) when it ends in .npy, CSV
 * otherwise. Through a temporary file renamed over path (brisk/fsutil.h): never a partial
 * file, and nothing but a regular file replaced. */
static int write_outputs(const char *path, const float *v, int64_t n, int C, brisk_loss loss)
{
    const size_t len = strlen(path);
    if (len > 4 && !strcmp(path + len - 4, ".npy")) {
        if (brisk_npy_write(path, v, n, C) < 0) {
            fprintf(stderr, "brisk-train: --out: %s\n", brisk_error_detail());
            return 1;
        }
        return 0;
    }
    brisk_outfile f;
    if (brisk_outfile_open(&f, path) < 0) {
        fprintf(stderr, "brisk-train: --out: %s\n", brisk_error_detail());
        return 1;
    }
    int ok = 1;
    const char *name = loss == BRISK_LOSS_MSE ? "output" : "p";
    for (int c = 0; ok && c < C; c++)
        ok = fprintf(f.fp, "%s%s%d", c ? "," : "", name, c) > 0;
    ok = ok && fputc('\n', f.fp) != EOF;
    for (int64_t i = 0; ok && i < n; i++) {
        for (int c = 0; ok && c < C; c++)
            ok = fprintf(f.fp, "%s%.9g", c ? "," : "", (double)v[i * C + c]) > 0;
        ok = ok && fputc('\n', f.fp) != EOF;
    }
    if (!ok) {
        fprintf(stderr, "brisk-train: --out %s: cannot write: %s\n", path, strerror(errno));
        brisk_outfile_abort(&f);
        return 1;
    }
    if (brisk_outfile_commit(&f) < 0) {
        fprintf(stderr, "brisk-train: --out: %s\n", brisk_error_detail());
        return 1;
    }
    return 0;
}

/* --predict FILE --input DATA: the checkpoint's model on new samples (no labels), from the
 * checkpoint alone: its model line, weights and normalisation. */
static int predict_input(const options *o, brisk_comm *comm)
{
    brisk_checkpoint *ck = NULL;
    brisk_dataset ds;
    brisk_trainer *t = NULL;
    float *v = NULL;
    int32_t *idx = NULL;
    int status = 1;
    memset(&ds, 0, sizeof ds);
    if (brisk_checkpoint_load(o->predict, &ck) < 0 || brisk_dataset_load_features(o->input, &ds) < 0) {
        status = fail(NULL);
        goto out;
    }
    const size_t D = brisk_shape_size(ck->model.input);
    if ((size_t)ds.d != D) {
        fprintf(stderr, "brisk-train: --input %s: %d features per sample, but the model of %s "
                        "takes %zu\n", o->input, ds.d, o->predict, D);
        goto out;
    }
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    c.model = ck->model;
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 1e-3f;
    c.batch = 256;
    c.threads = o->threads;
    c.seed = ck->pos.seed;
    c.comm = comm;
    if (brisk_trainer_create(&c, &t) < 0) {
        status = fail(NULL);
        goto out;
    }
    brisk_trainer_load_state(t, ck->params, ck->opt_m, ck->opt_v, ck->buffers,
                             ck->pos.steps_done);
    if (brisk_trainer_set_norm(t, ck->pos.norm_mean, ck->pos.norm_std, ck->pos.norm_count) < 0) {
        status = fail(NULL);
        goto out;
    }
    if (!ck->pos.norm_count && !o->quiet) {
        fprintf(stderr, "brisk-train: warning: %s records no input normalisation; the samples "
                        "go in as they are\n", o->predict);
    }
    const int C = brisk_model_outputs(brisk_trainer_model(t));
    v = malloc(sizeof *v * (size_t)ds.n * (size_t)C);
    idx = malloc(sizeof *idx * (size_t)ds.n);
    if (!v || !idx) {
        fprintf(stderr, "brisk-train: out of memory for %lld predictions\n", (long long)ds.n);
        goto out;
    }
    for (int32_t i = 0; i < ds.n; i++)
        idx[i] = i;
    if (brisk_trainer_predict(t, &ds, idx, ds.n, v, NULL) < 0) {
        char what[PATH_MAX + 16];
        snprintf(what, sizeof what, "--input %s", o->input);
        status = fail(what);
        goto out;
    }
    status = 0;
    if (brisk_comm_rank(comm) == 0) {
        status = write_outputs(o->out, v, ds.n, C, ck->model.loss);
        if (!status && !o->quiet)
            printf("%s: %lld predictions of %d output%s for %s written to %s\n", o->predict,
                   (long long)ds.n, C, C == 1 ? "" : "s", o->input, o->out);
    }
out:
    free(v);
    free(idx);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    brisk_checkpoint_free(ck);
    return status;
}

/* --eval FILE and --predict FILE: the checkpoint's model on the test set. */
static int evaluate_checkpoint(options *o, brisk_comm *comm)
{
    brisk_checkpoint *ck;
    const char *file = o->predict ? o->predict : o->eval;
    if (brisk_checkpoint_load(file, &ck) < 0)
        return fail(NULL);
    cJSON *json = ck->config ? cJSON_Parse(ck->config) : NULL;
    if (!json) {
        fprintf(stderr, "brisk-train: %s: no readable brisk.config in the metadata: not written "
                        "by brisk-train\n",
                file);
        brisk_checkpoint_free(ck);
        return 1;
    }
    const char *eval = file;
    o->resume_set = 1; /* the same rules as a resume: only some flags may change */
    apply_checkpoint_config(o, json, eval);
    run r;
    memset(&r, 0, sizeof r);
    r.o = *o;
    r.comm = comm;
    r.rank = brisk_comm_rank(comm);
    r.nproc = brisk_comm_size(comm);
    int status = setup(&r);
    if (!status && r.summary_only) {
        teardown(&r);
        cJSON_Delete(json);
        brisk_checkpoint_free(ck);
        return 0;
    }
    /* No check_position: the data may be another set than the one trained on (evaluating
     * and predicting on new data is the point), so its batches say nothing of the
     * checkpoint's position. */
    status = status || restore(&r, ck, eval);
    /* The normalisation training used, where the checkpoint records it. */
    if (!status && ck->pos.norm_count &&
        brisk_trainer_set_norm(r.t, ck->pos.norm_mean, ck->pos.norm_std, ck->pos.norm_count) < 0)
        status = fail(eval);
    brisk_metrics m;
    if (!status && o->predict) {
        const int C = brisk_model_outputs(brisk_trainer_model(r.t));
        float *v = malloc(sizeof *v * (size_t)(r.test.n ? r.test.n : 1) * (size_t)C);
        if (!v) {
            fprintf(stderr, "brisk-train: out of memory for %lld predictions\n",
                    (long long)r.test.n);
            status = 1;
        } else if (brisk_trainer_predict(r.t, &r.test, r.test_idx, r.test.n, v,
                                         &m) < 0) {
            status = fail(NULL);
        } else if (r.rank == 0) {
            status = write_outputs(o->out, v, r.test.n, C, ck->model.loss);
            if (!status && !o->quiet)
                printf("%s: %lld predictions of %d output%s written to %s (accuracy against the "
                       "labels %.2f%%)\n",
                       file, (long long)r.test.n, C, C == 1 ? "" : "s", o->out,
                       100 * brisk_metrics_accuracy(&m));
        }
        free(v);
        teardown(&r);
        cJSON_Delete(json);
        brisk_checkpoint_free(ck);
        return status;
    }
    if (!status && brisk_trainer_evaluate(r.t, &r.test, r.test_idx, r.test.n, &m) < 0)
        status = fail(NULL);
    if (!status) {
        const unsigned long long sum = (unsigned long long)brisk_model_checksum(brisk_trainer_model(r.t), brisk_trainer_params(r.t));
        if (o->json)
            printf("{\"checkpoint\": \"%s\", \"epoch\": %lld, \"step\": %lld, \"test_loss\": %.6f, "
                   "\"test_accuracy\": %.6f, \"params_checksum\": \"%016llx\"}\n",
                   eval, (long long)ck->pos.epoch, (long long)ck->pos.steps_done,
                   brisk_metrics_loss(&m), brisk_metrics_accuracy(&m), sum);
        else
            printf("%s (epoch %lld, step %lld): test loss %.4f acc %6.2f%% on %lld samples "
                   "(weights checksum %016llx)\n",
                   eval, (long long)ck->pos.epoch, (long long)ck->pos.steps_done,
                   brisk_metrics_loss(&m), 100 * brisk_metrics_accuracy(&m),
                   (long long)r.test.n, sum);
    }
    teardown(&r);
    cJSON_Delete(json);
    brisk_checkpoint_free(ck);
    return status;
}

/* Ends the logs: hparams session end (unless interrupted: the session goes on after a
 * resume), then flush and close. Returns 0, or 1 when the logs could not all be written
 * (a full disk: with report, a message names the file and the last step it keeps). */
static int close_logs(run *r, int session_status, int report)
{
    if (!r->logging)
        return 0;
    if (session_status)
        brisk_log_hparams_end(r->tb.p, r->tb.root, (brisk_session_status)session_status);
    signal_logger = NULL;
    if (r->tb.failed)
        fprintf(stderr, "brisk-train: warning: %s\n", r->tb.error);
    r->logging = 0;
    if (brisk_tb_close(&r->tb, &r->log_cpu_seconds) < 0) {
        if (report)
            fprintf(stderr, "brisk-train: error: the TensorBoard logs are incomplete: %s\n",
                    brisk_error_detail());
        return 1;
    }
    return 0;
}

/* brisk_fit's callbacks: the live progress line, and a line (or a JSON object) per epoch. */
static int on_step(void *user, const brisk_fit_progress *p)
{
    run *r = user;
    if (r->progress) {
        const double now = brisk_now_seconds();
        if (now - r->t_progress >= 0.25) {
            const double rate = p->samples_per_second / r->o.batch; /* batches per second */
            progress_line(r, (int)p->epoch, p->batch, p->samples_per_second,
                          brisk_metrics_loss(&p->train),
                          rate > 0 ? (double)(p->batches - p->batch) / rate : 0);
            r->t_progress = now;
        }
    }
    return 0;
}

static int on_epoch(void *user, const brisk_fit_progress *p)
{
    run *r = user;
    const options *o = &r->o;
    const double elapsed = brisk_now_seconds() - r->t_start;
    if (p->checkpoint[0])
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", p->checkpoint);
    if (r->progress)
        printf("\r\033[K");
    if (o->json) {
        printf("{\"epoch\": %lld", (long long)p->epoch);
        print_json_metric("train", &p->train, 1);
        print_json_metric("val", &p->val, r->n_val > 0);
        if (o->plateau)
            printf(", \"lr_factor\": %.9g", (double)p->lr_factor);
        printf(", \"samples_per_second\": %.1f, \"elapsed_seconds\": %.3f}\n",
               p->samples_per_second, elapsed);
    } else if (!o->quiet) {
        printf("epoch %*lld/%d  train loss %.4f acc %6.2f%%", (int)log10(o->epochs) + 1,
               (long long)p->epoch, o->epochs, brisk_metrics_loss(&p->train),
               100 * brisk_metrics_accuracy(&p->train));
        if (r->n_val)
            printf("  val loss %.4f acc %6.2f%%", brisk_metrics_loss(&p->val),
                   100 * brisk_metrics_accuracy(&p->val));
        printf("  %.0f samples/s  %.1f s", p->samples_per_second, elapsed);
        if (o->plateau && p->lr_factor < 1)
            printf("  lr x%g", (double)p->lr_factor);
        printf("%s\n", p->improved && (o->keep_best || o->early_stop) ? "  *" : "");
    }
    fflush(stdout);
    return 0;
}

static void on_test(void *user, const brisk_fit_progress *p)
{
    (void)user;
    (void)p;
    final_evaluation = 1;
}

static int train(run *r, const brisk_checkpoint *ck)
{
    options *o = &r->o;
    if (!o->json && !o->quiet) {
        char procs[32] = "";
        if (r->nproc > 1)
            snprintf(procs, sizeof procs, "%d processes x ", r->nproc);
        print_summary(&r->cfg);
        char act[48] = "", wd[48] = "";
        if (is_shorthand(o->model))
            snprintf(act, sizeof act, ", %s", o->act);
        if (r->cfg.optim.weight_decay != 0.0f)
            snprintf(wd, sizeof wd, " weight decay %g", (double)r->cfg.optim.weight_decay);
        printf("brisk-train: model %s (%zu parameters)%s, %s lr %g%s, batch %d (micro-batch "
               "%d), %s%d threads; data %s: %lld train, %lld validation, %lld test samples; "
               "%s kernels\n",
               o->model, brisk_model_num_params(brisk_trainer_model(r->t)), act, o->optimizer,
               o->lr, wd, o->batch, brisk_trainer_micro_batch(r->t), procs,
               brisk_trainer_threads(r->t), o->data, (long long)r->n_train, (long long)r->n_val,
               (long long)r->test.n, brisk_gemm_isa());
        char plan[256];
        brisk_trainer_describe_plan(r->t, o->batch, plan, sizeof plan);
        printf("brisk-train: each batch: %s\n", plan);
        if (ck)
            printf("brisk-train: resuming at epoch %lld, step %lld\n",
                   (long long)ck->pos.epoch + 1, (long long)brisk_trainer_steps_done(r->t));
        if (r->logging)
            printf("brisk-train: TensorBoard logs in %s (tensorboard --logdir %s)\n", o->logdir,
                   o->logdir);
        fflush(stdout);
    }
    r->t_start = brisk_now_seconds();
    brisk_fit_config fc = brisk_fit_defaults();
    fc.epochs = o->epochs;
    fc.seed = o->seed;
    if (ck)
        fc.start = ck->pos;
    fc.tb = r->logging ? &r->tb : NULL;
    fc.log_every = o->log_every;
    fc.histogram_every = r->log_enabled ? o->histogram_every : 0;
    fc.checkpoint_dir = strcmp(o->checkpoint_dir, "none") ? o->checkpoint_dir : NULL;
    fc.run_id = o->run;
    fc.keep = o->keep;
    fc.config_json = r->config_json;
    fc.stop = &stop_signal;
    fc.user = r;
    fc.on_step = on_step;
    fc.on_epoch = on_epoch;
    fc.on_test = on_test;
    fc.test = &r->test;
    fc.test_idx = r->test_idx;
    fc.n_test = r->test.n;
    const int metric = brisk_fit_metric_parse(o->monitor);
    fc.early_stop = (brisk_fit_policy){o->early_stop, o->min_delta, (brisk_fit_metric)metric};
    fc.best_checkpoint = (brisk_fit_policy){o->keep_best, o->min_delta, (brisk_fit_metric)metric};
    fc.plateau = (brisk_fit_policy){o->plateau, o->min_delta, (brisk_fit_metric)metric};
    fc.plateau_factor = (float)o->plateau_factor;
    fc.plateau_min_lr = (float)o->plateau_min_lr;
    brisk_fit_result res;
    const int err = brisk_fit(r->t, &r->train, r->order, r->n_train, r->order + r->n_train,
                              r->n_val, &fc, &res);
    if (res.checkpoint[0])
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", res.checkpoint);
    if (res.warning[0] && r->rank == 0)
        fprintf(stderr, "brisk-train: warning: %s\n", res.warning);
    if (r->progress && (err < 0 || res.end == BRISK_FIT_STOPPED))
        printf("\n");
    if (err == BRISK_ENONFINITE) {
        fprintf(stderr, "brisk-train: training diverged in epoch %lld: %s\n",
                (long long)res.epochs_done + 1, brisk_error_detail());
        if (r->last_ckpt[0])
            fprintf(stderr, "brisk-train: the last good checkpoint is %s\n", r->last_ckpt);
        else
            fprintf(stderr, "brisk-train: no checkpoint was written before (the first "
                            "comes at the end of epoch 1)\n");
        fprintf(stderr, "brisk-train: try a lower --lr or --clip-norm\n");
        close_logs(r, BRISK_SESSION_FAILURE, 0);
        return EXIT_DIVERGED;
    }
    if (err < 0) {
        fail(NULL);
        if (r->rank == 0 && r->last_ckpt[0])
            fprintf(stderr, "brisk-train: the last checkpoint is %s; once the cause is fixed, "
                            "resume with: brisk-train --resume=%s\n", r->last_ckpt,
                    r->last_ckpt);
        close_logs(r, BRISK_SESSION_FAILURE, 0);
        return 1;
    }
    if (res.end == BRISK_FIT_STOPPED && stop_signal) {
        close_logs(r, 0, 1);
        const long long epoch = (long long)res.epochs_done + (res.batch ? 1 : 0);
        if (r->rank != 0) {
            /* rank 0 reports */
        } else if (fc.checkpoint_dir && r->last_ckpt[0]) {
            fprintf(stderr, "brisk-train: stopped in epoch %lld after step %lld; checkpoint "
                            "%s\nbrisk-train: resume with: brisk-train --resume=%s\n",
                    epoch, (long long)brisk_trainer_steps_done(r->t), r->last_ckpt,
                    r->last_ckpt);
            if (o->json)
                printf("{\"interrupted\": true, \"epoch\": %lld, \"step\": %lld, "
                       "\"checkpoint\": \"%s\"}\n",
                       epoch, (long long)brisk_trainer_steps_done(r->t), r->last_ckpt);
        } else {
            fprintf(stderr, "brisk-train: stopped in epoch %lld after step %lld; no "
                            "checkpoint (--checkpoint-dir none)\n",
                    epoch, (long long)brisk_trainer_steps_done(r->t));
        }
        return EXIT_INTERRUPTED;
    }
    if (res.end == BRISK_FIT_EARLY_STOP && r->rank == 0 && !o->quiet && !o->json)
        printf("brisk-train: early stop after epoch %lld: %s has not improved by more than %g "
               "for %d epoch%s\n",
               (long long)res.epochs_done, o->monitor, o->min_delta, o->early_stop,
               o->early_stop == 1 ? "" : "s");
    if (res.best_checkpoint[0] && r->rank == 0 && !o->quiet && !o->json)
        printf("brisk-train: the best epoch's checkpoint (by %s) is %s\n", o->monitor,
               res.best_checkpoint);

    /* brisk_fit evaluated and logged the test set before the last checkpoint; a resumed run
     * that had already finished trains nothing: its metrics are only printed again. */
    brisk_metrics test_m = res.test;
    if (!res.tested) {
        final_evaluation = 1;
        if (brisk_trainer_evaluate(r->t, &r->test, r->test_idx, r->test.n, &test_m) < 0) {
            fail(NULL);
            close_logs(r, BRISK_SESSION_FAILURE, 0);
            return 1;
        }
    }
    const int logs_failed = close_logs(r, BRISK_SESSION_SUCCESS, 1);
    const double elapsed = brisk_now_seconds() - r->t_start;
    const unsigned long long sum = (unsigned long long)brisk_model_checksum(brisk_trainer_model(r->t), brisk_trainer_params(r->t));
    if (o->json)
        printf("{\"test_loss\": %.6f, \"test_accuracy\": %.6f, \"params_checksum\": "
               "\"%016llx\", \"elapsed_seconds\": %.3f, \"gemm_kernel\": \"%s\", "
               "\"logging_cpu_seconds\": %.3f%s}\n",
               brisk_metrics_loss(&test_m), brisk_metrics_accuracy(&test_m), sum, elapsed,
               brisk_gemm_isa(), r->log_cpu_seconds,
               res.end == BRISK_FIT_EARLY_STOP ? ", \"early_stop\": true" : "");
    else
        printf("test  loss %.4f acc %6.2f%%  (%lld epoch%s, %.1f s; weights checksum %016llx)\n",
               brisk_metrics_loss(&test_m), 100 * brisk_metrics_accuracy(&test_m),
               (long long)res.epochs_done, res.epochs_done == 1 ? "" : "s", elapsed, sum);
    if (stop_signal && r->rank == 0) {
        fflush(stdout);
        fprintf(stderr, "brisk-train: interrupted after training finished; the test metrics are "
                        "above%s%s\n", r->last_ckpt[0] ? " and the trained model is in " : "",
                r->last_ckpt);
    }
    return logs_failed ? 1 : stop_signal ? EXIT_INTERRUPTED : 0;
}

static int run_main(int argc, char **argv, brisk_comm *comm);

int main(int argc, char **argv)
{
    brisk_comm *comm;
    if (brisk_comm_init(&argc, &argv, &comm) < 0)
        return fail(NULL);
    /* Rank 0 speaks for the job; the others print errors only. */
    if (brisk_comm_rank(comm) != 0 && !freopen("/dev/null", "w", stdout))
        return fail("cannot silence stdout");
    const int status = run_main(argc, argv, comm);
    /* A rank that fails alone (a file error) would leave the others waiting in a collective:
     * end them all. Usage errors, divergence and interrupts happen on every rank alike. */
    if (status != 0 && status != EXIT_USAGE && status != EXIT_DIVERGED &&
        status != EXIT_INTERRUPTED && brisk_comm_size(comm) > 1)
        brisk_comm_abort(comm, status);
    brisk_comm_finalize(comm);
    return status;
}

static int run_main(int argc, char **argv, brisk_comm *comm)
{
    options o;
    parse_args(argc, argv, &o);
    brisk_comm_set_timeout(comm, o.mpi_timeout);
    if (o.predict && o.input)
        return predict_input(&o, comm);
    if (o.eval || o.predict)
        return evaluate_checkpoint(&o, comm);

    brisk_checkpoint *ck = NULL;
    cJSON *ck_json = NULL;
    char *ck_path = NULL;
    if (o.resume_set) {
        if (!(ck_path = resume_path(&o)))
            return 1;
        if (brisk_checkpoint_load(ck_path, &ck) < 0) {
            free(ck_path);
            return fail(NULL);
        }
        if (!ck->config || !(ck_json = cJSON_Parse(ck->config))) {
            fprintf(stderr, "brisk-train: %s: no readable brisk.config in the metadata: not "
                            "written by brisk-train\n",
                    ck_path);
            brisk_checkpoint_free(ck);
            free(ck_path);
            return 1;
        }
        apply_checkpoint_config(&o, ck_json, ck_path);
    }
    /* A new run gets its id (a resumed one keeps its own): logs/<model>-<run>, checkpoints
     * inside it, by default. Every rank must agree on it: rank 0's is broadcast. */
    char run_id[BRISK_RUN_ID_MAX], logdir[PATH_MAX], ckdir[PATH_MAX];
    if (!o.run) {
        brisk_run_id(run_id);
        brisk_comm_bcast_bytes(comm, run_id, sizeof run_id);
        o.run = run_id;
    }
    if (!o.logdir) {
        char slug[64];
        model_slug(o.model, slug, sizeof slug);
        snprintf(logdir, sizeof logdir, "logs/%s-%s", slug, o.run);
        o.logdir = logdir;
    }
    if (!o.checkpoint_dir) {
        if (!strcmp(o.logdir, "none"))
            o.checkpoint_dir = "none";
        else {
            snprintf(ckdir, sizeof ckdir, "%s/checkpoints", o.logdir);
            o.checkpoint_dir = ckdir;
        }
    }

    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.comm = comm;
    r.rank = brisk_comm_rank(comm);
    r.nproc = brisk_comm_size(comm);
    r.log_enabled = strcmp(o.logdir, "none") != 0;
    /* One live writer per run, before anything is allocated: the log directory's lock and
     * claim, and the run's lock in a checkpoint directory of its own choosing (one shared
     * by several runs holds a lock per run). */
    brisk_lock *locks[2] = {NULL, NULL};
    int status = 0;
    if (r.rank == 0 && !o.summary) {
        char path[PATH_MAX];
        if (r.log_enabled) {
            snprintf(path, sizeof path, "%s/brisk.lock", o.logdir);
            status = take_lock("--logdir", o.logdir, path, &locks[0]) ||
                     claim_logdir(o.logdir, o.run);
            /* A process killed in the middle of a write left a torn record: cut it (said). */
            if (!status && ck && brisk_log_repair(o.logdir, log_warning, NULL) < 0)
                status = fail("--logdir");
        }
        char inside[PATH_MAX];
        snprintf(inside, sizeof inside, "%s/checkpoints", o.logdir);
        if (!status && strcmp(o.checkpoint_dir, "none") && strcmp(o.checkpoint_dir, inside)) {
            snprintf(path, sizeof path, "%s/ckpt-%s.lock", o.checkpoint_dir, o.run);
            status = take_lock("--checkpoint-dir", o.checkpoint_dir, path, &locks[1]);
        }
    }
    if (!status)
        status = setup(&r);
    if (!status && r.summary_only) {
        teardown(&r);
        cJSON_Delete(ck_json);
        brisk_checkpoint_free(ck);
        free(ck_path);
        return 0;
    }
    if (!status && ck)
        status = check_position(&r, ck, ck_path) || restore(&r, ck, ck_path);
    if (!status && ck && ck->pos.epoch >= r.o.epochs && ck->pos.batch == 0 && !r.o.quiet &&
        !r.o.json)
        printf("brisk-train: %s already finished %lld epochs; pass --epochs N to train "
               "further\n",
               ck_path, (long long)ck->pos.epoch);
    if (!status && !(r.config_json = options_to_json(&r.o))) {
        fprintf(stderr, "brisk-train: out of memory\n");
        status = 1;
    }
    if (!status && r.rank == 0 && strcmp(r.o.checkpoint_dir, "none"))
        brisk_ckpt_clean_temps(r.o.checkpoint_dir);
    if (!status && r.log_enabled && r.rank == 0) {
        /* START at the first step this process logs: everything at a later step in earlier
         * files (an abandoned timeline, after a resume from an older checkpoint) is purged. */
        const int64_t first_step = brisk_trainer_steps_done(r.t) + 1;
        if (brisk_tb_open(&r.tb, r.o.logdir, first_step, brisk_tb_ring_bytes(r.t)) < 0) {
            status = fail("cannot open the TensorBoard logs");
        } else {
            r.logging = 1;
            signal_logger = r.tb.lg;
            log_config_text(&r, first_step);
            if (!ck)
                log_hparams_start(&r);
        }
    }
    if (!status) {
        /* Under mpirun stdout is a pseudo-terminal even when it goes to a file: no progress
         * line there. */
        r.progress = isatty(STDOUT_FILENO) && !r.o.json && !r.o.quiet &&
                     !brisk_comm_launched(comm);
        install_signals();
        status = train(&r, ck);
    }
    close_logs(&r, 0, 1);
    teardown(&r);
    brisk_lock_release(locks[0]);
    brisk_lock_release(locks[1]);
    cJSON_Delete(ck_json);
    brisk_checkpoint_free(ck);
    free(ck_path);
    return status;
}
