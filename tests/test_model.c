/* The whole model: its gradient against finite differences, its step-0 loss, the KV-cache
 * path against the full-sequence path, thread-count independence, and its logits against
 * llama.cpp's on real GGUF models. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "gguf.h"
#include "grad_check.h"
#include "infer.h"
#include "loader.h"
#include "matmul.h"
#include "model.h"
#include "rng.h"
#include "test_util.h"

/* A model small enough to check every parameter: grouped-query attention (4 heads, 2 kv
 * heads), two blocks, an untied output. */
static ModelConfig tiny_config(void)
{
    return (ModelConfig){.n_layers = 2, .dim = 16, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 24,
                         .vocab_size = 11, .context = 8, .rope_base = 10000.0f,
                         .norm_eps = 1e-5f, .tie_embeddings = false};
}

enum { TINY_B = 2, TINY_T = 6 };

typedef struct {
    Model model;
    Activations acts;
    GradScratch scratch;
    float *grads;
    ParamViews grad_views;
    int B, T;
    int *tokens, *targets; /* (B, T) */
} TinyRun;

/* Parameters away from their special initial values (zero output, unit norms), so that
 * every gradient is exercised. */
static void tiny_run_init(TinyRun *r, ModelConfig c, uint64_t seed, int B, int T)
{
    Error err;
    r->B = B;
    r->T = T;
    cr_assert_eq(model_init(&r->model, &c, &err), 0, "%s", err.msg);
    model_init_params(&r->model, seed);
    Rng rng;
    rng_seed(&rng, seed + 1);
    for (int i = 0; i < r->model.n_tensors; i++) {
        ParamTensor *t = &r->model.tensors[i];
        for (int j = 0; j < t->rows * t->cols; j++) {
            if (t->kind == PARAM_NORM)
                t->data[j] = 0.8f + 0.4f * rng_uniform(&rng);
            else if (t->kind == PARAM_OUTPUT)
                t->data[j] = 0.3f * rng_normal(&rng);
            else
                t->data[j] *= 10.0f; /* larger weights: larger, easier to measure gradients */
        }
    }
    cr_assert_eq(activations_init(&r->acts, &r->model, B, T, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(grad_scratch_init(&r->scratch, &r->model, B, T, &err), 0, "%s", err.msg);
    r->grads = calloc(r->model.n_params, sizeof(float));
    cr_assert_eq(param_views_init(&r->grad_views, &r->model, r->grads, &err), 0, "%s", err.msg);
    r->tokens = malloc((size_t)B * T * sizeof(int));
    r->targets = malloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) {
        r->tokens[i] = (int)rng_below(&rng, (uint64_t)c.vocab_size);
        r->targets[i] = (int)rng_below(&rng, (uint64_t)c.vocab_size);
    }
}

static void tiny_run_free(TinyRun *r)
{
    model_free(&r->model);
    activations_free(&r->acts);
    grad_scratch_free(&r->scratch);
    param_views_free(&r->grad_views);
    free(r->grads);
    free(r->tokens);
    free(r->targets);
}

static double tiny_loss(void *p)
{
    TinyRun *r = p;
    model_forward(&r->model, &r->acts, r->tokens, r->B, r->T, 0);
    return model_loss(&r->model, &r->acts, r->targets, r->B, r->T);
}

static float tiny_gradient(TinyRun *r)
{
    /* NaN where model_backward must write: a gradient it left out stays NaN and fails
     * the comparison with finite differences */
    for (size_t i = 0; i < r->model.n_params; i++)
        r->grads[i] = NAN;
    float loss = (float)tiny_loss(r);
    model_backward(&r->model, &r->acts, &r->scratch, &r->grad_views, r->tokens, r->targets,
                   r->B, r->T, 1.0f);
    return loss;
}

static void check_whole_model_gradient(ModelConfig c)
{
    compute_set_threads(1); /* thousands of tiny forwards: threads would only add overhead */
    TinyRun r;
    tiny_run_init(&r, c, 7, TINY_B, TINY_T);
    tiny_gradient(&r);
    const GradTolerance tol = {.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2};
    for (int i = 0; i < r.model.n_tensors; i++) {
        const ParamTensor *t = &r.model.tensors[i];
        grad_check(t->name, t->data, r.grads + t->offset, (size_t)t->rows * t->cols, 1, tiny_loss,
                   &r, tol);
    }
    tiny_run_free(&r);
}

Test(model, whole_gradient_matches_finite_differences)
{
    check_whole_model_gradient(tiny_config());
}

Test(model, whole_gradient_with_tied_embeddings_matches_finite_differences)
{
    ModelConfig c = tiny_config();
    c.tie_embeddings = true;
    c.n_kv_heads = 1;
    check_whole_model_gradient(c);
}

Test(model, step0_loss_is_near_ln_vocab)
{
    /* The documented initialisation predicts a near-uniform distribution. */
    const int vocabs[] = {11, 65, 512};
    for (int i = 0; i < 3; i++) {
        for (int tied = 0; tied < 2; tied++) {
            ModelConfig c = tiny_config();
            c.vocab_size = vocabs[i];
            c.dim = 64;
            c.tie_embeddings = tied;
            Model m;
            Activations a;
            Error err;
            cr_assert_eq(model_init(&m, &c, &err), 0, "%s", err.msg);
            model_init_params(&m, 1234);
            cr_assert_eq(activations_init(&a, &m, 4, 8, &err), 0);
            int tokens[32], targets[32];
            Rng rng;
            rng_seed(&rng, 99);
            for (int j = 0; j < 32; j++) {
                tokens[j] = (int)rng_below(&rng, (uint64_t)c.vocab_size);
                targets[j] = (int)rng_below(&rng, (uint64_t)c.vocab_size);
            }
            model_forward(&m, &a, tokens, 4, 8, 0);
            float loss = model_loss(&m, &a, targets, 4, 8);
            cr_expect(fabsf(loss - logf((float)c.vocab_size)) < 0.1f,
                      "V=%d tied=%d: step-0 loss %.4f, ln V = %.4f", c.vocab_size, tied, loss,
                      logf((float)c.vocab_size));
            activations_free(&a);
            model_free(&m);
        }
    }
}

/* Decoding token by token with the KV cache must give the logits of one full-sequence
 * forward, and so must a prompt processed in two chunks. */
Test(model, kv_cache_decoding_equals_full_forward)
{
    TinyRun r;
    ModelConfig c = tiny_config();
    tiny_run_init(&r, c, 21, TINY_B, TINY_T);
    model_forward(&r.model, &r.acts, r.tokens, TINY_B, TINY_T, 0);
    int V = c.vocab_size;
    Activations inf;
    Error err;
    InferenceShape shape = {.slots = TINY_B, .max_tokens = TINY_B * TINY_T, .n_ctx = TINY_T,
                            .all_logits = true};
    cr_assert_eq(activations_init_inference(&inf, &r.model, &shape, &err), 0, "%s", err.msg);
    int chunk = 2; /* first a 2-token prompt per sequence, then one token at a time */
    int prompt[TINY_B * 2];
    for (int b = 0; b < TINY_B; b++)
        memcpy(prompt + b * chunk, r.tokens + b * TINY_T, chunk * sizeof(int));
    model_forward(&r.model, &inf, prompt, TINY_B, chunk, 0);
    float worst = 0.0f;
    for (int b = 0; b < TINY_B; b++)
        for (int t = 0; t < chunk; t++)
            for (int v = 0; v < V; v++)
                worst = fmaxf(worst, fabsf(inf.logits[(b * chunk + t) * V + v] -
                                           r.acts.logits[(b * TINY_T + t) * V + v]));
    for (int pos = chunk; pos < TINY_T; pos++) {
        int step[TINY_B];
        for (int b = 0; b < TINY_B; b++)
            step[b] = r.tokens[b * TINY_T + pos];
        model_forward(&r.model, &inf, step, TINY_B, 1, pos);
        for (int b = 0; b < TINY_B; b++)
            for (int v = 0; v < V; v++)
                worst = fmaxf(worst, fabsf(inf.logits[b * V + v] -
                                           r.acts.logits[(b * TINY_T + pos) * V + v]));
    }
    cr_expect_lt(worst, 1e-5f, "cached decoding differs from the full forward by %g", worst);
    activations_free(&inf);
    tiny_run_free(&r);
}

/* A model whose head size (32) a Q8_0 cache can store, with one key/value head shared by
 * both query heads. */
static ModelConfig cache_config(void)
{
    return (ModelConfig){.n_layers = 2, .dim = 64, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 96,
                         .vocab_size = 19, .context = 16, .rope_base = 10000.0f,
                         .norm_eps = 1e-5f};
}

/* Largest |a - b| over the logits of n positions. */
static float logits_distance(const float *a, const float *b, size_t n)
{
    float worst = 0.0f;
    for (size_t i = 0; i < n; i++)
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
    return worst;
}

/* Token-by-token decoding through a cache stored as F32, F16 or Q8_0 gives the logits of
 * one full forward pass: exactly up to summation order with F32; within the rounding of
 * the stored keys and values otherwise. Relative to the largest logit: F16 keeps 11
 * significant bits (measured 5.5e-4); Q8_0 rounds each value to 1/254 of its block's
 * largest, and the test model's large weights make attention sharp, which amplifies the
 * rounding of the scores (measured 2.6e-2). test_ops.c checks that the cached path itself
 * is exact for the values the cache holds. */
Test(model, kv_cache_of_every_type_equals_the_full_forward)
{
    TinyRun r;
    ModelConfig c = cache_config();
    enum { T = 12 };
    tiny_run_init(&r, c, 31, 1, T);
    model_forward(&r.model, &r.acts, r.tokens, 1, T, 0);
    const struct {
        uint32_t type;
        float tolerance;
    } cases[] = {{GGML_TYPE_F32, 1e-6f}, {GGML_TYPE_F16, 2e-3f}, {GGML_TYPE_Q8_0, 5e-2f}};
    int V = c.vocab_size, compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Activations inf;
        Error err;
        InferenceShape shape = {.slots = 1, .max_tokens = 4, .n_ctx = T,
                                .kv_type = cases[i].type, .all_logits = true};
        cr_assert_eq(activations_init_inference(&inf, &r.model, &shape, &err), 0, "%s", err.msg);
        model_forward(&r.model, &inf, r.tokens, 1, 4, 0);
        float worst = logits_distance(inf.logits, r.acts.logits, 4 * (size_t)V);
        for (int pos = 4; pos < T; pos++) {
            model_forward(&r.model, &inf, &r.tokens[pos], 1, 1, pos);
            worst = fmaxf(worst, logits_distance(inf.logits, r.acts.logits + (size_t)pos * V, V));
        }
        float largest = 0.0f;
        for (int j = 0; j < T * V; j++)
            largest = fmaxf(largest, fabsf(r.acts.logits[j]));
        cr_expect_lt(worst, cases[i].tolerance * largest, "%s cache: logits differ by %g of %g",
                     gguf_tensor_type_name(cases[i].type), worst, largest);
        activations_free(&inf);
        compared++;
    }
    cr_assert_eq(compared, 3);
    tiny_run_free(&r);
}

/* Beam search and parallel samples share a prompt: it is decoded once into slot 0 and
 * copied into slot 1; then the two sequences go on with different tokens in one batch,
 * in the other order (row 0 uses slot 1). Each must equal its own full forward pass. */
Test(model, cache_slot_copies_continue_like_separate_sequences)
{
    TinyRun r;
    ModelConfig c = cache_config();
    enum { T = 8, PROMPT = 5 };
    tiny_run_init(&r, c, 41, 2, T);
    /* both rows start with the same prompt, then differ */
    memcpy(r.tokens + T, r.tokens, PROMPT * sizeof(int));
    model_forward(&r.model, &r.acts, r.tokens, 2, T, 0);
    int V = c.vocab_size;
    Activations inf;
    Error err;
    InferenceShape shape = {.slots = 2, .max_tokens = PROMPT, .n_ctx = T};
    cr_assert_eq(activations_init_inference(&inf, &r.model, &shape, &err), 0, "%s", err.msg);
    model_forward(&r.model, &inf, r.tokens, 1, PROMPT, 0); /* slot 0 */
    activations_cache_copy(&inf, &r.model, 0, 1, 0, PROMPT);
    float worst = 0.0f;
    const int slots[2] = {1, 0};
    for (int pos = PROMPT; pos < T; pos++) {
        int step[2] = {r.tokens[T + pos], r.tokens[pos]}; /* row 0: sequence 1 */
        const int positions[2] = {pos, pos}, out_rows[2] = {0, 1};
        ForwardRows rows = {.token = step, .pos = positions, .slot = slots, .n = 2,
                            .out_rows = out_rows, .n_out = 2, .logits = inf.logits};
        model_forward_rows(&r.model, &inf, &rows);
        worst = fmaxf(worst, logits_distance(inf.logits, r.acts.logits + (size_t)(T + pos) * V, V));
        worst = fmaxf(worst, logits_distance(inf.logits + V, r.acts.logits + (size_t)pos * V, V));
    }
    /* the batched products sum in another order than the full pass's: float rounding only */
    cr_expect_lt(worst, 1e-4f, "sequences continued from a copied slot differ by %g", worst);
    activations_free(&inf);
    tiny_run_free(&r);
}

/* One training step's loss and gradient, bit for bit, for 1 and 2 threads. */
static void check_thread_independence(GemmBackend backend)
{
    if (gemm_set_backend(backend) != 0)
        cr_skip_test("backend not built in");
    float *grads[2];
    float loss[2];
    /* large enough that gemm() shares its products among threads */
    ModelConfig c = tiny_config();
    c.dim = 256;
    c.ffn_dim = 512;
    c.vocab_size = 300;
    c.context = 32;
    for (int threads = 1; threads <= 2; threads++) {
        compute_set_threads(threads);
        TinyRun r;
        tiny_run_init(&r, c, 5, 4, 32);
        loss[threads - 1] = tiny_gradient(&r);
        grads[threads - 1] = malloc(r.model.n_params * sizeof(float));
        memcpy(grads[threads - 1], r.grads, r.model.n_params * sizeof(float));
        size_t n = r.model.n_params;
        tiny_run_free(&r);
        if (threads == 2) {
            cr_expect_eq(memcmp(&loss[0], &loss[1], sizeof(float)), 0, "loss %.9g vs %.9g",
                         loss[0], loss[1]);
            cr_expect_eq(memcmp(grads[0], grads[1], n * sizeof(float)), 0,
                         "gradients differ between 1 and 2 threads");
        }
    }
    free(grads[0]);
    free(grads[1]);
    compute_set_threads(0);
    gemm_set_backend(GEMM_BACKEND_BLAS);
}

Test(model, training_step_is_identical_for_1_and_2_threads_reference_matmul)
{
    check_thread_independence(GEMM_BACKEND_REFERENCE);
}

/* gemm() cuts a product into row parts that meet at whole kernel tiles (matmul.c), so the
 * BLAS path gives the same bits on any thread count under any OpenBLAS kernel. */
Test(model, training_step_is_identical_for_1_and_2_threads_blas)
{
    check_thread_independence(GEMM_BACKEND_BLAS);
}

/* ---- against llama.cpp ------------------------------------------------------------------ */


typedef struct {
    cJSON *root;
    int *prompt_tokens;
    int n_prompt;
    int *greedy;
    int n_greedy;
} LlamaReference;

static int *json_int_array(const cJSON *array, int *n)
{
    *n = cJSON_GetArraySize(array);
    int *out = malloc((size_t)(*n ? *n : 1) * sizeof(int));
    for (int i = 0; i < *n; i++)
        out[i] = cJSON_GetArrayItem(array, i)->valueint;
    return out;
}

static void reference_load(LlamaReference *r, const char *path)
{
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &text, &len, &err), 0, "%s", err.msg);
    r->root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(r->root, "%s: not JSON", path);
    r->prompt_tokens = json_int_array(cJSON_GetObjectItem(r->root, "prompt_tokens"), &r->n_prompt);
    r->greedy = json_int_array(cJSON_GetObjectItem(r->root, "greedy_tokens"), &r->n_greedy);
}

static void reference_free(LlamaReference *r)
{
    cJSON_Delete(r->root);
    free(r->prompt_tokens);
    free(r->greedy);
}

/* How a file's logits compare: positions compared, and how many of them have every logit
 * within ROW_AGREEMENT of llama.cpp's. */
typedef struct {
    int rows, rows_agreeing;
} LogitRows;

#define ROW_AGREEMENT 1e-3f

/* Our prompt tokens, logits at every position llama.cpp recorded (max |difference| <=
 * tolerance) and the greedy continuation, token for token. */
static LogitRows check_against_llama_cpp(const char *model_rel, const char *ref_rel,
                                         float tolerance, int min_greedy)
{
    SHARED_FILE_OR_SKIP(ref_path, ref_rel);
    LlamaReference ref;
    reference_load(&ref, ref_path);
    SHARED_FILE_OR_SKIP(model_path, model_rel);
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model_path, &m, &tok, &err), 0, "%s", err.msg);

    const char *prompt = cJSON_GetObjectItem(ref.root, "prompt")->valuestring;
    int *ids;
    size_t n_ids;
    cr_assert_eq(tokenizer_encode(&tok, prompt, strlen(prompt), true, &ids, &n_ids, &err), 0);
    cr_assert_eq((int)n_ids, ref.n_prompt, "prompt: %zu tokens, llama.cpp %d", n_ids,
                 ref.n_prompt);
    cr_assert_arr_eq(ids, ref.prompt_tokens, n_ids * sizeof(int), "prompt tokens differ");
    free(ids);

    int V = m.config.vocab_size, n_ctx = ref.n_prompt + ref.n_greedy;
    /* llama.cpp ran with a context larger than the model's when it needed one */
    Activations a;
    InferenceShape shape = {.slots = 1, .max_tokens = ref.n_prompt, .n_ctx = n_ctx,
                            .all_logits = true};
    cr_assert_eq(activations_init_inference(&a, &m, &shape, &err), 0, "%s",
                 err.msg);
    model_forward(&m, &a, ref.prompt_tokens, 1, ref.n_prompt, 0);
    float worst = 0.0f;
    LogitRows rows = {0, 0};
    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItem(ref.root, "logits"))
    {
        int pos = cJSON_GetObjectItem(entry, "pos")->valueint;
        const cJSON *values = cJSON_GetObjectItem(entry, "values");
        cr_assert_eq(cJSON_GetArraySize(values), V);
        float row_worst = 0.0f;
        for (int v = 0; v < V; v++)
            row_worst = fmaxf(row_worst, fabsf(a.logits[(size_t)pos * V + v] -
                                               (float)cJSON_GetArrayItem(values, v)->valuedouble));
        worst = fmaxf(worst, row_worst);
        rows.rows++;
        rows.rows_agreeing += row_worst <= ROW_AGREEMENT;
    }
    cr_assert_gt(rows.rows, 0, "%s has no logits to compare", ref_rel);
    cr_assert_gt(ref.n_greedy, 0, "%s has no greedy tokens to compare", ref_rel);
    cr_expect_leq(worst, tolerance, "%s: logits differ from llama.cpp's by up to %g", model_rel,
                  worst);
    cr_log_info("%s: max |logit - llama.cpp| = %g, %d of %d positions within %g", model_rel,
                worst, rows.rows_agreeing, rows.rows, ROW_AGREEMENT);

    /* Greedy decoding, token by token. Where every logit is within `near` of llama.cpp's
     * (what the prompt's logits showed, and at least ROW_AGREEMENT), the two argmaxes can
     * only differ when our two best logits are within 2 * near: from the first such
     * position on, the paths may legitimately part. A test that asks for every greedy token
     * (min_greedy == their number) compares them all regardless. */
    float near = fmaxf(worst, ROW_AGREEMENT);
    const float *logits = a.logits + (size_t)(ref.n_prompt - 1) * V;
    int compared = 0;
    for (int i = 0; i < ref.n_greedy; i++) {
        int best = 0, second = -1;
        for (int v = 1; v < V; v++) {
            if (logits[v] > logits[best]) {
                second = best;
                best = v;
            } else if (second < 0 || logits[v] > logits[second]) {
                second = v;
            }
        }
        if (min_greedy < ref.n_greedy && logits[best] - logits[second] < 2 * near)
            break;
        cr_assert_eq(best, ref.greedy[i], "%s: greedy token %d is %d, llama.cpp %d", model_rel, i,
                     best, ref.greedy[i]);
        compared++;
        if (i + 1 == ref.n_greedy || best == tok.eos_id)
            break;
        model_forward(&m, &a, &best, 1, 1, ref.n_prompt + i);
        logits = a.logits;
    }
    cr_log_info("%s: %d of %d greedy tokens compared", model_rel, compared, ref.n_greedy);
    cr_expect_geq(compared, min_greedy, "%s: only %d greedy tokens before a near tie", model_rel,
                  compared);
    activations_free(&a);
    tokenizer_free(&tok);
    model_free(&m);
    reference_free(&ref);
    return rows;
}

Test(llama_cpp, stories260k_logits_and_200_greedy_tokens)
{
    check_against_llama_cpp("models/stories260K.gguf", "models/stories260K.ref.json", 1e-4f,
                            200);
}

Test(llama_cpp, stories260k_second_prompt)
{
    check_against_llama_cpp("models/stories260K.gguf", "models/stories260K.ref2.json", 1e-4f,
                            60);
}

Test(llama_cpp, random_llama_f32)
{
    check_against_llama_cpp("models/qtest-f32.gguf", "models/qtest-f32.ref.json", 1e-4f, 16);
}

/* Every weight type multiplies activations in llama.cpp's format for it (quant.h): F16
 * and BF16 weights meet activations rounded to F16 and BF16, the 32-element blocks meet Q8_0
 * (Q4_0, Q5_0, Q8_0) or Q8_1 (Q4_1, Q5_1, whose minimum multiplies the block's stored sum),
 * the K-quants Q8_K, each with llama.cpp's scale and rounding. Rounded the same way, the
 * codes are the same integers on both sides and the logits agree to float rounding (5e-6).
 *
 * Not at every position, though. The two sides add their float sums in different orders,
 * so a value can differ in its last bit, and where it lies within that bit of a rounding
 * edge (between two codes, or two f16 values of a scale, a block sum or an activation) the
 * two sides round it apart: one 8-bit code moves the logits of its position, and of the
 * positions after it, by 0.01 to 0.08; 16-bit activations by about 1e-3. Edges are rare
 * and fall where the last bits decide: llama.cpp's own AVX2 build, which rounds every
 * activation as its AVX-512 build (which wrote these references) does, meets them at 6 of
 * the 60 positions of these files (0.049 on Q5_K_M, 0.0025 on F16) and agrees within 1e-6
 * at the other 54. So every logit must be within one edge (EDGE_8BIT, EDGE_16BIT) of
 * llama.cpp's, and 3/4 of the positions of all the files within 1e-3 (quill: 51 to 53 of
 * 60, on each ISA of an AVX-512 machine). A difference in the rounding itself shows at
 * every position of its files: before quill rounded as llama.cpp does, F16, BF16, Q4_0,
 * Q4_1, Q5_0 and Q5_1 agreed at none (0.004 to 0.12), 30 positions of 60. */
#define EDGE_8BIT 0.1f
#define EDGE_16BIT 1e-2f

static const struct {
    const char *file;
    float edge;
} LLAMA_CPP_CASES[] = {
    {"qtest-F16", EDGE_16BIT},   {"qtest-BF16", EDGE_16BIT},  {"qtest-Q8_0", EDGE_8BIT},
    {"qtest-Q4_0", EDGE_8BIT},   {"qtest-Q4_1", EDGE_8BIT},   {"qtest-Q5_0", EDGE_8BIT},
    {"qtest-Q5_1", EDGE_8BIT},   {"qtest-Q2_K", EDGE_8BIT},   {"qtest-Q3_K_M", EDGE_8BIT},
    {"qtest-Q4_K_M", EDGE_8BIT}, {"qtest-Q5_K_M", EDGE_8BIT}, {"qtest-Q6_K", EDGE_8BIT},
};

Test(llama_cpp, every_weight_type_rounds_as_llama_cpp)
{
    LogitRows all = {0, 0};
    int files = 0;
    for (size_t i = 0; i < sizeof LLAMA_CPP_CASES / sizeof *LLAMA_CPP_CASES; i++) {
        char model[64], ref[64];
        snprintf(model, sizeof model, "models/%s.gguf", LLAMA_CPP_CASES[i].file);
        snprintf(ref, sizeof ref, "models/%s.ref.json", LLAMA_CPP_CASES[i].file);
        LogitRows r = check_against_llama_cpp(model, ref, LLAMA_CPP_CASES[i].edge, 1);
        all.rows += r.rows;
        all.rows_agreeing += r.rows_agreeing;
        files++;
    }
    cr_assert_eq(files, 12);
    cr_assert_eq(all.rows, 60, "5 positions in each file");
    cr_expect_geq(4 * all.rows_agreeing, 3 * all.rows,
                  "only %d of %d positions have every logit within %g of llama.cpp's",
                  all.rows_agreeing, all.rows, ROW_AGREEMENT);
}

/* Its F16 weights, F32 norms and the 32,000-token vocabulary; logits at the last position. */
Test(llama_cpp, llama2_vocab_f16_last_position)
{
    check_against_llama_cpp("models/llama-2-tiny-random.gguf",
                            "models/llama-2-tiny-random.ref.json", EDGE_16BIT, 16);
}

Test(llama_cpp, tied_output_one_kv_head_rope_base_500000)
{
    check_against_llama_cpp("models/qtied-Q8_0.gguf", "models/qtied-Q8_0.ref.json", 1e-3f, 16);
}

/* ---- linear RoPE scaling ------------------------------------------------------------------ */

static void add_linear_scaling_2(GgufWriter *w)
{
    gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 2.0f);
}

/* The random llama with llama.rope.scaling linear 2 added, in a fresh directory (static). */
static const char *scaled_copy_of(const char *original)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/scaled.gguf", test_make_tmpdir());
    test_gguf_copy(original, path, "llama.rope.scaling", add_linear_scaling_2);
    return path;
}

/* Decodes tokens one at a time (one code path for every row) into a fresh F32 cache and
 * returns layer 0's keys: n rows of KVC floats (malloc'd). Layer 0's key at a position
 * depends only on the token there and the position's rotation. */
static float *layer0_keys(const char *path, const int *tokens, int n)
{
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(path, &m, &tok, &err), 0, "%s", err.msg);
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = n, .cache_type = GGML_TYPE_F32};
    cr_assert_eq(infer_init(&ctx, &m, &params, &err), 0, "%s", err.msg);
    for (int i = 0; i < n; i++)
        cr_assert_eq(infer_decode(&ctx, 0, &tokens[i], 1, &err), 0, "%s", err.msg);
    size_t bytes = (size_t)n * ctx.acts.kv_row_bytes; /* slot 0 of layer 0 comes first */
    float *keys = malloc(bytes);
    memcpy(keys, ctx.acts.kv_k, bytes);
    infer_free(&ctx);
    tokenizer_free(&tok);
    model_free(&m);
    return keys;
}

/* Linear scaling 2 divides positions by 2 before the rotation: a token at position 2p of
 * the scaled model gets the key the same token gets at position p without scaling, and at
 * odd positions keys the unscaled model never makes (half-way rotations). */
Test(model, linear_rope_scaling_2_turns_position_2p_like_position_p)
{
    SHARED_FILE_OR_SKIP(original_path, "models/qtest-f32.gguf");
    enum { N = 8 };
    int plain[N] = {1, 403, 407, 261, 378, 60, 421, 291}, spread[2 * N];
    for (int p = 0; p < N; p++)
        spread[2 * p] = spread[2 * p + 1] = plain[p];
    float *unscaled = layer0_keys(original_path, plain, N);
    float *scaled = layer0_keys(scaled_copy_of(original_path), spread, 2 * N);
    int kvc = 128; /* qtest: 2 kv heads of 64 */
    int compared = 0;
    for (int p = 0; p < N; p++) {
        cr_assert_arr_eq(scaled + (size_t)2 * p * kvc, unscaled + (size_t)p * kvc,
                         kvc * sizeof(float), "position %d scaled vs %d unscaled", 2 * p, p);
        if (p > 0)
            cr_assert(memcmp(scaled + (size_t)(2 * p - 1) * kvc, unscaled + (size_t)p * kvc,
                             kvc * sizeof(float)) != 0,
                      "position %d scaled turned like %d unscaled", 2 * p - 1, p);
        compared++;
    }
    cr_assert_eq(compared, N);
    free(unscaled);
    free(scaled);
}

/* llama.cpp runs the scaled file to quill's greedy tokens (F32: logits within 1e-4, so the
 * paths may only part after quill's two best logits come within 2e-4), and they are not the
 * unscaled file's tokens: the comparison sees the scaling. */
Test(llama_cpp, linear_rope_scaling_gives_llama_cpps_greedy_tokens, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(original_path, "models/qtest-f32.gguf");
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    int ours[32], unscaled[32];
    int n = test_greedy_equals_llama_cpp(llama_cli, scaled_copy_of(original_path),
                                         "Once upon a time", 32, 2e-4f, ours);
    cr_expect_geq(n, 8, "only %d tokens compared", n);
    int prompt[5] = {1, 403, 407, 261, 378}; /* "Once upon a time", as llama.cpp tokenizes it */
    int n_unscaled = test_quill_greedy(original_path, prompt, 5, n, 0.0f, unscaled);
    cr_assert_eq(n_unscaled, n);
    cr_expect(memcmp(ours, unscaled, (size_t)n * sizeof(int)) != 0,
              "the scaled model's %d greedy tokens are the unscaled model's", n);
}
