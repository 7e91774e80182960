/* Opening a model file for inference: the weights and the tokenizer of one GGUF. */
#ifndef QUILL_LOADER_H
#define QUILL_LOADER_H

#include <stddef.h>

#include "error.h"
#include "model.h"
#include "tokenizer.h"

/* The model is mapped (model_map_gguf: weights used where they lie, in any type quill
 * multiplies) and owns the file; the tokenizer is copied out. On failure nothing is left
 * allocated and err starts with the path. */
int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err);

/* The model file a command-line MODEL names: a `quill train` run directory means its
 * model.gguf; anything else is taken as the file itself. */
void model_path_resolve(const char *model, char *path, size_t cap);

#endif
