/* Private to the report and the terminal plot: a text buffer, runs' groups and roles, axis
 * numbers. */
#ifndef BRISK_REPORT_INTERNAL_H
#define BRISK_REPORT_INTERNAL_H

#include "brisk/logread.h"

#include <stddef.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom; /* an allocation failed: the text is incomplete */
} sbuf;

int sb_reserve(sbuf *b, size_t n);
void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_esc(sbuf *b, const char *s, size_t n);
void sb_escs(sbuf *b, const char *s);
void fmt_float(char *out, size_t size, float v);

/* A run directory named train is drawn solid, validation (val, eval, test) dashed and
 * validation_ema (brisk_fit's validation of the weights' moving average) dotted; they belong
 * to the group of their parent directory, which gives them their colour. Any other run is its
 * own group. */
enum { ROLE_TRAIN, ROLE_VALIDATION, ROLE_OTHER, ROLE_AVERAGE };
int run_role(const char *run);
void run_group(const char *run, char *out, size_t size);
int make_groups(const lr_log *log, char ***names, size_t *n_names, int *group_of);
int report_prepare(const lr_log *log, int **group_of, char ***groups, size_t *n_groups);
void free_names(char **names, size_t n);
int cmp_strp(const void *a, const void *b);
int scalar_tags(const lr_log *log, char ***tags, size_t *n);
int overlaid_tag(const lr_log *log, const int *group_of, const char *tag);
void order_tags(const lr_log *log, const int *group_of, char **tags, size_t n);
void group_color(int g, char out[8]);
double nice_step(double range, int target);
void fmt_tick(char *out, size_t size, double v, double step);

#endif
