/* libquill: the sampler chain (sampler.h) behind a handle, with its per-stage candidates as
 * data. */
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"
#include "quill_internal.h"

/* The numbers of s (not the chain, seed, bias or words) into out. */
static void numbers_from_internal(const SamplerParams *s, quill_sampler_params *out)
{
    out->temperature = s->temperature;
    out->top_k = s->top_k;
    out->top_p = s->top_p;
    out->min_p = s->min_p;
    out->typical_p = s->typical_p;
    out->repeat_penalty = s->repeat_penalty;
    out->frequency_penalty = s->frequency_penalty;
    out->presence_penalty = s->presence_penalty;
    out->repeat_last_n = s->repeat_last_n;
    out->penalize_prompt = s->penalize_prompt;
    out->xtc_probability = s->xtc_probability;
    out->xtc_threshold = s->xtc_threshold;
    out->top_n_sigma = s->top_n_sigma;
    out->dynatemp_range = s->dynatemp_range;
    out->dynatemp_exponent = s->dynatemp_exponent;
    out->mirostat = s->mirostat;
    out->mirostat_tau = s->mirostat_tau;
    out->mirostat_eta = s->mirostat_eta;
    out->dry_multiplier = s->dry_multiplier;
    out->dry_base = s->dry_base;
    out->dry_allowed_length = s->dry_allowed_length;
    out->dry_penalty_last_n = s->dry_penalty_last_n;
    out->min_keep = s->min_keep;
}

/* The API's knobs are SamplerParams' (sampler.h has their formulas); both start at
 * llama.cpp's defaults. */
quill_sampler_params quill_sampler_params_default(void)
{
    SamplerParams d;
    sampler_params_default(&d);
    quill_sampler_params p = {.seed = d.seed,
                              .dry_sequence_breakers = SAMPLER_DRY_BREAKERS,
                              .n_dry_sequence_breakers = SAMPLER_DRY_N_BREAKERS};
    numbers_from_internal(&d, &p);
    return p;
}

static void numbers_to_internal(const quill_sampler_params *p, SamplerParams *out)
{
    out->temperature = p->temperature;
    out->top_k = p->top_k;
    out->top_p = p->top_p;
    out->min_p = p->min_p;
    out->typical_p = p->typical_p;
    out->repeat_penalty = p->repeat_penalty;
    out->frequency_penalty = p->frequency_penalty;
    out->presence_penalty = p->presence_penalty;
    out->repeat_last_n = p->repeat_last_n;
    out->penalize_prompt = p->penalize_prompt;
    out->xtc_probability = p->xtc_probability;
    out->xtc_threshold = p->xtc_threshold;
    out->top_n_sigma = p->top_n_sigma;
    out->dynatemp_range = p->dynatemp_range;
    out->dynatemp_exponent = p->dynatemp_exponent;
    out->mirostat = p->mirostat;
    out->mirostat_tau = p->mirostat_tau;
    out->mirostat_eta = p->mirostat_eta;
    out->dry_multiplier = p->dry_multiplier;
    out->dry_base = p->dry_base;
    out->dry_allowed_length = p->dry_allowed_length;
    out->dry_penalty_last_n = p->dry_penalty_last_n;
    out->min_keep = p->min_keep;
    out->seed = p->seed;
}

int quill_sampler_params_preset(quill_sampler_params *p, const char *name)
{
    if (api_check_handle(p, "quill_sampler_params_preset", "params") != QUILL_OK ||
        api_check_handle(name, "quill_sampler_params_preset", "name") != QUILL_OK)
        return QUILL_ERROR;
    SamplerParams s;
    sampler_params_default(&s);
    numbers_to_internal(p, &s);
    Error err;
    if (sampler_preset(name, &s, &err) != 0)
        return api_error(&err);
    numbers_from_internal(&s, p); /* the seed, chain, bias, words and breakers stay */
    return QUILL_OK;
}

/* How a text becomes token sequences: sampler_bad_word_add, sampler_dry_breaker_add. */
typedef int (*SequencesAdd)(TokenSequence **list, int *n, const Tokenizer *tok,
                            const char *text, size_t len, Error *err);

/* texts[0..n_texts) (each called `what` in messages) as token sequences, into *out (*n of
 * them, freed with sampler_bad_words_free: sampler_init copies them). */
static int texts_tokenize(const quill_model *m, const char *what, const char *const *texts,
                          int n_texts, SequencesAdd add, TokenSequence **out, int *n, Error *err)
{
    for (int i = 0; i < n_texts; i++) {
        const char *text = texts[i];
        if (!text || !*text)
            return error_set(err, "%s %d is empty", what, i);
        if (add(out, n, &m->tok, text, strlen(text), err) != 0)
            return -1;
    }
    return 0;
}

/* What sampler_params_from allocates for the SamplerParams it fills (sampler_init copies
 * all of it; lists_free frees it). */
typedef struct {
    LogitBias *bias;
    TokenSequence *bad, *breakers;
    int n_bad, n_breakers;
} Lists;

static void lists_free(Lists *l)
{
    free(l->bias);
    sampler_bad_words_free(l->bad, l->n_bad);
    sampler_bad_words_free(l->breakers, l->n_breakers);
}

/* The SamplerParams of p: the numbers, the chain, the bias (the same struct layout: copied
 * as LogitBias), the bad words tokenized (each in both of its spellings) and, with DRY on,
 * its sequence breakers found in the vocabulary (a scan of it per breaker). */
static int sampler_params_from(const quill_model *m, const quill_sampler_params *p,
                               SamplerParams *out, Lists *l, Error *err)
{
    sampler_params_default(out);
    numbers_to_internal(p, out);
    if (p->chain && sampler_chain_parse(p->chain, out, err) != 0)
        return -1;
    if (p->n_logit_bias < 0 || p->n_bad_words < 0 || p->n_dry_sequence_breakers < 0 ||
        (p->n_logit_bias > 0 && !p->logit_bias) || (p->n_bad_words > 0 && !p->bad_words) ||
        (p->n_dry_sequence_breakers > 0 && !p->dry_sequence_breakers))
        return error_set(err, "%d logit biases at %p, %d bad words at %p, %d DRY sequence "
                              "breakers at %p", p->n_logit_bias, (const void *)p->logit_bias,
                         p->n_bad_words, (const void *)p->bad_words,
                         p->n_dry_sequence_breakers, (const void *)p->dry_sequence_breakers);
    l->bias = calloc((size_t)p->n_logit_bias + 1, sizeof *l->bias);
    if (!l->bias)
        return error_set(err, "out of memory");
    for (int i = 0; i < p->n_logit_bias; i++)
        l->bias[i] = (LogitBias){.token = p->logit_bias[i].token, .bias = p->logit_bias[i].bias};
    out->logit_bias = l->bias;
    out->n_logit_bias = p->n_logit_bias;
    if (texts_tokenize(m, "bad word", p->bad_words, p->n_bad_words, sampler_bad_word_add,
                       &l->bad, &l->n_bad, err) != 0)
        return -1;
    out->bad_words = l->bad;
    out->n_bad_words = l->n_bad;
    if (p->dry_multiplier != 0.0f &&
        texts_tokenize(m, "DRY sequence breaker", p->dry_sequence_breakers,
                       p->n_dry_sequence_breakers, sampler_dry_breaker_add, &l->breakers,
                       &l->n_breakers, err) != 0)
        return -1;
    out->dry_breakers = l->breakers;
    out->n_dry_breakers = l->n_breakers;
    return 0;
}

/* quill_sampler_params.grammar or .json_schema: built here, so that a grammar with a mistake
 * fails quill_sampler_new with its line and column, and a schema with what it cannot
 * convert and where. */
static int sampler_grammar_from(quill_sampler *s, const quill_sampler_params *p, Error *err)
{
    if (!p->grammar && !p->json_schema)
        return 0;
    if (p->grammar && p->json_schema)
        return error_set(err, "grammar and json_schema both given: one of them");
    Grammar g;
    if (p->grammar && grammar_parse(p->grammar, strlen(p->grammar), &g, err) != 0)
        return error_prefix(err, "grammar");
    if (p->json_schema &&
        json_schema_grammar(p->json_schema, strlen(p->json_schema), &g, err) != 0)
        return error_prefix(err, "json_schema");
    return api_sampler_use_grammar(s, &g, err);
}

quill_sampler *quill_sampler_new(const quill_model *m, const quill_sampler_params *p)
{
    if (api_check_handle(m, "quill_sampler_new", "model") != QUILL_OK)
        return NULL;
    quill_sampler_params params = p ? *p : quill_sampler_params_default();
    quill_sampler *s = calloc(1, sizeof *s);
    SamplerParams internal;
    Lists lists = {0};
    Error err;
    int status = s ? sampler_params_from(m, &params, &internal, &lists, &err)
                   : error_set(&err, "out of memory");
    if (status == 0)
        status = sampler_init(&s->sampler, &internal, m->tok.n_vocab, &err);
    lists_free(&lists);
    if (status == 0) {
        s->model = m;
        status = sampler_grammar_from(s, &params, &err);
    }
    if (status != 0) {
        api_error(&err); /* the setting's own message, as the command line shows it */
        quill_sampler_free(s);
        return NULL;
    }
    return s;
}

int api_sampler_use_grammar(quill_sampler *s, Grammar *g, Error *err)
{
    grammar_free(&s->grammar);
    s->grammar = *g;
    memset(g, 0, sizeof *g);
    return sampler_set_grammar(&s->sampler, &s->grammar, &s->model->tok, err);
}

void quill_sampler_free(quill_sampler *s)
{
    if (!s)
        return;
    sampler_free(&s->sampler);
    grammar_free(&s->grammar);
    free(s);
}

/* The trace's steps as the API's candidates, trace_top of each at most. */
static void trace_as_candidates(quill_sampler *s)
{
    for (int i = 0; i < s->trace.n_steps; i++) {
        const SamplerTraceStep *step = &s->trace.steps[i];
        s->n_top[i] = step->n_top < s->trace_top ? step->n_top : s->trace_top;
        for (int k = 0; k < s->n_top[i]; k++)
            s->top[i][k] = (quill_candidate){.token = step->top[k].id,
                                             .logit = step->top[k].logit, .p = step->top[k].p};
    }
}

void api_sampler_traced(quill_sampler *s, const SamplerTrace *trace)
{
    s->trace = *trace;
    trace_as_candidates(s);
}

quill_token quill_sampler_sample(quill_sampler *s, const float *logits)
{
    if (api_check_handle(s, "quill_sampler_sample", "sampler") != QUILL_OK ||
        api_check_handle(logits, "quill_sampler_sample", "logits") != QUILL_OK)
        return -1;
    if (s->trace_top == 0) {
        s->trace.n_steps = 0;
        return sampler_sample(&s->sampler, logits);
    }
    int token = sampler_sample_traced(&s->sampler, logits, &s->trace);
    trace_as_candidates(s);
    return token;
}

int quill_sampler_accept(quill_sampler *s, quill_token token, bool is_prompt)
{
    if (api_check_handle(s, "quill_sampler_accept", "sampler") != QUILL_OK)
        return QUILL_ERROR;
    Error err;
    if (sampler_accept(&s->sampler, token, is_prompt, &err) != 0)
        return api_fail("quill_sampler_accept: %s", err.msg);
    return QUILL_OK;
}

/* Forgets the history, and starts the draw again from the seed (sampler_reset alone lets
 * the RNG go on). */
void quill_sampler_reset(quill_sampler *s)
{
    if (!s)
        return;
    sampler_reset(&s->sampler);
    rng_seed(&s->sampler.rng, s->sampler.params.seed);
}

int quill_sampler_describe(const quill_sampler *s, char *buf, size_t cap)
{
    if (api_check_handle(s, "quill_sampler_describe", "sampler") != QUILL_OK)
        return -1;
    char text[1024];
    sampler_chain_describe(&s->sampler.params, text, sizeof text);
    return api_copy_out(text, strlen(text), buf, cap);
}

int quill_sampler_trace(quill_sampler *s, int top_n)
{
    if (api_check_handle(s, "quill_sampler_trace", "sampler") != QUILL_OK)
        return QUILL_ERROR;
    if (top_n < 0 || top_n > SAMPLER_TRACE_TOP)
        return api_fail("quill_sampler_trace: %d candidates per stage (0 to %d)", top_n,
                        SAMPLER_TRACE_TOP);
    s->trace_top = top_n;
    s->trace.n_steps = 0;
    return QUILL_OK;
}

int quill_sampler_stages(const quill_sampler *s, quill_stage_candidates *out, int cap)
{
    if (api_check_handle(s, "quill_sampler_stages", "sampler") != QUILL_OK)
        return -1;
    if (cap < 0 || (cap > 0 && !out))
        return api_fail("quill_sampler_stages: a buffer of %d stages at %p", cap, (void *)out);
    const SamplerTrace *t = &s->trace;
    for (int i = 0; i < t->n_steps && i < cap; i++)
        out[i] = (quill_stage_candidates){.stage = t->steps[i].stage,
                                          .n_survivors = t->steps[i].n,
                                          .n_top = s->n_top[i], .top = s->top[i]};
    return t->n_steps;
}

quill_token quill_sampler_chosen(const quill_sampler *s)
{
    return s && s->trace.n_steps > 0 ? s->trace.chosen : -1;
}
