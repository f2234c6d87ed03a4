/* Private to brisk_parallel: the collective operations the trainer uses. All are called by
 * the thread that initialised the communicator, never by pool workers. */
#ifndef BRISK_COMM_INTERNAL_H
#define BRISK_COMM_INTERNAL_H

#include "brisk/comm.h"

#include <stddef.h>

/* Each rank sends send_counts[q] floats at send + send_displs[q] to rank q and receives
 * recv_counts[r] floats at recv + recv_displs[r] from rank r. */
void brisk__comm_alltoallv(brisk_comm *c, const float *send, const size_t *send_counts,
                           const size_t *send_displs, float *recv, const size_t *recv_counts,
                           const size_t *recv_displs);

/* What the elements of a collective are. */
typedef enum brisk__comm_type {
    BRISK__COMM_FLOAT,
    BRISK__COMM_DOUBLE,
    BRISK__COMM_BYTE,
} brisk__comm_type;

/* Rank r contributes counts[r] elements, which land at buf + displs[r] (in elements) on every
 * rank (its own part is already in place). */
void brisk__comm_allgatherv(brisk_comm *c, void *buf, const size_t *counts, const size_t *displs,
                            brisk__comm_type type);

/* Rank r's counts[r] floats at mine are gathered to buf + displs[r] on rank 0 (buf may be
 * NULL elsewhere). */
void brisk__comm_gatherv_float(brisk_comm *c, const float *mine, float *buf,
                               const size_t *counts, const size_t *displs);

#endif
