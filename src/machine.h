/* The machine's own limits, measured in the run that reports a speed, so that every figure
 * can be stated as a share of what this machine (and this moment on a shared one) allows:
 *   sgemm      GFLOP/s of the BLAS on large square products: the ceiling for the matrix
 *              products that are nearly all of a transformer's arithmetic;
 *   triad      GB/s of a = b + s*c over arrays far larger than the caches (two streams
 *              read, one written): what element-wise layers are bound by;
 *   read       GB/s of summing one large array, read-only, as decoding reads (every weight
 *              once per token, on every thread, with vector loads): its ceiling.
 * Each is the best of several repetitions on the current number of threads, over buffers on
 * huge pages (machine.c says why). */
#ifndef QUILL_MACHINE_H
#define QUILL_MACHINE_H

#include <stddef.h>

/* Best GFLOP/s of n x n x n products over about half a second; 0 when out of memory. */
double machine_sgemm_gflops(int n);
/* Best GB/s of the triad over three 64 MB arrays; 0 when out of memory. */
double machine_triad_gbs(void);
/* Best GB/s of summing a 512 MB array over 10 passes; 0 when out of memory. */
double machine_read_gbs(void);

/* The CPU's model name as /proc/cpuinfo gives it ("AMD EPYC 9R45 ..."), or "unknown CPU";
 * benchmarks print it, since a figure means little without the machine it came from. */
void machine_cpu_name(char *buf, size_t cap);
/* A busy neighbour for the benchmarks: a child process that keeps one core busy, as
 * `yes > /dev/null`, a compile or a browser tab would, until machine_busy_stop. Returns
 * its process id, or -1 when it could not be started. The child dies with its parent. */
int machine_busy_start(void);
void machine_busy_stop(int pid); /* nothing for pid < 0 */

/* The median of n values (reorders them). */
double machine_median(double *values, int n);

#endif
