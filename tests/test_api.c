/* The public API on bad input: every create, step and evaluate refuses a configuration or a
 * data set it cannot work with, with BRISK_EINVAL and a detail that names the parameter and
 * the value, instead of aborting, dividing by zero or training on misaligned data. Runs under
 * ASan and UBSan with the rest of the suite (no abort, no leak). */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/error.h"
#include "brisk/data.h"
#include "brisk/llmc.h"
#include "brisk/trainer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A working configuration: 16-8-4 on one thread. */
static brisk_trainer_config good(void)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_model_config_mlp(&c.model, "16-8-4", BRISK_ACT_RELU), BRISK_OK);
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.kind = BRISK_SCHEDULE_CONSTANT;
    c.schedule.lr = 1e-3f;
    c.batch = 8;
    c.threads = 2;
    c.seed = 1;
    return c;
}

static void expect_error(int rc, int code, const char *needle, const char *what)
{
    if (rc != code || !strstr(brisk_error_detail(), needle)) {
        print_error("%s: returned %d (%s), detail \"%s\"; expected %d mentioning \"%s\"\n", what,
                    rc, brisk_strerror(rc), brisk_error_detail(), code, needle);
        fail();
    }
}

/* brisk_trainer_create on c must fail naming `needle`, leaving *out NULL. */
static void refused(brisk_trainer_config c, const char *needle, const char *what)
{
    brisk_trainer *t = (brisk_trainer *)(uintptr_t)1;
    expect_error(brisk_trainer_create(&c, &t), BRISK_EINVAL, needle, what);
    assert_null(t);
}

static void test_bad_trainer_configs(void **state)
{
    (void)state;
    brisk_trainer_config c = good();
    brisk_trainer *t;
    expect_error(brisk_trainer_create(NULL, &t), BRISK_EINVAL, "cfg", "NULL cfg");
    expect_error(brisk_trainer_create(&c, NULL), BRISK_EINVAL, "out", "NULL out");

    c = good(), c.model.precision = (brisk_gemm_precision)-1;
    refused(c, "precision -1", "precision -1");
    c = good(), c.batch = 0;
    refused(c, "batch 0", "batch 0");
    c = good(), c.batch = -5;
    refused(c, "batch -5", "negative batch");
    c = good(), c.micro_batch = -1;
    refused(c, "micro_batch -1", "negative micro-batch");
    c = good(), c.threads = -2;
    refused(c, "threads -2", "negative threads");
    c = good(), c.threads = 100000;
    refused(c, "threads 100000", "absurd threads");
    c = good(), c.clip_norm = NAN;
    refused(c, "clip_norm", "NaN clip");
    c = good(), c.schedule.lr = NAN;
    refused(c, "schedule.lr nan", "NaN rate");
    c = good(), c.schedule.lr = -1e-3f;
    refused(c, "schedule.lr -0.001", "negative rate");
    c = good(), c.schedule.lr = 0.0f;
    refused(c, "schedule.lr 0", "zero rate");
    c = good(), c.schedule.kind = BRISK_SCHEDULE_STEP, c.schedule.step_size = 0,
    c.schedule.gamma = 0.5f;
    refused(c, "schedule.step_size 0", "step schedule of step size 0 (was SIGFPE)");
    c = good(), c.schedule.kind = BRISK_SCHEDULE_STEP, c.schedule.step_size = 10,
    c.schedule.gamma = 0.0f;
    refused(c, "schedule.gamma 0", "step schedule with gamma 0");
    c = good(), c.schedule.kind = BRISK_SCHEDULE_COSINE, c.schedule.total = 0;
    refused(c, "schedule.total 0", "cosine over 0 steps (rate stuck at min_lr)");
    c = good(), c.schedule.kind = BRISK_SCHEDULE_COSINE, c.schedule.total = 10,
    c.schedule.warmup = 20;
    refused(c, "schedule.warmup 20", "warmup longer than the schedule");
    c = good(), c.schedule.kind = BRISK_SCHEDULE_COSINE, c.schedule.total = 10,
    c.schedule.min_lr = 1.0f;
    refused(c, "schedule.min_lr 1", "min_lr above lr");
    c = good(), c.schedule.kind = (brisk_schedule_kind)9;
    refused(c, "schedule.kind 9", "unknown schedule");
    c = good(), c.optim.kind = (brisk_optim_kind)7;
    refused(c, "optim.kind 7", "unknown optimizer");
    c = good(), c.optim.beta1 = 1.0;
    refused(c, "optim.beta1 1", "beta1 = 1");
    c = good(), c.optim.beta2 = NAN;
    refused(c, "optim.beta2 nan", "NaN beta2");
    c = good(), c.optim.eps = 0;
    refused(c, "optim.eps 0", "eps 0");
    c = good(), c.optim.weight_decay = -0.1f;
    refused(c, "optim.weight_decay -0.1", "negative weight decay");
    c = good(), c.optim.kind = BRISK_OPTIM_SGD, c.optim.momentum = 2.0f;
    refused(c, "optim.momentum 2", "momentum 2");
    c = good(), c.model.loss = (brisk_loss)5;
    refused(c, "loss 5", "unknown loss");
    c = good(), c.model.spec[0] = 0;
    refused(c, "empty layer list", "empty model");
    c = good();
    memset(c.model.spec, 'x', sizeof c.model.spec); /* no terminating zero */
    refused(c, "layer list", "unterminated model line");
    c = good();
    snprintf(c.model.spec, sizeof c.model.spec, "dense:8,relu,maxpool:2,dense:4");
    refused(c, "maxpool", "pooling a vector");
}

static void test_bad_model_lines(void **state)
{
    (void)state;
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    expect_error(brisk_model_config_set(&mc, NULL, brisk_shape_vec(4)), BRISK_EINVAL,
                 "empty layer list", "NULL line");
    expect_error(brisk_model_config_set(&mc, "dense:0", brisk_shape_vec(4)), BRISK_EINVAL,
                 "item 1 'dense:0'", "zero units");
    brisk_model *m = (brisk_model *)(uintptr_t)1;
    assert_int_equal(brisk_model_config_set(&mc, "conv:8:3,dense:10", brisk_shape_vec(784)),
                     BRISK_OK); /* the grammar is right; the shapes are checked by create */
    expect_error(brisk_model_create(&mc, &m), BRISK_EINVAL, "item 1 'conv:8:3'",
                 "conv on a vector");
    assert_null(m);
    expect_error(brisk_model_config_set(&mc, "16-8-4", brisk_shape_vec(10)), BRISK_EINVAL,
                 "does not match", "shorthand against the data's width");
    expect_error(brisk_model_config_mlp(&mc, "16--4", BRISK_ACT_RELU), BRISK_EINVAL, "16--4",
                 "empty width");
    /* A precision that is neither fp32 nor bf16, to the model and through a trainer. */
    assert_int_equal(brisk_model_config_mlp(&mc, "16-8-4", BRISK_ACT_RELU), BRISK_OK);
    mc.precision = (brisk_gemm_precision)7;
    m = (brisk_model *)(uintptr_t)1;
    expect_error(brisk_model_create(&mc, &m), BRISK_EINVAL, "precision 7", "precision 7");
    assert_null(m);
    mc.precision = BRISK_GEMM_FP32;
    /* A preset's training recipe: the cnn and gpt presets have one, nothing else does. */
    brisk_preset_recipe r = {.optimizer = BRISK_OPTIM_SGD};
    assert_int_equal(brisk_model_preset_recipe("cnn", &r), BRISK_OK);
    assert_int_equal(r.optimizer, BRISK_OPTIM_ADAMW);
    assert_true(r.weight_decay == 0.05 && r.epochs == 15 && r.lr == 0 && !r.decay_matrices_only);
    assert_int_equal(brisk_model_preset_recipe("resnet", &r), BRISK_OK);
    assert_true(r.optimizer == BRISK_OPTIM_ADAMW && r.weight_decay == 0.05 && r.epochs == 20 &&
                r.lr == 3e-3 && r.warmup == 200 && r.batch == 256 && r.micro_batch == 128 &&
                !strcmp(r.augment, "crop:2,flip,erase:0.25") && r.ema == 0.995 &&
                r.label_smoothing == 0.1 && !r.decay_matrices_only);
    brisk_model_config rc = {0};
    assert_int_equal(brisk_model_config_set(&rc, "resnet", brisk_shape_img(1, 28, 28)), BRISK_OK);
    assert_non_null(strstr(rc.spec, "conv:192:3:s2:pad1,batchnorm,relu"));
    brisk_model *rm = NULL;
    assert_int_equal(brisk_model_create(&rc, &rm), BRISK_OK);
    assert_int_equal(brisk_model_num_params(rm), 1093882);
    brisk_model_destroy(rm);
    assert_int_equal(brisk_model_preset_recipe("gpt:2:64:4", &r), BRISK_OK);
    assert_true(r.optimizer == BRISK_OPTIM_ADAMW && r.decay_matrices_only && r.warmup == 100 &&
                r.clip_norm == 1.0 && r.beta2 == 0.99);
    expect_error(brisk_model_preset_recipe("gpt:2:64:3", &r), BRISK_EINVAL, "'gpt:2:64:3'",
                 "recipe for a gpt whose channels do not split into its heads");
    expect_error(brisk_model_preset_recipe("784-256-10", &r), BRISK_EINVAL, "'784-256-10'",
                 "recipe for the MLP shorthand");
    expect_error(brisk_model_preset_recipe(NULL, &r), BRISK_EINVAL, "NULL spec",
                 "recipe of NULL");
    expect_error(brisk_model_preset_recipe("cnn", NULL), BRISK_EINVAL, "NULL out",
                 "recipe into NULL");
    expect_error(brisk_model_config_mlp(&mc, "16-8-4", (brisk_act)9), BRISK_EINVAL, "9",
                 "unknown activation");
    m = (brisk_model *)(uintptr_t)1;
    memset(&mc, 0, sizeof mc);
    snprintf(mc.spec, sizeof mc.spec, "dense:4");
    mc.input = brisk_shape_vec(0);
    expect_error(brisk_model_create(&mc, &m), BRISK_EINVAL, "input", "input of size 0");
    assert_null(m);
}

static void test_bad_steps_and_data(void **state)
{
    (void)state;
    brisk_trainer_config c = good();
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    brisk_dataset ds, wide, many;
    assert_int_equal(brisk_dataset_synthetic(32, 16, 4, 10.0f, 1, 0, &ds), BRISK_OK);
    assert_int_equal(brisk_dataset_synthetic(32, 20, 4, 10.0f, 1, 0, &wide), BRISK_OK);
    assert_int_equal(brisk_dataset_synthetic(32, 16, 9, 10.0f, 1, 0, &many), BRISK_OK);
    int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    brisk_step_stats st;
    brisk_metrics m;

    expect_error(brisk_trainer_step(t, &wide, idx, 8, &st), BRISK_EINVAL,
                 "20 features", "data wider than the model (was silent misaligned training)");
    /* Labels up to 8 for a model of 4 outputs (was an assertion abort). */
    int32_t with_big[8];
    int k = 0;
    for (int32_t i = 0; i < many.n && k < 8; i++)
        if (many.y[i] >= 4)
            with_big[k++] = i;
    assert_true(k > 0);
    expect_error(brisk_trainer_step(t, &many, with_big, k, &st), BRISK_EINVAL,
                 "but the model has 4 outputs", "labels beyond the outputs");
    expect_error(brisk_trainer_evaluate(t, &many, with_big, k, &m),
                 BRISK_EINVAL, "but the model has 4 outputs", "evaluating such labels");
    int32_t outside[2] = {3, 32};
    expect_error(brisk_trainer_step(t, &ds, outside, 2, &st), BRISK_EINVAL,
                 "idx[1] = 32", "index past the data set");
    outside[1] = -1;
    expect_error(brisk_trainer_evaluate(t, &ds, outside, 2, &m), BRISK_EINVAL,
                 "idx[1] = -1", "negative index");
    expect_error(brisk_trainer_step(t, &ds, idx, 0, &st), BRISK_EINVAL,
                 "0 samples", "empty step");
    expect_error(brisk_trainer_step(t, &ds, idx, 9, &st), BRISK_EINVAL,
                 "9 samples", "step larger than the batch");
    const float mean = 128.0f, std = 64.0f, zero = 0.0f, nan = NAN;
    expect_error(brisk_trainer_set_norm(t, &mean, &zero, 1), BRISK_EINVAL, "std 0",
                 "zero standard deviation");
    expect_error(brisk_trainer_set_norm(t, &nan, &std, 1), BRISK_EINVAL, "mean nan", "NaN mean");
    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
    expect_error(brisk_trainer_step(t, NULL, idx, 8, &st), BRISK_EINVAL,
                 "ds is NULL", "NULL data set");
    expect_error(brisk_trainer_step(t, &ds, NULL, 8, &st), BRISK_EINVAL,
                 "idx is NULL", "NULL indices");
    expect_error(brisk_trainer_step(t, &ds, idx, 8, NULL), BRISK_EINVAL,
                 "out is NULL", "NULL stats");
    expect_error(brisk_trainer_evaluate(t, &ds, idx, -3, &m), BRISK_EINVAL,
                 "n -3", "negative count");
    /* None of that changed anything: the first real step is step 1. */
    assert_int_equal(brisk_trainer_steps_done(t), 0);
    assert_int_equal(brisk_trainer_step(t, &ds, idx, 8, &st), BRISK_OK);
    assert_int_equal(brisk_trainer_steps_done(t), 1);

    brisk_dataset_free(&wide);
    expect_error(brisk_dataset_synthetic(0, 16, 4, 1.0f, 1, 0, &wide), BRISK_EINVAL, "n=0",
                 "no samples");
    expect_error(brisk_dataset_synthetic(8, 16, 300, 1.0f, 1, 0, &wide), BRISK_EINVAL,
                 "classes=300", "more classes than uint8 labels");
    expect_error(brisk_dataset_synthetic(8, 16, 4, NAN, 1, 0, &wide), BRISK_EINVAL, "noise=nan",
                 "NaN noise");
    brisk_checkpoint *ck = (brisk_checkpoint *)(uintptr_t)1;
    expect_error(brisk_checkpoint_load("/nonexistent/brisk.safetensors", &ck), BRISK_ENOENT,
                 "/nonexistent/brisk.safetensors", "missing checkpoint");
    assert_null(ck);
    brisk_dataset_free(&ds);
    brisk_dataset_free(&many);
    brisk_trainer_destroy(t);
}

/* This process's resident set in KiB (/proc/self/statm), or -1 without it. */
static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A workspace costs the memory a run writes, not all it may: Winograd convolutions keep
 * scratch for 16 team members, and a thread alone uses one. Creating the workspace adds
 * little to the resident set, and a forward and backward pass by one thread far less than
 * the whole (it was all written as zeros at creation: 2 s and 1 GiB for the resnet preset). */
static void test_workspace_memory_on_use(void **state)
{
    (void)state;
    if (resident_kib() < 0) {
        print_message("skipped: no /proc/self/statm here\n");
        return;
    }
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_set(&mc, "conv:64:3:pad1,relu,conv:64:3:pad1,relu,gap,"
                                            "flatten,dense:10",
                                            brisk_shape_img(8, 16, 16)),
                     BRISK_OK);
    brisk_model *m;
    brisk_workspace *ws;
    assert_int_equal(brisk_model_create(&mc, &m), BRISK_OK);
    const long whole = (long)(brisk_workspace_bytes(m, 32) / 1024);
    const long before = resident_kib();
    assert_int_equal(brisk_workspace_create(m, 32, &ws), BRISK_OK);
    const long created = resident_kib() - before;
    float *p = calloc(brisk_model_slab_len(m), sizeof *p);
    float *g = calloc(brisk_model_slab_len(m), sizeof *g);
    assert_true(p && g);
    memset(brisk_workspace_input(ws), 0, 32 * 8 * 16 * 16 * sizeof(float));
    brisk_model_forward(m, p, NULL, ws, 32, BRISK_PASS_TRAIN, NULL, NULL, NULL);
    const uint8_t labels[32] = {0};
    brisk_metrics acc = {0};
    assert_int_equal(brisk_model_loss(m, ws, labels, 32, 1.0f / 32, &acc, NULL), BRISK_OK);
    brisk_model_backward(m, p, NULL, ws, 32, g, NULL);
    const long used = resident_kib() - before;
    print_message("workspace %ld KiB: resident after creating it %+ld KiB, after a pass %+ld "
                  "KiB\n", whole, created, used);
    assert_true(whole > 40 * 1024);
    assert_true(created < whole / 10);
#if defined(__SANITIZE_THREAD__)
    print_message("(TSan's shadow of what the pass writes counts too: the pass is not checked)\n");
#else
    /* With transparent huge pages always on, a write brings in 2 MiB at once. */
    char thp[64] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(thp, sizeof thp, f))
            thp[0] = 0;
        fclose(f);
    }
    if (strstr(thp, "[always]"))
        print_message("(transparent huge pages always on: the pass is not checked)\n");
    else
        assert_true(used < whole * 3 / 4);
#endif
    free(p);
    free(g);
    brisk_workspace_destroy(ws);
    brisk_model_destroy(m);
}

/* The lower-level loss call refuses what it cannot compute (it used to abort the program on
 * a label beyond the outputs). */
static void test_bad_loss_calls(void **state)
{
    (void)state;
    brisk_trainer_config c = good();
    brisk_model *m;
    brisk_workspace *ws;
    assert_int_equal(brisk_model_create(&c.model, &m), BRISK_OK);
    assert_int_equal(brisk_workspace_create(m, 4, &ws), BRISK_OK);
    float *p = calloc(brisk_model_slab_len(m), sizeof *p);
    memset(brisk_workspace_input(ws), 0, 4 * 16 * sizeof(float));
    brisk_model_forward(m, p, NULL, ws, 4, BRISK_PASS_EVAL, NULL, NULL, NULL);
    brisk_metrics acc = {0};
    const uint8_t ok[4] = {0, 1, 2, 3}, bad[4] = {0, 1, 4, 3};
    const float tgt[16] = {0};
    expect_error(brisk_model_loss(m, ws, bad, 4, 0.0f, &acc, NULL), BRISK_EINVAL,
                 "label 4 of row 2", "label beyond the outputs");
    expect_error(brisk_model_loss(m, ws, ok, 5, 0.0f, &acc, NULL), BRISK_EINVAL,
                 "n = 5 (workspace rows 4)", "more rows than the workspace");
    expect_error(brisk_model_loss(m, ws, NULL, 4, 0.0f, &acc, NULL), BRISK_EINVAL,
                 "labels NULL", "no labels");
    expect_error(brisk_model_loss_targets(m, ws, NULL, tgt, 4, 0.0f, &acc, NULL), BRISK_EINVAL,
                 "ce loss", "float targets with ce");
    assert_int_equal(acc.count, 0);
    assert_int_equal(brisk_model_loss(m, ws, ok, 4, 0.0f, &acc, NULL), BRISK_OK);
    assert_int_equal(acc.count, 4);
    free(p);
    brisk_workspace_destroy(ws);
    brisk_model_destroy(m);
}

/* A detail that wraps the previous one ("file: %s", brisk_error_detail()) keeps it whole: the
 * formatting used to write over its own argument, garbling nested messages. */
static void test_nested_error_detail(void **state)
{
    (void)state;
    brisk_error_set(BRISK_EINVAL, "inner detail, 42");
    brisk_error_set(BRISK_EFORMAT, "outer: %s", brisk_error_detail());
    assert_string_equal(brisk_error_detail(), "outer: inner detail, 42");
    brisk_error_set(BRISK_EFORMAT, "a/b.safetensors: metadata brisk.model: %s",
                    brisk_error_detail());
    assert_string_equal(brisk_error_detail(),
                        "a/b.safetensors: metadata brisk.model: outer: inner detail, 42");
}

/* Language models: token data that do not fit the model, generation's arguments, llm.c's
 * files that are not llm.c's, each refused naming what is wrong. */
static void test_sequence_refusals(void **state)
{
    (void)state;
    int32_t stream[200];
    for (int i = 0; i < 200; i++)
        stream[i] = i % 11;
    brisk_dataset ds, other;
    expect_error(brisk_dataset_tokens(stream, 200, 0, 11, &ds), BRISK_EINVAL,
                 "sequence length 0", "a window of 0");
    expect_error(brisk_dataset_tokens(stream, 5, 8, 11, &ds), BRISK_EINVAL,
                 "5 tokens, fewer than one window of 8 + 1", "a stream shorter than a window");
    expect_error(brisk_dataset_tokens(stream, 200, 8, 10, &ds), BRISK_EINVAL,
                 "token 10 is 10, outside the vocabulary 0..9", "an id beyond the vocabulary");
    assert_int_equal(brisk_dataset_tokens(stream, 200, 8, 0, &ds), BRISK_OK);
    assert_int_equal(ds.classes, 11);
    assert_int_equal(ds.n, 199 / 8);

    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    brisk_gpt_config g = {.layers = 1, .channels = 8, .heads = 2, .vocab = 11, .seq_len = 16};
    assert_int_equal(brisk_model_config_gpt(&c.model, &g), BRISK_OK);
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
    c.batch = 4;
    c.threads = 1;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    const int32_t idx[4] = {0, 1, 2, 3};
    brisk_step_stats st;
    expect_error(brisk_trainer_step(t, &ds, idx, 4, &st), BRISK_EINVAL,
                 "windows of 8 tokens, the model's input has 16 positions", "another T");
    assert_int_equal(brisk_dataset_synthetic(10, 16, 4, 10.0f, 1, 0, &other), BRISK_OK);
    expect_error(brisk_trainer_step(t, &other, idx, 4, &st), BRISK_EINVAL,
                 "a sequence model takes token data", "samples into a GPT");
    brisk_dataset_free(&other);
    int32_t wide[200];
    for (int i = 0; i < 200; i++)
        wide[i] = i % 20;
    assert_int_equal(brisk_dataset_tokens(wide, 200, 16, 0, &other), BRISK_OK);
    expect_error(brisk_trainer_step(t, &other, idx, 4, &st), BRISK_EINVAL,
                 "token ids go up to 19, beyond the model's embedding table of 11",
                 "ids beyond the model's vocabulary");
    float probs[4];
    expect_error(brisk_trainer_predict(t, &other, idx, 1, probs, NULL), BRISK_EINVAL,
                 "brisk_generate", "predict on a language model");

    /* Generation. */
    const brisk_model *m = brisk_trainer_model(t);
    const float *p = brisk_trainer_params(t);
    int32_t out[40];
    const int32_t prompt[2] = {3, 4}, bad_prompt[1] = {11};
    brisk_generate_config gen = {.tokens = 8, .temperature = 1.0, .seed = 3};
    expect_error(brisk_generate(m, p, NULL, bad_prompt, 1, &gen, out), BRISK_EINVAL,
                 "prompt token 0 is 11", "a prompt id beyond the vocabulary");
    expect_error(brisk_generate(m, p, NULL, prompt, 0, &gen, out), BRISK_EINVAL,
                 "prompt of 0 tokens", "an empty prompt");
    gen.temperature = -1;
    expect_error(brisk_generate(m, p, NULL, prompt, 2, &gen, out), BRISK_EINVAL,
                 "temperature -1", "a negative temperature");
    gen.temperature = 0.7;
    gen.top_k = 3;
    gen.tokens = 30; /* past T = 16: the window slides */
    int32_t again[40];
    assert_int_equal(brisk_generate(m, p, NULL, prompt, 2, &gen, out), BRISK_OK);
    assert_int_equal(brisk_generate(m, p, NULL, prompt, 2, &gen, again), BRISK_OK);
    assert_memory_equal(out, again, 32 * sizeof *out);
    assert_true(out[0] == 3 && out[1] == 4);
    for (int i = 0; i < 32; i++)
        assert_true(out[i] >= 0 && out[i] < 11);
    brisk_model *mlp;
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_mlp(&mc, "8-4", BRISK_ACT_RELU), BRISK_OK);
    assert_int_equal(brisk_model_create(&mc, &mlp), BRISK_OK);
    expect_error(brisk_generate(mlp, p, NULL, prompt, 2, &gen, out), BRISK_EINVAL,
                 "not a language model", "generation with a classifier");

    /* llm.c's model files: a model that is not a gpt preset's, a file that is not llm.c's. */
    expect_error(brisk_llmc_save("/tmp/never-written.bin", mlp, p), BRISK_EMISMATCH,
                 "not a gpt preset's", "saving an MLP in llm.c's format");
    brisk_llmc_header h;
    expect_error(brisk_llmc_read_header("/dev/null", &h), BRISK_EIO, "/dev/null",
                 "a device as a model file");
    g.layers = 17;
    expect_error(brisk_model_config_gpt(&mc, &g), BRISK_EINVAL, "17 layers", "too deep");
    expect_error(brisk_gpt_parse("gpt:2:64", &g), BRISK_EINVAL, "expected gpt or gpt:LAYERS",
                 "a size without heads");
    brisk_model_destroy(mlp);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    brisk_dataset_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_trainer_configs),
        cmocka_unit_test(test_workspace_memory_on_use),
        cmocka_unit_test(test_bad_model_lines),
        cmocka_unit_test(test_bad_steps_and_data),
        cmocka_unit_test(test_bad_loss_calls),
        cmocka_unit_test(test_nested_error_detail),
        cmocka_unit_test(test_sequence_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
