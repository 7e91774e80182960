/* Training a LoRA adapter (Hu et al. 2021) on a frozen base model: `quill finetune`.
 *
 * The base model is the inference model (model_map_gguf): its weights stay where the file
 * maps them, in their stored type (F32, F16, Q8_0, Q4_K ...), and are never written. For
 * each adapted projection W (out, in) the adapter holds A (rank, in) and B (out, rank), and
 * the layer computes, with s = alpha / rank,
 *
 *     y = W x + s B (A x)                                   (forward: lora_forward, lora.h)
 *
 * The backward pass walks the blocks as model_backward does, but differentiates only A, B
 * and the activations. For one adapted layer, with dy = dL/dy (N rows) and u = x A^T:
 *
 *     dB = s dy^T u                   (out, rank)
 *     dA = s (dy B)^T x               (rank, in)
 *     dx = dy W + s (dy B) A          (N, in): the first term a product with the stored
 *                                      matrix, dequantized a tile of rows at a time
 *
 * Everything else (norm gains, embeddings, the output projection, W itself) is frozen: its
 * gradient is never formed. The trainable state is A and B of every adapted projection,
 * in one F32 buffer, and its gradient in a buffer of the same layout. */
#ifndef QUILL_LORA_TRAIN_H
#define QUILL_LORA_TRAIN_H

#include <stdint.h>

#include "error.h"
#include "lora.h"
#include "model.h"

/* The projections an adapter may change, as --lora-targets names them. */
typedef enum {
    LORA_TARGET_Q = 1 << 0,    /* attn_q */
    LORA_TARGET_K = 1 << 1,    /* attn_k */
    LORA_TARGET_V = 1 << 2,    /* attn_v */
    LORA_TARGET_O = 1 << 3,    /* attn_output */
    LORA_TARGET_GATE = 1 << 4, /* ffn_gate */
    LORA_TARGET_UP = 1 << 5,   /* ffn_up */
    LORA_TARGET_DOWN = 1 << 6, /* ffn_down */
    LORA_TARGET_ALL = (1 << 7) - 1,
} LoraTarget;

/* "q,k,v,o,gate,up,down" (any of them, comma-separated) into a mask; an unknown name is an
 * error that names it and lists the known ones. */
int lora_targets_parse(const char *list, unsigned *mask, Error *err);
/* The mask back as a list, "q,v" (into out, cap bytes). */
void lora_targets_format(unsigned mask, char *out, size_t cap);

typedef struct {
    int rank;
    float alpha;
    unsigned targets;   /* LoraTarget mask */
    size_t n_params;    /* floats of every A and B */
    float *params;      /* pair k: A (rank, in) at offset[k], then B (out, rank) */
    size_t *offset;     /* (adapter.n_pairs) */
    char (*names)[48];  /* (adapter.n_pairs) the base weights' GGUF names */
    LoraAdapter adapter; /* the pairs as F32 views of params (file NULL): what the forward
                            pass applies (lora_forward) */
    /* backward scratch for up to max_rows rows */
    int max_rows;
    float *u, *g;        /* (max_rows, rank): x A^T and dy B */
    float *tile;         /* rows of a dequantized weight (LORA_TILE_ROWS, widest in) */
    float *d_gain;       /* (C) the gradient of a norm gain, formed and thrown away */
    const LoraSet *dropout; /* the forward's set when it applies dropout (its masks are
                               recomputed here), else NULL */
} LoraTrain;

/* An adapter of the given rank on every `targets` projection of every block of m, A drawn
 * uniform in [-1/sqrt(in), 1/sqrt(in)] (Kaiming-uniform with a = sqrt(5), PyTorch's
 * nn.Linear init that peft uses) from seed, B zero: the adapted model starts equal to the
 * base. Scratch for backward passes of up to max_rows rows. */
int lora_train_init(LoraTrain *t, const Model *m, int rank, float alpha, unsigned targets,
                    uint64_t seed, int max_rows, Error *err);
void lora_train_free(LoraTrain *t); /* NULL-safe */

/* dinp (N, in) = dout . W (+ dinp when beta = 1), dout's rows ldo floats apart: the input
 * gradient through a frozen weight in any type quant.h dequantizes. An F32 matrix goes
 * straight to gemm; another is dequantized LORA_TILE_ROWS rows at a time into `tile` and
 * each tile's product added. Every tile's product reads and writes all of dinp, so the
 * tiles are tall: 64 rows cost the Q8_0 bench model's steps 4% (docs/training.md). */
enum { LORA_TILE_ROWS = 512 };
void linear_backward_input(float *dinp, const float *dout, int ldo, int N,
                           const WeightMatrix *w, float beta, float *tile);

/* The backward pass of one training forward (model_forward with a->lora set to this
 * adapter) and model_loss: ADDS to grads (the adapter's layout) the gradient of
 * loss_scale * mean(token losses) (over the targets that count: ops.h's LOSS_IGNORED)
 * with respect to every A and B, so that micro-batches
 * accumulate (clear grads before a step). B * T <= t->max_rows. */
void lora_train_backward(LoraTrain *t, const Model *m, Activations *a, GradScratch *g,
                         float *grads, const int *targets, int B, int T, float loss_scale);

/* The adapter as llama.cpp's LoRA GGUF (lora.h: general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha, blk.N.<name>.weight.lora_a / .lora_b in F32), written
 * atomically. */
int lora_train_write_adapter(const LoraTrain *t, const char *path, Error *err);

/* The adapter's tensors (F32) and alpha added to w, borrowing t->params: what the adapter
 * file and a finetune checkpoint share. */
void lora_train_add_tensors(const LoraTrain *t, GgufWriter *w);
/* The factors of f (an adapter file or a finetune checkpoint) into t->params: every pair
 * of t must be there, F32, in its shape. */
int lora_train_read_tensors(LoraTrain *t, const GgufFile *f, Error *err);

#endif
