/* quill serve's small endpoints, in llama-server's shapes (/health, /tokenize,
 * /detokenize) and OpenAI's (/v1/models); the completions are serve_completion.c's. */
#include <math.h>
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
    int n = status == 0 ? generate_tokenize(s->model, content->valuestring,
                                            strlen(content->valuestring), add_special,
                                            parse_special, &ids, &e->err)
                        : -1;
    if (status == 0 && n < 0)
        status = serve_error(e, 500, NULL, "%s", e->err.msg);
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

/* The ids of the array `name`, each a token of the vocabulary, into *out (malloc'd). */
static int field_tokens(const cJSON *req, const char *name, int n_vocab, quill_token **out,
                        ApiError *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!cJSON_IsArray(f))
        return serve_error(e, 400, name, "%s must be an array of token ids", name);
    int n = cJSON_GetArraySize(f), i = 0;
    *out = malloc(sizeof **out * (size_t)(n ? n : 1));
    if (!*out)
        return serve_error(e, 500, NULL, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, f) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= n_vocab)
            return serve_error(e, 400, name, "%s[%d] is not a token id in [0, %d)", name, i,
                             n_vocab);
        (*out)[i++] = (quill_token)v;
    }
    return n;
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

ServeStats serve_stats_read(Server *s)
{
    pthread_mutex_lock(&s->lock);
    ServeStats copy = s->stats;
    pthread_mutex_unlock(&s->lock);
    return copy;
}
