/* What the tokenizer's files share, and nothing else includes. tokenizer.c owns the
 * vocabulary, the special-token cut, decoding and GGUF storage, and calls the two encoders
 * for each stretch of text between special tokens: tokenizer_spm.c (SentencePiece BPE) and
 * tokenizer_bpe.c, which owns the byte alphabet, the merge table and the pre-tokenizers (it
 * is the one file that includes pcre2.h). */
#ifndef QUILL_TOKENIZER_INTERNAL_H
#define QUILL_TOKENIZER_INTERNAL_H

#include <stddef.h>

#include "error.h"
#include "tokenizer.h"

/* Sets t->bpe (and t->byte_token) for a tokenizer whose pieces and index are built:
 * the pre-tokenizer named `pre` and the merge table from "left right" strings. */
int bpe_model_init(Tokenizer *t, const char *pre, const char *const *merges, size_t n_merges,
                   Error *err);
void bpe_model_free(BpeModel *m); /* NULL-safe */
const char *bpe_model_pre_name(const BpeModel *m);
/* The pre-tokenizer's wish for add_bos when the file says nothing (llama.cpp's default). */
bool bpe_model_default_add_bos(const BpeModel *m);

/* One encode call's working state: the regex match buffer, scratch arrays and the word
 * cache (pre-token bytes -> ids), which lives as long as the call, so that the same word
 * is merged only once however often the text repeats it. */
typedef struct BpeSession BpeSession;

int bpe_session_new(BpeSession **s, const Tokenizer *t, Error *err);
void bpe_session_free(BpeSession *s); /* NULL-safe */
/* The SentencePiece encoder (tokenizer_spm.c): steps 1 to 4 on one stretch of raw text (no
 * special tokens in it, not empty), with the space prefix when space_prefix; appends the
 * ids. */
int spm_encode_fragment(const Tokenizer *t, const char *text, size_t len, bool space_prefix,
                        IdList *out, Error *err);

/* Encodes one stretch of raw text (no special tokens in it) and appends the ids. */
int bpe_encode_fragment(BpeSession *s, const char *text, size_t len, IdList *out, Error *err);

/* tokenizer_token_bytes for a NORMAL byte-level token: its characters mapped back to bytes. */
size_t bpe_token_bytes(const Tokenizer *t, int id, char *buf, size_t cap);

/* The merges as "left right" strings by rank, as they were read (for tokenizer_to_gguf). */
const char *const *bpe_model_merges(const BpeModel *m, size_t *n);

#endif
