#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "brisk/pool.h"

#include "brisk/error.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
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

struct brisk_pool {
    int T;
    pthread_t *threads;      /* T - 1 workers */
    pool_barrier barrier;    /* the in-job barrier, also used to start and end jobs */
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

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    brisk_pool *pool = wa.pool;
    for (;;) {
        barrier_wait(&pool->barrier); /* job start: fn, arg and stop are published */
        if (pool->stop)
            return NULL;
        pool->fn(pool->arg, wa.t, pool->T);
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
    if (!pool->threads) {
        free(pool);
        return brisk_error_set(BRISK_ENOMEM, "pool: out of memory");
    }
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
    free(pool);
}

int brisk_pool_size(const brisk_pool *pool)
{
    return pool->T;
}

void brisk_pool_run(brisk_pool *pool, brisk_pool_fn fn, void *arg)
{
    if (pool->T == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    barrier_wait(&pool->barrier);
    fn(arg, 0, pool->T);
    barrier_wait(&pool->barrier);
}

void brisk_pool_barrier(brisk_pool *pool)
{
    if (pool->T > 1)
        barrier_wait(&pool->barrier);
}

int brisk_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
