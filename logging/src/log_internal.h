/* Private to brisk_log: the record layout in the rings and the event encoders. */
#ifndef BRISK_LOG_INTERNAL_H
#define BRISK_LOG_INTERNAL_H

#include "brisk/logger.h"

#include <stddef.h>
#include <stdint.h>

/* A record's payload in a ring: this header, the tag (tag_len bytes, no NUL, padded to 8),
 * then body_len bytes whose meaning depends on the kind. */
typedef enum log_kind {
    LOG_SCALAR = 1,     /* value */
    LOG_HISTOGRAM,      /* body: b floats */
    LOG_TEXT,           /* body: the text, no NUL */
    LOG_IMAGE,          /* a = channels, b = h << 32 | w; body: h * w * channels bytes */
    LOG_HPARAMS,        /* a = hparams, b = metrics; body: see encode_hparams in logger.c */
    LOG_HPARAMS_END,    /* a = status */
    LOG_LAYOUT,         /* a = charts; tag = category; body: see brisk_log_custom_scalars */
    LOG_DROPS,          /* b = records this producer has dropped so far */
    LOG_REPORT,         /* body: the report's path ("" for <logdir>/report.html); no event */
} log_kind;

typedef struct log_rec {
    uint16_t kind;
    uint16_t run;
    uint32_t tag_len;
    uint32_t body_len;
    uint32_t a;
    int64_t step;
    double value;
    uint64_t b;
} log_rec;

#define LOG_PAD8(n) (((size_t)(n) + 7) & ~(size_t)7)

/* A growable byte buffer (the logging thread's). */
typedef struct log_buf {
    uint8_t *p;
    size_t len, cap;
} log_buf;

/* Makes room for n more bytes; returns NULL when out of memory. */
uint8_t *log_buf_reserve(log_buf *b, size_t n);

/* Appends one framed Event for the record (tag and body as described above) to out.
 * hist_counts is scratch for 4 uint32 counts per histogram bucket (log_hist_edges). Returns BRISK_OK or BRISK_ENOMEM / BRISK_EINVAL (a
 * malformed body, which the pushes never produce). */
int log_encode_record(log_buf *out, const log_rec *rec, const char *tag, const uint8_t *body,
                      double wall_time, uint32_t *hist_counts);

/* Appends the framed opening records of a file: file_version with source_metadata, then
 * SessionLog START at first_step. */
int log_encode_header(log_buf *out, double wall_time, int64_t first_step);

/* TensorBoard's default histogram bucket edges (shared, read-only): *n of them. */
const double *log_hist_edges(size_t *n);

/* PNG of an 8-bit image (channels 1, 3 or 4). Returns a malloc'd buffer and its size, or NULL
 * when out of memory. */
uint8_t *log_png_encode(const uint8_t *pixels, int h, int w, int channels, size_t *size);

#endif
