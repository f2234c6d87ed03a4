/* The worker pool and the data-parallel step: T = 1, 2, 3, 4, 8 and 16 threads give bitwise
 * identical parameters, m and v, which also agree with a plain serial implementation of the
 * same math written independently here (no BLAS, no shards, no slabs); and so do both
 * benchmark models at batches that are and are not multiples of the micro-batch, where
 * threads take whole shards, share shards, or both, and every matrix-kernel code path. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "test_util.h"

#include "brisk/data.h"
#include "brisk/gemm.h"
#include "brisk/model_test.h"
#include "brisk/pool.h"
#include "brisk/rng.h"
#include "brisk/trainer.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- the pool ---- */

typedef struct pool_check {
    brisk_pool *pool;
    atomic_int arrived[3];
    int seen_wrong;       /* written by any thread that sees a phase out of order */
    int slot[64];         /* slot[t] written by thread t before a barrier, read by all after */
} pool_check;

static void pool_check_job(void *arg, int t, int T)
{
    pool_check *c = arg;
    for (int phase = 0; phase < 3; phase++) {
        c->slot[t] = phase * 100 + t;
        atomic_fetch_add(&c->arrived[phase], 1);
        brisk_pool_barrier(c->pool);
        /* Everyone has arrived, and every slot write before the barrier is visible. */
        if (atomic_load(&c->arrived[phase]) != T)
            c->seen_wrong = 1;
        for (int u = 0; u < T; u++)
            if (c->slot[u] != phase * 100 + u)
                c->seen_wrong = 1;
        brisk_pool_barrier(c->pool);
    }
}

static void test_pool_barrier_and_jobs(void **state)
{
    (void)state;
    const int sizes[] = {1, 2, 3, 8};
    for (int k = 0; k < 4; k++) {
        pool_check c;
        memset(&c, 0, sizeof c);
        assert_int_equal(brisk_pool_create(sizes[k], &c.pool), BRISK_OK);
        assert_int_equal(brisk_pool_size(c.pool), sizes[k]);
        for (int rep = 0; rep < 200; rep++) {
            for (int p = 0; p < 3; p++)
                atomic_store(&c.arrived[p], 0);
            brisk_pool_run(c.pool, pool_check_job, &c);
            for (int p = 0; p < 3; p++)
                assert_int_equal(atomic_load(&c.arrived[p]), sizes[k]);
        }
        assert_int_equal(c.seen_wrong, 0);
        brisk_pool_destroy(c.pool);
    }
    brisk_pool *p;
    assert_int_equal(brisk_pool_create(0, &p), BRISK_EINVAL);
    assert_true(brisk_cpu_count() >= 1);
}

/* Claimed loops: a job of loops of varying sizes (some empty, some long runs of loops with
 * no barrier between them, more than the pool tracks at once), in which members sleep now
 * and then, so that some lag loops behind; one member passes some loops. Every chunk must
 * run exactly once, and after each settle every chunk of the loops before it must be done
 * and its write visible. */
#define CLAIM_LOOPS 200

typedef struct claim_check {
    brisk_pool *pool;
    atomic_int runs[CLAIM_LOOPS][40];
    int value[CLAIM_LOOPS][40];
    int seen_wrong;
} claim_check;

static long long claim_fn(void *ctx, int op, long long n)
{
    return brisk_pool_team_claim(((claim_check *)ctx)->pool, 0, op, n);
}

static void settle_fn(void *ctx)
{
    brisk_pool_team_settle(((claim_check *)ctx)->pool, 0);
}

static int loop_size(int l)
{
    return l % 7 == 3 ? 0 : 1 + (l * 13) % 40;
}

static void claim_job(void *arg, int t, int T)
{
    claim_check *c = arg;
    const brisk_team team = {.ith = t, .nth = T, .barrier = settle_fn, .ctx = c,
                             .claim = claim_fn};
    int settled_to = 0;
    for (int l = 0; l < CLAIM_LOOPS; l++) {
        const int n = loop_size(l);
        brisk_share sh;
        if (t == 1 && l % 5 == 1) {
            brisk_share_pass(&team, n, 1);
        } else {
            brisk_share_begin(&sh, &team, n, 1);
            for (long long a, b; brisk_share_next(&sh, &a, &b);) {
                atomic_fetch_add(&c->runs[l][a], 1);
                c->value[l][a] = l * 100 + (int)a;
                if ((l + a + t) % 17 == 0)
                    nanosleep(&(struct timespec){0, 50000}, NULL); /* this member lags */
            }
        }
        /* Barriers after some loops only; loops 60..159 run with none at all. */
        if (l % 4 == 3 && (l < 60 || l >= 160)) {
            brisk_team_barrier(&team);
            for (int k = settled_to; k <= l; k++)
                for (int a = 0; a < loop_size(k); a++)
                    if (c->value[k][a] != k * 100 + a)
                        c->seen_wrong = 1;
            settled_to = l + 1;
        }
    }
}

static void test_pool_claimed_loops(void **state)
{
    (void)state;
    const int sizes[] = {2, 3, 8};
    for (int k = 0; k < 3; k++) {
        for (int rep = 0; rep < 3; rep++) {
            claim_check *c = calloc(1, sizeof *c);
            assert_non_null(c);
            assert_int_equal(brisk_pool_create(sizes[k], &c->pool), BRISK_OK);
            brisk_pool_set_teams(c->pool, 1);
            brisk_pool_run(c->pool, claim_job, c);
            assert_int_equal(c->seen_wrong, 0);
            for (int l = 0; l < CLAIM_LOOPS; l++)
                for (int a = 0; a < 40; a++)
                    assert_int_equal(atomic_load(&c->runs[l][a]), a < loop_size(l));
            brisk_pool_destroy(c->pool);
            free(c);
        }
    }
}

/* Which chunks a member claims: its own share of the loop first, in order, then the rest of
 * the other's. Two members, a loop of 10 chunks (shares 0-4 and 5-9); one member claims while
 * the other waits, by flags, so the order is fixed. Loop 1: member 0 takes 0..4, then 5 of
 * member 1's share; member 1 then takes 6..9. Loop 2, the other way round: member 1 takes
 * 5..9, then 0; member 0 takes 1..4. */
typedef struct order_check {
    brisk_pool *pool;
    atomic_int stage;
    long long got[2][2][12]; /* [loop][member][k] */
    int n_got[2][2];
} order_check;

static long long order_claim(void *ctx, int op, long long n)
{
    return brisk_pool_team_claim(((order_check *)ctx)->pool, 0, op, n);
}

static void order_settle(void *ctx)
{
    brisk_pool_team_settle(((order_check *)ctx)->pool, 0);
}

static void order_wait(order_check *c, int stage)
{
    while (atomic_load(&c->stage) < stage)
        sched_yield();
}

/* Member `m` of loop l: claims `first` chunks, lets the other go on (stage s + 1), and takes
 * the rest once the other has run out (stage s + 2). */
static void order_claims(order_check *c, const brisk_team *team, int l, int first, int s)
{
    brisk_share sh;
    brisk_share_begin(&sh, team, 10, 1);
    const int m = team->ith;
    for (long long a, b; c->n_got[l][m] < first && brisk_share_next(&sh, &a, &b);)
        c->got[l][m][c->n_got[l][m]++] = a;
    atomic_store(&c->stage, s + 1);
    order_wait(c, s + 2);
    for (long long a, b; brisk_share_next(&sh, &a, &b);)
        c->got[l][m][c->n_got[l][m]++] = a;
}

static void order_others(order_check *c, const brisk_team *team, int l, int s)
{
    order_wait(c, s + 1);
    brisk_share sh;
    brisk_share_begin(&sh, team, 10, 1);
    const int m = team->ith;
    for (long long a, b; brisk_share_next(&sh, &a, &b);)
        c->got[l][m][c->n_got[l][m]++] = a;
    atomic_store(&c->stage, s + 2);
}

static void order_job(void *arg, int t, int T)
{
    order_check *c = arg;
    const brisk_team team = {.ith = t, .nth = T, .barrier = order_settle, .ctx = c,
                             .claim = order_claim};
    if (t == 0) /* loop 1: member 0 first, 6 chunks */
        order_claims(c, &team, 0, 6, 0);
    else
        order_others(c, &team, 0, 0);
    if (t == 1) /* loop 2: member 1 first */
        order_claims(c, &team, 1, 6, 2);
    else
        order_others(c, &team, 1, 2);
    brisk_team_barrier(&team);
}

static void test_pool_claims_own_share_first(void **state)
{
    (void)state;
    order_check *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(brisk_pool_create(2, &c->pool), BRISK_OK);
    brisk_pool_set_teams(c->pool, 1);
    brisk_pool_run(c->pool, order_job, c);
    const long long want[2][2][6] = {{{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9}},
                                     {{1, 2, 3, 4}, {5, 6, 7, 8, 9, 0}}};
    const int n_want[2][2] = {{6, 4}, {4, 6}};
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < 2; m++) {
            assert_int_equal(c->n_got[l][m], n_want[l][m]);
            for (int k = 0; k < n_want[l][m]; k++)
                assert_int_equal(c->got[l][m][k], want[l][m][k]);
        }
    brisk_pool_destroy(c->pool);
    free(c);
}

/* The governor (brisk_governor_step) on made-up windows of 3 steps of 0.1 s: it lets the
 * first window and the one after each change pass unmeasured (they hold the change's own
 * cost), and keeps the faster number of threads. */
static int gov_window(brisk_governor *g, int K, int T, double rate, int contended, double *now)
{
    int k = K;
    for (int s = 0; s < 3; s++) {
        *now += 0.1;
        k = brisk_governor_step(g, K, T, (int)(rate * 0.1), 0.1, contended, *now);
        if (s < 2)
            assert_int_equal(k, K); /* no decision inside a window */
    }
    return k;
}

static void test_governor(void **state)
{
    (void)state;
    brisk_governor g;
    double now = 100;
    brisk_governor_init(&g);
    /* The first window, slow and contended (threads still starting): not a reason to probe. */
    assert_int_equal(gov_window(&g, 2, 2, 500, 1, &now), 2);
    /* Contended: probe 1 thread; its first window (fast: one thread fewer to start) passes,
     * the next, slower than 2 threads were, sends it back to 2. */
    assert_int_equal(gov_window(&g, 2, 2, 1000, 1, &now), 1);
    assert_int_equal(gov_window(&g, 1, 2, 5000, 0, &now), 1);
    assert_int_equal(gov_window(&g, 1, 2, 900, 0, &now), 2);
    /* Back at 2, the window after the change passes; then it waits (down_wait 2 s) before it
     * probes again. */
    assert_int_equal(gov_window(&g, 2, 2, 100, 1, &now), 2);
    assert_int_equal(gov_window(&g, 2, 2, 1000, 1, &now), 2);
    now += 2;
    assert_int_equal(gov_window(&g, 2, 2, 1000, 1, &now), 1);
    assert_int_equal(gov_window(&g, 1, 2, 1000, 0, &now), 1); /* passes */
    /* 1 thread 10% faster: it stays at 1 (a probe down must win by 5%). */
    assert_int_equal(gov_window(&g, 1, 2, 1100, 0, &now), 1);
    /* Not contended: it probes up after up_wait (2 s), and keeps 2 if 2% faster. */
    assert_int_equal(gov_window(&g, 1, 2, 1100, 0, &now), 1);
    now += 2;
    assert_int_equal(gov_window(&g, 1, 2, 1100, 0, &now), 2);
    assert_int_equal(gov_window(&g, 2, 2, 100, 0, &now), 2); /* passes */
    assert_int_equal(gov_window(&g, 2, 2, 1200, 0, &now), 2);
    /* Fixed: no decision at all. */
    brisk_governor_restart(&g, 1);
    now += 100;
    assert_int_equal(gov_window(&g, 2, 2, 10, 1, &now), 2);
    assert_int_equal(gov_window(&g, 2, 2, 10, 1, &now), 2);
    /* Steps of 30 ms: the first window of a run lasts 0.25 s (9 steps), a measured one too,
     * but the one let pass after a change only 3 steps (62.5 ms at least): a probe of 1
     * thread that loses is over after 3 + 9 steps. */
    brisk_governor_init(&g);
    int k = 2, steps = 0;
    while (k == 2 && steps < 100) {
        now += 0.03;
        k = brisk_governor_step(&g, 2, 2, 30, 0.03, 1, now);
        steps++;
    }
    assert_int_equal(k, 1);
    assert_int_equal(steps, 18);
    for (steps = 0; k == 1 && steps < 100; steps++) {
        now += 0.03;
        k = brisk_governor_step(&g, 1, 2, 20, 0.03, 0, now);
    }
    assert_int_equal(k, 2);
    assert_int_equal(steps, 12);
    /* One thread in the pool: nothing to choose. */
    brisk_governor_init(&g);
    assert_int_equal(gov_window(&g, 1, 1, 10, 1, &now), 1);
    assert_int_equal(gov_window(&g, 1, 1, 10, 1, &now), 1);
}

/* brisk_pool_set_active: jobs see K threads and the others do not run; the barrier waits for
 * K; a job's items (brisk_pool_next_item) each go to one thread. */
typedef struct active_check {
    brisk_pool *pool;
    atomic_int calls[16];
    atomic_int items[1000];
    int seen_T[16];
} active_check;

static void active_job(void *arg, int t, int T)
{
    active_check *c = arg;
    atomic_fetch_add(&c->calls[t], 1);
    c->seen_T[t] = T;
    brisk_pool_barrier(c->pool);
    for (long long i; (i = brisk_pool_next_item(c->pool, 1000)) >= 0;)
        atomic_fetch_add(&c->items[i], 1);
}

static void test_pool_threads_in_use(void **state)
{
    (void)state;
    active_check c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_pool_create(6, &c.pool), BRISK_OK);
    const int ks[] = {6, 1, 3, 6, 2, 5, 1, 6};
    for (int r = 0; r < 8; r++) {
        brisk_pool_set_active(c.pool, ks[r]);
        assert_int_equal(brisk_pool_active(c.pool), ks[r]);
        for (int t = 0; t < 16; t++)
            atomic_store(&c.calls[t], 0);
        for (int i = 0; i < 1000; i++)
            atomic_store(&c.items[i], 0);
        brisk_pool_run(c.pool, active_job, &c);
        for (int t = 0; t < 6; t++) {
            assert_int_equal(atomic_load(&c.calls[t]), t < ks[r]);
            if (t < ks[r])
                assert_int_equal(c.seen_T[t], ks[r]);
        }
        for (int i = 0; i < 1000; i++)
            assert_int_equal(atomic_load(&c.items[i]), 1);
    }
    brisk_pool_destroy(c.pool); /* parked workers stop too */
}

/* Trading CPUs: while the pool's threads are pinned (as the pool pins them beside a busy
 * program), a thread that waits for another that is ready to run but off its CPU trades CPUs
 * with it. Thread 1 keeps off its CPU without waiting for the pool, before a barrier and then
 * inside the chunk it claimed while thread 0 settles the loop: it naps, which the pool counts
 * as held only when a test says so (brisk_pool_test_trades). */
typedef struct trade_check {
    brisk_pool *pool;
    atomic_int claimed;     /* thread 1 holds its chunk */
    long long trades[3];    /* brisk_pool_trades before, after the barrier, after the settle */
    long long chunk[2];     /* the chunk each thread got */
} trade_check;

static void nap_ms(int ms)
{
    nanosleep(&(struct timespec){0, ms * 1000000L}, NULL);
}

static void active_job_one(void *arg, int t, int T)
{
    (void)arg;
    assert_int_equal(t, 0);
    assert_int_equal(T, 1);
}

static void trade_job(void *arg, int t, int T)
{
    trade_check *c = arg;
    assert_int_equal(T, 2);
    if (t == 0)
        c->trades[0] = brisk_pool_trades(c->pool);
    if (t == 1)
        nap_ms(30);
    brisk_pool_barrier(c->pool);
    if (t == 0) {
        c->trades[1] = brisk_pool_trades(c->pool);
        while (!atomic_load(&c->claimed))
            sched_yield();
    }
    c->chunk[t] = brisk_pool_team_claim(c->pool, 0, BRISK_CLAIM_BEGIN, 2);
    if (t == 1) {
        atomic_store(&c->claimed, 1);
        nap_ms(30);
    }
    assert_int_equal(brisk_pool_team_claim(c->pool, 0, BRISK_CLAIM_NEXT, 2), -1);
    brisk_pool_team_settle(c->pool, 0);
    if (t == 0)
        c->trades[2] = brisk_pool_trades(c->pool);
}

static int only_cpu(const cpu_set_t *set)
{
    if (CPU_COUNT(set) != 1)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set))
            return c;
    return -1;
}

/* The state that tells a thread held off its CPU (R) from one asleep in the kernel. */
static void *nap_thread(void *arg)
{
    atomic_store((atomic_int *)arg, (int)syscall(SYS_gettid));
    nap_ms(300);
    return NULL;
}

typedef struct spinner_arg {
    atomic_int tid, stop;
} spinner_arg;

static void *spin_thread(void *arg)
{
    spinner_arg *a = arg;
    atomic_store(&a->tid, (int)syscall(SYS_gettid));
    while (!atomic_load(&a->stop))
        ;
    return NULL;
}

static void test_thread_runnable(void **state)
{
    (void)state;
    assert_int_equal(brisk_thread_runnable((int)syscall(SYS_gettid)), 1);
    atomic_int tid = 0;
    spinner_arg sp;
    atomic_init(&sp.tid, 0);
    atomic_init(&sp.stop, 0);
    pthread_t napper, spinner;
    assert_int_equal(pthread_create(&napper, NULL, nap_thread, &tid), 0);
    assert_int_equal(pthread_create(&spinner, NULL, spin_thread, &sp), 0);
    while (!atomic_load(&tid) || !atomic_load(&sp.tid))
        sched_yield();
    nap_ms(50); /* well inside the napper's 300 ms */
    assert_int_equal(brisk_thread_runnable(atomic_load(&tid)), 0);
    assert_int_equal(brisk_thread_runnable(atomic_load(&sp.tid)), 1); /* running or ready */
    pthread_join(napper, NULL);
    assert_int_equal(brisk_thread_runnable(atomic_load(&tid)), 0); /* gone */
    assert_int_equal(brisk_thread_runnable(0), 0);
    atomic_store(&sp.stop, 1);
    pthread_join(spinner, NULL);
}

static void test_pool_trades_cpus_with_a_thread_off_its_own(void **state)
{
    (void)state;
    cpu_set_t mine;
    assert_int_equal(sched_getaffinity(0, sizeof mine, &mine), 0);
    if (CPU_COUNT(&mine) < 2) {
        print_message("this process may use one CPU: two threads cannot be pinned apart\n");
        skip();
    }
    trade_check c;
    memset(&c, 0, sizeof c);
    assert_int_equal(brisk_pool_create(2, &c.pool), BRISK_OK);
    brisk_pool_set_teams(c.pool, 1);
    /* Not pinned (a quiet machine): the pool never trades, however long a thread naps. */
    brisk_pool_run(c.pool, trade_job, &c);
    assert_int_equal(c.trades[2], 0);
    assert_int_equal(brisk_pool_pinned_cpu(c.pool, 0), -1);
    assert_int_equal(c.chunk[0], 0);
    assert_int_equal(c.chunk[1], 1);

    assert_int_equal(brisk_pool_pin(c.pool), 0);
    const int a = brisk_pool_pinned_cpu(c.pool, 0), b = brisk_pool_pinned_cpu(c.pool, 1);
    assert_true(a >= 0 && b >= 0 && a != b);
    cpu_set_t now;
    assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
    assert_int_equal(only_cpu(&now), a);
    /* The pool trades only while a core is shared, and only with a thread in state R (not
     * asleep in the kernel: test_thread_runnable). With brisk_pool_test_trades on, it trades
     * anyway and counts a nap as held (a stand-in for another program's time slice, which a
     * test cannot summon): one trade at the barrier, one more at the settle, and the threads
     * are back where they were. */
    brisk_pool_test_trades(c.pool, 1);
    atomic_store(&c.claimed, 0);
    brisk_pool_run(c.pool, trade_job, &c);
    brisk_pool_test_trades(c.pool, 0);
    assert_true(c.trades[1] - c.trades[0] >= 1);
    assert_true(c.trades[2] - c.trades[1] >= 1);
    /* A worker still looks for a held caller for 10 ms after its job; let it finish (on a busy
     * machine it may trade once more, which keeps what is checked below). */
    nap_ms(30);
    const int a2 = brisk_pool_pinned_cpu(c.pool, 0), b2 = brisk_pool_pinned_cpu(c.pool, 1);
    assert_true((a2 == a && b2 == b) || (a2 == b && b2 == a));
    /* The caller was moved (by the worker) where its pin says. */
    assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
    assert_int_equal(only_cpu(&now), a2);
    assert_int_equal(c.chunk[0], 0);
    assert_int_equal(c.chunk[1], 1);

    /* Alone, the caller is given back to the scheduler, with its own affinity (it may have
     * been traded onto the CPU another program is busy on); with its worker again, it is
     * pinned again, on a CPU of its own. */
    brisk_pool_set_active(c.pool, 1);
    brisk_pool_run(c.pool, active_job_one, NULL);
    assert_int_equal(brisk_pool_pinned_cpu(c.pool, 0), -1);
    assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
    assert_true(CPU_EQUAL(&now, &mine));
    brisk_pool_set_active(c.pool, 2);
    brisk_pool_set_teams(c.pool, 1);
    atomic_store(&c.claimed, 0);
    brisk_pool_run(c.pool, trade_job, &c);
    nap_ms(30);
    const int a3 = brisk_pool_pinned_cpu(c.pool, 0), b3 = brisk_pool_pinned_cpu(c.pool, 1);
    assert_true(a3 >= 0 && b3 >= 0 && a3 != b3);
    assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
    assert_int_equal(only_cpu(&now), a3);
    brisk_pool_destroy(c.pool);
    /* Destroyed, the pool gives the caller its own affinity back. */
    assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
    assert_true(CPU_EQUAL(&now, &mine));
}

/* ---- the serial reference ---- */

#define D 20
#define H1 16
#define H2 12
#define C 5
#define B 48
#define MB 8
#define STEPS 20
#define CLIP 0.5f
#define LR 3e-3f

typedef struct ref_mlp {
    float w1[H1][D], b1[H1], w2[H2][H1], b2[H2], w3[C][H2], b3[C];
} ref_mlp;

/* Copies between the trainer's slab layout and the reference struct. */
static void slab_to_ref(const brisk_model *m, const float *slab, ref_mlp *r)
{
    float *dst[6] = {&r->w1[0][0], r->b1, &r->w2[0][0], r->b2, &r->w3[0][0], r->b3};
    for (int t = 0; t < 6; t++) {
        const brisk_tensor_view *v = brisk_model_tensor(m, t);
        memcpy(dst[t], slab + v->offset, sizeof(float) * (size_t)v->rows * (size_t)v->cols);
    }
}

/* Gradient of the batch-mean softmax cross-entropy of a tanh MLP, in plain loops. */
static void ref_gradient(const ref_mlp *p, const float x[B][D], const uint8_t *y, ref_mlp *g)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < B; i++) {
        float h1[H1], h2[H2], z[C], d3[C], d2[H2], d1[H1];
        for (int a = 0; a < H1; a++) {
            float s = p->b1[a];
            for (int k = 0; k < D; k++)
                s += p->w1[a][k] * x[i][k];
            h1[a] = tanhf(s);
        }
        for (int a = 0; a < H2; a++) {
            float s = p->b2[a];
            for (int k = 0; k < H1; k++)
                s += p->w2[a][k] * h1[k];
            h2[a] = tanhf(s);
        }
        float zmax = -INFINITY, sum = 0;
        for (int a = 0; a < C; a++) {
            float s = p->b3[a];
            for (int k = 0; k < H2; k++)
                s += p->w3[a][k] * h2[k];
            z[a] = s;
            zmax = s > zmax ? s : zmax;
        }
        for (int a = 0; a < C; a++)
            sum += expf(z[a] - zmax);
        for (int a = 0; a < C; a++)
            d3[a] = (expf(z[a] - zmax) / sum - (a == y[i])) / B;
        for (int k = 0; k < H2; k++) {
            float s = 0;
            for (int a = 0; a < C; a++) {
                g->w3[a][k] += d3[a] * h2[k];
                s += d3[a] * p->w3[a][k];
            }
            d2[k] = s * (1 - h2[k] * h2[k]);
        }
        for (int a = 0; a < C; a++)
            g->b3[a] += d3[a];
        for (int k = 0; k < H1; k++) {
            float s = 0;
            for (int a = 0; a < H2; a++) {
                g->w2[a][k] += d2[a] * h1[k];
                s += d2[a] * p->w2[a][k];
            }
            d1[k] = s * (1 - h1[k] * h1[k]);
        }
        for (int a = 0; a < H2; a++)
            g->b2[a] += d2[a];
        for (int a = 0; a < H1; a++) {
            for (int k = 0; k < D; k++)
                g->w1[a][k] += d1[a] * x[i][k];
            g->b1[a] += d1[a];
        }
    }
}

/* Adam (Kingma & Ba) with clipping by global norm, over the struct as a flat array. */
static void ref_adam(ref_mlp *p, ref_mlp *m, ref_mlp *v, const ref_mlp *g, int step)
{
    const int n = (int)(sizeof(ref_mlp) / sizeof(float));
    float *pp = (float *)p, *mm = (float *)m, *vv = (float *)v;
    const float *gg = (const float *)g;
    double sq = 0;
    for (int i = 0; i < n; i++)
        sq += (double)gg[i] * gg[i];
    const double norm = sqrt(sq);
    const float clip = norm > CLIP ? (float)(CLIP / (norm + 1e-6)) : 1.0f;
    const float bc1 = 1.0f - powf(0.9f, (float)step), bc2 = 1.0f - powf(0.999f, (float)step);
    for (int i = 0; i < n; i++) {
        const float gi = gg[i] * clip;
        mm[i] = 0.9f * mm[i] + 0.1f * gi;
        vv[i] = 0.999f * vv[i] + 0.001f * gi * gi;
        pp[i] -= LR * (mm[i] / bc1) / (sqrtf(vv[i] / bc2) + 1e-8f);
    }
}

/* Relative agreement as a vector, ||got - ref|| / ||ref|| <= 1e-5: elementwise ratios are
 * meaningless for entries near zero, where Adam's normalised step turns float rounding of a
 * tiny gradient into a visible relative change. */
static void assert_ref_close(const brisk_model *model, const float *slab, const ref_mlp *r,
                             const char *what)
{
    ref_mlp got;
    slab_to_ref(model, slab, &got);
    const float *a = (const float *)&got, *b = (const float *)r;
    double diff = 0, ref = 0, worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < sizeof(ref_mlp) / sizeof(float); i++) {
        const double d = fabs((double)a[i] - b[i]);
        diff += d * d;
        ref += (double)b[i] * b[i];
        if (d > worst) {
            worst = d;
            worst_i = i;
        }
    }
    const double rel = sqrt(diff) / sqrt(ref);
    print_message("%s: relative difference to the serial reference %.3g (largest at [%zu]: "
                  "%.9g vs %.9g)\n", what, rel, worst_i, (double)a[worst_i], (double)b[worst_i]);
    assert_true(ref > 0);
    assert_true(rel <= 1e-5);
}

static void test_threads_bitwise_identical_and_match_reference(void **state)
{
    (void)state;
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(B * 4, D, C, 70.0f, 99, 0, &ds), BRISK_OK);
    int32_t idx[B * 4];
    for (int i = 0; i < B * 4; i++)
        idx[i] = i;
    const float mean = 127.0f, std = 64.0f;

    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_mlp(&cfg.model, "20-16-12-5", BRISK_ACT_TANH), BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, LR, 0, 0, 0, 0, 0};
    cfg.clip_norm = CLIP;
    cfg.batch = B;
    cfg.micro_batch = MB;
    cfg.seed = 5;

    const int threads[] = {1, 2, 3, 4, 8, 16};
    enum { NT = 6 };
    brisk_trainer *tr[NT];
    int clipped = 0;
    for (int k = 0; k < NT; k++) {
        cfg.threads = threads[k];
        assert_int_equal(brisk_trainer_create(&cfg, &tr[k]), BRISK_OK);
        assert_int_equal(brisk_trainer_set_norm(tr[k], &mean, &std, 1), BRISK_OK);
        assert_int_equal(brisk_trainer_threads(tr[k]), threads[k]);
        assert_int_equal(brisk_trainer_num_shards(tr[k], B), B / MB);
    }
    /* The serial reference starts from the same initial parameters. */
    const brisk_model *model = brisk_trainer_model(tr[0]);
    ref_mlp p, m, v, g;
    memset(&m, 0, sizeof m);
    memset(&v, 0, sizeof v);
    slab_to_ref(model, brisk_trainer_params(tr[0]), &p);

    for (int s = 0; s < STEPS; s++) {
        const int32_t *bidx = idx + (s % 4) * B;
        brisk_step_stats st[NT];
        for (int k = 0; k < NT; k++)
            assert_int_equal(brisk_trainer_step(tr[k], &ds, bidx, B, &st[k]), BRISK_OK);
        for (int k = 1; k < NT; k++) {
            assert_true(st[k].grad_norm == st[0].grad_norm);
            assert_true(st[k].metrics.loss_sum == st[0].metrics.loss_sum);
            assert_int_equal(st[k].metrics.correct, st[0].metrics.correct);
        }
        clipped += st[0].grad_norm > CLIP;
        float x[B][D];
        uint8_t y[B];
        brisk_dataset_gather(&ds, bidx, B, &mean, &std, 1, &x[0][0], y);
        ref_gradient(&p, (const float(*)[D])x, y, &g);
        ref_adam(&p, &m, &v, &g, s + 1);
    }
    assert_true(clipped > 0); /* clipping was exercised */
    const size_t bytes = brisk_model_slab_len(model) * sizeof(float);
    for (int k = 1; k < NT; k++) {
        assert_memory_equal(brisk_trainer_params(tr[k]), brisk_trainer_params(tr[0]), bytes);
        assert_memory_equal(brisk_trainer_opt_m(tr[k]), brisk_trainer_opt_m(tr[0]), bytes);
        assert_memory_equal(brisk_trainer_opt_v(tr[k]), brisk_trainer_opt_v(tr[0]), bytes);
    }
    assert_ref_close(model, brisk_trainer_params(tr[0]), &p, "params");
    assert_ref_close(model, brisk_trainer_opt_m(tr[0]), &m, "m");
    assert_ref_close(model, brisk_trainer_opt_v(tr[0]), &v, "v");

    /* Evaluation is T-independent too. */
    brisk_metrics e0, ek;
    assert_int_equal(brisk_trainer_evaluate(tr[0], &ds, idx, B * 4, &e0), BRISK_OK);
    for (int k = 1; k < NT; k++) {
        assert_int_equal(brisk_trainer_evaluate(tr[k], &ds, idx, B * 4, &ek), BRISK_OK);
        assert_true(ek.loss_sum == e0.loss_sum);
        assert_int_equal(ek.correct, e0.correct);
    }
    for (int k = 0; k < NT; k++)
        brisk_trainer_destroy(tr[k]);
    brisk_dataset_free(&ds);
}

/* ---- the benchmark models, any T, any code path ---- */

#ifdef __SANITIZE_THREAD__
enum { BIG_STEPS = 1 }; /* ThreadSanitizer runs these products some 20 times slower */
#else
enum { BIG_STEPS = 2 };
#endif

/* A classifier of the layer list on input, trained by Adam at a constant 1e-3. */
static brisk_trainer_config base_config(const char *widths, brisk_shape input, int micro,
                                        uint64_t seed)
{
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_set(&cfg.model, widths, input), BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
    cfg.micro_batch = micro;
    cfg.seed = seed;
    return cfg;
}

/* Data for two batches of nb: token data (windows of a random stream drawn with `seed`; the
 * stream in *stream, to free) for a sequence input, else a synthetic set (*stream NULL); and
 * the indices of its 2 nb samples, not in storage order. */
static void make_data(brisk_shape input, int d_in, int classes, int nb, uint64_t seed,
                      brisk_dataset *ds, int32_t **stream, int32_t **idx)
{
    *stream = NULL;
    if (input.rank == 2) {
        const int64_t n_tok = 2 * (int64_t)nb * d_in + 1;
        int32_t *st = malloc(sizeof *st * (size_t)n_tok);
        assert_non_null(st);
        for (int64_t i = 0; i < n_tok; i++)
            st[i] = (int32_t)(brisk_rng_u64(seed, 1, 2, (uint64_t)i) % (uint64_t)classes);
        assert_int_equal(brisk_dataset_tokens(st, n_tok, d_in, classes, ds), BRISK_OK);
        *stream = st;
    } else {
        assert_int_equal(brisk_dataset_synthetic(2 * nb, d_in, classes, 50.0f, 8, 0, ds),
                         BRISK_OK);
    }
    int32_t *ix = malloc(sizeof(int32_t) * 2 * (size_t)nb);
    assert_non_null(ix);
    for (int i = 0; i < 2 * nb; i++)
        ix[i] = (2 * nb - 1 - i) * 7 % (2 * nb);
    *idx = ix;
}

/* The augmentation and moving average check_model_any_threads trains with (none unless a
 * test sets them). */
static brisk_augment check_augment;
static double check_ema, check_mixup;
static brisk_gemm_precision check_precision;

/* Trains `steps` steps at each batch size on a copy of the model per thread count and checks
 * that parameters, m and v and every step's loss and norm are bitwise the same for all. Step
 * s is in epoch s (the augmentation's key). */
static void check_model_any_threads(const char *widths, brisk_shape input, const int *batches,
                                    int n_batches, int micro, int steps)
{
    brisk_trainer_config cfg = base_config(widths, input, micro, 3);
    cfg.augment = check_augment;
    cfg.ema_decay = check_ema;
    cfg.mixup = check_mixup;
    cfg.model.precision = check_precision;
    int max_batch = 0;
    for (int b = 0; b < n_batches; b++)
        max_batch = batches[b] > max_batch ? batches[b] : max_batch;
    cfg.batch = max_batch;
    brisk_dataset ds;
    brisk_model *probe;
    assert_int_equal(brisk_model_create(&cfg.model, &probe), BRISK_OK);
    const int d_in = (int)brisk_shape_size(input), classes = brisk_model_outputs(probe);
    brisk_model_destroy(probe);
    const int seq = input.rank == 2;
    int32_t *stream, *idx;
    make_data(input, d_in, classes, max_batch, 8, &ds, &stream, &idx);
    const int threads[] = {1, 2, 3, 4, 8, 16};
    enum { NT = 6 };
    brisk_trainer *tr[NT];
    const float mean = 120.0f, std = 70.0f;
    for (int k = 0; k < NT; k++) {
        cfg.threads = threads[k];
        assert_int_equal(brisk_trainer_create(&cfg, &tr[k]), BRISK_OK);
        if (!seq)
            assert_int_equal(brisk_trainer_set_norm(tr[k], &mean, &std, 1), BRISK_OK);
    }
    for (int b = 0; b < n_batches; b++) {
        char plan[256];
        brisk_trainer_describe_plan(tr[NT - 1], batches[b], plan, sizeof plan);
        print_message("%s, batch %d, 16 threads: %s\n", widths, batches[b], plan);
        for (int s = 0; s < steps; s++) {
            brisk_step_stats st[NT];
            for (int k = 0; k < NT; k++) {
                brisk_trainer_set_epoch(tr[k], (int64_t)s);
                assert_int_equal(brisk_trainer_step(tr[k], &ds, idx + s % 2 * batches[b],
                                                    batches[b], &st[k]),
                                 BRISK_OK);
            }
            for (int k = 1; k < NT; k++) {
                assert_true(st[k].grad_norm == st[0].grad_norm);
                assert_true(st[k].metrics.loss_sum == st[0].metrics.loss_sum);
            }
        }
    }
    const size_t bytes = brisk_model_slab_len(brisk_trainer_model(tr[0])) * sizeof(float);
    const size_t bbytes = brisk_model_buffers_len(brisk_trainer_model(tr[0])) * sizeof(float);
    for (int k = 1; k < NT; k++) {
        assert_memory_equal(brisk_trainer_params(tr[k]), brisk_trainer_params(tr[0]), bytes);
        assert_memory_equal(brisk_trainer_opt_m(tr[k]), brisk_trainer_opt_m(tr[0]), bytes);
        assert_memory_equal(brisk_trainer_opt_v(tr[k]), brisk_trainer_opt_v(tr[0]), bytes);
        if (bbytes) /* running statistics */
            assert_memory_equal(brisk_trainer_buffers(tr[k]), brisk_trainer_buffers(tr[0]),
                                bbytes);
        if (check_ema) {
            assert_memory_equal(brisk_trainer_ema_params(tr[k]), brisk_trainer_ema_params(tr[0]),
                                bytes);
            if (bbytes)
                assert_memory_equal(brisk_trainer_ema_buffers(tr[k]),
                                    brisk_trainer_ema_buffers(tr[0]), bbytes);
        }
    }
    /* Monitoring (activation statistics, predictions) is T-independent too. */
    const int L = brisk_model_num_layers(brisk_trainer_model(tr[0]));
    double mean0[BRISK_MAX_LAYERS], std0[BRISK_MAX_LAYERS], mean1[BRISK_MAX_LAYERS],
        std1[BRISK_MAX_LAYERS];
    int32_t *pred0 = malloc(sizeof(int32_t) * 2 * (size_t)max_batch);
    int32_t *pred1 = malloc(sizeof(int32_t) * 2 * (size_t)max_batch);
    assert_true(pred0 && pred1);
    brisk_metrics m0, m1;
    assert_int_equal(brisk_trainer_inspect(tr[0], &ds, idx, max_batch + 7, &m0,
                                           seq ? NULL : pred0, mean0, std0), BRISK_OK);
    for (int k = 1; k < NT; k++) {
        assert_int_equal(brisk_trainer_inspect(tr[k], &ds, idx, max_batch + 7, &m1,
                                               seq ? NULL : pred1, mean1, std1), BRISK_OK);
        assert_true(m1.loss_sum == m0.loss_sum);
        if (!seq)
            assert_memory_equal(pred1, pred0, sizeof(int32_t) * (size_t)(max_batch + 7));
        assert_memory_equal(mean1, mean0, sizeof(double) * (size_t)L);
        assert_memory_equal(std1, std0, sizeof(double) * (size_t)L);
    }
    free(pred0);
    free(pred1);
    for (int k = 0; k < NT; k++)
        brisk_trainer_destroy(tr[k]);
    free(idx);
    brisk_dataset_free(&ds);
    free(stream);
}

static void test_small_model_any_threads(void **state)
{
    (void)state;
    /* S = 2, 3 (the last one partial), 1 and 5 (partial) shards of 64. */
    const int batches[] = {128, 150, 64, 300};
    check_model_any_threads("784-256-128-10", brisk_shape_vec(784), batches, 4, 64, 3);
}

static void test_large_model_any_threads(void **state)
{
    (void)state;
    const int batches[] = {256, 200};
    check_model_any_threads("784-1024-1024-10", brisk_shape_vec(784), batches, 2, 64,
                            BIG_STEPS);
}

/* A CNN whose every layer claims its team's work (direct convolutions, 5x5 and strided,
 * Winograd ones, pooling, dense): its teams' barriers settle instead of waiting for every
 * member. */
static void test_claimed_model_any_threads(void **state)
{
    (void)state;
    const char *layers = "conv:4:5:pad2,relu,conv:8:3:pad1,relu,conv:12:3:pad1,relu,"
                         "maxpool:2,conv:8:3:pad1,conv:6:3:s2,gap,flatten,dense:16,relu,"
                         "dense:5";
    brisk_trainer_config cfg = base_config(layers, brisk_shape_img(8, 8, 8), 40, 3);
    brisk_model *m;
    assert_int_equal(brisk_model_create(&cfg.model, &m), BRISK_OK);
    assert_int_equal(brisk_model_claims(m), 1);
    brisk_model_destroy(m);
    cfg = base_config("embed:13:16,attention:4,dense:13", brisk_shape_seq(1, 8), 40, 3);
    assert_int_equal(brisk_model_create(&cfg.model, &m), BRISK_OK);
    assert_int_equal(brisk_model_claims(m), 0); /* the sequence layers do not claim */
    brisk_model_destroy(m);
    const int batches[] = {40, 100, 33};
    check_model_any_threads(layers, brisk_shape_img(8, 8, 8), batches, 3, 40, 2);
}

/* Changing how many threads take part between steps (brisk_trainer_set_threads_in_use)
 * changes no bit: a trainer of 4 threads run with 1, 4, 2, 3, ... of them against one of 1,
 * on an MLP, a CNN with batch normalisation and a model with layernorm (all three settle),
 * and on a GPT, whose teams meet at barriers. */
static void test_threads_in_use_bitwise(void **state)
{
    (void)state;
    const char *models[] = {"784-64-32-10", "conv:8:3:pad1,batchnorm,relu,maxpool:2,flatten,"
                                            "dense:5", "dense:32,layernorm,relu,dense:5",
                            "embed:13:16,posembed,layernorm,attention:4,res:2,dense:13"};
    const brisk_shape inputs[] = {brisk_shape_vec(784), brisk_shape_img(8, 8, 8),
                                  brisk_shape_vec(64), brisk_shape_seq(1, 8)};
    for (int mi = 0; mi < 4; mi++) {
        brisk_trainer_config cfg = base_config(models[mi], inputs[mi], 24, 4);
        cfg.batch = 48;
        brisk_dataset ds;
        int32_t *stream, *idx;
        brisk_model *probe;
        assert_int_equal(brisk_model_create(&cfg.model, &probe), BRISK_OK);
        const int d_in = (int)brisk_shape_size(inputs[mi]), classes = brisk_model_outputs(probe);
        brisk_model_destroy(probe);
        make_data(inputs[mi], d_in, classes, 48, 8, &ds, &stream, &idx);
        brisk_trainer *one, *four;
        const float mean = 120.0f, std = 70.0f;
        cfg.threads = 1;
        assert_int_equal(brisk_trainer_create(&cfg, &one), BRISK_OK);
        cfg.threads = 4;
        assert_int_equal(brisk_trainer_create(&cfg, &four), BRISK_OK);
        if (inputs[mi].rank != 2) { /* token ids are not normalised */
            assert_int_equal(brisk_trainer_set_norm(one, &mean, &std, 1), BRISK_OK);
            assert_int_equal(brisk_trainer_set_norm(four, &mean, &std, 1), BRISK_OK);
        }
        assert_int_equal(brisk_trainer_threads_in_use(four), 4);
        assert_int_equal(brisk_trainer_set_threads_in_use(four, 5), BRISK_EINVAL);
        assert_int_equal(brisk_trainer_set_threads_in_use(four, -1), BRISK_EINVAL);
        assert_int_equal(brisk_trainer_set_threads_in_use(NULL, 1), BRISK_EINVAL);
        const int in_use[] = {1, 4, 2, 3, 0, 1, 3};
        for (int s = 0; s < 7; s++) {
            assert_int_equal(brisk_trainer_set_threads_in_use(four, in_use[s]), BRISK_OK);
            assert_int_equal(brisk_trainer_threads_in_use(four), in_use[s] ? in_use[s] : 4);
            brisk_step_stats a, b;
            const int n = s == 6 ? 30 : 48; /* a short batch: whole and shared shards */
            assert_int_equal(brisk_trainer_step(one, &ds, idx + s % 2 * 48, n, &a), BRISK_OK);
            assert_int_equal(brisk_trainer_step(four, &ds, idx + s % 2 * 48, n, &b), BRISK_OK);
            assert_true(a.metrics.loss_sum == b.metrics.loss_sum);
            assert_true(a.grad_norm == b.grad_norm);
        }
        const brisk_model *m = brisk_trainer_model(one);
        const size_t bytes = brisk_model_slab_len(m) * sizeof(float);
        assert_memory_equal(brisk_trainer_params(one), brisk_trainer_params(four), bytes);
        if (brisk_model_buffers_len(m))
            assert_memory_equal(brisk_trainer_buffers(one), brisk_trainer_buffers(four),
                                brisk_model_buffers_len(m) * sizeof(float));
        brisk_metrics e1, e4;
        assert_int_equal(brisk_trainer_set_threads_in_use(four, 2), BRISK_OK);
        assert_int_equal(brisk_trainer_evaluate(one, &ds, idx, 96, &e1), BRISK_OK);
        assert_int_equal(brisk_trainer_evaluate(four, &ds, idx, 96, &e4), BRISK_OK);
        assert_true(e1.loss_sum == e4.loss_sum);
        brisk_trainer_destroy(one);
        brisk_trainer_destroy(four);
        free(idx);
        brisk_dataset_free(&ds);
        free(stream);
    }
}

/* A CNN with batch normalisation (statistics per shard, running statistics merged in shard
 * order), a skip connection and dropout (counter-based masks). */
static void test_cnn_any_threads(void **state)
{
    (void)state;
    const int batches[] = {48, 40, 16};
    check_model_any_threads("conv:6:3:pad1,batchnorm,relu,conv:6:3:pad1,relu,res:2,maxpool:2,"
                            "conv:8:3:s2,relu,flatten,dense:16,relu,dropout:0.3,dense:5",
                            brisk_shape_img(1, 12, 12), batches, 3, 16, 2);
}

/* The same CNN with every augmentation on (draws keyed by (seed, epoch, sample)) and a moving
 * average of the weights and running statistics: the same for any thread count. */
static void test_cnn_augmented_any_threads(void **state)
{
    (void)state;
    const int batches[] = {48, 40};
    check_augment = (brisk_augment){2, 1, 0.5f};
    check_ema = 0.9;
    check_mixup = 0.4;
    check_model_any_threads("conv:6:3:pad1,batchnorm,relu,conv:6:3:pad1,relu,res:2,maxpool:2,"
                            "conv:8:3:s2,relu,flatten,dense:16,relu,dropout:0.3,dense:5",
                            brisk_shape_img(1, 12, 12), batches, 2, 16, 2);
    check_augment = (brisk_augment){0, 0, 0};
    check_ema = 0;
    check_mixup = 0;
}

/* Mixup in a step is what its definition says: sample i mixed with sample n - 1 - i of the
 * batch, lam x_i + (1 - lam) x_(n-1-i) with lam = brisk_mixup_lambda(seed, step, alpha), and
 * the loss brisk_model_loss_mixed's: the trainer's loss and gradient equal those of the model
 * run by hand on the mixed inputs, bit for bit (one shard, one thread). Cutmix likewise, with
 * brisk_cutmix_box's box pasted from the partner. */
static void test_mixup_is_its_definition(void **state)
{
    (void)state;
    enum { NS = 12, DS = 36 };
    brisk_trainer_config cfg = base_config("conv:3:3:pad1,relu,flatten,dense:4",
                                           brisk_shape_img(1, 6, 6), NS, 6);
    cfg.batch = NS;
    cfg.threads = 1;
    cfg.mixup = 0.4;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    float x[NS * DS], mixed[NS * DS];
    uint8_t y[NS], yb[NS];
    for (int i = 0; i < NS * DS; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int i = 0; i < NS; i++)
        y[i] = (uint8_t)((i * 3) % 4);
    brisk_dataset ds;
    const int shape[3] = {1, 6, 6};
    assert_int_equal(brisk_dataset_wrap(NS, DS, shape, x, y, NULL, 0, &ds), BRISK_OK);
    int32_t idx[NS];
    for (int i = 0; i < NS; i++)
        idx[i] = (i * 5) % NS; /* not in storage order */
    brisk_trainer_set_steps_done(t, 3);
    const float *p0 = brisk_trainer_params(t);
    const size_t len = brisk_model_slab_len(brisk_trainer_model(t));
    float *params = malloc(len * sizeof *params), *g = calloc(len, sizeof *g);
    assert_true(params && g);
    memcpy(params, p0, len * sizeof *params);
    brisk_step_stats st;
    assert_int_equal(brisk_trainer_step(t, &ds, idx, NS, &st), BRISK_OK);
    /* By hand, from the definition. */
    const double lam = brisk_mixup_lambda(6, 3, 0.4);
    assert_true(lam > 0 && lam < 1);
    const float l = (float)lam, ol = (float)(1.0 - lam);
    for (int i = 0; i < NS; i++) {
        const int a = idx[i], b = idx[NS - 1 - i];
        for (int k = 0; k < DS; k++)
            mixed[i * DS + k] = l * x[a * DS + k] + ol * x[b * DS + k];
        yb[i] = y[b];
    }
    uint8_t ya[NS];
    for (int i = 0; i < NS; i++)
        ya[i] = y[idx[i]];
    const brisk_model *m = brisk_trainer_model(t);
    brisk_workspace *ws;
    assert_int_equal(brisk_workspace_create(m, NS, &ws), BRISK_OK);
    memcpy(brisk_workspace_input(ws), mixed, sizeof mixed);
    const brisk_pass_keys keys = {.seed = 6, .step = 3, .sample0 = 0};
    brisk_model_forward(m, params, NULL, ws, NS, BRISK_PASS_TRAIN, &keys, NULL, NULL);
    brisk_metrics acc = {0};
    assert_int_equal(brisk_model_loss_mixed(m, ws, ya, yb, lam, NS, 1.0f / NS, &acc, NULL),
                     BRISK_OK);
    brisk_model_backward(m, params, NULL, ws, NS, g, NULL);
    assert_true(acc.loss_sum == st.metrics.loss_sum);
    assert_memory_equal(g, brisk_trainer_grads(t), len * sizeof *g);
    /* Without mixup the step is another one. */
    cfg.mixup = 0;
    brisk_trainer *plain;
    assert_int_equal(brisk_trainer_create(&cfg, &plain), BRISK_OK);
    brisk_trainer_set_steps_done(plain, 3);
    brisk_step_stats st2;
    assert_int_equal(brisk_trainer_step(plain, &ds, idx, NS, &st2), BRISK_OK);
    assert_true(st2.metrics.loss_sum != st.metrics.loss_sum);
    /* Cutmix: the partner's box pasted in, the labels weighed by the box's area. */
    cfg.mixup = 0;
    cfg.cutmix = 1.0;
    brisk_trainer *cut;
    assert_int_equal(brisk_trainer_create(&cfg, &cut), BRISK_OK);
    memcpy(params, brisk_trainer_params(cut), len * sizeof *params);
    brisk_trainer_set_steps_done(cut, 5);
    assert_int_equal(brisk_trainer_step(cut, &ds, idx, NS, &st), BRISK_OK);
    int y0, y1, x0, x1;
    const double lc = brisk_cutmix_box(6, 5, 1.0, 6, 6, &y0, &y1, &x0, &x1);
    assert_true(y1 > y0 && x1 > x0 && lc < 1); /* a box that changes something */
    assert_true(lc == 1.0 - (double)((y1 - y0) * (x1 - x0)) / 36.0);
    for (int i = 0; i < NS; i++) {
        const int a = idx[i], b = idx[NS - 1 - i];
        for (int yy = 0; yy < 6; yy++)
            for (int xx = 0; xx < 6; xx++) {
                const int in_box = yy >= y0 && yy < y1 && xx >= x0 && xx < x1;
                mixed[i * DS + yy * 6 + xx] = x[(in_box ? b : a) * DS + yy * 6 + xx];
            }
    }
    memcpy(brisk_workspace_input(ws), mixed, sizeof mixed);
    const brisk_pass_keys keys5 = {.seed = 6, .step = 5, .sample0 = 0};
    brisk_model_forward(m, params, NULL, ws, NS, BRISK_PASS_TRAIN, &keys5, NULL, NULL);
    acc = (brisk_metrics){0};
    assert_int_equal(brisk_model_loss_mixed(m, ws, ya, yb, lc, NS, 1.0f / NS, &acc, NULL),
                     BRISK_OK);
    memset(g, 0, len * sizeof *g);
    brisk_model_backward(m, params, NULL, ws, NS, g, NULL);
    assert_true(acc.loss_sum == st.metrics.loss_sum);
    assert_memory_equal(g, brisk_trainer_grads(cut), len * sizeof *g);
    brisk_trainer_destroy(cut);
    /* Refused where it means nothing. */
    brisk_trainer *bad = NULL;
    cfg.mixup = 0.4;
    assert_int_equal(brisk_trainer_create(&cfg, &bad), BRISK_EINVAL); /* with cutmix */
    assert_non_null(strstr(brisk_error_detail(), "choose one"));
    cfg.cutmix = 0;
    cfg.model.loss = BRISK_LOSS_MSE;
    assert_int_equal(brisk_trainer_create(&cfg, &bad), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "mixup"));
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    cfg.mixup = -1;
    assert_int_equal(brisk_trainer_create(&cfg, &bad), BRISK_EINVAL);
    brisk_workspace_destroy(ws);
    brisk_trainer_destroy(plain);
    brisk_trainer_destroy(t);
    brisk_dataset_free(&ds);
    free(params);
    free(g);
}

/* The moving average: a copy of the initial model, then after every step brisk_ema_update
 * (PyTorch's values: test_layer_ref) of the parameters and of the running statistics as the
 * step left them; untouched by a step that fails; evaluated in place of the weights; reset by
 * load_state and restored by load_ema; refused where it is not kept. */
static void test_ema_follows_the_steps(void **state)
{
    (void)state;
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_set(&cfg.model, "conv:3:3:pad1,batchnorm,relu,flatten,"
                                            "dense:4", brisk_shape_img(1, 6, 6)), BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-2f, 0, 0, 0, 0, 0};
    cfg.batch = 16;
    cfg.micro_batch = 8;
    cfg.threads = 2;
    cfg.seed = 4;
    cfg.ema_decay = 0.75;
    brisk_trainer *t;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    const brisk_model *m = brisk_trainer_model(t);
    const size_t len = brisk_model_slab_len(m), nb = brisk_model_buffers_len(m);
    assert_true(nb > 0);
    float *ema = malloc(len * sizeof *ema), *emb = malloc(nb * sizeof *emb);
    assert_true(ema && emb);
    memcpy(ema, brisk_trainer_params(t), len * sizeof *ema);
    memcpy(emb, brisk_trainer_buffers(t), nb * sizeof *emb);
    assert_memory_equal(brisk_trainer_ema_params(t), ema, len * sizeof *ema);
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(64, 36, 4, 50.0f, 3, 0, &ds), BRISK_OK);
    int32_t idx[64];
    for (int i = 0; i < 64; i++)
        idx[i] = i;
    for (int s = 0; s < 4; s++) {
        brisk_step_stats st;
        assert_int_equal(brisk_trainer_step(t, &ds, idx + 16 * s, 16, &st), BRISK_OK);
        brisk_ema_update(ema, brisk_trainer_params(t), 0, len, 0.75);
        brisk_ema_update(emb, brisk_trainer_buffers(t), 0, nb, 0.75);
        assert_memory_equal(brisk_trainer_ema_params(t), ema, len * sizeof *ema);
        assert_memory_equal(brisk_trainer_ema_buffers(t), emb, nb * sizeof *emb);
    }
    /* An average, not a copy: neither the weights nor the running statistics. */
    assert_memory_not_equal(ema, brisk_trainer_params(t), len * sizeof *ema);
    assert_memory_not_equal(emb, brisk_trainer_buffers(t), nb * sizeof *emb);
    /* Evaluation with the average is evaluation of a trainer holding it. */
    brisk_metrics me, mt;
    assert_int_equal(brisk_trainer_evaluate_ema(t, &ds, idx, 64, &me), BRISK_OK);
    brisk_trainer_config icfg = cfg;
    icfg.inference = 1;
    icfg.ema_decay = 0;
    brisk_trainer *inf;
    assert_int_equal(brisk_trainer_create(&icfg, &inf), BRISK_OK);
    brisk_trainer_load_state(inf, ema, NULL, NULL, emb, 0);
    assert_int_equal(brisk_trainer_evaluate(inf, &ds, idx, 64, &mt), BRISK_OK);
    assert_true(me.loss_sum == mt.loss_sum && me.correct == mt.correct);
    assert_int_equal(brisk_trainer_evaluate(t, &ds, idx, 64, &mt), BRISK_OK);
    assert_true(me.loss_sum != mt.loss_sum); /* the trained weights are back in place */
    assert_int_equal(brisk_trainer_evaluate_ema(inf, &ds, idx, 64, &mt), BRISK_ESTATE);
    assert_int_equal(brisk_trainer_load_ema(inf, ema, emb), BRISK_ESTATE);
    assert_null(brisk_trainer_ema_params(inf));
    brisk_trainer_destroy(inf);
    /* load_state starts the average over from the weights it loads; load_ema restores one. */
    float *opt = calloc(len, sizeof *opt);
    assert_non_null(opt);
    brisk_trainer_load_state(t, ema, opt, opt, emb, 4);
    assert_memory_equal(brisk_trainer_ema_params(t), ema, len * sizeof *ema);
    assert_int_equal(brisk_trainer_load_ema(t, brisk_trainer_params(t), emb), BRISK_OK);
    assert_int_equal(brisk_trainer_load_ema(t, NULL, emb), BRISK_EINVAL);
    assert_int_equal(brisk_trainer_set_epoch(t, -1), BRISK_EINVAL);
    assert_int_equal(brisk_trainer_set_epoch(NULL, 1), BRISK_EINVAL);
    assert_int_equal(brisk_trainer_set_epoch(t, 2), BRISK_OK);
    brisk_ema_update(NULL, ema, 0, 1, 0.5); /* nothing to update: no abort */
    brisk_ema_update(ema, NULL, 0, 1, 0.5);
    free(opt);
    /* Out of range. */
    brisk_trainer *bad = NULL;
    const double decays[] = {-0.1, 1.0, NAN};
    for (int i = 0; i < 3; i++) {
        cfg.ema_decay = decays[i];
        assert_int_equal(brisk_trainer_create(&cfg, &bad), BRISK_EINVAL);
        assert_non_null(strstr(brisk_error_detail(), "ema_decay"));
    }
    free(ema);
    free(emb);
    brisk_dataset_free(&ds);
    brisk_trainer_destroy(t);
}

/* A GPT: token and position embeddings, attention with dropout on its weights (units of one
 * sample and head shared among a team), dropout on the residual branches, layernorm, a
 * gelu:tanh MLP, the head tied to the token embedding; sequences of 40 positions (two blocks of
 * the attention's products). Batches of 12 in micro-batches of 5 (the last one partial) and a
 * batch of 3 (one shard, shared by every thread). */
static void test_gpt_any_threads(void **state)
{
    (void)state;
    const int batches[] = {12, 3};
    check_model_any_threads("embed:13:16,posembed,dropout:0.1,layernorm,attention:4:drop0.2,"
                            "dropout:0.1,res:3,layernorm,dense:32,gelu:tanh,dense:16,"
                            "dropout:0.1,res:5,layernorm,dense:13:nobias:tied",
                            brisk_shape_seq(1, 40), batches, 2, 5, 2);
}

/* Winograd convolutions (3x3, stride 1, padding 1, 8 or more input channels): units of one
 * tile by up to 64 samples shared among a team, the weight gradient summed in fixed groups.
 * Micro-batches of 80 (two sample blocks a tile, the second partly padding) and the rest of
 * a batch of 100. */
static void test_winograd_any_threads(void **state)
{
    (void)state;
    const int batches[] = {100, 80};
    check_model_any_threads("conv:8:3:pad1,relu,conv:12:3:pad1,relu,maxpool:2,conv:8:3:pad1,"
                            "flatten,dense:5",
                            brisk_shape_img(1, 8, 8), batches, 2, 80, 2);
}

/* The machine's CPU times (for brisk_fit_progress.steal): /proc/stat's first line, parsed;
 * anything else refused. */
static void test_cpu_times(void **state)
{
    (void)state;
    unsigned long long steal = 0, total = 0;
    assert_int_equal(brisk_cpu_times_parse("cpu  100 2 30 400 5 0 6 70 0 0\n", &steal, &total),
                     0);
    assert_true(steal == 70 && total == 613);
    static const char *const bad[] = {"cpu  100 2 30 400 5 0 6\n", "cpu0 1 2 3 4 5 6 7 8\n",
                                      "intr 1 2 3 4 5 6 7 8\n", "cpu  1 2 x 4 5 6 7 8\n", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(brisk_cpu_times_parse(bad[i], &steal, &total), -1);
    assert_int_equal(brisk_cpu_times_parse(NULL, &steal, &total), -1);
    if (brisk_cpu_times(&steal, &total) == 0)
        assert_true(total > 0 && steal <= total);
    else
        print_message("no /proc/stat here: steal is reported as 0\n");
}

/* bfloat16 products (brisk_gemm's BRISK_GEMM_BF16 in every dense layer, convolution and
 * attention): the same bits for any thread count, on an MLP, a CNN of every convolution path
 * (5x5 and first-layer direct, strided, Winograd; batchnorm, a skip, dropout) and a GPT with
 * dropout; and not the fp32 training (the precision reaches the layers). */
static void test_bf16_any_threads(void **state)
{
    (void)state;
    check_precision = BRISK_GEMM_BF16;
    const int mlp[] = {128, 150};
    check_model_any_threads("784-256-128-10", brisk_shape_vec(784), mlp, 2, 64, 2);
    const int cnn[] = {48, 40, 16};
    check_model_any_threads("conv:6:3:pad1,batchnorm,relu,conv:6:3:pad1,relu,res:2,maxpool:2,"
                            "conv:8:3:s2,relu,flatten,dense:16,relu,dropout:0.3,dense:5",
                            brisk_shape_img(1, 12, 12), cnn, 3, 16, 2);
    check_model_any_threads("conv:5:3:pad1,relu,maxpool:2,conv:6:3:pad1,relu,flatten,"
                            "dense:5", brisk_shape_img(1, 10, 10), cnn, 3, 16, 2);
    const int claimed[] = {40, 33};
    check_model_any_threads("conv:4:5:pad2,relu,conv:8:3:pad1,relu,conv:12:3:pad1,relu,"
                            "maxpool:2,conv:8:3:pad1,conv:6:3:s2,gap,flatten,dense:16,relu,"
                            "dense:5",
                            brisk_shape_img(8, 8, 8), claimed, 2, 40, 2);
    const int gpt[] = {12, 3};
    check_model_any_threads("embed:13:16,posembed,dropout:0.1,layernorm,attention:4:drop0.2,"
                            "dropout:0.1,res:3,layernorm,dense:32,gelu:tanh,dense:16,"
                            "dropout:0.1,res:5,layernorm,dense:13:nobias:tied",
                            brisk_shape_seq(1, 40), gpt, 2, 5, 2);
    check_precision = BRISK_GEMM_FP32;

    /* One step of each model in both precisions: different weights, near each other. */
    static const char *const models[] = {
        "784-64-10",
        "conv:4:3:pad1,relu,conv:8:3:pad1,relu,conv:8:3:pad1,conv:4:3:s2,flatten,dense:5",
        "embed:13:16,posembed,layernorm,attention:4,res:2,dense:13",
        "conv:4:3:pad1,relu,maxpool:2,flatten,dense:5"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        const brisk_shape in = i == 0   ? brisk_shape_vec(784)
                               : i == 1 ? brisk_shape_img(8, 8, 8)
                               : i == 2 ? brisk_shape_seq(1, 40)
                                        : brisk_shape_img(1, 8, 8);
        float *w[2];
        size_t n = 0;
        for (int p = 0; p < 2; p++) {
            brisk_trainer_config cfg = base_config(models[i], in, 16, 3);
            cfg.model.precision = p ? BRISK_GEMM_BF16 : BRISK_GEMM_FP32;
            cfg.batch = 16;
            cfg.threads = 2;
            brisk_model *probe;
            assert_int_equal(brisk_model_create(&cfg.model, &probe), BRISK_OK);
            const int classes = brisk_model_outputs(probe);
            brisk_model_destroy(probe);
            brisk_dataset ds;
            int32_t *stream, *idx;
            make_data(in, (int)brisk_shape_size(in), classes, 16, 8, &ds, &stream, &idx);
            brisk_trainer *t;
            assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
            const float mean = 120.0f, std = 70.0f;
            if (in.rank != 2)
                assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
            brisk_step_stats st;
            assert_int_equal(brisk_trainer_step(t, &ds, idx, 16, &st), BRISK_OK);
            n = brisk_model_slab_len(brisk_trainer_model(t));
            w[p] = malloc(n * sizeof(float));
            assert_non_null(w[p]);
            memcpy(w[p], brisk_trainer_params(t), n * sizeof(float));
            brisk_trainer_destroy(t);
            brisk_dataset_free(&ds);
            free(stream);
            free(idx);
        }
        double diff = 0, norm = 0;
        for (size_t j = 0; j < n; j++) {
            diff += ((double)w[1][j] - w[0][j]) * ((double)w[1][j] - w[0][j]);
            norm += (double)w[0][j] * w[0][j];
        }
        print_message("%s: bf16 against fp32 after a step: %.3g relative\n", models[i],
                      sqrt(diff / norm));
        assert_true(diff > 0 && sqrt(diff / norm) < 1e-2);
        free(w[0]);
        free(w[1]);
    }
}

/* A first convolution under a ReLU and a 2x2 max pool takes its weight and bias gradients
 * straight from the pool's gradient (brisk__conv_backward_routed): the same bits as the three
 * layers' own backward passes (brisk__model_set_routing(0)), in both precisions, at 1 and 3
 * threads, with bias and without, an odd channel count, shards that are not a multiple of 16
 * samples (the bias sums' tail) and an image whose pool rows are odd. A first layer on two
 * channels (18 taps) does not route; it trains alike either way too. */
static void test_routed_first_layer(void **state)
{
    (void)state;
    static const char *const models[] = {
        "conv:5:3:pad1,relu,maxpool:2,conv:6:3:pad1,relu,flatten,dense:4",
        "conv:3:3:pad1:nobias,relu,maxpool:2,flatten,dense:16,relu,dense:4",
        "conv:4:3:pad1,relu,maxpool:2,flatten,dense:4"};
    const brisk_shape inputs[] = {brisk_shape_img(1, 10, 10), brisk_shape_img(1, 12, 12),
                                  brisk_shape_img(2, 8, 8)};
    const int batches[] = {40, 21}; /* shards of 16, 16, 8 and 16, 5 */
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        for (int p = 0; p < 2; p++) {
            brisk_trainer_config cfg = base_config(models[i], inputs[i], 16, 7);
            cfg.model.precision = p ? BRISK_GEMM_BF16 : BRISK_GEMM_FP32;
            cfg.batch = 40;
            brisk_model *probe;
            assert_int_equal(brisk_model_create(&cfg.model, &probe), BRISK_OK);
            const int classes = brisk_model_outputs(probe);
            const size_t bytes = brisk_model_slab_len(probe) * sizeof(float);
            brisk_model_destroy(probe);
            brisk_dataset ds;
            int32_t *stream, *idx;
            make_data(inputs[i], (int)brisk_shape_size(inputs[i]), classes, 40, 11, &ds,
                      &stream, &idx);
            float *want = NULL;
            for (int route = 1; route >= 0; route--)
                for (int threads = 1; threads <= 3; threads += 2) {
                    cfg.threads = threads;
                    brisk_trainer *t;
                    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
                    const float mean = 120.0f, std = 70.0f;
                    assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
                    brisk__model_set_routing(route);
                    for (int s = 0; s < 3; s++) {
                        brisk_step_stats st;
                        assert_int_equal(brisk_trainer_step(t, &ds, idx + s % 2 * 40,
                                                            batches[s % 2], &st),
                                         BRISK_OK);
                    }
                    brisk__model_set_routing(1);
                    const float *w = brisk_trainer_params(t);
                    if (!want) {
                        want = malloc(bytes);
                        assert_non_null(want);
                        memcpy(want, w, bytes);
                    } else if (memcmp(w, want, bytes)) {
                        size_t j = 0;
                        while (!memcmp(&w[j], &want[j], sizeof *w))
                            j++;
                        print_error("%s, %s, %d threads, routing %s: parameter %zu is %a, "
                                    "%a with routing at 1 thread\n", models[i],
                                    p ? "bf16" : "fp32", threads, route ? "on" : "off", j,
                                    (double)w[j], (double)want[j]);
                        fail();
                    }
                    brisk_trainer_destroy(t);
                }
            free(want);
            brisk_dataset_free(&ds);
            free(stream);
            free(idx);
        }
}

/* Gradient accumulation: a step of K passes of B / K samples is bitwise the step of one pass
 * over the B samples with the same micro-batch, at any thread count: parameters, Adam's
 * moments, running statistics, loss and norm; also for a short last batch (a short last pass
 * and a short last shard). A CNN with batchnorm and dropout, and a GPT (token data). */
static void check_accumulation(const char *widths, brisk_shape input, int pass, int micro)
{
    const int Ks[] = {2, 3, 4}, threads[] = {1, 2, 3, 8};
    for (int ki = 0; ki < 3; ki++) {
        const int K = Ks[ki], nb = K * pass;
        brisk_trainer_config cfg = base_config(widths, input, micro, 5);
        cfg.batch = nb;
        cfg.mixup = check_mixup; /* partners from the whole batch, across the passes */
        brisk_model *probe;
        assert_int_equal(brisk_model_create(&cfg.model, &probe), BRISK_OK);
        const int d_in = (int)brisk_shape_size(input), classes = brisk_model_outputs(probe);
        brisk_model_destroy(probe);
        brisk_dataset ds;
        int32_t *stream, *idx;
        make_data(input, d_in, classes, nb, 9, &ds, &stream, &idx);
        enum { NT = 4 };
        brisk_trainer *one, *acc[NT];
        cfg.threads = 2;
        assert_int_equal(brisk_trainer_create(&cfg, &one), BRISK_OK);
        cfg.accumulate = K;
        for (int k = 0; k < NT; k++) {
            cfg.threads = threads[k];
            assert_int_equal(brisk_trainer_create(&cfg, &acc[k]), BRISK_OK);
        }
        const int sizes[] = {nb, nb, nb - 5, nb}; /* nb - 5: a short last pass and shard */
        for (int s = 0; s < 4; s++) {
            brisk_step_stats st0, st;
            const int32_t *bi = idx + s % 2 * nb;
            assert_int_equal(brisk_trainer_step(one, &ds, bi, sizes[s], &st0), BRISK_OK);
            for (int k = 0; k < NT; k++) {
                assert_int_equal(brisk_trainer_step(acc[k], &ds, bi, sizes[s], &st), BRISK_OK);
                assert_true(st.grad_norm == st0.grad_norm);
                assert_true(st.metrics.loss_sum == st0.metrics.loss_sum);
                assert_true(st.metrics.correct == st0.metrics.correct);
            }
        }
        char plan[256];
        brisk_trainer_describe_plan(acc[NT - 1], nb, plan, sizeof plan);
        print_message("%s, K %d: %s\n", widths, K, plan);
        assert_non_null(strstr(plan, "passes"));
        const brisk_model *m = brisk_trainer_model(one);
        const size_t bytes = brisk_model_slab_len(m) * sizeof(float);
        const size_t bbytes = brisk_model_buffers_len(m) * sizeof(float);
        for (int k = 0; k < NT; k++) {
            assert_memory_equal(brisk_trainer_params(acc[k]), brisk_trainer_params(one), bytes);
            assert_memory_equal(brisk_trainer_opt_m(acc[k]), brisk_trainer_opt_m(one), bytes);
            assert_memory_equal(brisk_trainer_opt_v(acc[k]), brisk_trainer_opt_v(one), bytes);
            if (bbytes)
                assert_memory_equal(brisk_trainer_buffers(acc[k]), brisk_trainer_buffers(one),
                                    bbytes);
            brisk_trainer_destroy(acc[k]);
        }
        brisk_trainer_destroy(one);
        free(idx);
        brisk_dataset_free(&ds);
        free(stream);
    }
}

static void test_accumulation_bitwise(void **state)
{
    (void)state;
    check_accumulation("conv:6:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:16,relu,"
                       "dropout:0.3,dense:5",
                       brisk_shape_img(1, 8, 8), 16, 8);
    check_mixup = 0.4;
    check_accumulation("conv:6:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:5",
                       brisk_shape_img(1, 8, 8), 16, 8);
    check_mixup = 0;
    check_accumulation("embed:13:16,posembed,dropout:0.1,layernorm,attention:2:drop0.2,res:3,"
                       "layernorm,dense:13:nobias:tied",
                       brisk_shape_seq(1, 12), 6, 3);
}

/* What accumulation refuses, by name. */
static void test_accumulation_refusals(void **state)
{
    (void)state;
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_set(&cfg.model, "8-4", brisk_shape_vec(8)), BRISK_OK);
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-3f, 0, 0, 0, 0, 0};
    cfg.threads = 1;
    brisk_trainer *t = NULL;
    const struct {
        int batch, micro, K;
        const char *says;
    } bad[] = {{30, 0, 4, "must divide batch 30"},
               {8, 0, 9, "must divide batch 8"},
               {64, 12, 4, "not a whole number of micro-batches of 12"},
               {64, 0, -1, "accumulate -1"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cfg.batch = bad[i].batch;
        cfg.micro_batch = bad[i].micro;
        cfg.accumulate = bad[i].K;
        assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_EINVAL);
        assert_null(t);
        assert_non_null(strstr(brisk_error_detail(), bad[i].says));
    }
    /* A micro-batch larger than a pass is cut to it; a step takes up to the whole batch. */
    cfg.batch = 64, cfg.micro_batch = 256, cfg.accumulate = 4;
    assert_int_equal(brisk_trainer_create(&cfg, &t), BRISK_OK);
    assert_int_equal(brisk_trainer_micro_batch(t), 16);
    assert_int_equal(brisk_trainer_get_config(t)->accumulate, 4);
    brisk_trainer_destroy(t);
}

/* Every code path of the matrix kernel trains the same bits. */
/* Six steps of cfg on every code path of brisk_gemm this CPU runs: the same weights. */
static void train_on_every_kernel(const brisk_trainer_config *cfg, const brisk_dataset *ds,
                                  const int32_t *idx, int n, const char *what)
{
    static const char *const isas[] = {"avx512bf16", "avx512", "avx2", "portable"};
    float *first = NULL;
    size_t bytes = 0;
    int paths = 0;
    for (int p = 0; p < (int)(sizeof isas / sizeof *isas); p++) {
        if (brisk_gemm_set_isa(isas[p]) < 0)
            continue;
        brisk_trainer *t;
        assert_int_equal(brisk_trainer_create(cfg, &t), BRISK_OK);
        const float mean = 128.0f, std = 64.0f;
        assert_int_equal(brisk_trainer_set_norm(t, &mean, &std, 1), BRISK_OK);
        for (int s = 0; s < 6; s++) {
            brisk_step_stats st;
            assert_int_equal(brisk_trainer_step(t, ds, idx + s % 2 * n, n, &st), BRISK_OK);
        }
        bytes = brisk_model_slab_len(brisk_trainer_model(t)) * sizeof(float);
        if (!first) {
            first = malloc(bytes);
            assert_non_null(first);
            memcpy(first, brisk_trainer_params(t), bytes);
        } else {
            assert_memory_equal(brisk_trainer_params(t), first, bytes);
        }
        paths++;
        brisk_trainer_destroy(t);
    }
    brisk_gemm_set_isa(NULL);
    print_message("%d code paths trained the same weights in %s\n", paths, what);
    free(first);
}

static void test_kernels_same_training(void **state)
{
    (void)state;
    brisk_trainer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(brisk_model_config_mlp(&cfg.model, "100-40-30-7", BRISK_ACT_GELU),
                     BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    cfg.optim = brisk_optim_defaults(BRISK_OPTIM_ADAMW);
    cfg.schedule = (brisk_schedule){BRISK_SCHEDULE_CONSTANT, 1e-2f, 0, 0, 0, 0, 0};
    cfg.threads = 2;
    brisk_dataset ds;
    assert_int_equal(brisk_dataset_synthetic(260, 100, 7, 50.0f, 9, 0, &ds), BRISK_OK);
    int32_t idx[260];
    for (int i = 0; i < 260; i++)
        idx[i] = i;
    /* Narrow shards (16 samples), and one wide shard of 130 (the dense layers' input gradient
     * then reads a transposed copy of W, or on avx512bf16 packs W's columns directly). */
    for (int wide = 0; wide < 2; wide++) {
        cfg.batch = wide ? 130 : 50;
        cfg.micro_batch = wide ? 130 : 16;
        for (int bf16 = 0; bf16 < 2; bf16++) { /* in each precision */
            cfg.model.precision = bf16 ? BRISK_GEMM_BF16 : BRISK_GEMM_FP32;
            train_on_every_kernel(&cfg, &ds, idx, cfg.batch,
                                  bf16 ? (wide ? "bf16, wide" : "bf16")
                                       : (wide ? "fp32, wide" : "fp32"));
        }
    }
    brisk_dataset_free(&ds);

    /* A CNN whose first convolution (one channel, 3x3) takes, in bf16 on avx512bf16, dW row by
     * row from dy in place; then Winograd (8 channels in: in bf16 on avx512bf16, its 16
     * transformed weight matrices packed once a pass); in a shared shard and in shards of
     * their own. */
    assert_int_equal(brisk_model_config_set(&cfg.model, "conv:8:3:pad1,relu,maxpool:2,"
                                            "conv:8:3:pad1,relu,flatten,dense:5",
                                            brisk_shape_img(1, 12, 12)),
                     BRISK_OK);
    cfg.model.loss = BRISK_LOSS_SOFTMAX_CE;
    assert_int_equal(brisk_dataset_synthetic(64, 144, 5, 60.0f, 4, 0, &ds), BRISK_OK);
    for (int shared = 0; shared < 2; shared++) {
        cfg.batch = 32;
        cfg.micro_batch = shared ? 32 : 8;
        for (int bf16 = 0; bf16 < 2; bf16++) {
            cfg.model.precision = bf16 ? BRISK_GEMM_BF16 : BRISK_GEMM_FP32;
            train_on_every_kernel(&cfg, &ds, idx, cfg.batch,
                                  bf16 ? (shared ? "a CNN, bf16, one shared shard"
                                                 : "a CNN, bf16")
                                       : (shared ? "a CNN, fp32, one shared shard"
                                                 : "a CNN, fp32"));
        }
    }
    brisk_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_barrier_and_jobs),
        cmocka_unit_test(test_pool_claimed_loops),
        cmocka_unit_test(test_pool_claims_own_share_first),
        cmocka_unit_test(test_governor),
        cmocka_unit_test(test_pool_threads_in_use),
        cmocka_unit_test(test_thread_runnable),
        cmocka_unit_test(test_pool_trades_cpus_with_a_thread_off_its_own),
        cmocka_unit_test(test_threads_bitwise_identical_and_match_reference),
        cmocka_unit_test(test_small_model_any_threads),
        cmocka_unit_test(test_large_model_any_threads),
        cmocka_unit_test(test_cnn_any_threads),
        cmocka_unit_test(test_cnn_augmented_any_threads),
        cmocka_unit_test(test_bf16_any_threads),
        cmocka_unit_test(test_routed_first_layer),
        cmocka_unit_test(test_cpu_times),
        cmocka_unit_test(test_ema_follows_the_steps),
        cmocka_unit_test(test_mixup_is_its_definition),
        cmocka_unit_test(test_winograd_any_threads),
        cmocka_unit_test(test_claimed_model_any_threads),
        cmocka_unit_test(test_threads_in_use_bitwise),
        cmocka_unit_test(test_gpt_any_threads),
        cmocka_unit_test(test_kernels_same_training),
        cmocka_unit_test(test_accumulation_bitwise),
        cmocka_unit_test(test_accumulation_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
