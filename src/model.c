/* The forward pass (training, prompts and decoding steps) and the backward pass of
 * training. The parameters are in model_params.c, the GGUF binding in model_gguf.c, the
 * activations and the KV cache in model_acts.c. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "model_internal.h"
#include "ops.h"
#include "quant.h"

/* ---- forward ------------------------------------------------------------------------ */

/* Training: q, k and v all come from the block's own qkv rows. */
static AttentionShape attention_shape_training(const ModelConfig *c, const Activations *a,
                                                int B, int T)
{
    int qkv = c->dim + 2 * model_kv_dim(c);
    return (AttentionShape){
        .B = B, .T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hs = model_head_size(c),
        .pos0 = 0, .n_kv = T, .q_stride = qkv, .kv_stride = qkv,
        .kv_seq_stride = (size_t)T * qkv, .scratch = a->attention_scratch,
        .scratch_stride = a->attention_scratch_stride,
    };
}

/* Inference: q from the qkv rows, k and v from the cache (n_ctx positions per slot), for
 * B sequences (slots[b]) of T new rows each from position pos0, or, decoding (T = 1), B
 * rows each at its own position pos[b]. */
static AttentionShape attention_shape_cached(const ModelConfig *c, const Activations *a, int B,
                                             int T, int pos0, const int *slots, const int *pos)
{
    int kvc = model_kv_dim(c), n_kv = pos0 + T;
    for (int b = 0; pos && b < B; b++)
        n_kv = pos[b] + 1 > n_kv ? pos[b] + 1 : n_kv;
    return (AttentionShape){
        .B = B, .T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hs = model_head_size(c),
        .pos0 = pos0, .n_kv = n_kv, .q_stride = c->dim + 2 * kvc, .kv_stride = kvc,
        .kv_seq_stride = (size_t)a->n_ctx * kvc, .kv_slot = slots, .pos = pos,
        .kv_type = a->kv_type, .kv_row_bytes = a->kv_row_bytes, .kv_slot_rows = a->n_ctx,
        .scratch = a->attention_scratch, .scratch_stride = a->attention_scratch_stride,
    };
}

/* Stores each row's key and value from the qkv rows into its slot's cache of block l, at
 * its position, in the cache's type. */
static void kv_cache_store(const ModelConfig *c, Activations *a, int l, const float *qkv,
                           const ForwardRows *r)
{
    size_t kvc = (size_t)model_kv_dim(c), qkv_stride = c->dim + 2 * kvc;
    for (int i = 0; i < r->n; i++) {
        const float *row = qkv + (size_t)i * qkv_stride;
        quant_quantize_row_fast(a->kv_type, row + c->dim,
                                activations_kv_row(a, a->kv_k, l, r->slot[i], r->pos[i]),
                                (int64_t)kvc);
        quant_quantize_row_fast(a->kv_type, row + c->dim + kvc,
                                activations_kv_row(a, a->kv_v, l, r->slot[i], r->pos[i]),
                                (int64_t)kvc);
    }
}

/* Rows from i on that belong to row i's slot: a run at consecutive positions (a prompt's
 * chunk), or 1 (a decoding row). */
static int run_length(const ForwardRows *r, int i)
{
    int j = i + 1;
    while (j < r->n && r->slot[j] == r->slot[i])
        j++;
    return j - i;
}

/* Inference's attention for the rows of r: RoPE at each row's position, the keys and values
 * into the cache, then attention over the cache, by stretches of rows: a run of one slot's
 * rows (a prompt's chunk) goes to the tiled kernels as one sequence of T rows; consecutive
 * single rows of different slots (decoding steps) go to the decoding kernel together, each
 * at its own position. Every row's key is stored before any attention runs, so a row sees
 * the keys of the rows of its sequence before it in the batch. */
static void attention_cached(const ModelConfig *c, Activations *a, int l, LayerActs *x,
                             const ForwardRows *r)
{
    int C = c->dim, hs = model_head_size(c), QKV = C + 2 * model_kv_dim(c);
    for (int i = 0, len; i < r->n; i += len) {
        len = run_length(r, i);
        float *q = x->qkv + (size_t)i * QKV;
        rope_forward(q, 1, len, QKV, c->n_heads, hs, r->pos[i], a->rope_cos, a->rope_sin);
        rope_forward(q + C, 1, len, QKV, c->n_kv_heads, hs, r->pos[i], a->rope_cos,
                     a->rope_sin);
    }
    kv_cache_store(c, a, l, x->qkv, r);
    const void *k = activations_kv_row(a, a->kv_k, l, 0, 0);
    const void *v = activations_kv_row(a, a->kv_v, l, 0, 0);
    for (int i = 0, n; i < r->n; i += n) {
        AttentionShape s;
        n = run_length(r, i);
        if (n > 1) {
            s = attention_shape_cached(c, a, 1, n, r->pos[i], r->slot + i, NULL);
        } else {
            while (i + n < r->n && run_length(r, i + n) == 1)
                n++;
            s = attention_shape_cached(c, a, n, 1, 0, r->slot + i, r->pos + i);
        }
        attention_forward(x->att_out + (size_t)i * C, x->att, x->qkv + (size_t)i * QKV, k, v,
                          &s);
    }
}

/* Training's attention: the B sequences of T rows at positions 0..T-1 read their own keys
 * and values from the qkv rows. */
static void attention_training(const ModelConfig *c, Activations *a, LayerActs *x, int B, int T)
{
    int C = c->dim, hs = model_head_size(c), KVC = model_kv_dim(c), QKV = C + 2 * KVC;
    rope_forward(x->qkv, B, T, QKV, c->n_heads, hs, 0, a->rope_cos, a->rope_sin);
    rope_forward(x->qkv + C, B, T, QKV, c->n_kv_heads, hs, 0, a->rope_cos, a->rope_sin);
    AttentionShape s = attention_shape_training(c, a, B, T);
    attention_forward(x->att_out, x->att, x->qkv, x->qkv + C, x->qkv + C + KVC, &s);
}

/* A residual connection, out = in + branch, is computed as "copy in to out, then let the
 * branch's matmul add into out" (beta = 1). In inference out and in are the same rows. */
static void residual_copy(float *out, const float *in, size_t n)
{
    if (out != in)
        memcpy(out, in, n * sizeof(float));
}

/* True when b's rows follow a's in memory, in the same type: the two matrices are then one
 * taller matrix. quill's own parameter buffer lays q, k, v (and gate, up) out that way. */
static bool weights_adjacent(const WeightMatrix *a, const WeightMatrix *b)
{
    return a->type == b->type && a->cols == b->cols &&
           (const char *)a->data + quant_row_bytes(a->type, a->cols) * a->rows ==
               (const char *)b->data;
}

/* out (N, ldo) = inp . w^T (plus out when beta = 1), and the terms of the run's LoRA
 * adapters for w when it has some (lora.h): nothing more to do, nor to pay, without. */
static void linear(const Activations *a, float *out, int ldo, const float *inp, int N,
                   const WeightMatrix *w, float beta)
{
    linear_forward(out, ldo, inp, N, w, beta, a->linear_scratch);
    if (a->lora)
        lora_forward(a->lora, w, out, ldo, inp, N);
}

/* out (N, ldo) = inp . [w0; w1; w2]^T, the matrices' outputs side by side in each row (the
 * q|k|v or gate|up row): one product when they are adjacent in memory (n_parts of them),
 * one product each otherwise (a file lays tensors out as it likes). Adapters change each
 * part's own columns. */
static void linear_forward_parts(const Activations *a, float *out, int ldo, const float *inp,
                                 int N, const WeightMatrix *const *parts, int n_parts)
{
    WeightMatrix fused = *parts[0];
    bool adjacent = true;
    for (int i = 1; i < n_parts; i++) {
        adjacent = adjacent && weights_adjacent(parts[i - 1], parts[i]);
        fused.rows += parts[i]->rows;
    }
    if (adjacent)
        linear_forward(out, ldo, inp, N, &fused, 0.0f, a->linear_scratch);
    for (int i = 0, col = 0; i < n_parts; col += parts[i]->rows, i++) {
        if (!adjacent)
            linear_forward(out + col, ldo, inp, N, parts[i], 0.0f, a->linear_scratch);
        if (a->lora)
            lora_forward(a->lora, parts[i], out + col, ldo, inp, N);
    }
}

/* One block over BT rows: training's B x T (r NULL), or inference's rows r. */
static void block_forward(const Model *m, Activations *a, int l, int B, int T,
                          const ForwardRows *r, float *resid_out)
{
    const ModelConfig *c = &m->config;
    const LayerWeights *w = &m->wt.layers[l];
    LayerActs *x = &a->layers[l];
    int BT = r ? r->n : B * T, C = c->dim, F = c->ffn_dim, QKV = C + 2 * model_kv_dim(c);

    /* attention branch: resid_mid = resid_in + attn_output(attention(rmsnorm(resid_in))) */
    rmsnorm_forward(x->attn_norm, x->attn_rstd, x->resid_in, w->attn_norm.data, BT, C,
                    c->norm_eps);
    const WeightMatrix *qkv[3] = {&w->attn_q, &w->attn_k, &w->attn_v};
    linear_forward_parts(a, x->qkv, QKV, x->attn_norm, BT, qkv, 3);
    if (r)
        attention_cached(c, a, l, x, r);
    else
        attention_training(c, a, x, B, T);
    residual_copy(x->resid_mid, x->resid_in, (size_t)BT * C);
    linear(a, x->resid_mid, C, x->att_out, BT, &w->attn_output, 1.0f);

    /* MLP branch: resid_out = resid_mid + ffn_down(swiglu(ffn_gate|up(rmsnorm(resid_mid)))) */
    rmsnorm_forward(x->ffn_norm, x->ffn_rstd, x->resid_mid, w->ffn_norm.data, BT, C, c->norm_eps);
    const WeightMatrix *gate_up[2] = {&w->ffn_gate, &w->ffn_up};
    linear_forward_parts(a, x->gate_up, 2 * F, x->ffn_norm, BT, gate_up, 2);
    swiglu_forward(x->swiglu, x->gate_up, BT, F);
    residual_copy(resid_out, x->resid_mid, (size_t)BT * C);
    linear(a, resid_out, C, x->swiglu, BT, &w->ffn_down, 1.0f);
}

/* The embedding and every block, over BT rows (training's B x T, or inference's r). */
static void blocks_forward(const Model *m, Activations *a, const int *tokens, int B, int T,
                           const ForwardRows *r)
{
    const ModelConfig *c = &m->config;
    embedding_forward(a->layers[0].resid_in, tokens, &m->wt.token_embd, r ? r->n : B * T);
    for (int l = 0; l < c->n_layers; l++) {
        float *resid_out = l + 1 < c->n_layers ? a->layers[l + 1].resid_in : a->resid_final;
        block_forward(m, a, l, B, T, r, resid_out);
    }
}

/* The output layer for n_out rows of the last block's output (rows[k], or rows 0..n_out-1
 * when rows is NULL): the final norm into consecutive rows, then one product into logits
 * (n_out, V). Only the rows whose logits are wanted pay for the largest product. */
static void output_forward(const Model *m, Activations *a, const int *rows, int n_out,
                           float *logits)
{
    const ModelConfig *c = &m->config;
    int C = c->dim;
    if (rows)
        for (int k = 0; k < n_out; k++)
            rmsnorm_forward(a->final_norm + (size_t)k * C, a->final_rstd + k,
                            a->resid_final + (size_t)rows[k] * C, m->wt.output_norm.data, 1, C,
                            c->norm_eps);
    else
        rmsnorm_forward(a->final_norm, a->final_rstd, a->resid_final, m->wt.output_norm.data,
                        n_out, C, c->norm_eps);
    linear(a, logits, c->vocab_size, a->final_norm, n_out, &m->wt.output, 0.0f);
}

void model_forward_rows(const Model *m, Activations *a, const ForwardRows *r)
{
    blocks_forward(m, a, r->token, 0, 0, r);
    if (r->n_out > 0)
        output_forward(m, a, r->out_rows, r->n_out, r->logits);
}

/* Inference's rows for B sequences of T tokens at positions pos0.., sequence b in slot b,
 * in the activations' row arrays; the logits of each sequence's last row (last_logits) or
 * of every row, into a->logits. */
static ForwardRows sequences_as_rows(Activations *a, const int *tokens, int B, int T, int pos0)
{
    ForwardRows r = {.token = tokens, .pos = a->row_pos, .slot = a->row_slot, .n = B * T,
                     .out_rows = a->out_rows, .logits = a->logits};
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            a->row_pos[b * T + t] = pos0 + t;
            a->row_slot[b * T + t] = b;
            if (!a->last_logits || t == T - 1)
                a->out_rows[r.n_out++] = b * T + t;
        }
    }
    return r;
}

void model_forward(const Model *m, Activations *a, const int *tokens, int B, int T, int pos0)
{
    if (a->mode == ACTS_INFERENCE) {
        ForwardRows r = sequences_as_rows(a, tokens, B, T, pos0);
        model_forward_rows(m, a, &r);
        return;
    }
    blocks_forward(m, a, tokens, B, T, NULL);
    output_forward(m, a, NULL, B * T, a->logits);
}

float model_loss(const Model *m, Activations *a, const int *targets, int B, int T)
{
    int BT = B * T;
    crossentropy_forward(a->losses, a->logits, targets, BT, m->config.vocab_size);
    double sum = 0.0; /* in token order, in double: the same mean for any thread count */
    for (int n = 0; n < BT; n++)
        sum += a->losses[n];
    int counted = crossentropy_counted(targets, BT);
    return counted > 0 ? (float)(sum / counted) : 0.0f;
}

/* ---- backward ----------------------------------------------------------------------- */

int grad_scratch_init(GradScratch *g, const Model *m, int B, int T, Error *err)
{
    memset(g, 0, sizeof *g);
    Activations shape = {.mode = ACTS_TRAINING, .B = B, .T = T};
    ActSizes s = act_sizes(m, &shape);
    size_t sizes[] = {s.BT * s.C, s.BT * s.C, s.BT * s.QKV, s.att,
                      s.BT * s.C, s.BT * 2 * s.F, s.BT * s.F};
    float **views[] = {&g->d_resid,   &g->d_norm,    &g->d_qkv,   &g->d_att,
                       &g->d_att_out, &g->d_gate_up, &g->d_swiglu};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        g->n_floats += sizes[i];
    g->buffer = float_buffer_alloc(g->n_floats);
    if (!g->buffer)
        return error_set(err, "out of memory for %zu MB of gradient scratch",
                         g->n_floats * sizeof(float) >> 20);
    size_t offset = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        *views[i] = slice_take(g->buffer, &offset, sizes[i]);
    return 0;
}

void grad_scratch_free(GradScratch *g)
{
    if (!g)
        return;
    free(g->buffer);
    memset(g, 0, sizeof *g);
}

/* Walks block_forward backwards. On entry g->d_resid holds dL/d(resid_out); on return
 * dL/d(resid_in). The residual connections pass d_resid through unchanged, and each
 * branch's rmsnorm_backward adds the branch's contribution into it. */
static void block_backward(const Model *m, Activations *a, GradScratch *g, const LayerParams *dw,
                           int l, int B, int T)
{
    const ModelConfig *c = &m->config;
    const LayerParams *w = &m->w.layers[l];
    const LayerActs *x = &a->layers[l];
    int BT = B * T, C = c->dim, F = c->ffn_dim, hs = model_head_size(c);
    int KVC = model_kv_dim(c), QKV = C + 2 * KVC;

    /* MLP branch */
    matmul_backward(g->d_swiglu, dw->ffn_down, g->d_resid, x->swiglu, w->ffn_down, BT, F, C);
    swiglu_backward(g->d_gate_up, g->d_swiglu, x->gate_up, BT, F);
    matmul_backward(g->d_norm, dw->ffn_gate, g->d_gate_up, x->ffn_norm, w->ffn_gate, BT, C, 2 * F);
    rmsnorm_backward(g->d_resid, dw->ffn_norm, g->d_norm, x->resid_mid, w->ffn_norm, x->ffn_rstd,
                     BT, C);

    /* attention branch */
    matmul_backward(g->d_att_out, dw->attn_output, g->d_resid, x->att_out, w->attn_output, BT, C,
                    C);
    AttentionShape s = attention_shape_training(c, a, B, T);
    attention_backward(g->d_qkv, g->d_qkv + C, g->d_qkv + C + KVC, g->d_att, g->d_att_out, x->qkv,
                       x->qkv + C, x->qkv + C + KVC, x->att, &s);
    rope_backward(g->d_qkv, B, T, QKV, c->n_heads, hs, 0, a->rope_cos, a->rope_sin);
    rope_backward(g->d_qkv + C, B, T, QKV, c->n_kv_heads, hs, 0, a->rope_cos, a->rope_sin);
    matmul_backward(g->d_norm, dw->attn_q, g->d_qkv, x->attn_norm, w->attn_q, BT, C, QKV);
    rmsnorm_backward(g->d_resid, dw->attn_norm, g->d_norm, x->resid_in, w->attn_norm,
                     x->attn_rstd, BT, C);
}

void model_backward(const Model *m, Activations *a, GradScratch *g, const ParamViews *grads,
                    const int *tokens, const int *targets, int B, int T, float loss_scale)
{
    const ModelConfig *c = &m->config;
    int BT = B * T, C = c->dim, V = c->vocab_size;

    /* loss = loss_scale * mean over BT tokens */
    crossentropy_backward(a->logits, targets, BT, V, loss_scale / (float)BT);
    /* Every gradient is written, not added to: the caller need not clear ~4 bytes per
     * parameter first (103 MB for bench-m, a pass of its own on one thread). The one
     * exception is the embedding table, whose rows collect a gradient per occurrence of
     * their token: with tied embeddings the output projection writes it first, otherwise
     * it starts from zero. */
    matmul_backward(g->d_norm, grads->output, a->logits, a->final_norm, m->w.output, BT, C, V);
    if (!c->tie_embeddings)
        memset(grads->token_embd, 0, (size_t)V * C * sizeof(float));
    memset(g->d_resid, 0, (size_t)BT * C * sizeof(float));
    rmsnorm_backward(g->d_resid, grads->output_norm, g->d_norm, a->resid_final, m->w.output_norm,
                     a->final_rstd, BT, C);
    for (int l = c->n_layers - 1; l >= 0; l--)
        block_backward(m, a, g, &grads->layers[l], l, B, T);
    embedding_backward(grads->token_embd, g->d_resid, tokens, BT, C);
}
