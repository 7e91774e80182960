/* Notebook 5: sampling, one processor at a time.
 *
 * The model's last layer gives one logit per vocabulary token; a softmax turns logits
 * into probabilities, p_i = e^(l_i) / sum_j e^(l_j). Sampling strategies reshape or cut
 * that distribution before a token is drawn from it. quill runs them as a chain of small
 * processors over a candidate list (src/sampler.h; docs/sampling.md has every formula
 * and paper). Here one made-up logit vector over an 8-word vocabulary goes through each
 * processor on its own, shown as a bar chart with the entropy of the result,
 *
 *     H = -sum_i p_i ln p_i   (nats: 0 for a certain choice, ln 8 = 2.08 for 8 equal ones)
 *
 * and at the end through the same two processors in the two orders in use.
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/05_sampling) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/chart.h"
#include "sampler.h"

enum { V = 8, BAR = 30, SIDE_BAR = 14 };
static const char *const WORDS[V] = {"the", "a", "cat", "dog", "sat", "ran", "mat", "moon"};
/* softmax: 0.448 0.271 0.135 0.074 0.037 0.022 0.010 0.003 */
static const float LOGITS[V] = {3.0f, 2.5f, 1.8f, 1.2f, 0.5f, 0.0f, -0.8f, -2.0f};

static void check(int status, const Error *err)
{
    if (status != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

/* Parameters with every processor off, temperature 1, and the chain given as text. */
static SamplerParams params_for(const char *chain)
{
    SamplerParams p;
    Error err;
    sampler_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    check(sampler_chain_parse(chain, &p, &err), &err);
    return p;
}

/* The candidates that survive p's chain, sorted, with probabilities (sampler_apply), after
 * the sampler has seen `history`. */
static void run_chain(const SamplerParams *p, const int *history, int n_history,
                      CandidateList *out)
{
    Sampler s;
    Error err;
    check(sampler_init(&s, p, V, &err), &err);
    for (int i = 0; i < n_history; i++)
        check(sampler_accept(&s, history[i], false, &err), &err);
    sampler_apply(&s, LOGITS, out);
    sampler_free(&s);
}

static double entropy(const CandidateList *c)
{
    double h = 0.0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].p > 0.0f)
            h -= c->data[i].p * log(c->data[i].p);
    return h;
}

/* A title, one bar per surviving word (p on a scale of 0..1), what was kept, and H. */
static void panel(FILE *out, const char *title, const CandidateList *c, int bar_width)
{
    fprintf(out, "%s\n", title);
    for (int i = 0; i < c->n; i++) {
        char label[16];
        snprintf(label, sizeof label, "  %-5s", WORDS[c->data[i].id]);
        chart_bar(out, label, c->data[i].p, 1.0, bar_width);
    }
    fprintf(out, "  kept:");
    for (int i = 0; i < c->n; i++)
        fprintf(out, " %s", WORDS[c->data[i].id]);
    fprintf(out, "\n  entropy %.3f nats\n", entropy(c));
}

static void show(const char *title, const SamplerParams *p, const int *history, int n_history)
{
    CandidateList c;
    Error err;
    check(candidates_init(&c, V, &err), &err);
    run_chain(p, history, n_history, &c);
    panel(stdout, title, &c, BAR);
    printf("\n");
    candidates_free(&c);
}

/* The logit a token has after the chain (it must have survived). */
static float logit_after(const CandidateList *c, int id)
{
    for (int i = 0; i < c->n; i++)
        if (c->data[i].id == id)
            return c->data[i].logit;
    return NAN;
}

/* Repetition penalty 1.5 after "the the moon": the positive logit is divided, the negative
 * one multiplied, so both repeated words become less likely. */
static void show_repetition_penalty(void)
{
    static const int history[] = {0, 0, 7}; /* the, the, moon */
    SamplerParams p = params_for("penalties");
    p.repeat_penalty = 1.5f;
    CandidateList c;
    Error err;
    check(candidates_init(&c, V, &err), &err);
    run_chain(&p, history, 3, &c);
    panel(stdout, "6. repetition penalty 1.5 after \"the the moon\" (CTRL):", &c, BAR);
    printf("  the:  %.2f -> %.2f (3.0 / 1.5)    moon: %.2f -> %.2f (-2.0 * 1.5; dividing would\n"
           "  have given -1.33, making the repeat MORE likely)\n\n",
           LOGITS[0], logit_after(&c, 0), LOGITS[7], logit_after(&c, 7));
    candidates_free(&c);
}

/* Writes two panels side by side: each is drawn into memory, then the lines are paired. */
static void side_by_side(const char *title_a, const SamplerParams *a, const char *title_b,
                         const SamplerParams *b)
{
    char *text[2] = {NULL, NULL};
    size_t len[2];
    const SamplerParams *params[2] = {a, b};
    const char *titles[2] = {title_a, title_b};
    for (int k = 0; k < 2; k++) {
        CandidateList c;
        Error err;
        check(candidates_init(&c, V, &err), &err);
        run_chain(params[k], NULL, 0, &c);
        FILE *out = open_memstream(&text[k], &len[k]);
        panel(out, titles[k], &c, SIDE_BAR);
        fclose(out);
        candidates_free(&c);
    }
    char *save[2], *line[2] = {strtok_r(text[0], "\n", &save[0]), strtok_r(text[1], "\n", &save[1])};
    while (line[0] || line[1]) {
        if (line[1])
            printf("%-40s %s\n", line[0] ? line[0] : "", line[1]);
        else
            printf("%s\n", line[0]);
        for (int k = 0; k < 2; k++)
            line[k] = line[k] ? strtok_r(NULL, "\n", &save[k]) : NULL;
    }
    free(text[0]);
    free(text[1]);
}

int main(void)
{
    printf("logits:");
    for (int i = 0; i < V; i++)
        printf(" %s %.1f", WORDS[i], LOGITS[i]);
    printf("\n\n");

    SamplerParams p = params_for("temperature");
    show("1. the model's distribution, softmax(l):", &p, NULL, 0);

    p.temperature = 0.5f;
    show("2. temperature 0.5, softmax(l / 0.5): sharper (less entropy)", &p, NULL, 0);
    p.temperature = 2.0f;
    show("   temperature 2, softmax(l / 2): flatter (more entropy)", &p, NULL, 0);

    p = params_for("top-k");
    p.top_k = 3;
    show("3. top-k 3: the 3 highest logits, renormalised", &p, NULL, 0);

    /* by hand: 0.448 < 0.8, 0.448 + 0.271 = 0.719 < 0.8, + 0.135 = 0.854 >= 0.8: stop */
    p = params_for("top-p");
    p.top_p = 0.8f;
    show("4. top-p 0.8: the smallest most-likely set whose mass reaches 0.8", &p, NULL, 0);

    /* by hand: p_max = 0.448, so the cut is 0.045: dog (0.074) stays, sat (0.037) goes */
    p = params_for("min-p");
    p.min_p = 0.1f;
    show("5a. min-p 0.1: the tokens with p >= 0.1 * p_max", &p, NULL, 0);

    /* by hand: H = 1.446 nats; |-ln p - H| is 0.14 for a, 0.56 for cat, 0.64 for the, ...;
     * a + cat = 0.406 reaches 0.4 */
    p = params_for("typical-p");
    p.typical_p = 0.4f;
    show("5b. typical-p 0.4: tokens whose surprise -ln p is closest to H (drops \"the\"!)", &p,
         NULL, 0);

    show_repetition_penalty();

    static const int history[] = {0, 0, 7};
    p = params_for("penalties");
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.5f;
    show("7. frequency 0.5 and presence 0.5 after \"the the moon\" (OpenAI):\n"
         "   the: 3.0 - 2 * 0.5 - 0.5 = 1.5,  moon: -2.0 - 0.5 - 0.5 = -3.0",
         &p, history, 3);

    /* the same top-p 0.8 and temperature 0.5 in both orders */
    SamplerParams last = params_for("top-p,temperature"), first = params_for("temperature,top-p");
    last.top_p = first.top_p = 0.8f;
    last.temperature = first.temperature = 0.5f;
    printf("8. the two chain orders, top-p 0.8 and temperature 0.5:\n\n");
    side_by_side("top-p, then temperature (llama.cpp)", &last,
                 "temperature, then top-p (llama2.c)", &first);

    printf("\nWith the temperature last, top-p cuts the model's own distribution (the, a, cat)\n"
           "and the temperature only sharpens what is left. With the temperature first, the\n"
           "sharper distribution reaches 0.8 sooner, and cat is cut too.\n"
           "Try this: change temperature 0.5 to 1.5 in step 8: the left column keeps the same\n"
           "three words (only flatter), while the right column now keeps four.\n");
    return 0;
}
