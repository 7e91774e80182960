/* Tokenizers as llama.cpp runs them, for the two kinds of vocabulary GGUF files carry.
 *
 * SentencePiece BPE (tokenizer.ggml.model = "llama": Llama 1/2, Mistral, quill's own).
 * A vocabulary is a list of pieces with a score and a type. Text is encoded by:
 *   1. putting a space in front of it (when add_space_prefix) and writing every space as
 *      U+2581 "▁", so that "Hello world" becomes "▁Hello▁world";
 *   2. splitting it into UTF-8 characters, one symbol each;
 *   3. repeatedly merging the adjacent pair whose concatenation is a vocabulary piece with
 *      the highest score (the leftmost pair on ties), until no pair is a piece;
 *   4. emitting each symbol's id; a symbol that is not a piece falls back to one byte
 *      token "<0xAB>" per byte.
 *
 * Byte-level BPE (tokenizer.ggml.model = "gpt2": GPT-2, Llama 3, Qwen2/3; tokenizer_bpe.c):
 *   1. a pre-tokenizer (a regular expression chosen by tokenizer.ggml.pre) cuts the text
 *      into words: " world" and "123" and "!!" are words, and no merge crosses two;
 *   2. each byte of a word becomes one character of GPT-2's byte alphabet ("Ġ" is the space);
 *   3. the adjacent pair that comes first in tokenizer.ggml.merges (the lowest rank) merges,
 *      repeatedly, until no pair of the word is a merge;
 *   4. each remaining symbol is a token.
 * Every byte is a token of its own, so there is no byte fallback and no <unk>.
 *
 * Both kinds first cut USER_DEFINED pieces (and, with parse_special, CONTROL pieces such as
 * "<|im_start|>") out of the text, and encode the stretches between them.
 *
 * Because quill runs the same algorithms as llama.cpp, it gets the same ids (tests check
 * llama.cpp's own test vectors for Llama 2, GPT-2, Llama 3 and Qwen3). The SentencePiece
 * trainers build vocabularies from text: `char` (every character of the corpus is a piece)
 * and `bpe` (characters plus merged pieces up to a target vocabulary size, scored so that
 * the encoder replays the merges in the order they were learned). Both also hold <unk>,
 * <s>, </s> and the 256 byte tokens, so that any UTF-8 text, and any byte string,
 * round-trips: decode(encode(s)) == s. (One exception, shared with SentencePiece: a "▁"
 * that is already in the text comes back as a space.) Byte-level BPE round-trips every
 * byte string without exception. */
#ifndef QUILL_TOKENIZER_H
#define QUILL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "utf8.h" /* step 2 cuts with utf8_len; utf8_code says whether a cut is a character */

/* Token types as tokenizer.ggml.token_type stores them (SentencePiece's numbering). */
typedef enum {
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
} TokenType;

typedef enum {
    TOKENIZER_SPM = 0, /* SentencePiece BPE: tokenizer.ggml.model = "llama" */
    TOKENIZER_BPE = 1, /* byte-level BPE: tokenizer.ggml.model = "gpt2" */
} TokenizerKind;

typedef struct PieceIndex PieceIndex; /* private: piece text -> id hash table */
typedef struct BpeModel BpeModel;     /* private (tokenizer_bpe.c): merges, pre-tokenizer */

typedef struct {
    TokenizerKind kind;
    int n_vocab;
    char **pieces;         /* as stored. SPM: spaces as "▁", byte tokens as "<0x0A>";
                              byte-level BPE: bytes in GPT-2's alphabet, " the" as "Ġthe" */
    float *scores;         /* SPM merge priority: the pair forming a higher score merges
                              first; all 0 for byte-level BPE (merge ranks live in `bpe`) */
    int32_t *types;        /* TokenType */
    int bos_id;            /* beginning of sequence (<s>, <|begin_of_text|>), or -1 */
    int eos_id;            /* end of sequence (</s>, <|end_of_text|>), or -1 */
    int eot_id;            /* end of a chat turn (<|eot_id|>, <|im_end|>), or -1 */
    int pad_id;            /* padding, or -1 */
    int unk_id;            /* <unk>, or -1 */
    bool add_bos;          /* tokenizer.ggml.add_bos_token: prompts start with bos */
    bool add_eos;          /* tokenizer.ggml.add_eos_token: tokenizer_encode_with may end
                              with eos (quill's own vocabularies say false) */
    bool add_space_prefix; /* tokenizer.ggml.add_space_prefix: SPM step 1 above */
    int byte_token[256];   /* SPM: id of "<0xAB>"; byte-level BPE: id of the one-character
                              token that stands for the byte; -1 where there is none */
    PieceIndex *index;
    BpeModel *bpe;         /* byte-level BPE only, else NULL */
    char *chat_template;   /* tokenizer.chat_template (Jinja source) of the file read, or
                              NULL: written back, so that a model fine-tuned from a chat
                              model keeps its conversation format */
} Tokenizer;

/* Builds a SentencePiece tokenizer from parallel arrays (copied). scores may be NULL (all
 * 0) and types may be NULL (all NORMAL). Special ids are found by type: the first UNKNOWN
 * piece is unk; "<s>" and "</s>" CONTROL pieces are bos and eos. add_bos and
 * add_space_prefix start true (llama.cpp's defaults for this model). Duplicate pieces are
 * an error. */
int tokenizer_init(Tokenizer *t, int n_vocab, const char *const *pieces, const float *scores,
                   const int32_t *types, Error *err);
/* Builds a byte-level BPE tokenizer: pieces as tokenizer.ggml.tokens stores them, types as
 * above (NULL: all NORMAL), merges as "left right" strings by rank (tokenizer.ggml.merges),
 * and a pre-tokenizer name as tokenizer.ggml.pre gives it (NULL: "default"). Special ids
 * start at -1 and add_bos follows the pre-tokenizer (true only for llama-bpe, as in
 * llama.cpp); tokenizer_from_gguf then applies the file's keys. An unknown pre-tokenizer
 * name is an error that lists the names quill knows. */
int tokenizer_init_bpe(Tokenizer *t, int n_vocab, const char *const *pieces,
                       const int32_t *types, const char *const *merges, size_t n_merges,
                       const char *pre, Error *err);
void tokenizer_free(Tokenizer *t); /* NULL-safe; leaves *t zeroed */

/* Reads tokenizer.ggml.* from a GGUF file: model "llama" (SentencePiece BPE) or "gpt2"
 * (byte-level BPE); other models are an error that names the model. */
int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, Error *err);
/* Adds the tokenizer.ggml.* keys that llama.cpp reads (for either kind). */
void tokenizer_to_gguf(const Tokenizer *t, GgufWriter *w);

/* "SentencePiece BPE" or "byte-level BPE". */
const char *tokenizer_kind_name(const Tokenizer *t);
/* The pre-tokenizer's name (tokenizer.ggml.pre, "default" when absent) for byte-level BPE;
 * NULL for SentencePiece, which has none. */
const char *tokenizer_pre_name(const Tokenizer *t);

/* Id of a piece as stored (exact bytes: "▁" or "Ġ" for a space), or -1. */
int tokenizer_lookup(const Tokenizer *t, const char *piece, size_t len);

/* "▁" (U+2581), a space as SentencePiece pieces store it (step 1 above). */
#define SPACE_MARK "\xe2\x96\x81"
enum { SPACE_MARK_LEN = sizeof SPACE_MARK - 1 };

/* Step 1 above: writes text, with a space in front when add_space_prefix and every space
 * as "▁", into a malloc'd NUL-terminated buffer (*out_len excludes the NUL). */
int tokenizer_escape(const char *text, size_t len, bool add_space_prefix, char **out,
                     size_t *out_len, Error *err);

/* What tokenizer_encode_with adds to plain encoding. */
typedef struct {
    bool add_bos;       /* put bos first (t->add_bos says whether the model wants it) */
    bool add_eos;       /* put eos last (t->add_eos says whether the model wants it) */
    bool parse_special; /* CONTROL and UNKNOWN piece text in the input becomes their ids, as
                           llama.cpp's parse_special = true: a chat prompt's "<|im_start|>"
                           is then one control token. Off, such text is plain text (a user
                           cannot type a control token); USER_DEFINED pieces always match */
    bool mid_text;      /* the text continues a text already encoded (a new turn of a
                           conversation, a word as it appears inside a sentence): SPM's
                           space prefix, which marks the start of a text, is not added */
} EncodeOptions;

/* Encodes len bytes of text (any bytes: invalid UTF-8 ends up as byte tokens). *ids is
 * malloc'd (NULL when there are no ids); the caller frees it. */
int tokenizer_encode_with(const Tokenizer *t, const char *text, size_t len, EncodeOptions opt,
                          int **ids, size_t *n_ids, Error *err);
/* The same with only add_bos: control-token text stays plain text. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids,
                     size_t *n_ids, Error *err);

/* The bytes a token stands for: SPM "▁" becomes a space, a byte token becomes its byte;
 * a byte-level BPE token becomes the bytes its characters stand for ("Ġthe" is " the");
 * USER_DEFINED tokens are their text; CONTROL, UNKNOWN and UNUSED tokens are empty (they
 * are never printed as text). Writes at most cap bytes into buf and returns the token's full
 * length, like snprintf (so a result above cap means buf got a truncated copy; buf may be
 * NULL when cap is 0). */
size_t tokenizer_token_bytes(const Tokenizer *t, int id, char *buf, size_t cap);

/* Decodes ids into a malloc'd NUL-terminated string (*len excludes the NUL). Control
 * tokens are skipped. Byte-level BPE joins the tokens' bytes. For SPM, the one space that
 * encoding put in front is removed again (with add_space_prefix: at the start, and after
 * each USER_DEFINED token, the places where the encoder adds one). The tokens' stored bytes
 * are joined before "▁" turns into spaces, so a "▁" spelled by byte tokens decodes to a
 * space too; that makes decoding the exact inverse of encoding, which token-by-token
 * tokenizer_token_bytes cannot be. An id out of range is an error. */
int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, size_t *len,
                     Error *err);

/* ---- Text in words (tokenizer_words.c) ----
 *
 * A corpus of a gigabyte is neither held in memory whole nor encoded in one call: it is
 * read in segments, and both the trainers and the encoder work on its words. For
 * SentencePiece text a word starts at every space (and at every "▁" already in the text):
 * "The cat  sat" has the words "The", " cat", " ", " sat". A vocabulary learned by quill's
 * `bpe` trainer has no piece with a "▁" after its first character, so no merge crosses the
 * start of a word, and encoding the words one by one gives the ids of encoding the whole
 * text (for valid UTF-8; an invalid byte sequence that swallows a space is cut there
 * instead). Equal words then need encoding only once. */

/* The end of the word that starts at text[start]: the next offset after start where a word
 * starts, or len. */
size_t tokenizer_word_end(const char *text, size_t len, size_t start);

/* True when encoding word by word gives the ids of encoding whole texts: a SentencePiece
 * vocabulary without USER_DEFINED pieces (their cut adds a space prefix of its own) and
 * without a piece that holds "▁" after its first character (Llama 2 has "▁▁", for
 * indented code). */
bool tokenizer_encodes_by_word(const Tokenizer *t);

/* Walks the words of one stretch of text. When the stretch starts a text and space_prefix
 * is set, SentencePiece's space prefix comes first: it joins the first word (" The") or,
 * when the text starts with a space, stands as a word of its own (" "). */
typedef struct {
    const char *text;
    size_t len, off;
    bool prefix_pending;
    char *joined; /* the prefix and the first word, made when needed */
    size_t joined_cap;
} WordCursor;

void word_cursor_start(WordCursor *c, const char *text, size_t len, bool space_prefix);
/* The next word (*word points into the text, or into the cursor for the joined first
 * word). Returns 1 for a word, 0 at the end, -1 when out of memory. */
int word_cursor_next(WordCursor *c, const char **word, size_t *len, Error *err);
void word_cursor_free(WordCursor *c); /* the joined buffer; the cursor can start again */

/* A growing list of token ids. */
typedef struct {
    int *ids;
    size_t n, cap;
} IdList;

int idlist_push(IdList *l, int id, Error *err);
int idlist_append(IdList *l, const int *ids, size_t n, Error *err);

/* Encodes corpora word by word, keeping the ids of the words it has seen (a word cache, as
 * llama.cpp's byte-level encoder keeps for one call, but kept across calls and bounded:
 * it is emptied when it holds 2^20 words). Needs tokenizer_encodes_by_word(t). One encoder
 * per thread; the tokenizer is only read. */
typedef struct WordEncoder WordEncoder;

int word_encoder_new(WordEncoder **e, const Tokenizer *t, Error *err);
void word_encoder_free(WordEncoder *e); /* NULL-safe */
/* Appends the ids of a stretch of text to out. text_start: the stretch starts a text (the
 * space prefix goes in front when the tokenizer adds one); otherwise it continues one, and
 * must start where a word starts. No bos is added. */
int word_encoder_encode(WordEncoder *e, const char *text, size_t len, bool text_start,
                        IdList *out, Error *err);

/* ---- Trainers (tokenizer_train.c) ----
 *
 * A trainer learns from counts of words, not from the text itself, so that its memory
 * grows with the number of distinct words, not with the corpus (as SentencePiece and the
 * HF tokenizers library train). Texts are counted in any pieces, on any number of threads
 * (one TextCounts each, merged at the end): the counts, and so the vocabulary, are the
 * same however the corpus was cut, as long as every piece but a text's first starts where
 * a word starts. */
typedef struct TextCounts TextCounts;

/* Counts for one trainer: TEXT_COUNTS_CHAR or TEXT_COUNTS_BPE (they differ in the space
 * prefix: `bpe` vocabularies put one in front of each text, `char` ones model the text as
 * it is). */
typedef enum { TEXT_COUNTS_CHAR, TEXT_COUNTS_BPE } TextCountsKind;

int text_counts_new(TextCounts **c, TextCountsKind kind, Error *err);
void text_counts_free(TextCounts *c); /* NULL-safe */
/* Counts the words of a stretch of text; text_start as for word_encoder_encode. */
int text_counts_add(TextCounts *c, const char *text, size_t len, bool text_start, Error *err);
/* Adds the counts of `from` (of the same kind) to `into`. */
int text_counts_merge(TextCounts *into, const TextCounts *from, Error *err);
size_t text_counts_distinct_words(const TextCounts *c);
uint64_t text_counts_bytes(const TextCounts *c); /* text counted so far */

/* Both trainers replace whatever *t held: *t must be zeroed or hold a tokenizer, which is
 * freed on success; on failure *t is left as it was. A text with no valid UTF-8 character
 * (empty, or binary) is refused: there is nothing to learn from. */
int tokenizer_train_char_counts(Tokenizer *t, const TextCounts *c, Error *err);
int tokenizer_train_bpe_counts(Tokenizer *t, const TextCounts *c, int vocab_size, Error *err);
/* The same on one text held in memory. */
int tokenizer_train_char(Tokenizer *t, const char *text, size_t len, Error *err);
int tokenizer_train_bpe(Tokenizer *t, const char *text, size_t len, int vocab_size, Error *err);

#endif
