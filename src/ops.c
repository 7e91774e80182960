#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"
#include "matmul.h"
#include "quant.h"

/* Parameter-gradient reductions (a sum over all N rows into one C-vector) are split across
 * threads by blocks of columns, never by rows: every column is then summed by one thread,
 * in row order, whatever the thread count. */
enum { REDUCE_COLUMN_BLOCK = 64 };

/* Loops over fewer elements than this run on one thread: waking the other threads would
 * cost more than the work (decoding one token touches only C or F floats per layer). */
#define PARALLEL_MIN_WORK (1 << 15)

float ops_expf(float x)
{
    /* Range reduction: e^x = 2^n * e^r with n = round(x / ln 2), so |r| <= ln(2)/2 and a
     * short polynomial is enough for e^r. ln 2 is split into a part exact in float and a
     * small correction (Cody & Waite) so that r keeps its low bits. The coefficients are
     * Cephes' minimax fit for expf. Inputs are clamped to where 2^n is a normal float:
     * below -87.3 the result is the smallest normal float, above 88 it saturates at e^88;
     * NaN stays NaN.
     * Every step is plain arithmetic so that loops calling this vectorise: fminf, fmaxf
     * and floorf would be library calls without -ffast-math. Adding and subtracting
     * 1.5 * 2^23 rounds to the nearest integer, because floats that large have no
     * fraction bits. */
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n, built directly in the exponent bits of a float (n is in [-126, 127], so the
     * biased exponent n + 127 is in [1, 254]). A NaN input has made p NaN already; its n
     * must not reach the integer conversion, which is undefined for NaN. */
    float exponent = n == n ? n : 0.0f;
    union {
        int32_t bits;
        float value;
    } two_n = {.bits = ((int32_t)exponent + 127) << 23};
    return p * two_n.value;
}

/* The largest of n floats (a vectorised reduction: fmaxf would be a library call). */
static float row_max(const float *x, int n)
{
    float max = x[0];
#pragma omp simd reduction(max : max)
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    return max;
}

/* ---- embedding ---------------------------------------------------------------------- */

void embedding_forward(float *out, const int *tokens, const WeightMatrix *table, int N)
{
    int C = table->cols;
    size_t row_bytes = quant_row_bytes(table->type, C);
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++)
        quant_dequantize_row(table->type, (const char *)table->data + (size_t)tokens[n] * row_bytes,
                             out + (size_t)n * C, C);
}

void embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C)
{
    /* The same token may occur at many positions: its row collects every one of their
     * gradients. Threads own column blocks, so no two add into the same float. */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN_WORK)
    for (int c0 = 0; c0 < C; c0 += REDUCE_COLUMN_BLOCK) {
        int c1 = c0 + REDUCE_COLUMN_BLOCK < C ? c0 + REDUCE_COLUMN_BLOCK : C;
        for (int n = 0; n < N; n++) {
            float *drow = dtable + (size_t)tokens[n] * C;
            const float *g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++)
                drow[c] += g[c]; /* forward: out[n][c] = table[tokens[n]][c] */
        }
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------ */

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                     int C, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        /* In double, as llama.cpp sums it: the rounding of the sum then no longer depends on
         * the order the compiler adds in, and neither does the quantization of the normed
         * activations that quantized weights multiply (one flipped rounding there moves
         * the logits far more than the sum's last bit). */
        double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
        for (int c = 0; c < C; c++)
            sum_sq += (double)x[c] * x[c];
        float r = 1.0f / sqrtf((float)(sum_sq / C) + eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++)
            y[c] = x[c] * r * weight[c];
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C)
{
    /* y_c = x_c * r * w_c with r = (mean(x^2) + eps)^(-1/2), so dr/dx_c = -r^3 x_c / C and
     *   dL/dx_c = r * dy_c * w_c - x_c * r^3 / C * sum_j (dy_j * w_j * x_j). */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++)
            dot += dy[c] * weight[c] * x[c];
        float coef = r * r * r * dot / (float)C;
        for (int c = 0; c < C; c++)
            dx[c] += r * dy[c] * weight[c] - x[c] * coef;
    }
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN_WORK)
    for (int c0 = 0; c0 < C; c0 += REDUCE_COLUMN_BLOCK) {
        int c1 = c0 + REDUCE_COLUMN_BLOCK < C ? c0 + REDUCE_COLUMN_BLOCK : C;
        for (int c = c0; c < c1; c++)
            dweight[c] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *dy = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++)
                dweight[c] += dy[c] * x[c] * rstd[n]; /* forward: y = x * r * w */
        }
    }
}

/* ---- linear layers ------------------------------------------------------------------ */

/* One product for every weight type: quant_matmul reads W in place (F32, F16, BF16 or
 * quantized blocks); F32 prompts of 16 rows or more go on from there to the BLAS's sgemm. */
void linear_forward(float *out, int ldo, const float *inp, int N, const WeightMatrix *w,
                    float beta, void *scratch)
{
    quant_matmul(out, ldo, inp, N, w->cols, w->data, w->type, w->rows, beta, scratch);
}

size_t linear_scratch_bytes(const WeightMatrix *w, int N)
{
    return quant_matmul_scratch_bytes(w->type, N, w->cols);
}

void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, int IC, int OC)
{
    /* forward: out[n][o] = sum_i inp[n][i] * weight[o][i] */
    gemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 0.0f, dinp, IC);
    gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 0.0f, dweight, IC);
}

/* ---- rotary position embedding ------------------------------------------------------ */

void rope_tables_init(float *cos_table, float *sin_table, int n_pos, int hs, float base,
                      float scaling)
{
    int half = hs / 2;
    for (int i = 0; i < half; i++) {
        double frequency = pow((double)base, -2.0 * i / hs);
        for (int p = 0; p < n_pos; p++) {
            /* in double: the angle grows with the position, and float would lose its
             * low bits at long contexts */
            double angle = p / (double)scaling * frequency;
            cos_table[(size_t)p * half + i] = (float)cos(angle);
            sin_table[(size_t)p * half + i] = (float)sin(angle);
        }
    }
}

/* direction +1 rotates by +angle (forward), -1 by -angle (backward). */
static void rope_rotate(float *x, int B, int T, int stride, int n_heads, int hs, int pos0,
                        const float *cos_table, const float *sin_table, float direction)
{
    int half = hs / 2;
#pragma omp parallel for collapse(2) schedule(static) \
    if ((size_t)B * T * n_heads * hs >= PARALLEL_MIN_WORK)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * stride;
            const float *cs = cos_table + (size_t)(pos0 + t) * half;
            const float *sn = sin_table + (size_t)(pos0 + t) * half;
            for (int h = 0; h < n_heads; h++) {
                float *head = row + h * hs;
                for (int i = 0; i < half; i++) {
                    float x0 = head[2 * i], x1 = head[2 * i + 1];
                    float s = direction * sn[i];
                    head[2 * i] = x0 * cs[i] - x1 * s;
                    head[2 * i + 1] = x0 * s + x1 * cs[i];
                }
            }
        }
    }
}

void rope_forward(float *x, int B, int T, int stride, int n_heads, int hs, int pos0,
                  const float *cos_table, const float *sin_table)
{
    rope_rotate(x, B, T, stride, n_heads, hs, pos0, cos_table, sin_table, 1.0f);
}

void rope_backward(float *dx, int B, int T, int stride, int n_heads, int hs, int pos0,
                   const float *cos_table, const float *sin_table)
{
    /* y = R x with R a rotation, so dx = R^T dy, and R^T is the rotation by -angle. */
    rope_rotate(dx, B, T, stride, n_heads, hs, pos0, cos_table, sin_table, -1.0f);
}

/* ---- causal self-attention ---------------------------------------------------------- */

/* Softmax over the first n_visible entries of a row of n_kv scores; the rest (future
 * positions) get probability 0. */
static void causal_softmax_row(float *row, int n_visible, int n_kv)
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
    for (int j = n_visible; j < n_kv; j++)
        row[j] = 0.0f;
}

/* Causal attention: query t sees keys 0 .. pos0+t only, so scores right of that are never
 * needed. The queries go in blocks of ATTENTION_QUERY_BLOCK rows, and each block multiplies
 * only the keys its last row sees. Over T = 256 new tokens that is 5/8 of the full T x T
 * square of products, where computing the square and masking it would spend half of
 * attention's multiply-adds on the masked upper triangle. Blocks much smaller than 64 rows
 * lose more to the small products' overhead than they save. */
#define ATTENTION_QUERY_BLOCK 64

/* Positions in the block that starts at position t0 (of queries, or in training of keys). */
static int attention_block_length(const AttentionShape *s, int t0)
{
    return s->T - t0 < ATTENTION_QUERY_BLOCK ? s->T - t0 : ATTENTION_QUERY_BLOCK;
}

/* One query head over its keys: p (T, n_kv) = causal softmax(q_h k_h^T / sqrt(hs)), then
 * out_h (T, hs) = p v_h. q_h rows are q_stride apart, out_h rows out_stride, k_h and v_h
 * rows kv_stride; the first new token is at position pos0. */
static void attention_head_forward(float *out_h, int out_stride, float *p, const float *q_h,
                                   int q_stride, const float *k_h, const float *v_h,
                                   int kv_stride, const AttentionShape *s)
{
    float scale = 1.0f / sqrtf((float)s->hs);
    for (int t0 = 0; t0 < s->T; t0 += ATTENTION_QUERY_BLOCK) {
        int rows = attention_block_length(s, t0), keys = s->pos0 + t0 + rows;
        float *p_block = p + (size_t)t0 * s->n_kv;
        /* scores (rows, keys) = q_block (rows, hs) . k_h[0:keys]^T / sqrt(hs) */
        gemm(false, true, rows, keys, s->hs, scale, q_h + (size_t)t0 * q_stride, q_stride, k_h,
             kv_stride, 0.0f, p_block, s->n_kv);
        for (int t = 0; t < rows; t++)
            causal_softmax_row(p_block + (size_t)t * s->n_kv, s->pos0 + t0 + t + 1, s->n_kv);
        /* out_block (rows, hs) = probabilities (rows, keys) . v_h[0:keys] (hs) */
        gemm(false, false, rows, s->hs, keys, 1.0f, p_block, s->n_kv, v_h, kv_stride, 0.0f,
             out_h + (size_t)t0 * out_stride, out_stride);
    }
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
    int C = s->H * s->hs, group = s->H / s->KVH;
    /* One (sequence, head) pair per task; each task's two matrix products are small, so
     * they run single-threaded side by side rather than one after another. */
#pragma omp parallel for collapse(2) schedule(static) if (attention_in_parallel(s))
    for (int b = 0; b < s->B; b++) {
        for (int h = 0; h < s->H; h++) {
            size_t kv_offset = attention_slot(s, b) * s->kv_seq_stride + (size_t)(h / group) * s->hs;
            attention_head_forward(out + (size_t)b * s->T * C + (size_t)h * s->hs, C,
                                   att + ((size_t)b * s->H + h) * s->T * s->n_kv,
                                   q + (size_t)b * s->T * s->q_stride + (size_t)h * s->hs,
                                   s->q_stride, k + kv_offset, v + kv_offset, s->kv_stride, s);
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
 * head's keys and values once into the thread's scratch, and runs every query head of its
 * group on them. */
static void attention_forward_typed(float *out, float *att, const float *q, const uint8_t *k,
                                    const uint8_t *v, const AttentionShape *s)
{
    int C = s->H * s->hs, group = s->H / s->KVH;
#pragma omp parallel for collapse(2) schedule(static) if (attention_in_parallel(s))
    for (int b = 0; b < s->B; b++) {
        for (int g = 0; g < s->KVH; g++) {
            float *k_h = s->kv_scratch + (size_t)omp_get_thread_num() * s->kv_scratch_stride;
            float *v_h = k_h + (size_t)s->n_kv * s->hs;
            size_t slot = (size_t)attention_slot(s, b) * s->kv_slot_rows * s->kv_row_bytes;
            kv_head_decode(k_h, k + slot, s->kv_row_bytes, s->kv_type, g, s->hs, s->n_kv);
            kv_head_decode(v_h, v + slot, s->kv_row_bytes, s->kv_type, g, s->hs, s->n_kv);
            for (int h = g * group; h < (g + 1) * group; h++)
                attention_head_forward(out + (size_t)b * s->T * C + (size_t)h * s->hs, C,
                                       att + ((size_t)b * s->H + h) * s->T * s->n_kv,
                                       q + (size_t)b * s->T * s->q_stride + (size_t)h * s->hs,
                                       s->q_stride, k_h, v_h, s->hs, s);
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

/* Sequence b's query heads of key/value heads g0..g1-1 against all n_kv positions; row
 * buffer from the thread's scratch (typed caches). */
static void attention_decode_heads(float *out, float *att, const float *q, const void *k,
                                   const void *v, const AttentionShape *s, int b, int g0, int g1,
                                   float *buffer)
{
    int hs = s->hs, n = s->n_kv, group = s->H / s->KVH, h0 = g0 * group, h1 = g1 * group;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q_b = q + (size_t)b * s->q_stride;
    float *p_b = att + (size_t)b * s->H * n, *out_b = out + (size_t)b * s->H * hs;
    /* scores: p[h][j] = scale * q_h . k_j (head h's slice of key row j) */
    for (int j = 0; j < n; j++) {
        const float *k_row = kv_row_heads(k, s, b, j, g0, g1, buffer);
        for (int h = h0; h < h1; h++) {
            const float *q_h = q_b + (size_t)h * hs, *k_h = k_row + (size_t)(h / group - g0) * hs;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < hs; i++)
                dot += q_h[i] * k_h[i];
            p_b[(size_t)h * n + j] = scale * dot;
        }
    }
    for (int h = h0; h < h1; h++)
        causal_softmax_row(p_b + (size_t)h * n, n, n);
    /* out_h = sum_j p[h][j] * v_j (head h's slice of value row j) */
    memset(out_b + (size_t)h0 * hs, 0, (size_t)(h1 - h0) * hs * sizeof(float));
    for (int j = 0; j < n; j++) {
        const float *v_row = kv_row_heads(v, s, b, j, g0, g1, buffer);
        for (int h = h0; h < h1; h++) {
            const float *v_h = v_row + (size_t)(h / group - g0) * hs;
            float *o = out_b + (size_t)h * hs, pj = p_b[(size_t)h * n + j];
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
        float *buffer = s->kv_scratch
                            ? s->kv_scratch + (size_t)omp_get_thread_num() * s->kv_scratch_stride
                            : NULL;
        attention_decode_heads(out, att, q, k, v, s, b, g0, g1, buffer);
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

/* attention_head_forward's backward for one query head (training: pos0 = 0), in the same
 * blocks of ATTENTION_QUERY_BLOCK positions. dq_h is overwritten; dk_h and dv_h become
 * first * themselves + this head's share (first 0 overwrites, 1 adds). dp (T, n_kv) is
 * scratch. Entries right of the diagonal are 0 in p, and so in the score gradient. The
 * key blocks line up with the query blocks, so the part of dp a key block reads (its
 * columns, from its own first row down) is the part the query blocks computed. */
static void attention_head_backward(float *dq_h, float *dk_h, float *dv_h, float *dp,
                                    const float *dy, int dy_stride, const float *q_h,
                                    const float *k_h, const float *v_h, const float *p,
                                    float first, const AttentionShape *s)
{
    float scale = 1.0f / sqrtf((float)s->hs);
    /* Each block of queries, over the keys it sees (0 .. t0+rows): */
    for (int t0 = 0; t0 < s->T; t0 += ATTENTION_QUERY_BLOCK) {
        int rows = attention_block_length(s, t0), keys = t0 + rows;
        const float *p_block = p + (size_t)t0 * s->n_kv;
        float *dp_block = dp + (size_t)t0 * s->n_kv;
        /* forward: out = p . v  =>  dp = dy . v^T */
        gemm(false, true, rows, keys, s->hs, 1.0f, dy + (size_t)t0 * dy_stride, dy_stride, v_h,
             s->kv_stride, 0.0f, dp_block, s->n_kv);
        /* forward: p = softmax(scores): dp becomes the gradient of scale * q . k^T */
        for (int t = 0; t < rows; t++)
            softmax_backward_row(dp_block + (size_t)t * s->n_kv, p_block + (size_t)t * s->n_kv,
                                 keys, scale);
        /* dq = dscores . k */
        gemm(false, false, rows, s->hs, keys, 1.0f, dp_block, s->n_kv, k_h, s->kv_stride, 0.0f,
             dq_h + (size_t)t0 * s->q_stride, s->q_stride);
    }
    /* Each block of keys, from the queries that see it (k0 .. T-1): one product per block
     * writes its rows of dv and dk once, summing over every query that saw them. */
    for (int k0 = 0; k0 < s->T; k0 += ATTENTION_QUERY_BLOCK) {
        int cols = attention_block_length(s, k0), seen_by = s->T - k0;
        size_t at = (size_t)k0 * s->n_kv + k0;
        /* dv = p^T . dy,  dk = dscores^T . q */
        gemm(true, false, cols, s->hs, seen_by, 1.0f, p + at, s->n_kv, dy + (size_t)k0 * dy_stride,
             dy_stride, first, dv_h + (size_t)k0 * s->kv_stride, s->kv_stride);
        gemm(true, false, cols, s->hs, seen_by, 1.0f, dp + at, s->n_kv,
             q_h + (size_t)k0 * s->q_stride, s->q_stride, first, dk_h + (size_t)k0 * s->kv_stride,
             s->kv_stride);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        const AttentionShape *s)
{
    int C = s->H * s->hs, group = s->H / s->KVH;
    /* The heads of one group share a key/value head and add into the same dk, dv rows, so
     * a task is a whole group: its heads run in order on one thread. */
#pragma omp parallel for collapse(2) schedule(static) \
    if ((size_t)s->B * s->H * s->T * s->n_kv >= PARALLEL_MIN_WORK)
    for (int b = 0; b < s->B; b++) {
        for (int g = 0; g < s->KVH; g++) {
            size_t kv_offset = b * s->kv_seq_stride + (size_t)g * s->hs;
            for (int j = 0; j < group; j++) {
                int h = g * group + j;
                float first = j == 0 ? 0.0f : 1.0f; /* the group's first head overwrites */
                size_t q_offset = (size_t)b * s->T * s->q_stride + (size_t)h * s->hs;
                const float *p = att + ((size_t)b * s->H + h) * s->T * s->n_kv;
                float *dp = datt + ((size_t)b * s->H + h) * s->T * s->n_kv;
                const float *dy = dout + (size_t)b * s->T * C + (size_t)h * s->hs;
                attention_head_backward(dq + q_offset, dk + kv_offset, dv + kv_offset, dp, dy, C,
                                        q + q_offset, k + kv_offset, v + kv_offset, p, first, s);
            }
        }
    }
}

/* ---- SwiGLU MLP activation ---------------------------------------------------------- */

void swiglu_forward(float *out, const float *gate_up, int N, int F)
{
#pragma omp parallel for schedule(static) if ((size_t)N * F >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *gate = gate_up + (size_t)n * 2 * F;
        const float *up = gate + F;
        float *y = out + (size_t)n * F;
#pragma omp simd
        for (int i = 0; i < F; i++)
            y[i] = gate[i] / (1.0f + ops_expf(-gate[i])) * up[i];
    }
}

void swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F)
{
    /* y = silu(g) * u with silu(g) = g * s, s = sigmoid(g):
     *   dy/du = silu(g),  dy/dg = u * s * (1 + g * (1 - s)). */
#pragma omp parallel for schedule(static) if ((size_t)N * F >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *gate = gate_up + (size_t)n * 2 * F;
        const float *up = gate + F;
        const float *dy = dout + (size_t)n * F;
        float *dgate = dgate_up + (size_t)n * 2 * F;
        float *dup = dgate + F;
#pragma omp simd
        for (int i = 0; i < F; i++) {
            float s = 1.0f / (1.0f + ops_expf(-gate[i]));
            dup[i] = dy[i] * gate[i] * s;
            dgate[i] = dy[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
        }
    }
}

/* ---- softmax cross-entropy ---------------------------------------------------------- */

void crossentropy_forward(float *losses, float *logits_to_probs, const int *targets, int N,
                          int V)
{
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        float *z = logits_to_probs + (size_t)n * V;
        float max = row_max(z, V);
        /* subtracting the max keeps every exponent <= 0: no overflow */
        float target_logit = z[targets[n]] - max;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            z[i] = ops_expf(z[i] - max);
            sum += z[i];
        }
        /* -log softmax(z)[target] = log(sum) - (z_target - max) */
        losses[n] = logf(sum) - target_logit;
        float inv = 1.0f / sum;
        for (int i = 0; i < V; i++)
            z[i] *= inv;
    }
}

void crossentropy_backward(float *probs_to_dlogits, const int *targets, int N, int V,
                           float dloss)
{
    /* d(-log p_t)/dz_i = p_i - [i == t] */
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        float *d = probs_to_dlogits + (size_t)n * V;
        d[targets[n]] -= 1.0f;
        for (int i = 0; i < V; i++)
            d[i] *= dloss;
    }
}
