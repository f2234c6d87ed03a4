/* brisk/tfrecord.h: TFRecord framing, the layer under TensorBoard event files.
 *
 * A record is: uint64 LE length, uint32 LE masked CRC-32C of those 8 bytes, the data, uint32
 * LE masked CRC-32C of the data (brisk/crc32c.h). This module knows nothing about models.
 */
#ifndef BRISK_TFRECORD_H
#define BRISK_TFRECORD_H

#include "brisk/crc32c.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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
