/* A run's settings (brisk/run.h): the table of names, types and ranges that brisk-train's
 * flags and the checkpoints' JSON are made of, setting from text, and the JSON round trip. */
#define _POSIX_C_SOURCE 200809L
#include "brisk/run.h"

#include "brisk/ckptdir.h"
#include "brisk/error.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

brisk_run_config brisk_run_config_defaults(void)
{
    brisk_run_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model, sizeof c.model, "784-256-128-10");
    snprintf(c.act, sizeof c.act, "relu");
    snprintf(c.loss, sizeof c.loss, "ce");
    snprintf(c.precision, sizeof c.precision, "fp32");
    snprintf(c.init, sizeof c.init, "auto");
    snprintf(c.optimizer, sizeof c.optimizer, "adam");
    c.lr = 1e-3;
    c.weight_decay = -1; /* the optimizer's own default, resolved when the run opens */
    c.momentum = 0.9;
    c.beta2 = 0.999;
    snprintf(c.decay, sizeof c.decay, "all");
    snprintf(c.schedule, sizeof c.schedule, "cosine");
    c.step_size = 5;
    c.gamma = 0.5;
    c.epochs = 10;
    c.batch = 128;
    c.micro_batch = BRISK_DEFAULT_MICRO_BATCH;
    c.accumulate = 1;
    c.seed = 42;
    snprintf(c.data, sizeof c.data, "%s", BRISK_RUN_DEFAULT_DATA);
    c.val_split = 0.1;
    c.samples = 2;
    c.sample_tokens = 200;
    c.synthetic_n = 20000;
    c.synthetic_test_n = 5000;
    c.noise = 80.0;
    c.log_every = 10;
    c.histogram_every = 1;
    c.keep = 3;
    snprintf(c.monitor, sizeof c.monitor, "val_loss");
    c.plateau_factor = 0.1;
    return c;
}

/* Where a setting lives in the struct, and how wide it is. */
typedef enum slot_kind { S_TEXT, S_DOUBLE, S_INT, S_LL, S_ULL } slot_kind;

typedef struct slot {
    brisk_run_setting pub;
    slot_kind kind;
    size_t offset, size;
} slot;

#define TEXT(n, m, c) {{n, BRISK_SETTING_TEXT, 0, 0, c}, S_TEXT, offsetof(brisk_run_config, m), \
                       sizeof(((brisk_run_config *)0)->m)}
#define REAL(n, m, lo, hi, c) {{n, BRISK_SETTING_REAL, lo, hi, c}, S_DOUBLE,                    \
                               offsetof(brisk_run_config, m), sizeof(double)}
#define INT(n, m, lo, hi, c) {{n, BRISK_SETTING_INT, lo, hi, c}, S_INT,                         \
                              offsetof(brisk_run_config, m), sizeof(int)}
#define LL(n, m, lo, hi, c) {{n, BRISK_SETTING_INT, lo, hi, c}, S_LL,                           \
                             offsetof(brisk_run_config, m), sizeof(long long)}
#define SWITCH(n, m) {{n, BRISK_SETTING_SWITCH, 0, 1, 0}, S_INT, offsetof(brisk_run_config, m), \
                      sizeof(int)}

/* The order is the order of brisk-train's --help and of the checkpoints' JSON. */
static const slot slots[] = {
    TEXT("model", model, 0),
    TEXT("act", act, 0),
    TEXT("loss", loss, 0),
    REAL("label-smoothing", label_smoothing, 0, 0.99, 0),
    TEXT("precision", precision, 0),
    TEXT("init", init, 0),
    TEXT("init-from", init_from, 0),
    TEXT("optimizer", optimizer, 0),
    REAL("lr", lr, 1e-12, 1e6, 0),
    REAL("weight-decay", weight_decay, 0, 1e3, 0),
    REAL("momentum", momentum, 0, 1, 0),
    REAL("beta2", beta2, 0, 0.999999999, 0),
    TEXT("decay", decay, 0),
    REAL("clip-norm", clip_norm, 0, 1e30, 0),
    TEXT("schedule", schedule, 0),
    INT("step-size", step_size, 1, 1e6, 0),
    REAL("gamma", gamma, 0, 1e3, 0),
    LL("warmup", warmup, 0, 1e9, 0),
    REAL("min-lr", min_lr, 0, 1e6, 0),
    INT("epochs", epochs, 1, 1e6, 1),
    INT("batch", batch, 1, 1 << 20, 0),
    INT("micro-batch", micro_batch, 1, 1 << 20, 0),
    INT("accumulate", accumulate, 1, 4096, 0),
    TEXT("augment", augment, 0),
    REAL("ema", ema, 0, 0.999999999, 0),
    REAL("mixup", mixup, 0, 1000, 0),
    REAL("cutmix", cutmix, 0, 1000, 0),
    INT("threads", threads, 0, 4096, 1),
    {{"seed", BRISK_SETTING_INT, 0, 9223372036854775807.0, 0}, S_ULL,
     offsetof(brisk_run_config, seed), sizeof(unsigned long long)},
    TEXT("data", data, 1),
    TEXT("labels", labels, 1),
    TEXT("label", label, 1),
    TEXT("test", test, 1),
    TEXT("test-labels", test_labels, 1),
    REAL("val-split", val_split, 0, 0.99, 0),
    INT("seq-len", seq_len, 0, 65536, 0),
    SWITCH("in-order", in_order),
    INT("samples", samples, 0, 64, 1),
    INT("sample-tokens", sample_tokens, 1, 1 << 16, 1),
    LL("synthetic-n", synthetic_n, 1, 1e8, 0),
    LL("synthetic-test-n", synthetic_test_n, 1, 1e8, 0),
    REAL("noise", noise, 0, 1e4, 0),
    TEXT("logdir", logdir, 1),
    INT("log-every", log_every, 1, 1e9, 1),
    INT("histogram-every", histogram_every, 0, 1e6, 1),
    {{"report", BRISK_SETTING_SWITCH, 0, 1, 1}, S_INT, offsetof(brisk_run_config, report),
     sizeof(int)},
    TEXT("checkpoint-dir", checkpoint_dir, 1),
    INT("keep", keep, 1, 1e6, 1),
    TEXT("run", run, 0),
    REAL("mpi-timeout", mpi_timeout, 0, 1e6, 1),
    INT("early-stop", early_stop, 0, 1e6, 0),
    TEXT("monitor", monitor, 0),
    REAL("min-delta", min_delta, 0, 1e6, 0),
    SWITCH("keep-best", keep_best),
    INT("plateau", plateau, 0, 1e6, 0),
    REAL("plateau-factor", plateau_factor, 1e-6, 0.999999, 0),
    REAL("plateau-min-lr", plateau_min_lr, 0, 1e6, 0),
};
#define N_SLOTS ((int)(sizeof slots / sizeof slots[0]))

const brisk_run_setting *brisk_run_settings(int *n)
{
    static brisk_run_setting pub[N_SLOTS];
    for (int i = 0; i < N_SLOTS; i++)
        pub[i] = slots[i].pub;
    if (n)
        *n = N_SLOTS;
    return pub;
}

static const slot *slot_find(const char *name)
{
    for (int i = 0; name && i < N_SLOTS; i++)
        if (!strcmp(slots[i].pub.name, name))
            return &slots[i];
    return NULL;
}

const brisk_run_setting *brisk_run_setting_find(const char *name)
{
    const slot *s = slot_find(name);
    return s ? &s->pub : NULL;
}

static int init_parse(const char *s)
{
    return !strcmp(s, "auto") ? BRISK_INIT_AUTO : !strcmp(s, "he") ? BRISK_INIT_HE
           : !strcmp(s, "glorot") ? BRISK_INIT_GLOROT : !strcmp(s, "gpt2") ? BRISK_INIT_GPT2 : -1;
}

static int precision_parse(const char *s)
{
    return !strcmp(s, "fp32") ? BRISK_GEMM_FP32 : !strcmp(s, "bf16") ? BRISK_GEMM_BF16 : -1;
}

static int decay_parse(const char *s)
{
    return !strcmp(s, "all") ? 0 : !strcmp(s, "matrices") ? 1 : -1;
}

/* 1 when a text setting's value is one it can hold; else 0 with the reason in why. */
static int text_ok(const char *name, const char *v, char *why, size_t size)
{
    static const struct {
        const char *name;
        int (*parse)(const char *);
        const char *choices;
    } named[] = {
        {"act", brisk_act_parse, "relu, gelu, tanh or sigmoid"},
        {"loss", brisk_loss_parse, "ce, bce or mse"},
        {"init", init_parse, "auto, he, glorot or gpt2"},
        {"optimizer", brisk_optim_parse, "adam, adamw or sgd"},
        {"schedule", brisk_schedule_parse, "constant, step or cosine"},
        {"monitor", brisk_fit_metric_parse, "val_loss, val_accuracy, train_loss or "
                                            "train_accuracy"},
        {"decay", decay_parse, "all or matrices"},
        {"precision", precision_parse, "fp32 or bf16"},
    };
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        if (!strcmp(name, named[i].name)) {
            if (named[i].parse(v) >= 0)
                return 1;
            snprintf(why, size, "unknown value '%s' (choose %s)", v, named[i].choices);
            return 0;
        }
    if (!strcmp(name, "model")) {
        brisk_model_config mc;
        memset(&mc, 0, sizeof mc);
        const int shorthand = v[0] && strspn(v, "0123456789-") == strlen(v);
        const int gpt = !strncmp(v, "gpt", 3) && (!v[3] || v[3] == ':');
        brisk_gpt_config g;
        const int err = shorthand ? brisk_model_config_mlp(&mc, v, BRISK_ACT_RELU)
                        : gpt     ? brisk_gpt_parse(v, &g)
                                  : brisk_model_config_set(&mc, v, brisk_shape_img(1, 28, 28));
        if (err == BRISK_OK)
            return 1;
        const char *d = brisk_error_detail();
        snprintf(why, size, "%s", strncmp(d, "model: ", 7) ? d : d + 7);
        return 0;
    }
    if (!strcmp(name, "run")) {
        if (!v[0] || brisk_run_id_valid(v))
            return 1;
        snprintf(why, size, "'%s' is not a run id (letters, digits, '-' and '_')", v);
        return 0;
    }
    if (!strcmp(name, "augment")) {
        brisk_augment a;
        if (brisk_augment_parse(v, &a) == BRISK_OK)
            return 1;
        const char *d = brisk_error_detail();
        snprintf(why, size, "%s", strncmp(d, "augment: ", 9) ? d : d + 9);
        return 0;
    }
    if (!strcmp(name, "data") && !v[0]) {
        snprintf(why, size, "needs a directory, a .npy or .csv file, or 'synthetic'");
        return 0;
    }
    return 1;
}

int brisk_run_config_set(brisk_run_config *c, const char *name, const char *value)
{
    const slot *s = slot_find(name);
    if (!c || !s || !value)
        return brisk_error_set(BRISK_EINVAL, "%s: %s", name ? name : "(null)",
                               !s ? "no such setting" : "NULL argument");
    char *p = (char *)c + s->offset, why[600];
    if (s->kind == S_TEXT) {
        if (strlen(value) >= s->size)
            return brisk_error_set(BRISK_EINVAL, "%s: '%.60s...' is longer than %zu characters",
                                   name, value, s->size - 1);
        if (!text_ok(name, value, why, sizeof why))
            return brisk_error_set(BRISK_EINVAL, "%s: %s", name, why);
        memcpy(p, value, strlen(value) + 1);
        return BRISK_OK;
    }
    char *end;
    errno = 0;
    if (s->kind == S_DOUBLE) {
        const double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v))
            return brisk_error_set(BRISK_EINVAL, "%s: '%s' is not a number", name, value);
        if (v < s->pub.lo || v > s->pub.hi)
            return brisk_error_set(BRISK_EINVAL, "%s: %s is out of range [%g, %g]", name, value,
                                   s->pub.lo, s->pub.hi);
        memcpy(p, &v, sizeof v);
        return BRISK_OK;
    }
    const long long v = strtoll(value, &end, 10);
    if (end == value || *end || errno)
        return brisk_error_set(BRISK_EINVAL, "%s: '%s' is not an integer", name, value);
    if ((double)v < s->pub.lo || (double)v > s->pub.hi)
        return brisk_error_set(BRISK_EINVAL, "%s: %s is out of range [%lld, %lld]", name, value,
                               (long long)s->pub.lo, (long long)s->pub.hi);
    if (s->kind == S_INT) {
        const int i = (int)v;
        memcpy(p, &i, sizeof i);
    } else if (s->kind == S_LL) {
        memcpy(p, &v, sizeof v);
    } else {
        const unsigned long long u = (unsigned long long)v;
        memcpy(p, &u, sizeof u);
    }
    return BRISK_OK;
}

/* A numeric setting's value as a double (for ranges and messages). */
static double slot_number(const brisk_run_config *c, const slot *s)
{
    const char *p = (const char *)c + s->offset;
    switch (s->kind) {
    case S_DOUBLE: { double v; memcpy(&v, p, sizeof v); return v; }
    case S_INT: { int v; memcpy(&v, p, sizeof v); return v; }
    case S_LL: { long long v; memcpy(&v, p, sizeof v); return (double)v; }
    case S_ULL: { unsigned long long v; memcpy(&v, p, sizeof v); return (double)v; }
    case S_TEXT: break;
    }
    return 0;
}

int brisk_run_config_get(const brisk_run_config *c, const char *name, char *buf, size_t size)
{
    const slot *s = slot_find(name);
    if (!c || !s || !buf)
        return brisk_error_set(BRISK_EINVAL, "%s: no such setting", name ? name : "(null)");
    const char *p = (const char *)c + s->offset;
    switch (s->kind) {
    case S_TEXT: snprintf(buf, size, "%s", p); break;
    case S_DOUBLE: snprintf(buf, size, "%.17g", slot_number(c, s)); break;
    case S_ULL: {
        unsigned long long v;
        memcpy(&v, p, sizeof v);
        snprintf(buf, size, "%llu", v);
        break;
    }
    default: snprintf(buf, size, "%lld", (long long)slot_number(c, s)); break;
    }
    return BRISK_OK;
}

char *brisk_run_config_to_json(const brisk_run_config *c)
{
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; root && i < N_SLOTS; i++) {
        const slot *s = &slots[i];
        char v[BRISK_RUN_PATH_MAX];
        brisk_run_config_get(c, s->pub.name, v, sizeof v);
        if (s->offset == offsetof(brisk_run_config, weight_decay) && c->weight_decay < 0)
            snprintf(v, sizeof v, "0"); /* the optimizer's default: weight-decay-set 0 below */
        if (s->kind == S_TEXT || s->kind == S_ULL) /* 64-bit seeds do not fit a double */
            cJSON_AddStringToObject(root, s->pub.name, v);
        else
            cJSON_AddRawToObject(root, s->pub.name, v); /* every digit kept */
    }
    /* 0: the weight decay is the optimizer's default (as earlier versions wrote it). */
    if (root)
        cJSON_AddNumberToObject(root, "weight-decay-set", c->weight_decay >= 0);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

int brisk_run_config_from_json(brisk_run_config *c, const char *json, const char *path)
{
    if (!c || !json)
        return brisk_error_set(BRISK_EINVAL, "run config: NULL argument");
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return brisk_error_set(BRISK_EFORMAT, "%s: the settings in the checkpoint (brisk.config)"
                               " are not a JSON object: the file is damaged or was edited",
                               path);
    }
    brisk_run_config out = brisk_run_config_defaults();
    int err = BRISK_OK;
    for (int i = 0; i < N_SLOTS && err == BRISK_OK; i++) {
        const slot *s = &slots[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, s->pub.name);
        if (!v)
            continue; /* an earlier version's checkpoint: the default */
        char text[BRISK_RUN_PATH_MAX + 64];
        const int string_kind = s->kind == S_TEXT || s->kind == S_ULL;
        if (string_kind ? !cJSON_IsString(v) : !cJSON_IsNumber(v)) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: setting '%s' in the checkpoint is not %s: "
                                  "the file is damaged or was edited", path, s->pub.name,
                                  string_kind ? "text" : "a number");
            break;
        }
        if (string_kind)
            snprintf(text, sizeof text, "%s", v->valuestring);
        else
            snprintf(text, sizeof text, "%.17g", v->valuedouble);
        if (brisk_run_config_set(&out, s->pub.name, text) != BRISK_OK) {
            const char *d = brisk_error_detail();
            const size_t nl = strlen(s->pub.name);
            char why[700];
            snprintf(why, sizeof why, "%s", !strncmp(d, s->pub.name, nl) && d[nl] == ':'
                                                ? d + nl + 2 : d);
            err = brisk_error_set(BRISK_EFORMAT, "%s: setting '%s' in the checkpoint is '%.200s',"
                                  " which no flag could give (%s): the file is damaged or was "
                                  "edited", path, s->pub.name, text, why);
        }
    }
    /* Earlier versions: "weight-decay-set" 0 meant the optimizer's own default. */
    const cJSON *wds = cJSON_GetObjectItemCaseSensitive(root, "weight-decay-set");
    if (err == BRISK_OK && cJSON_IsNumber(wds) && wds->valuedouble == 0)
        out.weight_decay = -1;
    cJSON_Delete(root);
    if (err == BRISK_OK)
        *c = out;
    return err;
}
