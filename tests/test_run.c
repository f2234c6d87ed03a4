/* Run management in the library (brisk/run.h): settings by name and their JSON round trip
 * (edited values refused, earlier versions' checkpoints read), a run trained, then resumed
 * from its directory to the bits of a straight run, the refusals (another run's directory, a
 * second live writer, a changed setting), a run on the program's own data, and a predictor
 * that gives bitwise what the run's own evaluation gives. */
#include "test_util.h"

#include "brisk/error.h"
#include "brisk/run.h"
#include "tb_events.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const small[] = {"data=synthetic", "model=32-16-4", "synthetic-n=1200",
                                    "synthetic-test-n=300", "batch=64", "micro-batch=32",
                                    "threads=2", "histogram-every=1", "schedule=constant"};
#define N_SMALL (int)(sizeof small / sizeof *small)

static void test_settings(void **state)
{
    (void)state;
    brisk_run_config c = brisk_run_config_defaults();
    assert_string_equal(c.model, "784-256-128-10");
    assert_int_equal(c.epochs, 10);
    assert_int_equal(brisk_run_config_set(&c, "lr", "0.25"), BRISK_OK);
    assert_true(c.lr == 0.25);
    assert_int_equal(brisk_run_config_set(&c, "micro-batch", "48"), BRISK_OK);
    assert_int_equal(c.micro_batch, 48);
    assert_int_equal(brisk_run_config_set(&c, "seed", "18446744073709551"), BRISK_OK);
    assert_true(c.seed == 18446744073709551ull);
    assert_int_equal(brisk_run_config_set(&c, "model", "conv:4:3,relu,flatten,dense:3"),
                     BRISK_OK);
    assert_int_equal(brisk_run_config_set(&c, "keep-best", "1"), BRISK_OK);
    assert_brisk_error(brisk_run_config_set(&c, "lr", "-1"), BRISK_EINVAL, "lr: -1 is out of range");
    assert_brisk_error(brisk_run_config_set(&c, "epochs", "1.5"), BRISK_EINVAL,
                       "epochs: '1.5' is not an integer");
    assert_brisk_error(brisk_run_config_set(&c, "optimizer", "adagrad"), BRISK_EINVAL,
                       "optimizer: unknown value 'adagrad'", "adam, adamw or sgd");
    assert_brisk_error(brisk_run_config_set(&c, "model", "dense:x"), BRISK_EINVAL, "model: ");
    assert_brisk_error(brisk_run_config_set(&c, "colour", "red"), BRISK_EINVAL,
                       "colour: no such setting");
    assert_brisk_error(brisk_run_config_set(&c, "run", "a b"), BRISK_EINVAL, "not a run id");
    char v[64];
    assert_int_equal(brisk_run_config_get(&c, "lr", v, sizeof v), BRISK_OK);
    assert_string_equal(v, "0.25");
    int n;
    const brisk_run_setting *s = brisk_run_settings(&n);
    assert_true(n > 40);
    assert_non_null(brisk_run_setting_find("weight-decay"));
    assert_null(brisk_run_setting_find("bogus"));
    for (int i = 0; i < n; i++)
        assert_ptr_equal(brisk_run_setting_find(s[i].name)->name, s[i].name);
    /* The JSON round trip keeps every value, every digit. */
    c.lr = 0.1 + 0.2;
    char *json = brisk_run_config_to_json(&c);
    assert_non_null(json);
    brisk_run_config back;
    assert_int_equal(brisk_run_config_from_json(&back, json, "x.safetensors"), BRISK_OK);
    assert_memory_equal(&back, &c, sizeof c);
    free(json);
    /* Values no setting could hold: damaged or edited. An earlier version's JSON: what it
     * lacks keeps the defaults, and "weight-decay-set" 0 is the optimizer's default. */
    assert_brisk_error(brisk_run_config_from_json(&back, "{\"batch\": 0}", "e.safetensors"),
                       BRISK_EFORMAT, "e.safetensors", "setting 'batch'", "edited");
    assert_brisk_error(brisk_run_config_from_json(&back, "{\"act\": \"swish\"}", "e"),
                       BRISK_EFORMAT, "setting 'act'", "swish");
    assert_brisk_error(brisk_run_config_from_json(&back, "{\"lr\": \"fast\"}", "e"),
                       BRISK_EFORMAT, "setting 'lr'", "not a number");
    assert_brisk_error(brisk_run_config_from_json(&back, "[1, 2]", "e"), BRISK_EFORMAT,
                       "not a JSON object");
    assert_int_equal(brisk_run_config_from_json(&back, "{\"lr\": 0.5, \"weight-decay\": 0, "
                                                       "\"weight-decay-set\": 0}", "old"),
                     BRISK_OK);
    assert_true(back.lr == 0.5 && back.epochs == 10 && back.weight_decay < 0);
}

static brisk_run *open_run(const char *resume, const char *const *extra, int n_extra, int want)
{
    const char *s[32];
    int n = 0;
    for (int i = 0; i < N_SMALL && !resume; i++)
        s[n++] = small[i];
    for (int i = 0; i < n_extra; i++)
        s[n++] = extra[i];
    brisk_run *r = NULL;
    const int err = brisk_run_open(&(brisk_run_options){.resume = resume, .settings = s,
                                                        .n_settings = n},
                                   &r);
    if (err != want) {
        print_error("brisk_run_open: %d, expected %d: %s\n", err, want, brisk_error_detail());
        fail();
    }
    return r;
}

static uint64_t train_ok(brisk_run *r, brisk_run_result *res)
{
    if (brisk_run_train(r, NULL, res) != BRISK_OK) {
        print_error("brisk_run_train: %s\n", brisk_error_detail());
        fail();
    }
    return res->checksum;
}

static void test_train_resume_and_refuse(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char a[4096], b[4096], ck[4096];
    snprintf(a, sizeof a, "logdir=%s/a", dir);
    snprintf(b, sizeof b, "logdir=%s/b", dir);
    /* A straight run of 3 epochs, and one of 2 resumed from its directory to 3. */
    brisk_run_result res;
    const char *three[] = {a, "epochs=3"}, *two[] = {b, "epochs=2"};
    brisk_run *r = open_run(NULL, three, 2, BRISK_OK);
    const uint64_t straight = train_ok(r, &res);
    assert_true(res.tested && res.fit.end == BRISK_FIT_DONE && res.fit.epochs_done == 3);
    const brisk_metrics straight_test = res.test;
    snprintf(ck, sizeof ck, "%s", res.fit.checkpoint);
    brisk_run_close(r);
    r = open_run(NULL, two, 2, BRISK_OK);
    train_ok(r, &res);
    brisk_run_close(r);
    snprintf(b, sizeof b, "%s/b", dir);
    const char *more[] = {"epochs=3"};
    r = open_run(b, more, 1, BRISK_OK);
    assert_non_null(brisk_run_resumed(r));
    assert_int_equal(brisk_run_resumed(r)->pos.epoch, 2);
    assert_int_equal(train_ok(r, &res), straight);
    assert_true(res.test.loss_sum == straight_test.loss_sum);
    /* While it is open, a second writer of the run is refused, naming this process. */
    brisk_run *other = NULL;
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        const int err = brisk_run_open(&(brisk_run_options){.resume = b}, &other);
        char want[64];
        snprintf(want, sizeof want, "process %ld on host", (long)getppid());
        _exit(err == BRISK_EBUSY && strstr(brisk_error_detail(), want) ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    brisk_run_close(r);
    /* A resume that changes what was trained; a new run into another run's directory. */
    const char *faster[] = {"lr=0.5"};
    open_run(b, faster, 1, BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "lr: cannot change when resuming"));
    assert_non_null(strstr(brisk_error_detail(), "lr 0.001, not 0.5"));
    snprintf(b, sizeof b, "logdir=%s/b", dir);
    open_run(NULL, two, 2, BRISK_EMISMATCH);
    assert_non_null(strstr(brisk_error_detail(), "holds the logs of another run"));
    /* A resume of a finished run trains nothing and gives the same test metrics. */
    snprintf(a, sizeof a, "%s/a", dir);
    r = open_run(a, NULL, 0, BRISK_OK);
    assert_int_equal(train_ok(r, &res), straight);
    assert_true(res.already_finished && res.tested);
    assert_true(res.test.loss_sum == straight_test.loss_sum);
    brisk_run_close(r);
    /* A run directory and its checkpoint directory stand for its newest checkpoint. */
    char found[4096], sub[4200];
    snprintf(sub, sizeof sub, "%s/checkpoints", a);
    const char *names[] = {a, sub, ck};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(brisk_run_checkpoint_path(names[i], found, sizeof found), BRISK_OK);
        assert_string_equal(found, ck);
    }
    assert_int_equal(brisk_run_checkpoint_path(a, found, 8), BRISK_EINVAL);
    assert_int_equal(brisk_run_checkpoint_path(ck, found, 8), BRISK_EINVAL);
    assert_int_equal(brisk_run_checkpoint_path(NULL, found, sizeof found), BRISK_EINVAL);
    assert_int_equal(brisk_run_checkpoint_path(a, NULL, sizeof found), BRISK_EINVAL);
    snprintf(sub, sizeof sub, "%s/none", dir);
    assert_int_equal(brisk_run_checkpoint_path(sub, found, sizeof found), BRISK_ENOENT);
    assert_non_null(strstr(brisk_error_detail(), sub));
    /* A checkpoint alone predicts bitwise what the run's evaluation predicts. */
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/run.npy", dir);
    snprintf(p2, sizeof p2, "%s/predictor.npy", dir);
    brisk_metrics m;
    assert_int_equal(brisk_run_open_checkpoint(ck, NULL, 0, NULL, &r), BRISK_OK);
    assert_int_equal(brisk_run_evaluate(r, p1, &m), BRISK_OK);
    assert_true(m.loss_sum == straight_test.loss_sum);
    brisk_run_data d;
    brisk_run_get_data(r, &d);
    brisk_predictor *pr;
    assert_int_equal(brisk_predictor_open(ck, 3, &pr), BRISK_OK);
    assert_int_equal(brisk_predictor_norm_count(pr), 1);
    const int C = brisk_predictor_outputs(pr);
    float *out = malloc(sizeof *out * (size_t)d.n_test * (size_t)C);
    brisk_metrics pm;
    assert_int_equal(brisk_predictor_predict(pr, d.test, NULL, d.n_test, out, &pm), BRISK_OK);
    assert_true(pm.loss_sum == m.loss_sum);
    assert_int_equal(brisk_predictor_write(p2, out, d.n_test, C, BRISK_LOSS_SOFTMAX_CE),
                     BRISK_OK);
    size_t l1, l2;
    uint8_t *f1 = test_read_file(p1, &l1), *f2 = test_read_file(p2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    free(f1);
    free(f2);
    free(out);
    brisk_predictor_close(pr);
    brisk_run_close(r);
    test_rmdir(dir);
}

static void test_program_data_and_bad_arguments(void **state)
{
    (void)state;
    /* The program's own arrays: 4 features, the label is which one is largest. */
    enum { N = 400, D = 4 };
    float *x = malloc(sizeof *x * N * D);
    uint8_t y[N];
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 0; j < D; j++) {
            x[i * D + j] = (float)((i * 7919 + j * 104729) % 1000) / 100.0f;
            best = x[i * D + j] > x[i * D + best] ? j : best;
        }
        y[i] = (uint8_t)best;
    }
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_wrap(N, D, NULL, x, y, NULL, 0, &ds), BRISK_OK);
    const char *s[] = {"model=4-32-4", "logdir=none", "epochs=30", "batch=32", "lr=0.01",
                       "threads=1"};
    brisk_run *r;
    assert_int_equal(brisk_run_open(&(brisk_run_options){.settings = s, .n_settings = 6}, &r),
                     BRISK_OK);
    assert_int_equal(brisk_run_load(r, &ds, NULL), BRISK_OK);
    brisk_run_data d;
    brisk_run_get_data(r, &d);
    assert_int_equal(d.n_train + d.n_val, N);
    assert_null(d.test);
    brisk_run_result res;
    train_ok(r, &res);
    assert_false(res.tested);
    assert_true(brisk_metrics_accuracy(&res.fit.last_val) > 0.8);
    brisk_run_close(r);
    brisk_dataset_free(&ds);
    free(x);
    /* Bad arguments and settings: errors naming them, never an abort. */
    assert_brisk_error(brisk_run_open(NULL, &r), BRISK_EINVAL, "NULL");
    const char *bad[] = {"lr"};
    assert_brisk_error(brisk_run_open(&(brisk_run_options){.settings = bad, .n_settings = 1}, &r),
                       BRISK_EINVAL, "name=value");
    assert_null(r);
    const char *policy[] = {"keep-best=1", "checkpoint-dir=none", "logdir=none"};
    assert_brisk_error(brisk_run_open(&(brisk_run_options){.settings = policy, .n_settings = 3},
                                      &r), BRISK_EINVAL, "keep-best: needs checkpoints");
    assert_brisk_error(brisk_run_open(&(brisk_run_options){.resume = "/nonexistent/run"}, &r),
                       BRISK_ENOENT, "/nonexistent/run");
    assert_brisk_error(brisk_predictor_open("/nonexistent.safetensors", 0, NULL), BRISK_EINVAL,
                       "NULL");
    brisk_predictor *p;
    assert_brisk_error(brisk_predictor_open("/nonexistent.safetensors", 0, &p), BRISK_ENOENT,
                       "/nonexistent.safetensors");
    assert_brisk_error(brisk_predictor_open("/nonexistent.safetensors", -1, &p), BRISK_EINVAL,
                       "threads -1");
    brisk_run_close(NULL);
    brisk_predictor_close(NULL);
}

/* A program that calls brisk_fit itself gets what brisk-train logs: the hparams session
 * (started, and ended with success), the chart of train and validation; and a second run
 * from scratch into the same log directory is refused. */
static void test_fit_logs_a_session(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(400, 16, 3, 40.0f, 2, 0, &ds), BRISK_OK);
    int32_t idx[400];
    for (int i = 0; i < 400; i++)
        idx[i] = i;
    brisk_trainer_config tc;
    memset(&tc, 0, sizeof tc);
    assert_int_equal(brisk_model_config_mlp(&tc.model, "16-8-3", BRISK_ACT_RELU), BRISK_OK);
    tc.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    tc.schedule.lr = 1e-3f;
    tc.batch = 50;
    tc.threads = 1;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&tc, &t), BRISK_OK);
    brisk_tb tb;
    assert_int_equal(brisk_tb_open(&tb, dir, 1, brisk_tb_ring_bytes(t)), BRISK_OK);
    brisk_fit_config c = brisk_fit_defaults();
    c.epochs = 2;
    c.tb = &tb;
    brisk_fit_result res;
    assert_int_equal(brisk_fit(t, &ds, idx, 350, idx + 350, 50, &c, &res), BRISK_OK);
    double cpu = 0;
    assert_int_equal(brisk_tb_close(&tb, &cpu), BRISK_OK);
    size_t n;
    char **files = tb_list_event_files(dir, &n);
    assert_int_equal(n, 1);
    tb_file f;
    assert_int_equal(tb_file_read(files[0], &f), 0);
    static const char *const tags[] = {"_hparams_/experiment", "_hparams_/session_start_info",
                                       "_hparams_/session_end_info", "custom_scalars__config__"};
    for (int i = 0; i < 4; i++)
        if (!tb_find_value(&f, tags[i], NULL)) {
            print_error("no %s in %s\n", tags[i], files[0]);
            fail();
        }
    tb_file_free(&f);
    tb_free_list(files, n);
    assert_brisk_error(brisk_tb_open(&tb, dir, 1, brisk_tb_ring_bytes(t)), BRISK_EMISMATCH,
                       dir, "already holds event files");
    /* A resume (its first step past 1) continues there. */
    assert_int_equal(brisk_tb_open(&tb, dir, 20, brisk_tb_ring_bytes(t)), BRISK_OK);
    assert_int_equal(brisk_tb_close(&tb, &cpu), BRISK_OK);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_train_resume_and_refuse),
        cmocka_unit_test(test_program_data_and_bad_arguments),
        cmocka_unit_test(test_fit_logs_a_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
