/* Opening a model file for inference: the weights and the tokenizer of one GGUF. */
#ifndef QUILL_LOADER_H
#define QUILL_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

/* The model is mapped (model_map_gguf: weights used where they lie, in any type quill
 * multiplies) and owns the file; the tokenizer is copied out. On failure nothing is left
 * allocated and err starts with the path. */
int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err);

/* The KV cache types a run can store keys and values in, as --cache-type spells them
 * (NULL-terminated): "f32", "f16", "q8_0". */
extern const char *const KV_CACHE_TYPE_NAMES[];
/* The GgmlType of one of KV_CACHE_TYPE_NAMES (F32 for any other name), and back. */
uint32_t kv_cache_type_from_name(const char *name);
const char *kv_cache_type_name(uint32_t type);

/* The cache type a run uses unless --cache-type says otherwise, as a llama.cpp user
 * expects: F16 for a downloaded model (llama.cpp's default: half the memory of F32, and
 * keys and values lose nothing that matters at 11 significant bits), F32 for quill's own
 * F32 models, the files `quill train` and `quill bench --write-model` write (general.name
 * "quill", general.file_type 0): their caches are small, and their decoding then gives the
 * logits of training's forward pass. A file `quill quantize` wrote counts as downloaded: it
 * is made to be run the way llama.cpp runs it. f == NULL (a model built in memory): F32. */
uint32_t kv_cache_type_default(const GgufFile *f);

/* What a model file holds, as quill info and quill bench report it: its parameters (every
 * tensor's elements) and the bytes of its weights as they lie in the file (every tensor's
 * bytes, whatever its type). */
void model_file_size(const GgufFile *f, uint64_t *params, uint64_t *bytes);

/* The model file a command-line MODEL names: a `quill train` run directory means its
 * model.gguf; anything else is taken as the file itself. */
void model_path_resolve(const char *model, char *path, size_t cap);

/* Whether a command-line argument names a model, for commands that take other files too
 * (quill bench takes a model or training configs): a name ending in .gguf (which need not
 * exist, so that a missing model is reported as a missing model), a run directory (one that
 * holds model.gguf) or a file that starts with GGUF's magic. */
bool model_path_names_model(const char *arg);

#endif
