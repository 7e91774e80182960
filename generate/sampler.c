#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sampler_init(Sampler *s, const SamplerParams *params, int n_vocab, Error *err)
{
    memset(s, 0, sizeof *s);
    s->params = *params;
    s->n_vocab = n_vocab;
    rng_seed(&s->rng, params->seed);
    s->candidates = malloc((size_t)n_vocab * sizeof *s->candidates);
    if (!s->candidates)
        return error_set(err, "out of memory for %d sampling candidates", n_vocab);
    return 0;
}

void sampler_free(Sampler *s)
{
    if (!s)
        return;
    free(s->candidates);
    memset(s, 0, sizeof *s);
}

static int candidate_by_logit_desc(const void *a, const void *b)
{
    float la = ((const Candidate *)a)->logit, lb = ((const Candidate *)b)->logit;
    if (la != lb)
        return la > lb ? -1 : 1;
    return ((const Candidate *)a)->id - ((const Candidate *)b)->id; /* stable: lower id first */
}

/* Probabilities of the candidates at a temperature (subtracting the max keeps exp <= 1). */
static void candidates_softmax(Candidate *c, int n, float temperature)
{
    float max = c[0].logit;
    for (int i = 1; i < n; i++)
        max = fmaxf(max, c[i].logit);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temperature);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
}

/* Keeps the k highest logits (candidates end up sorted, highest first). */
static int filter_top_k(Candidate *c, int n, int k)
{
    qsort(c, (size_t)n, sizeof *c, candidate_by_logit_desc);
    return k > 0 && k < n ? k : n;
}

/* Keeps the most likely candidates until their probability reaches p (at least one).
 * Expects candidates sorted, highest first. */
static int filter_top_p(Candidate *c, int n, float p)
{
    if (p >= 1.0f)
        return n;
    candidates_softmax(c, n, 1.0f);
    double cumulative = 0.0;
    for (int i = 0; i < n; i++) {
        cumulative += c[i].p;
        if (cumulative >= p)
            return i + 1;
    }
    return n;
}

static int choose_random(Candidate *c, int n, float temperature, Rng *rng)
{
    candidates_softmax(c, n, temperature);
    float r = rng_uniform(rng), cumulative = 0.0f;
    for (int i = 0; i < n; i++) {
        cumulative += c[i].p;
        if (r < cumulative)
            return c[i].id;
    }
    return c[n - 1].id; /* r fell in the rounding gap at the top */
}

int sampler_sample(Sampler *s, const float *logits)
{
    if (s->params.temperature <= 0.0f) { /* greedy: the first of the highest logits */
        int best = 0;
        for (int i = 1; i < s->n_vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    Candidate *c = s->candidates;
    for (int i = 0; i < s->n_vocab; i++)
        c[i] = (Candidate){.id = i, .logit = logits[i]};
    int n = filter_top_k(c, s->n_vocab, s->params.top_k);
    n = filter_top_p(c, n, s->params.top_p);
    return choose_random(c, n, s->params.temperature, &s->rng);
}
