/* What the model's files share among themselves (model_params.c, model_gguf.c,
 * model_acts.c, model.c) and nobody else needs. */
#ifndef QUILL_MODEL_INTERNAL_H
#define QUILL_MODEL_INTERNAL_H

#include <stddef.h>

#include "model.h"

/* Buffers are 64-byte aligned (one cache line, one AVX-512 register) and zeroed. */
float *float_buffer_alloc(size_t n);

/* The tensor table of a blueprint, without the parameter buffer (data pointers NULL);
 * with wt, each row also records its WeightMatrix in wt (whose layers must exist). */
int params_table_alloc(const ModelConfig *c, ModelWeights *wt, ParamTensor **table,
                       int *n_tensors, size_t *n_params, Error *err);
/* The config, the weights' layer array and the tensor table: what both kinds of model
 * (a parameter buffer, a mapped file) have. */
int model_frame_init(Model *m, const ModelConfig *c, Error *err);
/* With tied embeddings the output projection is the embedding matrix itself. */
void weights_tie_output(Model *m);

/* The sizes of one block's activations and of the whole buffer, for a mode and batch. */
typedef struct {
    size_t BT, C, QKV, F, att;
    size_t logit_rows;
} ActSizes;

ActSizes act_sizes(const Model *m, const Activations *a);

/* Hands out consecutive slices of a buffer (or, with base == NULL, counts them). */
static inline float *slice_take(float *base, size_t *offset, size_t n)
{
    float *p = base ? base + *offset : NULL;
    *offset += n;
    return p;
}

#endif
