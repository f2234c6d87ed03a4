/* custom_layer: a layer of your own, written against the public header brisk/layer.h and used
 * in a model description like any built-in layer, without touching Brisk's sources.
 *
 * The layer is PReLU with one learned slope per channel (torch.nn.PReLU(num_parameters=C)):
 * y = x for x > 0, a[c] x otherwise, the slopes a in the tensor "<index>.weight". The program registers it as "prelu", checks its
 * gradients against finite differences, then trains a small CNN that uses it on a synthetic
 * image task with every core, prints the loss going down, and trains again with 1 and 3
 * threads to show that the result does not depend on the thread count. Exit status 0 when
 * the gradients agree, the loss fell and the three runs agree bitwise, 1 otherwise.
 *
 * In this repository it is built with everything else (build/release/examples/custom_layer)
 * and run by the tests (ctest -R example_custom_layer).
 */
#include "brisk/brisk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the layer ------------------------------------------------------------------------ */

/* The item is just "prelu": no arguments. */
static int prelu_parse(brisk_layer *l, int argc, const char *const *argv, char *err,
                       size_t errlen)
{
    (void)l;
    if (argc > 1) {
        snprintf(err, errlen, "prelu takes no arguments, not '%s'", argv[1]);
        return -1;
    }
    return 0;
}

/* Output shape = input shape; one trained tensor "<index>.weight" of C slopes, as
 * torch.nn.PReLU(C) names it. It starts at zero, so the layer starts as a ReLU (PyTorch
 * starts at 0.25; a layer's tensors start at zero, one, or the model's weight init). */
static int prelu_setup(brisk_layer *l, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    l->out = l->in;
    const int C = l->in.c;
    return brisk_layer_add_tensor(l, "weight", 1, &C, BRISK_TENSOR_ZERO, 0, 0, 0) < 0 ? -1 : 0;
}

/* Features per channel: H W for an image, 1 for a vector. */
static size_t per_channel(const brisk_layer *l)
{
    return (size_t)l->in.h * (size_t)l->in.w;
}

/* Each thread takes whole channels (brisk_team_range), so the result does not depend on the
 * team's size. */
static void prelu_forward(const brisk_layer *l, const brisk_forward_args *a)
{
    const float *w = brisk_layer_data(l, 0, a->params);
    const size_t hw = per_channel(l), ld = (size_t)a->ld;
    long long c0, c1;
    brisk_team_range(a->team, l->in.c, &c0, &c1);
    for (long long c = c0; c < c1; c++) {
        const float s = w[c];
        for (size_t k = (size_t)c * hw * ld; k < (size_t)(c + 1) * hw * ld; k++)
            a->y[k] = a->x[k] > 0 ? a->x[k] : s * a->x[k];
    }
}

/* dx = dy (x > 0) or s dy; dweight[c] = sum over the channel's features and the
 * shard's samples (i < n only: columns beyond n are padding) of dy x where x <= 0. The sum
 * runs in a fixed order within one thread. */
static void prelu_backward(const brisk_layer *l, const brisk_backward_args *a)
{
    const float *w = brisk_layer_data(l, 0, a->params);
    float *dw = brisk_layer_data(l, 0, a->grads);
    const size_t hw = per_channel(l), ld = (size_t)a->ld;
    long long c0, c1;
    brisk_team_range(a->team, l->in.c, &c0, &c1);
    for (long long c = c0; c < c1; c++) {
        const float s = w[c];
        double g = 0;
        for (size_t f = (size_t)c * hw; f < (size_t)(c + 1) * hw; f++)
            for (size_t i = 0; i < ld; i++) {
                const size_t k = f * ld + i;
                if (a->x[k] <= 0 && (int)i < a->n)
                    g += (double)a->dy[k] * a->x[k];
                if (a->dx)
                    a->dx[k] = a->x[k] > 0 ? a->dy[k] : s * a->dy[k];
            }
        dw[c] = (float)g;
    }
}

static int prelu_describe(const brisk_layer *l, char *buf, size_t size)
{
    (void)l;
    return snprintf(buf, size, "prelu");
}

static const brisk_layer_ops prelu_ops = {
    .kind = "prelu",
    .parse = prelu_parse,
    .setup = prelu_setup,
    .forward = prelu_forward,
    .backward = prelu_backward,
    .describe = prelu_describe,
};

/* ---- a gradient check of the layer, through a whole model ------------------------------ */

static double loss_of(const brisk_model *m, const float *p, brisk_workspace *ws,
                      const float *x, const uint8_t *y, int n)
{
    memcpy(brisk_workspace_input(ws), x,
           sizeof(float) * (size_t)n * brisk_shape_size(brisk_model_get_config(m)->input));
    brisk_metrics acc = {0};
    brisk_model_forward(m, p, NULL, ws, n, BRISK_PASS_TRAIN, NULL, NULL, NULL);
    brisk_model_loss(m, ws, y, n, 0.0f, &acc, NULL);
    return brisk_metrics_loss(&acc);
}

static int gradient_check(void)
{
    brisk_model_config cfg = {0};
    if (brisk_model_config_set(&cfg, "conv:3:3,prelu,flatten,dense:4,prelu,dense:3",
                               brisk_shape_img(2, 6, 6)) != BRISK_OK)
        return fprintf(stderr, "custom_layer: %s\n", brisk_error_detail()), 1;
    brisk_model *m;
    brisk_workspace *ws;
    if (brisk_model_create(&cfg, &m) != BRISK_OK || brisk_workspace_create(m, 4, &ws) != BRISK_OK)
        return fprintf(stderr, "custom_layer: %s\n", brisk_error_detail()), 1;
    float *p = brisk_slab_alloc(m), *g = brisk_slab_alloc(m);
    float x[4 * 72];
    const uint8_t y[4] = {0, 2, 1, 2};
    brisk_model_init_params(m, 3, p, NULL);
    for (int i = 0; i < 4 * 72; i++)
        x[i] = (float)sin(0.37 * i + 0.5);
    /* Slopes away from 0 so that the check covers them. */
    for (int t = 0; t < 2; t++) {
        const brisk_tensor_view *v = brisk_model_find_tensor(m, t ? "4.weight" : "1.weight");
        for (size_t k = 0; k < v->count; k++)
            p[v->offset + k] = 0.1f + 0.2f * (float)k;
    }
    (void)loss_of(m, p, ws, x, y, 4);
    brisk_metrics acc = {0};
    brisk_model_loss(m, ws, y, 4, 0.25f, &acc, NULL);
    brisk_model_backward(m, p, NULL, ws, 4, g, NULL);
    int bad = 0;
    const char *names[] = {"1.weight", "4.weight", "0.weight"};
    for (int t = 0; t < 3; t++) {
        const brisk_tensor_view *v = brisk_model_find_tensor(m, names[t]);
        for (size_t k = 0; k < v->count; k++) {
            float *pk = &p[v->offset + k];
            const float saved = *pk, h = 1e-3f;
            *pk = saved + h;
            const double lp = loss_of(m, p, ws, x, y, 4);
            *pk = saved - h;
            const double lm = loss_of(m, p, ws, x, y, 4);
            *pk = saved;
            const double num = (lp - lm) / (2 * h), ana = g[v->offset + k];
            if (fabs(num - ana) > 2e-3 + 2e-2 * fabs(num)) {
                fprintf(stderr, "custom_layer: %s[%zu]: analytic %g, numeric %g\n", names[t], k,
                        ana, num);
                bad = 1;
            }
        }
    }
    printf("gradient check of prelu through conv and dense layers: %s\n", bad ? "FAILED" : "ok");
    brisk_slab_free(p);
    brisk_slab_free(g);
    brisk_workspace_destroy(ws);
    brisk_model_destroy(m);
    return bad;
}

/* ---- training with it ----------------------------------------------------------------- */

/* Trains 3 epochs with T threads (0: every core) and returns the final parameters (malloc'd
 * copy, *count floats) or NULL; prints the loss per epoch when verbose. */
static float *train(int threads, int verbose, size_t *count, double *first, double *last)
{
    brisk_trainer_config c = {0};
    if (brisk_model_config_set(&c.model, "conv:8:3:pad1,prelu,maxpool:2,flatten,dense:10",
                               brisk_shape_img(1, 28, 28)) != BRISK_OK) {
        fprintf(stderr, "custom_layer: %s\n", brisk_error_detail());
        return NULL;
    }
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 1e-3f;
    c.batch = 64; /* one micro-shard of 64: the threads share it, layer by layer */
    c.threads = threads;
    c.seed = 1;
    brisk_dataset ds;
    brisk_trainer *t;
    if (brisk_dataset_synthetic(2048, 784, 10, 60.0f, 1, 0, &ds) != BRISK_OK ||
        brisk_trainer_create(&c, &t) != BRISK_OK) {
        fprintf(stderr, "custom_layer: %s\n", brisk_error_detail());
        return NULL;
    }
    int32_t *idx = malloc(sizeof *idx * (size_t)ds.n);
    float *out = malloc(sizeof *out * brisk_model_slab_len(brisk_trainer_model(t)));
    if (!idx || !out) {
        fprintf(stderr, "custom_layer: out of memory\n");
        return NULL;
    }
    for (int64_t i = 0; i < ds.n; i++)
        idx[i] = (int32_t)i;
    float mean, std;
    brisk_dataset_stats(&ds, idx, ds.n, &mean, &std);
    if (brisk_trainer_set_norm(t, &mean, &std, 1) != BRISK_OK) {
        fprintf(stderr, "custom_layer: %s\n", brisk_error_detail());
        return NULL;
    }
    if (verbose) {
        char summary[2048];
        brisk_model_summary(brisk_trainer_model(t), summary, sizeof summary);
        printf("%s", summary);
    }
    for (int epoch = 1; epoch <= 3; epoch++) {
        brisk_metrics m = {0};
        for (int64_t b = 0; b < ds.n; b += c.batch) {
            brisk_step_stats st;
            if (brisk_trainer_step(t, &ds, idx + b, c.batch, &st) != BRISK_OK) {
                fprintf(stderr, "custom_layer: %s\n", brisk_error_detail());
                return NULL;
            }
            brisk_metrics_add(&m, &st.metrics);
        }
        if (verbose)
            printf("epoch %d: train loss %.4f, accuracy %.1f%% (%d threads)\n", epoch,
                   brisk_metrics_loss(&m), 100 * brisk_metrics_accuracy(&m),
                   brisk_trainer_threads(t));
        if (epoch == 1)
            *first = brisk_metrics_loss(&m);
        *last = brisk_metrics_loss(&m);
    }
    *count = brisk_model_slab_len(brisk_trainer_model(t));
    memcpy(out, brisk_trainer_params(t), sizeof *out * *count);
    free(idx);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    return out;
}

int main(void)
{
    if (brisk_layer_register(&prelu_ops) != BRISK_OK) {
        fprintf(stderr, "custom_layer: %s\n", brisk_error_detail());
        return 1;
    }
    if (gradient_check())
        return 1;
    /* Every core, then one thread and three: the layer computes whole channels per thread, so
     * the trained parameters are bitwise the same. */
    size_t n1, n2, n3;
    double first, last, f2, l2;
    float *all = train(0, 1, &n1, &first, &last);
    float *one = train(1, 0, &n2, &f2, &l2);
    float *three = train(3, 0, &n3, &f2, &l2);
    if (!all || !one || !three)
        return 1;
    const int same = n1 == n2 && n1 == n3 && !memcmp(all, one, n1 * sizeof(float)) &&
                     !memcmp(all, three, n1 * sizeof(float));
    printf("loss %.4f -> %.4f; parameters after 1, 3 and all threads: %s\n", first, last,
           same ? "bitwise identical" : "DIFFERENT");
    free(all);
    free(one);
    free(three);
    return same && last < first ? 0 : 1;
}
