#include "loader.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"

int model_file_load(const char *path, Model *m, Tokenizer *tok, Error *err)
{
    memset(m, 0, sizeof *m);
    memset(tok, 0, sizeof *tok);
    GgufFile *f;
    if (gguf_open(&f, path, err) != 0)
        return -1;
    if (tokenizer_from_gguf(tok, f, err) != 0 || model_map_gguf(m, f, err) != 0) {
        error_prefix(err, "%s", path);
        tokenizer_free(tok);
        gguf_close(f);
        return -1;
    }
    return 0;
}

const char *const KV_CACHE_TYPE_NAMES[] = {"f32", "f16", "q8_0", NULL};
static const uint32_t KV_CACHE_TYPES[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0};

uint32_t kv_cache_type_from_name(const char *name)
{
    for (int i = 0; KV_CACHE_TYPE_NAMES[i]; i++)
        if (strcmp(name, KV_CACHE_TYPE_NAMES[i]) == 0)
            return KV_CACHE_TYPES[i];
    return GGML_TYPE_F32;
}

const char *kv_cache_type_name(uint32_t type)
{
    for (int i = 0; KV_CACHE_TYPE_NAMES[i]; i++)
        if (KV_CACHE_TYPES[i] == type)
            return KV_CACHE_TYPE_NAMES[i];
    return "?";
}

uint32_t kv_cache_type_default(const GgufFile *f)
{
    if (!f)
        return GGML_TYPE_F32;
    Error unused;
    const char *name;
    uint32_t file_type;
    bool quill_f32 = gguf_get_str(f, "general.name", &name, &unused) == 0 &&
                     strcmp(name, "quill") == 0 &&
                     gguf_get_u32(f, "general.file_type", &file_type, &unused) == 0 &&
                     file_type == 0;
    return quill_f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
}

void model_file_size(const GgufFile *f, uint64_t *params, uint64_t *bytes)
{
    *params = *bytes = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        *params += gguf_tensor_nelements(&f->tensors[i]);
        *bytes += f->tensors[i].nbytes;
    }
}

void model_path_resolve(const char *model, char *path, size_t cap)
{
    snprintf(path, cap, path_is_directory(model) ? "%s/model.gguf" : "%s", model);
}

static bool ends_with_gguf(const char *name)
{
    size_t len = strlen(name);
    return len > 5 && strcmp(name + len - 5, ".gguf") == 0;
}

static bool file_starts_with_gguf_magic(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char magic[4];
    bool gguf = fp && fread(magic, 1, 4, fp) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (fp)
        fclose(fp);
    return gguf;
}

bool model_path_names_model(const char *arg)
{
    char run_model[4096];
    snprintf(run_model, sizeof run_model, "%s/model.gguf", arg);
    if (path_is_directory(arg))
        return access(run_model, F_OK) == 0;
    return ends_with_gguf(arg) || file_starts_with_gguf_magic(arg);
}
