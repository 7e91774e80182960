/* Opening a model file for inference: the weights and the tokenizer of one GGUF. */
#ifndef QUILL_LOADER_H
#define QUILL_LOADER_H

#include "error.h"
#include "model.h"
#include "tokenizer.h"

/* On failure nothing is left allocated and err starts with the path. */
int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err);

#endif
