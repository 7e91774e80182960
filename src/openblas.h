/* OpenBLAS, loaded at run time rather than linked.
 *
 * Debian's OpenBLAS 0.3.21 chooses its kernel once, as it loads, from a table of CPUs it
 * knows. On a CPU newer than the table it falls back to an older kernel: the 2004
 * "Prescott" SSE3 one (4-5x slower than the CPU allows), or on an AVX-512 Zen 5 its AVX2
 * "Haswell" one (measured: sgemm 208 GFLOP/s against 394 with SkylakeX). The only way to
 * choose is the OPENBLAS_CORETYPE environment variable, read by the library's constructor.
 * A program linked against OpenBLAS can only set it and re-execute itself, which a library
 * living inside another program (a Python interpreter) must not do. So quill links no BLAS:
 * on first use it dlopen()s the OpenMP build (QUILL_OPENBLAS_PATH, from the Makefile) with
 * OPENBLAS_CORETYPE set to the best kernel for this CPU for the moment of the load, unless
 *   - the user set OPENBLAS_CORETYPE: their choice stands;
 *   - an OpenBLAS is already in the process (numpy's, say: dlopen's RTLD_NOLOAD tells): it
 *     has chosen already, and a second copy would run a second thread pool, so quill uses
 *     that one as it is.
 * Without the library matmul.c falls back to its reference loops and says why through
 * gemm_backend_description(); nothing is printed. */
#ifndef QUILL_OPENBLAS_H
#define QUILL_OPENBLAS_H

#include <cblas.h>

/* The functions quill calls, resolved once (the C types of cblas.h's declarations). */
typedef struct {
    void (*sgemm)(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans_a,
                  enum CBLAS_TRANSPOSE trans_b, blasint M, blasint N, blasint K, float alpha,
                  const float *A, blasint lda, const float *B, blasint ldb, float beta,
                  float *C, blasint ldc);
    void (*set_num_threads)(int n);
    char *(*get_corename)(void);
    char *(*get_config)(void);
} OpenBlas;

/* The library, loaded by the first call from whichever thread (the others wait for it), or
 * NULL when it could not be loaded. */
const OpenBlas *openblas(void);
/* "OpenBLAS 0.3.21 (SkylakeX kernel)", with a note when the kernel is weaker than this
 * CPU's best and who chose it; or, when openblas() is NULL, "reference (naive loops;
 * OpenBLAS not loaded: <why>)", the loops matmul.c falls back to. */
const char *openblas_description(void);

#endif
