/* Notebook 9: the decode loop, step by step.
 *
 * Generating text is a loop around one question: given everything so far, what are the
 * model's odds for the next token? This program runs that loop through quill's C API (the
 * calls `quill generate` makes) and prints, at each step, the candidates the sampler chain
 * left and the one greedy decoding picks:
 *
 *   model_file_load      the GGUF file, mapped; its tokenizer           (src/loader.h)
 *   infer_init           a KV cache for one sequence                    (src/infer.h)
 *   tokenizer_encode     the prompt's token ids                          (src/tokenizer.h)
 *   infer_decode         the prompt through the model: the cache fills
 *   loop:
 *     infer_logits       one score per vocabulary token for what comes next
 *     sampler_apply      the chain: penalties, top-k, ... -> candidates with probabilities
 *     sampler_select     greedy here: the most probable (src/sampler.h)
 *     sampler_accept     the history the penalties see
 *     tokenizer_token_bytes   the token's text
 *     infer_decode       the token back through the model, one position further
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/09_decode_loop [MODEL.gguf])
 * (default: ../shared/models/stories260K.gguf, a 260K-parameter model of children's
 * stories; any GGUF llama model works, e.g. a `quill train` run's model.gguf). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/chart.h"
#include "infer.h"
#include "loader.h"
#include "sampler.h"

enum { STEPS = 8, SHOWN = 4 };

/* One candidate as a bar of its probability; '>' marks the one chosen. */
static void print_candidate(const Tokenizer *tok, const Candidate *c, int chosen)
{
    char bytes[64], quoted[80], label[96];
    size_t n = tokenizer_token_bytes(tok, c->id, bytes, sizeof bytes);
    snprintf(quoted, sizeof quoted, "'%.*s'", (int)(n < sizeof bytes ? n : sizeof bytes), bytes);
    snprintf(label, sizeof label, "  %c %-10s", c->id == chosen ? '>' : ' ', quoted);
    chart_bar(stdout, label, c->p, 1.0, 30);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../shared/models/stories260K.gguf";
    const char *prompt = "Once upon a time";
    Model model;
    Tokenizer tok;
    Error err;
    if (model_file_load(path, &model, &tok, &err) != 0) {
        printf("missing model, nothing to run: %s\n(give a GGUF file: 09_decode_loop "
               "MODEL.gguf)\n",
               err.msg);
        return 0;
    }

    /* 1. a context: one sequence, room for the prompt and the steps */
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = 64};
    /* 2. the sampler: greedy (temperature 0), with the default chain of filters */
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.temperature = 0.0f;
    Sampler sampler;
    CandidateList candidates;
    int *ids = NULL;
    size_t n_ids;
    if (infer_init(&ctx, &model, &params, &err) != 0 ||
        sampler_init(&sampler, &sp, model.config.vocab_size, &err) != 0 ||
        candidates_init(&candidates, model.config.vocab_size, &err) != 0 ||
        tokenizer_encode(&tok, prompt, strlen(prompt), tok.add_bos, &ids, &n_ids, &err) != 0) {
        printf("%s\n", err.msg);
        return 1;
    }
    printf("prompt \"%s\" is %zu tokens:", prompt, n_ids);
    for (size_t i = 0; i < n_ids; i++)
        printf(" %d", ids[i]);
    printf("\n\n");

    /* 3. the prompt in one pass: the cache now holds its keys and values */
    if (infer_decode(&ctx, 0, ids, (int)n_ids, &err) != 0) {
        printf("%s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < n_ids; i++)
        sampler_accept(&sampler, ids[i], true, &err);

    /* 4. the loop: look at the odds, pick, feed the pick back */
    char text[STEPS * 64 + 1];
    size_t text_len = 0;
    for (int step = 0; step < STEPS; step++) {
        sampler_apply(&sampler, infer_logits(&ctx, 0), &candidates);
        int next = sampler_select(&sampler, &candidates);
        printf("step %d: %d candidates after the chain\n", step, candidates.n);
        for (int i = 0; i < candidates.n && i < SHOWN; i++)
            print_candidate(&tok, &candidates.data[i], next);
        size_t n = tokenizer_token_bytes(&tok, next, text + text_len, 64);
        text_len += n < 64 ? n : 64;
        sampler_accept(&sampler, next, false, &err);
        if (next == tok.eos_id || infer_decode(&ctx, 0, &next, 1, &err) != 0)
            break;
    }
    printf("\ngreedy text: \"%.*s\"\n", (int)text_len, text);
    printf("The cache now holds %d positions: each step ran the model on one new token.\n"
           "Try this: set sp.temperature = 0.8f and sp.seed = 4: sampler_select then draws\n"
           "from the candidates instead of taking the first, and at step 5, where ' b' has a\n"
           "quarter of the mass, this seed draws it: the little girl becomes a little boy.\n",
           infer_seq_length(&ctx, 0));
    free(ids);
    candidates_free(&candidates);
    sampler_free(&sampler);
    infer_free(&ctx);
    tokenizer_free(&tok);
    model_free(&model);
    return 0;
}
