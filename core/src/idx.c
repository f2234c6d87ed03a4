/* IDX reader (the MNIST file format): a big-endian header
 *   0x00 0x00 <type> <ndims>, then ndims uint32 BE sizes, then the data, row-major.
 * Brisk accepts type 0x08 (unsigned byte) with 3 dims for images and 1 dim for labels, plain
 * or gzip-compressed. Every size is checked against the file before anything is allocated.
 */
#include "brisk/data.h"
#include "brisk/error.h"

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

typedef struct idx_file {
    const char *path;
    gzFile gz;
    int is_gzip;
    long long file_size;
} idx_file;

/* Reads exactly len bytes or reports how many it got and why it stopped. */
static int idx_read(idx_file *f, void *buf, size_t len, const char *what, size_t *got_out)
{
    size_t got = 0;
    while (got < len) {
        size_t chunk = len - got < (1u << 30) ? len - got : (1u << 30);
        int r = gzread(f->gz, (char *)buf + got, (unsigned)chunk);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got_out)
        *got_out = got;
    if (got == len)
        return BRISK_OK;
    int zerr = 0;
    const char *msg = gzerror(f->gz, &zerr);
    if (zerr == Z_DATA_ERROR)
        return brisk_error_set(BRISK_EFORMAT, "%s: corrupt gzip data while reading %s: %s",
                               f->path, what, msg);
    if (zerr == Z_ERRNO)
        return brisk_error_set(BRISK_EIO, "%s: read error in %s: %s", f->path, what,
                               strerror(errno));
    if (f->is_gzip)
        return brisk_error_set(BRISK_ETRUNCATED,
                               "%s: gzip stream ends early: %s has %zu of %zu bytes", f->path,
                               what, got, len);
    return brisk_error_set(BRISK_ETRUNCATED, "%s: file ends early: %s has %zu of %zu bytes",
                           f->path, what, got, len);
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
    idx_file f = {path, NULL, 0, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return brisk_error_set(errno == ENOENT ? BRISK_ENOENT : BRISK_EIO, "%s: cannot open: %s",
                               path, strerror(errno));
    struct stat st;
    unsigned char magic2[2] = {0, 0};
    if (fstat(fileno(fp), &st) != 0) {
        fclose(fp);
        return brisk_error_set(BRISK_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    f.file_size = (long long)st.st_size;
    if (f.file_size == 0) {
        fclose(fp);
        return brisk_error_set(BRISK_EEMPTY, "%s: file is empty (expected an IDX %s file)", path,
                               kind);
    }
    f.is_gzip = fread(magic2, 1, 2, fp) == 2 && magic2[0] == 0x1f && magic2[1] == 0x8b;
    fclose(fp);

    f.gz = gzopen(path, "rb");
    if (!f.gz)
        return brisk_error_set(BRISK_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(f.gz, 1u << 17);

    int err;
    unsigned char hdr[16];
    size_t got = 0;
    const size_t hdr_len = 4 + 4 * (size_t)ndims;
    if ((err = idx_read(&f, hdr, 4, "the magic number", &got)) < 0) {
        if (err == BRISK_ETRUNCATED && got == 0 && f.is_gzip)
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
    if ((err = idx_read(&f, hdr + 4, hdr_len - 4, "the dimension sizes", NULL)) < 0)
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
    if (!f.is_gzip) {
        long long have = f.file_size - (long long)hdr_len;
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
    } else if (payload / GZIP_MAX_RATIO > (size_t)f.file_size) {
        err = brisk_error_set(BRISK_ETRUNCATED,
                              "%s: the header declares %zu data bytes, more than a %lld-byte "
                              "gzip file can hold",
                              path, payload, f.file_size);
        goto fail;
    }
    *data = malloc(payload);
    if (!*data) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %zu bytes", path, payload);
        goto fail;
    }
    if ((err = idx_read(&f, *data, payload, "the data", NULL)) < 0)
        goto fail;
    if (f.is_gzip) {
        /* Reading past the end makes zlib check the gzip trailer's CRC and length. */
        unsigned char extra;
        int r = gzread(f.gz, &extra, 1);
        int zerr = 0;
        const char *msg = gzerror(f.gz, &zerr);
        if (r > 0) {
            err = brisk_error_set(BRISK_EFORMAT,
                                  "%s: unexpected bytes after the %zu data bytes the header "
                                  "declares",
                                  path, payload);
            goto fail;
        }
        if (zerr == Z_BUF_ERROR) {
            err = brisk_error_set(BRISK_ETRUNCATED, "%s: gzip stream ends early (no trailer)",
                                  path);
            goto fail;
        }
        if (zerr != Z_OK) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: corrupt gzip data: %s", path, msg);
            goto fail;
        }
    }
    gzclose(f.gz);
    return BRISK_OK;
fail:
    free(*data);
    *data = NULL;
    gzclose(f.gz);
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
