/* SentencePiece-style BPE tokenizer, as llama.cpp runs it for tokenizer.ggml.model = "llama".
 *
 * A vocabulary is a list of pieces with a score and a type. Text is encoded by:
 *   1. putting a space in front of it (when add_space_prefix) and writing every space as
 *      U+2581 "▁", so that "Hello world" becomes "▁Hello▁world";
 *   2. splitting it into UTF-8 characters, one symbol each;
 *   3. repeatedly merging the adjacent pair whose concatenation is a vocabulary piece with
 *      the highest score (the leftmost pair on ties), until no pair is a piece;
 *   4. emitting each symbol's id; a symbol that is not a piece falls back to one byte
 *      token "<0xAB>" per byte.
 * Because quill runs the same algorithm as llama.cpp, a quill tokenizer stored in GGUF
 * tokenizes identically there (tests check llama.cpp's own test vectors).
 *
 * Two trainers build vocabularies from text: `char` (every character of the corpus is a
 * piece) and `bpe` (characters plus merged pieces up to a target vocabulary size, scored
 * so that the encoder replays the merges in the order they were learned). Both also hold
 * <unk>, <s>, </s> and the 256 byte tokens, so that any UTF-8 text, and any byte string,
 * round-trips: decode(encode(s)) == s. (One exception, shared with SentencePiece: a "▁"
 * that is already in the text comes back as a space.) */
#ifndef QUILL_TOKENIZER_H
#define QUILL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

/* Token types as tokenizer.ggml.token_type stores them (SentencePiece's numbering). */
typedef enum {
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
} TokenType;

typedef struct PieceIndex PieceIndex; /* private: piece text -> id hash table */

typedef struct {
    int n_vocab;
    char **pieces;         /* as stored: spaces as "▁", byte tokens as "<0x0A>" */
    float *scores;         /* merge priority: the pair forming a higher score merges first */
    int32_t *types;        /* TokenType */
    int bos_id;            /* <s>, or -1 */
    int eos_id;            /* </s>, or -1 */
    int unk_id;            /* <unk>, or -1 */
    bool add_bos;          /* tokenizer.ggml.add_bos_token: prompts start with <s> */
    bool add_space_prefix; /* tokenizer.ggml.add_space_prefix: step 1 above */
    int byte_token[256];   /* id of "<0xAB>" for each byte, or -1 */
    PieceIndex *index;
} Tokenizer;

/* Builds a tokenizer from parallel arrays (copied). scores may be NULL (all 0) and types
 * may be NULL (all NORMAL). Special ids are found by type: the first UNKNOWN piece is unk;
 * "<s>" and "</s>" CONTROL pieces are bos and eos. add_bos and add_space_prefix start true
 * (llama.cpp's defaults for this model). Duplicate pieces are an error. */
int tokenizer_init(Tokenizer *t, int n_vocab, const char *const *pieces, const float *scores,
                   const int32_t *types, Error *err);
void tokenizer_free(Tokenizer *t); /* NULL-safe; leaves *t zeroed */

/* Reads tokenizer.ggml.* from a GGUF file. Only model "llama" (SentencePiece BPE) is
 * supported; others are an error that names the model. */
int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, Error *err);
/* Adds the tokenizer.ggml.* keys that llama.cpp reads. */
void tokenizer_to_gguf(const Tokenizer *t, GgufWriter *w);

/* Id of a piece (exact bytes, spaces already as "▁"), or -1. */
int tokenizer_lookup(const Tokenizer *t, const char *piece, size_t len);

/* Step 1 above: writes text, with a space in front when add_space_prefix and every space
 * as "▁", into a malloc'd NUL-terminated buffer (*out_len excludes the NUL). */
int tokenizer_escape(const char *text, size_t len, bool add_space_prefix, char **out,
                     size_t *out_len, Error *err);

/* Step 2 above: the length of the character that starts with byte `lead`, read from its
 * high 4 bits as llama.cpp does (0x0-0xB: 1, 0xC-0xD: 2, 0xE: 3, 0xF: 4) without checking
 * that the bytes after it are valid; callers clip it at the end of the text. */
size_t tokenizer_utf8_len(unsigned char lead);

/* Encodes len bytes of text (any bytes; invalid UTF-8 ends up as byte tokens).
 * *ids is malloc'd (NULL when there are no ids); the caller frees it. With add_bos, <s>
 * comes first. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids,
                     size_t *n_ids, Error *err);

/* The bytes a token stands for: "▁" becomes a space, a byte token becomes its byte,
 * control tokens are empty. Writes at most cap bytes into buf and returns the token's full
 * length, like snprintf (so a result above cap means buf got a truncated copy; buf may be
 * NULL when cap is 0). */
size_t tokenizer_token_bytes(const Tokenizer *t, int id, char *buf, size_t cap);

/* Decodes ids into a malloc'd NUL-terminated string (*len excludes the NUL). Control
 * tokens are skipped, and the one space that encoding put in front is removed again
 * (with add_space_prefix: at the start, and after each USER_DEFINED token, the places
 * where the encoder adds one). The tokens' stored bytes are joined before "▁" turns into
 * spaces, so a "▁" spelled by byte tokens decodes to a space too; that makes decoding the
 * exact inverse of encoding, which token-by-token tokenizer_token_bytes cannot be. An id
 * out of range is an error. */
int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, size_t *len,
                     Error *err);

/* Trainers (tokenizer_train.c). Both replace whatever *t held: *t must be zeroed or hold a
 * tokenizer, which is freed on success; on failure *t is left as it was. */
int tokenizer_train_char(Tokenizer *t, const char *text, size_t len, Error *err);
int tokenizer_train_bpe(Tokenizer *t, const char *text, size_t len, int vocab_size, Error *err);

#endif
