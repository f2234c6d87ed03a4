/* The training loop of brisk/fit.h. */
#define _POSIX_C_SOURCE 200809L
#include "brisk/clock.h"
#include "brisk/fit.h"

#include "brisk/ckptdir.h"
#include "brisk/comm.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/pool.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BEST_NAME "best"

brisk_fit_config brisk_fit_defaults(void)
{
    brisk_fit_config c;
    memset(&c, 0, sizeof c);
    c.epochs = 10;
    c.log_every = 10;
    c.histogram_every = 1;
    c.keep = 3;
    c.plateau_factor = 0.1f;
    return c;
}

static const char *const metric_names[] = {"val_loss", "val_accuracy", "train_loss",
                                           "train_accuracy"};

const char *brisk_fit_metric_name(brisk_fit_metric m)
{
    return (int)m >= 0 && m <= BRISK_FIT_TRAIN_ACCURACY ? metric_names[m] : "?";
}

int brisk_fit_metric_parse(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, metric_names[i]))
            return i;
    return -1;
}

static int check_policy(const brisk_fit_policy *p, const char *name, int64_t n_val)
{
    if (p->patience < 0 || (int)p->metric < 0 || p->metric > BRISK_FIT_TRAIN_ACCURACY ||
        !(p->min_delta >= 0 && isfinite(p->min_delta)))
        return brisk_error_set(BRISK_EINVAL, "fit: %s: patience %d, metric %d, min_delta %g: "
                               "expected patience >= 0, a metric, min_delta finite and >= 0",
                               name, p->patience, (int)p->metric, p->min_delta);
    if (p->patience && n_val == 0 &&
        (p->metric == BRISK_FIT_VAL_LOSS || p->metric == BRISK_FIT_VAL_ACCURACY))
        return brisk_error_set(BRISK_EINVAL, "fit: %s watches %s, but there are no validation "
                               "samples", name, brisk_fit_metric_name(p->metric));
    return BRISK_OK;
}

static int check_fit(const brisk_trainer *t, const brisk_dataset *ds, const int32_t *train_idx,
                     int64_t n_train, const int32_t *val_idx, int64_t n_val,
                     const brisk_fit_config *c, const brisk_fit_result *res)
{
    if (!t || !ds || !c || !res || (n_train > 0 && !train_idx) || (n_val > 0 && !val_idx))
        return brisk_error_set(BRISK_EINVAL, "fit: NULL %s",
                               !t ? "trainer" : !ds ? "ds" : !c ? "config" : !res ? "res"
                               : n_train > 0 && !train_idx ? "train_idx" : "val_idx");
    if (n_train < 1 || n_train > INT32_MAX || n_val < 0 || n_val > INT32_MAX)
        return brisk_error_set(BRISK_EINVAL, "fit: n_train %lld, n_val %lld: expected at least "
                               "one training sample", (long long)n_train, (long long)n_val);
    if (c->epochs < 1 || c->epochs > BRISK_CKPT_MAX_EPOCHS)
        return brisk_error_set(BRISK_EINVAL, "fit: epochs %d out of 1..%d", c->epochs,
                               BRISK_CKPT_MAX_EPOCHS);
    if (c->log_every < 1 || c->histogram_every < 0)
        return brisk_error_set(BRISK_EINVAL, "fit: log_every %d (>= 1), histogram_every %d "
                               "(>= 0)", c->log_every, c->histogram_every);
    if (c->checkpoint_dir && (c->keep < 1 || !c->run_id || !*c->run_id))
        return brisk_error_set(BRISK_EINVAL, "fit: checkpoints need keep >= 1 (%d) and a run id",
                               c->keep);
    const int B = brisk_trainer_get_config(t)->batch;
    const int64_t per_epoch = (n_train + B - 1) / B;
    const brisk_ckpt_position *s = &c->start;
    if (s->epoch < 0 || s->batch < 0 || s->batch >= per_epoch ||
        s->steps_done != brisk_trainer_steps_done(t))
        return brisk_error_set(BRISK_EINVAL, "fit: start epoch %lld batch %lld step %lld does "
                               "not fit %lld batches per epoch and the trainer's %lld steps",
                               (long long)s->epoch, (long long)s->batch,
                               (long long)s->steps_done, (long long)per_epoch,
                               (long long)brisk_trainer_steps_done(t));
    int err;
    if ((err = check_policy(&c->early_stop, "early_stop", n_val)) < 0 ||
        (err = check_policy(&(brisk_fit_policy){c->keep_best, c->best_min_delta, c->best_metric},
                            "keep_best", n_val)) < 0 ||
        (err = check_policy(&c->plateau, "plateau", n_val)) < 0)
        return err;
    if (c->keep_best && !c->checkpoint_dir)
        return brisk_error_set(BRISK_EINVAL, "fit: keep_best needs a checkpoint_dir");
    if (c->test && (c->n_test < 0 || c->n_test > INT32_MAX || (c->n_test > 0 && !c->test_idx)))
        return brisk_error_set(BRISK_EINVAL, "fit: test set of %lld samples%s",
                               (long long)c->n_test, c->n_test > 0 ? " without test_idx" : "");
    if (c->plateau.patience && (!(c->plateau_factor > 0 && c->plateau_factor < 1) ||
                                !(c->plateau_min_lr >= 0 && isfinite(c->plateau_min_lr))))
        return brisk_error_set(BRISK_EINVAL, "fit: plateau_factor %g must be in (0, 1) and "
                               "plateau_min_lr %g finite and >= 0",
                               (double)c->plateau_factor, (double)c->plateau_min_lr);
    return BRISK_OK;
}

typedef struct fit_run {
    brisk_trainer *t;
    const brisk_fit_config *c;
    brisk_fit_result *res;
    brisk_comm *comm;
    int rank, P;
    brisk_tb *tb;                 /* rank 0's logs, or NULL */
    int logging;                  /* rank 0 logs: the same on every rank */
    float *full_m, *full_v, *full_grads; /* rank 0 with several processes: gathered slabs */
    brisk_ckpt_policies pol;
} fit_run;

/* Writes the checkpoint of the current state to `path` (rank 0; every rank takes part in the
 * gather). Returns the same status on every rank. */
static int write_checkpoint(fit_run *r, const char *path, int64_t epochs_done, int64_t batch,
                            const brisk_metrics *train_m)
{
    const float *m = brisk_trainer_opt_m(r->t), *v = brisk_trainer_opt_v(r->t);
    if (r->P > 1) {
        brisk_trainer_gather(r->t, BRISK_GATHER_MOMENTS, NULL, r->full_m, r->full_v);
        m = r->full_m;
        v = r->full_v;
    }
    int status = BRISK_OK;
    if (r->rank == 0 && r->tb) {
        /* What this checkpoint says was done must be in the event files first. */
        brisk_failpoint("fit-records-pushed");
        if ((status = brisk_logger_flush(r->tb->lg)) < 0)
            status = brisk_error_set(status, "the TensorBoard logs could not be written, so "
                                     "no checkpoint was written either (the logs hold what "
                                     "the last checkpoint says was done): %s",
                                     brisk_error_detail());
        brisk_failpoint("fit-logs-flushed");
    }
    if (r->rank == 0 && status == BRISK_OK) {
        brisk_ckpt_position pos = {.epoch = epochs_done, .batch = batch,
                                   .steps_done = brisk_trainer_steps_done(r->t),
                                   .seed = r->c->seed, .train = *train_m, .policies = r->pol};
        pos.norm_count = brisk_trainer_norm(r->t, &pos.norm_mean, &pos.norm_std);
        if ((status = brisk_make_dirs(r->c->checkpoint_dir)) == BRISK_OK)
            status = brisk_checkpoint_save_ema(
                path, brisk_trainer_model(r->t), brisk_trainer_params(r->t), m, v,
                brisk_trainer_buffers(r->t), brisk_trainer_ema_params(r->t),
                brisk_trainer_ema_buffers(r->t), brisk_trainer_get_config(r->t)->ema_decay,
                &pos, r->c->config_json);
    }
    if (brisk_comm_any(r->comm, status != BRISK_OK))
        return status != BRISK_OK ? status
                                  : brisk_error_set(BRISK_EIO, "fit: rank 0 could not write %s",
                                                    path);
    if (r->rank == 0)
        brisk_failpoint("fit-checkpoint-renamed");
    return BRISK_OK;
}

/* The newest checkpoint of this position, then the run's older ones pruned to `keep`. */
static int save(fit_run *r, int64_t epochs_done, int64_t batch, const brisk_metrics *train_m)
{
    if (!r->c->checkpoint_dir)
        return BRISK_OK;
    char path[4096];
    const int64_t steps = brisk_trainer_steps_done(r->t);
    int err = brisk_ckpt_path(path, sizeof path, r->c->checkpoint_dir, r->c->run_id, steps);
    if (err < 0 || (err = write_checkpoint(r, path, epochs_done, batch, train_m)) < 0)
        return err;
    snprintf(r->res->checkpoint, sizeof r->res->checkpoint, "%s", path);
    if (r->rank == 0 && brisk_ckpt_prune(r->c->checkpoint_dir, r->c->run_id, r->c->keep, steps) < 0)
        snprintf(r->res->warning, sizeof r->res->warning, "%s", brisk_error_detail());
    if (r->rank == 0)
        brisk_failpoint("fit-pruned");
    return BRISK_OK;
}

static double metric_value(brisk_fit_metric m, const brisk_metrics *train,
                           const brisk_metrics *val)
{
    switch (m) {
    case BRISK_FIT_VAL_LOSS: return brisk_metrics_loss(val);
    case BRISK_FIT_VAL_ACCURACY: return brisk_metrics_accuracy(val);
    case BRISK_FIT_TRAIN_LOSS: return brisk_metrics_loss(train);
    case BRISK_FIT_TRAIN_ACCURACY: return brisk_metrics_accuracy(train);
    }
    return 0;
}

/* Policy k watches its metric after epoch `epoch`: returns 1 when it improved on the best
 * (by more than min_delta), updating the best and the wait. */
static int watch(fit_run *r, int k, const brisk_fit_policy *p, int64_t epoch,
                 const brisk_metrics *train, const brisk_metrics *val)
{
    const double v = metric_value(p->metric, train, val);
    const int lower = p->metric == BRISK_FIT_VAL_LOSS || p->metric == BRISK_FIT_TRAIN_LOSS;
    const int better = r->pol.best_epoch[k] == 0 ||
                       (lower ? v < r->pol.best[k] - p->min_delta
                              : v > r->pol.best[k] + p->min_delta);
    if (better) {
        r->pol.best[k] = v;
        r->pol.best_epoch[k] = epoch;
        r->pol.wait[k] = 0;
    } else {
        r->pol.wait[k]++;
    }
    return better;
}

/* After an epoch: the best checkpoint, the plateau, early stopping. Returns < 0 on error, 1
 * to stop early, 0 to go on; *improved: the best checkpoint's (or else the first policy's)
 * metric improved. */
static int policies(fit_run *r, int64_t epoch, const brisk_metrics *train,
                    const brisk_metrics *val, const brisk_metrics *val_ema, int *improved)
{
    const brisk_fit_config *c = r->c;
    *improved = 0;
    const brisk_fit_policy best = {c->keep_best, c->best_min_delta, c->best_metric};
    /* The best checkpoint and early stopping judge the weights a user keeps: the moving
     * average's, when there is one. */
    const brisk_metrics *kept = val_ema->count ? val_ema : val;
    if (c->keep_best && watch(r, 1, &best, epoch, train, kept)) {
        *improved = 1;
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/ckpt-%s-" BEST_NAME ".safetensors",
                         c->checkpoint_dir, c->run_id);
        if (n < 0 || (size_t)n >= sizeof path)
            return brisk_error_set(BRISK_EINVAL, "fit: checkpoint path too long");
        const brisk_metrics none = {0};
        const int err = write_checkpoint(r, path, epoch, 0, &none);
        if (err < 0)
            return err;
        snprintf(r->res->best_checkpoint, sizeof r->res->best_checkpoint, "%s", path);
    }
    if (c->plateau.patience) {
        const int better = watch(r, 2, &c->plateau, epoch, train, val);
        *improved |= better && !c->keep_best;
        if (r->pol.wait[2] >= c->plateau.patience) {
            /* The new factor, but not below min_lr at the schedule's current rate. */
            const float base = brisk_trainer_lr_factor(r->t);
            const float lr = brisk_schedule_lr(&brisk_trainer_get_config(r->t)->schedule,
                                               brisk_trainer_steps_done(r->t));
            float f = base * c->plateau_factor;
            if (lr > 0 && f * lr < c->plateau_min_lr)
                f = c->plateau_min_lr / lr < base ? c->plateau_min_lr / lr : base;
            if (f > 0 && f < base)
                brisk_trainer_set_lr_factor(r->t, f);
            r->pol.lr_factor = brisk_trainer_lr_factor(r->t);
            r->pol.wait[2] = 0;
        }
    }
    if (c->early_stop.patience) {
        const int better = watch(r, 0, &c->early_stop, epoch, train, kept);
        *improved |= better && !c->keep_best && !c->plateau.patience;
        if (r->pol.wait[0] >= c->early_stop.patience)
            return 1;
    }
    return 0;
}

/* A language model's samples of the epoch, as text in the validation run (bytes as text, with
 * the characters markdown would take as formatting escaped; other vocabularies as ids). */
static int log_samples(fit_run *r, const brisk_dataset *ds, int32_t window, int64_t epoch,
                       int64_t step)
{
    const brisk_fit_config *c = r->c;
    int32_t first[16];
    const int32_t *prompt = c->sample_prompt;
    int np = c->n_sample_prompt;
    if (!prompt) {
        np = ds->seq_len < 16 ? ds->seq_len : 16;
        memcpy(first, ds->tokens + (size_t)window * (size_t)ds->seq_len, (size_t)np * sizeof *first);
        prompt = first;
    }
    const int total = np + c->sample_gen.tokens;
    int32_t *ids = malloc((size_t)total * sizeof *ids);
    char *text = malloc((size_t)total * 8 + 16);
    if (!ids || !text) {
        free(ids);
        free(text);
        return brisk_error_set(BRISK_ENOMEM, "fit: out of memory for samples");
    }
    const brisk_model *m = brisk_trainer_model(r->t);
    const int bytes = ds->bytes_per_token == 1 && brisk_model_vocab(m) <= 256;
    int err = BRISK_OK;
    for (int k = 0; k < c->n_samples && err == BRISK_OK; k++) {
        brisk_generate_config g = c->sample_gen;
        g.seed = c->sample_gen.seed ^ ((uint64_t)epoch << 20 | (uint64_t)k);
        err = brisk_generate(m, brisk_trainer_params(r->t), brisk_trainer_buffers(r->t), prompt,
                             np, &g, ids);
        size_t at = 0;
        for (int i = 0; err == BRISK_OK && i < total; i++) {
            const int v = ids[i];
            if (!bytes)
                at += (size_t)snprintf(text + at, 16, "%s%d", i ? " " : "", v);
            else if (v == '\n')
                at += (size_t)snprintf(text + at, 8, "  \n"); /* a markdown line break */
            else if (v < 32 || v > 126)
                at += (size_t)snprintf(text + at, 8, "\\x%02x", v);
            else if (strchr("\\`*_{}[]()#+-.!<>|~", v))
                at += (size_t)snprintf(text + at, 8, "\\%c", v);
            else
                text[at++] = (char)v;
        }
        text[at] = '\0';
        char tag[32];
        snprintf(tag, sizeof tag, "samples/%d", k);
        if (err == BRISK_OK)
            brisk_tb_text(r->tb, r->tb->val, tag, step, text);
    }
    free(ids);
    free(text);
    return err;
}

/* End-of-epoch validation; at a histogram interval the same pass gives the activation
 * statistics and the predictions for the confusion matrix (on the validation samples, or
 * without them, on the first training samples), logged with the histograms. */
static int end_of_epoch_logs(fit_run *r, const brisk_dataset *ds, const int32_t *train_idx,
                             int64_t n_train, const int32_t *val_idx, int64_t n_val,
                             int64_t epoch, brisk_metrics *val_m)
{
    const brisk_fit_config *c = r->c;
    const int inspect = r->logging && c->histogram_every && epoch % c->histogram_every == 0;
    memset(val_m, 0, sizeof *val_m);
    if (!inspect)
        return brisk_trainer_evaluate(r->t, ds, val_idx, n_val, val_m);
    const int L = brisk_model_num_layers(brisk_trainer_model(r->t));
    const int64_t n_inspect = n_val ? n_val : (n_train < 1024 ? n_train : 1024);
    const int32_t *idx = n_val ? val_idx : train_idx;
    double *act = malloc(2 * (size_t)L * sizeof *act);
    const int classify = n_val && !ds->tokens; /* a confusion matrix */
    int32_t *pred = classify ? malloc((size_t)n_val * sizeof *pred) : NULL;
    if (!act || (classify && !pred)) {
        free(act);
        free(pred);
        return brisk_error_set(BRISK_ENOMEM, "fit: out of memory");
    }
    int err = brisk_trainer_inspect(r->t, ds, idx, n_inspect, n_val ? val_m : NULL, pred, act,
                                    act + L);
    if (err == BRISK_OK) {
        const float *grads = brisk_trainer_grads(r->t);
        if (r->P > 1) {
            brisk_trainer_gather(r->t, BRISK_GATHER_GRADS, r->full_grads, NULL, NULL);
            grads = r->full_grads;
        }
        if (r->tb)
            brisk_tb_inspect(r->tb, brisk_trainer_steps_done(r->t), r->t, grads, act, act + L,
                             ds, pred, idx, n_inspect);
    }
    free(act);
    free(pred);
    return err;
}

static int fit_loop(fit_run *r, const brisk_dataset *ds, const int32_t *train_idx,
                    int64_t n_train, const int32_t *val_idx, int64_t n_val)
{
    const brisk_fit_config *c = r->c;
    brisk_fit_result *res = r->res;
    brisk_trainer *t = r->t;
    const int B = brisk_trainer_get_config(t)->batch;
    const int64_t per_epoch = (n_train + B - 1) / B;
    int32_t *order = malloc((size_t)n_train * sizeof *order);
    if (!order)
        return brisk_error_set(BRISK_ENOMEM, "fit: out of memory for %lld indices",
                               (long long)n_train);
    int err = BRISK_OK;
    double t_log = brisk_now_seconds();
    int64_t samples_since_log = 0;
    for (int64_t epoch = c->start.epoch + 1; epoch <= c->epochs; epoch++) {
        if (c->in_order)
            memcpy(order, train_idx, (size_t)n_train * sizeof *order);
        else
            brisk_shuffle(train_idx, order, n_train, c->seed, (uint32_t)epoch);
        (void)brisk_trainer_set_epoch(t, epoch); /* the augmentation's draws (epoch >= 1) */
        brisk_metrics train_m = {0};
        int64_t batch = 0;
        if (epoch == c->start.epoch + 1) {
            train_m = c->start.train;
            batch = c->start.batch;
        }
        const int64_t first_batch = batch;
        unsigned long long steal0 = 0, total0 = 0, steal1, total1;
        const int times = brisk_cpu_times(&steal0, &total0) == 0;
        const double t0 = brisk_now_seconds();
        int stop = 0;
        double in_use = 0; /* threads in use, summed over the epoch's steps */
        for (; batch < per_epoch; batch++) {
            const int64_t lo = batch * B;
            const int n = n_train - lo < B ? (int)(n_train - lo) : B;
            brisk_step_stats st;
            in_use += brisk_trainer_threads_in_use(t); /* the step's, before it adapts */
            if ((err = brisk_trainer_step(t, ds, order + lo, n, &st)) < 0) {
                res->epochs_done = epoch - 1;
                res->batch = batch;
                res->train = train_m;
                goto out;
            }
            brisk_metrics_add(&train_m, &st.metrics);
            samples_since_log += n;
            const int64_t step = brisk_trainer_steps_done(t);
            if (r->tb && step % c->log_every == 0) {
                const double now = brisk_now_seconds();
                brisk_tb_step(r->tb, step, &st, (double)samples_since_log / (now - t_log));
                t_log = now;
                samples_since_log = 0;
            }
            int want_stop = 0;
            if (c->on_step) {
                const double secs = brisk_now_seconds() - t0;
                const brisk_fit_progress p = {
                    .epoch = epoch, .batch = batch + 1, .batches = per_epoch, .step = step,
                    .last = &st, .train = train_m, .epoch_seconds = secs,
                    .samples_per_second = secs > 0 ? (double)((batch + 1 - first_batch) * B) / secs : 0,
                    .lr_factor = brisk_trainer_lr_factor(t), .checkpoint = "",
                    .threads_in_use = in_use / (double)(batch + 1 - first_batch)};
                want_stop |= c->on_step(c->user, &p) != 0;
            }
            want_stop |= c->stop && *c->stop; /* read after the callback: it may raise it */
            /* Every rank stops after the same step: a signal may reach only some of them. */
            if (r->P > 1 ? brisk_comm_any(r->comm, want_stop) : want_stop) {
                stop = 1;
                batch++;
                break;
            }
        }
        if (stop && batch < per_epoch) { /* mid-epoch: a checkpoint of that position */
            res->end = BRISK_FIT_STOPPED;
            res->epochs_done = epoch - 1;
            res->batch = batch;
            res->train = train_m;
            err = save(r, epoch - 1, batch, &train_m);
            if (err == BRISK_OK && r->tb && c->report)
                brisk_log_report(r->tb->p, NULL);
            goto out;
        }
        /* (A stop at the epoch's last step ends the epoch first: validation, logs, and the
         * epoch's checkpoint, then it stops below.) */
        const double train_s = brisk_now_seconds() - t0;
        brisk_metrics val_m;
        if ((err = end_of_epoch_logs(r, ds, train_idx, n_train, val_idx, n_val, epoch,
                                     &val_m)) < 0)
            goto out;
        const int64_t step = brisk_trainer_steps_done(t);
        brisk_metrics val_ema = {0};
        if (brisk_trainer_ema_params(t) && n_val &&
            (err = brisk_trainer_evaluate_ema(t, ds, val_idx, n_val, &val_ema)) < 0)
            goto out;
        if (r->tb) {
            brisk_tb_epoch(r->tb, r->tb->train, step, epoch, &train_m);
            if (n_val)
                brisk_tb_epoch(r->tb, r->tb->val, step, epoch, &val_m);
            const int run = val_ema.count ? brisk_tb_ema_run(r->tb) : -1;
            if (run >= 0) /* else recorded as the logs' failure, as a failed push */
                brisk_tb_epoch(r->tb, run, step, epoch, &val_ema);
            if (ds->tokens && c->n_samples > 0 &&
                (err = log_samples(r, ds, n_val ? val_idx[0] : train_idx[0], epoch, step)) < 0)
                goto out;
        }
        int improved = 0;
        const int early = policies(r, epoch, &train_m, &val_m, &val_ema, &improved);
        if (early < 0) {
            err = early;
            goto out;
        }
        res->epochs_done = epoch;
        res->batch = 0;
        res->train = train_m;
        res->last_val = val_m;
        res->last_val_ema = val_ema;
        /* Training is over: the test set, logged before the last checkpoint. */
        if ((early || epoch == c->epochs) && c->test && c->n_test > 0) {
            if (c->on_test) {
                const brisk_fit_progress p = {
                    .epoch = epoch, .batch = per_epoch, .batches = per_epoch, .step = step,
                    .train = train_m, .val = val_m, .lr_factor = brisk_trainer_lr_factor(t),
                    .checkpoint = ""};
                c->on_test(c->user, &p);
            }
            brisk_failpoint("fit-test-begin");
            if ((err = brisk_trainer_evaluate(t, c->test, c->test_idx, c->n_test,
                                              &res->test)) < 0)
                goto out;
            if (brisk_trainer_ema_params(t) &&
                (err = brisk_trainer_evaluate_ema(t, c->test, c->test_idx, c->n_test,
                                                  &res->test_ema)) < 0)
                goto out;
            res->tested = 1;
            if (r->tb)
                brisk_tb_test(r->tb, step, &res->test);
            const int run = r->tb && res->test_ema.count ? brisk_tb_ema_run(r->tb) : -1;
            if (run >= 0)
                brisk_tb_test_run(r->tb, run, step, &res->test_ema);
        }
        /* The session ends with the last checkpoint (flushed with it). */
        if (r->tb && (early || epoch == c->epochs))
            brisk_log_hparams_end(r->tb->p, r->tb->root, BRISK_SESSION_SUCCESS);
        const brisk_metrics none = {0};
        if ((err = save(r, epoch, 0, &none)) < 0)
            goto out;
        /* After the checkpoint's flush, so that no compute thread waits for the report. */
        if (r->tb && c->report)
            brisk_log_report(r->tb->p, NULL);
        int cb_stop = 0;
        if (c->on_epoch) {
            const double steal = times && brisk_cpu_times(&steal1, &total1) == 0 &&
                                         total1 > total0 && steal1 >= steal0
                                     ? (double)(steal1 - steal0) / (double)(total1 - total0)
                                     : 0;
            const brisk_fit_progress p = {
                .epoch = epoch, .batch = per_epoch, .batches = per_epoch, .step = step,
                .train = train_m, .val = val_m, .val_ema = val_ema, .epoch_seconds = train_s,
                .samples_per_second = train_s > 0 ? (double)((per_epoch - first_batch) * B) / train_s : 0,
                .lr_factor = brisk_trainer_lr_factor(t),
                .checkpoint = c->checkpoint_dir ? res->checkpoint : "", .improved = improved,
                .threads_in_use = per_epoch > first_batch
                                      ? in_use / (double)(per_epoch - first_batch)
                                      : brisk_trainer_threads_in_use(t),
                .steal = steal};
            cb_stop = c->on_epoch(c->user, &p) != 0;
        }
        if (r->P > 1)
            cb_stop = brisk_comm_any(r->comm, cb_stop);
        if (early) {
            res->end = BRISK_FIT_EARLY_STOP;
            goto out;
        }
        if (cb_stop || stop) {
            res->end = BRISK_FIT_STOPPED;
            goto out;
        }
    }
    res->end = BRISK_FIT_DONE;
out:
    free(order);
    return err;
}

int brisk_fit(brisk_trainer *t, const brisk_dataset *ds, const int32_t *train_idx,
              int64_t n_train, const int32_t *val_idx, int64_t n_val,
              const brisk_fit_config *c, brisk_fit_result *res)
{
    int err = check_fit(t, ds, train_idx, n_train, val_idx, n_val, c, res);
    if (err < 0)
        return err;
    const brisk_fit_policy best = {c->keep_best, c->best_min_delta, c->best_metric};
    const brisk_fit_policy *pols[3] = {&c->early_stop, &best, &c->plateau};
    static const char *const pol_names[3] = {"early_stop", "keep_best", "plateau"};
    for (int k = 0; k < 3; k++)
        if (ds->targets > 0 && pols[k]->patience &&
            (pols[k]->metric == BRISK_FIT_VAL_ACCURACY ||
             pols[k]->metric == BRISK_FIT_TRAIN_ACCURACY))
            return brisk_error_set(BRISK_EINVAL, "fit: %s watches %s, but regression targets "
                                   "have no accuracy: watch a loss", pol_names[k],
                                   brisk_fit_metric_name(pols[k]->metric));
    memset(res, 0, sizeof *res);
    res->epochs_done = c->start.epoch;
    res->batch = c->start.batch;
    res->train = c->start.train;
    fit_run r = {.t = t, .c = c, .res = res, .comm = brisk_trainer_get_config(t)->comm,
                 .pol = c->start.policies};
    r.rank = brisk_comm_rank(r.comm);
    r.P = brisk_comm_size(r.comm);
    r.tb = r.rank == 0 ? c->tb : NULL;
    if (r.tb) {
        r.tb->no_accuracy = ds->targets > 0; /* regression: no accuracy to log */
        r.tb->bytes_per_token = ds->tokens ? ds->bytes_per_token : 0;
        if (c->start.steps_done == 0) /* a run from scratch: its hparams session */
            brisk_tb_session_start(r.tb, t, c->epochs, c->hparams, c->n_hparams);
    }
    /* Whether there are logs decides the collectives of the histogram epochs: every rank
     * must agree, so rank 0's answer is what counts. */
    r.logging = r.P > 1 ? brisk_comm_any(r.comm, r.tb != NULL) : r.tb != NULL;
    if (r.pol.lr_factor > 0 && (err = brisk_trainer_set_lr_factor(t, r.pol.lr_factor)) < 0)
        return err;
    r.pol.lr_factor = brisk_trainer_lr_factor(t);
    if (r.P > 1 && r.rank == 0) {
        r.full_m = brisk_slab_alloc(brisk_trainer_model(t));
        r.full_v = brisk_slab_alloc(brisk_trainer_model(t));
        r.full_grads = brisk_slab_alloc(brisk_trainer_model(t));
        if (!r.full_m || !r.full_v || !r.full_grads) {
            err = brisk_error_set(BRISK_ENOMEM, "fit: out of memory for the gathered slabs");
            goto out;
        }
    }
    err = fit_loop(&r, ds, train_idx, n_train, val_idx, n_val);
    if (err < 0 && r.tb) /* diverged, or a file could not be written */
        brisk_log_hparams_end(r.tb->p, r.tb->root, BRISK_SESSION_FAILURE);
out:
    brisk_slab_free(r.full_m);
    brisk_slab_free(r.full_v);
    brisk_slab_free(r.full_grads);
    return err;
}
