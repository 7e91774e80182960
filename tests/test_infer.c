/* Batches of many sequences at their own positions, and the cache operations, against the
 * plainest way to get the same logits: each sequence's tokens decoded alone, from scratch,
 * in a context of its own. On a random small model and on stories260K. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "loader.h"
#include "model.h"
#include "rng.h"
#include "test_util.h"

/* A small model with grouped-query attention (4 heads, 2 key/value heads) and random
 * weights large enough that every logit depends on every earlier token; its logits are a
 * few units, as a trained model's are. */
static void random_model(Model *m, int n_layers)
{
    ModelConfig c = {.n_layers = n_layers, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 96,
                     .vocab_size = 37, .context = 64, .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Error err;
    cr_assert_eq(model_init(m, &c, &err), 0, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < m->n_tensors; i++) {
        ParamTensor *t = &m->tensors[i];
        for (int j = 0; j < t->rows * t->cols; j++)
            t->data[j] = t->kind == PARAM_NORM     ? 1.0f + 0.1f * rng_normal(&rng)
                         : t->kind == PARAM_OUTPUT ? 0.1f * rng_normal(&rng)
                                                   : 0.3f * rng_normal(&rng);
    }
}

typedef struct {
    Model model;
    Tokenizer tok;
    bool has_tok;
} TestModel;

static void stories_model(TestModel *t)
{
    SHARED_FILE_OR_SKIP(path, "models/stories260K.gguf");
    Error err;
    cr_assert_eq(model_file_load(path, &t->model, &t->tok, &err), 0, "%s", err.msg);
    t->has_tok = true;
}

static void test_model_free(TestModel *t)
{
    model_free(&t->model);
    if (t->has_tok)
        tokenizer_free(&t->tok);
}

static void context_init(InferContext *c, const Model *m, int n_seq, int n_ctx, int n_batch,
                         bool all_logits)
{
    InferParams p = {.n_seq = n_seq, .n_ctx = n_ctx, .n_batch = n_batch,
                     .cache_type = GGML_TYPE_F32, .all_logits = all_logits};
    Error err;
    cr_assert_eq(infer_init(c, m, &p, &err), 0, "%s", err.msg);
}

/* The logits after each of tokens[0..n), decoded alone in a fresh context: (n, V). */
static float *alone_logits(const Model *m, const int *tokens, int n)
{
    InferContext c;
    context_init(&c, m, 1, n, n, true);
    Error err;
    cr_assert_eq(infer_decode(&c, 0, tokens, n, &err), 0, "%s", err.msg);
    size_t V = (size_t)m->config.vocab_size;
    float *out = malloc((size_t)n * V * sizeof *out);
    cr_assert_not_null(out);
    memcpy(out, infer_logits(&c, 0), (size_t)n * V * sizeof *out);
    infer_free(&c);
    return out;
}

/* Largest |a - b| over n values, relative to the reference b's scale (its largest
 * magnitude, at least 1): float rounding grows with the values, and stories260K's logits
 * reach 16 where the random model's stay near 3. */
static float distance(const float *a, const float *b, int n)
{
    float worst = 0.0f, scale = 1.0f;
    for (int i = 0; i < n; i++) {
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
        scale = fmaxf(scale, fabsf(b[i]));
    }
    return worst / scale;
}

enum { N_SEQ = 3, SEQ_TOKENS = 16, TOLERANCE_STEPS = 4 };

/* Three token lists of SEQ_TOKENS random tokens. */
static void random_tokens(int tokens[N_SEQ][SEQ_TOKENS], int V, uint64_t seed)
{
    Rng rng;
    rng_seed(&rng, seed);
    for (int s = 0; s < N_SEQ; s++)
        for (int i = 0; i < SEQ_TOKENS; i++)
            tokens[s][i] = (int)rng_below(&rng, (uint64_t)V);
}

/* The schedule: batch k lists (sequence, count) pairs, the next `count` tokens of that
 * sequence, one row each, in that order; a sequence may come back later in the same batch.
 * Prompts of different lengths first, then decoding steps mixed with a prompt chunk (whose
 * rows are interleaved with the others'), then plain decoding steps. */
typedef struct {
    int seq, count;
} Piece;

static const Piece SCHEDULE[][6] = {
    {{0, 5}, {1, 9}, {2, 2}},
    {{2, 1}, {0, 1}, {2, 1}, {1, 1}, {2, 2}},
    {{1, 1}, {2, 1}, {0, 1}},
    {{0, 1}, {1, 1}, {2, 1}},
    {{2, 1}, {0, 4}, {1, 1}},
    {{1, 1}, {0, 1}, {2, 1}},
};

/* Runs SCHEDULE through one context in batches (n_batch rows per pass) and compares every
 * row's logits with the logits of its sequence decoded alone; returns the rows compared. */
static int check_schedule(const Model *m, int n_batch, float tolerance)
{
    int V = m->config.vocab_size, tokens[N_SEQ][SEQ_TOKENS];
    random_tokens(tokens, V, 11);
    float *alone[N_SEQ];
    for (int s = 0; s < N_SEQ; s++)
        alone[s] = alone_logits(m, tokens[s], SEQ_TOKENS);
    InferContext c;
    context_init(&c, m, N_SEQ, SEQ_TOKENS, n_batch, false);
    int next[N_SEQ] = {0}, compared = 0;
    for (size_t k = 0; k < sizeof SCHEDULE / sizeof *SCHEDULE; k++) {
        int token[32], pos[32], seq[32], n = 0;
        bool wants[32];
        for (const Piece *p = SCHEDULE[k]; p->count > 0; p++)
            for (int i = 0; i < p->count; i++, n++) {
                seq[n] = p->seq;
                pos[n] = next[p->seq]++;
                token[n] = tokens[p->seq][pos[n]];
                wants[n] = true;
            }
        InferBatch b = {token, pos, seq, wants, n};
        Error err;
        cr_assert_eq(infer_decode_batch(&c, &b, &err), 0, "batch %zu: %s", k, err.msg);
        for (int i = 0; i < n; i++) {
            const float *got = infer_batch_logits(&c, i);
            cr_assert_not_null(got);
            float d = distance(got, alone[seq[i]] + (size_t)pos[i] * V, V);
            cr_expect_lt(d, tolerance, "batch %zu row %d (sequence %d, position %d): logits "
                                       "differ from the sequence alone by %g",
                         k, i, seq[i], pos[i], d);
            compared++;
        }
    }
    for (int s = 0; s < N_SEQ; s++) {
        cr_expect_eq(infer_seq_length(&c, s), next[s]);
        free(alone[s]);
    }
    infer_free(&c);
    return compared;
}

/* Rows SCHEDULE decodes: 16 + 6 + 3 + 3 + 6 + 3. */
enum { SCHEDULE_ROWS = 37 };

/* The products of many rows and of one row may run on different kernels (the BLAS's sgemm
 * from 16 F32 rows on, the panels below), which sum in different orders: float rounding
 * only, 1e-5 of the logits' scale (measured: up to 6e-7 of it). */
#define BATCH_TOLERANCE 1e-5f

Test(infer, batch_of_sequences_at_their_own_positions_random_model)
{
    Model m;
    random_model(&m, 2);
    cr_assert_eq(check_schedule(&m, 64, BATCH_TOLERANCE), SCHEDULE_ROWS);
    cr_assert_eq(check_schedule(&m, 3, BATCH_TOLERANCE), SCHEDULE_ROWS); /* passes of 3 */
    model_free(&m);
}

Test(infer, batch_of_sequences_at_their_own_positions_stories260K)
{
    TestModel t = {0};
    stories_model(&t);
    cr_assert_eq(check_schedule(&t.model, 64, BATCH_TOLERANCE), SCHEDULE_ROWS);
    cr_assert_eq(check_schedule(&t.model, 3, BATCH_TOLERANCE), SCHEDULE_ROWS);
    test_model_free(&t);
}

/* Decodes tokens into sequence seq (no logits kept but the last row's). */
static void decode(InferContext *c, int seq, const int *tokens, int n)
{
    Error err;
    cr_assert_eq(infer_decode(c, seq, tokens, n, &err), 0, "%s", err.msg);
}

/* Decodes `more` into seq token by token and compares each step's logits with row
 * `first + i` of the reference; returns the steps compared. */
static int continue_and_compare(InferContext *c, int seq, const int *more, int n,
                                const float *reference, int first, const char *what)
{
    int V = c->model->config.vocab_size;
    for (int i = 0; i < n; i++) {
        decode(c, seq, &more[i], 1);
        float d = distance(infer_logits(c, 0), reference + (size_t)(first + i) * V, V);
        cr_expect_lt(d, BATCH_TOLERANCE, "%s, step %d: logits differ by %g from the token "
                                         "list decoded from scratch",
                     what, i, d);
    }
    return n;
}

/* Concatenates a[0..na) and b[0..nb) into out (a may be out itself). */
static int concat(int *out, const int *a, int na, const int *b, int nb)
{
    memmove(out, a, (size_t)na * sizeof *out);
    memcpy(out + na, b, (size_t)nb * sizeof *out);
    return na + nb;
}

/* Largest difference between block 0's keys and values of sequence seq and those of the
 * token list decoded from scratch. Block 0's keys and values depend on the token and its
 * position only, so after a truncation they must be exactly what a fresh decode of the
 * remaining tokens stores; deeper blocks' also carry what the forgotten tokens said (which
 * is why a context shift changes a model's output a little, in llama.cpp too). */
static float block0_cache_distance(const InferContext *c, int seq, const int *list, int n)
{
    InferContext fresh;
    context_init(&fresh, c->model, 1, n, n, false);
    decode(&fresh, 0, list, n);
    cr_assert_eq(infer_seq_length(c, seq), n);
    int kvc = model_kv_dim(&c->model->config);
    float worst = 0.0f;
    for (int p = 0; p < n; p++) {
        const Activations *a = &c->acts, *f = &fresh.acts;
        worst = fmaxf(worst, distance((float *)activations_kv_row(a, a->kv_k, 0, seq, p),
                                      (float *)activations_kv_row(f, f->kv_k, 0, 0, p), kvc));
        worst = fmaxf(worst, distance((float *)activations_kv_row(a, a->kv_v, 0, seq, p),
                                      (float *)activations_kv_row(f, f->kv_v, 0, 0, p), kvc));
    }
    infer_free(&fresh);
    return worst;
}

/* After a truncation that forgets positions before others, block 0's cache must be the
 * fresh decode's; with one block the whole model then goes on as the fresh decode does.
 * Returns the steps whose logits were compared. */
static int check_after_cut(InferContext *c, int seq, const int *kept, int n_kept,
                           const int *more, int n_more, const char *what)
{
    float d = block0_cache_distance(c, seq, kept, n_kept);
    cr_expect_lt(d, BATCH_TOLERANCE, "%s: block 0's keys and values differ by %g from a fresh "
                                     "decode's", what, d);
    if (c->model->config.n_layers > 1) {
        for (int i = 0; i < n_more; i++)
            decode(c, seq, &more[i], 1);
        return 0;
    }
    int list[2 * SEQ_TOKENS];
    int n = concat(list, kept, n_kept, more, n_more);
    float *ref = alone_logits(c->model, list, n);
    int compared = continue_and_compare(c, seq, more, n_more, ref, n_kept, what);
    free(ref);
    return compared;
}

/* After infer_seq_copy, infer_seq_truncate (a stretch in the middle, and to the end) and a
 * context shift, a sequence goes on as its remaining token list decoded from scratch. */
static int check_cache_operations(const Model *m)
{
    int V = m->config.vocab_size, t[N_SEQ][SEQ_TOKENS], list[2 * SEQ_TOKENS], compared = 0;
    random_tokens(t, V, 23);
    const int *more = t[2];
    InferContext c;
    context_init(&c, m, 2, SEQ_TOKENS, 64, false);
    Error err;

    /* copy: a prompt of 8 into sequence 0, copied to 1; each goes on differently */
    decode(&c, 0, t[0], 8);
    infer_seq_copy(&c, 0, 1, 0);
    int n = concat(list, t[0], 8, t[1], 4);
    float *ref = alone_logits(m, list, n);
    compared += continue_and_compare(&c, 1, t[1], 4, ref, 8, "copied sequence");
    free(ref);
    n = concat(list, t[0], 8, more, 4);
    ref = alone_logits(m, list, n);
    compared += continue_and_compare(&c, 0, more, 4, ref, 8, "source of the copy");
    free(ref);

    /* truncate to the end: keep the first 5 of sequence 1 (t0[0..8) t1[0..4)), exact for
     * any model: what is kept never saw what goes */
    cr_assert_eq(infer_seq_truncate(&c, 1, 5, -1, &err), 0, "%s", err.msg);
    cr_assert_eq(infer_seq_length(&c, 1), 5);
    n = concat(list, t[0], 5, more + 8, 4);
    ref = alone_logits(m, list, n);
    compared += continue_and_compare(&c, 1, more + 8, 4, ref, 5, "after truncate(5, end)");
    free(ref);

    /* truncate [3, 7) of sequence 0 (12 tokens: t0[0..8) then more[0..4)) */
    int held[SEQ_TOKENS];
    concat(held, t[0], 8, more, 4);
    cr_assert_eq(infer_seq_truncate(&c, 0, 3, 7, &err), 0, "%s", err.msg);
    n = concat(list, held, 3, held + 7, 5);
    compared += check_after_cut(&c, 0, list, n, more + 4, 3, "after truncate(3, 7)");

    /* a context shift: sequence 1 (9 tokens) fills the context, then keeps 2 and drops 6 */
    int fill = SEQ_TOKENS - infer_seq_length(&c, 1), full[SEQ_TOKENS];
    decode(&c, 1, t[1], fill);
    concat(full, t[0], 5, more + 8, 4);
    concat(full, full, 9, t[1], fill);
    cr_assert_eq(infer_seq_truncate(&c, 1, 2, 8, &err), 0, "%s", err.msg);
    n = concat(list, full, 2, full + 8, SEQ_TOKENS - 8);
    compared += check_after_cut(&c, 1, list, n, more, 5, "after a context shift");

    infer_free(&c);
    return compared;
}

Test(infer, cache_copy_truncate_and_shift_one_block_model)
{
    Model m;
    random_model(&m, 1);
    cr_assert_eq(check_cache_operations(&m), 20);
    model_free(&m);
}

Test(infer, cache_copy_truncate_and_shift_stories260K)
{
    TestModel t = {0};
    stories_model(&t);
    /* 12 steps compared by their logits, the cuts by block 0's cache */
    cr_assert_eq(check_cache_operations(&t.model), 12);
    test_model_free(&t);
}

/* A bad batch is an error naming the row and the problem, and changes nothing. */
Test(infer, bad_batches_are_errors_that_name_the_row)
{
    Model m;
    random_model(&m, 2);
    InferContext c;
    context_init(&c, &m, 2, 4, 64, false);
    int prompt[3] = {1, 2, 3};
    decode(&c, 0, prompt, 3);
    const struct {
        int token[2], pos[2], seq[2];
        const char *message;
    } cases[] = {
        {{1, 2}, {0, 2}, {1, 1}, "batch row 1: position 2, but sequence 1's next position is 1"},
        {{1, 2}, {3, 1}, {0, 0}, "batch row 1: position 1, but sequence 0's next position is 4"},
        {{1, 2}, {0, 0}, {1, 2}, "batch row 1: no sequence 2 (the context has 2)"},
        {{1, 99}, {0, 3}, {1, 0}, "batch row 1: token 99 is not in the vocabulary of 37"},
        {{1, 2}, {3, 4}, {0, 0}, "batch row 1: the context of 4 positions is full (sequence 0)"},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        InferBatch b = {cases[i].token, cases[i].pos, cases[i].seq, NULL, 2};
        Error err;
        cr_expect_neq(infer_decode_batch(&c, &b, &err), 0, "case %zu was accepted", i);
        cr_expect(strstr(err.msg, cases[i].message), "case %zu: '%s'", i, err.msg);
        cr_expect_eq(infer_seq_length(&c, 0), 3, "case %zu changed sequence 0", i);
        cr_expect_eq(infer_seq_length(&c, 1), 0, "case %zu changed sequence 1", i);
        compared++;
    }
    cr_assert_eq(compared, 5);
    Error err;
    cr_expect_neq(infer_seq_truncate(&c, 0, 2, 5, &err), 0);
    cr_expect(strstr(err.msg, "positions [2, 5) are not within sequence 0's 3"), "%s", err.msg);
    cr_expect_neq(infer_seq_truncate(&c, 2, 0, 1, &err), 0);
    cr_expect(strstr(err.msg, "no sequence 2"), "%s", err.msg);
    infer_free(&c);
    model_free(&m);
}

/* quill bench --parallel prints llama-batched-bench's table: a row per count, with PP, TG,
 * B and N_KV = B x (PP + TG) as given, and times that add up (T = T_PP + T_TG). */
Test(infer, bench_parallel_prints_the_batched_bench_table)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    char *out;
    int status = quill(&out, "bench %s --parallel 1,3 -p 8 -n 4 -r 1 -t 1", model);
    cr_assert_eq(status, 0, "%s", out);
    cr_expect(strstr(out, "|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | "
                          "S_TG t/s |      T s |    S t/s |"), "%s", out);
    const int B[2] = {1, 3};
    int rows = 0;
    for (const char *line = strstr(out, "|     8 |"); line; line = strstr(line + 1, "|     8 |")) {
        int pp, tg, b, n_kv;
        double t_pp, s_pp, t_tg, s_tg, t, s;
        cr_assert_eq(sscanf(line, "| %d | %d | %d | %d | %lf | %lf | %lf | %lf | %lf | %lf |",
                            &pp, &tg, &b, &n_kv, &t_pp, &s_pp, &t_tg, &s_tg, &t, &s), 10, "%s",
                     line);
        cr_assert_lt(rows, 2, "%s", out);
        cr_expect_eq(tg, 4);
        cr_expect_eq(b, B[rows]);
        cr_expect_eq(n_kv, B[rows] * 12);
        cr_expect_lt(fabs(t - (t_pp + t_tg)), 0.002, "%s", line);
        rows++;
    }
    cr_assert_eq(rows, 2, "%s", out);
    free(out);
}

Test(infer, bench_parallel_rejects_a_bad_list)
{
    SHARED_FILE_OR_SKIP(model, "models/stories260K.gguf");
    expect_clean_error("--parallel 1,x: a list of sequence counts from 1 to 256",
                       "bench %s --parallel 1,x", model);
    expect_clean_error("--parallel 0: a list of sequence counts from 1 to 256",
                       "bench %s --parallel 0", model);
}
