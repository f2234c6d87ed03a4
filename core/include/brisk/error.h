/* brisk/error.h: error codes, messages and the always-on assertion.
 *
 * Library functions that can fail at run time return a negative BRISK_E* code and leave a
 * human-readable detail (file, field, offset, what was expected) in a per-thread buffer that
 * brisk_error_detail() returns. Only programs under apps/ and bench/ may exit().
 */
#ifndef BRISK_ERROR_H
#define BRISK_ERROR_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One table generates the enum and brisk_strerror(). */
#define BRISK_ERRNO_MAP(X)                                                     \
    X(ENOMEM, -1, "out of memory")                                             \
    X(EINVAL, -2, "invalid argument")                                          \
    X(EIO, -3, "input/output error")                                           \
    X(ENOENT, -4, "no such file")                                              \
    X(EFORMAT, -5, "bad file format")                                          \
    X(ETRUNCATED, -6, "file truncated")                                        \
    X(EEMPTY, -7, "file is empty")                                             \
    X(EMISMATCH, -8, "files do not match")                                     \
    X(EOVERFLOW, -9, "size overflow")                                          \
    X(ENONFINITE, -10, "non-finite value")                                     \
    X(EFULL, -11, "buffer full, record dropped")                               \
    X(ESTATE, -12, "called in the wrong state")                               \
    X(EBUSY, -13, "in use by another process")

typedef enum brisk_err {
    BRISK_OK = 0,
#define BRISK__ERR_ENUM(name, value, text) BRISK_##name = (value),
    BRISK_ERRNO_MAP(BRISK__ERR_ENUM)
#undef BRISK__ERR_ENUM
} brisk_err;

/* Static text for a code (never NULL; "unknown error" for values outside the table). */
const char *brisk_strerror(int err);

/* Detail of the last error set on this thread: file, field and what was wrong. Valid until
 * the next failing Brisk call on the same thread. Empty string when none. */
const char *brisk_error_detail(void);

/* Records a printf-style detail for brisk_error_detail() and returns err, so that a failing
 * path reads `return brisk_error_set(BRISK_EFORMAT, "%s: ...", path);`. For use by Brisk's
 * modules; programs only read errors. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int brisk_error_set(int err, const char *fmt, ...);

/* Always-on assertion for broken invariants (never for bad input): reports file:line. */
#define BRISK_ASSERT(cond)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "brisk: assertion failed at %s:%d: %s\n",          \
                    __FILE__, __LINE__, #cond);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
