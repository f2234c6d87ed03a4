/* bench_log: what a push costs a compute thread, and how many records reach the logging thread.
 *
 * Three parts, all in one run so that the ratios are fair on a noisy machine:
 *  1. Transport: P producer threads each push N 56-byte records (a scalar with a 10-byte tag
 *     is 56 bytes in a ring, 64 with the ring's header) to one consumer thread, through
 *     Brisk's SPSC rings (one per producer) and, side by side, through one mutex +
 *     condition-variable queue of the same capacity. Both drop when full (a compute thread
 *     must never wait). Reports push latency p50/p99/p99.9 in ns, records delivered per
 *     second, and drops.
 *  2. Stalled consumer: the same push with a consumer that sleeps instead of popping.
 *  3. End to end: brisk_log_scalar into a real brisk_logger writing event files to a
 *     temporary directory (protobuf, CRC-32C, write()).
 *  4. A large histogram snapshot: what the push costs the producer and what bucketing,
 *     encoding and writing cost the logging thread per value.
 * Latency is measured per push with the time-stamp counter, calibrated against
 * CLOCK_MONOTONIC; the timer's own cost is printed and included in the figures. Rates and
 * drops come from a second pass without the timer.
 */
#include "brisk/clock.h"
#include "brisk/error.h"
#include "brisk/logger.h"
#include "brisk/ring.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

enum { REC_BYTES = 56, QUEUE_BYTES = 1 << 20, LAT_BUCKETS = 100000 };

static inline uint64_t ticks(void)
{
#if defined(__x86_64__)
    return __rdtsc();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static double ns_per_tick = 1.0;

static void calibrate(void)
{
    const double t0 = brisk_now_seconds();
    const uint64_t c0 = ticks();
    while (brisk_now_seconds() - t0 < 0.2)
        ;
    ns_per_tick = (brisk_now_seconds() - t0) * 1e9 / (double)(ticks() - c0);
}

/* Latency histogram in whole ns; the last bucket holds everything >= 100 us. */
typedef struct lat_hist {
    _Alignas(64) uint64_t *count; /* one cache line per producer: no false sharing */
    uint64_t n;
} lat_hist;

static void lat_add(lat_hist *h, uint64_t dt)
{
    uint64_t ns = (uint64_t)((double)dt * ns_per_tick);
    h->count[ns < LAT_BUCKETS ? ns : LAT_BUCKETS - 1]++;
    h->n++;
}

static double lat_pct(const lat_hist *h, double q)
{
    const uint64_t want = (uint64_t)(q * (double)h->n);
    uint64_t seen = 0;
    for (int i = 0; i < LAT_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > want)
            return i;
    }
    return LAT_BUCKETS;
}

/* The comparison queue: a byte ring under one mutex, with a condition variable the consumer
 * waits on when empty. Fixed-size records. */
typedef struct mutex_queue {
    pthread_mutex_t mu;
    pthread_cond_t nonempty;
    uint8_t *buf;
    size_t head, tail, cap; /* in records */
} mutex_queue;

static int mq_push(mutex_queue *q, const void *rec)
{
    pthread_mutex_lock(&q->mu);
    if (q->head - q->tail == q->cap) {
        pthread_mutex_unlock(&q->mu);
        return BRISK_EFULL;
    }
    memcpy(q->buf + (q->head % q->cap) * REC_BYTES, rec, REC_BYTES);
    q->head++;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
    return BRISK_OK;
}

typedef enum impl { IMPL_RING, IMPL_MUTEX } impl;

typedef struct run_ctx {
    impl kind;
    int producers;
    uint64_t n;
    int stalled;
    int timed;
    brisk_ring *rings[64];
    mutex_queue q;
    _Atomic int done;
    _Atomic int go;
    lat_hist lat[64];
    uint64_t dropped[64];
    uint64_t consumed;
    double t_start, t_end;
} run_ctx;

typedef struct prod_arg {
    run_ctx *c;
    int id;
} prod_arg;

static void *producer(void *arg)
{
    prod_arg *pa = arg;
    run_ctx *c = pa->c;
    uint8_t rec[REC_BYTES];
    memset(rec, pa->id, sizeof rec);
    uint64_t dropped = 0;
    while (!atomic_load(&c->go))
        ;
    for (uint64_t i = 0; i < c->n; i++) {
        memcpy(rec, &i, sizeof i);
        if (c->timed) {
            const uint64_t t0 = ticks();
            const int rc = c->kind == IMPL_RING
                               ? brisk_ring_push(c->rings[pa->id], rec, REC_BYTES)
                               : mq_push(&c->q, rec);
            lat_add(&c->lat[pa->id], ticks() - t0);
            dropped += rc != BRISK_OK;
        } else {
            dropped += (c->kind == IMPL_RING ? brisk_ring_push(c->rings[pa->id], rec, REC_BYTES)
                                             : mq_push(&c->q, rec)) != BRISK_OK;
        }
    }
    c->dropped[pa->id] = dropped;
    atomic_fetch_add(&c->done, 1);
    return NULL;
}

static void consume_all(run_ctx *c)
{
    uint8_t rec[REC_BYTES];
    uint64_t got_total = 0, sink = 0;
    if (c->stalled) /* a logging thread stuck in a slow write */
        while (atomic_load(&c->done) < c->producers) {
            const struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
    for (;;) {
        const int all_done = atomic_load(&c->done) == c->producers;
        uint64_t got = 0;
        if (c->kind == IMPL_RING) {
            for (int p = 0; p < c->producers; p++) {
                int ok;
                while (brisk_ring_pop(c->rings[p], rec, sizeof rec, &ok) >= 0 && ok) {
                    sink += rec[0];
                    got++;
                }
            }
        } else {
            pthread_mutex_lock(&c->q.mu);
            while (c->q.head == c->q.tail && atomic_load(&c->done) < c->producers) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&c->q.nonempty, &c->q.mu, &until);
            }
            while (c->q.head != c->q.tail) {
                memcpy(rec, c->q.buf + (c->q.tail % c->q.cap) * REC_BYTES, REC_BYTES);
                c->q.tail++;
                sink += rec[0];
                got++;
            }
            pthread_mutex_unlock(&c->q.mu);
        }
        got_total += got;
        if (all_done && got == 0)
            break;
    }
    c->consumed = got_total + (sink & 0); /* sink keeps the reads alive */
}

typedef struct result {
    double p50, p99, p999, delivered_per_s, pushes_per_s;
    uint64_t dropped, delivered;
} result;

static result run_transport(impl kind, int producers, uint64_t n, int stalled, int timed)
{
    run_ctx *c = calloc(1, sizeof *c);
    c->timed = timed;
    c->kind = kind;
    c->producers = producers;
    c->n = n;
    c->stalled = stalled;
    for (int p = 0; p < producers; p++) {
        c->lat[p].count = calloc(LAT_BUCKETS, sizeof(uint64_t));
        if (kind == IMPL_RING && brisk_ring_create(QUEUE_BYTES, &c->rings[p])) {
            fprintf(stderr, "bench_log: %s\n", brisk_error_detail());
            exit(1);
        }
    }
    pthread_mutex_init(&c->q.mu, NULL);
    pthread_cond_init(&c->q.nonempty, NULL);
    c->q.cap = QUEUE_BYTES / BRISK_RING_RECORD_BYTES(REC_BYTES); /* same room as one ring */
    c->q.buf = malloc(c->q.cap * REC_BYTES);
    pthread_t th[64];
    prod_arg args[64];
    for (int p = 0; p < producers; p++) {
        args[p] = (prod_arg){c, p};
        pthread_create(&th[p], NULL, producer, &args[p]);
    }
    const double t0 = brisk_now_seconds();
    atomic_store(&c->go, 1);
    consume_all(c);
    const double t1 = brisk_now_seconds();
    for (int p = 0; p < producers; p++)
        pthread_join(th[p], NULL);
    lat_hist all = {calloc(LAT_BUCKETS, sizeof(uint64_t)), 0};
    result r = {0};
    for (int p = 0; p < producers; p++) {
        for (int i = 0; i < LAT_BUCKETS; i++)
            all.count[i] += c->lat[p].count[i];
        all.n += c->lat[p].n;
        r.dropped += c->dropped[p];
        free(c->lat[p].count);
        brisk_ring_destroy(c->rings[p]);
    }
    r.p50 = lat_pct(&all, 0.5);
    r.p99 = lat_pct(&all, 0.99);
    r.p999 = lat_pct(&all, 0.999);
    r.delivered = c->consumed;
    r.delivered_per_s = (double)c->consumed / (t1 - t0);
    r.pushes_per_s = (double)(n * (uint64_t)producers) / (t1 - t0);
    if (c->consumed + r.dropped != n * (uint64_t)producers) {
        fprintf(stderr, "bench_log: lost records: %llu delivered + %llu dropped != %llu\n",
                (unsigned long long)c->consumed, (unsigned long long)r.dropped,
                (unsigned long long)(n * (uint64_t)producers));
        exit(1);
    }
    free(all.count);
    free(c->q.buf);
    pthread_mutex_destroy(&c->q.mu);
    pthread_cond_destroy(&c->q.nonempty);
    free(c);
    return r;
}

static int cmp_result(const void *a, const void *b)
{
    const double x = ((const result *)a)->delivered_per_s, y = ((const result *)b)->delivered_per_s;
    return (x > y) - (x < y);
}

/* Latency from a pass that times every push; rates and drops from the median (by delivered
 * rate) of three passes that do not. */
static result measure(impl kind, int producers, uint64_t n, int stalled)
{
    result timed = run_transport(kind, producers, n, stalled, 1);
    result r[3];
    for (int i = 0; i < 3; i++)
        r[i] = run_transport(kind, producers, n, stalled, 0);
    qsort(r, 3, sizeof r[0], cmp_result);
    r[1].p50 = timed.p50;
    r[1].p99 = timed.p99;
    r[1].p999 = timed.p999;
    return r[1];
}

static void quiet(void *user, const char *line)
{
    (void)user;
    (void)line; /* the drops are in the table */
}

/* A logger writing to a fresh temporary directory; bench_logger_close removes it. */
typedef struct bench_logger {
    char dir[64];
    brisk_logger *lg;
    int run;
    brisk_log_producer *p;
} bench_logger;

static void bench_logger_open(bench_logger *b, size_t ring_bytes)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/brisk-bench-log-XXXXXX");
    if (!mkdtemp(b->dir)) {
        perror("bench_log: mkdtemp");
        exit(1);
    }
    if (brisk_logger_create(&(brisk_logger_config){.logdir = b->dir, .ring_bytes = ring_bytes,
                                                    .message = quiet},
                            &b->lg) ||
        brisk_logger_add_run(b->lg, "train", 0, &b->run) || brisk_logger_producer(b->lg, &b->p)) {
        fprintf(stderr, "bench_log: %s\n", brisk_error_detail());
        exit(1);
    }
}

static void bench_logger_close(bench_logger *b)
{
    if (brisk_logger_close(b->lg)) {
        fprintf(stderr, "bench_log: %s\n", brisk_error_detail());
        exit(1);
    }
}

static void bench_logger_free(bench_logger *b)
{
    brisk_logger_destroy(b->lg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_log: could not remove %s\n", b->dir);
}

static result run_logger(uint64_t n)
{
    bench_logger b;
    bench_logger_open(&b, 0);
    lat_hist h = {calloc(LAT_BUCKETS, sizeof(uint64_t)), 0};
    result r = {0};
    const double t0 = brisk_now_seconds();
    for (uint64_t i = 0; i < n; i++) {
        const uint64_t c0 = ticks();
        const int rc = brisk_log_scalar(b.p, b.run, "batch_loss", (int64_t)i, 1.0 / (double)(i + 1));
        lat_add(&h, ticks() - c0);
        r.dropped += rc != BRISK_OK;
    }
    const double t1 = brisk_now_seconds();
    bench_logger_close(&b);
    const double t2 = brisk_now_seconds();
    brisk_logger_stats st;
    brisk_logger_get_stats(b.lg, &st);
    r.p50 = lat_pct(&h, 0.5);
    r.p99 = lat_pct(&h, 0.99);
    r.p999 = lat_pct(&h, 0.999);
    r.pushes_per_s = (double)n / (t1 - t0);
    r.delivered = st.events;
    r.delivered_per_s = (double)(n - r.dropped) / (t2 - t0);
    bench_logger_free(&b);
    free(h.count);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A histogram snapshot of n values (weights of a large layer) pushed, then flush(): the time
 * the producer spends pushing, and per value what the logging thread spends bucketing,
 * encoding and writing it. Medians of 5. */
static void run_histogram(size_t n)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench_log: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sin((double)i * 0.37) * 0.05);
    size_t ring = (size_t)4 << 20;
    while (ring < n * sizeof *x + ((size_t)1 << 20))
        ring *= 2;
    bench_logger b;
    bench_logger_open(&b, ring);
    double push[5], total[5];
    for (int k = 0; k < 5; k++) {
        const double t0 = brisk_now_seconds();
        if (brisk_log_histogram(b.p, b.run, "weights", k, x, n) != BRISK_OK) {
            fprintf(stderr, "bench_log: histogram push failed\n");
            exit(1);
        }
        const double t1 = brisk_now_seconds();
        if (brisk_logger_flush(b.lg) != BRISK_OK) {
            fprintf(stderr, "bench_log: %s\n", brisk_error_detail());
            exit(1);
        }
        push[k] = t1 - t0;
        total[k] = brisk_now_seconds() - t0;
    }
    bench_logger_close(&b);
    bench_logger_free(&b);
    qsort(push, 5, sizeof push[0], cmp_double);
    qsort(total, 5, sizeof total[0], cmp_double);
    printf("\nHistogram of %zu values (median of 5): push %.2f ms on the producer; pushed to "
           "written and fdatasync'ed %.1f ms, %.2f ns per value on the logging thread.\n",
           n, push[2] * 1e3, total[2] * 1e3, (total[2] - push[2]) * 1e9 / (double)n);
    free(x);
}

static void print_row(const char *what, int producers, const result *r)
{
    printf("| %-28s | %2d | %6.0f | %6.0f | %7.0f | %8.2f | %8.2f | %10llu |\n", what, producers,
           r->p50, r->p99, r->p999, r->pushes_per_s / 1e6, r->delivered_per_s / 1e6,
           (unsigned long long)r->dropped);
}

int main(int argc, char **argv)
{
    uint64_t n = 10000000;
    int max_producers = 4;
    long long hist_values = 3704000; /* the weights and gradients of 784-1024-1024-10, twice */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--max-producers") && i + 1 < argc)
            max_producers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--histogram-values") && i + 1 < argc)
            hist_values = atoll(argv[++i]);
        else {
            printf("Usage: bench_log [--records N per producer (10000000)] [--max-producers P "
                   "(4, at most 64)] [--histogram-values N (3704000)]\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (n == 0 || max_producers < 1 || max_producers > 64 || hist_values < 1 ||
        hist_values > 200000000) {
        fprintf(stderr, "bench_log: --records must be > 0, --max-producers in 1..64, "
                        "--histogram-values in 1..200000000\n");
        return 2;
    }
    calibrate();
    uint64_t t_min = UINT64_MAX;
    for (int i = 0; i < 100000; i++) {
        const uint64_t a = ticks(), b = ticks();
        t_min = b - a < t_min ? b - a : t_min;
    }
    printf("bench_log: %llu records of %d bytes per producer, queues of %d bytes, %ld CPUs; "
           "timer cost %.0f ns (included below)\n\n",
           (unsigned long long)n, REC_BYTES, QUEUE_BYTES, sysconf(_SC_NPROCESSORS_ONLN),
           (double)t_min * ns_per_tick);
    printf("| %-28s | %2s | %6s | %6s | %7s | %8s | %8s | %10s |\n", "push into", "P", "p50 ns",
           "p99 ns", "p99.9 ns", "push M/s", "deliv M/s", "dropped");
    printf("|------------------------------|----|--------|--------|---------|----------|----------|"
           "------------|\n");
    for (int p = 1; p <= max_producers; p *= 2) {
        result ring = measure(IMPL_RING, p, n, 0);
        result mq = measure(IMPL_MUTEX, p, n, 0);
        print_row("SPSC rings (Brisk)", p, &ring);
        print_row("mutex + condvar queue", p, &mq);
        printf("| %-28s | %2d | delivered ratio ring / mutex: %.2fx %37s|\n", "", p,
               ring.delivered_per_s / mq.delivered_per_s, "");
    }
    for (int p = 1; p <= max_producers; p *= 2) {
        result ring = measure(IMPL_RING, p, n, 1);
        result mq = measure(IMPL_MUTEX, p, n, 1);
        print_row("stalled consumer: rings", p, &ring);
        print_row("stalled consumer: mutex", p, &mq);
    }
    result lg = run_logger(n);
    print_row("brisk_log_scalar, event files", 1, &lg);
    printf("\nThe last row: push M/s while pushing; deliv M/s counts records written to the "
           "event file\nuntil close() returned; dropped are pushes refused by a full ring.\n");
    run_histogram((size_t)hist_values);
    return 0;
}
