#include "brisk/blas.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The guard that stops a second re-execution if OpenBLAS ignores the variable. */
#define BRISK_REEXEC_ENV "BRISK_BLAS_REEXEC"

const char *brisk_blas_kernel(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

const char *brisk_blas_best_kernel(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    if (__builtin_cpu_supports("avx"))
        return "Sandybridge";
    return "Prescott";
}

/* Rank of a kernel name by the instruction set it uses; unknown names rank as "good enough"
 * so that Brisk never second-guesses a kernel it does not know. */
static int kernel_rank(const char *name)
{
    static const char *const order[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                        "Nehalem", "Sandybridge", "Haswell", "SkylakeX",
                                        "CooperLake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (!strcasecmp(name, order[i]))
            return (int)i;
    return 1000;
}

void brisk_blas_ensure_best_kernel(char **argv)
{
    const char *have = brisk_blas_kernel(), *best = brisk_blas_best_kernel();
    const int reexecuted = getenv(BRISK_REEXEC_ENV) != NULL;
    unsetenv(BRISK_REEXEC_ENV); /* not inherited by our own child processes */
    if (kernel_rank(have) >= kernel_rank(best) || (getenv("OPENBLAS_CORETYPE") && !reexecuted))
        return;
    if (reexecuted) {
        fprintf(stderr, "brisk: warning: OpenBLAS still runs its %s kernel after "
                        "OPENBLAS_CORETYPE=%s; continuing slowly\n", have, best);
        return;
    }
    fprintf(stderr, "brisk: OpenBLAS picked its slow %s kernel on this CPU; re-running with "
                    "OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE yourself to choose)\n",
            have, best);
    fflush(NULL);
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv(BRISK_REEXEC_ENV, "1", 1);
    execv("/proc/self/exe", argv);
    perror("brisk: re-executing /proc/self/exe failed; continuing with the slow kernel");
    unsetenv("OPENBLAS_CORETYPE");
}

int brisk_blas_set_threads(int n)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(n);
    return prev;
}
