/* What lies behind include/quill.h's opaque handles: each is a thin shell around the
 * internal structs (loader.h, infer.h, sampler.h), which the CLI uses directly. The
 * quill_*.c files split the API by concern: quill_model.c (loading, metadata, tokens, chat
 * format, the library's version and errors), quill_context.c (contexts, batches, sequence
 * operations, embeddings), quill_sampler.c, quill_generate.c and quill_state.c. */
#ifndef QUILL_INTERNAL_H
#define QUILL_INTERNAL_H

#include "quill.h"

#include "chat.h"
#include "error.h"
#include "infer.h"
#include "lora.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

struct quill_model {
    Model model;        /* empty for a vocabulary-only model */
    Tokenizer tok;
    GgufFile *file;     /* the file's metadata: model.file, or owned when vocab_only */
    bool vocab_only;
    int n_threads;      /* for its contexts (0: every core) */
    uint64_t n_params;
    uint64_t identity;  /* hash of every tensor's name, type and shape: what a saved state
                           must match */
    uint32_t cache_type; /* the file's default cache type (kv_cache_type_default) */
};

struct quill_context {
    const quill_model *model;
    InferContext infer;
    int n_threads;
    bool *row_logits;   /* scratch: a batch's logits flags as bool (quill_decode) */
    quill_perf perf;    /* what quill_generate has done on it (quill_context_perf) */
    size_t row_logits_cap;
};

struct quill_lora {
    const quill_model *model;
    LoraAdapter adapter;
};
struct quill_sampler {
    const quill_model *model;
    Sampler sampler;
    int trace_top;      /* candidates kept per stage (0: no trace) */
    SamplerTrace trace; /* the last sample's, when tracing */
    quill_candidate top[SAMPLER_STAGE_COUNT + 1][SAMPLER_TRACE_TOP]; /* each step's */
    int n_top[SAMPLER_STAGE_COUNT + 1];
    Grammar grammar;    /* the grammar stage's, when api_sampler_use_grammar gave one */
};

/* Turns on s's grammar stage (sampler_set_grammar) with g, which s takes over: *g is
 * s's to free, whatever the status. Not in quill.h yet: `quill generate --grammar` uses it. */
int api_sampler_use_grammar(quill_sampler *s, Grammar *g, Error *err);

/* Makes trace (a sample that quill_generate's session traced) s's last sample, so that
 * quill_sampler_stages shows it. */
void api_sampler_traced(quill_sampler *s, const SamplerTrace *trace);

/* The thread's last error: api_fail formats it, api_error copies an internal Error's
 * message. Both return QUILL_ERROR, so a failing call can end with `return api_fail(...)`. */
int api_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int api_error(const Error *err);
/* The same, for a failure of another kind than QUILL_ERROR_PARAMETER (api_fail's). */
int api_fail_as(quill_error_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int api_error_as(quill_error_kind kind, const Error *err);

/* Checks a handle argument: a message naming the function and the argument when NULL. */
int api_check_handle(const void *handle, const char *function, const char *name);
/* Checks a sequence index of c. */
int api_check_seq(const quill_context *c, int seq, const char *function);

/* Sets the calling thread's compute threads to the context's (matmul.c keeps them per
 * thread), before it computes. */
void api_context_use_threads(const quill_context *c);

/* Copies bytes into a caller's buffer the snprintf way: at most cap - 1 of them and a NUL
 * (nothing when cap is 0); returns n. */
int api_copy_out(const char *bytes, size_t n, char *buf, size_t cap);

#endif
