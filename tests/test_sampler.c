/* The sampler on distributions small enough to work out by hand.
 *
 * Filters are checked through sampler_apply: the exact set of candidates kept, in order
 * (most likely first), and their probabilities, computed by hand in each test's comment.
 * A random choice is checked by drawing many tokens with a fixed seed and comparing each
 * token's frequency with the probability computed by hand: with 20000 draws the standard
 * deviation of a frequency is at most 0.0035, so a tolerance of 0.015 (over 4 sigma)
 * never fails by chance for these seeds, while a filter that keeps a wrong set is off by
 * 0.1 or more. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "test_util.h"

enum { DRAWS = 20000, MAX_V = 16 };

static void init_or_fail(Sampler *s, const SamplerParams *p, int n_vocab)
{
    Error err;
    cr_assert_eq(sampler_init(s, p, n_vocab, &err), 0, "sampler_init: %s", err.msg);
}

/* What sampler_apply left: the ids in the list's order, and per token id its probability
 * and logit (p 0 and logit NAN for tokens not kept). */
typedef struct {
    int n;
    int ids[MAX_V];
    double p[MAX_V];
    float logit[MAX_V];
} Kept;

/* Accepts history[0..n_history) (the first n_prompt as prompt tokens), then applies the
 * chain to logits. Checks what holds for every list sampler_apply returns: at least one
 * candidate, finite probabilities summing to 1, sorted most likely first. */
static Kept apply_after(const SamplerParams *p, const float *logits, int n_vocab,
                        const int *history, int n_history, int n_prompt)
{
    Sampler s;
    Error err;
    init_or_fail(&s, p, n_vocab);
    for (int i = 0; i < n_history; i++)
        cr_assert_eq(sampler_accept(&s, history[i], i < n_prompt, &err), 0, "%s", err.msg);
    CandidateList c;
    cr_assert_eq(candidates_init(&c, n_vocab, &err), 0, "%s", err.msg);
    sampler_apply(&s, logits, &c);
    Kept k = {.n = c.n};
    for (int i = 0; i < MAX_V; i++)
        k.logit[i] = NAN;
    cr_assert(c.n >= 1 && c.n <= n_vocab, "%d candidates kept", c.n);
    double sum = 0.0;
    for (int i = 0; i < c.n; i++) {
        const Candidate *x = &c.data[i];
        cr_assert(isfinite(x->p) && x->p >= 0.0f, "token %d: p = %g", x->id, x->p);
        if (i > 0)
            cr_assert(x->p <= c.data[i - 1].p, "not sorted at position %d", i);
        sum += x->p;
        k.ids[i] = x->id;
        k.p[x->id] = x->p;
        k.logit[x->id] = x->logit;
    }
    cr_assert(fabs(sum - 1.0) < 1e-5, "probabilities sum to %.8f", sum);
    candidates_free(&c);
    sampler_free(&s);
    return k;
}

static Kept apply(const SamplerParams *p, const float *logits, int n_vocab)
{
    return apply_after(p, logits, n_vocab, NULL, 0, 0);
}

/* The kept ids, in order, are exactly want[0..n). */
static void expect_ids(const Kept *k, const int *want, int n)
{
    cr_assert_eq(k->n, n, "kept %d candidates, expected %d", k->n, n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(k->ids[i], want[i], "position %d: token %d, expected %d", i, k->ids[i],
                     want[i]);
}

static void expect_p(const Kept *k, int id, double want)
{
    cr_expect(fabs(k->p[id] - want) < 1e-5, "token %d: p = %.7f, expected %.7f", id, k->p[id],
              want);
}

static void expect_logit(const Kept *k, int id, double want)
{
    cr_expect(fabs(k->logit[id] - want) < 1e-5, "token %d: logit %.6f, expected %.6f", id,
              k->logit[id], want);
}

/* Frequencies of each of n tokens over DRAWS samples. */
static void sample_frequencies(const SamplerParams *p, const float *logits, int n, double *freq)
{
    Sampler s;
    init_or_fail(&s, p, n);
    memset(freq, 0, (size_t)n * sizeof *freq);
    for (int i = 0; i < DRAWS; i++) {
        int id = sampler_sample(&s, logits);
        cr_assert(id >= 0 && id < n, "token %d out of range", id);
        freq[id] += 1.0 / DRAWS;
    }
    sampler_free(&s);
}

static void expect_frequencies(const double *freq, const double *want, int n)
{
    for (int i = 0; i < n; i++)
        cr_expect(fabs(freq[i] - want[i]) < 0.015, "token %d: frequency %.4f, expected %.4f", i,
                  freq[i], want[i]);
}

/* ---- frequencies of the random draw ---- */

/* top-k 2 of logits (1, 3, 2, 0) keeps tokens 1 and 2, with probabilities e^3 : e^2. */
Test(sampler, top_k_keeps_the_k_largest)
{
    const float logits[4] = {1, 3, 2, 0};
    SamplerParams p = test_sampler_params_off();
    p.top_k = 2;
    p.seed = 7;
    double freq[4], e = exp(1.0);
    double want[4] = {0, e / (e + 1), 1 / (e + 1), 0};
    sample_frequencies(&p, logits, 4, freq);
    expect_frequencies(freq, want, 4);
}

/* top-p 0.7 over probabilities (0.1, 0.2, 0.3, 0.4): 0.4 alone is below 0.7, 0.4 + 0.3
 * reaches it, so {0.4, 0.3} stay and are renormalised to 4/7 and 3/7. */
Test(sampler, top_p_keeps_the_smallest_set_reaching_p)
{
    const float logits[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    SamplerParams p = test_sampler_params_off();
    p.top_p = 0.7f;
    p.seed = 11;
    double freq[4], want[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    sample_frequencies(&p, logits, 4, freq);
    expect_frequencies(freq, want, 4);
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){3, 2}, 2);
    expect_p(&k, 3, 4.0 / 7);
    expect_p(&k, 2, 3.0 / 7);
}

/* Temperature 0.5 doubles the logits: (0, ln 2) -> (0, ln 4), probabilities 1/5 and 4/5. */
Test(sampler, temperature_scales_the_logits)
{
    const float logits[2] = {0.0f, logf(2.0f)};
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.5f;
    p.seed = 3;
    double freq[2], want[2] = {0.2, 0.8};
    sample_frequencies(&p, logits, 2, freq);
    expect_frequencies(freq, want, 2);
    Kept k = apply(&p, logits, 2);
    expect_p(&k, 0, 0.2);
    expect_p(&k, 1, 0.8);
}

/* Temperature 0 is the argmax, with ties going to the lowest id: never a division by 0. */
Test(sampler, temperature_zero_is_argmax_with_ties_to_the_lowest_id)
{
    const float logits[5] = {1, 4, 2, 4, -1};
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.0f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.seed = 1;
    double freq[5], want[5] = {0, 1, 0, 0, 0};
    sample_frequencies(&p, logits, 5, freq);
    expect_frequencies(freq, want, 5);
}

/* At temperature 0 sampler_apply gives the untempered distribution: logits (0, ln 2)
 * have probabilities 1/3 and 2/3, whatever the temperature's sign. */
Test(sampler, temperature_zero_leaves_untempered_probabilities)
{
    const float logits[2] = {0.0f, logf(2.0f)};
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.0f;
    Kept k = apply(&p, logits, 2);
    expect_ids(&k, (int[]){1, 0}, 2);
    expect_p(&k, 1, 2.0 / 3);
    expect_p(&k, 0, 1.0 / 3);
    p.temperature = -1.0f;
    k = apply(&p, logits, 2);
    expect_p(&k, 1, 2.0 / 3);
}

/* ---- the filters' kept sets ---- */

/* Logits (1, 3, 2, 3, 2, 0): top-k 3 keeps the two 3s (tokens 1 and 3) and, of the two 2s
 * (tokens 2 and 4), the lower id 2. Probabilities e^3 : e^3 : e^2, i.e. e/(2e+1) twice
 * and 1/(2e+1). top-k 1 keeps token 1 alone. */
Test(sampler_filters, top_k_breaks_ties_by_the_lower_id)
{
    const float logits[6] = {1, 3, 2, 3, 2, 0};
    SamplerParams p = test_sampler_params_off();
    p.top_k = 3;
    Kept k = apply(&p, logits, 6);
    expect_ids(&k, (int[]){1, 3, 2}, 3);
    double e = exp(1.0);
    expect_p(&k, 1, e / (2 * e + 1));
    expect_p(&k, 3, e / (2 * e + 1));
    expect_p(&k, 2, 1 / (2 * e + 1));
    p.top_k = 1;
    k = apply(&p, logits, 6);
    expect_ids(&k, (int[]){1}, 1);
    expect_p(&k, 1, 1.0);
}

/* Probabilities (0.5, 0.3, 0.15, 0.05). min-p 0.25: the bar is 0.25 * 0.5 = 0.125, so
 * 0.05 goes and the rest is renormalised over 0.95. min-p 0.5: the bar is 0.25, so only
 * 0.5 and 0.3 stay (5/8 and 3/8). */
Test(sampler_filters, min_p_keeps_tokens_within_a_factor_of_the_best)
{
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    SamplerParams p = test_sampler_params_off();
    p.min_p = 0.25f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1, 2}, 3);
    expect_p(&k, 0, 0.5 / 0.95);
    expect_p(&k, 1, 0.3 / 0.95);
    expect_p(&k, 2, 0.15 / 0.95);
    p.min_p = 0.5f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_p(&k, 0, 5.0 / 8);
    expect_p(&k, 1, 3.0 / 8);
}

/* An exact tie with the bar: probabilities 0.125, 0.5, 0.125, 0.25 (token 1 the most
 * likely) and min-p 0.5 put the bar at 0.5 * 0.5 = 0.25, which token 3 reaches exactly, so
 * the rule p_i >= min_p * p_max keeps tokens 1 and 3 (2/3 and 1/3), as llama.cpp does with
 * the same float logits (logf of each probability). Checked on an unsorted list (min-p
 * alone) and on a sorted one (after top-k), through sampler_apply and through
 * sampler_sample's draws. */
Test(sampler_filters, min_p_keeps_a_token_exactly_at_the_bar)
{
    const float logits[4] = {logf(0.125f), logf(0.5f), logf(0.125f), logf(0.25f)};
    const double want[4] = {0.0, 2.0 / 3, 0.0, 1.0 / 3};
    int compared = 0;
    for (int top_k = 0; top_k <= 4; top_k += 4) {
        SamplerParams p = test_sampler_params_off();
        p.min_p = 0.5f;
        p.top_k = top_k;
        p.seed = 3;
        Kept k = apply(&p, logits, 4);
        expect_ids(&k, (int[]){1, 3}, 2);
        expect_p(&k, 1, want[1]);
        expect_p(&k, 3, want[3]);
        double freq[4];
        sample_frequencies(&p, logits, 4, freq);
        expect_frequencies(freq, want, 4);
        compared++;
    }
    cr_assert_eq(compared, 2);
}

/* Probabilities (1/2, 1/4, 1/8, 1/8). In nats the entropy is
 *   H = 1/2 ln 2 + 1/4 ln 4 + 2 * 1/8 ln 8 = 1.75 ln 2 = 1.2130,
 * and |-ln p - H| is 0.75 ln 2 = 0.520 for token 0, 0.25 ln 2 = 0.173 for token 1, and
 * 1.25 ln 2 = 0.866 for tokens 2 and 3. The typical order is 1, 0, 2, 3 (the tie between
 * 2 and 3 to the lower id), with running probability 0.25, 0.75, 0.875, 1:
 *   typical-p 0.2 keeps token 1 alone: the most likely token is not typical;
 *   typical-p 0.5 keeps {1, 0}: 2/3 and 1/3;
 *   typical-p 0.8 keeps {1, 0, 2}: 0.5, 0.25 and 0.125 over 0.875. */
Test(sampler_filters, typical_p_keeps_the_tokens_closest_to_the_entropy)
{
    const float logits[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
    SamplerParams p = test_sampler_params_off();
    p.typical_p = 0.2f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){1}, 1);
    p.typical_p = 0.5f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_p(&k, 0, 2.0 / 3);
    expect_p(&k, 1, 1.0 / 3);
    p.typical_p = 0.8f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1, 2}, 3);
    expect_p(&k, 0, 0.5 / 0.875);
    expect_p(&k, 1, 0.25 / 0.875);
    expect_p(&k, 2, 0.125 / 0.875);
}

/* Extreme settings still keep one candidate: logits (1, 2, 3, 0) under top-p 0, min-p 1
 * and top-k 1 each keep the most likely token, 2; typical-p 0 keeps the most typical one,
 * which here is token 1 (see below). */
Test(sampler_filters, extreme_settings_keep_one_candidate)
{
    const float logits[4] = {1, 2, 3, 0};
    SamplerParams p = test_sampler_params_off();
    p.top_p = 0.0f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){2}, 1);
    p = test_sampler_params_off();
    p.min_p = 1.0f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){2}, 1);
    p = test_sampler_params_off();
    p.top_k = 1;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){2}, 1);
    /* p = (0.0871, 0.2369, 0.6439, 0.0321), H = 0.9475 nats; -ln p = (2.44, 1.44, 0.44,
     * 3.44), distances (1.49, 0.49, 0.51, 2.49): token 1 is the most typical. */
    p = test_sampler_params_off();
    p.typical_p = 0.0f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){1}, 1);
    expect_p(&k, 1, 1.0);
}

/* Every filter at once on logits that are all -inf but one: that one stays, with p 1. */
Test(sampler_filters, all_banned_but_one_keeps_that_one)
{
    const float logits[4] = {-INFINITY, -INFINITY, 5.0f, -INFINITY};
    SamplerParams p;
    sampler_params_default(&p);
    p.typical_p = 0.5f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){2}, 1);
    expect_p(&k, 2, 1.0);
    p.temperature = 0.0f;
    p.top_p = 0.0f;
    p.min_p = 1.0f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){2}, 1);
}

/* Equal logits: each filter keeps a prefix in id order (ties to the lower id), min-p
 * keeps them all (each is the maximum), and probabilities stay equal. */
Test(sampler_filters, equal_logits_split_ties_by_id)
{
    const float logits[4] = {1, 1, 1, 1};
    SamplerParams p = test_sampler_params_off();
    p.top_p = 0.5f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_p(&k, 0, 0.5);
    p = test_sampler_params_off();
    p.min_p = 1.0f;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1, 2, 3}, 4);
    expect_p(&k, 3, 0.25);
    p = test_sampler_params_off();
    p.typical_p = 0.6f; /* every token is exactly as typical: the first 3 reach 0.75 */
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1, 2}, 3);
    p = test_sampler_params_off();
    p.top_k = 2;
    k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1}, 2);
}

/* Logits a broken model could give: NaN counts as banned, +inf as the largest finite
 * float; a tiny or huge temperature gives finite probabilities. */
Test(sampler_filters, non_finite_logits_and_extreme_temperatures_stay_finite)
{
    const float logits[3] = {NAN, INFINITY, 0.0f};
    SamplerParams p = test_sampler_params_off();
    Kept k = apply(&p, logits, 3);
    expect_ids(&k, (int[]){1, 2}, 2);
    expect_p(&k, 1, 1.0);
    const float all_nan[2] = {NAN, NAN};
    k = apply(&p, all_nan, 2);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_p(&k, 0, 0.5);
    const float pair[2] = {1.0f, 2.0f};
    p.temperature = 1e-30f;
    k = apply(&p, pair, 2);
    expect_p(&k, 1, 1.0);
    p.temperature = 1e30f;
    k = apply(&p, pair, 2);
    expect_p(&k, 0, 0.5);
}

/* A naive reference for a large vocabulary: top-p and typical-p by a full sort, against
 * the sampler's histogram search (which sorts only the slice where the mass is reached),
 * with a tenth of the tokens banned. */
typedef struct {
    int id;
    double key;
} Keyed;

static int keyed_ascending(const void *a, const void *b)
{
    const Keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->id - y->id;
}

Test(sampler_filters, large_vocabulary_matches_a_full_sort)
{
    enum { V = 3000 };
    float *logits = malloc(V * sizeof *logits);
    double *prob = malloc(V * sizeof *prob);
    Keyed *order = malloc(V * sizeof *order);
    int *kept = malloc(V * sizeof *kept);
    Rng rng;
    rng_seed(&rng, 5);
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++) {
        logits[i] = i % 10 == 3 ? -INFINITY : 3.0f * rng_normal(&rng); /* some banned */
        max = fmax(max, logits[i]);
    }
    for (int i = 0; i < V; i++)
        sum += prob[i] = exp(logits[i] - max);
    double entropy = 0.0;
    for (int i = 0; i < V; i++) {
        prob[i] /= sum;
        entropy -= prob[i] > 0.0 ? prob[i] * log(prob[i]) : 0.0;
    }
    for (int pass = 0; pass < 2; pass++) {
        bool typical = pass == 1;
        float target = typical ? 0.9f : 0.95f;
        for (int i = 0; i < V; i++)
            order[i] = (Keyed){i, typical ? fabs(-log(prob[i]) - entropy) : -prob[i]};
        qsort(order, V, sizeof *order, keyed_ascending);
        int n_want = 0;
        double mass = 0.0;
        while (mass < target - 1e-6)
            mass += prob[order[n_want++].id];
        SamplerParams p = test_sampler_params_off();
        p.chain[0] = typical ? SAMPLER_STAGE_TYPICAL_P : SAMPLER_STAGE_TOP_P;
        p.n_chain = 1;
        p.top_p = target;
        p.typical_p = target;
        Sampler s;
        Error err;
        CandidateList c;
        init_or_fail(&s, &p, V);
        cr_assert_eq(candidates_init(&c, V, &err), 0, "%s", err.msg);
        sampler_apply(&s, logits, &c);
        cr_assert_eq(c.n, n_want, "%s: kept %d, a full sort keeps %d", typical ? "typical" : "top-p",
                     c.n, n_want);
        memset(kept, 0, V * sizeof *kept);
        for (int i = 0; i < c.n; i++)
            kept[c.data[i].id] = 1;
        for (int i = 0; i < n_want; i++)
            cr_expect(kept[order[i].id], "token %d missing", order[i].id);
        candidates_free(&c);
        sampler_free(&s);
    }
    free(logits);
    free(prob);
    free(order);
    free(kept);
}

/* ---- the chain order ---- */

/* Logits (3, 2, 1), top-p 0.8, temperature 0.5.
 * llama.cpp's order, temperature last: top-p sees softmax(3, 2, 1) = (0.665, 0.245, 0.090);
 *   0.665 < 0.8 and 0.665 + 0.245 = 0.910 >= 0.8, so tokens {0, 1} stay; temperature then
 *   makes their logits (6, 4): p = 1/(1 + e^-2) = 0.8808 and 0.1192.
 * llama2.c's order, temperature first: top-p sees softmax(6, 4, 2) = (0.867, 0.117, 0.016);
 *   0.867 >= 0.8 already, so token 0 stays alone. */
Test(sampler_chain, temperature_last_and_first_keep_different_sets)
{
    const float logits[3] = {3, 2, 1};
    SamplerParams p = test_sampler_params_off();
    p.top_p = 0.8f;
    p.temperature = 0.5f;
    Kept k = apply(&p, logits, 3);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_p(&k, 0, 1.0 / (1.0 + exp(-2.0)));
    expect_p(&k, 1, exp(-2.0) / (1.0 + exp(-2.0)));
    Error err;
    cr_assert_eq(sampler_chain_parse("temperature,top-p", &p, &err), 0, "%s", err.msg);
    k = apply(&p, logits, 3);
    expect_ids(&k, (int[]){0}, 1);
    expect_p(&k, 0, 1.0);
}

Test(sampler_chain, parse_reads_names_and_names_the_bad_item)
{
    SamplerParams p = test_sampler_params_off();
    Error err;
    cr_assert_eq(sampler_chain_parse(" penalties, top-k ,top-p,min-p,temperature", &p, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(p.n_chain, 5);
    SamplerStage want[5] = {SAMPLER_STAGE_PENALTIES, SAMPLER_STAGE_TOP_K, SAMPLER_STAGE_TOP_P,
                            SAMPLER_STAGE_MIN_P, SAMPLER_STAGE_TEMPERATURE};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(p.chain[i], want[i], "stage %d", i);
    cr_assert_eq(sampler_chain_parse("top-k,nucleus,top-p", &p, &err), -1);
    cr_expect(strstr(err.msg, "unknown sampler \"nucleus\""), "%s", err.msg);
    cr_expect_eq(p.n_chain, 5, "a failed parse changed the chain");
    cr_assert_eq(sampler_chain_parse("top-k,,top-p", &p, &err), -1);
    cr_expect(strstr(err.msg, "empty item"), "%s", err.msg);
    cr_assert_eq(sampler_chain_parse("", &p, &err), -1);
    cr_expect(strstr(err.msg, "empty item"), "%s", err.msg);
    cr_assert_eq(sampler_chain_parse("top-k,top-p,top-k", &p, &err), -1);
    cr_expect(strstr(err.msg, "\"top-k\" appears twice"), "%s", err.msg);
    cr_assert_eq(sampler_chain_parse("Top-K", &p, &err), -1);
    cr_expect(strstr(err.msg, "\"Top-K\""), "%s", err.msg);
}

Test(sampler_chain, describe_writes_every_stage_and_the_selector)
{
    SamplerParams p;
    sampler_params_default(&p);
    p.seed = 42;
    char buf[512];
    sampler_chain_describe(&p, buf, sizeof buf);
    cr_expect_str_eq(buf, "logit-bias off -> bad-words off -> penalties off -> dry off -> "
                          "top-n-sigma off -> top-k 40 -> "
                          "typical-p off -> top-p 0.95 -> min-p 0.05 -> xtc off -> "
                          "temperature 0.8 -> random draw (seed 42)");
    Error err;
    cr_assert_eq(sampler_chain_parse("penalties,temperature", &p, &err), 0, "%s", err.msg);
    p.repeat_penalty = 1.1f;
    p.penalize_prompt = false;
    p.temperature = 0.0f;
    sampler_chain_describe(&p, buf, sizeof buf);
    cr_expect_str_eq(buf, "penalties (repeat 1.1, frequency 0, presence 0, last 64 tokens, "
                          "prompt not counted) -> temperature 0 -> greedy (argmax)");
    sampler_chain_describe(&p, buf, 10);
    cr_expect_str_eq(buf, "penalties");
}

/* The default chain is llama.cpp's order: bias and bans, penalties, top-n-sigma, top-k,
 * typical-p, top-p, min-p, XTC, temperature (common_params_sampling::samplers). */
Test(sampler_chain, default_order_is_llama_cpps)
{
    SamplerParams p, q;
    sampler_params_default(&p);
    q = p;
    Error err;
    /* llama.cpp's common_params_sampling: logit bias, then its `samplers` list
     * penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature */
    cr_assert_eq(sampler_chain_parse("logit-bias,bad-words,penalties,dry,top-n-sigma,top-k,"
                                     "typical-p,top-p,min-p,xtc,temperature",
                                     &q, &err),
                 0, "%s", err.msg);
    cr_assert_eq(p.n_chain, q.n_chain);
    cr_expect_eq(memcmp(p.chain, q.chain, sizeof p.chain[0] * (size_t)p.n_chain), 0);
}

Test(sampler_chain, presets_set_the_documented_values)
{
    SamplerParams p;
    sampler_params_default(&p);
    p.seed = 9;
    p.n_chain = 2;
    Error err;
    cr_assert_eq(sampler_preset("deterministic", &p, &err), 0, "%s", err.msg);
    cr_expect(p.temperature <= 0.0f && p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.0f &&
              p.typical_p == 1.0f && p.repeat_penalty == 1.0f);
    cr_expect(p.seed == 9 && p.n_chain == 2, "a preset changed the seed or the chain");
    cr_assert_eq(sampler_preset("balanced", &p, &err), 0, "%s", err.msg);
    cr_expect(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f &&
              p.repeat_penalty == 1.1f && p.repeat_last_n == 64);
    cr_assert_eq(sampler_preset("creative", &p, &err), 0, "%s", err.msg);
    cr_expect(p.temperature == 1.2f && p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.1f &&
              p.repeat_penalty == 1.0f);
    cr_assert_eq(sampler_preset("wild", &p, &err), -1);
    cr_expect(strstr(err.msg, "\"wild\"") && strstr(err.msg, "creative"), "%s", err.msg);
}

/* Every preset gives a working sampler, and "deterministic" is the argmax. */
Test(sampler_chain, presets_run)
{
    const float logits[4] = {0.5f, 2.0f, 1.0f, 2.0f};
    const char *names[3] = {"deterministic", "balanced", "creative"};
    for (int i = 0; i < 3; i++) {
        SamplerParams p;
        Error err;
        sampler_params_default(&p);
        cr_assert_eq(sampler_preset(names[i], &p, &err), 0, "%s", err.msg);
        Sampler s;
        init_or_fail(&s, &p, 4);
        int token = sampler_sample(&s, logits);
        cr_expect(token >= 0 && token < 4);
        if (i == 0)
            cr_expect_eq(token, 1);
        sampler_free(&s);
    }
}

/* ---- penalties ---- */

/* Logits (2, -2, 1, 0.5, -1); history 0, 1, 1, 1; repetition penalty 2. Token 0 (positive)
 * is divided: 1. Token 1 (negative) is multiplied, once although it occurred 3 times: -4
 * (dividing would give -1, a raise; applying it 3 times would give -16). The others keep
 * their logits. */
Test(sampler_penalties, repetition_divides_positive_and_multiplies_negative_once)
{
    const float logits[5] = {2, -2, 1, 0.5f, -1};
    const int history[4] = {0, 1, 1, 1};
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = -1;
    Kept k = apply_after(&p, logits, 5, history, 4, 0);
    expect_logit(&k, 0, 1.0);
    expect_logit(&k, 1, -4.0);
    expect_logit(&k, 2, 1.0);
    expect_logit(&k, 3, 0.5);
    expect_logit(&k, 4, -1.0);
}

/* History 0, 1, 2 over equal logits 2; penalty 2 halves the logits in the window:
 * last-n 0 is off, last-n 2 covers tokens 1 and 2, last-n -1 (and any n >= 3) all three. */
Test(sampler_penalties, window_covers_the_last_n_tokens)
{
    const float logits[4] = {2, 2, 2, 2};
    const int history[3] = {0, 1, 2};
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 2.0f;
    const struct {
        int last_n;
        float want[4];
    } cases[] = {{0, {2, 2, 2, 2}}, {2, {2, 1, 1, 2}}, {-1, {1, 1, 1, 2}}, {10, {1, 1, 1, 2}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        p.repeat_last_n = cases[c].last_n;
        Kept k = apply_after(&p, logits, 4, history, 3, 0);
        for (int i = 0; i < 4; i++)
            cr_expect(fabsf(k.logit[i] - cases[c].want[i]) < 1e-6f,
                      "last-n %d, token %d: logit %g, expected %g", cases[c].last_n, i,
                      k.logit[i], cases[c].want[i]);
    }
}

/* Prompt token 0, generated token 1, logits 2: with penalize_prompt both are halved,
 * without it only token 1. */
Test(sampler_penalties, penalize_prompt_decides_whether_the_prompt_counts)
{
    const float logits[3] = {2, 2, 2};
    const int history[2] = {0, 1};
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 2.0f;
    p.penalize_prompt = true;
    Kept k = apply_after(&p, logits, 3, history, 2, 1);
    expect_logit(&k, 0, 1.0);
    expect_logit(&k, 1, 1.0);
    p.penalize_prompt = false;
    k = apply_after(&p, logits, 3, history, 2, 1);
    expect_logit(&k, 0, 2.0);
    expect_logit(&k, 1, 1.0);
    expect_logit(&k, 2, 2.0);
}

/* OpenAI: logit -= count * frequency + (count > 0) * presence. Logits 1; history 0, 0, 0, 1;
 * frequency 0.5, presence 0.25: token 0 is 1 - 3 * 0.5 - 0.25 = -0.75, token 1 is
 * 1 - 0.5 - 0.25 = 0.25, token 2 stays 1. With a repetition penalty 2 as well, the
 * division comes first: token 0 is 1/2 - 1.75 = -1.25, token 1 is 1/2 - 0.75 = -0.25. */
Test(sampler_penalties, frequency_and_presence_follow_openais_formula)
{
    const float logits[3] = {1, 1, 1};
    const int history[4] = {0, 0, 0, 1};
    SamplerParams p = test_sampler_params_off();
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    Kept k = apply_after(&p, logits, 3, history, 4, 0);
    expect_logit(&k, 0, -0.75);
    expect_logit(&k, 1, 0.25);
    expect_logit(&k, 2, 1.0);
    p.repeat_penalty = 2.0f;
    k = apply_after(&p, logits, 3, history, 4, 0);
    expect_logit(&k, 0, -1.25);
    expect_logit(&k, 1, -0.25);
}

/* A long history is trimmed to what the window needs: after 1000 tokens of 0 and then
 * 1, 2, 3, a window of 3 penalizes 1, 2, 3 and not 0. */
Test(sampler_penalties, long_histories_keep_the_window)
{
    const float logits[5] = {2, 2, 2, 2, 2};
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    Sampler s;
    Error err;
    init_or_fail(&s, &p, 5);
    for (int i = 0; i < 1003; i++)
        cr_assert_eq(sampler_accept(&s, i < 1000 ? 0 : i - 999, false, &err), 0, "%s", err.msg);
    CandidateList c;
    cr_assert_eq(candidates_init(&c, 5, &err), 0, "%s", err.msg);
    sampler_apply(&s, logits, &c);
    float got[5];
    for (int i = 0; i < c.n; i++)
        got[c.data[i].id] = c.data[i].logit;
    cr_expect(got[0] == 2.0f && got[1] == 1.0f && got[2] == 1.0f && got[3] == 1.0f &&
              got[4] == 2.0f, "logits %g %g %g %g %g", got[0], got[1], got[2], got[3], got[4]);
    cr_expect(s.cap_history <= 64, "the history grew to %d entries", s.cap_history);
    candidates_free(&c);
    sampler_free(&s);
}

/* Penalties after top-k (a list no longer in id order) find their tokens all the same:
 * logits (3, 2, 1, 0), top-k 2 then penalty 2 on token 1 gives (3, 1). */
Test(sampler_penalties, penalties_after_a_filter_find_their_tokens)
{
    const float logits[4] = {3, 2, 1, 0};
    const int history[2] = {1, 3};
    SamplerParams p = test_sampler_params_off();
    p.top_k = 2;
    p.repeat_penalty = 2.0f;
    Error err;
    cr_assert_eq(sampler_chain_parse("top-k,penalties", &p, &err), 0, "%s", err.msg);
    Kept k = apply_after(&p, logits, 4, history, 2, 0);
    expect_ids(&k, (int[]){0, 1}, 2);
    expect_logit(&k, 0, 3.0);
    expect_logit(&k, 1, 1.0);
}

/* ---- bad words and logit bias ---- */

/* Vocabulary of 8 with equal logits. Bad words: the phrase (4, 5, 6), the word 3 and its
 * leading-space spelling 7. 3 and 7 are always banned; 6 only right after 4, 5, whether
 * those were generated or part of the prompt. */
Test(sampler_bans, bad_words_ban_single_tokens_and_phrase_endings)
{
    const float logits[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int phrase[3] = {4, 5, 6}, word[1] = {3}, spaced[1] = {7};
    const TokenSequence bad[3] = {{phrase, 3}, {word, 1}, {spaced, 1}};
    SamplerParams p = test_sampler_params_off();
    p.bad_words = bad;
    p.n_bad_words = 3;
    const struct {
        int history[3];
        int n, n_prompt;
        bool six_banned;
    } cases[] = {
        {{0}, 0, 0, false},       {{4}, 1, 0, false},    {{4, 5}, 2, 0, true},
        {{5, 4}, 2, 0, false},    {{4, 5}, 2, 2, true},  {{4, 5, 1}, 3, 0, false},
        {{1, 4, 5}, 3, 1, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        Kept k = apply_after(&p, logits, 8, cases[c].history, cases[c].n, cases[c].n_prompt);
        cr_expect_eq(k.n, cases[c].six_banned ? 5 : 6, "case %zu: %d kept", c, k.n);
        cr_expect_eq(k.p[3], 0.0, "case %zu: token 3 not banned", c);
        cr_expect_eq(k.p[7], 0.0, "case %zu: token 7 not banned", c);
        cr_expect_eq(k.p[6] == 0.0, cases[c].six_banned, "case %zu: token 6 p = %g", c, k.p[6]);
        cr_expect(k.p[4] > 0.0 && k.p[5] > 0.0, "case %zu: the phrase's first tokens banned", c);
    }
}

/* Logits 0 for 4 tokens; bias +ln 3 on token 0 and -inf on token 2: token 2 leaves, and
 * the others are 3 : 1 : 1, i.e. 3/5, 1/5, 1/5. */
Test(sampler_bans, logit_bias_adds_and_minus_infinity_bans)
{
    const float logits[4] = {0, 0, 0, 0};
    const LogitBias bias[2] = {{0, logf(3.0f)}, {2, -INFINITY}};
    SamplerParams p = test_sampler_params_off();
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, (int[]){0, 1, 3}, 3);
    expect_p(&k, 0, 0.6);
    expect_p(&k, 1, 0.2);
    expect_p(&k, 3, 0.2);
}

/* Banning every token cannot be honoured: the bans are lifted and each token is equally
 * likely (never a sum of 0 or NaN). */
Test(sampler_bans, banning_everything_leaves_a_uniform_choice)
{
    const float logits[3] = {1, 2, 3};
    const LogitBias bias[3] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
    SamplerParams p = test_sampler_params_off();
    p.logit_bias = bias;
    p.n_logit_bias = 3;
    Kept k = apply(&p, logits, 3);
    expect_ids(&k, (int[]){0, 1, 2}, 3);
    expect_p(&k, 1, 1.0 / 3);
    p.temperature = 0.0f;
    Sampler s;
    init_or_fail(&s, &p, 3);
    cr_expect_eq(sampler_sample(&s, logits), 0);
    sampler_free(&s);
}

Test(sampler_bans, logit_bias_parse_reads_id_and_value)
{
    LogitBias b;
    Error err;
    cr_assert_eq(sampler_logit_bias_parse("13:-inf", &b, &err), 0, "%s", err.msg);
    cr_expect(b.token == 13 && b.bias == -INFINITY);
    cr_assert_eq(sampler_logit_bias_parse("42:+2.5", &b, &err), 0, "%s", err.msg);
    cr_expect(b.token == 42 && b.bias == 2.5f);
    const char *bad[] = {"x:1", "5", "5:", "5:abc", "5:nan", "5:inf", "-1:2", "5:1x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(sampler_logit_bias_parse(bad[i], &b, &err), -1, "\"%s\" accepted", bad[i]);
        cr_expect(strstr(err.msg, "logit bias"), "%s", err.msg);
    }
}

/* ---- the selector, seeds, clones ---- */

/* Random logits over 50 tokens: greedy decoding and top-k 1 at temperature 1 pick the
 * same token, for many logit rows and seeds. */
Test(sampler_select, greedy_equals_top_k_1)
{
    enum { V = 50 };
    float logits[V];
    Rng rng;
    rng_seed(&rng, 123);
    SamplerParams greedy = test_sampler_params_off(), top1 = test_sampler_params_off();
    greedy.temperature = 0.0f;
    top1.top_k = 1;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < V; i++)
            logits[i] = rng_normal(&rng);
        greedy.seed = top1.seed = (uint64_t)trial;
        Sampler a, b;
        init_or_fail(&a, &greedy, V);
        init_or_fail(&b, &top1, V);
        int ta = sampler_sample(&a, logits), tb = sampler_sample(&b, logits);
        int argmax = 0;
        for (int i = 1; i < V; i++)
            argmax = logits[i] > logits[argmax] ? i : argmax;
        cr_expect(ta == tb && ta == argmax, "trial %d: greedy %d, top-k 1 %d, argmax %d", trial,
                  ta, tb, argmax);
        sampler_free(&a);
        sampler_free(&b);
    }
}

/* The tokens a sampler draws for `n` identical rows of logits. */
static void draw_sequence(const SamplerParams *p, const float *logits, int n_vocab, int *out,
                          int n)
{
    Sampler s;
    init_or_fail(&s, p, n_vocab);
    for (int i = 0; i < n; i++)
        out[i] = sampler_sample(&s, logits);
    sampler_free(&s);
}

Test(sampler_select, same_seed_same_tokens_and_seed_zero_is_valid)
{
    const float logits[10] = {0};
    int a[100], b[100], c[100];
    SamplerParams p = test_sampler_params_off();
    p.seed = 42;
    draw_sequence(&p, logits, 10, a, 100);
    draw_sequence(&p, logits, 10, b, 100);
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "seed 42 gave two different sequences");
    p.seed = 0;
    draw_sequence(&p, logits, 10, a, 100);
    p.seed = 1;
    draw_sequence(&p, logits, 10, b, 100);
    cr_expect_neq(memcmp(a, b, sizeof a), 0, "seeds 0 and 1 gave the same 100 tokens");
    p.seed = 0;
    draw_sequence(&p, logits, 10, c, 100);
    cr_expect_eq(memcmp(a, c, sizeof a), 0, "seed 0 is not reproducible");
    int distinct = 0, seen[10] = {0};
    for (int i = 0; i < 100; i++)
        distinct += !seen[a[i]]++;
    cr_expect(distinct == 10, "seed 0 drew only %d of 10 equally likely tokens", distinct);
}

/* A clone made mid-generation (history with penalties, RNG advanced) goes on exactly as
 * the original does. */
Test(sampler_select, clone_continues_identically)
{
    enum { V = 20 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)(i % 7) * 0.3f;
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 1.3f;
    p.presence_penalty = 0.2f;
    p.top_p = 0.9f;
    p.seed = 77;
    Sampler s, t;
    Error err;
    init_or_fail(&s, &p, V);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sampler_accept(&s, sampler_sample(&s, logits), false, &err), 0, "%s", err.msg);
    cr_assert_eq(sampler_clone(&t, &s, &err), 0, "%s", err.msg);
    for (int i = 0; i < 50; i++) {
        int a = sampler_sample(&s, logits), b = sampler_sample(&t, logits);
        cr_assert_eq(a, b, "step %d: original %d, clone %d", i, a, b);
        cr_assert_eq(sampler_accept(&s, a, false, &err), 0, "%s", err.msg);
        cr_assert_eq(sampler_accept(&t, b, false, &err), 0, "%s", err.msg);
    }
    sampler_free(&s);
    sampler_free(&t);
}

/* sampler_sample (which sorts only as much as its draw needs) and sampler_apply +
 * sampler_select (which sort everything) pick the same tokens for the same seed, with no
 * filter on (the lazy sort's hardest case), with the default chain and with typical-p. */
Test(sampler_select, sample_equals_apply_then_select)
{
    enum { V = 1000 };
    float *logits = malloc(V * sizeof *logits);
    Rng rng;
    rng_seed(&rng, 9);
    for (int i = 0; i < V; i++)
        logits[i] = 2.0f * rng_normal(&rng);
    SamplerParams settings[3];
    settings[0] = test_sampler_params_off();
    sampler_params_default(&settings[1]);
    settings[2] = test_sampler_params_off();
    settings[2].typical_p = 0.9f;
    settings[2].temperature = 1.5f;
    Error err;
    CandidateList c;
    cr_assert_eq(candidates_init(&c, V, &err), 0, "%s", err.msg);
    for (int k = 0; k < 3; k++) {
        settings[k].seed = 1000 + (uint64_t)k;
        Sampler a, b;
        init_or_fail(&a, &settings[k], V);
        init_or_fail(&b, &settings[k], V);
        for (int i = 0; i < 300; i++) {
            sampler_apply(&b, logits, &c);
            int ta = sampler_sample(&a, logits), tb = sampler_select(&b, &c);
            cr_assert_eq(ta, tb, "settings %d, draw %d: sample %d, apply+select %d", k, i, ta, tb);
        }
        sampler_free(&a);
        sampler_free(&b);
    }
    candidates_free(&c);
    free(logits);
}

/* sampler_reset forgets the history: the penalty no longer applies. */
Test(sampler_select, reset_forgets_the_history)
{
    const float logits[2] = {2, 2};
    SamplerParams p = test_sampler_params_off();
    p.repeat_penalty = 2.0f;
    p.temperature = 0.0f;
    Sampler s;
    Error err;
    init_or_fail(&s, &p, 2);
    cr_assert_eq(sampler_accept(&s, 0, false, &err), 0, "%s", err.msg);
    cr_expect_eq(sampler_sample(&s, logits), 1, "token 0 was not penalized");
    sampler_reset(&s);
    cr_expect_eq(sampler_sample(&s, logits), 0, "the history survived the reset");
    sampler_free(&s);
}

/* ---- bad parameters ---- */

Test(sampler_params, init_and_accept_reject_bad_values)
{
    Sampler s;
    Error err;
    const int empty_word[1] = {0};
    const TokenSequence no_tokens[1] = {{empty_word, 0}};
    const LogitBias far[1] = {{10, 1.0f}};
    const int outside[2] = {1, 12};
    const TokenSequence outside_word[1] = {{outside, 2}};
    const struct {
        const char *field, *want;
    } cases[] = {
        {"top_p", "top-p 1.5"},         {"min_p", "min-p -0.1"},
        {"typical_p", "typical-p"},     {"temperature", "temperature"},
        {"top_k", "top-k -1"},          {"repeat_penalty", "repeat penalty 0"},
        {"repeat_last_n", "repeat-last-n -2"},
        {"bias", "token 10"},           {"bad_word", "no tokens"},
        {"bad_word_token", "token 12"}, {"chain", "chain entry"},
        {"xtc_probability", "xtc-probability 1.5"}, {"xtc_threshold", "xtc-threshold -1"},
        {"top_n_sigma", "top-n-sigma"}, {"dynatemp_range", "dynatemp-range -1"},
        {"dynatemp_exponent", "dynatemp-exp"}, {"mirostat", "mirostat 3"},
        {"mirostat_tau", "mirostat-ent"}, {"dry_multiplier", "dry-multiplier -1"},
        {"dry_base", "dry-base 0.5"},   {"dry_allowed_length", "dry-allowed-length -1"},
        {"dry_penalty_last_n", "dry-penalty-last-n -2"},
        {"dry_breaker_token", "DRY sequence breaker 0 has token 12"},
        {"min_keep", "min-keep -1"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        SamplerParams p = test_sampler_params_off();
        const char *f = cases[c].field;
        if (!strcmp(f, "top_p"))
            p.top_p = 1.5f;
        else if (!strcmp(f, "min_p"))
            p.min_p = -0.1f;
        else if (!strcmp(f, "typical_p"))
            p.typical_p = NAN;
        else if (!strcmp(f, "temperature"))
            p.temperature = INFINITY;
        else if (!strcmp(f, "top_k"))
            p.top_k = -1;
        else if (!strcmp(f, "repeat_penalty"))
            p.repeat_penalty = 0.0f;
        else if (!strcmp(f, "repeat_last_n"))
            p.repeat_last_n = -2;
        else if (!strcmp(f, "bias"))
            p.logit_bias = far, p.n_logit_bias = 1;
        else if (!strcmp(f, "bad_word"))
            p.bad_words = no_tokens, p.n_bad_words = 1;
        else if (!strcmp(f, "bad_word_token"))
            p.bad_words = outside_word, p.n_bad_words = 1;
        else if (!strcmp(f, "xtc_probability"))
            p.xtc_probability = 1.5f;
        else if (!strcmp(f, "xtc_threshold"))
            p.xtc_threshold = -1.0f;
        else if (!strcmp(f, "top_n_sigma"))
            p.top_n_sigma = NAN;
        else if (!strcmp(f, "dynatemp_range"))
            p.dynatemp_range = -1.0f;
        else if (!strcmp(f, "dynatemp_exponent"))
            p.dynatemp_exponent = -0.5f;
        else if (!strcmp(f, "mirostat"))
            p.mirostat = 3;
        else if (!strcmp(f, "mirostat_tau"))
            p.mirostat_tau = -1.0f;
        else if (!strcmp(f, "dry_multiplier"))
            p.dry_multiplier = -1.0f;
        else if (!strcmp(f, "dry_base"))
            p.dry_base = 0.5f;
        else if (!strcmp(f, "dry_allowed_length"))
            p.dry_allowed_length = -1;
        else if (!strcmp(f, "dry_penalty_last_n"))
            p.dry_penalty_last_n = -2;
        else if (!strcmp(f, "dry_breaker_token"))
            p.dry_breakers = outside_word, p.n_dry_breakers = 1;
        else if (!strcmp(f, "min_keep"))
            p.min_keep = -1;
        else
            p.chain[1] = p.chain[0];
        cr_expect_eq(sampler_init(&s, &p, 10, &err), -1, "%s accepted", f);
        cr_expect(strstr(err.msg, cases[c].want), "%s: \"%s\" lacks \"%s\"", f, err.msg,
                  cases[c].want);
        sampler_free(&s);
    }
    SamplerParams p = test_sampler_params_off();
    init_or_fail(&s, &p, 10);
    cr_expect_eq(sampler_accept(&s, 10, false, &err), -1);
    cr_expect(strstr(err.msg, "token 10"), "%s", err.msg);
    cr_expect_eq(sampler_accept(&s, -1, true, &err), -1);
    sampler_free(&s);
}

/* ---- the candidate list directly ---- */

/* Two tokens of probability 1/2: the draw maps r in [0, 1/2) to the first in the list and
 * [1/2, 1) to the second, exactly (the sums are whole units, so there is no rounding at
 * the boundary); a list of 1/4, 1/4, 1/2 splits at 1/4 and 1/2. */
Test(sampler_candidates, draw_splits_0_1_by_the_probabilities)
{
    Candidate data[3] = {{0, 0.0f, 0.5f}, {1, 0.0f, 0.5f}};
    CandidateList c = {.data = data, .n = 2, .cap = 3};
    cr_expect_eq(candidates_draw(&c, 0.0f), 0);
    cr_expect_eq(candidates_draw(&c, 0.5f - 0x1p-24f), 0);
    cr_expect_eq(candidates_draw(&c, 0.5f), 1);
    cr_expect_eq(candidates_draw(&c, 1.0f - 0x1p-24f), 1);
    Candidate three[3] = {{5, 0.0f, 0.25f}, {6, 0.0f, 0.25f}, {7, 0.0f, 0.5f}};
    c = (CandidateList){.data = three, .n = 3, .cap = 3};
    cr_expect_eq(candidates_draw(&c, 0.25f - 0x1p-24f), 5);
    cr_expect_eq(candidates_draw(&c, 0.25f), 6);
    cr_expect_eq(candidates_draw(&c, 0.5f), 7);
}

/* The draw without sorting finds, for every r, the token that a walk over the fully
 * sorted list finds: 2000 tokens (more than one histogram slice holds), 500 values of r. */
Test(sampler_candidates, draw_sorted_equals_a_walk_over_the_sorted_list)
{
    enum { V = 2000 };
    Error err;
    CandidateList unsorted, sorted;
    cr_assert_eq(candidates_init(&unsorted, V, &err), 0, "%s", err.msg);
    cr_assert_eq(candidates_init(&sorted, V, &err), 0, "%s", err.msg);
    float *logits = malloc(V * sizeof *logits);
    Rng rng;
    rng_seed(&rng, 31);
    for (int i = 0; i < V; i++)
        logits[i] = 1.5f * rng_normal(&rng);
    for (int k = 0; k < 500; k++) {
        float r = rng_uniform(&rng);
        candidates_fill(&unsorted, logits, V);
        candidates_softmax(&unsorted);
        candidates_fill(&sorted, logits, V);
        candidates_softmax(&sorted);
        candidates_sort(&sorted);
        int a = candidates_draw_sorted(&unsorted, r), b = candidates_draw(&sorted, r);
        cr_assert_eq(a, b, "r = %.8f: %d without sorting, %d walking the sorted list", r, a, b);
    }
    free(logits);
    candidates_free(&unsorted);
    candidates_free(&sorted);
}

/* The trace of one step, worked out by hand for logits {1, 3, 2, 0} and the chain
 * penalties (off), top-k 2, temperature 0.5:
 *   after penalties    all 4, p = e^l / (1 + e + e^2 + e^3): 0.6439, 0.2369, 0.0871, 0.0321
 *   after top-k 2      ids 1, 2: p = e^3 / (e^3 + e^2) = 1 / (1 + e^-1) = 0.7311, 0.2689
 *   after temperature  logits 6, 4: p = 1 / (1 + e^-2) = 0.8808, 0.1192
 *   the chain          the same list, which the selector draws from. */
Test(sampler_chain, trace_records_the_list_after_each_stage)
{
    const float logits[4] = {1, 3, 2, 0};
    SamplerParams p = test_sampler_params_off();
    Error err;
    cr_assert_eq(sampler_chain_parse("penalties,top-k,temperature", &p, &err), 0, "%s", err.msg);
    p.top_k = 2;
    p.temperature = 0.5f;
    Sampler s;
    init_or_fail(&s, &p, 4);
    SamplerTrace trace;
    int token = sampler_sample_traced(&s, logits, &trace);
    cr_assert_eq(trace.n_steps, 4);
    cr_expect_eq(trace.chosen, token);
    double z = 1 + exp(1) + exp(2) + exp(3);
    const struct {
        const char *stage;
        int n, n_top, ids[4];
        double p[4];
    } want[4] = {
        {"penalties", 4, 4, {1, 2, 0, 3}, {exp(3) / z, exp(2) / z, exp(1) / z, 1 / z}},
        {"top-k", 2, 2, {1, 2}, {1 / (1 + exp(-1)), 1 / (1 + exp(1))}},
        {"temperature", 2, 2, {1, 2}, {1 / (1 + exp(-2)), 1 / (1 + exp(2))}},
        {"chain", 2, 2, {1, 2}, {1 / (1 + exp(-2)), 1 / (1 + exp(2))}},
    };
    int compared = 0;
    for (int i = 0; i < 4; i++) {
        const SamplerTraceStep *t = &trace.steps[i];
        cr_expect_str_eq(t->stage, want[i].stage, "step %d", i);
        cr_expect_eq(t->n, want[i].n, "step %s", t->stage);
        cr_assert_eq(t->n_top, want[i].n_top, "step %s", t->stage);
        for (int j = 0; j < t->n_top; j++, compared++) {
            cr_expect_eq(t->top[j].id, want[i].ids[j], "step %s, rank %d", t->stage, j);
            cr_expect(fabs(t->top[j].p - want[i].p[j]) < 1e-6, "step %s, id %d: p %g, want %g",
                      t->stage, t->top[j].id, t->top[j].p, want[i].p[j]);
        }
    }
    cr_expect_eq(compared, 10);
    sampler_free(&s);
}

/* A trace costs a sort but changes nothing: the traced draws are the untraced ones, token
 * for token, from the same seed, over the default chain on a 16-token distribution. */
Test(sampler_chain, traced_sampling_draws_the_same_tokens)
{
    float logits[MAX_V];
    for (int i = 0; i < MAX_V; i++)
        logits[i] = (float)((i * 7) % MAX_V) / 4.0f;
    SamplerParams p;
    sampler_params_default(&p);
    p.seed = 9;
    Sampler plain, traced;
    init_or_fail(&plain, &p, MAX_V);
    init_or_fail(&traced, &p, MAX_V);
    SamplerTrace trace;
    int same = 0, distinct[MAX_V] = {0};
    for (int i = 0; i < 200; i++) {
        int a = sampler_sample(&plain, logits), b = sampler_sample_traced(&traced, logits, &trace);
        same += a == b;
        distinct[a] = 1;
    }
    cr_expect_eq(same, 200);
    int n_distinct = 0;
    for (int i = 0; i < MAX_V; i++)
        n_distinct += distinct[i];
    cr_expect(n_distinct > 1, "the draws must vary for the comparison to mean something");
    sampler_free(&plain);
    sampler_free(&traced);
}

/* Every stage's name reads back as that stage: the table that parses chains and the one
 * that names the trace's steps are one. */
Test(sampler_chain, every_stage_name_parses_back_to_its_stage)
{
    int compared = 0;
    for (int i = 0; i < SAMPLER_STAGE_COUNT; i++, compared++) {
        SamplerParams p = test_sampler_params_off();
        Error err;
        const char *name = sampler_stage_name((SamplerStage)i);
        cr_assert_eq(sampler_chain_parse(name, &p, &err), 0, "%s: %s", name, err.msg);
        cr_expect_eq(p.n_chain, 1);
        cr_expect_eq(p.chain[0], (SamplerStage)i, "%s", name);
    }
    cr_expect_eq(compared, SAMPLER_STAGE_COUNT);
    cr_expect_eq(compared, 11);
}

/* ---- the samplers llama.cpp has beyond the classic filters ----
 * The cases are llama.cpp's own (tests/test-sampling.cpp): probabilities (0.4, 0.3, 0.2,
 * 0.1) as logits ln p. llama.cpp's tester leaves the survivors' p as they were; quill's
 * sampler_apply renormalizes them, so each expected value here is llama.cpp's divided by
 * the sum of the kept ones. */

/* The kept ids, in order, are ids[0..n), with probabilities p[0..n); returns n. */
static int expect_kept(const Kept *k, const int *ids, const double *p, int n)
{
    expect_ids(k, ids, n);
    for (int i = 0; i < n; i++)
        expect_p(k, ids[i], p[i]);
    return n;
}

/* logits[i] = ln probs[i], for 4 tokens: a softmax gives the probabilities back. */
static void logits_of(const float *probs, float *logits)
{
    for (int i = 0; i < 4; i++)
        logits[i] = logf(probs[i]);
}

static void llama_logits(float *logits)
{
    const float probs[4] = {0.4f, 0.3f, 0.2f, 0.1f};
    logits_of(probs, logits);
}

/* XTC with probability 0.99 (the coin of seed 0 falls below it) and threshold t: every
 * token with p >= t but the least likely of them goes. t = 0.09: all four reach it, 0.1
 * stays alone; 0.19: 0.4 and 0.3 go, (0.2, 0.1) / 0.3; 0.29: 0.4 goes, (0.3, 0.2, 0.1) /
 * 0.6; 0.39: only 0.4 reaches it, and one top choice is never removed. */
Test(sampler_new, xtc_matches_llama_cpps_vectors)
{
    float logits[4];
    llama_logits(logits);
    const struct {
        float threshold;
        int n, ids[4];
        double p[4];
    } cases[] = {
        {0.09f, 1, {3}, {1.0}},
        {0.19f, 2, {2, 3}, {0.2 / 0.3, 0.1 / 0.3}},
        {0.29f, 3, {1, 2, 3}, {0.3 / 0.6, 0.2 / 0.6, 0.1 / 0.6}},
        {0.39f, 4, {0, 1, 2, 3}, {0.4, 0.3, 0.2, 0.1}},
    };
    int compared = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        SamplerParams p = test_sampler_params_off();
        p.xtc_probability = 0.99f;
        p.xtc_threshold = cases[c].threshold;
        Kept k = apply(&p, logits, 4);
        compared += expect_kept(&k, cases[c].ids, cases[c].p, cases[c].n);
    }
    cr_expect_eq(compared, 10);
}

/* XTC's off values: probability 0, or a threshold above 0.5 (no two tokens can reach it),
 * even with probability 1. */
Test(sampler_new, xtc_off_values_keep_everything)
{
    float logits[4];
    llama_logits(logits);
    const int all[4] = {0, 1, 2, 3};
    SamplerParams p = test_sampler_params_off();
    p.xtc_probability = 0.0f;
    p.xtc_threshold = 0.1f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, all, 4);
    p.xtc_probability = 1.0f;
    p.xtc_threshold = 0.51f;
    k = apply(&p, logits, 4);
    expect_ids(&k, all, 4);
}

/* The coin: with probability 0.5 and threshold 0.19, half the draws see the whole
 * distribution and half see (0.2, 0.1) / 0.3, so the frequencies are
 * 0.5 * 0.4 = 0.2, 0.5 * 0.3 = 0.15, 0.5 * 0.2 + 0.5 * 2/3 = 0.4333, 0.05 + 0.5 / 3 = 0.2167. */
Test(sampler_new, xtc_probability_is_the_chance_of_removing)
{
    float logits[4];
    llama_logits(logits);
    SamplerParams p = test_sampler_params_off();
    p.xtc_probability = 0.5f;
    p.xtc_threshold = 0.19f;
    p.seed = 3;
    double freq[4];
    const double want[4] = {0.2, 0.15, 0.1 + 1.0 / 3.0, 0.05 + 1.0 / 6.0};
    sample_frequencies(&p, logits, 4, freq);
    expect_frequencies(freq, want, 4);
}

/* top-n-sigma on llama.cpp's cases, probabilities (0.1, 0.2, 0.3, 0.4) for tokens 0..3.
 * By hand: the logits ln p are -2.302585, -1.609438, -1.203973, -0.916291; their mean is
 * -1.508072, the squared deviations 0.631251, 0.010275, 0.092476, 0.350205 average to
 * 0.271052, sigma = 0.520627. n = 1: the bar is -0.916291 - 0.520627 = -1.436918, and 0.4
 * and 0.3 pass: (0.4, 0.3) / 0.7 = (0.571429, 0.428571). n = 0: only the best. n = 3: the
 * bar -2.478 lets every token through. */
Test(sampler_new, top_n_sigma_matches_llama_cpps_vectors)
{
    const float probs[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    float logits[4];
    logits_of(probs, logits);
    const struct {
        float n_sigma;
        int n, ids[4];
        double p[4];
    } cases[] = {
        {1.0f, 2, {3, 2}, {0.571429, 0.428571}},
        {0.0f, 1, {3}, {1.0}},
        {3.0f, 4, {3, 2, 1, 0}, {0.4, 0.3, 0.2, 0.1}},
    };
    int compared = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        SamplerParams p = test_sampler_params_off();
        p.top_n_sigma = cases[c].n_sigma;
        Kept k = apply(&p, logits, 4);
        compared += expect_kept(&k, cases[c].ids, cases[c].p, cases[c].n);
    }
    cr_expect_eq(compared, 7);
}

/* Banned tokens do not count toward the mean and sigma (their -inf would make both
 * infinite): logits (2, 0, -inf, -inf) have mean 1 and sigma 1 over the two finite ones,
 * so n = 1 keeps l >= 2 - 1 = 1, token 0 alone (counted, the bans would make the bar NaN,
 * which no logit passes: an empty list). The bar moves with the temperature as the logits do: the same set at T = 0.5. */
Test(sampler_new, top_n_sigma_ignores_banned_tokens_and_the_temperature)
{
    const float logits[4] = {2.0f, 0.0f, -INFINITY, -INFINITY};
    const int best[1] = {0};
    SamplerParams p = test_sampler_params_off();
    p.top_n_sigma = 1.0f;
    Kept k = apply(&p, logits, 4);
    expect_ids(&k, best, 1);
    const float spread[4] = {2.0f, 1.5f, 0.0f, -2.0f}; /* mean 0.375, sigma 1.5562 */
    const int two[2] = {0, 1};
    p.top_n_sigma = 0.5f; /* bar 2 - 0.778 = 1.222 */
    k = apply(&p, spread, 4);
    expect_ids(&k, two, 2);
    Error err;
    cr_assert_eq(sampler_chain_parse("temperature,top-n-sigma", &p, &err), 0, "%s", err.msg);
    p.temperature = 0.5f;
    k = apply(&p, spread, 4);
    expect_ids(&k, two, 2);
}

/* Dynamic temperature. llama.cpp's own cases have range 0, where it is the plain
 * temperature (T = 1 leaves (0.4, 0.3, 0.2, 0.1) as they are; T = 0 is greedy). By hand
 * for range > 0: the entropy of (0.4, 0.3, 0.2, 0.1) is H = 1.279854, over ln 4 = 1.386294
 * that is 0.923220. Temperature 1, range 0.5, exponent 1: T = 0.5 + 1 * 0.923220 =
 * 1.423220, and p_i ~ p_i^(1/T) gives (0.356001, 0.290847, 0.218745, 0.134408); exponent 2:
 * T = 0.5 + 0.923220^2 = 1.352335, (0.361521, 0.292244, 0.216537, 0.129698); temperature
 * 0.3, range 0.5: T_low = max(0, -0.2) = 0, T = 0.8 * 0.923220 = 0.738576, (0.450114,
 * 0.304903, 0.176093, 0.068890). */
Test(sampler_new, dynamic_temperature_follows_the_entropy)
{
    float logits[4];
    llama_logits(logits);
    const int ids[4] = {0, 1, 2, 3};
    const struct {
        float temperature, range, exponent;
        double p[4];
    } cases[] = {
        {1.0f, 0.0f, 1.0f, {0.4, 0.3, 0.2, 0.1}},
        {1.0f, 0.5f, 1.0f, {0.356001, 0.290847, 0.218745, 0.134408}},
        {1.0f, 0.5f, 2.0f, {0.361521, 0.292244, 0.216537, 0.129698}},
        {0.3f, 0.5f, 1.0f, {0.450114, 0.304903, 0.176093, 0.068890}},
    };
    int compared = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        SamplerParams p = test_sampler_params_off();
        p.temperature = cases[c].temperature;
        p.dynatemp_range = cases[c].range;
        p.dynatemp_exponent = cases[c].exponent;
        Kept k = apply(&p, logits, 4);
        compared += expect_kept(&k, ids, cases[c].p, 4);
    }
    cr_expect_eq(compared, 16);
    /* temperature 0 stays greedy whatever the range: the argmax, token 0 */
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.0f;
    p.dynatemp_range = 0.5f;
    Sampler s;
    init_or_fail(&s, &p, 4);
    for (int i = 0; i < 20; i++)
        cr_expect_eq(sampler_sample(&s, logits), 0);
    sampler_free(&s);
}

/* The temperature is the entropy's: a uniform list (H = ln n) gets T_high, and the
 * function says which T it used. Logits (0, 0, 0, 0), temperature 1, range 0.5: T = 1.5. */
Test(sampler_new, dynamic_temperature_of_a_uniform_list_is_the_highest)
{
    Error err;
    CandidateList c;
    cr_assert_eq(candidates_init(&c, 4, &err), 0, "%s", err.msg);
    const float flat[4] = {0, 0, 0, 0};
    candidates_fill(&c, flat, 4);
    cr_expect(fabsf(candidates_dynamic_temperature(&c, 1.0f, 0.5f, 1.0f) - 1.5f) < 1e-6f);
    const float one[4] = {0, -INFINITY, -INFINITY, -INFINITY}; /* one choice: unchanged */
    candidates_fill(&c, one, 4);
    cr_expect_eq(candidates_dynamic_temperature(&c, 1.0f, 0.5f, 1.0f), 1.0f);
    candidates_free(&c);
}

/* Ten greedy steps on 4 logits: each picks token 0 and leaves mu at want[step]. */
static void expect_mu_steps(Sampler *s, const float *logits, const double *want)
{
    int compared = 0;
    for (int i = 0; i < 10; i++, compared++) {
        cr_expect_eq(sampler_sample(s, logits), 0);
        cr_expect(fabs(s->mirostat_mu - want[i]) < 1e-4, "step %d: mu %.6f, expected %.6f",
                  i + 1, s->mirostat_mu, want[i]);
    }
    cr_expect_eq(compared, 10);
}

/* Mirostat 2.0's feedback over 10 steps, by hand. Probabilities (0.5, 0.25, 0.125, 0.125)
 * have surprises 1, 2, 3, 3 bits; tau 0.4, eta 0.9, greedy, so token 0 is chosen each time
 * and mu moves by -0.9 * (s - 0.4), s the surprise of 0.5 within the cut list:
 *   mu 0.8 (2 tau): nothing is <= 0.8, the best stays alone, s = 0   -> mu 1.16
 *   1.16, 1.52, 1.88: only token 0 (1 <= mu < 2), s = 0                -> 1.52, 1.88, 2.24
 *   2.24: tokens 0, 1, s = log2(0.75 / 0.5) = 0.584963                -> 2.073534
 *   2.073534: the same                                                -> 1.907067
 *   1.907067: token 0 alone                                           -> 2.267067
 *   2.267067, 2.100601: tokens 0, 1                                   -> 2.100601, 1.934135
 *   1.934135: token 0 alone                                           -> 2.294135 */
Test(sampler_new, mirostat_v2_mu_follows_the_surprise)
{
    const float probs[4] = {0.5f, 0.25f, 0.125f, 0.125f};
    float logits[4];
    logits_of(probs, logits);
    const double want[10] = {1.16,     1.52,     1.88,     2.24,     2.073534,
                             1.907067, 2.267067, 2.100601, 1.934135, 2.294135};
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.0f;
    p.mirostat = 2;
    p.mirostat_tau = 0.4f;
    p.mirostat_eta = 0.9f;
    Sampler s;
    init_or_fail(&s, &p, 4);
    cr_expect(fabsf(s.mirostat_mu - 0.8f) < 1e-6f, "mu starts at %g", s.mirostat_mu);
    expect_mu_steps(&s, logits, want);
    Sampler copy;
    Error err;
    cr_assert_eq(sampler_clone(&copy, &s, &err), 0, "%s", err.msg);
    cr_expect_eq(copy.mirostat_mu, s.mirostat_mu);
    sampler_reset(&s);
    cr_expect(fabsf(s.mirostat_mu - 0.8f) < 1e-6f, "reset: mu %g", s.mirostat_mu);
    sampler_free(&copy);
    sampler_free(&s);
}

/* Mirostat replaces the filters: with top-k 1 in the chain, mu 2.5 (tau 1.25, eta 0 so it
 * stays) still keeps the tokens of surprise <= 2.5 bits, 0 and 1, drawn 2/3 : 1/3. */
Test(sampler_new, mirostat_v2_cuts_by_surprise_instead_of_the_filters)
{
    const float probs[4] = {0.5f, 0.25f, 0.125f, 0.125f};
    float logits[4];
    logits_of(probs, logits);
    SamplerParams p = test_sampler_params_off();
    p.top_k = 1;
    p.mirostat = 2;
    p.mirostat_tau = 1.25f;
    p.mirostat_eta = 0.0f;
    p.seed = 5;
    double freq[4];
    const double want[4] = {2.0 / 3.0, 1.0 / 3.0, 0, 0};
    sample_frequencies(&p, logits, 4, freq);
    expect_frequencies(freq, want, 4);
    char buf[256];
    sampler_chain_describe(&p, buf, sizeof buf);
    cr_expect_str_eq(buf, "logit-bias off -> bad-words off -> temperature 1 -> mirostat 2 "
                          "(tau 1.25, eta 0) -> random draw (seed 5)");
}

/* Mirostat (version 1) over 10 steps, by hand. Probabilities proportional to 1/i^2 over 4
 * tokens, (1, 1/4, 1/9, 1/16) / 1.423611, follow Zipf's law exactly: every
 * ln(p_i / p_i+1) is 2 ln((i+1) / i), so s = 2, eps = 1, and
 * k = (2^mu / (1 - 4^-1))^(1/2) = sqrt(2^mu / 0.75). tau 1, eta 1, greedy (token 0):
 *   mu 2 (2 tau): k = 2.309 -> 2 tokens, s = -log2(1 / 1.25) = 0.321928      -> mu 2.678072
 *   2.678072: k = 2.921 -> 2, the same s                                     -> 3.356144
 *   3.356144: k = 3.695 -> 3, s = log2(1.361111) = 0.444785                  -> 3.911359
 *   3.911359: k = 4.479 -> 4 (all), s = log2(1.423611) = 0.509555            -> 4.401804
 *   then k > 4 keeps all four, and mu grows by 1 - 0.509555 = 0.490445 a step:
 *   4.892249, 5.382694, 5.873139, 6.363583, 6.854028, 7.344473 */
Test(sampler_new, mirostat_v1_mu_follows_the_surprise)
{
    const float probs[4] = {1.0f / 1.4236111f, 0.25f / 1.4236111f, (1.0f / 9.0f) / 1.4236111f,
                            0.0625f / 1.4236111f};
    float logits[4];
    logits_of(probs, logits);
    const double want[10] = {2.678072, 3.356144, 3.911359, 4.401804, 4.892249,
                             5.382694, 5.873139, 6.363583, 6.854028, 7.344473};
    SamplerParams p = test_sampler_params_off();
    p.temperature = 0.0f;
    p.mirostat = 1;
    p.mirostat_tau = 1.0f;
    p.mirostat_eta = 1.0f;
    Sampler s;
    init_or_fail(&s, &p, 4);
    expect_mu_steps(&s, logits, want);
    sampler_free(&s);
}
