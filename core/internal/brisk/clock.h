/* brisk/clock.h (internal): the one monotonic clock the library, its programs and its
 * benchmarks time things with. */
#ifndef BRISK_CLOCK_H
#define BRISK_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin; it does not jump with the wall clock). */
static inline double brisk_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
