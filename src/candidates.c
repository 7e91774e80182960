#include "candidates.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

/* Sums of rounded probabilities are off by a few units in the last place: a set whose
 * exact probability equals the target (0.4 + 0.3 for top-p 0.7) must still reach it. */
#define MASS_SLACK 1e-6

/* Up to this many candidates, the mass search simply sorts them and walks. */
#define SMALL_RANGE 64

int candidates_init(CandidateList *c, int cap, Error *err)
{
    memset(c, 0, sizeof *c);
    if (cap <= 0)
        return error_set(err, "a candidate list needs room for at least 1 token, not %d", cap);
    c->data = malloc((size_t)cap * sizeof *c->data);
    if (!c->data)
        return error_set(err, "out of memory for %d sampling candidates", cap);
    c->cap = cap;
    return 0;
}

void candidates_free(CandidateList *c)
{
    if (!c)
        return;
    free(c->data);
    memset(c, 0, sizeof *c);
}

void candidates_fill(CandidateList *c, const float *logits, int n_vocab)
{
    for (int i = 0; i < n_vocab; i++) {
        float l = logits[i];
        l = isnan(l) ? -INFINITY : l > FLT_MAX ? FLT_MAX : l;
        c->data[i] = (Candidate){.id = i, .logit = l, .p = 0.0f};
    }
    c->n = n_vocab;
    c->sorted = false;
    c->indexed = true;
    candidates_lift_total_ban(c);
}

void candidates_lift_total_ban(CandidateList *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY)
            return;
    for (int i = 0; i < c->n; i++)
        c->data[i].logit = 0.0f;
}

void candidates_drop_banned(CandidateList *c)
{
    int kept = 0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY)
            c->data[kept++] = c->data[i];
    if (kept == 0) /* every one banned: keep them all (lift_total_ban makes them equal) */
        return;
    if (kept < c->n)
        c->indexed = false;
    c->n = kept;
}

static float candidates_max_logit(const CandidateList *c)
{
    if (c->sorted)
        return c->data[0].logit;
    float max = c->data[0].logit;
    for (int i = 1; i < c->n; i++)
        max = c->data[i].logit > max ? c->data[i].logit : max;
    return max;
}

double candidates_softmax(CandidateList *c)
{
    float max = candidates_max_logit(c);
    if (max == -INFINITY) { /* every one banned: equally likely */
        for (int i = 0; i < c->n; i++)
            c->data[i].p = 1.0f / (float)c->n;
        return -INFINITY;
    }
    double sum = 0.0;
    for (int i = 0; i < c->n; i++) {
        c->data[i].p = expf(c->data[i].logit - max); /* exp(-inf) = 0: banned tokens get 0 */
        sum += c->data[i].p;
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < c->n; i++)
        c->data[i].p *= inv;
    return (double)max + log(sum);
}

/* ---- orders and partial sorting ----
 * The filters need the candidates in order only as far as they look: top-k the first k,
 * top-p, typical-p and the random draw up to the point where a running probability
 * reaches a target. Sorting the whole vocabulary (32,000 or more) for that would cost
 * more than everything else the sampler does, so nothing here sorts more than it must. */

/* An order: by logit, highest first (the "sorted" order), or by the distance of the logit
 * from a target logit, closest first (typical sampling). Ties go to the lower id, so the
 * order is total. */
typedef struct {
    bool by_distance;
    float target;
} CandidateOrder;

static const CandidateOrder ORDER_BY_LOGIT = {false, 0.0f};

/* The sort key, larger first. A banned logit is -INFINITY away from any finite target:
 * its key is -INFINITY either way, never NaN. */
static inline float order_key(const Candidate *c, CandidateOrder o)
{
    return o.by_distance ? -fabsf(c->logit - o.target) : c->logit;
}

static inline bool order_before(const Candidate *a, const Candidate *b, CandidateOrder o)
{
    float ka = order_key(a, o), kb = order_key(b, o);
    return ka > kb || (ka == kb && a->id < b->id);
}

static inline void candidate_swap(Candidate *a, Candidate *b)
{
    Candidate t = *a;
    *a = *b;
    *b = t;
}

/* The heap's order for top-k's selection: its root is the candidate that comes LAST in
 * the order, the one to evict when a better one turns up. */
static bool comes_after(const void *a, const void *b, const void *order)
{
    return order_before(b, a, *(const CandidateOrder *)order);
}

/* Moves the first m candidates of c[0..n) in order o to c[0..m), sorted; the others stay
 * in c[m..n) in some order (swapped, never overwritten: the list keeps every candidate).
 * A heap of m holds the best so far with the worst at its root, so each of the other
 * n - m candidates costs one comparison with the root, and only a better one costs a
 * sift: O(n log m) at worst, close to n comparisons for small m. Popping the heap's root
 * to the back, m times, then sorts the head (with m = n, this is heapsort). Inlined into
 * each caller, so that an order known there (by logit: top-k, the sort) is compiled into
 * the comparison: quill bench's sampling step (top-k 40 over 32,000 candidates first) took
 * 62 us instead of 52 when the order was a run-time value tested at every comparison. */
static inline __attribute__((always_inline)) void
candidates_select_head(Candidate *c, int n, int m, CandidateOrder o)
{
    if (m > n)
        m = n;
    heap_make(c, (size_t)m, sizeof *c, comes_after, &o);
    for (int i = m; i < n; i++) {
        if (order_before(&c[i], &c[0], o)) {
            candidate_swap(&c[i], &c[0]);
            heap_sift_down(c, (size_t)m, sizeof *c, 0, comes_after, &o);
        }
    }
    for (int end = m - 1; end > 0; end--) {
        candidate_swap(&c[0], &c[end]);
        heap_sift_down(c, (size_t)end, sizeof *c, 0, comes_after, &o);
    }
}

/* A probability as a whole number of 2^-40 units (truncated). Sums of these are exact,
 * so the mass of a set of candidates does not depend on the order it is added up in:
 * a search that visits candidates in any order finds exactly the token that a walk over
 * the sorted list finds. (Floats would differ in the last bits from one order to
 * another, and at a boundary that picks a different token.) The sum of 2^31 such numbers
 * stays below 2^64. */
static inline uint64_t prob_units(float p)
{
    return (uint64_t)((double)p * 0x1p40);
}

/* The slices of a key range that the mass search adds probability up in. */
#define MASS_BUCKETS 1024

/* Which slice of [top - span, top] a key falls in, 0 for the top slice: the same
 * arithmetic for every candidate, so a larger key never lands in a later slice. */
static inline int mass_bucket(float key, float top, double scale)
{
    if (key == -INFINITY)
        return MASS_BUCKETS - 1;
    double b = ((double)top - key) * scale;
    return b < MASS_BUCKETS - 1 ? (int)b : MASS_BUCKETS - 1;
}

/* Moves the candidates of d[0..n) whose slice is at most `last` to the front, keeping
 * every candidate (swaps), and returns how many there are. */
static int move_buckets_forward(Candidate *d, int n, CandidateOrder o, float top, double scale,
                                int last)
{
    int end = 0;
    for (int i = 0; i < n; i++)
        if (mass_bucket(order_key(&d[i], o), top, scale) <= last)
            candidate_swap(&d[i], &d[end++]);
    return end;
}

/* Finds the first candidate, in order o, at which the running probability (in units)
 * reaches `need`, and returns its position after rearranging c so that every candidate
 * before it in the order sits before it in the list. A list already in order o is just
 * walked. Otherwise, rather than sorting, a histogram: the range of keys is cut into
 * MASS_BUCKETS equal slices and the probability of each slice added up; the slice where
 * the running total reaches `need` holds the answer, every candidate in earlier slices
 * comes before it, and only that one slice (a few dozen candidates, usually) is sorted
 * and walked. Three passes over the list and one over the few candidates kept, none of
 * them a sort. When the whole list does not reach `need`, returns n - 1 (keep all). */
static int candidates_find_mass(CandidateList *c, CandidateOrder o, bool in_order, uint64_t need)
{
    Candidate *d = c->data;
    uint64_t below = 0; /* units of d[0..lo), all before everything in d[lo..hi) */
    int lo = 0, hi = c->n;
    if (!in_order && c->n > SMALL_RANGE) {
        float top = -INFINITY, bottom = INFINITY;
        for (int i = 0; i < c->n; i++) {
            float key = order_key(&d[i], o);
            top = key > top ? key : top;
            bottom = key < bottom && key != -INFINITY ? key : bottom;
        }
        if (top > bottom) { /* otherwise one finite key: a single slice, sorted below */
            double scale = (MASS_BUCKETS - 1) / ((double)top - bottom);
            uint64_t units[MASS_BUCKETS] = {0};
            for (int i = 0; i < c->n; i++)
                units[mass_bucket(order_key(&d[i], o), top, scale)] += prob_units(d[i].p);
            int j = 0;
            while (j < MASS_BUCKETS - 1 && below + units[j] < need)
                below += units[j++];
            /* slices 0..j to the front, then, among those few, slices 0..j-1 first */
            hi = move_buckets_forward(d, c->n, o, top, scale, j);
            lo = move_buckets_forward(d, hi, o, top, scale, j - 1);
        }
    }
    if (!in_order)
        candidates_select_head(d + lo, hi - lo, hi - lo, o);
    for (int i = lo; i < hi; i++) {
        below += prob_units(d[i].p);
        if (below >= need)
            return i;
    }
    return hi - 1;
}

/* The units a running probability must reach for `mass` (with the rounding slack), at
 * least 1 so that at least one candidate is kept. */
static uint64_t units_needed(const CandidateList *c, double mass)
{
    uint64_t total = 0;
    for (int i = 0; i < c->n; i++)
        total += prob_units(c->data[i].p);
    double need = ceil((mass - MASS_SLACK) * (double)total);
    return need < 1.0 ? 1 : (uint64_t)need;
}

void candidates_sort(CandidateList *c)
{
    if (c->sorted)
        return;
    candidates_select_head(c->data, c->n, c->n, ORDER_BY_LOGIT);
    c->sorted = true;
    c->indexed = false;
}

/* ---- the filters ---- */

void candidates_top_k(CandidateList *c, int k)
{
    if (k <= 0 || k >= c->n)
        return;
    if (!c->sorted)
        candidates_select_head(c->data, c->n, k, ORDER_BY_LOGIT);
    c->n = k;
    c->sorted = true;
    c->indexed = false;
}

/* Keeps the first `kept` candidates of the list, which candidates_find_mass put before
 * all others in order o, or, when that is fewer than min_keep, the first min_keep in order
 * o (at most all): the next best of the rest come forward without sorting the rest. */
static void keep_head(CandidateList *c, int kept, int min_keep, CandidateOrder o, bool in_order)
{
    if (kept < min_keep) {
        int want = min_keep < c->n ? min_keep : c->n;
        if (!in_order)
            candidates_select_head(c->data + kept, c->n - kept, want - kept, o);
        kept = want;
    }
    c->n = kept;
    c->indexed = false;
}

void candidates_top_p(CandidateList *c, float top_p, int min_keep)
{
    if (top_p >= 1.0f)
        return;
    candidates_softmax(c);
    /* a sorted list stays sorted (its head is kept); otherwise the kept set is unordered */
    bool in_order = c->sorted;
    int kept = candidates_find_mass(c, ORDER_BY_LOGIT, in_order, units_needed(c, top_p)) + 1;
    keep_head(c, kept, min_keep, ORDER_BY_LOGIT, in_order);
}

/* Keeps the candidates with logit >= threshold, in their order (the largest logit must
 * pass, so that one always stays). */
static void keep_logits_from(CandidateList *c, float threshold)
{
    int kept = 0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit >= threshold)
            c->data[kept++] = c->data[i];
    if (kept < c->n)
        c->indexed = false;
    c->n = kept;
}

void candidates_min_p(CandidateList *c, float min_p, int min_keep)
{
    if (min_p <= 0.0f)
        return;
    min_p = min_p > 1.0f ? 1.0f : min_p; /* above 1 nothing, not even the maximum, would pass */
    /* In float, as the logits are: a token at exactly min_p * p_max has the logit
     * logf(p_max) + logf(min_p) rounded to float, and so has the bar (0.25 against 0.5 *
     * 0.5). Widened to double, the bar would keep ln(min_p)'s digits that the token's
     * logit lost, and could land just above it. min_p = 1 adds logf(1) = 0 exactly. */
    float bar = candidates_max_logit(c) + logf(min_p);
    int passing = 0;
    for (int i = 0; i < c->n && min_keep > 1; i++)
        passing += c->data[i].logit >= bar;
    if (min_keep <= 1 || passing >= min_keep) {
        keep_logits_from(c, bar);
        return;
    }
    /* too few pass: the min_keep most likely, a set that holds every one that passed */
    keep_head(c, 0, min_keep, ORDER_BY_LOGIT, c->sorted);
    c->sorted = true;
}

void candidates_top_n_sigma(CandidateList *c, float n_sigma)
{
    if (n_sigma < 0.0f)
        return;
    /* mean and standard deviation of the finite logits (a banned token's -inf would make
     * both infinite), in double: a sum over the vocabulary */
    double sum = 0.0, sum_sq = 0.0;
    int n_finite = 0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY) {
            sum += c->data[i].logit;
            n_finite++;
        }
    double mean = sum / n_finite;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY)
            sum_sq += (c->data[i].logit - mean) * (c->data[i].logit - mean);
    double sigma = sqrt(sum_sq / n_finite);
    keep_logits_from(c, (float)((double)candidates_max_logit(c) - n_sigma * sigma));
}

/* H = -sum p_i ln p_i = sum p_i (log Z - l_i) of a list after candidates_softmax, which
 * returned log_z: no logarithm per token (banned tokens, p = 0, add nothing). */
static double list_entropy(const CandidateList *c, double log_z)
{
    double entropy = 0.0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].p > 0.0f)
            entropy += c->data[i].p * (log_z - c->data[i].logit);
    return entropy;
}

void candidates_typical(CandidateList *c, float typical_p, int min_keep)
{
    if (typical_p >= 1.0f)
        return;
    double log_z = candidates_softmax(c);
    /* With ln p_i = l_i - log Z, the information content is -ln p_i = log Z - l_i, so
     *   H = sum_i p_i (log Z - l_i)   and   |-ln p_i - H| = |l_i - (log Z - H)|:
     * the order is by distance from one target logit, with no logarithm per token
     * (banned tokens, p = 0, add nothing to H and are infinitely far away). */
    CandidateOrder o = {true, (float)(log_z - list_entropy(c, log_z))};
    int kept = candidates_find_mass(c, o, false, units_needed(c, typical_p)) + 1;
    keep_head(c, kept, min_keep, o, false);
    c->sorted = false;
}

void candidates_xtc(CandidateList *c, float threshold, int min_keep)
{
    if (threshold > 0.5f || c->n < 2)
        return;
    candidates_softmax(c);
    int n_top = 0, last_top = -1; /* the top choices, and the last of them in sorted order */
    for (int i = 0; i < c->n; i++)
        if (c->data[i].p >= threshold) {
            n_top++;
            if (last_top < 0 || order_before(&c->data[last_top], &c->data[i], ORDER_BY_LOGIT))
                last_top = i;
        }
    if (n_top < 2 || c->n - (n_top - 1) < min_keep) /* removing them would leave too few */
        return;
    int kept = 0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].p < threshold || i == last_top)
            c->data[kept++] = c->data[i];
    c->n = kept;
    c->indexed = false;
}

void candidates_temperature(CandidateList *c, float temperature)
{
    if (temperature <= 0.0f || temperature == 1.0f)
        return;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY)
            c->data[i].logit = candidates_clamp_logit(c->data[i].logit / temperature);
}

float candidates_dynamic_temperature(CandidateList *c, float temperature, float range,
                                     float exponent)
{
    int n_open = 0;
    for (int i = 0; i < c->n; i++)
        n_open += c->data[i].logit != -INFINITY;
    if (n_open <= 1) /* one choice: no distribution to measure, nothing to reshape */
        return temperature;
    double entropy = list_entropy(c, candidates_softmax(c));
    double normalized = entropy / log((double)n_open); /* 0 (certain) .. 1 (uniform) */
    float low = temperature - range > 0.0f ? temperature - range : 0.0f;
    float high = temperature + range;
    float t = low + (high - low) * (float)pow(normalized, exponent);
    candidates_temperature(c, t);
    return t;
}

void candidates_mirostat_v2(CandidateList *c, float mu)
{
    candidates_softmax(c);
    int kept = 0;
    for (int i = 0; i < c->n; i++)
        if (-log2f(c->data[i].p) <= mu)
            c->data[kept++] = c->data[i];
    if (kept == 0) { /* even the most likely token is more surprising than mu */
        int best = 0;
        for (int i = 1; i < c->n; i++)
            if (order_before(&c->data[i], &c->data[best], ORDER_BY_LOGIT))
                best = i;
        c->data[kept++] = c->data[best];
    }
    if (kept < c->n)
        c->indexed = false;
    c->n = kept;
}

void candidates_mirostat_v1(CandidateList *c, float mu, int n_vocab, int m)
{
    if (c->n < 2)
        return;
    candidates_softmax(c);
    candidates_sort(c);
    double sum_tb = 0.0, sum_tt = 0.0;
    for (int i = 0; i + 1 < m && i + 1 < c->n; i++) {
        double t = log((double)(i + 2) / (double)(i + 1));
        double b = log((double)c->data[i].p / (double)c->data[i + 1].p);
        sum_tb += t * b;
        sum_tt += t * t;
    }
    double s_hat = sum_tb / sum_tt, eps = s_hat - 1.0;
    double k = pow(eps * pow(2.0, mu) / (1.0 - pow((double)n_vocab, -eps)), 1.0 / s_hat);
    /* s_hat = 1 (0 / 0), a flat or underflowing list: no estimate, nothing to cut */
    if (!(k >= 1.0))
        k = isnan(k) ? (double)c->n : 1.0;
    candidates_top_k(c, k < (double)c->n ? (int)k : c->n);
}

/* ---- the selectors ---- */

int candidates_argmax(const CandidateList *c)
{
    if (c->sorted)
        return c->data[0].id;
    const Candidate *best = &c->data[0];
    for (int i = 1; i < c->n; i++)
        if (order_before(&c->data[i], best, ORDER_BY_LOGIT))
            best = &c->data[i];
    return best->id;
}

/* The units the running sum must reach for a draw of r: the token whose share of
 * [0, total) contains floor(r * total). Scaling r by the actual total (close to 2^40,
 * but not exactly) leaves no gap at the top for rounding to fall into. */
static uint64_t units_for_draw(const CandidateList *c, float r)
{
    uint64_t total = 0;
    for (int i = 0; i < c->n; i++)
        total += prob_units(c->data[i].p);
    if (total == 0) /* not a softmax's output: nothing to aim at, take the last */
        return UINT64_MAX;
    uint64_t target = (uint64_t)((double)r * (double)total);
    return (target < total ? target : total - 1) + 1;
}

int candidates_draw(const CandidateList *c, float r)
{
    uint64_t need = units_for_draw(c, r), running = 0;
    for (int i = 0; i < c->n; i++) {
        running += prob_units(c->data[i].p);
        if (running >= need)
            return c->data[i].id;
    }
    return c->data[c->n - 1].id; /* only for a list whose p are all 0 */
}

int candidates_draw_sorted(CandidateList *c, float r)
{
    int i = candidates_find_mass(c, ORDER_BY_LOGIT, c->sorted, units_for_draw(c, r));
    if (!c->sorted)
        c->indexed = false;
    return c->data[i].id;
}
