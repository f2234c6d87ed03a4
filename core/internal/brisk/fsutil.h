/* brisk/fsutil.h: the one way Brisk opens a file to read, writes a file, and makes a directory.
 *
 * Every reader (data sets, checkpoints, settings, event files) opens its input with
 * brisk_file_open: anything but a regular file (a FIFO, a device, a directory, a socket, or a
 * symbolic link to one of them) is refused before a byte is read, without blocking, and the
 * size the file had when it was opened bounds what the reader reads. Every output goes through
 * a brisk_outfile: written to a temporary file beside it, made durable, then renamed over the
 * target, which must be a regular file or not exist (a symbolic link is followed and its
 * target file replaced); a device, a FIFO or a directory at the target is refused and left as
 * it is.
 */
#ifndef BRISK_FSUTIL_H
#define BRISK_FSUTIL_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates each missing component of path (mode 0777 before the umask). Returns
 * BRISK_OK, BRISK_EINVAL (empty or too long) or BRISK_EIO with a detail naming the component
 * that could not be made and why ("it is a regular file, not a directory"). */
int brisk_make_dirs(const char *path);

/* The entries of a directory but "." and "..", sorted by strcmp: *names (each and the array
 * the caller's to free; brisk_dir_names_free) and *n. Returns BRISK_OK, BRISK_EIO (the
 * detail names the directory and why) or BRISK_ENOMEM. */
int brisk_dir_names(const char *dir, char ***names, size_t *n);
void brisk_dir_names_free(char **names, size_t n);

/* What a stat mode is, for messages: "a directory", "a FIFO", "a character device", "a block
 * device", "a socket", "a symbolic link", "a regular file" or "a special file". */
const char *brisk_file_kind(unsigned mode);

/* Opens path for reading. Refuses, without blocking and before reading, a path that is not a
 * regular file after following symbolic links (the detail says what it is: "is a FIFO, not a
 * regular file"), and a file larger than max_bytes (0: no limit). On success *fp (the
 * caller's to fclose) reads the file from its start and *size is its size at the open: a
 * reader reads no more than that, so a file that grows while it is read cannot make it read
 * without end. Returns BRISK_OK, BRISK_ENOENT (missing), BRISK_EIO (cannot be opened, or not
 * a regular file) or BRISK_EOVERFLOW (over max_bytes); every detail names the path. */
int brisk_file_open(const char *path, uint64_t max_bytes, FILE **fp, uint64_t *size);

/* Reads a whole regular file (brisk_file_open's checks, at most max_bytes) into *data, the
 * caller's to free(), with a NUL byte after its *size bytes. */
int brisk_file_read_all(const char *path, uint64_t max_bytes, char **data, uint64_t *size);

/* An output file being written: fp writes a temporary file beside the target, named
 * <target>.tmp.<host>.<pid> (brisk_ckpt_clean_temps knows the pattern); commit renames it
 * over the target. */
typedef struct brisk_outfile {
    FILE *fp;
    char path[4096]; /* the file replaced: the target, or the file a symbolic link names */
    char tmp[4096 + 320];
} brisk_outfile;

/* Checks the target and creates the temporary file. The target must not exist (its directory
 * must), or be a regular file, or a symbolic link to one (then that file is replaced and the
 * link kept); a directory, FIFO, device or socket, or a link to one or to nothing, is refused
 * with BRISK_EIO naming what it is. A replaced file keeps its permission bits. Returns
 * BRISK_OK with o->fp open, or BRISK_EINVAL (NULL or a path too long) / BRISK_EIO. */
int brisk_outfile_open(brisk_outfile *o, const char *path);

/* Flushes, fsyncs and closes the temporary file, renames it over the target and fsyncs the
 * directory: afterwards the target is the new file, durably; on any failure (a write error
 * fp met earlier included) the temporary file is removed, the target is left as it was, and
 * BRISK_EIO names the file and the reason. */
int brisk_outfile_commit(brisk_outfile *o);

/* Closes and removes the temporary file; the target is left as it was. Safe on an outfile
 * that failed to open or was committed. */
void brisk_outfile_abort(brisk_outfile *o);

/* One live writer: brisk_lock_take takes an exclusive lock (flock) on the file at path (a
 * run's log directory's brisk.lock, say), which it creates, and writes "<pid> <host>" into
 * it. The lock lasts until brisk_lock_release, which removes the file, or the end of the
 * process (a killed process holds none and leaves the file, which does not lock). Returns BRISK_OK with *out (the caller's), BRISK_EBUSY when
 * another process holds it (the detail names that process and its host, from the file), or
 * BRISK_EIO (the file could not be made or is not a regular file). Locks are advisory: they
 * keep Brisk programs apart, across machines where the file system supports flock. */
typedef struct brisk_lock brisk_lock;
int brisk_lock_take(const char *path, brisk_lock **out);
void brisk_lock_release(brisk_lock *lock); /* NULL is fine */

/* A test hook for kill tests: when the environment variable BRISK_FAILPOINT is NAME, or
 * NAME@K (the K-th time the point is reached, counted per process), the process sends itself
 * SIGKILL there; with NAME[@K]:stop it sends SIGSTOP instead (and goes on when continued).
 * Costs a comparison of two pointers when the variable is unset. Brisk's points are listed in
 * docs/architecture.md. */
void brisk_failpoint(const char *name);

#ifdef __cplusplus
}
#endif

#endif
