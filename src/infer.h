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
 * Sequences share the context: each has a cache slot of n_ctx positions. A batch of one
 * token per sequence runs in one forward pass (infer_decode_batch: beam search and
 * parallel samples read the weights once for all of them); infer_seq_copy gives a
 * sequence another's cache (a shared prompt, a beam that branches); infer_seq_clear
 * forgets one (a new conversation). */
#ifndef QUILL_INFER_H
#define QUILL_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "governor.h"
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
    int n_logits;        /* rows of logits the last call left */
    ThreadGovernor governor; /* how many threads decoding steps run on (governor.h) */
} InferContext;

/* A context that would take more memory than the machine has available is refused, with
 * the sizes in the message. */
int infer_init(InferContext *c, const Model *m, const InferParams *p, Error *err);
void infer_free(InferContext *c); /* NULL-safe */

/* Appends n tokens to sequence seq and runs them through the model, in passes of at most
 * n_batch tokens. Afterwards infer_logits(c, 0) is what follows the last token (with
 * all_logits, row i is what follows token i of the last pass). A sequence that would
 * outgrow n_ctx is an error ("the context of N positions is full") and changes nothing. */
int infer_decode(InferContext *c, int seq, const int *tokens, int n, Error *err);

/* One token for each of n sequences in one forward pass; the sequences must all hold the
 * same number of positions (they step together: beams, parallel samples). Row i of the
 * logits follows tokens[i]. */
int infer_decode_batch(InferContext *c, const int *seqs, const int *tokens, int n, Error *err);

/* Row i of the logits of the last decode: V floats, valid until the next decode. */
const float *infer_logits(const InferContext *c, int i);

/* Gives dst src's cache: copies the positions [shared, length of src) and leaves dst as
 * long as src. Positions before `shared` must already be equal in both (the prompt they
 * were both given): only what differs is copied. */
void infer_seq_copy(InferContext *c, int src, int dst, int shared);
/* Empties sequence seq's cache. */
void infer_seq_clear(InferContext *c, int seq);
int infer_seq_length(const InferContext *c, int seq);

/* Bytes the KV cache takes. */
size_t infer_cache_bytes(const InferContext *c);
/* Bytes infer_init allocates for p: the KV cache, the activations and scratch. */
size_t infer_memory_bytes(const Model *m, const InferParams *p);
/* Bytes of memory the machine has available (MemAvailable of /proc/meminfo: free memory
 * and what the kernel can reclaim), or SIZE_MAX where that cannot be read. */
size_t infer_memory_available(void);

#endif
