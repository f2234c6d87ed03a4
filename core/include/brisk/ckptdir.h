/* brisk/ckptdir.h: a directory of checkpoints shared safely by several runs.
 *
 * Every run has an id (brisk_run_id: the start time and 24 random bits, unique even for
 * runs started in the same second on machines sharing a directory), and its checkpoints are
 * named ckpt-<run>-step<step, 10 digits>.safetensors. A run prunes only its own checkpoints,
 * never the one it just wrote and never those of a later step (left by a timeline that a
 * resume from an older checkpoint abandoned: they are overwritten, not deleted, when the new
 * timeline reaches their step). Temporary files being written are named
 * <checkpoint>.tmp.<host>.<pid>; brisk_ckpt_clean_temps removes those of dead processes of
 * this host.
 */
#ifndef BRISK_CKPTDIR_H
#define BRISK_CKPTDIR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BRISK_RUN_ID_MAX 64

/* A new run id, "<YYYYmmdd>-<HHMMSS>-<6 hex digits>", into id (BRISK_RUN_ID_MAX bytes). */
void brisk_run_id(char *id);

/* 1 if id is a run id Brisk could have made (letters, digits, '-', '_'; 1..63 chars). */
int brisk_run_id_valid(const char *id);

/* The path of run's checkpoint at step in dir, into path (size bytes). Returns BRISK_OK or
 * BRISK_EINVAL (the path does not fit, or run is not a valid id). */
int brisk_ckpt_path(char *path, size_t size, const char *dir, const char *run, int64_t step);

typedef struct brisk_ckpt_entry {
    char run[BRISK_RUN_ID_MAX];
    int64_t step;
    char name[BRISK_RUN_ID_MAX + 40]; /* file name in the directory */
} brisk_ckpt_entry;

/* The checkpoints in dir (of one run, or of all when run is NULL), sorted by run, then step.
 * *out is malloc'd (free()), *n entries; a missing directory is an empty list. Returns
 * BRISK_OK, BRISK_EIO (with the directory and errno) or BRISK_ENOMEM. */
int brisk_ckpt_list(const char *dir, const char *run, brisk_ckpt_entry **out, size_t *n);

/* Removes run's checkpoints in dir older than the `keep` newest with steps <= step, never the
 * one at step itself. keep >= 1. Returns the number removed, or BRISK_EINVAL / BRISK_EIO
 * (the first file that could not be removed). */
int brisk_ckpt_prune(const char *dir, const char *run, int keep, int64_t step);

/* The newest checkpoint in dir into path: of run, or, when run is NULL, of the only run
 * there. Returns BRISK_OK; BRISK_ENOENT when there is none; BRISK_EMISMATCH when run is NULL
 * and several runs have checkpoints there (the detail lists each run's newest file). */
int brisk_ckpt_newest(const char *dir, const char *run, char *path, size_t size);

/* Removes ckpt-*.safetensors.tmp.<host>.<pid> files in dir left by processes of this host
 * that no longer run. Returns the number removed (a missing directory: 0). */
int brisk_ckpt_clean_temps(const char *dir);

/* This host's name as it appears in temporary file names (characters other than letters,
 * digits, '.', '_' and '-' replaced by '_'), into buf (size bytes). */
void brisk_host_tag(char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
