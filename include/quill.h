/* quill.h: the public C API of libquill, the whole engine as a library.
 *
 * One header, C11, nothing else from quill included; every name starts with quill_. The
 * command-line tool (`quill generate`, the REPL), the notebooks, the server and the Python
 * and Node.js bindings are clients of this API. It follows llama.cpp's llama.h in spirit,
 * in quill's own names. A whole program, from file to text:
 *
 *   quill_model *m = quill_model_load("model.gguf", NULL);          the weights, mapped
 *   quill_context *c = quill_context_new(m, NULL);                  a KV cache
 *   quill_sampler *s = quill_sampler_new(m, NULL);                  the sampler chain
 *   quill_generate(c, s, "Once upon a time", &params, &finish);      prompt in, tokens out
 *
 * or, step by step (what quill_generate does inside):
 *
 *   n = quill_tokenize(m, text, len, true, false, ids, cap)         text -> token ids
 *   quill_batch_add(&b, ids[i], i, 0, i == n - 1) for each i         the prompt, sequence 0
 *   quill_decode(c, &b)                                             one forward pass
 *   loop: next = quill_sampler_sample(s, quill_logits(c, row))      choose a token
 *         quill_sampler_accept(s, next, false)                       so penalties see it
 *         quill_token_to_piece(m, next, buf, cap)                    its text
 *         quill_batch_clear(&b); quill_batch_add(&b, next, pos++, 0, true); quill_decode
 *
 * Conventions:
 *   - Handles are opaque. Parameter structs come from a quill_*_default() function and are
 *     then changed field by field, so that a field added later breaks no caller; a NULL
 *     parameter pointer means the defaults.
 *   - A fallible call returns QUILL_OK (0) or QUILL_ERROR (-1), or NULL for a constructor,
 *     and leaves one line saying what went wrong in quill_last_error(). The library never
 *     prints, never exits and never re-executes the process.
 *   - Calls that write text or tokens into a caller's buffer follow snprintf: they return
 *     how many bytes (or tokens) the whole result has, write at most `cap` of them (text
 *     NUL-terminated when cap > 0), and the caller calls again with a larger buffer when
 *     the result is larger than cap. They return -1 on error.
 *
 * Threads: a model is read-only after loading and may be shared by several contexts used
 * on several threads at once. A context, a sampler and a batch are used by one thread at a
 * time. quill_last_error() is per thread. */
#ifndef QUILL_H
#define QUILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: only what this header marks is exported. */
#if defined(__GNUC__)
#define QUILL_API __attribute__((visibility("default")))
#else
#define QUILL_API
#endif

#define QUILL_VERSION_MAJOR 0
#define QUILL_VERSION_MINOR 1
#define QUILL_VERSION_PATCH 0

typedef enum {
    QUILL_OK = 0,
    QUILL_ERROR = -1,
} quill_status;

typedef int32_t quill_token;

typedef struct quill_model quill_model;
typedef struct quill_context quill_context;
typedef struct quill_sampler quill_sampler;
typedef struct quill_lora quill_lora;

/* ---- the library -------------------------------------------------------------------- */

/* "0.1.0": the version of the library that is loaded (the macros above are the header's). */
QUILL_API const char *quill_version(void);
/* The CPU features the kernels use and the matrix library in use, e.g.
 * "AVX-512F AVX-512BW AVX2 FMA F16C; OpenBLAS 0.3.21 (SkylakeX kernel)". */
QUILL_API const char *quill_cpu_features(void);
/* What the last failed call on this thread said, or "" when none failed. */
QUILL_API const char *quill_last_error(void);

/* What kind of failure the thread's last error was, for a program (a binding) that answers
 * each kind its own way: a missing or damaged file, a bad argument, a context that cannot
 * take the request, no memory. */
typedef enum {
    QUILL_ERROR_NONE = 0,      /* nothing has failed on this thread */
    QUILL_ERROR_FILE = 1,      /* a file missing, unreadable, or not one quill can use */
    QUILL_ERROR_PARAMETER = 2, /* an argument NULL, out of range or of the wrong kind */
    QUILL_ERROR_CONTEXT = 3,   /* the context cannot take it: a text longer than it holds,
                                  positions out of order, an unknown sequence */
    QUILL_ERROR_MEMORY = 4,    /* out of memory (a cache larger than the machine's) */
} quill_error_kind;

QUILL_API quill_error_kind quill_last_error_kind(void);

/* ---- models ------------------------------------------------------------------------- */

typedef struct {
    int n_threads; /* threads its contexts compute on unless they say otherwise; 0: every
                      core */
    bool use_mmap; /* true (default): the weights stay in the mapped file and pages are read
                      as they are first touched; false: every page is read in at load time,
                      so the first tokens do not wait for the disk */
    bool vocab_only; /* load the tokenizer and metadata alone (llama.cpp's ggml-vocab-*.gguf
                        files have no weights): tokens and text work, contexts do not */
} quill_model_params;

QUILL_API quill_model_params quill_model_params_default(void);
/* A llama-family GGUF file (any type quill runs: F32, F16, BF16, Q8_0, Q4_0 ... Q6_K), or a
 * `quill train` run directory (its model.gguf). NULL on error. */
QUILL_API quill_model *quill_model_load(const char *path, const quill_model_params *p);
QUILL_API void quill_model_free(quill_model *m); /* NULL-safe; free its contexts first */

/* The model's metadata. */
QUILL_API const char *quill_model_architecture(const quill_model *m); /* "llama" */
QUILL_API const char *quill_model_name(const quill_model *m);         /* general.name or "" */
QUILL_API int quill_model_vocab_size(const quill_model *m);
QUILL_API int quill_model_context_length(const quill_model *m); /* positions it was trained on */
QUILL_API int quill_model_embedding_size(const quill_model *m); /* the residual width */
QUILL_API int quill_model_layers(const quill_model *m);
QUILL_API uint64_t quill_model_parameter_count(const quill_model *m);
/* The Jinja source of tokenizer.chat_template, or NULL when the file has none. */
QUILL_API const char *quill_model_chat_template(const quill_model *m);
/* One line: architecture, size, weight type, vocabulary and context, for a log. */
QUILL_API int quill_model_describe(const quill_model *m, char *buf, size_t cap);

/* ---- tokens and text ---------------------------------------------------------------- */

/* The ids of text[0..len). add_special: a bos token first where the model wants one;
 * parse_special: control-token text such as "<|im_start|>" becomes its token (for chat
 * templates) instead of being spelled out. Returns the number of tokens; writes at most
 * cap of them. */
QUILL_API int quill_tokenize(const quill_model *m, const char *text, size_t len,
                             bool add_special, bool parse_special, quill_token *tokens, int cap);
/* The bytes one token stands for (control tokens give their text, such as "</s>"). May be
 * part of a UTF-8 character. Returns the byte count (snprintf convention). */
QUILL_API int quill_token_to_piece(const quill_model *m, quill_token token, char *buf,
                                   size_t cap);
/* The token's own spelling in the vocabulary, as the file stores it (SentencePiece's "▁"
 * for a space and "<0x0A>" for a byte, GPT-2's "Ġ"): what a tokenizer listing shows, not
 * the text. NULL for a token outside the vocabulary. Valid as long as the model. */
QUILL_API const char *quill_token_text(const quill_model *m, quill_token token);
/* The text of tokens[0..n): their bytes joined, as the tokenizer decodes (a SentencePiece
 * leading space removed after bos). Returns the byte count (snprintf convention). */
QUILL_API int quill_detokenize(const quill_model *m, const quill_token *tokens, int n,
                               char *buf, size_t cap);
/* Special tokens, -1 where the vocabulary has none. */
QUILL_API quill_token quill_token_bos(const quill_model *m);
QUILL_API quill_token quill_token_eos(const quill_model *m);
QUILL_API quill_token quill_token_eot(const quill_model *m); /* end of a chat turn */
/* True for a token that ends a text: eos, or eot where the vocabulary has one. */
QUILL_API bool quill_token_is_end(const quill_model *m, quill_token token);
/* True for a token that stands for no text: a control token (bos, eos, "<|im_start|>") or
 * the unknown token. quill_token_to_piece gives its name; a generation writes nothing for
 * it (quill_token_event's piece is empty). */
QUILL_API bool quill_token_is_control(const quill_model *m, quill_token token);

/* One message of a conversation: role "system", "user" or "assistant". */
typedef struct {
    const char *role;
    const char *content;
} quill_chat_message;

/* The conversation in the model's chat format (its template's family; `template_name`
 * overrides it: "chatml", "llama2", "llama3", "zephyr", "mistral", "gemma", "phi3"; NULL:
 * the model's own). add_generation_prompt opens the assistant's turn at the end. Tokenize
 * the result with parse_special = true. Returns the byte count (snprintf convention). */
QUILL_API int quill_chat_format(const quill_model *m, const char *template_name,
                                const quill_chat_message *msgs, int n,
                                bool add_generation_prompt, char *buf, size_t cap);

/* ---- contexts: the KV cache and the forward pass ------------------------------------ */

typedef enum {
    QUILL_CACHE_DEFAULT = 0, /* the file's own precision: F16 for F16/BF16/quantized
                                weights, F32 for F32 weights (llama.cpp's default is F16) */
    QUILL_CACHE_F32,
    QUILL_CACHE_F16,
    QUILL_CACHE_Q8_0,        /* ~3.8x smaller than F32; needs a head size divisible by 32 */
} quill_cache_type;

typedef struct {
    int n_ctx;     /* positions each sequence holds; 0: the model's context length */
    int n_seq;     /* independent sequences (cache slots); default 1 */
    int n_batch;   /* tokens one forward pass takes at most; 0: 512 */
    int n_threads; /* 0: the model's n_threads */
    quill_cache_type cache_type;
} quill_context_params;

QUILL_API quill_context_params quill_context_params_default(void);
/* NULL on error, e.g. a cache larger than the machine's available memory (the message
 * gives the sizes). */
QUILL_API quill_context *quill_context_new(quill_model *m, const quill_context_params *p);
QUILL_API void quill_context_free(quill_context *c); /* NULL-safe */
QUILL_API int quill_context_n_ctx(const quill_context *c);
QUILL_API int quill_context_n_seq(const quill_context *c);
/* One line on the KV cache, for a log: "KV cache 21120 bytes = 0.02 MB (f16, 33
 * positions)" (per sequence when there are several). Byte count (snprintf convention). */
QUILL_API int quill_context_describe(const quill_context *c, char *buf, size_t cap);

/* What quill_generate has done on a context since it was made (llama.cpp's
 * llama_perf_context): prompt tokens decoded and generated ones, and their times. */
typedef struct {
    int n_prompt_tokens;
    double prompt_seconds;
    int n_generated;            /* tokens generated (an end-of-text token that finished a
                                   text is not counted) */
    double generate_seconds;
    double first_token_seconds; /* the last quill_generate's: from its prompt's start to the
                                   first token chosen */
} quill_perf;

QUILL_API quill_perf quill_context_perf(const quill_context *c);

/* A batch: rows of (token, position, sequence, whether its logits are wanted), decoded in
 * one forward pass that reads the weights once for all rows. quill keeps each sequence's
 * positions contiguous, so the rows of one sequence come in order and each row's position
 * is the next one of its sequence: quill_seq_length() plus the rows of that sequence
 * before it in the batch. Sequences may be at different positions, and a prompt of one
 * may share the pass with single decoding steps of others. */
typedef struct {
    int n_tokens;
    int capacity;
    quill_token *token;
    int32_t *pos;
    int32_t *seq;
    int8_t *logits; /* 1: this row's logits are wanted (quill_logits) */
} quill_batch;

/* A batch with room for `capacity` rows; all arrays NULL on failure. */
QUILL_API quill_batch quill_batch_new(int capacity);
QUILL_API void quill_batch_free(quill_batch *b);
QUILL_API void quill_batch_clear(quill_batch *b);
/* Appends one row; QUILL_ERROR when the batch is full. */
QUILL_API int quill_batch_add(quill_batch *b, quill_token token, int pos, int seq, bool logits);

/* Runs the batch through the model: the rows' keys and values go into their sequences'
 * cache. An error (a position out of order, an unknown sequence, a full context) changes
 * nothing. */
QUILL_API int quill_decode(quill_context *c, const quill_batch *b);
/* The logits after row `row` of the last batch (one that asked for them): vocab_size
 * floats, valid until the next decode; NULL for a row that did not ask. */
QUILL_API const float *quill_logits(const quill_context *c, int row);

/* The sequences' caches. */
QUILL_API int quill_seq_length(const quill_context *c, int seq);
/* The tokens sequence seq holds, oldest first (count returned, at most cap written). */
QUILL_API int quill_seq_tokens(const quill_context *c, int seq, quill_token *out, int cap);
QUILL_API int quill_seq_clear(quill_context *c, int seq);
/* dst becomes a copy of src (a shared prompt, a beam that branches). */
QUILL_API int quill_seq_copy(quill_context *c, int src, int dst);
/* Forgets positions [p0, p1) of seq (p1 < 0: to the end). Positions after p1 move down to
 * p0 and their keys are rotated to their new positions (RoPE is a rotation by an angle
 * proportional to the position, so moving a key is one more rotation). This is
 * llama.cpp's seq_rm followed by seq_add. */
QUILL_API int quill_seq_truncate(quill_context *c, int seq, int p0, int p1);
/* The context shift of a long generation: keeps the first n_keep positions, forgets the
 * n_discard after them and moves the rest down (quill_seq_truncate(c, seq, n_keep,
 * n_keep + n_discard)), so that generation goes on without running the text again. */
QUILL_API int quill_seq_shift(quill_context *c, int seq, int n_keep, int n_discard);

/* ---- embeddings --------------------------------------------------------------------- */

typedef enum {
    QUILL_POOL_MEAN, /* the mean of every token's final hidden state */
    QUILL_POOL_LAST, /* the last token's (what a causal model has seen all of the text at) */
} quill_pooling;

/* The embedding of tokens[0..n), n <= the context's n_ctx: runs them through sequence seq
 * from an empty cache (seq is cleared first and holds them afterwards) and writes
 * quill_model_embedding_size() floats to out: the final hidden states (after the output
 * norm), pooled, and scaled to length 1 when normalize is true. */
QUILL_API int quill_embed(quill_context *c, int seq, const quill_token *tokens, int n,
                          quill_pooling pooling, bool normalize, float *out);

/* ---- the sampler chain -------------------------------------------------------------- */

typedef struct {
    quill_token token;
    float bias; /* added to the logit; -INFINITY bans the token */
} quill_logit_bias;

/* Every knob; each has a value that turns it off. docs/sampling.md has the formulas. */
typedef struct {
    float temperature;       /* <= 0: greedy; default 0.8 */
    int top_k;               /* 0: off; default 40 */
    float top_p;             /* 1: off; default 0.95 */
    float min_p;             /* 0: off; default 0.05 */
    float typical_p;         /* 1: off (default) */
    float repeat_penalty;    /* 1: off (default) */
    float frequency_penalty; /* 0: off (default) */
    float presence_penalty;  /* 0: off (default) */
    int repeat_last_n;       /* the penalty window; 0: penalties off, -1: the whole history;
                                default 64 */
    bool penalize_prompt;    /* prompt tokens count for the penalties; default true */
    const char *chain;       /* the stages in order, e.g. "penalties,top-k,top-p,min-p,
                                temperature"; NULL: llama.cpp's default order */
    uint64_t seed;           /* the random draw's seed; default 0 */
    const quill_logit_bias *logit_bias; /* copied by quill_sampler_new */
    int n_logit_bias;
    const char *const *bad_words; /* texts never to generate, tokenized with the model
                                     (each as written and with a leading space) */
    int n_bad_words;
    /* Added after the fields above, which keep their places. */
    float xtc_probability;   /* XTC's chance per token; 0: off (default) */
    float xtc_threshold;     /* XTC's top choices: p >= this; > 0.5: off; default 0.1 */
    float top_n_sigma;       /* keep logits >= max - this * their std; < 0: off (default -1) */
    float dynatemp_range;    /* dynamic temperature: temperature +- this by entropy; 0: off
                                (default) */
    float dynatemp_exponent; /* how entropy maps to it; default 1 */
    int mirostat;            /* 0: off (default); 1: Mirostat, 2: Mirostat 2.0; either
                                replaces the filters and penalties */
    float mirostat_tau;      /* Mirostat's target surprise in bits; default 5 */
    float mirostat_eta;      /* Mirostat's learning rate; default 0.1 */
    const char *grammar;     /* a GBNF grammar the generated text must match (docs/grammars.md),
                                parsed by quill_sampler_new, which copies what it needs; a
                                grammar that does not parse fails it with the line and
                                column. NULL: none (default) */
    /* DRY (docs/sampling.md): a token that would extend a repeat of n tokens, n >=
     * dry_allowed_length, loses dry_multiplier * dry_base^(n - dry_allowed_length) of its
     * logit; a repeat never reaches back past a sequence breaker. */
    float dry_multiplier;    /* 0: off (default) */
    float dry_base;          /* at least 1; default 1.75 */
    int dry_allowed_length;  /* default 2 */
    int dry_penalty_last_n;  /* DRY's window; 0: off, -1: the whole history (default) */
    const char *const *dry_sequence_breakers; /* texts, tokenized with the model; default
                                                 "\n", ":", "\"", "*" */
    int n_dry_sequence_breakers;
    int min_keep;            /* the fewest candidates top-p, min-p, typical-p and XTC leave;
                                0 (default) and 1 keep one */
    const char *json_schema; /* a JSON Schema (docs/grammars.md) the text must be JSON valid
                                under: quill_sampler_new turns it into a grammar; "{}" is any
                                JSON value (--json). Not with grammar. NULL: none (default) */
} quill_sampler_params;

QUILL_API quill_sampler_params quill_sampler_params_default(void);
/* Sets the strategy's numbers to a preset: "deterministic", "balanced" or "creative"
 * (docs/sampling.md); the seed, chain, bias and bad words stay. */
QUILL_API int quill_sampler_params_preset(quill_sampler_params *p, const char *name);
QUILL_API quill_sampler *quill_sampler_new(const quill_model *m, const quill_sampler_params *p);
QUILL_API void quill_sampler_free(quill_sampler *s); /* NULL-safe */
/* Chooses a token from one row of logits (vocab_size floats). Does not accept it. */
QUILL_API quill_token quill_sampler_sample(quill_sampler *s, const float *logits);
/* Adds a token to the history the penalties and bad words read: every prompt token
 * (is_prompt = true) and every generated one. */
QUILL_API int quill_sampler_accept(quill_sampler *s, quill_token token, bool is_prompt);
/* Forgets the history and starts the random draw again from the seed. */
QUILL_API void quill_sampler_reset(quill_sampler *s);
/* The chain with each stage's settings, e.g. "top-k 40 -> top-p 0.95 -> ... -> random draw
 * (seed 42)". Returns the byte count (snprintf convention). */
QUILL_API int quill_sampler_describe(const quill_sampler *s, char *buf, size_t cap);

/* What each stage of the chain left, for display (--show-probs, the server's playground):
 * enable it with the number of candidates to keep per stage, and after each
 * quill_sampler_sample read the stages. */
typedef struct {
    quill_token token;
    float logit;
    float p; /* its probability in the softmax of the stage's survivors */
} quill_candidate;

typedef struct {
    const char *stage;           /* "top-k", ..., as in the chain string; "chain" for the
                                    final list the selection draws from */
    int n_survivors;             /* candidates still in the running after it */
    int n_top;                   /* entries in top */
    const quill_candidate *top;  /* the most likely survivors, most likely first; valid until
                                    the next sample */
} quill_stage_candidates;

/* Keeps the top_n (at most 8) most likely candidates after each stage from now on (0:
 * stops). Tracing costs a full sort of the survivors per sample. */
QUILL_API int quill_sampler_trace(quill_sampler *s, int top_n);
/* The stages of the last sample: each stage of the chain in order, then "chain", the
 * final list (banned tokens removed, most likely first) the selection drew from. Count
 * returned, at most cap written; 0 when the sample was not traced. */
QUILL_API int quill_sampler_stages(const quill_sampler *s, quill_stage_candidates *out, int cap);
/* The token the last traced sample chose (what --show-probs marks), -1 when it was not
 * traced. */
QUILL_API quill_token quill_sampler_chosen(const quill_sampler *s);

/* ---- generation --------------------------------------------------------------------- */

typedef enum {
    QUILL_FINISH_LENGTH,    /* max_tokens generated */
    QUILL_FINISH_EOS,       /* the model ended the text (eos or end of turn) */
    QUILL_FINISH_STOP,      /* a stop string */
    QUILL_FINISH_CONTEXT,   /* the sequence's context is full (and context_shift is off) */
    QUILL_FINISH_CANCELLED, /* the callback returned false, or *cancel became non-zero */
} quill_finish_reason;

/* "length", "eos", "stop", "context", "cancelled". */
QUILL_API const char *quill_finish_reason_name(quill_finish_reason r);

/* One generated token, as the callback sees it. */
typedef struct {
    quill_token token;
    const char *piece;  /* the token's own bytes (may end inside a UTF-8 character) */
    size_t n_piece;
    const char *text;   /* the text this token decided: whole UTF-8 characters, with any
                           bytes that may start a stop string held back until they are
                           known not to; may be empty. The texts of a generation, joined,
                           are its output. */
    size_t n_text;
    float logprob;      /* ln p of the token under the sampler's final distribution (the
                           tempered one; at temperature <= 0 the untempered one); NAN when
                           the sampler is traced (its stages have the probabilities) */
} quill_token_event;

/* Called once per generated token, and once more with token -1 (and no piece) when text
 * held back until the end (a stop string's unfinished start, an incomplete character)
 * turns out to be text. The end-of-text token that finishes a generation is not reported.
 * Return false to stop (finish "cancelled"). When the sampler is traced
 * (quill_sampler_trace), its stages during the callback are those of the token reported,
 * and after quill_generate returns those of the last token chosen (the end-of-text token
 * when the finish is "eos"). */
typedef bool (*quill_token_callback)(const quill_token_event *ev, void *user);

typedef struct {
    int max_tokens;         /* -1 (default): until the end of text or of the context */
    const char *const *stop; /* stop strings: the text ends before the first one */
    int n_stop;
    bool ignore_eos;        /* keep going after the model's end-of-text token */
    bool add_special;       /* a bos first when the sequence is empty and the model wants
                               one; default true */
    bool parse_special;     /* control-token text in the prompt becomes its token (a chat
                               template's output); default false */
    bool context_shift;     /* when the context is full, forget the older half of what
                               follows the prompt's first n_keep tokens and go on */
    int n_keep;             /* positions a context shift keeps at the start; default 0
                               (llama.cpp's --keep); -1: all that the sequence holds once
                               the prompt is in */
    int seq;                /* the context's sequence to extend; default 0 */
    volatile int *cancel;   /* another thread sets *cancel = 1 to stop; may be NULL */
    quill_token_callback on_token;
    void *user;
    /* Classifier-free guidance (Sanchez et al. 2023; docs/sampling.md), added after the
     * fields above, which keep their places. It is on when guide or negative_prompt is not
     * NULL: sequence seq is then the conditional side (guide, then the prompt) and
     * sequence guidance_seq the unconditional one (negative_prompt, then the prompt; or
     * the prompt alone), decoded side by side in one forward pass per step, and the
     * sampler reads uncond + guidance_scale * (cond - uncond) of their logits. A text goes
     * before the prompt only when its sequence is empty, joined as written (end it with a
     * space or a newline); on an empty seq, guidance_seq is cleared first, and a later call
     * continues both. Not with context_shift. */
    const char *guide;       /* the conditional side's text; NULL: none (the prompt alone) */
    const char *negative_prompt; /* the unconditional side's text; NULL: none */
    float guidance_scale;    /* S: 1 is the conditional side alone, 0 the unconditional one,
                                > 1 pushes further from the unconditional; default 1.5 */
    int guidance_seq;        /* the unconditional side's sequence (not seq); default 1, so
                                the context needs n_seq >= 2 */
} quill_generate_params;

QUILL_API quill_generate_params quill_generate_params_default(void);
/* Appends prompt to sequence seq (after what it holds: a conversation goes on), accepts
 * its tokens into the sampler, then samples, streams and feeds back tokens until a finish
 * reason, which it writes to *finish (may be NULL). The last token is in the cache, so a
 * following call continues after it; an empty prompt continues the sequence as it is (its
 * last token runs again, so that its logits are current: after quill_state_load, say).
 * The loop is the one `quill generate` runs. */
QUILL_API int quill_generate(quill_context *c, quill_sampler *s, const char *prompt,
                             const quill_generate_params *p, quill_finish_reason *finish);

/* ---- beam search -------------------------------------------------------------------- */

/* Instead of drawing one token per step, keep the beam_size most probable partial texts
 * and extend each by its likeliest tokens; a text scores (the sum of its tokens'
 * log-probabilities) / length^length_penalty. `quill generate --beam-size` and
 * docs/sampling.md explain it.
 *
 * With words that must appear (must_include), the search is lexically constrained (Post &
 * Vilar 2018, dynamic beam allocation; `quill generate --must-include`): beams are also
 * extended by the tokens that spell the words, and the beams are shared among the texts by
 * how far they have come towards them, so that a text holding every word is found when one
 * fits in max_tokens. A text with every word ranks above any text without. */
typedef struct {
    int beam_size;          /* beams kept; default 4 */
    float length_penalty;   /* 0: plain probability (favours short texts), 1 (default): the
                               mean per token */
    int n_best;             /* texts returned, best first; default 1, at most beam_size */
    int max_tokens;         /* default 256 */
    const char *const *stop; /* stop strings end a beam's text before them */
    int n_stop;
    bool ignore_eos;
    bool add_special;       /* a bos first when the model wants one; default true */
    bool parse_special;     /* default false */
    /* Added after the fields above, which keep their places. */
    const char *const *must_include; /* words or phrases each text must hold (at most 64,
                                        each 1 to 256 bytes); NULL: none (default) */
    int n_must_include;
} quill_beam_params;

typedef struct {
    char *text;             /* malloc'd, NUL-terminated: quill_beam_results_free */
    size_t n_text;
    double score;
    int n_tokens;
    quill_finish_reason finish;
    /* Added after the fields above, which keep their places. */
    uint64_t missed;        /* bit i set: must_include[i] is not in the text (no text with
                               every word fitted in max_tokens); 0 when the text has them all */
} quill_beam_result;

QUILL_API quill_beam_params quill_beam_params_default(void);
/* Beam search from prompt on sequences 0 .. beam_size - 1 of c, which are cleared first
 * (the context needs n_seq >= beam_size). The sampler does not draw: its penalties, logit
 * bias and bad words shape the log-probabilities that score the beams; its filters and
 * temperature play no part. Writes the min(n_best, cap) best texts to out, best first, and
 * returns their count, or QUILL_ERROR. */
QUILL_API int quill_beam_search(quill_context *c, quill_sampler *s, const char *prompt,
                                const quill_beam_params *p, quill_beam_result *out, int cap);
QUILL_API void quill_beam_results_free(quill_beam_result *r, int n);

/* ---- LoRA adapters -------------------------------------------------------------------- */

/* A LoRA adapter (Hu et al. 2021): a low-rank change to some of a model's weights, applied
 * beside them. For each weight W it changes, a context that applies it computes
 * W x + scale * alpha / rank * B (A x), the adapter's A (rank, in) and B (out, rank) in the
 * file's types, W as the model stores it (docs/architecture.md, "LoRA adapters").
 *
 * quill_lora_load reads llama.cpp's adapter GGUF (docs/formats.md) for model m and checks
 * it against m (llama.cpp's llama_adapter_lora_init): NULL on error, with a message that
 * names the tensor, e.g. a file for another architecture, a lora_a without its lora_b, or
 * factors of another model's shapes. The adapter only reads m: keep m alive while it is in
 * use, and free the adapter after the contexts that apply it (NULL-safe). */
QUILL_API quill_lora *quill_lora_load(const quill_model *m, const char *path);
QUILL_API void quill_lora_free(quill_lora *a);

/* The adapters every later decode of c applies: adapters[i] with scales[i] (scales NULL:
 * 1 each), in place of those set before; n = 0 takes them all away (llama.cpp's
 * llama_set_adapter_lora and llama_clear_adapter_lora). Each must have been loaded for c's
 * model. Keys and values already in the cache stay as they were computed: clear the
 * sequences for a text that is the adapted model's from its first token. */
QUILL_API int quill_context_set_lora(quill_context *c, quill_lora *const *adapters,
                                     const float *scales, int n);

/* ---- session state ------------------------------------------------------------------ */

/* Writes sequence seq's tokens and KV cache to path (atomically: a crash leaves the old
 * file), with a checksum and a hash of the LoRA adapters the context applies (each file's
 * contents and its scale, in order); quill_state_load puts them into sequence seq of a
 * context of the same model and cache type that applies the same adapters at the same
 * scales (or none, as the saving context did), so that decoding continues as if never
 * interrupted. A file from another model, one saved with other adapters or scales
 * (QUILL_ERROR_CONTEXT), a damaged file, one too long for the context or one written
 * before the adapters were recorded (format version 1) is an error that changes nothing. */
QUILL_API int quill_state_save(const quill_context *c, int seq, const char *path);
QUILL_API int quill_state_load(quill_context *c, int seq, const char *path);

#ifdef __cplusplus
}
#endif

#endif
