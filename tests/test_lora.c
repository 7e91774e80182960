/* LoRA adapters at inference (src/lora.h): an adapter file built here, in llama.cpp's
 * layout, for a shared model; what it changes, checked against the base model (B = 0
 * changes nothing), against llama.cpp's llama-cli --lora-scaled (the same greedy tokens),
 * and against `quill merge` (W + scale * B A written into the weights). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "infer.h"
#include "loader.h"
#include "lora.h"
#include "quill.h"
#include "test_adapter.h"
#include "test_util.h"

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
    AdapterSpec zero = TEST_ADAPTER;
    zero.b_range = 0.0f;
    const char *zero_path = adapter_path(dir, "zero.gguf"), *strong = adapter_path(dir, "s.gguf");
    cr_assert_eq(test_write_adapter(zero_path, model, &zero), 5 * 7 + 1);
    test_write_adapter(strong, model, &TEST_ADAPTER);
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
    test_write_adapter(adapter, model, &TEST_ADAPTER);
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

/* The same on a quantized base (qtest-Q8_0, a small random model) with F16 factors, as
 * llama.cpp's converter writes them: both multiply the Q8_0 weights with activations
 * rounded to Q8_0 and the F16 factors with activations rounded to F16, in sums of their
 * own orders, so tokens are compared up to a near tie of 2e-3, where the two may part. */
Test(llama_cpp, lora_on_a_quantized_base_gives_llama_clis_greedy_tokens, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, "models/qtest-Q8_0.gguf");
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    const char *dir = test_make_tmpdir();
    const char *adapter = adapter_path(dir, "adapter.gguf");
    AdapterSpec f16 = TEST_ADAPTER;
    f16.factor_type = GGML_TYPE_F16;
    test_write_adapter(adapter, model, &f16);
    int ours[32], base[32];
    int n = test_greedy_lora_equals_llama_cpp(llama_cli, model, adapter, 1.0f, "Once upon a time",
                                              32, 2e-3f, ours);
    cr_expect_geq(n, 8, "only %d tokens compared", n);
    int prompt[5] = {1, 403, 407, 261, 378};
    cr_assert_eq(test_quill_greedy(model, prompt, 5, n, 0.0f, base), n);
    cr_expect(memcmp(ours, base, (size_t)n * sizeof(int)) != 0,
              "the adapter's %d greedy tokens are the base model's", n);
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
 * lora_b and a lora_b without its lora_a, factors of another model's shapes, an adapter of
 * the embedding (laid out otherwise; quill does not take it). */
Test(lora, a_wrong_adapter_is_one_clear_error)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    AdapterSpec qwen = TEST_ADAPTER, unpaired = TEST_ADAPTER, misshapen = TEST_ADAPTER, model_file = TEST_ADAPTER,
                embedding = TEST_ADAPTER, lone_b = TEST_ADAPTER;
    embedding.with_token_embd = true;
    lone_b.skip_a = "blk.4.attn_v.weight";
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
        {&embedding, "tensor 'token_embd.weight.lora_a': quill applies adapters to the "
                     "blocks' projections and output.weight, not to 'token_embd.weight'"},
        {&lone_b, "tensor 'blk.4.attn_v.weight.lora_b' has no 'blk.4.attn_v.weight.lora_a' "
                  "to pair with"},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, n++) {
        const char *path = adapter_path(dir, "bad.gguf");
        test_write_adapter(path, model, cases[i].spec);
        expect_load_error(model, path, cases[i].needle);
    }
    cr_assert_eq(n, 6);
}

static float max_abs_diff(const float *a, const float *b, int n);

/* The last position's logits through the public API, with adapters[i] at scales[i]. */
static void api_logits(quill_model *m, quill_lora *const *adapters, const float *scales, int n,
                       float *out)
{
    quill_context_params p = quill_context_params_default();
    p.cache_type = QUILL_CACHE_F32;
    p.n_ctx = N_PROMPT;
    quill_context *c = quill_context_new(m, &p);
    cr_assert_not_null(c, "%s", quill_last_error());
    cr_assert_eq(quill_context_set_lora(c, adapters, scales, n), QUILL_OK, "%s",
                 quill_last_error());
    quill_batch b = quill_batch_new(N_PROMPT);
    for (int i = 0; i < N_PROMPT; i++)
        quill_batch_add(&b, PROMPT[i], i, 0, i == N_PROMPT - 1);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    memcpy(out, quill_logits(c, N_PROMPT - 1), V_STORIES * sizeof *out);
    quill_batch_free(&b);
    quill_context_free(c);
}

/* libquill: quill_lora_load and quill_context_set_lora give the logits of infer_set_lora
 * (the engine's path, which llama.cpp's test above checks); two adapters add their terms
 * (the same file twice at scale 0.5 is the file at 1, up to rounding), and n = 0 takes
 * them away. An adapter of another model, and a bad file, are errors. */
Test(lora, the_public_api_loads_and_applies_adapters)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *path = adapter_path(dir, "adapter.gguf");
    test_write_adapter(path, model, &TEST_ADAPTER);
    quill_model *m = quill_model_load(model, NULL);
    cr_assert_not_null(m, "%s", quill_last_error());
    quill_lora *a = quill_lora_load(m, path);
    cr_assert_not_null(a, "%s", quill_last_error());
    float once[V_STORIES], twice[V_STORIES], none[V_STORIES];
    float *engine = logits_of(model, path, PROMPT, N_PROMPT);
    float *base = logits_of(model, NULL, PROMPT, N_PROMPT);
    quill_lora *pair[2] = {a, a};
    const float halves[2] = {0.5f, 0.5f};
    api_logits(m, &a, NULL, 1, once);
    api_logits(m, pair, halves, 2, twice);
    api_logits(m, NULL, NULL, 0, none);
    const float *engine_last = engine + (size_t)(N_PROMPT - 1) * V_STORIES;
    const float *base_last = base + (size_t)(N_PROMPT - 1) * V_STORIES;
    int compared = 0;
    for (int v = 0; v < V_STORIES; v++, compared++) {
        cr_assert(once[v] == engine_last[v], "logit %d: %g, the engine's %g", v, once[v],
                  engine_last[v]);
        cr_assert(none[v] == base_last[v], "logit %d without adapters: %g, base %g", v, none[v],
                  base_last[v]);
    }
    cr_assert_eq(compared, V_STORIES);
    cr_assert_neq(memcmp(once, none, sizeof once), 0);
    cr_assert_leq(max_abs_diff(twice, once, V_STORIES), 1e-4f);

    SHARED_FILE_OR_SKIP(other_model, "models/qtest-f32.gguf");
    quill_model *other = quill_model_load(other_model, NULL);
    cr_assert_not_null(other, "%s", quill_last_error());
    quill_context *c = quill_context_new(other, NULL);
    cr_assert_eq(quill_context_set_lora(c, &a, NULL, 1), QUILL_ERROR);
    cr_expect(strstr(quill_last_error(), "another model's"), "%s", quill_last_error());
    cr_assert_null(quill_lora_load(other, path));
    cr_expect(strstr(quill_last_error(), "do not fit"), "%s", quill_last_error());
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_FILE);
    quill_context_free(c);
    quill_model_free(other);
    free(engine);
    free(base);
    quill_lora_free(a);
    quill_model_free(m);
}

/* quill generate --lora: the text llama-cli writes for the same adapter and scale (both
 * greedy); --lora-scale pairs with --lora in order, so the adapter given twice at 0.25 each
 * writes the text of once at 0.5, which is not the base model's text. */
Test(lora, generate_with_lora_writes_llama_clis_text, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *path = adapter_path(dir, "adapter.gguf");
    test_write_adapter(path, model, &TEST_ADAPTER);
    const char *common = "--prompt 'Once upon a time' -n 16 --temperature 0 --no-echo "
                         "--cache-type f32";
    char *once, *twice, *base, *messages;
    int status;
    quill_stdout(&once, &messages, &status, "generate %s %s --lora %s --lora-scale 0.5", model,
                 common, path);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    quill_stdout(&twice, &messages, &status, "generate %s %s --lora %s --lora %s --lora-scale "
                                             "0.25 0.25",
                 model, common, path, path);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    quill_stdout(&base, &messages, &status, "generate %s %s", model, common);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    cr_assert_gt(strlen(once), 10, "'%s'", once);
    cr_assert_str_eq(twice, once);
    cr_assert_str_neq(base, once);
    const char *llama_cli = test_llama_cpp_tool("llama-cli");
    if (llama_cli) {
        char command[8192], *theirs;
        snprintf(command, sizeof command,
                 "%s -m %s --lora-scaled %s 0.5 -p 'Once upon a time' -n 16 --temp 0 -no-cnv "
                 "-t 2 -ctk f32 -ctv f32 --no-warmup < /dev/null 2>/dev/null",
                 llama_cli, model, path);
        cr_assert_eq(test_run_capture(command, &theirs), 0, "%s", theirs);
        cr_expect(strstr(theirs, once), "llama-cli wrote '%s', quill '%s'", theirs, once);
        free(theirs);
    } else {
        cr_log_info("llama-cli is absent: quill's text was not compared with it");
    }
    /* quill chat takes the same flags: its reply to the prompt, on a model without a chat
     * template (the text as it is), starts as generate's text */
    char command[8192], *chat;
    snprintf(command, sizeof command,
             "printf 'Once upon a time\\n' | %s chat %s -n 16 --temperature 0 --cache-type f32 "
             "--lora %s --lora-scale 0.5 2>&1",
             test_quill_bin(), model, path);
    cr_assert_eq(test_run_capture(command, &chat), 0, "%s", chat);
    once[12] = '\0';
    cr_expect(strstr(chat, once), "quill chat replied '%s', generate began '%s'", chat, once);
    free(chat);
    free(once);
    free(twice);
    free(base);
    expect_clean_error("1 --lora-scale value for 0 --lora adapters",
                       "generate %s %s --lora-scale 2", model, common);
    expect_clean_error("not an adapter", "generate %s %s --lora %s", model, common, model);
}

/* The largest |a - b| over n floats. */
static float max_abs_diff(const float *a, const float *b, int n)
{
    float worst = 0.0f;
    for (int i = 0; i < n; i++)
        worst = fabsf(a[i] - b[i]) > worst ? fabsf(a[i] - b[i]) : worst;
    return worst;
}

/* Merges the adapter into model (quill merge, with `flags`), and compares the merged file
 * with the model plus the adapter at scale 1: every logit of the prompt within max_error,
 * and the first n_tokens greedy tokens equal up to a near tie (two best logits within
 * twice max_error, where the two may part; at least half of them before one). Returns the
 * largest logit difference seen. */
static float merged_against_adapter(const char *model, const char *adapter, const char *flags,
                                    float max_error, int n_tokens)
{
    char merged[512];
    snprintf(merged, sizeof merged, "%s/merged.gguf", test_make_tmpdir());
    quill_ok("merge %s %s %s %s", model, adapter, merged, flags);
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model, &m, &tok, &err), 0, "%s", err.msg);
    int V = m.config.vocab_size;
    tokenizer_free(&tok);
    model_free(&m);
    float *adapted = logits_of(model, adapter, PROMPT, N_PROMPT);
    float *written = logits_of(merged, NULL, PROMPT, N_PROMPT);
    float worst = max_abs_diff(adapted, written, N_PROMPT * V);
    cr_assert_leq(worst, max_error, "%s%s: merged logits differ by up to %g", model, flags,
                  worst);
    int ours[64], theirs[64];
    int n = n_tokens > 0 ? test_quill_greedy_lora(model, adapter, 1.0f, PROMPT, N_PROMPT,
                                                  n_tokens, 2 * max_error, ours)
                         : 0;
    cr_assert_geq(n, n_tokens / 2, "%s: only %d greedy tokens before a near tie", model, n);
    cr_assert_eq(test_quill_greedy(merged, PROMPT, N_PROMPT, n, 0.0f, theirs), n);
    for (int t = 0; t < n; t++)
        cr_assert_eq(theirs[t], ours[t], "%s%s: greedy token %d is %d merged, %d with --lora",
                     model, flags, t, theirs[t], ours[t]);
    cr_log_info("%s %s: logits within %g; %d greedy tokens equal", model, flags, worst, n);
    free(adapted);
    free(written);
    return worst;
}

/* quill merge writes W + scale * B A into the weights. In F32 the merged model's logits are
 * the adapted model's up to float rounding (W x + B (A x) and (W + B A) x sum in other
 * orders): within 1e-4 (1.4e-5 seen), and 32 greedy tokens equal. Stored as Q8_0, the merged weights take Q8_0's rounding once more, and the
 * activations are rounded to 8 bits as for any Q8_0 file: the error allowed is what Q8_0
 * itself costs this model, measured between llama.cpp's qtest-Q8_0 and qtest-f32 files
 * (0.17), times 1.5. Two ways there: a Q8_0 base merged in its own type (the default), and
 * the F32 base merged with --type Q8_0. qtest's best logits lie close together (it is a
 * small random model), so there the logits, not greedy tokens, are compared. */
Test(lora, merge_gives_the_adapted_models_logits, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(stories, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(q8, "models/qtest-Q8_0.gguf");
    SHARED_FILE_OR_SKIP(qf32, "models/qtest-f32.gguf");
    const char *dir = test_make_tmpdir();
    const char *for_stories = adapter_path(dir, "stories.gguf");
    const char *for_qtest = adapter_path(dir, "qtest.gguf");
    test_write_adapter(for_stories, stories, &TEST_ADAPTER);
    test_write_adapter(for_qtest, qf32, &TEST_ADAPTER);
    float *exact = logits_of(qf32, NULL, PROMPT, N_PROMPT);
    float *rounded = logits_of(q8, NULL, PROMPT, N_PROMPT);
    float q8_cost = max_abs_diff(exact, rounded, N_PROMPT * V_STORIES);
    float f32 = merged_against_adapter(stories, for_stories, "", 1e-4f, 32);
    float q8_0 = merged_against_adapter(q8, for_qtest, "", 1.5f * q8_cost, 0);
    float to_q8 = merged_against_adapter(qf32, for_qtest, "--type Q8_0", 1.5f * q8_cost, 0);
    cr_log_info("largest logit differences: F32 %g; Q8_0 %g and F32 -> Q8_0 %g, where Q8_0 "
                "itself costs %g",
                f32, q8_0, to_q8, q8_cost);
    free(exact);
    free(rounded);
}

/* quill merge refuses, before writing anything, to write over the model or the adapter it
 * reads, and an adapter for another model; no OUT is left behind. */
Test(lora, merge_refuses_what_it_cannot_do_and_writes_nothing)
{
    SHARED_FILE_OR_SKIP(stories, "models/stories260K.gguf");
    SHARED_FILE_OR_SKIP(qtest, "models/qtest-f32.gguf");
    const char *dir = test_make_tmpdir();
    const char *adapter = adapter_path(dir, "adapter.gguf");
    const char *out = adapter_path(dir, "out.gguf");
    test_write_adapter(adapter, stories, &TEST_ADAPTER);
    expect_clean_error("the same file", "merge %s %s %s", stories, adapter, adapter);
    expect_clean_error("do not fit 'output.weight' [256, 512]", "merge %s %s %s", qtest, adapter,
                       out);
    expect_clean_error("unknown type 'Q9'", "merge %s %s %s --type Q9", stories, adapter, out);
    cr_assert_neq(access(out, F_OK), 0, "%s was written", out);
}
