/* Text in words: the word rule, a cursor over the words of a stretch of text, and the
 * word-by-word encoder with its cache (see "Text in words" in tokenizer.h). */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "tokenizer.h"
#include "word_table.h"


/* A word starts at a space, and at a "▁" that the text already holds: escaping turns both
 * into the same "▁". Tested on bytes, so the rule needs no knowledge of where characters
 * start (E2 is never inside a valid character, only at its start). */
static bool starts_word(const char *text, size_t len, size_t i)
{
    return text[i] == ' ' ||
           (text[i] == SPACE_MARK[0] && len - i >= SPACE_MARK_LEN &&
            memcmp(text + i, SPACE_MARK, SPACE_MARK_LEN) == 0);
}

size_t tokenizer_word_end(const char *text, size_t len, size_t start)
{
    for (size_t i = start + 1; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        /* most bytes are neither: one comparison each */
        if ((c == ' ' || c == (unsigned char)SPACE_MARK[0]) && starts_word(text, len, i))
            return i;
    }
    return len;
}

/* True when a piece holds a "▁" (or a raw space) anywhere but at its start. */
static bool piece_spans_word_start(const char *piece)
{
    size_t len = strlen(piece);
    for (size_t i = 1; i < len; i++)
        if (starts_word(piece, len, i))
            return true;
    return false;
}

bool tokenizer_encodes_by_word(const Tokenizer *t)
{
    if (t->kind != TOKENIZER_SPM)
        return false;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->types[id] == TOKEN_TYPE_USER_DEFINED || piece_spans_word_start(t->pieces[id]))
            return false;
    return true;
}

/* ---- The cursor ---- */

void word_cursor_start(WordCursor *c, const char *text, size_t len, bool space_prefix)
{
    c->text = text;
    c->len = len;
    c->off = 0;
    c->prefix_pending = space_prefix && len > 0; /* empty text has no words, no prefix */
}

/* The prefix joined to the first word: " The" for "The". */
static int cursor_join_prefix(WordCursor *c, const char *word, size_t len, Error *err)
{
    if (buffer_reserve(&c->joined, &c->joined_cap, len + 1, 64, "a word", err) != 0)
        return -1;
    c->joined[0] = ' ';
    memcpy(c->joined + 1, word, len);
    return 0;
}

int word_cursor_next(WordCursor *c, const char **word, size_t *len, Error *err)
{
    if (c->off >= c->len)
        return 0;
    if (c->prefix_pending && starts_word(c->text, c->len, 0)) {
        c->prefix_pending = false; /* the text starts with a space: the prefix stands alone */
        *word = " ";
        *len = 1;
        return 1;
    }
    size_t end = tokenizer_word_end(c->text, c->len, c->off);
    *word = c->text + c->off;
    *len = end - c->off;
    c->off = end;
    if (c->prefix_pending) {
        c->prefix_pending = false;
        if (cursor_join_prefix(c, *word, *len, err) < 0)
            return -1;
        *word = c->joined;
        *len += 1;
    }
    return 1;
}

void word_cursor_free(WordCursor *c)
{
    free(c->joined);
    c->joined = NULL;
    c->joined_cap = 0;
}

/* ---- The word-by-word encoder ---- */

enum { WORD_CACHE_MAX_WORDS = 1 << 20 };

/* The cache maps a word to the offset in `ids` where its entry starts: the number of ids,
 * then the ids. */
struct WordEncoder {
    const Tokenizer *t;
    WordTable words;
    IdList ids;
    WordCursor cursor;
};

int word_encoder_new(WordEncoder **out, const Tokenizer *t, Error *err)
{
    *out = NULL;
    if (!tokenizer_encodes_by_word(t))
        return error_set(err, "this %s vocabulary has pieces that span the start of a word: "
                              "it cannot be encoded word by word",
                         tokenizer_kind_name(t));
    WordEncoder *e = calloc(1, sizeof *e);
    if (!e)
        return error_set(err, "out of memory");
    e->t = t;
    if (word_table_init(&e->words, err) < 0) {
        free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void word_encoder_free(WordEncoder *e)
{
    if (!e)
        return;
    word_table_free(&e->words);
    free(e->ids.ids);
    word_cursor_free(&e->cursor);
    free(e);
}

/* Encodes a word the cache does not hold and keeps its ids; returns where they are. */
static int64_t encoder_learn_word(WordEncoder *e, const char *word, size_t len, uint64_t hash,
                                  Error *err)
{
    if (e->words.n >= WORD_CACHE_MAX_WORDS) {
        word_table_clear(&e->words);
        e->ids.n = 0;
    }
    int *ids;
    size_t n;
    EncodeOptions continues = {.mid_text = true};
    if (tokenizer_encode_with(e->t, word, len, continues, &ids, &n, err) < 0)
        return -1;
    size_t at = e->ids.n;
    int rc = idlist_push(&e->ids, (int)n, err);
    if (rc == 0)
        rc = idlist_append(&e->ids, ids, n, err);
    free(ids);
    int added;
    uint64_t *value = rc == 0 ? word_table_insert(&e->words, word, len, hash, &added, err) : NULL;
    if (!value) {
        e->ids.n = at; /* the cache holds only complete entries */
        return -1;
    }
    *value = at;
    return (int64_t)at;
}

int word_encoder_encode(WordEncoder *e, const char *text, size_t len, bool text_start,
                        IdList *out, Error *err)
{
    word_cursor_start(&e->cursor, text, len, text_start && e->t->add_space_prefix);
    const char *word;
    size_t n;
    int more;
    while ((more = word_cursor_next(&e->cursor, &word, &n, err)) > 0) {
        uint64_t hash = word_table_hash(word, n);
        const uint64_t *found = word_table_find(&e->words, word, n, hash);
        int64_t at = found ? (int64_t)*found : encoder_learn_word(e, word, n, hash, err);
        if (at < 0 || idlist_append(out, e->ids.ids + at + 1, (size_t)e->ids.ids[at], err) < 0)
            return -1;
    }
    return more;
}
