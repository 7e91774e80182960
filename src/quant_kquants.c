/* The K-quants (Q2_K .. Q6_K) and their activation format Q8_K: reference dequantizers,
 * quantizers (Q4_K, Q5_K, Q6_K and Q8_K; quill reads Q2_K and Q3_K but does not write them)
 * and the portable dot products. Blocks are drawn in quant_blocks.h.
 *
 * Each type has one "unpack" function that turns a 256-element super-block into its codes
 * q[256] and integer sub-block scales (and mins); the dequantizer and the dot product are
 * then a few lines over those arrays, so the bit layout is written down exactly once. */
#include <math.h>
#include <string.h>

#include "f16.h"
#include "gguf.h"
#include "quant_blocks.h"
#include "quant_impl.h"

/* ---- Unpacking: codes and integer scales of one super-block -------------------------- */

static void unpack_q2_k(const BlockQ2_K *b, int q[QK_K], int sc[16], int m[16])
{
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, k = e % 128 / 32, l = e % 32;
        q[e] = (b->qs[32 * h + l] >> (2 * k)) & 3;
    }
    for (int s = 0; s < 16; s++) {
        sc[s] = b->scales[s] & 15;
        m[s] = b->scales[s] >> 4;
    }
}

/* q in 0..7 (the stored code; the weight is proportional to q - 4), sc in -32..31. */
static void unpack_q3_k(const BlockQ3_K *b, int q[QK_K], int sc[16])
{
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, k = e % 128 / 32, l = e % 32;
        int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
        int high = (b->hmask[l] >> (e / 32)) & 1;
        q[e] = low | high << 2;
    }
    for (int s = 0; s < 16; s++)
        sc[s] = quant_q3_k_scale(s, b->scales);
}

/* The low 4 bits of Q4_K and Q5_K: chunk c of 64 weights is qs[32c .. 32c+31], low
 * nibbles first. */
static void unpack_nibbles_k(const uint8_t qs[QK_K / 2], int q[QK_K])
{
    for (int e = 0; e < QK_K; e++) {
        int c = e / 64, r = e % 64;
        q[e] = r < 32 ? qs[32 * c + r] & 15 : qs[32 * c + r - 32] >> 4;
    }
}

static void unpack_q4_k(const BlockQ4_K *b, int q[QK_K], int sc[8], int m[8])
{
    unpack_nibbles_k(b->qs, q);
    for (int j = 0; j < 8; j++)
        quant_k_scale_min(j, b->scales, &sc[j], &m[j]);
}

static void unpack_q5_k(const BlockQ5_K *b, int q[QK_K], int sc[8], int m[8])
{
    unpack_nibbles_k(b->qs, q);
    for (int e = 0; e < QK_K; e++)
        q[e] |= ((b->qh[e % 32] >> (e / 32)) & 1) << 4;
    for (int j = 0; j < 8; j++)
        quant_k_scale_min(j, b->scales, &sc[j], &m[j]);
}

/* q in 0..63 (the weight is proportional to q - 32). */
static void unpack_q6_k(const BlockQ6_K *b, int q[QK_K])
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int *out = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            out[l] = (ql[l] & 15) | ((qh[l] >> 0) & 3) << 4;
            out[l + 32] = (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4;
            out[l + 64] = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
            out[l + 96] = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
        }
    }
}

/* ---- Dequantizers --------------------------------------------------------------------- */

static void dequantize_row_q2_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ2_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        int q[QK_K], sc[16], m[16];
        unpack_q2_k(&b, q, sc, m);
        float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = d * (float)sc[e / 16] * (float)q[e] - dmin * (float)m[e / 16];
    }
}

static void dequantize_row_q3_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ3_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        int q[QK_K], sc[16];
        unpack_q3_k(&b, q, sc);
        float d = f16_to_f32(b.d);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = d * (float)sc[e / 16] * (float)(q[e] - 4);
    }
}

static void dequantize_row_q4_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ4_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        int q[QK_K], sc[8], m[8];
        unpack_q4_k(&b, q, sc, m);
        float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = d * (float)sc[e / 32] * (float)q[e] - dmin * (float)m[e / 32];
    }
}

static void dequantize_row_q5_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ5_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        int q[QK_K], sc[8], m[8];
        unpack_q5_k(&b, q, sc, m);
        float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = d * (float)sc[e / 32] * (float)q[e] - dmin * (float)m[e / 32];
    }
}

static void dequantize_row_q6_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ6_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        int q[QK_K];
        unpack_q6_k(&b, q);
        float d = f16_to_f32(b.d);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = d * (float)b.scales[e / 16] * (float)(q[e] - 32);
    }
}

static void dequantize_row_q8_k(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ8_K b;
        memcpy(&b, (const uint8_t *)src + i * sizeof b, sizeof b);
        for (int e = 0; e < QK_K; e++)
            dst[i * QK_K + e] = b.d * (float)b.qs[e];
    }
}

/* ---- Quantizers --------------------------------------------------------------------------
 * Two steps, as in every K-quant: fit each sub-block on its own (a float scale, and a min
 * for type-1), then quantize those per-sub-block floats to the block's small integers
 * relative to the largest one (6 bits for Q4_K/Q5_K, 8 for Q6_K), and finally choose every
 * weight's code again against the scales that were actually stored.
 *
 * A sub-block fit tries a range of step sizes around the obvious one (range / levels) and,
 * for the codes each step gives, solves the least-squares problem for the scale (and min)
 * in closed form: rounding to a slightly larger or smaller grid often fits the values
 * better than the grid through the extremes. The fit minimises the plain squared error of
 * the sub-block. */

enum { FIT_STEPS = 10 }; /* step sizes tried on each side of the obvious one */

/* Type-1 fit of n values: x ~ a * L - mn with L in 0..levels-1, a >= 0, mn >= 0 (the
 * format stores the minimum as a non-negative number that is subtracted). */
static void fit_type1(const float *x, int n, int levels, float *a_out, float *mn_out)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    lo = lo < 0.0f ? lo : 0.0f; /* the offset can only move the grid down */
    float range = hi - lo;
    float best_a = range / (float)(levels - 1), best_lo = lo, best_err = INFINITY;
    if (range <= 0.0f) {
        *a_out = 0.0f;
        *mn_out = -lo;
        return;
    }
    for (int step = -FIT_STEPS; step <= FIT_STEPS; step++) {
        float iscale = ((float)(levels - 1) + 0.1f * (float)step) / range;
        /* least squares for (a, b) in x ~ a*L + b: the 2x2 normal equations */
        double sl = 0, sl2 = 0, sx = 0, sxl = 0;
        int L[QK];
        for (int i = 0; i < n; i++) {
            L[i] = quant_clamp(quant_round((x[i] - lo) * iscale), 0, levels - 1);
            sl += L[i];
            sl2 += (double)L[i] * L[i];
            sx += x[i];
            sxl += (double)x[i] * L[i];
        }
        double det = n * sl2 - sl * sl;
        if (det <= 0)
            continue;
        double a = (n * sxl - sx * sl) / det;
        double b = (sl2 * sx - sl * sxl) / det;
        if (b > 0) { /* the min must not be positive: refit the scale alone */
            b = 0;
            a = sxl / sl2;
        }
        double err = 0;
        for (int i = 0; i < n; i++) {
            double diff = a * L[i] + b - x[i];
            err += diff * diff;
        }
        if (a > 0 && err < best_err) {
            best_err = (float)err;
            best_a = (float)a;
            best_lo = (float)b;
        }
    }
    *a_out = best_a;
    *mn_out = -best_lo;
}

/* Type-0 fit of n values with codes -half..half-1: x ~ a * L. The candidates put the value
 * of largest magnitude at about -half, the end of the range with one more code. */
static float fit_type0(const float *x, int n, int half)
{
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f)
        return 0.0f;
    float best_a = max / -(float)half;
    double best_err = INFINITY;
    for (int step = -FIT_STEPS; step <= FIT_STEPS; step++) {
        float iscale = -((float)half + 0.1f * (float)step) / max;
        double sxl = 0, sl2 = 0;
        int L[QK_K / 16];
        for (int i = 0; i < n; i++) {
            L[i] = quant_clamp(quant_round(x[i] * iscale), -half, half - 1);
            sxl += (double)x[i] * L[i];
            sl2 += (double)L[i] * L[i];
        }
        if (sl2 <= 0)
            continue;
        double a = sxl / sl2, err = 0;
        for (int i = 0; i < n; i++) {
            double diff = a * L[i] - x[i];
            err += diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_a = (float)a;
        }
    }
    return best_a;
}

/* The 6-bit scales and mins of Q4_K/Q5_K into their 12 bytes (the inverse of
 * quant_k_scale_min). */
static void pack_scales_k(const int sc[8], const int m[8], uint8_t out[12])
{
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] |= (uint8_t)sc[j];
            out[j + 4] |= (uint8_t)m[j];
        } else {
            out[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
            out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            out[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* Steps shared by Q4_K and Q5_K: the 8 sub-block fits, their 6-bit scales and mins, and
 * the final codes q[256] in 0..levels-1 against the stored values. */
static void quantize_super_type1(const float *x, int levels, int q[QK_K], uint16_t *d16,
                                 uint16_t *dmin16, uint8_t packed[12])
{
    float a[8], mn[8], max_a = 0.0f, max_mn = 0.0f;
    for (int j = 0; j < 8; j++) {
        fit_type1(x + 32 * j, 32, levels, &a[j], &mn[j]);
        max_a = a[j] > max_a ? a[j] : max_a;
        max_mn = mn[j] > max_mn ? mn[j] : max_mn;
    }
    *d16 = f32_to_f16(max_a / 63.0f);
    *dmin16 = f32_to_f16(max_mn / 63.0f);
    float d = f16_to_f32(*d16), dmin = f16_to_f32(*dmin16);
    int sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = d > 0.0f ? quant_clamp(quant_round(a[j] / d), 0, 63) : 0;
        m[j] = dmin > 0.0f ? quant_clamp(quant_round(mn[j] / dmin), 0, 63) : 0;
        float step = d * (float)sc[j], offset = dmin * (float)m[j];
        for (int i = 0; i < 32; i++) {
            float v = step > 0.0f ? (x[32 * j + i] + offset) / step : 0.0f;
            q[32 * j + i] = quant_clamp(quant_round(v), 0, levels - 1);
        }
    }
    pack_scales_k(sc, m, packed);
}

/* The low nibbles of Q4_K/Q5_K codes into qs (the inverse of unpack_nibbles_k). */
static void pack_nibbles_k(const int q[QK_K], uint8_t qs[QK_K / 2])
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 15) | (q[64 * c + 32 + l] & 15) << 4);
}

static void quantize_row_q4_k(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ4_K b;
        int q[QK_K];
        quantize_super_type1(src + i * QK_K, 16, q, &b.d, &b.dmin, b.scales);
        pack_nibbles_k(q, b.qs);
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

static void quantize_row_q5_k(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ5_K b;
        int q[QK_K];
        quantize_super_type1(src + i * QK_K, 32, q, &b.d, &b.dmin, b.scales);
        pack_nibbles_k(q, b.qs);
        memset(b.qh, 0, sizeof b.qh);
        for (int e = 0; e < QK_K; e++)
            b.qh[e % 32] |= (uint8_t)(((q[e] >> 4) & 1) << (e / 32));
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

static void quantize_row_q6_k(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float a[16], amax = 0.0f;
        for (int s = 0; s < 16; s++) {
            a[s] = fit_type0(x + 16 * s, 16, 32);
            amax = fabsf(a[s]) > amax ? fabsf(a[s]) : amax;
        }
        BlockQ6_K b;
        b.d = f32_to_f16(amax / 127.0f);
        float d = f16_to_f32(b.d);
        int q[QK_K];
        for (int s = 0; s < 16; s++) {
            int sc = d > 0.0f ? quant_clamp(quant_round(a[s] / d), -127, 127) : 0;
            b.scales[s] = (int8_t)sc;
            float step = d * (float)sc;
            for (int l = 0; l < 16; l++) {
                float v = step != 0.0f ? x[16 * s + l] / step : 0.0f;
                q[16 * s + l] = quant_clamp(quant_round(v), -32, 31) + 32;
            }
        }
        for (int h = 0; h < 2; h++) {
            const int *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                b.ql[64 * h + l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
                b.ql[64 * h + l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
                b.qh[32 * h + l] = (uint8_t)(qq[l] >> 4 | (qq[l + 32] >> 4) << 2 |
                                             (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
            }
        }
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

/* The activations of K-quant products, as llama.cpp makes them: iscale = 127 / amax, each
 * code round(x * iscale) (ties to even, quant_round) and d = 1 / iscale. Those are the
 * floats llama.cpp computes; amax / 127 and 1 / d can differ from them in the last bit,
 * and that bit decides how a value that falls on a half rounds. (llama.cpp gives a
 * positive largest value the code -127, iscale = -127 / max: every code and d change
 * sign, and every product and dot is the same float.) Then the sums of each 16 codes. The
 * SIMD quantizers repeat exactly these operations. */
static void quantize_row_q8_k(const float *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float amax = 0.0f;
        for (int e = 0; e < QK_K; e++)
            amax = fabsf(x[e]) > amax ? fabsf(x[e]) : amax;
        BlockQ8_K b;
        float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
        b.d = amax != 0.0f ? 1.0f / iscale : 0.0f;
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                b.qs[16 * s + l] = (int8_t)quant_round(x[16 * s + l] * iscale);
                sum += b.qs[16 * s + l];
            }
            b.bsums[s] = (int16_t)sum;
        }
        memcpy((uint8_t *)dst + i * sizeof b, &b, sizeof b);
    }
}

/* ---- Dot products with Q8_K -----------------------------------------------------------
 * Per super-block, everything inside is integer: the codes times the activations, summed
 * per sub-block, times the sub-block's integer scale. Mins and offsets need only the sum of
 * the activations of each sub-block, which Q8_K carries (bsums):
 *   sum_e (d sc q_e - dmin m) x_e = d sc sum_e q_e x_e - dmin m sum_e x_e.
 * Two float multiplies per super-block apply d (and dmin) and the activation scale. */

static inline BlockQ8_K load_q8_k(const void *row, int64_t i)
{
    BlockQ8_K x;
    memcpy(&x, (const uint8_t *)row + i * sizeof x, sizeof x);
    return x;
}

/* sum over the 16 codes of sub-block s of code * activation */
static inline int sub_dot16(const int *q, const int8_t *x, int s)
{
    int sum = 0;
    for (int l = 0; l < 16; l++)
        sum += q[16 * s + l] * x[16 * s + l];
    return sum;
}

static float dot_q2_k(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ2_K w;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        BlockQ8_K x = load_q8_k(act_row, i);
        int q[QK_K], sc[16], m[16], isum = 0, msum = 0;
        unpack_q2_k(&w, q, sc, m);
        for (int s = 0; s < 16; s++) {
            isum += sc[s] * sub_dot16(q, x.qs, s);
            msum += m[s] * x.bsums[s];
        }
        sum += x.d * (f16_to_f32(w.d) * (float)isum - f16_to_f32(w.dmin) * (float)msum);
    }
    return sum;
}

static float dot_q3_k(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ3_K w;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        BlockQ8_K x = load_q8_k(act_row, i);
        int q[QK_K], sc[16], isum = 0;
        unpack_q3_k(&w, q, sc);
        for (int s = 0; s < 16; s++) /* sum (q - 4) x = sum q x - 4 sum x */
            isum += sc[s] * (sub_dot16(q, x.qs, s) - 4 * x.bsums[s]);
        sum += x.d * f16_to_f32(w.d) * (float)isum;
    }
    return sum;
}

/* Q4_K and Q5_K: sub-block j of 32 is the two 16-sums 2j and 2j+1. */
static float dot_type1_k(const int q[QK_K], const int sc[8], const int m[8], const BlockQ8_K *x,
                         float d, float dmin)
{
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
        isum += sc[j] * (sub_dot16(q, x->qs, 2 * j) + sub_dot16(q, x->qs, 2 * j + 1));
        msum += m[j] * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
    return x->d * (d * (float)isum - dmin * (float)msum);
}

static float dot_q4_k(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ4_K w;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        BlockQ8_K x = load_q8_k(act_row, i);
        int q[QK_K], sc[8], m[8];
        unpack_q4_k(&w, q, sc, m);
        sum += dot_type1_k(q, sc, m, &x, f16_to_f32(w.d), f16_to_f32(w.dmin));
    }
    return sum;
}

static float dot_q5_k(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ5_K w;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        BlockQ8_K x = load_q8_k(act_row, i);
        int q[QK_K], sc[8], m[8];
        unpack_q5_k(&w, q, sc, m);
        sum += dot_type1_k(q, sc, m, &x, f16_to_f32(w.d), f16_to_f32(w.dmin));
    }
    return sum;
}

static float dot_q6_k(int64_t n, const void *w_row, const void *act_row)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        BlockQ6_K w;
        memcpy(&w, (const uint8_t *)w_row + i * sizeof w, sizeof w);
        BlockQ8_K x = load_q8_k(act_row, i);
        int q[QK_K], isum = 0;
        unpack_q6_k(&w, q);
        for (int s = 0; s < 16; s++) /* sum (q - 32) x = sum q x - 32 sum x */
            isum += w.scales[s] * (sub_dot16(q, x.qs, s) - 32 * x.bsums[s]);
        sum += x.d * f16_to_f32(w.d) * (float)isum;
    }
    return sum;
}

/* ---- The formats --------------------------------------------------------------------- */

const QuantFormat quant_format_q2_k = {GGML_TYPE_Q2_K, QK_K, sizeof(BlockQ2_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q2_k, NULL, dot_q2_k};
const QuantFormat quant_format_q3_k = {GGML_TYPE_Q3_K, QK_K, sizeof(BlockQ3_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q3_k, NULL, dot_q3_k};
const QuantFormat quant_format_q4_k = {GGML_TYPE_Q4_K, QK_K, sizeof(BlockQ4_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q4_k, quantize_row_q4_k, dot_q4_k};
const QuantFormat quant_format_q5_k = {GGML_TYPE_Q5_K, QK_K, sizeof(BlockQ5_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q5_k, quantize_row_q5_k, dot_q5_k};
const QuantFormat quant_format_q6_k = {GGML_TYPE_Q6_K, QK_K, sizeof(BlockQ6_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q6_k, quantize_row_q6_k, dot_q6_k};
/* Q8_K is an activation format only: it has no dot product of its own. */
const QuantFormat quant_format_q8_k = {GGML_TYPE_Q8_K, QK_K, sizeof(BlockQ8_K), GGML_TYPE_Q8_K,
                                       dequantize_row_q8_k, quantize_row_q8_k, NULL};
