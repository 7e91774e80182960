/* quill serve: a completion request's fields, read and checked (serve_request.h). The
 * sampling fields keep OpenAI's names, and quill's extensions the names of its command
 * line's flags, as llama-server does for its own. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "options.h"
#include "serve_beam.h"
#include "serve_engine.h"
#include "serve_fields.h"
#include "serve_request.h"

/* "samplers": an array of stage names (or one string of them, separated by ';' or ','), in
 * quill's names ("top-k") or llama-server's ("top_k", "typ_p"), into quill's chain string. */
static int read_chain(const cJSON *req, char *chain, size_t cap, ApiError *e)
{
    const char *names[MAX_CHAIN];
    int n = field_strings(req, "samplers", MAX_CHAIN, names, e);
    if (n <= 0)
        return n;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const char *name = strcmp(names[i], "typ_p") == 0 ? "typical-p" : names[i];
        if (o + strlen(name) + 2 > cap)
            return serve_error(e, 400, "samplers", "samplers is too long");
        o += (size_t)snprintf(chain + o, cap - o, "%s%s", i ? "," : "", name);
    }
    for (char *c = chain; *c; c++)
        *c = *c == '_' ? '-' : *c == ';' ? ',' : *c;
    return 1;
}

/* "logit_bias": {"token id": bias in [-100, 100]}, as OpenAI; -100 bans the token (a bias
 * that large removes it in practice, and quill makes it exact). */
static int read_logit_bias(const cJSON *req, CompletionRequest *c, int n_vocab, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, "logit_bias");
    if (!f || cJSON_IsNull(f))
        return 0;
    if (!cJSON_IsObject(f))
        return serve_error(e, 400, "logit_bias", "logit_bias must be an object of token id: bias");
    int n = cJSON_GetArraySize(f), i = 0;
    if (n > n_vocab)
        return serve_error(e, 400, "logit_bias", "logit_bias has %d entries, the vocabulary %d",
                         n, n_vocab);
    c->bias = malloc(sizeof *c->bias * (size_t)(n ? n : 1));
    if (!c->bias)
        return serve_error(e, 500, NULL, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, f) {
        char *end;
        long id = strtol(item->string, &end, 10);
        if (*item->string == '\0' || *end != '\0' || id < 0 || id >= n_vocab)
            return serve_error(e, 400, "logit_bias", "logit_bias key '%.40s' is not a token id "
                             "in [0, %d)", item->string, n_vocab);
        if (!cJSON_IsNumber(item) || item->valuedouble < -100 || item->valuedouble > 100)
            return serve_error(e, 400, "logit_bias", "logit_bias values must be numbers in "
                             "[-100, 100]");
        float bias = (float)item->valuedouble;
        c->bias[i++] = (quill_logit_bias){(quill_token)id, bias <= -100 ? -INFINITY : bias};
    }
    c->sampler.logit_bias = c->bias;
    c->sampler.n_logit_bias = n;
    return 0;
}

/* The seed: the request's, else a new one per request (as OpenAI and llama-server: without
 * a seed, two requests differ). */
static int read_seed(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    double seed;
    int got = field_number(req, "seed", -1, 9007199254740992.0, true, &seed, e);
    if (got < 0)
        return -1;
    if (got == 1 && seed >= 0) {
        c->sampler.seed = (uint64_t)seed;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c->sampler.seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
    }
    return 0;
}

/* The samplers llama-server has beside OpenAI's, under its names and in the ranges of
 * quill generate's flags. */
static int read_newer_samplers(const cJSON *req, quill_sampler_params *p, ApiError *e)
{
    if (field_float(req, "xtc_probability", 0, 1, &p->xtc_probability, e) < 0 ||
        field_float(req, "xtc_threshold", 0, 1, &p->xtc_threshold, e) < 0 ||
        field_float(req, "top_n_sigma", -1, 100, &p->top_n_sigma, e) < 0 ||
        field_float(req, "dynatemp_range", 0, 100, &p->dynatemp_range, e) < 0 ||
        field_float(req, "dynatemp_exponent", 0, 100, &p->dynatemp_exponent, e) < 0 ||
        field_int(req, "mirostat", 0, 2, &p->mirostat, e) < 0 ||
        field_float(req, "mirostat_tau", 0, 100, &p->mirostat_tau, e) < 0 ||
        field_float(req, "mirostat_eta", 0, 100, &p->mirostat_eta, e) < 0)
        return -1;
    return 0;
}

/* DRY's fields and min_keep, under llama-server's names; "dry_sequence_breakers" (absent:
 * the defaults) is a non-empty array of strings, as there (an empty or too long one is the
 * library's 400, when the sampler is made). */
static int read_dry(const cJSON *req, CompletionRequest *c, const Server *s, ApiError *e)
{
    quill_sampler_params *p = &c->sampler;
    if (field_float(req, "dry_multiplier", 0, 100, &p->dry_multiplier, e) < 0 ||
        field_float(req, "dry_base", 1, 100, &p->dry_base, e) < 0 ||
        field_int(req, "dry_allowed_length", 0, s->n_ctx, &p->dry_allowed_length, e) < 0 ||
        field_int(req, "dry_penalty_last_n", -1, s->n_ctx, &p->dry_penalty_last_n, e) < 0 ||
        field_int(req, "min_keep", 0, quill_model_vocab_size(s->model), &p->min_keep, e) < 0)
        return -1;
    int n = field_strings(req, "dry_sequence_breakers", MAX_DRY_BREAKERS, c->dry_breakers, e);
    if (n < 0)
        return -1;
    if (n > 0) {
        p->dry_sequence_breakers = c->dry_breakers;
        p->n_dry_sequence_breakers = n;
    }
    return 0;
}

/* OpenAI's "response_format" as a schema: {"type": "text"} none, {"type": "json_object"}
 * any JSON value (*any; with llama-server's "schema" beside it, that schema), {"type":
 * "json_schema", "json_schema": {"schema": {...}}} the schema given. */
static int response_format_schema(const cJSON *f, const cJSON **schema, bool *any, ApiError *e)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    *schema = NULL;
    *any = false;
    if (strcmp(t, "text") == 0)
        return 0;
    if (strcmp(t, "json_object") == 0) {
        *schema = cJSON_GetObjectItemCaseSensitive(f, "schema");
        *any = !*schema;
        return 0;
    }
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(f, "json_schema");
    *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (strcmp(t, "json_schema") == 0 && cJSON_IsObject(*schema))
        return 0;
    return serve_error(e, 400, "response_format", "response_format must be {\"type\": "
                       "\"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", "
                       "\"json_schema\": {\"schema\": {...}}}");
}

/* JSON output, the grammar of a JSON Schema (docs/grammars.md): llama-server's "json_schema"
 * (a schema object) or OpenAI's "response_format", kept as text for the sampler. */
static int read_json_output(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(req, "json_schema");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(req, "response_format");
    bool any = false;
    schema = cJSON_IsNull(schema) ? NULL : schema;
    format = cJSON_IsNull(format) ? NULL : format;
    c->json_field = format ? "response_format" : "json_schema";
    if (schema && format)
        return serve_error(e, 400, "response_format", "json_schema and response_format both "
                           "given: one of them");
    if (format && !cJSON_IsObject(format))
        return serve_error(e, 400, "response_format", "response_format must be an object");
    if (format && response_format_schema(format, &schema, &any, e) != 0)
        return -1;
    if (schema && !cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return serve_error(e, 400, c->json_field, "%s: the schema must be a JSON Schema object",
                           c->json_field);
    if (!schema && !any)
        return 0;
    if (c->sampler.grammar)
        return serve_error(e, 400, c->json_field, "grammar and %s both given: one of them",
                           c->json_field);
    c->json_schema = any ? strdup("{}") : cJSON_PrintUnformatted(schema);
    if (!c->json_schema)
        return serve_error(e, 500, NULL, "out of memory");
    c->sampler.json_schema = c->json_schema;
    return 0;
}

/* The sampling fields, under OpenAI's names and llama-server's for quill's extensions. */
static int read_sampling(const cJSON *req, CompletionRequest *c, const Server *s, ApiError *e)
{
    quill_sampler_params *p = &c->sampler;
    *p = quill_sampler_params_default();
    int n_vocab = quill_model_vocab_size(s->model);
    if (field_float(req, "temperature", 0, 100, &p->temperature, e) < 0 ||
        field_float(req, "top_p", 0, 1, &p->top_p, e) < 0 ||
        field_int(req, "top_k", 0, n_vocab, &p->top_k, e) < 0 ||
        field_float(req, "min_p", 0, 1, &p->min_p, e) < 0 ||
        field_float(req, "typical_p", 0, 1, &p->typical_p, e) < 0 ||
        field_float(req, "repeat_penalty", 0, 100, &p->repeat_penalty, e) < 0 ||
        field_int(req, "repeat_last_n", -1, s->n_ctx, &p->repeat_last_n, e) < 0 ||
        field_float(req, "presence_penalty", -2, 2, &p->presence_penalty, e) < 0 ||
        field_float(req, "frequency_penalty", -2, 2, &p->frequency_penalty, e) < 0 ||
        read_seed(req, c, e) < 0 || read_logit_bias(req, c, n_vocab, e) < 0 ||
        read_newer_samplers(req, p, e) < 0 || field_string(req, "grammar", &p->grammar, e) < 0 ||
        read_dry(req, c, s, e) < 0 || read_json_output(req, c, e) < 0)
        return -1;
    p->n_bad_words = field_strings(req, "bad_words", MAX_BAD_WORDS, c->bad_words, e);
    if (p->n_bad_words < 0)
        return -1;
    p->bad_words = c->bad_words;
    if (p->repeat_penalty == 0)
        return serve_error(e, 400, "repeat_penalty", "repeat_penalty must be > 0");
    int chain = read_chain(req, c->chain, sizeof c->chain, e);
    if (chain < 0)
        return -1;
    p->chain = chain ? c->chain : NULL;
    return 0;
}

/* Log-probabilities in OpenAI's two forms: a completion's "logprobs": K (the K most likely
 * tokens at each step, besides the one chosen), a chat's "logprobs": true with
 * "top_logprobs": K. */
static int read_logprobs(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    c->logprobs = -1;
    if (!c->chat)
        return field_int(req, "logprobs", 0, ENGINE_MAX_TOP, &c->logprobs, e) < 0 ? -1 : 0;
    bool wanted = false;
    int top = 0;
    if (field_bool(req, "logprobs", &wanted, e) < 0 ||
        field_int(req, "top_logprobs", 0, ENGINE_MAX_TOP, &top, e) < 0)
        return -1;
    if (top > 0 && !wanted)
        return serve_error(e, 400, "top_logprobs", "top_logprobs needs \"logprobs\": true");
    c->logprobs = wanted ? top : -1;
    return 0;
}

/* A string or an array of 1..max strings, none of them empty (`what` they are names them
 * in the 400): their count, or -1. */
static int field_texts(const cJSON *req, const char *name, int max, const char **out,
                       const char *what, ApiError *e)
{
    int n = field_strings(req, name, max, out, e);
    for (int i = 0; i < n; i++)
        if (out[i][0] == '\0')
            return serve_error(e, 400, name, "%s must not be empty", what);
    return n;
}

/* "beam_size", "length_penalty" and "must_include", as quill generate's --beam-size,
 * --length-penalty and --must-include: the n best beams are the choices; words that must
 * appear imply a search (of generate_must_include_beams' beams, at most 16). A
 * search does not sample, so it has no logprobs or trace to show. */
static int read_beam(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    c->beam_size = 1;
    c->length_penalty = 1.0f;
    if (field_int(req, "beam_size", 1, SERVE_MAX_BEAMS, &c->beam_size, e) < 0 ||
        field_float(req, "length_penalty", 0, 10, &c->length_penalty, e) < 0)
        return -1;
    c->n_must_include = field_texts(req, "must_include", MAX_MUST_INCLUDE, c->must_include,
                                    "must_include words", e);
    if (c->n_must_include < 0)
        return -1;
    if (c->n_must_include > 0 && c->beam_size == 1) {
        int wanted = generate_must_include_beams(c->n_must_include);
        c->beam_size = wanted < SERVE_MAX_BEAMS ? wanted : SERVE_MAX_BEAMS;
    }
    if (c->beam_size == 1)
        return 0;
    if (c->n > c->beam_size)
        return serve_error(e, 400, "n", "n (%d) is at most beam_size (%d): the best beams",
                           c->n, c->beam_size);
    if (c->logprobs >= 0 || c->trace)
        return serve_error(e, 400, "beam_size", "beam search does not sample: no logprobs or "
                           "quill_trace with beam_size");
    return 0;
}

/* One text field, under quill's name or llama-server's former one (alias): *out stays
 * NULL when neither is there. */
static int read_text(const cJSON *req, const char *name, const char *alias, const char **out,
                     ApiError *e)
{
    int got = field_strings(req, name, 1, out, e);
    return got == 0 && alias ? field_strings(req, alias, 1, out, e) : got;
}

/* Classifier-free guidance: "guide" and "negative_prompt" (llama-server's former
 * "cfg_negative_prompt"), the texts before the prompt on the two sides, and
 * "guidance_scale" (its "cfg_scale"), as quill generate's --guide, --negative-prompt and
 * --guide-strength. A guided choice is one plain text that samples from the mixed logits:
 * not a chat, a beam search, logprobs or a trace. */
static int read_guidance(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    c->guidance_scale = quill_generate_params_default().guidance_scale;
    if (read_text(req, "guide", NULL, &c->guide, e) < 0 ||
        read_text(req, "negative_prompt", "cfg_negative_prompt", &c->negative_prompt, e) < 0)
        return -1;
    int got = field_float(req, "guidance_scale", 0, 100, &c->guidance_scale, e);
    if (got == 0)
        got = field_float(req, "cfg_scale", 0, 100, &c->guidance_scale, e);
    if (got < 0 || !request_guided(c))
        return got < 0 ? -1 : 0;
    const char *field = c->guide ? "guide" : "negative_prompt";
    if (c->chat)
        return serve_error(e, 400, field, "guidance is for /v1/completions: it puts its text "
                           "before a plain prompt");
    if (c->beam_size > 1 || c->logprobs >= 0 || c->trace)
        return serve_error(e, 400, field, "a guided choice is one sampled text: not with "
                           "beam_size, logprobs or quill_trace");
    return 0;
}

bool request_guided(const CompletionRequest *c)
{
    return c->guide || c->negative_prompt;
}

/* The fields every completion has: length, choices, stop, streaming, tracing. */
static int read_common(const cJSON *req, CompletionRequest *c, const Server *s, int default_max,
                       ApiError *e)
{
    c->max_tokens = default_max;
    c->n = 1;
    if (field_int(req, "max_tokens", 0, s->n_ctx, &c->max_tokens, e) < 0 ||
        field_int(req, "n", 1, MAX_CHOICES, &c->n, e) < 0 ||
        field_bool(req, "stream", &c->stream, e) < 0 ||
        field_bool(req, "echo", &c->echo, e) < 0 ||
        field_int(req, "quill_trace", 1, ENGINE_MAX_TRACE, &c->trace, e) < 0)
        return -1;
    const cJSON *options = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    if (options && !cJSON_IsNull(options) &&
        (!cJSON_IsObject(options) || field_bool(options, "include_usage", &c->include_usage, e) < 0))
        return serve_error(e, 400, "stream_options", "stream_options must be an object with "
                           "include_usage true or false");
    c->n_stop = field_texts(req, "stop", MAX_STOP, c->stop, "stop strings", e);
    if (c->n_stop < 0)
        return -1;
    if (c->trace && !c->stream)
        return serve_error(e, 400, "quill_trace", "quill_trace needs \"stream\": true");
    c->cache_prompt = true;
    if (field_bool(req, "ignore_eos", &c->ignore_eos, e) < 0 ||
        field_bool(req, "cache_prompt", &c->cache_prompt, e) < 0 || read_logprobs(req, c, e) < 0 ||
        read_beam(req, c, e) < 0 || read_sampling(req, c, s, e) < 0)
        return -1;
    if (c->n_must_include > 0 && (c->sampler.grammar || c->sampler.json_schema))
        return serve_error(e, 400, "must_include", "must_include and a grammar: one or the "
                           "other (the words' tokens may be ones the grammar refuses)");
    return 0;
}

static int read_prompts(const cJSON *req, CompletionRequest *c, ApiError *e)
{
    c->n_prompts = field_strings(req, "prompt", MAX_PROMPTS, c->prompts, e);
    if (c->n_prompts < 0)
        return -1;
    if (c->n_prompts == 0)
        return serve_error(e, 400, "prompt", "prompt is required (a string or an array of strings)");
    for (int i = 0; i < c->n_prompts; i++)
        if (c->prompts[i][0] == '\0')
            return serve_error(e, 400, "prompt", "prompt must not be empty");
    return 0;
}

/* "messages": [{"role": "system" | "user" | "assistant", "content": text}], in the model's
 * chat template, with the assistant's turn opened at the end. */
static int read_messages(const cJSON *req, CompletionRequest *c, const Server *s, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, "messages");
    int n = cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
    if (n < 1 || n > MAX_MESSAGES)
        return serve_error(e, 400, "messages", "messages must be an array of 1 to %d messages",
                         MAX_MESSAGES);
    quill_chat_message msgs[MAX_MESSAGES];
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, f) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "system") != 0 &&
                                      strcmp(role->valuestring, "user") != 0 &&
                                      strcmp(role->valuestring, "assistant") != 0))
            return serve_error(e, 400, "messages", "messages[%d].role must be \"system\", "
                             "\"user\" or \"assistant\"", i);
        if (!cJSON_IsString(content))
            return serve_error(e, 400, "messages", "messages[%d].content must be a string", i);
        msgs[i++] = (quill_chat_message){role->valuestring, content->valuestring};
    }
    if (!quill_model_chat_template(s->model))
        return serve_error(e, 400, "messages", "the model %s has no chat template: use "
                         "/v1/completions", s->model_id);
    int size = quill_chat_format(s->model, NULL, msgs, n, true, NULL, 0);
    if (size < 0)
        return serve_error(e, 400, "messages", "%s", quill_last_error());
    c->chat_prompt = malloc((size_t)size + 1);
    if (!c->chat_prompt)
        return serve_error(e, 500, NULL, "out of memory");
    quill_chat_format(s->model, NULL, msgs, n, true, c->chat_prompt, (size_t)size + 1);
    c->prompts[0] = c->chat_prompt;
    c->n_prompts = 1;
    return 0;
}

void request_free(CompletionRequest *c)
{
    for (int i = 0; i < c->n_prompts; i++)
        free(c->ids[i]);
    cJSON_Delete(c->json);
    free(c->chat_prompt);
    free(c->json_schema);
    free(c->bias);
    free(c);
}

CompletionRequest *request_read(const char *body, size_t len, bool chat, const Server *s,
                                   ApiError *e)
{
    CompletionRequest *c = calloc(1, sizeof *c);
    if (!c) {
        serve_error(e, 500, NULL, "out of memory");
        return NULL;
    }
    c->chat = chat;
    c->json = cJSON_ParseWithLength(body, len);
    int status = cJSON_IsObject(c->json) ? 0
                 : serve_error(e, 400, NULL, "the request body is not a JSON object");
    if (status == 0)
        status = read_common(c->json, c, s, chat ? -1 : DEFAULT_MAX_TOKENS, e);
    if (status == 0)
        status = chat ? read_messages(c->json, c, s, e) : read_prompts(c->json, c, e);
    if (status == 0 && chat && c->echo)
        status = serve_error(e, 400, "echo", "echo is for /v1/completions");
    if (status == 0)
        status = read_guidance(c->json, c, e);
    if (status != 0) {
        request_free(c);
        return NULL;
    }
    return c;
}

/* Each prompt's tokens; a prompt that does not fit the context leaves no room to generate:
 * a 400 with both numbers, before anything is queued. */
int request_tokenize(CompletionRequest *c, const Server *s, ApiError *e)
{
    for (int i = 0; i < c->n_prompts; i++) {
        Error err;
        int n = generate_tokenize(s->model, c->prompts[i], strlen(c->prompts[i]), true,
                                  c->chat, &c->ids[i], &err);
        c->n_ids[i] = n;
        /* with guidance, the longer side is what the context must hold */
        int longest = n >= 0 && request_guided(c)
                          ? generate_guided_length(s->model, c->guide, c->negative_prompt,
                                                   c->prompts[i], true, false, &err)
                          : n;
        if (longest < 0)
            return serve_error(e, 500, NULL, "%s", err.msg);
        if (longest >= s->n_ctx)
            return serve_error(e, 400, "prompt", "the prompt has %d tokens%s and the context "
                             "holds %d: it leaves no room to generate", longest,
                             longest > n ? " with its guidance text" : "", s->n_ctx);
        c->n_prompt_tokens += n;
    }
    return 0;
}
