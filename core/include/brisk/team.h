/* brisk/team.h: a group of threads working on one micro-shard together.
 *
 * Kernels never create threads. A layer's forward and backward receive the team they run in
 * and compute only their thread's part (thread ith of nth), then meet the others at
 * brisk_team_barrier before anyone reads what the others wrote. The parallel module builds
 * teams from its worker pool; a NULL team means one thread alone.
 */
#ifndef BRISK_TEAM_H
#define BRISK_TEAM_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_team {
    int ith, nth;                /* this thread's index in the team, and the team's size */
    void (*barrier)(void *ctx);  /* waits until all nth threads have called it (nth > 1) */
    void *ctx;
} brisk_team;

/* Waits for the whole team; writes made before it by any member are visible after it to all.
 * Returns at once for NULL or a team of one. */
static inline void brisk_team_barrier(const brisk_team *t)
{
    if (t && t->nth > 1)
        t->barrier(t->ctx);
}

/* [*lo, *hi): thread ith's even share of n items (the whole range for NULL). */
static inline void brisk_team_range(const brisk_team *t, long long n, long long *lo,
                                    long long *hi)
{
    const int ith = t ? t->ith : 0, nth = t ? t->nth : 1;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

#ifdef __cplusplus
}
#endif

#endif
