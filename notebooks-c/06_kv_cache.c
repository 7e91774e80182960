/* Notebook 6: the KV cache.
 *
 * A causal transformer's output at position t depends only on tokens 0..t. When text is
 * generated one token at a time, the keys and values of earlier positions never change,
 * so they are kept (the KV cache) and each new token costs one position's work instead of
 * a whole sequence's.
 *
 * The cost, for a prompt of P tokens and n generated ones:
 *   without a cache, step i runs the whole prefix of P + i tokens again: the matmuls do
 *   sum_i (P + i) ~ n^2 / 2 positions' work, quadratic in n (and attention, which
 *   compares every position with every earlier one, grows like n^3);
 *   with the cache, step i runs one position: P + n positions in all, linear in n (and
 *   attention, one query against P + i cached keys, grows like n^2).
 * The price is memory: L layers x positions x KVC floats for keys, as many for values.
 *
 * quill has one forward pass for training and for inference (model_forward in
 * src/model.c); in inference mode it appends the new positions' keys and values to the
 * cache and lets attention read positions 0..pos0+t from it. Part 1 shows that the cache
 * changes nothing in the result; part 2 generates the same text with and without it and
 * times both, on one thread (the times are this machine's, today: only their growth
 * matters).
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/06_kv_cache) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "infer.h"
#include "matmul.h"
#include "model.h"
#include "rng.h"
#include "timer.h"

enum { T = 16, PROMPT = 4, MAX_NEW = 128, CONTEXT = PROMPT + MAX_NEW };

static void check(int status, const Error *err)
{
    if (status != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

/* A small random model. Its output head starts at 0 (uniform predictions); random weights
 * there make the logits differ clearly, so greedy picks are never near-ties. */
static void random_model(Model *m)
{
    ModelConfig c = {.n_layers = 2, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128,
                     .vocab_size = 100, .context = CONTEXT, .rope_base = 10000.0f,
                     .norm_eps = 1e-5f};
    Error err;
    check(model_init(m, &c, &err), &err);
    model_init_params(m, 42);
    Rng rng;
    rng_seed(&rng, 3);
    for (size_t i = 0; i < (size_t)c.vocab_size * c.dim; i++)
        m->w.output[i] = 0.5f * rng_normal(&rng);
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Part 1: the logits of a whole-sequence forward (as in training) and of token-by-token
 * decoding through the cache. */
static void compare_logits(const Model *m, const int *tokens)
{
    int V = m->config.vocab_size;
    Activations full;
    InferContext cached;
    InferParams params = {.n_seq = 1, .n_ctx = T};
    Error err;
    check(activations_init(&full, m, 1, T, &err) || infer_init(&cached, m, &params, &err), &err);
    model_forward(m, &full, tokens, 1, T, 0);
    printf("1. %d tokens at once (as in training) vs one at a time through the cache:\n"
           "   %4s %10s %24s\n", T, "pos", "max |diff|", "scores per head computed");
    float worst_all = 0.0f;
    for (int t = 0; t < T; t++) {
        check(infer_decode(&cached, 0, &tokens[t], 1, &err), &err);
        const float *logits = infer_logits(&cached, 0);
        float worst = 0.0f;
        for (int v = 0; v < V; v++)
            worst = fmaxf(worst, fabsf(logits[v] - full.logits[t * V + v]));
        worst_all = fmaxf(worst_all, worst);
        /* the new query meets the t+1 cached keys; recomputing the prefix would take
         * (t+1)^2 scores */
        if (t % 4 == 3)
            printf("   %4d %10.2e %12d (vs %d)\n", t, worst, t + 1, (t + 1) * (t + 1));
    }
    printf("   max |diff| over all %d positions: %.2e\n\n", T, worst_all);
    activations_free(&full);
    infer_free(&cached);
}

/* Greedy generation of n tokens after the prompt. With the cache, each step decodes one
 * token; without, each step empties the cache and runs the whole text again. Returns the
 * seconds taken; out gets the tokens, *positions the positions run through the model. */
static double generate(const Model *m, const int *prompt, int n, bool use_cache, int *out,
                       long *positions)
{
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = CONTEXT};
    Error err;
    check(infer_init(&ctx, m, &params, &err), &err);
    int text[CONTEXT];
    for (int i = 0; i < PROMPT; i++)
        text[i] = prompt[i];
    double start = timer_seconds();
    check(infer_decode(&ctx, 0, text, PROMPT, &err), &err);
    *positions = PROMPT;
    for (int i = 0; i < n; i++) {
        int length = PROMPT + i;
        text[length] = out[i] = argmax(infer_logits(&ctx, 0), m->config.vocab_size);
        if (i == n - 1)
            break;
        if (use_cache) {
            check(infer_decode(&ctx, 0, &text[length], 1, &err), &err);
            *positions += 1;
        } else {
            infer_seq_clear(&ctx, 0);
            check(infer_decode(&ctx, 0, text, length + 1, &err), &err);
            *positions += length + 1;
        }
    }
    double seconds = timer_seconds() - start;
    infer_free(&ctx);
    return seconds;
}

/* Part 2: the same greedy text with and without the cache, for growing lengths. */
static void compare_generation(const Model *m, const int *prompt)
{
    printf("2. greedy generation after a %d-token prompt, with and without the cache:\n"
           "   %10s %24s %26s\n", PROMPT, "new tokens", "positions run: cache/none",
           "time: cache / none");
    bool all_same = true;
    for (int n = 16; n <= MAX_NEW; n *= 2) {
        int with[MAX_NEW], without[MAX_NEW];
        long positions_with, positions_without;
        double t_with = generate(m, prompt, n, true, with, &positions_with);
        double t_without = generate(m, prompt, n, false, without, &positions_without);
        for (int i = 0; i < n; i++)
            all_same &= with[i] == without[i];
        printf("   %10d %12ld / %-11ld %10.2f ms / %.2f ms\n", n, positions_with,
               positions_without, t_with * 1e3, t_without * 1e3);
    }
    printf("   same tokens with and without the cache: %s\n\n", all_same ? "yes" : "NO");
}

int main(void)
{
    /* one thread: on a model this small, waking threads costs more than the work, and on a
     * busy machine it would time the scheduler instead of the cache */
    compute_set_threads(1);
    Model m;
    random_model(&m);
    int tokens[T];
    Rng rng;
    rng_seed(&rng, 7);
    for (int t = 0; t < T; t++)
        tokens[t] = (int)rng_below(&rng, (uint64_t)m.config.vocab_size);

    compare_logits(&m, tokens);
    compare_generation(&m, tokens);

    printf("Doubling the length doubles the positions the cached run processes and roughly\n"
           "quadruples those of the run without a cache. The logits agree to float rounding:\n"
           "the cache changes the cost, not the result. Here it holds %d layers x %d positions\n"
           "x %d floats for keys and as many for values; grouped-query attention (%d kv heads\n"
           "for %d query heads) halves that.\n"
           "Try this: set n_kv_heads = 1 in random_model: the cache shrinks 4x (multi-query\n"
           "attention), part 1 still agrees, and part 2 generates other (equally random) text.\n",
           m.config.n_layers, CONTEXT, model_kv_dim(&m.config), m.config.n_kv_heads,
           m.config.n_heads);
    model_free(&m);
    return 0;
}
