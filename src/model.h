/* The model: a decoder-only llama-style transformer, the shape GGUF "llama" files describe.
 *
 *   tokens -> token_embd -> L x [ x += attn_output(attention(rope(q), rope(k), v))
 *                                      with q, k, v = attn_q/k/v(rmsnorm(x) * attn_norm)
 *                                 x += ffn_down(silu(ffn_gate(h)) * ffn_up(h))
 *                                      with h = rmsnorm(x) * ffn_norm ]
 *          -> rmsnorm * output_norm -> output (or token_embd^T when tied) -> logits
 *
 * Three structs, each with one role (after llama2.c's run.c):
 *   ModelConfig  the blueprint: sizes and constants, nothing allocated;
 *   Model        the parameters: ONE float buffer, with named views into it;
 *   Activations  the run state of one forward pass: ONE buffer, with named views; for
 *                inference it also holds the KV cache.
 * Gradients have the same layout as parameters (one buffer, same views), so the optimizer
 * is a flat loop and a checkpoint is one write per buffer (docs/architecture.md).
 *
 * One forward pass serves three uses:
 *   training    B x T tokens at positions 0..T-1; every layer's activations are kept
 *               for model_backward;
 *   prompt      T tokens of one or more sequences, whose keys and values are appended to
 *               the KV cache;
 *   decoding    1 token per sequence, attending to everything in the cache. */
#ifndef QUILL_MODEL_H
#define QUILL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "ops.h"

typedef struct {
    int n_layers;        /* L */
    int dim;             /* C: width of the residual stream */
    int n_heads;         /* H: query heads; head size hs = C / H */
    int n_kv_heads;      /* KVH: key/value heads, divides H (grouped-query attention;
                            KVH == H is plain multi-head attention) */
    int ffn_dim;         /* F: hidden width of the SwiGLU MLP */
    int vocab_size;      /* V */
    int context;         /* the most positions a sequence can have */
    float rope_base;     /* RoPE frequency base theta (llama: 10000) */
    float rope_scaling;  /* linear RoPE scaling ("position interpolation", Chen et al. 2023;
                            llama.rope.scaling.factor): positions are divided by this
                            before they are rotated, so a model tuned with factor f reads
                            f times its trained context. 0 and 1 both mean no scaling */
    float norm_eps;      /* RMSNorm epsilon (llama: 1e-5) */
    bool tie_embeddings; /* the output projection reuses token_embd (no output.weight) */
} ModelConfig;

/* Checks a blueprint: positive sizes, C divisible by H, H by KVH, even head size.
 * The message names the offending field. */
int model_config_validate(const ModelConfig *c, Error *err);
static inline int model_head_size(const ModelConfig *c) { return c->dim / c->n_heads; }
static inline int model_kv_dim(const ModelConfig *c) { return model_head_size(c) * c->n_kv_heads; }

/* How a parameter tensor is initialised and regularised. */
typedef enum {
    PARAM_NORM,      /* RMSNorm gain: starts at 1, no weight decay */
    PARAM_EMBEDDING, /* token_embd: N(0, 0.02^2), decayed */
    PARAM_MATRIX,    /* q, k, v, gate, up: N(0, 0.02^2), decayed */
    PARAM_RESIDUAL,  /* attn_output, ffn_down, which write into the residual stream:
                        N(0, (0.02 / sqrt(2L))^2) so the stream's variance does not grow
                        with depth (GPT-2), decayed */
    PARAM_OUTPUT,    /* untied output projection: zeros, so the step-0 prediction is
                        uniform and the loss exactly ln(V); it learns from the first
                        step on. Decayed. */
} ParamKind;

/* The tensors of one transformer block, in buffer order. For each:
 *   X(field, rows, cols, kind)  with (rows, cols) the row-major shape: matrices are
 *   (out, in), as GGUF stores them; norms are (1, C).
 * The GGUF name is "blk.<l>.<field>.weight". attn_q, attn_k, attn_v are adjacent, and so
 * are ffn_gate, ffn_up: each trio/pair is also used as ONE fused matrix, so one matmul
 * computes q|k|v (and gate|up) for every token. */
#define MODEL_LAYER_PARAMS(X, c)                                                          \
    X(attn_norm, 1, (c)->dim, PARAM_NORM)                                                 \
    X(attn_q, (c)->dim, (c)->dim, PARAM_MATRIX)                                           \
    X(attn_k, model_kv_dim(c), (c)->dim, PARAM_MATRIX)                                    \
    X(attn_v, model_kv_dim(c), (c)->dim, PARAM_MATRIX)                                    \
    X(attn_output, (c)->dim, (c)->dim, PARAM_RESIDUAL)                                    \
    X(ffn_norm, 1, (c)->dim, PARAM_NORM)                                                  \
    X(ffn_gate, (c)->ffn_dim, (c)->dim, PARAM_MATRIX)                                     \
    X(ffn_up, (c)->ffn_dim, (c)->dim, PARAM_MATRIX)                                       \
    X(ffn_down, (c)->dim, (c)->ffn_dim, PARAM_RESIDUAL)

typedef struct {
#define X(field, rows, cols, kind) float *field;
    MODEL_LAYER_PARAMS(X, unused)
#undef X
} LayerParams;

/* Named views into a parameter-shaped buffer (parameters or their gradients). */
typedef struct {
    float *token_embd;   /* (V, C) */
    LayerParams *layers; /* L blocks */
    float *output_norm;  /* (C) */
    float *output;       /* (V, C); the same memory as token_embd when tied */
} ParamViews;

/* One row of the tensor table: what checkpoints, the optimizer and the initialiser walk. */
typedef struct {
    char name[48];  /* GGUF name, e.g. "blk.3.ffn_up.weight" */
    float *data;    /* into the parameter buffer */
    size_t offset;  /* of data from the start of the buffer, in floats */
    int rows, cols; /* row-major shape; GGUF ne = {cols, rows} */
    ParamKind kind;
    WeightMatrix *weight; /* the forward pass's view of this tensor (in Model.wt) */
} ParamTensor;

/* The weights the forward pass reads, as they are stored (WeightMatrix, ops.h): F32 views
 * of the parameter buffer for a model quill trains, or views of a mapped GGUF file, in the
 * file's own types, for inference. The norm weights are always F32. */
typedef struct {
#define X(field, rows, cols, kind) WeightMatrix field;
    MODEL_LAYER_PARAMS(X, unused)
#undef X
} LayerWeights;

typedef struct {
    WeightMatrix token_embd;  /* (V, C) */
    LayerWeights *layers;     /* L blocks */
    WeightMatrix output_norm; /* (C) */
    WeightMatrix output;      /* (V, C); token_embd itself when tied */
} ModelWeights;

typedef struct {
    ModelConfig config;
    ModelWeights wt;      /* what model_forward reads */
    /* The parameters as one F32 buffer, for training (all empty for a mapped model): */
    size_t n_params;      /* floats in `params`: every parameter once (tied embeddings once) */
    float *params;        /* the one parameter buffer */
    ParamViews w;         /* named views into params */
    int n_tensors;
    ParamTensor *tensors; /* the table, in buffer order */
    /* A model mapped for inference (model_map_gguf): */
    GgufFile *file;       /* owned: the weights point into its mapping */
    float *norms;         /* the norm weights, widened to F32 when the file stores them
                             otherwise (owned) */
} Model;

/* Allocates a model for a validated blueprint; parameters are zero. */
int model_init(Model *m, const ModelConfig *c, Error *err);
void model_free(Model *m); /* NULL-safe; leaves *m zeroed; closes a mapped file */

/* Documented initialisation (ParamKind) from a seed. */
void model_init_params(Model *m, uint64_t seed);

/* Views of another parameter-shaped buffer (gradients) with the model's layout. The views
 * hold a LayerParams array: free it with param_views_free. */
int param_views_init(ParamViews *v, const Model *m, float *buffer, Error *err);
void param_views_free(ParamViews *v);

/* The first tensor of a parameter-shaped buffer (parameters, gradients) that holds a NaN or
 * an infinity, with the element's index in *element; -1 when every value is finite. */
int model_find_nonfinite(const Model *m, const float *buffer, size_t *element);

/* Matmul FLOPs of one training token (forward + backward = 3 x forward), counting only
 * what a causal model must compute: 6 per weight that multiplies (the embedding lookup is
 * free, the output projection is not) and 6*L*T*C for attention over an average of T/2
 * earlier positions. */
double model_train_flops_per_token(const Model *m, int T);

/* GGUF: the llama.* keys and the tensors, F32 (the writer borrows the parameter memory,
 * so keep the model alive until gguf_writer_write returns). */
void model_to_gguf(const Model *m, GgufWriter *w);
/* Reads a llama-architecture GGUF: blueprint from llama.* keys, tensors F32/F16/BF16.
 * A file without output.weight is tied. Tensors named "quill.*" (training state) are
 * skipped; any other tensor the model does not have is an error. The file is untrusted:
 * every size is checked against the tensors it holds before the parameters are allocated,
 * so a small file cannot make quill allocate more than a small multiple of its size. */
int model_from_gguf(Model *m, const GgufFile *f, Error *err);
/* Takes a llama-architecture GGUF for inference: the weights are used where they lie in
 * the mapped file, in any type quant.h multiplies (F32, F16, BF16, Q8_0 ... Q6_K); nothing
 * is copied but the small norm vectors. Loading costs milliseconds whatever the file's
 * size, and only the weights a run touches are read from disk. On success the model owns f
 * (model_free closes it); on failure f is left to the caller. Checked like model_from_gguf.
 * Such a model cannot be trained (it has no parameter buffer). */
int model_map_gguf(Model *m, GgufFile *f, Error *err);
/* Reads only the blueprint (checked against token_embd's shape and the tensor count). */
int model_config_from_gguf(ModelConfig *c, const GgufFile *f, Error *err);

/* ---- run state ---------------------------------------------------------------------- */

/* Activations of one block, in buffer order: X(field, size), sizes in floats. In training
 * every block has its own; in inference all blocks share one set (the values of block l
 * are dead once block l+1 has run). */
#define MODEL_LAYER_ACTS(X, BT, C, QKV, F, ATT)                                             \
    X(resid_in, (BT) * (C))    /* (B,T,C)   block input, the residual stream          */    \
    X(attn_rstd, (BT))         /* (B,T)     1/rms of resid_in                          */   \
    X(attn_norm, (BT) * (C))   /* (B,T,C)   rmsnorm(resid_in) * attn_norm              */   \
    X(qkv, (BT) * (QKV))       /* (B,T,QKV) q | k | v per token, q and k after RoPE    */   \
    X(att, (ATT))              /* (B,H,T,n_kv) attention probabilities                  */  \
    X(att_out, (BT) * (C))     /* (B,T,C)   attention output, before attn_output      */    \
    X(resid_mid, (BT) * (C))   /* (B,T,C)   resid_in + attention branch                */   \
    X(ffn_rstd, (BT))          /* (B,T)     1/rms of resid_mid                         */   \
    X(ffn_norm, (BT) * (C))    /* (B,T,C)   rmsnorm(resid_mid) * ffn_norm              */   \
    X(gate_up, (BT) * 2 * (F)) /* (B,T,2F)  gate | up pre-activations                  */   \
    X(swiglu, (BT) * (F))      /* (B,T,F)   silu(gate) * up                            */

typedef struct {
#define X(field, size) float *field;
    MODEL_LAYER_ACTS(X, 0, 0, 0, 0, 0)
#undef X
} LayerActs;

typedef enum {
    ACTS_TRAINING,  /* every block keeps its activations; attention reads its own q|k|v */
    ACTS_INFERENCE, /* blocks share one set; keys and values go to the KV cache */
} ActsMode;

typedef struct {
    ActsMode mode;
    int B, T;           /* training: B sequences of T tokens. Inference: B cache slots, and
                           at most T tokens per forward call, summed over its sequences */
    int n_ctx;          /* positions per sequence the KV cache holds (inference) */
    bool last_logits;   /* inference: logits only for each sequence's last token */
    float *rope_cos;    /* (n_ctx, hs/2) RoPE tables for the positions this run uses: */
    float *rope_sin;    /*   sized by the run, never by the file's context_length */
    size_t n_floats;
    float *buffer;      /* the one activation buffer */
    LayerActs *layers;  /* L views (inference: L copies of the same views) */
    float *resid_final; /* (B,T,C)  output of the last block */
    float *final_rstd;  /* (B,T) */
    float *final_norm;  /* (B,T,C) */
    float *logits;      /* (B,T,V)  three uses in turn: the logits of model_forward;
                                     after model_loss, their softmax probabilities; after
                                     model_backward, the loss gradient dL/dlogits. With
                                     last_logits, one row per sequence: (B,V) */
    float *losses;      /* (B,T)    per-token loss, from model_loss */
    void *linear_scratch; /* the activations of the largest product, in the weights' type's
                             activation format (empty when every weight is F32) */
    /* Inference: the KV cache, B slots of n_ctx positions per block. Each position holds
     * KVC keys (after RoPE) and KVC values, stored as kv_type: F32, or F16 / Q8_0 rows
     * (2x / ~3.8x smaller). Slot s of block l starts at row (l * B + s) * n_ctx. */
    uint32_t kv_type;
    size_t kv_row_bytes;  /* one position's KVC keys (or values) */
    uint8_t *kv_k, *kv_v;
    /* inference: model_forward's rows (T each): positions, slots, rows with logits */
    int *row_pos, *row_slot, *out_rows;
    /* attention's scratch, attention_scratch_stride floats per thread (ops.h) */
    float *attention_scratch;
    size_t attention_scratch_stride;
    /* inference: the LoRA adapters the products add (lora.h), borrowed; NULL: none */
    const struct LoraSet *lora;
} Activations;

/* Training (and evaluation): B sequences of T tokens, T <= the model's context. */
int activations_init(Activations *a, const Model *m, int B, int T, Error *err);

/* What an inference run holds. */
typedef struct {
    int slots;        /* sequences whose keys and values the cache holds */
    int max_tokens;   /* tokens one forward call may take, summed over its sequences */
    int n_ctx;        /* positions per slot; may exceed the model's
                         context, as llama.cpp's -c allows, though quality usually drops */
    uint32_t kv_type; /* the cache's type: GGML_TYPE_F32, _F16 or _Q8_0 (Q8_0 needs a head
                         size that is a multiple of 32) */
    bool all_logits;  /* logits for every token (tests, --show-probs over a prompt);
                         otherwise only for each sequence's last token, which saves the
                         largest product of a long prompt */
} InferenceShape;

int activations_init_inference(Activations *a, const Model *m, const InferenceShape *s,
                               Error *err);
/* Bytes activations_init_inference would allocate for s, counted without allocating: the
 * KV cache, the activations of one forward call (attention's scores grow with max_tokens
 * x heads x n_ctx), RoPE's tables and the scratch buffers. SIZE_MAX when even counting
 * runs out of memory. */
size_t activations_inference_bytes(const Model *m, const InferenceShape *s);
/* Bytes of the KV cache a's sizes and type take. */
size_t activations_cache_bytes(const Activations *a, const Model *m);
/* Bytes a KV cache of `slots` sequences of n_ctx positions of kv_type takes for a model of
 * this blueprint: keys and values, KVC elements each per position and layer. */
size_t model_kv_cache_bytes(const ModelConfig *c, int slots, int n_ctx, uint32_t kv_type);
void activations_free(Activations *a); /* NULL-safe */

/* Runs the model on tokens (B, T), row-major, for positions pos0 .. pos0+T-1, and leaves
 * logits (B, T, V) in a->logits ((B, V) with last_logits). Training mode needs pos0 == 0.
 * In inference mode sequence b is cache slot b: the new keys and values are stored in the
 * cache at pos0 (pos0 + T <= n_ctx, B * T <= a->T), and attention reads positions
 * 0 .. pos0+t of each sequence from it. */
void model_forward(const Model *m, Activations *a, const int *tokens, int B, int T, int pos0);

/* The rows of one inference forward pass, each a token of its own sequence: row i is
 * token[i] at position pos[i] of cache slot slot[i]. The rows of one slot come in order,
 * at consecutive positions that continue what the slot holds (infer.c checks that); rows of
 * other slots may lie between them. n <= a->T. The output layer runs only for the n_out
 * rows out_rows (ascending), whose logits go to logits (n_out, V). */
typedef struct {
    const int *token, *pos, *slot; /* (n) */
    int n;
    const int *out_rows;           /* (n_out) */
    int n_out;
    float *logits;                 /* (n_out, V) */
} ForwardRows;

/* One forward pass over rows of many sequences at their own positions: every product
 * reads the weights once for all n rows; RoPE, the cache and attention take each row at its
 * position in its slot (docs/architecture.md, "A batch of sequences"). */
void model_forward_rows(const Model *m, Activations *a, const ForwardRows *r);

/* Row `pos` of cache slot `slot` of block l, in the keys (a->kv_k) or values (a->kv_v):
 * kv_row_bytes bytes, at row (l * B + slot) * n_ctx + pos. */
uint8_t *activations_kv_row(const Activations *a, uint8_t *cache, int l, int slot, int pos);

/* Copies cache slot src's positions [from, to) of every block into slot dst. */
void activations_cache_copy(Activations *a, const Model *m, int src, int dst, int from, int to);

/* Forgets positions [p0, p1) of cache slot `slot`, which holds len positions: those from
 * p1 on move down to p0, their keys re-rotated for their new positions (model_acts.c says
 * how exactly, per cache type). 0 <= p0 <= p1 <= len. */
int activations_cache_forget(Activations *a, const Model *m, int slot, int p0, int p1, int len,
                             Error *err);

/* Cross-entropy of the logits of the last forward against targets (B, T): returns the mean
 * loss over the targets that count (not LOSS_IGNORED; 0 when none does) and leaves
 * per-token losses in a->losses (logits become probabilities). */
float model_loss(const Model *m, Activations *a, const int *targets, int B, int T);

/* Gradient scratch for the activations of one block at a time (backward walks the blocks
 * one by one and reuses it). */
typedef struct {
    size_t n_floats;
    float *buffer;
    float *d_resid;    /* (B,T,C)  gradient of the residual stream at the current block */
    float *d_norm;     /* (B,T,C) */
    float *d_qkv;      /* (B,T,QKV) */
    float *d_att;      /* (B,H,T,T) */
    float *d_att_out;  /* (B,T,C) */
    float *d_gate_up;  /* (B,T,2F) */
    float *d_swiglu;   /* (B,T,F) */
} GradScratch;

int grad_scratch_init(GradScratch *g, const Model *m, int B, int T, Error *err);
void grad_scratch_free(GradScratch *g);

/* Writes into grads (viewed with the model's layout) the gradient of
 * loss_scale * mean(token losses) for the last training forward + model_loss; what grads
 * held before is overwritten, so they need no clearing. */
void model_backward(const Model *m, Activations *a, GradScratch *g, const ParamViews *grads,
                    const int *tokens, const int *targets, int B, int T, float loss_scale);

#endif
