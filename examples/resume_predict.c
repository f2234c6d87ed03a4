/* resume_predict: a run directory (brisk-train's, or a library program's) trained a few epochs
 * more, then predictions for new samples from its last checkpoint alone: each in a handful of
 * calls (brisk/run.h).
 *
 *   resume_predict RUN_DIR EPOCHS FEATURES.npy|.csv PREDICTIONS.npy|.csv
 *
 * e.g. after `brisk-train --data synthetic --model 32-16-4 --epochs 2 --logdir runs/a`:
 *   resume_predict runs/a 4 new.npy predictions.npy
 */
#include "brisk/brisk.h"

#include <stdio.h>

static void check(int err)
{
    if (err != BRISK_OK) {
        fprintf(stderr, "resume_predict: %s\n", brisk_error_detail());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: resume_predict RUN_DIR EPOCHS FEATURES PREDICTIONS\n");
        return 2;
    }
    char epochs[64];
    snprintf(epochs, sizeof epochs, "epochs=%s", argv[2]);
    const char *more[] = {epochs};

    /* Resume the run: its settings, logs and checkpoints are the directory's. */
    brisk_run *run;
    brisk_run_result res;
    check(brisk_run_open(&(brisk_run_options){.resume = argv[1], .settings = more,
                                              .n_settings = 1},
                         &run));
    check(brisk_run_train(run, NULL, &res));
    brisk_run_close(run);
    printf("trained to epoch %lld: test loss %.4f, accuracy %.2f%%; checkpoint %s\n",
           (long long)res.fit.epochs_done, brisk_metrics_loss(&res.test),
           100 * brisk_metrics_accuracy(&res.test), res.fit.checkpoint);

    /* Predict from the checkpoint alone: its model, weights and normalisation. */
    brisk_predictor *p;
    int64_t n;
    check(brisk_predictor_open(res.fit.checkpoint, 0, &p));
    check(brisk_predictor_predict_file(p, argv[3], argv[4], &n));
    brisk_predictor_close(p);
    printf("%lld predictions written to %s\n", (long long)n, argv[4]);
    return 0;
}
