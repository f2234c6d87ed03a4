#include "brisk/tblog.h"

#include "brisk/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN2 0.693147180559945309417

/* A push that fails for another reason than a full ring is a bug: the first is kept in
 * tb->error. Drops are counted by brisk_log itself and reported at close. */
static void pushed(brisk_tb *tb, int rc, const char *tag)
{
    if (rc == BRISK_OK || rc == BRISK_EFULL || rc == BRISK_EOVERFLOW || tb->failed)
        return;
    tb->failed = 1;
    snprintf(tb->error, sizeof tb->error, "logging '%s' failed: %s", tag, brisk_error_detail());
}

size_t brisk_tb_ring_bytes(const brisk_trainer *t)
{
    /* Histograms may use three quarters of the ring (the rest stays free for scalars). */
    double need = 2.0 * (double)brisk_model_num_params(brisk_trainer_model(t)) * 4 * 4 / 3 +
                  (4 << 20);
    /* For a model whose histograms would take a large share of memory, a smaller ring: the
     * histograms that do not fit are dropped (and counted), scalars keep their room. */
    const double cap = (double)brisk_available_memory() / 8;
    if (cap > 0 && need > cap)
        need = cap > (64 << 20) ? cap : (64 << 20);
    size_t ring = (size_t)4 << 20;
    while ((double)ring < need && ring < ((size_t)1 << 31))
        ring *= 2;
    return ring;
}

int brisk_tb_open(brisk_tb *tb, const char *logdir, int64_t first_step, size_t ring_bytes)
{
    memset(tb, 0, sizeof *tb);
    if (!logdir)
        return brisk_error_set(BRISK_EINVAL, "tb_open: NULL logdir");
    /* A run that starts from scratch in a directory with another run's event files would be
     * merged with it: TensorBoard would show one curve folding back over the other. */
    if (first_step <= 1 && brisk_log_dir_has_events(logdir))
        return brisk_error_set(BRISK_EMISMATCH, "%s already holds event files of another run "
                               "(or program): TensorBoard would merge the two; log a new run "
                               "into a new directory", logdir);
    int err = brisk_logger_create(&(brisk_logger_config){.logdir = logdir, .ring_bytes = ring_bytes},
                                  &tb->lg);
    if (!err)
        err = brisk_logger_add_run(tb->lg, "", first_step, &tb->root);
    if (!err)
        err = brisk_logger_add_run(tb->lg, "train", first_step, &tb->train);
    if (!err)
        err = brisk_logger_add_run(tb->lg, "validation", first_step, &tb->val);
    if (!err)
        err = brisk_logger_producer(tb->lg, &tb->p);
    tb->first_step = first_step;
    if (err) {
        const char *detail = brisk_error_detail();
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", detail);
        brisk_logger_destroy(tb->lg);
        tb->lg = NULL;
        return brisk_error_set(err, "%s", copy);
    }
    return BRISK_OK;
}

void brisk_tb_step(brisk_tb *tb, int64_t step, const brisk_step_stats *st, double samples_per_s)
{
    pushed(tb, brisk_log_scalar(tb->p, tb->train, "batch_loss", step, brisk_metrics_loss(&st->metrics)),
           "batch_loss");
    if (!tb->no_accuracy)
        pushed(tb, brisk_log_scalar(tb->p, tb->train, "batch_accuracy", step,
                                    brisk_metrics_accuracy(&st->metrics)),
               "batch_accuracy");
    pushed(tb, brisk_log_scalar(tb->p, tb->train, "learning_rate", step, st->lr), "learning_rate");
    pushed(tb, brisk_log_scalar(tb->p, tb->train, "grad_global_norm", step, st->grad_norm),
           "grad_global_norm");
    if (samples_per_s > 0)
        pushed(tb, brisk_log_scalar(tb->p, tb->train, "samples_per_second", step, samples_per_s),
               "samples_per_second");
}

void brisk_tb_epoch(brisk_tb *tb, int run, int64_t step, int64_t epoch, const brisk_metrics *m)
{
    pushed(tb, brisk_log_scalar(tb->p, run, "epoch_loss", step, brisk_metrics_loss(m)),
           "epoch_loss");
    if (!tb->no_accuracy)
        pushed(tb, brisk_log_scalar(tb->p, run, "epoch_accuracy", step,
                                    brisk_metrics_accuracy(m)),
               "epoch_accuracy");
    if (tb->bytes_per_token > 0)
        pushed(tb, brisk_log_scalar(tb->p, run, "epoch_bits_per_byte", step,
                                    brisk_metrics_loss(m) / LN2 / tb->bytes_per_token),
               "epoch_bits_per_byte");
    if (run == tb->train)
        pushed(tb, brisk_log_scalar(tb->p, run, "epoch", step, (double)epoch), "epoch");
}

void brisk_tb_session_start(brisk_tb *tb, const brisk_trainer *t, int epochs,
                            const brisk_hparam *extra, size_t n_extra)
{
    const brisk_trainer_config *c = brisk_trainer_get_config(t);
    enum { N_OWN = 10, MAX = 32 };
    brisk_hparam hp[MAX] = {
        {.name = "model", .type = BRISK_HPARAM_STRING, .string = c->model.spec},
        {.name = "optimizer", .type = BRISK_HPARAM_STRING,
         .string = brisk_optim_name(c->optim.kind)},
        {.name = "schedule", .type = BRISK_HPARAM_STRING,
         .string = brisk_schedule_name(c->schedule.kind)},
        {.name = "lr", .type = BRISK_HPARAM_NUMBER, .number = c->schedule.lr},
        {.name = "batch", .type = BRISK_HPARAM_NUMBER, .number = c->batch},
        {.name = "micro_batch", .type = BRISK_HPARAM_NUMBER, .number = c->micro_batch},
        {.name = "epochs", .type = BRISK_HPARAM_NUMBER, .number = epochs},
        {.name = "weight_decay", .type = BRISK_HPARAM_NUMBER, .number = c->optim.weight_decay},
        {.name = "clip_norm", .type = BRISK_HPARAM_NUMBER, .number = c->clip_norm},
        {.name = "seed", .type = BRISK_HPARAM_NUMBER, .number = (double)c->seed},
    };
    size_t n = N_OWN;
    for (size_t i = 0; i < n_extra && extra; i++) {
        size_t k = 0;
        while (k < n && strcmp(hp[k].name, extra[i].name))
            k++;
        if (k < MAX)
            hp[k] = extra[i];
        n += k == n && n < MAX;
    }
    const brisk_metric all[] = {{"validation", "epoch_loss"},
                                {"validation", "test_loss"},
                                {"validation", "epoch_accuracy"},
                                {"validation", "test_accuracy"}};
    pushed(tb, brisk_log_hparams(tb->p, tb->root, hp, n, all, tb->no_accuracy ? 2 : 4),
           "hparams");
    const char *loss[] = {"^epoch_loss$"}, *acc[] = {"^epoch_accuracy$"};
    const char *bpb[] = {"^epoch_bits_per_byte$"};
    const brisk_chart charts[] = {{"loss: train and validation", loss, 1},
                                  {"accuracy: train and validation", acc, 1},
                                  {"bits per byte: train and validation", bpb, 1}};
    const brisk_chart *chosen[3] = {&charts[0]};
    size_t nc = 1;
    if (!tb->no_accuracy)
        chosen[nc++] = &charts[1];
    if (tb->bytes_per_token > 0)
        chosen[nc++] = &charts[2];
    brisk_chart list[3];
    for (size_t i = 0; i < nc; i++)
        list[i] = *chosen[i];
    pushed(tb, brisk_log_custom_scalars(tb->p, tb->root, "Brisk", list, nc), "custom_scalars");
}

void brisk_tb_text(brisk_tb *tb, int run, const char *tag, int64_t step, const char *text)
{
    pushed(tb, brisk_log_text(tb->p, run, tag, step, text), tag);
}

void brisk_tb_test(brisk_tb *tb, int64_t step, const brisk_metrics *m)
{
    brisk_tb_test_run(tb, tb->val, step, m);
}

void brisk_tb_test_run(brisk_tb *tb, int run, int64_t step, const brisk_metrics *m)
{
    pushed(tb, brisk_log_scalar(tb->p, run, "test_loss", step, brisk_metrics_loss(m)),
           "test_loss");
    if (!tb->no_accuracy)
        pushed(tb, brisk_log_scalar(tb->p, run, "test_accuracy", step,
                                    brisk_metrics_accuracy(m)),
               "test_accuracy");
    if (tb->bytes_per_token > 0)
        pushed(tb, brisk_log_scalar(tb->p, run, "test_bits_per_byte", step,
                                    brisk_metrics_loss(m) / LN2 / tb->bytes_per_token),
               "test_bits_per_byte");
}

int brisk_tb_ema_run(brisk_tb *tb)
{
    if (!tb || !tb->lg)
        return brisk_error_set(BRISK_EINVAL, "tb_ema_run: the logs are not open");
    if (!tb->has_val_ema) {
        const int err = brisk_logger_add_run(tb->lg, "validation_ema", tb->first_step,
                                             &tb->val_ema);
        if (err < 0) {
            pushed(tb, err, "validation_ema");
            return err;
        }
        tb->has_val_ema = 1;
    }
    return tb->val_ema;
}

/* The first layer's weights as a grid of ih x iw tiles, one per unit (up to 64; unit u's
 * tile at W + u * stride), each scaled by its own largest magnitude: 128 is zero, 255 and 0
 * the extremes. */
static void weight_tiles(brisk_tb *tb, int64_t step, const char *tag, const float *W, int out,
                         size_t stride, int ih, int iw)
{
    const int n = out < 64 ? out : 64, cols = (int)ceil(sqrt((double)n));
    const int rows = (n + cols - 1) / cols;
    const int h = rows * (ih + 1) + 1, w = cols * (iw + 1) + 1;
    uint8_t *img = malloc((size_t)h * (size_t)w);
    if (!img)
        return;
    memset(img, 40, (size_t)h * (size_t)w); /* dark grid lines */
    for (int u = 0; u < n; u++) {
        const float *wu = W + (size_t)u * stride;
        float mx = 1e-12f;
        for (int i = 0; i < ih * iw; i++)
            mx = fabsf(wu[i]) > mx ? fabsf(wu[i]) : mx;
        const int y0 = (u / cols) * (ih + 1) + 1, x0 = (u % cols) * (iw + 1) + 1;
        for (int y = 0; y < ih; y++)
            for (int x = 0; x < iw; x++)
                img[(size_t)(y0 + y) * (size_t)w + (size_t)(x0 + x)] =
                    (uint8_t)lrintf(127.5f + 127.5f * wu[y * iw + x] / mx);
    }
    pushed(tb, brisk_log_image(tb->p, tb->train, tag, step, img, h, w, 1), tag);
    free(img);
}

/* Rows: true class, columns: predicted; each row scaled to its own total (white = all). */
static void confusion_image(brisk_tb *tb, int64_t step, const int32_t *pred,
                            const uint8_t *labels, const int32_t *idx, int64_t n, int classes)
{
    if (classes < 2 || classes > 64)
        return;
    int64_t *cm = calloc((size_t)classes * (size_t)classes, sizeof *cm);
    const int cell = classes <= 16 ? 24 : 8, side = classes * cell;
    uint8_t *img = malloc((size_t)side * (size_t)side * 3);
    if (!cm || !img) {
        free(cm);
        free(img);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const int y = labels[idx[i]], p = pred[i];
        if (y < classes && p >= 0 && p < classes)
            cm[(size_t)y * (size_t)classes + (size_t)p]++;
    }
    for (int y = 0; y < classes; y++) {
        int64_t total = 0;
        for (int p = 0; p < classes; p++)
            total += cm[(size_t)y * (size_t)classes + (size_t)p];
        for (int p = 0; p < classes; p++) {
            const double f = total ? (double)cm[(size_t)y * (size_t)classes + (size_t)p] / (double)total : 0;
            /* The diagonal in green, mistakes in red: brighter is more. */
            const uint8_t v = (uint8_t)lrint(255 * sqrt(f));
            const uint8_t rgb[3] = {y == p ? (uint8_t)0 : v, y == p ? v : (uint8_t)0, 0};
            for (int dy = 0; dy < cell; dy++)
                for (int dx = 0; dx < cell; dx++) {
                    const int border = dy == 0 || dx == 0;
                    uint8_t *px = img + 3 * ((size_t)(y * cell + dy) * (size_t)side + (size_t)(p * cell + dx));
                    for (int c = 0; c < 3; c++)
                        px[c] = border ? 60 : rgb[c];
                }
        }
    }
    pushed(tb, brisk_log_image(tb->p, tb->val, "confusion_matrix", step, img, side, side, 3),
           "confusion_matrix");
    free(cm);
    free(img);
}

void brisk_tb_inspect(brisk_tb *tb, int64_t step, brisk_trainer *t, const float *grads,
                     const double *act_mean, const double *act_std, const brisk_dataset *ds,
                     const int32_t *pred, const int32_t *idx, int64_t n)
{
    const brisk_model *m = brisk_trainer_model(t);
    const float *params = brisk_trainer_params(t);
    char tag[96];
    for (int k = 0; k < brisk_model_num_tensors(m); k++) {
        const brisk_tensor_view *v = brisk_model_tensor(m, k);
        const size_t count = v->count;
        if (v->buffer)
            continue;
        snprintf(tag, sizeof tag, "weights/%s", v->name);
        pushed(tb, brisk_log_histogram(tb->p, tb->train, tag, step, params + v->offset, count), tag);
        snprintf(tag, sizeof tag, "gradients/%s", v->name);
        pushed(tb, brisk_log_histogram(tb->p, tb->train, tag, step, grads + v->offset, count), tag);
    }
    for (int l = 0; l < brisk_model_num_layers(m); l++) {
        const brisk_layer *ly = brisk_model_layer(m, l);
        if (ly->ops->flags & BRISK_LAYER_ALIAS)
            continue; /* flatten: the same values as the layer before */
        snprintf(tag, sizeof tag, "activations/%d.%s/mean", l, ly->ops->kind);
        pushed(tb, brisk_log_scalar(tb->p, tb->train, tag, step, act_mean[l]), tag);
        snprintf(tag, sizeof tag, "activations/%d.%s/std", l, ly->ops->kind);
        pushed(tb, brisk_log_scalar(tb->p, tb->train, tag, step, act_std[l]), tag);
    }
    /* The first layer's weights as images (its ops' flags say how): a dense layer's on image
     * data (one tile per unit), a convolution's filters (their first input channel). */
    const brisk_layer *first = brisk_model_layer(m, 0);
    if (first->n_tensors) {
        const brisk_tensor_view *w = brisk_layer_tensor(first, 0);
        snprintf(tag, sizeof tag, "weights/%s/tiles", w->name);
        if ((first->ops->flags & BRISK_LAYER_UNIT_IMAGES) && ds->rows > 0 && ds->cols > 0 &&
            ds->rows * ds->cols == w->cols)
            weight_tiles(tb, step, tag, params + w->offset, w->rows, (size_t)w->cols, ds->rows,
                         ds->cols);
        else if ((first->ops->flags & BRISK_LAYER_FILTER_IMAGES) && w->ndim == 4)
            weight_tiles(tb, step, tag, params + w->offset, w->shape[0], (size_t)w->cols,
                         w->shape[2], w->shape[3]);
    }
    if (pred && ds->y && !ds->targets)
        confusion_image(tb, step, pred, ds->y, idx, n, ds->classes);
}

int brisk_tb_close(brisk_tb *tb, double *cpu_seconds)
{
    if (!tb->lg)
        return BRISK_OK;
    const int err = brisk_logger_close(tb->lg);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", brisk_error_detail());
    brisk_logger_stats st;
    brisk_logger_get_stats(tb->lg, &st);
    *cpu_seconds += st.cpu_seconds;
    brisk_logger_destroy(tb->lg);
    tb->lg = NULL;
    return err ? brisk_error_set(err, "%s", copy) : BRISK_OK;
}
