/* Checkpoints: a safetensors round trip that restores every bit, and every kind of damage
 * refused with its own error naming the file: empty, truncated anywhere, absurd header size,
 * any edit of the header (its CRC), and, with that CRC fixed up as a deliberate editor
 * would: header that is not JSON, not a Brisk file, wrong dtype, wrong shape, missing or
 * extra tensor, every position value out of range; flipped data bits. */
#define _GNU_SOURCE /* memmem */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/error.h"
#include "brisk/tfrecord.h"

#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    char *dir, *path;
    brisk_model *m;
    float *p, *mo, *v;
    uint8_t *bytes; /* the file as written */
    size_t size;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_mlp(&mc, "12-7-3", BRISK_ACT_GELU), BRISK_OK);
    mc.loss = BRISK_LOSS_SOFTMAX_CE;
    mc.init = BRISK_INIT_AUTO;
    assert_int_equal(brisk_model_create(&mc, &fx->m), BRISK_OK);
    fx->p = brisk_slab_alloc(fx->m);
    fx->mo = brisk_slab_alloc(fx->m);
    fx->v = brisk_slab_alloc(fx->m);
    brisk_model_init_params(fx->m, 7, fx->p, NULL);
    for (int k = 0; k < brisk_model_num_tensors(fx->m); k++) { /* padding stays zero */
        const brisk_tensor_view *tv = brisk_model_tensor(fx->m, k);
        for (size_t i = tv->offset; i < tv->offset + (size_t)tv->rows * tv->cols; i++) {
            fx->mo[i] = (float)i * 1e-3f - 0.01f;
            fx->v[i] = (float)i * 1e-6f;
        }
    }
    fx->dir = test_mkdtemp();
    fx->path = malloc(4096);
    snprintf(fx->path, 4096, "%s/a.safetensors", fx->dir);
    const brisk_ckpt_position pos = {.epoch = 3, .batch = 17, .steps_done = 1234, .seed = 99,
                                     .train = {.loss_sum = 0.1 + 0.2, .correct = 5, .count = 9}};
    assert_int_equal(brisk_checkpoint_save(fx->path, fx->m, fx->p, fx->mo, fx->v, NULL, &pos,
                                           "{\"lr\": 0.001}"),
                     BRISK_OK);
    fx->bytes = test_read_file(fx->path, &fx->size);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    brisk_slab_free(fx->p);
    brisk_slab_free(fx->mo);
    brisk_slab_free(fx->v);
    brisk_model_destroy(fx->m);
    free(fx->bytes);
    free(fx->path);
    test_rmdir(fx->dir);
    free(fx);
    return 0;
}

static void test_round_trip(void **state)
{
    fixture *fx = *state;
    assert_int_equal((fx->bytes[0] + 8) % 8, 0); /* header padded: the data starts aligned */
    brisk_checkpoint *c;
    assert_int_equal(brisk_checkpoint_load(fx->path, &c), BRISK_OK);
    assert_string_equal(c->model.spec, "dense:7,gelu,dense:3");
    assert_int_equal(c->model.input.c, 12);
    const size_t bytes = brisk_model_slab_len(fx->m) * sizeof(float);
    assert_memory_equal(c->params, fx->p, bytes);
    assert_memory_equal(c->opt_m, fx->mo, bytes);
    assert_memory_equal(c->opt_v, fx->v, bytes);
    assert_int_equal(c->pos.epoch, 3);
    assert_int_equal(c->pos.batch, 17);
    assert_int_equal(c->pos.steps_done, 1234);
    assert_int_equal(c->pos.seed, 99);
    assert_true(c->pos.train.loss_sum == 0.1 + 0.2); /* exact, not close */
    assert_int_equal(c->pos.train.correct, 5);
    assert_int_equal(c->pos.train.count, 9);
    assert_string_equal(c->config, "{\"lr\": 0.001}");
    brisk_checkpoint_free(c);
    /* The published layout, read by hand: size, then JSON naming F32 tensors. */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | fx->bytes[i];
    assert_true(n < fx->size);
    assert_int_equal(fx->bytes[8], '{');
    assert_non_null(memmem(fx->bytes + 8, n, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[7,12]",
                           strlen("\"0.weight\":{\"dtype\":\"F32\",\"shape\":[7,12]")));
    assert_non_null(memmem(fx->bytes + 8, n, "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3]",
                           strlen("\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3]")));
    /* Saving over an existing file replaces it atomically (no temporary left behind). */
    const brisk_ckpt_position pos = {.epoch = 4};
    assert_int_equal(brisk_checkpoint_save(fx->path, fx->m, fx->p, fx->mo, fx->v, NULL, &pos,
                                           NULL),
                     BRISK_OK);
    assert_int_equal(brisk_checkpoint_load(fx->path, &c), BRISK_OK);
    assert_int_equal(c->pos.epoch, 4);
    assert_null(c->config);
    brisk_checkpoint_free(c);
}

/* Writes bytes to a new file and expects load to fail with err and a detail containing what
 * and the file name. */
static void expect_bad(fixture *fx, const uint8_t *b, size_t n, int err, const char *what)
{
    char *p = test_write_file(fx->dir, "bad.safetensors", b, n);
    brisk_checkpoint *c = (brisk_checkpoint *)1;
    const int rc = brisk_checkpoint_load(p, &c);
    if (rc != err || !strstr(brisk_error_detail(), what) || !strstr(brisk_error_detail(), p)) {
        print_error("%zu bytes: got %d (%s), expected %d with '%s'\n", n, rc,
                    brisk_error_detail(), err, what);
        fail();
    }
    assert_null(c);
    free(p);
}

static void replace_in_header(uint8_t *b, const char *from, const char *to)
{
    assert_int_equal(strlen(from), strlen(to));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    uint8_t *at = memmem(b + 8, hlen, from, strlen(from));
    assert_non_null(at);
    memcpy(at, to, strlen(to));
}

/* Recomputes the header CRC the way the format documents it (brisk/checkpoint.h): CRC-32C
 * of the size field and the header with the CRC's value read as eight zeros. */
static void fix_header_crc(uint8_t *b)
{
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    static const char key[] = "\"brisk.header_crc32c\":\"";
    uint8_t *at = memmem(b + 8, hlen, key, strlen(key));
    assert_non_null(at);
    at += strlen(key);
    memcpy(at, "00000000", 8);
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)brisk_crc32c(0, b, 8 + hlen));
    memcpy(at, hex, 8);
}

/* An edit of the header is refused for its CRC; with the CRC fixed up, for what it is. */
static void expect_edit_refused(fixture *fx, const char *from, const char *to, int err,
                                const char *what)
{
    uint8_t *b = malloc(fx->size);
    assert_non_null(b);
    memcpy(b, fx->bytes, fx->size);
    replace_in_header(b, from, to);
    expect_bad(fx, b, fx->size, BRISK_EFORMAT, "header CRC-32C");
    fix_header_crc(b);
    expect_bad(fx, b, fx->size, err, what);
    free(b);
}

static void test_damage_is_refused(void **state)
{
    fixture *fx = *state;
    uint8_t *b = malloc(fx->size + 64);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | fx->bytes[i];

    expect_bad(fx, fx->bytes, 0, BRISK_EEMPTY, "too short");
    expect_bad(fx, fx->bytes, 5, BRISK_ETRUNCATED, "too short");
    /* Truncated anywhere: inside the header, or inside the data. */
    for (size_t cut = 8; cut < fx->size; cut += (cut < 8 + hlen ? 97 : 13))
        expect_bad(fx, fx->bytes, cut, BRISK_ETRUNCATED, "truncated");

    memcpy(b, fx->bytes, fx->size);
    b[7] = 0x40; /* header size 2^62 */
    expect_bad(fx, b, fx->size, BRISK_EFORMAT, "header size");

    memcpy(b, fx->bytes, fx->size);
    b[8] = '[';
    expect_bad(fx, b, fx->size, BRISK_EFORMAT, "header CRC-32C");
    fix_header_crc(b);
    expect_bad(fx, b, fx->size, BRISK_EFORMAT, "not a JSON object");

    expect_edit_refused(fx, "brisk.model", "brisk.modes", BRISK_EFORMAT, "not a Brisk checkpoint");
    expect_edit_refused(fx, "\"F32\",\"shape\":[7,12]", "\"F16\",\"shape\":[7,12]",
                        BRISK_EMISMATCH, "dtype F16");
    expect_edit_refused(fx, "\"shape\":[7,12]", "\"shape\":[12,7]", BRISK_EMISMATCH,
                        "expected [7, 12]");
    expect_edit_refused(fx, "\"optim.v.2.bias\"", "\"optim.v.2.bian\"",
                        BRISK_EMISMATCH, "optim.v.2.bias is missing");
    expect_edit_refused(fx, "\"brisk.model\":\"dense:7,", "\"brisk.model\":\"dense:6,",
                        BRISK_EMISMATCH, "shape");
    /* Every position value, one edit each, out of the range training can produce. */
    expect_edit_refused(fx, "\"brisk.epoch\":\"3\"", "\"brisk.epoch\":\"-\"", BRISK_EFORMAT,
                        "brisk.epoch");
    expect_edit_refused(fx, "\"brisk.batch\":\"17\"", "\"brisk.batch\":\"-1\"",
                        BRISK_EFORMAT, "brisk.batch");
    expect_edit_refused(fx, "\"brisk.steps_done\":\"1234\"", "\"brisk.steps_done\":\"-234\"",
                        BRISK_EFORMAT, "brisk.steps_done");
    expect_edit_refused(fx, "\"brisk.seed\":\"99\"", "\"brisk.seed\":\"-9\"", BRISK_EFORMAT,
                        "brisk.seed");
    expect_edit_refused(fx, "\"brisk.train_correct\":\"5\"", "\"brisk.train_correct\":\"x\"",
                        BRISK_EFORMAT, "brisk.train_correct");
    expect_edit_refused(fx, "\"brisk.train_count\":\"9\"", "\"brisk.train_count\":\"1\"",
                        BRISK_EFORMAT, "brisk.train_correct");
    expect_edit_refused(fx, "\"brisk.train_loss_sum\":\"0.", "\"brisk.train_loss_sum\":\"-.",
                        BRISK_EFORMAT, "brisk.train_loss_sum");
    expect_edit_refused(fx, "\"brisk.data_crc32c\":\"", "\"brisk.data_crc32C\":\"",
                        BRISK_EFORMAT, "brisk.data_crc32c is missing");
    /* A file of the first format version (no header CRC) is refused by name. */
    memcpy(b, fx->bytes, fx->size);
    replace_in_header(b, "\"brisk.version\":\"2\"", "\"brisk.version\":\"1\"");
    replace_in_header(b, "\"brisk.header_crc32c\"", "\"brisk.header_crc32x\"");
    expect_bad(fx, b, fx->size, BRISK_EFORMAT, "older Brisk");

    /* One flipped bit in the optimizer state, the params and the last byte. */
    const size_t flips[3] = {8 + hlen + 5, fx->size - 100, fx->size - 1};
    for (int i = 0; i < 3; i++) {
        memcpy(b, fx->bytes, fx->size);
        b[flips[i]] ^= 0x04;
        expect_bad(fx, b, fx->size, BRISK_EFORMAT, "corrupted");
    }

    /* Extra bytes after the last tensor are refused too (they mean another writer). */
    memcpy(b, fx->bytes, fx->size);
    memset(b + fx->size, 0, 64);
    expect_bad(fx, b, fx->size + 64, BRISK_EFORMAT, "after the last tensor");

    brisk_checkpoint *c;
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", fx->dir);
    assert_int_equal(brisk_checkpoint_load(missing, &c), BRISK_ENOENT);
    assert_non_null(strstr(brisk_error_detail(), missing));
    free(b);
}

/* A long model line (more than 127 characters) is stored whole: it used to be cut at 127, and
 * the checkpoint could not be loaded. */
static void test_long_model_line(void **state)
{
    (void)state;
    char spec[BRISK_MODEL_SPEC_MAX] = "";
    for (int i = 0; i < 20; i++)
        strcat(spec, "dense:8,tanh,");
    strcat(spec, "dense:3");
    assert_true(strlen(spec) > 200);
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_set(&mc, spec, brisk_shape_vec(5)), BRISK_OK);
    brisk_model *m;
    assert_int_equal(brisk_model_create(&mc, &m), BRISK_OK);
    float *p = calloc(brisk_model_slab_len(m), sizeof *p);
    char *dir = test_mkdtemp(), path[4096];
    snprintf(path, sizeof path, "%s/long.safetensors", dir);
    const brisk_ckpt_position pos = {.seed = 1};
    assert_int_equal(brisk_checkpoint_save(path, m, p, p, p, NULL, &pos, NULL), BRISK_OK);
    brisk_checkpoint *c;
    if (brisk_checkpoint_load(path, &c) != BRISK_OK)
        fail_msg("%s", brisk_error_detail());
    char back[BRISK_MODEL_SPEC_MAX];
    brisk_model_describe(c->layout, back, sizeof back);
    assert_string_equal(back, spec);
    brisk_checkpoint_free(c);
    free(p);
    brisk_model_destroy(m);
    test_rmdir(dir);
}

/* A moving average of the weights and buffers travels after everything else, as
 * "ema.<name>", with its decay; a file without one loads with NULL; bad arguments are
 * refused. A batchnorm model, so that buffers are averaged too. */
static void test_moving_average(void **state)
{
    (void)state;
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_set(&mc, "dense:5,batchnorm,relu,dense:3",
                                            brisk_shape_vec(4)), BRISK_OK);
    brisk_model *m;
    assert_int_equal(brisk_model_create(&mc, &m), BRISK_OK);
    const size_t len = brisk_model_slab_len(m), nb = brisk_model_buffers_len(m);
    float *p = brisk_slab_alloc(m), *e = brisk_slab_alloc(m), *b = brisk_buffers_alloc(m),
          *eb = brisk_buffers_alloc(m);
    for (int k = 0; k < brisk_model_num_tensors(m); k++) { /* the slabs' padding stays 0 */
        const brisk_tensor_view *tv = brisk_model_tensor(m, k);
        for (size_t i = tv->offset; i < tv->offset + tv->count; i++) {
            if (tv->buffer)
                b[i] = 1.0f + (float)i, eb[i] = 2.0f + (float)i;
            else
                p[i] = (float)i * 0.5f, e[i] = (float)i * -0.25f;
        }
    }
    char *dir = test_mkdtemp(), path[4096];
    snprintf(path, sizeof path, "%s/ema.safetensors", dir);
    const brisk_ckpt_position pos = {.seed = 1, .steps_done = 3};
    assert_int_equal(brisk_checkpoint_save_ema(path, m, p, p, p, b, e, eb, 0.999, &pos, NULL),
                     BRISK_OK);
    size_t size;
    uint8_t *bytes = test_read_file(path, &size);
    assert_non_null(memmem(bytes, size, "\"ema.0.weight\"", 14));
    assert_non_null(memmem(bytes, size, "\"ema.1.running_var\"", 19));
    free(bytes);
    brisk_checkpoint *c;
    assert_int_equal(brisk_checkpoint_load(path, &c), BRISK_OK);
    assert_true(c->ema_decay == 0.999);
    assert_memory_equal(c->params, p, len * sizeof *p);
    assert_memory_equal(c->buffers, b, nb * sizeof *b);
    assert_memory_equal(c->ema_params, e, len * sizeof *e);
    assert_memory_equal(c->ema_buffers, eb, nb * sizeof *eb);
    brisk_checkpoint_free(c);
    assert_int_equal(brisk_checkpoint_save(path, m, p, p, p, b, &pos, NULL), BRISK_OK);
    assert_int_equal(brisk_checkpoint_load(path, &c), BRISK_OK);
    assert_null(c->ema_params);
    assert_null(c->ema_buffers);
    assert_true(c->ema_decay == 0);
    brisk_checkpoint_free(c);
    assert_int_equal(brisk_checkpoint_save_ema(path, m, p, p, p, b, e, NULL, 0.9, &pos, NULL),
                     BRISK_EINVAL);
    assert_int_equal(brisk_checkpoint_save_ema(path, m, p, p, p, b, e, eb, 1.0, &pos, NULL),
                     BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "ema_decay"));
    brisk_slab_free(p);
    brisk_slab_free(e);
    brisk_slab_free(b);
    brisk_slab_free(eb);
    brisk_model_destroy(m);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_model_line),
        cmocka_unit_test(test_moving_average),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
