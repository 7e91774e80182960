/* The layers of a llama-style transformer, each as a forward function and its hand-written
 * backward next to it, so that a reader checks one against the other. Shapes use fixed letters:
 *   N  rows (N = B*T tokens)      C  channels (model width)     V  vocabulary
 *   B  sequences                  T  tokens per sequence        F  MLP hidden width
 *   H  query heads                KVH key/value heads           hs head size (C = H*hs)
 * All tensors are row-major float arrays; "(N, C)" means N rows of C floats.
 *
 * Conventions for backward functions: gradients, of parameters and of inputs, are
 * overwritten unless the comment says "+=" (the residual stream's, and the embedding
 * table's, whose rows collect every occurrence of their token). No backward function lets
 * two threads add into the same float, so results do not depend on the thread count.
 * src/ops.c implements them, except attention, which src/attention.c implements with the
 * small matrix-product kernel it runs on. */
#ifndef QUILL_OPS_H
#define QUILL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* e^x with a relative error below 2e-7 over the whole float range, written so that
 * the compiler can vectorise it (the libm expf call cannot be without -ffast-math).
 * Inline, so that the loops of every file that call it vectorise. */
static inline float ops_expf(float x)
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

/* A weight matrix as it is stored: `rows` rows of `cols` elements of a GGUF tensor type
 * (GgmlType), row-major, one row per output: (out, in) for a linear layer, (V, C) for the
 * embedding. quill's training buffer holds F32 matrices; a model mapped from a file holds
 * whatever types the file has (quant.h multiplies them where they lie). */
typedef struct {
    uint32_t type;
    const void *data;
    int rows, cols;
} WeightMatrix;

/* out (N, C) = table[tokens[n]]: row lookup, decoding the table's type. table is (V, C). */
void embedding_forward(float *out, const int *tokens, const WeightMatrix *table, int N);
/* dtable[tokens[n]] += dout[n]. */
void embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C);

/* RMSNorm (Zhang & Sennrich 2019): out = x / rms(x) * weight, rms(x) = sqrt(mean(x^2) + eps).
 * inp, out (N, C); weight (C); rstd (N) keeps 1/rms for the backward pass. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                     int C, float eps);
/* dinp += ..., dweight = ...  (dinp accumulates: it is the residual stream's gradient) */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C);

/* A linear layer without bias: out (N, OC) = inp (N, IC) . w^T, with w (OC, IC) as stored
 * in GGUF, in any type; out's rows are ldo floats apart (ldo >= OC), so a layer can write a
 * slice of a wider row (q, k and v into one qkv row). beta = 0 overwrites out, beta = 1
 * adds to it (a residual connection). Weights other than F32 need `scratch` for the
 * activations in their format (quant.h): linear_scratch_bytes(w, N) bytes (none for F32). */
void linear_forward(float *out, int ldo, const float *inp, int N, const WeightMatrix *w,
                    float beta, void *scratch);
size_t linear_scratch_bytes(const WeightMatrix *w, int N);
/* dinp (N, IC) = dout . weight;  dweight (OC, IC) = dout^T . inp. */
void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, int IC, int OC);

/* Rotary position embedding (Su et al. 2021) as llama GGUF files define it: within each
 * head, the adjacent pair (x[2i], x[2i+1]) is rotated by the angle pos * base^(-2i/hs).
 * With linear scaling (position interpolation) pos is divided by `scaling` first (1: none),
 * as llama.cpp multiplies it by freq_scale = 1/factor. The tables hold cos and sin of those
 * angles, (n_pos, hs/2). */
void rope_tables_init(float *cos_table, float *sin_table, int n_pos, int hs, float base,
                      float scaling);
/* Rotates, in place, n_heads heads of hs floats at the start of each of B*T rows of x;
 * consecutive rows are `stride` floats apart, and row (b, t) has position pos0 + t. */
void rope_forward(float *x, int B, int T, int stride, int n_heads, int hs, int pos0,
                  const float *cos_table, const float *sin_table);
/* The backward of a rotation is the rotation by the opposite angle (in place on dx). */
void rope_backward(float *dx, int B, int T, int stride, int n_heads, int hs, int pos0,
                   const float *cos_table, const float *sin_table);

/* Where causal self-attention finds its operands. Training reads q, k and v from the
 * fused qkv activation of the same B*T tokens; inference reads k and v from the KV cache,
 * which also holds the pos0 earlier positions of each sequence. */
typedef struct {
    int B, T;             /* sequences, new tokens per sequence */
    int H, KVH, hs;       /* query heads, key/value heads (KVH divides H), head size */
    int pos0;             /* position of the first new token; keys 0..pos0+t are visible */
    int n_kv;             /* keys each sequence holds (pos0 + T); columns of att */
    int q_stride;         /* floats between the q rows of consecutive tokens */
    int kv_stride;        /* F32 k, v: floats between the rows of consecutive positions */
    size_t kv_seq_stride; /* F32 k, v: floats between sequences (cache slots) */
    const int *kv_slot;   /* sequence b's keys are slot kv_slot[b] (NULL: slot b) */
    const int *pos;       /* decoding (T = 1): sequence b's new token is at position pos[b]
                             and sees keys 0..pos[b]; n_kv is then the most any sees and
                             the stride of att's rows (NULL: every sequence at pos0) */
    /* Inference reads the KV cache: a slot holds kv_slot_rows positions (0 in training,
     * which has no cache). A cache stored in another type (F16, Q8_0) takes kv_row_bytes
     * per row of KVH*hs elements, and attention decodes what it reads into the scratch. */
    uint32_t kv_type;     /* GGML_TYPE_F32, or the cache's type */
    size_t kv_row_bytes;
    int kv_slot_rows;
    /* scratch_stride floats per thread (attention_scratch_floats), for as many threads as
     * OpenMP runs: a head's keys or values transposed, and a typed cache's decoded rows. */
    float *scratch;
    size_t scratch_stride;
} AttentionShape;

/* Floats of scratch each thread needs for attention over n_kv keys of head size hs, with
 * keys and values stored as kv_type (kv_dim = KVH * hs). */
size_t attention_scratch_floats(int hs, int kv_dim, int n_kv, uint32_t kv_type);

/* out (B, T, H*hs) = softmax(q k^T / sqrt(hs), causal) v, per head; query head h uses
 * key/value head h / (H/KVH) (grouped-query attention). att (B, H, T, n_kv) keeps the
 * probabilities for backward: query t's row holds the pos0+t+1 keys it sees, then zeros
 * to the end of its tile of queries (src/attention.c); the rest of the row, which no pass
 * reads, is not written. q is (B, T, H*hs) and k, v are (B, n_kv, KVH*hs), laid out as the
 * shape says (floats, or rows of kv_type). */
void attention_forward(float *out, float *att, const float *q, const void *k, const void *v,
                       const AttentionShape *s);
/* dq, dk, dv (strides as q, k, v) are overwritten; datt (B, H, T, n_kv) is scratch. */
void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        const AttentionShape *s);

/* SwiGLU (Shazeer 2020): out (N, F) = silu(gate) * up, silu(g) = g * sigmoid(g);
 * gate_up (N, 2F) holds one row's gate then its up, as one fused matmul writes them. */
void swiglu_forward(float *out, const float *gate_up, int N, int F);
void swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F);

/* Softmax + cross-entropy. Forward: logits (N, V) are replaced, in place, by the softmax
 * probabilities and losses[n] = -log p[n][targets[n]]. A target LOSS_IGNORED (a position
 * that chat fine-tuning does not train: not an assistant's token) has loss 0, and the
 * backward pass gives its logits no gradient. */
enum { LOSS_IGNORED = -1 };
void crossentropy_forward(float *losses, float *logits_to_probs, const int *targets, int N,
                          int V);
/* Backward of dloss * sum(losses): probabilities become, in place, the logits' gradient
 * dloss * (p - onehot(target)), or 0 for an ignored target. */
void crossentropy_backward(float *probs_to_dlogits, const int *targets, int N, int V,
                           float dloss);
/* How many of targets[0..N) are not LOSS_IGNORED: what a mean loss divides by. */
int crossentropy_counted(const int *targets, int N);

#endif
