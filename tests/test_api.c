/* The public API (include/quill.h) as a client uses it, checked against what lies outside
 * it: llama.cpp's greedy text and tokenizer vectors (../shared), each sequence decoded
 * alone in a context of its own, a run that was never interrupted, and the output layer's
 * own product for embeddings. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "loader.h"
#include "quill.h"
#include "test_adapter.h"
#include "test_util.h"

#define STORIES "models/stories260K.gguf"
#define STORIES_REF "models/stories260K.ref.json"
#define PROMPT "Once upon a time"

static quill_sampler *greedy_sampler(const quill_model *m)
{
    quill_sampler_params sp = quill_sampler_params_default();
    cr_assert_eq(quill_sampler_params_preset(&sp, "deterministic"), QUILL_OK);
    quill_sampler *s = quill_sampler_new(m, &sp);
    cr_assert_not_null(s, "%s", quill_last_error());
    return s;
}

static int hex_nibble(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The .ref.json's greedy_text_hex as bytes (malloc'd); *n their count. */
static char *reference_greedy_text(const char *ref_path, size_t *n)
{
    char *json;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(ref_path, &json, &len, &err), 0, "%s", err.msg);
    const char *hex = strstr(json, "\"greedy_text_hex\"");
    cr_assert_not_null(hex);
    hex = strchr(hex + strlen("\"greedy_text_hex\""), '"') + 1;
    *n = strcspn(hex, "\"") / 2;
    char *text = malloc(*n + 1);
    for (size_t i = 0; i < *n; i++)
        text[i] = (char)(hex_nibble(hex[2 * i]) * 16 + hex_nibble(hex[2 * i + 1]));
    text[*n] = '\0';
    free(json);
    return text;
}

/* What a generation's callback saw. */
typedef struct {
    char text[8192];
    size_t len;
    quill_token tokens[512];
    float logprobs[512];
    int n_tokens;
    int stop_after; /* the callback returns false after this many tokens (0: never) */
    volatile int *cancel_after_first; /* set to 1 after the first token, when not NULL */
} Seen;

static bool collect(const quill_token_event *ev, void *user)
{
    Seen *s = user;
    cr_assert_lt(s->len + ev->n_text, sizeof s->text);
    memcpy(s->text + s->len, ev->text, ev->n_text);
    s->len += ev->n_text;
    if (ev->token >= 0) {
        s->logprobs[s->n_tokens] = ev->logprob;
        s->tokens[s->n_tokens++] = ev->token;
    }
    if (s->cancel_after_first)
        *s->cancel_after_first = 1;
    return s->stop_after == 0 || s->n_tokens < s->stop_after;
}

static quill_finish_reason generate(quill_context *c, quill_sampler *s, const char *prompt,
                                    int max_tokens, Seen *seen)
{
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = max_tokens;
    gp.on_token = collect;
    gp.user = seen;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, prompt, &gp, &finish), QUILL_OK, "%s",
                 quill_last_error());
    return finish;
}

/* ---- generation ------------------------------------------------------------------------ */

/* Greedy generation through quill_generate gives llama.cpp's greedy bytes (200 tokens at
 * temperature 0, what `quill generate --no-echo` is checked against), and each token's
 * logprob is the log-softmax of the logits it was chosen from. */
Test(api, greedy_generation_is_llama_cpp_text_byte_for_byte, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    SHARED_FILE_OR_SKIP(ref, STORIES_REF);
    size_t n_want;
    char *want = reference_greedy_text(ref, &n_want);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 1, 256);
    quill_sampler *s = greedy_sampler(m);
    Seen *seen = calloc(1, sizeof *seen);
    cr_expect_eq(generate(c, s, PROMPT, 200, seen), QUILL_FINISH_LENGTH);
    cr_expect_eq(seen->n_tokens, 200);
    cr_assert_eq(seen->len, n_want, "%zu bytes, llama.cpp %zu", seen->len, n_want);
    cr_expect_arr_eq(seen->text, want, n_want, "the greedy text differs from llama.cpp's");

    /* the first token's logprob, by hand from the prompt's logits in a second context */
    quill_context *alone = test_context_new(m, 1, 256);
    quill_token ids[16];
    int n = quill_tokenize(m, PROMPT, strlen(PROMPT), true, false, ids, 16);
    quill_batch b = quill_batch_new(16);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
    cr_assert_eq(quill_decode(alone, &b), QUILL_OK, "%s", quill_last_error());
    const float *logits = quill_logits(alone, n - 1);
    double max = -INFINITY, sum = 0.0;
    for (int v = 0; v < quill_model_vocab_size(m); v++)
        max = logits[v] > max ? logits[v] : max;
    for (int v = 0; v < quill_model_vocab_size(m); v++)
        sum += exp(logits[v] - max);
    double logprob = logits[seen->tokens[0]] - max - log(sum);
    cr_expect_float_eq(seen->logprobs[0], logprob, 1e-5, "logprob %g, by hand %g",
                       seen->logprobs[0], logprob);
    quill_batch_free(&b);
    quill_context_free(alone);
    free(seen);
    free(want);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

/* A stop string ends the text before it: the text is llama.cpp's greedy text up to the
 * first place the stop string occurs in it. */
Test(api, a_stop_string_ends_the_text_before_it, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    SHARED_FILE_OR_SKIP(ref, STORIES_REF);
    size_t n_ref;
    char *ref_text = reference_greedy_text(ref, &n_ref);
    const char *stops[] = {"park. O", "Lily."};
    size_t expected = (size_t)(strstr(ref_text, "Lily.") - ref_text);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 1, 256);
    quill_sampler *s = greedy_sampler(m);
    Seen seen = {0};
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 200;
    gp.stop = stops;
    gp.n_stop = 2;
    gp.on_token = collect;
    gp.user = &seen;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(finish, QUILL_FINISH_STOP, "finish %s", quill_finish_reason_name(finish));
    cr_assert_eq(seen.len, expected, "%zu bytes: '%.*s'", seen.len, (int)seen.len, seen.text);
    cr_expect_arr_eq(seen.text, ref_text, expected);
    free(ref_text);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

/* The callback returning false, and the cancel flag set (here by the callback, as another
 * thread would), end the generation with "cancelled"; a flag set before the call
 * generates nothing. */
Test(api, cancel_from_the_callback_or_the_flag_finishes_cancelled, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 1, 256);
    quill_sampler *s = greedy_sampler(m);
    Seen seen = {.stop_after = 3};
    cr_expect_eq(generate(c, s, PROMPT, 50, &seen), QUILL_FINISH_CANCELLED);
    cr_expect_eq(seen.n_tokens, 3);

    volatile int cancel = 0;
    quill_seq_clear(c, 0);
    Seen flagged = {.cancel_after_first = &cancel};
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 50;
    gp.cancel = &cancel;
    gp.on_token = collect;
    gp.user = &flagged;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(finish, QUILL_FINISH_CANCELLED, "finish %s", quill_finish_reason_name(finish));
    cr_expect_eq(flagged.n_tokens, 1);

    Seen none = {0};
    gp.user = &none;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK);
    cr_expect_eq(finish, QUILL_FINISH_CANCELLED);
    cr_expect_eq(none.n_tokens, 0);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

/* A full context ends the text with "context"; with context_shift the generation goes on,
 * and the shift keeps the first n_keep positions (the prompt's, with n_keep = -1). */
Test(api, a_full_context_ends_the_text_or_shifts_keeping_the_prompt, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 1, 24);
    quill_sampler *s = greedy_sampler(m);
    Seen *seen = calloc(1, sizeof *seen);
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 60;
    gp.on_token = collect;
    gp.user = seen;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(finish, QUILL_FINISH_CONTEXT, "finish %s", quill_finish_reason_name(finish));
    cr_expect_eq(seen->n_tokens, 24 - 5 + 1, "the last token is chosen, then the context is full");

    quill_seq_clear(c, 0);
    memset(seen, 0, sizeof *seen);
    gp.context_shift = true;
    gp.n_keep = -1;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(finish, QUILL_FINISH_LENGTH, "finish %s", quill_finish_reason_name(finish));
    cr_expect_eq(seen->n_tokens, 60);
    quill_token prompt[8], held[24];
    int n_prompt = quill_tokenize(m, PROMPT, strlen(PROMPT), true, false, prompt, 8);
    int n_held = quill_seq_tokens(c, 0, held, 24);
    cr_assert_geq(n_held, n_prompt);
    cr_expect_arr_eq(held, prompt, (size_t)n_prompt * sizeof *held, "the prompt was not kept");
    cr_expect_arr_eq(held + n_held - 3, seen->tokens + 57, 3 * sizeof *held,
                     "the cache does not end with the last tokens generated");
    free(seen);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

/* ---- tokens ------------------------------------------------------------------------------ */

/* A tokenizer file (no weights), loaded with vocab_only. */
static quill_model *vocab_load(const char *path)
{
    quill_model_params mp = quill_model_params_default();
    mp.vocab_only = true;
    quill_model *m = quill_model_load(path, &mp);
    cr_assert_not_null(m, "%s", quill_last_error());
    return m;
}

/* Every case of llama.cpp's GPT-2 vectors: quill_tokenize gives its ids, quill_detokenize
 * gives the text back (byte-level BPE round-trips every byte string), from a model loaded
 * with vocab_only (the file has no weights). */
Test(api, tokenize_and_detokenize_match_llama_cpp_gpt2_vectors)
{
    SHARED_FILE_OR_SKIP(vocab, "vocab/ggml-vocab-gpt-2.gguf");
    quill_model *m = vocab_load(vocab);
    cr_expect_null(quill_context_new(m, NULL));
    cr_expect_not_null(strstr(quill_last_error(), "vocab_only"), "%s", quill_last_error());
    char path[4200], *inp, *out;
    size_t inp_len, out_len;
    Error err;
    snprintf(path, sizeof path, "%s.inp", vocab);
    cr_assert_eq(file_read_all(path, &inp, &inp_len, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s.out", vocab);
    cr_assert_eq(file_read_all(path, &out, &out_len, &err), 0, "%s", err.msg);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int compared = 0;
    char *line = out, *text = inp, *end;
    while ((end = strstr(text, sep)) != NULL) {
        size_t len = (size_t)(end - text);
        quill_token ids[1024], want[1024];
        int n = quill_tokenize(m, text, len, false, false, ids, 1024), n_want = 0;
        char *eol = strchr(line, '\n');
        cr_assert_not_null(eol, "the .out file has fewer lines than cases");
        for (char *p = line; p < eol; p++)
            if (p[0] != ' ' && (p == line || p[-1] == ' '))
                want[n_want++] = (int)strtol(p, NULL, 10);
        cr_assert_eq(n, n_want, "case %d: %d ids, llama.cpp %d", compared, n, n_want);
        cr_expect_arr_eq(ids, want, (size_t)n * sizeof *ids, "case %d", compared);
        char back[4096];
        int n_back = quill_detokenize(m, ids, n, back, sizeof back);
        cr_assert_eq((size_t)n_back, len, "case %d: %d bytes back, %zu in", compared, n_back,
                     len);
        cr_expect_arr_eq(back, text, len, "case %d does not round-trip", compared);
        compared++;
        text = end + strlen(sep);
        line = eol + 1;
    }
    cr_expect_eq(compared, 46, "%d cases compared, want 46", compared);
    free(inp);
    free(out);
    quill_model_free(m);
}

/* quill_token_text is the vocabulary's spelling, not the text: GPT-2 writes the space
 * before "world" as "Ġ" (token 995 of its published vocabulary, 15496 "Hello"), where
 * quill_token_to_piece gives the byte. */
Test(api, token_text_is_the_vocabulary_spelling)
{
    SHARED_FILE_OR_SKIP(vocab, "vocab/ggml-vocab-gpt-2.gguf");
    quill_model *m = vocab_load(vocab);
    cr_expect_str_eq(quill_token_text(m, 995), "\xc4\xa0world");
    cr_expect_str_eq(quill_token_text(m, 15496), "Hello");
    char piece[16];
    cr_expect_eq(quill_token_to_piece(m, 995, piece, sizeof piece), 6);
    cr_expect_str_eq(piece, " world");
    cr_expect_null(quill_token_text(m, quill_model_vocab_size(m)));
    cr_expect_not_null(strstr(quill_last_error(), "not in the vocabulary"), "%s",
                       quill_last_error());
    quill_model_free(m);
}

/* ---- batches and the sequences' caches --------------------------------------------------- */

/* The logits after `ids` decoded from an empty sequence in a context of their own. */
static void logits_alone(quill_model *m, const quill_token *ids, int n, float *out)
{
    quill_context *c = test_context_new(m, 1, 128);
    quill_batch b = quill_batch_new(n);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    memcpy(out, quill_logits(c, n - 1), (size_t)quill_model_vocab_size(m) * sizeof *out);
    quill_batch_free(&b);
    quill_context_free(c);
}

static void expect_close(const float *got, const float *want, int n, float tol, const char *what)
{
    float worst = 0.0f;
    for (int i = 0; i < n; i++)
        worst = fabsf(got[i] - want[i]) > worst ? fabsf(got[i] - want[i]) : worst;
    cr_expect_leq(worst, tol, "%s: logits differ by up to %g", what, worst);
}

/* Sequences at different positions in one batch (a prompt's second part, one decoding step,
 * a whole new prompt, rows interleaved) give the logits of each decoded alone. */
Test(api, a_batch_of_sequences_at_their_own_positions_matches_each_alone, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    int V = quill_model_vocab_size(m);
    quill_token seqs[3][16];
    int lens[3];
    const char *texts[3] = {"Once upon a time there was", "The little dog ran to the big park and",
                            "Lily"};
    for (int k = 0; k < 3; k++)
        lens[k] = quill_tokenize(m, texts[k], strlen(texts[k]), true, false, seqs[k], 16);
    quill_context *c = test_context_new(m, 3, 64);
    quill_batch b = quill_batch_new(64);
    /* first: sequence 0 but its last token, and sequence 1's first 3 */
    for (int i = 0; i < lens[0] - 1; i++)
        quill_batch_add(&b, seqs[0][i], i, 0, false);
    for (int i = 0; i < 3; i++)
        quill_batch_add(&b, seqs[1][i], i, 1, false);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    /* then, interleaved: 0's last token, 1's rest, 2's whole prompt */
    quill_batch_clear(&b);
    int last[3];
    for (int i = 3, j = 0; i < lens[1] || j < lens[2]; i++, j++) {
        if (i == 4) {
            last[0] = b.n_tokens;
            quill_batch_add(&b, seqs[0][lens[0] - 1], lens[0] - 1, 0, true);
        }
        if (i < lens[1]) {
            if (i == lens[1] - 1)
                last[1] = b.n_tokens;
            quill_batch_add(&b, seqs[1][i], i, 1, i == lens[1] - 1);
        }
        if (j < lens[2]) {
            if (j == lens[2] - 1)
                last[2] = b.n_tokens;
            quill_batch_add(&b, seqs[2][j], j, 2, j == lens[2] - 1);
        }
    }
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    float *want = malloc((size_t)V * sizeof *want);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(quill_seq_length(c, k), lens[k]);
        logits_alone(m, seqs[k], lens[k], want);
        const float *got = quill_logits(c, last[k]);
        cr_assert_not_null(got, "%s", quill_last_error());
        expect_close(got, want, V, 1e-5f, texts[k]);
    }
    free(want);
    quill_batch_free(&b);
    quill_context_free(c);
    quill_model_free(m);
}

/* The logits after one more token `next` on sequence seq. */
static const float *step(quill_context *c, int seq, quill_token next)
{
    quill_batch b = quill_batch_new(1);
    quill_batch_add(&b, next, quill_seq_length(c, seq), seq, true);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    quill_batch_free(&b);
    return quill_logits(c, 0);
}

/* After a copy and a truncation to the end, a sequence goes on as the tokens it holds
 * decoded from scratch. A truncation in the middle and a context shift leave the tokens
 * that are left, and decoding goes on after them; their logits are not those of a fresh
 * decode (the kept positions' deeper keys and values carry what the forgotten tokens said,
 * in llama.cpp too): tests/test_infer.c checks the moved keys block by block. */
Test(api, copy_truncate_and_shift_leave_the_tokens_left_and_go_on_from_them, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    int V = quill_model_vocab_size(m);
    const char *text = "Once upon a time there was a little girl named Lily";
    quill_token ids[32], next = 300;
    int n = quill_tokenize(m, text, strlen(text), true, false, ids, 32);
    cr_assert_geq(n, 10);
    quill_context *c = test_context_new(m, 3, 64);
    quill_batch b = quill_batch_new(n);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, false);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    cr_assert_eq(quill_seq_copy(c, 0, 1), QUILL_OK);
    cr_assert_eq(quill_seq_copy(c, 0, 2), QUILL_OK);
    cr_assert_eq(quill_seq_truncate(c, 2, 7, -1), QUILL_OK, "%s", quill_last_error());

    float *want = malloc((size_t)V * sizeof *want);
    quill_token list[33];
    memcpy(list, ids, (size_t)n * sizeof *ids);
    list[n] = next;
    logits_alone(m, list, n + 1, want);
    expect_close(step(c, 1, next), want, V, 1e-5f, "copied sequence");
    list[7] = next;
    logits_alone(m, list, 8, want);
    expect_close(step(c, 2, next), want, V, 1e-5f, "after truncate(7, end)");

    cr_assert_eq(quill_seq_truncate(c, 1, 3, 6), QUILL_OK, "%s", quill_last_error());
    cr_assert_eq(quill_seq_shift(c, 0, 1, 4), QUILL_OK, "%s", quill_last_error());
    quill_token left[2][34], held[34];
    int n_left[2] = {0, 0};
    for (int i = 0; i <= n; i++) {
        quill_token t = i < n ? ids[i] : next; /* sequence 1 took `next` above */
        if (i < 1 || (i >= 5 && i < n))
            left[0][n_left[0]++] = t;
        if (i < 3 || i >= 6)
            left[1][n_left[1]++] = t;
    }
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(quill_seq_tokens(c, k, held, 34), n_left[k]);
        cr_expect_arr_eq(held, left[k], (size_t)n_left[k] * sizeof *held, "sequence %d", k);
        cr_expect_not_null(step(c, k, next), "%s", quill_last_error());
        cr_expect_eq(quill_seq_length(c, k), n_left[k] + 1);
    }
    free(want);
    quill_batch_free(&b);
    quill_context_free(c);
    quill_model_free(m);
}

/* A context made on a thread that last computed on 1 thread, and used on 2, decodes a long
 * prompt as a context that was always on 2 does: its per-thread scratch is sized for its
 * own thread count, not the thread's last one. */
Test(api, a_context_computes_on_its_own_thread_count, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    int V = quill_model_vocab_size(m);
    quill_token ids[128];
    char text[2048] = "";
    for (int i = 0; i < 12; i++)
        strcat(text, "Once upon a time there was a girl. ");
    int n = quill_tokenize(m, text, strlen(text), true, false, ids, 128);
    cr_assert_geq(n, 100);
    n = 100;
    float *want = malloc((size_t)V * sizeof *want);
    logits_alone(m, ids, n, want); /* on 1 thread: the model's n_threads */
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = 128;
    cp.n_threads = 2;
    cp.cache_type = QUILL_CACHE_F32;
    quill_context *c = quill_context_new(m, &cp);
    cr_assert_not_null(c, "%s", quill_last_error());
    quill_batch b = quill_batch_new(n);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    expect_close(quill_logits(c, n - 1), want, V, 1e-4f, "2 threads against 1");
    free(want);
    quill_batch_free(&b);
    quill_context_free(c);
    quill_model_free(m);
}

/* ---- session state ------------------------------------------------------------------------- */

/* A context of n_seq sequences of 128 positions that applies adapter (NULL: none) at scale. */
static quill_context *context_with_lora(quill_model *m, int n_seq, quill_lora *adapter,
                                        float scale)
{
    quill_context *c = test_context_new(m, n_seq, 128);
    if (adapter)
        cr_assert_eq(quill_context_set_lora(c, &adapter, &scale, 1), QUILL_OK, "%s",
                     quill_last_error());
    return c;
}

/* Generates 24 greedy tokens after PROMPT in one go (into *whole), then 12, saved to `state`,
 * loaded into sequence 1 of a fresh context and continued for 12: expects the 24 tokens of
 * the run that was never interrupted. Every context applies adapter (NULL: none) at scale. */
static void expect_a_loaded_state_continues_the_text(quill_model *m, quill_lora *adapter,
                                                     float scale, const char *state, Seen *whole)
{
    quill_sampler *s = greedy_sampler(m);
    Seen first = {0}, rest = {0};
    quill_context *c = context_with_lora(m, 1, adapter, scale);
    generate(c, s, PROMPT, 24, whole);
    quill_context_free(c);

    c = context_with_lora(m, 1, adapter, scale);
    generate(c, s, PROMPT, 12, &first);
    cr_assert_eq(quill_state_save(c, 0, state), QUILL_OK, "%s", quill_last_error());
    quill_context *fresh = context_with_lora(m, 2, adapter, scale);
    cr_assert_eq(quill_state_load(fresh, 1, state), QUILL_OK, "%s", quill_last_error());
    quill_token a[64], b[64];
    int n = quill_seq_tokens(c, 0, a, 64);
    cr_assert_eq(quill_seq_tokens(fresh, 1, b, 64), n);
    cr_expect_arr_eq(a, b, (size_t)n * sizeof *a);
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 12;
    gp.seq = 1;
    gp.on_token = collect;
    gp.user = &rest;
    cr_assert_eq(quill_generate(fresh, s, "", &gp, NULL), QUILL_OK, "%s", quill_last_error());
    cr_assert_eq(whole->n_tokens, 24);
    cr_assert_eq(first.n_tokens + rest.n_tokens, 24);
    cr_expect_arr_eq(first.tokens, whole->tokens, 12 * sizeof(quill_token));
    cr_expect_arr_eq(rest.tokens, whole->tokens + 12, 12 * sizeof(quill_token),
                     "the continuation after loading differs");
    quill_context_free(fresh);
    quill_context_free(c);
    quill_sampler_free(s);
}

/* Saved after 12 tokens, loaded into a fresh context and continued: the 24 tokens of a run
 * that was never interrupted. */
Test(api, a_saved_state_loaded_into_a_fresh_context_continues_the_same_text, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    char state[4200];
    snprintf(state, sizeof state, "%s/state.bin", test_make_tmpdir());
    quill_model *m = test_model_load(path);
    Seen whole = {0};
    expect_a_loaded_state_continues_the_text(m, NULL, 1.0f, state, &whole);
    quill_model_free(m);
}

/* Expects quill_state_load to fail with `message` and leave sequence 0 as it was. */
static void expect_refused(quill_context *c, const char *file, const char *message)
{
    quill_token before[64], after[64];
    int n = quill_seq_tokens(c, 0, before, 64);
    cr_expect_eq(quill_state_load(c, 0, file), QUILL_ERROR, "%s was loaded", file);
    cr_expect_not_null(strstr(quill_last_error(), message), "'%s' has no '%s'",
                       quill_last_error(), message);
    cr_expect_eq(quill_seq_tokens(c, 0, after, 64), n, "the sequence changed");
    cr_expect_arr_eq(before, after, (size_t)n * sizeof *before);
}

/* A flipped byte, a cut file, another model's state and another cache type are errors that
 * say so and leave the sequence as it was. */
Test(api, a_damaged_or_foreign_state_file_is_a_clear_error_that_changes_nothing, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    SHARED_FILE_OR_SKIP(other_path, "models/qtest-f32.gguf");
    const char *dir = test_make_tmpdir();
    char state[4200], damaged[4200], cut[4200], foreign[4200];
    snprintf(state, sizeof state, "%s/state.bin", dir);
    snprintf(damaged, sizeof damaged, "%s/damaged.bin", dir);
    snprintf(cut, sizeof cut, "%s/cut.bin", dir);
    snprintf(foreign, sizeof foreign, "%s/foreign.bin", dir);
    quill_model *m = test_model_load(path), *other = test_model_load(other_path);
    quill_context *c = test_context_new(m, 1, 64);
    quill_sampler *s = greedy_sampler(m);
    Seen seen = {0};
    generate(c, s, PROMPT, 8, &seen);
    cr_assert_eq(quill_state_save(c, 0, state), QUILL_OK, "%s", quill_last_error());
    char *bytes;
    size_t len;
    Error err;
    cr_assert_eq(file_read_all(state, &bytes, &len, &err), 0);
    bytes[len / 2] ^= 0x10;
    cr_assert_eq(file_write_atomic(damaged, bytes, len, &err), 0);
    bytes[len / 2] ^= 0x10;
    cr_assert_eq(file_write_atomic(cut, bytes, len - 100, &err), 0);
    quill_context *oc = test_context_new(other, 1, 64);
    quill_token t = 1;
    quill_batch b = quill_batch_new(1);
    quill_batch_add(&b, t, 0, 0, true);
    cr_assert_eq(quill_decode(oc, &b), QUILL_OK, "%s", quill_last_error());
    cr_assert_eq(quill_state_save(oc, 0, foreign), QUILL_OK, "%s", quill_last_error());

    generate(c, s, " The end", 4, &seen); /* the sequence now holds more than the file */
    expect_refused(c, damaged, "damaged");
    expect_refused(c, cut, "damaged");
    expect_refused(c, foreign, "another model");
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = 64;
    cp.cache_type = QUILL_CACHE_F16;
    quill_context *f16 = quill_context_new(m, &cp);
    cr_expect_eq(quill_state_load(f16, 0, state), QUILL_ERROR);
    cr_expect_not_null(strstr(quill_last_error(), "F16"), "%s", quill_last_error());
    cr_expect_eq(quill_seq_length(f16, 0), 0);
    free(bytes);
    quill_batch_free(&b);
    quill_context_free(f16);
    quill_context_free(oc);
    quill_context_free(c);
    quill_sampler_free(s);
    quill_model_free(other);
    quill_model_free(m);
}

/* A cache computed with a LoRA adapter belongs to that adapter at that scale: its state
 * continues the text in a context that applies the same (and the adapter changes the text,
 * so the comparison sees it), and is refused, the sequence left as it was, by a context
 * without the adapter or with it at another scale; a state saved without adapters is
 * refused where one applies. */
Test(api, a_state_loads_only_where_the_same_lora_adapters_apply, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    const char *dir = test_make_tmpdir();
    char adapter_file[4200], plain[4200], adapted[4200];
    snprintf(adapter_file, sizeof adapter_file, "%s/adapter.gguf", dir);
    snprintf(plain, sizeof plain, "%s/plain.bin", dir);
    snprintf(adapted, sizeof adapted, "%s/adapted.bin", dir);
    test_write_adapter(adapter_file, path, &TEST_ADAPTER);
    quill_model *m = test_model_load(path);
    quill_lora *adapter = quill_lora_load(m, adapter_file);
    cr_assert_not_null(adapter, "%s", quill_last_error());
    Seen without = {0}, with = {0};
    expect_a_loaded_state_continues_the_text(m, NULL, 1.0f, plain, &without);
    expect_a_loaded_state_continues_the_text(m, adapter, 0.5f, adapted, &with);
    cr_assert_neq(memcmp(with.tokens, without.tokens, 24 * sizeof(quill_token)), 0,
                  "the adapter did not change the greedy text");

    const char *message = "was saved with other LoRA adapters (or scales) than this context";
    quill_sampler *s = greedy_sampler(m);
    quill_context *contexts[3] = {context_with_lora(m, 1, NULL, 1.0f),
                                  context_with_lora(m, 1, adapter, 1.0f),
                                  context_with_lora(m, 1, adapter, 0.5f)};
    const char *states[3] = {adapted, adapted, plain};
    int refused = 0;
    for (int i = 0; i < 3; i++, refused++) {
        Seen seen = {0};
        generate(contexts[i], s, " The end", 4, &seen);
        expect_refused(contexts[i], states[i], message);
        cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_CONTEXT, "case %d", i);
        quill_context_free(contexts[i]);
    }
    cr_assert_eq(refused, 3);
    quill_sampler_free(s);
    quill_lora_free(adapter);
    quill_model_free(m);
}

/* ---- embeddings ------------------------------------------------------------------------------ */

/* The last token's embedding (not normalised) is the final hidden state the output layer
 * reads: its product with the output matrix is the model's logits. The same text gives the
 * same vector, and a normalised one has length 1. */
Test(api, embeddings_are_the_final_hidden_states_the_output_layer_reads, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    int C = quill_model_embedding_size(m), V = quill_model_vocab_size(m);
    Model weights;
    Tokenizer tok;
    Error err;
    cr_assert_eq(model_file_load(path, &weights, &tok, &err), 0, "%s", err.msg);
    cr_assert_eq(weights.wt.output.type, GGML_TYPE_F32, "the test reads F32 output weights");
    const float *W = weights.wt.output.data; /* (V, C) */
    quill_token ids[16];
    int n = quill_tokenize(m, PROMPT, strlen(PROMPT), true, false, ids, 16);
    quill_context *c = test_context_new(m, 2, 64);
    float *last = malloc((size_t)C * sizeof *last), *again = malloc((size_t)C * sizeof *again);
    cr_assert_eq(quill_embed(c, 1, ids, n, QUILL_POOL_LAST, false, last), QUILL_OK, "%s",
                 quill_last_error());
    float *want = malloc((size_t)V * sizeof *want);
    logits_alone(m, ids, n, want);
    float worst = 0.0f;
    for (int v = 0; v < V; v++) {
        double dot = 0.0;
        for (int j = 0; j < C; j++)
            dot += (double)last[j] * W[(size_t)v * C + j];
        worst = fabsf((float)dot - want[v]) > worst ? fabsf((float)dot - want[v]) : worst;
    }
    cr_expect_leq(worst, 1e-4f, "embedding x output differs from the logits by %g", worst);

    for (int pooling = QUILL_POOL_MEAN; pooling <= QUILL_POOL_LAST; pooling++) {
        cr_assert_eq(quill_embed(c, 0, ids, n, pooling, true, last), QUILL_OK);
        cr_assert_eq(quill_embed(c, 0, ids, n, pooling, true, again), QUILL_OK);
        cr_expect_arr_eq(last, again, (size_t)C * sizeof *last, "the same text twice differs");
        double norm = 0.0;
        for (int j = 0; j < C; j++)
            norm += (double)last[j] * last[j];
        cr_expect_float_eq(sqrt(norm), 1.0, 1e-5, "norm %g", sqrt(norm));
    }
    cr_expect_eq(quill_seq_length(c, 0), n, "the sequence holds the text afterwards");
    free(last);
    free(again);
    free(want);
    model_free(&weights);
    tokenizer_free(&tok);
    quill_context_free(c);
    quill_model_free(m);
}

/* ---- the sampler's stages ------------------------------------------------------------------ */

/* With a trace, each stage of the chain and the final list come back as data: most likely
 * first, and the last step's first candidate is the greedy token. */
Test(api, the_sampler_stages_are_data, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params sp = quill_sampler_params_default();
    sp.chain = "top-k,temperature";
    sp.top_k = 5;
    sp.temperature = 0.0f;
    quill_sampler *s = quill_sampler_new(m, &sp);
    cr_assert_not_null(s, "%s", quill_last_error());
    cr_assert_eq(quill_sampler_trace(s, 3), QUILL_OK);
    quill_context *c = test_context_new(m, 1, 64);
    quill_token ids[16];
    int n = quill_tokenize(m, PROMPT, strlen(PROMPT), true, false, ids, 16);
    quill_batch b = quill_batch_new(16);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK);
    quill_token token = quill_sampler_sample(s, quill_logits(c, n - 1));
    quill_stage_candidates stages[8];
    int n_stages = quill_sampler_stages(s, stages, 8);
    cr_assert_eq(n_stages, 3, "top-k, temperature and the final list: %d", n_stages);
    cr_expect_str_eq(stages[0].stage, "top-k");
    cr_expect_eq(stages[0].n_survivors, 5);
    cr_expect_str_eq(stages[2].stage, "chain");
    cr_expect_eq(stages[2].top[0].token, token);
    for (int k = 0; k < n_stages; k++) {
        cr_expect_eq(stages[k].n_top, 3);
        for (int i = 1; i < stages[k].n_top; i++)
            cr_expect_geq(stages[k].top[i - 1].p, stages[k].top[i].p);
    }
    quill_batch_free(&b);
    quill_context_free(c);
    quill_sampler_free(s);
    quill_model_free(m);
}

/* A grammar in the sampler's parameters shapes what quill_generate writes: over 10 seeds
 * every text is accepted by `quill grammar --check` (the recognizer read whole, not the
 * stage), each ends as "eos" once the grammar can take nothing more, and seeds differ. A
 * grammar with a mistake fails quill_sampler_new with its position, as a parameter error. */
#define API_GRAMMAR "root ::= (\"cat\" | \"dog\" | \"sun\") (\" \" [a-z]+){1,3} \".\""

Test(api, a_grammar_in_the_sampler_params_shapes_the_text, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 1, 128);
    int compared = 0, differ = 0;
    char first[256] = "";
    for (uint64_t seed = 1; seed <= 10; seed++) {
        quill_sampler_params sp = quill_sampler_params_default();
        sp.seed = seed;
        sp.grammar = API_GRAMMAR;
        quill_sampler *s = quill_sampler_new(m, &sp);
        cr_assert_not_null(s, "%s", quill_last_error());
        cr_assert_eq(quill_seq_clear(c, 0), QUILL_OK);
        Seen *seen = calloc(1, sizeof *seen);
        cr_expect_eq(generate(c, s, PROMPT, 48, seen), QUILL_FINISH_EOS, "seed %d",
                     (int)seed);
        char *verdict;
        cr_assert_eq(quill(&verdict, "grammar --grammar '%s' --check '%s'", API_GRAMMAR,
                           seen->text), 0);
        cr_expect_str_eq(verdict, "accept\n", "seed %d: '%s'", (int)seed, seen->text);
        if (seed == 1)
            snprintf(first, sizeof first, "%.200s", seen->text);
        differ += strcmp(first, seen->text) != 0;
        compared++;
        free(verdict);
        free(seen);
        quill_sampler_free(s);
    }
    cr_assert_eq(compared, 10);
    cr_expect_gt(differ, 0, "10 seeds gave the one text '%s'", first);

    quill_sampler_params bad = quill_sampler_params_default();
    bad.grammar = "root ::= (\"a\" | \"b\"";
    cr_expect_null(quill_sampler_new(m, &bad));
    cr_expect_str_eq(quill_last_error(), "grammar: line 1, column 20: expecting ')'");
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_PARAMETER);
    quill_context_free(c);
    quill_model_free(m);
}

/* ---- bad arguments ------------------------------------------------------------------ */

static void expect_error(int status, const char *message)
{
    cr_expect_eq(status, QUILL_ERROR);
    cr_expect_not_null(strstr(quill_last_error(), message), "'%s' has no '%s'",
                       quill_last_error(), message);
}

/* What a traced generation shows its callback: the stages of the token reported (greedy:
 * the chain's most likely candidate is the token, and the one marked chosen), and after
 * the call the context's counts: the prompt's tokens and one generated per event. */
typedef struct {
    quill_sampler *s;
    int events, staged;
} TraceWatch;

static bool watch_stages(const quill_token_event *ev, void *user)
{
    TraceWatch *w = user;
    if (ev->token < 0)
        return true;
    w->events++;
    quill_stage_candidates stages[16]; /* every stage of the default chain and the final list */
    int n = quill_sampler_stages(w->s, stages, 16);
    w->staged += n > 0 && n <= 16 && strcmp(stages[n - 1].stage, "chain") == 0 &&
                 stages[n - 1].top[0].token == ev->token &&
                 quill_sampler_chosen(w->s) == ev->token;
    return true;
}

Test(api, a_traced_generation_shows_each_tokens_stages_and_counts_its_work, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler *s = greedy_sampler(m);
    cr_assert_eq(quill_sampler_trace(s, 4), QUILL_OK);
    quill_context *c = test_context_new(m, 1, 64);
    TraceWatch w = {.s = s};
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 12;
    gp.on_token = watch_stages;
    gp.user = &w;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, &finish), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(w.events, 12);
    cr_expect_eq(w.staged, w.events, "%d of %d tokens had their stages", w.staged, w.events);
    quill_perf perf = quill_context_perf(c);
    int n_prompt = quill_tokenize(m, PROMPT, strlen(PROMPT), true, false, NULL, 0);
    cr_expect_eq(perf.n_prompt_tokens, n_prompt);
    cr_expect_eq(perf.n_generated, 12);
    char line[160];
    quill_context_describe(c, line, sizeof line);
    /* 5 layers x 2 (keys, values) x 64 positions x 32 values x 4 bytes (F32) */
    cr_expect_str_eq(line, "KV cache 81920 bytes = 0.08 MB (f32, 64 positions)");
    cr_expect(quill_token_is_control(m, quill_token_bos(m)));
    cr_expect(!quill_token_is_control(m, quill_sampler_chosen(s)));
    quill_context_free(c);
    quill_sampler_free(s);
    quill_model_free(m);
}

/* Each argument a caller can get wrong is an error with a message that names it. */
Test(api, bad_arguments_are_errors_with_a_message, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    cr_expect_null(quill_model_load("/nonexistent/model.gguf", NULL));
    cr_expect_not_null(strstr(quill_last_error(), "/nonexistent/model.gguf"), "%s",
                       quill_last_error());
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 2, 32);
    quill_token ids[4];
    expect_error(quill_tokenize(NULL, "a", 1, false, false, ids, 4), "model is NULL");
    expect_error(quill_tokenize(m, "a", 1, false, false, ids, -1), "a buffer of -1 tokens");
    expect_error(quill_token_to_piece(m, 512, NULL, 0), "token 512 is not in the vocabulary");
    expect_error(quill_seq_clear(c, 2), "no sequence 2");
    expect_error(quill_seq_copy(c, 0, -1), "no sequence -1");
    expect_error(quill_seq_truncate(c, 0, 0, 5), "positions [0, 5)");
    quill_batch b = quill_batch_new(2);
    quill_batch_add(&b, 1, 1, 0, true); /* position 1 of an empty sequence */
    expect_error(quill_decode(c, &b), "position 1");
    quill_batch_clear(&b);
    quill_batch_add(&b, 9999, 0, 0, true);
    expect_error(quill_decode(c, &b), "token 9999");
    quill_batch_add(&b, 1, 1, 0, true);
    expect_error(quill_batch_add(&b, 1, 2, 0, true), "the batch is full");
    cr_expect_eq(quill_seq_length(c, 0), 0, "a refused batch changed the cache");
    expect_error(quill_generate(c, NULL, PROMPT, NULL, NULL), "sampler is NULL");
    quill_sampler_params sp = quill_sampler_params_default();
    sp.chain = "top-k,warp";
    cr_expect_null(quill_sampler_new(m, &sp));
    cr_expect_not_null(strstr(quill_last_error(), "warp"), "%s", quill_last_error());
    quill_context_params cp = quill_context_params_default();
    cp.n_seq = 0;
    cr_expect_null(quill_context_new(m, &cp));
    cr_expect_not_null(strstr(quill_last_error(), "n_seq 0"), "%s", quill_last_error());
    quill_batch_free(&b);
    quill_context_free(c);
    quill_model_free(m);
}

/* quill_last_error_kind: what a binding raises. Nothing failed yet on a new thread; a
 * missing file and a text file as a model are FILE; a bad argument PARAMETER; a prompt
 * longer than the context, an unknown sequence and positions out of order CONTEXT. */
static void *first_kind(void *arg)
{
    *(quill_error_kind *)arg = quill_last_error_kind();
    return NULL;
}

Test(api, error_kinds_say_what_failed, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_error_kind fresh = QUILL_ERROR_MEMORY;
    pthread_t thread;
    pthread_create(&thread, NULL, first_kind, &fresh);
    pthread_join(thread, NULL);
    cr_expect_eq(fresh, QUILL_ERROR_NONE);
    cr_expect_null(quill_model_load("/nonexistent/model.gguf", NULL));
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_FILE, "%s", quill_last_error());
    const char *dir = test_make_tmpdir();
    char text[512];
    snprintf(text, sizeof text, "%s/notes.gguf", dir);
    Error err;
    cr_assert_eq(file_write_atomic(text, "just some text\n", 15, &err), 0, "%s", err.msg);
    cr_expect_null(quill_model_load(text, NULL));
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_FILE, "%s", quill_last_error());

    quill_model *m = test_model_load(path);
    quill_context_params cp = quill_context_params_default();
    cp.n_ctx = -1;
    cr_expect_null(quill_context_new(m, &cp));
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_PARAMETER, "%s", quill_last_error());
    quill_context *c = test_context_new(m, 1, 8);
    cr_expect_eq(quill_seq_clear(c, 3), QUILL_ERROR);
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_CONTEXT, "%s", quill_last_error());
    quill_sampler *s = quill_sampler_new(m, NULL);
    cr_expect_eq(quill_generate(c, s, "Once upon a time there was a little girl named Lily",
                                NULL, NULL), QUILL_ERROR);
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_CONTEXT, "%s", quill_last_error());
    quill_batch b = quill_batch_new(1);
    quill_batch_add(&b, 9999, 0, 0, true);
    expect_error(quill_decode(c, &b), "token 9999");
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_PARAMETER, "%s", quill_last_error());
    quill_batch_clear(&b);
    quill_batch_add(&b, 1, 3, 0, true);
    cr_expect_eq(quill_decode(c, &b), QUILL_ERROR);
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_CONTEXT, "%s", quill_last_error());
    quill_batch_free(&b);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

/* quill_beam_search is `quill generate --beam-size 4`: the best text byte for byte, and
 * n_best texts best first. */
Test(api, beam_search_is_the_command_lines, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    char *expected, *messages;
    int status;
    quill_stdout(&expected, &messages, &status, "generate %s --no-echo --prompt '%s' "
                 "--beam-size 4 -n 30", path, PROMPT);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    quill_model *m = test_model_load(path);
    quill_context *c = test_context_new(m, 4, 64);
    quill_sampler *s = quill_sampler_new(m, NULL);
    quill_beam_params p = quill_beam_params_default();
    p.max_tokens = 30;
    p.n_best = 3;
    quill_beam_result best[3];
    int n = quill_beam_search(c, s, PROMPT, &p, best, 3);
    cr_assert_eq(n, 3, "%s", quill_last_error());
    cr_expect_str_eq(best[0].text, expected);
    cr_expect_eq(best[0].n_text, strlen(expected));
    cr_expect_geq(best[0].score, best[1].score);
    cr_expect_geq(best[1].score, best[2].score);
    cr_expect_str_neq(best[1].text, best[0].text);
    quill_beam_results_free(best, n);
    p.beam_size = 5; /* more beams than the context's sequences */
    cr_expect_eq(quill_beam_search(c, s, PROMPT, &p, best, 3), QUILL_ERROR);
    cr_expect_eq(quill_last_error_kind(), QUILL_ERROR_CONTEXT, "%s", quill_last_error());
    free(expected);
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}
