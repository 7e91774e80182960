/* Notebook 2: causal self-attention by hand.
 *
 * Attention lets each position of a sequence look at earlier positions and take a
 * weighted mix of what it finds there. For one head of size hs and T tokens:
 *
 *   Q = x Wq, K = x Wk, V = x Wv        each (T, hs): a query, a key and a value per token
 *   S = Q K^T / sqrt(hs)                (T, T): how well query t matches key j
 *   S[t][j] = -inf for j > t            the causal mask: no looking at the future
 *   A = softmax(S), row by row          (T, T): each row sums to 1
 *   out = A V                           (T, hs): each token's mix of the values
 *
 * Dividing by sqrt(hs) keeps the scores' spread near 1 whatever the head size (a dot
 * product of hs random unit-variance numbers has variance hs), so the softmax does not
 * saturate into a one-hot row (Vaswani et al. 2017, "Attention Is All You Need").
 *
 * Here we take T = 4 tokens and one head of size 4 with made-up Q, K, V (in the model
 * they come from matmuls, with RoPE turning q and k by their positions first), compute
 * each step by hand, and compare with quill's attention_forward (src/ops.h), the op every
 * transformer block runs.
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/02_attention) */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "ops.h"
#include "rng.h"

enum { T = 4, HS = 4 };

/* A row-major (rows, cols) matrix, with its name and shape. */
static void print_matrix(const char *name, const float *m, int rows, int cols)
{
    printf("%s (%d, %d):\n", name, rows, cols);
    for (int r = 0; r < rows; r++) {
        printf("  t=%d ", r);
        for (int c = 0; c < cols; c++) {
            if (isinf(m[r * cols + c]))
                printf("   -inf");
            else
                printf(" %6.3f", m[r * cols + c]);
        }
        printf("\n");
    }
    printf("\n");
}

int main(void)
{
    /* 1. Q, K and V: four tokens, one head of size 4 (uniform in [-1, 1), fixed seed) */
    float q[T][HS], k[T][HS], v[T][HS];
    Rng rng;
    rng_seed(&rng, 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HS; i++) {
            q[t][i] = 2.0f * rng_uniform(&rng) - 1.0f;
            k[t][i] = 2.0f * rng_uniform(&rng) - 1.0f;
            v[t][i] = 2.0f * rng_uniform(&rng) - 1.0f;
        }
    print_matrix("Q", &q[0][0], T, HS);
    print_matrix("K", &k[0][0], T, HS);
    print_matrix("V", &v[0][0], T, HS);

    /* 2. scores: every query against every key, scaled */
    float scores[T][T];
    for (int t = 0; t < T; t++)
        for (int j = 0; j < T; j++) {
            float dot = 0.0f;
            for (int i = 0; i < HS; i++)
                dot += q[t][i] * k[j][i];
            scores[t][j] = dot / sqrtf((float)HS);
        }
    print_matrix("S = Q K^T / sqrt(hs)", &scores[0][0], T, T);

    /* 3. the causal mask: token t may see keys 0..t only */
    for (int t = 0; t < T; t++)
        for (int j = t + 1; j < T; j++)
            scores[t][j] = -INFINITY;
    print_matrix("S masked (j > t is -inf)", &scores[0][0], T, T);

    /* 4. softmax per row: subtract the row's max first (e^x of large x would overflow);
     * e^-inf = 0, so masked keys get exactly no weight */
    float att[T][T];
    for (int t = 0; t < T; t++) {
        float max = scores[t][0], sum = 0.0f;
        for (int j = 1; j <= t; j++)
            max = fmaxf(max, scores[t][j]);
        for (int j = 0; j < T; j++)
            sum += att[t][j] = expf(scores[t][j] - max);
        for (int j = 0; j < T; j++)
            att[t][j] /= sum;
    }
    print_matrix("A = softmax(S) (each row sums to 1; row 0 can only look at itself)", &att[0][0], T, T);

    /* 5. the output: each token's weighted mix of the values it may see */
    float out[T][HS];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HS; i++) {
            out[t][i] = 0.0f;
            for (int j = 0; j < T; j++)
                out[t][i] += att[t][j] * v[j][i];
        }
    print_matrix("out = A V", &out[0][0], T, HS);

    /* 6. the library's op on the same numbers: one sequence (B = 1), one query head and
     * one key/value head, rows of hs floats one after another */
    AttentionShape shape = {.B = 1, .T = T, .H = 1, .KVH = 1, .hs = HS, .pos0 = 0, .n_kv = T,
                            .q_stride = HS, .kv_stride = HS, .kv_seq_stride = T * HS,
                            .kv_type = GGML_TYPE_F32};
    /* and its scratch: room for K transposed, which its matrix products read row by row */
    shape.scratch_stride = attention_scratch_floats(HS, HS, T, GGML_TYPE_F32);
    float *scratch = malloc(shape.scratch_stride * omp_get_max_threads() * sizeof(float));
    if (!scratch)
        return 1;
    shape.scratch = scratch;
    float lib_out[T][HS], lib_att[T][T];
    attention_forward(&lib_out[0][0], &lib_att[0][0], &q[0][0], &k[0][0], &v[0][0], &shape);
    free(scratch);
    float out_diff = 0.0f, att_diff = 0.0f;
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < T; j++)
            att_diff = fmaxf(att_diff, fabsf(att[t][j] - lib_att[t][j]));
        for (int i = 0; i < HS; i++)
            out_diff = fmaxf(out_diff, fabsf(out[t][i] - lib_out[t][i]));
    }
    printf("attention_forward on the same Q, K, V:\n"
           "  max |A by hand - A of the library|     = %.2e\n"
           "  max |out by hand - out of the library| = %.2e\n\n",
           att_diff, out_diff);

    printf("In the model, H heads do this side by side on their own hs-wide slices of q, k\n"
           "and v, and with grouped-query attention several query heads share one key/value\n"
           "head. Try this: multiply Q by 10 (a sharper query): the rows of A become nearly\n"
           "one-hot, each token copying the value of the one key it matches best.\n");
    return 0;
}
