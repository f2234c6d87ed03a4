#include "comm_internal.h"

#include "brisk/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef BRISK_HAVE_MPI
#include <mpi.h>
#endif

struct brisk_comm {
    int rank, size;
    int local_size; /* processes of the job on this machine */
    int mpi;        /* this process called MPI_Init */
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
#ifdef BRISK_HAVE_MPI
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
    if (c->mpi)
        MPI_Finalize();
#endif
    free(c);
}

int brisk_comm_rank(const brisk_comm *c) { return c ? c->rank : 0; }
int brisk_comm_local_size(const brisk_comm *c) { return c ? c->local_size : 1; }
int brisk_comm_size(const brisk_comm *c) { return c ? c->size : 1; }

/* Collective: the maximum of v over the ranks. */
static int comm_max(brisk_comm *c, int v)
{
#ifdef BRISK_HAVE_MPI
    if (c && c->size > 1) {
        int r = v;
        MPI_Allreduce(&v, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
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
        MPI_Bcast(buf, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
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
        MPI_Alltoallv(send, to_int(send_counts, n, buf), to_int(send_displs, n, buf + n),
                      MPI_FLOAT, recv, to_int(recv_counts, n, buf + 2 * n),
                      to_int(recv_displs, n, buf + 3 * n), MPI_FLOAT, MPI_COMM_WORLD);
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
        MPI_Allgatherv(MPI_IN_PLACE, 0, mpi_type, buf, to_int(counts, n, tmp),
                       to_int(displs, n, tmp + n), mpi_type, MPI_COMM_WORLD);
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
        MPI_Gatherv(mine, (int)counts[c->rank], MPI_FLOAT, buf, to_int(counts, n, tmp),
                    to_int(displs, n, tmp + n), MPI_FLOAT, 0, MPI_COMM_WORLD);
        free(tmp);
        return;
    }
#endif
    (void)c;
    if (buf != mine)
        memcpy(buf + displs[0], mine, counts[0] * sizeof *mine);
}
