/* quill serve's LoRA adapters (--lora): every context the server makes applies them, and
 * llama-server's /lora-adapters lists them and sets their scales while the server runs.
 *
 * The scales live in Server.loras, guarded by Server.lock. A new scale reaches each context
 * where it is safe: the engine's between passes, once its running jobs are done
 * (engine_lora_changed); /v1/embeddings' before its next request; a beam search's or
 * guided request's when its context is made. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "serve_engine.h"
#include "serve_fields.h"

int serve_lora_apply(Server *s, quill_context *c)
{
    pthread_mutex_lock(&s->lock);
    int status = adapter_list_apply(&s->loras, c);
    pthread_mutex_unlock(&s->lock);
    return status;
}

quill_context *serve_context_new(Server *s, const quill_context_params *cp)
{
    quill_context *c = quill_context_new(s->model, cp);
    if (c && serve_lora_apply(s, c) != QUILL_OK) {
        quill_context_free(c);
        return NULL;
    }
    return c;
}

int serve_lora_list(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    r->body = cJSON_CreateArray();
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->loras.n; i++) {
        cJSON *adapter = cJSON_CreateObject();
        cJSON_AddNumberToObject(adapter, "id", i);
        cJSON_AddStringToObject(adapter, "path", s->loras.paths[i]);
        cJSON_AddNumberToObject(adapter, "scale", s->loras.scales[i]);
        cJSON_AddItemToArray(r->body, adapter);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The request's scales into scales[0..n): 0 for each adapter it does not name (as
 * llama-server); an entry that is not {"id": 0..n-1, "scale": a number} is a 400. */
static int scales_read(const cJSON *req, int n, float *scales, ApiError *e)
{
    if (!cJSON_IsArray(req))
        return serve_error(e, 400, NULL, "the request body is not a JSON array of "
                                         "{\"id\", \"scale\"}");
    for (int i = 0; i < n; i++)
        scales[i] = 0.0f;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, req) {
        int id = -1;
        float scale = 0.0f;
        if (!cJSON_IsObject(entry))
            return serve_error(e, 400, NULL, "each entry must be {\"id\", \"scale\"}");
        int found = field_int(entry, "id", 0, n - 1, &id, e);
        if (found < 0 || field_float(entry, "scale", -FLT_MAX, FLT_MAX, &scale, e) < 0)
            return -1;
        if (found == 0)
            return serve_error(e, 400, "id", "each entry needs the adapter's id");
        scales[id] = scale;
    }
    return 0;
}

int serve_lora_set(Server *s, const char *body, size_t len, ServeReply *r, ApiError *e)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    float *scales = malloc((size_t)(s->loras.n > 0 ? s->loras.n : 1) * sizeof *scales);
    int status = !scales ? serve_error(e, 500, NULL, "out of memory")
                         : scales_read(req, s->loras.n, scales, e);
    if (status == 0) {
        pthread_mutex_lock(&s->lock);
        memcpy(s->loras.scales, scales, (size_t)s->loras.n * sizeof *scales);
        engine_lora_changed(s->engine);
        pthread_mutex_unlock(&s->lock);
        r->body = cJSON_CreateObject();
        cJSON_AddBoolToObject(r->body, "success", true);
    }
    free(scales);
    cJSON_Delete(req);
    return status;
}
