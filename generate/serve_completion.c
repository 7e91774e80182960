/* quill serve's /v1/completions and /v1/chat/completions: the request's fields checked and
 * mapped onto quill_sampler_params and quill_generate_params, one generation per choice
 * (prompts x n) in a slot's context, answered at once or streamed as Server-Sent Events.
 *
 * A streamed choice is a series of chunks, each the text one token decided (quill_generate's
 * token event: whole UTF-8 characters, with what might start a stop string held back), then
 * one with its finish reason; after the last choice, `data: [DONE]`. With "quill_trace": K
 * each token's chunk also carries what every stage of the sampler chain left (the K most
 * likely survivors) and the token drawn: the playground's view of sampling. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "generate.h"
#include "serve.h"
#include "serve_beam.h"
#include "serve_engine.h"
#include "serve_fields.h"

enum {
    MAX_PROMPTS = 16,
    MAX_CHOICES = 16, /* n at most (llama-server has no limit; OpenAI's is 128) */
    MAX_STOP = 4,     /* stop strings, as OpenAI */
    MAX_TRACE = 8,    /* quill_trace: candidates per stage (quill_sampler_trace's limit) */
    MAX_STAGES = 16,
    MAX_CHAIN = 16,   /* stages in "samplers" */
    MAX_BAD_WORDS = 64,
    MAX_MESSAGES = 256,
    DEFAULT_MAX_TOKENS = 16, /* OpenAI's default for completions */
};

typedef struct {
    cJSON *json; /* the request; the strings below point into it */
    bool chat;
    const char *prompts[MAX_PROMPTS];
    int n_prompts;
    quill_token *ids[MAX_PROMPTS]; /* each prompt's tokens (malloc'd) */
    int n_ids[MAX_PROMPTS];
    int n_prompt_tokens;           /* their sum: the usage's prompt_tokens */
    char *chat_prompt; /* chat: the messages in the model's template (malloc'd) */
    int max_tokens;
    int n;
    bool stream;
    bool echo;
    bool seeded;
    int trace;
    bool include_usage; /* stream_options.include_usage: a last chunk with the usage */
    int logprobs;       /* top log-probabilities per token; -1: none */
    int beam_size;      /* > 1: beam search (serve_beam.c) */
    float length_penalty;
    bool ignore_eos;    /* llama-server's: go on past the end-of-text token */
    const char *stop[MAX_STOP];
    int n_stop;
    quill_sampler_params sampler;
    quill_logit_bias *bias;
    const char *bad_words[MAX_BAD_WORDS];
    char chain[256];
} Completion;

/* ---- the request -------------------------------------------------------------------- */

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
static int read_logit_bias(const cJSON *req, Completion *c, int n_vocab, ApiError *e)
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
static int read_seed(const cJSON *req, Completion *c, ApiError *e)
{
    double seed;
    int got = field_number(req, "seed", -1, 9007199254740992.0, true, &seed, e);
    if (got < 0)
        return -1;
    c->seeded = got == 1 && seed >= 0;
    if (c->seeded) {
        c->sampler.seed = (uint64_t)seed;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c->sampler.seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
    }
    return 0;
}

/* The sampling fields, under OpenAI's names and llama-server's for quill's extensions. */
static int read_sampling(const cJSON *req, Completion *c, const Server *s, ApiError *e)
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
        read_seed(req, c, e) < 0 || read_logit_bias(req, c, n_vocab, e) < 0)
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
static int read_logprobs(const cJSON *req, Completion *c, ApiError *e)
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

/* "beam_size" and "length_penalty", as quill generate's --beam-size and --length-penalty:
 * the n best beams are the choices. A search does not sample, so it has no logprobs or
 * trace to show. */
static int read_beam(const cJSON *req, Completion *c, ApiError *e)
{
    c->beam_size = 1;
    c->length_penalty = 1.0f;
    if (field_int(req, "beam_size", 1, SERVE_MAX_BEAMS, &c->beam_size, e) < 0 ||
        field_float(req, "length_penalty", 0, 10, &c->length_penalty, e) < 0)
        return -1;
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

/* The fields every completion has: length, choices, stop, streaming, tracing. */
static int read_common(const cJSON *req, Completion *c, const Server *s, int default_max,
                       ApiError *e)
{
    c->max_tokens = default_max;
    c->n = 1;
    if (field_int(req, "max_tokens", 0, s->n_ctx, &c->max_tokens, e) < 0 ||
        field_int(req, "n", 1, MAX_CHOICES, &c->n, e) < 0 ||
        field_bool(req, "stream", &c->stream, e) < 0 ||
        field_bool(req, "echo", &c->echo, e) < 0 ||
        field_int(req, "quill_trace", 1, MAX_TRACE, &c->trace, e) < 0)
        return -1;
    const cJSON *options = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    if (options && !cJSON_IsNull(options) &&
        (!cJSON_IsObject(options) || field_bool(options, "include_usage", &c->include_usage, e) < 0))
        return serve_error(e, 400, "stream_options", "stream_options must be an object with "
                           "include_usage true or false");
    c->n_stop = field_strings(req, "stop", MAX_STOP, c->stop, e);
    if (c->n_stop < 0)
        return -1;
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop[i][0] == '\0')
            return serve_error(e, 400, "stop", "stop strings must not be empty");
    if (c->trace && !c->stream)
        return serve_error(e, 400, "quill_trace", "quill_trace needs \"stream\": true");
    if (field_bool(req, "ignore_eos", &c->ignore_eos, e) < 0 || read_logprobs(req, c, e) < 0 ||
        read_beam(req, c, e) < 0)
        return -1;
    return read_sampling(req, c, s, e);
}

static int read_prompts(const cJSON *req, Completion *c, ApiError *e)
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
static int read_messages(const cJSON *req, Completion *c, const Server *s, ApiError *e)
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

static void completion_free(Completion *c)
{
    for (int i = 0; i < c->n_prompts; i++)
        free(c->ids[i]);
    cJSON_Delete(c->json);
    free(c->chat_prompt);
    free(c->bias);
    free(c);
}

static Completion *completion_read(const char *body, size_t len, bool chat, const Server *s,
                                   ApiError *e)
{
    Completion *c = calloc(1, sizeof *c);
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
    if (status != 0) {
        completion_free(c);
        return NULL;
    }
    return c;
}

/* Each prompt's tokens; a prompt that does not fit the context leaves no room to generate:
 * a 400 with both numbers, before anything is queued. */
static int completion_tokenize(Completion *c, const Server *s, ApiError *e)
{
    for (int i = 0; i < c->n_prompts; i++) {
        Error err;
        int n = generate_tokenize(s->model, c->prompts[i], strlen(c->prompts[i]), true,
                                  c->chat, &c->ids[i], &err);
        if (n < 0)
            return serve_error(e, 500, NULL, "%s", err.msg);
        if (n >= s->n_ctx)
            return serve_error(e, 400, "prompt", "the prompt has %d tokens and the context "
                             "holds %d: it leaves no room to generate", n, s->n_ctx);
        c->n_ids[i] = n;
        c->n_prompt_tokens += n;
    }
    return 0;
}

/* ---- jobs --------------------------------------------------------------------------- */

/* Choice i's job: prompt i / n, with the seed moved by i % n so that the n choices of one
 * prompt differ and a request's choices are the same whatever runs beside them. */
static EngineJob *job_new(const Server *s, const Completion *c, EngineFeed *feed, int i,
                          ApiError *e)
{
    EngineJob *job = calloc(1, sizeof *job);
    int prompt = i / c->n;
    if (job)
        job->prompt = malloc((size_t)c->n_ids[prompt] * sizeof *job->prompt);
    if (!job || !job->prompt) {
        engine_job_free(job);
        serve_error(e, 500, NULL, "out of memory");
        return NULL;
    }
    memcpy(job->prompt, c->ids[prompt], (size_t)c->n_ids[prompt] * sizeof *job->prompt);
    quill_sampler_params sp = c->sampler;
    sp.seed += (uint64_t)(i % c->n);
    job->sampler = quill_sampler_new(s->model, &sp);
    if (!job->sampler) {
        serve_error(e, 400, c->sampler.chain ? "samplers" : NULL, "%s", quill_last_error());
        engine_job_free(job);
        return NULL;
    }
    if (c->trace)
        quill_sampler_trace(job->sampler, c->trace);
    *job = (EngineJob){.feed = feed, .choice = i, .prompt = job->prompt,
                       .n_prompt = c->n_ids[prompt], .sampler = job->sampler,
                       .max_tokens = c->max_tokens < 0 ? s->n_ctx : c->max_tokens,
                       .ignore_eos = c->ignore_eos, .stops = (char *const *)c->stop,
                       .n_stops = c->n_stop, .top_logprobs = c->logprobs, .trace = c->trace};
    return job;
}

/* The request's choices, queued as one; a 503 (Retry-After) when the queue has no room. */
static int completion_submit(Server *s, const Completion *c, EngineFeed *feed, ApiError *e)
{
    int n = c->n_prompts * c->n;
    EngineJob *jobs[MAX_PROMPTS * MAX_CHOICES];
    int made = 0;
    while (made < n && (jobs[made] = job_new(s, c, feed, made, e)))
        made++;
    int submitted = made == n ? engine_submit(s->engine, jobs, n) : 0;
    if (made == n && submitted == 0)
        return 0;
    if (submitted == ENGINE_FULL)
        serve_error(e, 503, NULL, "the server is busy: %d choices wait for a slot already; "
                    "try again", serve_stats_read(s).queue_length);
    else if (submitted == ENGINE_STOPPING)
        serve_error(e, 503, NULL, "the server is stopping");
    else if (submitted == ENGINE_TOO_MANY)
        serve_error(e, 400, "n", "the request has %d choices (prompts x n) and the server "
                    "takes at most %d at once: its slots and its queue (--parallel, --queue)",
                    n, s->n_slots + s->queue_cap);
    for (int i = 0; i < made; i++)
        engine_job_free(jobs[i]);
    return -1;
}

/* A beam request's search, its choices pushed into the feed (serve_beam.c). */
static int completion_beam(Server *s, const Completion *c, EngineFeed *feed, ApiError *e)
{
    BeamRequest b = {.beam_size = c->beam_size, .length_penalty = c->length_penalty, .n = c->n,
                     .max_tokens = c->max_tokens < 0 ? s->n_ctx : c->max_tokens,
                     .ignore_eos = c->ignore_eos, .stops = (char *const *)c->stop,
                     .n_stops = c->n_stop, .sampler = &c->sampler};
    Error err;
    if (serve_beam(s, &b, c->ids, c->n_ids, c->n_prompts, feed, &err) == 0)
        return 0;
    feed->n_open = 0; /* the choices not pushed will not come */
    return serve_error(e, 500, NULL, "%s", err.msg);
}

/* The request's choices on their way: queued for the engine, or a beam search run. */
static int completion_start(Server *s, const Completion *c, EngineFeed *feed, ApiError *e)
{
    return c->beam_size > 1 ? completion_beam(s, c, feed, e) : completion_submit(s, c, feed, e);
}

/* ---- answers ------------------------------------------------------------------------ */

/* OpenAI's finish reasons: the model's end and a stop string are "stop", the length and
 * a full context "length"; a cancelled generation (the server stopping) says so. */
static const char *finish_name(quill_finish_reason r)
{
    switch (r) {
    case QUILL_FINISH_EOS:
    case QUILL_FINISH_STOP:
        return "stop";
    case QUILL_FINISH_LENGTH:
    case QUILL_FINISH_CONTEXT:
        return "length";
    default:
        return "cancelled";
    }
}

/* What every answer and chunk of one request shares. */
typedef struct {
    Server *server;
    const Completion *req;
    char id[64];
    long created;
} Answer;

static void answer_init(Answer *a, Server *s, const Completion *c)
{
    static unsigned long counter;
    unsigned long k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    a->server = s;
    a->req = c;
    a->created = (long)time(NULL);
    snprintf(a->id, sizeof a->id, "%s-%lx%lx", c->chat ? "chatcmpl" : "cmpl",
             (unsigned long)a->created, k);
}

/* The envelope every answer and chunk has: id, object, created, model, choices. */
static cJSON *envelope(const Answer *a, bool chunk, cJSON **choices)
{
    const char *object = !a->req->chat ? "text_completion"
                         : chunk       ? "chat.completion.chunk"
                                       : "chat.completion";
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", a->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)a->created);
    cJSON_AddStringToObject(root, "model", a->server->model_id);
    *choices = cJSON_AddArrayToObject(root, "choices");
    return root;
}

static cJSON *usage(int prompt_tokens, int completion_tokens)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    return u;
}

/* ---- log-probabilities -------------------------------------------------------------- */

/* A token's bytes as a JSON array of numbers (a chat's "bytes": a piece may be part of a
 * character, which a string cannot hold). */
static cJSON *piece_bytes(const quill_model *m, quill_token t)
{
    char piece[256];
    int n = quill_token_to_piece(m, t, piece, sizeof piece);
    cJSON *bytes = cJSON_CreateArray();
    for (int i = 0; i < n && i < (int)sizeof piece; i++)
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    return bytes;
}

static int piece_length(const quill_model *m, quill_token t)
{
    char piece[256];
    int n = quill_token_to_piece(m, t, piece, sizeof piece);
    return n < (int)sizeof piece ? n : (int)sizeof piece;
}

/* One token in a chat's logprobs.content: {"token", "logprob", "bytes", "top_logprobs"}. */
static cJSON *chat_logprob(const quill_model *m, quill_token t, float logprob,
                           const EngineTop *top, int n_top)
{
    cJSON *entry = cJSON_CreateObject();
    add_piece(entry, "token", m, t);
    cJSON_AddNumberToObject(entry, "logprob", logprob);
    cJSON_AddItemToObject(entry, "bytes", piece_bytes(m, t));
    if (top) {
        cJSON *alts = cJSON_AddArrayToObject(entry, "top_logprobs");
        for (int i = 0; i < n_top; i++)
            cJSON_AddItemToArray(alts, chat_logprob(m, top[i].token, top[i].logprob, NULL, 0));
    }
    return entry;
}

/* A completion's legacy logprobs object, filled token by token: {"tokens", "token_logprobs",
 * "top_logprobs" (one {piece: logprob} object per token), "text_offset"}. */
static cJSON *legacy_logprobs_new(void)
{
    cJSON *lp = cJSON_CreateObject();
    cJSON_AddArrayToObject(lp, "tokens");
    cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON_AddArrayToObject(lp, "text_offset");
    return lp;
}

/* A token's piece as a JSON string (add_piece's: a part of a character becomes U+FFFD). */
static cJSON *piece_string(const quill_model *m, quill_token t)
{
    cJSON *holder = cJSON_CreateObject();
    add_piece(holder, "piece", m, t);
    cJSON *piece = cJSON_DetachItemFromObject(holder, "piece");
    cJSON_Delete(holder);
    return piece;
}

static void legacy_logprobs_add(cJSON *lp, const quill_model *m, const EngineEvent *ev,
                                long offset)
{
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "tokens"), piece_string(m, ev->token));
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "token_logprobs"),
                         cJSON_CreateNumber(ev->logprob));
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < ev->n_top; i++) {
        cJSON *piece = piece_string(m, ev->top[i].token);
        const char *key = cJSON_GetStringValue(piece);
        if (key && !cJSON_GetObjectItemCaseSensitive(top, key)) /* two tokens may spell alike */
            cJSON_AddNumberToObject(top, key, ev->top[i].logprob);
        cJSON_Delete(piece);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "text_offset"), cJSON_CreateNumber(offset));
}

/* The logprobs a choice carries in its current answer or chunk, NULL when not asked. */
typedef struct {
    cJSON *legacy;  /* completions */
    cJSON *content; /* chat: the array of logprobs.content */
    long offset;    /* the next token's text_offset */
} ChoiceLogprobs;

static void logprobs_add(ChoiceLogprobs *lp, const Completion *c, const quill_model *m,
                         const EngineEvent *ev)
{
    if (c->logprobs < 0 || ev->token < 0)
        return;
    if (c->chat) {
        if (!lp->content)
            lp->content = cJSON_CreateArray();
        cJSON_AddItemToArray(lp->content, chat_logprob(m, ev->token, ev->logprob, ev->top,
                                                       ev->n_top));
    } else {
        if (!lp->legacy)
            lp->legacy = legacy_logprobs_new();
        legacy_logprobs_add(lp->legacy, m, ev, lp->offset);
    }
    lp->offset += piece_length(m, ev->token);
}

/* Moves the gathered logprobs into the choice as "logprobs" (null when none). */
static void logprobs_attach(cJSON *choice, ChoiceLogprobs *lp, const Completion *c)
{
    if (c->chat && lp->content) {
        cJSON *obj = cJSON_AddObjectToObject(choice, "logprobs");
        cJSON_AddItemToObject(obj, "content", lp->content);
    } else if (!c->chat && lp->legacy) {
        cJSON_AddItemToObject(choice, "logprobs", lp->legacy);
    } else {
        cJSON_AddNullToObject(choice, "logprobs");
    }
    lp->content = NULL;
    lp->legacy = NULL;
}

/* ---- whole answers ------------------------------------------------------------------ */

/* One choice of a whole answer, gathered from its events. */
typedef struct {
    char *text;
    size_t len, cap;
    ChoiceLogprobs logprobs;
    const char *finish;
} WholeChoice;

static int whole_append(WholeChoice *w, const char *text, size_t n)
{
    Error err;
    if (n == 0)
        return 0;
    if (buffer_reserve(&w->text, &w->cap, w->len + n + 1, 256, "text", &err) != 0)
        return -1;
    memcpy(w->text + w->len, text, n);
    w->len += n;
    return 0;
}

/* {"index", "text", "logprobs", "finish_reason"}, or a chat's {"index", "message": {"role",
 * "content"}, "logprobs", "finish_reason"}. */
static cJSON *whole_choice(const Completion *c, int index, WholeChoice *w)
{
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", index);
    const char *text = w->text ? w->text : "";
    if (c->chat) {
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        add_text(message, "content", text, w->len);
    } else {
        add_text(choice, "text", text, w->len);
    }
    logprobs_attach(choice, &w->logprobs, c);
    cJSON_AddStringToObject(choice, "finish_reason", w->finish ? w->finish : "cancelled");
    return choice;
}

/* Reads the feed to its end into each choice; -1 when memory ran out. */
static int whole_gather(Answer *a, EngineFeed *feed, WholeChoice *w, int *n_generated)
{
    const Completion *c = a->req;
    int status = 0;
    for (int i = 0; c->echo && i < c->n_prompts * c->n; i++)
        status |= whole_append(&w[i], c->prompts[i / c->n], strlen(c->prompts[i / c->n]));
    for (int i = 0; c->echo && i < c->n_prompts * c->n; i++)
        w[i].logprobs.offset = (long)strlen(c->prompts[i / c->n]);
    EngineEvent ev;
    while (feed_next(feed, &ev)) {
        WholeChoice *ch = &w[ev.choice];
        status |= whole_append(ch, ev.text, ev.n_text);
        logprobs_add(&ch->logprobs, c, a->server->model, &ev);
        if (ev.end) {
            ch->finish = finish_name(ev.finish);
            *n_generated += ev.n_generated;
        }
        engine_event_free(&ev);
    }
    return status != 0 || feed->out_of_memory ? -1 : 0;
}

static int answer_whole(Server *s, const Completion *c, EngineFeed *feed, ServeReply *r,
                        ApiError *e)
{
    Answer a;
    answer_init(&a, s, c);
    int n = c->n_prompts * c->n, n_generated = 0;
    WholeChoice *w = calloc((size_t)n, sizeof *w);
    int status = w ? whole_gather(&a, feed, w, &n_generated) : -1;
    cJSON *choices;
    cJSON *root = status == 0 ? envelope(&a, false, &choices) : NULL;
    for (int i = 0; i < n && root; i++)
        cJSON_AddItemToArray(choices, whole_choice(c, i, &w[i]));
    for (int i = 0; w && i < n; i++) {
        free(w[i].text);
        cJSON_Delete(w[i].logprobs.legacy);
        cJSON_Delete(w[i].logprobs.content);
    }
    free(w);
    if (!root)
        return serve_error(e, 500, NULL, "out of memory");
    cJSON_AddItemToObject(root, "usage", usage(c->n_prompt_tokens, n_generated));
    r->body = root;
    return 0;
}

/* ---- streams ------------------------------------------------------------------------ */

/* "quill_stages": what each stage of the chain left, and "quill_token": the token drawn
 * with its probability in the final list (null when it is not among the K shown). */
static void add_trace(cJSON *choice, const quill_model *m, const EngineEvent *ev)
{
    cJSON *out = cJSON_AddArrayToObject(choice, "quill_stages");
    cJSON *chosen = cJSON_AddObjectToObject(choice, "quill_token");
    cJSON_AddNumberToObject(chosen, "id", ev->token);
    double p_chosen = NAN;
    for (int i = 0; i < ev->n_stages; i++) {
        const EngineStage *st = &ev->stages[i];
        cJSON *stage = cJSON_CreateObject();
        cJSON_AddStringToObject(stage, "stage", st->name);
        cJSON_AddNumberToObject(stage, "n_survivors", st->n_survivors);
        cJSON *top = cJSON_AddArrayToObject(stage, "top");
        for (int j = 0; j < st->n_top; j++) {
            const quill_candidate *cand = &st->top[j];
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddNumberToObject(entry, "token", cand->token);
            add_piece(entry, "text", m, cand->token);
            cJSON_AddNumberToObject(entry, "logit", cand->logit);
            cJSON_AddNumberToObject(entry, "p", cand->p);
            cJSON_AddItemToArray(top, entry);
            if (i == ev->n_stages - 1 && cand->token == ev->token)
                p_chosen = cand->p;
        }
        cJSON_AddItemToArray(out, stage);
    }
    if (isnan(p_chosen))
        cJSON_AddNullToObject(chosen, "p");
    else
        cJSON_AddNumberToObject(chosen, "p", p_chosen);
}

typedef struct {
    Answer answer;
    Completion *req;
    EngineFeed feed;
    int fd;
    bool client_gone;
    ChoiceLogprobs *logprobs; /* per choice: the offsets of its text */
} Stream;

static bool write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        data += w;
        n -= (size_t)w;
    }
    return true;
}

/* Sends `data: {json}` and a blank line; a failed write means the client is gone: its
 * choices are cancelled and nothing more is written. */
static void send_event(Stream *st, cJSON *json)
{
    char *text = st->client_gone ? NULL : cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    bool ok = text && write_all(st->fd, "data: ", 6) && write_all(st->fd, text, strlen(text)) &&
              write_all(st->fd, "\n\n", 2);
    free(text);
    if (!ok && !st->client_gone) {
        st->client_gone = true;
        feed_cancel(&st->feed);
    }
}

/* A chunk's choice: {"index", "text", "logprobs"} for a completion, {"index", "delta"} for
 * a chat (the first chunk's delta is the role, the last one's empty), with finish_reason
 * null until the last. */
static cJSON *chunk_choice(const Stream *st, int index, const char *text, size_t n,
                           const char *finish)
{
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", index);
    if (st->req->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (text)
            add_text(delta, "content", text, n);
        else if (!finish)
            cJSON_AddStringToObject(delta, "role", "assistant");
    } else {
        add_text(choice, "text", text ? text : "", text ? n : 0);
    }
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    return choice;
}

static void send_chunk(Stream *st, cJSON *choice)
{
    cJSON *choices;
    cJSON *root = envelope(&st->answer, true, &choices);
    cJSON_AddItemToArray(choices, choice);
    send_event(st, root);
}

/* The chunks one event makes: the token's text (with its logprobs and trace), then, at the
 * end of its choice, the finish reason. A token whose text is held back still makes a
 * chunk when it carries a trace or logprobs, so that every token can be shown. */
static void stream_event(Stream *st, const EngineEvent *ev)
{
    const Completion *c = st->req;
    const quill_model *m = st->answer.server->model;
    bool traced = c->trace && ev->token >= 0;
    bool scored = c->logprobs >= 0 && ev->token >= 0;
    if (ev->n_text > 0 || traced || scored) {
        cJSON *choice = chunk_choice(st, ev->choice, ev->text ? ev->text : "", ev->n_text, NULL);
        ChoiceLogprobs *lp = &st->logprobs[ev->choice];
        logprobs_add(lp, c, m, ev);
        logprobs_attach(choice, lp, c);
        if (traced)
            add_trace(choice, m, ev);
        send_chunk(st, choice);
    }
    if (ev->end)
        send_chunk(st, chunk_choice(st, ev->choice, NULL, 0, finish_name(ev->finish)));
}

/* The start of each choice: a chat's role chunk, a completion's echoed prompt. */
static void stream_open_choices(Stream *st)
{
    const Completion *c = st->req;
    for (int i = 0; i < c->n_prompts * c->n; i++) {
        const char *prompt = c->prompts[i / c->n];
        if (c->chat)
            send_chunk(st, chunk_choice(st, i, NULL, 0, NULL));
        else if (c->echo)
            send_chunk(st, chunk_choice(st, i, prompt, strlen(prompt), NULL));
        if (c->echo)
            st->logprobs[i].offset = (long)strlen(prompt);
    }
}

static void stream_free(Stream *st)
{
    feed_close(&st->feed);
    completion_free(st->req);
    free(st->logprobs);
    free(st);
}

/* The streaming thread: every event's chunks as the engine makes them, the usage chunk when
 * asked, [DONE]; then the pipe is closed (the HTTP side ends the response). */
static void *stream_run(void *arg)
{
    Stream *st = arg;
    Server *s = st->answer.server;
    stream_open_choices(st);
    int n_generated = 0;
    EngineEvent ev;
    while (feed_next(&st->feed, &ev)) {
        stream_event(st, &ev);
        n_generated += ev.end ? ev.n_generated : 0;
        engine_event_free(&ev);
    }
    if (st->feed.out_of_memory) {
        ApiError e = {0};
        serve_error(&e, 500, NULL, "out of memory");
        send_event(st, serve_error_body(&e));
    }
    if (st->req->include_usage) { /* OpenAI's usage chunk: no choices */
        cJSON *choices;
        cJSON *root = envelope(&st->answer, true, &choices);
        cJSON_AddItemToObject(root, "usage", usage(st->req->n_prompt_tokens, n_generated));
        send_event(st, root);
    }
    if (!st->client_gone)
        write_all(st->fd, "data: [DONE]\n\n", 14);
    close(st->fd);
    stream_free(st);
    pthread_mutex_lock(&s->lock);
    s->n_streams--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static Stream *stream_new(Server *s, Completion *c)
{
    Stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->logprobs = calloc((size_t)(c->n_prompts * c->n), sizeof *st->logprobs);
    if (!st->logprobs) {
        free(st);
        return NULL;
    }
    answer_init(&st->answer, s, c);
    st->req = c;
    st->fd = -1;
    feed_init(&st->feed, c->n_prompts * c->n);
    return st;
}

/* Queues the request and starts its stream's thread; the pipe's read end is the reply. */
static int stream_start(Server *s, Completion *c, ServeReply *r, ApiError *e)
{
    int fds[2];
    Stream *st = stream_new(s, c);
    if (!st || pipe(fds) != 0) {
        free(st ? st->logprobs : NULL);
        free(st);
        completion_free(c);
        return serve_error(e, 500, NULL, "cannot start a stream: %s", strerror(errno));
    }
    st->fd = fds[1];
    if (completion_start(s, c, &st->feed, e) != 0) {
        close(fds[0]);
        close(fds[1]);
        st->feed.n_open = 0; /* nothing was queued: nothing to wait for */
        stream_free(st);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->n_streams++;
    pthread_mutex_unlock(&s->lock);
    pthread_t thread;
    if (pthread_create(&thread, NULL, stream_run, st) != 0) {
        close(fds[0]);
        stream_run(st); /* the choices are cancelled (the pipe is closed) and waited for */
        return serve_error(e, 500, NULL, "cannot start a stream thread");
    }
    pthread_detach(thread);
    r->stream_fd = fds[0];
    return 0;
}

static int serve_completion(Server *s, const char *body, size_t len, bool chat,
                            ServeReply *r, ApiError *e)
{
    Completion *c = completion_read(body, len, chat, s, e);
    if (!c)
        return -1;
    if (completion_tokenize(c, s, e) != 0) {
        completion_free(c);
        return -1;
    }
    if (c->stream)
        return stream_start(s, c, r, e); /* the stream owns c from here */
    EngineFeed feed;
    feed_init(&feed, c->n_prompts * c->n);
    int status = completion_start(s, c, &feed, e);
    if (status == 0)
        status = answer_whole(s, c, &feed, r, e);
    else
        feed.n_open = 0; /* nothing was queued */
    feed_close(&feed);
    completion_free(c);
    return status;
}

int serve_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    return serve_completion(s, body, len, false, r, e);
}

int serve_chat_completions(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    return serve_completion(s, body, len, true, r, e);
}
