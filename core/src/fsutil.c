#include "brisk/fsutil.h"

#include "brisk/error.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

int brisk_make_dirs(const char *path)
{
    char buf[PATH_MAX];
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return brisk_error_set(BRISK_EINVAL, "directory '%s': empty or too long", path);
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
            return brisk_error_set(BRISK_EIO, "cannot create directory %s: %s", buf,
                                   strerror(ENOTDIR));
        buf[i] = saved;
    }
    return BRISK_OK;
}
