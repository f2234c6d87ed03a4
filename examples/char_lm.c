/* char_lm: a character-level language model (a small GPT) trained on a text file on every
 * core, then a sample of what it writes.
 *
 *   char_lm TEXT_FILE LOGDIR [EPOCHS [SETTING=VALUE ...]]
 *
 * The text is the data (a token per byte); the run is brisk-train's (brisk/run.h): the gpt
 * preset's recipe, the validation part the end of the text, TensorBoard logs with bits per
 * byte and samples under LOGDIR, a checkpoint per epoch. Extra settings are brisk-train's
 * flags without "--" ("model=gpt:2:64:4", "batch=8"). For the README's model on Debian's
 * fortunes: scripts/fortunes-text.sh data/fortunes.txt && char_lm data/fortunes.txt logs/lm 3
 */
#include "brisk/brisk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int err)
{
    if (err != BRISK_OK) {
        fprintf(stderr, "char_lm: %s\n", brisk_error_detail());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: char_lm TEXT_FILE LOGDIR [EPOCHS [SETTING=VALUE ...]]\n");
        return 2;
    }
    char data[4200], logdir[4200], epochs[64];
    snprintf(data, sizeof data, "data=%s", argv[1]);
    snprintf(logdir, sizeof logdir, "logdir=%s", argv[2]);
    snprintf(epochs, sizeof epochs, "epochs=%s", argc > 3 ? argv[3] : "3");
    const char *settings[64] = {"model=gpt:4:128:4", "seq-len=128", "batch=16", data, logdir,
                                epochs};
    int n = 6;
    for (int i = 4; i < argc && n < 64; i++) /* later settings win */
        settings[n++] = argv[i];

    brisk_run *run;
    brisk_run_result res;
    check(brisk_run_open(&(brisk_run_options){.settings = settings, .n_settings = n}, &run));
    check(brisk_run_train(run, NULL, &res));
    printf("validation loss %.4f nats per byte (%.3f bits per byte) after %lld epochs; "
           "checkpoint %s\n", brisk_metrics_loss(&res.fit.last_val),
           brisk_metrics_loss(&res.fit.last_val) / 0.6931471805599453,
           (long long)res.fit.epochs_done, res.fit.checkpoint);

    /* What it writes: 300 bytes after a prompt, drawn at temperature 0.8 from the 40 likeliest
     * next bytes, the same for a seed on any machine. */
    brisk_trainer *t = brisk_run_trainer(run);
    const char *prompt = "The ";
    int32_t out[4 + 300];
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)prompt[i];
    const brisk_generate_config gen = {.tokens = 300, .temperature = 0.8, .top_k = 40,
                                       .seed = 7};
    check(brisk_generate(brisk_trainer_model(t), brisk_trainer_params(t), NULL, out, 4, &gen,
                         out));
    for (int i = 0; i < 4 + 300; i++)
        putchar(out[i]);
    putchar('\n');
    brisk_run_close(run);
    return 0;
}
