/* AVX-512 kernels (AVX512F/BW/VL/DQ + VNNI): panels of 4 weight rows x any number of
 * activation rows (quant_impl.h), computed as tiles of 4 x 4 dots, for every weight type;
 * rows kernels for decoding steps of the 4-, 5- and 6-bit formats (one activation row,
 * weights decoded in registers); and the activation quantizers.
 *
 * Three families, one tile loop each:
 *   - F32/F16/BF16 x activations of the same type: 16 weights and 16 activations per
 *     register, converted to float, one FMA per weight row and activation row;
 *   - 32-element blocks x Q8_0 (Q8_1 for Q4_1, Q5_1): two blocks per 512-bit register; the
 *     integer dot product of each block is one vpdpbusd (unsigned weight codes x signed
 *     activations, 4 products summed per 32-bit lane, 8 lanes per block), converted to
 *     float once and multiplied by the block's two scales;
 *   - K-quants x Q8_K: each super-block decoded once per weight row (quant_simd.h), then per
 *     64 weights one vpmaddubsw (pair sums of code x activation) and one vpdpwssd (pair sums
 *     times their sub-block scales, added to 32-bit lanes): integers all the way through
 *     the 256 weights, one float FMA per super-block.
 * Every dot is summed in its own register along the whole row and reduced at the end, so
 * it is computed in the same order for any tile shape. At the end: the conversions of the
 * KV cache's types (F16 both ways, Q8_0 to floats). */
#include <string.h>

#include "quant_impl.h"
#include "quant_simd.h"

/* Sum of the 16 lanes (a fixed tree of adds). */
INLINE TARGET_AVX512 float hsum512(__m512 v)
{
    return _mm512_reduce_add_ps(v);
}

/* One dot, summed from its register, into *o: o = beta * o + dot (o unread when beta is 0). */
INLINE TARGET_AVX512 void store_dot(float *o, float beta, __m512 acc)
{
    float dot = hsum512(acc);
    *o = beta == 0.0f ? dot : beta * *o + dot;
}

/* A tile's dots into out (column c at out + c * ldo), only the n_rows wanted rows (of the
 * R computed). */
INLINE TARGET_AVX512 void tile_store(__m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS], float *out,
                                     int ldo, float beta, int n_rows, int R, int C)
{
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < n_rows && r < R; r++)
            store_dot(out + (size_t)c * ldo + r, beta, acc[c][r]);
}

INLINE TARGET_AVX512 void acc_zero(__m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS], int R, int C)
{
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[c][r] = _mm512_setzero_ps();
}

/* Weights are prefetched this many bytes ahead of where they are read. The hardware
 * prefetchers alone lose track when a thread reads its rows faster than a few lines at a
 * time: measured on this CPU's F32 decoding, 50 GB/s without, 70 GB/s 2 KiB ahead. A
 * prefetch of an address past the end of the weights is harmless (it never faults). */
#define PREFETCH_AHEAD 2048

INLINE TARGET_AVX512 void prefetch_ahead(const uint8_t *p)
{
    _mm_prefetch((const char *)(p + PREFETCH_AHEAD), _MM_HINT_T0);
}

/* Every cache line of `bytes` at p (p already ahead of where the kernel reads). One
 * prefetch per 68-byte pair of Q8_0 blocks would leave a line in 16 to the hardware, which
 * stalls a loop tight enough to wait on memory; so every line is asked for, and a kernel
 * that reads less than a line per step asks for some twice. */
INLINE TARGET_AVX512 void prefetch_span(const uint8_t *p, size_t bytes)
{
    for (size_t line = 0; line < bytes; line += 64)
        _mm_prefetch((const char *)(p + line), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + bytes - 1), _MM_HINT_T0);
}

/* ---- F32, F16, BF16 ------------------------------------------------------------------------ */

/* 16 weights from element k of a row, as floats; `mask` selects the valid ones (a row's
 * tail), the others read as 0. */
INLINE TARGET_AVX512 __m512 f_load(uint32_t type, const uint8_t *row, int64_t k, __mmask16 mask)
{
    switch (type) {
    case GGML_TYPE_F32:
        return _mm512_maskz_loadu_ps(mask, row + 4 * k);
    case GGML_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * k));
    default: /* BF16: the top half of a float */
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * k)), 16));
    }
}

INLINE size_t f_elem_bytes(uint32_t type)
{
    return type == GGML_TYPE_F32 ? 4 : 2;
}

/* 16 weights per row and 16 activations per column at element k: R x C FMAs. */
INLINE TARGET_AVX512 void f_step(uint32_t type, const uint8_t *const rows[QUANT_PANEL_ROWS],
                                 const uint8_t *act, size_t stride, int64_t k, __mmask16 mask,
                                 __m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS], int R, int C)
{
    __m512 w[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        prefetch_ahead(rows[r] + k * f_elem_bytes(type));
        w[r] = f_load(type, rows[r], k, mask);
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        __m512 x = f_load(type, act + c * stride, k, mask);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[c][r] = _mm512_fmadd_ps(w[r], x, acc[c][r]);
    }
}

/* R rows x C columns over n elements (rows and act already at the segment's start). */
INLINE TARGET_AVX512 void tile_f(uint32_t type, int64_t n,
                                 const uint8_t *const rows[QUANT_PANEL_ROWS], const uint8_t *act,
                                 size_t stride, float *out, int ldo, float beta, int n_rows, int R,
                                 int C)
{
    __m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS];
    acc_zero(acc, R, C);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        f_step(type, rows, act, stride, k, 0xffff, acc, R, C);
    if (k < n)
        f_step(type, rows, act, stride, k, (__mmask16)((1u << (n - k)) - 1), acc, R, C);
    tile_store(acc, out, ldo, beta, n_rows, R, C);
}

INLINE TARGET_AVX512 void panel_f(uint32_t type, int64_t n,
                                  const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                  const uint8_t *act, size_t stride, int n_cols, float *out,
                                  int ldo, float beta, int R)
{
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t len = n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT;
        float b = k0 == 0 ? beta : 1.0f;
        const uint8_t *rows[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            rows[r] = (const uint8_t *)w_rows[r] + k0 * f_elem_bytes(type);
        for (int c0 = 0; c0 < n_cols; c0 += QUANT_TILE_COLS) {
            const uint8_t *a = act + c0 * stride + f_elem_bytes(type) * k0;
            float *o = out + (size_t)c0 * ldo;
            switch (n_cols - c0) {
            case 1: tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 1); break;
            case 2: tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 2); break;
            case 3: tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 3); break;
            default: tile_f(type, len, rows, a, stride, o, ldo, b, n_rows, R, 4); break;
            }
        }
    }
}

/* ---- 32-element blocks x Q8_0 / Q8_1 ---------------------------------------------------------
 * Two consecutive blocks fill a register: bytes 0..31 are block b, 32..63 block b+1, for the
 * weight codes and the activations alike, and every float vector holds block b's value in
 * lanes 0..7 and block b+1's in lanes 8..15 (vpdpbusd's lanes 0..7 sum block b's bytes).
 *
 * Weight codes are unsigned (vpdpbusd wants an unsigned and a signed operand), so the
 * type-0 formats, which store q + offset, are corrected by -offset * sum(x):
 *     sum_j d (q_j - offset) dx x_j = d dx (sum_j q_j x_j - offset sum_j x_j).
 * Q8_0's signed weights become unsigned by flipping the top bit (q + 128), offset 128.
 * The sums of x come from one more vpdpbusd against a vector of ones, shared by the rows of
 * the tile. Type-1 formats instead add m s, with s the sum that each Q8_1 block stores,
 * with a second FMA whose s sits in lanes 0 and 8 alone.
 *
 * A pair of blocks of a weight row, decoded: codes, scales (and mins), ready for the tile.
 * Decoding is the costly part for the 4- and 5-bit formats, so with more than one tile of
 * activation rows a segment of each weight row is decoded once into these. */
typedef struct {
    __m512i q;
    __m512 d, m;
} B32Pair;

/* The same f16 field of blocks b and b+1, `span` bytes apart, as 16 floats: the first value
 * in lanes 0..7, the second in lanes 8..15. One load of the 32 (or 64) bytes that hold both,
 * one permutation of 16-bit words, one conversion. The bytes read never leave the pair of
 * blocks (the widest case is Q8_0's 64 of 68), so the last pair of a tensor is safe. */
INLINE TARGET_AVX512 __m512 pair_scales(const uint8_t *p, int span)
{
    short second = (short)(span / 2); /* word index of the second value */
    if (span + 2 <= 32) {
        __m256i idx = _mm256_set_epi16(second, second, second, second, second, second, second,
                                       second, 0, 0, 0, 0, 0, 0, 0, 0);
        return _mm512_cvtph_ps(_mm256_permutexvar_epi16(idx, simd_load256(p)));
    }
    __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, second, second,
                                   second, second, second, second, second, second, 0, 0, 0, 0,
                                   0, 0, 0, 0);
    __m512i words = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(p));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(words));
}

/* Two blocks' 16 bytes of nibbles as 64 codes: [low of b, high of b, low of b+1, high of b+1]
 * (16 bytes each), which is element order. Each 16 bytes is broadcast to two 128-bit
 * lanes and the second copy shifted right by 4. */
INLINE TARGET_AVX512 __m512i nibbles_pair(const uint8_t *qs0, const uint8_t *qs1)
{
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs0));
    v = _mm512_mask_broadcast_i32x4(v, 0xff00, _mm_loadu_si128((const __m128i *)qs1));
    v = _mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(15));
}

/* Adds 16 to the codes whose fifth bit is set: the two blocks' qh words are exactly a
 * 64-bit mask, one bit per byte of the register. */
INLINE TARGET_AVX512 __m512i fifth_bits_pair(__m512i q, const uint8_t *qh0, const uint8_t *qh1)
{
    uint32_t lo, hi;
    memcpy(&lo, qh0, 4);
    memcpy(&hi, qh1, 4);
    __mmask64 set = _cvtu64_mask64((uint64_t)lo | (uint64_t)hi << 32);
    return _mm512_mask_add_epi8(q, set, q, _mm512_set1_epi8(16));
}

INLINE TARGET_AVX512 __m512i bytes_pair(const uint8_t *p0, const uint8_t *p1)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(simd_load256(p0)), simd_load256(p1), 1);
}

/* log2 of the offset of a type-0 format's codes. */
INLINE int b32_offset_shift(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q4_0: return 3; /* q - 8 */
    case GGML_TYPE_Q5_0: return 4; /* q - 16 */
    default: return 7;             /* Q8_0: (q + 128) - 128 */
    }
}

/* Blocks b and b+1 of a row (or of a segment) that has nb blocks; an odd last block is
 * paired with an all-zero block (scales and sum 0: it adds nothing), copied to pad. Q8_1's
 * are the largest blocks, weights or activations. */
enum { B32_PAD_BYTES = 2 * sizeof(BlockQ8_1) };

INLINE void b32_blocks(const uint8_t *row, int64_t b, int64_t nb, size_t bytes,
                       uint8_t pad[B32_PAD_BYTES], const uint8_t **b0, const uint8_t **b1)
{
    *b0 = row + b * bytes;
    *b1 = *b0 + bytes;
    if (b + 1 == nb) {
        memcpy(pad, *b0, bytes);
        memset(pad + bytes, 0, bytes);
        *b0 = pad;
        *b1 = pad + bytes;
    }
}

/* Pair p (blocks 2p, 2p+1) of a weight row with nb blocks. */
INLINE TARGET_AVX512 B32Pair b32_decode(uint32_t type, const uint8_t *row, int64_t p, int64_t nb)
{
    uint8_t pad[B32_PAD_BYTES];
    const uint8_t *b0, *b1;
    b32_blocks(row, 2 * p, nb, b32_block_bytes(type), pad, &b0, &b1);
    B32Pair w;
    w.m = _mm512_setzero_ps();
    switch (type) {
    case GGML_TYPE_Q4_0:
        w.q = nibbles_pair(b0 + offsetof(BlockQ4_0, qs), b1 + offsetof(BlockQ4_0, qs));
        break;
    case GGML_TYPE_Q4_1:
        w.q = nibbles_pair(b0 + offsetof(BlockQ4_1, qs), b1 + offsetof(BlockQ4_1, qs));
        w.m = pair_scales(b0 + offsetof(BlockQ4_1, m), sizeof(BlockQ4_1));
        break;
    case GGML_TYPE_Q5_0:
        w.q = nibbles_pair(b0 + offsetof(BlockQ5_0, qs), b1 + offsetof(BlockQ5_0, qs));
        w.q = fifth_bits_pair(w.q, b0 + offsetof(BlockQ5_0, qh), b1 + offsetof(BlockQ5_0, qh));
        break;
    case GGML_TYPE_Q5_1:
        w.q = nibbles_pair(b0 + offsetof(BlockQ5_1, qs), b1 + offsetof(BlockQ5_1, qs));
        w.q = fifth_bits_pair(w.q, b0 + offsetof(BlockQ5_1, qh), b1 + offsetof(BlockQ5_1, qh));
        w.m = pair_scales(b0 + offsetof(BlockQ5_1, m), sizeof(BlockQ5_1));
        break;
    default: /* Q8_0 */
        w.q =
            _mm512_xor_si512(bytes_pair(b0 + offsetof(BlockQ8_0, qs), b1 + offsetof(BlockQ8_0, qs)),
                             _mm512_set1_epi8((char)0x80));
        break;
    }
    w.d = pair_scales(b0, (int)b32_block_bytes(type)); /* d is every format's first field */
    return w;
}

/* Pair p of an activation row (Q8_0 or Q8_1, nb blocks), ready for every weight row that
 * meets it: the codes, their scales, and the term that does not depend on the weights'
 * codes: for type-0 formats the start of each dot, -offset * sum(x) (offset times the 4
 * activations of each lane), for type-1 formats the two blocks' stored sums, in lanes 0 and
 * 8 (what the weights' minimums multiply). */
typedef struct {
    __m512i x, base;
    __m512 dx, s;
} B32Act;

INLINE TARGET_AVX512 B32Act b32_act(uint32_t type, const uint8_t *act, int64_t p, int64_t nb)
{
    const __m512i zero = _mm512_setzero_si512();
    const size_t xb = b32_act_bytes(type);
    uint8_t pad[B32_PAD_BYTES];
    const uint8_t *x0, *x1;
    b32_blocks(act, 2 * p, nb, xb, pad, &x0, &x1);
    B32Act a;
    a.x = bytes_pair(x0 + b32_act_qs_offset(type), x1 + b32_act_qs_offset(type));
    a.dx = pair_scales(x0, (int)xb); /* d is the first field of both formats */
    if (b32_is_type1(type)) {
        a.s = _mm512_maskz_mov_ps(0x0101, pair_scales(x0 + offsetof(BlockQ8_1, s), (int)xb));
        a.base = zero;
    } else {
        __m512i offset = _mm512_set1_epi8((char)(1 << b32_offset_shift(type)));
        a.base = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, offset, a.x));
        a.s = _mm512_setzero_ps();
    }
    return a;
}

/* One weight row's pair against one activation row's: the codes' products added to the
 * base, to float, times both scales, into acc (and the minimum times the sum). */
INLINE TARGET_AVX512 __m512 b32_dot(uint32_t type, B32Pair w, const B32Act *a, __m512 acc)
{
    __m512i t = _mm512_dpbusd_epi32(a->base, w.q, a->x);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(w.d, a->dx), acc);
    return b32_is_type1(type) ? _mm512_fmadd_ps(w.m, a->s, acc) : acc;
}

/* Pair p of R decoded weight rows against C activation rows (Q8_0 or Q8_1, nb blocks
 * each). */
INLINE TARGET_AVX512 void b32_step(uint32_t type, const B32Pair w[QUANT_PANEL_ROWS],
                                   const uint8_t *act, size_t stride, int64_t p, int64_t nb,
                                   __m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS], int R, int C)
{
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        B32Act a = b32_act(type, act + c * stride, p, nb);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[c][r] = b32_dot(type, w[r], &a, acc[c][r]);
    }
}

/* C activation rows against R weight rows over a segment of nb blocks: decoding as it goes
 * (dec == NULL) or reading the segment's decoded pairs (dec[r][p]). */
INLINE TARGET_AVX512 void tile_b32(uint32_t type, int64_t nb,
                                   const uint8_t *const rows[QUANT_PANEL_ROWS],
                                   B32Pair (*dec)[QUANT_SEGMENT / 64], const uint8_t *act,
                                   size_t stride, float *out, int ldo, float beta, int n_rows,
                                   int R, int C)
{
    __m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS];
    acc_zero(acc, R, C);
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        B32Pair w[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            if (!dec)
                prefetch_ahead(rows[r] + 2 * p * b32_block_bytes(type));
            w[r] = dec ? dec[r][p] : b32_decode(type, rows[r], p, nb);
        }
        b32_step(type, w, act, stride, p, nb, acc, R, C);
    }
    tile_store(acc, out, ldo, beta, n_rows, R, C);
}

/* Where a thread reads next, as a distance to prefetch at: with K in one segment the rows
 * follow each other in memory and the stream runs on (PREFETCH_AHEAD); with several
 * segments each row is read a segment at a time, and what comes next is the same place in
 * the next row. */
INLINE ptrdiff_t rows_prefetch_distance(int64_t n, size_t w_stride)
{
    return n > QUANT_SEGMENT ? (ptrdiff_t)w_stride : PREFETCH_AHEAD;
}

/* One activation row against n_rows rows of a 32-element format (QuantRowsFn): the
 * activation's pairs made ready once per segment (B32Act), then every row's pairs decoded
 * and met with them, with the operations a tile uses. */
INLINE TARGET_AVX512 void rows_b32(uint32_t type, int64_t n, const uint8_t *w, size_t w_stride,
                                   int n_rows, const uint8_t *act, float *out, float beta)
{
    const size_t wb = b32_block_bytes(type), xb = b32_act_bytes(type);
    const ptrdiff_t ahead = rows_prefetch_distance(n, w_stride);
    B32Act acts[QUANT_SEGMENT / 64];
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t nb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK, np = (nb + 1) / 2;
        float b = k0 == 0 ? beta : 1.0f;
        for (int64_t p = 0; p < np; p++)
            acts[p] = b32_act(type, act + k0 / QK * xb, p, nb);
        for (int r = 0; r < n_rows; r++) {
            const uint8_t *row = w + r * w_stride + k0 / QK * wb;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t p = 0; p < np; p++) {
                prefetch_span(row + 2 * p * wb + ahead, 2 * wb);
                acc = b32_dot(type, b32_decode(type, row, p, nb), &acts[p], acc);
            }
            store_dot(out + r, b, acc);
        }
    }
}

INLINE TARGET_AVX512 void panel_b32(uint32_t type, int64_t n,
                                    const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                    const uint8_t *act, size_t stride, int n_cols, float *out,
                                    int ldo, float beta, int R)
{
    const size_t wb = b32_block_bytes(type), xb = b32_act_bytes(type);
    B32Pair dec[QUANT_PANEL_ROWS][QUANT_SEGMENT / 64];
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t nb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK;
        float b = k0 == 0 ? beta : 1.0f;
        const uint8_t *rows[QUANT_PANEL_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            rows[r] = (const uint8_t *)w_rows[r] + k0 / QK * wb;
        /* Decoded once into dec when more than one tile reads the segment; Q8_0's decoding
         * (a sign flip and the scales) costs less than storing and reloading its result, so
         * a Q8_0 panel decodes as it goes up to two tiles: the 5 to 8 rows of a step of
         * several sequences (measured 7-9% less time at 8; from 3 tiles on, as in a prompt,
         * the buffer wins again). */
        bool decoded = n_cols > (type == GGML_TYPE_Q8_0 ? 2 : 1) * QUANT_TILE_COLS;
        for (int r = 0; decoded && r < R; r++)
            for (int64_t p = 0; p < (nb + 1) / 2; p++) {
                prefetch_ahead(rows[r] + 2 * p * wb);
                dec[r][p] = b32_decode(type, rows[r], p, nb);
            }
        for (int c0 = 0; c0 < n_cols; c0 += QUANT_TILE_COLS) {
            const uint8_t *a = act + c0 * stride + k0 / QK * xb;
            float *o = out + (size_t)c0 * ldo;
            B32Pair(*d)[QUANT_SEGMENT / 64] = decoded ? dec : NULL;
            switch (n_cols - c0) {
            case 1: tile_b32(type, nb, rows, d, a, stride, o, ldo, b, n_rows, R, 1); break;
            case 2: tile_b32(type, nb, rows, d, a, stride, o, ldo, b, n_rows, R, 2); break;
            case 3: tile_b32(type, nb, rows, d, a, stride, o, ldo, b, n_rows, R, 3); break;
            default: tile_b32(type, nb, rows, d, a, stride, o, ldo, b, n_rows, R, 4); break;
            }
        }
    }
}

/* ---- K-quants x Q8_K ----------------------------------------------------------------------------
 * Per super-block: the R weight rows decoded (KDecoded, quant_simd.h) once per segment;
 * then for each activation row, 4 chunks of 64: vpmaddubsw gives 32 pair sums code x
 * activation (int16), vpdpwssd multiplies each by its sub-block scale and adds pairs of
 * them into 16 int32 lanes. At the end of the super-block the lanes go to float, times
 * d * dx, and the bias term dmin * dx * sum_s bias[s] bsums[s] (one vpmaddwd of 16 pairs)
 * is subtracted. */

/* Unlike the other tiles, these loops are left to the compiler: unrolled by pragmas, the
 * 4 x 4 tile's isum[] and acc[] need more registers than there are, and prompts of Q4_K_M
 * ran 16% slower (pp128, 2 threads). */
INLINE TARGET_AVX512 void tile_k(int64_t n_sb, KDecoded (*dec)[QUANT_SEGMENT / QK_K],
                                 const uint8_t *act, size_t stride, float *out, int ldo,
                                 float beta, int n_rows, int R, int C)
{
    __m512 acc[QUANT_TILE_COLS][QUANT_PANEL_ROWS];
    acc_zero(acc, R, C);
    for (int64_t sb = 0; sb < n_sb; sb++) {
        for (int c = 0; c < C; c++) {
            const uint8_t *x = act + c * stride + sb * sizeof(BlockQ8_K);
            float dx = simd_f32_load(x + offsetof(BlockQ8_K, d));
            __m512i isum[QUANT_PANEL_ROWS];
            for (int r = 0; r < R; r++)
                isum[r] = _mm512_setzero_si512();
            for (int ch = 0; ch < 4; ch++) {
                __m512i xv = _mm512_loadu_si512(x + offsetof(BlockQ8_K, qs) + 64 * ch);
                for (int r = 0; r < R; r++) {
                    const KDecoded *w = &dec[r][sb];
                    __m512i pairs = _mm512_maddubs_epi16(_mm512_loadu_si512(w->q + 64 * ch), xv);
                    isum[r] =
                        _mm512_dpwssd_epi32(isum[r], pairs, _mm512_loadu_si512(w->scale + 32 * ch));
                }
            }
            __m256i bsums = simd_load256(x + offsetof(BlockQ8_K, bsums));
            for (int r = 0; r < R; r++) {
                const KDecoded *w = &dec[r][sb];
                __m256i bias = _mm256_madd_epi16(simd_load256(w->bias), bsums);
                acc[c][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]),
                                            _mm512_set1_ps(w->d * dx), acc[c][r]);
                acc[c][r] = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(bias)),
                                            _mm512_set1_ps(-w->dmin * dx), acc[c][r]);
            }
        }
    }
    tile_store(acc, out, ldo, beta, n_rows, R, C);
}

/* ---- One activation row (decoding): each super-block decoded in registers as it is
 * multiplied, 64 weights at a time, rows one after the other (one sequential stream of
 * weights per thread, as rows_b32). The integers are the tile's (the same codes,
 * pair scales and bias), added in the same lanes, and the float steps are the tile's, so a
 * row's dot has the tile's bits. */

/* The 32 pair scales of chunk ch (pairs 32ch..32ch+31, weights 64ch..64ch+63) from the
 * sub-block scales: pair j belongs to sub-block 4ch + j/8 (16 weights) or 2ch + j/16 (32
 * weights). One permutation of words. */
INLINE TARGET_AVX512 __m512i k_chunk_scales(uint32_t type, __m256i sc, int ch)
{
    const __m512i pair = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                          17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                          1, 0);
    bool sub16 = kdec_has_sub16(type);
    __m512i sub_block = _mm512_srli_epi16(pair, sub16 ? 3 : 4); /* within the chunk */
    __m512i idx = _mm512_add_epi16(sub_block, _mm512_set1_epi16((short)((sub16 ? 4 : 2) * ch)));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc));
}

/* One super-block of a weight row against one of the activation row, into acc. */
INLINE TARGET_AVX512 __m512 k_dot_in_registers(uint32_t type, const uint8_t *block,
                                               const uint8_t *x, __m512 acc)
{
    KScales ks = kdec_scales(type, block);
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int ch = 0; ch < 4; ch++) {
        __m256i low = kdec_codes32(type, block, 2 * ch);
        __m256i high = kdec_codes32(type, block, 2 * ch + 1);
        __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
        __m512i xv = _mm512_loadu_si512(x + offsetof(BlockQ8_K, qs) + 64 * ch);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes, xv),
                                   k_chunk_scales(type, ks.sc, ch));
    }
    float dx = simd_f32_load(x + offsetof(BlockQ8_K, d));
    __m256i bias = _mm256_madd_epi16(ks.bias, simd_load256(x + offsetof(BlockQ8_K, bsums)));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(ks.d * dx), acc);
    return _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(bias)),
                           _mm512_set1_ps(-ks.dmin * dx), acc);
}

/* One activation row against n_rows rows of a K-quant (QuantRowsFn). */
INLINE TARGET_AVX512 void rows_k(uint32_t type, int64_t n, const uint8_t *w, size_t w_stride,
                                 int n_rows, const uint8_t *act, float *out, float beta)
{
    const size_t wb = kdec_block_bytes(type);
    const ptrdiff_t ahead = rows_prefetch_distance(n, w_stride);
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t n_sb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK_K;
        float b = k0 == 0 ? beta : 1.0f;
        const uint8_t *x = act + k0 / QK_K * sizeof(BlockQ8_K);
        for (int r = 0; r < n_rows; r++) {
            const uint8_t *row = w + r * w_stride + k0 / QK_K * wb;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t sb = 0; sb < n_sb; sb++) {
                const uint8_t *block = row + sb * wb;
                prefetch_span(block + ahead, wb);
                acc = k_dot_in_registers(type, block, x + sb * sizeof(BlockQ8_K), acc);
            }
            store_dot(out + r, b, acc);
        }
    }
}

INLINE TARGET_AVX512 void panel_k(uint32_t type, int64_t n,
                                  const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                                  const uint8_t *act, size_t stride, int n_cols, float *out,
                                  int ldo, float beta, int R)
{
    const size_t wb = kdec_block_bytes(type);
    KDecoded dec[QUANT_PANEL_ROWS][QUANT_SEGMENT / QK_K];
    for (int64_t k0 = 0; k0 < n; k0 += QUANT_SEGMENT) {
        int64_t n_sb = (n - k0 < QUANT_SEGMENT ? n - k0 : QUANT_SEGMENT) / QK_K;
        float b = k0 == 0 ? beta : 1.0f;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            for (int64_t sb = 0; sb < n_sb; sb++) {
                const uint8_t *block = (const uint8_t *)w_rows[r] + (k0 / QK_K + sb) * wb;
                prefetch_span(block + PREFETCH_AHEAD, wb);
                kdec_block(type, block, &dec[r][sb]);
            }
        for (int c0 = 0; c0 < n_cols; c0 += QUANT_TILE_COLS) {
            const uint8_t *a = act + c0 * stride + k0 / QK_K * sizeof(BlockQ8_K);
            float *o = out + (size_t)c0 * ldo;
            switch (n_cols - c0) {
            case 1: tile_k(n_sb, dec, a, stride, o, ldo, b, n_rows, R, 1); break;
            case 2: tile_k(n_sb, dec, a, stride, o, ldo, b, n_rows, R, 2); break;
            case 3: tile_k(n_sb, dec, a, stride, o, ldo, b, n_rows, R, 3); break;
            default: tile_k(n_sb, dec, a, stride, o, ldo, b, n_rows, R, 4); break;
            }
        }
    }
}

/* ---- Entry points: one function per type ------------------------------------------------- */

INLINE TARGET_AVX512 void panel_rows(uint32_t type, int64_t n,
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

/* With one activation row (decoding) there is little to share between weight rows, so
 * they are taken one after the other: each thread then reads its share of W as one
 * sequential stream, which the hardware prefetchers follow best (a tile's four rows are four
 * streams that restart at every panel: measured 50 GB/s against 40 for F32). F32/F16/BF16
 * rows do the same for small batches, where streaming decides (N = 4: twice as fast), since
 * they have nothing to decode; and so do Q8_0's 2 or 3 rows (a decoding step of 2 or 3
 * sequences), whose decoding is a sign flip: 1.3x and 1.5x less time per step than tiles
 * of four weight rows by 2 or 3 (1 thread, the Q8_0 bench model); from 4 rows on the tiles
 * win. A row is summed exactly as in a tile of four. (A decoding
 * step of the 4-, 5- and 6-bit formats runs the rows kernels above instead; this path
 * serves them when the driver hands a panel one column, as quant_vec_dot does.) */
INLINE TARGET_AVX512 void panel_any(uint32_t type, int64_t n,
                                    const void *const rows[QUANT_PANEL_ROWS], int n_rows,
                                    const void *act, size_t stride, int n_cols, float *out, int ldo,
                                    float beta)
{
    bool plain = type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
    bool narrow_q8_0 = type == GGML_TYPE_Q8_0 && n_cols < QUANT_TILE_COLS;
    if (n_rows == 1 || n_cols == 1 || (plain && n_cols < 16) || narrow_q8_0) {
        for (int r = 0; r < n_rows; r++) {
            const void *row[QUANT_PANEL_ROWS] = {rows[r], rows[r], rows[r], rows[r]};
            panel_rows(type, n, row, 1, act, stride, n_cols, out + r, ldo, beta, 1);
        }
        return;
    }
    panel_rows(type, n, rows, n_rows, act, stride, n_cols, out, ldo, beta, QUANT_PANEL_ROWS);
}

#define DEFINE_PANEL(name, type)                                                            \
    static TARGET_AVX512 void name(int64_t n, const void *const rows[QUANT_PANEL_ROWS],     \
                                   int n_rows, const void *act, size_t stride, int n_cols,  \
                                   float *out, int ldo, float beta)                         \
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

#define DEFINE_ROWS(name, family, type)                                                      \
    static TARGET_AVX512 void name(int64_t n, const void *w, size_t w_stride, int n_rows,   \
                                   const void *act, float *out, float beta)                 \
    {                                                                                       \
        family(type, n, w, w_stride, n_rows, act, out, beta);                               \
    }

DEFINE_ROWS(rows_q4_0, rows_b32, GGML_TYPE_Q4_0)
DEFINE_ROWS(rows_q4_1, rows_b32, GGML_TYPE_Q4_1)
DEFINE_ROWS(rows_q5_0, rows_b32, GGML_TYPE_Q5_0)
DEFINE_ROWS(rows_q5_1, rows_b32, GGML_TYPE_Q5_1)
DEFINE_ROWS(rows_q2_k, rows_k, GGML_TYPE_Q2_K)
DEFINE_ROWS(rows_q3_k, rows_k, GGML_TYPE_Q3_K)
DEFINE_ROWS(rows_q4_k, rows_k, GGML_TYPE_Q4_K)
DEFINE_ROWS(rows_q5_k, rows_k, GGML_TYPE_Q5_K)
DEFINE_ROWS(rows_q6_k, rows_k, GGML_TYPE_Q6_K)

/* F32, F16, BF16 and Q8_0 have nothing to decode: their panels of one column already read
 * at the memory's speed, and a rows kernel measured no faster (Q8_0: 5-10% slower). */
QuantRowsFn *quant_avx512_rows(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q4_0: return rows_q4_0;
    case GGML_TYPE_Q4_1: return rows_q4_1;
    case GGML_TYPE_Q5_0: return rows_q5_0;
    case GGML_TYPE_Q5_1: return rows_q5_1;
    case GGML_TYPE_Q2_K: return rows_q2_k;
    case GGML_TYPE_Q3_K: return rows_q3_k;
    case GGML_TYPE_Q4_K: return rows_q4_k;
    case GGML_TYPE_Q5_K: return rows_q5_k;
    case GGML_TYPE_Q6_K: return rows_q6_k;
    default: return NULL;
    }
}

QuantPanelFn *quant_avx512_panel(uint32_t type)
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

/* ---- Activation quantizers -----------------------------------------------------------------
 * The reference's operations, 16 at a time: the largest magnitude (max is exact in any
 * order), the scale 127 / amax, a multiply and a round-to-nearest-even conversion; the
 * bytes are the reference's exactly (tests compare them; quant_q32.c and quant_kquants.c
 * say why each reciprocal is the float it is). */

/* q = round(x * id) for 16 floats, as 16 bytes. */
INLINE TARGET_AVX512 __m128i quantize16(__m512 x, __m512 id)
{
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x, id)));
}

INLINE TARGET_AVX512 float absmax(const float *x, int n)
{
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16)
        m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    return _mm512_reduce_max_ps(m);
}

/* One block of 32 activations as quant_q32.c's quantize_activation_block codes it: the
 * codes to qs, the unrounded d returned. */
INLINE TARGET_AVX512 float quantize_activation_block(const float *x, uint8_t *qs)
{
    float amax = absmax(x, QK);
    __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    _mm_storeu_si128((__m128i *)qs, quantize16(_mm512_loadu_ps(x), id));
    _mm_storeu_si128((__m128i *)(qs + 16), quantize16(_mm512_loadu_ps(x + 16), id));
    return amax / 127.0f;
}

DEFINE_Q8_0_Q8_1_QUANTIZERS(TARGET_AVX512, quantize_row_q8_0_avx512, quantize_row_q8_1_avx512)

static TARGET_AVX512 void quantize_row_q8_k_avx512(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / QK_K; i++, out += sizeof(BlockQ8_K)) {
        const float *x = src + i * QK_K;
        float amax = absmax(x, QK_K);
        float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
        float d = amax != 0.0f ? 1.0f / iscale : 0.0f;
        __m512 id = _mm512_set1_ps(iscale);
        memcpy(out + offsetof(BlockQ8_K, d), &d, 4);
        int16_t bsums[16];
        for (int s = 0; s < 16; s++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * s), id));
            _mm_storeu_si128((__m128i *)(out + offsetof(BlockQ8_K, qs) + 16 * s),
                             _mm512_cvtepi32_epi8(q));
            bsums[s] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        memcpy(out + offsetof(BlockQ8_K, bsums), bsums, sizeof bsums);
    }
}

/* ---- The KV cache's types --------------------------------------------------------------------
 * vcvtps2ph (rounding to nearest even) and vcvtph2ps convert as f16.h does, subnormals,
 * infinities and NaNs included; Q8_0 goes back to floats as d * q, one multiply per value as
 * in the reference. Rows of any length: the last group of 16 is masked. */

INLINE __mmask16 mask_first(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

static TARGET_AVX512 void quantize_row_f16_avx512(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask_first(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(out + 2 * i, m, h);
    }
}

static TARGET_AVX512 void dequantize_rows_f16_avx512(const void *src, size_t src_stride,
                                                     float *dst, int n_rows, int64_t n)
{
    for (int r = 0; r < n_rows; r++, dst += n) {
        const uint8_t *in = (const uint8_t *)src + (size_t)r * src_stride;
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = mask_first(n - i);
            _mm512_mask_storeu_ps(dst + i, m,
                                  _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, in + 2 * i)));
        }
    }
}

static TARGET_AVX512 void dequantize_rows_q8_0_avx512(const void *src, size_t src_stride,
                                                      float *dst, int n_rows, int64_t n)
{
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *block = (const uint8_t *)src + (size_t)r * src_stride;
        for (int64_t i = 0; i < n; i += QK, block += sizeof(BlockQ8_0), dst += QK) {
            uint16_t d16;
            memcpy(&d16, block + offsetof(BlockQ8_0, d), 2);
            __m512 d = _mm512_set1_ps(_cvtsh_ss(d16));
            for (int half = 0; half < 2; half++) {
                __m128i q = _mm_loadu_si128(
                    (const __m128i *)(block + offsetof(BlockQ8_0, qs) + 16 * half));
                _mm512_storeu_ps(dst + 16 * half,
                                 _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
            }
        }
    }
}

QuantQuantizeFn *quant_avx512_quantizer(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q8_0: return quantize_row_q8_0_avx512;
    case GGML_TYPE_Q8_1: return quantize_row_q8_1_avx512;
    case GGML_TYPE_Q8_K: return quantize_row_q8_k_avx512;
    case GGML_TYPE_F16: return quantize_row_f16_avx512;
    default: return NULL;
    }
}

QuantDequantizeRowsFn *quant_avx512_dequantizer(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F16: return dequantize_rows_f16_avx512;
    case GGML_TYPE_Q8_0: return dequantize_rows_q8_0_avx512;
    default: return NULL;
    }
}
