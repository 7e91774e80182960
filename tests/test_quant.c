/* The quantized-tensor library against things outside its code:
 *   - f32 -> f16/bf16 on values whose rounding is worked out by hand;
 *   - every dequantizer on blocks built byte by byte here, with expected floats computed by
 *     hand from the format's definition (quant_blocks.h draws the layouts);
 *   - quantize -> dequantize round trips within each format's stated error bound;
 *   - the tensors of llama.cpp's qtest-<TYPE>.gguf files against the same tensors of
 *     qtest-f32.gguf, from which llama.cpp made them;
 *   - the activation formats' codes where llama.cpp's x86 rounding decides them (values
 *     on or next to a half), worked out by hand, on every ISA;
 *   - every kernel on every ISA this CPU runs, and quant_matmul, against a product in
 *     double of the dequantized rows;
 *   - `quill quantize` end to end. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "f16.h"
#include "gguf.h"
#include "matmul.h"
#include "quant.h"
#include "quant_blocks.h"
#include "rng.h"
#include "test_util.h"

/* ---- f32 -> f16 / bf16 ------------------------------------------------------------------ */

Test(quant_f16, f32_to_f16_rounds_to_nearest_even)
{
    cr_expect_eq(f32_to_f16(1.0f), 0x3c00);
    cr_expect_eq(f32_to_f16(-2.0f), 0xc000);
    cr_expect_eq(f32_to_f16(0.0f), 0x0000);
    cr_expect_eq(f32_to_f16(-0.0f), 0x8000);
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: the tie goes to the even 1.0 */
    cr_expect_eq(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9: up to the even one */
    cr_expect_eq(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    /* just above the tie rounds up */
    cr_expect_eq(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    cr_expect_eq(f32_to_f16(65504.0f), 0x7bff, "largest finite f16");
    cr_expect_eq(f32_to_f16(65519.0f), 0x7bff, "below the halfway point to 2^16");
    cr_expect_eq(f32_to_f16(65520.0f), 0x7c00, "halfway to 2^16 ties to infinity");
    cr_expect_eq(f32_to_f16(1e10f), 0x7c00);
    cr_expect_eq(f32_to_f16(-INFINITY), 0xfc00);
    cr_expect_eq(f32_to_f16(0x1p-14f), 0x0400, "smallest normal");
    cr_expect_eq(f32_to_f16(0x1p-24f), 0x0001, "smallest subnormal");
    cr_expect_eq(f32_to_f16(3 * 0x1p-25f), 0x0002, "1.5 subnormal units: tie to even 2");
    cr_expect_eq(f32_to_f16(0x1p-25f), 0x0000, "half a unit: tie to even 0");
    cr_expect_eq(f32_to_f16(0x1p-25f + 0x1p-40f), 0x0001, "just over half a unit");
    cr_expect_eq(f32_to_f16(-5 * 0x1p-24f), 0x8005);
    cr_expect_eq(f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400, "rounds up into the normals");
    uint16_t nan = f32_to_f16(NAN);
    cr_expect((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0, "NaN stays NaN: %#x", nan);
    cr_expect(isnan(f16_to_f32(f32_to_f16(f32_from_bits(0x7f800001u)))), "signalling NaN too");
}

Test(quant_f16, f32_to_bf16_rounds_to_nearest_even)
{
    cr_expect_eq(f32_to_bf16(1.0f), 0x3f80);
    cr_expect_eq(f32_to_bf16(-3.0f), 0xc040);
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: the even one is 1 */
    cr_expect_eq(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8: halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up */
    cr_expect_eq(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    cr_expect_eq(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    cr_expect_eq(f32_to_bf16(FLT_MAX), 0x7f80, "the largest float rounds up to infinity");
    cr_expect_eq(f32_to_bf16(f32_from_bits(0x00000001u)), 0x0000, "tiny subnormal -> 0");
    cr_expect_eq(f32_to_bf16(f32_from_bits(0x00018000u)), 0x0002, "subnormal tie to even");
    uint16_t nan = f32_to_bf16(f32_from_bits(0x7f800001u)); /* payload only in low bits */
    cr_expect((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0, "NaN stays NaN: %#x", nan);
}

/* ---- Block sizes ---------------------------------------------------------------------- */

Test(quant_ref, block_structs_match_the_gguf_layout_table)
{
    static const struct {
        uint32_t type;
        size_t size;
    } blocks[] = {
        {GGML_TYPE_Q4_0, sizeof(BlockQ4_0)}, {GGML_TYPE_Q4_1, sizeof(BlockQ4_1)},
        {GGML_TYPE_Q5_0, sizeof(BlockQ5_0)}, {GGML_TYPE_Q5_1, sizeof(BlockQ5_1)},
        {GGML_TYPE_Q8_0, sizeof(BlockQ8_0)}, {GGML_TYPE_Q8_1, sizeof(BlockQ8_1)},
        {GGML_TYPE_Q2_K, sizeof(BlockQ2_K)},
        {GGML_TYPE_Q3_K, sizeof(BlockQ3_K)}, {GGML_TYPE_Q4_K, sizeof(BlockQ4_K)},
        {GGML_TYPE_Q5_K, sizeof(BlockQ5_K)}, {GGML_TYPE_Q6_K, sizeof(BlockQ6_K)},
        {GGML_TYPE_Q8_K, sizeof(BlockQ8_K)},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        uint64_t block_size, type_size;
        cr_assert_eq(gguf_tensor_type_layout(blocks[i].type, &block_size, &type_size), 0);
        cr_expect_eq(blocks[i].size, type_size, "%s", gguf_tensor_type_name(blocks[i].type));
        cr_expect_eq((uint64_t)quant_block_size(blocks[i].type), block_size);
        cr_expect_eq(quant_row_bytes(blocks[i].type, 2 * (int64_t)block_size), 2 * type_size);
    }
    cr_expect_eq(quant_row_bytes(GGML_TYPE_F32, 3), 12);
    cr_expect_eq(quant_row_bytes(GGML_TYPE_BF16, 3), 6);
    cr_expect(quant_can_multiply(GGML_TYPE_Q4_1) && quant_can_multiply(GGML_TYPE_Q6_K));
    cr_expect(!quant_can_multiply(GGML_TYPE_Q8_1) && !quant_can_multiply(GGML_TYPE_Q8_K),
              "Q8_1 and Q8_K are activation formats, not weights");
}

/* ---- Dequantizers on hand-built blocks ------------------------------------------------
 * Each test fills a block's bytes, states the formula the format defines, and checks every
 * element against it plus a few elements against values worked out by hand. Scales are
 * exact f16 values (0x3800 = 0.5, 0x3400 = 0.25, ...) so every expected float is exact. */

typedef struct {
    int index;
    float value;
} Expected;

/* Dequantizes one block of `type` and checks the hand-computed values and the formula. */
static void check_block(uint32_t type, const void *block, const float *formula,
                        const Expected *hand, int n_hand)
{
    int64_t n = quant_block_size(type);
    float out[QK_K];
    quant_dequantize_row(type, block, out, n);
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(out[i], formula[i], "%s element %ld: %g, formula %g",
                     gguf_tensor_type_name(type), (long)i, out[i], formula[i]);
    for (int i = 0; i < n_hand; i++)
        cr_expect_eq(out[hand[i].index], hand[i].value, "%s element %d: %g, by hand %g",
                     gguf_tensor_type_name(type), hand[i].index, out[hand[i].index],
                     hand[i].value);
}

#define N_OF(a) ((int)(sizeof(a) / sizeof *(a)))

/* The ISAs this CPU runs, best last. */
static int available_isas(QuantIsa isas[3])
{
    int n = 0;
    const QuantIsa all[3] = {QUANT_ISA_SCALAR, QUANT_ISA_AVX2, QUANT_ISA_AVX512};
    for (int i = 0; i < 3; i++)
        if (quant_set_isa(all[i]) == 0)
            isas[n++] = all[i];
    return n;
}

Test(quant_ref, dequantize_f16_bf16_f32)
{
    uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
    float out[4];
    quant_dequantize_row(GGML_TYPE_F16, h, out, 4);
    cr_expect(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f && out[3] == 0x1p-24f);
    uint16_t b[3] = {0x3f80, 0xc040, 0x0000};
    quant_dequantize_row(GGML_TYPE_BF16, b, out, 3);
    cr_expect(out[0] == 1.0f && out[1] == -3.0f && out[2] == 0.0f);
    float f[2] = {1.5f, -7.25f};
    quant_dequantize_row(GGML_TYPE_F32, f, out, 2);
    cr_expect(out[0] == 1.5f && out[1] == -7.25f);
}

Test(quant_ref, dequantize_q4_0)
{
    /* d = 0.5; qs[j] = j | (15 - j) << 4, so q[j] = j and q[j+16] = 15 - j */
    BlockQ4_0 b = {.d = 0x3800};
    float formula[QK];
    for (int j = 0; j < 16; j++) {
        b.qs[j] = (uint8_t)(j | (15 - j) << 4);
        formula[j] = 0.5f * (float)(j - 8);
        formula[j + 16] = 0.5f * (float)(15 - j - 8);
    }
    Expected hand[] = {{0, -4.0f}, {9, 0.5f}, {15, 3.5f}, {16, 3.5f}, {31, -4.0f}};
    check_block(GGML_TYPE_Q4_0, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q4_1)
{
    /* d = 0.25, m = -1; the same nibbles as Q4_0: w = 0.25 q - 1 */
    BlockQ4_1 b = {.d = 0x3400, .m = 0xbc00};
    float formula[QK];
    for (int j = 0; j < 16; j++) {
        b.qs[j] = (uint8_t)(j | (15 - j) << 4);
        formula[j] = 0.25f * (float)j - 1.0f;
        formula[j + 16] = 0.25f * (float)(15 - j) - 1.0f;
    }
    Expected hand[] = {{0, -1.0f}, {15, 2.75f}, {16, 2.75f}, {31, -1.0f}};
    check_block(GGML_TYPE_Q4_1, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q5_0)
{
    /* d = 1; low nibbles 3, high nibbles 12; fifth bits 0x55,0x55,0xaa,0xaa = bit j set for
     * even j < 16 and odd j >= 16 */
    BlockQ5_0 b = {.d = 0x3c00, .qh = {0x55, 0x55, 0xaa, 0xaa}};
    float formula[QK];
    for (int j = 0; j < 16; j++) {
        b.qs[j] = 3 | 12 << 4;
        formula[j] = (float)(3 + (j % 2 == 0 ? 16 : 0) - 16);
        formula[j + 16] = (float)(12 + (j % 2 == 1 ? 16 : 0) - 16);
    }
    Expected hand[] = {{0, 3.0f}, {1, -13.0f}, {16, -4.0f}, {17, 12.0f}};
    check_block(GGML_TYPE_Q5_0, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q5_1)
{
    /* d = 0.5, m = 2; nibbles 1 (low) and 2 (high); fifth bits only for elements 5 and 20:
     * qh as a little-endian uint32 = 1 << 5 | 1 << 20 */
    BlockQ5_1 b = {.d = 0x3800, .m = 0x4000, .qh = {0x20, 0x00, 0x10, 0x00}};
    float formula[QK];
    for (int j = 0; j < 16; j++) {
        b.qs[j] = 1 | 2 << 4;
        formula[j] = 0.5f * (float)(1 + (j == 5 ? 16 : 0)) + 2.0f;
        formula[j + 16] = 0.5f * (float)(2 + (j + 16 == 20 ? 16 : 0)) + 2.0f;
    }
    Expected hand[] = {{0, 2.5f}, {5, 10.5f}, {16, 3.0f}, {20, 11.0f}};
    check_block(GGML_TYPE_Q5_1, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q8_0)
{
    /* d = 0.125; qs[j] = j - 16, with the extremes -127 and 127 at the ends */
    BlockQ8_0 b = {.d = 0x3000};
    float formula[QK];
    for (int j = 0; j < QK; j++)
        b.qs[j] = (int8_t)(j - 16);
    b.qs[0] = -127;
    b.qs[31] = 127;
    for (int j = 0; j < QK; j++)
        formula[j] = 0.125f * (float)b.qs[j];
    Expected hand[] = {{0, -15.875f}, {16, 0.0f}, {17, 0.125f}, {31, 15.875f}};
    check_block(GGML_TYPE_Q8_0, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q2_k)
{
    /* d = 1, dmin = 0.5; sub-block s has scale s and min 15 - s (low and high nibble);
     * every qs byte is 0xe4 = 3 2 1 0 in 2-bit fields, so weight 128h + 32k + l has q = k:
     *   w = s * k - 0.5 * (15 - s),  s = e / 16 */
    BlockQ2_K b = {.d = 0x3c00, .dmin = 0x3800};
    for (int s = 0; s < 16; s++)
        b.scales[s] = (uint8_t)(s | (15 - s) << 4);
    memset(b.qs, 0xe4, sizeof b.qs);
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++) {
        int s = e / 16, k = e % 128 / 32;
        formula[e] = (float)(s * k) - 0.5f * (float)(15 - s);
    }
    Expected hand[] = {{0, -7.5f}, {40, -4.5f}, {200, 22.5f}, {255, 45.0f}};
    check_block(GGML_TYPE_Q2_K, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q3_k_signed_scales_and_high_bits)
{
    /* d = 0.5; sub-block s has the signed scale 4s - 32 (stored 6-bit value 4s): low
     * nibbles 0,4,8,12,0,4,8,12 for s < 8 in bytes 0..7 and the same for s >= 8 in their
     * high nibbles; the top two bits (0,0,0,0,1,1,1,1,2,2,2,2,3,3,3,3) go to bytes 8..11 at
     * bit 2*(s/4): every one of those bytes is 0 | 1<<2 | 2<<4 | 3<<6 = 0xe4.
     * Low 2 bits: every qs byte 0xe4, so q_low = k for weight 128h + 32k + l.
     * High bits: hmask[l] = 0x0f sets the high bit of weights 0..127 only.
     *   w = 0.5 * (4s - 32) * (q_low + 4*high - 4) */
    BlockQ3_K b = {.d = 0x3800,
                   .scales = {0x00, 0x44, 0x88, 0xcc, 0x00, 0x44, 0x88, 0xcc, 0xe4, 0xe4, 0xe4,
                              0xe4}};
    memset(b.qs, 0xe4, sizeof b.qs);
    memset(b.hmask, 0x0f, sizeof b.hmask);
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++) {
        int s = e / 16, k = e % 128 / 32, high = e < 128;
        formula[e] = 0.5f * (float)(4 * s - 32) * (float)(k + 4 * high - 4);
    }
    Expected hand[] = {{0, 0.0f}, {33, -12.0f}, {130, 0.0f}, {200, -16.0f}, {255, -14.0f}};
    check_block(GGML_TYPE_Q3_K, &b, formula, hand, N_OF(hand));
}

/* The 6-bit scales 10,17,24,31,38,45,52,59 and mins 63,58,53,48,43,38,33,28 of a Q4_K/Q5_K
 * block, packed by hand (quant_blocks.h):
 *   bytes 0..3: sc0..3 | (top 2 bits of sc4..7) << 6 = 0x0a|0x80, 0x11|0x80, 0x18|0xc0, 0x1f|0xc0
 *   bytes 4..7: m0..3  | (top 2 bits of m4..7)  << 6 = 0x3f|0x80, 0x3a|0x80, 0x35|0x80, 0x30|0x40
 *   bytes 8..11: low nibble of sc4..7 | low nibble of m4..7 << 4 = 0xb6, 0x6d, 0x14, 0xcb */
static const uint8_t K_SCALES[12] = {0x8a, 0x91, 0xd8, 0xdf, 0xbf, 0xba,
                                     0xb5, 0x70, 0xb6, 0x6d, 0x14, 0xcb};
static const int K_SC[8] = {10, 17, 24, 31, 38, 45, 52, 59};
static const int K_M[8] = {63, 58, 53, 48, 43, 38, 33, 28};

Test(quant_ref, k_scale_min_unpacks_the_6_bit_pairs)
{
    for (int j = 0; j < 8; j++) {
        int sc, m;
        quant_k_scale_min(j, K_SCALES, &sc, &m);
        cr_expect(sc == K_SC[j] && m == K_M[j], "sub-block %d: %d %d", j, sc, m);
    }
}

Test(quant_ref, dequantize_q4_k)
{
    /* d = 0.5, dmin = 0.25; qs[32c + l] = (l & 15) | (15 - (l & 15)) << 4, so in chunk c
     * weight 64c + r has q = r & 15 for r < 32 and 15 - (r & 15) for r >= 32:
     *   w = 0.5 * sc[e/32] * q - 0.25 * m[e/32] */
    BlockQ4_K b = {.d = 0x3800, .dmin = 0x3400};
    memcpy(b.scales, K_SCALES, 12);
    for (int i = 0; i < QK_K / 2; i++)
        b.qs[i] = (uint8_t)((i & 15) | (15 - (i & 15)) << 4);
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++) {
        int r = e % 64, j = e / 32;
        int q = r < 32 ? (r & 15) : 15 - ((r - 32) & 15);
        formula[e] = 0.5f * (float)K_SC[j] * (float)q - 0.25f * (float)K_M[j];
    }
    Expected hand[] = {{0, -15.75f}, {5, 9.25f}, {40, 45.0f}, {200, 199.75f}, {255, -7.0f}};
    check_block(GGML_TYPE_Q4_K, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q5_k_fifth_bit)
{
    /* Q4_K's scales; all low bits 0; qh[l] = 1 << (l % 8): weight 32j + l gets q = 16 when
     * l % 8 == j, else 0:  w = 0.5 * sc[j] * q - 0.25 * m[j] */
    BlockQ5_K b = {.d = 0x3800, .dmin = 0x3400};
    memcpy(b.scales, K_SCALES, 12);
    memset(b.qs, 0, sizeof b.qs);
    for (int l = 0; l < 32; l++)
        b.qh[l] = (uint8_t)(1 << (l % 8));
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++) {
        int j = e / 32, l = e % 32;
        formula[e] = 0.5f * (float)K_SC[j] * (float)(l % 8 == j ? 16 : 0) - 0.25f * (float)K_M[j];
    }
    Expected hand[] = {{0, 64.25f}, {1, -15.75f}, {33, 121.5f}, {255, 465.0f}};
    check_block(GGML_TYPE_Q5_K, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q6_k)
{
    /* d = 0.25, scales[s] = 10s - 80; every ql byte 0x21 (low nibble 1, high nibble 2) and
     * every qh byte 0xe4 (2-bit fields 0,1,2,3): within each 128, weights 0..31 have
     * q = 1, 32..63 q = 1 + 16, 64..95 q = 2 + 32, 96..127 q = 2 + 48:
     *   w = 0.25 * (10s - 80) * (q - 32),  s = e / 16 */
    BlockQ6_K b = {.d = 0x3400};
    memset(b.ql, 0x21, sizeof b.ql);
    memset(b.qh, 0xe4, sizeof b.qh);
    for (int s = 0; s < 16; s++)
        b.scales[s] = (int8_t)(10 * s - 80);
    static const int q_of_quarter[4] = {1, 17, 34, 50};
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++)
        formula[e] = 0.25f * (float)(10 * (e / 16) - 80) * (float)(q_of_quarter[e % 128 / 32] - 32);
    Expected hand[] = {{0, 620.0f}, {40, 225.0f}, {70, -20.0f}, {100, -90.0f}, {130, 0.0f},
                       {255, 315.0f}};
    check_block(GGML_TYPE_Q6_K, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q8_k)
{
    BlockQ8_K b = {.d = 0.5f};
    float formula[QK_K];
    for (int e = 0; e < QK_K; e++) {
        b.qs[e] = (int8_t)(e - 128);
        formula[e] = 0.5f * (float)(e - 128);
    }
    Expected hand[] = {{0, -64.0f}, {255, 63.5f}};
    check_block(GGML_TYPE_Q8_K, &b, formula, hand, N_OF(hand));
}

Test(quant_ref, dequantize_q8_1)
{
    BlockQ8_1 b = {.d = 0x3800, .s = 0x4900}; /* d = 0.5; s plays no part in the values */
    float formula[QK];
    for (int j = 0; j < QK; j++) {
        b.qs[j] = (int8_t)(4 * j - 64);
        formula[j] = 0.5f * (float)(4 * j - 64);
    }
    Expected hand[] = {{0, -32.0f}, {31, 30.0f}};
    check_block(GGML_TYPE_Q8_1, &b, formula, hand, N_OF(hand));
}

/* ---- Activation formats: llama.cpp's codes ----------------------------------------------
 * llama.cpp (x86, every ISA) quantizes an activation block with the scale 127 / amax and
 * rounds x * scale to the nearest integer, halves to even. The scale must be that float:
 * 1 / (amax / 127) differs from it in the last bit for some amax, which moves the products
 * that are within a float rounding of a half. Such values are common, not rare: in a block
 * of multiples of one step (a 4-bit embedding row, normalised), a value half the largest
 * lands on 63.5. Here amax = 11 and x = 5.5, exactly 63.5 in real numbers: 127/11 =
 * 11.5454545... rounds up to the float 11.54545497..., so x times it is 63.500004, code 64;
 * 11/127 rounds down and its reciprocal is below 127/11, giving 63.499996, code 63. With
 * amax = 127 the scale is exactly 1, and 62.5, 0.5, 2.5 and -0.5 are exact halves: 62, 0, 2
 * and 0 (halves to even; roundf would give 63, 1, 3 and -1). */

/* Two blocks' values (the rest of each block is 0) and the codes llama.cpp gives them
 * (2.75 * 127/11 = 31.75: 32; 8 * 127/11 = 92.36: 92). */
static const float HALVES_11[] = {11.0f, 5.5f, -5.5f, 2.75f, 0.0f, -11.0f, 8.0f};
static const int8_t HALVES_11_CODES[] = {127, 64, -64, 32, 0, -127, 92};
static const float HALVES_127[] = {127.0f, 62.5f, -62.5f, 0.5f, 2.5f, -0.5f, 1.5f};
static const int8_t HALVES_127_CODES[] = {127, 62, -62, 0, 2, 0, 2};

/* n values (n >= QK): the amax-11 block, then (n >= 2 QK) the amax-127 one, then zeros. */
static void activation_row_with_halves(float *x, int n)
{
    memset(x, 0, (size_t)n * sizeof *x);
    memcpy(x, HALVES_11, sizeof HALVES_11);
    if (n >= 2 * QK)
        memcpy(x + QK, HALVES_127, sizeof HALVES_127);
}

static void expect_codes(const int8_t *got, const int8_t *want, int n, const char *what)
{
    for (int j = 0; j < n; j++)
        cr_expect_eq(got[j], want[j], "%s: code %d is %d, llama.cpp's %d", what, j, got[j],
                     want[j]);
}

Test(quant_ref, q8_0_and_q8_1_round_halves_as_llama_cpp)
{
    float x[2 * QK];
    activation_row_with_halves(x, 2 * QK);
    BlockQ8_0 q0[2];
    quant_quantize_row(GGML_TYPE_Q8_0, x, q0, 2 * QK);
    expect_codes(q0[0].qs, HALVES_11_CODES, N_OF(HALVES_11_CODES), "Q8_0, amax 11");
    expect_codes(q0[1].qs, HALVES_127_CODES, N_OF(HALVES_127_CODES), "Q8_0, amax 127");
    cr_expect_eq(q0[1].d, f32_to_f16(1.0f), "amax 127: d = 1");
    BlockQ8_1 q1[2];
    quant_quantize_row(GGML_TYPE_Q8_1, x, q1, 2 * QK);
    expect_codes(q1[0].qs, HALVES_11_CODES, N_OF(HALVES_11_CODES), "Q8_1, amax 11");
    expect_codes(q1[1].qs, HALVES_127_CODES, N_OF(HALVES_127_CODES), "Q8_1, amax 127");
    /* s = d * (sum of the codes): block 1 sums to 127 + 62 - 62 + 0 + 2 + 0 + 2 = 131 with
     * d = 1, so s = 131 (f16 0x5818); block 0 sums to 124, times 11/127: 10.7401575...,
     * rounded to f16 (steps of 2^-7 between 8 and 16): 10.7421875 (0x495f) */
    cr_expect_eq(q1[1].s, 0x5818, "s = %g, want 131", f16_to_f32(q1[1].s));
    cr_expect_eq(q1[0].s, 0x495f, "s = %.9g, want 10.7421875", f16_to_f32(q1[0].s));
}

/* Q8_K: the same rounding with iscale = 127 / amax over 256 values, d = 1 / iscale, and the
 * sums of each 16 codes. */
Test(quant_ref, q8_k_rounds_halves_as_llama_cpp)
{
    float x[QK_K];
    activation_row_with_halves(x, QK); /* the amax-11 block, then zeros */
    memset(x + QK, 0, (QK_K - QK) * sizeof *x);
    BlockQ8_K b;
    quant_quantize_row(GGML_TYPE_Q8_K, x, &b, QK_K);
    expect_codes(b.qs, HALVES_11_CODES, N_OF(HALVES_11_CODES), "Q8_K, amax 11");
    cr_expect_eq(b.d, 1.0f / (127.0f / 11.0f), "d is 1 / iscale: %.9g", b.d);
    cr_expect_eq(b.bsums[0], 124);
}

/* Q4_1 and Q5_1 multiply Q8_1, whose stored sum s the minimum multiplies: with every code
 * 0, a block's dot is m * s exactly. The activations above store s = 10.7421875, so
 * m = 0.5 gives 5.37109375. The sum of the values the codes stand for, 124 times the
 * stored d = f16(11/127) = 0.08660888671875, would give 0.5 * 10.7395 = 5.36975. */
Test(quant_ref, type1_dot_multiplies_the_stored_activation_sum)
{
    float x[QK];
    activation_row_with_halves(x, QK);
    BlockQ8_1 act;
    quant_quantize_row(GGML_TYPE_Q8_1, x, &act, QK);
    BlockQ4_1 w41 = {.d = f32_to_f16(1.0f), .m = f32_to_f16(0.5f)}; /* codes all 0 */
    BlockQ5_1 w51 = {.d = f32_to_f16(1.0f), .m = f32_to_f16(0.5f)};
    QuantIsa isas[3];
    int n_isas = available_isas(isas), compared = 0;
    for (int i = 0; i < n_isas; i++) {
        cr_assert_eq(quant_set_isa(isas[i]), 0);
        float d41 = quant_vec_dot(GGML_TYPE_Q4_1, QK, &w41, &act);
        float d51 = quant_vec_dot(GGML_TYPE_Q5_1, QK, &w51, &act);
        cr_expect_eq(d41, 5.37109375f, "Q4_1 %s: %.9g", quant_isa_name(isas[i]), d41);
        cr_expect_eq(d51, 5.37109375f, "Q5_1 %s: %.9g", quant_isa_name(isas[i]), d51);
        compared++;
    }
    cr_expect_eq(compared, n_isas);
}

/* F16 and BF16 weights multiply activations rounded to their own type, as llama.cpp's do:
 * 32 weights of 1 against activations 1 + 2^-11 (F16) or 1 + 2^-8 (BF16), each exactly
 * halfway between 1 and the next number of the type, which rounds to 1 (even): the product
 * is 32, not 32.015625 or 32.125. */
Test(quant_ref, sixteen_bit_weights_meet_activations_of_their_own_type)
{
    static const struct {
        uint32_t type;
        float x;
    } cases[] = {{GGML_TYPE_F16, 1.0f + 0x1p-11f}, {GGML_TYPE_BF16, 1.0f + 0x1p-8f}};
    QuantIsa isas[3];
    int n_isas = available_isas(isas), compared = 0;
    for (int c = 0; c < N_OF(cases); c++) {
        cr_expect_eq(quant_activation_type(cases[c].type), cases[c].type);
        float ones[QK], x[QK];
        uint8_t w[QK * 2];
        for (int j = 0; j < QK; j++) {
            ones[j] = 1.0f;
            x[j] = cases[c].x;
        }
        quant_quantize_row(cases[c].type, ones, w, QK);
        uint8_t scratch[QK * 2];
        cr_assert_leq(quant_matmul_scratch_bytes(cases[c].type, 1, QK), sizeof scratch);
        for (int i = 0; i < n_isas; i++) {
            cr_assert_eq(quant_set_isa(isas[i]), 0);
            float out;
            quant_matmul(&out, 1, x, 1, QK, w, cases[c].type, 1, 0.0f, scratch);
            cr_expect_eq(out, 32.0f, "%s %s: %.9g", gguf_tensor_type_name(cases[c].type),
                         quant_isa_name(isas[i]), out);
            compared++;
        }
    }
    cr_expect_eq(compared, 2 * n_isas);
}

/* The vectorised quantizers give the reference's bytes on rows with halves and on random
 * rows of every magnitude, for every activation format (F16, BF16 included). */
Test(quant_kernels, activation_quantizers_on_every_isa_equal_the_reference)
{
    static const uint32_t formats[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K,
                                       GGML_TYPE_F16, GGML_TYPE_BF16};
    enum { N = 2 * QK_K };
    float rows[2][N];
    activation_row_with_halves(rows[0], N);
    Rng rng;
    rng_seed(&rng, 5);
    for (int j = 0; j < N; j++) /* magnitudes from 2^-20 to 2^10, one per block of 32 */
        rows[1][j] = rng_normal(&rng) * ldexpf(1.0f, (j / QK) % 31 - 20);
    uint8_t want[N * 4], got[N * 4];
    QuantIsa isas[3];
    int n_isas = available_isas(isas), compared = 0;
    for (int i = 0; i < n_isas; i++) {
        cr_assert_eq(quant_set_isa(isas[i]), 0);
        for (int f = 0; f < N_OF(formats); f++)
            for (int r = 0; r < 2; r++) {
                size_t bytes = quant_row_bytes(formats[f], N);
                quant_quantize_row(formats[f], rows[r], want, N);
                quant_quantize_row_fast(formats[f], rows[r], got, N);
                cr_expect(memcmp(got, want, bytes) == 0, "%s %s, row %d: bytes differ",
                          gguf_tensor_type_name(formats[f]), quant_isa_name(isas[i]), r);
                compared++;
            }
    }
    cr_expect_eq(compared, 5 * 2 * n_isas);
}

/* ---- Round trips ------------------------------------------------------------------------ */

/* n values: normal with a different spread per 32 (so that blocks differ), a few outliers,
 * one all-zero block and one constant block. */
static void fill_weights(float *x, int64_t n, uint64_t seed)
{
    Rng rng;
    rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        float spread = 0.02f + 0.2f * (float)((i / 32) % 7);
        x[i] = spread * rng_normal(&rng);
        if (rng_below(&rng, 97) == 0)
            x[i] *= 6.0f;
    }
    for (int i = 0; i < 32 && i < n; i++)
        x[i] = 0.0f;
    for (int i = 32; i < 64 && i < n; i++)
        x[i] = 0.75f;
}

/* Round trip of one row; returns the worst |error| / bound over all blocks, where bound is
 * computed per block of `span` elements by bound_of(block). */
typedef double BoundFn(const float *block, int n);

static double round_trip_worst(uint32_t type, const float *x, int64_t n, int span,
                               BoundFn *bound_of)
{
    void *q = malloc(quant_row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof *y);
    quant_quantize_row(type, x, q, n);
    quant_dequantize_row(type, q, y, n);
    double worst = 0.0;
    for (int64_t b = 0; b < n; b += span) {
        double bound = bound_of(x + b, span);
        for (int i = 0; i < span; i++) {
            double err = fabs((double)y[b + i] - x[b + i]);
            double ratio = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0);
            worst = fmax(worst, ratio);
        }
    }
    free(q);
    free(y);
    return worst;
}

static double block_amax(const float *x, int n)
{
    double amax = 0;
    for (int i = 0; i < n; i++)
        amax = fmax(amax, fabs(x[i]));
    return amax;
}

static double block_range(const float *x, int n)
{
    double lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    return hi - lo;
}

/* Q8_0: q = round(x / d), d = amax/127, so |error| <= d/2 from rounding, plus the f16
 * rounding of d (relative 2^-11) times |q| <= 127: 127 * 2^-11 d = 0.062 d. */
static double bound_q8_0(const float *x, int n)
{
    return (0.5 + 0.063) * block_amax(x, n) / 127.0;
}

/* Q4_0 / Q5_0 (type-0): d = amax/half maps the extreme to code -half exactly; the other
 * values round to d/2, except that the opposite extreme (+half) has no code and is clamped
 * to half-1: an error of up to one step d. The f16 rounding of d adds a relative 2^-11. */
static double bound_q4_0(const float *x, int n)
{
    return 1.002 * block_amax(x, n) / 8.0;
}

static double bound_q5_0(const float *x, int n)
{
    return 1.002 * block_amax(x, n) / 16.0;
}

/* Q4_1 / Q5_1 (type-1): levels-1 steps span [min, max]: rounding error d/2, plus the f16
 * rounding of d (up to 2^-11 per step, times at most 31 steps) and of m (2^-11 |m|, which
 * is at most the block's amax). */
static double bound_type1(const float *x, int n, int levels)
{
    double d = block_range(x, n) / (levels - 1);
    return 0.5 * d + (levels - 1) * d * 0x1p-11 + block_amax(x, n) * 0x1p-11 + 1e-12;
}

static double bound_q4_1(const float *x, int n)
{
    return bound_type1(x, n, 16);
}

static double bound_q5_1(const float *x, int n)
{
    return bound_type1(x, n, 32);
}

/* F16: relative 2^-11 for normal values; below 2^-14 the subnormals' fixed spacing 2^-24
 * gives an absolute 2^-25. */
static double bound_f16(const float *x, int n)
{
    return fmax(block_amax(x, n) * 0x1p-11, 0x1p-25);
}

static double bound_bf16(const float *x, int n)
{
    return block_amax(x, n) * 0x1p-8;
}

Test(quant_ref, round_trips_of_exact_formats_stay_within_their_bounds)
{
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x);
    fill_weights(x, N, 7);
    static const struct {
        uint32_t type;
        int span;
        BoundFn *bound;
    } cases[] = {
        {GGML_TYPE_Q8_0, 32, bound_q8_0}, {GGML_TYPE_Q4_0, 32, bound_q4_0},
        {GGML_TYPE_Q5_0, 32, bound_q5_0}, {GGML_TYPE_Q4_1, 32, bound_q4_1},
        {GGML_TYPE_Q5_1, 32, bound_q5_1}, {GGML_TYPE_F16, 1, bound_f16},
        {GGML_TYPE_BF16, 1, bound_bf16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double worst = round_trip_worst(cases[i].type, x, N, cases[i].span, cases[i].bound);
        cr_expect_leq(worst, 1.0, "%s: worst error is %.3f times its bound",
                      gguf_tensor_type_name(cases[i].type), worst);
    }
    free(x);
}

/* Expected RMS error of a format on normal data of standard deviation 1: rounding to a grid
 * of step h errs by h/sqrt(12) on average. The step is the block's span over its number
 * of steps: type-0 formats span the largest magnitude (expected 2.35 for 32 normal values,
 * 2.08 for 16, 3.05 for 256) with half their codes; type-1 formats span the range (4.14
 * for 32 values, 3.53 for 16). The least-squares fits of the K-quants do a little better
 * than this grid, the others match it; tests allow 10% more. */
static double expected_rms(uint32_t type)
{
    const double r12 = 1.0 / sqrt(12.0);
    switch (type) {
    case GGML_TYPE_Q8_0: return 2.35 / 127 * r12;
    case GGML_TYPE_Q4_0: return 2.35 / 8 * r12;
    case GGML_TYPE_Q5_0: return 2.35 / 16 * r12;
    case GGML_TYPE_Q4_1: return 4.14 / 15 * r12;
    case GGML_TYPE_Q5_1: return 4.14 / 31 * r12;
    case GGML_TYPE_Q2_K: return 3.53 / 3 * r12;
    case GGML_TYPE_Q3_K: return 2.08 / 4 * r12;
    case GGML_TYPE_Q4_K: return 4.14 / 15 * r12;
    case GGML_TYPE_Q5_K: return 4.14 / 31 * r12;
    case GGML_TYPE_Q6_K: return 2.08 / 32 * r12;
    case GGML_TYPE_Q8_K: return 3.05 / 127 * r12;
    default: return 0.0;
    }
}

/* The K-quants fit each sub-block by least squares and then round the sub-block scales to
 * 6 or 8 bits, so their worst single error depends on the data; the RMS error is the bound
 * that matters (expected_rms). The worst error must stay under 3 grid steps. */
Test(quant_ref, round_trips_of_k_quants_have_the_expected_rms_error)
{
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    void *q = malloc(quant_row_bytes(GGML_TYPE_Q8_K, N));
    Rng rng;
    rng_seed(&rng, 11);
    for (int i = 0; i < N; i++)
        x[i] = rng_normal(&rng);
    static const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
                                     GGML_TYPE_Q8_K};
    for (size_t c = 0; c < sizeof types / sizeof *types; c++) {
        quant_quantize_row(types[c], x, q, N);
        quant_dequantize_row(types[c], q, y, N);
        double se = 0, worst = 0;
        for (int i = 0; i < N; i++) {
            se += (y[i] - x[i]) * (y[i] - x[i]);
            worst = fmax(worst, fabs(y[i] - x[i]));
        }
        double rms = sqrt(se / N), expected = expected_rms(types[c]);
        cr_expect_leq(rms, 1.1 * expected, "%s: rms error %.4f, expected about %.4f",
                      gguf_tensor_type_name(types[c]), rms, expected);
        cr_expect_leq(worst, 3 * sqrt(12.0) * expected, "%s: worst error %.4f",
                      gguf_tensor_type_name(types[c]), worst);
    }
    free(x);
    free(y);
    free(q);
}

/* ---- llama.cpp's files -----------------------------------------------------------------
 * qtest-<TYPE>.gguf hold one random llama (weights N(0, 0.08)) as llama.cpp stored it in
 * each type; qtest-f32.gguf holds the originals. Each dequantized tensor must match its
 * original within the type's expected RMS error (relative to the tensor's standard
 * deviation); F32 tensors (norms) and F16/BF16 files must match exactly (the f32 value
 * rounded to nearest even). */

static const char *const QTEST_FILES[] = {"F16",  "BF16", "Q8_0", "Q4_0",   "Q4_1",
                                          "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M",
                                          "Q5_K_M", "Q6_K"};

/* 0 when every element is the f32 value converted to `type` exactly. */
static int64_t count_inexact(uint32_t type, const float *got, const float *ref, uint64_t n)
{
    int64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        float expect = type == GGML_TYPE_F32   ? ref[i]
                       : type == GGML_TYPE_F16 ? f16_to_f32(f32_to_f16(ref[i]))
                                               : bf16_to_f32(f32_to_bf16(ref[i]));
        bad += got[i] != expect;
    }
    return bad;
}

Test(quant_files, every_qtest_tensor_dequantizes_to_its_f32_original)
{
    SHARED_FILE_OR_SKIP(ref_path, "models/qtest-f32.gguf");
    Error err;
    GgufFile *ref;
    cr_assert_eq(gguf_open(&ref, ref_path, &err), 0, "%s", err.msg);
    int compared = 0, files = 0;
    for (size_t fi = 0; fi < sizeof QTEST_FILES / sizeof *QTEST_FILES; fi++) {
        char name[64];
        snprintf(name, sizeof name, "models/qtest-%s.gguf", QTEST_FILES[fi]);
        SHARED_FILE_OR_SKIP(path, name);
        GgufFile *f;
        cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
        files++;
        for (uint64_t t = 0; t < f->n_tensors; t++) {
            const GgufTensor *qt = &f->tensors[t];
            const GgufTensor *rt = gguf_find_tensor(ref, qt->name);
            cr_assert(rt && rt->type == GGML_TYPE_F32, "%s: %s not in the f32 file", name,
                      qt->name);
            cr_assert(quant_type_is_supported(qt->type), "%s: %s has type %u", name, qt->name,
                      qt->type);
            uint64_t n = gguf_tensor_nelements(qt);
            cr_assert_eq(n, gguf_tensor_nelements(rt));
            float *got = malloc(n * sizeof *got);
            quant_dequantize_row(qt->type, qt->data, got, (int64_t)n);
            const float *orig = rt->data;
            if (qt->type == GGML_TYPE_F32 || qt->type == GGML_TYPE_F16 ||
                qt->type == GGML_TYPE_BF16) {
                int64_t bad = count_inexact(qt->type, got, orig, n);
                cr_expect_eq(bad, 0, "%s %s: %ld values differ", name, qt->name, (long)bad);
            } else {
                double se = 0, ss = 0;
                for (uint64_t i = 0; i < n; i++) {
                    se += ((double)got[i] - orig[i]) * ((double)got[i] - orig[i]);
                    ss += (double)orig[i] * orig[i];
                }
                double rel = sqrt(se / ss), expected = expected_rms(qt->type);
                cr_expect_leq(rel, 1.1 * expected, "%s %s (%s): rms error %.4f of the sd, "
                              "expected about %.4f", name, qt->name,
                              gguf_tensor_type_name(qt->type), rel, expected);
            }
            free(got);
            compared++;
        }
        gguf_close(f);
    }
    gguf_close(ref);
    cr_expect_eq(files, 12);
    cr_expect_eq(compared, 12 * 21, "21 tensors in each of the 12 files");
}

/* ---- Kernels against the reference -------------------------------------------------------
 * Weight rows are random bytes with random finite scales, so that every code occurs (-128
 * in Q8_0, every nibble and high bit, every sub-block scale); activations are random
 * normals quantized by the reference quantizer. The reference product dequantizes both
 * rows and sums in double (with the stored sums of Q8_1, stored_sum_correction). A kernel
 * sums exact integers per block and floats across blocks (and lanes), so it may differ from
 * the exact sum by a few float roundings of the running total: the tolerance is
 * 2^-24 * (K/8 + 16) * sum |w_i x_i|. */

static uint16_t random_scale(Rng *rng)
{
    float v = 0.002f + 0.05f * rng_uniform(rng);
    return f32_to_f16(rng_below(rng, 2) ? v : -v);
}

/* Overwrites the f16 scale fields of block i (at row + i * size) with random finite values. */
static void randomise_scales(uint32_t type, uint8_t *block, Rng *rng)
{
    uint16_t d = random_scale(rng), m = random_scale(rng);
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0:
        memcpy(block, &d, 2); /* d is the first field */
        break;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
        memcpy(block, &d, 2); /* d, then m or dmin */
        memcpy(block + 2, &m, 2);
        break;
    case GGML_TYPE_Q2_K:
        memcpy(block + offsetof(BlockQ2_K, d), &d, 2);
        memcpy(block + offsetof(BlockQ2_K, dmin), &m, 2);
        break;
    case GGML_TYPE_Q3_K:
        memcpy(block + offsetof(BlockQ3_K, d), &d, 2);
        break;
    case GGML_TYPE_Q6_K:
        memcpy(block + offsetof(BlockQ6_K, d), &d, 2);
        break;
    default:
        cr_assert_fail("no scales for type %u", type);
    }
}

static void *random_weight_row(uint32_t type, int64_t n, Rng *rng)
{
    size_t bytes = quant_row_bytes(type, n);
    uint8_t *row = malloc(bytes);
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++)
            x[i] = rng_normal(rng);
        quant_quantize_row(type, x, row, n);
        free(x);
        return row;
    }
    for (size_t i = 0; i < bytes; i++)
        row[i] = (uint8_t)rng_next_u64(rng);
    size_t block_bytes = quant_row_bytes(type, quant_block_size(type));
    for (size_t b = 0; b < bytes; b += block_bytes)
        randomise_scales(type, row + b, rng);
    return row;
}

/* n activations as quant_vec_dot takes them (quantized unless the format is F32), and
 * their float values in deq. */
static void *random_activation_row(uint32_t weight_type, int64_t n, Rng *rng, float *deq)
{
    uint32_t act_type = quant_activation_type(weight_type);
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(rng) * (i % 97 == 0 ? 8.0f : 1.0f);
    void *row = malloc(quant_row_bytes(act_type, n));
    quant_quantize_row(act_type, x, row, n);
    quant_dequantize_row(act_type, row, deq, n);
    free(x);
    return row;
}

static const uint32_t WEIGHT_TYPES[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};
enum { N_WEIGHT_TYPES = sizeof WEIGHT_TYPES / sizeof *WEIGHT_TYPES };

/* Row lengths: several block counts, odd ones included (25 blocks of 32). */
static int row_lengths(uint32_t type, int64_t lengths[5])
{
    int64_t b = quant_block_size(type);
    if (b == 1) {
        static const int64_t f[5] = {1, 7, 33, 255, 1000};
        memcpy(lengths, f, sizeof f);
    } else if (b == 32) {
        static const int64_t q[5] = {32, 96, 800, 2048, 4096};
        memcpy(lengths, q, sizeof q);
    } else {
        static const int64_t k[5] = {256, 512, 768, 2048, 4096};
        memcpy(lengths, k, sizeof k);
    }
    return 5;
}

/* Q4_1 and Q5_1 multiply each block's minimum m by the sum s that the activation block
 * stores (Q8_1), the sum of its values rounded to f16: the product the kernels compute is
 * the exact one plus m (s - sum of the block's x) per block. 0 for other types. */
static double stored_sum_correction(uint32_t type, const uint8_t *w, const uint8_t *act,
                                    const float *x, int64_t n)
{
    if (type != GGML_TYPE_Q4_1 && type != GGML_TYPE_Q5_1)
        return 0;
    static_assert(offsetof(BlockQ4_1, m) == offsetof(BlockQ5_1, m), "m at the same place");
    size_t wb = quant_row_bytes(type, QK);
    double correction = 0;
    for (int64_t b = 0; b < n / QK; b++) {
        uint16_t m, stored;
        memcpy(&m, w + b * wb + offsetof(BlockQ4_1, m), 2);
        memcpy(&stored, act + b * sizeof(BlockQ8_1) + offsetof(BlockQ8_1, s), 2);
        double sum = 0;
        for (int j = 0; j < QK; j++)
            sum += x[b * QK + j];
        correction += f16_to_f32(m) * (f16_to_f32(stored) - sum);
    }
    return correction;
}

/* The exact dot of two float rows, and the tolerance for a kernel's result. */
static double reference_dot(const float *w, const float *x, int64_t n, double *tol)
{
    double sum = 0, magnitude = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)w[i] * x[i];
        magnitude += fabs((double)w[i] * x[i]);
    }
    *tol = 0x1p-24 * ((double)n / 8 + 16) * magnitude + 1e-30;
    return sum;
}

Test(quant_kernels, vec_dot_on_every_isa_matches_the_reference)
{
    QuantIsa isas[3];
    int n_isas = available_isas(isas);
    int compared = 0;
    for (int t = 0; t < N_WEIGHT_TYPES; t++) {
        uint32_t type = WEIGHT_TYPES[t];
        int64_t lengths[5];
        int n_lengths = row_lengths(type, lengths);
        for (int li = 0; li < n_lengths; li++) {
            int64_t n = lengths[li];
            Rng rng;
            rng_seed(&rng, 1000 * t + li);
            float *wf = malloc((size_t)n * sizeof *wf), *xf = malloc((size_t)n * sizeof *xf);
            void *w = random_weight_row(type, n, &rng);
            void *x = random_activation_row(type, n, &rng, xf);
            quant_dequantize_row(type, w, wf, n);
            double tol, exact = reference_dot(wf, xf, n, &tol) +
                                stored_sum_correction(type, w, x, xf, n);
            for (int i = 0; i < n_isas; i++) {
                cr_assert_eq(quant_set_isa(isas[i]), 0);
                float got = quant_vec_dot(type, n, w, x);
                cr_expect_leq(fabs(got - exact), tol, "%s, %s, n=%ld: %.9g, exact %.9g",
                              gguf_tensor_type_name(type), quant_isa_name(isas[i]), (long)n,
                              got, exact);
                compared++;
            }
            free(w);
            free(x);
            free(wf);
            free(xf);
        }
    }
    cr_expect_eq(compared, N_WEIGHT_TYPES * 5 * n_isas);
    cr_log_info("vec_dot: %d cases on %d ISAs (best: %s)", compared, n_isas,
                quant_isa_name(quant_isa_best()));
}

/* ---- The KV cache's fast conversions ----------------------------------------------------- */

static bool same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* F16 to floats: all 65536 half-precision values, on every ISA, bit for bit as the reference
 * converts them (NaNs only as NaNs: the hardware quiets a signalling one). Each row starts
 * at another offset (stride 2 * 65536 + 6 bytes), so vector loads meet every alignment. */
Test(quant_kernels, f16_to_float_on_every_isa_equals_the_reference_for_all_65536_values)
{
    enum { N = 65536, ROWS = 3 };
    size_t stride = 2 * N + 6;
    uint8_t *src = malloc(ROWS * stride);
    for (int r = 0; r < ROWS; r++)
        for (uint32_t i = 0; i < N; i++) {
            uint16_t h = (uint16_t)(i + 7919u * (uint32_t)r); /* each row in its own order */
            memcpy(src + r * stride + 2 * i, &h, 2);
        }
    float *want = malloc(ROWS * N * sizeof *want), *got = malloc(ROWS * N * sizeof *got);
    for (int r = 0; r < ROWS; r++)
        quant_dequantize_row(GGML_TYPE_F16, src + r * stride, want + (size_t)r * N, N);
    QuantIsa isas[3];
    int n_isas = available_isas(isas), compared = 0;
    for (int i = 0; i < n_isas; i++) {
        cr_assert_eq(quant_set_isa(isas[i]), 0);
        quant_dequantize_rows_fast(GGML_TYPE_F16, src, stride, got, ROWS, N);
        for (size_t j = 0; j < (size_t)ROWS * N; j++)
            if (!same_float(got[j], want[j]))
                cr_assert_fail("%s: value %zu of row %zu: %.9g, reference %.9g",
                               quant_isa_name(isas[i]), j % N, j / N, got[j], want[j]);
        compared++;
    }
    cr_assert_eq(compared, n_isas);
    free(src);
    free(want);
    free(got);
}

/* Floats to F16 and Q8_0 (quantizing), Q8_0 back to floats: the reference's bytes and floats
 * on every ISA, for rows of every length up to 67 (F16: the tails after the last full
 * vector) and floats of every magnitude, F16's specials included: subnormals, the rounding
 * edge at 65520 (to infinity) and below it, signed zeros, infinities and NaN. */
Test(quant_kernels, kv_cache_quantizers_on_every_isa_equal_the_reference)
{
    enum { N = 96 };
    float x[N];
    Rng rng;
    rng_seed(&rng, 77);
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f,
                                     65520.0f, -65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 6e-5f,
                                     -3e-7f, 1.0009765625f, 1.00048828125f};
    for (int i = 0; i < N; i++) /* magnitudes from 2^-30 to 2^18 */
        x[i] = rng_normal(&rng) * ldexpf(1.0f, (int)rng_below(&rng, 49) - 30);
    memcpy(x + 70, specials, sizeof specials);
    uint8_t want[2 * N], got[2 * N];
    QuantIsa isas[3];
    int n_isas = available_isas(isas), compared = 0;
    for (int i = 0; i < n_isas; i++) {
        cr_assert_eq(quant_set_isa(isas[i]), 0);
        for (int n = 1; n <= 67; n++) {
            quant_quantize_row(GGML_TYPE_F16, x + 29, want, n);
            quant_quantize_row_fast(GGML_TYPE_F16, x + 29, got, n);
            cr_assert_arr_eq(got, want, 2 * (size_t)n, "%s: F16 row of %d",
                             quant_isa_name(isas[i]), n);
            compared++;
        }
        const float *finite = x; /* Q8_0 of the first 64 floats, none of them special */
        quant_quantize_row(GGML_TYPE_Q8_0, finite, want, 64);
        quant_quantize_row_fast(GGML_TYPE_Q8_0, finite, got, 64);
        cr_assert_arr_eq(got, want, quant_row_bytes(GGML_TYPE_Q8_0, 64), "%s: Q8_0",
                         quant_isa_name(isas[i]));
        float back_want[64], back_got[64];
        quant_dequantize_row(GGML_TYPE_Q8_0, want, back_want, 64);
        quant_dequantize_rows_fast(GGML_TYPE_Q8_0, want, 0, back_got, 1, 64);
        cr_assert_arr_eq(back_got, back_want, sizeof back_want, "%s: Q8_0 back to floats",
                         quant_isa_name(isas[i]));
        compared++;
    }
    cr_assert_eq(compared, 68 * n_isas);
}

/* ---- quant_matmul -------------------------------------------------------------------------
 * Against a double-precision product of the dequantized weights and the activations as the
 * reference quantizer makes them, for N = 1, 3, 17 and 130 (not multiples of the tile),
 * M = 37 (a short last tile), a row stride ldo wider than M, beta 0 (out full of NaN, which
 * must not leak) and beta 1; and the activations the product wrote into scratch must be the
 * reference quantizer's bytes on every ISA. */

typedef struct {
    uint32_t type;
    int N, M, K;
    float beta;
} MatmulCase;

static void check_matmul(MatmulCase c, QuantIsa isa)
{
    int ldo = c.M + 5;
    Rng rng;
    rng_seed(&rng, (uint64_t)c.type * 131 + (uint64_t)c.N);
    uint8_t *W = random_weight_row(c.type, (int64_t)c.M * c.K, &rng);
    float *x = malloc((size_t)c.N * c.K * sizeof *x),
          *out = malloc((size_t)c.N * ldo * sizeof *out);
    float *out0 = malloc((size_t)c.N * ldo * sizeof *out0);
    for (size_t i = 0; i < (size_t)c.N * c.K; i++)
        x[i] = rng_normal(&rng);
    for (size_t i = 0; i < (size_t)c.N * ldo; i++) {
        out0[i] = rng_normal(&rng);
        out[i] = c.beta == 0.0f ? NAN : out0[i];
    }
    uint32_t act_type = quant_activation_type(c.type);
    size_t act_bytes = quant_row_bytes(act_type, c.K);
    size_t scratch_bytes = quant_matmul_scratch_bytes(c.type, c.N, c.K);
    void *scratch = scratch_bytes ? malloc(scratch_bytes) : NULL;
    cr_assert_eq(quant_set_isa(isa), 0);
    quant_matmul(out, ldo, x, c.N, c.K, W, c.type, c.M, c.beta, scratch);

    /* the reference: the same activations, quantized by the reference code */
    uint8_t *act = malloc(act_bytes);
    float *xq = malloc((size_t)c.K * sizeof *xq), *wrow = malloc((size_t)c.K * sizeof *wrow);
    size_t w_stride = quant_row_bytes(c.type, c.K);
    for (int i = 0; i < c.N; i++) {
        quant_quantize_row(act_type, x + (size_t)i * c.K, act, c.K);
        if (scratch)
            cr_assert(memcmp(act, (uint8_t *)scratch + i * act_bytes, act_bytes) == 0,
                      "%s %s: activation row %d differs from the reference quantizer's",
                      gguf_tensor_type_name(c.type), quant_isa_name(isa), i);
        quant_dequantize_row(act_type, act, xq, c.K);
        for (int j = 0; j < c.M; j++) {
            quant_dequantize_row(c.type, W + j * w_stride, wrow, c.K);
            double tol, exact = reference_dot(wrow, xq, c.K, &tol) +
                                stored_sum_correction(c.type, W + j * w_stride, act, xq, c.K);
            size_t o = (size_t)i * ldo + j;
            exact += c.beta * out0[o];
            tol += 0x1p-23 * fabs(out0[o]);
            if (!(fabs(out[o] - exact) <= tol))
                cr_assert_fail("%s %s N=%d beta=%g: out[%d][%d] = %.9g, exact %.9g",
                               gguf_tensor_type_name(c.type), quant_isa_name(isa), c.N, c.beta,
                               i, j, out[o], exact);
        }
        for (int j = c.M; j < ldo; j++) /* the padding of each output row is untouched */
            cr_assert(memcmp(&out[(size_t)i * ldo + j],
                             c.beta == 0.0f ? &(float){NAN} : &out0[(size_t)i * ldo + j],
                             sizeof(float)) == 0);
    }
    free(W);
    free(x);
    free(out);
    free(out0);
    free(scratch);
    free(act);
    free(xq);
    free(wrow);
}

Test(quant_kernels, matmul_matches_a_double_product_for_every_type_and_isa)
{
    QuantIsa isas[3];
    int n_isas = available_isas(isas);
    static const int Ns[] = {1, 3, 17, 130};
    int compared = 0;
    for (int t = 0; t < N_WEIGHT_TYPES; t++) {
        uint32_t type = WEIGHT_TYPES[t];
        int K = quant_block_size(type) == 256 ? 512 : 320;
        for (int ni = 0; ni < 4; ni++)
            for (int i = 0; i < n_isas; i++)
                for (int b = 0; b < 2; b++) {
                    check_matmul((MatmulCase){type, Ns[ni], 37, K, (float)b}, isas[i]);
                    compared++;
                }
    }
    cr_expect_eq(compared, N_WEIGHT_TYPES * 4 * 2 * n_isas);
}

Test(quant_kernels, matmul_is_bit_identical_on_one_and_two_threads)
{
    QuantIsa isas[3];
    int n_isas = available_isas(isas);
    static const int Ns[] = {1, 5, 64};
    int compared = 0;
    for (int t = 0; t < N_WEIGHT_TYPES; t++) {
        uint32_t type = WEIGHT_TYPES[t];
        int K = 512, M = 601;
        Rng rng;
        rng_seed(&rng, 77 + t);
        void *W = random_weight_row(type, (int64_t)M * K, &rng);
        float *x = malloc((size_t)64 * K * sizeof *x);
        for (int i = 0; i < 64 * K; i++)
            x[i] = rng_normal(&rng);
        float *a = malloc((size_t)64 * M * sizeof *a), *b = malloc((size_t)64 * M * sizeof *b);
        void *scratch = malloc(quant_matmul_scratch_bytes(type, 64, K) + 1);
        for (int ni = 0; ni < 3; ni++)
            for (int i = 0; i < n_isas; i++) {
                cr_assert_eq(quant_set_isa(isas[i]), 0);
                compute_set_threads(1);
                quant_matmul(a, M, x, Ns[ni], K, W, type, M, 0.0f, scratch);
                compute_set_threads(2);
                quant_matmul(b, M, x, Ns[ni], K, W, type, M, 0.0f, scratch);
                cr_expect(memcmp(a, b, (size_t)Ns[ni] * M * sizeof *a) == 0,
                          "%s %s N=%d: 1 and 2 threads differ", gguf_tensor_type_name(type),
                          quant_isa_name(isas[i]), Ns[ni]);
                compared++;
            }
        free(W);
        free(x);
        free(a);
        free(b);
        free(scratch);
    }
    cr_expect_eq(compared, N_WEIGHT_TYPES * 3 * n_isas);
}

/* A decoding step multiplies one activation row (the kernels' single-row paths, which
 * decode weights in registers and take rows one by one); a prompt multiplies several (tiles,
 * and past one tile, weights decoded into a buffer). A row's dot must not depend on which
 * path computed it: the product of one row equals, bit for bit, the same row inside
 * products of 2 and 7 rows, for every weight type and ISA, over K of several segments. */
Test(quant_kernels, one_row_has_the_bits_it_has_in_a_batch)
{
    QuantIsa isas[3];
    int n_isas = available_isas(isas);
    static const int Ns[] = {2, 7};
    int compared = 0;
    for (int t = 0; t < N_WEIGHT_TYPES; t++) {
        uint32_t type = WEIGHT_TYPES[t];
        int K = 2 * 2048 + (quant_block_size(type) == 256 ? 512 : 320), M = 37;
        Rng rng;
        rng_seed(&rng, 91 + t);
        void *W = random_weight_row(type, (int64_t)M * K, &rng);
        float *x = malloc((size_t)7 * K * sizeof *x);
        for (int i = 0; i < 7 * K; i++)
            x[i] = rng_normal(&rng);
        float one[37], batch[7 * 37];
        void *scratch = malloc(quant_matmul_scratch_bytes(type, 7, K) + 1);
        for (int i = 0; i < n_isas; i++) {
            cr_assert_eq(quant_set_isa(isas[i]), 0);
            quant_matmul(one, M, x, 1, K, W, type, M, 0.0f, scratch);
            for (int ni = 0; ni < 2; ni++) {
                quant_matmul(batch, M, x, Ns[ni], K, W, type, M, 0.0f, scratch);
                cr_expect(memcmp(one, batch, sizeof one) == 0,
                          "%s %s: one row differs from the first of %d",
                          gguf_tensor_type_name(type), quant_isa_name(isas[i]), Ns[ni]);
                compared++;
            }
        }
        free(W);
        free(x);
        free(scratch);
    }
    cr_expect_eq(compared, N_WEIGHT_TYPES * 2 * n_isas);
}

Test(quant_kernels, empty_rows_give_empty_sums)
{
    float out[2 * 3] = {1, 2, 3, 4, 5, 6}, x[1] = {0};
    uint8_t w[1] = {0}, scratch[1];
    quant_matmul(out, 3, x, 2, 0, w, GGML_TYPE_Q8_0, 3, 1.0f, scratch);
    cr_expect(out[0] == 1 && out[5] == 6, "beta = 1 with K = 0 leaves out as it was");
    quant_matmul(out, 3, x, 2, 0, w, GGML_TYPE_Q8_0, 3, 0.0f, scratch);
    cr_expect(out[0] == 0 && out[5] == 0, "beta = 0 with K = 0 writes zeros");
    cr_expect_eq(quant_vec_dot(GGML_TYPE_Q4_K, 0, w, x), 0.0f);
}

/* ---- quill quantize ------------------------------------------------------------------------- */

/* Runs `quill quantize ARGS`; returns the exit status, output in *out (caller frees). */
static int run_quantize(char **out, const char *args)
{
    char command[2048];
    snprintf(command, sizeof command, "%s quantize %s", test_quill_bin(), args);
    return test_run_capture(command, out);
}

/* Every tensor of `path` against the same tensor of the original: matrices within their
 * type's expected RMS error, F32/F16/BF16 tensors exactly the original rounded. */
static int compare_with_original(const char *path, const GgufFile *ref)
{
    Error err;
    GgufFile *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f->n_tensors, ref->n_tensors, "%s", path);
    int compared = 0;
    for (uint64_t t = 0; t < f->n_tensors; t++) {
        const GgufTensor *qt = &f->tensors[t], *rt = gguf_find_tensor(ref, qt->name);
        cr_assert_not_null(rt, "%s: %s", path, qt->name);
        uint64_t n = gguf_tensor_nelements(qt);
        float *got = malloc(n * sizeof *got);
        quant_dequantize_row(qt->type, qt->data, got, (int64_t)n);
        const float *orig = rt->data;
        if (!quant_type_is_supported(qt->type) || quant_block_size(qt->type) == 1) {
            cr_expect_eq(count_inexact(qt->type, got, orig, n), 0, "%s %s", path, qt->name);
        } else {
            double se = 0, ss = 0;
            for (uint64_t i = 0; i < n; i++) {
                se += ((double)got[i] - orig[i]) * ((double)got[i] - orig[i]);
                ss += (double)orig[i] * orig[i];
            }
            cr_expect_leq(sqrt(se / ss), 1.1 * expected_rms(qt->type), "%s %s (%s)", path,
                          qt->name, gguf_tensor_type_name(qt->type));
        }
        free(got);
        compared++;
    }
    gguf_close(f);
    return compared;
}

/* The type of every tensor and general.file_type must be what llama.cpp chose for the same
 * TYPE (its qtest-<TYPE>.gguf), and every tensor must match the f32 original. */
Test(quant_cli, quantize_writes_llama_cpp_types_within_each_types_error)
{
    SHARED_FILE_OR_SKIP(shared_ref, "models/qtest-f32.gguf");
    char ref_path[512]; /* test_shared_path's buffer is reused below */
    snprintf(ref_path, sizeof ref_path, "%s", shared_ref);
    const char *dir = test_make_tmpdir();
    Error err;
    GgufFile *ref;
    cr_assert_eq(gguf_open(&ref, ref_path, &err), 0, "%s", err.msg);
    static const char *const types[] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0",   "Q4_1",  "Q5_0",
                                        "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M", "Q5_K_M"};
    int compared = 0, same_as_llama = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char out_path[256], args[1024], *out;
        snprintf(out_path, sizeof out_path, "%s/%s.gguf", dir, types[i]);
        snprintf(args, sizeof args, "%s %s %s", ref_path, out_path, types[i]);
        int rc = run_quantize(&out, args);
        cr_assert_eq(rc, 0, "quantize %s: %s", types[i], out);
        free(out);
        compared += compare_with_original(out_path, ref);

        char llama_name[64];
        snprintf(llama_name, sizeof llama_name, "models/qtest-%s.gguf", types[i]);
        const char *llama_path = test_shared_path(llama_name);
        if (!llama_path) /* llama.cpp has no plain F32 copy, nor plain Q4_K / Q5_K files */
            continue;
        GgufFile *ours, *theirs;
        cr_assert_eq(gguf_open(&theirs, llama_path, &err), 0, "%s", err.msg);
        cr_assert_eq(gguf_open(&ours, out_path, &err), 0, "%s", err.msg);
        for (uint64_t t = 0; t < theirs->n_tensors; t++) {
            const GgufTensor *tt = &theirs->tensors[t], *ot = gguf_find_tensor(ours, tt->name);
            cr_assert_not_null(ot, "%s: %s missing", types[i], tt->name);
            cr_expect_eq(ot->type, tt->type, "%s %s: quill chose %s, llama.cpp %s", types[i],
                         tt->name, gguf_tensor_type_name(ot->type),
                         gguf_tensor_type_name(tt->type));
        }
        uint32_t ft_ours, ft_theirs;
        cr_assert_eq(gguf_get_u32(ours, "general.file_type", &ft_ours, &err), 0, "%s", err.msg);
        cr_assert_eq(gguf_get_u32(theirs, "general.file_type", &ft_theirs, &err), 0, "%s", err.msg);
        cr_expect_eq(ft_ours, ft_theirs, "%s: general.file_type", types[i]);
        same_as_llama++;
        gguf_close(ours);
        gguf_close(theirs);
    }
    gguf_close(ref);
    cr_expect_eq(compared, 13 * 21, "13 files of 21 tensors");
    cr_expect_eq(same_as_llama, 10, "10 types have a llama.cpp file to compare with");
}

Test(quant_cli, bad_type_or_input_fails_with_one_line_and_writes_nothing)
{
    SHARED_FILE_OR_SKIP(ref_path, "models/qtest-f32.gguf");
    const char *dir = test_make_tmpdir();
    char args[1024], *out;
    snprintf(args, sizeof args, "%s %s/out.gguf Q3_K_XL", ref_path, dir);
    cr_expect_neq(run_quantize(&out, args), 0);
    cr_expect(strncmp(out, "quill: error: unknown type 'Q3_K_XL'", 36) == 0, "%s", out);
    cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
    free(out);
    snprintf(args, sizeof args, "%s/missing.gguf %s/out.gguf Q8_0", dir, dir);
    cr_expect_neq(run_quantize(&out, args), 0);
    cr_expect(strstr(out, "quill: error: ") == out && strstr(out, "missing.gguf"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "tests/test_quant.c %s/out.gguf Q8_0", dir);
    cr_expect_neq(run_quantize(&out, args), 0);
    cr_expect(strstr(out, "not a GGUF file") != NULL, "%s", out);
    cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    cr_expect_null(test_shared_path(path), "nothing written");
    FILE *fp = fopen(path, "rb");
    cr_expect_null(fp, "%s must not exist", path);
    if (fp)
        fclose(fp);
}

/* Rows that a type's block does not divide fall back as llama.cpp's do, with one line each:
 * 96 columns are no multiple of 256 (Q4_K -> Q5_0), 40 not even of 32 (-> F16). */
Test(quant_cli, rows_a_block_does_not_divide_fall_back_with_a_line)
{
    const char *dir = test_make_tmpdir();
    char in_path[512], out_path[512];
    snprintf(in_path, sizeof in_path, "%s/in.gguf", dir);
    snprintf(out_path, sizeof out_path, "%s/out.gguf", dir);
    static float a[96 * 4], b[40 * 2], norm[96];
    Rng rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < 96 * 4; i++)
        a[i] = rng_normal(&rng);
    for (int i = 0; i < 40 * 2; i++)
        b[i] = rng_normal(&rng);
    for (int i = 0; i < 96; i++)
        norm[i] = 1.0f;
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_u32(w, "llama.block_count", 1);
    const uint64_t ne_a[2] = {96, 4}, ne_b[2] = {40, 2}, ne_n[1] = {96};
    gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", GGML_TYPE_F32, 2, ne_a, a);
    gguf_writer_add_tensor(w, "blk.0.ffn_gate.weight", GGML_TYPE_F32, 2, ne_b, b);
    gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", GGML_TYPE_F32, 1, ne_n, norm);
    Error err;
    cr_assert_eq(gguf_writer_write(w, in_path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);

    char args[1200], *out;
    snprintf(args, sizeof args, "%s %s Q4_K", in_path, out_path);
    cr_assert_eq(run_quantize(&out, args), 0, "%s", out);
    cr_expect(strstr(out, "blk.0.ffn_up.weight: rows of 96 are not a multiple of Q4_K's block "
                          "of 256: using Q5_0 instead\n") != NULL, "%s", out);
    cr_expect(strstr(out, "blk.0.ffn_gate.weight: rows of 40 are not a multiple of Q4_K's block "
                          "of 256: using F16 instead\n") != NULL, "%s", out);
    free(out);
    GgufFile *f;
    cr_assert_eq(gguf_open(&f, out_path, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_up.weight")->type, GGML_TYPE_Q5_0);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_gate.weight")->type, GGML_TYPE_F16);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_norm.weight")->type, GGML_TYPE_F32, "norms stay");
    gguf_close(f);
}

/* A file quill quantizes runs in llama.cpp as in quill: llama.cpp's greedy tokens on quill's
 * Q8_0 and Q4_K_M copies of the random llama equal quill's, token by token. Both sides
 * multiply these types with activations rounded the same way (logits within float rounding
 * of each other but where a value sits on a rounding edge, test_model.c's
 * llama_cpp.every_weight_type_rounds_as_llama_cpp), so the paths may only part after
 * quill's two best logits come within 2e-3. A quantizer that wrote a block llama.cpp
 * reads differently (a scale, a nibble order, a mix's tensor type) changes its tokens. */
Test(quant_cli, llama_cpp_runs_quill_quantized_files_to_quills_greedy_tokens, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(f32_path, "models/qtest-f32.gguf");
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    static const char *const types[] = {"Q8_0", "Q4_K_M"};
    const char *dir = test_make_tmpdir();
    int compared_types = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char path[512], args[1200], *out;
        snprintf(path, sizeof path, "%s/%s.gguf", dir, types[i]);
        snprintf(args, sizeof args, "%s %s %s", f32_path, path, types[i]);
        cr_assert_eq(run_quantize(&out, args), 0, "quantize %s: %s", types[i], out);
        free(out);
        int ours[32];
        int n = test_greedy_equals_llama_cpp(llama_cli, path, "Once upon a time", 32, 2e-3f, ours);
        cr_expect_geq(n, 8, "%s: only %d tokens compared", types[i], n);
        compared_types++;
    }
    cr_assert_eq(compared_types, 2);
}
