/* train_cnn: the smallest complete Brisk program, a CNN trained on every core with a loop of
 * your own (docs/api.md shows this file). Every Brisk call returns BRISK_OK or a BRISK_E*
 * code, and brisk_error_detail() says what was wrong. */
#include "brisk/brisk.h"

#include <stdio.h>
#include <stdlib.h>

static int check(int rc)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "train_cnn: %s\n", brisk_error_detail());
        exit(1);
    }
    return rc;
}

int main(void)
{
    brisk_trainer_config c = {0};
    check(brisk_model_config_set(&c.model, "conv:8:3:pad1,relu,maxpool:2,flatten,dense:10",
                                 brisk_shape_img(1, 28, 28)));
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 1e-3f;
    c.batch = 64; /* threads: every core; micro-batch: the default */
    c.seed = 1;
    brisk_dataset ds; /* or brisk_dataset_load_dir("/usr/share/datasets/fashion-mnist", ...) */
    check(brisk_dataset_synthetic(2048, 784, 10, 60.0f, 1, 0, &ds));
    brisk_trainer *t;
    check(brisk_trainer_create(&c, &t));

    int32_t *all = malloc(sizeof *all * (size_t)ds.n), *order = malloc(sizeof *order * (size_t)ds.n);
    if (!all || !order)
        return 1;
    for (int32_t i = 0; i < ds.n; i++)
        all[i] = i;
    float mean, std; /* normalisation: (x - mean) / std over the training set */
    brisk_dataset_stats(&ds, all, ds.n, &mean, &std);
    check(brisk_trainer_set_norm(t, &mean, &std, 1));
    for (int epoch = 1; epoch <= 3; epoch++) {
        brisk_shuffle(all, order, ds.n, c.seed, (uint32_t)epoch);
        brisk_metrics m = {0};
        for (int64_t b = 0; b + c.batch <= ds.n; b += c.batch) {
            brisk_step_stats st;
            check(brisk_trainer_step(t, &ds, order + b, c.batch, &st));
            brisk_metrics_add(&m, &st.metrics);
        }
        printf("epoch %d: loss %.4f, accuracy %.1f%% (%d threads)\n", epoch,
               brisk_metrics_loss(&m), 100 * brisk_metrics_accuracy(&m),
               brisk_trainer_threads(t));
    }
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(all);
    free(order);
    return 0;
}
