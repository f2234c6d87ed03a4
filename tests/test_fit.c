/* brisk_fit, the training loop as a library call: a run stopped mid-epoch (by the stop flag
 * or a callback) and resumed from its checkpoint ends bitwise where an uninterrupted run
 * ends, for any thread count; early stopping, the best checkpoint and the plateau policy do
 * what they say and survive a resume; bad configurations are refused by name. */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/fit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define N 480
#define N_VAL 96

typedef struct fixture {
    brisk_dataset ds;
    int32_t *idx; /* N training, then N_VAL validation indices */
    char *dir;
} fixture;

/* The training samples' mean and standard deviation: every trainer's normalisation. */
static float norm_mean, norm_std;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(brisk_dataset_synthetic(N + N_VAL, 20, 3, 60.0f, 5, 0, &f->ds), BRISK_OK);
    f->idx = malloc(sizeof *f->idx * (N + N_VAL));
    assert_non_null(f->idx);
    for (int i = 0; i < N + N_VAL; i++)
        f->idx[i] = i;
    brisk_dataset_stats(&f->ds, f->idx, N, &norm_mean, &norm_std);
    f->dir = test_mkdtemp();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    brisk_dataset_free(&f->ds);
    free(f->idx);
    test_rmdir(f->dir);
    free(f);
    return 0;
}

static brisk_trainer *make_trainer_lr(int threads, float constant_lr);

static brisk_trainer *make_trainer(int threads)
{
    return make_trainer_lr(threads, 0);
}

/* constant_lr > 0: a constant schedule at that rate (the range test's). */
static brisk_trainer *make_trainer_lr(int threads, float constant_lr)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_model_config_set(&c.model, "dense:16,relu,dropout:0.1,dense:3",
                                            brisk_shape_vec(20)),
                     BRISK_OK);
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule = (brisk_schedule){.kind = BRISK_SCHEDULE_COSINE, .lr = 3e-3f, .warmup = 5,
                                  .total = 4 * (N / 32)};
    if (constant_lr > 0)
        c.schedule = (brisk_schedule){.kind = BRISK_SCHEDULE_CONSTANT, .lr = constant_lr};
    c.batch = 32;
    c.micro_batch = 16;
    c.threads = threads;
    c.seed = 9;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    assert_int_equal(brisk_trainer_set_norm(t, &norm_mean, &norm_std, 1), BRISK_OK);
    return t;
}

typedef struct recorder {
    int stop_at_step;           /* on_step asks to stop after this step (0: never) */
    volatile sig_atomic_t *flag;
    int flag_at_step;           /* raises *flag after this step */
    int epochs_seen;
    double val_acc[16];
    float lr_factor[16];
    float step_lr[256];
    int steps_seen;
} recorder;

static int rec_step(void *user, const brisk_fit_progress *p)
{
    recorder *r = user;
    if (r->steps_seen < 256)
        r->step_lr[r->steps_seen] = p->last->lr;
    r->steps_seen++;
    if (r->flag && p->step == r->flag_at_step)
        *r->flag = 1;
    return r->stop_at_step && p->step == r->stop_at_step;
}

static int rec_epoch(void *user, const brisk_fit_progress *p)
{
    recorder *r = user;
    if (p->epoch >= 1 && p->epoch <= 16) {
        r->val_acc[p->epoch - 1] = brisk_metrics_accuracy(&p->val);
        r->lr_factor[p->epoch - 1] = p->lr_factor;
    }
    r->epochs_seen++;
    return 0;
}

static brisk_fit_config config(fixture *f, const char *run, recorder *rec)
{
    brisk_fit_config c = brisk_fit_defaults();
    c.epochs = 4;
    c.seed = 9;
    c.checkpoint_dir = f->dir;
    c.run_id = run;
    c.keep = 2;
    c.user = rec;
    c.on_step = rec_step;
    c.on_epoch = rec_epoch;
    return c;
}

static void fit_ok(fixture *f, brisk_trainer *t, const brisk_fit_config *c, brisk_fit_result *res)
{
    const int err = brisk_fit(t, &f->ds, f->idx, N, f->idx + N, N_VAL, c, res);
    if (err != BRISK_OK) {
        print_error("brisk_fit: %s\n", brisk_error_detail());
        fail();
    }
}

/* Loads path into a new trainer of `threads` threads; returns it and the position. */
static brisk_trainer *resume_from(const char *path, int threads, brisk_ckpt_position *pos)
{
    brisk_checkpoint *ck;
    assert_int_equal(brisk_checkpoint_load(path, &ck), BRISK_OK);
    brisk_trainer *t = make_trainer(threads);
    brisk_trainer_load_state(t, ck->params, ck->opt_m, ck->opt_v, ck->buffers,
                             ck->pos.steps_done);
    *pos = ck->pos;
    brisk_checkpoint_free(ck);
    return t;
}

static void assert_same_params(brisk_trainer *a, brisk_trainer *b)
{
    const size_t len = brisk_model_slab_len(brisk_trainer_model(a));
    assert_memory_equal(brisk_trainer_params(a), brisk_trainer_params(b), len * sizeof(float));
    assert_memory_equal(brisk_trainer_opt_v(a), brisk_trainer_opt_v(b), len * sizeof(float));
}

static void test_stop_and_resume_is_exact(void **state)
{
    fixture *f = *state;
    recorder ra = {0}, rb = {0}, rc = {0};
    brisk_fit_result res;
    brisk_trainer *straight = make_trainer(2);
    brisk_fit_config c = config(f, "straight", &ra);
    fit_ok(f, straight, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_DONE);
    assert_int_equal(res.epochs_done, 4);
    assert_int_equal(ra.epochs_seen, 4);
    assert_int_equal(brisk_trainer_steps_done(straight), 4 * (N / 32));
    struct stat st;
    assert_int_equal(stat(res.checkpoint, &st), 0);

    /* Stopped by a callback in epoch 2 (step 20 of 15 per epoch), on 1 thread... */
    brisk_trainer *part = make_trainer(1);
    rb.stop_at_step = 20;
    c = config(f, "parted", &rb);
    fit_ok(f, part, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_STOPPED);
    assert_int_equal(res.epochs_done, 1);
    assert_int_equal(res.batch, 5);
    assert_int_equal(brisk_trainer_steps_done(part), 20);
    /* ...then resumed on 3 threads, stopped again by the flag at step 47 (the last step of
     * epoch 4 is 60)... */
    brisk_ckpt_position pos;
    brisk_trainer *t2 = resume_from(res.checkpoint, 3, &pos);
    assert_int_equal(pos.epoch, 1);
    assert_int_equal(pos.batch, 5);
    volatile sig_atomic_t flag = 0;
    rc.flag = &flag;
    rc.flag_at_step = 47;
    c = config(f, "parted", &rc);
    c.start = pos;
    c.stop = &flag;
    fit_ok(f, t2, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_STOPPED);
    assert_int_equal(brisk_trainer_steps_done(t2), 47);
    /* ...and finished on 2: bitwise the uninterrupted run. */
    brisk_trainer *t3 = resume_from(res.checkpoint, 2, &pos);
    recorder rd = {0};
    c = config(f, "parted", &rd);
    c.start = pos;
    fit_ok(f, t3, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_DONE);
    assert_same_params(straight, t3);
    assert_true(rd.val_acc[3] == ra.val_acc[3]);
    brisk_trainer_destroy(straight);
    brisk_trainer_destroy(part);
    brisk_trainer_destroy(t2);
    brisk_trainer_destroy(t3);
}

/* A stop at an epoch's last step ends that epoch (validation, logs, its checkpoint) and then
 * stops: the checkpoint is an epoch boundary, which resumes (a position one past the last
 * batch would not). */
static void test_stop_at_the_last_step_of_an_epoch(void **state)
{
    fixture *f = *state;
    recorder ra = {0}, rb = {0};
    brisk_fit_result res;
    brisk_trainer *t = make_trainer(2);
    ra.stop_at_step = 15; /* 15 batches per epoch */
    brisk_fit_config c = config(f, "edge", &ra);
    c.epochs = 2;
    fit_ok(f, t, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_STOPPED);
    assert_int_equal(res.epochs_done, 1);
    assert_int_equal(res.batch, 0);
    assert_int_equal(ra.epochs_seen, 1);
    brisk_ckpt_position pos;
    brisk_trainer *t2 = resume_from(res.checkpoint, 1, &pos);
    assert_int_equal(pos.epoch, 1);
    assert_int_equal(pos.batch, 0);
    c = config(f, "edge", &rb);
    c.epochs = 2;
    c.start = pos;
    fit_ok(f, t2, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_DONE);
    brisk_trainer *straight = make_trainer(1);
    recorder rc = {0};
    c = config(f, "edge-straight", &rc);
    c.epochs = 2;
    fit_ok(f, straight, &c, &res);
    assert_same_params(straight, t2);
    brisk_trainer_destroy(t);
    brisk_trainer_destroy(t2);
    brisk_trainer_destroy(straight);
}

static void test_early_stop_and_best(void **state)
{
    fixture *f = *state;
    recorder ra = {0};
    brisk_fit_result res;
    brisk_trainer *t = make_trainer(2);
    brisk_fit_config c = config(f, "early", &ra);
    c.epochs = 8;
    /* No later epoch can beat the first by 10: stop after 1 + 2 epochs without improvement. */
    c.early_stop = (brisk_fit_policy){.patience = 2, .min_delta = 10, .metric = BRISK_FIT_VAL_LOSS};
    c.keep_best = 1;
    c.best_metric = BRISK_FIT_VAL_ACCURACY;
    fit_ok(f, t, &c, &res);
    assert_int_equal(res.end, BRISK_FIT_EARLY_STOP);
    assert_int_equal(res.epochs_done, 3);
    assert_int_equal(ra.epochs_seen, 3);
    /* The best checkpoint is the epoch of the highest validation accuracy (the first on a
     * tie). */
    int best = 0;
    for (int e = 1; e < 3; e++)
        if (ra.val_acc[e] > ra.val_acc[best])
            best = e;
    assert_true(res.best_checkpoint[0] != 0);
    brisk_checkpoint *ck;
    assert_int_equal(brisk_checkpoint_load(res.best_checkpoint, &ck), BRISK_OK);
    assert_int_equal(ck->pos.epoch, best + 1);
    assert_int_equal(ck->pos.policies.best_epoch[1], best + 1);
    brisk_checkpoint_free(ck);
    brisk_trainer_destroy(t);
}

static void test_plateau_lowers_the_rate_and_resumes(void **state)
{
    fixture *f = *state;
    recorder ra = {0}, rb = {0};
    brisk_fit_result res;
    brisk_trainer *t = make_trainer(2);
    brisk_fit_config c = config(f, "plateau", &ra);
    c.plateau = (brisk_fit_policy){.patience = 1, .min_delta = 10, .metric = BRISK_FIT_TRAIN_LOSS};
    c.plateau_factor = 0.5f;
    fit_ok(f, t, &c, &res);
    /* Epoch 1 sets the best; each later epoch fails to improve and halves the rate. */
    assert_true(ra.lr_factor[0] == 1.0f);
    assert_true(ra.lr_factor[1] == 0.5f);
    assert_true(ra.lr_factor[2] == 0.25f);
    assert_true(ra.lr_factor[3] == 0.125f);
    /* Epoch 3's steps (30..44) ran at half the schedule's rate, epoch 4's at a quarter. */
    const brisk_schedule *sch = &brisk_trainer_get_config(t)->schedule;
    assert_true(ra.step_lr[33] == brisk_schedule_lr(sch, 33) * 0.5f);
    assert_true(ra.step_lr[50] == brisk_schedule_lr(sch, 50) * 0.25f);
    assert_true(ra.step_lr[10] == brisk_schedule_lr(sch, 10));

    /* Stopped in epoch 3 and resumed: the factor and the policy's state come back. */
    brisk_trainer *part = make_trainer(1);
    c = config(f, "plateau2", &rb);
    c.plateau = (brisk_fit_policy){.patience = 1, .min_delta = 10, .metric = BRISK_FIT_TRAIN_LOSS};
    c.plateau_factor = 0.5f;
    rb.stop_at_step = 35;
    fit_ok(f, part, &c, &res);
    brisk_ckpt_position pos;
    brisk_trainer *t2 = resume_from(res.checkpoint, 2, &pos);
    assert_true(pos.policies.lr_factor == 0.5f);
    recorder rc = {0};
    c.user = &rc;
    c.start = pos;
    fit_ok(f, t2, &c, &res);
    assert_same_params(t, t2);
    brisk_trainer_destroy(t);
    brisk_trainer_destroy(part);
    brisk_trainer_destroy(t2);
}

/* The range test: rates rising exponentially over the steps, stopped when the loss diverges,
 * a suggestion before the lowest loss; bitwise the same curve on 1 and 3 threads; refusals. */
static void test_lr_find(void **state)
{
    fixture *f = *state;
    brisk_lr_find_result a, b;
    const brisk_lr_find_config c = {.start_lr = 1e-5, .end_lr = 30, .steps = 80, .seed = 4};
    brisk_trainer *t1 = make_trainer_lr(1, 30), *t3 = make_trainer_lr(3, 30);
    assert_int_equal(brisk_lr_find(t1, &f->ds, f->idx, N, &c, &a), BRISK_OK);
    assert_int_equal(brisk_lr_find(t3, &f->ds, f->idx, N, &c, &b), BRISK_OK);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.loss, b.loss, (size_t)a.n * sizeof *a.loss);
    assert_true(a.n >= 10 && a.n <= 80);
    assert_true(a.diverged || a.n == 80);
    assert_close(a.lr[0], 1e-5, 1e-12, 0);
    for (int i = 1; i < a.n; i++)
        assert_close(a.lr[i] / a.lr[i - 1], pow(30 / 1e-5, 1.0 / 79), 1e-9, 0);
    assert_true(a.suggested >= 1e-5 && a.suggested < a.lowest_lr);
    /* The lowest smoothed loss is below the first: the rates in between trained the model. */
    double lowest = a.smoothed[0];
    for (int i = 0; i < a.n; i++)
        lowest = fmin(lowest, a.smoothed[i]);
    assert_true(lowest < 0.9 * a.smoothed[0]);
    brisk_lr_find_result_free(&a);
    brisk_lr_find_result_free(&b);
    /* The schedule must be constant at the last rate; ranges and steps are checked. */
    brisk_trainer *cos = make_trainer(1);
    assert_brisk_error(brisk_lr_find(cos, &f->ds, f->idx, N, &c, &a), BRISK_EINVAL,
                       "constant");
    brisk_lr_find_config bad = c;
    bad.start_lr = 40;
    assert_brisk_error(brisk_lr_find(t1, &f->ds, f->idx, N, &bad, &a), BRISK_EINVAL, "40");
    bad = c;
    bad.steps = 2;
    assert_brisk_error(brisk_lr_find(t1, &f->ds, f->idx, N, &bad, &a), BRISK_EINVAL, "steps");
    assert_brisk_error(brisk_lr_find(t1, &f->ds, f->idx, 0, &c, &a), BRISK_EINVAL, "samples");
    assert_int_equal(a.n, 0);
    brisk_trainer_destroy(t1);
    brisk_trainer_destroy(t3);
    brisk_trainer_destroy(cos);
}

static void test_bad_fit_configs(void **state)
{
    fixture *f = *state;
    brisk_trainer *t = make_trainer(1);
    brisk_fit_result res;
    brisk_fit_config c = brisk_fit_defaults();
    c.epochs = 0;
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, N, NULL, 0, &c, &res),
                     BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "epochs 0"));
    c = brisk_fit_defaults();
    c.log_every = 0;
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, N, NULL, 0, &c, &res),
                     BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "log_every 0"));
    c = brisk_fit_defaults();
    c.early_stop = (brisk_fit_policy){.patience = 3, .metric = BRISK_FIT_VAL_LOSS};
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, N, NULL, 0, &c, &res),
                     BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "no validation samples"));
    c = brisk_fit_defaults();
    c.checkpoint_dir = f->dir; /* no run id */
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, N, NULL, 0, &c, &res),
                     BRISK_EINVAL);
    c = brisk_fit_defaults();
    c.start.steps_done = 7; /* the trainer has taken none */
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, N, NULL, 0, &c, &res),
                     BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "step 7"));
    assert_int_equal(brisk_fit(t, &f->ds, f->idx, 0, NULL, 0,
                               &(brisk_fit_config){.epochs = 1, .log_every = 1}, &res),
                     BRISK_EINVAL);
    assert_int_equal(brisk_trainer_steps_done(t), 0);
    brisk_trainer_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stop_and_resume_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_at_the_last_step_of_an_epoch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_early_stop_and_best, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plateau_lowers_the_rate_and_resumes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_fit_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lr_find, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
