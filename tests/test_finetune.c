/* quill finetune: LoRA training on a frozen base. The backward pass against finite
 * differences (the input gradient through each stored type, the gradients of A and B
 * through whole models), the first step's loss against the base model's, and the command
 * end to end: a run that learns, an adapter quill and llama.cpp load, resume bit for bit,
 * bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "grad_check.h"
#include "infer.h"
#include "loader.h"
#include "lora_train.h"
#include "matmul.h"
#include "quant.h"
#include "rng.h"
#include "test_util.h"

/* ---- the input gradient through a frozen weight ---------------------------------------- */

enum { PROJ_N = 3, PROJ_IN = 256, PROJ_OUT = 2 * LORA_TILE_ROWS + 5 };

/* A projection y = W x with W stored as `type`, and its reference: W dequantized row by
 * row (quant_dequantize_row, the reference decoder), multiplied in double. */
typedef struct {
    uint32_t type;
    void *stored;  /* (OUT, IN) in type */
    float *w;      /* (OUT, IN) the same, dequantized */
    float x[PROJ_N * PROJ_IN];
    float dy[PROJ_N * PROJ_OUT]; /* the loss is sum(dy * y): its gradient in y */
} Projection;

static void projection_init(Projection *p, uint32_t type)
{
    p->type = type;
    size_t row_bytes = quant_row_bytes(type, PROJ_IN);
    p->stored = malloc(row_bytes * PROJ_OUT);
    p->w = malloc(sizeof(float) * PROJ_OUT * PROJ_IN);
    float *row = malloc(sizeof(float) * PROJ_IN);
    for (int o = 0; o < PROJ_OUT; o++) {
        fill_uniform(row, PROJ_IN, -1.0f, 1.0f, 100u + (unsigned)o);
        quant_quantize_row(type, row, (char *)p->stored + o * row_bytes, PROJ_IN);
        quant_dequantize_row(type, (char *)p->stored + o * row_bytes, p->w + o * PROJ_IN,
                             PROJ_IN);
    }
    free(row);
    fill_uniform(p->x, PROJ_N * PROJ_IN, -1.0f, 1.0f, 7);
    fill_uniform(p->dy, PROJ_N * PROJ_OUT, -1.0f, 1.0f, 8);
}

static double projection_loss(void *ctx)
{
    const Projection *p = ctx;
    double loss = 0.0;
    for (int n = 0; n < PROJ_N; n++)
        for (int o = 0; o < PROJ_OUT; o++) {
            double y = 0.0;
            for (int i = 0; i < PROJ_IN; i++)
                y += (double)p->w[o * PROJ_IN + i] * p->x[n * PROJ_IN + i];
            loss += p->dy[n * PROJ_OUT + o] * y;
        }
    return loss;
}

static void check_input_gradient(uint32_t type)
{
    Projection p;
    projection_init(&p, type);
    WeightMatrix w = {type, p.stored, PROJ_OUT, PROJ_IN};
    float dx[PROJ_N * PROJ_IN], *tile = malloc(sizeof(float) * LORA_TILE_ROWS * PROJ_IN);
    /* beta = 1 adds: start from 1 everywhere and take it off again */
    for (int i = 0; i < PROJ_N * PROJ_IN; i++)
        dx[i] = 1.0f;
    linear_backward_input(dx, p.dy, PROJ_OUT, PROJ_N, &w, 1.0f, tile);
    for (int i = 0; i < PROJ_N * PROJ_IN; i++)
        dx[i] -= 1.0f;
    const GradTolerance tol = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-4};
    grad_check(gguf_tensor_type_name(type), p.x, dx, PROJ_N * PROJ_IN, 1, projection_loss, &p,
               tol);
    free(tile);
    free(p.stored);
    free(p.w);
}

Test(finetune, input_gradient_through_f32) { check_input_gradient(GGML_TYPE_F32); }
Test(finetune, input_gradient_through_f16) { check_input_gradient(GGML_TYPE_F16); }
Test(finetune, input_gradient_through_q8_0) { check_input_gradient(GGML_TYPE_Q8_0); }
Test(finetune, input_gradient_through_q4_k) { check_input_gradient(GGML_TYPE_Q4_K); }

/* ---- whole models ----------------------------------------------------------------------- */

enum { RUN_B = 2, RUN_T = 12, RUN_RANK = 4 };

/* A quantized model's weights have two readings: as stored, which the forward pass
 * multiplies with quantized activations (a step function of them, whose finite differences
 * are noise), and dequantized to F32, the smooth function whose gradient the backward pass
 * computes (it multiplies by the dequantized rows). The finite differences run on the
 * second: the backward pass, on the stored weights, must match them. */
typedef struct {
    int n;
    WeightMatrix *where[64];
    WeightMatrix stored[64], f32[64];
} Readings;

typedef struct {
    Model model;
    Tokenizer tok;
    Readings readings;
    Activations acts;
    GradScratch scratch;
    LoraTrain lora;
    LoraSet set;
    float *grads;
    int tokens[RUN_B * RUN_T], targets[RUN_B * RUN_T];
} LoraRun;

static void lora_run_init(LoraRun *r, const char *path, float alpha)
{
    Error err;
    memset(r, 0, sizeof *r);
    cr_assert_eq(model_file_load(path, &r->model, &r->tok, &err), 0, "%s", err.msg);
    cr_assert_eq(activations_init(&r->acts, &r->model, RUN_B, RUN_T, &err), 0, "%s", err.msg);
    cr_assert_eq(grad_scratch_init(&r->scratch, &r->model, RUN_B, RUN_T, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lora_train_init(&r->lora, &r->model, RUN_RANK, alpha, LORA_TARGET_ALL, 11,
                                 RUN_B * RUN_T, &err),
                 0, "%s", err.msg);
    LoraUse use = {&r->lora.adapter, 1.0f};
    cr_assert_eq(lora_set_init(&r->set, &use, 1, RUN_B * RUN_T, &err), 0, "%s", err.msg);
    r->acts.lora = &r->set;
    r->grads = calloc(r->lora.n_params, sizeof(float));
    Rng rng;
    rng_seed(&rng, 5);
    int V = r->model.config.vocab_size;
    for (int i = 0; i < RUN_B * RUN_T; i++) {
        r->tokens[i] = (int)rng_below(&rng, (uint64_t)V);
        r->targets[i] = (int)rng_below(&rng, (uint64_t)V);
    }
}

static void readings_init(Readings *d, Model *m)
{
    d->n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        WeightMatrix *w = m->tensors[i].weight;
        if (w->type == GGML_TYPE_F32)
            continue;
        cr_assert_lt(d->n, 64);
        size_t row_bytes = quant_row_bytes(w->type, w->cols);
        float *rows = malloc(sizeof(float) * (size_t)w->rows * w->cols);
        for (int o = 0; o < w->rows; o++)
            quant_dequantize_row(w->type, (const char *)w->data + o * row_bytes,
                                 rows + (size_t)o * w->cols, w->cols);
        d->where[d->n] = w;
        d->stored[d->n] = *w;
        d->f32[d->n++] = (WeightMatrix){GGML_TYPE_F32, rows, w->rows, w->cols};
    }
}

static void readings_use(Readings *d, bool f32)
{
    for (int i = 0; i < d->n; i++)
        *d->where[i] = f32 ? d->f32[i] : d->stored[i];
}

static void lora_run_free(LoraRun *r)
{
    for (int i = 0; i < r->readings.n; i++)
        free((void *)r->readings.f32[i].data);
    free(r->grads);
    lora_set_free(&r->set);
    lora_train_free(&r->lora);
    grad_scratch_free(&r->scratch);
    activations_free(&r->acts);
    tokenizer_free(&r->tok);
    model_free(&r->model);
}

static double lora_run_loss(void *ctx)
{
    LoraRun *r = ctx;
    readings_use(&r->readings, true);
    model_forward(&r->model, &r->acts, r->tokens, RUN_B, RUN_T, 0);
    double loss = model_loss(&r->model, &r->acts, r->targets, RUN_B, RUN_T);
    readings_use(&r->readings, false);
    return loss;
}

/* Every B away from zero (a trained adapter), so that A's gradient, which is proportional
 * to B, is exercised; then dA and dB against finite differences, every stride-th entry of
 * each factor of the first and the last block. */
static void check_factor_gradients(const char *model_relative, GradTolerance tol, size_t stride)
{
    SHARED_FILE_OR_SKIP(path, model_relative);
    compute_set_threads(1);
    LoraRun r;
    lora_run_init(&r, path, 4.0f);
    for (int k = 0; k < r.lora.adapter.n_pairs; k++) {
        LoraPair *p = &r.lora.adapter.pairs[k];
        fill_uniform((float *)p->b.data, (size_t)p->b.rows * p->b.cols, -0.1f, 0.1f,
                     (unsigned)k + 1);
    }
    /* the forward on the F32 reading keeps the activations of the function the finite
     * differences measure; the backward then reads the stored weights */
    readings_init(&r.readings, &r.model);
    lora_run_loss(&r);
    lora_train_backward(&r.lora, &r.model, &r.acts, &r.scratch, r.grads, r.targets, RUN_B, RUN_T,
                        1.0f);
    int per_layer = r.lora.adapter.n_pairs / r.model.config.n_layers, checked = 0;
    for (int k = 0; k < r.lora.adapter.n_pairs; k++) {
        if (k >= per_layer && k < r.lora.adapter.n_pairs - per_layer)
            continue;
        LoraPair *p = &r.lora.adapter.pairs[k];
        size_t n_a = (size_t)p->a.rows * p->a.cols, n_b = (size_t)p->b.rows * p->b.cols;
        char what[96];
        snprintf(what, sizeof what, "%s lora_a", r.lora.names[k]);
        grad_check(what, (float *)p->a.data, r.grads + r.lora.offset[k], n_a, stride,
                   lora_run_loss, &r, tol);
        snprintf(what, sizeof what, "%s lora_b", r.lora.names[k]);
        grad_check(what, (float *)p->b.data, r.grads + r.lora.offset[k] + n_a, n_b, stride,
                   lora_run_loss, &r, tol);
        checked++;
    }
    cr_assert_eq(checked, 2 * per_layer, "compared %d pairs", checked);
    lora_run_free(&r);
}

Test(finetune, factor_gradients_f32_base, .timeout = 300)
{
    check_factor_gradients("models/stories260K.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 7);
}

Test(finetune, factor_gradients_q8_0_base, .timeout = 300)
{
    check_factor_gradients("models/qtest-Q8_0.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 61);
}

Test(finetune, factor_gradients_q4_k_base, .timeout = 300)
{
    check_factor_gradients("models/qtest-Q4_K_M.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 61);
}

/* Mean cross-entropy of (n, V) logits against targets, in double. */
static double mean_crossentropy(const float *logits, const int *targets, int n, int V)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * V;
        double max = row[0], z = 0.0;
        for (int v = 1; v < V; v++)
            max = row[v] > max ? row[v] : max;
        for (int v = 0; v < V; v++)
            z += exp(row[v] - max);
        sum += log(z) + max - row[targets[i]];
    }
    return sum / n;
}

/* LoRA starts with B = 0: the first forward of a fine-tune is the base model's, bit for bit
 * against the same pass without the adapter, and against the inference model's loss on the
 * same tokens (its KV-cache pass, a different attention path) to float rounding. */
static void check_first_forward(const char *model_relative)
{
    SHARED_FILE_OR_SKIP(path, model_relative);
    compute_set_threads(1);
    LoraRun r;
    lora_run_init(&r, path, 16.0f);
    int V = r.model.config.vocab_size, BT = RUN_B * RUN_T;
    size_t bytes = sizeof(float) * (size_t)BT * V;
    float *base = malloc(bytes);
    r.acts.lora = NULL;
    model_forward(&r.model, &r.acts, r.tokens, RUN_B, RUN_T, 0);
    memcpy(base, r.acts.logits, bytes);
    float base_loss = model_loss(&r.model, &r.acts, r.targets, RUN_B, RUN_T);
    r.acts.lora = &r.set;
    model_forward(&r.model, &r.acts, r.tokens, RUN_B, RUN_T, 0);
    cr_assert_eq(memcmp(base, r.acts.logits, bytes), 0, "the adapter with B = 0 changed logits");
    float lora_loss = model_loss(&r.model, &r.acts, r.targets, RUN_B, RUN_T);
    cr_assert_eq(lora_loss, base_loss, "loss %.9g with the adapter, %.9g without", lora_loss,
                 base_loss);

    /* the inference model: each sequence decoded into its own cache slot */
    InferContext ctx;
    Error err;
    InferParams p = {.n_seq = RUN_B, .n_ctx = RUN_T, .cache_type = GGML_TYPE_F32,
                     .all_logits = true};
    cr_assert_eq(infer_init(&ctx, &r.model, &p, &err), 0, "%s", err.msg);
    double sum = 0.0;
    for (int b = 0; b < RUN_B; b++) {
        cr_assert_eq(infer_decode(&ctx, b, r.tokens + b * RUN_T, RUN_T, &err), 0, "%s",
                     err.msg);
        sum += mean_crossentropy(infer_logits(&ctx, 0), r.targets + b * RUN_T, RUN_T, V);
    }
    double infer_loss = sum / RUN_B;
    cr_assert(fabs(infer_loss - base_loss) <= 1e-5 * fabs(infer_loss),
              "inference's loss %.9g, the fine-tune's first %.9g", infer_loss, base_loss);
    infer_free(&ctx);
    free(base);
    lora_run_free(&r);
}

Test(finetune, first_forward_is_the_base_f32) { check_first_forward("models/stories260K.gguf"); }
Test(finetune, first_forward_is_the_base_q4_k) { check_first_forward("models/qtest-Q4_K_M.gguf"); }

/* ---- the command ------------------------------------------------------------------------- */

/* The first `bytes` of tinyshakespeare, in a file of the test's own directory. */
static const char *shakespeare_sample(const char *dir, size_t bytes)
{
    const char *path = test_shared_path("data/tinyshakespeare.txt");
    if (!path) {
        if (test_in_ci())
            cr_assert_fail("../shared/data/tinyshakespeare.txt is missing");
        cr_skip_test("../shared/data/tinyshakespeare.txt is missing: test skipped");
    }
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &text, &len, &err), 0, "%s", err.msg);
    text[len < bytes ? len : bytes] = '\0';
    const char *sample = test_write_file(dir, "shakespeare.txt", text);
    free(text);
    return sample;
}

/* The val_loss of step `step` in DIR/log.jsonl (NAN when absent), the first one logged. */
static double logged_val_loss(const char *dir, int step)
{
    char path[4096], *log, key[48];
    size_t len;
    Error err;
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    cr_assert_eq(file_read_all(path, &log, &len, &err), 0, "%s", err.msg);
    snprintf(key, sizeof key, "{\"step\":%d,\"val_loss\":", step);
    const char *at = strstr(log, key);
    double loss = at ? strtod(at + strlen(key), NULL) : NAN;
    free(log);
    return loss;
}

/* llama-cli --lora's greedy tokens after the prompt are quill's (at least `least` of them
 * before a near tie of `margin`), and differ from the base model's. */
static void expect_llama_cpp_tokens(const char *llama_cli, const char *model,
                                    const char *adapter, const char *prompt, float margin,
                                    int least)
{
    int ours[32], base[32];
    int n = test_greedy_lora_equals_llama_cpp(llama_cli, model, adapter, 1.0f, prompt, 32,
                                              margin, ours);
    cr_expect_geq(n, least, "only %d tokens compared", n);
    int n_base = test_greedy_lora_equals_llama_cpp(llama_cli, model, NULL, 1.0f, prompt, n,
                                                   margin, base);
    int same = n_base < n ? n_base : n;
    cr_expect(memcmp(ours, base, (size_t)same * sizeof(int)) != 0,
              "the adapter's %d greedy tokens are the base model's", same);
}

static const char FINETUNE_FLAGS[] = "--seq-len 32 --batch-size 4 --lr 3e-3 --warmup 2 "
                                     "--eval-batches 4 --threads 2 --lora-rank 4";

/* Fine-tunes model on 8 KB of Shakespeare with FINETUNE_FLAGS and `flags`, into a new
 * directory: its path into run (4096 bytes), its adapter's into adapter (4200). */
static void finetune_sample(const char *model, const char *flags, char *run, char *adapter)
{
    const char *dir = test_make_tmpdir();
    const char *text = shakespeare_sample(dir, 8192);
    snprintf(run, 4096, "%s/run", dir);
    snprintf(adapter, 4200, "%s/adapter.gguf", run);
    quill_ok("finetune %s --data %s --out %s %s %s", model, text, run, flags, FINETUNE_FLAGS);
}

/* stories260K (children's stories) on 8 KB of Shakespeare: the validation loss on the same
 * windows falls from the base model's at step 0; the adapter loads in quill generate and
 * gives llama.cpp's greedy tokens through llama-cli --lora. */
Test(finetune, learns_and_writes_an_adapter_llama_cpp_loads, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char run[4096], adapter[4200];
    finetune_sample(model, "--steps 30 --eval-every 15", run, adapter);
    double before = logged_val_loss(run, 0), after = logged_val_loss(run, 15);
    cr_assert(isfinite(before) && isfinite(after), "val losses %g and %g", before, after);
    cr_expect_lt(after, before - 0.2, "val loss %g at step 0, %g at step 15", before, after);

    char *out;
    cr_assert_eq(quill(&out, "generate %s --lora %s --prompt 'ROMEO:' --max-tokens 8 "
                             "--temperature 0",
                       model, adapter),
                 0, "%s", out);
    free(out);
    const char *llama_cli = test_llama_cpp_tool("llama-cli");
    if (!llama_cli)
        cr_skip_test("llama.cpp's llama-cli is absent: the adapter was loaded by quill only");
    expect_llama_cpp_tokens(llama_cli, model, adapter, "ROMEO:", 2e-4f, 16);
}

/* The same on a quantized base, qtest-Q8_0 (a small random model): both programs multiply
 * the Q8_0 weights with activations rounded to Q8_0, in sums of their own orders, so tokens
 * are compared up to a near tie of 2e-3, as tests/test_lora.c does. */
Test(finetune, an_adapter_on_a_q8_0_base_gives_llama_clis_tokens, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/qtest-Q8_0.gguf");
    char run[4096], adapter[4200];
    finetune_sample(model, "--steps 6 --eval-every 0", run, adapter);
    LLAMA_CPP_TOOL_OR_SKIP(llama_cli, "llama-cli");
    expect_llama_cpp_tokens(llama_cli, model, adapter, "Once upon a time", 2e-3f, 8);
}

/* N steps straight, and K steps then --resume to N: the same adapter, bit for bit (the
 * schedule's --decay-steps N given to both, as a run stopped at K would have had it). */
Test(finetune, resume_is_bit_exact, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *text = shakespeare_sample(dir, 8192);
    char straight[4096], resumed[4096];
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed", dir);
    quill_ok("finetune %s --data %s --out %s --steps 8 --decay-steps 8 --eval-every 0 "
             "--grad-accum 2 %s", model,
             text, straight, FINETUNE_FLAGS);
    quill_ok("finetune %s --data %s --out %s --steps 3 --decay-steps 8 --eval-every 0 "
             "--grad-accum 2 %s", model,
             text, resumed, FINETUNE_FLAGS);
    quill_ok("finetune --resume %s --steps 8", resumed);
    char *out;
    cr_assert_eq(quill(&out, "finetune --resume %s --steps 8", resumed), 0, "%s", out);
    cr_expect(strstr(out, "already at step 8: nothing to do"), "%s", out);
    free(out);
    char *a, *b;
    size_t len_a, len_b;
    Error err;
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter.gguf", straight);
    cr_assert_eq(file_read_all(path, &a, &len_a, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/adapter.gguf", resumed);
    cr_assert_eq(file_read_all(path, &b, &len_b, &err), 0, "%s", err.msg);
    cr_assert_eq(len_a, len_b);
    cr_assert_eq(memcmp(a, b, len_a), 0, "the resumed run's adapter differs");
    free(a);
    free(b);
}

/* Bad input: one clear message each, nothing written. */
Test(finetune, bad_input_is_one_clear_error)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *text = test_write_file(dir, "text.txt", "Some text to learn from.\n");
    expect_clean_error("unknown flag --lora-rnk", "finetune %s --data %s --out %s/a --lora-rnk 4",
                       model, text, dir);
    expect_clean_error("--data /nonexistent/text.txt: no such file",
                       "finetune %s --data /nonexistent/text.txt --out %s/b", model, dir);
    expect_clean_error("no projection 'query'",
                       "finetune %s --data %s --out %s/c --lora-targets q,query", model, text, dir);
    expect_clean_error("no finetune_state to resume from", "finetune --resume %s", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/c", dir);
    cr_expect(!path_is_directory(path), "a failed start left %s behind", path);
}
