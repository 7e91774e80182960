/* A vocabulary as a grammar sees it: every token's bytes, and a trie over them, so that the
 * question "which tokens can come next?" (the grammar stage of the sampler) is asked once
 * per shared prefix instead of once per token. With a 32,000-token vocabulary the tokens
 * share most of their first bytes ("▁the", "▁then", "▁there" all start with "▁th"): when the
 * grammar refuses a prefix, every token under it is refused without being read.
 *
 *   root ─ "▁" ─ "t" ─ "h" ─ "e"   ▁the          each node: one byte; a token sits at the
 *     │               │     └ "n"  ▁then         node its last byte reaches
 *     │               └ "o"        ▁to
 *     └ "{"                        {
 *
 * Two ways to ask, which must agree (tests/test_grammar_vocab.c): the plain reference, each
 * token's bytes read through the recognizer one token at a time, and the trie walk. Built
 * once per sampler (sampler_set_grammar) from its tokenizer. docs/grammars.md has the
 * measurements. */
#ifndef QUILL_GRAMMAR_VOCAB_H
#define QUILL_GRAMMAR_VOCAB_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "grammar.h"
#include "tokenizer.h"

/* A node of the trie: the byte that leads to it from its parent, its first child and its
 * next sibling (-1: none). Node 0 is the root (no byte: the empty prefix). */
typedef struct {
    int first_child;
    int next_sibling;
    unsigned char byte;
} TrieNode;

typedef struct {
    int n_vocab;
    int eos_id;           /* the end-of-text token (>= 0) */
    unsigned char *bytes; /* every token's bytes, one after another */
    size_t *start;        /* n_vocab + 1: token t's bytes are bytes[start[t]..start[t + 1]) */
    bool *never;          /* n_vocab: control tokens other than eos, and empty tokens */
    TrieNode *nodes;
    int n_nodes;
    int *node_of;  /* n_vocab: the node token t's last byte reaches (0 for an empty token) */
    bool *node_ok; /* n_nodes, scratch of the walk: the prefix up to this node is allowed */
} GrammarVocab;

/* Reads every token's bytes from tok (which needs an end-of-text token) and builds the
 * trie. */
int grammar_vocab_init(GrammarVocab *v, const Tokenizer *tok, Error *err);
void grammar_vocab_free(GrammarVocab *v);

/* Whether token t can come next from m: end-of-text when the text read is complete (and
 * `complete` says so: grammar_matcher_is_complete), never a token of v->never, any other
 * when its bytes keep the text inside the grammar. Out of memory refuses the token. */
bool grammar_vocab_allows(const GrammarVocab *v, const GrammarMatcher *m, int t, bool complete);

/* allowed[t] = grammar_vocab_allows(v, m, t, ...) for every token (n_vocab entries), the
 * reference: every token's bytes read one token at a time. */
void grammar_vocab_mask_plain(const GrammarVocab *v, const GrammarMatcher *m, bool *allowed);

/* The same mask by a walk over the trie: each node's byte is read once, from its parent's
 * state, and a refused node's subtree is never entered. Out of memory refuses what it could
 * not check. */
void grammar_vocab_mask_trie(GrammarVocab *v, const GrammarMatcher *m, bool *allowed);

#endif
