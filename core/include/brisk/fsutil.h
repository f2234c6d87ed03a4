/* brisk/fsutil.h: file-system helpers shared by the modules and programs. */
#ifndef BRISK_FSUTIL_H
#define BRISK_FSUTIL_H

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates each missing component of path (mode 0777 before the umask). Returns
 * BRISK_OK, BRISK_EINVAL (empty or too long) or BRISK_EIO with a detail naming the component
 * that could not be made and why (an existing non-directory gives "Not a directory"). */
int brisk_make_dirs(const char *path);

#ifdef __cplusplus
}
#endif

#endif
