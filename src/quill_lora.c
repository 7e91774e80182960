/* libquill: LoRA adapters (quill.h), a shell around lora.h's LoraAdapter; a context applies
 * them through infer_set_lora. */
#include <stdlib.h>

#include "lora.h"
#include "quill_internal.h"

quill_lora *quill_lora_load(const quill_model *m, const char *path)
{
    if (api_check_handle(m, "quill_lora_load", "model") != QUILL_OK ||
        api_check_handle(path, "quill_lora_load", "path") != QUILL_OK)
        return NULL;
    if (m->vocab_only) {
        api_fail("quill_lora_load: the model was loaded with vocab_only: it has no weights");
        return NULL;
    }
    quill_lora *a = calloc(1, sizeof *a);
    if (!a) {
        api_fail_as(QUILL_ERROR_MEMORY, "quill_lora_load: out of memory");
        return NULL;
    }
    Error err;
    if (lora_adapter_load(&a->adapter, path, &m->model, &err) != 0) {
        free(a);
        api_error_as(QUILL_ERROR_FILE, &err);
        return NULL;
    }
    a->model = m;
    return a;
}

void quill_lora_free(quill_lora *a)
{
    if (!a)
        return;
    lora_adapter_free(&a->adapter);
    free(a);
}

int quill_context_set_lora(quill_context *c, quill_lora *const *adapters, const float *scales,
                           int n)
{
    const char *fn = "quill_context_set_lora";
    if (api_check_handle(c, fn, "context") != QUILL_OK)
        return QUILL_ERROR;
    if (n < 0 || (n > 0 && !adapters))
        return api_fail("%s: %d adapters at %p", fn, n, (const void *)adapters);
    LoraUse *uses = malloc((size_t)(n > 0 ? n : 1) * sizeof *uses);
    if (!uses)
        return api_fail_as(QUILL_ERROR_MEMORY, "%s: out of memory", fn);
    for (int i = 0; i < n; i++) {
        if (!adapters[i] || adapters[i]->model != c->model) {
            free(uses);
            return api_fail("%s: adapter %d is %s", fn, i,
                            adapters[i] ? "another model's" : "NULL");
        }
        uses[i] = (LoraUse){&adapters[i]->adapter, scales ? scales[i] : 1.0f};
    }
    Error err;
    int status = infer_set_lora(&c->infer, uses, n, &err) == 0 ? QUILL_OK : api_error(&err);
    free(uses);
    return status;
}
