/* Quantized tensors: the GGUF block formats, their reference dequantizers and quantizers,
 * and the fast dot products and matrix products that run models stored in them.
 *
 * A quantized row of n weights is n / block_size blocks; each block stores small integers
 * and the scale(s) that turn them back into floats (docs/formats.md draws every layout,
 * src/quant_blocks.h declares them). Types are ggml's numbers (GgmlType in gguf.h).
 *
 * How a product is computed: the weights stay in their file format and are decoded on the
 * fly, block by block, inside the kernel; the activations are converted once per product
 * into the "activation format" of the weight type (quant_activation_type): 8-bit codes for
 * the quantized types, so that the inner loop is an integer dot product (AVX-512 VNNI,
 * AVX2 or plain C) with one float multiply per block. This is llama.cpp's design, and the
 * activation formats and their rounding are llama.cpp's too, so that a model's logits are
 * llama.cpp's to float rounding (docs/formats.md); quant_vec_dot is the smallest instance.
 *
 * Every function taking a row requires a known type and n a multiple of the type's block
 * size (quant_block_size): those are programmer errors, checked with assert. Sizes read from
 * a file are validated by the GGUF reader before they get here. Rows of F32 must be 4-byte
 * aligned and rows of F16/BF16 2-byte aligned (every GGUF tensor is); rows of quantized
 * blocks may start at any byte. */
#ifndef QUILL_QUANT_H
#define QUILL_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Types ---------------------------------------------------------------------------- */

/* True for the types quill can dequantize: the weight types F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation formats Q8_1, Q8_K. */
bool quant_type_is_supported(uint32_t type);

/* True for the weight types: those quant_vec_dot and quant_matmul multiply (every supported
 * type but the activation-only formats Q8_1 and Q8_K). */
bool quant_can_multiply(uint32_t type);

/* Elements per block: 1 for F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for the K-quants. */
int64_t quant_block_size(uint32_t type);

/* Bytes of one row of n elements of `type`; n must be a multiple of the block size. */
size_t quant_row_bytes(uint32_t type, int64_t n);

/* ---- Reference conversions (plain C, one small function per type) ------------------- */

/* dst[0..n) = the floats that the n elements at src encode. Works for every supported type,
 * F32 (a copy), F16 and BF16 included. */
void quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* True for the types quant_quantize_row can write: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q4_K, Q5_K, Q6_K (what `quill quantize` writes) and Q8_1, Q8_K (activations). Q2_K
 * and Q3_K are read, never written. */
bool quant_can_quantize(uint32_t type);

/* Encodes n floats as `type` (quant_can_quantize(type) must hold) into
 * quant_row_bytes(type, n) bytes at dst. Deterministic: the same floats give the same bytes
 * on every machine and with every ISA. docs/formats.md states each type's error bound. */
void quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ---- Fast conversions (the KV cache) -------------------------------------------------- */

/* The same bytes as quant_quantize_row, and the same floats as quant_dequantize_row (NaN
 * payloads aside), with the current ISA's SIMD code where it has some: for F16 and Q8_0,
 * the types of the KV cache, which stores every new key and value and reads them all back
 * at every step (the reference F16 conversion is a branchy scalar loop). The dequantizer
 * takes n_rows rows of n elements src_stride bytes apart (one attention head's slice of
 * each cached position) into dst, one after the other. Other types run the reference. */
void quant_quantize_row_fast(uint32_t type, const float *src, void *dst, int64_t n);
void quant_dequantize_rows_fast(uint32_t type, const void *src, size_t src_stride, float *dst,
                                int n_rows, int64_t n);

/* ---- Dot products and matrix products ----------------------------------------------- */

/* The format quant_vec_dot and quant_matmul expect the activations in, for a weight type
 * (llama.cpp's vec_dot_type): the weight's own type for F32, F16 and BF16; Q8_0 for Q4_0,
 * Q5_0 and Q8_0; Q8_1 (Q8_0 plus each block's sum) for Q4_1 and Q5_1; Q8_K for
 * Q2_K..Q6_K. */
uint32_t quant_activation_type(uint32_t weight_type);

/* The dot product of one row of n weights of weight_type (w_row) with one row of n
 * activations already in quant_activation_type(weight_type) (act_row, made with
 * quant_quantize_row or, for F32, plain floats), on the current ISA (quant_set_isa). */
float quant_vec_dot(uint32_t weight_type, int64_t n, const void *w_row, const void *act_row);

/* THE product of a linear layer:
 *   out[i*ldo + j] = beta * out[i*ldo + j] + sum_k x[i*K + k] * W[j][k]    i < N, j < M
 * W is M rows of K elements of `type`, row-major as GGUF stores a weight (ne[0] = K,
 * ne[1] = M); x is N rows of K floats. beta is 0 (out is only written: it may hold garbage,
 * even NaN) or 1 (add into out, for residual connections). K must be a multiple of the
 * block size.
 *
 * x is converted once into the activation format, in `scratch`: at least
 * quant_matmul_scratch_bytes(type, N, K) bytes that the caller owns (the model keeps one
 * buffer, sized for its largest product, in its run state). For F32 weights that is 0
 * bytes and scratch may be NULL. The product itself never allocates, so it cannot fail.
 *
 * Work is split across OpenMP threads by tiles of W's rows; each output is computed by one
 * thread in a fixed order, so the result is bit-identical for any thread count. Decoding
 * (N = 1) and small batches (N <= 8) read every weight from memory once; longer prompts
 * reuse each tile of weights, from cache, for every activation row. */
void quant_matmul(float *out, int ldo, const float *x, int N, int K, const void *W,
                  uint32_t type, int M, float beta, void *scratch);

/* Bytes of scratch quant_matmul needs for N rows of K: N activation rows in the format
 * of quant_activation_type(type) (0 for F32 weights). */
size_t quant_matmul_scratch_bytes(uint32_t type, int N, int K);

/* ---- Which SIMD code runs ------------------------------------------------------------- */

/* The kernel sets. Each is compiled with its own target attribute, whatever the build
 * flags, and chosen once at run time from what the CPU reports:
 *   AVX512  AVX512F + BW + VL + DQ + VNNI (+ FMA, F16C): Ice Lake and later, Zen 4 and later;
 *   AVX2    AVX2 + FMA + F16C: Haswell and later, every Zen (and AVX-512 CPUs without VNNI);
 *   SCALAR  portable C, the fallback everywhere else. */
typedef enum { QUANT_ISA_SCALAR, QUANT_ISA_AVX2, QUANT_ISA_AVX512 } QuantIsa;

/* The best kernel set this CPU runs (__builtin_cpu_supports). */
QuantIsa quant_isa_best(void);
/* Selects the kernel set for every later call (tests force each one); returns -1, changing
 * nothing, when the CPU cannot run it. Not thread-safe: call it between products. */
int quant_set_isa(QuantIsa isa);
/* The kernel set in use (quant_isa_best() until quant_set_isa changes it). */
QuantIsa quant_isa(void);
/* "scalar", "avx2" or "avx512". */
const char *quant_isa_name(QuantIsa isa);

#endif
