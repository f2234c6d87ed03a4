/* brisk/logread.h: reads a log directory's TensorBoard event files back into memory, as
 * TensorBoard would show them, for the report and the terminal plot (brisk/report.h).
 *
 * A run is a directory holding event files (named after "tfevents"), named by its path under
 * the log directory ("." for the directory itself). Its files are read in name order (the
 * order of their creation: names start with the creation time). Points of a tag keep
 * TensorBoard's purge rule: a point whose step is not above the last kept one drops every kept
 * point at or after that step (a resumed run does not fold back). A file is read up to its
 * last whole record (a run still being written); a damaged record ends that file, a message
 * names it, and everything read before it is kept.
 */
#ifndef BRISK_LOGREAD_H
#define BRISK_LOGREAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A scalar tag: steps strictly increasing. Most series step by a fixed stride, and theirs
 * are not stored (base + i * stride); others keep them as 32-bit offsets from the first, or
 * whole in wide when a step is more than 2^32 - 1 past the first (a large log's arrays are
 * then a third to two thirds smaller). Read them with lr_step. */
typedef struct lr_scalars {
    char *tag;
    size_t tag_len;
    uint64_t head[2]; /* the tag's first 16 bytes, zero-padded (a fast compare) */
    int64_t base;     /* the first step */
    int64_t stride;   /* step i = base + i * stride while dstep and wide are NULL */
    int64_t last;     /* the last step, when n > 0 */
    uint32_t *dstep;  /* step - base, once the stride broke */
    int64_t *wide;    /* the steps, once an offset did not fit 32 bits */
    float *value;
    size_t n, cap;
} lr_scalars;

/* Step i of a series. */
static inline int64_t lr_step(const lr_scalars *s, size_t i)
{
    if (s->wide)
        return s->wide[i];
    if (s->dstep)
        return s->base + (int64_t)s->dstep[i];
    return (int64_t)((uint64_t)s->base + (uint64_t)i * (uint64_t)s->stride);
}

/* TensorBoard's distribution bands: these percentiles of each histogram (in basis points:
 * 0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000: the min, +-1.5, +-1 and +-0.5 standard
 * deviations of a normal, the median and the max). */
#define LR_BANDS 9
typedef struct lr_hist_point {
    int64_t step;
    double q[LR_BANDS];
} lr_hist_point;

typedef struct lr_histograms {
    char *tag;
    lr_hist_point *p;
    size_t n, cap;
} lr_histograms;

/* The last image (PNG bytes) or text of a tag. */
typedef struct lr_blob {
    char *tag;
    int64_t step;
    uint8_t *data;
    size_t size;
    int width, height; /* images */
} lr_blob;

/* One hyperparameter of a run's hparams session: a number, a string or a bool (as text). */
typedef struct lr_hparam {
    char *name;
    char *text;    /* as shown */
    double number; /* when is_number */
    int is_number;
} lr_hparam;

typedef struct lr_run {
    char *name;
    char **files; /* the event files, in reading order */
    lr_scalars *scalars;
    size_t n_scalars;
    size_t *scalar_index; /* open addressing: index + 1 into scalars, 0 empty */
    size_t index_size;    /* a power of two, at least twice n_scalars */
    lr_histograms *hists;
    size_t n_hists;
    lr_blob *images, *texts;
    size_t n_images, n_texts;
    lr_hparam *hparams;
    size_t n_hparams;
    char **metrics; /* the hparams experiment's metrics, as "group\ttag" (group: a run
                     * directory relative to this one, "" for itself) */
    size_t n_metrics;
    int session_status; /* 0 none, 1 success, 2 failure, 3 running (SessionEndInfo) */
    size_t n_files, records;
    char **problems; /* this run's, merged into lr_log's */
    size_t n_problems;
    int torn; /* a file ended inside a record (still being written, or killed) */
} lr_run;

typedef struct lr_log {
    lr_run *runs; /* sorted by name */
    size_t n_runs;
    char **problems; /* one line each: a file that could not be read, or a damaged record */
    size_t n_problems;
} lr_log;

/* Reads every event file under dir (symbolic links followed, each file and directory read
 * once; a path that is not a directory is read as one event file of run "."), runs on up to
 * `threads` threads (0: one per online CPU, at most 8; the result does not depend on it).
 * Returns BRISK_OK with *log filled (lr_log_free), problems listed in it; BRISK_EIO when dir
 * cannot be read at all (the detail names it); BRISK_ENOMEM. */
int lr_log_read(const char *dir, int threads, lr_log *log);
void lr_log_free(lr_log *log);
/* The same on up to `threads` threads (as lr_log_read's). */
void lr_log_free_threads(lr_log *log, int threads);

/* The threads to use for `threads` as in lr_log_read: 1..8. */
int lr_threads(int threads);

/* Runs fn(arg) on min(threads, jobs, 8) threads, the calling one included, and waits for them:
 * fn claims its jobs from a counter in arg until none is left. */
void lr_parallel(int threads, size_t jobs, void *(*fn)(void *), void *arg);

struct brisk_report_options;
/* The HTML report of logdir (brisk_report_write without the file): *html (malloc'd, NUL
 * terminated) of *len bytes. */
int lr_report_html(const char *logdir, const struct brisk_report_options *opt, char **html,
                   size_t *len);

/* The scalar series of a tag in a run, or NULL. */
const lr_scalars *lr_run_scalars(const lr_run *run, const char *tag);

#ifdef __cplusplus
}
#endif

#endif
