/* F32, F16, BF16 and the 32-element block types: for each, its reference dequantizer, its
 * quantizer and its portable dot product (the kernels of QUANT_ISA_SCALAR). The blocks are
 * drawn in quant_blocks.h. Every function walks the row one block at a time, copying the
 * block out of the byte row with memcpy (see quant_blocks.h for why). */
#include <math.h>
#include <string.h>

#include "f16.h"
#include "gguf.h"
#include "quant_blocks.h"
#include "quant_impl.h"

/* ---- F32, F16, BF16 ---------------------------------------------------------------------
 * Rows of plain numbers; they multiply F32 activations. */

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
    const uint16_t *w = w_row;
    const float *x = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += f16_to_f32(w[i]) * x[i];
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
    const uint16_t *w = w_row;
    const float *x = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += bf16_to_f32(w[i]) * x[i];
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

/* sum_j (d q_j + m) dx x_j = d dx sum_j q_j x_j + m dx sum_j x_j */
static float dot_q4_1(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ4_1 w;
        BlockQ8_0 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK], isum = 0, xsum = 0;
        unpack_nibbles(w.qs, q);
        for (int j = 0; j < QK; j++) {
            isum += q[j] * x.qs[j];
            xsum += x.qs[j];
        }
        float dx = f16_to_f32(x.d);
        sum += f16_to_f32(w.d) * dx * (float)isum + f16_to_f32(w.m) * dx * (float)xsum;
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
        BlockQ8_0 x;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        memcpy(&x, (const uint8_t *)act_row + i * sizeof x, sizeof x);
        int q[QK], isum = 0, xsum = 0;
        unpack_nibbles(w.qs, q);
        unpack_high_bits(w.qh, q);
        for (int j = 0; j < QK; j++) {
            isum += q[j] * x.qs[j];
            xsum += x.qs[j];
        }
        float dx = f16_to_f32(x.d);
        sum += f16_to_f32(w.d) * dx * (float)isum + f16_to_f32(w.m) * dx * (float)xsum;
    }
    return sum;
}

/* ---- Q8_0 ---------------------------------------------------------------------------- */

static void dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        BlockQ8_0 b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        float d = f16_to_f32(b.d);
        for (int j = 0; j < QK; j++)
            dst[i * QK + j] = d * (float)b.qs[j];
    }
}

/* d = amax / 127 and q = round(x / d): the symmetric range -127..127 (never -128, so that
 * negating a code cannot overflow). Also the activation quantizer of every 32-block type;
 * quant_avx2.c and quant_avx512.c vectorise exactly these operations (a multiply by the
 * reciprocal, then quant_round), so every ISA produces the same bytes. Unlike the weight
 * quantizers, q is computed against the unrounded d: an activation row is quantized on
 * every product, and the division by the f16-rounded d would cost a conversion more. */
static void quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++) {
        const float *x = src + i * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ8_0 b;
        b.d = f32_to_f16(d);
        for (int j = 0; j < QK; j++)
            b.qs[j] = (int8_t)quant_round(x[j] * id);
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

/* ---- The formats --------------------------------------------------------------------- */

const QuantFormat quant_format_f32 = {GGML_TYPE_F32, 1, 4, GGML_TYPE_F32,
                                      dequantize_row_f32, quantize_row_f32, dot_f32};
const QuantFormat quant_format_f16 = {GGML_TYPE_F16, 1, 2, GGML_TYPE_F32,
                                      dequantize_row_f16, quantize_row_f16, dot_f16};
const QuantFormat quant_format_bf16 = {GGML_TYPE_BF16, 1, 2, GGML_TYPE_F32,
                                       dequantize_row_bf16, quantize_row_bf16, dot_bf16};
const QuantFormat quant_format_q4_0 = {GGML_TYPE_Q4_0, QK, sizeof(BlockQ4_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q4_0, quantize_row_q4_0, dot_q4_0};
const QuantFormat quant_format_q4_1 = {GGML_TYPE_Q4_1, QK, sizeof(BlockQ4_1), GGML_TYPE_Q8_0,
                                       dequantize_row_q4_1, quantize_row_q4_1, dot_q4_1};
const QuantFormat quant_format_q5_0 = {GGML_TYPE_Q5_0, QK, sizeof(BlockQ5_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q5_0, quantize_row_q5_0, dot_q5_0};
const QuantFormat quant_format_q5_1 = {GGML_TYPE_Q5_1, QK, sizeof(BlockQ5_1), GGML_TYPE_Q8_0,
                                       dequantize_row_q5_1, quantize_row_q5_1, dot_q5_1};
const QuantFormat quant_format_q8_0 = {GGML_TYPE_Q8_0, QK, sizeof(BlockQ8_0), GGML_TYPE_Q8_0,
                                       dequantize_row_q8_0, quantize_row_q8_0, dot_q8_0};
