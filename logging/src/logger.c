/* The logging thread, its runs (one event file each) and the producers' pushes.
 *
 * Who touches what:
 *   - runs[i] and producers[i] are filled by the registering thread under `mu`, then published
 *     by a release store of n_runs / n_producers; after that a run belongs to the logging
 *     thread (its buffer, fd and error state) and only its path is read by others.
 *   - A producer's ring and drops_reported belong to its pushing thread; drops_seen to the
 *     logging thread.
 *   - flush_req / flush_done / flush_err, stop and the condition variables live under `mu`.
 *   - sig_close and files_closed are lock-free atomics so that a signal handler may use them.
 */
#define _GNU_SOURCE /* syscall(SYS_gettid) */
#include "brisk/clock.h"
#include "brisk/logger.h"

#include "brisk/error.h"
#include "brisk/message.h"
#include "brisk/fsutil.h"
#include "brisk/report.h"
#include "brisk/ring.h"
#include "log_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DROPS_TAG "brisk/dropped_records"
/* A run's buffer is written out when it passes this size, or at the periodic flush. */
#define RUN_WRITE_BYTES ((size_t)1 << 20)

/* A record in a run's buffer: the offset just past it, and its step. */
typedef struct record_mark {
    size_t end;
    int64_t step;
} record_mark;

typedef struct log_run {
    char name[208];   /* as given to add_run */
    char *path;       /* the event file */
    int fd;           /* -1 once closed */
    log_buf buf;      /* framed records not yet written */
    record_mark *marks; /* where each of them ends in buf, and its step */
    size_t n_marks, cap_marks;
    off_t whole;      /* the file's size: it ends at a whole record */
    int64_t file_step; /* the largest step of a record in the file (INT64_MIN: none yet) */
    int failed;       /* errno of the first failed write, 0 while fine */
    int64_t drop_step; /* steps of DROPS_TAG must increase */
} log_run;

struct brisk_log_producer {
    brisk_logger *lg;
    brisk_ring *ring;
    uint64_t drops_reported; /* pushing thread: drops already sent in-band */
    uint64_t drops_seen;     /* logging thread: drops received in-band */
};

struct brisk_logger {
    char *logdir;
    size_t ring_bytes;
    double flush_secs;
    int max_producers;
    int normal_priority;
    void (*message)(void *user, const char *line);
    void *message_user;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* to the logging thread: flush or stop requested */
    pthread_cond_t done; /* from the logging thread: a flush finished */
    uint64_t flush_req, flush_done;
    int flush_err;
    char flush_detail[512];
    int stop, closed;

    log_run runs[BRISK_LOG_MAX_RUNS];
    _Atomic int n_runs;
    brisk_log_producer *producers; /* [max_producers] */
    _Atomic int n_producers;

    _Atomic int sig_close;    /* a signal handler asked for drain-and-close */
    _Atomic int files_closed; /* the logging thread closed every file */

    /* Logging thread only. */
    uint8_t *scratch;       /* one popped record, ring_bytes */
    uint32_t *hist_counts;  /* histogram counting scratch: 4 per bucket */
    uint64_t *targets;      /* flush: ring positions to reach */
    int64_t last_step;
    char report_error[512]; /* the last failure to write a report, reported once */
    int first_error_run;    /* -1, or the run whose failure close() reports */
    int first_error_errno;

    _Atomic uint64_t st_records, st_events, st_bytes;
    _Atomic int st_write_errors;
    double cpu_seconds; /* written by the logging thread as it ends, read after the join */
};

/* A warning through the program's callback (brisk/message.h). */
#define log_message(lg, ...) brisk_message((lg)->message, (lg)->message_user, __VA_ARGS__)

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Marks a run failed: reported once (with the path, errno and the last step the file keeps),
 * counted, remembered for close(); everything for the run is discarded from then on, so
 * producers never stall. */
static void run_fail(brisk_logger *lg, int idx, int err, const char *what)
{
    log_run *run = &lg->runs[idx];
    if (run->failed)
        return;
    run->failed = err;
    atomic_fetch_add_explicit(&lg->st_write_errors, 1, memory_order_relaxed);
    char kept[96] = "";
    if (run->file_step != INT64_MIN)
        snprintf(kept, sizeof kept, " (it keeps the records up to step %lld)",
                 (long long)run->file_step);
    log_message(lg, "%s %s: %s; later records for this run are discarded%s", what, run->path,
                strerror(err), kept);
    if (lg->first_error_run < 0) {
        lg->first_error_run = idx;
        lg->first_error_errno = err;
    }
}

/* Writes a run's buffered records. A write that fails part-way (a full disk) is cut back to
 * the last record written whole, so that the file never ends in a torn record that
 * TensorBoard would wait on or call damaged. */
static void run_write_out(brisk_logger *lg, int idx)
{
    log_run *run = &lg->runs[idx];
    struct stat st;
    /* A removed file (its directory deleted under us) still takes writes that no one will
     * ever read: say so instead. */
    if (!run->failed && run->buf.len > 0 && run->fd >= 0 && fstat(run->fd, &st) == 0 &&
        st.st_nlink == 0)
        run_fail(lg, idx, ENOENT, "event file removed (with its directory?):");
    size_t at = 0;
    int err = 0;
    while (!run->failed && at < run->buf.len && run->fd >= 0) {
        ssize_t w = write(run->fd, run->buf.p + at, run->buf.len - at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        at += (size_t)w;
        atomic_fetch_add_explicit(&lg->st_bytes, (uint64_t)w, memory_order_relaxed);
    }
    /* The records now whole in the file. */
    size_t whole = 0;
    for (size_t i = 0; i < run->n_marks && run->marks[i].end <= at; i++) {
        whole = run->marks[i].end;
        if (run->marks[i].step > run->file_step)
            run->file_step = run->marks[i].step;
    }
    run->whole += (off_t)whole;
    if (err) {
        if (whole != at && ftruncate(run->fd, run->whole) == 0)
            (void)lseek(run->fd, run->whole, SEEK_SET);
        run_fail(lg, idx, err, "cannot write");
    }
    run->buf.len = 0;
    run->n_marks = 0;
}

static void run_sync(brisk_logger *lg, int idx, int data_only)
{
    log_run *run = &lg->runs[idx];
    run_write_out(lg, idx);
    if (run->fd < 0 || run->failed)
        return;
    if ((data_only ? fdatasync(run->fd) : fsync(run->fd)) != 0 && errno != EINVAL)
        run_fail(lg, idx, errno, "cannot sync");
}

static int run_error(const brisk_logger *lg)
{
    if (lg->first_error_run < 0)
        return BRISK_OK;
    const log_run *run = &lg->runs[lg->first_error_run];
    if (run->file_step == INT64_MIN)
        return brisk_error_set(BRISK_EIO, "cannot write %s: %s; it holds no record past its "
                               "header", run->path, strerror(lg->first_error_errno));
    return brisk_error_set(BRISK_EIO, "cannot write %s: %s; it keeps the records up to step "
                           "%lld and ends at a whole record", run->path,
                           strerror(lg->first_error_errno), (long long)run->file_step);
}


static void append_record(brisk_logger *lg, int idx, const log_rec *rec, const char *tag,
                          const uint8_t *body, double wall)
{
    log_run *run = &lg->runs[idx];
    if (run->failed)
        return;
    const size_t before = run->buf.len;
    int err = log_encode_record(&run->buf, rec, tag, body, wall, lg->hist_counts);
    if (err) {
        log_message(lg, "%s: dropped a record for tag '%s': %s", run->path, tag,
                    brisk_error_detail());
        run->buf.len = before;
        return;
    }
    if (run->n_marks == run->cap_marks) {
        const size_t cap = run->cap_marks ? 2 * run->cap_marks : 1024;
        record_mark *m = realloc(run->marks, cap * sizeof *m);
        if (!m) {
            log_message(lg, "%s: dropped a record for tag '%s': out of memory", run->path, tag);
            run->buf.len = before;
            return;
        }
        run->marks = m;
        run->cap_marks = cap;
    }
    run->marks[run->n_marks++] = (record_mark){run->buf.len, rec->step};
    atomic_fetch_add_explicit(&lg->st_events, rec->kind == LOG_HPARAMS ? 2 : 1,
                              memory_order_relaxed);
    if (run->buf.len >= RUN_WRITE_BYTES)
        run_write_out(lg, idx);
}

/* Damaged files are named inside the report itself. */
static void report_quiet(void *user, const char *line)
{
    (void)user;
    (void)line;
}

static uint64_t total_drops_seen(const brisk_logger *lg, int np)
{
    uint64_t t = 0;
    for (int i = 0; i < np; i++)
        t += lg->producers[i].drops_seen;
    return t;
}

static void write_drops(brisk_logger *lg, int run_idx, int64_t step, int np)
{
    log_run *run = &lg->runs[run_idx];
    if (step <= run->drop_step)
        step = run->drop_step + 1;
    run->drop_step = step;
    log_rec rec = {.kind = LOG_DROPS, .run = (uint16_t)run_idx, .step = step,
                   .value = (double)total_drops_seen(lg, np)};
    append_record(lg, run_idx, &rec, DROPS_TAG, NULL, wall_now());
}

/* The HTML report of the log directory (brisk/report.h), from the files as they stand once
 * every run's buffer is written out: it shows every record consumed so far. Read on this
 * thread alone (one reading thread), at its low priority. A failure is told once (the same
 * failure again is not); the run goes on. */
static void write_report(brisk_logger *lg, const uint8_t *body, size_t len)
{
    const int nr = atomic_load_explicit(&lg->n_runs, memory_order_acquire);
    for (int i = 0; i < nr; i++)
        run_write_out(lg, i);
    char path[PATH_MAX];
    if (len)
        snprintf(path, sizeof path, "%.*s", (int)len, (const char *)body);
    else
        snprintf(path, sizeof path, "%s/report.html", lg->logdir);
    const brisk_report_options opt = {.threads = 1, .message = report_quiet};
    if (brisk_report_write(lg->logdir, path, &opt) < 0) {
        if (strcmp(lg->report_error, brisk_error_detail())) {
            snprintf(lg->report_error, sizeof lg->report_error, "%s", brisk_error_detail());
            log_message(lg, "the live report was not refreshed: %s", lg->report_error);
        }
    } else {
        lg->report_error[0] = '\0';
    }
}

/* Handles one popped record (in lg->scratch, n bytes). */
static void consume(brisk_logger *lg, brisk_log_producer *p, size_t n, double wall, int np)
{
    const uint8_t *s = lg->scratch;
    log_rec rec;
    BRISK_ASSERT(n >= sizeof rec);
    memcpy(&rec, s, sizeof rec);
    BRISK_ASSERT(sizeof rec + LOG_PAD8(rec.tag_len) + rec.body_len <= n);
    char tag[BRISK_LOG_MAX_TAG + 1];
    BRISK_ASSERT(rec.tag_len <= BRISK_LOG_MAX_TAG);
    memcpy(tag, s + sizeof rec, rec.tag_len);
    tag[rec.tag_len] = '\0';
    const uint8_t *body = s + sizeof rec + LOG_PAD8(rec.tag_len);
    const int n_runs = atomic_load_explicit(&lg->n_runs, memory_order_acquire);
    BRISK_ASSERT(rec.run < n_runs);
    atomic_fetch_add_explicit(&lg->st_records, 1, memory_order_relaxed);
    if (rec.step > lg->last_step)
        lg->last_step = rec.step;
    if (rec.kind == LOG_DROPS) {
        p->drops_seen = rec.b;
        write_drops(lg, rec.run, rec.step, np);
        return;
    }
    if (rec.kind == LOG_REPORT) {
        write_report(lg, body, rec.body_len);
        return;
    }
    append_record(lg, rec.run, &rec, tag, body, wall);
}

/* Pops from one ring until it is empty or its tail reaches `until` (UINT64_MAX: empty).
 * Returns the records handled. */
static size_t drain_ring(brisk_logger *lg, brisk_log_producer *p, uint64_t until, int np)
{
    size_t count = 0;
    double wall = 0;
    while (brisk_ring_tail(p->ring) < until) {
        int got;
        long n = brisk_ring_pop(p->ring, lg->scratch, lg->ring_bytes, &got);
        BRISK_ASSERT(n >= 0);
        if (!got)
            break;
        if (count == 0)
            wall = wall_now(); /* one clock read per burst; records reach us within ms */
        consume(lg, p, (size_t)n, wall, np);
        count++;
    }
    return count;
}

static size_t drain_all(brisk_logger *lg)
{
    const int np = atomic_load_explicit(&lg->n_producers, memory_order_acquire);
    size_t count = 0;
    for (int i = 0; i < np; i++)
        count += drain_ring(lg, &lg->producers[i], UINT64_MAX, np);
    return count;
}

/* Everything pushed before this call is consumed when it returns. */
static void drain_to_now(brisk_logger *lg)
{
    const int np = atomic_load_explicit(&lg->n_producers, memory_order_acquire);
    for (int i = 0; i < np; i++)
        lg->targets[i] = brisk_ring_head(lg->producers[i].ring);
    for (int i = 0; i < np; i++)
        drain_ring(lg, &lg->producers[i], lg->targets[i], np);
}

static void sync_all(brisk_logger *lg, int data_only)
{
    const int nr = atomic_load_explicit(&lg->n_runs, memory_order_acquire);
    for (int i = 0; i < nr; i++)
        run_sync(lg, i, data_only);
}

/* Final drain: in-band drop counts that never made it, fsync, close. */
static void finish_files(brisk_logger *lg)
{
    const int np = atomic_load_explicit(&lg->n_producers, memory_order_acquire);
    const int nr = atomic_load_explicit(&lg->n_runs, memory_order_acquire);
    int missing = 0;
    for (int i = 0; i < np; i++) {
        const uint64_t d = brisk_ring_dropped(lg->producers[i].ring);
        if (d > lg->producers[i].drops_seen) {
            lg->producers[i].drops_seen = d;
            missing = 1;
        }
    }
    if (missing && nr > 0)
        write_drops(lg, 0, lg->last_step, np);
    sync_all(lg, 0);
    for (int i = 0; i < nr; i++) {
        if (lg->runs[i].fd >= 0 && close(lg->runs[i].fd) != 0)
            run_fail(lg, i, errno, "cannot close");
        lg->runs[i].fd = -1;
    }
    atomic_store_explicit(&lg->files_closed, 1, memory_order_release);
}

/* The logging thread's CPU time so far. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *logger_main(void *arg)
{
    brisk_logger *lg = arg;
    double last_flush = brisk_now_seconds();
    int idle = 0;
#if defined(__linux__)
    /* Nice 19 for this thread only (Linux applies nice per thread): the compute threads keep
     * their cores (bucketing and PNG encoding run in the time they leave, and otherwise get
     * about 1.5% of a contended core), yet the thread never starves the way a SCHED_IDLE one
     * would behind another busy process, so flush() and close() always finish. Measured with
     * bench/logging_overhead.py: 3% of training throughput at normal priority, none here. */
    if (!lg->normal_priority)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
#endif
    for (;;) {
        if (atomic_load_explicit(&lg->sig_close, memory_order_acquire)) {
            drain_to_now(lg);
            finish_files(lg);
            lg->cpu_seconds = thread_cpu_seconds();
            return NULL;
        }
        const size_t got = drain_all(lg);

        pthread_mutex_lock(&lg->mu);
        const uint64_t req = lg->flush_req;
        const int stop = lg->stop;
        pthread_mutex_unlock(&lg->mu);

        if (stop) {
            /* Producers have stopped: empty every ring, then close. */
            while (drain_all(lg) > 0)
                ;
            finish_files(lg);
            const int err = run_error(lg);
            pthread_mutex_lock(&lg->mu);
            lg->flush_done = lg->flush_req;
            lg->flush_err = err;
            snprintf(lg->flush_detail, sizeof lg->flush_detail, "%s", err ? brisk_error_detail() : "");
            pthread_cond_broadcast(&lg->done);
            pthread_mutex_unlock(&lg->mu);
            lg->cpu_seconds = thread_cpu_seconds();
            return NULL;
        }
        if (req != lg->flush_done) {
            drain_to_now(lg);
            sync_all(lg, 1);
            const int err = run_error(lg);
            pthread_mutex_lock(&lg->mu);
            lg->flush_done = req;
            lg->flush_err = err;
            snprintf(lg->flush_detail, sizeof lg->flush_detail, "%s", err ? brisk_error_detail() : "");
            pthread_cond_broadcast(&lg->done);
            pthread_mutex_unlock(&lg->mu);
            last_flush = brisk_now_seconds();
            continue;
        }
        const double now = brisk_now_seconds();
        if (now - last_flush >= lg->flush_secs) {
            const int nr = atomic_load_explicit(&lg->n_runs, memory_order_acquire);
            for (int i = 0; i < nr; i++)
                run_write_out(lg, i);
            last_flush = now;
        }
        if (got) {
            idle = 0;
            continue;
        }
        /* Nothing to do: sleep 1 ms, up to 5 ms when idle for long. A flush or close wakes us
         * at once; pushes do not signal (that would cost them a syscall). */
        idle = idle < 5 ? idle + 1 : 5;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += idle * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&lg->mu);
        if (lg->flush_req == lg->flush_done && !lg->stop)
            pthread_cond_timedwait(&lg->wake, &lg->mu, &until);
        pthread_mutex_unlock(&lg->mu);
    }
}

int brisk_logger_create(const brisk_logger_config *cfg, brisk_logger **out)
{
    *out = NULL;
    if (!cfg || !cfg->logdir || !cfg->logdir[0])
        return brisk_error_set(BRISK_EINVAL, "logger: no log directory given");
    const size_t ring = cfg->ring_bytes ? cfg->ring_bytes : BRISK_LOG_DEFAULT_RING_BYTES;
    if (ring < 4096 || ring > BRISK_RING_MAX_CAPACITY || (ring & (ring - 1)))
        return brisk_error_set(BRISK_EINVAL,
                               "logger: ring size %zu must be a power of two in [4096, %zu]",
                               ring, BRISK_RING_MAX_CAPACITY);
    const double flush = cfg->flush_secs > 0 ? cfg->flush_secs : BRISK_LOG_DEFAULT_FLUSH_SECS;
    if (!(flush <= 3600))
        return brisk_error_set(BRISK_EINVAL, "logger: flush interval %g s is not in (0, 3600]",
                               flush);
    const int maxp = cfg->max_producers > 0 ? cfg->max_producers : BRISK_LOG_DEFAULT_MAX_PRODUCERS;
    if (maxp > 4096)
        return brisk_error_set(BRISK_EINVAL, "logger: %d producers is more than 4096", maxp);
    int err = brisk_make_dirs(cfg->logdir);
    if (err)
        return err;

    brisk_logger *lg = calloc(1, sizeof *lg);
    if (!lg)
        return brisk_error_set(BRISK_ENOMEM, "logger: out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&lg->mu, NULL);
    pthread_cond_init(&lg->wake, &ca);
    pthread_cond_init(&lg->done, NULL);
    pthread_condattr_destroy(&ca);
    lg->ring_bytes = ring;
    lg->flush_secs = flush;
    lg->max_producers = maxp;
    lg->normal_priority = cfg->normal_priority;
    lg->message = cfg->message;
    lg->message_user = cfg->message_user;
    lg->first_error_run = -1;
    lg->last_step = INT64_MIN;
    size_t n_edges;
    log_hist_edges(&n_edges);
    lg->logdir = strdup(cfg->logdir);
    lg->producers = calloc((size_t)maxp, sizeof *lg->producers);
    lg->targets = calloc((size_t)maxp, sizeof *lg->targets);
    lg->hist_counts = malloc(4 * n_edges * sizeof *lg->hist_counts); /* see encode_histogram */
    lg->scratch = aligned_alloc(64, ring);
    if (!lg->logdir || !lg->producers || !lg->targets || !lg->hist_counts || !lg->scratch) {
        brisk_logger_destroy(lg);
        return brisk_error_set(BRISK_ENOMEM, "logger: out of memory");
    }

    /* The logging thread blocks every signal, so that handlers (Ctrl-C) run on other threads
     * and brisk_logger_close_from_signal can wait for this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const int rc = pthread_create(&lg->thread, NULL, logger_main, lg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        brisk_logger_destroy(lg);
        return brisk_error_set(BRISK_ENOMEM, "logger: cannot start the logging thread: %s",
                               strerror(rc));
    }
    lg->thread_started = 1;
    *out = lg;
    return BRISK_OK;
}

static int valid_run_name(const char *name)
{
    if (strlen(name) > 200 || name[0] == '/')
        return 0;
    /* No ".." component: a run stays inside the log directory. */
    for (const char *s = name; *s; s++)
        if (s[0] == '.' && s[1] == '.' && (s == name || s[-1] == '/') && (s[2] == '/' || !s[2]))
            return 0;
    return 1;
}

int brisk_logger_add_run(brisk_logger *lg, const char *name, int64_t first_step, int *run)
{
    *run = -1;
    if (!name || !valid_run_name(name))
        return brisk_error_set(BRISK_EINVAL, "run name '%s': must be a relative path without '..'",
                               name ? name : "(null)");
    pthread_mutex_lock(&lg->mu);
    int err = BRISK_OK;
    const int idx = atomic_load_explicit(&lg->n_runs, memory_order_relaxed);
    char dir[PATH_MAX], host[256] = "localhost";
    log_run *r = &lg->runs[idx < BRISK_LOG_MAX_RUNS ? idx : 0];
    if (lg->stop || lg->closed) {
        err = brisk_error_set(BRISK_ESTATE, "run '%s': the logger is closed", name);
        goto out;
    }
    if (idx >= BRISK_LOG_MAX_RUNS) {
        err = brisk_error_set(BRISK_EINVAL, "run '%s': at most %d runs per logger", name,
                              BRISK_LOG_MAX_RUNS);
        goto out;
    }
    if ((size_t)snprintf(dir, sizeof dir, "%s%s%s", lg->logdir, name[0] ? "/" : "", name) >=
        sizeof dir) {
        err = brisk_error_set(BRISK_EINVAL, "run '%s': path too long", name);
        goto out;
    }
    for (int i = 0; i < idx; i++)
        if (strcmp(lg->runs[i].name, name) == 0) {
            err = brisk_error_set(BRISK_EINVAL, "run '%s' is already open in this logger", name);
            goto out;
        }
    err = brisk_make_dirs(dir);
    if (err)
        goto out;
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == '/')
            *c = '_';
    /* A process-wide counter and O_EXCL: two writers, even in the same second and process,
     * never share a file, and an existing file is never appended to. */
    static _Atomic unsigned counter;
    const long secs = (long)time(NULL);
    r->fd = -1;
    for (int attempt = 0; attempt < 1000 && r->fd < 0; attempt++) {
        char path[PATH_MAX];
        const unsigned c = atomic_fetch_add(&counter, 1);
        if ((size_t)snprintf(path, sizeof path, "%s/events.out.tfevents.%010ld.%s.%ld.%u", dir,
                             secs, host, (long)getpid(), c) >= sizeof path) {
            err = brisk_error_set(BRISK_EINVAL, "run '%s': path too long", name);
            goto out;
        }
        r->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (r->fd < 0 && errno != EEXIST) {
            err = brisk_error_set(BRISK_EIO, "cannot create event file %s: %s", path,
                                  strerror(errno));
            goto out;
        }
        if (r->fd >= 0 && !(r->path = strdup(path))) {
            close(r->fd);
            r->fd = -1;
            err = brisk_error_set(BRISK_ENOMEM, "run '%s': out of memory", name);
            goto out;
        }
    }
    if (r->fd < 0) {
        err = brisk_error_set(BRISK_EIO, "cannot create a new event file in %s", dir);
        goto out;
    }
    r->drop_step = INT64_MIN;
    r->file_step = INT64_MIN;
    snprintf(r->name, sizeof r->name, "%s", name);
    err = log_encode_header(&r->buf, wall_now(), first_step);
    /* Written now, so that the file is valid (and its errors known) before any push. */
    for (size_t at = 0; !err && at < r->buf.len;) {
        ssize_t w = write(r->fd, r->buf.p + at, r->buf.len - at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = brisk_error_set(BRISK_EIO, "cannot write %s: %s", r->path,
                                  w < 0 ? strerror(errno) : "short write");
        else
            at += (size_t)w;
    }
    r->whole = (off_t)r->buf.len;
    r->buf.len = 0;
    if (err) {
        close(r->fd);
        r->fd = -1;
        unlink(r->path); /* not even its header: a file TensorBoard could only call damaged */
        free(r->path);
        r->path = NULL;
        free(r->buf.p);
        memset(&r->buf, 0, sizeof r->buf);
        goto out;
    }
    atomic_fetch_add_explicit(&lg->st_events, 2, memory_order_relaxed);
    atomic_store_explicit(&lg->n_runs, idx + 1, memory_order_release);
    *run = idx;
out:
    pthread_mutex_unlock(&lg->mu);
    return err;
}

const char *brisk_logger_run_path(const brisk_logger *lg, int run)
{
    if (!lg || run < 0 || run >= atomic_load_explicit(&lg->n_runs, memory_order_acquire))
        return NULL;
    return lg->runs[run].path;
}

int brisk_logger_producer(brisk_logger *lg, brisk_log_producer **out)
{
    *out = NULL;
    pthread_mutex_lock(&lg->mu);
    int err = BRISK_OK;
    const int idx = atomic_load_explicit(&lg->n_producers, memory_order_relaxed);
    if (lg->stop || lg->closed)
        err = brisk_error_set(BRISK_ESTATE, "logger: producer registered after close");
    else if (idx >= lg->max_producers)
        err = brisk_error_set(BRISK_EINVAL, "logger: more than %d producers", lg->max_producers);
    else
        err = brisk_ring_create(lg->ring_bytes, &lg->producers[idx].ring);
    if (!err) {
        lg->producers[idx].lg = lg;
        atomic_store_explicit(&lg->n_producers, idx + 1, memory_order_release);
        *out = &lg->producers[idx];
    }
    pthread_mutex_unlock(&lg->mu);
    return err;
}

/* Common to every push: checks, the in-band drop count first, then the record itself. */
static int push(brisk_log_producer *p, log_rec *rec, const char *tag, const void *body,
                size_t body_len)
{
    const size_t tag_len = tag ? strlen(tag) : 0;
    if (tag_len == 0 || tag_len > BRISK_LOG_MAX_TAG || body_len > UINT32_MAX)
        return brisk_error_set(BRISK_EINVAL, "log push: tag must have 1 to %d bytes",
                               BRISK_LOG_MAX_TAG);
    if (rec->run >= atomic_load_explicit(&p->lg->n_runs, memory_order_acquire))
        return brisk_error_set(BRISK_EINVAL, "log push '%s': no run %u", tag, rec->run);
    const uint64_t dropped = brisk_ring_dropped(p->ring);
    if (dropped != p->drops_reported) {
        log_rec d = {.kind = LOG_DROPS, .run = rec->run, .step = rec->step, .b = dropped};
        if (brisk_ring_push(p->ring, &d, sizeof d) == BRISK_OK)
            p->drops_reported = dropped;
    }
    static const uint8_t zeros[8];
    rec->tag_len = (uint32_t)tag_len;
    rec->body_len = (uint32_t)body_len;
    brisk_ring_iov iov[4] = {
        {rec, sizeof *rec}, {tag, tag_len}, {zeros, LOG_PAD8(tag_len) - tag_len}, {body, body_len}};
    /* Histograms and images leave a quarter of the ring free behind them, so that however far
     * the logging thread falls behind (starved by other processes, say), the scalars pushed
     * after a snapshot still fit: under pressure snapshots are dropped (and counted), not
     * scalars. */
    const int bulk = rec->kind == LOG_HISTOGRAM || rec->kind == LOG_IMAGE;
    return brisk_ring_pushv_reserve(p->ring, iov, 4,
                                    bulk ? brisk_ring_capacity(p->ring) / 4 : 0);
}

static int check_run(int run)
{
    return run >= 0 && run < BRISK_LOG_MAX_RUNS;
}

int brisk_log_scalar(brisk_log_producer *p, int run, const char *tag, int64_t step, double value)
{
    if (!check_run(run))
        return brisk_error_set(BRISK_EINVAL, "log push: bad run %d", run);
    log_rec rec = {.kind = LOG_SCALAR, .run = (uint16_t)run, .step = step, .value = value};
    return push(p, &rec, tag, NULL, 0);
}

int brisk_log_histogram(brisk_log_producer *p, int run, const char *tag, int64_t step,
                        const float *x, size_t n)
{
    if (!check_run(run) || (n && !x) || n > UINT32_MAX / sizeof(float))
        return brisk_error_set(BRISK_EINVAL, "log histogram '%s': bad run or values",
                               tag ? tag : "");
    log_rec rec = {.kind = LOG_HISTOGRAM, .run = (uint16_t)run, .step = step, .b = n};
    return push(p, &rec, tag, x, n * sizeof(float));
}

int brisk_log_text(brisk_log_producer *p, int run, const char *tag, int64_t step,
                   const char *text)
{
    if (!check_run(run) || !text)
        return brisk_error_set(BRISK_EINVAL, "log text '%s': bad run or text", tag ? tag : "");
    log_rec rec = {.kind = LOG_TEXT, .run = (uint16_t)run, .step = step};
    return push(p, &rec, tag, text, strlen(text));
}

int brisk_log_image(brisk_log_producer *p, int run, const char *tag, int64_t step,
                    const uint8_t *pixels, int h, int w, int channels)
{
    if (!check_run(run) || !pixels || h <= 0 || w <= 0 || h > 65535 || w > 65535 ||
        (channels != 1 && channels != 3 && channels != 4))
        return brisk_error_set(BRISK_EINVAL,
                               "log image '%s': %dx%d with %d channels (want 1..65535 pixels a "
                               "side and 1, 3 or 4 channels)",
                               tag ? tag : "", h, w, channels);
    log_rec rec = {.kind = LOG_IMAGE, .run = (uint16_t)run, .step = step, .a = (uint32_t)channels,
                   .b = (uint64_t)h << 32 | (uint32_t)w};
    return push(p, &rec, tag, pixels, (size_t)h * (size_t)w * (size_t)channels);
}

/* A small body built on the producer's stack: rare, setup-time records only. */
typedef struct small_body {
    uint8_t b[16384];
    size_t n;
    int overflow;
} small_body;

static void body_add(small_body *s, const void *p, size_t n)
{
    if (s->overflow || n > sizeof s->b - s->n) {
        s->overflow = 1;
        return;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void body_str_add(small_body *s, const char *str)
{
    body_add(s, str, strlen(str) + 1);
}

int brisk_log_hparams(brisk_log_producer *p, int run, const brisk_hparam *hparams, size_t n,
                      const brisk_metric *metrics, size_t n_metrics)
{
    if (!check_run(run) || (n && !hparams) || (n_metrics && !metrics))
        return brisk_error_set(BRISK_EINVAL, "log hparams: bad run or arguments");
    small_body s = {.n = 0};
    for (size_t i = 0; i < n; i++) {
        const brisk_hparam *h = &hparams[i];
        const uint8_t type = (uint8_t)h->type;
        if (!h->name || (h->type == BRISK_HPARAM_STRING && !h->string) ||
            (h->type != BRISK_HPARAM_NUMBER && h->type != BRISK_HPARAM_STRING &&
             h->type != BRISK_HPARAM_BOOL))
            return brisk_error_set(BRISK_EINVAL, "log hparams: hparam %zu is malformed", i);
        body_add(&s, &type, 1);
        body_str_add(&s, h->name);
        if (h->type == BRISK_HPARAM_NUMBER)
            body_add(&s, &h->number, 8);
        else if (h->type == BRISK_HPARAM_STRING)
            body_str_add(&s, h->string);
        else
            body_add(&s, &(uint8_t){h->boolean != 0}, 1);
    }
    for (size_t i = 0; i < n_metrics; i++) {
        if (!metrics[i].group || !metrics[i].tag)
            return brisk_error_set(BRISK_EINVAL, "log hparams: metric %zu is malformed", i);
        body_str_add(&s, metrics[i].group);
        body_str_add(&s, metrics[i].tag);
    }
    if (s.overflow)
        return brisk_error_set(BRISK_EINVAL, "log hparams: more than %zu bytes of names",
                               sizeof s.b);
    log_rec rec = {.kind = LOG_HPARAMS, .run = (uint16_t)run, .a = (uint32_t)n, .b = n_metrics};
    return push(p, &rec, "_hparams_", s.b, s.n);
}

int brisk_log_hparams_end(brisk_log_producer *p, int run, brisk_session_status status)
{
    if (!check_run(run) || status < BRISK_SESSION_SUCCESS || status > BRISK_SESSION_RUNNING)
        return brisk_error_set(BRISK_EINVAL, "log hparams end: bad run or status");
    log_rec rec = {.kind = LOG_HPARAMS_END, .run = (uint16_t)run, .a = (uint32_t)status};
    return push(p, &rec, "_hparams_", NULL, 0);
}

int brisk_log_custom_scalars(brisk_log_producer *p, int run, const char *category,
                             const brisk_chart *charts, size_t n)
{
    if (!check_run(run) || !category || (n && !charts))
        return brisk_error_set(BRISK_EINVAL, "log custom_scalars: bad run or arguments");
    small_body s = {.n = 0};
    for (size_t i = 0; i < n; i++) {
        if (!charts[i].title || (charts[i].n_tags && !charts[i].tags) ||
            charts[i].n_tags > UINT32_MAX)
            return brisk_error_set(BRISK_EINVAL, "log custom_scalars: chart %zu is malformed", i);
        body_str_add(&s, charts[i].title);
        const uint32_t k = (uint32_t)charts[i].n_tags;
        body_add(&s, &k, 4);
        for (size_t j = 0; j < k; j++) {
            if (!charts[i].tags[j])
                return brisk_error_set(BRISK_EINVAL, "log custom_scalars: chart %zu tag %zu is NULL",
                                       i, j);
            body_str_add(&s, charts[i].tags[j]);
        }
    }
    if (s.overflow)
        return brisk_error_set(BRISK_EINVAL, "log custom_scalars: more than %zu bytes of names",
                               sizeof s.b);
    log_rec rec = {.kind = LOG_LAYOUT, .run = (uint16_t)run, .a = (uint32_t)n};
    return push(p, &rec, category, s.b, s.n);
}

int brisk_log_report(brisk_log_producer *p, const char *path)
{
    if (!p)
        return brisk_error_set(BRISK_EINVAL, "log report: the producer is NULL");
    const size_t len = path ? strlen(path) : 0;
    if (len >= PATH_MAX)
        return brisk_error_set(BRISK_EINVAL, "log report: the path is too long (%zu bytes)", len);
    log_rec rec = {.kind = LOG_REPORT, .run = 0, .step = 0};
    return push(p, &rec, "report", path, len);
}

int brisk_logger_flush(brisk_logger *lg)
{
    pthread_mutex_lock(&lg->mu);
    if (lg->stop || lg->closed || atomic_load(&lg->files_closed)) {
        pthread_mutex_unlock(&lg->mu);
        return brisk_error_set(BRISK_ESTATE, "logger: flush after close");
    }
    const uint64_t my = ++lg->flush_req;
    pthread_cond_signal(&lg->wake);
    while (lg->flush_done < my && !atomic_load(&lg->files_closed))
        pthread_cond_wait(&lg->done, &lg->mu);
    const int err = atomic_load(&lg->files_closed) ? BRISK_ESTATE : lg->flush_err;
    if (err)
        brisk_error_set(err, "%s", err == BRISK_ESTATE ? "logger: closed during flush" : lg->flush_detail);
    pthread_mutex_unlock(&lg->mu);
    return err;
}

int brisk_logger_close(brisk_logger *lg)
{
    pthread_mutex_lock(&lg->mu);
    if (lg->closed) {
        pthread_mutex_unlock(&lg->mu);
        return BRISK_OK;
    }
    lg->stop = 1;
    pthread_cond_signal(&lg->wake);
    pthread_mutex_unlock(&lg->mu);
    if (lg->thread_started)
        pthread_join(lg->thread, NULL);
    pthread_mutex_lock(&lg->mu);
    lg->thread_started = 0;
    lg->closed = 1;
    pthread_mutex_unlock(&lg->mu);
    brisk_logger_stats st;
    brisk_logger_get_stats(lg, &st);
    if (st.dropped > 0)
        log_message(lg, "logging dropped %llu records because a ring was full (%zu bytes per "
                        "producer); the count is the scalar '%s'",
                    (unsigned long long)st.dropped, lg->ring_bytes, DROPS_TAG);
    return run_error(lg);
}

int brisk_logger_close_from_signal(brisk_logger *lg, int timeout_ms)
{
    atomic_store_explicit(&lg->sig_close, 1, memory_order_release);
    const struct timespec ms = {0, 1000000L};
    for (int waited = 0; waited <= timeout_ms; waited++) {
        if (atomic_load_explicit(&lg->files_closed, memory_order_acquire))
            return BRISK_OK;
        nanosleep(&ms, NULL);
    }
    return BRISK_ESTATE;
}

void brisk_logger_get_stats(const brisk_logger *lg, brisk_logger_stats *out)
{
    memset(out, 0, sizeof *out);
    out->records = atomic_load_explicit(&lg->st_records, memory_order_relaxed);
    out->events = atomic_load_explicit(&lg->st_events, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&lg->st_bytes, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&lg->st_write_errors, memory_order_relaxed);
    out->cpu_seconds = lg->thread_started ? 0.0 : lg->cpu_seconds;
    const int np = atomic_load_explicit(&lg->n_producers, memory_order_acquire);
    for (int i = 0; i < np; i++)
        out->dropped += brisk_ring_dropped(lg->producers[i].ring);
}

void brisk_logger_destroy(brisk_logger *lg)
{
    if (!lg)
        return;
    if (lg->thread_started)
        brisk_logger_close(lg);
    const int np = atomic_load(&lg->n_producers), nr = atomic_load(&lg->n_runs);
    for (int i = 0; i < np; i++)
        brisk_ring_destroy(lg->producers[i].ring);
    for (int i = 0; i < nr; i++) {
        if (lg->runs[i].fd >= 0)
            close(lg->runs[i].fd);
        free(lg->runs[i].path);
        free(lg->runs[i].buf.p);
        free(lg->runs[i].marks);
    }
    pthread_mutex_destroy(&lg->mu);
    pthread_cond_destroy(&lg->wake);
    pthread_cond_destroy(&lg->done);
    free(lg->producers);
    free(lg->targets);
    free(lg->hist_counts);
    free(lg->scratch);
    free(lg->logdir);
    free(lg);
}
