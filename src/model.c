#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "ops.h"
#include "quant.h"
#include "rng.h"

/* Buffers are 64-byte aligned (one cache line, one AVX-512 register) and zeroed. */
static float *float_buffer_alloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

int model_config_validate(const ModelConfig *c, Error *err)
{
    const struct {
        const char *name;
        int value;
    } sizes[] = {
        {"layers", c->n_layers},   {"dim", c->dim},         {"heads", c->n_heads},
        {"kv_heads", c->n_kv_heads}, {"ffn_dim", c->ffn_dim}, {"vocab_size", c->vocab_size},
        {"context", c->context},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (sizes[i].value <= 0)
            return error_set(err, "model: %s must be positive, got %d", sizes[i].name,
                             sizes[i].value);
    if (c->dim % c->n_heads != 0)
        return error_set(err, "model: dim %d is not a multiple of heads %d", c->dim, c->n_heads);
    if (model_head_size(c) % 2 != 0)
        return error_set(err, "model: head size dim/heads = %d must be even for RoPE",
                         model_head_size(c));
    if (c->n_heads % c->n_kv_heads != 0)
        return error_set(err, "model: kv_heads %d does not divide heads %d", c->n_kv_heads,
                         c->n_heads);
    if (!(c->rope_base > 0.0f) || !(c->norm_eps > 0.0f))
        return error_set(err, "model: rope_base and norm_eps must be positive");
    if (!(c->rope_scaling >= 0.0f) || isinf(c->rope_scaling))
        return error_set(err, "model: the RoPE scaling factor %g is not a finite number >= 0",
                         c->rope_scaling);
    return 0;
}

/* ---- the parameter table ------------------------------------------------------------ */

/* Walks the tensors in buffer order, handing out consecutive slices of `base`. With
 * base == NULL it only counts; with table != NULL it also records each tensor. */
typedef struct {
    float *base;
    size_t offset;
    ParamTensor *table;
    ModelWeights *wt; /* with table: where each tensor's WeightMatrix lives */
    int count;
} TableWalk;

static float *table_take(TableWalk *tw, const char *name, int rows, int cols, ParamKind kind,
                         WeightMatrix *weight)
{
    float *data = tw->base ? tw->base + tw->offset : NULL;
    if (tw->table) {
        ParamTensor *t = &tw->table[tw->count];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->data = data;
        t->offset = tw->offset;
        t->rows = rows;
        t->cols = cols;
        t->kind = kind;
        t->weight = weight;
    }
    tw->count++;
    tw->offset += (size_t)rows * cols;
    return data;
}

/* The one place that knows the order of tensors in a parameter buffer. */
static void params_walk(const ModelConfig *c, TableWalk *tw, ParamViews *v)
{
    char name[48];
    ModelWeights *wt = tw->wt;
    float *p = table_take(tw, "token_embd.weight", c->vocab_size, c->dim, PARAM_EMBEDDING,
                          wt ? &wt->token_embd : NULL);
    if (v)
        v->token_embd = p;
    for (int l = 0; l < c->n_layers; l++) {
#define X(field, rows, cols, kind)                                                         \
    snprintf(name, sizeof name, "blk.%d." #field ".weight", l);                            \
    p = table_take(tw, name, rows, cols, kind, wt ? &wt->layers[l].field : NULL);          \
    if (v)                                                                                 \
        v->layers[l].field = p;
        MODEL_LAYER_PARAMS(X, c)
#undef X
    }
    p = table_take(tw, "output_norm.weight", 1, c->dim, PARAM_NORM, wt ? &wt->output_norm : NULL);
    if (v)
        v->output_norm = p;
    if (c->tie_embeddings) {
        if (v)
            v->output = v->token_embd;
        return;
    }
    p = table_take(tw, "output.weight", c->vocab_size, c->dim, PARAM_OUTPUT,
                   wt ? &wt->output : NULL);
    if (v)
        v->output = p;
}

int param_views_init(ParamViews *v, const Model *m, float *buffer, Error *err)
{
    memset(v, 0, sizeof *v);
    v->layers = calloc((size_t)m->config.n_layers, sizeof *v->layers);
    if (!v->layers)
        return error_set(err, "out of memory for parameter views");
    TableWalk tw = {.base = buffer};
    params_walk(&m->config, &tw, v);
    return 0;
}

void param_views_free(ParamViews *v)
{
    if (!v)
        return;
    free(v->layers);
    memset(v, 0, sizeof *v);
}

/* The tensor table of a blueprint, without the parameter buffer (data pointers NULL);
 * with wt, each row also records its WeightMatrix in wt (whose layers must exist). */
static int params_table_alloc(const ModelConfig *c, ModelWeights *wt, ParamTensor **table,
                              int *n_tensors, size_t *n_params, Error *err)
{
    TableWalk count = {0};
    params_walk(c, &count, NULL);
    *table = calloc((size_t)count.count, sizeof **table);
    if (!*table)
        return error_set(err, "out of memory for a table of %d tensors", count.count);
    TableWalk fill = {.table = *table, .wt = wt};
    params_walk(c, &fill, NULL);
    *n_tensors = count.count;
    *n_params = count.offset;
    return 0;
}

/* The config, the weights' layer array and the tensor table: what both kinds of model
 * (a parameter buffer, a mapped file) have. */
static int model_frame_init(Model *m, const ModelConfig *c, Error *err)
{
    memset(m, 0, sizeof *m);
    if (model_config_validate(c, err) != 0)
        return -1;
    m->config = *c;
    m->wt.layers = calloc((size_t)c->n_layers, sizeof *m->wt.layers);
    if (!m->wt.layers)
        return error_set(err, "out of memory for a model of %d layers", c->n_layers);
    if (params_table_alloc(c, &m->wt, &m->tensors, &m->n_tensors, &m->n_params, err) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

/* With tied embeddings the output projection is the embedding matrix itself. */
static void weights_tie_output(Model *m)
{
    if (m->config.tie_embeddings)
        m->wt.output = m->wt.token_embd;
}

int model_init(Model *m, const ModelConfig *c, Error *err)
{
    if (model_frame_init(m, c, err) != 0)
        return -1;
    m->params = float_buffer_alloc(m->n_params);
    if (!m->params || param_views_init(&m->w, m, m->params, err) != 0) {
        size_t n_params = m->n_params;
        model_free(m);
        return error_set(err, "out of memory for a model of %zu parameters", n_params);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        ParamTensor *t = &m->tensors[i];
        t->data = m->params + t->offset;
        *t->weight = (WeightMatrix){GGML_TYPE_F32, t->data, t->rows, t->cols};
    }
    weights_tie_output(m);
    return 0;
}

void model_free(Model *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->tensors);
    free(m->wt.layers);
    free(m->norms);
    param_views_free(&m->w);
    gguf_close(m->file);
    memset(m, 0, sizeof *m);
}

void model_init_params(Model *m, uint64_t seed)
{
    Rng rng;
    rng_seed(&rng, seed);
    float residual_std = 0.02f / sqrtf(2.0f * (float)m->config.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        size_t n = (size_t)t->rows * t->cols;
        for (size_t j = 0; j < n; j++) {
            switch (t->kind) {
            case PARAM_NORM:
                t->data[j] = 1.0f;
                break;
            case PARAM_OUTPUT:
                t->data[j] = 0.0f;
                break;
            case PARAM_RESIDUAL:
                t->data[j] = residual_std * rng_normal(&rng);
                break;
            case PARAM_EMBEDDING:
            case PARAM_MATRIX:
                t->data[j] = 0.02f * rng_normal(&rng);
                break;
            }
        }
    }
}

int model_find_nonfinite(const Model *m, const float *buffer, size_t *element)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        const float *values = buffer + t->offset;
        for (size_t j = 0; j < (size_t)t->rows * t->cols; j++) {
            if (!isfinite(values[j])) {
                *element = j;
                return i;
            }
        }
    }
    return -1;
}

double model_train_flops_per_token(const Model *m, int T)
{
    const ModelConfig *c = &m->config;
    double C = c->dim, F = c->ffn_dim, KVC = model_kv_dim(c);
    double per_layer = C * (C + 2 * KVC) + C * C + 3 * C * F; /* q|k|v, output, gate|up|down */
    double multiplying_weights = c->n_layers * per_layer + (double)c->vocab_size * C;
    return 6.0 * multiplying_weights + 6.0 * c->n_layers * (double)T * C;
}

/* ---- GGUF --------------------------------------------------------------------------- */

void model_to_gguf(const Model *m, GgufWriter *w)
{
    const ModelConfig *c = &m->config;
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.name", "quill");
    gguf_writer_add_u32(w, "general.file_type", 0); /* 0 = every tensor F32 */
    gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->context);
    gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn_dim);
    gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)model_head_size(c));
    gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_base);
    gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
    if (c->rope_scaling != 0.0f && c->rope_scaling != 1.0f) {
        gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
        gguf_writer_add_f32(w, "llama.rope.scaling.factor", c->rope_scaling);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
        gguf_writer_add_tensor(w, t->name, GGML_TYPE_F32, t->rows == 1 ? 1 : 2, ne, t->data);
    }
}

/* Reads an optional llama.* integer key into *out (left as is when absent). */
static int read_optional_int(const GgufFile *f, const char *key, int *out, Error *err)
{
    uint32_t v;
    if (!gguf_find_kv(f, key))
        return 0;
    if (gguf_get_u32(f, key, &v, err) != 0)
        return -1;
    if (v > (1u << 30))
        return error_set(err, "%s = %u is out of range", key, v);
    *out = (int)v;
    return 0;
}

static int read_optional_float(const GgufFile *f, const char *key, float *out, Error *err)
{
    return gguf_find_kv(f, key) ? gguf_get_f32(f, key, out, err) : 0;
}

/* RoPE scaling, read as llama.cpp reads it: llama.rope.scaling.type names the method and is
 * "linear" when absent; the factor is llama.rope.scaling.factor, or the older
 * llama.rope.scale_linear, and 0 or absent means 1. "none" ignores any factor. Other
 * methods (yarn, longrope, ...) change more than the positions, and quill does not run
 * them. */
static int config_read_rope_scaling(ModelConfig *c, const GgufFile *f, Error *err)
{
    const char *type = "linear";
    if (gguf_find_kv(f, "llama.rope.scaling.type") &&
        gguf_get_str(f, "llama.rope.scaling.type", &type, err) != 0)
        return -1;
    if (strcmp(type, "none") == 0)
        return 0;
    if (strcmp(type, "linear") != 0)
        return error_set(err, "llama.rope.scaling.type '%s' is not supported (quill runs "
                              "'none' and 'linear')", type);
    const char *key = gguf_find_kv(f, "llama.rope.scaling.factor") ? "llama.rope.scaling.factor"
                                                                   : "llama.rope.scale_linear";
    if (read_optional_float(f, key, &c->rope_scaling, err) != 0)
        return -1;
    if (!(c->rope_scaling >= 0.0f) || isinf(c->rope_scaling))
        return error_set(err, "%s = %g is not a finite number >= 0", key, c->rope_scaling);
    return 0;
}

/* The sizes that the llama.* keys state. */
static int config_read_keys(ModelConfig *c, const GgufFile *f, Error *err)
{
    const struct {
        const char *key;
        int *field;
        bool required;
    } ints[] = {
        {"llama.block_count", &c->n_layers, true},
        {"llama.embedding_length", &c->dim, true},
        {"llama.feed_forward_length", &c->ffn_dim, true},
        {"llama.attention.head_count", &c->n_heads, true},
        {"llama.attention.head_count_kv", &c->n_kv_heads, false},
        {"llama.context_length", &c->context, true},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (ints[i].required && !gguf_find_kv(f, ints[i].key))
            return error_set(err, "key %s is missing", ints[i].key);
        if (read_optional_int(f, ints[i].key, ints[i].field, err) != 0)
            return -1;
    }
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    if (read_optional_float(f, "llama.rope.freq_base", &c->rope_base, err) != 0 ||
        read_optional_float(f, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps, err) != 0)
        return -1;
    return config_read_rope_scaling(c, f, err);
}

/* The claims about size that can be checked before any per-tensor lookup: the width and
 * the vocabulary are token_embd's shape, and every block has 9 tensors, so a file cannot
 * hold more blocks than a ninth of its tensors. (context_length is only a default for the
 * run: nothing is sized from it.) */
static int config_check_against_tensors(const ModelConfig *c, const GgufTensor *embd,
                                        const GgufFile *f, Error *err)
{
    if (c->dim != (int)embd->ne[0])
        return error_set(err, "llama.embedding_length %d differs from the width %d of "
                              "token_embd.weight", c->dim, (int)embd->ne[0]);
    enum { TENSORS_PER_BLOCK = 9 };
    if ((uint64_t)c->n_layers > f->n_tensors / TENSORS_PER_BLOCK)
        return error_set(err, "llama.block_count %d: the file has %llu tensors, too few for "
                              "that many blocks of %d tensors each", c->n_layers,
                         (unsigned long long)f->n_tensors, TENSORS_PER_BLOCK);
    return 0;
}

int model_config_from_gguf(ModelConfig *c, const GgufFile *f, Error *err)
{
    const char *arch;
    if (gguf_get_str(f, "general.architecture", &arch, err) != 0)
        return -1;
    if (strcmp(arch, "llama") != 0)
        return error_set(err, "architecture '%s' is not supported (quill runs 'llama')", arch);
    const GgufTensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd || embd->n_dims != 2)
        return error_set(err, "tensor 'token_embd.weight' is missing or not 2-D");
    if (embd->ne[0] > (1u << 30) || embd->ne[1] > (1u << 30))
        return error_set(err, "tensor 'token_embd.weight' is too large");
    *c = (ModelConfig){.rope_base = 10000.0f, .norm_eps = 1e-5f};
    c->vocab_size = (int)embd->ne[1];
    if (config_read_keys(c, f, err) != 0 || config_check_against_tensors(c, embd, f, err) != 0)
        return -1;
    c->tie_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    if (model_config_validate(c, err) != 0)
        return -1;
    int rope_dims = model_head_size(c);
    if (read_optional_int(f, "llama.rope.dimension_count", &rope_dims, err) != 0)
        return -1;
    if (rope_dims != model_head_size(c))
        return error_set(err, "llama.rope.dimension_count %d differs from the head size %d "
                              "(partial RoPE is not supported)",
                         rope_dims, model_head_size(c));
    return 0;
}

/* The file's tensor for one row of the table: present, of the expected shape and of a type
 * the loader takes: F32, F16 or BF16 when the weights are copied into a parameter buffer,
 * any type quant.h multiplies when they are used in place. */
static int tensor_check(const ParamTensor *want, const GgufTensor *src, bool copied,
                        Error *err)
{
    if (!src)
        return error_set(err, "tensor '%s' is missing", want->name);
    uint64_t want_dims = want->rows == 1 ? 1 : 2;
    bool shape_ok = src->n_dims == want_dims && src->ne[0] == (uint64_t)want->cols &&
                    (want_dims == 1 || src->ne[1] == (uint64_t)want->rows);
    if (!shape_ok)
        return error_set(err, "tensor '%s' has shape [%llu, %llu], expected [%d, %d]", want->name,
                         (unsigned long long)src->ne[0],
                         (unsigned long long)(src->n_dims > 1 ? src->ne[1] : 1), want->cols,
                         want->rows);
    bool widened = src->type == GGML_TYPE_F32 || src->type == GGML_TYPE_F16 ||
                   src->type == GGML_TYPE_BF16;
    bool ok = copied ? widened : quant_can_multiply(src->type);
    if (!ok) {
        const char *type = gguf_tensor_type_name(src->type);
        return error_set(err, "tensor '%s' has type %s, which quill %s", want->name,
                         type ? type : "unknown",
                         copied ? "does not train from (F32, F16 and BF16 only)"
                                : "cannot multiply");
    }
    return 0;
}

/* A tensor quill does not know would change the computation in a way it cannot do;
 * "quill.*" tensors are training state (optimizer moments) and are not the model's. */
static int check_no_foreign_tensors(const ParamTensor *table, int n_tensors, const GgufFile *f,
                                    Error *err)
{
    uint64_t quill_state = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        quill_state += strncmp(f->tensors[i].name, "quill.", 6) == 0;
    if (f->n_tensors - quill_state == (uint64_t)n_tensors)
        return 0; /* every expected tensor was found, so nothing else is there */
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        bool known = strncmp(f->tensors[i].name, "quill.", 6) == 0;
        for (int j = 0; j < n_tensors && !known; j++)
            known = strcmp(f->tensors[i].name, table[j].name) == 0;
        if (!known)
            return error_set(err, "tensor '%s' is not part of the llama model quill runs",
                             f->tensors[i].name);
    }
    return 0;
}

/* Checks every tensor the blueprint needs against the file, before anything is allocated
 * from the blueprint: what follows is then bounded by what the file really holds. */
static int model_check_file(const ModelConfig *c, const GgufFile *f, bool copied, Error *err)
{
    ParamTensor *table = NULL;
    int n_tensors = 0;
    size_t n_params = 0;
    if (params_table_alloc(c, NULL, &table, &n_tensors, &n_params, err) != 0)
        return -1;
    int status = 0;
    for (int i = 0; i < n_tensors && status == 0; i++)
        status = tensor_check(&table[i], gguf_find_tensor(f, table[i].name), copied, err);
    if (status == 0)
        status = check_no_foreign_tensors(table, n_tensors, f, err);
    free(table);
    return status;
}

int model_from_gguf(Model *m, const GgufFile *f, Error *err)
{
    ModelConfig c;
    memset(m, 0, sizeof *m);
    if (model_config_from_gguf(&c, f, err) != 0 || model_check_file(&c, f, true, err) != 0 ||
        model_init(m, &c, err) != 0)
        return -1;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        const GgufTensor *src = gguf_find_tensor(f, t->name);
        quant_dequantize_row(src->type, src->data, t->data, (int64_t)t->rows * t->cols);
    }
    return 0;
}

/* Points each weight at its tensor in the file; the norm vectors are widened into one
 * small owned F32 buffer (rmsnorm reads floats). */
static int model_bind_file(Model *m, const GgufFile *f, Error *err)
{
    int n_norms = 2 * m->config.n_layers + 1;
    m->norms = malloc((size_t)n_norms * m->config.dim * sizeof(float));
    if (!m->norms)
        return error_set(err, "out of memory for the norm weights");
    float *norm = m->norms;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        const GgufTensor *src = gguf_find_tensor(f, t->name);
        *t->weight = (WeightMatrix){src->type, src->data, t->rows, t->cols};
        if (t->kind == PARAM_NORM) {
            quant_dequantize_row(src->type, src->data, norm, t->cols);
            *t->weight = (WeightMatrix){GGML_TYPE_F32, norm, t->rows, t->cols};
            norm += t->cols;
        }
    }
    weights_tie_output(m);
    return 0;
}

int model_map_gguf(Model *m, GgufFile *f, Error *err)
{
    ModelConfig c;
    memset(m, 0, sizeof *m);
    if (model_config_from_gguf(&c, f, err) != 0 || model_check_file(&c, f, false, err) != 0 ||
        model_frame_init(m, &c, err) != 0)
        return -1;
    if (model_bind_file(m, f, err) != 0) {
        model_free(m);
        return -1;
    }
    m->file = f;
    return 0;
}

/* ---- activations -------------------------------------------------------------------- */

/* The sizes of one block's activations and of the whole buffer, for a mode and batch. */
typedef struct {
    size_t BT, C, QKV, F, att;
    size_t logit_rows;
} ActSizes;

/* Training keeps B x T rows of everything and scores every token against the T of its
 * sequence; inference has at most T rows per call (over all its sequences), each scored
 * against up to n_ctx cached positions, and with last_logits one row of logits per slot. */
static ActSizes act_sizes(const Model *m, const Activations *a)
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

/* Hands out consecutive slices of a buffer (or, with base == NULL, counts them). */
static float *slice_take(float *base, size_t *offset, size_t n)
{
    float *p = base ? base + *offset : NULL;
    *offset += n;
    return p;
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
    return floats * sizeof(float) + linear_scratch_size(m, s->max_tokens) +
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
    memset(a, 0, sizeof *a);
}

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

/* Inference: q from the qkv rows, k and v from the cache (n_ctx positions per slot). */
static AttentionShape attention_shape_cached(const ModelConfig *c, const Activations *a, int B,
                                             int T, int pos0, const int *slots)
{
    int kvc = model_kv_dim(c);
    return (AttentionShape){
        .B = B, .T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hs = model_head_size(c),
        .pos0 = pos0, .n_kv = pos0 + T, .q_stride = c->dim + 2 * kvc, .kv_stride = kvc,
        .kv_seq_stride = (size_t)a->n_ctx * kvc, .kv_slot = slots, .kv_type = a->kv_type,
        .kv_row_bytes = a->kv_row_bytes, .kv_slot_rows = a->n_ctx, .scratch = a->attention_scratch,
        .scratch_stride = a->attention_scratch_stride,
    };
}

/* Row `pos` of cache slot `slot` of block l, in the keys (or values) `cache`. */
static uint8_t *kv_cache_row(const Activations *a, uint8_t *cache, int l, int slot, int pos)
{
    return cache + (((size_t)l * a->B + slot) * a->n_ctx + pos) * a->kv_row_bytes;
}

/* Stores the new tokens' keys and values from the qkv rows into block l's cache, in the
 * cache's type, and returns where block l's cache starts. */
static void kv_cache_append(const ModelConfig *c, Activations *a, int l, const float *qkv, int B,
                            int T, int pos0, const int *slots, const void **k, const void **v)
{
    size_t kvc = (size_t)model_kv_dim(c), qkv_stride = c->dim + 2 * kvc;
    for (int b = 0; b < B; b++) {
        int slot = slots ? slots[b] : b;
        for (int t = 0; t < T; t++) {
            const float *row = qkv + ((size_t)b * T + t) * qkv_stride;
            quant_quantize_row_fast(a->kv_type, row + c->dim,
                                    kv_cache_row(a, a->kv_k, l, slot, pos0 + t), (int64_t)kvc);
            quant_quantize_row_fast(a->kv_type, row + c->dim + kvc,
                                    kv_cache_row(a, a->kv_v, l, slot, pos0 + t), (int64_t)kvc);
        }
    }
    *k = kv_cache_row(a, a->kv_k, l, 0, 0);
    *v = kv_cache_row(a, a->kv_v, l, 0, 0);
}

void activations_cache_copy(Activations *a, const Model *m, int src, int dst, int from, int to)
{
    if (to <= from || src == dst)
        return;
    size_t bytes = (size_t)(to - from) * a->kv_row_bytes;
    for (int l = 0; l < m->config.n_layers; l++) {
        memcpy(kv_cache_row(a, a->kv_k, l, dst, from), kv_cache_row(a, a->kv_k, l, src, from), bytes);
        memcpy(kv_cache_row(a, a->kv_v, l, dst, from), kv_cache_row(a, a->kv_v, l, src, from), bytes);
    }
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

/* out (N, ldo) = inp . [w0; w1; w2]^T, the matrices' outputs side by side in each row (the
 * q|k|v or gate|up row): one product when they are adjacent in memory (n_parts of them),
 * one product each otherwise (a file lays tensors out as it likes). */
static void linear_forward_parts(float *out, int ldo, const float *inp, int N,
                                 const WeightMatrix *const *parts, int n_parts, void *scratch)
{
    WeightMatrix fused = *parts[0];
    bool adjacent = true;
    for (int i = 1; i < n_parts; i++) {
        adjacent = adjacent && weights_adjacent(parts[i - 1], parts[i]);
        fused.rows += parts[i]->rows;
    }
    if (adjacent) {
        linear_forward(out, ldo, inp, N, &fused, 0.0f, scratch);
        return;
    }
    for (int i = 0, col = 0; i < n_parts; col += parts[i]->rows, i++)
        linear_forward(out + col, ldo, inp, N, parts[i], 0.0f, scratch);
}

static void block_forward(const Model *m, Activations *a, int l, int B, int T, int pos0,
                          const int *slots, float *resid_out)
{
    const ModelConfig *c = &m->config;
    const LayerWeights *w = &m->wt.layers[l];
    LayerActs *x = &a->layers[l];
    int BT = B * T, C = c->dim, F = c->ffn_dim, hs = model_head_size(c);
    int KVC = model_kv_dim(c), QKV = C + 2 * KVC;
    void *scratch = a->linear_scratch;

    /* attention branch: resid_mid = resid_in + attn_output(attention(rmsnorm(resid_in))) */
    rmsnorm_forward(x->attn_norm, x->attn_rstd, x->resid_in, w->attn_norm.data, BT, C,
                    c->norm_eps);
    const WeightMatrix *qkv[3] = {&w->attn_q, &w->attn_k, &w->attn_v};
    linear_forward_parts(x->qkv, QKV, x->attn_norm, BT, qkv, 3, scratch);
    rope_forward(x->qkv, B, T, QKV, c->n_heads, hs, pos0, a->rope_cos, a->rope_sin);
    rope_forward(x->qkv + C, B, T, QKV, c->n_kv_heads, hs, pos0, a->rope_cos, a->rope_sin);
    AttentionShape s;
    const void *k, *v;
    if (a->mode == ACTS_INFERENCE) {
        kv_cache_append(c, a, l, x->qkv, B, T, pos0, slots, &k, &v);
        s = attention_shape_cached(c, a, B, T, pos0, slots);
    } else {
        k = x->qkv + C;
        v = x->qkv + C + KVC;
        s = attention_shape_training(c, a, B, T);
    }
    attention_forward(x->att_out, x->att, x->qkv, k, v, &s);
    residual_copy(x->resid_mid, x->resid_in, (size_t)BT * C);
    linear_forward(x->resid_mid, C, x->att_out, BT, &w->attn_output, 1.0f, scratch);

    /* MLP branch: resid_out = resid_mid + ffn_down(swiglu(ffn_gate|up(rmsnorm(resid_mid)))) */
    rmsnorm_forward(x->ffn_norm, x->ffn_rstd, x->resid_mid, w->ffn_norm.data, BT, C, c->norm_eps);
    const WeightMatrix *gate_up[2] = {&w->ffn_gate, &w->ffn_up};
    linear_forward_parts(x->gate_up, 2 * F, x->ffn_norm, BT, gate_up, 2, scratch);
    swiglu_forward(x->swiglu, x->gate_up, BT, F);
    residual_copy(resid_out, x->resid_mid, (size_t)BT * C);
    linear_forward(resid_out, C, x->swiglu, BT, &w->ffn_down, 1.0f, scratch);
}

void model_forward_slots(const Model *m, Activations *a, const int *tokens, int B, int T,
                         int pos0, const int *slots)
{
    const ModelConfig *c = &m->config;
    int BT = B * T, C = c->dim;
    embedding_forward(a->layers[0].resid_in, tokens, &m->wt.token_embd, BT);
    for (int l = 0; l < c->n_layers; l++) {
        float *resid_out = l + 1 < c->n_layers ? a->layers[l + 1].resid_in : a->resid_final;
        block_forward(m, a, l, B, T, pos0, slots, resid_out);
    }
    /* with last_logits only each sequence's last token goes through the output layer: the
     * one whose logits say what comes next */
    int rows = a->last_logits ? B : BT;
    if (a->last_logits)
        for (int b = 0; b < B; b++)
            rmsnorm_forward(a->final_norm + (size_t)b * C, a->final_rstd + b,
                            a->resid_final + ((size_t)b * T + T - 1) * C, m->wt.output_norm.data,
                            1, C, c->norm_eps);
    else
        rmsnorm_forward(a->final_norm, a->final_rstd, a->resid_final, m->wt.output_norm.data, BT,
                        C, c->norm_eps);
    linear_forward(a->logits, c->vocab_size, a->final_norm, rows, &m->wt.output, 0.0f,
                   a->linear_scratch);
}

void model_forward(const Model *m, Activations *a, const int *tokens, int B, int T, int pos0)
{
    model_forward_slots(m, a, tokens, B, T, pos0, NULL);
}

float model_loss(const Model *m, Activations *a, const int *targets, int B, int T)
{
    int BT = B * T;
    crossentropy_forward(a->losses, a->logits, targets, BT, m->config.vocab_size);
    double sum = 0.0; /* in token order, in double: the same mean for any thread count */
    for (int n = 0; n < BT; n++)
        sum += a->losses[n];
    return (float)(sum / BT);
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
