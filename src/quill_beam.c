/* libquill: beam search, the search of `quill generate --beam-size` (beam.c) on a public
 * context's sequences, with a public sampler's penalties, bias and bad words, and the words
 * that must appear (must_include.h). */
#include <stdlib.h>
#include <string.h>

#include "beam.h"
#include "quill_internal.h"

enum { BEAMS_MAX = 64 }; /* quill generate's --beam-size limit */

quill_beam_params quill_beam_params_default(void)
{
    return (quill_beam_params){.beam_size = 4, .length_penalty = 1.0f, .n_best = 1,
                               .max_tokens = 256, .add_special = true};
}

static int check_beam(const quill_context *c, const quill_sampler *s, const char *prompt,
                      const quill_beam_params *p, const quill_beam_result *out, int cap)
{
    const char *fn = "quill_beam_search";
    if (api_check_handle(c, fn, "context") != QUILL_OK ||
        api_check_handle(s, fn, "sampler") != QUILL_OK ||
        api_check_handle(prompt, fn, "prompt") != QUILL_OK ||
        api_check_handle(out, fn, "out") != QUILL_OK)
        return QUILL_ERROR;
    if (p->beam_size < 1 || p->beam_size > BEAMS_MAX || p->n_best < 1 ||
        p->n_best > p->beam_size || cap < 1 || p->max_tokens < 0 || p->n_stop < 0 ||
        (p->n_stop > 0 && !p->stop))
        return api_fail("%s: beam_size %d (1 to %d), n_best %d (1 to beam_size), cap %d, "
                        "max_tokens %d, %d stop strings", fn, p->beam_size, BEAMS_MAX,
                        p->n_best, cap, p->max_tokens, p->n_stop);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return api_fail("%s: stop string %d is empty", fn, i);
    if (p->n_must_include < 0 || (p->n_must_include > 0 && !p->must_include))
        return api_fail("%s: %d words that must appear without a list", fn, p->n_must_include);
    if (p->beam_size > c->infer.params.n_seq)
        return api_fail_as(QUILL_ERROR_CONTEXT, "%s: %d beams need %d sequences; the context "
                           "has %d", fn, p->beam_size, p->beam_size, c->infer.params.n_seq);
    if (s->model->tok.n_vocab != c->model->tok.n_vocab)
        return api_fail("%s: the sampler was made for another model", fn);
    return QUILL_OK;
}

/* The prompt's tokens on empty sequences, as quill_generate takes a first prompt. */
static int beam_prompt(const quill_context *c, const char *prompt, const quill_beam_params *p,
                       int **ids, int *n)
{
    const Tokenizer *tok = &c->model->tok;
    EncodeOptions opt = {.add_bos = p->add_special && tok->add_bos,
                         .parse_special = p->parse_special};
    size_t count;
    Error err;
    if (tokenizer_encode_with(tok, prompt, strlen(prompt), opt, ids, &count, &err) != 0)
        return api_error(&err);
    if (count == 0 || count >= (size_t)c->infer.params.n_ctx)
        return api_fail_as(QUILL_ERROR_CONTEXT, "quill_beam_search: the prompt has %zu tokens; "
                           "the context holds %d, so between 1 and %d fit", count,
                           c->infer.params.n_ctx, c->infer.params.n_ctx - 1);
    *n = (int)count;
    return QUILL_OK;
}

/* The search's hypotheses as results: each text changes hands, the rest is freed. */
static int results_take(Completion *best, int n_best, quill_beam_result *out, int cap)
{
    int n = n_best < cap ? n_best : cap;
    for (int i = 0; i < n; i++) {
        out[i] = (quill_beam_result){.text = best[i].text, .n_text = best[i].len,
                                     .score = best[i].score, .n_tokens = best[i].n_tokens,
                                     .finish = (quill_finish_reason)best[i].finish,
                                     .missed = best[i].missed};
        if (!out[i].text) /* an empty text is still a string */
            out[i].text = calloc(1, 1);
        best[i].text = NULL;
    }
    return n;
}

int quill_beam_search(quill_context *c, quill_sampler *s, const char *prompt,
                      const quill_beam_params *p, quill_beam_result *out, int cap)
{
    quill_beam_params params = p ? *p : quill_beam_params_default();
    int *ids = NULL, n_ids = 0;
    if (check_beam(c, s, prompt, &params, out, cap) != QUILL_OK ||
        beam_prompt(c, prompt, &params, &ids, &n_ids) != QUILL_OK) {
        free(ids);
        return QUILL_ERROR;
    }
    api_context_use_threads(c);
    for (int i = 0; i < params.beam_size; i++)
        infer_seq_clear(&c->infer, i);
    SessionParams sp;
    session_params_default(&sp);
    sp.max_tokens = params.max_tokens;
    sp.stops = (char *const *)params.stop;
    sp.n_stops = params.n_stop;
    sp.ignore_eos = params.ignore_eos;
    Session session;
    Completion best[BEAMS_MAX] = {0};
    int n_best = 0;
    Error err;
    MustInclude must;
    int status = must_include_init(&must, &c->model->tok, params.must_include,
                                   params.n_must_include, &err);
    if (status != 0) {
        must_include_free(&must);
        free(ids);
        return api_error(&err);
    }
    status = session_borrow(&session, &c->model->model, &c->model->tok, &c->infer, 0,
                            &s->sampler, &sp, &err);
    bool borrowed = status == 0;
    if (status == 0)
        status = session_feed(&session, ids, n_ids, &err);
    if (status == 0)
        status = beam_search(&session, params.beam_size, params.length_penalty, params.n_best,
                             &must, best, &n_best, &err);
    must_include_free(&must);
    int n = status == 0 ? results_take(best, n_best, out, cap) : 0;
    for (int i = 0; i < BEAMS_MAX; i++)
        completion_free(&best[i]);
    if (borrowed)
        session_free(&session);
    free(ids);
    return status == 0 ? n : api_error_as(QUILL_ERROR_CONTEXT, &err);
}

void quill_beam_results_free(quill_beam_result *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        free(r[i].text);
        r[i].text = NULL;
    }
}
