/* What a resume does with a checkpoint, at the library level: load it (CRCs fixed up), build
 * a trainer for the model it names, put its state in, and take a step and an evaluation on a
 * small synthetic task of the model's shape. Nothing may crash, whatever the values. */
#include "brisk/checkpoint.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/trainer.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    const int fd = fuzz_checkpoint_file(data, size, 1, path);
    if (fd < 0)
        return 0;
    brisk_checkpoint *c = NULL;
    if (brisk_checkpoint_load(path, &c) == BRISK_OK &&
        brisk_model_num_params(c->layout) <= 100000) {
        const brisk_model_config *mc = &c->model;
        const int D = (int)brisk_shape_size(mc->input), C = brisk_model_outputs(c->layout);
        brisk_trainer_config cfg = {.model = *mc, .batch = 8, .threads = 2, .seed = 1};
        cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
        cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
        brisk_trainer *t = NULL;
        brisk_dataset ds;
        if (D <= 4096 && brisk_dataset_synthetic(16, D, C < 2 ? 2 : C, 30.0f, 1, 0, &ds) == 0) {
            if (brisk_dataset_check_labels(&ds, C, "synthetic") == 0 &&
                brisk_trainer_create(&cfg, &t) == 0) {
                brisk_trainer_load_state(t, c->params, c->opt_m, c->opt_v, c->buffers,
                                         c->pos.steps_done);
                int32_t idx[16];
                for (int i = 0; i < 16; i++)
                    idx[i] = i;
                brisk_step_stats st;
                brisk_metrics m;
                /* The file's normalisation when the trainer takes it (it checks count and
                 * values), one shared mean and std otherwise. */
                const float mean = 128.0f, std = 64.0f;
                if (brisk_trainer_set_norm(t, c->pos.norm_mean, c->pos.norm_std,
                                           c->pos.norm_count) != BRISK_OK)
                    (void)brisk_trainer_set_norm(t, &mean, &std, 1);
                (void)brisk_trainer_step(t, &ds, idx, 8, &st);
                (void)brisk_trainer_evaluate(t, &ds, idx, 16, &m);
                brisk_trainer_destroy(t);
            }
            brisk_dataset_free(&ds);
        }
    }
    brisk_checkpoint_free(c);
    close(fd);
    return 0;
}
