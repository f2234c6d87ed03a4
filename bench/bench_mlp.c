/* bench_mlp: training throughput of Brisk on synthetic data.
 *
 * Trains an MLP (ReLU, softmax cross-entropy, Adam) on uint8 samples normalised per batch,
 * exactly the work of brisk-train's inner loop, and prints samples/s, the matrix kernel that
 * ran, how each batch was spread over the threads and how busy each thread was.
 * bench/compare_mlp.py runs it side by side with PyTorch.
 */
#include "brisk/clock.h"
#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/gemm.h"
#include "brisk/pool.h"
#include "brisk/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int run(int argc, char **argv, brisk_comm *comm);

static void usage(FILE *f)
{
    fprintf(f, "Usage: bench_mlp [--model WIDTHS] [--batch B] [--threads T] [--micro-batch M] "
               "[--steps N] [--warmup N] [--kernel avx512bf16|avx512|avx2|portable] "
               "[--augment LIST] [--fixed-threads] [--precision fp32|bf16] [--json]\n"
               "--model: layer widths (ReLU between them) or a layer list on 1x28x28 images, as\n"
               "brisk-train --model takes (e.g. cnn).\n"
               "Defaults: --model 784-256-128-10 --batch 128 --threads 1 --steps 300 --warmup 30,\n"
               "--micro-batch %d (brisk-train's default; B if smaller), --kernel: the best the "
               "CPU runs.\n"
               "--precision: the matrix products' operands, as brisk-train takes it (fp32).\n"
               "--augment: image augmentation as brisk-train takes it (crop:4,flip,erase:0.25);\n"
               "every 16 steps count as an epoch (the draws' key).\n"
               "--fixed-threads: all T threads take part in every step, even when another\n"
               "program competes for the CPUs (by default the trainer then measures whether\n"
               "fewer are faster; brisk_trainer_set_threads_in_use).\n"
               "--json prints one object with samples/s, a checksum of the trained parameters\n"
               "(the same for every T), per thread the seconds it was busy and waiting, and\n"
               "how many steps ran with 1, 2, ... T threads in use.\n",
            BRISK_DEFAULT_MICRO_BATCH);
}

int main(int argc, char **argv)
{
    /* Under mpirun: P processes share each batch (rank 0 reports). */
    brisk_comm *comm;
    if (brisk_comm_init(&argc, &argv, &comm) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 1;
    }
    const int status = run(argc, argv, comm);
    brisk_comm_finalize(comm);
    return status;
}

static int run(int argc, char **argv, brisk_comm *comm)
{
    const char *model = "784-256-128-10";
    const char *kernel = NULL, *augment = "none";
    const char *precision = "fp32";
    int batch = 128, micro = 0, threads = 1, steps = 300, warmup = 30, json = 0, fixed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--fixed-threads"))
            fixed = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (has_value && !strcmp(a, "--model"))
            model = argv[++i];
        else if (has_value && !strcmp(a, "--batch"))
            batch = atoi(argv[++i]);
        else if (has_value && !strcmp(a, "--threads"))
            threads = atoi(argv[++i]);
        else if (has_value && !strcmp(a, "--micro-batch"))
            micro = atoi(argv[++i]);
        else if (has_value && !strcmp(a, "--steps"))
            steps = atoi(argv[++i]);
        else if (has_value && !strcmp(a, "--warmup"))
            warmup = atoi(argv[++i]);
        else if (has_value && !strcmp(a, "--kernel"))
            kernel = argv[++i];
        else if (has_value && !strcmp(a, "--augment"))
            augment = argv[++i];
        else if (has_value && !strcmp(a, "--precision"))
            precision = argv[++i];
        else {
            fprintf(stderr, "bench_mlp: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (batch < 1 || steps < 1 || threads < 1 || warmup < 0 || micro < 0) {
        fprintf(stderr, "bench_mlp: --batch, --threads and --steps must be >= 1, --warmup and "
                        "--micro-batch >= 0\n");
        return 2;
    }
    if (kernel && brisk_gemm_set_isa(kernel) < 0) {
        fprintf(stderr, "bench_mlp: --kernel %s: unknown, or this CPU cannot run it\n", kernel);
        return 2;
    }
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    /* The MLP shorthand (ReLU between the layers), or a layer list on 1x28x28 images. */
    const int shorthand = strspn(model, "0123456789-") == strlen(model);
    if ((shorthand ? brisk_model_config_mlp(&cfg.model, model, BRISK_ACT_RELU)
                   : brisk_model_config_set(&cfg.model, model, brisk_shape_img(1, 28, 28))) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 2;
    }
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
        fprintf(stderr, "bench_mlp: --precision %s: choose fp32 or bf16\n", precision);
        return 2;
    }
    cfg.model.precision = strcmp(precision, "bf16") ? BRISK_GEMM_FP32 : BRISK_GEMM_BF16;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
    cfg.batch = batch;
    cfg.micro_batch = micro;
    cfg.threads = threads;
    cfg.seed = 1;
    cfg.comm = comm;
    if (brisk_augment_parse(augment, &cfg.augment) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 2;
    }
    brisk_dataset ds;
    brisk_trainer *t = NULL;
    const int64_t n = 16 * (int64_t)batch;
    const float mean = 127.5f, std = 60.0f;
    if (brisk_trainer_create(&cfg, &t) < 0 || brisk_trainer_set_norm(t, &mean, &std, 1) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 1;
    }
    const int D = (int)brisk_shape_size(cfg.model.input), C = brisk_model_outputs(brisk_trainer_model(t));
    if (brisk_dataset_synthetic(n, D, C < 2 ? 2 : C, 60.0f, 1, 0, &ds) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 1;
    }
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    long long *in_use = calloc((size_t)threads + 1, sizeof *in_use); /* steps at each count */
    if (fixed && brisk_trainer_set_threads_in_use(t, threads) < 0) {
        fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
        return 1;
    }
    if (!idx || !in_use) {
        fprintf(stderr, "bench_mlp: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = (int32_t)i;
    double t0 = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            brisk_trainer_reset_thread_times(t);
            t0 = brisk_now_seconds();
        }
        brisk_step_stats st;
        (void)brisk_trainer_set_epoch(t, s / 16);
        if (brisk_trainer_step(t, &ds, idx + (s % 16) * batch, batch, &st) < 0) {
            fprintf(stderr, "bench_mlp: %s\n", brisk_error_detail());
            return 1;
        }
        if (s >= warmup)
            in_use[brisk_trainer_threads_in_use(t)]++;
    }
    const double wall = brisk_now_seconds() - t0, sps = (double)steps * batch / wall;
    const int P = brisk_comm_size(comm);
    micro = brisk_trainer_micro_batch(t);
    char plan[256];
    brisk_trainer_describe_plan(t, batch, plan, sizeof plan);
    double *busy = calloc(2 * (size_t)threads, sizeof *busy), *wait = busy + threads;
    if (!busy) {
        fprintf(stderr, "bench_mlp: out of memory\n");
        return 1;
    }
    brisk_trainer_thread_times(t, busy, wait);
    double shard_s, update_s;
    brisk_trainer_phase_times(t, &shard_s, &update_s);
    /* Equal for every T (and P) when the step is bitwise deterministic, which a sweep on a
     * bigger machine can then show. */
    const uint64_t fnv = brisk_model_checksum(brisk_trainer_model(t), brisk_trainer_params(t));
    if (brisk_comm_rank(comm) != 0) {
        /* rank 0 reports */
    } else if (json) {
        printf("{\"impl\": \"brisk\", \"model\": \"%s\", \"batch\": %d, \"micro_batch\": %d, "
               "\"processes\": %d, \"threads\": %d, \"kernel\": \"%s\", \"plan\": \"%s\", "
               "\"augment\": \"%s\", \"samples_per_second\": %.1f, \"seconds\": %.4f, "
               "\"params_fnv\": \"%016llx\", \"thread_busy_seconds\": [",
               model, batch, micro, P, threads, brisk_gemm_isa(), plan, augment, sps, wall,
               (unsigned long long)fnv);
        for (int w = 0; w < threads; w++)
            printf("%s%.4f", w ? ", " : "", busy[w]);
        printf("], \"thread_waiting_seconds\": [");
        for (int w = 0; w < threads; w++)
            printf("%s%.4f", w ? ", " : "", wait[w]);
        printf("], \"shard_seconds\": %.4f, \"update_seconds\": %.4f, "
               "\"steps_by_threads_in_use\": [", shard_s, update_s);
        for (int k = 1; k <= threads; k++)
            printf("%s%lld", k > 1 ? ", " : "", in_use[k]);
        printf("]}\n");
    } else {
        printf("brisk %s batch %d micro-batch %d: %.0f samples/s (%d processes x %d threads, "
               "%s kernels; %s)\n", model, batch, micro, sps, P, threads, brisk_gemm_isa(), plan);
        printf("  parameters after %d steps: FNV-1a %016llx\n", warmup + steps,
               (unsigned long long)fnv);
        printf("  forward and backward of the shards %.1f%% of the time, reduction and update "
               "%.1f%%\n", 100 * shard_s / wall, 100 * update_s / wall);
        for (int w = 0; w < threads; w++)
            printf("  thread %d: working %5.1f%% of the time, waiting for others %5.1f%%\n", w,
                   100 * (busy[w] - wait[w]) / wall, 100 * wait[w] / wall);
        if (in_use[threads] < steps) {
            printf("  threads in use (another program competed for the CPUs):");
            for (int k = 1; k <= threads; k++)
                if (in_use[k])
                    printf(" %d for %.0f%% of the steps", k, 100.0 * (double)in_use[k] / steps);
            printf("\n");
        }
    }
    free(in_use);
    free(busy);
    free(idx);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    return 0;
}
