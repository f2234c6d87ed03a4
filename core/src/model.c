#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
/* The model: parsing a layer list, laying out the tensors, the workspace, and running the
 * layers' passes in order (with an elementwise activation fused into the matrix product
 * before it, and into the one after it on the way back). It sits above the layers: they see
 * only their own brisk_layer and the helpers of layer.c, never the model. */
#include "brisk/model.h"

#include "brisk/error.h"
#include "brisk/model_test.h"
#include "brisk/rng.h"
#include "core_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define MAX_TENSORS (BRISK_MAX_LAYERS * BRISK_LAYER_MAX_TENSORS)

struct brisk_model {
    brisk_model_config cfg;
    int n_layers;
    brisk_layer layers[BRISK_MAX_LAYERS];
    int n_tensors;
    brisk_tensor_view *tensors[MAX_TENSORS]; /* every layer's, in order */
    size_t n_params;          /* trained elements */
    size_t slab_len;          /* trained slab, padding included */
    size_t buffers_len;
    size_t stats_len;
    size_t stats_off[BRISK_MAX_LAYERS];
    /* Fusion: layer l's forward is done by l - 1 (fwd_fused), its backward by l + 1. */
    unsigned char fwd_fused[BRISK_MAX_LAYERS], bwd_fused[BRISK_MAX_LAYERS];
    /* Layer l applies the activation after it in place in a training pass: its output there
     * is the activation's (BRISK_LAYER_ACT_IN_PLACE, BRISK_LAYER_GRAD_FROM_OUTPUT). */
    unsigned char act_in_place[BRISK_MAX_LAYERS];
    /* Layer l is a max pool whose backward, with that of the ReLU and the first convolution
     * below it, is the convolution's alone, from the pool's gradient
     * (brisk__conv_backward_routed). */
    unsigned char bwd_routed[BRISK_MAX_LAYERS];
    /* Skip connections: for a BRISK_LAYER_SKIP layer, the layer whose output it adds (-1:
     * the model's input); -2 for the others. */
    int skip_from[BRISK_MAX_LAYERS];
};

/* ---- Descriptions --------------------------------------------------------------------- */

static const char cnn_preset[] = "conv:32:3:pad1,relu,maxpool:2,conv:64:3:pad1,relu,maxpool:2,"
                                 "flatten,dense:128,relu,dropout:0.3,dense:10";
/* A stem, then three stages, each a stride-2 convolution that halves the image and doubles
 * the channels and one residual block of two convolutions; batchnorm after every
 * convolution, global average pooling before the classifier. */
static const char resnet_preset[] =
    "conv:24:3:pad1,batchnorm,relu,"
    "conv:48:3:s2:pad1,batchnorm,relu,conv:48:3:pad1,batchnorm,relu,conv:48:3:pad1,batchnorm,"
    "res:5,relu,"
    "conv:96:3:s2:pad1,batchnorm,relu,conv:96:3:pad1,batchnorm,relu,conv:96:3:pad1,batchnorm,"
    "res:5,relu,"
    "conv:192:3:s2:pad1,batchnorm,relu,conv:192:3:pad1,batchnorm,relu,conv:192:3:pad1,"
    "batchnorm,res:5,relu,gap,flatten,dense:10";

int brisk_model_preset_recipe(const char *spec, brisk_preset_recipe *out)
{
    if (!spec || !out)
        return brisk_error_set(BRISK_EINVAL, "preset recipe: NULL %s", spec ? "out" : "spec");
    brisk_gpt_config g;
    if (!strncmp(spec, "gpt", 3) && (!spec[3] || spec[3] == ':') &&
        brisk_gpt_parse(spec, &g) == BRISK_OK) {
        *out = (brisk_preset_recipe){.optimizer = BRISK_OPTIM_ADAMW, .weight_decay = 0.1,
                                     .epochs = 5, .lr = 1e-3, .min_lr = 1e-4, .beta2 = 0.99,
                                     .clip_norm = 1.0, .warmup = 100,
                                     .decay_matrices_only = 1};
        return BRISK_OK;
    }
    if (!strcmp(spec, "resnet")) {
        *out = (brisk_preset_recipe){.optimizer = BRISK_OPTIM_ADAMW, .weight_decay = 0.05,
                                     .epochs = 20, .lr = 3e-3, .warmup = 200, .batch = 256,
                                     .micro_batch = 128, .augment = "crop:2,flip,erase:0.25",
                                     .ema = 0.995, .label_smoothing = 0.1};
        return BRISK_OK;
    }
    if (strcmp(spec, "cnn"))
        return brisk_error_set(BRISK_EINVAL, "preset recipe: '%s' is not a preset with a "
                               "recipe (there are recipes for 'cnn', 'resnet' and 'gpt')",
                               spec);
    *out = (brisk_preset_recipe){.optimizer = BRISK_OPTIM_ADAMW, .weight_decay = 0.05,
                                 .epochs = 15};
    return BRISK_OK;
}

/* 1 if spec is the MLP shorthand "784-256-10". */
static int is_widths(const char *spec)
{
    int dash = 0;
    for (const char *p = spec; *p; p++) {
        if (*p == '-')
            dash++;
        else if (*p < '0' || *p > '9')
            return 0;
    }
    return dash > 0;
}

static const char *const act_kinds[] = {"relu", "gelu", "tanh", "sigmoid"};

int brisk_model_config_mlp(brisk_model_config *cfg, const char *widths, brisk_act act)
{
    if (!widths || !*widths)
        return brisk_error_set(BRISK_EINVAL, "model: empty layer list (expected e.g. 784-256-10)");
    if ((int)act < 0 || act > BRISK_ACT_SIGMOID)
        return brisk_error_set(BRISK_EINVAL, "model: activation %d unknown", (int)act);
    int w[BRISK_MAX_LAYERS + 1], n = 0;
    const char *p = widths;
    for (;;) {
        char *end;
        errno = 0;
        const long x = strtol(p, &end, 10);
        if (end == p || errno || x < 1 || x > 65536)
            return brisk_error_set(BRISK_EINVAL,
                                   "model '%s': layer width %d is not an integer in 1..65536",
                                   widths, n + 1);
        if (n == BRISK_MAX_LAYERS / 2 + 1)
            return brisk_error_set(BRISK_EINVAL, "model '%s': more than %d dense layers",
                                   widths, BRISK_MAX_LAYERS / 2);
        w[n++] = (int)x;
        if (*end == '\0')
            break;
        if (*end != '-')
            return brisk_error_set(BRISK_EINVAL,
                                   "model '%s': unexpected '%c' (widths are joined by '-')",
                                   widths, *end);
        p = end + 1;
    }
    if (n < 2)
        return brisk_error_set(BRISK_EINVAL,
                               "model '%s': needs at least an input and an output width", widths);
    char spec[BRISK_MODEL_SPEC_MAX];
    size_t at = 0;
    for (int i = 1; i < n && at < sizeof spec; i++)
        at += (size_t)snprintf(spec + at, sizeof spec - at, "%sdense:%d%s%s", i > 1 ? "," : "",
                               w[i], i + 1 < n ? "," : "", i + 1 < n ? act_kinds[act] : "");
    if (at >= sizeof spec)
        return brisk_error_set(BRISK_EINVAL, "model '%s': too long", widths);
    snprintf(cfg->spec, sizeof cfg->spec, "%s", spec);
    cfg->input = brisk_shape_vec(w[0]);
    return BRISK_OK;
}

/* Splits item (modified in place) into kind and arguments. */
static int split_item(char *item, const char **kind, const char **argv, int *argc)
{
    *argc = 0;
    *kind = item;
    for (char *p = item; *p; p++)
        if (*p == ':') {
            *p = '\0';
            if (*argc == BRISK_LAYER_MAX_ARGS)
                return -1;
            argv[(*argc)++] = p + 1;
        }
    return 0;
}

/* Parses one item into l (ops and args); err gets what is wrong. */
static int parse_item(const char *item, brisk_layer *l, char *err, size_t errlen)
{
    char copy[256];
    if (strlen(item) >= sizeof copy) {
        snprintf(err, errlen, "too long");
        return -1;
    }
    snprintf(copy, sizeof copy, "%s", item);
    const char *kind, *argv[BRISK_LAYER_MAX_ARGS];
    int argc;
    if (!copy[0]) {
        snprintf(err, errlen, "empty (two commas in a row?)");
        return -1;
    }
    if (split_item(copy, &kind, argv, &argc) < 0) {
        snprintf(err, errlen, "more than %d arguments", BRISK_LAYER_MAX_ARGS);
        return -1;
    }
    const brisk_layer_ops *ops = brisk_layer_find(kind);
    if (!ops) {
        snprintf(err, errlen, "unknown layer '%.40s' (known: dense, conv, maxpool, avgpool, gap, "
                 "flatten, relu, leaky_relu, gelu, tanh, sigmoid, dropout, batchnorm, "
                 "layernorm, res, embed, posembed, attention, and any registered kind)", kind);
        return -1;
    }
    l->ops = ops;
    return ops->parse(l, argc, argv, err, errlen);
}

/* Walks the items of spec; for each calls fn(item, position, ctx). */
static int for_each_item(const char *spec, int (*fn)(const char *, int, void *), void *ctx)
{
    char item[256];
    int pos = 0;
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len >= sizeof item)
            return brisk_error_set(BRISK_EINVAL, "model: item %d is too long", pos + 1);
        memcpy(item, p, len);
        item[len] = '\0';
        int err = fn(item, pos++, ctx);
        if (err < 0)
            return err;
        if (!comma)
            return pos;
        p = comma + 1;
    }
}

static int check_item(const char *item, int pos, void *ctx)
{
    (void)ctx;
    brisk_layer l;
    memset(&l, 0, sizeof l);
    char err[256];
    if (pos >= BRISK_MAX_LAYERS)
        return brisk_error_set(BRISK_EINVAL, "model: more than %d layers", BRISK_MAX_LAYERS);
    if (parse_item(item, &l, err, sizeof err))
        return brisk_error_set(BRISK_EINVAL, "model: item %d '%s': %s", pos + 1, item, err);
    return BRISK_OK;
}

int brisk_model_config_set(brisk_model_config *cfg, const char *spec, brisk_shape input)
{
    if (!spec || !*spec)
        return brisk_error_set(BRISK_EINVAL, "model: empty layer list");
    if (is_widths(spec)) {
        int err = brisk_model_config_mlp(cfg, spec, BRISK_ACT_RELU);
        if (err < 0)
            return err;
        if (brisk_shape_size(input) != brisk_shape_size(cfg->input))
            return brisk_error_set(BRISK_EINVAL, "model '%s': input width %zu does not match "
                                   "the data's %zu features per sample", spec,
                                   brisk_shape_size(cfg->input), brisk_shape_size(input));
        return BRISK_OK;
    }
    if (!strcmp(spec, "cnn"))
        spec = cnn_preset;
    else if (!strcmp(spec, "resnet"))
        spec = resnet_preset;
    if (!strncmp(spec, "gpt", 3) && (!spec[3] || spec[3] == ':'))
        return brisk_error_set(BRISK_EINVAL, "model: the gpt preset is sized by its data (the "
                               "vocabulary, the sequence length): build it with "
                               "brisk_model_config_gpt");
    if (strlen(spec) >= sizeof cfg->spec)
        return brisk_error_set(BRISK_EINVAL, "model: the layer list is longer than %d "
                               "characters", BRISK_MODEL_SPEC_MAX - 1);
    const int n = for_each_item(spec, check_item, NULL);
    if (n < 0)
        return n;
    snprintf(cfg->spec, sizeof cfg->spec, "%s", spec);
    cfg->input = input;
    return BRISK_OK;
}

int brisk_gpt_parse(const char *spec, brisk_gpt_config *g)
{
    if (!spec || !g)
        return brisk_error_set(BRISK_EINVAL, "model: gpt_parse: NULL argument");
    if (strncmp(spec, "gpt", 3) || (spec[3] && spec[3] != ':'))
        return brisk_error_set(BRISK_EINVAL, "model: '%s' is not the gpt preset", spec);
    int L = 4, C = 256, H = 4;
    double drop = 0;
    if (spec[3]) {
        char tail[64] = "";
        int used = 0;
        const int got = sscanf(spec + 4, "%d:%d:%d%n", &L, &C, &H, &used);
        if (got != 3 || (spec[4 + used] && spec[4 + used] != ':'))
            return brisk_error_set(BRISK_EINVAL, "model: '%s': expected gpt or gpt:LAYERS:"
                                   "CHANNELS:HEADS[:drop<P>]", spec);
        if (spec[4 + used]) {
            snprintf(tail, sizeof tail, "%s", spec + 5 + used);
            char *end = NULL;
            drop = strncmp(tail, "drop", 4) ? -1 : strtod(tail + 4, &end);
            if (!end || end == tail + 4 || *end || !(drop >= 0 && drop < 1))
                return brisk_error_set(BRISK_EINVAL, "model: '%s': '%s' is not drop<P> with P "
                                       "in [0, 1)", spec, tail);
        }
    }
    if (L < 1 || L > 16 || C < 1 || C > 8192 || H < 1 || H > C || C % H)
        return brisk_error_set(BRISK_EINVAL, "model: '%s': %d layers (1..16), %d channels "
                               "(1..8192) in %d heads (C must split into H heads)", spec, L, C,
                               H);
    g->layers = L;
    g->channels = C;
    g->heads = H;
    g->dropout = drop;
    return BRISK_OK;
}

int brisk_model_config_gpt(brisk_model_config *cfg, const brisk_gpt_config *g)
{
    if (!cfg || !g)
        return brisk_error_set(BRISK_EINVAL, "model: config_gpt: NULL argument");
    const int maxT = g->max_seq > 0 ? g->max_seq : g->seq_len;
    if (g->layers < 1 || g->layers > 16 || g->channels < 1 || g->channels > 8192 ||
        g->heads < 1 || g->channels % g->heads || g->vocab < 2 || g->vocab > 65536 ||
        g->seq_len < 1 || g->seq_len > 65536 || maxT < g->seq_len || maxT > (1 << 20) ||
        !(g->dropout >= 0 && g->dropout < 1))
        return brisk_error_set(BRISK_EINVAL, "model: gpt: %d layers (1..16), %d channels in %d "
                               "heads, vocabulary %d (2..65536), sequence length %d (1..65536, "
                               "at most the position table's %d), dropout %g ([0, 1))",
                               g->layers, g->channels, g->heads, g->vocab, g->seq_len, maxT,
                               g->dropout);
    const int C = g->channels, drop = g->dropout > 0;
    char spec[BRISK_MODEL_SPEC_MAX], d[32] = "", ad[32] = "";
    if (drop) {
        snprintf(d, sizeof d, "dropout:%.9g,", g->dropout);
        snprintf(ad, sizeof ad, ":drop%.9g", g->dropout);
    }
    size_t at = (size_t)snprintf(spec, sizeof spec, "embed:%d:%d,posembed:%d,%s", g->vocab, C,
                                 maxT, d);
    for (int l = 0; l < g->layers && at < sizeof spec; l++)
        at += (size_t)snprintf(spec + at, sizeof spec - at,
                               "layernorm,attention:%d%s,%sres:%d,layernorm,dense:%d,gelu:tanh,"
                               "dense:%d,%sres:%d,", g->heads, ad, d, 2 + drop, 4 * C, C, d,
                               4 + drop);
    if (at < sizeof spec)
        at += (size_t)snprintf(spec + at, sizeof spec - at, "layernorm,dense:%d:nobias:tied",
                               g->vocab);
    if (at >= sizeof spec)
        return brisk_error_set(BRISK_EINVAL, "model: gpt: the layer list is longer than %d "
                               "characters", BRISK_MODEL_SPEC_MAX - 1);
    const int err = brisk_model_config_set(cfg, spec, brisk_shape_seq(1, g->seq_len));
    if (err < 0)
        return err;
    cfg->loss = BRISK_LOSS_SOFTMAX_CE;
    cfg->init = BRISK_INIT_GPT2;
    cfg->label_smoothing = 0.0f;
    return BRISK_OK;
}

int brisk_model_config_add(brisk_model_config *cfg, const char *item)
{
    const size_t have = strlen(cfg->spec);
    int n = have ? for_each_item(cfg->spec, check_item, NULL) : 0;
    if (n < 0)
        return n;
    const int err = check_item(item ? item : "", n, NULL);
    if (err < 0)
        return err;
    if (have + 1 + strlen(item) >= sizeof cfg->spec)
        return brisk_error_set(BRISK_EINVAL, "model: the layer list is full");
    snprintf(cfg->spec + have, sizeof cfg->spec - have, "%s%s", have ? "," : "", item);
    return BRISK_OK;
}

/* ---- Creating a model ----------------------------------------------------------------- */

typedef struct build_ctx {
    brisk_model *m;
    brisk_shape shape;
} build_ctx;

static int build_item(const char *item, int pos, void *p)
{
    build_ctx *b = p;
    brisk_model *m = b->m;
    if (pos >= BRISK_MAX_LAYERS)
        return brisk_error_set(BRISK_EINVAL, "model: more than %d layers", BRISK_MAX_LAYERS);
    brisk_layer *l = &m->layers[pos];
    memset(l, 0, sizeof *l);
    l->index = pos;
    l->in = b->shape;
    char err[256];
    if (parse_item(item, l, err, sizeof err))
        return brisk_error_set(BRISK_EINVAL, "model: item %d '%s': %s", pos + 1, item, err);
    m->n_layers = pos + 1; /* from here on, destroy frees its state */
    if (l->ops->flags & BRISK_LAYER_SKIP) { /* the output it adds: K + 1 items back */
        const int from = pos - (int)l->args[0] - 1;
        if (from >= -1)
            l->skip_in = from < 0 ? m->cfg.input : m->layers[from].out;
    }
    int source = -1; /* the embedding whose table a BRISK_LAYER_TIES layer may use */
    for (int k = 0; k < pos && source < 0 && (l->ops->flags & BRISK_LAYER_TIES); k++)
        if ((m->layers[k].ops->flags & BRISK_LAYER_EMBEDDING) && m->layers[k].n_tensors > 0)
            source = k;
    l->tied = source >= 0 ? &m->layers[source].tensors[0] : NULL;
    if (l->ops->setup(l, err, sizeof err)) {
        if (brisk_error_detail()[0] && !err[0])
            snprintf(err, sizeof err, "%s", brisk_error_detail());
        char shape[64];
        brisk__shape_text(l->in, shape, sizeof shape);
        return brisk_error_set(BRISK_EINVAL, "model: item %d '%s' (input %s): %s", pos + 1,
                               item, shape, err);
    }
    if (source >= 0 && l->tied) /* the layer uses the table: its gradient comes first */
        m->layers[source].shared = 1;
    if (brisk_shape_size(l->out) < 1 || brisk_shape_size(l->out) > ((size_t)1 << 28))
        return brisk_error_set(BRISK_EINVAL, "model: item %d '%s': output of %zu features",
                               pos + 1, item, brisk_shape_size(l->out));
    if (brisk_shape_positions(l->out) != brisk_shape_positions(m->cfg.input)) {
        char in[64], out[64];
        brisk__shape_text(m->cfg.input, in, sizeof in);
        brisk__shape_text(l->out, out, sizeof out);
        return brisk_error_set(BRISK_EINVAL, "model: item %d '%s': output %s does not keep the "
                               "input's %d position%s %s (no layer changes the positions of a "
                               "sequence)", pos + 1, item, out,
                               brisk_shape_positions(m->cfg.input),
                               brisk_shape_positions(m->cfg.input) == 1 ? "" : "s", in);
    }
    for (int k = 0; k < l->n_tensors; k++)
        m->tensors[m->n_tensors++] = &l->tensors[k];
    b->shape = l->out;
    return BRISK_OK;
}

/* The initialisation of a weight: He before relu-like activations (or none), Glorot before
 * BRISK_LAYER_GLOROT_INIT ones (tanh, sigmoid); the first activation after the layer (past
 * normalisations) decides. */
static brisk_init weight_init(const brisk_model *m, int layer)
{
    if (m->cfg.init != BRISK_INIT_AUTO)
        return m->cfg.init;
    for (int l = layer + 1; l < m->n_layers; l++) {
        const brisk_layer_ops *ops = m->layers[l].ops;
        if (ops->flags & BRISK_LAYER_GLOROT_INIT)
            return BRISK_INIT_GLOROT;
        if (ops->act || (m->layers[l].n_tensors && !(ops->flags & BRISK_LAYER_NORMALIZES)))
            break;
    }
    return BRISK_INIT_HE;
}

/* GPT-2's initialisation: the model's res layers, and whether v is the weight that produces
 * a residual branch (the last FAN tensor of a layer followed, past dropout, by res). */
static int n_res(const brisk_model *m)
{
    int r = 0;
    for (int l = 0; l < m->n_layers; l++)
        r += (m->layers[l].ops->flags & BRISK_LAYER_SKIP) != 0;
    return r > 0 ? r : 1;
}

static int residual_weight(const brisk_model *m, const brisk_tensor_view *v)
{
    const brisk_layer *ly = &m->layers[v->layer];
    for (int k = ly->n_tensors - 1; k >= 0; k--)
        if (ly->tensors[k].init == BRISK_TENSOR_FAN) {
            if (&ly->tensors[k] != v)
                return 0;
            break;
        }
    for (int l = v->layer + 1; l < m->n_layers; l++) {
        const int flags = m->layers[l].ops->flags;
        if (flags & BRISK_LAYER_SKIP)
            return 1;
        if (!(flags & BRISK_LAYER_EVAL_IDENTITY))
            return 0;
    }
    return 0;
}

int brisk_model_create(const brisk_model_config *cfg, brisk_model **out)
{
    *out = NULL;
    if (!cfg)
        return brisk_error_set(BRISK_EINVAL, "model: no configuration");
    if (cfg->input.rank < 1 || cfg->input.rank > 3)
        return brisk_error_set(BRISK_EINVAL, "model: input rank %d (1, 2 or 3)", cfg->input.rank);
    if (cfg->input.c < 1 || cfg->input.h < 1 || cfg->input.w < 1 ||
        (cfg->input.rank != 3 && cfg->input.h != 1) ||
        (cfg->input.rank == 1 && cfg->input.w != 1) ||
        brisk_shape_size(cfg->input) > ((size_t)1 << 26))
        return brisk_error_set(BRISK_EINVAL, "model: input shape (%d, %d, %d) is not valid",
                               cfg->input.c, cfg->input.h, cfg->input.w);
    if ((int)cfg->loss < 0 || cfg->loss > BRISK_LOSS_MSE || (int)cfg->init < 0 ||
        cfg->init > BRISK_INIT_GPT2)
        return brisk_error_set(BRISK_EINVAL, "model: loss %d or init %d unknown",
                               (int)cfg->loss, (int)cfg->init);
    if (!memchr(cfg->spec, '\0', sizeof cfg->spec) || !cfg->spec[0])
        return brisk_error_set(BRISK_EINVAL, "model: empty layer list");
    brisk_model *m = calloc(1, sizeof *m);
    if (!m)
        return brisk_error_set(BRISK_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    build_ctx b = {m, cfg->input};
    int err = for_each_item(cfg->spec, build_item, &b);
    if (err < 0) {
        brisk_model_destroy(m);
        return err;
    }
    const int C = brisk_model_outputs(m);
    if (cfg->precision != BRISK_GEMM_FP32 && cfg->precision != BRISK_GEMM_BF16) {
        brisk_model_destroy(m);
        return brisk_error_set(BRISK_EINVAL, "precision %d: it must be BRISK_GEMM_FP32 (0) or "
                               "BRISK_GEMM_BF16 (1)", (int)cfg->precision);
    }
    if (!(cfg->label_smoothing >= 0.0f && cfg->label_smoothing < 1.0f) ||
        (cfg->label_smoothing != 0.0f && cfg->loss != BRISK_LOSS_SOFTMAX_CE)) {
        brisk_model_destroy(m);
        return brisk_error_set(BRISK_EINVAL, "label smoothing %g: %s",
                               (double)cfg->label_smoothing, cfg->loss != BRISK_LOSS_SOFTMAX_CE
                                   ? "only the ce loss has labels to smooth"
                                   : "it must be in [0, 1)");
    }
    if (cfg->loss == BRISK_LOSS_SOFTMAX_CE && C < 2) {
        brisk_model_destroy(m);
        return brisk_error_set(BRISK_EINVAL, "model: softmax cross-entropy needs >= 2 outputs, "
                               "the last layer has %d", C);
    }
    if (C > 65536) {
        brisk_model_destroy(m);
        return brisk_error_set(BRISK_EINVAL, "model: %d outputs (65536 at most)", C);
    }
    /* Lay out the tensors: trained ones in the slab, buffers in theirs, each 64-byte aligned. */
    size_t off = 0, boff = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        brisk_tensor_view *v = m->tensors[i];
        if (v->buffer) {
            v->offset = boff;
            boff = brisk__align_up(boff + v->count);
        } else {
            v->offset = off;
            off = brisk__align_up(off + v->count);
            m->n_params += v->count;
        }
    }
    m->slab_len = off;
    m->buffers_len = boff;
    for (int l = 0; l < m->n_layers; l++) {
        m->stats_off[l] = m->stats_len;
        m->stats_len += m->layers[l].stats_len;
    }
    /* Fusion: an elementwise activation right after a layer that can apply it. */
    for (int l = 1; l < m->n_layers; l++) {
        const brisk_layer *prev = &m->layers[l - 1], *cur = &m->layers[l];
        if (cur->ops->act && (prev->ops->flags & BRISK_LAYER_FUSES_ACT))
            m->fwd_fused[l] = 1;
        if (l + 1 < m->n_layers && cur->ops->act_grad &&
            (m->layers[l + 1].ops->flags &
             (BRISK_LAYER_FUSES_ACT | BRISK_LAYER_FUSES_ACT_BACKWARD)))
            m->bwd_fused[l] = 1;
    }
    /* A skip connection's source keeps its own backward: the gradient of its output (to
     * which the skip adds) must exist on its own. */
    for (int l = 0; l < m->n_layers; l++) {
        m->skip_from[l] = -2;
        if (m->layers[l].ops->flags & BRISK_LAYER_SKIP) {
            const int from = l - (int)m->layers[l].args[0] - 1;
            m->skip_from[l] = from;
            if (from >= 0)
                m->bwd_fused[from] = 0;
        }
    }
    /* In place: where nothing reads the pre-activation output (no skip adds it, the
     * activation's gradient needs only its own output, the layer's backward not its y). */
    for (int l = 0; l + 1 < m->n_layers; l++) {
        int read = 0;
        for (int k = 0; k < m->n_layers; k++)
            read |= m->skip_from[k] == l;
        m->act_in_place[l] = m->fwd_fused[l + 1] && !read &&
                             (m->layers[l].ops->flags & BRISK_LAYER_ACT_IN_PLACE) &&
                             (m->layers[l + 1].ops->flags & BRISK_LAYER_GRAD_FROM_OUTPUT);
    }
    /* Routed: a convolution, its ReLU and a max pool, where nothing below the convolution
     * has tensors (so no gradient is wanted below it) and no skip reads the gradient of
     * the convolution's or the ReLU's output. */
    for (int l = 2; l < m->n_layers; l++) {
        int ok = m->bwd_fused[l - 1] && brisk__conv_routable(&m->layers[l - 2],
                                                             &m->layers[l - 1], &m->layers[l]);
        for (int k = 0; k < l - 2 && ok; k++)
            ok = m->layers[k].n_tensors == 0;
        for (int k = 0; k < m->n_layers && ok; k++)
            ok = m->skip_from[k] != l - 2 && m->skip_from[k] != l - 1;
        m->bwd_routed[l] = (unsigned char)ok;
    }
    *out = m;
    return BRISK_OK;
}

void brisk_model_destroy(brisk_model *m)
{
    if (!m)
        return;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].ops && m->layers[l].ops->destroy)
            m->layers[l].ops->destroy(&m->layers[l]);
    free(m);
}

const brisk_model_config *brisk_model_get_config(const brisk_model *m) { return &m->cfg; }
int brisk_model_num_layers(const brisk_model *m) { return m->n_layers; }
size_t brisk_model_num_params(const brisk_model *m) { return m->n_params; }
size_t brisk_model_slab_len(const brisk_model *m) { return m->slab_len; }
size_t brisk_model_buffers_len(const brisk_model *m) { return m->buffers_len; }
size_t brisk_model_stats_len(const brisk_model *m) { return m->stats_len; }
int brisk_model_num_tensors(const brisk_model *m) { return m->n_tensors; }

int brisk_model_claims(const brisk_model *m)
{
    for (int l = 0; l < m->n_layers; l++)
        if (!(m->layers[l].ops->flags & BRISK_LAYER_ALIAS) && !m->layers[l].claims)
            return 0;
    return 1;
}

int brisk_model_outputs(const brisk_model *m)
{
    return (int)brisk_shape_features(m->layers[m->n_layers - 1].out);
}

int brisk_model_positions(const brisk_model *m)
{
    return brisk_shape_positions(m->cfg.input);
}

int brisk_model_vocab(const brisk_model *m)
{
    for (int l = 0; l < m->n_layers; l++)
        if ((m->layers[l].ops->flags & BRISK_LAYER_EMBEDDING) && m->layers[l].n_tensors > 0)
            return m->layers[l].tensors[0].shape[0];
    return 0;
}

const brisk_layer *brisk_model_layer(const brisk_model *m, int i)
{
    BRISK_ASSERT(i >= 0 && i < m->n_layers);
    return &m->layers[i];
}

const brisk_tensor_view *brisk_model_tensor(const brisk_model *m, int i)
{
    BRISK_ASSERT(i >= 0 && i < m->n_tensors);
    return m->tensors[i];
}

const brisk_tensor_view *brisk_model_find_tensor(const brisk_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i]->name, name))
            return m->tensors[i];
    return NULL;
}

int brisk_model_describe(const brisk_model *m, char *buf, size_t size)
{
    size_t at = 0;
    for (int l = 0; l < m->n_layers; l++) {
        char item[256];
        m->layers[l].ops->describe(&m->layers[l], item, sizeof item);
        const int w = snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0, "%s%s",
                               l ? "," : "", item);
        at += (size_t)(w > 0 ? w : 0);
    }
    return (int)at;
}

void brisk__shape_text(brisk_shape s, char *buf, size_t size)
{
    if (s.rank == 3)
        snprintf(buf, size, "(%d, %d, %d)", s.c, s.h, s.w);
    else if (s.rank == 2) /* (positions, features), as PyTorch's (B, T, C) per sample */
        snprintf(buf, size, "(%d, %d)", s.w, s.c);
    else
        snprintf(buf, size, "(%d)", s.c);
}

static int summary(const brisk_model *m, int max_rows, char *buf, size_t size);

int brisk_model_summary(const brisk_model *m, char *buf, size_t size)
{
    return summary(m, 0, buf, size);
}

int brisk_model_summary_batch(const brisk_model *m, int max_rows, char *buf, size_t size)
{
    return summary(m, max_rows < 1 ? 1 : max_rows, buf, size);
}

static void human(double v, const char *unit, char *out, size_t size)
{
    const char *p = v >= 1e12 ? "T" : v >= 1e9 ? "G" : v >= 1e6 ? "M" : v >= 1e3 ? "k" : "";
    const double d = v >= 1e12 ? 1e12 : v >= 1e9 ? 1e9 : v >= 1e6 ? 1e6 : v >= 1e3 ? 1e3 : 1;
    snprintf(out, size, v >= 1e3 ? "%.2f %s%s" : "%.0f %s%s", v / d, p, unit);
}

static int summary(const brisk_model *m, int max_rows, char *buf, size_t size)
{
    size_t at = 0;
#define PUT(...)                                                                           \
    do {                                                                                   \
        const int w_ = snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0,    \
                                __VA_ARGS__);                                              \
        at += (size_t)(w_ > 0 ? w_ : 0);                                                   \
    } while (0)
    char in[64];
    const int P = brisk_shape_positions(m->cfg.input);
    const int cols = max_rows * P, ld = brisk__row_stride(cols > 0 ? cols : 1);
    const char *per = P > 1 ? "token" : "sample";
    brisk__shape_text(m->cfg.input, in, sizeof in);
    if (max_rows)
        PUT("%-4s %-24s %-18s %12s %13s %13s\n", "#", "layer", "output shape", "parameters",
            P > 1 ? "FLOPs/token" : "FLOPs/sample", "activations");
    else
        PUT("%-4s %-24s %-18s %12s\n", "#", "layer", "output shape", "parameters");
    PUT("%-4s %-24s %-18s %12s\n", "", "input", in, "");
    double flops = 0, act = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const brisk_layer *ly = &m->layers[l];
        char item[256], out[64];
        ly->ops->describe(ly, item, sizeof item);
        brisk__shape_text(ly->out, out, sizeof out);
        size_t params = 0;
        for (int k = 0; k < ly->n_tensors; k++)
            if (!brisk_layer_tensor(ly, k)->buffer)
                params += brisk_layer_tensor(ly, k)->count;
        if (!max_rows) {
            PUT("%-4d %-24s %-18s %12zu\n", l, item, out, params);
            continue;
        }
        const double f = ly->ops->flops ? ly->ops->flops(ly) / P : 0;
        const double a = ((ly->ops->flags & BRISK_LAYER_ALIAS) ? 0
                          : (double)brisk_shape_features(ly->out) * ld * sizeof(float)) +
                         (ly->ops->scratch_bytes ? (double)ly->ops->scratch_bytes(ly, cols, ld)
                                                 : 0);
        char fs[32], as[32];
        human(f, "", fs, sizeof fs);
        human(a, "B", as, sizeof as);
        flops += f;
        act += a;
        PUT("%-4d %-24.24s %-18s %12zu %13s %13s\n", l, item, out, params, f > 0 ? fs : "-",
            as);
    }
    PUT("total: %zu trained parameters (%.2f MB as float32), %zu buffer values\n", m->n_params,
        (double)m->n_params * 4 / 1e6, m->buffers_len);
    if (max_rows) {
        char fs[32], ts[32], as[32];
        human(flops, "FLOPs", fs, sizeof fs);
        human(3 * flops, "FLOPs", ts, sizeof ts);
        human(act, "B", as, sizeof as);
        PUT("compute: %s per %s forward, about %s per %s a training step%s; activations: %s "
            "for a micro-batch of %d sample%s\n", fs, per, ts, per,
            m->cfg.precision == BRISK_GEMM_BF16 ? " (products on bfloat16 operands)" : "", as,
            max_rows, max_rows == 1 ? "" : "s");
    }
#undef PUT
    return (int)at;
}

/* ---- Slabs and init ------------------------------------------------------------------- */

static float *alloc_floats(size_t n)
{
    const size_t bytes = (n ? n : 16) * sizeof(float);
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

float *brisk_slab_alloc(const brisk_model *m) { return alloc_floats(m->slab_len); }

uint64_t brisk_model_checksum(const brisk_model *m, const float *params)
{
    const unsigned char *p = (const unsigned char *)params;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < m->slab_len * sizeof(float); i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
float *brisk_buffers_alloc(const brisk_model *m) { return alloc_floats(m->buffers_len); }
void brisk_slab_free(float *slab) { free(slab); }

void brisk_model_init_params(const brisk_model *m, uint64_t seed, float *params,
                             float *buffers)
{
    memset(params, 0, m->slab_len * sizeof(float));
    if (buffers)
        memset(buffers, 0, m->buffers_len * sizeof(float));
    brisk_model_init_params_part(m, seed, params, buffers, 0, 1);
}

void brisk_model_init_params_part(const brisk_model *m, uint64_t seed, float *params,
                                  float *buffers, int part, int parts)
{
    for (int t = 0; t < m->n_tensors; t++) {
        const brisk_tensor_view *v = m->tensors[t];
        float *p = (v->buffer ? buffers : params);
        if (!p)
            continue;
        p += v->offset;
        const uint32_t sub = (uint32_t)t; /* the tensor selects the sub-stream */
        /* This part's elements of the tensor: the values depend on the element only. */
        const size_t i0 = v->count * (size_t)part / (size_t)parts;
        const size_t i1 = v->count * (size_t)(part + 1) / (size_t)parts;
        if (v->init == BRISK_TENSOR_ZERO) {
            for (size_t i = i0; i < i1; i++)
                p[i] = 0.0f;
        } else if (v->init == BRISK_TENSOR_ONE) {
            for (size_t i = i0; i < i1; i++)
                p[i] = 1.0f;
        } else if (v->init == BRISK_TENSOR_EMBEDDING || (v->init == BRISK_TENSOR_FAN &&
                                                         m->cfg.init == BRISK_INIT_GPT2)) {
            const float std = m->cfg.init != BRISK_INIT_GPT2 ? 1.0f
                              : residual_weight(m, v) ? 0.02f / sqrtf((float)n_res(m))
                                                      : 0.02f;
            for (size_t i = i0; i < i1; i++)
                p[i] = std * brisk_rng_normal(seed, BRISK_RNG_STREAM_INIT, sub, i);
        } else if (v->init == BRISK_TENSOR_FAN) {
            if (weight_init(m, v->layer) == BRISK_INIT_HE) {
                /* Kaiming normal, fan_in mode: std = sqrt(2 / fan_in) (He et al., 2015). */
                const float std = sqrtf(2.0f / (float)v->fan_in);
                for (size_t i = i0; i < i1; i++)
                    p[i] = std * brisk_rng_normal(seed, BRISK_RNG_STREAM_INIT, sub, i);
            } else {
                /* Glorot uniform: a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio). */
                const float a = sqrtf(6.0f / (float)(v->fan_in + v->fan_out));
                for (size_t i = i0; i < i1; i++)
                    p[i] = a * (2.0f * brisk_rng_uniform(seed, BRISK_RNG_STREAM_INIT, sub, i) -
                                1.0f);
            }
        }
    }
}

/* ---- Workspace ------------------------------------------------------------------------ */

/* Layer l's output buffer, scratch and the gradients live in one allocation; flatten
 * (ALIAS) shares its input's buffer. cur[pass][l] is where layer l's output is in a pass of
 * that kind (in evaluation, dropout's output is its input), fixed at creation; pass is the
 * kind of the last forward, written by the team's thread 0 before the pass's first barrier
 * (the threads of a team only read the rest of the workspace's bookkeeping). */
struct brisk_workspace {
    const brisk_model *model;
    int max_rows, ld;
    int positions, max_cols;          /* columns per sample; max_rows * positions */
    float *mem;                       /* the one allocation */
    size_t mem_mapped;                /* its bytes where it is a mapping of its own, or 0 */
    float *input;                     /* (max_rows, D) row-major, filled by the caller */
    float *x0;                        /* (D, ld) feature-major */
    float *out[BRISK_MAX_LAYERS];     /* each layer's own output buffer */
    const float *cur[2][BRISK_MAX_LAYERS];
    brisk_pass pass;
    brisk_pass_keys keys;             /* the last forward's, in columns (for backward) */
    void *scratch[BRISK_MAX_LAYERS];
    float *stash[BRISK_MAX_LAYERS];   /* skips from a layer: their dy, until it joins the
                                       * source's gradient (NULL for the others) */
    float *grad[2];                   /* ping-pong: (largest size, ld) */
    double *sample_loss;              /* (max_cols) each column's loss in the last pass */
    uint8_t *sample_right;            /* (max_cols) whether its prediction was right */
    float *col_tmp;                   /* (2 max_cols) the token loss's maxima and sums */
};

/* Workspaces of at least this many bytes are mappings of their own (brisk_workspace_create). */
#define WS_MAP_BYTES ((size_t)1 << 20)

/* Columns of a workspace of max_rows samples (ld: their count rounded up to 16, and past a
 * multiple of 4 KiB: brisk__row_stride). */
static int64_t workspace_cols(const brisk_model *m, int max_rows)
{
    return (int64_t)max_rows * brisk_shape_positions(m->cfg.input);
}

/* Sizes in floats of the workspace's parts, in allocation order; returns the total. */
static size_t workspace_layout(const brisk_model *m, int max_rows, size_t *sizes)
{
    const int cols = (int)workspace_cols(m, max_rows), ld = brisk__row_stride(cols);
    const size_t D = brisk_shape_size(m->cfg.input), F = brisk_shape_features(m->cfg.input);
    size_t k = 0, total = 0, maxsize = F;
    sizes[k++] = brisk__align_up((size_t)max_rows * D);
    sizes[k++] = brisk__align_up(F * (size_t)ld);
    for (int l = 0; l < m->n_layers; l++) {
        const brisk_layer *ly = &m->layers[l];
        const size_t o = brisk_shape_features(ly->out);
        maxsize = o > maxsize ? o : maxsize;
        sizes[k++] = (ly->ops->flags & BRISK_LAYER_ALIAS) ? 0 : brisk__align_up(o * (size_t)ld);
        const size_t sb = ly->ops->scratch_bytes ? ly->ops->scratch_bytes(ly, cols, ld) : 0;
        sizes[k++] = brisk__align_up((sb + sizeof(float) - 1) / sizeof(float));
        /* A skip from a layer keeps its dy until the backward pass reaches that layer (a skip
         * from the model's input needs nothing: the input has no gradient). */
        sizes[k++] = m->skip_from[l] >= 0 ? brisk__align_up(o * (size_t)ld) : 0;
    }
    sizes[k++] = brisk__align_up(maxsize * (size_t)ld);
    sizes[k++] = brisk__align_up(maxsize * (size_t)ld);
    for (size_t i = 0; i < k; i++)
        total += sizes[i];
    return total;
}

size_t brisk_workspace_bytes(const brisk_model *m, int max_rows)
{
    size_t sizes[3 * BRISK_MAX_LAYERS + 4];
    return workspace_layout(m, max_rows, sizes) * sizeof(float) +
           (size_t)workspace_cols(m, max_rows) * 17;
}

int brisk_workspace_create(const brisk_model *m, int max_rows, brisk_workspace **out)
{
    *out = NULL;
    if (max_rows < 1 || max_rows > (1 << 24) || workspace_cols(m, max_rows) > (1 << 24))
        return brisk_error_set(BRISK_EINVAL, "workspace: max_rows %d out of 1..%d", max_rows,
                               (1 << 24) / brisk_shape_positions(m->cfg.input));
    brisk_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory");
    ws->model = m;
    ws->max_rows = max_rows;
    ws->positions = brisk_shape_positions(m->cfg.input);
    ws->max_cols = (int)workspace_cols(m, max_rows);
    ws->ld = brisk__row_stride(ws->max_cols); /* rows not 4 KiB apart (cache sets) */
    size_t sizes[3 * BRISK_MAX_LAYERS + 4];
    const size_t total = workspace_layout(m, max_rows, sizes);
    /* Zeroed, so that every padding column starts finite. A large one is a mapping of fresh
     * pages, zero until written: memory a run never touches (scratch for team members it does
     * not have, layers' room for paths it does not take) costs neither time nor RSS. */
    const size_t bytes = (total ? total : 16) * sizeof(float);
    if (bytes >= WS_MAP_BYTES) {
        void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map != MAP_FAILED) {
            ws->mem = map;
            ws->mem_mapped = bytes;
        }
    }
    if (!ws->mem_mapped)
        ws->mem = alloc_floats(total);
    ws->sample_loss = malloc((size_t)ws->max_cols * sizeof *ws->sample_loss);
    ws->sample_right = malloc((size_t)ws->max_cols);
    ws->col_tmp = malloc(2 * (size_t)ws->max_cols * sizeof *ws->col_tmp);
    if (!ws->mem || !ws->sample_loss || !ws->sample_right || !ws->col_tmp) {
        brisk_workspace_destroy(ws);
        return brisk_error_set(BRISK_ENOMEM, "workspace: out of memory (%zu floats)", total);
    }
    float *p = ws->mem;
    size_t k = 0;
    ws->input = p;
    p += sizes[k++];
    ws->x0 = p;
    p += sizes[k++];
    const float *prev = ws->x0;
    for (int l = 0; l < m->n_layers; l++) {
        const int alias = m->layers[l].ops->flags & BRISK_LAYER_ALIAS;
        ws->out[l] = alias ? (float *)(uintptr_t)prev : p;
        p += sizes[k++];
        ws->scratch[l] = sizes[k] ? p : NULL;
        p += sizes[k++];
        ws->stash[l] = sizes[k] ? p : NULL;
        p += sizes[k++];
        prev = ws->out[l];
    }
    for (int pass = 0; pass < 2; pass++) {
        const float *x = ws->x0;
        for (int l = 0; l < m->n_layers; l++) {
            const int flags = m->layers[l].ops->flags;
            if ((flags & BRISK_LAYER_ALIAS) ||
                (pass == BRISK_PASS_EVAL && (flags & BRISK_LAYER_EVAL_IDENTITY)))
                ws->cur[pass][l] = x;
            else if (pass == BRISK_PASS_TRAIN && m->act_in_place[l])
                x = ws->cur[pass][l] = ws->out[l + 1]; /* overwritten by the activation */
            else
                x = ws->cur[pass][l] = ws->out[l];
        }
    }
    ws->pass = BRISK_PASS_TRAIN;
    ws->grad[0] = p;
    p += sizes[k++];
    ws->grad[1] = p;
    *out = ws;
    return BRISK_OK;
}

void brisk_workspace_destroy(brisk_workspace *ws)
{
    if (!ws)
        return;
    if (ws->mem_mapped)
        munmap(ws->mem, ws->mem_mapped);
    else
        free(ws->mem);
    free(ws->sample_loss);
    free(ws->sample_right);
    free(ws->col_tmp);
    free(ws);
}

float *brisk_workspace_input(brisk_workspace *ws) { return ws->input; }
int brisk_workspace_ld(const brisk_workspace *ws) { return ws->ld; }

const float *brisk_workspace_output(const brisk_workspace *ws, int layer)
{
    BRISK_ASSERT(layer >= 0 && layer < ws->model->n_layers);
    return ws->cur[ws->pass][layer];
}

/* ---- Passes --------------------------------------------------------------------------- */

void brisk_model_forward(const brisk_model *m, const float *params, const float *buffers,
                         brisk_workspace *ws, int n, brisk_pass pass,
                         const brisk_pass_keys *keys, float *stats, const brisk_team *team)
{
    BRISK_ASSERT(n >= 1 && n <= ws->max_rows);
    const int D = (int)brisk_shape_size(m->cfg.input), ld = ws->ld, P = ws->positions;
    const int F = (int)brisk_shape_features(m->cfg.input), cols = n * P;
    /* The input, feature-major (a sequence's positions are columns: its rows of F features
     * are the input's rows); parallelize over columns. */
    brisk_share sh;
    brisk_share_begin(&sh, team, cols, brisk_share_grain(team, cols, 4, 16));
    for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
        brisk__transpose(ws->input, (size_t)F, ws->x0, (size_t)ld, (int)i0, (int)i1, 0, F);
    brisk_share_begin(&sh, team, 1, 1); /* one member records the pass, for the others */
    for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);) {
        ws->pass = pass;
        ws->keys = keys ? *keys : (brisk_pass_keys){0};
        ws->keys.sample0 *= P;
    }
    brisk_team_barrier(team);
    const float *x = ws->x0;
    for (int l = 0; l < m->n_layers; l++) {
        const brisk_layer *ly = &m->layers[l];
        if ((ly->ops->flags & BRISK_LAYER_ALIAS) ||
            (pass == BRISK_PASS_EVAL && (ly->ops->flags & BRISK_LAYER_EVAL_IDENTITY)))
            continue;
        if (m->fwd_fused[l]) { /* done by the layer before */
            x = ws->out[l];
            continue;
        }
        const int fuse = l + 1 < m->n_layers && m->fwd_fused[l + 1];
        const brisk_forward_args a = {
            .x = x, .y = (float *)(uintptr_t)ws->cur[pass][l], .n = cols, .ld = ld, .positions = P,
            .x_rows = l == 0 ? ws->input : NULL, .x_rows_ld = D,
            .params = params, .buffers = buffers,
            .scratch = ws->scratch[l], .pass = pass, .seed = keys ? keys->seed : 0,
            .step = keys ? keys->step : 0, .sample0 = keys ? keys->sample0 * P : 0,
            .stats = stats && ly->stats_len ? stats + m->stats_off[l] : NULL,
            .act = fuse ? &m->layers[l + 1] : NULL, .act_y = fuse ? ws->out[l + 1] : NULL,
            .team = team,
            .skip = m->skip_from[l] == -2 ? NULL
                    : m->skip_from[l] < 0 ? ws->x0 : ws->cur[pass][m->skip_from[l]],
            .precision = m->cfg.precision};
        ly->ops->forward(ly, &a);
        brisk_team_barrier(team);
        x = ws->out[l];
        if (fuse) {
            x = ws->out[l + 1];
            l++;
        }
    }
}

/* Sample i's loss (and whether the prediction was right); with want_grad, also its gradient
 * with respect to the logits, scaled. Logits and gradients are strided by ld (feature-major). */
/* Sample i's loss against label y, or against the C float targets tgt[0, C) when tgt is not
 * NULL (mse, bce; *right is then 0). */
static double sample_loss(const brisk_model *m, const float *zi, float *di, size_t ld, int y,
                          const float *tgt, float grad_scale, int want_grad, int *right);

/* Mixup's sample loss (ce): lam * CE(z, a) + (1 - lam) * CE(z, b), each with the model's
 * label smoothing, which is the cross-entropy against the mixed target q = (1 - eps) (lam
 * onehot(a) + (1 - lam) onehot(b)) + eps / C: loss = logsumexp(z) - sum_c q_c z_c, dloss/dz =
 * softmax(z) - q. Right: the prediction is the label of the larger weight. */
static double sample_loss_mixed(const brisk_model *m, const float *zi, float *di, size_t ld,
                                int a, int b, double lam, float grad_scale, int want_grad,
                                int *right)
{
    const int C = brisk_model_outputs(m);
    int arg = 0;
    for (int c = 1; c < C; c++)
        if (zi[c * ld] > zi[arg * ld])
            arg = c;
    const float zmax = zi[arg * ld];
    double s = 0.0, zsum = 0.0;
    for (int c = 0; c < C; c++) {
        s += exp((double)(zi[c * ld] - zmax));
        zsum += (double)zi[c * ld];
    }
    *right = arg == (lam >= 0.5 ? a : b);
    const double eps = m->cfg.label_smoothing, off = eps / C, inv = 1.0 / s;
    const double wa = (1.0 - eps) * lam, wb = (1.0 - eps) * (1.0 - lam);
    if (want_grad)
        for (int c = 0; c < C; c++)
            di[c * ld] = grad_scale * (float)(exp((double)(zi[c * ld] - zmax)) * inv - off -
                                              (c == a ? wa : 0.0) - (c == b ? wb : 0.0));
    return log(s) + (double)zmax - wa * (double)zi[(size_t)a * ld] -
           wb * (double)zi[(size_t)b * ld] - off * zsum;
}

static double sample_loss(const brisk_model *m, const float *zi, float *di, size_t ld, int y,
                          const float *tgt, float grad_scale, int want_grad, int *right)
{
    const int C = brisk_model_outputs(m);
    BRISK_ASSERT(tgt ? m->cfg.loss != BRISK_LOSS_SOFTMAX_CE : C == 1 ? y <= 1 : y < C);
    if (m->cfg.loss == BRISK_LOSS_SOFTMAX_CE) {
        /* loss = logsumexp(z) - z_y; dloss/dz = softmax(z) - onehot(y). */
        int arg = 0;
        for (int c = 1; c < C; c++)
            if (zi[c * ld] > zi[arg * ld])
                arg = c;
        const float zmax = zi[arg * ld];
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += exp((double)(zi[c * ld] - zmax));
        *right = arg == y;
        const double eps = m->cfg.label_smoothing;
        if (eps != 0.0) {
            /* Smoothed target q = (1 - eps) onehot(y) + eps / C: loss = logsumexp(z) -
             * sum_c q_c z_c, dloss/dz = softmax(z) - q. */
            const double off = eps / C, inv = 1.0 / s;
            double zsum = 0.0;
            for (int c = 0; c < C; c++)
                zsum += (double)zi[c * ld];
            if (want_grad)
                for (int c = 0; c < C; c++)
                    di[c * ld] = grad_scale * (float)(exp((double)(zi[c * ld] - zmax)) * inv -
                                                      off - (c == y ? 1.0 - eps : 0.0));
            return log(s) + (double)zmax - (1.0 - eps) * (double)zi[(size_t)y * ld] - off * zsum;
        }
        if (want_grad) {
            const double inv = 1.0 / s;
            for (int c = 0; c < C; c++)
                di[c * ld] = grad_scale * (float)(exp((double)(zi[c * ld] - zmax)) * inv - (c == y));
        }
        return log(s) + (double)zmax - (double)zi[(size_t)y * ld];
    }
    /* Per-sample loss is the mean over the C outputs (torch's 'mean' over B x C). */
    const float invC = 1.0f / (float)C;
    double ls = 0.0;
    int pred;
    if (C == 1) {
        pred = m->cfg.loss == BRISK_LOSS_BCE_LOGITS ? zi[0] > 0.0f : zi[0] > 0.5f;
    } else {
        pred = 0;
        for (int c = 1; c < C; c++)
            if (zi[c * ld] > zi[pred * ld])
                pred = c;
    }
    *right = !tgt && pred == y;
    for (int c = 0; c < C; c++) {
        const float t = tgt ? tgt[c] : C == 1 ? (float)y : (float)(c == y), zc = zi[c * ld];
        if (m->cfg.loss == BRISK_LOSS_BCE_LOGITS) {
            /* Stable form: max(z, 0) - z t + log(1 + exp(-|z|)); d/dz = sigmoid(z) - t. */
            ls += (zc > 0 ? (double)zc : 0) - (double)zc * t + log1p(exp(-fabs((double)zc)));
            if (want_grad)
                di[c * ld] = grad_scale * invC * (1.0f / (1.0f + expf(-zc)) - t);
        } else {
            const double e = (double)zc - t;
            ls += e * e;
            if (want_grad)
                di[c * ld] = grad_scale * invC * 2.0f * (zc - t);
        }
    }
    return ls / C;
}

int brisk_model_loss(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels, int n,
                     float grad_scale, brisk_metrics *acc, const brisk_team *team)
{
    return brisk_model_loss_targets(m, ws, labels, NULL, n, grad_scale, acc, team);
}

static int loss_rows(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                     const uint8_t *labels_b, double lam, const float *targets, int n,
                     float grad_scale, brisk_metrics *acc, const brisk_team *team);

int brisk_model_loss_mixed(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                           const uint8_t *labels_b, double lam, int n, float grad_scale,
                           brisk_metrics *acc, const brisk_team *team)
{
    if (!m || !labels_b || !(lam >= 0 && lam <= 1) || m->cfg.loss != BRISK_LOSS_SOFTMAX_CE)
        return brisk_error_set(BRISK_EINVAL, "model_loss_mixed: %s",
                               !m          ? "NULL model"
                               : !labels_b ? "labels_b is NULL"
                               : !(lam >= 0 && lam <= 1) ? "lam is not in [0, 1]"
                                                         : "mixup needs the ce loss");
    return loss_rows(m, ws, labels, labels_b, lam, NULL, n, grad_scale, acc, team);
}

int brisk_model_loss_targets(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                             const float *targets, int n, float grad_scale, brisk_metrics *acc,
                             const brisk_team *team)
{
    return loss_rows(m, ws, labels, NULL, 1.0, targets, n, grad_scale, acc, team);
}

static int loss_rows(const brisk_model *m, brisk_workspace *ws, const uint8_t *labels,
                     const uint8_t *labels_b, double lam, const float *targets, int n,
                     float grad_scale, brisk_metrics *acc, const brisk_team *team)
{
    /* Checked by every thread of a team alike, so that all return the same. */
    if (!m || !ws || !acc || n < 0 || n > ws->max_rows || (n > 0 && !labels && !targets))
        return brisk_error_set(BRISK_EINVAL, "model_loss: n = %d (workspace rows %d), labels "
                               "%s, targets %s", n, ws ? ws->max_rows : 0,
                               labels ? "given" : "NULL", targets ? "given" : "NULL");
    const int C = brisk_model_outputs(m);
    if (ws->positions > 1)
        return brisk_error_set(BRISK_EINVAL, "model_loss: a sequence model takes a target per "
                               "position (brisk_model_loss_tokens)");
    if (targets && m->cfg.loss == BRISK_LOSS_SOFTMAX_CE)
        return brisk_error_set(BRISK_EINVAL, "model_loss: the ce loss takes class labels, not "
                               "float targets");
    for (int i = 0; !targets && i < n; i++)
        if (labels[i] > (C == 1 ? 1 : C - 1) || (labels_b && labels_b[i] > C - 1))
            return brisk_error_set(BRISK_EINVAL, "model_loss: label %d of row %d is out of range "
                                   "for %d output%s",
                                   labels[i] > (C == 1 ? 1 : C - 1) ? labels[i] : labels_b[i], i,
                                   C, C == 1 ? "" : "s");
    const size_t ld = (size_t)ws->ld;
    const float *zl = ws->cur[ws->pass][m->n_layers - 1]; /* (C, ld) */
    float *dz = ws->grad[0];                     /* (C, ld) */
    /* Parallelize over samples; each sample's loss is kept, then summed in sample order. */
    brisk_share sh;
    brisk_share_begin(&sh, team, n, brisk_share_grain(team, n, 4, 8));
    for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
    for (long long i = i0; i < i1; i++) {
        int right;
        ws->sample_loss[i] =
            labels_b ? sample_loss_mixed(m, zl + i, dz + i, ld, labels[i], labels_b[i], lam,
                                         grad_scale, grad_scale != 0.0f, &right)
                     : sample_loss(m, zl + i, dz + i, ld, targets ? 0 : labels[i],
                                   targets ? targets + (size_t)i * C : NULL, grad_scale,
                                   grad_scale != 0.0f, &right);
        ws->sample_right[i] = (uint8_t)right;
    }
    brisk_team_barrier(team);
    if (team && team->ith != 0)
        return BRISK_OK;
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) {
        loss_sum += ws->sample_loss[i];
        correct += ws->sample_right[i];
    }
    acc->loss_sum += loss_sum;
    acc->correct += correct;
    acc->count += n;
    return BRISK_OK;
}

/* Columns [j0, j1) of the token loss (at most TOKEN_BLOCK of them): z and dz point at their
 * first column of row 0; y their targets. Each row of the logits is read as a run of columns,
 * so the passes over the vocabulary vectorise across positions. */
#define TOKEN_BLOCK 64
static BRISK_MULTIVERSION void token_block(const float *z, float *dz, size_t ld, int C, int w,
                                           const int32_t *y, float grad_scale, int want_grad,
                                           float eps, float *mx, float *sum, double *loss,
                                           uint8_t *right)
{
    int arg[TOKEN_BLOCK];
    for (int j = 0; j < w; j++) {
        mx[j] = z[j];
        arg[j] = 0;
    }
    for (int c = 1; c < C; c++) {
        const float *row = z + (size_t)c * ld;
        for (int j = 0; j < w; j++) {
            const int more = row[j] > mx[j];
            mx[j] = more ? row[j] : mx[j];
            arg[j] = more ? c : arg[j];
        }
    }
    for (int j = 0; j < w; j++)
        sum[j] = 0.0f;
    for (int c = 0; c < C; c++) {
        const float *row = z + (size_t)c * ld;
        float *drow = dz + (size_t)c * ld;
        if (want_grad)
            for (int j = 0; j < w; j++) {
                const float e = brisk__expf(row[j] - mx[j]);
                drow[j] = e;
                sum[j] += e;
            }
        else
            for (int j = 0; j < w; j++)
                sum[j] += brisk__expf(row[j] - mx[j]);
    }
    for (int j = 0; j < w; j++) {
        loss[j] = log((double)sum[j]) + (double)mx[j] - (double)z[(size_t)y[j] * ld + j];
        right[j] = (uint8_t)(arg[j] == y[j]);
    }
    if (eps != 0.0f) { /* label smoothing: as sample_loss */
        double zsum[TOKEN_BLOCK];
        for (int j = 0; j < w; j++)
            zsum[j] = 0.0;
        for (int c = 0; c < C; c++) {
            const float *row = z + (size_t)c * ld;
            for (int j = 0; j < w; j++)
                zsum[j] += (double)row[j];
        }
        const double off = (double)eps / C;
        for (int j = 0; j < w; j++)
            loss[j] = log((double)sum[j]) + (double)mx[j] -
                      (1.0 - (double)eps) * (double)z[(size_t)y[j] * ld + j] - off * zsum[j];
        if (!want_grad)
            return;
        float inv[TOKEN_BLOCK];
        for (int j = 0; j < w; j++)
            inv[j] = grad_scale / sum[j];
        const float shift = grad_scale * (float)off;
        for (int c = 0; c < C; c++) {
            float *drow = dz + (size_t)c * ld;
            for (int j = 0; j < w; j++)
                drow[j] = drow[j] * inv[j] - shift;
        }
        for (int j = 0; j < w; j++)
            dz[(size_t)y[j] * ld + j] -= grad_scale * (1.0f - eps);
        return;
    }
    if (!want_grad)
        return;
    float inv[TOKEN_BLOCK];
    for (int j = 0; j < w; j++)
        inv[j] = grad_scale / sum[j];
    for (int c = 0; c < C; c++) {
        float *drow = dz + (size_t)c * ld;
        for (int j = 0; j < w; j++)
            drow[j] *= inv[j];
    }
    for (int j = 0; j < w; j++)
        dz[(size_t)y[j] * ld + j] -= grad_scale;
}

int brisk_model_loss_tokens(const brisk_model *m, brisk_workspace *ws, const int32_t *targets,
                            int n, float grad_scale, brisk_metrics *acc, const brisk_team *team)
{
    /* Checked by every thread of a team alike, so that all return the same. */
    if (!m || !ws || !acc || n < 0 || n > ws->max_rows || (n > 0 && !targets))
        return brisk_error_set(BRISK_EINVAL, "model_loss_tokens: n = %d (workspace rows %d), "
                               "targets %s", n, ws ? ws->max_rows : 0,
                               targets ? "given" : "NULL");
    if (m->cfg.loss != BRISK_LOSS_SOFTMAX_CE)
        return brisk_error_set(BRISK_EINVAL, "model_loss_tokens: the %s loss takes no target "
                               "classes (ce does)", brisk_loss_name(m->cfg.loss));
    const int C = brisk_model_outputs(m), cols = n * ws->positions;
    for (int j = 0; j < cols; j++)
        if (targets[j] < 0 || targets[j] >= C)
            return brisk_error_set(BRISK_EINVAL, "model_loss_tokens: target %d of position %d "
                                   "(sample %d) is out of range for %d outputs", targets[j],
                                   j % ws->positions, j / ws->positions, C);
    const size_t ld = (size_t)ws->ld;
    const float *zl = ws->cur[ws->pass][m->n_layers - 1]; /* (C, ld) */
    float *dz = ws->grad[0];
    /* Claimed in whole token blocks, so that the blocks are those of one thread alone. */
    brisk_share sh;
    brisk_share_begin(&sh, team, cols,
                      (brisk_share_grain(team, cols, 4, TOKEN_BLOCK) + TOKEN_BLOCK - 1) /
                          TOKEN_BLOCK * TOKEN_BLOCK);
    for (long long j0, j1; brisk_share_next(&sh, &j0, &j1);)
    for (long long j = j0; j < j1; j += TOKEN_BLOCK) {
        const int w = (int)(j1 - j < TOKEN_BLOCK ? j1 - j : TOKEN_BLOCK);
        token_block(zl + j, dz + j, ld, C, w, targets + j, grad_scale, grad_scale != 0.0f,
                    m->cfg.label_smoothing, ws->col_tmp + j, ws->col_tmp + ws->max_cols + j,
                    ws->sample_loss + j, ws->sample_right + j);
    }
    brisk_team_barrier(team);
    if (team && team->ith != 0)
        return BRISK_OK;
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int j = 0; j < cols; j++) {
        loss_sum += ws->sample_loss[j];
        correct += ws->sample_right[j];
    }
    acc->loss_sum += loss_sum;
    acc->correct += correct;
    acc->count += cols;
    return BRISK_OK;
}

static int routing = 1;

void brisk__model_set_routing(int on) { routing = on != 0; }

void brisk_model_backward(const brisk_model *m, const float *params, const float *buffers,
                          brisk_workspace *ws, int n, float *grads, const brisk_team *team)
{
    const int D = (int)brisk_shape_size(m->cfg.input), P = ws->positions, cols = n * P;
    int g = 0; /* ws->grad[g] holds the gradient of the current layer's output */
    for (int l = m->n_layers - 1; l >= 0; l--) {
        const brisk_layer *ly = &m->layers[l];
        /* The skip connections from this layer's output add their dy to its gradient (in the
         * order of the skip layers, from the top). */
        for (int r = m->n_layers - 1; r > l; r--) {
            if (m->skip_from[r] != l)
                continue;
            const long long len = (long long)brisk_shape_features(ly->out) * ws->ld;
            float *gr = ws->grad[g];
            const float *st = ws->stash[r];
            brisk_share sh;
            brisk_share_begin(&sh, team, len, brisk_share_grain(team, len, 4, 1024));
            for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
                for (long long i = i0; i < i1; i++)
                    gr[i] += st[i];
            brisk_team_barrier(team);
        }
        if ((ly->ops->flags & BRISK_LAYER_ALIAS) || m->bwd_fused[l])
            continue; /* the same gradient, or done by the layer above */
        if (m->bwd_routed[l] && routing) {
            /* The first convolution's gradients from this pool's dy; nothing below wants
             * one. */
            const brisk_layer *conv = &m->layers[l - 2];
            const brisk_backward_args a = {
                .x = l > 2 ? ws->cur[BRISK_PASS_TRAIN][l - 3] : ws->x0,
                .y = ws->cur[BRISK_PASS_TRAIN][l - 2], .n = cols, .ld = ws->ld,
                .positions = P, .params = params, .buffers = buffers, .grads = grads,
                .scratch = ws->scratch[l - 2], .team = team, .seed = ws->keys.seed,
                .step = ws->keys.step, .sample0 = ws->keys.sample0,
                .precision = m->cfg.precision};
            brisk__conv_backward_routed(conv, &a, ws->grad[g], ws->cur[BRISK_PASS_TRAIN][l],
                                        ws->scratch[l]);
            brisk_team_barrier(team);
            break;
        }
        /* Below the first layer with tensors there is nothing to compute. */
        int below = 0;
        for (int k = 0; k < l && !below; k++)
            below = m->layers[k].n_tensors > 0;
        if (ly->n_tensors == 0 && !below)
            break;
        const float *x = l ? ws->cur[BRISK_PASS_TRAIN][l - 1] : ws->x0;
        const int fuse = l > 0 && m->bwd_fused[l - 1];
        const brisk_backward_args a = {
            .x = x, .y = ws->cur[BRISK_PASS_TRAIN][l], .dy = ws->grad[g],
            .dx = below ? ws->grad[g ^ 1] : NULL, .n = cols, .ld = ws->ld, .positions = P,
            .x_rows = l == 0 ? ws->input : NULL, .x_rows_ld = D,
            .params = params, .buffers = buffers, .grads = grads, .scratch = ws->scratch[l],
            .act = fuse ? &m->layers[l - 1] : NULL,
            .act_x = fuse ? (l >= 2 ? ws->cur[BRISK_PASS_TRAIN][l - 2] : ws->x0) : NULL,
            .act_y = fuse ? ws->cur[BRISK_PASS_TRAIN][l - 1] : NULL, .team = team,
            .seed = ws->keys.seed, .step = ws->keys.step, .sample0 = ws->keys.sample0,
            .precision = m->cfg.precision};
        if (ws->stash[l]) { /* keep dy for the skip's source */
            const long long len = (long long)brisk_shape_features(ly->out) * ws->ld;
            brisk_share sh;
            brisk_share_begin(&sh, team, len, brisk_share_grain(team, len, 4, 1024));
            for (long long i0, i1; brisk_share_next(&sh, &i0, &i1);)
                memcpy(ws->stash[l] + i0, ws->grad[g] + i0, (size_t)(i1 - i0) * sizeof(float));
        }
        ly->ops->backward(ly, &a);
        brisk_team_barrier(team);
        g ^= 1;
    }
}

void brisk_model_merge_stats(const brisk_model *m, float *buffers, const float *const *stats,
                             int S)
{
    if (!m->stats_len || S < 1)
        return;
    const float **view = malloc((size_t)S * sizeof *view);
    BRISK_ASSERT(view); /* S pointers: a few KB at most */
    for (int l = 0; l < m->n_layers; l++) {
        const brisk_layer *ly = &m->layers[l];
        if (!ly->stats_len || !ly->ops->merge_stats)
            continue;
        for (int s = 0; s < S; s++)
            view[s] = stats[s] + m->stats_off[l];
        ly->ops->merge_stats(ly, buffers, view, S);
    }
    free(view);
}

/* ---- Names ---------------------------------------------------------------------------- */

static const char *const loss_names[] = {"ce", "bce", "mse"};

const char *brisk_act_name(brisk_act a) { return act_kinds[a]; }
const char *brisk_loss_name(brisk_loss l) { return loss_names[l]; }

int brisk_act_parse(const char *s)
{
    return brisk__name_index(act_kinds, 4, s);
}

int brisk_loss_parse(const char *s)
{
    return brisk__name_index(loss_names, 3, s);
}

/* ---- Generation ----------------------------------------------------------------------- */

int brisk_generate(const brisk_model *m, const float *params, const float *buffers,
                   const int32_t *prompt, int n_prompt, const brisk_generate_config *cfg,
                   int32_t *out)
{
    if (!m || !params || !prompt || !cfg || !out)
        return brisk_error_set(BRISK_EINVAL, "generate: NULL argument");
    const int T = brisk_model_positions(m), C = brisk_model_outputs(m);
    const int V0 = brisk_model_vocab(m) ? brisk_model_vocab(m) : C;
    const int V = V0 < C ? V0 : C; /* what can be drawn: an output that is also an input */
    if (T < 2 || brisk_shape_features(m->cfg.input) != 1 || m->cfg.loss != BRISK_LOSS_SOFTMAX_CE)
        return brisk_error_set(BRISK_EINVAL, "generate: the model is not a language model "
                               "(token ids in, the ce loss over a vocabulary out)");
    if (n_prompt < 1 || cfg->tokens < 0 || cfg->tokens > (1 << 24) ||
        !(cfg->temperature >= 0 && cfg->temperature <= 1e6) || cfg->top_k < 0)
        return brisk_error_set(BRISK_EINVAL, "generate: prompt of %d tokens (at least 1), %d "
                               "to generate (0..%d), temperature %g (0: greedy), top-k %d "
                               "(0: all)", n_prompt, cfg->tokens, 1 << 24, cfg->temperature,
                               cfg->top_k);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return brisk_error_set(BRISK_EINVAL, "generate: prompt token %d is %d, outside the "
                                   "model's vocabulary 0..%d", i, prompt[i], V - 1);
    brisk_workspace *ws;
    int err = brisk_workspace_create(m, 1, &ws);
    if (err < 0)
        return err;
    double *p = malloc((size_t)C * sizeof *p);
    int *order = malloc((size_t)C * sizeof *order);
    if (!p || !order) {
        free(p);
        free(order);
        brisk_workspace_destroy(ws);
        return brisk_error_set(BRISK_ENOMEM, "generate: out of memory");
    }
    memcpy(out, prompt, (size_t)n_prompt * sizeof *out);
    const int ld = ws->ld;
    for (int j = 0; j < cfg->tokens; j++) {
        const int len = n_prompt + j, first = len > T ? len - T : 0, w = len - first;
        float *x = brisk_workspace_input(ws);
        for (int t = 0; t < T; t++) /* the window, then padding the causal mask ignores */
            x[t] = t < w ? (float)out[first + t] : 0.0f;
        brisk_model_forward(m, params, buffers, ws, 1, BRISK_PASS_EVAL, NULL, NULL, NULL);
        const float *z = brisk_workspace_output(ws, m->n_layers - 1) + (w - 1); /* column */
        int best = 0;
        for (int c = 1; c < V; c++)
            if (z[(size_t)c * ld] > z[(size_t)best * ld])
                best = c;
        int next = best;
        if (cfg->temperature > 0) {
            /* The candidates: the top_k likeliest (ties to the lower id), or all. */
            int n = 0;
            for (int c = 0; c < V; c++)
                order[n++] = c;
            const int k = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
            for (int a = 0; a < k && k < V; a++) { /* partial selection sort: k is small */
                int pick = a;
                for (int b = a + 1; b < V; b++)
                    if (z[(size_t)order[b] * ld] > z[(size_t)order[pick] * ld] ||
                        (z[(size_t)order[b] * ld] == z[(size_t)order[pick] * ld] &&
                         order[b] < order[pick]))
                        pick = b;
                const int tmp = order[a];
                order[a] = order[pick];
                order[pick] = tmp;
            }
            const double zmax = z[(size_t)best * ld];
            double sum = 0;
            for (int a = 0; a < k; a++) {
                p[a] = exp(((double)z[(size_t)order[a] * ld] - zmax) / cfg->temperature);
                sum += p[a];
            }
            const double u = brisk_rng_uniform(cfg->seed, BRISK_RNG_STREAM_SAMPLE, 0,
                                               (uint64_t)len) * sum;
            double acc = 0;
            next = order[k - 1];
            for (int a = 0; a < k; a++) {
                acc += p[a];
                if (u < acc) {
                    next = order[a];
                    break;
                }
            }
        }
        out[len] = next;
    }
    free(p);
    free(order);
    brisk_workspace_destroy(ws);
    return BRISK_OK;
}
