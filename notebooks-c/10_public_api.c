/* Notebook 10: the public API. What notebook 9 did with quill's internal headers, a program
 * that embeds quill does through one header, include/quill.h, and one library (libquill.so):
 * opaque handles, parameter structs with defaults, errors as a status and a message.
 *   quill_model_load -> quill_tokenize -> quill_batch_add + quill_decode (the prompt)
 *   loop: quill_logits -> quill_sampler_sample -> quill_sampler_accept -> one-row batch
 * Build and run:  make notebooks   (or: build/release/notebooks/10_public_api [MODEL.gguf]) */
#include <stdio.h>
#include <string.h>

#include "quill.h"

enum { STEPS = 10 };

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../shared/models/stories260K.gguf";
    const char *prompt = "Once upon a time";
    quill_model *m = quill_model_load(path, NULL);
    if (!m) {
        printf("missing model, nothing to run: %s\n", quill_last_error());
        return 0;
    }
    char line[256];
    quill_model_describe(m, line, sizeof line);
    printf("model: %s\nlibquill %s on %s\n\n", line, quill_version(), quill_cpu_features());

    /* text -> token ids (a bos first, as the model asks), each with its piece */
    quill_token ids[64];
    int n = quill_tokenize(m, prompt, strlen(prompt), true, false, ids, 64);
    printf("\"%s\" is %d tokens:", prompt, n);
    for (int i = 0; i < n; i++) {
        char piece[32];
        quill_token_to_piece(m, ids[i], piece, sizeof piece);
        printf(" %d '%s'", ids[i], piece);
    }

    /* a context (one sequence) and a greedy sampler that records each stage's top 3 */
    quill_context *c = quill_context_new(m, NULL);
    quill_sampler_params sp = quill_sampler_params_default();
    sp.temperature = 0.0f;
    quill_sampler *s = quill_sampler_new(m, &sp);
    quill_sampler_trace(s, 3);
    quill_batch b = quill_batch_new(64);
    for (int i = 0; i < n; i++) { /* each row: token, position, sequence, logits wanted */
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
        quill_sampler_accept(s, ids[i], true);
    }
    if (!c || !s || quill_decode(c, &b) != QUILL_OK) {
        printf("\n%s\n", quill_last_error());
        return 1;
    }
    printf("\n\nstep  chosen      the final list's top 3 (token: p)\n");
    char text[STEPS * 32 + 1] = "";
    for (int step = 0, row = n - 1; step < STEPS; step++, row = 0) {
        quill_token next = quill_sampler_sample(s, quill_logits(c, row));
        quill_stage_candidates stages[16];
        int k = quill_sampler_stages(s, stages, 16) - 1; /* the last: what the draw saw */
        char piece[32];
        quill_token_to_piece(m, next, piece, sizeof piece);
        strcat(text, piece);
        printf("%4d  %-10s ", step, piece);
        for (int i = 0; i < stages[k].n_top; i++)
            printf(" %4d: %.3f", stages[k].top[i].token, stages[k].top[i].p);
        printf("\n");
        quill_sampler_accept(s, next, false);
        quill_batch_clear(&b);
        quill_batch_add(&b, next, n + step, 0, true);
        if (quill_token_is_end(m, next) || quill_decode(c, &b) != QUILL_OK)
            break;
    }
    printf("\ngreedy text: \"%s\"\nsequence 0 holds %d positions\n", text,
           quill_seq_length(c, 0));
    quill_batch_free(&b);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
    return 0;
}
