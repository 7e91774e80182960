/* quill serve's small endpoints, in llama-server's shapes (/health, /tokenize,
 * /detokenize), OpenAI's (/v1/models, /v1/embeddings) and Prometheus' (/metrics); the
 * completions are serve_completion.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "serve_fields.h"

int serve_health(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    r->body = cJSON_CreateObject();
    cJSON_AddStringToObject(r->body, "status", "ok");
    return 0;
}

int serve_models(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    r->body = cJSON_CreateObject();
    cJSON_AddStringToObject(r->body, "object", "list");
    cJSON *model = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "id", s->model_id);
    cJSON_AddStringToObject(model, "object", "model");
    cJSON_AddNumberToObject(model, "created", (double)time(NULL));
    cJSON_AddStringToObject(model, "owned_by", "quill");
    cJSON *meta = cJSON_AddObjectToObject(model, "meta");
    cJSON_AddNumberToObject(meta, "n_vocab", quill_model_vocab_size(s->model));
    cJSON_AddNumberToObject(meta, "n_ctx_train", quill_model_context_length(s->model));
    cJSON_AddNumberToObject(meta, "n_embd", quill_model_embedding_size(s->model));
    cJSON_AddNumberToObject(meta, "n_params", (double)quill_model_parameter_count(s->model));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(r->body, "data"), model);
    return 0;
}

/* llama-server's POST /tokenize: {"content": text, "add_special": false, "with_pieces":
 * false} -> {"tokens": [ids]} or, with pieces, {"tokens": [{"id", "piece"}]}. */
int serve_tokenize(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    cJSON *req = parse_object(body, len, e);
    if (!req)
        return -1;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(req, "content");
    bool add_special = false, with_pieces = false, parse_special = true;
    int status = cJSON_IsString(content) ? 0
                 : serve_error(e, 400, "content", "content must be a string");
    if (status == 0 && (field_bool(req, "add_special", &add_special, e) < 0 ||
                        field_bool(req, "parse_special", &parse_special, e) < 0 ||
                        field_bool(req, "with_pieces", &with_pieces, e) < 0))
        status = -1;
    quill_token *ids = NULL;
    Error err;
    int n = status == 0 ? generate_tokenize(s->model, content->valuestring,
                                            strlen(content->valuestring), add_special,
                                            parse_special, &ids, &err)
                        : -1;
    if (status == 0 && n < 0)
        status = serve_error(e, 500, NULL, "%s", err.msg);
    if (status == 0) {
        r->body = cJSON_CreateObject();
        cJSON *tokens = cJSON_AddArrayToObject(r->body, "tokens");
        for (int i = 0; i < n; i++) {
            if (!with_pieces) {
                cJSON_AddItemToArray(tokens, cJSON_CreateNumber(ids[i]));
                continue;
            }
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "id", ids[i]);
            add_piece(t, "piece", s->model, ids[i]);
            cJSON_AddItemToArray(tokens, t);
        }
    }
    free(ids);
    cJSON_Delete(req);
    return status;
}

/* The ids of the JSON array `array` (called `label` in messages), each a token of the
 * vocabulary, into *out (malloc'd): their count, or -1 with a 400 about the field param. */
static int token_ids(const cJSON *array, const char *param, const char *label, int n_vocab,
                     quill_token **out, ApiError *e)
{
    int n = cJSON_GetArraySize(array), i = 0;
    *out = malloc(sizeof **out * (size_t)(n ? n : 1));
    if (!*out)
        return serve_error(e, 500, NULL, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, array) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= n_vocab)
            return serve_error(e, 400, param, "%s[%d] is not a token id in [0, %d)", label, i,
                               n_vocab);
        (*out)[i++] = (quill_token)v;
    }
    return n;
}

/* The ids of the array `name`, each a token of the vocabulary, into *out (malloc'd). */
static int field_tokens(const cJSON *req, const char *name, int n_vocab, quill_token **out,
                        ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!cJSON_IsArray(f))
        return serve_error(e, 400, name, "%s must be an array of token ids", name);
    return token_ids(f, name, name, n_vocab, out, e);
}

/* llama-server's POST /detokenize: {"tokens": [ids]} -> {"content": text}. */
int serve_detokenize(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    cJSON *req = parse_object(body, len, e);
    if (!req)
        return -1;
    quill_token *ids = NULL;
    int n = field_tokens(req, "tokens", quill_model_vocab_size(s->model), &ids, e);
    char *text = NULL;
    int n_text = n >= 0 ? quill_detokenize(s->model, ids, n, NULL, 0) : -1;
    if (n_text >= 0 && (text = malloc((size_t)n_text + 1)) != NULL)
        quill_detokenize(s->model, ids, n, text, (size_t)n_text + 1);
    if (text) {
        r->body = cJSON_CreateObject();
        add_text(r->body, "content", text, (size_t)n_text);
    } else if (n >= 0) {
        serve_error(e, 500, NULL, "%s", n_text < 0 ? quill_last_error() : "out of memory");
    }
    free(text);
    free(ids);
    cJSON_Delete(req);
    return r->body ? 0 : -1;
}

/* ---- POST /v1/embeddings ----------------------------------------------------------- */

/* Inputs one request may embed: they run one after another on the one embedding context,
 * which every other embedding request waits for meanwhile. */
enum { MAX_EMBED_INPUTS = 64 };

/* One input of /v1/embeddings, as tokens. */
typedef struct {
    quill_token *ids; /* malloc'd */
    int n;
} EmbedInput;

int serve_embeddings_open(Server *s, int n_ctx, int n_threads, Error *err)
{
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = n_ctx;
    cp.n_seq = 1;
    cp.n_threads = n_threads;
    s->embed_ctx = serve_context_new(s, &cp);
    if (!s->embed_ctx)
        return error_set(err, "%s", quill_last_error());
    pthread_mutex_init(&s->embed_lock, NULL);
    return 0;
}

/* One input, `item` (called `label` in messages), as tokens: a text is tokenized as
 * llama-server does for embeddings (bos added, special tokens' text read as them); an array
 * holds token ids. It must hold at least one token and fit in the context. */
static int embed_input_read(Server *s, const cJSON *item, const char *label, EmbedInput *in,
                            ApiError *e)
{
    const char *text = cJSON_GetStringValue(item);
    Error err;
    int n;
    if (text)
        n = *text ? generate_tokenize(s->model, text, strlen(text), true, true, &in->ids, &err)
                  : 0;
    else if (cJSON_IsArray(item))
        n = token_ids(item, "input", label, quill_model_vocab_size(s->model), &in->ids, e);
    else
        return serve_error(e, 400, "input", "%s must be a string or an array of token ids",
                           label);
    if (n < 0 && text)
        return serve_error(e, 500, NULL, "%s", err.msg);
    if (n < 0)
        return -1;
    if (n == 0)
        return serve_error(e, 400, "input", "%s is empty", label);
    int n_ctx = quill_context_n_ctx(s->embed_ctx);
    if (n > n_ctx)
        return serve_error(e, 400, "input", "%s has %d tokens and the context holds %d "
                           "(--context)", label, n, n_ctx);
    in->n = n;
    return 0;
}

/* The request's inputs into ins[]: "input" is a text, an array of token ids, or an array of
 * texts and token-id arrays (one embedding each), as in OpenAI's API. Their count, or -1. */
static int embed_inputs_read(Server *s, const cJSON *req, EmbedInput *ins, ApiError *e)
{
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(req, "input");
    if (!input || cJSON_IsNull(input))
        return serve_error(e, 400, "input", "input is required");
    if (!cJSON_IsString(input) && !cJSON_IsArray(input))
        return serve_error(e, 400, "input", "input must be a string or an array of strings "
                           "or of token ids");
    if (cJSON_IsString(input) || cJSON_IsNumber(cJSON_GetArrayItem(input, 0)))
        return embed_input_read(s, input, "input", &ins[0], e) == 0 ? 1 : -1;
    int n = cJSON_GetArraySize(input), i = 0;
    if (n == 0)
        return serve_error(e, 400, "input", "input is empty");
    if (n > MAX_EMBED_INPUTS)
        return serve_error(e, 400, "input", "input has %d inputs, more than %d", n,
                           MAX_EMBED_INPUTS);
    const cJSON *item;
    cJSON_ArrayForEach(item, input) {
        char label[32];
        snprintf(label, sizeof label, "input[%d]", i);
        if (embed_input_read(s, item, label, &ins[i++], e) != 0)
            return -1;
    }
    return n;
}

/* "encoding_format": "float" (the default: arrays of numbers) or "base64" (what OpenAI's
 * own clients ask for: each vector's float32 bytes, shorter to send). */
static int field_encoding(const cJSON *req, bool *base64, ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, "encoding_format");
    const char *format = cJSON_GetStringValue(f);
    *base64 = format && strcmp(format, "base64") == 0;
    if (!f || cJSON_IsNull(f) || *base64 || (format && strcmp(format, "float") == 0))
        return 0;
    return serve_error(e, 400, "encoding_format",
                       "encoding_format must be \"float\" or \"base64\"");
}

/* Each input's embedding into out (n rows of the model's width), in turn on the server's
 * embedding context: the mean of its tokens' final hidden states, scaled to length 1, as
 * llama-server answers with --pooling mean. */
static int embed_all(Server *s, const EmbedInput *ins, int n, float *out, ApiError *e)
{
    int C = quill_model_embedding_size(s->model), status = 0;
    pthread_mutex_lock(&s->embed_lock);
    if (serve_lora_apply(s, s->embed_ctx) != QUILL_OK) /* the scales may have changed */
        status = serve_error(e, 500, NULL, "%s", quill_last_error());
    for (int i = 0; i < n && status == 0; i++)
        if (quill_embed(s->embed_ctx, 0, ins[i].ids, ins[i].n, QUILL_POOL_MEAN, true,
                        out + (size_t)i * C) != QUILL_OK)
            status = serve_error(e, 500, NULL, "%s", quill_last_error());
    pthread_mutex_unlock(&s->embed_lock);
    return status;
}

/* OpenAI's answer: {"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
 * "model", "usage": {"prompt_tokens", "total_tokens"}}. */
static cJSON *embeddings_answer(const Server *s, const float *vectors, int n, bool base64,
                                int n_tokens)
{
    int C = quill_model_embedding_size(s->model);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    for (int i = 0; i < n; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "object", "embedding");
        cJSON_AddNumberToObject(item, "index", i);
        const float *v = vectors + (size_t)i * C;
        if (base64)
            add_base64_floats(item, "embedding", v, C);
        else
            cJSON_AddItemToObject(item, "embedding", cJSON_CreateFloatArray(v, C));
        cJSON_AddItemToArray(data, item);
    }
    cJSON_AddStringToObject(root, "model", s->model_id);
    cJSON *usage = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", n_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", n_tokens);
    return root;
}

/* OpenAI's POST /v1/embeddings: {"input", "model", "encoding_format"} -> one vector per
 * input (the model field is accepted and the answer names the model served). */
int serve_embeddings(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    cJSON *req = parse_object(body, len, e);
    if (!req)
        return -1;
    EmbedInput ins[MAX_EMBED_INPUTS] = {0};
    bool base64 = false;
    int n = field_encoding(req, &base64, e) == 0 ? embed_inputs_read(s, req, ins, e) : -1;
    size_t width = (size_t)quill_model_embedding_size(s->model);
    float *vectors = n > 0 ? malloc(sizeof *vectors * width * (size_t)n) : NULL;
    if (n > 0 && !vectors)
        serve_error(e, 500, NULL, "out of memory");
    if (vectors && embed_all(s, ins, n, vectors, e) == 0) {
        int n_tokens = 0;
        for (int i = 0; i < n; i++)
            n_tokens += ins[i].n;
        r->body = embeddings_answer(s, vectors, n, base64, n_tokens);
    }
    free(vectors);
    for (int i = 0; i < MAX_EMBED_INPUTS; i++)
        free(ins[i].ids);
    cJSON_Delete(req);
    return r->body ? 0 : -1;
}

/* ---- GET /metrics ------------------------------------------------------------------ */

/* The server's counters in Prometheus' text format (version 0.0.4), as a Prometheus server
 * scrapes them: for each metric a "# HELP name text" line, a "# TYPE name counter|gauge"
 * line and its sample, "name value". Counters only grow; gauges are the present value. */
int serve_metrics(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    ServeStats st = serve_stats_read(s);
    const struct {
        const char *name, *type, *help;
        double value;
    } metrics[] = {
        {"quill_requests_total", "counter", "Completion and chat completion requests accepted.",
         (double)st.requests},
        {"quill_requests_rejected_total", "counter",
         "Requests answered 503 (the queue full, or the server stopping).",
         (double)st.requests_rejected},
        {"quill_prompt_tokens_total", "counter", "Prompt tokens taken in.",
         (double)st.prompt_tokens},
        {"quill_prompt_tokens_cached_total", "counter",
         "Of the prompt tokens, those a slot held already (a prompt that starts as the slot's "
         "last text did).", (double)st.prompt_tokens_cached},
        {"quill_tokens_generated_total", "counter", "Tokens generated, over every choice.",
         (double)st.generated_tokens},
        {"quill_tokens_per_second", "gauge", "Generated tokens per second over the last few steps.",
         st.tokens_per_second},
        {"quill_slots_active", "gauge", "Sequences generating now.", st.slots_active},
        {"quill_slots_total", "gauge", "Sequences that can generate at once (--parallel).",
         st.slots_total},
        {"quill_queue_length", "gauge", "Choices waiting for a sequence.", st.queue_length},
    };
    FILE *text = open_memstream(&r->raw, &r->n_raw);
    if (!text)
        return serve_error(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < sizeof metrics / sizeof *metrics; i++)
        fprintf(text, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", metrics[i].name,
                metrics[i].help, metrics[i].name, metrics[i].type, metrics[i].name,
                metrics[i].value);
    if (fclose(text) != 0)
        return serve_error(e, 500, NULL, "out of memory");
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

ServeStats serve_stats_read(Server *s)
{
    pthread_mutex_lock(&s->lock);
    ServeStats copy = s->stats;
    pthread_mutex_unlock(&s->lock);
    return copy;
}
