/* AVX2 kernels (AVX2 + FMA + F16C): the panels of quant_impl.h for every weight type on
 * CPUs without AVX-512 VNNI, the activation quantizers and the KV cache's conversions.
 *
 * The same three families as quant_avx512.c, with 256-bit registers (16 of them, against
 * 32): a tile is 4 weight rows x 1 activation row (x 2 for F32/F16/BF16), one block of 32
 * per register, and the integer dot product takes two instructions instead of one:
 * vpmaddubsw multiplies unsigned codes by signed activations and adds neighbours into 16-bit
 * lanes, vpmaddwd adds those pairs into 32-bit lanes (times 1, or times the K-quants'
 * sub-block scales). The 16-bit step saturates above 32767, which codes below 64 never
 * reach (2 * 63 * 127); Q8_0's signed weights use the sign trick instead: |w| times x with
 * w's sign, at most 2 * 128 * 127.
 *
 * Within a segment, each weight row is decoded once into a buffer that every activation row
 * then reads (quant_impl.h). */
#include <string.h>

#include "f16.h"
#include "quant_impl.h"
#include "quant_simd.h"

INLINE TARGET_AVX2 float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE void store_dot(float *o, float beta, float dot)
{
    *o = beta == 0.0f ? dot : beta * *o + dot;
}

/* ---- F32, F16, BF16: tiles of 4 rows x 2 columns, 8 weights per step -------------------
 * The activations are of the weights' type (quant_activation_type) and load the same way. */

INLINE TARGET_AVX2 __m256 f_load8(uint32_t type, const uint8_t *row, int64_t k)
{
    switch (type) {
    case GGML_TYPE_F32:
        return _mm256_loadu_ps((const float *)(row + 4 * k));
    case GGML_TYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
    default: /* BF16 */
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k))), 16));
    }
}

INLINE TARGET_AVX2 float f_value(uint32_t type, const uint8_t *row, int64_t k)
{
    uint16_t h;
    switch (type) {
    case GGML_TYPE_F32:
        return simd_f32_load(row + 4 * k);
    case GGML_TYPE_F16:
        return simd_f16_load(row + 2 * k);
    default:
        memcpy(&h, row + 2 * k, 2);
        return bf16_to_f32(h);
    }
}

INLINE TARGET_AVX2 void tile_f(uint32_t type, int64_t n,
                               const uint8_t *const rows[QUANT_PANEL_ROWS], const uint8_t *act,
                               size_t stride, float *out, int ldo, float beta, int n_rows, int R,
                               int C)
{
    __m256 acc[2][QUANT_PANEL_ROWS];
#pragma GCC unroll 2
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[c][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 w[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            w[r] = f_load8(type, rows[r], k);
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
            __m256 x = f_load8(type, act + c * stride, k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[c][r] = _mm256_fmadd_ps(w[r], x, acc[c][r]);
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < n_rows && r < R; r++) {
            float dot = hsum256(acc[c][r]);
            for (int64_t t = k; t < n; t++) /* the tail, fewer than 8 */
                dot += f_value(type, rows[r], t) * f_value(type, act + c * stride, t);
            store_dot(out + (size_t)c * ldo + r, beta, dot);
        }
}

INLINE TARGET_AVX2 void panel_f(uint32_t type, int64_t n,
                                const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                const uint8_t *act, size_t stride, int n_cols, float *out, int ldo,
                                float beta, int R)
{
    size_t es = type == GGML_TYPE_F32 ? 4 : 2;
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t len = n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT;
        float b = k0 == 0 ? beta : 1.0f;
        const uint8_t *rows[QUANT_PANEL_ROWS];
        for (int r = 0; r < R; r++)
            rows[r] = (const uint8_t *)w_rows[r] + k0 * es;
        for (int c0 = 0; c0 < n_cols; c0 += 2) {
            const uint8_t *a = act + c0 * stride + es * k0;
            float *o = out + (size_t)c0 * ldo;
            if (n_cols - c0 == 1)
                tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 1);
            else
                tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 2);
        }
    }
}

/* ---- 32-element blocks x Q8_0 / Q8_1 --------------------------------------------------------
 * One block per register. A decoded block: its 32 codes (unsigned, in element order; Q8_0's
 * stay signed), its scale and, for type-1 formats, its min. */
typedef struct {
    __m256i q;
    float d, m;
} B32Block;

/* 16 bytes of nibbles as 32 codes in element order: [low nibbles | high nibbles]. */
INLINE TARGET_AVX2 __m256i nibbles32(const uint8_t *qs)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs), low4 = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low4), _mm_and_si128(v, low4));
}

/* Adds 16 to the codes whose bit is set in the 32-bit qh: byte i of the register gets the
 * byte of qh that holds bit i (a shuffle), then tests its own bit. */
INLINE TARGET_AVX2 __m256i fifth_bits32(__m256i q, const uint8_t *qh)
{
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i which_byte = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                 0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), which_byte);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_add_epi8(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

INLINE TARGET_AVX2 B32Block b32_decode(uint32_t type, const uint8_t *b)
{
    B32Block w = {.d = simd_f16_load(b), .m = 0.0f};
    switch (type) {
    case GGML_TYPE_Q4_0:
        w.q = nibbles32(b + offsetof(BlockQ4_0, qs));
        break;
    case GGML_TYPE_Q4_1:
        w.q = nibbles32(b + offsetof(BlockQ4_1, qs));
        w.m = simd_f16_load(b + offsetof(BlockQ4_1, m));
        break;
    case GGML_TYPE_Q5_0:
        w.q = fifth_bits32(nibbles32(b + offsetof(BlockQ5_0, qs)), b + offsetof(BlockQ5_0, qh));
        break;
    case GGML_TYPE_Q5_1:
        w.q = fifth_bits32(nibbles32(b + offsetof(BlockQ5_1, qs)), b + offsetof(BlockQ5_1, qh));
        w.m = simd_f16_load(b + offsetof(BlockQ5_1, m));
        break;
    default: /* Q8_0: signed */
        w.q = simd_load256(b + offsetof(BlockQ8_0, qs));
        break;
    }
    return w;
}

/* The 8 int32 lanes of a block's code x activation sums (unsigned codes). */
INLINE TARGET_AVX2 __m256i dot_u8_s8(__m256i q, __m256i x)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
}

/* One block of R weight rows against one activation block (Q8_0, or Q8_1 for type-1
 * formats, at x). */
INLINE TARGET_AVX2 void b32_step(uint32_t type, const B32Block w[QUANT_PANEL_ROWS],
                                 const uint8_t *x, __m256 acc[QUANT_PANEL_ROWS], int R)
{
    __m256i xq = simd_load256(x + b32_act_qs_offset(type));
    float dx = simd_f16_load(x); /* d is the first field of both formats */
    if (type == GGML_TYPE_Q8_0) { /* sign trick: |w| * (x with w's sign) */
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256i t = dot_u8_s8(_mm256_sign_epi8(w[r].q, w[r].q), _mm256_sign_epi8(xq, w[r].q));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(w[r].d * dx), acc[r]);
        }
        return;
    }
    if (b32_is_type1(type)) {
        /* d dx sum q x in the 8 lanes, and m s (the block's stored sum) in lane 0 alone */
        __m256 s = _mm256_setr_ps(simd_f16_load(x + offsetof(BlockQ8_1, s)), 0, 0, 0, 0, 0, 0, 0);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256i t = dot_u8_s8(w[r].q, xq);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(w[r].d * dx), acc[r]);
            acc[r] = _mm256_fmadd_ps(s, _mm256_set1_ps(w[r].m), acc[r]);
        }
        return;
    }
    /* type-0: sum (q - offset) x = sum q x - offset sum x */
    __m256i xsum = dot_u8_s8(_mm256_set1_epi8(1), xq);
    __m256i base = _mm256_slli_epi32(xsum, type == GGML_TYPE_Q4_0 ? 3 : 4);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256i t = _mm256_sub_epi32(dot_u8_s8(w[r].q, xq), base);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(w[r].d * dx), acc[r]);
    }
}

INLINE TARGET_AVX2 void panel_b32(uint32_t type, int64_t n,
                                  const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                  const uint8_t *act, size_t stride, int n_cols, float *out,
                                  int ldo, float beta, int R)
{
    const size_t wb = b32_block_bytes(type), xb = b32_act_bytes(type);
    B32Block dec[QUANT_PANEL_ROWS][QUANT_SEGMENT / QK];
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t nb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK;
        float b = k0 == 0 ? beta : 1.0f;
        for (int r = 0; r < R; r++)
            for (int64_t i = 0; i < nb; i++)
                dec[r][i] = b32_decode(type, (const uint8_t *)w_rows[r] + (k0 / QK + i) * wb);
        for (int c = 0; c < n_cols; c++) {
            const uint8_t *a = act + c * stride + k0 / QK * xb;
            __m256 acc[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
            for (int64_t i = 0; i < nb; i++) {
                B32Block w[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    w[r] = dec[r][i];
                b32_step(type, w, a + i * xb, acc, R);
            }
            for (int r = 0; r < n_rows && r < R; r++)
                store_dot(out + (size_t)c * ldo + r, b, hsum256(acc[r]));
        }
    }
}

/* ---- K-quants x Q8_K ------------------------------------------------------------------------
 * The super-blocks decoded once per segment (KDecoded, quant_simd.h); per activation row, 8
 * chunks of 32: vpmaddubsw (pair sums), vpmaddwd with the pair scales, added into 8 int32
 * lanes; per super-block, one float FMA for d * dx and one for the bias term. */
INLINE TARGET_AVX2 void panel_k(uint32_t type, int64_t n,
                                const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                const uint8_t *act, size_t stride, int n_cols, float *out, int ldo,
                                float beta, int R)
{
    const size_t wb = kdec_block_bytes(type);
    KDecoded dec[QUANT_PANEL_ROWS][QUANT_SEGMENT / QK_K];
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t n_sb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK_K;
        float b = k0 == 0 ? beta : 1.0f;
        for (int r = 0; r < R; r++)
            for (int64_t sb = 0; sb < n_sb; sb++)
                kdec_block(type, (const uint8_t *)w_rows[r] + (k0 / QK_K + sb) * wb, &dec[r][sb]);
        for (int c = 0; c < n_cols; c++) {
            __m256 acc[QUANT_PANEL_ROWS];
            for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
            for (int64_t sb = 0; sb < n_sb; sb++) {
                const uint8_t *x = act + c * stride + (k0 / QK_K + sb) * sizeof(BlockQ8_K);
                float dx = simd_f32_load(x + offsetof(BlockQ8_K, d));
                __m256i isum[QUANT_PANEL_ROWS];
                for (int r = 0; r < R; r++)
                    isum[r] = _mm256_setzero_si256();
                for (int ch = 0; ch < 8; ch++) {
                    __m256i xv = simd_load256(x + offsetof(BlockQ8_K, qs) + 32 * ch);
                    for (int r = 0; r < R; r++) {
                        const KDecoded *w = &dec[r][sb];
                        __m256i pairs = _mm256_maddubs_epi16(simd_load256(w->q + 32 * ch), xv);
                        isum[r] = _mm256_add_epi32(
                            isum[r], _mm256_madd_epi16(pairs, simd_load256(w->scale + 16 * ch)));
                    }
                }
                __m256i bsums = simd_load256(x + offsetof(BlockQ8_K, bsums));
                for (int r = 0; r < R; r++) {
                    const KDecoded *w = &dec[r][sb];
                    __m256i bias = _mm256_madd_epi16(simd_load256(w->bias), bsums);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(w->d * dx),
                                             acc[r]);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bias),
                                             _mm256_set1_ps(-w->dmin * dx), acc[r]);
                }
            }
            for (int r = 0; r < n_rows && r < R; r++)
                store_dot(out + (size_t)c * ldo + r, b, hsum256(acc[r]));
        }
    }
}

/* ---- Entry points --------------------------------------------------------------------------- */

INLINE TARGET_AVX2 void panel_rows(uint32_t type, int64_t n,
                                   const void *const rows[QUANT_PANEL_ROWS], int n_rows,
                                   const uint8_t *act, size_t stride, int n_cols, float *out,
                                   int ldo, float beta, int R)
{
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16)
        panel_f(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta, R);
    else if (kdec_is_k_quant(type))
        panel_k(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta, R);
    else
        panel_b32(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta, R);
}

INLINE TARGET_AVX2 void panel_any(uint32_t type, int64_t n,
                                  const void *const rows[QUANT_PANEL_ROWS], int n_rows,
                                  const void *act, size_t stride, int n_cols, float *out, int ldo,
                                  float beta)
{
    if (n_rows == 1)
        panel_rows(type, n, rows, 1, act, stride, n_cols, out, ldo, beta, 1);
    else
        panel_rows(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta, QUANT_PANEL_ROWS);
}

/* One exported function per type, each the panel specialised for that type. */
#define DEFINE_PANEL(name, type)                                                            \
    static TARGET_AVX2 void name(int64_t n, const void *const rows[QUANT_PANEL_ROWS],       \
                                 int n_rows, const void *act, size_t stride, int n_cols,    \
                                 float *out, int ldo, float beta)                           \
    {                                                                                       \
        panel_any(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta);              \
    }

DEFINE_PANEL(panel_f32, GGML_TYPE_F32)
DEFINE_PANEL(panel_f16, GGML_TYPE_F16)
DEFINE_PANEL(panel_bf16, GGML_TYPE_BF16)
DEFINE_PANEL(panel_q4_0, GGML_TYPE_Q4_0)
DEFINE_PANEL(panel_q4_1, GGML_TYPE_Q4_1)
DEFINE_PANEL(panel_q5_0, GGML_TYPE_Q5_0)
DEFINE_PANEL(panel_q5_1, GGML_TYPE_Q5_1)
DEFINE_PANEL(panel_q8_0, GGML_TYPE_Q8_0)
DEFINE_PANEL(panel_q2_k, GGML_TYPE_Q2_K)
DEFINE_PANEL(panel_q3_k, GGML_TYPE_Q3_K)
DEFINE_PANEL(panel_q4_k, GGML_TYPE_Q4_K)
DEFINE_PANEL(panel_q5_k, GGML_TYPE_Q5_K)
DEFINE_PANEL(panel_q6_k, GGML_TYPE_Q6_K)

QuantPanelFn *quant_avx2_panel(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F32: return panel_f32;
    case GGML_TYPE_F16: return panel_f16;
    case GGML_TYPE_BF16: return panel_bf16;
    case GGML_TYPE_Q4_0: return panel_q4_0;
    case GGML_TYPE_Q4_1: return panel_q4_1;
    case GGML_TYPE_Q5_0: return panel_q5_0;
    case GGML_TYPE_Q5_1: return panel_q5_1;
    case GGML_TYPE_Q8_0: return panel_q8_0;
    case GGML_TYPE_Q2_K: return panel_q2_k;
    case GGML_TYPE_Q3_K: return panel_q3_k;
    case GGML_TYPE_Q4_K: return panel_q4_k;
    case GGML_TYPE_Q5_K: return panel_q5_k;
    case GGML_TYPE_Q6_K: return panel_q6_k;
    default: return NULL;
    }
}

/* ---- Activation quantizers: the reference's operations, 8 at a time ------------------------
 * (quant_q32.c and quant_kquants.c say why each reciprocal is the float it is). */

INLINE TARGET_AVX2 float absmax8(const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* q = round(x * id) for 32 floats, as 32 bytes in order. */
INLINE TARGET_AVX2 __m256i quantize32(const float *x, __m256 id)
{
    __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    /* the packs work within 128-bit lanes; the final permute puts the 8 groups in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    return _mm256_permutevar8x32_epi32(p, _mm256_set_epi32(7, 3, 6, 2, 5, 1, 4, 0));
}

/* One block of 32 activations as quant_q32.c's quantize_activation_block codes it: the
 * codes to qs, the unrounded d returned. */
INLINE TARGET_AVX2 float quantize_activation_block(const float *x, uint8_t *qs)
{
    float amax = absmax8(x, QK);
    simd_store256(qs, quantize32(x, _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f)));
    return amax / 127.0f;
}

DEFINE_Q8_0_Q8_1_QUANTIZERS(TARGET_AVX2, quantize_row_q8_0_avx2, quantize_row_q8_1_avx2)

static TARGET_AVX2 void quantize_row_q8_k_avx2(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / QK_K; i++, out += sizeof(BlockQ8_K)) {
        const float *x = src + i * QK_K;
        float amax = absmax8(x, QK_K);
        float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
        float d = amax != 0.0f ? 1.0f / iscale : 0.0f;
        __m256 id = _mm256_set1_ps(iscale);
        memcpy(out + offsetof(BlockQ8_K, d), &d, 4);
        int16_t bsums[16];
        for (int c = 0; c < 8; c++) {
            __m256i q = quantize32(x + 32 * c, id);
            simd_store256(out + offsetof(BlockQ8_K, qs) + 32 * c, q);
            /* sums of each 16 codes: pairs, then quads, ... by multiplying by ones */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
                                          _mm256_set1_epi16(1));
            int32_t lanes[8];
            simd_store256(lanes, s);
            bsums[2 * c] = (int16_t)(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
            bsums[2 * c + 1] = (int16_t)(lanes[4] + lanes[5] + lanes[6] + lanes[7]);
        }
        memcpy(out + offsetof(BlockQ8_K, bsums), bsums, sizeof bsums);
    }
}

/* ---- The KV cache's types: as in quant_avx512.c, 8 at a time; a row's last few values go
 * through f16.h (the same conversions, one by one). ------------------------------------------ */

static TARGET_AVX2 void quantize_row_f16_avx2(const float *src, void *dst, int64_t n)
{
    uint16_t *out = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        out[i] = f32_to_f16(src[i]);
}

static TARGET_AVX2 void dequantize_rows_f16_avx2(const void *src, size_t src_stride,
                                                 float *dst, int n_rows, int64_t n)
{
    for (int r = 0; r < n_rows; r++, dst += n) {
        const uint16_t *in = (const uint16_t *)((const uint8_t *)src + (size_t)r * src_stride);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
        for (; i < n; i++)
            dst[i] = f16_to_f32(in[i]);
    }
}

static TARGET_AVX2 void dequantize_rows_q8_0_avx2(const void *src, size_t src_stride,
                                                  float *dst, int n_rows, int64_t n)
{
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *block = (const uint8_t *)src + (size_t)r * src_stride;
        for (int64_t i = 0; i < n; i += QK, block += sizeof(BlockQ8_0), dst += QK) {
            uint16_t d16;
            memcpy(&d16, block + offsetof(BlockQ8_0, d), 2);
            __m256 d = _mm256_set1_ps(_cvtsh_ss(d16));
            for (int eighth = 0; eighth < 4; eighth++) {
                __m128i q = _mm_loadl_epi64(
                    (const __m128i *)(block + offsetof(BlockQ8_0, qs) + 8 * eighth));
                _mm256_storeu_ps(dst + 8 * eighth,
                                 _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
            }
        }
    }
}

QuantQuantizeFn *quant_avx2_quantizer(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q8_0: return quantize_row_q8_0_avx2;
    case GGML_TYPE_Q8_1: return quantize_row_q8_1_avx2;
    case GGML_TYPE_Q8_K: return quantize_row_q8_k_avx2;
    case GGML_TYPE_F16: return quantize_row_f16_avx2;
    default: return NULL;
    }
}

QuantDequantizeRowsFn *quant_avx2_dequantizer(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F16: return dequantize_rows_f16_avx2;
    case GGML_TYPE_Q8_0: return dequantize_rows_q8_0_avx2;
    default: return NULL;
    }
}
