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
#include "cli.h"
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
    cr_expect_eq(config_apply_json(&c, json, strlen(json), "test.json", &err), -1, "accepted %s",
                 json);
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
    expect_config_error("{\"tokenizer\": \"wordpiece\"}", "expects one of char, bpe");
    expect_config_error("{\"tie_embeddings\": 1}", "expects true or false");
    expect_config_error("{\"data\": [1, 2]}", "key 'data' expects a list of file names");
    expect_config_error("[1, 2]", "expected a JSON object");
    expect_config_error("{\"layers\": 4,", "not valid JSON");
}

/* The whole file must be one JSON object: cJSON alone would stop at the end of the first
 * value, let the last of two equal keys win, and a C string would end at a NUL byte. */
static void expect_config_bytes_error(const char *bytes, size_t len, const char *needle)
{
    TrainConfig c;
    Error err = {{0}};
    config_init(&c);
    cr_expect_eq(config_apply_json(&c, bytes, len, "test.json", &err), -1, "accepted '%s'", bytes);
    cr_expect_not_null(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    config_free(&c);
}

Test(config, the_file_must_be_exactly_one_object_with_distinct_keys)
{
    expect_config_error("{\"layers\": 2} {\"dim\": 8}",
                        "unexpected text after the JSON object at offset 14");
    expect_config_error("{\"layers\": 2}\n]", "unexpected text");
    static const char with_nul[] = "{\"layers\": 2}\0{\"dim\": 8}";
    expect_config_bytes_error(with_nul, sizeof with_nul - 1, "a NUL byte at offset 13");
    expect_config_error("{\"lr\": 0.1, \"lr\": 0.2}", "key 'lr' is given twice");
    /* trailing white space is fine */
    TrainConfig c;
    Error err;
    config_init(&c);
    const char *spaced = "{\"layers\": 2}\n\t ";
    cr_expect_eq(config_apply_json(&c, spaced, strlen(spaced), "t", &err), 0, "%s", err.msg);
    cr_expect_eq(c.layers, 2);
    config_free(&c);
}

/* Text quoted from a bad file reaches the terminal: no raw control bytes in the message. */
Test(config, quoted_file_text_is_escaped)
{
    expect_config_error("{\"la\x1b[2Jyers\": 2}", "unknown key 'la\\x1b[2Jyers'");
    expect_config_error("{\"layers\": \x7f\x1b}", "near '\\x7f\\x1b}'");
    expect_config_error("{\"tokenizer\": \"w\\u0007\"}", "got 'w\\x07'");
}

Test(config, flags_override_and_resolve)
{
    TrainConfig c;
    Error err;
    config_init(&c);
    const char *json = "{\"dim\": 96, \"heads\": 4, \"context\": 32, \"data\": \"z.txt\"}";
    cr_assert_eq(config_apply_json(&c, json, strlen(json), "t", &err), 0, "%s", err.msg);
    Flag flags[CONFIG_N_KEYS];
    CommandSpec spec = {.usage = "usage: quill train\n", .flags = flags,
                        .n_flags = config_flags(&c, flags)};
    char *argv[] = {"train", "--batch-size", "3", "--no-shuffle", "--data", "a.txt", "b.txt",
                    "--lr=2e-3", "--tokenizer", "bpe"};
    int n_positional;
    cr_assert_eq(cli_parse_command(&spec, 10, argv, NULL, &n_positional, stdout, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(config_resolve(&c, &err), 0, "%s", err.msg);
    cr_expect_eq(c.batch_size, 3);
    cr_expect_eq(c.shuffle, false);
    cr_expect_eq(c.data.n, 2, "--data replaces the config's list");
    cr_expect_str_eq(c.data.items[1], "b.txt");
    cr_expect_float_eq(c.lr, 2e-3f, 1e-9f);
    cr_expect_eq(c.kv_heads, 4);   /* = heads */
    cr_expect_eq(c.ffn_dim, 256);  /* 8/3 * 96 = 256, a multiple of 32 */
    cr_expect_eq(c.seq_len, 32);   /* = context */
    cr_expect_eq(c.decay_steps, c.steps);
    cr_expect_str_eq(c.tokenizer, "bpe");
    char *bad[] = {"train", "--batch-size", "many"};
    cr_expect_eq(cli_parse_command(&spec, 3, bad, NULL, &n_positional, stdout, &err), -1);
    cr_expect_not_null(strstr(err.msg, "--batch-size expects an integer"), "%s", err.msg);
    char *unknown[] = {"train", "--batch-sizes", "2"};
    cr_expect_eq(cli_parse_command(&spec, 3, unknown, NULL, &n_positional, stdout, &err), -1);
    cr_expect_not_null(strstr(err.msg, "unknown flag --batch-sizes"), "%s", err.msg);
    config_free(&c);
}

Test(config, json_round_trip_is_exact)
{
    TrainConfig a, b;
    Error err;
    config_init(&a);
    config_init(&b);
    const char *input = "{\"lr\": 0.0003, \"data\": [\"x y.txt\"], \"tokenizer\": \"bpe\", "
                        "\"tie_embeddings\": true}";
    cr_assert_eq(config_apply_json(&a, input, strlen(input), "t", &err), 0, "%s", err.msg);
    char *json = config_to_json(&a);
    cr_assert_not_null(strstr(json, "\"lr\":\t0.0003"), "floats are written shortest: %s", json);
    cr_assert_eq(config_apply_json(&b, json, strlen(json), "round trip", &err), 0, "%s",
                 err.msg);
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
    cr_assert_eq(config_apply_json(&t->cfg, json, strlen(json), "test", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(config_resolve(&t->cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(trainer_setup_new(t, &err), 0, "%s", err.msg);
    Error warning;
    cr_assert_eq(trainer_prepare(t, &warning, &err), 0, "%s", err.msg);
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

/* A NaN already in the weights is not a learning-rate problem: the message must say that
 * the model was damaged before the step and name the tensor, not only suggest a lower lr. */
Test(trainer, nan_in_the_weights_is_reported_as_damage_not_divergence)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    Trainer t;
    trainer_for_test(&t, dir, corpus, 2, 1);
    Error err = {{0}};
    StepStats stats;
    cr_assert_eq(trainer_step(&t, &stats, &err), 0, "%s", err.msg);
    t.model.w.layers[1].ffn_up[5] = NAN;
    cr_assert_eq(trainer_step(&t, &stats, &err), -1);
    cr_expect_not_null(strstr(err.msg, "tensor 'blk.1.ffn_up.weight'"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "damaged before this step"), "%s", err.msg);
    cr_expect_null(strstr(err.msg, "--lr"), "%s", err.msg);
    trainer_free(&t);
}

/* Tokens of a stream as ints, for comparisons. */
static int *stream_ids(const TokenData *d)
{
    int *ids = malloc(d->n_tokens * sizeof *ids);
    for (size_t i = 0; i < d->n_tokens; i++)
        ids[i] = data_token(d, i);
    return ids;
}

/* Loads paths[0] through the cache at `cache`; the warning is returned in *warning. */
static void load_cached(TokenData *d, const char *corpus, const Tokenizer *tok,
                        const char *cache, Error *warning)
{
    Error err;
    const char *paths[] = {corpus};
    cr_assert_eq(data_load(d, paths, 1, tok, cache, warning, &err), 0, "%s", err.msg);
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
    Error warning;
    load_cached(&first, corpus, &tok, cache, &warning);
    cr_expect_not(first.from_cache);
    cr_expect_eq(first.token_bytes, 2, "a char vocabulary fits in 16 bits");
    cr_expect_eq(first.n_train, first.n_tokens - first.n_tokens / 10, "last 10%% validates");
    load_cached(&again, corpus, &tok, cache, &warning);
    cr_expect(again.from_cache);
    cr_expect_str_eq(warning.msg, "");
    cr_assert_eq(again.n_tokens, first.n_tokens);
    int *a = stream_ids(&first), *b = stream_ids(&again);
    cr_expect_arr_eq(a, b, first.n_tokens * sizeof(int));
    /* same length, one character changed (token 0 is <s>, token 3 the third character) */
    FILE *fp = fopen(corpus, "r+");
    fseek(fp, 2, SEEK_SET);
    char replacement = fgetc(fp) == 'a' ? 'e' : 'a';
    fseek(fp, 2, SEEK_SET);
    fputc(replacement, fp);
    fclose(fp);
    load_cached(&changed, corpus, &tok, cache, &warning);
    cr_expect_not(changed.from_cache, "a stale cache was used");
    cr_expect_str_eq(warning.msg, "", "a stale cache is rebuilt quietly");
    cr_assert_eq(changed.n_tokens, first.n_tokens);
    cr_expect_eq(data_token(&changed, 3), tokenizer_lookup(&tok, &replacement, 1));
    free(a);
    free(b);
    data_free(&first);
    data_free(&again);
    data_free(&changed);
    tokenizer_free(&tok);
}

/* Flips one bit of a file at byte `at`. */
static void flip_bit(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    fseek(fp, at, SEEK_SET);
    int byte = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(byte ^ 0x01, fp);
    fclose(fp);
}

/* A token id changed into another valid id, or a header field changed, is caught by the
 * checksums: the cache is rebuilt and the warning names the file and the damaged part. */
Test(data, a_damaged_cache_is_named_and_rebuilt)
{
    const char *dir = test_make_tmpdir();
    const char *corpus = test_write_corpus(dir);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/tokens.bin", dir);
    Tokenizer tok;
    char_tokenizer_for(&tok, corpus);
    TokenData d;
    Error warning;
    load_cached(&d, corpus, &tok, cache, &warning);
    int *original = stream_ids(&d);
    size_t n_tokens = d.n_tokens;
    data_free(&d);

    const struct {
        long byte;          /* where the bit is flipped */
        const char *needle; /* what the warning must say */
    } damage[] = {
        {64 + 2 * 1000, "do not match their checksum"}, /* token 1000 (2 bytes each) */
        {24, "the header"},                             /* n_tokens */
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        remove(cache);
        load_cached(&d, corpus, &tok, cache, &warning); /* a fresh cache */
        data_free(&d);
        flip_bit(cache, damage[i].byte);
        load_cached(&d, corpus, &tok, cache, &warning);
        cr_expect_not(d.from_cache);
        cr_expect_not_null(strstr(warning.msg, cache), "%s", warning.msg);
        cr_expect_not_null(strstr(warning.msg, damage[i].needle), "%s", warning.msg);
        cr_expect_not(i == 0 && !strstr(warning.msg, "tokens 0.."), "%s", warning.msg);
        int *rebuilt = stream_ids(&d);
        cr_assert_eq(d.n_tokens, n_tokens);
        cr_expect_arr_eq(rebuilt, original, n_tokens * sizeof(int));
        free(rebuilt);
        data_free(&d);
        compared++;
    }
    cr_assert_eq(compared, 2);
    free(original);
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
    Error warning;
    load_cached(&d, path, &tok, NULL, &warning);
    /* 101 tokens, 91 train; windows of T + 1 = 9: W = (91 - 1) / 8 = 11 */
    enum { B = 2, T = 8 };
    cr_assert_eq(data_window_count(&d, SPLIT_TRAIN, T), 11);
    int inputs[B * T], targets[B * T];
    data_batch(&d, SPLIT_TRAIN, B, T, NULL, 10, inputs, targets); /* windows 10 and 11 -> 0 */
    cr_expect_eq(inputs[0], data_token(&d, 80), "window 10 starts at token 80");
    cr_expect_eq(targets[T - 1], data_token(&d, 88));
    cr_expect_eq(inputs[T], data_token(&d, 0), "window 11 wraps to the first window");
    cr_expect_eq(targets[T], data_token(&d, 1));
    data_free(&d);
    tokenizer_free(&tok);
}

/* ---- progress ------------------------------------------------------------------------- */

#include <unistd.h>

#include "../train/progress.h"

/* What one step at step 120 of 2000 prints with the terminal `columns` wide (0: not a
 * terminal), into a malloc'd string. */
static char *progress_output(int columns)
{
    const char *dir = test_make_tmpdir();
    Progress p;
    Error err;
    cr_assert_eq(progress_open(&p, dir, 0, 2000, 1, true, &err), 0, "%s", err.msg);
    char *text = NULL;
    size_t len = 0;
    p.out = open_memstream(&text, &len);
    p.columns = columns;
    /* 0.05 s per step: 1880 steps left take 94 s */
    progress_step(&p, 120, 2.3456f, 1e-3f, 0.853f, 12345.0, 0.05);
    fclose(p.out);
    p.out = stdout;
    p.line_open = false;
    progress_close(&p);
    return text;
}

/* The full live line is 102 characters: "step   120/2000" 15, the bar 22, "loss 2.3456",
 * "lr 1.00e-03", "gnorm 0.853" and "12.3k tok/s" 11 each, "ETA 1m34s" 9, and six gaps of
 * two. It must fit in one column less than the terminal's width, dropping lr (13 with its
 * gap), then gnorm (13), the bar (24), tokens/s (13), the ETA (11); then it is cut. */
Test(progress, the_live_line_fits_the_terminal_least_important_fields_first)
{
    const struct {
        int columns;
        const char *line;
    } cases[] = {
        {200, "step   120/2000  [#...................]  loss 2.3456  lr 1.00e-03  gnorm 0.853  "
              "12.3k tok/s  ETA 1m34s"},
        {100, "step   120/2000  [#...................]  loss 2.3456  gnorm 0.853  12.3k tok/s  "
              "ETA 1m34s"},
        {80, "step   120/2000  [#...................]  loss 2.3456  12.3k tok/s  ETA 1m34s"},
        {60, "step   120/2000  loss 2.3456  12.3k tok/s  ETA 1m34s"},
        {40, "step   120/2000  loss 2.3456  ETA 1m34s"},
        {30, "step   120/2000  loss 2.3456"},
        {20, "step   120/2000  lo"},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = progress_output(cases[i].columns), expected[256];
        snprintf(expected, sizeof expected, "\r%s\033[K", cases[i].line);
        cr_expect_str_eq(text, expected, "%d columns", cases[i].columns);
        cr_expect_lt(strlen(cases[i].line), (size_t)cases[i].columns);
        free(text);
        compared++;
    }
    cr_assert_eq(compared, 7);
}

/* Not on a terminal: a plain line, without a carriage return or an escape sequence. */
Test(progress, a_non_terminal_gets_plain_lines)
{
    char *text = progress_output(0);
    cr_expect_str_eq(text, "step 120/2000: loss 2.3456, lr 1.00e-03, grad norm 0.853, 12345 "
                           "tokens/s\n");
    free(text);
}

/* The width comes from the terminal, else from $COLUMNS, else it is 80 (a pipe has no
 * window size). */
Test(progress, terminal_width_from_the_window_then_columns_then_80)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    setenv("COLUMNS", "57", 1);
    cr_expect_eq(progress_terminal_columns(fds[1]), 57);
    setenv("COLUMNS", "wide", 1);
    cr_expect_eq(progress_terminal_columns(fds[1]), 80);
    unsetenv("COLUMNS");
    cr_expect_eq(progress_terminal_columns(fds[1]), 80);
    close(fds[0]);
    close(fds[1]);
}
