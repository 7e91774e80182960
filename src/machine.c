#include "machine.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

double machine_triad_gbs(void)
{
    size_t n = (size_t)16 << 20;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    float *c = malloc(n * sizeof(float));
    double best = 0.0;
    if (a && b && c) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            a[i] = 0.0f;
            b[i] = 1.0f;
            c[i] = 2.0f;
        }
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
    size_t n = (size_t)64 << 20;
    float *a = malloc(n * sizeof(float));
    double best = 0.0;
    if (!a)
        return 0.0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 7);
    volatile float sink = 0.0f;
    for (int rep = 0; rep < 6; rep++) {
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
