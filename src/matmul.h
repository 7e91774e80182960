/* The matmul facade: every matrix product in quill goes through gemm(), and this is the
 * only place that knows which library computes it (matmul.c calls OpenBLAS through the
 * functions openblas.c loads, and nothing else does, so swapping the backend touches two
 * files). Two backends:
 *   - OpenBLAS sgemm, the fast path (the default build, when the library loads);
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
 * backend is not built in or could not be loaded. */
int gemm_set_backend(GemmBackend backend);
/* "OpenBLAS 0.3.21 (SkylakeX kernel)" or "reference (naive loops)" (openblas.h lists the
 * notes it may add). */
const char *gemm_backend_description(void);

/* Number of threads for OpenMP loops and for the BLAS; n <= 0 means all cores. quill loads
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

/* OpenBLAS's kernel for a CPU with these features (openblas.h says why quill chooses it):
 * Cooperlake with AVX-512 and its BF16 products (SkylakeX's kernels and bfloat16 ones; what
 * OpenBLAS picks itself on the CPUs it knows that have them), SkylakeX with AVX-512,
 * Haswell with AVX2 + FMA, NULL for an older CPU. Given `current` (the kernel a loaded
 * OpenBLAS runs): that best one only when it is wider than `current`, else NULL; a name it
 * does not know (a newer core) is left alone. */
const char *gemm_coretype_choose(const char *current, bool cpu_avx512, bool cpu_avx512_bf16,
                                 bool cpu_avx2);

#endif
