/* The matmul facade: every matrix product in quill goes through gemm(), and this is the
 * only place that knows which library computes it (cblas.h is included here and nowhere
 * else, so swapping the backend touches one file). Two backends:
 *   - OpenBLAS sgemm, the fast path (the default build);
 *   - a naive reference loop, always compiled, the only backend with `make BLAS=none`;
 *     tests compare the fast path against it.
 * Thread counts for OpenMP loops and for the BLAS are set here too, in one call. */
#ifndef QUILL_MATMUL_H
#define QUILL_MATMUL_H

#include <stdbool.h>

typedef enum {
    GEMM_BACKEND_BLAS,      /* OpenBLAS sgemm (absent with BLAS=none) */
    GEMM_BACKEND_REFERENCE, /* the naive loop below */
} GemmBackend;

/* C = alpha * op(A) * op(B) + beta * C, all row-major, op(X) = X or X^T.
 *   C is M x N with row stride ldc;
 *   op(A) is M x K: A is M x K (lda >= K), or K x M when trans_a (lda >= M);
 *   op(B) is K x N: B is K x N (ldb >= N), or N x K when trans_b (ldb >= K).
 * With beta == 0, C is only written (it may hold garbage on entry), as in BLAS.
 * Called outside a parallel region, a product below 2^31 multiply-adds is cut into one
 * part of C's rows per thread, sized to each thread's measured speed and meeting at whole
 * kernel tiles, or runs whole on one thread when the parts would be small (matmul.c says
 * why): its result depends neither on the thread count nor on where the cuts fall, under
 * any OpenBLAS kernel. A larger one is split by OpenBLAS among the rows and columns of C,
 * which keeps the bits with the AVX-512 kernels (SkylakeX, Cooperlake) but not with the
 * Haswell one, whose edge tiles sum in another order. */
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* The reference: each C element is one float sum over k = 0..K-1 in order. Rows of C are
 * split across OpenMP threads, so the result does not depend on the thread count. */
void gemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Selects the backend gemm() uses (tests switch to the reference); returns -1 when the
 * backend is not built in. */
int gemm_set_backend(GemmBackend backend);
/* "OpenBLAS 0.3.21 (SkylakeX kernel)" or "reference (naive loops)". */
const char *gemm_backend_description(void);

/* Number of threads for OpenMP loops and for the BLAS; n <= 0 means all cores. quill links
 * OpenBLAS's OpenMP build, which shares OpenMP's thread pool, and which runs a gemm()
 * called from inside a parallel region on the calling thread alone: a prompt's products
 * run their chunks of weight rows side by side that way (quant.c). */
void compute_set_threads(int n);
/* The threads the work runs on now: the set count, or fewer while the thread governor
 * (governor.h) limits it. Per-thread scratch is sized by compute_max_threads. */
int compute_threads(void);
int compute_max_threads(void);
/* Runs the work on n of the set threads (1 <= n <= compute_max_threads) until changed. */
void compute_limit_threads(int n);

/* Debian's OpenBLAS 0.3.21 chooses its kernel from a table of CPUs it knows. On a CPU newer
 * than the table it falls back to an older kernel: the 2004 "Prescott" SSE3 one (4-5x
 * slower than the CPU allows), or on an AVX-512 Zen 5 its AVX2 "Haswell" one (measured:
 * sgemm 208 GFLOP/s against 394 with SkylakeX). The kernel can only be chosen through the
 * OPENBLAS_CORETYPE environment variable before the library loads, so the program mains
 * ask this function and, when it names a core, set the variable and re-execute
 * themselves (a user's own OPENBLAS_CORETYPE is left alone). Returns NULL when OpenBLAS's
 * own choice is already the best this CPU can run. */
const char *gemm_blas_coretype_advice(void);
/* The decision itself: the best kernel for a CPU with these features (SkylakeX with
 * AVX-512, Haswell with AVX2 + FMA), when it is better than `current`; else NULL. */
const char *gemm_coretype_choose(const char *current, bool cpu_avx512, bool cpu_avx2);

#endif
