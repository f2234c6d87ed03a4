/* Predicting from a checkpoint alone (brisk/run.h): its model, weights and normalisation in
 * an inference trainer (no gradients, no optimizer state). */
#include "brisk/run.h"

#include "brisk/error.h"
#include "brisk/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct brisk_predictor {
    brisk_trainer *t;
    brisk_loss loss;
    int norm_count;
    char path[BRISK_RUN_PATH_MAX];
};

int brisk_predictor_open(const char *checkpoint, int threads, brisk_predictor **out)
{
    if (!checkpoint || !out)
        return brisk_error_set(BRISK_EINVAL, "predictor_open: NULL argument");
    *out = NULL;
    if (threads < 0 || threads > 4096)
        return brisk_error_set(BRISK_EINVAL, "predictor_open: threads %d out of 0..4096",
                               threads);
    brisk_predictor *p = calloc(1, sizeof *p);
    if (!p)
        return brisk_error_set(BRISK_ENOMEM, "predictor: out of memory");
    brisk_checkpoint *ck;
    int err = brisk_run_checkpoint_path(checkpoint, p->path, sizeof p->path);
    if (err == BRISK_OK)
        err = brisk_checkpoint_load(p->path, &ck);
    if (err < 0) {
        free(p);
        return err;
    }
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    c.model = ck->model;
    /* A language model generates one sequence at a time (its own workspace). */
    c.batch = ck->model.input.rank == 2 ? 1 : BRISK_DEFAULT_MICRO_BATCH;
    c.threads = threads;
    c.inference = 1;
    if ((err = brisk_trainer_create(&c, &p->t)) == BRISK_OK)
        err = brisk_trainer_set_norm(p->t, ck->pos.norm_mean, ck->pos.norm_std,
                                     ck->pos.norm_count);
    if (err == BRISK_OK) {
        brisk_trainer_load_state(p->t, ck->params, NULL, NULL, ck->buffers, ck->pos.steps_done);
        p->loss = ck->model.loss;
        p->norm_count = ck->pos.norm_count;
    }
    brisk_checkpoint_free(ck);
    if (err < 0) {
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", brisk_error_detail());
        brisk_predictor_close(p);
        return brisk_error_set(err, "%s: %s", checkpoint, detail);
    }
    *out = p;
    return BRISK_OK;
}

int brisk_predictor_predict(brisk_predictor *p, const brisk_dataset *ds, const int32_t *idx,
                            int64_t n, float *out, brisk_metrics *metrics)
{
    if (!p || !ds || !out)
        return brisk_error_set(BRISK_EINVAL, "predictor_predict: NULL argument");
    if (n < 0 || n > ds->n || n > INT32_MAX)
        return brisk_error_set(BRISK_EINVAL, "predictor_predict: %lld samples of %lld",
                               (long long)n, (long long)ds->n);
    int32_t *all = NULL;
    if (!idx) {
        if (!(all = malloc((size_t)(n ? n : 1) * sizeof *all)))
            return brisk_error_set(BRISK_ENOMEM, "out of memory for %lld indices",
                                   (long long)n);
        for (int64_t i = 0; i < n; i++)
            all[i] = (int32_t)i;
        idx = all;
    }
    const int err = brisk_trainer_predict(p->t, ds, idx, n, out, metrics);
    free(all);
    return err;
}

int brisk_predictor_predict_file(brisk_predictor *p, const char *in_path, const char *out_path,
                                 int64_t *n)
{
    if (!p || !in_path || !out_path)
        return brisk_error_set(BRISK_EINVAL, "predictor_predict_file: NULL argument");
    brisk_dataset ds;
    int err = brisk_dataset_load_features(in_path, &ds);
    if (err < 0)
        return err;
    const size_t D = brisk_shape_size(brisk_model_get_config(brisk_predictor_model(p))->input);
    if ((size_t)ds.d != D) {
        err = brisk_error_set(BRISK_EINVAL, "%s: %d features per sample, but the model of %s "
                              "takes %zu", in_path, ds.d, p->path, D);
        brisk_dataset_free(&ds);
        return err;
    }
    const int C = brisk_predictor_outputs(p);
    float *v = malloc(sizeof *v * (size_t)ds.n * (size_t)C);
    if (!v) {
        brisk_dataset_free(&ds);
        return brisk_error_set(BRISK_ENOMEM, "out of memory for %lld predictions",
                               (long long)ds.n);
    }
    if ((err = brisk_predictor_predict(p, &ds, NULL, ds.n, v, NULL)) < 0) {
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", brisk_error_detail());
        err = brisk_error_set(err, "%s: %s", in_path, detail);
    } else {
        err = brisk_predictor_write(out_path, v, ds.n, C, p->loss);
    }
    if (err == BRISK_OK && n)
        *n = ds.n;
    free(v);
    brisk_dataset_free(&ds);
    return err;
}

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

int brisk_predictor_write(const char *path, const float *v, int64_t n, int C, brisk_loss loss)
{
    if (!path || !v || n < 1 || C < 1)
        return brisk_error_set(BRISK_EINVAL, "predictor_write: path %s, %lld rows of %d",
                               path ? path : "NULL", (long long)n, C);
    if (ends_with(path, ".npy"))
        return brisk_npy_write(path, v, n, C);
    brisk_outfile f;
    int err = brisk_outfile_open(&f, path);
    if (err < 0)
        return err;
    int ok = 1;
    const char *name = loss == BRISK_LOSS_MSE ? "output" : "p";
    for (int c = 0; ok && c < C; c++)
        ok = fprintf(f.fp, "%s%s%d", c ? "," : "", name, c) > 0;
    ok = ok && fputc('\n', f.fp) != EOF;
    for (int64_t i = 0; ok && i < n; i++) {
        for (int c = 0; ok && c < C; c++)
            ok = fprintf(f.fp, "%s%.9g", c ? "," : "", (double)v[i * C + c]) > 0;
        ok = ok && fputc('\n', f.fp) != EOF;
    }
    if (!ok) {
        err = brisk_error_set(BRISK_EIO, "cannot write %s: %s", path, strerror(errno));
        brisk_outfile_abort(&f);
        return err;
    }
    return brisk_outfile_commit(&f);
}

const brisk_model *brisk_predictor_model(const brisk_predictor *p)
{
    return brisk_trainer_model(p->t);
}

int brisk_predictor_outputs(const brisk_predictor *p)
{
    return brisk_model_outputs(brisk_trainer_model(p->t));
}

int brisk_predictor_norm_count(const brisk_predictor *p) { return p->norm_count; }

void brisk_predictor_close(brisk_predictor *p)
{
    if (!p)
        return;
    brisk_trainer_destroy(p->t);
    free(p);
}

int brisk_predictor_generate(brisk_predictor *p, const int32_t *prompt, int n_prompt,
                             const brisk_generate_config *cfg, int32_t *out)
{
    if (!p)
        return brisk_error_set(BRISK_EINVAL, "predictor_generate: NULL predictor");
    const int err = brisk_generate(brisk_trainer_model(p->t), brisk_trainer_params(p->t),
                                   brisk_trainer_buffers(p->t), prompt, n_prompt, cfg, out);
    return err < 0 ? brisk_error_set(err, "%s: %s", p->path, brisk_error_detail()) : BRISK_OK;
}
