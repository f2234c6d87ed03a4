/* bench_gpt: a GPT's training step, timed as llm.c's train_gpt2.c times its own.
 *
 *   bench_gpt MODEL.bin TOKENS.bin [--B 4] [--T 64] [--steps 10] [--threads 1]
 *             [--micro-batch B] [--lr 1e-4] [--json]
 *
 * Reads llm.c's model file (the weights to start from) and a token file (text, .npy or
 * llm.c's), then takes --steps optimizer steps on llm.c's sequential batches (batch k is the
 * windows k B .. k B + B - 1 of T + 1 tokens, wrapping after (tokens - 1) / (B T) batches),
 * with llm.c's update (Adam, betas 0.9 / 0.999, eps 1e-8, no weight decay, a constant rate).
 * Prints one line per step as llm.c does ("step k: train loss X (took Y ms)"), so that the
 * same files fed to llm.c, to ../shared/anchors/llmc/torch_gpt2.py and to this program give
 * comparable loss curves and times; --json adds a summary object with the checksum of the
 * trained weights (the same for every --threads).
 */
#include "brisk/brisk.h"
#include "brisk/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "Usage: bench_gpt MODEL.bin TOKENS [--B 4] [--T 64] [--steps 10] [--threads 1]\n"
               "       [--micro-batch B] [--lr 1e-4] [--json]\n"
               "MODEL.bin: llm.c's model file (gpt2_*.bin; make_gpt2.py writes one); TOKENS: a\n"
               "token file (llm.c's, a .npy of ids, or text). One line per step, as llm.c's\n"
               "train_gpt2.c prints them.\n");
}

int main(int argc, char **argv)
{
    int B = 4, T = 64, steps = 10, threads = 1, micro = 0, json = 0;
    double lr = 1e-4;
    const char *model_path = NULL, *tokens_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int v = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (v && !strcmp(a, "--B")) {
            B = atoi(argv[++i]);
        } else if (v && !strcmp(a, "--T")) {
            T = atoi(argv[++i]);
        } else if (v && !strcmp(a, "--steps")) {
            steps = atoi(argv[++i]);
        } else if (v && !strcmp(a, "--threads")) {
            threads = atoi(argv[++i]);
        } else if (v && !strcmp(a, "--micro-batch")) {
            micro = atoi(argv[++i]);
        } else if (v && !strcmp(a, "--lr")) {
            lr = atof(argv[++i]);
        } else if (a[0] != '-' && !model_path) {
            model_path = a;
        } else if (a[0] != '-' && !tokens_path) {
            tokens_path = a;
        } else {
            fprintf(stderr, "bench_gpt: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens_path || B < 1 || T < 1 || steps < 1 || threads < 0) {
        usage(stderr);
        return 2;
    }
    brisk_llmc_header h;
    brisk_dataset ds;
    if (brisk_llmc_read_header(model_path, &h) < 0 ||
        brisk_dataset_load_tokens(tokens_path, T, &ds) < 0) {
        fprintf(stderr, "bench_gpt: %s\n", brisk_error_detail());
        return 1;
    }
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    brisk_gpt_config g = {.seq_len = T};
    brisk_llmc_gpt_config(&h, &g);
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.optim.weight_decay = 0;
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, (float)lr, 0, 0, 0, 0, 0};
    cfg.batch = B;
    cfg.micro_batch = micro;
    cfg.threads = threads;
    brisk_trainer *t = NULL;
    const int64_t batches = ds.n / B;
    int err = brisk_model_config_gpt(&cfg.model, &g);
    if (err == BRISK_OK && batches < 1)
        err = brisk_error_set(BRISK_EINVAL, "%s: %lld windows of %d, fewer than a batch of %d",
                              tokens_path, (long long)ds.n, T, B);
    if (err == BRISK_OK)
        err = brisk_trainer_create(&cfg, &t);
    if (err == BRISK_OK)
        err = brisk_llmc_load(model_path, brisk_trainer_model(t), brisk_trainer_params(t));
    int32_t *idx = malloc((size_t)B * sizeof *idx);
    if (err == BRISK_OK && !idx)
        err = brisk_error_set(BRISK_ENOMEM, "out of memory");
    if (err < 0) {
        fprintf(stderr, "bench_gpt: %s\n", brisk_error_detail());
        brisk_trainer_destroy(t);
        brisk_dataset_free(&ds);
        free(idx);
        return 1;
    }
    printf("brisk bench_gpt: L=%d C=%d NH=%d V=%d maxT=%d num_parameters: %zu B: %d T: %d "
           "steps: %d threads: %d micro-batch: %d kernels: %s\n", g.layers, g.channels, g.heads,
           g.vocab, g.max_seq, brisk_model_num_params(brisk_trainer_model(t)), B, T, steps,
           brisk_trainer_threads(t), brisk_trainer_micro_batch(t), brisk_gemm_isa());
    double total = 0, timed = 0;
    for (int s = 0; s < steps && err == BRISK_OK; s++) {
        const int64_t k = s % batches; /* llm.c's loader: wrap after the last whole batch */
        for (int i = 0; i < B; i++)
            idx[i] = (int32_t)(k * B + i);
        brisk_step_stats st;
        const double t0 = brisk_now_seconds();
        err = brisk_trainer_step(t, &ds, idx, B, &st);
        const double dt = brisk_now_seconds() - t0;
        total += dt;
        timed += s >= 2 ? dt : 0; /* after two warm-up steps */
        if (err == BRISK_OK)
            printf("step %d: train loss %.7f (took %f ms)\n", s, brisk_metrics_loss(&st.metrics),
                   dt * 1000);
        fflush(stdout);
    }
    if (err < 0)
        fprintf(stderr, "bench_gpt: %s\n", brisk_error_detail());
    else if (json)
        printf("{\"steps\": %d, \"mean_ms\": %.3f, \"mean_ms_after_warmup\": %.3f, "
               "\"threads\": %d, \"params_checksum\": \"%016llx\"}\n", steps,
               1000 * total / steps, steps > 2 ? 1000 * timed / (steps - 2) : 0.0,
               brisk_trainer_threads(t),
               (unsigned long long)brisk_model_checksum(brisk_trainer_model(t),
                                                        brisk_trainer_params(t)));
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(idx);
    return err < 0;
}
