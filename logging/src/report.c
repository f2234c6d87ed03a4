/* The HTML report (brisk/report.h). Everything is built in one buffer in memory, in an order
 * fixed by names (runs, tags), with numbers printed in the C locale's format and no clock
 * read: the same logs give the same bytes. */
#define _GNU_SOURCE
#include "brisk/report.h"

#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/logread.h"
#include "brisk/message.h"
#include "report_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- a growable text buffer ---------------------------------------------------------------- */

int sb_reserve(sbuf *b, size_t n)
{
    if (b->oom)
        return 0;
    if (b->cap - b->len > n)
        return 1;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap - b->len <= n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void sb_put(sbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    const int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Text as HTML (also inside attributes); bytes that are not valid UTF-8 are shown as U+FFFD
 * and control bytes other than tab and newline are left out. */
void sb_esc(sbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = u[i];
        switch (c) {
        case '&': sb_puts(b, "&amp;"); continue;
        case '<': sb_puts(b, "&lt;"); continue;
        case '>': sb_puts(b, "&gt;"); continue;
        case '"': sb_puts(b, "&quot;"); continue;
        case '\'': sb_puts(b, "&#39;"); continue;
        default: break;
        }
        if (c < 0x80) {
            if (c >= 0x20 || c == '\n' || c == '\t')
                sb_put(b, (const char *)&u[i], 1);
            continue;
        }
        /* A UTF-8 sequence: its length from the lead byte, then continuation bytes. */
        size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
        int ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xc0) == 0x80;
        if (ok) {
            sb_put(b, (const char *)&u[i], len);
            i += len - 1;
        } else {
            sb_puts(b, "\xef\xbf\xbd");
        }
    }
}

void sb_escs(sbuf *b, const char *s)
{
    sb_esc(b, s, strlen(s));
}

/* The shortest text that reads back as the same float. */
void fmt_float(char *out, size_t size, float v)
{
    for (int p = 7; p <= 9; p++) { /* %g drops trailing zeros: 0.1f is "0.1" */
        snprintf(out, size, "%.*g", p, (double)v);
        if (strtof(out, NULL) == v)
            return;
    }
}

/* ---- runs: groups and roles ---------------------------------------------------------------- */

static const char *base_name(const char *run)
{
    const char *s = strrchr(run, '/');
    return s ? s + 1 : run;
}

int run_role(const char *run)
{
    const char *b = base_name(run);
    if (!strcmp(b, "train"))
        return ROLE_TRAIN;
    if (!strcmp(b, "validation") || !strcmp(b, "val") || !strcmp(b, "eval") ||
        !strcmp(b, "test"))
        return ROLE_VALIDATION;
    if (!strcmp(b, "validation_ema"))
        return ROLE_AVERAGE;
    return ROLE_OTHER;
}

void run_group(const char *run, char *out, size_t size)
{
    if (run_role(run) == ROLE_OTHER) {
        snprintf(out, size, "%s", run);
        return;
    }
    const char *s = strrchr(run, '/');
    if (!s)
        snprintf(out, size, ".");
    else
        snprintf(out, size, "%.*s", (int)(s - run), run);
}

/* Groups in name order: each run's index into them. */
int make_groups(const lr_log *log, char ***names, size_t *n_names, int *group_of)
{
    *names = NULL;
    *n_names = 0;
    for (size_t i = 0; i < log->n_runs; i++) {
        char g[4096];
        run_group(log->runs[i].name, g, sizeof g);
        size_t k = 0;
        while (k < *n_names && strcmp((*names)[k], g))
            k++;
        if (k == *n_names) {
            char **p = realloc(*names, (*n_names + 1) * sizeof *p);
            if (!p)
                return 0;
            *names = p;
            if (!(p[*n_names] = strdup(g)))
                return 0;
            ++*n_names;
        }
    }
    qsort(*names, *n_names, sizeof **names, cmp_strp);
    for (size_t i = 0; i < log->n_runs; i++) {
        char g[4096];
        run_group(log->runs[i].name, g, sizeof g);
        for (size_t k = 0; k < *n_names; k++)
            if (!strcmp((*names)[k], g))
                group_of[i] = (int)k;
    }
    return 1;
}

void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every scalar tag of the log, in name order, once. */
int scalar_tags(const lr_log *log, char ***tags, size_t *n)
{
    size_t total = 0;
    for (size_t r = 0; r < log->n_runs; r++)
        total += log->runs[r].n_scalars;
    *n = 0;
    *tags = malloc((total ? total : 1) * sizeof **tags);
    if (!*tags)
        return 0;
    for (size_t r = 0; r < log->n_runs; r++)
        for (size_t s = 0; s < log->runs[r].n_scalars; s++)
            (*tags)[(*n)++] = log->runs[r].scalars[s].tag;
    if (*n)
        qsort(*tags, *n, sizeof **tags, cmp_strp);
    size_t u = 0;
    for (size_t i = 0; i < *n; i++)
        if (!u || strcmp((*tags)[u - 1], (*tags)[i]))
            (*tags)[u++] = (*tags)[i];
    *n = u;
    for (size_t i = 0; i < u; i++) /* copies: the caller frees them */
        if (!((*tags)[i] = strdup((*tags)[i]))) {
            free_names(*tags, i);
            *tags = NULL;
            *n = 0;
            return 0;
        }
    return 1;
}

/* 1 when a group's train and validation runs both have the tag (a chart that overlays them). */
int overlaid_tag(const lr_log *log, const int *group_of, const char *tag)
{
    /* One pass: per group, whether its train run (bit 1) and a validation run (bit 2) have
     * the tag; group numbers are below the run count. */
    unsigned char *has = calloc(log->n_runs ? log->n_runs : 1, 1);
    int found = 0;
    for (size_t r = 0; has && r < log->n_runs && !found; r++) {
        const int role = run_role(log->runs[r].name);
        if (role == ROLE_OTHER || !lr_run_scalars(&log->runs[r], tag))
            continue;
        has[group_of[r]] |= role == ROLE_TRAIN ? 1 : 2;
        found = has[group_of[r]] == 3;
    }
    free(has);
    return found;
}

/* The order of the charts: tags that overlay train and validation first, then other tags
 * without a slash, then the rest (per-layer statistics); by name within each. */
void order_tags(const lr_log *log, const int *group_of, char **tags, size_t n)
{
    char **sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return; /* name order then */
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < n; i++) {
            const int over = overlaid_tag(log, group_of, tags[i]);
            const int cls = over ? 0 : strchr(tags[i], '/') ? 2 : 1;
            if (cls == pass)
                sorted[k++] = tags[i];
        }
    memcpy(tags, sorted, n * sizeof *tags);
    free(sorted);
}

/* A group's colour: ten well-separated hues, then hues a golden angle apart. */
void group_color(int g, char out[8])
{
    static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                          "#bcbd22", "#637939"};
    if (g < 10) {
        snprintf(out, 8, "%s", palette[g]);
        return;
    }
    const double h = fmod(g * 137.508, 360.0) / 60.0, c = 0.6, x = c * (1 - fabs(fmod(h, 2) - 1));
    double r = 0, gg = 0, b = 0;
    switch ((int)h) {
    case 0: r = c, gg = x; break;
    case 1: r = x, gg = c; break;
    case 2: gg = c, b = x; break;
    case 3: gg = x, b = c; break;
    case 4: r = x, b = c; break;
    default: r = c, b = x; break;
    }
    snprintf(out, 8, "#%02x%02x%02x", (int)((r + 0.15) * 255), (int)((gg + 0.15) * 255),
             (int)((b + 0.15) * 255));
}

/* ---- numbers on axes ----------------------------------------------------------------------- */

/* A tick spacing of 1, 2 or 5 times a power of ten giving about `target` ticks. */
double nice_step(double range, int target)
{
    if (!(range > 0))
        return 1;
    const double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

void fmt_tick(char *out, size_t size, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    const double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(out, size, "%.3g", v);
        return;
    }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (decimals > 8)
        decimals = 8;
    snprintf(out, size, "%.*f", decimals, v);
}

/* ---- the report ---------------------------------------------------------------------------- */

#define SVG_W 560
#define SVG_H 280
#define PX0 60
#define PX1 548
#define PY0 12
#define PY1 248
#define PLOT_W (PX1 - PX0)
#define PLOT_H (PY1 - PY0)
/* The size a report aims to stay under, for the drawn points (the rest is small). */
#define POINT_BUDGET_BYTES ((size_t)3500000)
#define POINT_BYTES 17 /* "12345,0.1234567 " */
#define MAX_DIST_CHARTS 48
#define MAX_CHARTS 400 /* scalar charts; the tags beyond are listed */
#define MAX_LEGEND 40  /* entries in a chart's legend */
#define MAX_SERIES 1024 /* runs drawn in one chart */
#define MAX_IMAGE_BYTES ((size_t)1 << 20)
#define MAX_TEXT_BYTES 4096

typedef struct series {
    const lr_run *run;
    const lr_scalars *s;
    int group, role;
} series;

typedef struct report {
    const lr_log *log;
    sbuf out;
    int *group_of;
    char **groups;
    size_t n_groups;
    int columns; /* pixel columns a series keeps points for */
    int chart_id; /* the next chart's number (clip-path ids) */
    int threads;  /* drawing the scalar charts */
} report;

static void style_attrs(sbuf *b, int group, int role)
{
    char col[8];
    group_color(group, col);
    sb_printf(b, " stroke=\"%s\"%s", col,
              role == ROLE_VALIDATION  ? " stroke-dasharray=\"6 4\""
              : role == ROLE_AVERAGE ? " stroke-dasharray=\"1.5 3\""
                                     : "");
}

/* The indices of the points drawn: all of them, or per pixel column the smallest and the
 * largest (in step order). Non-finite values are left out. */
static size_t pick_points(const lr_scalars *s, double xmin, double xmax, int columns,
                          size_t *idx)
{
    size_t n = 0;
    if (s->n <= (size_t)2 * columns) {
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->value[i]))
                idx[n++] = i;
        return n;
    }
    /* Column c holds the steps below edge(c) = the smallest whole step at or past
     * xmin + (c + 1) (xmax - xmin) / columns; steps increase, so each column is a run of
     * points found by comparing whole numbers (no arithmetic per point). */
    const double width = (xmax - xmin) / columns;
    size_t i = 0;
    for (int col = 0; col < columns && i < s->n; col++) {
        const int64_t edge = col == columns - 1 ? INT64_MAX
                                                : (int64_t)ceil(xmin + (col + 1) * width);
        size_t lo = SIZE_MAX, hi = SIZE_MAX;
        float vlo = INFINITY, vhi = -INFINITY;
        for (; i < s->n && lr_step(s, i) < edge; i++) {
            const float v = s->value[i];
            if (!isfinite(v))
                continue;
            if (v < vlo) {
                vlo = v;
                lo = i;
            }
            if (v > vhi) {
                vhi = v;
                hi = i;
            }
        }
        if (lo == SIZE_MAX) /* no finite point in this column */
            continue;
        if (lo == hi) {
            idx[n++] = lo;
        } else {
            idx[n++] = lo < hi ? lo : hi;
            idx[n++] = lo < hi ? hi : lo;
        }
    }
    return n;
}

/* The axes of a chart: frame, grid, ticks and labels. */
static void draw_axes(sbuf *b, double xmin, double xmax, double ymin, double ymax,
                      const char *xlabel)
{
    sb_printf(b, "<g class=\"axes\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                 "fill=\"#fff\" stroke=\"#999\"/>",
              PX0, PY0, PLOT_W, PLOT_H);
    char t[64];
    const double ys = nice_step(ymax - ymin, 5);
    for (double v = ceil(ymin / ys - 1e-9) * ys; v <= ymax + ys * 1e-9; v += ys) {
        const double py = PY1 - (v - ymin) * PLOT_H / (ymax - ymin);
        fmt_tick(t, sizeof t, v, ys);
        sb_printf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                     "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
                  PX0, PX1, py, py, PX0 - 4, py + 4, t);
    }
    double xs = nice_step(xmax - xmin, 6);
    if (xs < 1)
        xs = 1; /* steps are whole numbers */
    for (double v = ceil(xmin / xs - 1e-9) * xs; v <= xmax + xs * 1e-9; v += xs) {
        const double px = PX0 + (v - xmin) * PLOT_W / (xmax - xmin);
        fmt_tick(t, sizeof t, v, xs);
        sb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#999\"/>"
                     "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                  px, px, PY1, PY1 + 4, px, PY1 + 16, t);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"xl\">%s</text></g>",
              (PX0 + PX1) / 2, SVG_H - 4, xlabel);
}

/* The chart of one tag into b (its own buffer: charts are drawn in parallel), numbered id. */
static void scalar_chart(const report *rp, const char *tag, size_t *idx, sbuf *b, int id)
{
    const lr_log *log = rp->log;
    series ser[MAX_SERIES];
    size_t n = 0, left_out = 0;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t r = 0; r < log->n_runs; r++) {
        const lr_scalars *s = lr_run_scalars(&log->runs[r], tag);
        if (!s || !s->n)
            continue;
        if (n == MAX_SERIES) {
            left_out++;
            continue;
        }
        ser[n++] = (series){&log->runs[r], s, rp->group_of[r], run_role(log->runs[r].name)};
        xmin = fmin(xmin, (double)lr_step(s, 0));
        xmax = fmax(xmax, (double)lr_step(s, s->n - 1));
        float lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < s->n; i++) {
            const float v = s->value[i];
            lo = v < lo ? v : lo; /* NaN compares false: left out */
            hi = v > hi ? v : hi;
        }
        if (lo <= hi && isfinite(lo) && isfinite(hi)) {
            ymin = fmin(ymin, lo);
            ymax = fmax(ymax, hi);
        } else {
            for (size_t i = 0; i < s->n; i++)
                if (isfinite(s->value[i])) {
                    ymin = fmin(ymin, s->value[i]);
                    ymax = fmax(ymax, s->value[i]);
                }
        }
    }
    if (!n)
        return;
    if (!(ymin <= ymax))
        ymin = 0, ymax = 1;
    if (xmax - xmin < 1)
        xmin -= 0.5, xmax += 0.5;
    {
        const double pad = ymax > ymin ? (ymax - ymin) * 0.05 : fabs(ymax) * 0.1 + 0.5;
        ymin -= pad;
        ymax += pad;
    }
    sb_puts(b, "<figure class=\"chart\" data-tag=\"");
    sb_escs(b, tag);
    sb_puts(b, "\"><figcaption>");
    sb_escs(b, tag);
    sb_printf(b, "</figcaption><svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "data-box=\"%d %d %d %d %.17g %.17g %.17g %.17g\">",
              SVG_W, SVG_H, SVG_W, SVG_H, PX0, PX1, PY0, PY1, xmin, xmax, ymin, ymax);
    sb_printf(b, "<clipPath id=\"c%d\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>"
                 "</clipPath>",
              id, PX0, PY0, PLOT_W, PLOT_H);
    draw_axes(b, xmin, xmax, ymin, ymax, "step");
    /* The series in data coordinates: the points are the logged (step, value) pairs, and one
     * transform maps them onto the plot area. */
    const double ax = PLOT_W / (xmax - xmin), ay = -PLOT_H / (ymax - ymin);
    sb_printf(b, "<g clip-path=\"url(#c%d)\"><g class=\"data\" transform=\"matrix(%.17g 0 0 "
                 "%.17g %.17g %.17g)\">",
              id, ax, ay, PX0 - xmin * ax, PY1 - ymin * ay);
    for (size_t k = 0; k < n; k++) {
        const size_t m = pick_points(ser[k].s, xmin, xmax, rp->columns, idx);
        sb_puts(b, "<polyline class=\"series\" data-run=\"");
        sb_escs(b, ser[k].run->name);
        sb_printf(b, "\" data-n=\"%zu\" fill=\"none\" vector-effect=\"non-scaling-stroke\" "
                     "stroke-width=\"1.8\" stroke-linejoin=\"round\"",
                  ser[k].s->n);
        style_attrs(b, ser[k].group, ser[k].role);
        sb_puts(b, " points=\"");
        for (size_t i = 0; i < m; i++) {
            char v[32];
            fmt_float(v, sizeof v, ser[k].s->value[idx[i]]);
            sb_printf(b, "%s%lld,%s", i ? " " : "", (long long)lr_step(ser[k].s, idx[i]), v);
        }
        sb_puts(b, "\"/>");
    }
    sb_puts(b, "</g>");
    /* A series of one point is a dot (a polyline needs two). */
    for (size_t k = 0; k < n; k++) {
        if (ser[k].s->n != 1 || !isfinite(ser[k].s->value[0]))
            continue;
        char col[8];
        group_color(ser[k].group, col);
        sb_printf(b, "<circle class=\"dot\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>",
                  PX0 + ((double)lr_step(ser[k].s, 0) - xmin) * ax,
                  PY1 + ((double)ser[k].s->value[0] - ymin) * ay, col);
    }
    sb_puts(b, "</g><g class=\"overlay\"></g></svg><ul class=\"legend\">");
    /* Up to MAX_LEGEND entries (the runs table lists every run with its colour). */
    for (size_t k = 0; k < n && k < MAX_LEGEND; k++) {
        sb_printf(b, "<li><svg width=\"22\" height=\"8\"><line x1=\"1\" x2=\"21\" y1=\"4\" "
                     "y2=\"4\" stroke-width=\"2\"");
        style_attrs(b, ser[k].group, ser[k].role);
        sb_puts(b, "/></svg>");
        sb_escs(b, ser[k].run->name);
        sb_puts(b, "</li>");
    }
    if (n > MAX_LEGEND)
        sb_printf(b, "<li>and %zu more</li>", n - MAX_LEGEND);
    if (left_out)
        sb_printf(b, "<li>%zu more runs have this tag: a chart draws %d</li>", left_out,
                  MAX_SERIES);
    sb_puts(b, "</ul></figure>\n");
}

/* A histogram tag of a run as TensorBoard's distribution bands. */
static void distribution_chart(report *rp, const lr_run *run, int group, const lr_histograms *h)
{
    sbuf *b = &rp->out;
    if (!h->n)
        return;
    double xmin = (double)h->p[0].step, xmax = (double)h->p[h->n - 1].step;
    double ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < h->n; i++)
        for (int q = 0; q < LR_BANDS; q++)
            if (isfinite(h->p[i].q[q])) {
                ymin = fmin(ymin, h->p[i].q[q]);
                ymax = fmax(ymax, h->p[i].q[q]);
            }
    if (!(ymin <= ymax))
        ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-12)
        ymin -= 0.5, ymax += 0.5;
    if (xmax - xmin < 1)
        xmin -= 0.5, xmax += 0.5;
    const int id = rp->chart_id++;
    char col[8];
    group_color(group, col);
    sb_puts(b, "<figure class=\"dist\" data-tag=\"");
    sb_escs(b, h->tag);
    sb_puts(b, "\" data-run=\"");
    sb_escs(b, run->name);
    sb_puts(b, "\"><figcaption>");
    sb_escs(b, h->tag);
    sb_puts(b, " <span class=\"run\">");
    sb_escs(b, run->name);
    sb_printf(b, "</span></figcaption><svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">"
                 "<clipPath id=\"c%d\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>"
                 "</clipPath>",
              SVG_W, SVG_H, SVG_W, SVG_H, id, PX0, PY0, PLOT_W, PLOT_H);
    draw_axes(b, xmin, xmax, ymin, ymax, "step");
    sb_printf(b, "<g clip-path=\"url(#c%d)\">", id);
    /* At most one step per two pixels. */
    const size_t every = h->n > PLOT_W / 2 ? (h->n + PLOT_W / 2 - 1) / (PLOT_W / 2) : 1;
#define DX(s) (PX0 + ((double)(s) - xmin) * PLOT_W / (xmax - xmin))
#define DY(v) (PY1 - ((v) - ymin) * PLOT_H / (ymax - ymin))
    for (int band = 0; band < LR_BANDS / 2; band++) {
        sb_printf(b, "<polygon fill=\"%s\" fill-opacity=\"%.2f\" points=\"", col,
                  0.15 + 0.12 * band);
        for (size_t i = 0; i < h->n; i += every)
            sb_printf(b, "%.1f,%.1f ", DX(h->p[i].step), DY(h->p[i].q[LR_BANDS - 1 - band]));
        for (size_t i = ((h->n - 1) / every) * every + 1; i-- > 0;)
            if (i % every == 0)
                sb_printf(b, "%.1f,%.1f ", DX(h->p[i].step), DY(h->p[i].q[band]));
        sb_puts(b, "\"/>");
    }
    sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
    for (size_t i = 0; i < h->n; i += every)
        sb_printf(b, "%.1f,%.1f ", DX(h->p[i].step), DY(h->p[i].q[LR_BANDS / 2]));
#undef DX
#undef DY
    sb_puts(b, "\"/></g></svg></figure>\n");
}

/* Every scalar chart, on rp->threads threads claiming tags in turn, each into its own buffer;
 * the buffers are joined in tag order (the bytes do not depend on the threads). */
typedef struct chart_job {
    const report *rp;
    char *const *tags;
    size_t n;
    sbuf *out;  /* one per chart */
    size_t max_n;
    _Atomic size_t next;
    _Atomic int oom;
} chart_job;

static void *chart_worker(void *arg)
{
    chart_job *job = arg;
    size_t *idx = malloc(job->max_n * sizeof *idx);
    if (!idx) {
        atomic_store(&job->oom, 1);
        return NULL;
    }
    for (;;) {
        const size_t t = atomic_fetch_add(&job->next, 1);
        if (t >= job->n)
            break;
        scalar_chart(job->rp, job->tags[t], idx, &job->out[t], (int)t);
    }
    free(idx);
    return NULL;
}

static void draw_charts(report *rp, char *const *tags, size_t n)
{
    const lr_log *log = rp->log;
    chart_job job = {.rp = rp, .tags = tags, .n = n, .max_n = 1};
    for (size_t r = 0; r < log->n_runs; r++)
        for (size_t s = 0; s < log->runs[r].n_scalars; s++)
            if (log->runs[r].scalars[s].n > job.max_n)
                job.max_n = log->runs[r].scalars[s].n;
    if (!(job.out = calloc(n ? n : 1, sizeof *job.out))) {
        rp->out.oom = 1;
        return;
    }
    lr_parallel(rp->threads, n, chart_worker, &job);
    if (atomic_load(&job.oom))
        rp->out.oom = 1;
    for (size_t t = 0; t < n; t++) {
        if (job.out[t].oom)
            rp->out.oom = 1;
        if (job.out[t].p)
            sb_put(&rp->out, job.out[t].p, job.out[t].len);
        free(job.out[t].p);
    }
    free(job.out);
}

static const char *status_name(int s)
{
    return s == 1 ? "finished" : s == 2 ? "failed" : s == 3 ? "running" : "";
}

/* The series of a metric ("sub\ttag": run directory sub of the group, "" for the group's own)
 * of a group. */
static const lr_scalars *group_metric(const lr_log *log, const char *group, const char *metric)
{
    const char *tab = strchr(metric, '\t');
    if (!tab)
        return NULL;
    char name[8192];
    const int sub = (int)(tab - metric);
    if (!sub)
        snprintf(name, sizeof name, "%s", group);
    else if (!strcmp(group, "."))
        snprintf(name, sizeof name, "%.*s", sub, metric);
    else
        snprintf(name, sizeof name, "%s/%.*s", group, sub, metric);
    for (size_t r = 0; r < log->n_runs; r++)
        if (!strcmp(log->runs[r].name, name))
            return lr_run_scalars(&log->runs[r], tab + 1);
    return NULL;
}

/* A metric's column title: "sub/tag". */
static void metric_title(sbuf *b, const char *metric)
{
    const char *tab = strchr(metric, '\t');
    if (!tab) {
        sb_escs(b, metric);
        return;
    }
    if (tab > metric) {
        sb_esc(b, metric, (size_t)(tab - metric));
        sb_puts(b, "/");
    }
    sb_escs(b, tab + 1);
}

static void add_name(char ***names, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*names)[i], s))
            return;
    char **p = realloc(*names, (*n + 1) * sizeof *p);
    if (!p)
        return;
    *names = p;
    if ((p[*n] = strdup(s)))
        ++*n;
}

/* One row per group: its hyperparameters, final metrics and state; sortable by script. */
static void runs_table(report *rp)
{
    const lr_log *log = rp->log;
    sbuf *b = &rp->out;
    char **hp = NULL, **metrics = NULL;
    size_t n_hp = 0, n_metrics = 0;
    for (size_t r = 0; r < log->n_runs; r++) {
        for (size_t k = 0; k < log->runs[r].n_hparams; k++)
            add_name(&hp, &n_hp, log->runs[r].hparams[k].name);
        for (size_t k = 0; k < log->runs[r].n_metrics; k++)
            add_name(&metrics, &n_metrics, log->runs[r].metrics[k]);
    }
    if (!n_metrics) /* no declared metrics: every epoch_ and test_ tag of train and validation */
        for (size_t r = 0; r < log->n_runs; r++) {
            const int role = run_role(log->runs[r].name);
            if (role == ROLE_OTHER)
                continue;
            for (size_t k = 0; k < log->runs[r].n_scalars; k++) {
                const char *t = log->runs[r].scalars[k].tag;
                if (strncmp(t, "epoch_", 6) && strncmp(t, "test_", 5))
                    continue;
                char m[1024];
                snprintf(m, sizeof m, "%s\t%s", base_name(log->runs[r].name), t);
                add_name(&metrics, &n_metrics, m);
            }
        }
    if (n_metrics)
        qsort(metrics, n_metrics, sizeof *metrics, cmp_strp);
    sb_puts(b, "<table id=\"runs\"><thead><tr><th>run</th>");
    for (size_t k = 0; k < n_hp; k++) {
        sb_puts(b, "<th>");
        sb_escs(b, hp[k]);
        sb_puts(b, "</th>");
    }
    for (size_t k = 0; k < n_metrics; k++) {
        sb_puts(b, "<th class=\"metric\">");
        metric_title(b, metrics[k]);
        sb_puts(b, "</th>");
    }
    sb_puts(b, "<th>last step</th><th>state</th></tr></thead><tbody>\n");
    for (size_t g = 0; g < rp->n_groups; g++) {
        char col[8];
        group_color((int)g, col);
        sb_printf(b, "<tr><td><span class=\"sw\" style=\"background:%s\"></span>", col);
        sb_escs(b, rp->groups[g]);
        sb_puts(b, "</td>");
        const lr_run *root = NULL;
        long long last_step = -1;
        int torn = 0, status = 0;
        for (size_t r = 0; r < log->n_runs; r++) {
            if (rp->group_of[r] != (int)g)
                continue;
            const lr_run *run = &log->runs[r];
            if (!strcmp(run->name, rp->groups[g]))
                root = run;
            torn |= run->torn;
            if (run->session_status)
                status = run->session_status;
            for (size_t k = 0; k < run->n_scalars; k++)
                if (run->scalars[k].n && lr_step(&run->scalars[k], run->scalars[k].n - 1) > last_step)
                    last_step = lr_step(&run->scalars[k], run->scalars[k].n - 1);
        }
        for (size_t k = 0; k < n_hp; k++) {
            const lr_hparam *v = NULL;
            for (size_t i = 0; root && i < root->n_hparams && !v; i++)
                if (!strcmp(root->hparams[i].name, hp[k]))
                    v = &root->hparams[i];
            if (v && v->is_number)
                sb_printf(b, "<td class=\"num\" data-v=\"%.17g\">", v->number);
            else
                sb_puts(b, "<td>");
            if (v)
                sb_escs(b, v->text);
            sb_puts(b, "</td>");
        }
        for (size_t k = 0; k < n_metrics; k++) {
            const lr_scalars *s = group_metric(log, rp->groups[g], metrics[k]);
            if (s && s->n) {
                char v[32];
                fmt_float(v, sizeof v, s->value[s->n - 1]);
                sb_printf(b, "<td class=\"num\" data-v=\"%s\">%s</td>", v, v);
            } else {
                sb_puts(b, "<td></td>");
            }
        }
        sb_printf(b, "<td class=\"num\" data-v=\"%lld\">%lld</td><td>%s%s</td></tr>\n", last_step,
                  last_step, status_name(status), torn ? " (being written)" : "");
    }
    sb_puts(b, "</tbody></table>\n");
    free_names(hp, n_hp);
    free_names(metrics, n_metrics);
}

static void base64(sbuf *b, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!sb_reserve(b, (n + 2) / 3 * 4))
        return;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        const uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        const uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;background:#fafafa}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px "
    "solid #ddd}.meta{color:#666;margin:0 0 8px}.grid{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}figcaption{font-weight:"
    "600;font-family:monospace}figcaption .run{font-weight:400;color:#666}svg text{font:11px "
    "sans-serif;fill:#444}ul.legend{list-style:none;margin:2px 0 0;padding:0;max-width:%dpx;"
    "font:12px monospace;max-height:120px;overflow:auto}ul.legend li{display:inline-block;"
    "margin-right:12px}table{border-collapse:collapse;background:#fff;font-size:13px}th,td{"
    "border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f0f0f0;cursor:"
    "pointer}td.num{text-align:right;font-family:monospace}.sw{display:inline-block;width:10px;"
    "height:10px;margin-right:6px}.problems{background:#fff3f0;border:1px solid #e99;padding:"
    "6px 12px}pre{background:#fff;border:1px solid #ddd;padding:8px;max-width:900px;overflow:"
    "auto;white-space:pre-wrap}#tip{position:absolute;pointer-events:none;background:#fff;"
    "border:1px solid #999;padding:4px 6px;font:12px monospace;white-space:pre}#controls{"
    "margin:8px 0}#controls label{margin-right:16px}img.last{image-rendering:pixelated;border:"
    "1px solid #ddd;background:#fff}";

/* The hover values, the smoothing slider (TensorBoard's: an exponential moving average
 * divided by 1 - w^k so that it starts unbiased) and the log scale. Without scripts the SVG
 * above is the whole chart. */
static const char script[] =
    "(function(){'use strict';"
    "var ctl=document.getElementById('controls'),sm=document.getElementById('smooth'),"
    "lg=document.getElementById('logy'),sv=document.getElementById('smoothv'),"
    "tip=document.getElementById('tip');ctl.hidden=false;var NS='http://www.w3.org/2000/svg';"
    "var charts=[].map.call(document.querySelectorAll('svg.plot'),function(svg){"
    "var b=svg.getAttribute('data-box').split(' ').map(Number);"
    "var ser=[].map.call(svg.querySelectorAll('g.data polyline'),function(pl){"
    "var t=pl.getAttribute('points').trim(),p=t?t.split(' ').map(function(s){"
    "var a=s.split(',');return[+a[0],+a[1]]}):[];return{el:pl,p:p,run:pl.getAttribute('data-run')}});"
    "return{svg:svg,b:b,ser:ser,data:svg.querySelector('g.data'),ov:svg.querySelector('g.overlay'),"
    "axes:svg.querySelector('g.axes'),axes0:svg.querySelector('g.axes').innerHTML}});"
    "function ema(p,w){var last=0,k=0;return p.map(function(q){if(w<=0)return q;"
    "last=last*w+(1-w)*q[1];k++;var d=w===1?1:1-Math.pow(w,k);return[q[0],last/d]})}"
    "function el(n,a){var e=document.createElementNS(NS,n);for(var k in a)e.setAttribute(k,a[k]);return e}"
    "function draw(){var w=+sm.value,log=lg.checked;sv.textContent=w.toFixed(2);"
    "charts.forEach(function(c){var b=c.b,x0=b[0],x1=b[1],y0=b[2],y1=b[3],xa=b[4],xb=b[5],"
    "ya=b[6],yb=b[7];c.ov.innerHTML='';if(log){var lo=Infinity,hi=-Infinity;c.ser.forEach("
    "function(s){s.p.forEach(function(q){if(q[1]>0){lo=Math.min(lo,q[1]);hi=Math.max(hi,q[1])}})});"
    "if(!(lo<=hi)){lo=1;hi=10}ya=Math.log10(lo)-0.05;yb=Math.log10(hi)+0.05;if(yb-ya<0.2){ya-=0.1;yb+=0.1}"
    "var h='<rect x=\"'+x0+'\" y=\"'+y0+'\" width=\"'+(x1-x0)+'\" height=\"'+(y1-y0)+'\" fill=\"#fff\" stroke=\"#999\"/>';"
    /* Log ticks: 1, 2, 5 (or every digit) times a power of ten; in a range narrower than
     * that, evenly spaced values placed on the log axis. */
    "var ms=yb-ya>=2?[1]:yb-ya>=0.6?[1,2,5]:[1,2,3,4,5,6,7,8,9],tv=[];"
    "for(var e=Math.floor(ya);e<=Math.ceil(yb);e++)ms.forEach(function(m){var l=e+Math.log10(m);"
    "if(l>=ya&&l<=yb)tv.push(m*Math.pow(10,e))});if(tv.length<3){tv=[];var lo=Math.pow(10,ya),"
    "hi=Math.pow(10,yb),r=(hi-lo)/4,g=Math.pow(10,Math.floor(Math.log10(r))),f=r/g,st=(f<1.5?1:f<3?2:f<7?5:10)*g;"
    "for(var v=Math.ceil(lo/st)*st;v<=hi;v+=st)tv.push(v)}"
    "tv.forEach(function(v){var l=Math.log10(v),py=(y1-(l-ya)*(y1-y0)/(yb-ya)).toFixed(1);"
    "h+='<line x1=\"'+x0+'\" x2=\"'+x1+'\" y1=\"'+py+'\" y2=\"'+py+'\" stroke=\"#e4e4e4\"/>"
    "<text x=\"'+(x0-4)+'\" y=\"'+(+py+4)+'\" text-anchor=\"end\">'+String(+v.toPrecision(4))+'</text>'});"
    "var keep=c.axes0.split('<line').filter(function(s,i){return i>0&&s.indexOf('y1=\"'+y1+'\"')>0});"
    "c.axes.innerHTML=h+keep.map(function(s){return'<line'+s}).join('')}else c.axes.innerHTML=c.axes0;"
    "var fx=function(x){return x0+(x-xa)*(x1-x0)/(xb-xa)},fy=function(v){if(log)v=v>0?Math.log10(v):NaN;"
    "return y1-(v-ya)*(y1-y0)/(yb-ya)};var redraw=log||w>0;c.data.style.opacity=redraw?(log?0:0.25):1;"
    "if(!redraw)return;c.ser.forEach(function(s){var col=s.el.getAttribute('stroke'),"
    "da=s.el.getAttribute('stroke-dasharray');[log&&w>0?s.p:null,ema(s.p,w)].forEach(function(p,i){"
    "if(!p)return;var pts=p.map(function(q){return fx(q[0]).toFixed(1)+','+fy(q[1]).toFixed(1)})"
    ".filter(function(t){return t.indexOf('NaN')<0}).join(' ');var a={points:pts,fill:'none',stroke:col,"
    "'stroke-width':i?1.8:1,'stroke-opacity':i?1:0.3};if(da)a['stroke-dasharray']=da;c.ov.appendChild(el('polyline',a))})})})}"
    "function near(p,x){var lo=0,hi=p.length-1;if(hi<0)return null;while(lo<hi){var m=(lo+hi)>>1;"
    "if(p[m][0]<x)lo=m+1;else hi=m}if(lo>0&&x-p[lo-1][0]<p[lo][0]-x)lo--;return p[lo]}"
    "charts.forEach(function(c){c.svg.addEventListener('mousemove',function(ev){var r=c.svg"
    ".getBoundingClientRect(),b=c.b,mx=(ev.clientX-r.left)*c.svg.viewBox.baseVal.width/r.width;"
    "if(mx<b[0]||mx>b[1]){tip.hidden=true;return}var x=b[4]+(mx-b[0])/(b[1]-b[0])*(b[5]-b[4]),"
    "w=+sm.value,lines=[];c.ser.forEach(function(s){var q=near(s.p,x);if(!q)return;var sq=w>0?near(ema(s.p,w),q[0]):q;"
    "lines.push(s.run+'  step '+q[0]+'  '+q[1]+(w>0?'  (smoothed '+sq[1].toPrecision(6)+')':''))});"
    "tip.textContent=lines.join('\\n');tip.hidden=false;tip.style.left=(ev.pageX+14)+'px';"
    "tip.style.top=(ev.pageY+10)+'px'});c.svg.addEventListener('mouseleave',function(){tip.hidden=true})});"
    "sm.addEventListener('input',draw);lg.addEventListener('change',draw);"
    "[].forEach.call(document.querySelectorAll('#runs th'),function(th,i){th.addEventListener('click',"
    "function(){var tb=th.closest('table').tBodies[0],rows=[].slice.call(tb.rows),dir=th.getAttribute("
    "'data-dir')==='1'?-1:1;th.setAttribute('data-dir',dir===1?'1':'-1');rows.sort(function(a,b){var "
    "x=a.cells[i],y=b.cells[i],u=x.getAttribute('data-v'),v=y.getAttribute('data-v');if(u!==null&&"
    "v!==null)return dir*(u-v);if(u===null&&v!==null)return 1;if(v===null&&u!==null)return -1;return dir*x.textContent"
    ".localeCompare(y.textContent)});rows.forEach(function(r){tb.appendChild(r)})})});draw()})();";

static void write_report(report *rp, const char *title)
{
    const lr_log *log = rp->log;
    sbuf *b = &rp->out;
    sb_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"generator\" content=\"brisk\"><title>");
    sb_escs(b, title);
    sb_puts(b, " - Brisk report</title><style>");
    sb_printf(b, style, SVG_W);
    sb_puts(b, "</style></head><body>\n<h1>");
    sb_escs(b, title);
    size_t n_points = 0, n_series = 0;
    for (size_t r = 0; r < log->n_runs; r++)
        for (size_t s = 0; s < log->runs[r].n_scalars; s++) {
            n_points += log->runs[r].scalars[s].n;
            n_series++;
        }
    sb_printf(b, "</h1><p class=\"meta\">%zu run%s (%zu event director%s), %zu scalar series, "
                 "%zu points.</p>\n",
              rp->n_groups, rp->n_groups == 1 ? "" : "s", log->n_runs,
              log->n_runs == 1 ? "y" : "ies", n_series, n_points);
    if (log->n_problems) {
        sb_puts(b, "<div class=\"problems\"><p>Some event files could not be read whole:</p><ul>");
        for (size_t i = 0; i < log->n_problems; i++) {
            sb_puts(b, "<li>");
            sb_escs(b, log->problems[i]);
            sb_puts(b, "</li>");
        }
        sb_puts(b, "</ul></div>\n");
    }
    if (!log->n_runs)
        sb_puts(b, "<p>No event files were found.</p>\n");
    sb_puts(b, "<div id=\"controls\" hidden><label>smoothing <input id=\"smooth\" type=\"range\" "
               "min=\"0\" max=\"0.99\" step=\"0.01\" value=\"0\"> <span id=\"smoothv\">0.00</span>"
               "</label><label><input id=\"logy\" type=\"checkbox\"> log scale</label></div>\n");
    /* Scalars: one chart per tag. */
    char **tags;
    size_t n_tags;
    if (!scalar_tags(log, &tags, &n_tags)) {
        b->oom = 1;
        return;
    }
    order_tags(log, rp->group_of, tags, n_tags);
    if (n_tags) {
        sb_puts(b, "<h2>Scalars</h2><div class=\"grid\">\n");
        const size_t n_charts = n_tags < MAX_CHARTS ? n_tags : MAX_CHARTS;
        draw_charts(rp, tags, n_charts);
        rp->chart_id = (int)n_charts;
        sb_puts(b, "</div>\n");
        if (n_tags > MAX_CHARTS) {
            sb_printf(b, "<p class=\"meta\">%zu more scalar tags are not drawn (the first %d "
                         "are): ", n_tags - MAX_CHARTS, MAX_CHARTS);
            for (size_t t = MAX_CHARTS; t < n_tags && t < MAX_CHARTS + 100; t++) {
                sb_puts(b, t > MAX_CHARTS ? ", " : "");
                sb_escs(b, tags[t]);
            }
            sb_puts(b, n_tags > MAX_CHARTS + 100 ? ", ...</p>\n" : "</p>\n");
        }
    }
    free_names(tags, n_tags);
    if (rp->n_groups) {
        sb_puts(b, "<h2>Runs</h2>\n");
        runs_table(rp);
    }
    /* Distributions. */
    size_t n_hist = 0, shown = 0;
    for (size_t r = 0; r < log->n_runs; r++)
        n_hist += log->runs[r].n_hists;
    if (n_hist) {
        sb_puts(b, "<h2>Distributions</h2><div class=\"grid\">\n");
        for (size_t r = 0; r < log->n_runs; r++)
            for (size_t h = 0; h < log->runs[r].n_hists && shown < MAX_DIST_CHARTS; h++, shown++)
                distribution_chart(rp, &log->runs[r], rp->group_of[r], &log->runs[r].hists[h]);
        sb_puts(b, "</div>\n");
        if (n_hist > shown)
            sb_printf(b, "<p class=\"meta\">%zu more histogram tags are left out (the first %d "
                         "are shown).</p>\n",
                      n_hist - shown, MAX_DIST_CHARTS);
    }
    /* The last image and text of each tag. */
    size_t image_bytes = 0, skipped = 0;
    int any = 0;
    for (size_t r = 0; r < log->n_runs; r++)
        for (size_t i = 0; i < log->runs[r].n_images; i++) {
            const lr_blob *im = &log->runs[r].images[i];
            if (image_bytes + im->size > MAX_IMAGE_BYTES) {
                skipped++;
                continue;
            }
            if (!any++)
                sb_puts(b, "<h2>Images</h2><div class=\"grid\">\n");
            image_bytes += im->size;
            const int scale = im->width > 0 && im->width < 96 ? 4 : 1;
            sb_puts(b, "<figure class=\"image\"><figcaption>");
            sb_escs(b, im->tag);
            sb_puts(b, " <span class=\"run\">");
            sb_escs(b, log->runs[r].name);
            sb_printf(b, ", step %lld</span></figcaption><img class=\"last\" width=\"%d\" "
                         "height=\"%d\" alt=\"",
                      (long long)im->step, im->width * scale, im->height * scale);
            sb_escs(b, im->tag);
            sb_puts(b, "\" src=\"data:image/png;base64,");
            base64(b, im->data, im->size);
            sb_puts(b, "\"></figure>\n");
        }
    if (any)
        sb_puts(b, "</div>\n");
    if (skipped)
        sb_printf(b, "<p class=\"meta\">%zu more images are left out (over 1 MiB of images).</p>\n",
                  skipped);
    any = 0;
    for (size_t r = 0; r < log->n_runs; r++)
        for (size_t i = 0; i < log->runs[r].n_texts; i++) {
            const lr_blob *t = &log->runs[r].texts[i];
            if (!any++)
                sb_puts(b, "<h2>Text</h2>\n");
            sb_puts(b, "<figure class=\"text\"><figcaption>");
            sb_escs(b, t->tag);
            sb_puts(b, " <span class=\"run\">");
            sb_escs(b, log->runs[r].name);
            sb_printf(b, ", step %lld</span></figcaption><pre>", (long long)t->step);
            sb_esc(b, (const char *)t->data, t->size > MAX_TEXT_BYTES ? MAX_TEXT_BYTES : t->size);
            if (t->size > MAX_TEXT_BYTES)
                sb_printf(b, "\n[... %zu more bytes]", t->size - MAX_TEXT_BYTES);
            sb_puts(b, "</pre></figure>\n");
        }
    sb_puts(b, "<div id=\"tip\" hidden></div>\n<script>");
    sb_puts(b, script);
    sb_puts(b, "</script>\n</body></html>\n");
}

int report_prepare(const lr_log *log, int **group_of, char ***groups, size_t *n_groups)
{
    *group_of = calloc(log->n_runs ? log->n_runs : 1, sizeof **group_of);
    if (!*group_of || !make_groups(log, groups, n_groups, *group_of)) {
        free(*group_of);
        *group_of = NULL;
        return brisk_error_set(BRISK_ENOMEM, "report: out of memory");
    }
    return BRISK_OK;
}

int lr_report_html(const char *logdir, const brisk_report_options *opt, char **html,
                   size_t *len)
{
    *html = NULL;
    *len = 0;
    const brisk_report_options none = {0};
    if (!opt)
        opt = &none;
    lr_log log;
    int err = lr_log_read(logdir, opt->threads, &log);
    if (err < 0)
        return err;
    for (size_t i = 0; i < log.n_problems; i++)
        brisk_message(opt->message, opt->message_user, "%s", log.problems[i]);
    report rp = {.log = &log};
    if ((err = report_prepare(&log, &rp.group_of, &rp.groups, &rp.n_groups)) < 0) {
        lr_log_free(&log);
        return err;
    }
    size_t n_series = 0;
    for (size_t r = 0; r < log.n_runs; r++)
        n_series += log.runs[r].n_scalars;
    const size_t cols = n_series ? POINT_BUDGET_BYTES / (n_series * 2 * POINT_BYTES) : PLOT_W;
    rp.columns = cols > PLOT_W ? PLOT_W : cols < 24 ? 24 : (int)cols;
    rp.threads = lr_threads(opt->threads);
    write_report(&rp, opt->title ? opt->title : logdir);
    free(rp.group_of);
    free_names(rp.groups, rp.n_groups);
    lr_log_free_threads(&log, opt->threads);
    if (rp.out.oom) {
        free(rp.out.p);
        return brisk_error_set(BRISK_ENOMEM, "report of %s: out of memory", logdir);
    }
    *html = rp.out.p;
    *len = rp.out.len;
    return BRISK_OK;
}

int brisk_report_write(const char *logdir, const char *path, const brisk_report_options *opt)
{
    if (!logdir || !*logdir || !path || !*path)
        return brisk_error_set(BRISK_EINVAL, "report: %s is %s",
                               !logdir || !*logdir ? "the log directory" : "the output path",
                               (!logdir || !path) ? "NULL" : "empty");
    /* Both ends are checked (a missing log directory; a target that is a directory, device or
     * FIFO) before the logs are read. */
    struct stat st;
    if (stat(logdir, &st) != 0)
        return brisk_error_set(errno == ENOENT ? BRISK_ENOENT : BRISK_EIO,
                               "report: the log directory %s: %s", logdir, strerror(errno));
    brisk_outfile o;
    int err = brisk_outfile_open(&o, path);
    if (err < 0)
        return brisk_error_set(err, "report: %s", brisk_error_detail());
    char *html;
    size_t len;
    if ((err = lr_report_html(logdir, opt, &html, &len)) < 0) {
        brisk_outfile_abort(&o);
        return err;
    }
    fwrite(html, 1, len, o.fp);
    free(html);
    if ((err = brisk_outfile_commit(&o)) < 0)
        return brisk_error_set(err, "report: %s", brisk_error_detail());
    return BRISK_OK;
}
