/* Classifier-free guidance (quill_generate_params' guide, negative_prompt, guidance_scale;
 * `quill generate --guide`), checked against what lies outside it: plain runs of the
 * conditional and the unconditional texts (S = 1 and S = 0 must be them, token for token),
 * the two sides' logits decoded alone in contexts of their own with the formula written
 * out here, and the arithmetic at the ends of the scale bit for bit. On stories260K. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quill.h"
#include "session.h"
#include "test_util.h"

#define STORIES "models/stories260K.gguf"
#define PROMPT "Once upon a time"
#define GUIDE "Lily was very happy. "
#define NEGATIVE "Tom was sad and angry. "

enum { RUN_TOKENS = 48 };

/* ---- the arithmetic -------------------------------------------------------------------- */

/* At S = 1 the sampler must read the conditional row itself and at S = 0 the unconditional
 * one, bit for bit. The textbook form uncond + S (cond - uncond) is not exact at S = 1:
 * with uncond = 1e8, cond - uncond rounds to -1e8 and 0.1 comes back as 0. */
Test(guidance, the_mix_is_exact_at_both_ends_where_the_textbook_form_is_not)
{
    const float cond[] = {0.1f, 1e8f, -3.3f, 16.123f, 0.7f, -1e-7f};
    const float uncond[] = {1e8f, 0.1f, 7.7f, -0.3f, -2.9f, 5.5f};
    enum { N = sizeof cond / sizeof *cond };
    float out[N];
    guidance_mix(cond, uncond, 1.0f, out, N);
    cr_expect_eq(memcmp(out, cond, sizeof out), 0, "S = 1 is the conditional row");
    guidance_mix(cond, uncond, 0.0f, out, N);
    cr_expect_eq(memcmp(out, uncond, sizeof out), 0, "S = 0 is the unconditional row");
    volatile float one = 1.0f; /* kept from being folded away */
    float textbook = uncond[0] + one * (cond[0] - uncond[0]);
    cr_expect_neq(textbook, cond[0], "the case where the textbook form misses cond");
    /* between and beyond the ends: the formula, to float rounding */
    const float scales[] = {0.5f, 1.5f, 3.0f};
    for (int k = 0; k < 3; k++) {
        guidance_mix(cond, uncond, scales[k], out, N);
        for (int i = 0; i < N; i++) {
            double want = uncond[i] + (double)scales[k] * ((double)cond[i] - uncond[i]);
            cr_expect_leq(fabs(out[i] - want), 1e-6 * fmax(1.0, fabs(want)) * 4,
                          "S %g, %d: %g, want %g", scales[k], i, out[i], want);
        }
    }
}

/* ---- whole runs ------------------------------------------------------------------------ */

/* RUN_TOKENS tokens of a run (the end of text ignored, so every run has them all): a plain
 * one of prompt when guide and negative are NULL, else a guided one at scale. */
static void run(quill_model *m, const quill_sampler_params *sp, const char *prompt,
                const char *guide, const char *negative, float scale,
                quill_token out[RUN_TOKENS])
{
    bool guided = guide || negative;
    quill_context *c = test_context_new(m, guided ? 2 : 1, 128);
    quill_sampler *s = quill_sampler_new(m, sp);
    cr_assert_not_null(s, "%s", quill_last_error());
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = RUN_TOKENS;
    gp.ignore_eos = true;
    gp.guide = guide;
    gp.negative_prompt = negative;
    gp.guidance_scale = scale;
    quill_finish_reason finish;
    cr_assert_eq(quill_generate(c, s, prompt, &gp, &finish), QUILL_OK, "%s",
                 quill_last_error());
    cr_assert_eq(finish, QUILL_FINISH_LENGTH);
    /* the run's tokens are the last RUN_TOKENS sequence 0 holds (quill_generate feeds the
     * last one back too) */
    quill_token held[128];
    int len = quill_seq_tokens(c, 0, held, 128);
    cr_assert_geq(len, RUN_TOKENS);
    memcpy(out, held + len - RUN_TOKENS, RUN_TOKENS * sizeof *out);
    quill_sampler_free(s);
    quill_context_free(c);
}

static int differences(const quill_token *a, const quill_token *b)
{
    int d = 0;
    for (int i = 0; i < RUN_TOKENS; i++)
        d += a[i] != b[i];
    return d;
}

static quill_sampler_params greedy_params(void)
{
    quill_sampler_params sp = quill_sampler_params_default();
    sp.temperature = 0.0f;
    return sp;
}

/* A seeded draw over the default filters at temperature 1, where a small change in the
 * logits would change the tokens drawn. */
static quill_sampler_params drawn_params(void)
{
    quill_sampler_params sp = quill_sampler_params_default();
    sp.temperature = 1.0f;
    sp.seed = 1234;
    return sp;
}

static void expect_same_run(const quill_token *got, const quill_token *want, const char *what)
{
    for (int i = 0; i < RUN_TOKENS; i++)
        cr_expect_eq(got[i], want[i], "%s: token %d is %d, the plain run's %d", what, i, got[i],
                     want[i]);
}

/* S = 1: the conditional side alone, which is the guide then the prompt; with the
 * penalties on too, as they read the conditional side's history. */
Test(guidance, strength_1_is_the_conditional_prompt_token_for_token, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params kinds[2] = {greedy_params(), drawn_params()};
    kinds[1].repeat_penalty = 1.2f;
    const char *names[2] = {"greedy", "seeded draw with a repeat penalty"};
    for (int k = 0; k < 2; k++) {
        quill_token guided[RUN_TOKENS], plain[RUN_TOKENS];
        run(m, &kinds[k], PROMPT, GUIDE, NEGATIVE, 1.0f, guided);
        run(m, &kinds[k], GUIDE PROMPT, NULL, NULL, 1.0f, plain);
        expect_same_run(guided, plain, names[k]);
    }
    quill_model_free(m);
}

/* S = 0: the unconditional side alone, the negative prompt then the prompt, or the prompt
 * alone without one. */
Test(guidance, strength_0_is_the_unconditional_prompt_token_for_token, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params kinds[2] = {greedy_params(), drawn_params()};
    const char *negatives[2] = {NEGATIVE, NULL};
    const char *plains[2] = {NEGATIVE PROMPT, PROMPT};
    int compared = 0;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2; j++) {
            quill_token guided[RUN_TOKENS], plain[RUN_TOKENS];
            run(m, &kinds[k], PROMPT, GUIDE, negatives[j], 0.0f, guided);
            run(m, &kinds[k], plains[j], NULL, NULL, 1.0f, plain);
            expect_same_run(guided, plain, plains[j]);
            compared++;
        }
    cr_expect_eq(compared, 4);
    quill_model_free(m);
}

/* Between and beyond: S = 3 writes a text of its own (else the runs above prove nothing
 * about the mix), greedy. */
Test(guidance, strength_3_is_neither_side, .timeout = 120)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params sp = greedy_params();
    quill_token guided[RUN_TOKENS], cond[RUN_TOKENS], uncond[RUN_TOKENS];
    run(m, &sp, PROMPT, GUIDE, NULL, 3.0f, guided);
    run(m, &sp, GUIDE PROMPT, NULL, NULL, 1.0f, cond);
    run(m, &sp, PROMPT, NULL, NULL, 1.0f, uncond);
    cr_expect_gt(differences(guided, cond), 0);
    cr_expect_gt(differences(guided, uncond), 0);
    quill_model_free(m);
}

/* ---- one step's logits ----------------------------------------------------------------- */

/* The logits after text, decoded alone in a context of its own (V floats, malloc'd). */
static float *logits_alone(quill_model *m, const char *text)
{
    quill_token ids[64];
    int n = quill_tokenize(m, text, strlen(text), true, false, ids, 64);
    cr_assert(n > 0 && n <= 64);
    quill_context *c = test_context_new(m, 1, 128);
    quill_batch b = quill_batch_new(n);
    for (int i = 0; i < n; i++)
        quill_batch_add(&b, ids[i], i, 0, i == n - 1);
    cr_assert_eq(quill_decode(c, &b), QUILL_OK, "%s", quill_last_error());
    int V = quill_model_vocab_size(m);
    float *out = malloc((size_t)V * sizeof *out);
    memcpy(out, quill_logits(c, n - 1), (size_t)V * sizeof *out);
    quill_batch_free(&b);
    quill_context_free(c);
    return out;
}

enum { TOP = 8 };

/* The first step at S = 3, seen through the sampler's trace (its first stage, top-k 8,
 * lists the 8 largest logits it was given with their values), against
 * uncond + 3 (cond - uncond) of the two sides' logits computed here, each side alone. The
 * mix is of the raw logits: the log-softmax form would differ from it by a constant of
 * several units. The two sides share one batch in the run, which rounds differently from a
 * lone pass (tests/test_infer.c: 1e-5 of the logits' scale), times the scale. */
Test(guidance, a_steps_logits_are_the_formula_on_the_two_sides_logits, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    const float S = 3.0f;
    int V = quill_model_vocab_size(m);
    float *cond = logits_alone(m, GUIDE PROMPT), *uncond = logits_alone(m, PROMPT);
    double *want = malloc((size_t)V * sizeof *want);
    for (int i = 0; i < V; i++)
        want[i] = uncond[i] + (double)S * ((double)cond[i] - uncond[i]);
    quill_sampler_params sp = quill_sampler_params_default();
    sp.chain = "top-k";
    sp.top_k = TOP;
    quill_sampler *s = quill_sampler_new(m, &sp);
    cr_assert_not_null(s, "%s", quill_last_error());
    cr_assert_eq(quill_sampler_trace(s, TOP), QUILL_OK);
    quill_context *c = test_context_new(m, 2, 128);
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 1;
    gp.guide = GUIDE;
    gp.guidance_scale = S;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, NULL), QUILL_OK, "%s", quill_last_error());
    quill_stage_candidates stages[4];
    cr_assert_geq(quill_sampler_stages(s, stages, 4), 1);
    cr_assert_str_eq(stages[0].stage, "top-k");
    cr_assert_eq(stages[0].n_top, TOP);
    /* the 9th largest formula value: every traced token must be above it */
    double ninth = -INFINITY, tol = 1e-3;
    bool *traced = calloc((size_t)V, sizeof *traced);
    for (int k = 0; k < TOP; k++) {
        const quill_candidate *got = &stages[0].top[k];
        traced[got->token] = true;
        cr_expect_leq(fabs(got->logit - want[got->token]), tol,
                      "token %d: logit %g, the formula %g", got->token, got->logit,
                      want[got->token]);
    }
    for (int i = 0; i < V; i++)
        if (!traced[i] && want[i] > ninth)
            ninth = want[i];
    for (int k = 0; k < TOP; k++)
        cr_expect_geq(want[stages[0].top[k].token], ninth - tol,
                      "token %d is among the 8 largest", stages[0].top[k].token);
    free(traced);
    free(want);
    free(cond);
    free(uncond);
    quill_context_free(c);
    quill_sampler_free(s);
    quill_model_free(m);
}

/* ---- continuing, and what cannot be ---------------------------------------------------- */

/* A second call continues both sides: the same tokens as one call of twice the length. */
Test(guidance, a_later_call_continues_both_sides, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params sp = greedy_params();
    quill_token whole[RUN_TOKENS];
    run(m, &sp, PROMPT, GUIDE, NULL, 3.0f, whole);
    quill_context *c = test_context_new(m, 2, 128);
    quill_sampler *s = quill_sampler_new(m, &sp);
    quill_generate_params gp = quill_generate_params_default();
    gp.guide = GUIDE;
    gp.guidance_scale = 3.0f;
    gp.ignore_eos = true;
    gp.max_tokens = RUN_TOKENS / 2;
    cr_assert_eq(quill_generate(c, s, PROMPT, &gp, NULL), QUILL_OK, "%s", quill_last_error());
    int first = quill_seq_length(c, 1);
    gp.max_tokens = RUN_TOKENS - RUN_TOKENS / 2;
    cr_assert_eq(quill_generate(c, s, "", &gp, NULL), QUILL_OK, "%s", quill_last_error());
    cr_expect_eq(quill_seq_length(c, 1), first + RUN_TOKENS - RUN_TOKENS / 2,
                 "the unconditional side got every token too");
    quill_token held[128];
    int len = quill_seq_tokens(c, 0, held, 128);
    expect_same_run(held + len - RUN_TOKENS, whole, "two calls");
    quill_sampler_free(s);
    quill_context_free(c);
    quill_model_free(m);
}

static void expect_error(quill_context *c, quill_sampler *s, const quill_generate_params *gp,
                         const char *message)
{
    cr_expect_eq(quill_generate(c, s, PROMPT, gp, NULL), QUILL_ERROR);
    cr_expect_not_null(strstr(quill_last_error(), message), "'%s' has no '%s'",
                       quill_last_error(), message);
}

Test(guidance, parameters_that_cannot_work_are_errors, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    quill_model *m = test_model_load(path);
    quill_sampler_params sp = greedy_params();
    quill_sampler *s = quill_sampler_new(m, &sp);
    quill_context *one = test_context_new(m, 1, 128), *two = test_context_new(m, 2, 128);
    quill_generate_params gp = quill_generate_params_default();
    gp.max_tokens = 4;
    gp.negative_prompt = NEGATIVE;
    expect_error(one, s, &gp, "the context has 1 (give it n_seq >= 2)");
    gp.guidance_seq = 0;
    expect_error(two, s, &gp, "guidance_seq (0) other than seq (0)");
    gp.guidance_seq = 1;
    gp.guidance_scale = NAN;
    expect_error(two, s, &gp, "finite guidance_scale");
    gp.guidance_scale = 2.0f;
    gp.context_shift = true;
    expect_error(two, s, &gp, "context_shift");
    gp.context_shift = false;
    quill_generate_params plain = quill_generate_params_default();
    plain.max_tokens = 2;
    cr_assert_eq(quill_generate(two, s, PROMPT, &plain, NULL), QUILL_OK);
    expect_error(two, s, &gp, "guidance starts on an empty sequence");
    quill_context_free(one);
    quill_context_free(two);
    quill_sampler_free(s);
    quill_model_free(m);
}

/* ---- the command line ------------------------------------------------------------------ */

/* --guide-attribute positive at --guide-strength 1 is the plain run of the table's text
 * (docs/sampling.md) before the prompt; greedy, through the binary. */
Test(guidance, the_command_lines_attribute_at_strength_1_is_its_text_before_the_prompt,
     .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    char *guided, *plain, *messages;
    int status;
    quill_stdout(&guided, &messages, &status,
                 "generate %s --prompt '" PROMPT "' --guide-attribute positive "
                 "--guide-strength 1 --temperature 0 -n 40 --no-echo --threads 1", path);
    cr_assert_eq(status, 0, "%s", messages);
    free(messages);
    quill_stdout(&plain, &messages, &status,
                 "generate %s --prompt 'This is a happy story with a kind, cheerful ending. "
                 PROMPT "' --temperature 0 -n 40 --no-echo --threads 1", path);
    cr_assert_eq(status, 0, "%s", messages);
    cr_expect_gt(strlen(plain), 40);
    cr_expect_str_eq(guided, plain);
    free(messages);
    free(guided);
    free(plain);
}

Test(guidance, bad_command_lines_are_one_clear_error, .timeout = 60)
{
    SHARED_FILE_OR_SKIP(path, STORIES);
    expect_clean_error("--guide-strength expects a number, got 'strong'",
                       "generate %s --prompt hi --guide x --guide-strength strong", path);
    expect_clean_error("--guide-attribute expects one of positive, negative, formal, simple, "
                       "got 'happy'", "generate %s --prompt hi --guide-attribute happy", path);
    expect_clean_error("--guide and --guide-attribute both give the guide",
                       "generate %s --prompt hi --guide x --guide-attribute formal", path);
    expect_clean_error("not with --beam-size",
                       "generate %s --prompt hi --negative-prompt x --beam-size 2", path);
    expect_clean_error("not with --num-samples",
                       "generate %s --prompt hi --guide x --num-samples 2", path);
    expect_clean_error("not with --context-shift",
                       "generate %s --prompt hi --guide x --context-shift", path);
    expect_clean_error("not with --interactive", "chat %s --guide x", path);
}
