/* The LoRA adapters of a run: --lora FILE (repeatable) and --lora-scale S, as quill generate,
 * chat and serve take them, loaded for the run's model with their scales. */
#ifndef QUILL_GENERATE_ADAPTERS_H
#define QUILL_GENERATE_ADAPTERS_H

#include "cli.h"
#include "error.h"
#include "quill.h"

/* The flags' help, one text for every command that takes them. */
#define LORA_FLAG_HELP "apply this LoRA adapter GGUF (repeatable)"
#define LORA_SCALE_FLAG_HELP \
    "the i-th scales the i-th --lora (default 1; llama.cpp's --lora-scaled)"

typedef struct {
    quill_lora **adapters; /* n, loaded for one model */
    float *scales;         /* adapters[i] adds scales[i] * B A to its weights */
    char **paths;          /* the files, borrowed from the list they were loaded from */
    int n;
} AdapterList;

/* Loads files for m, once (a list already holding files->n adapters is left as it is), each
 * with its scale: the i-th of scales goes with the i-th file, 1 where there are fewer; more
 * scales than files, a scale that is not a number, or a file quill_lora_load refuses is an
 * error naming it. */
int adapter_list_load(AdapterList *list, const StringList *files, const StringList *scales,
                  const quill_model *m, Error *err);

/* Applies the list to c (quill_context_set_lora): returns QUILL_OK, or an error left in
 * quill_last_error. */
int adapter_list_apply(const AdapterList *list, quill_context *c);

void adapter_list_free(AdapterList *list); /* the adapters; the list is empty after */

#endif
