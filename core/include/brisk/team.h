/* brisk/team.h: a group of threads working on one micro-shard together.
 *
 * Kernels never create threads. A layer's forward and backward receive the team they run in
 * and compute only their thread's part (thread ith of nth), then meet the others at
 * brisk_team_barrier before anyone reads what the others wrote. The parallel module builds
 * teams from its worker pool; a NULL team means one thread alone.
 *
 * A part can be fixed (brisk_team_range: thread ith always gets the same slice) or claimed
 * (brisk_share_next: each thread first takes the chunks of its own even share, then what the
 * others have not taken yet, so a thread whose core is shared with another program simply
 * does fewer, and on a quiet machine each does the same ones every time). Claimed loops give
 * the same bits as fixed ones as long as each item's result does not depend on which thread
 * computes it, which is the rule for every part of a layer anyway.
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
    /* Optional (NULL: every claimed loop falls back to fixed slices). Returns the next
     * unclaimed chunk of the team's current loop of n chunks, or -1 when all are taken; op
     * is one of BRISK_CLAIM_* below. Each call also tells the team that the chunk this
     * thread claimed before is finished. */
    long long (*claim)(void *ctx, int op, long long n);
} brisk_team;

enum {
    BRISK_CLAIM_NEXT = 0,  /* the next chunk of the thread's current loop */
    BRISK_CLAIM_BEGIN = 1, /* the thread begins its next loop, of n chunks, and claims one */
    BRISK_CLAIM_PASS = 2   /* the thread begins its next loop, of n chunks, and claims none */
};

/* Waits for the whole team; writes made before it by any member are visible after it to all.
 * Returns at once for NULL or a team of one. (In a team whose layers all claim their work,
 * brisk_layer.claims, it waits instead until every chunk of the claimed loops before it has
 * finished, whoever ran it; what those chunks wrote is then visible to all.) */
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

/* A claimed loop over n items in chunks of `grain`:
 *
 *     brisk_share s;
 *     brisk_share_begin(&s, team, n, grain);
 *     for (long long lo, hi; brisk_share_next(&s, &lo, &hi);)
 *         ... items [lo, hi) ...
 *
 * Every member of the team runs every claimed loop, in the same order, to its end (until
 * brisk_share_next returns 0); a loop whose results the next one reads still needs a
 * brisk_team_barrier between them. Without a claim function (or for NULL or a team of one)
 * the loop runs the thread's fixed share of whole chunks instead. */
typedef struct brisk_share {
    const brisk_team *team;
    long long n, grain, chunks, next, end;
    int started;
} brisk_share;

static inline void brisk_share_begin(brisk_share *s, const brisk_team *t, long long n,
                                     long long grain)
{
    s->team = t;
    s->n = n > 0 ? n : 0;
    s->grain = grain > 0 ? grain : 1;
    s->chunks = (s->n + s->grain - 1) / s->grain;
    s->started = 0;
    brisk_team_range(t && !t->claim ? t : (const brisk_team *)0, s->chunks, &s->next, &s->end);
}

/* The next chunk [*lo, *hi) of the loop for this thread; 0 when the loop is done. */
static inline int brisk_share_next(brisk_share *s, long long *lo, long long *hi)
{
    long long c;
    if (s->team && s->team->nth > 1 && s->team->claim) {
        c = s->team->claim(s->team->ctx, s->started ? BRISK_CLAIM_NEXT : BRISK_CLAIM_BEGIN,
                           s->chunks);
        s->started = 1;
        if (c < 0)
            return 0;
    } else {
        if (s->next >= s->end)
            return 0;
        c = s->next++;
    }
    *lo = c * s->grain;
    *hi = *lo + s->grain < s->n ? *lo + s->grain : s->n;
    return 1;
}

/* For a member that takes no part in the team's next claimed loop, of n chunks of `grain`
 * (it must still mark it, so that its count of loops stays the team's). */
static inline void brisk_share_pass(const brisk_team *t, long long n, long long grain)
{
    if (t && t->nth > 1 && t->claim)
        t->claim(t->ctx, BRISK_CLAIM_PASS, n > 0 ? (n + grain - 1) / grain : 0);
}

/* A grain that cuts n items into about `per_thread` chunks per member (at least `min`). */
static inline long long brisk_share_grain(const brisk_team *t, long long n, int per_thread,
                                          long long min)
{
    const long long nth = t ? t->nth : 1, parts = nth > 1 ? nth * per_thread : 1;
    const long long g = (n + parts - 1) / parts;
    return g > min ? g : min;
}

#ifdef __cplusplus
}
#endif

#endif
