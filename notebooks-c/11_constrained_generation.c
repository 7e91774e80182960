/* Notebook 11: constrained and guided generation, by hand on a toy model.
 *
 * A sampler can do more than reshape the model's distribution: it can forbid what breaks a
 * rule (a grammar: the text must have a given form) and it can steer, by mixing the model's
 * distributions for two prompts (guidance). Both act on the logits before the usual chain,
 * so the filters and the temperature only ever see what is left.
 *
 * The "model" here is made up: a vocabulary of 8 pieces, and at every step the same logits,
 * those of notebook 5. A real model's logits change with the text; the mechanics do not.
 *
 *   1. a grammar as a mask: at each step only the pieces whose bytes keep the text inside
 *      the grammar survive; softmax over the survivors (src/grammar.h, src/sampler.h)
 *   2. guidance: logits = uncond + S * (cond - uncond), S the strength: 0 is the
 *      unconditional model, 1 the conditional one, above 1 pushes further the way the
 *      guidance text points (Sanchez et al. 2023; src/session.h, guidance_mix)
 *
 * docs/grammars.md and docs/sampling.md have the full story.
 * Build and run:  make notebooks   (or: build/release/notebooks/11_constrained_generation) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/chart.h"
#include "grammar.h"
#include "session.h"

enum { V = 8, BAR = 30, MAX_STEPS = 8 };
static const char *const PIECES[V] = {"the ", "a ", "cat ", "dog ", "sat", "ran", ".", "moon"};
/* softmax: 0.448 0.271 0.135 0.074 0.037 0.022 0.010 0.003 */
static const float LOGITS[V] = {3.0f, 2.5f, 1.8f, 1.2f, 0.5f, 0.0f, -0.8f, -2.0f};

/* A sentence of four pieces: an article, an animal, a verb, a full stop. */
static const char GRAMMAR[] = "root    ::= article animal verb \".\"\n"
                              "article ::= \"the \" | \"a \"\n"
                              "animal  ::= \"cat \" | \"dog \"\n"
                              "verb    ::= \"sat\" | \"ran\"\n";

static void check(int status, const Error *err)
{
    if (status != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

/* softmax of logits[0..V) over the tokens with keep[i] (all when keep is NULL). */
static void softmax_over(const float *logits, const bool *keep, double *p)
{
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++)
        if (!keep || keep[i])
            max = logits[i] > max ? logits[i] : max;
    for (int i = 0; i < V; i++) {
        p[i] = !keep || keep[i] ? exp(logits[i] - max) : 0.0;
        sum += p[i];
    }
    for (int i = 0; i < V; i++)
        p[i] /= sum;
}

/* The mask of one step: which pieces the recognizer lets come next. */
static int grammar_mask(const GrammarMatcher *m, bool *keep)
{
    int n = 0;
    Error err;
    for (int i = 0; i < V; i++) {
        check(grammar_matcher_allows(m, (const unsigned char *)PIECES[i], strlen(PIECES[i]),
                                     &keep[i], &err),
              &err);
        n += keep[i];
    }
    return n;
}

/* One bar per surviving piece. */
static void bars(const double *p, const bool *keep)
{
    for (int i = 0; i < V; i++)
        if (!keep || keep[i]) {
            char label[24];
            snprintf(label, sizeof label, "  %-7s", PIECES[i]);
            chart_bar(stdout, label, p[i], 1.0, BAR);
        }
}

/* Greedy decoding under the grammar: mask, softmax over the survivors, take the most
 * likely, feed its bytes to the recognizer. When the text is a complete sentence and the
 * grammar can take nothing more, the end of text is the only choice left. */
static void grammar_walk(void)
{
    Grammar g;
    GrammarMatcher m;
    Error err;
    check(grammar_parse(GRAMMAR, strlen(GRAMMAR), &g, &err), &err);
    check(grammar_matcher_init(&m, &g, &err), &err);
    printf("1. greedy decoding under the grammar\n%s\n", GRAMMAR);
    char text[64] = "";
    for (int step = 1; step <= MAX_STEPS && grammar_matcher_can_continue(&m); step++) {
        bool keep[V];
        double p[V];
        int n = grammar_mask(&m, keep);
        softmax_over(LOGITS, keep, p);
        int best = -1;
        for (int i = 0; i < V; i++)
            if (keep[i] && (best < 0 || p[i] > p[best]))
                best = i;
        printf("step %d: %d of %d pieces allowed after \"%s\"\n", step, n, V, text);
        bars(p, keep);
        printf("  chosen: \"%s\" (p %.4f)\n\n", PIECES[best], p[best]);
        bool fed;
        check(grammar_matcher_feed(&m, (const unsigned char *)PIECES[best],
                                   strlen(PIECES[best]), &fed, &err),
              &err);
        strncat(text, PIECES[best], sizeof text - strlen(text) - 1);
    }
    printf("text: \"%s\"  complete: %s  can go on: %s -> the end of text is the only choice\n\n",
           text, grammar_matcher_is_complete(&m) ? "yes" : "no",
           grammar_matcher_can_continue(&m) ? "yes" : "no");
    printf("Without the grammar the model says \"the the the ...\": its favourite piece every\n"
           "time. The mask does not change the model's preferences among what is allowed (step\n"
           "1: the over a, 0.6225 = 1 / (1 + e^-0.5)); it only removes what is not allowed.\n\n");
    grammar_matcher_free(&m);
    grammar_free(&g);
}

/* Guidance at one step. The conditional logits are the model's after a prompt with the
 * guidance text (here: LOGITS); the unconditional ones after the prompt alone (made up: the
 * same model without the hint, keener on "moon"). */
static void guidance_table(void)
{
    static const float UNCOND[V] = {2.6f, 2.4f, 1.0f, 1.1f, 0.4f, 0.1f, -0.6f, 1.5f};
    static const float STRENGTHS[] = {0.0f, 1.0f, 1.5f, 3.0f};
    printf("2. guidance: logits = uncond + S * (cond - uncond)\n");
    printf("  %-6s %8s %8s", "piece", "cond", "uncond");
    for (size_t k = 0; k < sizeof STRENGTHS / sizeof *STRENGTHS; k++)
        printf("   p(S=%.1f)", STRENGTHS[k]);
    printf("\n");
    double p[sizeof STRENGTHS / sizeof *STRENGTHS][V];
    for (size_t k = 0; k < sizeof STRENGTHS / sizeof *STRENGTHS; k++) {
        float mixed[V];
        guidance_mix(LOGITS, UNCOND, STRENGTHS[k], mixed, V); /* what quill generate --guide runs */
        softmax_over(mixed, NULL, p[k]);
    }
    for (int i = 0; i < V; i++) {
        printf("  %-6s %8.2f %8.2f", PIECES[i], LOGITS[i], UNCOND[i]);
        for (size_t k = 0; k < sizeof STRENGTHS / sizeof *STRENGTHS; k++)
            printf("   %9.4f", p[k][i]);
        printf("\n");
    }
    printf("\nS = 0 is the unconditional model, S = 1 the conditional one. At S = 3 the pieces\n"
           "the guidance text made likelier (cat: 1.0 -> 1.8) move twice that much again (to\n"
           "3.4), and those it made less likely (moon: 1.5 -> -2.0) fall further: moon's\n"
           "logit is 1.5 + 3 * -3.5 = -9, next to nothing.\n"
           "guidance_mix computes it as (1 - S) * uncond + S * cond: the same number, but\n"
           "exactly cond at S = 1 and exactly uncond at S = 0, where uncond + (cond - uncond)\n"
           "can miss cond by a rounding step.\n"
           "Try this: set S to 0.5: halfway between the two models, in logits.\n");
}

int main(void)
{
    printf("pieces and logits:");
    for (int i = 0; i < V; i++)
        printf(" \"%s\" %.1f", PIECES[i], LOGITS[i]);
    printf("\n\n");
    grammar_walk();
    guidance_table();
    return 0;
}
