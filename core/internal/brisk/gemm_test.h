/* brisk/gemm_test.h (internal): switches of brisk_gemm's code paths that only tests use. */
#ifndef BRISK_GEMM_TEST_H
#define BRISK_GEMM_TEST_H

/* on = 0: the AVX2 kernels read B where it is, as they do when a thread cannot have memory for
 * its packed panel; on = 1 (the default): they pack B. The bits are the same either way. Not
 * thread-safe: call it while no product runs. */
void brisk__gemm_set_packing(int on);

#endif
