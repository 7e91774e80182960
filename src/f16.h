/* 16-bit floats as GGUF stores them: IEEE binary16 ("F16") and bfloat16 ("BF16").
 * bfloat16 is the top half of a float32, so it converts by a shift; binary16 has a 5-bit
 * exponent and needs its subnormals, infinities and NaNs handled one by one. */
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

#endif
