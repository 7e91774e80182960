/* The quant module's front: the table of formats, dispatch to the reference conversions,
 * the ISA choice, and quant_matmul's driver (activation quantization, tiling, threads).
 * The per-type code lives in quant_q32.c and quant_kquants.c, the SIMD kernels in
 * quant_avx2.c and quant_avx512.c (quant_impl.h has the map). */
#include "quant.h"

#include <assert.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu.h"
#include "gguf.h"
#include "matmul.h"
#include "quant_impl.h"

/* ---- The table of formats ------------------------------------------------------------- */

static const QuantFormat *const FORMATS[] = {
    &quant_format_f32,  &quant_format_f16,  &quant_format_bf16, &quant_format_q4_0,
    &quant_format_q4_1, &quant_format_q5_0, &quant_format_q5_1, &quant_format_q8_0,
    &quant_format_q8_1, &quant_format_q2_k, &quant_format_q3_k, &quant_format_q4_k,
    &quant_format_q5_k, &quant_format_q6_k, &quant_format_q8_k,
};

static const QuantFormat *format_find(uint32_t type)
{
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (FORMATS[i]->type == type)
            return FORMATS[i];
    return NULL;
}

/* The format of a type the caller promised is supported (a programmer error otherwise). */
static const QuantFormat *format_of(uint32_t type)
{
    const QuantFormat *f = format_find(type);
    assert(f && "quant: unsupported tensor type");
    return f;
}

bool quant_type_is_supported(uint32_t type)
{
    return format_find(type) != NULL;
}

bool quant_can_multiply(uint32_t type)
{
    const QuantFormat *f = format_find(type);
    return f && f->dot;
}

int64_t quant_block_size(uint32_t type)
{
    return format_of(type)->block_size;
}

size_t quant_row_bytes(uint32_t type, int64_t n)
{
    const QuantFormat *f = format_of(type);
    assert(n >= 0 && n % f->block_size == 0);
    return (size_t)(n / f->block_size) * f->block_bytes;
}

/* ---- Reference conversions ------------------------------------------------------------ */

void quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const QuantFormat *f = format_of(type);
    assert(n % f->block_size == 0);
    f->dequantize(src, dst, n);
}

bool quant_can_quantize(uint32_t type)
{
    const QuantFormat *f = format_find(type);
    return f && f->quantize;
}

void quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    const QuantFormat *f = format_of(type);
    assert(f->quantize && n % f->block_size == 0);
    f->quantize(src, dst, n);
}

/* ---- ISA choice ------------------------------------------------------------------------ */

/* -1 until the first call that needs it picks quant_isa_best(). Atomic because products may
 * start on several threads at once; every one of them would store the same value. */
static _Atomic int current_isa = -1;

static bool cpu_runs(QuantIsa isa)
{
    switch (isa) {
    case QUANT_ISA_AVX512: return cpu_runs_quant_avx512();
    case QUANT_ISA_AVX2: return cpu_runs_quant_avx2();
    case QUANT_ISA_SCALAR: return true;
    }
    return false;
}

QuantIsa quant_isa_best(void)
{
    if (cpu_runs(QUANT_ISA_AVX512))
        return QUANT_ISA_AVX512;
    return cpu_runs(QUANT_ISA_AVX2) ? QUANT_ISA_AVX2 : QUANT_ISA_SCALAR;
}

int quant_set_isa(QuantIsa isa)
{
    if (!cpu_runs(isa))
        return -1;
    current_isa = (int)isa;
    return 0;
}

QuantIsa quant_isa(void)
{
    int isa = current_isa;
    if (isa < 0) {
        isa = (int)quant_isa_best();
        current_isa = isa;
    }
    return (QuantIsa)isa;
}

const char *quant_isa_name(QuantIsa isa)
{
    switch (isa) {
    case QUANT_ISA_AVX512: return "avx512";
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_SCALAR: return "scalar";
    }
    return "unknown";
}

/* The rows kernel of a decoding step for a weight type on an ISA (only AVX-512 has them),
 * or NULL for the panels. */
static QuantRowsFn *rows_kernel(QuantIsa isa, uint32_t type)
{
    return isa == QUANT_ISA_AVX512 ? quant_avx512_rows(type) : NULL;
}

/* The panel kernel for a weight type on an ISA, or NULL for the scalar loop. */
static QuantPanelFn *panel_kernel(QuantIsa isa, uint32_t type)
{
    switch (isa) {
    case QUANT_ISA_AVX512: return quant_avx512_panel(type);
    case QUANT_ISA_AVX2: return quant_avx2_panel(type);
    case QUANT_ISA_SCALAR: return NULL;
    }
    return NULL;
}

/* The quantizer of a type: a vectorised one where the ISA has it (same bytes), else the
 * reference. */
static QuantQuantizeFn *fast_quantizer(QuantIsa isa, uint32_t type)
{
    QuantQuantizeFn *fn = NULL;
    if (isa == QUANT_ISA_AVX512)
        fn = quant_avx512_quantizer(type);
    else if (isa == QUANT_ISA_AVX2)
        fn = quant_avx2_quantizer(type);
    return fn ? fn : format_of(type)->quantize;
}

void quant_quantize_row_fast(uint32_t type, const float *src, void *dst, int64_t n)
{
    QuantQuantizeFn *quantize = fast_quantizer(quant_isa(), type);
    assert(quantize && n % format_of(type)->block_size == 0);
    quantize(src, dst, n);
}

void quant_dequantize_rows_fast(uint32_t type, const void *src, size_t src_stride, float *dst,
                                int n_rows, int64_t n)
{
    const QuantFormat *f = format_of(type);
    assert(n % f->block_size == 0);
    QuantIsa isa = quant_isa();
    QuantDequantizeRowsFn *rows = isa == QUANT_ISA_AVX512 ? quant_avx512_dequantizer(type)
                                  : isa == QUANT_ISA_AVX2 ? quant_avx2_dequantizer(type)
                                                          : NULL;
    if (rows) {
        rows(src, src_stride, dst, n_rows, n);
        return;
    }
    for (int r = 0; r < n_rows; r++)
        f->dequantize((const uint8_t *)src + (size_t)r * src_stride, dst + (size_t)r * n, n);
}

/* ---- Dot products and matrix products -------------------------------------------------- */

uint32_t quant_activation_type(uint32_t weight_type)
{
    return format_of(weight_type)->act_type;
}

float quant_vec_dot(uint32_t weight_type, int64_t n, const void *w_row, const void *act_row)
{
    const QuantFormat *f = format_of(weight_type);
    assert(f->dot && n % f->block_size == 0);
    QuantPanelFn *panel = panel_kernel(quant_isa(), weight_type);
    if (!panel || n == 0)
        return f->dot(n, w_row, act_row);
    const void *rows[QUANT_PANEL_ROWS] = {w_row, w_row, w_row, w_row};
    float dot;
    panel(n, rows, 1, act_row, 0, 1, &dot, 1, 0.0f);
    return dot;
}

size_t quant_matmul_scratch_bytes(uint32_t type, int N, int K)
{
    uint32_t act_type = quant_activation_type(type);
    if (act_type == GGML_TYPE_F32)
        return 0;
    return (size_t)N * quant_row_bytes(act_type, K);
}

/* Products smaller than this many multiply-adds run on one thread: waking the others costs
 * a few microseconds, more than such a product takes. */
#define MATMUL_PARALLEL_MIN_WORK (1 << 18)

/* How many activation rows one pass over the weights serves: as many as fit in about half
 * of a 1 MiB L2 cache, so that each panel of weights, decoded once, meets every activation
 * row of the pass from cache. Longer prompts make several passes. */
#define MATMUL_PASS_BYTES (512 * 1024)

/* F32 weights times 16 or more activation rows go to the BLAS (gemm(), matmul.h), whose
 * sgemm packs and blocks for the caches better than a dot-product kernel can: about 2x
 * faster here at N = 128. The result must not depend on the thread count. A training batch
 * (more than MATMUL_BLAS_ROWS rows) is one gemm() call, which keeps its bits on any
 * thread count (matmul.h); a prompt is cut into fixed chunks of MATMUL_BLAS_ROWS rows of W, each chunk one
 * single-threaded sgemm call, because OpenBLAS's own split of a product this short among
 * its threads changes the low bits (and runs 5% slower at pp128). The naive reference of
 * BLAS=none builds would be slower than the panels, so those keep them. */
#define MATMUL_BLAS_MIN_N 16
#define MATMUL_BLAS_ROWS 128

#ifndef QUILL_BLAS_NONE
static void matmul_f32_blas(float *out, int ldo, const float *x, int N, int K, const float *W,
                            int M, float beta)
{
    if (N > MATMUL_BLAS_ROWS) {
        gemm(false, true, N, M, K, 1.0f, x, K, W, K, beta, out, ldo);
        return;
    }
    int n_chunks = (M + MATMUL_BLAS_ROWS - 1) / MATMUL_BLAS_ROWS;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < n_chunks; ch++) {
        int r0 = ch * MATMUL_BLAS_ROWS;
        int rows = M - r0 < MATMUL_BLAS_ROWS ? M - r0 : MATMUL_BLAS_ROWS;
        /* out[:, r0:r0+rows] (N x rows, stride ldo) = x (N x K) . W[r0:r0+rows]^T */
        gemm(false, true, N, rows, K, 1.0f, x, K, W + (size_t)r0 * K, K, beta, out + r0, ldo);
    }
}
#endif

/* The scalar ISA's panel: every dot on its own, with the type's portable kernel. */
static void panel_scalar(QuantDotFn *dot, int64_t K, const void *const rows[QUANT_PANEL_ROWS],
                         int n_rows, const uint8_t *act, size_t act_stride, int n_cols,
                         float *out, int ldo, float beta)
{
    for (int c = 0; c < n_cols; c++)
        for (int r = 0; r < n_rows; r++) {
            float d = dot(K, rows[r], act + c * act_stride);
            float *o = out + (size_t)c * ldo + r;
            *o = beta == 0.0f ? d : beta * *o + d;
        }
}

/* A decoding step (one activation row) through a rows kernel: each thread its contiguous
 * share of W's rows, in one call (the shares libgomp's static schedule would give). */
static void matmul_rows(QuantRowsFn *rows_fn, float *out, const uint8_t *act, int K,
                        const void *W, size_t w_stride, int M, float beta, bool parallel)
{
#pragma omp parallel if (parallel)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int r0 = (int)((int64_t)M * t / n), r1 = (int)((int64_t)M * (t + 1) / n);
        if (r1 > r0)
            rows_fn(K, (const uint8_t *)W + (size_t)r0 * w_stride, w_stride, r1 - r0, act,
                    out + r0, beta);
    }
}

void quant_matmul(float *out, int ldo, const float *x, int N, int K, const void *W,
                  uint32_t type, int M, float beta, void *scratch)
{
    const QuantFormat *f = format_of(type);
    assert(f->dot && K % f->block_size == 0 && ldo >= M);
    if (N <= 0 || M <= 0)
        return;
    if (K == 0) { /* empty sums: out = beta * out */
        for (int i = 0; i < N; i++)
            for (int j = 0; j < M; j++)
                out[(size_t)i * ldo + j] = beta == 0.0f ? 0.0f : beta * out[(size_t)i * ldo + j];
        return;
    }
    QuantIsa isa = quant_isa();
    QuantPanelFn *panel = panel_kernel(isa, type);
#ifndef QUILL_BLAS_NONE
    if (type == GGML_TYPE_F32 && N >= MATMUL_BLAS_MIN_N && panel) {
        matmul_f32_blas(out, ldo, x, N, K, W, M, beta);
        return;
    }
#endif
    size_t work = (size_t)M * (size_t)K * (size_t)N;

    /* 1. The activations, once, in the format the kernels read (F32 is used as it is). */
    const uint8_t *act = (const uint8_t *)x;
    size_t act_stride = (size_t)K * sizeof(float);
    if (f->act_type != GGML_TYPE_F32) {
        assert(scratch && "quant_matmul: quantized weights need scratch");
        QuantQuantizeFn *quantize = fast_quantizer(isa, f->act_type);
        act_stride = quant_row_bytes(f->act_type, K);
        uint8_t *dst = scratch;
#pragma omp parallel for schedule(static) if ((size_t)N * K >= (1 << 15) && N > 1)
        for (int i = 0; i < N; i++)
            quantize(x + (size_t)i * K, dst + (size_t)i * act_stride, K);
        act = dst;
    }

    /* 2. A decoding step (one activation row) of a type with a rows kernel: each thread
     *    takes its share of W's rows in one call. */
    size_t w_stride = quant_row_bytes(type, K);
    QuantRowsFn *rows_fn = N == 1 ? rows_kernel(isa, type) : NULL;
    if (rows_fn) {
        matmul_rows(rows_fn, out, act, K, W, w_stride, M, beta, work >= MATMUL_PARALLEL_MIN_WORK);
        return;
    }

    /* 3. Otherwise panels of 4 weight rows. Threads take panels, so each thread streams its
     *    own share of W from memory once per pass, and each panel meets every activation row
     *    of the pass while its decoded weights sit in L1. */
    int pass_cols = (int)(MATMUL_PASS_BYTES / act_stride);
    pass_cols = pass_cols < QUANT_TILE_COLS ? QUANT_TILE_COLS : pass_cols;
    int n_panels = (M + QUANT_PANEL_ROWS - 1) / QUANT_PANEL_ROWS;
    for (int c0 = 0; c0 < N; c0 += pass_cols) {
        int n_cols = N - c0 < pass_cols ? N - c0 : pass_cols;
        const uint8_t *a = act + (size_t)c0 * act_stride;
        float *o = out + (size_t)c0 * ldo;
#pragma omp parallel for schedule(static) if (work >= MATMUL_PARALLEL_MIN_WORK)
        for (int p = 0; p < n_panels; p++) {
            int r0 = p * QUANT_PANEL_ROWS;
            int n_rows = M - r0 < QUANT_PANEL_ROWS ? M - r0 : QUANT_PANEL_ROWS;
            const void *rows[QUANT_PANEL_ROWS];
            for (int r = 0; r < QUANT_PANEL_ROWS; r++) /* a short panel repeats its last row */
                rows[r] =
                    (const uint8_t *)W + (size_t)(r0 + (r < n_rows ? r : n_rows - 1)) * w_stride;
            if (panel)
                panel(K, rows, n_rows, a, act_stride, n_cols, o + r0, ldo, beta);
            else
                panel_scalar(f->dot, K, rows, n_rows, a, act_stride, n_cols, o + r0, ldo, beta);
        }
    }
}
