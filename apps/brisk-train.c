/* brisk-train: the command line of brisk/run.h. Flags are the run's settings plus what to do
 * (train, resume, evaluate, predict); the library runs it, this program prints its progress
 * and maps outcomes to exit codes. */
#define _GNU_SOURCE
#include "brisk/brisk.h"
#include "brisk/clock.h"
#include "brisk_train_help.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_DIVERGED 3
#define EXIT_INTERRUPTED 130
#define MAX_SETTINGS 128

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

/* What to do, and the settings given ("name=value"). */
typedef struct cli {
    const char *resume, *eval, *predict, *out, *input, *sample, *prompt;
    const char *gen_flag; /* a generation flag given (for the message without --sample) */
    brisk_generate_config gen;
    int resume_set, json, quiet, summary, lr_find;
    brisk_lr_find_config lrf;
    const char *settings[MAX_SETTINGS];
    int n_settings;
    char storage[MAX_SETTINGS][BRISK_RUN_PATH_MAX + 64];
    brisk_run_config given; /* the settings as given, for messages */
} cli;

static const char *setting_of(const cli *c, const char *name)
{
    const size_t n = strlen(name);
    for (int i = c->n_settings - 1; i >= 0; i--)
        if (!strncmp(c->settings[i], name, n) && c->settings[i][n] == '=')
            return c->settings[i] + n + 1;
    return NULL;
}

enum { OPT_RESUME = 1000, OPT_EVAL, OPT_PREDICT, OPT_OUT, OPT_INPUT, OPT_JSON, OPT_QUIET,
       OPT_SUMMARY, OPT_SAMPLE, OPT_PROMPT, OPT_TOKENS, OPT_TEMPERATURE, OPT_TOP_K,
       OPT_LR_FIND, OPT_KERNEL };

/* A number for a generation flag, in [lo, hi], or a usage error. */
static double gen_number(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    const double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi))
        usage_error(flag, "'%s' is not a number in %g..%g", v, lo, hi);
    return x;
}

/* --lr-find[=START:END[:STEPS]] */
static void parse_lr_find(const char *v, brisk_lr_find_config *f)
{
    f->start_lr = 1e-7;
    f->end_lr = 10;
    f->steps = 200;
    if (!v)
        return;
    char *end;
    f->start_lr = strtod(v, &end);
    if (end == v || *end != ':')
        usage_error("--lr-find", "'%s' is not START:END[:STEPS] (1e-7:10:200)", v);
    const char *e = end + 1;
    f->end_lr = strtod(e, &end);
    if (end == e || (*end && *end != ':'))
        usage_error("--lr-find", "'%s' is not START:END[:STEPS] (1e-7:10:200)", v);
    if (*end) {
        const char *s = end + 1;
        const long steps = strtol(s, &end, 10);
        if (end == s || *end || steps < 5 || steps > 100000)
            usage_error("--lr-find", "steps '%s': a whole number in 5..100000", s);
        f->steps = (int)steps;
    }
    if (!(f->start_lr > 0 && f->end_lr > f->start_lr && f->end_lr <= 1e6))
        usage_error("--lr-find", "rates %g to %g: 0 < START < END <= 1e6", f->start_lr,
                    f->end_lr);
}

static void parse_args(int argc, char **argv, cli *c)
{
    int n;
    const brisk_run_setting *s = brisk_run_settings(&n);
    static struct option opts[MAX_SETTINGS + 16];
    static const struct option own[] = {
        {"resume", optional_argument, 0, OPT_RESUME}, {"eval", required_argument, 0, OPT_EVAL},
        {"predict", required_argument, 0, OPT_PREDICT}, {"out", required_argument, 0, OPT_OUT},
        {"input", required_argument, 0, OPT_INPUT}, {"json", no_argument, 0, OPT_JSON},
        {"quiet", no_argument, 0, OPT_QUIET}, {"summary", no_argument, 0, OPT_SUMMARY},
        {"sample", required_argument, 0, OPT_SAMPLE}, {"prompt", required_argument, 0, OPT_PROMPT},
        {"tokens", required_argument, 0, OPT_TOKENS},
        {"temperature", required_argument, 0, OPT_TEMPERATURE},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"lr-find", optional_argument, 0, OPT_LR_FIND},
        {"kernel", required_argument, 0, OPT_KERNEL}, {"help", no_argument, 0, 'h'}};
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, "run")) /* the run's id: kept across resumes, never given */
            opts[k++] = (struct option){s[i].name, s[i].type == BRISK_SETTING_SWITCH
                                                       ? no_argument : required_argument, 0, i};
    memcpy(opts + k, own, sizeof own);
    memset(&opts[k + sizeof own / sizeof own[0]], 0, sizeof opts[0]);
    c->given = brisk_run_config_defaults();
    c->gen = (brisk_generate_config){.tokens = 200, .temperature = 1.0, .seed = c->given.seed};
    opterr = 0;
    for (int opt, li = -1; (opt = getopt_long(argc, argv, ":h", opts, &li)) != -1; li = -1) {
        char flag[80];
        snprintf(flag, sizeof flag, "%s%s", li >= 0 ? "--" : "",
                 li >= 0 ? opts[li].name : argv[optind - 1]);
        switch (opt) {
        case 'h': brisk_train_usage(stdout); exit(0);
        case OPT_RESUME:
            c->resume_set = 1;
            c->resume = optarg;
            /* --resume DIR as well as --resume=DIR: the next word, when it is not a flag. */
            if (!optarg && optind < argc && argv[optind][0] != '-')
                c->resume = argv[optind++];
            break;
        case OPT_EVAL: c->eval = optarg; break;
        case OPT_PREDICT: c->predict = optarg; break;
        case OPT_OUT: c->out = optarg; break;
        case OPT_INPUT: c->input = optarg; break;
        case OPT_SAMPLE: c->sample = optarg; break;
        case OPT_PROMPT: c->prompt = optarg; c->gen_flag = "--prompt"; break;
        case OPT_TOKENS: c->gen.tokens = (int)gen_number(flag, optarg, 0, 1 << 20);
            c->gen_flag = "--tokens"; break;
        case OPT_TEMPERATURE: c->gen.temperature = gen_number(flag, optarg, 0, 100);
            c->gen_flag = "--temperature"; break;
        case OPT_TOP_K: c->gen.top_k = (int)gen_number(flag, optarg, 0, 1 << 20);
            c->gen_flag = "--top-k"; break;
        case OPT_LR_FIND: c->lr_find = 1; parse_lr_find(optarg, &c->lrf); break;
        case OPT_KERNEL: /* the matrix kernels' code path: results are the same on each */
            if (strcmp(optarg, "avx512bf16") && strcmp(optarg, "avx512") &&
                strcmp(optarg, "avx2") && strcmp(optarg, "portable"))
                usage_error(flag, "'%s' is not a kernel (avx512bf16, avx512, avx2 or portable)",
                            optarg);
            if (brisk_gemm_set_isa(optarg) < 0)
                usage_error(flag, "this CPU cannot run %s (it runs %s)", optarg,
                            brisk_gemm_isa());
            break;
        case OPT_JSON: case OPT_QUIET: case OPT_SUMMARY:
            *(opt == OPT_JSON ? &c->json : opt == OPT_QUIET ? &c->quiet : &c->summary) = 1;
            break;
        case ':': usage_error(argv[optind - 1], "needs a value");
        case '?': usage_error(argv[optind - 1], "unknown option");
        default: {
            const char *value = s[opt].type == BRISK_SETTING_SWITCH ? "1" : optarg;
            if (c->n_settings == MAX_SETTINGS)
                usage_error(flag, "too many settings");
            if (brisk_run_config_set(&c->given, s[opt].name, value) < 0)
                usage_error(flag, "%s", brisk_error_detail() + strlen(s[opt].name) + 2);
            snprintf(c->storage[c->n_settings], sizeof c->storage[0], "%s=%s", s[opt].name,
                     value);
            c->settings[c->n_settings] = c->storage[c->n_settings];
            c->n_settings++;
        }
        }
    }
    if (optind < argc)
        usage_error(argv[optind], "unexpected argument (all settings are --flags)");
    c->gen.seed = c->given.seed;
    if (!c->sample && c->gen_flag)
        usage_error(c->gen_flag, "goes with --sample CHECKPOINT");
    if (c->sample && (c->resume_set || c->eval || c->predict))
        usage_error("--sample", "cannot be combined with --resume, --eval or --predict");
    if (c->resume_set && c->eval)
        usage_error("--eval", "cannot be combined with --resume");
    if (c->predict && (c->resume_set || c->eval))
        usage_error("--predict", "cannot be combined with --resume or --eval");
    if (c->predict && (!c->out || !*c->out))
        usage_error("--predict", "needs --out FILE (.npy or .csv)");
    if (c->out && !c->predict)
        usage_error("--out", "goes with --predict");
    if (c->input && !c->predict)
        usage_error("--input", "goes with --predict");
    if (c->lr_find) {
        if (c->sample || c->resume_set || c->eval || c->predict || c->summary)
            usage_error("--lr-find", "starts a new run: not with --resume, --eval, --predict, "
                        "--sample or --summary");
        static const char *const swept[] = {"lr", "schedule", "warmup", "min-lr"};
        for (int i = 0; i < 4; i++)
            if (setting_of(c, swept[i]))
                usage_error("--lr-find", "sweeps the rate itself: leave out --%s", swept[i]);
        if (c->n_settings + 3 > MAX_SETTINGS)
            usage_error("--lr-find", "too many settings");
        /* A constant schedule at the last rate: each step scales it (brisk_run_lr_find). */
        snprintf(c->storage[c->n_settings], sizeof c->storage[0], "lr=%.17g", c->lrf.end_lr);
        c->settings[c->n_settings] = c->storage[c->n_settings];
        c->n_settings++;
        c->settings[c->n_settings++] = "schedule=constant";
        if (!setting_of(c, "checkpoint-dir"))
            c->settings[c->n_settings++] = "checkpoint-dir=none";
        c->lrf.seed = c->given.seed;
    }
    if (c->resume_set && !c->resume && !(c->resume = setting_of(c, "checkpoint-dir")))
        usage_error("--resume", "name a run directory or checkpoint (--resume DIR|FILE), or "
                    "pass --checkpoint-dir DIR");
}

/* Reports a failed library call: a setting's error as a usage error naming the flag (exit 2),
 * anything else with its detail (exit 1). */
static int failed(int err, const char *what)
{
    const char *d = brisk_error_detail();
    const int colon = (int)strcspn(d, ":");
    char flag[80];
    snprintf(flag, sizeof flag, "--%.*s", colon < 64 ? colon : 0, d);
    if (err == BRISK_EINVAL && d[colon] == ':' && brisk_run_setting_find(flag + 2))
        usage_error(flag, "%s", d + colon + (d[colon + 1] == ' ' ? 2 : 1));
    fprintf(stderr, "brisk-train: %s%s%s\n", what ? what : "", what ? ": " : "", d);
    return 1;
}

/* Ctrl-C: the first SIGINT or SIGTERM asks the loop to stop after the current step; a second
 * one exits at once. */
static volatile sig_atomic_t stop_signal, final_evaluation;

static void on_signal(int sig)
{
    static const char again[] = "\nbrisk-train: interrupted again: quitting now (no new "
                                "checkpoint; the logs hold what the last one says)\n";
    static const char msg[] = "\nbrisk-train: interrupted: finishing the step, then writing a "
                              "checkpoint and the logs (Ctrl-C again quits at once)\n";
    static const char msg_eval[] = "\nbrisk-train: interrupted during the final test "
                                   "evaluation: training is complete; finishing the "
                                   "evaluation, then the last checkpoint (Ctrl-C again quits "
                                   "at once)\n";
    if (stop_signal) { /* (void)!: nothing more can be done in a handler */
        (void)!write(STDERR_FILENO, again, sizeof again - 1);
        _exit(EXIT_INTERRUPTED);
    }
    stop_signal = sig;
    if (final_evaluation)
        (void)!write(STDERR_FILENO, msg_eval, sizeof msg_eval - 1);
    else
        (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}

static void warn(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "brisk-train: warning: %s\n", line);
}

/* Progress: a live line on a terminal, a line (or a JSON object) per epoch. */
typedef struct progress {
    const cli *c;
    const brisk_run_config *cfg;
    int live, has_val;
    int threads;             /* the trainer's */
    double t_start, t_line;
} progress;

static int on_step(void *user, const brisk_fit_progress *p)
{
    progress *g = user;
    const double now = brisk_now_seconds();
    if (g->live && now - g->t_line >= 0.25) {
        const double rate = p->samples_per_second / g->cfg->batch;
        printf("\r\033[Kepoch %lld/%d %3.0f%%  %.0f samples/s  loss %.4f  ETA %.0fs",
               (long long)p->epoch, g->cfg->epochs, 100.0 * (double)p->batch / (double)p->batches,
               p->samples_per_second, brisk_metrics_loss(&p->train),
               rate > 0 ? (double)(p->batches - p->batch) / rate : 0);
        fflush(stdout);
        g->t_line = now;
    }
    return 0;
}

static int on_epoch(void *user, const brisk_fit_progress *p)
{
    progress *g = user;
    const double elapsed = brisk_now_seconds() - g->t_start;
    if (g->live)
        printf("\r\033[K");
    if (g->c->json) {
        printf("{\"epoch\": %lld, \"train_loss\": %.6f, \"train_accuracy\": %.6f",
               (long long)p->epoch, brisk_metrics_loss(&p->train),
               brisk_metrics_accuracy(&p->train));
        if (g->has_val)
            printf(", \"val_loss\": %.6f, \"val_accuracy\": %.6f", brisk_metrics_loss(&p->val),
                   brisk_metrics_accuracy(&p->val));
        else
            printf(", \"val_loss\": null, \"val_accuracy\": null");
        if (p->val_ema.count)
            printf(", \"ema_val_loss\": %.6f, \"ema_val_accuracy\": %.6f",
                   brisk_metrics_loss(&p->val_ema), brisk_metrics_accuracy(&p->val_ema));
        if (g->cfg->plateau)
            printf(", \"lr_factor\": %.9g", (double)p->lr_factor);
        printf(", \"samples_per_second\": %.1f, \"threads_in_use\": %.2f, "
               "\"elapsed_seconds\": %.3f}\n", p->samples_per_second, p->threads_in_use, elapsed);
    } else if (!g->c->quiet) {
        printf("epoch %*lld/%d  train loss %.4f acc %6.2f%%", (int)log10(g->cfg->epochs) + 1,
               (long long)p->epoch, g->cfg->epochs, brisk_metrics_loss(&p->train),
               100 * brisk_metrics_accuracy(&p->train));
        if (g->has_val)
            printf("  val loss %.4f acc %6.2f%%", brisk_metrics_loss(&p->val),
                   100 * brisk_metrics_accuracy(&p->val));
        if (p->val_ema.count)
            printf("  ema loss %.4f acc %6.2f%%", brisk_metrics_loss(&p->val_ema),
                   100 * brisk_metrics_accuracy(&p->val_ema));
        printf("  %.0f samples/s  %.1f s", p->samples_per_second, elapsed);
        if (p->threads_in_use < g->threads - 0.05) /* another program held some CPUs */
            printf("  threads %.1f/%d", p->threads_in_use, g->threads);
        if (g->cfg->plateau && p->lr_factor < 1)
            printf("  lr x%g", (double)p->lr_factor);
        printf("%s\n", p->improved && (g->cfg->keep_best || g->cfg->early_stop) ? "  *" : "");
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

/* The model's table and what the run will take. */
static int print_summary(brisk_run *r)
{
    char buf[16384];
    size_t mem = 0;
    const int err = brisk_run_describe_model(r, buf, sizeof buf, &mem);
    if (err < 0)
        return failed(err, NULL);
    fputs(buf, stdout);
    const brisk_run_config *c = brisk_run_get_config(r);
    if (mem) {
        const int threads = c->threads > 0 ? c->threads : brisk_cpu_count();
        printf("memory: about %.0f MiB with %d thread%s, batch %d, micro-batch %d",
               (double)mem / (1 << 20), threads, threads == 1 ? "" : "s", c->batch,
               c->micro_batch < c->batch ? c->micro_batch : c->batch);
        if (c->accumulate > 1)
            printf("; a step: %d passes of %d samples (accumulated), %d in all", c->accumulate,
                   c->batch, c->accumulate * c->batch);
        putchar('\n');
    }
    brisk_augment a;
    if (brisk_augment_parse(c->augment, &a) == BRISK_OK && brisk_augment_enabled(&a)) {
        char text[96];
        brisk_augment_format(&a, text, sizeof text);
        printf("augmentation: %s (training samples, as they are gathered)\n", text);
    }
    if (c->mixup > 0)
        printf("mixup: alpha %g (each training sample blended with its partner in the batch)\n",
               c->mixup);
    if (c->cutmix > 0)
        printf("cutmix: alpha %g (a box of each training sample's partner pasted into it)\n",
               c->cutmix);
    if (c->label_smoothing > 0)
        printf("label smoothing: %g (the cross-entropy's target: %g on the label, %g spread "
               "over every class)\n", c->label_smoothing, 1 - c->label_smoothing,
               c->label_smoothing);
    if (c->ema > 0)
        printf("moving average of the weights: decay %g (validated every epoch, used by "
               "--eval, --predict and the best checkpoint)\n", c->ema);
    return 0;
}

static void print_start(brisk_run *r)
{
    const brisk_run_config *g = brisk_run_get_config(r);
    brisk_trainer *t = brisk_run_trainer(r);
    brisk_run_data d;
    brisk_run_get_data(r, &d);
    print_summary(r);
    char act[48] = "", wd[48] = "", procs[32] = "", plan[256];
    if (strspn(g->model, "0123456789-") == strlen(g->model))
        snprintf(act, sizeof act, ", %s", g->act);
    if (g->weight_decay != 0)
        snprintf(wd, sizeof wd, " weight decay %g", g->weight_decay);
    if (brisk_comm_size(brisk_trainer_get_config(t)->comm) > 1)
        snprintf(procs, sizeof procs, "%d processes x ",
                 brisk_comm_size(brisk_trainer_get_config(t)->comm));
    const int threads = brisk_trainer_threads(t);
    const char *bf16 = strcmp(g->precision, "bf16") ? ""
                       : strcmp(brisk_gemm_isa(), "avx512bf16")
                           ? ", bfloat16 operands (emulated: fp32 fmas)"
                           : ", bfloat16 operands (products on vdpbf16ps)";
    printf("brisk-train: model %s (%zu parameters)%s, %s lr %g%s, batch %d (micro-batch %d), "
           "%s%d thread%s; data %s: %lld train, %lld validation, %lld test samples; %s "
           "kernels%s\n", g->model, brisk_model_num_params(brisk_trainer_model(t)), act,
           g->optimizer, g->lr, wd, g->batch, brisk_trainer_micro_batch(t), procs, threads,
           threads == 1 ? "" : "s", d.source, (long long)d.n_train, (long long)d.n_val,
           (long long)d.n_test, brisk_gemm_isa(), bf16);
    brisk_trainer_describe_plan(t, g->batch, plan, sizeof plan);
    printf("brisk-train: each batch: %s\n", plan);
    const brisk_checkpoint *ck = brisk_run_resumed(r);
    if (ck)
        printf("brisk-train: resuming %s at epoch %lld, step %lld\n", brisk_run_resumed_path(r),
               (long long)ck->pos.epoch + 1, (long long)ck->pos.steps_done);
    if (strcmp(g->logdir, "none"))
        printf("brisk-train: TensorBoard logs in %s (tensorboard --logdir %s; without "
               "TensorBoard: %s)\n", g->logdir, g->logdir,
               g->report ? "open report.html there, refreshed every epoch"
                         : "--report, or brisk-events report");
    if (strcmp(g->checkpoint_dir, "none"))
        printf("brisk-train: checkpoints in %s (resume with --resume=%s)\n", g->checkpoint_dir,
               strcmp(g->logdir, "none") ? g->logdir : g->checkpoint_dir);
    fflush(stdout);
}

/* What training ended with: messages and the exit status. */
static int report(brisk_run *r, const cli *c, int err, const brisk_run_result *res, int rank,
                  double t0)
{
    const brisk_run_config *g = brisk_run_get_config(r);
    const brisk_fit_result *f = &res->fit;
    if (res->fit.warning[0] && rank == 0)
        fprintf(stderr, "brisk-train: warning: %s\n", f->warning);
    if (err == BRISK_ENONFINITE) {
        fprintf(stderr, "brisk-train: training diverged in epoch %lld: %s\n",
                (long long)f->epochs_done + 1, brisk_error_detail());
        if (f->checkpoint[0])
            fprintf(stderr, "brisk-train: the last good checkpoint is %s\n", f->checkpoint);
        else
            fprintf(stderr, "brisk-train: no checkpoint was written before (the first comes "
                            "at the end of epoch 1)\n");
        fprintf(stderr, "brisk-train: try a lower --lr or --clip-norm\n");
        return EXIT_DIVERGED;
    }
    if (err < 0 && !res->logs_error[0]) {
        failed(err, NULL);
        if (rank == 0 && f->checkpoint[0])
            fprintf(stderr, "brisk-train: the last checkpoint is %s; once the cause is fixed, "
                            "resume with: brisk-train --resume=%s\n", f->checkpoint,
                    f->checkpoint);
        return 1;
    }
    const long long step = (long long)brisk_trainer_steps_done(brisk_run_trainer(r));
    if (f->end == BRISK_FIT_STOPPED && stop_signal) {
        const long long epoch = (long long)f->epochs_done + (f->batch ? 1 : 0);
        if (rank == 0 && f->checkpoint[0]) {
            fprintf(stderr, "brisk-train: stopped in epoch %lld after step %lld; checkpoint %s\n"
                            "brisk-train: resume with: brisk-train --resume=%s\n", epoch, step,
                    f->checkpoint, f->checkpoint);
            if (c->json)
                printf("{\"interrupted\": true, \"epoch\": %lld, \"step\": %lld, "
                       "\"checkpoint\": \"%s\"}\n", epoch, step, f->checkpoint);
        } else if (rank == 0) {
            fprintf(stderr, "brisk-train: stopped in epoch %lld after step %lld; no checkpoint "
                            "(--checkpoint-dir none)\n", epoch, step);
        }
        return EXIT_INTERRUPTED;
    }
    if (!c->quiet && !c->json) {
        if (res->already_finished)
            printf("brisk-train: %s already finished %d epochs; pass --epochs N to train "
                   "further\n", brisk_run_resumed_path(r), g->epochs);
        if (f->end == BRISK_FIT_EARLY_STOP)
            printf("brisk-train: early stop after epoch %lld: %s has not improved by more than "
                   "%g for %d epoch%s\n", (long long)f->epochs_done, g->monitor, g->min_delta,
                   g->early_stop, g->early_stop == 1 ? "" : "s");
        if (f->best_checkpoint[0])
            printf("brisk-train: the best epoch's checkpoint (by %s) is %s\n", g->monitor,
                   f->best_checkpoint);
    }
    const double elapsed = brisk_now_seconds() - t0;
    const unsigned long long sum = (unsigned long long)res->checksum;
    char ema[256] = "";
    if (res->ema_checksum && c->json)
        snprintf(ema, sizeof ema, "\"ema_test_loss\": %.6f, \"ema_test_accuracy\": %.6f, "
                 "\"ema_checksum\": \"%016llx\", ", res->tested ? brisk_metrics_loss(&res->test_ema) : NAN,
                 res->tested ? brisk_metrics_accuracy(&res->test_ema) : NAN,
                 (unsigned long long)res->ema_checksum);
    if (c->json)
        printf("{\"test_loss\": %.6f, \"test_accuracy\": %.6f, \"params_checksum\": \"%016llx\", "
               "%s\"elapsed_seconds\": %.3f, \"gemm_kernel\": \"%s\", \"logging_cpu_seconds\": "
               "%.3f%s}\n", res->tested ? brisk_metrics_loss(&res->test) : NAN,
               res->tested ? brisk_metrics_accuracy(&res->test) : NAN, sum, ema, elapsed,
               brisk_gemm_isa(), res->logging_cpu_seconds,
               f->end == BRISK_FIT_EARLY_STOP ? ", \"early_stop\": true" : "");
    else if (res->tested && res->ema_checksum)
        printf("test  loss %.4f acc %6.2f%%  ema loss %.4f acc %6.2f%%  (%lld epoch%s, %.1f s; "
               "weights checksum %016llx, ema %016llx)\n",
               brisk_metrics_loss(&res->test), 100 * brisk_metrics_accuracy(&res->test),
               brisk_metrics_loss(&res->test_ema), 100 * brisk_metrics_accuracy(&res->test_ema),
               (long long)f->epochs_done, f->epochs_done == 1 ? "" : "s", elapsed, sum,
               (unsigned long long)res->ema_checksum);
    else if (res->tested)
        printf("test  loss %.4f acc %6.2f%%  (%lld epoch%s, %.1f s; weights checksum %016llx)\n",
               brisk_metrics_loss(&res->test), 100 * brisk_metrics_accuracy(&res->test),
               (long long)f->epochs_done, f->epochs_done == 1 ? "" : "s", elapsed, sum);
    else
        printf("no test set (give --test)  (%lld epoch%s, %.1f s; weights checksum %016llx)\n",
               (long long)f->epochs_done, f->epochs_done == 1 ? "" : "s", elapsed, sum);
    fflush(stdout);
    if (res->logs_error[0]) {
        fprintf(stderr, "brisk-train: error: the TensorBoard logs are incomplete: %s\n",
                res->logs_error);
        return 1;
    }
    if (stop_signal && rank == 0)
        fprintf(stderr, "brisk-train: interrupted after training finished; the test metrics are "
                        "above%s%s\n", f->checkpoint[0] ? " and the trained model is in " : "",
                f->checkpoint);
    return stop_signal ? EXIT_INTERRUPTED : 0;
}

/* --eval FILE and --predict FILE (on the test set, or on --input FILE). */
/* --sample FILE: a language model's continuation of --prompt, printed. Byte-level models
 * (a vocabulary of at most 256) read the prompt as text and print text; others read and print
 * token ids, separated by spaces. */
static int sample(const cli *c)
{
    brisk_predictor *p;
    int err = brisk_predictor_open(c->sample, 1, &p);
    if (err < 0)
        return failed(err, "--sample");
    const brisk_model *m = brisk_predictor_model(p);
    const int V = brisk_model_vocab(m), bytes = V > 0 && V <= 256;
    const char *text = c->prompt && *c->prompt ? c->prompt : "\n";
    const size_t len = strlen(text);
    int32_t *ids = malloc((len + (size_t)c->gen.tokens + 1) * sizeof *ids);
    int n = 0;
    for (const char *s = text; ids && *s;) {
        char *end = (char *)(uintptr_t)s;
        const long v = bytes ? (unsigned char)*s : strtol(s, &end, 10);
        if (!bytes && end == s)
            break;
        ids[n++] = (int32_t)v;
        s = bytes ? s + 1 : end + strspn(end, " \t\n,");
    }
    if (!ids || (!bytes && text[strspn(text, "0123456789 \t\n,")])) {
        free(ids);
        brisk_predictor_close(p);
        usage_error("--prompt", "%s has a vocabulary of %d tokens, not bytes: give token ids, "
                    "separated by spaces", c->sample, V);
    }
    err = brisk_predictor_generate(p, ids, n, &c->gen, ids);
    if (err == BRISK_OK) {
        for (int i = 0; i < n + c->gen.tokens; i++)
            if (bytes)
                putchar(ids[i]);
            else
                printf("%s%d", i ? " " : "", ids[i]);
        printf(bytes && ids[n + c->gen.tokens - 1] == '\n' ? "" : "\n");
    }
    free(ids);
    brisk_predictor_close(p);
    return err < 0 ? failed(err, "--sample") : 0;
}

static int evaluate(const cli *c, brisk_comm *comm)
{
    if (c->input) {
        brisk_predictor *p;
        const char *threads = setting_of(c, "threads");
        int64_t n = 0;
        int err = brisk_predictor_open(c->predict, threads ? atoi(threads) : 0, &p);
        if (err == BRISK_OK && !brisk_predictor_norm_count(p) && !c->quiet)
            fprintf(stderr, "brisk-train: warning: %s records no input normalisation; the "
                            "samples go in as they are\n", c->predict);
        if (err == BRISK_OK)
            err = brisk_predictor_predict_file(p, c->input, c->out, &n);
        const int C = err == BRISK_OK ? brisk_predictor_outputs(p) : 0;
        brisk_predictor_close(p);
        if (err < 0)
            return failed(err, "--input");
        if (!c->quiet)
            printf("%s: %lld predictions of %d output%s for %s written to %s\n", c->predict,
                   (long long)n, C, C == 1 ? "" : "s", c->input, c->out);
        return 0;
    }
    const char *file = c->predict ? c->predict : c->eval;
    brisk_run *r;
    brisk_metrics m;
    int err = brisk_run_open_checkpoint(file, c->settings, c->n_settings, comm, &r);
    if (err < 0)
        return failed(err, c->predict ? "--predict" : "--eval");
    if (c->summary) {
        err = print_summary(r);
        brisk_run_close(r);
        return err;
    }
    if ((err = brisk_run_evaluate(r, c->predict ? c->out : NULL, &m)) < 0) {
        brisk_run_close(r);
        return failed(err, c->predict && strstr(brisk_error_detail(), c->out) ? "--out" : NULL);
    }
    const brisk_checkpoint *ck = brisk_run_resumed(r);
    brisk_trainer *t = brisk_run_trainer(r);
    brisk_run_data d;
    brisk_run_get_data(r, &d);
    const int C = brisk_model_outputs(brisk_trainer_model(t));
    const unsigned long long sum =
        (unsigned long long)brisk_model_checksum(brisk_trainer_model(t), brisk_trainer_params(t));
    if (c->predict && !c->quiet)
        printf("%s: %lld predictions of %d output%s written to %s (accuracy against the labels "
               "%.2f%%)\n", file, (long long)d.n_test, C, C == 1 ? "" : "s", c->out,
               100 * brisk_metrics_accuracy(&m));
    else if (c->eval && c->json)
        printf("{\"checkpoint\": \"%s\", \"epoch\": %lld, \"step\": %lld, \"weights\": \"%s\", "
               "\"test_loss\": %.6f, \"test_accuracy\": %.6f, \"params_checksum\": "
               "\"%016llx\"}\n", file, (long long)ck->pos.epoch, (long long)ck->pos.steps_done,
               ck->ema_params ? "ema" : "trained", brisk_metrics_loss(&m),
               brisk_metrics_accuracy(&m), sum);
    else if (c->eval)
        printf("%s (epoch %lld, step %lld%s): test loss %.4f acc %6.2f%% on %lld samples "
               "(weights checksum %016llx)\n", file, (long long)ck->pos.epoch,
               (long long)ck->pos.steps_done,
               ck->ema_params ? ", the moving average of the weights" : "",
               brisk_metrics_loss(&m), 100 * brisk_metrics_accuracy(&m), (long long)d.n_test,
               sum);
    brisk_run_close(r);
    return 0;
}

/* --lr-find: the range test instead of training; the curve on stdout and in the logs. */
static int lr_find(const cli *c, brisk_comm *comm)
{
    brisk_run *r;
    int err = brisk_run_open(&(brisk_run_options){.settings = c->settings,
                                                  .n_settings = c->n_settings, .comm = comm,
                                                  .message = warn},
                             &r);
    if (err < 0)
        return failed(err, NULL);
    brisk_comm_set_timeout(comm, brisk_run_get_config(r)->mpi_timeout);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    brisk_lr_find_config f = c->lrf;
    f.stop = &stop_signal;
    brisk_lr_find_result res;
    if ((err = brisk_run_lr_find(r, &f, &res)) < 0) {
        brisk_run_close(r);
        return failed(err, "--lr-find");
    }
    const brisk_run_config *cfg = brisk_run_get_config(r);
    if (c->json) {
        printf("{\"lr_find\": {\"steps\": %d, \"diverged\": %s, \"suggested_lr\": %.6g, "
               "\"lowest_loss_lr\": %.6g, \"curve\": [", res.n, res.diverged ? "true" : "false",
               res.suggested, res.lowest_lr);
        for (int i = 0; i < res.n; i++)
            printf("%s[%.6g, %.6g, %.6g]", i ? ", " : "", res.lr[i], res.loss[i],
                   res.smoothed[i]);
        printf("]}}\n");
    } else {
        const int every = res.n > 25 ? (res.n + 24) / 25 : 1;
        if (!c->quiet) {
            printf("%6s %11s %10s %10s\n", "step", "rate", "loss", "smoothed");
            for (int i = 0; i < res.n; i++)
                if (i % every == 0 || i == res.n - 1)
                    printf("%6d %11.3g %10.4f %10.4f\n", i + 1, res.lr[i], res.loss[i],
                           res.smoothed[i]);
        }
        printf("lr-find: %d steps of batch %d%s; lowest smoothed loss at rate %.3g; suggested "
               "rate %s", res.n, cfg->batch,
               res.diverged ? " (stopped: the loss diverged)"
               : stop_signal ? " (interrupted)" : "",
               res.lowest_lr, res.suggested > 0 ? "" : "none (too few steps)");
        if (res.suggested > 0)
            printf("%.3g (steepest descent)", res.suggested);
        printf("\n");
        if (strcmp(cfg->logdir, "none") && !c->quiet)
            printf("the curve is in %s/train (lr_find/*), for TensorBoard or brisk-events "
                   "plot %s --tag lr_find/smoothed_loss\n", cfg->logdir, cfg->logdir);
    }
    brisk_lr_find_result_free(&res);
    brisk_run_close(r);
    return stop_signal ? EXIT_INTERRUPTED : 0;
}

static int train(const cli *c, brisk_comm *comm)
{
    const int rank = brisk_comm_rank(comm);
    brisk_run *r;
    int err = brisk_run_open(&(brisk_run_options){.resume = c->resume_set ? c->resume : NULL,
                                                  .settings = c->settings,
                                                  .n_settings = c->n_settings, .comm = comm,
                                                  .message = warn},
                             &r);
    if (err < 0) {
        failed(err, c->resume_set ? "--resume" : NULL);
        if (strstr(brisk_error_detail(), "resume that run"))
            fprintf(stderr, "brisk-train: to continue that run: brisk-train --resume=%s\n",
                    setting_of(c, "logdir"));
        return 1;
    }
    brisk_comm_set_timeout(comm, brisk_run_get_config(r)->mpi_timeout);
    if (c->summary) {
        err = print_summary(r);
        brisk_run_close(r);
        return err;
    }
    if ((err = brisk_run_load(r, NULL, NULL)) < 0) {
        brisk_run_close(r);
        return failed(err, NULL);
    }
    if (!c->json && !c->quiet)
        print_start(r);
    brisk_run_data d;
    brisk_run_get_data(r, &d);
    /* Under mpirun stdout is a pseudo-terminal even when it goes to a file: no live line. */
    progress g = {.c = c, .cfg = brisk_run_get_config(r), .has_val = d.n_val > 0,
                  .threads = brisk_trainer_threads(brisk_run_trainer(r)),
                  .live = isatty(STDOUT_FILENO) && !c->json && !c->quiet &&
                          !brisk_comm_launched(comm),
                  .t_start = brisk_now_seconds()};
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    brisk_fit_config cb = {.stop = &stop_signal, .user = &g, .on_step = on_step,
                           .on_epoch = on_epoch, .on_test = on_test};
    brisk_run_result res;
    err = brisk_run_train(r, &cb, &res);
    if (g.live && (err < 0 || res.fit.end == BRISK_FIT_STOPPED))
        printf("\n");
    const int status = report(r, c, err, &res, rank, g.t_start);
    brisk_run_close(r);
    return status;
}

int main(int argc, char **argv)
{
    brisk_comm *comm;
    if (brisk_comm_init(&argc, &argv, &comm) < 0) {
        fprintf(stderr, "brisk-train: %s\n", brisk_error_detail());
        return 1;
    }
    /* Rank 0 speaks for the job; the others print errors only. */
    if (brisk_comm_rank(comm) != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "brisk-train: cannot silence stdout\n");
        return 1;
    }
    static cli c;
    parse_args(argc, argv, &c);
    const int status = c.sample                ? sample(&c)
                       : c.eval || c.predict   ? evaluate(&c, comm)
                       : c.lr_find             ? lr_find(&c, comm)
                                               : train(&c, comm);
    /* A rank that fails alone (a file error) would leave the others waiting in a collective:
     * end them all. Usage errors, divergence and interrupts happen on every rank alike. */
    if (status != 0 && status != EXIT_USAGE && status != EXIT_DIVERGED &&
        status != EXIT_INTERRUPTED && brisk_comm_size(comm) > 1)
        brisk_comm_abort(comm, status);
    brisk_comm_finalize(comm);
    return status;
}
