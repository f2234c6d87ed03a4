/* tb_demo LOGDIR [--tags N]: writes a small experiment with every summary kind brisk_log has,
 * for reading with TensorBoard itself (tests/tb_check.sh runs ../shared/tools/tb_read.py on
 * it where Python's tensorboard package is installed); with --tags N, N more scalar tags
 * (tag00000000 ...) of one point each in train (tests/events_test.sh times brisk-events on
 * them):
 *   LOGDIR/            hparams (experiment, session start and end), custom_scalars layout
 *   LOGDIR/train       epoch_loss, epoch_accuracy, batch_loss, a histogram, text, an image
 *   LOGDIR/validation  epoch_loss, epoch_accuracy (the same tags: the curves overlay)
 */
#include "brisk/error.h"
#include "brisk/logger.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(int rc, const char *what)
{
    if (rc != BRISK_OK) {
        fprintf(stderr, "tb_demo: %s: %s (%s)\n", what, brisk_strerror(rc), brisk_error_detail());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long extra = 0;
    if (argc == 4 && !strcmp(argv[2], "--tags"))
        extra = atol(argv[3]);
    else if (argc != 2) {
        fprintf(stderr, "Usage: tb_demo LOGDIR [--tags N]\n");
        return 2;
    }
    brisk_logger *lg;
    if (check(brisk_logger_create(&(brisk_logger_config){.logdir = argv[1]}, &lg), "create"))
        return 1;
    int root, train, val;
    brisk_log_producer *p;
    int bad = check(brisk_logger_add_run(lg, "", 0, &root), "run ''") ||
              check(brisk_logger_add_run(lg, "train", 0, &train), "run train") ||
              check(brisk_logger_add_run(lg, "validation", 0, &val), "run validation") ||
              check(brisk_logger_producer(lg, &p), "producer");
    if (bad) {
        brisk_logger_destroy(lg);
        return 1;
    }
    const brisk_hparam hp[] = {
        {.name = "lr", .type = BRISK_HPARAM_NUMBER, .number = 1e-3},
        {.name = "optimizer", .type = BRISK_HPARAM_STRING, .string = "adamw"},
        {.name = "clip", .type = BRISK_HPARAM_BOOL, .boolean = 0},
    };
    const brisk_metric metrics[] = {{"validation", "epoch_accuracy"}, {"validation", "epoch_loss"}};
    bad |= check(brisk_log_hparams(p, root, hp, 3, metrics, 2), "hparams");
    const char *loss[] = {"epoch_loss"}, *acc[] = {"epoch_accuracy"};
    const brisk_chart charts[] = {{"loss (train and validation)", loss, 1},
                                  {"accuracy (train and validation)", acc, 1}};
    bad |= check(brisk_log_custom_scalars(p, root, "Brisk", charts, 2), "custom_scalars");
    bad |= check(brisk_log_text(p, train, "config", 0,
                                "| flag | value |\n|---|---|\n| --lr | 0.001 |\n| --epochs | 5 |"),
                 "text");
    float w[4096];
    uint8_t img[28 * 28];
    for (int e = 1; e <= 5; e++) {
        for (int s = 0; s < 10; s++) {
            const int step = (e - 1) * 10 + s;
            bad |= check(brisk_log_scalar(p, train, "batch_loss", step, 2.0 / (1 + step)),
                         "batch_loss");
        }
        bad |= check(brisk_log_scalar(p, train, "epoch_loss", e, 1.0 / e), "epoch_loss");
        bad |= check(brisk_log_scalar(p, val, "epoch_loss", e, 1.2 / e), "epoch_loss");
        bad |= check(brisk_log_scalar(p, train, "epoch_accuracy", e, 1 - 0.5 / e), "acc");
        bad |= check(brisk_log_scalar(p, val, "epoch_accuracy", e, 1 - 0.6 / e), "acc");
        for (int i = 0; i < 4096; i++)
            w[i] = (float)(sin(i * 0.7 + e) * exp(-0.1 * e) * 0.3);
        bad |= check(brisk_log_histogram(p, train, "dense0.weight", e, w, 4096), "histogram");
        for (int i = 0; i < 28 * 28; i++)
            img[i] = (uint8_t)((i % 28 + i / 28 + e * 20) % 256);
        bad |= check(brisk_log_image(p, train, "dense0.weight/tiles", e, img, 28, 28, 1), "image");
    }
    for (long i = 0; i < extra; i++) {
        char tag[32];
        snprintf(tag, sizeof tag, "tag%08ld", i);
        bad |= check(brisk_log_scalar(p, train, tag, 1, (double)i), "extra tag");
        if (i % 1000 == 999) /* the ring holds a few thousand: let the thread write them */
            bad |= check(brisk_logger_flush(lg), "flush");
    }
    bad |= check(brisk_log_hparams_end(p, root, BRISK_SESSION_SUCCESS), "hparams end");
    bad |= check(brisk_logger_close(lg), "close");
    brisk_logger_destroy(lg);
    if (!bad)
        printf("tb_demo: wrote %s\n", argv[1]);
    return bad;
}
