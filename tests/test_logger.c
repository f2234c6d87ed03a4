/* The logging thread and event files: every summary kind written by brisk_log reads back
 * (both CRCs checked, every Event decoded with protobuf-c), the golden records byte for
 * byte, torn and corrupt records, flush, drops, write failures, SIGKILL mid-stream and a
 * SIGTERM handler that drains. */
#include "test_util.h"

#include "brisk/error.h"
#include "brisk/logger.h"
#include "brisk/tfrecord.h"
#include "tb_events.h"

#pragma GCC diagnostic ignored "-Wcast-qual" /* protobuf-c's INIT macros */

#include <float.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char *path_join(const char *a, const char *b)
{
    char *p = malloc(4096);
    assert_non_null(p);
    snprintf(p, 4096, "%s/%s", a, b);
    return p;
}

/* Reads the only event file of dir (asserts there is exactly `expect_files`, reads the last). */
static void read_run(const char *dir, size_t expect_files, tb_file *f)
{
    size_t n;
    char **paths = tb_list_event_files(dir, &n);
    assert_int_equal(n, expect_files);
    assert_int_equal(tb_file_read(paths[n - 1], f), 0);
    tb_free_list(paths, n);
}

/* Every file starts with file_version + source_metadata, then START at first_step. */
static void check_header(const tb_file *f, int64_t first_step)
{
    assert_true(f->n >= 2);
    assert_int_equal(f->events[0]->what_case, TENSORBOARD__EVENT__WHAT_FILE_VERSION);
    assert_string_equal(f->events[0]->file_version, "brain.Event:2");
    assert_non_null(f->events[0]->source_metadata);
    assert_string_equal(f->events[0]->source_metadata->writer, BRISK_LOG_WRITER);
    assert_true(f->events[0]->wall_time > 1.6e9);
    assert_int_equal(f->events[1]->what_case, TENSORBOARD__EVENT__WHAT_SESSION_LOG);
    assert_int_equal(f->events[1]->session_log->status,
                     TENSORBOARD__SESSION_LOG__SESSION_STATUS__START);
    assert_int_equal(f->events[1]->step, first_step);
}

/* The golden records of TENSORBOARD.md, encoded by protobuf-c from our .proto. */
static void test_golden_records_from_proto(void **state)
{
    (void)state;
    uint8_t want[256], got[256], payload[256];
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = 1700000000.0;
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)"brain.Event:2";
    size_t n = tensorboard__event__pack(&ev, payload);
    size_t wn = test_from_hex("1800000000000000 a37f4b22 0900000040fc54d9411a0d627261696e2e4576656e"
                         "743a32 eced8f9d",
                         want);
    assert_int_equal(brisk_tfrecord_frame(payload, n, got), wn);
    assert_memory_equal(got, want, wn);

    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)"loss";
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = 0.5f;
    Tensorboard__Summary__Value *vp = &v;
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = &vp;
    Tensorboard__Event ev2 = TENSORBOARD__EVENT__INIT;
    ev2.wall_time = 1700000001.0;
    ev2.step = 1;
    ev2.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev2.summary = &sum;
    n = tensorboard__event__pack(&ev2, payload);
    wn = test_from_hex("1a00000000000000 129bd82d 0900004040fc54d94110012a0d0a0b0a046c6f7373150000003f"
                  " 97d67404",
                  want);
    assert_int_equal(brisk_tfrecord_frame(payload, n, got), wn);
    assert_memory_equal(got, want, wn);
}

/* The record reader: a torn last record at every cut point, and each CRC broken. */
static void test_reader_torn_and_corrupt(void **state)
{
    (void)state;
    uint8_t file[300];
    size_t len = 0;
    const char *payloads[3] = {"first", "second record", "third"};
    size_t ends[3];
    for (int i = 0; i < 3; i++) {
        len += brisk_tfrecord_frame(payloads[i], strlen(payloads[i]), file + len);
        ends[i] = len;
    }
    const uint8_t *data;
    size_t n, off = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(brisk_tfrecord_next(file, len, &off, &data, &n), 1);
        assert_int_equal(n, strlen(payloads[i]));
        assert_memory_equal(data, payloads[i], n);
    }
    assert_int_equal(brisk_tfrecord_next(file, len, &off, &data, &n), 0);
    for (size_t cut = ends[1] + 1; cut < ends[2]; cut++) {
        off = 0;
        assert_int_equal(brisk_tfrecord_next(file, cut, &off, &data, &n), 1);
        assert_int_equal(brisk_tfrecord_next(file, cut, &off, &data, &n), 1);
        assert_int_equal(brisk_tfrecord_next(file, cut, &off, &data, &n), BRISK_ETRUNCATED);
        assert_int_equal(off, ends[1]);
    }
    uint8_t bad[300];
    memcpy(bad, file, len);
    bad[ends[0] + 2] ^= 0x01; /* length of the second record */
    off = ends[0];
    assert_int_equal(brisk_tfrecord_next(bad, len, &off, &data, &n), BRISK_EFORMAT);
    assert_non_null(strstr(brisk_error_detail(), "length CRC"));
    memcpy(bad, file, len);
    bad[ends[0] + 14] ^= 0x20; /* data of the second record */
    off = ends[0];
    assert_int_equal(brisk_tfrecord_next(bad, len, &off, &data, &n), BRISK_EFORMAT);
    assert_non_null(strstr(brisk_error_detail(), "data CRC"));
}

typedef struct captured {
    char lines[8][512];
    int n;
} captured;

static void capture(void *user, const char *line)
{
    captured *c = user;
    if (c->n < 8)
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s", line);
    c->n++;
}

/* PNG check: signature, chunk CRCs (zlib's crc32), IHDR, and the inflated pixels. */
static void check_png(const uint8_t *png, size_t len, const uint8_t *pixels, int h, int w, int c)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_true(len > 8);
    assert_memory_equal(png, sig, 8);
    size_t at = 8, raw_len = 0;
    uint8_t *idat = malloc(len);
    int saw_end = 0;
    while (at + 12 <= len) {
        const uint32_t n = (uint32_t)png[at] << 24 | (uint32_t)png[at + 1] << 16 |
                           (uint32_t)png[at + 2] << 8 | png[at + 3];
        assert_true(at + 12 + n <= len);
        const uint8_t *type = png + at + 4, *data = png + at + 8;
        const uint32_t crc = (uint32_t)data[n] << 24 | (uint32_t)data[n + 1] << 16 |
                             (uint32_t)data[n + 2] << 8 | data[n + 3];
        assert_int_equal(crc, (uint32_t)crc32(0, type, n + 4));
        if (!memcmp(type, "IHDR", 4)) {
            assert_int_equal(n, 13);
            assert_int_equal((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                                 (uint32_t)data[2] << 8 | data[3],
                             (uint32_t)w);
            assert_int_equal(data[7], h);
            assert_int_equal(data[8], 8);
            assert_int_equal(data[9], c == 1 ? 0 : c == 3 ? 2 : 6);
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(idat + raw_len, data, n);
            raw_len += n;
        } else if (!memcmp(type, "IEND", 4)) {
            saw_end = 1;
        }
        at += 12 + n;
    }
    assert_true(saw_end);
    assert_int_equal(at, len);
    const size_t row = (size_t)w * (size_t)c;
    uLongf out_len = (uLongf)((row + 1) * (size_t)h);
    uint8_t *raw = malloc(out_len);
    assert_int_equal(uncompress(raw, &out_len, idat, (uLong)raw_len), Z_OK);
    assert_int_equal(out_len, (row + 1) * (size_t)h);
    for (int y = 0; y < h; y++) {
        assert_int_equal(raw[(size_t)y * (row + 1)], 0);
        assert_memory_equal(raw + (size_t)y * (row + 1) + 1, pixels + (size_t)y * row, row);
    }
    free(raw);
    free(idat);
}

/* Unpacks the plugin content of an hparams value. */
static Tensorboard__HParamsPluginData *hparams_content(const Tensorboard__Summary__Value *v)
{
    assert_non_null(v);
    assert_non_null(v->metadata);
    assert_string_equal(v->metadata->plugin_data->plugin_name, "hparams");
    assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR);
    assert_int_equal(v->tensor->dtype, TENSORBOARD__DATA_TYPE__DT_FLOAT);
    assert_int_equal(v->tensor->tensor_shape->n_dim, 1);
    assert_int_equal(v->tensor->tensor_shape->dim[0]->size, 0);
    Tensorboard__HParamsPluginData *pd = tensorboard__hparams_plugin_data__unpack(
        NULL, v->metadata->plugin_data->content.len, v->metadata->plugin_data->content.data);
    assert_non_null(pd);
    return pd;
}

static void test_every_summary_kind_round_trips(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *logdir = path_join(dir, "exp/a"); /* parents are created */
    brisk_logger *lg;
    captured msgs = {.n = 0};
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = logdir,
                                                                 .message = capture,
                                                                 .message_user = &msgs},
                                         &lg),
                     BRISK_OK);
    int root, train, val;
    assert_int_equal(brisk_logger_add_run(lg, "", 0, &root), BRISK_OK);
    assert_int_equal(brisk_logger_add_run(lg, "train", 5, &train), BRISK_OK);
    assert_int_equal(brisk_logger_add_run(lg, "validation", 5, &val), BRISK_OK);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), BRISK_OK);

    for (int e = 1; e <= 3; e++) {
        assert_int_equal(brisk_log_scalar(p, train, "epoch_loss", e, 1.0 / e), BRISK_OK);
        assert_int_equal(brisk_log_scalar(p, val, "epoch_loss", e, 1.5 / e), BRISK_OK);
    }
    enum { NH = 1001 + 3000 };
    float x[NH];
    for (int i = 0; i < 1001; i++)
        x[i] = (float)(i - 500) * 0.01f; /* -5 .. 5, with an exact 0 */
    x[7] = NAN;                          /* left out */
    /* Edge cases of the table lookup: values at and next to bucket edges over the whole
     * range, tiny and huge magnitudes, denormals, -0. */
    int at = 1001;
    for (double e = 1e-12; e < 1e20 && at + 6 <= NH; e *= 1.1) {
        const float f = (float)e;
        x[at++] = f;
        x[at++] = -f;
        x[at++] = nextafterf(f, INFINITY);
        x[at++] = -nextafterf(f, 0.0f);
    }
    const float specials[] = {1e-13f, -1e-13f, 1e-40f, -1e-40f, -0.0f, 3e38f, -3e38f, 1e25f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0] && at < NH; i++)
        x[at++] = specials[i];
    while (at < NH) {
        x[at] = (float)((at % 2 ? -1 : 1) * pow(10.0, (at % 97) * 0.33 - 15));
        at++;
    }
    assert_int_equal(brisk_log_histogram(p, train, "dense0.weight", 3, x, NH), BRISK_OK);
    const char *text = "| flag | value |\n|---|---|\n| lr | 0.001 |";
    assert_int_equal(brisk_log_text(p, train, "config", 0, text), BRISK_OK);
    uint8_t gray[3 * 5], rgb[4 * 2 * 3];
    for (size_t i = 0; i < sizeof gray; i++)
        gray[i] = (uint8_t)(i * 17);
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(255 - i * 9);
    assert_int_equal(brisk_log_image(p, train, "weights", 3, gray, 3, 5, 1), BRISK_OK);
    assert_int_equal(brisk_log_image(p, val, "confusion", 3, rgb, 4, 2, 3), BRISK_OK);
    const brisk_hparam hp[3] = {
        {.name = "lr", .type = BRISK_HPARAM_NUMBER, .number = 0.001},
        {.name = "optimizer", .type = BRISK_HPARAM_STRING, .string = "adamw"},
        {.name = "shuffle", .type = BRISK_HPARAM_BOOL, .boolean = 1},
    };
    const brisk_metric metrics[2] = {{"validation", "epoch_accuracy"}, {"train", "epoch_loss"}};
    assert_int_equal(brisk_log_hparams(p, root, hp, 3, metrics, 2), BRISK_OK);
    const char *loss_tags[] = {"epoch_loss"}, *acc_tags[] = {"epoch_accuracy", "batch_acc.*"};
    const brisk_chart charts[2] = {{"loss", loss_tags, 1}, {"accuracy", acc_tags, 2}};
    assert_int_equal(brisk_log_custom_scalars(p, root, "Brisk", charts, 2), BRISK_OK);
    assert_int_equal(brisk_log_hparams_end(p, root, BRISK_SESSION_SUCCESS), BRISK_OK);
    /* Caller bugs are refused, not counted as drops. */
    assert_int_equal(brisk_log_scalar(p, train, "", 1, 1.0), BRISK_EINVAL);
    assert_int_equal(brisk_log_scalar(p, 7, "x", 1, 1.0), BRISK_EINVAL);
    char long_tag[300];
    memset(long_tag, 'a', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    assert_int_equal(brisk_log_scalar(p, train, long_tag, 1, 1.0), BRISK_EINVAL);
    assert_int_equal(brisk_log_image(p, train, "img", 1, gray, 3, 5, 2), BRISK_EINVAL);

    assert_int_equal(brisk_logger_close(lg), BRISK_OK);
    brisk_logger_stats st;
    brisk_logger_get_stats(lg, &st);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.write_errors, 0);
    assert_int_equal(msgs.n, 0);
    brisk_logger_destroy(lg);

    /* train: scalars, histogram, text, image. */
    char *train_dir = path_join(logdir, "train");
    tb_file f;
    read_run(train_dir, 1, &f);
    assert_int_equal(f.status, 0);
    check_header(&f, 5);
    int seen = 0;
    for (size_t i = 2; i < f.n; i++) {
        const Tensorboard__Summary__Value *v = f.events[i]->summary->value[0];
        if (strcmp(v->tag, "epoch_loss") == 0) {
            seen++;
            assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
            assert_float_equal(v->simple_value, (float)(1.0 / seen), 0);
            assert_int_equal(f.events[i]->step, seen);
        }
    }
    assert_int_equal(seen, 3);

    const Tensorboard__Event *ev;
    const Tensorboard__Summary__Value *v = tb_find_value(&f, "dense0.weight", &ev);
    assert_non_null(v);
    assert_int_equal(ev->step, 3);
    assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO);
    const Tensorboard__HistogramProto *h = v->histo;
    double want_sum = 0, want_sq = 0, want_min = INFINITY, want_max = -INFINITY;
    for (int i = 0; i < NH; i++)
        if (i != 7) {
            want_sum += x[i];
            want_sq += (double)x[i] * x[i];
            want_min = x[i] < want_min ? x[i] : want_min;
            want_max = x[i] > want_max ? x[i] : want_max;
        }
    assert_close(h->num, NH - 1, 0, 0);
    assert_close(h->min, want_min, 0, 0);
    assert_close(h->max, want_max, 0, 0);
    assert_close(h->sum, want_sum, 1e-12, 1e-12 * want_max);
    assert_close(h->sum_squares, want_sq, 1e-12, 0);
    assert_int_equal(h->n_bucket, h->n_bucket_limit);
    /* Each value falls in exactly the bucket (limit[i-1], limit[i]] that counts it. */
    double *count = calloc(h->n_bucket, sizeof *count);
    for (int i = 0; i < NH; i++) {
        if (i == 7)
            continue;
        size_t k = 0;
        while (k < h->n_bucket && !((double)x[i] <= h->bucket_limit[k]))
            k++;
        assert_true(k < h->n_bucket);
        assert_true(k == 0 || (double)x[i] > h->bucket_limit[k - 1]);
        count[k] += 1;
    }
    for (size_t k = 0; k < h->n_bucket; k++) {
        assert_close(h->bucket[k], count[k], 0, 0);
        if (k > 0)
            assert_true(h->bucket_limit[k] > h->bucket_limit[k - 1]);
    }
    free(count);

    v = tb_find_value(&f, "config", &ev);
    assert_non_null(v);
    assert_string_equal(v->metadata->plugin_data->plugin_name, "text");
    assert_int_equal(v->tensor->dtype, TENSORBOARD__DATA_TYPE__DT_STRING);
    assert_int_equal(v->tensor->n_string_val, 1);
    assert_int_equal(v->tensor->string_val[0].len, strlen(text));
    assert_memory_equal(v->tensor->string_val[0].data, text, strlen(text));

    v = tb_find_value(&f, "weights", NULL);
    assert_non_null(v);
    assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE);
    assert_int_equal(v->image->height, 3);
    assert_int_equal(v->image->width, 5);
    assert_int_equal(v->image->colorspace, 1);
    check_png(v->image->encoded_image_string.data, v->image->encoded_image_string.len, gray, 3,
              5, 1);
    tb_file_free(&f);

    /* validation: the same tag as train, and an RGB image. */
    char *val_dir = path_join(logdir, "validation");
    read_run(val_dir, 1, &f);
    check_header(&f, 5);
    v = tb_find_value(&f, "epoch_loss", NULL);
    assert_non_null(v);
    assert_float_equal(v->simple_value, 1.5f, 0);
    v = tb_find_value(&f, "confusion", NULL);
    assert_non_null(v);
    check_png(v->image->encoded_image_string.data, v->image->encoded_image_string.len, rgb, 4, 2,
              3);
    tb_file_free(&f);

    /* The experiment directory itself: hparams and the layout. */
    read_run(logdir, 1, &f);
    check_header(&f, 0);
    Tensorboard__HParamsPluginData *pd = hparams_content(tb_find_value(&f, "_hparams_/experiment", NULL));
    assert_int_equal(pd->data_case, TENSORBOARD__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT);
    assert_int_equal(pd->experiment->n_hparam_infos, 3);
    assert_string_equal(pd->experiment->hparam_infos[1]->name, "optimizer");
    assert_int_equal(pd->experiment->hparam_infos[1]->type,
                     TENSORBOARD__HPARAM_DATA_TYPE__DATA_TYPE_STRING);
    assert_int_equal(pd->experiment->n_metric_infos, 2);
    assert_string_equal(pd->experiment->metric_infos[0]->name->group, "validation");
    assert_string_equal(pd->experiment->metric_infos[0]->name->tag, "epoch_accuracy");
    tensorboard__hparams_plugin_data__free_unpacked(pd, NULL);
    pd = hparams_content(tb_find_value(&f, "_hparams_/session_start_info", NULL));
    assert_int_equal(pd->data_case, TENSORBOARD__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO);
    assert_int_equal(pd->session_start_info->n_hparams, 3);
    assert_string_equal(pd->session_start_info->hparams[0]->key, "lr");
    assert_close(pd->session_start_info->hparams[0]->value->number_value, 0.001, 0, 0);
    assert_string_equal(pd->session_start_info->hparams[1]->value->string_value, "adamw");
    assert_int_equal(pd->session_start_info->hparams[2]->value->kind_case,
                     TENSORBOARD__HPARAM_VALUE__KIND_BOOL_VALUE);
    assert_true(pd->session_start_info->hparams[2]->value->bool_value);
    assert_true(pd->session_start_info->start_time_secs > 1.6e9);
    tensorboard__hparams_plugin_data__free_unpacked(pd, NULL);
    pd = hparams_content(tb_find_value(&f, "_hparams_/session_end_info", NULL));
    assert_int_equal(pd->session_end_info->status, TENSORBOARD__SESSION_STATUS__STATUS_SUCCESS);
    tensorboard__hparams_plugin_data__free_unpacked(pd, NULL);

    v = tb_find_value(&f, "custom_scalars__config__", NULL);
    assert_non_null(v);
    assert_string_equal(v->metadata->plugin_data->plugin_name, "custom_scalars");
    assert_int_equal(v->tensor->dtype, TENSORBOARD__DATA_TYPE__DT_STRING);
    Tensorboard__Layout *layout = tensorboard__layout__unpack(
        NULL, v->tensor->string_val[0].len, v->tensor->string_val[0].data);
    assert_non_null(layout);
    assert_int_equal(layout->n_category, 1);
    assert_string_equal(layout->category[0]->title, "Brisk");
    assert_int_equal(layout->category[0]->n_chart, 2);
    assert_string_equal(layout->category[0]->chart[1]->title, "accuracy");
    assert_int_equal(layout->category[0]->chart[1]->multiline->n_tag, 2);
    assert_string_equal(layout->category[0]->chart[1]->multiline->tag[1], "batch_acc.*");
    tensorboard__layout__free_unpacked(layout, NULL);
    tb_file_free(&f);

    free(train_dir);
    free(val_dir);
    free(logdir);
    test_rmdir(dir);
}

/* flush() returns only once everything pushed before it is in the file; two writers of one
 * run in the same second get two files; a new logger never appends. */
static void test_flush_and_new_files(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_logger *lg, *lg2;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir,
                                                                 .flush_secs = 3600},
                                         &lg),
                     BRISK_OK);
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg2), BRISK_OK);
    int run, run2;
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &run), BRISK_OK);
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &run2), BRISK_EINVAL); /* one writer */
    assert_int_equal(brisk_logger_add_run(lg2, "train", 0, &run2), BRISK_OK);
    assert_string_not_equal(brisk_logger_run_path(lg, run), brisk_logger_run_path(lg2, run2));
    brisk_logger_destroy(lg2);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), BRISK_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(brisk_log_scalar(p, run, "batch_loss", i, i * 0.5), BRISK_OK);
    assert_int_equal(brisk_logger_flush(lg), BRISK_OK);
    tb_file f;
    assert_int_equal(tb_file_read(brisk_logger_run_path(lg, run), &f), 0);
    assert_int_equal(f.n, 2 + 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(f.events[2 + i]->step, i);
        assert_float_equal(f.events[2 + i]->summary->value[0]->simple_value, i * 0.5f, 0);
    }
    tb_file_free(&f);
    assert_int_equal(brisk_logger_close(lg), BRISK_OK);
    assert_int_equal(brisk_logger_flush(lg), BRISK_ESTATE);
    assert_int_equal(brisk_logger_close(lg), BRISK_OK); /* twice is fine */
    brisk_logger_destroy(lg);

    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), BRISK_OK);
    assert_int_equal(brisk_logger_add_run(lg, "train", 1000, &run), BRISK_OK);
    brisk_logger_destroy(lg); /* destroy closes */
    char *train = path_join(dir, "train");
    read_run(train, 3, &f);
    check_header(&f, 1000);
    assert_int_equal(f.n, 2);
    tb_file_free(&f);
    free(train);
    test_rmdir(dir);
}

/* A full ring drops, counts, and says so in the file and at close. */
static void test_drops_are_counted_and_reported(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_logger *lg;
    captured msgs = {.n = 0};
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir,
                                                                 .ring_bytes = 4096,
                                                                 .message = capture,
                                                                 .message_user = &msgs},
                                         &lg),
                     BRISK_OK);
    int run;
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &run), BRISK_OK);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), BRISK_OK);
    float big[2000] = {0};
    assert_int_equal(brisk_log_histogram(p, run, "too_big", 1, big, 2000), BRISK_EOVERFLOW);
    assert_int_equal(brisk_log_histogram(p, run, "too_big", 2, big, 2000), BRISK_EOVERFLOW);
    assert_int_equal(brisk_log_scalar(p, run, "loss", 3, 1.0), BRISK_OK); /* carries the 2 */
    assert_int_equal(brisk_logger_flush(lg), BRISK_OK);
    assert_int_equal(brisk_log_histogram(p, run, "too_big", 4, big, 2000), BRISK_EOVERFLOW);
    /* Snapshots keep a quarter of the ring free for the scalars behind them: 800 values fit
     * the 4 KiB ring as text would, but not with that reserve. */
    assert_int_equal(brisk_log_histogram(p, run, "too_big", 5, big, 800), BRISK_EOVERFLOW);
    assert_int_equal(brisk_logger_close(lg), BRISK_OK); /* the last two: reported at close */
    brisk_logger_stats st;
    brisk_logger_get_stats(lg, &st);
    assert_int_equal(st.dropped, 4);
    assert_int_equal(msgs.n, 1);
    assert_non_null(strstr(msgs.lines[0], "dropped 4 records"));
    brisk_logger_destroy(lg);

    char *train = path_join(dir, "train");
    tb_file f;
    read_run(train, 1, &f);
    /* In-band before the second histogram (1), before the scalar (2), before the last
     * histogram (3); at close (4). */
    int64_t last_step = -1;
    int n_drops = 0;
    for (size_t i = 2; i < f.n; i++) {
        const Tensorboard__Summary__Value *v = f.events[i]->summary->value[0];
        if (strcmp(v->tag, "brisk/dropped_records") == 0) {
            assert_true(f.events[i]->step > last_step); /* steps increase per tag */
            last_step = f.events[i]->step;
            n_drops++;
            assert_close(v->simple_value, n_drops, 0, 0);
        }
    }
    assert_int_equal(n_drops, 4);
    tb_file_free(&f);
    free(train);
    test_rmdir(dir);
}

static void test_bad_directory_is_a_clear_error(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *file = test_write_file(dir, "plain", "x", 1);
    char *under = path_join(file, "logs");
    brisk_logger *lg = (brisk_logger *)1;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = under}, &lg), BRISK_EIO);
    assert_null(lg);
    assert_non_null(strstr(brisk_error_detail(), file));
    assert_non_null(strstr(brisk_error_detail(), "ot a directory"));
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir, .ring_bytes = 5000},
                                         &lg),
                     BRISK_EINVAL);
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), BRISK_OK);
    int run;
    assert_int_equal(brisk_logger_add_run(lg, "../escape", 0, &run), BRISK_EINVAL);
    assert_int_equal(brisk_logger_add_run(lg, "plain", 0, &run), BRISK_EIO); /* a file */
    assert_non_null(strstr(brisk_error_detail(), "plain"));
    brisk_logger_destroy(lg);
    free(under);
    free(file);
    test_rmdir(dir);
}

/* Child processes report through their exit status: 0 is success, other values say what
 * failed (the parent prints them). */
static void test_full_disk_is_reported_once(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* RLIMIT_FSIZE makes writes past 64 KiB fail with EFBIG, like a full disk. */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {65536, 65536};
        setrlimit(RLIMIT_FSIZE, &rl);
        brisk_logger *lg;
        captured msgs = {.n = 0};
        if (brisk_logger_create(&(brisk_logger_config){.logdir = dir, .message = capture,
                                                        .message_user = &msgs},
                                &lg))
            _exit(10);
        int run;
        if (brisk_logger_add_run(lg, "train", 0, &run))
            _exit(11);
        brisk_log_producer *p;
        brisk_logger_producer(lg, &p);
        for (int i = 0; i < 20000; i++) { /* about 700 KB of events */
            int rc;
            const struct timespec pace = {0, 100000};
            while ((rc = brisk_log_scalar(p, run, "batch_loss", i, 1.0)) == BRISK_EFULL)
                nanosleep(&pace, NULL); /* the logging thread runs at low priority */
            if (rc)
                _exit(12);
        }
        if (brisk_logger_flush(lg) != BRISK_EIO)
            _exit(13);
        const int rc = brisk_logger_close(lg);
        if (rc != BRISK_EIO || !strstr(brisk_error_detail(), "train/events.out.tfevents") ||
            !strstr(brisk_error_detail(), "too large") ||
            !strstr(brisk_error_detail(), "keeps the records up to step"))
            _exit(14);
        if (msgs.n != 1 || !strstr(msgs.lines[0], "cannot write"))
            _exit(15);
        brisk_logger_stats st;
        brisk_logger_get_stats(lg, &st);
        if (st.write_errors != 1)
            _exit(16);
        brisk_logger_destroy(lg);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The file was cut back to its last whole record: it reads to the end, no torn tail,
     * and holds the records written before the disk filled up. */
    char *train = path_join(dir, "train");
    size_t n;
    char **files = tb_list_event_files(train, &n);
    assert_int_equal(n, 1);
    tb_file f;
    assert_int_equal(tb_file_read(files[0], &f), 0);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.good_bytes, f.size);
    assert_true(f.size <= 65536 && f.n > 100);
    tb_file_free(&f);
    tb_free_list(files, n);
    free(train);
    test_rmdir(dir);
}

/* The run's directory removed while logging: reported once, with the path; no crash. */
static void test_vanished_directory(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *logdir = path_join(dir, "exp");
    brisk_logger *lg;
    captured msgs = {.n = 0};
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = logdir,
                                                                 .message = capture,
                                                                 .message_user = &msgs},
                                         &lg),
                     BRISK_OK);
    int run;
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &run), BRISK_OK);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), BRISK_OK);
    char *path = strdup(brisk_logger_run_path(lg, run));
    assert_int_equal(unlink(path), 0);
    char *train = path_join(logdir, "train");
    assert_int_equal(rmdir(train), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(brisk_log_scalar(p, run, "loss", i, 1.0), BRISK_OK);
    assert_int_equal(brisk_logger_flush(lg), BRISK_EIO);
    assert_non_null(strstr(brisk_error_detail(), path));
    for (int i = 100; i < 200; i++)
        assert_int_equal(brisk_log_scalar(p, run, "loss", i, 1.0), BRISK_OK);
    assert_int_equal(brisk_logger_close(lg), BRISK_EIO);
    assert_int_equal(msgs.n, 1);
    assert_non_null(strstr(msgs.lines[0], "removed"));
    assert_non_null(strstr(msgs.lines[0], path));
    brisk_logger_destroy(lg);
    free(path);
    free(train);
    free(logdir);
    test_rmdir(dir);
}

/* SIGKILL mid-stream: every complete record before the kill reads back; a new writer starts a
 * new file with a START event. */
static void test_sigkill_mid_stream(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        brisk_logger *lg;
        if (brisk_logger_create(&(brisk_logger_config){.logdir = dir, .flush_secs = 0.01}, &lg))
            _exit(10);
        int run;
        brisk_logger_add_run(lg, "train", 0, &run);
        brisk_log_producer *p;
        brisk_logger_producer(lg, &p);
        const struct timespec pace = {0, 20000};
        for (int64_t step = 0;; step++) {
            while (brisk_log_scalar(p, run, "batch_loss", step, (double)step) == BRISK_EFULL)
                nanosleep(&pace, NULL);
            if (step == 999) {
                brisk_logger_flush(lg);
                if (write(pipefd[1], "k", 1) != 1)
                    _exit(11);
            }
            if (step % 64 == 0)
                nanosleep(&pace, NULL);
        }
    }
    close(pipefd[1]);
    char c;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    close(pipefd[0]);
    const struct timespec t = {0, 150 * 1000000L};
    nanosleep(&t, NULL);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    char *train = path_join(dir, "train");
    tb_file f;
    read_run(train, 1, &f);
    check_header(&f, 0);
    /* status is 0 or a torn tail; never a CRC error. */
    assert_true(f.status == 0 || f.status == BRISK_ETRUNCATED);
    assert_true(f.n >= 2 + 1000);
    for (size_t i = 2; i < f.n; i++) {
        assert_int_equal(f.events[i]->step, (int64_t)(i - 2));
        assert_float_equal(f.events[i]->summary->value[0]->simple_value, (float)(i - 2), 0);
    }
    const int64_t last = (int64_t)(f.n - 3);
    printf("killed after %lld complete records (%s tail)\n", (long long)last + 1,
           f.status ? "torn" : "clean");
    size_t old_size = f.size;
    tb_file_free(&f);

    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), BRISK_OK);
    int run;
    assert_int_equal(brisk_logger_add_run(lg, "train", last + 1, &run), BRISK_OK);
    assert_int_equal(brisk_logger_close(lg), BRISK_OK);
    brisk_logger_destroy(lg);
    size_t n;
    char **paths = tb_list_event_files(train, &n);
    assert_int_equal(n, 2);
    struct stat sb;
    int old_idx = -1;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tb_file_read(paths[i], &f), 0);
        if (f.n == 2) {
            check_header(&f, last + 1);
        } else {
            old_idx = i;
            assert_int_equal(stat(paths[i], &sb), 0);
            assert_int_equal((size_t)sb.st_size, old_size); /* never appended to */
        }
        tb_file_free(&f);
    }
    assert_true(old_idx >= 0);
    tb_free_list(paths, n);
    free(train);
    test_rmdir(dir);
}

/* A SIGTERM handler drains and closes through brisk_logger_close_from_signal. */
static brisk_logger *sig_logger;
static volatile sig_atomic_t sig_result = 1;

static void on_sigterm(int sig)
{
    (void)sig;
    sig_result = brisk_logger_close_from_signal(sig_logger, 5000);
}

static void test_signal_handler_drains(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        /* A long flush interval: only the handler's drain can put the records in the file. */
        if (brisk_logger_create(&(brisk_logger_config){.logdir = dir, .flush_secs = 3600},
                                &sig_logger))
            _exit(10);
        int run;
        brisk_logger_add_run(sig_logger, "train", 0, &run);
        brisk_log_producer *p;
        brisk_logger_producer(sig_logger, &p);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigterm;
        sigaction(SIGTERM, &sa, NULL);
        for (int i = 0; i < 500; i++)
            if (brisk_log_scalar(p, run, "batch_loss", i, i) != BRISK_OK)
                _exit(11);
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigprocmask(SIG_BLOCK, &block, &old); /* no signal between the check and the wait */
        if (write(pipefd[1], "r", 1) != 1)
            _exit(12);
        while (sig_result == 1)
            sigsuspend(&old);
        /* The handler closed the files; destroy only joins the finished thread and frees. */
        const int rc = sig_result;
        brisk_logger_destroy(sig_logger);
        _exit(rc == BRISK_OK ? 42 : 43);
    }
    close(pipefd[1]);
    char c;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    close(pipefd[0]);
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    char *train = path_join(dir, "train");
    tb_file f;
    read_run(train, 1, &f);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.n, 2 + 500);
    assert_int_equal(f.events[f.n - 1]->step, 499);
    tb_file_free(&f);
    free(train);
    test_rmdir(dir);
}

/* brisk_log_repair: a torn last record (a few bytes of a header, or a header whose data ends
 * early) is cut, so that the file reads to its end; a file damaged in its middle is reported
 * and left as it is; clean files are untouched. */
static void test_repair_cuts_torn_tails(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), BRISK_OK);
    int train, val;
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &train), BRISK_OK);
    assert_int_equal(brisk_logger_add_run(lg, "validation", 0, &val), BRISK_OK);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), BRISK_OK);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(brisk_log_scalar(p, train, "loss", i, 1.0 / (i + 1)), BRISK_OK);
        assert_int_equal(brisk_log_scalar(p, val, "loss", i, 2.0 / (i + 1)), BRISK_OK);
    }
    char *tpath = strdup(brisk_logger_run_path(lg, train));
    char *vpath = strdup(brisk_logger_run_path(lg, val));
    assert_int_equal(brisk_logger_close(lg), BRISK_OK);
    brisk_logger_destroy(lg);
    size_t tlen, vlen;
    free(test_read_file(tpath, &tlen));
    uint8_t *vbuf = test_read_file(vpath, &vlen);
    /* Nothing to cut in clean files. */
    captured msgs = {.n = 0};
    assert_int_equal(brisk_log_repair(dir, capture, &msgs), 0);
    assert_int_equal(msgs.n, 0);
    /* train: 5 bytes of a next header; validation: a whole header announcing 100 bytes, 7 of
     * them there. */
    FILE *f = fopen(tpath, "ab");
    fwrite("\x01\x02\x03\x04\x05", 1, 5, f);
    fclose(f);
    uint8_t rec[116];
    memset(rec, 'x', sizeof rec);
    brisk_tfrecord_frame(rec + 12, 100, rec);
    f = fopen(vpath, "ab");
    fwrite(rec, 1, 12 + 7, f);
    fclose(f);
    assert_int_equal(brisk_log_repair(dir, capture, &msgs), 2);
    assert_int_equal(msgs.n, 2);
    for (int i = 0; i < 2; i++)
        assert_non_null(strstr(msgs.lines[i], "cut a torn last record"));
    tb_file tf;
    assert_int_equal(tb_file_read(tpath, &tf), 0);
    assert_int_equal(tf.status, 0);
    assert_int_equal(tf.size, tlen);
    tb_file_free(&tf);
    size_t now;
    uint8_t *back = test_read_file(vpath, &now);
    assert_int_equal(now, vlen);
    assert_memory_equal(back, vbuf, vlen);
    free(back);
    /* Damaged in the middle: a flipped length byte of the second record. */
    f = fopen(vpath, "r+b");
    const long second = 16 + (long)(vbuf[0] | vbuf[1] << 8);
    fseek(f, second, SEEK_SET);
    fputc(vbuf[second] ^ 0xff, f);
    fclose(f);
    msgs.n = 0;
    assert_int_equal(brisk_log_repair(dir, capture, &msgs), 0);
    assert_int_equal(msgs.n, 1);
    assert_non_null(strstr(msgs.lines[0], "bad length CRC"));
    assert_non_null(strstr(msgs.lines[0], "left as it is"));
    back = test_read_file(vpath, &now);
    assert_int_equal(now, vlen);
    free(back);
    free(vbuf);
    free(tpath);
    free(vpath);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_records_from_proto),
        cmocka_unit_test(test_reader_torn_and_corrupt),
        cmocka_unit_test(test_every_summary_kind_round_trips),
        cmocka_unit_test(test_flush_and_new_files),
        cmocka_unit_test(test_drops_are_counted_and_reported),
        cmocka_unit_test(test_bad_directory_is_a_clear_error),
        cmocka_unit_test(test_full_disk_is_reported_once),
        cmocka_unit_test(test_vanished_directory),
        cmocka_unit_test(test_sigkill_mid_stream),
        cmocka_unit_test(test_signal_handler_drains),
        cmocka_unit_test(test_repair_cuts_torn_tails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
