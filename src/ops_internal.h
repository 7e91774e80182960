/* What ops.c and attention.c share and nobody else needs. */
#ifndef QUILL_OPS_INTERNAL_H
#define QUILL_OPS_INTERNAL_H

/* Loops over fewer elements than this run on one thread: waking the other threads would
 * cost more than the work (decoding one token touches only C or F floats per layer). */
#define PARALLEL_MIN_WORK (1 << 15)

/* The largest of n floats (a vectorised reduction: fmaxf would be a library call). */
static inline float row_max(const float *x, int n)
{
    float max = x[0];
#pragma omp simd reduction(max : max)
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    return max;
}

#endif
