/* NumPy .npy and CSV readers, and a .npy writer.
 *
 * .npy (format versions 1, 2 and 3): the magic "\x93NUMPY", a major and a minor version byte,
 * the header's length (uint16 little-endian in version 1, uint32 in 2 and 3), then the header:
 * a Python dict literal with exactly the keys 'descr', 'fortran_order' and 'shape', padded with
 * spaces and a newline; then the data, C order. Brisk reads little-endian (or byte-sized)
 * float32, float64, uint8, int32 and int64, at most 4 dimensions, and checks every size
 * against the file before allocating.
 *
 * CSV: a header row of distinct names, then rows of numbers, comma-separated; a field may be
 * quoted with double quotes ("" inside stands for one quote); spaces around a field are
 * ignored; lines end in \n, \r\n or \r; a UTF-8 byte-order mark at the start is skipped.
 */
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "core_internal.h"


#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_DIMS 4
#define FLT_MAX_AS_DOUBLE ((double)FLT_MAX)
#define NPY_MAX_HEADER (1 << 20)

typedef enum npy_type { NPY_F4, NPY_F8, NPY_U1, NPY_I4, NPY_I8, NPY_U2, NPY_I2 } npy_type;

typedef struct npy_array {
    npy_type type;
    int item;                    /* bytes per element */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int64_t count;               /* product of the shape */
    void *data;                  /* count * item bytes, as stored */
} npy_array;

static const char *const npy_type_names[] = {"float32", "float64", "uint8", "int32", "int64",
                                              "uint16", "int16"};

/* ---- The header's dict literal --------------------------------------------------------- */

typedef struct hdr_parser {
    const char *s, *end, *path, *start;
} hdr_parser;

static void hp_space(hdr_parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n'))
        p->s++;
}

static int hp_expect(hdr_parser *p, char c)
{
    hp_space(p);
    if (p->s >= p->end || *p->s != c)
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: expected '%c' at character %td",
                               p->path, c, p->s - p->start + 1);
    p->s++;
    return BRISK_OK;
}

/* A quoted string ('...' or "...") into buf. */
static int hp_string(hdr_parser *p, char *buf, size_t size)
{
    hp_space(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: expected a quoted string",
                               p->path);
    const char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (n + 1 >= size)
            return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: string too long", p->path);
        buf[n++] = *p->s++;
    }
    if (p->s >= p->end)
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: unterminated string", p->path);
    p->s++;
    buf[n] = 0;
    return BRISK_OK;
}

static int parse_descr(const char *path, const char *d, npy_array *a)
{
    static const struct { const char *descr; npy_type type; int item; } known[] = {
        {"<f4", NPY_F4, 4}, {"<f8", NPY_F8, 8}, {"|u1", NPY_U1, 1},
        {"<u1", NPY_U1, 1}, {"<i4", NPY_I4, 4}, {"<i8", NPY_I8, 8},
        {"<u2", NPY_U2, 2}, {"<i2", NPY_I2, 2},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(d, known[i].descr)) {
            a->type = known[i].type;
            a->item = known[i].item;
            return BRISK_OK;
        }
    if (d[0] == '>')
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy dtype '%s' is big-endian: save it "
                               "little-endian (arr.astype(arr.dtype.newbyteorder('<')))",
                               path, d);
    return brisk_error_set(BRISK_EFORMAT, "%s: .npy dtype '%s' is not supported (float32 "
                           "'<f4', float64 '<f8', uint8 '|u1', uint16 '<u2', int16 '<i2', int32 "
                           "'<i4' or int64 '<i8')", path, d);
}

static int parse_header(const char *path, const char *h, size_t len, npy_array *a)
{
    hdr_parser p = {h, h + len, path, h};
    int err, seen[3] = {0, 0, 0};
    if ((err = hp_expect(&p, '{')) < 0)
        return err;
    for (;;) {
        hp_space(&p);
        if (p.s < p.end && *p.s == '}')
            break;
        char key[32], val[32];
        if ((err = hp_string(&p, key, sizeof key)) < 0 || (err = hp_expect(&p, ':')) < 0)
            return err;
        hp_space(&p);
        if (!strcmp(key, "descr") && !seen[0]) {
            if ((err = hp_string(&p, val, sizeof val)) < 0 ||
                (err = parse_descr(path, val, a)) < 0)
                return err;
            seen[0] = 1;
        } else if (!strcmp(key, "fortran_order") && !seen[1]) {
            if ((size_t)(p.end - p.s) >= 5 && !strncmp(p.s, "False", 5)) {
                p.s += 5;
            } else if ((size_t)(p.end - p.s) >= 4 && !strncmp(p.s, "True", 4)) {
                return brisk_error_set(BRISK_EFORMAT, "%s: .npy array is in Fortran order: "
                                       "save it in C order (np.ascontiguousarray)", path);
            } else {
                return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: fortran_order is not "
                                       "True or False", path);
            }
            seen[1] = 1;
        } else if (!strcmp(key, "shape") && !seen[2]) {
            if ((err = hp_expect(&p, '(')) < 0)
                return err;
            a->ndim = 0;
            for (;;) {
                hp_space(&p);
                if (p.s < p.end && *p.s == ')')
                    break;
                if (a->ndim == NPY_MAX_DIMS)
                    return brisk_error_set(BRISK_EFORMAT, "%s: .npy array has more than %d "
                                           "dimensions", path, NPY_MAX_DIMS);
                int64_t v = 0;
                int digits = 0;
                while (p.s < p.end && *p.s >= '0' && *p.s <= '9') {
                    if (v > (INT64_MAX - 9) / 10)
                        return brisk_error_set(BRISK_EOVERFLOW, "%s: .npy shape: a size "
                                               "overflows", path);
                    v = v * 10 + (*p.s++ - '0');
                    digits++;
                }
                if (!digits)
                    return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: shape holds "
                                           "something other than sizes", path);
                a->shape[a->ndim++] = v;
                hp_space(&p);
                if (p.s < p.end && *p.s == ',')
                    p.s++;
            }
            p.s++;
            seen[2] = 1;
        } else {
            return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: unexpected or repeated key "
                                   "'%s'", path, key);
        }
        hp_space(&p);
        if (p.s < p.end && *p.s == ',')
            p.s++;
    }
    p.s++;
    hp_space(&p);
    if (p.s != p.end)
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy header: text after the dict", path);
    if (!seen[0] || !seen[1] || !seen[2])
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy header lacks '%s'", path,
                               !seen[0] ? "descr" : !seen[1] ? "fortran_order" : "shape");
    if (a->ndim == 0)
        return brisk_error_set(BRISK_EFORMAT, "%s: .npy array is a scalar (shape ())", path);
    a->count = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] == 0)
            return brisk_error_set(BRISK_EEMPTY, "%s: .npy array is empty (a size of 0)", path);
        if (a->count > INT64_MAX / a->item / a->shape[i])
            return brisk_error_set(BRISK_EOVERFLOW, "%s: .npy shape overflows", path);
        a->count *= a->shape[i];
    }
    return BRISK_OK;
}

/* Reads path's header and data into *a (a->data malloc'ed). */
static int npy_load(const char *path, npy_array *a)
{
    memset(a, 0, sizeof *a);
    FILE *fp;
    uint64_t file_size;
    int err = brisk_file_open(path, 0, &fp, &file_size);
    if (err < 0)
        return err;
    char *hdr = NULL;
    unsigned char pre[12];
    if (file_size == 0) {
        err = brisk_error_set(BRISK_EEMPTY, "%s: the file is empty", path);
        goto out;
    }
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: not a NumPy .npy file (no \\x93NUMPY magic)",
                              path);
        goto out;
    }
    const int major = pre[6];
    size_t hlen, pre_len;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        pre_len = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, fp) != 2) {
            err = brisk_error_set(BRISK_ETRUNCATED, "%s: .npy file ends in its preamble", path);
            goto out;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
        pre_len = 12;
    } else {
        err = brisk_error_set(BRISK_EFORMAT, "%s: .npy format version %d.%d is not supported "
                              "(1.0, 2.0 or 3.0)", path, major, pre[7]);
        goto out;
    }
    if (hlen > NPY_MAX_HEADER) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: the .npy header is %zu bytes, over Brisk's "
                              "limit of %d (1 MiB; NumPy writes headers of a few hundred "
                              "bytes)", path, hlen, NPY_MAX_HEADER);
        goto out;
    }
    if (hlen == 0 || (long long)(pre_len + hlen) > (long long)file_size) {
        err = brisk_error_set(BRISK_ETRUNCATED, "%s: .npy header length %zu does not fit the "
                              "file (%lld bytes)", path, hlen, (long long)file_size);
        goto out;
    }
    if (!(hdr = malloc(hlen + 1))) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(hdr, 1, hlen, fp) != hlen) {
        err = brisk_error_set(BRISK_ETRUNCATED, "%s: .npy file ends in its header", path);
        goto out;
    }
    hdr[hlen] = 0;
    if (memchr(hdr, 0, hlen)) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: .npy header holds a NUL byte", path);
        goto out;
    }
    if ((err = parse_header(path, hdr, hlen, a)) < 0)
        goto out;
    const long long have = (long long)file_size - (long long)(pre_len + hlen);
    if ((long long)a->count > LLONG_MAX / a->item || a->count * a->item != have) {
        err = brisk_error_set(a->count * a->item > have ? BRISK_ETRUNCATED : BRISK_EFORMAT,
                              "%s: the header's shape needs %lld bytes of %s data, the file "
                              "holds %lld", path, (long long)(a->count * a->item),
                              npy_type_names[a->type], have);
        goto out;
    }
    if (!(a->data = malloc((size_t)have))) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %lld bytes", path, have);
        goto out;
    }
    if (fread(a->data, 1, (size_t)have, fp) != (size_t)have) {
        err = brisk_error_set(BRISK_EIO, "%s: read error", path);
        free(a->data);
        a->data = NULL;
    }
out:
    free(hdr);
    fclose(fp);
    return err;
}

/* Element i as a double. */
static double npy_get(const npy_array *a, int64_t i)
{
    const unsigned char *p = (const unsigned char *)a->data + (size_t)i * (size_t)a->item;
    switch (a->type) {
    case NPY_F4: { float v; memcpy(&v, p, 4); return v; }
    case NPY_F8: { double v; memcpy(&v, p, 8); return v; }
    case NPY_U1: return *p;
    case NPY_I4: { int32_t v; memcpy(&v, p, 4); return v; }
    case NPY_I8: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case NPY_U2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case NPY_I2: { int16_t v; memcpy(&v, p, 2); return v; }
    }
    return 0;
}

/* The elements as finite float32 (a new buffer), or an error naming the first bad one. */
static int npy_to_float(const char *path, const npy_array *a, float **out)
{
    float *f = malloc((size_t)a->count * sizeof *f);
    if (!f)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %lld floats", path,
                               (long long)a->count);
    for (int64_t i = 0; i < a->count; i++) {
        const double v = npy_get(a, i);
        if (!isfinite(v) || fabs(v) > FLT_MAX_AS_DOUBLE) {
            free(f);
            return brisk_error_set(BRISK_ENONFINITE, "%s: element %lld is %g (not a finite "
                                   "float32)", path, (long long)i, v);
        }
        f[i] = (float)v;
    }
    *out = f;
    return BRISK_OK;
}

int brisk_npy_read(const char *path, float **data, int *ndim, int64_t shape[4])
{
    if (!path || !data || !ndim || !shape)
        return brisk_error_set(BRISK_EINVAL, "npy_read: NULL argument");
    *data = NULL;
    npy_array a;
    int err = npy_load(path, &a);
    if (err == BRISK_OK)
        err = npy_to_float(path, &a, data);
    if (err == BRISK_OK) {
        *ndim = a.ndim;
        for (int i = 0; i < 4; i++)
            shape[i] = i < a.ndim ? a.shape[i] : 0;
    }
    free(a.data);
    return err;
}

int brisk__npy_read_ids(const char *path, int64_t limit, int32_t **ids, int64_t *n)
{
    *ids = NULL;
    *n = 0;
    npy_array a;
    int err = npy_load(path, &a);
    if (err == BRISK_OK && a.ndim != 1)
        err = brisk_error_set(BRISK_EFORMAT, "%s: token ids must be a 1-D array, this one has "
                              "%d dimensions", path, a.ndim);
    int32_t *out = NULL;
    if (err == BRISK_OK && !(out = malloc((size_t)a.count * sizeof *out)))
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %lld token ids", path,
                              (long long)a.count);
    for (int64_t i = 0; err == BRISK_OK && i < a.count; i++) {
        const double v = npy_get(&a, i);
        if (!(v >= 0 && v < (double)limit && v == floor(v)))
            err = brisk_error_set(BRISK_EFORMAT, "%s: element %lld is %g: token ids are whole "
                                  "numbers in 0..%lld", path, (long long)i, v,
                                  (long long)limit - 1);
        else
            out[i] = (int32_t)v;
    }
    free(a.data);
    if (err < 0) {
        free(out);
        return err;
    }
    *ids = out;
    *n = a.count;
    return BRISK_OK;
}

int brisk_npy_write(const char *path, const float *data, int64_t n_rows, int n_cols)
{
    if (!path || !data || n_rows < 1 || n_cols < 0)
        return brisk_error_set(BRISK_EINVAL, "npy_write: path %s, data %s, %lld x %d",
                               path ? path : "NULL", data ? "given" : "NULL",
                               (long long)n_rows, n_cols);
    char hdr[128];
    int len = n_cols ? snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, "
                                "'shape': (%lld, %d), }", (long long)n_rows, n_cols)
                     : snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, "
                                "'shape': (%lld,), }", (long long)n_rows);
    /* Pad with spaces so that the data starts at a multiple of 64 bytes, newline last. */
    const int total = (10 + len + 1 + 63) / 64 * 64;
    while (10 + len + 1 < total)
        hdr[len++] = ' ';
    hdr[len++] = '\n';
    /* The old file or the new one, never a part (brisk/fsutil.h). */
    brisk_outfile o;
    int err = brisk_outfile_open(&o, path);
    if (err < 0)
        return err;
    const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)len,
                                   (unsigned char)(len >> 8)};
    const size_t count = (size_t)n_rows * (size_t)(n_cols ? n_cols : 1);
    if (fwrite(pre, 1, 10, o.fp) != 10 || fwrite(hdr, 1, (size_t)len, o.fp) != (size_t)len ||
        fwrite(data, sizeof *data, count, o.fp) != count) {
        err = brisk_error_set(BRISK_EIO, "cannot write %s: %s", path, strerror(errno));
        brisk_outfile_abort(&o);
        return err;
    }
    return brisk_outfile_commit(&o);
}

/* ---- Data sets from arrays of doubles ---------------------------------------------------- */

/* Fills out's labels or targets from k values per sample (get(i) for i < n * k). */
static int set_targets(const char *what, int64_t n, int k, brisk_target_kind kind,
                       double (*get)(const void *, int64_t), const void *src, brisk_dataset *out)
{
    if (kind == BRISK_TARGET_CLASSES) {
        if (k != 1)
            return brisk_error_set(BRISK_EINVAL, "%s: class labels must be one per sample, "
                                   "not %d", what, k);
        if (!(out->y = malloc((size_t)n)))
            return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", what);
        int top = 0;
        for (int64_t i = 0; i < n; i++) {
            const double v = get(src, i);
            if (!(v >= 0 && v <= 255 && v == floor(v)))
                return brisk_error_set(BRISK_EINVAL, "%s: the label of sample %lld is %g: class "
                                       "labels must be integers 0..255 (for regression "
                                       "targets, load them as values)", what, (long long)i, v);
            out->y[i] = (uint8_t)v;
            top = out->y[i] > top ? out->y[i] : top;
        }
        out->classes = top + 1;
        return BRISK_OK;
    }
    float *t = malloc((size_t)n * (size_t)k * sizeof *t);
    if (!t)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", what);
    out->owned[1] = t;
    for (int64_t i = 0; i < n * k; i++) {
        const double v = get(src, i);
        if (!isfinite(v) || fabs(v) > FLT_MAX_AS_DOUBLE)
            return brisk_error_set(BRISK_ENONFINITE, "%s: target %d of sample %lld is %g",
                                   what, (int)(i % k), (long long)(i / k), v);
        t[i] = (float)v;
    }
    out->yf = t;
    out->targets = k;
    return BRISK_OK;
}

static double npy_get_v(const void *a, int64_t i)
{
    return npy_get((const npy_array *)a, i);
}

/* The features of a loaded .npy array into out (n, d, the image shape, x or xf). */
static int npy_features(const char *x_path, npy_array *px, brisk_dataset *out)
{
    const npy_array x = *px;
    if (x.ndim == 1 || x.ndim > 4) {
        return brisk_error_set(BRISK_EFORMAT, "%s: features have %d dimension%s: expected (N, D), "
                               "(N, H, W) or (N, C, H, W)", x_path, x.ndim, x.ndim == 1 ? "" : "s");
    }
    const int64_t n = x.shape[0], d64 = x.count / n;
    if (n > INT32_MAX || d64 > (1 << 24)) {
        return brisk_error_set(BRISK_EOVERFLOW, "%s: %lld samples of %lld features: at most %d "
                               "samples of %d features", x_path, (long long)n, (long long)d64,
                               INT32_MAX, 1 << 24);
    }
    out->n = n;
    out->d = (int)d64;
    if (x.ndim >= 3) {
        out->channels = x.ndim == 4 ? (int)x.shape[1] : 1;
        out->rows = (int)x.shape[x.ndim - 2];
        out->cols = (int)x.shape[x.ndim - 1];
    }
    if (x.type == NPY_U1) {
        out->x = x.data; /* uint8 keeps its compact form */
        px->data = NULL;
    } else {
        float *f = NULL;
        const int err = npy_to_float(x_path, &x, &f);
        if (err < 0)
            return err;
        out->owned[0] = f;
        out->xf = f;
    }
    return BRISK_OK;
}

int brisk_dataset_load_npy(const char *x_path, const char *y_path, brisk_target_kind kind,
                           brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "load_npy: out is NULL");
    memset(out, 0, sizeof *out);
    if (!x_path || !y_path)
        return brisk_error_set(BRISK_EINVAL, "load_npy: the %s path is NULL",
                               x_path ? "labels" : "features");
    if (kind != BRISK_TARGET_CLASSES && kind != BRISK_TARGET_VALUES)
        return brisk_error_set(BRISK_EINVAL, "load_npy: kind %d is not a brisk_target_kind",
                               (int)kind);
    npy_array x, y;
    memset(&y, 0, sizeof y);
    int err = npy_load(x_path, &x);
    if (err == BRISK_OK)
        err = npy_load(y_path, &y);
    if (err < 0)
        goto out;
    if ((err = npy_features(x_path, &x, out)) < 0)
        goto out;
    const int64_t n = out->n;
    if (y.ndim == 2 && y.shape[1] > 65536) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: %lld targets per sample: at most 65536",
                              y_path, (long long)y.shape[1]);
        goto out;
    }
    if (y.shape[0] != n || y.ndim > 2) {
        err = brisk_error_set(BRISK_EMISMATCH, "%s: %s %lld sample%s where %s has %lld (shape "
                              "(N) or (N, K) expected)", y_path, y.ndim > 2 ? "too many "
                              "dimensions;" : "", (long long)y.shape[0],
                              y.shape[0] == 1 ? "" : "s", x_path, (long long)n);
        goto out;
    }
    err = set_targets(y_path, n, y.ndim == 2 ? (int)y.shape[1] : 1, kind, npy_get_v, &y, out);
out:
    free(x.data);
    free(y.data);
    if (err < 0)
        brisk_dataset_free(out);
    return err;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

typedef struct csv_reader {
    const char *path;
    FILE *fp;
    uint64_t left;       /* bytes not yet read of the file's size at the open */
    unsigned char *buf;  /* CSV_CHUNK bytes read ahead */
    size_t at, len;
    char *line;          /* the current line, NUL-terminated, without its line end */
    size_t cap;
    long long lineno;
} csv_reader;

#define CSV_CHUNK ((size_t)1 << 16)

/* The next byte of the file, -1 at its end (its size at the open), -2 on a read error. */
static int csv_getc(csv_reader *r)
{
    if (r->at == r->len) {
        if (!r->left)
            return -1;
        const size_t want = r->left < CSV_CHUNK ? (size_t)r->left : CSV_CHUNK;
        const size_t got = fread(r->buf, 1, want, r->fp);
        if (got == 0)
            return ferror(r->fp) ? -2 : -1; /* a file that shrank ends where it ends */
        r->left -= got;
        r->at = 0;
        r->len = got;
    }
    return r->buf[r->at++];
}

/* The next non-blank line into r->line; a line ends at "\n", "\r\n" or a lone "\r" (old Mac
 * files). A UTF-8 byte-order mark at the start of the file is skipped. Returns 0 at the end,
 * 1, or an error. */
static int csv_next(csv_reader *r)
{
    for (;;) {
        size_t n = 0;
        int c;
        while ((c = csv_getc(r)) >= 0 && c != '\n' && c != '\r') {
            if (n + 2 > r->cap) {
                const size_t cap = r->cap ? 2 * r->cap : 256;
                char *l = realloc(r->line, cap);
                if (!l)
                    return brisk_error_set(BRISK_ENOMEM, "%s: out of memory at line %lld",
                                           r->path, r->lineno + 1);
                r->line = l;
                r->cap = cap;
            }
            r->line[n++] = (char)c;
        }
        if (c == -2)
            return brisk_error_set(BRISK_EIO, "%s: read error: %s", r->path, strerror(errno));
        if (c == -1 && n == 0)
            return 0;
        if (c == '\r') { /* "\r\n" is one line end */
            const int d = csv_getc(r);
            if (d == -2)
                return brisk_error_set(BRISK_EIO, "%s: read error: %s", r->path,
                                       strerror(errno));
            if (d >= 0 && d != '\n')
                r->at--; /* the byte just read is still in buf */
        }
        if (!r->line && !(r->line = malloc(r->cap = 256)))
            return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", r->path);
        r->line[n] = '\0';
        r->lineno++;
        if (r->lineno == 1 && n >= 3 && !memcmp(r->line, "\xEF\xBB\xBF", 3)) {
            memmove(r->line, r->line + 3, n - 2);
            n -= 3;
        }
        if (memchr(r->line, 0, n))
            return brisk_error_set(BRISK_EFORMAT, "%s: line %lld holds a NUL byte", r->path,
                                   r->lineno);
        const char *p = r->line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p)
            return 1;
        if (c == -1)
            return 0;
    }
}

/* A field as a message shows it: a byte-order mark as <U+FEFF>, control bytes as \xNN, at
 * most about 60 bytes (then "..."); into buf (size >= 80). */
static const char *csv_show(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 12 < size; p++) {
        if (n >= 60) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
        if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
            n += (size_t)snprintf(buf + n, size - n, "<U+FEFF>");
            p += 2;
        } else if (*p < 0x20 || *p == 0x7F) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02X", *p);
        } else {
            buf[n++] = (char)*p;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* Splits r->line in place into fields (quotes removed): stores the first max and returns
 * how many there are (more than max when the line has more), or an error. */
static int csv_split(csv_reader *r, char **fields, int max)
{
    int n = 0;
    char *p = r->line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *start = p, *w = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p)
                    return brisk_error_set(BRISK_EFORMAT, "%s: line %lld, column %d: a quoted "
                                           "field is not closed", r->path, r->lineno, n + 1);
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p && *p != ',')
                return brisk_error_set(BRISK_EFORMAT, "%s: line %lld, column %d: text after "
                                       "a quoted field", r->path, r->lineno, n + 1);
        } else {
            while (*p && *p != ',')
                p++;
            w = p;
            while (w > start && (w[-1] == ' ' || w[-1] == '\t'))
                w--;
        }
        const char sep = *p;
        *w = 0;
        if (n < max)
            fields[n] = start;
        if (n == INT32_MAX)
            return brisk_error_set(BRISK_EOVERFLOW, "%s: line %lld: too many fields",
                                   r->path, r->lineno);
        n++;
        if (sep != ',')
            break;
        p++;
    }
    return n;
}

static int cmp_name(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    const int c = strcmp(*x, *y);
    return c ? c : (x > y) - (x < y);
}

/* Column names must differ: returns BRISK_OK or BRISK_EFORMAT naming the first name that
 * two columns share, and both columns. */
static int csv_unique_names(const char *path, char **names, int cols)
{
    char **sorted = malloc((size_t)cols * sizeof *sorted);
    if (!sorted)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
    memcpy(sorted, names, (size_t)cols * sizeof *sorted);
    qsort(sorted, (size_t)cols, sizeof *sorted, cmp_name);
    int err = BRISK_OK;
    for (int i = 1; i < cols && err == BRISK_OK; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) {
            int first = -1, second = -1;
            for (int c = 0; c < cols && second < 0; c++)
                if (!strcmp(names[c], sorted[i]))
                    *(first < 0 ? &first : &second) = c;
            char shown[96];
            err = brisk_error_set(BRISK_EFORMAT, "%s: line 1: columns %d and %d are both named "
                                  "'%s': column names must differ", path, first + 1,
                                  second + 1, csv_show(sorted[i], shown, sizeof shown));
        }
    free(sorted);
    return err;
}

static double csv_get_v(const void *v, int64_t i)
{
    return ((const double *)v)[i];
}

/* A CSV file into out: the label_column as labels or targets, every other column a feature;
 * without a label column (NULL), every column is a feature. */
static int csv_load(const char *path, const char *label_column, brisk_target_kind kind,
                    brisk_dataset *out)
{
    enum { MAX_COLS = 1 << 16 };
    csv_reader r = {.path = path};
    int err = brisk_file_open(path, 0, &r.fp, &r.left);
    if (err < 0)
        return err;
    r.buf = malloc(CSV_CHUNK);
    char **fields = malloc((MAX_COLS + 1) * sizeof *fields);
    char **names = NULL;
    float *x = NULL;  /* features, (n, d) */
    double *y = NULL; /* labels or targets, (n) */
    int64_t n = 0, cap = 0;
    err = fields && r.buf ? BRISK_OK : brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
    int cols = 0, label = -1;
    if (err == BRISK_OK && (err = csv_next(&r)) == 0)
        err = brisk_error_set(BRISK_EEMPTY, "%s: the file is empty (no header row)", path);
    if (err < 0)
        goto out;
    if ((cols = csv_split(&r, fields, MAX_COLS)) < 0) {
        err = cols;
        goto out;
    }
    if (cols > MAX_COLS || cols < (label_column ? 2 : 1)) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: line %lld, the header: %d column%s: need "
                              "%sat least one feature, and at most %d columns", path, r.lineno,
                              cols, cols == 1 ? "" : "s",
                              label_column ? "a label column and " : "", MAX_COLS);
        goto out;
    }
    /* The label column: a header name first, then an index. */
    if (!(names = calloc((size_t)cols, sizeof *names))) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int c = 0; c < cols; c++) {
        if (!(names[c] = strdup(fields[c]))) {
            err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        if (label_column && !strcmp(fields[c], label_column))
            label = c;
    }
    if ((err = csv_unique_names(path, names, cols)) < 0)
        goto out;
    if (label_column && label < 0) {
        char *end;
        errno = 0;
        const long v = strtol(label_column, &end, 10);
        if (!*end && !errno && v >= -cols && v < cols)
            label = v < 0 ? (int)(cols + v) : (int)v;
        else {
            err = brisk_error_set(BRISK_EINVAL, "%s: label column '%s' is neither a name in the "
                                  "header nor an index 0..%d (or -1 for the last)", path,
                                  label_column, cols - 1);
            goto out;
        }
    }
    const int d = label_column ? cols - 1 : cols;
    int got;
    while ((got = csv_next(&r)) > 0) {
        const int nf = csv_split(&r, fields, cols);
        if (nf < 0) {
            err = nf;
            goto out;
        }
        if (nf != cols) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: line %lld has %d field%s, the header %d",
                                  path, r.lineno, nf, nf == 1 ? "" : "s", cols);
            goto out;
        }
        if (n == cap) {
            const int64_t nc = cap ? 2 * cap : 1024;
            if (nc > INT32_MAX || (size_t)nc > SIZE_MAX / sizeof(double) / (size_t)cols) {
                err = brisk_error_set(BRISK_EOVERFLOW, "%s: too many rows", path);
                goto out;
            }
            float *nx = realloc(x, (size_t)nc * (size_t)(d ? d : 1) * sizeof *nx);
            if (nx)
                x = nx;
            double *ny = nx ? realloc(y, (size_t)nc * sizeof *ny) : NULL;
            if (!ny) {
                err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory at line %lld", path,
                                      r.lineno);
                goto out;
            }
            y = ny;
            cap = nc;
        }
        for (int c = 0, j = 0; c < cols; c++) {
            char *end;
            errno = 0;
            const double v = strtod(fields[c], &end);
            if (end == fields[c] || *end || !isfinite(v) || fabs(v) > FLT_MAX_AS_DOUBLE) {
                char name[96], field[96];
                err = brisk_error_set(BRISK_EFORMAT, "%s: line %lld, column %d ('%s'): '%s' is "
                                      "not a finite number", path, r.lineno, c + 1,
                                      csv_show(names[c], name, sizeof name),
                                      csv_show(fields[c], field, sizeof field));
                goto out;
            }
            if (c == label)
                y[n] = v;
            else
                x[(size_t)n * d + j++] = (float)v;
        }
        n++;
    }
    if (got < 0) {
        err = got;
        goto out;
    }
    if (n == 0) {
        err = brisk_error_set(BRISK_EEMPTY, "%s: a header but no rows", path);
        goto out;
    }
    out->n = n;
    out->d = d;
    out->owned[0] = x;
    out->xf = x;
    x = NULL;
    if (label >= 0) {
        char what[PATH_MAX + 64];
        snprintf(what, sizeof what, "%s (column '%s')", path, names[label]);
        err = set_targets(what, n, 1, kind, csv_get_v, y, out);
    }
out:
    if (err < 0)
        brisk_dataset_free(out);
    for (int c = 0; names && c < cols; c++)
        free(names[c]);
    free(names);
    free(fields);
    free(x);
    free(y);
    free(r.line);
    free(r.buf);
    fclose(r.fp);
    return err < 0 ? err : BRISK_OK;
}

int brisk_dataset_load_csv(const char *path, const char *label_column, brisk_target_kind kind,
                           brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "load_csv: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path || !label_column || !*label_column)
        return brisk_error_set(BRISK_EINVAL, "load_csv: the %s is NULL or empty",
                               path ? "label column" : "path");
    if (kind != BRISK_TARGET_CLASSES && kind != BRISK_TARGET_VALUES)
        return brisk_error_set(BRISK_EINVAL, "load_csv: kind %d is not a brisk_target_kind",
                               (int)kind);
    return csv_load(path, label_column, kind, out);
}

int brisk_dataset_load_features(const char *path, brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "load_features: out is NULL");
    memset(out, 0, sizeof *out);
    const size_t len = path ? strlen(path) : 0;
    if (len > 4 && !strcmp(path + len - 4, ".csv"))
        return csv_load(path, NULL, BRISK_TARGET_VALUES, out);
    if (!(len > 4 && !strcmp(path + len - 4, ".npy")))
        return brisk_error_set(BRISK_EINVAL, "load_features: '%s' is neither a .npy nor a .csv "
                               "file", path ? path : "(NULL)");
    npy_array x;
    int err = npy_load(path, &x);
    if (err == BRISK_OK && (err = npy_features(path, &x, out)) < 0)
        brisk_dataset_free(out);
    free(x.data);
    return err;
}
