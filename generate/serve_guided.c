/* quill serve's classifier-free guidance ("guide", "negative_prompt", "guidance_scale";
 * docs/sampling.md): each choice is one quill_generate with the guidance fields, the text
 * `quill generate --guide` writes.
 *
 * A guided choice decodes two sequences side by side, the conditional and the
 * unconditional one, which is not the engine's unit of work (one choice, one sequence); so,
 * as a beam search (serve_beam.c), a guided request runs on a context of its own, made for
 * each choice, in the request's thread, beside the engine, one request at a time. Its
 * choices reach the answer as the engine's do: an event per token with the text it decided,
 * then the end; a stream's chunks are written once the request's choices are done. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "serve_guided.h"

static pthread_mutex_t one_request = PTHREAD_MUTEX_INITIALIZER;

/* Where a choice's tokens go. */
typedef struct {
    EngineFeed *feed;
    int choice;
    bool out_of_memory;
} GuidedChoice;

/* Each token as an event with the text it decided; false (cancelled) once the client is
 * gone. */
static bool push_token(const quill_token_event *ev, void *user)
{
    GuidedChoice *g = user;
    EngineEvent out = {.choice = g->choice, .token = ev->token, .logprob = NAN};
    if (ev->n_text > 0 && !(out.text = malloc(ev->n_text)))
        g->out_of_memory = true;
    else if (ev->n_text > 0) {
        memcpy(out.text, ev->text, ev->n_text);
        out.n_text = ev->n_text;
    }
    feed_push(g->feed, &out);
    return !atomic_load(&g->feed->cancelled) && !g->out_of_memory;
}

/* The choice's context: two sequences, each with room for the longer side (which
 * request_tokenize found to fit) and the text. */
static quill_context *guided_context(Server *s, const GuidedRequest *g, const char *prompt,
                                     Error *err)
{
    int longest = generate_guided_length(s->model, g->guide, g->negative_prompt, prompt, true,
                                         false, err);
    if (longest < 0)
        return NULL;
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = 2;
    int wanted = longest + g->max_tokens + 1;
    cp.n_ctx = wanted < s->n_ctx ? wanted : s->n_ctx;
    quill_context *c = serve_context_new(s, &cp);
    if (!c)
        error_set(err, "%s", quill_last_error());
    return c;
}

/* Choice i: prompt i / n, seed + i % n, guided, its tokens and then its end into the feed. */
static int guided_choice(Server *s, const GuidedRequest *g, const char *prompt, int i,
                         EngineFeed *feed, Error *err)
{
    quill_sampler_params sp = *g->sampler;
    sp.seed += (uint64_t)(i % g->n);
    quill_context *ctx = guided_context(s, g, prompt, err);
    quill_sampler *sampler = ctx ? quill_sampler_new(s->model, &sp) : NULL;
    if (ctx && !sampler)
        error_set(err, "%s", quill_last_error());
    GuidedChoice choice = {.feed = feed, .choice = i};
    quill_generate_params p = quill_generate_params_default();
    p.max_tokens = g->max_tokens;
    p.stop = (const char *const *)g->stops;
    p.n_stop = g->n_stops;
    p.ignore_eos = g->ignore_eos;
    p.guide = g->guide;
    p.negative_prompt = g->negative_prompt;
    p.guidance_scale = g->scale;
    p.on_token = push_token;
    p.user = &choice;
    quill_finish_reason finish = QUILL_FINISH_CANCELLED;
    int status = sampler ? quill_generate(ctx, sampler, prompt, &p, &finish) : QUILL_ERROR;
    if (sampler && status != QUILL_OK)
        error_set(err, "%s", quill_last_error());
    else if (status == QUILL_OK && choice.out_of_memory)
        status = error_set(err, "out of memory");
    if (status == QUILL_OK) {
        EngineEvent end = {.choice = i, .token = -1, .logprob = NAN, .end = true,
                           .finish = finish, .n_generated = quill_context_perf(ctx).n_generated};
        feed_push(feed, &end);
    }
    quill_sampler_free(sampler);
    quill_context_free(ctx);
    return status == QUILL_OK ? 0 : -1;
}

int serve_guided(Server *s, const GuidedRequest *g, const char *const *prompts, int n,
                 EngineFeed *feed, Error *err)
{
    pthread_mutex_lock(&one_request);
    int status = 0;
    for (int i = 0; i < n * g->n && status == 0; i++)
        status = guided_choice(s, g, prompts[i / g->n], i, feed, err);
    pthread_mutex_unlock(&one_request);
    return status;
}
