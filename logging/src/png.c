/* PNG encoder for image summaries: one IHDR, one IDAT (zlib, filter 0 on every row), IEND.
 * Chunk CRCs are zlib's crc32 (the PNG checksum), unlike the records' CRC-32C. Reference:
 * the PNG specification (W3C, 2nd edition), sections 5 and 11. */
#include "log_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes length, type, data (already at p + 8) and CRC; returns the chunk's size. */
static size_t png_chunk(uint8_t *p, const char type[4], size_t n)
{
    put_be32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    put_be32(p + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + 4, (uInt)(n + 4)));
    return n + 12;
}

uint8_t *log_png_encode(const uint8_t *pixels, int h, int w, int channels, size_t *size)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const int color_type = channels == 1 ? 0 : channels == 3 ? 2 : 6;
    const size_t row = (size_t)w * (size_t)channels;
    const size_t raw_len = (row + 1) * (size_t)h;
    uint8_t *raw = malloc(raw_len);
    if (!raw)
        return NULL;
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * (row + 1)] = 0; /* filter type 0: none */
        memcpy(raw + (size_t)y * (row + 1) + 1, pixels + (size_t)y * row, row);
    }
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *png = malloc(8 + 25 + 12 + zlen + 12);
    if (!png) {
        free(raw);
        return NULL;
    }
    size_t at = 0;
    memcpy(png, signature, 8);
    at += 8;
    uint8_t *ihdr = png + at + 8;
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = (uint8_t)color_type;
    ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, filter method 0, no interlace */
    at += png_chunk(png + at, "IHDR", 13);
    if (compress2(png + at + 8, &zlen, raw, (uLong)raw_len, 6) != Z_OK) {
        free(raw);
        free(png);
        return NULL;
    }
    free(raw);
    at += png_chunk(png + at, "IDAT", zlen);
    at += png_chunk(png + at, "IEND", 0);
    *size = at;
    return png;
}
