/* Vocabulary trainers: `char` (one piece per character of the corpus) and `bpe`
 * (SentencePiece-style byte-pair encoding). Both produce the layout llama.cpp expects of a
 * "llama" vocabulary:
 *
 *   id 0      <unk>   UNKNOWN
 *   id 1      <s>     CONTROL  (bos)
 *   id 2      </s>    CONTROL  (eos)
 *   id 3..258 <0x00> .. <0xFF>  BYTE: the fallback for anything that is not a piece
 *   id 259..  characters, most frequent first (NORMAL), then, for bpe, the merged pieces
 *             in the order they were learned (NORMAL)
 *
 * Scores. The encoder merges the pair whose merged piece has the highest score, so the
 * merge learned first scores highest: merged piece number r (0-based) scores -r.
 * Characters are never the result of a merge, so the encoder never compares their scores;
 * they get -(n_merges + i) for the i-th most frequent, below every merge, which keeps the
 * SentencePiece habit "a higher score is a more useful piece" for tools that read scores.
 * Special and byte pieces score 0, as in the Llama 2 vocabulary. */
#include "tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* "▁", a space as pieces store it */
enum { SPACE_MARK_LEN = 3 };

enum { N_SPECIAL = 3, N_FIXED = N_SPECIAL + 256 }; /* <unk> <s> </s>, then the bytes */

/* ---- A map from byte strings to ints ----
 * Open addressing with linear probing, grown to keep at most half the slots full. Keys are
 * borrowed: they point into the corpus or into the vocabulary and must outlive the map. */
typedef struct {
    const char **keys;
    size_t *lens;
    int *values; /* -1 marks an empty slot */
    size_t mask, n;
} StrMap;

static int strmap_alloc(StrMap *m, size_t n_slots, Error *err)
{
    m->keys = malloc(n_slots * sizeof *m->keys);
    m->lens = malloc(n_slots * sizeof *m->lens);
    m->values = malloc(n_slots * sizeof *m->values);
    if (!m->keys || !m->lens || !m->values)
        return error_set(err, "out of memory for a hash table of %zu slots", n_slots);
    for (size_t i = 0; i < n_slots; i++)
        m->values[i] = -1;
    m->mask = n_slots - 1;
    m->n = 0;
    return 0;
}

static void strmap_free(StrMap *m)
{
    free(m->keys);
    free(m->lens);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static size_t strmap_slot(const StrMap *m, const char *key, size_t len)
{
    size_t i = (size_t)hash64(key, len) & m->mask;
    while (m->values[i] >= 0 && (m->lens[i] != len || memcmp(m->keys[i], key, len) != 0))
        i = (i + 1) & m->mask;
    return i;
}

static int strmap_get(const StrMap *m, const char *key, size_t len)
{
    return m->values[strmap_slot(m, key, len)];
}

static int strmap_grow(StrMap *m, Error *err)
{
    StrMap old = *m;
    if (strmap_alloc(m, 2 * (old.mask + 1), err) < 0) {
        strmap_free(m);
        *m = old;
        return -1;
    }
    for (size_t i = 0; i <= old.mask; i++) {
        if (old.values[i] < 0)
            continue;
        size_t slot = strmap_slot(m, old.keys[i], old.lens[i]);
        m->keys[slot] = old.keys[i];
        m->lens[slot] = old.lens[i];
        m->values[slot] = old.values[i];
    }
    m->n = old.n;
    strmap_free(&old);
    return 0;
}

/* Adds a key that is not in the map yet. */
static int strmap_put(StrMap *m, const char *key, size_t len, int value, Error *err)
{
    if (2 * (m->n + 1) > m->mask + 1 && strmap_grow(m, err) < 0)
        return -1;
    size_t slot = strmap_slot(m, key, len);
    m->keys[slot] = key;
    m->lens[slot] = len;
    m->values[slot] = value;
    m->n++;
    return 0;
}

/* ---- The vocabulary being built ---- */

typedef struct {
    char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    int n, cap;
} VocabBuilder;

static void vocab_free(VocabBuilder *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->pieces[i]);
    free(v->pieces);
    free(v->lens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

static int vocab_grow(VocabBuilder *v, Error *err)
{
    int cap = v->cap ? 2 * v->cap : 512;
    char **pieces = realloc(v->pieces, (size_t)cap * sizeof *pieces);
    if (pieces)
        v->pieces = pieces;
    size_t *lens = realloc(v->lens, (size_t)cap * sizeof *lens);
    if (lens)
        v->lens = lens;
    float *scores = realloc(v->scores, (size_t)cap * sizeof *scores);
    if (scores)
        v->scores = scores;
    int32_t *types = realloc(v->types, (size_t)cap * sizeof *types);
    if (types)
        v->types = types;
    if (!pieces || !lens || !scores || !types)
        return error_set(err, "out of memory for a vocabulary of %d pieces", cap);
    v->cap = cap;
    return 0;
}

static int vocab_add(VocabBuilder *v, const char *piece, size_t len, float score, int32_t type,
                     Error *err)
{
    if (v->n == v->cap && vocab_grow(v, err) < 0)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return error_set(err, "out of memory copying a piece of %zu bytes", len);
    memcpy(copy, piece, len);
    copy[len] = '\0';
    v->pieces[v->n] = copy;
    v->lens[v->n] = len;
    v->scores[v->n] = score;
    v->types[v->n] = type;
    v->n++;
    return 0;
}

/* Ids 0 .. N_FIXED-1: the three specials and the 256 byte tokens. */
static int vocab_add_fixed(VocabBuilder *v, Error *err)
{
    if (vocab_add(v, "<unk>", 5, 0.0f, TOKEN_TYPE_UNKNOWN, err) < 0 ||
        vocab_add(v, "<s>", 3, 0.0f, TOKEN_TYPE_CONTROL, err) < 0 ||
        vocab_add(v, "</s>", 4, 0.0f, TOKEN_TYPE_CONTROL, err) < 0)
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', '\0'};
        if (vocab_add(v, name, 6, 0.0f, TOKEN_TYPE_BYTE, err) < 0)
            return -1;
    }
    return 0;
}

/* Turns the builder into *t, replacing what *t held. */
static int vocab_finish(VocabBuilder *v, Tokenizer *t, bool add_space_prefix, Error *err)
{
    Tokenizer fresh;
    if (tokenizer_init(&fresh, v->n, (const char *const *)v->pieces, v->scores, v->types, err) <
        0)
        return -1;
    fresh.add_bos = true;
    fresh.add_space_prefix = add_space_prefix;
    tokenizer_free(t);
    *t = fresh;
    return 0;
}

/* ---- Characters ---- */

/* True when the bytes, cut the way the encoder cuts text (tokenizer_utf8_len), are one
 * valid UTF-8 character: right length, continuation bytes 10xxxxxx, shortest form, no
 * UTF-16 surrogate, at most U+10FFFF. Anything else is not a character: the encoder will
 * see a symbol that is no piece, and fall back to byte tokens. */
static bool utf8_is_char(const unsigned char *s, size_t n)
{
    if (n != tokenizer_utf8_len(s[0]))
        return false;
    if (n == 1)
        return s[0] < 0x80;
    uint32_t cp = s[0] & (0x7F >> n); /* the lead byte's payload bits */
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return false;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    return s[0] <= 0xF4 && cp >= min_cp[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
}

/* Length of the character starting at text[off], clipped at the end (the encoder's cut). */
static size_t cut_len(const char *text, size_t len, size_t off)
{
    size_t n = tokenizer_utf8_len((unsigned char)text[off]);
    return n < len - off ? n : len - off;
}

/* A vocabulary is learned from characters: a text without a single valid UTF-8 character
 * (empty, or binary) has nothing to learn from, and is refused with a message that says
 * so rather than producing a vocabulary of byte tokens only. */
static int text_check_learnable(const char *text, size_t len, Error *err)
{
    for (size_t off = 0; off < len;) {
        size_t n = cut_len(text, len, off);
        if (utf8_is_char((const unsigned char *)text + off, n))
            return 0;
        off += n;
    }
    if (len == 0)
        return error_set(err, "the training text is empty");
    return error_set(err, "the training text (%zu bytes) holds no valid UTF-8 character", len);
}

typedef struct {
    const char *bytes; /* borrowed: into the escaped corpus, or SPACE_MARK */
    size_t len;
    int64_t count;
} CharCount;

typedef struct {
    CharCount *items;
    int n, cap;
    StrMap index; /* bytes -> position in items, while counting */
} CharTable;

static void chars_free(CharTable *c)
{
    free(c->items);
    strmap_free(&c->index);
    memset(c, 0, sizeof *c);
}

static int chars_bump(CharTable *c, const char *bytes, size_t len, int64_t count, Error *err)
{
    int at = strmap_get(&c->index, bytes, len);
    if (at < 0) {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 256;
            CharCount *grown = realloc(c->items, (size_t)cap * sizeof *grown);
            if (!grown)
                return error_set(err, "out of memory counting characters");
            c->items = grown;
            c->cap = cap;
        }
        at = c->n++;
        c->items[at] = (CharCount){bytes, len, 0};
        if (strmap_put(&c->index, bytes, len, at, err) < 0)
            return -1;
    }
    c->items[at].count += count;
    return 0;
}

static int bytes_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

/* Most frequent first; equal counts in byte order, so the order never depends on the
 * corpus layout. */
static int char_count_cmp(const void *a, const void *b)
{
    const CharCount *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return bytes_cmp(x->bytes, x->len, y->bytes, y->len);
}

/* Counts the characters of an escaped text, sorted most frequent first. */
static int chars_count(CharTable *c, const char *text, size_t len, Error *err)
{
    if (strmap_alloc(&c->index, 1024, err) < 0)
        return -1;
    for (size_t off = 0; off < len;) {
        size_t n = cut_len(text, len, off);
        if (utf8_is_char((const unsigned char *)text + off, n) &&
            chars_bump(c, text + off, n, 1, err) < 0)
            return -1;
        off += n;
    }
    qsort(c->items, (size_t)c->n, sizeof *c->items, char_count_cmp);
    strmap_free(&c->index); /* positions changed with the sort */
    return 0;
}

/* Keeps the n_keep most frequent characters. */
static void chars_keep(CharTable *c, int n_keep)
{
    if (n_keep < c->n)
        c->n = n_keep;
}

static int vocab_add_chars(VocabBuilder *v, const CharTable *c, Error *err)
{
    for (int i = 0; i < c->n; i++)
        if (vocab_add(v, c->items[i].bytes, c->items[i].len, (float)-i, TOKEN_TYPE_NORMAL, err) <
            0)
            return -1;
    return 0;
}

int tokenizer_train_char(Tokenizer *t, const char *text, size_t len, Error *err)
{
    char *escaped;
    size_t n;
    if (text_check_learnable(text, len, err) < 0 ||
        tokenizer_escape(text, len, false, &escaped, &n, err) < 0)
        return -1;
    CharTable chars = {0};
    VocabBuilder v = {0};
    int rc = chars_count(&chars, escaped, n, err);
    if (rc == 0)
        rc = vocab_add_fixed(&v, err);
    if (rc == 0)
        rc = vocab_add_chars(&v, &chars, err);
    if (rc == 0)
        rc = vocab_finish(&v, t, false, err);
    vocab_free(&v);
    chars_free(&chars);
    free(escaped);
    return rc;
}

/* ---- BPE ----
 *
 * The corpus is escaped as the encoder escapes it (" " in front, spaces as "▁") and cut
 * into words, each starting at a "▁": "▁the▁cat\nsat" has the words "▁the" and
 * "▁cat\nsat". Merges never cross a word boundary, so no piece has a "▁" after its
 * first character. Equal words are counted once, with their number of occurrences.
 *
 * Each round merges the most frequent pair of neighbouring pieces. Recounting all pairs
 * every round would cost a pass over the corpus per merge; instead every pair keeps its
 * count, updated only for the words a merge changes, and the list of words it occurs in
 * (a posting list, which may hold words that lost the pair since; those are checked).
 * A max-heap holds (count, pair) entries; an entry whose count is no longer the pair's
 * count is stale and skipped, which spares finding and removing it on every change. */

typedef struct {
    int *syms; /* piece ids; -1 for a character outside the vocabulary: it never merges */
    int n;
    int64_t count; /* occurrences in the corpus */
    int stamp;     /* the last merge round that processed this word */
} Word;

typedef struct {
    int left, right; /* piece ids */
    int64_t count;   /* occurrences of the pair, over all words */
    int64_t queued;  /* count of its newest heap entry, or -1 */
    int stamp;       /* the last round that put it on the changed list */
    bool banned;     /* its merge would make a special piece buildable */
    int *words;      /* posting list */
    int n_words, cap_words;
} Pair;

typedef struct {
    int64_t count;
    int pair;
} HeapEntry;

typedef struct {
    VocabBuilder vocab;
    StrMap piece_ids; /* piece text -> id */
    Word *words;
    int n_words, cap_words;
    int *syms; /* storage for all words' symbols */
    Pair *pairs;
    int n_pairs, cap_pairs;
    int *pair_slots; /* (left, right) -> index in pairs: open addressing, -1 empty */
    size_t pair_mask;
    HeapEntry *heap;
    size_t n_heap, cap_heap;
    int *changed; /* pairs whose count changed in this round */
    int n_changed, cap_changed;
    int round;
    int n_merged; /* pieces added by merges */
} BpeTrainer;

static void bpe_trainer_free(BpeTrainer *tr)
{
    vocab_free(&tr->vocab);
    strmap_free(&tr->piece_ids);
    free(tr->words);
    free(tr->syms);
    for (int i = 0; i < tr->n_pairs; i++)
        free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->pair_slots);
    free(tr->heap);
    free(tr->changed);
    memset(tr, 0, sizeof *tr);
}

/* ---- Pairs ---- */

static size_t pair_slot(const BpeTrainer *tr, int left, int right)
{
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 20) & tr->pair_mask;
    for (;;) {
        int p = tr->pair_slots[i];
        if (p < 0 || (tr->pairs[p].left == left && tr->pairs[p].right == right))
            return i;
        i = (i + 1) & tr->pair_mask;
    }
}

static int pair_table_grow(BpeTrainer *tr, Error *err)
{
    size_t n_slots = tr->pair_slots ? 2 * (tr->pair_mask + 1) : 4096;
    int *slots = malloc(n_slots * sizeof *slots);
    Pair *pairs = realloc(tr->pairs, n_slots / 2 * sizeof *pairs);
    if (pairs)
        tr->pairs = pairs;
    if (!slots || !pairs) {
        free(slots);
        return error_set(err, "out of memory for %zu pairs", n_slots / 2);
    }
    for (size_t i = 0; i < n_slots; i++)
        slots[i] = -1;
    free(tr->pair_slots);
    tr->pair_slots = slots;
    tr->pair_mask = n_slots - 1;
    tr->cap_pairs = (int)(n_slots / 2);
    for (int p = 0; p < tr->n_pairs; p++)
        tr->pair_slots[pair_slot(tr, tr->pairs[p].left, tr->pairs[p].right)] = p;
    return 0;
}

/* The index of pair (left, right), created with count 0 when new; -1 on failure. */
static int pair_find_or_add(BpeTrainer *tr, int left, int right, Error *err)
{
    size_t slot = pair_slot(tr, left, right);
    if (tr->pair_slots[slot] >= 0)
        return tr->pair_slots[slot];
    if (tr->n_pairs == tr->cap_pairs) {
        if (pair_table_grow(tr, err) < 0)
            return -1;
        slot = pair_slot(tr, left, right);
    }
    int p = tr->n_pairs++;
    tr->pairs[p] = (Pair){.left = left, .right = right, .queued = -1, .stamp = -1};
    tr->pair_slots[slot] = p;
    return p;
}

static int pair_note_word(Pair *pair, int w, Error *err)
{
    if (pair->n_words > 0 && pair->words[pair->n_words - 1] == w)
        return 0;
    if (pair->n_words == pair->cap_words) {
        int cap = pair->cap_words ? 2 * pair->cap_words : 4;
        int *grown = realloc(pair->words, (size_t)cap * sizeof *grown);
        if (!grown)
            return error_set(err, "out of memory for a pair's word list");
        pair->words = grown;
        pair->cap_words = cap;
    }
    pair->words[pair->n_words++] = w;
    return 0;
}

static int changed_push(BpeTrainer *tr, int p, Error *err)
{
    if (tr->pairs[p].stamp == tr->round)
        return 0;
    if (tr->n_changed == tr->cap_changed) {
        int cap = tr->cap_changed ? 2 * tr->cap_changed : 1024;
        int *grown = realloc(tr->changed, (size_t)cap * sizeof *grown);
        if (!grown)
            return error_set(err, "out of memory for the changed pairs");
        tr->changed = grown;
        tr->cap_changed = cap;
    }
    tr->changed[tr->n_changed++] = p;
    tr->pairs[p].stamp = tr->round;
    return 0;
}

/* Adds `sign` times the word's count to every pair of neighbouring pieces in word w;
 * when adding, also notes w in the pairs' posting lists. */
static int word_count_pairs(BpeTrainer *tr, int w, int sign, Error *err)
{
    const Word *word = &tr->words[w];
    for (int i = 0; i + 1 < word->n; i++) {
        if (word->syms[i] < 0 || word->syms[i + 1] < 0)
            continue;
        int p = pair_find_or_add(tr, word->syms[i], word->syms[i + 1], err);
        if (p < 0 || changed_push(tr, p, err) < 0)
            return -1;
        tr->pairs[p].count += sign * word->count;
        if (sign > 0 && pair_note_word(&tr->pairs[p], w, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- The heap of pairs ---- */

static int piece_cmp(const BpeTrainer *tr, int a, int b)
{
    const VocabBuilder *v = &tr->vocab;
    return bytes_cmp(v->pieces[a], v->lens[a], v->pieces[b], v->lens[b]);
}

/* The more frequent pair first; on equal counts, the pair whose left piece, then right
 * piece, comes first in byte order, so that training is deterministic. */
static bool entry_before(const BpeTrainer *tr, const HeapEntry *x, const HeapEntry *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    const Pair *p = &tr->pairs[x->pair], *q = &tr->pairs[y->pair];
    int c = piece_cmp(tr, p->left, q->left);
    if (c == 0)
        c = piece_cmp(tr, p->right, q->right);
    return c < 0;
}

static void entry_swap(HeapEntry *a, HeapEntry *b)
{
    HeapEntry tmp = *a;
    *a = *b;
    *b = tmp;
}

static int heap_push(BpeTrainer *tr, int p, Error *err)
{
    if (tr->n_heap == tr->cap_heap) {
        size_t cap = tr->cap_heap ? 2 * tr->cap_heap : 4096;
        HeapEntry *grown = realloc(tr->heap, cap * sizeof *grown);
        if (!grown)
            return error_set(err, "out of memory for %zu queued pairs", cap);
        tr->heap = grown;
        tr->cap_heap = cap;
    }
    size_t i = tr->n_heap++;
    tr->heap[i] = (HeapEntry){tr->pairs[p].count, p};
    tr->pairs[p].queued = tr->pairs[p].count;
    while (i > 0 && entry_before(tr, &tr->heap[i], &tr->heap[(i - 1) / 2])) {
        entry_swap(&tr->heap[i], &tr->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    return 0;
}

static HeapEntry heap_pop(BpeTrainer *tr)
{
    HeapEntry top = tr->heap[0];
    tr->heap[0] = tr->heap[--tr->n_heap];
    size_t i = 0;
    for (;;) {
        size_t best = i, kid = 2 * i + 1;
        if (kid < tr->n_heap && entry_before(tr, &tr->heap[kid], &tr->heap[best]))
            best = kid;
        if (kid + 1 < tr->n_heap && entry_before(tr, &tr->heap[kid + 1], &tr->heap[best]))
            best = kid + 1;
        if (best == i)
            return top;
        entry_swap(&tr->heap[i], &tr->heap[best]);
        i = best;
    }
}

/* The most frequent pair that may be merged, or -1 when no pair is left. */
static int heap_pop_best(BpeTrainer *tr)
{
    while (tr->n_heap > 0) {
        HeapEntry e = heap_pop(tr);
        const Pair *p = &tr->pairs[e.pair];
        if (!p->banned && e.count == p->count)
            return e.pair;
    }
    return -1;
}

/* Queues every pair whose count changed in this round (and is still worth merging). */
static int heap_requeue_changed(BpeTrainer *tr, Error *err)
{
    for (int i = 0; i < tr->n_changed; i++) {
        const Pair *p = &tr->pairs[tr->changed[i]];
        if (!p->banned && p->count > 0 && p->count != p->queued &&
            heap_push(tr, tr->changed[i], err) < 0)
            return -1;
    }
    tr->n_changed = 0;
    return 0;
}

/* ---- Words ---- */

static int words_add(BpeTrainer *tr, StrMap *word_ids, const char *bytes, size_t len,
                     Error *err)
{
    int w = strmap_get(word_ids, bytes, len);
    if (w < 0) {
        if (tr->n_words == tr->cap_words) {
            int cap = tr->cap_words ? 2 * tr->cap_words : 1024;
            Word *grown = realloc(tr->words, (size_t)cap * sizeof *grown);
            if (!grown)
                return error_set(err, "out of memory for %d distinct words", cap);
            tr->words = grown;
            tr->cap_words = cap;
        }
        w = tr->n_words++;
        tr->words[w] = (Word){.syms = NULL, .n = 0, .count = 0, .stamp = -1};
        if (strmap_put(word_ids, bytes, len, w, err) < 0)
            return -1;
    }
    tr->words[w].count++;
    return 0;
}

/* Cuts the escaped corpus into words that start at "▁" and counts each distinct word. */
static int words_count(BpeTrainer *tr, const char *text, size_t len, StrMap *word_ids,
                       Error *err)
{
    size_t start = 0;
    for (size_t off = 0; off < len;) {
        size_t n = cut_len(text, len, off);
        bool space = n == SPACE_MARK_LEN && memcmp(text + off, SPACE_MARK, SPACE_MARK_LEN) == 0;
        if (space && off > start) {
            if (words_add(tr, word_ids, text + start, off - start, err) < 0)
                return -1;
            start = off;
        }
        off += n;
    }
    return len > start ? words_add(tr, word_ids, text + start, len - start, err) : 0;
}

/* Gives every distinct word its symbols: the piece id of each character, -1 for
 * characters the vocabulary does not hold. */
static int words_split(BpeTrainer *tr, const StrMap *word_ids, Error *err)
{
    size_t total = 0;
    for (size_t i = 0; i <= word_ids->mask; i++)
        total += word_ids->values[i] >= 0 ? word_ids->lens[i] : 0;
    tr->syms = malloc((total + 1) * sizeof *tr->syms);
    if (!tr->syms)
        return error_set(err, "out of memory for %zu symbols", total);
    size_t used = 0;
    for (size_t i = 0; i <= word_ids->mask; i++) {
        if (word_ids->values[i] < 0)
            continue;
        Word *word = &tr->words[word_ids->values[i]];
        const char *bytes = word_ids->keys[i];
        size_t len = word_ids->lens[i];
        word->syms = tr->syms + used;
        for (size_t off = 0; off < len;) {
            size_t n = cut_len(bytes, len, off);
            word->syms[word->n++] = strmap_get(&tr->piece_ids, bytes + off, n);
            off += n;
        }
        used += (size_t)word->n;
    }
    return 0;
}

/* ---- Merging ---- */

/* True when text is a prefix or a suffix of one of the special or byte pieces ("<s",
 * "s>", "<0x", "A>", ...). Such a piece is never learned. The encoder merges any two
 * neighbours whose concatenation is a piece, whatever its type: with "<s" in the
 * vocabulary, the text "<s>" would become the control token <s>, which decodes to
 * nothing. Every special piece is at least three characters long, so any way of building
 * it from two pieces needs one that is a prefix or a suffix of it; banning those makes
 * the special pieces unreachable from text. */
static bool piece_could_build_special(const BpeTrainer *tr, const char *text, size_t len)
{
    const VocabBuilder *v = &tr->vocab;
    for (int id = 0; id < N_FIXED; id++) {
        size_t n = v->lens[id];
        if (len <= n && (memcmp(v->pieces[id], text, len) == 0 ||
                         memcmp(v->pieces[id] + n - len, text, len) == 0))
            return true;
    }
    return false;
}

static bool word_has_pair(const Word *word, int left, int right)
{
    for (int i = 0; i + 1 < word->n; i++)
        if (word->syms[i] == left && word->syms[i + 1] == right)
            return true;
    return false;
}

/* Replaces every (left, right) in word w by `merged`, left to right, and recounts the
 * word's pairs around it. Posting lists can name a word twice, or a word that lost the
 * pair in an earlier round: those are skipped. */
static int word_merge(BpeTrainer *tr, int w, int left, int right, int merged, Error *err)
{
    Word *word = &tr->words[w];
    if (word->stamp == tr->round || !word_has_pair(word, left, right))
        return 0;
    word->stamp = tr->round;
    if (word_count_pairs(tr, w, -1, err) < 0)
        return -1;
    int n = 0;
    for (int i = 0; i < word->n; i++) {
        if (i + 1 < word->n && word->syms[i] == left && word->syms[i + 1] == right) {
            word->syms[n++] = merged;
            i++;
        } else {
            word->syms[n++] = word->syms[i];
        }
    }
    word->n = n;
    return word_count_pairs(tr, w, +1, err);
}

/* The id of the piece left + right, added to the vocabulary unless another pair already
 * made the same text ("ab" + "c" and "a" + "bc"). */
static int bpe_trainer_merged_piece(BpeTrainer *tr, const char *text, size_t len, Error *err)
{
    int id = strmap_get(&tr->piece_ids, text, len);
    if (id >= 0)
        return id;
    id = tr->vocab.n;
    if (vocab_add(&tr->vocab, text, len, (float)-tr->n_merged, TOKEN_TYPE_NORMAL, err) < 0 ||
        strmap_put(&tr->piece_ids, tr->vocab.pieces[id], len, id, err) < 0)
        return -1;
    tr->n_merged++;
    return id;
}

/* One round: merges pair p in every word that holds it. */
static int bpe_trainer_merge(BpeTrainer *tr, int p, Error *err)
{
    const VocabBuilder *v = &tr->vocab;
    int left = tr->pairs[p].left, right = tr->pairs[p].right;
    size_t len = v->lens[left] + v->lens[right];
    char *text = malloc(len);
    if (!text)
        return error_set(err, "out of memory for a merged piece");
    memcpy(text, v->pieces[left], v->lens[left]);
    memcpy(text + v->lens[left], v->pieces[right], v->lens[right]);
    if (piece_could_build_special(tr, text, len)) {
        free(text);
        tr->pairs[p].banned = true;
        return 0;
    }
    int merged = bpe_trainer_merged_piece(tr, text, len, err);
    free(text);
    if (merged < 0)
        return -1;
    tr->round++;
    /* word_merge may create pairs and so move tr->pairs: index it afresh each time. (It
     * never adds to this pair's list: a merged word has no (left, right) left.) */
    for (int i = 0; i < tr->pairs[p].n_words; i++)
        if (word_merge(tr, tr->pairs[p].words[i], left, right, merged, err) < 0)
            return -1;
    return heap_requeue_changed(tr, err);
}

static int bpe_trainer_setup(BpeTrainer *tr, const char *text, size_t len, int vocab_size,
                             Error *err)
{
    CharTable chars = {0};
    StrMap word_ids = {0};
    int rc = chars_count(&chars, text, len, err);
    if (rc == 0) {
        chars_keep(&chars, vocab_size - N_FIXED);
        rc = vocab_add_fixed(&tr->vocab, err);
    }
    if (rc == 0)
        rc = vocab_add_chars(&tr->vocab, &chars, err);
    if (rc == 0)
        rc = strmap_alloc(&tr->piece_ids, 8192, err);
    for (int id = 0; rc == 0 && id < tr->vocab.n; id++)
        rc = strmap_put(&tr->piece_ids, tr->vocab.pieces[id], tr->vocab.lens[id], id, err);
    if (rc == 0)
        rc = strmap_alloc(&word_ids, 4096, err);
    if (rc == 0)
        rc = words_count(tr, text, len, &word_ids, err);
    if (rc == 0)
        rc = words_split(tr, &word_ids, err);
    if (rc == 0)
        rc = pair_table_grow(tr, err);
    tr->round = 0;
    for (int w = 0; rc == 0 && w < tr->n_words; w++)
        rc = word_count_pairs(tr, w, +1, err);
    if (rc == 0)
        rc = heap_requeue_changed(tr, err);
    strmap_free(&word_ids);
    chars_free(&chars);
    return rc;
}

/* Characters were added with scores -i; now that the number of merges is known, move
 * them below every merged piece. */
static void bpe_trainer_score_chars(BpeTrainer *tr, int n_chars)
{
    for (int i = 0; i < n_chars; i++)
        tr->vocab.scores[N_FIXED + i] = (float)-(tr->n_merged + i);
}

int tokenizer_train_bpe(Tokenizer *t, const char *text, size_t len, int vocab_size, Error *err)
{
    if (vocab_size < N_FIXED)
        return error_set(err,
                         "vocab_size %d is too small: <unk>, <s>, </s> and the 256 byte tokens "
                         "need at least %d",
                         vocab_size, N_FIXED);
    char *escaped;
    size_t n;
    if (text_check_learnable(text, len, err) < 0 ||
        tokenizer_escape(text, len, true, &escaped, &n, err) < 0)
        return -1;
    BpeTrainer tr = {0};
    int rc = bpe_trainer_setup(&tr, escaped, n, vocab_size, err);
    int n_chars = tr.vocab.n - N_FIXED;
    while (rc == 0 && tr.vocab.n < vocab_size) {
        int p = heap_pop_best(&tr);
        if (p < 0 || tr.pairs[p].count < 2)
            break;
        rc = bpe_trainer_merge(&tr, p, err);
    }
    if (rc == 0) {
        bpe_trainer_score_chars(&tr, n_chars);
        rc = vocab_finish(&tr.vocab, t, true, err);
    }
    bpe_trainer_free(&tr);
    free(escaped);
    return rc;
}
