/* bench_report: how long brisk-events report takes on a large log directory, and how big the
 * report is (docs/benchmarks.md, "Reports of large logs").
 *
 *   bench_report DIR [--runs N] [--steps N] [--tags N] [--repeats N] [--threads N]
 *                    [--irregular]
 *
 * Writes N runs (DIR/run000/train, ...) of --steps steps of --tags scalar tags each through
 * Brisk's logger, unless DIR already holds a complete set (a file DIR/complete names its
 * shape: delete DIR to write it again), then writes DIR's report --repeats times and prints
 * each time, the median, and the report's size. Defaults: 100 runs x 50,000 steps x 20 tags
 * (100 million points; about 5 GB of event files). Steps are 1, 2, 3, ...; with --irregular
 * they are 2s + 1 for every third s and 2s for the others (no one stride: the reader then
 * stores every step).
 *
 * This VM is shared: each round also measures the CPU time the rest of the machine used
 * meanwhile (/proc/stat's busy time, the hypervisor's steal included, less this process's
 * own), and the median is taken over the clean rounds, those where others used under 0.1 of
 * a core; all rounds are printed.
 */
#define _GNU_SOURCE
#include "brisk/clock.h"
#include "brisk/error.h"
#include "brisk/logger.h"
#include "brisk/logread.h"
#include "brisk/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static long arg_long(int argc, char **argv, const char *flag, long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], flag))
            return strtol(argv[i + 1], NULL, 10);
    return def;
}

/* Seconds of CPU the whole machine spent busy (all but idle and iowait), and this process's. */
static double machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    if (!f)
        return 0;
    const int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                           &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (got < 8)
        return 0;
    unsigned long long busy = 0;
    for (int i = 0; i < 8; i++)
        if (i != 3 && i != 4)
            busy += v[i];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run's curves: a decaying loss with noise, per tag a different scale. */
static int write_run(const char *dir, int run, long steps, int tags, int irregular)
{
    char logdir[4096];
    snprintf(logdir, sizeof logdir, "%s/run%03d", dir, run);
    brisk_logger *lg;
    int err = brisk_logger_create(&(brisk_logger_config){.logdir = logdir,
                                                         .ring_bytes = (size_t)64 << 20,
                                                         .normal_priority = 1},
                                  &lg);
    if (err < 0)
        return err;
    int train;
    brisk_log_producer *p;
    if ((err = brisk_logger_add_run(lg, "train", 1, &train)) < 0 ||
        (err = brisk_logger_producer(lg, &p)) < 0) {
        brisk_logger_close(lg);
        brisk_logger_destroy(lg);
        return err;
    }
    char names[64][32];
    for (int t = 0; t < tags && t < 64; t++)
        snprintf(names[t], sizeof names[t], t == 0 ? "batch_loss" : "metric_%02d", t);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(run + 1);
    for (long s = 1; s <= steps; s++) {
        for (int t = 0; t < tags && t < 64; t++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const double noise = (double)(x >> 11) / 9007199254740992.0 - 0.5;
            const double v = (1.0 + t) * (0.2 + 2.0 / sqrt((double)s)) + 0.05 * noise;
            const long step = irregular ? 2 * s + (s % 3 == 0) : s;
            while (brisk_log_scalar(p, train, names[t], step, v) == BRISK_EFULL)
                brisk_logger_flush(lg); /* a bench: wait rather than drop */
        }
    }
    err = brisk_logger_close(lg);
    brisk_logger_destroy(lg);
    return err;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: bench_report DIR [--runs N] [--steps N] [--tags N] "
                        "[--repeats N] [--threads N] [--irregular]\n");
        return 2;
    }
    const char *dir = argv[1];
    for (int i = 2; i < argc; i++) { /* every flag known, every value a number */
        static const char *const valued[] = {"--runs", "--steps", "--tags", "--repeats",
                                             "--threads"};
        int known = !strcmp(argv[i], "--irregular");
        for (size_t k = 0; k < sizeof valued / sizeof *valued && !known; k++)
            if (!strcmp(argv[i], valued[k])) {
                char *end;
                if (i + 1 >= argc || (strtol(argv[i + 1], &end, 10), *end || end == argv[i + 1])) {
                    fprintf(stderr, "bench_report: %s needs a whole number\n", argv[i]);
                    return 2;
                }
                known = 1;
                i++;
            }
        if (!known) {
            fprintf(stderr, "bench_report: unknown argument %s (see the usage: no arguments)\n",
                    argv[i]);
            return 2;
        }
    }
    const int runs = (int)arg_long(argc, argv, "--runs", 100);
    const long steps = arg_long(argc, argv, "--steps", 50000);
    const int tags = (int)arg_long(argc, argv, "--tags", 20);
    const int repeats = (int)arg_long(argc, argv, "--repeats", 5);
    const int threads = (int)arg_long(argc, argv, "--threads", 0);
    int irregular = 0;
    for (int i = 2; i < argc; i++)
        irregular |= !strcmp(argv[i], "--irregular");
    if (runs < 1 || steps < 1 || tags < 1 || tags > 64 || repeats < 1 || repeats > 100) {
        fprintf(stderr, "bench_report: --runs >= 1, --steps >= 1, --tags 1..64, --repeats "
                        "1..100\n");
        return 2;
    }
    char marker[4096], want[128], have[128] = "";
    snprintf(marker, sizeof marker, "%s/complete", dir);
    snprintf(want, sizeof want, "%d runs x %ld steps x %d tags%s\n", runs, steps, tags,
             irregular ? ", irregular steps" : "");
    FILE *f = fopen(marker, "r");
    if (f) {
        if (!fgets(have, sizeof have, f))
            have[0] = '\0';
        fclose(f);
    }
    if (strcmp(have, want)) {
        if (have[0]) {
            fprintf(stderr, "bench_report: %s holds %.*s; delete it first\n", dir,
                    (int)strcspn(have, "\n"), have);
            return 2;
        }
        const double t0 = brisk_now_seconds();
        for (int r = 0; r < runs; r++)
            if (write_run(dir, r, steps, tags, irregular) < 0) {
                fprintf(stderr, "bench_report: %s\n", brisk_error_detail());
                return 1;
            }
        if (!(f = fopen(marker, "w")) || fputs(want, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench_report: cannot write %s\n", marker);
            return 1;
        }
        printf("wrote %s: %s", dir, want);
        printf("  in %.1f s\n", brisk_now_seconds() - t0);
    }
    char out[4096];
    snprintf(out, sizeof out, "%s/report.html", dir);
    double t[100], tr[100];
    for (int i = 0; i < repeats; i++) { /* reading alone: the part that grows with the logs */
        const double t0 = brisk_now_seconds();
        lr_log log;
        if (lr_log_read(dir, threads, &log) < 0) {
            fprintf(stderr, "bench_report: %s\n", brisk_error_detail());
            return 1;
        }
        tr[i] = brisk_now_seconds() - t0;
        lr_log_free(&log);
    }
    qsort(tr, (size_t)repeats, sizeof *tr, cmp_double);
    double clean[100];
    int n_clean = 0;
    for (int i = 0; i < repeats; i++) {
        const double b0 = machine_busy(), c0 = own_cpu(), t0 = brisk_now_seconds();
        if (brisk_report_write(dir, out, &(brisk_report_options){.threads = threads}) < 0) {
            fprintf(stderr, "bench_report: %s\n", brisk_error_detail());
            return 1;
        }
        t[i] = brisk_now_seconds() - t0;
        double others = (machine_busy() - b0 - (own_cpu() - c0)) / t[i];
        if (others < 0)
            others = 0;
        if (others < 0.1)
            clean[n_clean++] = t[i];
        printf("report %d: %.3f s (others used %.2f cores%s)\n", i + 1, t[i], others,
               others < 0.1 ? "" : ": screened out");
    }
    qsort(t, (size_t)repeats, sizeof *t, cmp_double);
    if (n_clean)
        qsort(clean, (size_t)n_clean, sizeof *clean, cmp_double);
    struct stat st;
    stat(out, &st);
    printf("%d runs x %ld steps x %d tags (%.0f million points): report in %.3f s (median of "
           "%d; threads %d; reading the event files alone %.3f s), %.2f MB\n",
           runs, steps, tags, runs * (double)steps * tags / 1e6, t[repeats / 2], repeats,
           threads, tr[repeats / 2], (double)st.st_size / 1e6);
    if (n_clean)
        printf("clean rounds (others under 0.1 cores): %d of %d, median %.3f s, range %.3f to "
               "%.3f s\n", n_clean, repeats, clean[n_clean / 2], clean[0], clean[n_clean - 1]);
    else
        printf("clean rounds: none of %d (other processes used the CPU in every round)\n",
               repeats);
    return 0;
}
