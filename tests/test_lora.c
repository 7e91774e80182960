/* LoRA adapters at inference (src/lora.h): an adapter file built here, in llama.cpp's
 * layout, for a shared model; what it changes, checked against the base model (B = 0
 * changes nothing), against llama.cpp's llama-cli --lora-scaled (the same greedy tokens),
 * and against `quill merge` (W + scale * B A written into the weights). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "infer.h"
#include "loader.h"
#include "lora.h"
#include "rng.h"
#include "test_util.h"

enum { RANK = 4, MAX_PAIRS = 64 };

/* What an adapter file holds, before it is written: which weights, and how. */
typedef struct {
    const char *architecture; /* general.architecture */
    const char *type;         /* general.type */
    float alpha;
    float a_range, b_range;   /* A and B drawn uniformly from +-range (B: 0 for zeros) */
    const char *skip_b;       /* a tensor whose lora_b is left out (NULL: none) */
    int a_cols_delta;         /* added to every A's row length: a shape that does not fit */
} AdapterSpec;

static const AdapterSpec STRONG = {"llama", "adapter", 8.0f, 0.5f, 0.5f, NULL, 0};

/* Writes an adapter for every matrix of the model in `model_path` that quill adapts (the
 * seven projections of each block and output.weight), A (RANK, in) and B (out, RANK) in
 * F32, drawn from a fixed seed. Returns the number of pairs. */
static int write_adapter(const char *path, const char *model_path, const AdapterSpec *spec)
{
    GgufFile *model;
    Error err;
    cr_assert_eq(gguf_open(&model, model_path, &err), 0, "%s", err.msg);
    static float *data[2 * MAX_PAIRS];
    static char names[2 * MAX_PAIRS][96];
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", spec->architecture);
    gguf_writer_add_str(w, "general.type", spec->type);
    gguf_writer_add_str(w, "adapter.type", "lora");
    gguf_writer_add_f32(w, "adapter.lora.alpha", spec->alpha);
    Rng rng;
    rng_seed(&rng, 42);
    int n = 0;
    for (uint64_t i = 0; i < model->n_tensors; i++) {
        const GgufTensor *t = &model->tensors[i];
        if (t->n_dims != 2 || strcmp(t->name, "token_embd.weight") == 0)
            continue;
        cr_assert_lt(n, MAX_PAIRS);
        uint64_t in = t->ne[0] + (uint64_t)spec->a_cols_delta, out = t->ne[1];
        const uint64_t ne_a[2] = {in, RANK}, ne_b[2] = {RANK, out};
        float *a = data[2 * n] = malloc(in * RANK * sizeof(float));
        float *b = data[2 * n + 1] = malloc(out * RANK * sizeof(float));
        for (uint64_t k = 0; k < in * RANK; k++)
            a[k] = spec->a_range * (2.0f * rng_uniform(&rng) - 1.0f);
        for (uint64_t k = 0; k < out * RANK; k++)
            b[k] = spec->b_range * (2.0f * rng_uniform(&rng) - 1.0f);
        snprintf(names[2 * n], sizeof names[0], "%s.lora_a", t->name);
        snprintf(names[2 * n + 1], sizeof names[0], "%s.lora_b", t->name);
        gguf_writer_add_tensor(w, names[2 * n], GGML_TYPE_F32, 2, ne_a, a);
        if (!spec->skip_b || strcmp(spec->skip_b, t->name) != 0)
            gguf_writer_add_tensor(w, names[2 * n + 1], GGML_TYPE_F32, 2, ne_b, b);
        n++;
    }
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    for (int k = 0; k < 2 * n; k++)
        free(data[k]);
    gguf_close(model);
    return n;
}

static const char *adapter_path(const char *dir, const char *name)
{
    static char path[4][512];
    static int turn;
    char *p = path[turn++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    return p;
}

/* The logits of every position of tokens, with the adapter (NULL: none) at scale 1. */
static float *logits_of(const char *model_path, const char *adapter, const int *tokens, int n)
{
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model_path, &m, &tok, &err), 0, "%s", err.msg);
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = n, .cache_type = GGML_TYPE_F32,
                          .all_logits = true};
    cr_assert_eq(infer_init(&ctx, &m, &params, &err), 0, "%s", err.msg);
    LoraAdapter ad = {0};
    if (adapter) {
        cr_assert_eq(lora_adapter_load(&ad, adapter, &m, &err), 0, "%s", err.msg);
        LoraUse use = {&ad, 1.0f};
        cr_assert_eq(infer_set_lora(&ctx, &use, 1, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(infer_decode(&ctx, 0, tokens, n, &err), 0, "%s", err.msg);
    size_t V = (size_t)m.config.vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    for (int i = 0; i < n; i++)
        memcpy(logits + i * V, infer_logits(&ctx, i), V * sizeof *logits);
    infer_free(&ctx);
    lora_adapter_free(&ad);
    tokenizer_free(&tok);
    model_free(&m);
    return logits;
}

static const int PROMPT[] = {1, 403, 407, 261, 378, 60, 421, 291}; /* "Once upon a time ..." */
enum { N_PROMPT = sizeof PROMPT / sizeof *PROMPT, V_STORIES = 512 };

/* LoRA starts with B = 0 so that training begins at the base model: such an adapter
 * leaves every logit exactly as it was (x + 0 is x). The same adapter with B drawn changes
 * them, so the comparison sees the adapter when there is something to see. */
Test(lora, zero_b_leaves_every_logit_exactly_the_base_models)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    AdapterSpec zero = STRONG;
    zero.b_range = 0.0f;
    const char *zero_path = adapter_path(dir, "zero.gguf"), *strong = adapter_path(dir, "s.gguf");
    cr_assert_eq(write_adapter(zero_path, model, &zero), 5 * 7 + 1);
    write_adapter(strong, model, &STRONG);
    float *base = logits_of(model, NULL, PROMPT, N_PROMPT);
    float *with_zero = logits_of(model, zero_path, PROMPT, N_PROMPT);
    float *with_strong = logits_of(model, strong, PROMPT, N_PROMPT);
    int compared = 0, changed = 0;
    for (int i = 0; i < N_PROMPT * V_STORIES; i++, compared++) {
        cr_assert(with_zero[i] == base[i], "logit %d: %.9g with B = 0, %.9g without", i,
                  with_zero[i], base[i]);
        changed += with_strong[i] != base[i];
    }
    cr_assert_eq(compared, N_PROMPT * V_STORIES);
    cr_assert_gt(changed, N_PROMPT * V_STORIES / 2, "the drawn adapter changed %d logits",
                 changed);
    free(base);
    free(with_zero);
    free(with_strong);
}

/* llama.cpp applies the same adapter file to the same greedy tokens (F32 throughout: the
 * two may only part at a near tie, logits within 2e-4), and they are not the base model's:
 * the comparison sees the adapter. Twice: scale 1, and --lora-scaled 0.5. */
Test(llama_cpp, lora_greedy_tokens_equal_llama_clis, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    const char *dir = test_make_tmpdir();
    const char *adapter = adapter_path(dir, "adapter.gguf");
    write_adapter(adapter, model, &STRONG);
    const float scales[] = {1.0f, 0.5f};
    int cases = 0;
    for (int s = 0; s < 2; s++, cases++) {
        int ours[32], base[32];
        int n = test_greedy_lora_equals_llama_cpp(llama_cli, model, adapter, scales[s],
                                                  "Once upon a time", 32, 2e-4f, ours);
        cr_expect_geq(n, 8, "scale %g: only %d tokens compared", scales[s], n);
        int n_base = test_quill_greedy(model, PROMPT, 5, n, 0.0f, base);
        cr_assert_eq(n_base, n);
        cr_expect(memcmp(ours, base, (size_t)n * sizeof(int)) != 0,
                  "scale %g: the adapter's %d greedy tokens are the base model's", scales[s], n);
    }
    cr_assert_eq(cases, 2);
}

static void expect_load_error(const char *model_path, const char *adapter, const char *needle)
{
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model_path, &m, &tok, &err), 0, "%s", err.msg);
    LoraAdapter ad;
    cr_assert_eq(lora_adapter_load(&ad, adapter, &m, &err), -1, "%s loaded", adapter);
    cr_expect(strstr(err.msg, needle) && strstr(err.msg, adapter), "'%s' lacks '%s'", err.msg,
              needle);
    tokenizer_free(&tok);
    model_free(&m);
}

/* Each kind of wrong file is one message naming what is wrong (and the tensor, where one
 * tensor is): another architecture, a model given as an adapter, a lora_a without its
 * lora_b, factors of another model's shapes. */
Test(lora, a_wrong_adapter_is_one_clear_error)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    AdapterSpec qwen = STRONG, unpaired = STRONG, misshapen = STRONG, model_file = STRONG;
    qwen.architecture = "qwen2";
    unpaired.skip_b = "blk.2.ffn_up.weight";
    misshapen.a_cols_delta = 32;
    model_file.type = "model";
    const struct {
        const AdapterSpec *spec;
        const char *needle;
    } cases[] = {
        {&qwen, "the adapter is for the architecture 'qwen2', the model is 'llama'"},
        {&unpaired, "tensor 'blk.2.ffn_up.weight.lora_a' has no "
                    "'blk.2.ffn_up.weight.lora_b' to pair with"},
        {&misshapen, "tensors 'output.weight.lora_a' [96, 4] and 'output.weight.lora_b' "
                     "[4, 512] do not fit 'output.weight' [64, 512]"},
        {&model_file, "not an adapter: general.type is 'model'"},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, n++) {
        const char *path = adapter_path(dir, "bad.gguf");
        write_adapter(path, model, cases[i].spec);
        expect_load_error(model, path, cases[i].needle);
    }
    cr_assert_eq(n, 4);
}
