/* quill info: what a GGUF file holds: the model's blueprint and size, the tokenizer, the
 * metadata and the tensor table. Works on any valid GGUF, vocab-only files included. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "gguf.h"
#include "loader.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"

/* One metadata value, shortened: arrays show their type and length. */
static void print_kv_value(const GgufKV *kv)
{
    switch (kv->type) {
    case GGUF_TYPE_STRING:
        printf("%.60s%s", kv->value.s, strlen(kv->value.s) > 60 ? "..." : "");
        break;
    case GGUF_TYPE_ARRAY:
        printf("[%s x %" PRIu64 "]", gguf_type_name(kv->elem_type), kv->n);
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        printf("%g", kv->value.f);
        break;
    case GGUF_TYPE_BOOL:
        printf("%s", kv->value.u ? "true" : "false");
        break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        printf("%" PRId64, kv->value.i);
        break;
    default:
        printf("%" PRIu64, kv->value.u);
        break;
    }
}

/* What running the file takes: its weights as they lie in the file (every tensor's bytes)
 * and, per parameter, the bits they spend. */
static void print_size(const GgufFile *f)
{
    uint64_t params, bytes;
    model_file_size(f, &params, &bytes);
    printf("size: %" PRIu64 " parameters (%.3fM), weights %" PRIu64 " bytes (%.2f MB), "
           "%.3f bits per weight\n",
           params, (double)params / 1e6, bytes, (double)bytes / 1e6,
           params ? 8.0 * (double)bytes / (double)params : 0.0);
}

/* The model's blueprint and the KV cache one sequence of n_ctx positions takes (0: the
 * model's context) in cache_type (NULL: the type quill generate would use). */
static void print_model(const GgufFile *f, int n_ctx, const char *cache_type)
{
    ModelConfig c;
    Error err;
    if (!gguf_find_tensor(f, "token_embd.weight")) {
        printf("model: none (no token_embd.weight: a vocabulary-only file)\n");
        return;
    }
    if (model_config_from_gguf(&c, f, &err) != 0) {
        printf("model: not one quill runs (%s)\n", err.msg);
        return;
    }
    printf("model: llama, %d layer%s, dim %d, %d head%s (%d kv, head size %d), ffn %d, "
           "context %d, vocab %d\n       rope base %g",
           c.n_layers, plural_s(c.n_layers), c.dim, c.n_heads, plural_s(c.n_heads), c.n_kv_heads,
           model_head_size(&c), c.ffn_dim, c.context, c.vocab_size, c.rope_base);
    if (c.rope_scaling > 0.0f && c.rope_scaling != 1.0f)
        printf(", linear scaling %g (positions / %g)", c.rope_scaling, c.rope_scaling);
    printf(", rms eps %g, %s embeddings\n", c.norm_eps, c.tie_embeddings ? "tied" : "untied");
    n_ctx = n_ctx > 0 ? n_ctx : c.context;
    uint32_t type = cache_type ? kv_cache_type_from_name(cache_type) : kv_cache_type_default(f);
    size_t kv_bytes = model_kv_cache_bytes(&c, 1, n_ctx, type);
    printf("KV cache: %zu bytes (%.2f MB) for %d position%s of %s: keys and values of %d "
           "layer%s x %d values, %zu bytes per row (--context, --cache-type)\n",
           kv_bytes, kv_bytes / 1e6, n_ctx, plural_s(n_ctx), kv_cache_type_name(type),
           c.n_layers, plural_s(c.n_layers), model_kv_dim(&c),
           quant_row_bytes(type, model_kv_dim(&c)));
}

static void print_tokenizer(const GgufFile *f)
{
    Tokenizer tok;
    Error err;
    if (!gguf_find_kv(f, "tokenizer.ggml.model")) {
        printf("tokenizer: none\n");
        return;
    }
    if (tokenizer_from_gguf(&tok, f, &err) != 0) {
        printf("tokenizer: not one quill runs (%s)\n", err.msg);
        return;
    }
    printf("tokenizer: %s, %d tokens, bos %d, eos %d, eot %d, unk %d, add_bos %s",
           tokenizer_kind_name(&tok), tok.n_vocab, tok.bos_id, tok.eos_id, tok.eot_id,
           tok.unk_id, tok.add_bos ? "yes" : "no");
    if (tok.kind == TOKENIZER_BPE)
        printf(", pre-tokenizer %s\n", tokenizer_pre_name(&tok));
    else
        printf(", space prefix %s\n", tok.add_space_prefix ? "yes" : "no");
    tokenizer_free(&tok);
}

static void print_tensors(const GgufFile *f)
{
    printf("\n%-32s %-6s %-22s %12s\n", "tensor", "type", "shape (ne)", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GgufTensor *t = &f->tensors[i];
        char shape[64] = "[";
        for (uint32_t d = 0; d < t->n_dims; d++) {
            char dim[24];
            snprintf(dim, sizeof dim, d ? ", %" PRIu64 : "%" PRIu64, t->ne[d]);
            strncat(shape, dim, sizeof shape - strlen(shape) - 2);
        }
        strcat(shape, "]");
        const char *type = gguf_tensor_type_name(t->type);
        printf("%-32s %-6s %-22s %12" PRIu64 "\n", t->name, type ? type : "?", shape, t->nbytes);
    }
}

int cmd_info(int argc, char **argv, Error *err)
{
    bool show_metadata = false;
    int context = 0;
    const char *cache_type = NULL;
    const Flag flags[] = {
        {"metadata", FLAG_SWITCH, &show_metadata, 0, 0, "list every metadata key and value"},
        {"context", FLAG_INT, &context, 0, 1 << 24,
         "positions the KV cache is sized for (0: the model's context)", .short_name = 'c'},
        {"cache-type", FLAG_CHOICE, &cache_type, 0, 0,
         "the KV cache's type (default: what quill generate uses for this file)",
         KV_CACHE_TYPE_NAMES},
    };
    const CommandSpec spec = {
        .usage = "usage: quill info MODEL [--metadata] [--context N] [--cache-type T]\n\n"
                 "Prints what a GGUF file holds: the model's shape, its size (parameters,\n"
                 "bytes, bits per weight) and the memory of its KV cache, the tokenizer and\n"
                 "the tensor table.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = 1,
    };
    const char *positional[1];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    GgufFile *f;
    char path[4096];
    model_path_resolve(positional[0], path, sizeof path);
    if (gguf_open(&f, path, err) != 0)
        return -1;
    printf("%s: GGUF v%u, %" PRIu64 " metadata keys, %" PRIu64 " tensors, alignment %" PRIu64
           "\n",
           path, f->version, f->n_kv, f->n_tensors, f->alignment);
    print_size(f);
    print_model(f, context, cache_type);
    print_tokenizer(f);
    if (show_metadata) {
        printf("\n");
        for (uint64_t i = 0; i < f->n_kv; i++) {
            printf("%-44s ", f->kv[i].key);
            print_kv_value(&f->kv[i]);
            printf("\n");
        }
    }
    print_tensors(f);
    gguf_close(f);
    return 0;
}
