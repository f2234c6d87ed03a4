/* brisk/logger.h: a dedicated logging thread that writes TensorBoard event files.
 *
 * Compute threads push tagged values (scalars, histogram snapshots, text, images, hparams,
 * chart layouts) into their own lock-free single-producer ring; one logging thread drains every
 * ring, does the expensive work (histogram bucketing, PNG encoding, protobuf encoding, CRCs,
 * file I/O) and writes one event file per run directory. A push never blocks and never takes a
 * lock: when a ring is full the record is dropped and counted, the count reaches the event
 * file as the scalar `brisk/dropped_records`, and close() warns about it.
 *
 * Typical use (error handling left out):
 *
 *     brisk_logger *lg;
 *     brisk_logger_create(&(brisk_logger_config){.logdir = "logs/run1"}, &lg);
 *     int train, val;
 *     brisk_logger_add_run(lg, "train", 0, &train);       // logs/run1/train/events.out...
 *     brisk_logger_add_run(lg, "validation", 0, &val);
 *     brisk_log_producer *p;
 *     brisk_logger_producer(lg, &p);                      // once per pushing thread
 *     brisk_log_scalar(p, train, "epoch_loss", 1, 0.42);
 *     brisk_logger_close(lg);                             // drains, fsyncs, closes
 *     brisk_logger_destroy(lg);
 *
 * Threads: create, add_run, producer, flush, close and destroy may be called from any thread
 * (close and destroy once, after every producer has stopped pushing). Each producer handle
 * belongs to one thread at a time. brisk_logger_close_from_signal is async-signal-safe.
 */
#ifndef BRISK_LOGGER_H
#define BRISK_LOGGER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_logger brisk_logger;
typedef struct brisk_log_producer brisk_log_producer;

#define BRISK_LOG_DEFAULT_RING_BYTES ((size_t)4 << 20)
#define BRISK_LOG_DEFAULT_FLUSH_SECS 2.0
#define BRISK_LOG_DEFAULT_MAX_PRODUCERS 64
#define BRISK_LOG_MAX_RUNS 16
#define BRISK_LOG_MAX_TAG 255

/* The writer string in each file's source_metadata. */
#define BRISK_LOG_WRITER "brisk"

typedef struct brisk_logger_config {
    const char *logdir;     /* experiment directory; created with its parents (required) */
    size_t ring_bytes;      /* per producer, a power of two; 0 = BRISK_LOG_DEFAULT_RING_BYTES */
    double flush_secs;      /* periodic write to the files; 0 = BRISK_LOG_DEFAULT_FLUSH_SECS */
    int max_producers;      /* 0 = BRISK_LOG_DEFAULT_MAX_PRODUCERS */
    /* 0: the logging thread runs at the lowest priority (nice 19, on Linux), on CPU time the
     * compute threads leave, so that logging does not slow them down. Nonzero: normal
     * priority. */
    int normal_priority;
    /* Receives each warning as one line without a newline (logging thread or caller).
     * NULL prints "brisk: <line>" on stderr. */
    void (*message)(void *user, const char *line);
    void *message_user;
} brisk_logger_config;

/* Creates the directory and starts the logging thread. Returns BRISK_OK with *out (owned;
 * brisk_logger_destroy), or BRISK_EINVAL / BRISK_EIO (the detail names the path and errno)
 * / BRISK_ENOMEM. */
int brisk_logger_create(const brisk_logger_config *cfg, brisk_logger **out);

/* Opens a run: directory logdir/name (name "" is logdir itself, where hparams belong) and a
 * new event file in it, named events.out.tfevents.<unix seconds>.<host>.<pid>.<counter> and
 * opened with O_EXCL (an existing file is never appended to). Writes the file_version and
 * source_metadata record and a SessionLog START at first_step, and puts them in the file
 * before returning. *run is the handle for pushes. One writer per run: a name already open in
 * this logger is refused. Returns BRISK_OK, BRISK_EIO (path, errno), BRISK_EINVAL (bad or
 * duplicate name, or BRISK_LOG_MAX_RUNS reached) or BRISK_ENOMEM. */
int brisk_logger_add_run(brisk_logger *lg, const char *name, int64_t first_step, int *run);

/* Path of the event file of a run (owned by the logger), or NULL for a bad handle. */
const char *brisk_logger_run_path(const brisk_logger *lg, int run);

/* Registers a ring for the calling thread and returns its handle in *out (owned by the
 * logger, valid until destroy). Returns BRISK_OK, BRISK_EINVAL (max_producers reached),
 * BRISK_ESTATE (after close) or BRISK_ENOMEM. */
int brisk_logger_producer(brisk_logger *lg, brisk_log_producer **out);

/* Pushes. Each copies its arguments into the producer's ring and returns at once:
 * BRISK_OK; BRISK_EFULL or BRISK_EOVERFLOW when the record was dropped (counted);
 * BRISK_EINVAL for a bad run handle, an empty tag or one over BRISK_LOG_MAX_TAG bytes (not
 * counted: that is a caller bug). Steps must increase per tag within a run. */
int brisk_log_scalar(brisk_log_producer *p, int run, const char *tag, int64_t step, double value);

/* A histogram of x[0, n): the values are copied (a snapshot); bucketing into TensorBoard's
 * exponential buckets happens on the logging thread. NaNs are left out of the histogram. */
int brisk_log_histogram(brisk_log_producer *p, int run, const char *tag, int64_t step,
                        const float *x, size_t n);

/* A text summary (UTF-8; TensorBoard renders it as Markdown). */
int brisk_log_text(brisk_log_producer *p, int run, const char *tag, int64_t step,
                   const char *text);

/* An image of height h and width w, row-major, `channels` bytes per pixel (1 gray, 3 RGB,
 * 4 RGBA). PNG encoding happens on the logging thread. */
int brisk_log_image(brisk_log_producer *p, int run, const char *tag, int64_t step,
                    const uint8_t *pixels, int h, int w, int channels);

/* One hyperparameter of a session. */
typedef enum brisk_hparam_type {
    BRISK_HPARAM_NUMBER,
    BRISK_HPARAM_STRING,
    BRISK_HPARAM_BOOL,
} brisk_hparam_type;

typedef struct brisk_hparam {
    const char *name;
    brisk_hparam_type type;
    double number;
    const char *string;
    int boolean;
} brisk_hparam;

/* A metric shown in the hparams table: a scalar tag in a run, where group is the run's path
 * relative to the hparams run (e.g. {"validation", "epoch_accuracy"}). */
typedef struct brisk_metric {
    const char *group;
    const char *tag;
} brisk_metric;

/* Writes the hparams experiment (hparam and metric declarations) and the session start (the
 * values) into `run`, which should be the run named "" (TensorBoard then adds no extra run). */
int brisk_log_hparams(brisk_log_producer *p, int run, const brisk_hparam *hparams, size_t n,
                      const brisk_metric *metrics, size_t n_metrics);

typedef enum brisk_session_status {
    BRISK_SESSION_SUCCESS = 1,
    BRISK_SESSION_FAILURE = 2,
    BRISK_SESSION_RUNNING = 3,
} brisk_session_status;

/* Writes the hparams session end with its status. */
int brisk_log_hparams_end(brisk_log_producer *p, int run, brisk_session_status status);

/* Asks the logging thread to refresh an HTML report of the log directory (brisk/report.h) at
 * path (NULL: <logdir>/report.html): once it reaches this record it writes out the records
 * before it and replaces the report atomically, so that a browser pointed at the file (or a
 * copy taken with scp) shows the run as it stands. Compute threads only pay the push. A
 * report that cannot be written is told through the message callback (once per distinct
 * failure) and does not fail the logs. Needs a run added first (BRISK_EINVAL otherwise). */
int brisk_log_report(brisk_log_producer *p, const char *path);

/* A custom_scalars chart: several tags (regular expressions) on one chart. */
typedef struct brisk_chart {
    const char *title;
    const char *const *tags;
    size_t n_tags;
} brisk_chart;

/* Writes a custom_scalars layout with one category holding these charts. */
int brisk_log_custom_scalars(brisk_log_producer *p, int run, const char *category,
                             const brisk_chart *charts, size_t n);

/* Returns once everything pushed (by any thread) before the call is written to the files and
 * fdatasync'ed. Returns BRISK_OK, BRISK_EIO when a run could not be written (the detail says
 * which file and why), or BRISK_ESTATE after close. */
int brisk_logger_flush(brisk_logger *lg);

/* Drains every ring, writes, fsyncs and closes every file, and stops the logging thread.
 * Warns (through the message callback) when records were dropped or a file failed.
 * Returns BRISK_OK, or BRISK_EIO for the first file that failed (detail: path, errno). */
int brisk_logger_close(brisk_logger *lg);

/* For a SIGINT/SIGTERM handler: asks the logging thread to drain every ring, write, fsync and
 * close the files, and waits for it up to timeout_ms. Async-signal-safe (lock-free atomics
 * and nanosleep only); the logging thread blocks signals, so a handler never runs on it.
 * Records a producer was in the middle of pushing when the signal arrived are not included.
 * Returns BRISK_OK once the files are closed, or BRISK_ESTATE when the thread did not finish
 * in time. close() and destroy() remain valid afterwards. */
int brisk_logger_close_from_signal(brisk_logger *lg, int timeout_ms);

/* Counters, readable at any time. */
typedef struct brisk_logger_stats {
    uint64_t records;       /* records consumed by the logging thread */
    uint64_t events;        /* events written to files */
    uint64_t dropped;       /* records dropped by full rings, all producers */
    uint64_t bytes;         /* bytes written to files */
    int write_errors;       /* runs whose file failed */
    double cpu_seconds;     /* CPU time the logging thread used (known once it has stopped) */
} brisk_logger_stats;

void brisk_logger_get_stats(const brisk_logger *lg, brisk_logger_stats *out);

/* Closes if needed and frees everything (NULL is fine). */
void brisk_logger_destroy(brisk_logger *lg);

/* 1 when logdir, or one of its subdirectories (its runs), holds an event file; 0 otherwise
 * (a missing directory included). */
int brisk_log_dir_has_events(const char *logdir);

/* Cuts a torn last record (left by a process killed in the middle of a write) off every event
 * file in logdir and in its subdirectories (one level: the runs), so that TensorBoard reads
 * each file to its end instead of waiting on the tail or calling it damaged. Only for a
 * directory no process is writing (brisk_lock_take). Each file cut, and each file damaged
 * in its middle (left as it is), is reported through message (NULL: "brisk: <line>" on
 * stderr). Returns the number of files cut, or BRISK_EIO (a file could not be cut). */
int brisk_log_repair(const char *logdir, void (*message)(void *user, const char *line),
                     void *user);

#ifdef __cplusplus
}
#endif

#endif
