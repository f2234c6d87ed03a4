/* brisk-train: train a multilayer perceptron on Fashion-MNIST (or any IDX data set, or a
 * synthetic task) and report per-epoch train/validation metrics and the final test metrics.
 */
#define _GNU_SOURCE
#include "brisk/blas.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/model.h"
#include "brisk/optim.h"
#include "brisk/pool.h"
#include "brisk/trainer.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define EXIT_USAGE 2
#define EXIT_DIVERGED 3

typedef struct options {
    const char *model, *act, *loss, *optimizer, *schedule, *init, *data;
    double lr, weight_decay, clip_norm, val_split, gamma, min_lr, momentum, noise;
    int weight_decay_set;
    int epochs, batch, micro_batch, threads, step_size, json;
    long long warmup, synthetic_n, synthetic_test_n;
    unsigned long long seed;
} options;

static const options defaults = {
    .model = "784-256-128-10", .act = "relu", .loss = "ce", .optimizer = "adam",
    .schedule = "cosine", .init = "auto", .data = DEFAULT_DATA,
    .lr = 1e-3, .weight_decay = 0.0, .clip_norm = 0.0, .val_split = 0.1, .gamma = 0.5,
    .min_lr = 0.0, .momentum = 0.9, .noise = 80.0,
    .epochs = 10, .batch = 128, .micro_batch = BRISK_DEFAULT_MICRO_BATCH, .threads = 0,
    .step_size = 5,
    .warmup = 0, .synthetic_n = 20000, .synthetic_test_n = 5000, .seed = 42,
};

static void usage(FILE *f)
{
    const options *d = &defaults;
    fprintf(f,
"Usage: brisk-train [OPTION]...\n"
"Train a multilayer perceptron with Brisk and print train, validation and test metrics.\n"
"\n"
"Model:\n"
"  --model WIDTHS        layer widths, input first, joined by '-' (default %s)\n"
"  --act NAME            hidden activation: relu, gelu, tanh, sigmoid (default %s)\n"
"  --loss NAME           ce (softmax cross-entropy), bce (binary cross-entropy on logits,\n"
"                        one-hot targets), mse (mean squared error, one-hot targets)\n"
"                        (default %s)\n"
"  --init NAME           auto (He for relu/gelu, Glorot for tanh/sigmoid), he, glorot\n"
"                        (default %s)\n"
"Optimisation:\n"
"  --optimizer NAME      adam, adamw, sgd (SGD with momentum) (default %s)\n"
"  --lr RATE             base learning rate (default %g)\n"
"  --weight-decay W      L2 for adam and sgd, decoupled for adamw (default %g; 0.01 for\n"
"                        adamw)\n"
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
"  --epochs N            passes over the training set (default %d)\n"
"  --batch B             samples per optimizer step (default %d)\n"
"  --micro-batch M       samples per micro-shard; a batch of B is cut into ceil(B / M)\n"
"                        shards (default %d, or B if smaller); results depend on B and M,\n"
"                        never on --threads\n"
"  --threads T           worker threads (default: the CPUs this process may use, here %d)\n"
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
"Output:\n"
"  --json                one JSON object per epoch and one with the test metrics and a\n"
"                        checksum of the final weights, nothing else on stdout\n"
"  -h, --help            show this help and exit\n"
"\n"
"Exit status: 0 success, 1 error (data, memory), 2 usage error, 3 training diverged (a loss or\n"
"gradient became NaN or infinite).\n"
"OpenBLAS: if it picked a slower kernel than the CPU supports and OPENBLAS_CORETYPE is not\n"
"set, brisk-train re-runs itself once with OPENBLAS_CORETYPE set to the best one.\n",
        d->model, d->act, d->loss, d->init, d->optimizer, d->lr, d->weight_decay, d->momentum,
        d->clip_norm, d->schedule, d->step_size, d->gamma, d->warmup, d->min_lr, d->epochs,
        d->batch, d->micro_batch, brisk_cpu_count(), d->seed, d->data, d->val_split, d->synthetic_n,
        d->synthetic_test_n, d->noise);
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

/* FNV-1a over the parameter slab: equal checksums mean (for all practical purposes) bitwise
 * equal weights, which is how runs with different --threads are compared. */
static uint64_t params_checksum(brisk_trainer *t)
{
    const unsigned char *p = (const unsigned char *)brisk_trainer_params(t);
    const size_t n = brisk_model_slab_len(brisk_trainer_model(t)) * sizeof(float);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum {
    OPT_MODEL = 256, OPT_ACT, OPT_LOSS, OPT_INIT, OPT_OPTIMIZER, OPT_LR, OPT_WD, OPT_MOMENTUM,
    OPT_CLIP, OPT_SCHEDULE, OPT_STEP_SIZE, OPT_GAMMA, OPT_WARMUP, OPT_MIN_LR, OPT_EPOCHS,
    OPT_BATCH, OPT_MICRO, OPT_THREADS, OPT_SEED, OPT_DATA, OPT_VAL, OPT_SYN_N, OPT_SYN_TEST_N, OPT_NOISE,
    OPT_JSON
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
    {"json", no_argument, 0, OPT_JSON},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

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
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case OPT_MODEL: o->model = optarg; break;
        case OPT_ACT: o->act = optarg; break;
        case OPT_LOSS: o->loss = optarg; break;
        case OPT_INIT: o->init = optarg; break;
        case OPT_OPTIMIZER: o->optimizer = optarg; break;
        case OPT_LR: o->lr = parse_double(flag, optarg, 1e-12, 1e6); break;
        case OPT_WD:
            o->weight_decay = parse_double(flag, optarg, 0, 1e3);
            o->weight_decay_set = 1;
            break;
        case OPT_MOMENTUM: o->momentum = parse_double(flag, optarg, 0, 1); break;
        case OPT_CLIP: o->clip_norm = parse_double(flag, optarg, 0, 1e30); break;
        case OPT_SCHEDULE: o->schedule = optarg; break;
        case OPT_STEP_SIZE: o->step_size = (int)parse_int(flag, optarg, 1, 1000000); break;
        case OPT_GAMMA: o->gamma = parse_double(flag, optarg, 0, 1e3); break;
        case OPT_WARMUP: o->warmup = parse_int(flag, optarg, 0, 1000000000); break;
        case OPT_MIN_LR: o->min_lr = parse_double(flag, optarg, 0, 1e6); break;
        case OPT_EPOCHS: o->epochs = (int)parse_int(flag, optarg, 1, 1000000); break;
        case OPT_BATCH: o->batch = (int)parse_int(flag, optarg, 1, 1 << 20); break;
        case OPT_MICRO: o->micro_batch = (int)parse_int(flag, optarg, 1, 1 << 20); break;
        case OPT_THREADS: o->threads = (int)parse_int(flag, optarg, 1, 1024); break;
        case OPT_SEED: o->seed = (unsigned long long)parse_int(flag, optarg, 0, INT64_MAX); break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_VAL: o->val_split = parse_double(flag, optarg, 0, 0.99); break;
        case OPT_SYN_N: o->synthetic_n = parse_int(flag, optarg, 1, 100000000); break;
        case OPT_SYN_TEST_N: o->synthetic_test_n = parse_int(flag, optarg, 1, 100000000); break;
        case OPT_NOISE: o->noise = parse_double(flag, optarg, 0, 1e4); break;
        case OPT_JSON: o->json = 1; break;
        case ':':
            usage_error(argv[optind - 1], "needs a value");
        default:
            usage_error(argv[optind - 1], "unknown option");
        }
    }
    if (optind < argc)
        usage_error(argv[optind], "unexpected argument (all settings are --flags)");
}

/* Builds the trainer configuration from the options and the data's shape; usage errors for
 * combinations that cannot work. */
static brisk_trainer_config make_config(const options *o, const brisk_dataset *train,
                                        int64_t steps_per_epoch)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    if (brisk_model_parse_widths(o->model, &c.model) < 0)
        usage_error("--model", "%s", brisk_error_detail());
    c.model.act = parse_name("--act", o->act, brisk_act_parse, "relu, gelu, tanh or sigmoid");
    c.model.loss = parse_name("--loss", o->loss, brisk_loss_parse, "ce, bce or mse");
    c.model.init = parse_name("--init", o->init, init_parse, "auto, he or glorot");
    const int D = c.model.widths[0], C = c.model.widths[c.model.n_layers];
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

static int load_data(const options *o, int D, int C, brisk_dataset *train, brisk_dataset *test)
{
    int err;
    if (!strcmp(o->data, "synthetic")) {
        const int classes = C < 2 ? 2 : C > 256 ? 256 : C;
        if ((err = brisk_dataset_synthetic(o->synthetic_n, D, classes, (float)o->noise, o->seed,
                                           0, train)) < 0 ||
            (err = brisk_dataset_synthetic(o->synthetic_test_n, D, classes, (float)o->noise,
                                           o->seed, o->synthetic_n, test)) < 0)
            fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
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

int main(int argc, char **argv)
{
    brisk_blas_ensure_best_kernel(argv);
    options o;
    parse_args(argc, argv, &o);

    brisk_model_config peek;
    if (brisk_model_parse_widths(o.model, &peek) < 0)
        usage_error("--model", "%s", brisk_error_detail());
    brisk_dataset train = {0}, test = {0};
    int32_t *order = NULL, *epoch_idx = NULL;
    brisk_trainer *t = NULL;
    int status = 1;
    if (load_data(&o, peek.widths[0], peek.widths[peek.n_layers], &train, &test) < 0)
        goto done;
    int64_t n_train = 0;
    if (brisk_split(train.n, o.val_split, o.seed, &order, &n_train) < 0) {
        fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
        goto done;
    }
    const int64_t n_val = train.n - n_train;
    const int32_t *val_idx = order + n_train;
    const int64_t steps_per_epoch = (n_train + o.batch - 1) / o.batch;
    brisk_trainer_config cfg = make_config(&o, &train, steps_per_epoch);
    if (brisk_trainer_create(&cfg, &t) < 0) {
        fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
        goto done;
    }
    int32_t *test_idx = malloc((size_t)test.n * sizeof *test_idx);
    epoch_idx = malloc((size_t)n_train * sizeof *epoch_idx);
    if (!test_idx || !epoch_idx) {
        free(test_idx);
        fprintf(stderr, "brisk-train: out of memory\n");
        goto done;
    }
    for (int64_t i = 0; i < test.n; i++)
        test_idx[i] = (int32_t)i;
    float mean, std;
    brisk_dataset_stats(&train, order, n_train, &mean, &std);

    if (!o.json)
        printf("brisk-train: model %s (%zu parameters), %s, %s lr %g, batch %d (micro-batch "
               "%d), %d threads; data %s: %lld train, %lld validation, %lld test samples; "
               "OpenBLAS kernel %s\n",
               o.model, brisk_model_num_params(brisk_trainer_model(t)), o.act, o.optimizer, o.lr,
               o.batch, brisk_trainer_micro_batch(t), brisk_trainer_threads(t), o.data, (long long)n_train, (long long)n_val, (long long)test.n,
               brisk_blas_kernel());
    fflush(stdout);
    const double t_start = now_seconds();
    status = 0;
    for (int epoch = 1; epoch <= o.epochs && status == 0; epoch++) {
        brisk_shuffle(order, epoch_idx, n_train, o.seed, (uint32_t)epoch);
        brisk_metrics train_m = {0}, val_m = {0};
        const double t0 = now_seconds();
        for (int64_t lo = 0; lo < n_train; lo += o.batch) {
            const int n = n_train - lo < o.batch ? (int)(n_train - lo) : o.batch;
            brisk_step_stats st;
            if (brisk_trainer_step(t, &train, epoch_idx + lo, n, mean, std, &st) < 0) {
                fprintf(stderr, "brisk-train: epoch %d: training diverged: %s (try a lower "
                                "--lr or --clip-norm)\n",
                        epoch, brisk_error_detail());
                status = EXIT_DIVERGED;
                break;
            }
            brisk_metrics_add(&train_m, &st.metrics);
        }
        if (status)
            break;
        const double train_s = now_seconds() - t0;
        if (brisk_trainer_evaluate(t, &train, val_idx, n_val, mean, std, &val_m) < 0) {
            fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
            status = 1;
            break;
        }
        const double sps = (double)n_train / train_s, elapsed = now_seconds() - t_start;
        if (o.json) {
            printf("{\"epoch\": %d", epoch);
            print_json_metric("train", &train_m, 1);
            print_json_metric("val", &val_m, n_val > 0);
            printf(", \"samples_per_second\": %.1f, \"elapsed_seconds\": %.3f}\n", sps, elapsed);
        } else {
            printf("epoch %*d/%d  train loss %.4f acc %6.2f%%", (int)log10(o.epochs) + 1, epoch,
                   o.epochs, brisk_metrics_loss(&train_m), 100 * brisk_metrics_accuracy(&train_m));
            if (n_val)
                printf("  val loss %.4f acc %6.2f%%", brisk_metrics_loss(&val_m),
                       100 * brisk_metrics_accuracy(&val_m));
            printf("  %.0f samples/s  %.1f s\n", sps, elapsed);
        }
        fflush(stdout);
    }
    if (status == 0) {
        brisk_metrics test_m;
        if (brisk_trainer_evaluate(t, &test, test_idx, test.n, mean, std, &test_m) < 0) {
            fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
            status = 1;
            goto free_test;
        }
        const double elapsed = now_seconds() - t_start;
        const unsigned long long sum = (unsigned long long)params_checksum(t);
        if (o.json)
            printf("{\"test_loss\": %.6f, \"test_accuracy\": %.6f, \"params_checksum\": "
                   "\"%016llx\", \"elapsed_seconds\": %.3f}\n",
                   brisk_metrics_loss(&test_m), brisk_metrics_accuracy(&test_m), sum, elapsed);
        else
            printf("test  loss %.4f acc %6.2f%%  (%d epochs, %.1f s; weights checksum %016llx)\n",
                   brisk_metrics_loss(&test_m), 100 * brisk_metrics_accuracy(&test_m), o.epochs,
                   elapsed, sum);
    }
free_test:
    free(test_idx);
done:
    free(epoch_idx);
    free(order);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&train);
    brisk_dataset_free(&test);
    return status;
}
