/* brisk/crc32c.h: CRC-32C, Castagnoli's polynomial (reflected 0x82F63B78), not zlib's crc32:
 * the checksum of TFRecord framing (brisk/tfrecord.h) and of checkpoints. */
#ifndef BRISK_CRC32C_H
#define BRISK_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC-32C of data[0, n) continuing from crc (0 to start), zlib-style chaining:
 * brisk_crc32c(brisk_crc32c(0, a, na), b, nb) == CRC of a followed by b. Uses the SSE4.2
 * crc32 instruction where the CPU has it, a table otherwise; both give the same value. */
uint32_t brisk_crc32c(uint32_t crc, const void *data, size_t n);

/* The same with the table only (for tests and for CPUs without SSE4.2). */
uint32_t brisk_crc32c_portable(uint32_t crc, const void *data, size_t n);

/* TFRecord's mask: rotate right by 15, then add 0xA282EAD8. */
uint32_t brisk_crc32c_mask(uint32_t crc);
#define BRISK_CRC32C_MASK(c) ((((c) >> 15) | ((c) << 17)) + 0xA282EAD8u)

#if defined(__x86_64__) && defined(__GNUC__)
/* brisk_crc32c with the SSE4.2 instruction, inline, for code compiled for SSE4.2 (a function
 * with __attribute__((target("sse4.2"))), called only where the CPU has it): a reader of
 * millions of small records keeps both of a record's CRCs in its own loop. */
__attribute__((target("sse4.2"))) static inline uint32_t brisk_crc32c_sse42(uint32_t crc,
                                                                           const void *data,
                                                                           size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = (uint32_t)~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c32 = __builtin_ia32_crc32si(c32, w);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        c32 = __builtin_ia32_crc32hi(c32, w);
        p += 2;
        n -= 2;
    }
    if (n)
        c32 = __builtin_ia32_crc32qi(c32, *p);
    return ~c32;
}
#endif

#ifdef __cplusplus
}
#endif

#endif
