#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "brisk/pool.h"
#include "brisk/trainer.h"

#include "brisk/error.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Spin this many rounds before sleeping in the kernel: long enough to cover the gap between
 * the phases of one training step on dedicated cores (tens of microseconds), short enough not
 * to starve other threads when there are more threads than cores. */
#define SPIN_ROUNDS 4000

/* A sense-reversing barrier: the last thread to arrive resets the count and advances the
 * phase; the others spin on the phase, then sleep on it with a futex. */
typedef struct pool_barrier {
    _Alignas(64) atomic_uint count;
    _Alignas(64) atomic_uint phase;
    atomic_uint sleepers;
    unsigned n;
} pool_barrier;

/* Per-thread time accounting, each on its own cache line; written only by its thread. */
typedef struct thread_times {
    _Alignas(64) int64_t job_ns;
    int64_t wait_ns;
} thread_times;

struct brisk_pool {
    int T;
    pthread_t *threads;      /* T - 1 workers */
    pool_barrier barrier;    /* the in-job barrier, also used to start and end jobs */
    pool_barrier *teams;     /* (T) team barriers; the first R are in use */
    int n_teams;             /* R, written by the caller between jobs */
    thread_times *times;     /* (T) */
    brisk_pool_fn fn;        /* written by the caller before the start barrier */
    void *arg;
    int stop;                /* written by destroy before the start barrier */
};

typedef struct worker_arg {
    brisk_pool *pool;
    int t;
} worker_arg;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(atomic_uint *addr, unsigned expected)
{
    syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
    syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void barrier_wait(pool_barrier *b)
{
    const unsigned phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == b->n) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        /* seq_cst store then load: either a sleeper's increment is seen here, or the sleeper
         * sees the new phase before it sleeps (and the futex re-checks it atomically). */
        atomic_store(&b->phase, phase + 1);
        if (atomic_load(&b->sleepers))
            futex_wake_all(&b->phase);
        return;
    }
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        if (atomic_load_explicit(&b->phase, memory_order_acquire) != phase)
            return;
        cpu_relax();
    }
    atomic_fetch_add(&b->sleepers, 1);
    while (atomic_load(&b->phase) == phase)
        futex_wait(&b->phase, phase);
    atomic_fetch_sub(&b->sleepers, 1);
}

/* Thread index of the calling thread in its pool (0 for the caller of brisk_pool_run). */
static _Thread_local int self_index;

/* A barrier inside a job, with the time spent waiting charged to the calling thread. */
static void timed_wait(brisk_pool *pool, pool_barrier *b)
{
    const int64_t t0 = now_ns();
    barrier_wait(b);
    pool->times[self_index].wait_ns += now_ns() - t0;
}

static void run_fn(brisk_pool *pool, int t)
{
    const int64_t t0 = now_ns();
    pool->fn(pool->arg, t, pool->T);
    pool->times[t].job_ns += now_ns() - t0;
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    brisk_pool *pool = wa.pool;
    self_index = wa.t;
    for (;;) {
        barrier_wait(&pool->barrier); /* job start: fn, arg and stop are published */
        if (pool->stop)
            return NULL;
        run_fn(pool, wa.t);
        barrier_wait(&pool->barrier); /* job end */
    }
}

int brisk_pool_create(int T, brisk_pool **out)
{
    *out = NULL;
    if (T < 1 || T > 4096)
        return brisk_error_set(BRISK_EINVAL, "pool: %d threads (1..4096 allowed)", T);
    brisk_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return brisk_error_set(BRISK_ENOMEM, "pool: out of memory");
    pool->T = T;
    pool->barrier.n = (unsigned)T;
    pool->threads = calloc((size_t)T, sizeof *pool->threads);
    pool->teams = calloc((size_t)T, sizeof *pool->teams);
    pool->times = aligned_alloc(64, (size_t)T * sizeof *pool->times);
    if (!pool->threads || !pool->teams || !pool->times) {
        free(pool->threads);
        free(pool->teams);
        free(pool->times);
        free(pool);
        return brisk_error_set(BRISK_ENOMEM, "pool: out of memory");
    }
    memset(pool->times, 0, (size_t)T * sizeof *pool->times);
    brisk_pool_set_teams(pool, 1);
    for (int t = 1; t < T; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        int rc = wa ? 0 : -1;
        if (wa) {
            wa->pool = pool;
            wa->t = t;
            rc = pthread_create(&pool->threads[t - 1], NULL, worker_main, wa);
        }
        if (rc != 0) {
            free(wa);
            /* Stop the workers started so far: a pool of t threads, told to stop. */
            pool->barrier.n = (unsigned)t;
            pool->T = t;
            brisk_pool_destroy(pool);
            return brisk_error_set(BRISK_ENOMEM, "pool: could not start thread %d of %d", t, T);
        }
    }
    *out = pool;
    return BRISK_OK;
}

void brisk_pool_destroy(brisk_pool *pool)
{
    if (!pool)
        return;
    pool->stop = 1;
    if (pool->T > 1)
        barrier_wait(&pool->barrier);
    for (int t = 1; t < pool->T; t++)
        pthread_join(pool->threads[t - 1], NULL);
    free(pool->threads);
    free(pool->teams);
    free(pool->times);
    free(pool);
}

int brisk_pool_size(const brisk_pool *pool)
{
    return pool->T;
}

void brisk_pool_run(brisk_pool *pool, brisk_pool_fn fn, void *arg)
{
    pool->fn = fn;
    pool->arg = arg;
    self_index = 0;
    if (pool->T == 1) {
        run_fn(pool, 0);
        return;
    }
    barrier_wait(&pool->barrier);
    run_fn(pool, 0);
    /* Waiting for the last worker to finish is part of the caller's job time. */
    const int64_t t0 = now_ns();
    barrier_wait(&pool->barrier);
    const int64_t waited = now_ns() - t0;
    pool->times[0].job_ns += waited;
    pool->times[0].wait_ns += waited;
}

void brisk_pool_barrier(brisk_pool *pool)
{
    if (pool->T > 1)
        timed_wait(pool, &pool->barrier);
}

void brisk_pool_set_teams(brisk_pool *pool, int R)
{
    BRISK_ASSERT(R >= 1 && R <= pool->T);
    pool->n_teams = R;
    for (int r = 0; r < R; r++)
        pool->teams[r].n = (unsigned)brisk_pool_team_size(pool, r);
}

int brisk_pool_team_size(const brisk_pool *pool, int team)
{
    BRISK_ASSERT(team >= 0 && team < pool->n_teams);
    return (pool->T - team + pool->n_teams - 1) / pool->n_teams;
}

void brisk_pool_team_barrier(brisk_pool *pool, int team)
{
    pool_barrier *b = &pool->teams[team];
    if (b->n > 1)
        timed_wait(pool, b);
}

void brisk_pool_times(const brisk_pool *pool, int t, double *busy, double *waiting)
{
    BRISK_ASSERT(t >= 0 && t < pool->T);
    *busy = 1e-9 * (double)pool->times[t].job_ns;
    *waiting = 1e-9 * (double)pool->times[t].wait_ns;
}

void brisk_pool_reset_times(brisk_pool *pool)
{
    memset(pool->times, 0, (size_t)pool->T * sizeof *pool->times);
}

int brisk_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
