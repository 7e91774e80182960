/* LoRA adapters (Hu et al. 2021) at inference: a low-rank change to some of a model's
 * weight matrices, kept beside them instead of written into them.
 *
 * For a weight W (out, in) the adapter holds A (rank, in) and B (out, rank), with rank much
 * smaller than in and out, and the layer computes
 *
 *     y = W x + scale * B (A x),    scale = user_scale * alpha / rank
 *
 * (alpha is the adapter's adapter.lora.alpha; an adapter without one, alpha 0, uses
 * user_scale as it is, as llama.cpp does). The product costs (in + out) * rank per token,
 * a small fraction of W's in * out, and W stays as the file stores it, quantized or not.
 * Several adapters may apply at once, each with its own user_scale: their terms add.
 *
 * The file is llama.cpp's adapter GGUF (convert_lora_to_gguf.py writes it; docs/formats.md):
 * general.type "adapter", general.architecture "llama", adapter.type "lora",
 * adapter.lora.alpha (f32), and for each weight it changes two tensors,
 *   blk.N.attn_q.weight.lora_a   ne = {in, rank}    row-major (rank, in):  A
 *   blk.N.attn_q.weight.lora_b   ne = {rank, out}   row-major (out, rank): B
 * in any type quill multiplies (F32, F16, BF16, Q8_0 ...: the row length, in for A and rank
 * for B, must be a multiple of the type's block). quill applies adapters to the seven
 * projections of each block and to output.weight; norm tensors (*_norm.weight), which
 * llama.cpp also skips, are ignored. */
#ifndef QUILL_LORA_H
#define QUILL_LORA_H

#include "error.h"
#include "gguf.h"
#include "model.h"

/* One adapted weight: the base matrix it changes and its two factors, in the file's types
 * (views of the adapter's mapped file). */
typedef struct {
    const WeightMatrix *target; /* the base model's weight (in Model.wt) */
    WeightMatrix a;             /* (rank, in) */
    WeightMatrix b;             /* (out, rank) */
} LoraPair;

typedef struct {
    GgufFile *file; /* owned: the pairs point into its mapping */
    float alpha;    /* adapter.lora.alpha; 0 when the file has none */
    int n_pairs;
    LoraPair *pairs;
    uint64_t identity; /* hash of alpha and every tensor's name, type, shape and bytes: what
                          decides the adapter's effect, recorded in a saved state (0 for an
                          adapter lora_adapter_load did not make) */
} LoraAdapter;

/* Opens an adapter file and checks it against the model it will change: general.type
 * "adapter", adapter.type "lora", the model's architecture, every lora_a with its lora_b,
 * each naming a weight the model has, in the shapes above; then hashes it (identity). The
 * first problem is the error, naming the tensor; on failure nothing stays allocated and err
 * starts with the path. */
int lora_adapter_load(LoraAdapter *a, const char *path, const Model *m, Error *err);
void lora_adapter_free(LoraAdapter *a); /* NULL-safe; leaves *a zeroed */

/* The factor B (A x) is multiplied by: user_scale * alpha / rank (user_scale when alpha is
 * 0), rank being lora_a's row count. */
float lora_pair_scale(const LoraAdapter *a, const LoraPair *p, float user_scale);

/* The adapters one run applies, each with the user's scale for it. */
typedef struct {
    const LoraAdapter *adapter; /* borrowed: outlives the set */
    float scale;
} LoraUse;

/* What a forward pass needs to apply adapters to up to max_rows rows at a time: the list,
 * and scratch for A x (max_rows, rank) and for the activations in the factors' types. */
typedef struct LoraSet {
    int n;
    LoraUse *uses;
    int max_rows;
    float *ax;          /* (max_rows, largest rank) */
    void *scratch;      /* linear_forward's scratch for the largest factor */
    /* Training only (quill finetune --lora-dropout): each pair's input x is multiplied by a
     * mask of zeros (probability dropout) and 1 / (1 - dropout) before A, the mask a
     * function of (dropout_seed, the pair, the row, the column): lora_dropout_apply. 0: off */
    float dropout;
    uint64_t dropout_seed;
    float *dropped;     /* (max_rows, widest in) x with the mask applied; NULL when off */
    size_t dropped_floats;
} LoraSet;

/* A set of n adapters (n may be 0: the set is empty and applies nothing). */
int lora_set_init(LoraSet *s, const LoraUse *uses, int n, int max_rows, Error *err);
void lora_set_free(LoraSet *s); /* NULL-safe; leaves *s zeroed */

/* Adds every adapter's term for the weight w to the product out (N, ldo) = inp . w^T that
 * the forward pass has just made: out += scale * (inp . A^T) . B^T for each pair whose
 * target is w. N <= s->max_rows. */
void lora_forward(const LoraSet *s, const WeightMatrix *w, float *out, int ldo, const float *inp,
                  int N);

/* Dropout on the input of pair k (Hu et al., peft's lora_dropout): out (N, in) = x (N, in)
 * with each element zeroed with probability s->dropout and the others scaled by
 * 1 / (1 - dropout) (inverted dropout: the expected input is x). The mask is the same for
 * the same (dropout_seed, k, row, column), so the backward pass recomputes it rather than
 * storing it; x may be out (applied in place). */
void lora_dropout_apply(const LoraSet *s, int k, float *out, const float *x, int N, int in);
/* Allocates s->dropped for the widest input of the set's pairs and turns dropout on at p
 * (0 <= p < 1). */
int lora_set_dropout(LoraSet *s, float p, Error *err);

#endif
