/* Training as a whole: parameter init, the data split and shuffles, determinism, micro-shards,
 * divergence detection, and the synthetic task trained to a stated accuracy. */
#include "test_util.h"

#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/trainer.h"

#include <stdlib.h>
#include <string.h>

static const uint64_t SEED = 20261126;

static brisk_trainer_config small_config(int batch, int micro)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_model_config_mlp(&c.model, "64-32-16-4", BRISK_ACT_RELU), BRISK_OK);
    c.model.loss = BRISK_LOSS_SOFTMAX_CE;
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
    c.clip_norm = 1.0f;
    c.batch = batch;
    c.micro_batch = micro;
    c.threads = 1;
    c.seed = SEED;
    return c;
}

static void test_init_depends_on_seed_only(void **state)
{
    (void)state;
    brisk_trainer_config c = small_config(8, 0);
    brisk_model *m;
    assert_int_equal(brisk_model_create(&c.model, &m), BRISK_OK);
    float *a = brisk_slab_alloc(m), *b = brisk_slab_alloc(m);
    brisk_model_init_params(m, SEED, a, NULL);
    brisk_model_init_params(m, SEED, b, NULL);
    assert_memory_equal(a, b, brisk_model_slab_len(m) * sizeof(float));
    brisk_model_init_params(m, SEED + 1, b, NULL);
    assert_true(memcmp(a, b, brisk_model_slab_len(m) * sizeof(float)) != 0);
    /* In parts, in any order (the trainer's threads), on a zeroed slab: the same values. */
    memset(b, 0, brisk_model_slab_len(m) * sizeof(float));
    for (int part = 2; part >= 0; part--)
        brisk_model_init_params_part(m, SEED, b, NULL, part, 3);
    assert_memory_equal(a, b, brisk_model_slab_len(m) * sizeof(float));
    brisk_model_destroy(m);
    brisk_slab_free(a);
    brisk_slab_free(b);

    /* He: std sqrt(2 / fan_in); Glorot: |w| <= sqrt(6 / (fan_in + fan_out)), var a^2 / 3. */
    brisk_model_config big;
    memset(&big, 0, sizeof big);
    assert_int_equal(brisk_model_config_mlp(&big, "400-300", BRISK_ACT_RELU), BRISK_OK);
    for (int init = BRISK_INIT_HE; init <= BRISK_INIT_GLOROT; init++) {
        big.init = (brisk_init)init;
        assert_int_equal(brisk_model_create(&big, &m), BRISK_OK);
        float *p = brisk_slab_alloc(m);
        brisk_model_init_params(m, SEED, p, NULL);
        const brisk_tensor_view *w = brisk_model_find_tensor(m, "0.weight");
        double s = 0, s2 = 0, amax = 0;
        const int n = w->rows * w->cols;
        for (int i = 0; i < n; i++) {
            double x = p[w->offset + (size_t)i];
            s += x;
            s2 += x * x;
            amax = fabs(x) > amax ? fabs(x) : amax;
        }
        const double lim = sqrt(6.0 / 700.0);
        const double want_var = init == BRISK_INIT_HE ? 2.0 / 400 : lim * lim / 3;
        assert_close(s / n, 0.0, 0, 0.002);
        assert_close(s2 / n, want_var, 0.03, 0);
        if (init == BRISK_INIT_GLOROT)
            assert_true(amax <= lim);
        const brisk_tensor_view *b0 = brisk_model_find_tensor(m, "0.bias");
        for (int j = 0; j < b0->cols; j++)
            assert_true(p[b0->offset + (size_t)j] == 0.0f);
        brisk_slab_free(p);
        brisk_model_destroy(m);
    }
}

static void test_views_are_aligned_and_disjoint(void **state)
{
    (void)state;
    brisk_model_config c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_model_config_mlp(&c, "784-256-128-10", BRISK_ACT_RELU), BRISK_OK);
    c.loss = BRISK_LOSS_SOFTMAX_CE;
    c.init = BRISK_INIT_AUTO;
    brisk_model *m;
    assert_int_equal(brisk_model_create(&c, &m), BRISK_OK);
    assert_int_equal(brisk_model_num_params(m), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    size_t end = 0;
    for (int t = 0; t < brisk_model_num_tensors(m); t++) {
        const brisk_tensor_view *v = brisk_model_tensor(m, t);
        assert_int_equal(v->offset % 16, 0);
        assert_true(v->offset >= end);
        end = v->offset + (size_t)v->rows * (size_t)v->cols;
    }
    assert_true(end <= brisk_model_slab_len(m));
    /* Named as torch.nn.Sequential names them: Linear, ReLU, Linear, ReLU, Linear. */
    assert_non_null(brisk_model_find_tensor(m, "2.weight"));
    assert_non_null(brisk_model_find_tensor(m, "4.bias"));
    assert_string_equal(c.spec, "dense:256,relu,dense:128,relu,dense:10");
    float *slab = brisk_slab_alloc(m);
    assert_int_equal((uintptr_t)slab % 64, 0);
    brisk_slab_free(slab);
    brisk_model_destroy(m);
    /* Bad specs are refused with a reason. */
    assert_int_equal(brisk_model_config_mlp(&c, "784--10", BRISK_ACT_RELU), BRISK_EINVAL);
    assert_int_equal(brisk_model_config_mlp(&c, "784", BRISK_ACT_RELU), BRISK_EINVAL);
    assert_int_equal(brisk_model_config_mlp(&c, "784-0-10", BRISK_ACT_RELU), BRISK_EINVAL);
    assert_int_equal(brisk_model_config_mlp(&c, "784-10x", BRISK_ACT_RELU), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "784-10x"));
}

static void test_split_and_shuffle(void **state)
{
    (void)state;
    const int64_t n = 1000;
    int32_t *order, *order2;
    int64_t n_train;
    assert_int_equal(brisk_split(n, 0.1, SEED, &order, &n_train), BRISK_OK);
    assert_int_equal(n_train, 900);
    assert_int_equal(brisk_split(n, 0.1, SEED, &order2, &n_train), BRISK_OK);
    assert_memory_equal(order, order2, (size_t)n * sizeof *order);
    free(order2);
    /* A permutation of [0, n) whose two parts are sorted. */
    char *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        assert_true(order[i] >= 0 && order[i] < n && !seen[order[i]]);
        seen[order[i]] = 1;
        if (i && i != n_train)
            assert_true(order[i - 1] < order[i]);
    }
    int32_t *e1 = malloc((size_t)n_train * sizeof *e1), *e1b = malloc((size_t)n_train * sizeof *e1b),
            *e2 = malloc((size_t)n_train * sizeof *e2);
    brisk_shuffle(order, e1, n_train, SEED, 1);
    brisk_shuffle(order, e1b, n_train, SEED, 1);
    brisk_shuffle(order, e2, n_train, SEED, 2);
    assert_memory_equal(e1, e1b, (size_t)n_train * sizeof *e1);
    assert_true(memcmp(e1, e2, (size_t)n_train * sizeof *e1) != 0);
    memset(seen, 0, (size_t)n);
    for (int64_t i = 0; i < n_train; i++)
        seen[e2[i]]++;
    for (int64_t i = 0; i < n_train; i++)
        assert_int_equal(seen[order[i]], 1); /* same training samples, none from validation */
    assert_int_equal(brisk_split(n, 1.0, SEED, &order2, &n_train), BRISK_EINVAL);
    free(seen);
    free(e1);
    free(e1b);
    free(e2);
    free(order);
}

static void train_steps(brisk_trainer *t, const brisk_dataset *ds, int steps, int batch)
{
    int32_t *idx = malloc((size_t)ds->n * sizeof *idx);
    for (int64_t i = 0; i < ds->n; i++)
        idx[i] = (int32_t)i;
    const float mean = 127.0f, std = 60.0f;
    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
    for (int s = 0; s < steps; s++) {
        brisk_step_stats st;
        const int64_t lo = ((int64_t)s * batch) % (ds->n - batch);
        assert_int_equal(brisk_trainer_step(t, ds, idx + lo, batch, &st), BRISK_OK);
        assert_true(isfinite(st.grad_norm) && st.grad_norm > 0);
    }
    free(idx);
}

static void test_same_seed_bitwise_identical(void **state)
{
    (void)state;
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(512, 64, 4, 60.0f, SEED, 0, &ds), BRISK_OK);
    brisk_trainer_config c = small_config(32, 8);
    brisk_trainer *a, *b;
    assert_int_equal(brisk_trainer_create(&c, &a), BRISK_OK);
    assert_int_equal(brisk_trainer_create(&c, &b), BRISK_OK);
    assert_int_equal(brisk_trainer_num_shards(a, 32), 4);
    train_steps(a, &ds, 25, 32);
    train_steps(b, &ds, 25, 32);
    const size_t bytes = brisk_model_slab_len(brisk_trainer_model(a)) * sizeof(float);
    assert_memory_equal(brisk_trainer_params(a), brisk_trainer_params(b), bytes);
    assert_memory_equal(brisk_trainer_opt_m(a), brisk_trainer_opt_m(b), bytes);
    assert_memory_equal(brisk_trainer_opt_v(a), brisk_trainer_opt_v(b), bytes);
    assert_int_equal(brisk_trainer_steps_done(a), 25);
    brisk_trainer_destroy(a);
    brisk_trainer_destroy(b);
    brisk_dataset_free(&ds);
}

static void test_micro_shards_sum_to_the_batch_gradient(void **state)
{
    (void)state;
    /* Same math, different summation order: 4 micro-shards agree with 1 shard to rounding. */
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(256, 64, 4, 60.0f, SEED, 0, &ds), BRISK_OK);
    brisk_trainer_config c1 = small_config(32, 32), c4 = small_config(32, 8);
    brisk_trainer *a, *b;
    assert_int_equal(brisk_trainer_create(&c1, &a), BRISK_OK);
    assert_int_equal(brisk_trainer_create(&c4, &b), BRISK_OK);
    train_steps(a, &ds, 5, 32);
    train_steps(b, &ds, 5, 32);
    const float *pa = brisk_trainer_params(a), *pb = brisk_trainer_params(b);
    for (size_t i = 0; i < brisk_model_slab_len(brisk_trainer_model(a)); i++)
        assert_close(pb[i], pa[i], 1e-3, 1e-5);
    brisk_trainer_destroy(a);
    brisk_trainer_destroy(b);
    brisk_dataset_free(&ds);
}

static void test_divergence_is_reported(void **state)
{
    (void)state;
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(256, 64, 4, 60.0f, SEED, 0, &ds), BRISK_OK);
    brisk_trainer_config c = small_config(32, 0);
    c.optim = brisk_optim_defaults(BRISK_OPTIM_SGD);
    c.schedule.lr = 1e30f;
    c.clip_norm = 0;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    int32_t idx[32];
    for (int i = 0; i < 32; i++)
        idx[i] = i;
    const float mean = 127.0f, std = 60.0f;
    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
    int err = BRISK_OK;
    for (int s = 0; s < 20 && err == BRISK_OK; s++) {
        brisk_step_stats st;
        err = brisk_trainer_step(t, &ds, idx, 32, &st);
    }
    assert_int_equal(err, BRISK_ENONFINITE);
    assert_non_null(strstr(brisk_error_detail(), "is not finite"));
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
}

/* End to end: 3 epochs on the synthetic task reach at least 90% test accuracy (a model that
 * learns nothing gets 25%). */
/* decay_matrices_only: AdamW's weight decay reaches the weight matrices (dense, attention)
 * and nothing else: after a step with decay 0.5 and one without (the same gradient), biases,
 * layernorm parameters and the embedding tables (shared with the tied head) are bitwise the
 * same, every matrix is not. Three steps on 1 and on 2 threads give the same bits (the update
 * is cut into segments at the tensors). */
static void test_decay_on_matrices_only(void **state)
{
    (void)state;
    int32_t stream[400];
    for (int i = 0; i < 400; i++)
        stream[i] = (i * 7 + i / 5) % 13;
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_tokens(stream, 400, 8, 13, &ds), BRISK_OK);
    int32_t idx[6] = {0, 5, 9, 17, 30, 44};
    float *w0 = NULL, *w1 = NULL;
    for (int run = 0; run < 4; run++) {
        brisk_trainer_config c;
        memset(&c, 0, sizeof c);
        brisk_gpt_config g = {.layers = 1, .channels = 16, .heads = 2, .vocab = 13,
                              .seq_len = 8};
        assert_int_equal(brisk_model_config_gpt(&c.model, &g), BRISK_OK);
        c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAMW);
        c.optim.weight_decay = run == 0 ? 0.0f : 0.5f;
        c.decay_matrices_only = 1;
        c.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-2f, 0, 0, 0, 0, 0};
        c.batch = 6;
        c.micro_batch = 3;
        c.threads = run == 3 ? 2 : 1;
        c.seed = SEED;
        brisk_trainer *t;
        assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
        brisk_step_stats st;
        for (int s = 0; s < (run >= 2 ? 3 : 1); s++)
            assert_int_equal(brisk_trainer_step(t, &ds, idx, 6, &st), BRISK_OK);
        const brisk_model *m = brisk_trainer_model(t);
        const float *p = brisk_trainer_params(t);
        const size_t bytes = brisk_model_slab_len(m) * sizeof *p;
        if (run == 2) {
            assert_non_null(w1 = malloc(bytes));
            memcpy(w1, p, bytes);
        } else if (run == 3) {
            assert_memory_equal(p, w1, bytes);
        } else if (run == 0) {
            w0 = malloc(brisk_model_slab_len(m) * sizeof *w0);
            assert_non_null(w0);
            memcpy(w0, p, brisk_model_slab_len(m) * sizeof *w0);
        } else {
            int matrices = 0, others = 0;
            for (int k = 0; k < brisk_model_num_tensors(m); k++) {
                const brisk_tensor_view *v = brisk_model_tensor(m, k);
                const int same = !memcmp(p + v->offset, w0 + v->offset, v->count * sizeof *p);
                const int matrix = v->ndim == 2 && v->init == BRISK_TENSOR_FAN;
                if (matrix == same) {
                    print_error("%s: %s after decay on matrices only\n", v->name,
                                same ? "unchanged" : "changed");
                    fail();
                }
                matrices += matrix;
                others += !matrix;
            }
            assert_int_equal(matrices, 4); /* c_attn, c_proj, the MLP's two (the head is tied) */
            assert_true(others >= 8);
        }
        brisk_trainer_destroy(t);
    }
    free(w0);
    free(w1);
    brisk_dataset_free(&ds);
}

static void test_synthetic_task_trains(void **state)
{
    (void)state;
    brisk_dataset train, test;
    assert_int_equal(brisk_dataset_synthetic(4000, 64, 4, 120.0f, SEED, 0, &train), BRISK_OK);
    assert_int_equal(brisk_dataset_synthetic(1000, 64, 4, 120.0f, SEED, 4000, &test), BRISK_OK);
    brisk_trainer_config c = small_config(32, 0);
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    int32_t *order, *epoch_idx = malloc(4000 * sizeof *epoch_idx), *test_idx = malloc(1000 * 4);
    int64_t n_train;
    assert_int_equal(brisk_split(train.n, 0.0, SEED, &order, &n_train), BRISK_OK);
    for (int i = 0; i < 1000; i++)
        test_idx[i] = i;
    float mean, std;
    brisk_dataset_stats(&train, order, n_train, &mean, &std);
    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
    brisk_metrics before, after;
    assert_int_equal(brisk_trainer_evaluate(t, &test, test_idx, 1000, &before), BRISK_OK);
    for (uint32_t epoch = 1; epoch <= 3; epoch++) {
        brisk_shuffle(order, epoch_idx, n_train, SEED, epoch);
        for (int64_t lo = 0; lo < n_train; lo += 32) {
            brisk_step_stats st;
            int n = n_train - lo < 32 ? (int)(n_train - lo) : 32;
            assert_int_equal(brisk_trainer_step(t, &train, epoch_idx + lo, n, &st), BRISK_OK);
        }
    }
    assert_int_equal(brisk_trainer_evaluate(t, &test, test_idx, 1000, &after), BRISK_OK);
    print_message("synthetic task: test accuracy %.3f before, %.3f after 3 epochs\n",
                  brisk_metrics_accuracy(&before), brisk_metrics_accuracy(&after));
    assert_true(brisk_metrics_accuracy(&after) >= 0.90);
    assert_true(brisk_metrics_loss(&after) < brisk_metrics_loss(&before));
    free(order);
    free(epoch_idx);
    free(test_idx);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&train);
    brisk_dataset_free(&test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_depends_on_seed_only),
        cmocka_unit_test(test_views_are_aligned_and_disjoint),
        cmocka_unit_test(test_split_and_shuffle),
        cmocka_unit_test(test_same_seed_bitwise_identical),
        cmocka_unit_test(test_micro_shards_sum_to_the_batch_gradient),
        cmocka_unit_test(test_divergence_is_reported),
        cmocka_unit_test(test_decay_on_matrices_only),
        cmocka_unit_test(test_synthetic_task_trains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
