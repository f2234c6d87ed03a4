/* brisk/tfrecord.h: CRC-32C and TFRecord framing, the layer under TensorBoard event files.
 *
 * A record is: uint64 LE length, uint32 LE masked CRC-32C of those 8 bytes, the data, uint32
 * LE masked CRC-32C of the data. CRC-32C is Castagnoli's (reflected polynomial 0x82F63B78),
 * not zlib's crc32. This module knows nothing about models (see ARCHITECTURE.md).
 */
#ifndef BRISK_TFRECORD_H
#define BRISK_TFRECORD_H

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

/* Bytes a framed record of n data bytes takes: n + 16. */
#define BRISK_TFRECORD_OVERHEAD 16

/* Writes the framed record of data[0, n) to out (n + BRISK_TFRECORD_OVERHEAD bytes, owned by
 * the caller) and returns the bytes written. */
size_t brisk_tfrecord_frame(const void *data, size_t n, uint8_t *out);

/* Frames in place: rec[12, 12 + n) already holds the data; fills the length and both CRCs
 * around it (rec must have n + BRISK_TFRECORD_OVERHEAD bytes). Returns n + 16. */
size_t brisk_tfrecord_seal(uint8_t *rec, size_t n);

/* Reads the record at buf[*off, len): on success points *data at its n = *n bytes, advances
 * *off past it and returns 1; returns 0 at a clean end (*off == len). Errors leave *off at the
 * record: BRISK_ETRUNCATED when the file ends inside the record (a torn last record, which
 * TensorBoard waits on), BRISK_EFORMAT when the length CRC or the data CRC does not match
 * (the detail says which, with the offset). */
int brisk_tfrecord_next(const uint8_t *buf, size_t len, size_t *off, const uint8_t **data,
                        size_t *n);

#ifdef __cplusplus
}
#endif

#endif
