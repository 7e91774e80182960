/* Wall-clock seconds from a monotonic clock, for timing steps and benchmarks. */
#ifndef QUILL_TIMER_H
#define QUILL_TIMER_H

#include <time.h>

static inline double timer_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
