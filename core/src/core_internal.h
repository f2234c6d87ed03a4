/* Private helpers of brisk_core. Not for other modules or programs. */
#ifndef BRISK_CORE_INTERNAL_H
#define BRISK_CORE_INTERNAL_H

#include <string.h>

/* Hot elementwise loops are compiled for AVX-512, AVX2 and baseline x86-64, and the loader
 * picks the best the CPU has (GCC function multi-versioning), so one binary is both portable
 * and fast. The loops' arithmetic is the same in each version: vectorising an elementwise loop
 * does not change its results. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define BRISK_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BRISK_MULTIVERSION
#endif

/* Index of s in names[0, n), or -1. */
static inline int brisk__name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

#endif
