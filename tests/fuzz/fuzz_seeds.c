/* Writes the seed corpora of the fuzz harnesses, all made by quill itself from the small
 * text of fuzz_common.h (nothing is copied from elsewhere):
 *   OUT/gguf_model/   a tiny model with its tokenizer, a tied one with one kv head, a
 *                     vocabulary-only file, and a byte-level BPE ("gpt2") vocabulary
 *   OUT/train_state/  a checkpoint (train_state and model.gguf) after one AdamW step
 *   OUT/token_cache/  the token cache of the text
 * Usage: fuzz-seeds OUT (the directories must exist). */
#include <stdio.h>
#include <string.h>

#include "../../train/checkpoint.h"
#include "../../train/data.h"
#include "fileio.h"
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
    if (data_load(&d, paths, 1, tok, path, &warning, err) != 0) /* writes the cache */
        return -1;
    data_free(&d);
    return 0;
}

/* GPT-2's stand-in character for a byte, as UTF-8: printable bytes stand for themselves,
 * the others for the code points from U+0100 on, in byte order. */
static void byte_stand_in(int byte, char out[3])
{
    bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    int rank = 0;
    for (int b = 0; b < byte; b++)
        rank += !((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174);
    int cp = printable ? byte : 256 + rank;
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = '\0';
    }
}

/* A byte-level BPE vocabulary (GPT-2 style): the 256 byte pieces, a few merges, and a
 * control token, so that the fuzzer starts from a valid "gpt2" tokenizer too. */
static int write_bpe_vocab(const char *path, Error *err)
{
    enum { N_BYTES = 256, N_VOCAB = 260 };
    static char bytes[N_BYTES][3];
    const char *pieces[N_VOCAB];
    int32_t types[N_VOCAB];
    for (int b = 0; b < N_BYTES; b++) {
        byte_stand_in(b, bytes[b]);
        pieces[b] = bytes[b];
        types[b] = TOKEN_TYPE_NORMAL;
    }
    const char *extra[] = {"he", "\xc4\xa0t", "\xc4\xa0the", "<|endoftext|>"};
    for (int i = 0; i < 4; i++) {
        pieces[N_BYTES + i] = extra[i];
        types[N_BYTES + i] = i == 3 ? TOKEN_TYPE_CONTROL : TOKEN_TYPE_NORMAL;
    }
    const char *merges[] = {"h e", "\xc4\xa0 t", "\xc4\xa0t he"};
    Tokenizer tok;
    if (tokenizer_init_bpe(&tok, N_VOCAB, pieces, types, merges, 3, "gpt2", err) != 0)
        return -1;
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    tokenizer_to_gguf(&tok, w);
    int status = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    tokenizer_free(&tok);
    return status;
}

/* A seed of the harnesses that read two parts: the grammar or schema, and a text. */
typedef struct {
    const char *head, *text;
} SeedPair;

/* Writes each pair as dir/seedN: the head, a NUL byte, the text. */
static int write_seed_pairs(const char *dir, const SeedPair *seeds, size_t n, Error *err)
{
    for (size_t i = 0; i < n; i++) {
        char path[512], input[1024];
        int len = snprintf(input, sizeof input, "%s%c%s", seeds[i].head, 0, seeds[i].text);
        if (len >= (int)sizeof input)
            return error_set(err, "seed %zu is too long", i);
        snprintf(path, sizeof path, "%s/seed%zu", dir, i);
        if (file_write_atomic(path, input, (size_t)len, err) != 0)
            return -1;
    }
    return 0;
}

/* Grammars that use every construct of the format, each with a text, written as
 * fuzz_grammar reads its input: the grammar, a NUL, the text. */
static int write_grammar_seeds(const char *dir, Error *err)
{
    static const SeedPair SEEDS[] = {
        {"root ::= \"{\" ws (pair (\",\" ws pair)*)? \"}\"\n"
         "pair ::= [a-z]+ \":\" ws ([0-9]{1,3} | \"\\\"\" [^\"\\\\]* \"\\\"\")\n"
         "ws ::= [ \\t\\n]*  # spaces\n",
         "{a: 12, b: \"x\"}"},
        {"root ::= (\"é\" | [α-ω] | \"\\u00e9\" | .)+ \"\\x21\"?", "é αβ!"},
        {"root ::= item{2,} end?\nitem ::= \"(\" (item | [^()]) \")\"\nend ::= \"\\n\"",
         "((a))(b)\n"},
    };
    return write_seed_pairs(dir, SEEDS, sizeof SEEDS / sizeof *SEEDS, err);
}

/* Schemas that use every keyword the converter handles, each with a text it accepts,
 * written as fuzz_json_schema reads its input: the schema, a NUL, the text. */
static int write_json_schema_seeds(const char *dir, Error *err)
{
    static const SeedPair SEEDS[] = {
        {"{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", "
         "\"minLength\": 1, \"maxLength\": 8}, \"age\": {\"type\": \"integer\", \"minimum\": -5, "
         "\"exclusiveMaximum\": 130}, \"tags\": {\"type\": \"array\", \"items\": {\"enum\": "
         "[\"a\", 1, null]}, \"minItems\": 1, \"maxItems\": 3}}, \"required\": [\"age\"], "
         "\"additionalProperties\": {\"type\": [\"boolean\", \"null\"]}}",
         "{\"name\": \"Tom\", \"age\": 7, \"tags\": [\"a\", 1], \"x\": true}"},
        {"{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"const\": 1}, "
         "\"kids\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/node\"}}}}}, "
         "\"anyOf\": [{\"$ref\": \"#/$defs/node\"}, {\"oneOf\": [{\"format\": \"date\"}, "
         "{\"format\": \"uuid\"}, {\"format\": \"date-time\"}, {\"format\": \"time\"}]}]}",
         "{\"v\": 1, \"kids\": [{\"kids\": []}]}"},
        {"{\"type\": \"array\", \"items\": {\"allOf\": [{\"properties\": {\"a\": {\"type\": "
         "\"number\"}}}, {\"properties\": {\"b\": {\"type\": \"string\", \"pattern\": "
         "\"^(?:[a-c]|\\\\d{2,3}|x+)\\\\s?[^\\\"]*.$\"}}, \"required\": [\"b\"]}]}}",
         "[{\"a\": 1.5, \"b\": \"12 yz\"}]"},
        {"{}", "{\"a\": [1, 2.5e-3, \"x\\u0041\", true, null]}"},
    };
    return write_seed_pairs(dir, SEEDS, sizeof SEEDS / sizeof *SEEDS, err);
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
    snprintf(path, sizeof path, "%s/gguf_model/bpe-vocab.gguf", argv[1]);
    if (status == 0)
        status = write_bpe_vocab(path, &err);
    snprintf(dir, sizeof dir, "%s/train_state", argv[1]);
    if (status == 0)
        status = write_checkpoint(dir, &tok, &err);
    snprintf(dir, sizeof dir, "%s/grammar", argv[1]);
    if (status == 0)
        status = write_grammar_seeds(dir, &err);
    snprintf(dir, sizeof dir, "%s/json_schema", argv[1]);
    if (status == 0)
        status = write_json_schema_seeds(dir, &err);
    tokenizer_free(&tok);
    if (status != 0) {
        fprintf(stderr, "fuzz-seeds: %s\n", err.msg);
        return 1;
    }
    return 0;
}
