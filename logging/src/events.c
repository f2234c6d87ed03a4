/* Turns ring records into framed tensorboard.Event records (field numbers and plugin
 * conventions: docs/TENSORBOARD.md). Runs on the logging thread only. */
#include "log_internal.h"

/* protobuf-c's structs hold strings as `char *` (and its INIT macros cast away const), though
 * packing never writes through them: pointing them at const data is safe here. */
#pragma GCC diagnostic ignored "-Wcast-qual"

#include "brisk/error.h"
#include "brisk/tfrecord.h"
#include "tb_event.pb-c.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

uint8_t *log_buf_reserve(log_buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

/* Packs the event straight into out between the record's header and footer. */
static int append_event(log_buf *out, const Tensorboard__Event *ev)
{
    const size_t n = protobuf_c_message_get_packed_size(&ev->base);
    uint8_t *rec = log_buf_reserve(out, n + BRISK_TFRECORD_OVERHEAD);
    if (!rec)
        return brisk_error_set(BRISK_ENOMEM, "event of %zu bytes: out of memory", n);
    BRISK_ASSERT(protobuf_c_message_pack(&ev->base, rec + 12) == n);
    out->len += brisk_tfrecord_seal(rec, n);
    return BRISK_OK;
}

int log_encode_header(log_buf *out, double wall_time, int64_t first_step)
{
    Tensorboard__SourceMetadata src = TENSORBOARD__SOURCE_METADATA__INIT;
    src.writer = (char *)BRISK_LOG_WRITER;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time;
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)"brain.Event:2";
    ev.source_metadata = &src;
    int err = append_event(out, &ev);
    if (err)
        return err;
    Tensorboard__SessionLog slog = TENSORBOARD__SESSION_LOG__INIT;
    slog.status = TENSORBOARD__SESSION_LOG__SESSION_STATUS__START;
    Tensorboard__Event start = TENSORBOARD__EVENT__INIT;
    start.wall_time = wall_time;
    start.step = first_step;
    start.what_case = TENSORBOARD__EVENT__WHAT_SESSION_LOG;
    start.session_log = &slog;
    return append_event(out, &start);
}

/* TensorBoard's default edges: +-1e-12 * 1.1^k up to 1e20, DBL_MAX at both ends, and 0. */
static double hist_edges[1600];
static size_t hist_n;
/* Bucketing by table. The top 16 bits of a float (sign, exponent, 7 mantissa bits) name a
 * slice of at most 1/128 of an octave (0.8%); edges are 10% apart, so a slice holds at most
 * one bucket boundary. For each slice, `base` is the bucket of its smallest value and `split`
 * the smallest value of the slice that falls in bucket base + 1 (infinity if none): a float
 * compare and a table load place any value, exactly as a search of the edges would. */
typedef struct hist_slice {
    float split;
    uint32_t base;
} hist_slice;
static hist_slice hist_tab[1 << 16];
static pthread_once_t hist_once = PTHREAD_ONCE_INIT;

/* The bucket of v by binary search: the first edge >= v (bucket i is (edge[i-1], edge[i]]). */
static uint32_t bucket_search(float v)
{
    size_t lo = 0, hi = hist_n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (hist_edges[mid] >= (double)v)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)(lo < hist_n ? lo : hist_n - 1);
}

static float float_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void hist_init(void)
{
    double pos[800];
    size_t np = 0;
    for (double v = 1e-12; v < 1e20; v *= 1.1)
        pos[np++] = v;
    pos[np++] = DBL_MAX;
    size_t k = 0;
    for (size_t i = np; i-- > 0;)
        hist_edges[k++] = -pos[i];
    hist_edges[k++] = 0.0;
    for (size_t i = 0; i < np; i++)
        hist_edges[k++] = pos[i];
    hist_n = k;
    for (uint32_t key = 0; key < (1u << 16); key++) {
        hist_slice *e = &hist_tab[key];
        e->split = INFINITY;
        e->base = 0;
        if ((key & 0x7F80u) == 0x7F80u)
            continue; /* infinities and NaNs: handled before the table */
        /* Bit patterns [b_lo, b_hi]: increasing values for positive keys, decreasing for
         * negative ones. */
        const uint32_t b_lo = key << 16, b_hi = b_lo | 0xFFFFu;
        const int neg = (key & 0x8000u) != 0;
        const uint32_t b_min = neg ? b_hi : b_lo, b_max = neg ? b_lo : b_hi; /* by value */
        const uint32_t first = bucket_search(float_of(b_min)), last = bucket_search(float_of(b_max));
        BRISK_ASSERT(last <= first + 1);
        e->base = first;
        if (last == first)
            continue;
        /* Binary search over the bit patterns, in value order, for the first in `last`. */
        uint32_t lo = 0, hi = 0xFFFFu; /* offsets from b_min towards b_max */
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo) / 2;
            const uint32_t bits = neg ? b_min - mid : b_min + mid;
            if (bucket_search(float_of(bits)) == last)
                hi = mid;
            else
                lo = mid + 1;
        }
        e->split = float_of(neg ? b_min - lo : b_min + lo);
    }
}

const double *log_hist_edges(size_t *n)
{
    pthread_once(&hist_once, hist_init);
    *n = hist_n;
    return hist_edges;
}

static int encode_histogram(Tensorboard__HistogramProto *h, const float *x, size_t n,
                            uint32_t *counts, double **limits_out, double **buckets_out)
{
    size_t ne;
    const double *edges = log_hist_edges(&ne);
    /* Counting into four interleaved tables, summed at the end: consecutive values often fall
     * in the same bucket, and four tables keep those increments from waiting on each other.
     * They live in the caller's scratch (4 ne uint32). */
    memset(counts, 0, 4 * ne * sizeof *counts);
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        uint32_t *cnt = counts + (i & 3) * ne;
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        if ((bits & 0x7F800000u) == 0x7F800000u) { /* NaN: left out; infinity: an end bucket */
            if (v != v)
                nan++;
            else
                cnt[v > 0 ? ne - 1 : 0]++;
            continue;
        }
        const hist_slice e = hist_tab[bits >> 16];
        cnt[e.base + (v >= e.split)]++;
    }
    for (size_t b = 0; b < ne; b++)
        counts[b] += counts[ne + b] + counts[2 * ne + b] + counts[3 * ne + b];
    /* Statistics in four independent chains, unrolled by hand (measured: a third of the
     * time of one chain, or of a loop the compiler unrolls); NaNs left out. */
    double mn = INFINITY, mx = -INFINITY;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
    size_t i = 0;
#define HIST_STATS(k, sk, qk)                                                                  \
    do {                                                                                       \
        const float v_ = x[i + (k)];                                                          \
        const double d_ = v_ == v_ ? (double)v_ : 0.0;                                        \
        mn = v_ == v_ && d_ < mn ? d_ : mn;                                                   \
        mx = v_ == v_ && d_ > mx ? d_ : mx;                                                   \
        sk += d_;                                                                             \
        qk += d_ * d_;                                                                        \
    } while (0)
    for (; i + 4 <= n; i += 4) {
        HIST_STATS(0, s0, q0);
        HIST_STATS(1, s1, q1);
        HIST_STATS(2, s2, q2);
        HIST_STATS(3, s3, q3);
    }
    for (; i < n; i++)
        HIST_STATS(0, s0, q0);
#undef HIST_STATS
    const double sum = (s0 + s1) + (s2 + s3), sumsq = (q0 + q1) + (q2 + q3);
    const double num = (double)(n - nan);
    size_t first = 0, last = 0;
    if (num > 0) {
        while (counts[first] == 0)
            first++;
        last = ne - 1;
        while (counts[last] == 0)
            last--;
    } else {
        mn = mx = 0;
        first = last = (ne - 1) / 2; /* the 0 edge */
    }
    /* Non-empty buckets as they are; a run of empty ones collapses into one empty bucket that
     * ends where the run ends, so every range stays (limit[i-1], limit[i]]. */
    double *limits = malloc((last - first + 1) * sizeof *limits);
    double *buckets = malloc((last - first + 1) * sizeof *buckets);
    if (!limits || !buckets) {
        free(limits);
        free(buckets);
        return brisk_error_set(BRISK_ENOMEM, "histogram: out of memory");
    }
    size_t k = 0;
    for (size_t b = first; b <= last; b++) {
        if (counts[b] == 0 && b < last && counts[b + 1] == 0)
            continue;
        limits[k] = edges[b];
        buckets[k] = counts[b];
        k++;
    }
    h->min = mn;
    h->max = mx;
    h->num = num;
    h->sum = sum;
    h->sum_squares = sumsq;
    h->n_bucket_limit = h->n_bucket = k;
    h->bucket_limit = limits;
    h->bucket = buckets;
    *limits_out = limits;
    *buckets_out = buckets;
    return BRISK_OK;
}

/* Reads a NUL-terminated string at body[*at, len); NULL when malformed. */
static const char *body_str(const uint8_t *body, size_t len, size_t *at)
{
    if (*at >= len)
        return NULL;
    const uint8_t *end = memchr(body + *at, 0, len - *at);
    if (!end)
        return NULL;
    const char *s = (const char *)body + *at;
    *at = (size_t)(end - body) + 1;
    return s;
}

/* Serialized HParamsPluginData wrapped as one Value with a [0]-shaped DT_FLOAT tensor. */
static int hparams_value(Tensorboard__Summary__Value *v, const char *tag,
                         Tensorboard__HParamsPluginData *pd, Tensorboard__SummaryMetadata *md,
                         Tensorboard__SummaryMetadata__PluginData *plugin,
                         Tensorboard__TensorProto *t, Tensorboard__TensorShapeProto *shape,
                         Tensorboard__TensorShapeProto__Dim **dims, uint8_t **content)
{
    const size_t n = protobuf_c_message_get_packed_size(&pd->base);
    *content = malloc(n ? n : 1);
    if (!*content)
        return brisk_error_set(BRISK_ENOMEM, "hparams: out of memory");
    protobuf_c_message_pack(&pd->base, *content);
    plugin->plugin_name = (char *)"hparams";
    plugin->content.data = *content;
    plugin->content.len = n;
    md->plugin_data = plugin;
    md->data_class = TENSORBOARD__DATA_CLASS__DATA_CLASS_TENSOR;
    shape->n_dim = 1;
    shape->dim = dims;
    t->dtype = TENSORBOARD__DATA_TYPE__DT_FLOAT;
    t->tensor_shape = shape;
    v->tag = (char *)tag;
    v->metadata = md;
    v->value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR;
    v->tensor = t;
    return BRISK_OK;
}

static int encode_hparams(log_buf *out, const log_rec *rec, const uint8_t *body,
                          Tensorboard__Event *ev, Tensorboard__Summary__Value *v)
{
    const size_t nh = rec->a, nm = (size_t)rec->b, len = rec->body_len;
    Tensorboard__HParamEntry *entries = calloc(nh + 1, sizeof *entries);
    Tensorboard__HParamValue *vals = calloc(nh + 1, sizeof *vals);
    Tensorboard__HParamEntry **entry_p = calloc(nh + 1, sizeof *entry_p);
    Tensorboard__HParamInfo *infos = calloc(nh + 1, sizeof *infos);
    Tensorboard__HParamInfo **info_p = calloc(nh + 1, sizeof *info_p);
    Tensorboard__MetricInfo *minfos = calloc(nm + 1, sizeof *minfos);
    Tensorboard__MetricName *mnames = calloc(nm + 1, sizeof *mnames);
    Tensorboard__MetricInfo **minfo_p = calloc(nm + 1, sizeof *minfo_p);
    uint8_t *content = NULL;
    int err = BRISK_OK;
    if (!entries || !vals || !entry_p || !infos || !info_p || !minfos || !mnames || !minfo_p) {
        err = brisk_error_set(BRISK_ENOMEM, "hparams: out of memory");
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < nh; i++) {
        if (at >= len) {
            err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
            goto done;
        }
        const uint8_t type = body[at++];
        const char *name = body_str(body, len, &at);
        if (!name) {
            err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
            goto done;
        }
        tensorboard__hparam_entry__init(&entries[i]);
        tensorboard__hparam_value__init(&vals[i]);
        tensorboard__hparam_info__init(&infos[i]);
        entries[i].key = (char *)name;
        entries[i].value = &vals[i];
        infos[i].name = (char *)name;
        if (type == BRISK_HPARAM_NUMBER) {
            if (len - at < 8) {
                err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
                goto done;
            }
            vals[i].kind_case = TENSORBOARD__HPARAM_VALUE__KIND_NUMBER_VALUE;
            memcpy(&vals[i].number_value, body + at, 8);
            at += 8;
            infos[i].type = TENSORBOARD__HPARAM_DATA_TYPE__DATA_TYPE_FLOAT64;
        } else if (type == BRISK_HPARAM_STRING) {
            const char *s = body_str(body, len, &at);
            if (!s) {
                err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
                goto done;
            }
            vals[i].kind_case = TENSORBOARD__HPARAM_VALUE__KIND_STRING_VALUE;
            vals[i].string_value = (char *)s;
            infos[i].type = TENSORBOARD__HPARAM_DATA_TYPE__DATA_TYPE_STRING;
        } else {
            if (at >= len) {
                err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
                goto done;
            }
            vals[i].kind_case = TENSORBOARD__HPARAM_VALUE__KIND_BOOL_VALUE;
            vals[i].bool_value = body[at++] != 0;
            infos[i].type = TENSORBOARD__HPARAM_DATA_TYPE__DATA_TYPE_BOOL;
        }
        entry_p[i] = &entries[i];
        info_p[i] = &infos[i];
    }
    for (size_t i = 0; i < nm; i++) {
        tensorboard__metric_info__init(&minfos[i]);
        tensorboard__metric_name__init(&mnames[i]);
        mnames[i].group = (char *)body_str(body, len, &at);
        mnames[i].tag = (char *)body_str(body, len, &at);
        if (!mnames[i].group || !mnames[i].tag) {
            err = brisk_error_set(BRISK_EINVAL, "hparams record: malformed");
            goto done;
        }
        minfos[i].name = &mnames[i];
        minfo_p[i] = &minfos[i];
    }

    Tensorboard__SummaryMetadata md = TENSORBOARD__SUMMARY_METADATA__INIT;
    Tensorboard__SummaryMetadata__PluginData plugin = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    Tensorboard__TensorProto t = TENSORBOARD__TENSOR_PROTO__INIT;
    Tensorboard__TensorShapeProto shape = TENSORBOARD__TENSOR_SHAPE_PROTO__INIT;
    Tensorboard__TensorShapeProto__Dim dim0 = TENSORBOARD__TENSOR_SHAPE_PROTO__DIM__INIT;
    Tensorboard__TensorShapeProto__Dim *dims[1] = {&dim0};

    /* The experiment: which hparams and metrics the table shows. */
    Tensorboard__Experiment exp = TENSORBOARD__EXPERIMENT__INIT;
    exp.time_created_secs = ev->wall_time;
    exp.n_hparam_infos = nh;
    exp.hparam_infos = info_p;
    exp.n_metric_infos = nm;
    exp.metric_infos = minfo_p;
    Tensorboard__HParamsPluginData pd = TENSORBOARD__HPARAMS_PLUGIN_DATA__INIT;
    pd.data_case = TENSORBOARD__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT;
    pd.experiment = &exp;
    err = hparams_value(v, "_hparams_/experiment", &pd, &md, &plugin, &t, &shape, dims, &content);
    if (err)
        goto done;
    err = append_event(out, ev);
    free(content);
    content = NULL;
    if (err)
        goto done;

    /* The session start: this run's values. */
    Tensorboard__SessionStartInfo ssi = TENSORBOARD__SESSION_START_INFO__INIT;
    ssi.n_hparams = nh;
    ssi.hparams = entry_p;
    ssi.start_time_secs = ev->wall_time;
    tensorboard__hparams_plugin_data__init(&pd);
    pd.data_case = TENSORBOARD__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO;
    pd.session_start_info = &ssi;
    err = hparams_value(v, "_hparams_/session_start_info", &pd, &md, &plugin, &t, &shape, dims,
                        &content);
    if (err)
        goto done;
    err = append_event(out, ev);
done:
    free(content);
    free(entries);
    free(vals);
    free(entry_p);
    free(infos);
    free(info_p);
    free(minfos);
    free(mnames);
    free(minfo_p);
    return err;
}

int log_encode_record(log_buf *out, const log_rec *rec, const char *tag, const uint8_t *body,
                      double wall_time, uint32_t *hist_counts)
{
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    Tensorboard__Summary__Value *vp[1] = {&v};
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = vp;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time;
    ev.step = rec->step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    v.tag = (char *)tag;

    Tensorboard__SummaryMetadata md = TENSORBOARD__SUMMARY_METADATA__INIT;
    Tensorboard__SummaryMetadata__PluginData plugin = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    Tensorboard__TensorProto t = TENSORBOARD__TENSOR_PROTO__INIT;
    Tensorboard__TensorShapeProto shape = TENSORBOARD__TENSOR_SHAPE_PROTO__INIT;
    ProtobufCBinaryData str;
    int err = BRISK_OK;

    switch ((log_kind)rec->kind) {
    case LOG_REPORT: /* handled by the logging thread, no event */
        return BRISK_OK;
    case LOG_SCALAR:
    case LOG_DROPS:
        v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
        v.simple_value = (float)rec->value;
        return append_event(out, &ev);

    case LOG_HISTOGRAM: {
        Tensorboard__HistogramProto h = TENSORBOARD__HISTOGRAM_PROTO__INIT;
        double *limits = NULL, *buckets = NULL;
        if (rec->body_len != rec->b * sizeof(float))
            return brisk_error_set(BRISK_EINVAL, "histogram record: malformed");
        err = encode_histogram(&h, (const float *)(const void *)body, (size_t)rec->b,
                               hist_counts, &limits, &buckets);
        if (err)
            return err;
        v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO;
        v.histo = &h;
        err = append_event(out, &ev);
        free(limits);
        free(buckets);
        return err;
    }

    case LOG_TEXT:
    case LOG_LAYOUT: {
        uint8_t *layout_bytes = NULL;
        if (rec->kind == LOG_TEXT) {
            str.data = (uint8_t *)body;
            str.len = rec->body_len;
            plugin.plugin_name = (char *)"text";
        } else {
            /* body: for each chart, title NUL, uint32 tag count, tags each NUL-terminated. */
            const size_t nc = rec->a;
            Tensorboard__Chart *charts = calloc(nc + 1, sizeof *charts);
            Tensorboard__Chart **chart_p = calloc(nc + 1, sizeof *chart_p);
            Tensorboard__MultilineChartContent *ml = calloc(nc + 1, sizeof *ml);
            char **tags = calloc(rec->body_len + 1, sizeof *tags);
            size_t at = 0, nt = 0;
            err = (!charts || !chart_p || !ml || !tags)
                      ? brisk_error_set(BRISK_ENOMEM, "custom_scalars: out of memory")
                      : BRISK_OK;
            for (size_t i = 0; i < nc && !err; i++) {
                tensorboard__chart__init(&charts[i]);
                tensorboard__multiline_chart_content__init(&ml[i]);
                charts[i].title = (char *)body_str(body, rec->body_len, &at);
                uint32_t k;
                if (!charts[i].title || rec->body_len - at < 4) {
                    err = brisk_error_set(BRISK_EINVAL, "custom_scalars record: malformed");
                    break;
                }
                memcpy(&k, body + at, 4);
                at += 4;
                ml[i].tag = tags + nt;
                ml[i].n_tag = k;
                for (uint32_t j = 0; j < k && !err; j++) {
                    tags[nt] = (char *)body_str(body, rec->body_len, &at);
                    if (!tags[nt++])
                        err = brisk_error_set(BRISK_EINVAL, "custom_scalars record: malformed");
                }
                charts[i].multiline = &ml[i];
                chart_p[i] = &charts[i];
            }
            Tensorboard__Category cat = TENSORBOARD__CATEGORY__INIT;
            Tensorboard__Category *cat_p[1] = {&cat};
            Tensorboard__Layout layout = TENSORBOARD__LAYOUT__INIT;
            cat.title = (char *)tag;
            cat.n_chart = nc;
            cat.chart = chart_p;
            layout.n_category = 1;
            layout.category = cat_p;
            if (!err) {
                const size_t n = protobuf_c_message_get_packed_size(&layout.base);
                layout_bytes = malloc(n ? n : 1);
                if (!layout_bytes)
                    err = brisk_error_set(BRISK_ENOMEM, "custom_scalars: out of memory");
                else
                    protobuf_c_message_pack(&layout.base, layout_bytes);
                str.data = layout_bytes;
                str.len = n;
            }
            free(charts);
            free(chart_p);
            free(ml);
            free(tags);
            if (err) {
                free(layout_bytes);
                return err;
            }
            plugin.plugin_name = (char *)"custom_scalars";
            v.tag = (char *)"custom_scalars__config__";
        }
        md.plugin_data = &plugin;
        md.data_class = TENSORBOARD__DATA_CLASS__DATA_CLASS_TENSOR;
        t.dtype = TENSORBOARD__DATA_TYPE__DT_STRING;
        t.tensor_shape = &shape;
        t.n_string_val = 1;
        t.string_val = &str;
        v.metadata = &md;
        v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR;
        v.tensor = &t;
        err = append_event(out, &ev);
        free(layout_bytes);
        return err;
    }

    case LOG_IMAGE: {
        const int h = (int)(rec->b >> 32), w = (int)(rec->b & 0xFFFFFFFFu), c = (int)rec->a;
        if ((uint64_t)h * (uint64_t)w * (uint64_t)c != rec->body_len)
            return brisk_error_set(BRISK_EINVAL, "image record: malformed");
        size_t png_len;
        uint8_t *png = log_png_encode(body, h, w, c, &png_len);
        if (!png)
            return brisk_error_set(BRISK_ENOMEM, "image %dx%d: out of memory", h, w);
        Tensorboard__Summary__Image img = TENSORBOARD__SUMMARY__IMAGE__INIT;
        img.height = h;
        img.width = w;
        img.colorspace = c;
        img.encoded_image_string.data = png;
        img.encoded_image_string.len = png_len;
        v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE;
        v.image = &img;
        err = append_event(out, &ev);
        free(png);
        return err;
    }

    case LOG_HPARAMS:
        return encode_hparams(out, rec, body, &ev, &v);

    case LOG_HPARAMS_END: {
        Tensorboard__SessionEndInfo sei = TENSORBOARD__SESSION_END_INFO__INIT;
        sei.status = (Tensorboard__SessionStatus)rec->a;
        sei.end_time_secs = wall_time;
        Tensorboard__HParamsPluginData pd = TENSORBOARD__HPARAMS_PLUGIN_DATA__INIT;
        pd.data_case = TENSORBOARD__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO;
        pd.session_end_info = &sei;
        Tensorboard__TensorShapeProto__Dim dim0 = TENSORBOARD__TENSOR_SHAPE_PROTO__DIM__INIT;
        Tensorboard__TensorShapeProto__Dim *dims[1] = {&dim0};
        uint8_t *content = NULL;
        err = hparams_value(&v, "_hparams_/session_end_info", &pd, &md, &plugin, &t, &shape,
                            dims, &content);
        if (!err)
            err = append_event(out, &ev);
        free(content);
        return err;
    }
    }
    return brisk_error_set(BRISK_EINVAL, "record of unknown kind %u", (unsigned)rec->kind);
}
