/* madvise(MADV_HUGEPAGE) is Linux's, not POSIX's. */
#define _DEFAULT_SOURCE

#include "machine.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "matmul.h"
#include "timer.h"

double machine_sgemm_gflops(int n)
{
    size_t elems = (size_t)n * n;
    float *a = malloc(elems * sizeof(float)), *b = malloc(elems * sizeof(float));
    float *c = malloc(elems * sizeof(float));
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < elems; i++) {
            a[i] = (float)(i % 7) * 0.1f;
            b[i] = (float)(i % 5) * 0.1f;
        }
        double start = timer_seconds();
        while (timer_seconds() - start < 0.5) {
            double t0 = timer_seconds();
            gemm(false, true, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double gflops = 2.0 * n * (double)n * n / (timer_seconds() - t0) / 1e9;
            best = gflops > best ? gflops : best;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* A buffer for the memory measurements: aligned to 2 MB and marked for transparent huge
 * pages (Linux's default mode gives them to the ranges that ask). With 4 KB pages a stream
 * misses the TLB every 4 KB, and a page walk inside a virtual machine reads both the guest's
 * and the host's tables: on the 2-vCPU development VM the read measurement was 13% faster
 * on 2 MB pages (median of 10 interleaved rounds), where decoding had been measured at 109-
 * 117% of the old figure. The pages are first touched by the threads (and with the static
 * split) that later read them, so each lies in the memory nearest its thread. NULL when out
 * of memory; free() it. */
static float *stream_buffer(size_t n, float value)
{
    enum { HUGE_PAGE = 2 << 20 };
    size_t bytes = (n * sizeof(float) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    float *a = aligned_alloc(HUGE_PAGE, bytes);
    if (!a)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(a, bytes, MADV_HUGEPAGE); /* a hint: without huge pages the figure is lower */
#endif
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = value;
    return a;
}

double machine_triad_gbs(void)
{
    size_t n = (size_t)16 << 20;
    float *a = stream_buffer(n, 0.0f), *b = stream_buffer(n, 1.0f), *c = stream_buffer(n, 2.0f);
    double best = 0.0;
    if (a && b && c) {
        for (int rep = 0; rep < 8; rep++) {
            double t0 = timer_seconds();
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++)
                a[i] = b[i] + 0.5f * c[i];
            double gbs = 3.0 * n * sizeof(float) / (timer_seconds() - t0) / 1e9;
            best = gbs > best ? gbs : best;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

double machine_read_gbs(void)
{
    size_t n = (size_t)128 << 20; /* 512 MB: many times a CPU's last-level cache */
    float *a = stream_buffer(n, 1.0f);
    double best = 0.0;
    if (!a)
        return 0.0;
    volatile float sink = 0.0f;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = timer_seconds();
        float sum = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; i++)
            sum += a[i];
        double gbs = (double)n * sizeof(float) / (timer_seconds() - t0) / 1e9;
        best = gbs > best ? gbs : best;
        sink = sum;
    }
    (void)sink;
    free(a);
    return best;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double machine_median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

void machine_cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown CPU");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp)
        return;
    char line[512];
    while (fgets(line, sizeof line, fp)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon)
            continue;
        snprintf(buf, cap, "%s", colon + 2);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(fp);
}

int machine_busy_start(void)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid > 0 ? (int)pid : -1;
    /* the child: only the forking thread exists here, so it touches nothing but a counter */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (volatile unsigned long spins = 0;; spins++)
        ;
}

void machine_busy_stop(int pid)
{
    if (pid < 0)
        return;
    kill((pid_t)pid, SIGKILL);
    waitpid((pid_t)pid, NULL, 0);
}
