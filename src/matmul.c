#include "matmul.h"

#include <omp.h>
#include <stddef.h>
#include <strings.h>

#ifndef QUILL_BLAS_NONE
#include "openblas.h"
static GemmBackend current_backend = GEMM_BACKEND_BLAS;
#else
static GemmBackend current_backend = GEMM_BACKEND_REFERENCE;
#endif

/* Per calling thread, as OpenMP's own thread count is: two contexts decoding on two
 * threads at once (libquill's contexts) each keep their count and their governor's limit. */
static _Thread_local int thread_count = 0;  /* 0: not set yet, use OpenMP's default */
static _Thread_local int active_threads = 0; /* the governor's limit, <= thread_count (0: none) */

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

#ifndef QUILL_BLAS_NONE
static void sgemm_blas(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc)
{
    openblas()->sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                      trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
                      C, ldc);
}

/* Sharing one product among threads costs OpenBLAS a few meetings per block, each a spin on
 * sched_yield, a system call that is slow in a VM. For a shakespeare-char layer (768 tokens
 * x 704 outputs x 128 inputs) that costs as much as the arithmetic, and for a bench-m one
 * (1024 x 1536 x 512) still a tenth of it. So gemm() cuts C's rows into one part per thread
 * instead, each a single-threaded sgemm (the BLAS runs on the calling thread alone inside a
 * parallel region). Each part packs the whole other operand (the weights, say) for itself,
 * so more, smaller parts would cost more copying: measured on 2 threads (Zen 5, fastest
 * step of 20, medians of 5 interleaved runs), one part per thread instead of parts of about
 * 256 rows made training steps faster: shakespeare-char by 6%, bench-s 2%, bench-m 4%. Past
 * GEMM_SHARED_MACS (1024 x 1024 x 2048) one call on all threads is faster again.
 *
 * The result must not depend on the thread count, and here one thread computes what two
 * compute in parts. An OpenBLAS kernel sums each element of C in the same order wherever
 * its tile lies, so the parts agree with the whole when they meet at a whole number of
 * tiles, wherever that is (24 rows; 16 was not enough for the Haswell kernel; 24 kept the
 * bits of 2400 products under the SkylakeX, Cooperlake, Haswell, Zen, Sandybridge and
 * Nehalem kernels), and when no part is small enough for OpenBLAS's separate small-matrix
 * kernels (up to 100^3 multiply-adds), which sum in another order. A product too small to
 * cut that way runs whole as the region's one part, where OpenBLAS keeps it on one thread.
 * tests/test_matmul.c checks both, cuts anywhere and 1 against 2 threads, under whichever
 * kernel runs. */
#define GEMM_SHARED_MACS (1u << 31)
#define GEMM_PART_MIN_MACS (1 << 20)
/* OpenBLAS itself runs a product this small on one thread (interface/gemm.c: 65536 x
 * GEMM_MULTITHREAD_THRESHOLD, 4 by default): no parallel region is needed to keep it there */
#define GEMM_BLAS_SERIAL_MACS (1 << 18)
#define GEMM_ROW_TILE 24

/* A VM's cores are not equally fast: the host runs other guests beside them. Measured on
 * 2 vCPUs (Zen 5), one of them did the same rows of bench-m's products 7-14% slower in some
 * runs, and the other waited for it after every product. So the parts are cut in
 * proportion to each thread's measured speed: multiply-adds per second over its recent
 * parts, older ones fading by GEMM_SPEED_MEMORY per product. Where a cut falls does not
 * change the result (see above), only who computes which rows. The record belongs to the
 * calling thread, for the team it starts; a team of more than GEMM_MAX_PARTS threads is
 * given that many parts. */
#define GEMM_MAX_PARTS 64
#define GEMM_SPEED_MEMORY 0.95
typedef struct {
    double macs[GEMM_MAX_PARTS];    /* recent work of the thread running part i, fading */
    double seconds[GEMM_MAX_PARTS]; /* and the time it took */
} TeamSpeeds;
static _Thread_local TeamSpeeds team_speeds;

static double thread_speed(int part)
{
    return team_speeds.macs[part] / team_speeds.seconds[part];
}

/* Whether all n threads have run parts before (a team of this size or larger). */
static bool thread_speeds_known(int n)
{
    for (int part = 0; part < n; part++)
        if (!(team_speeds.seconds[part] > 0.0))
            return false;
    return true;
}

static void thread_speed_record(int part, double macs, double seconds)
{
    TeamSpeeds *s = &team_speeds;
    s->macs[part] = s->macs[part] * GEMM_SPEED_MEMORY + macs;
    s->seconds[part] = s->seconds[part] * GEMM_SPEED_MEMORY + seconds;
}

/* starts[0..n]: the first row of each of n parts, in proportion to the threads' speeds when
 * `balanced` (else equal), each at the nearest whole tile; starts[n] = M. */
static void part_starts(int M, int n, bool balanced, int *starts)
{
    double weights[GEMM_MAX_PARTS], total = 0.0, before = 0.0;
    for (int part = 0; part < n; part++) {
        weights[part] = balanced ? thread_speed(part) : 1.0;
        total += weights[part];
    }
    for (int part = 0; part < n; part++) {
        int share = (int)(M * before / total);
        starts[part] = (share + GEMM_ROW_TILE / 2) / GEMM_ROW_TILE * GEMM_ROW_TILE;
        before += weights[part];
    }
    starts[n] = M;
}

/* Whether every part keeps its thread on OpenBLAS's regular kernels: a whole tile at least,
 * and more multiply-adds than its small-matrix kernels take. */
static bool parts_worth_sharing(const int *starts, int n, int N, int K)
{
    for (int part = 0; part < n; part++) {
        int rows = starts[part + 1] - starts[part];
        if (rows < GEMM_ROW_TILE || (double)rows * N * K < GEMM_PART_MIN_MACS)
            return false;
    }
    return true;
}

/* Cuts C's rows into n parts, balanced when that leaves every part worth its thread, else
 * equal; returns n, or 1 (starts = {0, M}) when even equal parts would be too small. */
static int rows_in_parts(int M, int N, int K, int n, int *starts)
{
    bool balanced = thread_speeds_known(n);
    part_starts(M, n, balanced, starts);
    if (balanced && !parts_worth_sharing(starts, n, N, K))
        part_starts(M, n, false, starts);
    if (parts_worth_sharing(starts, n, N, K))
        return n;
    starts[1] = M;
    return 1;
}

static void sgemm_blas_row_parts(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb, float beta,
                                 float *C, int ldc, int threads)
{
    int starts[GEMM_MAX_PARTS + 1];
    double seconds[GEMM_MAX_PARTS];
    int n_parts = rows_in_parts(M, N, K, threads < GEMM_MAX_PARTS ? threads : GEMM_MAX_PARTS,
                                starts);
#pragma omp parallel for schedule(static)
    for (int part = 0; part < n_parts; part++) {
        double start = omp_get_wtime();
        int r0 = starts[part], rows = starts[part + 1] - r0;
        /* rows r0.. of op(A): rows of A, or columns of A when it is transposed */
        const float *a_rows = trans_a ? A + r0 : A + (size_t)r0 * lda;
        sgemm_blas(trans_a, trans_b, rows, N, K, alpha, a_rows, lda, B, ldb, beta,
                   C + (size_t)r0 * ldc, ldc);
        seconds[part] = omp_get_wtime() - start;
    }
    /* a product left whole ran on the calling thread alone: it says nothing of the others */
    if (n_parts > 1)
        for (int part = 0; part < n_parts; part++)
            thread_speed_record(part, (double)(starts[part + 1] - starts[part]) * N * K,
                                seconds[part]);
}
#endif

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0)
        return;
#ifndef QUILL_BLAS_NONE
    if (current_backend == GEMM_BACKEND_BLAS && openblas()) {
        int threads = compute_threads();
        /* inside any parallel region, even one its `if` made single-threaded, the product
         * runs where it is called (a prompt's chunks of weight rows, quant.c): no region
         * nests in another */
        double macs = (double)M * N * K;
        if (threads > 1 && macs > GEMM_BLAS_SERIAL_MACS && macs < GEMM_SHARED_MACS &&
            omp_get_level() == 0) {
            sgemm_blas_row_parts(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                 threads);
        } else {
            sgemm_blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        }
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
#else
    if (backend == GEMM_BACKEND_BLAS && !openblas())
        return -1;
#endif
    current_backend = backend;
    return 0;
}

const char *gemm_backend_description(void)
{
#ifndef QUILL_BLAS_NONE
    if (current_backend == GEMM_BACKEND_BLAS)
        return openblas_description(); /* which says so when it fell back to the loops */
#endif
    return "reference (naive loops)";
}

static void runtime_set_threads(int n)
{
    omp_set_num_threads(n);
#ifndef QUILL_BLAS_NONE
    if (openblas())
        openblas()->set_num_threads(n);
#endif
}

void compute_set_threads(int n)
{
    thread_count = n > 0 ? n : omp_get_num_procs();
    active_threads = thread_count;
    runtime_set_threads(thread_count);
}

int compute_max_threads(void)
{
    return thread_count > 0 ? thread_count : omp_get_max_threads();
}

int compute_threads(void)
{
    return active_threads > 0 ? active_threads : compute_max_threads();
}

void compute_limit_threads(int n)
{
    int max = compute_max_threads();
    n = n < 1 ? 1 : n > max ? max : n;
    if (n == compute_threads())
        return;
    active_threads = n;
    runtime_set_threads(n);
}

/* OpenBLAS's kernel names (its core names), by the widest vector instructions they use:
 * 1 SSE, 2 AVX, 3 AVX2, 4 AVX-512. A name not listed is left alone (a newer core). */
static int blas_core_rank(const char *core)
{
    static const struct {
        const char *name;
        int rank;
    } cores[] = {
        {"Prescott", 1},   {"Core2", 1},      {"Penryn", 1},      {"Dunnington", 1},
        {"Nehalem", 1},    {"Atom", 1},       {"Barcelona", 1},   {"Opteron", 1},
        {"Sandybridge", 2}, {"Bulldozer", 2}, {"Piledriver", 2},  {"Steamroller", 2},
        {"Excavator", 2},  {"Haswell", 3},    {"Zen", 3},         {"SkylakeX", 4},
        {"Cooperlake", 4}, {"SapphireRapids", 4},
    };
    for (size_t i = 0; i < sizeof cores / sizeof *cores; i++)
        if (strcasecmp(core, cores[i].name) == 0)
            return cores[i].rank;
    return 0;
}

const char *gemm_coretype_choose(const char *current, bool cpu_avx512, bool cpu_avx512_bf16,
                                 bool cpu_avx2)
{
    const char *best = cpu_avx512 ? (cpu_avx512_bf16 ? "Cooperlake" : "SkylakeX")
                       : cpu_avx2 ? "Haswell"
                                  : NULL;
    if (!current || !best)
        return best;
    int rank = blas_core_rank(current);
    if (rank == 0 || rank >= blas_core_rank(best))
        return NULL;
    return best;
}
