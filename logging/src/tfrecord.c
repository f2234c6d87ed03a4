#include "brisk/tfrecord.h"

#include "brisk/error.h"

#include <string.h>

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t brisk_tfrecord_seal(uint8_t *rec, size_t n)
{
    const uint64_t len = n;
    for (int i = 0; i < 8; i++)
        rec[i] = (uint8_t)(len >> (8 * i));
    put_le32(rec + 8, brisk_crc32c_mask(brisk_crc32c(0, rec, 8)));
    put_le32(rec + 12 + n, brisk_crc32c_mask(brisk_crc32c(0, rec + 12, n)));
    return n + BRISK_TFRECORD_OVERHEAD;
}

size_t brisk_tfrecord_frame(const void *data, size_t n, uint8_t *out)
{
    memmove(out + 12, data, n);
    return brisk_tfrecord_seal(out, n);
}

int brisk_tfrecord_next(const uint8_t *buf, size_t len, size_t *off, const uint8_t **data,
                        size_t *n)
{
    const size_t at = *off;
    if (at == len)
        return 0;
    if (len - at < 12)
        return brisk_error_set(BRISK_ETRUNCATED, "record at offset %zu: %zu of 12 header bytes",
                               at, len - at);
    const uint8_t *p = buf + at;
    if (brisk_crc32c_mask(brisk_crc32c(0, p, 8)) != get_le32(p + 8))
        return brisk_error_set(BRISK_EFORMAT, "record at offset %zu: bad length CRC", at);
    uint64_t rec_len = 0;
    for (int i = 7; i >= 0; i--)
        rec_len = rec_len << 8 | p[i];
    if (rec_len > len - at - 12 || len - at - 12 - rec_len < 4)
        return brisk_error_set(BRISK_ETRUNCATED,
                               "record at offset %zu: %llu data bytes announced, %zu left",
                               at, (unsigned long long)rec_len, len - at - 12);
    if (brisk_crc32c_mask(brisk_crc32c(0, p + 12, (size_t)rec_len)) != get_le32(p + 12 + rec_len))
        return brisk_error_set(BRISK_EFORMAT, "record at offset %zu: bad data CRC", at);
    *data = p + 12;
    *n = (size_t)rec_len;
    *off = at + 16 + (size_t)rec_len;
    return 1;
}
