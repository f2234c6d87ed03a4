/* regress_csv: regression from a CSV file with brisk_fit. The file's header names the
 * columns; the target column is chosen by name ("y" here) and every other column is a
 * feature. A quarter of the rows are held out as a test set and a tenth of the rest validates;
 * the features are normalised per feature on the training rows (the checkpoints keep that
 * normalisation). Training stops early when the validation loss stops improving, and the
 * best epoch's checkpoint is loaded back to measure the test error. TensorBoard logs go to
 * OUTDIR/logs (epoch_loss of both runs is the mean squared error; no accuracy is logged).
 *
 * Usage: regress_csv FILE.csv OUTDIR [THREADS]
 *   e.g. regress_csv examples/data/friedman1.csv /tmp/friedman   (Friedman's benchmark #1:
 *   its noise alone is an error of 1.0; predicting the mean is an error of about 4.9)
 * Prints the test root-mean-square error and a checksum of the best weights (the same for any
 * THREADS); exit status 0 when the error is below 1.5. */
#include "brisk/brisk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check(int rc)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "regress_csv: %s\n", brisk_error_detail());
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "Usage: regress_csv FILE.csv OUTDIR [THREADS]\n");
        return 2;
    }
    brisk_dataset ds;
    check(brisk_dataset_load_csv(argv[1], "y", BRISK_TARGET_VALUES, &ds));

    /* Test rows, then training and validation rows among the rest (indices into ds). */
    int32_t *order, *inner;
    int64_t n_rest, n_train;
    check(brisk_split(ds.n, 0.25, 11, &order, &n_rest));
    check(brisk_split(n_rest, 0.1, 12, &inner, &n_train));
    for (int64_t i = 0; i < n_rest; i++)
        inner[i] = order[inner[i]];
    const int32_t *train = inner, *val = inner + n_train, *test = order + n_rest;
    const int64_t n_val = n_rest - n_train, n_test = ds.n - n_rest;

    brisk_trainer_config c = {0};
    check(brisk_model_config_set(&c.model, "dense:64,tanh,dense:64,tanh,dense:1",
                                 brisk_shape_vec(ds.d)));
    c.model.loss = BRISK_LOSS_MSE;
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 3e-3f;
    c.batch = 32;
    c.micro_batch = 32;
    c.seed = 3;
    c.threads = argc > 3 ? atoi(argv[3]) : 0;
    brisk_trainer *t;
    check(brisk_trainer_create(&c, &t));
    float *mean = malloc(2 * sizeof *mean * (size_t)ds.d), *std = mean + ds.d;
    if (!mean)
        return 1;
    check(brisk_dataset_feature_stats(&ds, train, n_train, mean, std));
    check(brisk_trainer_set_norm(t, mean, std, ds.d)); /* per feature */

    char logdir[4096];
    snprintf(logdir, sizeof logdir, "%s/logs", argv[2]);
    brisk_tb tb;
    check(brisk_tb_open(&tb, logdir, 1, brisk_tb_ring_bytes(t)));
    brisk_fit_config fc = brisk_fit_defaults();
    fc.epochs = 300;
    fc.tb = &tb;
    fc.histogram_every = 25;
    fc.seed = 3;
    fc.checkpoint_dir = argv[2];
    fc.run_id = "friedman";
    fc.keep = 1;
    fc.early_stop = (brisk_fit_policy){.patience = 25, .metric = BRISK_FIT_VAL_LOSS};
    fc.keep_best = 1;
    fc.best_metric = BRISK_FIT_VAL_LOSS;
    brisk_fit_result res;
    check(brisk_fit(t, &ds, train, n_train, val, n_val, &fc, &res));
    check(brisk_tb_close(&tb, &(double){0}));

    /* The best epoch's weights and normalisation, from its checkpoint alone. */
    brisk_checkpoint *best;
    check(brisk_checkpoint_load(res.best_checkpoint, &best));
    brisk_trainer_load_state(t, best->params, best->opt_m, best->opt_v, best->buffers,
                             best->pos.steps_done);
    check(brisk_trainer_set_norm(t, best->pos.norm_mean, best->pos.norm_std,
                                 best->pos.norm_count));
    brisk_metrics m;
    check(brisk_trainer_evaluate(t, &ds, test, n_test, &m));
    const double rmse = sqrt(brisk_metrics_loss(&m));
    double mu = 0, var = 0; /* the error of predicting the training targets' mean */
    for (int64_t i = 0; i < n_train; i++)
        mu += ds.yf[train[i]] / (double)n_train;
    for (int64_t i = 0; i < n_test; i++)
        var += (ds.yf[test[i]] - mu) * (ds.yf[test[i]] - mu) / (double)n_test;
    const uint64_t h = brisk_model_checksum(best->layout, best->params);
    printf("%lld rows of %d features: %lld to train, %lld to validate, %lld to test\n",
           (long long)ds.n, ds.d, (long long)n_train, (long long)n_val, (long long)n_test);
    printf("%s after %lld epochs; best epoch %lld (%s)\n",
           res.end == BRISK_FIT_EARLY_STOP ? "stopped early" : "done",
           (long long)res.epochs_done, (long long)best->pos.epoch, res.best_checkpoint);
    printf("test RMSE %.4f (predicting the mean: %.4f); weights checksum %016llx\n", rmse,
           sqrt(var), (unsigned long long)h);
    brisk_checkpoint_free(best);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(order);
    free(inner);
    free(mean);
    return rmse < 1.5 ? 0 : 1;
}
