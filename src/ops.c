#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "matmul.h"
#include "ops_internal.h"
#include "quant.h"

/* Parameter-gradient reductions (a sum over all N rows into one C-vector) are split across
 * threads by blocks of columns, never by rows: every column is then summed by one thread,
 * in row order, whatever the thread count. */
enum { REDUCE_COLUMN_BLOCK = 64 };

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
        bool ignored = targets[n] == LOSS_IGNORED;
        float target_logit = ignored ? 0.0f : z[targets[n]] - max;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            z[i] = ops_expf(z[i] - max);
            sum += z[i];
        }
        /* -log softmax(z)[target] = log(sum) - (z_target - max) */
        losses[n] = ignored ? 0.0f : logf(sum) - target_logit;
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
        if (targets[n] == LOSS_IGNORED) {
            memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        d[targets[n]] -= 1.0f;
        for (int i = 0; i < V; i++)
            d[i] *= dloss;
    }
}

int crossentropy_counted(const int *targets, int N)
{
    int counted = 0;
    for (int n = 0; n < N; n++)
        counted += targets[n] != LOSS_IGNORED;
    return counted;
}
