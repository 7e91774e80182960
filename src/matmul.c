#include "matmul.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QUILL_BLAS_NONE
#include <cblas.h>
static GemmBackend current_backend = GEMM_BACKEND_BLAS;
#else
static GemmBackend current_backend = GEMM_BACKEND_REFERENCE;
#endif

static int thread_count = 0; /* 0: not set yet, use OpenMP's default */

/* Element (i, k) of op(A) and (k, j) of op(B). */
static inline float op_a(const float *A, int lda, bool trans_a, int i, int k)
{
    return trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}

static inline float op_b(const float *B, int ldb, bool trans_b, int k, int j)
{
    return trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

void gemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++)
                sum += op_a(A, lda, trans_a, i, k) * op_b(B, ldb, trans_b, k, j);
            c[j] = beta == 0.0f ? alpha * sum : alpha * sum + beta * c[j];
        }
    }
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0)
        return;
#ifndef QUILL_BLAS_NONE
    if (current_backend == GEMM_BACKEND_BLAS) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                    ldc);
        return;
    }
#endif
    gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int gemm_set_backend(GemmBackend backend)
{
#ifdef QUILL_BLAS_NONE
    if (backend == GEMM_BACKEND_BLAS)
        return -1;
#endif
    current_backend = backend;
    return 0;
}

const char *gemm_backend_description(void)
{
    static char text[128];
#ifndef QUILL_BLAS_NONE
    if (current_backend == GEMM_BACKEND_BLAS) {
        const char *config = openblas_get_config();
        int version_len = (int)strcspn(config, " ") + 1;
        version_len += (int)strcspn(config + version_len, " ");
        snprintf(text, sizeof text, "%.*s (%s kernel)", version_len, config,
                 openblas_get_corename());
        return text;
    }
#endif
    snprintf(text, sizeof text, "reference (naive loops)");
    return text;
}

void compute_set_threads(int n)
{
    thread_count = n > 0 ? n : omp_get_num_procs();
    omp_set_num_threads(thread_count);
#ifndef QUILL_BLAS_NONE
    openblas_set_num_threads(thread_count);
#endif
}

int compute_threads(void)
{
    return thread_count > 0 ? thread_count : omp_get_max_threads();
}

const char *gemm_blas_coretype_advice(void)
{
#ifndef QUILL_BLAS_NONE
    static const char *const fallback_cores[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                                 "Nehalem", "Sandybridge"};
    const char *core = openblas_get_corename();
    bool fallback = false;
    for (size_t i = 0; i < sizeof fallback_cores / sizeof *fallback_cores; i++)
        fallback |= strcmp(core, fallback_cores[i]) == 0;
    if (!fallback)
        return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}
