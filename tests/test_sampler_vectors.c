/* llama.cpp's sampler test vectors (its tests/test-sampling.cpp), written out as quill's own
 * data and run through quill's stages, plus DRY across sequence breakers.
 *
 * Each vector is a small distribution (token i has probability probs[i], so logit
 * ln probs[i]), the tokens accepted before (penalties and DRY read them), one stage with its
 * settings, and the probabilities that survive, most likely first, within 1e-5 as
 * llama.cpp checks them. Where quill's answer has another form than llama.cpp's, the
 * vector says why:
 *   - llama.cpp's typical and XTC tests look at p as the filter left it, without a new
 *     softmax ({0.2, 0.1} of {0.4, 0.3, 0.2, 0.1}); sampler_apply always ends with one, so
 *     those vectors (RENORM) are compared after dividing by their sum;
 *   - llama.cpp's top-n-sigma marks the tokens it drops with p = 0; quill removes them;
 *   - llama.cpp's temperature 0 keeps only the most likely token; in quill temperature
 *     <= 0 is greedy selection, and sampler_apply's list stays the untempered
 *     distribution (beam search reads its log-probabilities): those vectors (GREEDY)
 *     check the list and that sampler_select picks the most likely token.
 * llama.cpp's top-p, min-p and typical tests pass min_keep 1, its XTC test 0: quill's
 * min_keep 0 (the default) keeps one, which is the same on these vectors.
 *
 * Mirostat has no vector in test-sampling.cpp; its mu over 10 steps is worked out by hand
 * in test_sampler.c (sampler_new/mirostat_v2_mu_follows_the_surprise and the version 1
 * test beside it). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "test_util.h"
#include "tokenizer.h"

enum { MAX_N = 16, RENORM = 1, GREEDY = 2 };

typedef struct {
    const char *what; /* llama.cpp's call, for messages */
    SamplerStage stage;
    float x, y, z;    /* the stage's numbers, in llama.cpp's argument order */
    int k, last_n;    /* top-k / allowed length, and the penalty window */
    int n;
    float probs[MAX_N];
    int n_history;
    int history[MAX_N];
    int breaker_len; /* DRY: one sequence breaker, breaker[0..breaker_len) (0: none) */
    int breaker[2];
    int n_want;
    float want[MAX_N];
    int flags;
} Vector;

#define P4 4, {0.1f, 0.2f, 0.3f, 0.4f}
#define P4_DESC 4, {0.4f, 0.3f, 0.2f, 0.1f}
#define P5 5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}
#define U8 8, {0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f}
#define NO_HISTORY 0, {0}, 0, {0}
#define ALL4 4, {0.4f, 0.3f, 0.2f, 0.1f} /* expected: the whole P4, most likely first */
#define RUN 14, {0, 1, 2, 5, 6, 7, 3, 4, 0, 1, 2, 5, 6, 7} /* DRY's history below */
#define SEVEN(x) x, x, x, x, x, x, x

static const Vector VECTORS[] = {
    /* temperature 1: the distribution itself; 0: greedy (see above) */
    {"temp(1)", SAMPLER_STAGE_TEMPERATURE, 1, 0, 1, 0, 0, P4, NO_HISTORY, ALL4},
    {"temp(0)", SAMPLER_STAGE_TEMPERATURE, 0, 0, 1, 0, 0, P4, NO_HISTORY, ALL4,
     GREEDY},
    {"temp_ext(1, 0, 1)", SAMPLER_STAGE_TEMPERATURE, 1, 0, 1, 0, 0, P4, NO_HISTORY, ALL4},
    {"temp_ext(0, 0, 1)", SAMPLER_STAGE_TEMPERATURE, 0, 0, 1, 0, 0, P4, NO_HISTORY, ALL4, GREEDY},
    /* top-k */
    {"top_k(1)", SAMPLER_STAGE_TOP_K, 0, 0, 0, 1, 0, P4, NO_HISTORY, 1, {1.0f}},
    {"top_k(3)", SAMPLER_STAGE_TOP_K, 0, 0, 0, 3, 0, P4, NO_HISTORY, 3,
     {0.44444f, 0.33333f, 0.22222f}},
    {"top_k(4)", SAMPLER_STAGE_TOP_K, 0, 0, 0, 4, 0, P4, NO_HISTORY, ALL4},
    {"top_k(0)", SAMPLER_STAGE_TOP_K, 0, 0, 0, 0, 0, P4, NO_HISTORY, ALL4},
    /* top-p */
    {"top_p(0)", SAMPLER_STAGE_TOP_P, 0.0f, 0, 0, 0, 0, P4, NO_HISTORY, 1, {1.0f}},
    {"top_p(0.7)", SAMPLER_STAGE_TOP_P, 0.7f, 0, 0, 0, 0, P4, NO_HISTORY, 2,
     {0.571429f, 0.428571f}},
    {"top_p(0.8)", SAMPLER_STAGE_TOP_P, 0.8f, 0, 0, 0, 0, P4, NO_HISTORY, 3,
     {0.44444f, 0.33333f, 0.22222f}},
    {"top_p(1)", SAMPLER_STAGE_TOP_P, 1.0f, 0, 0, 0, 0, P4, NO_HISTORY, ALL4},
    /* min-p */
    {"min_p(0)", SAMPLER_STAGE_MIN_P, 0.00f, 0, 0, 0, 0, P4, NO_HISTORY, ALL4},
    {"min_p(0.24)", SAMPLER_STAGE_MIN_P, 0.24f, 0, 0, 0, 0, P4, NO_HISTORY, ALL4},
    {"min_p(0.26)", SAMPLER_STAGE_MIN_P, 0.26f, 0, 0, 0, 0, P4, NO_HISTORY, 3,
     {0.4f / 0.9f, 0.3f / 0.9f, 0.2f / 0.9f}},
    {"min_p(0.49)", SAMPLER_STAGE_MIN_P, 0.49f, 0, 0, 0, 0, P4, NO_HISTORY, 3,
     {0.4f / 0.9f, 0.3f / 0.9f, 0.2f / 0.9f}},
    {"min_p(0.51)", SAMPLER_STAGE_MIN_P, 0.51f, 0, 0, 0, 0, P4, NO_HISTORY, 2,
     {0.4f / 0.7f, 0.3f / 0.7f}},
    {"min_p(0.74)", SAMPLER_STAGE_MIN_P, 0.74f, 0, 0, 0, 0, P4, NO_HISTORY, 2,
     {0.4f / 0.7f, 0.3f / 0.7f}},
    {"min_p(0.76)", SAMPLER_STAGE_MIN_P, 0.76f, 0, 0, 0, 0, P4, NO_HISTORY, 1, {1.0f}},
    {"min_p(1)", SAMPLER_STAGE_MIN_P, 1.00f, 0, 0, 0, 0, P4, NO_HISTORY, 1, {1.0f}},
    /* XTC (probability, threshold): the top choices but the least likely leave */
    {"xtc(0.99, 0.09)", SAMPLER_STAGE_XTC, 0.99f, 0.09f, 0, 0, 0, P4_DESC, NO_HISTORY, 1, {0.1f},
     RENORM},
    {"xtc(0.99, 0.19)", SAMPLER_STAGE_XTC, 0.99f, 0.19f, 0, 0, 0, P4_DESC, NO_HISTORY, 2,
     {0.2f, 0.1f}, RENORM},
    {"xtc(0.99, 0.29)", SAMPLER_STAGE_XTC, 0.99f, 0.29f, 0, 0, 0, P4_DESC, NO_HISTORY, 3,
     {0.3f, 0.2f, 0.1f}, RENORM},
    {"xtc(0.99, 0.39): one top choice, nothing removed", SAMPLER_STAGE_XTC, 0.99f, 0.39f, 0, 0, 0,
     P4_DESC, NO_HISTORY, ALL4, RENORM},
    /* typical */
    {"typical(0.5) of a sure token", SAMPLER_STAGE_TYPICAL_P, 0.5f, 0, 0, 0, 0, 4,
     {0.97f, 0.01f, 0.01f, 0.01f}, NO_HISTORY, 1, {0.97f}, RENORM},
    {"typical(0.5) drops the most likely", SAMPLER_STAGE_TYPICAL_P, 0.5f, 0, 0, 0, 0, 4,
     {0.4f, 0.2f, 0.2f, 0.2f}, NO_HISTORY, 3, {0.2f, 0.2f, 0.2f}, RENORM},
    /* penalties (repeat, frequency, presence) over the tokens accepted */
    {"penalties(50, 0, 0) after 0", SAMPLER_STAGE_PENALTIES, 50, 0, 0, 0, 1, P5, 1, {0}, 0, {0}, 5,
     {0.25f, 0.25f, 0.25f, 0.25f, 0}},
    {"penalties(50, 0, 0) after 0 1 2", SAMPLER_STAGE_PENALTIES, 50, 0, 0, 0, 3, P5, 3,
     {0, 1, 2}, 0, {0}, 5, {0.5f, 0.5f, 0, 0, 0}},
    {"penalties(50, 0, 0) after 0 1 2 0 0", SAMPLER_STAGE_PENALTIES, 50, 0, 0, 0, 5, P5, 5,
     {0, 1, 2, 0, 0}, 0, {0}, 5, {0.5f, 0.5f, 0, 0, 0}},
    {"penalties(1, 5, 5) after 0", SAMPLER_STAGE_PENALTIES, 1, 5, 5, 0, 1, P5, 1, {0}, 0, {0}, 5,
     {0.249997f, 0.249997f, 0.249997f, 0.249997f, 0.000011f}},
    {"penalties(1, 5, 5) after 0 1 2", SAMPLER_STAGE_PENALTIES, 1, 5, 5, 0, 3, P5, 3, {0, 1, 2}, 0,
     {0}, 5, {0.499966f, 0.499966f, 0.000023f, 0.000023f, 0.000023f}},
    {"penalties(1, 5, 5) after 0 1 2 0 0", SAMPLER_STAGE_PENALTIES, 1, 5, 5, 0, 5, P5, 5,
     {0, 1, 2, 0, 0}, 0, {0}, 5, {0.499977f, 0.499977f, 0.000023f, 0.000023f, 0.000000f}},
    /* DRY (multiplier, base; allowed length, last n; breakers) */
    {"dry: a history no longer than the allowed length", SAMPLER_STAGE_DRY, 1.0f, 1.1f, 0, 2, 4, 4,
     {0.25f, 0.25f, 0.25f, 0.25f}, 2, {0, 1}, 0, {0}, 4, {0.25f, 0.25f, 0.25f, 0.25f}},
    {"dry: 0 1 2 0 1, so 2 would repeat 0 1", SAMPLER_STAGE_DRY, 1.0f, 1.1f, 0, 2, 5, 4,
     {0.25f, 0.25f, 0.25f, 0.25f}, 5, {0, 1, 2, 0, 1}, 0, {0}, 4,
     {0.296923f, 0.296923f, 0.296923f, 0.109232f}},
    {"dry: the repeat continues with breaker 3, which is not penalized", SAMPLER_STAGE_DRY, 1.0f,
     1.1f, 0, 2, 6, P5, 6, {0, 1, 3, 4, 0, 1}, 1, {3}, 5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}},
    {"dry: multiplier 2", SAMPLER_STAGE_DRY, 2.0f, 1.1f, 0, 2, 5, P5, 5, {0, 1, 2, 0, 1}, 0, {0}, 5,
     {0.241818f, 0.241818f, 0.241818f, 0.241818f, 0.032727f}},
    {"dry: a repeat of 2 with allowed length 4", SAMPLER_STAGE_DRY, 1.0f, 1.1f, 0, 4, 7, P5, 7,
     {0, 1, 2, 3, 4, 0, 1}, 0, {0}, 5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}},
    /* DRY across sequence breakers (quill's own vectors): 8 equally likely tokens after
     *   0 1 2 5 6 7 3 4 0 1 2 5 6 7
     * The text ends with 0 1 2 5 6 7, which came before, followed by 3: token 3 would
     * repeat a run of 6 tokens, and with base 2 and allowed length 2 it loses 2^(6-2) = 16
     * of its logit; p = e^-16 / (7 + e^-16) = 1.6e-8, and 1 / (7 + e^-16) = 0.142857 for
     * each of the others. No other token follows an earlier 7. */
    {"dry: a run of 6 tokens", SAMPLER_STAGE_DRY, 1.0f, 2.0f, 0, 2, -1, U8, RUN, 0, {0}, 8,
     {SEVEN(0.142857f), 0.0f}},
    /* Token 5 a breaker: a repeat reaches back no further than the latest 5, so the run is
     * 6 7, of length 2: token 3 loses 2^0 = 1, p = e^-1 / (7 + e^-1) = 0.049930, the others
     * 1 / (7 + e^-1) = 0.135724. */
    {"dry: the run stops at breaker 5", SAMPLER_STAGE_DRY, 1.0f, 2.0f, 0, 2, -1, U8, RUN, 1, {5},
     8, {SEVEN(0.135724f), 0.049930f}},
    /* The breaker 5 6 (a string that spans two tokens): only 7 comes after it, a run of 1,
     * below the allowed length: nothing is penalized. */
    {"dry: the run stops at the two-token breaker 5 6", SAMPLER_STAGE_DRY, 1.0f, 2.0f, 0, 2, -1,
     U8, RUN, 2, {5, 6}, 8, {SEVEN(0.125f), 0.125f}},
    /* The breaker 5 4 never occurs (5 is always followed by 6): its head alone breaks
     * nothing, and token 3 loses 16 as without breakers. */
    {"dry: a breaker's head alone is no breaker", SAMPLER_STAGE_DRY, 1.0f, 2.0f, 0, 2, -1, U8,
     RUN, 2, {5, 4}, 8, {SEVEN(0.142857f), 0.0f}},
    /* The window is the last 6 tokens, 0 1 2 5 6 7: nothing in it came before. */
    {"dry: a window of 6 holds no repeat", SAMPLER_STAGE_DRY, 1.0f, 2.0f, 0, 2, 6, U8, RUN, 0,
     {0}, 8, {SEVEN(0.125f), 0.125f}},
    /* top-n-sigma: llama.cpp's dropped tokens (p = 0) are removed in quill */
    {"top_n_sigma(1)", SAMPLER_STAGE_TOP_N_SIGMA, 1.0f, 0, 0, 0, 0, P4, NO_HISTORY, 2,
     {0.571429f, 0.428571f}},
    {"top_n_sigma(0)", SAMPLER_STAGE_TOP_N_SIGMA, 0.0f, 0, 0, 0, 0, P4, NO_HISTORY, 1, {1.0f}},
    {"top_n_sigma(3)", SAMPLER_STAGE_TOP_N_SIGMA, 3.0f, 0, 0, 0, 0, P4, NO_HISTORY, ALL4},
};

/* Everything off, temperature 1, the chain the one stage, and the vector's numbers. */
static SamplerParams vector_params(const Vector *v, TokenSequence *breaker)
{
    SamplerParams p = test_sampler_params_off();
    p.chain[0] = v->stage;
    p.n_chain = 1;
    switch (v->stage) {
    case SAMPLER_STAGE_TEMPERATURE: /* temp_ext(t, delta, exponent); temp(t) has delta 0 */
        p.temperature = v->x;
        p.dynatemp_range = v->y;
        p.dynatemp_exponent = v->z;
        break;
    case SAMPLER_STAGE_TOP_K: p.top_k = v->k; break;
    case SAMPLER_STAGE_TOP_P: p.top_p = v->x; break;
    case SAMPLER_STAGE_MIN_P: p.min_p = v->x; break;
    case SAMPLER_STAGE_TYPICAL_P: p.typical_p = v->x; break;
    case SAMPLER_STAGE_TOP_N_SIGMA: p.top_n_sigma = v->x; break;
    case SAMPLER_STAGE_XTC:
        p.xtc_probability = v->x;
        p.xtc_threshold = v->y;
        break;
    case SAMPLER_STAGE_PENALTIES: /* llama.cpp's window is the tokens accepted */
        p.repeat_penalty = v->x;
        p.frequency_penalty = v->y;
        p.presence_penalty = v->z;
        p.repeat_last_n = v->last_n;
        break;
    case SAMPLER_STAGE_DRY:
        p.dry_multiplier = v->x;
        p.dry_base = v->y;
        p.dry_allowed_length = v->k;
        p.dry_penalty_last_n = v->last_n;
        *breaker = (TokenSequence){v->breaker, v->breaker_len};
        p.dry_breakers = breaker;
        p.n_dry_breakers = v->breaker_len > 0;
        break;
    default: cr_assert_fail("%s: no settings for stage %d", v->what, v->stage);
    }
    return p;
}

/* Runs v through quill's stage and compares what survives. */
static void check_vector(const Vector *v)
{
    TokenSequence breaker;
    SamplerParams p = vector_params(v, &breaker);
    Sampler s;
    Error err;
    cr_assert_eq(sampler_init(&s, &p, v->n, &err), 0, "%s: %s", v->what, err.msg);
    for (int i = 0; i < v->n_history; i++)
        cr_assert_eq(sampler_accept(&s, v->history[i], false, &err), 0, "%s", err.msg);
    float logits[MAX_N];
    for (int i = 0; i < v->n; i++)
        logits[i] = logf(v->probs[i]);
    CandidateList c;
    cr_assert_eq(candidates_init(&c, v->n, &err), 0, "%s", err.msg);
    sampler_apply(&s, logits, &c);
    double sum = 0.0;
    for (int i = 0; i < v->n_want; i++)
        sum += v->flags & RENORM ? v->want[i] : 1.0;
    double scale = v->flags & RENORM ? 1.0 / sum : 1.0;
    cr_expect_eq(c.n, v->n_want, "%s: %d survivors, expected %d", v->what, c.n, v->n_want);
    for (int i = 0; i < c.n && i < v->n_want; i++)
        cr_expect(fabs(c.data[i].p - v->want[i] * scale) < 1e-5, "%s: p[%d] = %.6f, expected %.6f",
                  v->what, i, c.data[i].p, v->want[i] * scale);
    if (v->flags & GREEDY)
        cr_expect_eq(sampler_select(&s, &c), 3, "%s: greedy picked another token", v->what);
    candidates_free(&c);
    sampler_free(&s);
}

Test(sampler_vectors, llama_cpp_stage_vectors)
{
    int compared = 0;
    for (size_t i = 0; i < sizeof VECTORS / sizeof *VECTORS; i++, compared++)
        check_vector(&VECTORS[i]);
    cr_expect_eq(compared, 45, "%d vectors compared", compared);
}

/* ---- the sampler queue: llama.cpp's test_sampler_queue ----
 * 10,000 tokens with logit ln(id) (p_i proportional to i; token 0, ln 0 = -inf, is banned)
 * through a chain of top-k (k), top-p (p) and min-p (m). llama.cpp's test works out what
 * survives with closed formulas (top-p: the most likely ids down to the first at which
 * their sum reaches ceil(top_p * their total); min-p: ids >= min_p * n_vocab); these are
 * their results: how many survive, and the least likely survivor (the most likely is always
 * 9999). E.g. top-p 0.8 alone: ids 9999 down to 4472 sum to 39,997,844, the first sum that
 * reaches 0.8 * 49,995,000 = 39,996,000; min-p 0.1 alone: ids 1000..9999, 9000 of them. */
typedef struct {
    const char *chain;
    int top_k;
    float top_p, min_p;
    int n, last;
} QueueCase;

static const QueueCase QUEUE[] = {
    {"top-k", 1, 1.0f, 1.0f, 1, 9999},
    {"top-k", 100, 1.0f, 1.0f, 100, 9900},
    {"top-p", 10000, 0.0002f, 1.0f, 1, 9999},
    {"top-p", 10000, 0.8f, 1.0f, 5528, 4472},
    {"min-p", 10000, 1.0f, 9997.9f / 9999.0f, 2, 9998},
    {"min-p", 10000, 1.0f, 0.1f, 9000, 1000},
    {"top-k,top-p", 100, 0.8f, 0.1f, 80, 9920},
    {"top-k,min-p", 100, 0.8f, 0.1f, 100, 9900},
    {"top-p,top-k", 100, 0.8f, 0.1f, 100, 9900},
    {"top-p,min-p", 100, 0.8f, 0.1f, 5528, 4472},
    {"min-p,top-k", 100, 0.8f, 0.1f, 100, 9900},
    {"min-p,top-p", 100, 0.8f, 9997.9f / 9999.0f, 2, 9998},
    {"min-p,top-p", 100, 0.8f, 0.1f, 5440, 4560},
    {"top-k,top-p,min-p", 100, 0.8f, 0.1f, 80, 9920},
    {"top-k,min-p,top-p", 100, 0.8f, 0.1f, 80, 9920},
    {"top-p,top-k,min-p", 100, 0.8f, 0.1f, 100, 9900},
    {"top-p,min-p,top-k", 100, 0.8f, 0.1f, 100, 9900},
    {"min-p,top-k,top-p", 100, 0.8f, 0.1f, 80, 9920},
    {"min-p,top-p,top-k", 100, 0.8f, 0.1f, 100, 9900},
};

Test(sampler_vectors, llama_cpp_sampler_queue)
{
    enum { V = 10000 };
    static float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = logf((float)i);
    CandidateList c;
    Error err;
    cr_assert_eq(candidates_init(&c, V, &err), 0, "%s", err.msg);
    int compared = 0;
    for (size_t i = 0; i < sizeof QUEUE / sizeof *QUEUE; i++, compared++) {
        const QueueCase *q = &QUEUE[i];
        SamplerParams p;
        sampler_params_default(&p);
        p.temperature = 1.0f;
        p.top_k = q->top_k;
        p.top_p = q->top_p;
        p.min_p = q->min_p;
        cr_assert_eq(sampler_chain_parse(q->chain, &p, &err), 0, "%s", err.msg);
        Sampler s;
        cr_assert_eq(sampler_init(&s, &p, V, &err), 0, "%s", err.msg);
        sampler_apply(&s, logits, &c);
        cr_expect_eq(c.n, q->n, "%s (k %d, p %g, min-p %g): %d survive, expected %d", q->chain,
                     q->top_k, q->top_p, q->min_p, c.n, q->n);
        cr_expect_eq(c.data[0].id, V - 1, "%s: most likely %d", q->chain, c.data[0].id);
        cr_expect_eq(c.data[c.n - 1].id, q->last, "%s (k %d, p %g, min-p %g): least likely %d, "
                     "expected %d", q->chain, q->top_k, q->top_p, q->min_p, c.data[c.n - 1].id,
                     q->last);
        sampler_free(&s);
    }
    cr_expect_eq(compared, 19, "%d queues compared", compared);
    candidates_free(&c);
}

/* ---- min_keep ---- */

/* One stage over logits, min_keep set: the ids that survive, most likely first, and their
 * probabilities. */
static int apply_one(SamplerParams *p, SamplerStage stage, const float *logits, int n,
                     CandidateList *c)
{
    Sampler s;
    Error err;
    p->chain[0] = stage;
    p->n_chain = 1;
    cr_assert_eq(sampler_init(&s, p, n, &err), 0, "%s", err.msg);
    cr_assert_eq(candidates_init(c, n, &err), 0, "%s", err.msg);
    sampler_apply(&s, logits, c);
    sampler_free(&s);
    return c->n;
}

static SamplerParams all_off(int min_keep)
{
    SamplerParams p = test_sampler_params_off();
    p.min_keep = min_keep;
    return p;
}

/* Each filter that takes min_keep in llama.cpp (top-p, min-p, typical-p, XTC) keeps at
 * least that many, on probabilities 0.4 0.3 0.2 0.1 (ids 0..3):
 *   top-p 0 keeps 1; min_keep 3: 0.4 0.3 0.2, renormalized by 0.9: 0.444444 0.333333 0.222222
 *   min-p 0.76 keeps 1 (0.3 < 0.76 * 0.4); min_keep 2: 0.4 0.3 / 0.7 = 0.571429 0.428571
 *   XTC 1 at threshold 0.09 would leave 1 (all four are top choices): min_keep 2 leaves
 *   the list alone
 *   typical-p 0.5 of 0.97 0.01 0.01 0.01 keeps the 0.97 (H = 0.1677 nats, |-ln 0.97 - H| =
 *   0.137, |-ln 0.01 - H| = 4.44); min_keep 2 adds the next in that order, id 1 (ties to
 *   the lower id): 0.97 0.01 / 0.98 = 0.989796 0.010204
 * top-k takes no min_keep there either: top-k 1 keeps 1. */
Test(sampler_min_keep, the_filters_keep_at_least_min_keep)
{
    const float l4[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    const float sure[4] = {logf(0.97f), logf(0.01f), logf(0.01f), logf(0.01f)};
    CandidateList c;
    SamplerParams p = all_off(3);
    p.top_p = 0.0f;
    cr_assert_eq(apply_one(&p, SAMPLER_STAGE_TOP_P, l4, 4, &c), 3);
    cr_expect(fabsf(c.data[0].p - 0.444444f) < 1e-5f && fabsf(c.data[2].p - 0.222222f) < 1e-5f);
    candidates_free(&c);
    p = all_off(2);
    p.min_p = 0.76f;
    cr_assert_eq(apply_one(&p, SAMPLER_STAGE_MIN_P, l4, 4, &c), 2);
    cr_expect(fabsf(c.data[0].p - 0.571429f) < 1e-5f && fabsf(c.data[1].p - 0.428571f) < 1e-5f);
    candidates_free(&c);
    p = all_off(2);
    p.xtc_probability = 1.0f;
    p.xtc_threshold = 0.09f;
    cr_expect_eq(apply_one(&p, SAMPLER_STAGE_XTC, l4, 4, &c), 4);
    candidates_free(&c);
    p.min_keep = 0;
    cr_expect_eq(apply_one(&p, SAMPLER_STAGE_XTC, l4, 4, &c), 1, "min_keep 0 is not 1 for XTC");
    candidates_free(&c);
    p = all_off(2);
    p.typical_p = 0.5f;
    cr_assert_eq(apply_one(&p, SAMPLER_STAGE_TYPICAL_P, sure, 4, &c), 2);
    cr_expect(c.data[0].id == 0 && c.data[1].id == 1, "kept %d, %d", c.data[0].id, c.data[1].id);
    cr_expect(fabsf(c.data[0].p - 0.989796f) < 1e-5f && fabsf(c.data[1].p - 0.010204f) < 1e-5f);
    candidates_free(&c);
    p = all_off(3);
    p.top_k = 1;
    cr_expect_eq(apply_one(&p, SAMPLER_STAGE_TOP_K, l4, 4, &c), 1);
    candidates_free(&c);
}

/* --verbose's chain names min_keep beside each filter that takes it, when it keeps more
 * than one. */
Test(sampler_min_keep, the_chain_description_shows_it)
{
    SamplerParams p;
    sampler_params_default(&p);
    p.seed = 1;
    p.min_keep = 3;
    p.xtc_probability = 0.5f;
    char buf[512];
    sampler_chain_describe(&p, buf, sizeof buf);
    cr_expect_str_eq(buf, "logit-bias off -> bad-words off -> penalties off -> dry off -> "
                          "top-n-sigma off -> top-k 40 -> typical-p off -> top-p 0.95 "
                          "(min-keep 3) -> min-p 0.05 (min-keep 3) -> xtc (probability 0.5, "
                          "threshold 0.1) (min-keep 3) -> temperature 0.8 -> random draw "
                          "(seed 1)");
}

/* On 100 candidates (more than the mass search sorts outright) in id order, logit 0.05 * id
 * so that the most likely is the last: top-p 0.01 and min-p 1 keep id 99 alone, and
 * min_keep 5 brings the next best, ids 98..95, without a sort of the rest. */
Test(sampler_min_keep, large_unsorted_lists_keep_the_next_best)
{
    float logits[100];
    for (int i = 0; i < 100; i++)
        logits[i] = 0.05f * (float)i;
    const SamplerStage stages[2] = {SAMPLER_STAGE_TOP_P, SAMPLER_STAGE_MIN_P};
    int compared = 0;
    for (int i = 0; i < 2; i++, compared++) {
        SamplerParams p = all_off(5);
        p.top_p = 0.01f;
        p.min_p = 1.0f;
        CandidateList c;
        cr_assert_eq(apply_one(&p, stages[i], logits, 100, &c), 5, "%s",
                     sampler_stage_name(stages[i]));
        for (int j = 0; j < 5; j++)
            cr_expect_eq(c.data[j].id, 99 - j, "%s: place %d holds %d",
                         sampler_stage_name(stages[i]), j, c.data[j].id);
        candidates_free(&c);
    }
    cr_expect_eq(compared, 2);
}

/* ---- DRY's sequence breakers from strings ---- */

/* A breaker string is found in the vocabulary as llama.cpp finds it. With the pieces below
 * and the breaker "end":
 *   "end" holds it whole: a breaker alone;
 *   "en" ends with "en", the start of "end": a head, then "d" tokenized: en d;
 *   "e" and "xe" end with "e": heads, then "nd" tokenized (one piece): e nd, xe nd;
 *   "n", "d", "nd" and "a" end with no start of "end" (and "nd" does not start it).
 * The breaker "\n" is held by "\n" and "a\n": two breakers alone. */
Test(sampler_dry, breakers_from_strings_are_heads_and_tails)
{
    enum { N = 13 };
    const char *pieces[N] = {"<unk>", "<s>", "</s>", "a", "e", "n", "d",
                             "en",    "nd",  "end",  "xe", "\n", "a\n"};
    int32_t types[N];
    for (int i = 0; i < N; i++)
        types[i] = i == 0 ? TOKEN_TYPE_UNKNOWN : i < 3 ? TOKEN_TYPE_CONTROL : TOKEN_TYPE_NORMAL;
    Tokenizer tok;
    Error err;
    cr_assert_eq(tokenizer_init(&tok, N, pieces, NULL, types, &err), 0, "%s", err.msg);
    TokenSequence *b = NULL;
    int n = 0;
    cr_assert_eq(sampler_dry_breaker_add(&b, &n, &tok, "end", 3, &err), 0, "%s", err.msg);
    const int want[4][2] = {{4, 8}, {7, 6}, {9, -1}, {10, 8}}; /* e nd, en d, end, xe nd */
    cr_assert_eq(n, 4, "%d breakers", n);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(b[i].n_tokens, want[i][1] < 0 ? 1 : 2, "breaker %d", i);
        cr_expect_eq(b[i].tokens[0], want[i][0], "breaker %d", i);
        if (b[i].n_tokens == 2)
            cr_expect_eq(b[i].tokens[1], want[i][1], "breaker %d", i);
    }
    sampler_bad_words_free(b, n);
    b = NULL;
    n = 0;
    cr_assert_eq(sampler_dry_breaker_add(&b, &n, &tok, "\n", 1, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect(b[0].n_tokens == 1 && b[0].tokens[0] == 11 && b[1].n_tokens == 1 &&
              b[1].tokens[0] == 12);
    cr_expect_eq(sampler_dry_breaker_add(&b, &n, &tok, "", 0, &err), -1);
    cr_expect(strstr(err.msg, "1 to 40 bytes"), "%s", err.msg);
    sampler_bad_words_free(b, n);
    tokenizer_free(&tok);
}

/* Token i's probability after sampler_apply on 8 equal logits (0 when it was removed). */
static double dry_p(Sampler *s, int token)
{
    const float zeros[8] = {0};
    CandidateList c;
    Error err;
    cr_assert_eq(candidates_init(&c, 8, &err), 0, "%s", err.msg);
    sampler_apply(s, zeros, &c);
    double p = 0.0;
    for (int i = 0; i < c.n; i++)
        p = c.data[i].id == token ? c.data[i].p : p;
    candidates_free(&c);
    return p;
}

/* 100 tokens of 0 1 ... 7 over and over (100 = 12 * 8 + 4): the window of the last 12 is
 * 0 1 2 3 4 5 6 7 0 1 2 3, whose end 0 1 2 3 came before, followed by 4: a repeat of 4, and
 * token 4 loses 2^(4 - 2) = 4 (base 2): p = e^-4 / (7 + e^-4) = 0.0026097, the others
 * 1 / (7 + e^-4) = 0.1424838 (the whole history would make the repeat 92 long). The history
 * was cut to the window on the way (64 tokens of room, 12 needed), a clone computes the
 * same, and after a reset there is nothing to repeat: 1/8 each. */
Test(sampler_dry, window_clone_and_reset)
{
    SamplerParams p = test_sampler_params_off();
    p.chain[0] = SAMPLER_STAGE_DRY;
    p.n_chain = 1;
    p.dry_multiplier = 1.0f;
    p.dry_base = 2.0f;
    p.dry_penalty_last_n = 12;
    Sampler s, copy;
    Error err;
    cr_assert_eq(sampler_init(&s, &p, 8, &err), 0, "%s", err.msg);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(sampler_accept(&s, i % 8, i < 5, &err), 0, "%s", err.msg);
    cr_expect_lt(s.n_history, 100, "the history was never cut to the window");
    cr_expect(fabs(dry_p(&s, 4) - 0.0026097) < 1e-6, "p(4) = %.7f", dry_p(&s, 4));
    cr_expect(fabs(dry_p(&s, 5) - 0.1424838) < 1e-6, "p(5) = %.7f", dry_p(&s, 5));
    cr_assert_eq(sampler_clone(&copy, &s, &err), 0, "%s", err.msg);
    cr_expect(fabs(dry_p(&copy, 4) - 0.0026097) < 1e-6, "the clone: p(4) = %.7f",
              dry_p(&copy, 4));
    sampler_reset(&s);
    cr_expect(fabs(dry_p(&s, 4) - 0.125) < 1e-6, "after a reset: p(4) = %.7f", dry_p(&s, 4));
    sampler_free(&copy);
    sampler_free(&s);
}
