#include "lora_train.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "model_internal.h"
#include "ops.h"
#include "quant.h"
#include "rng.h"

/* Each --lora-targets name, the block field it adapts, in the order the adapter's buffer
 * (and its file) lists a block's pairs. */
static const struct {
    const char *name;
    const char *field;
    size_t offset; /* of the WeightMatrix in LayerWeights */
} TARGETS[] = {
    {"q", "attn_q", offsetof(LayerWeights, attn_q)},
    {"k", "attn_k", offsetof(LayerWeights, attn_k)},
    {"v", "attn_v", offsetof(LayerWeights, attn_v)},
    {"o", "attn_output", offsetof(LayerWeights, attn_output)},
    {"gate", "ffn_gate", offsetof(LayerWeights, ffn_gate)},
    {"up", "ffn_up", offsetof(LayerWeights, ffn_up)},
    {"down", "ffn_down", offsetof(LayerWeights, ffn_down)},
};
enum { N_TARGETS = sizeof TARGETS / sizeof *TARGETS };

int lora_targets_parse(const char *list, unsigned *mask, Error *err)
{
    *mask = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int j = 0; j < N_TARGETS && found < 0; j++)
            if (strlen(TARGETS[j].name) == len && strncmp(p, TARGETS[j].name, len) == 0)
                found = j;
        if (found < 0)
            return error_set(err, "--lora-targets: no projection '%.*s' (the names are q, k, "
                                  "v, o, gate, up, down)",
                             (int)len, p);
        *mask |= 1u << found;
        p += len + (p[len] == ',');
    }
    if (*mask == 0)
        return error_set(err, "--lora-targets: no projection named (the names are q, k, v, "
                              "o, gate, up, down)");
    return 0;
}

void lora_targets_format(unsigned mask, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int j = 0; j < N_TARGETS; j++)
        if (mask & (1u << j) && used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? "," : "",
                                     TARGETS[j].name);
}

static int popcount(unsigned x)
{
    int n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

/* Binds pair k to the base weight w and to its place in the buffer, counting the floats. */
static void pair_layout(LoraTrain *t, int k, const WeightMatrix *w, int layer, const char *field)
{
    size_t off = t->n_params, rank = (size_t)t->rank;
    t->offset[k] = off;
    snprintf(t->names[k], sizeof t->names[k], "blk.%d.%s.weight", layer, field);
    t->adapter.pairs[k] = (LoraPair){
        .target = w,
        .a = {GGML_TYPE_F32, NULL, t->rank, w->cols},
        .b = {GGML_TYPE_F32, NULL, w->rows, t->rank},
    };
    t->n_params += rank * (size_t)w->cols + (size_t)w->rows * rank;
}

/* A uniform in [-1/sqrt(in), 1/sqrt(in)], B zero (the buffer starts zeroed). */
static void pairs_init(LoraTrain *t, uint64_t seed)
{
    Rng rng;
    rng_seed(&rng, seed);
    for (int k = 0; k < t->adapter.n_pairs; k++) {
        LoraPair *p = &t->adapter.pairs[k];
        float *a = t->params + t->offset[k];
        p->a.data = a;
        p->b.data = a + (size_t)p->a.rows * p->a.cols;
        float bound = 1.0f / sqrtf((float)p->a.cols);
        for (size_t i = 0; i < (size_t)p->a.rows * p->a.cols; i++)
            a[i] = (2.0f * rng_uniform(&rng) - 1.0f) * bound;
    }
}

static int scratch_alloc(LoraTrain *t, const Model *m, int max_rows, Error *err)
{
    const ModelConfig *c = &m->config;
    size_t widest = (size_t)(c->dim > c->ffn_dim ? c->dim : c->ffn_dim);
    t->max_rows = max_rows;
    t->u = float_buffer_alloc((size_t)max_rows * t->rank);
    t->g = float_buffer_alloc((size_t)max_rows * t->rank);
    t->tile = float_buffer_alloc(LORA_TILE_ROWS * widest);
    t->d_gain = float_buffer_alloc((size_t)c->dim);
    if (!t->u || !t->g || !t->tile || !t->d_gain)
        return error_set(err, "out of memory for the adapter's backward scratch");
    return 0;
}

int lora_train_init(LoraTrain *t, const Model *m, int rank, float alpha, unsigned targets,
                    uint64_t seed, int max_rows, Error *err)
{
    memset(t, 0, sizeof *t);
    int per_layer = popcount(targets & LORA_TARGET_ALL), n = per_layer * m->config.n_layers;
    if (rank <= 0 || per_layer == 0)
        return error_set(err, "an adapter needs a rank of at least 1 and one target");
    t->rank = rank;
    t->alpha = alpha;
    t->targets = targets & LORA_TARGET_ALL;
    t->offset = calloc((size_t)n, sizeof *t->offset);
    t->names = calloc((size_t)n, sizeof *t->names);
    t->adapter.pairs = calloc((size_t)n, sizeof *t->adapter.pairs);
    if (!t->offset || !t->names || !t->adapter.pairs) {
        lora_train_free(t);
        return error_set(err, "out of memory for the adapter");
    }
    t->adapter.alpha = alpha;
    t->adapter.n_pairs = n;
    for (int l = 0, k = 0; l < m->config.n_layers; l++)
        for (int j = 0; j < N_TARGETS; j++)
            if (t->targets & (1u << j))
                pair_layout(t, k++,
                            (const WeightMatrix *)((const char *)&m->wt.layers[l] +
                                                   TARGETS[j].offset),
                            l, TARGETS[j].field);
    t->params = float_buffer_alloc(t->n_params);
    if (!t->params || scratch_alloc(t, m, max_rows, err) != 0) {
        lora_train_free(t);
        return error_set(err, "out of memory for an adapter of %zu parameters", t->n_params);
    }
    pairs_init(t, seed);
    return 0;
}

void lora_train_free(LoraTrain *t)
{
    if (!t)
        return;
    free(t->params);
    free(t->offset);
    free(t->names);
    free(t->adapter.pairs);
    free(t->u);
    free(t->g);
    free(t->tile);
    free(t->d_gain);
    memset(t, 0, sizeof *t);
}

/* ---- backward ------------------------------------------------------------------------ */

void linear_backward_input(float *dinp, const float *dout, int ldo, int N,
                           const WeightMatrix *w, float beta, float *tile)
{
    int in = w->cols;
    if (w->type == GGML_TYPE_F32) {
        gemm(false, false, N, in, w->rows, 1.0f, dout, ldo, w->data, in, beta, dinp, in);
        return;
    }
    /* dinp = sum over tiles of rows o of dout[:, o] . W[o, :]: each tile decoded once, its
     * rows on every thread */
    size_t row_bytes = quant_row_bytes(w->type, in);
    for (int o = 0; o < w->rows; o += LORA_TILE_ROWS) {
        int n = w->rows - o < LORA_TILE_ROWS ? w->rows - o : LORA_TILE_ROWS;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)
            quant_dequantize_rows_fast(w->type, (const char *)w->data + (size_t)(o + i) * row_bytes,
                                       row_bytes, tile + (size_t)i * in, 1, in);
        gemm(false, false, N, in, n, 1.0f, dout + o, ldo, tile, in, o == 0 ? beta : 1.0f, dinp,
             in);
    }
}

/* The pair that adapts w, or -1. */
static int pair_of(const LoraTrain *t, const WeightMatrix *w)
{
    for (int k = 0; k < t->adapter.n_pairs; k++)
        if (t->adapter.pairs[k].target == w)
            return k;
    return -1;
}

/* One projection y = W x + s B (A x) of N rows backwards: dx (N, in) = dy . W (+ dx with
 * beta = 1), and when w is adapted, its factors' gradients added to grads and the
 * adapter's share of dx added to dx. dy's rows are ldy floats apart (a slice of q|k|v). */
static void projection_backward(LoraTrain *t, float *grads, const WeightMatrix *w, float *dx,
                                const float *dy, int ldy, const float *x, int N, float beta)
{
    linear_backward_input(dx, dy, ldy, N, w, beta, t->tile);
    int k = pair_of(t, w);
    if (k < 0)
        return;
    const LoraPair *p = &t->adapter.pairs[k];
    int r = t->rank, in = p->a.cols, out = p->b.rows;
    float s = lora_pair_scale(&t->adapter, p, 1.0f);
    const float *A = p->a.data, *Bf = p->b.data;
    float *dA = grads + t->offset[k], *dB = dA + (size_t)r * in;
    const LoraSet *set = t->dropout;
    bool dropout = set && set->dropout > 0.0f;
    if (dropout) { /* x below is the masked input the forward pass multiplied by A */
        lora_dropout_apply(set, k, set->dropped, x, N, in);
        x = set->dropped;
    }
    gemm(false, true, N, r, in, 1.0f, x, in, A, in, 0.0f, t->u, r);     /* u = x A^T     */
    gemm(true, false, out, r, N, s, dy, ldy, t->u, r, 1.0f, dB, r);     /* dB += s dy^T u */
    gemm(false, false, N, r, out, 1.0f, dy, ldy, Bf, r, 0.0f, t->g, r); /* g = dy B      */
    gemm(true, false, r, in, N, s, t->g, r, x, in, 1.0f, dA, in);       /* dA += s g^T x  */
    if (!dropout) {
        gemm(false, false, N, in, r, s, t->g, r, A, in, 1.0f, dx, in);  /* dx += s g A    */
        return;
    }
    /* through the mask: dx += mask / (1 - p) * (s g A), the same mask as the forward's */
    gemm(false, false, N, in, r, s, t->g, r, A, in, 0.0f, set->dropped, in);
    lora_dropout_apply(set, k, set->dropped, set->dropped, N, in);
    for (size_t i = 0; i < (size_t)N * in; i++)
        dx[i] += set->dropped[i];
}

/* Walks block_forward backwards as model_backward's block_backward does, through the
 * frozen weights. On entry g->d_resid holds dL/d(resid_out); on return dL/d(resid_in). */
static void block_backward_frozen(LoraTrain *t, const Model *m, Activations *a, GradScratch *g,
                                  float *grads, int l, int B, int T)
{
    const ModelConfig *c = &m->config;
    const LayerWeights *w = &m->wt.layers[l];
    const LayerActs *x = &a->layers[l];
    int BT = B * T, C = c->dim, F = c->ffn_dim, hs = model_head_size(c);
    int KVC = model_kv_dim(c), QKV = C + 2 * KVC;

    /* MLP branch */
    projection_backward(t, grads, &w->ffn_down, g->d_swiglu, g->d_resid, C, x->swiglu, BT, 0.0f);
    swiglu_backward(g->d_gate_up, g->d_swiglu, x->gate_up, BT, F);
    projection_backward(t, grads, &w->ffn_gate, g->d_norm, g->d_gate_up, 2 * F, x->ffn_norm, BT,
                        0.0f);
    projection_backward(t, grads, &w->ffn_up, g->d_norm, g->d_gate_up + F, 2 * F, x->ffn_norm,
                        BT, 1.0f);
    rmsnorm_backward(g->d_resid, t->d_gain, g->d_norm, x->resid_mid, w->ffn_norm.data,
                     x->ffn_rstd, BT, C);

    /* attention branch */
    projection_backward(t, grads, &w->attn_output, g->d_att_out, g->d_resid, C, x->att_out, BT,
                        0.0f);
    AttentionShape s = {
        .B = B, .T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hs = hs, .n_kv = T,
        .q_stride = QKV, .kv_stride = QKV, .kv_seq_stride = (size_t)T * QKV,
        .scratch = a->attention_scratch, .scratch_stride = a->attention_scratch_stride,
    };
    attention_backward(g->d_qkv, g->d_qkv + C, g->d_qkv + C + KVC, g->d_att, g->d_att_out, x->qkv,
                       x->qkv + C, x->qkv + C + KVC, x->att, &s);
    rope_backward(g->d_qkv, B, T, QKV, c->n_heads, hs, 0, a->rope_cos, a->rope_sin);
    rope_backward(g->d_qkv + C, B, T, QKV, c->n_kv_heads, hs, 0, a->rope_cos, a->rope_sin);
    projection_backward(t, grads, &w->attn_q, g->d_norm, g->d_qkv, QKV, x->attn_norm, BT, 0.0f);
    projection_backward(t, grads, &w->attn_k, g->d_norm, g->d_qkv + C, QKV, x->attn_norm, BT,
                        1.0f);
    projection_backward(t, grads, &w->attn_v, g->d_norm, g->d_qkv + C + KVC, QKV, x->attn_norm,
                        BT, 1.0f);
    rmsnorm_backward(g->d_resid, t->d_gain, g->d_norm, x->resid_in, w->attn_norm.data,
                     x->attn_rstd, BT, C);
}

void lora_train_backward(LoraTrain *t, const Model *m, Activations *a, GradScratch *g,
                         float *grads, const int *targets, int B, int T, float loss_scale)
{
    const ModelConfig *c = &m->config;
    int BT = B * T, C = c->dim, V = c->vocab_size;
    int counted = crossentropy_counted(targets, BT);
    crossentropy_backward(a->logits, targets, BT, V, loss_scale / (float)(counted > 0 ? counted : 1));
    linear_backward_input(g->d_norm, a->logits, V, BT, &m->wt.output, 0.0f, t->tile);
    memset(g->d_resid, 0, (size_t)BT * C * sizeof(float));
    rmsnorm_backward(g->d_resid, t->d_gain, g->d_norm, a->resid_final, m->wt.output_norm.data,
                     a->final_rstd, BT, C);
    for (int l = c->n_layers - 1; l >= 0; l--)
        block_backward_frozen(t, m, a, g, grads, l, B, T);
}

/* ---- the adapter file ---------------------------------------------------------------- */

void lora_train_add_tensors(const LoraTrain *t, GgufWriter *w)
{
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.type", "adapter");
    gguf_writer_add_str(w, "adapter.type", "lora");
    gguf_writer_add_f32(w, "adapter.lora.alpha", t->alpha);
    for (int k = 0; k < t->adapter.n_pairs; k++) {
        const LoraPair *p = &t->adapter.pairs[k];
        char name[64];
        uint64_t ne_a[2] = {(uint64_t)p->a.cols, (uint64_t)p->a.rows};
        uint64_t ne_b[2] = {(uint64_t)p->b.cols, (uint64_t)p->b.rows};
        snprintf(name, sizeof name, "%s.lora_a", t->names[k]);
        gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 2, ne_a, p->a.data);
        snprintf(name, sizeof name, "%s.lora_b", t->names[k]);
        gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 2, ne_b, p->b.data);
    }
}

int lora_train_write_adapter(const LoraTrain *t, const char *path, Error *err)
{
    GgufWriter *w = gguf_writer_new();
    if (!w)
        return error_set(err, "%s: out of memory", path);
    lora_train_add_tensors(t, w);
    int status = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return status;
}

/* Copies the factor `name` of n floats from f into dst, checking its type and size. */
static int factor_read(const GgufFile *f, const char *name, float *dst, size_t n, Error *err)
{
    const GgufTensor *g = gguf_find_tensor(f, name);
    if (!g || g->type != GGML_TYPE_F32 || gguf_tensor_nelements(g) != n)
        return error_set(err, "tensor '%s' is missing or is not %zu F32 values (an adapter of "
                              "another rank, targets or base model?)",
                         name, n);
    memcpy(dst, g->data, n * sizeof(float));
    return 0;
}

int lora_train_read_tensors(LoraTrain *t, const GgufFile *f, Error *err)
{
    for (int k = 0; k < t->adapter.n_pairs; k++) {
        const LoraPair *p = &t->adapter.pairs[k];
        size_t n_a = (size_t)p->a.rows * p->a.cols, n_b = (size_t)p->b.rows * p->b.cols;
        char name[64];
        snprintf(name, sizeof name, "%s.lora_a", t->names[k]);
        if (factor_read(f, name, t->params + t->offset[k], n_a, err) != 0)
            return -1;
        snprintf(name, sizeof name, "%s.lora_b", t->names[k]);
        if (factor_read(f, name, t->params + t->offset[k] + n_a, n_b, err) != 0)
            return -1;
    }
    return 0;
}
