/* Vocabulary trainers: `char` (one piece per character of the corpus) and `bpe`
 * (SentencePiece-style byte-pair encoding). Both learn from counts of the corpus's words
 * (TextCounts), never from the whole text at once, and produce the layout llama.cpp
 * expects of a "llama" vocabulary:
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

#include "buffer.h"
#include "heap.h"
#include "word_table.h"


enum { N_SPECIAL = 3, N_FIXED = N_SPECIAL + 256 }; /* <unk> <s> </s>, then the bytes */

/* A growing byte buffer for one escaped word at a time. */
typedef struct {
    char *bytes;
    size_t len, cap;
} Scratch;

/* Writes a word as the encoder sees it, every space as "▁", into s. */
static int word_escape(Scratch *s, const char *word, size_t len, Error *err)
{
    if (buffer_reserve(&s->bytes, &s->cap, len * SPACE_MARK_LEN, 64, "a word", err) != 0)
        return -1;
    s->len = 0;
    for (size_t i = 0; i < len; i++) {
        if (word[i] == ' ') {
            memcpy(s->bytes + s->len, SPACE_MARK, SPACE_MARK_LEN);
            s->len += SPACE_MARK_LEN;
        } else {
            s->bytes[s->len++] = word[i];
        }
    }
    return 0;
}

/* ---- The vocabulary being built ---- */

typedef struct {
    char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    int n;
    size_t cap; /* of each of the four arrays */
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

/* Room for one more piece in each of the four arrays, which grow alike from one capacity
 * (when one fails, the others may have grown: v->cap stays what all of them hold). */
static int vocab_grow(VocabBuilder *v, Error *err)
{
    size_t need = (size_t)v->n + 1, cap[4] = {v->cap, v->cap, v->cap, v->cap};
    if (buffer_reserve_items(&v->pieces, &cap[0], need, sizeof *v->pieces, 512, "pieces", err) ||
        buffer_reserve_items(&v->lens, &cap[1], need, sizeof *v->lens, 512, "pieces", err) ||
        buffer_reserve_items(&v->scores, &cap[2], need, sizeof *v->scores, 512, "pieces", err) ||
        buffer_reserve_items(&v->types, &cap[3], need, sizeof *v->types, 512, "pieces", err))
        return -1;
    v->cap = cap[0];
    return 0;
}

static int vocab_add(VocabBuilder *v, const char *piece, size_t len, float score, int32_t type,
                     Error *err)
{
    if ((size_t)v->n == v->cap && vocab_grow(v, err) < 0)
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

/* Length of the character starting at text[off], clipped at the end (the encoder's cut). */
static size_t cut_len(const char *text, size_t len, size_t off)
{
    size_t n = utf8_len((unsigned char)text[off]);
    return n < len - off ? n : len - off;
}

/* True when the text holds at least one valid UTF-8 character. */
static bool text_has_char(const char *text, size_t len)
{
    for (size_t off = 0; off < len;) {
        size_t n = cut_len(text, len, off);
        if (utf8_code((const unsigned char *)text + off, n) >= 0)
            return true;
        off += n;
    }
    return false;
}

enum { N_CODE_POINTS = 0x110000 };

typedef struct {
    char bytes[4];
    size_t len;
    int64_t count;
} CharCount;

typedef struct {
    CharCount *items;
    int n;
    size_t cap;
    int32_t *index; /* code point -> position in items, -1 when not seen (while counting) */
} CharTable;

static void chars_free(CharTable *c)
{
    free(c->items);
    free(c->index);
    memset(c, 0, sizeof *c);
}

static int chars_bump(CharTable *c, int32_t code, const char *bytes, size_t len, int64_t count,
                      Error *err)
{
    int32_t at = c->index[code];
    if (at < 0) {
        if (buffer_reserve_items(&c->items, &c->cap, (size_t)c->n + 1, sizeof *c->items, 256,
                                 "character counts", err) != 0)
            return -1;
        at = c->index[code] = c->n++;
        c->items[at] = (CharCount){.len = len};
        memcpy(c->items[at].bytes, bytes, len);
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

/* Counts the characters of one escaped word, `count` times each; adds the word's symbols
 * (characters, valid or not) to *n_syms. */
static int chars_count_word(CharTable *c, const char *word, size_t len, int64_t count,
                            size_t *n_syms, Error *err)
{
    for (size_t off = 0; off < len; (*n_syms)++) {
        size_t n = cut_len(word, len, off);
        int32_t code = utf8_code((const unsigned char *)word + off, n);
        if (code >= 0 && chars_bump(c, code, word + off, n, count, err) < 0)
            return -1;
        off += n;
    }
    return 0;
}

/* ---- Counting words ---- */

struct TextCounts {
    TextCountsKind kind;
    WordTable words; /* a word, raw (spaces are still spaces) -> occurrences */
    uint64_t n_bytes;
    bool has_char; /* the text holds a valid UTF-8 character */
    WordCursor cursor;
};

int text_counts_new(TextCounts **out, TextCountsKind kind, Error *err)
{
    *out = NULL;
    TextCounts *c = calloc(1, sizeof *c);
    if (!c)
        return error_set(err, "out of memory");
    c->kind = kind;
    if (word_table_init(&c->words, err) < 0) {
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void text_counts_free(TextCounts *c)
{
    if (!c)
        return;
    word_table_free(&c->words);
    word_cursor_free(&c->cursor);
    free(c);
}

static int counts_bump(TextCounts *c, const char *word, size_t len, uint64_t hash, uint64_t by,
                       Error *err)
{
    int added;
    uint64_t *count = word_table_insert(&c->words, word, len, hash, &added, err);
    if (!count)
        return -1;
    *count += by;
    return 0;
}

int text_counts_add(TextCounts *c, const char *text, size_t len, bool text_start, Error *err)
{
    c->n_bytes += len;
    if (!c->has_char) /* one valid character ends the search, usually the first byte */
        c->has_char = text_has_char(text, len);
    word_cursor_start(&c->cursor, text, len, text_start && c->kind == TEXT_COUNTS_BPE);
    const char *word;
    size_t n;
    int more;
    while ((more = word_cursor_next(&c->cursor, &word, &n, err)) > 0)
        if (counts_bump(c, word, n, word_table_hash(word, n), 1, err) < 0)
            return -1;
    return more;
}

int text_counts_merge(TextCounts *into, const TextCounts *from, Error *err)
{
    if (into->kind != from->kind)
        return error_set(err, "cannot merge word counts made for different trainers");
    const WordTable *w = &from->words;
    for (size_t i = 0; i <= w->mask; i++) {
        const WordSlot *s = &w->slots[i];
        if (s->key_len &&
            counts_bump(into, word_table_key(w, s), s->key_len, s->hash, s->value, err) < 0)
            return -1;
    }
    into->n_bytes += from->n_bytes;
    into->has_char = into->has_char || from->has_char;
    return 0;
}

size_t text_counts_distinct_words(const TextCounts *c)
{
    return c->words.n;
}

uint64_t text_counts_bytes(const TextCounts *c)
{
    return c->n_bytes;
}

/* A vocabulary is learned from characters: a text without a single valid UTF-8 character
 * (empty, or binary) has nothing to learn from, and is refused with a message that says
 * so rather than producing a vocabulary of byte tokens only. */
static int counts_check_learnable(const TextCounts *c, Error *err)
{
    if (c->has_char)
        return 0;
    if (c->n_bytes == 0)
        return error_set(err, "the training text is empty");
    return error_set(err, "the training text (%llu bytes) holds no valid UTF-8 character",
                     (unsigned long long)c->n_bytes);
}

/* Counts the characters of every word, each as often as the word occurs, sorted most
 * frequent first; *n_syms gets the number of symbols of all distinct words. */
static int chars_count(CharTable *chars, const TextCounts *c, size_t *n_syms, Error *err)
{
    chars->index = malloc(N_CODE_POINTS * sizeof *chars->index);
    if (!chars->index)
        return error_set(err, "out of memory counting characters");
    memset(chars->index, 0xff, N_CODE_POINTS * sizeof *chars->index); /* all -1 */
    *n_syms = 0;
    Scratch escaped = {0};
    const WordTable *w = &c->words;
    int rc = 0;
    for (size_t i = 0; i <= w->mask && rc == 0; i++) {
        const WordSlot *s = &w->slots[i];
        if (s->key_len == 0)
            continue;
        rc = word_escape(&escaped, word_table_key(w, s), s->key_len, err);
        if (rc == 0)
            rc = chars_count_word(chars, escaped.bytes, escaped.len, (int64_t)s->value, n_syms,
                                  err);
    }
    free(escaped.bytes);
    free(chars->index);
    chars->index = NULL; /* positions change with the sort */
    if (rc == 0)
        qsort(chars->items, (size_t)chars->n, sizeof *chars->items, char_count_cmp);
    return rc;
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

int tokenizer_train_char_counts(Tokenizer *t, const TextCounts *c, Error *err)
{
    if (c->kind != TEXT_COUNTS_CHAR)
        return error_set(err, "the char trainer needs counts made for it (no space prefix)");
    if (counts_check_learnable(c, err) < 0)
        return -1;
    CharTable chars = {0};
    VocabBuilder v = {0};
    size_t n_syms;
    int rc = chars_count(&chars, c, &n_syms, err);
    if (rc == 0)
        rc = vocab_add_fixed(&v, err);
    if (rc == 0)
        rc = vocab_add_chars(&v, &chars, err);
    if (rc == 0)
        rc = vocab_finish(&v, t, false, err);
    vocab_free(&v);
    chars_free(&chars);
    return rc;
}

/* Counts one text held in memory. */
static int counts_of_text(TextCounts **c, TextCountsKind kind, const char *text, size_t len,
                          Error *err)
{
    if (text_counts_new(c, kind, err) < 0)
        return -1;
    if (text_counts_add(*c, text, len, true, err) < 0) {
        text_counts_free(*c);
        *c = NULL;
        return -1;
    }
    return 0;
}

int tokenizer_train_char(Tokenizer *t, const char *text, size_t len, Error *err)
{
    TextCounts *c;
    if (counts_of_text(&c, TEXT_COUNTS_CHAR, text, len, err) < 0)
        return -1;
    int rc = tokenizer_train_char_counts(t, c, err);
    text_counts_free(c);
    return rc;
}

/* ---- BPE ----
 *
 * The corpus comes as counts of its words (a space in front of each text, and a word
 * starting at each space), each escaped as the encoder escapes it (spaces as "▁"):
 * " the cat\nsat" has the words "▁the" and "▁cat\nsat". Merges never cross a word
 * boundary, so no piece has a "▁" after its first character.
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
    int n_words;
    size_t cap_words;
} Pair;

typedef struct {
    int64_t count;
    int pair;
} HeapEntry;

typedef struct {
    VocabBuilder vocab;
    WordTable piece_ids; /* piece text -> id */
    Word *words;
    int n_words;
    int *syms; /* storage for all words' symbols */
    Pair *pairs;
    int n_pairs, cap_pairs;
    int *pair_slots; /* (left, right) -> index in pairs: open addressing, -1 empty */
    size_t pair_mask;
    Heap heap; /* of HeapEntry: the most frequent pair first (entry_before) */
    int *changed; /* pairs whose count changed in this round */
    int n_changed;
    size_t cap_changed;
    int round;
    int n_merged; /* pieces added by merges */
} BpeTrainer;

static void bpe_trainer_free(BpeTrainer *tr)
{
    vocab_free(&tr->vocab);
    word_table_free(&tr->piece_ids);
    free(tr->words);
    free(tr->syms);
    for (int i = 0; i < tr->n_pairs; i++)
        free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->pair_slots);
    heap_free(&tr->heap);
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
    if (buffer_reserve_items(&pair->words, &pair->cap_words, (size_t)pair->n_words + 1,
                             sizeof *pair->words, 4, "a pair's word list", err) != 0)
        return -1;
    pair->words[pair->n_words++] = w;
    return 0;
}

static int changed_push(BpeTrainer *tr, int p, Error *err)
{
    if (tr->pairs[p].stamp == tr->round)
        return 0;
    if (buffer_reserve_items(&tr->changed, &tr->cap_changed, (size_t)tr->n_changed + 1,
                             sizeof *tr->changed, 1024, "the changed pairs", err) != 0)
        return -1;
    tr->changed[tr->n_changed++] = p;
    tr->pairs[p].stamp = tr->round;
    return 0;
}

enum { ALL_PIECES = -2 }; /* word_count_pairs: note the word for every pair */

/* Adds `sign` times the word's count to every pair of neighbouring pieces in word w. When
 * adding, w is noted in the posting lists of the pairs that hold the piece `fresh` (of all
 * pairs when fresh is ALL_PIECES). After a merge, only the pairs with the merged piece are
 * new to the word: "x a b y" becomes "x ab y", and only (x, ab) and (ab, y) appear. The
 * other pairs list the word already; noting it again would grow their lists by the
 * word's length at every merge that touches the word, which on a large corpus is most of
 * the trainer's memory. */
static int word_count_pairs(BpeTrainer *tr, int w, int sign, int fresh, Error *err)
{
    const Word *word = &tr->words[w];
    for (int i = 0; i + 1 < word->n; i++) {
        int left = word->syms[i], right = word->syms[i + 1];
        if (left < 0 || right < 0)
            continue;
        int p = pair_find_or_add(tr, left, right, err);
        if (p < 0 || changed_push(tr, p, err) < 0)
            return -1;
        tr->pairs[p].count += sign * word->count;
        bool is_new = fresh == ALL_PIECES || left == fresh || right == fresh;
        if (sign > 0 && is_new && pair_note_word(&tr->pairs[p], w, err) < 0)
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
static bool entry_before(const void *a, const void *b, const void *trainer)
{
    const BpeTrainer *tr = trainer;
    const HeapEntry *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count;
    const Pair *p = &tr->pairs[x->pair], *q = &tr->pairs[y->pair];
    int c = piece_cmp(tr, p->left, q->left);
    if (c == 0)
        c = piece_cmp(tr, p->right, q->right);
    return c < 0;
}

/* True when an entry still holds its pair's count (a newer entry may hold the same count;
 * popping either is the same). */
static bool entry_is_live(const BpeTrainer *tr, const HeapEntry *e)
{
    const Pair *p = &tr->pairs[e->pair];
    return !p->banned && e->count == p->count && e->count > 0;
}

/* Drops the stale entries and rebuilds the heap from the rest (Floyd: sift down from the
 * last parent). Entries go stale whenever a pair's count changes, so without this the
 * heap would grow by every change of every round. */
static void queue_compact(BpeTrainer *tr)
{
    HeapEntry *entries = (HeapEntry *)tr->heap.data;
    size_t kept = 0;
    for (size_t i = 0; i < tr->heap.n; i++)
        if (entry_is_live(tr, &entries[i]))
            entries[kept++] = entries[i];
    tr->heap.n = kept;
    heap_make(entries, kept, sizeof *entries, entry_before, tr);
}

static int queue_push(BpeTrainer *tr, int p, Error *err)
{
    /* full and at least half stale (there is at most one live entry per pair) */
    if (tr->heap.n == tr->heap.cap && tr->heap.n >= 2 * (size_t)tr->n_pairs)
        queue_compact(tr);
    HeapEntry e = {tr->pairs[p].count, p};
    tr->pairs[p].queued = tr->pairs[p].count;
    return heap_push(&tr->heap, &e, "queued pairs", err);
}

/* The most frequent pair that may be merged, or -1 when no pair is left. */
static int queue_pop_best(BpeTrainer *tr)
{
    while (tr->heap.n > 0) {
        HeapEntry e;
        heap_pop(&tr->heap, &e);
        if (entry_is_live(tr, &e))
            return e.pair;
    }
    return -1;
}

/* Queues every pair whose count changed in this round (and is still worth merging). */
static int queue_requeue_changed(BpeTrainer *tr, Error *err)
{
    for (int i = 0; i < tr->n_changed; i++) {
        const Pair *p = &tr->pairs[tr->changed[i]];
        if (!p->banned && p->count > 0 && p->count != p->queued &&
            queue_push(tr, tr->changed[i], err) < 0)
            return -1;
    }
    tr->n_changed = 0;
    return 0;
}

/* ---- Words ---- */

static int piece_id_find(const BpeTrainer *tr, const char *text, size_t len)
{
    const uint64_t *id = word_table_find(&tr->piece_ids, text, len, word_table_hash(text, len));
    return id ? (int)*id : -1;
}

static int piece_id_add(BpeTrainer *tr, int id, Error *err)
{
    const char *text = tr->vocab.pieces[id];
    size_t len = tr->vocab.lens[id];
    int added;
    uint64_t *value = word_table_insert(&tr->piece_ids, text, len, word_table_hash(text, len),
                                        &added, err);
    if (!value)
        return -1;
    *value = (uint64_t)id;
    return 0;
}

/* The symbols of one escaped word: the piece id of each character, -1 for characters the
 * vocabulary does not hold. */
static void word_set_syms(const BpeTrainer *tr, Word *word, const char *bytes, size_t len)
{
    for (size_t off = 0; off < len;) {
        size_t n = cut_len(bytes, len, off);
        word->syms[word->n++] = piece_id_find(tr, bytes + off, n);
        off += n;
    }
}

/* One Word per distinct word of the counts, with its symbols (n_syms of them in all). */
static int words_split(BpeTrainer *tr, const TextCounts *c, size_t n_syms, Error *err)
{
    if (c->words.n > INT32_MAX)
        return error_set(err, "%zu distinct words are more than the trainer can hold",
                         c->words.n);
    tr->words = malloc((c->words.n + 1) * sizeof *tr->words);
    tr->syms = malloc((n_syms + 1) * sizeof *tr->syms);
    if (!tr->words || !tr->syms)
        return error_set(err, "out of memory for %zu words of %zu symbols", c->words.n, n_syms);
    Scratch escaped = {0};
    size_t used = 0;
    const WordTable *w = &c->words;
    for (size_t i = 0; i <= w->mask; i++) {
        const WordSlot *s = &w->slots[i];
        if (s->key_len == 0)
            continue;
        if (word_escape(&escaped, word_table_key(w, s), s->key_len, err) < 0) {
            free(escaped.bytes);
            return -1;
        }
        Word *word = &tr->words[tr->n_words++];
        *word = (Word){.syms = tr->syms + used, .n = 0, .count = (int64_t)s->value, .stamp = -1};
        word_set_syms(tr, word, escaped.bytes, escaped.len);
        used += (size_t)word->n;
    }
    free(escaped.bytes);
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
    if (word_count_pairs(tr, w, -1, ALL_PIECES, err) < 0)
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
    return word_count_pairs(tr, w, +1, merged, err);
}

/* The id of the piece left + right, added to the vocabulary unless another pair already
 * made the same text ("ab" + "c" and "a" + "bc"). */
static int bpe_trainer_merged_piece(BpeTrainer *tr, const char *text, size_t len, Error *err)
{
    int id = piece_id_find(tr, text, len);
    if (id >= 0)
        return id;
    id = tr->vocab.n;
    if (vocab_add(&tr->vocab, text, len, (float)-tr->n_merged, TOKEN_TYPE_NORMAL, err) < 0 ||
        piece_id_add(tr, id, err) < 0)
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
    /* The pair is gone from every word. Its list, among the longest (frequent pairs are
     * merged first), is no longer needed: should a later merge bring the pair back, that
     * merge notes the words where it does. */
    Pair *done = &tr->pairs[p];
    free(done->words);
    done->words = NULL;
    done->n_words = done->cap_words = 0;
    return queue_requeue_changed(tr, err);
}

static int bpe_trainer_setup(BpeTrainer *tr, const TextCounts *c, int vocab_size, Error *err)
{
    CharTable chars = {0};
    size_t n_syms;
    int rc = chars_count(&chars, c, &n_syms, err);
    if (rc == 0) {
        chars_keep(&chars, vocab_size - N_FIXED);
        rc = vocab_add_fixed(&tr->vocab, err);
    }
    if (rc == 0)
        rc = vocab_add_chars(&tr->vocab, &chars, err);
    chars_free(&chars);
    if (rc == 0)
        rc = word_table_init(&tr->piece_ids, err);
    for (int id = 0; rc == 0 && id < tr->vocab.n; id++)
        rc = piece_id_add(tr, id, err);
    if (rc == 0)
        rc = words_split(tr, c, n_syms, err);
    if (rc == 0)
        rc = pair_table_grow(tr, err);
    tr->round = 0;
    for (int w = 0; rc == 0 && w < tr->n_words; w++)
        rc = word_count_pairs(tr, w, +1, ALL_PIECES, err);
    if (rc == 0)
        rc = queue_requeue_changed(tr, err);
    return rc;
}

/* Characters were added with scores -i; now that the number of merges is known, move
 * them below every merged piece. */
static void bpe_trainer_score_chars(BpeTrainer *tr, int n_chars)
{
    for (int i = 0; i < n_chars; i++)
        tr->vocab.scores[N_FIXED + i] = (float)-(tr->n_merged + i);
}

int tokenizer_train_bpe_counts(Tokenizer *t, const TextCounts *c, int vocab_size, Error *err)
{
    if (vocab_size < N_FIXED)
        return error_set(err,
                         "vocab_size %d is too small: <unk>, <s>, </s> and the 256 byte tokens "
                         "need at least %d",
                         vocab_size, N_FIXED);
    if (c->kind != TEXT_COUNTS_BPE)
        return error_set(err, "the bpe trainer needs counts made for it (with a space prefix)");
    if (counts_check_learnable(c, err) < 0)
        return -1;
    BpeTrainer tr = {0};
    heap_init(&tr.heap, sizeof(HeapEntry), 4096, entry_before, &tr);
    int rc = bpe_trainer_setup(&tr, c, vocab_size, err);
    int n_chars = tr.vocab.n - N_FIXED;
    while (rc == 0 && tr.vocab.n < vocab_size) {
        int p = queue_pop_best(&tr);
        if (p < 0 || tr.pairs[p].count < 2)
            break;
        rc = bpe_trainer_merge(&tr, p, err);
    }
    if (rc == 0) {
        bpe_trainer_score_chars(&tr, n_chars);
        rc = vocab_finish(&tr.vocab, t, true, err);
    }
    bpe_trainer_free(&tr);
    return rc;
}

int tokenizer_train_bpe(Tokenizer *t, const char *text, size_t len, int vocab_size, Error *err)
{
    TextCounts *c;
    if (counts_of_text(&c, TEXT_COUNTS_BPE, text, len, err) < 0)
        return -1;
    int rc = tokenizer_train_bpe_counts(t, c, vocab_size, err);
    text_counts_free(c);
    return rc;
}
