/* quill serve's beam search ("beam_size" > 1): the n best beams of each prompt, found by
 * quill_beam_search (the search of `quill generate --beam-size`), as a request's choices.
 *
 * A search keeps beam_size sequences that branch and copy each other's caches at every
 * step, which is not the engine's unit of work (one choice, one sequence); so a beam
 * request runs on a context of its own, made for it, in the request's thread, beside the
 * engine, one search at a time. Its choices reach the answer as the engine's do: events in
 * the request's feed, each beam's whole text in one event, since a search knows which
 * beams are best only at its end. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "serve_beam.h"

static pthread_mutex_t one_search = PTHREAD_MUTEX_INITIALIZER;

/* The search's context: beam_size sequences, each with room for the prompt and the text. */
static quill_context *beam_context(Server *s, const BeamRequest *b, int n_prompt)
{
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = b->beam_size;
    int wanted = n_prompt + b->max_tokens + 1;
    cp.n_ctx = wanted < s->n_ctx ? wanted : s->n_ctx;
    return serve_context_new(s, &cp);
}

/* Each best beam as one event of choice first + i, with its end and the words it lacks;
 * the event takes the text. */
static void beams_to_feed(EngineFeed *feed, int first, quill_beam_result *best, int n_best)
{
    for (int i = 0; i < n_best; i++) {
        EngineEvent ev = {.choice = first + i, .token = -1, .end = true,
                          .finish = best[i].finish, .n_generated = best[i].n_tokens,
                          .text = best[i].text, .n_text = best[i].n_text,
                          .missed = best[i].missed};
        best[i].text = NULL;
        feed_push(feed, &ev);
    }
}

/* One prompt's search on its own context, with the request's sampler for the penalties,
 * logit bias and bad words that score the beams. */
static int beam_one_prompt(Server *s, const BeamRequest *b, const char *prompt, int n_prompt,
                           int first, EngineFeed *feed, Error *err)
{
    quill_context *ctx = beam_context(s, b, n_prompt);
    quill_sampler *sampler = ctx ? quill_sampler_new(s->model, b->sampler) : NULL;
    quill_beam_params params = quill_beam_params_default();
    params.beam_size = b->beam_size;
    params.length_penalty = b->length_penalty;
    params.n_best = b->n;
    params.max_tokens = b->max_tokens;
    params.stop = (const char *const *)b->stops;
    params.n_stop = b->n_stops;
    params.ignore_eos = b->ignore_eos;
    params.parse_special = b->parse_special;
    params.must_include = b->must_include;
    params.n_must_include = b->n_must_include;
    quill_beam_result best[SERVE_MAX_BEAMS];
    int n_best = sampler ? quill_beam_search(ctx, sampler, prompt, &params, best,
                                             SERVE_MAX_BEAMS)
                         : QUILL_ERROR;
    if (n_best >= 0)
        beams_to_feed(feed, first, best, n_best);
    else
        error_set(err, "%s", quill_last_error());
    quill_beam_results_free(best, n_best);
    quill_sampler_free(sampler);
    quill_context_free(ctx);
    return n_best >= 0 ? 0 : -1;
}

int serve_beam(Server *s, const BeamRequest *b, const char *const *prompts,
               const int *n_prompts, int n, EngineFeed *feed, Error *err)
{
    pthread_mutex_lock(&one_search);
    int status = 0;
    for (int i = 0; i < n && status == 0; i++)
        status = beam_one_prompt(s, b, prompts[i], n_prompts[i], i * b->n, feed, err);
    pthread_mutex_unlock(&one_search);
    return status;
}
