/* F32, F16, BF16 and the 32-element block types: for each, its reference dequantizer, its
 * quantizer and its portable dot product (the kernels of QUANT_ISA_SCALAR), and the
 * activation formats Q8_0 and Q8_1. The blocks are drawn in quant_blocks.h. Every function
 * walks the row one block at a time, copying the block out of the byte row with memcpy
 * (see quant_blocks.h for why). */
#include <math.h>
#include <string.h>

#include "f16.h"
#include "gguf.h"
#include "quant_blocks.h"
#include "quant_impl.h"

/* ---- F32, F16, BF16 ---------------------------------------------------------------------
 * Rows of plain numbers. Each multiplies activations of its own type, as llama.cpp's do:
 * F16 and BF16 weights meet activations rounded to F16 and BF16 once per product. Every
 * product of two such numbers is exact in float, so only the sum rounds. */

static void dequantize_row_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quantize_row_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static float dot_f32(int64_t n, const void *w_row, const void *act_row)
{
    const float *w = w_row, *x = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += w[i] * x[i];
    return sum;
}

static void dequantize_row_f16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(h[i]);
}

static void quantize_row_f16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = f32_to_f16(src[i]);
}

static float dot_f16(int64_t n, const void *w_row, const void *act_row)
{
    const uint16_t *w = w_row, *x = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += f16_to_f32(w[i]) * f16_to_f32(x[i]);
    return sum;
}

static void dequantize_row_bf16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(h[i]);
}

static void quantize_row_bf16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = f32_to_bf16(src[i]);
}

static float dot_bf16(int64_t n, const void *w_row, const void *act_row)
{
    const uint16_t *w = w_row, *x = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += bf16_to_f32(w[i]) * bf16_to_f32(x[i]);
    return sum;
}

/* ---- Helpers for the 32-blocks ---------------------------------------------------------- */

/* The element of largest magnitude, with its sign (0 for an all-zero block). */
static float block_signed_absmax(const float *x, int n)
{
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

static void block_min_max(const float *x, int n, float *min, float *max)
{
    *min = *max = x[0];
    for (int i = 1; i < n; i++) {
        *min = x[i] < *min ? x[i] : *min;
        *max = x[i] > *max ? x[i] : *max;
    }
}

/* The 32 4-bit values q[0..31] as qs[16]: q[j] low, q[j+16] high (quant_blocks.h). */
static void pack_nibbles(const int q[QK], uint8_t qs[QK / 2])
{
    for (int j = 0; j < QK / 2; j++)
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + QK / 2] & 15) << 4);
}

static void unpack_nibbles(const uint8_t qs[QK / 2], int q[QK])
{
    for (int j = 0; j < QK / 2; j++) {
        q[j] = qs[j] & 15;
        q[j + QK / 2] = qs[j] >> 4;
    }
}

/* Bit 4 of each of the 32 values, one bit per value in a little-endian uint32. */
static void pack_high_bits(const int q[QK], uint8_t qh[4])
{
    uint32_t bits = 0;
    for (int j = 0; j < QK; j++)
        bits |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int i = 0; i < 4; i++)
        qh[i] = (uint8_t)(bits >> (8 * i));
}

static void unpack_high_bits(const uint8_t qh[4], int q[QK])
{
    uint32_t bits = qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < QK; j++)
        q[j] |= (int)((bits >> j) & 1) << 4;
}

/* "type-0" scale: the element of largest magnitude maps to -half exactly (-8 for 4 bits),
 * the most negative code, so the code range [-half, half - 1] is used in full on the side
 * where the extreme value is. q is computed against the f16-rounded scale that will be
 * stored, so the rounding of d does not add to the error. Returns the stored f16. */
static uint16_t quantize_block_type0(const float *x, int half, int q[QK])
{
    float max = block_signed_absmax(x, QK);
    uint16_t d16 = f32_to_f16(max / -(float)half);
    float d = f16_to_f32(d16);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++)
        q[j] = quant_clamp(quant_round(x[j] * id) + half, 0, 2 * half - 1);
    return d16;
}

/* "type-1" scale and minimum: codes 0..levels-1 span [min, max] evenly. */
static void quantize_block_type1(const float *x, int levels, int q[QK], uint16_t *d16,
                                 uint16_t *m16)
{
    float min, max;
    block_min_max(x, QK, &min, &max);
    *d16 = f32_to_f16((max - min) / (float)(levels - 1));
    *m16 = f32_to_f16(min);
    float d = f16_to_f32(*d16), m = f16_to_f32(*m16);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++)
        q[j] = quant_clamp(quant_round((x[j] - m) * id), 0, levels - 1);
}

/* ---- Q4_0 ---------------------------------------------------------------------------- */

static void dequantize_row_q4_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_0 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        float d = f16_to_f32(b.d);
        int q[QK];
        unpack_nibbles(b.qs, q);
        for (int j = 0; j < QK; j++)
            dst[i * QK + j] = d * (float)(q[j] - 8);
    }
}

static void quantize_row_q4_0(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_0 b;
        int q[QK];
        b.d = quantize_block_type0(src + i * QK, 8, q);
        pack_nibbles(q, b.qs);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

/* Each block's integer dot product is exact; its two scales are applied once per block. */
static float dot_q4_0(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_0 w;
        BlockQ8_0 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK], isum = 0;
        unpack_nibbles(w.qs, q);
        for (int j = 0; j < QK; j++)
            isum += (q[j] - 8) * x.qs[j];
        sum += f16_to_f32(w.d) * f16_to_f32(x.d) * (float)isum;
    }
    return sum;
}

/* ---- Q4_1 ---------------------------------------------------------------------------- */

static void dequantize_row_q4_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_1 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
        int q[QK];
        unpack_nibbles(b.qs, q);
        for (int j = 0; j < QK; j++)
            dst[i * QK + j] = d * (float)q[j] + m;
    }
}

static void quantize_row_q4_1(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_1 b;
        int q[QK];
        quantize_block_type1(src + i * QK, 16, q, &b.d, &b.m);
        pack_nibbles(q, b.qs);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

/* One block of a type-1 format (codes q, scale d, minimum m) against a Q8_1 block:
 *   sum_j (d q_j + m) dx qs_j = d dx sum_j q_j qs_j + m s
 * where s, the block's dx sum_j qs_j, is taken as Q8_1 stores it (rounded to f16). */
static float dot_type1_block(const int q[QK], uint16_t d, uint16_t m, const BlockQ8_1 *x)
{
    int isum = 0;
    for (int j = 0; j < QK; j++)
        isum += q[j] * x->qs[j];
    return f16_to_f32(d) * f16_to_f32(x->d) * (float)isum + f16_to_f32(m) * f16_to_f32(x->s);
}

static float dot_q4_1(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_1 w;
        BlockQ8_1 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK];
        unpack_nibbles(w.qs, q);
        sum += dot_type1_block(q, w.d, w.m, &x);
    }
    return sum;
}

/* ---- Q5_0 ---------------------------------------------------------------------------- */

static void dequantize_row_q5_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_0 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        float d = f16_to_f32(b.d);
        int q[QK];
        unpack_nibbles(b.qs, q);
        unpack_high_bits(b.qh, q);
        for (int j = 0; j < QK; j++)
            dst[i * QK + j] = d * (float)(q[j] - 16);
    }
}

static void quantize_row_q5_0(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_0 b;
        int q[QK];
        b.d = quantize_block_type0(src + i * QK, 16, q);
        pack_nibbles(q, b.qs);
        pack_high_bits(q, b.qh);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

static float dot_q5_0(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_0 w;
        BlockQ8_0 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK], isum = 0;
        unpack_nibbles(w.qs, q);
        unpack_high_bits(w.qh, q);
        for (int j = 0; j < QK; j++)
            isum += (q[j] - 16) * x.qs[j];
        sum += f16_to_f32(w.d) * f16_to_f32(x.d) * (float)isum;
    }
    return sum;
}

/* ---- Q5_1 ---------------------------------------------------------------------------- */

static void dequantize_row_q5_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_1 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
        int q[QK];
        unpack_nibbles(b.qs, q);
        unpack_high_bits(b.qh, q);
        for (int j = 0; j < QK; j++)
            dst[i * QK + j] = d * (float)q[j] + m;
    }
}

static void quantize_row_q5_1(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_1 b;
        int q[QK];
        quantize_block_type1(src + i * QK, 32, q, &b.d, &b.m);
        pack_nibbles(q, b.qs);
        pack_high_bits(q, b.qh);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

static float dot_q5_1(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ5_1 w;
        BlockQ8_1 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK];
        unpack_nibbles(w.qs, q);
        unpack_high_bits(w.qh, q);
        sum += dot_type1_block(q, w.d, w.m, &x);
    }
    return sum;
}

/* ---- Q8_0 ---------------------------------------------------------------------------- */

/* d * qs[j]: the values of one block of 8-bit codes (Q8_0 and Q8_1 alike). */
static void dequantize_codes(uint16_t d16, const int8_t qs[QK], float dst[QK])
{
    float d = f16_to_f32(d16);
    for (int j = 0; j < QK; j++)
        dst[j] = d * (float)qs[j];
}

static void dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_0 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        dequantize_codes(b.d, b.qs, dst + i * QK);
    }
}

/* The codes of one block of 32 activations as llama.cpp's x86 kernels make them (Q8_0 and
 * Q8_1 alike): each value times 127 / amax, rounded to the nearest integer, ties to even
 * (quant_round), so codes stay in -127..127. The scale must be the float 127 / amax, not
 * 1 / d with d = amax / 127: the two differ in the last bit for some amax, and that bit
 * decides the values that land on a half. Those are common: in a block of multiples of one
 * step (a row of a 4-bit embedding after RMSNorm), the value half the largest is 63.5 codes
 * in real numbers, and the scale's last bit makes it 63 or 64. Returns d, unrounded; the
 * block stores it rounded to f16. quant_avx2.c and quant_avx512.c repeat exactly these
 * operations, so every ISA produces the same bytes. */
static float quantize_activation_block(const float *x, int8_t qs[QK])
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < QK; j++)
        qs[j] = (int8_t)quant_round(x[j] * id);
    return amax / 127.0f;
}

/* Q8_0 weights get the activations' codes. (llama.cpp writes Q8_0 weights with its portable
 * code, 1 / d and halves away from zero, so a weight next to a half may get the neighbouring
 * code there: both are within the format's error bound.) */
static void quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_0 b;
        b.d = f32_to_f16(quantize_activation_block(src + i * QK, b.qs));
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

static float dot_q8_0(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_0 w, x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int isum = 0;
        for (int j = 0; j < QK; j++)
            isum += w.qs[j] * x.qs[j];
        sum += f16_to_f32(w.d) * f16_to_f32(x.d) * (float)isum;
    }
    return sum;
}

/* ---- Q8_1: activations of Q4_1 and Q5_1 -------------------------------------------------- */

static void dequantize_row_q8_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_1 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        dequantize_codes(b.d, b.qs, dst + i * QK);
    }
}

/* Q8_0's codes, and s = d * (sum of the codes) with the unrounded d, rounded to f16. */
static void quantize_row_q8_1(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_1 b;
        float d = quantize_activation_block(src + i * QK, b.qs);
        int sum = 0;
        for (int j = 0; j < QK; j++)
            sum += b.qs[j];
        b.d = f32_to_f16(d);
        b.s = f32_to_f16(d * (float)sum);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

/* ---- The formats --------------------------------------------------------------------- */

const QuantFormat quant_format_f32 = {GGML_TYPE_F32, 1, 4, GGML_TYPE_F32,
                                      dequantize_row_f32, quantize_row_f32, dot_f32};
const QuantFormat quant_format_f16 = {GGML_TYPE_F16, 1, 2, GGML_TYPE_F16,
                                      dequantize_row_f16, quantize_row_f16, dot_f16};
const QuantFormat quant_format_bf16 = {GGML_TYPE_BF16, 1, 2, GGML_TYPE_BF16,
                                       dequantize_row_bf16, quantize_row_bf16, dot_bf16};
const QuantFormat quant_format_q4_0 = {GGML_TYPE_Q4_0, QK, sizeof(BlockQ4_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q4_0, quantize_row_q4_0, dot_q4_0};
const QuantFormat quant_format_q4_1 = {GGML_TYPE_Q4_1, QK, sizeof(BlockQ4_1), GGML_TYPE_Q8_1,
                                       dequantize_row_q4_1, quantize_row_q4_1, dot_q4_1};
const QuantFormat quant_format_q5_0 = {GGML_TYPE_Q5_0, QK, sizeof(BlockQ5_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q5_0, quantize_row_q5_0, dot_q5_0};
const QuantFormat quant_format_q5_1 = {GGML_TYPE_Q5_1, QK, sizeof(BlockQ5_1), GGML_TYPE_Q8_1,
                                       dequantize_row_q5_1, quantize_row_q5_1, dot_q5_1};
const QuantFormat quant_format_q8_0 = {GGML_TYPE_Q8_0, QK, sizeof(BlockQ8_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q8_0, quantize_row_q8_0, dot_q8_0};
/* Q8_1 is an activation format only: it has no dot product of its own. */
const QuantFormat quant_format_q8_1 = {GGML_TYPE_Q8_1, QK, sizeof(BlockQ8_1), GGML_TYPE_Q8_1,
                                       dequantize_row_q8_1, quantize_row_q8_1, NULL};
