/* IDX reader (the MNIST file format): a big-endian header
 *   0x00 0x00 <type> <ndims>, then ndims uint32 BE sizes, then the data, row-major.
 * Brisk accepts type 0x08 (unsigned byte) with 3 dims for images and 1 dim for labels, plain
 * or gzip-compressed. Every size is checked against the file before anything is allocated.
 */
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Deflate cannot expand data more than about 1032:1, so a gzip file of c bytes holds at most
 * this many bytes of payload; a header that claims more is corrupt. */
#define GZIP_MAX_RATIO 1032u

/* An IDX file being read: plain bytes, or gzip inflated here with zlib's inflate (not gzread,
 * which accepts a member without its trailer and ignores bytes after the stream). A gzip file
 * is one or more members, each ending with its trailer (CRC-32 and length, checked by
 * inflate), and nothing after the last. */
typedef struct idx_file {
    const char *path;
    FILE *fp;
    int is_gzip;
    long long file_size;
    z_stream zs;
    int z_ready;        /* inflateInit2 done */
    int member_ended;   /* the last member's trailer has been read and checked */
    int eof;            /* no more compressed input */
    unsigned char in[1 << 16];
} idx_file;

/* More compressed input when the buffer is empty; sets eof at the end of the file. */
static int gz_fill(idx_file *f)
{
    if (f->zs.avail_in || f->eof)
        return BRISK_OK;
    const size_t n = fread(f->in, 1, sizeof f->in, f->fp);
    if (n == 0) {
        if (ferror(f->fp))
            return brisk_error_set(BRISK_EIO, "%s: read error: %s", f->path, strerror(errno));
        f->eof = 1;
    }
    f->zs.next_in = f->in;
    f->zs.avail_in = (uInt)n;
    return BRISK_OK;
}

/* Inflates up to len bytes into buf (*got of them), crossing into the next member when one
 * ends. Stops early only at the end of the file. */
static int gz_read(idx_file *f, unsigned char *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        int err = gz_fill(f);
        if (err < 0)
            return err;
        if (f->member_ended) {
            if (!f->zs.avail_in)
                return BRISK_OK; /* the end: the caller decides whether that is early */
            if (f->zs.next_in[0] != 0x1f)
                return brisk_error_set(BRISK_EFORMAT, "%s: bytes after the gzip stream that "
                                       "are not another gzip member", f->path);
            inflateReset(&f->zs);
            f->member_ended = 0;
        }
        if (!f->zs.avail_in && f->eof)
            return brisk_error_set(BRISK_ETRUNCATED, "%s: gzip stream ends early (the last "
                                   "member has no trailer)", f->path);
        const size_t want = len - *got < (1u << 30) ? len - *got : (1u << 30);
        f->zs.next_out = buf + *got;
        f->zs.avail_out = (uInt)want;
        const int r = inflate(&f->zs, Z_NO_FLUSH);
        *got += want - f->zs.avail_out;
        if (r == Z_STREAM_END)
            f->member_ended = 1;
        else if (r == Z_DATA_ERROR || r == Z_NEED_DICT)
            return brisk_error_set(BRISK_EFORMAT, "%s: corrupt gzip data: %s", f->path,
                                   f->zs.msg ? f->zs.msg : "invalid stream");
        else if (r == Z_MEM_ERROR)
            return brisk_error_set(BRISK_ENOMEM, "%s: out of memory inflating", f->path);
        else if (r != Z_OK && r != Z_BUF_ERROR)
            return brisk_error_set(BRISK_EFORMAT, "%s: gzip error %d", f->path, r);
    }
    return BRISK_OK;
}

/* Reads exactly len bytes or reports how many it got and why it stopped. */
static int idx_read(idx_file *f, void *buf, size_t len, const char *what, size_t *got_out)
{
    size_t got = 0;
    int err = BRISK_OK;
    if (f->is_gzip) {
        err = gz_read(f, buf, len, &got);
    } else {
        got = fread(buf, 1, len, f->fp);
        if (got < len && ferror(f->fp))
            err = brisk_error_set(BRISK_EIO, "%s: read error in %s: %s", f->path, what,
                                  strerror(errno));
    }
    if (got_out)
        *got_out = got;
    if (err < 0 || got == len)
        return err;
    return brisk_error_set(BRISK_ETRUNCATED, "%s: %s ends early: %s has %zu of %zu bytes",
                           f->path, f->is_gzip ? "gzip stream" : "file", what, got, len);
}

/* After the payload: a gzip stream must end right there, with its trailer, and nothing may
 * follow. */
static int gz_finish(idx_file *f, size_t payload)
{
    unsigned char extra;
    size_t got;
    int err = gz_read(f, &extra, 1, &got);
    if (err == BRISK_ETRUNCATED)
        return err;
    if (err == BRISK_OK && got > 0)
        err = brisk_error_set(BRISK_EFORMAT, "%s: unexpected bytes after the %zu data bytes the "
                              "header declares", f->path, payload);
    if (err < 0)
        return err;
    if ((err = gz_fill(f)) < 0)
        return err;
    if (f->zs.avail_in)
        return brisk_error_set(BRISK_EFORMAT, "%s: %u or more bytes after the gzip stream",
                               f->path, f->zs.avail_in);
    return BRISK_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Opens path, reads and checks the header, allocates and reads the payload. dims gets the
 * ndims sizes; *data (malloc'd, owned by the caller) gets their product bytes. */
static int idx_read_file(const char *path, int ndims, const char *kind, uint32_t dims[3],
                         uint8_t **data)
{
    *data = NULL;
    /* The 64 KiB input buffer lives on the heap, not the stack. */
    idx_file *f = calloc(1, sizeof *f);
    if (!f)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
    f->path = path;
    FILE *fp;
    uint64_t file_size;
    int err = brisk_file_open(path, 0, &fp, &file_size);
    if (err < 0) {
        free(f);
        return err;
    }
    unsigned char magic2[2] = {0, 0};
    f->file_size = (long long)file_size;
    if (f->file_size == 0) {
        fclose(fp);
        free(f);
        return brisk_error_set(BRISK_EEMPTY, "%s: file is empty (expected an IDX %s file)", path,
                               kind);
    }
    f->is_gzip = fread(magic2, 1, 2, fp) == 2 && magic2[0] == 0x1f && magic2[1] == 0x8b;
    rewind(fp);
    f->fp = fp;
    if (f->is_gzip) {
        /* 15 + 16: a gzip wrapper, whose trailer inflate checks. */
        if (inflateInit2(&f->zs, 15 + 16) != Z_OK) {
            fclose(fp);
            free(f);
            return brisk_error_set(BRISK_ENOMEM, "%s: cannot start inflating", path);
        }
        f->z_ready = 1;
    }

    unsigned char hdr[16];
    size_t got = 0;
    const size_t hdr_len = 4 + 4 * (size_t)ndims;
    if ((err = idx_read(f, hdr, 4, "the magic number", &got)) < 0) {
        if (err == BRISK_ETRUNCATED && got == 0 && f->is_gzip && f->member_ended)
            err = brisk_error_set(BRISK_EEMPTY, "%s: gzip stream holds no data (expected an "
                                  "IDX %s file)", path, kind);
        goto fail;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        err = brisk_error_set(BRISK_EFORMAT,
                              "%s: field 'magic': 0x%02x%02x%02x%02x is not an IDX magic number "
                              "(expected 0x000008%02x for %s)",
                              path, hdr[0], hdr[1], hdr[2], hdr[3], ndims, kind);
        goto fail;
    }
    if (hdr[2] != 0x08) {
        err = brisk_error_set(BRISK_EFORMAT,
                              "%s: field 'magic': data type 0x%02x is not unsigned byte (0x08)",
                              path, hdr[2]);
        goto fail;
    }
    if (hdr[3] != ndims) {
        err = brisk_error_set(BRISK_EFORMAT,
                              "%s: field 'magic': %d dimensions, expected %d for %s", path,
                              hdr[3], ndims, kind);
        goto fail;
    }
    if ((err = idx_read(f, hdr + 4, hdr_len - 4, "the dimension sizes", NULL)) < 0)
        goto fail;
    static const char *const dim_names[3] = {"count", "rows", "cols"};
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] == 0) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: field '%s' is 0", path, dim_names[i]);
            goto fail;
        }
        if (__builtin_mul_overflow(payload, (size_t)dims[i], &payload) ||
            payload > (size_t)INT64_MAX) {
            err = brisk_error_set(BRISK_EOVERFLOW,
                                  "%s: field '%s': the dimensions' product overflows (%u at "
                                  "dimension %d)",
                                  path, dim_names[i], dims[i], i);
            goto fail;
        }
    }
    if (ndims == 3 && (size_t)dims[1] * dims[2] > (size_t)INT_MAX) {
        err = brisk_error_set(BRISK_EOVERFLOW, "%s: fields 'rows' x 'cols' = %u x %u is too large",
                              path, dims[1], dims[2]);
        goto fail;
    }
    /* Size checks before allocating. */
    if (!f->is_gzip) {
        long long have = f->file_size - (long long)hdr_len;
        if ((unsigned long long)have < payload) {
            err = brisk_error_set(BRISK_ETRUNCATED,
                                  "%s: file ends early: the header declares %zu data bytes, "
                                  "the file has %lld",
                                  path, payload, have);
            goto fail;
        }
        if ((unsigned long long)have > payload) {
            err = brisk_error_set(BRISK_EFORMAT,
                                  "%s: %lld unexpected bytes after the %zu data bytes the header "
                                  "declares",
                                  path, have - (long long)payload, payload);
            goto fail;
        }
    } else if (payload / GZIP_MAX_RATIO > (size_t)f->file_size) {
        err = brisk_error_set(BRISK_ETRUNCATED,
                              "%s: the header declares %zu data bytes, more than a %lld-byte "
                              "gzip file can hold",
                              path, payload, f->file_size);
        goto fail;
    }
    *data = malloc(payload);
    if (!*data) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %zu bytes", path, payload);
        goto fail;
    }
    if ((err = idx_read(f, *data, payload, "the data", NULL)) < 0)
        goto fail;
    if (f->is_gzip && (err = gz_finish(f, payload)) < 0)
        goto fail;
    if (f->z_ready)
        inflateEnd(&f->zs);
    fclose(f->fp);
    free(f);
    return BRISK_OK;
fail:
    free(*data);
    *data = NULL;
    if (f->z_ready)
        inflateEnd(&f->zs);
    fclose(f->fp);
    free(f);
    return err;
}

int brisk_idx_load(const char *images_path, const char *labels_path, brisk_dataset *out)
{
    memset(out, 0, sizeof *out);
    uint32_t idims[3], ldims[3];
    uint8_t *x = NULL, *y = NULL;
    int err = idx_read_file(images_path, 3, "images", idims, &x);
    if (err < 0)
        return err;
    if ((err = idx_read_file(labels_path, 1, "labels", ldims, &y)) < 0)
        goto fail;
    if (idims[0] != ldims[0]) {
        err = brisk_error_set(BRISK_EMISMATCH,
                              "field 'count': %s holds %u images but %s holds %u labels",
                              images_path, idims[0], labels_path, ldims[0]);
        goto fail;
    }
    if (idims[0] > (uint32_t)INT32_MAX) {
        err = brisk_error_set(BRISK_EOVERFLOW, "%s: field 'count': %u samples is too many",
                              images_path, idims[0]);
        goto fail;
    }
    int maxlabel = 0;
    for (uint32_t i = 0; i < ldims[0]; i++)
        if (y[i] > maxlabel)
            maxlabel = y[i];
    out->n = idims[0];
    out->rows = (int)idims[1];
    out->cols = (int)idims[2];
    out->d = out->rows * out->cols;
    out->classes = maxlabel + 1;
    out->x = x;
    out->y = y;
    return BRISK_OK;
fail:
    free(x);
    free(y);
    return err;
}

int brisk_dataset_load_dir(const char *dir, const char *prefix, brisk_dataset *out)
{
    memset(out, 0, sizeof *out);
    char paths[2][4096];
    static const char *const kinds[2] = {"images-idx3", "labels-idx1"};
    for (int k = 0; k < 2; k++) {
        struct stat st;
        int n = snprintf(paths[k], sizeof paths[k], "%s/%s-%s-ubyte.gz", dir, prefix, kinds[k]);
        if (n < 0 || (size_t)n >= sizeof paths[k])
            return brisk_error_set(BRISK_EINVAL, "%s: path too long", dir);
        if (stat(paths[k], &st) == 0)
            continue;
        paths[k][n - 3] = '\0'; /* try the uncompressed name */
        if (stat(paths[k], &st) != 0)
            return brisk_error_set(BRISK_ENOENT, "%s: no %s-%s-ubyte or %s-%s-ubyte.gz", dir,
                                   prefix, kinds[k], prefix, kinds[k]);
    }
    return brisk_idx_load(paths[0], paths[1], out);
}
