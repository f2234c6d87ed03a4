/* fit_policies: the library's training loop, brisk_fit, with what Keras and Lightning users
 * reach for: TensorBoard logs (train and validation runs with the same tags), a checkpoint per
 * epoch, early stopping, the best epoch's checkpoint and a lower learning rate on a plateau,
 * Ctrl-C handled (a checkpoint of the exact position), a moving average of the weights
 * (validated every epoch in its own run, validation_ema, and kept in the checkpoints), and a
 * callback that adds a scalar of its own to the logs.
 *
 * Usage: fit_policies [LOGDIR]   (default: a new directory under /tmp)
 * Prints one line per epoch and where the logs and checkpoints are; exit status 0 when the
 * validation accuracy reached 90%. */
#include "brisk/brisk.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop;

static void on_sigint(int sig)
{
    (void)sig;
    stop = 1;
}

static int check(int rc)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "fit_policies: %s\n", brisk_error_detail());
        exit(1);
    }
    return rc;
}

/* After every epoch: print it, and log the rate factor as a scalar of our own. */
static int on_epoch(void *user, const brisk_fit_progress *p)
{
    brisk_tb *tb = user;
    printf("epoch %lld: train loss %.4f, validation accuracy %.2f%% (moving average %.2f%%), "
           "lr x%g%s\n", (long long)p->epoch, brisk_metrics_loss(&p->train),
           100 * brisk_metrics_accuracy(&p->val), 100 * brisk_metrics_accuracy(&p->val_ema),
           (double)p->lr_factor, p->improved ? " (best so far)" : "");
    brisk_log_scalar(tb->p, tb->train, "lr_factor", p->step, p->lr_factor);
    return 0;
}

int main(int argc, char **argv)
{
    char dir[256];
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else
        snprintf(dir, sizeof dir, "/tmp/brisk-fit-XXXXXX");
    if (argc == 1 && !mkdtemp(dir)) {
        perror("fit_policies: mkdtemp");
        return 1;
    }
    signal(SIGINT, on_sigint);

    /* 12 classes of 8x8 images, 3,000 for training and 600 for validation. */
    brisk_dataset ds;
    check(brisk_dataset_synthetic(3600, 64, 12, 90.0f, 3, 0, &ds));
    ds.rows = ds.cols = 8;
    int32_t *idx = malloc(sizeof *idx * (size_t)ds.n);
    if (!idx)
        return 1;
    for (int32_t i = 0; i < ds.n; i++)
        idx[i] = i;
    float mean, std;
    brisk_dataset_stats(&ds, idx, 3000, &mean, &std);

    brisk_trainer_config c = {0};
    check(brisk_model_config_set(&c.model, "conv:16:3:pad1,relu,maxpool:2,flatten,dense:32,relu,"
                                           "dropout:0.2,dense:12",
                                 brisk_shape_img(1, 8, 8)));
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 2e-3f;
    c.batch = 64;
    c.seed = 7;
    c.ema_decay = 0.99; /* the best checkpoint and early stopping then watch the average */
    brisk_trainer *t;
    check(brisk_trainer_create(&c, &t));
    check(brisk_trainer_set_norm(t, &mean, &std, 1));

    brisk_tb tb;
    check(brisk_tb_open(&tb, dir, 1, brisk_tb_ring_bytes(t)));
    char ckdir[300], run[BRISK_RUN_ID_MAX];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", dir);
    brisk_run_id(run);

    brisk_fit_config fc = brisk_fit_defaults();
    fc.epochs = 30;
    fc.seed = 7;
    fc.tb = &tb;
    fc.checkpoint_dir = ckdir;
    fc.run_id = run;
    fc.stop = &stop;
    fc.user = &tb;
    fc.on_epoch = on_epoch;
    fc.early_stop = (brisk_fit_policy){.patience = 4, .min_delta = 1e-3,
                                       .metric = BRISK_FIT_VAL_LOSS};
    fc.keep_best = 1;
    fc.best_metric = BRISK_FIT_VAL_ACCURACY;
    fc.plateau = (brisk_fit_policy){.patience = 2, .min_delta = 1e-3,
                                    .metric = BRISK_FIT_VAL_LOSS};
    fc.plateau_factor = 0.3f;
    fc.plateau_min_lr = 1e-5f;
    brisk_fit_result res;
    check(brisk_fit(t, &ds, idx, 3000, idx + 3000, 600, &fc, &res));
    check(brisk_tb_close(&tb, &(double){0}));

    const char *how = res.end == BRISK_FIT_EARLY_STOP ? "stopped early"
                      : res.end == BRISK_FIT_STOPPED  ? "interrupted"
                                                      : "done";
    printf("%s after %lld epochs; logs in %s (tensorboard --logdir %s)\n", how,
           (long long)res.epochs_done, dir, dir);
    printf("newest checkpoint %s\nbest checkpoint %s\n", res.checkpoint, res.best_checkpoint);
    const double acc = brisk_metrics_accuracy(&res.last_val);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(idx);
    return acc >= 0.9 ? 0 : 1;
}
