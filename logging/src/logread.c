/* Reading a log directory back (brisk/logread.h). Event records are decoded by a small
 * protobuf scanner that allocates nothing (a scalar costs a few compares), not by protobuf-c:
 * a large log holds a hundred million scalars. Field numbers: docs/TENSORBOARD.md. */
#define _GNU_SOURCE
#include "brisk/logread.h"

#include "brisk/crc32c.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/tfrecord.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- protobuf wire format ---------------------------------------------------------------- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

typedef struct pb_field {
    uint32_t num;
    int wire;          /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
    uint64_t v;        /* varint or fixed value */
    const uint8_t *data; /* wire 2 */
    size_t len;
} pb_field;

static int pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return 0;
        const uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

/* Reads the next field: 1, 0 at the end, -1 when malformed. */
static int pb_next(pb *b, pb_field *f)
{
    if (b->p >= b->end)
        return 0;
    uint64_t key;
    if (!pb_varint(b, &key) || key >> 32 || (key >> 3) == 0)
        return -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0: return pb_varint(b, &f->v) ? 1 : -1;
    case 1:
        if (b->end - b->p < 8)
            return -1;
        memcpy(&f->v, b->p, 8);
        b->p += 8;
        return 1;
    case 5: {
        if (b->end - b->p < 4)
            return -1;
        uint32_t w;
        memcpy(&w, b->p, 4);
        f->v = w;
        b->p += 4;
        return 1;
    }
    case 2: {
        uint64_t n;
        if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p))
            return -1;
        f->data = b->p;
        f->len = (size_t)n;
        b->p += n;
        return 1;
    }
    default: return -1;
    }
}

static double pb_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static float pb_float(uint64_t bits)
{
    const uint32_t w = (uint32_t)bits;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}

/* ---- a run's contents ---------------------------------------------------------------------- */

typedef struct reader {
    lr_run *run;
    size_t cursor;   /* the scalar tag found last: tags repeat in rotation */
    /* Tensor tags' plugins: metadata comes with a tag's first value in a file only. */
    char **tensor_tags;
    char *tensor_kind; /* 't' text, 's' scalar, 'h' hparams, '?' other */
    size_t n_tensor_tags;
    uint8_t *buf; /* file bytes being read */
    size_t cap;
    int oom;
} reader;

static void run_problem(lr_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_problem(lr_run *run, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **p = realloc(run->problems, (run->n_problems + 1) * sizeof *p);
    char *copy = strdup(line);
    if (!p || !copy) {
        free(copy);
        if (p)
            run->problems = p;
        return;
    }
    run->problems = p;
    p[run->n_problems++] = copy;
}

static char *dup_n(const uint8_t *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

static int tag_eq(const char *tag, const uint8_t *s, size_t n)
{
    return strncmp(tag, (const char *)s, n) == 0 && tag[n] == '\0';
}

/* Tags are compared a word at a time: in an event a tag is followed by at least 9 bytes (its
 * value, the record's CRC), so 16 bytes may be read from where a tag of 9 or more starts. */
static inline __attribute__((always_inline)) int scalars_eq(const lr_scalars *sc,
                                                             const uint8_t *s, size_t n)
{
    if (sc->tag_len != n)
        return 0;
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    return memcmp(sc->tag, s, n) == 0;
#endif
    if (n > 16)
        return memcmp(sc->tag, s, n) == 0;
    /* Against the tag's first 16 bytes kept in the series itself (zero-padded): no load
     * through the tag's pointer. */
    uint64_t b0, b1 = 0;
    memcpy(&b0, s, 8);
    if (n > 8)
        memcpy(&b1, s + 8, 8);
    const uint64_t m0 = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1,
                   m1 = n <= 8 ? 0 : n >= 16 ? ~0ull : (1ull << (8 * (n - 8))) - 1;
    return ((b0 ^ sc->head[0]) & m0) == 0 && ((b1 ^ sc->head[1]) & m1) == 0;
}

/* Grows an array of elements of `size` bytes so that it holds n + 1. */
static int grow(void *arrp, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 1;
    const size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(*(void **)arrp, c * size);
    if (!p)
        return 0;
    *(void **)arrp = p;
    *cap = c;
    return 1;
}

static uint64_t hash_tag(const uint8_t *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

/* The scalar series of a tag in the run's index, or NULL. in_event: the tag lies in an
 * event record (scalars_eq may read past it); otherwise it is any n bytes. */
static lr_scalars *index_find(const lr_run *run, const uint8_t *tag, size_t n, int in_event)
{
    if (!run->index_size)
        return NULL;
    for (size_t i = hash_tag(tag, n) & (run->index_size - 1); run->scalar_index[i];
         i = (i + 1) & (run->index_size - 1)) {
        lr_scalars *s = &run->scalars[run->scalar_index[i] - 1];
        if (in_event ? scalars_eq(s, tag, n) : s->tag_len == n && !memcmp(s->tag, tag, n))
            return s;
    }
    return NULL;
}

static void index_put(lr_run *run, size_t k)
{
    const char *t = run->scalars[k].tag;
    size_t i = hash_tag((const uint8_t *)t, strlen(t)) & (run->index_size - 1);
    while (run->scalar_index[i])
        i = (i + 1) & (run->index_size - 1);
    run->scalar_index[i] = k + 1;
}

/* padded: at least 9 readable bytes follow the tag (read_scalar_event's layout), so that
 * scalars_eq may compare it a word at a time. */
static lr_scalars *find_scalars(reader *r, const uint8_t *tag, size_t n, int padded)
{
    lr_run *run = r->run;
    /* Tags mostly come in the same rotation every step: try the one after the last first. */
    if (run->n_scalars) {
        const size_t i = r->cursor < run->n_scalars ? r->cursor : 0;
        if (padded ? scalars_eq(&run->scalars[i], tag, n)
                   : run->scalars[i].tag_len == n && !memcmp(run->scalars[i].tag, tag, n)) {
            r->cursor = i + 1;
            return &run->scalars[i];
        }
    }
    lr_scalars *found = index_find(run, tag, n, padded);
    if (found) {
        r->cursor = (size_t)(found - run->scalars) + 1;
        return found;
    }
    lr_scalars *s = realloc(run->scalars, (run->n_scalars + 1) * sizeof *s);
    if (!s)
        return NULL;
    run->scalars = s;
    s = &run->scalars[run->n_scalars];
    memset(s, 0, sizeof *s);
    if (!(s->tag = calloc(n + 17, 1)))
        return NULL;
    memcpy(s->tag, tag, n);
    memcpy(s->head, s->tag, sizeof s->head); /* the first 16 bytes, zero-padded */
    s->tag_len = n;
    run->n_scalars++;
    if (2 * run->n_scalars > run->index_size) {
        const size_t size = run->index_size ? 2 * run->index_size : 64;
        size_t *idx = calloc(size, sizeof *idx);
        if (!idx) {
            free(s->tag);
            run->n_scalars--;
            return NULL;
        }
        free(run->scalar_index);
        run->scalar_index = idx;
        run->index_size = size;
        for (size_t k = 0; k + 1 < run->n_scalars; k++)
            index_put(run, k);
    }
    index_put(run, run->n_scalars - 1);
    r->cursor = run->n_scalars;
    return s;
}

/* Maps the pages of a large new array tail in one call rather than one fault each (a large
 * log fills a gigabyte of arrays: page faults were a third of the time). Best effort. */
static void prefault(void *p, size_t bytes)
{
#if defined(MADV_POPULATE_WRITE)
    if (bytes < ((size_t)256 << 10))
        return;
    const uintptr_t page = 4096, lo = ((uintptr_t)p + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* The index of the first of the series' n steps that is >= step. */
static size_t first_at_or_after(const lr_scalars *s, int64_t step)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (lr_step(s, mid) < step)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A series' steps stored from now on: as offsets from the first, or whole when `step` (the
 * next) or a step kept lies more than 2^32 - 1 past it. */
static int store_steps(lr_scalars *s, int64_t step)
{
    const size_t cap = s->cap ? s->cap : 1;
    if (!s->wide && (uint64_t)step - (uint64_t)s->base <= UINT32_MAX) {
        if (s->dstep)
            return 0;
        uint32_t *d = malloc(cap * sizeof *d);
        if (!d)
            return -1;
        for (size_t i = 0; i < s->n; i++) /* from the stride: all below step, so they fit */
            d[i] = (uint32_t)((uint64_t)i * (uint64_t)s->stride);
        s->dstep = d;
        return 0;
    }
    if (s->wide)
        return 0;
    int64_t *w = malloc(cap * sizeof *w);
    if (!w)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        w[i] = lr_step(s, i);
    free(s->dstep);
    s->dstep = NULL;
    s->wide = w;
    return 0;
}

static void add_scalar(reader *r, const uint8_t *tag, size_t tag_len, int64_t step, float value,
                       int padded)
{
    lr_scalars *s = find_scalars(r, tag, tag_len, padded);
    if (!s) {
        r->oom = 1;
        return;
    }
    if (s->n && step <= s->last) /* TensorBoard's purge: a restart at `step` */
        s->n = first_at_or_after(s, step);
    if (!s->n && (s->dstep || s->wide)) { /* all purged: start over with the stride */
        free(s->dstep);
        free(s->wide);
        s->dstep = NULL;
        s->wide = NULL;
    }
    /* Now step > every step kept. While no step is stored, the first two set base and stride,
     * and a step off the stride stores them from then on. */
    if (s->wide || s->dstep) {
        if (!s->wide && (uint64_t)step - (uint64_t)s->base > UINT32_MAX &&
            store_steps(s, step) < 0) {
            r->oom = 1;
            return;
        }
    } else if (s->n == 0) {
        s->base = step;
    } else if (s->n == 1) {
        s->stride = (int64_t)((uint64_t)step - (uint64_t)s->base);
    } else if ((uint64_t)step - (uint64_t)s->last != (uint64_t)s->stride &&
               store_steps(s, step) < 0) {
        r->oom = 1;
        return;
    }
    if (s->n == s->cap) {
        const size_t c = s->cap ? 2 * s->cap : 64;
        float *v = realloc(s->value, c * sizeof *v);
        if (!v) {
            r->oom = 1;
            return;
        }
        s->value = v;
        prefault(s->value + s->cap, (c - s->cap) * sizeof *v);
        void *st = s->wide ? (void *)s->wide : (void *)s->dstep;
        if (st) {
            const size_t each = s->wide ? sizeof *s->wide : sizeof *s->dstep;
            if (!(st = realloc(st, c * each))) {
                r->oom = 1;
                return;
            }
            if (s->wide)
                s->wide = st;
            else
                s->dstep = st;
            prefault((char *)st + s->cap * each, (c - s->cap) * each);
        }
        s->cap = c;
    }
    if (s->wide)
        s->wide[s->n] = step;
    else if (s->dstep)
        s->dstep[s->n] = (uint32_t)((uint64_t)step - (uint64_t)s->base);
    s->value[s->n++] = value;
    s->last = step;
}

/* Percentiles of a HistogramProto by linear interpolation inside its buckets, whose outer
 * edges are clipped to the histogram's min and max. */
static void hist_bands(double mn, double mx, const double *limits, const double *counts,
                       size_t nb, double q[LR_BANDS])
{
    static const double bps[LR_BANDS] = {0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000};
    double total = 0;
    for (size_t i = 0; i < nb; i++)
        total += counts[i] > 0 ? counts[i] : 0;
    for (int k = 0; k < LR_BANDS; k++) {
        if (total <= 0 || k == 0) {
            q[k] = total <= 0 ? 0 : mn;
            continue;
        }
        if (k == LR_BANDS - 1) {
            q[k] = mx;
            continue;
        }
        const double target = bps[k] / 10000.0 * total;
        double cum = 0;
        q[k] = mx;
        for (size_t i = 0; i < nb; i++) {
            const double c = counts[i] > 0 ? counts[i] : 0;
            if (c > 0 && cum + c >= target) {
                double lo = i ? limits[i - 1] : mn, hi = limits[i];
                if (lo < mn)
                    lo = mn;
                if (hi > mx)
                    hi = mx;
                if (hi < lo)
                    hi = lo;
                q[k] = lo + (hi - lo) * ((target - cum) / c);
                break;
            }
            cum += c;
        }
    }
}

/* A packed (or unpacked) repeated double field, appended to *arr. */
static int add_doubles(const pb_field *f, double **arr, size_t *n, size_t *cap)
{
    if (f->wire == 1) {
        if (!grow(arr, cap, *n, sizeof **arr))
            return 0;
        (*arr)[(*n)++] = pb_double(f->v);
        return 1;
    }
    if (f->wire != 2 || f->len % 8)
        return -1;
    for (size_t i = 0; i < f->len; i += 8) {
        if (!grow(arr, cap, *n, sizeof **arr))
            return 0;
        uint64_t bits;
        memcpy(&bits, f->data + i, 8);
        (*arr)[(*n)++] = pb_double(bits);
    }
    return 1;
}

static int add_histogram(reader *r, const uint8_t *tag, size_t tag_len, int64_t step,
                         const uint8_t *data, size_t len)
{
    double mn = 0, mx = 0, *limits = NULL, *counts = NULL;
    size_t nl = 0, cl = 0, nc = 0, cc = 0;
    pb b = {data, data + len};
    pb_field f;
    int rc, ok = 1;
    while (ok > 0 && (rc = pb_next(&b, &f)) == 1) {
        if (f.num == 1 && f.wire == 1)
            mn = pb_double(f.v);
        else if (f.num == 2 && f.wire == 1)
            mx = pb_double(f.v);
        else if (f.num == 6)
            ok = add_doubles(&f, &limits, &nl, &cl);
        else if (f.num == 7)
            ok = add_doubles(&f, &counts, &nc, &cc);
    }
    if (ok == 0)
        r->oom = 1;
    if (ok <= 0 || rc < 0 || nl != nc) {
        free(limits);
        free(counts);
        return ok == 0 ? 0 : -1;
    }
    lr_run *run = r->run;
    lr_histograms *h = NULL;
    for (size_t i = 0; i < run->n_hists && !h; i++)
        if (tag_eq(run->hists[i].tag, tag, tag_len))
            h = &run->hists[i];
    if (!h) {
        lr_histograms *hs = realloc(run->hists, (run->n_hists + 1) * sizeof *hs);
        if (hs)
            run->hists = hs;
        char *t = hs ? dup_n(tag, tag_len) : NULL;
        if (!t) {
            r->oom = 1;
            free(limits);
            free(counts);
            return 0;
        }
        h = &run->hists[run->n_hists++];
        memset(h, 0, sizeof *h);
        h->tag = t;
    }
    while (h->n && step <= h->p[h->n - 1].step) /* the purge rule, as for scalars */
        h->n--;
    if (!grow(&h->p, &h->cap, h->n, sizeof *h->p)) {
        r->oom = 1;
    } else {
        h->p[h->n].step = step;
        hist_bands(mn, mx, limits, counts, nl, h->p[h->n].q);
        h->n++;
    }
    free(limits);
    free(counts);
    return 1;
}

/* Keeps the latest blob of a tag (images: PNG bytes; texts: UTF-8). */
static void set_blob(reader *r, lr_blob **arr, size_t *n, const uint8_t *tag, size_t tag_len,
                     int64_t step, const uint8_t *data, size_t size, int w, int h)
{
    lr_blob *bl = NULL;
    for (size_t i = 0; i < *n && !bl; i++)
        if (tag_eq((*arr)[i].tag, tag, tag_len))
            bl = &(*arr)[i];
    if (!bl) {
        lr_blob *a = realloc(*arr, (*n + 1) * sizeof *a);
        char *t = a ? dup_n(tag, tag_len) : NULL;
        if (a)
            *arr = a;
        if (!t) {
            r->oom = 1;
            return;
        }
        bl = &a[(*n)++];
        memset(bl, 0, sizeof *bl);
        bl->tag = t;
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        r->oom = 1;
        return;
    }
    memcpy(copy, data, size);
    free(bl->data);
    bl->data = copy;
    bl->size = size;
    bl->step = step;
    bl->width = w;
    bl->height = h;
}

static void add_hparam(reader *r, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    pb b = {val, val + val_len};
    pb_field f;
    char text[64];
    const uint8_t *str = NULL;
    size_t str_len = 0;
    double number = 0;
    int is_number = 0, have = 0;
    while (pb_next(&b, &f) == 1) {
        if (f.num == 2 && f.wire == 1) {
            number = pb_double(f.v);
            is_number = have = 1;
            /* The shortest text that reads back as the number (as a float when the writer
             * stored a float's value, as Brisk's does). */
            const int is_float = (double)(float)number == number;
            for (int p = 6; p <= 17; p++) {
                snprintf(text, sizeof text, "%.*g", p, number);
                if (is_float ? strtof(text, NULL) == (float)number : strtod(text, NULL) == number)
                    break;
            }
            str = (const uint8_t *)text;
            str_len = strlen(text);
        } else if (f.num == 3 && f.wire == 2) {
            str = f.data;
            str_len = f.len;
            is_number = 0;
            have = 1;
        } else if (f.num == 4 && f.wire == 0) {
            str = (const uint8_t *)(f.v ? "true" : "false");
            str_len = strlen((const char *)str);
            is_number = 0;
            have = 1;
        }
    }
    if (!have)
        return;
    lr_run *run = r->run;
    lr_hparam *hp = NULL;
    for (size_t i = 0; i < run->n_hparams && !hp; i++)
        if (tag_eq(run->hparams[i].name, key, key_len))
            hp = &run->hparams[i];
    if (!hp) {
        lr_hparam *a = realloc(run->hparams, (run->n_hparams + 1) * sizeof *a);
        char *name = a ? dup_n(key, key_len) : NULL;
        if (a)
            run->hparams = a;
        if (!name) {
            r->oom = 1;
            return;
        }
        hp = &run->hparams[run->n_hparams++];
        memset(hp, 0, sizeof *hp);
        hp->name = name;
    }
    char *t = dup_n(str, str_len);
    if (!t) {
        r->oom = 1;
        return;
    }
    free(hp->text);
    hp->text = t;
    hp->number = number;
    hp->is_number = is_number;
}

/* HParamsPluginData: session_start_info=3 {hparams=1 map}, session_end_info=4 {status=1}. */
static void read_hparams(reader *r, const uint8_t *data, size_t len)
{
    pb b = {data, data + len};
    pb_field f;
    while (pb_next(&b, &f) == 1) {
        if (f.wire != 2)
            continue;
        pb in = {f.data, f.data + f.len};
        pb_field g;
        if (f.num == 2) { /* Experiment: metric_infos=5 {name=1 {group=1, tag=2}} */
            while (pb_next(&in, &g) == 1) {
                if (g.num != 5 || g.wire != 2)
                    continue;
                pb mi = {g.data, g.data + g.len};
                pb_field h;
                while (pb_next(&mi, &h) == 1) {
                    if (h.num != 1 || h.wire != 2)
                        continue;
                    pb mn = {h.data, h.data + h.len};
                    pb_field k;
                    char name[512] = "";
                    const uint8_t *grp = NULL, *tg = NULL;
                    size_t grp_len = 0, tg_len = 0;
                    while (pb_next(&mn, &k) == 1)
                        if (k.num == 1 && k.wire == 2) {
                            grp = k.data;
                            grp_len = k.len;
                        } else if (k.num == 2 && k.wire == 2) {
                            tg = k.data;
                            tg_len = k.len;
                        }
                    if (!tg || grp_len + tg_len + 2 > sizeof name)
                        continue;
                    snprintf(name, sizeof name, "%.*s\t%.*s", (int)grp_len,
                             grp ? (const char *)grp : "", (int)tg_len, (const char *)tg);
                    lr_run *run = r->run;
                    int dup = 0;
                    for (size_t i = 0; i < run->n_metrics; i++)
                        dup |= !strcmp(run->metrics[i], name);
                    char **m = dup ? NULL : realloc(run->metrics, (run->n_metrics + 1) * sizeof *m);
                    if (m) {
                        run->metrics = m;
                        if ((m[run->n_metrics] = strdup(name)))
                            run->n_metrics++;
                    }
                }
            }
        } else if (f.num == 3) {
            while (pb_next(&in, &g) == 1) {
                if (g.num != 1 || g.wire != 2)
                    continue;
                pb e = {g.data, g.data + g.len};
                pb_field h;
                const uint8_t *key = NULL, *val = NULL;
                size_t key_len = 0, val_len = 0;
                while (pb_next(&e, &h) == 1)
                    if (h.num == 1 && h.wire == 2) {
                        key = h.data;
                        key_len = h.len;
                    } else if (h.num == 2 && h.wire == 2) {
                        val = h.data;
                        val_len = h.len;
                    }
                if (key && val)
                    add_hparam(r, key, key_len, val, val_len);
            }
        } else if (f.num == 4) {
            r->run->session_status = 3;
            while (pb_next(&in, &g) == 1)
                if (g.num == 1 && g.wire == 0 && g.v >= 1 && g.v <= 3)
                    r->run->session_status = (int)g.v;
        }
    }
}

static char tensor_kind_of(reader *r, const uint8_t *tag, size_t tag_len, const char *plugin,
                           size_t plugin_len)
{
    for (size_t i = 0; i < r->n_tensor_tags; i++)
        if (tag_eq(r->tensor_tags[i], tag, tag_len)) {
            if (plugin)
                break;
            return r->tensor_kind[i];
        }
    if (!plugin)
        return '?';
    char kind = '?';
    if (plugin_len == 4 && !memcmp(plugin, "text", 4))
        kind = 't';
    else if (plugin_len == 7 && !memcmp(plugin, "scalars", 7))
        kind = 's';
    else if (plugin_len == 7 && !memcmp(plugin, "hparams", 7))
        kind = 'h';
    char **tt = realloc(r->tensor_tags, (r->n_tensor_tags + 1) * sizeof *tt);
    if (tt)
        r->tensor_tags = tt;
    char *tk = tt ? realloc(r->tensor_kind, r->n_tensor_tags + 1) : NULL;
    if (tk)
        r->tensor_kind = tk;
    char *t = tk ? dup_n(tag, tag_len) : NULL;
    if (!t) {
        r->oom = 1;
        return kind;
    }
    r->tensor_tags[r->n_tensor_tags] = t;
    r->tensor_kind[r->n_tensor_tags++] = kind;
    return kind;
}

/* Summary.Value: returns 1, or -1 when malformed. */
static int read_value(reader *r, int64_t step, const uint8_t *data, size_t len)
{
    pb b = {data, data + len};
    pb_field f;
    const uint8_t *tag = NULL, *image = NULL, *histo = NULL, *tensor = NULL, *meta = NULL;
    size_t tag_len = 0, image_len = 0, histo_len = 0, tensor_len = 0, meta_len = 0;
    int has_simple = 0, rc;
    float simple = 0;
    while ((rc = pb_next(&b, &f)) == 1) {
        switch (f.num) {
        case 1: if (f.wire != 2) return -1; tag = f.data; tag_len = f.len; break;
        case 2: if (f.wire != 5) return -1; simple = pb_float(f.v); has_simple = 1; break;
        case 4: if (f.wire != 2) return -1; image = f.data; image_len = f.len; break;
        case 5: if (f.wire != 2) return -1; histo = f.data; histo_len = f.len; break;
        case 8: if (f.wire != 2) return -1; tensor = f.data; tensor_len = f.len; break;
        case 9: if (f.wire != 2) return -1; meta = f.data; meta_len = f.len; break;
        default: break;
        }
    }
    if (rc < 0 || !tag || !tag_len)
        return rc < 0 ? -1 : 1;
    if (has_simple) {
        add_scalar(r, tag, tag_len, step, simple, 0);
        return 1;
    }
    if (histo)
        return add_histogram(r, tag, tag_len, step, histo, histo_len) < 0 ? -1 : 1;
    if (image) {
        pb in = {image, image + image_len};
        int w = 0, h = 0;
        const uint8_t *png = NULL;
        size_t png_len = 0;
        while ((rc = pb_next(&in, &f)) == 1)
            if (f.num == 1 && f.wire == 0)
                h = (int)f.v;
            else if (f.num == 2 && f.wire == 0)
                w = (int)f.v;
            else if (f.num == 4 && f.wire == 2) {
                png = f.data;
                png_len = f.len;
            }
        if (rc < 0)
            return -1;
        if (png)
            set_blob(r, &r->run->images, &r->run->n_images, tag, tag_len, step, png, png_len,
                     w, h);
        return 1;
    }
    if (!tensor)
        return 1;
    /* The plugin, from the metadata (SummaryMetadata.plugin_data.plugin_name, content). */
    const char *plugin = NULL;
    size_t plugin_len = 0;
    const uint8_t *content = NULL;
    size_t content_len = 0;
    if (meta) {
        pb m = {meta, meta + meta_len};
        while (pb_next(&m, &f) == 1)
            if (f.num == 1 && f.wire == 2) {
                pb pd = {f.data, f.data + f.len};
                pb_field g;
                while (pb_next(&pd, &g) == 1)
                    if (g.num == 1 && g.wire == 2) {
                        plugin = (const char *)g.data;
                        plugin_len = g.len;
                    } else if (g.num == 2 && g.wire == 2) {
                        content = g.data;
                        content_len = g.len;
                    }
            }
    }
    const char kind = tensor_kind_of(r, tag, tag_len, plugin, plugin_len);
    if (kind == 'h') {
        if (content)
            read_hparams(r, content, content_len);
        return 1;
    }
    /* TensorProto: dtype=1, tensor_content=4, float_val=5, string_val=8. */
    pb t = {tensor, tensor + tensor_len};
    const uint8_t *str = NULL, *raw = NULL;
    size_t str_len = 0, raw_len = 0;
    int have_float = 0;
    float fv = 0;
    while ((rc = pb_next(&t, &f)) == 1) {
        if (f.num == 8 && f.wire == 2 && !str) {
            str = f.data;
            str_len = f.len;
        } else if (f.num == 4 && f.wire == 2) {
            raw = f.data;
            raw_len = f.len;
        } else if (f.num == 5 && f.wire == 2 && f.len >= 4) {
            uint32_t w;
            memcpy(&w, f.data, 4);
            fv = pb_float(w);
            have_float = 1;
        } else if (f.num == 5 && f.wire == 5) {
            fv = pb_float(f.v);
            have_float = 1;
        }
    }
    if (rc < 0)
        return -1;
    if (kind == 't' && str)
        set_blob(r, &r->run->texts, &r->run->n_texts, tag, tag_len, step, str, str_len, 0, 0);
    else if (kind == 's') {
        if (!have_float && raw && raw_len == 4) {
            uint32_t w;
            memcpy(&w, raw, 4);
            fv = pb_float(w);
            have_float = 1;
        }
        if (have_float)
            add_scalar(r, tag, tag_len, step, fv, 0);
    }
    return 1;
}

/* The common case, a scalar written as by Brisk's logger and TensorFlow's writers:
 * wall_time (09 + 8 bytes), step (10 + varint), summary (2a len) holding one value (0a len)
 * of a tag (0a len tag) and a simple_value (15 + 4 bytes), nothing else. Returns 1 when the
 * event was this and was added, 0 when it is not (the general reader then reads it). */
static int read_scalar_event(reader *r, const uint8_t *d, size_t len)
{
    const uint8_t *end = d + len;
    if (len < 20 || d[0] != 0x09 || d[9] != 0x10)
        return 0;
    pb b = {d + 10, end};
    uint64_t step;
    if (!pb_varint(&b, &step) || end - b.p < 8 || b.p[0] != 0x2a)
        return 0;
    const uint8_t *p = b.p + 1;
    const size_t summary_len = *p++;
    if (summary_len >= 0x80 || (size_t)(end - p) != summary_len || p[0] != 0x0a)
        return 0;
    const size_t value_len = p[1];
    if (value_len >= 0x80 || value_len + 2 != summary_len || p[2] != 0x0a)
        return 0;
    const size_t tag_len = p[3];
    if (tag_len >= 0x80 || tag_len == 0 || tag_len + 7 != value_len || p[4 + tag_len] != 0x15)
        return 0;
    uint32_t bits;
    memcpy(&bits, p + 5 + tag_len, 4);
    add_scalar(r, p + 4, tag_len, (int64_t)step, pb_float(bits), 1);
    return 1;
}

/* One Event: returns 1, or -1 when it is not a tensorboard.Event. */
static int read_event(reader *r, const uint8_t *data, size_t len)
{
    if (read_scalar_event(r, data, len))
        return 1;
    pb b = {data, data + len};
    pb_field f;
    int64_t step = 0;
    const uint8_t *summary = NULL;
    size_t summary_len = 0;
    int rc;
    while ((rc = pb_next(&b, &f)) == 1) {
        if (f.num == 2) {
            if (f.wire != 0)
                return -1;
            step = (int64_t)f.v;
        } else if (f.num == 5) {
            if (f.wire != 2)
                return -1;
            summary = f.data;
            summary_len = f.len;
        } else if (f.num == 1 && f.wire != 1) {
            return -1;
        }
    }
    if (rc < 0)
        return -1;
    if (!summary)
        return 1;
    pb s = {summary, summary + summary_len};
    while ((rc = pb_next(&s, &f)) == 1)
        if (f.num == 1) {
            if (f.wire != 2 || read_value(r, step, f.data, f.len) < 0)
                return -1;
        }
    return rc < 0 ? -1 : 1;
}

/* A file is read in chunks into the reader's buffer (read(), not mmap: mapping gigabytes of
 * logs costs more in page tables than copying them). */
#define CHUNK_BYTES ((size_t)256 << 10)

#if defined(__x86_64__) && defined(__GNUC__)
/* brisk_tfrecord_next's checks with the CRC instruction inline (SSE4.2): the two CRCs of a
 * record overlap in the pipeline instead of running one call after the other. */
__attribute__((target("sse4.2"))) static int next_record_sse42(const uint8_t *buf, size_t len,
                                                              size_t *off, const uint8_t **data,
                                                              size_t *n)
{
    const size_t at = *off;
    if (len - at < 12)
        return 0; /* the general reader says why */
    const uint8_t *p = buf + at;
    uint64_t rec_len;
    uint32_t len_crc, data_crc;
    memcpy(&rec_len, p, 8);
    memcpy(&len_crc, p + 8, 4);
    const uint32_t lc = brisk_crc32c_sse42(0, p, 8);
    if (BRISK_CRC32C_MASK(lc) != len_crc || rec_len > len - at - 12 || len - at - 12 - rec_len < 4)
        return 0;
    const uint32_t dc = brisk_crc32c_sse42(0, p + 12, (size_t)rec_len);
    memcpy(&data_crc, p + 12 + rec_len, 4);
    if (BRISK_CRC32C_MASK(dc) != data_crc)
        return 0;
    *data = p + 12;
    *n = (size_t)rec_len;
    *off = at + 16 + (size_t)rec_len;
    return 1;
}
#endif

/* A record found ahead of the one returned (records are checked in pairs). */
typedef struct rec_cursor {
    int has;
    size_t at, after; /* where the cached record starts, and the offset past it */
    const uint8_t *data;
    size_t n;
} rec_cursor;

#if defined(__x86_64__) && defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Two consecutive records checked together: their four CRC chains are independent, so the
 * CPU runs them side by side (one record's chain alone is latency-bound). Returns 1 with the
 * first in *data, *n, *off and the second cached in q, or 0 (the caller reads one). */
__attribute__((target("sse4.2"))) static int next_two_sse42(const uint8_t *buf, size_t len,
                                                           size_t *off, const uint8_t **data,
                                                           size_t *n, rec_cursor *q)
{
    const size_t a = *off;
    if (len - a < 32) /* two records of at least 16 bytes */
        return 0;
    uint64_t la, lb;
    memcpy(&la, buf + a, 8);
    if (la > len - a - 32) /* A, and B's 16 bytes at least, within len */
        return 0;
    const size_t b = a + 16 + (size_t)la;
    memcpy(&lb, buf + b, 8);
    if (lb > len - b - 16)
        return 0;
    uint32_t want[4];
    memcpy(&want[0], buf + a + 8, 4);
    memcpy(&want[1], buf + a + 12 + la, 4);
    memcpy(&want[2], buf + b + 8, 4);
    memcpy(&want[3], buf + b + 12 + lb, 4);
    const uint8_t *da = buf + a + 12, *db = buf + b + 12;
    size_t na = (size_t)la, nb = (size_t)lb;
    uint64_t x = 0xffffffffu, y = 0xffffffffu;
    for (; na >= 8 && nb >= 8; na -= 8, nb -= 8, da += 8, db += 8) {
        uint64_t u, v;
        memcpy(&u, da, 8);
        memcpy(&v, db, 8);
        x = __builtin_ia32_crc32di(x, u);
        y = __builtin_ia32_crc32di(y, v);
    }
    const uint32_t ca = brisk_crc32c_sse42(~(uint32_t)x, da, na),
                   cb = brisk_crc32c_sse42(~(uint32_t)y, db, nb),
                   cla = brisk_crc32c_sse42(0, buf + a, 8), clb = brisk_crc32c_sse42(0, buf + b, 8);
    if (BRISK_CRC32C_MASK(cla) != want[0] || BRISK_CRC32C_MASK(ca) != want[1] ||
        BRISK_CRC32C_MASK(clb) != want[2] || BRISK_CRC32C_MASK(cb) != want[3])
        return 0;
    *data = buf + a + 12;
    *n = (size_t)la;
    *off = b;
    *q = (rec_cursor){1, b, b + 16 + (size_t)lb, buf + b + 12, (size_t)lb};
    return 1;
}
#endif

/* The next record, as brisk_tfrecord_next (its errors and messages on anything unusual).
 * q: the record found ahead, reset whenever buf's contents move. */
static int next_record(rec_cursor *q, const uint8_t *buf, size_t len, size_t *off,
                       const uint8_t **data, size_t *n)
{
    if (q->has && q->at == *off) {
        q->has = 0;
        *data = q->data;
        *n = q->n;
        *off = q->after;
        return 1;
    }
    q->has = 0;
#if defined(__x86_64__) && defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (__builtin_cpu_supports("sse4.2") && *off < len &&
        (next_two_sse42(buf, len, off, data, n, q) || next_record_sse42(buf, len, off, data, n)))
        return 1;
#endif
    return brisk_tfrecord_next(buf, len, off, data, n);
}

static int fill(reader *r, int fd, size_t *have, uint64_t *left)
{
    while (*have < r->cap && *left > 0) {
        size_t want = r->cap - *have;
        if (want > *left)
            want = (size_t)*left;
        const ssize_t got = read(fd, r->buf + *have, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0) { /* the file shrank: what is there is all there is */
            *left = 0;
            break;
        }
        *have += (size_t)got;
        *left -= (uint64_t)got;
    }
    return 0;
}

static void read_file(reader *r, const char *path)
{
    lr_run *run = r->run;
    FILE *fp;
    uint64_t size;
    if (brisk_file_open(path, 0, &fp, &size) < 0) {
        run_problem(run, "%s", brisk_error_detail());
        return;
    }
    if (!r->buf) {
        if (!(r->buf = malloc(CHUNK_BYTES))) {
            r->oom = 1;
            fclose(fp);
            return;
        }
        r->cap = CHUNK_BYTES;
    }
    const int fd = fileno(fp);
    uint64_t left = size, base = 0; /* bytes not read yet; the file offset of buf[0] */
    size_t have = 0, pos = 0, records = 0;
    int torn = 0;
    for (;;) {
        if (fill(r, fd, &have, &left) < 0) {
            run_problem(run, "%s: cannot read at byte %llu: %s", path,
                        (unsigned long long)(base + have), strerror(errno));
            break;
        }
        const uint8_t *data;
        size_t n;
        int rc;
        rec_cursor q = {0};
        while ((rc = next_record(&q, r->buf, have, &pos, &data, &n)) == 1) {
            records++;
            if (read_event(r, data, n) < 0) {
                run_problem(run, "%s: record %zu (at byte %llu) is not a tensorboard.Event; "
                            "the records before it are shown", path, records,
                            (unsigned long long)(base + pos - n - 16));
                rc = 2;
                break;
            }
            if (r->oom) {
                rc = 2;
                break;
            }
        }
        if (rc == 2)
            break;
        if (rc == 0 && left == 0)
            break; /* a clean end */
        if (rc == BRISK_EFORMAT) {
            const char *d = brisk_error_detail(), *why = strstr(d, ": ");
            run_problem(run, "%s: the record at byte %llu: %s; the records before it are shown",
                        path, (unsigned long long)(base + pos), why ? why + 2 : d);
            break;
        }
        if (left == 0) { /* the file ends inside a record: being written, or cut */
            torn = 1;
            break;
        }
        /* Room for more: the partial record moves to the front, and a record larger than
         * the buffer grows it (its length has passed its CRC). */
        memmove(r->buf, r->buf + pos, have - pos);
        base += pos;
        have -= pos;
        pos = 0;
        if (have >= 8) {
            uint64_t len = 0;
            for (int i = 7; i >= 0; i--)
                len = len << 8 | r->buf[i];
            if (len <= size && len + 16 > r->cap) {
                uint8_t *nb = realloc(r->buf, (size_t)len + 16);
                if (!nb) {
                    r->oom = 1;
                    break;
                }
                r->buf = nb;
                r->cap = (size_t)len + 16;
            }
        }
    }
    fclose(fp);
    run->records += records;
    if (torn)
        run->torn = 1;
}

static void read_run(lr_run *run)
{
    reader r = {.run = run};
    for (size_t i = 0; i < run->n_files && !r.oom; i++)
        read_file(&r, run->files[i]);
    if (r.oom)
        run_problem(run, "%s: out of memory; part of the run is left out", run->name);
    for (size_t i = 0; i < r.n_tensor_tags; i++)
        free(r.tensor_tags[i]);
    free(r.tensor_tags);
    free(r.tensor_kind);
    free(r.buf);
}

/* ---- the directory walk ------------------------------------------------------------------ */

typedef struct walker {
    lr_log *log;
    struct {
        dev_t dev;
        ino_t ino;
    } *seen;
    size_t n_seen;
    int oom;
} walker;

static int first_visit(walker *w, const struct stat *st)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i].dev == st->st_dev && w->seen[i].ino == st->st_ino)
            return 0;
    void *p = realloc(w->seen, (w->n_seen + 1) * sizeof *w->seen);
    if (!p) {
        w->oom = 1;
        return 0;
    }
    w->seen = p;
    w->seen[w->n_seen].dev = st->st_dev;
    w->seen[w->n_seen++].ino = st->st_ino;
    return 1;
}

static void log_problem(lr_log *log, const char *line)
{
    char **p = realloc(log->problems, (log->n_problems + 1) * sizeof *p);
    char *copy = strdup(line);
    if (p)
        log->problems = p;
    if (!p || !copy) {
        free(copy);
        return;
    }
    p[log->n_problems++] = copy;
}

static lr_run *run_named(walker *w, const char *name)
{
    lr_log *log = w->log;
    for (size_t i = log->n_runs; i-- > 0;)
        if (!strcmp(log->runs[i].name, name))
            return &log->runs[i];
    lr_run *runs = realloc(log->runs, (log->n_runs + 1) * sizeof *runs);
    if (!runs)
        return NULL;
    log->runs = runs;
    lr_run *run = &runs[log->n_runs];
    memset(run, 0, sizeof *run);
    if (!(run->name = strdup(name)))
        return NULL;
    log->n_runs++;
    return run;
}

static void add_file(walker *w, const char *run_name, const char *path)
{
    lr_run *run = run_named(w, run_name);
    char *copy = run ? strdup(path) : NULL;
    char **files = copy ? realloc(run->files, (run->n_files + 1) * sizeof *files) : NULL;
    if (!files) {
        free(copy);
        w->oom = 1;
        return;
    }
    run->files = files;
    files[run->n_files++] = copy;
}

static void walk(walker *w, const char *dir, size_t root_len)
{
    char **names;
    size_t n;
    const int err = brisk_dir_names(dir, &names, &n);
    if (err < 0) {
        if (err == BRISK_ENOMEM)
            w->oom = 1;
        else
            log_problem(w->log, brisk_error_detail());
        return;
    }
    const char *run = strlen(dir) > root_len ? dir + root_len + 1 : ".";
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            free(names[i]);
            continue;
        }
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (first_visit(w, &st))
                walk(w, path, root_len);
        } else if (strstr(names[i], "tfevents") && !strstr(names[i], ".tmp.")) {
            if (stat(path, &st) != 0 || first_visit(w, &st))
                add_file(w, run, path);
        }
        free(names[i]);
    }
    free(names);
}

/* fn on every run of the log, the runs taken in turn by whichever thread is free. */
typedef struct pool_job {
    lr_log *log;
    void (*fn)(lr_run *run);
    _Atomic size_t next;
} pool_job;

static void *pool_main(void *arg)
{
    pool_job *job = arg;
    for (;;) {
        const size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->log->n_runs)
            return NULL;
        job->fn(&job->log->runs[i]);
    }
}

void lr_parallel(int threads, size_t jobs, void *(*fn)(void *), void *arg)
{
    if ((size_t)threads > jobs)
        threads = (int)jobs;
    pthread_t tid[8];
    int started = 0;
    for (int t = 1; t < threads && t < 8; t++)
        if (pthread_create(&tid[started], NULL, fn, arg) == 0)
            started++;
    fn(arg); /* this thread too; what a thread that failed to start would do is done here */
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

int lr_threads(int threads)
{
    if (threads > 0)
        return threads > 8 ? 8 : threads;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 8 ? 8 : (int)cpus;
}

static int cmp_run(const void *a, const void *b)
{
    return strcmp(((const lr_run *)a)->name, ((const lr_run *)b)->name);
}

int lr_log_read(const char *dir, int threads, lr_log *log)
{
    memset(log, 0, sizeof *log);
    if (!dir || !*dir)
        return brisk_error_set(BRISK_EINVAL, "log directory: empty path");
    char root[PATH_MAX];
    if (snprintf(root, sizeof root, "%s", dir) >= (int)sizeof root)
        return brisk_error_set(BRISK_EINVAL, "%s: the path is too long", dir);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        root[--len] = '\0';
    struct stat st;
    if (stat(root, &st) != 0)
        return brisk_error_set(errno == ENOENT ? BRISK_ENOENT : BRISK_EIO, "%s: %s", root,
                               strerror(errno));
    walker w = {.log = log};
    if (S_ISDIR(st.st_mode)) {
        first_visit(&w, &st);
        walk(&w, root, len);
    } else {
        add_file(&w, ".", root);
    }
    free(w.seen);
    if (w.oom) {
        lr_log_free(log);
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory listing the event files", root);
    }
    qsort(log->runs, log->n_runs, sizeof *log->runs, cmp_run);
    pool_job job = {.log = log, .fn = read_run};
    lr_parallel(lr_threads(threads), log->n_runs, pool_main, &job);
    for (size_t i = 0; i < log->n_runs; i++) {
        lr_run *run = &log->runs[i];
        for (size_t k = 0; k < run->n_problems; k++)
            log_problem(log, run->problems[k]);
    }
    return BRISK_OK;
}

static void free_blobs(lr_blob *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(b[i].tag);
        free(b[i].data);
    }
    free(b);
}

static void free_run(lr_run *run)
{
    free(run->name);
    for (size_t k = 0; k < run->n_files; k++)
        free(run->files[k]);
    free(run->files);
    for (size_t k = 0; k < run->n_scalars; k++) {
        free(run->scalars[k].tag);
        free(run->scalars[k].dstep);
        free(run->scalars[k].wide);
        free(run->scalars[k].value);
    }
    free(run->scalars);
    free(run->scalar_index);
    for (size_t k = 0; k < run->n_hists; k++) {
        free(run->hists[k].tag);
        free(run->hists[k].p);
    }
    free(run->hists);
    free_blobs(run->images, run->n_images);
    free_blobs(run->texts, run->n_texts);
    for (size_t k = 0; k < run->n_hparams; k++) {
        free(run->hparams[k].name);
        free(run->hparams[k].text);
    }
    free(run->hparams);
    for (size_t k = 0; k < run->n_metrics; k++)
        free(run->metrics[k]);
    free(run->metrics);
    for (size_t k = 0; k < run->n_problems; k++)
        free(run->problems[k]);
    free(run->problems);
}

void lr_log_free_threads(lr_log *log, int threads)
{
    /* Large logs give back a gigabyte of point arrays: unmapping it is worth two cores. */
    pool_job job = {.log = log, .fn = free_run};
    lr_parallel(lr_threads(threads), log->n_runs, pool_main, &job);
    free(log->runs);
    for (size_t i = 0; i < log->n_problems; i++)
        free(log->problems[i]);
    free(log->problems);
    memset(log, 0, sizeof *log);
}

void lr_log_free(lr_log *log)
{
    lr_log_free_threads(log, 1);
}

const lr_scalars *lr_run_scalars(const lr_run *run, const char *tag)
{
    return index_find(run, (const uint8_t *)tag, strlen(tag), 0);
}
