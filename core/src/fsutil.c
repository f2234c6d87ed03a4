#define _GNU_SOURCE /* O_CLOEXEC, realpath */
#include "brisk/fsutil.h"

#include "brisk/ckptdir.h"
#include "brisk/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void brisk_dir_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int brisk_dir_names(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return brisk_error_set(BRISK_EIO, "%s: cannot open the directory: %s", dir,
                               strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char **p = realloc(*names, (*n + 1) * sizeof **names);
            char *copy = p ? strdup(e->d_name) : NULL;
            if (p)
                *names = p;
            if (!copy) {
                closedir(d);
                brisk_dir_names_free(*names, *n);
                *names = NULL;
                *n = 0;
                return brisk_error_set(BRISK_ENOMEM, "%s: out of memory listing it", dir);
            }
            (*names)[(*n)++] = copy;
        }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_name);
    return BRISK_OK;
}

int brisk_make_dirs(const char *path)
{
    char buf[PATH_MAX];
    const size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof buf)
        return brisk_error_set(BRISK_EINVAL, "directory '%s': empty or too long",
                               path ? path : "(null)");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        const char saved = buf[i];
        buf[i] = '\0';
        struct stat st;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return brisk_error_set(BRISK_EIO, "cannot create directory %s: %s", buf,
                                   strerror(errno));
        if (stat(buf, &st) != 0)
            return brisk_error_set(BRISK_EIO, "cannot create directory %s: %s", buf,
                                   strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return brisk_error_set(BRISK_EIO, "cannot create directory %s: it is %s, not a "
                                   "directory", buf, brisk_file_kind(st.st_mode));
        buf[i] = saved;
    }
    return BRISK_OK;
}

const char *brisk_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "a special file";
    }
}

int brisk_file_open(const char *path, uint64_t max_bytes, FILE **fp, uint64_t *size)
{
    if (!path || !fp || !size)
        return brisk_error_set(BRISK_EINVAL, "file_open: NULL argument");
    *fp = NULL;
    *size = 0;
    /* Non-blocking: opening a FIFO for reading would otherwise wait for a writer. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        const int e = errno;
        return brisk_error_set(e == ENOENT ? BRISK_ENOENT : BRISK_EIO, "cannot open %s: %s",
                               path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        close(fd);
        return brisk_error_set(BRISK_EIO, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return brisk_error_set(BRISK_EIO, "cannot read %s: it is %s, not a regular file", path,
                               brisk_file_kind(st.st_mode));
    }
    if (max_bytes && (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return brisk_error_set(BRISK_EOVERFLOW, "%s: %lld bytes, over the limit of %llu for "
                               "this kind of file", path, (long long)st.st_size,
                               (unsigned long long)max_bytes);
    }
    /* Reads of a regular file never block; clear the flag all the same. */
    const int flags = fcntl(fd, F_GETFL);
    FILE *f = flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 ? fdopen(fd, "rb")
                                                                         : NULL;
    if (!f) {
        const int e = errno;
        close(fd);
        return brisk_error_set(BRISK_EIO, "cannot read %s: %s", path, strerror(e));
    }
    *fp = f;
    *size = (uint64_t)st.st_size;
    return BRISK_OK;
}

int brisk_file_read_all(const char *path, uint64_t max_bytes, char **data, uint64_t *size)
{
    if (!data || !size)
        return brisk_error_set(BRISK_EINVAL, "file_read_all: NULL argument");
    *data = NULL;
    *size = 0;
    FILE *f;
    uint64_t n;
    int err = brisk_file_open(path, max_bytes, &f, &n);
    if (err < 0)
        return err;
    if (n >= SIZE_MAX) {
        fclose(f);
        return brisk_error_set(BRISK_EOVERFLOW, "%s: too large to read into memory", path);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %llu bytes", path,
                               (unsigned long long)n);
    }
    const size_t got = fread(buf, 1, (size_t)n, f);
    const int failed = ferror(f);
    fclose(f);
    if (got != n) {
        free(buf);
        return brisk_error_set(BRISK_EIO, "%s: %s after %zu of %llu bytes", path,
                               failed ? "read error" : "the file shrank while it was read", got,
                               (unsigned long long)n);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return BRISK_OK;
}

int brisk_outfile_open(brisk_outfile *o, const char *path)
{
    if (!o)
        return brisk_error_set(BRISK_EINVAL, "outfile_open: NULL outfile");
    memset(o, 0, sizeof *o);
    if (!path || !*path || strlen(path) >= sizeof o->path)
        return brisk_error_set(BRISK_EINVAL, "output file '%s': empty or too long",
                               path ? path : "(null)");
    snprintf(o->path, sizeof o->path, "%s", path);
    struct stat st;
    mode_t mode = 0666; /* a new file: 0666 before the umask, as fopen makes it */
    int keep_mode = 0;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            /* Follow the link: the file it names is what gets replaced. */
            char real[PATH_MAX];
            struct stat target;
            if (!realpath(path, real) || stat(real, &target) != 0)
                return brisk_error_set(BRISK_EIO, "cannot write %s: it is a symbolic link to "
                                       "nothing that exists (%s), not a regular file", path,
                                       strerror(errno));
            if (!S_ISREG(target.st_mode))
                return brisk_error_set(BRISK_EIO, "cannot write %s: it is a symbolic link to "
                                       "%s (%s), not a regular file", path,
                                       brisk_file_kind(target.st_mode), real);
            snprintf(o->path, sizeof o->path, "%s", real);
            st = target;
        } else if (!S_ISREG(st.st_mode)) {
            return brisk_error_set(BRISK_EIO, "cannot write %s: it is %s, not a regular file "
                                   "(Brisk writes only regular files)", path,
                                   brisk_file_kind(st.st_mode));
        }
        mode = st.st_mode & 07777;
        keep_mode = 1;
    } else if (errno != ENOENT) {
        return brisk_error_set(BRISK_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    char host[256];
    brisk_host_tag(host, sizeof host);
    if ((size_t)snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%s.%ld", o->path, host,
                         (long)getpid()) >= sizeof o->tmp)
        return brisk_error_set(BRISK_EINVAL, "output file '%s': path too long", path);
    /* A leftover of this very process (an earlier failed attempt) may be replaced. */
    unlink(o->tmp);
    const int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) {
        const int e = errno;
        o->tmp[0] = '\0';
        return brisk_error_set(BRISK_EIO, "cannot create a temporary file beside %s: %s",
                               o->path, strerror(e));
    }
    if (keep_mode)
        (void)fchmod(fd, mode); /* the umask applied at open; the old file's bits win */
    if (!(o->fp = fdopen(fd, "wb"))) {
        const int e = errno;
        close(fd);
        unlink(o->tmp);
        o->tmp[0] = '\0';
        return brisk_error_set(BRISK_EIO, "cannot write %s: %s", o->path, strerror(e));
    }
    return BRISK_OK;
}

/* fsyncs the directory holding path, so that a rename into it is durable. */
static void sync_parent(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

int brisk_outfile_commit(brisk_outfile *o)
{
    if (!o || !o->fp)
        return brisk_error_set(BRISK_EINVAL, "outfile_commit: no file open");
    FILE *f = o->fp;
    o->fp = NULL;
    int ok = !ferror(f) && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = ok ? 0 : errno ? errno : EIO;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(o->tmp, o->path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(o->tmp);
        o->tmp[0] = '\0';
        return brisk_error_set(BRISK_EIO, "cannot write %s: %s", o->path, strerror(e));
    }
    o->tmp[0] = '\0';
    sync_parent(o->path);
    return BRISK_OK;
}

void brisk_outfile_abort(brisk_outfile *o)
{
    if (!o)
        return;
    if (o->fp)
        fclose(o->fp);
    o->fp = NULL;
    if (o->tmp[0])
        unlink(o->tmp);
    o->tmp[0] = '\0';
}

/* ---- Locks ---------------------------------------------------------------------------- */

struct brisk_lock {
    int fd;
    char path[]; /* removed at release */
};

int brisk_lock_take(const char *path, brisk_lock **out)
{
    if (!path || !out)
        return brisk_error_set(BRISK_EINVAL, "lock_take: NULL argument");
    *out = NULL;
    /* The holder removes the file when it releases the lock, so a process that locked a file
     * just removed (it opened it before the removal) tries again with the new one. */
    for (int attempt = 0;; attempt++) {
        const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0666);
        struct stat st, now;
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            const int e = errno;
            if (fd >= 0)
                close(fd);
            return brisk_error_set(BRISK_EIO, "cannot lock %s: %s", path,
                                   fd < 0 ? strerror(e) : "it is not a regular file");
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            char who[256] = "";
            const ssize_t n = pread(fd, who, sizeof who - 1, 0);
            close(fd);
            if (e != EWOULDBLOCK)
                return brisk_error_set(BRISK_EIO, "cannot lock %s: %s", path, strerror(e));
            who[n > 0 ? n : 0] = '\0';
            who[strcspn(who, "\r\n")] = '\0';
            char *host = strchr(who, ' ');
            if (host)
                *host++ = '\0';
            return brisk_error_set(BRISK_EBUSY, "process %s on host %s holds the lock %s",
                                   who[0] ? who : "(unknown)",
                                   host && *host ? host : "(unknown)", path);
        }
        if (stat(path, &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
            close(fd);
            if (attempt < 100)
                continue;
            return brisk_error_set(BRISK_EIO, "cannot lock %s: it keeps being replaced", path);
        }
        char host[256], line[320];
        brisk_host_tag(host, sizeof host);
        const int len = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), host);
        brisk_lock *l = malloc(sizeof *l + strlen(path) + 1);
        if (!l || ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
            const int e = l ? errno : ENOMEM;
            free(l);
            close(fd);
            return brisk_error_set(l ? BRISK_EIO : BRISK_ENOMEM, "cannot write %s: %s", path,
                                   strerror(e));
        }
        l->fd = fd;
        strcpy(l->path, path);
        *out = l;
        return BRISK_OK;
    }
}

void brisk_lock_release(brisk_lock *lock)
{
    if (!lock)
        return;
    unlink(lock->path); /* while still held: see brisk_lock_take */
    close(lock->fd);    /* releases the flock */
    free(lock);
}

/* ---- Failpoints ----------------------------------------------------------------------- */

static const char *fp_spec;       /* BRISK_FAILPOINT, or NULL */
static char fp_name[128];
static long fp_hit_at = 1;
static int fp_stop;
static _Atomic long fp_hits;
static pthread_once_t fp_once = PTHREAD_ONCE_INIT;

static void fp_init(void)
{
    const char *s = getenv("BRISK_FAILPOINT");
    if (!s || !*s)
        return;
    const size_t n = strcspn(s, "@:");
    if (n == 0 || n >= sizeof fp_name)
        return;
    memcpy(fp_name, s, n);
    fp_name[n] = '\0';
    const char *p = s + n;
    if (*p == '@') {
        char *end;
        fp_hit_at = strtol(p + 1, &end, 10);
        p = end;
    }
    fp_stop = !strcmp(p, ":stop");
    fp_spec = s;
}

void brisk_failpoint(const char *name)
{
    pthread_once(&fp_once, fp_init);
    if (!fp_spec || strcmp(name, fp_name))
        return;
    if (atomic_fetch_add(&fp_hits, 1) + 1 == fp_hit_at)
        raise(fp_stop ? SIGSTOP : SIGKILL);
}
