/* Running a model for inference: the calls generate/, the tests and the notebooks use, in
 * the spirit of llama.cpp's examples/simple, in quill's names. One loop, start to end:
 *
 *   model_file_load(path, &model, &tok, err)          a GGUF file, mapped (loader.h)
 *   infer_init(&ctx, &model, &params, err)            a KV cache for n_seq sequences
 *   tokenizer_encode(&tok, text, len, ...)            the prompt's ids (tokenizer.h)
 *   infer_decode(&ctx, 0, ids, n, err)                the prompt, into sequence 0's cache
 *   loop:
 *     logits = infer_logits(&ctx, 0)                  what may come next: V floats
 *     next = sampler_sample(&sampler, logits)         choose (generate/sampler.h)
 *     sampler_accept(&sampler, next, false, err)      so that penalties see it
 *     tokenizer_token_bytes(&tok, next, buf, cap)     its text
 *     infer_decode(&ctx, 0, &next, 1, err)            and feed it back
 *
 * Sequences share the context: each has a cache slot of n_ctx positions. A batch
 * (InferBatch) holds rows of many sequences, each at its own position, and runs in one
 * forward pass that reads the weights once for all of them: beam search, parallel samples
 * and a server's many conversations step together that way, prompts and decoding steps
 * mixed. infer_seq_copy gives a sequence another's cache (a shared prompt, a beam that
 * branches); infer_seq_clear forgets one (a new conversation); infer_seq_truncate forgets
 * a stretch of one and moves what follows down (a context shift). */
#ifndef QUILL_INFER_H
#define QUILL_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "governor.h"
#include "lora.h"
#include "model.h"

typedef struct {
    int n_seq;           /* sequences (cache slots): 1 for one text, B for beam search */
    int n_ctx;           /* positions each sequence holds: prompt and generated tokens */
    int n_batch;         /* tokens per forward pass when decoding a long input (0: 512) */
    uint32_t cache_type; /* GGML_TYPE_F32, _F16 or _Q8_0 */
    bool all_logits;     /* keep the logits of every decoded token, not only the last */
} InferParams;

typedef struct {
    const Model *model;
    InferParams params;
    Activations acts;
    int *seq_len;        /* (n_seq) positions each sequence's cache holds */
    int *seq_tokens;     /* (n_seq, n_ctx) the token at each of those positions */
    /* The logits the last decode left: n_logits rows of V, in the order of the rows that
     * asked for them; logit_row[i] is batch row i's (-1: none). Both grow as batches ask. */
    float *logits;
    int n_logits;
    size_t logits_cap; /* rows of V floats */
    int *logit_row;
    int n_rows;
    size_t rows_cap;
    /* scratch: each sequence's next position while a batch is checked (n_seq); a pass's
     * rows with logits, and the rows infer_decode and infer_decode_step build (acts.T) */
    int *next_pos, *out_rows, *row_pos, *row_seq;
    bool *row_logits;
    ThreadGovernor governor; /* how many threads decoding steps run on (governor.h) */
    LoraSet lora;            /* the adapters every pass applies (infer_set_lora) */
} InferContext;

/* A context that would take more memory than the machine has available is refused, with
 * the sizes in the message. */
int infer_init(InferContext *c, const Model *m, const InferParams *p, Error *err);
void infer_free(InferContext *c); /* NULL-safe */

/* A batch: row i is token[i] of sequence seq[i] at position pos[i] (llama.cpp's
 * llama_batch). The rows of one sequence come in order, and each row's position is the
 * next of its sequence: what the sequence holds plus its rows before it in the batch. A
 * sequence may have many rows (a prompt) and others one (a decoding step), in any mix. */
typedef struct {
    const int *token;   /* (n) */
    const int *pos;     /* (n) each row's position */
    const int *seq;     /* (n) each row's sequence */
    const bool *logits; /* (n) rows whose logits are wanted; NULL: only the last row */
    int n;
} InferBatch;

/* Runs a batch through the model in passes of at most n_batch rows, the keys and values
 * of each row into its sequence's cache. A row whose sequence or token does not exist, or
 * whose position is not its sequence's next or is past the context, is an error naming the
 * row, and the batch changes nothing. Afterwards infer_batch_logits gives the logits of
 * the rows that asked, and infer_logits(c, k) the k-th of them. */
int infer_decode_batch(InferContext *c, const InferBatch *b, Error *err);
/* Logits of row i of the last batch (one that asked for them), V floats, valid until the
 * next decode; NULL for a row that did not. */
const float *infer_batch_logits(const InferContext *c, int i);

/* The LoRA adapters every later pass applies, each with its scale (lora.h), in place of
 * those set before; n = 0 takes them all away. The adapters must have been loaded for this
 * context's model and outlive their use. The cache is left as it is: keys and values
 * computed before the change stay (clear the sequences for a fresh start). */
int infer_set_lora(InferContext *c, const LoraUse *uses, int n, Error *err);

/* Appends n tokens to sequence seq and runs them through the model, in passes of at most
 * n_batch tokens. Afterwards infer_logits(c, 0) is what follows the last token (with
 * all_logits, row i is what follows token i of the last pass). A sequence that would
 * outgrow n_ctx is an error ("the context of N positions is full") and changes nothing. */
int infer_decode(InferContext *c, int seq, const int *tokens, int n, Error *err);

/* One decoding step of n sequences, each a different one: tokens[i] at the next position of
 * seqs[i], all in one pass (beams, parallel samples). Row i of the logits follows
 * tokens[i]. */
int infer_decode_step(InferContext *c, const int *seqs, const int *tokens, int n, Error *err);

/* The k-th row of logits the last decode left: V floats, valid until the next decode. */
const float *infer_logits(const InferContext *c, int k);

/* Gives dst src's cache: copies the positions [shared, length of src) and leaves dst as
 * long as src. Positions before `shared` must already be equal in both (the prompt they
 * were both given): only what differs is copied; 0 copies the whole sequence. */
void infer_seq_copy(InferContext *c, int src, int dst, int shared);
/* Empties sequence seq's cache. */
void infer_seq_clear(InferContext *c, int seq);
/* Forgets positions [p0, p1) of sequence seq (p1 < 0: to its end); the positions after p1
 * move down to p0, their keys re-rotated by RoPE for the new positions, so the sequence
 * reads as if the forgotten tokens had never been there. llama.cpp's seq_rm followed by
 * seq_add; a context shift that keeps n_keep tokens and drops n_discard is
 * infer_seq_truncate(c, seq, n_keep, n_keep + n_discard). quill keeps a sequence's
 * positions contiguous, so a shift of positions without removing some is not a state it
 * can hold: truncate is the shift. Exact for an F32 cache up to rounding; F16 and Q8_0
 * keys are decoded, rotated and stored again. */
int infer_seq_truncate(InferContext *c, int seq, int p0, int p1, Error *err);
int infer_seq_length(const InferContext *c, int seq);
/* The tokens sequence seq's cache holds, oldest first (infer_seq_length of them): what a
 * saved state records, and what a context shift leaves. */
const int *infer_seq_tokens(const InferContext *c, int seq);

/* Bytes the KV cache takes. */
size_t infer_cache_bytes(const InferContext *c);
/* Bytes infer_init allocates for p: the KV cache, the activations and scratch. */
size_t infer_memory_bytes(const Model *m, const InferParams *p);
/* Bytes of memory the machine has available (MemAvailable of /proc/meminfo: free memory
 * and what the kernel can reclaim), or SIZE_MAX where that cannot be read. */
size_t infer_memory_available(void);

#endif
