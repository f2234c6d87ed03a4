/* A registered user layer is treated exactly as a built-in one (#19): copies of the built-in
 * dense, conv, batchnorm, relu and tanh ops tables registered under other kinds give the same
 * initialisation (Glorot before tanh), the same training bits (ReLU folded into the max pool),
 * the same checkpoint entries (num_batches_tracked) and the same TensorBoard weight images,
 * because all of that comes from the ops tables' flags, never from a kind's name. */
#define _GNU_SOURCE /* memmem */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/ckptdir.h"
#include "brisk/error.h"
#include "brisk/fit.h"
#include "tb_events.h"

#include <stdlib.h>

#define N 256

static brisk_layer_ops copies[5];

static void register_copies(void)
{
    static const char *const kinds[5][2] = {{"dense", "u_dense"}, {"conv", "u_conv"},
                                            {"batchnorm", "u_batchnorm"}, {"relu", "u_relu"},
                                            {"tanh", "u_tanh"}};
    for (int i = 0; i < 5; i++) {
        if (brisk_layer_find(kinds[i][1]))
            continue;
        const brisk_layer_ops *b = brisk_layer_find(kinds[i][0]);
        assert_non_null(b);
        copies[i] = *b;
        copies[i].kind = kinds[i][1];
        assert_int_equal(brisk_layer_register(&copies[i]), BRISK_OK);
    }
}

static brisk_trainer *trainer(const char *spec, brisk_shape in)
{
    brisk_trainer_config c;
    memset(&c, 0, sizeof c);
    if (brisk_model_config_set(&c.model, spec, in) != BRISK_OK) {
        print_error("%s: %s\n", spec, brisk_error_detail());
        fail();
    }
    c.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    c.schedule = (brisk_schedule){.kind = BRISK_SCHEDULE_CONSTANT, .lr = 3e-3f};
    c.batch = 64;
    c.micro_batch = 32;
    c.threads = 2;
    c.seed = 4;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&c, &t), BRISK_OK);
    return t;
}

/* One epoch of brisk_fit with TensorBoard logs and a checkpoint into dir. */
static void fit_one_epoch(brisk_trainer *t, brisk_dataset *ds, const int32_t *idx, float mean,
                          float std, const char *dir)
{
    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
    brisk_tb tb;
    assert_int_equal(brisk_tb_open(&tb, dir, 1, (size_t)4 << 20), BRISK_OK);
    brisk_fit_config c = brisk_fit_defaults();
    c.epochs = 1;
    c.seed = 4;
    c.tb = &tb;
    c.checkpoint_dir = dir;
    c.run_id = "user";
    brisk_fit_result res;
    if (brisk_fit(t, ds, idx, N - 64, idx + N - 64, 64, &c, &res) != BRISK_OK) {
        print_error("fit: %s\n", brisk_error_detail());
        fail();
    }
    double cpu = 0;
    assert_int_equal(brisk_tb_close(&tb, &cpu), BRISK_OK);
}

static int has_weight_image(const char *dir)
{
    char train[4096];
    snprintf(train, sizeof train, "%s/train", dir);
    size_t n;
    char **files = tb_list_event_files(train, &n);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        tb_file f;
        assert_int_equal(tb_file_read(files[i], &f), 0);
        found |= tb_find_value(&f, "weights/0.weight/tiles", NULL) != NULL;
        tb_file_free(&f);
    }
    tb_free_list(files, n);
    return found;
}

static void test_user_layers_match_builtins(void **state)
{
    (void)state;
    register_copies();
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(N, 64, 3, 50.0f, 7, 0, &ds), BRISK_OK);
    ds.rows = ds.cols = 8; /* 8 x 8 images */
    int32_t idx[N];
    for (int i = 0; i < N; i++)
        idx[i] = i;
    float mean, std;
    brisk_dataset_stats(&ds, idx, N, &mean, &std);
    static const struct {
        const char *builtin, *user;
        brisk_shape in;
        int batch_counts; /* a batchnorm's num_batches_tracked in the checkpoint */
    } pairs[] = {
        {"conv:4:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:8,tanh,dense:3",
         "u_conv:4:3:pad1,u_batchnorm,u_relu,maxpool:2,flatten,u_dense:8,u_tanh,u_dense:3",
         {3, 1, 8, 8}, 1},
        {"dense:8,tanh,dense:3", "u_dense:8,u_tanh,u_dense:3", {1, 64, 1, 1}, 0},
    };
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        brisk_trainer *a = trainer(pairs[p].builtin, pairs[p].in);
        brisk_trainer *b = trainer(pairs[p].user, pairs[p].in);
        const size_t bytes = brisk_model_slab_len(brisk_trainer_model(a)) * sizeof(float);
        assert_int_equal(brisk_model_slab_len(brisk_trainer_model(b)) * sizeof(float), bytes);
        /* Glorot before (u_)tanh, He before (u_)relu: the same initial weights. */
        assert_memory_equal(brisk_trainer_params(a), brisk_trainer_params(b), bytes);
        char *da = test_mkdtemp(), *db = test_mkdtemp();
        fit_one_epoch(a, &ds, idx, mean, std, da);
        fit_one_epoch(b, &ds, idx, mean, std, db);
        assert_memory_equal(brisk_trainer_params(a), brisk_trainer_params(b), bytes);
        /* The checkpoint's entries: the same names, num_batches_tracked included. */
        brisk_ckpt_entry *ea, *eb;
        size_t na, nb;
        assert_int_equal(brisk_ckpt_list(da, NULL, &ea, &na), BRISK_OK);
        assert_int_equal(brisk_ckpt_list(db, NULL, &eb, &nb), BRISK_OK);
        assert_int_equal(na, 1);
        assert_int_equal(nb, 1);
        char pa[8192], pb[8192];
        snprintf(pa, sizeof pa, "%s/%s", da, ea[0].name);
        snprintf(pb, sizeof pb, "%s/%s", db, eb[0].name);
        size_t la, lb;
        uint8_t *ca = test_read_file(pa, &la), *cb = test_read_file(pb, &lb);
        const char *tracked = "\"1.num_batches_tracked\"";
        assert_int_equal(memmem(ca, la, tracked, strlen(tracked)) != NULL, pairs[p].batch_counts);
        assert_int_equal(memmem(cb, lb, tracked, strlen(tracked)) != NULL, pairs[p].batch_counts);
        /* The first layer's weights as an image, for both. */
        assert_true(has_weight_image(da));
        assert_true(has_weight_image(db));
        free(ca);
        free(cb);
        free(ea);
        free(eb);
        test_rmdir(da);
        test_rmdir(db);
        brisk_trainer_destroy(a);
        brisk_trainer_destroy(b);
    }
    brisk_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_layers_match_builtins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
