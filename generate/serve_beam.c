/* quill serve's beam search ("beam_size" > 1): the n best beams of each prompt, found by
 * the same search as `quill generate --beam-size` (src/beam.h), as a request's choices.
 *
 * A search keeps beam_size sequences that branch and copy each other's caches at every
 * step, which is not the engine's unit of work (one choice, one sequence); so a beam
 * request runs on a context of its own, made for it, in the request's thread, beside the
 * engine, one search at a time. Its choices reach the answer as the engine's do: events in
 * the request's feed, each beam's whole text in one event, since a search knows which
 * beams are best only at its end. The quill.h API has no beam search, so this file reaches
 * the model behind its handle (quill_internal.h), as the command line's does. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "beam.h"
#include "quill_internal.h"
#include "serve_beam.h"

static pthread_mutex_t one_search = PTHREAD_MUTEX_INITIALIZER;

/* The search's context: beam_size sequences, each with room for the prompt and the text. */
static quill_context *beam_context(Server *s, const BeamRequest *b, int n_prompt)
{
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = b->beam_size;
    int wanted = n_prompt + b->max_tokens + 1;
    cp.n_ctx = wanted < s->n_ctx ? wanted : s->n_ctx;
    return quill_context_new(s->model, &cp);
}

/* Each best beam as one event of choice first + i, with its end. */
static void beams_to_feed(EngineFeed *feed, int first, Completion *best, int n_best)
{
    for (int i = 0; i < n_best; i++) {
        EngineEvent ev = {.choice = first + i, .token = -1, .end = true,
                          .finish = (quill_finish_reason)best[i].finish,
                          .n_generated = best[i].n_tokens};
        ev.text = best[i].text; /* the event takes the text */
        ev.n_text = best[i].len;
        best[i].text = NULL;
        feed_push(feed, &ev);
    }
}

/* One prompt's search on its own context, with the request's sampler for the penalties,
 * logit bias and bad words that score the beams (beam.h). */
static int beam_one_prompt(Server *s, const BeamRequest *b, const quill_token *prompt,
                           int n_prompt, int first, EngineFeed *feed, Error *err)
{
    quill_context *ctx = beam_context(s, b, n_prompt);
    quill_sampler *sampler = ctx ? quill_sampler_new(s->model, b->sampler) : NULL;
    if (!sampler) {
        quill_context_free(ctx);
        return error_set(err, "%s", quill_last_error());
    }
    SessionParams params;
    session_params_default(&params);
    params.max_tokens = b->max_tokens;
    params.stops = b->stops;
    params.n_stops = b->n_stops;
    params.ignore_eos = b->ignore_eos;
    Session session;
    Completion best[SERVE_MAX_BEAMS] = {0};
    int n_best = 0;
    api_context_use_threads(ctx);
    int status = session_borrow(&session, &s->model->model, &s->model->tok, &ctx->infer, 0,
                                &sampler->sampler, &params, err);
    bool borrowed = status == 0;
    if (status == 0)
        status = session_feed(&session, prompt, n_prompt, err);
    if (status == 0)
        status = beam_search(&session, b->beam_size, b->length_penalty, b->n, best, &n_best,
                             err);
    if (status == 0)
        beams_to_feed(feed, first, best, n_best);
    for (int i = 0; i < SERVE_MAX_BEAMS; i++)
        completion_free(&best[i]);
    if (borrowed)
        session_free(&session);
    quill_sampler_free(sampler);
    quill_context_free(ctx);
    return status;
}

int serve_beam(Server *s, const BeamRequest *b, quill_token *const *prompts,
               const int *n_prompts, int n, EngineFeed *feed, Error *err)
{
    pthread_mutex_lock(&one_search);
    int status = 0;
    for (int i = 0; i < n && status == 0; i++)
        status = beam_one_prompt(s, b, prompts[i], n_prompts[i], i * b->n, feed, err);
    pthread_mutex_unlock(&one_search);
    return status;
}
