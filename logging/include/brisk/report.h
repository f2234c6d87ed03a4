/* brisk/report.h: the curves of a log directory without TensorBoard.
 *
 * brisk_report_write reads every TensorBoard event file under a log directory (Brisk's or any
 * other writer's) and writes one self-contained HTML file: no network, no external scripts,
 * styles or fonts. Charts are inline SVG, readable with scripts off: one chart per scalar tag
 * with every run that has it (train and validation of a run share a colour, solid and dashed),
 * a table of the runs' hyperparameters and final metrics, distribution bands of histograms,
 * and the last image and text of each tag. A small inline script adds hover values, a
 * smoothing slider (TensorBoard's debiased exponential moving average) and a log scale.
 *
 * What is drawn follows TensorBoard's reading rules: event files in name order, a resumed
 * run's repeated steps replace the old ones (no fold-back), a file still being written is read
 * up to its last whole record, and a damaged record ends its file with a message naming it
 * while the rest of the report is still written. Long series are decimated for drawing,
 * keeping the smallest and the largest point of each pixel column (the points drawn keep
 * their exact values), so that a report stays a few megabytes. The same logs give the same
 * bytes.
 *
 * brisk_report_plot draws the same curves as text for a terminal.
 */
#ifndef BRISK_REPORT_H
#define BRISK_REPORT_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_report_options {
    const char *title; /* NULL: the log directory's path */
    int threads;       /* threads that read event files; 0: one per CPU, at most 8 */
    /* Receives one line per file that could not be read (or was read in part). NULL: printed
     * as "brisk: <line>" on stderr. */
    void (*message)(void *user, const char *line);
    void *message_user;
} brisk_report_options;

/* Writes the report of logdir to path, atomically (a temporary file beside it, renamed over
 * it: a browser never sees half a report). opt may be NULL. Returns BRISK_OK (also when some
 * files could not be read: each was named through message, and in the report),
 * BRISK_ENOENT / BRISK_EIO when logdir cannot be read or path cannot be written (the detail
 * names it), BRISK_EINVAL for a NULL or empty argument, BRISK_ENOMEM. */
int brisk_report_write(const char *logdir, const char *path, const brisk_report_options *opt);

typedef struct brisk_plot_options {
    const char *const *tags; /* the scalar tags to draw; NULL: those that a run's train and
                              * validation share (epoch_loss, ...), else every scalar tag */
    size_t n_tags;
    int width;  /* characters per line; 0: $COLUMNS, else 80 */
    int height; /* rows of a chart; 0: 12 */
    int color;  /* ANSI colours, one per run */
    int ascii;  /* plain ASCII marks instead of Unicode braille */
    int threads; /* as in brisk_report_options */
    void (*message)(void *user, const char *line);
    void *message_user;
} brisk_plot_options;

/* Draws one chart per tag to out: every run that has the tag, train and validation overlaid,
 * a y axis with labels, the step range and a legend. opt may be NULL. Returns BRISK_OK,
 * BRISK_ENOENT when a tag in opt->tags is in no run (the detail lists the tags there are),
 * BRISK_ENOENT / BRISK_EIO when logdir cannot be read, BRISK_EINVAL, BRISK_ENOMEM. */
int brisk_report_plot(const char *logdir, FILE *out, const brisk_plot_options *opt);

#ifdef __cplusplus
}
#endif

#endif
