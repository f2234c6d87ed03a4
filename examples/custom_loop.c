/* custom_loop: your own training loop, logged for TensorBoard the way brisk_fit would, for
 * programs that want the loop in their hands. Per epoch: the training batches (step scalars
 * every 10 steps), then the validation samples; both runs, LOGDIR/train and LOGDIR/validation,
 * get epoch_loss and epoch_accuracy under the same tags (TensorBoard overlays the curves),
 * plus activation mean/std per layer, weight and gradient histograms per tensor and a scalar
 * of our own; and the logs are flushed to disk at the end of every epoch.
 *
 * Usage: custom_loop LOGDIR [THREADS]   then: tensorboard --logdir LOGDIR
 * Prints one line per epoch; exit status 0 when the validation accuracy reached 85%. */
#include "brisk/brisk.h"

#include <stdio.h>
#include <stdlib.h>

static int check(int rc)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "custom_loop: %s\n", brisk_error_detail());
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "Usage: custom_loop LOGDIR [THREADS]\n");
        return 2;
    }
    /* 10 classes of 28x28 images: 4,000 to train on, 1,000 to validate with. */
    brisk_dataset ds;
    check(brisk_dataset_synthetic(5000, 784, 10, 100.0f, 5, 0, &ds));
    ds.rows = ds.cols = 28;
    int32_t *all = malloc(sizeof *all * 5000), *order = malloc(sizeof *order * 4000);
    if (!all || !order)
        return 1;
    for (int32_t i = 0; i < 5000; i++)
        all[i] = i;
    const int32_t *train = all, *val = all + 4000;
    float mean, std;
    brisk_dataset_stats(&ds, train, 4000, &mean, &std);

    brisk_trainer_config c = {0};
    check(brisk_model_config_set(&c.model, "dense:128,relu,dense:64,relu,dense:10",
                                 brisk_shape_vec(784)));
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule.lr = 1e-3f;
    c.batch = 100;
    c.seed = 5;
    c.threads = argc > 2 ? atoi(argv[2]) : 0; /* 0: every core */
    brisk_trainer *t;
    check(brisk_trainer_create(&c, &t));
    check(brisk_trainer_set_norm(t, &mean, &std, 1)); /* one mean and std for every pixel */
    const int L = brisk_model_num_layers(brisk_trainer_model(t));

    brisk_tb tb; /* the runs: tb.train and tb.val (and tb.root); step 1 is the first */
    check(brisk_tb_open(&tb, argv[1], 1, brisk_tb_ring_bytes(t)));
    double *act = malloc(sizeof *act * 2 * (size_t)L);
    int32_t *pred = malloc(sizeof *pred * 1000);
    if (!act || !pred)
        return 1;
    brisk_metrics val_m = {0};
    for (int epoch = 1; epoch <= 5; epoch++) {
        brisk_shuffle(train, order, 4000, c.seed, (uint32_t)epoch);
        brisk_metrics train_m = {0};
        for (int b = 0; b < 4000; b += c.batch) {
            brisk_step_stats st;
            check(brisk_trainer_step(t, &ds, order + b, c.batch, &st));
            brisk_metrics_add(&train_m, &st.metrics);
            const int64_t step = brisk_trainer_steps_done(t);
            if (step % 10 == 0)
                brisk_tb_step(&tb, step, &st, 0); /* batch_loss, batch_accuracy, lr, ... */
        }
        const int64_t step = brisk_trainer_steps_done(t);
        /* Validation, with the activations' statistics and the predictions in one pass. */
        check(brisk_trainer_inspect(t, &ds, val, 1000, &val_m, pred, act, act + L));
        brisk_tb_epoch(&tb, tb.train, step, epoch, &train_m); /* the same tags in both runs */
        brisk_tb_epoch(&tb, tb.val, step, epoch, &val_m);
        /* Histograms of every weight tensor and of the last step's gradient, activation
         * mean/std per layer, the first layer's weights as images, the confusion matrix. */
        brisk_tb_inspect(&tb, step, t, brisk_trainer_grads(t), act, act + L, &ds, pred, val,
                         1000);
        brisk_log_scalar(tb.p, tb.val, "error_rate", step, 1 - brisk_metrics_accuracy(&val_m));
        check(brisk_logger_flush(tb.lg)); /* everything so far is on disk */
        printf("epoch %d: train loss %.4f, validation loss %.4f, accuracy %.2f%%\n", epoch,
               brisk_metrics_loss(&train_m), brisk_metrics_loss(&val_m),
               100 * brisk_metrics_accuracy(&val_m));
    }
    check(brisk_tb_close(&tb, &(double){0}));
    printf("logs in %s: tensorboard --logdir %s\n", argv[1], argv[1]);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(all);
    free(order);
    free(act);
    free(pred);
    return brisk_metrics_accuracy(&val_m) >= 0.85 ? 0 : 1;
}
