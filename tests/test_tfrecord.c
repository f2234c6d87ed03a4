/* CRC-32C and TFRecord framing against the check values and the two golden records in
 * ../shared/docs/TENSORBOARD.md (records TensorBoard 2.21 read back), byte for byte. */
#include "test_util.h"

#include "brisk/tfrecord.h"

#include <stdlib.h>
#include <string.h>

static void test_crc_check_values(void **state)
{
    (void)state;
    assert_int_equal(brisk_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(brisk_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    static const char tv[] = "\x1a\x11" "CRC test, one two";
    assert_int_equal(sizeof tv - 1, 19);
    assert_int_equal(brisk_crc32c_mask(brisk_crc32c(0, tv, 19)), 0x5794D08Au);
    assert_int_equal(brisk_crc32c(0, "", 0), 0);
}

static void test_crc_paths_and_chaining_agree(void **state)
{
    (void)state;
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    /* Every length and split point exercises the 8-byte and 1-byte tails. */
    for (size_t n = 0; n <= 100; n++) {
        const uint32_t whole = brisk_crc32c(0, buf + 3, n);
        assert_int_equal(whole, brisk_crc32c_portable(0, buf + 3, n));
        for (size_t k = 0; k <= n; k += 7)
            assert_int_equal(brisk_crc32c(brisk_crc32c(0, buf + 3, k), buf + 3 + k, n - k), whole);
    }
    assert_int_equal(brisk_crc32c(0, buf, 1000), brisk_crc32c_portable(0, buf, 1000));
}

static void golden(const char *len_hex, const char *lcrc_hex, const char *data_hex,
                   const char *dcrc_hex)
{
    uint8_t data[256], want[512], got[512];
    char all[1024];
    snprintf(all, sizeof all, "%s%s%s%s", len_hex, lcrc_hex, data_hex, dcrc_hex);
    const size_t n = test_from_hex(data_hex, data);
    const size_t wn = test_from_hex(all, want);
    assert_int_equal(brisk_tfrecord_frame(data, n, got), n + BRISK_TFRECORD_OVERHEAD);
    assert_int_equal(wn, n + BRISK_TFRECORD_OVERHEAD);
    assert_memory_equal(got, want, wn);
}

static void test_golden_records(void **state)
{
    (void)state;
    /* Event{wall_time=1700000000.0, file_version="brain.Event:2"} */
    golden("1800000000000000", "a37f4b22", "0900000040fc54d9411a0d627261696e2e4576656e743a32",
           "eced8f9d");
    /* Event{wall_time=1700000001.0, step=1, summary{value{tag="loss", simple_value=0.5}}} */
    golden("1a00000000000000", "129bd82d",
           "0900004040fc54d94110012a0d0a0b0a046c6f7373150000003f", "97d67404");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_values),
        cmocka_unit_test(test_crc_paths_and_chaining_agree),
        cmocka_unit_test(test_golden_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
