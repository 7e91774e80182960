/* Notebook 2: the KV cache.
 *
 * A causal transformer's output at position t depends only on tokens 0..t. When text is
 * generated one token at a time, the keys and values of earlier positions never change,
 * so they are kept (the KV cache) and each new token costs one position's work instead of
 * a whole sequence's.
 *
 * quill has one forward pass for this and for training (model_forward in src/model.c):
 * in inference mode it appends the new positions' keys and values to the cache and lets
 * attention read positions 0..pos0+t from it. This notebook runs a small random model on
 * a sequence twice, all at once and then token by token, and shows that the logits agree,
 * while the token-by-token path did far less work per step.
 *
 * Build and run:  make && build/release/notebooks/02_kv_cache */
#include <math.h>
#include <stdio.h>

#include "infer.h"
#include "model.h"
#include "rng.h"

enum { T = 16 };

int main(void)
{
    ModelConfig c = {.n_layers = 2, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128,
                     .vocab_size = 100, .context = T, .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Model m;
    Error err;
    if (model_init(&m, &c, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model_init_params(&m, 42);
    for (size_t i = 0; i < m.n_params; i++) /* the output head starts at 0: liven it up */
        if (m.params[i] == 0.0f)
            m.params[i] = 0.02f;

    int tokens[T];
    Rng rng;
    rng_seed(&rng, 7);
    for (int t = 0; t < T; t++)
        tokens[t] = (int)rng_below(&rng, (uint64_t)c.vocab_size);

    /* 1. the whole sequence in one pass (what training does) */
    Activations full;
    InferContext cached;
    InferParams params = {.n_seq = 1, .n_ctx = T};
    if (activations_init(&full, &m, 1, T, &err) != 0 ||
        infer_init(&cached, &m, &params, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model_forward(&m, &full, tokens, 1, T, 0);

    /* 2. one token at a time, reading earlier positions from the cache */
    printf("%4s %10s %26s\n", "pos", "max |diff|", "attention scores computed");
    for (int t = 0; t < T; t++) {
        if (infer_decode(&cached, 0, &tokens[t], 1, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const float *logits = infer_logits(&cached, 0);
        float worst = 0.0f;
        for (int v = 0; v < c.vocab_size; v++)
            worst = fmaxf(worst, fabsf(logits[v] - full.logits[t * c.vocab_size + v]));
        /* the new query meets t+1 cached keys per head; without the cache, recomputing the
         * prefix would take (t+1)^2 */
        printf("%4d %10.2e %14d (vs %d)\n", t, worst, (t + 1) * c.n_heads,
               (t + 1) * (t + 1) * c.n_heads);
    }
    printf("\nThe logits agree to float rounding: the cache changes the cost, not the result.\n"
           "The cache holds %d layers x %d positions x %d floats for keys and as many for\n"
           "values: grouped-query attention (%d kv heads for %d query heads) halves it.\n",
           c.n_layers, T, model_kv_dim(&c), c.n_kv_heads, c.n_heads);
    activations_free(&full);
    infer_free(&cached);
    model_free(&m);
    return 0;
}
