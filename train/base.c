#include "base.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"

/* Full fine-tuning holds four floats per parameter: the weight, its gradient and AdamW's
 * two moments (activations come on top, and are what --batch-size and --seq-len size). */
enum { TRAINING_BYTES_PER_PARAM = 4 * sizeof(float) };

static bool widens_exactly_to_f32(uint32_t type)
{
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

/* The first quantized tensor refuses the file: --init trains every weight in F32. */
static int check_not_quantized(const GgufFile *f, const char *path, Error *err)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        if (widens_exactly_to_f32(t->type))
            continue;
        const char *type = gguf_tensor_type_name(t->type);
        return error_set(err, "%s: tensor '%s' is %s: quill train --init trains every weight "
                              "in F32 and starts from F32, F16 or BF16 files only; fine-tune a "
                              "quantized model with LoRA adapters instead: quill finetune %s "
                              "--data FILE --out DIR",
                         path, t->name, type ? type : "of an unknown type", path);
    }
    return 0;
}

static int check_fits_in_memory(const GgufFile *f, const char *path, Error *err)
{
    uint64_t params, bytes;
    model_file_size(f, &params, &bytes);
    double need = (double)params * TRAINING_BYTES_PER_PARAM;
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    double have = pages > 0 && page_size > 0 ? (double)pages * (double)page_size : 0.0;
    if (have > 0.0 && need > have)
        return error_set(err, "%s: %.0fM parameters need %.1f GB to train in full (weights, "
                              "gradients and AdamW's moments: %d bytes a parameter), more than this "
                              "machine's %.1f GB: train LoRA adapters instead (quill finetune)",
                         path, (double)params / 1e6, need / 1e9, (int)TRAINING_BYTES_PER_PARAM,
                         have / 1e9);
    return 0;
}

int base_open(const char *path, GgufFile **f, ModelConfig *mc, Error *err)
{
    if (gguf_open(f, path, err) != 0)
        return -1;
    int status = model_config_from_gguf(mc, *f, err);
    if (status != 0)
        error_prefix(err, "%s", path);
    if (status == 0)
        status = check_not_quantized(*f, path, err);
    if (status == 0)
        status = check_fits_in_memory(*f, path, err);
    if (status != 0) {
        gguf_close(*f);
        *f = NULL;
    }
    return status;
}

void base_config_apply(TrainConfig *c, const ModelConfig *mc)
{
    c->layers = mc->n_layers;
    c->dim = mc->dim;
    c->heads = mc->n_heads;
    c->kv_heads = mc->n_kv_heads;
    c->ffn_dim = mc->ffn_dim;
    c->context = mc->context;
    c->tie_embeddings = mc->tie_embeddings;
    c->rope_base = mc->rope_base;
    c->norm_eps = mc->norm_eps;
    c->vocab_size = mc->vocab_size;
    config_set_key(c, "tokenizer", "base", NULL); /* a valid choice */
}

int base_config_check(const TrainConfig *c, const ModelConfig *mc, const char *path,
                      Error *err)
{
    const struct {
        const char *key;
        double given, base;
    } keys[] = {
        {"layers", c->layers, mc->n_layers},
        {"dim", c->dim, mc->dim},
        {"heads", c->heads, mc->n_heads},
        {"kv_heads", c->kv_heads, mc->n_kv_heads},
        {"ffn_dim", c->ffn_dim, mc->ffn_dim},
        {"vocab_size", c->vocab_size, mc->vocab_size},
        {"tie_embeddings", c->tie_embeddings, mc->tie_embeddings},
        {"rope_base", c->rope_base, mc->rope_base},
        {"norm_eps", c->norm_eps, mc->norm_eps},
    };
    char flag[32];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (keys[i].given != keys[i].base)
            return error_set(err, "--%s %g contradicts the base model %s, whose %s is %g: "
                                  "with --init the model's architecture is the base's (leave "
                                  "out the flag, and the key '%s' of a config file)",
                             config_flag_spelling(flag, keys[i].key), keys[i].given, path,
                             keys[i].key, keys[i].base, keys[i].key);
    if (strcmp(c->tokenizer, "base") != 0)
        return error_set(err, "--tokenizer %s contradicts --init: the run keeps the base "
                              "model's own tokenizer (leave --tokenizer out)",
                         c->tokenizer);
    if (c->context > mc->context)
        return error_set(err, "--context %d exceeds the base model's context of %d positions "
                              "(%s): --init trains at most at the length the base was "
                              "trained at",
                         c->context, mc->context, path);
    return 0;
}
