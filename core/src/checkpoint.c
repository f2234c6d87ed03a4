#include "brisk/checkpoint.h"

#include "brisk/ckptdir.h"
#include "brisk/crc32c.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"

#include <cJSON.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes tensors in host order, which must be little-endian"
#endif

/* What a checkpoint holds, in file order: every trained tensor, then the optimizer's m and v
 * of each ("optim.m.<name>", "optim.v.<name>"), then the buffers (running statistics), then
 * for each batch normalisation its num_batches_tracked (an int64 scalar, as PyTorch keeps
 * it: the optimizer steps). Save and load walk the same list. */
typedef struct entry {
    char name[80];
    int i64;                       /* an int64 scalar (num_batches_tracked), else float32 */
    const brisk_tensor_view *view; /* float32: the tensor */
    int slab;                      /* 0 params, 1 m, 2 v, 3 buffers, 4 and 5 their averages */
    size_t bytes;
} entry;

enum { SLAB_PARAMS, SLAB_M, SLAB_V, SLAB_BUFFERS, SLAB_EMA, SLAB_EMA_BUFFERS, N_SLABS };
static const char *const slab_prefix[N_SLABS] = {"", "optim.m.", "optim.v.", "", "ema.",
                                                 "ema."};

/* The entries of m (malloc'd; *n of them), or NULL when out of memory. With ema, the moving
 * average of the parameters and buffers follows everything else ("ema.<name>"). */
static entry *list_entries(const brisk_model *m, int ema, size_t *n)
{
    const int nt = brisk_model_num_tensors(m);
    entry *e = calloc(6 * (size_t)nt + (size_t)brisk_model_num_layers(m) + 1, sizeof *e);
    if (!e)
        return NULL;
    size_t k = 0;
    for (int s = SLAB_PARAMS; s <= SLAB_EMA_BUFFERS; s++) {
        if (s == SLAB_EMA) {
            for (int l = 0; l < brisk_model_num_layers(m); l++)
                if (brisk_model_layer(m, l)->ops->flags & BRISK_LAYER_COUNTS_BATCHES) {
                    snprintf(e[k].name, sizeof e[k].name, "%d.num_batches_tracked", l);
                    e[k].i64 = 1;
                    e[k].bytes = 8;
                    k++;
                }
            if (!ema)
                break;
        }
        for (int t = 0; t < nt; t++) {
            const brisk_tensor_view *v = brisk_model_tensor(m, t);
            if (v->buffer != (s == SLAB_BUFFERS || s == SLAB_EMA_BUFFERS))
                continue;
            snprintf(e[k].name, sizeof e[k].name, "%s%s", slab_prefix[s], v->name);
            e[k].view = v;
            e[k].slab = s;
            e[k].bytes = v->count * sizeof(float);
            k++;
        }
    }
    *n = k;
    return e;
}

/* "1x28x28" (an image), "784" (a vector) or "seq:128x1" (a sequence of 128 positions of 1
 * feature: token ids). */
static void shape_text(brisk_shape s, char *buf, size_t size)
{
    if (s.rank == 3)
        snprintf(buf, size, "%dx%dx%d", s.c, s.h, s.w);
    else if (s.rank == 2)
        snprintf(buf, size, "seq:%dx%d", s.w, s.c);
    else
        snprintf(buf, size, "%d", s.c);
}

/* The header is covered by its own CRC-32C: over the 8-byte size field and the JSON text with
 * the CRC's 8 hex digits replaced by zeros. cJSON prints without spaces, so the key and its
 * value appear exactly as HEADER_CRC_KEY "xxxxxxxx". */
#define HEADER_CRC_KEY "\"brisk.header_crc32c\":\""
#define HEADER_CRC_PLACEHOLDER "00000000"

static uint32_t header_crc(const char *header, size_t len)
{
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++)
        size_le[i] = (uint8_t)((uint64_t)len >> (8 * i));
    return brisk_crc32c(brisk_crc32c(0, size_le, 8), header, len);
}

static int add_meta(cJSON *meta, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_meta(cJSON *meta, const char *key, const char *fmt, ...)
{
    /* Sized for the value: a model line may be long (it used to be cut at 127 characters,
     * which left a checkpoint that could not be loaded). */
    va_list ap;
    va_start(ap, fmt);
    const int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!buf)
        return 0;
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)len + 1, fmt, ap);
    va_end(ap);
    const int ok = cJSON_AddStringToObject(meta, key, buf) != NULL;
    free(buf);
    return ok;
}

/* n floats as one string of "%.9g" values separated by spaces (exact for float32). */
static int add_floats(cJSON *meta, const char *key, const float *v, size_t n)
{
    char *buf = malloc(n * 17 + 1), *p = buf;
    if (!buf)
        return 0;
    *p = 0;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%.9g", i ? " " : "", (double)v[i]);
    const int ok = cJSON_AddStringToObject(meta, key, buf) != NULL;
    free(buf);
    return ok;
}

/* Parses exactly n floats; std: each must be > 0. Returns 0 or -1. */
static int parse_floats(const char *s, float *v, size_t n, int positive)
{
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        const double x = strtod(s, &end);
        if (end == s || errno || !isfinite(x) || fabs(x) > FLT_MAX || (positive && !(x > 0)) ||
            (*end && *end != ' '))
            return -1;
        v[i] = (float)x;
        s = end;
    }
    while (*s == ' ')
        s++;
    return *s ? -1 : 0;
}

/* brisk.policies: "lr_factor best0 best1 best2 best_epoch0 .. 2 wait0 .. 2". */
static int add_policies(cJSON *meta, const brisk_ckpt_policies *p)
{
    return add_meta(meta, "brisk.policies",
                    "%.9g %.17g %.17g %.17g %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                    " %" PRId64 " %" PRId64,
                    (double)p->lr_factor, p->best[0], p->best[1], p->best[2], p->best_epoch[0],
                    p->best_epoch[1], p->best_epoch[2], p->wait[0], p->wait[1], p->wait[2]);
}


/* The JSON header, padded with spaces so that the data starts at a multiple of 8. */
static char *build_header(const brisk_model *m, const entry *e, size_t n_entries,
                          uint32_t data_crc, const brisk_ckpt_position *pos, const char *config,
                          double ema_decay, size_t *len)
{
    const brisk_model_config *mc = brisk_model_get_config(m);
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    char spec[BRISK_MODEL_SPEC_MAX], input[64];
    brisk_model_describe(m, spec, sizeof spec);
    shape_text(mc->input, input, sizeof input);
    int ok = root && meta && cJSON_AddItemToObject(root, "__metadata__", meta);
    if (!ok)
        cJSON_Delete(meta);
    ok = ok && add_meta(meta, "format", "pt") && add_meta(meta, "brisk.version", "2") &&
         add_meta(meta, "brisk.header_crc32c", HEADER_CRC_PLACEHOLDER) &&
         add_meta(meta, "brisk.model", "%s", spec) &&
         add_meta(meta, "brisk.input", "%s", input) &&
         add_meta(meta, "brisk.loss", "%s", brisk_loss_name(mc->loss)) &&
         (mc->label_smoothing == 0.0f ||
          add_meta(meta, "brisk.label_smoothing", "%.9g", (double)mc->label_smoothing)) &&
         (mc->precision == BRISK_GEMM_FP32 || add_meta(meta, "brisk.precision", "bf16")) &&
         add_meta(meta, "brisk.epoch", "%" PRId64, pos->epoch) &&
         add_meta(meta, "brisk.batch", "%" PRId64, pos->batch) &&
         add_meta(meta, "brisk.steps_done", "%" PRId64, pos->steps_done) &&
         add_meta(meta, "brisk.seed", "%" PRIu64, pos->seed) &&
         add_meta(meta, "brisk.train_loss_sum", "%.17g", pos->train.loss_sum) &&
         add_meta(meta, "brisk.train_correct", "%" PRId64, pos->train.correct) &&
         add_meta(meta, "brisk.train_count", "%" PRId64, pos->train.count) &&
         add_policies(meta, &pos->policies) &&
         (pos->norm_count != 1 ||
          add_meta(meta, "brisk.normalize", "%.9g %.9g", (double)pos->norm_mean[0],
                   (double)pos->norm_std[0])) &&
         (pos->norm_count <= 1 ||
          (add_floats(meta, "brisk.feature_mean", pos->norm_mean, (size_t)pos->norm_count) &&
           add_floats(meta, "brisk.feature_std", pos->norm_std, (size_t)pos->norm_count))) &&
         add_meta(meta, "brisk.data_crc32c", "%08x", (unsigned)data_crc) &&
         (!config || cJSON_AddStringToObject(meta, "brisk.config", config)) &&
         (ema_decay == 0 || add_meta(meta, "brisk.ema_decay", "%.17g", ema_decay));
    size_t off = 0;
    for (size_t k = 0; ok && k < n_entries; k++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[k].name);
        double shape[BRISK_MAX_DIMS];
        int nd = 0;
        if (!e[k].i64)
            for (nd = 0; nd < e[k].view->ndim; nd++)
                shape[nd] = e[k].view->shape[nd];
        const double offs[2] = {(double)off, (double)(off + e[k].bytes)};
        cJSON *sh = nd ? cJSON_CreateDoubleArray(shape, nd) : cJSON_CreateArray();
        cJSON *of = cJSON_CreateDoubleArray(offs, 2);
        ok = t && sh && of && cJSON_AddStringToObject(t, "dtype", e[k].i64 ? "I64" : "F32");
        ok = ok && cJSON_AddItemToObject(t, "shape", sh);
        if (!ok)
            cJSON_Delete(sh);
        ok = ok && cJSON_AddItemToObject(t, "data_offsets", of);
        if (!ok)
            cJSON_Delete(of);
        off += e[k].bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json)
        return NULL;
    const size_t n = strlen(json), padded = (n + 8 + 7) / 8 * 8 - 8;
    char *out = realloc(json, padded + 1);
    if (!out) {
        free(json);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    /* The header's own CRC, over the size field and the header with the CRC's value zeroed,
     * written into the placeholder (the same length, so nothing moves). */
    char *slot = strstr(out, HEADER_CRC_KEY);
    if (!slot) {
        free(out);
        return NULL;
    }
    slot += strlen(HEADER_CRC_KEY);
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)header_crc(out, padded));
    memcpy(slot, hex, 8);
    return out;
}

/* The bytes of entry k: a slab's tensor, or the int64 step count. */
static const void *entry_data(const entry *e, const float *const slabs[N_SLABS],
                              const int64_t *steps)
{
    return e->i64 ? (const void *)steps : (const void *)(slabs[e->slab] + e->view->offset);
}

int brisk_checkpoint_save(const char *path, const brisk_model *m, const float *params,
                          const float *opt_m, const float *opt_v, const float *buffers,
                          const brisk_ckpt_position *pos, const char *config_json)
{
    return brisk_checkpoint_save_ema(path, m, params, opt_m, opt_v, buffers, NULL, NULL, 0, pos,
                                     config_json);
}

int brisk_checkpoint_save_ema(const char *path, const brisk_model *m, const float *params,
                              const float *opt_m, const float *opt_v, const float *buffers,
                              const float *ema_params, const float *ema_buffers,
                              double ema_decay, const brisk_ckpt_position *pos,
                              const char *config_json)
{
    const int ema = ema_params != NULL;
    if (ema && (!ema_buffers || !(ema_decay > 0 && ema_decay < 1)))
        return brisk_error_set(BRISK_EINVAL, "%s: an average of the weights needs its buffers "
                               "and a decay in (0, 1) (ema_decay %g)", path, ema_decay);
    const float *const slabs[N_SLABS] = {params, opt_m, opt_v, buffers, ema_params, ema_buffers};
    size_t n_entries;
    entry *e = list_entries(m, ema, &n_entries);
    if (!e)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory for the header", path);
    const int64_t steps = pos->steps_done;
    uint32_t crc = 0;
    for (size_t k = 0; k < n_entries; k++)
        crc = brisk_crc32c(crc, entry_data(&e[k], slabs, &steps), e[k].bytes);
    size_t hlen;
    char *header = build_header(m, e, n_entries, crc, pos, config_json, ema ? ema_decay : 0,
                                &hlen);
    if (!header) {
        free(e);
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory for the header", path);
    }
    /* Through a temporary file named by host and process (brisk/fsutil.h), so that a later
     * run can tell a dead writer's leftovers (brisk_ckpt_clean_temps) even in a directory
     * shared by machines; the old checkpoint or the new one, never a part. */
    brisk_outfile o;
    int err = brisk_outfile_open(&o, path);
    if (err < 0) {
        free(header);
        free(e);
        return err;
    }
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++)
        size_le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(size_le, 1, 8, o.fp) == 8 && fwrite(header, 1, hlen, o.fp) == hlen;
    for (size_t k = 0; ok && k < n_entries; k++)
        ok = fwrite(entry_data(&e[k], slabs, &steps), 1, e[k].bytes, o.fp) == e[k].bytes;
    free(header);
    free(e);
    if (!ok) {
        err = brisk_error_set(BRISK_EIO, "cannot write %s: %s", o.tmp, strerror(errno));
        brisk_outfile_abort(&o);
        return err;
    }
    brisk_failpoint("checkpoint-before-rename");
    return brisk_outfile_commit(&o);
}

void brisk_checkpoint_free(brisk_checkpoint *c)
{
    if (!c)
        return;
    free(c->config);
    free(c->norm);
    brisk_slab_free(c->params);
    brisk_slab_free(c->opt_m);
    brisk_slab_free(c->opt_v);
    brisk_slab_free(c->buffers);
    brisk_slab_free(c->ema_params);
    brisk_slab_free(c->ema_buffers);
    brisk_model_destroy(c->layout);
    free(c);
}

static int parse_policies(const char *s, brisk_ckpt_policies *p, int64_t epochs)
{
    double v[10];
    const char *at = s;
    for (int i = 0; i < 10; i++) {
        char *end;
        v[i] = strtod(at, &end);
        if (end == at || !isfinite(v[i]))
            return -1;
        at = end;
    }
    while (*at == ' ')
        at++;
    if (*at || !(v[0] >= 0 && v[0] <= 1))
        return -1;
    p->lr_factor = (float)v[0];
    for (int i = 0; i < 3; i++) {
        p->best[i] = v[1 + i];
        if (v[4 + i] != floor(v[4 + i]) || v[4 + i] < 0 || v[4 + i] > (double)epochs ||
            v[7 + i] != floor(v[7 + i]) || v[7 + i] < 0 || v[7 + i] > (double)epochs)
            return -1;
        p->best_epoch[i] = (int64_t)v[4 + i];
        p->wait[i] = (int64_t)v[7 + i];
    }
    return 0;
}

static const char *meta_str(const cJSON *meta, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int meta_i64(const char *path, const cJSON *meta, const char *key, int64_t lo,
                    int64_t hi, int64_t *out)
{
    const char *s = meta_str(meta, key);
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi)
        return brisk_error_set(BRISK_EFORMAT, "%s: metadata %s is %s%s%s (expected an integer "
                               "in %lld..%lld)",
                               path, key, s ? "'" : "missing", s ? s : "", s ? "'" : "",
                               (long long)lo, (long long)hi);
    *out = v;
    return BRISK_OK;
}

/* Finds the header's CRC and checks it (before the JSON is even parsed: a damaged header is
 * refused as damaged, whatever it now says). */
static int check_header_crc(const char *path, char *hdr, size_t hlen)
{
    char *slot = strstr(hdr, HEADER_CRC_KEY);
    if (!slot) {
        if (strstr(hdr, "\"brisk.version\":\"1\""))
            return brisk_error_set(BRISK_EFORMAT, "%s: written by an older Brisk whose "
                                   "checkpoints have no header CRC; it cannot be checked, so it "
                                   "is not loaded", path);
        return brisk_error_set(BRISK_EFORMAT, "%s: no brisk.header_crc32c in the metadata (not "
                               "a Brisk checkpoint, or its header was damaged)", path);
    }
    char *value = slot + strlen(HEADER_CRC_KEY);
    if ((size_t)(value - hdr) + 9 > hlen || value[8] != '"' ||
        strstr(value, HEADER_CRC_KEY))
        return brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.header_crc32c is malformed",
                               path);
    char want[9], *end;
    memcpy(want, value, 8);
    want[8] = '\0';
    const unsigned long w = strtoul(want, &end, 16);
    memcpy(value, HEADER_CRC_PLACEHOLDER, 8);
    const uint32_t got = header_crc(hdr, hlen);
    memcpy(value, want, 8);
    if (*end || end != want + 8)
        return brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.header_crc32c '%s' is not 8 "
                               "hex digits", path, want);
    if (got != (uint32_t)w)
        return brisk_error_set(BRISK_EFORMAT, "%s: header CRC-32C is %08x, the file says %s "
                               "(the header is corrupted or was edited)", path, (unsigned)got,
                               want);
    return BRISK_OK;
}

/* Checks one tensor entry of the header against what the model expects; returns its data
 * offset. */
static int check_tensor(const char *path, const cJSON *root, const entry *e, uint64_t data_len,
                        uint64_t *begin)
{
    const char *name = e->name;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsObject(t))
        return brisk_error_set(BRISK_EMISMATCH, "%s: tensor %s is missing", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const char *want_dt = e->i64 ? "I64" : "F32";
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, want_dt) != 0)
        return brisk_error_set(BRISK_EMISMATCH, "%s: tensor %s has dtype %s, expected %s", path,
                               name, cJSON_IsString(dt) ? dt->valuestring : "(none)", want_dt);
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const int want_dims = e->i64 ? 0 : e->view->ndim;
    int shape_ok = cJSON_IsArray(sh) && cJSON_GetArraySize(sh) == want_dims;
    for (int i = 0; shape_ok && i < want_dims; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        shape_ok = cJSON_IsNumber(d) && d->valuedouble == e->view->shape[i];
    }
    if (!shape_ok) {
        char want[96] = "[";
        size_t at = 1;
        for (int i = 0; i < want_dims; i++)
            at += (size_t)snprintf(want + at, sizeof want - at, "%s%d", i ? ", " : "",
                                   e->view->shape[i]);
        snprintf(want + at, sizeof want - at, "]");
        char *got = sh ? cJSON_PrintUnformatted(sh) : NULL;
        const int err = brisk_error_set(BRISK_EMISMATCH, "%s: tensor %s has shape %s, expected %s",
                                        path, name, got ? got : "(none)", want);
        free(got);
        return err;
    }
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    const cJSON *b = cJSON_IsArray(of) && cJSON_GetArraySize(of) == 2 ? cJSON_GetArrayItem(of, 0) : NULL;
    const cJSON *en = b ? cJSON_GetArrayItem(of, 1) : NULL;
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 ||
        en->valuedouble != b->valuedouble + (double)e->bytes || fmod(b->valuedouble, 1.0) != 0)
        return brisk_error_set(BRISK_EFORMAT, "%s: tensor %s has bad data_offsets (expected "
                               "[begin, begin + %zu])",
                               path, name, e->bytes);
    if (en->valuedouble > (double)data_len)
        return brisk_error_set(BRISK_ETRUNCATED, "%s: tensor %s ends at data byte %.0f but the "
                               "file has %llu data bytes (truncated?)",
                               path, name, en->valuedouble, (unsigned long long)data_len);
    *begin = (uint64_t)b->valuedouble;
    return BRISK_OK;
}

/* "1x28x28", "784" or "seq:128x1" (shape_text). */
static int parse_input(const char *s, brisk_shape *out)
{
    int c, h, w;
    char tail;
    if (s && sscanf(s, "seq:%dx%d%c", &w, &c, &tail) == 2 && c > 0 && w > 0) {
        *out = brisk_shape_seq(c, w);
        return 0;
    }
    if (s && sscanf(s, "%dx%dx%d%c", &c, &h, &w, &tail) == 3 && c > 0 && h > 0 && w > 0) {
        *out = brisk_shape_img(c, h, w);
        return 0;
    }
    if (s && sscanf(s, "%d%c", &c, &tail) == 1 && c > 0) {
        *out = brisk_shape_vec(c);
        return 0;
    }
    return -1;
}

int brisk_checkpoint_load(const char *path, brisk_checkpoint **out)
{
    *out = NULL;
    FILE *f;
    uint64_t size;
    const int open_err = brisk_file_open(path, 0, &f, &size);
    if (open_err < 0)
        return open_err;
    uint8_t size_le[8];
    if (size < 8 || fread(size_le, 1, 8, f) != 8) {
        fclose(f);
        return brisk_error_set(size == 0 ? BRISK_EEMPTY : BRISK_ETRUNCATED,
                               "%s: %llu bytes, too short for the 8-byte header size", path,
                               (unsigned long long)size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | size_le[i];
    if (hlen == 0 || hlen > BRISK_CKPT_MAX_HEADER) {
        fclose(f);
        return brisk_error_set(BRISK_EFORMAT, "%s: header size %llu is not in [1, %llu] (not a "
                               "safetensors file?)",
                               path, (unsigned long long)hlen,
                               (unsigned long long)BRISK_CKPT_MAX_HEADER);
    }
    if (hlen > size - 8) {
        fclose(f);
        return brisk_error_set(BRISK_ETRUNCATED, "%s: header of %llu bytes but only %llu bytes "
                               "follow (truncated?)",
                               path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    }
    char *hdr = malloc(hlen + 1);
    if (!hdr) {
        fclose(f);
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        free(hdr);
        fclose(f);
        return brisk_error_set(BRISK_EIO, "%s: read error in the header", path);
    }
    hdr[hlen] = '\0';
    const uint64_t data_len = size - 8 - hlen;
    int err = BRISK_OK;
    brisk_checkpoint *c = NULL;
    cJSON *root = NULL;
    if ((err = check_header_crc(path, hdr, (size_t)hlen)) < 0)
        goto out;
    root = cJSON_ParseWithLength(hdr, hlen);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        err = brisk_error_set(BRISK_EFORMAT, "%s: the header is not a JSON object (error near "
                              "header byte %ld)",
                              path, at && at >= hdr ? (long)(at - hdr) : -1L);
        goto out;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const char *spec = meta_str(meta, "brisk.model");
    if (!spec) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: no brisk.model in the metadata (not a Brisk "
                              "checkpoint)",
                              path);
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    brisk_shape input;
    const char *in_s = meta_str(meta, "brisk.input"), *loss = meta_str(meta, "brisk.loss");
    const int l = loss ? brisk_loss_parse(loss) : -1;
    if (parse_input(in_s, &input) < 0 || l < 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.input '%s' or brisk.loss '%s' "
                              "is not valid", path, in_s ? in_s : "(none)",
                              loss ? loss : "(none)");
        goto out;
    }
    if (brisk_model_config_set(&c->model, spec, input) < 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.model: %s", path,
                              brisk_error_detail());
        goto out;
    }
    c->model.loss = (brisk_loss)l;
    const char *smooth = meta_str(meta, "brisk.label_smoothing");
    if (smooth) {
        char *end;
        const double e = strtod(smooth, &end);
        if (end == smooth || *end || !(e > 0 && e < 1) || l != BRISK_LOSS_SOFTMAX_CE) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.label_smoothing '%s' is "
                                  "not in (0, 1) for the ce loss", path, smooth);
            goto out;
        }
        c->model.label_smoothing = (float)e;
    }
    const char *precision = meta_str(meta, "brisk.precision");
    if (precision && strcmp(precision, "bf16") && strcmp(precision, "fp32")) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.precision '%s' is not fp32 "
                              "or bf16", path, precision);
        goto out;
    }
    c->model.precision = precision && !strcmp(precision, "bf16") ? BRISK_GEMM_BF16
                                                                 : BRISK_GEMM_FP32;
    /* Every value within what training can produce: epochs as --epochs allows, steps far
     * below overflow, metrics that are counts. */
    int64_t seed = 0;
    const int64_t big = (int64_t)1 << 53;
    if ((err = meta_i64(path, meta, "brisk.epoch", 0, BRISK_CKPT_MAX_EPOCHS, &c->pos.epoch)) ||
        (err = meta_i64(path, meta, "brisk.batch", 0, big, &c->pos.batch)) ||
        (err = meta_i64(path, meta, "brisk.steps_done", 0, big, &c->pos.steps_done)) ||
        (err = meta_i64(path, meta, "brisk.seed", 0, INT64_MAX, &seed)) ||
        (err = meta_i64(path, meta, "brisk.train_count", 0, big, &c->pos.train.count)) ||
        (err = meta_i64(path, meta, "brisk.train_correct", 0, c->pos.train.count,
                        &c->pos.train.correct)))
        goto out;
    c->pos.seed = (uint64_t)seed;
    const char *ls = meta_str(meta, "brisk.train_loss_sum"), *crc_s = meta_str(meta, "brisk.data_crc32c");
    char *end = NULL;
    c->pos.train.loss_sum = ls ? strtod(ls, &end) : 0;
    if (!ls || end == ls || *end || !isfinite(c->pos.train.loss_sum) ||
        c->pos.train.loss_sum < 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.train_loss_sum is %s%s%s "
                              "(expected a finite number >= 0)",
                              path, ls ? "'" : "missing", ls ? ls : "", ls ? "'" : "");
        goto out;
    }
    unsigned long want_crc = crc_s ? strtoul(crc_s, &end, 16) : 0;
    if (!crc_s || end == crc_s || *end) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.data_crc32c is missing", path);
        goto out;
    }
    const char *pol = meta_str(meta, "brisk.policies");
    if (pol && parse_policies(pol, &c->pos.policies, c->pos.epoch) < 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.policies '%s' is not valid (a "
                              "rate factor in [0, 1], three finite values, best epochs and "
                              "waits from 0 to the epochs done)", path, pol);
        goto out;
    }
    /* The normalisation: per feature (brisk.feature_mean and brisk.feature_std), or one mean
     * and std for all (brisk.normalize); checkpoints of earlier versions may hold both, and
     * then the per-feature one is what they used. */
    const char *norm = meta_str(meta, "brisk.normalize");
    const char *fmean = meta_str(meta, "brisk.feature_mean"),
               *fstd = meta_str(meta, "brisk.feature_std");
    const size_t D = brisk_shape_size(c->model.input);
    if (fmean || fstd || norm) {
        /* Per feature whenever either per-feature field is there (a one-feature input has
         * count 1 either way: brisk.normalize may then be missing). */
        const int per_feature = fmean || fstd;
        const size_t count = per_feature ? D : 1;
        if (!(c->norm = malloc(2 * count * sizeof(float)))) {
            err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        double mu, sd;
        char tail;
        if (!per_feature &&
            (sscanf(norm, "%lf %lf %c", &mu, &sd, &tail) != 2 || !isfinite(mu) ||
             !(sd > 0 && isfinite(sd)) || fabs(mu) > FLT_MAX || sd > FLT_MAX)) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.normalize '%s' is not valid "
                                  "(a mean and a standard deviation > 0)", path, norm);
            goto out;
        }
        if (!per_feature) {
            c->norm[0] = (float)mu;
            c->norm[1] = (float)sd;
        } else if (!fmean || !fstd || parse_floats(fmean, c->norm, D, 0) < 0 ||
                   parse_floats(fstd, c->norm + D, D, 1) < 0) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.feature_mean and "
                                  "brisk.feature_std are not valid (%zu finite means and %zu "
                                  "standard deviations > 0, one per input feature)", path, D, D);
            goto out;
        }
        c->pos.norm_count = (int)count;
        c->pos.norm_mean = c->norm;
        c->pos.norm_std = c->norm + count;
    }
    const char *config = meta_str(meta, "brisk.config");
    if (config && !(c->config = strdup(config))) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (brisk_model_create(&c->model, &c->layout) < 0) {
        err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.model: %s", path,
                              brisk_error_detail());
        goto out;
    }
    const char *ema_s = meta_str(meta, "brisk.ema_decay");
    if (ema_s) {
        c->ema_decay = strtod(ema_s, &end);
        if (end == ema_s || *end || !(c->ema_decay > 0 && c->ema_decay < 1)) {
            err = brisk_error_set(BRISK_EFORMAT, "%s: metadata brisk.ema_decay '%s' is not in "
                                  "(0, 1)", path, ema_s);
            goto out;
        }
    }
    /* Every tensor checked before anything is read or allocated for data. */
    size_t n_entries;
    entry *e = list_entries(c->layout, ema_s != NULL, &n_entries);
    uint64_t *begins = malloc((n_entries + 1) * sizeof *begins);
    if (!e || !begins) {
        free(e);
        free(begins);
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    size_t total = 0;
    for (size_t k = 0; k < n_entries && !err; k++) {
        err = check_tensor(path, root, &e[k], data_len, &begins[k]);
        total += e[k].bytes;
    }
    /* Nothing unexpected either: an extra tensor means another model or a damaged file. */
    if (!err && (size_t)cJSON_GetArraySize(root) != 1 + n_entries)
        err = brisk_error_set(BRISK_EMISMATCH, "%s: %d tensors in the header, expected %zu for "
                              "model %s",
                              path, cJSON_GetArraySize(root) - 1, n_entries, spec);
    if (!err && data_len != total)
        err = brisk_error_set(BRISK_EFORMAT, "%s: %llu bytes after the last tensor", path,
                              (unsigned long long)(data_len - total));
    uint8_t *data = err ? NULL : malloc(data_len ? data_len : 1);
    if (!err && !data)
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %llu bytes", path,
                              (unsigned long long)data_len);
    if (!err && fread(data, 1, data_len, f) != data_len)
        err = brisk_error_set(BRISK_EIO, "%s: read error in the data", path);
    if (!err) {
        const uint32_t got = brisk_crc32c(0, data, data_len);
        if (got != (uint32_t)want_crc)
            err = brisk_error_set(BRISK_EFORMAT, "%s: data CRC-32C is %08x, the header says %08lx "
                                  "(the file is corrupted)",
                                  path, (unsigned)got, want_crc);
    }
    if (!err && (!(c->params = brisk_slab_alloc(c->layout)) ||
                 !(c->opt_m = brisk_slab_alloc(c->layout)) ||
                 !(c->opt_v = brisk_slab_alloc(c->layout)) ||
                 !(c->buffers = brisk_buffers_alloc(c->layout)) ||
                 (ema_s && (!(c->ema_params = brisk_slab_alloc(c->layout)) ||
                            !(c->ema_buffers = brisk_buffers_alloc(c->layout))))))
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory", path);
    float *const slabs[N_SLABS] = {c->params,  c->opt_m,      c->opt_v,
                                   c->buffers, c->ema_params, c->ema_buffers};
    for (size_t k = 0; k < n_entries && !err; k++)
        if (!e[k].i64)
            memcpy(slabs[e[k].slab] + e[k].view->offset, data + begins[k], e[k].bytes);
    free(data);
    free(begins);
    free(e);
out:
    cJSON_Delete(root);
    free(hdr);
    fclose(f);
    if (err) {
        brisk_checkpoint_free(c);
        return err;
    }
    *out = c;
    return BRISK_OK;
}
