#define _GNU_SOURCE /* memfd_create, memmem */
#include "fuzz_util.h"

#include "brisk/tfrecord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_memfile(const uint8_t *data, size_t size, char *path)
{
    const int fd = memfd_create("brisk-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static void set_hex(uint8_t *at, uint32_t v)
{
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)v);
    memcpy(at, hex, 8);
}

void fuzz_fix_checkpoint_crcs(uint8_t *b, size_t size)
{
    if (size < 8)
        return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > size - 8)
        return;
    static const char data_key[] = "\"brisk.data_crc32c\":\"";
    static const char header_key[] = "\"brisk.header_crc32c\":\"";
    uint8_t *d = memmem(b + 8, hlen, data_key, strlen(data_key));
    if (d && d + strlen(data_key) + 8 <= b + 8 + hlen)
        set_hex(d + strlen(data_key), brisk_crc32c(0, b + 8 + hlen, size - 8 - hlen));
    uint8_t *h = memmem(b + 8, hlen, header_key, strlen(header_key));
    if (h && h + strlen(header_key) + 8 <= b + 8 + hlen) {
        h += strlen(header_key);
        memcpy(h, "00000000", 8);
        set_hex(h, brisk_crc32c(0, b, 8 + hlen));
    }
}

int fuzz_checkpoint_file(const uint8_t *data, size_t size, int fix_crcs, char *path)
{
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        return -1;
    memcpy(b, data, size);
    if (fix_crcs)
        fuzz_fix_checkpoint_crcs(b, size);
    const int fd = fuzz_memfile(b, size, path);
    free(b);
    return fd;
}

uint8_t *fuzz_framed_records(const uint8_t *data, size_t size, size_t *len)
{
    *len = 0;
    if (size < 1)
        return NULL;
    const size_t tear = data[0] % 64;
    size_t in = 1, cap = size * 2 + 64, n_out = 0;
    uint8_t *file = malloc(cap);
    if (!file)
        return NULL;
    while (in < size) {
        size_t n = size - in;
        if (n >= 2) {
            const size_t want = (size_t)data[in] | (size_t)data[in + 1] << 8;
            in += 2;
            n = want < size - in ? want : size - in;
        } else {
            in = size; /* one stray byte: an empty record */
            n = 0;
        }
        if (n_out + n + BRISK_TFRECORD_OVERHEAD > cap)
            break;
        n_out += brisk_tfrecord_frame(data + in, n, file + n_out);
        in += n;
    }
    *len = tear < n_out ? n_out - tear : 0;
    return file;
}
