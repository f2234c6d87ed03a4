/* Special files as inputs and outputs (brisk/fsutil.h and every reader): a FIFO, a directory,
 * a character device, a symbolic link to a device and /dev/zero are refused, by name, without
 * blocking and before any byte is read; an output replaces only a regular file (through a
 * symbolic link: the file it names) and leaves anything else as it was. An alarm fails a test
 * that blocks instead of hanging the suite. */
#define _GNU_SOURCE /* mknod, makedev, S_IFMT */
#include "test_util.h"

#include "brisk/checkpoint.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char *path_in(const char *name)
{
    char *p = malloc(strlen(test_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", test_dir, name);
    return p;
}

/* A device node to read and write: a null device of our own where we may make one (root),
 * else the system's /dev/null (only ever read from, and written only through the code under
 * test, which must refuse). */
static char *device_path(void)
{
    char *p = path_in("nulldev");
    if (access(p, F_OK) == 0 || mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0)
        return p;
    free(p);
    return strdup("/dev/null");
}

typedef struct special {
    const char *label;
    char *path;
    const char *kind; /* words the refusal must contain */
} special;

/* The special files every reader meets: a FIFO, a directory, a device, a link to a device,
 * a link to /dev/zero. */
static size_t make_specials(special *s)
{
    size_t n = 0;
    char *fifo = path_in("fifo.x");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    s[n++] = (special){"FIFO", fifo, "a FIFO"};
    char *dir = path_in("dir.x");
    assert_int_equal(mkdir(dir, 0700), 0);
    s[n++] = (special){"directory", dir, "a directory"};
    s[n++] = (special){"device", device_path(), "a character device"};
    char *link = path_in("devlink.x");
    assert_int_equal(symlink("/dev/null", link), 0);
    s[n++] = (special){"link to /dev/null", link, "a character device"};
    char *zero = path_in("zero.x");
    assert_int_equal(symlink("/dev/zero", zero), 0);
    s[n++] = (special){"link to /dev/zero", zero, "a character device"};
    return n;
}

static void free_specials(special *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strncmp(s[i].path, "/dev/", 5)) {
            unlink(s[i].path);
            rmdir(s[i].path);
        }
        free(s[i].path);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_files: a reader blocked on a special file\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static void test_readers_refuse_special_files(void **state)
{
    (void)state;
    signal(SIGALRM, on_alarm);
    special s[8];
    const size_t n = make_specials(s);
    for (size_t i = 0; i < n; i++) {
        alarm(10);
        brisk_dataset ds;
        brisk_checkpoint *ck;
        FILE *f;
        uint64_t size;
        float *data;
        int ndim;
        int64_t shape[4];
        print_message("  %s: %s\n", s[i].label, s[i].path);
        assert_brisk_error(brisk_file_open(s[i].path, 0, &f, &size), BRISK_EIO, s[i].path, s[i].kind,
                     "not a regular file");
        assert_brisk_error(brisk_dataset_load_csv(s[i].path, "y", BRISK_TARGET_CLASSES, &ds),
                     BRISK_EIO, s[i].path, s[i].kind);
        assert_brisk_error(brisk_dataset_load_npy(s[i].path, s[i].path, BRISK_TARGET_CLASSES, &ds),
                     BRISK_EIO, s[i].path, s[i].kind);
        assert_brisk_error(brisk_npy_read(s[i].path, &data, &ndim, shape), BRISK_EIO, s[i].kind);
        assert_brisk_error(brisk_idx_load(s[i].path, s[i].path, &ds), BRISK_EIO, s[i].kind);
        assert_brisk_error(brisk_checkpoint_load(s[i].path, &ck), BRISK_EIO, s[i].path, s[i].kind);
        alarm(0);
    }
    free_specials(s, n);
}

static void test_outputs_replace_only_regular_files(void **state)
{
    (void)state;
    signal(SIGALRM, on_alarm);
    special s[8];
    const size_t n = make_specials(s);
    const float v[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < n; i++) {
        alarm(10);
        struct stat before, after;
        assert_int_equal(lstat(s[i].path, &before), 0);
        assert_brisk_error(brisk_npy_write(s[i].path, v, 2, 2), BRISK_EIO, s[i].path, s[i].kind);
        brisk_outfile o;
        assert_brisk_error(brisk_outfile_open(&o, s[i].path), BRISK_EIO, s[i].kind);
        brisk_outfile_abort(&o);
        /* Left as it was: the same kind of file, the same inode. */
        assert_int_equal(lstat(s[i].path, &after), 0);
        assert_int_equal(before.st_mode & S_IFMT, after.st_mode & S_IFMT);
        assert_true(before.st_ino == after.st_ino);
        alarm(0);
    }
    free_specials(s, n);
    /* A link to nothing. */
    char *dangling = path_in("dangling.npy");
    assert_int_equal(symlink("no-such-file.npy", dangling), 0);
    assert_brisk_error(brisk_npy_write(dangling, v, 2, 2), BRISK_EIO, "symbolic link to nothing");
    unlink(dangling);
    free(dangling);
}

static void test_outputs_through_links_and_modes(void **state)
{
    (void)state;
    const float v[4] = {1, 2, 3, 4};
    /* A link to a regular file: that file is replaced, the link kept. */
    char *target = path_in("target.npy"), *link = path_in("link.npy");
    free(test_write_file(test_dir, "target.npy", "old", 3));
    assert_int_equal(chmod(target, 0640), 0);
    assert_int_equal(symlink("target.npy", link), 0);
    assert_int_equal(brisk_npy_write(link, v, 2, 2), BRISK_OK);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(target, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0640); /* the replaced file's permissions kept */
    float *back;
    int ndim;
    int64_t shape[4];
    assert_int_equal(brisk_npy_read(link, &back, &ndim, shape), BRISK_OK);
    assert_int_equal(ndim, 2);
    assert_memory_equal(back, v, sizeof v);
    free(back);
    /* No temporary file is left beside it, after a success or an abort. */
    brisk_outfile o;
    assert_int_equal(brisk_outfile_open(&o, target), BRISK_OK);
    fputs("partial", o.fp);
    brisk_outfile_abort(&o);
    size_t len;
    uint8_t *kept = test_read_file(target, &len);
    assert_int_equal(len, 128 + sizeof v); /* the .npy written above, untouched */
    free(kept);
    char *tmp = path_in("target.npy.tmp.");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ls %s* >/dev/null 2>&1", tmp);
    assert_int_not_equal(system(cmd), 0);
    free(tmp);
    /* A missing directory is a clear error. */
    char *nodir = path_in("no/such/dir/out.npy");
    assert_brisk_error(brisk_npy_write(nodir, v, 2, 2), BRISK_EIO, "out.npy");
    free(nodir);
    unlink(link);
    unlink(target);
    free(link);
    free(target);
}

static void test_file_open_bounds(void **state)
{
    (void)state;
    char *p = test_write_file(test_dir, "ten.bin", "0123456789", 10);
    FILE *f;
    uint64_t size;
    assert_int_equal(brisk_file_open(p, 10, &f, &size), BRISK_OK);
    assert_int_equal(size, 10);
    fclose(f);
    assert_brisk_error(brisk_file_open(p, 9, &f, &size), BRISK_EOVERFLOW, "ten.bin", "10 bytes");
    char *data;
    assert_int_equal(brisk_file_read_all(p, 0, &data, &size), BRISK_OK);
    assert_int_equal(size, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    assert_brisk_error(brisk_file_open("/nonexistent/x", 0, &f, &size), BRISK_ENOENT,
                 "/nonexistent/x");
    unlink(p);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers_refuse_special_files),
        cmocka_unit_test(test_outputs_replace_only_regular_files),
        cmocka_unit_test(test_outputs_through_links_and_modes),
        cmocka_unit_test(test_file_open_bounds),
    };
    return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
