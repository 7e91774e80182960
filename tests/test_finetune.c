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

#include "chat.h"
#include "../train/chat_data.h"
#include "fileio.h"
#include "grad_check.h"
#include "infer.h"
#include "loader.h"
#include "lora_train.h"
#include "matmul.h"
#include "ops.h"
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
static void check_factor_gradients(const char *model_relative, GradTolerance tol, size_t stride,
                                   int ignore_every, float dropout)
{
    SHARED_FILE_OR_SKIP(path, model_relative);
    compute_set_threads(1);
    LoraRun r;
    lora_run_init(&r, path, 4.0f);
    if (dropout > 0.0f) { /* masks fixed by the seed: the loss is a smooth function again */
        Error err;
        cr_assert_eq(lora_set_dropout(&r.set, dropout, &err), 0, "%s", err.msg);
        r.set.dropout_seed = 77;
        r.lora.dropout = &r.set;
    }
    /* chat data's mask: every ignore_every-th target gets no loss (0: all count) */
    for (int i = 0; ignore_every > 0 && i < RUN_B * RUN_T; i += ignore_every)
        r.targets[i] = LOSS_IGNORED;
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
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 7, 0, 0.0f);
}

/* Dropout on the adapter's input (--lora-dropout), its masks held fixed. */
Test(finetune, factor_gradients_with_dropout, .timeout = 300)
{
    check_factor_gradients("models/stories260K.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 7, 0, 0.3f);
}

/* The masked loss of chat data (two targets in three ignored): its gradient is that of the
 * mean over the counted targets only. */
Test(finetune, factor_gradients_with_ignored_targets, .timeout = 300)
{
    check_factor_gradients("models/stories260K.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 7, 3, 0.0f);
}

Test(finetune, factor_gradients_q8_0_base, .timeout = 300)
{
    check_factor_gradients("models/qtest-Q8_0.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 61, 0, 0.0f);
}

Test(finetune, factor_gradients_q4_k_base, .timeout = 300)
{
    check_factor_gradients("models/qtest-Q4_K_M.gguf",
                           (GradTolerance){.eps = 1e-2, .atol = 3e-4, .rtol = 2e-2}, 61, 0, 0.0f);
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

/* Whether the adapters of two run directories are the same bytes. */
static bool same_adapters(const char *run_a, const char *run_b)
{
    char *a, *b, path[4200];
    size_t len_a, len_b;
    Error err;
    snprintf(path, sizeof path, "%s/adapter.gguf", run_a);
    cr_assert_eq(file_read_all(path, &a, &len_a, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/adapter.gguf", run_b);
    cr_assert_eq(file_read_all(path, &b, &len_b, &err), 0, "%s", err.msg);
    bool same = len_a == len_b && memcmp(a, b, len_a) == 0;
    free(a);
    free(b);
    return same;
}

/* N steps straight, and K steps then --resume to N: the same adapter, bit for bit (the
 * schedule's --decay-steps N given to both, as a run stopped at K would have had it). */
static void check_resume_is_bit_exact(const char *flags)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    const char *dir = test_make_tmpdir();
    const char *text = shakespeare_sample(dir, 8192);
    char straight[4096], resumed[4096];
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed", dir);
    quill_ok("finetune %s --data %s --out %s --steps 8 --decay-steps 8 --eval-every 0 "
             "--grad-accum 2 %s %s", model,
             text, straight, FINETUNE_FLAGS, flags);
    quill_ok("finetune %s --data %s --out %s --steps 3 --decay-steps 8 --eval-every 0 "
             "--grad-accum 2 %s %s", model,
             text, resumed, FINETUNE_FLAGS, flags);
    quill_ok("finetune --resume %s --steps 8", resumed);
    char *out;
    cr_assert_eq(quill(&out, "finetune --resume %s --steps 8", resumed), 0, "%s", out);
    cr_expect(strstr(out, "already at step 8: nothing to do"), "%s", out);
    free(out);
    cr_assert(same_adapters(straight, resumed), "the resumed run's adapter differs");
}

Test(finetune, resume_is_bit_exact, .timeout = 300) { check_resume_is_bit_exact(""); }

/* With dropout, whose masks the resumed run draws again from the seed and the step. */
Test(finetune, resume_with_dropout_is_bit_exact, .timeout = 300)
{
    check_resume_is_bit_exact("--lora-dropout 0.1");
}

/* A fine-tune's adapter is the same bits on 1 thread and on 2: the thread governor may
 * change the count between steps of a run on a busy machine (src/governor.h), so no kernel
 * of the step may sum in an order that depends on it. Batches of 8 x 64 tokens, so that the
 * products are large enough to be shared between threads. */
static void check_threads_agree(const char *model_relative)
{
    SHARED_FILE_OR_SKIP(model, model_relative);
    const char *dir = test_make_tmpdir();
    const char *text = shakespeare_sample(dir, 8192);
    char runs[2][4096];
    for (int threads = 1; threads <= 2; threads++) {
        snprintf(runs[threads - 1], sizeof runs[0], "%s/threads%d", dir, threads);
        quill_ok("finetune %s --data %s --out %s --steps 3 --eval-every 0 --seq-len 64 "
                 "--batch-size 8 --lr 3e-3 --warmup 1 --lora-rank 4 --lora-dropout 0.1 "
                 "--threads %d",
                 model, text, runs[threads - 1], threads);
    }
    cr_expect(same_adapters(runs[0], runs[1]), "%s: 1 and 2 threads trained other adapters",
              model_relative);
}

Test(finetune, threads_agree_f32_base, .timeout = 300)
{
    check_threads_agree("models/stories260K.gguf");
}

Test(finetune, threads_agree_q8_0_base, .timeout = 300)
{
    check_threads_agree("models/qtest-Q8_0.gguf");
}

Test(finetune, threads_agree_q4_k_base, .timeout = 300)
{
    check_threads_agree("models/qtest-Q4_K_M.gguf");
}

/* --lora-dropout 0 is no dropout, bit for bit; 0.1 trains another adapter. */
Test(finetune, dropout_zero_is_no_dropout, .timeout = 300)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char none[4096], none_adapter[4200], zero[4096], zero_adapter[4200], some[4096],
        some_adapter[4200];
    const char *flags = "--steps 4 --eval-every 0";
    finetune_sample(model, flags, none, none_adapter);
    char with[256];
    snprintf(with, sizeof with, "%s --lora-dropout 0", flags);
    finetune_sample(model, with, zero, zero_adapter);
    snprintf(with, sizeof with, "%s --lora-dropout 0.1", flags);
    finetune_sample(model, with, some, some_adapter);
    cr_expect(same_adapters(none, zero), "--lora-dropout 0 changed the adapter");
    cr_expect(!same_adapters(none, some), "--lora-dropout 0.1 changed nothing");
}

/* The mask: about a fraction p of zeros, the rest x / (1 - p), the same for the same seed,
 * pair, row and column, another for another seed. */
Test(finetune, dropout_mask_drops_p_and_scales_the_rest)
{
    enum { N = 64, IN = 1024 };
    LoraPair pair = {.a = {GGML_TYPE_F32, NULL, 4, IN}};
    LoraAdapter adapter = {.pairs = &pair, .n_pairs = 1};
    LoraUse use = {&adapter, 1.0f};
    LoraSet set = {.max_rows = N, .n = 1, .uses = &use};
    Error err;
    cr_assert_eq(lora_set_dropout(&set, 0.25f, &err), 0, "%s", err.msg);
    set.dropout_seed = 42;
    float *x = malloc(sizeof(float) * N * IN), *again = malloc(sizeof(float) * N * IN);
    for (int i = 0; i < N * IN; i++)
        x[i] = 3.0f;
    lora_dropout_apply(&set, 5, set.dropped, x, N, IN);
    lora_dropout_apply(&set, 5, again, x, N, IN);
    int zeros = 0, kept = 0;
    for (int i = 0; i < N * IN; i++) {
        zeros += set.dropped[i] == 0.0f;
        kept += set.dropped[i] == 4.0f; /* 3 / (1 - 0.25) */
    }
    cr_expect_eq(zeros + kept, N * IN);
    cr_expect(fabs((double)zeros / (N * IN) - 0.25) < 0.01, "%d zeros of %d", zeros, N * IN);
    cr_expect_eq(memcmp(again, set.dropped, sizeof(float) * N * IN), 0);
    set.dropout_seed = 43;
    lora_dropout_apply(&set, 5, again, x, N, IN);
    cr_expect_neq(memcmp(again, set.dropped, sizeof(float) * N * IN), 0);
    free(x);
    free(again);
    free(set.dropped); /* the set borrows uses: not lora_set_free */
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

/* ---- chat data ---------------------------------------------------------------------------- */

static void add_chatml_template(GgufWriter *w)
{
    gguf_writer_add_str(w, "tokenizer.chat_template",
                        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                        "<|im_end|>\n{% endfor %}");
}

/* stories260K with a chatml template, in dir. */
static const char *chatml_stories(const char *dir)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    static char path[4096];
    snprintf(path, sizeof path, "%s/chatml.gguf", dir);
    test_gguf_copy(model, path, "tokenizer.chat_template", add_chatml_template);
    return path;
}

static const ChatMessage CONVERSATION[] = {
    {CHAT_ROLE_USER, "A cat?"},
    {CHAT_ROLE_ASSISTANT, "Tom was a cat."},
    {CHAT_ROLE_USER, "Then?"},
    {CHAT_ROLE_ASSISTANT, "He sat in the sun."},
};
enum { N_CONVERSATION = sizeof CONVERSATION / sizeof *CONVERSATION };

/* The text of the tokens that are (or are not) counted, in order. */
static void tokens_text(const Tokenizer *tok, const ChatTokens *t, bool counted, char *out,
                        size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->counted[i] == counted)
            len += tokenizer_token_bytes(tok, t->ids[i], out + len, cap - len);
    cr_assert_lt(len, cap);
    out[len] = '\0';
}

/* The mask counts exactly the assistant's replies with the end of their turns, as chatml
 * writes them (by hand here); everything else is the prompt the model reads. */
Test(finetune, chat_mask_counts_the_assistants_replies)
{
    const char *model = chatml_stories(test_make_tmpdir());
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model, &m, &tok, &err), 0, "%s", err.msg);
    cr_assert_eq(chat_family_from_gguf(m.file), CHAT_CHATML);
    ChatTokens t = {0};
    cr_assert_eq(chat_tokens_append(&t, CHAT_CHATML, &tok, CONVERSATION, N_CONVERSATION, false,
                                    &err), 0, "%s", err.msg);
    char text[4096];
    tokens_text(&tok, &t, true, text, sizeof text);
    cr_expect_str_eq(text, "Tom was a cat.<|im_end|>\n"
                           "He sat in the sun.<|im_end|>\n");
    tokens_text(&tok, &t, false, text, sizeof text);
    cr_expect_str_eq(text, " <|im_start|>user\nA cat?<|im_end|>\n"
                           "<|im_start|>assistant\n"
                           "<|im_start|>user\nThen?<|im_end|>\n"
                           "<|im_start|>assistant\n");
    chat_tokens_free(&t);
    cr_assert_eq(chat_tokens_append(&t, CHAT_CHATML, &tok, CONVERSATION, N_CONVERSATION, true,
                                    &err), 0, "%s", err.msg);
    size_t all = 0;
    for (size_t i = 0; i < t.n; i++)
        all += t.counted[i];
    cr_expect_eq(all, t.n, "--loss-on-all counts %zu of %zu tokens", all, t.n);
    chat_tokens_free(&t);
    tokenizer_free(&tok);
    model_free(&m);
}

/* The masked loss of a conversation is the mean of -log p over exactly the assistant's
 * tokens, p from the inference model's logits (its KV-cache pass); with every token
 * counted, the conversation's tokens are those of its formatted text as plain text. */
Test(finetune, chat_loss_is_the_mean_over_the_assistants_tokens, .timeout = 60)
{
    const char *model = chatml_stories(test_make_tmpdir());
    compute_set_threads(1);
    Model m;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(model, &m, &tok, &err), 0, "%s", err.msg);
    ChatTokens t = {0};
    cr_assert_eq(chat_tokens_append(&t, CHAT_CHATML, &tok, CONVERSATION, N_CONVERSATION, false,
                                    &err), 0, "%s", err.msg);
    int T = (int)t.n - 1, V = m.config.vocab_size;
    int *targets = malloc(sizeof(int) * T);
    for (int i = 0; i < T; i++)
        targets[i] = t.counted[i + 1] ? t.ids[i + 1] : LOSS_IGNORED;
    Activations acts;
    cr_assert_eq(activations_init(&acts, &m, 1, T, &err), 0, "%s", err.msg);
    model_forward(&m, &acts, t.ids, 1, T, 0);
    float loss = model_loss(&m, &acts, targets, 1, T);

    InferContext ctx;
    InferParams p = {.n_seq = 1, .n_ctx = T, .cache_type = GGML_TYPE_F32, .all_logits = true};
    cr_assert_eq(infer_init(&ctx, &m, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(infer_decode(&ctx, 0, t.ids, T, &err), 0, "%s", err.msg);
    double sum = 0.0;
    int counted = 0;
    for (int i = 0; i < T; i++)
        if (t.counted[i + 1]) {
            sum += mean_crossentropy(infer_logits(&ctx, 0) + (size_t)i * V, &t.ids[i + 1], 1, V);
            counted++;
        }
    cr_assert_gt(counted, 10);
    cr_assert_lt(counted, T / 2, "the prompts' tokens are counted too");
    double expected = sum / counted;
    cr_expect(fabs(loss - expected) <= 1e-5 * expected, "masked loss %.9g, by hand %.9g", loss,
              expected);

    /* the formatted text, tokenized whole as plain text, gives the same tokens */
    char *formatted;
    cr_assert_eq(chat_format(CHAT_CHATML, CONVERSATION, N_CONVERSATION, false, &formatted, &err),
                 0, "%s", err.msg);
    int *plain;
    size_t n_plain;
    EncodeOptions opt = {.add_bos = tok.add_bos, .parse_special = true};
    cr_assert_eq(tokenizer_encode_with(&tok, formatted, strlen(formatted), opt, &plain, &n_plain,
                                       &err), 0, "%s", err.msg);
    cr_assert_eq(n_plain, t.n);
    cr_expect_eq(memcmp(plain, t.ids, t.n * sizeof(int)), 0);
    free(plain);
    free(formatted);
    infer_free(&ctx);
    activations_free(&acts);
    free(targets);
    chat_tokens_free(&t);
    tokenizer_free(&tok);
    model_free(&m);
}

/* Writes n copies of the conversation as JSONL into dir/name, and its formatted text into
 * dir/text<i>.txt, one file each (a text file starts with bos, as a conversation does). */
static const char *chat_files(const char *dir, int n, char *text_args, size_t cap)
{
    static const char line[] =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"A cat?\"}, "
        "{\"role\": \"assistant\", \"content\": \"Tom was a cat.\"}, "
        "{\"role\": \"user\", \"content\": \"Then?\"}, "
        "{\"role\": \"assistant\", \"content\": \"He sat in the sun.\"}]}\n";
    char *jsonl = malloc(sizeof line * (size_t)n + 1), *formatted, name[32];
    jsonl[0] = '\0';
    Error err;
    cr_assert_eq(chat_format(CHAT_CHATML, CONVERSATION, N_CONVERSATION, false, &formatted, &err),
                 0, "%s", err.msg);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        strcat(jsonl, line);
        snprintf(name, sizeof name, "text%d.txt", i);
        used += (size_t)snprintf(text_args + used, cap - used, " %s",
                                 test_write_file(dir, name, formatted));
    }
    const char *path = test_write_file(dir, "chat.jsonl", jsonl);
    free(jsonl);
    free(formatted);
    return path;
}

/* End to end: quill finetune on chat JSONL with --loss-on-all evaluates the base to the
 * loss of the same conversations given as plain text; without it (the assistant's tokens
 * only) to another loss. */
Test(finetune, chat_data_with_loss_on_all_is_the_formatted_texts_loss, .timeout = 120)
{
    const char *dir = test_make_tmpdir(), *model = chatml_stories(dir);
    char texts[4096];
    const char *jsonl = chat_files(dir, 12, texts, sizeof texts);
    const char *flags = "--steps 1 --seq-len 16 --batch-size 2 --eval-every 1 --eval-batches 4 "
                        "--threads 1";
    quill_ok("finetune %s --data %s --out %s/all --loss-on-all %s", model, jsonl, dir, flags);
    quill_ok("finetune %s --data%s --out %s/text %s", model, texts, dir, flags);
    quill_ok("finetune %s --data %s --out %s/masked %s", model, jsonl, dir, flags);
    char run[4096];
    snprintf(run, sizeof run, "%s/all", dir);
    double all = logged_val_loss(run, 0);
    snprintf(run, sizeof run, "%s/text", dir);
    double text = logged_val_loss(run, 0);
    snprintf(run, sizeof run, "%s/masked", dir);
    double masked = logged_val_loss(run, 0);
    cr_assert(isfinite(all) && isfinite(masked), "val losses %g, %g", all, masked);
    cr_expect_eq(all, text, "--loss-on-all %.9g, the formatted text %.9g", all, text);
    cr_expect_neq(masked, all, "the mask changed nothing: %.9g", masked);
}

/* A line that is not a conversation: one error naming the file's line; a base without a
 * chat template, and chat data beside text, are refused. */
Test(finetune, a_bad_chat_line_is_an_error_naming_it, .timeout = 60)
{
    const char *dir = test_make_tmpdir(), *model = chatml_stories(dir);
    SHARED_FILE_OR_SKIP(plain_model, "models/stories260K.gguf");
    const char *good = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Hello\"}]}\n";
    char text[1024];
    snprintf(text, sizeof text, "%s\n%s{\"messages\": [{\"role\": \"user\"}]}\n", good, good);
    const char *no_content = test_write_file(dir, "no_content.jsonl", text);
    expect_clean_error("no_content.jsonl: line 4: messages[0].content must be a string",
                       "finetune %s --data %s --out %s/a", model, no_content, dir);
    snprintf(text, sizeof text, "%s{\"messages\": [\n", good);
    const char *not_json = test_write_file(dir, "not_json.jsonl", text);
    expect_clean_error("not_json.jsonl: line 2: not valid JSON",
                       "finetune %s --data %s --out %s/b", model, not_json, dir);
    snprintf(text, sizeof text, "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n");
    const char *robot = test_write_file(dir, "robot.jsonl", text);
    expect_clean_error("robot.jsonl: line 1: messages[0].role must be",
                       "finetune %s --data %s --out %s/c", model, robot, dir);
    char chat[4096];
    snprintf(chat, sizeof chat, "%s", test_write_file(dir, "chat.jsonl", good));
    expect_clean_error("has no chat template that quill knows",
                       "finetune %s --data %s --out %s/d", plain_model, chat, dir);
    const char *plain = test_write_file(dir, "plain.txt", "Some text.\n");
    expect_clean_error("plain.txt: not .jsonl, beside chat data (.jsonl)",
                       "finetune %s --data %s %s --out %s/e", model, plain, chat, dir);
}
