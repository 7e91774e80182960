/* --lora and --lora-scale: the adapters of a run, paired with their scales. */
#include <math.h>
#include <stdlib.h>

#include "adapters.h"

int adapter_list_load(AdapterList *list, const StringList *files, const StringList *scales,
                  const quill_model *m, Error *err)
{
    int n = files->n;
    if (scales->n > n)
        return error_set(err, "%d --lora-scale value%s for %d --lora adapter%s: the i-th "
                              "scale goes with the i-th adapter",
                         scales->n, plural_s(scales->n), n, plural_s(n));
    if (list->n == n)
        return 0;
    list->adapters = calloc((size_t)n, sizeof *list->adapters);
    list->scales = malloc((size_t)n * sizeof *list->scales);
    if (!list->adapters || !list->scales)
        return error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        const char *text = i < scales->n ? scales->items[i] : "1";
        char *end;
        list->scales[i] = strtof(text, &end);
        if (end == text || *end || !isfinite(list->scales[i]))
            return error_set(err, "--lora-scale: '%s' is not a number", text);
        if (!(list->adapters[i] = quill_lora_load(m, files->items[i])))
            return error_set(err, "%s", quill_last_error());
        list->n = i + 1;
        list->paths = files->items;
    }
    return 0;
}

int adapter_list_apply(const AdapterList *list, quill_context *c)
{
    return quill_context_set_lora(c, list->adapters, list->scales, list->n);
}

void adapter_list_free(AdapterList *list)
{
    for (int i = 0; i < list->n; i++)
        quill_lora_free(list->adapters[i]);
    free(list->adapters);
    free(list->scales);
    *list = (AdapterList){0};
}
