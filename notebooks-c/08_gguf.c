/* Notebook 8: inside a GGUF file.
 *
 * GGUF is llama.cpp's file format, and quill's: a header, key-value metadata (the model's
 * shape, its tokenizer), a table of tensors (name, type, shape, offset), then the tensors'
 * bytes (docs/formats.md draws every byte). Quantized types store weights in blocks: a
 * few bits per weight plus a scale per block, so a 4-bit model is about 1/7 of its F32
 * size.
 *
 * This notebook reads the fixed header with plain fread, lists the tensors through
 * quill's GGUF reader (src/gguf.h), and decodes one Q4_0 block and one Q4_K block by hand,
 * bit by bit, comparing the result with the library's quant_dequantize_row (src/quant.h).
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/08_gguf [Q4_0.gguf [Q4_K.gguf]])
 * (default: ../shared/models/qtest-Q4_0.gguf and qtest-Q4_K_M.gguf, a random 2-layer
 * llama stored by llama.cpp in those types). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "f16.h"
#include "gguf.h"
#include "quant.h"

/* Little-endian numbers from bytes: GGUF is little-endian whatever the machine. */
static uint32_t u32_le(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t u64_le(const unsigned char *b)
{
    return (uint64_t)u32_le(b) | (uint64_t)u32_le(b + 4) << 32;
}

static float f16_le(const unsigned char *b)
{
    return f16_to_f32((uint16_t)(b[0] | b[1] << 8));
}

static void print_hex(const char *what, const unsigned char *b, int n)
{
    printf("  %s:", what);
    for (int i = 0; i < n; i++)
        printf(" %02x", b[i]);
    printf("\n");
}

/* 1. The 24 bytes every GGUF file starts with, by hand; then the same through gguf_open. */
static void read_header(const char *path, const GgufFile *f)
{
    unsigned char b[24];
    FILE *fp = fopen(path, "rb");
    size_t got = fp ? fread(b, 1, sizeof b, fp) : 0;
    if (fp)
        fclose(fp);
    if (got != sizeof b) {
        printf("  %s: cannot read its first 24 bytes\n", path);
        return;
    }
    print_hex("bytes 0..23", b, 24);
    printf("  magic \"%.4s\", version %" PRIu32 ", %" PRIu64 " tensors, %" PRIu64
           " metadata keys\n",
           (const char *)b, u32_le(b + 4), u64_le(b + 8), u64_le(b + 16));
    bool same = memcmp(b, "GGUF", 4) == 0 && u32_le(b + 4) == f->version &&
                u64_le(b + 8) == f->n_tensors && u64_le(b + 16) == f->n_kv;
    printf("  gguf_open read the same: %s\n\n", same ? "yes" : "NO");
}

/* 2. The tensor table, as gguf_open parsed it. */
static void list_tensors(const GgufFile *f)
{
    const GgufKV *arch = gguf_find_kv(f, "general.architecture");
    printf("  architecture %s, alignment %" PRIu64 ", data section at byte %" PRIu64 "\n",
           arch && arch->type == GGUF_TYPE_STRING ? arch->value.s : "?", f->alignment,
           f->data_offset);
    printf("  %-26s %-5s %-12s %10s %8s\n", "tensor", "type", "ne", "offset", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        char shape[32];
        snprintf(shape, sizeof shape, t->n_dims == 1 ? "[%" PRIu64 "]" : "[%" PRIu64 ", %" PRIu64 "]",
                 t->ne[0], t->ne[1]);
        printf("  %-26s %-5s %-12s %10" PRIu64 " %8" PRIu64 "\n", t->name,
               gguf_tensor_type_name(t->type), shape, t->offset, t->nbytes);
    }
    printf("\n");
}

/* The first tensor of a type, or NULL. */
static const GgufTensor *first_of_type(const GgufFile *f, uint32_t type)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].type == type)
            return &f->tensors[i];
    return NULL;
}

static float max_difference(const float *a, const float *b, int n)
{
    float worst = 0.0f;
    for (int i = 0; i < n; i++)
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
    return worst;
}

/* 3. Q4_0: 32 weights in 18 bytes. Bytes 0-1: the scale d (f16). Bytes 2..17: 16 bytes of
 * two 4-bit codes each: byte j holds weight j in its low nibble and weight j+16 in its high
 * nibble. A code q in 0..15 stands for d * (q - 8). */
static void q4_0_by_hand(const GgufTensor *t)
{
    const unsigned char *b = t->data;
    float d = f16_le(b), by_hand[32], library[32];
    for (int j = 0; j < 16; j++) {
        by_hand[j] = d * (float)((b[2 + j] & 0x0F) - 8);
        by_hand[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
    quant_dequantize_row(GGML_TYPE_Q4_0, b, library, 32);
    printf("3. the first Q4_0 block of %s:\n", t->name);
    print_hex("bytes", b, 18);
    printf("  d = %.6f; byte 2 is %02x: weight 0 = d * (%d - 8) = %.5f, weight 16 = d * (%d - 8)"
           " = %.5f\n",
           d, b[2], b[2] & 0x0F, by_hand[0], b[2] >> 4, by_hand[16]);
    printf("  weights 0..7 by hand:");
    for (int j = 0; j < 8; j++)
        printf(" %8.5f", by_hand[j] + 0.0f); /* + 0.0f: code 8 with d < 0 gives -0 */
    printf("\n  Q4_0 by hand vs quant_dequantize_row, max |diff| over 32: %g\n\n",
           max_difference(by_hand, library, 32));
}

/* Q4_K's 8 sub-block scales and mins, 6 bits each, packed into 12 bytes (llama.cpp's
 * get_scale_min_k4): the first four pairs sit in the low 6 bits of bytes 0-3 and 4-7; the
 * last four take their low 4 bits from the nibbles of bytes 8-11 and their top 2 bits
 * from the spare top bits of bytes 0-7. */
static void q4_k_scale_min(const unsigned char *s, int j, int *scale, int *min)
{
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *min = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* 4. Q4_K: 256 weights in 144 bytes. Bytes 0-1: d, 2-3: dmin (f16); 4..15: the scales and
 * mins; 16..143: 128 bytes of 4-bit codes. Each chunk of 64 weights uses 32 bytes: the low
 * nibbles are its first 32 weights (sub-block 2c), the high nibbles the next 32 (2c+1).
 * Weight = d * scale * q - dmin * min, with the sub-block's scale and min. */
static void q4_k_by_hand(const GgufTensor *t)
{
    const unsigned char *b = t->data, *scales = b + 4, *qs = b + 16;
    float d = f16_le(b), dmin = f16_le(b + 2), by_hand[256], library[256];
    int scale[8], min[8];
    for (int j = 0; j < 8; j++)
        q4_k_scale_min(scales, j, &scale[j], &min[j]);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int low = qs[32 * c + l] & 0x0F, high = qs[32 * c + l] >> 4;
            by_hand[64 * c + l] = d * (float)scale[2 * c] * (float)low - dmin * (float)min[2 * c];
            by_hand[64 * c + 32 + l] =
                d * (float)scale[2 * c + 1] * (float)high - dmin * (float)min[2 * c + 1];
        }
    quant_dequantize_row(GGML_TYPE_Q4_K, b, library, 256);
    printf("4. the first Q4_K block of %s:\n", t->name);
    print_hex("scale bytes 4..15", scales, 12);
    printf("  d = %.6f, dmin = %.6f\n  sub-block (scale, min):", d, dmin);
    for (int j = 0; j < 8; j++)
        printf(" (%d, %d)", scale[j], min[j]);
    printf("\n  weight 0 = d * %d * %d - dmin * %d = %.5f\n", scale[0], qs[0] & 0x0F, min[0],
           by_hand[0]);
    printf("  Q4_K by hand vs quant_dequantize_row, max |diff| over 256: %g\n\n",
           max_difference(by_hand, library, 256));
}

/* Opens path, or says plainly that it is missing. */
static GgufFile *open_or_say(const char *path)
{
    GgufFile *f;
    Error err;
    if (gguf_open(&f, path, &err) != 0) {
        printf("missing or unreadable: %s\n(give the file: 08_gguf Q4_0.gguf Q4_K.gguf)\n\n",
               err.msg);
        return NULL;
    }
    return f;
}

int main(int argc, char **argv)
{
    const char *q4_0_path = argc > 1 ? argv[1] : "../shared/models/qtest-Q4_0.gguf";
    const char *q4_k_path = argc > 2 ? argv[2] : "../shared/models/qtest-Q4_K_M.gguf";
    GgufFile *f = open_or_say(q4_0_path);
    if (f) {
        printf("1. the header of %s, by hand:\n", q4_0_path);
        read_header(q4_0_path, f);
        printf("2. what gguf_open found:\n");
        list_tensors(f);
        const GgufTensor *t = first_of_type(f, GGML_TYPE_Q4_0);
        if (t)
            q4_0_by_hand(t);
        else
            printf("3. %s holds no Q4_0 tensor\n\n", q4_0_path);
        gguf_close(f);
    }
    f = open_or_say(q4_k_path);
    if (f) {
        const GgufTensor *t = first_of_type(f, GGML_TYPE_Q4_K);
        if (t)
            q4_k_by_hand(t);
        else
            printf("4. %s holds no Q4_K tensor\n\n", q4_k_path);
        gguf_close(f);
    }
    printf("Each Q4_0 weight costs 18 * 8 / 32 = 4.5 bits, Q4_K's 144 * 8 / 256 = 4.5 as\n"
           "well, but Q4_K spends them on 8 scales and mins per 256 weights, a closer fit.\n"
           "(A Q4_0 d may be negative: llama.cpp sets d = m / -8, with m the weight of\n"
           "largest magnitude, sign included, so that m gets code 0 exactly.)\n"
           "Try this: print by_hand[] of step 3 next to the first 32 floats of token_embd.weight\n"
           "in ../shared/models/qtest-f32.gguf, the same model unquantized: they differ by at\n"
           "most about half a step, |d| / 2 = 0.0086.\n");
    return 0;
}
