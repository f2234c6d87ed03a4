/* Finite-difference gradient checks: for every activation and every loss, the analytic
 * gradient of the batch-mean loss with respect to every weight and bias of a 3-layer MLP
 * agrees with central differences, (L(p + h) - L(p - h)) / 2h. */
#include "test_util.h"

#include "brisk/model.h"
#include "brisk/rng.h"

#include <stdlib.h>
#include <string.h>

#define ROWS 5

static double batch_loss(const brisk_model *m, const float *params, brisk_workspace *ws,
                         const float *x, const uint8_t *y)
{
    const int D = brisk_model_get_config(m)->widths[0];
    memcpy(brisk_workspace_input(ws), x, sizeof(float) * ROWS * (size_t)D);
    brisk_metrics acc = {0};
    brisk_model_forward(m, params, ws, ROWS, BRISK_PASS_EVAL, NULL);
    brisk_model_loss(m, ws, y, ROWS, 0.0f, &acc, NULL);
    return acc.loss_sum / ROWS;
}

static void gradcheck(brisk_act act, brisk_loss loss, int C)
{
    brisk_model_config cfg = {.n_layers = 3, .widths = {6, 5, 4, C}, .act = act, .loss = loss};
    brisk_model *m;
    brisk_workspace *ws;
    assert_int_equal(brisk_model_create(&cfg, &m), BRISK_OK);
    assert_int_equal(brisk_workspace_create(m, ROWS, &ws), BRISK_OK);
    float *p = brisk_slab_alloc(m), *g = brisk_slab_alloc(m);
    assert_non_null(p);
    assert_non_null(g);
    brisk_model_init_params(m, 11, p);
    /* Non-zero biases, so that their gradients are exercised away from the origin. */
    for (int l = 0; l < 3; l++) {
        const brisk_tensor_view *b = brisk_model_bias(m, l);
        for (int j = 0; j < b->cols; j++)
            p[b->offset + j] = 0.3f * brisk_rng_normal(5, 9, (uint32_t)l, (uint64_t)j);
    }
    float x[ROWS * 6];
    uint8_t y[ROWS];
    for (int i = 0; i < ROWS * 6; i++)
        x[i] = brisk_rng_normal(3, 9, 9, (uint64_t)i);
    for (int i = 0; i < ROWS; i++)
        y[i] = (uint8_t)(C == 1 ? i % 2 : i % C);

    memcpy(brisk_workspace_input(ws), x, sizeof x);
    brisk_metrics acc = {0};
    brisk_model_forward(m, p, ws, ROWS, BRISK_PASS_TRAIN, NULL);
    brisk_model_loss(m, ws, y, ROWS, 1.0f / ROWS, &acc, NULL);
    brisk_model_backward(m, p, ws, ROWS, g, NULL);

    const float h = 2e-3f;
    int checked = 0;
    for (int t = 0; t < brisk_model_num_tensors(m); t++) {
        const brisk_tensor_view *v = brisk_model_tensor(m, t);
        for (int k = 0; k < v->rows * v->cols; k++) {
            float *pk = &p[v->offset + (size_t)k];
            const float saved = *pk;
            *pk = saved + h;
            double lp = batch_loss(m, p, ws, x, y);
            *pk = saved - h;
            double lm = batch_loss(m, p, ws, x, y);
            *pk = saved;
            double num = (lp - lm) / (2.0 * h);
            double ana = g[v->offset + (size_t)k];
            if (!(fabs(num - ana) <= 2e-3 + 2e-2 * fabs(num))) {
                print_error("act %s loss %s C %d: %s[%d]: analytic %.6g, numeric %.6g\n",
                            brisk_act_name(act), brisk_loss_name(loss), C, v->name, k, ana, num);
                fail();
            }
            checked++;
        }
    }
    assert_int_equal(checked, (int)brisk_model_num_params(m));
    brisk_slab_free(p);
    brisk_slab_free(g);
    brisk_workspace_destroy(ws);
    brisk_model_destroy(m);
}

static void test_every_activation_and_loss(void **state)
{
    (void)state;
    const brisk_act acts[] = {BRISK_ACT_RELU, BRISK_ACT_GELU, BRISK_ACT_TANH, BRISK_ACT_SIGMOID};
    const brisk_loss losses[] = {BRISK_LOSS_SOFTMAX_CE, BRISK_LOSS_BCE_LOGITS, BRISK_LOSS_MSE};
    for (int a = 0; a < 4; a++)
        for (int l = 0; l < 3; l++)
            gradcheck(acts[a], losses[l], 3);
}

static void test_single_output_losses(void **state)
{
    (void)state;
    gradcheck(BRISK_ACT_TANH, BRISK_LOSS_BCE_LOGITS, 1);
    gradcheck(BRISK_ACT_GELU, BRISK_LOSS_MSE, 1);
}

/* The loss values themselves, against hand-computed ones for one sample. */
static void test_loss_values(void **state)
{
    (void)state;
    brisk_model_config cfg = {.n_layers = 1, .widths = {2, 3}, .act = BRISK_ACT_RELU};
    const float logits_x[2] = {1.0f, 0.0f};
    const uint8_t y = 2;
    /* W = [[1,0],[2,0],[0,0]], b = [0, 0, 0.5]: logits = (1, 2, 0.5) */
    for (int loss = 0; loss < 3; loss++) {
        cfg.loss = (brisk_loss)loss;
        brisk_model *m;
        brisk_workspace *ws;
        assert_int_equal(brisk_model_create(&cfg, &m), BRISK_OK);
        assert_int_equal(brisk_workspace_create(m, 1, &ws), BRISK_OK);
        float *p = brisk_slab_alloc(m);
        const brisk_tensor_view *w = brisk_model_weight(m, 0), *b = brisk_model_bias(m, 0);
        p[w->offset + 0] = 1.0f;
        p[w->offset + 2] = 2.0f;
        p[b->offset + 2] = 0.5f;
        memcpy(brisk_workspace_input(ws), logits_x, sizeof logits_x);
        brisk_metrics acc = {0};
        brisk_model_forward(m, p, ws, 1, BRISK_PASS_EVAL, NULL);
        brisk_model_loss(m, ws, &y, 1, 0.0f, &acc, NULL);
        const double z[3] = {1, 2, 0.5}, t[3] = {0, 0, 1};
        double want = 0;
        if (loss == BRISK_LOSS_SOFTMAX_CE) {
            want = log(exp(1) + exp(2) + exp(0.5)) - 0.5;
        } else {
            for (int c = 0; c < 3; c++)
                want += loss == BRISK_LOSS_MSE ? (z[c] - t[c]) * (z[c] - t[c])
                                               : -(t[c] * log(1 / (1 + exp(-z[c]))) +
                                                   (1 - t[c]) * log(1 - 1 / (1 + exp(-z[c]))));
            want /= 3;
        }
        assert_close(acc.loss_sum, want, 1e-6, 1e-7);
        assert_int_equal(acc.correct, 0); /* argmax is class 1, label 2 */
        assert_int_equal(acc.count, 1);
        brisk_slab_free(p);
        brisk_workspace_destroy(ws);
        brisk_model_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_activation_and_loss),
        cmocka_unit_test(test_single_output_losses),
        cmocka_unit_test(test_loss_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
