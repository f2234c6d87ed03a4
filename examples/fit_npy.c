/* fit_npy: classification from NumPy .npy files with brisk_fit: early stopping on the
 * validation loss, the best epoch's checkpoint (by validation accuracy) kept beside the
 * newest, TensorBoard logs, then the best checkpoint loaded back and scored on a test set.
 * The features may be float32, float64 or uint8 of shape (N, D) or (N, H, W) / (N, C, H, W);
 * the labels integers 0..255 of shape (N). For Fashion-MNIST as .npy:
 *   python3 -c 'import numpy as np, gzip
 *   d = "/usr/share/datasets/fashion-mnist/"
 *   for s, p in (("train", "train"), ("test", "t10k")):
 *       x = np.frombuffer(gzip.open(d + p + "-images-idx3-ubyte.gz").read()[16:], np.uint8)
 *       y = np.frombuffer(gzip.open(d + p + "-labels-idx1-ubyte.gz").read()[8:], np.uint8)
 *       np.save(s + "_x.npy", (x.reshape(-1, 784) / 255).astype(np.float32))
 *       np.save(s + "_y.npy", y.astype(np.int64))'
 *
 * Usage: fit_npy TRAIN_X.npy TRAIN_Y.npy TEST_X.npy TEST_Y.npy OUTDIR [THREADS]
 * Prints a line per epoch, the test accuracy and a checksum of the best weights (the same for
 * any THREADS); exit status 0 when the test accuracy reached 87%. */
#include "brisk/brisk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(int rc)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "fit_npy: %s\n", brisk_error_detail());
        exit(1);
    }
    return rc;
}

static int on_epoch(void *user, const brisk_fit_progress *p)
{
    (void)user;
    printf("epoch %lld: train loss %.4f, validation loss %.4f, accuracy %.2f%%%s\n",
           (long long)p->epoch, brisk_metrics_loss(&p->train), brisk_metrics_loss(&p->val),
           100 * brisk_metrics_accuracy(&p->val), p->improved ? " (best so far)" : "");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "Usage: fit_npy TRAIN_X.npy TRAIN_Y.npy TEST_X.npy TEST_Y.npy OUTDIR "
                        "[THREADS]\n");
        return 2;
    }
    brisk_dataset ds, test;
    check(brisk_dataset_load_npy(argv[1], argv[2], BRISK_TARGET_CLASSES, &ds));
    check(brisk_dataset_load_npy(argv[3], argv[4], BRISK_TARGET_CLASSES, &test));
    if (test.d != ds.d) {
        fprintf(stderr, "fit_npy: %s has %d features per sample, %s %d\n", argv[3], test.d,
                argv[1], ds.d);
        return 1;
    }
    int32_t *order, *test_idx = malloc(sizeof *test_idx * (size_t)test.n);
    int64_t n_train;
    check(brisk_split(ds.n, 0.1, 1, &order, &n_train)); /* a tenth validates */
    if (!test_idx)
        return 1;
    for (int32_t i = 0; i < test.n; i++)
        test_idx[i] = i;

    brisk_trainer_config c = {0};
    check(brisk_model_config_set(&c.model, "dense:256,relu,dropout:0.2,dense:128,relu,dense:10",
                                 brisk_shape_vec(ds.d)));
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 1e-3f;
    c.batch = 128;
    c.seed = 1;
    c.threads = argc > 6 ? atoi(argv[6]) : 0;
    brisk_trainer *t;
    check(brisk_trainer_create(&c, &t));
    float mean, std; /* one mean and std for all pixels, from the training part */
    brisk_dataset_stats(&ds, order, n_train, &mean, &std);
    check(brisk_trainer_set_norm(t, &mean, &std, 1));

    char logdir[4096], ckdir[4096];
    snprintf(logdir, sizeof logdir, "%s/logs", argv[5]);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", argv[5]);
    brisk_tb tb;
    check(brisk_tb_open(&tb, logdir, 1, brisk_tb_ring_bytes(t)));
    brisk_fit_config fc = brisk_fit_defaults();
    fc.epochs = 20;
    fc.seed = 1;
    fc.tb = &tb;
    fc.checkpoint_dir = ckdir;
    fc.run_id = "npy";
    fc.keep = 2;
    fc.on_epoch = on_epoch;
    fc.early_stop = (brisk_fit_policy){.patience = 3, .min_delta = 1e-3,
                                       .metric = BRISK_FIT_VAL_LOSS};
    fc.keep_best = 1;
    fc.best_metric = BRISK_FIT_VAL_ACCURACY;
    brisk_fit_result res;
    check(brisk_fit(t, &ds, order, n_train, order + n_train, ds.n - n_train, &fc, &res));
    check(brisk_tb_close(&tb, &(double){0}));

    /* Score the best epoch on the test set, from its checkpoint alone. */
    brisk_checkpoint *best;
    check(brisk_checkpoint_load(res.best_checkpoint, &best));
    brisk_trainer_load_state(t, best->params, best->opt_m, best->opt_v, best->buffers,
                             best->pos.steps_done);
    check(brisk_trainer_set_norm(t, best->pos.norm_mean, best->pos.norm_std,
                                 best->pos.norm_count));
    brisk_metrics m;
    check(brisk_trainer_evaluate(t, &test, test_idx, test.n, &m));
    const uint64_t h = brisk_model_checksum(best->layout, best->params);
    printf("%s after %lld epochs; best epoch %lld: %s\n",
           res.end == BRISK_FIT_EARLY_STOP ? "stopped early" : "done",
           (long long)res.epochs_done, (long long)best->pos.epoch, res.best_checkpoint);
    printf("test accuracy %.2f%% on %lld samples; weights checksum %016llx; logs in %s\n",
           100 * brisk_metrics_accuracy(&m), (long long)test.n, (unsigned long long)h, logdir);
    const double acc = brisk_metrics_accuracy(&m);
    brisk_checkpoint_free(best);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    brisk_dataset_free(&test);
    free(order);
    free(test_idx);
    return acc >= 0.87 ? 0 : 1;
}
