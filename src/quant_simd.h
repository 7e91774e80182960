/* What the AVX2 and AVX-512 kernel files share: the target attributes, small helpers, the
 * sizes of the 32-element blocks and of their activations, and the decoders that unpack one
 * K-quant super-block into plain arrays (written with AVX2; AVX-512 CPUs run them too, and
 * they are inlined into the AVX-512 kernels).
 *
 * Every function here is static inline with a target attribute: it is compiled for that
 * instruction set whatever -march says, and it only runs after quant.c has checked, at run
 * time, that the CPU has it. A function may be inlined into one whose target includes its
 * own (AVX2 code into AVX-512 code), never the other way round. */
#ifndef QUILL_QUANT_SIMD_H
#define QUILL_QUANT_SIMD_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"
#include "quant_blocks.h"

#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512                                                                        \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
/* The kernels are "templates": an inline function takes the weight type and the tile shape
 * as arguments, and each caller passes constants, so the compiler folds the switches on
 * them and emits one specialised loop per type and shape. always_inline makes sure it
 * does. */
#define INLINE static inline __attribute__((always_inline))

/* An f16 scale from unaligned bytes, as a float (the F16C instruction). */
INLINE TARGET_AVX2 float simd_f16_load(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* A float rounded to f16 (to nearest, ties to even, as f16.h does), stored at unaligned
 * bytes. */
INLINE TARGET_AVX2 void simd_f16_store(uint8_t *p, float v)
{
    uint16_t h = _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
    memcpy(p, &h, 2);
}

INLINE TARGET_AVX2 float simd_f32_load(const uint8_t *p)
{
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

INLINE TARGET_AVX2 __m256i simd_load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE TARGET_AVX2 void simd_store256(void *p, __m256i v)
{
    _mm256_storeu_si256((__m256i *)p, v);
}

/* ---- 32-element blocks ----------------------------------------------------------------------
 * Type-1 formats (Q4_1, Q5_1: w = d q + m) multiply Q8_1 activations, whose stored block
 * sum the minimum needs; the others multiply Q8_0. Both activation formats start with d. */

INLINE size_t b32_block_bytes(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q4_0: return sizeof(BlockQ4_0);
    case GGML_TYPE_Q4_1: return sizeof(BlockQ4_1);
    case GGML_TYPE_Q5_0: return sizeof(BlockQ5_0);
    case GGML_TYPE_Q5_1: return sizeof(BlockQ5_1);
    default: return sizeof(BlockQ8_0);
    }
}

INLINE bool b32_is_type1(uint32_t type)
{
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
}

/* Bytes of one activation block, and where its codes start. */
INLINE size_t b32_act_bytes(uint32_t type)
{
    return b32_is_type1(type) ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
}

INLINE size_t b32_act_qs_offset(uint32_t type)
{
    return b32_is_type1(type) ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
}

/* Q8_1's two scales, once its codes are in place: d (the unrounded scale, which the codes
 * were made with) and s = d * (sum of the codes), each rounded to f16. */
INLINE TARGET_AVX2 void simd_q8_1_scales(uint8_t *block, float d)
{
    __m256i codes = simd_load256(block + offsetof(BlockQ8_1, qs));
    __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), codes);
    __m256i quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    int32_t lanes[8];
    simd_store256(lanes, quads);
    int sum = 0;
    for (int l = 0; l < 8; l++)
        sum += lanes[l];
    simd_f16_store(block + offsetof(BlockQ8_1, d), d);
    simd_f16_store(block + offsetof(BlockQ8_1, s), d * (float)sum);
}

/* The activation quantizers of Q8_0 and Q8_1 rows, for an ISA file that defines
 * quantize_activation_block(x, qs): 32 codes to qs, the unrounded d returned. */
#define DEFINE_Q8_0_Q8_1_QUANTIZERS(TARGET, q8_0_name, q8_1_name)                             \
    static TARGET void q8_0_name(const float *src, void *dst, int64_t n)                      \
    {                                                                                         \
        uint8_t *out = dst;                                                                   \
        for (int64_t i = 0; i < n / QK; i++, out += sizeof(BlockQ8_0)) {                      \
            float d = quantize_activation_block(src + i * QK, out + offsetof(BlockQ8_0, qs)); \
            simd_f16_store(out + offsetof(BlockQ8_0, d), d);                                  \
        }                                                                                     \
    }                                                                                         \
    static TARGET void q8_1_name(const float *src, void *dst, int64_t n)                      \
    {                                                                                         \
        uint8_t *out = dst;                                                                   \
        for (int64_t i = 0; i < n / QK; i++, out += sizeof(BlockQ8_1)) {                      \
            float d = quantize_activation_block(src + i * QK, out + offsetof(BlockQ8_1, qs)); \
            simd_q8_1_scales(out, d);                                                         \
        }                                                                                     \
    }

/* ---- K-quant super-blocks, decoded --------------------------------------------------------
 * Every K-quant, whatever its packing, becomes the same thing:
 *   q[e]       the unsigned code of weight e, 0..63, in element order (as Q8_K's qs);
 *   scale[i]   the integer scale of the sub-block that holds weights 2i and 2i+1: one entry
 *              per pair, because _mm*_maddubs_epi16 sums products in pairs and the next
 *              instruction multiplies each pair sum by its scale;
 *   bias[s]    what multiplies the activations' 16-sum bsums[s];
 *   d, dmin    the float scales of the two terms.
 * so that, with x[e] = dx * qs[e],
 *   sum_e w[e] x[e] = dx * (d * sum_i scale[i] * (q[2i] qs[2i] + q[2i+1] qs[2i+1])
 *                           - dmin * sum_s bias[s] * bsums[s]).
 * Type-1 formats (Q2_K, Q4_K, Q5_K) put their mins in bias; type-0 formats (Q3_K, Q6_K)
 * store codes with an offset (q - 4, q - 32), and the offset times the scale goes to bias,
 * with dmin = d. Codes stay below 64, so a pair sum 2 * 63 * 127 never saturates int16. */
typedef struct {
    uint8_t q[QK_K];
    int16_t scale[QK_K / 2];
    int16_t bias[16];
    float d, dmin;
} KDecoded;

/* What a super-block says besides its codes, in registers: the integer scale of each
 * sub-block (16 sub-blocks of 16 weights in Q2_K, Q3_K and Q6_K; 8 of 32 in Q4_K and Q5_K,
 * in words 0..7), bias[] (16 words) and the two float scales, as in KDecoded. Built with
 * vector instructions from the block's bytes: never stored as scalars and loaded back as a
 * vector, a store-forwarding stall on every super-block. */
typedef struct {
    __m256i sc, bias;
    float d, dmin;
} KScales;

INLINE bool kdec_has_sub16(uint32_t type)
{
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}

/* ---- The codes, 32 at a time: weights 32i..32i+31 of a super-block (i = 0..7), as 32
 * unsigned bytes in element order. The tile kernels store all eight into KDecoded; a
 * single activation row (decoding) takes them in registers as it multiplies. */

/* The 2-bit fields of Q2_K and Q3_K: weight 128h + 32k + l is bits 2k..2k+1 of
 * qs[32h + l]. A 16-bit shift moves bits across bytes, but the mask keeps only the two
 * that came from the right byte. */
INLINE TARGET_AVX2 __m256i kdec_two_bit_codes32(const uint8_t qs[QK_K / 4], int i)
{
    __m256i v = simd_load256(qs + 32 * (i / 4));
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (i % 4)), _mm256_set1_epi8(3));
}

/* The low nibbles of Q4_K and Q5_K: weights 64c..64c+63 are qs[32c..32c+31], low nibbles
 * (weights 64c..64c+31) then high nibbles. */
INLINE TARGET_AVX2 __m256i kdec_nibble_codes32(const uint8_t qs[QK_K / 2], int i)
{
    __m256i v = simd_load256(qs + 32 * (i / 2));
    return _mm256_and_si256(i % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(15));
}

/* Adds `value` to the codes whose bit i is set in bits[l] (the high bits of Q3_K's hmask
 * and Q5_K's qh: bit i of byte l belongs to weight 32i + l). */
INLINE TARGET_AVX2 __m256i kdec_add_bit_plane(__m256i q, const uint8_t bits[32], int i, int value)
{
    __m256i bit = _mm256_set1_epi8((char)(1 << i));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(simd_load256(bits), bit), bit);
    return _mm256_add_epi8(q, _mm256_and_si256(set, _mm256_set1_epi8((char)value)));
}

/* Q6_K: in each half of 128, ql0 = ql[0..31] and ql1 = ql[32..63] give the low nibbles of
 * the four quarters (ql0 low, ql1 low, ql0 high, ql1 high) and qh the top two bits (bits
 * 0-1, 2-3, 4-5, 6-7). Each top pair is moved to bits 4-5 with one 16-bit shift and a mask. */
INLINE TARGET_AVX2 __m256i kdec_q6_k_codes32(const uint8_t *block, int i)
{
    int h = i / 4, quarter = i % 4;
    __m256i ql = simd_load256(block + offsetof(BlockQ6_K, ql) + 64 * h + 32 * (quarter % 2));
    __m256i qh = simd_load256(block + offsetof(BlockQ6_K, qh) + 32 * h);
    __m256i low = quarter < 2 ? ql : _mm256_srli_epi16(ql, 4);
    __m256i top = quarter == 0   ? _mm256_slli_epi16(qh, 4)
                  : quarter == 1 ? _mm256_slli_epi16(qh, 2)
                  : quarter == 2 ? qh
                                 : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi8(15)),
                           _mm256_and_si256(top, _mm256_set1_epi8(0x30)));
}

/* Codes 32i..32i+31 of a super-block of a K-quant type (a constant in every caller). */
INLINE TARGET_AVX2 __m256i kdec_codes32(uint32_t type, const uint8_t *block, int i)
{
    switch (type) {
    case GGML_TYPE_Q2_K:
        return kdec_two_bit_codes32(block + offsetof(BlockQ2_K, qs), i);
    case GGML_TYPE_Q3_K:
        return kdec_add_bit_plane(kdec_two_bit_codes32(block + offsetof(BlockQ3_K, qs), i),
                                  block + offsetof(BlockQ3_K, hmask), i, 4);
    case GGML_TYPE_Q4_K:
        return kdec_nibble_codes32(block + offsetof(BlockQ4_K, qs), i);
    case GGML_TYPE_Q5_K:
        return kdec_add_bit_plane(kdec_nibble_codes32(block + offsetof(BlockQ5_K, qs), i),
                                  block + offsetof(BlockQ5_K, qh), i, 16);
    default:
        return kdec_q6_k_codes32(block, i);
    }
}

/* ---- The scales ---- */

/* The 6-bit scales and mins of Q4_K/Q5_K (quant_k_scale_min), four at a time: bytes 0..3
 * hold scales 0..3 in their low 6 bits and the top bits of scales 4..7 in bits 6-7; bytes
 * 4..7 the same for the mins; bytes 8..11 the low nibbles of scales 4..7 and of mins 4..7.
 * (b >> 6) << 4 for every byte of a word is (word >> 2) & 0x30303030. The 8 scales and the
 * 8 mins come out as bytes 0..7 and 8..15 of one register. */
INLINE TARGET_AVX2 __m128i kdec_unpack_scale_min(const uint8_t packed[12])
{
    uint32_t w0, w1, w2;
    memcpy(&w0, packed, 4);
    memcpy(&w1, packed + 4, 4);
    memcpy(&w2, packed + 8, 4);
    uint32_t sc_lo = w0 & 0x3f3f3f3fu, m_lo = w1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
    return _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
}

/* Type-1 K-quants with 8 sub-blocks of 32 (Q4_K, Q5_K): scales and mins; bias[s] = the
 * min of the 32-sub-block that holds the 16-sum s. */
INLINE TARGET_AVX2 KScales kdec_scales_min32(const uint8_t *block, size_t scales, size_t d,
                                            size_t dmin)
{
    __m128i sc_m = kdec_unpack_scale_min(block + scales);
    __m128i m = _mm_cvtepu8_epi16(_mm_srli_si128(sc_m, 8));
    return (KScales){.sc = _mm256_cvtepu8_epi16(_mm_move_epi64(sc_m)),
                     .bias = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m)),
                     .d = simd_f16_load(block + d),
                     .dmin = simd_f16_load(block + dmin)};
}

/* Q2_K: each byte of scales[] is a sub-block's scale (low nibble) and min (high nibble). */
INLINE TARGET_AVX2 KScales kdec_scales_q2_k(const uint8_t *block)
{
    const __m128i *scales = (const __m128i *)(block + offsetof(BlockQ2_K, scales));
    __m256i packed = _mm256_cvtepu8_epi16(_mm_loadu_si128(scales));
    return (KScales){.sc = _mm256_and_si256(packed, _mm256_set1_epi16(15)),
                     .bias = _mm256_srli_epi16(packed, 4),
                     .d = simd_f16_load(block + offsetof(BlockQ2_K, d)),
                     .dmin = simd_f16_load(block + offsetof(BlockQ2_K, dmin))};
}

/* Q3_K's 16 signed 6-bit scales (quant_q3_k_scale), four at a time: a scale's low nibble
 * is in byte s (s < 8) or in the high nibble of byte s - 8, its top two bits at bit
 * 2*(s/4) of byte 8 + s%4. Stored with an offset of 32. */
INLINE TARGET_AVX2 KScales kdec_scales_q3_k(const uint8_t *block)
{
    uint32_t w[3];
    memcpy(w, block + offsetof(BlockQ3_K, scales), 12);
    __m128i six_bit =
        _mm_set_epi32((int)(((w[1] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 6) & 0x03030303u) << 4),
                      (int)(((w[0] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 4) & 0x03030303u) << 4),
                      (int)((w[1] & 0x0f0f0f0fu) | ((w[2] >> 2) & 0x03030303u) << 4),
                      (int)((w[0] & 0x0f0f0f0fu) | (w[2] & 0x03030303u) << 4));
    __m256i sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(six_bit), _mm256_set1_epi16(32));
    float d = simd_f16_load(block + offsetof(BlockQ3_K, d));
    /* w = d sc (q - 4): the offset times the scale is the bias */
    return (KScales){.sc = sc, .bias = _mm256_slli_epi16(sc, 2), .d = d, .dmin = d};
}

INLINE TARGET_AVX2 KScales kdec_scales_q6_k(const uint8_t *block)
{
    const __m128i *scales = (const __m128i *)(block + offsetof(BlockQ6_K, scales));
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales));
    float d = simd_f16_load(block + offsetof(BlockQ6_K, d));
    /* w = d sc (q - 32) */
    return (KScales){.sc = sc, .bias = _mm256_slli_epi16(sc, 5), .d = d, .dmin = d};
}

/* The scales of a super-block of a K-quant type (a constant in every caller). */
INLINE TARGET_AVX2 KScales kdec_scales(uint32_t type, const uint8_t *block)
{
    switch (type) {
    case GGML_TYPE_Q2_K: return kdec_scales_q2_k(block);
    case GGML_TYPE_Q3_K: return kdec_scales_q3_k(block);
    case GGML_TYPE_Q4_K:
        return kdec_scales_min32(block, offsetof(BlockQ4_K, scales), offsetof(BlockQ4_K, d),
                                 offsetof(BlockQ4_K, dmin));
    case GGML_TYPE_Q5_K:
        return kdec_scales_min32(block, offsetof(BlockQ5_K, scales), offsetof(BlockQ5_K, d),
                                 offsetof(BlockQ5_K, dmin));
    default: return kdec_scales_q6_k(block);
    }
}

INLINE bool kdec_is_k_quant(uint32_t type)
{
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
}

/* A whole super-block decoded into KDecoded: the codes stored, scale[] with one entry per
 * pair of weights (each sub-block's scale repeated over its 8 or 16 pairs). */
INLINE TARGET_AVX2 void kdec_block(uint32_t type, const uint8_t *block, KDecoded *dec)
{
    for (int i = 0; i < 8; i++)
        simd_store256(dec->q + 32 * i, kdec_codes32(type, block, i));
    KScales ks = kdec_scales(type, block);
    int16_t sc[16];
    simd_store256(sc, ks.sc);
    if (kdec_has_sub16(type))
        for (int s = 0; s < 16; s++)
            _mm_storeu_si128((__m128i *)(dec->scale + 8 * s), _mm_set1_epi16(sc[s]));
    else
        for (int s = 0; s < 8; s++)
            simd_store256(dec->scale + 16 * s, _mm256_set1_epi16(sc[s]));
    simd_store256(dec->bias, ks.bias);
    dec->d = ks.d;
    dec->dmin = ks.dmin;
}

INLINE size_t kdec_block_bytes(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q2_K: return sizeof(BlockQ2_K);
    case GGML_TYPE_Q3_K: return sizeof(BlockQ3_K);
    case GGML_TYPE_Q4_K: return sizeof(BlockQ4_K);
    case GGML_TYPE_Q5_K: return sizeof(BlockQ5_K);
    default: return sizeof(BlockQ6_K);
    }
}

#endif
