/* Float data: NumPy .npy and CSV files (valid ones of every supported kind, and bad ones, each
 * with its error code and a detail naming the file and the field, line or column), the
 * caller's arrays without a copy, per-feature statistics, and regression targets through the
 * trainer (bitwise the same for any thread count) and the checkpoint's per-feature
 * normalisation. */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/trainer.h"

#include <stdlib.h>
#include <string.h>

/* A .npy file of version 1 with this header dict and these data bytes. */
static char *npy_file(const char *name, const char *dict, const void *data, size_t len)
{
    size_t hl = strlen(dict) + 1;
    const size_t total = (10 + hl + 63) / 64 * 64;
    uint8_t *buf = calloc(1, total + len);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)((total - 10) & 0xff);
    buf[9] = (uint8_t)((total - 10) >> 8);
    memset(buf + 10, ' ', total - 10);
    memcpy(buf + 10, dict, strlen(dict));
    buf[total - 1] = '\n';
    if (len)
        memcpy(buf + total, data, len);
    char *path = test_write_file(test_dir, name, buf, total + len);
    free(buf);
    return path;
}

static char *text_file(const char *name, const char *text)
{
    return test_write_file(test_dir, name, text, strlen(text));
}

static void test_npy_dtypes(void **state)
{
    (void)state;
    /* 3 samples of 2 features in each dtype; labels 0, 2, 1 as int64 and as float64. */
    const float f4[6] = {0.5f, -1, 2, 3.25f, 4, 5};
    const double f8[6] = {0.5, -1, 2, 3.25, 4, 5};
    const int32_t i4[6] = {0, -1, 2, 3, 4, 5};
    const int64_t i8[3] = {0, 2, 1};
    const uint8_t u1[6] = {0, 255, 2, 3, 4, 5};
    const double lab8[3] = {0, 2, 1};
    char *y = npy_file("y.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8,
                       sizeof i8);
    char *yd = npy_file("yd.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                        lab8, sizeof lab8);
    struct { const char *dict; const void *data; size_t len; } xs[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", f4, sizeof f4},
        {"{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,2)}", f8, sizeof f8},
        {"{'shape': (3, 2), 'fortran_order': False, 'descr': '<i4'}", i4, sizeof i4},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2), }", u1, sizeof u1},
    };
    for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) {
        char *x = npy_file("x.npy", xs[k].dict, xs[k].data, xs[k].len);
        brisk_dataset ds;
        assert_int_equal(brisk_dataset_load_npy(x, k % 2 ? yd : y, BRISK_TARGET_CLASSES, &ds),
                         BRISK_OK);
        assert_int_equal(ds.n, 3);
        assert_int_equal(ds.d, 2);
        assert_int_equal(ds.classes, 3);
        assert_int_equal(ds.y[1], 2);
        if (k == 3) {
            assert_non_null(ds.x); /* uint8 stays uint8 */
            assert_null(ds.xf);
            assert_int_equal(ds.x[1], 255);
        } else {
            assert_null(ds.x);
            assert_close(ds.xf[0], k == 2 ? 0.0 : 0.5, 0, 0);
            assert_close(ds.xf[1], -1, 0, 0);
            assert_close(ds.xf[3], k == 2 ? 3.0 : 3.25, 0, 0);
        }
        brisk_dataset_free(&ds);
        free(x);
    }
    /* Images (N, C, H, W) and regression targets (N, K). */
    float img[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++)
        img[i] = (float)i;
    const float tgt[4] = {1.5f, -2, 0.25f, 8};
    char *x = npy_file("img.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2, 2), }",
                       img, sizeof img);
    char *t = npy_file("t.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                       tgt, sizeof tgt);
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_load_npy(x, t, BRISK_TARGET_VALUES, &ds), BRISK_OK);
    assert_int_equal(ds.d, 12);
    assert_int_equal(ds.channels, 3);
    assert_int_equal(ds.rows, 2);
    assert_int_equal(ds.cols, 2);
    assert_int_equal(ds.targets, 2);
    assert_null(ds.y);
    assert_close(ds.yf[3], 8, 0, 0);
    assert_close(ds.xf[23], 23, 0, 0);
    brisk_dataset_free(&ds);
    /* The writer's file reads back. */
    char *w = malloc(strlen(test_dir) + 16);
    sprintf(w, "%s/w.npy", test_dir);
    assert_int_equal(brisk_npy_write(w, tgt, 2, 2), BRISK_OK);
    float *back;
    int nd;
    int64_t shape[4];
    assert_int_equal(brisk_npy_read(w, &back, &nd, shape), BRISK_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 2);
    assert_memory_equal(back, tgt, sizeof tgt);
    free(back);
    free(w);
    free(x);
    free(t);
    free(y);
    free(yd);
}

static void test_npy_bad(void **state)
{
    (void)state;
    const float f4[6] = {0, 1, 2, 3, 4, 5};
    const int64_t lab[3] = {0, 1, 1};
    char *y = npy_file("y.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", lab,
                       sizeof lab);
    brisk_dataset ds;
    struct { const char *dict; size_t len; int code; const char *word; } bad[] = {
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2), }", 24, BRISK_EFORMAT, "big-endian"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3, 2), }", 24, BRISK_EFORMAT, "'<c8'"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", 24, BRISK_EFORMAT, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 20, BRISK_ETRUNCATED, "holds 20"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 28, BRISK_EFORMAT, "holds 28"},
        {"{'descr': '<f4', 'fortran_order': False, }", 24, BRISK_EFORMAT, "lacks 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}", 24, BRISK_EFORMAT, "'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, a), }", 24, BRISK_EFORMAT, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24, BRISK_EFORMAT, "1 dimension"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }", 0, BRISK_EEMPTY, "empty"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", 24, BRISK_EOVERFLOW, "overflow"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5), }", 24, BRISK_EFORMAT, "more than 4"},
        {"['descr']", 24, BRISK_EFORMAT, "expected '{'"},
    };
    float pad[7] = {0};
    memcpy(pad, f4, sizeof f4);
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char *x = npy_file("x.npy", bad[k].dict, pad, bad[k].len);
        assert_brisk_error(brisk_dataset_load_npy(x, y, BRISK_TARGET_CLASSES, &ds), bad[k].code,
                     "x.npy", bad[k].word);
        assert_null(ds.xf); /* zeroed on error */
        free(x);
    }
    /* Preamble faults. */
    char *x = text_file("m.npy", "PK\x03\x04 not numpy at all");
    assert_brisk_error(brisk_dataset_load_npy(x, y, BRISK_TARGET_CLASSES, &ds), BRISK_EFORMAT, "m.npy",
                 "magic");
    free(x);
    x = test_write_file(test_dir, "v.npy", "\x93NUMPY\x07\x00\x10\x00{}", 12);
    assert_brisk_error(brisk_dataset_load_npy(x, y, BRISK_TARGET_CLASSES, &ds), BRISK_EFORMAT,
                 "version 7.0");
    free(x);
    x = test_write_file(test_dir, "h.npy", "\x93NUMPY\x01\x00\xff\x7f{}", 12);
    assert_brisk_error(brisk_dataset_load_npy(x, y, BRISK_TARGET_CLASSES, &ds), BRISK_ETRUNCATED,
                 "header length");
    free(x);
    x = test_write_file(test_dir, "e.npy", "", 0);
    assert_brisk_error(brisk_dataset_load_npy(x, y, BRISK_TARGET_CLASSES, &ds), BRISK_EEMPTY, "empty");
    free(x);
    assert_brisk_error(brisk_dataset_load_npy("/nonexistent/x.npy", y, BRISK_TARGET_CLASSES, &ds),
                 BRISK_ENOENT, "/nonexistent/x.npy");
    /* Labels that do not match: count, kind, value. */
    x = npy_file("x.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", f4,
                 sizeof f4);
    const int64_t two[2] = {0, 1};
    char *y2 = npy_file("y2.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                        two, sizeof two);
    assert_brisk_error(brisk_dataset_load_npy(x, y2, BRISK_TARGET_CLASSES, &ds), BRISK_EMISMATCH,
                 "y2.npy", "2 samples", "has 3");
    const double frac[3] = {0, 1.5, 1};
    char *yf = npy_file("yf.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                        frac, sizeof frac);
    assert_brisk_error(brisk_dataset_load_npy(x, yf, BRISK_TARGET_CLASSES, &ds), BRISK_EINVAL,
                 "yf.npy", "sample 1", "1.5", "integers 0..255");
    assert_int_equal(brisk_dataset_load_npy(x, yf, BRISK_TARGET_VALUES, &ds), BRISK_OK);
    assert_int_equal(ds.targets, 1);
    assert_close(ds.yf[1], 1.5, 0, 0);
    brisk_dataset_free(&ds);
    const int64_t big[3] = {0, 300, 1};
    char *yb = npy_file("yb.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                        big, sizeof big);
    assert_brisk_error(brisk_dataset_load_npy(x, yb, BRISK_TARGET_CLASSES, &ds), BRISK_EINVAL, "300");
    float nan[6] = {0, 1, 2, 3, 4, 5};
    nan[4] = NAN;
    char *xn = npy_file("xn.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                        nan, sizeof nan);
    assert_brisk_error(brisk_dataset_load_npy(xn, y, BRISK_TARGET_CLASSES, &ds), BRISK_ENONFINITE,
                 "xn.npy", "element 4");
    assert_brisk_error(brisk_dataset_load_npy(x, y, (brisk_target_kind)7, &ds), BRISK_EINVAL, "kind 7");
    assert_brisk_error(brisk_dataset_load_npy(NULL, y, BRISK_TARGET_CLASSES, &ds), BRISK_EINVAL,
                 "features");
    free(x);
    free(xn);
    free(y);
    free(y2);
    free(yf);
    free(yb);
}

static void test_csv(void **state)
{
    (void)state;
    char *p = text_file("a.csv", "x1, \"x 2\",price,x3\n"
                                 "1,2,10.5,3\r\n"
                                 "\n"
                                 "4, 5 ,-20,6\n"
                                 "\"7\",8,1e2,9");
    brisk_dataset ds;
    const char *cols[] = {"price", "2", "-2"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(brisk_dataset_load_csv(p, cols[k], BRISK_TARGET_VALUES, &ds), BRISK_OK);
        assert_int_equal(ds.n, 3);
        assert_int_equal(ds.d, 3);
        assert_int_equal(ds.targets, 1);
        assert_close(ds.yf[0], 10.5, 0, 0);
        assert_close(ds.yf[2], 100, 0, 0);
        assert_close(ds.xf[3], 4, 0, 0);
        assert_close(ds.xf[5], 6, 0, 0);
        assert_close(ds.xf[6], 7, 0, 0);
        brisk_dataset_free(&ds);
    }
    /* A feature column as the label; "x 2" by its quoted name. */
    assert_int_equal(brisk_dataset_load_csv(p, "x 2", BRISK_TARGET_CLASSES, &ds), BRISK_OK);
    assert_int_equal(ds.classes, 9);
    assert_int_equal(ds.y[1], 5);
    assert_close(ds.xf[1], 10.5, 0, 0);
    brisk_dataset_free(&ds);
    assert_brisk_error(brisk_dataset_load_csv(p, "price", BRISK_TARGET_CLASSES, &ds), BRISK_EINVAL,
                 "a.csv", "'price'", "sample 0", "10.5");
    assert_brisk_error(brisk_dataset_load_csv(p, "cost", BRISK_TARGET_VALUES, &ds), BRISK_EINVAL,
                 "a.csv", "'cost'", "0..3");
    assert_brisk_error(brisk_dataset_load_csv(p, "4", BRISK_TARGET_VALUES, &ds), BRISK_EINVAL, "'4'");
    struct { const char *text; int code; const char *w1, *w2; } bad[] = {
        {"a,b\n1,2\n3\n", BRISK_EFORMAT, "line 3", "has 1 field,"},
        {"a,b\n1,2\n3,4,5\n", BRISK_EFORMAT, "line 3", "has 3 fields, the header 2"},
        {"a,b\n1,2\n\n3,x7\n", BRISK_EFORMAT, "line 4, column 2 ('b')", "'x7'"},
        {"a,b\n1,nan\n", BRISK_EFORMAT, "line 2, column 2", "'nan'"},
        {"a,b\n1,1e400\n", BRISK_EFORMAT, "line 2", "finite"},
        {"a,b\n1,\"2\n", BRISK_EFORMAT, "line 2, column 2", "not closed"},
        {"a,b\n1,\"2\"x\n", BRISK_EFORMAT, "line 2, column 2", "after a quoted"},
        {"a,b\n", BRISK_EEMPTY, "no rows", "c.csv"},
        {"", BRISK_EEMPTY, "empty", "c.csv"},
        {"a\n1\n", BRISK_EFORMAT, "line 1", "1 column:"},
        {"a,b\n1,\n", BRISK_EFORMAT, "line 2, column 2", "''"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char *c = text_file("c.csv", bad[k].text);
        assert_brisk_error(brisk_dataset_load_csv(c, "a", BRISK_TARGET_VALUES, &ds), bad[k].code,
                     bad[k].w1, bad[k].w2);
        free(c);
    }
    char *c = test_write_file(test_dir, "z.csv", "a,b\n1,2\0\n", 9);
    assert_brisk_error(brisk_dataset_load_csv(c, "a", BRISK_TARGET_VALUES, &ds), BRISK_EFORMAT,
                 "line 2", "NUL");
    free(c);
    assert_brisk_error(brisk_dataset_load_csv("/nonexistent.csv", "a", BRISK_TARGET_VALUES, &ds),
                 BRISK_ENOENT, "/nonexistent.csv");
    assert_brisk_error(brisk_dataset_load_csv(p, "", BRISK_TARGET_VALUES, &ds), BRISK_EINVAL,
                 "label column");
    free(p);
}

/* Hardening (#18): a header that passes the 1 MiB cap says so; duplicate column names are an
 * error; huge column counts are reported as they are; CR-only line ends load; a byte-order
 * mark in the middle of a file shows as U+FEFF; one at the start does not hide the label. */
static void test_csv_npy_messages(void **state)
{
    (void)state;
    brisk_dataset ds;
    /* A valid .npy whose header (2 MiB of padding) passes the cap. */
    const size_t big = (size_t)2 << 20;
    uint8_t *buf = calloc(1, 12 + big + 8);
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (uint8_t)(big & 0xff);
    buf[9] = (uint8_t)(big >> 8 & 0xff);
    buf[10] = (uint8_t)(big >> 16 & 0xff);
    buf[11] = (uint8_t)(big >> 24);
    memset(buf + 12, ' ', big);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
    memcpy(buf + 12, dict, strlen(dict));
    buf[12 + big - 1] = '\n';
    char *x = test_write_file(test_dir, "bighdr.npy", buf, 12 + big + 8);
    free(buf);
    float *data;
    int ndim;
    int64_t shape[4];
    assert_brisk_error(brisk_npy_read(x, &data, &ndim, shape), BRISK_EFORMAT, "bighdr.npy",
                       "2097152 bytes", "limit of 1048576");
    free(x);
    /* Two columns with the label's name, and two feature columns with one name. */
    char *c = text_file("dup.csv", "y,a,y\n1,2,3\n");
    assert_brisk_error(brisk_dataset_load_csv(c, "y", BRISK_TARGET_CLASSES, &ds), BRISK_EFORMAT,
                       "dup.csv", "columns 1 and 3 are both named 'y'");
    free(c);
    c = text_file("dup2.csv", "y,a,b,a\n1,2,3,4\n");
    assert_brisk_error(brisk_dataset_load_csv(c, "y", BRISK_TARGET_CLASSES, &ds), BRISK_EFORMAT,
                       "columns 2 and 4 are both named 'a'");
    assert_brisk_error(brisk_dataset_load_features(c, &ds), BRISK_EFORMAT, "both named 'a'");
    free(c);
    /* 70,000 and 1,000,000 columns are reported as such. */
    static const int wide[] = {70000, 1000000};
    for (int k = 0; k < 2; k++) {
        char *t = malloc((size_t)wide[k] * 8 + 16);
        size_t n = 0;
        for (int i = 0; i < wide[k]; i++)
            n += (size_t)sprintf(t + n, "%sc%d", i ? "," : "", i);
        t[n++] = '\n';
        t[n] = '\0';
        c = text_file("wide.csv", t);
        char words[64];
        snprintf(words, sizeof words, "%d columns", wide[k]);
        assert_brisk_error(brisk_dataset_load_csv(c, "c0", BRISK_TARGET_VALUES, &ds),
                           BRISK_EFORMAT, words, "at most 65536");
        free(c);
        free(t);
    }
    /* Old Mac line ends, with and without a final one; and \r\n. */
    static const char *const crs[] = {"y,a\r0,1\r1,2\r", "y,a\r0,1\r1,2", "y,a\r\n0,1\r\n1,2\r\n"};
    for (int k = 0; k < 3; k++) {
        c = text_file("cr.csv", crs[k]);
        assert_int_equal(brisk_dataset_load_csv(c, "y", BRISK_TARGET_CLASSES, &ds), BRISK_OK);
        assert_int_equal(ds.n, 2);
        assert_int_equal(ds.d, 1);
        assert_int_equal(ds.y[1], 1);
        assert_close(ds.xf[1], 2, 0, 0);
        brisk_dataset_free(&ds);
        free(c);
    }
    /* A byte-order mark first, with the label column first. */
    c = text_file("bom.csv", "\xEF\xBB\xBFlabel,a\n0,1\n1,2\n");
    assert_int_equal(brisk_dataset_load_csv(c, "label", BRISK_TARGET_CLASSES, &ds), BRISK_OK);
    assert_int_equal(ds.n, 2);
    brisk_dataset_free(&ds);
    free(c);
    /* One in the middle (two files concatenated): shown, not invisible. */
    c = text_file("bom2.csv", "label,a\n0,1\n\xEF\xBB\xBF" "1,2\n");
    assert_brisk_error(brisk_dataset_load_csv(c, "label", BRISK_TARGET_CLASSES, &ds),
                       BRISK_EFORMAT, "line 3, column 1 ('label')", "'<U+FEFF>1'");
    free(c);
    c = text_file("ctl.csv", "label,a\n0,1\x01\n");
    assert_brisk_error(brisk_dataset_load_csv(c, "label", BRISK_TARGET_CLASSES, &ds),
                       BRISK_EFORMAT, "'1\\x01'");
    free(c);
}

static void test_wrap_and_stats(void **state)
{
    (void)state;
    float x[8] = {1, 10, 3, 10, 5, 10, 7, 10};
    const uint8_t lab[4] = {0, 1, 1, 2};
    const float tgt[4] = {1, 2, 3, 4};
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_wrap(4, 2, NULL, x, lab, NULL, 0, &ds), BRISK_OK);
    assert_ptr_equal(ds.xf, x); /* no copy */
    assert_int_equal(ds.classes, 3);
    const int32_t idx[4] = {0, 1, 2, 3};
    float mean[2], std[2], gm, gs;
    assert_int_equal(brisk_dataset_feature_stats(&ds, idx, 4, mean, std), BRISK_OK);
    assert_close(mean[0], 4, 0, 0);
    assert_close(std[0], sqrt(5.0), 1e-7, 0);
    assert_close(mean[1], 10, 0, 0);
    assert_close(std[1], 1, 0, 0); /* constant feature */
    const int32_t far[1] = {4};
    assert_brisk_error(brisk_dataset_feature_stats(&ds, far, 1, mean, std), BRISK_EINVAL,
                 "idx[0] = 4");
    assert_brisk_error(brisk_dataset_feature_stats(NULL, idx, 4, mean, std), BRISK_EINVAL,
                 "ds is NULL");
    assert_brisk_error(brisk_dataset_feature_stats(&ds, idx, 4, NULL, std), BRISK_EINVAL, "NULL");
    brisk_dataset_stats(&ds, idx, 4, &gm, &gs);
    assert_close(gm, 7, 0, 0);
    float out[8];
    brisk_dataset_gather(&ds, idx + 2, 2, mean, std, 2, out, NULL);
    assert_close(out[0], 1 / sqrt(5.0), 1e-6, 0);
    assert_close(out[1], 0, 0, 0);
    uint8_t yo[2];
    const float one = 1.0f, two = 2.0f;
    brisk_dataset_gather(&ds, idx + 1, 2, &one, &two, 1, out, yo);
    assert_close(out[0], 1, 0, 0);
    assert_int_equal(yo[1], 1);
    brisk_dataset_gather(&ds, idx + 1, 2, NULL, NULL, 0, out, NULL);
    assert_close(out[0], 3, 0, 0);
    brisk_dataset_free(&ds); /* must not free the caller's arrays */
    assert_close(x[0], 1, 0, 0);
    assert_int_equal(lab[3], 2);
    const int shape[3] = {1, 2, 1};
    assert_int_equal(brisk_dataset_wrap(4, 2, shape, x, NULL, tgt, 1, &ds), BRISK_OK);
    assert_int_equal(ds.targets, 1);
    assert_int_equal(ds.rows, 2);
    brisk_dataset_free(&ds);
    assert_brisk_error(brisk_dataset_wrap(4, 2, NULL, x, lab, tgt, 1, &ds), BRISK_EINVAL, "either");
    assert_brisk_error(brisk_dataset_wrap(4, 2, NULL, x, NULL, NULL, 1, &ds), BRISK_EINVAL, "either");
    assert_brisk_error(brisk_dataset_wrap(0, 2, NULL, x, lab, NULL, 0, &ds), BRISK_EINVAL, "n = 0");
    assert_brisk_error(brisk_dataset_wrap(4, -1, NULL, x, lab, NULL, 0, &ds), BRISK_EINVAL, "d = -1");
    assert_brisk_error(brisk_dataset_wrap(4, 2, NULL, NULL, lab, NULL, 0, &ds), BRISK_EINVAL,
                 "x is NULL");
    assert_brisk_error(brisk_dataset_wrap(4, 2, NULL, x, NULL, tgt, 0, &ds), BRISK_EINVAL,
                 "n_targets = 0");
    const int bad_shape[3] = {1, 3, 1};
    assert_brisk_error(brisk_dataset_wrap(4, 2, bad_shape, x, lab, NULL, 0, &ds), BRISK_EINVAL,
                 "(1, 3, 1)");
    x[5] = INFINITY;
    assert_brisk_error(brisk_dataset_wrap(4, 2, NULL, x, lab, NULL, 0, &ds), BRISK_ENONFINITE,
                 "sample 2", "feature 1");
}

/* An MLP trained with mse and Adam at a constant rate, one process. */
static brisk_trainer_config mse_config(const char *widths, brisk_act act, float lr, int batch,
                                       int micro_batch, int threads)
{
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_mlp(&cfg.model, widths, act), BRISK_OK);
    cfg.model.loss = BRISK_LOSS_MSE;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, lr, 0, 0, 0, 0, 0};
    cfg.batch = batch;
    cfg.micro_batch = micro_batch;
    cfg.threads = threads;
    cfg.seed = 3;
    return cfg;
}

/* y = x0 - 2 x1 + 0.5 x2 on inputs of very different scales; returns the trained FNV. */
static uint64_t regression_run(int threads, double *first_loss, double *last_loss,
                               int set_norm)
{
    enum { N = 512, D = 3 };
    static float x[N * D], y[N];
    for (int i = 0; i < N; i++) {
        const float a = (float)((i * 37) % 101) / 101.0f, b = (float)((i * 53) % 97) / 97.0f,
                    c = (float)((i * 71) % 89) / 89.0f;
        x[i * D] = a * 1000.0f; /* scale 1000 */
        x[i * D + 1] = b;
        x[i * D + 2] = c - 0.5f;
        y[i] = a - 2.0f * b + 0.5f * c;
    }
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_wrap(N, D, NULL, x, NULL, y, 1, &ds), BRISK_OK);
    brisk_trainer_config cfg = mse_config("3-16-1", BRISK_ACT_TANH, 1e-2f, 64, 16, threads);
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    int32_t idx[N];
    for (int i = 0; i < N; i++)
        idx[i] = i;
    float mean[D], std[D];
    assert_int_equal(brisk_dataset_feature_stats(&ds, idx, N, mean, std), BRISK_OK);
    if (set_norm)
        assert_int_equal(brisk_trainer_set_norm(t, mean, std, D), BRISK_OK);
    brisk_metrics m;
    assert_int_equal(brisk_trainer_evaluate(t, &ds, idx, N, &m), BRISK_OK);
    *first_loss = brisk_metrics_loss(&m);
    assert_int_equal(m.correct, 0);
    for (int e = 0; e < 30; e++)
        for (int b = 0; b < N / 64; b++) {
            brisk_step_stats st;
            assert_int_equal(brisk_trainer_step(t, &ds, idx + b * 64, 64, &st), BRISK_OK);
        }
    assert_int_equal(brisk_trainer_evaluate(t, &ds, idx, N, &m), BRISK_OK);
    *last_loss = brisk_metrics_loss(&m);
    float pred[4];
    assert_int_equal(brisk_trainer_predict(t, &ds, idx, 4, pred, NULL), BRISK_OK);
    for (int i = 0; i < 4; i++)
        assert_close(pred[i], y[i], 0, 0.15);
    const uint64_t h = brisk_model_checksum(brisk_trainer_model(t), brisk_trainer_params(t));
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    return h;
}

static void test_regression(void **state)
{
    (void)state;
    double l0, l1;
    const uint64_t h1 = regression_run(1, &l0, &l1, 1);
    assert_true(l1 < 0.01 * l0); /* learnt: the MSE fell a hundredfold */
    assert_true(l1 < 2e-3);
    for (int T = 2; T <= 3; T++) {
        double a, b;
        assert_true(regression_run(T, &a, &b, 1) == h1);
        assert_true(b == l1);
    }
}

static void test_regression_errors(void **state)
{
    (void)state;
    float x[8] = {0}, y[8] = {0};
    uint8_t lab[4] = {0, 1, 0, 1};
    brisk_dataset reg, cls;
    assert_int_equal(brisk_dataset_wrap(4, 2, NULL, x, NULL, y, 2, &reg), BRISK_OK);
    assert_int_equal(brisk_dataset_wrap(4, 2, NULL, x, lab, NULL, 0, &cls), BRISK_OK);
    brisk_trainer_config cfg = mse_config("2-4-1", BRISK_ACT_RELU, 1e-3f, 4, 0, 1);
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    const int32_t idx[4] = {0, 1, 2, 3};
    brisk_step_stats st;
    assert_brisk_error(brisk_trainer_step(t, &reg, idx, 4, &st), BRISK_EINVAL,
                 "2 regression targets", "has 1");
    const float fm[2] = {0, 0}, fs[2] = {1, 0};
    assert_brisk_error(brisk_trainer_set_norm(t, fm, fs, 2), BRISK_EINVAL, "feature 1");
    const float fs1[2] = {1, 1};
    assert_brisk_error(brisk_trainer_set_norm(t, fm, NULL, 2), BRISK_EINVAL, "both arrays");
    assert_brisk_error(brisk_trainer_set_norm(t, fm, fs1, 3), BRISK_EINVAL, "count 3",
                       "or 2 (one per feature)");
    assert_brisk_error(brisk_trainer_set_norm(t, fm, fs1, 0), BRISK_EINVAL, "count 0");
    const float bad_std = -1;
    assert_brisk_error(brisk_trainer_set_norm(t, fm, &bad_std, 1), BRISK_EINVAL, "value 0",
                       "std -1");
    assert_int_equal(brisk_trainer_set_norm(t, fm, fs1, 2), BRISK_OK);
    assert_int_equal(brisk_trainer_step(t, &cls, idx, 4, &st), BRISK_OK);
    const float *pm, *ps;
    assert_int_equal(brisk_trainer_norm(t, &pm, &ps), 2);
    assert_memory_equal(pm, fm, sizeof fm);
    assert_int_equal(brisk_trainer_set_norm(t, NULL, NULL, 0), BRISK_OK);
    assert_int_equal(brisk_trainer_norm(t, &pm, &ps), 0);
    assert_null(pm);
    brisk_trainer_destroy(t);
    /* ce cannot take float targets. */
    assert_int_equal(brisk_model_config_mlp(&cfg.model, "2-4-2", BRISK_ACT_RELU), BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    assert_brisk_error(brisk_trainer_step(t, &reg, idx, 4, &st), BRISK_EINVAL, "mse or bce",
                 "not ce");
    brisk_trainer_destroy(t);
    brisk_dataset_free(&reg);
    brisk_dataset_free(&cls);
}

static void test_checkpoint_feature_norm(void **state)
{
    (void)state;
    brisk_model_config mc;
    memset(&mc, 0, sizeof mc);
    assert_int_equal(brisk_model_config_mlp(&mc, "3-4-2", BRISK_ACT_RELU), BRISK_OK);
    mc.loss = BRISK_LOSS_MSE;
    brisk_model *m;
    assert_int_equal(brisk_model_create(&mc, &m), BRISK_OK);
    const size_t len = brisk_model_slab_len(m);
    float *p = calloc(len, sizeof *p);
    const float fm[3] = {1.5f, -2e-7f, 1000.25f}, fs[3] = {0.1f, 3e8f, 1};
    brisk_ckpt_position pos = {.seed = 1, .norm_count = 3, .norm_mean = fm, .norm_std = fs};
    char *path = malloc(strlen(test_dir) + 32);
    sprintf(path, "%s/f.safetensors", test_dir);
    if (brisk_checkpoint_save(path, m, p, p, p, NULL, &pos, NULL) != BRISK_OK)
        fail_msg("%s", brisk_error_detail());
    brisk_checkpoint *c;
    assert_int_equal(brisk_checkpoint_load(path, &c), BRISK_OK);
    assert_int_equal(c->pos.norm_count, 3);
    assert_memory_equal(c->pos.norm_mean, fm, sizeof fm); /* bitwise */
    assert_memory_equal(c->pos.norm_std, fs, sizeof fs);
    brisk_checkpoint_free(c);
    /* One mean and std for every feature. */
    pos.norm_count = 1;
    assert_int_equal(brisk_checkpoint_save(path, m, p, p, p, NULL, &pos, NULL), BRISK_OK);
    assert_int_equal(brisk_checkpoint_load(path, &c), BRISK_OK);
    assert_int_equal(c->pos.norm_count, 1);
    assert_memory_equal(c->pos.norm_mean, fm, sizeof(float));
    assert_memory_equal(c->pos.norm_std, fs, sizeof(float));
    brisk_checkpoint_free(c);
    pos.norm_count = 0;
    assert_int_equal(brisk_checkpoint_save(path, m, p, p, p, NULL, &pos, NULL), BRISK_OK);
    assert_int_equal(brisk_checkpoint_load(path, &c), BRISK_OK);
    assert_int_equal(c->pos.norm_count, 0);
    assert_null(c->pos.norm_mean);
    brisk_checkpoint_free(c);
    free(path);
    free(p);
    brisk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_dtypes),
        cmocka_unit_test(test_npy_bad),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_csv_npy_messages),
        cmocka_unit_test(test_wrap_and_stats),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_regression_errors),
        cmocka_unit_test(test_checkpoint_feature_norm),
    };
    return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
