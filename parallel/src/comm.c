#include "comm_internal.h"

#include "brisk/clock.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef BRISK_HAVE_MPI
#include <mpi.h>
#endif

/* The watchdog: every collective is started non-blocking and waited on here, MPI_Test in a
 * loop, spinning for at most SPIN_SECONDS and then sleeping a millisecond between tests, so
 * that a rank waiting for a hung one takes almost no CPU. Past the timeout the job ends with
 * a message. To name the ranks that did not arrive, every rank tells rank 0 (a small
 * non-blocking send, tag HEARTBEAT_TAG) the number of each collective it starts, and again
 * every LIVE_SECONDS while it waits for one; rank 0 reads them while it waits. A rank that
 * has not started the collective did not arrive; when all have started it, the ranks not
 * heard from for SILENT_SECONDS are the ones that stopped inside it (a rank stopped after
 * starting an all-gather holds up the others as well). Other ranks give rank 0 a few seconds
 * more to say so first. */
#define SPIN_SECONDS 1.0
#define FLOOR_SECONDS 60.0
#define STEP_MULTIPLE 20.0
#define GRACE_SECONDS 5.0
#define HEARTBEAT_TAG 7311
#define LIVE_SECONDS 1.0
#define SILENT_SECONDS 3.0
#define STEP_WINDOW 32
#define ABSENT_SECONDS 0.5

struct brisk_comm {
    int rank, size;
    int local_size;    /* processes of the job on this machine */
    int mpi;           /* this process called MPI_Init */
    int launched;      /* started by an MPI launcher (mpirun) */
    double timeout;    /* > 0: fixed seconds per collective; 0: the default (see comm.h) */
    double steps[STEP_WINDOW]; /* the latest step times, for the default */
    int n_steps;
    uint64_t seq;      /* collectives this rank has started */
    uint64_t *arrived; /* rank 0: the latest collective each rank has started */
    double *heard;     /* rank 0: when each rank was last heard from */
    double last_beat;  /* when this rank last told rank 0 */
#ifdef BRISK_HAVE_MPI
    MPI_Request heartbeat;
    uint64_t heartbeat_value;
#endif
};

int brisk_comm_have_mpi(void)
{
#ifdef BRISK_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

/* Launched by an MPI launcher? (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; Hydra and
 * Slurm's PMI set PMI_SIZE.) Joining a job of one would start an MPI runtime for nothing. */
static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL ||
           getenv("PMIX_RANK") != NULL;
}

int brisk_comm_init(int *argc, char ***argv, brisk_comm **out)
{
    *out = NULL;
    brisk_comm *c = calloc(1, sizeof *c);
    if (!c)
        return brisk_error_set(BRISK_ENOMEM, "comm: out of memory");
    c->size = 1;
    c->local_size = 1;
    c->launched = launched_by_mpirun();
#ifdef BRISK_HAVE_MPI
    c->heartbeat = MPI_REQUEST_NULL;
    if (launched_by_mpirun()) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(c);
            return brisk_error_set(BRISK_EINVAL, "comm: MPI_Init_thread failed");
        }
        c->mpi = 1;
        /* Errors end the job with a message instead of hanging a rank. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
        MPI_Comm_size(node, &c->local_size);
        MPI_Comm_free(&node);
        if (c->rank == 0 && (!(c->arrived = calloc((size_t)c->size, sizeof *c->arrived)) ||
                             !(c->heard = calloc((size_t)c->size, sizeof *c->heard)))) {
            MPI_Finalize();
            free(c);
            return brisk_error_set(BRISK_ENOMEM, "comm: out of memory");
        }
    }
#else
    (void)argc;
    (void)argv;
    if (launched_by_mpirun() && getenv("OMPI_COMM_WORLD_SIZE") &&
        atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
        free(c);
        return brisk_error_set(BRISK_EINVAL, "comm: started by mpirun with %s processes, but "
                               "this build has no MPI support (configure with "
                               "-DBRISK_MPI=ON and libopenmpi-dev installed)",
                               getenv("OMPI_COMM_WORLD_SIZE"));
    }
#endif
    *out = c;
    return BRISK_OK;
}

void brisk_comm_finalize(brisk_comm *c)
{
    if (!c)
        return;
#ifdef BRISK_HAVE_MPI
    if (c->mpi) {
        if (c->heartbeat != MPI_REQUEST_NULL)
            MPI_Wait(&c->heartbeat, MPI_STATUS_IGNORE);
        /* Everyone has sent its last heartbeat: rank 0 reads what is left, so that no message
         * is pending at MPI_Finalize. */
        MPI_Barrier(MPI_COMM_WORLD);
        if (c->rank == 0) {
            int flag = 1;
            while (flag) {
                MPI_Iprobe(MPI_ANY_SOURCE, HEARTBEAT_TAG, MPI_COMM_WORLD, &flag,
                           MPI_STATUS_IGNORE);
                uint64_t v;
                if (flag)
                    MPI_Recv(&v, 1, MPI_UINT64_T, MPI_ANY_SOURCE, HEARTBEAT_TAG,
                             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
        }
        MPI_Finalize();
    }
#endif
    free(c->arrived);
    free(c->heard);
    free(c);
}

int brisk_comm_launched(const brisk_comm *c) { return c ? c->launched : 0; }

void brisk_comm_set_timeout(brisk_comm *c, double seconds)
{
    if (c)
        c->timeout = seconds > 0 ? seconds : 0;
}

void brisk_comm_note_step(brisk_comm *c, double seconds)
{
    if (!c || !(seconds >= 0))
        return;
    c->steps[c->n_steps % STEP_WINDOW] = seconds;
    c->n_steps++;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double brisk_comm_timeout(const brisk_comm *c)
{
    if (!c)
        return 0;
    if (c->timeout > 0)
        return c->timeout;
    double t = FLOOR_SECONDS;
    const int n = c->n_steps < STEP_WINDOW ? c->n_steps : STEP_WINDOW;
    if (n > 0) {
        double v[STEP_WINDOW];
        memcpy(v, c->steps, (size_t)n * sizeof *v);
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        if (STEP_MULTIPLE * v[n / 2] > t)
            t = STEP_MULTIPLE * v[n / 2];
    }
    return t;
}

int brisk_comm_rank(const brisk_comm *c) { return c ? c->rank : 0; }
int brisk_comm_local_size(const brisk_comm *c) { return c ? c->local_size : 1; }
int brisk_comm_size(const brisk_comm *c) { return c ? c->size : 1; }

#ifdef BRISK_HAVE_MPI
/* Rank 0: reads the heartbeats that have come in. */
static void read_heartbeats(brisk_comm *c)
{
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, HEARTBEAT_TAG, MPI_COMM_WORLD, &flag, &st);
        if (!flag)
            return;
        uint64_t v;
        MPI_Recv(&v, 1, MPI_UINT64_T, st.MPI_SOURCE, HEARTBEAT_TAG, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (v > c->arrived[st.MPI_SOURCE])
            c->arrived[st.MPI_SOURCE] = v;
        c->heard[st.MPI_SOURCE] = brisk_now_seconds();
    }
}

/* Tells rank 0 the collective this rank is in. With wait == 0, only if the last word has
 * gone (never blocks). */
static void beat(brisk_comm *c, int wait)
{
    if (c->heartbeat != MPI_REQUEST_NULL) {
        int done = 0;
        if (wait)
            MPI_Wait(&c->heartbeat, MPI_STATUS_IGNORE); /* one word, sent eagerly */
        else if (MPI_Test(&c->heartbeat, &done, MPI_STATUS_IGNORE), !done)
            return;
    }
    c->heartbeat_value = c->seq;
    MPI_Isend(&c->heartbeat_value, 1, MPI_UINT64_T, 0, HEARTBEAT_TAG, MPI_COMM_WORLD,
              &c->heartbeat);
    c->last_beat = brisk_now_seconds();
}

/* A collective starts: count it, and tell rank 0. */
static void begin(brisk_comm *c)
{
    c->seq++;
    if (c->rank == 0) {
        c->arrived[0] = c->seq;
        return;
    }
    beat(c, 1);
}

/* Waits for a collective, within the timeout; past it, ends the job with a message. Time
 * this rank itself did not run (stopped with SIGSTOP, or starved of CPU: a gap of more than
 * ABSENT_SECONDS between two turns of a loop that sleeps a millisecond) is not counted: it
 * is not the others' lateness, and they may well still be waiting in the collective. */
static void finish(brisk_comm *c, MPI_Request *req, const char *what)
{
    const double t0 = brisk_now_seconds(), limit = brisk_comm_timeout(c);
    const double deadline = limit + (c->rank == 0 ? 0 : GRACE_SECONDS);
    double last = t0, absent = 0;
    if (c->rank == 0)
        brisk_failpoint("comm-wait"); /* a test stops rank 0 here, inside the wait */
    for (;;) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        if (c->rank == 0)
            read_heartbeats(c);
        else if (brisk_now_seconds() - c->last_beat >= LIVE_SECONDS)
            beat(c, 0);
        const double now = brisk_now_seconds();
        if (now - last > ABSENT_SECONDS)
            absent += now - last;
        last = now;
        const double waited = now - t0 - absent;
        if (waited > deadline)
            break;
        if (waited > SPIN_SECONDS)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    char missing[512] = "";
    size_t at = 0;
    int n_missing = 0, inside = 0;
    for (int r = 0; c->rank == 0 && r < c->size && at < sizeof missing; r++)
        if (c->arrived[r] < c->seq) {
            at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", n_missing ? ", " : "",
                                   r);
            n_missing++;
        }
    /* Every rank started it: name those that went silent inside it. */
    const double now = brisk_now_seconds();
    for (int r = 1; c->rank == 0 && !n_missing && r < c->size && at < sizeof missing; r++)
        if (now - c->heard[r] > SILENT_SECONDS) {
            at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", inside ? ", " : "",
                                   r);
            inside++;
        }
    char self[96] = "";
    if (absent > 0)
        snprintf(self, sizeof self, " (and this rank itself was not running for %.0f s more)",
                 absent);
    if (c->rank == 0)
        fprintf(stderr, "brisk: rank 0: the %s (collective %llu) waited %.0f s%s: rank%s %s did "
                        "not arrive (%s); ending the job (the limit: --mpi-timeout, or "
                        "brisk_comm_set_timeout)\n",
                what, (unsigned long long)c->seq, limit, self, n_missing + inside == 1 ? "" : "s",
                n_missing || inside ? missing : "(unknown)",
                inside ? "started it, then went silent: stopped or hung?" : "stopped or hung?");
    else
        fprintf(stderr, "brisk: rank %d: the %s (collective %llu) waited %.0f s%s: a rank did "
                        "not arrive (rank 0 names it, unless it is rank 0 that did not); ending "
                        "the job\n",
                c->rank, what, (unsigned long long)c->seq, deadline, self);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}
#endif

/* Collective: the maximum of v over the ranks. */
static int comm_max(brisk_comm *c, int v)
{
#ifdef BRISK_HAVE_MPI
    if (c && c->size > 1) {
        int r = v;
        MPI_Request req;
        begin(c);
        MPI_Iallreduce(&v, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req);
        finish(c, &req, "all-reduce of the stop flag");
        return r;
    }
#else
    (void)c;
#endif
    return v;
}

int brisk_comm_any(brisk_comm *c, int flag)
{
    return comm_max(c, flag != 0);
}

void brisk_comm_bcast_bytes(brisk_comm *c, void *buf, size_t len)
{
#ifdef BRISK_HAVE_MPI
    if (c && c->size > 1) {
        BRISK_ASSERT(len <= INT32_MAX);
        MPI_Request req;
        begin(c);
        MPI_Ibcast(buf, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        finish(c, &req, "broadcast");
    }
#else
    (void)c, (void)buf, (void)len;
#endif
}

void brisk_comm_abort(brisk_comm *c, int code)
{
#ifdef BRISK_HAVE_MPI
    if (c && c->size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)c;
#endif
    exit(code);
}

#ifdef BRISK_HAVE_MPI
/* MPI counts are int: Brisk's messages stay far below 2^31 elements, checked here. */
static int *to_int(const size_t *v, int n, int *tmp)
{
    for (int i = 0; i < n; i++) {
        BRISK_ASSERT(v[i] <= INT32_MAX);
        tmp[i] = (int)v[i];
    }
    return tmp;
}
#endif

void brisk__comm_alltoallv(brisk_comm *c, const float *send, const size_t *send_counts,
                           const size_t *send_displs, float *recv, const size_t *recv_counts,
                           const size_t *recv_displs)
{
#ifdef BRISK_HAVE_MPI
    if (c->size > 1) {
        int *buf = malloc(4 * (size_t)c->size * sizeof *buf);
        BRISK_ASSERT(buf);
        const int n = c->size;
        MPI_Request req;
        begin(c);
        MPI_Ialltoallv(send, to_int(send_counts, n, buf), to_int(send_displs, n, buf + n),
                       MPI_FLOAT, recv, to_int(recv_counts, n, buf + 2 * n),
                       to_int(recv_displs, n, buf + 3 * n), MPI_FLOAT, MPI_COMM_WORLD, &req);
        finish(c, &req, "all-to-all of the gradient slices");
        free(buf);
        return;
    }
#endif
    (void)c;
    (void)recv_counts;
    memcpy(recv + recv_displs[0], send + send_displs[0], send_counts[0] * sizeof *send);
}

void brisk__comm_allgatherv(brisk_comm *c, void *buf, const size_t *counts, const size_t *displs,
                            brisk__comm_type type)
{
#ifdef BRISK_HAVE_MPI
    if (c->size > 1) {
        const MPI_Datatype mpi_type = type == BRISK__COMM_FLOAT    ? MPI_FLOAT
                                      : type == BRISK__COMM_DOUBLE ? MPI_DOUBLE
                                                                   : MPI_BYTE;
        const int n = c->size;
        int *tmp = malloc(2 * (size_t)n * sizeof *tmp);
        BRISK_ASSERT(tmp);
        MPI_Request req;
        begin(c);
        MPI_Iallgatherv(MPI_IN_PLACE, 0, mpi_type, buf, to_int(counts, n, tmp),
                        to_int(displs, n, tmp + n), mpi_type, MPI_COMM_WORLD, &req);
        finish(c, &req,
               type == BRISK__COMM_FLOAT    ? "all-gather of the parameters"
               : type == BRISK__COMM_DOUBLE ? "all-gather of the gradient norms"
                                            : "all-gather of the shards' metrics or statistics");
        free(tmp);
    }
#else
    (void)c, (void)buf, (void)counts, (void)displs, (void)type;
#endif
}

void brisk__comm_gatherv_float(brisk_comm *c, const float *mine, float *buf,
                               const size_t *counts, const size_t *displs)
{
#ifdef BRISK_HAVE_MPI
    if (c->size > 1) {
        const int n = c->size;
        int *tmp = malloc(2 * (size_t)n * sizeof *tmp);
        BRISK_ASSERT(tmp);
        MPI_Request req;
        begin(c);
        MPI_Igatherv(mine, (int)counts[c->rank], MPI_FLOAT, buf, to_int(counts, n, tmp),
                     to_int(displs, n, tmp + n), MPI_FLOAT, 0, MPI_COMM_WORLD, &req);
        finish(c, &req, "gather of the optimizer state to rank 0");
        free(tmp);
        return;
    }
#endif
    (void)c;
    if (buf != mine)
        memcpy(buf + displs[0], mine, counts[0] * sizeof *mine);
}
