/* Words that must appear in a beam search's text (quill generate --must-include): what
 * lexically constrained beam search (beam.c) needs to know about them.
 *
 * A word (or phrase) is met when the text holds its bytes, however they were tokenized.
 * To steer beams towards it, the search also knows its spellings as token sequences, the
 * two that sampler_bad_word_add makes for a bad word: as it stands inside a text ("dragon"
 * glued to what precedes, or at the start) and after a space (" dragon"). A beam whose
 * last tokens are the first k tokens of a spelling has made k tokens of progress on it,
 * and the spelling's token k is the one that goes on with it.
 *
 * Which words a beam has met is a bit mask: bit i for word i, so at most 64 words. */
#ifndef QUILL_MUST_INCLUDE_H
#define QUILL_MUST_INCLUDE_H

#include <stdint.h>

#include "sampler.h"
#include "tokenizer.h"

enum {
    MUST_INCLUDE_MAX_WORDS = 64,  /* the bits of a mask */
    MUST_INCLUDE_MAX_BYTES = 256, /* the longest word or phrase */
};

typedef struct {
    char *text;               /* the word as given */
    size_t len;
    TokenSequence *spellings; /* its token sequences (sampler_bad_word_add) */
    int n_spellings;
    int longest;              /* the tokens of its longest spelling */
} MustWord;

typedef struct {
    MustWord *words;
    int n;
    uint64_t all;    /* the mask of every word */
    int n_spellings; /* over all words */
    int max_progress; /* the sum of the words' longest spellings: the most progress a beam
                         can show */
} MustInclude;

/* The words[0..n) (each non-empty, at most MUST_INCLUDE_MAX_BYTES) with their spellings in
 * tok. Free with must_include_free, whatever the status. */
int must_include_init(MustInclude *m, const Tokenizer *tok, const char *const *words, int n,
                      Error *err);
void must_include_free(MustInclude *m);

/* The mask of the words that text[0..len) holds. */
uint64_t must_include_found(const MustInclude *m, const char *text, size_t len);

/* A beam of tokens[0..n) (its generated tokens) that has met the words of `met`, extended
 * by `token`: the words met after it (*met is updated), and the progress it shows, the
 * number the beam's bank is chosen by: the longest spelling of each word met, and for each
 * other word the tokens of a spelling its last tokens match. */
int must_include_progress(const MustInclude *m, const Tokenizer *tok, const int *tokens, int n,
                          int token, uint64_t *met);

/* The tokens that go on with a spelling of a word not in `met` after tokens[0..n): each
 * spelling's next token, once each, into out (room for m->n_spellings). Returns the count. */
int must_include_next_tokens(const MustInclude *m, uint64_t met, const int *tokens, int n,
                             int *out);

#endif
