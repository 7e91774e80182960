/* A generation session: a model, its KV cache and a sampler that live across turns. `quill
 * generate` feeds it one prompt and continues once (or samples several continuations side
 * by side); the REPL feeds it each new line or chat turn and continues after each, so
 * only the new text goes through the model and the penalties see the whole conversation.
 *
 * One continuation, token by token:
 *   logits of the last position -> sampler chain -> token (or the end: EOS, max tokens)
 *   -> its bytes into a TextStream (stop strings, whole UTF-8 characters) -> the caller's
 *      callback, with the text decided so far
 *   -> the token through the model at the next position (or, when the context is full,
 *      the older half of what follows the first n_keep positions forgotten and the rest
 *      moved down: context_shift, infer_seq_truncate).
 *
 * The session prints nothing: what a caller shows (the text, the candidates of each step,
 * timings) it reads from the callback, the Completion and SessionStats. */
#ifndef QUILL_SESSION_H
#define QUILL_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "infer.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

typedef enum {
    FINISH_LENGTH,     /* max_tokens generated */
    FINISH_EOS,        /* the model ended the text */
    FINISH_STOP,       /* a stop string */
    FINISH_CONTEXT,    /* the context is full (and context_shift is off) */
    FINISH_CANCELLED,  /* the cancel flag was set (Ctrl-C, the callback, another thread) */
} FinishReason;

const char *finish_reason_name(FinishReason r);

/* One generated continuation. */
typedef struct {
    char *text;        /* the bytes written (stop string excluded), NUL-terminated */
    size_t len, cap;
    int *tokens;       /* the tokens generated (a stop string's included) */
    int n_tokens;
    size_t cap_tokens;
    FinishReason finish;
    uint64_t seed;
    double score;      /* beam search: the beam's length-normalised log-probability */
    uint64_t missed;   /* beam search with words that must appear: bit i set when word i
                          is not in the text */
} Completion;

void completion_free(Completion *c);
int completion_add_token(Completion *c, int token, Error *err);
int completion_add_text(Completion *c, const char *bytes, size_t n, Error *err);

/* Times of the session so far, for --verbose. */
typedef struct {
    int prompt_tokens;
    double prompt_seconds;
    int generated_tokens;
    double generate_seconds;
    double first_token_seconds; /* from the start of the last prompt to its first token */
    int search_steps;           /* beam search's steps (0: none ran); its tokens run through
                                   the model, over all beams, count as generated */
} SessionStats;

/* What a session does, apart from the model: the cache's shape, when a continuation ends,
 * and the sampler. */
typedef struct {
    int n_seq;              /* cache slots: 1, or one per sample or beam */
    int n_ctx;              /* positions each slot holds */
    uint32_t cache_type;    /* the cache's GgmlType (loader.h: kv_cache_type_default) */
    int max_tokens;         /* tokens a continuation generates at most */
    char *const *stops;     /* borrowed: stop strings (each non-empty), n_stops of them */
    int n_stops;
    bool ignore_eos;        /* go on past the end-of-text token */
    bool context_shift;     /* when the cache is full, forget the older half of what
                               follows the first n_keep positions and go on */
    int n_keep;             /* positions a context shift keeps at the start (a system
                               prompt); 0 for the CLI */
    bool logprobs;          /* give each token's log-probability (a full sort per token) */
    SamplerParams sampler;  /* copied (lists too); sampler.seed seeds the draw */
    bool trace;             /* record each step's candidates after every stage (what
                               --show-probs shows): a full sort of the list per token */
} SessionParams;

/* 1 slot of 512 positions in F32, 256 tokens, no stop strings, the default sampler. */
void session_params_default(SessionParams *p);

typedef struct {
    const Model *model;
    const Tokenizer *tok;
    SessionParams params;  /* its sampler's lists point into the sampler's copies */
    InferContext *ctx;     /* the cache: the session's own (session_init) or borrowed */
    int seq;               /* the sequence of ctx that feeds and continuations extend */
    Sampler *sampler;      /* seq's sampler, own or borrowed; its history is the session's */
    SamplerToken *history; /* seq's tokens since the session began (the cache holds the
                              part a context shift kept) */
    int n_history;
    size_t cap_history;
    atomic_bool *cancel;   /* when set (by a signal handler, a callback or another thread),
                              the continuation ends with FINISH_CANCELLED; may be NULL */
    double prompt_start;   /* when the last feed began (time to first token) */
    SessionStats stats;
    InferContext own_ctx;  /* what session_init allocates; unused when borrowing */
    Sampler own_sampler;
    /* classifier-free guidance (session_guide): guide_seq, the unconditional side, decodes
     * beside seq, the conditional one, and the sampler reads the two mixed */
    bool guided;
    int guide_seq;
    float guide_scale;
    float *guided_logits;  /* (V) the mixed row the sampler reads */
} Session;

/* A session over p->n_seq cache slots of p->n_ctx positions (n_seq > 1 for samples and
 * beams), with the sampler built from p->sampler. */
int session_init(Session *s, const Model *m, const Tokenizer *tok, const SessionParams *p,
                 Error *err);
/* A session over what the caller owns (the public API's context and sampler): sequence seq
 * of ctx, and sampler, both borrowed for the session's life; the shape fields of p (n_seq,
 * n_ctx, cache_type) are taken from ctx. session_free then frees only the history. */
int session_borrow(Session *s, const Model *m, const Tokenizer *tok, InferContext *ctx,
                   int seq, Sampler *sampler, const SessionParams *p, Error *err);
void session_free(Session *s);

/* New settings for the next continuations (the REPL's /set): all of p but the cache's shape
 * (n_seq, n_ctx, cache_type), which stays. The sampler is rebuilt and the history replayed
 * into it. On error the session is unchanged. */
int session_update(Session *s, const SessionParams *p, Error *err);
/* A sampler from params, with the session's sampler's grammar (sampler_grammar_share), and
 * the session's history replayed into it (a sample's own seed, a beam's chain). */
int session_sampler_init(const Session *s, const SamplerParams *params, Sampler *out,
                         Error *err);

/* Forgets the conversation: the cache and the sampler's history (the REPL's /reset). */
void session_reset(Session *s);

/* Runs tokens (a prompt, or a new turn) through the model after what the sequence holds, and
 * adds them to the history as prompt. A text that does not fit in the context is an error
 * that changes nothing. */
int session_feed(Session *s, const int *tokens, int n, Error *err);

/* ---- classifier-free guidance (Sanchez et al. 2023, docs/sampling.md) ----
 * Two sequences of one context decode side by side, in one forward pass per step: the
 * conditional one (seq: the guidance text, then the prompt) and the unconditional one
 * (guide_seq: the prompt alone, or after a negative prompt). Both get every generated
 * token; the sampler reads uncond + S (cond - uncond), which S = 1 makes the conditional
 * row and S = 0 the unconditional one. The sampler's history is the conditional side's. */

/* out[i] = uncond[i] + scale (cond[i] - uncond[i]), computed as the interpolation
 * (1 - scale) uncond[i] + scale cond[i], which is exactly cond at scale 1 and exactly
 * uncond at scale 0 (the first form rounds cond - uncond and can miss cond by an ulp). */
void guidance_mix(const float *cond, const float *uncond, float scale, float *out, int n);

/* Guidance from now on: sequence uncond_seq of the session's context is the unconditional
 * side, S = scale. Feed both sides with session_feed_guided. */
int session_guide(Session *s, int uncond_seq, float scale, Error *err);

/* The two sides' new tokens in one batch: cond after what seq holds (into the history, as
 * prompt), uncond after what guide_seq holds; each side needs at least one. The first
 * logits row is then the conditional side's, the second the unconditional one's. */
int session_feed_guided(Session *s, const int *cond, int n_cond, const int *uncond,
                        int n_uncond, Error *err);

/* Whether a chosen token ends the text: the end-of-text token, or a separate end-of-turn
 * token where the vocabulary has one; never with ignore_eos. */
bool session_token_ends_text(const Session *s, int token);

/* What session_continue tells its caller about each token it chooses. */
typedef struct {
    int token;            /* the token chosen: generated, or the end-of-text token (the
                             last call then); -1 on the call after the last token, which
                             carries the text held back until the end */
    const char *piece;    /* the token's bytes (n_piece may be 0: an end token, or -1) */
    size_t n_piece;
    const char *text;     /* the text this token decided: whole UTF-8 characters, a stop
                             string and what could still become one held back; may be
                             empty (n_text 0). The pieces of text, one after another, are
                             the Completion's text. */
    size_t n_text;
    const SamplerTrace *trace; /* the candidates after each stage (SessionParams.trace), or
                                  NULL */
    float logprob;        /* ln p of the token in the sampler's final distribution
                             (SessionParams.logprobs), else NAN */
} SessionToken;

/* Called for each token; it may set the session's cancel flag to end the continuation. */
typedef void SessionCallback(void *ctx, const SessionToken *t);

/* Generates one continuation of the session's sequence, telling on_token (may be NULL) of
 * each token as it is chosen, and recording it in c. The last token is fed back, so a following
 * session_feed continues after it; a stop string's tokens stay in the history, as they
 * were generated. */
int session_continue(Session *s, SessionCallback *on_token, void *ctx, Completion *c,
                     Error *err);

/* n continuations of sequence 0 side by side in sequences 0..n-1, one forward pass per
 * step for all of them; sample i uses seed params.sampler.seed + i. */
int session_sample_many(Session *s, int n, Completion *out, Error *err);

#endif
