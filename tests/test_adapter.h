/* LoRA adapter files for tests, written here in llama.cpp's layout (docs/formats.md) with
 * factors drawn from a fixed seed: test_lora.c checks what they change, test_serve.c that
 * the server applies them. */
#ifndef QUILL_TEST_ADAPTER_H
#define QUILL_TEST_ADAPTER_H

#include <stdbool.h>

#include "gguf.h"

enum { TEST_ADAPTER_RANK = 4 };

/* What an adapter file holds, before it is written: which weights, and how. */
typedef struct {
    const char *architecture; /* general.architecture */
    const char *type;         /* general.type */
    float alpha;
    float a_range, b_range;   /* A and B drawn uniformly from +-range (B: 0 for zeros) */
    const char *skip_a;       /* a tensor whose lora_a is left out (NULL: none) */
    const char *skip_b;       /* a tensor whose lora_b is left out (NULL: none) */
    int a_cols_delta;         /* added to every A's row length: a shape that does not fit */
    bool with_token_embd;     /* a pair for token_embd.weight too */
    GgmlType factor_type;     /* the factors' type: F32 or F16 */
} AdapterSpec;

/* A llama adapter of F32 factors of +-0.2 at alpha / rank = 2: enough to change
 * stories260K's greedy text, not so much that the model turns chaotic (+-0.5 does: its
 * logits then swing by 30, and two summation orders of the same sums part by 1e-3 after a
 * few layers). */
extern const AdapterSpec TEST_ADAPTER;

/* Writes an adapter for every matrix of the model in `model_path` that quill adapts (the
 * seven projections of each block and output.weight), A (rank, in) and B (out, rank) in
 * the spec's type, drawn from a fixed seed. Returns the number of pairs. */
int test_write_adapter(const char *path, const char *model_path, const AdapterSpec *spec);

#endif
