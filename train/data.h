/* The data pipeline: text files -> one token stream (cached on disk) -> batches.
 *
 * The files are tokenized once, each starting with <s>, and concatenated. The last 10% of
 * the tokens is the validation split, the rest the training split. The stream lives in a
 * token cache file (DIR/tokens.bin for a training run), written as the corpus is encoded
 * (train/corpus.h: segments on every thread, never the whole corpus in memory) and then
 * memory-mapped, never read whole: batches read the windows they need, and on a large
 * cache the pages they touched are let go again after each batch, so a run's memory does
 * not grow with the corpus. Ids take 2 bytes each when the vocabulary fits in 16 bits.
 * The header records the vocabulary size and a hash of the source files and of the
 * tokenizer, so a cache made from other text or another vocabulary is noticed and rebuilt;
 * checksums of the header and of every chunk of 2^20 tokens catch a cache that was damaged
 * on disk (little-endian):
 *     0  "QTOK" | version u32 = 2 | token_bytes u32 (2 or 4) | vocab_size u32
 *    16  source_hash u64 | n_tokens u64 | chunk_tokens u64 | header_checksum u64 (of bytes
 *        0..39) | 16 bytes of zeros
 *    64  n_tokens ids of token_bytes bytes
 *        then one u64 checksum per chunk of chunk_tokens ids (the last chunk may be shorter)
 *
 * A batch is B windows of T+1 consecutive tokens: inputs are a window's first T tokens,
 * targets its last T (each target is the token after its input); a target that the
 * stream's mask does not count is LOSS_IGNORED (ops.h). */
#ifndef QUILL_TRAIN_DATA_H
#define QUILL_TRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"
#include "tokenizer.h"

typedef struct {
    const void *ids;     /* n_tokens ids, token_bytes (2 or 4) bytes each, in the mapping */
    int token_bytes;
    size_t n_tokens;
    size_t n_train;      /* tokens [0, n_train) train; [n_train, n_tokens) validate */
    uint32_t vocab_size;
    uint64_t source_hash; /* of the source files and the tokenizer: the cache's key */
    bool from_cache;     /* an existing valid cache was mapped; false: tokenized now */
    void *map;           /* private: the mapped cache file */
    size_t map_size;
    size_t mapped_bytes; /* private: what batches may have mapped since the last release */
    const uint8_t *counted; /* (n_tokens) chat data's loss mask: a target token i with
                               counted[i] == 0 becomes LOSS_IGNORED in a batch; NULL: every
                               token counts (text) */
    void *owned_ids;     /* private: ids and counted held in memory (data_from_memory) */
    uint8_t *owned_counted;
} TokenData;

/* Gets the token stream of `paths`: from cache_path when the cache there is valid and
 * matches the files and the tokenizer, otherwise by tokenizing them into cache_path
 * (atomically) on compute_threads() threads. cache_path may be NULL: the stream then goes
 * to an unnamed temporary file. When a cache exists but is damaged, it is rebuilt and
 * `warning` says which part of the file was bad; it is empty otherwise. Empty data, and a
 * file that is not text (corpus_check_text), are errors. */
int data_load(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
              const char *cache_path, Error *warning, Error *err);
void data_free(TokenData *d); /* NULL-safe */
/* A stream already tokenized in memory (chat data, train/chat_data.h): d takes ids (4 bytes
 * each) and counted (n each, malloc'd), split as data_load splits a cache. */
void data_from_memory(TokenData *d, int *ids, uint8_t *counted, size_t n, uint32_t vocab_size);

/* The parts of data_load. The cache key: a hash of the files' bytes and the tokenizer. */
int data_source_key(const char *const *paths, int n_paths, const Tokenizer *tok, uint64_t *key,
                    Error *err);
/* Maps the cache at path when it is valid for this vocabulary size and key. Returns 0 when
 * mapped, 1 when there is no usable cache (missing, or made from other data), -1 when it is
 * damaged (err says where). The checksums are read with plain reads, not through the
 * mapping, so checking a large cache does not leave it resident. */
int data_cache_open(TokenData *d, const char *path, uint32_t vocab_size, uint64_t key,
                    Error *err);

typedef enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_ALL } DataSplit;

/* Token i of the stream. */
static inline int data_token(const TokenData *d, size_t i)
{
    return d->token_bytes == 2 ? ((const uint16_t *)d->ids)[i] : (int)((const uint32_t *)d->ids)[i];
}

/* The first token and the length of a split. */
size_t data_split(const TokenData *d, DataSplit split, size_t *n);

/* Windows of T+1 tokens that fit in a split without wrapping. */
size_t data_window_count(const TokenData *d, DataSplit split, int T);

/* Where B windows of a batch start, within the split:
 *   rng != NULL: each at a uniformly random token of the split;
 *   rng == NULL: window k = first_window + b at token (k mod windows) * T, so that
 *                consecutive batches walk through the split in order. */
void data_window_starts(const TokenData *d, DataSplit split, int B, int T, Rng *rng,
                        uint64_t first_window, size_t *starts);
/* The batch (B, T) of inputs and targets whose windows start at starts[0..B). On a large
 * cache, the pages batches touched are let go now and then (see data.c), so d changes. */
void data_batch_at(TokenData *d, DataSplit split, int B, int T, const size_t *starts,
                   int *inputs, int *targets);
/* Both: a training batch (B, T) of inputs and targets. */
void data_batch(TokenData *d, DataSplit split, int B, int T, Rng *rng,
                uint64_t first_window, int *inputs, int *targets);

#endif
