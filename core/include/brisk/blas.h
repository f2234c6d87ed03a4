/* brisk/blas.h: which OpenBLAS kernel runs, and making sure it is the best one.
 *
 * Debian 12's OpenBLAS 0.3.21 does not recognise recent Xeons and silently falls back to its
 * Prescott (SSE3) kernels, about 9x slower than the AVX-512 (SkylakeX) ones the CPU can run.
 * OpenBLAS reads OPENBLAS_CORETYPE only when it is loaded, so the fix is to set it and
 * re-execute the program before any work is done.
 */
#ifndef BRISK_BLAS_H
#define BRISK_BLAS_H

/* The kernel OpenBLAS selected (e.g. "SkylakeX", "Haswell", "Prescott"). */
const char *brisk_blas_kernel(void);

/* The best OpenBLAS kernel this CPU supports, from its feature flags: "SkylakeX" (AVX-512 F,
 * BW, VL, DQ, CD), "Haswell" (AVX2 + FMA), "Sandybridge" (AVX), else "Prescott". */
const char *brisk_blas_best_kernel(void);

/* If OpenBLAS runs a slower kernel than the CPU supports and the user has not set
 * OPENBLAS_CORETYPE, sets it to the best kernel, prints one line saying so to stderr and
 * re-executes /proc/self/exe with argv (returns only if that fails or nothing needs doing).
 * A user's OPENBLAS_CORETYPE is never overridden. Call first thing in main(). */
void brisk_blas_ensure_best_kernel(char **argv);

/* Sets OpenBLAS's own thread count (Brisk's workers call it with 1 thread so that BLAS
 * never oversubscribes the cores) and returns the previous count. */
int brisk_blas_set_threads(int n);

#endif
