/* The sampler on distributions small enough to work out by hand. A random choice is
 * checked by drawing many tokens with a fixed seed and comparing each token's frequency
 * with the probability computed by hand: with 20000 draws the standard deviation of a
 * frequency is at most 0.0035, so a tolerance of 0.015 (over 4 sigma) never fails by
 * chance for these seeds, while a filter that keeps a wrong set is off by 0.1 or more. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../generate/sampler.h"

enum { DRAWS = 20000 };

/* Frequencies of each of n tokens over DRAWS samples. */
static void sample_frequencies(const SamplerParams *p, const float *logits, int n, double *freq)
{
    Sampler s;
    Error err;
    cr_assert_eq(sampler_init(&s, p, n, &err), 0, "%s", err.msg);
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

/* top-k 2 of logits (1, 3, 2, 0) keeps tokens 1 and 2, with probabilities e^3 : e^2. */
Test(sampler, top_k_keeps_the_k_largest)
{
    const float logits[4] = {1, 3, 2, 0};
    SamplerParams p = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .seed = 7};
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
    SamplerParams p = {.temperature = 1.0f, .top_k = 0, .top_p = 0.7f, .seed = 11};
    double freq[4], want[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    sample_frequencies(&p, logits, 4, freq);
    expect_frequencies(freq, want, 4);
}

/* Temperature 0.5 doubles the logits: (0, ln 2) -> (0, ln 4), probabilities 1/5 and 4/5. */
Test(sampler, temperature_scales_the_logits)
{
    const float logits[2] = {0.0f, logf(2.0f)};
    SamplerParams p = {.temperature = 0.5f, .top_k = 0, .top_p = 1.0f, .seed = 3};
    double freq[2], want[2] = {0.2, 0.8};
    sample_frequencies(&p, logits, 2, freq);
    expect_frequencies(freq, want, 2);
}

/* Temperature 0 is the argmax, with ties going to the lowest id: never a division by 0. */
Test(sampler, temperature_zero_is_argmax_with_ties_to_the_lowest_id)
{
    const float logits[5] = {1, 4, 2, 4, -1};
    SamplerParams p = {.temperature = 0.0f, .top_k = 40, .top_p = 0.9f, .seed = 1};
    double freq[5], want[5] = {0, 1, 0, 0, 0};
    sample_frequencies(&p, logits, 5, freq);
    expect_frequencies(freq, want, 5);
}
