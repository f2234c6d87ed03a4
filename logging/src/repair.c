/* Event-file directories (brisk/logger.h): cutting torn records off their files
 * (brisk_log_repair), and whether they hold any. */
#define _GNU_SOURCE /* O_CLOEXEC, DT_DIR */
#include "brisk/logger.h"

#include "brisk/crc32c.h"
#include "brisk/error.h"
#include "brisk/message.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct repair {
    void (*message)(void *user, const char *line);
    void *user;
    int cut;
    int err;
} repair;

#define say(r, ...) brisk_message((r)->message, (r)->user, __VA_ARGS__)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walks the framing of one file (lengths and their CRCs, without reading the data) and cuts
 * an incomplete last record. */
static void repair_file(repair *r, const char *path)
{
    const int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return; /* not a file Brisk wrote: left alone */
    }
    const uint64_t size = (uint64_t)st.st_size;
    uint64_t off = 0;
    while (off < size) {
        uint8_t h[12];
        if (size - off < 12 || pread(fd, h, 12, (off_t)off) != 12)
            break; /* torn in the header */
        if (brisk_crc32c_mask(brisk_crc32c(0, h, 8)) != le32(h + 8)) {
            say(r, "%s: the record at byte %llu has a bad length CRC: the file is damaged "
                   "(left as it is)", path, (unsigned long long)off);
            close(fd);
            return;
        }
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--)
            len = len << 8 | h[i];
        if (len > size - off - 12 || size - off - 12 - len < 4)
            break; /* torn in the data */
        off += 16 + len;
    }
    if (off < size) {
        if (ftruncate(fd, (off_t)off) != 0) {
            r->err = brisk_error_set(BRISK_EIO, "cannot cut the torn record off %s: %s", path,
                                     strerror(errno));
        } else {
            r->cut++;
            say(r, "%s: cut a torn last record (%llu bytes, from a process killed while "
                   "writing it); the file now ends at its last whole record",
                path, (unsigned long long)(size - off));
        }
    }
    close(fd);
}

/* The event files in dir, and, when depth > 0, in its subdirectories. */
static void repair_dir(repair *r, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0)
            repair_dir(r, path, depth - 1);
        else if (S_ISREG(st.st_mode) && strstr(e->d_name, "tfevents"))
            repair_file(r, path);
    }
    closedir(d);
}

int brisk_log_repair(const char *logdir, void (*message)(void *user, const char *line),
                     void *user)
{
    if (!logdir)
        return brisk_error_set(BRISK_EINVAL, "log_repair: NULL logdir");
    repair r = {.message = message, .user = user};
    repair_dir(&r, logdir, 1);
    return r.err < 0 ? r.err : r.cut;
}

int brisk_log_dir_has_events(const char *logdir)
{
    DIR *d = logdir ? opendir(logdir) : NULL;
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[PATH_MAX];
        struct stat st;
        found = strstr(e->d_name, "tfevents") != NULL;
        if (!found && (size_t)snprintf(path, sizeof path, "%s/%s", logdir, e->d_name) <
                          sizeof path &&
            lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *sub = opendir(path);
            struct dirent *f;
            while (sub && !found && (f = readdir(sub)))
                found = strstr(f->d_name, "tfevents") != NULL;
            if (sub)
                closedir(sub);
        }
    }
    closedir(d);
    return found;
}
