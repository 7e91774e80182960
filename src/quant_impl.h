/* Internals shared by the files of the quant module (not part of the library's API):
 *
 *   quant.c          the type table, dispatch, quant_matmul's driver, ISA selection
 *   quant_q32.c      F32/F16/BF16 and the 32-element blocks (with Q8_1, the activations
 *                    of Q4_1/Q5_1): reference dequantize, quantize and the portable
 *                    (scalar) dot product of each type
 *   quant_kquants.c  the same for the K-quants and Q8_K
 *   quant_simd.h     what the two SIMD files share (target attributes, block sizes, the
 *                    Q8_0/Q8_1 row quantizers, K-quant decoders)
 *   quant_avx2.c     AVX2 kernels          } panels of dot products, compiled with their own
 *   quant_avx512.c   AVX-512 VNNI kernels  } target attributes, used only when the CPU has them
 *
 * Adding a tensor type: draw and declare its block in quant_blocks.h; write its reference
 * dequantizer (and quantizer, if quill should write it) and its scalar dot product next to
 * the others of its family; describe it with a QuantFormat below and list it in quant.c's
 * table. From then on it works everywhere on the scalar path; a SIMD panel for it in
 * quant_avx2.c / quant_avx512.c makes it fast. */
#ifndef QUILL_QUANT_IMPL_H
#define QUILL_QUANT_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Round to the nearest integer, ties to even. Adding 1.5 * 2^23 leaves a float no
 * fraction bits, so the addition itself rounds (in the default rounding mode) and the
 * subtraction gives the integer back; it is exactly what the SIMD float-to-int conversion
 * (cvtps2dq) does for |x| < 2^22, so the vectorised activation quantizers produce the same
 * bytes as the reference ones. A NaN (from a broken input) gives 0 instead of an undefined
 * float-to-int conversion. */
static inline int quant_round(float x)
{
    if (!(fabsf(x) < 4194304.0f))
        return 0;
    return (int)((x + 12582912.0f) - 12582912.0f);
}

static inline int quant_clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* n elements (a multiple of the block size) of one row. */
typedef void QuantDequantizeFn(const void *src, float *dst, int64_t n);
typedef void QuantQuantizeFn(const float *src, void *dst, int64_t n);
/* Dot product of n weights with n activations in the weight type's activation format. */
typedef float QuantDotFn(int64_t n, const void *w_row, const void *act_row);

/* What quill knows about one tensor type. */
typedef struct {
    uint32_t type;                  /* GgmlType */
    int64_t block_size;             /* elements per block */
    size_t block_bytes;             /* bytes per block */
    uint32_t act_type;              /* activation format of its dot product */
    QuantDequantizeFn *dequantize;  /* reference dequantizer */
    QuantQuantizeFn *quantize;      /* reference quantizer, or NULL: quill does not write it */
    QuantDotFn *dot;                /* portable dot product (the scalar ISA), or NULL for
                                       an activation format */
} QuantFormat;

extern const QuantFormat quant_format_f32, quant_format_f16, quant_format_bf16;
extern const QuantFormat quant_format_q4_0, quant_format_q4_1, quant_format_q5_0,
    quant_format_q5_1, quant_format_q8_0, quant_format_q8_1;
extern const QuantFormat quant_format_q2_k, quant_format_q3_k, quant_format_q4_k,
    quant_format_q5_k, quant_format_q6_k, quant_format_q8_k;

/* ---- Panels: what the SIMD files provide ----
 * A panel is up to QUANT_PANEL_ROWS weight rows against n_cols activation rows (any
 * number), activation row c at act + c * act_stride bytes:
 *   out[c * ldo + r] = beta * out[c * ldo + r] + dot(w_rows[r], activation row c)
 * for r < n_rows, c < n_cols (out is not read when beta is 0). w_rows always holds four
 * valid rows (a short panel repeats its last one), so a kernel may compute all four and
 * drop the extra dots; activation rows past n_cols must not be read.
 *
 * Kernels walk K in segments of QUANT_SEGMENT elements. Within a segment each weight row
 * is decoded once: in registers when one tile holds every activation row, otherwise into a
 * small buffer on the stack that every group of QUANT_TILE_COLS activation rows then reads
 * from L1; each group is a tile of up to 4 x 4 dots summed in registers. With a single
 * activation row the panel's rows are taken one at a time (one sequential stream of
 * weights per thread). A dot is the sum of its segments' partial dots,
 * added in order, and every partial dot is computed by the same operations whatever N,
 * n_rows and n_cols are: a row's result does not depend on what it was batched with, and
 * the buffers stay a few tens of KiB. */
enum { QUANT_PANEL_ROWS = 4, QUANT_TILE_COLS = 4, QUANT_SEGMENT = 2048 };

typedef void QuantPanelFn(int64_t n, const void *const w_rows[QUANT_PANEL_ROWS], int n_rows,
                          const void *act, size_t act_stride, int n_cols, float *out, int ldo,
                          float beta);

/* The panel kernel of a weight type on an ISA, or NULL when that ISA has none for it (the
 * driver then loops over the type's scalar dot product). */
QuantPanelFn *quant_avx2_panel(uint32_t type);
QuantPanelFn *quant_avx512_panel(uint32_t type);

/* ---- Rows: one activation row (a decoding step) against n_rows consecutive weight rows,
 * row r at w + r * w_stride bytes:
 *   out[r] = beta * out[r] + dot(weight row r, act)
 * A thread calls it once for its whole share of W, so what belongs to the activation alone
 * (its codes, scales and sums, arranged for the kernel) is made ready once per segment and
 * thread rather than once per panel; the weights are decoded in registers and the rows
 * taken one after the other, one sequential stream per thread. Every dot has the bits the
 * panel kernel gives the same row (the same operations in the same order). NULL where an
 * ISA has no such kernel for a type: the driver then runs panels of one column. */
typedef void QuantRowsFn(int64_t n, const void *w, size_t w_stride, int n_rows, const void *act,
                         float *out, float beta);
QuantRowsFn *quant_avx512_rows(uint32_t type);

/* Quantizers with the same bits as the reference ones (quant_q32.c, quant_kquants.c): the
 * activation formats Q8_0, Q8_1 and Q8_K, and F16 (the KV cache, and the activations of F16
 * weights); NULL for other types. */
QuantQuantizeFn *quant_avx2_quantizer(uint32_t type);
QuantQuantizeFn *quant_avx512_quantizer(uint32_t type);

/* n_rows rows of n elements, src_stride bytes apart, dequantized into dst one after the
 * other: the reference dequantizer's floats, for the KV cache's types F16 and Q8_0 (NULL
 * for other types). */
typedef void QuantDequantizeRowsFn(const void *src, size_t src_stride, float *dst, int n_rows,
                                   int64_t n);
QuantDequantizeRowsFn *quant_avx2_dequantizer(uint32_t type);
QuantDequantizeRowsFn *quant_avx512_dequantizer(uint32_t type);

#endif
