/* Byte-level BPE, run the way llama.cpp runs it for tokenizer.ggml.model = "gpt2" (GPT-2,
 * Llama 3, Qwen2/3 and most models since). The reference is llama.cpp's src/llama-vocab.cpp
 * (llm_tokenizer_bpe: the pre-tokenizer patterns; llm_tokenizer_bpe_session: the merge
 * loop) and src/unicode.cpp (unicode_regex_split, the byte alphabet). docs/formats.md
 * walks through the algorithm.
 *
 * Encoding one stretch of text (special tokens are already cut out by tokenizer.c):
 *   1. pre-tokenize: a regular expression cuts the text into words ("Hello", " world",
 *      "!", "\n"); merges never cross a word boundary;
 *   2. every byte of a word becomes one symbol, the token of its stand-in character;
 *   3. of all neighbouring symbol pairs that form a merge, the one with the lowest rank
 *      (its line number in tokenizer.ggml.merges) merges into one symbol; repeat;
 *   4. the symbols left are the word's tokens.
 *
 * This is the one file that includes pcre2.h: the patterns need Unicode properties
 * (\p{L} letters, \p{N} numbers, \s Unicode white space), which PCRE2 provides. */
#include "tokenizer_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "hash.h"
#include "heap.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---- The byte alphabet ----
 * A GGUF vocabulary is a list of strings and each merge is "left right": text, with a
 * space as the separator. Raw bytes cannot live there: a token may hold a space, a newline,
 * a NUL or half of a UTF-8 character. GPT-2 therefore gives every byte a printable stand-in
 * character. The 188 bytes that are printable Latin-1 characters ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF) stand for themselves; the other 68 (the controls, the space, DEL, the C1
 * block, the no-break space and the soft hyphen) take U+0100, U+0101, ... in byte order.
 * So the space 0x20 is "Ġ" (U+0120), the newline 0x0A is "Ċ" (U+010A), and the token
 * "Ġthe" is the bytes " the". Every stand-in is one or two bytes of UTF-8. */
enum { ALPHABET_END = 256 + 68 }; /* stand-ins are below U+0144 */

static bool byte_is_printable_latin1(int b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* ---- Pre-tokenizers ----
 * llama.cpp picks the pattern by tokenizer.ggml.pre. The patterns are those of the models'
 * tokenizer.json files (Llama 3's and Qwen2's with "(?i:'s|...)" spelled out as "'[sS]|...",
 * as llama.cpp does: PCRE2's caseless matching would also let "'ſ" (long s) match). */

/* GPT-2: a contraction; or a run of letters, of digits, or of other symbols, each with at
 * most one space in front; or white space. "\s+(?!\S)" takes a run of spaces except the
 * last one before a word, which the word takes ("a   b" is "a", "  ", " b"). */
#define PATTERN_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

/* Llama 3: contractions in either case; letters with at most one non-letter, non-digit in
 * front (" world", "(hello"); digits in groups of up to three; symbols with an optional
 * space before and line breaks after; line breaks with the white space before them; other
 * white space as in GPT-2, with a last "\s+" for a run that ends the text. */
#define PATTERN_LLAMA3                                                                         \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Qwen2 (and Qwen3): Llama 3's pattern with every digit a word of its own. */
#define PATTERN_QWEN2                                                                          \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

enum { MAX_NAMES = 4, MAX_PATTERNS = 4 };

typedef struct {
    const char *names[MAX_NAMES];       /* tokenizer.ggml.pre values that select it */
    const char *patterns[MAX_PATTERNS]; /* applied in turn: each one cuts the words that
                                           the one before produced */
    bool ignore_merges; /* a word that is already a whole token is emitted as is */
    bool add_bos;       /* llama.cpp's add_bos default for it */
} PreTokenizer;

static const PreTokenizer PRE_TOKENIZERS[] = {
    /* A file without tokenizer.ggml.pre gets "default" in llama.cpp, a chain of four:
     * punctuation runs first, then GPT-2's pattern, then digit runs, then three digits. */
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", PATTERN_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     false,
     false},
    {{"gpt-2", "gpt2", "phi-2", "roberta-bpe"}, {PATTERN_GPT2}, false, false},
    {{"llama-bpe", "llama3", "llama-v3", "falcon3"}, {PATTERN_LLAMA3}, true, true},
    {{"qwen2", "deepseek-r1-qwen", "megrez"}, {PATTERN_QWEN2}, false, false},
};
enum { N_PRE_TOKENIZERS = sizeof PRE_TOKENIZERS / sizeof PRE_TOKENIZERS[0] };

static const PreTokenizer *pre_tokenizer_find(const char *name)
{
    for (int i = 0; i < N_PRE_TOKENIZERS; i++)
        for (int k = 0; k < MAX_NAMES && PRE_TOKENIZERS[i].names[k]; k++)
            if (strcmp(PRE_TOKENIZERS[i].names[k], name) == 0)
                return &PRE_TOKENIZERS[i];
    return NULL;
}

static int pre_tokenizer_unknown(const char *name, Error *err)
{
    char known[256] = "";
    for (int i = 0; i < N_PRE_TOKENIZERS; i++)
        for (int k = 0; k < MAX_NAMES && PRE_TOKENIZERS[i].names[k]; k++) {
            size_t used = strlen(known);
            snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                     PRE_TOKENIZERS[i].names[k]);
        }
    return error_set(err, "tokenizer.ggml.pre '%.60s' is not supported (quill knows: %s)", name,
                     known);
}

/* ---- The model ---- */

/* One merge in the table: the pair (left id, right id) packed into `key`, its rank and
 * the id of the token it makes. An empty slot has rank -1. */
typedef struct {
    uint64_t key;
    int32_t rank;
    int32_t merged;
} MergeSlot;

struct BpeModel {
    const PreTokenizer *pre;
    char *pre_name;                   /* as the file spelled it */
    pcre2_code *regex[MAX_PATTERNS];
    int n_regex;
    char byte_char[256][2];           /* each byte's stand-in character, UTF-8 */
    unsigned char byte_char_len[256]; /* 1 or 2 */
    int16_t char_byte[ALPHABET_END];  /* stand-in code point -> byte, or -1 */
    MergeSlot *merges;                /* open addressing, a power of two of slots */
    unsigned merge_bits;              /* log2 of the number of slots */
    char **merge_strings;             /* the merges as read, for tokenizer_to_gguf */
    size_t n_merge_strings;
};

static void byte_alphabet_init(BpeModel *m)
{
    for (int cp = 0; cp < ALPHABET_END; cp++)
        m->char_byte[cp] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int cp = byte_is_printable_latin1(b) ? b : next++;
        m->char_byte[cp] = (int16_t)b;
        if (cp < 0x80) {
            m->byte_char[b][0] = (char)cp;
            m->byte_char_len[b] = 1;
        } else {
            m->byte_char[b][0] = (char)(0xC0 | (cp >> 6));
            m->byte_char[b][1] = (char)(0x80 | (cp & 0x3F));
            m->byte_char_len[b] = 2;
        }
    }
}

/* Byte b's token: the one-character piece of its stand-in. */
static void byte_tokens_find(Tokenizer *t)
{
    const BpeModel *m = t->bpe;
    for (int b = 0; b < 256; b++)
        t->byte_token[b] = tokenizer_lookup(t, m->byte_char[b], m->byte_char_len[b]);
}

static int regex_compile_all(BpeModel *m, Error *err)
{
    for (int k = 0; k < MAX_PATTERNS && m->pre->patterns[k]; k++) {
        int code;
        PCRE2_SIZE at;
        /* UTF: the subject is UTF-8; UCP: \s, \d and friends follow Unicode properties;
         * MATCH_INVALID_UTF: bytes that are not valid UTF-8 never match, instead of making
         * the whole match fail (see docs/formats.md: they become words of their own). */
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)m->pre->patterns[k], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code,
                                       &at, NULL);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(code, msg, sizeof msg);
            return error_set(err, "pre-tokenizer '%s', pattern %d at offset %zu: %s",
                             m->pre_name, k, (size_t)at, (const char *)msg);
        }
        /* The JIT compiler makes matching several times faster; where it is unavailable,
         * the interpreter gives the same matches. */
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        m->regex[m->n_regex++] = re;
    }
    return 0;
}

static size_t merge_slot(const BpeModel *m, uint64_t key)
{
    size_t mask = ((size_t)1 << m->merge_bits) - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> (64 - m->merge_bits));
    while (m->merges[i].rank >= 0 && m->merges[i].key != key)
        i = (i + 1) & mask;
    return i;
}

static uint64_t merge_key(int left, int right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* Rank of the merge (left, right) and the token it makes, or -1 when the pair is none. */
static int32_t merge_find(const BpeModel *m, int left, int right, int *merged)
{
    const MergeSlot *s = &m->merges[merge_slot(m, merge_key(left, right))];
    *merged = s->merged;
    return s->rank;
}

/* Reads merge number `rank`, "left right", into the table. The split is at the first
 * space after the first byte (as llama.cpp does, so that a left half " " could exist).
 * A merge whose halves or result are not tokens could never produce a token: llama.cpp
 * keeps it and then finds no id for its result; quill leaves it out. A pair that repeats
 * keeps its first (lowest) rank. */
static int merge_insert(Tokenizer *t, size_t rank, const char *merge, char *scratch,
                        Error *err)
{
    BpeModel *m = t->bpe;
    size_t len = strlen(merge);
    const char *space = len > 1 ? memchr(merge + 1, ' ', len - 1) : NULL;
    if (!space)
        return error_set(err, "tokenizer.ggml.merges[%zu] '%.40s' is not two parts separated "
                              "by a space",
                         rank, merge);
    size_t left_len = (size_t)(space - merge), right_len = len - left_len - 1;
    int left = tokenizer_lookup(t, merge, left_len);
    int right = tokenizer_lookup(t, space + 1, right_len);
    memcpy(scratch, merge, left_len);
    memcpy(scratch + left_len, space + 1, right_len);
    int merged = tokenizer_lookup(t, scratch, left_len + right_len);
    if (left < 0 || right < 0 || merged < 0)
        return 0;
    MergeSlot *s = &m->merges[merge_slot(m, merge_key(left, right))];
    if (s->rank < 0)
        *s = (MergeSlot){merge_key(left, right), (int32_t)rank, merged};
    return 0;
}

static int merge_table_build(Tokenizer *t, const char *const *merges, size_t n, Error *err)
{
    BpeModel *m = t->bpe;
    if (n > INT32_MAX)
        return error_set(err, "tokenizer.ggml.merges has %zu entries (at most %d)", n, INT32_MAX);
    m->merge_bits = 4;
    while (((size_t)1 << m->merge_bits) < 2 * n)
        m->merge_bits++;
    size_t n_slots = (size_t)1 << m->merge_bits, longest = 0;
    m->merges = malloc(n_slots * sizeof *m->merges);
    m->merge_strings = calloc(n ? n : 1, sizeof *m->merge_strings);
    if (!m->merges || !m->merge_strings)
        return error_set(err, "out of memory for %zu merges", n);
    for (size_t i = 0; i < n_slots; i++)
        m->merges[i].rank = -1;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(merges[i]);
        longest = len > longest ? len : longest;
        m->merge_strings[i] = strdup(merges[i]);
        if (!m->merge_strings[i])
            return error_set(err, "out of memory copying merge %zu", i);
        m->n_merge_strings = i + 1;
    }
    char *scratch = malloc(longest + 1);
    if (!scratch)
        return error_set(err, "out of memory for a merge of %zu bytes", longest);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = merge_insert(t, i, merges[i], scratch, err);
    free(scratch);
    return rc;
}

int bpe_model_init(Tokenizer *t, const char *pre, const char *const *merges, size_t n_merges,
                   Error *err)
{
    if (!pre)
        pre = "default";
    const PreTokenizer *spec = pre_tokenizer_find(pre);
    if (!spec)
        return pre_tokenizer_unknown(pre, err);
    BpeModel *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, "out of memory for the BPE model");
    t->bpe = m;
    m->pre = spec;
    m->pre_name = strdup(pre);
    if (!m->pre_name)
        return error_set(err, "out of memory");
    byte_alphabet_init(m);
    byte_tokens_find(t);
    if (regex_compile_all(m, err) < 0)
        return -1;
    return merge_table_build(t, merges, n_merges, err);
}

void bpe_model_free(BpeModel *m)
{
    if (!m)
        return;
    for (int k = 0; k < m->n_regex; k++)
        pcre2_code_free(m->regex[k]);
    for (size_t i = 0; i < m->n_merge_strings; i++)
        free(m->merge_strings[i]);
    free(m->merge_strings);
    free(m->merges);
    free(m->pre_name);
    free(m);
}

const char *bpe_model_pre_name(const BpeModel *m)
{
    return m->pre_name;
}

bool bpe_model_default_add_bos(const BpeModel *m)
{
    return m->pre->add_bos;
}

const char *const *bpe_model_merges(const BpeModel *m, size_t *n)
{
    *n = m->n_merge_strings;
    return (const char *const *)m->merge_strings;
}

/* ---- Encoding, step 1: pre-tokenization ---- */

typedef struct {
    size_t off, len;
} Span;

typedef struct {
    Span *v;
    size_t n, cap;
} SpanList;

static int span_push(SpanList *l, size_t off, size_t len, Error *err)
{
    if (buffer_reserve_items(&l->v, &l->cap, l->n + 1, sizeof *l->v, 256, "words", err) != 0)
        return -1;
    l->v[l->n++] = (Span){off, len};
    return 0;
}

/* ---- The word cache: word bytes -> ids ----
 * Open addressing over pointers into the text being encoded, which outlives the session.
 * The ids of all cached words sit one after another in `ids`. */
typedef struct {
    const char *word; /* NULL: empty slot */
    size_t len;
    uint64_t hash;
    size_t first; /* the word's ids are ids.ids[first, first + n) */
    size_t n;
} CacheSlot;

typedef struct {
    CacheSlot *slots;
    size_t mask, used;
    IdList ids;
} WordCache;

static size_t cache_probe(const WordCache *c, const char *word, size_t len, uint64_t hash)
{
    size_t i = (size_t)hash & c->mask;
    while (c->slots[i].word &&
           (c->slots[i].hash != hash || c->slots[i].len != len ||
            memcmp(c->slots[i].word, word, len) != 0))
        i = (i + 1) & c->mask;
    return i;
}

/* Doubles the table when it is half full, so that probe sequences stay short. */
static int cache_grow(WordCache *c, Error *err)
{
    size_t n_slots = c->slots ? 2 * (c->mask + 1) : 4096;
    CacheSlot *old = c->slots;
    size_t old_n = c->slots ? c->mask + 1 : 0;
    c->slots = calloc(n_slots, sizeof *c->slots);
    if (!c->slots) {
        c->slots = old;
        return error_set(err, "out of memory for a word cache of %zu slots", n_slots);
    }
    c->mask = n_slots - 1;
    for (size_t i = 0; i < old_n; i++)
        if (old[i].word)
            c->slots[cache_probe(c, old[i].word, old[i].len, old[i].hash)] = old[i];
    free(old);
    return 0;
}

/* ---- Encoding, steps 2 to 4: one word ---- */

/* A symbol of the word being merged: a token id, linked to its live neighbours. A symbol
 * merged into its left neighbour gets id -1. */
typedef struct {
    int id;
    int prev, next;
} WordSymbol;

/* A pair of neighbouring symbols that form a merge. When it comes out of the queue, it
 * still applies only if both symbols still hold the ids it was queued with: a symbol's id
 * changes whenever it merges (into a longer token, so never back), so a changed id means
 * the pair is stale and is skipped, as in the SentencePiece encoder. */
typedef struct {
    int32_t rank;
    int left, right;
    int left_id, right_id, merged;
} WordPair;

struct BpeSession {
    const Tokenizer *t;
    pcre2_match_data *match;
    SpanList words, spare; /* the words of the current pattern, and of the one before */
    WordCache cache;
    WordSymbol *symbols;
    size_t cap_symbols;
    Heap queue; /* of WordPair: the first out merges first (pair_before) */
    char *chars; /* a word in the byte alphabet (for ignore_merges) */
    size_t cap_chars;
};

/* Lowest rank first; on a tie (the same merge twice in a word), the pair further left. */
static bool pair_before(const void *x, const void *y, const void *unused)
{
    const WordPair *a = x, *b = y;
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

int bpe_session_new(BpeSession **out, const Tokenizer *t, Error *err)
{
    BpeSession *s = calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return error_set(err, "out of memory for a BPE session");
    s->t = t;
    heap_init(&s->queue, sizeof(WordPair), 64, pair_before, NULL);
    s->match = pcre2_match_data_create(1, NULL);
    if (!s->match || cache_grow(&s->cache, err) < 0)
        return error_set(err, "out of memory for a BPE session");
    return 0;
}

void bpe_session_free(BpeSession *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->match);
    free(s->words.v);
    free(s->spare.v);
    free(s->cache.slots);
    free(s->cache.ids.ids);
    free(s->symbols);
    heap_free(&s->queue);
    free(s->chars);
    free(s);
}

/* Queues the pair of symbols left and right when it is a merge. */
static int word_try_pair(BpeSession *s, int left, int right, Error *err)
{
    if (left < 0 || right < 0)
        return 0;
    int l = s->symbols[left].id, r = s->symbols[right].id, merged;
    int32_t rank = merge_find(s->t->bpe, l, r, &merged);
    if (rank < 0)
        return 0;
    WordPair p = {rank, left, right, l, r, merged};
    return heap_push(&s->queue, &p, "queued merges", err);
}

/* The token of one byte. Byte-level vocabularies have all 256; in one that lacks a byte,
 * llama.cpp drops it silently, while quill takes <unk> or reports the byte. */
static int byte_token_or_unk(const Tokenizer *t, unsigned char byte, Error *err)
{
    if (t->byte_token[byte] >= 0)
        return t->byte_token[byte];
    if (t->unk_id >= 0)
        return t->unk_id;
    return error_set(err, "byte 0x%02X cannot be encoded: the vocabulary has no token for it "
                          "and no <unk>",
                     byte);
}

/* With ignore_merges (Llama 3), a word whose byte-alphabet spelling is a whole token is
 * that token, even where the merges would build it in another way or not at all. */
static int word_whole_token(BpeSession *s, const char *word, size_t n, int *id, Error *err)
{
    const BpeModel *m = s->t->bpe;
    /* each byte is a character of 1 or 2 bytes in the byte alphabet */
    if (buffer_reserve(&s->chars, &s->cap_chars, 2 * n, 64, "a word", err) != 0)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)word[i];
        memcpy(s->chars + k, m->byte_char[b], m->byte_char_len[b]);
        k += m->byte_char_len[b];
    }
    *id = tokenizer_lookup(s->t, s->chars, k);
    return 0;
}

/* Steps 2 and 3 for a word of n > 0 bytes; appends its ids to out. */
static int word_merge(BpeSession *s, const char *word, size_t n, IdList *out, Error *err)
{
    if (n > INT_MAX)
        return error_set(err, "a word of %zu bytes is too long to encode", n);
    if (s->t->bpe->pre->ignore_merges) {
        int id = -1;
        if (word_whole_token(s, word, n, &id, err) < 0)
            return -1;
        if (id >= 0)
            return idlist_push(out, id, err);
    }
    if (buffer_reserve_items(&s->symbols, &s->cap_symbols, n, sizeof *s->symbols, 64,
                             "a word's symbols", err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int id = byte_token_or_unk(s->t, (unsigned char)word[i], err);
        if (id < 0)
            return -1;
        s->symbols[i] = (WordSymbol){id, (int)i - 1, i + 1 == n ? -1 : (int)i + 1};
    }
    s->queue.n = 0;
    for (size_t i = 1; i < n; i++)
        if (word_try_pair(s, (int)i - 1, (int)i, err) < 0)
            return -1;
    while (s->queue.n > 0) {
        WordPair p;
        heap_pop(&s->queue, &p);
        WordSymbol *left = &s->symbols[p.left], *right = &s->symbols[p.right];
        if (left->id != p.left_id || right->id != p.right_id)
            continue; /* stale */
        left->id = p.merged;
        right->id = -1;
        left->next = right->next;
        if (right->next >= 0)
            s->symbols[right->next].prev = p.left;
        if (word_try_pair(s, left->prev, p.left, err) < 0 ||
            word_try_pair(s, p.left, left->next, err) < 0)
            return -1;
    }
    /* Symbols only ever absorb their right neighbour, so symbol 0 starts the list. */
    for (int i = 0; i != -1; i = s->symbols[i].next)
        if (idlist_push(out, s->symbols[i].id, err) < 0)
            return -1;
    return 0;
}

/* A word's ids: from the cache, or merged and then cached. */
static int word_encode(BpeSession *s, const char *word, size_t n, IdList *out, Error *err)
{
    WordCache *c = &s->cache;
    uint64_t hash = hash64(word, n);
    size_t slot = cache_probe(c, word, n, hash);
    if (!c->slots[slot].word) {
        size_t first = c->ids.n;
        if (word_merge(s, word, n, &c->ids, err) < 0)
            return -1;
        c->slots[slot] = (CacheSlot){word, n, hash, first, c->ids.n - first};
        if (++c->used * 2 > c->mask + 1) {
            if (cache_grow(c, err) < 0)
                return -1;
            slot = cache_probe(c, word, n, hash);
        }
    }
    const CacheSlot *hit = &c->slots[slot];
    for (size_t i = 0; i < hit->n; i++)
        if (idlist_push(out, c->ids.ids[hit->first + i], err) < 0)
            return -1;
    return 0;
}

/* Cuts one piece of the text with one pattern: every match is a word, and so is every
 * stretch between matches (the patterns match almost everything; GPT-2's leaves, for
 * example, a newline before a letter unmatched). PCRE2_NOTEMPTY: no pattern may match
 * nothing, which also guarantees progress. The piece is the whole subject, so a lookahead
 * such as (?!\S) sees the piece's end as the end of the text, as in llama.cpp. */
static int regex_split(BpeSession *s, const pcre2_code *re, const char *text, Span piece,
                       SpanList *out, Error *err)
{
    PCRE2_SPTR subject = (PCRE2_SPTR)(text + piece.off);
    size_t at = 0;
    while (at < piece.len) {
        int rc = pcre2_match(re, subject, piece.len, at, PCRE2_NOTEMPTY, s->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return error_set(err, "pre-tokenizer: %s", (const char *)msg);
        }
        const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(s->match);
        if (ovector[0] > at && span_push(out, piece.off + at, ovector[0] - at, err) < 0)
            return -1;
        if (span_push(out, piece.off + ovector[0], ovector[1] - ovector[0], err) < 0)
            return -1;
        at = ovector[1];
    }
    if (at < piece.len)
        return span_push(out, piece.off + at, piece.len - at, err);
    return 0;
}

/* Step 1: the words of the text, in s->words. */
static int pre_tokenize(BpeSession *s, const char *text, size_t len, Error *err)
{
    const BpeModel *m = s->t->bpe;
    s->words.n = 0;
    if (regex_split(s, m->regex[0], text, (Span){0, len}, &s->words, err) < 0)
        return -1;
    for (int k = 1; k < m->n_regex; k++) {
        SpanList before = s->words;
        s->words = s->spare;
        s->words.n = 0;
        int rc = 0;
        for (size_t i = 0; i < before.n && rc == 0; i++)
            rc = regex_split(s, m->regex[k], text, before.v[i], &s->words, err);
        s->spare = before;
        if (rc < 0)
            return -1;
    }
    return 0;
}

int bpe_encode_fragment(BpeSession *s, const char *text, size_t len, IdList *out, Error *err)
{
    if (pre_tokenize(s, text, len, err) < 0)
        return -1;
    for (size_t i = 0; i < s->words.n; i++)
        if (word_encode(s, text + s->words.v[i].off, s->words.v[i].len, out, err) < 0)
            return -1;
    return 0;
}

/* ---- Decoding ---- */

/* Copies src into buf[at...] as far as cap allows. */
static void copy_clipped(char *buf, size_t cap, size_t at, const char *src, size_t n)
{
    if (at < cap)
        memcpy(buf + at, src, n < cap - at ? n : cap - at);
}

/* Each character of the piece that is a stand-in becomes its byte. Anything else (which
 * a byte-level vocabulary should not hold) is copied as it is: llama.cpp writes
 * "[UNK_BYTE_0x...]" there instead. */
size_t bpe_token_bytes(const Tokenizer *t, int id, char *buf, size_t cap)
{
    const BpeModel *m = t->bpe;
    const unsigned char *p = (const unsigned char *)t->pieces[id];
    size_t len = strlen(t->pieces[id]), n = 0;
    for (size_t i = 0; i < len;) {
        int cp = -1;
        size_t char_len = utf8_len(p[i]);
        if (char_len > len - i)
            char_len = len - i;
        if (char_len == 1)
            cp = p[i];
        else if (char_len == 2 && (p[i + 1] & 0xC0) == 0x80)
            cp = (p[i] & 0x1F) << 6 | (p[i + 1] & 0x3F);
        if (cp >= 0 && cp < ALPHABET_END && m->char_byte[cp] >= 0) {
            char byte = (char)m->char_byte[cp];
            copy_clipped(buf, cap, n++, &byte, 1);
        } else {
            copy_clipped(buf, cap, n, (const char *)p + i, char_len);
            n += char_len;
        }
        i += char_len;
    }
    return n;
}
