/* The quantized block formats, byte for byte as ggml lays them out (they are facts of the
 * GGUF format: a file written by llama.cpp must decode here, and the other way round).
 * Internal to the quant module and its tests; quant.h is the public face.
 *
 * Every struct below is exactly the block's bytes: only uint8_t/int8_t arrays and 16-bit
 * fields at even offsets, so the compiler adds no padding (the static_asserts check it)
 * and a block can be copied in and out of a file with memcpy. The code never casts file
 * bytes to a block pointer (a row may start at any byte, and the bytes have no block type):
 * the reference code copies each block into a local struct with memcpy, which compilers
 * turn into plain loads, and the SIMD kernels use unaligned loads at the fields' offsets.
 * f16 fields are IEEE binary16 bits (f16.h converts them).
 *
 * Two families:
 *   - 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): one f16 scale d per block, and for
 *     the "_1" types a minimum m. "type-0": w = d * q (q centred by an offset);
 *     "type-1": w = d * q + m.
 *   - K-quants, 256-element super-blocks (Q2_K .. Q6_K): the super-block is cut into
 *     sub-blocks of 16 or 32 elements, each with its own small integer scale (and min),
 *     and those are scaled by one f16 d (and dmin) per super-block. The 8-bit sub-block
 *     scales cost far less than an f16 per 32 weights, which is how Q4_K gets 4.5 bits per
 *     weight with 32-element sub-blocks and better accuracy than Q4_0.
 *
 * Q8_0, Q8_1 and Q8_K are the activation formats: 8-bit codes with one scale per 32
 * (Q8_0, and Q8_1 with the block's sum for the "_1" types' minimum) or per 256 (Q8_K, with
 * the sums of each 16 codes, which the K-quants' mins and offsets need; see quant_kquants.c). */
#ifndef QUILL_QUANT_BLOCKS_H
#define QUILL_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* Elements per block (ggml's QK and QK_K). */
enum { QK = 32, QK_K = 256 };

/* Q4_0, 18 bytes, 4.5 bits per weight.
 *
 *   byte 0       2                                              18
 *        +-------+----------------------------------------------+
 *        | d f16 | qs[16]: qs[j] = q[j] | q[j+16] << 4          |
 *        +-------+----------------------------------------------+
 *   w[j] = d * (q[j] - 8),  q in 0..15
 *
 * The first 16 weights sit in the low nibbles and the last 16 in the high nibbles, so a
 * SIMD kernel gets weights 0..15 with one AND and 16..31 with one shift. */
typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} BlockQ4_0;

/* Q4_1, 20 bytes, 5 bits per weight: Q4_0 with a minimum instead of a fixed offset.
 *
 *   byte 0       2       4                                      20
 *        +-------+-------+--------------------------------------+
 *        | d f16 | m f16 | qs[16]: q[j] | q[j+16] << 4          |
 *        +-------+-------+--------------------------------------+
 *   w[j] = d * q[j] + m,  q in 0..15 */
typedef struct {
    uint16_t d, m;
    uint8_t qs[QK / 2];
} BlockQ4_1;

/* Q5_0, 22 bytes, 5.5 bits per weight: Q4_0 plus a fifth bit per weight.
 *
 *   byte 0       2              6                               22
 *        +-------+--------------+-------------------------------+
 *        | d f16 | qh[4]        | qs[16]: low 4 bits as Q4_0    |
 *        +-------+--------------+-------------------------------+
 *   qh read as a little-endian uint32: bit j is bit 4 of q[j]
 *   w[j] = d * (q[j] - 16),  q in 0..31 */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} BlockQ5_0;

/* Q5_1, 24 bytes, 6 bits per weight: Q5_0's bits with Q4_1's minimum.
 *
 *   byte 0       2       4      8                               24
 *        +-------+-------+------+-------------------------------+
 *        | d f16 | m f16 | qh[4]| qs[16]                        |
 *        +-------+-------+------+-------------------------------+
 *   w[j] = d * q[j] + m,  q in 0..31 */
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} BlockQ5_1;

/* Q8_0, 34 bytes, 8.5 bits per weight; also the activations of Q4_0, Q5_0 and Q8_0.
 *
 *   byte 0       2                                              34
 *        +-------+----------------------------------------------+
 *        | d f16 | qs[32] int8                                  |
 *        +-------+----------------------------------------------+
 *   w[j] = d * qs[j],  qs in -127..127 */
typedef struct {
    uint16_t d;
    int8_t qs[QK];
} BlockQ8_0;

/* Q8_1, 36 bytes: the activations of Q4_1 and Q5_1 (never stored in a file). Q8_0 plus
 * the block's sum, which those formats' minimum multiplies.
 *
 *   byte 0       2       4                                      36
 *        +-------+-------+--------------------------------------+
 *        | d f16 | s f16 | qs[32] int8                          |
 *        +-------+-------+--------------------------------------+
 *   x[j] = d * qs[j],  s = d * (qs[0] + ... + qs[31])
 *   s is computed from the unrounded d and then rounded to f16 itself, so it is close to,
 *   but not exactly, the sum of the x[j]: the dot products use s as it is stored. */
typedef struct {
    uint16_t d, s;
    int8_t qs[QK];
} BlockQ8_1;

/* Q2_K, 84 bytes, 2.625 bits per weight. 16 sub-blocks of 16; 4-bit scale and min each.
 *
 *   byte 0             16                                 80      82        84
 *        +-------------+----------------------------------+-------+---------+
 *        | scales[16]  | qs[64]: 2 bits per weight        | d f16 | dmin f16|
 *        +-------------+----------------------------------+-------+---------+
 *   scales[s] = sc | m << 4 for sub-block s (weights 16s .. 16s+15)
 *   weight e = 128h + 32k + l (h < 2, k < 4, l < 32) is bits 2k..2k+1 of qs[32h + l]
 *   w = d * sc * q - dmin * m,  q in 0..3 */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} BlockQ2_K;

/* Q3_K, 110 bytes, 3.4375 bits per weight. 16 sub-blocks of 16; signed 6-bit scales.
 *
 *   byte 0          32                   96             108     110
 *        +----------+--------------------+--------------+-------+
 *        | hmask[32]| qs[64]: low 2 bits | scales[12]   | d f16 |
 *        +----------+--------------------+--------------+-------+
 *   low 2 bits of weight e: as Q2_K (e = 128h + 32k + l: bits 2k of qs[32h + l])
 *   high bit of weight e = 32i + l (i < 8, l < 32): bit i of hmask[l]
 *   scale s (6 bits, stored with +32): low 4 bits in scales[s] (s < 8) or the high nibble
 *     of scales[s - 8]; top 2 bits are bits 2*(s/4) .. +1 of scales[8 + s%4]
 *   w = d * (scale - 32) * (q - 4),  q in 0..7 */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} BlockQ3_K;

/* Q4_K, 144 bytes, 4.5 bits per weight. 8 sub-blocks of 32; 6-bit scales and mins.
 *
 *   byte 0       2          4            16                                   144
 *        +-------+----------+------------+-------------------------------------+
 *        | d f16 | dmin f16 | scales[12] | qs[128]: 4 bits per weight          |
 *        +-------+----------+------------+-------------------------------------+
 *   sub-block j (weights 32j .. 32j+31), in chunks c of 64 weights (c < 4):
 *     weights 64c + l      are the low nibbles of qs[32c + l]   (sub-block 2c)
 *     weights 64c + 32 + l are the high nibbles of qs[32c + l]  (sub-block 2c+1)
 *   the 8 scales sc and 8 mins m, 6 bits each, packed in 12 bytes (quant_k_scale_min):
 *     j < 4:  sc = scales[j] & 63,   m = scales[j+4] & 63
 *     j >= 4: sc = scales[j+4] & 15 | (scales[j-4] >> 6) << 4,
 *             m  = scales[j+4] >> 4 | (scales[j] >> 6) << 4
 *   w = d * sc * q - dmin * m,  q in 0..15 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} BlockQ4_K;

/* Q5_K, 176 bytes, 5.5 bits per weight: Q4_K plus a fifth bit per weight.
 *
 *   byte 0       2          4            16          48                       176
 *        +-------+----------+------------+-----------+-------------------------+
 *        | d f16 | dmin f16 | scales[12] | qh[32]    | qs[128]: low 4 bits     |
 *        +-------+----------+------------+-----------+-------------------------+
 *   low 4 bits and scales as Q4_K; bit 4 of weight 32j + l is bit j of qh[l]
 *   w = d * sc * q - dmin * m,  q in 0..31 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} BlockQ5_K;

/* Q6_K, 210 bytes, 6.5625 bits per weight. 16 sub-blocks of 16; signed 8-bit scales.
 *
 *   byte 0                   128             192          208     210
 *        +-------------------+---------------+------------+-------+
 *        | ql[128]: low 4    | qh[64]: top 2 | scales[16] | d f16 |
 *        +-------------------+---------------+------------+-------+
 *   in each half h of 128 weights, for l < 32, with L = ql + 64h and H = qh[32h + l]:
 *     weight 128h + l       = L[l]      & 15 | (H >> 0 & 3) << 4
 *     weight 128h + 32 + l  = L[l + 32] & 15 | (H >> 2 & 3) << 4
 *     weight 128h + 64 + l  = L[l]      >> 4 | (H >> 4 & 3) << 4
 *     weight 128h + 96 + l  = L[l + 32] >> 4 | (H >> 6 & 3) << 4
 *   w = d * scales[e / 16] * (q - 32),  q in 0..63, scales int8 */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} BlockQ6_K;

/* Q8_K, 292 bytes: the activations of a K-quant dot product (never stored in a file).
 *
 *   byte 0          4                                   260                292
 *        +----------+-----------------------------------+------------------+
 *        | d float  | qs[256] int8                      | bsums[16] int16  |
 *        +----------+-----------------------------------+------------------+
 *   x[e] = d * qs[e];  bsums[s] = qs[16s] + ... + qs[16s + 15]
 *   d has the sign of the block's largest-magnitude value, which gets code -127.
 *
 * The float scale needs 4-byte alignment; rows of Q8_K live in quill's own buffers. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} BlockQ8_K;

static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block must be 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block must be 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block must be 24 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes");
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block must be 36 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block must be 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block must be 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block must be 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block must be 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must be 210 bytes");
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block must be 292 bytes");

/* Scale and min of sub-block j (0..7) of a Q4_K or Q5_K block, from the 12 packed bytes:
 * the first four of each are stored whole in 6 bits; the last four are split into a low
 * nibble (bytes 8..11) and two high bits borrowed from the top of bytes 0..7. */
static inline void quant_k_scale_min(int j, const uint8_t scales[12], int *sc, int *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4;
        *m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
    }
}

/* Signed scale of sub-block s (0..15) of a Q3_K block, in -32..31. */
static inline int quant_q3_k_scale(int s, const uint8_t scales[12])
{
    int low = s < 8 ? scales[s] & 15 : scales[s - 8] >> 4;
    int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (low | high << 4) - 32;
}

#endif
