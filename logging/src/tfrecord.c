#include "brisk/tfrecord.h"

#include "brisk/error.h"

#include <pthread.h>
#include <string.h>

/* Table for the reflected Castagnoli polynomial 0x82F63B78, one byte at a time. */
static uint32_t crc_table[256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
}

uint32_t brisk_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_table_once, crc_table_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                              size_t n)
{
    const uint8_t *p = data;
    uint64_t c = (uint32_t)~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--, p++)
        c32 = __builtin_ia32_crc32qi(c32, *p);
    return ~c32;
}
#endif

uint32_t brisk_crc32c(uint32_t crc, const void *data, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, data, n);
#endif
    return brisk_crc32c_portable(crc, data, n);
}

uint32_t brisk_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

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
