/* The training side in-process: schedule, optimizer, clipping and config parsing against
 * hand-computed values; gradient accumulation against one larger batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/config.h"
#include "../train/optimizer.h"
#include "../train/trainer.h"
#include "fileio.h"
#include "test_util.h"

/* ---- learning-rate schedule ----------------------------------------------------------- */

Test(schedule, warmup_then_cosine_then_floor)
{
    /* lr 1, min 0.1, warmup 9, decay at 109 */
    cr_expect_float_eq(lr_schedule(0, 1.0f, 0.1f, 9, 109), 0.1f, 1e-7f); /* 1/(9+1) */
    cr_expect_float_eq(lr_schedule(4, 1.0f, 0.1f, 9, 109), 0.5f, 1e-7f);
    cr_expect_float_eq(lr_schedule(9, 1.0f, 0.1f, 9, 109), 1.0f, 1e-7f);
    /* halfway through the cosine: (lr + min) / 2 */
    cr_expect_float_eq(lr_schedule(59, 1.0f, 0.1f, 9, 109), 0.55f, 1e-6f);
    /* a quarter: min + (lr - min) * (1 + cos(pi/4)) / 2 */
    cr_expect_float_eq(lr_schedule(34, 1.0f, 0.1f, 9, 109), 0.1f + 0.9f * 0.8535534f, 1e-6f);
    cr_expect_float_eq(lr_schedule(109, 1.0f, 0.1f, 9, 109), 0.1f, 1e-7f);
    cr_expect_float_eq(lr_schedule(500, 1.0f, 0.1f, 9, 109), 0.1f, 1e-7f);
}

/* ---- optimizers and clipping ---------------------------------------------------------- */

/* A one-block model whose parameters are all 1 and whose gradients are all 0.5. */
static void unit_model(Model *m)
{
    ModelConfig c = {.n_layers = 1, .dim = 4, .n_heads = 2, .n_kv_heads = 2, .ffn_dim = 4,
                     .vocab_size = 3, .context = 4, .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Error err;
    cr_assert_eq(model_init(m, &c, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] = 1.0f;
}

Test(optimizer, adamw_first_step_by_hand)
{
    /* m = 0.1 * 0.5 = 0.05, v = 0.05 * 0.25 = 0.0125 (beta2 0.95); bias-corrected they are
     * 0.5 and 0.25, so the Adam direction is 0.5 / sqrt(0.25) = 1. With lr 0.1 and decay
     * 0.1: decayed weights become 1 - 0.1 * (1 + 0.1) = 0.89, norm gains 1 - 0.1 = 0.9. */
    Model m;
    unit_model(&m);
    Optimizer o;
    Error err;
    cr_assert_eq(optimizer_init(&o, OPTIMIZER_ADAMW, m.n_params, &err), 0);
    o.weight_decay = 0.1f;
    float *grads = malloc(m.n_params * sizeof(float));
    for (size_t i = 0; i < m.n_params; i++)
        grads[i] = 0.5f;
    optimizer_step(&o, &m, grads, 1.0f, 0.1f, 0);
    cr_expect_float_eq(m.w.layers[0].attn_q[0], 0.89f, 1e-6f);
    cr_expect_float_eq(m.w.layers[0].attn_norm[0], 0.9f, 1e-6f);
    cr_expect_float_eq(m.w.output_norm[3], 0.9f, 1e-6f);
    cr_expect_float_eq(o.m[0], 0.05f, 1e-7f);
    cr_expect_float_eq(o.v[0], 0.0125f, 1e-7f);
    free(grads);
    optimizer_free(&o);
    model_free(&m);
}

Test(optimizer, sgd_step_by_hand)
{
    Model m;
    unit_model(&m);
    Optimizer o;
    Error err;
    cr_assert_eq(optimizer_init(&o, OPTIMIZER_SGD, m.n_params, &err), 0);
    o.weight_decay = 0.5f;
    float *grads = calloc(m.n_params, sizeof(float));
    grads[m.tensors[1].offset] = 4.0f; /* attn_norm[0], halved by the clipping scale */
    optimizer_step(&o, &m, grads, 0.5f, 0.1f, 0);
    cr_expect_float_eq(m.w.layers[0].attn_norm[0], 1.0f - 0.2f, 1e-6f); /* no decay on norms */
    cr_expect_float_eq(m.w.token_embd[0], 1.0f - 0.05f, 1e-6f);          /* decay only */
    free(grads);
    optimizer_free(&o);
    model_free(&m);
}

Test(optimizer, global_norm_and_clipping)
{
    float g[3] = {3.0f, 0.0f, 4.0f};
    double norm = grad_global_norm(g, 3);
    cr_expect_float_eq(norm, 5.0, 1e-12);
    cr_expect_float_eq(grad_clip_scale(norm, 1.0f), 0.2f, 1e-7f); /* (3, 0, 4) -> (0.6, 0, 0.8) */
    cr_expect_eq(grad_clip_scale(norm, 10.0f), 1.0f, "already below the limit");
    cr_expect_eq(grad_clip_scale(norm, 0.0f), 1.0f, "clipping off");
}

/* ---- config --------------------------------------------------------------------------- */

static void expect_config_error(const char *json, const char *needle)
{
    TrainConfig c;
    Error err = {{0}};
    config_init(&c);
    cr_expect_eq(config_apply_json(&c, json, "test.json", &err), -1, "accepted %s", json);
    cr_expect_not_null(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    config_free(&c);
}

Test(config, errors_name_the_key)
{
    expect_config_error("{\"layer\": 4}", "unknown key 'layer' (did you mean 'layers'?)");
    expect_config_error("{\"colour\": 4}", "unknown key 'colour'");
    expect_config_error("{\"lr\": \"fast\"}", "key 'lr' expects a number");
    expect_config_error("{\"batch_size\": 0}", "key 'batch_size' 0 is out of range");
    expect_config_error("{\"layers\": 2.5}", "key 'layers' expects an integer");
    expect_config_error("{\"tokenizer\": \"wordpiece\"}", "expects char or bpe");
    expect_config_error("{\"tie_embeddings\": 1}", "expects true or false");
    expect_config_error("{\"data\": [1, 2]}", "key 'data' expects a list of file names");
    expect_config_error("[1, 2]", "expected a JSON object");
    expect_config_error("{\"layers\": 4,", "not valid JSON");
}

Test(config, flags_override_and_resolve)
{
    TrainConfig c;
    Error err;
    config_init(&c);
    cr_assert_eq(config_apply_json(&c, "{\"dim\": 96, \"heads\": 4, \"context\": 32}", "t", &err),
                 0, "%s", err.msg);
    char *argv[] = {"train", "--batch-size", "3", "--no-shuffle", "--data", "a.txt", "b.txt",
                    "--lr", "2e-3"};
    for (int i = 1; i < 9; i++)
        cr_assert_eq(config_apply_flag(&c, argv[i] + 2, 9, argv, &i, &err), 0, "%s", err.msg);
    cr_assert_eq(config_resolve(&c, &err), 0, "%s", err.msg);
    cr_expect_eq(c.batch_size, 3);
    cr_expect_eq(c.shuffle, false);
    cr_expect_eq(c.data.n, 2);
    cr_expect_str_eq(c.data.items[1], "b.txt");
    cr_expect_float_eq(c.lr, 2e-3f, 1e-9f);
    cr_expect_eq(c.kv_heads, 4);   /* = heads */
    cr_expect_eq(c.ffn_dim, 256);  /* 8/3 * 96 = 256, a multiple of 32 */
    cr_expect_eq(c.seq_len, 32);   /* = context */
    cr_expect_eq(c.decay_steps, c.steps);
    char *bad[] = {"train", "--batch-size", "many"};
    int i = 1;
    cr_expect_eq(config_apply_flag(&c, "batch-size", 3, bad, &i, &err), -1);
    cr_expect_not_null(strstr(err.msg, "--batch-size expects an integer"), "%s", err.msg);
    i = 0;
    cr_expect_eq(config_apply_flag(&c, "batch-sizes", 3, bad, &i, &err), 1, "not a config flag");
    config_free(&c);
}

Test(config, json_round_trip_is_exact)
{
    TrainConfig a, b;
    Error err;
    config_init(&a);
    config_init(&b);
    cr_assert_eq(config_apply_json(&a, "{\"lr\": 0.0003, \"data\": [\"x y.txt\"], "
                                       "\"tokenizer\": \"bpe\", \"tie_embeddings\": true}",
                                   "t", &err),
                 0, "%s", err.msg);
    char *json = config_to_json(&a);
    cr_assert_not_null(strstr(json, "\"lr\":\t0.0003"), "floats are written shortest: %s", json);
    cr_assert_eq(config_apply_json(&b, json, "round trip", &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(&a.lr, &b.lr, sizeof a.lr), 0);
    cr_expect_str_eq(b.tokenizer, "bpe");
    cr_expect_eq(b.tie_embeddings, true);
    cr_expect_str_eq(b.data.items[0], "x y.txt");
    cr_expect_eq(config_check_fixed_keys(&a, &b, &err), 0, "%s", err.msg);
    b.dim = 64;
    cr_expect_eq(config_check_fixed_keys(&a, &b, &err), -1);
    cr_expect_not_null(strstr(err.msg, "'dim' cannot change"), "%s", err.msg);
    free(json);
    config_free(&a);
    config_free(&b);
}

/* ---- gradient accumulation ------------------------------------------------------------ */

static void trainer_for_test(Trainer *t, const char *dir, const char *corpus, int batch,
                             int accum)
{
    Error err;
    memset(t, 0, sizeof *t);
    t->dir = dir;
    config_init(&t->cfg);
    char json[512];
    snprintf(json, sizeof json,
             "{\"layers\": 2, \"dim\": 32, \"heads\": 4, \"kv_heads\": 2, \"context\": 16, "
             "\"batch_size\": %d, \"grad_accum\": %d, \"shuffle\": false, \"data\": \"%s\"}",
             batch, accum, corpus);
    cr_assert_eq(config_apply_json(&t->cfg, json, "test", &err), 0, "%s", err.msg);
    cr_assert_eq(config_resolve(&t->cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(trainer_setup_new(t, &err), 0, "%s", err.msg);
    cr_assert_eq(trainer_prepare(t, &err), 0, "%s", err.msg);
}

Test(trainer, gradient_accumulation_equals_one_larger_batch)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    Trainer big, accumulated;
    trainer_for_test(&big, dir, corpus, 4, 1);
    trainer_for_test(&accumulated, dir, corpus, 2, 2);
    StepStats a, b;
    Error err;
    /* the gradients a step uses are left in t->grads (the update does not touch them) */
    cr_assert_eq(trainer_step(&big, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(trainer_step(&accumulated, &b, &err), 0, "%s", err.msg);
    cr_expect_float_eq(a.loss, b.loss, 1e-5f);
    float worst = 0.0f, largest = 0.0f;
    for (size_t i = 0; i < big.model.n_params; i++) {
        worst = fmaxf(worst, fabsf(big.grads[i] - accumulated.grads[i]));
        largest = fmaxf(largest, fabsf(big.grads[i]));
    }
    cr_expect_lt(worst, 1e-5f * largest, "gradients differ by %g (largest %g)", worst, largest);
    for (size_t i = 0; i < big.model.n_params; i++)
        worst = fmaxf(worst, fabsf(big.model.params[i] - accumulated.model.params[i]));
    cr_expect_lt(worst, 1e-5f, "updated parameters differ by %g", worst);
    trainer_free(&big);
    trainer_free(&accumulated);
}

/* ---- data pipeline -------------------------------------------------------------------- */

#include "../train/data.h"

static void char_tokenizer_for(Tokenizer *tok, const char *path)
{
    char *text;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(path, &text, &len, &err), 0, "%s", err.msg);
    memset(tok, 0, sizeof *tok);
    cr_assert_eq(tokenizer_train_char(tok, text, len, &err), 0, "%s", err.msg);
    free(text);
}

Test(data, cache_is_rebuilt_when_the_source_changes)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/tokens.bin", dir);
    Tokenizer tok;
    char_tokenizer_for(&tok, corpus);
    TokenData first, again, changed;
    Error err;
    const char *paths[] = {corpus};
    cr_assert_eq(data_load(&first, paths, 1, &tok, cache, &err), 0, "%s", err.msg);
    cr_expect_eq(first.n_train, first.n_tokens - first.n_tokens / 10, "last 10%% validates");
    cr_assert_eq(data_load(&again, paths, 1, &tok, cache, &err), 0, "%s", err.msg);
    cr_expect_eq(again.n_tokens, first.n_tokens);
    cr_expect_arr_eq(again.tokens, first.tokens, first.n_tokens * sizeof(int));
    /* same length, one character changed (token 0 is <s>, token 3 the third character) */
    FILE *fp = fopen(corpus, "r+");
    fseek(fp, 2, SEEK_SET);
    char replacement = fgetc(fp) == 'a' ? 'e' : 'a';
    fseek(fp, 2, SEEK_SET);
    fputc(replacement, fp);
    fclose(fp);
    cr_assert_eq(data_load(&changed, paths, 1, &tok, cache, &err), 0, "%s", err.msg);
    cr_assert_eq(changed.n_tokens, first.n_tokens);
    cr_expect_neq(changed.tokens[3], first.tokens[3], "a stale cache was used");
    cr_expect_eq(changed.tokens[3], tokenizer_lookup(&tok, &replacement, 1));
    data_free(&first);
    data_free(&again);
    data_free(&changed);
    tokenizer_free(&tok);
}

Test(data, consecutive_windows_start_at_k_times_T)
{
    /* tokens are their own positions: <s> then the characters of "abcdefghij..." */
    const char *dir = test_make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/abc.txt", dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 100; i++)
        fputc('a' + i % 26, fp);
    fclose(fp);
    Tokenizer tok;
    char_tokenizer_for(&tok, path);
    TokenData d;
    Error err;
    const char *paths[] = {path};
    cr_assert_eq(data_load(&d, paths, 1, &tok, NULL, &err), 0, "%s", err.msg);
    /* 101 tokens, 91 train; windows of T + 1 = 9: W = (91 - 1) / 8 = 11 */
    enum { B = 2, T = 8 };
    cr_assert_eq(data_window_count(&d, SPLIT_TRAIN, T), 11);
    int inputs[B * T], targets[B * T];
    data_batch(&d, SPLIT_TRAIN, B, T, NULL, 10, inputs, targets); /* windows 10 and 11 -> 0 */
    cr_expect_eq(inputs[0], d.tokens[80], "window 10 starts at token 80");
    cr_expect_eq(targets[T - 1], d.tokens[88]);
    cr_expect_eq(inputs[T], d.tokens[0], "window 11 wraps to the first window");
    cr_expect_eq(targets[T], d.tokens[1]);
    data_free(&d);
    tokenizer_free(&tok);
}
