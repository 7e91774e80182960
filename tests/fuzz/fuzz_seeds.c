/* Writes the seed corpora of the fuzz harnesses, all made by quill itself from the small
 * text of fuzz_common.h (nothing is copied from elsewhere):
 *   OUT/gguf_model/   a tiny model with its tokenizer, a tied one with one kv head, and a
 *                     vocabulary-only file
 *   OUT/train_state/  a checkpoint (train_state and model.gguf) after one AdamW step
 *   OUT/token_cache/  the token cache of the text
 * Usage: fuzz-seeds OUT (the directories must exist). */
#include <stdio.h>
#include <string.h>

#include "../../train/checkpoint.h"
#include "../../train/data.h"
#include "fuzz_common.h"
#include "gguf.h"
#include "model.h"

static int write_model(const char *path, const Tokenizer *tok, bool tied, int kv_heads,
                       bool with_model, Error *err)
{
    ModelConfig c = {.n_layers = 2, .dim = 16, .n_heads = 4, .n_kv_heads = kv_heads,
                     .ffn_dim = 24, .vocab_size = tok->n_vocab, .context = 32,
                     .rope_base = 10000.0f, .norm_eps = 1e-5f, .tie_embeddings = tied};
    Model m;
    if (model_init(&m, &c, err) != 0)
        return -1;
    model_init_params(&m, 1);
    GgufWriter *w = gguf_writer_new();
    if (with_model)
        model_to_gguf(&m, w);
    tokenizer_to_gguf(tok, w);
    int status = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    model_free(&m);
    return status;
}

static int write_checkpoint(const char *dir, const Tokenizer *tok, Error *err)
{
    ModelConfig c = {.n_layers = 1, .dim = 8, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 16,
                     .vocab_size = tok->n_vocab, .context = 16, .rope_base = 10000.0f,
                     .norm_eps = 1e-5f};
    Model m;
    Optimizer o;
    if (model_init(&m, &c, err) != 0)
        return -1;
    model_init_params(&m, 2);
    int status = optimizer_init(&o, OPTIMIZER_ADAMW, m.n_params, err);
    TrainProgressState state = {.step = 1, .rng_state = 42,
                                .config_json = "{\"layers\": 1, \"dim\": 8, \"heads\": 2}"};
    if (status == 0)
        status = checkpoint_save(dir, &m, tok, &o, &state, err);
    optimizer_free(&o);
    model_free(&m);
    return status;
}

static int write_token_cache(const char *dir, const char *text_path, const Tokenizer *tok,
                             Error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokens.bin", dir);
    const char *paths[] = {text_path};
    TokenData d;
    Error warning;
    if (data_load(&d, paths, 1, tok, NULL, &warning, err) != 0)
        return -1;
    int status = data_cache_save(&d, path, err);
    data_free(&d);
    return status;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seeds OUT\n");
        return 2;
    }
    char dir[256], path[512], text_path[512];
    Tokenizer tok;
    Error err = {{0}};
    snprintf(dir, sizeof dir, "%s/token_cache", argv[1]);
    int status = fuzz_text_and_tokenizer(dir, text_path, sizeof text_path, &tok);
    if (status == 0)
        status = write_token_cache(dir, text_path, &tok, &err);
    remove(text_path);
    const struct {
        const char *name;
        bool tied, with_model;
        int kv_heads;
    } models[] = {{"model.gguf", false, true, 2}, {"tied.gguf", true, true, 1},
                  {"vocab.gguf", false, false, 4}};
    for (size_t i = 0; status == 0 && i < sizeof models / sizeof *models; i++) {
        snprintf(path, sizeof path, "%s/gguf_model/%s", argv[1], models[i].name);
        status = write_model(path, &tok, models[i].tied, models[i].kv_heads,
                             models[i].with_model, &err);
    }
    snprintf(dir, sizeof dir, "%s/train_state", argv[1]);
    if (status == 0)
        status = write_checkpoint(dir, &tok, &err);
    tokenizer_free(&tok);
    if (status != 0) {
        fprintf(stderr, "fuzz-seeds: %s\n", err.msg);
        return 1;
    }
    return 0;
}
