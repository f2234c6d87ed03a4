/* brisk/crc32c.h: CRC-32C, Castagnoli's polynomial (reflected 0x82F63B78), not zlib's crc32:
 * the checksum of TFRecord framing (brisk/tfrecord.h) and of checkpoints. */
#ifndef BRISK_CRC32C_H
#define BRISK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

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

#ifdef __cplusplus
}
#endif

#endif
