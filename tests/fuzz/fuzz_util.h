/* Helpers of the libFuzzer harnesses: the input as a file (an anonymous memory file, named by
 * /proc/self/fd), and the checkpoint CRC fix-up that lets the fuzzer past the CRCs. */
#ifndef BRISK_FUZZ_UTIL_H
#define BRISK_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The event-file harnesses' input format: a list of records, each a 2-byte little-endian
 * length and that many bytes (the last one takes what is left), framed with valid CRCs
 * (brisk_tfrecord_frame); the first input byte cuts that many bytes (mod 64) off the end, to
 * tear the last record. Returns the file (malloc'd) and its size in *len, or NULL. */
uint8_t *fuzz_framed_records(const uint8_t *data, size_t size, size_t *len);

/* Writes data to a fresh memory file; path receives its name (64 bytes). Returns the fd
 * (close it when done), or -1. */
int fuzz_memfile(const uint8_t *data, size_t size, char *path);

/* In a copy of a checkpoint: sets brisk.data_crc32c to the CRC-32C of the data section and
 * brisk.header_crc32c to the header's own (brisk/checkpoint.h), where they are found. */
void fuzz_fix_checkpoint_crcs(uint8_t *b, size_t size);

/* A checkpoint file of the input: fuzz_memfile of a copy, its CRCs fixed up first when
 * fix_crcs. Returns the fd (close it when done), or -1. */
int fuzz_checkpoint_file(const uint8_t *data, size_t size, int fix_crcs, char *path);

#endif
