/* Helpers shared by Brisk's CMocka tests. */
#ifndef BRISK_TEST_UTIL_H
#define BRISK_TEST_UTIL_H

#include <setjmp.h> /* cmocka.h needs these first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Fails with both values when |got - want| > atol + rtol |want|. */
#define assert_close(got, want, rtol, atol)                                                    \
    do {                                                                                       \
        double g_ = (double)(got), w_ = (double)(want);                                        \
        if (!(fabs(g_ - w_) <= (atol) + (rtol) * fabs(w_))) {                                  \
            print_error("%s = %.9g, expected %s = %.9g (rtol %g, atol %g)\n", #got, g_, #want, \
                        w_, (double)(rtol), (double)(atol));                                   \
            fail();                                                                            \
        }                                                                                      \
    } while (0)

/* The call fails with code and a detail containing each of the words (brisk/error.h). */
#define assert_brisk_error(call, code, ...)                                                          \
    do {                                                                                       \
        assert_int_equal((call), (code));                                                      \
        const char *words_[] = {__VA_ARGS__};                                                  \
        for (size_t w_ = 0; w_ < sizeof words_ / sizeof *words_; w_++)                         \
            if (!strstr(brisk_error_detail(), words_[w_])) {                                   \
                print_error("detail '%s' lacks '%s'\n", brisk_error_detail(), words_[w_]);     \
                fail();                                                                        \
            }                                                                                  \
    } while (0)

/* A fresh directory under $TMPDIR (or /tmp) for one test; removed by test_rmdir. */
char *test_mkdtemp(void);
/* A group fixture: test_dir is a fresh directory while the group runs
 * (cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown)). */
extern char *test_dir;
int test_dir_setup(void **state);
int test_dir_teardown(void **state);
void test_rmdir(char *dir); /* removes dir and everything in it, and frees the string */
/* The whole file (malloc'd) and its size in *len; fails the test when unreadable. */
uint8_t *test_read_file(const char *path, size_t *len);
/* Bytes from hex digits (spaces ignored) into out; returns how many. */
size_t test_from_hex(const char *hex, uint8_t *out);
/* Writes len bytes to dir/name and returns the path (malloc'd). */
char *test_write_file(const char *dir, const char *name, const void *data, size_t len);

#endif
