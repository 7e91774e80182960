/* The candidate list: the tokens still in the running for the next position, each with
 * its logit and, after a softmax, its probability (llama.cpp's llama_token_data_array).
 * The sampler (sampler.h) fills it with the whole vocabulary and lets each processor of
 * its chain rewrite it; this file holds the processors that need nothing but the list and
 * one number (top-k, top-p, min-p, typical-p, temperature), the softmax and the two ways
 * of picking a token (argmax, random draw).
 *
 * Invariants every function here keeps, so that no later step divides by zero or meets
 * a NaN:
 *   - a logit is finite or -INFINITY (a banned token); never NaN, never +INFINITY;
 *   - at least one candidate has a finite logit (when every one is banned, the bans are
 *     lifted: see candidates_lift_total_ban), so a softmax never sums to 0;
 *   - every filter keeps at least one candidate.
 *
 * Order: "sorted" means by logit, highest first, ties to the lower id. With the id as the
 * tie-break the order is total, so every partial or full sort of the same list gives the
 * same result; probabilities never increase along a sorted list. */
#ifndef QUILL_CANDIDATES_H
#define QUILL_CANDIDATES_H

#include <float.h>
#include <stdbool.h>

#include "error.h"

typedef struct {
    int id;      /* token id */
    float logit; /* finite, or -INFINITY when banned */
    float p;     /* probability; set by candidates_softmax, stale after a later change */
} Candidate;

typedef struct {
    Candidate *data; /* cap entries; the candidates are data[0..n) */
    int n;
    int cap;
    bool sorted;  /* data[0..n) is sorted (see above) */
    bool indexed; /* data[i].id == i for every i < n, as candidates_fill leaves it: token t
                     is at data[t], so processors that touch a few known tokens (bias,
                     penalties, bad words) find them without a search */
} CandidateList;

/* A list with room for cap candidates (the vocabulary size). */
int candidates_init(CandidateList *c, int cap, Error *err);
void candidates_free(CandidateList *c); /* NULL-safe */

/* Every token 0..n_vocab-1 with its logit (n_vocab <= c->cap), unsorted and indexed.
 * Logits from a damaged model are made safe: NaN becomes -INFINITY, +INFINITY becomes
 * FLT_MAX. */
void candidates_fill(CandidateList *c, const float *logits, int n_vocab);

/* Clamps the result of arithmetic on a finite logit back into the finite range, so that
 * an overflow (a large bias, a small temperature) neither becomes +INFINITY nor turns into
 * a ban (-INFINITY). */
static inline float candidates_clamp_logit(float x)
{
    return x > FLT_MAX ? FLT_MAX : x < -FLT_MAX ? -FLT_MAX : x;
}

/* When every candidate is banned (-INFINITY), no ban can be honoured above another: every
 * logit becomes 0, so each candidate is equally likely. Called by whatever bans tokens. */
void candidates_lift_total_ban(CandidateList *c);

/* Removes the banned candidates (-INFINITY) unless every one is banned. */
void candidates_drop_banned(CandidateList *c);

/* p_i = exp(l_i - m) / sum_j exp(l_j - m) with m the largest logit (subtracting it keeps
 * every exp <= 1, so nothing overflows, and the largest term is exactly 1, so the sum is
 * never 0). Returns log Z = m + ln(sum_j exp(l_j - m)), the log of the normaliser:
 * ln p_i = l_i - log Z. */
double candidates_softmax(CandidateList *c);

/* Sorts the list (a no-op when it is sorted already). */
void candidates_sort(CandidateList *c);

/* top-k (Fan et al. 2018, "Hierarchical Neural Story Generation"): keeps the k highest
 * logits, ties to the lower ids, sorted. k <= 0 or k >= n: unchanged. Selection with a
 * k-entry heap, O(n log k), never a sort of the whole vocabulary. */
void candidates_top_k(CandidateList *c, int k);

/* min_keep, the last argument of top-p, min-p, typical-p and XTC (llama.cpp's): the
 * filter keeps at least that many candidates (or all when there are fewer); 0 and 1 both
 * mean one, the least any filter keeps.
 *
 * top-p, nucleus sampling (Holtzman et al. 2019, "The Curious Case of Neural Text
 * Degeneration"): keeps the smallest set of most likely candidates whose probability
 * reaches top_p, at least min_keep. top_p >= 1: unchanged. A sorted list (after top-k) is
 * walked and stays sorted; otherwise a quickselect on probability mass finds the set in
 * expected O(n) without sorting, and leaves it unordered. */
void candidates_top_p(CandidateList *c, float top_p, int min_keep);

/* min-p (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling for Creative and
 * Coherent LLM Outputs"): keeps the candidates with p_i >= min_p * p_max, which is
 * l_i >= l_max + ln(min_p) in logits, so it needs only the largest logit: no exp, no
 * sort. The most likely candidate always passes. min_p <= 0: unchanged. Keeps the order,
 * unless fewer than min_keep pass: then the min_keep most likely stay, sorted. */
void candidates_min_p(CandidateList *c, float min_p, int min_keep);

/* top-n-sigma (Tang, Liu, Xu & Huang 2024, "Top-n sigma: Not All Logits Are You Need"): keeps
 * the candidates with l_i >= l_max - n_sigma * sigma, sigma the standard deviation of the
 * (finite) logits of the list: the informative tokens stand out of a roughly normal mass of
 * noise logits by a few sigma. Scaling every logit by 1/T scales l_max and sigma alike, so
 * the kept set does not depend on the temperature. n_sigma 0 keeps the tokens tied with
 * the best; n_sigma < 0: unchanged. Keeps the order. */
void candidates_top_n_sigma(CandidateList *c, float n_sigma);

/* Locally typical sampling (Meister et al. 2022, "Locally Typical Sampling", TACL): with
 * the entropy H = -sum p_i ln p_i, orders the candidates by |-ln p_i - H| (how far each
 * token's information content is from the expected one), smallest first, and keeps the
 * smallest such prefix whose probability reaches typical_p (at least min_keep candidates
 * long). The most likely token can be dropped when it is much more predictable than the
 * distribution as a whole. The set is found by the same quickselect on mass as top-p's and
 * left unordered. typical_p >= 1: unchanged. */
void candidates_typical(CandidateList *c, float typical_p, int min_keep);

/* XTC, "exclude top choices" (Weidmann 2024, text-generation-webui PR #6335): when two or
 * more candidates have p >= threshold, removes all of them but the least likely one, so
 * the text leaves its most predictable path while staying among tokens the model finds
 * plausible. With one such candidate or none, threshold > 0.5 (at most one token can
 * reach it), or when fewer than min_keep candidates would be left, unchanged. Whether it
 * runs at all is a coin the sampler throws (XTC's probability). The candidates at or
 * above the threshold are a prefix of the sorted list, so the one kept is the last of that
 * prefix: the lowest logit, ties to the higher id. One pass, no sort; keeps the order. */
void candidates_xtc(CandidateList *c, float threshold, int min_keep);

/* l_i / temperature (Ackley et al. 1985; the softmax temperature): < 1 sharpens, > 1
 * flattens. temperature <= 0 or == 1: unchanged (temperature <= 0 is greedy decoding,
 * which the selector does: dividing by 0 would give infinities and NaN). */
void candidates_temperature(CandidateList *c, float temperature);

/* Dynamic temperature (kalomaze 2023, "DynaTemp"; llama.cpp's temp-ext): the temperature
 * follows the list's entropy H, normalized by the largest possible one, ln n (n the
 * candidates not banned): T = T_low + (T_high - T_low) * (H / ln n)^exponent with
 * T_low = max(0, temperature - range), T_high = temperature + range. A sure model (H near
 * 0) gets a low temperature and stays sure; an unsure one a high one. Divides the logits by
 * T (candidates_temperature: T = 0 leaves them) and returns T. One candidate: unchanged. */
float candidates_dynamic_temperature(CandidateList *c, float temperature, float range,
                                     float exponent);

/* Mirostat 2.0's cut (Basu, Ramachandran, Keskar & Varshney 2021, "Mirostat: A Neural Text
 * Decoding Algorithm that Directly Controls Perplexity", algorithm 2): keeps the candidates
 * whose surprise -log2 p_i is at most mu, at least the most likely one. Keeps the order. */
void candidates_mirostat_v2(CandidateList *c, float mu);

/* Mirostat's cut (the paper's algorithm 1): assumes the sorted probabilities follow Zipf's
 * law p_i ~ 1/i^s, estimates s from the top m of them by least squares on
 * ln(p_i / p_i+1) = s ln((i+1) / i), and keeps the top k with
 * k = (eps 2^mu / (1 - n_vocab^-eps))^(1/s), eps = s - 1: the k at which a Zipf
 * distribution over n_vocab tokens has an expected surprise of mu. At least one is kept.
 * Sorts the list. The list must hold no banned candidate. */
void candidates_mirostat_v1(CandidateList *c, float mu, int n_vocab, int m);

/* The id of the highest logit, ties to the lowest id (greedy decoding). */
int candidates_argmax(const CandidateList *c);

/* Inverse-CDF draw with r uniform in [0, 1): walks the candidates in the list's order,
 * adding up their probabilities (set by candidates_softmax), and returns the first at
 * which the running sum passes r * total. The sums are exact (whole units of 2^-40), so
 * rounding can neither leave r above the total nor depend on the order of addition. Any
 * order draws from the same distribution; a sorted list makes the token a function of
 * (distribution, r) alone. */
int candidates_draw(const CandidateList *c, float r);

/* The token candidates_draw returns for the same r on the sorted list, found without
 * sorting: a quickselect on probability mass, expected O(n). Rearranges the list. */
int candidates_draw_sorted(CandidateList *c, float r);

#endif
