/* Every layer's backward against central finite differences (grad_check.h), plus values
 * worked out by hand for the forward passes. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "grad_check.h"
#include "gguf.h"
#include "ops.h"
#include "quant.h"

static const GradTolerance TOL = {.eps = 1e-2, .atol = 2e-4, .rtol = 1e-2};

/* ---- exp ------------------------------------------------------------------------------ */

Test(ops, expf_matches_libm_within_2e7_relative)
{
    double worst = 0.0;
    for (double x = -87.0; x <= 88.0; x += 0.0137) {
        double exact = exp((double)(float)x);
        double rel = fabs(ops_expf((float)x) - exact) / exact;
        worst = fmax(worst, rel);
    }
    cr_expect_lt(worst, 2e-7, "worst relative error %.3g", worst);
    cr_expect_eq(ops_expf(0.0f), 1.0f);
    cr_expect_float_eq(ops_expf(1.0f), 2.7182817f, 1e-6f);
    cr_expect(isnan(ops_expf(NAN)), "NaN in, NaN out: divergence must stay visible");
    cr_expect_lt(ops_expf(-1000.0f), 1.3e-38f, "underflow saturates at e^-87.3");
}

/* ---- embedding ------------------------------------------------------------------------ */

enum { EMB_V = 6, EMB_C = 4, EMB_N = 5 };
typedef struct {
    float table[EMB_V * EMB_C], out[EMB_N * EMB_C], proj[EMB_N * EMB_C];
    int tokens[EMB_N];
} EmbeddingCase;

static double embedding_loss(void *p)
{
    EmbeddingCase *c = p;
    WeightMatrix table = {GGML_TYPE_F32, c->table, EMB_V, EMB_C};
    embedding_forward(c->out, c->tokens, &table, EMB_N);
    return dot_double(c->out, c->proj, EMB_N * EMB_C);
}

Test(ops, embedding_backward_sums_repeated_tokens)
{
    EmbeddingCase c = {.tokens = {3, 1, 3, 0, 3}};
    fill_uniform(c.table, EMB_V * EMB_C, -1, 1, 1);
    fill_uniform(c.proj, EMB_N * EMB_C, -1, 1, 2);
    float dtable[EMB_V * EMB_C] = {0};
    embedding_backward(dtable, c.proj, c.tokens, EMB_N, EMB_C);
    grad_check("embedding dtable", c.table, dtable, EMB_V * EMB_C, 1, embedding_loss, &c, TOL);
    /* token 3 appears at positions 0, 2, 4: its row is the sum of their gradients */
    cr_expect_float_eq(dtable[3 * EMB_C], c.proj[0] + c.proj[2 * EMB_C] + c.proj[4 * EMB_C],
                       1e-6f);
    cr_expect_eq(dtable[5 * EMB_C], 0.0f, "an unused token gets no gradient");
}

/* ---- RMSNorm -------------------------------------------------------------------------- */

enum { RMS_N = 3, RMS_C = 8 };
typedef struct {
    float inp[RMS_N * RMS_C], weight[RMS_C], out[RMS_N * RMS_C], rstd[RMS_N],
        proj[RMS_N * RMS_C];
} RmsCase;

static double rmsnorm_loss(void *p)
{
    RmsCase *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->weight, RMS_N, RMS_C, 1e-5f);
    return dot_double(c->out, c->proj, RMS_N * RMS_C);
}

Test(ops, rmsnorm_forward_by_hand)
{
    /* x = (3, 4): mean(x^2) = 12.5, rms = 3.5355; weight (1, 2) */
    float x[2] = {3, 4}, w[2] = {1, 2}, y[2], rstd;
    rmsnorm_forward(y, &rstd, x, w, 1, 2, 0.0f);
    cr_expect_float_eq(y[0], 3.0f / sqrtf(12.5f), 1e-6f);
    cr_expect_float_eq(y[1], 8.0f / sqrtf(12.5f), 1e-6f);
}

Test(ops, rmsnorm_backward_matches_finite_differences)
{
    RmsCase c;
    fill_uniform(c.inp, RMS_N * RMS_C, -2, 2, 3);
    fill_uniform(c.weight, RMS_C, 0.5f, 1.5f, 4);
    fill_uniform(c.proj, RMS_N * RMS_C, -1, 1, 5);
    rmsnorm_loss(&c);
    float dinp[RMS_N * RMS_C] = {0}, dweight[RMS_C] = {0};
    rmsnorm_backward(dinp, dweight, c.proj, c.inp, c.weight, c.rstd, RMS_N, RMS_C);
    grad_check("rmsnorm dinp", c.inp, dinp, RMS_N * RMS_C, 1, rmsnorm_loss, &c, TOL);
    grad_check("rmsnorm dweight", c.weight, dweight, RMS_C, 1, rmsnorm_loss, &c, TOL);
}

/* ---- matmul --------------------------------------------------------------------------- */

enum { MM_N = 3, MM_IC = 5, MM_OC = 4 };
typedef struct {
    float inp[MM_N * MM_IC], weight[MM_OC * MM_IC], out[MM_N * MM_OC], proj[MM_N * MM_OC];
} MatmulCase;

static double matmul_loss(void *p)
{
    MatmulCase *c = p;
    WeightMatrix w = {GGML_TYPE_F32, c->weight, MM_OC, MM_IC};
    linear_forward(c->out, MM_OC, c->inp, MM_N, &w, 0.0f, NULL);
    return dot_double(c->out, c->proj, MM_N * MM_OC);
}

Test(ops, linear_forward_by_hand_accumulating_into_a_strided_output)
{
    /* (1 2) . [[1 0], [0 1], [1 1]]^T = (1, 2, 3), added into the first 3 of 4 columns */
    float x[2] = {1, 2}, w[6] = {1, 0, 0, 1, 1, 1}, y[4] = {10, 20, 30, 40};
    WeightMatrix m = {GGML_TYPE_F32, w, 3, 2};
    linear_forward(y, 4, x, 1, &m, 1.0f, NULL);
    cr_expect_float_eq(y[0], 11.0f, 1e-6f);
    cr_expect_float_eq(y[1], 22.0f, 1e-6f);
    cr_expect_float_eq(y[2], 33.0f, 1e-6f);
    cr_expect_eq(y[3], 40.0f, "the column beyond the output is not touched");
}

Test(ops, matmul_backward_matches_finite_differences)
{
    MatmulCase c;
    fill_uniform(c.inp, MM_N * MM_IC, -1, 1, 6);
    fill_uniform(c.weight, MM_OC * MM_IC, -1, 1, 7);
    fill_uniform(c.proj, MM_N * MM_OC, -1, 1, 8);
    float dinp[MM_N * MM_IC], dweight[MM_OC * MM_IC] = {0};
    matmul_backward(dinp, dweight, c.proj, c.inp, c.weight, MM_N, MM_IC, MM_OC);
    grad_check("matmul dinp", c.inp, dinp, MM_N * MM_IC, 1, matmul_loss, &c, TOL);
    grad_check("matmul dweight", c.weight, dweight, MM_OC * MM_IC, 1, matmul_loss, &c, TOL);
}

/* ---- RoPE ----------------------------------------------------------------------------- */

enum { ROPE_B = 2, ROPE_T = 3, ROPE_HEADS = 2, ROPE_HS = 4, ROPE_POS0 = 2, ROPE_NPOS = 8 };
enum { ROPE_ROW = ROPE_HEADS * ROPE_HS, ROPE_SIZE = ROPE_B * ROPE_T * ROPE_ROW };
typedef struct {
    float x[ROPE_SIZE], work[ROPE_SIZE], proj[ROPE_SIZE];
    float cos_table[ROPE_NPOS * ROPE_HS / 2], sin_table[ROPE_NPOS * ROPE_HS / 2];
} RopeCase;

static double rope_loss(void *p)
{
    RopeCase *c = p;
    memcpy(c->work, c->x, sizeof c->x);
    rope_forward(c->work, ROPE_B, ROPE_T, ROPE_ROW, ROPE_HEADS, ROPE_HS, ROPE_POS0, c->cos_table,
                 c->sin_table);
    return dot_double(c->work, c->proj, ROPE_SIZE);
}

/* hs = 4, base 10000: pair 0 turns by pos rad, pair 1 by pos * 10000^(-1/2) = pos/100.
 * With linear scaling 4, position 8 turns as position 2 does without. */
Test(ops, rope_rotates_adjacent_pairs_by_hand)
{
    const struct {
        float scaling;
        int pos;
    } cases[] = {{1.0f, 2}, {4.0f, 8}};
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float cos_table[9 * 2], sin_table[9 * 2];
        rope_tables_init(cos_table, sin_table, 9, 4, 10000.0f, cases[i].scaling);
        float x[4] = {1, 0, 0, 1};
        rope_forward(x, 1, 1, 4, 1, 4, cases[i].pos, cos_table, sin_table); /* one token */
        cr_expect_float_eq(x[0], cosf(2.0f), 1e-6f, "scaling %g", cases[i].scaling);
        cr_expect_float_eq(x[1], sinf(2.0f), 1e-6f, "scaling %g", cases[i].scaling);
        cr_expect_float_eq(x[2], -sinf(0.02f), 1e-6f, "scaling %g", cases[i].scaling);
        cr_expect_float_eq(x[3], cosf(0.02f), 1e-6f, "scaling %g", cases[i].scaling);
        compared++;
    }
    cr_assert_eq(compared, 2);
}

Test(ops, rope_backward_matches_finite_differences)
{
    RopeCase c;
    rope_tables_init(c.cos_table, c.sin_table, ROPE_NPOS, ROPE_HS, 10000.0f, 1.0f);
    fill_uniform(c.x, ROPE_SIZE, -1, 1, 9);
    fill_uniform(c.proj, ROPE_SIZE, -1, 1, 10);
    float dx[ROPE_SIZE];
    memcpy(dx, c.proj, sizeof dx);
    rope_backward(dx, ROPE_B, ROPE_T, ROPE_ROW, ROPE_HEADS, ROPE_HS, ROPE_POS0, c.cos_table,
                  c.sin_table);
    grad_check("rope dx", c.x, dx, ROPE_SIZE, 1, rope_loss, &c, TOL);
}

/* ---- attention ------------------------------------------------------------------------ */

/* Grouped-query attention: 4 query heads share 2 key/value heads. */
/* Attention's scratch for shape s, for every thread; big enough for every case here. */
static void give_attention_scratch(AttentionShape *s)
{
    static float scratch[64 * 16384];
    s->scratch = scratch;
    s->scratch_stride = attention_scratch_floats(s->hs, s->KVH * s->hs, s->n_kv, s->kv_type);
    cr_assert_leq(omp_get_max_threads() * s->scratch_stride, sizeof scratch / sizeof *scratch);
}

enum { AT_B = 2, AT_T = 5, AT_H = 4, AT_KVH = 2, AT_HS = 4 };
enum { AT_C = AT_H * AT_HS, AT_KVC = AT_KVH * AT_HS, AT_QKV = AT_C + 2 * AT_KVC };
enum { AT_ROWS = AT_B * AT_T, AT_ATT = AT_B * AT_H * AT_T * AT_T };
typedef struct {
    float qkv[AT_ROWS * AT_QKV], out[AT_ROWS * AT_C], att[AT_ATT], proj[AT_ROWS * AT_C];
    AttentionShape shape;
} AttentionCase;

static AttentionShape attention_case_shape(void)
{
    AttentionShape s = {.B = AT_B, .T = AT_T, .H = AT_H, .KVH = AT_KVH, .hs = AT_HS, .pos0 = 0,
                        .n_kv = AT_T, .q_stride = AT_QKV, .kv_stride = AT_QKV,
                        .kv_seq_stride = AT_T * AT_QKV};
    give_attention_scratch(&s);
    return s;
}

static double attention_loss(void *p)
{
    AttentionCase *c = p;
    attention_forward(c->out, c->att, c->qkv, c->qkv + AT_C, c->qkv + AT_C + AT_KVC, &c->shape);
    return dot_double(c->out, c->proj, AT_ROWS * AT_C);
}

Test(ops, attention_first_token_sees_only_itself)
{
    AttentionCase c = {.shape = attention_case_shape()};
    fill_uniform(c.qkv, AT_ROWS * AT_QKV, -1, 1, 11);
    attention_loss(&c);
    /* token 0 of sequence 0, head 3 (kv head 1): its output is its own value vector */
    const float *v = c.qkv + AT_C + AT_KVC + 1 * AT_HS;
    for (int i = 0; i < AT_HS; i++)
        cr_expect_float_eq(c.out[3 * AT_HS + i], v[i], 1e-6f);
    /* every probability row sums to 1 over the visible keys, and is 0 beyond */
    for (int row = 0; row < AT_B * AT_H * AT_T; row++) {
        int t = row % AT_T;
        float sum = 0;
        for (int j = 0; j < AT_T; j++) {
            sum += c.att[row * AT_T + j];
            if (j > t)
                cr_expect_eq(c.att[row * AT_T + j], 0.0f);
        }
        cr_expect_float_eq(sum, 1.0f, 1e-5f);
    }
}

Test(ops, attention_backward_matches_finite_differences)
{
    AttentionCase c = {.shape = attention_case_shape()};
    fill_uniform(c.qkv, AT_ROWS * AT_QKV, -1.5f, 1.5f, 12);
    fill_uniform(c.proj, AT_ROWS * AT_C, -1, 1, 13);
    attention_loss(&c);
    float dqkv[AT_ROWS * AT_QKV], datt[AT_ATT];
    attention_backward(dqkv, dqkv + AT_C, dqkv + AT_C + AT_KVC, datt, c.proj, c.qkv,
                       c.qkv + AT_C, c.qkv + AT_C + AT_KVC, c.att, &c.shape);
    grad_check("attention dqkv", c.qkv, dqkv, AT_ROWS * AT_QKV, 1, attention_loss, &c, TOL);
}

/* Long sequences: attention works in tiles of a few queries, each over only the keys it
 * sees, and in tiles of up to 64 keys or head columns. 150 positions make many of each;
 * the forward pass is compared with a direct double-precision computation, fresh (pos0 =
 * 0) and after 70 cached positions, and the backward pass with finite differences. One
 * sequence, 2 query heads on 1 key/value head, of the head sizes LA_HEAD_SIZES: rows of
 * whole vectors (64, or 8 with AVX2), and rows that end inside a vector (8 and 40 with
 * AVX-512), which the kernel reads in part. */
enum { LA_T = 150, LA_H = 2, LA_KVH = 1, LA_CTX = 70 + LA_T, LA_MAX_HS = 64 };
enum { LA_MAX_C = LA_H * LA_MAX_HS, LA_MAX_QKV = LA_MAX_C + 2 * LA_KVH * LA_MAX_HS };
static const int LA_HEAD_SIZES[] = {8, 40, 64};
enum { LA_N_HEAD_SIZES = sizeof LA_HEAD_SIZES / sizeof *LA_HEAD_SIZES };
typedef struct {
    float qkv[LA_T * LA_MAX_QKV], out[LA_T * LA_MAX_C], att[LA_H * LA_T * LA_T];
    float proj[LA_T * LA_MAX_C];
    AttentionShape shape;
    int C, KVC, QKV; /* of the head size in use */
} LongAttentionCase;

static void long_attention_case_init(LongAttentionCase *c, int hs)
{
    c->C = LA_H * hs;
    c->KVC = LA_KVH * hs;
    c->QKV = c->C + 2 * c->KVC;
    c->shape = (AttentionShape){.B = 1, .T = LA_T, .H = LA_H, .KVH = LA_KVH, .hs = hs,
                                .n_kv = LA_T, .q_stride = c->QKV, .kv_stride = c->QKV,
                                .kv_seq_stride = LA_T * c->QKV};
    give_attention_scratch(&c->shape);
}

/* out_h(t) = sum over j <= pos0+t of softmax_j(q_t . k_j / sqrt(hs)) v_j, in double; head
 * h of q (rows q_stride apart) reads key/value head h / (H/KVH) of k and v (kv_stride). */
static double direct_attention_output(const AttentionShape *s, const float *q, const float *k,
                                      const float *v, int t, int h, int i)
{
    const float *q_t = q + (size_t)t * s->q_stride + h * s->hs;
    int g = h / (s->H / s->KVH), visible = s->pos0 + t + 1;
    double scores[LA_CTX], max = -INFINITY, sum = 0.0, out = 0.0;
    for (int j = 0; j < visible; j++) {
        scores[j] = 0.0;
        for (int d = 0; d < s->hs; d++)
            scores[j] += (double)q_t[d] * k[(size_t)j * s->kv_stride + g * s->hs + d];
        scores[j] /= sqrt((double)s->hs);
        max = scores[j] > max ? scores[j] : max;
    }
    for (int j = 0; j < visible; j++)
        sum += exp(scores[j] - max);
    for (int j = 0; j < visible; j++)
        out += exp(scores[j] - max) / sum * v[(size_t)j * s->kv_stride + g * s->hs + i];
    return out;
}

static int expect_direct_attention(const AttentionShape *s, const float *out, const float *q,
                                   const float *k, const float *v)
{
    int compared = 0;
    for (int t = 0; t < s->T; t++)
        for (int h = 0; h < s->H; h++)
            for (int i = 0; i < s->hs; i++, compared++)
                cr_expect(fabs(out[(size_t)t * s->H * s->hs + h * s->hs + i] -
                               direct_attention_output(s, q, k, v, t, h, i)) < 1e-5,
                          "head size %d, pos0 %d, position %d, head %d, element %d", s->hs,
                          s->pos0, t, h, i);
    return compared;
}

/* Fresh and after cached positions, for one head size; returns the outputs compared. */
static int long_attention_forward_case(int hs)
{
    static LongAttentionCase c;
    long_attention_case_init(&c, hs);
    fill_uniform(c.qkv, LA_T * c.QKV, -2, 2, 31);
    const float *k = c.qkv + c.C, *v = k + c.KVC;
    attention_forward(c.out, c.att, c.qkv, k, v, &c.shape);
    int compared = expect_direct_attention(&c.shape, c.out, c.qkv, k, v);

    /* a prompt of LA_T tokens after 70 cached ones: keys and values (LA_CTX rows) */
    static float q[LA_T * LA_MAX_C], kv[2][LA_CTX * LA_KVH * LA_MAX_HS], att[LA_H * LA_T * LA_CTX];
    fill_uniform(q, LA_T * c.C, -2, 2, 32);
    fill_uniform(kv[0], LA_CTX * c.KVC, -2, 2, 33);
    fill_uniform(kv[1], LA_CTX * c.KVC, -2, 2, 34);
    AttentionShape cached = {.B = 1, .T = LA_T, .H = LA_H, .KVH = LA_KVH, .hs = hs,
                             .pos0 = LA_CTX - LA_T, .n_kv = LA_CTX, .q_stride = c.C,
                             .kv_stride = c.KVC, .kv_seq_stride = LA_CTX * c.KVC};
    give_attention_scratch(&cached);
    attention_forward(c.out, att, q, kv[0], kv[1], &cached);
    return compared + expect_direct_attention(&cached, c.out, q, kv[0], kv[1]);
}

Test(ops, attention_over_many_tiles_equals_the_direct_computation)
{
    int compared = 0, expected = 0;
    for (int i = 0; i < LA_N_HEAD_SIZES; i++) {
        compared += long_attention_forward_case(LA_HEAD_SIZES[i]);
        expected += 2 * LA_T * LA_H * LA_HEAD_SIZES[i];
    }
    cr_assert_eq(compared, expected);
}

static double long_attention_loss(void *p)
{
    LongAttentionCase *c = p;
    attention_forward(c->out, c->att, c->qkv, c->qkv + c->C, c->qkv + c->C + c->KVC, &c->shape);
    return dot_double(c->out, c->proj, LA_T * c->C);
}

Test(ops, attention_backward_over_many_tiles_matches_finite_differences)
{
    static LongAttentionCase c;
    static float dqkv[LA_T * LA_MAX_QKV], datt[LA_H * LA_T * LA_T];
    for (int i = 0; i < LA_N_HEAD_SIZES; i++) {
        long_attention_case_init(&c, LA_HEAD_SIZES[i]);
        fill_uniform(c.qkv, LA_T * c.QKV, -1.5f, 1.5f, 35);
        fill_uniform(c.proj, LA_T * c.C, -1, 1, 36);
        long_attention_loss(&c);
        attention_backward(dqkv, dqkv + c.C, dqkv + c.C + c.KVC, datt, c.proj, c.qkv,
                           c.qkv + c.C, c.qkv + c.C + c.KVC, c.att, &c.shape);
        /* about 700 entries, spread over q, k and v of every tile of positions (a stride
         * that is odd, and prime to the row length, walks through all columns) */
        size_t n = (size_t)LA_T * c.QKV, stride = (n / 700) | 1;
        grad_check("long attention dqkv", c.qkv, dqkv, n, stride, long_attention_loss, &c, TOL);
    }
}

/* Attention over a cache stored as F16 or Q8_0 must equal attention over an F32 cache that
 * holds the same decoded values: the typed path only changes where keys and values come
 * from. Two sequences in swapped cache slots, 2 query heads per key/value head of 32. */
enum { TC_B = 2, TC_T = 3, TC_CTX = 7, TC_POS0 = 4, TC_H = 4, TC_KVH = 2, TC_HS = 32 };
enum { TC_C = TC_H * TC_HS, TC_KVC = TC_KVH * TC_HS, TC_KV = TC_POS0 + TC_T };

static void typed_cache_case(uint32_t type)
{
    static float q[TC_B * TC_T * TC_C], k[TC_B * TC_CTX * TC_KVC], v[TC_B * TC_CTX * TC_KVC];
    static float out_f32[TC_B * TC_T * TC_C], out_typed[TC_B * TC_T * TC_C];
    static float att[TC_B * TC_H * TC_T * TC_KV];
    static uint8_t k_rows[TC_B * TC_CTX * TC_KVC * 4], v_rows[TC_B * TC_CTX * TC_KVC * 4];
    fill_uniform(q, TC_B * TC_T * TC_C, -1, 1, 21);
    fill_uniform(k, TC_B * TC_CTX * TC_KVC, -1, 1, 22);
    fill_uniform(v, TC_B * TC_CTX * TC_KVC, -1, 1, 23);
    size_t row_bytes = quant_row_bytes(type, TC_KVC);
    for (int r = 0; r < TC_B * TC_CTX; r++) { /* store, then keep only what the type holds */
        quant_quantize_row(type, k + r * TC_KVC, k_rows + r * row_bytes, TC_KVC);
        quant_quantize_row(type, v + r * TC_KVC, v_rows + r * row_bytes, TC_KVC);
        quant_dequantize_row(type, k_rows + r * row_bytes, k + r * TC_KVC, TC_KVC);
        quant_dequantize_row(type, v_rows + r * row_bytes, v + r * TC_KVC, TC_KVC);
    }
    const int slots[TC_B] = {1, 0};
    AttentionShape s = {.B = TC_B, .T = TC_T, .H = TC_H, .KVH = TC_KVH, .hs = TC_HS,
                        .pos0 = TC_POS0, .n_kv = TC_KV, .q_stride = TC_C, .kv_stride = TC_KVC,
                        .kv_seq_stride = TC_CTX * TC_KVC, .kv_slot = slots};
    give_attention_scratch(&s);
    attention_forward(out_f32, att, q, k, v, &s);
    s.kv_type = type;
    s.kv_row_bytes = row_bytes;
    s.kv_slot_rows = TC_CTX;
    give_attention_scratch(&s);
    attention_forward(out_typed, att, q, k_rows, v_rows, &s);
    for (int i = 0; i < TC_B * TC_T * TC_C; i++)
        cr_expect_float_eq(out_typed[i], out_f32[i], 1e-6f, "%s cache, output %d",
                           gguf_tensor_type_name(type), i);
}

Test(ops, attention_over_f16_and_q8_0_caches_equals_attention_over_their_values)
{
    typed_cache_case(GGML_TYPE_F16);
    typed_cache_case(GGML_TYPE_Q8_0);
}

/* ---- SwiGLU --------------------------------------------------------------------------- */

enum { SW_N = 3, SW_F = 5 };
typedef struct {
    float gate_up[SW_N * 2 * SW_F], out[SW_N * SW_F], proj[SW_N * SW_F];
} SwigluCase;

static double swiglu_loss(void *p)
{
    SwigluCase *c = p;
    swiglu_forward(c->out, c->gate_up, SW_N, SW_F);
    return dot_double(c->out, c->proj, SW_N * SW_F);
}

Test(ops, swiglu_forward_by_hand)
{
    /* silu(2) * 3 = 2 / (1 + e^-2) * 3 */
    float gate_up[2] = {2.0f, 3.0f}, y;
    swiglu_forward(&y, gate_up, 1, 1);
    cr_expect_float_eq(y, 6.0f / (1.0f + expf(-2.0f)), 1e-6f);
}

Test(ops, swiglu_backward_matches_finite_differences)
{
    SwigluCase c;
    fill_uniform(c.gate_up, SW_N * 2 * SW_F, -3, 3, 14);
    fill_uniform(c.proj, SW_N * SW_F, -1, 1, 15);
    float dgate_up[SW_N * 2 * SW_F];
    swiglu_backward(dgate_up, c.proj, c.gate_up, SW_N, SW_F);
    grad_check("swiglu dgate_up", c.gate_up, dgate_up, SW_N * 2 * SW_F, 1, swiglu_loss, &c, TOL);
}

/* ---- cross-entropy -------------------------------------------------------------------- */

enum { CE_N = 4, CE_V = 7 };
typedef struct {
    float logits[CE_N * CE_V], work[CE_N * CE_V], losses[CE_N];
    int targets[CE_N];
} CrossEntropyCase;

static double crossentropy_loss(void *p)
{
    CrossEntropyCase *c = p;
    memcpy(c->work, c->logits, sizeof c->logits);
    crossentropy_forward(c->losses, c->work, c->targets, CE_N, CE_V);
    double sum = 0;
    for (int n = 0; n < CE_N; n++)
        sum += c->losses[n];
    return sum;
}

Test(ops, crossentropy_by_hand)
{
    /* equal logits: loss ln(V); logits (0, ln 3), target 1: p = 3/4, loss -ln(3/4) */
    float equal[5] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f}, loss;
    int target = 2;
    crossentropy_forward(&loss, equal, &target, 1, 5);
    cr_expect_float_eq(loss, logf(5.0f), 1e-6f);
    float two[2] = {0.0f, logf(3.0f)};
    target = 1;
    crossentropy_forward(&loss, two, &target, 1, 2);
    cr_expect_float_eq(loss, -logf(0.75f), 1e-6f);
    cr_expect_float_eq(two[0], 0.25f, 1e-6f);
}

Test(ops, crossentropy_backward_matches_finite_differences)
{
    CrossEntropyCase c = {.targets = {0, 6, 3, 3}};
    fill_uniform(c.logits, CE_N * CE_V, -2, 2, 16);
    crossentropy_loss(&c);
    crossentropy_backward(c.work, c.targets, CE_N, CE_V, 1.0f);
    float dlogits[CE_N * CE_V];
    memcpy(dlogits, c.work, sizeof dlogits);
    grad_check("crossentropy dlogits", c.logits, dlogits, CE_N * CE_V, 1, crossentropy_loss, &c,
               TOL);
}
