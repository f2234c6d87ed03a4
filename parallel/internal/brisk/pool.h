/* brisk/pool.h: a persistent pool of worker threads and the barrier they share.
 *
 * brisk_pool_run(pool, fn, arg) runs fn(arg, t, K) once on each of the K threads in use (all
 * T unless brisk_pool_set_active says fewer; the caller is thread 0) and returns when all
 * have finished. Inside fn, brisk_pool_barrier separates phases, teams have their own
 * barriers, and claimed loops hand out chunks of work (each thread its own share first).
 * Threads are created once, in brisk_pool_create; kernels never create threads.
 *
 * Another program on the cores: every 50 ms each thread reads how long it waited for a CPU
 * (schedstat); while one shares its core, waits spin briefly before they sleep, and threads
 * that the scheduler has packed onto one CPU are pinned one to a CPU (given back after a
 * quiet while and when the pool is destroyed; the caller's own affinity is restored only
 * from the caller's thread). While they are pinned, a thread that waits trades CPUs with one
 * that is ready to run but held off its CPU (brisk_pool_pin, below).
 *
 * Why pthreads and not OpenMP: the step needs barriers in the middle of one parallel job,
 * claimed loops, a number of threads in use that changes between jobs, and a spin-then-sleep
 * policy that adapts to a busy machine; and ThreadSanitizer understands C11 atomics and
 * futexes, but not an uninstrumented libgomp, so the tsan preset can check this pool.
 */
#ifndef BRISK_POOL_H
#define BRISK_POOL_H

#include "brisk/team.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_pool brisk_pool;

/* A job: called once per thread with its index t in [0, T). */
typedef void (*brisk_pool_fn)(void *arg, int t, int T);

/* Creates a pool of T threads in all (T - 1 workers plus the caller); T >= 1. *out is owned by
 * the caller. Returns BRISK_OK, BRISK_EINVAL or BRISK_ENOMEM (threads that could not start). */
int brisk_pool_create(int T, brisk_pool **out);

/* Stops and joins the workers. Accepts NULL. Not to be called from inside a job. */
void brisk_pool_destroy(brisk_pool *pool);

int brisk_pool_size(const brisk_pool *pool);

/* Runs fn on every thread and waits for all. Only one thread may call it at a time. Every
 * write made by any thread inside the job is visible to the caller when it returns. */
void brisk_pool_run(brisk_pool *pool, brisk_pool_fn fn, void *arg);

/* Inside a job: waits until all T threads have reached it; writes before it on any thread
 * are visible after it on every thread. Every thread must call it the same number of times. */
void brisk_pool_barrier(brisk_pool *pool);

/* Between jobs: only threads 0 .. K - 1 take part in the jobs that follow (1 <= K <= T); the
 * others sleep until K grows again. Jobs then see T = K, and brisk_pool_barrier waits for K
 * threads. Resets the teams to one. Results that do not depend on the number of threads do
 * not depend on K either. */
void brisk_pool_set_active(brisk_pool *pool, int K);
int brisk_pool_active(const brisk_pool *pool);

/* Teams: between jobs, brisk_pool_set_teams(pool, R) groups the T threads into R teams
 * (1 <= R <= T): thread t belongs to team t % R, as its member t / R. Inside a job,
 * brisk_pool_team_barrier(pool, r) waits for the members of team r only. */
void brisk_pool_set_teams(brisk_pool *pool, int R);
int brisk_pool_team_size(const brisk_pool *pool, int team);
void brisk_pool_team_barrier(brisk_pool *pool, int team);

/* Inside a job: the claim function of brisk/team.h for team `team` (n < 2^32 chunks): the
 * next unclaimed chunk of the team's current loop, or -1 when all are taken. Member i of nth
 * owns chunks n i / nth up to n (i + 1) / nth and gets them first, in order; then the rest of
 * the next member's share, and so on. Claiming (or any op) also marks the chunk the thread
 * claimed before as finished. */
long long brisk_pool_team_claim(brisk_pool *pool, int team, int op, long long n);

/* How many of a pool's T threads take part in a trainer's steps (brisk_pool_set_active), chosen
 * by measuring: while another program competes for the CPUs (brisk_pool_contended), the
 * governor measures whether one thread fewer trains faster and keeps the faster; every while
 * it measures one more again (the other program may have gone). On a busy core a thread can
 * hold its team back, so fewer threads can be faster. A window of at least 3 steps and 0.25 s
 * measures a number of threads; the window just after a change is not measured (it holds the
 * change's own cost: threads starting, workspaces faulted in, threads moved between CPUs). A
 * run's first such window lasts 3 steps and 0.25 s too, the one after a change 3 steps and
 * 62.5 ms. */
typedef struct brisk_governor {
    int fixed;                /* brisk_trainer_set_threads_in_use: no adapting */
    int probing;              /* the window in progress measures base_k's neighbour */
    int skip;                 /* windows still to let pass unmeasured */
    int changed;              /* the window to let pass follows a change (a short one) */
    int base_k;
    double base_rate;         /* samples/s at base_k */
    double w_seconds;         /* the window so far: steps' wall time and samples */
    int64_t w_samples;
    int w_steps;
    double next_down, next_up, down_wait, up_wait; /* seconds */
} brisk_governor;

/* A governor that has measured nothing yet (its first window is let pass). */
void brisk_governor_init(brisk_governor *g);
/* Adapting again (fixed 0) or not (fixed 1) after the caller set the number in use itself. */
void brisk_governor_restart(brisk_governor *g, int fixed);
/* After a step of n samples that took `seconds`, with K of T threads in use, `contended`
 * from brisk_pool_contended and `now` in seconds: the number to use from the next step. */
int brisk_governor_step(brisk_governor *g, int K, int T, int n, double seconds, int contended,
                        double now);

/* Inside a job: the next of the job's n items (the same n on every call), or -1 when all are
 * taken: each thread takes items until none is left, so a thread whose core is shared with
 * another program takes fewer. One such loop per job. */
long long brisk_pool_next_item(brisk_pool *pool, long long n);

/* Inside a job: waits until every claimed loop the calling thread has begun in team `team`
 * has finished, whoever ran its chunks. In a team whose members write nothing that the
 * others read outside claimed chunks, this is a barrier that does not wait for a member
 * that has nothing left to do (its core may be busy with another program). */
void brisk_pool_team_settle(brisk_pool *pool, int team);

/* Whether the last window saw a thread in use wait for its CPU (its core shared with
 * another program): then barriers barely spin. Call between jobs. */
int brisk_pool_contended(const brisk_pool *pool);

/* Between jobs: pins the threads one to a CPU now, as the pool does by itself when the
 * scheduler packs them beside another program (for tests). Returns 0, or -1 where the process
 * may use fewer CPUs than the pool has threads. While they are pinned, a thread that waits for
 * the others trades CPUs with one that is ready to run but off its CPU (the other program has
 * its core), while the last window saw a core shared; brisk_pool_pinned_cpu says where thread t is pinned (-1: it is not), and
 * brisk_pool_trades how many trades there have been. */
int brisk_pool_pin(brisk_pool *pool);
int brisk_pool_pinned_cpu(const brisk_pool *pool, int t);
long long brisk_pool_trades(const brisk_pool *pool);
/* For tests: on, the pool trades whether or not its last window saw a core shared, and a
 * thread asleep in the kernel (in nanosleep, say) counts as held off its CPU too, as one
 * that another program's time slice holds does (off, the default: trades only while a core
 * is shared, and only with a thread that is ready to run). */
void brisk_pool_test_trades(brisk_pool *pool, int on);
/* Whether thread tid of this process is ready to run or running (state R), not asleep in the
 * kernel: 1, else 0 (also where it cannot be read). */
int brisk_thread_runnable(int tid);

/* Seconds thread t has spent inside jobs in all (busy) and, of that, waiting at barriers
 * (waiting), since the pool was created or brisk_pool_reset_times. Call between jobs. */
void brisk_pool_times(const brisk_pool *pool, int t, double *busy, double *waiting);
void brisk_pool_reset_times(brisk_pool *pool);

/* brisk_cpu_count (the CPUs this process may run on) is declared in brisk/trainer.h. */

/* The machine's CPU time so far from the first line of /proc/stat ("cpu  user nice system idle
 * iowait irq softirq steal ..."): in *total the sum of the eight, in *steal the time the
 * hypervisor ran other guests while this one had work (a virtual machine's "steal"). Returns 0,
 * or -1 where it cannot be read (not Linux; a line without the steal field). The parser, for
 * tests: brisk_cpu_times_parse on one such line. */
int brisk_cpu_times(unsigned long long *steal, unsigned long long *total);
int brisk_cpu_times_parse(const char *line, unsigned long long *steal, unsigned long long *total);

#ifdef __cplusplus
}
#endif

#endif
