/* Finite-difference gradient checks: for every layer kind, every activation and every loss,
 * the analytic gradient of the batch-mean loss with respect to every parameter agrees with
 * central differences, (L(p + h) - L(p - h)) / 2h, computed with the same training pass
 * (the same dropout mask, the same batch statistics). Parameters of the first layers check
 * the input gradients of every layer above them. */
#include "test_util.h"

#include "brisk/model.h"
#include "brisk/rng.h"

#include <stdlib.h>
#include <string.h>

#define ROWS 5      /* samples in a check */
#define MAX_ROWS 80 /* the most gradcheck_rows may ask for */

typedef struct check {
    brisk_model *m;
    brisk_workspace *ws;
    float *p, *buf, *g, *x;
    int rows, positions;
    uint8_t y[MAX_ROWS];
    int32_t *tok; /* sequences: a target per position */
    brisk_pass_keys keys;
} check;

/* The loss of the last forward, and with grad_scale != 0 its gradient: per sample, or per
 * position of a sequence (the mean over tokens). */
static void pass_loss(check *c, float grad_scale, brisk_metrics *acc)
{
    if (c->tok)
        assert_int_equal(brisk_model_loss_tokens(c->m, c->ws, c->tok, c->rows, grad_scale, acc,
                                                 NULL), BRISK_OK);
    else
        assert_int_equal(brisk_model_loss(c->m, c->ws, c->y, c->rows, grad_scale, acc, NULL),
                         BRISK_OK);
}

static double batch_loss(check *c)
{
    const size_t D = brisk_shape_size(brisk_model_get_config(c->m)->input);
    memcpy(brisk_workspace_input(c->ws), c->x, sizeof(float) * c->rows * D);
    brisk_metrics acc = {0};
    float stats[4096];
    brisk_model_forward(c->m, c->p, c->buf, c->ws, c->rows, BRISK_PASS_TRAIN, &c->keys, stats,
                        NULL);
    pass_loss(c, 0.0f, &acc);
    return acc.loss_sum / (double)acc.count;
}

/* Builds spec on input, checks every parameter (or every `every`-th of large tensors) on a
 * batch of `rows` samples. */
/* The label smoothing of the ce loss in the checks that follow (0 but in one test). */
static float smoothing;

static void gradcheck_rows(const char *spec, brisk_shape input, brisk_loss loss, double tol,
                           int rows)
{
    check c;
    memset(&c, 0, sizeof c);
    assert_true(rows >= 1 && rows <= MAX_ROWS);
    c.rows = rows;
    brisk_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_set(&cfg, spec, input), BRISK_OK);
    cfg.loss = loss;
    cfg.label_smoothing = loss == BRISK_LOSS_SOFTMAX_CE ? smoothing : 0.0f;
    if (brisk_model_create(&cfg, &c.m) != BRISK_OK) {
        print_error("%s: %s\n", spec, brisk_error_detail());
        fail();
    }
    assert_int_equal(brisk_workspace_create(c.m, c.rows, &c.ws), BRISK_OK);
    c.p = brisk_slab_alloc(c.m);
    c.g = brisk_slab_alloc(c.m);
    c.buf = brisk_buffers_alloc(c.m);
    assert_true(c.p && c.g && c.buf);
    assert_true(brisk_model_stats_len(c.m) <= 4096);
    brisk_model_init_params(c.m, 11, c.p, c.buf);
    /* Biases and normalisation parameters away from 0 and 1, so their gradients matter. */
    for (int t = 0; t < brisk_model_num_tensors(c.m); t++) {
        const brisk_tensor_view *v = brisk_model_tensor(c.m, t);
        if (v->buffer || v->init == BRISK_TENSOR_FAN)
            continue;
        for (size_t i = 0; i < v->count; i++)
            c.p[v->offset + i] += 0.3f * brisk_rng_normal(5, 9, (uint32_t)t, (uint64_t)i);
    }
    const size_t D = brisk_shape_size(input);
    const int C = brisk_model_outputs(c.m), vocab = brisk_model_vocab(c.m);
    c.positions = brisk_model_positions(c.m);
    c.x = malloc(sizeof(float) * c.rows * D);
    assert_non_null(c.x);
    for (size_t i = 0; i < c.rows * D; i++) /* token ids for a token model */
        c.x[i] = vocab ? (float)((i * 7 + i / 3) % (size_t)vocab)
                       : brisk_rng_normal(3, 9, 9, (uint64_t)i);
    for (int i = 0; i < c.rows; i++)
        c.y[i] = (uint8_t)(C == 1 ? i % 2 : i % C);
    if (c.positions > 1) {
        c.tok = malloc(sizeof *c.tok * (size_t)(c.rows * c.positions));
        assert_non_null(c.tok);
        for (int j = 0; j < c.rows * c.positions; j++)
            c.tok[j] = (j * 5 + 3) % C;
    }
    c.keys = (brisk_pass_keys){.seed = 7, .step = 3, .sample0 = 10};

    memcpy(brisk_workspace_input(c.ws), c.x, sizeof(float) * c.rows * D);
    brisk_metrics acc = {0};
    float stats[4096];
    brisk_model_forward(c.m, c.p, c.buf, c.ws, c.rows, BRISK_PASS_TRAIN, &c.keys, stats, NULL);
    pass_loss(&c, 1.0f / (float)(c.rows * c.positions), &acc);
    brisk_model_backward(c.m, c.p, c.buf, c.ws, c.rows, c.g, NULL);

    const float h = 2e-3f;
    int checked = 0;
    for (int t = 0; t < brisk_model_num_tensors(c.m); t++) {
        const brisk_tensor_view *v = brisk_model_tensor(c.m, t);
        if (v->buffer)
            continue;
        const size_t every = v->count > 200 ? v->count / 97 : 1;
        for (size_t k = 0; k < v->count; k += every) {
            float *pk = &c.p[v->offset + k];
            const float saved = *pk;
            *pk = saved + h;
            const double lp = batch_loss(&c);
            *pk = saved - h;
            const double lm = batch_loss(&c);
            *pk = saved;
            const double num = (lp - lm) / (2.0 * h), ana = c.g[v->offset + k];
            if (!(fabs(num - ana) <= tol + 2e-2 * fabs(num))) {
                print_error("%s, loss %s: %s[%zu]: analytic %.6g, numeric %.6g\n", spec,
                            brisk_loss_name(loss), v->name, k, ana, num);
                fail();
            }
            checked++;
        }
    }
    assert_true(checked > 0);
    free(c.x);
    free(c.tok);
    brisk_slab_free(c.p);
    brisk_slab_free(c.g);
    brisk_slab_free(c.buf);
    brisk_workspace_destroy(c.ws);
    brisk_model_destroy(c.m);
}

static void gradcheck(const char *spec, brisk_shape input, brisk_loss loss, double tol)
{
    gradcheck_rows(spec, input, loss, tol, ROWS);
}

static void test_mlp_every_activation_and_loss(void **state)
{
    (void)state;
    const char *const acts[] = {"relu", "gelu", "tanh", "sigmoid", "leaky_relu:0.1"};
    const brisk_loss losses[] = {BRISK_LOSS_SOFTMAX_CE, BRISK_LOSS_BCE_LOGITS, BRISK_LOSS_MSE};
    for (int a = 0; a < 5; a++)
        for (int l = 0; l < 3; l++) {
            char spec[128];
            snprintf(spec, sizeof spec, "dense:5,%s,dense:4,%s,dense:3", acts[a], acts[a]);
            gradcheck(spec, brisk_shape_vec(6), losses[l], 2e-3);
        }
    gradcheck("dense:5,tanh,dense:1", brisk_shape_vec(6), BRISK_LOSS_BCE_LOGITS, 2e-3);
    gradcheck("dense:5,gelu,dense:1", brisk_shape_vec(6), BRISK_LOSS_MSE, 2e-3);
    gradcheck("dense:5:nobias,tanh,dense:3:nobias", brisk_shape_vec(6), BRISK_LOSS_SOFTMAX_CE,
              2e-3);
}

/* Label smoothing: the per-sample loss and the token loss's own kernel. */
static void test_label_smoothing(void **state)
{
    (void)state;
    smoothing = 0.2f;
    gradcheck("dense:5,tanh,dense:4", brisk_shape_vec(6), BRISK_LOSS_SOFTMAX_CE, 2e-3);
    gradcheck_rows("embed:9:6,posembed,attention:1,res:1,dense:9:tied", brisk_shape_seq(1, 4),
                   BRISK_LOSS_SOFTMAX_CE, 3e-3, 2);
    smoothing = 0.0f;
}

static void test_conv_and_pooling(void **state)
{
    (void)state;
    const brisk_shape img = brisk_shape_img(2, 7, 7);
    /* Padded and unpadded, strided, without bias; max, average and global pooling; the
     * activations fused into the products and standing alone (after pooling). */
    gradcheck("conv:3:3:pad1,tanh,maxpool:2,conv:4:2,gelu,flatten,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    /* 2x2 max pools over even sizes route from the recorded positions, with a ReLU before
     * them folded in, or another activation's gradient applied after. */
    gradcheck("conv:3:3:pad1,tanh,maxpool:2,conv:4:2,gelu,flatten,dense:3",
              brisk_shape_img(2, 6, 6), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:3:3:pad1,relu,maxpool:2,conv:4:3:pad1,relu,maxpool:2,flatten,dense:3",
              brisk_shape_img(2, 8, 8), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    /* On one channel the first convolution takes its gradients straight from the pool's
     * (brisk__conv_backward_routed). */
    gradcheck("conv:3:3:pad1,relu,maxpool:2,conv:4:3:pad1,relu,maxpool:2,flatten,dense:3",
              brisk_shape_img(1, 8, 8), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:3:3:s2:pad1:nobias,sigmoid,avgpool:2:s1,flatten,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:4:3,leaky_relu:0.2,maxpool:3:s2,tanh,gap,flatten,dense:3", img,
              BRISK_LOSS_MSE, 3e-3);
    gradcheck("conv:2:1,tanh,conv:3:5:pad2:s3,flatten,dense:3", img, BRISK_LOSS_BCE_LOGITS,
              3e-3);
    /* Stride 1 after another layer: the input gradient read from the padded dy in place,
     * with padding below, equal to and above K - 1. */
    gradcheck("conv:2:3,tanh,conv:3:3:pad1,sigmoid,conv:2:2:pad3,flatten,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:3:3:pad1,tanh,conv:4:3:pad2:nobias,gelu,avgpool:2,flatten,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    /* More channels: 8 and 9 input channels, even and odd sizes, a fused activation in the
     * input gradient, without bias. */
    gradcheck("conv:9:3:pad1,tanh,conv:8:3:pad1:nobias,sigmoid,flatten,dense:3",
              brisk_shape_img(8, 4, 6), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:8:3:pad1,gelu,conv:3:3:pad1,flatten,dense:3", brisk_shape_img(8, 5, 4),
              BRISK_LOSS_MSE, 3e-3);
    /* The Winograd path (3x3, stride 1, padding 1, even sizes, 8 or more input channels)
     * on 70 samples: two sample blocks a tile (64 and 6 + padding), fewer units than weight
     * gradient groups, a fused activation forward and in the input gradient. */
    gradcheck_rows("conv:9:3:pad1,relu,conv:8:3:pad1,tanh,flatten,dense:3",
                   brisk_shape_img(8, 4, 4), BRISK_LOSS_SOFTMAX_CE, 3e-3, 70);
}

static void test_residual(void **state)
{
    (void)state;
    /* From the model's input; from an activation (whose backward is then not fused); two
     * skips from one output; a skip over a flatten into dense layers. */
    gradcheck("conv:2:3:pad1,tanh,conv:2:3:pad1,res:3,tanh,flatten,dense:3",
              brisk_shape_img(2, 5, 5), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:3:3:pad1,tanh,conv:3:3:pad1,tanh,conv:3:3:pad1,res:3,res:5,gelu,avgpool:2,"
              "flatten,dense:3", brisk_shape_img(2, 6, 6), BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("dense:6,tanh,dense:6,sigmoid,dense:6,res:3,tanh,dense:3", brisk_shape_vec(5),
              BRISK_LOSS_MSE, 2e-3);
}

static void test_normalisation_and_dropout(void **state)
{
    (void)state;
    const brisk_shape img = brisk_shape_img(2, 6, 6);
    gradcheck("conv:3:3:pad1,batchnorm,tanh,flatten,dense:4,batchnorm,gelu,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("conv:3:3,layernorm,tanh,flatten,dense:4,layernorm,sigmoid,dense:3", img,
              BRISK_LOSS_SOFTMAX_CE, 3e-3);
    gradcheck("dense:8,tanh,dropout:0.4,dense:5,gelu,dropout:0.2,dense:3", brisk_shape_vec(6),
              BRISK_LOSS_SOFTMAX_CE, 2e-3);
}

/* Sequence models: token and position embeddings (the language-model head tied to the
 * token embedding, or not), causal attention (one head or several; sequences longer than the
 * attention's blocks of 32 positions; dropout on the weights), layernorm, dense and gelu:tanh
 * position by position, residual adds and dropout, the loss averaged over every position. */
static void test_sequences(void **state)
{
    (void)state;
    gradcheck_rows("embed:11:8,posembed:6,layernorm,attention:2,res:2,layernorm,dense:16,"
                   "gelu:tanh,dense:8,res:4,layernorm,dense:11:nobias:tied",
                   brisk_shape_seq(1, 5), BRISK_LOSS_SOFTMAX_CE, 3e-3, 3);
    gradcheck_rows("embed:9:6,posembed,attention:1,res:1,dense:9:tied", brisk_shape_seq(1, 4),
                   BRISK_LOSS_SOFTMAX_CE, 3e-3, 2);
    gradcheck_rows("embed:9:4,dropout:0.2,attention:2:drop0.3,dropout:0.1,res:3,layernorm,"
                   "dense:8,gelu,dense:9", brisk_shape_seq(1, 6), BRISK_LOSS_SOFTMAX_CE, 3e-3, 3);
    gradcheck_rows("embed:5:4,posembed:40,attention:2,res:1,layernorm,dense:5:nobias:tied",
                   brisk_shape_seq(1, 37), BRISK_LOSS_SOFTMAX_CE, 3e-3, 2);
    gradcheck_rows("embed:6:4,attention:4,dense:6", brisk_shape_seq(1, 1),
                   BRISK_LOSS_SOFTMAX_CE, 3e-3, 4);
    /* 160 columns: wide enough that dense takes its input gradient from a transposed copy
     * of its weight. */
    gradcheck_rows("embed:5:4,posembed,attention:2,res:1,layernorm,dense:8,gelu:tanh,dense:4,"
                   "res:4,dense:5:tied", brisk_shape_seq(1, 40), BRISK_LOSS_SOFTMAX_CE, 3e-3, 4);
}

/* The loss values themselves, against hand-computed ones for one sample. */
static void test_loss_values(void **state)
{
    (void)state;
    brisk_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_set(&cfg, "dense:3", brisk_shape_vec(2)), BRISK_OK);
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
        const brisk_tensor_view *w = brisk_model_find_tensor(m, "0.weight");
        const brisk_tensor_view *b = brisk_model_find_tensor(m, "0.bias");
        assert_true(w && b);
        p[w->offset + 0] = 1.0f;
        p[w->offset + 2] = 2.0f;
        p[b->offset + 2] = 0.5f;
        memcpy(brisk_workspace_input(ws), logits_x, sizeof logits_x);
        brisk_metrics acc = {0};
        brisk_model_forward(m, p, NULL, ws, 1, BRISK_PASS_EVAL, NULL, NULL, NULL);
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

/* Layer lists: what is refused, and where the message points. */
static void test_descriptions(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *detail;
    } bad[] = {
        {"conv:32:3,relu,maxpol:2", "item 3 'maxpol:2': unknown layer 'maxpol'"},
        {"conv:32", "item 1 'conv:32': expected conv:OUT:K"},
        {"conv:32:3:pad9x", "unknown option 'pad9x'"},
        {"dense:0", "UNITS in 1..65536"},
        {"dropout:1.5", "P in [0, 1)"},
        {"relu:3", "relu takes no arguments"},
        {"conv:8:3,,dense:10", "item 2 '': empty"},
        {"conv:8:3,res:0", "item 2 'res:0': expected res:K"},
    };
    brisk_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(brisk_model_config_set(&cfg, bad[i].spec, brisk_shape_img(1, 28, 28)),
                         BRISK_EINVAL);
        if (!strstr(brisk_error_detail(), bad[i].detail)) {
            print_error("'%s': '%s' lacks '%s'\n", bad[i].spec, brisk_error_detail(),
                        bad[i].detail);
            fail();
        }
    }
    /* Shapes are checked when the model is built, naming the layer. */
    brisk_model *m;
    assert_int_equal(brisk_model_config_set(&cfg, "conv:8:3,dense:10", brisk_shape_img(1, 28, 28)),
                     BRISK_OK);
    assert_int_equal(brisk_model_create(&cfg, &m), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "item 2 'dense:10'"));
    assert_non_null(strstr(brisk_error_detail(), "put flatten"));
    /* A skip connection spans items that exist and adds equal shapes. */
    assert_int_equal(brisk_model_config_set(&cfg, "conv:8:3,relu,res:3", brisk_shape_img(1, 8, 8)),
                     BRISK_OK);
    assert_int_equal(brisk_model_create(&cfg, &m), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "item 3 'res:3'"));
    assert_non_null(strstr(brisk_error_detail(), "spans 3 items, but only 2 come before it"));
    assert_int_equal(brisk_model_config_set(&cfg, "conv:8:3:pad1,relu,res:2", brisk_shape_img(1, 8, 8)),
                     BRISK_OK);
    assert_int_equal(brisk_model_create(&cfg, &m), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "adds the input of item 1, of shape (1, 8, 8), "
                                                 "to an output of shape (8, 8, 8)"));
    assert_int_equal(brisk_model_config_set(&cfg, "maxpool:2,conv:8:3", brisk_shape_vec(10)),
                     BRISK_OK);
    assert_int_equal(brisk_model_create(&cfg, &m), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "item 1 'maxpool:2'"));
    /* The preset and the builder give the same model as the list. */
    brisk_model_config a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(brisk_model_config_set(&a, "cnn", brisk_shape_img(1, 28, 28)), BRISK_OK);
    b.input = brisk_shape_img(1, 28, 28);
    const char *items[] = {"conv:32:3:pad1", "relu", "maxpool:2", "conv:64:3:pad1", "relu",
                           "maxpool:2", "flatten", "dense:128", "relu", "dropout:0.3",
                           "dense:10"};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++)
        assert_int_equal(brisk_model_config_add(&b, items[i]), BRISK_OK);
    assert_string_equal(a.spec, b.spec);
    assert_int_equal(brisk_model_create(&a, &m), BRISK_OK);
    char desc[BRISK_MODEL_SPEC_MAX], summary[4096];
    brisk_model_describe(m, desc, sizeof desc);
    assert_string_equal(desc, a.spec);
    brisk_model_summary(m, summary, sizeof summary);
    assert_non_null(strstr(summary, "(64, 7, 7)"));
    assert_int_equal(brisk_model_num_params(m), 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 +
                                                    128 + 128 * 10 + 10);
    brisk_model_destroy(m);
}

/* A training pass applies relu, tanh and sigmoid in place over the output of the dense or
 * conv layer before them (one pass over memory, not two), with the same values as an
 * evaluation pass, which keeps both outputs. An activation whose gradient needs its input
 * (gelu, leaky_relu), or a layer output that a skip adds, keeps its own buffer. The
 * gradient checks above cover the backward passes that read the shared buffer. */
static void test_activation_in_place(void **state)
{
    (void)state;
    const struct {
        const char *spec;
        brisk_shape input;
        int in_place;
    } cases[] = {
        {"dense:6,relu,dense:3", brisk_shape_vec(5), 1},
        {"dense:6,tanh,dense:3", brisk_shape_vec(5), 1},
        {"conv:3:3:pad1,sigmoid,flatten,dense:3", brisk_shape_img(2, 4, 4), 1},
        {"conv:9:3:pad1,relu,flatten,dense:3", brisk_shape_img(8, 4, 4), 1}, /* Winograd */
        {"dense:6,gelu,dense:3", brisk_shape_vec(5), 0},
        {"dense:6,leaky_relu:0.1,dense:3", brisk_shape_vec(5), 0},
        {"dense:5,relu,dense:5,res:2,dense:3", brisk_shape_vec(5), 0}, /* res adds layer 0 */
    };
    const int rows = 6;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        brisk_model_config cfg;
        memset(&cfg, 0, sizeof cfg);
        assert_int_equal(brisk_model_config_set(&cfg, cases[k].spec, cases[k].input), BRISK_OK);
        brisk_model *m;
        brisk_workspace *ws;
        assert_int_equal(brisk_model_create(&cfg, &m), BRISK_OK);
        assert_int_equal(brisk_workspace_create(m, rows, &ws), BRISK_OK);
        float *p = brisk_slab_alloc(m), *buf = brisk_buffers_alloc(m);
        assert_true(p && buf);
        brisk_model_init_params(m, 5, p, buf);
        const size_t D = brisk_shape_size(cases[k].input);
        for (size_t i = 0; i < rows * D; i++)
            brisk_workspace_input(ws)[i] = brisk_rng_normal(4, 1, 2, (uint64_t)i);
        const size_t len = brisk_shape_features(brisk_model_layer(m, 0)->out) *
                           (size_t)brisk_workspace_ld(ws);
        float *pre = malloc(len * sizeof *pre), *act = malloc(len * sizeof *act);
        assert_true(pre && act);
        float stats[64];
        brisk_model_forward(m, p, buf, ws, rows, BRISK_PASS_EVAL, NULL, NULL, NULL);
        assert_ptr_not_equal(brisk_workspace_output(ws, 0), brisk_workspace_output(ws, 1));
        memcpy(pre, brisk_workspace_output(ws, 0), len * sizeof *pre);
        memcpy(act, brisk_workspace_output(ws, 1), len * sizeof *act);
        int negative = 0;
        for (size_t i = 0; i < len; i++)
            negative |= pre[i] < 0.0f;
        assert_true(negative); /* the activation changes something */
        /* What the layer stored as it went (Winograd's ReLU) is the activation's own. */
        const brisk_layer *al = brisk_model_layer(m, 1);
        float *want = malloc(len * sizeof *want);
        assert_non_null(want);
        al->ops->act(al, pre, want, len);
        assert_memory_equal(act, want, len * sizeof *act);
        free(want);
        const brisk_pass_keys keys = {.seed = 1, .step = 1};
        brisk_model_forward(m, p, buf, ws, rows, BRISK_PASS_TRAIN, &keys, stats, NULL);
        const float *a0 = brisk_workspace_output(ws, 0), *a1 = brisk_workspace_output(ws, 1);
        if ((a0 == a1) != cases[k].in_place) {
            print_error("%s: layer 0's output %s the activation's in a training pass\n",
                        cases[k].spec, a0 == a1 ? "is" : "is not");
            fail();
        }
        assert_memory_equal(a1, act, len * sizeof *act);
        if (!cases[k].in_place)
            assert_memory_equal(a0, pre, len * sizeof *pre);
        free(pre);
        free(act);
        brisk_slab_free(p);
        brisk_slab_free(buf);
        brisk_workspace_destroy(ws);
        brisk_model_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_every_activation_and_loss),
        cmocka_unit_test(test_label_smoothing),
        cmocka_unit_test(test_conv_and_pooling),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_normalisation_and_dropout),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_loss_values),
        cmocka_unit_test(test_descriptions),
        cmocka_unit_test(test_activation_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
