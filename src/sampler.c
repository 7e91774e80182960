/* The sampler: parameters and presets; the stateful processors (logit bias, bad words,
 * penalties, DRY), which need the sampler's history or copied lists; the table of stages (each
 * one's name, processor, description and check), which chain strings, --verbose's
 * description and the parameter check read; the chain that runs the stages in order, with
 * its trace; and the selector. The stateless filters are in candidates.c. */
#include "sampler.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

/* llama.cpp's default order (see sampler.h for why): what the user changes first (bias,
 * bans, penalties), then the truncating filters on the untempered distribution, then the
 * temperature on what survived. */
static const SamplerStage DEFAULT_CHAIN[] = {
    SAMPLER_STAGE_LOGIT_BIAS, SAMPLER_STAGE_BAD_WORDS,   SAMPLER_STAGE_PENALTIES,
    SAMPLER_STAGE_DRY,        SAMPLER_STAGE_TOP_N_SIGMA, SAMPLER_STAGE_TOP_K,
    SAMPLER_STAGE_TYPICAL_P,  SAMPLER_STAGE_TOP_P,       SAMPLER_STAGE_MIN_P,
    SAMPLER_STAGE_XTC,        SAMPLER_STAGE_TEMPERATURE,
};

const char *const SAMPLER_DRY_BREAKERS[SAMPLER_DRY_N_BREAKERS] = {"\n", ":", "\"", "*"};

/* ---- parameters ---- */

void sampler_params_default(SamplerParams *p)
{
    *p = (SamplerParams){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .typical_p = 1.0f,
        .min_keep = 0,
        .xtc_probability = 0.0f,
        .xtc_threshold = 0.1f,
        .top_n_sigma = -1.0f,
        .dynatemp_range = 0.0f,
        .dynatemp_exponent = 1.0f,
        .mirostat = 0,
        .mirostat_tau = 5.0f,
        .mirostat_eta = 0.1f,
        .repeat_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .repeat_last_n = 64,
        .penalize_prompt = true,
        .dry_multiplier = 0.0f,
        .dry_base = 1.75f,
        .dry_allowed_length = 2,
        .dry_penalty_last_n = -1,
        .n_chain = (int)(sizeof DEFAULT_CHAIN / sizeof *DEFAULT_CHAIN),
        .seed = 0,
    };
    memcpy(p->chain, DEFAULT_CHAIN, sizeof DEFAULT_CHAIN);
}

/* The numbers a preset sets (see sampler_preset in sampler.h for why these values). */
typedef struct {
    const char *name;
    float temperature;
    int top_k;
    float top_p, min_p, typical_p, repeat_penalty;
    int repeat_last_n;
    float frequency_penalty, presence_penalty;
} SamplerPreset;

static const SamplerPreset PRESETS[] = {
    /* name            temp  top-k top-p min-p typ  repeat last freq pres */
    {"deterministic", 0.0f, 0, 1.0f, 0.0f, 1.0f, 1.0f, 64, 0.0f, 0.0f},
    {"balanced", 0.8f, 40, 0.95f, 0.05f, 1.0f, 1.1f, 64, 0.0f, 0.0f},
    {"creative", 1.2f, 0, 1.0f, 0.1f, 1.0f, 1.0f, 64, 0.0f, 0.0f},
};

int sampler_preset(const char *name, SamplerParams *p, Error *err)
{
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++) {
        const SamplerPreset *s = &PRESETS[i];
        if (strcmp(name, s->name) != 0)
            continue;
        p->temperature = s->temperature;
        p->top_k = s->top_k;
        p->top_p = s->top_p;
        p->min_p = s->min_p;
        p->typical_p = s->typical_p;
        p->repeat_penalty = s->repeat_penalty;
        p->repeat_last_n = s->repeat_last_n;
        p->frequency_penalty = s->frequency_penalty;
        p->presence_penalty = s->presence_penalty;
        return 0;
    }
    char quoted[64];
    return error_set(err, "unknown sampler preset \"%s\" (known: deterministic, balanced, creative)",
                     error_quote(quoted, sizeof quoted, name, strlen(name)));
}

int sampler_logit_bias_parse(const char *text, LogitBias *out, Error *err)
{
    char quoted[64];
    error_quote(quoted, sizeof quoted, text, strlen(text));
    char *end;
    long id = strtol(text, &end, 10);
    if (end == text || *end != ':' || id < 0 || id > 0x7fffffff)
        return error_set(err, "logit bias \"%s\": expected TOKEN_ID:VALUE, e.g. 13:-inf", quoted);
    const char *value = end + 1;
    float bias = strtof(value, &end);
    if (end == value || *end != '\0')
        return error_set(err, "logit bias \"%s\": \"%s\" is not a number", quoted, value);
    if (isnan(bias) || bias == INFINITY)
        return error_set(err, "logit bias \"%s\": the value must be finite or -inf", quoted);
    *out = (LogitBias){.token = (int)id, .bias = bias};
    return 0;
}

/* Appends ids[0..n_ids) (malloc'd; the list takes it, or frees it) as one more sequence,
 * unless it is empty or an equal one is there. */
static int sequence_add(TokenSequence **list, int *n, int *ids, size_t n_ids, Error *err)
{
    bool known = n_ids == 0;
    for (int i = 0; i < *n && !known; i++)
        known = (size_t)(*list)[i].n_tokens == n_ids &&
                memcmp((*list)[i].tokens, ids, n_ids * sizeof *ids) == 0;
    TokenSequence *grown = known ? NULL : realloc(*list, (size_t)(*n + 1) * sizeof *grown);
    if (known || !grown) {
        free(ids);
        return known ? 0 : error_set(err, "out of memory");
    }
    grown[(*n)++] = (TokenSequence){.tokens = ids, .n_tokens = (int)n_ids};
    *list = grown;
    return 0;
}

/* Appends text[0..len)'s tokens (encoded as inside a text: no space prefix) as one more
 * sequence, unless it is empty or an equal one is there. */
static int bad_spelling_add(TokenSequence **words, int *n, const Tokenizer *tok,
                            const char *text, size_t len, Error *err)
{
    int *ids;
    size_t n_ids;
    if (tokenizer_encode_with(tok, text, len, (EncodeOptions){.mid_text = true}, &ids, &n_ids,
                              err) != 0)
        return -1;
    return sequence_add(words, n, ids, n_ids, err);
}

int sampler_bad_word_add(TokenSequence **words, int *n, const Tokenizer *tok, const char *word,
                         size_t len, Error *err)
{
    char *spaced = malloc(len + 1);
    if (!spaced)
        return error_set(err, "out of memory");
    spaced[0] = ' ';
    memcpy(spaced + 1, word, len);
    int status = bad_spelling_add(words, n, tok, word, len, err);
    if (status == 0)
        status = bad_spelling_add(words, n, tok, spaced, len + 1, err);
    free(spaced);
    return status;
}

void sampler_bad_words_free(TokenSequence *words, int n)
{
    for (int i = 0; words && i < n; i++)
        free((int *)words[i].tokens);
    free(words);
}

/* The longest tail of a breaker llama.cpp keeps (its MAX_SEQ_LEN): the scan for breakers
 * in the history then costs O(window), not O(window * breaker length). */
enum { DRY_MAX_TAIL = 20 };

/* Whether word[0..n) holds text[0..len) somewhere (len >= 1). */
static bool bytes_contain(const char *word, size_t n, const char *text, size_t len)
{
    for (size_t at = 0; at + len <= n; at++)
        if (memcmp(word + at, text, len) == 0)
            return true;
    return false;
}

/* Where word[0..n) ends with a proper start of text[0..len) beginning at word[at]: the
 * length of that start, or 0. */
static size_t overlap_at(const char *word, size_t n, size_t at, const char *text, size_t len)
{
    size_t overlap = n - at;
    return overlap < len && memcmp(word + at, text, overlap) == 0 ? overlap : 0;
}

/* Token `head` followed by the rest of the breaker, text[0..len), tokenized. */
static int breaker_tail_add(TokenSequence **breakers, int *n, const Tokenizer *tok, int head,
                            const char *text, size_t len, Error *err)
{
    int *tail;
    size_t n_tail;
    if (tokenizer_encode_with(tok, text, len, (EncodeOptions){.mid_text = true}, &tail,
                              &n_tail, err) != 0)
        return -1;
    n_tail = n_tail > DRY_MAX_TAIL ? DRY_MAX_TAIL : n_tail;
    int *ids = malloc((n_tail + 1) * sizeof *ids);
    if (!ids) {
        free(tail);
        return error_set(err, "out of memory");
    }
    ids[0] = head;
    if (n_tail > 0)
        memcpy(ids + 1, tail, n_tail * sizeof *ids);
    free(tail);
    return sequence_add(breakers, n, ids, n_tail + 1, err);
}

int sampler_dry_breaker_add(TokenSequence **breakers, int *n, const Tokenizer *tok,
                            const char *text, size_t len, Error *err)
{
    if (len == 0 || len > SAMPLER_DRY_BREAKER_MAX_BYTES)
        return error_set(err, "a DRY sequence breaker has 1 to %d bytes, not %zu",
                         SAMPLER_DRY_BREAKER_MAX_BYTES, len);
    char *word = NULL;
    size_t cap = 0;
    int status = 0;
    for (int t = 0; t < tok->n_vocab && status == 0; t++) {
        size_t n_word = tokenizer_token_bytes(tok, t, NULL, 0);
        if (buffer_reserve(&word, &cap, n_word + 1, 64, "a token's bytes", err) != 0) {
            status = -1;
            break;
        }
        tokenizer_token_bytes(tok, t, word, cap);
        if (bytes_contain(word, n_word, text, len)) { /* the whole breaker: a breaker alone */
            int *ids = malloc(sizeof *ids);
            status = !ids ? error_set(err, "out of memory") : (ids[0] = t, 0);
            if (status == 0)
                status = sequence_add(breakers, n, ids, 1, err);
            continue;
        }
        /* the breaker starts inside this token and goes on in the next ones */
        for (size_t at = 0; at < n_word && status == 0; at++) {
            size_t overlap = overlap_at(word, n_word, at, text, len);
            if (overlap > 0)
                status = breaker_tail_add(breakers, n, tok, t, text + overlap, len - overlap,
                                          err);
        }
    }
    free(word);
    return status;
}

/* ---- the processors that need the sampler ---- */

static bool penalties_on(const SamplerParams *p)
{
    return p->repeat_last_n != 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                                     p->presence_penalty != 0.0f);
}

/* Prepares sampler_find for the list: a list still in id order needs nothing; any other
 * gets a map from id to position, O(n) once per processor instead of a search per token. */
static void sampler_index(Sampler *s, const CandidateList *c)
{
    if (c->indexed)
        return;
    for (int i = 0; i < c->n; i++)
        s->slot[c->data[i].id] = i;
}

/* Token id's candidate, or NULL when a filter removed it. Slots left from earlier lists
 * are caught by checking the id found there. */
static Candidate *sampler_find(Sampler *s, CandidateList *c, int id)
{
    if (c->indexed)
        return id < c->n ? &c->data[id] : NULL;
    int i = s->slot[id];
    return i < c->n && c->data[i].id == id ? &c->data[i] : NULL;
}

static void sampler_apply_logit_bias(Sampler *s, CandidateList *c)
{
    if (s->params.n_logit_bias == 0)
        return;
    sampler_index(s, c);
    for (int i = 0; i < s->params.n_logit_bias; i++) {
        const LogitBias *b = &s->logit_bias[i];
        Candidate *x = sampler_find(s, c, b->token);
        if (!x || x->logit == -INFINITY)
            continue;
        x->logit = b->bias == -INFINITY ? -INFINITY : candidates_clamp_logit(x->logit + b->bias);
    }
    candidates_lift_total_ban(c);
}

/* Whether the history ends with tokens[0..n). */
static bool history_ends_with(const Sampler *s, const int *tokens, int n)
{
    if (n > s->n_history)
        return false;
    const SamplerToken *tail = s->history + s->n_history - n;
    for (int i = 0; i < n; i++)
        if (tail[i].token != tokens[i])
            return false;
    return true;
}

/* A bad word is banned one token before it would be complete: its last token cannot
 * follow its other tokens. Banning only a phrase's first token would forbid every word
 * that starts with it; banning each of its tokens would forbid common pieces ("the"). */
static void sampler_apply_bad_words(Sampler *s, CandidateList *c)
{
    if (s->params.n_bad_words == 0)
        return;
    sampler_index(s, c);
    for (int i = 0; i < s->params.n_bad_words; i++) {
        const TokenSequence *w = &s->bad_words[i];
        if (!history_ends_with(s, w->tokens, w->n_tokens - 1))
            continue;
        Candidate *x = sampler_find(s, c, w->tokens[w->n_tokens - 1]);
        if (x)
            x->logit = -INFINITY;
    }
    candidates_lift_total_ban(c);
}

/* One token's penalties: CTRL's repetition penalty, then OpenAI's frequency and presence
 * penalties (the order llama.cpp uses). */
static float penalize_logit(float logit, int count, const SamplerParams *p)
{
    if (logit == -INFINITY) /* banned stays banned */
        return logit;
    /* Dividing a negative logit by a penalty > 1 would raise it (-2 / 1.5 = -1.33) and make
     * the repeated token MORE likely: negative logits are multiplied instead. */
    float l = logit > 0.0f ? logit / p->repeat_penalty : logit * p->repeat_penalty;
    l -= (float)count * p->frequency_penalty + (count > 0 ? p->presence_penalty : 0.0f);
    return candidates_clamp_logit(l);
}

/* Where a window of the last `last_n` tokens of the history starts (-1: the whole history). */
static int window_start(const Sampler *s, int last_n)
{
    return last_n < 0 || last_n > s->n_history ? 0 : s->n_history - last_n;
}

/* Counts each token of the window (the last repeat_last_n tokens of the history; prompt
 * tokens only when penalize_prompt) and penalizes each distinct one once. counts[] is 0
 * again on return, so the cost is the window's length, not the vocabulary's. */
static void sampler_apply_penalties(Sampler *s, CandidateList *c)
{
    const SamplerParams *p = &s->params;
    if (!penalties_on(p))
        return;
    int first = window_start(s, p->repeat_last_n);
    int n_seen = 0;
    for (int i = first; i < s->n_history; i++) {
        const SamplerToken *t = &s->history[i];
        if (t->is_prompt && !p->penalize_prompt)
            continue;
        if (s->counts[t->token]++ == 0)
            s->seen[n_seen++] = t->token;
    }
    sampler_index(s, c);
    for (int i = 0; i < n_seen; i++) {
        int token = s->seen[i];
        Candidate *x = sampler_find(s, c, token);
        if (x)
            x->logit = penalize_logit(x->logit, s->counts[token], p);
        s->counts[token] = 0;
    }
}

/* ---- DRY ---- */

/* What a token is to DRY's sequence breakers (Sampler.dry_breaker_kind): the first token of
 * one or more breakers, and/or a whole breaker on its own. */
enum { DRY_HEAD = 1, DRY_WHOLE = 2 };

static bool dry_on(const SamplerParams *p)
{
    return p->dry_multiplier != 0.0f && p->dry_penalty_last_n != 0;
}

/* Room for DRY's matches over a window of n tokens. */
static int dry_reserve(Sampler *s, int n, Error *err)
{
    return buffer_reserve_items(&s->dry_match, &s->cap_dry, (size_t)n, sizeof *s->dry_match, 64,
                                "DRY's window", err);
}

/* How many of the window's last tokens w[0..n) come after the latest sequence breaker in
 * it (n when there is none): a repeat never reaches back past a breaker. A breaker is its
 * head token followed by its tail, all inside the window; of several breakers at one head
 * the longest counts (llama.cpp's rule). O(n) for the head flags, then the few heads. */
static int dry_tokens_since_breaker(const Sampler *s, const SamplerToken *w, int n)
{
    for (int at = n - 1; at >= 0; at--) {
        if (!(s->dry_breaker_kind[w[at].token] & DRY_HEAD))
            continue;
        int longest = -1;
        for (int b = 0; b < s->params.n_dry_breakers; b++) {
            const TokenSequence *br = &s->dry_breakers[b];
            int tail = br->n_tokens - 1;
            if (br->tokens[0] != w[at].token || tail <= longest || at + tail >= n)
                continue;
            int j = 1;
            while (j <= tail && w[at + j].token == br->tokens[j])
                j++;
            longest = j > tail ? tail : longest;
        }
        if (longest >= 0)
            return n - 1 - at - longest;
    }
    return n;
}

/* The window read backwards: back(w, n, 0) is its latest token. */
static inline int back(const SamplerToken *w, int n, int j)
{
    return w[n - 1 - j].token;
}

/* match[k], k = 1..n-1: how many tokens up to the one k places before the window's end
 * equal the window's last tokens (in "a b c x a b c", k = 4 ends at the first c: 3). This
 * is the Z-function of the window read backwards (Gusfield 1997), in linear time: [left,
 * right) is the match found so far that reaches furthest, and inside it a match is known
 * from the one at k - left, so each comparison that succeeds moves `right` on. */
static void dry_suffix_matches(const SamplerToken *w, int n, int *match)
{
    int left = 0, right = 0;
    for (int k = 1; k < n; k++) {
        int len = 0;
        if (k < right)
            len = right - k < match[k - left] ? right - k : match[k - left];
        while (k + len < n && back(w, n, len) == back(w, n, k + len))
            len++;
        if (k + len > right) {
            left = k;
            right = k + len;
        }
        match[k] = len;
    }
}

/* multiplier * base^(length - allowed length) off the logit. The exponent stops where
 * base^exponent would pass FLT_MAX (llama.cpp's cap: ln FLT_MAX = 88.72), and the result
 * is clamped as every logit is, so no repeat however long turns into a ban. */
static float dry_penalize(float logit, int length, const SamplerParams *p)
{
    if (logit == -INFINITY)
        return logit;
    int exponent = length - p->dry_allowed_length;
    int max_exponent = p->dry_base > 1.000001f ? (int)(88.7228391f / logf(p->dry_base)) : 0;
    if (max_exponent > 0 && exponent > max_exponent)
        exponent = max_exponent;
    double l = logit - (double)p->dry_multiplier * pow(p->dry_base, exponent);
    return l < -FLT_MAX ? -FLT_MAX : (float)l;
}

/* DRY over the window w[0..n) (the last dry_penalty_last_n tokens): each place where a run
 * of the window's last tokens occurred before, at least dry_allowed_length long, names the
 * token that followed that run: generating it now would repeat the run one token further.
 * Each such token is penalized once, for its longest run; counts[t] holds that length + 1
 * while the window is read, and is 0 again on return. Whole breakers are never penalized. */
static void sampler_apply_dry(Sampler *s, CandidateList *c)
{
    const SamplerParams *p = &s->params;
    if (!dry_on(p))
        return;
    int first = window_start(s, p->dry_penalty_last_n);
    const SamplerToken *w = s->history + first;
    int n = s->n_history - first;
    if (n <= p->dry_allowed_length)
        return;
    int limit = dry_tokens_since_breaker(s, w, n);
    if (limit < p->dry_allowed_length)
        return;
    dry_suffix_matches(w, n, s->dry_match);
    int n_seen = 0;
    for (int k = 1; k < n; k++) {
        int length = s->dry_match[k] < limit ? s->dry_match[k] : limit;
        int next = w[n - k].token; /* the token after the run that ends k places back */
        if (length < p->dry_allowed_length || length < s->counts[next])
            continue;
        if (s->counts[next] == 0)
            s->seen[n_seen++] = next;
        s->counts[next] = length + 1;
    }
    sampler_index(s, c);
    for (int i = 0; i < n_seen; i++) {
        int token = s->seen[i];
        Candidate *x = sampler_find(s, c, token);
        if (x && !(s->dry_breaker_kind[token] & DRY_WHOLE))
            x->logit = dry_penalize(x->logit, s->counts[token] - 1, p);
        s->counts[token] = 0;
    }
}

/* Appends printf-style text at buf + *len, never past cap (the text is cut short). */
static void describe_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void describe_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int written = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (written > 0)
        *len = *len + (size_t)written < cap ? *len + (size_t)written : cap - 1;
}

/* ---- the stages: one entry each ---- */

/* Appends "off" when a stage is off, otherwise its settings. */
static void describe_setting(char *buf, size_t cap, size_t *len, bool on, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void describe_setting(char *buf, size_t cap, size_t *len, bool on, const char *fmt, ...)
{
    if (!on) {
        describe_append(buf, cap, len, "off");
        return;
    }
    char text[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    describe_append(buf, cap, len, "%s", text);
}

/* A finite value >= 0; `hint` follows the message (what 0 does, or ""). */
static int check_not_negative(const char *name, float value, const char *hint, Error *err)
{
    if (!(isfinite(value) && value >= 0.0f))
        return error_set(err, "sampler: %s %g must be 0 or more%s", name, value, hint);
    return 0;
}

static int check_unit(const char *name, float value, Error *err)
{
    if (!(value >= 0.0f && value <= 1.0f))
        return error_set(err, "sampler: %s %g is outside 0..1", name, value);
    return 0;
}

static void logit_bias_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->n_logit_bias > 0, "(%d tokens)", p->n_logit_bias);
}

static int logit_bias_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return error_set(err, "sampler: %d logit biases without a list", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        const LogitBias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return error_set(err, "sampler: logit bias for token %d, outside the vocabulary "
                                  "(0..%d)", b->token, n_vocab - 1);
        if (isnan(b->bias) || b->bias == INFINITY)
            return error_set(err, "sampler: logit bias %g for token %d must be finite or -inf",
                             b->bias, b->token);
    }
    return 0;
}

static void bad_words_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->n_bad_words > 0, "(%d sequences)", p->n_bad_words);
}

/* A list of n token sequences (bad words, DRY breakers), each called `what` in messages. */
static int sequences_validate(const char *what, const TokenSequence *list, int n, int n_vocab,
                              Error *err)
{
    if (n < 0 || (n > 0 && !list))
        return error_set(err, "sampler: %d %ss without a list", n, what);
    for (int i = 0; i < n; i++) {
        const TokenSequence *w = &list[i];
        if (w->n_tokens < 1 || !w->tokens)
            return error_set(err, "sampler: %s %d has no tokens", what, i);
        for (int j = 0; j < w->n_tokens; j++)
            if (w->tokens[j] < 0 || w->tokens[j] >= n_vocab)
                return error_set(err, "sampler: %s %d has token %d, outside the vocabulary "
                                      "(0..%d)", what, i, w->tokens[j], n_vocab - 1);
    }
    return 0;
}

static int bad_words_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    return sequences_validate("bad word", p->bad_words, p->n_bad_words, n_vocab, err);
}

static void penalties_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, penalties_on(p),
                     "(repeat %g, frequency %g, presence %g, last %d tokens%s)",
                     p->repeat_penalty, p->frequency_penalty, p->presence_penalty,
                     p->repeat_last_n, p->penalize_prompt ? "" : ", prompt not counted");
}

static int penalties_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (!(isfinite(p->repeat_penalty) && p->repeat_penalty > 0.0f))
        return error_set(err, "sampler: repeat penalty %g must be above 0 (1 turns it off)",
                         p->repeat_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return error_set(err, "sampler: frequency and presence penalties must be finite numbers");
    if (p->repeat_last_n < -1)
        return error_set(err, "sampler: repeat-last-n %d is below -1 (-1: the whole history)",
                         p->repeat_last_n);
    return 0;
}

static void dry_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, dry_on(p),
                     "(multiplier %g, base %g, allowed length %d, last %d tokens, %d breakers)",
                     p->dry_multiplier, p->dry_base, p->dry_allowed_length,
                     p->dry_penalty_last_n, p->n_dry_breakers);
}

static int dry_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (check_not_negative("dry-multiplier", p->dry_multiplier, " (0 turns it off)", err) != 0)
        return -1;
    if (!(isfinite(p->dry_base) && p->dry_base >= 1.0f))
        return error_set(err, "sampler: dry-base %g must be 1 or more", p->dry_base);
    if (p->dry_allowed_length < 0)
        return error_set(err, "sampler: dry-allowed-length %d is negative",
                         p->dry_allowed_length);
    if (p->dry_penalty_last_n < -1)
        return error_set(err, "sampler: dry-penalty-last-n %d is below -1 (-1: the whole "
                              "history, 0: off)", p->dry_penalty_last_n);
    return sequences_validate("DRY sequence breaker", p->dry_breakers, p->n_dry_breakers,
                              n_vocab, err);
}

static void top_k_apply(Sampler *s, CandidateList *c)
{
    candidates_top_k(c, s->params.top_k);
}

static void top_k_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->top_k > 0, "%d", p->top_k);
}

static int top_k_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (p->top_k < 0)
        return error_set(err, "sampler: top-k %d is negative (0 turns it off)", p->top_k);
    return 0;
}

static void typical_p_apply(Sampler *s, CandidateList *c)
{
    candidates_typical(c, s->params.typical_p, s->params.min_keep);
}

/* A filter that takes min_keep says so when it is on and min_keep keeps more than one. */
static void describe_min_keep(const SamplerParams *p, bool on, char *buf, size_t cap,
                              size_t *len)
{
    if (on && p->min_keep > 1)
        describe_append(buf, cap, len, " (min-keep %d)", p->min_keep);
}

static void typical_p_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->typical_p < 1.0f, "%g", p->typical_p);
    describe_min_keep(p, p->typical_p < 1.0f, buf, cap, len);
}

static int typical_p_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    return check_unit("typical-p", p->typical_p, err);
}

static void top_p_apply(Sampler *s, CandidateList *c)
{
    candidates_top_p(c, s->params.top_p, s->params.min_keep);
}

static void top_p_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->top_p < 1.0f, "%g", p->top_p);
    describe_min_keep(p, p->top_p < 1.0f, buf, cap, len);
}

static int top_p_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    return check_unit("top-p", p->top_p, err);
}

static void min_p_apply(Sampler *s, CandidateList *c)
{
    candidates_min_p(c, s->params.min_p, s->params.min_keep);
}

static void min_p_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->min_p > 0.0f, "%g", p->min_p);
    describe_min_keep(p, p->min_p > 0.0f, buf, cap, len);
}

static int min_p_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    return check_unit("min-p", p->min_p, err);
}

static void top_n_sigma_apply(Sampler *s, CandidateList *c)
{
    candidates_top_n_sigma(c, s->params.top_n_sigma);
}

static void top_n_sigma_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, p->top_n_sigma >= 0.0f, "%g", p->top_n_sigma);
}

static int top_n_sigma_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (!isfinite(p->top_n_sigma))
        return error_set(err, "sampler: top-n-sigma %g is not a finite number (-1 turns it "
                              "off)", p->top_n_sigma);
    return 0;
}

static bool xtc_on(const SamplerParams *p)
{
    return p->xtc_probability > 0.0f && p->xtc_threshold <= 0.5f;
}

/* The coin is thrown only when XTC is on, and on every token then (before looking at the
 * list, as llama.cpp does), so its stream does not depend on the logits. */
static void xtc_apply(Sampler *s, CandidateList *c)
{
    if (!xtc_on(&s->params) || c->n < 2)
        return;
    if (rng_uniform(&s->xtc_rng) > s->params.xtc_probability)
        return;
    candidates_xtc(c, s->params.xtc_threshold, s->params.min_keep);
}

static void xtc_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_setting(buf, cap, len, xtc_on(p), "(probability %g, threshold %g)",
                     p->xtc_probability, p->xtc_threshold);
    describe_min_keep(p, xtc_on(p), buf, cap, len);
}

static int xtc_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (check_unit("xtc-probability", p->xtc_probability, err) != 0)
        return -1;
    return check_unit("xtc-threshold", p->xtc_threshold, err);
}

/* The dynamic temperature is on for sampling only: greedy decoding has no temperature. */
static bool dynatemp_on(const SamplerParams *p)
{
    return p->dynatemp_range > 0.0f && p->temperature > 0.0f;
}

static void temperature_apply(Sampler *s, CandidateList *c)
{
    const SamplerParams *p = &s->params;
    if (dynatemp_on(p))
        candidates_dynamic_temperature(c, p->temperature, p->dynatemp_range,
                                       p->dynatemp_exponent);
    else
        candidates_temperature(c, p->temperature);
}

/* never "off": at <= 0 the selector is greedy, which the chain's description ends with */
static void temperature_describe(const SamplerParams *p, char *buf, size_t cap, size_t *len)
{
    describe_append(buf, cap, len, "%g", p->temperature <= 0.0f ? 0.0 : p->temperature);
    if (dynatemp_on(p))
        describe_append(buf, cap, len, " (dynamic, range %g, exponent %g)", p->dynatemp_range,
                        p->dynatemp_exponent);
}

static int temperature_validate(const SamplerParams *p, int n_vocab, Error *err)
{
    if (!isfinite(p->temperature))
        return error_set(err, "sampler: temperature %g is not a finite number", p->temperature);
    if (check_not_negative("dynatemp-range", p->dynatemp_range, " (0 turns it off)", err) != 0)
        return -1;
    return check_not_negative("dynatemp-exp", p->dynatemp_exponent, "", err);
}

/* ---- the grammar stage (sampler_set_grammar) ---- */

/* Bans every candidate the grammar refuses and removes it, so that a later stage that
 * bans the rest and lifts the total ban (candidates_lift_total_ban) cannot bring it back.
 * When nothing survives, the end-of-text token is left alone: generation ends. The mask
 * covers the whole vocabulary: by the trie walk, or token by token (the reference). */
static void sampler_apply_grammar(Sampler *s, CandidateList *c)
{
    SamplerGrammar *g = s->grammar;
    g->masked_steps++;
    if (g->speedups.trie)
        grammar_vocab_mask_trie(&g->shared->vocab, &g->matcher, g->allowed);
    else
        grammar_vocab_mask_plain(&g->shared->vocab, &g->matcher, g->allowed);
    bool any = false;
    for (int i = 0; i < c->n; i++) {
        if (c->data[i].logit != -INFINITY && g->allowed[c->data[i].id])
            any = true;
        else
            c->data[i].logit = -INFINITY;
    }
    if (!any) {
        sampler_index(s, c);
        Candidate *eos = sampler_find(s, c, g->shared->vocab.eos_id);
        if (eos)
            eos->logit = 0.0f;
    }
    candidates_drop_banned(c);
}

static void sampler_grammar_free(SamplerGrammar *g)
{
    if (!g)
        return;
    grammar_matcher_free(&g->matcher);
    if (g->shared && --g->shared->refs == 0) {
        grammar_vocab_free(&g->shared->vocab);
        free(g->shared);
    }
    free(g->allowed);
    free(g);
}

/* A grammar stage over shared's vocabulary (one more reference to it), its matcher at
 * matcher's state, or at the grammar's start when matcher is NULL. */
static SamplerGrammar *sampler_grammar_new(int n_vocab, SamplerGrammarVocab *shared,
                                           const Grammar *grammar, const GrammarMatcher *matcher,
                                           Error *err)
{
    SamplerGrammar *g = calloc(1, sizeof *g);
    if (!g || !(g->allowed = malloc((size_t)n_vocab * sizeof *g->allowed))) {
        free(g);
        error_set(err, "out of memory for the grammar stage");
        return NULL;
    }
    g->speedups = (SamplerGrammarSpeedups){.survivors_first = true, .trie = true};
    g->shared = shared;
    shared->refs++;
    bool copied = true;
    int status = matcher ? grammar_matcher_advance(matcher, NULL, 0, &g->matcher, &copied, err)
                         : grammar_matcher_init(&g->matcher, grammar, err);
    if (status != 0) {
        sampler_grammar_free(g);
        return NULL;
    }
    return g;
}

int sampler_set_grammar(Sampler *s, const Grammar *grammar, const Tokenizer *tok, Error *err)
{
    if (tok->n_vocab != s->n_vocab)
        return error_set(err, "sampler: a grammar over %d tokens for a sampler over %d",
                         tok->n_vocab, s->n_vocab);
    SamplerGrammarVocab *shared = calloc(1, sizeof *shared);
    if (!shared)
        return error_set(err, "out of memory for the grammar stage");
    if (grammar_vocab_init(&shared->vocab, tok, err) != 0) {
        free(shared);
        return -1;
    }
    SamplerGrammar *g = sampler_grammar_new(s->n_vocab, shared, grammar, NULL, err);
    if (!g) {
        grammar_vocab_free(&shared->vocab);
        free(shared);
        return -1;
    }
    sampler_grammar_free(s->grammar);
    s->grammar = g;
    return 0;
}

int sampler_grammar_share(Sampler *dst, const Sampler *src, Error *err)
{
    if (!src->grammar)
        return 0;
    SamplerGrammar *g = sampler_grammar_new(dst->n_vocab, src->grammar->shared,
                                            src->grammar->matcher.grammar, NULL, err);
    if (!g)
        return -1;
    g->speedups = src->grammar->speedups;
    sampler_grammar_free(dst->grammar);
    dst->grammar = g;
    return 0;
}

void sampler_grammar_speedups(Sampler *s, SamplerGrammarSpeedups speedups)
{
    if (s->grammar)
        s->grammar->speedups = speedups;
}

/* A generated token's bytes move the recognizer on. A token the grammar refuses (a reply
 * replayed into a sampler whose grammar came later, a caller's own choice) leaves it with no
 * way on: only the end of text is allowed until the next prompt starts the grammar again. */
static int sampler_grammar_feed(Sampler *s, int token, Error *err)
{
    const GrammarVocab *v = &s->grammar->shared->vocab;
    if (token == v->eos_id)
        return 0;
    bool allowed = false;
    if (grammar_matcher_feed(&s->grammar->matcher, v->bytes + v->start[token],
                             v->start[token + 1] - v->start[token], &allowed, err) != 0)
        return -1;
    if (!allowed)
        grammar_matcher_free(&s->grammar->matcher);
    s->grammar->fed = true;
    return 0;
}

/* Takes the grammar back to its start; out of memory leaves it with no way on, so that
 * generation ends (eos). */
static void sampler_grammar_restart(SamplerGrammar *g)
{
    const Grammar *grammar = g->matcher.grammar;
    Error err;
    grammar_matcher_free(&g->matcher);
    if (grammar_matcher_init(&g->matcher, grammar, &err) != 0)
        g->matcher.grammar = grammar;
    g->fed = false;
}

/* A processor of the chain: its name in chain strings, what it does to the candidates,
 * its settings in words (after its name: "40", "off", "(3 tokens)"), the check of its
 * fields of SamplerParams, and whether it runs under Mirostat (which replaces the filters
 * and penalties with its own cut, as llama.cpp's --mirostat does). Adding a processor is
 * its SamplerStage value, its fields and one entry here; parsing, describing, checking and running the chain read the table. */
typedef struct {
    const char *name;
    void (*apply)(Sampler *s, CandidateList *c);
    void (*describe)(const SamplerParams *p, char *buf, size_t cap, size_t *len);
    int (*validate)(const SamplerParams *p, int n_vocab, Error *err);
    bool with_mirostat;
} StageInfo;

static const StageInfo STAGES[SAMPLER_STAGE_COUNT] = {
    [SAMPLER_STAGE_LOGIT_BIAS] = {"logit-bias", sampler_apply_logit_bias, logit_bias_describe,
                                  logit_bias_validate, true},
    [SAMPLER_STAGE_BAD_WORDS] = {"bad-words", sampler_apply_bad_words, bad_words_describe,
                                 bad_words_validate, true},
    [SAMPLER_STAGE_PENALTIES] = {"penalties", sampler_apply_penalties, penalties_describe,
                                 penalties_validate},
    [SAMPLER_STAGE_TOP_K] = {"top-k", top_k_apply, top_k_describe, top_k_validate},
    [SAMPLER_STAGE_TYPICAL_P] = {"typical-p", typical_p_apply, typical_p_describe,
                                 typical_p_validate},
    [SAMPLER_STAGE_TOP_P] = {"top-p", top_p_apply, top_p_describe, top_p_validate},
    [SAMPLER_STAGE_MIN_P] = {"min-p", min_p_apply, min_p_describe, min_p_validate},
    [SAMPLER_STAGE_TEMPERATURE] = {"temperature", temperature_apply, temperature_describe,
                                   temperature_validate, true},
    [SAMPLER_STAGE_XTC] = {"xtc", xtc_apply, xtc_describe, xtc_validate},
    [SAMPLER_STAGE_TOP_N_SIGMA] = {"top-n-sigma", top_n_sigma_apply, top_n_sigma_describe,
                                   top_n_sigma_validate},
    [SAMPLER_STAGE_DRY] = {"dry", sampler_apply_dry, dry_describe, dry_validate},
};

const char *sampler_stage_name(SamplerStage stage)
{
    return stage >= 0 && stage < SAMPLER_STAGE_COUNT ? STAGES[stage].name : "?";
}

/* ---- chain strings ---- */

/* The stage called name[0..len), or -1. */
static int stage_from_name(const char *name, size_t len)
{
    for (int i = 0; i < SAMPLER_STAGE_COUNT; i++)
        if (strlen(STAGES[i].name) == len && memcmp(STAGES[i].name, name, len) == 0)
            return i;
    return -1;
}

/* "logit-bias, bad-words, ..., temperature": every stage's name, for error messages. */
static const char *stage_names(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < SAMPLER_STAGE_COUNT; i++)
        describe_append(buf, cap, &len, "%s%s", i ? ", " : "", STAGES[i].name);
    return buf;
}

int sampler_chain_parse(const char *text, SamplerParams *p, Error *err)
{
    char quoted[128], item_quoted[64], known[256];
    error_quote(quoted, sizeof quoted, text, strlen(text));
    SamplerStage chain[SAMPLER_STAGE_COUNT];
    bool used[SAMPLER_STAGE_COUNT] = {false};
    int n = 0;
    for (const char *item = text;;) {
        const char *end = strchr(item, ',');
        size_t len = end ? (size_t)(end - item) : strlen(item);
        while (len > 0 && *item == ' ')
            item++, len--;
        while (len > 0 && item[len - 1] == ' ')
            len--;
        if (len == 0)
            return error_set(err, "sampler chain \"%s\": empty item (names are separated by "
                                  "single commas)", quoted);
        int stage = stage_from_name(item, len);
        error_quote(item_quoted, sizeof item_quoted, item, len);
        if (stage < 0)
            return error_set(err, "sampler chain \"%s\": unknown sampler \"%s\" (known: %s)",
                             quoted, item_quoted, stage_names(known, sizeof known));
        if (used[stage])
            return error_set(err, "sampler chain \"%s\": \"%s\" appears twice", quoted,
                             item_quoted);
        used[stage] = true;
        chain[n++] = (SamplerStage)stage;
        if (!end)
            break;
        item = end + 1;
    }
    memcpy(p->chain, chain, (size_t)n * sizeof *chain);
    p->n_chain = n;
    return 0;
}

/* Whether a stage of the chain runs: all do, but under Mirostat only those it keeps. */
static bool stage_runs(const SamplerParams *p, SamplerStage stage)
{
    return p->mirostat == 0 || STAGES[stage].with_mirostat;
}

void sampler_chain_describe(const SamplerParams *p, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->n_chain; i++) {
        if (!stage_runs(p, p->chain[i]))
            continue;
        describe_append(buf, cap, &len, "%s ", STAGES[p->chain[i]].name);
        STAGES[p->chain[i]].describe(p, buf, cap, &len);
        describe_append(buf, cap, &len, " -> ");
    }
    if (p->mirostat != 0)
        describe_append(buf, cap, &len, "mirostat %d (tau %g, eta %g) -> ", p->mirostat,
                        p->mirostat_tau, p->mirostat_eta);
    if (p->temperature <= 0.0f)
        describe_append(buf, cap, &len, "greedy (argmax)");
    else
        describe_append(buf, cap, &len, "random draw (seed %llu)", (unsigned long long)p->seed);
}

static int mirostat_validate(const SamplerParams *p, Error *err)
{
    if (p->mirostat < 0 || p->mirostat > 2)
        return error_set(err, "sampler: mirostat %d is not a version (0: off, 1: Mirostat, "
                              "2: Mirostat 2.0)", p->mirostat);
    if (check_not_negative("mirostat-ent (tau)", p->mirostat_tau, "", err) != 0)
        return -1;
    return check_not_negative("mirostat-lr (eta)", p->mirostat_eta, "", err);
}

/* The vocabulary, the chain, and every stage's fields (whether the chain names it or not,
 * so that a stage added later by /set finds them valid). */
static int sampler_params_check(const SamplerParams *p, int n_vocab, Error *err)
{
    if (n_vocab <= 0)
        return error_set(err, "sampler: the vocabulary has %d tokens", n_vocab);
    if (p->n_chain < 0 || p->n_chain > SAMPLER_STAGE_COUNT)
        return error_set(err, "sampler: a chain has 0 to %d stages, not %d", SAMPLER_STAGE_COUNT,
                         p->n_chain);
    bool used[SAMPLER_STAGE_COUNT] = {false};
    for (int i = 0; i < p->n_chain; i++) {
        if ((int)p->chain[i] < 0 || p->chain[i] >= SAMPLER_STAGE_COUNT || used[p->chain[i]])
            return error_set(err, "sampler: chain entry %d is not a stage or repeats one", i);
        used[p->chain[i]] = true;
    }
    for (int i = 0; i < SAMPLER_STAGE_COUNT; i++)
        if (STAGES[i].validate(p, n_vocab, err) != 0)
            return -1;
    if (p->min_keep < 0)
        return error_set(err, "sampler: min-keep %d is negative", p->min_keep);
    return mirostat_validate(p, err);
}

/* ---- set-up, copies, history ---- */

/* How many of the latest tokens any processor looks at (-1: all of them): the penalty
 * and DRY windows, and every bad word's tokens but its last. Older tokens can be dropped. */
static int history_keep(const SamplerParams *p)
{
    int keep = 0;
    for (int i = 0; i < p->n_bad_words; i++)
        keep = p->bad_words[i].n_tokens - 1 > keep ? p->bad_words[i].n_tokens - 1 : keep;
    if (penalties_on(p)) {
        if (p->repeat_last_n < 0)
            return -1;
        keep = p->repeat_last_n > keep ? p->repeat_last_n : keep;
    }
    if (dry_on(p)) {
        if (p->dry_penalty_last_n < 0)
            return -1;
        keep = p->dry_penalty_last_n > keep ? p->dry_penalty_last_n : keep;
    }
    return keep;
}

/* Copies src[0..n) into *dst (malloc'd, n entries) with their tokens one after another in
 * *tokens (malloc'd). */
static int sequences_copy(TokenSequence **dst, int **tokens, const TokenSequence *src, int n)
{
    size_t n_tokens = 0;
    for (int i = 0; i < n; i++)
        n_tokens += (size_t)src[i].n_tokens;
    *dst = malloc(((size_t)n + 1) * sizeof **dst);
    *tokens = malloc((n_tokens + 1) * sizeof **tokens);
    if (!*dst || !*tokens)
        return -1;
    int *at = *tokens;
    for (int i = 0; i < n; i++) {
        memcpy(at, src[i].tokens, (size_t)src[i].n_tokens * sizeof *at);
        (*dst)[i] = (TokenSequence){.tokens = at, .n_tokens = src[i].n_tokens};
        at += src[i].n_tokens;
    }
    return 0;
}

/* Copies the logit bias, bad words and DRY breakers out of the caller's memory into s,
 * points s->params at the copies, and marks each breaker's head and each whole breaker in
 * s->dry_breaker_kind. */
static int sampler_copy_lists(Sampler *s, const SamplerParams *p, Error *err)
{
    s->logit_bias = malloc(((size_t)p->n_logit_bias + 1) * sizeof *s->logit_bias);
    s->dry_breaker_kind = calloc((size_t)s->n_vocab, sizeof *s->dry_breaker_kind);
    if (!s->logit_bias || !s->dry_breaker_kind ||
        sequences_copy(&s->bad_words, &s->bad_word_tokens, p->bad_words, p->n_bad_words) != 0 ||
        sequences_copy(&s->dry_breakers, &s->dry_breaker_tokens, p->dry_breakers,
                       p->n_dry_breakers) != 0)
        return error_set(err, "out of memory for the sampler's logit bias, bad words and DRY "
                              "breakers");
    if (p->n_logit_bias > 0)
        memcpy(s->logit_bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->logit_bias);
    for (int i = 0; i < p->n_dry_breakers; i++)
        s->dry_breaker_kind[p->dry_breakers[i].tokens[0]] |=
            p->dry_breakers[i].n_tokens == 1 ? DRY_HEAD | DRY_WHOLE : DRY_HEAD;
    s->params.logit_bias = s->logit_bias;
    s->params.bad_words = s->bad_words;
    s->params.dry_breakers = s->dry_breakers;
    return 0;
}

/* Everything but the RNG and the history's contents: parameters, lists, scratch. */
static int sampler_setup(Sampler *s, const SamplerParams *p, int n_vocab, size_t cap_history,
                         Error *err)
{
    memset(s, 0, sizeof *s);
    if (sampler_params_check(p, n_vocab, err) != 0)
        return -1;
    s->params = *p;
    s->n_vocab = n_vocab;
    s->history_keep = history_keep(p);
    s->cap_history = cap_history;
    s->history = malloc(cap_history * sizeof *s->history);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->seen = malloc((size_t)n_vocab * sizeof *s->seen);
    s->slot = calloc((size_t)n_vocab, sizeof *s->slot);
    if (!s->history || !s->counts || !s->seen || !s->slot) {
        sampler_free(s);
        return error_set(err, "out of memory for a sampler over %d tokens", n_vocab);
    }
    if (sampler_copy_lists(s, p, err) != 0 || candidates_init(&s->scratch, n_vocab, err) != 0) {
        sampler_free(s);
        return -1;
    }
    return 0;
}

int sampler_init(Sampler *s, const SamplerParams *p, int n_vocab, Error *err)
{
    if (sampler_setup(s, p, n_vocab, 64, err) != 0)
        return -1;
    rng_seed(&s->rng, p->seed);
    s->mirostat_mu = 2.0f * p->mirostat_tau;
    /* a different seed, so that the coin and the draw are not the same numbers */
    rng_seed(&s->xtc_rng, p->seed ^ 0x9e3779b97f4a7c15u);
    return 0;
}

void sampler_free(Sampler *s)
{
    if (!s)
        return;
    free(s->logit_bias);
    free(s->bad_words);
    free(s->bad_word_tokens);
    free(s->dry_breakers);
    free(s->dry_breaker_tokens);
    free(s->dry_breaker_kind);
    free(s->dry_match);
    free(s->history);
    free(s->counts);
    free(s->seen);
    free(s->slot);
    candidates_free(&s->scratch);
    sampler_grammar_free(s->grammar);
    memset(s, 0, sizeof *s);
}

int sampler_clone(Sampler *dst, const Sampler *src, Error *err)
{
    if (sampler_setup(dst, &src->params, src->n_vocab, src->cap_history, err) != 0)
        return -1;
    const SamplerGrammar *g = src->grammar;
    if (g && !(dst->grammar = sampler_grammar_new(src->n_vocab, g->shared, NULL, &g->matcher,
                                                  err))) {
        sampler_free(dst);
        return -1;
    }
    if (g) {
        dst->grammar->fed = g->fed;
        dst->grammar->speedups = g->speedups;
    }
    dst->rng = src->rng;
    dst->mirostat_mu = src->mirostat_mu;
    dst->xtc_rng = src->xtc_rng;
    if (dry_on(&src->params) && dry_reserve(dst, src->n_history, err) != 0) {
        sampler_free(dst);
        return -1;
    }
    memcpy(dst->history, src->history, (size_t)src->n_history * sizeof *src->history);
    dst->n_history = src->n_history;
    return 0;
}

void sampler_reset(Sampler *s)
{
    s->n_history = 0;
    s->mirostat_mu = 2.0f * s->params.mirostat_tau;
    if (s->grammar)
        sampler_grammar_restart(s->grammar);
}

int sampler_accept(Sampler *s, int token, bool is_prompt, Error *err)
{
    if (token < 0 || token >= s->n_vocab)
        return error_set(err, "sampler: token %d is outside the vocabulary (0..%d)", token,
                         s->n_vocab - 1);
    if (s->grammar && is_prompt && s->grammar->fed)
        sampler_grammar_restart(s->grammar); /* a new prompt: a new text follows it */
    if (s->grammar && !is_prompt && sampler_grammar_feed(s, token, err) != 0)
        return -1;
    if ((size_t)s->n_history == s->cap_history) {
        int keep = s->history_keep;
        if (keep >= 0 && (size_t)keep <= s->cap_history / 2) {
            /* drop what no processor looks at; moving half the buffer every half buffer
             * of tokens costs O(1) per token */
            memmove(s->history, s->history + s->n_history - keep, (size_t)keep * sizeof *s->history);
            s->n_history = keep;
        } else {
            if (s->cap_history > (1 << 29))
                return error_set(err, "sampler: the history is full (%d tokens)", s->n_history);
            if (buffer_reserve_items(&s->history, &s->cap_history, s->cap_history + 1,
                                     sizeof *s->history, 64, "the sampler's history", err) != 0)
                return -1;
        }
    }
    if (dry_on(&s->params) && dry_reserve(s, s->n_history + 1, err) != 0)
        return -1;
    s->history[s->n_history++] = (SamplerToken){.token = token, .is_prompt = is_prompt};
    return 0;
}

/* ---- the trace ---- */

/* Inserts x into the top list of a trace step (sorted by logit, ties to the lower id) when
 * it belongs there. */
static void trace_insert(SamplerTraceStep *t, Candidate x)
{
    int at = t->n_top;
    while (at > 0 && (t->top[at - 1].logit < x.logit ||
                      (t->top[at - 1].logit == x.logit && t->top[at - 1].id > x.id)))
        at--;
    if (at >= SAMPLER_TRACE_TOP)
        return;
    int moved = t->n_top < SAMPLER_TRACE_TOP ? t->n_top - at : SAMPLER_TRACE_TOP - 1 - at;
    memmove(&t->top[at + 1], &t->top[at], (size_t)moved * sizeof x);
    t->top[at] = x;
    if (t->n_top < SAMPLER_TRACE_TOP)
        t->n_top++;
}

/* Records the list after a stage without changing it: its most likely candidates and their
 * probabilities under the list's softmax, computed aside. */
static void trace_record(SamplerTrace *trace, const char *stage, const CandidateList *c)
{
    SamplerTraceStep *t = &trace->steps[trace->n_steps++];
    *t = (SamplerTraceStep){.stage = stage, .n = c->n};
    float max = -INFINITY;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit > max)
            max = c->data[i].logit;
    double sum = 0.0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit != -INFINITY) {
            sum += exp((double)c->data[i].logit - max);
            trace_insert(t, c->data[i]);
        }
    for (int i = 0; i < t->n_top; i++)
        t->top[i].p = (float)(exp((double)t->top[i].logit - max) / sum);
}

/* ---- the chain and the selector ---- */

/* Mirostat's cut by its current mu. Version 1 estimates Zipf's exponent from the top
 * MIROSTAT_M probabilities (llama.cpp's and the paper's m = 100), which banned tokens
 * (p = 0) would make infinite: they leave first. */
enum { MIROSTAT_M = 100 };

static void mirostat_cut(Sampler *s, CandidateList *c)
{
    if (s->params.mirostat == 2) {
        candidates_mirostat_v2(c, s->mirostat_mu);
        return;
    }
    candidates_drop_banned(c);
    candidates_mirostat_v1(c, s->mirostat_mu, s->n_vocab, MIROSTAT_M);
}

/* Runs the chain's stages from..to-1 on c, recording each into trace when there is one. */
static void run_stages(Sampler *s, CandidateList *c, int from, int to, SamplerTrace *trace)
{
    const SamplerParams *p = &s->params;
    for (int i = from; i < to; i++) {
        if (!stage_runs(p, p->chain[i]))
            continue;
        STAGES[p->chain[i]].apply(s, c);
        if (trace)
            trace_record(trace, STAGES[p->chain[i]].name, c);
    }
}

/* What the chain does after its stages: Mirostat's cut when on, the bans leave, and the
 * softmax gives probabilities that sum to 1. */
static void finish_chain(Sampler *s, CandidateList *c, SamplerTrace *trace)
{
    if (s->params.mirostat != 0) {
        mirostat_cut(s, c);
        if (trace)
            trace_record(trace, "mirostat", c);
    }
    candidates_drop_banned(c);
    candidates_softmax(c);
}

/* The whole flow, as llama2.c's sample() shows it: the candidates start as every token
 * with its logit, each stage of the chain rewrites them in order (sampler_params_default
 * gives llama.cpp's order), banned tokens leave, and the softmax gives probabilities
 * that sum to 1. With a trace, the list is recorded after each stage. */
static void sampler_run_chain(Sampler *s, const float *logits, CandidateList *c,
                              SamplerTrace *trace)
{
    candidates_fill(c, logits, s->n_vocab);
    if (s->grammar) /* first, as in llama.cpp: the chain only sees what the grammar allows */
        sampler_apply_grammar(s, c);
    run_stages(s, c, 0, s->params.n_chain, trace);
    finish_chain(s, c, trace);
}

/* ---- the grammar's shortcut: the survivors of the first cut, checked first ----
 *
 * Masking the whole vocabulary reads every token through the recognizer. But the chain
 * usually cuts early: top-k 40 keeps 40 candidates, whatever the other 31,960 are. Under a
 * grammar it keeps the 40 highest ALLOWED ones. When every stage before the cut changes
 * each logit on its own (bias, bans, penalties, a fixed temperature), a candidate's logit
 * is the same with or without the grammar, so those 40 are the first 40 allowed ones in
 * the sorted order of the unmasked list: check the highest candidates one by one until 40
 * pass. From then on the list is exactly the one the masked chain would have, so the rest
 * of the chain and the draw give the same token for the same RNG state. Greedy decoding
 * with no cut at all needs only the first allowed candidate: the masked argmax. */

/* Whether a stage's effect on a candidate depends on the other candidates: a cut that is
 * on, or a temperature set from the list's entropy. The others (logit-bias, bad-words,
 * penalties, a fixed temperature, and any cut set to off, top-k of the whole vocabulary
 * included) change each logit on its own. */
static bool stage_looks_at_others(const SamplerParams *p, SamplerStage stage, int n_vocab)
{
    switch (stage) {
    case SAMPLER_STAGE_TOP_K: return p->top_k > 0 && p->top_k < n_vocab;
    case SAMPLER_STAGE_TOP_P: return p->top_p < 1.0f;
    case SAMPLER_STAGE_MIN_P: return p->min_p > 0.0f;
    case SAMPLER_STAGE_TYPICAL_P: return p->typical_p < 1.0f;
    case SAMPLER_STAGE_TOP_N_SIGMA: return p->top_n_sigma >= 0.0f;
    case SAMPLER_STAGE_XTC: return xtc_on(p);
    case SAMPLER_STAGE_TEMPERATURE: return dynatemp_on(p);
    default: return false;
    }
}

/* How many of the highest allowed candidates decide the token, with *cut the chain index of
 * the cut they replace (the stages before it change each logit on its own); 0 when the
 * shortcut would not be exact: Mirostat, or a first cut other than top-k. */
static int survivors_needed(const SamplerParams *p, int n_vocab, int *cut)
{
    if (p->mirostat != 0)
        return 0;
    for (int i = 0; i < p->n_chain; i++)
        if (stage_looks_at_others(p, p->chain[i], n_vocab)) {
            *cut = i;
            return p->chain[i] == SAMPLER_STAGE_TOP_K ? p->top_k : 0;
        }
    *cut = p->n_chain;
    return p->temperature <= 0.0f ? 1 : 0;
}

/* The most candidates checked one by one before the whole vocabulary is masked instead: a
 * grammar that refuses most of the top (outside a JSON string, most words) is masked faster
 * by the trie than token by token, so the checks give up early there. */
enum { SURVIVORS_CHECKED_PER_KEPT = 2, SURVIVORS_CHECKED_MIN = 32 };

/* Leaves in c the first `need` allowed candidates of its sorted order (finite logits only),
 * sorted; false when they are not among the highest few it checks, which it knows as soon
 * as too few candidates are left to check. */
static bool keep_allowed_top(SamplerGrammar *g, CandidateList *c, int need)
{
    int budget = need * SURVIVORS_CHECKED_PER_KEPT;
    budget = budget > SURVIVORS_CHECKED_MIN ? budget : SURVIVORS_CHECKED_MIN;
    candidates_top_k(c, budget);
    candidates_sort(c);
    bool complete = grammar_matcher_is_complete(&g->matcher);
    int kept = 0;
    for (int i = 0; i < c->n && kept < need && need - kept <= c->n - i &&
                    c->data[i].logit != -INFINITY;
         i++)
        if (grammar_vocab_allows(&g->shared->vocab, &g->matcher, c->data[i].id, complete))
            c->data[kept++] = c->data[i];
    if (kept < need)
        return false;
    c->n = kept;
    c->indexed = false;
    return true;
}

/* The chain with the shortcut, into c: true when it could be taken; c is then the list
 * sampler_run_chain would leave, or, when `argmax_only` allows it (greedy decoding with no
 * cut), that list's argmax alone. */
static bool run_chain_survivors_first(Sampler *s, const float *logits, CandidateList *c,
                                      bool argmax_only)
{
    int cut = 0, need = survivors_needed(&s->params, s->n_vocab, &cut);
    if (!s->grammar->speedups.survivors_first || need <= 0 ||
        (cut == s->params.n_chain && !argmax_only))
        return false;
    candidates_fill(c, logits, s->n_vocab);
    run_stages(s, c, 0, cut, NULL);
    if (!keep_allowed_top(s->grammar, c, need))
        return false;
    run_stages(s, c, cut + 1, s->params.n_chain, NULL);
    finish_chain(s, c, NULL);
    s->grammar->survivor_steps++;
    return true;
}

void sampler_apply(Sampler *s, const float *logits, CandidateList *out)
{
    if (!s->grammar || !run_chain_survivors_first(s, logits, out, false))
        sampler_run_chain(s, logits, out, NULL);
    candidates_sort(out);
}

/* Mirostat's feedback: the chosen token's surprise, -log2 of its probability in the list
 * it was drawn from, moves mu toward the target tau by the learning rate eta. */
static int mirostat_learn(Sampler *s, const CandidateList *c, int token)
{
    if (s->params.mirostat == 0)
        return token;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].id == token) {
            float surprise = -log2f(c->data[i].p);
            s->mirostat_mu -= s->params.mirostat_eta * (surprise - s->params.mirostat_tau);
            break;
        }
    return token;
}

int sampler_select(Sampler *s, const CandidateList *c)
{
    if (s->params.temperature <= 0.0f)
        return mirostat_learn(s, c, candidates_argmax(c));
    return mirostat_learn(s, c, candidates_draw(c, rng_uniform(&s->rng)));
}

int sampler_sample(Sampler *s, const float *logits)
{
    if (!s->grammar || !run_chain_survivors_first(s, logits, &s->scratch, true))
        sampler_run_chain(s, logits, &s->scratch, NULL);
    if (s->params.temperature <= 0.0f)
        return mirostat_learn(s, &s->scratch, candidates_argmax(&s->scratch));
    return mirostat_learn(s, &s->scratch,
                          candidates_draw_sorted(&s->scratch, rng_uniform(&s->rng)));
}

int sampler_sample_traced(Sampler *s, const float *logits, SamplerTrace *trace)
{
    CandidateList *c = &s->scratch;
    trace->n_steps = 0;
    sampler_run_chain(s, logits, c, trace);
    candidates_sort(c);
    SamplerTraceStep *last = &trace->steps[trace->n_steps++];
    *last = (SamplerTraceStep){.stage = "chain", .n = c->n};
    last->n_top = c->n < SAMPLER_TRACE_TOP ? c->n : SAMPLER_TRACE_TOP;
    memcpy(last->top, c->data, (size_t)last->n_top * sizeof *c->data);
    trace->chosen = sampler_select(s, c);
    return trace->chosen;
}
