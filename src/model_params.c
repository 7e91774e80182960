/* The model's parameters: the blueprint's checks, the tensor table (one row per tensor,
 * in the order of the one parameter buffer), the named views into that buffer, the
 * documented initialisation and the parameter-shaped helpers (non-finite search, FLOPs). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "quant.h"
#include "rng.h"

float *float_buffer_alloc(size_t n)
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

int params_table_alloc(const ModelConfig *c, ModelWeights *wt, ParamTensor **table,
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

int model_frame_init(Model *m, const ModelConfig *c, Error *err)
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

void weights_tie_output(Model *m)
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
