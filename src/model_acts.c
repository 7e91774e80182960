/* The run state: the activation buffer of a forward pass (training keeps every block's,
 * inference one shared set), RoPE's tables, the scratch of the products and of attention,
 * and the KV cache of inference (its layout and the rows' addresses). */
#include "model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "model_internal.h"
#include "ops.h"
#include "quant.h"

/* Training keeps B x T rows of everything and scores every token against the T of its
 * sequence; inference has at most T rows per call (over all its sequences), each scored
 * against up to n_ctx cached positions, and with last_logits one row of logits per slot. */
ActSizes act_sizes(const Model *m, const Activations *a)
{
    const ModelConfig *c = &m->config;
    bool training = a->mode == ACTS_TRAINING;
    size_t rows = training ? (size_t)a->B * a->T : (size_t)a->T;
    ActSizes s = {
        .BT = rows,
        .C = (size_t)c->dim,
        .QKV = (size_t)c->dim + 2 * (size_t)model_kv_dim(c),
        .F = (size_t)c->ffn_dim,
        .att = rows * c->n_heads * (size_t)(training ? a->T : a->n_ctx),
        .logit_rows = a->last_logits ? (size_t)a->B : rows,
    };
    return s;
}

/* The one place that knows the order of the activation buffer. */
static size_t acts_walk(Activations *a, const Model *m, float *base)
{
    const ModelConfig *c = &m->config;
    ActSizes s = act_sizes(m, a);
    size_t offset = 0;
    int stored_layers = a->mode == ACTS_TRAINING ? c->n_layers : 1;
    for (int l = 0; l < stored_layers; l++) {
        LayerActs *x = &a->layers[l];
#define X(field, size) x->field = slice_take(base, &offset, size);
        MODEL_LAYER_ACTS(X, s.BT, s.C, s.QKV, s.F, s.att)
#undef X
    }
    a->resid_final = slice_take(base, &offset, s.BT * s.C);
    a->final_rstd = slice_take(base, &offset, s.BT);
    a->final_norm = slice_take(base, &offset, s.BT * s.C);
    a->logits = slice_take(base, &offset, s.logit_rows * (size_t)c->vocab_size);
    a->losses = slice_take(base, &offset, s.BT);
    if (a->mode == ACTS_INFERENCE) {
        /* In inference every block reads and writes one residual stream in place: the
         * block input, its middle and its output are the same rows. */
        for (int l = 0; l < c->n_layers; l++) {
            a->layers[l] = a->layers[0];
            a->layers[l].resid_in = a->layers[l].resid_mid = a->resid_final;
        }
    }
    return offset;
}

/* Floats in each of RoPE's two tables (cos and sin) for n_ctx positions. */
static size_t rope_table_floats(const ModelConfig *c, int n_ctx)
{
    return (size_t)n_ctx * (size_t)(model_head_size(c) / 2);
}

/* cos and sin of every angle RoPE uses at the run's n_ctx positions. */
static int rope_tables_alloc(Activations *a, const ModelConfig *c)
{
    int hs = model_head_size(c);
    size_t n = rope_table_floats(c, a->n_ctx);
    a->rope_cos = float_buffer_alloc(n);
    a->rope_sin = float_buffer_alloc(n);
    if (!a->rope_cos || !a->rope_sin)
        return -1;
    float scaling = c->rope_scaling > 0.0f ? c->rope_scaling : 1.0f;
    rope_tables_init(a->rope_cos, a->rope_sin, a->n_ctx, hs, c->rope_base, scaling);
    return 0;
}

/* The largest quantized copy of the activations one product needs: every weight's
 * linear_scratch_bytes for the batch's rows. */
static size_t linear_scratch_size(const Model *m, int rows)
{
    size_t most = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        size_t bytes = linear_scratch_bytes(m->tensors[i].weight, rows);
        most = bytes > most ? bytes : most;
    }
    return most;
}

/* Attention's scratch for n_kv keys stored as kv_type, for every thread OpenMP runs. */
static size_t attention_scratch_stride(const ModelConfig *c, int n_kv, uint32_t kv_type)
{
    return attention_scratch_floats(model_head_size(c), model_kv_dim(c), n_kv, kv_type);
}

static int attention_scratch_alloc(Activations *a, const ModelConfig *c, int n_kv,
                                   uint32_t kv_type)
{
    a->attention_scratch_stride = attention_scratch_stride(c, n_kv, kv_type);
    a->attention_scratch =
        float_buffer_alloc((size_t)compute_max_threads() * a->attention_scratch_stride);
    return a->attention_scratch ? 0 : -1;
}

/* The KV cache of B slots of n_ctx positions per block, stored as kv_type. */
static int kv_cache_alloc(Activations *a, const Model *m, uint32_t kv_type, Error *err)
{
    int hs = model_head_size(&m->config), kvc = model_kv_dim(&m->config);
    const char *name = gguf_tensor_type_name(kv_type);
    if (kv_type != GGML_TYPE_F32 && kv_type != GGML_TYPE_F16 && kv_type != GGML_TYPE_Q8_0)
        return error_set(err, "KV cache type %s: quill stores f32, f16 or q8_0",
                         name ? name : "unknown");
    if (hs % quant_block_size(kv_type) != 0)
        return error_set(err, "a %s KV cache stores blocks of %d values per head, and this "
                              "model's head size is %d",
                         name, (int)quant_block_size(kv_type), hs);
    a->kv_type = kv_type;
    a->kv_row_bytes = quant_row_bytes(kv_type, kvc);
    size_t rows = (size_t)m->config.n_layers * a->B * a->n_ctx;
    a->kv_k = malloc(rows * a->kv_row_bytes);
    a->kv_v = malloc(rows * a->kv_row_bytes);
    if (!a->kv_k || !a->kv_v || attention_scratch_alloc(a, &m->config, a->n_ctx, kv_type) != 0)
        return error_set(err, "out of memory for a KV cache of %zu MB",
                         2 * rows * a->kv_row_bytes >> 20);
    return 0;
}

size_t model_kv_cache_bytes(const ModelConfig *c, int slots, int n_ctx, uint32_t kv_type)
{
    size_t row_bytes = quant_row_bytes(kv_type, model_kv_dim(c));
    return 2 * (size_t)c->n_layers * (size_t)slots * (size_t)n_ctx * row_bytes;
}

size_t activations_cache_bytes(const Activations *a, const Model *m)
{
    return model_kv_cache_bytes(&m->config, a->B, a->n_ctx, a->kv_type);
}

static int activations_alloc(Activations *a, const Model *m, ActsMode mode, int B, int T,
                             int n_ctx, Error *err)
{
    a->mode = mode;
    a->B = B;
    a->T = T;
    a->n_ctx = mode == ACTS_INFERENCE ? n_ctx : T;
    a->layers = calloc((size_t)m->config.n_layers, sizeof *a->layers);
    size_t scratch = linear_scratch_size(m, mode == ACTS_INFERENCE ? T : B * T);
    a->linear_scratch = scratch ? malloc(scratch) : NULL;
    if (!a->layers || rope_tables_alloc(a, &m->config) != 0 ||
        (scratch && !a->linear_scratch)) {
        activations_free(a);
        return error_set(err, "out of memory for activations");
    }
    a->n_floats = acts_walk(a, m, NULL);
    a->buffer = float_buffer_alloc(a->n_floats);
    if (!a->buffer) {
        size_t megabytes = a->n_floats * sizeof(float) >> 20; /* before the free clears it */
        activations_free(a);
        return error_set(err, "out of memory for %zu MB of activations", megabytes);
    }
    acts_walk(a, m, a->buffer);
    return 0;
}

int activations_init(Activations *a, const Model *m, int B, int T, Error *err)
{
    memset(a, 0, sizeof *a);
    if (B <= 0 || T <= 0)
        return error_set(err, "activations: batch %d x %d tokens is empty", B, T);
    if (T > m->config.context)
        return error_set(err, "sequence length %d exceeds the model context %d", T,
                         m->config.context);
    if (activations_alloc(a, m, ACTS_TRAINING, B, T, T, err) != 0)
        return -1;
    if (attention_scratch_alloc(a, &m->config, T, GGML_TYPE_F32) != 0) {
        activations_free(a);
        return error_set(err, "out of memory for attention's scratch");
    }
    return 0;
}

int activations_init_inference(Activations *a, const Model *m, const InferenceShape *s,
                               Error *err)
{
    memset(a, 0, sizeof *a);
    if (s->slots <= 0 || s->max_tokens <= 0)
        return error_set(err, "activations: %d slots of %d tokens is empty", s->slots,
                         s->max_tokens);
    if (s->n_ctx <= 0)
        return error_set(err, "activations: a cache of %d positions", s->n_ctx);
    a->last_logits = !s->all_logits;
    if (activations_alloc(a, m, ACTS_INFERENCE, s->slots, s->max_tokens, s->n_ctx, err) != 0)
        return -1;
    size_t rows = (size_t)s->max_tokens;
    a->row_pos = malloc(rows * sizeof *a->row_pos);
    a->row_slot = malloc(rows * sizeof *a->row_slot);
    a->out_rows = malloc(rows * sizeof *a->out_rows);
    if (!a->row_pos || !a->row_slot || !a->out_rows) {
        activations_free(a);
        return error_set(err, "out of memory for activations");
    }
    if (kv_cache_alloc(a, m, s->kv_type, err) != 0) {
        activations_free(a);
        return -1;
    }
    return 0;
}

size_t activations_inference_bytes(const Model *m, const InferenceShape *s)
{
    const ModelConfig *c = &m->config;
    LayerActs *layers = calloc((size_t)c->n_layers, sizeof *layers); /* acts_walk's views */
    if (!layers)
        return SIZE_MAX;
    Activations a = {.mode = ACTS_INFERENCE, .B = s->slots, .T = s->max_tokens,
                     .n_ctx = s->n_ctx, .last_logits = !s->all_logits, .layers = layers};
    size_t floats = acts_walk(&a, m, NULL) + 2 * rope_table_floats(c, s->n_ctx) +
                    (size_t)compute_max_threads() * attention_scratch_stride(c, s->n_ctx,
                                                                             s->kv_type);
    free(layers);
    return floats * sizeof(float) + 3 * (size_t)s->max_tokens * sizeof(int) +
           linear_scratch_size(m, s->max_tokens) +
           model_kv_cache_bytes(c, s->slots, s->n_ctx, s->kv_type);
}

void activations_free(Activations *a)
{
    if (!a)
        return;
    free(a->rope_cos);
    free(a->rope_sin);
    free(a->buffer);
    free(a->layers);
    free(a->linear_scratch);
    free(a->kv_k);
    free(a->kv_v);
    free(a->attention_scratch);
    free(a->row_pos);
    free(a->row_slot);
    free(a->out_rows);
    memset(a, 0, sizeof *a);
}

/* ---- the KV cache ------------------------------------------------------------------- */

uint8_t *activations_kv_row(const Activations *a, uint8_t *cache, int l, int slot, int pos)
{
    return cache + (((size_t)l * a->B + slot) * a->n_ctx + pos) * a->kv_row_bytes;
}

void activations_cache_copy(Activations *a, const Model *m, int src, int dst, int from, int to)
{
    if (to <= from || src == dst)
        return;
    size_t bytes = (size_t)(to - from) * a->kv_row_bytes;
    for (int l = 0; l < m->config.n_layers; l++) {
        memcpy(activations_kv_row(a, a->kv_k, l, dst, from), activations_kv_row(a, a->kv_k, l, src, from), bytes);
        memcpy(activations_kv_row(a, a->kv_v, l, dst, from), activations_kv_row(a, a->kv_v, l, src, from), bytes);
    }
}

/* Positions from p1 on, moved down to p0, carry keys rotated for where they were: RoPE
 * turns each pair of a key by (position x frequency), so turning it by -(p1 - p0) x
 * frequency more gives the key of its new position (rotations add). That is RoPE's
 * backward at position p1 - p0. An F32 cache turns in place, exactly as far as rounding
 * goes; F16 and Q8_0 rows are decoded, turned and stored again, one more rounding. */
int activations_cache_forget(Activations *a, const Model *m, int slot, int p0, int p1, int len,
                             Error *err)
{
    const ModelConfig *c = &m->config;
    int kvc = model_kv_dim(c), moved = len - p1, d = p1 - p0;
    if (d == 0 || moved == 0)
        return 0;
    bool f32 = a->kv_type == GGML_TYPE_F32;
    float *decoded = f32 ? NULL : malloc((size_t)kvc * sizeof *decoded);
    if (!f32 && !decoded)
        return error_set(err, "out of memory");
    size_t bytes = (size_t)moved * a->kv_row_bytes;
    for (int l = 0; l < c->n_layers; l++) {
        memmove(activations_kv_row(a, a->kv_k, l, slot, p0),
                activations_kv_row(a, a->kv_k, l, slot, p1), bytes);
        memmove(activations_kv_row(a, a->kv_v, l, slot, p0),
                activations_kv_row(a, a->kv_v, l, slot, p1), bytes);
        for (int p = p0; p < p0 + moved; p++) {
            uint8_t *key = activations_kv_row(a, a->kv_k, l, slot, p);
            float *x = f32 ? (float *)key : decoded;
            if (!f32)
                quant_dequantize_rows_fast(a->kv_type, key, 0, x, 1, kvc);
            rope_backward(x, 1, 1, kvc, c->n_kv_heads, model_head_size(c), d, a->rope_cos,
                          a->rope_sin);
            if (!f32)
                quant_quantize_row_fast(a->kv_type, x, key, kvc);
        }
    }
    free(decoded);
    return 0;
}
