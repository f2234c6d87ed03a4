/* CRC-32C (Castagnoli): the checksum of TFRecord framing and of checkpoints. */
#include "brisk/crc32c.h"

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


uint32_t brisk_crc32c(uint32_t crc, const void *data, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("sse4.2"))
        return brisk_crc32c_sse42(crc, data, n);
#endif
    return brisk_crc32c_portable(crc, data, n);
}

uint32_t brisk_crc32c_mask(uint32_t crc)
{
    return BRISK_CRC32C_MASK(crc);
}
