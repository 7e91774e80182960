/* quill serve's classifier-free guidance: a request with "guide" or "negative_prompt"
 * (serve_guided.c says how it runs beside the engine). */
#ifndef QUILL_GENERATE_SERVE_GUIDED_H
#define QUILL_GENERATE_SERVE_GUIDED_H

#include "serve_engine.h"

typedef struct {
    const char *guide;           /* the conditional side's text before the prompt, or NULL */
    const char *negative_prompt; /* the unconditional side's, or NULL */
    float scale;                 /* S in uncond + S (cond - uncond) */
    int n;                       /* choices per prompt: seeds seed, seed + 1, ... */
    int max_tokens;
    bool ignore_eos;
    char *const *stops;
    int n_stops;
    const quill_sampler_params *sampler;
} GuidedRequest;

/* Generates each of the n prompts' g->n choices in turn; choice i (prompt i / g->n) goes to
 * the feed as one event per token, then its end. On an error the choices not ended are the
 * caller's to end. */
int serve_guided(Server *s, const GuidedRequest *g, const char *const *prompts, int n,
                 EngineFeed *feed, Error *err);

#endif
