/* GBNF grammars, llama.cpp's format for "the text must look like this": a parser that turns
 * a grammar's text into a compact table of rules, and a recognizer that follows a text
 * through it code point by code point, so that a caller can ask both "is this whole text
 * accepted?" and, byte by byte, "does this piece keep the text inside the grammar?" (what a
 * grammar stage of the sampler asks of each token's bytes).
 *
 *   root   ::= answer ("," ws answer)*      # a rule: name ::= alternatives
 *   answer ::= "yes" | "no" | [0-9]{1,3}    # literals, classes, repetitions
 *   ws     ::= [ \t]*
 *
 * docs/grammars.md describes the format and how the recognizer works. */
#ifndef QUILL_GRAMMAR_H
#define QUILL_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* One element of a rule. A rule is a run of elements: its alternatives one after another,
 * each ended by GRAMMAR_ALT, the last by GRAMMAR_END. A character class is a run too: its
 * first element (GRAMMAR_CHAR or GRAMMAR_CHAR_NOT for a negated class) and then, for each
 * further character or range, a GRAMMAR_CHAR_ALT; a GRAMMAR_CHAR_UPPER after any of them
 * makes that one a range. A literal "ab" is two classes of one character each.
 *
 *   [a-z_]   CHAR 'a', CHAR_UPPER 'z', CHAR_ALT '_'
 *   [^"\\]   CHAR_NOT '"', CHAR_ALT '\\' */
typedef enum {
    GRAMMAR_END,        /* the end of the rule's last alternative */
    GRAMMAR_ALT,        /* the end of an alternative; another follows */
    GRAMMAR_RULE_REF,   /* value: the id of the rule it names */
    GRAMMAR_CHAR,       /* value: a code point; starts a class */
    GRAMMAR_CHAR_NOT,   /* value: a code point; starts a negated class */
    GRAMMAR_CHAR_ALT,   /* value: another code point of the class */
    GRAMMAR_CHAR_UPPER, /* value: the upper end of a range whose lower end precedes it */
    GRAMMAR_CHAR_ANY,   /* '.': any one code point */
} GrammarElementType;

typedef struct {
    GrammarElementType type;
    uint32_t value;
} GrammarElement;

/* A parsed grammar: every rule's elements in one array. The rules written in the text keep
 * their names; the parser adds rules of its own for groups and repetitions, named after the
 * rule they come from ("list(2)": parentheses cannot appear in a written name). */
typedef struct {
    GrammarElement *elements;
    size_t n_elements;
    size_t *rule_start; /* rule r's elements start at elements[rule_start[r]] */
    char **rule_names;
    int n_rules;
    int root; /* the id of the rule named "root" */
} Grammar;

/* Parses a GBNF text (len bytes, UTF-8). On failure err holds one line that starts with
 * where the problem is, "line 3, column 14: expecting ')'", or names the rule: an undefined
 * one ("rule 'value' is used (line 1, column 9) but never defined"), a left-recursive one
 * (whose matching would never advance), a missing root. */
int grammar_parse(const char *text, size_t len, Grammar *g, Error *err);
void grammar_free(Grammar *g);

/* The recognizer's state: every way the text read so far can continue, as a set of parse
 * stacks. A stack lists positions in g->elements, the top (the last) being the character
 * class the next code point must match, the ones below it where to go on once the rule it
 * is in is done; an empty stack means root has been matched completely. Bytes that start a
 * UTF-8 character but do not finish it wait in `pending` until they do. */
typedef struct {
    int *positions;
    int depth;
} GrammarStack;

typedef struct {
    GrammarStack *items;
    size_t n, cap;
} GrammarStackSet;

/* The most stacks a set holds: a grammar that needs more at some point of a text is too
 * ambiguous there, and reading on is an error (stack_set_add in grammar.c). */
enum { GRAMMAR_MAX_STACKS = 1024 };

typedef struct {
    const Grammar *grammar;
    GrammarStackSet stacks;
    unsigned char pending[4];
    int n_pending;
} GrammarMatcher;

/* Starts at the beginning of the text: the stacks that begin root. */
int grammar_matcher_init(GrammarMatcher *m, const Grammar *g, Error *err);
void grammar_matcher_free(GrammarMatcher *m);

/* Whether bytes[0..n) can come next: true when some continuation of the text read so far
 * plus these bytes is still inside the grammar (a character left unfinished at the end
 * counts when some class could still take a character that starts so). The matcher is
 * unchanged. Returns 0, or -1 with err set when memory runs out. */
int grammar_matcher_allows(const GrammarMatcher *m, const unsigned char *bytes, size_t n,
                           bool *allowed, Error *err);

/* Reads bytes[0..n) into a copy of m: *out is what m becomes (its stacks and pending bytes),
 * or *allowed is false as soon as no way through the grammar is left or the bytes are not
 * UTF-8 (*out is then of no use). m is unchanged; free *out with grammar_matcher_free,
 * whatever the result. A walk over a token trie advances one byte
 * per node from its parent's state this way. Returns 0, or -1 on out of memory. */
int grammar_matcher_advance(const GrammarMatcher *m, const unsigned char *bytes, size_t n,
                            GrammarMatcher *out, bool *allowed, Error *err);

/* Reads bytes[0..n) into the matcher when they keep the text inside the grammar (*allowed
 * true); otherwise leaves it unchanged (*allowed false). Returns 0, or -1 on out of memory. */
int grammar_matcher_feed(GrammarMatcher *m, const unsigned char *bytes, size_t n,
                         bool *allowed, Error *err);

/* True when the text read so far is a complete match of root (no character unfinished). */
bool grammar_matcher_is_complete(const GrammarMatcher *m);

/* True when some character can still come next: false once every way through the grammar
 * has ended, where generation has nothing left to add. */
bool grammar_matcher_can_continue(const GrammarMatcher *m);

/* Whether the whole of text[0..len) is accepted by g: a complete match of root. */
int grammar_accepts(const Grammar *g, const char *text, size_t len, bool *accepted, Error *err);

#endif
