/* The model's GGUF binding: the llama.* keys a blueprint is read from and written to, and
 * the tensors, copied into a parameter buffer (model_from_gguf) or used where they lie in
 * a mapped file (model_map_gguf). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "quant.h"

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
