/* brisk/comm.h: the processes of one training job.
 *
 * Started by `mpirun -np P` (and built with MPI, BRISK_MPI), a program joins the MPI job: P
 * processes, rank 0 to P - 1, each with its own worker threads. Started any other way it is a
 * job of one. The trainer (brisk/trainer.h) takes the communicator and spreads micro-shards,
 * the reduction and the optimizer state over the processes; results stay bitwise identical
 * for every P x T at a fixed batch and micro-batch.
 *
 * MPI is only called from the thread that called brisk_comm_init (MPI_THREAD_FUNNELED).
 */
#ifndef BRISK_COMM_H
#define BRISK_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_comm brisk_comm;

/* Joins the MPI job when launched by mpirun and built with MPI, else makes a job of one.
 * Returns BRISK_OK with *out (brisk_comm_finalize), or BRISK_EINVAL / BRISK_ENOMEM. */
int brisk_comm_init(int *argc, char ***argv, brisk_comm **out);

/* Leaves the job (MPI_Finalize) and frees; NULL is fine. Every rank must call it. */
void brisk_comm_finalize(brisk_comm *c);

int brisk_comm_rank(const brisk_comm *c); /* 0 for a job of one (and for NULL) */
int brisk_comm_size(const brisk_comm *c); /* 1 for a job of one (and for NULL) */
/* Processes of the job on this machine (they share its cores). */
int brisk_comm_local_size(const brisk_comm *c);

/* 1 if brisk_comm was built with MPI support. */
int brisk_comm_have_mpi(void);

/* Collective: 1 if any rank passes a nonzero flag (e.g. a Ctrl-C seen by one rank). */
int brisk_comm_any(brisk_comm *c, int flag);

/* 1 when an MPI launcher (mpirun) started this process, whether or not the job has several
 * processes: the launcher then gives it a pseudo-terminal even when its output goes to a
 * file, so isatty() cannot tell whether a person is watching. */
int brisk_comm_launched(const brisk_comm *c);

/* The watchdog. Every collective waits at most brisk_comm_timeout() seconds for all ranks;
 * past that the job ends (MPI_Abort) with a message naming the collective, and on rank 0
 * the ranks that did not arrive. A waiting rank spins for a second, then sleeps between
 * checks. seconds > 0 sets a fixed limit; 0 restores the default: the larger of 60 s and 20
 * times the median of the latest step times reported with brisk_comm_note_step (the trainer
 * reports every step). */
void brisk_comm_set_timeout(brisk_comm *c, double seconds);
void brisk_comm_note_step(brisk_comm *c, double seconds);
double brisk_comm_timeout(const brisk_comm *c);

/* Collective: rank 0's len bytes at buf, copied to every rank. */
void brisk_comm_bcast_bytes(brisk_comm *c, void *buf, size_t len);

/* Ends every process of the job at once (MPI_Abort), or exit(code) for a job of one. */
void brisk_comm_abort(brisk_comm *c, int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif
