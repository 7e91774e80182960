/* 16-bit floats as GGUF stores them: IEEE binary16 ("F16") and bfloat16 ("BF16").
 * bfloat16 is the top half of a float32, so it converts by a shift; binary16 has a 5-bit
 * exponent and needs its subnormals, infinities and NaNs handled one by one.
 *
 *   float32   sign 1 | exponent 8 (bias 127) | mantissa 23
 *   binary16  sign 1 | exponent 5 (bias 15)  | mantissa 10    largest finite 65504
 *   bfloat16  sign 1 | exponent 8 (bias 127) | mantissa 7     the float32's top 16 bits
 *
 * Conversions to 16 bits round to nearest, ties to even, as IEEE 754 and the F16C
 * instruction vcvtps2ph do, so the SIMD kernels and this code produce the same bits. */
#ifndef QUILL_F16_H
#define QUILL_F16_H

#include <stdint.h>
#include <string.h>

static inline float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static inline float bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    if (exponent == 0x1f) /* infinity or NaN: keep the payload */
        return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24 */
        float magnitude = (float)mantissa * (1.0f / 16777216.0f);
        return sign ? -magnitude : magnitude;
    }
    /* normal: rebias the exponent from 15 to 127 */
    return f32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

/* Round to nearest even, overflow to infinity, NaN stays NaN (quiet). */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t bits = f32_to_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: truncating could leave a zero mantissa */
        return (uint16_t)((bits >> 16) | 0x0040);
    /* Adding 0x7fff rounds the dropped half up when it is above one half; the kept
     * lowest bit adds the last 1 on an exact tie, so ties go to the even neighbour. A carry
     * out of the mantissa raises the exponent, which is right (up to infinity). */
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* Round to nearest even, overflow to infinity, values below 2^-14 become subnormals
 * (or zero), NaN stays NaN (quiet, top payload bits kept). */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t bits = f32_to_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) /* NaN */
        return sign | 0x7e00 | (uint16_t)((magnitude >> 13) & 0x3ff);
    if (magnitude >= 0x477ff000u) /* >= 65520, halfway from 65504 to 2^16: infinity */
        return sign | 0x7c00;
    if (magnitude >= 0x38800000u) { /* >= 2^-14: a normal binary16 */
        /* Rebias the exponent from 127 to 15 (subtract 112 << 23) and keep the top 10
         * mantissa bits, rounding as in f32_to_bf16 (13 bits are dropped here). */
        magnitude += 0xfffu + ((magnitude >> 13) & 1);
        return sign | (uint16_t)((magnitude - (112u << 23)) >> 13);
    }
    /* Subnormal: the value is m * 2^(e - 150) with the implicit bit in m; in units of the
     * smallest subnormal 2^-24 that is m >> (126 - e), rounded to nearest even. Below
     * 2^-25 (a shift of 25 or more) everything rounds to zero. */
    uint32_t e = magnitude >> 23;
    uint32_t shift = 126 - e;
    if (shift > 24)
        return sign;
    uint32_t m = (magnitude & 0x7fffffu) | 0x800000u;
    uint32_t q = m >> shift;
    uint32_t rest = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1)))
        q++; /* q = 1024 becomes the smallest normal, 0x0400: still right */
    return sign | (uint16_t)q;
}

#endif
