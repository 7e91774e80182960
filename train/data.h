/* The data pipeline: text files -> one token stream (cached on disk) -> batches.
 *
 * The files are tokenized once, each starting with <s>, and concatenated. The last 10% of
 * the tokens is the validation split, the rest the training split. The stream is cached
 * in a token file whose header records the vocabulary size and a hash of the source files
 * and of the tokenizer, so a cache made from other text or another vocabulary is noticed
 * and rebuilt:
 *     "QTOK" | version u32 | vocab_size u32 | reserved u32 | source hash u64 |
 *     n_tokens u64 | n_tokens x u32 token ids                      (little-endian)
 *
 * A batch is B windows of T+1 consecutive tokens: inputs are a window's first T tokens,
 * targets its last T (each target is the token after its input). */
#ifndef QUILL_TRAIN_DATA_H
#define QUILL_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"
#include "tokenizer.h"

typedef struct {
    int *tokens;     /* the whole stream */
    size_t n_tokens;
    size_t n_train;  /* tokens [0, n_train) train; [n_train, n_tokens) validate */
} TokenData;

typedef enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_ALL } DataSplit;

/* Loads the token stream of `paths` from cache_path when the cache matches, otherwise
 * tokenizes them and writes the cache (atomically). cache_path may be NULL: no cache. */
int data_load(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
              const char *cache_path, Error *err);
void data_free(TokenData *d); /* NULL-safe */

/* The tokens of a split. */
const int *data_split(const TokenData *d, DataSplit split, size_t *n);

/* Windows of T+1 tokens that fit in a split without wrapping. */
size_t data_window_count(const TokenData *d, DataSplit split, int T);

/* A training batch (B, T) of inputs and targets.
 *   rng != NULL: each window starts at a uniformly random token of the split;
 *   rng == NULL: window k = first_window + b starts at token (k mod windows) * T, so that
 *                consecutive batches walk through the split in order. */
void data_batch(const TokenData *d, DataSplit split, int B, int T, Rng *rng,
                uint64_t first_window, int *inputs, int *targets);

#endif
