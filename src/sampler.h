/* Choosing the next token from the model's logits: small processors that each rewrite a
 * candidate list (candidates.h), run in a fixed, configurable order (the chain), then one
 * selector. The default chain is llama.cpp's (common_params_sampling: its logit bias
 * first, then its default `samplers` list, without the samplers quill does not have):
 *
 *   logits -> logit-bias -> bad-words -> penalties -> dry -> top-n-sigma -> top-k
 *          -> typical-p -> top-p -> min-p -> xtc -> temperature -> softmax
 *          -> greedy (temperature <= 0) or a seeded random draw
 *
 * Bans and penalties come first because they change which tokens are likely; the
 * truncating filters then cut on the model's own (untempered) distribution; temperature
 * comes last, so it only reshapes the survivors and cannot smuggle unlikely tokens past
 * the filters. A grammar (sampler_set_grammar) runs before all of them. docs/sampling.md
 * has every formula, its paper and a worked example of two orders.
 *
 * State: the history of accepted tokens (penalties, DRY and bad words look at it) and the
 * RNG.
 * The decode loop calls sampler_accept for every prompt token (is_prompt = true) and for
 * every token it generates; without that, penalties and multi-token bad words see an empty
 * history.
 *
 * Usage: sampler_params_default (then sampler_preset and/or single fields, then
 * sampler_chain_parse), sampler_init, per position sampler_sample + sampler_accept, and
 * sampler_free. */
#ifndef QUILL_SAMPLER_H
#define QUILL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "candidates.h"
#include "error.h"
#include "grammar.h"
#include "grammar_vocab.h"
#include "rng.h"
#include "tokenizer.h"

/* The processors a chain can name, with their names in chain strings. */
typedef enum {
    SAMPLER_STAGE_LOGIT_BIAS,  /* "logit-bias" */
    SAMPLER_STAGE_BAD_WORDS,   /* "bad-words" */
    SAMPLER_STAGE_PENALTIES,   /* "penalties": repetition, frequency, presence */
    SAMPLER_STAGE_TOP_K,       /* "top-k" */
    SAMPLER_STAGE_TYPICAL_P,   /* "typical-p" */
    SAMPLER_STAGE_TOP_P,       /* "top-p" */
    SAMPLER_STAGE_MIN_P,       /* "min-p" */
    SAMPLER_STAGE_TEMPERATURE, /* "temperature" */
    SAMPLER_STAGE_XTC,         /* "xtc": exclude top choices */
    SAMPLER_STAGE_TOP_N_SIGMA, /* "top-n-sigma" */
    SAMPLER_STAGE_DRY,         /* "dry": don't repeat yourself */
    SAMPLER_STAGE_COUNT
} SamplerStage;

/* A stage's name in chain strings ("top-k"). */
const char *sampler_stage_name(SamplerStage stage);

/* --logit-bias ID:VALUE: `bias` is added to token `token`'s logit. */
typedef struct {
    int token;
    float bias; /* finite, or -INFINITY to ban the token; repeated tokens add up */
} LogitBias;

/* A sequence of token ids (a bad word or phrase, tokenized by the caller). */
typedef struct {
    const int *tokens;
    int n_tokens; /* >= 1 */
} TokenSequence;

/* Every knob of the sampler. Each one has a value that turns it off; a processor that is
 * off costs nothing even when the chain names it. */
typedef struct {
    /* Softmax temperature: logits are divided by it (Ackley, Hinton & Sejnowski 1985).
     * <= 0: greedy decoding, the argmax with ties to the lowest id (never a division by
     * 0); 1: the model's distribution; < 1 sharper; > 1 flatter. */
    float temperature;
    /* Dynamic temperature (kalomaze 2023; llama.cpp's dynatemp): with dynatemp_range > 0
     * the temperature stage uses T = T_low + (T_high - T_low) * (H / ln n)^dynatemp_exponent,
     * T_low/high = temperature -/+ dynatemp_range (T_low at least 0), H the entropy of the
     * n candidates it sees. 0 = off (the default); the exponent defaults to 1. Greedy
     * (temperature <= 0) stays greedy. */
    float dynatemp_range;
    float dynatemp_exponent;
    /* Mirostat (Basu et al. 2021): 0 = off (the default), 1 = Mirostat, 2 = Mirostat 2.0.
     * It replaces the truncating filters: as in llama.cpp, only the chain's logit-bias,
     * bad-words and temperature stages run, then Mirostat's cut by mu (2.0: the candidates
     * with surprise -log2 p above mu go; 1: the top k that a Zipf fit says give an expected
     * surprise of mu stay), a token is drawn, and mu -= mirostat_eta * (its surprise -
     * mirostat_tau). mu starts at 2 * tau (sampler_init, sampler_reset). tau: the target
     * surprise in bits (5); eta: the learning rate (0.1). */
    int mirostat;
    float mirostat_tau;
    float mirostat_eta;
    /* Keep the top_k highest logits (Fan et al. 2018). 0 = off. */
    int top_k;
    /* Nucleus sampling (Holtzman et al. 2019): keep the smallest set of most likely
     * tokens whose probability reaches top_p, at least one. 1.0 = off; 0 keeps only the
     * most likely token. */
    float top_p;
    /* Keep tokens with p >= min_p * p_max (Nguyen et al. 2024). 0 = off; 1 keeps only the
     * tokens tied with the most likely one. */
    float min_p;
    /* Locally typical sampling (Meister et al. 2022): order tokens by |-ln p - H|, H the
     * entropy, keep the smallest such set whose probability reaches typical_p. 1.0 = off. */
    float typical_p;
    /* The fewest candidates top-p, min-p, typical-p and XTC leave (llama.cpp's min_keep;
     * top-k, top-n-sigma and Mirostat take none there either). 0 (the default) and 1 both
     * mean one, the least every filter keeps anyway. */
    int min_keep;
    /* XTC, exclude top choices (Weidmann 2024): with probability xtc_probability per
     * token, when two or more candidates have p >= xtc_threshold, all of them but the
     * least likely are removed. xtc_probability 0 = off (the default), as is
     * xtc_threshold > 0.5; llama.cpp's default threshold is 0.1. */
    float xtc_probability;
    float xtc_threshold;
    /* top-n-sigma (Tang et al. 2024): keep the tokens with logit >= max - top_n_sigma *
     * sigma, sigma the standard deviation of the logits. < 0 = off (the default, -1, as
     * llama.cpp's); 0 keeps only the tokens tied with the most likely one. */
    float top_n_sigma;
    /* Repetition penalty (Keskar et al. 2019, CTRL): each distinct token in the window has
     * its logit divided by the penalty when positive and multiplied by it when negative,
     * once however often it occurs (dividing a negative logit would raise it: the
     * repeated token would become MORE likely). > 1 discourages repeats, < 1 encourages
     * them; 1.0 = off. */
    float repeat_penalty;
    /* OpenAI's penalties: logit -= count * frequency_penalty + (count > 0) *
     * presence_penalty, count = occurrences in the window. 0 = off; negative values
     * encourage repeats. Applied after the repetition penalty. */
    float frequency_penalty;
    float presence_penalty;
    /* The penalty window: the last repeat_last_n tokens of the history. 0 = penalties
     * off, -1 = the whole history. */
    int repeat_last_n;
    /* DRY, "don't repeat yourself" (p-e-w 2024, text-generation-webui PR #5677; llama.cpp's
     * dry sampler): when the text ends with tokens that occurred before, followed there by
     * token t, t would extend a repeat of length n (the tokens matched); if n >=
     * dry_allowed_length, t's logit drops by dry_multiplier * dry_base^(n -
     * dry_allowed_length). A match never reaches back past the latest sequence breaker in
     * the history, and a token that is a whole breaker is never penalized: after a newline
     * or a quote a repeat starts over, so names and formatting may recur. The window is the
     * last dry_penalty_last_n tokens (-1: the whole history, 0: off), prompt included (as
     * llama.cpp's; penalize_prompt is for the penalties stage only). dry_multiplier 0 = off
     * (the default, llama.cpp's); base 1.75 (at least 1), allowed length 2. */
    float dry_multiplier;
    float dry_base;
    int dry_allowed_length;
    int dry_penalty_last_n;
    /* DRY's sequence breakers as token sequences (copied by sampler_init): each a head
     * token, then the tokens that must follow it in the history (none for a token that
     * holds a whole breaker string). sampler_dry_breaker_add makes them from a string. */
    const TokenSequence *dry_breakers;
    int n_dry_breakers;
    /* Whether tokens accepted with is_prompt = true count for the penalties (they always
     * sit in the window and in the history that bad words match). */
    bool penalize_prompt;
    /* Added to logits (copied by sampler_init; may be NULL when n_logit_bias is 0). */
    const LogitBias *logit_bias;
    int n_logit_bias;
    /* Banned sequences (copied by sampler_init). A 1-token sequence bans its token always;
     * a longer one bans its last token when the tokens before it are the most recent
     * tokens of the history (prompt tokens included). Give each spelling that tokenizes
     * differently ("bad" and " bad") as its own sequence. */
    const TokenSequence *bad_words;
    int n_bad_words;
    /* The processors in the order they run (sampler_chain_parse fills it from text). A
     * stage left out does not run; temperature <= 0 still selects greedily. */
    SamplerStage chain[SAMPLER_STAGE_COUNT];
    int n_chain;
    /* Seeds the RNG of the random draw (src/rng.h): any value, 0 included. */
    uint64_t seed;
} SamplerParams;

/* One accepted token. */
typedef struct {
    int token;
    bool is_prompt;
} SamplerToken;

/* How the grammar stage finds the tokens it allows (docs/grammars.md, "Speed"). Both on by
 * default; both off is the plain reference, every candidate's bytes read through the
 * recognizer at every step. Each gives the same token as the reference for the same RNG
 * state (tests/test_sampler.c compares them over many steps and seeds).
 *   survivors_first  runs the stages before the chain's first cut (top-k) without the
 *                    grammar and checks only the highest candidates, in order, until it
 *                    has the k the cut keeps: exactly the cut's list under the grammar,
 *                    found without masking the vocabulary. When that cannot be done
 *                    exactly (see sampler_set_grammar), the whole vocabulary is masked.
 *   trie             masks the whole vocabulary by a walk over its token trie
 *                    (grammar_vocab.h) instead of token by token. */
typedef struct {
    bool survivors_first;
    bool trie;
} SamplerGrammarSpeedups;

/* The vocabulary's bytes and trie, built once by sampler_set_grammar and shared by the
 * sampler's clones (beams), which count themselves in refs. */
typedef struct {
    GrammarVocab vocab;
    int refs;
} SamplerGrammarVocab;

/* The grammar stage's state (sampler_set_grammar): the recognizer, where the generated text
 * stands in the grammar, and the vocabulary as the grammar sees it. */
typedef struct {
    GrammarMatcher matcher;
    SamplerGrammarVocab *shared;
    bool fed;      /* a generated token has moved the matcher since its start */
    bool *allowed; /* n_vocab: the mask of the last whole-vocabulary check */
    SamplerGrammarSpeedups speedups;
    long survivor_steps; /* sampler_sample calls the survivors decided */
    long masked_steps;   /* calls (any path) that masked the whole vocabulary */
} SamplerGrammar;

/* A sampler: its parameters, state and scratch. Fields after `mirostat_mu` are private. */
typedef struct {
    SamplerParams params; /* a copy; logit_bias and bad_words point to the copies below */
    int n_vocab;
    Rng rng;
    float mirostat_mu; /* Mirostat's current bound on the surprise (read only) */
    Rng xtc_rng; /* XTC's coin: its own stream (as in llama.cpp), so that sampler_apply
                    leaves the draw's numbers alone and XTC on or off draws the same r */
    LogitBias *logit_bias;
    TokenSequence *bad_words;
    int *bad_word_tokens;  /* the tokens of every bad word, one after another */
    SamplerToken *history; /* accepted tokens, oldest first; only the last history_keep are
                              kept (-1: all), which is as far back as any processor looks */
    int n_history, history_keep;
    size_t cap_history;
    int *counts; /* n_vocab, all 0 between calls: occurrences in the penalty window */
    int *seen;   /* n_vocab: the distinct tokens of the window */
    int *slot;   /* n_vocab: where each token sits in a list that is not indexed */
    TokenSequence *dry_breakers;
    int *dry_breaker_tokens;      /* the tokens of every breaker, one after another */
    unsigned char *dry_breaker_kind; /* n_vocab: DRY_HEAD | DRY_WHOLE bits, see sampler.c */
    int *dry_match; /* the longest repeat ending at each place of DRY's window (cap_dry) */
    size_t cap_dry;
    CandidateList scratch; /* the list sampler_sample works in */
    SamplerGrammar *grammar; /* NULL: no grammar stage (sampler_set_grammar) */
} Sampler;

/* The candidate list as it stands after each stage of the chain, as data: what --show-probs
 * prints and a playground would draw. Each step keeps the SAMPLER_TRACE_TOP most likely
 * candidates, most likely first, with p their probability under the softmax of the list at
 * that point (after the temperature stage: the tempered one); the last step, "chain", is
 * the list the selector draws from. */
enum { SAMPLER_TRACE_TOP = 8 };

typedef struct {
    const char *stage;  /* a stage's name (sampler_stage_name), or "chain" */
    int n;              /* the candidates left (before the end, banned ones included) */
    Candidate top[SAMPLER_TRACE_TOP]; /* banned ones left out */
    int n_top;
} SamplerTraceStep;

typedef struct {
    SamplerTraceStep steps[SAMPLER_STAGE_COUNT + 1]; /* each stage that ran, then
                                                        "mirostat" (when on), then "chain" */
    int n_steps;
    int chosen;         /* the token selected */
} SamplerTrace;

/* The documented defaults, llama.cpp's (common_params_sampling): temperature 0.8,
 * top-k 40, top-p 0.95, min-p 0.05, typical-p 1 (off), XTC probability 0 (off) with
 * threshold 0.1, top-n-sigma -1 (off), dynamic temperature range 0 (off) with exponent 1,
 * mirostat 0 (off) with tau 5 and eta 0.1, repeat penalty 1 (off) over the last 64 tokens,
 * frequency and presence 0 (off), prompt penalized (llama.cpp's CLI accepts the prompt
 * into the window), DRY multiplier 0 (off) with base 1.75, allowed length 2 and the whole
 * history (-1) as its window, min_keep 0, no logit bias, no bad words, no DRY breakers
 * (they are tokens: sampler_dry_breaker_add makes SAMPLER_DRY_BREAKERS' from a
 * tokenizer), the default chain (above), seed 0. */
void sampler_params_default(SamplerParams *p);

/* Sets the strategy's numbers (temperature, top-k, top-p, min-p, typical-p, penalties)
 * to a named preset and leaves the seed, chain, logit bias and bad words alone:
 *   deterministic  greedy decoding, every filter and penalty off: the same text on every
 *                  run and machine, for tests and comparisons with llama.cpp --temp 0
 *   balanced       the defaults plus a mild repetition penalty (1.1 over the last 64
 *                  tokens, llama.cpp's default until 2024): small models loop without it
 *   creative       temperature 1.2 after min-p 0.1 and nothing else: min-p's cut scales
 *                  with the model's confidence, so a hot temperature adds variety without
 *                  letting in the long tail (the min-p paper's recommendation)
 * Unknown names fail with the list of known ones. */
int sampler_preset(const char *name, SamplerParams *p, Error *err);

/* Parses a chain such as "penalties,top-k,top-p,min-p,temperature" (stage names from
 * SamplerStage, separated by commas, spaces around them ignored) into p->chain. Each
 * stage at most once. On error p is unchanged and err names the unknown or repeated
 * item. */
int sampler_chain_parse(const char *text, SamplerParams *p, Error *err);

/* Writes the chain with each stage's settings, for --verbose, e.g.
 * "top-k 40 -> top-p 0.95 -> min-p off -> temperature 0.8 -> random draw (seed 42)";
 * cut short (always NUL-terminated) when cap is too small. */
void sampler_chain_describe(const SamplerParams *p, char *buf, size_t cap);

/* Parses a --logit-bias value "ID:VALUE", e.g. "13:-inf" or "42:+2.5" (VALUE finite or
 * -inf). The id's range is checked by sampler_init, which knows the vocabulary. */
int sampler_logit_bias_parse(const char *text, LogitBias *out, Error *err);

/* A bad word (or phrase) as banned sequences, appended to words[0..*n) (malloc'd, grown by
 * one per spelling): word[0..len) tokenized with tok as it stands inside a text and after a
 * space, the two spellings that tokenize differently ("bad" glued to a word or at the
 * start, " bad" after a space). A spelling already in the list, or one with no tokens, is
 * not added. The list (*n entries, whatever the status) is freed with
 * sampler_bad_words_free. */
int sampler_bad_word_add(TokenSequence **words, int *n, const Tokenizer *tok, const char *word,
                         size_t len, Error *err);
void sampler_bad_words_free(TokenSequence *words, int n);

/* DRY's default sequence breakers, llama.cpp's: newline, colon, double quote, asterisk. */
enum { SAMPLER_DRY_N_BREAKERS = 4, SAMPLER_DRY_BREAKER_MAX_BYTES = 40 };
extern const char *const SAMPLER_DRY_BREAKERS[SAMPLER_DRY_N_BREAKERS];

/* A DRY sequence breaker text[0..len) (1 to SAMPLER_DRY_BREAKER_MAX_BYTES bytes) as token
 * sequences, appended to breakers[0..*n) as sampler_bad_word_add appends (free them with
 * sampler_bad_words_free), found as llama.cpp finds them: every token whose bytes hold the
 * whole text is a breaker alone; every token whose bytes end with a proper start of the
 * text is a head, followed by the rest of the text tokenized (as inside a text, at most
 * 20 tokens). A scan of the whole vocabulary. */
int sampler_dry_breaker_add(TokenSequence **breakers, int *n, const Tokenizer *tok,
                            const char *text, size_t len, Error *err);

/* Checks p (every number in its range, token ids below n_vocab) and sets up a sampler
 * with an empty history and the RNG seeded by p->seed. p's logit bias and bad words are
 * copied. */
int sampler_init(Sampler *s, const SamplerParams *p, int n_vocab, Error *err);
void sampler_free(Sampler *s); /* NULL-safe */

/* dst becomes an independent copy of src: parameters, history and RNG state (for beam
 * search, where each beam goes on from the same point), and a grammar's state (its
 * vocabulary's trie shared, read-only, by src and its clones, which must live in one
 * thread). dst must not be initialised. */
int sampler_clone(Sampler *dst, const Sampler *src, Error *err);

/* Forgets the history (a new conversation), takes a grammar back to its start and sets
 * Mirostat's mu back to 2 * tau; the RNG goes on, so the next text differs
 * from the first one (a fresh sampler_init repeats it). */
void sampler_reset(Sampler *s);

/* Turns on the grammar stage: before the chain, a candidate survives only when its token's
 * bytes keep the generated text inside g (grammar_matcher_allows); the end-of-text token
 * survives only when the text is a complete match, and other control tokens never do. When
 * the text is complete and the grammar can take nothing more, or when no token survives,
 * the end-of-text token is the only candidate left: generation ends as "eos" (in the
 * second case with a text the grammar does not accept whole). sampler_accept of a generated
 * token feeds its bytes to the recognizer (one the grammar refuses leaves only the end of
 * text allowed, until the next prompt); a prompt token after generated ones starts the
 * grammar again: each prompt (a chat turn, a REPL line) is followed by a text of its own
 * that the grammar must accept. g and tok must outlive s.
 *
 * sampler_sample is fast where it can be exact (SamplerGrammarSpeedups): checking the
 * survivors of top-k first needs top-k to be the chain's first stage that looks at more
 * than one token (only logit-bias, bad-words, penalties and a fixed temperature before it)
 * and Mirostat off; greedy decoding with no such stage at all checks candidates in order
 * until the first allowed one. Otherwise, and in sampler_apply and the traced sample, the
 * whole vocabulary is masked (by the trie). */
int sampler_set_grammar(Sampler *s, const Grammar *g, const Tokenizer *tok, Error *err);

/* Chooses how the grammar stage finds its tokens (all on after sampler_set_grammar); for
 * tests and measurements. A sampler without a grammar is unchanged. */
void sampler_grammar_speedups(Sampler *s, SamplerGrammarSpeedups speedups);

/* dst (from sampler_init, with no grammar) gets src's grammar stage at the grammar's start,
 * its vocabulary shared as sampler_clone shares it: a sample of its own under the same
 * grammar. Nothing happens when src has no grammar. */
int sampler_grammar_share(Sampler *dst, const Sampler *src, Error *err);

/* Appends a token to the history: every prompt token (is_prompt = true) and every
 * generated token. Fails on an id outside the vocabulary or out of memory. */
int sampler_accept(Sampler *s, int token, bool is_prompt, Error *err);

/* Runs every processor of the chain on one row of n_vocab logits and leaves in out (a
 * list from candidates_init with cap >= n_vocab) the surviving candidates, banned tokens
 * removed, sorted (most likely first), with probabilities p that sum to 1: the softmax of
 * the logits after the whole chain, so at temperature t > 0 the distribution the random
 * draw uses, and at t <= 0 the untempered one (ln p is then the log-probability under
 * penalties, bias and bans, as beam search needs). Uses no randomness but XTC's coin,
 * which has its own stream. For beam search over the full distribution, use a chain
 * without the truncating filters (e.g. "logit-bias,bad-words,penalties"): its sort is
 * then over the whole vocabulary. */
void sampler_apply(Sampler *s, const float *logits, CandidateList *out);

/* Picks a token from candidates: the argmax (ties to the lowest id) when temperature <= 0,
 * otherwise a draw with the sampler's RNG, walking the list in its order; under Mirostat
 * the token's surprise then updates mu. On a list from
 * sampler_apply this is the token sampler_sample would return for the same RNG state. */
int sampler_select(Sampler *s, const CandidateList *c);

/* sampler_apply + sampler_select in the sampler's own list, without sorting more of it
 * than the draw needs. Does not accept the token: call sampler_accept. */
int sampler_sample(Sampler *s, const float *logits);

/* sampler_sample that also records the list after each stage into trace: the same token
 * for the same RNG state, at the cost of a full sort of the surviving candidates. */
int sampler_sample_traced(Sampler *s, const float *logits, SamplerTrace *trace);

#endif
