/* The matmul facade: the fast path (OpenBLAS) and the naive reference against a
 * double-precision product, for every transpose combination, odd shapes, row strides
 * wider than the rows, and both beta = 0 (C holds garbage) and beta = 1. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grad_check.h"
#include "matmul.h"

typedef struct {
    int M, N, K;
    bool trans_a, trans_b;
    float alpha, beta;
} GemmCase;

/* op(A)(i, k) and op(B)(k, j) with the layouts gemm documents; lda/ldb pad each row by 3. */
static double element_a(const float *A, int lda, bool trans, int i, int k)
{
    return trans ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}

static double element_b(const float *B, int ldb, bool trans, int k, int j)
{
    return trans ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

/* Compares gemm() with the selected backend against the product in double. The bound is
 * the classic one for a float dot product: K * 2^-24 * sum |a_ik b_kj|, doubled. */
static void check_case(GemmCase g, GemmBackend backend)
{
    int a_rows = g.trans_a ? g.K : g.M, a_cols = g.trans_a ? g.M : g.K;
    int b_rows = g.trans_b ? g.N : g.K, b_cols = g.trans_b ? g.K : g.N;
    int lda = a_cols + 3, ldb = b_cols + 3, ldc = g.N + 3;
    float *A = malloc((size_t)a_rows * lda * sizeof(float));
    float *B = malloc((size_t)b_rows * ldb * sizeof(float));
    float *C = malloc((size_t)g.M * ldc * sizeof(float));
    float *C0 = malloc((size_t)g.M * ldc * sizeof(float));
    fill_uniform(A, (size_t)a_rows * lda, -1, 1, 1);
    fill_uniform(B, (size_t)b_rows * ldb, -1, 1, 2);
    fill_uniform(C0, (size_t)g.M * ldc, -1, 1, 3);
    for (size_t i = 0; i < (size_t)g.M * ldc; i++) /* beta = 0 must not read C: NaN shows it */
        C[i] = g.beta == 0.0f ? NAN : C0[i];
    cr_assert_eq(gemm_set_backend(backend), 0);
    gemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, A, lda, B, ldb, g.beta, C, ldc);
    for (int i = 0; i < g.M; i++) {
        for (int j = 0; j < g.N; j++) {
            double exact = 0.0, magnitude = 0.0;
            for (int k = 0; k < g.K; k++) {
                double p = element_a(A, lda, g.trans_a, i, k) * element_b(B, ldb, g.trans_b, k, j);
                exact += p;
                magnitude += fabs(p);
            }
            exact = g.alpha * exact + (g.beta != 0.0f ? g.beta * (double)C0[(size_t)i * ldc + j] : 0.0);
            double bound = 2.0 * (g.K + 2) * 5.96e-8 * (fabs(g.alpha) * magnitude + 1.0);
            double got = C[(size_t)i * ldc + j];
            if (!(fabs(got - exact) <= bound))
                cr_assert_fail("%s: M=%d N=%d K=%d ta=%d tb=%d beta=%g: C[%d][%d] = %.9g, exact %.9g",
                         backend == GEMM_BACKEND_BLAS ? "blas" : "reference", g.M, g.N, g.K,
                         g.trans_a, g.trans_b, g.beta, i, j, got, exact);
        }
    }
    gemm_set_backend(GEMM_BACKEND_BLAS);
    free(A);
    free(B);
    free(C);
    free(C0);
}

static void check_all_cases(GemmBackend backend)
{
    const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {64, 33, 129}, {130, 70, 257}, {3, 300, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            for (int b = 0; b < 2; b++) {
                GemmCase g = {shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t >> 1,
                              b ? 0.5f : 1.0f, b ? 1.0f : 0.0f};
                check_case(g, backend);
            }
}

Test(matmul, reference_matches_double_precision)
{
    check_all_cases(GEMM_BACKEND_REFERENCE);
}

Test(matmul, blas_matches_double_precision)
{
    if (gemm_set_backend(GEMM_BACKEND_BLAS) != 0)
        cr_skip_test("built with BLAS=none");
    check_all_cases(GEMM_BACKEND_BLAS);
}

/* The two backends agree with each other within the same bound on a product the size of a
 * model layer (which the double loop above would make slow). */
Test(matmul, blas_matches_reference_on_a_layer_sized_product)
{
    if (gemm_set_backend(GEMM_BACKEND_BLAS) != 0)
        cr_skip_test("built with BLAS=none");
    enum { M = 256, N = 384, K = 512 };
    float *A = malloc(M * K * sizeof(float)), *B = malloc(N * K * sizeof(float));
    float *fast = malloc(M * N * sizeof(float)), *slow = malloc(M * N * sizeof(float));
    fill_uniform(A, M * K, -1, 1, 4);
    fill_uniform(B, N * K, -1, 1, 5);
    gemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, fast, N);
    gemm_reference(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, slow, N);
    float worst = 0.0f;
    for (int i = 0; i < M * N; i++)
        worst = fmaxf(worst, fabsf(fast[i] - slow[i]));
    /* sum |a b| is about K/4 here: the bound 2 * 2K * 2^-24 * K/4 */
    cr_expect_lt(worst, 2.0f * 2 * K * 5.96e-8f * K / 4, "worst difference %g", worst);
    free(A);
    free(B);
    free(fast);
    free(slow);
}

/* Training must give the same bits on any thread count, so gemm() must: on 2 threads it
 * computes a product as two parts of rows, on 1 as one product, and the check holds when
 * the parts meet at whole kernel tiles and none is left to OpenBLAS's small-matrix kernels
 * (matmul.c). Checked 1 against 2 threads, under whichever OpenBLAS kernel runs. */
static bool same_on_one_and_two_threads(bool trans_a, bool trans_b, int M, int N, int K, float beta)
{
    int a_size = M * K, b_size = K * N;
    float *A = malloc(a_size * sizeof(float)), *B = malloc(b_size * sizeof(float));
    float *one = malloc((size_t)M * N * sizeof(float)), *two = malloc((size_t)M * N * sizeof(float));
    fill_uniform(A, a_size, -1, 1, 6);
    fill_uniform(B, b_size, -1, 1, 7);
    fill_uniform(one, (size_t)M * N, -1, 1, 8);
    memcpy(two, one, (size_t)M * N * sizeof(float));
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    compute_set_threads(1);
    gemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, one, N);
    compute_set_threads(2);
    gemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, two, N);
    bool same = memcmp(one, two, (size_t)M * N * sizeof(float)) == 0;
    free(A);
    free(B);
    free(one);
    free(two);
    return same;
}

/* The forward and both backward products of a {tokens, outputs, inputs} layer:
 * out = x W^T, dx = dout W, dW = dout^T x, the last with beta = 1 (added to C), the path
 * the forward's residual adds take. Returns how many were the same. */
static int layer_products_same_on_one_and_two_threads(int BT, int OC, int IC)
{
    int same = 0;
    same += same_on_one_and_two_threads(false, true, BT, OC, IC, 0.0f);
    same += same_on_one_and_two_threads(false, false, BT, IC, OC, 0.0f);
    same += same_on_one_and_two_threads(true, false, OC, IC, BT, 1.0f);
    return same;
}

Test(matmul, training_products_are_bit_identical_on_one_and_two_threads)
{
    if (gemm_set_backend(GEMM_BACKEND_BLAS) != 0)
        cr_skip_test("built with BLAS=none");
    /* a shakespeare-char layer, a bench-m layer, and shapes that broke weaker rules: parts
     * meeting at 16-row tiles broke all six under the Haswell kernel; parts left to the
     * small-matrix kernels broke the last three under Haswell, two of them under Cooperlake */
    static const int layers[][3] = {{768, 704, 128}, {1024, 1536, 512}, {1000, 288, 864},
                                    {513, 100, 37},  {300, 65, 128},    {129, 16, 128}};
    int n_layers = sizeof layers / sizeof layers[0], compared = 0;
    for (int l = 0; l < n_layers; l++) {
        int same = layer_products_same_on_one_and_two_threads(layers[l][0], layers[l][1],
                                                              layers[l][2]);
        cr_expect_eq(same, 3, "layer %dx%dx%d: %d of 3 products the same", layers[l][0],
                     layers[l][1], layers[l][2], same);
        compared += 3;
    }
    compute_set_threads(0);
    cr_expect_eq(compared, 18);
}

/* gemm() cuts a product's rows where the threads' measured speeds put the cut (matmul.c),
 * so the bits must not depend on where it falls. The whole product against its two parts,
 * all on one thread, for every cut at a whole tile (24 rows, matmul.c's GEMM_ROW_TILE) that
 * leaves both parts past the small-matrix kernels (2^20 multiply-adds, GEMM_PART_MIN_MACS).
 * Returns how many cuts gave other bits; *cuts counts the cuts compared. */
static int cuts_with_other_bits(bool trans_a, bool trans_b, int M, int N, int K, float beta,
                                int *cuts)
{
    enum { TILE = 24, PART_MIN_MACS = 1 << 20 };
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    size_t c_bytes = (size_t)M * N * sizeof(float);
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
    float *start = malloc(c_bytes), *whole = malloc(c_bytes), *parts = malloc(c_bytes);
    fill_uniform(A, (size_t)M * K, -1, 1, 9);
    fill_uniform(B, (size_t)K * N, -1, 1, 10);
    fill_uniform(start, (size_t)M * N, -1, 1, 11);
    compute_set_threads(1);
    memcpy(whole, start, c_bytes);
    gemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, whole, N);
    int other = 0;
    for (int cut = TILE; cut < M; cut += TILE) {
        if ((double)cut * N * K < PART_MIN_MACS || (double)(M - cut) * N * K < PART_MIN_MACS ||
            M - cut < TILE)
            continue;
        memcpy(parts, start, c_bytes);
        const float *a_below = trans_a ? A + cut : A + (size_t)cut * lda;
        gemm(trans_a, trans_b, cut, N, K, 1.0f, A, lda, B, ldb, beta, parts, N);
        gemm(trans_a, trans_b, M - cut, N, K, 1.0f, a_below, lda, B, ldb, beta,
             parts + (size_t)cut * N, N);
        other += memcmp(whole, parts, c_bytes) != 0;
        (*cuts)++;
    }
    compute_set_threads(0);
    free(A);
    free(B);
    free(start);
    free(whole);
    free(parts);
    return other;
}

Test(matmul, a_product_cut_at_any_whole_tile_keeps_its_bits)
{
    if (gemm_set_backend(GEMM_BACKEND_BLAS) != 0)
        cr_skip_test("built with BLAS=none");
    /* a shakespeare-char layer, a bench-m one, an odd one: M ranges over tokens (the forward
     * and dx) and over outputs (dW) */
    static const int layers[][3] = {{768, 704, 128}, {1024, 1536, 512}, {1000, 288, 864}};
    int cuts = 0;
    for (int l = 0; l < 3; l++) {
        int BT = layers[l][0], OC = layers[l][1], IC = layers[l][2];
        int other = cuts_with_other_bits(false, true, BT, OC, IC, 0.0f, &cuts) +
                    cuts_with_other_bits(false, false, BT, IC, OC, 0.0f, &cuts) +
                    cuts_with_other_bits(true, false, OC, IC, BT, 1.0f, &cuts);
        cr_expect_eq(other, 0, "layer %dx%dx%d: %d cuts changed the bits", BT, OC, IC, other);
    }
    /* every whole tile inside each M, less the parts that are too small: forward, dx and dW
     * cuts (31 + 31 + 28) + (41 + 41 + 63) + (40 + 40 + 11) */
    cr_expect_eq(cuts, 326, "%d cuts compared", cuts);
}

/* The kernel quill asks OpenBLAS for before it loads (current NULL): the best the CPU runs,
 * as OpenBLAS names it on the CPUs it knows. Once loaded, a better one is named only when
 * OpenBLAS's kernel is weaker; never a downgrade, and a core name it does not know is left
 * alone. */
Test(matmul, blas_kernel_choice_follows_the_cpu)
{
    cr_expect_str_eq(gemm_coretype_choose(NULL, true, true, true), "Cooperlake",
                     "AVX-512 with BF16, as a Zen 4 or Xeon 3rd gen");
    cr_expect_str_eq(gemm_coretype_choose(NULL, true, false, true), "SkylakeX");
    cr_expect_str_eq(gemm_coretype_choose(NULL, false, false, true), "Haswell");
    cr_expect_null(gemm_coretype_choose(NULL, false, false, false), "nothing to choose");
    cr_expect_str_eq(gemm_coretype_choose("Haswell", true, false, true), "SkylakeX",
                     "Zen 5: OpenBLAS 0.3.21 picks Haswell on an AVX-512 CPU");
    cr_expect_str_eq(gemm_coretype_choose("Haswell", true, true, true), "Cooperlake");
    cr_expect_str_eq(gemm_coretype_choose("Prescott", true, false, true), "SkylakeX");
    cr_expect_str_eq(gemm_coretype_choose("Zen", true, false, true), "SkylakeX");
    cr_expect_str_eq(gemm_coretype_choose("Prescott", false, false, true), "Haswell");
    cr_expect_str_eq(gemm_coretype_choose("Sandybridge", false, false, true), "Haswell");
    cr_expect_null(gemm_coretype_choose("SkylakeX", true, false, true));
    cr_expect_null(gemm_coretype_choose("SkylakeX", true, true, true), "as wide: left alone");
    cr_expect_null(gemm_coretype_choose("Cooperlake", true, false, true), "as good: left alone");
    cr_expect_null(gemm_coretype_choose("Haswell", false, false, true));
    cr_expect_null(gemm_coretype_choose("Prescott", false, false, false), "nothing better to run");
    cr_expect_null(gemm_coretype_choose("FutureLake", true, true, true), "unknown: left alone");
}

#ifndef QUILL_BLAS_NONE
/* The first use may come from several threads at once (a host program's): OpenBLAS is
 * loaded once while the others wait, so every thread reads the same backend at once (not a
 * description still being written) and gets its product. Criterion runs each test in a
 * fresh process, where nothing has loaded the library yet. */
enum { FIRST_USE_THREADS = 8 };
static pthread_barrier_t start_line;

static void *first_product(void *c)
{
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    pthread_barrier_wait(&start_line);
    char *backend = strdup(gemm_backend_description()); /* as it reads at this moment */
    gemm(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    return backend;
}

Test(matmul, first_use_from_several_threads_loads_openblas_once)
{
    cr_assert_null(dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD),
                   "OpenBLAS is loaded before the first product");
    pthread_t threads[FIRST_USE_THREADS];
    float c[FIRST_USE_THREADS][4];
    pthread_barrier_init(&start_line, NULL, FIRST_USE_THREADS);
    for (int t = 0; t < FIRST_USE_THREADS; t++)
        pthread_create(&threads[t], NULL, first_product, c[t]);
    char *backends[FIRST_USE_THREADS];
    for (int t = 0; t < FIRST_USE_THREADS; t++) {
        void *backend = NULL;
        pthread_join(threads[t], &backend);
        backends[t] = backend;
    }
    pthread_barrier_destroy(&start_line);
    const float expected[4] = {19, 22, 43, 50}; /* [1 2; 3 4] x [5 6; 7 8] */
    for (int t = 0; t < FIRST_USE_THREADS; t++) {
        cr_expect_arr_eq(c[t], expected, sizeof expected, "thread %d", t);
        cr_expect_str_eq(backends[t], backends[0]);
    }
    cr_expect(strncmp(backends[0], "OpenBLAS ", 9) == 0, "backend: %s", backends[0]);
    for (int t = 0; t < FIRST_USE_THREADS; t++)
        free(backends[t]);
}
#endif
