/* A generation session: a model, its KV cache and a sampler that live across turns. `quill
 * generate` feeds it one prompt and continues once (or samples several continuations side
 * by side); the REPL feeds it each new line or chat turn and continues after each, so
 * only the new text goes through the model and the penalties see the whole conversation.
 *
 * One continuation, token by token:
 *   logits of the last position -> sampler chain -> token (or the end: EOS, max tokens)
 *   -> its bytes into a TextStream (stop strings, whole UTF-8 characters) -> printed
 *   -> the token through the model at the next position (or, when the context is full,
 *      the last half of the history run again from position 0: --context-shift). */
#ifndef QUILL_GENERATE_SESSION_H
#define QUILL_GENERATE_SESSION_H

#include <signal.h>
#include <stdio.h>

#include "infer.h"
#include "model.h"
#include "options.h"
#include "sampler.h"
#include "tokenizer.h"

typedef enum {
    FINISH_LENGTH,     /* max_tokens generated */
    FINISH_EOS,        /* the model ended the text */
    FINISH_STOP,       /* a stop string */
    FINISH_CONTEXT,    /* the context is full (and --context-shift is off) */
    FINISH_INTERRUPT,  /* Ctrl-C */
} FinishReason;

const char *finish_reason_name(FinishReason r);

/* One generated continuation. */
typedef struct {
    char *text;        /* the bytes written (stop string excluded), NUL-terminated */
    size_t len, cap;
    int *tokens;       /* the tokens generated (a stop string's included) */
    int n_tokens, cap_tokens;
    FinishReason finish;
    uint64_t seed;
    double score;      /* beam search: the beam's length-normalised log-probability */
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

typedef struct {
    const Model *model;
    const Tokenizer *tok;
    GenerateOptions *o;
    InferContext ctx;
    int n_ctx;
    SamplerToken *history; /* sequence 0's tokens (its cache holds their last n_ctx) */
    int n_history, cap_history;
    SamplerParams params;  /* the sampler's parameters (owned lists) */
    Sampler sampler;       /* sequence 0's; its history is the session's */
    uint64_t seed;
    volatile sig_atomic_t *interrupted; /* set by a Ctrl-C handler, or NULL */
    double prompt_start;   /* when the last feed began (time to first token) */
    SessionStats stats;
} Session;

/* A session over n_seq cache slots of n_ctx positions (n_seq > 1 for samples and beams),
 * with the sampler built from o; the cache has o->cache_type, which is set to the model's
 * default (kv_cache_type_default) when it is NULL. */
int session_init(Session *s, const Model *m, const Tokenizer *tok, GenerateOptions *o,
                 uint64_t seed, int n_seq, int n_ctx, Error *err);
void session_free(Session *s);

/* Rebuilds the sampler after o changed (the REPL's /set); the history is kept. */
int session_update_sampler(Session *s, Error *err);
/* Forgets the conversation: the cache and the sampler's history (the REPL's /reset). */
void session_reset(Session *s);

/* Runs tokens (a prompt, or a new turn) through the model after what sequence 0 holds, and
 * adds them to the history as prompt. A text that does not fit in the context is an error
 * that changes nothing. */
int session_feed(Session *s, const int *tokens, int n, Error *err);

/* Whether a chosen token ends the text: the end-of-text token, or a separate end-of-turn
 * token where the vocabulary has one; never with --ignore-eos. */
bool session_token_ends_text(const Session *s, int token);

/* Generates one continuation of sequence 0, streaming its text to out (may be NULL) and
 * recording it in c. The last token is fed back, so a following session_feed continues
 * after it; a stop string's tokens stay in the history, as they were generated. */
int session_continue(Session *s, FILE *out, Completion *c, Error *err);

/* n continuations of sequence 0 side by side, one forward pass per step for all of them;
 * sample i uses seed s->seed + i. Nothing is printed. */
int session_sample_many(Session *s, int n, Completion *out, Error *err);

/* Prints the --verbose report of the session's timings to stderr. */
void session_report(const Session *s);

#endif
