/* Every layer kind against PyTorch (layer_ref.h, from gen_layer_ref.py): the same model, the
 * same parameters and input give the same logits, loss and parameter gradients in a training
 * pass, the same running statistics after it, and the same logits in evaluation, to float32
 * rounding. Dropout's mask comes from Brisk's keyed stream, which the script re-implements. */
#include "test_util.h"

#include "brisk/model.h"
#include "brisk/optim.h"

#include "layer_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int close_enough(double got, double want)
{
    return fabs(got - want) <= 2e-5 + 2e-4 * fabs(want);
}

/* Logits in the workspace (C, ld) feature-major against PyTorch's (n, C). */
static void compare_logits(const ref_case *rc, brisk_workspace *ws, int layers, const float *want,
                           const char *what)
{
    const float *z = brisk_workspace_output(ws, layers - 1);
    const int ld = brisk_workspace_ld(ws);
    for (int i = 0; i < rc->n * rc->positions; i++) /* columns: samples, or positions */
        for (int c = 0; c < rc->outputs; c++) {
            const double got = z[(size_t)c * ld + i], w = want[i * rc->outputs + c];
            if (!close_enough(got, w)) {
                print_error("%s: %s logit [%d][%d]: brisk %.8g, torch %.8g\n", rc->spec, what, i,
                            c, got, w);
                fail();
            }
        }
}

/* Slab values of tensor name against PyTorch's. */
static void compare_tensor(const ref_case *rc, const brisk_model *m, const float *slab,
                           const ref_tensor *t, const char *what)
{
    const brisk_tensor_view *v = brisk_model_find_tensor(m, t->name);
    if (!v) {
        print_error("%s: no tensor %s\n", rc->spec, t->name);
        fail();
    }
    assert_int_equal((int)v->count, t->count);
    for (int k = 0; k < t->count; k++)
        if (!close_enough(slab[v->offset + (size_t)k], t->v[k])) {
            print_error("%s: %s %s[%d]: brisk %.8g, torch %.8g\n", rc->spec, what, t->name, k,
                        slab[v->offset + (size_t)k], t->v[k]);
            fail();
        }
}

static void run_case(const ref_case *rc)
{
    brisk_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const brisk_shape in = rc->rank == 3   ? brisk_shape_img(rc->shape[0], rc->shape[1], rc->shape[2])
                           : rc->rank == 2 ? brisk_shape_seq(rc->shape[1], rc->shape[0])
                                           : brisk_shape_vec(rc->shape[0]);
    assert_int_equal(brisk_model_config_set(&cfg, rc->spec, in), BRISK_OK);
    /* "ce:E": the cross-entropy with label smoothing E; "ce:E:mixL": mixup's loss with weight
     * L on the labels and 1 - L on those of the partners, sample n - 1 - i for sample i. */
    char loss[32];
    snprintf(loss, sizeof loss, "%s", rc->loss);
    char *colon = strchr(loss, ':'), *mix = strstr(loss, ":mix");
    double lam = -1;
    if (mix) {
        lam = strtod(mix + 4, NULL);
        *mix = '\0';
    }
    if (colon) {
        *colon = '\0';
        cfg.label_smoothing = strtof(colon + 1, NULL);
    }
    cfg.loss = (brisk_loss)brisk_loss_parse(loss);
    brisk_model *m;
    if (brisk_model_create(&cfg, &m) != BRISK_OK) {
        print_error("%s: %s\n", rc->spec, brisk_error_detail());
        fail();
    }
    assert_int_equal(brisk_model_outputs(m), rc->outputs);
    brisk_workspace *ws;
    assert_int_equal(brisk_workspace_create(m, rc->n, &ws), BRISK_OK);
    float *p = brisk_slab_alloc(m), *g = brisk_slab_alloc(m), *buf = brisk_buffers_alloc(m);
    assert_true(p && g && (buf || !brisk_model_buffers_len(m)));
    /* Every tensor from PyTorch's state_dict (Brisk counts batches itself: no
     * num_batches_tracked tensor); every Brisk tensor must be in it. */
    int loaded = 0;
    for (int k = 0; k < rc->n_init; k++) {
        const ref_tensor *t = &rc->init[k];
        const brisk_tensor_view *v = brisk_model_find_tensor(m, t->name);
        if (!v && strstr(t->name, "num_batches_tracked"))
            continue;
        if (!v) {
            print_error("%s: PyTorch's %s has no Brisk tensor\n", rc->spec, t->name);
            fail();
        }
        assert_int_equal((int)v->count, t->count);
        memcpy((v->buffer ? buf : p) + v->offset, t->v, sizeof(float) * (size_t)t->count);
        loaded++;
    }
    assert_int_equal(loaded, brisk_model_num_tensors(m));

    memcpy(brisk_workspace_input(ws), rc->x, sizeof(float) * (size_t)rc->n * brisk_shape_size(in));
    const brisk_pass_keys keys = {.seed = REF_SEED, .step = REF_STEP, .sample0 = REF_SAMPLE0};
    const size_t ns = brisk_model_stats_len(m);
    float *stats = calloc(ns ? ns : 1, sizeof(float));
    assert_non_null(stats);
    brisk_metrics acc = {0};
    brisk_model_forward(m, p, buf, ws, rc->n, BRISK_PASS_TRAIN, &keys, stats, NULL);
    if (rc->targets) /* the mean over every position */
        assert_int_equal(brisk_model_loss_tokens(m, ws, rc->targets, rc->n,
                                                 1.0f / (float)(rc->n * rc->positions), &acc,
                                                 NULL), BRISK_OK);
    else if (mix) {
        uint8_t partner[64];
        assert_true(rc->n <= 64);
        for (int i = 0; i < rc->n; i++)
            partner[i] = rc->labels[rc->n - 1 - i];
        assert_int_equal(brisk_model_loss_mixed(m, ws, rc->labels, partner, lam, rc->n,
                                                1.0f / (float)rc->n, &acc, NULL), BRISK_OK);
    } else {
        brisk_model_loss(m, ws, rc->labels, rc->n, 1.0f / (float)rc->n, &acc, NULL);
    }
    const int L = brisk_model_num_layers(m);
    compare_logits(rc, ws, L, rc->logits, "training");
    if (!close_enough(brisk_metrics_loss(&acc), rc->loss_value)) {
        print_error("%s: loss: brisk %.8g, torch %.8g\n", rc->spec, brisk_metrics_loss(&acc),
                    rc->loss_value);
        fail();
    }
    brisk_model_backward(m, p, buf, ws, rc->n, g, NULL);
    for (int k = 0; k < rc->n_grads; k++)
        compare_tensor(rc, m, g, &rc->grads[k], "gradient");
    /* One shard: the running statistics as PyTorch updates them after this step. */
    const float *shard_stats[1] = {stats};
    brisk_model_merge_stats(m, buf, shard_stats, 1);
    for (int k = 0; k < rc->n_after; k++)
        if (!strstr(rc->after[k].name, "num_batches_tracked"))
            compare_tensor(rc, m, buf, &rc->after[k], "after the step");
    brisk_model_forward(m, p, buf, ws, rc->n, BRISK_PASS_EVAL, NULL, NULL, NULL);
    compare_logits(rc, ws, L, rc->eval_logits, "evaluation");

    free(stats);
    brisk_slab_free(p);
    brisk_slab_free(g);
    brisk_slab_free(buf);
    brisk_workspace_destroy(ws);
    brisk_model_destroy(m);
}

static void test_every_case(void **state)
{
    (void)state;
    for (int i = 0; i < N_REF_CASES; i++)
        run_case(&ref_cases[i]);
}

/* The cases cover every shipped kind: a kind added without a PyTorch case fails here. */
/* The moving average of the weights: brisk_ema_update (what the trainer runs after every
 * step, on parameters and running statistics alike) gives PyTorch's ModelEmaV2 values bit for
 * bit, step after step, split anywhere. */
static void test_ema_matches_pytorch(void **state)
{
    (void)state;
    float one = 2.0f;
    brisk_ema_update(&one, NULL, 0, 1, 0.5); /* nothing to average with: unchanged */
    assert_true(one == 2.0f);
    for (size_t split = 0; split <= EMA_REF_N; split += 9) {
        float ema[EMA_REF_N];
        memcpy(ema, ema_ref_states, sizeof ema); /* a copy of the initial state */
        for (int k = 0; k < EMA_REF_STEPS; k++) {
            const float *w = ema_ref_states + (size_t)(k + 1) * EMA_REF_N;
            brisk_ema_update(ema, w, 0, split, EMA_REF_DECAY);
            brisk_ema_update(ema, w, split, EMA_REF_N, EMA_REF_DECAY);
            assert_memory_equal(ema, ema_ref_averages + (size_t)k * EMA_REF_N, sizeof ema);
        }
    }
}

static void test_every_kind_covered(void **state)
{
    (void)state;
    const char *kinds[] = {"dense", "conv", "maxpool", "avgpool", "gap", "flatten", "relu",
                           "leaky_relu", "gelu", "tanh", "sigmoid", "dropout", "batchnorm",
                           "layernorm", "res", "embed", "posembed", "attention"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int found = 0;
        for (int i = 0; i < N_REF_CASES && !found; i++) {
            const char *s = ref_cases[i].spec;
            const size_t len = strlen(kinds[k]);
            for (const char *q = s; (q = strstr(q, kinds[k])) != NULL; q += len)
                if ((q == s || q[-1] == ',') && (q[len] == ',' || q[len] == ':' || !q[len]))
                    found = 1;
        }
        if (!found) {
            print_error("no PyTorch reference case for %s\n", kinds[k]);
            fail();
        }
        assert_non_null(brisk_layer_find(kinds[k]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_case),
        cmocka_unit_test(test_every_kind_covered),
        cmocka_unit_test(test_ema_matches_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
