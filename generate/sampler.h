/* Choosing the next token from the model's logits.
 *
 * The flow, in order (the same as llama.cpp's default chain):
 *   logits -> top-k -> top-p -> temperature -> choose
 * where each filter keeps at least one candidate, and "choose" is the argmax when the
 * temperature is 0 (greedy decoding, no division by zero) and a random draw from the
 * softmax of logits / temperature otherwise. */
#ifndef QUILL_GENERATE_SAMPLER_H
#define QUILL_GENERATE_SAMPLER_H

#include <stdint.h>

#include "error.h"
#include "rng.h"

typedef struct {
    float temperature; /* 0 = greedy; 1 = the model's distribution; > 1 flatter */
    int top_k;         /* keep the k most likely tokens; 0 = disabled */
    float top_p;       /* keep the smallest set whose probability reaches p (nucleus
                          sampling, Holtzman et al. 2019); 1.0 = disabled */
    uint64_t seed;     /* any value, 0 included */
} SamplerParams;

typedef struct {
    int id;
    float logit;
    float p; /* probability after softmax, filled by the filters that need it */
} Candidate;

typedef struct {
    SamplerParams params;
    Rng rng;
    int n_vocab;
    Candidate *candidates; /* scratch, n_vocab */
} Sampler;

int sampler_init(Sampler *s, const SamplerParams *params, int n_vocab, Error *err);
void sampler_free(Sampler *s); /* NULL-safe */

/* The next token for one row of n_vocab logits. */
int sampler_sample(Sampler *s, const float *logits);

#endif
