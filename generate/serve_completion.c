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
    char *chat_prompt; /* chat: the messages in the model's template (malloc'd) */
    int max_tokens;
    int n;
    bool stream;
    bool echo;
    bool seeded;
    int trace;
    bool include_usage; /* stream_options.include_usage: a last chunk with the usage */
    const char *stop[MAX_STOP];
    int n_stop;
    quill_sampler_params sampler;
    quill_logit_bias *bias;
    const char *bad_words[MAX_BAD_WORDS];
    char chain[256];
} Completion;

/* One choice being generated. */
typedef struct {
    Server *server;
    const Completion *req;
    quill_context *ctx;
    quill_sampler *sampler;
    int fd;            /* the stream's pipe, or -1 */
    const char *id;
    long created;
    int index;
    char *text;        /* what the choice says so far (not streamed) */
    size_t len, cap;
    int n_generated;
    bool client_gone;
    bool out_of_memory;
} Choice;

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

/* A prompt that does not fit the context leaves no room to generate: a 400 with both
 * numbers, before a slot is taken. Returns the prompts' token count. */
static int prompt_tokens(const Completion *c, const Server *s, ApiError *e)
{
    int total = 0;
    for (int i = 0; i < c->n_prompts; i++) {
        quill_token *ids = NULL;
        int n = generate_tokenize(s->model, c->prompts[i], strlen(c->prompts[i]), true,
                                  c->chat, &ids, &e->err);
        free(ids);
        if (n < 0)
            return serve_error(e, 500, NULL, "%s", e->err.msg);
        if (n >= s->n_ctx)
            return serve_error(e, 400, "prompt", "the prompt has %d tokens and the context "
                             "holds %d: it leaves no room to generate", n, s->n_ctx);
        total += n;
    }
    return total;
}

/* ---- slots -------------------------------------------------------------------------- */

/* A free slot's index, waiting for one; -1 when the server is stopping. */
static int slot_take(Server *s)
{
    pthread_mutex_lock(&s->lock);
    int found = -1;
    while (!s->stopping) {
        for (int i = 0; i < s->n_slots && found < 0; i++)
            if (!s->slots[i].busy)
                found = i;
        if (found >= 0)
            break;
        pthread_cond_wait(&s->changed, &s->lock);
    }
    if (found >= 0)
        s->slots[found].busy = true;
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void slot_give(Server *s, int slot)
{
    pthread_mutex_lock(&s->lock);
    s->slots[slot].busy = false;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

/* ---- chunks ------------------------------------------------------------------------- */

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

/* The envelope every answer and chunk has: id, object, created, model, choices. */
static cJSON *envelope(const Choice *ch, const char *object, cJSON **choices)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", ch->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)ch->created);
    cJSON_AddStringToObject(root, "model", ch->server->model_id);
    *choices = cJSON_AddArrayToObject(root, "choices");
    return root;
}

/* A chunk's choice: {"index", "text", "logprobs": null} for a completion, {"index",
 * "delta"} for a chat (the first chunk's delta is the role, the last one's empty), with
 * finish_reason null until the last. */
static cJSON *chunk_choice(const Choice *ch, const char *text, size_t n, const char *finish)
{
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", ch->index);
    if (ch->req->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (text)
            add_text(delta, "content", text, n);
        else if (!finish)
            cJSON_AddStringToObject(delta, "role", "assistant");
    } else {
        add_text(choice, "text", text ? text : "", text ? n : 0);
        cJSON_AddNullToObject(choice, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    return choice;
}

/* A whole answer's choice: {"index", "text", "logprobs": null, "finish_reason"}, or for a
 * chat {"index", "message": {"role", "content"}, "finish_reason"}. */
static cJSON *whole_choice(const Choice *ch, const char *finish)
{
    const char *text = ch->text ? ch->text : "";
    if (!ch->req->chat)
        return chunk_choice(ch, text, ch->len, finish);
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", ch->index);
    cJSON *message = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(message, "role", "assistant");
    add_text(message, "content", text, ch->len);
    cJSON_AddStringToObject(choice, "finish_reason", finish);
    return choice;
}

/* "quill_stages": what each stage of the chain left, and "quill_token": the token drawn
 * with its probability in the final list (null when it is not among the K shown). */
static void add_trace(cJSON *choice, const Choice *ch, quill_token token)
{
    const quill_model *m = ch->server->model;
    quill_stage_candidates stages[MAX_STAGES];
    int n = quill_sampler_stages(ch->sampler, stages, MAX_STAGES);
    n = n < MAX_STAGES ? n : MAX_STAGES;
    cJSON *out = cJSON_AddArrayToObject(choice, "quill_stages");
    cJSON *chosen = cJSON_AddObjectToObject(choice, "quill_token");
    cJSON_AddNumberToObject(chosen, "id", token);
    double p_chosen = NAN;
    for (int i = 0; i < n; i++) {
        cJSON *stage = cJSON_CreateObject();
        cJSON_AddStringToObject(stage, "stage", stages[i].stage);
        cJSON_AddNumberToObject(stage, "n_survivors", stages[i].n_survivors);
        cJSON *top = cJSON_AddArrayToObject(stage, "top");
        for (int j = 0; j < stages[i].n_top; j++) {
            const quill_candidate *cand = &stages[i].top[j];
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddNumberToObject(entry, "token", cand->token);
            add_piece(entry, "text", m, cand->token);
            cJSON_AddNumberToObject(entry, "logit", cand->logit);
            cJSON_AddNumberToObject(entry, "p", cand->p);
            cJSON_AddItemToArray(top, entry);
            if (i == n - 1 && cand->token == token)
                p_chosen = cand->p;
        }
        cJSON_AddItemToArray(out, stage);
    }
    if (isnan(p_chosen))
        cJSON_AddNullToObject(chosen, "p");
    else
        cJSON_AddNumberToObject(chosen, "p", p_chosen);
}

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

/* Sends `data: {json}` and a blank line; false when the client is gone. */
static bool send_event(Choice *ch, cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    bool ok = text && write_all(ch->fd, "data: ", 6) && write_all(ch->fd, text, strlen(text)) &&
              write_all(ch->fd, "\n\n", 2);
    free(text);
    if (!ok)
        ch->client_gone = true;
    return ok;
}

static bool send_chunk(Choice *ch, const char *text, size_t n, const char *finish,
                       quill_token traced)
{
    cJSON *choices;
    cJSON *root = envelope(ch, ch->req->chat ? "chat.completion.chunk" : "text_completion",
                           &choices);
    cJSON *choice = chunk_choice(ch, text, n, finish);
    if (ch->req->trace && traced >= 0)
        add_trace(choice, ch, traced);
    cJSON_AddItemToArray(choices, choice);
    return send_event(ch, root);
}

/* ---- generating --------------------------------------------------------------------- */

static void choice_append(Choice *ch, const char *text, size_t n)
{
    Error err;
    if (n == 0 || ch->out_of_memory)
        return;
    if (buffer_reserve(&ch->text, &ch->cap, ch->len + n + 1, 256, "text", &err) != 0) {
        ch->out_of_memory = true;
        return;
    }
    memcpy(ch->text + ch->len, text, n);
    ch->len += n;
}

static bool on_token(const quill_token_event *ev, void *user)
{
    Choice *ch = user;
    if (ev->token >= 0)
        ch->n_generated++;
    if (ch->fd < 0) {
        choice_append(ch, ev->text, ev->n_text);
        return !ch->out_of_memory;
    }
    bool traced = ch->req->trace && ev->token >= 0;
    if (ev->n_text == 0 && !traced)
        return true;
    return send_chunk(ch, ev->text, ev->n_text, NULL, traced ? ev->token : -1);
}

/* Generates choice `index` of prompt `prompt` in the slot's context, from an empty cache. */
static int choice_generate(Choice *ch, int prompt, quill_finish_reason *finish, ApiError *e)
{
    const Completion *c = ch->req;
    quill_sampler_params sp = c->sampler;
    sp.seed += (uint64_t)(ch->index % c->n); /* n choices of one prompt differ */
    ch->sampler = quill_sampler_new(ch->server->model, &sp);
    if (!ch->sampler)
        return serve_error(e, 400, c->sampler.chain ? "samplers" : NULL, "%s", quill_last_error());
    if (c->trace)
        quill_sampler_trace(ch->sampler, c->trace);
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = c->max_tokens;
    gp.stop = c->stop;
    gp.n_stop = c->n_stop;
    gp.parse_special = c->chat;
    gp.cancel = &ch->server->stopping;
    gp.on_token = on_token;
    gp.user = ch;
    const char *text = c->prompts[prompt];
    if (c->echo && ch->fd < 0)
        choice_append(ch, text, strlen(text));
    else if (c->echo)
        send_chunk(ch, text, strlen(text), NULL, -1);
    int status = quill_seq_clear(ch->ctx, 0) == QUILL_OK
                     ? quill_generate(ch->ctx, ch->sampler, text, &gp, finish)
                     : QUILL_ERROR;
    quill_sampler_free(ch->sampler);
    ch->sampler = NULL;
    if (ch->out_of_memory)
        return serve_error(e, 500, NULL, "out of memory");
    if (status != QUILL_OK && !ch->client_gone)
        return serve_error(e, 500, NULL, "%s", quill_last_error());
    return 0;
}

static void make_id(const Completion *c, char *id, size_t cap)
{
    static unsigned long counter;
    unsigned long k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(id, cap, "%s-%lx%lx", c->chat ? "chatcmpl" : "cmpl", (unsigned long)time(NULL), k);
}

static cJSON *usage(int prompt_tokens, int completion_tokens)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    return u;
}

/* The whole answer: every choice generated in turn, then one JSON body. */
static int answer_whole(Server *s, const Completion *c, int slot, int n_prompt, ServeReply *r,
                        ApiError *e)
{
    char id[64];
    make_id(c, id, sizeof id);
    Choice ch = {.server = s, .req = c, .ctx = s->slots[slot].ctx, .fd = -1, .id = id,
                 .created = (long)time(NULL)};
    cJSON *choices;
    cJSON *root = envelope(&ch, c->chat ? "chat.completion" : "text_completion", &choices);
    int n_generated = 0, status = 0;
    for (int i = 0; i < c->n_prompts * c->n && status == 0; i++) {
        quill_finish_reason finish;
        ch.index = i;
        ch.len = 0;
        status = choice_generate(&ch, i / c->n, &finish, e);
        if (status != 0)
            break;
        n_generated += ch.n_generated;
        ch.n_generated = 0;
        cJSON *choice = whole_choice(&ch, finish_name(finish));
        cJSON_AddItemToArray(choices, choice);
    }
    free(ch.text);
    if (status != 0) {
        cJSON_Delete(root);
        return -1;
    }
    cJSON_AddItemToObject(root, "usage", usage(n_prompt, n_generated));
    r->body = root;
    return 0;
}

typedef struct {
    Server *server;
    Completion *req;
    int slot;
    int fd;
    int n_prompt; /* the prompts' tokens, for the usage */
} Stream;

/* The streaming thread: every choice's chunks, then [DONE]; then the pipe is closed (the
 * HTTP side ends the response) and the slot given back. */
static void *stream_run(void *arg)
{
    Stream *st = arg;
    Server *s = st->server;
    const Completion *c = st->req;
    char id[64];
    make_id(c, id, sizeof id);
    Choice ch = {.server = s, .req = c, .ctx = s->slots[st->slot].ctx, .fd = st->fd, .id = id,
                 .created = (long)time(NULL)};
    for (int i = 0; i < c->n_prompts * c->n && !ch.client_gone; i++) {
        quill_finish_reason finish;
        ApiError e = {0};
        ch.index = i;
        if (c->chat)
            send_chunk(&ch, NULL, 0, NULL, -1); /* OpenAI's first chunk: the role */
        if (choice_generate(&ch, i / c->n, &finish, &e) != 0) {
            send_event(&ch, serve_error_body(&e));
            break;
        }
        send_chunk(&ch, NULL, 0, finish_name(finish), -1);
    }
    if (c->include_usage && !ch.client_gone) { /* OpenAI's usage chunk: no choices */
        cJSON *choices;
        cJSON *root = envelope(&ch, c->chat ? "chat.completion.chunk" : "text_completion",
                               &choices);
        cJSON_AddItemToObject(root, "usage", usage(st->n_prompt, ch.n_generated));
        send_event(&ch, root);
    }
    if (!ch.client_gone)
        write_all(st->fd, "data: [DONE]\n\n", 14);
    close(st->fd);
    slot_give(s, st->slot);
    completion_free(st->req);
    free(st);
    pthread_mutex_lock(&s->lock);
    s->n_streams--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int stream_start(Server *s, Completion *c, int slot, int n_prompt, ServeReply *r,
                        ApiError *e)
{
    int fds[2];
    Stream *st = malloc(sizeof *st);
    if (!st || pipe(fds) != 0) {
        free(st);
        return serve_error(e, 500, NULL, "cannot start a stream: %s", strerror(errno));
    }
    *st = (Stream){s, c, slot, fds[1], n_prompt};
    pthread_mutex_lock(&s->lock);
    s->n_streams++;
    pthread_mutex_unlock(&s->lock);
    pthread_t thread;
    if (pthread_create(&thread, NULL, stream_run, st) != 0) {
        close(fds[0]);
        close(fds[1]);
        free(st);
        pthread_mutex_lock(&s->lock);
        s->n_streams--;
        pthread_mutex_unlock(&s->lock);
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
    int n_prompt = prompt_tokens(c, s, e);
    int slot = n_prompt >= 0 ? slot_take(s) : -1;
    if (n_prompt >= 0 && slot < 0)
        serve_error(e, 503, NULL, "the server is stopping");
    if (slot < 0) {
        completion_free(c);
        return -1;
    }
    if (c->stream) {
        if (stream_start(s, c, slot, n_prompt, r, e) == 0)
            return 0; /* the stream's thread owns c and the slot now */
        slot_give(s, slot);
        completion_free(c);
        return -1;
    }
    int status = answer_whole(s, c, slot, n_prompt, r, e);
    slot_give(s, slot);
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
