/* Curves in a terminal (brisk_report_plot): Unicode braille (2 x 4 dots a character) or plain
 * ASCII (one mark a character), a colour per run group, validation and the moving average's
 * validation dashed (ASCII: * train, o validation, + validation_ema). */
#define _GNU_SOURCE
#include "brisk/report.h"

#include "brisk/error.h"
#include "brisk/logread.h"
#include "brisk/message.h"
#include "report_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_W 11 /* "-1.234e+05 " */
#define MAX_DEFAULT_TAGS 8

typedef struct canvas {
    int cols, rows;    /* characters */
    int dx, dy;        /* dots per character: 2 x 4 (braille) or 1 x 1 */
    uint8_t *bits;     /* per character: braille dots, or the mark's index + 1 (ASCII) */
    short *color;      /* per character: the series drawn last there, -1 none */
} canvas;

static void dot(canvas *c, int x, int y, int series, int mark)
{
    if (x < 0 || y < 0 || x >= c->cols * c->dx || y >= c->rows * c->dy)
        return;
    const int cell = (y / c->dy) * c->cols + x / c->dx;
    if (c->dx == 2) {
        static const uint8_t bit[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};
        c->bits[cell] |= bit[x % 2][y % 4];
    } else {
        c->bits[cell] = (uint8_t)(mark + 1);
    }
    c->color[cell] = (short)series;
}

/* A line of dots from (x0, y0) to (x1, y1); dashed: every other run of three dots. */
static void line(canvas *c, int x0, int y0, int x1, int y1, int series, int mark, int dashed,
                 int *phase)
{
    const int ax = abs(x1 - x0), ay = abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = ax - ay;
    for (;;) {
        if (!dashed || (*phase / 3) % 2 == 0)
            dot(c, x0, y0, series, mark);
        ++*phase;
        if (x0 == x1 && y0 == y1)
            return;
        const int e2 = 2 * err;
        if (e2 > -ay) {
            err -= ay;
            x0 += sx;
        }
        if (e2 < ax) {
            err += ax;
            y0 += sy;
        }
    }
}

static void put_utf8(FILE *out, unsigned cp)
{
    if (cp < 0x80)
        fputc((int)cp, out);
    else
        fprintf(out, "%c%c%c", 0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

static int ansi_color(int group)
{
    static const int codes[] = {34, 33, 32, 31, 35, 36, 94, 93, 92, 91, 95, 96};
    return codes[group % 12];
}

static void plot_tag(FILE *out, const lr_log *log, const int *group_of, const char *tag,
                     const brisk_plot_options *o, int width, int height)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t r = 0; r < log->n_runs; r++) {
        const lr_scalars *s = lr_run_scalars(&log->runs[r], tag);
        if (!s || !s->n)
            continue;
        xmin = fmin(xmin, (double)lr_step(s, 0));
        xmax = fmax(xmax, (double)lr_step(s, s->n - 1));
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->value[i])) {
                ymin = fmin(ymin, s->value[i]);
                ymax = fmax(ymax, s->value[i]);
            }
    }
    fprintf(out, "%s\n", tag);
    if (!(ymin <= ymax)) {
        fprintf(out, "  (no finite values)\n\n");
        return;
    }
    if (ymax - ymin < 1e-12 * fmax(1, fabs(ymax)))
        ymin -= 0.5, ymax += 0.5;
    if (xmax <= xmin)
        xmin -= 0.5, xmax += 0.5;
    canvas c = {.cols = width - LABEL_W - 1, .rows = height, .dx = o->ascii ? 1 : 2,
                .dy = o->ascii ? 1 : 4};
    c.bits = calloc((size_t)c.cols * c.rows, 1);
    c.color = malloc((size_t)c.cols * c.rows * sizeof *c.color);
    if (!c.bits || !c.color) {
        free(c.bits);
        free(c.color);
        fprintf(out, "  (out of memory)\n\n");
        return;
    }
    for (int i = 0; i < c.cols * c.rows; i++)
        c.color[i] = -1;
    const int W = c.cols * c.dx, H = c.rows * c.dy;
    for (size_t r = 0; r < log->n_runs; r++) {
        const lr_scalars *s = lr_run_scalars(&log->runs[r], tag);
        if (!s)
            continue;
        const int role = run_role(log->runs[r].name);
        int px = -1, py = -1, phase = 0;
        for (size_t i = 0; i < s->n; i++) {
            if (!isfinite(s->value[i])) {
                px = -1;
                continue;
            }
            const int x = (int)lround(((double)lr_step(s, i) - xmin) / (xmax - xmin) * (W - 1));
            const int y = (int)lround((ymax - s->value[i]) / (ymax - ymin) * (H - 1));
            /* ASCII marks: * train, o validation, + the average's validation */
            const int mark = role == ROLE_VALIDATION ? 1 : role == ROLE_AVERAGE ? 2 : 0;
            if (px < 0)
                dot(&c, x, y, (int)r, mark);
            else
                line(&c, px, py, x, y, (int)r, mark, mark && !o->ascii, &phase);
            px = x;
            py = y;
        }
    }
    for (int row = 0; row < c.rows; row++) {
        char label[32] = "";
        if (row == 0 || row == c.rows - 1 || row == c.rows / 2) {
            const double v = ymax - (ymax - ymin) * row / (c.rows - 1 > 0 ? c.rows - 1 : 1);
            snprintf(label, sizeof label, "%.4g", v);
        }
        fprintf(out, "%*s ", LABEL_W - 1, label);
        if (o->ascii)
            fputc(label[0] ? '+' : '|', out);
        else
            put_utf8(out, label[0] ? 0x2524 : 0x2502);
        int cur = -1;
        for (int col = 0; col < c.cols; col++) {
            const int cell = row * c.cols + col;
            const int series = c.color[cell];
            if (o->color) {
                const int want = series < 0 ? -1 : ansi_color(group_of[series]);
                if (want != cur) {
                    if (want < 0)
                        fputs("\033[0m", out);
                    else
                        fprintf(out, "\033[%dm", want);
                    cur = want;
                }
            }
            if (o->ascii)
                fputc(c.bits[cell] ? "*o+"[c.bits[cell] - 1] : ' ', out);
            else
                put_utf8(out, c.bits[cell] ? 0x2800u + c.bits[cell] : ' ');
        }
        if (o->color && cur >= 0)
            fputs("\033[0m", out);
        fputc('\n', out);
    }
    char a[32], b[32];
    snprintf(a, sizeof a, "%.0f", ceil(xmin));
    snprintf(b, sizeof b, "%.0f", floor(xmax));
    fprintf(out, "%*s %s", LABEL_W - 1, "", o->ascii ? "+" : "\xe2\x94\x94");
    for (int col = 0; col < c.cols; col++)
        fputs(o->ascii ? "-" : "\xe2\x94\x80", out);
    const int pad = c.cols - (int)strlen(a) - 5;
    fprintf(out, "\n%*s %s%*s step\n", LABEL_W, "", a, pad > 1 ? pad : 1, b);
    /* The legend: a run's mark and colour. */
    fprintf(out, "%*s", LABEL_W, "");
    for (size_t r = 0; r < log->n_runs; r++) {
        if (!lr_run_scalars(&log->runs[r], tag))
            continue;
        const int role = run_role(log->runs[r].name);
        const int val = role == ROLE_VALIDATION || role == ROLE_AVERAGE;
        if (o->color)
            fprintf(out, "\033[%dm", ansi_color(group_of[r]));
        fputs(o->ascii ? (role == ROLE_AVERAGE ? "+ " : val ? "o " : "* ")
                       : (val ? "\xe2\x95\x8c\xe2\x95\x8c " : "\xe2\x94\x80\xe2\x94\x80 "), out);
        if (o->color)
            fputs("\033[0m", out);
        fprintf(out, "%s  ", log->runs[r].name);
    }
    fputs("\n\n", out);
    free(c.bits);
    free(c.color);
}

int brisk_report_plot(const char *logdir, FILE *out, const brisk_plot_options *opt)
{
    if (!logdir || !*logdir || !out)
        return brisk_error_set(BRISK_EINVAL, "plot: %s is NULL or empty",
                               !out ? "the output" : "the log directory");
    const brisk_plot_options none = {0};
    const brisk_plot_options *o = opt ? opt : &none;
    if (o->n_tags && !o->tags)
        return brisk_error_set(BRISK_EINVAL, "plot: n_tags %zu with tags NULL", o->n_tags);
    if (o->width < 0 || o->height < 0 || o->height > 1000 || o->width > 10000)
        return brisk_error_set(BRISK_EINVAL, "plot: width %d (0 or 30..10000), height %d "
                               "(0 or 3..1000)", o->width, o->height);
    int width = o->width, height = o->height ? o->height : 12;
    if (!width) {
        const char *env = getenv("COLUMNS");
        width = env ? atoi(env) : 0;
        if (width <= 0 || width > 10000)
            width = 80;
    }
    if (width < 30)
        width = 30;
    if (height < 3)
        height = 3;
    lr_log log;
    int err = lr_log_read(logdir, o->threads, &log);
    if (err < 0)
        return err;
    for (size_t i = 0; i < log.n_problems; i++)
        brisk_message(o->message, o->message_user, "%s", log.problems[i]);
    int *group_of;
    char **groups, **tags = NULL;
    size_t n_groups, n_tags = 0;
    if ((err = report_prepare(&log, &group_of, &groups, &n_groups)) < 0 ||
        !scalar_tags(&log, &tags, &n_tags)) {
        if (!err) {
            free(group_of);
            free_names(groups, n_groups);
            err = brisk_error_set(BRISK_ENOMEM, "plot: out of memory");
        }
        lr_log_free(&log);
        return err;
    }
    if (o->n_tags) {
        for (size_t i = 0; i < o->n_tags && !err; i++) {
            int found = 0;
            for (size_t k = 0; k < n_tags && !found; k++)
                found = !strcmp(tags[k], o->tags[i] ? o->tags[i] : "");
            if (!found) {
                sbuf have = {0};
                for (size_t k = 0; k < n_tags; k++)
                    sb_printf(&have, "%s%s", k ? ", " : "", tags[k]);
                err = brisk_error_set(BRISK_ENOENT, "plot: no run in %s has the scalar tag '%s'"
                                      "; its scalar tags: %s", logdir,
                                      o->tags[i] ? o->tags[i] : "(null)",
                                      have.p ? have.p : "none");
                free(have.p);
            }
        }
        for (size_t i = 0; i < o->n_tags && !err; i++)
            plot_tag(out, &log, group_of, o->tags[i], o, width, height);
    } else if (!n_tags) {
        fprintf(out, "%s: no scalar tags\n", logdir);
    } else {
        size_t shown = 0, shared = 0;
        char *drawn = calloc(n_tags, 1);
        for (size_t k = 0; k < n_tags; k++)
            shared += overlaid_tag(&log, group_of, tags[k]);
        for (size_t k = 0; k < n_tags && shown < MAX_DEFAULT_TAGS; k++)
            if (!shared || overlaid_tag(&log, group_of, tags[k])) {
                plot_tag(out, &log, group_of, tags[k], o, width, height);
                if (drawn)
                    drawn[k] = 1;
                shown++;
            }
        if (n_tags > shown && drawn) {
            fprintf(out, "%zu more scalar tags (--tag TAG draws one):", n_tags - shown);
            for (size_t k = 0, listed = 0; k < n_tags; k++)
                if (!drawn[k] && listed++ < 50)
                    fprintf(out, " %s", tags[k]);
            if (n_tags - shown > 50)
                fputs(" ...", out);
            fputc('\n', out);
        }
        free(drawn);
    }
    free(group_of);
    free_names(groups, n_groups);
    free_names(tags, n_tags);
    lr_log_free(&log);
    return err;
}
