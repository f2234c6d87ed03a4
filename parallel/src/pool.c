#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "brisk/pool.h"
#include "brisk/trainer.h"

#include "brisk/error.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Spin this many rounds before sleeping in the kernel: long enough to cover the gap between
 * the phases of one training step on dedicated cores (tens of microseconds). */
#define SPIN_ROUNDS 4000
/* ... unless a thread of the pool shares its core with another program: then a thread that
 * spins spends the share of its core that it will need for work, and the scheduler favours a
 * thread that sleeps when it wakes. So it barely spins. */
#define SPIN_ROUNDS_SHARED 16
/* Once a window of this many nanoseconds (at the first job after it), each thread reads how
 * long it has waited, runnable, for a CPU (the kernel's schedstat) and which CPU it is on; a
 * wait of more than WAIT_SHARE of the window marks its core as shared until the next window.
 * (Measured on a 2-core VM, 50 ms windows: 0-5% on a quiet machine and under busy loops at
 * nice 19, 35-50% for the thread sharing a core with a busy loop at nice 0.) Without
 * schedstat, more than PREEMPT_LIMIT preemptions (involuntary context switches) in the window
 * do (a weaker sign: a quiet machine shows 1-2 in most windows). */
#define CHECK_NS 50000000
#define WAIT_SHARE 0.2
#define PREEMPT_LIMIT 6
/* Windows without preemption after which threads that were spread over the CPUs (below) are
 * given back to the scheduler. */
#define UNPIN_WINDOWS 64
/* While the threads are pinned and a core is shared, a thread that waits for the others looks
 * every PROBE_NS at the CPU time of the threads it waits for (up to PROBE_MAX in use): one
 * that is ready to run (state R) but neither running nor waiting itself (its CPU time grew by
 * less than an eighth of the time between two looks) was taken off its CPU, and the waiting
 * thread trades CPUs with it (trade_or_sleep). */
#define PROBE_NS 50000
/* For this long after its job, a worker looks for a caller held off its CPU (between jobs
 * the caller works alone, and the next job waits for it). */
#define IDLE_PROBE_NS 10000000
#define PROBE_MAX 64
/* Claimed loops whose progress a team tracks at once: a thread settles (waits for every loop
 * it has begun to finish) before it begins one more than this ahead of the last it settled. */
#define LOOP_RING 64

/* A sense-reversing barrier: the last thread to arrive resets the count and advances the
 * phase; the others spin on the phase, then sleep on it with a futex. */
typedef struct pool_barrier {
    _Alignas(64) atomic_uint count;
    _Alignas(64) atomic_uint phase;
    atomic_uint sleepers;
    unsigned n;
} pool_barrier;

/* Per-thread accounting, each on its own cache line; written only by its thread (the
 * caller resets it between jobs). */
typedef struct thread_times {
    _Alignas(64) int64_t job_ns;
    int64_t wait_ns;
    long long checks;         /* checks of the run-queue wait made */
    int64_t checked_at;       /* when the last one was */
    long preempted_at;        /* ru_nivcsw at the window's start */
    int stat_fd;              /* its /proc/thread-self/schedstat, or -1 */
    long long waited_at;      /* the run-queue wait it read there at the window's start */
    atomic_int shared;        /* the last window saw this thread preempted */
    atomic_int cpu;           /* the CPU it ran on at its last check */
    atomic_int pin;           /* the one CPU it is pinned to, or -1 */
    /* While it sleeps until a word changes, the word and the value it waits to change from
     * (NULL: it does not wait). A thread whose word has changed is wanted. */
    _Atomic(atomic_uint *) wait_on;
    atomic_uint wait_val;
    atomic_int tid;           /* its kernel thread id, 0 until known (the caller's is set
                               * at every job that may trade) */
    /* Claimed loops in this thread's team, this job (brisk_pool_team_claim). */
    uint64_t gen;             /* loops begun */
    uint64_t held;            /* the loop of the chunk this thread holds, or 0 */
    uint64_t settled;         /* loops 1..settled are known to be finished */
    long long n_of[LOOP_RING]; /* chunks of loop g, at g % LOOP_RING */
} thread_times;

/* A team's claimed loops. A loop is numbered by its generation, from 1 in every job. */
typedef struct team_claims {
    _Alignas(64) _Atomic uint64_t done[LOOP_RING]; /* loop g's generation and how many of
                                               * its chunks are finished, at g % LOOP_RING */
    _Alignas(64) atomic_uint finished;        /* bumped when a loop finishes and someone
                                               * waits for it (a futex word) */
    atomic_uint waiters;
} team_claims;

/* A member's share of its team's loops: of a loop of n chunks, member i of nth owns chunks
 * n i / nth up to n (i + 1) / nth. The word holds the newest loop its share was set up for
 * (high 32 bits) and how many of the share's chunks have been claimed since (by the member,
 * or by another that ran out of its own). One per thread: thread t is member t / R of team
 * t % R. */
typedef struct member_share {
    _Alignas(64) _Atomic uint64_t word;
} member_share;

/* A worker's mailbox: the caller posts a job by writing its number here. */
typedef struct worker_slot {
    _Alignas(64) atomic_uint post; /* the last job posted to this worker (a futex word) */
    atomic_uint sleeping;
} worker_slot;

struct brisk_pool {
    int T;
    int active;              /* K: the threads that take part in jobs (0 .. K - 1) */
    pthread_t *threads;      /* T - 1 workers */
    worker_slot *slots;      /* (T) slot t for worker t */
    unsigned seq;            /* jobs posted (the caller's) */
    _Alignas(64) atomic_uint done; /* workers done with the job in flight (a futex word) */
    atomic_uint done_sleeping;
    pool_barrier barrier;    /* the in-job barrier of the K threads */
    pool_barrier *teams;     /* (T) team barriers; the first R are in use */
    team_claims *claims;     /* (T) each team's claimed loops */
    member_share *shares;    /* (T) each thread's share of its team's loops */
    atomic_int spin;         /* rounds of spinning before a barrier sleeps */
    _Alignas(64) atomic_llong next_item; /* the job's items (brisk_pool_next_item) */
    /* Spreading (the caller's, between jobs): when another program makes the scheduler put
     * two of the pool's threads on one CPU, the workers are pinned, one CPU each. */
    cpu_set_t allowed;       /* the CPUs the process could use when the pool was made */
    int pinned;              /* workers are pinned */
    int caller_pinned;       /* so is the caller, whose own affinity was caller_mask */
    pthread_t caller;
    cpu_set_t caller_mask;
    int quiet_windows;       /* checks without preemption since */
    int packed_checks;       /* checks running that found two threads on one CPU */
    atomic_int may_trade;    /* waits may trade CPUs (trade_or_sleep) */
    atomic_int probe_k;      /* ... with threads 0 .. probe_k - 1 */
    atomic_int mover;        /* a thread to move to its pin (move_later), -1: none, -2: a
                              * trade or a move in progress */
    atomic_llong trades;     /* trades so far */
    atomic_int test_trades;  /* (tests) trade whether or not a core is shared, and count a
                              * thread asleep in the kernel as held too */
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

/* As futex_wait, for at most ns nanoseconds. */
static void futex_wait_for(atomic_uint *addr, unsigned expected, long ns)
{
    const struct timespec ts = {0, ns};
    syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
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

/* Thread index of the calling thread in its pool (0 for the caller of brisk_pool_run). */
static _Thread_local int self_index;

/* The calling thread sleeps (or may) until *addr changes from v. */
static void mark_waiting(thread_times *tt, atomic_uint *addr, unsigned v)
{
    atomic_store_explicit(&tt->wait_val, v, memory_order_relaxed);
    atomic_store_explicit(&tt->wait_on, addr, memory_order_release);
}

static void mark_wanted(thread_times *tt)
{
    atomic_store_explicit(&tt->wait_on, NULL, memory_order_relaxed);
}

/* Whether thread tt waits for a word that has not changed (a guess: it may be changing). */
static int is_waiting(thread_times *tt)
{
    atomic_uint *w = atomic_load_explicit(&tt->wait_on, memory_order_acquire);
    return w && atomic_load_explicit(w, memory_order_relaxed) ==
                    atomic_load_explicit(&tt->wait_val, memory_order_relaxed);
}

/* What a waiting thread saw at its last look at the others (trade_or_sleep). */
typedef struct probe {
    int64_t at;                  /* when; 0 before the first look */
    long long cpu_ns[PROBE_MAX]; /* each thread's CPU time then, or -1 (it waited) */
} probe;

/* The CPU time of thread tid, or -1: Linux's clock of a thread is made from its id (this is
 * what pthread_getcpuclockid returns, and it needs no pthread_t, which the caller's changes
 * as whoever calls brisk_pool_run does). */
static long long thread_cpu_ns(int tid)
{
    struct timespec ts;
    const clockid_t clock = (clockid_t)((~(unsigned)tid << 3) | 6u);
    if (tid <= 0 || clock_gettime(clock, &ts) != 0)
        return -1;
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether thread tid is ready to run (or running): state R in its /proc stat, not asleep in
 * the kernel (a read, a sleep, a page coming from disk), where trading would not help. */
int brisk_thread_runnable(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *end = strrchr(buf, ')'); /* "tid (name) S ...": the name may hold anything */
    return end && end[1] == ' ' && end[2] == 'R';
}

static cpu_set_t only_cpu(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return one;
}

static void pin_to(pthread_t thread, int cpu)
{
    const cpu_set_t one = only_cpu(cpu);
    pthread_setaffinity_np(thread, sizeof one, &one);
}

/* Pins pool thread t to its pin, by its kernel id (known once it has started). */
static void pin_thread(brisk_pool *pool, int t)
{
    const int tid = atomic_load_explicit(&pool->times[t].tid, memory_order_relaxed);
    const int cpu = atomic_load_explicit(&pool->times[t].pin, memory_order_relaxed);
    if (tid <= 0 || cpu < 0 || cpu >= CPU_SETSIZE)
        return;
    const cpu_set_t one = only_cpu(cpu);
    sched_setaffinity(tid, sizeof one, &one);
}

/* The right to move threads: between jobs the caller takes it (after any trade in
 * progress) and returns the thread that a trade left to be moved, or -1. */
static int lock_moves(brisk_pool *pool)
{
    for (;;) {
        int m = atomic_load(&pool->mover);
        if (m != -2 && atomic_compare_exchange_weak(&pool->mover, &m, -2))
            return m;
        sched_yield();
    }
}

static void unlock_moves(brisk_pool *pool)
{
    atomic_store(&pool->mover, -1);
}

/* The calling thread w, which waits, trades CPUs with thread h, which is off its own: h is
 * moved to w's CPU now (it runs there as soon as w sleeps); w is moved to h's by the next
 * other thread that enters the pool's code (move_later). A thread that moved itself would
 * wait until the CPU it moves to ran it, and that CPU is busy with the other program; moved
 * by another while it sleeps, it goes there when it wakes. One trade at a time, and none
 * while a move waits. */
static void trade(brisk_pool *pool, int w, int h)
{
    int none = -1;
    if (!atomic_compare_exchange_strong(&pool->mover, &none, -2))
        return;
    const int cw = atomic_load_explicit(&pool->times[w].pin, memory_order_relaxed);
    const int ch = atomic_load_explicit(&pool->times[h].pin, memory_order_relaxed);
    if (cw < 0 || ch < 0 || cw == ch ||
        atomic_load_explicit(&pool->times[h].tid, memory_order_relaxed) <= 0) {
        atomic_store(&pool->mover, -1);
        return;
    }
    atomic_store_explicit(&pool->times[h].pin, cw, memory_order_relaxed);
    pin_thread(pool, h);
    atomic_store_explicit(&pool->times[w].pin, ch, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->trades, 1, memory_order_relaxed);
    atomic_store(&pool->mover, w);
}

/* Where a thread enters the pool's code in a job: moves the thread that a trade left to be
 * moved, unless that is the calling thread. */
static void move_later(brisk_pool *pool)
{
    if (!atomic_load_explicit(&pool->may_trade, memory_order_relaxed))
        return;
    int m = atomic_load_explicit(&pool->mover, memory_order_relaxed);
    if (m < 0 || m == self_index || !atomic_compare_exchange_strong(&pool->mover, &m, -2))
        return;
    pin_thread(pool, m);
    atomic_store(&pool->mover, -1);
}

/* A thread that waits for the others sleeps on *addr while it holds `expected`. While the
 * pool's threads are pinned (another program shares a core), it sleeps PROBE_NS at a time
 * and looks at the others between: a thread in use that waited at neither of two looks, ran
 * for less than an eighth of the time between them and is in state R is ready to run but off
 * its CPU (the scheduler gave its core to the other program), and whatever this thread waits
 * for may be in its hands. The two trade CPUs: the one taken off runs on this thread's CPU at once,
 * instead of after the other program's time slice (milliseconds). */
static void trade_or_sleep(brisk_pool *pool, atomic_uint *addr, unsigned expected, probe *pr)
{
    /* A thread that waits to be moved sleeps until it is wanted: woken by a timer on the CPU
     * it is still pinned to, it would take turns there with the thread it traded with. */
    if (!atomic_load_explicit(&pool->may_trade, memory_order_relaxed) ||
        atomic_load_explicit(&pool->mover, memory_order_relaxed) == self_index) {
        futex_wait(addr, expected);
        return;
    }
    move_later(pool);
    const int w = self_index, K = atomic_load_explicit(&pool->probe_k, memory_order_relaxed);
    const int64_t now = now_ns();
    if (!pr->at || now - pr->at >= PROBE_NS / 2) {
        int off = -1;
        for (int t = 0; t < K; t++) {
            if (t == w)
                continue;
            const int tid = atomic_load_explicit(&pool->times[t].tid, memory_order_relaxed);
            const long long c = is_waiting(&pool->times[t]) ? -1 : thread_cpu_ns(tid);
            if (off < 0 && pr->at && c >= 0 && pr->cpu_ns[t] >= 0 &&
                (c - pr->cpu_ns[t]) * 8 < now - pr->at &&
                (atomic_load_explicit(&pool->test_trades, memory_order_relaxed) ||
                 brisk_thread_runnable(tid)))
                off = t;
            pr->cpu_ns[t] = c;
        }
        pr->at = now;
        if (off >= 0) {
            trade(pool, w, off);
            pr->at = 0;
        }
    }
    futex_wait_for(addr, expected, PROBE_NS);
}

static void barrier_wait(brisk_pool *pool, pool_barrier *b, int spin)
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
    for (int i = 0; i < spin; i++) {
        if (atomic_load_explicit(&b->phase, memory_order_acquire) != phase)
            return;
        cpu_relax();
    }
    atomic_fetch_add(&b->sleepers, 1);
    thread_times *tt = &pool->times[self_index];
    mark_waiting(tt, &b->phase, phase);
    probe pr;
    pr.at = 0;
    while (atomic_load(&b->phase) == phase)
        trade_or_sleep(pool, &b->phase, phase, &pr);
    mark_wanted(tt);
    atomic_fetch_sub(&b->sleepers, 1);
}

/* Waits until *w differs from seen: spins, then sleeps on the futex with *sleeping set (the
 * writer stores *w, then wakes the word if it sees *sleeping: seq_cst on both sides, so
 * either the writer sees the sleeper or the sleeper sees the new value). */
static void wait_change(brisk_pool *pool, atomic_uint *w, unsigned seen, atomic_uint *sleeping,
                        int spin)
{
    for (int i = 0; i < spin; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != seen)
            return;
        cpu_relax();
    }
    atomic_store(sleeping, 1);
    probe pr;
    pr.at = 0;
    const int64_t until = now_ns() + IDLE_PROBE_NS;
    while (atomic_load(w) == seen)
        if (atomic_load_explicit(&pool->may_trade, memory_order_relaxed) && now_ns() < until)
            trade_or_sleep(pool, w, seen, &pr);
        else
            futex_wait(w, seen);
    atomic_store(sleeping, 0);
}

/* A barrier inside a job, with the time spent waiting charged to the calling thread. */
static void timed_wait(brisk_pool *pool, pool_barrier *b)
{
    move_later(pool);
    const int64_t t0 = now_ns();
    barrier_wait(pool, b, atomic_load_explicit(&pool->spin, memory_order_relaxed));
    pool->times[self_index].wait_ns += now_ns() - t0;
}

/* The calling thread's nanoseconds spent runnable but waiting for a CPU, or -1. */
static long long run_queue_wait(int fd)
{
    char buf[96];
    const ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0)
        return -1;
    buf[n] = 0;
    unsigned long long on_cpu, waited;
    return sscanf(buf, "%llu %llu", &on_cpu, &waited) == 2 ? (long long)waited : -1;
}

/* Once a window: did this thread share its core with another program in it? Returns 1 when
 * it checked. */
static int check_preemption(brisk_pool *pool, int t)
{
    thread_times *tt = &pool->times[t];
    const int64_t now = now_ns();
    if (tt->checks && now - tt->checked_at < CHECK_NS)
        return 0;
    if (!tt->checks)
        tt->stat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    const long long waited = run_queue_wait(tt->stat_fd);
    struct rusage ru;
    if (waited < 0 && getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    const int shared =
        tt->checks && (waited >= 0 ? (double)(waited - tt->waited_at) >
                                       WAIT_SHARE * (double)(now - tt->checked_at)
                                 : ru.ru_nivcsw - tt->preempted_at > PREEMPT_LIMIT);
    tt->checks++;
    tt->checked_at = now;
    atomic_store_explicit(&tt->shared, shared, memory_order_relaxed);
    atomic_store_explicit(&tt->cpu, sched_getcpu(), memory_order_relaxed);
    if (waited >= 0)
        tt->waited_at = waited;
    else
        tt->preempted_at = ru.ru_nivcsw;
    return 1;
}

/* Gives the caller the affinity it had, from its own thread only. */
static void unpin_caller(brisk_pool *pool)
{
    if (pool->caller_pinned && pthread_equal(pool->caller, pthread_self())) {
        pthread_setaffinity_np(pool->caller, sizeof pool->caller_mask, &pool->caller_mask);
        pool->caller_pinned = 0;
        atomic_store_explicit(&pool->times[0].pin, -1, memory_order_relaxed);
    }
}

/* Gives the pinned threads back to the scheduler: the workers to every allowed CPU, the
 * caller to the affinity it had (unpin_caller). */
static void unpin(brisk_pool *pool)
{
    for (int t = 0; t < pool->T; t++)
        atomic_store_explicit(&pool->times[t].pin, -1, memory_order_relaxed);
    for (int t = 1; t < pool->T; t++)
        pthread_setaffinity_np(pool->threads[t - 1], sizeof pool->allowed, &pool->allowed);
    unpin_caller(pool);
    pool->pinned = 0;
}

static int pin_all(brisk_pool *pool);

/* Between jobs, on the caller: if two checks running find two threads on one CPU (the
 * scheduler packs threads that wake each other, so a program busy on one core can leave the
 * pool sharing the other), pins every thread to a CPU of its own: the caller to the one it is
 * on, each worker to its own unless another thread is there, else to the first free one. A
 * pinned caller would otherwise follow the worker that wakes it. Gives them back to the
 * scheduler after UNPIN_WINDOWS quiet checks, and when the pool is destroyed. */
static void spread(brisk_pool *pool, int shared)
{
    const int T = pool->T, ncpu = CPU_COUNT(&pool->allowed);
    if (T < 2 || T > ncpu || T > CPU_SETSIZE)
        return;
    if (!shared && pool->pinned && ++pool->quiet_windows >= UNPIN_WINDOWS) {
        unpin(pool);
        pool->packed_checks = 0;
        return;
    }
    if (shared)
        pool->quiet_windows = 0;
    cpu_set_t taken;
    CPU_ZERO(&taken);
    int packed = 0;
    for (int t = 0; t < pool->active; t++) { /* the others sleep */
        const int c = atomic_load_explicit(&pool->times[t].cpu, memory_order_relaxed);
        if (c >= 0 && c < CPU_SETSIZE) {
            packed |= CPU_ISSET(c, &taken);
            CPU_SET(c, &taken);
        }
    }
    /* Packed twice running: with CPUs to spare the scheduler would have spread them, so
     * another program holds the others (the pool's own threads then take turns on one CPU,
     * which can show no preemption at all). */
    pool->packed_checks = packed ? pool->packed_checks + 1 : 0;
    if (pool->packed_checks < 2)
        return;
    pool->packed_checks = 0;
    pin_all(pool);
}

/* Pins every thread to a CPU of its own: the caller to the one it was on at its last check,
 * each worker to the one it is pinned to, or else the one it was on at its last check, unless
 * another thread is there, else to the first free one. Returns 0, or -1 where that CPU is not
 * known (not all may be pinned then; unpin undoes it all). With the right to move threads
 * (lock_moves). */
static int pin_all(brisk_pool *pool)
{
    const int T = pool->T;
    cpu_set_t taken;
    CPU_ZERO(&taken);
    const int c0 = atomic_load_explicit(&pool->times[0].cpu, memory_order_relaxed);
    if (c0 < 0 || c0 >= CPU_SETSIZE || !CPU_ISSET(c0, &pool->allowed))
        return -1;
    CPU_SET(c0, &taken);
    if (!pool->caller_pinned) {
        pool->caller = pthread_self();
        if (pthread_getaffinity_np(pool->caller, sizeof pool->caller_mask,
                                   &pool->caller_mask) != 0)
            return -1;
        pool->caller_pinned = 1;
    }
    pthread_setaffinity_np(pool->caller, sizeof taken, &taken);
    atomic_store_explicit(&pool->times[0].pin, c0, memory_order_relaxed);
    pool->pinned = 1; /* (unpin undoes it all, whatever the loop below reaches) */
    for (int t = 1; t < T; t++) {
        int c = atomic_load_explicit(&pool->times[t].pin, memory_order_relaxed);
        if (c < 0 || c >= CPU_SETSIZE || CPU_ISSET(c, &taken))
            c = atomic_load_explicit(&pool->times[t].cpu, memory_order_relaxed);
        if (c < 0 || c >= CPU_SETSIZE || CPU_ISSET(c, &taken) || !CPU_ISSET(c, &pool->allowed))
            for (c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &pool->allowed) && !CPU_ISSET(c, &taken))
                    break;
        if (c >= CPU_SETSIZE)
            return -1;
        CPU_SET(c, &taken);
        pin_to(pool->threads[t - 1], c);
        atomic_store_explicit(&pool->times[t].pin, c, memory_order_relaxed);
    }
    return 0;
}

int brisk_pool_pin(brisk_pool *pool)
{
    const int T = pool->T;
    if (T < 2 || T > CPU_COUNT(&pool->allowed) || T > CPU_SETSIZE)
        return -1;
    lock_moves(pool);
    atomic_store_explicit(&pool->times[0].cpu, sched_getcpu(), memory_order_relaxed);
    const int rc = pin_all(pool);
    if (rc != 0)
        unpin(pool);
    unlock_moves(pool);
    return rc;
}

int brisk_pool_pinned_cpu(const brisk_pool *pool, int t)
{
    BRISK_ASSERT(t >= 0 && t < pool->T);
    return atomic_load_explicit(&pool->times[t].pin, memory_order_relaxed);
}

long long brisk_pool_trades(const brisk_pool *pool)
{
    return atomic_load_explicit(&pool->trades, memory_order_relaxed);
}

void brisk_pool_test_trades(brisk_pool *pool, int on)
{
    atomic_store_explicit(&pool->test_trades, on != 0, memory_order_relaxed);
}

/* Before each job (brisk_pool_run): no loop of any team begun (loops are numbered from 1 in
 * every job). */
static void reset_claims(brisk_pool *pool)
{
    for (int t = 0; t < pool->T; t++)
        atomic_store_explicit(&pool->shares[t].word, 0, memory_order_relaxed);
    for (int r = 0; r < pool->n_teams; r++)
        for (int i = 0; i < LOOP_RING; i++)
            atomic_store_explicit(&pool->claims[r].done[i], 0, memory_order_relaxed);
}

static void run_fn(brisk_pool *pool, int t)
{
    if (t)
        check_preemption(pool, t); /* the caller's own is in brisk_pool_run */
    pool->times[t].gen = pool->times[t].held = pool->times[t].settled = 0;
    move_later(pool);
    const int64_t t0 = now_ns();
    pool->fn(pool->arg, t, pool->active);
    pool->times[t].job_ns += now_ns() - t0;
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    brisk_pool *pool = wa.pool;
    self_index = wa.t;
    prctl(PR_SET_TIMERSLACK, 1000UL); /* its sleeps of PROBE_NS end on time */
    atomic_store_explicit(&pool->times[wa.t].tid, (int)syscall(SYS_gettid), memory_order_relaxed);
    worker_slot *slot = &pool->slots[wa.t];
    unsigned seen = 0;
    mark_waiting(&pool->times[wa.t], &slot->post, seen); /* wanted when a job is posted */
    for (;;) {
        /* A job posted to this worker: fn, arg, active and stop are published before it. */
        wait_change(pool, &slot->post, seen, &slot->sleeping,
                    atomic_load_explicit(&pool->spin, memory_order_relaxed));
        seen = atomic_load_explicit(&slot->post, memory_order_acquire);
        if (pool->stop) {
            if (pool->times[wa.t].stat_fd >= 0)
                close(pool->times[wa.t].stat_fd);
            return NULL;
        }
        mark_wanted(&pool->times[wa.t]);
        run_fn(pool, wa.t);
        mark_waiting(&pool->times[wa.t], &slot->post, seen);
        move_later(pool); /* (the caller, before it wakes) */
        atomic_fetch_add(&pool->done, 1); /* seq_cst: see wait_change */
        if (atomic_load(&pool->done_sleeping))
            futex_wake_all(&pool->done);
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
    pool->active = T;
    pool->barrier.n = (unsigned)T;
    pool->threads = calloc((size_t)T, sizeof *pool->threads);
    pool->teams = calloc((size_t)T, sizeof *pool->teams);
    pool->times = aligned_alloc(64, (size_t)T * sizeof *pool->times);
    pool->claims = aligned_alloc(64, (size_t)T * sizeof *pool->claims);
    pool->shares = aligned_alloc(64, (size_t)T * sizeof *pool->shares);
    pool->slots = aligned_alloc(64, (size_t)T * sizeof *pool->slots);
    atomic_init(&pool->spin, SPIN_ROUNDS);
    atomic_init(&pool->next_item, 0);
    atomic_init(&pool->mover, -1);
    atomic_init(&pool->may_trade, 0);
    atomic_init(&pool->probe_k, 0);
    atomic_init(&pool->trades, 0);
    atomic_init(&pool->test_trades, 0);
    if (sched_getaffinity(0, sizeof pool->allowed, &pool->allowed) != 0)
        CPU_ZERO(&pool->allowed);
    if (!pool->threads || !pool->teams || !pool->times || !pool->claims || !pool->shares ||
        !pool->slots) {
        free(pool->threads);
        free(pool->teams);
        free(pool->times);
        free(pool->claims);
        free(pool->shares);
        free(pool->slots);
        free(pool);
        return brisk_error_set(BRISK_ENOMEM, "pool: out of memory");
    }
    memset(pool->times, 0, (size_t)T * sizeof *pool->times);
    for (int t = 0; t < T; t++) {
        atomic_init(&pool->times[t].shared, 0);
        atomic_init(&pool->times[t].cpu, -1);
        atomic_init(&pool->times[t].pin, -1);
        atomic_init(&pool->times[t].wait_on, NULL);
        atomic_init(&pool->times[t].wait_val, 0);
        atomic_init(&pool->times[t].tid, 0);
        pool->times[t].stat_fd = -1;
        atomic_init(&pool->slots[t].post, 0);
        atomic_init(&pool->slots[t].sleeping, 0);
        atomic_init(&pool->shares[t].word, 0);
        for (int i = 0; i < LOOP_RING; i++)
            atomic_init(&pool->claims[t].done[i], 0);
        atomic_init(&pool->claims[t].finished, 0);
        atomic_init(&pool->claims[t].waiters, 0);
    }
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
            pool->T = pool->active = t;
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
    atomic_store(&pool->may_trade, 0);
    lock_moves(pool); /* (kept: no trade once the workers are told to stop) */
    if (pool->pinned)
        unpin(pool);
    pool->stop = 1;
    pool->seq++;
    for (int t = 1; t < pool->T; t++) { /* every worker, parked or not */
        atomic_store(&pool->slots[t].post, pool->seq);
        if (atomic_load(&pool->slots[t].sleeping))
            futex_wake_all(&pool->slots[t].post);
    }
    for (int t = 1; t < pool->T; t++)
        pthread_join(pool->threads[t - 1], NULL);
    if (pool->times[0].stat_fd >= 0)
        close(pool->times[0].stat_fd);
    free(pool->threads);
    free(pool->teams);
    free(pool->times);
    free(pool->claims);
    free(pool->shares);
    free(pool->slots);
    free(pool);
}

int brisk_pool_size(const brisk_pool *pool)
{
    return pool->T;
}

/* The caller waits until n workers have finished the job. */
static void wait_all_done(brisk_pool *pool, unsigned n, int spin)
{
    for (int i = 0; i < spin; i++) {
        if (atomic_load_explicit(&pool->done, memory_order_acquire) == n)
            return;
        cpu_relax();
    }
    atomic_store(&pool->done_sleeping, 1);
    probe pr;
    pr.at = 0;
    for (unsigned d; (d = atomic_load(&pool->done)) != n;) {
        mark_waiting(&pool->times[0], &pool->done, d);
        trade_or_sleep(pool, &pool->done, d, &pr);
    }
    mark_wanted(&pool->times[0]);
    atomic_store(&pool->done_sleeping, 0);
}

void brisk_pool_run(brisk_pool *pool, brisk_pool_fn fn, void *arg)
{
    pool->fn = fn;
    pool->arg = arg;
    self_index = 0;
    reset_claims(pool);
    atomic_store_explicit(&pool->next_item, 0, memory_order_relaxed);
    const int K = pool->active, checked = check_preemption(pool, 0);
    /* No trade while the threads are placed (idle workers may trade with the caller). */
    atomic_store(&pool->may_trade, 0);
    const int moving = lock_moves(pool);
    if (K == 1) {
        /* Alone, the caller goes wherever the scheduler finds room: pinned, it could be held
         * to the CPU that another program is busy on (a trade may have moved it there). */
        unpin_caller(pool);
        unlock_moves(pool);
        run_fn(pool, 0);
        return;
    }
    /* The spin for this job: short while any thread's last window saw it preempted. */
    const int shared = brisk_pool_contended(pool);
    if (checked)
        spread(pool, shared);
    if (pool->pinned && (!pool->caller_pinned || moving == 0)) {
        /* Back from a job alone, or a trade left the caller to be moved: it stays where it
         * runs, and the workers are pinned around it. */
        atomic_store_explicit(&pool->times[0].cpu, sched_getcpu(), memory_order_relaxed);
        if (pin_all(pool) != 0)
            unpin(pool);
    } else if (pool->pinned && moving > 0) {
        pin_thread(pool, moving); /* the worker a trade left to be moved (it sleeps) */
    }
    atomic_store_explicit(&pool->spin, shared ? SPIN_ROUNDS_SHARED : SPIN_ROUNDS,
                          memory_order_relaxed);
    const int spin = shared ? SPIN_ROUNDS_SHARED : SPIN_ROUNDS;
    /* Trading CPUs (trade_or_sleep): while a thread's last window saw its core shared (a
     * program at normal priority takes time slices from it; one at nice 19 hardly does), and
     * only with the thread that was pinned as the caller (trades move the caller too). */
    const int may_trade = (shared || atomic_load(&pool->test_trades)) && pool->pinned &&
                          pool->caller_pinned && K <= PROBE_MAX &&
                          pthread_equal(pool->caller, pthread_self());
    if (may_trade) {
        atomic_store_explicit(&pool->times[0].tid, (int)syscall(SYS_gettid),
                              memory_order_relaxed);
        atomic_store_explicit(&pool->probe_k, K, memory_order_relaxed);
    }
    unlock_moves(pool);
    atomic_store(&pool->may_trade, may_trade);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    pool->seq++;
    for (int t = 1; t < K; t++) { /* seq_cst: see wait_change */
        atomic_store(&pool->slots[t].post, pool->seq);
        if (atomic_load(&pool->slots[t].sleeping))
            futex_wake_all(&pool->slots[t].post);
    }
    run_fn(pool, 0);
    /* Waiting for the last worker to finish is part of the caller's job time. */
    const int64_t t0 = now_ns();
    wait_all_done(pool, (unsigned)K - 1, spin);
    const int64_t waited = now_ns() - t0;
    pool->times[0].job_ns += waited;
    pool->times[0].wait_ns += waited;
}

void brisk_pool_set_active(brisk_pool *pool, int K)
{
    BRISK_ASSERT(K >= 1 && K <= pool->T);
    pool->active = K;
    pool->barrier.n = (unsigned)K;
    brisk_pool_set_teams(pool, 1);
}

int brisk_pool_active(const brisk_pool *pool)
{
    return pool->active;
}

void brisk_pool_barrier(brisk_pool *pool)
{
    if (pool->active > 1)
        timed_wait(pool, &pool->barrier);
}

void brisk_pool_set_teams(brisk_pool *pool, int R)
{
    BRISK_ASSERT(R >= 1 && R <= pool->active);
    pool->n_teams = R;
    for (int r = 0; r < R; r++)
        pool->teams[r].n = (unsigned)brisk_pool_team_size(pool, r);
}

/* Whether loop g of n chunks has finished: its slot counts g's finished chunks; a slot
 * that has moved on to a later loop means g finished long ago (no thread begins loop
 * g + LOOP_RING before it knows g finished). */
static int loop_finished(team_claims *c, uint64_t g, long long n)
{
    const uint64_t v = atomic_load(&c->done[g % LOOP_RING]), vg = v >> 32;
    if (vg != g)
        return vg > g || n == 0;
    return (long long)(v & 0xffffffffu) >= n;
}

/* One more chunk of loop g finished (by the calling thread, which began g). */
static void chunk_done(team_claims *c, const thread_times *tt, uint64_t g)
{
    _Atomic uint64_t *slot = &c->done[g % LOOP_RING];
    uint64_t v = atomic_load(slot), next;
    do
        next = (v >> 32) == g ? v + 1 : (g << 32 | 1);
    while (!atomic_compare_exchange_weak(slot, &v, next));
    if ((long long)(next & 0xffffffffu) == tt->n_of[g % LOOP_RING] && atomic_load(&c->waiters)) {
        atomic_fetch_add(&c->finished, 1);
        futex_wake_all(&c->finished);
    }
}

/* Waits until every loop the calling thread has begun has finished. */
static void settle(brisk_pool *pool, team_claims *c, thread_times *tt)
{
    const int spin = atomic_load_explicit(&pool->spin, memory_order_relaxed);
    probe pr;
    pr.at = 0;
    for (uint64_t g = tt->settled + 1; g <= tt->gen; g++) {
        const long long n = tt->n_of[g % LOOP_RING];
        for (int i = 0; i < spin && !loop_finished(c, g, n); i++)
            cpu_relax();
        while (!loop_finished(c, g, n)) {
            /* seq_cst: either the finisher sees a waiter, or this sees the loop finished. */
            atomic_fetch_add(&c->waiters, 1);
            const unsigned f = atomic_load(&c->finished);
            if (!loop_finished(c, g, n)) {
                mark_waiting(tt, &c->finished, f);
                trade_or_sleep(pool, &c->finished, f, &pr);
                mark_wanted(tt);
            }
            atomic_fetch_sub(&c->waiters, 1);
        }
    }
    tt->settled = tt->gen;
}

/* Chunks [*lo, *lo + return) of a loop of n: member i's share, of nth members. */
static long long share_of(long long n, int i, int nth, long long *lo)
{
    *lo = n * i / nth;
    return n * (i + 1) / nth - *lo;
}

/* Whether the calling thread (at loop g) may set a share's word up for g, the word being at
 * loop wg < g with `at` of its chunks claimed: only once the share has run out in loop wg and
 * has no chunk in any loop between (a member that took no part in one, or has not begun it
 * yet, must not let the others skip it). Loops up to the thread's last settle have finished,
 * and so have run out. */
static int may_begin(const thread_times *tt, int i, int nth, uint64_t wg, uint64_t at,
                     uint64_t g)
{
    long long lo;
    if (wg > tt->settled && (long long)at < share_of(tt->n_of[wg % LOOP_RING], i, nth, &lo))
        return 0;
    for (uint64_t h = (wg > tt->settled ? wg : tt->settled) + 1; h < g; h++)
        if (share_of(tt->n_of[h % LOOP_RING], i, nth, &lo) > 0)
            return 0;
    return 1;
}

/* The next unclaimed chunk of member i's share of loop g (n chunks), or -1 when it has none
 * left. Waits while the share is still set up for an earlier loop that has chunks left. */
static long long take(const thread_times *tt, member_share *m, int i, int nth, uint64_t g,
                      long long n)
{
    long long lo;
    const long long len = share_of(n, i, nth, &lo);
    if (len <= 0)
        return -1;
    uint64_t cur = atomic_load_explicit(&m->word, memory_order_acquire);
    for (int waited = 0;;) {
        const uint64_t wg = cur >> 32, at = cur & 0xffffffffu;
        if (wg > g || (wg == g && (long long)at >= len))
            return -1; /* (a word set up for a later loop ran out in this one) */
        if (wg < g && !may_begin(tt, i, nth, wg, at, g)) { /* members behind still work */
            if (++waited % 64 == 0)
                sched_yield();
            else
                cpu_relax();
            cur = atomic_load_explicit(&m->word, memory_order_acquire);
            continue;
        }
        const uint64_t item = wg == g ? at : 0, next = g << 32 | (item + 1);
        if (atomic_compare_exchange_weak_explicit(&m->word, &cur, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return lo + (long long)item;
    }
}

/* Loops are numbered from 1 in every job (run_fn sets each thread's count to 0, and
 * reset_claims every share's word). A member claims the chunks of its own share first, in
 * order, then what is left of the others' shares, the next member's first: on a quiet machine
 * each thread runs the same chunks step after step (the data they touch stays in its core's
 * caches), and a thread whose core is shared runs fewer, the others taking the rest. A word
 * set up for a later loop than the caller's means that the caller's loop ran out there. */
long long brisk_pool_team_claim(brisk_pool *pool, int team, int op, long long n)
{
    const int w = self_index, R = pool->n_teams;
    thread_times *tt = &pool->times[w];
    team_claims *c = &pool->claims[team];
    move_later(pool);
    if (tt->held) { /* the chunk claimed last is finished */
        chunk_done(c, tt, tt->held);
        tt->held = 0;
    }
    if (op != BRISK_CLAIM_NEXT) {
        if (tt->gen + 1 - tt->settled >= LOOP_RING)
            settle(pool, c, tt);
        tt->gen++;
        tt->n_of[tt->gen % LOOP_RING] = n;
        if (op == BRISK_CLAIM_PASS)
            return -1;
    }
    const int nth = brisk_pool_team_size(pool, team), me = w / R;
    for (int k = 0; k < nth && n > 0; k++) {
        const int i = (me + k) % nth;
        const long long item = take(tt, &pool->shares[i * R + team], i, nth, tt->gen, n);
        if (item >= 0) {
            tt->held = tt->gen;
            return item;
        }
    }
    return -1;
}

long long brisk_pool_next_item(brisk_pool *pool, long long n)
{
    if (atomic_load_explicit(&pool->next_item, memory_order_relaxed) >= n)
        return -1;
    const long long k = atomic_fetch_add_explicit(&pool->next_item, 1, memory_order_relaxed);
    return k < n ? k : -1;
}

void brisk_pool_team_settle(brisk_pool *pool, int team)
{
    move_later(pool);
    const int64_t t0 = now_ns();
    thread_times *tt = &pool->times[self_index];
    settle(pool, &pool->claims[team], tt);
    tt->wait_ns += now_ns() - t0;
}

int brisk_pool_contended(const brisk_pool *pool)
{
    for (int t = 0; t < pool->active; t++)
        if (atomic_load_explicit(&pool->times[t].shared, memory_order_relaxed))
            return 1;
    return 0;
}

int brisk_pool_team_size(const brisk_pool *pool, int team)
{
    BRISK_ASSERT(team >= 0 && team < pool->n_teams);
    return (pool->active - team + pool->n_teams - 1) / pool->n_teams;
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
    for (int t = 0; t < pool->T; t++)
        pool->times[t].job_ns = pool->times[t].wait_ns = 0;
}

#define GOV_SECONDS 0.25
#define GOV_STEPS 3
/* The window let pass after a change of the number of threads is shorter than the first of a
 * run: moving threads costs milliseconds, starting them and faulting the workspaces in more,
 * and every second spent probing a worse number is lost. */
#define GOV_CHANGE_SECONDS 0.0625

void brisk_governor_init(brisk_governor *g)
{
    memset(g, 0, sizeof *g);
    g->down_wait = g->up_wait = 1;
    g->skip = 1; /* the first steps start the threads and fault the workspaces in */
}

void brisk_governor_restart(brisk_governor *g, int fixed)
{
    g->fixed = fixed;
    g->probing = 0;
    g->w_seconds = 0;
    g->w_samples = 0;
    g->w_steps = 0;
    g->skip = 1;
    g->changed = 0;
}

int brisk_governor_step(brisk_governor *g, int K, int T, int n, double seconds, int contended,
                        double now)
{
    if (T < 2 || g->fixed)
        return K;
    g->w_seconds += seconds;
    g->w_samples += n;
    if (++g->w_steps < GOV_STEPS ||
        g->w_seconds < (g->skip && g->changed ? GOV_CHANGE_SECONDS : GOV_SECONDS))
        return K;
    const double rate = (double)g->w_samples / g->w_seconds;
    g->w_seconds = 0;
    g->w_samples = 0;
    g->w_steps = 0;
    g->changed = 0;
    if (g->skip) {
        g->skip--;
        return K;
    }
    if (g->probing) {
        g->probing = 0;
        const int down = K < g->base_k;
        if (rate > g->base_rate * (down ? 1.05 : 1.02)) { /* keep K */
            g->next_up = now + (g->up_wait = 2);
            g->down_wait = 2;
            return K;
        }
        g->skip = g->changed = 1;
        if (down)
            g->next_down = now + (g->down_wait = fmin(2 * g->down_wait, 64));
        else
            g->next_up = now + (g->up_wait = fmin(2 * g->up_wait, 32));
        return g->base_k;
    }
    const int down = K > 1 && contended && now >= g->next_down;
    if (!down && !(K < T && now >= g->next_up))
        return K;
    g->probing = 1;
    g->base_k = K;
    g->base_rate = rate;
    g->skip = g->changed = 1;
    return down ? K - 1 : K + 1;
}

int brisk_cpu_times_parse(const char *line, unsigned long long *steal, unsigned long long *total)
{
    unsigned long long v[8];
    if (!line || strncmp(line, "cpu ", 4) ||
        sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        return -1;
    unsigned long long sum = 0;
    for (int i = 0; i < 8; i++)
        sum += v[i];
    *steal = v[7];
    *total = sum;
    return 0;
}

int brisk_cpu_times(unsigned long long *steal, unsigned long long *total)
{
    char line[512];
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    const int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    return ok ? brisk_cpu_times_parse(line, steal, total) : -1;
}

int brisk_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
