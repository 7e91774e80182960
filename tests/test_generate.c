/* Generation in-process, against things computed independently: beam search against an
 * exhaustive search over every continuation, greedy decoding three ways (temperature 0,
 * top-k 1, one beam), and samples decoded side by side against the same samples one at a
 * time. The model is a small random one with a 6-token vocabulary, so that every
 * continuation of 3 tokens can be enumerated. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "beam.h"
#include "model.h"
#include "rng.h"
#include "session.h"

enum { TV = 6 };

typedef struct {
    Model model;
    Tokenizer tok;
    SessionParams p; /* n_seq, n_ctx 16 and the seed are set per session */
} Tiny;

/* Random weights large enough that the next-token distributions are far from uniform. */
static void tiny_init(Tiny *t, uint64_t seed)
{
    ModelConfig c = {.n_layers = 2, .dim = 16, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 32,
                     .vocab_size = TV, .context = 32, .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Error err;
    cr_assert_eq(model_init(&t->model, &c, &err), 0, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < t->model.n_params; i++)
        t->model.params[i] = 0.5f * rng_normal(&rng);
    const char *pieces[TV] = {"<unk>", "<s>", "</s>", "a", "b", "c"};
    const int32_t types[TV] = {TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL,
                               TOKEN_TYPE_NORMAL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_NORMAL};
    cr_assert_eq(tokenizer_init(&t->tok, TV, pieces, NULL, types, &err), 0, "%s", err.msg);
    session_params_default(&t->p);
    t->p.ignore_eos = true; /* every token may follow every token: 6^3 continuations */
}

static void tiny_free(Tiny *t)
{
    tokenizer_free(&t->tok);
    model_free(&t->model);
}

static const int PROMPT[] = {1, 3, 4};
enum { N_PROMPT = 3 };

/* A session of n_seq slots of 16 positions, sampling with the given seed. */
static void session_start(Session *s, Tiny *t, int n_seq, uint64_t seed)
{
    Error err;
    SessionParams p = t->p;
    p.n_seq = n_seq;
    p.n_ctx = 16;
    p.sampler.seed = seed;
    cr_assert_eq(session_init(s, &t->model, &t->tok, &p, &err), 0, "%s", err.msg);
}

static void session_with_prompt(Session *s, Tiny *t, int n_seq)
{
    Error err;
    session_start(s, t, n_seq, 5);
    cr_assert_eq(session_feed(s, PROMPT, N_PROMPT, &err), 0, "%s", err.msg);
}

/* log p(seq | prompt) by full forward passes over prompt + seq, in double. */
static double sequence_logprob(Tiny *t, const int *seq, int n)
{
    int tokens[N_PROMPT + 3];
    memcpy(tokens, PROMPT, sizeof PROMPT);
    memcpy(tokens + N_PROMPT, seq, (size_t)n * sizeof *seq);
    Activations a;
    Error err;
    cr_assert_eq(activations_init(&a, &t->model, 1, N_PROMPT + n, &err), 0, "%s", err.msg);
    model_forward(&t->model, &a, tokens, 1, N_PROMPT + n, 0);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = a.logits + (size_t)(N_PROMPT - 1 + i) * TV;
        double max = z[0], total = 0.0;
        for (int v = 1; v < TV; v++)
            max = z[v] > max ? z[v] : max;
        for (int v = 0; v < TV; v++)
            total += exp(z[v] - max);
        sum += z[seq[i]] - max - log(total);
    }
    activations_free(&a);
    return sum;
}

/* With 36 = 6^2 beams nothing is ever dropped before the last step, so beam search at depth
 * 3 must find the most probable of all 216 continuations, with its log-probability. */
Test(generate, beam_search_finds_the_exhaustive_best_at_depth_3)
{
    Tiny t;
    tiny_init(&t, 11);
    t.p.max_tokens = 3;
    double best = -INFINITY;
    int best_seq[3] = {0}, compared = 0;
    for (int x = 0; x < TV; x++)
        for (int y = 0; y < TV; y++)
            for (int z = 0; z < TV; z++) {
                int seq[3] = {x, y, z};
                double lp = sequence_logprob(&t, seq, 3);
                if (lp > best) {
                    best = lp;
                    memcpy(best_seq, seq, sizeof seq);
                }
                compared++;
            }
    cr_assert_eq(compared, 216);
    Session s;
    session_with_prompt(&s, &t, 36);
    Completion c[1];
    int n;
    Error err;
    cr_assert_eq(beam_search(&s, 36, 0.0f, 1, NULL, c, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(c[0].n_tokens, 3);
    cr_expect_arr_eq(c[0].tokens, best_seq, sizeof best_seq, "beam %d %d %d, exhaustive %d %d %d",
                     c[0].tokens[0], c[0].tokens[1], c[0].tokens[2], best_seq[0], best_seq[1],
                     best_seq[2]);
    cr_expect(fabs(c[0].score - best) < 1e-4, "beam score %g, exhaustive %g", c[0].score, best);
    completion_free(&c[0]);
    session_free(&s);
    tiny_free(&t);
}

/* The tokens one continuation takes, with the options as they are. */
static void continuation(Tiny *t, int *tokens, int n)
{
    Session s;
    Completion c;
    Error err;
    session_with_prompt(&s, t, 1);
    cr_assert_eq(session_continue(&s, NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_tokens, n);
    memcpy(tokens, c.tokens, (size_t)n * sizeof *tokens);
    completion_free(&c);
    session_free(&s);
}

Test(generate, greedy_equals_top_k_1_equals_one_beam)
{
    enum { N = 8 };
    Tiny t;
    tiny_init(&t, 12);
    t.p.max_tokens = N;
    int greedy[N], top1[N];
    t.p.sampler.temperature = 0.0f;
    continuation(&t, greedy, N);
    t.p.sampler.temperature = 0.9f;
    t.p.sampler.top_k = 1;
    continuation(&t, top1, N);
    cr_expect_arr_eq(greedy, top1, sizeof greedy, "top-k 1 differs from greedy");
    Session s;
    session_with_prompt(&s, &t, 1);
    Completion c[1];
    int n;
    Error err;
    cr_assert_eq(beam_search(&s, 1, 0.0f, 1, NULL, c, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(c[0].n_tokens, N);
    cr_expect_arr_eq(c[0].tokens, greedy, sizeof greedy, "one beam differs from greedy");
    completion_free(&c[0]);
    session_free(&s);
    tiny_free(&t);
}

/* Samples decoded side by side (one pass per step for all, each in its own cache slot
 * after a copy of the prompt's) equal the same seeds decoded one at a time. */
Test(generate, samples_side_by_side_equal_samples_one_at_a_time)
{
    enum { N = 10, SAMPLES = 3 };
    Tiny t;
    tiny_init(&t, 13);
    t.p.max_tokens = N;
    t.p.sampler.temperature = 1.0f;
    Session s;
    session_with_prompt(&s, &t, SAMPLES);
    Completion many[SAMPLES];
    Error err;
    cr_assert_eq(session_sample_many(&s, SAMPLES, many, &err), 0, "%s", err.msg);
    session_free(&s);
    for (int i = 0; i < SAMPLES; i++) {
        Session one;
        Completion c;
        session_start(&one, &t, 1, 5 + (uint64_t)i);
        cr_assert_eq(session_feed(&one, PROMPT, N_PROMPT, &err), 0, "%s", err.msg);
        cr_assert_eq(session_continue(&one, NULL, NULL, &c, &err), 0, "%s", err.msg);
        cr_assert_eq(c.n_tokens, many[i].n_tokens);
        cr_expect_arr_eq(c.tokens, many[i].tokens, (size_t)c.n_tokens * sizeof(int), "sample %d",
                         i);
        completion_free(&c);
        completion_free(&many[i]);
        session_free(&one);
    }
    tiny_free(&t);
}

/* Stop strings act inside the search: a beam whose text completes one is a finished
 * hypothesis, its text cut before the stop string, its tokens and score those of the text
 * up to the stop (the stop's token included, as a sampled text keeps it). With 36 beams at
 * depth 3 and a plain sum (length penalty 0), the result must be the best of every
 * continuation that stops at its first "c" or runs 3 tokens without one, worked out by
 * full forward passes; searching first and cutting after scored the uncut text. */
Test(generate, beam_search_stops_inside_the_search)
{
    Tiny t;
    tiny_init(&t, 14);
    t.p.max_tokens = 3;
    Error err;
    char *const stops[] = {"c"};
    t.p.stops = stops;
    t.p.n_stops = 1;
    enum { C = 5 }; /* the token "c" */
    double best = -INFINITY;
    int best_seq[3] = {0}, best_n = 0, compared = 0;
    for (int x = 0; x < TV; x++)
        for (int y = 0; y < TV; y++)
            for (int z = 0; z < TV; z++) {
                int seq[3] = {x, y, z};
                int n = x == C ? 1 : y == C ? 2 : 3; /* up to the first stop */
                if ((n == 1 && (y || z)) || (n == 2 && z))
                    continue; /* one hypothesis per stopped prefix */
                double lp = sequence_logprob(&t, seq, n);
                if (lp > best) {
                    best = lp;
                    best_n = n;
                    memcpy(best_seq, seq, sizeof seq);
                }
                compared++;
            }
    cr_assert_eq(compared, 1 + 5 + 25 * 6, "hypotheses: stopped at 1, 2 or 3 tokens, or none");
    cr_assert(best_seq[best_n - 1] == C, "this seed's best must end at a stop to test it");
    Session s;
    session_with_prompt(&s, &t, 36);
    Completion c[1];
    int n;
    cr_assert_eq(beam_search(&s, 36, 0.0f, 1, NULL, c, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_expect_eq(c[0].finish, FINISH_STOP);
    cr_assert_eq(c[0].n_tokens, best_n, "%d tokens, the best has %d", c[0].n_tokens, best_n);
    cr_expect_arr_eq(c[0].tokens, best_seq, (size_t)best_n * sizeof(int));
    cr_expect(fabs(c[0].score - best) < 1e-4, "beam score %g, exhaustive %g", c[0].score, best);
    cr_expect_null(memchr(c[0].text, 'c', c[0].len), "the stop string was kept: %s", c[0].text);
    completion_free(&c[0]);
    session_free(&s);
    tiny_free(&t);
}

/* A context that fills ends beam search as it ends a sampled text: after the same number
 * of tokens (the last one chosen from the full context's logits), with finish "context". */
Test(generate, beam_search_ends_a_full_context_as_sampling_does)
{
    Tiny t;
    tiny_init(&t, 15);
    t.p.max_tokens = 100;
    t.p.sampler.temperature = 0.0f;
    Session s;
    session_with_prompt(&s, &t, 1);
    Completion sampled, beams[1];
    Error err;
    cr_assert_eq(session_continue(&s, NULL, NULL, &sampled, &err), 0, "%s", err.msg);
    session_free(&s);
    cr_assert_eq(sampled.finish, FINISH_CONTEXT);
    cr_assert_eq(sampled.n_tokens, 16 - N_PROMPT + 1);
    session_with_prompt(&s, &t, 4);
    int n;
    cr_assert_eq(beam_search(&s, 4, 1.0f, 1, NULL, beams, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_expect_eq(beams[0].finish, FINISH_CONTEXT, "finish %s",
                 finish_reason_name(beams[0].finish));
    cr_expect_eq(beams[0].n_tokens, sampled.n_tokens);
    completion_free(&beams[0]);
    completion_free(&sampled);
    session_free(&s);
    tiny_free(&t);
}

/* What a callback saw of one continuation. */
typedef struct {
    Session *s;
    int tokens[64], n_tokens;
    char pieces[256], text[256]; /* the pieces, one after another; the texts, likewise */
    size_t n_pieces, n_text;
    int cancel_after;            /* > 0: set the cancel flag after this many tokens */
    int n_traces;
    int late;                    /* tokens heard of after the model had run them */
} Seen;

static void seen_token(void *ctx, const SessionToken *t)
{
    Seen *seen = ctx;
    cr_assert(seen->n_pieces + t->n_piece < sizeof seen->pieces);
    cr_assert(seen->n_text + t->n_text < sizeof seen->text);
    if (t->token >= 0) {
        seen->tokens[seen->n_tokens++] = t->token;
        /* the cache holds the prompt and the tokens before this one: the caller hears of a
         * token before it goes through the model, so its text shows without a step's delay */
        seen->late += infer_seq_length(seen->s->ctx, 0) != N_PROMPT + seen->n_tokens - 1;
    }
    memcpy(seen->pieces + seen->n_pieces, t->piece, t->n_piece);
    seen->n_pieces += t->n_piece;
    memcpy(seen->text + seen->n_text, t->text, t->n_text);
    seen->n_text += t->n_text;
    seen->n_traces += t->trace != NULL;
    if (seen->cancel_after > 0 && seen->n_tokens == seen->cancel_after)
        atomic_store(seen->s->cancel, true);
}

/* The callback hears of every token with its bytes (the tokenizer's pieces "a", "b", "c"
 * for ids 3..5), before the model runs it, and the texts it is given add up to the
 * completion's text: the pieces up to the first "cb" (the stop string, held back and never
 * given). With a trace asked for, each token comes with one. */
Test(generate, callback_hears_each_token_and_the_text_up_to_the_stop)
{
    Tiny t;
    tiny_init(&t, 16);
    t.p.max_tokens = 12;
    t.p.sampler.temperature = 1.5f;
    t.p.trace = true;
    char *const stops[] = {"cb"};
    t.p.stops = stops;
    t.p.n_stops = 1;
    Session s;
    session_with_prompt(&s, &t, 1);
    Seen seen = {.s = &s};
    Completion c;
    Error err;
    cr_assert_eq(session_continue(&s, seen_token, &seen, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(seen.n_tokens, c.n_tokens);
    cr_expect_arr_eq(seen.tokens, c.tokens, (size_t)c.n_tokens * sizeof(int));
    cr_expect_eq(seen.n_traces, c.n_tokens);
    cr_expect_eq(seen.late, 0, "%d of %d tokens were heard of after the model ran them",
                 seen.late, c.n_tokens);
    char pieces[64] = "";
    for (int i = 0; i < c.n_tokens; i++) {
        static const char *const piece[TV] = {"", "", "", "a", "b", "c"};
        strcat(pieces, piece[c.tokens[i]]);
    }
    cr_expect_eq(seen.n_pieces, strlen(pieces));
    cr_expect_arr_eq(seen.pieces, pieces, seen.n_pieces);
    const char *stop = strstr(pieces, "cb");
    size_t want = stop ? (size_t)(stop - pieces) : strlen(pieces);
    cr_expect_eq(c.finish, stop ? FINISH_STOP : FINISH_LENGTH);
    cr_assert(stop, "this seed's text must reach the stop string to test it: %s", pieces);
    cr_expect_eq(c.len, want, "text '%.*s' of '%s'", (int)c.len, c.text, pieces);
    cr_expect_eq(seen.n_text, c.len);
    cr_expect_arr_eq(seen.text, c.text, c.len);
    completion_free(&c);
    session_free(&s);
    tiny_free(&t);
}

/* A cancel flag set by the callback ends the continuation after that token, with finish
 * "cancelled"; the session goes on from there: the next continuation has its full length. */
Test(generate, cancel_flag_ends_a_continuation)
{
    Tiny t;
    tiny_init(&t, 17);
    t.p.max_tokens = 6;
    Session s;
    session_with_prompt(&s, &t, 1);
    atomic_bool cancel = false;
    s.cancel = &cancel;
    Seen seen = {.s = &s, .cancel_after = 2};
    Completion c;
    Error err;
    cr_assert_eq(session_continue(&s, seen_token, &seen, &c, &err), 0, "%s", err.msg);
    cr_expect_eq(c.finish, FINISH_CANCELLED, "finish %s", finish_reason_name(c.finish));
    cr_expect_eq(c.n_tokens, 2);
    cr_expect_str_eq(finish_reason_name(c.finish), "cancelled");
    completion_free(&c);
    atomic_store(&cancel, false);
    cr_assert_eq(session_continue(&s, NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_expect_eq(c.finish, FINISH_LENGTH);
    cr_expect_eq(c.n_tokens, 6);
    completion_free(&c);
    session_free(&s);
    tiny_free(&t);
}
