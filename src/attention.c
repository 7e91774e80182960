/* Causal self-attention (forward, backward, and the KV-cache cases of inference).
 *
 * A head's products are small: at T = 256 and hs = 64, a score product is 256 x 256 x 64
 * multiply-adds, of which causality leaves about half. OpenBLAS, called on blocks of 64
 * queries, reached a third of one core's peak on them: it copies both operands into its
 * packed layouts on every call, and the blocks' triangular edges waste work. So attention
 * has its own product kernel, in portable C with the compiler's vector types: a tile of
 * results stays in registers while it runs through the product's k steps, a head's
 * products walk their tiles only as far right as causality needs, and the only copy is
 * one transpose of the head's keys (forward) or values (backward). Every product of a
 * head runs on one thread, in a fixed order, so the bits do not depend on the thread
 * count. */
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"
#include "ops_internal.h"
#include "quant.h"

/* ---- the tile kernel --------------------------------------------------------------------
 * A vector is the widest the build's target has (-march=native): 16 floats with AVX-512,
 * 8 with AVX, 4 with SSE. A tile of results is TILE_ROWS x up to TILE_VECS vectors, held
 * in registers while the kernel runs through the k steps of the product: 6 x 4 = 24 of
 * AVX-512's 32 registers (a whole head of 64 columns at once), 6 x 2 of the 16 otherwise,
 * leaving room for a step's row of B and the broadcast value of A. Each step then does
 * TILE_ROWS * TILE_VECS fused multiply-adds for TILE_ROWS + TILE_VECS loads, enough to
 * keep the FMA units rather than the load ports busy. Six rows of A need only six
 * pointers, so nothing is copied into a packed layout first. The file is compiled with
 * -ffp-contract=fast (the Makefile says why) so that `acc += a * b` is one FMA. */
#define TILE_ROWS 6
#if defined(__AVX512F__)
#define VEC_FLOATS 16
#define TILE_VECS 4
#elif defined(__AVX__)
#define VEC_FLOATS 8
#define TILE_VECS 2
#else
#define VEC_FLOATS 4
#define TILE_VECS 2
#endif
#define TILE_COLS (TILE_VECS * VEC_FLOATS)

/* aligned(4): loads and stores at any float address; may_alias: a FloatVec pointer may
 * read a float array. */
typedef float FloatVec
    __attribute__((vector_size(VEC_FLOATS * sizeof(float)), aligned(sizeof(float)), may_alias));

/* op(A) of a product, seen through strides: element (i, p) is at[i * row_step + p * col_step]
 * (col_step 1 reads A as it is, row_step 1 reads it transposed). */
typedef struct {
    const float *at;
    size_t row_step, col_step;
} StridedMatrix;

/* B of a product: row p starts at at + p * row_step and its columns are contiguous; the
 * first `readable` of them may be read (the columns used, and any zero padding after). */
typedef struct {
    const float *at;
    size_t row_step;
    int readable;
} RowMatrix;

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int round_up_to_vector(int n)
{
    return (n + VEC_FLOATS - 1) / VEC_FLOATS * VEC_FLOATS;
}

/* Vector v of row p of B. With `ragged` (a head size that is not a multiple of
 * VEC_FLOATS), B's readable columns end inside the tile's last vector, which is read in
 * part, zeros after. */
static inline __attribute__((always_inline)) FloatVec load_b(RowMatrix b, int p, int v, int vecs,
                                                             bool ragged)
{
    const float *x = b.at + (size_t)p * b.row_step + v * VEC_FLOATS;
    if (!ragged || v < vecs - 1)
        return *(const FloatVec *)x;
    FloatVec part = {0};
    memcpy(&part, x, (size_t)(b.readable - v * VEC_FLOATS) * sizeof(float));
    return part;
}

/* c (rows x cols, row stride ldc) = alpha * acc, or c += alpha * acc when `add`. */
static inline __attribute__((always_inline)) void
tile_store(float *c, size_t ldc, int rows, int cols, FloatVec acc[TILE_ROWS][TILE_VECS],
           int vecs, float alpha, bool add)
{
    for (int r = 0; r < rows; r++) {
        float *c_r = c + (size_t)r * ldc;
        if (cols == vecs * VEC_FLOATS) {
            for (int v = 0; v < vecs; v++) {
                FloatVec *out = (FloatVec *)(c_r + v * VEC_FLOATS);
                if (add)
                    *out += alpha * acc[r][v];
                else
                    *out = alpha * acc[r][v];
            }
        } else {
            float values[TILE_COLS];
            memcpy(values, acc[r], sizeof values);
            for (int j = 0; j < cols; j++)
                c_r[j] = add ? c_r[j] + alpha * values[j] : alpha * values[j];
        }
    }
}

/* The kernel: c (rows x cols) = alpha * op(A) (rows x k) . B (k x cols) [+ c], cols <=
 * vecs * VEC_FLOATS. Rows of A at or past `rows` repeat its last row (computed, never
 * stored: the kernel always runs whole tiles). Inlined with constant vecs and ragged, so
 * that its loops unroll and acc lives in registers. */
static inline __attribute__((always_inline)) void
tile_kernel(float *c, size_t ldc, int rows, int cols, StridedMatrix a, RowMatrix b, int k,
            float alpha, bool add, int vecs, bool ragged)
{
    const float *a_row[TILE_ROWS];
    FloatVec acc[TILE_ROWS][TILE_VECS];
    for (int r = 0; r < TILE_ROWS; r++) {
        a_row[r] = a.at + (size_t)min_int(r, rows - 1) * a.row_step;
        for (int v = 0; v < TILE_VECS; v++)
            acc[r][v] = (FloatVec){0};
    }
    for (int p = 0; p < k; p++) {
        FloatVec b_p[TILE_VECS];
#pragma GCC unroll 4
        for (int v = 0; v < vecs; v++)
            b_p[v] = load_b(b, p, v, vecs, ragged);
        size_t step = (size_t)p * a.col_step;
#pragma GCC unroll 6
        for (int r = 0; r < TILE_ROWS; r++) {
            float a_rp = a_row[r][step];
#pragma GCC unroll 4
            for (int v = 0; v < vecs; v++)
                acc[r][v] += a_rp * b_p[v];
        }
    }
    tile_store(c, ldc, rows, cols, acc, vecs, alpha, add);
}

/* The kernel for a constant vecs, in its two versions: B's rows read in whole vectors, or
 * the last vector in part. */
static inline __attribute__((always_inline)) void
tile_kernel_of_width(float *c, size_t ldc, int rows, int cols, StridedMatrix a, RowMatrix b,
                     int k, float alpha, bool add, int vecs)
{
    if (b.readable >= vecs * VEC_FLOATS)
        tile_kernel(c, ldc, rows, cols, a, b, k, alpha, add, vecs, false);
    else
        tile_kernel(c, ldc, rows, cols, a, b, k, alpha, add, vecs, true);
}

/* One tile (rows <= TILE_ROWS, cols <= TILE_COLS), by the kernel as many vectors wide as
 * cols needs. */
static void tile_product(float *c, size_t ldc, int rows, int cols, StridedMatrix a, RowMatrix b,
                         int k, float alpha, bool add)
{
    switch (round_up_to_vector(cols) / VEC_FLOATS) {
    case 1: tile_kernel_of_width(c, ldc, rows, cols, a, b, k, alpha, add, 1); break;
    case 2: tile_kernel_of_width(c, ldc, rows, cols, a, b, k, alpha, add, 2); break;
#if TILE_VECS == 4
    case 3: tile_kernel_of_width(c, ldc, rows, cols, a, b, k, alpha, add, 3); break;
    case 4: tile_kernel_of_width(c, ldc, rows, cols, a, b, k, alpha, add, 4); break;
#endif
    }
}

/* c (m x n) = alpha * op(A) (m x k) . B (k x n), or c += that when `add`, a tile at a
 * time. */
static void product(float *c, size_t ldc, int m, int n, int k, float alpha, StridedMatrix a,
                    RowMatrix b, bool add)
{
    for (int i0 = 0; i0 < m; i0 += TILE_ROWS) {
        StridedMatrix a_rows = {a.at + (size_t)i0 * a.row_step, a.row_step, a.col_step};
        for (int j0 = 0; j0 < n; j0 += TILE_COLS) {
            RowMatrix b_cols = {b.at + j0, b.row_step, b.readable - j0};
            tile_product(c + (size_t)i0 * ldc + j0, ldc, min_int(TILE_ROWS, m - i0),
                         min_int(TILE_COLS, n - j0), a_rows, b_cols, k, alpha, add);
        }
    }
}

/* A row-major operand as it is, and read transposed. */
static StridedMatrix as_is(const float *x, size_t row_stride)
{
    return (StridedMatrix){x, row_stride, 1};
}

static StridedMatrix transposed(const float *x, size_t row_stride)
{
    return (StridedMatrix){x, 1, row_stride};
}

#define TRANSPOSE_BLOCK 16

/* dst (cols x ld_dst) = the transpose of src (rows x cols, row stride src_stride), with
 * columns rows .. ld_dst-1 set to zero: B operands that are the transpose of keys or
 * values, readable to a whole vector. */
static RowMatrix transpose_padded(float *dst, const float *src, size_t src_stride, int rows,
                                  int cols)
{
    int ld_dst = round_up_to_vector(rows);
    /* A block of TRANSPOSE_BLOCK columns at a time: each src row's slice is one cache
     * line, read once and whole, and its floats go to TRANSPOSE_BLOCK dst rows that fill
     * in order. (Reading a column of src at a time instead would cycle through the same
     * few cache sets: its rows are a multiple of 512 bytes apart.) */
    for (int j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
        int width = min_int(TRANSPOSE_BLOCK, cols - j0);
        for (int i = 0; i < rows; i++) {
            const float *slice = src + (size_t)i * src_stride + j0;
            for (int j = 0; j < width; j++)
                dst[(size_t)(j0 + j) * ld_dst + i] = slice[j];
        }
    }
    for (int j = 0; j < cols; j++)
        memset(dst + (size_t)j * ld_dst + rows, 0, (size_t)(ld_dst - rows) * sizeof(float));
    return (RowMatrix){dst, (size_t)ld_dst, ld_dst};
}

/* ---- causal self-attention ---------------------------------------------------------- */

/* Softmax over the first n_visible entries of a row of scores; entries n_visible ..
 * n_computed-1 (future positions that the row's tile computed) get probability 0. */
static void causal_softmax_row(float *row, int n_visible, int n_computed)
{
    float max = row_max(row, n_visible);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n_visible; j++) {
        row[j] = ops_expf(row[j] - max);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < n_visible; j++)
        row[j] *= inv;
    for (int j = n_visible; j < n_computed; j++)
        row[j] = 0.0f;
}

/* Positions in the tile that starts at position t0: of queries, or in the backward pass of
 * keys. TILE_ROWS, the last tile shorter. */
static int tile_length(const AttentionShape *s, int t0)
{
    return min_int(TILE_ROWS, s->T - t0);
}

/* Floats of scratch one head needs for its transposed keys (or values): hs rows of n_kv
 * positions, padded to a whole vector. */
static size_t transposed_head_floats(int hs, int n_kv)
{
    return (size_t)hs * round_up_to_vector(n_kv);
}

/* A thread's scratch: a head's keys or values transposed, and with a typed cache one
 * key/value head's keys and values decoded (2 x n_kv x hs). */
typedef struct {
    float *transposed, *decoded;
} HeadScratch;

size_t attention_scratch_floats(int hs, int kv_dim, int n_kv, uint32_t kv_type)
{
    if (kv_type == GGML_TYPE_F32)
        return transposed_head_floats(hs, n_kv);
    size_t prompt = transposed_head_floats(hs, n_kv) + 2 * (size_t)n_kv * hs, decode_row = kv_dim;
    return prompt > decode_row ? prompt : decode_row;
}

/* The calling thread's part of the scratch. */
static float *thread_scratch(const AttentionShape *s)
{
    return s->scratch + (size_t)omp_get_thread_num() * s->scratch_stride;
}

static HeadScratch head_scratch(const AttentionShape *s)
{
    float *transposed = thread_scratch(s);
    return (HeadScratch){transposed, transposed + transposed_head_floats(s->hs, s->n_kv)};
}

/* One query head over its keys: p (T, n_kv) = causal softmax(q_h k_h^T / sqrt(hs)), then
 * out_h (T, hs) = p v_h. q_h rows are q_stride apart, out_h rows out_stride, v_h rows
 * kv_stride; k_t holds the head's keys k_h transposed (keys_transposed); the first new
 * token is at position pos0.
 * Each tile of queries multiplies only the keys its last row sees: over T = 256 new
 * tokens, tiles of 6 rows compute 54% of the T x T square of scores, where computing the
 * square and masking it would spend half of attention's multiply-adds on the masked
 * upper triangle. */
static void attention_head_forward(float *out_h, int out_stride, float *p, const float *q_h,
                                   int q_stride, RowMatrix k_t, const float *v_h, int kv_stride,
                                   const AttentionShape *s)
{
    float scale = 1.0f / sqrtf((float)s->hs);
    RowMatrix values = {v_h, (size_t)kv_stride, s->hs};
    for (int t0 = 0; t0 < s->T; t0 += TILE_ROWS) {
        int rows = tile_length(s, t0), keys = s->pos0 + t0 + rows;
        float *p_tile = p + (size_t)t0 * s->n_kv;
        /* scores (rows, keys) = q_tile (rows, hs) . k_h[0:keys]^T / sqrt(hs) */
        product(p_tile, s->n_kv, rows, keys, s->hs, scale,
                as_is(q_h + (size_t)t0 * q_stride, q_stride), k_t, false);
        for (int t = 0; t < rows; t++)
            causal_softmax_row(p_tile + (size_t)t * s->n_kv, s->pos0 + t0 + t + 1, keys);
        /* out_tile (rows, hs) = probabilities (rows, keys) . v_h[0:keys] (hs) */
        product(out_h + (size_t)t0 * out_stride, out_stride, rows, s->hs, keys, 1.0f,
                as_is(p_tile, s->n_kv), values, false);
    }
}

/* The n_kv keys of one key/value head (rows kv_stride apart), transposed into the
 * thread's scratch: the B operand of q k^T for every query head of its group. */
static RowMatrix keys_transposed(const float *k_h, int kv_stride, const AttentionShape *s)
{
    return transpose_padded(head_scratch(s).transposed, k_h, kv_stride, s->n_kv, s->hs);
}

/* Query head h of sequence b, whose outputs, probabilities and queries are at their
 * places in out, att and q, over the transposed keys k_t and the values v_h (rows
 * kv_stride apart). */
static void attention_query_head(float *out, float *att, const float *q, int b, int h,
                                 RowMatrix k_t, const float *v_h, int kv_stride,
                                 const AttentionShape *s)
{
    int C = s->H * s->hs;
    attention_head_forward(out + (size_t)b * s->T * C + (size_t)h * s->hs, C,
                           att + ((size_t)b * s->H + h) * s->T * s->n_kv,
                           q + (size_t)b * s->T * s->q_stride + (size_t)h * s->hs, s->q_stride,
                           k_t, v_h, kv_stride, s);
}

static int attention_slot(const AttentionShape *s, int b)
{
    return s->kv_slot ? s->kv_slot[b] : b;
}

/* Whether attention's tasks (one per sequence and head, or key/value head) are worth
 * spreading over threads. In training and prompts they are large (T x n_kv scores per head).
 * A decoding step's are small, T = 1, but a dozen heads of n_kv x hs multiply-adds each
 * (twice: scores and values) outweigh waking a thread from about 2^16 of them: 12 heads of
 * 64 at 86 cached positions. */
#define ATTENTION_DECODE_PARALLEL_MIN_MACS (1 << 16)

static bool attention_in_parallel(const AttentionShape *s)
{
    size_t scores = (size_t)s->B * s->H * s->T * s->n_kv;
    if (s->kv_slot_rows > 0 && s->T == 1)
        return scores * s->hs >= ATTENTION_DECODE_PARALLEL_MIN_MACS;
    return scores >= PARALLEL_MIN_WORK;
}

/* k and v as floats: every head reads its slice of the rows in place. */
static void attention_forward_f32(float *out, float *att, const float *q, const float *k,
                                  const float *v, const AttentionShape *s)
{
    int group = s->H / s->KVH;
    /* One (sequence, query head) pair per task; each task's two matrix products are small,
     * so they run single-threaded side by side rather than one after another. Tasks of
     * query heads keep both threads busy with a single key/value head too, at the price
     * of transposing a group's keys once per query head. */
#pragma omp parallel for collapse(2) schedule(static) if (attention_in_parallel(s))
    for (int b = 0; b < s->B; b++) {
        for (int h = 0; h < s->H; h++) {
            size_t kv_offset = attention_slot(s, b) * s->kv_seq_stride + (size_t)(h / group) * s->hs;
            RowMatrix k_t = keys_transposed(k + kv_offset, s->kv_stride, s);
            attention_query_head(out, att, q, b, h, k_t, v + kv_offset, s->kv_stride, s);
        }
    }
}

/* Decodes one key/value head of n rows of a typed cache into hs floats per row (SIMD
 * conversions: this runs for every head at every decoding step). */
static void kv_head_decode(float *dst, const uint8_t *rows, size_t row_bytes, uint32_t type,
                           int g, int hs, int n)
{
    size_t head_offset = quant_row_bytes(type, (int64_t)g * hs);
    quant_dequantize_rows_fast(type, rows + head_offset, row_bytes, dst, n, hs);
}

/* k and v in a compact cache type: one task per (sequence, key/value head) decodes that
 * head's keys and values once into the thread's scratch, transposes the keys once, and
 * runs every query head of its group on them. */
static void attention_forward_typed(float *out, float *att, const float *q, const uint8_t *k,
                                    const uint8_t *v, const AttentionShape *s)
{
    int group = s->H / s->KVH;
#pragma omp parallel for collapse(2) schedule(static) if (attention_in_parallel(s))
    for (int b = 0; b < s->B; b++) {
        for (int g = 0; g < s->KVH; g++) {
            float *k_h = head_scratch(s).decoded, *v_h = k_h + (size_t)s->n_kv * s->hs;
            size_t slot = (size_t)attention_slot(s, b) * s->kv_slot_rows * s->kv_row_bytes;
            kv_head_decode(k_h, k + slot, s->kv_row_bytes, s->kv_type, g, s->hs, s->n_kv);
            kv_head_decode(v_h, v + slot, s->kv_row_bytes, s->kv_type, g, s->hs, s->n_kv);
            RowMatrix k_t = keys_transposed(k_h, s->hs, s);
            for (int h = g * group; h < (g + 1) * group; h++)
                attention_query_head(out, att, q, b, h, k_t, v_h, s->hs, s);
        }
    }
}

/* ---- decoding: one new token per sequence, every cached position -------------------------
 * A decoding step's query heads are single rows, so each head's products are n_kv dot
 * products of hs and a sum of n_kv value rows weighted by the probabilities: loops the
 * compiler vectorises (two sgemm calls per head would cost more to set up than to run).
 * What decides the speed is reading the cache: the weights streamed since the last step
 * have pushed it out of the caches, and one head's keys are hs values out of every row of
 * KVH*hs, a strided walk that the hardware prefetchers follow badly (measured: converting
 * F16 keys head by head took a tenth of a Q4_0 decoding step, stalled on those loads). So
 * a task takes several key/value heads and walks the cached positions once, reading each
 * row's slice for all of them in one piece. */

/* Cached row j of sequence b's slot (keys or values), from key/value head g on: floats,
 * decoded into `buffer` ((g1 - g0) * hs floats) when the cache stores another type. */
static const float *kv_row_heads(const void *cache, const AttentionShape *s, int b, int j, int g0,
                                 int g1, float *buffer)
{
    size_t row = (size_t)attention_slot(s, b) * s->kv_slot_rows + (size_t)j;
    if (s->kv_type == GGML_TYPE_F32)
        return (const float *)cache + row * s->kv_stride + (size_t)g0 * s->hs;
    const uint8_t *bytes = (const uint8_t *)cache + row * s->kv_row_bytes +
                           quant_row_bytes(s->kv_type, (int64_t)g0 * s->hs);
    quant_dequantize_rows_fast(s->kv_type, bytes, 0, buffer, 1, (int64_t)(g1 - g0) * s->hs);
    return buffer;
}

/* a . b over n floats: whole vectors summed lane by lane, then the lanes and the tail. The
 * plain `#pragma omp simd reduction` loop says the same, but GCC keeps a scalar copy of it
 * beside the vector one and ran that copy here (a decoding step of 8 sequences spent half
 * its attention time in it); the vector type leaves no choice. */
static float dot_floats(const float *a, const float *b, int n)
{
    FloatVec acc = {0};
    int i = 0;
    for (; i + VEC_FLOATS <= n; i += VEC_FLOATS)
        acc += *(const FloatVec *)(a + i) * *(const FloatVec *)(b + i);
    float sum = 0.0f;
    for (int lane = 0; lane < VEC_FLOATS; lane++)
        sum += acc[lane];
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* Sequence b's query heads of key/value heads g0..g1-1 against its positions 0..pos[b]; row
 * buffer from the thread's scratch (typed caches). */
static void attention_decode_heads(float *out, float *att, const float *q, const void *k,
                                   const void *v, const AttentionShape *s, int b, int g0, int g1,
                                   float *buffer)
{
    int hs = s->hs, n = s->pos ? s->pos[b] + 1 : s->n_kv, group = s->H / s->KVH;
    int h0 = g0 * group, h1 = g1 * group;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q_b = q + (size_t)b * s->q_stride;
    float *p_b = att + (size_t)b * s->H * s->n_kv, *out_b = out + (size_t)b * s->H * hs;
    /* scores: p[h][j] = scale * q_h . k_j (head h's slice of key row j) */
    for (int j = 0; j < n; j++) {
        const float *k_row = kv_row_heads(k, s, b, j, g0, g1, buffer);
        for (int h = h0; h < h1; h++) {
            const float *q_h = q_b + (size_t)h * hs, *k_h = k_row + (size_t)(h / group - g0) * hs;
            p_b[(size_t)h * s->n_kv + j] = scale * dot_floats(q_h, k_h, hs);
        }
    }
    for (int h = h0; h < h1; h++)
        causal_softmax_row(p_b + (size_t)h * s->n_kv, n, n);
    /* out_h = sum_j p[h][j] * v_j (head h's slice of value row j) */
    memset(out_b + (size_t)h0 * hs, 0, (size_t)(h1 - h0) * hs * sizeof(float));
    for (int j = 0; j < n; j++) {
        const float *v_row = kv_row_heads(v, s, b, j, g0, g1, buffer);
        for (int h = h0; h < h1; h++) {
            const float *v_h = v_row + (size_t)(h / group - g0) * hs;
            float *o = out_b + (size_t)h * hs, pj = p_b[(size_t)h * s->n_kv + j];
#pragma omp simd
            for (int i = 0; i < hs; i++)
                o[i] += pj * v_h[i];
        }
    }
}

/* One task per sequence and thread: each takes an equal share of the key/value heads, so
 * that with one sequence both threads work, each on its own half of every cached row. A
 * head's arithmetic does not depend on the split: same bits for any thread count. */
static void attention_forward_decode(float *out, float *att, const float *q, const void *k,
                                     const void *v, const AttentionShape *s)
{
    int parts = attention_in_parallel(s) ? omp_get_max_threads() : 1;
    parts = parts < s->KVH ? parts : s->KVH;
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int task = 0; task < s->B * parts; task++) {
        int b = task / parts, part = task % parts;
        int g0 = part * s->KVH / parts, g1 = (part + 1) * s->KVH / parts;
        attention_decode_heads(out, att, q, k, v, s, b, g0, g1, thread_scratch(s));
    }
}

void attention_forward(float *out, float *att, const float *q, const void *k, const void *v,
                       const AttentionShape *s)
{
    if (s->kv_slot_rows > 0 && s->T == 1)
        attention_forward_decode(out, att, q, k, v, s);
    else if (s->kv_type == GGML_TYPE_F32)
        attention_forward_f32(out, att, q, k, v, s);
    else
        attention_forward_typed(out, att, q, k, v, s);
}

/* Softmax backward for one row, in place on dp: with p = softmax(z) and y = sum_j p_j z_j,
 * dz_i = p_i * (dp_i - sum_j p_j dp_j). Masked entries have p = 0 and get 0. The extra
 * factor `scale` is the 1/sqrt(hs) that multiplied the scores. */
static void softmax_backward_row(float *dp, const float *p, int n, float scale)
{
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < n; j++)
        dot += p[j] * dp[j];
    for (int j = 0; j < n; j++)
        dp[j] = p[j] * (dp[j] - dot) * scale;
}

/* attention_head_forward's backward for one query head (training: pos0 = 0, n_kv = T), in
 * the same tiles of TILE_ROWS positions. dq_h is overwritten; dk_h and dv_h too, or they
 * get this head's share added when `add` (the later heads of a group). v_t holds the
 * head's values v_h transposed, and dp (T, n_kv) is scratch. Entries right of the diagonal are 0 in p, and so in the score gradient. The
 * key tiles line up with the query tiles, so the part of dp a key tile reads (its columns,
 * from its own first row down) is the part the query tiles computed. */
static void attention_head_backward(float *dq_h, float *dk_h, float *dv_h, float *dp,
                                    const float *dy, int dy_stride, const float *q_h,
                                    const float *k_h, RowMatrix v_t, const float *p, bool add,
                                    const AttentionShape *s)
{
    float scale = 1.0f / sqrtf((float)s->hs);
    RowMatrix keys = {k_h, (size_t)s->kv_stride, s->hs};
    /* Each tile of queries, over the keys it sees (0 .. t0+rows): */
    for (int t0 = 0; t0 < s->T; t0 += TILE_ROWS) {
        int rows = tile_length(s, t0), seen = t0 + rows;
        const float *p_tile = p + (size_t)t0 * s->n_kv;
        float *dp_tile = dp + (size_t)t0 * s->n_kv;
        /* forward: out = p . v  =>  dp = dy . v^T */
        product(dp_tile, s->n_kv, rows, seen, s->hs, 1.0f,
                as_is(dy + (size_t)t0 * dy_stride, dy_stride), v_t, false);
        /* forward: p = softmax(scores): dp becomes the gradient of scale * q . k^T */
        for (int t = 0; t < rows; t++)
            softmax_backward_row(dp_tile + (size_t)t * s->n_kv, p_tile + (size_t)t * s->n_kv,
                                 seen, scale);
        /* dq = dscores . k */
        product(dq_h + (size_t)t0 * s->q_stride, s->q_stride, rows, s->hs, seen, 1.0f,
                as_is(dp_tile, s->n_kv), keys, false);
    }
    /* Each tile of keys, from the queries that see it (k0 .. T-1): one product per tile
     * writes its rows of dv and dk once, summing over every query that saw them. */
    for (int k0 = 0; k0 < s->T; k0 += TILE_ROWS) {
        int cols = tile_length(s, k0), seen_by = s->T - k0;
        size_t at = (size_t)k0 * s->n_kv + k0;
        RowMatrix dy_rows = {dy + (size_t)k0 * dy_stride, (size_t)dy_stride, s->hs};
        RowMatrix q_rows = {q_h + (size_t)k0 * s->q_stride, (size_t)s->q_stride, s->hs};
        /* dv = p^T . dy,  dk = dscores^T . q */
        product(dv_h + (size_t)k0 * s->kv_stride, s->kv_stride, cols, s->hs, seen_by, 1.0f,
                transposed(p + at, s->n_kv), dy_rows, add);
        product(dk_h + (size_t)k0 * s->kv_stride, s->kv_stride, cols, s->hs, seen_by, 1.0f,
                transposed(dp + at, s->n_kv), q_rows, add);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        const AttentionShape *s)
{
    int C = s->H * s->hs, group = s->H / s->KVH;
    /* The heads of one group share a key/value head and add into the same dk, dv rows, so
     * a task is a whole group: its heads run in order on one thread, after one transpose
     * of the group's values. */
#pragma omp parallel for collapse(2) schedule(static) \
    if ((size_t)s->B * s->H * s->T * s->n_kv >= PARALLEL_MIN_WORK)
    for (int b = 0; b < s->B; b++) {
        for (int g = 0; g < s->KVH; g++) {
            size_t kv_offset = b * s->kv_seq_stride + (size_t)g * s->hs;
            RowMatrix v_t = transpose_padded(head_scratch(s).transposed, v + kv_offset,
                                             s->kv_stride, s->T, s->hs);
            for (int j = 0; j < group; j++) {
                int h = g * group + j;
                bool add = j > 0; /* the group's first head overwrites */
                size_t q_offset = (size_t)b * s->T * s->q_stride + (size_t)h * s->hs;
                const float *p = att + ((size_t)b * s->H + h) * s->T * s->n_kv;
                float *dp = datt + ((size_t)b * s->H + h) * s->T * s->n_kv;
                const float *dy = dout + (size_t)b * s->T * C + (size_t)h * s->hs;
                attention_head_backward(dq + q_offset, dk + kv_offset, dv + kv_offset, dp, dy, C,
                                        q + q_offset, k + kv_offset, v_t, p, add, s);
            }
        }
    }
}

