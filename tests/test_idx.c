/* The IDX reader on valid files (plain and gzip) and on generated bad ones. Each bad file gives
 * its own error code, and a detail naming the file and what was wrong. */
#include "test_util.h"

#include "brisk/data.h"
#include "brisk/error.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define N 5
#define ROWS 3
#define COLS 4

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An images file: magic 0x00000803, count, rows, cols, then pixel i = i * 7 mod 256. */
static size_t make_images(uint8_t *buf, uint32_t magic, uint32_t count, uint32_t rows,
                          uint32_t cols, size_t data_len)
{
    put_be32(buf, magic);
    put_be32(buf + 4, count);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    for (size_t i = 0; i < data_len; i++)
        buf[16 + i] = (uint8_t)(i * 7);
    return 16 + data_len;
}

static size_t make_labels(uint8_t *buf, uint32_t count, size_t data_len)
{
    put_be32(buf, 0x00000801);
    put_be32(buf + 4, count);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + i] = (uint8_t)(i % 3);
    return 8 + data_len;
}

static char *write_gz(const char *name, const void *data, size_t len)
{
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/%s", test_dir, name);
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(gz), Z_OK);
    return path;
}

static char *good_labels(void)
{
    uint8_t buf[64];
    return test_write_file(test_dir, "labels-idx1", buf, make_labels(buf, N, N));
}

/* Loads images_path with good labels and checks the error code and detail. */
static void expect_error(const char *images_path, const char *labels_path, int code,
                         const char *detail_part)
{
    brisk_dataset ds;
    int err = brisk_idx_load(images_path, labels_path, &ds);
    const char *detail = brisk_error_detail();
    if (err != code || !strstr(detail, detail_part) ||
        !(strstr(detail, images_path) || strstr(detail, labels_path))) {
        print_error("got %d (%s) '%s'; expected %d (%s) with '%s' and the file name\n", err,
                    brisk_strerror(err), detail, code, brisk_strerror(code), detail_part);
        fail();
    }
    assert_null(ds.x);
    assert_null(ds.y);
}

static void check_good(const brisk_dataset *ds)
{
    assert_int_equal(ds->n, N);
    assert_int_equal(ds->rows, ROWS);
    assert_int_equal(ds->cols, COLS);
    assert_int_equal(ds->d, ROWS * COLS);
    assert_int_equal(ds->classes, 3);
    for (int i = 0; i < N * ROWS * COLS; i++)
        assert_int_equal(ds->x[i], (uint8_t)(i * 7));
    for (int i = 0; i < N; i++)
        assert_int_equal(ds->y[i], i % 3);
}

static void test_valid_plain_and_gzip(void **state)
{
    (void)state;
    uint8_t img[256], lab[64];
    size_t il = make_images(img, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    size_t ll = make_labels(lab, N, N);
    char *ip = test_write_file(test_dir, "train-images-idx3-ubyte", img, il);
    char *lp = test_write_file(test_dir, "train-labels-idx1-ubyte", lab, ll);
    char *igz = write_gz("t10k-images-idx3-ubyte.gz", img, il);
    char *lgz = write_gz("t10k-labels-idx1-ubyte.gz", lab, ll);
    brisk_dataset ds;
    assert_int_equal(brisk_idx_load(ip, lp, &ds), BRISK_OK);
    check_good(&ds);
    brisk_dataset_free(&ds);
    assert_int_equal(brisk_idx_load(igz, lgz, &ds), BRISK_OK);
    check_good(&ds);
    brisk_dataset_free(&ds);
    /* A directory, plain names for train and .gz names for t10k. */
    assert_int_equal(brisk_dataset_load_dir(test_dir, "train", &ds), BRISK_OK);
    check_good(&ds);
    brisk_dataset_free(&ds);
    assert_int_equal(brisk_dataset_load_dir(test_dir, "t10k", &ds), BRISK_OK);
    check_good(&ds);
    brisk_dataset_free(&ds);
    assert_int_equal(brisk_dataset_load_dir(test_dir, "missing", &ds), BRISK_ENOENT);
    assert_non_null(strstr(brisk_error_detail(), "missing-images-idx3-ubyte"));
    free(ip);
    free(lp);
    free(igz);
    free(lgz);
}

static void test_truncated(void **state)
{
    (void)state;
    uint8_t img[256];
    char *lp = good_labels();
    size_t il = make_images(img, 0x803, N, ROWS, COLS, N * ROWS * COLS);
    char *p = test_write_file(test_dir, "short-data", img, il - 3);
    expect_error(p, lp, BRISK_ETRUNCATED, "file ends early");
    free(p);
    p = test_write_file(test_dir, "short-header", img, 10);
    expect_error(p, lp, BRISK_ETRUNCATED, "dimension sizes");
    free(p);
    free(lp);
}

static void test_bad_magic_type_and_rank(void **state)
{
    (void)state;
    uint8_t img[256];
    char *lp = good_labels();
    size_t il = make_images(img, 0x12345678, N, ROWS, COLS, N * ROWS * COLS);
    char *p = test_write_file(test_dir, "bad-magic", img, il);
    expect_error(p, lp, BRISK_EFORMAT, "'magic'");
    free(p);
    il = make_images(img, 0x00000D03, N, ROWS, COLS, N * ROWS * COLS); /* 0x0D: float */
    p = test_write_file(test_dir, "bad-type", img, il);
    expect_error(p, lp, BRISK_EFORMAT, "data type 0x0d");
    free(p);
    /* A labels file where images are expected. */
    expect_error(lp, lp, BRISK_EFORMAT, "1 dimensions, expected 3");
    free(lp);
}

static void test_count_mismatch(void **state)
{
    (void)state;
    uint8_t img[256], lab[64];
    char *ip = test_write_file(test_dir, "img", img,
                               make_images(img, 0x803, N, ROWS, COLS, N * ROWS * COLS));
    char *lp = test_write_file(test_dir, "lab4", lab, make_labels(lab, N - 1, N - 1));
    expect_error(ip, lp, BRISK_EMISMATCH, "holds 5 images but");
    assert_non_null(strstr(brisk_error_detail(), lp)); /* both files named */
    free(ip);
    free(lp);
}

static void test_overflowing_and_absurd_dimensions(void **state)
{
    (void)state;
    uint8_t img[256];
    char *lp = good_labels();
    size_t il = make_images(img, 0x803, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 8);
    char *p = test_write_file(test_dir, "overflow", img, il);
    expect_error(p, lp, BRISK_EOVERFLOW, "overflows");
    free(p);
    /* Does not overflow, but claims 1.6 TB in a 24-byte file: refused before allocating. */
    il = make_images(img, 0x803, 0x7FFFFFFFu, 28, 28, 8);
    p = test_write_file(test_dir, "huge", img, il);
    expect_error(p, lp, BRISK_ETRUNCATED, "the header declares");
    free(p);
    char *gz = write_gz("huge.gz", img, il);
    expect_error(gz, lp, BRISK_ETRUNCATED, "more than a");
    free(gz);
    il = make_images(img, 0x803, N, 0, COLS, 0);
    p = test_write_file(test_dir, "zero-rows", img, il);
    expect_error(p, lp, BRISK_EFORMAT, "field 'rows' is 0");
    free(p);
    free(lp);
}

static void test_gzip_cut_short_and_corrupt(void **state)
{
    (void)state;
    uint8_t img[4096];
    char *lp = good_labels();
    /* Enough data that the deflate stream is longer than its header. */
    size_t il = make_images(img, 0x803, 80, ROWS, COLS, 80 * ROWS * COLS);
    char *gz = write_gz("full.gz", img, il);
    size_t len;
    uint8_t *bytes = test_read_file(gz, &len);
    char *cut = test_write_file(test_dir, "cut.gz", bytes, len / 2);
    expect_error(cut, lp, BRISK_ETRUNCATED, "gzip stream ends early");
    bytes[len - 6] ^= 0x55; /* the trailer's CRC-32 */
    char *bad = test_write_file(test_dir, "badcrc.gz", bytes, len);
    expect_error(bad, lp, BRISK_EFORMAT, "corrupt gzip data");
    free(bytes);
    free(gz);
    free(cut);
    free(bad);
    free(lp);
}

/* A gzip member must end with its trailer (CRC-32 and length, 8 bytes), and nothing may
 * follow the last member. Concatenated members are valid gzip and load. */
static void test_gzip_trailer_and_trailing_bytes(void **state)
{
    (void)state;
    /* Big enough (and random enough) that the compressed stream outgrows zlib's buffers, as
     * Fashion-MNIST's files do: with small files a missing trailer happened to be noticed. */
    enum { BIG = 400, SIDE = 28 };
    uint8_t *img = malloc(16 + BIG * SIDE * SIDE), lab[8 + BIG];
    assert_non_null(img);
    const size_t il = make_images(img, 0x803, BIG, SIDE, SIDE, BIG * SIDE * SIDE);
    for (size_t i = 16; i < il; i++)
        img[i] = (uint8_t)((i * 2654435761u) >> 13);
    char *lp = test_write_file(test_dir, "big-labels", lab, make_labels(lab, BIG, BIG));
    char *gz = write_gz("whole.gz", img, il);
    size_t len;
    uint8_t *bytes = test_read_file(gz, &len);
    for (size_t cut = 1; cut <= 9; cut++) {
        char name[64];
        snprintf(name, sizeof name, "cut%zu.gz", cut);
        char *p = test_write_file(test_dir, name, bytes, len - cut);
        expect_error(p, lp, BRISK_ETRUNCATED, "ends early");
        free(p);
    }
    /* A corrupted data byte with the trailer cut: nothing left to catch it but the trailer. */
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    memcpy(bad, bytes, len);
    bad[len - 12] ^= 0x01;
    char *p = test_write_file(test_dir, "corrupt-cut.gz", bad, len - 8);
    brisk_dataset ds;
    assert_true(brisk_idx_load(p, lp, &ds) < 0);
    assert_null(ds.x);
    free(p);
    free(bad);
    /* Garbage after the stream. */
    uint8_t *more = malloc(len + 5);
    assert_non_null(more);
    memcpy(more, bytes, len);
    memcpy(more + len, "junk!", 5);
    p = test_write_file(test_dir, "trailing.gz", more, len + 5);
    expect_error(p, lp, BRISK_EFORMAT, "after the gzip stream");
    free(p);
    /* Two members, the payload split between them: valid gzip, and it loads. */
    char *a = write_gz("part1.gz", img, 10), *b = write_gz("part2.gz", img + 10, il - 10);
    size_t la, lb;
    uint8_t *ba = test_read_file(a, &la), *bb = test_read_file(b, &lb);
    uint8_t *both = malloc(la + lb);
    assert_non_null(both);
    memcpy(both, ba, la);
    memcpy(both + la, bb, lb);
    p = test_write_file(test_dir, "two-members.gz", both, la + lb);
    assert_int_equal(brisk_idx_load(p, lp, &ds), BRISK_OK);
    assert_int_equal(ds.n, BIG);
    assert_memory_equal(ds.x, img + 16, BIG * SIDE * SIDE);
    brisk_dataset_free(&ds);
    free(p);
    free(a);
    free(b);
    free(ba);
    free(bb);
    free(both);
    free(more);
    free(bytes);
    free(gz);
    free(lp);
    free(img);
}

static void test_empty_and_trailing(void **state)
{
    (void)state;
    uint8_t img[256];
    char *lp = good_labels();
    char *p = test_write_file(test_dir, "empty", img, 0);
    expect_error(p, lp, BRISK_EEMPTY, "file is empty");
    free(p);
    char *gz = write_gz("empty.gz", img, 0);
    expect_error(gz, lp, BRISK_EEMPTY, "no data");
    free(gz);
    size_t il = make_images(img, 0x803, N, ROWS, COLS, N * ROWS * COLS + 2);
    p = test_write_file(test_dir, "trailing", img, il);
    expect_error(p, lp, BRISK_EFORMAT, "2 unexpected bytes");
    free(p);
    free(lp);
}

static void test_missing_file(void **state)
{
    (void)state;
    char *lp = good_labels();
    char path[4200];
    snprintf(path, sizeof path, "%s/does-not-exist", test_dir);
    expect_error(path, lp, BRISK_ENOENT, "cannot open");
    free(lp);
}

static void test_fashion_mnist_if_installed(void **state)
{
    (void)state;
    const char *d = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(d, &st) != 0)
        skip();
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_load_dir(d, "t10k", &ds), BRISK_OK);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    assert_int_equal(ds.classes, 10);
    brisk_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_plain_and_gzip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_magic_type_and_rank),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_overflowing_and_absurd_dimensions),
        cmocka_unit_test(test_gzip_cut_short_and_corrupt),
        cmocka_unit_test(test_gzip_trailer_and_trailing_bytes),
        cmocka_unit_test(test_empty_and_trailing),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fashion_mnist_if_installed),
    };
    return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
